"""The twin's server cost of long prompts: CPU time per request when each prompt is counted, hashed in its engine's
KV blocks (SGLang 1 token, vLLM 16, TensorRT-LLM 32) and looked up in the simulated prefix caches.

    python benchmarks/bench_twin_prompts.py                          # 32k-token prompts sharing 30k tokens
    python benchmarks/bench_twin_prompts.py --engine sglang --shared-tokens 120000 --own-tokens 8000

Serves `phasewise serve`'s app in this process on 127.0.0.1 (one Llama-3.1-8B H100 instance per engine), sends
--warmup untimed then --requests timed non-streaming completions (max_tokens 1) one after another from one HTTP
client, each prompt the shared words then its own, and prints the process CPU time per timed request (server and
client together: the client's share is the same for every engine) and the wall time (which also holds the
simulated prefill, at real speed).

TensorRT-LLM runs with chunked prefill on (`enable_chunked_prefill: true`): its default is off, and with it off
trtllm-serve refuses a prompt beyond max_num_tokens (8,192 by default), so a deployment serving these 32k-token
prompts must switch it on (or raise max_num_tokens past the longest prompt). vLLM V1 and SGLang chunk by default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import known, refusing  # noqa: E402 - the scripts' shared flag checks
from conftest import serving  # noqa: E402 - the tests' in-process uvicorn helper (127.0.0.1, bounded)

from phasewise.apps.tokenizer import Tokenizer  # noqa: E402
from phasewise.apps.twin import LiveSim, create_app  # noqa: E402
from phasewise.sim.deployment import collocated  # noqa: E402
from phasewise.specs import load_hardware  # noqa: E402
from phasewise.specs.engine_presets import preset_key  # noqa: E402
from phasewise.specs.engines import engine_knobs, resolve_engine  # noqa: E402

MODEL = "meta-llama/Llama-3.1-8B"


def long_prompt_knobs(engine: str) -> dict[str, bool]:
    """The knobs a deployment of `engine` serving long prompts needs (see the docstring): TensorRT-LLM (any
    trtllm preset[@version] that has the knob) chunks only when told to."""
    chunks_when_told = preset_key(engine).startswith("trtllm") and "enable_chunked_prefill" in engine_knobs(engine)
    return {"enable_chunked_prefill": True} if chunks_when_told else {}


def run(engine: str, shared_tokens: int, own_tokens: int, requests: int, warmup: int) -> tuple[float, float, int]:
    live = LiveSim(collocated(MODEL, "h100-sxm", engine=engine, **long_prompt_knobs(engine)))
    shared = "w " * shared_tokens  # one built-in token per word
    with serving(create_app(live, MODEL, Tokenizer())) as url, httpx.Client(timeout=120) as client:
        def send(i: int) -> None:
            body = {"model": MODEL, "max_tokens": 1, "prompt": shared + f"question {i} " + "z " * own_tokens}
            r = client.post(url + "/v1/completions", json=body)
            r.raise_for_status()
        for i in range(warmup):
            send(i)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(warmup, warmup + requests):
            send(i)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return cpu / requests, wall / requests, live.cluster.prefix_block_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="sglang,vllm,trtllm", help="comma-separated engine presets")
    ap.add_argument("--shared-tokens", type=int, default=30_000)
    ap.add_argument("--own-tokens", type=int, default=2_000)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if min(args.shared_tokens, args.own_tokens, args.requests) < 1 or args.warmup < 0:
        ap.error("--shared-tokens, --own-tokens and --requests must be at least 1, --warmup at least 0")
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    if not engines:
        ap.error("--engine: give one or more engine presets, comma-separated (sglang, vllm, trtllm, ...)")
    known(ap, "--engine", engines, lambda engine: resolve_engine(engine, load_hardware("h100-sxm")))
    for engine in engines:
        cpu_s, wall_s, key_tokens = run(engine, args.shared_tokens, args.own_tokens, args.requests, args.warmup)
        print(f"{engine:8s} {key_tokens:4d}-token keys: {cpu_s * 1e3:6.1f} ms CPU / request, "
              f"{wall_s * 1e3:6.1f} ms wall ({args.shared_tokens + args.own_tokens + 3:,}-token prompts, "
              f"{args.requests} requests)")


if __name__ == "__main__":
    sys.exit(refusing(main))
