"""Least outstanding work: the instance with the fewest tokens (prompt + output) assigned and unfinished."""

from __future__ import annotations

from operator import attrgetter

from phasewise.sim.routers.base import Router

_OUTSTANDING = attrgetter("outstanding")  # (C-level key: this runs on every arrival and KV transfer)


class LeastOutstandingRouter(Router):
    __slots__ = ()

    def choose(self):
        return min(self.instances, key=_OUTSTANDING)
