"""Review fixes to the autoscalers: Dynamo's SLA planner sizes prefill on its load whatever one prompt's TTFT
against the SLA (PrefillPlanner._compute_replica_requirements has no TTFT test), and decode on a batch of one's
throughput where no batch meets the ITL (DecodeInterpolator.find_best_throughput_per_gpu returns the lightest
point); the HPA refuses min_replicas 0 (Kubernetes allows it only on an Object or External metric behind the
HPAScaleToZero alpha gate) and an empty policy list (an HPAScalingRules without a policy is invalid); a KPA's
tiny tick is bounded as the HPA's sync is; activation_scale above the replicas and booleans for integer fields are
one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.sim.agg_profile import mixed_step_s
from phasewise.sim.api import autoscale_flags
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.deployment import build_deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import build_cluster, simulate
from phasewise.sim.sla_planner import SlaPlanner
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"


def steady(rate: float, seconds: float, prompt: int, output: int) -> Workload:
    n = int(rate * seconds)
    return Workload(np.arange(n) / rate, np.full(n, prompt), np.full(n, output))


def disaggregated(prefill: dict | None, decode: dict | None, replicas: int = 4) -> dict:
    groups = [{"role": role, "hardware": "h100-sxm", "replicas": replicas} for role in ("prefill", "decode")]
    for group, block in zip(groups, (prefill, decode)):
        if block:
            group["autoscale"] = block
    return {"model": M, "kv_link": "rdma", "instances": groups}


def collocated(block: dict, replicas: int = 4) -> dict:
    return {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": replicas}], "autoscale": block}


def one_line_error(data: dict, match: str) -> str:
    with pytest.raises(PhasewiseError) as error:
        build_deployment(data)
    text = str(error.value)
    assert match in text and "\n" not in text, text
    return text


# --- 1. prefill: no TTFT test -----------------------------------------------------------------------------------
def test_prefill_counts_its_load_when_one_prompt_alone_misses_the_ttft():
    """A 1 ms TTFT no 1,024-token prompt meets alone: the prefill group still wants ceil(requests x ISL / interval /
    (ISL / TTFT(ISL))), not its minimum (the old gate kept it at 1 however heavy the load)."""
    block = dict(metric="sla", ttft_s=0.001, itl_s=0.1, sync_period_s=30.0, startup_s=10.0, correction=False)
    dep = build_deployment(disaggregated(block, None))
    summary = simulate(dep, steady(60.0, 65.0, 1024, 16), Slo(), check_invariants=True).summary()
    prefill = summary["policy"]["autoscale"][0]
    ttft_s = estimate(M, "h100-sxm", batch=1, prompt_len=1024).prefill.latency_s
    assert ttft_s > 0.001
    assert prefill["adjustments"]
    for adjustment in prefill["adjustments"]:
        want = math.ceil(adjustment["next_requests"] * 1024 / 30.0 / (1024 / ttft_s))
        assert adjustment["replicas"] == max(want, 1) >= 2


# --- 2. decode: the lightest point where no batch meets the ITL -------------------------------------------------
def test_decode_sizes_on_a_batch_of_one_when_no_batch_meets_the_itl():
    """A 1 ms ITL no batch meets: the engine's throughput is a batch of one's (Dynamo's lightest profiled point),
    and the decode group wants ceil(requests x OSL / interval / that), not its minimum."""
    block = dict(metric="sla", ttft_s=2.0, itl_s=0.001, sync_period_s=30.0, startup_s=10.0, correction=False)
    dep = build_deployment(disaggregated(None, block))
    cluster, instances, _ = build_cluster(dep, EventLoop(), 1)
    engine = next(inst for inst in instances if inst.role == "decode")
    planner = SlaPlanner(dep.instances[1].autoscale, cluster, engine)
    context = 1024 + 64
    one_s = mixed_step_s(engine, 0, 1, context) / engine.tokens_per_step
    assert one_s > 0.001
    assert planner.best_decode_tokens_per_s(0.001, context) == pytest.approx(1.0 / one_s)
    summary = simulate(dep, steady(40.0, 65.0, 1024, 128), Slo(), check_invariants=True).summary()
    decode = summary["policy"]["autoscale"][0]
    assert decode["role"] == "decode" and decode["adjustments"]
    for adjustment in decode["adjustments"]:
        ctx = max(int(adjustment["next_isl"] + adjustment["next_osl"] / 2), 1)
        best = 1.0 / (mixed_step_s(engine, 0, 1, ctx) / engine.tokens_per_step)
        want = math.ceil(adjustment["next_requests"] * adjustment["next_osl"] / 30.0 / best)
        assert adjustment["replicas"] == max(want, 1) >= 2
    assert decode["peak_replicas"] >= 2


# --- 3. the HPA at zero -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["waiting", "running", "concurrency", "rps", "kv_usage"])
def test_the_hpa_refuses_min_replicas_zero(metric):
    target = 0.5 if metric == "kv_usage" else 4
    text = one_line_error(collocated({"min_replicas": 0, "target": target, "metric": metric}),
                          "min_replicas 0 (scale to zero) needs autoscaler kpa or keda")
    assert "HPAScaleToZero" in text
    # the flags' block too (--autoscale-min 0 without --autoscaler)
    block = autoscale_flags(0, metric, target, None)
    one_line_error(dict(collocated({}), **block), "needs autoscaler kpa or keda")
    # KEDA and (on its metrics) Knative's KPA scale to zero
    build_deployment(collocated({"min_replicas": 0, "target": target, "metric": metric, "autoscaler": "keda"}))
    if metric in ("concurrency", "rps"):
        build_deployment(collocated({"min_replicas": 0, "target": target, "metric": metric, "autoscaler": "kpa"}))


def test_the_kpa_scales_to_zero_and_wakes_at_the_first_request():
    """Two one-minute bursts of 5 req/s 15 minutes apart under the KPA from zero: the first request of each burst
    starts a replica at once and waits out its start-up; between them the group is at zero."""
    burst = steady(5.0, 60.0, 512, 64)
    n = len(burst.arrival_s)
    load = Workload(np.concatenate([burst.arrival_s, burst.arrival_s + 960.0]), np.full(2 * n, 512),
                    np.full(2 * n, 64))
    dep = build_deployment(collocated({"min_replicas": 0, "target": 2, "metric": "concurrency", "autoscaler": "kpa",
                                       "startup_s": 30.0}, replicas=2))
    result = simulate(dep, load, Slo(), check_invariants=True)
    summary = result.summary()
    scale = summary["policy"]["autoscale"][0]
    ups = [e for e in scale["events"] if e["action"] == "up"]
    zero = [e for e in scale["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert ups[0]["t_s"] == pytest.approx(result.arrival_s[0]) and zero and zero[0]["t_s"] < 960 < ups[-1]["t_s"]
    assert scale["mean_replicas"] < 0.5 and summary["completed"] == summary["requests"]


# --- 4. an empty policy list --------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["up", "down"])
def test_an_empty_policy_list_is_refused_and_select_disabled_turns_a_direction_off(direction):
    text = one_line_error(collocated({"min_replicas": 1, "target": 4, f"scale_{direction}_policies": []}),
                          f"scale_{direction}_policies is empty")
    assert f"scale_{direction}_select: disabled" in text
    block = Autoscale(min_replicas=1, target=4, **{f"scale_{direction}_select": "disabled"})
    assert getattr(block, f"scale_{direction}_policies")  # the defaults kept, the direction off


# --- 5. the KPA's tick bounded ------------------------------------------------------------------------------------
def test_a_kpa_with_a_vanishing_tick_is_refused_as_the_hpa_is():
    """sync_period_s 1e-5 s (the KPA's tick) over minutes of arrivals: the span check's one-line error, not a run
    of billions of ticks."""
    dep = build_deployment(collocated({"min_replicas": 1, "target": 4, "autoscaler": "kpa", "metric": "concurrency",
                                       "sync_period_s": 0.00001}))
    with pytest.raises(PhasewiseError, match=r"periods \(at most 2,000,000\)") as error:
        simulate(dep, steady(1.0, 100.0, 256, 32), Slo())
    assert "1e-05 s" in str(error.value) and "\n" not in str(error.value)


# --- 6. activation_scale and strict integers ----------------------------------------------------------------------
def test_activation_scale_above_the_replicas_is_refused():
    dep = build_deployment(collocated({"min_replicas": 0, "target": 4, "autoscaler": "kpa", "metric": "concurrency",
                                       "activation_scale": 9}))
    with pytest.raises(PhasewiseError, match=r"activation_scale \(9\) is above the group's replicas \(4\)"):
        simulate(dep, steady(1.0, 5.0, 256, 32), Slo())
    dep = build_deployment(collocated({"min_replicas": 0, "target": 4, "autoscaler": "kpa", "metric": "concurrency",
                                       "activation_scale": 4}))
    assert simulate(dep, steady(1.0, 5.0, 256, 32), Slo()).summary()["completed"] == 5


@pytest.mark.parametrize("block, field", [
    ({"min_replicas": True, "target": 4}, "min_replicas"),
    ({"min_replicas": 1, "initial_replicas": True, "target": 4}, "initial_replicas"),
    ({"min_replicas": 1, "target": 4, "autoscaler": "kpa", "metric": "concurrency", "activation_scale": True},
     "activation_scale"),
    ({"min_replicas": 1, "target": 4, "scale_up_policies": [{"type": "pods", "value": True, "period_s": 15}]},
     "value"),
    ({"min_replicas": 1, "target": True}, "target"),  # a float field too (specs/numbers_not_booleans.py)
])
def test_booleans_are_not_integers(block, field):
    one_line_error(collocated(block), f"{field}: must be a number, not true")


def test_a_boolean_gpu_budget_is_refused():
    block = {"metric": "sla", "max_gpu_budget": True}
    one_line_error(disaggregated(block, block), "max_gpu_budget: must be a number, not true")
