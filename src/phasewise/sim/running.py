"""The decoding set of an instance, as parallel arrays so per-iteration sums are O(1) and exact
block counts are one vectorized expression."""

from __future__ import annotations

import numpy as np

from phasewise.sim.request import SimRequest


class RunningSet:
    __slots__ = ("reqs", "c_join", "d_join", "blocks", "arrival", "n")

    def __init__(self, capacity: int = 256) -> None:
        self.reqs: list[SimRequest] = []
        self.c_join = np.empty(capacity)
        self.d_join = np.empty(capacity)
        self.blocks = np.empty(capacity, dtype=np.int64)
        self.arrival = np.empty(capacity)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add(self, req: SimRequest, blocks: int) -> None:
        if self.n == len(self.c_join):
            for name in ("c_join", "d_join", "blocks", "arrival"):
                old = getattr(self, name)
                new = np.empty(2 * len(old), dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        i = self.n
        req.slot = i
        self.reqs.append(req)
        self.c_join[i], self.d_join[i], self.blocks[i], self.arrival[i] = req.c_join, req.d_join, blocks, req.arrival_s
        self.n += 1

    def remove(self, req: SimRequest) -> int:
        """Remove `req`; returns the blocks it held."""
        i, last = req.slot, self.n - 1
        held = int(self.blocks[i])
        if i != last:
            moved = self.reqs[last]
            self.reqs[i] = moved
            moved.slot = i
            for arr in (self.c_join, self.d_join, self.blocks, self.arrival):
                arr[i] = arr[last]
        self.reqs.pop()
        self.n = last
        req.slot = -1
        return held

    def contexts(self, d: float, g: float) -> np.ndarray:
        """Cached tokens of every decoding sequence at decode index d (g tokens accepted per step)."""
        n = self.n
        return self.c_join[:n] + g * (d - self.d_join[:n])
