"""The readers of per-instance figures once a pipeline-parallel replica's virtual engines share one KV pool and one
sequence cap (sim/instance.py siblings, seq_cap): the twin's gauges, prefix-cache counters and Dynamo workers count a
pool once (apps/twin_live.py); the autoscaler's kv_usage is each replica's, not each virtual engine's
(sim/autoscaler.py); the planner's profile holds a micro-batch's share of the cap and the pool, whatever the siblings
hold at the time, and its load-based context spreads the pool over every sequence in it (sim/agg_profile.py,
sim/sla_planner.py); the simulate table's KV mean/peak of a virtual engine is its replica's pool, counted once over
time (sim/iteration_accounting.py); serve's --slo-* beside a priority_pools block's own is refused by the rule
simulate applies (sim/priority_pools.py headline_slo)."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pytest

from phasewise.apps.cli_serve import refuse_unread_slos
from phasewise.apps.twin_live import LiveSim
from phasewise.errors import PhasewiseError
from phasewise.sim.agg_profile import agg_engine_rps, engine_share, mixed_step_s
from phasewise.sim.api import deployment_from_flags
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.autoscaler import Autoscaler
from phasewise.sim.deployment import build_deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import Slo
from phasewise.sim.priority_pools import headline_slo
from phasewise.sim.request import SimRequest
from phasewise.sim.simulate import build_cluster, simulate
from phasewise.sim.sla_planner import SlaPlanner
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"


def _deployment(*groups: dict, engine: str = "vllm"):
    return build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "engine": engine, **group}
                                                       for group in groups]})


def _value(text: str, series: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(series)).rsplit(" ", 1)[1])


# --- 1. the twin: a shared pool and its prefix cache counted once ----------------------------------------------------
def test_the_twin_counts_a_pp_replicas_prefix_cache_once():
    live = LiveSim(deployment_from_flags(pp=2, memory_fraction=0.25, prefix_caching="on"), speed=1e6)
    for _ in range(4):
        live.submit(1024, 4, prefix=(1, 2))
    live.loop.run_until(1.0)
    ve0, ve1 = live.instances
    cache = ve0.kv.prefix
    assert cache is ve1.kv.prefix and cache.prompt_tokens > 0
    text = live.prometheus("m")
    assert _value(text, "vllm:prefix_cache_queries_total{") == cache.prompt_tokens  # was twice
    assert _value(text, "vllm:prefix_cache_hits_total{") == cache.hit_tokens


def test_the_twin_counts_a_shared_pool_once_in_its_kv_gauges_and_workers():
    """A PP=2 group beside a PP=1 one: the pool's blocks once in the KV usage (its capacity once too), in SGLang's
    used tokens, and one Dynamo worker per replica, its virtual engines' load together."""
    live = LiveSim(_deployment({"pp": 2, "memory_fraction": 0.25}, {"memory_fraction": 0.25}, engine="sglang"))
    ve0, ve1, single = live.instances
    assert ve0.kv is ve1.kv and single.kv is not ve0.kv
    ve0.kv.allocate(300)
    single.kv.allocate(100)
    assert live.gauges()["kv_usage"] == pytest.approx(400 / (ve0.kv.capacity + single.kv.capacity))
    text = live.prometheus("m")
    assert _value(text, "sglang:num_used_tokens{") == 400 * ve0.kv.block_size
    rows = [line for line in text.splitlines() if line.startswith("dynamo_frontend_worker_active_decode_blocks{")]
    assert [line.rsplit(" ", 1)[1] for line in rows] == ["300", "100"]  # workers 1 (the PP replica) and 2
    assert [live.worker(i.index)[0] for i in live.instances] == ["1", "1", "2"]


# --- 2. the autoscaler's kv_usage: a replica's share of its pool --------------------------------------------------
def test_the_autoscalers_kv_usage_counts_a_shared_pool_once():
    _, instances, _ = build_cluster(_deployment({"pp": 2, "memory_fraction": 0.25}), EventLoop(), 1)
    ve0, ve1 = instances
    ve0.kv.allocate(ve0.kv.capacity // 4)
    scaler = SimpleNamespace(config=SimpleNamespace(metric="kv_usage", sync_period_s=15.0), routed=instances)
    scaler._metric_total = lambda *args: Autoscaler._metric_total(scaler, *args)
    share = (ve0.kv.capacity // 4) / ve0.kv.capacity
    assert Autoscaler._metric_total(scaler, [ve0, ve1], 0, 15.0) == pytest.approx(share)  # was twice
    assert Autoscaler._metric_mean(scaler, [ve0, ve1], 0) == pytest.approx(share)  # one replica
    scaler.config.metric = "running"
    ve1.ready.append(object())  # a request of the replica's, on its second virtual engine
    assert Autoscaler._metric_mean(scaler, [ve0, ve1], 0) == 1  # per replica, not per virtual engine


# --- 3. the planner's profile: a micro-batch's share of the replica's cap and pool --------------------------------
def _pp_engines(memory_fraction: float = 0.9):
    dep = _deployment({"pp": 2, "memory_fraction": memory_fraction})
    cluster, instances, _ = build_cluster(dep, EventLoop(), 1)
    return cluster, instances


def test_the_profile_holds_a_micro_batchs_share_whatever_the_siblings_hold():
    _, (ve0, ve1) = _pp_engines()
    share = (ve0.seq_cap // 2, ve0.kv.capacity // 2 * ve0.kv.block_size)
    assert engine_share(ve0) == share
    ve1.incoming = 100  # seats the other micro-batch holds now: the engine's max_seqs drops, its profile does not
    assert ve0.max_seqs == ve0.seq_cap - 100 and engine_share(ve0) == share
    # the aggregated planner's sweep: ISL 64 / OSL 64 keeps the KV bound far above the cap, no SLA binds
    assert share[1] // 96 > share[0]
    rate = agg_engine_rps(ve0, 64, 64, 1e9, 1e9)
    batch = share[0]
    step_s = mixed_step_s(ve0, int(min(batch * 64 / 64, ve0.engine.token_budget)), batch, 96)
    assert rate == pytest.approx(batch * ve0.tokens_per_step / (64 * step_s))  # was the whole cap's batch


def test_the_decode_profile_bounds_a_batch_by_the_micro_batchs_share():
    cluster, (ve0, _) = _pp_engines()
    block = Autoscale(metric="sla", ttft_s=1.0, itl_s=1.0)
    planner = SlaPlanner(block, cluster, ve0)
    seqs, kv_tokens = engine_share(ve0)
    for context in (128, 60_000):  # the cap binds, then the pool's share
        most = max(1, min(seqs, kv_tokens // context))
        assert most < min(ve0.seq_cap, ve0.kv.capacity * ve0.kv.block_size // context)
        assert planner.best_decode_tokens_per_s(1e9, context) == pytest.approx(
            most / planner.decode_itl_s(most, context))


def test_the_load_based_context_spreads_the_pool_over_its_sequences():
    """A collocated PP replica's predicted ITL prices its next decode step at the pool's tokens over every sequence in
    the pool (both micro-batches'), not over this virtual engine's alone."""
    cluster, (ve0, ve1) = _pp_engines(0.25)
    planner = SlaPlanner(Autoscale(metric="sla", ttft_s=1.0, itl_s=1.0), cluster, ve0)
    for k in range(8):
        cluster.arrive(SimRequest(k, 0.0, 512, 400))
    cluster.loop.run_until(1.0)
    assert ve0.running.n and ve1.running.n
    context = ve0.kv.used * ve0.kv.block_size // (ve0.running.n + ve1.running.n)
    riding = ve0.stats.prefill_tokens // ve0.stats.iterations  # the prompt tokens its iterations carried (first look)
    assert planner.next_latency_s(ve0, "decode") == pytest.approx(
        mixed_step_s(ve0, riding, ve0.running.n + 1, context) / ve0.tokens_per_step)


# --- 4. the simulate table's KV mean/peak of a virtual engine: its replica's pool, counted once over time -----------
def _pp_run(**work):
    dep = deployment_from_flags(pp=2, memory_fraction=0.3)
    return simulate(dep, Workload(**work), Slo(), check_invariants=True).summary()["instances"]


def test_the_virtual_engines_show_their_replicas_pool():
    import numpy as np

    n = 200
    rows = _pp_run(arrival_s=np.arange(n) / 50.0, prompt_tokens=np.full(n, 2048), output_tokens=np.full(n, 256))
    assert len(rows) == 2
    for key in ("kv_mean_use", "kv_peak_use"):
        assert rows[0][key] == rows[1][key] and 0 < rows[0][key] <= 1  # were each engine's view, apart
    # one request: one virtual engine runs it, and both rows show the replica's pool holding it
    one = _pp_run(arrival_s=np.zeros(1), prompt_tokens=np.full(1, 4096), output_tokens=np.full(1, 64))
    assert one[0]["kv_mean_use"] == one[1]["kv_mean_use"] > 0 and one[0]["kv_peak_use"] == one[1]["kv_peak_use"] > 0


# --- 5. serve's --slo-* beside a priority_pools block's own: simulate's rule ---------------------------------------
def test_serve_refuses_an_slo_beside_the_blocks_own_by_simulates_rule():
    pools = deployment_from_flags(scheduler="ascendra", replicas=2)
    own = pools.model_copy(update={"priority_pools": pools.priority_pools.model_copy(update={"slo_tpot_ms": 40.0})})
    with pytest.raises(PhasewiseError) as simulate_says:
        headline_slo(own.priority_pools, Slo(tpot_ms=50.0), flags=True)
    with pytest.raises(PhasewiseError, match=re.escape(str(simulate_says.value))):
        refuse_unread_slos(own, math.inf, 50.0)
    refuse_unread_slos(own, 500.0, math.inf)  # the block sets no TTFT of its own: the flag's is read
    with pytest.raises(PhasewiseError, match="--slo-tpot-ms is the deadline priority pools steer by"):
        refuse_unread_slos(deployment_from_flags(), math.inf, 50.0)


def test_a_transfer_queued_on_an_idle_pp_decode_engine_starts_when_a_sibling_frees_a_seat():
    """A disaggregated request whose KV transfer waited for a seat its PP replica's other virtual engine held was
    queued on an idle engine that nothing woke: the run ended with it unfinished (found by the invariant property
    test). The idle engine now waits on its siblings' room, as one that goes idle with work waiting does."""
    import numpy as np

    from phasewise.workload import Workload

    group = dict(hardware="h100-sxm", tp=1, pp=2, engine="vllm", max_num_seqs=4, max_num_batched_tokens=256)
    dep = build_deployment(dict(model="meta-llama/Llama-3.1-8B", router="least_outstanding", kv_link="nvlink",
                                instances=[dict(role="prefill", replicas=1, **group),
                                           dict(role="decode", replicas=2, **group)]))
    rows = [(0.0, 2, 1), (0.0, 1, 43), (0.0, 1, 241), (0.0, 1538, 221), (0.25, 1952, 182), (0.25, 1, 1), (0.25, 1, 1),
            (0.25, 1, 1), (0.25, 1, 1), (1.0, 1, 1), (1.0, 1, 122), (1.375, 1, 77), (1.75, 1, 32), (2.0, 1, 1),
            (2.125, 1, 1)]
    arrival, prompts, outputs = zip(*rows)
    result = simulate(dep, Workload(np.array(arrival), list(prompts), list(outputs)), check_invariants=True)
    assert np.isfinite(result.finish_s).all()
