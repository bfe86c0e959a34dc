"""The speed review's fixes change no figure: a hybrid sliding-window stack's first-step window sums over the few
sequences under the cap equal the whole decoding set's (bit for bit); an all-windowed stack's decode runs hand the
cost model each step's own pairs (speculative decoding); Dynamo's KV router scores every instance from one index
walk as from each instance's own cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.perf import CostModel
from phasewise.perf.batch import attention_pairs, windowed_keys, windowed_pairs
from phasewise.sim import Slo, simulate
from phasewise.sim.api import deployment_from_flags
from phasewise.sim.decoding_set import _FIRST_STEP, DecodingSet
from phasewise.sim.request import SimRequest
from phasewise.sim.running import RunningSet
from phasewise.workload import LengthDist, load_trace, open_loop


def _azure_work(rate: float, requests: int):
    trace = load_trace("azure-conv")
    prompt = LengthDist("empirical", samples=tuple(int(x) for x in trace.prompt_tokens))
    output = LengthDist("empirical", samples=tuple(int(x) for x in trace.output_tokens))
    return open_loop(rate, requests, prompt, output, seed=1)


def _whole_set(inst) -> tuple[float, float] | None:
    """The first step's windowed (pairs, KV tokens) over every decoding sequence (windowed_pairs / windowed_keys of
    the whole set, as _capped_keys_series computes them), None where the cost model's caps are exact."""
    window, new = inst.capped_keys, inst.decode_new_tokens
    keys = inst.running.contexts(inst.decode_steps, inst.tokens_per_step) + new
    under = keys < window
    if not under.any() or under.all():
        return None
    return (float(windowed_pairs(new, keys, inst.model.causal, window, _FIRST_STEP)[0]),
            float(windowed_keys(keys, window, _FIRST_STEP)[0]))


@pytest.mark.parametrize("flags", [dict(model="openai/gpt-oss-120b", hardware="b200"),
                                   dict(model="openai/gpt-oss-120b", hardware="b200", spec_tokens=3,
                                        spec_draft="openai/gpt-oss-20b")])
def test_the_first_steps_window_sums_are_the_whole_sets(monkeypatch, flags):
    """gpt-oss-120b (a 128-token window in half its layers) on the Azure conversation lengths, with and without
    speculative decoding (4 tokens fed, 1.x accepted a step): every decode iteration's windowed sums from the
    sequences kept under the cap equal the whole decoding set's, bit for bit, and those sequences are exactly the
    running ones whose keys less new - 1 are under it."""
    original = DecodingSet._capped_keys_first
    checked = []

    def checking(inst):
        expected = _whole_set(inst) if inst.capped_keys and inst.running.n else None
        window, new = inst.capped_keys, inst.decode_new_tokens
        got = original(inst)
        assert got == expected
        if window:
            keys = inst.running.contexts(inst.decode_steps, inst.tokens_per_step) + new
            near = {r for r, k in zip(inst.running.reqs, keys.tolist()) if k - (new - 1) < window}
            assert near <= inst.capped_seqs <= set(inst.running.reqs)
        checked.append(got is not None)
        return got

    monkeypatch.setattr(DecodingSet, "_capped_keys_first", checking)
    simulate(deployment_from_flags(**flags), _azure_work(60, 400), Slo(1000, 50))
    assert sum(checked) > 50  # the sums were taken, not skipped


class _Decoding(DecodingSet):
    """A decoding set's state: a RunningSet of requests joined at their steps, the window's members as _join keeps
    them (keys less new - 1 under the cap)."""

    def __init__(self, joins, window, new, accepted, causal, step):
        self.model = type("M", (), {"causal": causal})()
        self.capped_keys, self.decode_new_tokens, self.tokens_per_step = window, new, accepted
        self.decode_steps, self.running, self.capped_seqs = step, RunningSet(4), set()
        for i, (context, joined) in enumerate(joins):
            req = SimRequest(i, 0.0, context + 1, 10)
            req.join_context, req.join_step = context, joined
            self.running.add(req, 1)
            if context + 1 < window:
                self.capped_seqs.add(req)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 60)), min_size=1, max_size=30),
       st.sampled_from((128, 256)), st.integers(1, 4), st.sampled_from((1.0, 1.7, 2.5)), st.booleans(),
       st.integers(60, 90))
def test_first_step_sums_match_the_numpy_series_bit_for_bit(joins, window, new, accepted, causal, step):
    """Any contexts, joins, tokens fed and accepted a step, causal or not: _capped_keys_first gives the floats
    _capped_keys_series(_FIRST_STEP) gives, and clears the window the same way once no context is under it."""
    first, series = _Decoding(joins, window, new, accepted, causal, step), _Decoding(joins, window, new, accepted,
                                                                                   causal, step)
    got, whole = first._capped_keys_first(), series._capped_keys_series(_FIRST_STEP)
    assert got == (None if whole is None else (float(whole[0][0]), float(whole[1][0])))
    assert first.capped_keys == series.capped_keys


def test_an_all_windowed_stacks_decode_run_gets_each_steps_own_pairs(monkeypatch):
    """Mistral-7B (a 4,096-token window on every layer) with 3 draft tokens: a decode run's pairs start at its
    shape's (decode_series' contract) and count each fed token's own keys (attention_pairs), where keys x fed
    counted every draft token the last one's keys."""
    seen = []
    original = CostModel.decode_series

    def recording(self, shape, pairs, kv):
        seen.append((shape.decode_pairs, np.array(pairs), np.array(kv), shape.decode_seqs))
        return original(self, shape, pairs, kv)

    monkeypatch.setattr(CostModel, "decode_series", recording)
    dep = deployment_from_flags(model="mistralai/Mistral-7B-v0.1", hardware="h100-sxm", spec_tokens=3,
                                spec_draft="mistralai/Mistral-7B-v0.1")
    simulate(dep, _azure_work(10, 150), Slo(1000, 50))
    assert seen
    for first_pairs, pairs, kv, seqs in seen:
        assert pairs[0] == first_pairs
        assert np.all(pairs <= 4 * kv) and np.all(pairs >= 4 * kv - 6 * seqs)  # 0 + 1 + 2 + 3 keys fewer at most
    one = seen[0]
    assert one[1][0] < 4 * one[2][0]  # contexts under the window: the draft tokens read fewer keys


def test_windowed_pairs_of_one_step_are_attention_pairs():
    """The identity the decode runs rely on: at each step, windowed_pairs is attention_pairs summed over the
    sequences, and with one causal token fed it is windowed_keys itself (the runs pass one array for both)."""
    keys = np.array([5.0, 127.0, 128.0, 400.0, 60.0])
    grown = np.arange(0.0, 90.0, 3.0)
    for fed in (1, 2, 4):
        pairs = windowed_pairs(fed, keys, True, 128, grown)
        for j, g in enumerate(grown):
            assert pairs[j] == sum(attention_pairs(fed, int(k + g) - fed, True, 128) for k in keys)
    assert np.array_equal(windowed_pairs(1, keys, True, 128, grown), windowed_keys(keys, 128, grown))


@pytest.mark.parametrize("kw", [dict(replicas=6), dict(replicas=4, router_temperature=0.5),
                                dict(replicas=3, pp=2), dict(replicas=4, host_kv_cache_gb=20)])
def test_dynamo_kv_reads_each_instances_overlap_from_one_index_walk(monkeypatch, kw):
    """The Mooncake excerpt through Dynamo's KV router: at every request, the index walk gives each instance's cache
    the leading keys it holds and the keys its running requests hold, as matched_blocks and probe count them
    asking each cache (a cache the walk does not name holds none); PP replicas' virtual engines share one cache.
    (The router walks the index from INDEX_MIN_INSTANCES instances on: from 1 here.)"""
    from phasewise.sim.api import run
    from phasewise.sim.routers import dynamo_kv
    from phasewise.sim.routers.dynamo_kv import DynamoKvRouter

    monkeypatch.setattr(dynamo_kv, "INDEX_MIN_INSTANCES", 1)
    original = DynamoKvRouter._overlaps
    walks = []

    def checking(router, req):
        found = original(router, req)
        for inst in router.instances:
            cache = inst.kv.prefix
            matched, held = found.get(cache, (0, 0))
            assert matched == cache.matched_blocks(req)
            assert held * cache.per_key == cache.probe(req)[1]
        walks.append(bool(found))
        return found

    monkeypatch.setattr(DynamoKvRouter, "_overlaps", checking)
    run(trace="mooncake", trace_limit=300, router="dynamo_kv", **kw)
    assert len(walks) >= 290 and sum(walks) > 30  # prefixes found on some instance


def test_the_prefix_index_follows_every_cache_through_caching_and_eviction():
    """Two small caches on one index, prompts sharing prefixes cached, released and evicted at random: the index
    holds each key under exactly the caches whose refs hold it."""
    import random

    from phasewise.sim.kv import KVBlocks
    from phasewise.sim.prefix_cache import PrefixCache, PrefixIndex

    index, rng, caches = PrefixIndex(), random.Random(0), []
    for _ in range(2):
        kv = KVBlocks(capacity=40, block_size=16)
        kv.prefix = PrefixCache(kv, key_tokens=64)
        index.attach(kv.prefix)
        caches.append(kv.prefix)
    held = {0: [], 1: []}
    for i in range(400):
        c = rng.randrange(2)
        cache, kv = caches[c], caches[c].kv
        if held[c] and (rng.random() < 0.5 or len(held[c]) > 3):
            req = held[c].pop(rng.randrange(len(held[c])))
            kv.free_blocks(req.kv_blocks, req)
            continue
        prompt = rng.randrange(65, 400)
        req = SimRequest(i, 0.0, prompt, 5, prefix=tuple(rng.randrange(3) for _ in range(prompt // 64 + 1)))
        blocks = kv.blocks_for(prompt)
        if blocks > kv.capacity - kv.used:
            continue
        hit, shared = cache.probe(req)
        cache.make_room(blocks - shared)
        cache.acquire(req, blocks, hit, shared)
        req.kv_blocks = blocks
        held[c].append(req)
        truth = {}
        for cache_ in caches:
            for k in cache_.refs:
                truth.setdefault(k, set()).add(cache_)
        assert index.holders == truth
    assert sum(cache.evicted_blocks for cache in caches) > 0
