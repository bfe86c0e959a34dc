"""A deployment's instance group (sim/deployment.py Deployment.instances): identical instances, their hardware,
parallelism, precision and serving engine with its knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.deployment_blocks import MAX_REPLICAS
from phasewise.specs.engines import KNOB_TYPES
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans


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
