"""The event heap (in the spirit of SimPy's core): callbacks ordered by time, ties by insertion."""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any


class EventLoop:
    __slots__ = ("now", "_heap", "_seq", "events")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = 0
        self.events = 0

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        """Call fn(*args) at simulated time t (never in the past)."""
        if t < self.now:
            raise RuntimeError(f"causality: event at {t} scheduled after now={self.now}")
        seq = self._seq
        heappush(self._heap, (t, seq, fn, args))
        self._seq = seq + 1

    def run_until(self, t: float) -> None:
        """Process every event due at or before t, then stand at t (the live twin's clock)."""
        heap, pop = self._heap, heappop
        while heap and heap[0][0] <= t:
            when, _, fn, args = pop(heap)
            self.now = when
            self.events += 1
            fn(*args)
        if t > self.now:
            self.now = t

    def stop(self) -> None:
        """End run() after the event being processed: every pending event is dropped, and those the event still
        schedules go to a heap that run() does not read (it holds the one cleared here)."""
        self._heap.clear()
        self._heap = []

    def next_time(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def next_call(self) -> tuple[float, Callable[..., Any] | None]:
        """(time, callback) of the next event, (inf, None) when none is left: an event can see whether the next one
        is due at the same instant and of its kind (the autoscaler's replicas ready together, sim/autoscaler.py)."""
        return (self._heap[0][0], self._heap[0][2]) if self._heap else (float("inf"), None)

    def run(self, tick: Callable[[], None] | None = None, every: int = 1 << 16) -> None:
        """Process every event; `tick()` is called every `every` events (a progress report), if given."""
        heap, pop = self._heap, heappop
        if tick is None:
            while heap:
                t, _, fn, args = pop(heap)
                self.now = t
                self.events += 1
                fn(*args)
            return
        while heap:
            for _ in range(every):
                if not heap:
                    break
                t, _, fn, args = pop(heap)
                self.now = t
                self.events += 1
                fn(*args)
            tick()
