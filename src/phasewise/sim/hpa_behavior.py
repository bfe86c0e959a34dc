"""Kubernetes' HPA `behavior` (pkg/controller/podautoscaler/horizontal.go, normalizeDesiredReplicasWithBehaviors):
how a replica count the metric recommends becomes the count set, for an autoscale block's HPA (sim/autoscaler.py).

1. Stabilization: the recommendations of the last `scale_up_window_s` (default 0) and `scale_down_window_s` (300)
   are kept; the count goes up at most to the lowest recommendation of the up window and down at most to the
   highest of the down window (the current one included; a recommendation exactly a window old is out of it). The
   first sync counts the replicas running as a recommendation, so a new HPA does not scale down before a window.
2. Rate: each scaling policy (pods or percent, per `period_s`) proposes a limit from the replicas at the start of
   its period (the current ones less those added, plus those removed, within it); up, the highest proposal (select
   max, the default), the lowest (min) or none (disabled); down, the mirror. Defaults: up by 100 % or 4 pods a
   15 s period, the higher; down by 100 % a 15 s period (kubernetes.io HPA, "Default Behavior").
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.sim.autoscale_block import Autoscale, ScalingPolicy


def _change_within(events: deque[tuple[float, int]], now: float, period_s: float) -> int:
    return sum(change for t, change in events if t > now - period_s)


def policy_limit(current: int, policies: list[ScalingPolicy], select: str, up: bool, now: float,
                 up_events: deque[tuple[float, int]], down_events: deque[tuple[float, int]]) -> int:
    """The most (up) or fewest (down) replicas the policies allow now."""
    if select == "disabled" or not policies:
        return current
    proposals = []
    for policy in policies:
        start = current - _change_within(up_events, now, policy.period_s) + _change_within(down_events, now,
                                                                                         policy.period_s)
        if policy.type == "pods":
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:  # a percent proposal rounds up, so that a small group still grows
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    largest_change = (select == "max") == up
    limit = max(proposals) if largest_change else min(proposals)
    return max(limit, current) if up else min(limit, current)


class HpaBehavior:
    __slots__ = ("config", "recommendations", "up_events", "down_events", "started")

    def __init__(self, config: Autoscale) -> None:
        self.config = config
        self.recommendations: deque[tuple[float, int]] = deque()
        self.up_events: deque[tuple[float, int]] = deque()  # (time, replicas added)
        self.down_events: deque[tuple[float, int]] = deque()  # (time, replicas removed)
        self.started = False

    def desired(self, now: float, recommendation: int, current: int) -> int:
        """The count to set now for the metric's `recommendation` (within the group's bounds already)."""
        config = self.config
        if not self.started:  # the window starts with the replicas running (maybeInitScaleDownStabilizationWindow)
            self.recommendations.append((now, current))
            self.started = True
        up, down = recommendation, recommendation
        for t, past in self.recommendations:
            if t > now - config.scale_up_window_s:
                up = min(up, past)
            if t > now - config.scale_down_window_s:
                down = max(down, past)
        self.recommendations.append((now, recommendation))
        keep = max(config.scale_up_window_s, config.scale_down_window_s)
        while self.recommendations and self.recommendations[0][0] <= now - keep:
            self.recommendations.popleft()
        stabilized = min(max(current, up), down)
        if stabilized > current:
            return min(stabilized, policy_limit(current, config.scale_up_policies, config.scale_up_select, True,
                                                now, self.up_events, self.down_events))
        if stabilized < current:
            return max(stabilized, policy_limit(current, config.scale_down_policies, config.scale_down_select,
                                                False, now, self.up_events, self.down_events))
        return current

    def record(self, now: float, before: int, after: int) -> None:
        """A scaling applied (its events bound the policies' next proposals)."""
        if after > before:
            self.up_events.append((now, after - before))
        elif after < before:
            self.down_events.append((now, before - after))
        longest = max((p.period_s for p in (*self.config.scale_up_policies, *self.config.scale_down_policies)),
                      default=0.0)
        for events in (self.up_events, self.down_events):
            while events and events[0][0] <= now - longest:
                events.popleft()
