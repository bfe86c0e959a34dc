"""The share of a workload's traffic that some of a fleet's identical instances receive behind its router: how a
planner simulates a slice of a large fleet in place of all of it.

A router that does not look at prompts (round robin, least outstanding work, most free KV) sends each request to a
slice of `share` of the instances with probability `share`, whatever its prefix: each request is kept
independently. A prefix-aware router keeps a conversation where its prefix is cached, so the slice receives whole
conversations: a request is kept by its conversation's key, the first block of its prompt that few other requests
share (blocks that many requests hold, such as a common system prompt's, say nothing about the conversation; on
the Mooncake conversation trace every request starts with the same block, and its second block is shared by at
most 43 of 12,031)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from phasewise.workload.request import Workload

# a block held by more than COMMON_SHARE of the requests and more than COMMON_REQUESTS of them marks no conversation
# (a conversation's own first block is held by its turns: at most 43 requests on the Mooncake trace)
COMMON_SHARE, COMMON_REQUESTS = 0.01, 50
_GOLDEN = 0x9E3779B97F4A7C15


def conversation_keys(prefix_hashes: list[tuple[int, ...]]) -> np.ndarray:
    """Per request, its conversation's key: the first block hash of its prompt that is not common (held by more
    than COMMON_SHARE and COMMON_REQUESTS of the requests); -1 where every block is common or the prompt has none."""
    holders = Counter(block for blocks in prefix_hashes for block in set(blocks))
    common = max(COMMON_REQUESTS, COMMON_SHARE * len(prefix_hashes))
    return np.array([next((block for block in blocks if holders[block] <= common), -1) for blocks in prefix_hashes],
                    dtype=np.int64)


def _uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per key, the same for equal keys (splitmix64 of key and seed)."""
    z = keys.astype(np.uint64) + np.uint64(((seed + 1) * _GOLDEN) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def traffic_share(workload: Workload, share: float, seed: int, whole_conversations: bool) -> Workload:
    """The requests a slice of `share` of the instances receives, with their arrival times: each request kept with
    probability `share` (seeded), or, with `whole_conversations` and prefix hashes, each conversation kept whole
    (requests without a conversation key kept one by one). At least one request."""
    if share >= 1.0:
        return workload
    draws = np.random.default_rng(seed).random(len(workload))
    if whole_conversations and workload.prefix_hashes is not None:
        keys = conversation_keys(workload.prefix_hashes)
        keyed = keys >= 0
        draws[keyed] = _uniform(keys[keyed], seed)
    kept = np.flatnonzero(draws < share)
    return workload.take(kept if kept.size else np.array([int(np.argmin(draws))]))
