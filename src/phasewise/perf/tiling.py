"""GEMM efficiency from how its M x K @ K x N tiles onto systolic arrays (LLMCompass-style), for chips built
from parts (specs/parts.py).

Weight-stationary arrays: each holds one array_rows x array_cols block of the weight (K x N) and streams M
activation rows through it, taking  m + array_rows + array_cols  cycles for m rows (fill and drain). The
ceil(K/rows) x ceil(N/cols) blocks, each possibly with M split in s parts so that every array has work, run
in waves over the chip's arrays. Utilization = useful MACs / (arrays x MACs per array x cycles), the best
over the splits. Padding of K and N to whole blocks, the last wave's idle arrays and fill/drain are what it
loses: a bigger array loses more on skinny (small-M) GEMMs; a large square GEMM reaches ~1.
"""

from __future__ import annotations

import math
from functools import lru_cache

from phasewise.specs.parts import ComputeUnits


@lru_cache(maxsize=65536)
def _utilization(m: int, k: int, n: int, arrays: int, rows: int, cols: int) -> float:
    blocks = math.ceil(k / rows) * math.ceil(n / cols)
    useful = m * k * n / (arrays * rows * cols)  # cycles at full utilization
    best = 0.0
    splits = {1, max(1, min(m, math.ceil(arrays / blocks)))}
    split = 2
    while split <= min(m, 4 * arrays // blocks + 1):
        splits.add(split)
        split *= 2
    for split in splits:
        waves = math.ceil(blocks * split / arrays)
        cycles = waves * (math.ceil(m / split) + rows + cols)
        best = max(best, useful / cycles)
    return best


def array_utilization(m: float, k: float, n: float, compute: ComputeUnits) -> float:
    """Fraction of the chip's tensor peak an m x k @ k x n GEMM keeps busy (0 < u <= 1). A fractional m (a grouped
    GEMM's mean rows per expert) is a mix of floor(m) and floor(m) + 1 rows with that mean: its cycles are theirs
    interpolated, so the time grows smoothly with m (at ceil(m) rows it fell by up to half as m passed an integer,
    the FLOPs charged for m rows at the utilization of ceil(m))."""
    if m <= 0 or k <= 0 or n <= 0:
        return 1.0
    k_int, n_int = max(1, math.ceil(k)), max(1, math.ceil(n))
    shape = (k_int, n_int, compute.arrays, compute.array_rows, compute.array_cols)
    low = math.floor(m)
    if low == m or low == 0:
        return _utilization(max(1, math.ceil(m)), *shape)
    share = m - low
    cycles = (1.0 - share) * low / _utilization(low, *shape) + share * (low + 1) / _utilization(low + 1, *shape)
    return m / cycles
