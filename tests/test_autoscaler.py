"""The autoscaler (sim/autoscaler.py): replicas added under load serve only after their start-up and leave after
the load falls; no request reaches a replica before it serves; its price and idle energy follow the replicas'
time; an autoscaler that cannot move (min = max) changes nothing; bad blocks and flags are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.perf.startup import startup_estimate
from phasewise.sim.autoscaler import hpa_replicas
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import simulate
from phasewise.specs.engines import resolve_engine
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"


def step_load(rates=((2, 120), (80, 120), (2, 360)), prompt=2048, output=256, seed=0) -> Workload:
    """Poisson arrivals whose rate steps through `rates` ((req/s, seconds), ...)."""
    rng = np.random.default_rng(seed)
    arrivals, start = [], 0.0
    for rate, seconds in rates:
        times = start + np.cumsum(rng.exponential(1 / rate, int(rate * seconds * 2)))
        arrivals.extend(times[times < start + seconds])
        start += seconds
    n = len(arrivals)
    return Workload(np.array(arrivals), np.full(n, prompt), np.full(n, output))


def run(replicas=4, load=None, **autoscale):
    dep = {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": replicas}]}
    if autoscale:
        dep["autoscale"] = autoscale
    result = simulate(build_deployment(dep), load or step_load(), Slo(), check_invariants=True)
    return result, result.summary()


FAST = dict(min_replicas=1, target=4, startup_s=30.0, scale_down_window_s=60.0)


def test_scales_up_under_load_and_down_after():
    result, summary = run(**FAST)
    scale = summary["policy"]["autoscale"][0]
    assert summary["completed"] == summary["requests"]
    assert scale["scale_ups"] >= 1 and scale["scale_downs"] >= 1 and scale["peak_replicas"] == 4
    assert 1 < scale["mean_replicas"] < 4
    ups = [e for e in scale["events"] if e["action"] == "up"]
    assert 120 <= ups[0]["t_s"] <= 120 + 2 * 15  # the first sync after the load steps up
    assert ups[0]["replicas"] == 4  # from 1: at most max(100 %, 4) more a period, and the group's 4 at most
    down = [e for e in scale["events"] if e["action"] == "down"][0]
    assert down["t_s"] >= 240 + 60 - 15 and down["replicas"] == 1  # after the window, down to the minimum


def test_no_request_reaches_a_replica_before_it_serves():
    result, summary = run(**FAST)
    first_up = summary["policy"]["autoscale"][0]["events"][0]["t_s"]
    for replica in range(1, 4):
        arrivals = result.arrival_s[result.instance == replica]
        assert len(arrivals) and arrivals.min() >= first_up + 30.0
    assert (result.instance == 0).any()


def test_a_longer_start_up_costs_ttft_and_the_default_is_the_engines():
    ttft_p90 = [run(**dict(FAST, startup_s=s))[1]["ttft_ms"]["p90"] for s in (15.0, 60.0, 120.0)]
    assert ttft_p90[0] < ttft_p90[1] < ttft_p90[2]
    _, summary = run(min_replicas=1, target=4)
    est = estimate(M, "h100-sxm")
    predicted = startup_estimate(est.cost_model, resolve_engine("vllm", est.cost_model.hw)).total_s
    assert summary["policy"]["autoscale"][0]["startup_s"] == pytest.approx(predicted)


def test_price_and_idle_energy_follow_the_replicas_time():
    """The run's price is the H100's $/GPU-hour over the mean replicas; a replica never started spends nothing. (On
    the KV cache's use, which cannot pass 1, the autoscaler grows by at most 1 / 0.7 a period: on the queue, the
    backlog one replica gathers during a start-up asks for every replica at once.)"""
    load = step_load(((2, 120), (30, 120), (2, 360)))
    result, summary = run(replicas=8, load=load, **dict(FAST, metric="kv_usage", target=0.7))
    scale = summary["policy"]["autoscale"][0]
    assert 1 < scale["peak_replicas"] < 8
    assert result.price_per_hour_usd == pytest.approx(3.99 * scale["mean_replicas"])
    assert summary["gpus"] == pytest.approx(scale["mean_replicas"])  # the per-GPU figures over the GPUs held
    never = [s for s in result.instances[scale["peak_replicas"]:]]
    assert never and all(s.energy_j == 0 and s.busy_s == 0 for s in never)
    fixed, _ = run(replicas=8, load=load)
    assert fixed.price_per_hour_usd == pytest.approx(3.99 * 8)


def test_an_autoscaler_that_cannot_move_changes_nothing():
    load = step_load(((5, 60), (30, 60)), prompt=512, output=64)
    fixed, plain = run(replicas=2, load=load)
    pinned, auto = run(replicas=2, load=load, min_replicas=2, target=1)
    assert auto["policy"]["autoscale"][0]["scale_ups"] == auto["policy"]["autoscale"][0]["scale_downs"] == 0
    assert np.array_equal(fixed.first_token_s, pinned.first_token_s)
    assert np.array_equal(fixed.finish_s, pinned.finish_s)


@pytest.mark.parametrize("block, words", [
    ({"instances": [{"role": "prefill"}, {"role": "decode"}], "autoscale": {"target": 2}},
     "give each group its own `autoscale` block"),
    ({"instances": [{"replicas": 2, "autoscale": {"target": 2}}], "autoscale": {"target": 2}},
     "autoscale is given for the deployment and for a group"),
    ({"instances": [{"replicas": 2}], "autoscale": {"min_replicas": 3, "target": 2}}, "above the group's replicas"),
    ({"instances": [{"replicas": 2}], "autoscale": {"target": 2, "metric": "kv_usage"}}, "in (0, 1]"),
    ({"instances": [{"replicas": 2}], "autoscale": {"target": 2, "metric": "queue"}}, "'waiting', 'running'"),
    ({"instances": [{"replicas": 2, "pp": 2}], "autoscale": {"target": 2}}, "pp=1 replicas only"),
])
def test_bad_autoscale_blocks_are_one_line_errors(block, words):
    with pytest.raises(PhasewiseError, match=None) as err:
        build_deployment({"model": M, **block})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_flags_and_the_twin(run_cli, tmp_path):
    code, out, _ = run_cli("simulate", "--requests", "200", "--rate", "20", "--replicas", "3", "--autoscale-min", "1",
                           "--autoscale-target", "2", "--autoscale-startup-s", "5")
    assert code == 0 and "Autoscaler of the collocated group 0 (waiting -> 2 per replica, every 15 s): 1-3 replicas" in " ".join(out.split())
    for flags, words in ((["--autoscale-target", "2"], "--autoscale-target needs --autoscale-min N"),
                         (["--autoscale-min", "1"], "--autoscale-min needs --autoscale-target X")):
        code, _, err = run_cli("simulate", "--requests", "20", *flags)
        assert code == 2 and words in err
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump({"model": M, "instances": [{"replicas": 2, "hardware": "h100-sxm"}],
                                    "autoscale": {"target": 2}}))
    code, _, err = run_cli("serve", "--deployment", str(path), "--port", "1")
    assert code == 2 and "autoscale is simulate's" in err


def test_disaggregated_groups_scale_apart():
    """A prefill group on its queue and a decode group on its running requests, each its own autoscaler (as
    Dynamo's planner scales them): both grow under the burst and shrink after it, and no KV transfer reaches a
    decode replica before it serves (a request finishing there had its first token after)."""
    window = dict(startup_s=30.0, scale_down_window_s=60.0)
    dep = {"model": M, "kv_link": "rdma", "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "replicas": 4, "autoscale": dict(target=4, **window)},
        {"role": "decode", "hardware": "h100-sxm", "replicas": 4,
         "autoscale": dict(metric="running", target=64, **window)}]}
    result = simulate(build_deployment(dep), step_load(((2, 120), (40, 120), (2, 360))), Slo(),
                      check_invariants=True)
    summary = result.summary()
    prefill, decode = summary["policy"]["autoscale"]
    assert (prefill["role"], decode["role"]) == ("prefill", "decode")
    for scale in (prefill, decode):
        assert scale["scale_ups"] >= 1 and scale["scale_downs"] >= 1 and 1 < scale["mean_replicas"] < 4
    first_up = decode["events"][0]["t_s"]
    late = np.isin(result.instance, [5, 6, 7])  # decode replicas beyond the first (instances 4-7)
    assert late.any() and (result.first_token_s[late] >= first_up + 30.0).all()
    assert summary["gpus"] == pytest.approx(prefill["mean_replicas"] + decode["mean_replicas"])


def test_scales_to_zero_and_back_from_the_gateway():
    """min_replicas 0 (KEDA's or Knative's scale to zero; here the KPA's): with no replica serving, requests wait at the gateway,
    the first of them starts a replica at once, and they go to it when it serves; between two bursts the group goes
    to zero and holds no GPU, and the next burst's first request waits out a start-up again."""
    burst = step_load(((5, 60),), prompt=512, output=64)
    n = len(burst.arrival_s)
    load = Workload(np.concatenate([burst.arrival_s, burst.arrival_s + 960.0]), np.full(2 * n, 512),
                    np.full(2 * n, 64))  # nothing arrives between 60 and 960 s
    result, summary = run(replicas=2, load=load, min_replicas=0, metric="concurrency", target=2, autoscaler="kpa",
                          startup_s=30.0)
    scale = summary["policy"]["autoscale"][0]
    ups = [e for e in scale["events"] if e["action"] == "up"]
    zero = [e for e in scale["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert len(ups) >= 2 and zero and zero[0]["t_s"] < 960 < ups[-1]["t_s"]
    assert ups[0]["t_s"] == pytest.approx(result.arrival_s[0])  # woken by the first request, not the next sync
    first = np.argsort(result.arrival_s)[0]
    assert result.first_token_s[first] - result.arrival_s[first] >= 30.0
    second = np.flatnonzero(result.arrival_s > 960)[0]
    assert [e for e in ups if e["t_s"] > 900][0]["t_s"] == pytest.approx(result.arrival_s[second])
    assert result.first_token_s[second] - result.arrival_s[second] >= 30.0
    assert scale["mean_replicas"] < 0.5  # idle most of the run, at zero
    assert summary["completed"] == summary["requests"]
    with pytest.raises(PhasewiseError, match="a decode group's autoscale min_replicas must be >= 1"):
        build_deployment({"model": M, "instances": [{"role": "prefill"}, {"role": "decode", "replicas": 2,
                                                                          "autoscale": {"min_replicas": 0,
                                                                                        "target": 2,
                                                                                        "autoscaler": "keda"}}]})


def test_knative_metrics_rps_and_concurrency():
    """rps: requests routed a second over the last period, per instance taking them: 40 req/s against a target of 10
    a replica wants 4, and holds there; concurrency (running + waiting, Knative's default) grows the group too; rps
    on a decode group (it takes KV transfers, not requests) is a one-line error."""
    load = step_load(((40, 120),), prompt=512, output=128)
    _, summary = run(replicas=8, load=load, min_replicas=1, metric="rps", target=10, startup_s=10.0)
    scale = summary["policy"]["autoscale"][0]
    assert scale["peak_replicas"] == 4 and scale["events"][0]["replicas"] == 4
    _, summary = run(replicas=8, load=load, min_replicas=1, metric="concurrency", target=8, startup_s=10.0)
    assert summary["policy"]["autoscale"][0]["peak_replicas"] >= 2
    with pytest.raises(PhasewiseError, match="autoscale metric rps counts the requests a group takes"):
        build_deployment({"model": M, "instances": [{"role": "prefill"}, {"role": "decode", "replicas": 2,
                                                                          "autoscale": {"metric": "rps",
                                                                                        "target": 2}}]})


def test_replicas_still_starting_count_as_the_hpa_counts_pods_without_a_metric():
    """replica_calculator.go by hand: 2 ready replicas at 1.5 x the target, none starting -> ceil(3); with 2 starting
    (at 0 on a scale-up) the recount is 3 / 4 = 0.75, the other way: keep 4. Ready at 0.5 x with 1 starting (at the
    target on a scale-down): (2 x 0.5 + 1) / 3 = 0.67 -> ceil(2) = 2. At 3 x with 1 starting: 6 / 3 = 2 -> 6."""
    assert hpa_replicas(1.5, 2, 0, 0.1) == 3
    assert hpa_replicas(1.5, 2, 2, 0.1) == 4
    assert hpa_replicas(0.5, 2, 1, 0.1) == 2
    assert hpa_replicas(0.5, 2, 0, 0.1) == 1
    assert hpa_replicas(3.0, 2, 1, 0.1) == 6
    assert hpa_replicas(1.05, 3, 1, 0.1) == 4  # within the tolerance


@pytest.mark.parametrize("autoscaler", ["kpa", "keda"])
def test_a_group_is_never_scaled_to_zero_under_the_requests_its_gateway_holds(autoscaler):
    """Requests per second counts a request once, when it arrives: with start-up longer than the window the
    metric falls to zero while the gateway still holds the first requests, and stopping the only replica starting
    for them left nothing to wake (the run never ended). A group keeps one while its gateway holds any."""
    data = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "replicas": 2, "autoscale": {
        "autoscaler": autoscaler, "metric": "rps", "target": 1, "min_replicas": 0, "startup_s": 400}}]}
    work = Workload(np.linspace(0, 0.5, 20), np.full(20, 512), np.full(20, 64))
    result = simulate(build_deployment(data), work, check_invariants=True)
    assert result.summary()["completed"] == 20


def test_a_draining_prefill_replica_stops_only_once_its_kv_is_pulled(monkeypatch):
    """A prefill replica hands its requests off before the decode instance has pulled their KV: scaled down, it
    drains until those transfers end, not until its last hand-off (its GPU time and KV were cut short)."""
    from phasewise.sim import autoscaler

    data = {"model": M, "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "replicas": 4, "autoscale": {
            "min_replicas": 1, "initial_replicas": 4, "metric": "waiting", "target": 2, "startup_s": 5,
            "scale_down_window_s": 0, "sync_period_s": 5}},
        {"role": "decode", "hardware": "h100-sxm", "replicas": 1, "max_num_seqs": 8}]}
    arrivals = np.sort(np.random.default_rng(0).uniform(0, 20, 400))
    stopped_holding = []
    stop = autoscaler.Autoscaler._stop

    def watched(self, k, now):
        inst = self.replicas[k]
        if inst.role == "prefill" and inst.kv.used:
            stopped_holding.append((inst.name, now, inst.kv.used))
        stop(self, k, now)

    monkeypatch.setattr(autoscaler.Autoscaler, "_stop", watched)
    result = simulate(build_deployment(data), Workload(arrivals, np.full(400, 2048), np.full(400, 400)),
                      check_invariants=True)
    assert result.summary()["completed"] == 400 and not stopped_holding
