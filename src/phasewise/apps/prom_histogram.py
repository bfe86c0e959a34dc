"""A Prometheus histogram in the text exposition format (cumulative `_bucket`s with `le`, `_sum`, `_count`), for the
twin's /metrics (apps/twin_live.py, apps/twin_dynamo.py)."""

from __future__ import annotations


class Histogram:
    __slots__ = ("buckets", "counts", "total", "n")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.total, self.n = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, x: float, times: int = 1) -> None:
        for i, b in enumerate(self.buckets):
            if x <= b:
                self.counts[i] += times
                break
        self.total += x * times
        self.n += times

    def lines(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {cum}')
        out += [f'{name}_bucket{{{labels},le="+Inf"}} {self.n}', f"{name}_sum{{{labels}}} {self.total}",
                f"{name}_count{{{labels}}} {self.n}"]
        return out
