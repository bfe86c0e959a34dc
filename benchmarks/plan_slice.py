"""How well a slice of a large fleet stands for the whole in `plan`'s verification (plan.slice_units).

For each case (a model, a fleet of identical units behind the router, a workload), the goodput is searched as `plan`
does (plan.evaluate, the refine settings: one unit; for a trace with prefix structure, a slice of 32 instances),
then verified (plan.verify) on slices of 4, 8, 16 and 32 instances and on the whole fleet; printed per slice: the
verified goodput, the attainment, TTFT/TPOT p90 and prefix-cache hit rate (prompt tokens) of a run at the whole
fleet's verified rate (the same rate for every slice, so the bias shows beyond the verification's 10 % climb
steps), and the wall time of the verification.

    python benchmarks/plan_slice.py [--gpus 128] [--cases all|conv,code,disagg,mooncake,mooncake-prefix-aware]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import phasewise.plan.goodput as goodput
from phasewise.plan import PlanOptions, enumerate_strategies, evaluate
from phasewise.plan.goodput import rate_share, slice_traffic, slice_units, workload_spec
from phasewise.plan.planner import REFINE, verify
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, names, refusing  # noqa: E402 - the scripts' shared flag checks

MODEL = "meta-llama/Llama-3.1-8B"
MOONCAKE = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake_conversation.jsonl"
CASES = {  # name: (workload, router, strategy name's start, SLOs)
    "conv": ("azure-conv", "least_outstanding", "{gpus}x TP1 vllm default", Slo(1000, 50)),
    "code": ("azure-code", "least_outstanding", "{gpus}x TP1 vllm default", Slo(1000, 50)),
    "disagg": ("azure-conv", "least_outstanding", "{half}P(TP1) {half}D(TP1)", Slo(1000, 50)),
    # prefix structure: the Mooncake conversation trace (../shared; the bundled 500-request excerpt without it)
    "mooncake": ("mooncake", "least_outstanding", "{gpus}x TP1 vllm default", Slo(2000, 50)),
    "mooncake-prefix-aware": ("mooncake", "prefix_aware", "{gpus}x TP1 vllm default", Slo(2000, 50)),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=at_least(1), default=128)
    ap.add_argument("--cases", type=names(CASES), default="all", help=f"comma-separated: {', '.join(CASES)}, or all")
    args = ap.parse_args()
    for name in args.cases:
        trace, router, prefix, slo = CASES[name]
        if trace == "mooncake" and MOONCAKE.exists():
            trace = str(MOONCAKE)
        strategies, _ = enumerate_strategies(MODEL, "h100-sxm", args.gpus, PlanOptions(tp_options=(1,),
                                                                                      routers=(router,)))
        work = workload_spec(trace, "poisson", None, None, "fixed", "fixed", 0, 0, 0)
        start = prefix.format(gpus=args.gpus, half=args.gpus // 2)
        strategy = next((s for s in strategies if s.name.startswith(start)), None)
        if strategy is None:
            ap.error(f"--gpus {args.gpus}: no strategy '{start} ...' for case {name} (disagg needs --gpus 2 or more)")
        goodput.SLICE_INSTANCES = 32
        t0 = time.perf_counter()
        searched = evaluate(strategy, work, slo, 0.9, REFINE["steps"], REFINE["window_s"], REFINE["min_requests"])
        print(f"\n{name}: {strategy.name} behind {router}, {work.name}; search {searched.goodput_rps:.1f} req/s "
              f"({time.perf_counter() - t0:.1f} s, on {searched.search_units} units)")
        print(f"{'instances':>10} {'verified req/s':>15} {'att. @whole':>12} {'TTFT p90 ms':>12} {'TPOT p90 ms':>12}"
              f" {'prefix hits':>12} {'verify s':>9}")
        whole_rate = None
        for instances in (None, 32, 16, 8, 4):  # None: the whole fleet
            goodput.SLICE_INSTANCES = instances or 10**9
            units = slice_units(strategy, work)
            t0 = time.perf_counter()
            rate, _, run = verify(strategy, searched.goodput_rps, work, slo, 0.9)
            wall = time.perf_counter() - t0
            whole_rate = whole_rate or rate
            fields = strategy.slice(units)
            dep = build_deployment(fields)
            n = int(max(REFINE["min_requests"], rate_share(whole_rate, units, strategy.units) * 60))
            s = simulate(dep, slice_traffic(work, whole_rate, n, units, strategy.units, dep.router), slo).summary()
            hits = (s.get("prefix_cache") or {}).get("hit_rate_tokens", float("nan"))
            print(f"{units * strategy.instances_per_unit:>10} {rate:>15.1f} {s['slo']['attainment']:>12.3f} "
                  f"{s['ttft_ms']['p90']:>12.0f} {s['tpot_ms']['p90']:>12.1f} {hits:>12.3f} {wall:>9.1f}")


if __name__ == "__main__":
    sys.exit(refusing(main))
