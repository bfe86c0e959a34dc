"""NVIDIA Dynamo's KV router (`python -m dynamo.frontend --router-mode kv`, its default worker selector,
lib/kv-router/src/scheduling/selector.rs; docs: components/router "Routing Concepts"): each instance's cost

    overlap_score_weight x prefill blocks + decode blocks

the lowest taken (router temperature 0, Dynamo's default: no softmax sampling; ties: the least outstanding work,
where Dynamo takes the smaller cache tree, then a random one). Per instance, in blocks of its engine's KV block
size (Dynamo's --kv-cache-block-size, which must match the engine's):
- prefill blocks: the prompt tokens still to prefill of the requests routed there (in its frontend, queued or
  prefilling: Instance.prefill_tokens_pending, Dynamo's worker_active_prefill_tokens) plus this request's tokens
  beyond its longest prefix cached there (its overlap);
- decode blocks: the KV blocks in use there (with the decoding set's growth, as the engine reports them) plus the
  blocks of the prompts routed there and not yet admitted, plus this request's blocks other requests there do not
  already hold. Dynamo counts a request's blocks from the moment it routes it, so a queued prompt's blocks weigh in
  both terms, as they do in its default formula.
The overlap is read from the instance's own prefix cache, as Dynamo's KV events give it (sim/prefix_cache.py), idle
cached blocks included; with --no-router-kv-events Dynamo predicts it from its own routing instead (not modelled).
overlap_score_weight (`--kv-overlap-score-weight`, default 1.0): larger favours cache hits (TTFT), 0 ignores the
cache and balances the load alone. A request without prefix hashes has no overlap anywhere: the cost balances
prefill and decode load. Behind a disaggregated deployment's decode instances (a KV transfer to place, no prompt
to prefill there) the cost is the decode blocks alone, as Dynamo's decode routing disables the overlap term."""

from __future__ import annotations

from phasewise.sim.routers.least_outstanding import LeastOutstandingRouter

OVERLAP_SCORE_WEIGHT = 1.0  # Dynamo KvRouterConfig.overlap_score_weight default (--kv-overlap-score-weight)


def active_decode_blocks(inst) -> float:
    """KV blocks in use on `inst` (as its engine reports them) plus those of the requests routed there and not yet
    admitted (prompts waiting to prefill, or KV transfers waiting for a seat on a decode instance)."""
    in_use = inst.gauges()[2]
    if inst.role == "decode":
        return in_use + sum(inst.kv.blocks_for(r.prompt + r.generated) for r, _ in inst.pending_transfers)
    return in_use + (inst.frontend_prompt_tokens + inst.waiting.tokens) / inst.kv.block_size


class DynamoKvRouter(LeastOutstandingRouter):
    __slots__ = ("overlap_weight",)

    def __init__(self, instances, overlap_weight: float = OVERLAP_SCORE_WEIGHT) -> None:
        super().__init__(instances)
        self.overlap_weight = overlap_weight

    def cost_blocks(self, inst, req) -> float:
        """Dynamo's cost of sending `req` to `inst` (lower is better)."""
        block = inst.kv.block_size
        cached_tokens = held_blocks = 0
        cache = inst.kv.prefix
        if cache is not None and req.prefix is not None:
            cached_tokens = min(cache.matched_blocks(req) * cache.key_tokens, req.prompt)
            held_blocks = cache.probe(req)[1]
        prefill_blocks = (inst.prefill_tokens_pending() + req.prompt - cached_tokens) / block
        new_blocks = max(inst.kv.blocks_for(req.prompt) - held_blocks, 0)
        return self.overlap_weight * prefill_blocks + active_decode_blocks(inst) + new_blocks

    def pick_for(self, req):
        instances = self.instances
        if len(instances) == 1:
            return instances[0]
        costs = [(self.cost_blocks(inst, req), inst.outstanding, j) for j, inst in enumerate(instances)]
        return instances[min(costs)[2]]

    def choose(self):
        """A decode instance for a KV transfer: the fewest decode blocks (ties: the least outstanding work)."""
        return min(self.instances, key=lambda inst: (active_decode_blocks(inst), inst.outstanding))
