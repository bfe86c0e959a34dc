"""Dynamo's planner beyond its constant predictor and per-group caps: the Kalman load predictor is the textbook
local-linear-trend filter and extrapolates a ramp the constant one lags; the GPU budget over both groups trims as
Dynamo's _apply_global_gpu_budget does, by hand and in a run; bad budget and predictor blocks are one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import build_deployment
from phasewise.sim.load_predictor import LoadPredictor, warmup_intervals
from phasewise.sim.planner_budget import within_gpu_budget
from tests.test_sla_planner import SLA, disaggregated, run


def textbook_kalman(series, q_level=1.0, q_trend=0.1, r=10.0) -> list[float]:
    """One-step forecasts after each observation, with matrices: x = F x, P = F P F' + Q; K = P H' / (H P H' + R),
    x += K (z - H x), P = (I - K H) P (I - K H)' + K R K'."""
    F, H = np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0]])
    Q, R = np.diag([q_level, q_trend]), np.array([[r]])
    x, P = np.array([[series[0]], [0.0]]), np.eye(2) * 1000.0
    forecasts = [series[0]]
    for z in series[1:]:
        x, P = F @ x, F @ P @ F.T + Q
        K = P @ H.T @ np.linalg.inv(H @ P @ H.T + R)
        x = x + K @ (np.array([[z]]) - H @ x)
        A = np.eye(2) - K @ H
        P = A @ P @ A.T + K @ R @ K.T
        forecasts.append(float((F @ x)[0, 0]))
    return forecasts


def test_kalman_is_the_textbook_filter():
    rng = np.random.default_rng(3)
    series = list(1000 + np.cumsum(rng.normal(20, 50, size=12)))
    predictor = LoadPredictor("kalman")
    ours = []
    for value in series:
        predictor.observe(value)
        ours.append(predictor.predict())
    assert ours == pytest.approx(textbook_kalman(series), rel=1e-12)
    # by hand: 10 then 20 -> level 10 + 2001 / 2011 x 10, trend 1000 / 2011 x 10; forecast their sum
    predictor = LoadPredictor("kalman")
    predictor.observe(10.0)
    predictor.observe(20.0)
    assert predictor.predict() == pytest.approx(10 + 2001 / 2011 * 10 + 1000 / 2011 * 10)


def test_kalman_extrapolates_a_ramp_the_constant_predictor_lags():
    kalman, constant = LoadPredictor("kalman"), LoadPredictor("constant")
    for step in range(1, 9):
        kalman.observe(100.0 * step)
        constant.observe(100.0 * step)
    assert constant.predict() == 800.0
    assert kalman.predict() == pytest.approx(900.0, rel=0.03)  # the next interval's, not the last one's


def test_predictors_skip_the_idle_start_and_read_nan_as_zero():
    predictor = LoadPredictor("constant")
    predictor.observe(0.0)
    predictor.observe(math.nan)
    assert not predictor.seen_traffic and predictor.predict() == 0.0
    predictor.observe(50.0)
    predictor.observe(math.nan)
    assert predictor.predict() == 0.0  # once traffic came, a missing interval is a zero
    logged = LoadPredictor("kalman", log1p=True)
    for value in (99.0, 99.0, 99.0):
        logged.observe(value)
    assert logged.predict() == pytest.approx(99.0, rel=1e-6)


def test_within_gpu_budget_by_hand():
    # 6 prefill + 4 decode TP2 replicas (20 GPUs) in 8: scale 0.4 -> prefill floor(2.4) = 2, decode (8 - 4) / 2 = 2
    assert within_gpu_budget(6, 4, 2, 2, 1, 1, 8) == (2, 2)
    assert within_gpu_budget(2, 1, 2, 2, 1, 1, 8) == (2, 1)  # within it: unchanged
    # prefill room leaves the decode minimum: 7 x 1 + 1 x 4 in 6 -> prefill min(2, floor(7 x 6 / 11) = 3) = 2
    assert within_gpu_budget(7, 1, 1, 4, 1, 1, 6) == (2, 1)


def test_a_budget_trims_both_groups_in_a_run():
    """The 2 -> 80 -> 2 req/s burst with 4 prefill and 4 decode GPUs allowed but 4 GPUs of budget: the planner wants
    more, the budget trims it, and the two groups' counts never sum above 4 after an adjustment."""
    block = dict(SLA, sync_period_s=30.0, max_gpu_budget=4)
    _, summary, scales = run(block, block)
    assert summary["completed"] == summary["requests"]
    prefill, decode = scales["prefill"], scales["decode"]
    assert prefill["budget_trims"] >= 1 and prefill["max_gpu_budget"] == 4
    wanted = [p["replicas"] + d["replicas"] for p, d in zip(prefill["adjustments"], decode["adjustments"])]
    assert max(wanted) > 4  # un-trimmed, the planner wanted more
    counts = {"prefill": 1, "decode": 1}
    for t_s in sorted({e["t_s"] for s in (prefill, decode) for e in s["events"]}):
        for role, scale in (("prefill", prefill), ("decode", decode)):
            for event in scale["events"]:
                if event["t_s"] == t_s:
                    counts[role] = event["replicas"]
        assert counts["prefill"] + counts["decode"] <= 4, t_s


def test_the_kalman_predictor_in_a_run_forecasts_the_ramp():
    block = dict(SLA, sync_period_s=30.0, predictor="kalman")
    _, summary, scales = run(block, block)
    assert summary["completed"] == summary["requests"]
    adjustments = scales["prefill"]["adjustments"]
    assert scales["prefill"]["predictor"] == "kalman"
    step = next(k for k, a in enumerate(adjustments) if a["requests"] > 20 * adjustments[0]["requests"])
    after = adjustments[step + 1]  # the interval after the step: the filter's trend carries the rise on
    assert after["next_requests"] > 1.1 * after["requests"]
    constant = run(dict(SLA, sync_period_s=30.0), dict(SLA, sync_period_s=30.0))[2]["prefill"]["adjustments"]
    assert all(a["next_requests"] == a["requests"] for a in constant)


@pytest.mark.parametrize("prefill, decode, message", [
    (dict(SLA, max_gpu_budget=8), dict(SLA), "the same, in the sla blocks"),
    (dict(SLA, max_gpu_budget=8), None, "the same, in the sla blocks"),
    (dict(SLA, max_gpu_budget=8), dict(SLA, max_gpu_budget=6), "max_gpu_budget differs"),
    (dict(SLA, max_gpu_budget=8), dict(SLA, max_gpu_budget=8, sync_period_s=60), "sync_period_s differs"),
    (dict(SLA, max_gpu_budget=1), dict(SLA, max_gpu_budget=1), "below the GPUs of the groups' min_replicas (2)"),
    (dict(SLA, kalman_r=5.0), None, "kalman_r is the kalman predictor's"),
    (dict(SLA, predictor="kalman", throughput_scaling=False, load_scaling=True), None, "does nothing"),
    (dict(SLA, predictor="arima"), None, "predictor"),
    (dict(metric="waiting", target=2, predictor="kalman"), None, "predictor is the sla planner's"),
])
def test_bad_budget_and_predictor_blocks_are_one_line_errors(prefill, decode, message):
    with pytest.raises(PhasewiseError) as error:
        build_deployment(disaggregated(prefill, decode))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_warmup_intervals_by_hand():
    arrival = np.array([0.0, 10.0, 70.0, 200.0])
    prompt, output = np.array([100.0, 300.0, 50.0, 10.0]), np.array([10.0, 30.0, 5.0, 1.0])
    intervals = warmup_intervals(arrival, prompt, output, 60.0)
    assert intervals[:2] == [(2.0, 200.0, 20.0), (1.0, 50.0, 5.0)]
    assert intervals[2][0] == 0.0 and math.isnan(intervals[2][1]) and intervals[3] == (1.0, 10.0, 1.0)


def test_a_warmup_trace_gives_the_kalman_predictor_its_trend_before_the_first_interval(tmp_path):
    """A past trace whose load doubles every 30 s interval: warmed on it, the Kalman predictor's first forecast
    carries the rise on (well above what the first live interval saw); unwarmed, it forecasts what it saw."""
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    t = 0.0
    for k in range(6):
        n = 20 * 2 ** k
        rows += [f"{t + 30.0 * i / n:.4f},1024,128" for i in range(n)]
        t += 30.0
    trace = tmp_path / "past.csv"
    trace.write_text("\n".join(rows) + "\n")
    block = dict(SLA, sync_period_s=30.0, predictor="kalman")
    warm = run(dict(block, predictor_warmup_trace=str(trace)), None)[2]["prefill"]["adjustments"][0]
    cold = run(block, None)[2]["prefill"]["adjustments"][0]
    assert cold["next_requests"] == cold["requests"]
    assert warm["next_requests"] > 2 * warm["requests"]
    with pytest.raises(PhasewiseError, match="does not exist"):
        run(dict(block, predictor_warmup_trace=str(tmp_path / "none.csv")), None)
