"""Knative's Pod Autoscaler (autoscaler: kpa): its decision by hand (stable count, scale-down rate, panic and its
no-scale-down hold, leaving panic after a stable window, the scale-down delay and the activation scale), in a run
(faster to react to a burst than the HPA, to zero once a stable window passes without traffic, a delayed
scale-down, a wake with the activation scale), and one-line errors for its knobs."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import build_deployment
from phasewise.sim.kpa import KpaDecider
from phasewise.workload.request import Workload
from tests.test_autoscaler import M, run, step_load


def fed(decider: KpaDecider, start_s: float, seconds: int, value: float) -> float:
    for k in range(seconds):
        decider.record(start_s + k + 1, value)
    return start_s + seconds


def test_the_decision_by_hand():
    # target 10 x 70 % = 7 a replica; 70 in flight over the whole window on 8 ready replicas: ceil(70 / 7) = 10,
    # the panic count 10 / 8 = 1.25 below the 200 % threshold: stable
    decider = KpaDecider(7.0)
    now = fed(decider, 0.0, 60, 70.0)
    assert decider.desired(now, 8) == 10 and decider.panics == 0
    # down to 7 in flight: ceil(7 / 7) = 1 wanted, but at most halved a tick: floor(8 / 2) = 4
    decider = KpaDecider(7.0)
    now = fed(decider, 0.0, 60, 7.0)
    assert decider.desired(now, 8) == 4
    assert KpaDecider(7.0).desired(0.0, 3) is None  # no sample yet


def test_panic_scales_up_at_once_and_holds_until_a_stable_window_passes():
    decider = KpaDecider(7.0)
    now = fed(decider, 0.0, 54, 7.0)
    now = fed(decider, now, 6, 70.0)  # a burst fills the 6 s panic window: panic count 10 on 1 replica
    # stable: (54 x 7 + 6 x 70) / 60 = 13.3 -> 2; panicking, the larger: 10
    assert decider.desired(now, 1) == 10 and decider.panics == 1
    now = fed(decider, now, 10, 7.0)  # the burst is over: no scale-down while panicking
    assert decider.desired(now, 10) == 10
    now = fed(decider, now, 60, 7.0)  # a whole stable window below the threshold: back to the stable count
    assert decider.desired(now, 10) == 5  # ceil(7 / 7) = 1, but at most halved a tick: floor(10 / 2)


def test_kpa_reacts_to_a_burst_before_the_hpa():
    """2 -> 80 -> 2 req/s on up to 4 replicas, concurrency target 12 (x 70 %: one replica holds the 2 req/s): the
    KPA's panic window sees the step within seconds, the HPA (15 s syncs) later; the KPA scales back down after."""
    common = dict(min_replicas=1, metric="concurrency", target=12, startup_s=30.0,
                  load=step_load(((2, 120), (80, 60), (2, 360))))
    _, kpa = run(**common, autoscaler="kpa")
    _, hpa = run(**common)
    kpa_scale, hpa_scale = kpa["policy"]["autoscale"][0], hpa["policy"]["autoscale"][0]
    assert kpa["completed"] == kpa["requests"]
    assert kpa_scale["autoscaler"] == "kpa" and kpa_scale["panics"] >= 1 and kpa_scale["sync_period_s"] == 2.0
    first_kpa = [e for e in kpa_scale["events"] if e["action"] == "up"][0]["t_s"]
    first_hpa = [e for e in hpa_scale["events"] if e["action"] == "up"][0]["t_s"]
    assert 120 <= first_kpa < 126 and first_kpa < first_hpa
    assert kpa_scale["events"][-1]["action"] == "down" and kpa_scale["events"][-1]["replicas"] == 1


def test_kpa_scales_to_zero_after_a_stable_window_without_traffic():
    burst = step_load(((5, 60),), prompt=512, output=64)
    n = len(burst.arrival_s)
    load = Workload(np.concatenate([burst.arrival_s, burst.arrival_s + 600.0]), np.full(2 * n, 512),
                    np.full(2 * n, 64))
    _, summary = run(replicas=2, load=load, min_replicas=0, metric="rps", target=10, autoscaler="kpa",
                     startup_s=20.0)
    scale = summary["policy"]["autoscale"][0]
    zero = [e for e in scale["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert zero and 60 + 60 <= zero[0]["t_s"] < 600  # the last request's second, then a window without any
    assert summary["completed"] == summary["requests"]


def ticked(decider: KpaDecider, start_s: float, seconds: int, value: float, ready: int) -> list[int]:
    """Sample every second and decide every 2 s (Knative's tick) on `ready` replicas: the counts decided."""
    counts = []
    for k in range(1, seconds + 1):
        decider.record(start_s + k, value)
        if k % 2 == 0:
            counts.append(decider.desired(start_s + k, ready))
    return counts


def test_scale_down_delay_acts_on_the_most_wanted_over_the_delay():
    """Traffic falls from 70 to 7 in flight on 10 replicas: the stable average (and the count) falls over the 60 s
    window; with scale_down_delay_s 30 each tick acts on the most it wanted over the last 30 s (15 ticks), so a
    lower count acts once the last higher want is 30 s old: the first scale-down 14 ticks after the undelayed one."""
    plain, delayed = KpaDecider(7.0), KpaDecider(7.0, scale_down_delay_s=30.0)
    assert ticked(plain, 0.0, 60, 70.0, 10) == ticked(delayed, 0.0, 60, 70.0, 10) == [10] * 30
    wanted, held = ticked(plain, 60.0, 120, 7.0, 10), ticked(delayed, 60.0, 120, 7.0, 10)
    first_down = next(i for i, c in enumerate(wanted) if c < 10)
    assert next(i for i, c in enumerate(held) if c < 10) == first_down + 14
    # the delayed count at each tick is the most of the undelayed ones over the last 30 s (this tick and 14 before)
    history = [10] * 30 + wanted
    assert held == [max(history[30 + i - 14: 30 + i + 1]) for i in range(len(wanted))]


def test_a_delay_below_the_clocks_resolution_acts_as_none():
    """A scale-down delay too small for the clock (now - 1e-300 == now) keeps the tick's own want (found by
    benchmarks/fuzz_files.py: it emptied the window and failed with an IndexError)."""
    plain, tiny = KpaDecider(7.0), KpaDecider(7.0, scale_down_delay_s=1e-300)
    assert ticked(tiny, 0.0, 60, 70.0, 10) == ticked(plain, 0.0, 60, 70.0, 10)
    assert ticked(tiny, 60.0, 120, 7.0, 10) == ticked(plain, 60.0, 120, 7.0, 10)


def test_activation_scale_is_the_fewest_replicas_while_there_is_traffic():
    decider = KpaDecider(7.0, activation_scale=3)
    now = fed(decider, 0.0, 60, 1.0)  # ceil(1 / 7) = 1 wanted: lifted to the activation scale
    assert decider.desired(now, 1) == 3
    now = fed(decider, now, 60, 0.0)  # a whole window without traffic: no floor (scale to zero stays possible)
    assert decider.desired(now, 1) == 0


def test_scale_down_delay_and_activation_scale_in_a_run():
    """The KPA's step-load run again: a 120 s scale-down delay moves every scale-down at least 120 s later (the
    replicas held meanwhile), and activation_scale 2 wakes a group at zero with two replicas at once."""
    common = dict(min_replicas=1, metric="concurrency", target=12, startup_s=30.0, autoscaler="kpa",
                  load=step_load(((2, 120), (80, 60), (2, 360))))
    _, plain = run(**common)
    _, delayed = run(**common, scale_down_delay_s=120.0)
    plain_scale, delayed_scale = plain["policy"]["autoscale"][0], delayed["policy"]["autoscale"][0]
    assert delayed_scale["scale_down_delay_s"] == 120.0 and plain_scale["scale_down_delay_s"] == 0.0
    first_down = [e["t_s"] for e in plain_scale["events"] if e["action"] == "down"][0]
    # the lower want of the first tick that scaled down acts once the delay has passed (less the 2 s tick)
    assert [e["t_s"] for e in delayed_scale["events"] if e["action"] == "down"][0] >= first_down + 120 - 2
    assert delayed_scale["mean_replicas"] > plain_scale["mean_replicas"]
    assert delayed["completed"] == delayed["requests"]
    burst = step_load(((5, 60),), prompt=512, output=64)
    _, woken = run(replicas=3, load=burst, min_replicas=0, metric="rps", target=10, autoscaler="kpa",
                   startup_s=20.0, activation_scale=2)
    scale = woken["policy"]["autoscale"][0]
    assert scale["events"][0] == {"t_s": scale["events"][0]["t_s"], "action": "up", "replicas": 2}
    assert woken["completed"] == woken["requests"]


@pytest.mark.parametrize("block, message", [
    (dict(metric="concurrency", target=2, autoscaler="kpa", scale_down_delay_s=-1), "scale_down_delay_s"),
    (dict(metric="concurrency", target=2, autoscaler="kpa", activation_scale=0), "activation_scale"),
    (dict(metric="concurrency", target=2, scale_down_delay_s=30), "give autoscaler: kpa"),
    (dict(metric="waiting", target=2, autoscaler="kpa"), "scales on metric concurrency or rps"),
    (dict(metric="concurrency", target=2, autoscaler="kpa", tolerance=0.2), "has no tolerance"),
    (dict(metric="concurrency", target=2, stable_window_s=30), "give autoscaler: kpa"),
    (dict(metric="concurrency", target=2, autoscaler="kpa", stable_window_s=3), "stable_window_s"),
    (dict(metric="rps", target=2, autoscaler="kpa", max_scale_down_rate=1), "max_scale_down_rate"),
    (dict(metric="rps", target=2, autoscaler="knative"), "autoscaler"),
    # a start-up beyond a day: the autoscaler's loop would tick through it (a KPA at zero woke a replica that took
    # 10^12 s to start and the run never ended; benchmarks/fuzz_files.py)
    (dict(metric="concurrency", target=2, autoscaler="kpa", min_replicas=0, startup_s=1e12), "startup_s"),
])
def test_bad_kpa_blocks_are_one_line_errors(block, message):
    with pytest.raises(PhasewiseError) as error:
        build_deployment({"model": M, "instances": [{"replicas": 2, "autoscale": block}]})
    assert message in str(error.value) and "\n" not in str(error.value)
