"""Prefix caching on a Mooncake trace: simulator speed, and hit rate against cache size and router.

    python benchmarks/bench_prefix_cache.py                          # ../shared/traces/mooncake_conversation.jsonl
    python benchmarks/bench_prefix_cache.py --trace mooncake         # the bundled 500-request excerpt

Prints the trace's own prefix-reuse ratio (every repeated 512-token prefix block a hit: what an unbounded cache
reaches), then one line per run: Llama-3.1-8B on 8 x H200 (TP 8) at several memory fractions (the KV pool, hence the
cache, shrinks with it), with a host-memory tier behind the smallest (--host-kv-cache-gb), and 4 x H100 replicas
with prefix caching off, on behind least-outstanding routing, behind the prefix-aware router, behind Dynamo's KV
router (weights 1 and 4, temperatures 0.1 and 1, queue thresholds 1 and 4, without KV events at TTLs 120 and 30 s)
and behind the most-free-KV router, with a host tier each, and with a KV store the four share (--kv-store-gb); then
8 x H100 replicas (less loaded) behind Dynamo's KV router without and with a router queue at 1.
Each line: wall time, simulated requests per wall-second, hit rate by prompt tokens and by
shareable blocks (the host tier's share of the tokens in brackets), tokens of KV evicted from the engines' caches
(engine blocks evicted x the block size), mean and p99 TTFT, and with a router queue the requests it held and their
mean time held (the summary's policy.router_queue).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

from phasewise.errors import PhasewiseError
from phasewise.sim.api import run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import refusing  # noqa: E402 - the scripts' shared flag checks

FULL = Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake_conversation.jsonl"
RUNS = [
    ("8xH200 TP8 mem 0.9", dict(hardware="h200-sxm", tp=8, memory_fraction=0.9)),
    ("8xH200 TP8 mem 0.5", dict(hardware="h200-sxm", tp=8, memory_fraction=0.5)),
    ("8xH200 TP8 mem 0.3", dict(hardware="h200-sxm", tp=8, memory_fraction=0.3)),
    ("8xH200 TP8 mem 0.3 +1TB host", dict(hardware="h200-sxm", tp=8, memory_fraction=0.3, host_kv_cache_gb=1000.0)),
    ("8xH200 TP8 mem 0.3 +8TB host", dict(hardware="h200-sxm", tp=8, memory_fraction=0.3, host_kv_cache_gb=8000.0)),
    ("4xH100 caching off", dict(replicas=4, prefix_caching="off")),
    ("4xH100 least_outstanding", dict(replicas=4)),
    ("4xH100 prefix_aware", dict(replicas=4, router="prefix_aware")),
    ("4xH100 dynamo_kv", dict(replicas=4, router="dynamo_kv")),
    ("4xH100 dynamo_kv weight 4", dict(replicas=4, router="dynamo_kv", kv_overlap_score_weight=4.0)),
    ("4xH100 dynamo_kv temperature 0.1", dict(replicas=4, router="dynamo_kv", router_temperature=0.1)),
    ("4xH100 dynamo_kv temperature 1", dict(replicas=4, router="dynamo_kv", router_temperature=1.0)),
    ("4xH100 dynamo_kv queue 1", dict(replicas=4, router="dynamo_kv", router_queue_threshold=1.0)),
    ("4xH100 dynamo_kv queue 4", dict(replicas=4, router="dynamo_kv", router_queue_threshold=4.0)),
    ("4xH100 dynamo_kv no KV events", dict(replicas=4, router="dynamo_kv", router_kv_events=False)),
    ("4xH100 dynamo_kv no events 30 s", dict(replicas=4, router="dynamo_kv", router_kv_events=False,
                                             router_ttl_s=30.0)),
    ("4xH100 kv_aware", dict(replicas=4, router="kv_aware")),
    ("4xH100 least_out +500GB host", dict(replicas=4, host_kv_cache_gb=500.0)),
    ("4xH100 least_out +2TB store", dict(replicas=4, kv_store_gb=2000.0)),
    ("4xH100 least_out +10TB store", dict(replicas=4, kv_store_gb=10000.0)),
    ("8xH100 dynamo_kv", dict(replicas=8, router="dynamo_kv")),
    ("8xH100 dynamo_kv queue 1", dict(replicas=8, router="dynamo_kv", router_queue_threshold=1.0)),
]


def trace_ratio(path: str) -> float:
    """Hits / lookups over full 512-token prefix blocks (first occurrence a miss), read from the JSONL itself."""
    if path == "mooncake":
        path = str(resources.files("phasewise.workload").joinpath("data", "mooncake_conversation_excerpt.jsonl"))
    seen, hits, lookups = set(), 0, 0
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                ids, length = list(r["hash_ids"]), int(r["input_length"])
            except (ValueError, KeyError, TypeError) as exc:
                raise PhasewiseError(f"--trace {path}: line {number} is not a Mooncake record with hash_ids and "
                                     f"input_length ({type(exc).__name__}: {exc})") from None
            for j in range(min((length - 1) // 512, len(ids))):
                hits += tuple(ids[: j + 1]) in seen
                seen.add(tuple(ids[: j + 1]))
                lookups += 1
    if not lookups:
        raise PhasewiseError(f"--trace {path}: no full 512-token prefix block to look up")
    return hits / lookups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", default=str(FULL) if FULL.is_file() else "mooncake",
                    help="a Mooncake-format JSONL file (with hash_ids), or mooncake: the bundled excerpt")
    args = ap.parse_args()
    if args.trace != "mooncake" and not Path(args.trace).is_file():
        ap.error(f"--trace: no file {args.trace!r} (a Mooncake-format JSONL file, or mooncake: the bundled excerpt)")
    print(f"{args.trace}: the trace's prefix reuse (unbounded cache) {trace_ratio(args.trace):.1%} of blocks")
    print(f"{'run':33s} {'wall s':>7s} {'req/s':>8s} {'hit tok':>8s} {'(host)':>8s} {'hit blk':>8s} {'evict tok':>11s} "
          f"{'TTFT mean':>10s} {'TTFT p99':>10s} {'held':>7s} {'hold ms':>8s}")
    for label, kw in RUNS:
        t0 = time.perf_counter()
        s = run(model="meta-llama/Llama-3.1-8B", trace=args.trace, **kw).summary()
        wall = time.perf_counter() - t0
        c = s["prefix_cache"] or {"hit_rate_tokens": 0.0, "hit_rate_blocks": 0.0, "evicted_tokens": 0,
                                  "host_hit_rate_tokens": 0.0}
        queue = (s.get("policy") or {}).get("router_queue")
        held = f"{queue['held_requests']:7,} {queue['mean_hold_s'] * 1e3:8,.0f}" if queue else f"{'-':>7s} {'-':>8s}"
        print(f"{label:33s} {wall:7.2f} {s['requests'] / wall:8,.0f} {c['hit_rate_tokens']:8.1%} "
              f"{c['host_hit_rate_tokens']:8.1%} {c['hit_rate_blocks']:8.1%} {c['evicted_tokens']:11,} "
              f"{s['ttft_ms']['mean']:10,.0f} {s['ttft_ms']['p99']:10,.0f} {held}")


if __name__ == "__main__":
    sys.exit(refusing(main))
