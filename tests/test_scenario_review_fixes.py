"""Scenario defects an outside review reproduced (session 103): a direction check that passed on a tie or on a
degenerate setup, a why that stayed fixed while its numbers said otherwise, a fit that compared a scheme with a stale
figure of itself, a valid zero refused."""

from __future__ import annotations

import math

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.kernel_fit import fit_sync_mma_efficiency, speedup
from phasewise.scenarios import get_scenario
from phasewise.scenarios.adrenaline import search_note
from phasewise.scenarios.spad import phase_split
from phasewise.specs import load_engine, load_hardware, load_model, load_quant


def test_a_kernel_fit_times_both_schemes_at_each_trial_value():
    """FireQ's scheme set to QServe's own: both run mma.sync kernels, so the constant moves both and no value gives
    1.68x. The fit had timed the fast scheme once on the unfitted chip and 'reached' 1.68x against that stale figure,
    then every later ratio read 1.000 and two direction checks passed on the tie."""
    model, hw = load_model("meta-llama/Llama-2-7b-hf"), load_hardware("h100-sxm")
    qserve, engine = load_quant("w4a8"), load_engine("hf-eager")
    shape = BatchShape.uniform(16, 1024, 0)
    assert speedup(model, hw, qserve, qserve, engine, shape) == pytest.approx(1.0)
    with pytest.raises(PhasewiseError, match=r"gives w4a8 a speedup of 1.68 over w4a8 \(range 1-1\)"):
        fit_sync_mma_efficiency(model, hw, qserve, qserve, engine, shape, 1.68)


def test_reproduce_fireq_with_qserves_own_scheme_is_an_error_not_a_tie(run_cli):
    code, out, err = run_cli("reproduce", "fireq", "--set", "fireq=w4a8")
    assert code == 2 and "gives w4a8 a speedup of 1.68 over w4a8" in err and "nan" not in err + out


def test_a_zero_acceptance_probability_is_a_valid_jump_probs_entry():
    setup = get_scenario("odb-dllm").resolve({"jump_probs": "1,0,0"})
    assert setup["jump_probs"] == [1.0, 0.0, 0.0]
    with pytest.raises(PhasewiseError, match="jump_probs='-1,1,1' is not a number >= 0"):
        get_scenario("odb-dllm").resolve({"jump_probs": "-1,1,1"})


def test_jupiter_refuses_one_device_as_it_has_no_pipeline_to_compare():
    with pytest.raises(PhasewiseError, match="--set devices='1' is not a number >= 2"):
        get_scenario("jupiter").resolve({"devices": "1"})


def test_halo_refuses_a_grid_with_one_output_length():
    with pytest.raises(PhasewiseError, match="outputs: at least two different output lengths"):
        get_scenario("halo").resolve({"prompts": "1024", "outputs": "2048"})


def test_a_ladder_without_jump_share_is_no_faster_and_says_why():
    """jump_copies 1 makes +ALP and ODB-dLLM the same decoding: the ladder's 'every rung faster' check had passed on
    the 1.00x tie (band from 1.0) with a why quoting 1.00 extra tokens a step."""
    outcome = get_scenario("odb-dllm").run({"jump_copies": "1", "requests": "4"}).outcome
    checks = {c.name: c for c in outcome.checks}
    ladder = checks["every rung of the settings ladder is faster than the one before"]
    assert ladder.band[0] == 1.01 and ladder.phasewise == pytest.approx(1.0) and not ladder.passed
    assert "alp -> odb 1.00x" in ladder.why
    assert "Jump-share is off (jump_copies 1" in checks["ODB-dLLM vs Fast-dLLM, end to end"].why


def test_the_capacity_search_says_why_it_found_none():
    setup = {"slo_attainment": 0.9, "rate_factor": 1.2}
    met = [(6.0, {"attainment": 1.0}), (64.2, {"attainment": 0.95})]
    missed = [(6.0, {"attainment": 0.5})]
    note = search_note(setup, math.nan, met, 10.0, met)
    assert "plain: every rate from 6.0 to 64.2 req/s (2 steps of rate_factor 1.2) met 90% attainment" in note
    assert "raise --set rate_min or rate_factor" in note and "offload" not in note
    assert "lower --set rate_min" in search_note(setup, 10.0, met, math.nan, missed)
    assert search_note(setup, 10.0, met, 12.0, met) == ""


def test_a_cluster_ratio_is_explained_by_its_phases_whichever_way_it_goes():
    """SPAD's cluster-TDP why had said the Prefill Chip costs more power than it saves even where the ratio was
    0.81 (Llama-3.1-8B, TP1): it now gives the phases' shares and per-request ratios the ratio is made of."""
    goodput = {("h100", "prefill"): 10.0, ("prefill", "prefill"): 20.0, ("h100", "decode"): 30.0,
               ("decode", "decode"): 30.0}
    text = phase_split(goodput, {"h100": 600.0, "prefill": 900.0, "decode": 450.0}, "TDP")
    # prefill 60 W per req/s of 80: 75 %; Prefill Chips 45 / 60 = 0.75x; Decode Chips 15 / 20 = 0.75x
    assert "prefill holds 75% of the H100-model cluster's TDP" in text
    assert "Prefill Chips need 0.75x the H100 model's TDP for prefill and Decode Chips 0.75x for decode" in text


def test_hat_checks_its_band_where_papers_md_sets_it(scenario_defaults):
    """PAPERS.md HAT-1's 41-54 % holds 'when t_up(n) ~ t_cloud(n)'; the testbed check runs at 100 Mbps, where the
    upload is 5.5x the cloud forward. The balanced check runs one device on the uplink that equals them."""
    checks = {c.name: c for c in scenario_defaults("hat").outcome.checks}
    balanced = checks["TTFT reduction from prompt chunking where t_up(n) = t_cloud(n)"]
    assert balanced.passed and balanced.band == (41.0, 54.0), balanced.why
    assert "Mbps up" in balanced.why and "t_up(n) = t_cloud(n) = " in balanced.why


def test_bestserves_why_names_the_held_out_points_beyond_its_bound(scenario_defaults):
    check = next(c for c in scenario_defaults("bestserve").outcome.checks if c.name == "latency model, held-out error")
    assert "beyond it: " in check.why and "under-predicted ~24 %" not in check.why


def test_spad_checks_papers_md_every_prompt_claim_apart_from_the_mean(scenario_defaults):
    checks = {c.name: c for c in scenario_defaults("spad").outcome.checks}
    every = checks["Prefill Chip no slower at any prompt >= 512"]
    assert every.band[0] == 1.0 and every.phasewise < 1.0 and not every.passed  # 512 tokens: weight streaming
    assert "lowest at 512 tokens" in every.why and "memory-bound operators" in every.why
    assert checks["Prefill Chip prefill performance"].passed  # the paper's average gain
