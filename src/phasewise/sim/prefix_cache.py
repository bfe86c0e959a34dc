"""Prefix caching: KV blocks keyed by the chained hash of the prompt prefix they hold, shared between requests,
kept after their last user leaves and evicted least-recently-used when free blocks run out, as vLLM's automatic
prefix caching (v1/core/block_pool.py, kv_cache_manager.py), SGLang's radix cache and TensorRT-LLM's block reuse do.

The unit shared is a trace prefix block (a Mooncake block of 512 tokens, workload/mooncake.py): `per_key` engine
KV blocks of the instance's block size, which every user of that prefix touches together (so vLLM's per-block LRU
orders them together too); its blocks are evicted together.

Accounting, with the instance's KVBlocks (sim/kv.py): `kv.used` counts the blocks in use, a block shared by several
requests once; the cached blocks no request holds are idle here (an LRU, evictable) and count as free for
admission, as in vLLM, whose free-block queue holds them; free + idle + in use == capacity at every step.

A request's prompt prefix blocks are looked up when it is admitted: the longest run of leading cached ones is its
hit (its prefill starts after those tokens); every one of its keys already cached is shared (referenced, not
allocated again) and the rest are cached under its keys at once, so later requests hit them (vLLM V1 caches a block
when it is scheduled; here the whole prompt's at admission, not chunk by chunk). When it leaves (finishes, is
preempted, cancelled, or its KV has moved to a decode instance) it drops its references; a block whose last user
left becomes idle, the prompt's tail first in line for eviction (vLLM frees a request's blocks in reverse order).
Lookups of recomputed (preempted) requests are counted apart, as vLLM's PrefixCacheStats does.

A host-memory tier (`host_kv_cache_bytes` on the instance group; off by default in every engine: vLLM's
--kv-offloading-size with its native OffloadingConnector, SGLang's --enable-hierarchical-cache, TensorRT-LLM's
kv_cache_config.host_cache_size) keeps prefix blocks in host DRAM, least recently used dropped first: a copy of
every block, written through as a prompt caches it and touched at every use (SGLang's default write_through policy;
vLLM's connector stores the blocks it computes), or, TensorRT-LLM's, the blocks the GPU evicts, moved back out as
they are copied back (EngineConfig.host_kv_write); SGLang's other policies: write_through_selective writes a block at
its second use while the GPU holds it, write_back as the GPU evicts it, the next forward waiting for the write, the
copy kept when it is loaded back. A prompt's leading run of cached blocks then runs through
either tier: blocks found only in host memory (evicted from the GPU) skip their prefill like GPU hits, but their KV
is copied back over the GPU's PCIe link (HostTier.load_s_per_key) and takes GPU blocks again: the request waits for
it while the others run (EngineConfig.host_kv_load async, vLLM: sim/kv_admission.py), or the iteration that starts
its prefill takes the longer of its forward and the copy (layerwise, SGLang: sim/instance.py _launch), or both in
turn (serial, TensorRT-LLM, whose forward also waits for the writes of the blocks offloaded since the last one).
Other engines' writes to host memory run in the background (a copy stream) and cost nothing here. A KV store the
instances share (sim/kv_tiers.py kv_store) is a third tier, after the host's, its hits fetched over RDMA and copied
back alike. Not modelled: caching of generated tokens' blocks, disk tiers."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from phasewise.errors import PhasewiseError
from phasewise.sim.kv_tiers import HostTier, host_tier, kv_store, store_fetch_s
from phasewise.workload.mooncake import MOONCAKE_BLOCK_TOKENS, block_keys, engine_blocks_per_key, lookup_blocks

if TYPE_CHECKING:
    from phasewise.sim.kv import KVBlocks
    from phasewise.sim.request import SimRequest


class PrefixCache:
    __slots__ = ("kv", "per_key", "refs", "idle", "requests", "prompt_tokens", "hit_tokens", "lookup_keys",
                 "hit_keys", "shared_keys", "evicted_blocks", "recompute_lookups", "recompute_hit_tokens", "host",
                 "store", "store_fetch_s", "store_hit_keys", "store_load_s", "key_tokens", "capacity", "index",
                 "unhashed_requests", "unhashed_prompt_tokens")
    ranked = False  # one cache for the whole instance (RankedPrefixCache: one per attention-DP rank)

    def __init__(self, kv: KVBlocks, host: HostTier | None = None, store: HostTier | None = None,
                 store_fetch_s: float = 0.0, key_tokens: int = MOONCAKE_BLOCK_TOKENS,
                 capacity: int | None = None) -> None:
        self.kv = kv
        # engine blocks of its pool: the instance's KV blocks, or (attention DP) its rank's share of them
        self.capacity = kv.capacity if capacity is None else capacity
        self.key_tokens = key_tokens  # tokens of one prefix block (a key): the trace's, or the twin's engine block
        self.host = host  # the host-memory tier, or None
        self.store = store  # the deployment's shared KV store (sim/kv_tiers.py kv_store), or None
        self.store_fetch_s = store_fetch_s  # seconds to fetch one block from it to this instance
        self.store_hit_keys = 0  # leading prompt blocks found only in the store (first admissions)
        self.store_load_s = 0.0
        self.per_key = 0  # engine blocks a key holds (set at the first lookup: block_size must divide the key's)
        self.refs: dict[int, int] = {}  # key -> requests holding its blocks (0: idle, in `idle`)
        self.idle: OrderedDict[int, None] = OrderedDict()  # keys no request holds, least recently used first
        self.requests = 0  # first admissions looked up (recomputations apart)
        self.prompt_tokens = 0  # their prompt tokens
        self.hit_tokens = 0  # tokens of their leading cached prefix: prefill skipped
        self.lookup_keys = 0  # their shareable prefix blocks
        self.hit_keys = 0
        self.shared_keys = 0  # prefix blocks referenced that were already cached (memory not allocated again)
        self.evicted_blocks = 0  # engine blocks
        self.recompute_lookups = 0
        self.recompute_hit_tokens = 0
        # first admissions of prompts without prefix hashes (a generated workload's, beside a client's warm-up copies
        # of its first prompt): looked up by the engine, as every prompt is, and never hit (count_unhashed)
        self.unhashed_requests = 0
        self.unhashed_prompt_tokens = 0
        self.index: PrefixIndex | None = None  # a router's index of the caches' keys: told of each cached or evicted

    @property
    def idle_blocks(self) -> int:
        return len(self.idle) * self.per_key

    def keys(self, req: SimRequest) -> list[int]:
        if not self.per_key:
            self.per_key = engine_blocks_per_key(self.kv.block_size, self.key_tokens)
        if req.prefix_keys is None:
            req.prefix_keys = block_keys(req.prefix, req.prompt, self.key_tokens)
        return req.prefix_keys

    def probe(self, req: SimRequest) -> tuple[int, int]:
        """(leading cached prefix blocks, engine blocks of its keys held by running requests), changing nothing. The
        hit stops at lookup_blocks() (the last prompt token is computed); a prompt of whole blocks whose last one is
        cached shares that block rather than holding a second copy of it (vLLM keeps the duplicate: one block's
        memory, not counted here)."""
        refs = self.refs
        host = self.host.keys if self.host is not None else ()
        store = self.store.keys if self.store is not None else ()
        hit, held = 0, 0
        limit = lookup_blocks(req.prompt, self.key_tokens)
        leading = limit > 0
        for i, k in enumerate(self.keys(req)):
            if i == limit:
                leading = False
            r = refs.get(k)
            if r is None:
                if leading and (k in host or k in store):
                    hit += 1  # a copy in host memory or the shared store: loaded back, not computed
                else:
                    leading = False
                continue
            if leading:
                hit += 1
            if r:
                held += 1
        return hit, held * self.per_key

    def matched_blocks(self, req: SimRequest) -> int:
        """Leading prefix blocks of `req`'s prompt cached here (the cache-aware router's score)."""
        refs, n = self.refs, 0
        for k in self.keys(req)[:lookup_blocks(req.prompt, self.key_tokens)]:
            if k not in refs:
                break
            n += 1
        return n

    def acquire(self, req: SimRequest, blocks: int, hit: int, held_blocks: int) -> int:
        """Admit `req` holding `blocks` engine blocks: reference its cached keys, cache the others, allocate the
        blocks not already in use. Returns the prompt tokens its hit skips."""
        refs, idle = self.refs, self.idle
        keys = self.keys(req)
        present = loaded = fetched = 0
        host, store, index = self.host, self.store, self.index
        for i, k in enumerate(keys):
            r = refs.get(k)
            if r is None:
                refs[k] = 1
                if index is not None:
                    index.add(k, self)
                if i < hit:  # in the leading run through host memory (copied back) or the store (fetched)
                    if host is not None and k in host.keys:
                        loaded += 1
                    else:
                        fetched += 1
                continue
            if r == 0:
                del idle[k]  # back in use: out of the LRU before the allocation below evicts
            refs[k] = r + 1
            present += 1
        if host is not None and not host.on_evict:  # written through: every block the prompt uses, touched
            for k in keys:
                host.use(k)
        elif host is not None and loaded and host.exclusive:  # the blocks copied back leave host memory
            for k in keys[:hit]:
                host.keys.pop(k, None)
        if store is not None:  # the store takes every block a prompt caches (its prefill instances put them there)
            for k in keys:
                store.keep(k)
        self.kv.allocate(blocks - held_blocks)
        req.prefix_cache = self
        tokens = hit * self.key_tokens
        host_s = loaded * host.load_s_per_key if loaded else 0.0
        store_s = fetched * self.store_fetch_s
        req.kv_load_s = host_s + store_s
        if not req.preemptions:  # first admissions' figures (recomputations apart, as below)
            if loaded:
                host.hit_keys += loaded
                host.load_s += host_s
            self.store_hit_keys += fetched
            self.store_load_s += store_s
        if req.preemptions:
            self.recompute_lookups += 1
            self.recompute_hit_tokens += tokens
        else:
            self.requests += 1
            self.prompt_tokens += req.prompt
            self.hit_tokens += tokens
            self.lookup_keys += min(len(keys), lookup_blocks(req.prompt, self.key_tokens))
            self.hit_keys += hit
        self.shared_keys += present
        return tokens

    def count_unhashed(self, req: SimRequest) -> None:
        """`req`'s prompt, carrying no prefix hashes, is admitted for the first time: the engine looks it up as any
        other (vLLM's prefix_cache_queries count every prompt's tokens) and finds nothing it could share."""
        self.unhashed_requests += 1
        self.unhashed_prompt_tokens += req.prompt

    def release(self, req: SimRequest) -> int:
        """Drop `req`'s references; returns how many of its engine blocks other requests still hold."""
        refs, idle = self.refs, self.idle
        still = 0
        for k in reversed(self.keys(req)):  # the tail first: evicted before the prefix it extends
            r = refs[k] - 1
            refs[k] = r
            if r:
                still += 1
            else:
                idle[k] = None
        req.prefix_cache = None
        return still * self.per_key

    def make_room(self, n: int) -> None:
        """Evict least recently used idle prefix blocks until `n` more engine blocks fit beside the idle ones."""
        kv, per = self.kv, self.per_key
        over = kv.used + n + len(self.idle) * per - kv.capacity
        if over <= 0 or not self.idle:
            return
        self.evict(min(-(-over // per), len(self.idle)))

    def evict(self, n_keys: int) -> None:
        """Evict the `n_keys` least recently used idle prefix blocks."""
        refs, idle = self.refs, self.idle
        host = self.host if self.host is not None and self.host.on_evict else None
        uses = self.host.uses if self.host is not None else {}
        index = self.index
        for _ in range(n_keys):
            k, _ = idle.popitem(last=False)
            del refs[k]
            if index is not None:
                index.remove(k, self)
            if host is not None:  # offloaded as the GPU reclaims it
                host.keep(k)
            elif uses:  # a block the GPU drops before its n-th use is forgotten, its count with it
                uses.pop(k, None)
        self.evicted_blocks += n_keys * self.per_key

    def reset(self) -> None:
        """A new engine process in this cache's place (a replica an autoscaler stopped, sim/autoscaler.py _stop):
        its GPU prefix cache and its host tier, both the process's memory, start empty, and a router's index
        forgets its keys (Dynamo's router drops a worker's blocks when it leaves); the KV store beside the fleet
        keeps its blocks; the run's counts stay. Every block idle: no request may hold one."""
        if any(self.refs.values()):
            raise RuntimeError("prefix cache reset while requests hold its blocks")
        if self.index is not None:
            for k in self.refs:
                self.index.remove(k, self)
        self.refs.clear()
        self.idle.clear()
        host = self.host
        if host is not None:
            host.keys.clear()
            host.uses.clear()
            host.pending_write_s = 0.0

    def figures(self) -> dict[str, float]:
        host = self.host
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "hit_tokens": self.hit_tokens,
                "unhashed_requests": self.unhashed_requests, "unhashed_prompt_tokens": self.unhashed_prompt_tokens,
                "lookup_blocks": self.lookup_keys, "hit_blocks": self.hit_keys,
                # evictions in the same prefix blocks (key_tokens each) and in KV tokens (engine blocks x their size)
                "evicted_prefix_blocks": self.evicted_blocks // self.per_key if self.per_key else 0,
                "evicted_tokens": self.evicted_blocks * self.kv.block_size,
                "recompute_lookups": self.recompute_lookups, "recompute_hit_tokens": self.recompute_hit_tokens,
                "shared_blocks": self.shared_keys, "cached_blocks": len(self.refs), "idle_blocks": len(self.idle),
                # the host tier's, in prefix blocks (key_tokens each); zeros without one
                "host_hit_blocks": host.hit_keys if host else 0, "host_load_s": host.load_s if host else 0.0,
                "host_written_blocks": host.written_keys if host else 0,
                "host_dropped_blocks": host.dropped_keys if host else 0,
                "host_cached_blocks": len(host.keys) if host else 0,
                "host_capacity_blocks": host.capacity_keys if host else 0,
                "host_written_through": int(host is not None and not host.on_evict),  # instances whose tier is
                "gpu_capacity_blocks": self.capacity // self.per_key if self.per_key else 0,
                # the shared store's hits and fetch time here (its own figures: summarize, once)
                "store_hit_blocks": self.store_hit_keys, "store_load_s": self.store_load_s}


class PrefixIndex:
    """Which caches hold each prefix key, kept by the caches themselves (PrefixCache.index: each key cached or
    evicted): one walk of a prompt's keys gives every cache's overlap, where asking each cache walks the prompt once
    per instance (Dynamo's KV router likewise keeps one prefix tree of every worker's blocks from their KV events,
    its KvIndexer: docs/design_docs/router_design.md)."""

    __slots__ = ("holders",)

    def __init__(self) -> None:
        self.holders: dict[int, set[PrefixCache]] = {}  # key -> the caches holding its blocks (in use or idle)

    def attach(self, cache: PrefixCache) -> None:
        """Follow `cache` from now on (its keys so far included)."""
        cache.index = self
        for k in cache.refs:
            self.add(k, cache)

    def add(self, k: int, cache: PrefixCache) -> None:
        holders = self.holders.get(k)
        if holders is None:
            self.holders[k] = {cache}
        else:
            holders.add(cache)

    def remove(self, k: int, cache: PrefixCache) -> None:
        holders = self.holders[k]
        holders.discard(cache)
        if not holders:
            del self.holders[k]

    def overlaps(self, keys: list[int], limit: int) -> dict[PrefixCache, tuple[int, int]]:
        """{cache: (leading keys of the first `limit` it holds, keys running requests there hold)} for the caches
        holding any of a prompt's `keys`: what PrefixCache.matched_blocks and probe (its held blocks, in keys) count
        there; a cache absent holds none."""
        holders, matched, held = self.holders, {}, {}
        run = None  # the caches holding every key so far (None before the first)
        for i, k in enumerate(keys):
            caches = holders.get(k)
            if i < limit:
                if run is None:
                    run = set(caches) if caches else set()
                elif run:
                    run = run & caches if caches else set()
                for cache in run:
                    matched[cache] = i + 1
            if caches:
                for cache in caches:
                    if cache.refs[k]:
                        held[cache] = held.get(cache, 0) + 1
        return {cache: (matched.get(cache, 0), held.get(cache, 0)) for cache in matched.keys() | held.keys()}


def summarize(caches: list[PrefixCache]) -> dict[str, float | int]:
    """The deployment's prefix-cache figures (SimResult.policy['prefix_cache']): hit rates by tokens (of all prompt
    tokens looked up, those of prompts without prefix hashes too, as vLLM's prefix cache hit rate) and by shareable
    prefix blocks (key_tokens each: a Mooncake trace's 512: every *_blocks count but rank_borrowed_blocks, engine
    blocks), evictions in those blocks and in KV tokens, prefill tokens saved (recomputations' hits included). An
    instance with attention DP counts its ranks' caches (RankedPrefixCache) together."""
    ranked = [c for c in caches if c.ranked]
    instances = len(caches)
    caches = [r for c in caches for r in (c.ranks if c.ranked else (c,))]
    total = {k: sum(c.figures()[k] for c in caches) for k in caches[0].figures()}
    total["instances"] = instances
    if ranked:  # attention DP: a cache per rank
        total["rank_caches"] = sum(len(c.ranks) for c in ranked)
        total["rank_dispatch"] = sorted({c.policy for c in ranked})
        total["rank_borrowed_blocks"] = sum(c.borrowed_blocks for c in ranked)  # engine blocks (README's key)
        total["rank_borrowed_tokens"] = sum(c.borrowed_blocks * c.kv.block_size for c in ranked)
    # by tokens over every prompt looked up, those without prefix hashes too (they find nothing)
    looked_up = total["prompt_tokens"] + total["unhashed_prompt_tokens"]
    total["hit_rate_tokens"] = total["hit_tokens"] / looked_up if looked_up else 0.0
    total["hit_rate_blocks"] = total["hit_blocks"] / total["lookup_blocks"] if total["lookup_blocks"] else 0.0
    total["saved_prefill_tokens"] = total["hit_tokens"] + total["recompute_hit_tokens"]
    key_tokens = caches[0].key_tokens  # one cluster, one size
    total["prefix_block_tokens"] = key_tokens
    total["host_hit_tokens"] = total["host_hit_blocks"] * key_tokens
    total["host_hit_rate_tokens"] = total["host_hit_tokens"] / looked_up if looked_up else 0.0
    total["store_hit_tokens"] = total["store_hit_blocks"] * key_tokens
    total["store_hit_rate_tokens"] = total["store_hit_tokens"] / looked_up if looked_up else 0.0
    notes = [c.host.beyond_node for c in caches if c.host is not None and c.host.beyond_node]
    total["host_beyond_node"] = notes[0] if notes else None
    store = caches[0].store  # one object, shared: its own figures once
    total["store_capacity_blocks"] = store.capacity_keys if store else 0
    total["store_cached_blocks"] = len(store.keys) if store else 0
    total["store_written_blocks"] = store.written_keys if store else 0
    total["store_dropped_blocks"] = store.dropped_keys if store else 0
    return total


def migrates_kv(deployment) -> bool:
    """Whether the deployment moves a request's KV blocks between instances mid-request (priority pools' offloads,
    attention offload's): no prefix cache follows such moves, so none is kept (attach_prefix_caches)."""
    return deployment.priority_pools is not None or (deployment.attention_offload is not None
                                                     and deployment.attention_offload.mode != "off")


def attach_prefix_caches(deployment, instances: list) -> None:
    """A prefix cache on each instance that admits prompts, where its engine caches prefixes (the preset's default,
    or the group's `prefix_caching`); one for a pipeline-parallel replica's virtual engines, which share its pool.
    Not with priority pools or attention offload, whose migrations move KV blocks the cache does not follow
    (migrates_kv), nor for sliding-window models."""
    moves = migrates_kv(deployment)
    if moves and deployment.kv_store_bytes:
        raise PhasewiseError("--kv-store-gb (kv_store_bytes) is not modelled with priority pools or attention "
                             "offload, whose migrations move KV blocks the prefix caches do not follow")
    caching = []
    for inst in instances:
        if inst.group.hicache_write_policy is not None and not inst.group.host_kv_cache_bytes:
            raise PhasewiseError("--hicache-write-policy (hicache_write_policy) says when blocks reach the host tier: "
                                 "it needs --host-kv-cache-gb (host_kv_cache_bytes)")
        asked = inst.group.prefix_caching
        if moves or inst.window:
            if asked or inst.group.host_kv_cache_bytes:
                why = "priority pools or attention offload" if moves else "a sliding-window model"
                raise PhasewiseError(f"--prefix-caching on (prefix_caching: true) and --host-kv-cache-gb are not "
                                     f"modelled with {why}; use --prefix-caching off, without --host-kv-cache-gb")
            continue
        if asked if asked is not None else inst.engine.prefix_caching:
            if inst.kv.prefix is not None:  # a virtual engine of a PP replica: the replica's pool and cache, shared
                caching.append(inst)
                continue
            if inst.kv.block_size != inst.kernel_block:
                raise PhasewiseError(f"--prefix-caching on: {inst.engine.label} raises {inst.model.name}'s KV block to "
                                     f"{inst.kv.block_size} tokens (one recurrent state's page); prefix sharing in "
                                     f"such blocks is not modelled; use --prefix-caching off")
            dp = inst.cost.layout.attention_dp
            if dp > 1:  # a cache per attention rank, each with its share of the blocks and of the host tier
                from phasewise.sim.prefix_cache_ranks import RankedPrefixCache, dp_dispatch, rank_host_tier

                inst.kv.prefix = RankedPrefixCache(inst.kv, dp, dp_dispatch(inst.engine.scheduler),
                                                   [rank_host_tier(inst, dp) for _ in range(dp)],
                                                   key_tokens=inst.cluster.prefix_block_tokens)
            else:
                inst.kv.prefix = PrefixCache(inst.kv, host_tier(inst), key_tokens=inst.cluster.prefix_block_tokens)
            caching.append(inst)
        elif inst.group.host_kv_cache_bytes:
            raise PhasewiseError(f"--host-kv-cache-gb (host_kv_cache_bytes) keeps evicted prefix blocks in host "
                                 f"memory: it needs prefix caching, which is off on {inst.engine.label} here; add "
                                 f"--prefix-caching on")
    store = kv_store(deployment, caching)
    for inst in caching if store is not None else ():
        for cache in inst.kv.prefix.ranks if inst.kv.prefix.ranked else (inst.kv.prefix,):
            cache.store, cache.store_fetch_s = store, store_fetch_s(inst)
