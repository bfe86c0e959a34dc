"""Kubernetes' HPA behavior (sim/hpa_behavior.py): its policies' limits by hand (pods, percent, the period's start,
select max / min / disabled), its stabilization windows, and in a run a scale-down policy of one pod a minute and a
scale-up window; bad behavior fields are one-line errors."""

from __future__ import annotations

from collections import deque

import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.autoscale_block import Autoscale, ScalingPolicy
from phasewise.sim.deployment import build_deployment
from phasewise.sim.hpa_behavior import HpaBehavior, policy_limit
from tests.test_autoscaler import FAST, M, run, step_load

UP = [ScalingPolicy(type="percent", value=100, period_s=15), ScalingPolicy(type="pods", value=4, period_s=15)]


def test_policy_limits_by_hand():
    none: deque = deque()
    assert policy_limit(2, UP, "max", True, 100.0, none, none) == 6  # max(2 x 2, 2 + 4)
    assert policy_limit(10, UP, "max", True, 100.0, none, none) == 20
    assert policy_limit(10, UP, "min", True, 100.0, none, none) == 14
    assert policy_limit(10, UP, "disabled", True, 100.0, none, none) == 10
    # 3 added 10 s ago: the period started at 7 -> max(14, 11) = 14; 20 s ago: outside the 15 s period
    assert policy_limit(10, UP, "max", True, 100.0, deque([(90.0, 3)]), none) == 14
    assert policy_limit(10, UP, "max", True, 100.0, deque([(80.0, 3)]), none) == 20
    one_a_minute = [ScalingPolicy(type="pods", value=1, period_s=60)]
    assert policy_limit(5, one_a_minute, "max", False, 100.0, none, none) == 4
    assert policy_limit(5, one_a_minute, "max", False, 100.0, none, deque([(50.0, 1)])) == 5  # spent this minute
    half = [ScalingPolicy(type="percent", value=50, period_s=60)]
    assert policy_limit(5, half, "max", False, 100.0, none, none) == 2  # int(5 x 0.5), Kubernetes truncates


def test_stabilization_windows():
    behavior = HpaBehavior(Autoscale(target=1, scale_up_window_s=30, scale_down_window_s=60))
    assert behavior.desired(0.0, 1, 1) == 1  # the window starts with the running replicas
    assert behavior.desired(15.0, 8, 1) == 1  # up at most to the window's lowest: 1 (at 0 s)
    assert behavior.desired(30.0, 8, 1) == 5  # the 0 s one left the window: 8, but 4 pods or 100 % a period
    assert behavior.desired(45.0, 2, 5) == 5  # down at most to the window's highest (8)
    assert behavior.desired(106.0, 2, 5) == 2  # a minute after the last 8


SHORT_BURST = ((2, 60), (80, 60), (2, 540))  # a minute of burst: the group grows to its 4 and comes back


def test_one_replica_a_minute_down_and_a_scale_up_window_in_a_run():
    fast_down = dict(FAST, scale_down_policies=[{"type": "pods", "value": 1, "period_s": 60}])
    _, summary = run(load=step_load(SHORT_BURST), **fast_down)
    scale = summary["policy"]["autoscale"][0]
    downs = [e for e in scale["events"] if e["action"] == "down"]
    assert summary["completed"] == summary["requests"] and len(downs) >= 3
    assert all(b["t_s"] - a["t_s"] >= 60 for a, b in zip(downs, downs[1:]))
    assert [e["replicas"] for e in downs] == list(range(3, 3 - len(downs), -1))
    _, eager = run(load=step_load(SHORT_BURST), **FAST)
    _, patient = run(load=step_load(SHORT_BURST), **dict(FAST, scale_up_window_s=60))
    first = [[e for e in s["policy"]["autoscale"][0]["events"] if e["action"] == "up"][0]["t_s"]
             for s in (eager, patient)]
    assert first[1] >= first[0] + 45  # it waits for a minute of recommendations above the count


@pytest.mark.parametrize("block, message", [
    (dict(target=2, scale_up_select="fastest"), "scale_up_select"),
    (dict(target=2, scale_down_policies=[{"type": "pods", "value": 0, "period_s": 60}]), "value"),
    (dict(target=2, scale_up_policies=[{"type": "pods", "value": 1, "period_s": 3600}]), "period_s"),
    (dict(target=2, scale_up_policies=[{"type": "replicas", "value": 1, "period_s": 60}]), "type"),
    (dict(metric="sla", scale_up_window_s=30), "takes no scale_up_window_s"),
    (dict(metric="concurrency", target=2, autoscaler="kpa", scale_down_select="min"), "has no scale_down_select"),
])
def test_bad_behavior_fields_are_one_line_errors(block, message):
    with pytest.raises(PhasewiseError) as error:
        build_deployment({"model": M, "instances": [{"role": "prefill", "replicas": 2, "autoscale": block},
                                                    {"role": "decode"}]})
    assert message in str(error.value) and "\n" not in str(error.value)
