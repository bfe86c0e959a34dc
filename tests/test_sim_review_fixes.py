"""Fixes to the simulator from an outside review: a one-token request's way through a disaggregated deployment, one KV
pool per pipeline-parallel replica, priority pools' SLOs in the headline, and prefix-cache flags on a workload
without prefix hashes."""

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.api import run

DISAGG = dict(arch="disagg", prefill_workers=1, decode_workers=1, kv_link="nvlink", concurrency=1, requests=3,
              isl=2000, check_invariants=True)


# --- 1. a one-token request reaches the decode instance, as each engine's disaggregated serving returns it ---------
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_a_one_token_request_is_returned_by_the_decode_instance(engine):
    one, two = run(engine=engine, osl=1, **DISAGG), run(engine=engine, osl=2, **DISAGG)
    decode = next(i for i, st in enumerate(one.instances) if st.role == "decode")
    assert np.isfinite(one.finish_s).all() and (one.instance == decode).all()  # finished there, not on the prefill
    ttft_one, ttft_two = (r.summary()["ttft_ms"]["mean"] for r in (one, two))
    if engine == "sglang":  # returned as the decode server takes it (no decode step); the 2-token pair after a step
        assert ttft_two > ttft_one
        assert one.instances[decode].iterations == 0
    else:  # vLLM's decode pod recomputes it (one step); TensorRT-LLM sends it as the step is scheduled
        assert ttft_one == pytest.approx(ttft_two, rel=1e-9)
    # TTFT holds the KV transfer and the engine's hand-off: well beyond the prefill alone
    collocated = run(engine=engine, osl=1, arch="collocated", concurrency=1, requests=3, isl=2000)
    assert ttft_one > collocated.summary()["ttft_ms"]["mean"] + 50


def test_a_one_token_request_streams_live_from_the_decode_instance():
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import disaggregated

    for engine in ("sglang", "vllm", "trtllm"):
        live = LiveSim(disaggregated("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 1, engine=engine))
        stream = live.submit(prompt_tokens=512, output_tokens=1)
        live.loop.run_until(1e6)
        items = []
        while not stream.queue.empty():
            items.append(stream.queue.get_nowait())
        assert [kind for kind, _ in items] == ["tokens", "done"] and items[0][1] == 1, (engine, items)
        req = stream.req  # finished on the decode instance, its token sent once its KV got there
        assert live.instances[req.last_instance].role == "decode" and stream.first_token_s >= req.kv_ready_s


# --- 3. priority pools: the block's SLOs are the headline's; --slo-* beside them refused ---------------------------
POOLS = ("model: meta-llama/Llama-3.1-8B\n"
         "instances:\n"
         "  - {role: collocated, pool: lp, hardware: h100-sxm, replicas: 2, engine: ascendra-lp}\n"
         "  - {role: collocated, pool: hp, hardware: h100-sxm, replicas: 1, engine: ascendra-hp}\n")


def _pools(tmp_path, block: str) -> str:
    path = tmp_path / "pools.yaml"
    path.write_text(POOLS + f"priority_pools: {block}\n")
    return str(path)


def test_the_headline_scores_the_slos_the_pools_steer_by(tmp_path):
    from phasewise.sim.api import build
    from phasewise.sim.metrics import Slo
    from phasewise.sim.simulate import simulate

    path = _pools(tmp_path, "{slo_ttft_ms: 200, slo_tpot_ms: 8}")
    spec = build(deployment=path, rate=10, requests=40, isl=1000, osl=50)
    assert spec.slo == Slo(200.0, 8.0)
    assert build(deployment=path, rate=10, requests=40, slo_tbt_ms=30).slo == Slo(200.0, 8.0, 30.0)  # no block field
    result = simulate(spec.deployment, spec.workload)  # the Python API too: the block's SLOs are the run's
    assert result.slo == Slo(200.0, 8.0)
    assert result.summary()["slo"]["attainment"] < 1.0  # 8 ms TPOT: missed, no longer "no SLO: 100 %"
    with pytest.raises(PhasewiseError, match="differs|sets its own slo_tpot_ms"):
        simulate(spec.deployment, spec.workload, Slo(200.0, 50.0))
    # one of the flags beside it: refused, as serve refuses it; one the block leaves unset is read
    for flag in ("slo_ttft_ms", "slo_tpot_ms"):
        with pytest.raises(PhasewiseError, match=f"--{flag.replace('_', '-')} .*priority_pools block sets its own "
                                                 f"{flag}") as info:
            build(deployment=path, rate=10, requests=40, **{flag: 1000.0})
        assert "\n" not in str(info.value)
    half = _pools(tmp_path, "{slo_ttft_ms: 200}")
    assert build(deployment=half, rate=10, requests=40, slo_tpot_ms=50.0).slo == Slo(200.0, 50.0)


def test_per_class_slos_say_what_the_headline_scores(tmp_path):
    from phasewise.sim.api import build

    path = _pools(tmp_path, "{class_slo_ms: [[200, 8], [2000, 80]], slo_ttft_ms: 1000}")
    notes = build(deployment=path, rate=10, requests=40).notes
    assert any("class_slo_ms" in n and "TTFT <= 1000 ms" in n for n in notes), notes


def test_cli_refuses_slo_flags_beside_the_pools_own(run_cli, tmp_path):
    path = _pools(tmp_path, "{slo_ttft_ms: 200, slo_tpot_ms: 8}")
    code, out, err = run_cli("simulate", "--deployment", path, "--rate", "5", "--requests", "10",
                             "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50")
    assert code != 0 and err.count("\n") == 1 and "priority_pools block sets its own slo_ttft_ms" in err


# --- 4. prefix-cache flags on a workload without prefix hashes: a note, the run unchanged --------------------------
def test_prefix_flags_without_prefix_hashes_say_they_change_nothing():
    from phasewise.sim.api import build

    plain = run(trace="azure-conv", trace_limit=60, replicas=2)
    asked = dict(trace="azure-conv", trace_limit=60, replicas=2, kv_store_gb=500, host_kv_cache_gb=100,
                 router="prefix_aware")
    with_flags = run(**asked)
    assert np.array_equal(plain.first_token_s, with_flags.first_token_s)  # README: such traces are unchanged
    notes = [n for n in build(**asked).notes if "prefix hashes" in n]
    assert len(notes) == 1 and all(f in notes[0] for f in ("--host-kv-cache-gb", "--kv-store-gb",
                                                           "--router prefix_aware"))
    assert any("prefix hashes" in n for n in build(rate=5, requests=10, prefix_caching="on").notes)
    # a trace with hash_ids shares prefixes: no such note
    assert not any("prefix hashes" in n for n in build(trace="mooncake", trace_limit=20, kv_store_gb=500).notes)


# --- 2. a pipeline-parallel replica's virtual engines share one KV pool and one sequence cap -----------------------
def _cluster(**flags):
    from phasewise.sim.api import build
    from phasewise.sim.events import EventLoop
    from phasewise.sim.simulate import build_cluster, build_group

    dep = build(rate=5, requests=1, **flags).deployment
    kv_tokens = build_group(dep, dep.instances[0], 0)[1]  # the replica's pool, as estimate sizes it
    return build_cluster(dep, EventLoop(), 1)[1], kv_tokens


def test_the_virtual_engines_of_a_pp_replica_share_its_pool_and_seats():
    engines, kv_tokens = _cluster(pp=2, memory_fraction=0.25)
    ve0, ve1 = engines
    assert ve0.kv is ve1.kv and ve0.kv.capacity == kv_tokens // ve0.kv.block_size
    assert ve0.siblings == (ve1,) and ve1.siblings == (ve0,)
    assert ve0.max_seqs == ve0.engine.max_seqs  # one cap over the micro-batches, all free
    replicas, _ = _cluster(pp=2, replicas=2, memory_fraction=0.25)
    assert replicas[0].kv is replicas[1].kv and replicas[1].kv is not replicas[2].kv  # per replica


def test_a_prompt_that_fits_the_replica_runs_where_estimate_says_it_fits():
    """90,000 prompt tokens in a 159,996-token pool (estimate --pp 2 --memory-fraction 0.25): it was refused as
    beyond one instance's whole KV cache, each virtual engine holding half of it."""
    result = run(pp=2, memory_fraction=0.25, isl=90000, osl=20, requests=1, concurrency=1, check_invariants=True)
    assert result.rejected == 0 and np.isfinite(result.finish_s).all()


def test_pp_runs_conserve_blocks_under_preemption_and_prefix_caching():
    busy = run(pp=2, memory_fraction=0.3, rate=200, requests=300, isl=2048, osl=256, osl_dist="uniform",
               osl_spread=0.9, check_invariants=True)
    assert busy.rejected == 0 and busy.preemptions.sum() > 0  # the shared pool overflowed and was made room in
    cached = run(pp=2, trace="mooncake", trace_limit=60, rate=20, check_invariants=True)
    assert cached.policy["prefix_cache"]["requests"] == 60  # one cache for the replica, counted once
    assert cached.policy["prefix_cache"]["instances"] == 1
