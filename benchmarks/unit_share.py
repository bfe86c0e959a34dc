"""How well one unit's share of a replayed trace stands for the whole deployment: the SLO attainment of the whole
(behind least-outstanding and round robin) against one unit receiving each of several shares of the trace, as
`plan --arrivals trace` searches one unit (plan/goodput.py slice_traffic: each request kept with probability
1/units, seeded) and as a round-robin router would split it (every units-th request, each offset).

    python benchmarks/unit_share.py      # ../shared/traces/azure_llm_2023_conv.csv if present, else the excerpt
    python benchmarks/unit_share.py --rates 40,46.74,49.2 --strategy "8x TP2 vllm default"

Defaults: bench_fleet.py's Azure hour (Llama-3.1-70B FP8 on 16 H100s, TTFT 2 s / TPOT 100 ms), its winner 8 x TP2
chunked 2,048, at the rates its plan verified and searched.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from phasewise.plan import PlanOptions, enumerate_strategies
from phasewise.plan.goodput import slice_traffic, workload_spec
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_model, load_quant

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, known, positives, refusing  # noqa: E402 - the scripts' shared flag checks

FULL = Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"


def attainment(dep, traffic, slo: Slo) -> float:
    return float(simulate(dep, traffic, slo).summary()["slo"]["attainment"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default=str(FULL) if FULL.exists() else "azure-conv")
    ap.add_argument("--model", default="meta-llama/Llama-3.1-70B")
    ap.add_argument("--gpus", type=at_least(2), default=16)
    ap.add_argument("--precision", default="fp8")
    ap.add_argument("--strategy", default="8x TP2 chunked 2048", help="the start of a collocated strategy's name")
    ap.add_argument("--rates", type=positives, default="46.74,49.2",
                    help="whole-deployment rates, req/s, comma-separated")
    args = ap.parse_args()
    known(ap, "--model", [args.model], load_model)
    known(ap, "--precision", [args.precision], load_quant)
    slo = Slo(2000.0, 100.0)
    work = workload_spec(args.trace, "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0)
    strategies, _ = enumerate_strategies(args.model, "h100-sxm", args.gpus,
                                         PlanOptions(precisions=(args.precision,), disaggregated=False))
    strategy = next((s for s in strategies if s.name.startswith(args.strategy)), None)
    if strategy is None or strategy.units < 2:
        raise SystemExit(f"no strategy of several units starts with '{args.strategy}': "
                         f"{', '.join(s.name for s in strategies if s.units > 1)}")
    units = strategy.units
    unit = build_deployment(strategy.slice(1))
    print(f"{strategy.name} ({units} units), {args.trace}, {len(work.arrivals):,} requests, {slo.describe()}")
    for rate in args.rates:
        t0 = time.perf_counter()
        whole = {router: attainment(build_deployment(dict(strategy.slice(units), router=router)),
                                    work.at_rate(rate, len(work.arrivals)), slo)
                 for router in ("least_outstanding", "round_robin")}
        trace = work.at_rate(rate, len(work.arrivals))
        bernoulli = [attainment(unit, slice_traffic(replace(work, seed=seed), rate, 300, 1, units, unit.router), slo)
                     for seed in range(units)]
        systematic = [attainment(unit, trace.take(np.arange(offset, len(trace), units)), slo)
                      for offset in range(units)]
        print(f"{rate:g} req/s: whole {whole['least_outstanding']:.3f} (least outstanding), "
              f"{whole['round_robin']:.3f} (round robin)")
        for name, shares in (("one unit, plan's share (seeds 0-%d)" % (units - 1), bernoulli),
                             ("one unit, every %dth request (each offset)" % units, systematic)):
            print(f"  {name}: mean {np.mean(shares):.3f}, {min(shares):.3f}-{max(shares):.3f} "
                  f"[{', '.join(f'{a:.3f}' for a in shares)}]")
        print(f"  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(refusing(main))
