"""plan/goodput.py and plan/planner.py split along their seams (one idea a module): every name code and tests import
from the two is still importable there and is the very object its new module defines, and the names tests patch on
the two modules are the ones the code there calls (a monkeypatch on goodput.simulate, goodput.queue_verdict,
goodput.SLICE_INSTANCES, planner.verify or planner.evaluate still reaches the search, the queue test, the slice
size and plan())."""

from __future__ import annotations

from pathlib import Path

import pytest

import phasewise.plan.goodput as goodput
import phasewise.plan.planner as planner
from phasewise.plan import (
    analytic_prescreen,
    bisection,
    capacity,
    context_limits,
    goodput_results,
    objectives,
    plan_result,
    run_summaries,
    stability,
    unit_traffic,
    verification,
)

MOVED = {
    goodput: {
        bisection: ["highest_rate"],
        capacity: ["capacity_estimate", "decode_batch", "image_load", "seats"],
        context_limits: ["beyond_context_share", "lengths_within_context", "refuse_when_none_fits"],
        goodput_results: ["GoodputResult", "VerifiedRun"],
        run_summaries: ["binds", "curve_point", "goodput_tokens_per_s_per_gpu", "stopped_early"],
        stability: ["DRAINED", "DRAINED_SAMPLES", "GROWS", "STEADY", "WAITING_MARGIN_PER_INSTANCE", "queue_verdict",
                    "stable"],
        unit_traffic: ["fresh_draws", "rate_share", "slice_traffic", "trace_requests"],
    },
    planner: {
        analytic_prescreen: ["PRESCREEN", "PRESCREEN_UNITS", "prescreen"],
        objectives: ["OBJECTIVES", "OBJECTIVE_UNITS", "objective_per", "objective_value", "require_prices"],
        plan_result: ["PlanResult", "reason", "verified_point"],
        verification: ["VERIFY_CLIMB", "VERIFY_CLIMB_STEPS", "VERIFY_SEEDS", "VERIFY_TOLERANCE", "p90_excess",
                       "take_verification", "verified_timeline", "verify"],
    },
}


@pytest.mark.parametrize("old", [goodput, planner], ids=lambda m: m.__name__)
def test_the_old_modules_re_export_every_moved_name_as_the_same_object(old):
    for new, names in MOVED[old].items():
        for name in names:
            assert getattr(old, name) is getattr(new, name), f"{old.__name__}.{name}"


def test_the_names_tests_patch_are_read_from_the_module_they_patch():
    """monkeypatch.setattr(goodput, X) reaches only code whose globals are goodput's: the search (evaluate: simulate,
    build_deployment, capacity_estimate, curve_point), the queue test (WorkloadSpec.queue: queue_verdict) and the slice
    (slice_units: SLICE_INSTANCES, which verification reads through it); likewise plan() for planner's run_all,
    enumerate_strategies, evaluate and verify."""
    for fn in (goodput.evaluate, goodput.WorkloadSpec.queue, goodput.slice_units):
        assert fn.__globals__ is vars(goodput), fn.__qualname__
    for name in ("simulate", "build_deployment", "capacity_estimate", "curve_point", "queue_verdict",
                 "SLICE_INSTANCES"):
        assert hasattr(goodput, name)
    assert verification.slice_units is goodput.slice_units
    assert planner.plan.__globals__ is vars(planner)
    for name in ("run_all", "enumerate_strategies", "evaluate", "verify"):
        assert hasattr(planner, name)


def test_the_split_modules_stay_short():
    for module in (goodput, planner, *MOVED[goodput], *MOVED[planner]):
        lines = len(Path(module.__file__).read_text().splitlines())
        assert lines <= 400, f"{Path(module.__file__).name}: {lines} lines"
