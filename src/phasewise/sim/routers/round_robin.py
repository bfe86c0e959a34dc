"""Round robin: each instance in turn, whatever its load."""

from __future__ import annotations

from phasewise.sim.routers.base import Router


class RoundRobinRouter(Router):
    __slots__ = ("next_index",)

    def __init__(self, instances) -> None:
        super().__init__(instances)
        self.next_index = 0

    def choose(self):
        inst = self.instances[self.next_index]
        self.next_index = (self.next_index + 1) % len(self.instances)
        return inst
