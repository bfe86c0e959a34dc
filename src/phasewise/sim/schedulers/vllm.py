"""vLLM V1: one token budget per step, no prefill or decode phase. Running requests (decodes, then
partial prefills) are scheduled first; waiting requests are admitted in arrival order while the
budget, KV blocks and max_num_seqs allow, each new prompt cut to the budget left, and only if nothing
was preempted in that step (vllm v1/core/sched/scheduler.py; ../shared/ENGINES.md)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Batch, Scheduler


class VllmV1Scheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        cfg = self.config
        preempted = inst.make_room() if inst.running.n else 0
        batch = Batch(with_decodes=inst.running.n > 0)
        budget = cfg.token_budget - inst.running.n * inst.decode_new_tokens
        budget = self.continue_prefills(inst, batch, budget)
        if not preempted:
            self.admit_waiting(inst, batch, budget, cfg.chunked_prefill, cfg.partial_prefills)
        return batch if batch.chunks else None
