"""NVIDIA Dynamo's SLA planner over a disaggregated deployment's two groups under one GPU budget (`max_gpu_budget`
in both groups' sla blocks), as its DisaggPlanner adjusts them (components/planner disagg_planner.py): both groups'
throughput-based counts at each adjustment interval, skipped when either has none; both groups' load-based steps
every load period, none while a replica of either is starting (its blocking scaling of both); then the budget over
the two (planner_core.py _apply_global_gpu_budget): where prefill x its GPUs + decode x its GPUs exceeds it, prefill
is scaled by budget / total (floored, at least its minimum, and leaving room for the decode group's minimum) and
decode takes the GPUs left (floored, at least its minimum). Each group's `replicas` still caps it (sim/autoscaler.py
_set). Without a budget each group's planner adjusts on its own (sim/autoscaler.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.sim.autoscaler import Autoscaler


def within_gpu_budget(prefill: int, decode: int, prefill_gpus: int, decode_gpus: int, min_prefill: int,
                      min_decode: int, budget_gpus: int) -> tuple[int, int]:
    """Prefill and decode replicas within `budget_gpus` (each replica of a group holding its `*_gpus`)."""
    total = prefill * prefill_gpus + decode * decode_gpus
    if total <= budget_gpus:
        return prefill, decode
    most_prefill = (budget_gpus - min_decode * decode_gpus) // prefill_gpus
    prefill = max(min_prefill, min(most_prefill, math.floor(prefill * budget_gpus / total)))
    decode = max(min_decode, (budget_gpus - prefill * prefill_gpus) // decode_gpus)
    return prefill, decode


class PlannerPair:
    __slots__ = ("prefill", "decode", "loop", "config", "budget_gpus")

    def __init__(self, prefill: Autoscaler, decode: Autoscaler) -> None:
        """The two groups' autoscalers (created `paired`: this schedules their planners)."""
        self.prefill, self.decode, self.loop = prefill, decode, prefill.loop
        self.config = prefill.config  # the fields both blocks share (sim/deployment_autoscaling.py planned_pair)
        self.budget_gpus = self.config.max_gpu_budget
        if self.config.throughput_scaling:
            self.loop.at(self.config.sync_period_s, self.sync)
        if self.config.load_scaling:
            self.loop.at(self.config.load_period_s, self.load_sync)

    def _over(self) -> bool:
        return self.prefill._run_over()

    def _budget(self, prefill: int, decode: int) -> tuple[int, int]:
        group_p, group_d = self.prefill.replicas[0].group, self.decode.replicas[0].group
        kept = within_gpu_budget(prefill, decode, group_p.tp, group_d.tp, self.prefill.config.min_replicas,
                                 self.decode.config.min_replicas, self.budget_gpus)
        if kept != (prefill, decode):
            self.prefill.planner.budget_trims += 1
            self.decode.planner.budget_trims += 1
        return kept

    def sync(self) -> None:
        """The throughput-based adjustment of both groups."""
        now = self.loop.now
        if self._over():
            return
        want_p, current_p = self.prefill.planner_wanted(now)
        want_d, current_d = self.decode.planner_wanted(now)
        if want_p is not None and want_d is not None and not self.config.load_scaling:
            want_p, want_d = self._budget(want_p, want_d)
            self.prefill._set(want_p, current_p, now)
            self.decode._set(want_d, current_d, now)
        self.loop.at(now + self.config.sync_period_s, self.sync)

    def load_sync(self) -> None:
        """The load-based step of both groups, none while either has a replica starting."""
        now = self.loop.now
        if self._over():
            return
        if self.prefill._count("starting") or self.decode._count("starting"):
            self.prefill._leave_drained(now)
            self.decode._leave_drained(now)
        else:
            (want_p, current_p), (want_d, current_d) = self.prefill.load_wanted(), self.decode.load_wanted()
            if want_p is not None or want_d is not None:  # a group without a step keeps its count (or its floor)
                want_p, want_d = self._budget(self.prefill.load_kept(want_p, current_p),
                                              self.decode.load_kept(want_d, current_d))
                self.prefill.set_counted(want_p, current_p, now)
                self.decode.set_counted(want_d, current_d, now)
        self.loop.at(now + self.config.load_period_s, self.load_sync)
