"""KV-aware: the instance with the most free KV blocks (ties: the least outstanding work)."""

from __future__ import annotations

from phasewise.sim.routers.base import Router


class KvAwareRouter(Router):
    __slots__ = ()

    def choose(self):
        return max(self.instances, key=lambda i: (i.kv.free, -i.outstanding))
