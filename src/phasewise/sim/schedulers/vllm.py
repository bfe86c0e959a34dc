"""vLLM V1: one token budget per step, no prefill or decode phase. Running requests (decodes, then
partial prefills) are scheduled first; waiting requests are admitted in arrival order while the
budget, KV blocks and max_num_seqs allow, each new prompt cut to the budget left, and only if nothing
was preempted in that step (vllm v1/core/sched/scheduler.py; ../shared/ENGINES.md)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Scheduler


class VllmV1Scheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        preempted = inst.make_room() if inst.running.n else 0
        return self.mixed_batch(inst, admit=not preempted)

    def victim(self, inst) -> int:
        """The latest admitted (FCFS: `self.running.pop()`, the running list's tail, where a scheduled request is
        appended, a resumed one too), whatever its arrival."""
        run = inst.running
        return int(run.admitted[: run.n].argmax())
