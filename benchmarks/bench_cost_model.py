"""Speed of the per-iteration cost model (the simulator calls it once per iteration).

    python benchmarks/bench_cost_model.py [--repeat N] [--pp P]

Each rate is the best of N one-second runs (calls per second). The fast path and the decode series are
what the simulator calls: `fast` about once per iteration, `decode_series_linear` (or `decode_series` with
a sliding window) once per run of decode iterations, `decode_stage_series` then when pp > 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, refusing  # noqa: E402 - the scripts' shared flag checks

RUN_STEPS = np.arange(64, dtype=np.float64)  # one decode run of 64 iterations


def rate(fn, seconds: float = 1.0, repeat: int = 1) -> float:
    best = 0.0
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(200):
                fn()
            n += 200
        best = max(best, n / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=at_least(1), default=1, help="best of this many one-second runs per rate")
    parser.add_argument("--pp", type=at_least(1), default=1, help="pipeline stages")
    args = parser.parse_args()
    for model, tp in (("meta-llama/Llama-3.1-8B", 1), ("Qwen/Qwen3-30B-A3B", 2), ("meta-llama/Llama-3.1-70B", 4)):
        cm = CostModel(load_model(model), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"), tp,
                       args.pp)
        decode = BatchShape.uniform(64, 1, 1500)
        mixed = BatchShape.from_sequences([(512, 1024)] + [(1, 1000 + i) for i in range(63)])
        kv = decode.decode_kv_tokens + 64 * RUN_STEPS
        latencies = cm.decode_series_linear(decode, RUN_STEPS, 64, 64)[0]
        calls = (
            ("with breakdown: decode", lambda: cm.iteration(decode)),
            ("mixed", lambda: cm.iteration(mixed)),
            ("by stage and group: mixed", lambda: cm.iteration_parts(mixed)),
            ("fast path (simulator): decode", lambda: cm.fast(decode)),
            ("mixed", lambda: cm.fast(mixed)),
            ("decode run of 64: linear", lambda: cm.decode_series_linear(decode, RUN_STEPS, 64, 64)),
            ("series", lambda: cm.decode_series(decode, kv, kv)),
            ("stage series", lambda: cm.decode_stage_series(decode, latencies)),
        )
        rates = ", ".join(f"{label} {rate(call, repeat=args.repeat):9,.0f}/s" for label, call in calls)
        print(f"{model:26} tp={tp} pp={args.pp}: {rates}")


if __name__ == "__main__":
    sys.exit(refusing(main))
