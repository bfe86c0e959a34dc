"""Dynamo's SLA planner as an autoscaler (sim/sla_planner.py, metric sla): its throughput-based replica counts
are the documented formula over the frontend's counters and the cost model's profile; it scales a disaggregated
group up under load and down after; its load-based mode moves one replica at a time and never while one starts;
bad blocks are one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.sim.agg_profile import agg_engine_rps, agg_ttft_s, mixed_step_s
from phasewise.sim.api import autoscale_flags
from phasewise.sim.deployment import build_deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.frontend_counters import FrontendCounters
from phasewise.sim.metrics import Slo
from phasewise.sim.request import SimRequest
from phasewise.sim.simulate import build_cluster, simulate
from phasewise.workload.request import Workload
from tests.test_autoscaler import M, step_load

SLA = dict(metric="sla", ttft_s=2.0, itl_s=0.1, startup_s=30.0)


def disaggregated(prefill: dict | None, decode: dict | None, replicas=4) -> dict:
    groups = [{"role": role, "hardware": "h100-sxm", "replicas": replicas} for role in ("prefill", "decode")]
    for group, block in zip(groups, (prefill, decode)):
        if block:
            group["autoscale"] = block
    return {"model": M, "kv_link": "rdma", "instances": groups}


def run(prefill=None, decode=None, load=None, replicas=4):
    dep = build_deployment(disaggregated(prefill, decode, replicas))
    result = simulate(dep, load or step_load(), Slo(), check_invariants=True)
    summary = result.summary()
    return result, summary, {s["role"]: s for s in summary["policy"]["autoscale"]}


def steady(rate=10.0, seconds=240.0, prompt=1024, output=128) -> Workload:
    n = int(rate * seconds)
    return Workload(np.arange(n) / rate, np.full(n, prompt), np.full(n, output))


def test_throughput_based_counts_are_the_formula():
    """Steady 60 req/s of 1,024 / 128 tokens, 60 s intervals: the prefill group wants ceil(requests x ISL / 60 x
    min(1, correction) / (ISL / TTFT)), TTFT one prompt's forward alone (below the chunk size: one iteration, as
    `estimate` costs it)."""
    block = dict(SLA, sync_period_s=60.0)
    _, summary, scales = run(block, block, load=steady(rate=60.0, seconds=150.0))
    assert summary["completed"] == summary["requests"]
    ttft_s = estimate(M, "h100-sxm", batch=1, prompt_len=1024).prefill.latency_s
    adjustments = scales["prefill"]["adjustments"]
    assert [a["t_s"] for a in adjustments] == [60.0, 120.0]
    for adjustment in adjustments:
        assert adjustment["isl"] == 1024 and adjustment["osl"] == 128
        assert abs(adjustment["requests"] - 3600) <= 1  # 60 req/s over 60 s, as routed
        want = math.ceil(3600 * 1024 / 60 * min(1.0, adjustment["correction"]) / (1024 / ttft_s))
        assert adjustment["replicas"] == max(want, 1) >= 2
    decode = scales["decode"]["adjustments"]
    assert decode and all(a["replicas"] >= 1 for a in decode)


def test_scales_a_burst_up_and_down_after():
    """2 -> 80 -> 2 req/s: both groups grow after the step and shrink after it; every request finishes."""
    block = dict(SLA, sync_period_s=30.0)
    result, summary, scales = run(block, block)
    assert summary["completed"] == summary["requests"]
    for role in ("prefill", "decode"):
        scale = scales[role]
        assert scale["peak_replicas"] > 1, role
        ups = [e for e in scale["events"] if e["action"] == "up"]
        downs = [e for e in scale["events"] if e["action"] == "down"]
        assert ups and downs and ups[0]["t_s"] >= 120 and downs[-1]["t_s"] > ups[0]["t_s"]
        assert scale["events"][-1]["replicas"] == 1  # back to the minimum once the load falls
    assert scales["prefill"]["peak_replicas"] >= 3  # 80 x 2,048 tokens a second is ~4 GPUs' prefill


def test_correction_off_keeps_the_profile():
    """correction: false keeps the profile; with load-based scaling on, the correction is off by default, as
    Dynamo's validate_sla_planner_args turns it off."""
    block = dict(SLA, sync_period_s=30.0, correction=False)
    _, _, scales = run(block, block)
    assert all(a["correction"] == 1.0 for s in scales.values() for a in s["adjustments"])
    both = dict(SLA, sync_period_s=30.0, load_scaling=True)
    _, _, scales = run(both, both)
    assert scales["prefill"]["correction"] is False and scales["prefill"]["adjustments"]
    assert all(a["correction"] == 1.0 for s in scales.values() for a in s["adjustments"])


def test_an_unreachable_itl_sizes_decode_on_a_batch_of_one():
    """No batch meets a 1 ms ITL on an 8B model: decode is sized on a batch of one's throughput (Dynamo's
    DecodeInterpolator returns its lightest point), so it grows with the load; the group's replicas cap it."""
    _, summary, scales = run(None, dict(SLA, itl_s=0.001, sync_period_s=30.0, correction=False))
    decode = scales["decode"]
    assert decode["adjustments"] and max(a["replicas"] for a in decode["adjustments"]) > 4
    assert decode["peak_replicas"] == 4


def test_load_based_moves_one_replica_at_a_time():
    """Load-based only: each scale-up adds one replica, never while another is starting (30 s start-up)."""
    block = dict(SLA, throughput_scaling=False, load_scaling=True)
    _, summary, scales = run(block, None)
    prefill = scales["prefill"]
    assert summary["completed"] == summary["requests"]
    assert prefill["load_scale_ups"] >= 2 and prefill["adjustments"] == []
    ups = [e for e in prefill["events"] if e["action"] == "up"]
    assert [e["replicas"] for e in ups] == list(range(2, 2 + len(ups)))
    assert all(b["t_s"] - a["t_s"] >= 30.0 for a, b in zip(ups, ups[1:]))
    assert prefill["load_scale_downs"] >= 1 and prefill["events"][-1]["replicas"] == 1


def test_frontend_counters_average_the_interval():
    counters = FrontendCounters()
    before = counters.copy()
    assert all(math.isnan(v) for v in counters.since(before).means())
    for i, (prompt, output) in enumerate(((100, 11), (300, 1))):
        req = SimRequest(i, arrival_s=0.0, prompt=prompt, output=output)
        req.first_token_s, req.finish_s = 0.5, 1.5
        counters.observe(req)
    isl, osl, ttft_s, itl_s, duration_s = counters.since(before).means()
    assert (isl, osl, ttft_s, duration_s) == (200, 6, 0.5, 1.5)
    assert itl_s == pytest.approx(1.0 / 10)  # the one request with gaps: 1 s over 10 of them


@pytest.mark.parametrize("block, message", [
    (dict(metric="sla", target=3), "takes no target"),
    (dict(metric="sla", scale_down_window_s=60), "takes no scale_down_window_s"),
    (dict(metric="waiting", target=2, itl_s=0.05), "itl_s is the sla planner's"),
    (dict(metric="running"), "needs a target"),
    (dict(metric="sla", throughput_scaling=False), "throughput_scaling or load_scaling"),
    (dict(metric="sla", load_down_sensitivity=0), "load_down_sensitivity"),
    (dict(metric="sla", load_scaling=True, correction=True), "correction is off when load_scaling is on"),
    (dict(metric="sla", load_scaling=True, sync_period_s=5.0), "must be shorter than sync_period_s"),
])
def test_bad_blocks_are_one_line_errors(block, message):
    with pytest.raises(PhasewiseError) as error:
        build_deployment(disaggregated(block, None))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_flags_refuse_sla_and_a_collocated_group_refuses_a_budget():
    with pytest.raises(PhasewiseError, match="--deployment file"):
        autoscale_flags(1, "sla", None, None)
    with pytest.raises(PhasewiseError, match="max_gpu_budget is Dynamo's planner's budget"):
        build_deployment({"model": M, "instances": [{"replicas": 2, "autoscale": {"metric": "sla",
                                                                                  "max_gpu_budget": 2}}]})


def test_the_aggregated_throughput_based_count_is_the_engine_rate_sweep():
    """A collocated group under steady 20 req/s of 1,024 / 128 tokens: every adjustment wants ceil(requests /
    interval / the engine's rate), no correction; the rate is a batch over OSL x its iteration (the prefill that
    feeds it riding along) at the last batch whose iteration meets the ITL and whose TTFT meets the TTFT."""
    block = dict(SLA, sync_period_s=60.0)
    dep = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 4, "autoscale": block}]})
    summary = simulate(dep, steady(rate=20.0, seconds=150.0), Slo(), check_invariants=True).summary()
    scale = summary["policy"]["autoscale"][0]
    assert summary["completed"] == summary["requests"] and scale["role"] == "collocated"
    engine = build_cluster(dep, EventLoop(), 1)[1][0]
    rate = agg_engine_rps(engine, 1024, 128, 2.0, 0.1)
    context = 1024 + 64

    def step_s(batch: int) -> float:
        return mixed_step_s(engine, int(min(batch * 1024 / 128, engine.engine.token_budget)), batch, context)

    batch = next(b for b in range(1, 4096) if b / (128 * step_s(b)) == pytest.approx(rate, rel=1e-12))
    prefill = int(min(batch * 1024 / 128, engine.engine.token_budget))
    assert step_s(batch) <= 0.1 and agg_ttft_s(engine, prefill + 1024, batch, context) <= 2.0
    nxt = batch + 1
    over = step_s(nxt) > 0.1 or agg_ttft_s(engine, int(min(nxt * 8, engine.engine.token_budget)) + 1024, nxt,
                                           context) > 2.0
    balance = 1024 / (engine.engine.token_budget - nxt) > 128  # the prefill no longer keeps up
    assert over or balance or nxt > engine.max_seqs
    adjustments = scale["adjustments"]
    assert [a["t_s"] for a in adjustments] == [60.0, 120.0]
    for adjustment in adjustments:
        assert adjustment["correction"] == 1.0  # the aggregated planner corrects nothing
        assert adjustment["replicas"] == max(1, math.ceil(adjustment["next_requests"] / 60.0 / rate))


def test_the_aggregated_planner_scales_a_collocated_group_on_either_latency():
    """Dynamo's aggregated planner (load-based only) on up to 4 collocated replicas: up one at a time under the
    2 -> 80 -> 2 req/s burst (every replica's TTFT or ITL predicted above the SLA), down after, never while one
    starts; every request finishes."""
    block = dict(SLA, throughput_scaling=False, load_scaling=True)
    dep = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 4, "autoscale": block}]})
    summary = simulate(dep, step_load(), Slo(), check_invariants=True).summary()
    scale = summary["policy"]["autoscale"][0]
    assert summary["completed"] == summary["requests"]
    assert scale["role"] == "collocated" and scale["load_scale_ups"] >= 1 and scale["adjustments"] == []
    ups = [e for e in scale["events"] if e["action"] == "up"]
    assert [e["replicas"] for e in ups] == list(range(2, 2 + len(ups)))
    assert all(b["t_s"] - a["t_s"] >= 30.0 for a, b in zip(ups, ups[1:]))
    assert scale["load_scale_downs"] >= 1 and scale["events"][-1]["replicas"] == 1
