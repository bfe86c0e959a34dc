"""KEDA (autoscaler: keda): the HPA on its external metric (the metric's total over the target a replica), its
activation from zero at the next poll (not at the first request), its scale to zero after the cooldown, and one-line
errors for its knobs."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import build_deployment
from phasewise.workload.request import Workload
from tests.test_autoscaler import M, run, step_load


def test_the_external_metric_wants_its_total_over_the_target():
    """40 req/s routed against 10 a replica: ceil(40 / 10) = 4, and it holds there (40 / (10 x 4) = 1)."""
    load = step_load(((40, 120),), prompt=512, output=128)
    _, summary = run(replicas=8, load=load, min_replicas=1, metric="rps", target=10, startup_s=10.0,
                     autoscaler="keda")
    scale = summary["policy"]["autoscale"][0]
    assert summary["completed"] == summary["requests"]
    assert scale["peak_replicas"] == 4 and scale["events"][0]["replicas"] == 4


def test_activation_waits_for_the_poll_and_the_cooldown_precedes_zero():
    burst = step_load(((5, 60),), prompt=512, output=64)
    n = len(burst.arrival_s)
    load = Workload(np.concatenate([burst.arrival_s + 5.0, burst.arrival_s + 905.0]), np.full(2 * n, 512),
                    np.full(2 * n, 64))  # bursts at 5-65 s and 905-965 s
    result, summary = run(replicas=2, load=load, min_replicas=0, metric="running", target=2, startup_s=20.0,
                          autoscaler="keda")
    scale = summary["policy"]["autoscale"][0]
    ups = [e for e in scale["events"] if e["action"] == "up"]
    zero = [e for e in scale["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert ups[0]["t_s"] == 30.0  # the first poll after the first request (5 s), not the request itself
    first = np.argsort(result.arrival_s)[0]
    assert result.first_token_s[first] >= 30.0 + 20.0  # waited for the poll and the start-up
    assert zero and zero[0]["t_s"] >= 65.0 + 300.0 - 30.0  # quiet for the cooldown (polled every 30 s)
    assert zero[0]["t_s"] < 905.0 and [e for e in ups if e["t_s"] > 900][0]["t_s"] == 930.0
    assert summary["completed"] == summary["requests"]


@pytest.mark.parametrize("block, message", [
    (dict(target=2, polling_interval_s=10), "is KEDA's: give autoscaler: keda"),
    (dict(metric="sla", autoscaler="keda"), "metric sla is Dynamo's planner"),
    (dict(target=2, autoscaler="keda", cooldown_period_s=-1), "cooldown_period_s"),
])
def test_bad_keda_blocks_are_one_line_errors(block, message):
    with pytest.raises(PhasewiseError) as error:
        build_deployment({"model": M, "instances": [{"replicas": 2, "autoscale": block}]})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_waiting_trigger_reads_a_light_load_as_idle():
    """KEDA deems the group idle when its trigger's total is at or below the activation threshold: on vLLM's waiting
    gauge a light load queues nothing at most polls, so the group goes to zero a cooldown after the gateway last
    held a request, in the middle of the traffic (a known pitfall of a queue trigger: activate on running)."""
    load = step_load(((2, 600),), prompt=256, output=32)
    _, summary = run(replicas=2, load=load, min_replicas=0, target=2, startup_s=20.0, autoscaler="keda")
    zeros = [e for e in summary["policy"]["autoscale"][0]["events"] if e["action"] == "down" and e["replicas"] == 0]
    assert zeros and zeros[0]["t_s"] < 600
