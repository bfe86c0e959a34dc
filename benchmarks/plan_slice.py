"""How well a slice of a large fleet stands for the whole in `plan`'s verification (plan.verify_units).

For each case (a model, a fleet of identical units behind the router, a workload), the unit's goodput is searched
as `plan` does (plan.evaluate, the refine settings), then verified (plan.verify) on slices of 4, 8, 16 and 32
instances and on the whole fleet; printed per slice: the verified goodput, the attainment and TTFT/TPOT p90 of a
run at the whole fleet's verified rate (the same rate for every slice, so the bias shows beyond the verification's
10 % climb steps), and the wall time of the verification.

    python benchmarks/plan_slice.py [--gpus 128] [--cases all|conv|code|disagg]
"""

from __future__ import annotations

import argparse
import time

import phasewise.plan.planner as planner
from phasewise.plan import PlanOptions, enumerate_strategies, evaluate
from phasewise.plan.goodput import workload_spec
from phasewise.plan.planner import REFINE, verify, verify_units
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment

MODEL = "meta-llama/Llama-3.1-8B"
CASES = {  # name: (workload, strategy name's start, SLOs)
    "conv": ("azure-conv", "{gpus}x TP1 vllm default", Slo(1000, 50)),
    "code": ("azure-code", "{gpus}x TP1 vllm default", Slo(1000, 50)),
    "disagg": ("azure-conv", "{half}P(TP1) {half}D(TP1)", Slo(1000, 50)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=128)
    ap.add_argument("--cases", default="all")
    args = ap.parse_args()
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    strategies, _ = enumerate_strategies(MODEL, "h100-sxm", args.gpus, PlanOptions(tp_options=(1,)))
    for name in names:
        trace, prefix, slo = CASES[name]
        work = workload_spec(trace, "poisson", None, None, "fixed", "fixed", 0, 0, 0)
        start = prefix.format(gpus=args.gpus, half=args.gpus // 2)
        strategy = next(s for s in strategies if s.name.startswith(start))
        searched = evaluate(strategy, work, slo, 0.9, REFINE["steps"], REFINE["window_s"], REFINE["min_requests"])
        print(f"\n{name}: {strategy.name}, {work.name}; search {searched.goodput_rps:.1f} req/s")
        print(f"{'instances':>10} {'verified req/s':>15} {'att. @whole':>12} {'TTFT p90 ms':>12} {'TPOT p90 ms':>12}"
              f" {'verify s':>9}")
        rows, whole_rate = [], None
        for instances in (None, 32, 16, 8, 4):  # None: the whole fleet
            planner.VERIFY_SLICE_INSTANCES = instances or 10**9
            units = verify_units(strategy, work)
            t0 = time.perf_counter()
            rate, _, run = verify(strategy, searched.goodput_rps, work, slo, 0.9)
            wall = time.perf_counter() - t0
            whole_rate = whole_rate or rate
            fields = strategy.slice(units)
            share = units / strategy.units
            fresh = work.at_rate(whole_rate * share, int(max(REFINE["min_requests"], whole_rate * share * 60)))
            s = simulate(build_deployment(fields), fresh, slo).summary()
            shown = units * strategy.instances_per_unit
            rows.append(shown)
            print(f"{shown:>10} {rate:>15.1f} {s['slo']['attainment']:>12.3f} {s['ttft_ms']['p90']:>12.0f} "
                  f"{s['tpot_ms']['p90']:>12.1f} {wall:>9.1f}")


if __name__ == "__main__":
    main()
