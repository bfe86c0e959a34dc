"""Whether an instance fits: a layout of a MoE model's GPUs (--moe-layouts: tp, ep, dp-ep) an instance can run, and
whether its weights and a batch's KV fit its memory in a role (collocated, prefill, decode), as simulate sizes it
(the engine's own memory fraction, KV dtype, window pool, recurrent states, MTP draft)."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.perf import memory_fit
from phasewise.perf.collectives import BOARD_GPUS
from phasewise.perf.deepep_buffers import exchange_buffer_bytes
from phasewise.perf.memory import compressed_kv_pool, draft_memory, kv_pool_sequences, kv_state_pages, profile_batch
from phasewise.perf.parallel import LAYOUT_FLAGS, parallel_layout
from phasewise.perf.window_kv import kv_window_terms, slot_state_bytes
from phasewise.plan.options import MOE_LAYOUTS, PlanOptions
from phasewise.specs.engine_kv import (
    engine_kv,
    kv_block,
    recurrent_state_in_kv_pool,
    window_kv,
    window_pool_speculation,
)
from phasewise.specs.engine_refusals import block_shape_refusal, layout_refusal
from phasewise.specs.engines import DEEPEP_KNOBS, deepep_fields, memory_fraction_of, resolve_engine


def placement(layout: dict[str, Any]) -> dict[str, Any]:
    """A layout's fields that place GPUs (LAYOUT_FLAGS'); the rest, e.g. a DeepEP knob, are the engine's."""
    return {k: v for k, v in layout.items() if k in LAYOUT_FLAGS}


def instance_fits(model, hw, quant, tp: int, pp: int, max_seqs: int | None, fraction: float | None,
                  min_kv_tokens: int, layout: dict[str, Any] | None = None, engine: str = "vllm", mtp: bool = False,
                  role: str = "collocated") -> bool:
    """Whether one instance fits its memory (instance_memory_refusal gives none)."""
    return instance_memory_refusal(model, hw, quant, tp, pp, max_seqs, fraction, min_kv_tokens, layout, engine, mtp,
                                   role) is None


def instance_memory_refusal(model, hw, quant, tp: int, pp: int, max_seqs: int | None, fraction: float | None,
                            min_kv_tokens: int, layout: dict[str, Any] | None = None, engine: str = "vllm",
                            mtp: bool = False, role: str = "collocated") -> str | None:
    """Why the weights and `min_kv_tokens` of KV do not fit one instance in `role` (`mtp`: with the MTP draft beside
    them, the planner's speculative decoding), None where they do: simulate's own refusal (sim/simulate.py
    build_group: perf/memory.py MemoryFit.fits, e.g. SGLang's static pool at a high --memory-fraction leaving its
    activations too little beside it) in its words, or one sequence of `min_kv_tokens` not held. `max_seqs`: the
    sequences the whole instance holds (specs/engines.py instance_seqs), None for the engine's own default; as
    simulate, the activations are sized for at most 1,024 (perf/memory.py profile_batch), a recurrent state's seats
    for every one; `min_kv_tokens` of one sequence in the engine's whole KV blocks (perf/memory.py
    kv_pool_sequences: the simulator's rounding)."""
    split = parallel_layout(model, tp, **placement(layout)) if layout else None
    dp = split.attention_dp if split else 1
    config = resolve_engine(engine, hw, pp=pp, tp=tp, attention_dp=dp, speculative_draft="mtp" if mtp else None,
                            role=role, vision=model.vision, model_type=model.model_type,
                            max_model_len=model.max_position_embeddings or None)  # as simulate resolves it
    if max_seqs is None:
        max_seqs = config.max_seqs
    if fraction is None:  # the engine's own default on this layout
        fraction = config.memory_fraction
    quant = engine_kv(quant, config, model, hw, asked_kv_dtype=False)  # the engine's "auto" KV, as simulate's
    window = window_kv(config, model, hw)
    profile_tokens, profile_seqs = profile_batch(config, max_seqs)  # the start-up profile run simulate sizes by
    mem = memory_fit(model, hw, quant, tp, pp, max_tokens=profile_tokens, max_seqs=profile_seqs,
                     memory_fraction=fraction,
                     layout=split, fraction_of=memory_fraction_of(engine),
                     state_dtype=config.profile.recurrent_state_dtype,
                     state_pool_ratio=config.profile.recurrent_state_pool_ratio,
                     draft=draft_memory(model, None, quant, tp, split) if mtp else (0.0, 0.0),
                     state_in_kv_pool=recurrent_state_in_kv_pool(config, model),
                     slot_bytes=slot_state_bytes(model, window[0], math.ceil(max_seqs / dp),
                                                 window_pool_speculation(config, model, mtp)),
                     kv_pool=compressed_kv_pool(config, model, quant, pp),
                     buffer_bytes=exchange_buffer_bytes(config.profile, model, split), engine=config.profile)
    terms = kv_window_terms(model, *window, attention_tp=tp // dp, quant=quant,
                            speculation=window_pool_speculation(config, model, mtp))
    pages = kv_state_pages(config, model, quant, tp // dp, pp, kv_block(config, model, hw, None)[0])
    if not mem.fits:  # so no strategy ranked here fails to start in simulate
        return mem.reason()
    if kv_pool_sequences(mem.kv_capacity_tokens, min_kv_tokens, terms, pages) < 1:
        return (f"its KV pool ({mem.kv_capacity_tokens:,} tokens a GPU) holds no sequence of {min_kv_tokens:,} tokens "
                "beside the weights")
    return None


def instance_layouts(model, tp: int, opts: PlanOptions, pruned: list[str], role: str = "collocated",
                     precision: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(name suffix, instance-group fields) of each --moe-layouts layout a tp-GPU instance of `model` can run in
    `role` (a dense model, or tp = 1: tensor parallel only). A dp-ep layout wider than a board's NVLink domain
    (BOARD_GPUS) is tried twice where the engine has a DeepEP knob: with the engine's default exchange and with
    DeepEP's all-to-all (specs/engine_deepep.py deepep_fields), the multi-node layouts vLLM's docs and SGLang's wide-EP
    recipes run it on; within a board the engines' defaults are kept. With `precision`, a layout whose split of a
    block-scaled checkpoint the engine refuses at load (specs/engine_refusals.py block_shape_refusal) is pruned, the
    plain tensor-parallel one too (a dense model's included)."""
    unknown = [name for name in opts.moe_layouts if name not in MOE_LAYOUTS]
    if unknown:
        raise PhasewiseError(f"--moe-layouts '{unknown[0]}' is not one of {', '.join(MOE_LAYOUTS)}")

    def block_refused(name: str, moe_tp: int, attention_dp: int) -> bool:
        refusal = None if precision is None else block_shape_refusal(opts.engine, model, precision, tp, moe_tp,
                                                                     attention_dp, LAYOUT_FLAGS)
        if refusal:
            pruned.append(f"tp={tp} {name} {precision}: {refusal}")
        return refusal is not None

    if not model.num_experts or tp == 1:
        return [] if block_refused("tp", tp, 1) else [("", {})]
    out = []
    # TP sizes added across nodes for the wide-EP layout alone (enumerate_strategies: PlanOptions.wide_ep_tp)
    names = ("dp-ep",) if tp in opts.wide_ep_tp else opts.moe_layouts
    for name in names:
        fields = {"tp": {}, "ep": {"ep": tp}, "dp-ep": {"ep": tp, "attention_dp": tp}}[name]
        refusal = layout_refusal(opts.engine, tp, fields.get("ep"), None, fields.get("attention_dp"), LAYOUT_FLAGS)
        if refusal:  # an engine without expert or attention-data parallelism (engine_presets.yaml moe_parallelism)
            pruned.append(f"tp={tp} {name}: {refusal}")
            continue
        try:
            split = parallel_layout(model, tp, **fields)
        except PhasewiseError as exc:
            pruned.append(f"tp={tp} {name}: {exc}")
            continue
        if block_refused(name, split.moe_tp, split.attention_dp):
            continue
        suffix = {"tp": "", "ep": f" EP{tp}", "dp-ep": f" DP{tp}EP{tp}"}[name]
        out.append((suffix, fields))
        deepep = deepep_fields(opts.engine, role) if name == "dp-ep" and tp > BOARD_GPUS else {}
        if deepep:
            out.append((f"{suffix} DeepEP", {**fields, **deepep}))
    return out


def role_layouts(model, p_tp: int, d_tp: int, opts: PlanOptions, pruned: list[str],
                 precision: str | None = None) -> list[tuple]:
    """Layout pairs of a disaggregated unit: each --moe-layouts layout on both roles, and prefill with experts
    expert-parallel beside decode in the wide-EP layout (as the Blackwell disaggregated DeepSeek rows run). Where
    both roles are tried with DeepEP (instance_layouts), a pair takes it on both or on neither. `precision`:
    instance_layouts'."""
    prefill = instance_layouts(model, p_tp, opts, pruned, "prefill", precision)
    decode = instance_layouts(model, d_tp, opts, pruned, "decode", precision)

    def deepep(fields: dict[str, Any]) -> bool:
        return any(k in DEEPEP_KNOBS for k in fields)

    both = any(deepep(f) for _, f in prefill) and any(deepep(f) for _, f in decode)
    pairs = [(p, d) for p in prefill for d in decode
             if placement(p[1]).keys() == placement(d[1]).keys() and not (both and deepep(p[1]) != deepep(d[1]))]
    pairs += [(p, d) for p in prefill for d in decode if "attention_dp" not in p[1] and "attention_dp" in d[1]
              and p[1]]
    return pairs
