"""Review fixes to the autoscalers and fleets (reviewer K, /tmp/s110/review/autoscale): plan's HPA targets on
running (and kv_usage) stay where the gauge can cross their scale-up threshold, and a fleet that never scaled is not
the answer; a replica started again has a cold prefix cache; KEDA's HPA reads the trigger's value its activation
reads; Knative keeps the last replica for the scale-to-zero grace period; Dynamo's planner refuses min_replicas 0;
plan checks each autoscaler's own period before the search; scale-down follows the ReplicaSet's order."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan import fleet
from phasewise.plan.goodput import workload_spec
from phasewise.plan.goodput_results import GoodputResult
from phasewise.plan.options import PlanOptions
from phasewise.plan.strategies import enumerate_strategies
from phasewise.sim.autoscaler import hpa_replicas
from phasewise.sim.deployment import build_deployment
from phasewise.sim.kpa import KpaDecider
from phasewise.sim.kv import KVBlocks
from phasewise.sim.metrics import Slo
from phasewise.sim.prefix_cache import PrefixCache, PrefixIndex
from phasewise.sim.request import SimRequest
from phasewise.sim.simulate import simulate
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"
SLO = Slo(1000.0, 50.0)


def _steps(rates, prompt, output, seed=0, start_s=0.0):
    """Poisson arrivals stepping through (req/s, seconds), from `start_s`."""
    rng = np.random.default_rng(seed)
    arrivals, start = [], start_s
    for rate, seconds in rates:
        if rate > 0:
            times = start + np.cumsum(rng.exponential(1 / rate, int(rate * seconds * 2) + 10))
            arrivals.extend(times[times < start + seconds])
        start += seconds
    return np.array(arrivals)


def _run(load: Workload, replicas: int, **autoscale):
    dep = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "replicas": replicas}],
                            "autoscale": autoscale})
    result = simulate(dep, load, Slo(), check_invariants=True)
    summary = result.summary()
    return result, summary["policy"]["autoscale"][0]


# --- 1. plan's HPA targets: reachable, and a fleet that never scaled is not the answer ----------------------------

def test_a_running_target_sits_where_the_batch_cap_lets_the_hpa_scale_up():
    """A b64 vLLM replica whose in-flight requests at its goodput are 60 (Little's law on E2E) and whose KV use is
    95 %: the HPA on running scales up only above target x 1.1, which running (at most 64) never passes at 60, nor
    kv_usage (at most 1) at 0.95. Every target offered is one the gauge can cross; the shares capped to the same
    target run once."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=False, batch_caps=(64,))
    strategy = next(s for s in enumerate_strategies(M, "h100-sxm", 4, opts)[0]
                    if s.kind != "disaggregated" and s.deployment["instances"][0].get("max_num_seqs") == 64)
    per_replica_rps = 20.0  # x 3 s of E2E: 60 in flight a replica at the goodput
    verified = SimpleNamespace(summary={"ttft_ms": {"mean": 200.0}, "e2e_ms": {"mean": 3000.0},
                                        "kv_mean_use": {"collocated": 0.95}})
    r = GoodputResult(strategy, per_replica_rps * strategy.units, 100.0, "-", {}, verified=verified)
    work = workload_spec("azure-conv", "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0)
    runs = fleet._autoscaled("hpa", r, 2, SLO, work)
    blocks = [f["instances"][0]["autoscale"] for _, f in runs if isinstance(f, dict)]
    running = [b["target"] for b in blocks if b["metric"] == "running"]
    kv = [b["target"] for b in blocks if b["metric"] == "kv_usage"]
    ceiling = fleet._ceilings(strategy.slice(strategy.units), work)[0]
    assert ceiling <= 64
    assert running and all(hpa_replicas(ceiling / t, 2, 0, 0.1) > 2 for t in running)  # a full batch scales up
    assert max(running) == 58 and "capped at 58" in [d for d, _ in runs][2]
    assert kv == [0.909] and hpa_replicas(1.0 / 0.909, 2, 0, 0.1) == 3
    assert len({str(b) for b in blocks}) == len(blocks)  # no fleet run twice
    assert fleet._reachable("running", 1.0) == 0 and fleet._reachable("concurrency", 1.0) == math.inf


def test_an_autoscaled_fleet_that_never_scaled_is_not_the_answer():
    runs = [fleet.FleetRun("4x TP1", "fixed", "2 of 4 units", 0.99, 2.0, 2.0, 0.05, 0.2, 300, 20, True),
            fleet.FleetRun("4x TP1", "hpa", "running 60 a replica", 0.99, 2.0, 2.0, 0.0499, 0.19, 300, 20, True,
                           never_scaled=True)]
    assert fleet.FleetPlan("trace", 24.0, 1000, 600.0, 0.9, runs).best() is runs[0]
    res = SimpleNamespace(arrival_s=np.array([0.0, 10.0]), finish_s=np.array([900.0, 1000.0]),
                          policy={"autoscale": [{"group": 0, "gpu_periods_s": [[0.0, 1000.0]] * 2, "events": []}]},
                          attained=lambda: np.array([True, True]), ttft_s=np.array([0.1, 0.1]),
                          tpot_s=np.array([0.02, 0.02]), output_tokens=np.array([10, 10]))
    fields = {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 4}]}
    run = fleet._fleet_run("4x TP1", "hpa", "running 60 a replica", fields, res, fleet.Replay(None, 0, 0.0), 0.9)
    assert run.never_scaled and run.meets and "never scaled" in run.detail


# --- 2. and 7. a replica started again is cold; the ReplicaSet's order picks the one to drain ---------------------

@pytest.fixture(scope="module")
def restarted():
    """Two replicas under the HPA on running, every prompt sharing its first 4 blocks: the second replica starts at
    the first rise, one of the two is drained in the quiet and started again at the second rise."""
    arrivals = _steps(((8, 40), (0.1, 100), (30, 20)), 2560, 16, seed=1)
    n = len(arrivals)
    load = Workload(arrivals, np.full(n, 2560), np.full(n, 16), None, "shared-prefix",
                    [(1, 2, 3, 4, 1000 + i) for i in range(n)])
    result, scale = _run(load, 2, min_replicas=1, metric="running", target=2, startup_s=5.0,
                         scale_down_window_s=15.0, sync_period_s=5.0)
    assert [e["action"] for e in scale["events"]] == ["up", "down", "up"]
    return result, sorted(scale["gpu_periods_s"])


def test_a_restarted_replica_starts_with_an_empty_prefix_cache(restarted):
    """Its first request after the restart finds nothing cached (a new engine process); the replica that stayed
    keeps its blocks."""
    result, periods = restarted
    again = max(start for start, _ in periods)  # the restart
    drained = max(end for _, end in periods if end < again)  # that replica's leaving
    quiet = np.flatnonzero((result.arrival_s > drained) & (result.arrival_s < again))
    stayed = int(result.instance[quiet[0]])  # the quiet's requests go to the replica that stayed
    late = np.flatnonzero((result.instance == 1 - stayed) & (result.arrival_s >= again))
    assert result.cached_tokens[late[np.argmin(result.arrival_s[late])]] == 0
    kept = np.flatnonzero((result.instance == stayed) & (result.arrival_s >= again))
    assert result.cached_tokens[kept].max() == 2048


def test_the_most_recently_ready_replica_drains_whatever_its_load(restarted):
    """The ReplicaSet deletes the most recently ready pod (ActivePodsWithRanks), not the least loaded one: replica
    0, ready from the start, serves throughout; replica 1 drains in the quiet and starts again."""
    result, periods = restarted
    assert periods[0][0] == 0.0 and periods[0][1] == pytest.approx(float(np.nanmax(result.finish_s)))
    assert periods[1][1] < 140.0 <= periods[2][0]


def test_reset_empties_the_cache_and_its_host_tier_tells_the_index_and_keeps_the_store():
    from phasewise.sim.kv_tiers import HostTier

    kv = KVBlocks(1000, 16)
    host, store = HostTier(100, 0.001), HostTier(100, 0.001)
    cache = PrefixCache(kv, host, store, key_tokens=64)
    kv.prefix = cache
    index = PrefixIndex()
    index.attach(cache)
    req = SimRequest(0, 0.0, 256, 8, prefix=(1, 2, 3, 4))
    hit, held = cache.probe(req)
    blocks = kv.blocks_for(256)
    cache.acquire(req, blocks, hit, held)
    kv.free_blocks(blocks, req)
    assert cache.refs and host.keys and index.holders
    cache.reset()
    assert not cache.refs and not cache.idle and not host.keys and not index.holders and kv.used == 0
    assert list(store.keys) == req.prefix_keys and cache.requests == 1  # the store and the run's counts stay
    again = SimRequest(1, 1.0, 256, 8, prefix=(1, 2, 3, 4))
    assert cache.matched_blocks(again) == 0 and cache.probe(again)[0] == 3  # found in the store only


def test_the_replicaset_order_is_the_youngest_first_in_log_buckets():
    from phasewise.sim.autoscaler import deletion_order

    # ready at 0 s and 25 s, now 90 s: ages 90 s and 65 s, log2 buckets of ns 36 and 35: the younger first
    assert deletion_order([0.0, 25.0], 90.0) == [1, 0]
    # ages 70 s and 65 s share bucket 36 (Kubernetes: by UID, at random); the more recent first here
    assert deletion_order([20.0, 25.0], 90.0) == [1, 0]
    assert deletion_order([5.0, 10.0, 89.0], 90.0) == [2, 1, 0]


# --- 3. KEDA: the HPA reads the value the activation reads ---------------------------------------------------------

def test_keda_scales_on_the_held_requests_its_activation_counted():
    """10 req/s from 5 s under KEDA from zero (concurrency, target 8): the 30 s poll activates the group on the
    requests the gateway holds; the HPA's sync at the same value wants ceil(held / 8), the group's 4, at once rather
    than after the first replica serves (90 s)."""
    arrivals = _steps(((10, 40),), 1024, 64, seed=2, start_s=5.0)
    n = len(arrivals)
    _, scale = _run(Workload(arrivals, np.full(n, 1024), np.full(n, 64)), 4, autoscaler="keda", min_replicas=0,
                    metric="concurrency", target=8, startup_s=60.0)
    ups = [(e["t_s"], e["replicas"]) for e in scale["events"] if e["action"] == "up"]
    assert ups[0] == (30.0, 1) and max(r for t, r in ups if t <= 45.0) == 4


# --- 4. Knative: the scale-to-zero grace period ------------------------------------------------------------------

def test_the_kpa_keeps_its_last_replica_for_the_grace_period():
    """A 30 s burst, then one request at 100 s: the stable window empties at 90 s, when Knative marks the revision
    inactive; the last replica stays 30 s more (scale-to-zero-grace-period) and serves the 100 s request warm."""
    arrivals = np.append(_steps(((5, 30),), 512, 64), 100.0)
    n = len(arrivals)
    result, scale = _run(Workload(arrivals, np.full(n, 512), np.full(n, 64)), 2, autoscaler="kpa", min_replicas=0,
                         target=2, startup_s=10.0)
    assert not [e for e in scale["events"] if e["replicas"] == 0]
    assert result.ttft_s[-1] < 1.0 and scale["scale_to_zero_grace_period_s"] == 30.0
    # with the request later, the replica goes once the grace period has passed after it was marked inactive
    arrivals[-1] = 400.0
    _, later = _run(Workload(arrivals, np.full(n, 512), np.full(n, 64)), 2, autoscaler="kpa", min_replicas=0,
                    target=2, startup_s=10.0, scale_to_zero_grace_period_s=45.0)
    zero = [e["t_s"] for e in later["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert zero and 90.0 + 45.0 <= zero[0] <= 90.0 + 45.0 + 4.0


def test_the_grace_period_rules():
    kpa = KpaDecider(1.0, scale_to_zero_grace_period_s=30.0, active_since_s=0.0)
    assert kpa.scale_to_zero(30.0, 0, 1, 1) == 1  # active for less than a stable window: one kept
    assert kpa.scale_to_zero(62.0, 0, 1, 1) is None  # marked inactive
    assert kpa.scale_to_zero(80.0, 0, 1, 1) is None
    assert kpa.scale_to_zero(92.0, 0, 1, 1) == 0  # inactive for the grace period
    kpa = KpaDecider(1.0, active_since_s=0.0)
    assert kpa.scale_to_zero(70.0, 0, 1, 1) is None and kpa.scale_to_zero(80.0, 1, 1, 1) == 1  # traffic: active
    assert kpa.scale_to_zero(90.0, 0, 1, 1) is None and kpa.scale_to_zero(110.0, 0, 1, 1) is None
    assert kpa.scale_to_zero(120.0, 0, 1, 1) == 0
    assert KpaDecider(1.0).scale_to_zero(5.0, 0, 1, 0) is None  # activating: none serves yet


@pytest.mark.parametrize("value", [0, -5])
def test_a_bad_grace_period_is_a_one_line_error(value):
    with pytest.raises(PhasewiseError) as error:
        build_deployment({"model": M, "instances": [{"replicas": 2, "autoscale": {
            "autoscaler": "kpa", "target": 2, "scale_to_zero_grace_period_s": value}}]})
    message = str(error.value)
    assert "scale_to_zero_grace_period_s: Input should be greater than 0" in message and "\n" not in message


# --- 5. Dynamo's planner does not scale from zero ----------------------------------------------------------------

def test_the_sla_planner_refuses_min_replicas_zero():
    for role in ("collocated", "prefill"):
        group = {"hardware": "h100-sxm", "replicas": 2, "autoscale": {"metric": "sla", "min_replicas": 0}}
        dep = {"model": M, "instances": [group]} if role == "collocated" else {
            "model": M, "kv_link": "rdma", "instances": [dict(group, role="prefill"),
                                                         {"role": "decode", "hardware": "h100-sxm", "replicas": 2}]}
        with pytest.raises(PhasewiseError) as error:
            build_deployment(dep)
        message = str(error.value)
        assert "min_replicas 0" in message and "min_replicas >= 1" in message and "\n" not in message


# --- 6. plan checks each autoscaler's own period before the search -------------------------------------------------

def test_plan_checks_the_kpas_one_second_sampling_before_the_search():
    work = workload_spec("azure-conv", "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0)
    assert fleet.parse_fleets("hpa", 0.0005, SLO, work) == ("hpa",)  # 4e6 s: 15 s periods fit
    with pytest.raises(PhasewiseError) as error:
        fleet.parse_fleets("hpa,kpa", 0.0005, SLO, work)
    message = str(error.value)
    assert message.startswith("--autoscale kpa:") and "1 s periods" in message and "\n" not in message
    with pytest.raises(PhasewiseError, match="Dynamo's planner's 180 s periods"):
        fleet.parse_fleets("dynamo", 1e-7, SLO, work)
