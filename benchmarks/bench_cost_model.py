"""Speed of the per-iteration cost model (the simulator calls it once per iteration).

    python benchmarks/bench_cost_model.py
"""

from __future__ import annotations

import time

from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant


def rate(fn, seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main() -> None:
    for model, tp in (("meta-llama/Llama-3.1-8B", 1), ("Qwen/Qwen3-30B-A3B", 2), ("meta-llama/Llama-3.1-70B", 4)):
        cm = CostModel(load_model(model), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"), tp)
        decode = BatchShape.uniform(64, 1, 1500)
        mixed = BatchShape.from_sequences([(512, 1024)] + [(1, 1000 + i) for i in range(63)])
        print(f"{model:26} tp={tp}: with breakdown: decode {rate(lambda: cm.iteration(decode)):8,.0f}/s, "
              f"mixed {rate(lambda: cm.iteration(mixed)):8,.0f}/s; fast path (simulator): "
              f"decode {rate(lambda: cm.fast(decode)):9,.0f}/s, mixed {rate(lambda: cm.fast(mixed)):9,.0f}/s")


if __name__ == "__main__":
    main()
