"""Which of a deployment's blocks and roles go together (a base of sim/deployment.py's Deployment, whose fields it
reads): online training, attention offload and an operator mapping each with what they run beside, priority pools'
`pool` fields, and the groups' roles (collocated, or prefill and decode)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import model_validator

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment


class DeploymentCombinations:
    __slots__ = ()

    @model_validator(mode="after")
    def _training(self) -> Deployment:
        if self.online_training is None:
            return self
        if self.disaggregated:
            raise ValueError("online_training needs collocated instances (the trainer shares their GPUs)")
        if self.priority_pools is not None:
            raise ValueError("online_training does not combine with priority_pools")
        if any(g.pp > 1 or g.mapping for g in self.instances):
            raise ValueError("online_training supports pp=1 instances without an operator mapping")
        return self

    @model_validator(mode="after")
    def _offload(self) -> Deployment:
        offload = self.attention_offload
        if offload is None or offload.mode == "off":
            return self
        if not self.disaggregated:
            raise ValueError("attention_offload needs a disaggregated deployment (prefill and decode instances)")
        if self.speculative is not None:
            raise ValueError("attention_offload does not combine with speculative decoding")
        if any(g.pp > 1 for g in self.instances):
            raise ValueError("attention_offload supports pp=1 instances only")
        return self

    @model_validator(mode="after")
    def _mapping(self) -> Deployment:
        if not any(g.mapping for g in self.instances):
            return self
        if self.speculative is not None:
            raise ValueError("an operator mapping does not combine with speculative decoding (the draft model "
                             "would run off the mapping)")
        if self.attention_offload is not None and self.attention_offload.mode != "off":
            raise ValueError("an operator mapping does not combine with attention_offload")
        return self

    @model_validator(mode="after")
    def _pools(self) -> Deployment:
        pools = [g.pool for g in self.instances]
        if self.priority_pools is None:
            if any(pools):
                raise ValueError("instance `pool` needs the deployment's `priority_pools` block")
            return self
        if self.disaggregated:
            raise ValueError("priority_pools applies to collocated instances only")
        if "hp" not in pools:
            raise ValueError("priority_pools needs at least one instance group with pool: hp")
        if all(p == "hp" for p in pools):
            raise ValueError("priority_pools needs at least one low-priority instance group (pool: lp)")
        return self

    @model_validator(mode="after")
    def _roles(self) -> Deployment:
        roles = {g.role for g in self.instances}
        if "prefill" in roles and "decode" not in roles:
            raise ValueError("a disaggregated deployment needs at least one decode instance (role: decode)")
        if "decode" in roles and "prefill" not in roles:
            raise ValueError("a disaggregated deployment needs at least one prefill instance (role: prefill)")
        if "collocated" in roles and len(roles) > 1:
            raise ValueError("mix of collocated and prefill/decode roles is not supported; use one or the other")
        return self
