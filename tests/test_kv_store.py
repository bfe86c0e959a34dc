"""A KV store shared by a deployment's instances (sim/kv_tiers.py kv_store; --kv-store-gb, YAML kv_store_bytes): any
instance's prefix blocks, fetched over each GPU's RDMA link by whichever instance a later turn lands on. A large
store gives four replicas behind least-outstanding routing exactly the hits the trace holds; the fetch time is the
blocks' KV bytes over the link; one-line errors."""

import pytest
from test_prefix_cache import direct_ratio, excerpt_rows

from phasewise.sim.api import run
from phasewise.specs import load_hardware

FOUR = dict(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", replicas=4, trace="mooncake")


def test_a_large_store_gives_every_replica_the_traces_hits():
    hits, lookups = direct_ratio(excerpt_rows())
    alone = run(**FOUR).summary()
    shared = run(**FOUR, kv_store_gb=2000.0, check_invariants=True).summary()
    a, s = alone["prefix_cache"], shared["prefix_cache"]
    assert a["hit_blocks"] < hits / 3  # each replica's own cache sees a quarter of the conversations' turns
    assert (s["hit_blocks"], s["lookup_blocks"]) == (hits, lookups)
    assert s["store_hit_blocks"] > 0 and s["store_dropped_blocks"] == 0
    assert shared["ttft_ms"]["mean"] < alone["ttft_ms"]["mean"]


def test_a_store_fetch_is_the_blocks_kv_bytes_over_rdma():
    hw = load_hardware("h100-sxm")
    s = run(**FOUR, kv_store_gb=2000.0).summary()["prefix_cache"]
    block = 512 * 32 * 8 * 128 * 2 * 2  # Llama-3.1-8B at TP1: 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes
    fetch = block / (hw.interconnect.inter_node_bandwidth_bytes_per_s * hw.efficiency.link_efficiency)
    assert s["store_load_s"] == pytest.approx(s["store_hit_blocks"] * fetch, rel=1e-9)
    assert s["store_capacity_blocks"] == int(2000e9 // block)


def test_a_small_store_adds_little_and_a_host_tier_comes_first():
    small = run(**FOUR, kv_store_gb=30.0).summary()["prefix_cache"]
    assert small["store_dropped_blocks"] > 0 and small["store_cached_blocks"] == small["store_capacity_blocks"]
    both = run(**FOUR, kv_store_gb=2000.0, host_kv_cache_gb=500.0, check_invariants=True).summary()["prefix_cache"]
    assert both["host_hit_blocks"] > 0 and both["store_hit_blocks"] > 0  # a turn's own replica's host, else the store


@pytest.mark.parametrize("args, message", [
    (["--kv-store-gb", "0"], "--kv-store-gb must be a finite number > 0 (got 0)"),
    (["--kv-store-gb", "10", "--prefix-caching", "off"], "it needs prefix caching"),
    (["--kv-store-gb", "10", "--prefix-caching", "on", "--engine", "vllm-v0"],
     "vllm-v0@0.6 keeps no host-memory KV tier"),
    (["--kv-store-gb", "0.01"], "give at least that"),
    (["--kv-store-gb", "10", "--attention-offload", "auto", "--arch", "disagg"], "--kv-store-gb (kv_store_bytes) is "
     "not modelled with priority pools or attention offload"),
])
def test_bad_stores_are_one_line_errors(run_cli, args, message):
    code, out, err = run_cli("simulate", "--trace", "mooncake", "--trace-limit", "20", *args)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plan_shares_a_store_among_the_strategies_that_cache_and_says_export_leaves_it_to_its_connector():
    from phasewise.apps.launch import launch_commands
    from phasewise.plan import PlanOptions
    from phasewise.plan.strategies import enumerate_strategies
    from phasewise.sim.deployment import build_deployment

    opts = PlanOptions(tp_options=(1,), policies=("priority-pools",), kv_store_bytes=500e9)
    strategies, _ = enumerate_strategies(FOUR["model"], "h100-sxm", 4, opts)
    pools = [s for s in strategies if "priority_pools" in s.deployment]
    assert pools and all("kv_store_bytes" not in s.deployment for s in pools)
    shared = [s for s in strategies if s.deployment.get("kv_store_bytes") == 500e9]
    assert shared and all(s.kind in ("collocated", "disaggregated") for s in shared)
    workers, _, _ = launch_commands(build_deployment(shared[0].deployment))
    assert any("a KV store the instances share" in note for note in workers[0].comments)
