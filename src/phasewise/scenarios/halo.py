"""HALO-1: a phase-aware mapping (prefill GEMMs on analog compute-in-memory, decode on compute-in-DRAM) beats
both single-substrate extremes at low batch and long context, and the AttAcc-like and CENT-like mappings.

Each request (batch 1, prompt x output from PAPERS.md's grid) runs on one chip with three substrates
(halo-2.5d: HBM3 bank-level PIM, an SRAM analog CiM chiplet, digital vector units; every figure sourced or
assumed in the catalog) under four operator mappings (specs/data/mappings.yaml): HALO, all-CiD (CENT-like),
AttAcc-like (attention on CiD, FC GEMMs on CiM) and all-CiM. perf/mapping.py re-costs every operator of the
cost model on its substrate (roofline per substrate, CiM weight reprogramming beyond its capacity, activation
crossings between substrates) and integrates the decode steps over the growing context.
"""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.perf.cost import CostModel
from phasewise.perf.mapping import MappedCost, RequestCost
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
from phasewise.specs.mappings import load_mapping

BASELINES = ("all-cid", "attacc", "all-cim")
ENGINE = "ideal"  # device time only: the chip has no host engine to model
# The paper's figures (HALO abstract, PAPERS.md section 3) and the band of the geomean checks (PAPERS.md HALO-1), fixed
# before the first run: not setup (SCENARIOS.md: no figure is typed in to make a check pass)
PAPER_SPEEDUP_ATTACC = 18.0  # up to 18x geomean speedup over AttAcc
PAPER_SPEEDUP_CENT = 2.5  # 2.5x over CENT (fully CiD mapping)
BAND = 0.30  # geomean within +-30 % of the paper's figure
FIXED = {key: FIXED_FIGURE.format(what=what) for key, what in (
    ("paper_speedup_attacc", f"{PAPER_SPEEDUP_ATTACC:g}x geomean speedup over AttAcc (HALO abstract)"),
    ("paper_speedup_cent", f"{PAPER_SPEEDUP_CENT:g}x geomean speedup over CENT (HALO abstract)"),
    ("band", f"+-{BAND:.0%} band of the geomean checks (PAPERS.md HALO-1)"))}
# Request evaluations a run may make (models x prompts x outputs x decode_samples, for each of the 4 mappings, twice):
# 10x the default grid's 2 x 4 x 3 x 9 = 216, so a run stays within ~10x the default's time
MAX_EVALUATIONS = 2160
LABEL = {"all-cid": "all-CiD (CENT-like)", "attacc": "AttAcc-like", "all-cim": "all-CiM"}

SETUP = {
    "models": Param(["meta-llama/Llama-2-7b-hf", "Qwen/Qwen3-8B"], "PAPERS.md section 3: HALO evaluates LLaMA-2 7B "
                    "and Qwen3 8B"),
    "hardware": Param("halo-2.5d", "assumed: the catalog's HALO-style chip (HALO's own parameters are not accessible; "
                      "each substrate figure is sourced or assumed in hardware_specs.yaml); any chip YAML with "
                      "digital, cid and cim substrates"),
    "mapping": Param("halo", "PAPERS.md section 3: prefill GEMMs -> CiM, decode GEMVs -> CiD, non-GEMM ops on "
                     "vector units (a mapping name or YAML)"),
    "precision": Param("int8", "assumed: the analog CiM multiplies 8-bit weights; every mapping runs the same model"),
    "kv_dtype": Param("int8", "assumed: 8-bit K/V, the operand width of the CiM's crossbars (attention on CiM), the "
                      "same KV cache for every mapping"),
    "batch": Param(1, "PAPERS.md section 3: low-batch interactive inference"),
    "prompts": Param([1024, 4096, 16384, 32768], "PAPERS.md HALO-1: prompt in {1k, 4k, 16k, 32k} on LLaMA-2-7B, "
                     "past its 4,096-token context: HALO targets long-context inference on LLaMA-2 7B, and the "
                     "paper's context lengths (and how it runs LLaMA-2 past 4k) are not accessible, so the cost model "
                     "runs the architecture there as given. A request is held within its model's context or this "
                     "grid's longest, 32k + 2k"),
    "outputs": Param([128, 512, 2048], "PAPERS.md HALO-1: output in {128, 512, 2k}"),
    # a generous but finite range around PAPERS.md's k ~ 4-16 (bank-level PIM's internal over external bandwidth)
    "cid_internal_multiple": Param(0.0, "PAPERS.md HALO-1: CiD internal BW = k x external, k ~ 4-16; 0 keeps the "
                                   "chip's figure (halo-2.5d: 16); the CiD's FLOP/s scale with k, the chip's FLOP "
                                   "per internal byte kept (its MAC lanes sit by the banks whose reads make the "
                                   "multiple: hardware_specs.yaml halo-2.5d)", upper=64.0,
                                   help="0 (the chip's own) or from 1 to 64"),
    "breakdown_prompt": Param(4096, "assumed: a mid-grid point for the per-operator breakdown table"),
    "breakdown_output": Param(512, "assumed: a mid-grid point for the per-operator breakdown table"),
    # at least the first and the last step (what makes the trapezoid sum exact where a step's cost is linear); at most
    # what keeps a run within ~10x the default's evaluations (MAX_EVALUATIONS over the default 24-point grid)
    "decode_samples": Param(9, "assumed: contexts evaluated per decode run (each step's cost is linear in its context "
                            "between them; the trapezoid sum is exact there)", lower=2, upper=90),
}
# the longest request of the paper's own grid (PAPERS.md HALO-1): allowed past a model's shorter context
GRID_LONGEST = max(SETUP["prompts"].value) + max(SETUP["outputs"].value)


def validate(setup: dict[str, Any]) -> None:
    """The setup's values together, before anything runs: the chip's CiD multiple, the KV dtype, every request within
    each model's context (or the paper's grid's longest), each model in the chip's memory, and the grid within the
    run's bound."""
    autoregressive("halo", "models", setup["models"])
    k = setup["cid_internal_multiple"]
    if 0 < k < 1:
        raise setup_error("halo", "cid_internal_multiple", f"0 for the chip's own, or from 1 to 64 (got {k:g})")
    check_with("halo", {"--kv-dtype": "kv_dtype", "--precision": "precision"},
               lambda: load_quant(setup["precision"], setup["kv_dtype"]))
    for model in setup["models"]:
        lengths_within_context("halo", model, max(setup["prompts"]), max(setup["outputs"]),
                               keys="prompts + outputs (the longest)", beyond=GRID_LONGEST)
    lengths_within_context("halo", setup["models"][0], setup["breakdown_prompt"], setup["breakdown_output"],
                           keys="breakdown_prompt + breakdown_output", beyond=GRID_LONGEST)
    longest = max(max(setup["prompts"]) + max(setup["outputs"]), setup["breakdown_prompt"] + setup["breakdown_output"])
    for model in setup["models"]:  # each model's weights and a batch of the longest request's KV in the chip's memory
        why = memory_refusal(model, setup["hardware"], precision=setup["precision"], kv_dtype=setup["kv_dtype"],
                             engine=ENGINE, batch=setup["batch"], prompt_len=max(setup["prompts"]),
                             context_len=longest)
        if why is not None:
            raise setup_error("halo", "models, precision, hardware",
                              f"{model} in {setup['precision']} does not fit '{setup['hardware']}': {why} "
                              f"(batch {setup['batch']} of the longest request, {longest:,} tokens, as `phasewise "
                              "estimate` sizes it); a smaller model or precision, or a chip with more memory")
    evaluations = len(setup["models"]) * len(setup["prompts"]) * len(setup["outputs"]) * setup["decode_samples"]
    if evaluations > MAX_EVALUATIONS:
        raise setup_error("halo", "models, prompts, outputs, decode_samples",
                          f"{len(setup['models'])} x {len(setup['prompts'])} x {len(setup['outputs'])} x "
                          f"{setup['decode_samples']} = {evaluations:,} request evaluations; at most "
                          f"{MAX_EVALUATIONS:,} (10x the paper's grid) keep a run within seconds")
    if len(set(setup["outputs"])) < 2:
        # the two "grows with" checks compare points of different outputs (and so prompt/output ratios)
        raise setup_error("halo", "outputs", f"at least two different output lengths: the speedups' growth with the "
                          f"output (and the prompt/output ratio) compares points (got {setup['outputs']})")


def chip(setup: dict[str, Any], write_scale: float = 1.0):
    """The chip with the setup's CiD multiple (0: its own), its FLOP/s scaled with it (the chip's FLOP per internal
    byte kept), and its CiM write rate scaled by `write_scale`."""
    hw = load_hardware(setup["hardware"])
    k = setup["cid_internal_multiple"]
    parts = []
    for part in hw.substrates:
        if part.kind == "cid" and k:
            part = part.model_copy(update={"internal_bandwidth_multiple": float(k),
                                           "flops_per_s": part.flops_per_s * k / part.internal_bandwidth_multiple})
        if part.kind == "cim" and write_scale != 1.0:
            part = part.model_copy(update={"program_rows_per_s": part.program_rows_per_s * write_scale})
        parts.append(part)
    return hw.model_copy(update={"substrates": tuple(parts)})


def sweep(setup: dict[str, Any], hw) -> dict[tuple[str, int, int], dict[str, RequestCost]]:
    """(model, prompt, output) -> mapping -> the request's cost."""
    quant = load_quant(setup["precision"], setup["kv_dtype"])
    engine = load_engine(ENGINE)
    mappings = {name: load_mapping(name) for name in (setup["mapping"], *BASELINES)}
    out: dict[tuple[str, int, int], dict[str, RequestCost]] = {}
    for model_name in setup["models"]:
        cm = CostModel(load_model(model_name), hw, quant, engine)
        costs = {name: MappedCost(cm, mapping) for name, mapping in mappings.items()}
        for prompt in setup["prompts"]:
            for output in setup["outputs"]:
                out[(model_name, prompt, output)] = {
                    name: mc.request(prompt, output, setup["batch"], setup["decode_samples"])
                    for name, mc in costs.items()}
    return out


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def speedups(points: dict, proposed: str, baseline: str, energy: bool = False) -> dict[tuple, float]:
    attr = "energy_j" if energy else "latency_s"
    return {key: getattr(runs[baseline], attr) / getattr(runs[proposed], attr) for key, runs in points.items()}


def concordance(over_cid: dict[tuple, float]) -> tuple[float, int]:
    """Share of point pairs (same model, different prompt/output ratio) whose speedup orders as their ratio."""
    good = total = 0
    keys = list(over_cid)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            ratio_a, ratio_b = a[1] / a[2], b[1] / b[2]
            if a[0] != b[0] or ratio_a == ratio_b:
                continue
            total += 1
            good += (over_cid[a] - over_cid[b]) * (ratio_a - ratio_b) > 0
    return (good / total if total else math.nan), total


def output_growth(over_cim: dict[tuple, float], outputs: list[int]) -> tuple[float, list[str]]:
    """Share of (model, prompt, consecutive outputs) where the speedup over all-CiM grows with the output."""
    ordered = sorted(set(outputs))
    good = total = 0
    misses = []
    for model, prompt in sorted({(k[0], k[1]) for k in over_cim}):
        for short, long in zip(ordered, ordered[1:]):
            total += 1
            if over_cim[(model, prompt, long)] > over_cim[(model, prompt, short)]:
                good += 1
            else:
                misses.append(f"{model.split('/')[-1]} {prompt}/{short}->{long}")
    return (good / total if total else math.nan), misses


def point_name(key: tuple) -> str:
    """A grid point as the checks name it: the model's short name, prompt/output."""
    return f"{key[0].split('/')[-1]} {key[1]}/{key[2]}"


def run(setup: dict[str, Any]) -> Outcome:
    proposed = setup["mapping"]
    if not setup["prompts"] or not setup["outputs"] or not setup["models"]:
        raise PhasewiseError("reproduce halo: models, prompts and outputs need at least one value each")
    hw = chip(setup)
    cid = next((p for p in hw.substrates if p.kind == "cid"), None)
    cim = next((p for p in hw.substrates if p.kind == "cim"), None)
    if cid is None or cim is None:
        raise PhasewiseError(f"reproduce halo: hardware '{hw.key}' needs a cid and a cim substrate")
    points = sweep(setup, hw)
    over = {b: speedups(points, proposed, b) for b in BASELINES}
    saving = {b: speedups(points, proposed, b, energy=True) for b in BASELINES}
    worst_key = max(points, key=lambda k: points[k][proposed].latency_s
                    / min(points[k]["all-cid"].latency_s, points[k]["all-cim"].latency_s))
    worst = points[worst_key][proposed].latency_s / min(points[worst_key]["all-cid"].latency_s,
                                                       points[worst_key]["all-cim"].latency_s)
    conc, pairs = concordance(over["all-cid"])
    growth, misses = output_growth(over["all-cim"], setup["outputs"])
    gm = {b: geomean(list(over[b].values())) for b in BASELINES}
    gm_energy = {b: geomean(list(saving[b].values())) for b in BASELINES}
    # what drives the AttAcc gap: the same sweep with the CiM's weights written at a tenth of the HBM rate
    # (NVM-like write-verify) instead of at the HBM rate
    slow_scale = cim.weight_source_bandwidth_bytes_per_s / 10 / cim.program_bandwidth_bytes_per_s
    slow = sweep(setup, chip(setup, write_scale=slow_scale))
    gm_slow = geomean(list(speedups(slow, proposed, "attacc").values()))
    band, paper_a, paper_c = BAND, PAPER_SPEEDUP_ATTACC, PAPER_SPEEDUP_CENT
    precision = setup["precision"]
    weight_bits = 8.0 * load_quant(precision, setup["kv_dtype"]).weight_bytes_per_param  # as MappedCost slices them
    best_key = max(over["attacc"], key=over["attacc"].get)
    least_key = min(over["attacc"], key=over["attacc"].get)
    best_point, least_point = over["attacc"][best_key], over["attacc"][least_key]
    write_bw = min(cim.program_bandwidth_bytes_per_s, cim.weight_source_bandwidth_bytes_per_s)
    decode_read = cid_decode_read(points, proposed, cid, precision, weight_bits)
    checks = [
        Check("HALO at or below both extremes",
              "the phase-aware mapping's request latency is at or below all-CiD's and all-CiM's at every point "
              "(largest ratio of its latency to the better extreme)",
              None, worst, (0.0, 1.0),
              f"worst at {worst_key[0].split('/')[-1]} {worst_key[1]}/{worst_key[2]}: prefill on CiM beats CiD's "
              f"{cid.flops_per_s / 1e12:.0f} TFLOP/s; decode on the CiD {decode_read}, where the CiM would "
              "reprogram them at the HBM rate"),
        Check("speedup over all-CiD grows with prompt/output",
              f"the speedup over the CENT-like mapping grows with the prompt/output ratio (share of {pairs} point "
              "pairs, same model, whose speedups order as their ratios)",
              None, conc, (0.9, 1.0),
              "CENT-like prefill runs the GEMMs at the CiD's FLOP/s; HALO's decode is the same as CENT's, so the "
              "gain is the prefill's share of the request"),
        Check("speedup over all-CiM grows with output length",
              "at every prompt, the speedup over the all-CiM mapping grows with the output length (share of "
              "consecutive output lengths)",
              None, growth, (1.0, 1.0),
              "all-CiM reprograms the weights (and KV) beyond its "
              f"{cim.capacity_bytes / 2**20:.0f} MiB every decode step at {write_bw / 1e12:.2f} TB/s"
              + (f"; misses: {', '.join(misses)}" if misses else "")),
        Check("geomean speedup over AttAcc-like",
              f"geomean speedup of HALO over the attention-optimized (AttAcc-like) mapping over the grid, against "
              f"the paper's {paper_a:g}x", paper_a, gm["attacc"], (paper_a * (1 - band), paper_a * (1 + band)),
              f"AttAcc-like keeps the FC GEMMs on the CiM in decode: each step reprograms the weights at the HBM's "
              f"external rate; HALO's decode on the CiD {decode_read}, so the per-point speedup runs from "
              f"{least_point:.2f}x ({point_name(least_key)}) to {best_point:.1f}x ({point_name(best_key)}); 18x needs "
              "CiM writes well "
              f"below the HBM rate (written at a tenth of the HBM rate: geomean {gm_slow:.1f}x) or FC on weaker units"),
        Check("geomean speedup over all-CiD (CENT-like)",
              f"geomean speedup of HALO over the fully-CiD (CENT-like) mapping over the grid, against the paper's "
              f"{paper_c:g}x", paper_c, gm["all-cid"], (paper_c * (1 - band), paper_c * (1 + band)),
              f"prefill GEMMs at the CiM's {cim.macs_per_s(weight_bits) * 2 / 1e12:.0f} TOPS ({precision} "
              f"weights in {cim.slices(weight_bits)} cell slices) vs the CiD's "
              f"{cid.flops_per_s / 1e12:.0f} TFLOP/s: up to {max(over['all-cid'].values()):.1f}x at long prompts, "
              f"{min(over['all-cid'].values()):.2f}x where decode dominates (same decode on the CiD)"),
        Check("HALO saves energy over AttAcc-like and CENT-like",
              "the paper reports energy improvements (magnitude not accessible): geomean energy ratio baseline / HALO "
              "over the grid, the smaller of the two baselines (by more than 1 %: a tie saves nothing)",
              None, min(gm_energy["attacc"], gm_energy["all-cid"]), (1.01, 1e6),
              f"geomean energy saving: AttAcc-like {gm_energy['attacc']:.2f}x (weights reread from HBM and written "
              f"every decode step), CENT-like {gm_energy['all-cid']:.2f}x (prefill FLOPs at the CiD's pJ/FLOP), "
              f"all-CiM {gm_energy['all-cim']:.2f}x"),
    ]
    return Outcome(checks, figures=figures(setup, points, over, proposed),
                   tables=[grid_table(points, over, proposed), breakdown_table(setup, hw, proposed)])


def cid_decode_read(points: dict, proposed: str, cid, precision: str, weight_bits: float) -> str:
    """How fast `proposed`'s decode FC GEMVs read their weights on the CiD, as a multiple of the HBM's external rate,
    and what bounds it: its FLOP/s or its internal bandwidth (the first decode step of the longest point's FFN
    operators, as perf/mapping.py costs them)."""
    key = max(points, key=lambda k: (k[1], k[2]))
    ffn = [op for op in points[key][proposed].decode_first.operators if op.op_class == "ffn" and op.kind == "cid"]
    if not ffn:
        return f"runs no FFN ({proposed} puts none on the CiD's {cid.flops_per_s / 1e12:.0f} TFLOP/s)"
    rate = sum(op.stationary_bytes for op in ffn) / sum(op.time_s for op in ffn)
    multiple = rate / cid.external_bandwidth_bytes_per_s
    reads = f"reads the weights at {multiple:.1f}x the HBM rate"
    if sum(op.compute_s for op in ffn) >= sum(op.memory_s for op in ffn):
        return (f"{reads}, compute-bound: its {cid.flops_per_s / 1e12:.0f} TFLOP/s at {16 / weight_bits:g} FLOPs per "
                f"{precision} weight byte, below its {cid.internal_bandwidth_multiple:g}x internal bandwidth")
    return (f"{reads}, bound by its {cid.internal_bandwidth_multiple:g}x internal bandwidth, under its "
            f"{cid.flops_per_s / 1e12:.0f} TFLOP/s")


def grid_table(points: dict, over: dict, proposed: str) -> dict[str, Any]:
    rows = []
    for key, runs in points.items():
        rows.append([key[0].split("/")[-1], key[1], key[2], f"{runs[proposed].latency_s:.3f}",
                     *(f"{runs[b].latency_s:.3f}" for b in BASELINES), *(f"{over[b][key]:.2f}x" for b in BASELINES),
                     f"{runs[proposed].energy_j:.2f}", f"{runs['all-cid'].energy_j:.2f}"])
    return {"title": f"Request latency (s) and speedup of {proposed} per point; energy (J)",
            "columns": ["model", "prompt", "output", f"{proposed} s", *(f"{LABEL[b]} s" for b in BASELINES),
                        *(f"vs {LABEL[b]}" for b in BASELINES), f"{proposed} J", "all-CiD J"],
            "rows": rows}


def breakdown_table(setup: dict[str, Any], hw, proposed: str) -> dict[str, Any]:
    """Per-operator latency and energy on its substrate, per mapping: prefill and one decode step."""
    model = setup["models"][0]
    point = {**setup, "models": [model], "prompts": [setup["breakdown_prompt"]], "outputs": [setup["breakdown_output"]]}
    runs = next(iter(sweep(point, hw).values()))
    rows = []
    for name, req in runs.items():
        for it in (req.prefill, req.decode_first):
            for op in it.operators:
                rows.append([name, it.phase, op.name, op.op_class, op.substrate, f"{op.time_s * 1e3:.3f}",
                             f"{op.energy_j * 1e3:.3f}", f"{op.programmed_bytes / 1e6:.1f}"])
            for m in it.movements:
                rows.append([name, it.phase, f"move {m.edge}", "movement", f"{m.source}->{m.target}",
                             f"{m.time_s * 1e3:.3f}", f"{m.energy_j * 1e3:.3f}", ""])
    return {"title": f"Per-operator latency and energy per mapping: {model.split('/')[-1]}, prefill of "
                     f"{setup['breakdown_prompt']} tokens and the first decode step",
            "columns": ["mapping", "phase", "operator", "class", "substrate", "time ms", "energy mJ", "programmed MB"],
            "rows": rows}


def figures(setup: dict[str, Any], points: dict, over: dict, proposed: str) -> list[Any]:
    import plotly.graph_objects as go

    labels = [f"{k[0].split('/')[-1]} {k[1] // 1024}k/{k[2]}" for k in points]
    bars = go.Figure()
    for b in BASELINES:
        bars.add_trace(go.Bar(x=labels, y=[over[b][k] for k in points], name=f"vs {LABEL[b]}"))
    bars.update_layout(title=f"Speedup of {proposed} per request (prompt/output), batch {setup['batch']}",
                       barmode="group", yaxis={"type": "log", "title": "speedup (x)"})
    key = next(iter(points))
    stack = go.Figure()
    runs = points[key]
    classes = ("embedding", "norms", "qkv", "attention", "o_proj", "ffn", "lm_head")
    for op_class in classes:
        stack.add_trace(go.Bar(x=list(runs), y=[sum(op.time_s for op in r.prefill.operators if op.op_class == op_class)
                                                + r.decode_s * _share(r, op_class) for r in runs.values()],
                               name=op_class))
    stack.add_trace(go.Bar(x=list(runs), y=[sum(m.time_s for m in r.prefill.movements)
                                            + r.decode_s * _share(r, "movement") for r in runs.values()],
                           name="movement"))
    stack.update_layout(title=f"Latency by operator class, {key[0].split('/')[-1]} {key[1]}/{key[2]} (s)",
                        barmode="stack")
    return [bars, stack]


def _share(req: RequestCost, op_class: str) -> float:
    """The first decode step's share of its latency spent in `op_class` (or 'movement')."""
    it = req.decode_first
    if op_class == "movement":
        part = sum(m.time_s for m in it.movements)
    else:
        part = sum(op.time_s for op in it.operators if op.op_class == op_class)
    return part / it.latency_s if it.latency_s else 0.0


SCENARIO = Scenario(
    name="halo", number=3,
    paper="HALO: Memory-Centric Heterogeneous Accelerator with 2.5D Integration for Low-Batch LLM Inference",
    claim="a phase-aware mapping (prefill GEMMs on analog CiM, decode on CiD) is at or below both single-substrate "
          "extremes and beats the AttAcc-like and CENT-like mappings (18x, 2.5x geomean)",
    setup=SETUP, run_fn=run, validate=validate, fixed=FIXED)
