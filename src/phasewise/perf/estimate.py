"""`phasewise estimate`: prefill latency, one decode step and memory fit for one configuration."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

from phasewise.errors import PhasewiseError, refuse_empty
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel, IterationCost
from phasewise.perf.deepep_buffers import exchange_buffer_bytes
from phasewise.perf.expert_load import with_routing_skew
from phasewise.perf.mapping import MappedCost, MappedIteration, MappedPhases
from phasewise.perf.memory import (
    MemoryFit,
    compressed_kv_pool,
    kv_pool_sequences,
    kv_sequence_tokens,
    kv_state_pages,
    memory_fit,
    profile_batch,
)
from phasewise.perf.parallel import parallel_layout
from phasewise.perf.shared_block_pool import SharedBlockPool
from phasewise.perf.startup import StartupEstimate, startup_estimate
from phasewise.perf.window_kv import (
    kv_window_terms,
    slot_state_bytes,
    vllm_group_size,
    vllm_kv_cache_groups,
    window_pool_tokens,
)
from phasewise.perf.window_pages import WindowPages
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import engine_kv, kv_block, recurrent_state_in_kv_pool, window_kv
from phasewise.specs.engines import resolve_engine
from phasewise.specs.mappings import load_mapping


@dataclass(slots=True)
class Estimate:
    cost_model: CostModel
    batch: int
    prompt_len: int
    context_len: int
    prefill: IterationCost  # the whole batch of prompts as one iteration
    decode: IterationCost  # one decode step of the batch at context_len cached tokens
    memory: MemoryFit
    mapped: MappedPhases | None = None  # --mapping: the prefill and decode step on the chip's substrates
    memory_fraction: float = 0.9  # the fraction in force (the asked one, else the engine's default)
    # how the engine holds windowed layers' KV (specs/engine_kv.py window_kv) and its kv_window_terms
    window_kv_layout: str = "per_sequence"
    kv_terms: tuple[float, float, int, bool] = (1.0, 0.0, 0, False)
    window_pool_tokens: tuple[int, int] | None = None  # window_pool: (full-pool, window-pool) tokens per attention rank
    # (block, state tokens) of the pool: the engine's KV block (raised for a hybrid's states kept in the KV pool,
    # vLLM V1), the states' worth per sequence (perf/memory.py kv_state_pages)
    kv_pages: tuple[int, float] = (1, 0.0)
    # image inputs (--images-per-request): the images of one sequence and the encoder's forward over the batch's
    images: dict[str, Any] | None = None
    startup: StartupEstimate | None = None  # the instance's start-up (perf/startup.py)
    # how the engine holds DeepSeek-V4's windows (perf/memory.py compressed_kv_pool): vLLM's shared block pool with
    # its start-up figures, or TensorRT-LLM's window pages
    kv_pool: dict[str, Any] | None = None
    context_given: bool = False  # whether estimate() was given context_len (beyond_context names it then)

    def beyond_context(self) -> str | None:
        """Why an engine refuses this request, where its prompt or its decode step's cached context is past the
        model's context (max_position_embeddings; 0: unknown), as `phasewise estimate`, simulate (sim/request_entry.py)
        and plan (plan/goodput.py) refuse it (vLLM's max_model_len check); None within it. A prompt of exactly the
        context is kept: its prefill is what is asked, though its decode step's token would be one past it."""
        model = self.cost_model.model
        limit = model.max_position_embeddings
        if not limit or max(self.prompt_len, self.context_len) <= limit:
            return None
        if self.context_given and self.context_len > limit:
            what = f"--context-len {self.context_len:,}"
        elif self.images:
            what = (f"--prompt-len {self.images['text_prompt_len']:,} with its images' "
                    f"{self.prompt_len - self.images['text_prompt_len']:,} tokens")
        else:
            what = f"--prompt-len {self.prompt_len:,}"
        return (f"{what} is beyond {model.name}'s {limit:,}-token context (max_position_embeddings): the engines "
                "refuse such a request, as simulate and plan do")

    def to_dict(self) -> dict[str, Any]:
        cm = self.cost_model
        ridge = cm.hw.ridge_flops_per_byte(cm.quant.compute_dtype)
        context = max(self.context_len + 1, 1)
        per_sequence_kv = math.ceil(kv_sequence_tokens(context, self.kv_terms, self.kv_pages))

        def phase(it: IterationCost, tokens: int) -> dict[str, Any]:
            return {
                "latency_ms": it.latency_s * 1e3,
                "stage_ms": it.stage_s * 1e3,
                "host_overhead_ms": it.host_s * 1e3,
                "flops": it.flops,
                "bytes": it.bytes,
                "arithmetic_intensity": it.flops / it.bytes if it.bytes else 0.0,
                "tokens_per_s": tokens / it.latency_s,
                "bound": it.bound,
            }

        def ops(it: IterationCost) -> list[dict[str, Any]]:
            return [
                {"name": o.name, "count": o.count, "time_ms": o.time_s * 1e3, "compute_ms": o.compute_s * 1e3,
                 "memory_ms": o.memory_s * 1e3, "dispatch_ms": (o.dispatch_s + o.launch_s) * 1e3,
                 "flops": o.flops, "bytes": o.bytes, "arithmetic_intensity": o.arithmetic_intensity,
                 "bound": o.bound}
                for o in it.operators
            ]

        mem = self.memory
        return {
            "model": cm.model.name,
            "hardware": cm.hw.key,
            "engine": cm.engine.name,
            "precision": cm.quant.name,
            "compute_dtype": cm.quant.compute_dtype,
            # the routed experts' own scheme and its compute dtype on this chip, where they are stored apart
            "expert_compute_dtype": cm.expert_quant.compute_dtype if cm.expert_quant is not None else None,
            "kv_dtype": cm.quant.kv_dtype,
            "tp": cm.tp,
            "pp": cm.pp,
            "ep": cm.layout.ep,
            "moe_tp": cm.layout.moe_tp,
            "attention_dp": cm.layout.attention_dp,
            "batch": self.batch,
            "prompt_len": self.prompt_len,
            "context_len": self.context_len,
            "ridge_flops_per_byte": ridge,
            **self._figures(phase(self.prefill, self.batch * self.prompt_len), phase(self.decode, self.batch)),
            "operators": {"prefill": ops(self.prefill), "decode": ops(self.decode)},
            "fits": mem.fits,
            # past the model's context (only then: `phasewise estimate` refuses it, refuse_beyond_context)
            **({"beyond_context": why} if (why := self.beyond_context()) else {}),
            "memory": {
                "fits": mem.fits,
                "reason": mem.reason(),
                "capacity_bytes": mem.capacity_bytes,
                "usable_bytes": mem.usable_bytes,
                "weight_bytes": mem.weight_bytes,
                # a multimodal checkpoint's vision encoder, held beside the language model (never run for text)
                "encoder_params": cm.model.encoder_params,
                "activation_bytes": mem.activation_bytes,
                "reserved_bytes": mem.reserved_bytes,
                # one token's KV on the layers that hold every token (a windowed stack's full layers only; with
                # every layer windowed, all of them): the unit of kv_capacity_tokens (kv_token_unit: those layers)
                "kv_bytes_per_token": mem.kv_bytes_per_token,
                "kv_token_unit": self._token_unit(),
                "kv_capacity_tokens": mem.kv_capacity_tokens,
                "kv_block_tokens": mem.kv_block_tokens,
                # vLLM's start-up "GPU KV cache size" for this pool (None: another engine, or vLLM's shared pool)
                "engine_kv_cache_tokens": self._engine_kv_cache_tokens(),
                "kv_needed_tokens": mem.kv_needed_tokens,
                "recurrent_state_bytes_per_sequence": mem.state_bytes_per_sequence,
                "recurrent_state_bytes": mem.state_bytes,
                "recurrent_state_seats": mem.state_seats,
                # the states taken from the KV pool by each running sequence (vLLM V1), nothing held apart
                "recurrent_state_in_kv_pool": mem.state_in_kv_pool,
                # held for the engine's request slots beside the KV pool (SGLang's DeepSeek-V4 HCA compressor rings)
                "slot_state_bytes": mem.slot_bytes,
                # its KV block there: the attention block raised to one state's page (None: the engine's own)
                "hybrid_kv_block_tokens": self.kv_pages[0] if mem.state_in_kv_pool else None,
                # at this context, windowed layers' share and a state kept in the KV pool included
                "kv_tokens_per_sequence": per_sequence_kv,
                # how the engine holds windowed layers' KV (perf/window_kv.py kv_window_terms); None: no windows
                "window_kv_layout": self.window_kv_layout if cm.model.sliding_window else None,
                # window_pool: the two pools' tokens per attention rank, as SGLang logs them at start-up
                "window_pool_tokens": list(self.window_pool_tokens) if self.window_pool_tokens else None,
                # the KV pool's (in whole blocks), the state pool's seats and the engine's max sequences, the least
                "max_batch_at_context": min(kv_pool_sequences(mem.kv_capacity_tokens, context, self.kv_terms,
                                                              self.kv_pages),
                                            mem.state_seats if mem.state_seats is not None else 1 << 62,
                                            mem.max_sequences if mem.max_sequences is not None else 1 << 62),
                "max_batch_bound_by": self._batch_bound(context),
                "engine_max_sequences": mem.max_sequences,
                # the KV pool a prefill chunk's window blocks hold (vLLM's DeepSeek-V4 pool), kept free
                "chunk_window_bytes": mem.chunk_window_bytes,
                "compressed_kv_pool": self.kv_pool,
            },
            **({"mapping": mapped_dict(self.mapped)} if self.mapped else {}),
            **({"images": self.images} if self.images else {}),
            **({"startup": self.startup.to_dict()} if self.startup else {}),
        }

    def _token_unit(self) -> str:
        """The layers one of kv_capacity_tokens holds a token's KV on: every layer holding KV, or the full layers only
        of a stack whose other layers keep a window (their KV per sequence: kv_tokens_per_sequence)."""
        model = self.cost_model.model
        if model.window_layer_share and not model.window_all_layers and self.kv_terms[1]:
            return f"its {model.full_kv_layers} full-attention layers (windowed layers' KV counted per sequence)"
        return "every layer holding KV"

    def _engine_kv_cache_tokens(self) -> int | None:
        """vLLM's start-up "GPU KV cache size" for this pool: its blocks over its KV cache groups x the block
        (v1/core/kv_cache_utils.py _report_kv_cache_config: num_blocks // len(kv_cache_groups) x block_size; a
        windowed stack's groups: perf/window_kv.py vllm_kv_cache_groups), on one attention rank summed over them.
        None for another engine, a hybrid's states in the pool or DeepSeek-V4's pool (kv_pool's own figures)."""
        if self.window_kv_layout != "layer_groups" or self.kv_pool or self.memory.state_in_kv_pool:
            return None
        model = self.cost_model.model
        block = self.kv_pages[0]
        groups = vllm_kv_cache_groups(model)
        if groups == 1:
            return self.memory.kv_capacity_tokens // block * block
        # a block holds one group's layers, kv_capacity_tokens' unit all the full layers
        size = vllm_group_size(model.full_kv_layers, model.window_kv_layers)
        blocks = int(self.memory.kv_capacity_tokens * model.full_kv_layers / size) // block
        return blocks // groups * block

    def _batch_bound(self, context: int) -> str:
        """Which cap max_batch_at_context is: the KV pool's, the recurrent-state pool's seats, the engine's."""
        mem = self.memory
        kv = kv_pool_sequences(mem.kv_capacity_tokens, context, self.kv_terms, self.kv_pages)
        caps = {"kv_pool": kv, "state_seats": mem.state_seats, "engine_max_sequences": mem.max_sequences}
        return min((v, k) for k, v in caps.items() if v is not None)[1]

    def _figures(self, prefill: dict[str, Any], decode: dict[str, Any]) -> dict[str, Any]:
        """The prefill and decode step's figures: with --mapping the mapped ones (the substrates' iterations with the
        engine's host work), the roofline's kept under `unmapped`; else the roofline's (`prefill`, `decode`: their
        phase dicts)."""
        roofline = {"prefill_ms": prefill["latency_ms"], "decode_step_ms": decode["latency_ms"],
                    "prefill": prefill, "decode": decode}
        m = self.mapped
        if m is None:
            return roofline
        mapped = {"prefill": mapped_phase(m.prefill, m.prefill_s, m.prefill_host_s, self.batch * self.prompt_len),
                  "decode": mapped_phase(m.decode, m.decode_s, m.decode_host_s, self.batch)}
        return {"prefill_ms": mapped["prefill"]["latency_ms"], "decode_step_ms": mapped["decode"]["latency_ms"],
                **mapped, "unmapped": roofline}


def refuse_beyond_context(est: Estimate) -> None:
    """A one-line error where the estimate's request is past the model's context (Estimate.beyond_context): what
    `phasewise estimate` refuses, which estimate() reports instead (a run's own max_model_len may serve it:
    perf/fit.py)."""
    refusal = est.beyond_context()
    if refusal:
        raise PhasewiseError(refusal)


def mapped_phase(it: MappedIteration, latency_s: float, host_s: float, tokens: int) -> dict[str, Any]:
    """A mapped iteration's figures in the form of Estimate.to_dict's phase dicts."""
    return {"latency_ms": latency_s * 1e3, "stage_ms": latency_s * 1e3, "host_overhead_ms": host_s * 1e3,
            "flops": it.flops, "bytes": it.bytes, "arithmetic_intensity": it.flops / it.bytes if it.bytes else 0.0,
            "tokens_per_s": tokens / latency_s, "bound": it.bound(host_s)}


def estimate(model: str, hardware: str, *, tp: int = 1, pp: int = 1, precision: str | None = None,
             kv_dtype: str | None = None, engine: str = "vllm", batch: int = 1, prompt_len: int = 1024,
             context_len: int | None = None, memory_fraction: float | None = None, mapping: str | None = None,
             ep: int | None = None, moe_tp: int | None = None, attention_dp: int | None = None,
             moe_imbalance: float | None = None, routing_skew: float | None = None, images_per_sequence: int = 0,
             image_px: tuple[int, int] | None = None, weights_read_gbps: float | None = None,
             compile_cache: str | None = None, knobs: dict[str, Any] | None = None) -> Estimate:
    """Prefill of `batch` prompts of `prompt_len` tokens, and one decode step at `context_len` (with attention
    data parallelism, `batch` is the instance's, spread over its attention ranks); `routing_skew`: the traffic's
    MoE routing skew in place of the model's (perf/expert_load.py); `images_per_sequence` images of `image_px`
    (width, height) in each prompt: their tokens added to it, the vision encoder's forward over them reported;
    `weights_read_gbps` and `compile_cache` the instance's start-up (perf/startup.py); `knobs` the engine's flags
    that change an iteration's cost or memory (the MoE exchange's: SGLang's moe_a2a_backend, vLLM's all2all_backend),
    checked as simulate checks them. Arguments of the wrong type or range are one-line errors naming them; a
    request past the model's context and a model that does not fit are reported, not refused (as `phasewise
    estimate` refuses them): Estimate.beyond_context() (refuse_beyond_context raises it) and memory.fits /
    memory.reason() ("fits", "beyond_context" in to_dict)."""
    for flag, value in (("--model", model), ("--hardware", hardware), ("--engine", engine)):
        if not isinstance(value, str):
            raise PhasewiseError(f"{flag} must be a name or a file's path (got {value!r})")
    refuse_empty(dict(model=model, hardware=hardware, precision=precision, kv_dtype=kv_dtype, engine=engine,
                      mapping=mapping))
    for flag, value, low in (("--tp", tp, 1), ("--pp", pp, 1), ("--batch", batch, 1), ("--prompt-len", prompt_len, 1),
                             ("--context-len", context_len, 0),
                             ("images_per_sequence (--images-per-request)", images_per_sequence, 0)):
        if value is None and flag == "--context-len":
            continue
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
            raise PhasewiseError(f"{flag} must be an integer >= {low} (got {value!r})")
        if value < low and flag not in ("--tp", "--pp"):  # theirs: perf/parallel.py's, as every command's
            raise PhasewiseError(f"{flag} must be >= {low} (got {value})")
    if images_per_sequence and image_px is None:
        raise PhasewiseError(f"images_per_sequence {images_per_sequence} needs image_px (width, height) in pixels "
                             "(--image-size WxH)")
    if image_px is not None and not images_per_sequence:
        raise PhasewiseError("image_px sizes the images of images_per_sequence (--images-per-request), which is 0 "
                             "here: give images_per_sequence >= 1 or leave image_px out")
    if image_px is not None and not (isinstance(image_px, (tuple, list)) and len(image_px) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in image_px)):
        raise PhasewiseError(f"image_px must be (width, height), two integers of pixels (got {image_px!r})")
    if memory_fraction is not None and not 0 < memory_fraction <= 1:
        raise PhasewiseError(f"--memory-fraction must be in (0, 1] (got {memory_fraction})")
    spec = with_routing_skew(load_model(model), routing_skew)
    hw = load_hardware(hardware)
    quant = load_quant(precision or spec.default_precision, kv_dtype)
    layout = parallel_layout(spec, tp, ep, moe_tp, attention_dp, moe_imbalance)
    # the model's context, as simulate resolves it (sim/simulate.py _build_group): vLLM's budget without chunked
    # prefill and SGLang's request pool follow it
    context_tokens = spec.max_position_embeddings or None
    config = resolve_engine(engine, hw, knobs, pp=pp, attention_dp=layout.attention_dp, tp=tp, vision=spec.vision,
                            model_type=spec.model_type, max_model_len=context_tokens)
    # the engine's "auto" KV dtype where it is not the precision's (SGLang's DSA models), and its sparse layout
    quant = engine_kv(quant, config, spec, hw, asked_kv_dtype=kv_dtype is not None)
    cm = CostModel(spec, hw, quant, config.profile, tp, pp, layout)  # a preset's host profile
    startup = startup_estimate(cm, config, weights_read_gbps, compile_cache)
    window = spec.window_all_layers
    images = None
    if images_per_sequence:
        geometry = spec.image_geometry(*image_px)
        image_tokens = images_per_sequence * geometry.prompt_tokens
        encoded = cm.encoder((geometry.patches,), copies=images_per_sequence * batch)
        images = {"per_sequence": images_per_sequence, "size_px": list(image_px),
                  "resized_px": list(geometry.resized_px), "patches_per_image": geometry.patches,
                  "prompt_tokens_per_image": geometry.prompt_tokens, "text_prompt_len": prompt_len,
                  "encoder_ms": encoded.time_s * 1e3, "encoder_flops": encoded.flops, "encoder_bytes": encoded.bytes}
        prompt_len += image_tokens
    context_given = context_len is not None
    if context_len is None:
        context_len = prompt_len
    prefill = cm.iteration(BatchShape.uniform(batch, prompt_len, 0, spec.causal, window))
    if images is not None:
        images["prefill_with_encoder_ms"] = images["encoder_ms"] + prefill.latency_s * 1e3
    # A decode step at zero context is the first token after an empty prompt: one new token, no cache.
    decode = cm.iteration(BatchShape.uniform(batch, 1, context_len, spec.causal, window))
    per_seq = max(prompt_len, context_len + 1)
    window_layout, pool_ratio = window_kv(config, spec, hw)
    kv_terms = kv_window_terms(spec, window_layout, pool_ratio, attention_tp=layout.attention_tp, quant=quant)
    in_pool = recurrent_state_in_kv_pool(config, spec)  # vLLM V1: each sequence's state taken from the KV pool
    # the pool's block: the engine's (a latent-attention kernel's where it forces one), raised for a hybrid's states
    pages = kv_state_pages(config, spec, quant, tp // layout.attention_dp, pp, kv_block(config, spec, hw, None)[0])
    pool = compressed_kv_pool(config, spec, quant, pp)  # DeepSeek-V4's windows under vLLM and TensorRT-LLM
    needed = batch * math.ceil(kv_sequence_tokens(per_seq, kv_terms, pages))
    # the pool as the engine sizes it at start-up, whatever this batch (perf/memory.py profile_batch: simulate's)
    max_tokens, max_seqs = profile_batch(config)
    mem = memory_fit(spec, hw, quant, tp, pp, max_tokens=max_tokens, max_seqs=max_seqs,
                     kv_needed_tokens=needed, memory_fraction=config.fraction(memory_fraction), layout=layout,
                     fraction_of=config.memory_fraction_of, state_dtype=config.profile.recurrent_state_dtype,
                     state_pool_ratio=config.profile.recurrent_state_pool_ratio, state_in_kv_pool=in_pool,
                     slot_bytes=slot_state_bytes(spec, window_layout, math.ceil(config.max_seqs / layout.attention_dp)),
                     kv_pool=pool, buffer_bytes=exchange_buffer_bytes(config.profile, spec, layout),
                     engine=config.profile)
    if config.scheduler == "sglang" and not (knobs or {}).get("max_running_requests"):
        # SGLang's default max running requests follows the KV pool's size (as simulate resolves it)
        config = resolve_engine(engine, hw, knobs, pp=pp, kv_capacity_tokens=mem.kv_capacity_tokens,
                                attention_dp=layout.attention_dp, tp=tp, vision=spec.vision,
                                model_type=spec.model_type, max_model_len=context_tokens)
    mem = replace(mem, kv_block_tokens=pages[0], sequences=batch, max_sequences=config.max_seqs)
    mapped = mapped_phases(cm, mapping, batch, prompt_len, context_len) if mapping else None
    pools = (window_pool_tokens(mem.kv_capacity_tokens // layout.attention_dp, kv_terms, pool_ratio)
             if kv_terms[3] else None)  # a pooled layout (a stack of sliding layers only holds no full pool)
    return Estimate(cm, batch, prompt_len, context_len, prefill, decode, mem, mapped, config.fraction(memory_fraction),
                    window_layout, kv_terms, pools, pages, images, startup,
                    kv_pool_figures(pool, mem, spec.max_position_embeddings, config.token_budget,
                                    layout.attention_dp) if pool else None, context_given)


def kv_pool_figures(pool: SharedBlockPool | WindowPages, mem: MemoryFit, max_model_len: int, token_budget: int,
                    attention_dp: int) -> dict[str, Any]:
    """How the engine holds DeepSeek-V4's windows on one attention rank: its block or page, what a sequence holds
    for its windows and this batch's prefill chunk beside (mem.chunk_window_bytes); for vLLM's pool also
    block_pool_figures."""
    common = {"layout": "block_pool" if isinstance(pool, SharedBlockPool) else "window_pages",
              "block_tokens": pool.block_tokens, "bytes_per_token": pool.bytes_per_token,
              "sequence_window_bytes": pool.sequence_window_bytes, "chunk_window_bytes": mem.chunk_window_bytes}
    if isinstance(pool, WindowPages):
        return common
    return {**common, **block_pool_figures(pool, mem, max_model_len, token_budget, attention_dp)}


def block_pool_figures(pool: SharedBlockPool, mem: MemoryFit, max_model_len: int, token_budget: int,
                       attention_dp: int) -> dict[str, Any]:
    """vLLM's DeepSeek-V4 pool on one attention rank and the figures its start-up prints: the pool's blocks (the KV
    memory over a block's bytes), "Maximum concurrency for max_model_len tokens per request" (blocks over one such
    request's with a chunk of a rank's max_num_batched_tokens in flight: SharedBlockPool.request_blocks; every
    attention rank's summed, as DP8's 156.9x in vLLM issue #51454 reads), "GPU KV cache size" (that x max_model_len), and,
    where one such request does not fit, the longest that does (its "estimated maximum model length")."""
    pool_bytes = mem.kv_free_bytes + mem.chunk_window_bytes  # vLLM keeps nothing back: a chunk waits for blocks
    blocks = max(int(pool_bytes // pool.block_bytes), 0)
    token_budget = math.ceil(token_budget / attention_dp)  # each attention rank's engine core batches its own
    request = pool.request_blocks(max_model_len, token_budget)
    concurrency = blocks / request * attention_dp
    return {"block_bytes": pool.block_bytes, "layer_tuples": pool.layer_tuples, "blocks_per_rank": blocks,
            "window_blocks_per_sequence": pool.window_blocks(),
            "chunk_window_blocks": round(mem.chunk_window_bytes / pool.block_bytes),  # this batch's prefill chunk
            "max_model_len": max_model_len, "max_num_batched_tokens": token_budget,
            "request_blocks_at_max_model_len": request, "max_concurrency": concurrency,
            "kv_cache_tokens": int(concurrency * max_model_len),
            "longest_request": (max_model_len if request <= blocks else
                                pool.longest_request(pool_bytes, token_budget, max_model_len))}


def mapped_phases(cm: CostModel, mapping: str, batch: int, prompt_len: int, context_len: int) -> MappedPhases:
    """The prefill and the decode step of estimate() with each operator on the substrate `mapping` gives it, and the
    engine's host work with each as CostModel adds it to an iteration (as simulate's MappedCostModel.fast does)."""
    mapped = MappedCost(cm, load_mapping(mapping))
    model = cm.model
    shapes = (BatchShape.uniform(batch, prompt_len, 0, model.causal, model.window_all_layers),
              BatchShape.uniform(batch, 1, context_len, model.causal, model.window_all_layers))
    prefill, decode = mapped.iteration(shapes[0], "prefill"), mapped.iteration(shapes[1], "decode")
    prefill_host_s, decode_host_s = cm.host_s(shapes[0]), cm.host_s(shapes[1])
    return MappedPhases(mapped.mapping.name, prefill, decode, cm.hw.tdp_w, prefill_host_s, decode_host_s,
                        cm._with_host(prefill.latency_s, prefill_host_s), cm._with_host(decode.latency_s, decode_host_s),
                        cm.engine.overlap_scheduling)


def mapped_dict(mapped: MappedPhases) -> dict[str, Any]:
    """--mapping's part of estimate's JSON: per phase, latency (the substrates', and the iteration's with the engine's
    host work: the estimate's prefill_ms / decode_step_ms), energy and every operator on its substrate."""
    out: dict[str, Any] = {"name": mapped.mapping, "host_overlapped": mapped.host_overlapped}
    for it, host_s, with_host_s in ((mapped.prefill, mapped.prefill_host_s, mapped.prefill_s),
                                    (mapped.decode, mapped.decode_host_s, mapped.decode_s)):
        phase = it.phase
        out[phase] = {
            "latency_ms": it.latency_s * 1e3, "host_overhead_ms": host_s * 1e3, "with_host_ms": with_host_s * 1e3,
            "energy_j": it.energy_j, "dynamic_power_w": it.dynamic_power_w,
            "over_tdp": it.dynamic_power_w > mapped.tdp_w,
            "by_substrate": {k: {"time_ms": t * 1e3, "energy_j": e} for k, (t, e) in it.by_substrate().items()},
            "operators": [{"name": op.name, "class": op.op_class, "substrate": op.substrate, "kind": op.kind,
                           "count": op.count, "time_ms": op.time_s * 1e3, "compute_ms": op.compute_s * 1e3,
                           "memory_ms": op.memory_s * 1e3, "program_ms": op.program_s * 1e3,
                           "energy_j": op.energy_j, "flops": op.flops, "stationary_bytes": op.stationary_bytes,
                           "activation_bytes": op.activation_bytes, "programmed_bytes": op.programmed_bytes}
                          for op in it.operators],
            "movements": [{"edge": m.edge, "from": m.source, "to": m.target, "bytes": m.bytes,
                           "time_ms": m.time_s * 1e3, "energy_j": m.energy_j} for m in it.movements],
        }
    return out
