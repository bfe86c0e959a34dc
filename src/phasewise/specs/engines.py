"""Serving-engine presets: `--engine vllm | sglang | trtllm | vllm-v0 | ...[@version]` resolved, for one
GPU and entry point, into the scheduler to run and the values of its knobs (data in engine_presets.yaml).

A knob is named as its engine names it (`max_num_batched_tokens`, `chunked_prefill_size`,
`max_num_tokens`); `EngineConfig` carries both those names (for display and errors) and the generic
quantities the simulator's schedulers read (token budget, sequence cap, chunking, admission rule)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from phasewise.errors import PhasewiseError, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file
from phasewise.specs.engine_defaults import (
    graph_sizes,
    sglang_memory_fraction,
    sglang_memory_fraction_by_memory,
    sglang_piecewise_tokens,
    sglang_vision_factor,
    trtllm_graph_sizes,
    vllm_batch_caps,
)
from phasewise.specs.engine_presets import preset_entry, version_table
from phasewise.specs.engine_refusals import (
    pipeline_rule_refusal,
    vendor_refusal,
)
from phasewise.specs.hardware import DeepEPBuffers, EngineProfile, HardwareSpec, engine_file_preset, load_engine
from phasewise.specs.vision import VisionEncoder

SCHEDULERS = ("vllm", "vllm-v0", "sarathi", "sglang", "trtllm", "shortest-prefill")
ENTRY_POINTS = ("server", "offline")
# Every knob any preset has, with the type a value must have.
KNOB_TYPES: dict[str, type] = {
    "max_num_seqs": int, "max_num_batched_tokens": int, "enable_chunked_prefill": bool,
    "max_num_partial_prefills": int, "chunk_size": int, "chunked_prefill_size": int,
    "max_running_requests": int, "max_prefill_tokens": int, "enable_mixed_chunk": bool, "cuda_graph_max_bs": int,
    "schedule_conservativeness": float, "max_batch_size": int, "max_num_tokens": int,
    "scheduler_recv_interval": int, "cuda_graph_max_batch_size": int, "cuda_graph_padding_enabled": bool,
    "enable_piecewise_cuda_graph": bool, "piecewise_cuda_graph_max_tokens": int,
    "disable_overlap_scheduler": bool, "attention_dp_enable_balance": bool, "attention_dp_timeout_iters": int,
    "attention_dp_batching_wait_iters": int, "batch_wait_timeout_iters": int, "batch_wait_max_tokens_ratio": float,
    "async_scheduling": bool, "mamba_ssm_dtype": str, "swa_full_tokens_ratio": float,
    "disable_hybrid_swa_memory": bool, "hicache_write_policy": str, "enable_prefill_delayer": bool,
    "prefill_delayer_max_delay_passes": int, "moe_a2a_backend": str, "all2all_backend": str,
}
# Knobs that take one of a few names
KNOB_CHOICES: dict[str, tuple[str, ...]] = {
    "mamba_ssm_dtype": ("fp32", "bf16"),
    "hicache_write_policy": ("write_through", "write_through_selective", "write_back"),
    "moe_a2a_backend": ("none", "deepep"),
    "all2all_backend": ("allgather_reducescatter", "deepep_high_throughput", "deepep_low_latency"),
}
# The knobs that choose DeepEP's all-to-all for a MoE layer's exchange under attention DP + EP, and whose they are
DEEPEP_KNOBS = {"moe_a2a_backend": "SGLang", "all2all_backend": "vLLM"}


def deepep_choice(values: dict[str, Any]) -> str | None:
    """The knob value that chooses DeepEP's all-to-all among `values` (SGLang's deepep, vLLM's deepep_high_throughput
    or deepep_low_latency), None where none does."""
    return next((str(values[knob]) for knob in DEEPEP_KNOBS if str(values.get(knob) or "").startswith("deepep")),
                None)


def takes_deepep(values: dict[str, Any]) -> bool:
    """Whether the knob values choose DeepEP's all-to-all."""
    return deepep_choice(values) is not None


# Each DeepEP knob's value for an instance's role, as a planner sets it: vLLM's docs pair deepep_high_throughput with
# multi-node prefill and deepep_low_latency with multi-node decode (serving/expert_parallel_deployment.md, "Backend
# Selection Guide"); a collocated instance steps decode-only batches most iterations (the low-latency kernels, which
# CUDA graphs capture). SGLang's one choice runs DeepEP's auto mode in every role (--deepep-mode auto).
DEEPEP_CHOICE = {"moe_a2a_backend": {"prefill": "deepep", "decode": "deepep", "collocated": "deepep"},
                 "all2all_backend": {"prefill": "deepep_high_throughput", "decode": "deepep_low_latency",
                                     "collocated": "deepep_low_latency"}}


# What each DeepEP choice allocates on every GPU (perf/deepep_buffers.py sizes it): SGLang (deepep, its auto mode)
# asks DeepEP for its NVLink size hint and the low-latency buffer for SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK
# tokens (default 128: srt/layers/moe/token_dispatcher/deepep.py DeepEPBuffer.get_deepep_buffer); vLLM
# (distributed/device_communicators/all2all.py) VLLM_DEEPEP_BUFFER_SIZE_MB (1,024 MiB) of NVLink buffer, the
# low-latency manager the low-latency buffer for VLLM_MOE_DP_CHUNK_SIZE (256) tokens a DP rank dispatches, the
# high-throughput one another 1,024 MiB of RDMA buffer across nodes. All read via the code search.
DEEPEP_BUFFERS = {
    "deepep": DeepEPBuffers(low_latency_tokens_per_rank=128),
    "deepep_low_latency": DeepEPBuffers(nvl_bytes=1024 * 2**20, low_latency_tokens_per_rank=256),
    "deepep_high_throughput": DeepEPBuffers(nvl_bytes=1024 * 2**20, internode_rdma_bytes=1024 * 2**20),
}


def deepep_fields(engine: str, role: str) -> dict[str, str]:
    """The knob and value with which `engine` runs a MoE layer's exchange as DeepEP's all-to-all in `role`
    (collocated, prefill, decode); {} for an engine without such a knob (TensorRT-LLM chooses its own)."""
    knobs = engine_knobs(engine)
    return {knob: choice[role] for knob, choice in DEEPEP_CHOICE.items() if knob in knobs}


# SGLang's --hicache-write-policy -> when a block reaches its host tier (EngineConfig.host_kv_write)
HICACHE_WRITES = {"write_through": "through", "write_through_selective": "selective", "write_back": "back"}
# Knobs whose allowed range is not the type's default (integers >= 1, numbers > 0): (lowest, highest)
KNOB_RANGES: dict[str, tuple[float, float]] = {
    "attention_dp_batching_wait_iters": (0, math.inf), "batch_wait_timeout_iters": (0, math.inf),
    "batch_wait_max_tokens_ratio": (0.0, 1.0), "swa_full_tokens_ratio": (0.01, 1.0),
    # SGLang lists every capture size up front (srt/server_args.py _generate_cuda_graph_batch_sizes,
    # _generate_piecewise_cuda_graph_tokens) and captures a graph at each at start-up: beyond these (128x its
    # largest default of 512 sequences, 64x a 16,384-token chunk) the lists alone exhaust memory (found by
    # benchmarks/fuzz_serve.py at 10^11: MemoryError), and no batch reaches them
    "cuda_graph_max_bs": (1, 65_536), "piecewise_cuda_graph_max_tokens": (1, 1_048_576),
}
GIB = 1024**3
SGLANG_REQUEST_POOL = 4096  # the most requests SGLang's request pool holds when max_running_requests is unset
# Knobs an engine reads per attention-DP rank, each rank scheduling its own sequences: vLLM's (--data-parallel-size:
# one engine core, with its own scheduler, per rank), TensorRT-LLM's (enable_attention_dp: one executor per rank;
# py_executor.py _balance_adp_requests compares each rank's own generation count with max_batch_size; AIConfigurator's
# and InferenceX's recipes write both per rank) and SGLang's --max-prefill-tokens (not divided by server_args.py);
# an instance holds attention_dp times as much. SGLang's --chunked-prefill-size and --max-running-requests are the
# instance's, divided over its ranks by SGLang itself.
PER_RANK_KNOBS = frozenset({"max_num_seqs", "max_num_batched_tokens", "max_batch_size", "max_num_tokens",
                            "max_prefill_tokens"})
# SGLang with --enable-dp-attention: schedule_conservativeness x 0.3 and chunked_prefill_size // dp_size per rank
SGLANG_DP_CONSERVATIVENESS = 0.3
SGLANG_DP_ATTENTION_SOURCE = (
    "sglang srt/server_args.py: with enable_dp_attention, schedule_conservativeness *= 0.3 and chunked_prefill_size "
    "//= dp_size ('DP attention is enabled. The chunked prefill size is adjusted to ... to avoid MoE kernel issues'); "
    "read via the code search in a v0.4-era __post_init__ and the v0.5-era _handle_data_parallelism, unchanged between")


@dataclass(slots=True, frozen=True)
class EngineConfig:
    """One engine as it runs on one GPU type: its scheduler, host profile and every knob in force."""

    engine: str  # preset key, e.g. 'vllm'
    version: str
    scheduler: str  # one of SCHEDULERS
    profile: EngineProfile  # host-side costs, CUDA-graph coverage, overlap
    max_seqs: int  # sequences one iteration may hold (running + prefilling)
    token_budget: int  # tokens one iteration may process
    chunked_prefill: bool  # a prompt may be split across iterations
    prefill_chunk_tokens: int  # largest prefill chunk (SGLang's chunked_prefill_size; else the budget)
    mixed_batches: bool  # prefill chunks share iterations with the decodes
    kv_admission: str  # greedy (prompt blocks) | reserve (prompt + whole output) | ratio (SGLang)
    preemption: str  # recompute (newest first) | retract (fewest decoded first) | none
    partial_prefills: int  # prompts that may be part-way through prefill at once
    new_token_ratio: tuple[float, float, int] = (0.0, 0.0, 1)  # SGLang: initial, floor, decay steps
    prefix_caching: bool = False  # shares cached prompt-prefix KV blocks between requests (sim/prefix_cache.py)
    # a host-memory KV tier (sim/prefix_cache.py HostTier; engine_presets.yaml): how a hit is copied back (async |
    # layerwise | serial; None: the engine has no such tier) and when a block is written there (through: as prompts
    # cache it; selective: at its second use; evict: as the GPU reclaims it, moved back out on a hit; back: as the GPU
    # reclaims it, the forward waiting for the write, kept on a hit)
    host_kv_load: str | None = None
    host_kv_write: str = "through"
    # what the deployment's memory_fraction is a fraction of (perf/memory.py memory_fit: total | static | free)
    memory_fraction_of: str = "total"
    recv_interval: int = 1  # SGLang: new requests reach the scheduler every N decode-only forwards (sim/recv_interval.py)
    # TensorRT-LLM holds context requests back (sim/context_wait.py): with attention DP and
    # attention_dp_config.enable_balance, (timeout_iters, batching_wait_iters); without attention DP, batch waiting
    # (batch_wait_timeout_iters, batch_wait_max_tokens_ratio). None: off (TensorRT-LLM's defaults)
    adp_balance: tuple[int, int] | None = None
    batch_wait: tuple[int, float] | None = None
    # SGLang's --enable-prefill-delayer (with attention DP; sim/prefill_delayer.py): its max delay passes. None: off
    prefill_delayer: int | None = None
    # SGLang's max_prefill_tokens: the prompt tokens one prefill batch takes in (schedulers/sglang.py); None elsewhere
    prefill_input_tokens: int | None = None
    # With attention data parallelism: the prompt tokens one rank's batch takes (SGLang: chunked_prefill_size // dp;
    # vLLM, TensorRT-LLM: the rank's own token budget); a prompt lives on one rank, so one step's chunk of it is at
    # most this. None: the batch budget alone (schedulers/base.py, schedulers/sglang.py)
    prefill_rank_tokens: int | None = None
    attention_dp: int = 1  # attention data-parallel ranks, each scheduling its own sequences
    # the memory fraction (of what memory_fraction_of names) when the deployment sets none: vLLM's
    # gpu_memory_utilization and TensorRT-LLM's free_gpu_memory_fraction default to 0.9; SGLang computes its
    # mem_fraction_static (sglang_memory_fraction)
    memory_fraction: float = 0.9
    knobs: dict[str, Any] = field(default_factory=dict)  # engine-named values in force
    source: str = ""
    # how a model with windowed layers holds its KV: the preset's `window_kv` rule (window_kv() reads it)
    window_kv_rule: dict[str, Any] = field(default_factory=dict)
    role: str = "collocated"  # the deployment role it was resolved for (collocated, prefill, decode)

    @property
    def label(self) -> str:
        return f"{self.engine}@{self.version}"

    def fraction(self, asked: float | None) -> float:
        """The memory fraction in force: the deployment's, else this engine's default (memory_fraction)."""
        return asked if asked is not None else self.memory_fraction


def engine_knobs(engine: str) -> tuple[str, ...]:
    """The knobs an engine has (a profile name or file behaves as vLLM V1)."""
    return tuple(preset_entry(engine)["knobs"])


# The generic caps a planner varies, and the knob each engine has for them (knob_values, cap_knob)
CAP_KNOBS = {"max_seqs": ("max_num_seqs", "max_running_requests", "max_batch_size"),
             "token_budget": ("max_num_batched_tokens", "chunk_size", "chunked_prefill_size", "max_num_tokens")}


def cap_knob(engine: str, generic: str) -> str:
    """The engine's knob for a generic cap (`max_seqs` or `token_budget`, CAP_KNOBS): vLLM's max_num_seqs, SGLang's
    max_running_requests, TensorRT-LLM's max_batch_size, ..."""
    own = engine_knobs(engine)
    return next(k for k in CAP_KNOBS[generic] if k in own)


def caps_per_rank(engine: str) -> bool:
    """Whether the engine reads its sequence cap and token budget per attention-DP rank (PER_RANK_KNOBS: vLLM's
    --max-num-seqs / --max-num-batched-tokens, TensorRT-LLM's max_batch_size / max_num_tokens), not per instance
    (SGLang's --max-running-requests / --chunked-prefill-size, which SGLang divides over the ranks itself)."""
    return cap_knob(engine, "max_seqs") in PER_RANK_KNOBS


def instance_seqs(engine: str, cap: int, attention_dp: int = 1) -> int:
    """The sequences an instance of `attention_dp` ranks holds at a sequence cap of `cap` as the engine's own flag
    reads it: attention_dp x cap where the flag is each rank's (caps_per_rank), cap where it is the instance's."""
    return cap * attention_dp if caps_per_rank(engine) else cap


def default_seq_cap(engine: str, hw: HardwareSpec, tp: int = 1) -> int | None:
    """The sequence cap the engine runs with when its flag is not given (the preset's default for this GPU: vLLM
    0.14's --max-num-seqs 1024 on a GPU of 70 GB or more, TensorRT-LLM 1.1's max_batch_size 2048), in the flag's
    own meaning (caps_per_rank); None where the engine derives it from its KV pool (SGLang's max_running_requests
    left unset: specs/engines.py _build)."""
    return resolve_engine(engine, hw, tp=tp).knobs.get(cap_knob(engine, "max_seqs"))


def knob_values(engine: str, max_seqs: int | None = None, token_budget: int | None = None,
                attention_dp: int = 1) -> dict[str, int]:
    """Generic caps in the engine's own knob names (for planners that vary them across engines). `attention_dp` > 1
    reads the caps as a whole instance's: a knob the engine reads per DP rank (PER_RANK_KNOBS) then gets the
    instance's value over the ranks (at least 1); at 1 (plan's use) each value is the flag's as the engine reads it."""
    out: dict[str, int] = {}
    for generic, value in (("max_seqs", max_seqs), ("token_budget", token_budget)):
        if value is not None:
            knob = cap_knob(engine, generic)
            out[knob] = rank_share(value, attention_dp) if knob in PER_RANK_KNOBS else int(value)
    return out


def rank_share(value: float, attention_dp: int) -> int:
    """One attention-DP rank's share of an instance-wide cap (at least 1)."""
    return max(1, int(value) // attention_dp)


def graph_knobs(engine: str, max_seqs: int, attention_dp: int = 1) -> dict[str, Any]:
    """The CUDA-graph knobs a deployment tuned for `max_seqs` decode sequences sets where the engine's default
    capture stops short of them: TensorRT-LLM captures up to 128 by default, and AIConfigurator's generator
    (trtllm.rule) and InferenceX's recipes set cuda_graph_config {max_batch_size: the batch, enable_padding: true},
    each attention-DP rank capturing its own batch. `max_seqs` is max_batch_size as the engine reads it (each
    rank's); `attention_dp` > 1 reads it as the whole instance's, as knob_values does. None for the other engines
    (vLLM and SGLang capture up to 512 by default)."""
    if "cuda_graph_max_batch_size" in engine_knobs(engine):
        return {"cuda_graph_max_batch_size": rank_share(max_seqs, attention_dp), "cuda_graph_padding_enabled": True}
    return {}


def _pick(rule: Any, hw: HardwareSpec, entry_point: str, tp: int = 1) -> Any:
    """A default's value for this GPU, entry point and tensor-parallel size (see the forms in engine_presets.yaml)."""
    if isinstance(rule, dict) and set(rule) <= set(ENTRY_POINTS):
        rule = rule[entry_point]
    if isinstance(rule, dict) and "by_memory_gib" in rule:
        for prefix, value in (rule.get("except") or {}).items():
            if hw.key.lower().startswith(prefix):
                return value
        gib = hw.memory_capacity_bytes / GIB
        for limit, value in rule["by_memory_gib"]:
            if limit is None or gib < limit:
                rule = value
                break
    if isinstance(rule, dict) and "from_tp_4" in rule:
        return rule["below_tp_4"] if tp < 4 else rule["from_tp_4"]
    if isinstance(rule, dict) and "value" in rule:
        return rule["value"]
    return rule


def memory_fraction_of(engine: str) -> str:
    """What a preset's memory fraction is a fraction of (`memory_fraction_of` in engine_presets.yaml, default
    total: vLLM): static (SGLang: the weights and KV pool), free (TensorRT-LLM: what the weights and activations
    leave); a profile name or file behaves as vLLM."""
    return preset_entry(engine).get("memory_fraction_of", "total")


def _window_kv_rule(engine: str) -> dict[str, Any]:
    return dict(preset_entry(engine).get("window_kv") or {})


def role_knobs(engine: str, role: str) -> dict[str, Any]:
    """The knob values a preset takes by default in a deployment role (`role_defaults` in engine_presets.yaml:
    TensorRT-LLM's context servers run without the overlap scheduler), which the user's knobs override."""
    return dict((preset_entry(engine).get("role_defaults") or {}).get(role) or {})


def resolve_engine(engine: str, hw: HardwareSpec, knobs: dict[str, Any] | None = None,
                   entry_point: str = "server", pp: int = 1, kv_capacity_tokens: int | None = None,
                   role: str = "collocated", speculative_draft: str | None = None,
                   attention_dp: int = 1, tp: int = 1, vision: VisionEncoder | None = None,
                   model_type: str | None = None, max_model_len: int | None = None) -> EngineConfig:
    """`engine` (preset[@version], a profile key, or a profile YAML) on `hw`, with the user's knobs, for an
    instance in `role` (collocated, prefill or decode); `speculative_draft` is the deployment's draft ('mtp' or a
    draft model id; None without speculative decoding); `attention_dp` its attention data-parallel ranks, `tp` its
    GPUs per pipeline stage (SGLang's defaults follow both); `vision` the model's vision encoder (SGLang lowers its
    default memory fraction for one); `model_type` the model's (config.json), for the knob defaults an engine sets
    for that model alone (the preset's `model_knob_defaults`: SGLang's 256 running requests for DeepSeek-V4);
    `max_model_len` the context the deployment serves (the model's: vLLM's max_model_len, SGLang's context_len),
    which vLLM's budget without chunked prefill and SGLang's request pool follow (None: not known)."""
    knobs = {k: v for k, v in (knobs or {}).items() if v is not None}
    if entry_point not in ENTRY_POINTS:
        raise PhasewiseError(f"entry_point '{entry_point}' is not one of {', '.join(ENTRY_POINTS)}")
    presets = packaged("engine_presets.yaml")["presets"]
    name, at, version = engine.partition("@")
    given = version if at else None  # `name@` gives an empty version: unknown, as any other (_version_table)
    key = name.lower()
    bare = False  # a host profile alone keeps its own CUDA-graph and overlap settings
    file_preset = engine_file_preset(name) if looks_like_path(name) else None
    if key in presets:
        entry = presets[key]
        profile = load_engine(entry["profile"])
    elif file_preset is not None:
        # a file that refines a preset: the preset as it runs, the file's host constants over its profile's
        preset, _, preset_version = file_preset.partition("@")
        entry, profile = presets[preset.lower()], load_engine(name)
        key, version = name, preset_version if given is None else given
    elif looks_like_path(engine) or key in packaged("engines.yaml")["engines"]:
        # A bare host profile (e.g. what `phasewise calibrate` writes): scheduled as its file says, else vLLM V1.
        profile = load_engine(engine)
        sched = _file_scheduler(engine) if looks_like_path(engine) else "vllm"
        entry = presets[sched]  # every scheduler has a preset of its own name
        key, version, bare = engine, entry["default_version"] if given is None else given, True
    else:
        raise unknown_engine(engine)
    if given is None:
        version = version or entry["default_version"]
    refusal = vendor_refusal(engine, hw)  # None for a bare profile: only presets name vendors
    if refusal:
        raise PhasewiseError(refusal)
    table = version_table(name, entry, version)
    allowed = entry["knobs"]
    for knob, value in knobs.items():
        if knob not in allowed:
            raise PhasewiseError(f"--{knob.replace('_', '-')} is not a knob of {name} "
                                 f"(its knobs: {', '.join('--' + k.replace('_', '-') for k in allowed)})")
        _check_knob(knob, value)
        fixed = table.get(knob)
        if isinstance(fixed, dict) and "fixed" in fixed and value != fixed["value"]:
            raise PhasewiseError(f"--{knob.replace('_', '-')}={value} is not possible on {name}@{version}: {fixed['fixed']}")
    values = {k: _pick(table[k], hw, entry_point, tp) for k in allowed if k in table}
    values.update({k: v for k, v in role_knobs(name, role).items() if k in allowed})
    model_defaults = (entry.get("model_knob_defaults") or {}).get(model_type) or {}
    values.update({k: v for k, v in model_defaults.items() if k in allowed})
    values.update(knobs)
    pipeline = table.get("pipeline_parallel") or {}  # what the version does beside PP > 1 (SGLang's rules)
    refusal = pipeline_rule_refusal(f"{name}@{version}", pipeline, pp, speculative_draft is not None,
                                bool(values.get("enable_mixed_chunk")))
    if refusal:
        raise PhasewiseError(refusal)
    # what the version does with speculative decoding (the table's `speculative`: SGLang's mixed chunk forced off and
    # its running requests capped where not given; its overlap scheduler below)
    speculating = (table.get("speculative") or {}) if speculative_draft is not None else {}
    if "enable_mixed_chunk" in speculating:
        if knobs.get("enable_mixed_chunk") and not speculating["enable_mixed_chunk"]:
            # SGLang srt/server_args.py (_handle_speculative_decoding; EAGLE, EAGLE3, NEXTN and STANDALONE): "Mixed
            # chunked prefill is disabled because of using eagle speculative decoding" (a warning, then off)
            raise PhasewiseError(f"--enable-mixed-chunk is not possible with speculative decoding (--spec-tokens) on "
                                 f"{name}@{version}: SGLang turns mixed chunks off under speculative decoding; drop "
                                 "one of them")
        values["enable_mixed_chunk"] = speculating["enable_mixed_chunk"]
    if "max_running_requests" in speculating and values.get("max_running_requests") is None:
        values["max_running_requests"] = speculating["max_running_requests"]
    if "piecewise_cuda_graph_max_tokens" in knobs and not values.get("enable_piecewise_cuda_graph"):
        raise PhasewiseError("--piecewise-cuda-graph-max-tokens sizes SGLang's piecewise CUDA graphs: it needs "
                             "--enable-piecewise-cuda-graph")
    _refuse_idle_knobs(knobs, values, attention_dp)
    if "async_scheduling" in table:
        values["async_scheduling"] = _async_scheduling(
            f"{name}@{version}", bool(_pick(table["async_scheduling"], hw, entry_point)),
            table.get("async_speculation", "none"), knobs.get("async_scheduling"), pp, speculative_draft)
    sched = entry["scheduler"]
    if sched in ("vllm", "shortest-prefill"):  # the version's EngineArgs fill the caps not given
        chunked = values.get("enable_chunked_prefill", True)
        if not chunked and max_model_len and "max_num_batched_tokens" in knobs:
            _refuse_short_unchunked_budget(knobs["max_num_batched_tokens"], max_model_len)
        values["max_num_batched_tokens"], values["max_num_seqs"] = vllm_batch_caps(
            table.get("batch_caps"), values["max_num_batched_tokens"], values["max_num_seqs"],
            "max_num_batched_tokens" in knobs, "max_num_seqs" in knobs, chunked, max_model_len)
    config = _build(key, version, sched, profile, values, table, hw, pp, kv_capacity_tokens, attention_dp,
                    max_model_len)
    config = replace(config, role=role)
    # the version runs speculative decoding (SGLang), or PP > 1 (SGLang: "Pipeline parallelism is incompatible with
    # overlap schedule"), without the overlap
    if speculating.get("overlap_scheduler") is False or (pp > 1 and pipeline.get("overlap_scheduler") is False):
        config = replace(config, profile=config.profile.model_copy(update={"overlap_scheduling": False}))
    if sched == "sglang":  # its --mem-fraction-static default: by the GPU's memory alone before PR #10975, then by
        # the chunk, the graphs and the layout (engine_presets.yaml `mem_fraction_static_rule`)
        fraction = sglang_memory_fraction_by_memory(hw.memory_capacity_bytes, tp, pp, attention_dp, speculative_draft) \
            if table.get("mem_fraction_static_rule") == "by_memory" else sglang_memory_fraction(
                hw.memory_capacity_bytes, values["chunked_prefill_size"], values["cuda_graph_max_bs"], tp, pp,
                attention_dp, speculative_draft)
        config = replace(config, memory_fraction=fraction * (
            1.0 if vision is None else sglang_vision_factor(vision.depth, vision.hidden_size)))
    if bare:
        config = replace(config, profile=profile)
    return config


def _refuse_idle_knobs(knobs: dict[str, Any], values: dict[str, Any], attention_dp: int) -> None:
    """A one-line error for a knob given where what it tunes is off, so it would change nothing: TensorRT-LLM's
    attention-DP balance runs only with attention DP and its batch waiting only without (_torch/pyexecutor/
    py_executor.py _schedule: `if self.enable_attention_dp and self.attention_dp_enable_balance:
    _balance_adp_requests`, then `if not self.enable_attention_dp and ...` the batch waiting; sim/context_wait.py),
    its attention_dp_config timeout_iters / batching_wait_iters only read with enable_balance (PyExecutor.__init__);
    SGLang's max delay passes only with its prefill delayer on."""
    if knobs.get("attention_dp_enable_balance") and attention_dp < 2:
        raise PhasewiseError("--attention-dp-enable-balance holds context requests until every attention-DP rank has "
                             "one: it needs --attention-dp of 2 or more (a mixture-of-experts model; without "
                             "attention DP TensorRT-LLM's waiting is --batch-wait-timeout-iters)")
    waiting = [k for k in ("batch_wait_timeout_iters", "batch_wait_max_tokens_ratio") if knobs.get(k)]
    if waiting and attention_dp > 1:
        raise PhasewiseError(f"--{waiting[0].replace('_', '-')} is TensorRT-LLM's batch waiting without attention DP: "
                             f"with --attention-dp {attention_dp} it waits by --attention-dp-enable-balance instead")
    for knob, engine in DEEPEP_KNOBS.items():
        if takes_deepep({knob: knobs.get(knob)}) and attention_dp < 2:
            raise PhasewiseError(f"--{knob.replace('_', '-')} {knobs[knob]} dispatches tokens between attention-DP "
                                 f"ranks' experts: it needs --attention-dp of 2 or more and --ep (without attention DP "
                                 f"{engine}'s MoE layers all-reduce over the tensor-parallel group)")
    needs = {"attention_dp_timeout_iters": "attention_dp_enable_balance",
             "attention_dp_batching_wait_iters": "attention_dp_enable_balance",
             "prefill_delayer_max_delay_passes": "enable_prefill_delayer"}
    for knob, switch in needs.items():
        if knob in knobs and not values.get(switch):
            raise PhasewiseError(f"--{knob.replace('_', '-')} needs --{switch.replace('_', '-')}: it tunes what that "
                                 "flag turns on, and alone would change nothing")


MAIN_PRESETS = ("vllm", "sglang", "trtllm")  # listed first where an engine name is unknown


def engine_names() -> tuple[list[str], list[str]]:
    """(every preset, vLLM, SGLang, TensorRT-LLM first; the host profiles that are not also presets), as
    engine_presets.yaml and engines.yaml list them: what --engine takes, for its errors and its help."""
    presets = list(packaged("engine_presets.yaml")["presets"])
    profiles = [name for name in packaged("engines.yaml")["engines"] if name not in presets]
    return [*MAIN_PRESETS, *(name for name in presets if name not in MAIN_PRESETS)], profiles


def unknown_engine(engine: str) -> PhasewiseError:
    """The one-line error for an engine name that is neither a preset, a host profile nor a file: the closest names
    (unknown_name), then every preset and the host profiles that are not also presets (engine_names), each once and
    none cut off."""
    ordered, profiles = engine_names()
    closest = str(unknown_name("engine", engine, ordered + profiles)).split(" (known: ", 1)[0]
    return PhasewiseError(f"{closest} (presets: {', '.join(ordered)}; host profiles: {', '.join(profiles)}; or an "
                          "engine YAML file)")


def _refuse_short_unchunked_budget(asked: int, max_model_len: int) -> None:
    """vLLM V1 with chunked prefill off refuses a --max-num-batched-tokens given below the served context
    (config/scheduler.py SchedulerConfig.verify_max_model_len), as a whole prompt must fit one step; the budget left
    unset follows the context (engine_defaults.py vllm_batch_caps)."""
    if asked < max_model_len:
        raise PhasewiseError(f"--max-num-batched-tokens ({asked}) is smaller than max_model_len ({max_model_len}, "
                             "the model's context) with chunked prefill off: vLLM refuses it, as a prompt must fit "
                             "one step (raise --max-num-batched-tokens or turn chunked prefill on)")


def sglang_request_pool(rank_kv_tokens: int, context_tokens: int | None) -> int:
    """The requests one SGLang scheduler's req_to_token pool holds when --max-running-requests is unset: its KV
    pool's tokens over the context x 512, kept within 2,048-4,096 (srt/model_executor/model_runner.py
    init_memory_pool, 0.4-0.5 era: `max_num_reqs = min(max(int(max_total_num_tokens / context_len * 512), 2048),
    4096)`; _resolve_max_num_reqs keeps it in later versions). The context unknown: the cap."""
    if not context_tokens:
        return SGLANG_REQUEST_POOL
    return min(max(int(rank_kv_tokens / context_tokens * 512), 2048), SGLANG_REQUEST_POOL)


def _async_scheduling(label: str, default: bool, speculation: str, asked: bool | None, pp: int,
                      speculative_draft: str | None) -> bool:
    """vLLM's async scheduling in force: the version's default, off with PP > 1 or a speculation it does not run
    beside (`async_speculation` in engine_presets.yaml: none, or eagle = EAGLE-family drafts incl. MTP); asked
    for (`--async-scheduling`) where vLLM refuses it or with PP > 1 (not modelled), a one-line error."""
    spec_ok = speculative_draft is None or (speculation == "eagle" and speculative_draft == "mtp")
    if asked:
        if pp > 1:
            raise PhasewiseError(f"--async-scheduling with pp={pp} is not modelled ({label}): vLLM's EngineArgs "
                                 "refuse it from the 0.11 era ('not supported with pipeline-parallel-size > 1')")
        if not spec_ok:
            runs_with = "no speculative decoding" if speculation == "none" else "EAGLE-family drafts (mtp) only"
            raise PhasewiseError(f"--async-scheduling is not possible on {label} with the draft "
                                 f"'{speculative_draft}': its async scheduling runs with {runs_with}")
        return True
    return asked is None and default and pp == 1 and spec_ok


def _check_knob(knob: str, value: Any) -> None:
    """A one-line error unless `value` has the knob's type and lies in its range."""
    want, flag = KNOB_TYPES[knob], f"--{knob.replace('_', '-')}"
    if want is str:
        if value not in KNOB_CHOICES[knob]:
            raise PhasewiseError(f"{flag} must be one of {', '.join(KNOB_CHOICES[knob])} (got {value!r})")
        return
    low, high = KNOB_RANGES.get(knob, (1, math.inf) if want is int else (0.0, math.inf))
    if want is bool and not isinstance(value, bool):
        raise PhasewiseError(f"{flag} must be true or false (got {value!r})")
    if want is int and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        allowed = f"from {low:g} to {high:,}" if math.isfinite(high) else f">= {low:g}"
        raise PhasewiseError(f"{flag} must be an integer {allowed} (got {value!r})")
    if want is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if knob in KNOB_RANGES and not (number and low <= value <= high):
            raise PhasewiseError(f"{flag} must be a number from {low:g} to {high:g} (got {value!r})")
        if knob not in KNOB_RANGES and not (number and value > 0):
            raise PhasewiseError(f"{flag} must be a number > 0 (got {value!r})")


def _file_scheduler(path: str) -> str:
    entry = next(iter((read_user_file(path, "engine").get("engines") or {None: {}}).values()), {}) or {}
    sched = entry.get("scheduler", "vllm") if isinstance(entry, dict) else "vllm"
    if sched not in SCHEDULERS:
        raise PhasewiseError(f"engine file '{path}': scheduler '{sched}' is not one of {', '.join(SCHEDULERS)}")
    return sched


def _build(key: str, version: str, sched: str, profile: EngineProfile, values: dict[str, Any], table: dict,
           hw: HardwareSpec, pp: int, kv_capacity_tokens: int | None, attention_dp: int = 1,
           max_model_len: int | None = None) -> EngineConfig:
    graphs: dict[str, Any] = {}
    if "cuda_graph_sizes" in table:
        graphs["cuda_graph_sizes"] = graph_sizes(table["cuda_graph_sizes"])
    if "cuda_graph_padding" in table:
        graphs["cuda_graph_padding"] = bool(table["cuda_graph_padding"])
    if values.get("mamba_ssm_dtype"):  # SGLang --mamba-ssm-dtype, vLLM --mamba-ssm-cache-dtype: the states' dtype
        graphs["recurrent_state_dtype"] = values["mamba_ssm_dtype"]
    # SGLang's --moe-a2a-backend deepep, vLLM's --all2all-backend deepep_*: DeepEP's all-to-all, FP8 where the GEMMs run
    # FP8 (the rule a profile naming no scheme takes), not their default BF16 gather
    choice = deepep_choice(values)
    if choice:
        graphs["moe_dispatch_bytes"] = {}
        graphs["moe_dispatch"] = "all_to_all"
        graphs["deepep_buffers"] = DEEPEP_BUFFERS[choice]
    if sched in ("vllm", "shortest-prefill"):  # shortest-prefill: vLLM V1's mechanics, another admission order
        budget, seqs = values["max_num_batched_tokens"], values["max_num_seqs"]
        sizes = graphs.get("cuda_graph_sizes", ())
        # vLLM caps capture sizes at min(2 x max_num_seqs, 512, budget) from 0.10 (PR #20628); before, at the budget
        # alone (the version's `graph_capture_cap: budget`, engine_presets.yaml)
        cap = budget if table.get("graph_capture_cap") == "budget" else min(2 * seqs, 512, budget)
        graphs["cuda_graph_sizes"] = tuple(s for s in sizes if s <= cap) or (1,)
        graphs["cuda_graph_mixed"] = True  # V1 piecewise graphs cover mixed batches by token count
        # the version's cudagraph_mode (engine_presets.yaml): PIECEWISE leaves attention outside the graphs for
        # decode-only batches too; FULL_AND_PIECEWISE replays full graphs (attention inside) for them
        graphs["cuda_graph_attention_eager"] = table.get("cudagraph_mode", "full_and_piecewise") == "piecewise"
        graphs["overlap_scheduling"] = bool(values.get("async_scheduling", False))
        chunked = values.get("enable_chunked_prefill", True)
        cfg = dict(max_seqs=seqs, token_budget=budget, chunked_prefill=chunked, prefill_chunk_tokens=budget,
                   mixed_batches=True, kv_admission="greedy", preemption="recompute",
                   partial_prefills=values.get("max_num_partial_prefills", 1))
    elif sched == "vllm-v0":
        cfg = dict(max_seqs=values["max_num_seqs"], token_budget=values["max_num_batched_tokens"],
                   chunked_prefill=False, prefill_chunk_tokens=values["max_num_batched_tokens"],
                   mixed_batches=False, kv_admission="greedy", preemption="recompute", partial_prefills=0)
    elif sched == "sarathi":
        cfg = dict(max_seqs=values["max_num_seqs"], token_budget=values["chunk_size"], chunked_prefill=True,
                   prefill_chunk_tokens=values["chunk_size"], mixed_batches=True, kv_admission="greedy",
                   preemption="recompute", partial_prefills=1 << 30)
    elif sched == "sglang":
        chunk = values["chunked_prefill_size"]
        running = values.get("max_running_requests")
        if running is None:
            # unset: each DP-attention rank's scheduler takes min(its KV pool's tokens // 2, its request pool)
            # (managers/tp_worker.py, 0.4-0.5 era: max_total_num_tokens // 2 unless given, capped at
            # req_to_token_pool.size; each rank has its own pool, sglang_request_pool), so the instance holds
            # attention_dp times that
            kv = kv_capacity_tokens if kv_capacity_tokens is not None else 2 * SGLANG_REQUEST_POOL * attention_dp
            rank_kv = kv // attention_dp
            context = max_model_len if kv_capacity_tokens is not None else None  # no KV pool known: the cap
            running = attention_dp * max(1, min(rank_kv // 2, sglang_request_pool(rank_kv, context)))
        # every size up to --cuda-graph-max-bs, none above the request pool (cuda_graph_runner.py keeps capture sizes
        # <= req_to_token_pool.size, max_running_requests)
        graphs["cuda_graph_sizes"] = tuple(range(1, min(values["cuda_graph_max_bs"], running) + 1))
        if values.get("enable_piecewise_cuda_graph"):
            graphs["piecewise_graph_tokens"] = sglang_piecewise_tokens(values["piecewise_cuda_graph_max_tokens"])
        conservativeness = values["schedule_conservativeness"]
        rank_chunk = None
        if attention_dp > 1:
            # --enable-dp-attention: SGLang reads --chunked-prefill-size as the whole instance's and gives each DP
            # rank's scheduler chunked_prefill_size // dp; it also scales schedule_conservativeness by 0.3
            # (srt/server_args.py, data-parallelism handling, v0.4-v0.5: see SGLANG_DP_ATTENTION_SOURCE)
            rank_chunk = chunk // attention_dp
            if rank_chunk < 1:
                raise PhasewiseError(f"--chunked-prefill-size ({chunk}) must be >= --attention-dp ({attention_dp}): "
                                     f"SGLang gives each attention-DP rank chunked_prefill_size // dp prompt tokens")
            conservativeness *= SGLANG_DP_CONSERVATIVENESS
        # the scheduler's init ratio and its floor each capped at 1.0, the floor taken from the capped init
        # (srt/managers/scheduler.py: min(init * conservativeness, 1.0), min(init_ratio * factor, 1.0))
        init_ratio = min(conservativeness * table["init_new_token_ratio"], 1.0)
        inputs = values["max_prefill_tokens"] * attention_dp  # --max-prefill-tokens is each DP rank's own
        cfg = dict(max_seqs=running, token_budget=max(inputs, chunk),
                   chunked_prefill=True, prefill_chunk_tokens=chunk, mixed_batches=values["enable_mixed_chunk"],
                   kv_admission="ratio", preemption="retract", partial_prefills=attention_dp,
                   prefill_rank_tokens=rank_chunk,
                   new_token_ratio=(init_ratio, min(init_ratio * table["min_new_token_ratio_factor"], 1.0),
                                    int(table["new_token_ratio_decay_steps"])),
                   recv_interval=int(values.get("scheduler_recv_interval", 1)),
                   prefill_input_tokens=int(inputs))
        if values.get("enable_prefill_delayer"):
            if attention_dp < 2:  # srt/managers/prefill_delayer.py asserts enable_dp_attention
                raise PhasewiseError("--enable-prefill-delayer holds a DP-attention rank's prefill until every rank "
                                     "has one: it needs --attention-dp of 2 or more (SGLang refuses it without)")
            cfg["prefill_delayer"] = int(values["prefill_delayer_max_delay_passes"])
    else:  # trtllm
        if "cuda_graph_max_batch_size" in values or "cuda_graph_padding_enabled" in values:
            padding = bool(values.get("cuda_graph_padding_enabled", graphs.get("cuda_graph_padding", False)))
            graphs["cuda_graph_sizes"] = trtllm_graph_sizes(values.get("cuda_graph_max_batch_size", 128), padding)
            graphs["cuda_graph_padding"] = padding
        chunked = values.get("enable_chunked_prefill", False)
        cfg = dict(max_seqs=values["max_batch_size"], token_budget=values["max_num_tokens"], chunked_prefill=chunked,
                   prefill_chunk_tokens=values["max_num_tokens"], mixed_batches=True, kv_admission="reserve",
                   preemption="none", partial_prefills=1)
        if "disable_overlap_scheduler" in values:
            graphs["overlap_scheduling"] = not values["disable_overlap_scheduler"]
        if values.get("attention_dp_enable_balance"):
            cfg["adp_balance"] = (values["attention_dp_timeout_iters"], values["attention_dp_batching_wait_iters"])
        if values.get("batch_wait_timeout_iters", 0) > 0 or values.get("batch_wait_max_tokens_ratio", 0) > 0:
            cfg["batch_wait"] = (values["batch_wait_timeout_iters"], values["batch_wait_max_tokens_ratio"])
    if sched in ("vllm", "sarathi", "shortest-prefill") and cfg["token_budget"] < cfg["max_seqs"]:
        # before the attention-DP totals below: the flags (and vLLM's own check) are each rank's
        name = "chunk_size" if sched == "sarathi" else "max_num_batched_tokens"
        raise PhasewiseError(f"--{name.replace('_', '-')} ({cfg['token_budget']}) must be >= --max-num-seqs "
                             f"({cfg['max_seqs']}): a step's decodes alone would use the whole budget and "
                             f"prefills would starve (vLLM enforces the same)")
    if attention_dp > 1 and sched in ("vllm", "shortest-prefill", "trtllm"):
        # each rank schedules its own sequences within its own caps (PER_RANK_KNOBS): the instance's step holds the
        # ranks' batches together, a prompt (on one rank) at most one rank's budget a step
        rank_budget = cfg["token_budget"]
        cfg.update(max_seqs=cfg["max_seqs"] * attention_dp, token_budget=rank_budget * attention_dp,
                   prefill_chunk_tokens=cfg["prefill_chunk_tokens"] * attention_dp,
                   partial_prefills=cfg["partial_prefills"] * attention_dp, prefill_rank_tokens=rank_budget)
    if graphs:
        profile = profile.model_copy(update=graphs)
    source = str(table.get("source", ""))
    if sched == "sglang" and attention_dp > 1:
        source = f"{source}; {SGLANG_DP_ATTENTION_SOURCE}"
    return EngineConfig(key, version, sched, profile, knobs=values, source=source,
                        attention_dp=attention_dp,
                        prefix_caching=bool(table.get("prefix_caching", False)),
                        host_kv_load=table.get("host_kv_load", preset_entry(key).get("host_kv_load")),  # by version
                        host_kv_write=HICACHE_WRITES[values["hicache_write_policy"]] if values.get(
                            "hicache_write_policy") else str(preset_entry(key).get("host_kv_write", "through")),
                        memory_fraction_of=memory_fraction_of(key), window_kv_rule=_window_kv_rule(key), **cfg)
