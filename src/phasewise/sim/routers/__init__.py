"""Routing policies, one per file, behind one interface (base.Router)."""

from __future__ import annotations

from phasewise.sim.routers.base import Router
from phasewise.sim.routers.dynamo_kv import DynamoKvRouter, DynamoKvSettings
from phasewise.sim.routers.kv_aware import KvAwareRouter
from phasewise.sim.routers.least_outstanding import LeastOutstandingRouter
from phasewise.sim.routers.prefix_aware import PrefixAwareRouter
from phasewise.sim.routers.random_choice import RandomRouter
from phasewise.sim.routers.round_robin import RoundRobinRouter

ROUTERS: dict[str, type[Router]] = {
    "round_robin": RoundRobinRouter,
    "random": RandomRouter,
    "least_outstanding": LeastOutstandingRouter,
    "kv_aware": KvAwareRouter,
    "prefix_aware": PrefixAwareRouter,
    "dynamo_kv": DynamoKvRouter,
}
CACHE_AWARE = ("prefix_aware", "dynamo_kv")  # routers that follow the instances' prefix caches


def make_router(policy: str, instances, dynamo: DynamoKvSettings | None = None, seed: int = 0) -> Router:
    """The `policy` router over `instances` (`dynamo`: dynamo_kv's settings; None: Dynamo's defaults). `seed`: the
    run's --seed, which the routers that draw (random, dynamo_kv at a temperature above 0) seed their draws with."""
    if policy == "dynamo_kv":
        return DynamoKvRouter(instances, dynamo, seed)
    if policy == "random":
        return RandomRouter(instances, seed)
    return ROUTERS[policy](instances)


__all__ = ["CACHE_AWARE", "ROUTERS", "DynamoKvSettings", "Router", "make_router"]
