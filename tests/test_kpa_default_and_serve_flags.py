"""Knative's KPA scales on concurrency unless told otherwise (autoscaling.knative.dev/metric's default), from a
deployment file as from --autoscaler kpa; serve takes no --attention-offload / --online-training, which the twin
cannot run (it advertised values that were always refused)."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.deployment import build_deployment


def test_a_kpa_block_without_a_metric_scales_on_concurrency():
    assert Autoscale(min_replicas=1, target=10, autoscaler="kpa").metric == "concurrency"
    assert Autoscale(min_replicas=1, target=10, autoscaler="kpa", metric="rps").metric == "rps"
    with pytest.raises(Exception, match="scales on metric concurrency or rps"):
        Autoscale(min_replicas=1, target=10, autoscaler="kpa", metric="waiting")


def test_a_deployment_file_with_kpa_and_no_metric_runs():
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"hardware": "h100-sxm", "replicas": 4, "autoscale": {"min_replicas": 1, "target": 10, "autoscaler": "kpa"}}]})
    assert dep.instances[0].autoscale.metric == "concurrency"


def test_the_flags_and_the_file_give_the_same_block():
    from phasewise.sim.api import deployment_from_flags

    dep = deployment_from_flags(replicas=4, autoscale_min=1, autoscale_target=10.0, autoscaler="kpa")
    assert dep.autoscale.metric == "concurrency"
    with pytest.raises(PhasewiseError, match="scales on --autoscale-metric concurrency or rps"):
        deployment_from_flags(replicas=4, autoscale_min=1, autoscale_target=10.0, autoscaler="kpa",
                              autoscale_metric="waiting")


@pytest.mark.parametrize("flag", ["--attention-offload", "--online-training"])
def test_serve_has_no_flag_for_what_the_twin_cannot_run(run_cli, flag):
    code, _, err = run_cli("serve", flag, "auto")
    assert code == 2 and "No such option" in err
