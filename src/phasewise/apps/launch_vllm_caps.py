"""vLLM's caps as the launch script writes them: the simulated preset's sequence and token caps where `vllm serve`'s
own defaults differ, and --max-model-len where the planned KV cache cannot hold the model's context or a
whole-prompt budget needs it (apps/launch.py _vllm)."""

from __future__ import annotations

import math
from typing import Any

from phasewise.apps.launch_caps import launched_default
from phasewise.perf.memory import kv_block_pool
from phasewise.perf.window_kv import kv_window_terms
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.specs import load_model
from phasewise.specs.engine_caps import rank_share
from phasewise.specs.engine_kv import kv_block, window_kv

# vllm 0.14 engine/arg_utils.py _check_feature_supported (0.11 fell back to V0, which it no longer has)
PARTIAL_PREFILLS_REFUSED = ("vLLM 0.14 refuses --max-num-partial-prefills above 1 (NotImplementedError: \"Concurrent "
                            "Partial Prefill is not supported\")")


def vllm_simulated_caps(dep: Deployment, g: InstanceGroup, engine, argv: list[str], context: int | None,
                         notes: list[str]) -> list[str]:
    """The simulated preset's caps where `vllm serve`'s own defaults on this chip differ and the knobs did not say
    them: a preset of another scheduler (sarathi's 512-token budget, ascendra's pools, vllm-v0's whole prompts) or
    an older release launched with today's vLLM runs with what was simulated, not with vLLM's defaults. The caps
    vLLM would take are resolved with what the command sets beside them (chunked prefill off, `context` as
    --max-model-len: vLLM's budget without chunking follows max_model_len, specs/engine_defaults.py vllm_batch_caps).
    Both flags are each data-parallel rank's (one engine core per rank, specs/engine_caps.py PER_RANK_KNOBS), while
    `engine`'s caps and launched_default's are the instance's (specs/engine_config.py multiplies the flags by
    attention_dp): both sides are compared and written as one rank's share."""
    model = load_model(g.model or dep.model)
    ranks = g.attention_dp or 1

    def vllm_own(knobs: dict) -> Any:  # vLLM's own caps for the group beside `knobs` (launch_caps.launched_default)
        return launched_default(dep, g, "vllm", knobs, context)

    default = vllm_own({})
    chunking = []
    if engine.chunked_prefill != default.chunked_prefill and not any("chunked-prefill" in a for a in argv):
        chunking.append("--enable-chunked-prefill" if engine.chunked_prefill else "--no-enable-chunked-prefill")
    own = default if engine.chunked_prefill else vllm_own({"enable_chunked_prefill": False})
    out = []
    rank_budget = rank_share(engine.token_budget, ranks)
    for flag, simulated, vllm_default in (
            ("--max-num-seqs", rank_share(engine.max_seqs, ranks), rank_share(own.max_seqs, ranks)),
            ("--max-num-batched-tokens", rank_budget, rank_share(own.token_budget, ranks))):
        if flag == "--max-num-batched-tokens" and budget_refused(engine, simulated, context, model):
            continue  # vllm_max_model_len's note says so
        if simulated != vllm_default and flag not in argv:
            out += [flag, str(simulated)]
    out += chunking
    partial = min(engine.partial_prefills, engine.max_seqs)  # unlimited: as many as the sequences
    if engine.chunked_prefill and partial > own.partial_prefills and "max_num_partial_prefills" not in g.knobs:
        notes.append(f"{g.engine}'s scheduling ({partial} prompts part-way through prefill in one step, as "
                     f"simulated) has no vLLM V1 equivalent: {PARTIAL_PREFILLS_REFUSED}; this command runs vLLM V1's "
                     f"chunked prefill with the simulated {rank_budget}-token budget, one prompt part-way "
                     "through prefill at a time")
    if out:
        notes.append(f"{' '.join(a for a in out if a.startswith('--'))}: the simulated {g.engine} caps, where "
                     "vLLM's own defaults differ")
    return out


def budget_refused(engine, budget: int, context: int | None, model) -> bool:
    """Whether vLLM refuses --max-num-batched-tokens `budget`: a whole-prompt budget (chunked prefill off) below
    max_model_len as launched (`context`, else the model's own; config/scheduler.py verify_max_model_len), which
    the command then leaves out (vllm_max_model_len's note says so)."""
    return not engine.chunked_prefill and budget < (context or model.max_position_embeddings or 0)


def vllm_max_model_len(dep: Deployment, g: InstanceGroup, built: tuple, longest_request: int | None,
                        notes: list[str]) -> int | None:
    """--max-model-len (None: the model's context, vLLM's default), the smaller of
    - the longest sequence the planned KV cache holds, where the model's context does not fit it: vLLM refuses to
      start when one sequence of max_model_len tokens cannot be held (its KV cache check at start-up; _kv_context);
    - a whole-prompt scheduler's token budget (chunked prefill off: vllm-v0's prefill-first steps): vLLM without
      chunked prefill raises its budget to max_model_len and refuses a --max-num-batched-tokens below it (0.14
      engine/arg_utils.py _set_default_max_num_seqs_and_batched_tokens_args, config/scheduler.py
      verify_max_model_len), so the simulated budget is vLLM's only as max_model_len; written where the workload's
      longest request (`longest_request`, prompt and output) fits it, else a note says the budget differs."""
    model = load_model(g.model or dep.model)
    engine = built[3]
    kv_cap = _kv_context(dep, g, built, notes)
    served = kv_cap or model.max_position_embeddings
    budget = engine.token_budget // (g.attention_dp or 1)  # each DP rank's own (PER_RANK_KNOBS)
    if engine.chunked_prefill or not served or budget >= served:
        return kv_cap
    if longest_request is not None and longest_request <= budget:
        notes.append(f"--max-model-len {budget}: the simulated {g.engine} budget of {budget:,} tokens a step, whole "
                     f"prompts only; vLLM without chunked prefill runs a budget of at least max_model_len ({served:,} "
                     f"otherwise) and refuses a smaller --max-num-batched-tokens, so the context is capped at the "
                     f"budget; the workload's requests ({longest_request:,} tokens at most) fit it")
        return budget
    why = (f"the workload's requests reach {longest_request:,} tokens, past it" if longest_request is not None else
           "the workload's longest request is not known here")
    notes.append(f"the simulated {g.engine} budget of {budget:,} tokens a step is not vLLM's here: without chunked "
                 f"prefill vLLM's budget is at least max_model_len ({served:,}) and it refuses a smaller "
                 f"--max-num-batched-tokens, so prompts batch up to {served:,} tokens a step; --max-model-len {budget} "
                 f"would run it as simulated, but {why}")
    return kv_cap


def _kv_context(dep: Deployment, g: InstanceGroup, built: tuple, notes: list[str]) -> int | None:
    """The longest sequence the planned KV cache holds, where the model's context does not fit it (None where it
    does): an attention rank's share of the cache; a hybrid stack's windowed layers counted as vLLM holds them
    (specs/engine_kv.py window_kv; DeepSeek-V4's windowed groups as its shared block pool counts them), in whole
    blocks."""
    model = load_model(g.model or dep.model)
    cost, kv_tokens, _, engine = built  # build_group's
    full, windowed, window, _ = kv_window_terms(model, *window_kv(engine, model, cost.hw),  # never pooled in vLLM
                                                attention_tp=cost.layout.attention_tp, quant=cost.quant)
    cap = kv_tokens // (g.attention_dp or 1)
    pool = kv_block_pool(engine, model, cost.quant, cost.pp)
    budget = math.ceil(engine.token_budget / (g.attention_dp or 1))
    block = kv_block(engine, model, cost.hw, g.block_size)[0]  # the block the instance runs on
    if pool is not None:  # vLLM's own check: one request and a prefill chunk's window blocks (its longest_request)
        pool_bytes = (cap // pool.block_tokens + pool.chunk_blocks(budget)) * pool.block_bytes
        longest = pool.longest_request(pool_bytes, budget, model.max_position_embeddings or cap)
    elif not full:  # every layer windowed: a sequence holds its last window
        longest = model.max_position_embeddings if window <= cap else 0
    elif not windowed:  # every layer holds every token
        longest = cap / full
    else:  # vLLM charges a windowed layer its window and a prefill chunk, and a block for the window's offset
        # (SlidingWindowSpec.max_memory_usage_bytes: cdiv(min(window - 1 + max_num_batched_tokens, L), block) + 1)
        reach = (math.ceil((window - 1 + budget) / block) + 1) * block
        longest = (cap - windowed * reach) / full if cap >= (full + windowed) * reach else cap / (full + windowed)
    longest = int(longest) // block * block
    if not model.max_position_embeddings or model.max_position_embeddings <= longest or longest <= 0:
        return None
    notes.append(f"the model's {model.max_position_embeddings:,}-token context does not fit this instance's KV cache "
                 f"({cap:,} tokens): --max-model-len caps it at the longest sequence the cache holds")
    return longest
