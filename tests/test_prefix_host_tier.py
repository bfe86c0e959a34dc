"""The prefix cache's host-memory tier (sim/prefix_cache.py HostTier; --host-kv-cache-gb): prefix blocks evicted
from the GPU kept in host memory and copied back over PCIe on a hit. A host tier large enough restores exactly
the hits an unbounded GPU cache gets (the trace's own ratio); hits grow with its size; the copy-back time is the
blocks' KV bytes over each GPU's PCIe link and is on the first token's path; the flags' one-line errors; the
launch arguments each engine takes for it."""

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_prefix_cache import UNBOUNDED, direct_ratio, excerpt_rows

from phasewise.apps.launch import launch_commands
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.sim.kv_tiers import HostTier
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

BOUNDED = dict(UNBOUNDED, memory_fraction=0.2)  # evicts: a fifth of the excerpt's distinct prefix blocks fit


def prefix(**kw) -> dict:
    return run(**BOUNDED, **kw).summary()["prefix_cache"]


def test_a_large_host_tier_restores_the_trace_ratio():
    hits, lookups = direct_ratio(excerpt_rows())
    gpu_only = prefix()
    assert gpu_only["evicted_prefix_blocks"] > 0 and gpu_only["hit_blocks"] < hits  # the bounded GPU cache loses hits
    tiered = prefix(host_kv_cache_gb=2000.0, check_invariants=True)
    assert tiered["evicted_prefix_blocks"] > 0 and tiered["host_dropped_blocks"] == 0
    assert (tiered["hit_blocks"], tiered["lookup_blocks"]) == (hits, lookups)  # every evicted block came back
    assert tiered["hit_tokens"] == 512 * hits
    assert tiered["host_hit_tokens"] == 512 * tiered["host_hit_blocks"] > 0


def test_host_tier_hits_grow_with_its_size_beyond_the_gpu_cache():
    """Written through, the host holds the most recently used blocks, which the GPU cache (~3,100 blocks here,
    ~210 GB) holds too: a smaller host tier adds nothing (SGLang sizes it at 2x the GPU pool by default); beyond
    the GPU's, hits grow with its size."""
    runs = {gb: prefix(host_kv_cache_gb=gb) for gb in (None, 150.0, 300.0, 600.0, 1000.0)}
    assert runs[150.0]["host_capacity_blocks"] < runs[150.0]["cached_blocks"] < runs[300.0]["host_capacity_blocks"]
    assert runs[150.0]["hit_blocks"] == runs[None]["hit_blocks"] and runs[150.0]["host_hit_blocks"] == 0
    hits = [runs[gb]["hit_blocks"] for gb in (150.0, 300.0, 600.0, 1000.0)]
    assert all(a < b for a, b in zip(hits, hits[1:])), hits


def test_tensorrt_llm_offloads_as_it_evicts_so_a_small_tier_still_adds_hits():
    """TensorRT-LLM writes a block to host memory as the GPU reclaims it and moves it back out when it is copied
    back (kvCacheManager.cpp offloadBlock / onboardBlock): the tiers hold different blocks, so a host tier smaller
    than the GPU cache adds hits where vLLM's written-through copy adds none; a large one reaches the trace's own."""
    hits, _ = direct_ratio(excerpt_rows())
    # (chunked prefill: trtllm-serve refuses the excerpt's prompts beyond max_num_tokens without it)
    alone, small, large = (prefix(engine="trtllm", enable_chunked_prefill=True, host_kv_cache_gb=gb)
                           for gb in (None, 150.0, 2000.0))
    assert small["host_capacity_blocks"] < small["cached_blocks"]
    assert small["hit_blocks"] > alone["hit_blocks"] and small["host_hit_blocks"] > 0
    assert large["hit_blocks"] == hits
    assert prefix(host_kv_cache_gb=150.0)["host_hit_blocks"] == 0  # vLLM, the same small tier


def test_copy_back_is_the_blocks_kv_bytes_over_pcie():
    model, quant, hw = load_model(UNBOUNDED["model"]), load_quant("bf16"), load_hardware(UNBOUNDED["hardware"])
    # Llama-3.1-8B at TP 8: 32 layers x 1 KV head per GPU x 128 x (K, V) x 2 bytes = 16,384 bytes a token per GPU
    assert kv_bytes_per_token(model, quant, 8, 1) == 32 * 1 * 128 * 2 * 2
    cache = prefix(host_kv_cache_gb=600.0)
    per_block_s = 512 * 16384 / (hw.interconnect.pcie_bandwidth_bytes_per_s * hw.efficiency.link_efficiency)
    assert cache["host_load_s"] == pytest.approx(cache["host_hit_blocks"] * per_block_s, rel=1e-9)
    # 600 GB over the 8 GPUs' share of a 512-token block (8 x 8.4 MB)
    assert cache["host_capacity_blocks"] == int(600e9 // (512 * 16384 * 8)) and cache["host_hit_blocks"] > 0


def test_a_slow_host_link_costs_time_on_the_first_token(tmp_path):
    """The copy back runs beside the forward: over a PCIe link slow enough it, not the skipped prefill, sets the
    iteration, so the tier's hits make TTFT worse than recomputing them; at the chip's own PCIe they help."""
    entry = packaged("hardware_specs.yaml")["hardware"][UNBOUNDED["hardware"]]
    slow = dict(entry, interconnect=dict(entry["interconnect"], pcie_bandwidth_bytes_per_s=1.0e8))
    chips = {}
    for name, data in (("same", entry), ("slow", slow)):
        chips[name] = tmp_path / f"{name}.yaml"
        chips[name].write_text(yaml.safe_dump(data))

    def ttft(chip, **kw) -> tuple[float, int]:
        s = run(**dict(BOUNDED, hardware=str(chip)), **kw).summary()
        return s["ttft_ms"]["mean"], s["prefix_cache"]["host_hit_blocks"]

    alone, _ = ttft(chips["same"])
    tiered, hits = ttft(chips["same"], host_kv_cache_gb=600.0)
    slow_alone, _ = ttft(chips["slow"])
    slow_tiered, slow_hits = ttft(chips["slow"], host_kv_cache_gb=600.0)
    assert hits > 0 and slow_hits > 0
    assert tiered < alone
    assert slow_alone == pytest.approx(alone)  # PCIe carries nothing else here
    assert slow_tiered > slow_alone


def test_vllm_waits_for_its_copies_while_the_others_decode(tmp_path):
    """Over a PCIe link slow enough: vLLM holds a request whose prefix is loading (WAITING_FOR_REMOTE_KVS) and keeps
    decoding the others, so their token gaps stay as they were; SGLang's layer-by-layer load stretches the iteration
    that waits for it, and every decode in it."""
    entry = packaged("hardware_specs.yaml")["hardware"][UNBOUNDED["hardware"]]
    chip = tmp_path / "slow.yaml"
    chip.write_text(yaml.safe_dump(dict(entry, interconnect=dict(entry["interconnect"],
                                                                 pcie_bandwidth_bytes_per_s=1.0e8))))

    def tbt_p99(engine: str, **kw) -> float:
        return run(**dict(BOUNDED, hardware=str(chip), engine=engine), **kw).summary()["tbt_ms"]["p99"]

    assert tbt_p99("vllm", host_kv_cache_gb=600.0) <= 1.1 * tbt_p99("vllm")
    assert tbt_p99("sglang", host_kv_cache_gb=600.0) > 5 * tbt_p99("sglang")
    # TensorRT-LLM's forward waits for the copies and for the writes of the blocks it offloaded (syncTransfers)
    # (with chunked prefill: trtllm-serve refuses the excerpt's prompts beyond max_num_tokens without it)
    assert tbt_p99("trtllm", host_kv_cache_gb=600.0, enable_chunked_prefill=True) > 5 * tbt_p99(
        "sglang", host_kv_cache_gb=600.0)


def test_host_tier_keeps_lru_order_and_writes_a_block_once():
    tier = HostTier(capacity_keys=2, load_s_per_key=1e-3)
    for key in (1, 2, 1, 3):  # 1 again: touched, not rewritten; 3 drops the least recently used, 2
        tier.keep(key)
    assert list(tier.keys) == [1, 3] and tier.written_keys == 3 and tier.dropped_keys == 1
    assert tier.pending_write_s == 0.0  # written in the background
    synced = HostTier(capacity_keys=2, load_s_per_key=1e-3, on_evict=True, sync_writes=True)
    for key in (1, 2, 1, 3):
        synced.keep(key)
    assert synced.pending_write_s == pytest.approx(3e-3)  # what the next forward waits for


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 8), st.integers(1, 200)), min_size=2, max_size=20),
       st.sampled_from(["vllm", "sglang", "trtllm"]), st.floats(0.1, 40.0))
def test_a_host_tier_keeps_output_counts_and_kv_conservation(tmp_path_factory, reqs, engine, host_gb):
    """Conversations through a small KV pool with a host tier (evictions, copies back, preemptions), invariant
    checks on: every request emits exactly its output tokens and all KV blocks are freed."""
    path = tmp_path_factory.mktemp("mc") / "t.jsonl"
    path.write_text("\n".join(json.dumps({"timestamp": 10 * i, "input_length": 512 * blocks - 7, "output_length": out,
                                          "hash_ids": [1000 * conv + j for j in range(blocks)]})
                              for i, (conv, blocks, out) in enumerate(reqs)))
    res = run(trace=str(path), engine=engine, memory_fraction=0.25, host_kv_cache_gb=host_gb, check_invariants=True)
    assert res.summary()["completed"] == len(reqs)
    assert list(res.output_tokens) == [out for _, _, out in reqs]


@pytest.mark.parametrize("args, message", [
    (["--host-kv-cache-gb", "0"], "--host-kv-cache-gb must be a finite number > 0 (got 0)"),
    (["--host-kv-cache-gb", "inf"], "--host-kv-cache-gb must be a finite number > 0 (got inf)"),
    (["--host-kv-cache-gb", "10", "--prefix-caching", "off"], "it needs prefix caching"),
    (["--host-kv-cache-gb", "10", "--prefix-caching", "on", "--engine", "vllm-v0"],
     "vllm-v0@0.6 keeps no host-memory KV tier"),
    (["--host-kv-cache-gb", "0.001"], "give at least that"),
    (["--host-kv-cache-gb", "10", "--attention-offload", "auto", "--arch", "disagg"],
     "--host-kv-cache-gb are not modelled with priority pools or attention offload"),
])
def test_bad_host_tiers_are_one_line_errors(run_cli, args, message):
    code, out, err = run_cli("simulate", "--trace", "mooncake", "--trace-limit", "20", *args)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_launch_arguments_size_the_host_memory_as_each_engine_counts_it():
    """64 GB for a TP-2 instance: vLLM's --kv-offloading-size is all ranks' GiB, SGLang's --hicache-size GB per
    rank, TensorRT-LLM's host_cache_size bytes per rank."""
    data = {"model": UNBOUNDED["model"], "instances": [{"tp": 2, "host_kv_cache_bytes": 64e9}]}
    argv = {}
    files = {}
    for engine in ("vllm", "sglang", "trtllm"):
        dep = build_deployment(dict(data, instances=[dict(data["instances"][0], engine=engine)]))
        workers, _, files[engine] = launch_commands(dep)
        argv[engine] = workers[0].argv
    vllm = argv["vllm"]
    assert vllm[vllm.index("--kv-offloading-size") + 1] == f"{64e9 / 2**30:.4g}" and "native" in vllm
    sglang = argv["sglang"]
    assert "--enable-hierarchical-cache" in sglang and sglang[sglang.index("--hicache-size") + 1] == "32"
    options = [yaml.safe_load(text) for text in files["trtllm"].values()]
    assert options[0]["kv_cache_config"]["host_cache_size"] == 32_000_000_000


def test_plan_puts_the_host_tier_where_prompts_meet_a_prefix_cache():
    """plan --host-kv-cache-gb: on the groups that admit prompts with an engine that caches prefixes (vLLM V1 here),
    not on decode instances, nor where the engine variant caches none (vLLM V0's prefill-first), nor under
    priority pools or attention offload (no prefix cache there)."""
    from phasewise.plan import PlanOptions
    from phasewise.plan.strategies import enumerate_strategies

    opts = PlanOptions(tp_options=(1,), policies=("priority-pools", "attention-offload"), host_kv_cache_bytes=50e9)
    strategies, _ = enumerate_strategies(UNBOUNDED["model"], "h100-sxm", 4, opts)
    seen = set()
    for s in strategies:
        for g in s.deployment["instances"]:
            caches = (g.get("role") != "decode" and "priority_pools" not in s.deployment
                      and "attention_offload" not in s.deployment
                      and run_caches(g.get("engine", "vllm")))
            assert ("host_kv_cache_bytes" in g) == caches, (s.name, g)
            seen.add(caches)
    assert seen == {True, False}
    build_deployment(strategies[0].deployment)


def run_caches(engine: str) -> bool:
    from phasewise.specs.engines import resolve_engine

    return resolve_engine(engine, load_hardware("h100-sxm")).prefix_caching


def test_a_tier_beyond_the_nodes_host_memory_is_said_to_be_a_what_if(tmp_path, run_cli):
    """An H100 node has 2 TiB of DIMMs for 8 GPUs (catalog, sourced): 274 GB a GPU with SGLang's 10 GiB kept free. A
    tier within it says nothing; beyond it the summary, simulate's text and plan say so (it still runs: a node with
    more memory is real, and a hardware YAML can say so); a node of unknown memory is not checked."""
    h100 = load_hardware("h100-sxm")
    assert h100.host_memory_per_gpu_bytes == pytest.approx((2.199e12 - 10 * 2**30) / 8)
    assert load_hardware("l40s").host_memory_per_gpu_bytes is None

    def on_one_gpu(hardware="h100-sxm", **kw):
        return run(**dict(BOUNDED, hardware=hardware, tp=1, memory_fraction=0.5, **kw)).summary()["prefix_cache"]

    assert on_one_gpu(host_kv_cache_gb=200.0)["host_beyond_node"] is None
    assert prefix(host_kv_cache_gb=2000.0)["host_beyond_node"] is None  # 8 H200s: 250 GB a GPU
    note = on_one_gpu(host_kv_cache_gb=600.0)["host_beyond_node"]
    assert "600 GB of host memory per GPU" in note and "274 GB a GPU" in note
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"])
    entry["interconnect"] = dict(entry["interconnect"], host_memory_bytes_per_node=8.8e12)
    path = tmp_path / "big-node.yaml"
    path.write_text(yaml.safe_dump({"hardware": {"h100-big-node": entry}}))
    assert on_one_gpu(str(path), host_kv_cache_gb=600.0)["host_beyond_node"] is None
    code, out, _ = run_cli("simulate", "--trace", "mooncake", "--trace-limit", "100", "--host-kv-cache-gb", "600")
    assert code == 0 and "a what-if beyond that node" in " ".join(out.split())
    entry["interconnect"] = dict(entry["interconnect"], host_memory_bytes_per_node=-1)
    path.write_text(yaml.safe_dump({"hardware": {"h100-big-node": entry}}))
    code, _, err = run_cli("estimate", "--hardware", str(path))
    assert code == 2 and "host_memory_bytes_per_node" in err and len(err.strip().splitlines()) == 1


def test_plan_names_the_deployments_whose_tier_is_beyond_their_node():
    from phasewise.apps.plan_view import host_tier_beyond_node

    def row(rank, tp, host_bytes):
        group = {"hardware": "h100-sxm", "tp": tp, "pp": 1, "host_kv_cache_bytes": host_bytes}
        return {"rank": rank, "deployment": {"instances": [group]}}

    assert host_tier_beyond_node([row(1, 2, 400e9), row(2, 1, 100e9)]) is None
    line = host_tier_beyond_node([row(1, 2, 400e9), row(2, 1, 400e9), row(3, 1, 300e9)])
    assert line.startswith("#2, #3: --host-kv-cache-gb 400 is 400 GB of host memory per GPU")


def test_sglang_write_policies():
    """SGLang's --hicache-write-policy (mem_cache/hiradix_cache.py): write_through (the default) copies every block
    as it is cached, so a tier smaller than the GPU cache (150 GB against ~210 GB) holds what the GPU holds and adds
    no hit; write_back writes a block as the GPU evicts it and keeps it when it loads it back, so the same small tier
    adds hits (as TensorRT-LLM's does) and a large one restores the trace's every hit with nothing dropped;
    write_through_selective writes a block at its second use while the GPU holds it: far fewer writes, and the
    excerpt's reuses, mostly after the GPU dropped a block, mostly lost."""
    alone = prefix(engine="sglang")
    through, back, selective = (prefix(engine="sglang", host_kv_cache_gb=150.0, hicache_write_policy=policy)
                                for policy in ("write_through", "write_back", "write_through_selective"))
    assert through["hit_blocks"] == alone["hit_blocks"] and through["host_hit_blocks"] == 0
    assert back["hit_blocks"] > 1.5 * alone["hit_blocks"] and back["host_hit_blocks"] > 0
    assert through == prefix(engine="sglang", host_kv_cache_gb=150.0)  # the default
    assert selective["host_written_blocks"] < through["host_written_blocks"] / 10
    assert selective["host_dropped_blocks"] == 0 and selective["hit_blocks"] >= alone["hit_blocks"]
    hits, _ = direct_ratio(excerpt_rows())
    large = prefix(engine="sglang", host_kv_cache_gb=600.0, hicache_write_policy="write_back", check_invariants=True)
    assert large["hit_blocks"] == hits and large["host_dropped_blocks"] == 0
    assert large["host_cached_blocks"] == large["host_written_blocks"]  # inclusive: a block loaded back stays


def test_sglang_write_back_waits_for_its_writes(tmp_path, run_cli):
    """write_back's eviction writes block (writing_check(write_back=True)): over a slow PCIe link the iterations
    that follow them stretch, where write_through's background copies cost nothing; the knob is SGLang's alone."""
    entry = packaged("hardware_specs.yaml")["hardware"][UNBOUNDED["hardware"]]
    chip = tmp_path / "slow.yaml"
    chip.write_text(yaml.safe_dump(dict(entry, interconnect=dict(entry["interconnect"],
                                                                 pcie_bandwidth_bytes_per_s=1.0e8))))

    def tbt_p99(policy: str) -> float:
        return run(**dict(BOUNDED, hardware=str(chip), engine="sglang"), host_kv_cache_gb=150.0,
                   hicache_write_policy=policy).summary()["tbt_ms"]["p99"]

    assert tbt_p99("write_back") > 5 * tbt_p99("write_through")
    code, _, err = run_cli("simulate", "--trace", "mooncake", "--hicache-write-policy", "write_back")
    assert code == 2 and "--hicache-write-policy is not a knob of vllm" in err
    code, _, err = run_cli("simulate", "--trace", "mooncake", "--engine", "sglang", "--hicache-write-policy", "lazy")
    assert code == 2 and "write_through_selective" in err
    code, _, err = run_cli("simulate", "--trace", "mooncake", "--engine", "sglang", "--hicache-write-policy",
                           "write_back")
    assert code == 2 and "it needs --host-kv-cache-gb" in err
