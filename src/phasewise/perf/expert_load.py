"""How unevenly a MoE model's router spreads tokens over its experts, and what that does to the busiest
expert-parallel GPU.

A model's measured routing skew is the share of the routed tokens its busiest 20 % of experts take
(`ModelSpec.expert_top20_share`; 0.2 = uniform). It is read as a Zipf popularity over the experts' ranks,
p_i ~ i^-s, capped at 1/k (a token picks k distinct experts, so no expert takes more than one of its k rows; the
excess is spread over the others in proportion, water-filling), with s solved so that the capped popularity's top
20 % carry that share. Uncapped, a skew such as Qwen3-235B's 0.65 (128 experts, top-8) gave its top expert 1.16
rows a token, which no routing can. Engines place experts on EP ranks by index
(rank j holds experts j E/ep .. (j+1) E/ep - 1), which says nothing of their popularity, so the busiest rank's
expected share is taken over random placements: `busiest_rank_ratio` = E[max over ranks of its experts'
popularity] x ep (1 = perfectly even), by a fixed-seed draw of placements (deterministic, cached).

The same popularity says how many distinct experts a batch touches, whose weights a decode step reads: a token
picks expert i among its top k with probability q_i = min(1, k p_i), so T tokens touch
`expected_distinct_experts` = sum_i 1 - (1 - q_i)^T of them (uniform routing: E (1 - (1 - k/E)^T)). Skewed
routing sends a small batch's tokens to fewer experts than uniform routing, so fewer weights stream.
And how many row tiles a grouped GEMM runs, which a kernel that expands each expert's weights once per tile of
its rows pays for (`expected_row_tiles`): expert i's rows X_i ~ Poisson(T q_i), and it runs ceil(X_i / R) tiles
of R rows, so the hot experts' many rows cost more expansions than the mean rows per expert would say.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from phasewise.errors import PhasewiseError

PLACEMENTS = 512  # random expert-to-rank placements averaged over (fixed seed)


def zipf_popularity(experts: int, top20_share: float, top_k: int = 1) -> np.ndarray:
    """Expert popularities (descending, summing to 1): p_i ~ i^-s capped at 1 / top_k by water-filling, whose top
    20 % hold `top20_share`."""
    top = max(1, round(0.2 * experts))
    ranks = np.arange(1, experts + 1, dtype=np.float64)

    def popularity(s: float) -> np.ndarray:
        return _capped(ranks ** -s, 1.0 / max(top_k, 1))

    def share(s: float) -> float:
        return float(popularity(s)[:top].sum())

    lo, hi = 0.0, 8.0
    if not share(lo) <= top20_share <= share(hi):
        routing = f"with top-{top_k} routing " if top_k > 1 else ""
        raise ValueError(f"a top-20 % share of {top20_share} is outside what {experts} experts {routing}allow "
                         f"({share(lo):.3f} .. {share(hi):.3f})")
    for _ in range(60):  # bisection on the monotone share(s)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) < top20_share else (lo, mid)
    return popularity((lo + hi) / 2)


def max_rank_ratio(experts: int, top_k: int, ep: int) -> float:
    """The most the busiest of `ep` expert-parallel GPUs can carry over the mean: its experts / ep experts take at
    most min(top_k, experts / ep) of a token's rows, the mean GPU top_k / ep: min(ep, experts / top_k)."""
    return min(float(ep), experts / top_k) if top_k else float(ep)


def _capped(weights: np.ndarray, cap: float) -> np.ndarray:
    """Descending `weights` normalized to sum to 1 with no entry above `cap` (>= 1 / len): the first j entries at
    the cap and the rest in proportion to their weights, for the least j that keeps the rest under it."""
    tail = np.cumsum(weights[::-1])[::-1]  # sum of weights[j:]
    for j in range(len(weights)):
        scale = (1.0 - j * cap) / tail[j]
        if weights[j] * scale <= cap * (1 + 1e-12):
            out = weights * scale
            out[:j] = cap
            return out
    return np.full(len(weights), 1.0 / len(weights))


@lru_cache(maxsize=256)
def busiest_rank_ratio(experts: int, ep: int, top20_share: float, top_k: int = 1) -> float:
    """Expected popularity of the busiest of `ep` ranks over the mean rank's, experts placed at random."""
    if ep <= 1 or experts % ep or top20_share <= 0.2:
        return 1.0
    popularity = zipf_popularity(experts, top20_share, top_k)
    rng = np.random.default_rng(0)
    placements = np.argsort(rng.random((PLACEMENTS, experts)), axis=1)  # a random permutation per row
    per_rank = popularity[placements].reshape(PLACEMENTS, ep, experts // ep).sum(axis=2)
    return float(per_rank.max(axis=1).mean() * ep)


@lru_cache(maxsize=256)
def _inclusion(experts: int, top_k: int, top20_share: float) -> np.ndarray:
    """Each expert's probability of being among one token's top-k experts: k x its popularity, at most 1."""
    return np.minimum(1.0, top_k * zipf_popularity(experts, top20_share, top_k))


def expected_distinct_experts(experts: int, top_k: int, tokens: float, top20_share: float | None = None) -> float:
    """Expected experts hit by at least one of `tokens` tokens, each routed to `top_k` of `experts`: uniform
    routing when no skew is known (or top20_share <= 0.2), else the Zipf popularity of `zipf_popularity`."""
    if tokens <= 0:
        return 0.0
    if not top20_share or top20_share <= 0.2:
        return experts * (1.0 - (1.0 - top_k / experts) ** tokens)
    missed = (1.0 - _inclusion(experts, top_k, top20_share)) ** tokens
    return float(experts - missed.sum())


@lru_cache(maxsize=4096)  # a MoE layer's two GEMMs ask for the same tiles, iteration after iteration
def expected_row_tiles(experts: int, top_k: int, tokens: float, tile_rows: int,
                       top20_share: float | None = None) -> float:
    """Expected row tiles of `tile_rows` rows a grouped GEMM runs over the experts, sum_i E[ceil(X_i / R)], X_i
    the rows routed to expert i: E[ceil(X / R)] = sum_{j >= 0} P(X > jR), with P(X > 0) = 1 - (1 - q_i)^T exact
    and the terms j >= 1 from X_i ~ Poisson(T q_i) by the continuity-corrected normal approximation."""
    if tokens <= 0:
        return 0.0
    if not top20_share or top20_share <= 0.2:
        inclusion = np.full(experts, min(1.0, top_k / experts))
    else:
        inclusion = _inclusion(experts, top_k, top20_share)
    hit = float((1.0 - (1.0 - inclusion) ** tokens).sum())
    mean = tokens * inclusion
    spread = np.sqrt(np.maximum(mean, 1e-12))
    # Where the spread is several tiles the rounding averages out: sum_{j >= 1} P(X > jR) = (mean - 0.5) / R - 1/2
    # (Euler-Maclaurin; the periodic remainder ~exp(-2 pi^2 sigma^2 / R^2), below 1e-70 from 3 tiles)
    smooth = spread >= 3.0 * tile_rows
    total = hit + float(((mean[smooth] - 0.5) / tile_rows - 0.5).sum())
    mean, spread = mean[~smooth], spread[~smooth]
    if not mean.size:
        return total
    # P(X > jR) is 1 to within 1e-15 below mean - 8 sigma and 0 above mean + 8 sigma: those thresholds are counted,
    # the few tiles between them evaluated
    certain = np.maximum(0, np.floor((mean - 8.0 * spread - 0.5) / tile_rows)).astype(np.int64)
    window = int((16.0 * spread.max()) // tile_rows) + 2
    thresholds = (certain[None, :] + np.arange(1, window + 1, dtype=np.float64)[:, None]) * tile_rows
    z = (thresholds + 0.5 - mean) / spread
    return total + float(certain.sum()) + float((0.5 * _erfc(z / math.sqrt(2.0))).sum())


def _erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7), elementwise."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    tail = poly * np.exp(-a * a)
    return np.where(x >= 0, tail, 2.0 - tail)


def with_routing_skew(model, top20_share: float | None, flag: str = "--routing-skew"):
    """`model` (a ModelSpec) routing its traffic with `top20_share` (the busiest 20 % of the experts' share of the
    routed tokens; 0.2 = uniform), e.g. a user's own measurement for their traffic, in place of the catalog's
    (models.yaml routing_skew, measured or fitted on other traffic); None: `model` as it is."""
    if top20_share is None:
        return model
    if not model.num_experts:
        raise PhasewiseError(f"{flag} applies to mixture-of-experts models; {model.name} is dense")
    if not 0.2 <= top20_share < 1:
        raise PhasewiseError(f"{flag} is the busiest 20 % of the experts' share of the routed tokens: from 0.2 "
                             f"(uniform) to below 1 (got {top20_share})")
    if top20_share > 0.2:
        try:
            zipf_popularity(model.num_experts, top20_share, model.experts_per_token or 1)
        except ValueError as exc:
            raise PhasewiseError(f"{flag}: {exc}") from None
    return model.model_copy(update={"expert_top20_share": top20_share if top20_share > 0.2 else None})
