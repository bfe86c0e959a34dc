"""--tokens-per-step-probs: the tokens a threshold forward decides as an input distribution, P(1, 2, ..., k)
(specs/dllm.py tokens_per_step_probs, sim/dllm_request.py plan_request), on simulate --dllm and plan --dllm."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.dllm_request import REFRESH, STEP, plan_request
from phasewise.specs.dllm import decoding

LLADA = "GSAI-ML/LLaDA-8B-Instruct"
MEAN_277 = "0.2,0.25,0.24,0.2,0.11"  # P(1..5 tokens): mean 0.2 + 0.5 + 0.72 + 0.8 + 0.55 = 2.77


def test_degenerate_distribution_decides_exactly_three_tokens_a_forward():
    dec = decoding("fast-dllm", gen_length=32, tokens_per_step_probs=(0, 0, 1))
    assert dec.tokens_per_step == 3
    for answer in (1, 2, 3, 20, 31, 32):
        plan = plan_request(dec, 100, answer, np.random.default_rng(answer))
        # one block: the refresh decides 3 answer tokens (fewer if the answer is shorter) and every end-of-text
        # filler position, then block steps of 3 until the answer is decided: ceil(answer / 3) forwards
        assert plan.forwards == math.ceil(answer / 3), answer
        assert plan.kind == [REFRESH] + [STEP] * (plan.forwards - 1)
        first = min(answer, 3)
        steps = [min(3, answer - first - 3 * i) for i in range(plan.forwards - 1)]
        assert plan.decided == [first + (32 - answer)] + steps, answer
    assert plan_request(dec, 100, 20, np.random.default_rng(0)).decided == [15, 3, 3, 3, 3, 3, 2]


def test_distribution_with_mean_277_decides_277_tokens_a_forward_on_average():
    # one 1024-token block holding a 1024-token answer: every forward but the block's last is an unclipped draw
    dec = decoding("fast-dllm", gen_length=1024, block_length=1024,
                   tokens_per_step_probs=(0.2, 0.25, 0.24, 0.2, 0.11))
    assert dec.tokens_per_step == pytest.approx(2.77)
    draws = np.concatenate([plan_request(dec, 100, 1024, np.random.default_rng([7, i])).decided[:-1]
                            for i in range(40)])
    assert set(np.unique(draws)) == {1, 2, 3, 4, 5}
    assert len(draws) > 10_000 and abs(draws.mean() - 2.77) < 0.04
    assert np.bincount(draws)[1:] / len(draws) == pytest.approx([0.2, 0.25, 0.24, 0.2, 0.11], abs=0.015)


def test_the_knob_is_validated_in_the_decoding_itself():
    with pytest.raises(PhasewiseError, match="--tokens-per-step-probs must be numbers >= 0 summing to 1"):
        decoding("odb", tokens_per_step_probs=(0.5, 0.6))
    with pytest.raises(PhasewiseError, match="at most its block, --block-length 4"):
        decoding("alp", gen_length=64, block_length=4, tokens_per_step_probs=(0.2,) * 5)
    with pytest.raises(PhasewiseError, match="--tokens-per-step-probs does not apply to --dllm baseline"):
        decoding("baseline", tokens_per_step_probs=(1.0,))
    with pytest.raises(PhasewiseError, match="give one"):
        decoding("odb", tokens_per_step=2.0, tokens_per_step_probs=(0.0, 1.0))


def test_cli_takes_the_distribution_on_simulate_and_plan(run_cli):
    common = ("--model", LLADA, "--concurrency", "1", "--requests", "3", "--isl", "200", "--osl", "90",
              "--gen-length", "96", "--json")
    code, out, err = run_cli("simulate", *common, "--dllm", "fast-dllm", "--tokens-per-step-probs", "0,0,1")
    assert code == 0, err
    d = json.loads(out)
    assert d["dllm"]["tokens_per_step"] == 3 and d["dllm"]["tokens_per_step_probs"] == [0, 0, 1]
    # 3 blocks of 32 (no ALP): two all-answer blocks of ceil(32 / 3) = 11 forwards, then 26 answer tokens + 6
    # filler decided at the refresh: ceil(26 / 3) = 9
    assert d["per_request"]["forwards"] == 11 + 11 + 9
    code, out, err = run_cli("simulate", *common, "--dllm", "odb", "--tokens-per-step-probs", MEAN_277)
    assert code == 0, err
    assert json.loads(out)["dllm"]["tokens_per_step"] == pytest.approx(2.77)
    code, out, err = run_cli("plan", "--model", LLADA, "--dllm", "alp", "--hardware", "h100-sxm", "--gpus", "1",
                             "--isl", "200", "--osl", "90", "--gen-length", "96", "--slo-ttft-ms", "5000",
                             "--slo-tpot-ms", "200", "--batch-caps", "1", "--tokens-per-step-probs", MEAN_277, "--json")
    assert code == 0, err
    assert json.loads(out)["ranking"]


@pytest.mark.parametrize(("command", "args", "message"), [
    ("simulate", ("--dllm", "odb", "--tokens-per-step-probs", "-0.5,1.5"), "numbers >= 0 summing to 1"),
    ("simulate", ("--dllm", "odb", "--tokens-per-step-probs", "0.5,0.4"), "numbers >= 0 summing to 1"),
    ("simulate", ("--dllm", "odb", "--tokens-per-step-probs", "a,b"), "--tokens-per-step-probs takes"),
    ("simulate", ("--dllm", "fast-dllm", "--block-length", "2", "--gen-length", "64", "--tokens-per-step-probs",
                  "0.5,0.25,0.25"), "at most its block, --block-length 2"),
    ("simulate", ("--dllm", "alp", "--tokens-per-step", "2.5", "--tokens-per-step-probs", "0,1"),
     "--tokens-per-step and --tokens-per-step-probs"),
    ("simulate", ("--dllm", "baseline", "--tokens-per-step-probs", "0,1"), "does not apply to --dllm baseline"),
    ("simulate", ("--tokens-per-step-probs", "0,1"), "--tokens-per-step-probs needs --dllm"),
    ("plan", ("--dllm", "baseline", "--tokens-per-step-probs", "0,1"), "does not apply to --dllm baseline"),
    ("plan", ("--tokens-per-step-probs", "0,1"), "--tokens-per-step-probs needs --dllm"),
])
def test_cli_refuses_bad_distributions_in_one_line(run_cli, command, args, message):
    code, out, err = run_cli(command, "--model", LLADA, "--isl", "200", "--osl", "90", *args)
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1, err


# reproduce odb-dllm takes the distribution as a setup key, as simulate and plan --dllm take the flag
def _baseline_speedup(sets: dict[str, str]) -> float:
    from phasewise.scenarios import get_scenario

    result = get_scenario("odb-dllm").run({"requests": "3", **sets})
    check = next(c for c in result.outcome.checks if c.name.startswith("ODB-dLLM vs the LLaDA baseline"))
    return check.phasewise


def test_odb_scenario_takes_the_distribution_and_it_moves_the_figures():
    one_token, four_tokens = _baseline_speedup({"tokens_per_step_probs": "1"}), _baseline_speedup(
        {"tokens_per_step_probs": "0,0,0,1"})
    # four tokens a forward: a quarter of the block steps the one-token histogram takes, the refreshes alike
    assert four_tokens > 1.3 * one_token


@pytest.mark.parametrize("sets, message", [
    ({"tokens_per_step_probs": "0.2,0.3,0.6"}, "tokens_per_step_probs must be numbers >= 0 summing to 1"),
    ({"tokens_per_step_probs": "0.5,0.5", "tokens_per_step": "3"},
     "--set tokens_per_step, tokens_per_step_probs: give one: tokens_per_step_probs replaces tokens_per_step"),
    # the mean given at its default value is given all the same: refused, not silently replaced by the histogram
    ({"tokens_per_step_probs": "0.5,0.5", "tokens_per_step": "2.77"},
     "--set tokens_per_step, tokens_per_step_probs: give one"),
    ({"tokens_per_step_probs": "1.5"}, "--set tokens_per_step_probs='1.5' is not a number <= 1"),
])
def test_odb_scenario_refuses_bad_distributions_naming_the_key(sets, message):
    from phasewise.scenarios import get_scenario

    with pytest.raises(PhasewiseError) as info:
        get_scenario("odb-dllm").resolve(sets)
    text = str(info.value)
    assert message in text and text.startswith("reproduce odb-dllm: ") and "--tokens-per-step" not in text, text
