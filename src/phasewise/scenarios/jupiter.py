"""Jupiter-1: collaborative edge inference of Vicuna-7B over P Jetson AGX Orin devices (PAPERS.md section 7).

Prefill: the prompt cut into S sub-sequences pipelined through the layer-split stages (later ones attending
to the earlier ones' KV), against sequence-level layer pipelining (S = 1); decode: K outline points decoded
as independent sequences with Medusa heads (mean acceptance an input), against pipelined autoregressive
decoding; the planner picks the split and S of least simulated TTFT (for the decode check: of least time for
the whole request, which sheds layers from the stage that runs the Medusa heads). Every figure is an event simulation
(sim/split_pipeline.py): per-device timelines, per-link shared queues, stage compute from the roofline
cost model, hidden states of tokens x hidden x 2 B crossing the links.
"""

from __future__ import annotations

import math
from typing import Any

from phasewise.plan.edge_split import plan_edge_split
from phasewise.scenarios.base import (
    Check,
    Outcome,
    Param,
    Scenario,
    autoregressive,
    check_with,
    lengths_within_context,
    setup_error,
)
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DecodePlan, SplitRun, run_split, sub_sequence_lengths
from phasewise.sim.split_tensor_parallel import TensorParallelEdge
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.topology import chain_topology

PAPER = "Jupiter: Fast and Resource-Efficient Collaborative Inference of Generative LLMs on Edge Devices"
# The 4-stage split of Vicuna-7B's 32 layers that Jupiter's docs/document.md (ysyisyourbrother/Jupiter @1c60339)
# tabulates beside [8,8,8,8], and the only one it shows for Zephyr-7B: the last stage, which holds the LM head and
# the 5 Medusa heads, keeps 6 layers (its memory 4.2 GB vs 5.0 GB at [8,8,8,8]). A cross-check of the decode split.
AUTHORS_SPLIT = [8, 9, 9, 6]

SETUP = {
    "model": Param("lmsys/vicuna-7b-v1.3", "PAPERS.md section 7: Jupiter's config (Vicuna-7B v1.3, 32 layers)"),
    "hardware": Param("jetson-agx-orin", "PAPERS.md Jupiter-1: a Jetson AGX Orin roofline (LPDDR5 204.8 GB/s)"),
    # at most 8: the split planner's search grows fast with the devices (4: ~7 s, 8: ~57 s on 2 cores)
    "devices": Param(4, "PAPERS.md section 7: 32 layers split [8,8,8,8] over 4 devices", upper=8,
                     lower=2),  # one device has no pipeline to compare against
    "precision": Param("bf16", "PAPERS.md section 7: bf16"),
    "engine": Param("ideal", "assumed: PAPERS.md Jupiter-1 prices device compute by a roofline (no host overhead)"),
    "prompt_tokens": Param(640, "PAPERS.md Jupiter-1: n = 640 (5 sub-sequences of 128)"),
    "sub_sequences": Param(5, "PAPERS.md section 7: num_sub_sequences = 5"),
    "output_tokens": Param(128, "assumed: a short answer, 4 outline points of 32 tokens (lengths not accessible)"),
    "low_mbps": Param(100.0, "PAPERS.md Jupiter-1: B in {100 Mbps, 1 Gbps}"),
    "high_mbps": Param(1000.0, "PAPERS.md Jupiter-1: B in {100 Mbps, 1 Gbps}"),
    "compute_bound_mbps": Param(100000.0, "assumed: links fast enough that transfers vanish, the premise of "
                                          "PAPERS.md's compute-bound pipeline formula"),
    "link_latency_ms": Param(1.0, "assumed: one LAN / Wi-Fi hop between edge devices"),
    "outline_points": Param(4, "PAPERS.md Jupiter-1: K = 4 outline points"),
    "outline_tokens": Param(16, "assumed: the skeleton, ~4 tokens per point, decoded first as one sequence"),
    "medusa_heads": Param(5, "PAPERS.md section 7: Medusa, 5 heads of 1 layer each"),
    "acceptance": Param(2.5, "PAPERS.md Jupiter-1: Medusa mean acceptance a = 2.5",
                        help="tokens a step advances on average, from 1 to 1 + medusa_heads"),
    # at most 64: the planner's time grows with its range of S (16: ~5 s, 32: ~10 s, 64: ~18 s, 160: ~100 s on 2
    # cores), so 64 keeps a run within ~10x the default's time
    "max_sub_sequences": Param(16, "assumed: the planner's range of S (1..16)", upper=64),
}
PAPER_DECODE = (4, 4, 2.5)  # PAPERS.md Jupiter-1: K = 4 outline points on P = 4 devices at a = 2.5: min(K,P) x a = 10x


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: the Medusa acceptance within what a step verifies (DecodePlan's own check), a layer at
    least per device, a token at least per sub-sequence, and the request within the model's context."""
    autoregressive("jupiter", "model", setup["model"])
    check_with("jupiter", {"DecodePlan acceptance": "--set acceptance", "verify_tokens": "1 + medusa_heads"},
               lambda: DecodePlan(points=setup["outline_points"], outline_tokens=setup["outline_tokens"],
                                  verify_tokens=1 + setup["medusa_heads"], acceptance=setup["acceptance"]))
    layers = load_model(setup["model"]).num_layers
    if setup["devices"] > layers:
        raise setup_error("jupiter", "devices", f"at most one device per layer: {setup['model']} has {layers} layers "
                          f"(got devices {setup['devices']})")
    if setup["sub_sequences"] > setup["prompt_tokens"]:
        raise setup_error("jupiter", "sub_sequences, prompt_tokens", f"sub_sequences {setup['sub_sequences']} must be "
                          f"at most prompt_tokens {setup['prompt_tokens']} (a sub-sequence holds a token at least)")
    lengths_within_context("jupiter", setup["model"], setup["prompt_tokens"], setup["output_tokens"])


def run(setup: dict[str, Any]) -> Outcome:
    model = load_model(setup["model"])
    quant, engine = load_quant(setup["precision"]), load_engine(setup["engine"])
    devices, prompt, output = setup["devices"], setup["prompt_tokens"], setup["output_tokens"]
    latency_s = setup["link_latency_ms"] / 1e3
    paper_split = even_split(model.num_layers, devices)
    subs = setup["sub_sequences"]
    ar = DecodePlan()
    outline = DecodePlan(points=setup["outline_points"])
    jupiter = DecodePlan(points=setup["outline_points"], outline_tokens=setup["outline_tokens"],
                         verify_tokens=1 + setup["medusa_heads"], acceptance=setup["acceptance"])
    points_only = DecodePlan(points=jupiter.points, verify_tokens=jupiter.verify_tokens,
                             acceptance=jupiter.acceptance)

    def world(mbps: float):
        topology = chain_topology([setup["hardware"]] * devices, mbps, latency_s, ring=True)
        return topology, [load_hardware(d.hardware) for d in topology.devices]

    def split_model(mbps: float, split: list[int], heads: int = 0) -> SplitModel:
        topology, hardware = world(mbps)
        return SplitModel(model, quant, engine, topology, hardware, split, heads)

    # 1. the prefill pipeline arithmetic, links out of the way
    fast = split_model(setup["compute_bound_mbps"], paper_split)
    fast.check_memory(prompt + output, sub_sequence_lengths(prompt, subs)[0], 1)
    ttft_seq = run_split(fast, prompt, 0, 1).ttft_s
    ttft_sub = run_split(fast, prompt, 0, subs).ttft_s
    stage_s = stage_time(fast, prompt, subs)
    formula_s = (subs + devices - 1) * stage_s
    ideal_speedup = devices * subs / (subs + devices - 1)
    piece = sub_sequence_lengths(prompt, subs)[0]
    device = load_hardware(setup["hardware"])
    ridge = device.ridge_flops_per_byte(quant.on(device).compute_dtype)
    bound = ("memory-bound, each sub-sequence re-reads the stage's weights, so the formula's compute-bound premise "
             "does not hold" if piece < ridge else "compute-bound, the formula's premise")
    # the formula's own premise: the shortest sub-sequences, in multiples of the paper's, whose GEMMs pass the
    # device's ridge (an Orin's ~208 FLOP/B: 256 tokens; the paper's 128 stay below it, checked apart)
    bound_piece = piece * math.ceil(ridge / piece)
    bound_prompt = bound_piece * subs
    fast.check_memory(bound_prompt + output, sub_sequence_lengths(bound_prompt, subs)[0], 1)
    bound_seq = run_split(fast, bound_prompt, 0, 1).ttft_s
    bound_sub = run_split(fast, bound_prompt, 0, subs).ttft_s
    bound_stage_s = stage_time(fast, bound_prompt, subs)

    # 2. decode at the high bandwidth: per-token latency of each mode
    high_plain = split_model(setup["high_mbps"], paper_split)
    high_medusa = split_model(setup["high_mbps"], paper_split, setup["medusa_heads"])
    ar_high = run_split(high_plain, prompt, output, subs, ar)
    outline_high = run_split(high_plain, prompt, output, subs, outline)
    points_high = run_split(high_medusa, prompt, output, subs, points_only)
    even_speedup = ar_high.tpot_s / points_tpot(points_high, output)

    # 3. end to end at each bandwidth: Jupiter (planned split and S, outline + Medusa) vs the baselines
    ends, plans, timeline = [], {}, None
    for label, mbps in (("low", setup["low_mbps"]), ("high", setup["high_mbps"])):
        topology, hardware = world(mbps)
        planned = plan_edge_split(model, quant, engine, topology, hardware, prompt, output,
                                  setup["max_sub_sequences"], setup["medusa_heads"])
        plans[label] = planned
        ours = run_split(split_model(mbps, list(planned.split), setup["medusa_heads"]), prompt, output,
                         planned.sub_sequences, jupiter)
        paper_config = run_split(split_model(mbps, paper_split, setup["medusa_heads"]), prompt, 0, subs)
        layer_pipeline = run_split(split_model(mbps, paper_split), prompt, output, 1, ar)
        tensor_parallel = (TensorParallelEdge(model, quant, engine, topology, hardware).run(prompt, output)
                           if model.num_heads % devices == 0 else None)
        ends.append({"label": label, "mbps": mbps, "jupiter": ours, "layer": layer_pipeline, "tp": tensor_parallel,
                     "paper_ttft_s": paper_config.ttft_s, "plan": planned})
        if label == "low":
            timeline = ours
    single = single_device(model, quant, engine, setup["hardware"], prompt, output)
    low = ends[0]
    reduction_low = low["layer"].end_s / low["jupiter"].end_s
    # what one token's hidden state takes on a link at the low bandwidth (its bytes on the paper's split's first hop)
    hop_s = split_model(setup["low_mbps"], paper_split).boundary_bytes(0, 1) * 8 / (setup["low_mbps"] * 1e6)
    ideal_decode = min(jupiter.points, devices) * jupiter.acceptance
    step = [(jupiter.verify_tokens, prompt, jupiter.verify_tokens)]
    first_step_s, last_step_s = high_medusa.stage_s(0, step), high_medusa.stage_s(devices - 1, step)
    # decode on the split Jupiter's planning gives the whole request (objective "total": prefill, outline and the
    # Medusa points), which sheds layers from the last stage for its heads, as the authors' own pipeline does
    topology, hardware = world(setup["high_mbps"])
    decode_split = list(plan_edge_split(model, quant, engine, topology, hardware, prompt, output,
                                        medusa_heads=setup["medusa_heads"], sub_sequence_options=[subs],
                                        objective="total", decode=points_only).split)

    def medusa_speedup(split: list[int]) -> float:
        return (run_split(split_model(setup["high_mbps"], split), prompt, output, subs, ar).tpot_s
                / points_tpot(run_split(split_model(setup["high_mbps"], split, setup["medusa_heads"]), prompt, output,
                                        subs, points_only), output))

    decode_speedup = medusa_speedup(decode_split)
    authors = ""
    if (model.num_layers, devices) == (sum(AUTHORS_SPLIT), len(AUTHORS_SPLIT)):
        authors = f"; on the authors' {AUTHORS_SPLIT} (Jupiter docs/document.md) {medusa_speedup(AUTHORS_SPLIT):.2f}x"
    checks = [
        Check("prefill pipeline arithmetic",
              "intra-sequence pipelining: T_prefill(S) = (S+P-1) x t_stage(n/S) when transfers vanish",
              1.0, ttft_sub / formula_s, (0.95, 1.05),
              f"simulated TTFT {ttft_sub * 1e3:.1f} ms at S={subs}, P={devices} vs (S+P-1) x {stage_s * 1e3:.1f} ms "
              f"= {formula_s * 1e3:.1f} ms (t_stage: the slowest stage's mean time per {prompt // subs}-token "
              "sub-sequence)"),
        Check("prefill speedup over sequence-level pipelining (compute-bound)",
              f"S={subs} sub-sequences give ~P*S/(S+P-1) = {ideal_speedup:.2f}x over S=1 when a stage is "
              f"compute-bound ({bound_piece}-token sub-sequences, n={bound_prompt}: the shortest multiple of the "
              f"paper's {piece} tokens past the device's ~{ridge:.0f} FLOP/B ridge)",
              round(ideal_speedup, 3), bound_seq / bound_sub, (0.84 * ideal_speedup, 1.02 * ideal_speedup),
              f"TTFT {bound_seq * 1e3:.0f} ms at S=1 vs {bound_sub * 1e3:.0f} ms at S={subs}: a {bound_piece}-token "
              f"sub-sequence costs {bound_stage_s * 1e3:.1f} ms per stage against 1/{subs} of the whole prompt's "
              f"{bound_seq / devices * 1e3:.1f} ms, {bound_seq / devices / subs * 1e3:.1f} ms"),
        Check("prefill speedup at the paper's sub-sequences",
              f"at n={prompt} ({piece}-token sub-sequences) S={subs} gains more than S=1 and at most the "
              f"compute-bound {ideal_speedup:.2f}x",
              None, ttft_seq / ttft_sub, (1.0, 1.02 * ideal_speedup),
              f"TTFT {ttft_seq * 1e3:.0f} ms at S=1 vs {ttft_sub * 1e3:.0f} ms at S={subs}: a {piece}-token "
              f"sub-sequence costs {stage_s * 1e3:.1f} ms per stage, not {ttft_seq / devices / subs * 1e3:.1f} ms "
              f"(1/{subs} of the whole prompt's {ttft_seq / devices * 1e3:.1f} ms); its GEMMs do ~{piece} FLOP "
              f"per weight byte against the device's ridge of ~{ridge:.0f} FLOP/B: {bound}"),
        Check("decode: outline points keep the stages busy",
              f"K={outline.points} outline points decode ~min(K,P) x faster per token than pipelined AR",
              float(min(outline.points, devices)), ar_high.tpot_s / outline_high.tpot_s,
              (0.85 * min(outline.points, devices), 1.02 * min(outline.points, devices)),
              f"per-token {ar_high.tpot_s * 1e3:.1f} ms AR vs {outline_high.tpot_s * 1e3:.1f} ms with "
              f"{outline.points} points at {setup['high_mbps']:.0f} Mbps"),
        Check("decode: outline + Medusa per-token speedup",
              f"per-token latency ~P*t_stage/(min(K,P)*a) vs P*t_stage: min(K,P)*a = {ideal_decode:g}x at "
              f"K={jupiter.points}, P={devices}, a={jupiter.acceptance}"
              + (" (>= 10x at K=4, a=2.5)" if (jupiter.points, devices, jupiter.acceptance) == PAPER_DECODE else
                 " (the paper: >= 10x at K=4, P=4, a=2.5)"),
              ideal_decode, decode_speedup, (0.8 * ideal_decode, 1.05 * ideal_decode),
              f"on the split planned for the whole request ({decode_split}, `edge --objective total`); on the even "
              f"{paper_split} {even_speedup:.2f}x ({ar_high.tpot_s * 1e3:.1f} ms/token pipelined AR vs "
              f"{points_tpot(points_high, output) * 1e3:.1f} ms/token for the points with {setup['medusa_heads']} "
              f"Medusa heads, verifying {jupiter.verify_tokens} tokens a step): a step takes {first_step_s * 1e3:.1f} "
              f"ms on the first stage, {last_step_s * 1e3:.1f} ms on the last, which runs the heads "
              f"({setup['medusa_heads']} LM-head-sized projections the formula leaves out){authors}"),
        Check("end-to-end reduction vs layer pipelining at low bandwidth",
              f"Jupiter cuts end-to-end latency by up to 26.1x vs collaborative-edge baselines "
              f"({setup['low_mbps']:.0f} Mbps here)",
              26.1, reduction_low, (ideal_speedup, 26.1),
              f"layer pipeline (S=1, AR) {low['layer'].end_s:.2f} s vs Jupiter {low['jupiter'].end_s:.2f} s "
              f"(split {list(low['plan'].split)}, S={low['plan'].sub_sequences}: the planner's, TTFT "
              f"{low['plan'].best_s * 1e3:.0f} ms against {low['paper_ttft_s'] * 1e3:.0f} ms at the paper's "
              f"{paper_split}, S={subs}, from which its search starts on like devices); a token's hidden state takes "
              f"{hop_s * 1e3:.1f} ms a link at {setup['low_mbps']:g} Mbps, the {prompt}-token prompt "
              f"{prompt * hop_s:.2f} s"
              + (": the links, not the stages, bind, below the compute-bound formula's gain"
                 if reduction_low < ideal_speedup else "")
              + "; band: at least the prefill formula's gain, at most the paper's best"),
    ]
    return Outcome(checks, figures=figures(plans, timeline), tables=[baseline_table(ends, single)])


def even_split(layers: int, devices: int) -> list[int]:
    base, extra = divmod(layers, devices)
    return [base + (1 if i < extra else 0) for i in range(devices)]


def stage_time(split: SplitModel, prompt: int, subs: int) -> float:
    """The slowest stage's mean compute time per sub-sequence (the formula's t_stage(n/S))."""
    lengths = sub_sequence_lengths(prompt, subs)
    worst = 0.0
    for index in range(len(split.stages)):
        total, cached = 0.0, 0
        for j, length in enumerate(lengths):
            total += split.stage_s(index, [(length, cached, 1 if j == len(lengths) - 1 else 0)])
            cached += length
        worst = max(worst, total / len(lengths))
    return worst


def points_tpot(run: SplitRun, output: int) -> float:
    """Per-token latency of the outline points' phase."""
    return (run.end_s - run.points_start_s) / max(output, 1)


def single_device(model, quant, engine, hardware: str, prompt: int, output: int) -> SplitRun | None:
    """The whole model on one device with plain AR decode, or None when it does not fit."""
    topology = chain_topology([hardware], 1.0)
    split = SplitModel(model, quant, engine, topology, [load_hardware(hardware)], [model.num_layers])
    if not split.fits(prompt + output, prompt, 1):
        return None
    return run_split(split, prompt, output, 1, DecodePlan())


def baseline_table(ends: list[dict[str, Any]], single: SplitRun | None) -> dict[str, Any]:
    rows = []
    for end in ends:
        name = f"{end['mbps']:.0f} Mbps"
        for label, run in (("Jupiter (planned, outline + Medusa)", end["jupiter"]),
                           ("layer pipeline (S=1, AR)", end["layer"]), ("tensor parallel", end["tp"])):
            if run is not None:
                rows.append([name, label, round(run.ttft_s, 3), round(run.tpot_s * 1e3, 1), round(run.end_s, 2),
                             round(run.end_s / end["jupiter"].end_s, 1)])
    if single is not None:  # no links, so no one Jupiter run (one per link bandwidth) to compare it with
        rows.append(["-", "one device", round(single.ttft_s, 3), round(single.tpot_s * 1e3, 1),
                     round(single.end_s, 2), "-"])
    return {"title": "End to end, one request", "columns": ["links", "system", "TTFT s", "TPOT ms", "total s",
                                                            "x Jupiter"], "rows": rows}


def figures(plans: dict[str, Any], timeline: SplitRun | None) -> list[Any]:
    import plotly.graph_objects as go

    ttft = go.Figure()
    for label, planned in plans.items():
        subs = [s for s, _ in planned.by_sub_sequences]
        ttft.add_trace(go.Scatter(x=subs, y=[t * 1e3 for _, t in planned.by_sub_sequences],
                                  mode="lines+markers", name=f"{label} bandwidth"))
    ttft.update_layout(title="TTFT vs sub-sequences S (best split at each S)", xaxis_title="S",
                       yaxis_title="TTFT (ms)")
    out = [ttft]
    if timeline is not None:
        gantt = go.Figure()
        for kind in ("prefill", "decode", "ids"):
            spans = [s for s in timeline.spans if s.label.startswith(kind)]
            if spans:
                gantt.add_trace(go.Bar(base=[s.start_s for s in spans], x=[s.end_s - s.start_s for s in spans],
                                       y=[s.resource for s in spans], orientation="h", name=kind,
                                       hovertext=[s.label for s in spans]))
        gantt.update_layout(title="One request at low bandwidth: where the time goes (devices and links)",
                            xaxis_title="time (s)", barmode="overlay")
        out.append(gantt)
    return out


SCENARIO = Scenario(
    name="jupiter", number=7, paper=PAPER,
    claim="intra-sequence pipelined prefill and outline + Medusa decoding over 4 edge devices cut end-to-end "
          "latency vs layer pipelining (up to 26x at low bandwidth)",
    setup=SETUP, run_fn=run, validate=validate)
