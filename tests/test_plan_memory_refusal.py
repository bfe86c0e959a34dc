"""The planner's memory check is simulate's (plan/instance_fit.py instance_memory_refusal, perf/memory.py
MemoryFit.fits): SGLang at --memory-fraction 0.99 or 1 keeps too little beside its static pool for its activations,
which simulate refuses ('does not fit in memory'), while the planner's check (one sequence's KV in the pool) passed
the strategies and the whole plan stopped on simulate's error, the other engines' strategies with it. A pruned line
says why, in the refusal's own words, and names the plan's --memory-fraction, for disaggregated pairs too."""

from __future__ import annotations

import json

import pytest

from phasewise.plan.options import NoStrategyFits
from phasewise.plan.strategies import PlanOptions, enumerate_strategies

LLAMA = "meta-llama/Llama-3.1-8B"


def _enumerate(gpus: int, **options):
    return enumerate_strategies(LLAMA, "h100-sxm", gpus, PlanOptions(tp_options=(1,), **options))


def test_sglang_with_no_room_beside_its_static_pool_is_pruned_as_simulate_refuses_it():
    with pytest.raises(NoStrategyFits) as refused:  # was: strategies, then simulate's error from plan()
        _enumerate(1, engine="sglang", memory_fraction=0.99, disaggregated=False)
    assert "does not fit h100-sxm at --memory-fraction 0.99: activations" in str(refused.value)
    assert "beside its static pool" in str(refused.value)


def test_the_other_engines_strategies_still_rank_beside_a_refused_sglang():
    strategies, pruned = _enumerate(1, engine="vllm,sglang", memory_fraction=0.99, disaggregated=False)
    assert strategies and all(s.name.startswith("vllm ") for s in strategies)
    assert any(line.startswith("sglang") or "sglang" in line for line in pruned)


def test_a_disaggregated_pair_that_does_not_fit_names_its_role_and_the_fraction():
    with pytest.raises(NoStrategyFits) as refused:
        _enumerate(2, memory_fraction=0.15)
    assert ("disaggregated P-TP1/D-TP1 bf16: its prefill instance does not fit h100-sxm at --memory-fraction 0.15: "
            "weights") in str(refused.value)


def test_at_the_engines_own_fraction_the_line_names_no_flag():
    strategies, pruned = _enumerate(1, memory_fraction=None, disaggregated=False, precisions=("bf16",),
                                    batch_caps=(256,))
    assert strategies and not any("--memory-fraction" in line for line in pruned)


def test_the_plan_says_the_fraction_its_strategies_ran_at(run_cli):
    """--memory-fraction was visible only in each row's deployment: the summary line and --json's top level say it."""
    code, out, _ = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--no-disagg", "--batch-caps", "256", "--top",
                           "1", "--workers", "1", "--memory-fraction", "0.8", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["memory_fraction"] == 0.8
    assert result["rows"][0]["deployment"]["instances"][0]["memory_fraction"] == 0.8
