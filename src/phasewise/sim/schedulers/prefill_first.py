"""vLLM V0's default: whole prompts, FCFS, batched within max_num_batched_tokens, run as prefill-only
iterations that pause the decodes (the first prompt always runs, however long)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Batch, Scheduler


class PrefillFirstScheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        batch = Batch(with_decodes=False)
        budget = self.config.token_budget
        while inst.waiting:
            req = inst.waiting[0]
            need = req.prefill_target
            if batch.chunks and need > budget:
                break
            if not inst.try_admit(req):
                break
            inst.waiting.popleft()
            inst.prefilling.append(req)  # holds a seat while its prompt is in flight
            batch.chunks.append((req, need))
            budget -= need
        return batch if batch.chunks else None
