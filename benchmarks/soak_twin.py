"""Soak of the digital twin under mixed good and bad traffic (issue 16): no good request lost, good streams' inter-chunk
gaps as in a clean run, server memory bounded.

    python benchmarks/soak_twin.py                          # 60 s clean, then 120 s mixed (~3 minutes)
    python benchmarks/soak_twin.py --clean-s 10 --mixed-s 20  # a quick look

Starts `phasewise serve` on 127.0.0.1 in a subprocess. --streams good clients each stream one completion after
another (closed loop) through both phases. In the mixed phase, other clients add, at --bad-share of the good
requests' rate: malformed bodies (random bytes, bad JSON, wrong types, a wrong model, a wrong method), huge
bodies (a prompt of --huge-mb MB under the body limit: refused by the context check; one over it: 413), clients
that disconnect mid-stream, and stalled clients that open a long stream and do not read it for --stall-s.
Reports: good requests completed and lost (a good request lost = not a 200 stream ending in [DONE] with every
token), the good streams' inter-chunk gaps (p50 / p99 / max) clean vs mixed, the bad requests' status codes,
and the server's RSS over time. Everything is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import time
from collections import Counter

import numpy as np
from bench_twin import rss_mib
from twin_server import start_twin

MODEL = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context: prompts beyond it are refused


class Phase:
    def __init__(self, name: str) -> None:
        self.name, self.gaps, self.ok, self.lost, self.bad = name, [], 0, 0, Counter()
        self.lost_why: Counter = Counter()


async def good_stream(session, url: str, prompt: str, max_tokens: int, phase: Phase) -> None:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": True}
    times, tokens, done = [], 0, False
    try:
        async with session.post(url, json=body) as resp:
            if resp.status != 200:
                phase.lost += 1
                phase.lost_why[f"status {resp.status}"] += 1
                return
            async for raw in resp.content:
                arrived = time.perf_counter()  # before parsing: what the client saw
                line = raw.decode().strip()
                if not line:
                    continue
                data = line.removeprefix("data: ")
                if data == "[DONE]":
                    done = True
                    break
                obj = json.loads(data)
                for ch in obj.get("choices", []):
                    if ch.get("text"):
                        times.append(arrived)
                        tokens += len(ch["text"].split())
    except Exception as exc:  # a connection error loses the request
        phase.lost += 1
        phase.lost_why[type(exc).__name__] += 1
        return
    if not done or tokens != max_tokens:
        phase.lost += 1
        phase.lost_why["incomplete"] += 1
        return
    phase.ok += 1
    phase.gaps.extend(np.diff(times).tolist())


async def bad_request(session, base: str, kind: str, args, phase: Phase) -> None:
    import aiohttp

    url = base + "/v1/completions"
    json_headers = {"content-type": "application/json"}
    try:
        if kind == "random-bytes":
            r = await session.post(url, data=os.urandom(random.randint(1, 2000)), headers=json_headers)
        elif kind == "bad-json":
            r = await session.post(url, data=b'{"model": "' + MODEL.encode() + b'", "prompt": [1, 2',
                                   headers=json_headers)
        elif kind == "wrong-types":
            r = await session.post(url, json={"model": MODEL, "prompt": {"a": 1}, "max_tokens": "many", "n": 3})
        elif kind == "wrong-model":
            r = await session.post(url, json={"model": "gpt-9", "prompt": "hi"})
        elif kind == "wrong-method":
            r = await session.get(url)
        elif kind == "huge-prompt":  # under the body limit: refused by the context check
            r = await session.post(url, json={"model": MODEL, "prompt": "word " * int(args.huge_mb * 2**20 / 5)})
        elif kind == "over-limit":  # over the body limit: 413 before it is read whole
            r = await session.post(url, data=b"x" * (5 * 2**20), headers=json_headers)
        elif kind == "disconnect":  # a valid stream, left after a few chunks
            async with session.post(url, json={"model": MODEL, "prompt": "hi", "max_tokens": 200,
                                               "stream": True}) as resp:
                for _ in range(3):
                    await resp.content.readline()
                resp.close()
            phase.bad[(kind, 200)] += 1
            return
        elif kind == "stalled":  # a long stream not read for stall_s (its socket buffers fill), then left
            async with session.post(url, json={"model": MODEL, "prompt": "hi", "max_tokens": 1800,
                                               "stream": True}) as resp:
                await asyncio.sleep(args.stall_s)
                resp.close()
            phase.bad[(kind, 200)] += 1
            return
        else:
            raise ValueError(kind)
        async with r:
            await r.read()
            phase.bad[(kind, r.status)] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        phase.bad[(kind, type(exc).__name__)] += 1


# Kinds of bad traffic and their weights: mostly malformed, a few huge, some leaving clients (assumed mix).
BAD_KINDS = {"random-bytes": 3, "bad-json": 2, "wrong-types": 2, "wrong-model": 1, "wrong-method": 1,
             "huge-prompt": 0.5, "over-limit": 0.5, "disconnect": 2, "stalled": 1}


async def bad_traffic(port: int, seconds: float, bad_rate: float, args, phase: Phase) -> None:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    rng = random.Random(args.seed)
    kinds, weights = list(BAD_KINDS), list(BAD_KINDS.values())
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        pending = set()
        while time.perf_counter() < end:
            await asyncio.sleep(rng.expovariate(bad_rate))
            task = asyncio.create_task(bad_request(session, base, rng.choices(kinds, weights)[0], args, phase))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


def bad_process(port: int, seconds: float, bad_rate: float, args, out) -> None:
    """The bad traffic in its own process, so that building a 5 MB body never stalls the good clients' loop."""
    phase = Phase("bad")
    asyncio.run(bad_traffic(port, seconds, bad_rate, args, phase))
    out.put(dict(phase.bad))


async def run_phase(port: int, phase: Phase, seconds: float, args, rss: list) -> None:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    prompt = " ".join(["word"] * args.prompt_words)  # one token a word under the built-in count
    timeout = aiohttp.ClientTimeout(total=120)
    end = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        async def good_client() -> None:
            while time.perf_counter() < end:
                await good_stream(session, base + "/v1/completions", prompt, args.max_tokens, phase)

        async def sample_rss() -> None:
            t0 = time.perf_counter()
            while time.perf_counter() < end:
                rss.append((phase.name, time.perf_counter() - t0, rss_mib(args.server_pid)))
                await asyncio.sleep(1.0)

        await asyncio.gather(*(good_client() for _ in range(args.streams)), sample_rss())


def gap_figures(gaps: list[float]) -> dict[str, float]:
    g = np.asarray(gaps) * 1e3
    return {"n": len(g), "p50_ms": float(np.percentile(g, 50)), "p99_ms": float(np.percentile(g, 99)),
            "max_ms": float(g.max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clean-s", type=float, default=60)
    ap.add_argument("--mixed-s", type=float, default=120)
    ap.add_argument("--streams", type=int, default=16, help="good clients, each streaming one request at a time")
    ap.add_argument("--prompt-words", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--bad-share", type=float, default=0.1, help="bad requests per good request")
    ap.add_argument("--huge-mb", type=float, default=3.0)
    ap.add_argument("--stall-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    server, port = start_twin("--model", MODEL, "--max-num-seqs", "256")
    args.server_pid = server.pid
    rss: list[tuple[str, float, float]] = []
    try:
        clean, mixed = Phase("clean"), Phase("mixed")
        asyncio.run(run_phase(port, clean, args.clean_s, args, rss))
        good_rate = clean.ok / args.clean_s
        out = multiprocessing.Queue()
        bad = multiprocessing.Process(target=bad_process, args=(port, args.mixed_s, args.bad_share * good_rate,
                                                                 args, out))
        bad.start()
        asyncio.run(run_phase(port, mixed, args.mixed_s, args, rss))
        mixed.bad.update(out.get(timeout=180))
        bad.join(timeout=30)
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=20)
    cores = os.cpu_count()
    print(f"twin soak on 127.0.0.1 ({cores} cores, shared by server, clients and anything else running), {MODEL}, "
          f"{args.streams} good streams of {args.prompt_words} + {args.max_tokens} tokens")
    for p, secs in ((clean, args.clean_s), (mixed, args.mixed_s)):
        g = gap_figures(p.gaps)
        print(f"  {p.name:5s} {secs:5.0f} s: good {p.ok} ok, {p.lost} lost {dict(p.lost_why) or ''}; "
              f"gaps n={g['n']} p50 {g['p50_ms']:.2f} ms, p99 {g['p99_ms']:.2f} ms, max {g['max_ms']:.1f} ms; "
              f"bad {sum(p.bad.values())}")
    by_kind: dict[str, Counter] = {}
    for (kind, status), n in mixed.bad.items():
        by_kind.setdefault(kind, Counter())[status] += n
    print("  bad requests (kind: status x count): " + "; ".join(
        f"{k}: " + ", ".join(f"{s} x{n}" for s, n in c.items()) for k, c in sorted(by_kind.items())))
    c, m = gap_figures(clean.gaps), gap_figures(mixed.gaps)
    series = [r for _, _, r in rss]
    print(f"  p99 gap mixed / clean = {m['p99_ms'] / c['p99_ms']:.3f} (target <= 1.10); p50 ratio "
          f"{m['p50_ms'] / c['p50_ms']:.3f}")
    print(f"  server RSS: start {series[0]:.0f} MiB, end of clean {[r for n, _, r in rss if n == 'clean'][-1]:.0f} "
          f"MiB, peak {max(series):.0f} MiB, end {series[-1]:.0f} MiB; still serving at the end: {alive}")
    print("  RSS every 20 s: " + ", ".join(f"{r:.0f}" for r in series[::20]))


if __name__ == "__main__":
    main()
