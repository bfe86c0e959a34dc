"""A README review's findings, each fixed where the README and the code disagreed: --router prefix_aware where the
instances keep no prefix cache says so in a note (it routes as least_outstanding); plan --autoscale refuses an
empty or a repeated name as --router does; an SLA planner block refuses the fields of a mode that is off; a
predictor warm-up trace that is no file is refused as the block is read, and a bad one names the field; the KPA's
bound counts its 1 s samples; --dllm-steps on a threshold mode points to --tokens-per-step."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError, name_list
from phasewise.sim.deployment import build_deployment, load_deployment
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import simulate
from phasewise.workload.request import Workload

M = "meta-llama/Llama-3.1-8B"
SLA = dict(metric="sla", ttft_s=2.0, itl_s=0.1, startup_s=30.0)


def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# --- 5. --router prefix_aware without prefix caches: a note ------------------------------------------------------
def _router_notes(**kwargs) -> list[str]:
    from phasewise.sim.api import build

    return [n for n in build(trace="mooncake", trace_limit=20, replicas=2, **kwargs).notes
            if "--router prefix_aware" in n]


def test_prefix_aware_without_prefix_caches_says_it_routes_as_least_outstanding():
    off = _router_notes(router="prefix_aware", prefix_caching="off")
    assert len(off) == 1 and "--prefix-caching off" in off[0] and "least_outstanding" in off[0]
    by_default = _router_notes(router="prefix_aware", engine="vllm-v0")  # vLLM V0 caches no prefixes unless told
    assert len(by_default) == 1 and "off on vllm-v0" in by_default[0] and "--prefix-caching on" in by_default[0]
    # where the instances cache prefixes the router reads them: no note
    assert _router_notes(router="prefix_aware") == []
    assert _router_notes(router="prefix_aware", engine="vllm-v0", prefix_caching="on") == []
    # dynamo_kv balances prefill and decode blocks without caches too: it still routes, no note
    assert _router_notes(router="dynamo_kv", prefix_caching="off") == []


def test_prefix_aware_without_prefix_caches_runs_as_least_outstanding():
    """What the note says: the same first tokens as least_outstanding's."""
    from phasewise.sim.api import run

    runs = [run(trace="mooncake", trace_limit=40, replicas=2, prefix_caching="off", router=router)
            for router in ("prefix_aware", "least_outstanding")]
    assert np.array_equal(runs[0].first_token_s, runs[1].first_token_s)


# --- 6. plan --autoscale: an empty or a repeated name, as --router -----------------------------------------------
@pytest.mark.parametrize("value", ["hpa,", "hpa,,kpa", "hpa,hpa", " , "])
def test_autoscale_list_refuses_empty_and_repeated_names_as_router_does(value):
    from phasewise.plan.fleet import parse_fleets

    with pytest.raises(PhasewiseError) as error:
        parse_fleets(value, None, Slo(), None)
    with pytest.raises(PhasewiseError) as router:
        name_list("--router", value)  # --router's own wording (apps/cli_plan.py listed)
    assert _one_line(error) == str(router.value).replace("--router", "--autoscale")


def test_autoscale_list_still_names_an_unknown_autoscaler():
    from phasewise.plan.fleet import parse_fleets

    with pytest.raises(PhasewiseError) as error:
        parse_fleets("hpa,nope", None, Slo(), None)
    assert "'nope' is not one of hpa, kpa, keda, dynamo" in _one_line(error)


# --- 7. an SLA planner block: a field of a mode that is off -------------------------------------------------------
def _collocated(block: dict) -> dict:
    return {"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 4, "autoscale": block}]}


@pytest.mark.parametrize("extra, field, switch", [
    (dict(load_period_s=200.0), "load_period_s", "load_scaling off (its default)"),
    (dict(load_down_sensitivity=0.5), "load_down_sensitivity", "load_scaling off (its default)"),
    (dict(load_period_s=10.0, load_scaling=False), "load_period_s", "load_scaling false"),
    (dict(load_period_s=10.0, load_scaling="false"), "load_period_s", "load_scaling false"),  # as pydantic reads it
    (dict(sync_period_s=60.0, load_scaling=True, throughput_scaling=False), "sync_period_s",
     "throughput_scaling false"),
    (dict(correction=False, load_scaling=True, throughput_scaling=False), "correction", "throughput_scaling false"),
    (dict(predictor="constant", load_scaling=True, throughput_scaling=False), "predictor", "throughput_scaling false"),
    (dict(kalman_r=5.0, load_scaling=True, throughput_scaling=False), "kalman_r", "throughput_scaling false"),
])
def test_a_field_of_a_mode_that_is_off_is_refused(extra, field, switch):
    with pytest.raises(PhasewiseError) as error:
        build_deployment(_collocated(dict(SLA, **extra)))
    text = _one_line(error)
    assert f"autoscale {field} is for the planner's" in text and f"with {switch} it does nothing" in text


def test_the_fields_of_the_modes_that_run_are_kept():
    dep = build_deployment(_collocated(dict(SLA, load_scaling=True, load_period_s=10.0, load_down_sensitivity=0.5,
                                            sync_period_s=60.0)))
    block = dep.instances[0].autoscale
    assert (block.load_period_s, block.load_down_sensitivity, block.sync_period_s) == (10.0, 0.5, 60.0)
    loads = build_deployment(_collocated(dict(SLA, throughput_scaling=False, load_scaling=True, load_period_s=10.0)))
    assert loads.instances[0].autoscale.load_period_s == 10.0


# --- lower: the predictor's warm-up trace -------------------------------------------------------------------------
def test_a_warmup_trace_that_is_no_file_is_refused_naming_the_field_and_the_file(tmp_path):
    path = tmp_path / "dep.yaml"
    path.write_text(f"model: {M}\ninstances:\n  - {{hardware: h100-sxm, replicas: 4, autoscale: {{metric: sla, "
                    "predictor: kalman, predictor_warmup_trace: nosuch.csv}}\n")
    with pytest.raises(PhasewiseError) as error:
        load_deployment(str(path))
    text = _one_line(error)
    assert str(path) in text and "predictor_warmup_trace 'nosuch.csv' does not exist" in text
    assert build_deployment(_collocated(dict(SLA, predictor_warmup_trace="azure-conv")))  # a bundled trace


def test_a_bad_warmup_trace_names_the_field_when_the_planner_reads_it(tmp_path):
    bad = tmp_path / "past.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")  # a header, no requests
    dep = build_deployment(_collocated(dict(SLA, predictor_warmup_trace=str(bad))))
    work = Workload(np.array([0.0, 1.0]), np.array([100, 100]), np.array([10, 10]))
    with pytest.raises(PhasewiseError) as error:
        simulate(dep, work, Slo())
    assert _one_line(error).startswith("autoscale predictor_warmup_trace: trace")


# --- 8. the KPA's bound: its 1 s samples, what its loop steps over -------------------------------------------------
def test_the_kpa_bound_counts_its_one_second_samples_not_its_ticks():
    """1.5 M of the KPA's 2 s ticks but 3 M of its 1 s samples: refused (README: the samples are bounded)."""
    dep = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "replicas": 2, "autoscale": {
        "autoscaler": "kpa", "metric": "concurrency", "target": 4}}]})
    work = Workload(np.array([0.0, 3.0e6]), np.array([100, 100]), np.array([10, 10]))
    with pytest.raises(PhasewiseError) as error:
        simulate(dep, work, Slo())
    assert "of the autoscaler's 1 s periods (at most 2,000,000)" in _one_line(error)
    assert "the KPA's 1 s sampling" in str(error.value)


# --- 9. --dllm-steps on a threshold mode points to what sets its forwards ----------------------------------------
@pytest.mark.parametrize("mode", ["fast-dllm", "alp", "odb"])
def test_dllm_steps_points_to_tokens_per_step(mode):
    from phasewise.specs.dllm import decoding

    with pytest.raises(PhasewiseError) as error:
        decoding(mode, steps=64)
    text = _one_line(error)
    assert f"--dllm-steps does not apply to --dllm {mode}" in text
    assert "--tokens-per-step" in text and "--tokens-per-step-probs" in text and "--dllm-threshold" not in text
