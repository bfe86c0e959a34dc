"""Adrenaline-1 (PAPERS.md section 8): decode attention offloaded to the prefill GPU raises a KV-bound decode
instance's batch from M to M + N, and with it the throughput of a 1 prefill + 1 decode deployment, while
the prefill GPU's HBM capacity and bandwidth, idle in plain disaggregation, get used; a saturated prefill
GPU takes no offloaded attention (no gain).

Method: the same deployment with `attention_offload: auto` and without (`fixed`, 0 requests: the plain
deployment, measured by the same controller). For each, the arrival rate rises geometrically from
`rate_min` until fewer than `slo_attainment` of the requests meet the SLOs; its capacity is the rate where
attainment crosses that target (interpolated). The throughput gain is the ratio of the capacities; the
utilizations are each deployment's at the highest rate it sustains. Pairs of runs with the prefill GPU
saturated show the controller backing off: arrivals beyond what the prefill instance can prefill at all
(saturated_prefill_factor x its capacity: full iterations of mean-length prompts, by its own cost model), the
gain there the median over three rates (x 0.9, 1.0, 1.1). Rates set from the offloaded capacity instead (2x it)
sat on a knife edge: there the prefill GPU is saturated only once its HBM fills with prompt KV parked for the
decode side, which with 2,000 requests happens near the middle of the arrivals, where the measurement starts
(seed 0: 1.09x; seed 1: 1.47x, offloading through two of the three rates).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from phasewise.perf import BatchShape
from phasewise.plan import run_all
from phasewise.scenarios.base import (
    Check,
    Outcome,
    Param,
    Scenario,
    autoregressive,
    lengths_within_context,
    setup_error,
)
from phasewise.sim.api import build
from phasewise.sim.deployment import Deployment, build_deployment
from phasewise.sim.metrics import SimResult
from phasewise.sim.simulate import build_group, simulate
from phasewise.workload import MAX_LOGNORMAL_SPREAD

SHAREGPT = "ShareGPT as the vLLM paper reports it (Kwon et al., SOSP'23, Fig. 11a: mean input 161, output 338)"
SETUP = {
    "model": Param("meta-llama/Llama-2-7b-hf", "PAPERS.md section 8 (Llama-2 family; proposed check: 7B)"),
    "hardware": Param("a100-sxm-80gb", "PAPERS.md section 8 proposed check (A100-80GB)"),
    # at most a node's 8 GPUs each: a simulation's instances, and the rates its capacity search climbs to, grow
    # with them
    "prefill_workers": Param(1, "PAPERS.md section 8 proposed check (1 prefill + 1 decode instance)", upper=8),
    "decode_workers": Param(1, "PAPERS.md section 8 proposed check (1 prefill + 1 decode instance)", upper=8),
    "engine": Param("vllm", "the paper's code base is vLLM (PAPERS.md section 8)"),
    "max_num_seqs": Param(1024, "assumed: the decode batch is bounded by KV capacity and TPOT (PAPERS.md: "
                                "M = min(KV capacity, TPOT-feasible batch)), not by a seat cap"),
    "prompt_tokens": Param(161.0, f"{SHAREGPT} (unverified in this pass)"),
    "output_tokens": Param(338.0, f"{SHAREGPT} (unverified in this pass)"),
    "length_sigma": Param(0.8, "assumed: lognormal lengths with ShareGPT's long tail (sigma of log length)",
                          upper=MAX_LOGNORMAL_SPREAD),
    "slo_tpot_ms": Param(100.0, "assumed: the paper's SLOs are not accessible (PAPERS.md); a chat TPOT SLO"),
    "slo_ttft_ms": Param(1000.0, "assumed: the paper's SLOs are not accessible (PAPERS.md); a chat TTFT SLO"),
    "slo_attainment": Param(0.9, "assumed: the usual 90 % SLO attainment of serving papers (DistServe)", upper=1.0),
    "rate_min": Param(6.0, "assumed: below the plain deployment's capacity on the default setup (req/s)"),
    "rate_factor": Param(1.2, "assumed: the rate search's step (x per step; capacity is interpolated)",
                         help="more than 1"),
    "saturated_prefill_factor": Param(1.2, "assumed: the saturated rate is this many times the prefill instance's "
                                           "own prefill capacity (the paper's saturated prefill GPU: its prompts "
                                           "alone keep it busy and queue)", upper=100.0, help="more than 1"),
    # at most 10x the default: every simulation grows linearly with its requests
    "requests": Param(2000, "assumed: enough requests for the SLO attainment to show a steady overload (1000 "
                            "overstates both capacities), within the scenario's time", upper=20000),
    "seed": Param(0, "assumed"),
}

SATURATED_SKIP = 0.5  # the saturated runs' throughput is taken over the second half of the arrivals
SATURATED_SPREAD = (0.9, 1.0, 1.1)  # the saturated rates, as multiples of saturated_prefill_factor x its capacity
MAX_STEPS = 14  # rate search steps at most (rate_min x rate_factor^13 covers ~10x at the default factor)


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: rate steps that climb, and the mean request within the model's context."""
    autoregressive("adrenaline", "model", setup["model"])
    for key in ("rate_factor", "saturated_prefill_factor"):
        if not setup[key] > 1.0:
            raise setup_error("adrenaline", key, f"a factor more than 1 (got {setup[key]:g})")
    lengths_within_context("adrenaline", setup["model"], setup["prompt_tokens"], setup["output_tokens"])


def _deployment(setup: dict[str, Any], rate: float, offload: dict) -> tuple[Deployment, Any]:
    spec = build(model=setup["model"], hardware=setup["hardware"], arch="disagg",
                 prefill_workers=setup["prefill_workers"], decode_workers=setup["decode_workers"],
                 engine=setup["engine"], max_num_seqs=setup["max_num_seqs"], rate=rate, requests=setup["requests"],
                 isl=setup["prompt_tokens"], osl=setup["output_tokens"], isl_dist="lognormal",
                 osl_dist="lognormal", isl_spread=setup["length_sigma"], osl_spread=setup["length_sigma"],
                 slo_ttft_ms=setup["slo_ttft_ms"], slo_tpot_ms=setup["slo_tpot_ms"], seed=setup["seed"])
    return build_deployment({**spec.deployment.model_dump(), "attention_offload": offload}), spec


def _run(setup: dict[str, Any], rate: float, offload: dict) -> SimResult:
    deployment, spec = _deployment(setup, rate, offload)
    return simulate(deployment, spec.workload, spec.slo)


def prefill_capacity(setup: dict[str, Any]) -> float:
    """Requests/s the prefill instances can prefill at most: every iteration full of mean-length prompts (the
    engine's token budget and sequence cap), timed by the instance's own cost model."""
    deployment, _ = _deployment(setup, setup["rate_min"], {"mode": "fixed", "requests": 0})
    index, group = next((i, g) for i, g in enumerate(deployment.instances) if g.role == "prefill")
    cost, _, _, engine = build_group(deployment, group, index)
    prompt = max(1, round(setup["prompt_tokens"]))
    prompts = max(1, min(engine.token_budget // prompt, engine.max_seqs))
    return group.replicas * prompts / cost.fast(BatchShape.uniform(prompts, prompt, 0))[0]


def _window_throughput(result: SimResult, skip: float = 0.0) -> float:
    """Output tokens per second emitted while requests arrive, after the first `skip` share of that time (each
    request's tokens spread evenly between its first token and its finish): without the drain of the longest
    requests (and, with `skip`, without the ramp-up)."""
    first_arrival, end = float(result.arrival_s.min()), float(result.arrival_s.max())
    start = first_arrival + skip * (end - first_arrival)
    first, finish = result.first_token_s, result.finish_s
    done = np.isfinite(finish)
    span = np.maximum(finish[done] - first[done], 1e-9)
    inside = np.clip(np.minimum(finish[done], end) - np.maximum(first[done], start), 0.0, None) / span
    return float((result.output_tokens[done] * inside).sum() / (end - start))


def _figures(result: SimResult, skip: float = 0.0) -> dict[str, float]:
    summary = result.summary()
    prefill = [i for i in summary["instances"] if i["role"] == "prefill"]
    decode = [i for i in summary["instances"] if i["role"] == "decode"]
    policy = summary["policy"]["attention_offload"]
    return {
        "attainment": summary["slo"]["attainment"],
        "throughput": _window_throughput(result, skip),
        "prefill_hbm": float(np.mean([h["hbm_use"] for h in policy["hosts"]])),
        "prefill_bandwidth": float(np.mean([i["bandwidth_utilization"] for i in prefill])),
        # the offloaded attention's share of the prefill GPUs' bandwidth (the rest is their own prefill traffic)
        "prefill_attention_bandwidth": float(np.mean([
            h["offloaded_attention_bytes"] / (stats.bandwidth * result.duration_s)
            for h, stats in zip(policy["hosts"], [s for s in result.instances if s.role == "prefill"])])),
        "prefill_busy": float(np.mean([i["busy_fraction"] for i in prefill])),
        "decode_compute": float(np.mean([i["compute_utilization"] for i in decode])),
        "decode_batch": float(np.mean([i["mean_batch_seqs"] for i in decode])),
        "offloaded_per_local": policy["offloaded_per_local_active"],
        "offloaded_requests": policy["offloaded_requests"],
        "declined": max(policy["declined"], key=policy["declined"].get) if policy["declined"] else "none",
        "wall_s": result.wall_s,
    }


def _saturated(setup: dict[str, Any], rate: float, offload: dict) -> dict[str, float]:
    """Figures of an overloaded run: throughput over the second half of the arrivals, once the overload built up."""
    return _figures(_run(setup, rate, offload), SATURATED_SKIP)


def _capacity(setup: dict[str, Any], offload: dict) -> tuple[float, dict[str, float], list[tuple[float, dict]]]:
    """(rate where SLO attainment crosses the target, figures at the highest rate meeting it, every point)."""
    target, rate = setup["slo_attainment"], setup["rate_min"]
    points: list[tuple[float, dict]] = []
    for _ in range(MAX_STEPS):
        figures = _figures(_run(setup, rate, offload))
        points.append((rate, figures))
        if figures["attainment"] < target:
            break
        rate *= setup["rate_factor"]
    passing = [(r, f) for r, f in points if f["attainment"] >= target]
    if not passing:
        return math.nan, points[0][1], points
    (low, at_low), (high, at_high) = passing[-1], points[-1]
    if at_high["attainment"] >= target:  # never crossed within the search
        return math.nan, at_low, points
    share = (at_low["attainment"] - target) / (at_low["attainment"] - at_high["attainment"])
    return low + share * (high - low), at_low, points


def search_note(setup: dict[str, Any], *searches: Any) -> str:
    """Why a capacity is missing (nan): the rate search never met the attainment target, or never left it."""
    notes = []
    for name, (cap, points) in zip(("plain", "offload"), zip(searches[::2], searches[1::2])):
        if not math.isnan(cap):
            continue
        low, high = points[0][0], points[-1][0]
        if points[0][1]["attainment"] < setup["slo_attainment"]:
            notes.append(f"{name}: already below {setup['slo_attainment']:.0%} attainment at rate_min {low:.1f} "
                         "req/s (lower --set rate_min)")
        else:
            notes.append(f"{name}: every rate from {low:.1f} to {high:.1f} req/s ({len(points)} steps of "
                         f"rate_factor {setup['rate_factor']:g}) met {setup['slo_attainment']:.0%} attainment, so the "
                         "search never crossed it (raise --set rate_min or rate_factor)")
    return ("; no capacity found for " + "; ".join(notes)) if notes else ""


def run(setup: dict[str, Any]) -> Outcome:
    plain_mode, offload_mode = {"mode": "fixed", "requests": 0}, {"mode": "auto"}
    # the searches and runs below are independent and deterministic: one process per core
    (plain_cap, plain, plain_points), (offload_cap, offload, offload_points) = run_all(
        _capacity, [(setup, plain_mode), (setup, offload_mode)])
    prefill_rps = prefill_capacity(setup)
    base_rate = setup["saturated_prefill_factor"] * prefill_rps
    saturated_runs = run_all(_saturated, [(setup, factor * base_rate, mode) for factor in SATURATED_SPREAD
                                          for mode in (plain_mode, offload_mode)])
    runs = []
    for i, factor in enumerate(SATURATED_SPREAD):
        plain_run, offload_run = saturated_runs[2 * i], saturated_runs[2 * i + 1]
        runs.append((offload_run["throughput"] / plain_run["throughput"], factor * base_rate, plain_run, offload_run))
    saturated_gain, saturated_rate, saturated_plain, saturated = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    spread = ", ".join(f"{rate:.1f} req/s: {gain:.2f}x ({sat['offloaded_requests']} offloaded)"
                       for gain, rate, _, sat in runs)

    def ratio(key: str, a: dict = offload, b: dict = plain) -> float:
        return a[key] / b[key] if b[key] > 0 else math.nan

    gain = offload_cap / plain_cap
    # load-aware offloading is shown only where something was offloaded below saturation: a controller that never
    # offloads has no gain to give up, and its "no gain when saturated" would compare two identical runs
    never_offloaded = not offload.get("offloaded_requests")
    checks = [
        Check("throughput_gain", "overall throughput up to 1.68x with attention offloaded", 1.68, gain, (1.4, 1.75),
              f"rate sustained at {setup['slo_attainment']:.0%} SLO attainment: {offload_cap:.1f} vs "
              f"{plain_cap:.1f} req/s; "
              + (f"no request was offloaded at that rate (the decode batch {plain['decode_batch']:.0f} both ways): "
                 + ("the decode instance had a seat and KV room for every request as its prefill ended, so the "
                    "controller was never asked"
                    if offload["declined"] == "none" else
                    f"the controller declined each, mostly for {offload['declined']}")
                 if never_offloaded else
                 f"the decode batch grows from {plain['decode_batch']:.0f} to {offload['decode_batch']:.0f} while "
                 "the step stays within the TPOT SLO (dense work grows, the local attention does not); the "
                 f"controller's main refusal there: {offload['declined']}")
              + search_note(setup, plain_cap, plain_points, offload_cap, offload_points)),
        Check("offloaded_per_local", "the controller offloads N of a decode batch M (PAPERS.md: N/M 0.5-1.3)",
              [0.5, 1.3], offload["offloaded_per_local"], (0.5, 1.3),
              "N/M over the decode steps with offloaded requests, at the highest rate sustained; N is bounded "
              "by the prefill HBM beyond its prompts' headroom, the overlap, the TPOT SLO and the prefill's TTFT"),
        Check("prefill_hbm_capacity", "prefill-instance HBM capacity use up 2.28x", 2.28, ratio("prefill_hbm"),
              (1.6, 3.0), f"(weights + KV in use) / HBM: {plain['prefill_hbm']:.0%} -> {offload['prefill_hbm']:.0%}:"
              + (" nothing offloaded, so nothing more held" if never_offloaded else
                 " the offloaded requests' KV lives on the prefill GPU")),
        Check("prefill_hbm_bandwidth", "prefill-instance HBM bandwidth use up 2.07x", 2.07,
              ratio("prefill_bandwidth"), (1.5, 3.0),
              f"{plain['prefill_bandwidth']:.1%} -> {offload['prefill_bandwidth']:.1%} of the prefill GPU's "
              f"bandwidth, of which the offloaded attention's KV reads {offload['prefill_attention_bandwidth']:.1%}"
              " and the prefill's own traffic the rest: the ratio is the offloaded KV reads over the prefill's own "
              "traffic, which the paper's prompt lengths (not accessible) set"
              + (": ShareGPT's short prompts leave the prefill's own traffic small here, so it overshoots the paper's"
                 if ratio("prefill_bandwidth") > 3.0 else "")),
        Check("decode_compute", "decode-instance compute use up 1.67x", 1.67, ratio("decode_compute"), (1.2, 1.9),
              f"{plain['decode_compute']:.1%} -> {offload['decode_compute']:.1%} of peak: the dense layers run "
              "M + N rows per step"),
        Check("saturated_gain", "no gain when the prefill GPU is saturated (load-aware offloading)", 1.0,
              math.nan if never_offloaded else saturated_gain, (0.9, 1.1),
              ("not shown: the controller offloaded no request at the highest rate sustained either, so no gain "
               "is given up at saturation (the two runs compared are alike); " if never_offloaded else "")
              + f"the median of three saturated rates ({spread}), {setup['saturated_prefill_factor']:g}x (x 0.9-1.1) "
              f"the prefill instance's capacity of {prefill_rps:.1f} req/s: its prompts alone keep it busy, queue "
              f"and miss the TTFT SLO, so the controller stops offloading (at {saturated_rate:.1f} req/s "
              f"{saturated['offloaded_requests']} of {setup['requests']} offloaded, N/M "
              f"{saturated['offloaded_per_local']:.2f} while any); output tokens/s over the second half of the "
              "arrivals"),
    ]
    return Outcome(checks=checks, figures=_plots(plain_points, offload_points, plain, offload, setup),
                   tables=[_table(plain_cap, offload_cap, plain, offload, saturated_plain, saturated)])


def _plots(plain_points: list, offload_points: list, plain: dict, offload: dict,
           setup: dict[str, Any]) -> list[go.Figure]:
    curve = go.Figure()
    for name, points in (("plain disaggregation", plain_points), ("attention offload (auto)", offload_points)):
        rates = [r for r, _ in points]
        curve.add_trace(go.Scatter(x=rates, y=[f["throughput"] for _, f in points], mode="lines+markers", name=name,
                                   customdata=[f["attainment"] for _, f in points],
                                   hovertemplate="%{x:.1f} req/s: %{y:.0f} tok/s, SLO attainment %{customdata:.0%}"))
    where = (f"{setup['model'].split('/')[-1]} on {setup['prefill_workers']}P + {setup['decode_workers']}D "
             f"{setup['hardware']}")
    curve.update_layout(title=f"Output throughput vs arrival rate ({where}; Adrenaline-1)",
                        xaxis_title="arrival rate (req/s)", yaxis_title="output tokens/s (while requests arrive)")
    labels = ["prefill HBM capacity", "prefill HBM bandwidth", "decode compute"]
    keys = ["prefill_hbm", "prefill_bandwidth", "decode_compute"]
    bars = go.Figure([go.Bar(name="plain disaggregation", x=labels, y=[plain[k] for k in keys]),
                      go.Bar(name="attention offload (auto)", x=labels, y=[offload[k] for k in keys])])
    bars.update_layout(title="Utilization at the highest rate each deployment sustains", barmode="group",
                       yaxis_title="share of the resource", yaxis_tickformat=".0%")
    return [curve, bars]


def _table(plain_cap: float, offload_cap: float, plain: dict, offload: dict, sat_plain: dict, sat: dict) -> dict:
    rows = [["capacity at the SLO (req/s)", plain_cap, offload_cap]]
    for key in ("throughput", "decode_batch", "offloaded_per_local", "prefill_hbm", "prefill_bandwidth",
                "prefill_busy", "decode_compute"):
        rows.append([key, plain[key], offload[key]])
    rows.append(["throughput at the saturated rate", sat_plain["throughput"], sat["throughput"]])
    rows.append(["offloaded requests at the saturated rate", sat_plain["offloaded_requests"],
                 sat["offloaded_requests"]])
    return {"title": "Plain vs attention offload (figures at the highest rate each sustains)",
            "columns": ["figure", "plain", "offload"],
            "rows": [[name, round(float(a), 4), round(float(b), 4)] for name, a, b in rows]}


SCENARIO = Scenario(
    name="adrenaline", number=8,
    paper="Injecting Adrenaline into LLM Serving: Boosting Resource Utilization and Throughput via Attention "
          "Disaggregation",
    claim="offloading decode attention to the prefill GPU raises throughput up to 1.68x and the prefill GPU's HBM "
          "capacity/bandwidth use ~2.3x/~2.1x; no gain when the prefill GPU is saturated",
    setup=SETUP, run_fn=run, validate=validate)
