"""The profile NVIDIA Dynamo's planner sizes a collocated (aggregated) group with (components/planner agg_planner.py
and its AggRegressionModel): an engine's iteration time as a function of the prefill tokens it schedules and the
decode sequences riding along, here priced by the cost model where Dynamo fits a regression on forward-pass
metrics. sim/sla_planner.py calls these for a group of role collocated.

- mixed_step_s: one iteration of a prefill chunk (its tokens at no context, as the regression sees token counts
  only) beside a decode batch.
- agg_ttft_s: a prompt's TTFT behind the queued prompt tokens: (queued + its own) tokens in token-budget chunks,
  each beside the replica's current decode batch.
- agg_engine_rps (find_best_engine_agg_rps): the largest decode batch, swept from 1, whose iteration (with the
  prefill tokens that keep it fed, batch x ISL / OSL per iteration, at most the budget) meets the ITL and whose
  TTFT (that prefill queued ahead) meets the TTFT; the sweep ends at the smallest of the KV cache's batch at a
  context of ISL + OSL / 2, the sequence cap and the prefill/decode balance (ISL / (budget - batch) <= OSL); its
  rate batch x accepted tokens a step / (OSL x iteration) by Little's law, that of a batch of one where none meets
  both.
- engine_share: the sequences and KV tokens the profile's engine holds at most (the sweeps' bounds): its sequence
  cap and KV cache; a virtual engine of a pipeline-parallel replica (one micro-batch, its step a micro-batch's),
  its equal share of the cap and the pool its replica's pp virtual engines share, whatever they hold at the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasewise.perf.batch import BatchShape

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance


def engine_share(inst: Instance) -> tuple[int, int]:
    """(sequences, KV tokens) the engine's profile holds at most: its replica's sequence cap and KV pool over the
    virtual engines sharing them (one without pipeline parallelism)."""
    engines = 1 + len(inst.siblings)
    return max(1, inst.seq_cap // engines), inst.kv.capacity // engines * inst.kv.block_size


def mixed_step_s(inst: Instance, prefill_tokens: int, decode_seqs: int, context: int) -> float:
    """One iteration: `prefill_tokens` of prompt (none: a decode step) and `decode_seqs` sequences at `context`."""
    shape = BatchShape()
    if decode_seqs > 0:
        shape = BatchShape.uniform(decode_seqs, inst.decode_new_tokens, max(context, 1), inst.model.causal, inst.window)
    if prefill_tokens > 0:
        shape.add(prefill_tokens, 0, inst.model.causal, inst.window, logits=0)
    return inst.cost.fast(shape)[0] if shape.seqs else 0.0


def agg_ttft_s(inst: Instance, queued_tokens: int, decode_seqs: int, context: int) -> float:
    """`queued_tokens` (those ahead and the prompt's own) in token-budget chunks beside the decode batch."""
    budget = inst.engine.token_budget
    full, rest = divmod(max(queued_tokens, 0), budget)
    total_s = full * mixed_step_s(inst, budget, decode_seqs, context) if full else 0.0
    return total_s + (mixed_step_s(inst, rest, decode_seqs, context) if rest else 0.0)


def agg_engine_rps(inst: Instance, isl: float, osl: float, ttft_s: float, itl_s: float) -> float:
    """An engine's request rate at the largest batch meeting both SLA targets (0 where the load is unknown)."""
    if isl <= 0 or osl <= 0:
        return 0.0
    budget = inst.engine.token_budget
    context = isl + osl / 2.0
    seqs, kv_tokens = engine_share(inst)
    kv_cap = max(1, int(kv_tokens / max(1.0, context)))
    hard_cap = max(1, min(kv_cap, seqs, budget - 1))
    low, high = 1, hard_cap  # the largest batch whose prefill the rest of the budget keeps up with
    while low < high:
        middle = (low + high + 1) // 2
        if budget - middle > 0 and isl / (budget - middle) <= osl:
            low = middle
        else:
            high = middle - 1
    best_rps = 0.0
    for batch in range(1, low + 1):
        prefill = int(min(batch * isl / max(1.0, osl), budget))
        step_s = mixed_step_s(inst, prefill, batch, int(context))
        ttft = agg_ttft_s(inst, prefill + int(isl), batch, int(context))
        if step_s / inst.tokens_per_step > itl_s or ttft > ttft_s:
            if batch == 1:
                best_rps = inst.tokens_per_step / (osl * step_s)
            break
        best_rps = batch * inst.tokens_per_step / (osl * step_s)  # speculative steps accept more than one token
    return best_rps
