"""Load test of the digital twin with a real client, against `phasewise simulate` of the same workload.

    python benchmarks/bench_twin.py                      # 500 concurrent streams (closed loop), 2 requests each
    python benchmarks/bench_twin.py --soak 600 --clients 64   # 10-minute soak: server RSS over time

Starts `phasewise serve` on 127.0.0.1 in a subprocess, drives it with aiohttp streaming clients (each of
--clients sends its next request when its last one finishes), counts lost or malformed responses,
measures TTFT and every inter-chunk gap at the client, then simulates the same closed loop (same prompt
token count, same max_tokens, same concurrency) and compares. Everything is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np
from bench_args import at_least, positive
from twin_server import start_twin

MODEL = "meta-llama/Llama-3.1-8B"  # --model overrides


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def one(session, url: str, prompt: str, max_tokens: int, out: dict) -> None:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    times, tokens, usage, done = [], 0, None, False
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                out["errors"] += 1
                return
            async for raw in resp.content:
                arrived = time.perf_counter() - t0  # before any parsing: what the client saw
                line = raw.decode().strip()
                if not line:
                    continue
                if not line.startswith("data: "):
                    out["malformed"] += 1
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                obj = json.loads(data)
                if obj.get("usage"):
                    usage = obj["usage"]
                for ch in obj.get("choices", []):
                    if ch.get("text"):
                        times.append(arrived)
                        tokens += len(ch["text"].split())
    except Exception:  # connection errors count as lost responses
        out["errors"] += 1
        return
    if not done or usage is None or usage["completion_tokens"] != max_tokens or tokens != max_tokens:
        out["malformed"] += 1
        return
    out["ttft"].append(times[0])
    out["gaps"].extend(np.diff(times).tolist())
    out["ok"] += 1


async def drive(port: int, clients: int, per_client: int, prompt: str, max_tokens: int, deadline_s: float) -> dict:
    import aiohttp

    out = {"ttft": [], "gaps": [], "ok": 0, "errors": 0, "malformed": 0}
    url = f"http://127.0.0.1:{port}/v1/completions"
    conn = aiohttp.TCPConnector(limit=clients + 8)
    timeout = aiohttp.ClientTimeout(total=deadline_s)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        end = time.perf_counter() + deadline_s

        async def client() -> None:
            for _ in range(per_client):
                if time.perf_counter() > end:
                    return
                await one(session, url, prompt, max_tokens, out)

        await asyncio.gather(*(client() for _ in range(clients)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=at_least(1), default=500)
    ap.add_argument("--per-client", type=at_least(1), default=2)
    ap.add_argument("--prompt-words", type=at_least(1), default=300)
    ap.add_argument("--max-tokens", type=at_least(1), default=64)
    ap.add_argument("--soak", type=float, default=0, help="seconds of steady load (sampling server RSS)")
    ap.add_argument("--deadline", type=positive, default=300)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--tp", type=at_least(1), default=1)
    args = ap.parse_args()
    if not 0 <= args.soak < float("inf"):
        ap.error(f"argument --soak: {args.soak!r}: expected a finite number >= 0 (0: no soak)")
    globals()["MODEL"] = args.model
    # every client sends the same prompt: from 512 tokens on the twin would share its prefix (apps/twin.py), which
    # the simulate() it is compared with (lengths only) cannot; caching off keeps the two alike
    server, port = start_twin("--model", MODEL, "--tp", str(args.tp), "--max-num-seqs", "256",
                              "--prefix-caching", "off")
    try:
        prompt = " ".join(["word"] * args.prompt_words)  # 1 token per word under the built-in count
        if args.soak:
            samples = []
            t_end = time.perf_counter() + args.soak
            total = {"ok": 0, "errors": 0, "malformed": 0}
            while time.perf_counter() < t_end:
                res = asyncio.run(drive(port, args.clients, 10**9, prompt, args.max_tokens,
                                        min(30.0, t_end - time.perf_counter())))
                for k in total:
                    total[k] += res[k]
                samples.append(rss_mib(server.pid))
                print(f"t={args.soak - (t_end - time.perf_counter()):6.0f}s RSS {samples[-1]:.0f} MiB, "
                      f"{res['ok']} ok", flush=True)
            print(f"soak {args.soak:.0f} s at {args.clients} concurrent streams: {total['ok']} requests ok, "
                  f"{total['errors']} lost, {total['malformed']} malformed (streams cut at window ends count as "
                  f"lost); server RSS first {samples[0]:.0f} MiB, peak {max(samples):.0f} MiB, "
                  f"last {samples[-1]:.0f} MiB")
            return
        t0 = time.perf_counter()
        res = asyncio.run(drive(port, args.clients, args.per_client, prompt, args.max_tokens, args.deadline))
        wall = time.perf_counter() - t0
        rss = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)

    from phasewise.sim import simulate
    from phasewise.sim.deployment import collocated
    from phasewise.workload import ClosedLoop, LengthDist

    n = args.clients * args.per_client
    sim = simulate(collocated(MODEL, "h100-sxm", tp=args.tp, max_num_seqs=256),
                   ClosedLoop(args.clients, n, LengthDist("fixed", args.prompt_words),
                              LengthDist("fixed", args.max_tokens)))
    s = sim.summary()
    ttft = np.array(res["ttft"]) * 1e3
    gaps = np.array(res["gaps"]) * 1e3
    print(f"{MODEL} tp={args.tp}: {args.clients} concurrent streams, {n} requests of {args.prompt_words}/{args.max_tokens} tokens: "
          f"{res['ok']} ok, {res['errors']} lost, {res['malformed']} malformed; {wall:.1f} s wall; server RSS "
          f"{rss:.0f} MiB")
    rows = [("TTFT p50 ms", np.percentile(ttft, 50), s["ttft_ms"]["p50"]),
            ("TTFT p90 ms", np.percentile(ttft, 90), s["ttft_ms"]["p90"]),
            ("TTFT mean ms", ttft.mean(), s["ttft_ms"]["mean"]),
            ("TBT p50 ms", np.percentile(gaps, 50), s["tbt_ms"]["p50"]),
            ("TBT p90 ms", np.percentile(gaps, 90), s["tbt_ms"]["p90"]),
            ("TBT mean ms", gaps.mean(), s["tbt_ms"]["mean"]),
            ("duration s", wall, s["duration_s"])]
    print(f"{'metric':14} {'client':>9} {'simulate':>9} {'error':>8}")
    for name, c, p in rows:
        print(f"{name:14} {c:9.1f} {p:9.1f} {p / c - 1:+8.1%}")
    errs = [abs(p / c - 1) for _, c, p in rows if c > 0]
    print(f"median |error| {statistics.median(errs):.1%}, max {max(errs):.1%}")


if __name__ == "__main__":
    main()
