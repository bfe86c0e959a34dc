"""Shortest-prefill-first (the throughput pool of priority pools, e.g. Ascendra's low-priority instances):
vLLM V1's mechanics (one token budget per step, decodes and partial prefills first, recompute preemption)
but waiting prompts are admitted shortest prefill first instead of in arrival order. Short prompts pass
long ones, so the queue drains faster and most requests see a short TTFT; a long prompt may starve, which
the priority-pool controller (sim/priority_pools.py) repairs by moving it to a latency pool in time.

The waiting queue is kept in that order incrementally: admissions take its head and moves or cancellations
take requests out of it, which keep the order, so a step only places the prompts that arrived since the last
one (a stable sort of the whole queue, as before, when its head changed otherwise: a preempted request)."""

from __future__ import annotations

from bisect import insort_right

from phasewise.sim.schedulers.vllm import VllmV1Scheduler


class ShortestPrefillFirstScheduler(VllmV1Scheduler):  # its preemption victim too
    __slots__ = ("_head", "_tail")
    reorders = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self._head = self._tail = None  # the queue's first and last request when it was last in order

    def next_batch(self, inst):
        preempted = inst.make_room() if inst.running.n else 0
        if not preempted:
            self.order(inst.waiting)
        batch = self.mixed_batch(inst, admit=not preempted)
        if not preempted:
            self._mark(inst.waiting)
        return batch

    def order(self, waiting) -> None:
        """Put the waiting queue in shortest-prefill-first order (ties: arrival order)."""
        if len(waiting) > 1:
            if waiting[0] is not self._head:
                _sort(waiting)
            elif waiting[-1] is not self._tail:
                arrived = []
                while waiting[-1] is not self._tail:
                    arrived.append(waiting.pop())
                    if not waiting:  # the old tail left the queue: order all of it
                        waiting.extend(reversed(arrived))
                        _sort(waiting)
                        return self._mark(waiting)
                for req in reversed(arrived):  # in arrival order, each after its equals
                    insort_right(waiting, req, key=_prefill_target)
        self._mark(waiting)

    def _mark(self, waiting) -> None:
        self._head, self._tail = (waiting[0], waiting[-1]) if waiting else (None, None)


def _sort(waiting) -> None:
    ordered = sorted(waiting, key=_prefill_target)  # stable: equal prompts keep their order
    waiting.clear()
    waiting.extend(ordered)


def _prefill_target(req) -> int:
    return req.prefill_target
