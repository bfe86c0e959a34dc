"""EngineConfig, one engine as it runs on one GPU type (its scheduler, host profile and every knob in force), and
build_engine_config, which turns a version's table and the knob values (specs/engines.py resolve_engine) into one:
each scheduler's caps, chunking, admission and CUDA-graph captures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.engine_deepep import DEEPEP_BUFFERS, deepep_choice
from phasewise.specs.engine_defaults import graph_sizes, sglang_piecewise_tokens, trtllm_graph_sizes
from phasewise.specs.engine_presets import preset_entry
from phasewise.specs.hardware import EngineProfile, HardwareSpec

SCHEDULERS = ("vllm", "vllm-v0", "sarathi", "sglang", "trtllm", "shortest-prefill")
# SGLang's --hicache-write-policy -> when a block reaches its host tier (EngineConfig.host_kv_write)
HICACHE_WRITES = {"write_through": "through", "write_through_selective": "selective", "write_back": "back"}
SGLANG_REQUEST_POOL = 4096  # the most requests SGLang's request pool holds when max_running_requests is unset
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


def memory_fraction_of(engine: str) -> str:
    """What a preset's memory fraction is a fraction of (`memory_fraction_of` in engine_presets.yaml, default
    total: vLLM): static (SGLang: the weights and KV pool), free (TensorRT-LLM: what the weights and activations
    leave); a profile name or file behaves as vLLM."""
    return preset_entry(engine).get("memory_fraction_of", "total")


def _window_kv_rule(engine: str) -> dict[str, Any]:
    return dict(preset_entry(engine).get("window_kv") or {})


def sglang_request_pool(rank_kv_tokens: int, context_tokens: int | None) -> int:
    """The requests one SGLang scheduler's req_to_token pool holds when --max-running-requests is unset: its KV
    pool's tokens over the context x 512, kept within 2,048-4,096 (srt/model_executor/model_runner.py
    init_memory_pool, 0.4-0.5 era: `max_num_reqs = min(max(int(max_total_num_tokens / context_len * 512), 2048),
    4096)`; _resolve_max_num_reqs keeps it in later versions). The context unknown: the cap."""
    if not context_tokens:
        return SGLANG_REQUEST_POOL
    return min(max(int(rank_kv_tokens / context_tokens * 512), 2048), SGLANG_REQUEST_POOL)


def build_engine_config(key: str, version: str, sched: str, profile: EngineProfile, values: dict[str, Any],
                        table: dict, hw: HardwareSpec, pp: int, kv_capacity_tokens: int | None, attention_dp: int = 1,
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
