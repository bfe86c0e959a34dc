"""A deployment's autoscaled groups (a base of sim/deployment.py's Deployment, whose fields it reads): where an
autoscaler may run and its block's bounds against its group's replicas, and the prefill and decode groups whose sla
planners share one GPU budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import model_validator

from phasewise.sim.autoscale_block import Autoscale

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment


class DeploymentAutoscaling:
    __slots__ = ()

    @model_validator(mode="after")
    def _autoscale(self) -> Deployment:
        if self.autoscale is not None:
            group = self.instances[0]
            if len(self.instances) > 1 or group.role != "collocated":
                raise ValueError("the deployment's autoscale scales one collocated instance group (its replicas); "
                                 f"this deployment has {len(self.instances)} group(s), role {group.role}: give each "
                                 "group its own `autoscale` block instead (a --deployment file)")
        scaled = self.autoscaled()
        if not scaled:
            return self
        if self.priority_pools or self.online_training or self.encoders or (
                self.attention_offload is not None and self.attention_offload.mode != "off"):
            raise ValueError("autoscale does not combine with priority_pools, online_training, encoders or "
                             "attention_offload")
        for index, config in scaled:
            group = self.instances[index]
            if group.pp > 1:
                raise ValueError("autoscale supports pp=1 replicas only")
            if config.metric == "rps" and group.role == "decode":
                raise ValueError("autoscale metric rps counts the requests a group takes: a decode group takes KV "
                                 "transfers; use running, concurrency or kv_usage")
            if config.min_replicas == 0 and group.role == "decode":
                raise ValueError("a decode group's autoscale min_replicas must be >= 1: a finished prefill needs a "
                                 "decode replica to send its KV to")
            for knob in ("min_replicas", "initial_replicas"):
                if (getattr(config, knob) or 0) > group.replicas:
                    raise ValueError(f"autoscale {knob} ({getattr(config, knob)}) is above the group's replicas "
                                     f"({group.replicas}), the most it runs")
        self.planned_pair()
        return self

    def planned_pair(self) -> tuple[int, int] | None:
        """(prefill group, decode group) whose sla planners share a `max_gpu_budget` (sim/planner_budget.py), or
        None; a budget given otherwise, or given apart, is an error."""
        scaled = self.autoscaled()
        budgeted = [(i, c) for i, c in scaled if c.metric == "sla" and c.max_gpu_budget is not None]
        if not budgeted:
            return None
        planned = {self.instances[i].role: (i, c) for i, c in scaled if c.metric == "sla"}
        roles = sorted(self.instances[i].role for i, c in scaled if c.metric == "sla")
        if roles != ["decode", "prefill"] or len(budgeted) != 2:
            raise ValueError("autoscale max_gpu_budget is Dynamo's planner's budget over a disaggregated "
                             "deployment's prefill and decode groups: give it, the same, in the sla blocks of one "
                             "prefill group and one decode group")
        (p_index, prefill), (d_index, decode) = planned["prefill"], planned["decode"]
        for field in ("max_gpu_budget", "sync_period_s", "throughput_scaling", "load_scaling", "load_period_s"):
            if getattr(prefill, field) != getattr(decode, field):
                raise ValueError(f"autoscale {field} differs between the prefill and decode groups' sla blocks "
                                 f"({getattr(prefill, field)} and {getattr(decode, field)}): one planner with a GPU "
                                 f"budget adjusts both groups together")
        least = prefill.min_replicas * self.instances[p_index].tp + decode.min_replicas * self.instances[d_index].tp
        if prefill.max_gpu_budget < least:
            raise ValueError(f"autoscale max_gpu_budget ({prefill.max_gpu_budget}) is below the GPUs of the groups' "
                             f"min_replicas ({least})")
        return p_index, d_index

    def autoscaled(self) -> list[tuple[int, Autoscale]]:
        """(group index, its autoscaler's block) of every autoscaled group: the deployment's block for its one
        collocated group, or each group's own."""
        if self.autoscale is not None:
            if any(g.autoscale is not None for g in self.instances):
                raise ValueError("autoscale is given for the deployment and for a group: give one")
            return [(0, self.autoscale)]
        return [(i, g.autoscale) for i, g in enumerate(self.instances) if g.autoscale is not None]
