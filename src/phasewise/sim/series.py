"""A growable float array (amortized doubling) for per-instance iteration end times."""

from __future__ import annotations

import numpy as np


class Series:
    __slots__ = ("data", "n")

    def __init__(self, capacity: int = 1024) -> None:
        self.data = np.empty(capacity)
        self.n = 0

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need > len(self.data):
            grown = np.empty(max(need, 2 * len(self.data)))
            grown[: self.n] = self.data[: self.n]
            self.data = grown

    def append(self, x: float) -> None:
        self._reserve(1)
        self.data[self.n] = x
        self.n += 1

    def extend(self, xs: np.ndarray) -> None:
        self._reserve(len(xs))
        self.data[self.n : self.n + len(xs)] = xs
        self.n += len(xs)

    def slice(self, start: int, stop: int) -> np.ndarray:
        return self.data[start:stop]
