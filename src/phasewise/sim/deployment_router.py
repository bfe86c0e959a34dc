"""A deployment's router settings (a base of sim/deployment.py's Deployment, whose fields it reads): router
dynamo_kv's fields, refused beside another router, and its settings with Dynamo's defaults where unset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import model_validator

from phasewise.sim.routers import DynamoKvSettings

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment


# router dynamo_kv's settings (Deployment fields, and the flags of the same names): what each does, for the one-line
# error that refuses it beside another router
DYNAMO_ROUTER_FIELDS = {
    "kv_overlap_score_weight": "weighs the cache-miss blocks in router dynamo_kv's cost",
    "router_temperature": "draws router dynamo_kv's choice from its costs",
    "router_queue_threshold": "holds new requests at router dynamo_kv while every instance is busy",
    "router_kv_events": "says whether router dynamo_kv reads the engines' KV events",
    "router_ttl_s": "keeps a block in router dynamo_kv's approximate index (without KV events)",
}


class DeploymentRouter:
    __slots__ = ()

    @model_validator(mode="after")
    def _dynamo_router(self) -> Deployment:
        if self.router == "dynamo_kv":
            if self.router_ttl_s is not None and self.router_kv_events is not False:
                raise ValueError("router_ttl_s keeps a block in router dynamo_kv's approximate index, which it uses "
                                 "only without KV events: set router_kv_events: false, or drop router_ttl_s")
            return self
        for field, what in DYNAMO_ROUTER_FIELDS.items():
            if getattr(self, field) is not None:
                raise ValueError(f"{field} {what}; the router here is {self.router}: set router: dynamo_kv, or drop "
                                 f"{field}")
        return self

    def dynamo_router(self) -> DynamoKvSettings:
        """Router dynamo_kv's settings (Dynamo's defaults where unset)."""
        settings = DynamoKvSettings()
        return DynamoKvSettings(
            settings.overlap_weight if self.kv_overlap_score_weight is None else self.kv_overlap_score_weight,
            self.router_temperature or 0.0, self.router_queue_threshold, self.router_kv_events is not False,
            settings.ttl_s if self.router_ttl_s is None else self.router_ttl_s)
