"""Sarathi-Serve: decodes first, then prefill chunks (in-progress prompts first, then new ones) fill a
fixed token budget per iteration (`chunk_size`); any number of prompts may be part-way at once."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Batch, Scheduler


class SarathiScheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        cfg = self.config
        batch = Batch(with_decodes=inst.running.n > 0)
        budget = cfg.token_budget - inst.running.n * inst.decode_new_tokens
        budget = self.continue_prefills(inst, batch, budget)
        self.admit_waiting(inst, batch, budget, True, cfg.partial_prefills)
        return batch if batch.chunks else None
