"""Autoscaling with start-up lag (sim/autoscaler.py): what an HPA-style autoscaler saves in replica-hours and costs
in latency, against fixed fleets, on a day-shaped trace and on a burst.

    python benchmarks/bench_autoscale.py          # ../shared/traces/azure_llm_2023_conv.csv if present, else the excerpt

vLLM on H100s. The trace (an hour of Azure's conversation service, its rate varying 0.7-1.6x its mean) rescaled to
--rate req/s (16: 20 minutes) on Llama-3.1-70B FP8 at TP2 a replica (start-up predicted: 118 s); the burst, 2 req/s
for 5 minutes, 60 req/s for 5, 2 req/s for 15 (2,048-token prompts, 256-token outputs), on Llama-3.1-8B a GPU
(49 s). Each line: wall time, mean and peak replicas, replica-hours, TTFT p50 / p90 / p99,
TPOT p90, and the share of requests within TTFT 2 s and TPOT 100 ms. Last, the burst on four prefill and four decode
GPUs, fixed and with each group autoscaled apart; then NVIDIA Dynamo's SLA planner (metric sla, sim/sla_planner.py)
on the same burst and on the trace (Llama-3.1-70B FP8, TP2 prefill and decode replicas), throughput-based,
load-based and both, with its constant and Kalman predictors and a GPU budget over both groups, and its aggregated
(collocated, load-based) planner, against fixed fleets and the HPA per group. Knative's Pod Autoscaler
(autoscaler kpa, sim/kpa.py) on concurrency beside the HPA's on the trace and the burst, and with its scale-down
delay and activation scale on three bursts 3 minutes apart; KEDA (autoscaler keda) on the burst, from one replica
and from zero.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import simulate
from phasewise.workload.request import Workload
from phasewise.workload.traces import load_trace

FULL = Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
M = "meta-llama/Llama-3.1-8B"
SLO = dict(slo_ttft_ms=2000.0, slo_tpot_ms=100.0)


# Dynamo's aggregated planner's modes on collocated replicas
AGG_MODES = (("throughput-based", {}), ("load-based", {"throughput_scaling": False, "load_scaling": True}),
             ("both", {"load_scaling": True}))


BURST = ((2, 300), (60, 300), (2, 900))  # (req/s, seconds): one burst
# three 2-minute bursts 3 minutes apart: replicas released between them must start again for the next
REPEATED_BURSTS = ((2, 300), (60, 120), (2, 180), (60, 120), (2, 180), (60, 120), (2, 300))


def burst(seed: int = 0, shape: tuple[tuple[int, int], ...] = BURST) -> Workload:
    rng = np.random.default_rng(seed)
    arrivals, start = [], 0.0
    for rate, seconds in shape:
        times = start + np.cumsum(rng.exponential(1 / rate, int(rate * seconds * 2)))
        arrivals.extend(times[times < start + seconds])
        start += seconds
    n = len(arrivals)
    return Workload(np.array(arrivals), np.full(n, 2048), np.full(n, 256), name="burst")


def line(name: str, result, wall_s: float) -> str:
    s = result.summary()
    scale = (s["policy"].get("autoscale") or [None])[0]
    mean = scale["mean_replicas"] if scale else len(result.instances)
    peak = scale["peak_replicas"] if scale else len(result.instances)
    hours = mean * result.duration_s / 3600
    ttft, tpot = s["ttft_ms"], s["tpot_ms"]
    return (f"{name:44} {wall_s:6.1f} s  replicas {mean:5.2f} (peak {peak:2d})  {hours:6.2f} replica-h  TTFT "
            f"{ttft['p50']:8,.0f} / {ttft['p90']:9,.0f} / {ttft['p99']:9,.0f} ms  TPOT p90 {tpot['p90']:6.1f} ms  "
            f"SLO {s['slo']['attainment']:6.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(FULL) if FULL.exists() else "azure-conv")
    ap.add_argument("--rate", type=float, default=16.0, help="the trace's mean rate, req/s")
    args = ap.parse_args()
    big = dict(model="meta-llama/Llama-3.1-70B", precision="fp8", tp=2, trace=args.trace, rate=args.rate, **SLO)
    running = dict(autoscale_metric="running", autoscale_target=48)
    trace_runs = [
        ("trace: fixed 8", dict(replicas=8)),
        ("trace: fixed 5", dict(replicas=5)),
        ("trace: fixed 3", dict(replicas=3)),
        ("trace: autoscale 3-8, running 48", dict(replicas=8, autoscale_min=3, **running)),
        ("trace: autoscale 3-8, running 32", dict(replicas=8, autoscale_min=3, autoscale_metric="running",
                                                  autoscale_target=32)),
        ("trace: autoscale 3-8, waiting 2", dict(replicas=8, autoscale_min=3, autoscale_target=2)),
        ("trace: autoscale 3-8, kv_usage 0.5", dict(replicas=8, autoscale_min=3, autoscale_metric="kv_usage",
                                                    autoscale_target=0.5)),
        ("trace: autoscale 3-8, running 48, start-up 600 s", dict(replicas=8, autoscale_min=3, **running,
                                                                   autoscale_startup_s=600)),
        ("trace: autoscale 1-8, running 48", dict(replicas=8, autoscale_min=1, **running)),
        ("trace: Knative KPA 3-8, concurrency 64", dict(replicas=8, autoscale_min=3, autoscale_metric="concurrency",
                                                        autoscale_target=64, autoscaler="kpa")),
        ("trace: Knative KPA 3-8, concurrency 96", dict(replicas=8, autoscale_min=3, autoscale_metric="concurrency",
                                                        autoscale_target=96, autoscaler="kpa")),
    ]
    for name, kw in trace_runs:
        t0 = time.perf_counter()
        result = run(**big, **kw)
        print(line(name, result, time.perf_counter() - t0), flush=True)
    load = burst()
    for name, replicas, scale in (
        ("burst: fixed 8", 8, None),
        ("burst: fixed 1", 1, None),
        ("burst: autoscale 1-8, running 64, start-up 30 s",
         8, dict(min_replicas=1, metric="running", target=64, startup_s=30.0)),
        ("burst: autoscale 1-8, running 64, start-up predicted", 8, dict(min_replicas=1, metric="running", target=64)),
        ("burst: autoscale 1-8, running 64, start-up 300 s",
         8, dict(min_replicas=1, metric="running", target=64, startup_s=300.0)),
        ("burst: autoscale 1-8, waiting 4, start-up predicted", 8, dict(min_replicas=1, target=4)),
        ("burst: Knative KPA 1-8, concurrency 64", 8, dict(min_replicas=1, metric="concurrency", target=64,
                                                           autoscaler="kpa")),
        ("burst: HPA 1-8, concurrency 64", 8, dict(min_replicas=1, metric="concurrency", target=64)),
        ("burst: KEDA 1-8, running 64", 8, dict(min_replicas=1, metric="running", target=64, autoscaler="keda")),
        ("burst: KEDA 0-8, running 64", 8, dict(min_replicas=0, metric="running", target=64, autoscaler="keda")),
        *((f"burst: Dynamo aggregated planner 1-8, {name}", 8,
           dict(min_replicas=1, metric="sla", ttft_s=SLO["slo_ttft_ms"] / 1e3, itl_s=SLO["slo_tpot_ms"] / 1e3, **modes))
          for name, modes in AGG_MODES),
    ):
        dep = {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": replicas}]}
        if scale:
            dep["autoscale"] = scale
        t0 = time.perf_counter()
        result = simulate(build_deployment(dep), load, Slo(SLO["slo_ttft_ms"], SLO["slo_tpot_ms"]))
        print(line(name, result, time.perf_counter() - t0), flush=True)
    # Knative's scale-down delay on bursts that come back: a delay longer than the gap keeps the replicas a burst
    # started for the next one (scale_down_delay_s; activation_scale from zero)
    bursts = burst(shape=REPEATED_BURSTS)
    kpa = dict(min_replicas=1, metric="concurrency", target=64, autoscaler="kpa")
    for name, scale in (("bursts x3: fixed 8", None), ("bursts x3: Knative KPA 1-8, concurrency 64", kpa),
                        ("bursts x3: KPA, scale-down delay 120 s", dict(kpa, scale_down_delay_s=120.0)),
                        ("bursts x3: KPA, scale-down delay 300 s", dict(kpa, scale_down_delay_s=300.0)),
                        ("bursts x3: KPA 0-8, activation scale 2", dict(kpa, min_replicas=0, activation_scale=2)),
                        ("bursts x3: HPA 1-8, running 64", dict(min_replicas=1, metric="running", target=64))):
        dep = {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 8}]}
        if scale:
            dep["autoscale"] = scale
        t0 = time.perf_counter()
        result = simulate(build_deployment(dep), bursts, Slo(SLO["slo_ttft_ms"], SLO["slo_tpot_ms"]))
        print(line(name, result, time.perf_counter() - t0), flush=True)
    disaggregated(load)
    planner(load, args.trace, args.rate)


def disaggregated_line(name: str, deployment: dict, load: Workload) -> str:
    t0 = time.perf_counter()
    result = simulate(build_deployment(deployment), load, Slo(SLO["slo_ttft_ms"], SLO["slo_tpot_ms"]))
    s = result.summary()
    scales = s["policy"].get("autoscale") or []
    held = " + ".join(f"{g['role']} {g['mean_replicas']:.2f} (peak {g['peak_replicas']})" for g in scales)
    return (f"{name:58} {time.perf_counter() - t0:5.1f} s  GPUs {s['gpus']:5.2f} {held}  TTFT p50 / p90 "
            f"{s['ttft_ms']['p50']:8,.0f} / {s['ttft_ms']['p90']:9,.0f} ms  TPOT p90 {s['tpot_ms']['p90']:6.1f} ms  "
            f"SLO {s['slo']['attainment']:6.1%}{largest_forecast(scales)}")


def largest_forecast(scales: list[dict]) -> str:
    """The prefill planner's largest forecast of an interval's requests, the interval it followed and the replicas
    it then wanted (its throughput-based adjustments: `policy.autoscale[].adjustments`); '' without a planner."""
    prefill = next((g for g in scales if g.get("role") == "prefill"), None)
    steps = [a for a in (prefill or {}).get("adjustments", []) if a["next_requests"]]
    if not steps:
        return ""
    top = max(steps, key=lambda a: a["next_requests"])
    return (f"  forecast {top['next_requests']:,.0f} requests after {top['requests']:,.0f}, prefill wants "
            f"{top['replicas']}")


def planner(burst_load: Workload, trace: str, rate: float) -> None:
    """Dynamo's SLA planner sized for the benchmark's SLO (TTFT 2 s, ITL 100 ms): throughput-based every 180 s,
    load-based every 5 s, both; each throughput-based mode with the constant and the Kalman predictor; the trace on
    TP2 replicas of Llama-3.1-70B FP8 (up to 4 prefill and 4 decode), also under a GPU budget over both groups."""
    sla = {"metric": "sla", "ttft_s": SLO["slo_ttft_ms"] / 1e3, "itl_s": SLO["slo_tpot_ms"] / 1e3}
    kalman = {**sla, "predictor": "kalman"}
    modes = (("throughput-based", sla), ("load-based", {**sla, "throughput_scaling": False, "load_scaling": True}),
             ("both", {**sla, "load_scaling": True}), ("throughput-based, Kalman", kalman),
             ("both, Kalman", {**kalman, "load_scaling": True}))
    for name, block in modes:
        groups = [{"role": role, "hardware": "h100-sxm", "replicas": 4, "autoscale": block}
                  for role in ("prefill", "decode")]
        print(disaggregated_line(f"burst, 4P4D: Dynamo planner {name}",
                                 {"model": M, "kv_link": "rdma", "instances": groups}, burst_load), flush=True)
    load = load_trace(trace).scaled_to_rate(rate)
    big = {"hardware": "h100-sxm", "tp": 2, "precision": "fp8"}

    def fleet(prefill: int, decode: int, prefill_block=None, decode_block=None) -> dict:
        groups = [{"role": "prefill", "replicas": prefill, **big}, {"role": "decode", "replicas": decode, **big}]
        for group, block in zip(groups, (prefill_block, decode_block)):
            if block:
                group["autoscale"] = block
        return {"model": "meta-llama/Llama-3.1-70B", "kv_link": "rdma", "instances": groups}

    runs = [("trace, 70B TP2: fixed 4P4D", fleet(4, 4)), ("trace, 70B TP2: fixed 3P2D", fleet(3, 2)),
            ("trace, 70B TP2: fixed 2P2D", fleet(2, 2)),
            ("trace, 70B TP2: HPA prefill waiting 4, decode running 64",
             fleet(4, 4, {"target": 4}, {"metric": "running", "target": 64}))]
    runs += [(f"trace, 70B TP2: Dynamo planner {name}", fleet(4, 4, block, block)) for name, block in modes]
    runs += [(f"trace, 70B TP2: Dynamo aggregated planner 3-8, {name}",
              {"model": "meta-llama/Llama-3.1-70B",
               "instances": [{"replicas": 8, **big, "autoscale": {**sla, "min_replicas": 3, **modes}}]})
             for name, modes in AGG_MODES]
    runs += [(f"trace, 70B TP2: Dynamo planner {name}, budget 8 GPUs",
              fleet(4, 4, {**block, "max_gpu_budget": 8}, {**block, "max_gpu_budget": 8}))
             for name, block in modes if name in ("throughput-based", "both")]
    for name, deployment in runs:
        print(disaggregated_line(name, deployment, load), flush=True)


def disaggregated(load: Workload) -> None:
    """The burst on prefill and decode groups of four GPUs each (RDMA between them), fixed, then each group under its
    own autoscaler (prefill on its queue, decode on its running requests), as Dynamo's planner scales them apart."""
    for name, scaled in (("burst, 4P4D: fixed", False), ("burst, 4P4D: prefill 1-4 waiting 4, decode 1-4 running 64",
                                                          True)):
        groups = [{"role": role, "hardware": "h100-sxm", "replicas": 4} for role in ("prefill", "decode")]
        if scaled:
            groups[0]["autoscale"] = {"target": 4}
            groups[1]["autoscale"] = {"metric": "running", "target": 64}
        t0 = time.perf_counter()
        result = simulate(build_deployment({"model": M, "kv_link": "rdma", "instances": groups}), load,
                          Slo(SLO["slo_ttft_ms"], SLO["slo_tpot_ms"]))
        s = result.summary()
        scales = s["policy"].get("autoscale") or []
        held = " + ".join(f"{g['role']} {g['mean_replicas']:.2f} (peak {g['peak_replicas']})" for g in scales)
        print(f"{name:58} {time.perf_counter() - t0:5.1f} s  GPUs {s['gpus']:5.2f} {held}  TTFT p50 / p90 "
              f"{s['ttft_ms']['p50']:8,.0f} / {s['ttft_ms']['p90']:9,.0f} ms  TPOT p90 {s['tpot_ms']['p90']:6.1f} ms  "
              f"SLO {s['slo']['attainment']:6.1%}", flush=True)


if __name__ == "__main__":
    main()
