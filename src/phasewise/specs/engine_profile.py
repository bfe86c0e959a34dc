"""Engine profiles: the host-side costs of a serving engine (scheduler, input preparation, kernel dispatch) and the
engine-specific device paths the cost model reads (specs/data/engines.yaml; a user's engine file in the same
format, or one that refines a preset of specs/data/engine_presets.yaml)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from phasewise.errors import PhasewiseError, pydantic_message, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file, refuse_beside


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
    # vLLM's --all2all-backend deepep_*; specs/engine_deepep.py DEEPEP_BUFFERS); None: none held apart
    deepep_buffers: DeepEPBuffers | None = None
    # Under attention data parallelism, the GPUs the output head's vocabulary is split over (perf/vocab_split.py
    # vocab_split): each attention rank's own (attention_tp: vLLM's TP group inside a DP rank, TensorRT-LLM's whole
    # head at attention TP 1), or the stage's whole TP group (tp: SGLang without --enable-dp-lm-head, which then runs
    # the head on every rank's logit tokens gathered: perf/collectives.py lm_head_exchange)
    lm_head_split: Literal["attention_tp", "tp"] = "attention_tp"
    # Under attention data parallelism, the input embedding split by vocabulary over each attention rank's GPUs, its
    # lookups all-reduced there (attention_tp), or whole on every GPU with no all-reduce (replicated)
    embedding_split: Literal["attention_tp", "replicated"] = "attention_tp"
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


# The profile fields an engine preset sets itself, from its version and knobs (specs/engine_config.py build_engine_config): a file that
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
