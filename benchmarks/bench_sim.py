"""Simulator speed: simulated requests per wall-second and peak memory.

    python benchmarks/bench_sim.py                 # 10,000-request Poisson run, Llama-3.1-8B on one H100
    python benchmarks/bench_sim.py --requests 1000000
    python benchmarks/bench_sim.py --engine vllm,sglang,trtllm,vllm-v0        # one line per engine preset
    python benchmarks/bench_sim.py --trace ../shared/traces/azure_llm_2023_conv.csv --replicas 2 --engine all
    python benchmarks/bench_sim.py --model google/gemma-3-27b-it --hardware h200-sxm --memory-fraction 0.5
    python benchmarks/bench_sim.py --disagg --engine vllm,sglang       # 1 prefill + 1 decode instance of each engine

Lengths are drawn from the Azure 2023 conversation trace (bundled excerpt), arrivals are Poisson at
--rate; with --trace, the trace file itself is replayed (its own arrivals and lengths), as
`phasewise simulate --trace FILE --replicas N` does. Reports wall time of the simulation (best of
--repeat), requests/s, events, and peak RSS (resource.getrusage). The first repeat of each engine also
fills the cost model's caches; a `phasewise simulate` command pays that, and Python's start-up, once.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from phasewise.sim import Slo, simulate
from phasewise.sim.api import deployment_from_flags
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engines import resolve_engine
from phasewise.workload import LengthDist, image_inputs, load_trace, open_loop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, known, positive, refusing  # noqa: E402 - the scripts' shared flag checks

ENGINES = ("vllm", "sglang", "trtllm", "vllm-v0", "sarathi")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=at_least(1), default=10_000)
    ap.add_argument("--rate", type=positive, default=10.0)
    ap.add_argument("--engine", default="vllm",
                    help="engine preset, a comma-separated list, or 'all': vllm, sglang, trtllm, vllm-v0, sarathi")
    ap.add_argument("--trace", help="replay this trace (CSV/JSONL, or azure-conv / azure-code) instead")
    ap.add_argument("--replicas", type=at_least(1), default=None, help="collocated instances (default 1)")
    ap.add_argument("--disagg", action="store_true", help="1 prefill + 1 decode instance of each --engine instead")
    ap.add_argument("--repeat", type=at_least(1), default=3)
    ap.add_argument("--model", default="meta-llama/Llama-3.1-8B")
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--tp", type=at_least(1), default=1)
    ap.add_argument("--memory-fraction", type=float, default=None, help="below the engine's: KV pressure")
    ap.add_argument("--images-per-request", type=int, default=None, help="a multimodal model: images per request")
    ap.add_argument("--image-size", default=None, help="with --images-per-request (or a trace's NumImages column): "
                    "WIDTHxHEIGHT pixels")
    ap.add_argument("--image-share", type=float, default=None, help="with --images-per-request: requests carrying them")
    args = ap.parse_args()
    engines = ENGINES if args.engine == "all" else tuple(e.strip() for e in args.engine.split(",") if e.strip())
    if not engines:
        ap.error(f"--engine: give an engine preset, a comma-separated list or 'all' ({', '.join(ENGINES)})")
    if args.disagg and args.replicas is not None:
        ap.error("--replicas counts collocated instances; --disagg runs 1 prefill + 1 decode instance")
    replicas = args.replicas or 1
    known(ap, "--model", [args.model], load_model)
    known(ap, "--hardware", [args.hardware], load_hardware)
    known(ap, "--engine", engines, lambda engine: resolve_engine(engine, load_hardware(args.hardware)))
    if args.trace:
        work = load_trace(args.trace)
        what = f"{len(work)} requests of {args.trace}"
        # a trace with a NumImages column gives each request's count (--image-size their size)
        images = image_inputs(args.images_per_request, args.image_size, args.image_share, work.image_counts)
    else:
        trace = load_trace("azure-conv")
        prompt = LengthDist("empirical", samples=tuple(int(x) for x in trace.prompt_tokens))
        output = LengthDist("empirical", samples=tuple(int(x) for x in trace.output_tokens))
        work = open_loop(args.rate, args.requests, prompt, output, seed=1)
        images = image_inputs(args.images_per_request, args.image_size, args.image_share)
        what = f"{args.requests} requests @ {args.rate} req/s"
    for engine in engines:
        where = dict(model=args.model, hardware=args.hardware, tp=args.tp, memory_fraction=args.memory_fraction)
        if args.disagg:
            dep, label = deployment_from_flags(**where, engine=engine, arch="disagg"), f"{engine} disagg 1P1D"
        else:
            dep = deployment_from_flags(**where, engine=engine, replicas=replicas)
            label = f"{engine} x{replicas}" if replicas > 1 else engine
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = simulate(dep, work, Slo(1000, 50), images=images)
            wall = time.perf_counter() - t0
            best = wall if best is None else min(best, wall)
        s = res.summary()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        label += f", {images.describe()}" if images else ""
        print(f"{what} ({args.model.split('/')[-1]}, {label}): best of {args.repeat}: {best:.3f} s wall, {len(work) / best:,.0f} simulated "
              f"requests/s, {res.events:,} events, peak RSS {rss:.0f} MiB; simulated {s['duration_s']:.0f} s, "
              f"TTFT p50 {s['ttft_ms']['p50']:.0f} ms, TBT p99 {s['tbt_ms']['p99']:.1f} ms, "
              f"{s['throughput']['output_tokens_per_s']:.0f} tok/s", flush=True)


if __name__ == "__main__":
    sys.exit(refusing(main))
