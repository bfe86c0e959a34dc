"""Dynamo's approximate KV index (`--no-router-kv-events`; lib/llm kv_router/approx.rs ApproxKvIndexer): without the
engines' KV events the router predicts which prefixes each instance caches from its own routing decisions. When it
sends a request, it records the request's prefix blocks on that instance, each to expire router_ttl_secs later (120 s
by default; a later request with the same block renews it), and scores an instance by the leading run of a request's
blocks recorded there and not expired. It never learns of evictions (a block recorded is assumed cached until it
expires) nor of blocks a prefix-caching-off engine does not keep. Its tree is bounded: past router_max_tree_size
nodes (2^20: a node per distinct block, whichever instances hold it, counted in the engine's KV blocks as Dynamo
hashes them) it drops the soonest-expiring (instance, block) entries until the tree is down to
router_prune_target_ratio (0.8) of that (KvRouterConfig defaults)."""

from __future__ import annotations

import heapq

from phasewise.workload.mooncake import block_keys

TTL_S = 120.0  # KvRouterConfig.router_ttl_secs default
MAX_TREE_BLOCKS = 2**20  # KvRouterConfig.router_max_tree_size default
PRUNE_TARGET_RATIO = 0.8  # KvRouterConfig.router_prune_target_ratio default


class ApproxIndex:
    __slots__ = ("ttl_s", "key_tokens", "blocks_per_key", "expiry_s", "heap", "holders")

    def __init__(self, ttl_s: float, key_tokens: int, block_tokens: int) -> None:
        self.ttl_s = ttl_s
        self.key_tokens = key_tokens  # tokens of one prefix block (the trace's)
        self.blocks_per_key = max(1, key_tokens // block_tokens)  # Dynamo's tree nodes per prefix block
        self.expiry_s: dict[tuple[int, int], float] = {}  # (instance index, prefix key) -> when it expires
        self.heap: list[tuple[float, int, int]] = []  # (expiry, instance, key); stale where expiry_s moved on
        self.holders: dict[int, int] = {}  # prefix key -> instances it is recorded on (the tree's nodes: its keys)

    def keys(self, req) -> list[int]:
        if req.prefix_keys is None:
            req.prefix_keys = block_keys(req.prefix, req.prompt, self.key_tokens)
        return req.prefix_keys

    def matched_tokens(self, instance: int, req, now_s: float) -> int:
        """Prompt tokens of `req`'s leading prefix blocks the router believes `instance` caches at `now_s`."""
        expiry, run = self.expiry_s, 0
        for key in self.keys(req):
            if expiry.get((instance, key), -1.0) <= now_s:
                break
            run += 1
        return min(run * self.key_tokens, req.prompt)

    def record(self, instance: int, req, now_s: float) -> None:
        """The router sent `req` to `instance`: its prefix blocks are recorded there until now + TTL."""
        until, expiry, holders = now_s + self.ttl_s, self.expiry_s, self.holders
        for key in self.keys(req):
            if (instance, key) not in expiry:
                holders[key] = holders.get(key, 0) + 1
            expiry[(instance, key)] = until
            heapq.heappush(self.heap, (until, instance, key))
        self._expire(now_s)
        if len(holders) * self.blocks_per_key > MAX_TREE_BLOCKS:
            self._prune(int(MAX_TREE_BLOCKS * PRUNE_TARGET_RATIO) // self.blocks_per_key)

    def forget(self, instance: int) -> None:
        """`instance` left (an autoscaler stopped its engine): every block recorded there goes, as Dynamo's router
        removes a deleted worker from its approximate indexer (lib/llm/src/kv_router/subscriber.rs
        start_kv_router_background on the instance's deletion, approx.rs ApproxKvIndexer: trie.remove_worker); its
        heap entries are left stale."""
        for entry in [entry for entry in self.expiry_s if entry[0] == instance]:
            self._drop(*entry)

    def _drop(self, instance: int, key: int) -> None:
        del self.expiry_s[(instance, key)]
        left = self.holders[key] - 1
        if left:
            self.holders[key] = left
        else:
            del self.holders[key]

    def _expire(self, now_s: float) -> None:
        heap, expiry = self.heap, self.expiry_s
        while heap and heap[0][0] <= now_s:
            until, instance, key = heapq.heappop(heap)
            if expiry.get((instance, key)) == until:
                self._drop(instance, key)
        if len(heap) > 4 * len(expiry) + 1024:  # renewed entries leave stale ones behind: rebuild now and then
            self.heap = [(until, instance, key) for (instance, key), until in expiry.items()]
            heapq.heapify(self.heap)

    def _prune(self, keep_keys: int) -> None:
        heap, expiry = self.heap, self.expiry_s
        while heap and len(self.holders) > keep_keys:
            until, instance, key = heapq.heappop(heap)
            if expiry.get((instance, key)) == until:
                self._drop(instance, key)
