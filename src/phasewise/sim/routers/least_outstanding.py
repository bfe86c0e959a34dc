"""Least outstanding work: the instance with the fewest tokens (prompt + output) assigned and unfinished."""

from __future__ import annotations

from phasewise.sim.routers.base import Router


class LeastOutstandingRouter(Router):
    __slots__ = ()

    def choose(self):
        return min(self.instances, key=lambda i: i.outstanding)
