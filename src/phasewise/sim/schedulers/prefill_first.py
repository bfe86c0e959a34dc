"""vLLM V0's default: whole prompts, FCFS, batched within max_num_batched_tokens, run as prefill-only
iterations that pause the decodes (the first prompt always runs, however long)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Batch, Scheduler


class PrefillFirstScheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        batch = Batch(with_decodes=False)  # prompts finish in their iteration: no partial prefills to continue
        self.admit_waiting(inst, batch, self.config.token_budget, chunked=False, max_partial=0)
        return batch if batch.chunks else None
