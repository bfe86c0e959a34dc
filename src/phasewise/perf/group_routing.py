"""The ranks a token's routed experts sit on, under the model's routing: each expert alike, or DeepSeek-style
group-limited routing (config.json n_group / topk_group), as the engines' grouped top-k runs it."""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np

__all__ = ["group_counts", "other_ranks_per_token"]

# group_counts' draws: the seed and the tokens drawn. At DeepSeek-V3's shapes, ranks 2-64, six seeds' figures spread
# by a standard deviation of at most 0.0011 (EP 16; 0.0007 at EP 8): within +-0.005 of the expectation
GROUP_SEED = 20250817
GROUP_TOKENS = 40_000


def other_ranks_per_token(ranks: int, k: int, experts: int, groups: int | None = None,
                          kept: int | None = None) -> float:
    """Expected ranks other than a token's own that hold at least one of its `k` routed experts, the `experts` split
    evenly and in order over `ranks` (expert e on rank e x ranks // experts, as DeepEP's and the engines' linear
    placement puts them; a GPU, or a node across them), the token's own rank any of them alike: (ranks - 1) / ranks
    x the ranks hit.

    Without group routing (`groups` None, or every group kept: n_group 1) each of the k experts uniform and
    independent: (ranks - 1)(1 - (1 - 1/ranks)^k). With it (DeepSeek-V3/R1: n_group 8, topk_group 4; arXiv
    2412.19437 section 2.1.2) the engines' grouped top-k (vLLM fused_moe grouped_topk, SGLang's biased_grouped_topk,
    as DeepSeek's MoEGate): a group's score is the sum of its two best experts' scores, the `kept` best groups are
    kept and the k best experts among their experts routed. That rule has no closed form for the ranks hit: the
    experts each group contributes (group_counts) depend on the scores' values, not only their order. So those are
    drawn by a seeded Monte Carlo of the rule under exchangeable (i.i.d. uniform) expert scores, once per shape
    (cached); given them the rest is exact: the groups are exchangeable, so the counts fall on the groups in any
    order alike, and a group's experts alike within it, so a rank with o of a group's S experts misses its c picks
    with probability C(S - o, c) / C(S, c). Another score law moves the figure by about 0.015 (DeepSeek-V3 at EP 8:
    3.449 sigmoid of N(0, 9) scores, 3.460 uniform, 3.477 exponential); "kept groups uniform, then k experts uniform
    among them" would say 3.175 (the group-sum rule concentrates the picks in fewer groups)."""
    if groups is None or (kept if kept is not None else groups) >= groups:
        return (ranks - 1) * (1.0 - (1.0 - 1.0 / ranks) ** k)
    return _grouped_other_ranks(ranks, k, experts, groups, kept)


@lru_cache(maxsize=256)
def _grouped_other_ranks(ranks: int, k: int, experts: int, groups: int, kept: int) -> float:
    """other_ranks_per_token under group routing: each rank's miss probability averaged over group_counts' patterns,
    each pattern's counts falling on the groups in every order alike."""
    size = experts // groups
    patterns, shares = group_counts(k, experts, groups, kept)
    # miss[o, c]: a rank holding o of a group's experts misses all of c picks among the group's experts
    miss = np.array([[math.comb(size - o, c) / math.comb(size, c) for c in range(min(k, size) + 1)]
                     for o in range(size + 1)])
    owner = np.arange(experts) * ranks // experts  # linear placement
    hit = 0.0
    for r in range(ranks):
        held = np.bincount(np.arange(experts)[owner == r] // size, minlength=groups)
        hit += 1.0 - _miss(tuple(sorted(int(o) for o in held if o)), miss, patterns, shares)
    return hit * (ranks - 1) / ranks


def _miss(held: tuple[int, ...], miss: np.ndarray, patterns: np.ndarray, shares: np.ndarray) -> float:
    """P(no pick on a rank holding `held` experts of as many groups): over the patterns, and over which of a
    pattern's counts those groups take (every ordered choice alike)."""
    orders = np.array(list(itertools.permutations(range(patterns.shape[1]), len(held))), dtype=np.int64)
    taken = patterns[:, orders]  # (patterns, orders, held groups): the counts the rank's groups take
    return float(shares @ miss[np.array(held)[None, None, :], taken].prod(axis=2).mean(axis=1))


@lru_cache(maxsize=32)
def group_counts(k: int, experts: int, groups: int, kept: int) -> tuple[np.ndarray, np.ndarray]:
    """(patterns, shares): each pattern the experts each of the `groups` groups contributes to a token's top-k,
    largest first (zeros for the groups without any), and its share of the tokens, under the grouped top-k
    (other_ranks_per_token), by a seeded Monte Carlo of GROUP_TOKENS tokens of i.i.d. uniform expert scores. A
    group's best scores are drawn as the top order statistics of its uniforms (Renyi: the j-th best of S is the
    (j-1)-th times V^(1/(S-j+1)), V uniform; in logs, a sum of exponentials), as many as a token may take from one
    group and at least the two the group's score sums; a cached pair: do not modify the arrays."""
    size = experts // groups
    depth = min(max(k, 2), size)
    rng = np.random.default_rng(GROUP_SEED)
    steps = rng.standard_exponential((GROUP_TOKENS, groups, depth), dtype=np.float32)
    log_best = -np.cumsum(steps / (size - np.arange(depth, dtype=np.float32)), axis=2)  # falling, per group
    score = np.exp(log_best[:, :, :2]).sum(axis=2)
    kept_groups = np.argpartition(-score, kept - 1, axis=1)[:, :kept]
    pool = np.take_along_axis(log_best, kept_groups[:, :, None], axis=1).reshape(GROUP_TOKENS, kept * depth)
    picked = np.argpartition(-pool, k - 1, axis=1)[:, :k] // depth  # the kept group (0 .. kept - 1) of each pick
    counts = -np.sort(-(picked[:, :, None] == np.arange(kept)).sum(axis=1), axis=1)
    codes, tokens = np.unique(counts @ (k + 1) ** np.arange(kept), return_counts=True)
    patterns = np.zeros((len(codes), groups), dtype=np.int64)
    for j in range(kept):
        patterns[:, j] = codes // (k + 1) ** j % (k + 1)
    return patterns, tokens / GROUP_TOKENS
