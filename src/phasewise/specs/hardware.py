"""Hardware: spec-sheet figures (with sources) plus the named efficiencies the cost model applies.

Spec sheets live in specs/data/hardware_specs.yaml, efficiencies in specs/data/efficiency.yaml
(a default per hardware kind, overridden per entry). A user's chip is one YAML entry in the
spec-sheet format, optionally with its own `efficiency:` block.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phasewise.errors import PhasewiseError, name_list, pydantic_message, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file
from phasewise.specs.chip_cost import fill_from_parts, work_energy
from phasewise.specs.hardware_errors import allowed_keys, spec_message
from phasewise.specs.parts import COMPUTE_DTYPES, ChipParts
from phasewise.specs.substrates import Substrate, check_unique_names

# The keys of an entry's peak_flops: the compute dtypes, and tf32 (a GPU's TF32 tensor peak, which IEEE fp32 GEMMs do
# not run at: HardwareSpec.peak)
PEAK_DTYPES: tuple[str, ...] = (*COMPUTE_DTYPES, "tf32")
# The kinds whose fp32 GEMMs run on their FP32 vector units (CUDA cores) where the entry gives no peak_flops.fp32
IEEE_FP32_ON_VECTOR_KINDS = ("gpu", "edge")


class Efficiency(BaseModel):
    """Fractions of the spec-sheet peaks real kernels reach, and fixed costs. See efficiency.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    gemm_efficiency_max: float = Field(gt=0, le=1)
    gemm_half_rows: float = Field(ge=0)
    # measured alternative to the two numbers above: [[rows, efficiency], ...], interpolated in log(rows)
    gemm_efficiency_curve: tuple[tuple[float, float], ...] | None = None
    memory_efficiency_max: float = Field(gt=0, le=1)
    memory_half_bytes: float = Field(ge=0)
    # a weight matrix whose contiguous rows hold k elements streams at k / (k + weight_row_half_elems) of the
    # bandwidth (a per-row start-up cost: prefetchers restart, loop overheads); 0 = no effect (GPU tiles hide it)
    weight_row_half_elems: float = Field(default=0.0, ge=0)
    attention_efficiency_max: float = Field(gt=0, le=1)
    attention_half_tokens: float = Field(ge=0)
    decode_attention_half_rows: float = Field(ge=0)
    attention_memory_efficiency: float = Field(gt=0, le=1)
    vector_efficiency: float = Field(gt=0, le=1)
    dequant_tile_rows: int = Field(gt=0)
    # fraction of the GEMM efficiency that kernels built on warp-synchronous mma.sync (Ampere-style, e.g.
    # QServe's W4A8 main loop) reach on this chip; 1 where that is the native tensor-core instruction
    sync_mma_efficiency: float = Field(default=1.0, gt=0, le=1)
    kernel_launch_s: float = Field(ge=0)
    # A device that runs its own kernels' dispatch (a CPU: one core issues and executes them): the per-kernel host cost
    # when the kernels before it streamed beyond host_cache_bytes (the core's private cache), which evicts the
    # framework's code and data; measured by `calibrate` (measure/calibrate.py), absent elsewhere (kernel_launch_at)
    kernel_launch_cold_s: float | None = Field(default=None, ge=0)
    host_cache_bytes: float | None = Field(default=None, gt=0)
    # single-thread speed of the platform's host CPU relative to the host the engines' host costs (eager launches,
    # scheduler and per-sequence work: engines.yaml) were measured on; those costs divide by it
    host_speed: float = Field(default=1.0, gt=0)
    # per weight dtype: how much of memory_efficiency_max the GEMMs streaming weights of that dtype reach
    # (block-scaled FP4 kernels at decode batch sizes reach less than FP8/BF16 ones); absent = 1
    weight_read_efficiency: dict[str, float] = Field(default_factory=dict)
    link_efficiency: float = Field(gt=0, le=1)
    reserved_bytes: float = Field(ge=0)

    @model_validator(mode="after")
    def _cold_dispatch_pair(self) -> Efficiency:
        if (self.kernel_launch_cold_s is None) != (self.host_cache_bytes is None):
            raise ValueError("kernel_launch_cold_s and host_cache_bytes go together: give both or neither")
        return self

    def kernel_launch_at(self, layer_weight_bytes: float) -> float:
        """Per-kernel launch cost on a device whose layers stream `layer_weight_bytes` of weights each: kernel_launch_s,
        or where a cold dispatch cost is known, moving towards it linearly as the layer's weights outgrow the host's
        cache, all of it from twice the cache. An approximation: measured on an AVX-512 Xeon (L2 2 MiB), an RMSNorm's
        ops after a GEMV over 1 / 2 / 4 / 17 MB of weights paid 1 / 21 / 65 / 100 % of their cold extra cost; the ramp
        gives 25 / 50 / 100 / 100 %."""
        if self.kernel_launch_cold_s is None or self.host_cache_bytes is None:
            return self.kernel_launch_s
        cold_share = min(1.0, layer_weight_bytes / (2.0 * self.host_cache_bytes))
        return self.kernel_launch_s + cold_share * (self.kernel_launch_cold_s - self.kernel_launch_s)

    @field_validator("gemm_efficiency_curve")
    @classmethod
    def _curve(cls, value: tuple[tuple[float, float], ...] | None) -> tuple[tuple[float, float], ...] | None:
        """Points the GEMM efficiency interpolates between (perf/gemm_cost.py, in log rows): at least one, rows > 0
        and strictly increasing (a repeated or unsorted row would make the interpolation pick points out of order),
        each efficiency a fraction of the peak in (0, 1]."""
        if value is None:
            return value
        if not value:
            raise ValueError("needs at least one [rows, efficiency] point (or leave it out)")
        for rows, efficiency in value:
            if not (math.isfinite(rows) and rows > 0):
                raise ValueError(f"rows must be > 0 (got [{rows:g}, {efficiency:g}])")
            if not 0 < efficiency <= 1:
                raise ValueError(f"an efficiency must be in (0, 1] (got [{rows:g}, "
                                 f"{efficiency:g}])")
        for (before, _), (after, _) in zip(value, value[1:]):
            if not after > before:
                raise ValueError(f"rows must increase strictly ({before:g} then {after:g})")
        return value

    @field_validator("weight_read_efficiency")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for dtype, fraction in value.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"weight_read_efficiency.{dtype} must be in (0, 1] (got {fraction})")
        return value


class Interconnect(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    intra_node_bandwidth_bytes_per_s: float = Field(gt=0)
    intra_node_latency_s: float = Field(ge=0)
    inter_node_bandwidth_bytes_per_s: float = Field(gt=0)
    inter_node_latency_s: float = Field(ge=0)
    pcie_bandwidth_bytes_per_s: float = Field(default=32e9, gt=0)
    # the GPUs of one NVLink (or PCIe) domain: collectives of a group up to this size stay on the intra-node link
    gpus_per_node: int = Field(default=8, gt=0)
    # the GPUs one host (one machine: its CPUs, DIMMs and disks) drives; absent: gpus_per_node (an HGX board is one
    # host). An NVL72 rack is one NVLink domain of 72 GPUs over 18 hosts of 4 (its compute trays): each host reads
    # its own share of a checkpoint (perf/startup.py)
    gpus_per_host: int = Field(default=8, gt=0)
    # the reference node's host memory (DIMMs), all its GPUs' together; None: not known (nothing checked against it)
    host_memory_bytes_per_node: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # switch: every GPU reaches its whole intra-node bandwidth to any peer (NVLink through NVSwitch); mesh: one direct
    # link to each other GPU of the node (AMD Infinity Fabric), intra_node_bandwidth being all gpus_per_node - 1 links
    intra_node_topology: Literal["switch", "mesh"] = "switch"

    @model_validator(mode="before")
    @classmethod
    def _host_defaults_to_node(cls, data: Any) -> Any:
        """gpus_per_host absent: the node's GPUs (one host drives its whole NVLink or PCIe domain)."""
        if isinstance(data, dict) and data.get("gpus_per_host") is None and "gpus_per_node" in data:
            data = {**data, "gpus_per_host": data["gpus_per_node"]}
        return data

    @model_validator(mode="after")
    def _hosts_tile_the_node(self) -> Interconnect:
        if self.gpus_per_host > self.gpus_per_node or self.gpus_per_node % self.gpus_per_host:
            raise ValueError(f"gpus_per_host ({self.gpus_per_host}) must divide gpus_per_node ({self.gpus_per_node}): "
                             "a node (NVLink domain) is whole hosts, e.g. 4 of 72 for an NVL72 rack, or leave it out "
                             "(one host a node)")
        return self

    def group_bandwidth(self, ranks: int) -> float:
        """Bytes/s per direction one GPU moves to the other members of an intra-node group of `ranks` GPUs: the whole
        intra-node bandwidth behind a switch; on a mesh, only its links to the group's other members."""
        if self.intra_node_topology == "switch" or self.gpus_per_node < 2:
            return self.intra_node_bandwidth_bytes_per_s
        peers = min(max(ranks, 2), self.gpus_per_node) - 1
        return self.intra_node_bandwidth_bytes_per_s * peers / (self.gpus_per_node - 1)

    @property
    def peer_bandwidth(self) -> float:
        """Bytes/s per direction from one GPU to one other GPU of its node (a KV transfer, a pipeline hop)."""
        return self.group_bandwidth(2)


class HardwareSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    key: str
    name: str
    kind: Literal["gpu", "edge", "cpu", "accelerator"] = "gpu"
    # who makes it, for the engines that run on one vendor's chips only (engine_presets.yaml `vendors`: TensorRT-LLM
    # on NVIDIA's); None (a chip that does not exist yet, a CPU): any engine
    vendor: Literal["nvidia", "amd"] | None = None
    peak_flops: dict[str, float]
    # the block-scaled FP4 formats the fp4 tensor path consumes (quant.yaml `fp4_format`): NVIDIA Blackwell's takes
    # both NVFP4 (E4M3 scale per 16) and MXFP4 (E8M0 per 32); AMD CDNA4's block-scaled MFMA E8M0 scales only
    fp4_formats: tuple[Literal["nvfp4", "mxfp4"], ...] = Field(default=("nvfp4", "mxfp4"), min_length=1)
    # what a user comparing this chip should know of its predictions where no measured serving run backs them, or
    # where one shows a bias nothing corrects (`plan`, `simulate` and `estimate` print it beside their answer)
    caveat: str | None = None
    vector_flops: float = Field(gt=0)
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    memory_capacity_bytes: float = Field(gt=0)
    memory_type: str = ""
    interconnect: Interconnect
    tdp_w: float = Field(ge=0)
    idle_w: float | None = Field(default=None, ge=0)
    price_per_hour_usd: float = Field(ge=0)
    sources: dict[str, str] = Field(default_factory=dict)
    efficiency: Efficiency
    parts: ChipParts | None = None  # a chip built from parts (specs/parts.py): its figures derive from them
    # compute substrates (specs/substrates.py): parts an operator mapping places operators on (HALO, CENT)
    substrates: tuple[Substrate, ...] = ()

    @field_validator("substrates")
    @classmethod
    def _unique_substrates(cls, value: tuple[Substrate, ...]) -> tuple[Substrate, ...]:
        return check_unique_names(value)

    @model_validator(mode="after")
    def _idle_within_tdp(self) -> HardwareSpec:
        # tdp_w 0: not known (a power objective refuses it)
        if self.idle_w is not None and 0 < self.tdp_w < self.idle_w:
            raise ValueError(f"idle_w ({self.idle_w:g} W) must be at most tdp_w ({self.tdp_w:g} W): the simulator's "
                             "power runs from idle to TDP with utilization")
        return self

    @property
    def gpu_hour_usd(self) -> float:
        """The chip's price per GPU-hour, NaN where the catalog knows none (its price_per_hour_usd 0): the one rule
        by which a sum over chips that holds an unpriced one is unknown, not the priced chips' partial sum
        (simulate's tokens per dollar, plan's cluster price, a fleet's dollars)."""
        return self.price_per_hour_usd if self.price_per_hour_usd > 0 else math.nan

    @property
    def known_tdp_w(self) -> float:
        """The chip's TDP, NaN where the catalog knows none (tdp_w 0: cpu-local), by gpu_hour_usd's rule: a cluster
        holding such a chip has no TDP, `--json` writes it null."""
        return self.tdp_w if self.tdp_w > 0 else math.nan

    def peak(self, dtype: str) -> float:
        """Dense peak a compute dtype's GEMMs run at; a one-line error if the chip has no such path. fp32 GEMMs run
        in IEEE FP32 (PyTorch's default float32_matmul_precision 'highest', which vLLM's workers set
        (VLLM_FLOAT32_MATMUL_PRECISION) and SGLang keeps): at peak_flops.fp32 where the entry gives one (a CPU's
        measured matmul, a chip's arrays that run FP32), else on a GPU at its non-tensor FP32 rate (vector_flops),
        never at its TF32 tensor peak (peak_flops.tf32: no --precision runs on it)."""
        value = self.peak_flops.get(dtype) if dtype in COMPUTE_DTYPES else None
        if not value and dtype == "fp32" and self.kind in IEEE_FP32_ON_VECTOR_KINDS:
            value = self.vector_flops
        if value is None or value <= 0:
            raise PhasewiseError(
                f"hardware '{self.key}' has no {dtype} compute path (has: {', '.join(self.compute_paths)}); "
                "choose another --precision"
            )
        return value

    @property
    def compute_paths(self) -> list[str]:
        """The compute dtypes peak() runs on this chip."""
        paths = [k for k, v in self.peak_flops.items() if k in COMPUTE_DTYPES and v > 0]
        if "fp32" not in paths and self.kind in IEEE_FP32_ON_VECTOR_KINDS:
            paths.insert(0, "fp32")
        return paths

    @property
    def captures_cuda_graphs(self) -> bool:
        """Whether an engine captures and replays CUDA graphs on this chip: not on a CPU, which has no CUDA stream to
        capture (vLLM's CPU platform empties cudagraph_capture_sizes, vllm/platforms/cpu.py
        check_and_update_config): every step launches its kernels eagerly and start-up captures none."""
        return self.kind != "cpu"

    @property
    def idle_power_w(self) -> float:
        """A GPU's power when idle: `idle_w` when the entry gives it; a chip built from parts, its static and link
        power (chip_cost.work_energy); else 30 % of its TDP (a documented assumption; the simulator's energy runs
        between it and the TDP by utilization)."""
        if self.idle_w is not None:
            return self.idle_w
        if self.parts is not None:
            return work_energy(self)[0]
        return 0.3 * self.tdp_w

    @property
    def host_memory_per_gpu_bytes(self) -> float | None:
        """A GPU's share of its node's host memory for a KV tier, HOST_MEMORY_RESERVE_BYTES kept free (None: the
        node's memory is not known)."""
        node = self.interconnect.host_memory_bytes_per_node
        return None if node is None else max(node - HOST_MEMORY_RESERVE_BYTES, 0.0) / self.interconnect.gpus_per_node

    def ridge_flops_per_byte(self, dtype: str) -> float:
        """The roofline's ridge at compute dtype `dtype`: its dense peak FLOP/s over memory bytes/s, the arithmetic
        intensity above which a kernel is compute-bound (the one definition: `estimate`, perf/dllm.py, scenarios)."""
        return self.peak(dtype) / self.memory_bandwidth_bytes_per_s


class UnfusedElementwise(BaseModel):
    """Bytes an unfused engine's elementwise ops move per token, over the fused kernels' count, by class: the two
    add + RMSNorms (fused: 10 hidden-size vectors), RoPE on q and k (fused: each read and written once) and the gated
    MLP's activation (fused: gate and up read, the product written)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: float = Field(ge=1)
    rope: float = Field(ge=1)
    activation: float = Field(ge=1)
    # a norm with no residual add (q / k norms, post-norms; fused: its input read and its output written); None: `norm`
    plain_norm: float | None = Field(default=None, ge=1)


class UnfusedKernels(BaseModel):
    """Kernels an unfused eager engine dispatches for each kernel of the fused count (perf/operators.py KERNELS), by
    class, counted from its code: a fused add + RMSNorm (`norm`), a norm with no residual add (`plain_norm`), RoPE on
    q and k, the gated MLP's activation, the q / k / v projections (one fused GEMM), the gate / up projections (one
    fused GEMM) and attention (its KV cache write and the attention kernel)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    norm: float = Field(ge=1)
    plain_norm: float = Field(ge=1)
    rope: float = Field(ge=1)
    activation: float = Field(ge=1)
    qkv_proj: float = Field(ge=1)
    mlp_gate_up: float = Field(ge=1)
    attention: float = Field(ge=1)


class DeepEPBuffers(BaseModel):
    """What an engine allocates for DeepEP's all-to-all on each GPU (perf/deepep_buffers.py sizes it for a model):
    an NVLink buffer for the normal (high-throughput) kernels of `nvl_bytes` (None: DeepEP's own size hint for the
    model's hidden size and the EP group, deep_ep Config.get_nvl_buffer_size_hint, as SGLang asks for it), the
    low-latency kernels' RDMA buffer for `low_latency_tokens_per_rank` tokens a rank may dispatch (None: the engine
    runs no low-latency kernels), and `internode_rdma_bytes` for the normal kernels' RDMA buffer when the EP group
    spans nodes."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    nvl_bytes: float | None = Field(default=None, ge=0)
    low_latency_tokens_per_rank: int | None = Field(default=None, gt=0)
    internode_rdma_bytes: float = Field(default=0.0, ge=0)


class EngineProfile(BaseModel):
    """Host-side costs of a serving engine (scheduler, input preparation, kernel dispatch)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    description: str = ""
    iteration_overhead_s: float = Field(ge=0)
    per_sequence_overhead_s: float = Field(ge=0)
    eager_launch_s: float = Field(ge=0)
    collective_overhead_s: float = Field(default=0.0, ge=0)
    compute_efficiency: float = Field(default=1.0, gt=0, le=1)
    collective_efficiency: float = Field(default=1.0, gt=0, le=1)
    elementwise_passes: float = Field(default=1.0, ge=1)
    # An engine that runs each elementwise step as an op of its own (transformers' eager modules): the bytes each class
    # of a layer's elementwise work moves, relative to the fused kernels' count (perf/cost.py); absent: fused (1)
    unfused_elementwise: UnfusedElementwise | None = None
    # the same engine's kernels: each of its eager ops dispatched (eager_launch_s) and launched (kernel_launch_s) on
    # its own, per class of the fused count (perf/operators.py unfused_kernel_counts); absent: the fused count
    unfused_kernels: UnfusedKernels | None = None
    decode_attention_tensor_cores: bool = True
    # A decode attention kernel that reads a K / V head again for the other query heads of its group, not once for
    # the group: TensorRT-LLM's masked MHA before XQA ("a single CUDA thread-block per head", docs/source/
    # gpt_attention.md; XQA for MQA / GQA "reducing data loading", docs/source/blogs/XQA-kernel.md: 2.4x Llama-70B
    # throughput at 128/2048). The share of those other query heads whose reads reach memory (the rest hit in L2):
    # K / V bytes x (1 + share x (query heads per K / V head - 1)); 0: read once per group (FlashInfer, XQA, FA)
    decode_kv_per_query_head: float = Field(default=0.0, ge=0, le=1)
    cuda_graphs: bool = True
    cuda_graph_max_batch: int = Field(default=512, ge=0)
    # Captured sizes (empty: every batch up to cuda_graph_max_batch); a batch pads up to the next size
    # (padding) or runs eagerly when its size was not captured (no padding, TensorRT-LLM's default).
    cuda_graph_sizes: tuple[int, ...] = ()
    cuda_graph_padding: bool = True
    cuda_graph_mixed: bool = False  # graphs also cover batches with prefill tokens, by token count (vLLM V1)
    # every graph-replayed batch, decode-only ones too, launches its attention eagerly between the captured pieces
    # (vLLM's cudagraph_mode PIECEWISE, its default before 0.11's FULL_AND_PIECEWISE); false: decode-only batches
    # replay a graph that holds attention too
    cuda_graph_attention_eager: bool = False
    # token counts of the piecewise CUDA graphs an engine captures for batches with prefill tokens, beside its decode
    # graphs (SGLang --enable-piecewise-cuda-graph): such a batch up to the largest replays them, padded up
    piecewise_graph_tokens: tuple[int, ...] = ()
    overlap_scheduling: bool = False  # host work of step n+1 overlaps the device time of step n
    custom_allreduce: bool = False  # one-shot / two-shot all-reduce kernels inside an NVLink domain
    # The API server in front of the scheduler handles one request at a time (HTTP, validation,
    # tokenization, hand-off): per request and per prompt token.
    frontend_request_s: float = Field(default=0.0, ge=0)
    frontend_token_s: float = Field(default=0.0, ge=0)
    # Disaggregated serving: a fixed time between a prompt's prefill ending and its KV being usable on the decode
    # instance, beyond the transfer's bytes and the link latency (the request-plane hop through the router, the
    # transfer's setup, the decode side polling for its completion); the prefill instance's engine sets it.
    kv_handoff_s: float = Field(default=0.0, ge=0)
    # Disaggregated serving: how the decode instance streams the first token the prefill instance sampled (the decode
    # instance's engine sets it; sim/cluster.py first_token_pending): with_second, together with the second at the
    # end of its first decode step (SGLang); recomputed, the decode instance computes the last prompt token again and
    # samples the first token itself in its first step, the second in the next (vLLM's NixlConnector P/D);
    # at_schedule, sent as its first decode step is scheduled, before that step runs (TensorRT-LLM)
    disagg_first_token: Literal["with_second", "recomputed", "at_schedule"] = "with_second"
    # Graph-replayed batches of at most this many tokens (per attention rank) run a MoE layer's shared expert on a
    # second CUDA stream beside the routed experts, so its kernels' launch gaps hide behind them (0: never)
    shared_expert_stream_tokens: int = Field(default=0, ge=0)
    # A quantized linear layer (FP8, INT8, FP4 compute) quantizes its BF16 input in a kernel of its own before the GEMM
    # (false: the quantization is fused into the kernel that produced the input, a norm or an activation)
    activation_quant_kernels: bool = False
    # The model types whose q / k RMSNorms (ModelSpec.qk_norm) the engine runs inside its RoPE kernel (TensorRT-LLM's
    # fused_qk_norm_rope for Qwen3): no kernels or traffic of their own; the others' their own kernel (as vLLM and
    # SGLang run them by default)
    qk_norm_rope_fused: tuple[str, ...] = ()
    # Bytes per hidden element a MoE layer's dispatch sends (all-to-all, or the all-gather before it), by the model's
    # quantization scheme: where the engine quantizes its tokens before sending them (or sends them in BF16 and
    # quantizes on receipt). A scheme absent here: DeepEP's rule (FP8 with an FP32 scale per 128 channels when the
    # GEMMs run FP8, else the activation dtype). The combine returns BF16 everywhere.
    moe_dispatch_bytes: dict[str, float] = Field(default_factory=dict)
    # How a MoE layer under attention data parallelism beside expert parallelism brings tokens to their experts
    # (perf/collectives.py): all_to_all (each token to the GPUs holding its experts and back, DeepEP-style), gather
    # (every attention rank's tokens all-gathered onto every GPU before the experts and their outputs reduce-scattered
    # back: SGLang's default --moe-a2a-backend none, vLLM's default all2all backends), or all_to_all_on_mnnvl
    # (TensorRT-LLM: its MNNVL all-to-all where the EP group is larger than top-k inside one multi-node NVLink domain,
    # the gather elsewhere)
    moe_dispatch: Literal["all_to_all", "gather", "all_to_all_on_mnnvl"] = "all_to_all"
    # the GPU memory the engine holds for DeepEP's all-to-all where it runs it (SGLang's --moe-a2a-backend deepep,
    # vLLM's --all2all-backend deepep_*; specs/engines.py DEEPEP_BUFFERS); None: none held apart
    deepep_buffers: DeepEPBuffers | None = None
    # Linear-attention (gated DeltaNet, Mamba-style) layers: the dtype the engine keeps each sequence's recurrent state
    # in, and whether its overlap scheduler stays on for such models with the prefix cache on (SGLang's default
    # MambaRadixCache turns it off; sim/simulate.py keeps it on when the deployment's prefix cache is off)
    recurrent_state_dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    recurrent_state_overlap: bool = True
    # the recurrent states' own pool, this many times the KV cache's memory (SGLang's mamba pool, whose slots then cap
    # the running requests); None: a state slot for each of the engine's sequences, out of the KV cache's memory
    recurrent_state_pool_ratio: float | None = Field(default=None, gt=0)
    source: str = ""

    @field_validator("moe_dispatch_bytes")
    @classmethod
    def _dispatch_schemes(cls, value: dict[str, float]) -> dict[str, float]:
        from phasewise.specs.quant import quant_names  # the quantization catalog (specs/quant.py)

        known = quant_names()
        for scheme, nbytes in value.items():
            if scheme not in known:
                raise ValueError(f"moe_dispatch_bytes: '{scheme}' is not a quantization scheme (allowed: "
                                 f"{', '.join(known)})")
            if not 0 < nbytes <= 4:
                raise ValueError(f"moe_dispatch_bytes.{scheme} must be in (0, 4] bytes an element (got {nbytes})")
        return value


# host memory a KV tier leaves free on a node: SGLang's HiCache refuses a host pool beyond the available memory less
# 10 GiB (mem_cache/memory_pool_host.py: "preserve at least 10GB for other usage", HICACHE_HOST_MEMORY_RESERVE_BYTES)
HOST_MEMORY_RESERVE_BYTES = 10 * 2**30


# A user's chip that runs on its kind's efficiency defaults (build_hardware), said beside its predictions
DEFAULTS_NOTE = ("no `efficiency:` block: runs on the {kind} class defaults of specs/data/efficiency.yaml, not a "
                 "catalog chip's fitted values (`phasewise hardware KEY --yaml` writes a catalog chip with its own)")

# Floors below which a figure is a unit slip, not a chip (3.35 for 3.35 TB/s, 1.776 for 1.776 GHz, 64 for 64 GB):
# at or below the Intel 8086 (1978; Intel's 8086 datasheet: a 5 MHz clock, a 20-bit address bus reaching 1 MiB, a
# 16-bit bus cycle of 4 clocks: 2.5 MB/s; no floating point, its 8087 coprocessor some 50 kFLOP/s), which no LLM
# runs on. The ceiling on memory: 1e18 bytes (an exabyte), ~800x the most memory attached to one accelerator
# (Cerebras CS-3 with MemoryX: up to 1.2 PB, Cerebras' CS-3 announcement, March 2024).
_FIGURE_RANGES = {  # field path: (floor, ceiling, unit, an example of the unit slip)
    "memory_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.35 TB/s is 3.35e12"),
    "interconnect.intra_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "450 GB/s is 450e9"),
    "interconnect.inter_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "50 GB/s is 50e9"),
    "interconnect.pcie_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "64 GB/s is 64e9"),
    "memory_capacity_bytes": (2**20, 1e18, "bytes", "80 GB is 80e9"),
    "parts.memory.capacity_bytes": (2**20, 1e18, "bytes", "64 GB is 64e9"),
    "parts.compute.clock_hz": (1e6, math.inf, "Hz", "1.776 GHz is 1.776e9"),
    "vector_flops": (1e6, math.inf, "FLOP/s", "67 TFLOP/s is 67e12"),
    "peak_flops.*": (1e6, math.inf, "FLOP/s", "989 TFLOP/s is 989e12"),  # each dtype's; 0: no such path
}


def _figure(value: float, unit: str) -> str:
    """A range's bound with its unit (1 MiB: itself a number of bytes)."""
    return "1 MiB" if value == 2**20 else f"{value:.0e}".replace("e+0", "e").replace("e+", "e") + f" {unit}"


def check_figures(entry: dict[str, Any], where: str) -> None:
    """One line for a figure no chip has: true / false anywhere in the entry (no field of it is a flag: `true` for
    a bandwidth would read as 1 byte/s), a negative peak, or a figure of _FIGURE_RANGES outside its range (the unit
    slipped). Other fields' ranges are their models' (HardwareSpec, Interconnect, Efficiency, ChipParts)."""
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in entry.items()]
    while stack:
        field, value = stack.pop()
        if isinstance(value, bool):
            raise PhasewiseError(f"{where}: {field} must be a number or text, not {str(value).lower()} (no field of "
                                 "a hardware entry is a flag)")
        if isinstance(value, dict):
            stack.extend((f"{field}.{key}", item) for key, item in value.items())
            continue
        if isinstance(value, list):
            stack.extend((f"{field}[{i}]", item) for i, item in enumerate(value))
            continue
        limits = _FIGURE_RANGES.get("peak_flops.*" if field.startswith("peak_flops.") else field)
        if limits is None or not isinstance(value, (int, float)):
            continue
        floor, ceiling, unit, example = limits
        if field.startswith("peak_flops.") and value == 0:
            continue
        if value < 0:
            raise PhasewiseError(f"{where}: {field} must be >= 0 {unit} (got {value:g})")
        if not floor <= value <= ceiling:
            side = f"below {_figure(floor, unit)}" if value < floor else f"above {_figure(ceiling, unit)}"
            raise PhasewiseError(f"{where}: {field} is {value:g} {unit}, {side}: the field is in {unit} "
                                 f"(a unit slip? {example})")


def build_hardware(key: str, entry: dict[str, Any], where: str, catalog: bool = False) -> HardwareSpec:
    """Validate one spec-sheet entry, filling efficiencies from its kind's default where absent; a `catalog` entry
    takes its key's fitted values (efficiency.yaml `hardware:`) over those, a user's entry never (whatever its key:
    one named h100-sxm is not the catalog's H100). A user's entry without an `efficiency:` block says, in its caveat,
    that it runs on its kind's defaults."""
    eff_data = packaged("efficiency.yaml")
    entry = dict(entry)
    kind = entry.get("kind", "gpu")
    defaults = eff_data["defaults"].get(kind) if isinstance(kind, str) else None
    if defaults is None:
        raise PhasewiseError(f"{where}: kind {kind!r} is not one of {', '.join(eff_data['defaults'])}")
    for field in ("efficiency", "peak_flops"):  # mappings: a number or a list there is refused by name
        if entry.get(field) is not None and not isinstance(entry[field], dict):
            raise PhasewiseError(f"{where}: {field} must be a mapping of "
                                 f"{'dtype: FLOP/s' if field == 'peak_flops' else 'constant: value'} "
                                 f"(got {entry[field]!r})")
    check_figures(entry, where)
    eff = {k: v for k, v in defaults.items() if not k.startswith("source")}
    if catalog:
        eff.update({k: v for k, v in (eff_data["hardware"].get(key) or {}).items() if k != "sources"})
    elif entry.get("efficiency") is None and isinstance(entry.get("caveat") or "", str):  # else: refused below
        entry["caveat"] = " ".join(filter(None, (entry.get("caveat"), DEFAULTS_NOTE.format(kind=kind))))
    eff.update(entry.pop("efficiency", None) or {})
    entry.pop("efficiency_sources", None)
    entry.pop("aliases", None)  # other names for a catalog entry; used only by load_hardware
    if entry.get("parts") is not None:
        entry = fill_from_parts(entry, where)
    else:
        refuse_no_figures(entry, where)
    bad = [d for d in (entry.get("peak_flops") or {}) if d not in PEAK_DTYPES]
    if bad:
        raise PhasewiseError(
            f"{where}: peak_flops.{bad[0]} is not a known dtype (allowed: {', '.join(PEAK_DTYPES)})"
        )
    try:
        return HardwareSpec(key=key, efficiency=eff, **entry)
    except ValidationError as exc:
        raise spec_message(where, exc, HardwareSpec) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None


# The figures a chip's entry gives, or its parts derive (parts.py derived_figures, chip_cost.py: TDP), with the
# rental price a chip from parts has none of (0)
PARTS_FIGURES = ("peak_flops", "vector_flops", "memory_bandwidth_bytes_per_s", "memory_capacity_bytes", "tdp_w",
                 "price_per_hour_usd")


def refuse_no_figures(entry: dict[str, Any], where: str) -> None:
    """One line for an entry with neither parts nor the figures they would give (an empty `parts:`, a misspelt
    `part:`), naming both ways and any unknown key, in place of a "Field required" for each figure."""
    missing = [field for field in PARTS_FIGURES if field not in entry]
    if not missing:
        return
    unknown = [str(k) for k in entry if k not in HardwareSpec.model_fields]
    said = [f"{k}: unknown key (allowed: {', '.join(allowed_keys(HardwareSpec))})" for k in unknown[:1]]
    if "parts" in entry:
        said.append("parts: is empty")
    parts_keys = ", ".join(allowed_keys(ChipParts))
    said.append(f"a chip needs either parts: {{{parts_keys}}} (its figures derive from them) or the figures "
                f"{', '.join(PARTS_FIGURES)} (missing: {', '.join(missing)})")
    raise PhasewiseError(f"{where}: " + "; ".join(said))


# What `phasewise calibrate` writes beside each other in one file (measure/calibrate.py): a hardware and an engine
# entry and the measurements they came from; such a file is both a --hardware and an --engine file.
CALIBRATE_KEYS = ("hardware", "engines", "measurements")


def refuse_beside(data: dict[str, Any], wrapper: str, where: str) -> None:
    """A one-line error for a top-level key beside `wrapper:` that no reader reads (an `efficiency:` block meant for
    the entry above it, a typo), rather than dropping it."""
    stray = [key for key in data if key != wrapper and key not in CALIBRATE_KEYS]
    if stray:
        raise PhasewiseError(f"{where}: top-level key '{stray[0]}' beside '{wrapper}:' is not read (move it into "
                             f"the entry under '{wrapper}:', or remove it)")


def chip_caveats(chips) -> dict[str, str]:
    """{chip: its entry's caveat} for the chips named (catalog keys, aliases or files) whose entry has one, each once."""
    caveats = {chip: load_hardware(chip).caveat for chip in dict.fromkeys(chips)}  # each chip loaded once
    return {chip: caveat for chip, caveat in caveats.items() if caveat}


def hardware_names() -> list[str]:
    return list(packaged("hardware_specs.yaml")["hardware"])


def parts_chips() -> list[str]:
    """The catalog chips built from parts (the ones a hardware cost can price)."""
    return [key for key, entry in packaged("hardware_specs.yaml")["hardware"].items() if entry.get("parts")]


def catalog_key(name: str) -> str | None:
    """The catalog key a name or one of an entry's `aliases:` refers to (case-insensitive); keys win."""
    catalog = packaged("hardware_specs.yaml")["hardware"]
    names = {str(alias).lower(): key for key, entry in catalog.items() for alias in entry.get("aliases") or []}
    names.update({key.lower(): key for key in catalog})
    return names.get(name.lower())


def load_hardware(name_or_path: str) -> HardwareSpec:
    """A catalog chip by key or alias (case-insensitive), or a YAML file: one entry or `hardware: {key: entry}`."""
    if looks_like_path(name_or_path):
        data = read_user_file(name_or_path, "hardware")
        if isinstance(data.get("hardware"), dict):
            refuse_beside(data, "hardware", f"hardware file '{name_or_path}'")
            if len(data["hardware"]) != 1:
                raise PhasewiseError(
                    f"hardware file '{name_or_path}' must hold exactly one entry under 'hardware:' "
                    f"(found {len(data['hardware'])})"
                )
            key, entry = next(iter(data["hardware"].items()))
        else:
            key, entry = str(data.get("key") or data.get("name") or name_or_path), data
            entry = {k: v for k, v in entry.items() if k != "key"}
        if not isinstance(entry, dict):
            raise PhasewiseError(f"hardware file '{name_or_path}': the entry must be a mapping")
        return build_hardware(str(key), entry, f"hardware file '{name_or_path}'")
    catalog = packaged("hardware_specs.yaml")["hardware"]
    key = catalog_key(name_or_path)
    if key is None:
        raise unknown_name("hardware", name_or_path, catalog)
    return build_hardware(key, catalog[key], f"hardware '{key}'", catalog=True)


def catalog_entry_yaml(name: str) -> dict[str, Any]:
    """A catalog chip as a user's hardware file holds it (`hardware: {key: entry}`), its efficiencies resolved into
    an `efficiency:` block (its kind's defaults, then its fitted values) with their sources under
    `efficiency_sources:`: that file gives the catalog chip's figures exactly, and is the one to edit for a variant."""
    key = catalog_key(name)
    catalog = packaged("hardware_specs.yaml")["hardware"]
    if looks_like_path(name):
        raise PhasewiseError(f"hardware '{name}' is a file: only a catalog chip is written as one")
    if key is None:
        raise unknown_name("hardware", name, catalog)
    eff_data = packaged("efficiency.yaml")
    entry = {k: v for k, v in catalog[key].items() if k not in ("aliases", "efficiency", "efficiency_sources")}
    defaults = eff_data["defaults"][entry.get("kind", "gpu")]
    fitted = eff_data["hardware"].get(key) or {}
    efficiency = {k: v for k, v in defaults.items() if k != "sources"}
    efficiency.update({k: v for k, v in fitted.items() if k != "sources"})
    efficiency.update(catalog[key].get("efficiency") or {})
    sources = {**(defaults.get("sources") or {}), **(fitted.get("sources") or {}),
               **(catalog[key].get("efficiency_sources") or {})}
    # a copy: the caller may edit it (a variant) without editing the packaged catalog every later load reads
    return copy.deepcopy({"hardware": {key: {**entry, "efficiency": efficiency, "efficiency_sources": sources}}})


# The profile fields an engine preset sets itself, from its version and knobs (specs/engines.py _build): a file that
# refines a preset (`preset:`) cannot set them
PRESET_PROFILE_FIELDS = ("cuda_graph_sizes", "cuda_graph_padding", "cuda_graph_mixed", "cuda_graph_attention_eager",
                         "piecewise_graph_tokens", "overlap_scheduling")


def engine_file_preset(path: str) -> str | None:
    """The preset (`NAME[@VERSION]`, engine_presets.yaml) an engine file refines (its entry's `preset:` key, as
    fit-engine writes it): the preset's scheduler, knobs and CUDA-graph / overlap settings, the file's host constants
    over its profile's. None: a bare profile (scheduled as its `scheduler:` says)."""
    entry = _engine_file_entry(path)[1]
    preset = entry.get("preset") if isinstance(entry, dict) else None
    if preset is None:
        return None
    presets = packaged("engine_presets.yaml")["presets"]
    if not isinstance(preset, str) or preset.split("@", 1)[0].lower() not in presets:
        raise PhasewiseError(f"engine file '{path}': preset {preset!r} is not one of {', '.join(presets)} "
                             "(optionally @VERSION)")
    if "scheduler" in entry:
        raise PhasewiseError(f"engine file '{path}': give preset or scheduler, not both (the preset names its "
                             "scheduler)")
    return preset


def _engine_file_entry(path: str) -> tuple[str, Any]:
    data = read_user_file(path, "engine")
    engines = data.get("engines")
    if not isinstance(engines, dict) or len(engines) != 1:
        raise PhasewiseError(f"engine file '{path}' must hold exactly one entry under 'engines:'")
    refuse_beside(data, "engines", f"engine file '{path}'")
    return next(iter(engines.items()))


def load_engine(name_or_path: str) -> EngineProfile:
    """A catalog engine by name, or a YAML file with one entry under `engines:` (as calibrate writes); a file that
    names a `preset:` (engine_file_preset) holds the fields it changes in that preset's profile."""
    if looks_like_path(name_or_path):
        key, entry = _engine_file_entry(name_or_path)
        preset = engine_file_preset(name_or_path)
        if isinstance(entry, dict):
            entry = {k: v for k, v in entry.items() if k not in ("scheduler", "preset")}  # read by specs.engines
        if preset is not None:
            fixed = [k for k in PRESET_PROFILE_FIELDS if k in entry]
            if fixed:
                raise PhasewiseError(f"engine file '{name_or_path}': {', '.join(fixed)} is set by preset '{preset}' "
                                     "(its version and knobs); remove it, or drop `preset:` for a bare profile")
            base = packaged("engine_presets.yaml")["presets"][preset.split("@", 1)[0].lower()]["profile"]
            entry = {**packaged("engines.yaml")["engines"][base], **entry}
        where = f"engine file '{name_or_path}'"
    else:
        engines = packaged("engines.yaml")["engines"]
        key = name_or_path.lower()
        if key not in engines:
            raise unknown_name("engine", name_or_path, engines)
        entry, where = engines[key], f"engine '{name_or_path}'"
    if isinstance(entry, dict):  # pydantic reads true as 1 for a number: 1 s of overhead per iteration
        for field, value in entry.items():
            model_field = EngineProfile.model_fields.get(field)
            if isinstance(value, bool) and model_field is not None and model_field.annotation is not bool:
                raise PhasewiseError(f"{where}: {field} must be a number, not {str(value).lower()}")
    try:
        return EngineProfile(name=str(key), **entry)
    except (ValidationError, TypeError) as exc:
        raise pydantic_message(where, exc) from None


def hardware_list(flag: str, value: str) -> list[str]:
    """The chips of a comma-separated `flag` (--hardware A,B,C), each named once: two entries naming one chip (a
    catalog key and its alias or another case, or one file by two paths) are a one-line error."""
    chips = name_list(flag, value)
    seen: dict[str, str] = {}
    for chip in chips:
        identity = chip_identity(chip)
        if identity in seen:
            raise PhasewiseError(f"{flag} names one chip twice: {seen[identity]} and {chip}")
        seen[identity] = chip
    return chips


def chip_identity(chip: str) -> str:
    """What a chip name stands for: its catalog key (any alias or case), or its file's resolved path."""
    return str(Path(chip).resolve()) if looks_like_path(chip) else catalog_key(chip) or chip


def chips_apart(p_name: str, d_name: str, sides: tuple[str, str] = ("prefill", "decode")) -> str | None:
    """Why prefill and decode instances (or the two `sides` named, e.g. encoders and the instances they feed) cannot
    share a node's NVLink or PCIe (their chips differ: two machines), or None; sim/deployment.py phases_apart (the
    prefill / decode rule of plan, `simulate --arch disagg` and deployment files, which adds one node's GPU count)
    and a deployment's other links (two priority pools, encoders) apply it."""
    if chip_identity(p_name) != chip_identity(d_name):
        return f"with {sides[0]} on {p_name} and {sides[1]} on {d_name} (two machines)"
    return None
