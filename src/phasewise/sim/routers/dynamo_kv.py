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
cached blocks included: one walk of the prompt's keys over an index the caches keep (PrefixIndex; Dynamo's KvIndexer
likewise keeps one prefix tree of every worker's blocks from their KV events, docs/design_docs/router_design.md)
gives each instance's overlap and held blocks, so an instance holding none of them costs only its gauges (an
attention-DP instance's caches, one per rank, are asked apart).
Without KV events (router_kv_events false, Dynamo's --no-router-kv-events) the overlap is predicted from the
router's own routing decisions instead (sim/routers/approx_index.py).
overlap_score_weight (`--kv-overlap-score-weight`, default 1.0): larger favours cache hits (TTFT), 0 ignores the
cache and balances the load alone. A request without prefix hashes has no overlap anywhere: the cost balances
prefill and decode load. Behind a disaggregated deployment's decode instances (a KV transfer to place, no prompt
to prefill there) the cost is the decode blocks alone, as Dynamo's decode routing disables the overlap term.

More of Dynamo's router settings (KvRouterConfig; the KV events above, and these two, off by default):
- router_temperature (`--router-temperature`): above 0 the instance is drawn, not taken: each with probability
  proportional to exp(-(cost - lowest) / ((highest - lowest) x temperature)), all alike when the costs are equal
  (selector.rs softmax_sample: the costs rescaled to [-1 / temperature, 0] before the softmax, so the temperature
  does not depend on the costs' scale). The draws come from a generator seeded with the run's --seed (default 0),
  so a run repeats and another seed draws anew.
- router_queue_threshold (`--router-queue-threshold`): a new request waits at the router while every instance's
  pending prefill tokens exceed threshold x its engine's token budget (Dynamo: max_num_batched_tokens), and the
  waiting requests go, first come first served, as soon as one instance is below it (sim/router_queue.py): the
  choice is made on the load at the moment of sending, not of arriving. Dynamo's own default changed between
  releases (4.0 in its 1.0 documentation; off by default since v1.4.0, as a launcher's help text states), so it
  is off unless set."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from phasewise.sim.prefix_cache import PrefixIndex
from phasewise.sim.routers.approx_index import TTL_S, ApproxIndex
from phasewise.sim.routers.least_outstanding import LeastOutstandingRouter
from phasewise.workload.mooncake import lookup_blocks

OVERLAP_SCORE_WEIGHT = 1.0  # Dynamo KvRouterConfig.overlap_score_weight default (--kv-overlap-score-weight)
_NO_OVERLAP = (0, 0)  # (leading keys cached, keys held) where a cache holds none of a prompt's keys
# instances from which one index walk beats asking each cache (the index's upkeep at every key cached or evicted
# costs more below): the Mooncake conversation trace on H100s, CPU time, walk vs ask: 4 replicas +4 %, 8 +2.5 %,
# 12 -2.5 %, 16 -6 %, 64 -25 %, 128 -38 % (the same routing either way)
INDEX_MIN_INSTANCES = 12


@dataclass(frozen=True, slots=True)
class DynamoKvSettings:
    """Dynamo's KV-router settings the simulation follows (Deployment's kv_overlap_score_weight,
    router_temperature, router_queue_threshold, router_kv_events and router_ttl_s; Dynamo's defaults)."""

    overlap_weight: float = OVERLAP_SCORE_WEIGHT
    temperature: float = 0.0
    queue_threshold: float | None = None
    kv_events: bool = True
    ttl_s: float = TTL_S


def softmax_pick(costs: list[float], temperature: float, draw: float) -> int:
    """The index Dynamo's softmax sampling takes for a uniform `draw` in [0, 1): probabilities proportional to
    exp(-(cost - lowest) / ((highest - lowest) x temperature)), equal when every cost is."""
    lowest, highest = min(costs), max(costs)
    if highest == lowest:
        weights = [1.0] * len(costs)
    else:
        scale = 1.0 / ((highest - lowest) * temperature)
        weights = [math.exp(-(cost - lowest) * scale) for cost in costs]
    target, total = draw * sum(weights), 0.0
    for index, weight in enumerate(weights):
        total += weight
        if target < total:
            return index
    return len(costs) - 1


def active_decode_blocks(inst) -> float:
    """KV blocks in use on `inst` (as its engine reports them) plus those of the requests routed there and not yet
    admitted (prompts waiting to prefill, or KV transfers waiting for a seat on a decode instance)."""
    in_use = inst.gauges()[2]
    if inst.role == "decode":
        return in_use + sum(inst.kv.blocks_for(r.prompt + r.generated) for r, _ in inst.pending_transfers)
    return in_use + (inst.frontend_prompt_tokens + inst.waiting.tokens) / inst.kv.block_size


class DynamoKvRouter(LeastOutstandingRouter):
    __slots__ = ("overlap_weight", "temperature", "queue_threshold", "draws", "ttl_s", "approx", "index", "indexed",
                 "keyed")

    def __init__(self, instances, settings: DynamoKvSettings | None = None, seed: int = 0) -> None:
        super().__init__(instances)
        settings = settings or DynamoKvSettings()
        self.overlap_weight = settings.overlap_weight
        self.temperature = settings.temperature
        self.queue_threshold = settings.queue_threshold
        self.draws = random.Random(seed) if settings.temperature > 0 else None
        self.ttl_s = None if settings.kv_events else settings.ttl_s
        self.approx: ApproxIndex | None = None  # without KV events: built at the first request with prefix hashes
        self.index: PrefixIndex | None = None  # the caches' keys: built at the first request with prefix hashes
        self.indexed: list | None = None  # the instances whose caches it follows (_overlaps)
        self.keyed = None  # one of their caches: the prompt's keys and lookup length in its key size (one cluster's)

    def cost_blocks(self, inst, req, overlaps: dict | None = None) -> float:
        """Dynamo's cost of sending `req` to `inst` (lower is better). `overlaps`: _overlaps(req), (leading keys
        cached, keys held) of each indexed cache holding any of its keys; an attention-DP instance's caches are
        asked."""
        cached_tokens = held_blocks = matched = 0
        cache = inst.kv.prefix
        if req.prefix is not None:
            if cache is not None and overlaps is not None and not cache.ranked:
                matched, held = overlaps.get(cache, _NO_OVERLAP)
                held_blocks = held * cache.per_key  # the running requests' blocks there (its active sequences)
            elif cache is not None:
                matched = cache.matched_blocks(req) if self.ttl_s is None else 0
                held_blocks = cache.probe(req)[1]
            if self.ttl_s is not None:  # what the router predicts from its own routing
                cached_tokens = self._approx(inst).matched_tokens(inst.index, req, inst.loop.now)
            elif matched:  # what the instance's KV events report
                cached_tokens = min(matched * cache.key_tokens, req.prompt)
        prefill_blocks = (inst.prefill_tokens_pending() + req.prompt - cached_tokens) / inst.kv.block_size
        new_blocks = max(inst.kv.blocks_for(req.prompt) - held_blocks, 0)
        return self.overlap_weight * prefill_blocks + active_decode_blocks(inst) + new_blocks

    def pick_for(self, req):
        instances = self.instances
        if len(instances) == 1:
            return instances[0]
        overlaps = self._overlaps(req) if req.prefix is not None else None
        if self.draws is not None:
            costs = [self.cost_blocks(inst, req, overlaps) for inst in instances]
            chosen = instances[softmax_pick(costs, self.temperature, self.draws.random())]
        else:
            costs = [(self.cost_blocks(inst, req, overlaps), inst.outstanding, j) for j, inst in enumerate(instances)]
            chosen = instances[min(costs)[2]]
        if self.ttl_s is not None and req.prefix is not None:
            self._approx(chosen).record(chosen.index, req, chosen.loop.now)
        return chosen

    def _overlaps(self, req) -> dict | None:
        """PrefixIndex.overlaps of `req`'s keys over the instances' caches; None where none has a cache to index, or
        while the router has had fewer than INDEX_MIN_INSTANCES (each cache is asked). The instances' caches are
        indexed at their first look (and again whenever the instances change: an autoscaler's), their engine
        blocks per key set as a lookup sets them."""
        if self.index is None and len(self.instances) < INDEX_MIN_INSTANCES:
            return None
        if self.indexed != self.instances:
            index = self.index = self.index or PrefixIndex()
            self.indexed, self.keyed = list(self.instances), None
            for inst in self.instances:
                cache = inst.kv.prefix
                if cache is None or cache.ranked:
                    continue
                if cache.index is not index:
                    index.attach(cache)
                if not cache.per_key:
                    cache.keys(req)  # its engine blocks per key, set at its first lookup
                if self.keyed is None:
                    self.keyed = cache
        keyed = self.keyed
        if keyed is None:
            return None
        return self.index.overlaps(keyed.keys(req), lookup_blocks(req.prompt, keyed.key_tokens))

    def forget(self, inst) -> None:
        """`inst` stopped (sim/autoscaler.py _stop): without KV events, what the router recorded there is dropped (a
        start later is a new engine, its cache empty; ApproxIndex.forget); with them its cache's reset told the
        index already (PrefixCache.reset)."""
        if self.approx is not None:
            self.approx.forget(inst.index)

    def _approx(self, inst) -> ApproxIndex:
        if self.approx is None:
            self.approx = ApproxIndex(self.ttl_s, inst.cluster.prefix_block_tokens, inst.kv.block_size)
        return self.approx

    def choose(self):
        """A decode instance for a KV transfer: the fewest decode blocks (ties: the least outstanding work), or
        drawn from them with the router's temperature."""
        if self.draws is not None and len(self.instances) > 1:
            costs = [active_decode_blocks(inst) for inst in self.instances]
            return self.instances[softmax_pick(costs, self.temperature, self.draws.random())]
        return min(self.instances, key=lambda inst: (active_decode_blocks(inst), inst.outstanding))

    def must_hold(self) -> bool:
        """Dynamo's router queue: with a threshold, a new request waits while every instance's pending prefill
        tokens exceed threshold x its engine's token budget."""
        threshold = self.queue_threshold
        if threshold is None:
            return False
        return all(inst.prefill_tokens_pending() > threshold * inst.engine.token_budget for inst in self.instances)
