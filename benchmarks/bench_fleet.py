"""`plan --autoscale` (plan/fleet.py): the fleets each ranked strategy makes over a whole trace (the smallest fixed
fleet, with hindsight; the HPA on vllm:num_requests_running at three targets; Knative's KPA; KEDA; Dynamo's SLA
planner) and the time it takes, on two traffic shapes.

    python benchmarks/bench_fleet.py      # ../shared/traces/azure_llm_2023_conv.csv if present, else the excerpt

1. The Azure conversation hour (19,366 requests) rescaled to --rate req/s (16: 1,210 s) on
   Llama-3.1-70B FP8, 16 H100s, collocated strategies (SLO TTFT 2 s / TPOT 100 ms for 90 % of requests).
2. A burst (bench_autoscale.py's: 2 req/s for 5 minutes, 60 req/s for 5, 2 req/s for 15; 2,048-token prompts,
   256-token outputs) on Llama-3.1-8B, 8 H100s, collocated and disaggregated strategies.
Each: the plan's wall time, the fleets' wall time, every fleet's row, and the answer line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench_autoscale import burst
from rich.console import Console

from phasewise.apps.fleet_view import render_fleets
from phasewise.plan import PlanOptions, plan
from phasewise.plan.fleet import FLEETS, plan_fleets
from phasewise.plan.goodput import WorkloadSpec, workload_spec
from phasewise.sim import Slo

FULL = Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
SLO = Slo(2000.0, 100.0)


def burst_spec() -> WorkloadSpec:
    """bench_autoscale.py's burst as a plan's workload (its lengths and arrival pattern)."""
    w = burst()
    return WorkloadSpec(tuple(int(x) for x in w.prompt_tokens), tuple(int(x) for x in w.output_tokens),
                        tuple(float(t) for t in w.arrival_s), name="burst 2/60/2 req/s")


def one(console: Console, title: str, model: str, gpus: int, work: WorkloadSpec, opts: PlanOptions,
        rate: float | None) -> None:
    t0 = time.perf_counter()
    result = plan(model, "h100-sxm", gpus, SLO, work, opts=opts, refine=3)
    t1 = time.perf_counter()
    fleets = plan_fleets(result.ranked, work, SLO, 0.9, FLEETS, rate)
    t2 = time.perf_counter()
    console.print(f"[bold]{title}[/]: plan {t1 - t0:.1f} s, fleets {t2 - t1:.1f} s ({fleets.requests:,} requests "
                  f"a run)")
    render_fleets(console, fleets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(FULL) if FULL.exists() else "azure-conv")
    ap.add_argument("--rate", type=float, default=16.0, help="the trace's mean rate, req/s")
    args = ap.parse_args()
    console = Console(width=200)
    work = workload_spec(args.trace, "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0)
    one(console, f"{args.trace} at {args.rate:g} req/s", "meta-llama/Llama-3.1-70B", 16, work,
        PlanOptions(precisions=("fp8",), disaggregated=False), args.rate)
    one(console, "burst", "meta-llama/Llama-3.1-8B", 8, burst_spec(), PlanOptions(), None)


if __name__ == "__main__":
    main()
