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
        n = self.n
        if n == len(self.data):
            self._reserve(1)
        self.data[n] = x
        self.n = n + 1

    def extend(self, xs: np.ndarray) -> None:
        n, k = self.n, len(xs)
        if n + k > len(self.data):
            self._reserve(k)
        self.data[n : n + k] = xs
        self.n = n + k

    def tail(self, k: int) -> np.ndarray:
        """The k slots after the last value (reserved), to be filled and then kept by commit()."""
        self._reserve(k)
        return self.data[self.n : self.n + k]

    def commit(self, k: int) -> None:
        """Keep the first k slots of tail() as values."""
        self.n += k

    def slice(self, start: int, stop: int) -> np.ndarray:
        return self.data[start:stop]
