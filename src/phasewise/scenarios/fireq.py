"""FireQ-1: INT4 weights x FP8 activations on Hopper (FireQ) against INT4 x INT8 (QServe), kernel by kernel.

The two W4A8 schemes' kernels (quant.yaml, perf/quant_kernels.py): FireQ expands INT4 weights to FP8 through
a lookup on CUDA cores in warp-specialized stages that overlap Hopper's wgmma; QServe expands INT4 to INT8 in
the MMA warps' own main loop, built on Ampere-style mma.sync. ONE kernel constant is fitted on ONE point, the
paper's 1.68x FFN speedup on Llama-2-7B (the MLP at bsz x 1024 tokens): the fraction of the chip's GEMM
efficiency mma.sync kernels reach on H100 (from its class default 1). Held out: the Llama-3-8B prefill speedup
(1.26 +/- 0.10 at 16 x 1024 tokens, an Amdahl split of linear layers, FP8 INT4-KV FlashAttention-3 against
the BF16 attention, and the elementwise work both share) and the ratio near 1 at batch 1 decode, where both
stream the same INT4 weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from phasewise.perf import BatchShape, kernel_fit
from phasewise.scenarios.base import (
    FIXED_FIGURE,
    Check,
    Outcome,
    Param,
    Scenario,
    autoregressive,
    check_with,
    lengths_within_context,
    memory_refusal,
    setup_error,
)
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

# The paper's figures (FireQ abstract) and the checks' tolerances (PAPERS.md FireQ-1), fixed before the first run:
# not setup (SCENARIOS.md: no figure is typed in to make a check pass; the FFN figure is the one the constant is fitted
# on, so moving it moves every held-out check)
FFN_SPEEDUP = 1.68  # 1.68x faster inference in FFN layers on Llama2-7B vs QServe
PREFILL_SPEEDUP = 1.26  # 1.26x faster prefill phase on Llama3-8B vs QServe
PREFILL_TOLERANCE = 0.10  # PAPERS.md FireQ-1: predict the prefill ratio within 1.26 +/- 0.10
DECODE_TOLERANCE = 0.10  # assumed: "ratio near 1.0 at batch 1" (PAPERS.md FireQ-1) read as within 10 %
DECODE_GROWTH = 0.02  # a batch-64 decode ratio this far above batch 1's reads as growth in the message
PAPER_FIT_MODEL, PAPER_MODEL = "meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B"  # the figures' models
FIXED = {key: FIXED_FIGURE.format(what=what) for key, what in (
    ("ffn_speedup", f"{FFN_SPEEDUP}x FFN speedup on Llama-2-7B (FireQ abstract), the figure the one constant is "
                    "fitted on"),
    ("prefill_speedup", f"{PREFILL_SPEEDUP}x prefill speedup on Llama-3-8B (FireQ abstract)"),
    ("prefill_tolerance", f"+-{PREFILL_TOLERANCE} band of the prefill check (PAPERS.md FireQ-1)"),
    ("decode_tolerance", f"+-{DECODE_TOLERANCE:.0%} band of the batch-1 check (PAPERS.md FireQ-1: 'near 1.0')"))}

SETUP = {
    "hardware": Param("h100-sxm", "PAPERS.md section 4: FireQ validated on NVIDIA H100"),
    "engine": Param("hf-eager", "FireQ's benchmarks/prefill_benchmark.py times a Hugging Face transformers forward of "
                    "the fused model (eager PyTorch); the same engine for both schemes isolates the kernels"),
    "fireq": Param("w4a8-fp8", "quant.yaml: FireQ's INT4 x FP8 scheme and kernels"),
    "qserve": Param("w4a8", "quant.yaml: QServe's W4A8KV4 scheme and kernels"),
    "fit_model": Param(PAPER_FIT_MODEL, "FireQ abstract: 1.68x faster FFN on Llama2-7B vs QServe"),
    "fit_batch": Param(16, "FireQ benchmarks/mlp_benchmark.py: default --bsz 16 (the MLP benchmark's setting)"),
    "fit_seq_len": Param(1024, "FireQ benchmarks/mlp_benchmark.py: default --seq_len 1024 (PAPERS.md section 4)"),
    "seq_len": Param(1024, "FireQ benchmarks/prefill_benchmark.py: default --seq_len 1024 (PAPERS.md section 4)"),
    "model": Param(PAPER_MODEL, "FireQ abstract: 1.26x faster prefill on Llama3-8B vs QServe"),
    "batch": Param(16, "FireQ benchmarks/prefill_benchmark.py: default --bsz 16; PAPERS.md FireQ-1: bsz 16 x 1024"),
    "all_logits": Param(True, "FireQ's prefill benchmark calls model(input_ids): a transformers forward without "
                        "logits_to_keep computes the LM head at every position"),
    "batches": Param([1, 4, 16, 64], "PAPERS.md section 4: MLP benchmark bsz {1, 4, 16, 64}"),
    # a fraction of the chip's GEMM efficiency: (0, 1]
    "class_sync_mma_efficiency": Param(1.0, "efficiency.yaml: sync_mma_efficiency absent = 1, the class default "
                                       "the fit starts from (the unfitted prediction)", upper=1.0),
}


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: both schemes' tensor paths on the chip (HardwareSpec.peak's own check, as QuantScheme.on
    picks the path), the sequences within each model's context, and each model in the chip's memory."""
    autoregressive("fireq", "model", setup["model"])
    hardware = load_hardware(setup["hardware"])
    for key in ("fireq", "qserve"):
        def path_exists(key: str = key) -> None:
            scheme = load_quant(setup[key]).on(hardware)
            hardware.peak(scheme.tensor_path or scheme.compute_dtype)
        check_with("fireq", {"choose another --precision": f"--set hardware to a chip with it, or another {key} "
                                                           f"scheme than {setup[key]}",
                             "--precision": key}, path_exists)
    lengths_within_context("fireq", setup["model"], setup["seq_len"], keys="seq_len")
    lengths_within_context("fireq", setup["fit_model"], setup["fit_seq_len"], keys="fit_seq_len")
    # each model's weights and its benchmark's KV on one chip under either scheme, as `phasewise estimate` sizes them
    for model, batch, seq_len in (("model", "batch", "seq_len"), ("fit_model", "fit_batch", "fit_seq_len")):
        for key in ("fireq", "qserve"):
            why = memory_refusal(setup[model], setup["hardware"], precision=setup[key], engine=setup["engine"],
                                 batch=setup[batch], prompt_len=setup[seq_len])
            if why is not None:
                raise setup_error("fireq", f"{model}, {key}, hardware",
                                  f"{setup[model]} in {setup[key]} does not fit one '{setup['hardware']}': "
                                  f"{why} ({setup[batch]} x {setup[seq_len]:,} tokens, as `phasewise "
                                  "estimate` sizes it); FireQ's benchmarks run one GPU: a smaller model, or a chip "
                                  "with more memory")


def prefill_shape(batch: int, seq_len: int, all_logits: bool) -> BatchShape:
    shape = BatchShape.uniform(batch, seq_len, 0)
    return dataclasses.replace(shape, logit_tokens=batch * seq_len) if all_logits else shape


def run(setup: dict[str, Any]) -> Outcome:
    start_hw = kernel_fit.with_sync_mma_efficiency(load_hardware(setup["hardware"]),
                                                   setup["class_sync_mma_efficiency"])
    engine = load_engine(setup["engine"])
    fireq, qserve = load_quant(setup["fireq"]), load_quant(setup["qserve"])
    fit_model, model = load_model(setup["fit_model"]), load_model(setup["model"])
    seq = setup["seq_len"]
    fit_shape = BatchShape.uniform(setup["fit_batch"], setup["fit_seq_len"], 0)
    fit = kernel_fit.fit_sync_mma_efficiency(fit_model, start_hw, qserve, fireq, engine, fit_shape, FFN_SPEEDUP)
    fitted_hw = fit.hardware(start_hw)

    def ratios(hw, batch: int) -> dict[str, float]:
        prefill = prefill_shape(batch, seq, setup["all_logits"])
        decode = BatchShape.uniform(batch, 1, seq)
        ffn = kernel_fit.FFN_OPERATORS
        return {"ffn_prefill": kernel_fit.speedup(model, hw, qserve, fireq, engine, prefill, ffn),
                "ffn_decode": kernel_fit.speedup(model, hw, qserve, fireq, engine, decode, ffn),
                "prefill": kernel_fit.speedup(model, hw, qserve, fireq, engine, prefill)}

    batches = sorted(set(setup["batches"]) | {1, setup["batch"]})
    fitted = {b: ratios(fitted_hw, b) for b in batches}
    unfitted = {b: ratios(start_hw, b) for b in batches}
    target = fitted[setup["batch"]]["prefill"]
    split = amdahl_split(model, fitted_hw, qserve, fireq, engine, prefill_shape(setup["batch"], seq,
                                                                                    setup["all_logits"]))
    linear = next(row for row in split if row[0] == "linear layers")
    paper, tol = PREFILL_SPEEDUP, PREFILL_TOLERANCE
    decode_1 = fitted[1]["ffn_decode"]
    slowest = min(batches, key=lambda b: fitted[b]["prefill"])
    lowest_prefill = fitted[slowest]["prefill"]
    # Amdahl at each batch: the whole prefill gains less than its FFN does at that batch
    kept = {b: fitted[b]["prefill"] / fitted[b]["ffn_prefill"] for b in batches}
    most_kept = max(kept, key=kept.get)
    checks = [
        Check(f"{model.name} prefill speedup over QServe",
              f"FireQ's prefill ({setup['batch']} x {seq} tokens) is {paper}x faster than QServe's (held out: one "
              "constant fitted on the "
              + ("Llama-2-7B" if setup["fit_model"] == PAPER_FIT_MODEL else f"{setup['fit_model']} (at Llama-2-7B's "
                 f"{FFN_SPEEDUP}x)") + " FFN"
              + (")" if setup["model"] == PAPER_MODEL else "; the paper's figure is of Llama-3-8B)"),
              paper, target, (paper - tol, paper + tol),
              f"Amdahl: linear layers are {linear[1]:.0%} of QServe's prefill and run {linear[3]:.2f}x faster; "
              + "; ".join(f"{name} {share:.0%} at {ratio:.2f}x" for name, share, _, ratio in split
                          if name != "linear layers")
              + f". Unfitted (sync_mma_efficiency {fit.start:g}): {unfitted[setup['batch']]['prefill']:.3f}. "
              + implied_share(paper, linear, tol, target)),
        Check("batch-1 decode: FFN speedup near 1",
              "at batch 1 both kernels stream the same INT4 weights: memory-bound, ratio ~1.0 (PAPERS.md FireQ-1)",
              1.0, decode_1, (1.0 - DECODE_TOLERANCE, 1.0 + DECODE_TOLERANCE),
              f"FFN of {model.name} at batch 1 decode; "
              + (f"the ratio grows with batch to {fitted[batches[-1]]['ffn_decode']:.2f}x at {batches[-1]} as "
                 "QServe's serial main loop turns compute-bound"
                 if fitted[batches[-1]]["ffn_decode"] > decode_1 * (1 + DECODE_GROWTH) else
                 f"{fitted[batches[-1]]['ffn_decode']:.2f}x still at {batches[-1]}: the FFN stays memory-bound "
                 "there (both kernels stream the same INT4 weights)")
              + f" (unfitted {unfitted[1]['ffn_decode']:.3f})"),
        Check("FireQ faster at every prefill batch",
              "direction: prefill speedup > 1 at every benchmark batch (by more than 1 %: a tie is no speedup)",
              None, lowest_prefill, (1.01, 1e9),
              "lowest whole-prefill speedup over batches " + ", ".join(
                  f"{b}: {fitted[b]['prefill']:.2f}x" for b in batches)
              + host_exposed(slowest, amdahl_split(model, fitted_hw, qserve, fireq, engine,
                                                   prefill_shape(slowest, seq, setup["all_logits"])),
                             setup["engine"])),
        Check("prefill speedup below the FFN's at every batch",
              "direction (Amdahl): at each batch the whole prefill gains less than its FFN does, so the highest "
              "prefill / FFN speedup ratio over the batches is below 1 (by more than 1 %: a tie is not below)",
              None, kept[most_kept], (0.0, 0.99),
              f"highest at batch {most_kept}: prefill {fitted[most_kept]['prefill']:.2f}x over FFN "
              f"{fitted[most_kept]['ffn_prefill']:.2f}x; by batch " + ", ".join(
                  f"{b}: {fitted[b]['prefill']:.2f}x / {fitted[b]['ffn_prefill']:.2f}x" for b in batches)),
    ]
    return Outcome(checks, figures=[speedup_figure(fitted, unfitted, setup, fit.start, fit.value)],
                   tables=[fit_table(fit, setup), batch_table(fitted, unfitted, setup),
                           {"title": f"Amdahl split of QServe's prefill, {model.name}, {setup['batch']} x {seq}",
                            "columns": ["part", "share of QServe time", "share of FireQ time", "speedup"],
                            "rows": [[n, f"{s:.1%}", f"{f:.1%}", f"{r:.3f}"] for n, s, f, r in split]}])


def implied_share(paper: float, linear: tuple[str, float, float, float], tolerance: float, value: float) -> str:
    """What the paper's whole-prefill speedup implies of the linear layers' share (Amdahl, at the modelled
    linear speedup), beside the modelled share: the gap to the paper's figure, inside the band or not."""
    where = "Within the band" if abs(value - paper) <= tolerance else "Outside the band"
    if abs(value - paper) <= tolerance / 2:
        return where
    speed = linear[3]
    share = (1.0 - 1.0 / paper) / (1.0 - 1.0 / speed) if speed > 1.0 else float("nan")
    return (f"{where} ({value - paper:+.3f} from the paper's figure, the tolerance {tolerance:.2f}): at a {speed:.2f}x "
            f"linear-layer speedup the paper's {paper}x needs linear layers to "
            f"be {share:.0%} of QServe's prefill, the model has {linear[1]:.0%}: the measured prefill spends "
            + ("more" if share < linear[1] else "less")
            + " time outside the GEMMs (framework, attention, unfused elementwise work) than this roofline of the "
            "transformers forward sees")


PARTS = (("linear layers", kernel_fit.LINEAR_OPERATORS), ("attention", ("attention",)),
         ("elementwise", ("elementwise", "embedding")), ("LM head", ("lm_head",)))


def host_exposed(batch: int, split: list[tuple[str, float, float, float]], engine: str) -> str:
    """Where the host's work (the engine's eager dispatch, launches) takes a larger share of FireQ's prefill than of
    QServe's at `batch` (amdahl_split's last row), what that costs: the faster kernels wait for the host."""
    name, slow_share, fast_share, _ = split[-1]
    if fast_share <= slow_share + 0.01:
        return ""
    linear = next(row for row in split if row[0] == "linear layers")
    return (f"; at batch {batch} the linear layers run {linear[3]:.2f}x faster, but {name} take {fast_share:.0%} of "
            f"FireQ's prefill against {slow_share:.0%} of QServe's: {engine}'s host dispatch, hidden under QServe's "
            "slower kernels, is what FireQ's kernels wait for")


def amdahl_split(model, hardware, slow, fast, engine, shape) -> list[tuple[str, float, float, float]]:
    """(part, share of `slow`'s iteration, share of `fast`'s, speedup) of the iteration's operator groups."""
    slow_total = kernel_fit.operator_time_s(model, hardware, slow, engine, shape)
    fast_total = kernel_fit.operator_time_s(model, hardware, fast, engine, shape)
    rows = []
    for name, operators in PARTS:
        slow_s = kernel_fit.operator_time_s(model, hardware, slow, engine, shape, operators)
        fast_s = kernel_fit.operator_time_s(model, hardware, fast, engine, shape, operators)
        rows.append((name, slow_s / slow_total, fast_s / fast_total, slow_s / fast_s if fast_s else 1.0))
    rest_slow = 1.0 - sum(r[1] for r in rows)
    rest_fast = 1.0 - sum(r[2] for r in rows)
    rows.append(("host and launches", rest_slow, rest_fast,
                 rest_slow * slow_total / (rest_fast * fast_total) if rest_fast > 0 else 1.0))
    return rows


def fit_table(fit, setup: dict[str, Any]) -> dict[str, Any]:
    return {"title": "The one fitted kernel constant",
            "columns": ["constant", "fitted on", "class default", "FFN speedup there", "fitted", "FFN speedup"],
            "rows": [["sync_mma_efficiency (QServe's mma.sync main loop on " + setup["hardware"] + ")",
                      f"{setup['fit_model']} MLP, {setup['fit_batch']} x {setup['fit_seq_len']} tokens, "
                      f"paper {FFN_SPEEDUP}x"
                      + ("" if setup["fit_model"] == PAPER_FIT_MODEL else " (Llama-2-7B's)"), f"{fit.start:g}",
                      f"{fit.start_speedup:.3f}", f"{fit.value:.4f}", f"{fit.fitted_speedup:.3f}"]]}


def batch_table(fitted: dict, unfitted: dict, setup: dict[str, Any]) -> dict[str, Any]:
    rows = [[b, f"{fitted[b]['ffn_prefill']:.3f}", f"{fitted[b]['ffn_decode']:.3f}", f"{fitted[b]['prefill']:.3f}",
             f"{unfitted[b]['ffn_prefill']:.3f}", f"{unfitted[b]['ffn_decode']:.3f}", f"{unfitted[b]['prefill']:.3f}"]
            for b in sorted(fitted)]
    return {"title": f"FireQ speedup over QServe vs batch, {setup['model']} (seq {setup['seq_len']})",
            "columns": ["batch", "FFN, prefill rows", "FFN, decode", "whole prefill", "unfitted FFN prefill",
                        "unfitted FFN decode", "unfitted prefill"], "rows": rows}


def speedup_figure(fitted: dict, unfitted: dict, setup: dict[str, Any], start: float, value: float) -> Any:
    import plotly.graph_objects as go

    xs = sorted(fitted)
    fig = go.Figure()
    for key, name in (("ffn_prefill", f"FFN kernels, batch x {setup['seq_len']} rows"),
                      ("ffn_decode", "FFN kernels, decode (batch rows)"), ("prefill", "whole prefill")):
        fig.add_trace(go.Scatter(x=xs, y=[fitted[b][key] for b in xs], mode="lines+markers",
                                 name=f"{name} (fitted {value:.2f})"))
        fig.add_trace(go.Scatter(x=xs, y=[unfitted[b][key] for b in xs], mode="lines", line={"dash": "dot"},
                                 name=f"{name} (class default {start:g})"))
    # the paper's points, named for the models they are of: on another model they are the paper's, not this one's
    fit_name = ("paper: FFN, Llama-2-7B (fitted point)" if setup["fit_model"] == PAPER_FIT_MODEL else
                f"fitted point: {setup['fit_model']} FFN held to the paper's Llama-2-7B figure")
    fig.add_trace(go.Scatter(x=[setup["fit_batch"]], y=[FFN_SPEEDUP], mode="markers",
                             marker={"symbol": "x", "size": 12}, name=fit_name))
    prefill_name = ("paper: prefill, Llama-3-8B" if setup["model"] == PAPER_MODEL else
                    f"paper: prefill, Llama-3-8B (this run: {setup['model']})")
    fig.add_trace(go.Scatter(x=[setup["batch"]], y=[PREFILL_SPEEDUP], mode="markers",
                             error_y={"type": "constant", "value": PREFILL_TOLERANCE},
                             marker={"symbol": "diamond", "size": 11}, name=prefill_name))
    fig.update_layout(title=f"FireQ (INT4 x FP8) speedup over QServe (INT4 x INT8) vs batch, {setup['model']}, "
                            f"{setup['hardware']}", xaxis={"title": "batch", "type": "log"},
                      yaxis={"title": "speedup (QServe time / FireQ time)"})
    return fig


SCENARIO = Scenario(
    name="fireq", number=4,
    paper="FireQ: Fast INT4-FP8 Kernel and RoPE-aware Quantization for LLM Inference Acceleration",
    claim="INT4xFP8 pipelined kernels run the Llama-2-7B FFN 1.68x and Llama-3-8B prefill 1.26x faster than "
          "QServe's INT4xINT8 main loop on H100; ~1x at batch 1",
    setup=SETUP, run_fn=run, validate=validate, fixed=FIXED)
