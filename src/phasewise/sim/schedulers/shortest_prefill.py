"""Shortest-prefill-first (the throughput pool of priority pools, e.g. Ascendra's low-priority instances):
vLLM V1's mechanics (one token budget per step, decodes and partial prefills first, recompute preemption)
but waiting prompts are admitted shortest prefill first instead of in arrival order. Short prompts pass
long ones, so the queue drains faster and most requests see a short TTFT; a long prompt may starve, which
the priority-pool controller (sim/priority_pools.py) repairs by moving it to a latency pool in time."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Scheduler


class ShortestPrefillFirstScheduler(Scheduler):
    __slots__ = ()
    reorders = True

    def next_batch(self, inst):
        preempted = inst.make_room() if inst.running.n else 0
        waiting = inst.waiting
        if not preempted and len(waiting) > 1:
            # stable sort: equal prompts keep their arrival order (a preempted request stays ahead of its peers)
            ordered = sorted(waiting, key=_prefill_target)
            waiting.clear()
            waiting.extend(ordered)
        return self.mixed_batch(inst, admit=not preempted)


def _prefill_target(req) -> int:
    return req.prefill_target
