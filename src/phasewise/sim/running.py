"""The decoding set of an instance, as parallel arrays so per-iteration sums are O(1) and exact
block counts are one vectorized expression. A request joins at decode step `join_step` with
`join_context` cached tokens and `join_generated` output tokens; at decode step d it has
join_context + tokens_per_step * (d - join_step) cached tokens."""

from __future__ import annotations

import numpy as np

from phasewise.sim.request import SimRequest

_ARRAYS = ("join_context", "join_step", "join_generated", "output", "blocks", "arrival", "admitted")


class RunningSet:
    __slots__ = ("reqs", "n", "admissions", *_ARRAYS)

    def __init__(self, capacity: int = 256) -> None:
        self.reqs: list[SimRequest] = []
        self.join_context = np.empty(capacity)
        self.join_step = np.empty(capacity)
        self.join_generated = np.empty(capacity)
        self.output = np.empty(capacity)
        self.blocks = np.empty(capacity, dtype=np.int64)
        self.arrival = np.empty(capacity)
        # when each joined, in joins (a request re-admitted after a preemption: its latest): the engines' running
        # lists append a request as it is scheduled, and preemption victims are chosen by that order (schedulers)
        self.admitted = np.empty(capacity, dtype=np.int64)
        self.admissions = 0
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add(self, req: SimRequest, blocks: int) -> None:
        if self.n == len(self.join_context):
            for name in _ARRAYS:
                old = getattr(self, name)
                new = np.empty(2 * len(old), dtype=old.dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        i = self.n
        req.slot = i
        self.reqs.append(req)
        self.join_context[i], self.join_step[i], self.blocks[i] = req.join_context, req.join_step, blocks
        self.join_generated[i], self.output[i], self.arrival[i] = req.generated, req.output, req.arrival_s
        self.admitted[i] = self.admissions
        self.admissions += 1
        self.n += 1

    def remove(self, req: SimRequest) -> int:
        """Remove `req`; returns the blocks it held."""
        i, last = req.slot, self.n - 1
        held = int(self.blocks[i])
        if i != last:
            moved = self.reqs[last]
            self.reqs[i] = moved
            moved.slot = i
            for arr in (self.join_context, self.join_step, self.join_generated, self.output, self.blocks, self.arrival,
                        self.admitted):  # _ARRAYS, named (a hot path: no getattr)
                arr[i] = arr[last]
        self.reqs.pop()
        self.n = last
        req.slot = -1
        return held

    def contexts(self, step: float, tokens_per_step: float) -> np.ndarray:
        """Cached tokens of every decoding sequence at decode step `step`."""
        n = self.n
        return self.join_context[:n] + tokens_per_step * (step - self.join_step[:n])

    def generated(self, step: float, tokens_per_step: float) -> np.ndarray:
        """Output tokens every decoding sequence has produced by decode step `step`."""
        n = self.n
        return self.join_generated[:n] + tokens_per_step * (step - self.join_step[:n])

    def remaining_tokens(self, step: float, tokens_per_step: float, clip: float) -> float:
        """Sum over the decoding set of the output tokens still to come, each clipped at `clip`."""
        if not self.n:
            return 0.0
        left = self.output[: self.n] - self.generated(step, tokens_per_step)
        # np.clip(left, 0.0, clip).sum() as the ufuncs themselves (the same values; np.clip's and sum()'s Python
        # wrappers cost more than the arithmetic on a running set, and this runs at every SGLang admission)
        np.maximum(left, 0.0, out=left)
        np.minimum(left, clip, out=left)
        return float(np.add.reduce(left))
