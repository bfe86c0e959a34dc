"""Sarathi-Serve: decodes first, then prefill chunks (in-progress prompts first, then new ones) fill a
fixed token budget per iteration (`chunk_size`); any number of prompts may be part-way at once."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Scheduler


class SarathiScheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        return self.mixed_batch(inst)
