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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from phasewise.errors import PhasewiseError, field_label, pydantic_message
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.deployment_blocks import (
    MAX_REPLICAS,
    AttentionOffload,
    EncodeWorkers,
    OnlineTraining,
    PriorityPools,
    SpecDecode,
)
from phasewise.sim.routers import DynamoKvSettings
from phasewise.specs.catalog import read_user_file
from phasewise.specs.engine_refusals import block_shape_refusal, disagg_tp_refusal, layout_refusal
from phasewise.specs.engines import KNOB_TYPES
from phasewise.specs.hardware import chips_apart
from phasewise.specs.hf_config import MTP_FIELDS
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans

# router dynamo_kv's settings (Deployment fields, and the flags of the same names): what each does, for the one-line
# error that refuses it beside another router
DYNAMO_ROUTER_FIELDS = {
    "kv_overlap_score_weight": "weighs the cache-miss blocks in router dynamo_kv's cost",
    "router_temperature": "draws router dynamo_kv's choice from its costs",
    "router_queue_threshold": "holds new requests at router dynamo_kv while every instance is busy",
    "router_kv_events": "says whether router dynamo_kv reads the engines' KV events",
    "router_ttl_s": "keeps a block in router dynamo_kv's approximate index (without KV events)",
}


def link_between(asked: str | None, apart: str | None, what: str = "KV") -> tuple[str, str | None]:
    """(the link `what` crosses between two parts of a deployment, why `asked` cannot be it or None): `asked` (None:
    unset, nvlink); where the parts cannot share one node (`apart`: phases_apart's or specs/hardware.py chips_apart's
    why), rdma, the default there, nvlink and PCIe not leaving a node. The one rule of the KV link (simulate's
    --kv-link, a deployment's kv_link) and the encoders' (--encode-link, encoders.link); plan's is
    plan/chip_budgets.py kv_link_between."""
    if apart is None:
        return asked or "nvlink", None
    if asked in (None, "rdma"):
        return "rdma", None
    return asked, f"{asked} cannot carry {what} {apart}: NVLink and PCIe do not leave a node"


def phases_apart(p_name: str, d_name: str, gpus: int, p_hw=None, d_hw=None) -> str | None:
    """Why a disaggregated deployment's prefill (on `p_name`) and decode (on `d_name`) instances cannot all share one
    node's NVLink or PCIe, or None: their chips differ (specs/hardware.py chips_apart: two machines), or their `gpus`
    (prefill and decode together; an autoscaled group's at its most replicas) pass one node's, the smaller
    gpus_per_node of the two chips (8 on an HGX board, 72 in an NVL72 rack): the export places the prefill
    instances, then the decode ones, node by node (apps/launch_nodes.py placements), and the router sends a
    prefill's KV to any decode instance, so some pair then sits on two nodes. `p_hw` / `d_hw`: the chips, loaded
    (else loaded here; one that does not load gives None, its own one-line error coming when the deployment is
    simulated). The one rule of a deployment's kv_link (Deployment.kv_apart), simulate's --kv-link (sim/flag_checks.py
    disagg_kv_link) and plan's (plan/chip_budgets.py kv_link_between)."""
    apart = chips_apart(p_name, d_name)
    if apart:
        return apart
    if p_hw is None or d_hw is None:
        from phasewise.specs import load_hardware

        try:
            p_hw, d_hw = p_hw or load_hardware(p_name), d_hw or load_hardware(d_name)
        except PhasewiseError:
            return None
    node = min(p_hw.interconnect.gpus_per_node, d_hw.interconnect.gpus_per_node)
    if gpus > node:
        return f"beyond one {node}-GPU node of {p_name}"
    return None


class InstanceGroup(NumbersNotBooleans):
    """Identical instances: hardware, parallelism, precision, and the serving engine with its knobs.
    A knob left unset takes the engine's default for the GPU, version and entry point
    (specs/data/engine_presets.yaml); a knob the engine does not have is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["collocated", "prefill", "decode"] = "collocated"
    pool: Literal["lp", "hp"] | None = None  # priority pools: low (arrivals, throughput) / high (latency)
    model: str | None = None  # defaults to the deployment's model
    hardware: str = "h100-sxm"
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    # how the tp GPUs split MoE experts and attention (perf/parallel.py); None: all tensor-parallel
    ep: int | None = Field(default=None, ge=1)  # MoE expert-parallel size
    moe_tp: int | None = Field(default=None, ge=1)  # MoE tensor-parallel size (ep x moe_tp = tp)
    attention_dp: int | None = Field(default=None, ge=1)  # attention data-parallel ranks
    # most-loaded GPU's expert rows over the mean
    moe_imbalance: float | None = Field(default=None, ge=1, allow_inf_nan=False)
    # the busiest 20 % of the experts' share of this traffic's routed tokens (0.2 = uniform); None: the model's
    # (models.yaml routing_skew), else uniform (perf/expert_load.py)
    routing_skew: float | None = Field(default=None, ge=0.2, lt=1, allow_inf_nan=False)
    # at most MAX_REPLICAS instances a group (simulate's memory): plan simulates a larger fleet as a slice of it
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    precision: str | None = None  # None: the model's native format (its checkpoint's), else bf16
    kv_dtype: str | None = None
    engine: str = "vllm"  # preset[@version] (vllm, sglang, trtllm, vllm-v0, sarathi, ...), or a host profile
    entry_point: Literal["server", "offline"] = "server"
    # None: the engine's default (vLLM 0.9 of the GPU, TensorRT-LLM 0.9 of what is free, SGLang's computed
    # mem_fraction_static: specs/engine_config.py EngineConfig.memory_fraction)
    memory_fraction: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    # tokens per KV block; None: the engine's default (vLLM 16, SGLang's page 1, TensorRT-LLM 32: specs/engine_kv.py
    # kv_block, which also applies the block a latent-attention model's kernel forces)
    block_size: int | None = Field(default=None, ge=1)
    # prefix caching (sim/prefix_cache.py): None = the engine's default (engine_presets.yaml `prefix_caching`)
    prefix_caching: bool | None = None
    # an autoscaler over this group's replicas (sim/autoscaler.py; `replicas` the most it runs): a disaggregated
    # deployment's prefill and decode groups each their own, as Dynamo's planner scales them apart
    autoscale: Autoscale | None = None
    # host memory (all the instance's GPUs' together, bytes) keeping prefix blocks evicted from the GPU
    # (sim/prefix_cache.py HostTier); 0: none, every engine's default
    host_kv_cache_bytes: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    # operator mapping onto the chip's substrates (a catalog name: halo, all-cid, attacc, all-cim; or a YAML):
    # every iteration is costed on them (perf/mapped_cost.py); the chip must list `substrates:`, tp = pp = 1
    mapping: str | None = None
    # Engine knobs, named as the engines name them (None: the engine's default).
    max_num_seqs: int | None = None  # vllm, vllm-v0, sarathi
    max_num_batched_tokens: int | None = None  # vllm, vllm-v0
    enable_chunked_prefill: bool | None = None  # vllm (>= 0.12), trtllm
    max_num_partial_prefills: int | None = None  # vllm
    async_scheduling: bool | None = None  # vllm >= 0.10 (default: off to 0.12, on from 0.14 but with pp > 1 / a draft)
    chunk_size: int | None = None  # sarathi
    chunked_prefill_size: int | None = None  # sglang
    max_running_requests: int | None = None  # sglang
    max_prefill_tokens: int | None = None  # sglang
    enable_mixed_chunk: bool | None = None  # sglang
    cuda_graph_max_bs: int | None = None  # sglang
    schedule_conservativeness: float | None = None  # sglang
    scheduler_recv_interval: int | None = None  # sglang
    enable_piecewise_cuda_graph: bool | None = None  # sglang
    piecewise_cuda_graph_max_tokens: int | None = None  # sglang
    mamba_ssm_dtype: str | None = None  # sglang, vllm (fp32 | bf16)
    hicache_write_policy: str | None = None  # sglang (write_through | write_through_selective | write_back)
    swa_full_tokens_ratio: float | None = None  # sglang: window-pool tokens per full-pool token (hybrid SWA pool)
    disable_hybrid_swa_memory: bool | None = None  # sglang: every layer holds every token, no window pool
    enable_prefill_delayer: bool | None = None  # sglang (with attention DP: the ranks prefill together)
    prefill_delayer_max_delay_passes: int | None = None  # sglang
    moe_a2a_backend: str | None = None  # sglang (none | deepep: DeepEP's all-to-all under attention DP + EP)
    all2all_backend: str | None = None  # vllm (allgather_reducescatter | deepep_high_throughput | deepep_low_latency)
    max_batch_size: int | None = None  # trtllm
    max_num_tokens: int | None = None  # trtllm
    cuda_graph_max_batch_size: int | None = None  # trtllm (1.x: cuda_graph_config.max_batch_size)
    cuda_graph_padding_enabled: bool | None = None  # trtllm (1.x: cuda_graph_config.enable_padding)
    disable_overlap_scheduler: bool | None = None  # trtllm (default: off, on for a disaggregated prefill role)
    attention_dp_enable_balance: bool | None = None  # trtllm (attention_dp_config.enable_balance)
    attention_dp_timeout_iters: int | None = None  # trtllm (attention_dp_config.timeout_iters)
    attention_dp_batching_wait_iters: int | None = None  # trtllm (attention_dp_config.batching_wait_iters)
    batch_wait_timeout_iters: int | None = None  # trtllm
    batch_wait_max_tokens_ratio: float | None = None  # trtllm

    @property
    def knobs(self) -> dict[str, object]:
        """The engine knobs this group sets."""
        return {k: getattr(self, k) for k in KNOB_TYPES if getattr(self, k) is not None}

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas


class Deployment(NumbersNotBooleans):
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

    @model_validator(mode="after")
    def _links(self) -> Deployment:
        """The KV link and the encoders' where the parts they join cannot share one node (kv_apart, encoders_apart;
        link_between): rdma when unset (kept unset: link_notes says so), nvlink or pcie a one-line error."""
        link, refusal = link_between(self.kv_link if "kv_link" in self.model_fields_set else None, self.kv_apart())
        if refusal:
            raise ValueError(f"kv_link {refusal}; give kv_link: rdma (the default there)")
        object.__setattr__(self, "kv_link", link)  # frozen: set while validating, as the field's default
        encoders = self.encoders
        if encoders is not None:
            asked = encoders.link if "link" in encoders.model_fields_set else None
            link, refusal = link_between(asked, self.encoders_apart(), "the embeddings")
            if refusal:
                raise ValueError(f"encoders.link {refusal}; give link: rdma (the default there)")
            if link != encoders.link:  # a copy: the block given may be another deployment's too
                encoders = encoders.model_copy()
                object.__setattr__(encoders, "link", link)
                object.__setattr__(self, "encoders", encoders)
        return self

    def kv_apart(self) -> str | None:
        """Why KV cannot cross NVLink or PCIe here, or None: a prefill and a decode group that cannot share one node
        (phases_apart: on different chips, or more prefill and decode GPUs than one node's), or a low- and a
        high-priority pool (which migrate requests) on different chips (specs/hardware.py chips_apart)."""
        # an autoscaled group's replicas: the most it runs
        gpus = sum(g.gpus for g in self.instances if g.role in ("prefill", "decode"))
        for p_name in {g.hardware: None for g in self.instances if g.role == "prefill"}:
            for d_name in {g.hardware: None for g in self.instances if g.role == "decode"}:
                apart = phases_apart(p_name, d_name, gpus)
                if apart:
                    return apart
        for a in {g.hardware: None for g in self.instances if g.pool == "lp"}:
            for b in {g.hardware: None for g in self.instances if g.pool == "hp"}:
                apart = chips_apart(a, b, ("lp", "hp"))
                if apart:
                    return apart
        return None

    def encoders_apart(self) -> str | None:
        """Why the encoders' embeddings cannot cross NVLink or PCIe to the instances that prefill (chips_apart), or
        None."""
        if self.encoders is None:
            return None
        for g in self.instances:
            if g.role != "decode":
                apart = chips_apart(self.encoders.hardware, g.hardware, ("the encoders", f"the {g.role} instances"))
                if apart:
                    return apart
        return None

    def link_notes(self) -> tuple[str, ...]:
        """What a link left unset is costed over where it is not nvlink (_links), each naming the field as an error
        would (field_label: the flag where flags built the deployment), to print beside the run."""
        notes = []
        if "kv_link" not in self.model_fields_set and self.kv_link != "nvlink":
            notes.append(f"KV transfers costed over {self.kv_link} {self.kv_apart()}, not the default "
                         f"{self.field_label('kv_link')} nvlink: NVLink and PCIe do not leave a node")
        encoders = self.encoders
        if encoders is not None and "link" not in encoders.model_fields_set and encoders.link != "nvlink":
            notes.append(f"the encoders' embeddings costed over {encoders.link} {self.encoders_apart()}, not the "
                         f"default {self.field_label('encoders', 'link')} nvlink: NVLink and PCIe do not leave a node")
        return tuple(notes)

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

    def field_label(self, *path) -> str:
        """What an error calls the field at `path` (e.g. "online_training", "keep_layers"): the flag that set it where
        the deployment was built from flags (build_deployment's field_name, deployment_flags.py flag_of), else its
        location in the deployment file, as a refused field is named (errors.py field_label)."""
        return field_label(path, self.__dict__.get("field_name"))

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

    @model_validator(mode="after")
    def _mtp_draft(self) -> Deployment:
        if self.speculative is None or self.speculative.draft != "mtp":
            return self
        for model in dict.fromkeys(g.model or self.model for g in self.instances):
            refusal = mtp_draft_refusal(model)
            if refusal:
                raise ValueError(f"speculative draft 'mtp' (--spec-draft's default) {refusal}: give a draft model of "
                                 "its family (--spec-draft MODEL, `draft:` in a deployment file), or leave speculative "
                                 "decoding off")
        return self

    @model_validator(mode="after")
    def _layouts(self) -> Deployment:
        """Each group's MoE layout (ep, moe_tp, attention_dp, moe_imbalance), one line naming the flags that set it
        in its role (perf/parallel.py role_flags: a decode group's --decode-ep, --decode-tp): an engine without
        expert or attention-data parallelism (engine_presets.yaml moe_parallelism), a dense model, sizes that do
        not divide (perf/parallel.py parallel_layout); and every group's split of a block-scaled checkpoint the
        engine refuses at load (specs/engine_refusals.py block_shape_refusal: FP8 slices of partial 128-wide
        blocks), with or without those fields. Before the checks that divide by them (_disagg_tp)."""
        from phasewise.perf.parallel import parallel_layout, role_flags
        from phasewise.specs import load_model

        for index, g in enumerate(self.instances):
            moe_fields = not (g.ep is None and g.moe_tp is None and g.attention_dp is None and g.moe_imbalance is None)
            flags = role_flags(g.role)
            refusal = layout_refusal(g.engine, g.tp, g.ep, g.moe_tp, g.attention_dp, flags, g.knobs) \
                if moe_fields else None
            if refusal:
                raise ValueError(f"instances[{index}] ({g.role}): {refusal}")
            try:
                model = load_model(g.model or self.model)
            except PhasewiseError:  # its own one-line error comes when the deployment is simulated
                continue
            try:
                split = parallel_layout(model, g.tp, g.ep, g.moe_tp, g.attention_dp, g.moe_imbalance, flags=flags)
            except PhasewiseError as exc:
                raise ValueError(f"instances[{index}] ({g.role}): {exc}") from None
            try:
                refusal = block_shape_refusal(g.engine, model, g.precision or model.default_precision, g.tp,
                                              split.moe_tp, split.attention_dp, flags)
            except PhasewiseError:  # an engine file that does not read: its own one-line error comes later
                continue
            if refusal:
                raise ValueError(f"instances[{index}] ({g.role}): {refusal}")
        return self

    @model_validator(mode="after")
    def _disagg_tp(self) -> Deployment:
        """The prefill / decode TP pairs the decode groups' engines' P/D connector refuses (specs/engine_refusals.py
        disagg_tp_refusal: vLLM's NixlConnector), one line; the router may send any prefill's KV to any decode."""
        def attention_tp(g: InstanceGroup) -> int:  # the engine's tensor-parallel size (each attention-DP rank's)
            return g.tp // (g.attention_dp or 1)

        for d in (g for g in self.instances if g.role == "decode"):
            for p in (g for g in self.instances if g.role == "prefill" and attention_tp(g) != attention_tp(d)):
                refusal = disagg_tp_refusal(d.engine, attention_tp(p), attention_tp(d),
                                            _kv_heads(d.model or self.model))
                if refusal:
                    raise ValueError(f"a prefill group of tp={p.tp} beside a decode group of tp={d.tp}: {refusal}")
        return self

    @property
    def gpus(self) -> int:
        return sum(g.gpus for g in self.instances) + (self.encoders.gpus if self.encoders is not None else 0)

    @property
    def disaggregated(self) -> bool:
        return any(g.role == "prefill" for g in self.instances)


def _kv_heads(model: str) -> int | None:
    """The model's KV heads (config.json num_key_value_heads), or None where it does not load (its own one-line error
    comes when the deployment is simulated)."""
    from phasewise.specs import load_model

    try:
        return load_model(model).num_kv_heads
    except PhasewiseError:
        return None


def mtp_modules(model: str) -> int | None:
    """The multi-token-prediction modules `model`'s checkpoint carries (ModelSpec.mtp_layers, which the config
    parser reads from each family's own field: specs/hf_config.py MTP_FIELDS); None where the model does not load."""
    from phasewise.specs import load_model

    try:
        return load_model(model).mtp_layers
    except PhasewiseError:
        return None


def mtp_draft_refusal(model: str) -> str | None:
    """Why draft `mtp` cannot run on `model` (a clause: '... drafts with ...'), or None: an MTP draft is the model's
    own multi-token-prediction modules, loaded from the target's checkpoint (SGLang 0.5.5-era srt/server_args.py
    _handle_speculative_decoding: NEXTN runs as EAGLE with the target as its draft path only for DeepseekV3/V32,
    Glm4Moe and BailingMoe(V2), any other model needs --speculative-draft-model-path); a checkpoint without them has
    nothing to draft with."""
    modules = mtp_modules(model)
    if modules is None or modules > 0:
        return None
    return (f"drafts with the model's own multi-token-prediction layers, and {model} has none (its config.json "
            f"counts none in {' / '.join(MTP_FIELDS)})")


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
