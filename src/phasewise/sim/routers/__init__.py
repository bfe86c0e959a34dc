"""Routing policies, one per file, behind one interface (base.Router)."""

from __future__ import annotations

from phasewise.sim.routers.base import Router
from phasewise.sim.routers.dynamo_kv import DynamoKvRouter
from phasewise.sim.routers.kv_aware import KvAwareRouter
from phasewise.sim.routers.least_outstanding import LeastOutstandingRouter
from phasewise.sim.routers.prefix_aware import PrefixAwareRouter
from phasewise.sim.routers.round_robin import RoundRobinRouter

ROUTERS: dict[str, type[Router]] = {
    "round_robin": RoundRobinRouter,
    "least_outstanding": LeastOutstandingRouter,
    "kv_aware": KvAwareRouter,
    "prefix_aware": PrefixAwareRouter,
    "dynamo_kv": DynamoKvRouter,
}
CACHE_AWARE = ("prefix_aware", "dynamo_kv")  # routers that follow the instances' prefix caches


def make_router(policy: str, instances, overlap_weight: float | None = None) -> Router:
    """The `policy` router over `instances` (`overlap_weight`: dynamo_kv's kv_overlap_score_weight; None: its
    default)."""
    if policy == "dynamo_kv" and overlap_weight is not None:
        return DynamoKvRouter(instances, overlap_weight)
    return ROUTERS[policy](instances)


__all__ = ["CACHE_AWARE", "ROUTERS", "Router", "make_router"]
