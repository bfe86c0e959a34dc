"""How well the start-up constants (src/phasewise/specs/data/startup.yaml) predict the public vLLM logs they come
from, leave one out: each point is predicted with the constant taken (median) over the other points of its kind,
so no point is predicted by a constant fitted on it. The shipped constants' in-sample errors are printed beside.

    python benchmarks/validate_startup.py

Each point is a log line quoted in startup.yaml with its source; per unit is what the constant multiplies
(decoder layers; captured sizes x layers; bytes read).
"""

from __future__ import annotations

import argparse
import statistics

from phasewise.perf.startup import _table

# kind, source, seconds measured, units the constant multiplies
POINTS = [
    ("capture", "PR #11005 Llama-3-8B V0: 35 sizes x 32 layers", 10.0, 35 * 32),
    ("capture", "#20264 Llama-3.2-3B V1: 67 sizes x 28 layers", 17.0, 67 * 28),
    ("capture", "#19824 Llama-70B FP8 TP8: 67 sizes x 80 layers", 60.0, 67 * 80),
    ("capture", "PR #10460 Llama-3-8B V0: 35 sizes x 32 layers", 15.0, 35 * 32),
    ("compile_cold", "PR #11005 Llama-3-8B -O3: 32 layers", 19.37, 32),
    ("compile_cold", "#19824 Llama-70B FP8 TP8: 80 layers", 85.0, 80),
    ("compile_cold", "PR #12569 Llama-3.1-70B W8A8 TP1: 80 layers", 54.73, 80),
    ("compile_warm", "PR #16848 Llama-3-8B: 32 layers", 9.22, 32),
    ("compile_warm", "#20264 Llama-3.2-3B: 28 layers", 7.51, 28),
    ("compile_warm", "llm-d #111 granite-3.2-8b: 40 layers", 7.0, 40),
    ("init", "PR #11005 Llama-3-8B: 14.18 - 10", 4.18, 1),
    ("init", "#20264 Llama-3.2-3B: 34.11 - 7.51 - 17", 9.6, 1),
    ("init", "runai-model-streamer #67: 90.84 - 45.81 - 37", 8.03, 1),
    ("weights", "#20264: 3.4213 GiB", 0.69, 3.4213 * 2**30),
    ("weights", "#19824 Llama-70B FP8, hot page cache: ~70 GB", 10.0, 70e9),
]
SHIPPED = {"capture": "capture_s_per_graph_layer", "compile_cold": "compile_cold_s_per_layer",
           "compile_warm": "compile_warm_s_per_layer", "init": "init_s"}


def main(argv: list[str] | None = None) -> None:
    # no options (the points are this file's, the constants the catalog's): a flag is argparse's one-line error
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    vllm = _table()["engines"]["vllm"]
    read = _table()["weights_read_bytes_per_s"]
    print(f"{'kind':13} {'point':50} {'measured':>9} {'leave-one-out':>14} {'err':>6} {'shipped':>8} {'err':>6}")
    errors: dict[str, list[float]] = {}
    for kind, source, measured_s, units in POINTS:
        others = [s / u for k, src, s, u in POINTS if k == kind and src != source]
        held_out = statistics.median(others) * units if kind != "weights" else units / statistics.median(
            [u / s for k, src, s, u in POINTS if k == kind and src != source])
        shipped = units / read if kind == "weights" else vllm[SHIPPED[kind]] * units
        loo_err, in_err = held_out / measured_s - 1, shipped / measured_s - 1
        errors.setdefault(kind, []).append(abs(loo_err))
        print(f"{kind:13} {source:50} {measured_s:8.1f}s {held_out:13.1f}s {loo_err:+6.0%} {shipped:7.1f}s "
              f"{in_err:+6.0%}")
    print()
    for kind, errs in errors.items():
        print(f"{kind:13} leave-one-out |error|: median {statistics.median(errs):.0%}, worst {max(errs):.0%} "
              f"({len(errs)} points)")


if __name__ == "__main__":
    main()
