"""What the plan report's charts draw beside the simulation's figures: a latency CDF as a bounded number of quantile
points (a 64-GPU plan's verification runs hold 98,304 requests each: every one a point made an 18 MB report), and
a colour for each trace that no other trace of the chart shares."""

from __future__ import annotations

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]

CDF_POINTS = 1000  # quantile levels a CDF is drawn at, evenly spaced from 0 to 1 (a run with fewer requests: each)
# the percentiles the tables print (sim/metrics.py dist_ms: p50, p90, p99) and the far tail, drawn exactly
CDF_LEVELS = (0.5, 0.9, 0.99, 0.999, 0.9999)


def quantile_curve(values: np.ndarray, points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """A CDF of the finite `values` as (x, fraction) points: x the values' quantiles (numpy's linear
    interpolation, as dist_ms computes the tables' p50 / p90 / p99) at `points` evenly spaced levels from 0 (the
    least value) to 1 (the greatest), and at CDF_LEVELS; with no more values than `points`, every value, at level
    i / (n - 1). So reading the curve at 0.9 gives the table's p90 exactly, whatever the run's size."""
    v = np.sort(values[np.isfinite(values)])
    if not len(v):
        return v, v
    levels = np.unique(np.concatenate([np.linspace(0.0, 1.0, min(len(v), points)), [1.0], CDF_LEVELS]))
    return np.quantile(v, levels), levels


def palette(n: int) -> list[str]:
    """`n` colours, each trace its own: COLORS while they last, else n hues evenly spaced around the wheel
    (alternately darker and lighter, so that neighbours differ in lightness too)."""
    if n <= len(COLORS):
        return COLORS[:n]
    return [f"hsl({round(360 * i / n)}, 70%, {42 if i % 2 else 55}%)" for i in range(n)]
