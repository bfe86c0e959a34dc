"""ODB-1: ODB-dLLM's dual boundaries on a diffusion LM (LLaDA-8B), from its cost model and its request life.

(a) The roofline premise: a dual-cache block step is memory-bound, so widening it from one 32-token block to
jump-share's 4 x 32 = 128 tokens costs almost nothing below the chip's ridge, while a full-canvas forward (the
refresh) is compute-bound and grows linearly with its tokens. Figures: CostModel forwards of LLaDA-8B over a
2k-position context on H100 and A100 (perf/dllm.py).
(b) End to end, the settings ladder of the released eval script (baseline LLaDA, Fast-dLLM's dual cache with
threshold-0.9 parallel decoding, + adaptive length prediction, + jump-share speculation) on GSM8K-like requests
at batch 1, each decoded as the released code does (sim/dllm_request.py) and timed by the dLLM instance
(sim/dllm.py). The inputs the papers do not publish are marked "assumed" with the reason; the bands are the
paper's and were set before the first run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasewise.perf import CostModel
from phasewise.perf.dllm import DllmCost, forward_curve, forward_shape, ridge_flops_per_byte
from phasewise.perf.operators import OPERATOR_GROUP
from phasewise.plan.dllm_plan import check_lengths, diffusion_model
from phasewise.scenarios.base import (
    FIXED_FIGURE,
    Check,
    Outcome,
    Param,
    Scenario,
    check_with,
    lengths_within_context,
    setup_error,
)
from phasewise.sim.dllm import DllmRun, simulate_dllm
from phasewise.sim.dllm_request import STEP
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.dllm import decoding, ladder
from phasewise.workload import ClosedLoop, LengthDist

PAPER = ("Orchestrating Dual-Boundaries: An Arithmetic Intensity Inspired Acceleration Framework for Diffusion "
         "Language Models")
LABELS = {"baseline": "LLaDA baseline", "fast-dllm": "Fast-dLLM (dual cache + parallel)", "alp": "+ ALP",
          "odb": "+ jump-share (ODB-dLLM)"}
# Fast-dLLM's measured forwards (forward_measured): the copies compared below and above its knee
MEASURED_FLAT = (1, 4)  # copies: 64 vs 256 new tokens, both below the measured knee
MEASURED_LINEAR = (8, 16)  # copies: 512 vs 1024 new tokens, both above it

# The paper's figures and the checks' bands (PAPERS.md ODB-1), set before the first run: not setup (`--set` refuses
# them; SCENARIOS.md: no figure is typed in to make a check pass)
FLAT_LIMIT = 1.15  # PAPERS.md ODB-1 (a): the 128-token forward <= 1.15x the 32-token one (+-15 %)
LINEAR_BAND = (1.7, 2.3)  # linear = 2.0x per doubling, +-15 % (PAPERS.md ODB-1 tolerance on (a))
FAST_BAND = (2.6, 6.3)  # PAPERS.md ODB-1 (b): ODB-dLLM 2.63-6.30x faster than Fast-dLLM
BASELINE_BAND = (46.0, 162.0)  # PAPERS.md ODB-1 (b): ODB-dLLM 46-162x faster than the LLaDA baseline
FIXED = {**{key: FIXED_FIGURE.format(what=what) for key, what in (
    ("flat_limit", f"flat-forward limit {FLAT_LIMIT}x (PAPERS.md ODB-1 (a))"),
    ("linear_band", f"linear-forward band {list(LINEAR_BAND)} (PAPERS.md ODB-1 (a))"),
    ("fast_band", f"band {list(FAST_BAND)} over Fast-dLLM (PAPERS.md ODB-1 (b))"),
    ("baseline_band", f"band {list(BASELINE_BAND)} over the LLaDA baseline (PAPERS.md ODB-1 (b))"))},
    "threshold": "the confidence threshold acts only through tokens_per_step, the tokens a forward decides at it "
                 "(2.77 measured at the eval script's 0.9): set tokens_per_step"}

SETUP = {
    "model": Param("GSAI-ML/LLaDA-8B-Instruct", "PAPERS.md section 1: LLaDA-8B-Instruct (LLaDA-1.5 shares its "
                                                "architecture; both in the catalog)"),
    "hardware": Param("h100-sxm", "PAPERS.md ODB-1: a modeled H100 (989 TFLOP/s BF16, 3.35 TB/s); the repo does "
                                  "not state the paper's GPU"),
    "second_hardware": Param("a100-sxm-80gb", "PAPERS.md ODB-1: a modeled A100 (312 TFLOP/s, 2.04 TB/s)"),
    "precision": Param("bf16", "PAPERS.md ODB-1: BF16"),
    "engine": Param("hf-eager", "ODB-dLLM's eval runs the transformers model in a Python loop, one request at a "
                                "time (llada_instruct/eval_llada_instruct.sh via lm-eval, batch 1)"),
    "gen_length": Param(1024, "ODB-dLLM eval_llada_instruct.sh: gen_length=1024 (every configuration)"),
    "block_length": Param(32, "ODB-dLLM eval_llada_instruct.sh: block_length=32"),
    "tokens_per_step": Param(2.77, "d3LLM (arXiv 2601.07568) AUP data: Fast-dLLM-LLaDA decides 2.77 tokens per "
                                   "forward on GSM8K-CoT at threshold 0.9, dual cache, block 32 (the eval script's "
                                   "threshold=0.9 acts only through it: another threshold is another tokens_per_step)",
                             help="mean answer tokens a forward decides at the confidence threshold, from 1 to "
                                  "block_length"),
    "tokens_per_step_probs": Param([], "assumed: not given (the mean above, drawn as 1 + Poisson(mean - 1)); a "
                                       "measured histogram P(1), P(2), ... of the tokens a forward decides replaces "
                                       "it (simulate --tokens-per-step-probs)",
                                   help="P(1..k) answer tokens decided per forward, summing to 1 (replaces "
                                        "tokens_per_step)", upper=1.0, items=(1, 256), element=0.0),
    # at most 64 copies (64 x a 32-token block = 2,048 new tokens, the cached context's 2k)
    "jump_copies": Param(4, "ODB-dLLM generate_alp_jump_share.py: the block + 3 speculative copies = 4 x 32 tokens",
                         upper=64),
    "jump_probs": Param([1 / 3, 1 / 3, 1 / 3], "assumed: P(0, 1, 2 extra tokens accepted per jump-share step) "
                                               "uniform, because ODB-dLLM publishes no acceptance statistics",
                        upper=1.0, lower=0.0, items=(1, 7)),
    "prompt_tokens": Param(1000, "lm-eval's gsm8k task is 5-shot (num_fewshot: 5, gsm8k.yaml); a 5-shot GSM8K "
                                 "prompt is ~1000 tokens (d3LLM blog, Long-GSM8K)"),
    "answer_tokens": Param(250, "PAPERS.md ODB-1: GSM8K-like answers of ~200-300 tokens (mean)"),
    "answer_spread": Param(0.2, "PAPERS.md ODB-1: 200-300 tokens = 250 +- 20 %, uniform", upper=1.0),
    # at most 10x the default: the ladder's runs grow linearly with the requests
    "requests": Param(12, "assumed: enough requests at batch 1 for a stable mean within the 3 s budget", upper=120),
    "seed": Param(0, "assumed: any seed (each request draws its own numbers)"),
    "context_tokens": Param(2048, "PAPERS.md ODB-1: cached context = prompt + canvas <= 2k"),
    "flat_tokens": Param([32, 128], "PAPERS.md ODB-1 (a): a 32-token block step vs jump-share's 128 tokens", length=2,
                         help="the smaller forward first, both <= context_tokens"),
    "linear_tokens": Param([512, 1024], "PAPERS.md ODB-1 (a): 256 -> 1024-token forwards start to scale linearly",
                           length=2, help="the smaller forward first, both <= context_tokens"),
    "measured_tps": Param([27.89, 114.29, 19.15, 79.14], "d3LLM blog (hao-ai-lab), Table 1: LLaDA-8B-Instruct on "
                          "GSM8K-CoT, tokens/s of vanilla LLaDA and Fast-dLLM on H100, then on A100 (batch 1; shown "
                          "for context, not a check)", length=4),
    "measured_gen_length": Param(256, "d3LLM's eval commands: gen_length=256, steps=256 (LLaDA), block_length=32, "
                                      "threshold 0.9 dual cache (Fast-dLLM)"),
    "measured_prompt_tokens": Param(80, "NVlabs/Fast-dLLM llada/predictions.jsonl @ 955ab84 (LLaDA-8B-Instruct's "
                                        "GSM8K test decodes, zero-shot 'Let's think step by step' in its chat "
                                        "template): 42 records sampled evenly through the file, prompts 51-158 "
                                        "tokens, mean 80 (assumed: d3LLM's GSM8K-CoT prompt is this one)"),
    "measured_answer_tokens": Param(
        [266, 360, 378, 191, 183, 198, 169, 194, 270, 312, 232, 309, 234, 283, 224, 242, 335, 223, 235, 173, 510,
         311, 473, 213, 239, 510, 392, 217, 302, 236, 373, 214, 290, 475, 229, 272, 402, 198, 344, 346, 372, 206],
        "NVlabs/Fast-dLLM llada/predictions.jsonl @ 955ab84, the same 42 records: answer tokens before <|eot_id|> "
        "at gen_length 512 (mean 289, median 268); at d3LLM's gen_length 256 the 22 longer ones fill the canvas "
        "(assumed: the same answers, cut there)", length=42),
    "measured_forward_ms": Param([23.1, 24.1, 23.9, 23.8, 27.6, 31.2, 35.6, 38.6, 42.2, 46.6, 50.8, 54.0, 58.7, 62.8,
                                  66.2, 69.2],
                                 "NVlabs/Fast-dLLM llada/beam_timings.json @ b68797c (llada/bench_batch_forward.py): "
                                 "LLaDA-8B-Instruct forwards of 1..16 copies of a block batched over the dual cache, "
                                 "the median of each count's ~31 timings, ms (shown for context, not a check)",
                                 length=16),
    "measured_forward_block": Param(64, "NVlabs/Fast-dLLM llada/bench_batch_forward.py: --block-length 64 (default)"),
    "measured_forward_cached": Param(301, "assumed: bench_batch_forward.py's default prompt in LLaDA's chat template "
                                          "(~45 tokens) + --gen-length 256 (default); each copy attends the whole "
                                          "sequence's cache"),
    "measured_forward_hardware": Param("a100-sxm-80gb", "inferred, not stated by the repo: above the knee a forward "
                                                        "grows ~60 us a new token, at LLaDA-8B's ~15 GFLOP a token "
                                                        "(with its LM head) ~250 TFLOP/s: 80 % of an A100's 312 BF16 "
                                                        "peak, 25 % of an H100 SXM's; the ~8 ms intercept is 16 GB of "
                                                        "weights at ~2 TB/s (an A100 80GB's HBM)"),
}

# the capability's flags (specs/dllm.py DllmDecoding) as the setup names them
DECODING_KEYS = {"--gen-length": "gen_length", "--block-length": "block_length",
                 "--tokens-per-step-probs": "tokens_per_step_probs", "--tokens-per-step": "tokens_per_step",
                 "--jump-copies": "jump_copies", "--jump-probs": "jump_probs"}


def tokens_knobs(setup: dict[str, Any]) -> dict[str, Any]:
    """The tokens a threshold forward decides, as the ladder takes them: the histogram when one is given, else the
    mean (the capability takes one of the two)."""
    probs = setup["tokens_per_step_probs"]
    if probs:
        return {"tokens_per_step_probs": tuple(probs)}
    return {"tokens_per_step": setup["tokens_per_step"]}


def validate(setup: dict[str, Any]) -> None:
    """What holds only together, before anything runs: the forwards' sizes within the cached context, the context and
    each request within the model's, and the ladder's decodings (specs/dllm.py's own checks, keys named)."""
    # a causal model has no canvas to decode: refused as simulate/plan --dllm refuse it
    spec = check_with("odb-dllm", {"--dllm": "--set model:"}, lambda: diffusion_model(setup["model"]))
    ctx = setup["context_tokens"]
    for key in ("flat_tokens", "linear_tokens"):
        small, wide = setup[key]
        if wide > ctx:
            raise setup_error("odb-dllm", f"{key}, context_tokens", f"{key} {small},{wide} must be <= context_tokens "
                              f"{ctx} (a forward's new tokens are part of the cached context)")
        if not small < wide:
            raise setup_error("odb-dllm", key, f"the smaller forward first ({small},{wide})")
    model = setup["model"]
    lengths_within_context("odb-dllm", model, ctx, keys="context_tokens")
    lengths_within_context("odb-dllm", model, setup["prompt_tokens"], setup["gen_length"],
                           keys="prompt_tokens + gen_length")
    lengths_within_context("odb-dllm", model, setup["measured_prompt_tokens"], setup["measured_gen_length"],
                           keys="measured_prompt_tokens + measured_gen_length")
    lengths_within_context("odb-dllm", model, setup["measured_forward_cached"], setup["measured_forward_block"],
                           keys="measured_forward_cached + measured_forward_block")
    for gen in ("gen_length", "measured_gen_length"):
        names = {**DECODING_KEYS, "--gen-length": gen}
        check_with("odb-dllm", names, lambda gen=gen: ladder(
            gen_length=setup[gen], block_length=setup["block_length"], **tokens_knobs(setup),
            copies=setup["jump_copies"], jump_probs=tuple(setup["jump_probs"])))
    # answers past the canvas would be cut there (the ladder's rungs then decode the same canvas): simulate's check,
    # on the ladder's requests and the sensitivity table's longer ones (the measured table's cut is its assumption)
    canvas = decoding("fast-dllm", gen_length=setup["gen_length"], block_length=setup["block_length"])
    for answer, which in ((setup["answer_tokens"], "answers"), (longest_answers(setup), "answers of the sensitivity "
                          "table's answer_tokens x (1 + answer_spread) row")):
        prompts, answers = requests_of(setup, answer).lengths()
        check_with("odb-dllm", {"--gen-length": "gen_length", "answers are": f"{which} are"},
                   lambda: check_lengths(spec, canvas, prompts, answers))


def requests_of(setup: dict[str, Any], answer_tokens: float) -> ClosedLoop:
    """The GSM8K-like requests one at a time: fixed prompts, answers uniform +- answer_spread around the mean."""
    return ClosedLoop(1, setup["requests"], LengthDist("fixed", setup["prompt_tokens"]),
                      LengthDist("uniform", answer_tokens, setup["answer_spread"]), seed=setup["seed"])


def longest_answers(setup: dict[str, Any]) -> float:
    """The sensitivity table's longest answers' mean (an end of the answers' range)."""
    return setup["answer_tokens"] * (1 + setup["answer_spread"])


def cost_of(setup: dict[str, Any], hardware: str) -> DllmCost:
    cm = CostModel(load_model(setup["model"]), load_hardware(hardware), load_quant(setup["precision"]),
                   load_engine(setup["engine"]))
    return DllmCost.of(cm)


def run(setup: dict[str, Any]) -> Outcome:
    costs = {hw: cost_of(setup, hw) for hw in dict.fromkeys((setup["hardware"], setup["second_hardware"]))}
    ctx = setup["context_tokens"]
    small, wide = setup["flat_tokens"][0], setup["flat_tokens"][-1]
    lo_lin, hi_lin = setup["linear_tokens"][0], setup["linear_tokens"][-1]
    sizes = [n for n in sorted({8, 16, 32, 64, 128, 256, 512, 1024, ctx, small, wide, lo_lin, hi_lin}) if n <= ctx]
    curves = {hw: {n: (t, ai) for n, t, ai in forward_curve(c, ctx, sizes)} for hw, c in costs.items()}
    # the device's time alone (no host dispatch): what the roofline premise of the forward-curve checks speaks of
    device = {hw: {n: t for n, t, _ in forward_curve(device_cost(c), ctx, sizes)} for hw, c in costs.items()}

    rungs = ladder(gen_length=setup["gen_length"], block_length=setup["block_length"],
                   **tokens_knobs(setup), copies=setup["jump_copies"],
                   jump_probs=tuple(setup["jump_probs"]))
    work = requests_of(setup, setup["answer_tokens"])
    main = costs[setup["hardware"]]
    runs = {mode: simulate_dllm(dec, main, work, seed=setup["seed"], timeline_requests=1)
            for mode, dec in rungs.items()}
    e2e = {mode: float(r.e2e_s().mean()) for mode, r in runs.items()}
    vs_fast, vs_base = e2e["fast-dllm"] / e2e["odb"], e2e["baseline"] / e2e["odb"]
    order = list(rungs)
    steps_up = [e2e[a] / e2e[b] for a, b in zip(order, order[1:])]
    shares = {mode: time_split(r, main) for mode, r in runs.items()}

    checks = []
    ridges = {hw: model_ridge_tokens(c, ctx) for hw, c in costs.items()}
    for hw, curve in curves.items():
        ratio = curve[wide][0] / curve[small][0]
        on_device = device[hw][wide] / device[hw][small]
        bigger = [n for n in sizes if n > small and curve[n][0] > FLAT_LIMIT * curve[small][0]]
        knee = (f"; the forward passes {FLAT_LIMIT}x the {small}-token one from {bigger[0]} new tokens"
                if bigger and bigger[0] <= wide else "")
        checks.append(Check(
            f"{hw}: {wide}-token forward vs {small}-token forward", "below the ridge a forward is memory-bound: "
            f"{wide} new tokens cost <= {FLAT_LIMIT}x {small} (the jump-share premise)", 1.0, ratio,
            (2.0 - FLAT_LIMIT, FLAT_LIMIT),
            f"{ctx}-position context: {curve[wide][0] * 1e3:.2f} ms vs {curve[small][0] * 1e3:.2f} ms; "
            f"{curve[wide][1]:.0f} and {curve[small][1]:.0f} FLOP/B; "
            + ridge_text(costs[hw], ctx, ridges[hw], (small, wide)) + knee
            + host_floor(costs[hw], device[hw], curve, (wide, small))
            + (f": it passes on the host floor alone, the device's {on_device:.2f}x being over the {FLAT_LIMIT}x "
               "limit" if ratio <= FLAT_LIMIT < on_device else "")))
    measured_chip = costs.get(setup["measured_forward_hardware"]) or cost_of(setup, setup["measured_forward_hardware"])
    forward_table, forward_summary = forward_measured(setup, measured_chip, device_cost(measured_chip))
    for hw, curve in curves.items():  # the claim's chips, H100 and A100 (hardware, second_hardware)
        lin = curve[hi_lin][0] / curve[lo_lin][0]
        checks.append(Check(
            f"{hw}: {hi_lin}-token forward vs {lo_lin}-token forward",
            "above the ridge a forward is compute-bound: time scales linearly with new tokens", 2.0, lin,
            LINEAR_BAND,
            f"{curve[hi_lin][0] * 1e3:.1f} ms vs {curve[lo_lin][0] * 1e3:.1f} ms "
            f"({curve[hi_lin][1]:.0f} / {curve[lo_lin][1]:.0f} FLOP/B); at {ctx} tokens {curve[ctx][0] * 1e3:.1f} ms"
            + host_floor(costs[hw], device[hw], curve, (hi_lin, lo_lin))
            + forward_measured_text(forward_summary)))
    n = setup["requests"]
    per = {m: runs[m].summary()["per_request"] for m in order}
    detail = ("per request at batch 1, refreshes + block steps: " + "; ".join(
        f"{m} {e2e[m]:.2f} s = {per[m]['refreshes']:.1f} full/refresh forwards {shares[m][1] / n:.2f} s + "
        f"{per[m]['steps']:.1f} steps {shares[m][2] / n:.2f} s" for m in order)
        + (f". Jump-share cuts the block steps {per['alp']['steps'] / per['odb']['steps']:.2f}x ("
           f"{accepted_extra(runs['odb']):.2f} extra tokens accepted a step on average, drawn from jump_probs "
           f"(assumed), up to {rungs['odb'].first_extra} with {rungs['odb'].copies} candidates and "
           f"{rungs['odb'].most_extra} with {2 * rungs['odb'].copies} once few masks are left)"
           if setup["jump_copies"] > 1 else ". Jump-share is off (jump_copies 1: no speculative copies, so +ALP "
           "and ODB-dLLM decode alike)")
        + " and ALP the "
        f"refresh time {shares['fast-dllm'][1] / shares['alp'][1]:.1f}x (the {setup['prompt_tokens']}-token prompt "
        "stays in every refresh)")
    checks.append(Check("ODB-dLLM vs Fast-dLLM, end to end",
                        "jump-share + ALP are 2.63-6.30x faster than Fast-dLLM (LLaDA-8B-Instruct)",
                        [2.63, 6.30], vs_fast, FAST_BAND, detail))
    checks.append(Check("ODB-dLLM vs the LLaDA baseline, end to end",
                        "46-162x faster than LLaDA's no-cache one-token-a-step decoding", [46.0, 162.0], vs_base,
                        BASELINE_BAND, detail))
    checks.append(Check("every rung of the settings ladder is faster than the one before",
                        "direction: baseline > Fast-dLLM > +ALP > +jump-share in E2E latency (each by more than 1 %: "
                        "a tie is no speed-up)",
                        None, min(steps_up), (1.01, 1e9),
                        "E2E ratio of each rung to the next: " + ", ".join(
                            f"{a} -> {b} {s:.2f}x" for a, b, s in zip(order, order[1:], steps_up))))
    tables = [ladder_table(runs, e2e, shares, order), timeline_table(runs, ("fast-dllm", "odb")),
              {"title": f"Forward time vs new positions ({ctx}-position context, {setup['model']})",
               "columns": ["new tokens", *(f"{hw} ms" for hw in curves), *(f"{hw} FLOP/B" for hw in curves)],
               "rows": [[n, *(f"{curves[hw][n][0] * 1e3:.2f}" for hw in curves),
                         *(f"{curves[hw][n][1]:.0f}" for hw in curves)] for n in sizes]}]
    tables.append(measured_table(setup, costs))
    tables.append(forward_table)
    tables.append(sensitivity_table(setup, main, vs_fast))
    figures = [timeline_figure(runs, order), curve_figure(curves, ridges, ctx, setup["model"]),
               ladder_figure(e2e, order, setup["hardware"])]
    return Outcome(checks, figures, tables)


def model_ridge_tokens(cost: DllmCost, context_tokens: int) -> int | None:
    """The fewest new tokens at which a forward's weight GEMMs (its dense operators, over `context_tokens`
    positions) take the cost model longer to compute than to stream: the ridge as the model runs it (its GEMM
    efficiency at that many rows, its streaming bandwidth), not the chip's peak one; None if not by the context."""
    def compute_bound(new: int) -> bool:
        ops = [op for op in cost.cm.iteration(forward_shape(new, context_tokens - new)).operators
               if OPERATOR_GROUP.get(op.name) == "dense"]
        return sum(op.compute_s for op in ops) >= sum(op.memory_s for op in ops)

    if not compute_bound(context_tokens):
        return None
    low, high = 1, context_tokens
    while low < high:  # compute over memory grows with the rows: the first compute-bound size
        mid = (low + high) // 2
        low, high = (low, mid) if compute_bound(mid) else (mid + 1, high)
    return low


def ridge_text(cost: DllmCost, context_tokens: int, ridge: int | None, sizes: tuple[int, int]) -> str:
    """The model's ridge against the forwards of `sizes`, and the chip's peak ridge beside it."""
    peak = ridge_flops_per_byte(cost.cm)
    if ridge is None:
        return (f"the cost model's weight GEMMs stay memory-bound up to {context_tokens} new tokens (peak ridge "
                f"{peak:.0f} FLOP/B)")
    at = forward_curve(cost, context_tokens, [ridge])[0][2]
    above = [n for n in sizes if n >= ridge]
    return (f"the cost model's weight GEMMs turn compute-bound from {ridge} new tokens ({at:.0f} FLOP/B; its GEMM "
            f"efficiency grows with the rows, so below the chip's peak ridge of {peak:.0f} FLOP/B)"
            + (f", so the {above[0]}-token forward is past it" if above else ""))


def device_cost(cost: DllmCost) -> DllmCost:
    """The same forwards with no host cost at all (engine `ideal`): the device's time alone."""
    cm = cost.cm
    return DllmCost.of(CostModel(cm.model, cm.hw, cm.quant, load_engine("ideal")))


def host_floor(cost: DllmCost, device: dict[int, float], curve: dict[int, tuple[float, float]],
               sizes: tuple[int, int]) -> str:
    """Where the engine's host sets a forward's pace (its eager dispatch above the device's time): the forwards of
    `sizes` (wide, small: the check's title's order) as run against the device's time alone, and the ratio on the
    device alone; "" where neither is."""
    wide, small = sizes
    if all(curve[n][0] <= 1.02 * device[n] for n in sizes):
        return ""
    cm = cost.cm
    per_layer = [op for op in cm.iteration(forward_shape(small, 0)).operators if op.host_overlapped]
    kernels = sum(op.dispatch_s for op in per_layer) / cm.layers_per_stage / cm.eager_launch_s
    return (f". Host-bound: {cm.engine.name} dispatches its kernels one by one, a layer's ~{kernels:.0f} "
            f"(engines.yaml) at {cm.eager_launch_s * 1e6:.0f} us each, "
            f"{curve[wide][0] * 1e3:.1f} / {curve[small][0] * 1e3:.1f} ms against the device's "
            f"{device[wide] * 1e3:.1f} / {device[small] * 1e3:.1f} ms; on the device alone "
            f"{device[wide] / device[small]:.2f}x")


def sensitivity_table(setup: dict[str, Any], main: DllmCost, value: float) -> dict[str, Any]:
    """ODB vs Fast-dLLM with one input moved at a time (the assumed ones first): how far the check's figure
    depends on what the papers do not publish. Context, not a check; the defaults stay as sourced."""
    def ratio(answer: float, probs: tuple[float, ...], cost: DllmCost) -> float:
        rungs = ladder(gen_length=setup["gen_length"], block_length=setup["block_length"],
                       **tokens_knobs(setup), copies=setup["jump_copies"], jump_probs=probs)
        work = requests_of(setup, answer)
        e2e = {m: float(simulate_dllm(rungs[m], cost, work, seed=setup["seed"]).e2e_s().mean())
               for m in ("fast-dllm", "odb")}
        return e2e["fast-dllm"] / e2e["odb"]

    probs, answer = tuple(setup["jump_probs"]), setup["answer_tokens"]
    most = setup["jump_copies"]  # DllmDecoding.most_extra: its late phase's 2 x copies candidates
    ideal = device_cost(main)
    rows = [["defaults", f"{value:.2f}"],
            ["no speculative token ever accepted (jump_probs 1,0,0)", f"{ratio(answer, (1.0, 0.0, 0.0), main):.2f}"],
            [f"the most always accepted (jump_probs {','.join(['0'] * most + ['1'])})",
             f"{ratio(answer, (0.0,) * most + (1.0,), main):.2f}"],
            *([f"answers averaging {a:.0f} tokens (an end of the range)", f"{ratio(a, probs, main):.2f}"]
              for a in (answer * (1 - setup["answer_spread"]), longest_answers(setup))),
            ["device time only (engine ideal)", f"{ratio(answer, probs, ideal):.2f}"]]
    return {"title": f"ODB-dLLM vs Fast-dLLM with one input moved ({main.cm.hw.key}; paper 2.63-6.30x)",
            "columns": ["input", "ODB / Fast-dLLM E2E"], "rows": rows}


def measured_table(setup: dict[str, Any], costs: dict[str, DllmCost]) -> dict[str, Any]:
    """d3LLM's measured tokens/s (gen_length 256) beside phasewise's for the same decodings, counted as the
    Fast-dLLM family's eval counts them (NVlabs/Fast-dLLM llada/eval_llada.py, show_speed: the tokens of each
    stop-truncated answer other than the |EOS| filler, over the wall time of the whole run, one request at a time):
    the answer's tokens within the canvas over the requests' summed E2E. Context for the absolute error, not a
    check."""
    measured = setup["measured_tps"]
    gen_length = setup["measured_gen_length"]
    answers = tuple(int(a) for a in setup["measured_answer_tokens"])
    rows = []
    for i, hw in enumerate(("h100-sxm", "a100-sxm-80gb")):
        cost = costs.get(hw) or cost_of(setup, hw)
        work = ClosedLoop(1, len(answers), LengthDist("fixed", setup["measured_prompt_tokens"]),
                          LengthDist("empirical", samples=answers), seed=setup["seed"])
        got = {}
        for mode in ("baseline", "fast-dllm"):
            dec = ladder(gen_length=gen_length, block_length=setup["block_length"],
                         **tokens_knobs(setup))[mode]
            run = simulate_dllm(dec, cost, work)
            got[mode] = float(np.minimum(run.answer_tokens, gen_length).sum() / run.e2e_s().sum())
        base, fast = measured[2 * i], measured[2 * i + 1]
        rows.append([hw, f"{base:.1f}", f"{got['baseline']:.1f}", f"{fast:.1f}", f"{got['fast-dllm']:.1f}",
                     f"{fast / base:.2f}", f"{got['fast-dllm'] / got['baseline']:.2f}"])
    return {"title": "Context: d3LLM's measured tokens/s at gen_length 256 vs phasewise (not fitted, not a check)",
            "columns": ["chip", "LLaDA measured", "LLaDA phasewise", "Fast-dLLM measured", "Fast-dLLM phasewise",
                        "Fast-dLLM / LLaDA measured", "phasewise"], "rows": rows}


def forward_measured(setup: dict[str, Any], as_run: DllmCost,
                     device: DllmCost) -> tuple[dict[str, Any], dict[str, tuple]]:
    """Fast-dLLM's own timed forwards (NVlabs/Fast-dLLM llada/bench_batch_forward.py -> llada/beam_timings.json:
    during a dual-cache decode, 1..16 copies of one 64-token block forwarded as one batch over the cache, each copy
    over its own tiled copy of it; GPU not stated, A100-class by its slope) beside phasewise's forwards of the same
    shapes, nothing fitted: context, not a check. Returns (the report's table, {"flat" | "linear": (measured
    ratio, phasewise ratio), "floor": (measured ms, phasewise ms)}) against `as_run` (the scenario's engine on the
    measured chip) and `device` (the same chip's device time alone). The shape (flat while the host dispatches the
    eager kernels faster than the device runs them, linear once the device is slower) is the model's to match; the
    floor's height is the host's."""
    block, cached = setup["measured_forward_block"], setup["measured_forward_cached"]
    measured = {copies: ms for copies, ms in enumerate(setup["measured_forward_ms"], start=1)}
    ran = {c: as_run.forward_s(block, cached, 1, c) * 1e3 for c in measured}
    alone = {c: device.forward_s(block, cached, 1, c) * 1e3 for c in measured}
    rows = [[c, c * block, f"{measured[c]:.1f}", f"{ran[c]:.1f}", f"{ran[c] / measured[c] - 1:+.0%}",
             f"{alone[c]:.1f}"] for c in measured]
    summary = {name: (measured[hi] / measured[lo], ran[hi] / ran[lo])
               for name, (lo, hi) in (("flat", MEASURED_FLAT), ("linear", MEASURED_LINEAR))}
    summary["floor"] = (measured[MEASURED_FLAT[0]], ran[MEASURED_FLAT[0]])
    summary["tokens"] = tuple(c * block for c in (*MEASURED_FLAT, *MEASURED_LINEAR))
    for name, (lo, hi) in (("flat", MEASURED_FLAT), ("linear", MEASURED_LINEAR)):
        rows.append([f"{hi} vs {lo} copies", f"{hi * block} vs {lo * block}", f"{summary[name][0]:.2f}x",
                     f"{summary[name][1]:.2f}x", "", f"{alone[hi] / alone[lo]:.2f}x"])
    chip, engine = as_run.cm.hw.key, as_run.cm.engine.name
    table = {"title": f"Context: Fast-dLLM's measured LLaDA-8B forwards (copies of a {block}-token block over a "
                      f"~{cached}-position dual cache, batched; GPU not stated, A100-class by its slope) vs "
                      f"phasewise on {chip} (not fitted, not a check)",
             "columns": ["copies", "new tokens", "measured ms", f"phasewise {engine} ms", "error",
                         "phasewise device alone ms"],
             "rows": rows}
    return table, summary


def forward_measured_text(summary: dict[str, tuple]) -> str:
    """One clause for a check's `why`: the measured forwards' shape beside phasewise's."""
    (flat_m, flat_p), (lin_m, lin_p), (floor_m, floor_p) = summary["flat"], summary["linear"], summary["floor"]
    few, flat_end, lin_start, lin_end = summary["tokens"]
    return (f"; Fast-dLLM's own measured forwards (A100-class, its table): {flat_m:.2f}x from {few} to {flat_end} "
            f"new tokens at {floor_m:.0f} ms (phasewise {flat_p:.2f}x at {floor_p:.0f} ms) and {lin_m:.2f}x from "
            f"{lin_start} to {lin_end} (phasewise {lin_p:.2f}x)"
            + (": the same shape" if abs(lin_p / lin_m - 1) <= 0.1 and abs(flat_p / flat_m - 1) <= 0.1 else "")
            + (f" on a {'lower' if floor_m < floor_p else 'higher'} host floor"))


def accepted_extra(r: DllmRun) -> float:
    """Speculative tokens the jump-share block steps accepted, per step, as the run drew them."""
    steps = sum(p.steps for p in r.plans)
    return sum(sum(p.extra) for p in r.plans) / steps if steps else 0.0


def time_split(r: DllmRun, cost: DllmCost) -> tuple[float, float, float]:
    """(refresh/full share of forward time, seconds in refreshes, seconds in block steps) over all requests at
    batch 1 (each iteration is one request's forward)."""
    refresh = step = 0.0
    for p in r.plans:
        for kind, row in zip(p.kind, p.rows):
            t = cost.row_s(row)
            if kind == STEP:
                step += t
            else:
                refresh += t
    return refresh / (refresh + step), refresh, step


def ladder_table(runs: dict[str, DllmRun], e2e: dict[str, float], shares: dict, order: list[str]) -> dict[str, Any]:
    rows = []
    for m in order:
        s = runs[m].summary()
        f = s["per_request"]
        rows.append([LABELS[m], f"{e2e[m]:.3f}", f"{e2e['baseline'] / e2e[m]:.1f}x", f"{s['ttft_ms']['mean']:.0f}",
                     f"{f['canvas_tokens']:.0f}", f"{f['forwards']:.1f}", f"{f['refreshes']:.1f}", f"{f['steps']:.1f}",
                     f"{shares[m][0]:.0%}", f"{s['tokens_per_s']['mean']:.1f}"])
    return {"title": "Settings ladder, per request at batch 1 (means)",
            "columns": ["setting", "E2E s", "speedup vs baseline", "time to first block ms", "canvas decoded",
                        "forwards", "full/refresh forwards", "block steps", "refresh share of time", "answer tok/s"],
            "rows": rows}


def timeline_table(runs: dict[str, DllmRun], modes: tuple[str, ...]) -> dict[str, Any]:
    """Request 0's life block by block: its refresh, its block steps, and when the block was done."""
    per: dict[str, dict[int, list[float]]] = {}
    for m in modes:
        blocks: dict[int, list[float]] = {}
        for r, start, end, kind, block in runs[m].timeline:
            if r != 0:
                continue
            row = blocks.setdefault(block, [0.0, 0, 0.0, 0.0])  # refresh ms, steps, steps ms, done at s
            if kind == "step":
                row[1] += 1
                row[2] += (end - start) * 1e3
            else:
                row[0] += (end - start) * 1e3
            row[3] = end - runs[m].arrival_s[0]
        per[m] = blocks
    rows = []
    for b in range(max(max(v) for v in per.values()) + 1):
        cells = [b]
        for m in modes:
            x = per[m].get(b)
            cells += ([f"{x[0]:.1f}", x[1], f"{x[2]:.1f}", f"{x[3]:.3f}"] if x else ["-", "-", "-", "-"])
        rows.append(cells)
    columns = ["block"] + [f"{m} {c}" for m in modes for c in ("refresh ms", "steps", "steps ms", "done at s")]
    return {"title": "Request 0, block by block: refreshes (prefill over prompt + canvas) vs block steps (decode)",
            "columns": columns, "rows": rows}


def timeline_figure(runs: dict[str, DllmRun], order: list[str]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    colors = {"full": "#7f7f7f", "refresh": "#d62728", "step": "#1f77b4"}
    for kind in ("full", "refresh", "step"):
        base, width, ys, text = [], [], [], []
        for m in order:
            if m == "baseline":
                continue  # 1024 identical full forwards: drawn to scale it would hide the others
            spans = [s for s in runs[m].timeline if s[0] == 0 and s[3] == kind]
            t0 = runs[m].arrival_s[0]
            base += [s[1] - t0 for s in spans]
            width += [s[2] - s[1] for s in spans]
            ys += [LABELS[m]] * len(spans)
            text += [f"block {s[4]}" for s in spans]
        if base:
            fig.add_trace(go.Bar(base=base, x=width, y=ys, orientation="h", name=kind, hovertext=text,
                                 marker_color=colors[kind]))
    fig.update_layout(title="One request's life: refreshes (full forwards over prompt + canvas) vs block steps",
                      xaxis_title="time since arrival (s)", barmode="overlay")
    return fig


def curve_figure(curves: dict, ridges: dict[str, int | None], ctx: int, model: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    low = min(t for curve in curves.values() for t, _ in curve.values()) * 1e3
    high = max(t for curve in curves.values() for t, _ in curve.values()) * 1e3
    for hw, curve in curves.items():
        xs = sorted(curve)
        fig.add_trace(go.Scatter(x=xs, y=[curve[n][0] * 1e3 for n in xs], mode="lines+markers", name=hw))
        ridge = ridges[hw]
        if ridge is not None:  # the cost model's (model_ridge_tokens)
            fig.add_trace(go.Scatter(x=[ridge, ridge], y=[low, high], mode="lines", line={"dash": "dot"},
                                     name=f"{hw} ridge (~{ridge} new tokens, the cost model's)"))
    fig.update_layout(title=f"{model.split('/')[-1]} forward time vs new positions ({ctx}-position context)",
                      xaxis={"title": "new tokens in the forward", "type": "log"},
                      yaxis={"title": "forward time (ms)", "type": "log"})
    return fig


def ladder_figure(e2e: dict[str, float], order: list[str], hardware: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Bar(x=[LABELS[m] for m in order], y=[e2e["baseline"] / e2e[m] for m in order],
                           text=[f"{e2e[m]:.2f} s" for m in order]))
    fig.update_layout(title=f"Speedup over the LLaDA baseline along the settings ladder ({hardware}, batch 1)",
                      yaxis={"title": "speedup (E2E)", "type": "log"})
    return fig


SCENARIO = Scenario(
    name="odb-dllm", number=1, paper=PAPER,
    claim="adaptive length prediction and jump-share speculation make LLaDA-8B 2.63-6.30x faster than Fast-dLLM "
          "and 46-162x faster than the baseline; 128-token block steps cost ~ a 32-token one below the ridge",
    setup=SETUP, run_fn=run, validate=validate, fixed=FIXED,
    exclusive=(("tokens_per_step", "tokens_per_step_probs"),))  # the histogram replaces the mean
