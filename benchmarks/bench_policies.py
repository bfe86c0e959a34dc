"""Simulator speed with the serving policies of the papers against the plain engines they extend.

    python benchmarks/bench_policies.py [--requests 20000] [--repeat 3]

Pairs, each on the same workload and GPUs, at a load where the policy acts (the scenarios' setups):
  plain vllm / vllm-v0 / sarathi x4   vs  Ascendra priority pools (3 LP + 1 HP, --scheduler ascendra);
                                          Llama-3-8B on A100, the bundled Azure conversation trace looped, 25 req/s
  plain 1P1D disaggregated            vs  Adrenaline attention offload (--attention-offload auto);
                                          Llama-2-7B on A100, ShareGPT-like lengths, 15 req/s
Reports the best of --repeat wall times, simulated requests per wall-second and the slowdown factor
(the issue's bound: within 2x of the plain engine's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from phasewise.sim import simulate
from phasewise.sim.api import build
from phasewise.workload import Workload

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, refusing  # noqa: E402 - the scripts' shared flag checks

ASCENDRA = dict(model="meta-llama/Meta-Llama-3-8B", hardware="a100-sxm-80gb", trace="azure-conv", slo_ttft_ms=1000,
                slo_tpot_ms=100, replicas=4)
ADRENALINE = dict(model="meta-llama/Llama-2-7b-hf", hardware="a100-sxm-80gb", trace=None, isl_dist="lognormal",
                  isl=161, isl_spread=0.8, osl_dist="lognormal", osl=338, osl_spread=0.8, slo_ttft_ms=1000,
                  slo_tpot_ms=100, arch="disagg", max_num_seqs=1024)
# the scenarios' setups (scenarios/ascendra.py, scenarios/adrenaline.py) at loads where the policies act
CASES = {
    "vllm x4 @25": dict(ASCENDRA, engine="vllm", rate=25.0),
    "vllm-v0 x4 @25": dict(ASCENDRA, engine="vllm-v0", rate=25.0),
    "sarathi x4 @25": dict(ASCENDRA, engine="sarathi", rate=25.0),
    "ascendra 3+1 @25": dict(ASCENDRA, scheduler="ascendra", rate=25.0),
    "disagg 1P1D @15": dict(ADRENALINE, rate=15.0),
    "adrenaline 1P1D @15": dict(ADRENALINE, attention_offload="auto", rate=15.0),
}
PAIRS = (("vllm x4 @25", "ascendra 3+1 @25"), ("vllm-v0 x4 @25", "ascendra 3+1 @25"),
         ("sarathi x4 @25", "ascendra 3+1 @25"), ("disagg 1P1D @15", "adrenaline 1P1D @15"))


def _policy(policy: dict) -> str:
    if "priority_pools" in policy:
        return f"offloaded {policy['priority_pools']['offload_fraction']:.1%}"
    if "attention_offload" in policy:
        return f"N/M {policy['attention_offload']['offloaded_per_local']:.2f}"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=at_least(1), default=20_000)
    ap.add_argument("--repeat", type=at_least(1), default=3)
    args = ap.parse_args()
    walls = {}
    for name, case in CASES.items():
        if case.get("trace"):  # the bundled excerpt at the rate, looped to --requests
            spec = build(**case)
            work = spec.workload.looped(args.requests / case["rate"])
            spec.workload = Workload(work.arrival_s[:args.requests], work.prompt_tokens[:args.requests],
                                     work.output_tokens[:args.requests])
        else:
            spec = build(requests=args.requests, **case)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = simulate(spec.deployment, spec.workload, spec.slo)
            best = min(best, time.perf_counter() - t0)
        walls[name] = best
        s = res.summary()
        print(f"{name:18s} {best:6.2f} s  {args.requests / best:9,.0f} req/s  events {res.events:,}  "
              f"attainment {s['slo']['attainment']:.1%}  {_policy(s['policy'])}")
    for plain, policy in PAIRS:
        print(f"{policy} / {plain}: {walls[policy] / walls[plain]:.2f}x the plain engine's wall time")


if __name__ == "__main__":
    sys.exit(refusing(main))
