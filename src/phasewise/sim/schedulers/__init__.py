"""Scheduling policies, one per file, behind one interface (base.Scheduler)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Batch, Scheduler
from phasewise.sim.schedulers.prefill_first import PrefillFirstScheduler
from phasewise.sim.schedulers.sarathi import SarathiScheduler
from phasewise.sim.schedulers.sglang import SglangScheduler
from phasewise.sim.schedulers.shortest_prefill import ShortestPrefillFirstScheduler
from phasewise.sim.schedulers.trtllm import TrtllmScheduler
from phasewise.sim.schedulers.vllm import VllmV1Scheduler

POLICIES: dict[str, type[Scheduler]] = {
    "vllm": VllmV1Scheduler,
    "vllm-v0": PrefillFirstScheduler,
    "sarathi": SarathiScheduler,
    "sglang": SglangScheduler,
    "trtllm": TrtllmScheduler,
    "shortest-prefill": ShortestPrefillFirstScheduler,
}


def make_scheduler(config) -> Scheduler:
    """The policy an EngineConfig names (one instance per serving instance: policies may keep state)."""
    return POLICIES[config.scheduler](config)


__all__ = ["Batch", "POLICIES", "Scheduler", "make_scheduler"]
