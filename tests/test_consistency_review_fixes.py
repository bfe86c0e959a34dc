"""The consistency review's fixes: estimate's SGLang sequence cap sized from the model's context, as simulate's;
the KV mean use never above the peak (both of whole blocks held); one formula for Poisson arrivals, plan's and
simulate's; the exported replay line's note on what simulate's goodput divides by."""

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from phasewise.perf.estimate import estimate
from phasewise.plan import PlanOptions, WorkloadSpec, enumerate_strategies
from phasewise.plan.export import REPLAY_GOODPUT_NOTE, plan_header
from phasewise.plan.goodput import GoodputResult, VerifiedRun, slice_traffic, workload_spec
from phasewise.plan.planner import PlanResult
from phasewise.sim import Slo
from phasewise.sim.api import build, run
from phasewise.sim.simulate import build_group
from phasewise.workload import LengthDist, open_loop

M = "meta-llama/Llama-3.1-8B"
SLO = Slo(1000, 50)


# --- 1. estimate's SGLang request pool: the model's context, as simulate's ----------------------------------------

@pytest.mark.parametrize("model", [M, "google/gemma-3-27b-it"])
def test_estimate_sglang_sequence_cap_is_simulates(model):
    """`estimate --engine sglang` read 4,096 sequences (SGLang's request pool with no context known) where simulate
    and plan, passing the model's context, run 2,048 (its KV tokens / context x 512, at least 2,048)."""
    est = estimate(model, "h100-sxm", engine="sglang", prompt_len=64, context_len=64)
    dep = build(model=model, hardware="h100-sxm", engine="sglang", rate=1, requests=1).deployment
    simulated = build_group(dep, dep.instances[0], 0)[3].max_seqs
    assert simulated == 2048
    assert est.memory.max_sequences == simulated


# --- 3. KV use: the mean never above the peak ----------------------------------------------------------------------

def _kv_uses(**flags) -> list[tuple[float, float]]:
    res = run(**flags)
    return [(i["kv_mean_use"], i["kv_peak_use"]) for i in res.summary()["instances"]]


def test_kv_peak_holds_whole_blocks_the_mean_never_above_it():
    """One request, 1,024-token prompt, 2 output tokens: the peak was the floor of the blocks estimated (64: the
    decoding token's half-block slack dropped) while the mean integrated them unrounded (above it); the first
    decode step writes token 1,025, in a 65th block of 16."""
    res = run(requests=1, rate=0.01, isl=1024, osl=2)
    stats = res.instances[0]
    assert stats.kv_peak_blocks == 65
    (mean, peak), = _kv_uses(requests=1, rate=0.01, isl=1024, osl=2)
    assert mean <= peak


@settings(max_examples=8, deadline=None, derandomize=True)
@given(isl=st.integers(1, 1600), osl=st.integers(2, 40), requests=st.integers(1, 3), pp=st.sampled_from((1, 2)))
@example(isl=1000, osl=2, requests=1, pp=2)  # a PP replica's shared pool: the mean 0.00100005 over the peak 0.00099981
@example(isl=100, osl=40, requests=3, pp=1)  # the mean 0.000727 over the peak 0.000723
def test_kv_mean_use_never_above_peak(isl, osl, requests, pp):
    """Both figures of one per-iteration quantity (the whole blocks held), a PP replica's shared pool too; the mean
    over the run's duration, so at most the peak (to the last bits of a sum of times). Requests arriving together
    (1,000 req/s) keep the instance busy, the mean nearest the peak."""
    for mean, peak in _kv_uses(requests=requests, rate=1000.0, isl=isl, osl=osl, pp=pp):
        assert 0 < peak <= 1
        assert mean <= peak * (1 + 1e-12)


# --- 4. one formula for Poisson arrivals ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_plan_poisson_load_is_simulates_open_loop(seed):
    """plan drew exponential(1) gaps over the rate, simulate exponential(1/rate): the same process, other last bits.
    One formula now: plan's verification run of fixed lengths is `simulate --rate --requests --isl --osl --seed`'s
    workload exactly."""
    work = workload_spec(None, "poisson", 1024, 128, "fixed", "fixed", 0, 0, 0)
    rate, n = 37.3, 3000
    planned = slice_traffic(replace(work, seed=seed), rate, n, 1, 1, "least_outstanding")
    simulated = open_loop(rate, n, LengthDist("fixed", 1024), LengthDist("fixed", 128), seed=seed)
    assert np.array_equal(planned.arrival_s, simulated.arrival_s)
    assert np.array_equal(planned.prompt_tokens, simulated.prompt_tokens)
    assert np.array_equal(planned.output_tokens, simulated.output_tokens)


def test_poisson_draws_scale_with_the_rate():
    """The search shares its random numbers across rates: the same seed's instants at twice the rate are half."""
    work = WorkloadSpec((100,), (10,), seed=5)
    a, b = work.at_rate(3.0, 200).arrival_s, work.at_rate(6.0, 200).arrival_s
    assert np.allclose(a, 2 * b, rtol=1e-15, atol=0)


# --- 2. the replay line says what simulate's goodput divides by -----------------------------------------------------

def _verified_winner() -> tuple[Any, VerifiedRun, GoodputResult]:
    """(strategy, its verification's run at 12 req/s, 300 requests, seed 1, the ranked result) of a 1-GPU plan."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), batch_caps=(256,), engine_default_cap=False,
                       disaggregated=False)
    strategy = next(s for s in enumerate_strategies(M, "h100-sxm", 1, opts)[0] if s.name == "1x TP1 vllm default b256 "
                    "bf16")
    summary = {"ttft_ms": {"p90": 100.0}, "tpot_ms": {"p90": 20.0}}
    run_ = VerifiedRun(12.0, 300, 1, summary, np.zeros(1), np.zeros(1), 1, 1, strategy.deployment)
    return strategy, run_, GoodputResult(strategy, 12.0, 12.0, "decode (TPOT)", {}, verified=run_,
                                         verified_attainment=1.0)


def test_replay_line_notes_simulates_goodput_is_over_the_runs_duration():
    strategy, run_, r = _verified_winner()
    result = PlanResult(M, "h100-sxm", 1, SLO, 0.9, "goodput-per-gpu", "azure-conv", [r], [r], [],
                        trace="azure-conv")
    header = plan_header(result, r, 1)
    assert header[4].startswith("replay: phasewise simulate --deployment deployment.yaml --trace azure-conv ")
    assert header[5] == REPLAY_GOODPUT_NOTE
    assert "drain" in REPLAY_GOODPUT_NOTE and "lower than the planned goodput" in REPLAY_GOODPUT_NOTE
    assert plan_header(replace(result, trace=None), r, 1)[4:] == []  # no replay, no note


def test_a_poisson_plan_of_fixed_lengths_exports_the_line_that_replays_its_verification():
    """Fixed --isl / --osl with Poisson arrivals: simulate's open loop draws them as plan's verification did (one
    formula, poisson_arrivals), so the header names the run's rate, requests and seed; behind a router that draws
    (random: plan seeds it 0, simulate's --seed) no line."""
    strategy, run_, r = _verified_winner()
    result = PlanResult(M, "h100-sxm", 1, SLO, 0.9, "goodput-per-gpu", "fixed", [r], [r], [],
                        replay_lengths=(1024, 128))
    line = plan_header(result, r, 1)[4]
    assert line.startswith(f"replay: phasewise simulate --deployment deployment.yaml --rate {run_.rate_rps!r} "
                           f"--requests {run_.requests} --isl 1024 --osl 128 --seed {run_.seed} ")
    drawn = replace(run_, deployment={**strategy.deployment, "router": "random"})
    assert plan_header(result, replace(r, verified=drawn), 1)[4:] == []
