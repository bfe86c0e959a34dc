"""plan --dllm takes --memory-fraction as simulate --dllm does (plan/dllm_plan.py dllm_instance): it was 'No such
option' on plan, whose dLLM ranking always filled the engine's own fraction (0.9 for hf-eager) of each GPU. A smaller
fraction holds fewer requests' KV of prompt + canvas, so the larger batch caps are left out and the winner changes;
values outside (0, 1] are one-line errors, and plan without --dllm plans its engine strategies at the fraction."""

from __future__ import annotations

import json

import pytest

LLADA = "GSAI-ML/LLaDA-8B-Instruct"
# 256-token prompts + the 1024-token canvas: batch caps 4 and 8 both fit an H100 at hf-eager's 0.9, only 4 at 0.3
PLAN = ("plan", "--dllm", "fast-dllm", "--model", LLADA, "--hardware", "h100-sxm", "--gpus", "2", "--isl", "256",
        "--osl", "256", "--batch-caps", "4,8", "--json")


def test_a_smaller_memory_fraction_fits_fewer_batch_caps_and_changes_the_winner(run_cli):
    code, out, err = run_cli(*PLAN)
    assert code == 0, err
    engine_own = json.loads(out)
    assert engine_own["ranking"][0]["batch_cap"] == 8 and engine_own["left_out"] == []
    assert engine_own["memory_fraction"] is None  # not given: the engine's own

    code, out, err = run_cli(*PLAN, "--memory-fraction", "0.3")
    assert code == 0, err
    smaller = json.loads(out)
    assert smaller["memory_fraction"] == 0.3
    assert [r["batch_cap"] for r in smaller["ranking"]] == [4]
    assert smaller["left_out"] == [{"hardware": "h100-sxm", "batch_cap": 8}]
    assert smaller["ranking"][0]["goodput_rps"] < engine_own["ranking"][0]["goodput_rps"]


def test_a_memory_fraction_too_small_for_any_cap_names_the_flag(run_cli):
    code, _, err = run_cli(*PLAN[:-3], "--batch-caps", "2,4", "--memory-fraction", "0.2")
    assert code == 2
    assert "no batch cap in 2, 4 fits" in err and "a larger --memory-fraction than 0.2" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-0.2", "1.5"])
def test_memory_fraction_outside_zero_one_is_a_one_line_error(run_cli, value):
    code, out, err = run_cli(*PLAN, "--memory-fraction", value)
    assert code == 2 and out == ""
    assert f"--memory-fraction must be in (0, 1], the share of GPU memory the engine takes (got {value})" in err
    assert len(err.strip().splitlines()) == 1


def test_plan_and_simulate_dllm_refuse_the_same_values_alike(run_cli):
    """One rule (dllm_plan.check_memory_fraction) for both commands' --memory-fraction with --dllm."""
    _, _, plan_err = run_cli(*PLAN, "--memory-fraction", "1.5")
    code, _, simulate_err = run_cli("simulate", "--dllm", "fast-dllm", "--model", LLADA, "--rate", "1",
                                    "--requests", "5", "--memory-fraction", "1.5")
    assert code == 2 and plan_err == simulate_err


def test_plan_without_dllm_plans_its_engine_strategies_at_the_memory_fraction(run_cli):
    """The engine strategies take --memory-fraction too (PlanOptions.memory_fraction, as a sweep's): Llama-3.1-8B's
    16 GB of weights do not fit 0.15 of one H100, so nothing fits, and the pruned lines name the flag."""
    code, out, err = run_cli("plan", "--gpus", "1", "--memory-fraction", "0.15")
    assert code == 2 and out == ""
    assert "no strategy fits" in err and "does not fit h100-sxm at --memory-fraction 0.15: weights" in err
    code, out, err = run_cli("plan", "--gpus", "1", "--memory-fraction", "1.5")
    assert code == 2 and "plan --memory-fraction" in err and "(0, 1]" in err and len(err.strip().splitlines()) == 1
