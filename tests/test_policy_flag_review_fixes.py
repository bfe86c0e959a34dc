"""Review fixes: --scheduler ascendra applies (or refuses) every deployment flag the plain path does; a plan's
priority-pools strategy exports the SLOs its controller was planned with; a deployment flag beside --deployment names
the file's real field; a bad --autoscale-* value names its flag."""

from __future__ import annotations

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.plan.export import deployment_yaml
from phasewise.plan.options import PlanOptions
from phasewise.plan.strategies import enumerate_strategies
from phasewise.plan.strategy_policies import pool_slos, with_encoders, with_planned_slos
from phasewise.sim.api import (
    BLOCK_FLAGS,
    YAML_PATHS,
    deployment_flag_names,
    deployment_from_flags,
    run,
    yaml_path,
)
from phasewise.sim.deployment import Deployment, InstanceGroup, load_deployment
from phasewise.sim.metrics import Slo
from phasewise.sim.simulate import simulate
from phasewise.workload import LengthDist, open_loop

MIMO = "XiaomiMiMo/MiMo-7B-Base"
POOLS = dict(model=MIMO, hardware="h100-sxm", replicas=4, scheduler="ascendra")
WORK = dict(isl=1024, osl=128, rate=10, requests=100, slo_ttft_ms=1000)
POOLS_YAML = {"model": MIMO, "instances": [
    {"role": "collocated", "pool": "lp", "hardware": "h100-sxm", "replicas": 3, "engine": "ascendra-lp"},
    {"role": "collocated", "pool": "hp", "hardware": "h100-sxm", "replicas": 1, "engine": "ascendra-hp"}],
    "priority_pools": {}, "speculative": {"draft_tokens": 3}}


def test_ascendra_takes_spec_tokens_as_its_deployment_file_does(tmp_path):
    """--scheduler ascendra --spec-tokens 3 is the deployment file with priority_pools and speculative
    {draft_tokens: 3}: the same speculative block and the same TPOT (the flag was silently dropped: 7.4 ms, as
    without it)."""
    flags = deployment_from_flags(**POOLS, spec_tokens=3)
    assert flags.speculative is not None and flags.speculative.draft_tokens == 3
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(POOLS_YAML))
    by_flags = run(**POOLS, spec_tokens=3, **WORK).summary()["tpot_ms"]["mean"]
    by_file = run(deployment=str(path), **WORK).summary()["tpot_ms"]["mean"]
    plain = run(**POOLS, **WORK).summary()["tpot_ms"]["mean"]
    assert by_flags == pytest.approx(by_file) and by_flags < 0.8 * plain
    with_acceptance = deployment_from_flags(**POOLS, spec_tokens=3, spec_acceptance=0.5)
    assert with_acceptance.speculative.acceptance == 0.5


@pytest.mark.parametrize(("flags", "error"), [
    (dict(attention_offload="auto"), "--attention-offload needs --arch disagg"),
    (dict(attention_offload="8"), "--attention-offload needs --arch disagg"),
    (dict(attention_offload_sm_share=0.3), "--attention-offload-sm-share needs --attention-offload auto or N"),
    (dict(prefill_hardware="b200"), "--prefill-hardware / --decode-hardware need --arch disagg"),
    (dict(decode_hardware="b200"), "--prefill-hardware / --decode-hardware need --arch disagg"),
    (dict(prefill_ep=2), "--prefill-ep needs --arch disagg"),
    (dict(decode_attention_dp=2), "--decode-attention-dp needs --arch disagg"),
    (dict(spec_acceptance=0.5), "--spec-acceptance needs --spec-tokens N"),
    (dict(spec_draft="mtp"), "--spec-draft needs --spec-tokens N"),
    (dict(ep=2), "--ep"),
])
def test_ascendra_refuses_what_the_plain_path_refuses(flags, error):
    """Each flag the plain path refuses on collocated instances is refused with priority pools too (it was silently
    ignored), with the plain path's one-line error."""
    with pytest.raises(PhasewiseError, match=error.replace("(", r"\(")):
        deployment_from_flags(**POOLS, **flags)
    with pytest.raises(PhasewiseError, match=error.replace("(", r"\(")):
        deployment_from_flags(**{k: v for k, v in POOLS.items() if k != "scheduler"}, **flags)


def test_ascendra_takes_moe_layouts_on_both_pools():
    """--ep reaches both pools' instance groups (a mixture-of-experts model; ascendra's engines have no expert
    parallelism, which the engine check refuses naming --ep, where the flag was dropped before)."""
    with pytest.raises(PhasewiseError, match="--ep 2 is not possible on engine 'ascendra-lp'"):
        deployment_from_flags(model="Qwen/Qwen3-30B-A3B", hardware="h100-sxm", tp=2, replicas=4,
                              scheduler="ascendra", ep=2)


def pools_strategy():
    opts = PlanOptions(tp_options=(1,), precisions=("bf16",), chunk_sizes=(2048,), disaggregated=False,
                       policies=("priority-pools",))
    strategies, _ = enumerate_strategies("Qwen/Qwen3-32B", "b200", 4, opts)
    return next(s for s in strategies if "priority_pools" in s.deployment)


def test_exported_priority_pools_carry_the_planned_slos(tmp_path):
    """A priority-pools strategy, with the plan's SLOs written into its block, exports a deployment.yaml that
    `simulate --deployment` runs unchanged, without --slo-* flags; without them the file's pools had no deadlines
    ("priority pools need SLOs")."""
    strategy = pools_strategy()
    work = open_loop(4.0, 60, LengthDist("fixed", 1024, 0.0), LengthDist("fixed", 128, 0.0), seed=0)
    bare = tmp_path / "bare.yaml"
    bare.write_text(deployment_yaml(strategy.deployment))
    with pytest.raises(PhasewiseError, match="priority pools need SLOs"):
        simulate(load_deployment(str(bare)), work, Slo())
    planned = with_planned_slos([strategy], Slo(1000, 50))[0]
    assert planned.deployment["priority_pools"] == {"slo_ttft_ms": 1000, "slo_tpot_ms": 50}
    assert planned.unit["priority_pools"] == {"slo_ttft_ms": 1000, "slo_tpot_ms": 50}
    path = tmp_path / "deployment.yaml"
    path.write_text(deployment_yaml(planned.deployment, ["a comment line"]))
    dep = load_deployment(str(path))
    assert (dep.priority_pools.slo_ttft_ms, dep.priority_pools.slo_tpot_ms) == (1000, 50)
    res = simulate(dep, work, Slo())
    assert res.summary()["completed"] == 60


def test_planned_slos_only_those_given_and_only_on_pools():
    assert pool_slos(Slo(ttft_ms=800)) == {"slo_ttft_ms": 800}
    assert pool_slos(Slo(tpot_ms=40)) == {"slo_tpot_ms": 40}
    strategy = pools_strategy()
    other = type(strategy)("plain", {"instances": []}, {"instances": []}, 1, 1, "collocated")
    assert with_planned_slos([other], Slo(1000, 50))[0] is other


def test_priority_pools_take_no_encoders_even_before_their_slos():
    """with_encoders leaves priority pools alone, its block empty or not (an empty block read as none)."""
    strategy = pools_strategy()
    assert with_encoders(strategy, 8, "b200") == []
    assert with_encoders(with_planned_slos([strategy], Slo(1000, 50))[0], 8, "b200") == []


@pytest.mark.parametrize(("flag", "value", "path"), [
    ("autoscale_min", 2, "autoscale.min_replicas"), ("autoscale_target", 2.0, "autoscale.target"),
    ("autoscale_metric", "running", "autoscale.metric"), ("autoscale_startup_s", 5.0, "autoscale.startup_s"),
    ("autoscaler", "kpa", "autoscale.autoscaler"), ("spec_tokens", 3, "speculative.draft_tokens"),
    ("encode_workers", 1, "encoders.replicas"), ("tp", 2, "instances[].tp"),
    ("max_num_seqs", 8, "instances[].max_num_seqs"), ("router", "random", "router"),
])
def test_a_flag_beside_deployment_names_the_files_field(tmp_path, flag, value, path):
    """--autoscale-min beside --deployment named `autoscale_min`, a key no deployment file has: it names the field
    the file sets instead (autoscale.min_replicas)."""
    file = tmp_path / "d.yaml"
    file.write_text(yaml.safe_dump({"model": MIMO, "instances": [{"hardware": "h100-sxm", "replicas": 2}]}))
    with pytest.raises(PhasewiseError) as err:
        deployment_from_flags(deployment=str(file), **{flag: value})
    assert f"put {path} in it)" in str(err.value)
    assert f"--{flag.replace('_', '-')} cannot be combined with --deployment" in str(err.value)


BLOCK_MODELS = {name: Deployment.model_fields[name].annotation for name in BLOCK_FLAGS}


def test_every_deployment_flags_path_is_a_real_field():
    """Each deployment flag's place in a file (yaml_path) is a field of the deployment, of its instance groups or of
    the block it names, or one of the spelled-out YAML_PATHS."""
    for name in deployment_flag_names():
        path = yaml_path(name)
        if name in YAML_PATHS:
            continue
        if path.startswith("instances[]."):
            assert path.removeprefix("instances[].") in InstanceGroup.model_fields, name
        elif "." in path:
            block, field = path.split(".")
            model = [a for a in getattr(BLOCK_MODELS[block], "__args__", (BLOCK_MODELS[block],)) if a is not None]
            assert field in model[0].model_fields, name
        else:
            assert path in Deployment.model_fields, name


@pytest.mark.parametrize(("flags", "error"), [
    (dict(autoscale_target=0), "deployment flags: --autoscale-target: Input should be greater than 0"),
    (dict(autoscale_target=2, autoscale_startup_s=-1), "--autoscale-startup-s: Input should be greater than or equal"),
    (dict(autoscale_target=2, autoscale_metric="foo"), "--autoscale-metric: Input should be 'waiting'"),
    (dict(autoscale_target=2, autoscaler="foo"), "--autoscaler: Input should be 'hpa', 'kpa' or 'keda'"),
    (dict(autoscale_target=2, autoscale_min=-1), "--autoscale-min: Input should be greater than or equal to 0"),
    (dict(autoscale_target=2, autoscale_min=5), r"--autoscale-min \(5\) is above --replicas \(3\)"),
    (dict(autoscale_target=2, autoscale_metric="kv_usage"), "--autoscale-target for --autoscale-metric kv_usage"),
    (dict(autoscale_target=2, autoscaler="kpa", autoscale_metric="waiting"),
     "--autoscaler kpa .* --autoscale-metric concurrency or rps"),  # (kpa alone takes concurrency, Knative's)
])
def test_bad_autoscale_flags_name_the_flag(flags, error):
    """A bad --autoscale-* value is named by its flag, as every other flag's is, not by the YAML field it fills
    (autoscale.target)."""
    with pytest.raises(PhasewiseError, match=error) as err:
        deployment_from_flags(model=MIMO, replicas=3, **{"autoscale_min": 1, **flags})
    assert "autoscale." not in str(err.value)


def test_pools_and_offload_say_that_no_instance_caches_prefixes():
    """vLLM caches prefixes by default, but no instance does with priority pools or attention offload (their
    migrations move KV blocks the cache does not follow): the run says so instead of dropping the engine's default
    (and --out's cached_tokens column) without a word; a plain run, or one with caching turned off, says nothing."""
    from phasewise.sim.api import build

    said = "no instance caches prefixes"
    pools = build(**POOLS, hp_instances=1, **WORK)
    assert any(said in note for note in pools.notes)
    offload = build(model=MIMO, hardware="h100-sxm", arch="disagg", attention_offload="auto", **WORK)
    assert any(said in note for note in offload.notes)
    assert not any(said in note for note in build(model=MIMO, hardware="h100-sxm", **WORK).notes)
    quiet = build(**POOLS, hp_instances=1, prefix_caching="off", **WORK)
    assert not any(said in note for note in quiet.notes)
