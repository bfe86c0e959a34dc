"""Deployments: groups of instances (TP x PP of one hardware type, with a role), a router, a KV link.

YAML form (same fields as the CLI flags):

    model: meta-llama/Llama-3.1-8B
    router: least_outstanding        # round_robin | random | least_outstanding | kv_aware | prefix_aware | dynamo_kv
    kv_link: nvlink                  # nvlink | pcie | rdma (prefill -> decode KV transfer; unset: nvlink, rdma
                                     # where prefill and decode cannot share one node: on different chips, two
                                     # machines, or more GPUs together than one node's gpus_per_node)
    instances:
      - {role: prefill, hardware: h100-sxm, tp: 1, replicas: 1}   # + mapping: halo (a chip with substrates)
      - {role: decode, hardware: h100-sxm, tp: 1, replicas: 1, engine: vllm, max_num_seqs: 256}
    speculative: {draft_tokens: 4, acceptance: 0.7, draft: mtp}
    # priority pools (Ascendra): instance groups take `pool: lp|hp`, and
    # priority_pools: {slack_margin_ms: 300, migration: auto}   # see PriorityPools
    attention_offload: {mode: auto}   # Adrenaline (disaggregated): or {mode: fixed, requests: 64, sm_share: 0.2}
    online_training: {method: lora, reuse: offload, feedback_share: 0.1}   # Alchemist (collocated): see OnlineTraining

Here: the Deployment's fields, its build (build_deployment, collocated, disaggregated) and a user's file
(load_deployment). Its instance groups: sim/instance_group.py; its blocks: sim/deployment_blocks.py,
sim/autoscale_block.py; its rules, bases of Deployment: its links sim/deployment_links.py, router dynamo_kv's fields
sim/deployment_router.py, its autoscalers sim/deployment_autoscaling.py, the blocks and roles that go together
sim/deployment_combinations.py, the checks against its models (MTP draft, MoE layouts, P/D TP pairs)
sim/deployment_model_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError

from phasewise.errors import PhasewiseError, field_label, pydantic_message
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.deployment_autoscaling import DeploymentAutoscaling
from phasewise.sim.deployment_blocks import (  # noqa: F401 (importable here, as before)
    MAX_REPLICAS,
    AttentionOffload,
    EncodeWorkers,
    OnlineTraining,
    PriorityPools,
    SpecDecode,
)
from phasewise.sim.deployment_combinations import DeploymentCombinations
from phasewise.sim.deployment_links import DeploymentLinks, link_between, phases_apart  # noqa: F401
from phasewise.sim.deployment_model_checks import (  # noqa: F401 (importable here, as before)
    DeploymentModelChecks,
    _kv_heads,
    mtp_draft_refusal,
    mtp_modules,
)
from phasewise.sim.deployment_router import DYNAMO_ROUTER_FIELDS, DeploymentRouter  # noqa: F401
from phasewise.sim.instance_group import InstanceGroup
from phasewise.specs.catalog import read_user_file
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans


# pydantic runs a base's validators before its subclass's, the last base's first: the links (_links), the router
# (_dynamo_router), autoscale (_autoscale), the blocks and roles that go together (_training, _offload, _mapping,
# _pools, _roles), then the checks against the models (_mtp_draft, _layouts, _disagg_tp): the order this class ran
# them in when it defined them all (tests/test_split_i.py pins it)
class Deployment(NumbersNotBooleans, DeploymentModelChecks, DeploymentCombinations, DeploymentAutoscaling,
                 DeploymentRouter, DeploymentLinks):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "meta-llama/Llama-3.1-8B"
    instances: list[InstanceGroup] = Field(min_length=1)
    router: Literal["round_robin", "random", "least_outstanding", "kv_aware", "prefix_aware",
                    "dynamo_kv"] = "least_outstanding"
    # router dynamo_kv: the weight of the prefill (cache-miss) blocks in its cost (sim/routers/dynamo_kv.py); unset:
    # Dynamo's default, 1.0
    kv_overlap_score_weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # router dynamo_kv: its softmax sampling temperature (unset: 0, the lowest cost taken) and its queue threshold
    # (unset: no router queue), Dynamo's --router-temperature and --router-queue-threshold
    router_temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    router_queue_threshold: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # router dynamo_kv without the engines' KV events (false: its approximate index, blocks kept router_ttl_s; unset:
    # with them, and 120 s), Dynamo's --no-router-kv-events and router_ttl_secs
    router_kv_events: bool | None = None
    router_ttl_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # prefill -> decode KV (and priority pools' migrations); unset: nvlink, rdma where the groups it joins cannot
    # share one node (_links)
    kv_link: Literal["nvlink", "pcie", "rdma"] = "nvlink"
    speculative: SpecDecode | None = None
    priority_pools: PriorityPools | None = None
    attention_offload: AttentionOffload | None = None  # Adrenaline (disaggregated only)
    online_training: OnlineTraining | None = None  # a colocated trainer (Alchemist; collocated only)
    encoders: EncodeWorkers | None = None  # disaggregated vision encoders (a model with one)
    # a KV store shared by the instances that admit prompts (bytes across the cluster; sim/kv_tiers.py kv_store): a
    # Mooncake Store, LMCache remote backend or SGLang HiCache storage backend; 0: none
    kv_store_bytes: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    autoscale: Autoscale | None = None  # replicas added and removed with the load (collocated, one group)

    def field_label(self, *path) -> str:
        """What an error calls the field at `path` (e.g. "online_training", "keep_layers"): the flag that set it where
        the deployment was built from flags (build_deployment's field_name, deployment_flags.py flag_of), else its
        location in the deployment file, as a refused field is named (errors.py field_label)."""
        return field_label(path, self.__dict__.get("field_name"))

    @property
    def gpus(self) -> int:
        return sum(g.gpus for g in self.instances) + (self.encoders.gpus if self.encoders is not None else 0)

    @property
    def disaggregated(self) -> bool:
        return any(g.role == "prefill" for g in self.instances)


def load_deployment(path: str) -> Deployment:
    """A user's deployment file. It names what it serves and where: `model` and each group's `hardware` are required
    there (the Deployment's defaults serve the API's constructors; a file without them would run Llama-3.1-8B on
    H100s without saying so)."""
    data = read_user_file(path, "deployment")
    where = f"deployment '{path}'"
    if isinstance(data, dict):
        if "model" not in data:
            raise PhasewiseError(f"{where}: model: required (a catalog name, e.g. meta-llama/Llama-3.1-8B, or a "
                                 "config.json path)")
        instances = data.get("instances")
        groups = [(f"instances.{i}", g) for i, g in enumerate(instances)] if isinstance(instances, list) else []
        if isinstance(data.get("encoders"), dict):
            groups.append(("encoders", data["encoders"]))
        for name, group in groups:
            if isinstance(group, dict) and "hardware" not in group:
                raise PhasewiseError(f"{where}: {name}.hardware: required (a catalog key, e.g. h100-sxm, or a "
                                     "hardware YAML path)")
    dep = build_deployment(data, where)
    refuse_unused_file_fields(dep, where)
    return dep


def refuse_unused_file_fields(dep: Deployment, where: str) -> None:
    """What a deployment file states that would change nothing, refused as the flags are (sim/flag_checks.py role_flags,
    autoscale_flags): a kv_link other than the default where no KV moves between instances (no prefill and decode
    groups, no priority pools), and an autoscaler whose group's replicas leave it no replica to add (its
    min_replicas at them). Files only: plan's collocated strategies carry the default kv_link, and a pinned group
    is a comparison the API builds (tests/test_autoscaler.py)."""
    if dep.kv_link != "nvlink" and not dep.disaggregated and dep.priority_pools is None:
        raise PhasewiseError(f"{where}: kv_link: {dep.kv_link} carries KV between prefill and decode instances (or "
                             "priority pools' migrations); this deployment's collocated instances move none (as "
                             "simulate refuses --kv-link without --arch disagg): drop kv_link")
    for index, config in dep.autoscaled():
        replicas = dep.instances[index].replicas
        if config.min_replicas >= replicas:
            name = "autoscale" if dep.autoscale is not None else f"instances.{index}.autoscale"
            raise PhasewiseError(f"{where}: {name}.min_replicas ({config.min_replicas}) is the group's replicas "
                                 f"({replicas}), the most it runs: the autoscaler would have no replica to add; give "
                                 "the group more replicas than min_replicas, or drop autoscale")


def build_deployment(data: dict, where: str = "deployment",
                     field_name: Callable[[tuple], str | None] | None = None) -> Deployment:
    """`data` as a Deployment, or a one-line error naming each refused field (`field_name`: what the caller calls a
    field's location, e.g. the flag that set it; pydantic_message). The Deployment keeps `field_name` for the errors
    a simulation raises later about its fields (Deployment.field_label)."""
    try:
        dep = Deployment(**data)
        if field_name is not None:  # beside the fields, not one of them: no part of equality, dumps or files
            object.__setattr__(dep, "field_name", field_name)
        return dep
    except ValidationError as exc:
        raise pydantic_message(where, exc, field_name) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None


def collocated(model: str, hardware: str, tp: int = 1, pp: int = 1, replicas: int = 1, **kw) -> Deployment:
    return build_deployment({"model": model, "instances": [
        dict(role="collocated", hardware=hardware, tp=tp, pp=pp, replicas=replicas, **kw)]})


def disaggregated(model: str, hardware: str, prefill_workers: int, decode_workers: int, prefill_tp: int = 1,
                  decode_tp: int = 1, kv_link: str | None = None, **kw) -> Deployment:
    """`kv_link` None: unset, nvlink or, where prefill and decode cannot share one node, rdma (Deployment._links)."""
    if decode_workers < 1:
        raise PhasewiseError("--decode-workers must be >= 1 in a disaggregated deployment")
    if prefill_workers < 1:
        raise PhasewiseError("--prefill-workers must be >= 1 in a disaggregated deployment")
    link = {} if kv_link is None else {"kv_link": kv_link}
    return build_deployment({"model": model, **link, "instances": [
        dict(role="prefill", hardware=hardware, tp=prefill_tp, replicas=prefill_workers, **kw),
        dict(role="decode", hardware=hardware, tp=decode_tp, replicas=decode_workers, **kw)]})
