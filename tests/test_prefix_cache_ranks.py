"""Prefix caching under attention data parallelism: a cache per rank (sim/prefix_cache_ranks.py RankedPrefixCache), each
request's lookups in its own rank's cache. The DP8 hit ratio on the Mooncake excerpt against one computed from the
trace's hash_ids rank by rank (SGLang's round robin; vLLM's and TensorRT-LLM's assignments as the simulator made
them), a deployment without attention DP keeping one cache, and block conservation under DP (hypothesis: every
allocation and free checked, evictions, preemptions, output counts unchanged)."""

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.sim.api import run
from phasewise.sim.kv import KVBlocks
from phasewise.sim.request import SimRequest

# a MoE model whose KV pool (FP8) holds every prefix block of the excerpt, on each of 8 attention-DP ranks or on the
# instance without attention DP: nothing is evicted
DP8 = dict(model="Qwen/Qwen3-30B-A3B", hardware="h200-sxm", tp=8, ep=8, kv_dtype="fp8", trace="mooncake")
BLOCK = 512


def excerpt_rows() -> list[dict]:
    ref = resources.files("phasewise.workload").joinpath("data", "mooncake_conversation_excerpt.jsonl")
    rows = [json.loads(line) for line in ref.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["timestamp"])  # arrival order (a stable sort: the trace's own on ties)


def per_rank_hits(rows: list[dict], ranks: list[int]) -> tuple[int, int, int]:
    """(hit blocks, lookup blocks, prompt tokens) with a cache per rank, straight from the hash_ids: request i looks
    up on rank ranks[i] the full 512-token blocks of its first input_length - 1 tokens; its hit is the leading run
    of them whose prefix (the ids up to the block) an earlier request on the same rank held; then its own are
    cached there."""
    seen: dict[int, set] = {}
    hits = lookups = prompt = 0
    for r, rank in zip(rows, ranks):
        cache = seen.setdefault(rank, set())
        ids, length = r["hash_ids"], r["input_length"]
        chains = [tuple(ids[: j + 1]) for j in range(min((length - 1) // BLOCK, len(ids)))]
        for chain in chains:
            if chain not in cache:
                break
            hits += 1
        cache.update(chains)
        lookups += len(chains)
        prompt += length
    return hits, lookups, prompt


def recording_assignments(monkeypatch) -> list[tuple[int, int]]:
    """(request id, rank) of every rank assignment, in the order they are made."""
    from phasewise.sim import prefix_cache_ranks

    made: list[tuple[int, int]] = []
    assign = prefix_cache_ranks.RankedPrefixCache.assign

    def recorded(self, req):
        new = req not in self.rank_of
        rank = assign(self, req)
        if new:
            made.append((req.id, rank))
        return rank

    monkeypatch.setattr(prefix_cache_ranks.RankedPrefixCache, "assign", recorded)
    return made


def test_dp8_hit_ratio_is_each_ranks_own_under_round_robin():
    """SGLang's DP controller sends request i to rank i mod 8: the simulated hits are those of 8 separate caches."""
    rows = excerpt_rows()
    cache = run(**DP8, attention_dp=8, engine="sglang", check_invariants=True).summary()["prefix_cache"]
    hits, lookups, prompt = per_rank_hits(rows, [i % 8 for i in range(len(rows))])
    shared_hits, _, _ = per_rank_hits(rows, [0] * len(rows))  # one cache for the instance: what it was
    assert cache["evicted_prefix_blocks"] == 0 and cache["recompute_lookups"] == 0
    assert (cache["hit_blocks"], cache["lookup_blocks"], cache["prompt_tokens"]) == (hits, lookups, prompt)
    assert cache["hit_tokens"] == BLOCK * hits and cache["hit_rate_tokens"] == BLOCK * hits / prompt
    assert cache["rank_caches"] == 8 and cache["rank_dispatch"] == ["round_robin"]
    assert 0.04 < cache["hit_rate_tokens"] < 0.05 and hits < shared_hits / 3  # 4.6 %, against 15.6 % shared


@pytest.mark.parametrize("engine,policy", [("vllm", "least_loaded"), ("trtllm", "trtllm")])
def test_dp8_hits_follow_the_engines_own_assignment(monkeypatch, engine, policy):
    """vLLM's and TensorRT-LLM's dispatchers balance load: whichever rank each request went to, its hits are the ones
    that rank's own cache had."""
    made = recording_assignments(monkeypatch)
    rows = excerpt_rows()
    # (TensorRT-LLM with chunked prefill: trtllm-serve refuses the excerpt's prompts beyond max_num_tokens without it)
    chunked = {"enable_chunked_prefill": True} if engine == "trtllm" else {}
    cache = run(**DP8, attention_dp=8, engine=engine, check_invariants=True, **chunked).summary()["prefix_cache"]
    assert [i for i, _ in made] == list(range(len(rows)))  # each request once, in arrival order
    hits, lookups, _ = per_rank_hits(rows, [rank for _, rank in made])
    assert cache["evicted_prefix_blocks"] == 0 and cache["rank_dispatch"] == [policy]
    assert (cache["hit_blocks"], cache["lookup_blocks"]) == (hits, lookups)
    assert len({rank for _, rank in made}) == 8


def test_without_attention_dp_one_cache_serves_the_instance():
    """The same MoE instance without attention DP keeps one cache: the trace's single-cache ratio, no rank figures;
    with DP 8 the ranks' own."""
    rows = excerpt_rows()
    one = run(**DP8, engine="sglang", check_invariants=True).summary()["prefix_cache"]
    hits, lookups, _ = per_rank_hits(rows, [0] * len(rows))
    assert one["evicted_prefix_blocks"] == 0 and (one["hit_blocks"], one["lookup_blocks"]) == (hits, lookups)
    assert "rank_caches" not in one and one["instances"] == 1
    ranked = run(**DP8, attention_dp=8, engine="sglang").summary()["prefix_cache"]
    assert ranked["instances"] == 1 and ranked["rank_caches"] == 8 and ranked["hit_blocks"] < hits / 3


# --- conservation: a block belongs to one rank, and is freed once --------------------------------------------------
def check_ranks(kv: KVBlocks) -> None:
    """The instance's and each rank's block accounting, after any allocation or free."""
    ranked = kv.prefix
    assert sum(ranked.used) == kv.used and min(ranked.used) >= 0
    assert kv.used + ranked.idle_blocks <= kv.capacity and sum(ranked.shares) == kv.capacity
    for rank, cache in enumerate(ranked.ranks):
        held = [k for k, n in cache.refs.items() if n]
        assert len(held) * cache.per_key <= ranked.used[rank]  # its in-use prefix blocks are its own rank's
        assert all(k in cache.idle for k, n in cache.refs.items() if not n)
    for req in ranked.admitted:  # a request's references are on the rank it was assigned
        assert req.prefix_cache is None or req.prefix_cache is ranked.ranks[ranked.rank_of[req]]
    assert len(ranked.admitted) == sum(ranked.running) and len(ranked.rank_of) == sum(ranked.running) + sum(
        ranked.waiting)


MEMORY = {"vllm": 0.24, "sglang": 0.215, "trtllm": 0.01}  # a few dozen prefix blocks: evictions, preemptions,
# ranks over their share (about half of the examples each, TensorRT-LLM never preempting)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(1, 8), st.integers(1, 1500)), min_size=2, max_size=25),
       st.sampled_from(["vllm", "sglang", "trtllm"]))
def test_rank_caches_conserve_blocks_and_keep_output_counts(tmp_path_factory, reqs, engine):
    """Conversations over 4 attention-DP ranks through a small KV pool: every allocation and free keeps the ranks'
    blocks summing to the instance's, each request's shared blocks on its own rank, free + idle + in use within the
    pool; at the end every rank's blocks are back; output tokens as with caching off (the simulator's own invariant
    checks on)."""
    path = tmp_path_factory.mktemp("mc") / "t.jsonl"
    path.write_text("\n".join(json.dumps({"timestamp": 10 * i, "input_length": 512 * blocks - 7, "output_length": out,
                                          "hash_ids": [1000 * conv + j for j in range(blocks)]})
                              for i, (conv, blocks, out) in enumerate(reqs)))
    checked: list[KVBlocks] = []
    allocate, free_blocks = KVBlocks.allocate, KVBlocks.free_blocks

    def checked_allocate(self, n):
        allocate(self, n)
        if self.prefix is not None:
            check_ranks(self)
            checked.append(self)

    def checked_free(self, n, req=None):
        free_blocks(self, n, req)
        if self.prefix is not None:
            check_ranks(self)

    outputs = {}
    for mode in ("on", "off"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(KVBlocks, "allocate", checked_allocate)
            mp.setattr(KVBlocks, "free_blocks", checked_free)
            res = run(trace=str(path), model="Qwen/Qwen3-30B-A3B", hardware="h100-sxm", tp=4, ep=4, attention_dp=4,
                      engine=engine, memory_fraction=MEMORY[engine], prefix_caching=mode, check_invariants=True)
        assert res.summary()["completed"] == len(reqs)
        outputs[mode] = list(res.output_tokens)
    assert outputs["on"] == outputs["off"] == [out for _, _, out in reqs]
    assert checked and len(checked[0].prefix.ranks) == 4
    ranked = checked[0].prefix
    assert ranked.used == [0] * 4 and not ranked.rank_of and not ranked.admitted


def test_a_rank_over_its_share_takes_other_ranks_idle_blocks_last():
    """Two ranks of 32 blocks: a rank's allocation evicts its own idle blocks down to its share first; only while the
    instance's pool is short (its requests hold more than its share: admission is the instance's) does it evict
    another rank's, counted as borrowed."""
    from phasewise.sim.prefix_cache_ranks import RankedPrefixCache

    kv = KVBlocks(64, block_size=128)  # 4 engine blocks per 512-token prefix block
    ranked = kv.prefix = RankedPrefixCache(kv, 2, "round_robin", [None, None])
    assert ranked.shares == [32, 32]

    def admit(i, ids, blocks):
        req = SimRequest(i, 0.0, len(ids) * 512 + 1, 4, prefix=ids)
        ranked.assign(req)
        ranked.acquire(req, blocks, *ranked.probe(req))
        req.kv_blocks = blocks
        check_ranks(kv)
        return req

    a = admit(0, (1, 2, 3, 4), 20)  # rank 0: 4 prefix blocks + 4 private
    b = admit(1, (5, 6, 7), 16)  # rank 1: 3 prefix blocks + 4 private
    kv.free_blocks(a.kv_blocks, a)
    kv.free_blocks(b.kv_blocks, b)
    check_ranks(kv)
    assert ranked.used == [0, 0] and [len(c.idle) for c in ranked.ranks] == [4, 3]
    c = admit(2, (1, 2, 9), 24)  # rank 0 again: hits 2 of its blocks; 24 new beside its 2 idle ones fill its share
    assert ranked.ranks[0].hit_keys == 2 and ranked.ranks[0].evicted_blocks == 0 and ranked.used == [24, 0]
    d = admit(3, (5, 6, 8), 28)  # rank 1: hits 2 of its blocks, fills its share; the instance's pool is full
    assert ranked.ranks[1].hit_keys == 2 and ranked.ranks[1].evicted_blocks == 0 and ranked.used == [24, 28]
    assert kv.used + ranked.idle_blocks == kv.capacity
    # rank 0's request grows by 12 blocks, beyond its share: its own 2 idle blocks go, then one of rank 1's
    ranked.charge(c)
    kv.allocate(12)
    check_ranks(kv)
    assert ranked.used == [36, 28] and kv.used + ranked.idle_blocks == kv.capacity
    assert ranked.ranks[0].evicted_blocks == 8 and ranked.ranks[1].evicted_blocks == ranked.borrowed_blocks == 4
    c.kv_blocks += 12
    for req in (c, d):
        kv.free_blocks(req.kv_blocks, req)
    assert ranked.used == [0, 0] and kv.used == 0 and kv.allocated_total == kv.freed_total
