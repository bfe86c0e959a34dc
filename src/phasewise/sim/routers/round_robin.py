"""Round robin: each instance in turn, whatever its load."""

from __future__ import annotations

from phasewise.sim.routers.base import Router


class RoundRobinRouter(Router):
    __slots__ = ("next_index",)

    def __init__(self, instances) -> None:
        super().__init__(instances)
        self.next_index = 0

    def choose(self):
        count = len(self.instances)  # an autoscaler adds and removes instances (sim/autoscaler.py)
        inst = self.instances[self.next_index % count]
        self.next_index = (self.next_index + 1) % count
        return inst
