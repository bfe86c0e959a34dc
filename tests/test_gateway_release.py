"""Replicas an autoscaler makes ready (sim/autoscaler.py _ready): the requests the gateway held at zero go once every
replica ready at that instant is routable, shared by the router's rule (before, the first replica's ready event sent
it the whole backlog); a replica ready alone gets it all, as before; the event loop's look at its next event. And
router dynamo_kv without KV events forgets what it recorded on a replica the autoscaler stopped (ApproxIndex.forget),
so a restarted replica, its cache empty, is never scored with guesses from its previous engine."""

from __future__ import annotations

import numpy as np

from phasewise.sim.deployment import build_deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import Slo
from phasewise.sim.request import SimRequest
from phasewise.sim.routers import approx_index
from phasewise.sim.routers.approx_index import ApproxIndex
from phasewise.sim.simulate import simulate
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"
STARTUP_S = 20.0


def from_zero(activation_scale: int, arrivals: np.ndarray):
    """Three replicas at zero under the KPA, a 20 s start-up; 512 / 64-token requests at `arrivals`."""
    n = len(arrivals)
    dep = {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 3}],
           "autoscale": {"min_replicas": 0, "metric": "concurrency", "target": 10, "autoscaler": "kpa",
                         "startup_s": STARTUP_S, "activation_scale": activation_scale}}
    return simulate(build_deployment(dep), Workload(arrivals, np.full(n, 512), np.full(n, 64)), Slo(),
                    check_invariants=True)


def test_replicas_ready_together_share_the_held_requests():
    """40 requests in the first 4 s wake three replicas at once (activation scale 3); all three are ready at 20 s and
    the least-outstanding router spreads the 40 held requests over them (before: 40 / 0 / 0), none served early."""
    result = from_zero(3, np.linspace(0.0, 4.0, 40))
    scale = result.summary()["policy"]["autoscale"][0]
    assert scale["events"][0] == {"t_s": 0.0, "action": "up", "replicas": 3}
    assert sorted(np.bincount(result.instance, minlength=3).tolist()) == [13, 13, 14]
    assert (result.first_token_s >= STARTUP_S).all()


def test_a_replica_ready_alone_takes_the_backlog_as_before():
    """Activation scale 1: one replica wakes at the first request and serves at 20 s; the KPA starts more later, so
    they become ready at other instants: every request held until 20 s goes to the first, as it did."""
    arrivals = np.concatenate([np.linspace(0.0, 4.0, 40), np.linspace(30.0, 40.0, 20)])
    result = from_zero(1, arrivals)
    held = result.arrival_s < STARTUP_S
    first = result.instance[held][0]
    assert (result.instance[held] == first).all() and held.sum() == 40
    assert (result.first_token_s[held] >= STARTUP_S).all()


def test_the_loop_shows_its_next_event():
    loop = EventLoop()
    assert loop.next_call() == (float("inf"), None)
    seen = []
    loop.at(2.0, seen.append, "b")
    loop.at(1.0, seen.append, "a")
    when, call = loop.next_call()
    assert when == 1.0 and call == seen.append
    loop.run()
    assert seen == ["a", "b"] and loop.next_call() == (float("inf"), None)


def test_the_approximate_index_forgets_an_instance():
    index = ApproxIndex(120.0, 512, 16)
    request = SimRequest(1, 0.0, 1536, 10, prefix=(7, 8, 9))
    index.record(0, request, 0.0)
    index.record(1, request, 0.0)
    index.forget(1)
    assert index.matched_tokens(1, request, 1.0) == 0 and index.matched_tokens(0, request, 1.0) == 1536
    assert sorted(index.holders.values()) == [1, 1, 1]  # each block now on one instance
    index.record(1, request, 50.0)  # recorded again after the stale heap entries: they expire nothing of it
    assert index.matched_tokens(1, request, 150.0) == 1536
    index.forget(0)
    assert index.matched_tokens(0, request, 1.0) == 0 and sorted(index.holders.values()) == [1, 1, 1]
    index.forget(1)
    assert not index.holders and not index.expiry_s


def test_a_restarted_replica_is_never_scored_with_its_previous_engines_blocks(monkeypatch):
    """Router dynamo_kv without KV events, two replicas under the HPA: a burst adds the second, a lull stops it, the
    next burst starts it again within the index's 120 s TTL. Every overlap the router predicts on a replica comes
    from requests it sent there since that replica's last stop (before: 7 lookups at 80 s credited the restarted
    replica with 3,072 cached tokens its empty cache did not hold)."""
    stale, last_stop = [], {}
    matched_tokens = ApproxIndex.matched_tokens

    def checked(self, instance, req, now_s):
        tokens = matched_tokens(self, instance, req, now_s)
        if tokens and instance in last_stop:
            recorded_s = self.expiry_s[(instance, self.keys(req)[0])] - self.ttl_s
            stale.append(recorded_s < last_stop[instance])
        return tokens

    from phasewise.sim import autoscaler
    stop = autoscaler.Autoscaler._stop

    def stopped(self, k, now):
        last_stop[self.replicas[k].index] = now
        stop(self, k, now)

    monkeypatch.setattr(approx_index.ApproxIndex, "matched_tokens", checked)
    monkeypatch.setattr(autoscaler.Autoscaler, "_stop", stopped)
    rng = np.random.default_rng(0)
    arrivals, start = [], 0.0
    for rate, seconds in ((20, 30), (1, 60), (20, 30)):
        times = start + np.cumsum(rng.exponential(1 / rate, rate * seconds * 2))
        arrivals.extend(times[times < start + seconds])
        start += seconds
    n = len(arrivals)
    documents = [tuple(1000 * (i % 4) + block for block in range(6)) for i in range(n)]
    dep = build_deployment({"model": M, "router": "dynamo_kv", "router_kv_events": False,
                            "instances": [{"hardware": "h100-sxm", "replicas": 2}],
                            "autoscale": {"min_replicas": 1, "metric": "concurrency", "target": 2, "startup_s": 5.0,
                                          "scale_down_window_s": 15.0}})
    result = simulate(dep, Workload(np.array(arrivals), np.full(n, 3200), np.full(n, 256), prefix_hashes=documents),
                      Slo(), check_invariants=True)
    events = [(e["action"], e["replicas"]) for e in result.summary()["policy"]["autoscale"][0]["events"]]
    assert events == [("up", 2), ("down", 1), ("up", 2)] and last_stop
    assert stale and not any(stale)  # lookups on the restarted replica, none from before its stop
    assert np.isfinite(result.finish_s).all()
