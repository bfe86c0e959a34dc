"""HAT-1: device-cloud U-shaped inference with prompt chunking and speculative decoding (PAPERS.md section 9).

Every device holds the model's input and output layers plus a small adapter (so input + adapter + output is
its draft model); one 8-GPU cloud server holds the middle layers. Prefill: the prompt's hidden states go up
in chunks whose size the planner picks per device (plan/hat_chunk.py), so uploading a chunk overlaps the
cloud's compute of the previous one; decode: the device drafts k tokens, the cloud verifies k+1 positions in
one middle-model pass. Every figure is an event simulation (sim/device_cloud.py): per-device timelines,
per-device up- and downlinks, cloud GPUs that batch the queued chunks and verify steps of many devices, stage
compute from the roofline cost model, hidden states of tokens x hidden x 2 B on the links.
"""

from __future__ import annotations

from typing import Any

from phasewise.plan.hat_chunk import plan_chunk
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
from phasewise.sim.deployment import SpecDecode
from phasewise.sim.device_cloud import CloudRun, DeviceRequest, UShapedCost, run_device_cloud
from phasewise.specs import load_engine, load_model, load_quant
from phasewise.specs.device_cloud import DeviceCloud

PAPER = "A Novel Hat-Shaped Device-Cloud Collaborative Inference Framework for Large Language Models"

SETUP = {
    "model": Param("meta-llama/Llama-2-7b-hf", "PAPERS.md HAT-1: a 7B model (d = 4096; the paper's model names "
                                               "are not accessible, Llama-2-7B is one such)"),
    "device_hardware": Param("jetson-agx-orin", "PAPERS.md section 9: NVIDIA Jetson devices (AGX Orin roofline)"),
    "cloud_hardware": Param("a6000", "PAPERS.md section 9: a server with 8x NVIDIA A6000"),
    "cloud_gpus": Param(8, "PAPERS.md section 9: 8x A6000 (each a copy of the middle model, data parallel: "
                           "assumed, the paper's placement is not accessible)"),
    # at most 10x the default: the testbed's simulations grow linearly with the devices; at least 2: the queueing
    # check compares the testbed's devices with one device alone
    "devices": Param(30, "PAPERS.md section 9: 30 Jetson devices", upper=300, lower=2),
    "precision": Param("fp16", "PAPERS.md HAT-1: FP16 hidden states (2d bytes per token), FP16 compute"),
    "engine": Param("ideal", "assumed: PAPERS.md HAT-1 prices compute by rooflines (no host overhead)"),
    "uplink_mbps": Param(100.0, "PAPERS.md HAT-1: uplink B in {20, 50, 100, 200} Mbps (the middle one)"),
    "downlink_mbps": Param(100.0, "assumed: a symmetric link, the testbed's devices and server on one network "
                                  "(the paper's link speeds are not accessible)"),
    "sweep_mbps": Param([20.0, 50.0, 100.0, 200.0], "PAPERS.md HAT-1: B in {20, 50, 100, 200} Mbps"),
    "latency_ms": Param(10.0, "assumed: one-way device-cloud delay of a nearby server (~20 ms round trip)"),
    "prompt_tokens": Param(1024, "PAPERS.md HAT-1: prompt n in {512, 1k, 2k} (the middle one)"),
    "output_tokens": Param(64, "assumed: a short answer (lengths not accessible)"),
    "input_layers": Param(1, "assumed: the first decoder layer on the device (HAT's split point not accessible)"),
    "output_layers": Param(1, "assumed: the last decoder layer on the device"),
    "adapter_layers": Param(1, "assumed: a lightweight adapter of one decoder layer between them (the draft model)"),
    "draft_tokens": Param(4, "PAPERS.md HAT-1: draft length 4-8"),
    "acceptance": Param(0.8, "PAPERS.md HAT-1: acceptance 0.6-0.9 (i.i.d. per token)",
                        help="below 1 (SpecDecode's bound: every draft accepted is no draft model)"),
    "min_chunk_tokens": Param(1, "assumed: the chunk search starts at one token (powers of two up to n)",
                              help="at most prompt_tokens"),
    "max_batch_tokens": Param(8192, "assumed: a cloud GPU's token budget per batched forward"),
}


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: a chunk search with a size below the whole prompt (the interior-optimum check compares the
    smallest chunk with the unchunked prompt), and the request within the model's context."""
    autoregressive("hat", "model", setup["model"])
    if setup["min_chunk_tokens"] >= setup["prompt_tokens"]:
        raise setup_error("hat", "min_chunk_tokens, prompt_tokens", f"min_chunk_tokens {setup['min_chunk_tokens']} "
                          f"must be below prompt_tokens {setup['prompt_tokens']} (the search needs a chunk smaller "
                          "than the whole prompt)")
    lengths_within_context("hat", setup["model"], setup["prompt_tokens"], setup["output_tokens"])
    check_with("hat", {"acceptance": "--set acceptance", "draft_tokens": "--set draft_tokens"},
               lambda: SpecDecode(draft_tokens=setup["draft_tokens"], acceptance=setup["acceptance"]))


def run(setup: dict[str, Any]) -> Outcome:
    model = load_model(setup["model"])
    quant, engine = load_quant(setup["precision"]), load_engine(setup["engine"])
    prompt, output, devices = setup["prompt_tokens"], setup["output_tokens"], setup["devices"]
    spec = SpecDecode(draft_tokens=setup["draft_tokens"], acceptance=setup["acceptance"])

    def world(uplink_mbps: float, count: int = devices, downlink_mbps: float | None = None) -> DeviceCloud:
        return DeviceCloud(devices=count, device_hardware=setup["device_hardware"],
                           cloud_hardware=setup["cloud_hardware"], cloud_gpus=setup["cloud_gpus"],
                           uplink_mbps=uplink_mbps, downlink_mbps=downlink_mbps or setup["downlink_mbps"],
                           latency_s=setup["latency_ms"] / 1e3, input_layers=setup["input_layers"],
                           output_layers=setup["output_layers"], adapter_layers=setup["adapter_layers"])

    testbed = world(setup["uplink_mbps"])
    cost = UShapedCost(model, quant, engine, testbed)
    per_gpu = -(-devices // setup["cloud_gpus"])
    cost.check_memory(prompt + output, prompt, per_gpu)

    # 1. TTFT vs chunk size, one device alone, at each uplink: the planner's choice per uplink
    plans = {mbps: plan_chunk(model, quant, engine, world(mbps, 1), prompt, setup["min_chunk_tokens"])
             for mbps in sorted(set(setup["sweep_mbps"]) | {setup["uplink_mbps"]})}
    plan = plans[setup["uplink_mbps"]]
    curve = dict(plan.ttft_by_chunk)
    smallest, whole = curve[min(curve)], curve[prompt]
    interior = 1.0 - plan.ttft_s / min(smallest, whole)
    low, high = min(setup["sweep_mbps"]), max(setup["sweep_mbps"])

    # 2. the testbed: every device sends its prompt at once, chunked at its planned size or in one piece
    def testbed_run(chunk: int, speculative: SpecDecode | None, count: int = devices) -> CloudRun:
        requests = [DeviceRequest(prompt, output, chunk)] * count
        return run_device_cloud(model, quant, engine, testbed, requests, speculative, setup["max_batch_tokens"], cost)

    hat = testbed_run(plan.chunk_tokens, spec)
    unchunked = testbed_run(prompt, spec)
    plain = testbed_run(plan.chunk_tokens, None)
    lone = testbed_run(plan.chunk_tokens, spec, 1)
    ttft_cut = 100.0 * (1.0 - hat.mean_ttft_s / unchunked.mean_ttft_s)
    tbt_cut = 100.0 * (1.0 - hat.mean_tbt_s / plain.mean_tbt_s)
    up_s = cost.up_bytes(prompt) * 8 / (setup["uplink_mbps"] * 1e6)
    cloud_s = cost.middle_s([(prompt, 0, 0)])

    # PAPERS.md HAT-1's condition for its band: one device on an uplink where t_up(n) = t_cloud(n)
    # (the downlink scaled with it: the setup's downlink / uplink ratio kept)
    balanced_mbps = cost.up_bytes(prompt) * 8 / cloud_s / 1e6
    balanced_down_mbps = setup["downlink_mbps"] * balanced_mbps / setup["uplink_mbps"]
    balanced = plan_chunk(model, quant, engine, world(balanced_mbps, 1, balanced_down_mbps), prompt,
                          setup["min_chunk_tokens"])
    balanced_whole = dict(balanced.ttft_by_chunk)[prompt]
    balanced_cut = 100.0 * (1.0 - balanced.ttft_s / balanced_whole)

    def slowest_stage(uplink_mbps: float) -> str:
        """The slowest of a planned chunk's pipeline stages (TTFT(c)'s max term, PAPERS.md HAT-1) at that uplink:
        its upload, its hidden states back down to the output layers, the cloud's forward, the device's layers."""
        chunk = plans[uplink_mbps].chunk_tokens
        stages = {"the uplink": cost.up_bytes(chunk) * 8 / (uplink_mbps * 1e6),
                  "the downlink": cost.down_bytes(chunk) * 8 / (setup["downlink_mbps"] * 1e6),
                  "the cloud forward": cost.middle_s([(chunk, 0, 0)]),
                  "the device layers": cost.input_s(chunk, 0) + cost.output_s(chunk, 0, 0)}
        name = max(stages, key=stages.get)
        return f"{name} ({stages[name] * 1e3:.1f} ms a chunk)"

    # a verify cycle: the device drafts k tokens, then the round trip through the cloud verifies them
    cycle_s = hat.mean_tbt_s * spec.tokens_per_step
    drafting_s = spec.draft_tokens * cost.draft_s(prompt)

    checks = [
        Check("TTFT vs chunk size has an interior optimum",
              "small chunks pay a forward each, large ones pipeline nothing: TTFT(c) is U-shaped",
              None, interior, (0.01, 1.0),
              f"one device at {setup['uplink_mbps']:g} Mbps, n={prompt}: TTFT {plan.ttft_s * 1e3:.0f} ms at "
              f"c*={plan.chunk_tokens} vs {smallest * 1e3:.0f} ms at c={min(curve)} and {whole * 1e3:.0f} ms at "
              f"c=n (figure: the margin below the better end)"),
        Check("the chunk size moves with the uplink",
              "a faster uplink makes each chunk's upload shorter, so the best chunk grows (c* is a power of two: "
              "a ratio of 2 or more)",
              None, plans[high].chunk_tokens / plans[low].chunk_tokens, (2.0, 1e9),
              f"c* = {plans[low].chunk_tokens} at {low:g} Mbps, {plans[high].chunk_tokens} at {high:g} Mbps "
              f"(figure: their ratio); the slowest stage at c*: {slowest_stage(low)} at {low:g} Mbps, "
              f"{slowest_stage(high)} at {high:g} Mbps"),
        Check("TTFT reduction from prompt chunking (testbed)",
              "HAT's chunked upload cuts TTFT by 41-54 % vs sending the prompt in one piece",
              [41.0, 54.0], ttft_cut, (41.0, 54.0),
              f"{devices} devices, {setup['cloud_gpus']} cloud GPUs, all prompts at once: mean TTFT "
              f"{hat.mean_ttft_s * 1e3:.0f} ms at c*={plan.chunk_tokens} vs {unchunked.mean_ttft_s * 1e3:.0f} ms "
              f"unchunked; t_up(n) = {up_s * 1e3:.0f} ms, t_cloud(n) = {cloud_s * 1e3:.0f} ms for one device"),
        Check("TTFT reduction from prompt chunking where t_up(n) = t_cloud(n)",
              "PAPERS.md HAT-1: chunking cuts TTFT by 41-54 % vs c=n when the prompt's upload takes as long as its "
              "cloud forward (one device)",
              [41.0, 54.0], balanced_cut, (41.0, 54.0),
              f"one device at {balanced_mbps:.0f} Mbps up, {balanced_down_mbps:.0f} down (t_up(n) = t_cloud(n) = "
              f"{cloud_s * 1e3:.0f} ms): TTFT "
              f"{balanced.ttft_s * 1e3:.0f} ms at c*={balanced.chunk_tokens} vs {balanced_whole * 1e3:.0f} ms at c=n; "
              "two equal stages pipelined at most halve it, less the device's layers and each chunk's overhead"),
        Check("TBT reduction from speculative decoding (testbed)",
              "the device drafts, the cloud verifies: TBT -41 to -77 % vs U-shaped autoregressive decoding",
              [41.0, 77.0], tbt_cut, (41.0, 77.0),
              f"mean TBT {hat.mean_tbt_s * 1e3:.1f} ms with k={spec.draft_tokens} drafts at acceptance "
              f"{spec.acceptance} ({spec.tokens_per_step:.2f} tokens per verify) vs {plain.mean_tbt_s * 1e3:.1f} ms "
              f"plain: a verify cycle of {cycle_s * 1e3:.0f} ms is the device's drafting ({spec.draft_tokens} x "
              f"{cost.draft_s(prompt) * 1e3:.1f} ms) and {(cycle_s - drafting_s) * 1e3:.0f} ms for the verify's round "
              f"trip (links and cloud), against {spec.tokens_per_step:.2f} plain tokens' "
              f"{spec.tokens_per_step * plain.mean_tbt_s * 1e3:.0f} ms"),
        Check("many devices queue at the cloud",
              "more devices sharing the cloud server wait longer for it: TTFT grows with the device count (by more "
              "than 1 %: a tie is no queue)",
              None, hat.mean_ttft_s / lone.mean_ttft_s, (1.01, 1e9),
              f"mean TTFT {hat.mean_ttft_s * 1e3:.0f} ms with {devices} devices vs {lone.mean_ttft_s * 1e3:.0f} ms "
              f"alone ({hat.cloud_batches} cloud forwards of {hat.cloud_batch_tokens / max(hat.cloud_batches, 1):.0f}"
              " tokens on average)"),
    ]
    table = speculation_table(model, quant, engine, testbed, prompt, output, plan.chunk_tokens, cost)
    return Outcome(checks, figures(plans, hat), [table])


def speculation_table(model, quant, engine, setup: DeviceCloud, prompt: int, output: int, chunk: int,
                      cost: UShapedCost) -> dict[str, Any]:
    """One device alone: TBT reduction over the paper's acceptance and draft-length ranges."""
    plain = run_device_cloud(model, quant, engine, setup, [DeviceRequest(prompt, output, chunk)], None,
                             cost=cost).requests[0].tbt_s
    rows = []
    for k in (4, 8):
        for acceptance in (0.6, 0.7, 0.8, 0.9):
            spec = SpecDecode(draft_tokens=k, acceptance=acceptance)
            tbt = run_device_cloud(model, quant, engine, setup, [DeviceRequest(prompt, output, chunk)], spec,
                                   cost=cost).requests[0].tbt_s
            rows.append([k, acceptance, round(spec.tokens_per_step, 2), round(tbt * 1e3, 1),
                         round(100 * (1 - tbt / plain), 1)])
    return {"title": f"Speculation, one device alone (plain U-shaped AR: {plain * 1e3:.1f} ms per token)",
            "columns": ["draft k", "acceptance", "tokens per verify", "TBT ms", "TBT reduction %"], "rows": rows}


def figures(plans: dict[float, Any], hat: CloudRun) -> list[Any]:
    import plotly.graph_objects as go

    ttft = go.Figure()
    for mbps, planned in sorted(plans.items()):
        ttft.add_trace(go.Scatter(x=[c for c, _ in planned.ttft_by_chunk],
                                  y=[t * 1e3 for _, t in planned.ttft_by_chunk], mode="lines+markers",
                                  name=f"{mbps:g} Mbps (c*={planned.chunk_tokens})"))
    ttft.update_layout(title="TTFT vs chunk size, one device alone", xaxis_title="chunk (tokens)",
                       xaxis_type="log", yaxis_title="TTFT (ms)")
    gantt = go.Figure()
    mine = [s for s in hat.spans if s.resource in ("device dev0", "link dev0 up", "link dev0 down", "cloud gpu0")]
    for kind in ("chunk", "draft", "verify", "decode", "batch"):
        spans = [s for s in mine if s.label.startswith(kind)]
        if spans:
            gantt.add_trace(go.Bar(base=[s.start_s for s in spans], x=[s.end_s - s.start_s for s in spans],
                                   y=[s.resource for s in spans], orientation="h", name=kind,
                                   hovertext=[s.label for s in spans]))
    gantt.update_layout(title="One request on the testbed: device, its links, its cloud GPU (shared)",
                        xaxis_title="time (s)", barmode="overlay")
    return [ttft, gantt]


SCENARIO = Scenario(
    name="hat", number=9, paper=PAPER,
    claim="U-shaped device-cloud inference with chunked prompt upload and on-device drafting cuts TTFT by "
          "41-54 % and TBT by 41-77 % (30 Jetsons, one 8x A6000 server)",
    setup=SETUP, run_fn=run, validate=validate)
