"""Router dynamo_kv's two further settings (sim/routers/dynamo_kv.py): softmax sampling at a temperature, by hand
and in frequency; the router queue (sim/router_queue.py), by hand and on a burst where held requests still finish;
both as flags, in YAML and in a launch script, and refused beside another router."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from phasewise.apps.launch import launch_commands
from phasewise.errors import PhasewiseError
from phasewise.sim.api import deployment_from_flags, run
from phasewise.sim.instance import Instance
from phasewise.sim.prompt_queue import PromptQueue
from phasewise.sim.request import SimRequest
from phasewise.sim.router_queue import RouterQueue
from phasewise.sim.routers import DynamoKvSettings, make_router
from phasewise.sim.routers.dynamo_kv import softmax_pick


def test_softmax_pick_follows_dynamos_rescaled_costs_by_hand():
    # costs 0, 3, 9 at temperature 1: rescaled to 0, -1/3, -1; weights 1, e^-1/3, e^-1
    weights = [1.0, math.exp(-1 / 3), math.exp(-1)]
    total = sum(weights)
    first, second = weights[0] / total, (weights[0] + weights[1]) / total  # 0.4519, 0.6757
    assert softmax_pick([0.0, 3.0, 9.0], 1.0, first - 1e-9) == 0
    assert softmax_pick([0.0, 3.0, 9.0], 1.0, first + 1e-9) == 1
    assert softmax_pick([0.0, 3.0, 9.0], 1.0, second + 1e-9) == 2
    # the same spread at any scale: costs x 100 draw alike (the rescaling by highest - lowest)
    assert all(softmax_pick([0.0, 300.0, 900.0], 1.0, d) == softmax_pick([0.0, 3.0, 9.0], 1.0, d)
               for d in (0.1, 0.5, 0.7, 0.99))
    assert [softmax_pick([5.0, 5.0, 5.0, 5.0], 0.1, d) for d in (0.1, 0.3, 0.6, 0.9)] == [0, 1, 2, 3]  # equal: uniform
    # cold: the lowest nearly always; hot: nearly uniform
    assert softmax_pick([0.0, 3.0, 9.0], 0.01, 0.999) == 0
    assert softmax_pick([0.0, 3.0, 9.0], 1000.0, 0.999) == 2


class Worker(SimpleNamespace):
    """The parts of an Instance the router reads."""

    prefill_tokens_pending = Instance.prefill_tokens_pending


def worker(queued_tokens: int, token_budget: int = 2048) -> Worker:
    waiting = PromptQueue()
    if queued_tokens:
        waiting.append(SimRequest(90, 0.0, queued_tokens, 10))
    return Worker(role="collocated", frontend_prompt_tokens=0, waiting=waiting, prefilling=[],
                  engine=SimpleNamespace(token_budget=token_budget), cluster=SimpleNamespace(check=True))


def test_the_queue_holds_only_while_every_instance_is_over_the_threshold():
    busy, lighter = worker(5000), worker(4500)
    router = make_router("dynamo_kv", [busy, lighter], DynamoKvSettings(queue_threshold=2.0))
    assert router.must_hold()  # 5,000 and 4,500 > 2.0 x 2,048
    lighter.waiting.popleft()  # its prompt prefilled
    assert not router.must_hold()
    assert not make_router("dynamo_kv", [busy], DynamoKvSettings()).must_hold()  # no threshold: never
    assert not make_router("least_outstanding", [busy]).must_hold()


def test_the_router_queue_sends_oldest_first_and_drops_a_cancelled_request():
    queue, sent = RouterQueue(), []
    reqs = [SimRequest(i, 0.0, 100, 10) for i in range(3)]
    for t, req in enumerate(reqs):
        queue.hold(req, float(t))
    assert queue.drop(reqs[1]) and not queue.drop(reqs[1])
    held = SimpleNamespace(must_hold=lambda: len(sent) >= 1)  # room for one request only
    queue.release(held, 10.0, sent.append)
    assert sent == [reqs[0]] and len(queue.waiting) == 1
    queue.release(SimpleNamespace(must_hold=lambda: False), 12.0, sent.append)
    assert sent == [reqs[0], reqs[2]]
    assert queue.figures() == {"held_requests": 3, "peak_waiting": 3, "mean_hold_s": (10.0 + 10.0) / 3,
                               "still_waiting": 0}


def burst(**kw):
    return run(replicas=2, router="dynamo_kv", requests=80, rate=200.0, isl=3000, osl=40, max_num_batched_tokens=2048,
               check_invariants=True, **kw)


def test_on_a_burst_held_requests_wait_at_the_router_and_all_finish():
    res = burst(router_queue_threshold=1.0)
    s = res.summary()
    assert s["completed"] == 80
    queue = res.policy["router_queue"]
    assert queue["held_requests"] > 40 and queue["still_waiting"] == 0 and queue["mean_hold_s"] > 0
    # the wait moves from the instances' queues to the router's: the TTFT of the whole burst barely changes
    plain = burst().summary()
    assert "router_queue" not in plain["policy"]
    assert s["ttft_ms"]["mean"] == pytest.approx(plain["ttft_ms"]["mean"], rel=0.15)


def test_sampled_choices_follow_the_softmax_probabilities_and_repeat():
    """Decode instances with 100, 130 and 400 blocks in use, at temperature 0.5: rescaled costs 0, -0.2, -2; the
    router's seeded draws land on each within 2 points of its probability, and again on the same ones."""
    def decode(blocks):
        return SimpleNamespace(role="decode", pending_transfers=[], outstanding=0, gauges=lambda: (0, 0, blocks))

    instances = [decode(100), decode(130), decode(400)]
    weights = [math.exp(-0.0), math.exp(-0.2), math.exp(-2.0)]
    picks = [make_router("dynamo_kv", instances, DynamoKvSettings(temperature=0.5)) for _ in range(2)]
    drawn = [[instances.index(router.choose()) for _ in range(4000)] for router in picks]
    assert drawn[0] == drawn[1]
    for index, weight in enumerate(weights):
        assert drawn[0].count(index) / 4000 == pytest.approx(weight / sum(weights), abs=0.02)
    assert make_router("dynamo_kv", instances).choose() is instances[0]  # temperature 0: the lowest


def test_a_hot_router_spreads_a_burst_and_every_request_finishes():
    res = burst(router_temperature=50.0)
    counts = [int((res.instance == i).sum()) for i in (0, 1)]
    assert min(counts) >= 25 and res.summary()["completed"] == 80


def test_settings_as_flags_in_yaml_and_in_the_launch_script(tmp_path, run_cli):
    dep = deployment_from_flags(replicas=2, router="dynamo_kv", router_temperature=0.3, router_queue_threshold=4.0)
    assert (dep.router_temperature, dep.router_queue_threshold) == (0.3, 4.0)
    assert dep.dynamo_router() == DynamoKvSettings(1.0, 0.3, 4.0)
    _, front, _ = launch_commands(dep)
    assert "--router-mode kv --router-temperature 0.3 --router-queue-threshold 4," in " ".join(front.comments)
    code, out, err = run_cli("simulate", "--requests", "20", "--replicas", "2", "--router", "dynamo_kv",
                             "--router-queue-threshold", "0.5", "--rate", "50", "--isl", "3000")
    assert code == 0 and "Router queue (dynamo_kv):" in out


@pytest.mark.parametrize("flag,field", [("--router-temperature", "router_temperature"),
                                        ("--router-queue-threshold", "router_queue_threshold")])
def test_each_setting_is_refused_beside_another_router_and_out_of_range(tmp_path, run_cli, flag, field):
    with pytest.raises(PhasewiseError, match=f"^{flag} .* --router dynamo_kv.*; the router here is prefix_aware"):
        run(router="prefix_aware", requests=5, **{field: 1.0})
    code, out, err = run_cli("simulate", "--requests", "5", "--router", "dynamo_kv", flag, "-1")
    assert code == 2 and f"{flag}: Input should be greater than or equal to 0" in err  # named by the flag
    assert len(err.strip().splitlines()) == 1
    path = tmp_path / "dep.yaml"
    path.write_text(f"model: meta-llama/Llama-3.1-8B\nrouter: least_outstanding\n{field}: 2\n"
                    "instances:\n  - {role: collocated, hardware: h100-sxm, replicas: 2}\n")
    code, out, err = run_cli("simulate", "--deployment", str(path), "--requests", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{field} " in err and "router dynamo_kv" in err and "(root)" not in err


def test_the_approximate_index_records_renews_expires_and_prunes(monkeypatch):
    from phasewise.sim.routers import approx_index

    index = approx_index.ApproxIndex(ttl_s=120.0, key_tokens=512, block_tokens=16)
    request = SimRequest(1, 0.0, 1600, 10, prefix=(7, 8, 9, 10))  # 3 full 512-token blocks before the last token
    assert index.matched_tokens(0, request, 0.0) == 0
    index.record(0, request, 0.0)
    assert index.matched_tokens(0, request, 119.0) == 1536 and index.matched_tokens(1, request, 1.0) == 0
    assert index.matched_tokens(0, request, 120.0) == 0  # expired
    index.record(0, SimRequest(2, 0.0, 1100, 10, prefix=(7, 8, 11)), 100.0)  # renews the two blocks it shares
    assert index.matched_tokens(0, request, 150.0) == 1024
    # bounded: 32 nodes a prefix block here; past the bound, the soonest-expiring entries go, down to 80 %
    monkeypatch.setattr(approx_index, "MAX_TREE_BLOCKS", 32 * 4)
    for t, first in enumerate((20, 30, 40)):  # 2 blocks each: 6 distinct, > 4
        index.record(1, SimRequest(3 + t, 0.0, 1100, 10, prefix=(first, first + 1, 0)), 200.0 + t)
    assert len(index.holders) <= 3 and index.matched_tokens(1, SimRequest(9, 0.0, 1100, 10, prefix=(40, 41, 0)),
                                                            203.0) == 1024


def sticky_share(router_kv_events: bool | None, ttl_s: float | None = None) -> float:
    """Three documents asked about in turn, a request every 0.5 s over 2 instances whose engines keep no prefix cache,
    the cache-miss blocks weighted 2: the share of a document's requests after its first that go where its previous
    one went."""
    import numpy as np

    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import simulate
    from phasewise.workload.request import Workload

    n = 30
    documents = [tuple(100 * (i % 3) + block for block in range(8)) for i in range(n)]
    work = Workload(np.arange(n) * 0.5, np.full(n, 4200), np.full(n, 100), prefix_hashes=documents)
    dep = build_deployment({"router": "dynamo_kv", "kv_overlap_score_weight": 2.0, "router_kv_events": router_kv_events,
                            "router_ttl_s": ttl_s,
                            "instances": [{"hardware": "h100-sxm", "replicas": 2, "prefix_caching": False}]})
    res = simulate(dep, work, check_invariants=True)
    assert np.isfinite(res.finish_s).all()
    return float(np.mean([res.instance[i] == res.instance[i - 3] for i in range(3, n)]))


def test_without_kv_events_the_router_follows_its_own_routing_until_the_ttl():
    # with events the instances report no cached blocks (caching off): the load alone decides, alternating
    assert sticky_share(None) == 0.0
    # without, the router believes each document cached where it sent it last, and keeps sending it there
    assert sticky_share(False) == 1.0
    # unless its blocks expire before the document comes back (every 1.5 s)
    assert sticky_share(False, ttl_s=1.2) == 0.0


def test_kv_events_settings_as_flags_and_refusals(run_cli):
    dep = deployment_from_flags(replicas=2, router="dynamo_kv", router_kv_events=False, router_ttl_s=30.0)
    assert dep.dynamo_router() == DynamoKvSettings(kv_events=False, ttl_s=30.0)
    _, front, _ = launch_commands(dep)
    assert "--router-mode kv --no-router-kv-events --router-ttl-secs 30," in " ".join(front.comments)
    with pytest.raises(PhasewiseError, match="^--router-ttl-s .* add --no-router-kv-events"):
        deployment_from_flags(replicas=2, router="dynamo_kv", router_ttl_s=30.0)
    with pytest.raises(PhasewiseError, match="^--no-router-kv-events says whether --router dynamo_kv reads"):
        deployment_from_flags(replicas=2, router="prefix_aware", router_kv_events=False)
    code, out, err = run_cli("simulate", "--requests", "5", "--replicas", "2", "--router", "dynamo_kv",
                             "--no-router-kv-events", "--router-ttl-s", "0")
    assert code == 2 and "--router-ttl-s: Input should be greater than 0" in err and len(err.strip().splitlines()) == 1
