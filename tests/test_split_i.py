"""sim/instance.py and sim/deployment.py split along their seams (one idea a module): Instance keeps its state and core
step loop (_step, _launch, _end_iteration) and takes its decode runs, the requests reaching it from outside and its
load views from bases beside the others (KvAdmission, DecodingSet, IterationAccounting), all slotted on Instance's
state; Deployment keeps its fields and build, its instance groups and its rules moved to modules of their own. Every
name code and tests import from the two is still importable there and is the very object its new module defines, the
bases shadow nothing, and Deployment's validators run in the order they ran when it defined them all (an input two
rules refuse is refused by the same one)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import phasewise.sim.deployment as deployment
import phasewise.sim.instance as instance
from phasewise.errors import PhasewiseError
from phasewise.sim import (
    decode_runs,
    deployment_autoscaling,
    deployment_combinations,
    deployment_links,
    deployment_model_checks,
    deployment_router,
    instance_group,
    load_views,
    request_entry,
)
from phasewise.sim.decoding_set import DecodingSet
from phasewise.sim.iteration_accounting import IterationAccounting
from phasewise.sim.kv_admission import KvAdmission

MOVED = {
    instance_group: ["InstanceGroup"],
    deployment_links: ["link_between", "phases_apart", "DeploymentLinks"],
    deployment_router: ["DYNAMO_ROUTER_FIELDS", "DeploymentRouter"],
    deployment_autoscaling: ["DeploymentAutoscaling"],
    deployment_combinations: ["DeploymentCombinations"],
    deployment_model_checks: ["_kv_heads", "mtp_modules", "mtp_draft_refusal", "DeploymentModelChecks"],
}
# what stays in deployment.py: the Deployment with its fields, its build and a user's file; and the blocks imported
# from it (sim/deployment_blocks.py's, as before)
STAYED = ["Deployment", "build_deployment", "load_deployment", "refuse_unused_file_fields", "collocated",
          "disaggregated"]
IMPORTED = ["MAX_REPLICAS", "SpecDecode", "PriorityPools", "OnlineTraining", "EncodeWorkers", "AttentionOffload"]

# Instance's methods by the base that now defines them
BASES = {
    decode_runs.DecodeRuns: ["_launch_run", "_end_run", "_decode_steps_done", "_notify_decodes", "_finish_due",
                             "_iteration_in_flight", "_cut_run", "_end_run_at_read"],
    request_entry.RequestEntry: ["enqueue", "_refusal", "_through_frontend", "_reach_scheduler", "join_ready",
                                 "cancel", "_reject"],
    load_views.LoadViews: ["gauges", "in_flight", "prefill_tokens_pending"],
}
CORE = ["__init__", "max_seqs", "_replica_mark", "wait_on_siblings", "_wake_siblings", "poke", "_step", "_launch",
        "_stage_device_s", "_end_iteration", "_prefill_done", "_join", "_leave", "_finish", "_draft_time"]

VALIDATORS = ["_links", "_dynamo_router", "_autoscale", "_training", "_offload", "_mapping", "_pools", "_roles",
              "_mtp_draft", "_layouts", "_disagg_tp"]


def test_deployment_re_exports_every_moved_name_as_the_same_object():
    for new, names in MOVED.items():
        for name in names:
            assert getattr(deployment, name) is getattr(new, name), name
    for name in STAYED:
        assert getattr(getattr(deployment, name), "__module__", None) == deployment.__name__, name
    for name in IMPORTED:
        assert hasattr(deployment, name), name


def test_what_stayed_reads_its_helpers_from_deployment():
    """load_deployment and the constructors call build_deployment and refuse_unused_file_fields off deployment.py (no
    test patches a name on sim/deployment.py or sim/instance.py: the moved code reads its helpers from its new
    module, where a patch belongs)."""
    for name in ("load_deployment", "build_deployment", "collocated", "disaggregated"):
        assert getattr(deployment, name).__globals__ is vars(deployment), name
    checks = vars(deployment_model_checks.DeploymentModelChecks)
    assert checks["_disagg_tp"].wrapped.__globals__ is vars(deployment_model_checks)  # (a pydantic validator's proxy)
    assert checks["_mtp_draft"].wrapped.__globals__["mtp_draft_refusal"] is deployment.mtp_draft_refusal


def test_deployment_validators_run_in_their_old_order():
    """pydantic runs a bare base's validators before the class's own, the last base's first: Deployment's bases are
    listed so that the eleven run as they did when the class defined them in this order."""
    assert list(deployment.Deployment.__pydantic_decorators__.model_validators) == VALIDATORS


def test_two_refusals_report_the_earlier_rule():
    """router_ttl_s beside another router (the router's rule, second) and attention_offload on a collocated
    deployment (fifth): the router's line, as before the split; and a collocated group beside a prefill one with a
    `pool` and no priority_pools block (the pools' rule, before the roles')."""
    group = {"role": "collocated", "hardware": "h100-sxm"}
    with pytest.raises(PhasewiseError, match="router_ttl_s keeps a block") as refused:
        deployment.build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [group], "router_ttl_s": 30,
                                     "attention_offload": {"mode": "auto"}})
    assert "attention_offload" not in str(refused.value)
    with pytest.raises(PhasewiseError, match="instance `pool` needs the deployment's `priority_pools` block"):
        deployment.build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
            {**group, "pool": "hp"}, {"role": "prefill", "hardware": "h100-sxm"}]})


def test_the_bases_shadow_nothing():
    """Each moved name resolves, on Deployment and on Instance, to the base that defines it (pydantic's BaseModel
    comes before Deployment's bases: none of theirs is one of its names)."""
    for cls, bases in ((deployment.Deployment, [MOVED[m][-1] for m in MOVED if m is not instance_group]),
                       (instance.Instance, [b.__name__ for b in BASES])):
        for base in (getattr(deployment, b, None) or getattr(instance, b) for b in bases):
            for name in vars(base):
                if name.startswith("__"):
                    continue
                owner = next(c for c in cls.__mro__ if name in vars(c))
                assert owner is base, f"{cls.__name__}.{name}: {owner.__name__}, not {base.__name__}"


def test_instance_takes_its_moved_methods_from_its_bases_and_keeps_its_core():
    inst = instance.Instance
    for base, names in BASES.items():
        for name in names:
            assert name in vars(base) and name not in vars(inst), name
            assert getattr(inst, name) is getattr(base, name), name
    for name in CORE:
        assert name in vars(inst), name
    assert inst.__mro__[1:] == (request_entry.RequestEntry, load_views.LoadViews, decode_runs.DecodeRuns, KvAdmission,
                                DecodingSet, IterationAccounting, object)


def test_instance_stays_slotted():
    """Every base declares no slots of its own (__slots__ = ()), so an Instance keeps no __dict__: its state lives in
    Instance.__slots__, as the hot path reads it."""
    for base in instance.Instance.__mro__[1:-1]:
        assert vars(base).get("__slots__") == (), base.__name__
    assert instance.Instance.__dictoffset__ == 0
    for base in (deployment.Deployment.__mro__[3:-1]):  # the bare bases beside pydantic's
        assert vars(base).get("__slots__") == (), base.__name__


def test_a_deployment_pickles_and_copies_as_before():
    """Plan's worker processes receive deployments pickled; InstanceGroup now lives in sim/instance_group.py."""
    dep = deployment.disaggregated("meta-llama/Llama-3.1-8B", "h100-sxm", 1, 2, kv_link="rdma")
    back = pickle.loads(pickle.dumps(dep))
    assert back == dep and back.kv_link == "rdma" and back.instances[1].replicas == 2
    assert type(back.instances[0]) is deployment.InstanceGroup
    assert dep.link_notes() == () and dep.dynamo_router().overlap_weight == 1.0 and dep.autoscaled() == []


def test_the_split_modules_stay_short():
    for module in (instance, deployment, decode_runs, request_entry, load_views, *MOVED):
        lines = len(Path(module.__file__).read_text().splitlines())
        assert lines <= 400, f"{Path(module.__file__).name}: {lines} lines"
