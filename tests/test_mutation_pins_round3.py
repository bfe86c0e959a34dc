"""Pins for behaviours a third mutation-testing round found unguarded (SLO and goodput figures, percentiles, prefix
caches and their attention-DP ranks, routers' tie-breaks, trace loading and rescaling, benchmark clients): each test
fails under the mutation its docstring names (the reviewer's names, /tmp/s110/review/mutation3) and states the
behaviour by a hand-computed number or an exact rule of the engine's or client's source."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.sim import simulate
from phasewise.sim.api import run
from phasewise.sim.deployment import collocated
from phasewise.sim.instance import Instance
from phasewise.sim.kv import KVBlocks
from phasewise.sim.metrics import SimResult, Slo, TbtHistogram, dist_ms, miss_allowance, slo_met
from phasewise.sim.prefix_cache import PrefixCache, summarize
from phasewise.sim.prefix_cache_ranks import RankedPrefixCache
from phasewise.sim.prompt_queue import PromptQueue
from phasewise.sim.request import SimRequest
from phasewise.sim.routers import make_router
from phasewise.sim.routers.dynamo_kv import active_decode_blocks
from phasewise.workload import ClosedLoop, load_trace
from phasewise.workload.generators import LengthDist
from phasewise.workload.mooncake import block_keys, reusable_prompt_share
from phasewise.workload.request import Workload
from phasewise.workload.traffic_share import conversation_keys

LLAMA = "meta-llama/Llama-3.1-8B"
NAN = float("nan")


def _result(ttft_s, tpot_s, output_tokens, *, max_tbt_s=None, gpus=1.0, slo=Slo(), gaps_s=(), measured=None,
            rejected=0) -> SimResult:
    """A SimResult of requests arriving one a second, each finishing TTFT + TPOT x (output - 1) after it arrives
    (a NaN TTFT: never finished); `gaps_s`: the inter-token gaps binned in its TBT histogram."""
    ttft, tpot, out = (np.asarray(x, dtype=float) for x in (ttft_s, tpot_s, output_tokens))
    n = len(ttft)
    arrival = np.arange(n, dtype=float)
    first = arrival + ttft
    finish = first + np.where(out > 1, tpot * (out - 1), 0.0)
    tbt = TbtHistogram()
    tbt.add(np.asarray(gaps_s, dtype=float))
    return SimResult(arrival, np.full(n, 512), out.astype(np.int64), first, finish, arrival, tpot,
                     tpot if max_tbt_s is None else np.asarray(max_tbt_s, dtype=float), np.zeros(n, np.int64),
                     np.zeros(n, np.int64), tbt, [], gpus, 0.0, slo, rejected=rejected,
                     measured=None if measured is None else np.asarray(measured, dtype=bool))


# --- sim/metrics.py: SLOs, goodput, aiperf's names (findings 1, 2, 3, 7, 12; X22) ---------------------------------

def test_a_one_token_answer_meets_the_slo_on_its_ttft_alone():
    """X2 (`output_tokens <= 1` -> `< 1`). A one-token answer has no TPOT and no gap between tokens (its TPOT is
    NaN, as the simulator records it): with TTFT <= 1000 ms and TPOT <= 50 ms it attains on its TTFT alone (DistServe's
    SLO attainment; the summary's tpot_attainment counts such a finished request as met)."""
    slo = Slo(ttft_ms=1000, tpot_ms=50, max_tbt_ms=100)
    assert bool(slo_met(slo, 0.5, NAN, NAN, 1))
    assert not bool(slo_met(slo, 1.5, NAN, NAN, 1))  # its TTFT still counts
    s = _result([0.5, 0.5], [NAN, NAN], [1, 1], slo=slo).summary()
    assert s["slo"]["attainment"] == 1.0
    assert s["goodput"]["requests_per_s"] == s["throughput"]["requests_per_s"] == pytest.approx(2 / 1.5)


def test_a_gap_exactly_at_the_tbt_limit_attains():
    """X3 and X21 (`<=` -> `<` in slo_met's TBT test and in the summary's tbt_attainment). The SLO is "every TBT
    <= --slo-tbt-ms" (Slo's docstring; README): a request whose largest gap is exactly 50 ms attains a 50 ms limit, in
    the attainment and in tbt_attainment alike."""
    slo = Slo(max_tbt_ms=50)
    assert bool(slo_met(slo, 0.1, 0.01, 0.05, 10))
    s = _result([0.1, 0.1], [0.01, 0.01], [10, 10], max_tbt_s=[0.05, 0.05], slo=slo).summary()["slo"]
    assert s["tbt_attainment"] == s["attainment"] == 1.0


def test_goodput_per_gpu_is_the_goodput_over_the_gpus():
    """X12 (`/ self.gpus` dropped). 4 requests arriving 1 s apart, each attaining its SLO and finishing 0.2 s after
    it arrives, over 3.2 s on 2 GPUs: goodput 4 / 3.2 = 1.25 req/s, per GPU 0.625."""
    s = _result([0.1] * 4, [0.01] * 4, [11] * 4, gpus=2, slo=Slo(ttft_ms=1000)).summary()
    assert s["goodput"]["requests_per_s"] == pytest.approx(1.25)
    assert s["goodput"]["requests_per_s_per_gpu"] == pytest.approx(0.625)


def test_aiperf_inter_token_latency_is_each_requests_tpot():
    """X13 (`stats(s["tpot_ms"])` -> `stats(s["tbt_ms"])`). aiperf's inter_token_latency is per request,
    (request_latency - time_to_first_token) / (output_sequence_length - 1) (aiperf
    metrics/types/inter_token_latency_metric.py): the TPOTs 10 and 20 ms give avg and p50 15 ms, whatever the
    pooled gaps (here 5 and 40 ms)."""
    s = _result([0.1, 0.1], [0.01, 0.02], [11, 11], gaps_s=[0.005, 0.04]).summary()
    itl = s["aiperf"]["inter_token_latency"]
    assert itl["avg"] == pytest.approx(15.0) and itl["p50"] == pytest.approx(15.0)
    assert itl == {"unit": "ms", **{k: s["tpot_ms"][k] for k in ("p50", "p90", "p99")}, "avg": s["tpot_ms"]["mean"]}


def test_a_closed_loops_rejected_count_is_its_measured_requests():
    """X22 (`int(m.sum()) - done` -> `self.rejected`). A benchmark client counts only its measured requests: of 2
    measured and 1 warm-up request, one measured and the warm-up one rejected, the summary's `rejected` is 1
    (`rejected_by` keeps every request's, warm-up included)."""
    res = _result([0.1, NAN, NAN], [0.01] * 3, [11] * 3, measured=[True, True, False], rejected=2)
    res.rejected_by = {"beyond_context": 2}
    s = res.summary()
    assert (s["requests"], s["completed"], s["rejected"], s["warmup_requests"]) == (2, 1, 1, 1)
    assert s["rejected_by"] == {"beyond_context": 2}


@pytest.mark.parametrize(("requests", "target", "misses"), [(10, 0.9, 1), (100, 0.9, 10), (20, 0.95, 1), (3, 1.0, 0)])
def test_the_miss_allowance_at_an_exact_boundary(requests, target, misses):
    """X4 (`>= target` -> `> target`). miss_allowance is the most misses with met / requests still >= target: 9 of
    10 meet 0.9 exactly, so one may miss; 90 of 100 likewise, so ten (plan's early stop reads it)."""
    assert miss_allowance(requests, target) == misses
    assert (requests - misses) / requests >= target


# --- sim/metrics.py: percentiles (finding 6; X7) ---------------------------------------------------------------------

def test_the_tbt_histogram_median_of_three_gaps_is_the_middle_one():
    """X6 (searchsorted side "right" -> "left"). Gaps of 10, 20 and 30 ms: the median is 20 ms (numpy's, and vLLM's
    np.percentile), within the histogram's 0.12 % bins."""
    h = TbtHistogram()
    h.add(np.array([0.010, 0.020, 0.030]))
    assert h.figures()["p50"] == pytest.approx(20.0, rel=1.2e-3)


def test_the_tbt_histogram_tail_percentiles_follow_numpy():
    """X5 (rank q / 100 x (n - 1) -> q / 100 x n). Gaps of 1, 2, ..., 100 ms: numpy's p90 and p99 are 90.1 and 99.01
    ms (rank q / 100 x (n - 1), as vLLM's np.percentile); the histogram's are within 0.2 % of them (its bin, the
    0.12 % it claims, and the sample below the rank), not the next sample up (91, 100 ms: 1 % off)."""
    gaps = np.arange(1, 101) / 1e3
    h = TbtHistogram()
    h.add(gaps)
    f = h.figures()
    for q in (90, 99):
        assert f[f"p{q}"] == pytest.approx(float(np.percentile(gaps * 1e3, q)), rel=2e-3)


@pytest.mark.parametrize("gap_ms", [10.0, 10.01, 10.02, 33.3, 0.5])
def test_a_tbt_histogram_percentile_is_within_its_claimed_error(gap_ms):
    """X7 (the bin's upper edge in place of its centre). The histogram's bins are 0.23 % wide and a percentile is
    its bin's (geometric) centre: within 0.12 % of the gap (metrics.py's comment); 10 ms lies on a bin's lower
    edge, 0.23 % from that bin's upper edge."""
    h = TbtHistogram()
    h.add(np.full(7, gap_ms / 1e3))
    for q in ("p50", "p90", "p99"):
        assert h.figures()[q] == pytest.approx(gap_ms, rel=1.2e-3)


def test_latency_percentiles_interpolate_as_numpy():
    """X20 (np.percentile -> method='lower'). TTFT, TPOT and E2E percentiles are numpy's linear interpolation, as
    vLLM's and SGLang's benchmark clients compute them: of 10, 20, 30, 40 ms, p50 25, p90 37, p99 39.7 ms."""
    d = dist_ms(np.array([0.010, 0.020, 0.030, 0.040]))
    assert (d["p50"], d["p90"], d["p99"]) == pytest.approx((25.0, 37.0, 39.7))


# --- workload/mooncake.py, sim/prefix_cache.py (findings 5, 8, 9, 12; P4) -----------------------------------------

def _cache(capacity_blocks: int = 1000) -> PrefixCache:
    kv = KVBlocks(capacity=capacity_blocks, block_size=16)  # 32 engine blocks per 512-token prefix block
    kv.prefix = PrefixCache(kv)
    return kv.prefix


def _admit(cache, req: SimRequest) -> int:
    """Admit `req` as the instance does (probe, then acquire its blocks); its prompt tokens the hit skips."""
    hit, held = cache.probe(req)
    return cache.acquire(req, cache.kv.blocks_for(req.prompt), hit, held)


def _leave(cache, req: SimRequest) -> None:
    cache.kv.free_blocks(cache.kv.blocks_for(req.prompt), req)


def test_block_keys_chain_the_whole_prefix():
    """M3 (`hash((chain, h))` -> `hash((0, h))`). A block is keyed by the chained hash of every id up to it (README:
    "blocks keyed by the chained hash of their prefix"): equal leading ids give equal keys, and an id seen at another
    position after another prefix is another key, so rows [1, 2, 3] then [2, 9, 4] share nothing."""
    first, second = block_keys((1, 2, 3), 1100), block_keys((2, 9, 4), 1100)
    assert not set(first) & set(second)
    assert block_keys((1, 2, 8), 1100) == first  # 1,100 tokens: two full blocks, both keyed by ids 1, 2
    cache = _cache()
    _admit(cache, SimRequest(0, 0.0, 1100, 8, prefix=(1, 2, 3)))
    late = SimRequest(1, 1.0, 1100, 8, prefix=(2, 9, 4))
    assert cache.matched_blocks(late) == 0 and _admit(cache, late) == 0


def test_a_cache_without_a_store_fetches_nothing_from_one():
    """P5 (`i < hit` -> `i <= hit`). Only the leading hit's blocks found in host memory or the shared store are
    loaded or fetched; a block past the hit is computed. Without either tier a cold prompt and a warm one (hit of 2
    blocks) count no store hits and wait for no copy."""
    cache = _cache()
    cold, warm = SimRequest(0, 0.0, 1600, 8, prefix=(1, 2, 3, 4)), SimRequest(1, 0.0, 1600, 8, prefix=(1, 2, 7, 8))
    assert _admit(cache, cold) == 0 and _admit(cache, warm) == 1024
    assert cache.figures()["store_hit_blocks"] == 0 and cold.kv_load_s == warm.kv_load_s == 0.0
    assert summarize([cache])["store_hit_tokens"] == 0


def test_eviction_and_capacity_figures_are_in_their_units():
    """P11 (evicted_tokens x key_tokens) and P17 (gpu_capacity_blocks in engine blocks). 100 engine blocks of 16
    tokens hold 3 whole 512-token prefix blocks. A 1,100-token prompt leaves 2 idle prefix blocks (64 engine blocks);
    another prompt of 69 blocks evicts both: evicted_prefix_blocks 2, evicted_tokens 2 x 512 = 1,024 tokens of KV."""
    cache = _cache(100)
    first = SimRequest(0, 0.0, 1100, 8, prefix=(1, 2, 3))
    _admit(cache, first)
    _leave(cache, first)
    _admit(cache, SimRequest(1, 0.0, 1100, 8, prefix=(5, 6, 7)))
    f = cache.figures()
    assert (f["evicted_prefix_blocks"], f["evicted_tokens"], f["gpu_capacity_blocks"]) == (2, 1024, 3)


def test_saved_prefill_tokens_count_recomputations_hits():
    """P7 (recompute_hit_tokens not added) and P12 (saved_prefill_tokens = hit_tokens). A preempted request's
    recomputation skips its cached prefix too (README: saved prefill tokens; summarize: "recomputations' hits
    included"): a first admission hitting 1,024 tokens, then preempted and recomputed with the same hit, saves 2,048
    prefill tokens; hit_tokens keeps the first admissions' 1,024 (vLLM's PrefixCacheStats counts them apart)."""
    cache = _cache()
    earlier = SimRequest(0, 0.0, 1100, 8, prefix=(1, 2, 3))
    _admit(cache, earlier)
    _leave(cache, earlier)
    req = SimRequest(1, 0.0, 1100, 8, prefix=(1, 2, 3))
    assert _admit(cache, req) == 1024
    _leave(cache, req)
    req.preemptions = 1
    assert _admit(cache, req) == 1024
    total = summarize([cache])
    assert (total["hit_tokens"], total["recompute_hit_tokens"], total["saved_prefill_tokens"]) == (1024, 1024, 2048)


def test_a_routers_match_stops_where_a_lookup_stops():
    """P4 (matched_blocks reads every key, not the first lookup_blocks()). The engine computes a prompt's last token
    (vLLM caps a hit at prompt - 1 tokens), so of a 1,024-token prompt (2 whole blocks) cached whole, a lookup can hit
    1 block: the router's score is that, as the admission's probe finds."""
    cache = _cache()
    first = SimRequest(0, 0.0, 1024, 8, prefix=(1, 2))
    _admit(cache, first)
    _leave(cache, first)
    again = SimRequest(1, 0.0, 1024, 8, prefix=(1, 2))
    assert cache.matched_blocks(again) == cache.probe(again)[0] == 1


def test_the_last_block_of_a_whole_block_prompt_is_not_reusable():
    """M7 (reusable_prompt_share counts every block). Two identical 1,024-token prompts: the second reuses 1 block
    (512 tokens; its last block is computed, as vLLM computes the last prompt token) of 2,048 prompt tokens: 0.25."""
    assert reusable_prompt_share([(1, 2), (1, 2)], [1024, 1024]) == 0.25


# --- sim/prefix_cache_ranks.py: attention-DP dispatch and shares (finding 11; PR4, PR6, PR7) ----------------------

def test_attention_dp_dispatch_follows_each_engines_rule():
    """PR1 (4 x waiting + running -> waiting + running) and PR3 (TensorRT-LLM's key reordered). README: "vLLM the
    rank with the lowest 4 x waiting + running" (DPLBAsyncMPClient): waiting [1, 0], running [0, 3] score 4 and 3,
    rank 1. "TensorRT-LLM the rank with the fewest active prompt tokens among those under the mean request count":
    active [1, 2, 3] (mean rounded up 3) leaves ranks 0 and 1, whose 9,000 and 200 tokens give rank 1."""
    vllm = RankedPrefixCache(KVBlocks(64), 2, "least_loaded", [None, None])
    vllm.waiting, vllm.running = [1, 0], [0, 3]
    assert vllm.assign(SimRequest(0, 0.0, 600, 4, prefix=(1, 2))) == 1
    trt = RankedPrefixCache(KVBlocks(64), 3, "trtllm", [None] * 3)
    trt.waiting, trt.running, trt.active_tokens = [0, 0, 0], [1, 2, 3], [9000, 200, 50]
    assert trt.assign(SimRequest(1, 0.0, 600, 4, prefix=(1, 2))) == 1


def test_the_instances_blocks_split_into_rank_shares_one_extra_each_to_the_first():
    """PR7 (the remainder all to rank 0). 10 blocks over 4 attention-DP ranks: shares 3, 3, 2, 2, each rank's cache
    over its own share (a block belongs to one rank; the memory model's pool is per rank)."""
    ranked = RankedPrefixCache(KVBlocks(10), 4, "round_robin", [None] * 4)
    assert ranked.shares == [3, 3, 2, 2]
    assert [c.capacity for c in ranked.ranks] == [3, 3, 2, 2]


def _ranked(rank_prompts: list[tuple[int, int, tuple]], release: list[int]) -> tuple[RankedPrefixCache, list]:
    """4 attention-DP ranks of 128 engine blocks (4 prefix blocks) each; requests (rank, prompt tokens, prefix)
    admitted in turn on their ranks, then those at `release` finished (their prefix blocks idle on their rank)."""
    kv = KVBlocks(capacity=512, block_size=16)
    ranked = kv.prefix = RankedPrefixCache(kv, 4, "round_robin", [None] * 4)
    reqs = []
    for i, (rank, prompt, prefix) in enumerate(rank_prompts):
        req = SimRequest(i, 0.0, prompt, 4, prefix=prefix)
        ranked.next_rank = rank  # round robin's turn falls on `rank`
        hit, held = ranked.probe(req)
        ranked.acquire(req, kv.blocks_for(prompt), hit, held)
        reqs.append(req)
    for i in release:
        kv.free_blocks(kv.blocks_for(reqs[i].prompt), reqs[i])
    return ranked, reqs


def _admit_on(ranked, rank: int, prompt: int, prefix: tuple) -> None:
    ranked.next_rank = rank
    req = SimRequest(99, 0.0, prompt, 4, prefix=prefix)
    ranked.acquire(req, ranked.kv.blocks_for(prompt), 0, 0)


def test_a_borrowing_rank_takes_each_over_share_ranks_excess_in_turn():
    """PR6 (the fullest rank's eviction not capped at its excess). Ranks 1 and 2 keep 64 and 32 blocks of idle
    cache beyond their shares of 128 (64 in use + 128 idle, 64 + 96); rank 0's 192-block prompt puts the instance
    96 blocks over. The idle blocks go where a rank keeps more than its share, the most over first, each rank down
    to its share: 64 from rank 1, then 32 from rank 2, and no rank keeps idle blocks beyond its share."""
    b, c = 1024, 1536
    ranked, _ = _ranked([(0, b, (1, 2)), (1, b, (10, 11)), (1, b, (12, 13)), (1, b, (14, 15)),
                         (2, c, (20, 21, 22)), (2, b, (23, 24))], release=[1, 2, 4])
    _admit_on(ranked, 0, 3072, tuple(range(30, 36)))
    assert [cache.evicted_blocks for cache in ranked.ranks] == [0, 64, 32, 0]
    assert ranked.borrowed_blocks == 96
    for r in (1, 2, 3):
        assert ranked.used[r] + ranked.ranks[r].idle_blocks <= ranked.shares[r]


def test_ranks_equally_over_their_shares_lend_the_lower_rank_first():
    """PR4 (`e > excess` -> `>=`). Ranks 1 and 2 each keep 64 blocks of idle cache beyond their shares; rank 0's
    96-block prompt puts the instance 32 blocks over: one prefix block goes, from rank 1, the lower of the two
    equally over (the simulator's own tie rule, as its dispatch policies take the lower rank on a tie; the
    engines have no shared pool to borrow from)."""
    b = 1024
    ranked, _ = _ranked([(0, b, (1, 2)), (1, b, (10, 11)), (1, b, (12, 13)), (1, b, (14, 15)),
                         (2, b, (20, 21)), (2, b, (22, 23)), (2, b, (24, 25))], release=[1, 2, 4, 5])
    _admit_on(ranked, 0, 1536, (30, 31, 32))
    assert [cache.evicted_blocks for cache in ranked.ranks] == [0, 32, 0, 0]


# --- sim/routers: tie-breaks and thresholds (finding 4; RT3, RT6, RT7, RT8, RT10, RT12) -------------------------

class _Worker(SimpleNamespace):
    """The parts of an Instance the routers read, over a real KV pool and prefix cache."""

    prefill_tokens_pending = Instance.prefill_tokens_pending

    def gauges(self):
        return 0, 0, self.kv.used


def _worker(outstanding: int = 0, requests: int = 0, role: str = "collocated", frontend_tokens: int = 0,
            holds: SimRequest | None = None, cached: SimRequest | None = None) -> _Worker:
    """`requests` running; `holds`: a request still running there (its blocks in use); `cached`: a finished one
    (its prefix blocks idle in the cache)."""
    kv = KVBlocks(capacity=4000, block_size=16)
    kv.prefix = PrefixCache(kv)
    for req in (holds, cached):
        if req is not None:
            _admit(kv.prefix, req)
    if cached is not None:
        _leave(kv.prefix, cached)
    return _Worker(kv=kv, role=role, frontend_prompt_tokens=frontend_tokens, waiting=PromptQueue(), prefilling=[],
                   running=SimpleNamespace(n=requests), outstanding=outstanding, pending_transfers=[],
                   cluster=SimpleNamespace(check=True))


def _prompt(i: int = 0) -> SimRequest:
    return SimRequest(i, 0.0, 1100, 8, prefix=(1, 2, 3))  # 2 whole prefix blocks, both shareable


def test_kv_aware_ties_go_to_the_least_outstanding_work():
    """RT2 (`-i.outstanding` -> `i.outstanding`). kv_aware: the most free KV blocks, ties the least outstanding work
    (routers/kv_aware.py): two idle pools alike, 500 and 100 tokens outstanding: the second."""
    busy, light = _worker(outstanding=500), _worker(outstanding=100)
    assert make_router("kv_aware", [busy, light]).pick_for(_prompt()) is light


def test_prefix_aware_ties_on_the_match_go_to_the_least_outstanding_work():
    """RT5 (the tie to the most outstanding). Both instances cache the prompt's 2 blocks: the least outstanding work
    (routers/prefix_aware.py: "ties: the least outstanding work")."""
    busy, light = _worker(outstanding=900, cached=_prompt(7)), _worker(outstanding=100, cached=_prompt(8))
    assert make_router("prefix_aware", [busy, light]).pick_for(_prompt()) is light
    assert make_router("prefix_aware", [light, busy]).pick_for(_prompt()) is light


def test_prefix_aware_takes_the_cache_only_above_half_the_prompts_tokens():
    """sgl-router's cache_aware (src/policies/cache_aware.rs): the best match is taken when `match_rate >
    cache_threshold`, the matched tokens over the prompt's (0.5). A 1,100-token prompt whose first 512-token block is
    cached on the busier instance: 512 / 1,100 = 0.47, not above 0.5, so the least outstanding work takes it (by
    blocks, 1 of its 2 whole blocks, the rule took the cache); a 1,000-token prompt: 512 / 1,000 = 0.51, the cache."""
    warm = _worker(outstanding=900, cached=SimRequest(7, 0.0, 600, 8, prefix=(1, 2)))
    cold = _worker(outstanding=100)
    assert make_router("prefix_aware", [warm, cold]).pick_for(SimRequest(0, 0.0, 1100, 8, prefix=(1, 2, 3))) is cold
    assert make_router("prefix_aware", [warm, cold]).pick_for(SimRequest(1, 0.0, 1000, 8, prefix=(1, 2))) is warm


def test_prefix_aware_balances_only_past_the_absolute_threshold():
    """RT3 (`> BALANCE_ABS_REQUESTS` -> `>=`). sgl-router's cache_aware (src/policies/cache_aware.rs): imbalanced
    when `max_load - min_load > balance_abs_threshold` (32) and max > 1.0001 x min. 33 against 1 request is balanced:
    the instance caching the prompt; 34 against 1 is not: the least loaded."""
    cold = _worker(requests=1)
    assert make_router("prefix_aware", [_worker(requests=33, cached=_prompt(7)), cold]).pick_for(_prompt()) is not cold
    assert make_router("prefix_aware", [_worker(requests=34, cached=_prompt(7)), cold]).pick_for(_prompt()) is cold


def test_prefix_aware_under_imbalance_takes_the_fewest_requests():
    """RT6 (the key reordered to outstanding work first). Imbalanced, sgl-router takes the worker with the fewest
    requests in flight (min_by_key(load)): 2 requests with 5,000 tokens outstanding over 40 with 10."""
    many, few = _worker(requests=40, outstanding=10), _worker(requests=2, outstanding=5000)
    assert make_router("prefix_aware", [many, few, _worker(requests=40)]).pick_for(_prompt()) is few


def test_dynamo_kv_counts_only_the_new_blocks_a_held_prefix_does_not_cover():
    """RT7 (new_blocks ignores the held blocks). A 1,600-token prompt (100 engine blocks) whose first 2 prefix
    blocks (64 engine blocks) a running 1,100-token request holds: (1,600 - 1,024) / 16 = 36 prefill blocks, the
    69 blocks in use, and 100 - 64 = 36 new blocks: 141 (Dynamo's decode term counts the request's blocks other
    requests there do not already hold)."""
    warm = _worker(holds=SimRequest(0, 0.0, 1100, 50, prefix=(11, 12, 99)))
    request = SimRequest(1, 0.0, 1600, 50, prefix=(11, 12, 13, 14))
    assert make_router("dynamo_kv", [warm, _worker()]).cost_blocks(warm, request) == pytest.approx(36 + 69 + 36)


def test_dynamo_kv_ties_go_to_the_least_outstanding_work():
    """RT8 (`inst.outstanding` -> `-inst.outstanding`) and RT12 (the decode choice without its tie-break). Equal
    costs: the least outstanding work (routers/dynamo_kv.py: "ties: the least outstanding work"), for a request and
    for a KV transfer to a decode instance alike."""
    busy, light = _worker(outstanding=700), _worker(outstanding=100)
    assert make_router("dynamo_kv", [busy, light]).pick_for(SimRequest(0, 0.0, 1000, 8)) is light
    busy_d, light_d = _worker(outstanding=700, role="decode"), _worker(outstanding=100, role="decode")
    assert make_router("dynamo_kv", [busy_d, light_d]).pick() is light_d


def test_dynamo_kv_decode_blocks_count_the_prompts_in_the_frontend():
    """RT10 (frontend_prompt_tokens dropped). Dynamo counts a request's blocks from the moment it routes it: 40
    blocks in use, 320 prompt tokens in the engine's frontend and 160 queued, of 16 tokens a block: 40 + 30 = 70."""
    inst = _worker(frontend_tokens=320)
    inst.kv.allocate(40)
    inst.waiting.append(SimRequest(5, 0.0, 160, 8))
    assert active_decode_blocks(inst) == pytest.approx(70)


# --- workload/request.py: rescaling and looping (finding 10) ----------------------------------------------------

def _five(gap_s: float = 1.0) -> Workload:
    return Workload(np.arange(5) * gap_s, np.full(5, 100), np.full(5, 10))


def test_a_traces_rate_is_its_gaps_over_its_span_and_rescaling_keeps_it():
    """R2 (mean_rate_rps = n / span). 5 requests 1 s apart: 4 gaps over 4 s, 1 req/s; rescaled to 2 req/s they span
    (5 - 1) / 2 = 2 s (span_at_rate_s), each gap 0.5 s."""
    w = _five()
    assert w.mean_rate_rps == 1.0
    s = w.scaled_to_rate(2.0)
    assert s.duration_s == pytest.approx(2.0) == w.span_at_rate_s(2.0)
    assert s.mean_rate_rps == pytest.approx(2.0)


def test_a_looped_trace_keeps_its_mean_gap_and_covers_the_duration():
    """R3 (the loop's period 1 s past the span, not one mean gap) and R4 (copies rounded down). 5 requests 0.5 s
    apart (period 2.5 s: each copy starts one mean gap after the last ends): looped to 5 s, 2 copies, 10 requests
    0.5 s apart; to 7.25 s, 3 copies (the copies' periods cover it), 15 requests to 7 s."""
    ten = _five(0.5).looped(5.0)
    assert len(ten) == 10 and np.allclose(np.diff(ten.arrival_s), 0.5)
    longer = _five(0.5).looped(7.25)
    assert len(longer) == 15 and longer.arrival_s[-1] == pytest.approx(7.0)


# --- workload/traces.py, mooncake.py: loading (finding 12; T3, T5) ------------------------------------------------

def test_a_trace_limit_takes_exactly_that_many_requests():
    """M10 (`>= limit` -> `> limit`). --trace-limit 5 reads the first 5 requests, of a Mooncake trace as of a CSV."""
    assert len(load_trace("mooncake", 5)) == len(load_trace("azure-conv", 5)) == 5


def test_arrivals_start_at_zero(tmp_path):
    """M9 and T1 (the first arrival not subtracted). load_trace: "arrivals start at 0": a Mooncake trace whose
    timestamps start at 60,000 ms and a CSV whose TIMESTAMP starts at 100 s both arrive from 0 s."""
    moon = tmp_path / "late.jsonl"
    moon.write_text("".join(json.dumps({"timestamp": 60000 + 500 * i, "input_length": 700, "output_length": 20,
                                        "hash_ids": [i, 99]}) + "\n" for i in range(4)))
    assert load_trace(str(moon)).arrival_s.tolist() == [0.0, 0.5, 1.0, 1.5]
    csv = tmp_path / "late.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n100,10,5\n101.5,10,5\n")
    assert load_trace(str(csv)).arrival_s.tolist() == [0.0, 1.5]


def test_iso_dates_at_one_instant_are_sorted(tmp_path):
    """T3 (`<` -> `<=` on the ISO-date path). Requests arriving at one instant are in order (as the numeric path
    accepts them): two rows stamped 2023-11-16 18:15:46.6805900, as Azure's trace writes them, load at 0 s both."""
    path = tmp_path / "same.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "2023-11-16 18:15:46.6805900,10,5\n" * 2)
    assert load_trace(str(path)).arrival_s.tolist() == [0.0, 0.0]


@pytest.fixture
def new_york_time(monkeypatch):
    """This process's local zone set to US Eastern (POSIX rule: no tz database needed), restored after."""
    monkeypatch.setenv("TZ", "EST5EDT,M3.2.0,M11.1.0")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_iso_dates_are_utc_whatever_the_local_zone(tmp_path, new_york_time):
    """T5 (naive date-times read in the machine's zone). A date-time without an offset is UTC (traces.py _timestamp:
    "not this machine's zone: its daylight-saving change would move arrivals"): 01:30 and 02:30 on 2023-11-05, the
    night US Eastern time falls back, are 3,600 s apart (read as Eastern time, 7,200)."""
    path = tmp_path / "dst.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-05 01:30:00,10,5\n2023-11-05 02:30:00,10,5\n")
    assert load_trace(str(path)).arrival_s.tolist() == [0.0, 3600.0]


def test_a_conversation_key_may_be_held_by_exactly_the_common_count():
    """S1 (`<= common` -> `< common`). A block is common when held by MORE than 50 requests (and 1 %): a block 50
    requests hold still keys their conversation; one 51 hold does not (each request's own block does)."""
    assert set(conversation_keys([(7, 100 + i) for i in range(50)]).tolist()) == {7}
    assert conversation_keys([(7, 100 + i) for i in range(51)]).tolist() == [100 + i for i in range(51)]


# --- workload/generators.py, sim/bench_clients.py (finding 12; B1) ----------------------------------------------

def test_uniform_lengths_stay_within_mean_plus_minus_spread():
    """G7 (floor -> round). Uniform 1,000 +- 50 % draws whole tokens in [500, 1,500] (never 1,501)."""
    x = LengthDist("uniform", 1000, 0.5).sample(np.random.default_rng(0), 200_000)
    assert x.min() == 500 and x.max() == 1500


def test_warmup_requests_take_the_first_measured_requests_lengths():
    """G8 (prompts[-1]). vLLM's and SGLang's clients warm up with input_requests[0] (ClosedLoop's docstring): of
    measured prompts 653 and 390, the warm-up prompts are 653 (outputs likewise, capped at 64)."""
    loop = ClosedLoop(4, 2, LengthDist(), LengthDist(), warmup_requests=2, warmup_output_cap=64)
    prompts, outputs = loop.warmup_lengths(np.array([653, 390]), np.array([100, 50]))
    assert prompts.tolist() == [653, 653] and outputs.tolist() == [64, 64]


def test_the_steady_state_tbt_pools_every_gap_of_the_middle_requests():
    """B2 (`concurrency <= req.id` -> `<`). Concurrency 2, 6 requests of 32 output tokens: the steady state drops
    the first and last waves of 2, leaving requests 2 and 3, whose 2 x 31 = 62 gaps its TBT histogram holds."""
    res = run(model=LLAMA, hardware="h100-sxm", concurrency=2, requests=6, isl=512, osl=32)
    assert res.summary()["steady_state"]["requests"] == 2
    assert res.steady_tbt.n == 62


def test_a_clients_next_request_waits_its_think_time():
    """B1 (think_s ignored). A closed-loop client with think_s 0.5 sends its next request 0.5 s after its last one
    finished."""
    res = simulate(collocated(LLAMA, "h100-sxm"), ClosedLoop(1, 2, LengthDist("fixed", 512), LengthDist("fixed", 8),
                                                              think_s=0.5))
    assert res.arrival_s[1] == pytest.approx(res.finish_s[0] + 0.5)
