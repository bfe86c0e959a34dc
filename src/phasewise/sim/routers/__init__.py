"""Routing policies, one per file, behind one interface (base.Router)."""

from __future__ import annotations

from phasewise.sim.routers.base import Router
from phasewise.sim.routers.kv_aware import KvAwareRouter
from phasewise.sim.routers.least_outstanding import LeastOutstandingRouter
from phasewise.sim.routers.prefix_aware import PrefixAwareRouter
from phasewise.sim.routers.round_robin import RoundRobinRouter

ROUTERS: dict[str, type[Router]] = {
    "round_robin": RoundRobinRouter,
    "least_outstanding": LeastOutstandingRouter,
    "kv_aware": KvAwareRouter,
    "prefix_aware": PrefixAwareRouter,
}


def make_router(policy: str, instances) -> Router:
    return ROUTERS[policy](instances)


__all__ = ["ROUTERS", "Router", "make_router"]
