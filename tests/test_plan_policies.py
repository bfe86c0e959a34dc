"""`plan --policies`: the papers' serving policies as candidate strategies beside the plain engines."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.strategies import ROUTERS as PLAN_ROUTERS
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.sim.routers import ROUTERS as SIM_ROUTERS
from phasewise.workload import LengthDist, open_loop

M = "meta-llama/Meta-Llama-3-8B"


def test_policies_add_pool_and_offload_strategies_that_build():
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), policies=("priority-pools", "attention-offload"))
    strategies, _ = enumerate_strategies(M, "a100-sxm-80gb", 8, opts)
    pools = [s for s in strategies if "priority pools" in s.name]
    offload = [s for s in strategies if s.name.endswith("+offload")]
    plain_disagg = [s for s in strategies if s.kind == "disaggregated" and not s.name.endswith("+offload")]
    assert [s.name for s in pools] == ["8x TP1 priority pools 6LP+2HP b256 bf16"]
    assert pools[0].units == 2 and pools[0].gpus == 8
    assert len(offload) == len(plain_disagg) > 0
    for s in pools + offload[:2]:
        dep = build_deployment(s.deployment)
        unit = build_deployment(s.unit)
        assert dep.gpus == s.gpus and unit.gpus * s.units == s.gpus
    unit = build_deployment(pools[0].unit)  # one unit serves with its pools' deadlines from the run's SLOs
    work = open_loop(5.0, 60, LengthDist("fixed", 512), LengthDist("fixed", 64))
    res = simulate(unit, work, Slo(1000, 100), check_invariants=True)
    assert "priority_pools" in res.policy and res.summary()["completed"] == 60


def test_without_policies_nothing_changes():
    plain, _ = enumerate_strategies(M, "a100-sxm-80gb", 4, PlanOptions(tp_options=(1,)))
    assert not any("priority pools" in s.name or "+offload" in s.name for s in plain)


def test_pools_need_two_instances_and_unknown_policies_are_errors():
    strategies, pruned = enumerate_strategies(M, "a100-sxm-80gb", 1, PlanOptions(tp_options=(1,),
                                                                                  policies=("priority-pools",)))
    assert not any("priority pools" in s.name for s in strategies)
    assert any("priority pools" in p and "at least 2 instances" in p for p in pruned)
    with pytest.raises(PhasewiseError, match="--policies 'ascendra' is not one of priority-pools, attention-offload"):
        enumerate_strategies(M, "a100-sxm-80gb", 4, PlanOptions(policies=("ascendra",)))


def test_plan_cli_takes_policies(run_cli):
    code, _, err = run_cli("plan", "--model", M, "--hardware", "a100-sxm-80gb", "--gpus", "2", "--tp-options", "1",
                           "--slo-ttft-ms", "1000", "--slo-tpot-ms", "100", "--policies", "nope")
    assert code == 2 and "--policies 'nope'" in err and len(err.strip().splitlines()) == 1


def test_the_deployment_names_the_routers_the_simulator_has():
    # the planner validates --router against the Deployment's field (plan/options.py); the simulator builds from its
    # registry
    assert sorted(PLAN_ROUTERS) == sorted(SIM_ROUTERS)
