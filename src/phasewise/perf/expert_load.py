"""How unevenly a MoE model's router spreads tokens over its experts, and what that does to the busiest
expert-parallel GPU.

A model's measured routing skew is the share of the routed tokens its busiest 20 % of experts take
(`ModelSpec.expert_top20_share`; 0.2 = uniform). It is read as a Zipf popularity over the experts' ranks,
p_i ~ i^-s, with s solved so that the top 20 % carry that share. Engines place experts on EP ranks by index
(rank j holds experts j E/ep .. (j+1) E/ep - 1), which says nothing of their popularity, so the busiest rank's
expected share is taken over random placements: `busiest_rank_ratio` = E[max over ranks of its experts'
popularity] x ep (1 = perfectly even), by a fixed-seed draw of placements (deterministic, cached).

The same popularity says how many distinct experts a batch touches, whose weights a decode step reads: a token
picks expert i among its top k with probability q_i = min(1, k p_i), so T tokens touch
`expected_distinct_experts` = sum_i 1 - (1 - q_i)^T of them (uniform routing: E (1 - (1 - k/E)^T)). Skewed
routing sends a small batch's tokens to fewer experts than uniform routing, so fewer weights stream.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PLACEMENTS = 512  # random expert-to-rank placements averaged over (fixed seed)


def zipf_popularity(experts: int, top20_share: float) -> np.ndarray:
    """Expert popularities p_i ~ i^-s (descending, summing to 1) whose top 20 % hold `top20_share`."""
    top = max(1, round(0.2 * experts))
    ranks = np.arange(1, experts + 1, dtype=np.float64)

    def share(s: float) -> float:
        w = ranks ** -s
        return float(w[:top].sum() / w.sum())

    lo, hi = 0.0, 8.0
    if not share(lo) <= top20_share <= share(hi):
        raise ValueError(f"a top-20 % share of {top20_share} is outside what {experts} experts allow "
                         f"({share(lo):.3f} .. {share(hi):.3f})")
    for _ in range(60):  # bisection on the monotone share(s)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < top20_share else (lo, mid)
    w = ranks ** -((lo + hi) / 2)
    return w / w.sum()


@lru_cache(maxsize=256)
def busiest_rank_ratio(experts: int, ep: int, top20_share: float) -> float:
    """Expected popularity of the busiest of `ep` ranks over the mean rank's, experts placed at random."""
    if ep <= 1 or experts % ep or top20_share <= 0.2:
        return 1.0
    popularity = zipf_popularity(experts, top20_share)
    rng = np.random.default_rng(0)
    placements = np.argsort(rng.random((PLACEMENTS, experts)), axis=1)  # a random permutation per row
    per_rank = popularity[placements].reshape(PLACEMENTS, ep, experts // ep).sum(axis=2)
    return float(per_rank.max(axis=1).mean() * ep)


@lru_cache(maxsize=256)
def _inclusion(experts: int, top_k: int, top20_share: float) -> np.ndarray:
    """Each expert's probability of being among one token's top-k experts: k x its popularity, at most 1."""
    return np.minimum(1.0, top_k * zipf_popularity(experts, top20_share))


def expected_distinct_experts(experts: int, top_k: int, tokens: float, top20_share: float | None = None) -> float:
    """Expected experts hit by at least one of `tokens` tokens, each routed to `top_k` of `experts`: uniform
    routing when no skew is known (or top20_share <= 0.2), else the Zipf popularity of `zipf_popularity`."""
    if tokens <= 0:
        return 0.0
    if not top20_share or top20_share <= 0.2:
        return experts * (1.0 - (1.0 - top_k / experts) ** tokens)
    missed = (1.0 - _inclusion(experts, top_k, top20_share)) ** tokens
    return float(experts - missed.sum())
