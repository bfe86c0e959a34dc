"""Router dynamo_kv: NVIDIA Dynamo's KV router cost (sim/routers/dynamo_kv.py), by hand and on the Mooncake
excerpt; its weight as a flag and in YAML, refused beside another router; the waiting queue's running sum of
prompt tokens that keeps it cheap under overload (sim/prompt_queue.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.sim.api import run
from phasewise.sim.instance import Instance
from phasewise.sim.kv import KVBlocks
from phasewise.sim.prefix_cache import PrefixCache
from phasewise.sim.prompt_queue import PromptQueue
from phasewise.sim.request import SimRequest
from phasewise.sim.routers import DynamoKvSettings, make_router


class Worker(SimpleNamespace):
    """The parts of an Instance the router reads, over a real KV pool and prefix cache."""

    prefill_tokens_pending = Instance.prefill_tokens_pending

    def gauges(self):
        return 0, 0, self.kv.used


def worker(in_use_blocks: int, waiting_tokens: int = 0, cached: SimRequest | None = None) -> Worker:
    kv = KVBlocks(capacity=4000, block_size=16)
    kv.prefix = PrefixCache(kv, key_tokens=512)
    if cached is not None:  # a finished request's prompt blocks, idle in the cache
        blocks = kv.blocks_for(cached.prompt)
        kv.prefix.acquire(cached, blocks, 0, 0)
        kv.free_blocks(blocks, cached)
    kv.allocate(in_use_blocks)
    waiting = PromptQueue()
    if waiting_tokens:
        waiting.append(SimRequest(90, 0.0, waiting_tokens, 10))
    return Worker(kv=kv, role="collocated", frontend_prompt_tokens=0, waiting=waiting, prefilling=[], outstanding=0,
                  cluster=SimpleNamespace(check=True))


def test_the_cost_is_weighted_cache_miss_prefill_blocks_plus_decode_blocks_by_hand():
    # a 1,600-token prompt: 3 shareable 512-token prefix blocks, 100 engine blocks of 16 tokens
    request = SimRequest(1, 0.0, 1600, 50, prefix=(11, 12, 13, 14))
    earlier = SimRequest(0, 0.0, 1100, 50, prefix=(11, 12, 99))  # shares its first 2 prefix blocks (1,024 tokens)
    warm = worker(in_use_blocks=100, cached=earlier)
    cold = worker(in_use_blocks=40, waiting_tokens=320)
    router = make_router("dynamo_kv", [warm, cold])
    # warm: (0 pending + 1,600 - 1,024 cached) / 16 = 36 prefill blocks; 100 in use + 100 new blocks
    assert router.cost_blocks(warm, request) == pytest.approx(36 + 100 + 100)
    # cold: (320 queued + 1,600) / 16 = 120 prefill blocks; 40 in use + 320 / 16 queued + 100 new blocks
    assert router.cost_blocks(cold, request) == pytest.approx(120 + 40 + 20 + 100)
    assert router.pick_for(request) is warm  # 236 < 280
    # the weight moves the choice: at 0 the cache is ignored (warm 200, cold 160)
    assert make_router("dynamo_kv", [warm, cold], DynamoKvSettings(0.0)).pick_for(request) is cold
    assert make_router("dynamo_kv", [warm, cold], DynamoKvSettings(2.0)).cost_blocks(warm, request) == \
        pytest.approx(72 + 200)


def test_on_the_mooncake_excerpt_it_follows_the_caches_without_herding():
    def figures(**kw):
        s = run(trace="mooncake", replicas=4, **kw).summary()
        return s["prefix_cache"]["hit_tokens"], s["ttft_ms"]["mean"]

    plain_hits, plain_ttft = figures(router="least_outstanding")
    hits, ttft = figures(router="dynamo_kv")
    blind_hits, _ = figures(router="dynamo_kv", kv_overlap_score_weight=0.0)
    eager_hits, _ = figures(router="dynamo_kv", kv_overlap_score_weight=4.0)
    _, kv_free_ttft = figures(router="kv_aware")  # most free blocks: blind to the prompts queued behind them
    assert hits > plain_hits and ttft < plain_ttft
    assert eager_hits > hits > blind_hits
    assert ttft < kv_free_ttft / 2


def test_disaggregated_decode_instances_are_chosen_by_their_decode_blocks():
    res = run(arch="disagg", prefill_workers=2, decode_workers=2, router="dynamo_kv", requests=60, rate=8.0,
              isl=2000, osl=100, check_invariants=True)
    s = res.summary()
    assert s["completed"] == 60
    decode = [inst for inst in s["instances"] if inst["role"] == "decode"]
    assert len(decode) == 2 and all(inst["iterations"] > 0 for inst in decode)  # both take transfers


def test_the_weight_is_refused_beside_another_router_and_out_of_range(tmp_path, run_cli):
    with pytest.raises(PhasewiseError, match="--kv-overlap-score-weight .* --router dynamo_kv"):
        run(router="prefix_aware", kv_overlap_score_weight=2.0, requests=5)
    code, out, err = run_cli("simulate", "--requests", "5", "--router", "dynamo_kv",
                             "--kv-overlap-score-weight", "-1")
    assert code == 2 and "--kv-overlap-score-weight: Input should be greater than or equal to 0" in err
    assert len(err.strip().splitlines()) == 1
    path = tmp_path / "dep.yaml"
    path.write_text("model: meta-llama/Llama-3.1-8B\nrouter: least_outstanding\nkv_overlap_score_weight: 2\n"
                    "instances:\n  - {role: collocated, hardware: h100-sxm, replicas: 2}\n")
    code, out, err = run_cli("simulate", "--deployment", str(path), "--requests", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "kv_overlap_score_weight weighs the cache-miss blocks in router dynamo_kv's cost" in err
    assert "Value error" not in err and "(root)" not in err


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "appendleft", "extend", "pop", "popleft", "remove", "sort",
                                           "insert", "del", "clear"]),
                          st.lists(st.integers(1, 9000), min_size=1, max_size=4)), max_size=40))
def test_the_prompt_queue_keeps_the_sum_of_its_prefill_targets(operations):
    queue, made = PromptQueue(), 0
    for name, prompts in operations:
        reqs = [SimRequest(made + j, 0.0, p, 1, generated=j % 3) for j, p in enumerate(prompts)]
        made += len(reqs)
        if name in ("append", "appendleft"):
            getattr(queue, name)(reqs[0])
        elif name == "extend":
            queue.extend(iter(reqs))
        elif name == "insert":
            queue.insert(len(queue) // 2, reqs[0])
        elif queue and name in ("pop", "popleft"):
            getattr(queue, name)()
        elif queue and name == "remove":
            queue.remove(queue[len(queue) // 2])
        elif queue and name == "del":
            del queue[0]
        elif name == "sort":  # as the shortest-prefill-first scheduler reorders it
            ordered = sorted(queue, key=lambda r: r.prefill_target)
            queue.clear()
            queue.extend(ordered)
        elif name == "clear":
            queue.clear()
        assert queue.tokens == sum(r.prefill_target for r in queue)
