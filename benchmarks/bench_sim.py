"""Simulator speed: simulated requests per wall-second and peak memory.

    python benchmarks/bench_sim.py                 # 10,000-request Poisson run, Llama-3.1-8B on one H100
    python benchmarks/bench_sim.py --requests 1000000

Lengths are drawn from the Azure 2023 conversation trace (bundled excerpt), arrivals are Poisson at
--rate. Reports wall time, requests/s, events, and peak RSS (resource.getrusage).
"""

from __future__ import annotations

import argparse
import resource
import time

from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import collocated, disaggregated
from phasewise.workload import LengthDist, load_trace, open_loop


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--engine", default="vllm", help="engine preset: vllm, sglang, trtllm, vllm-v0, sarathi")
    ap.add_argument("--disagg", action="store_true", help="1 prefill + 1 decode instance instead")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    trace = load_trace("azure-conv")
    prompt = LengthDist("empirical", samples=tuple(int(x) for x in trace.prompt_tokens))
    output = LengthDist("empirical", samples=tuple(int(x) for x in trace.output_tokens))
    work = open_loop(args.rate, args.requests, prompt, output, seed=1)
    if args.disagg:
        dep = disaggregated("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 1)
    else:
        dep = collocated("meta-llama/Llama-3.1-8B", "h100-sxm", engine=args.engine)
    best = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = simulate(dep, work, Slo(1000, 50))
        wall = time.perf_counter() - t0
        best = wall if best is None else min(best, wall)
    s = res.summary()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.requests} requests @ {args.rate} req/s ({'disagg 1P1D' if args.disagg else args.engine}): "
          f"best of {args.repeat}: {best:.3f} s wall, {args.requests / best:,.0f} simulated requests/s, "
          f"{res.events:,} events, peak RSS {rss:.0f} MiB; simulated {s['duration_s']:.0f} s, "
          f"TTFT p50 {s['ttft_ms']['p50']:.0f} ms, TBT p99 {s['tbt_ms']['p99']:.1f} ms, "
          f"{s['throughput']['output_tokens_per_s']:.0f} tok/s")


if __name__ == "__main__":
    main()
