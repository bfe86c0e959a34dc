"""Review fixes in the workload layer and the run it builds (sim/api.py): a replayed trace's prefix copies whatever
the sign of its hash ids, length and arrival flags refused where they would silently mean something else, the
routers' draws seeded by --seed, and notes where a trace's column or --trace-limit does nothing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.api import build, run
from phasewise.sim.routers import DynamoKvSettings, make_router
from phasewise.workload import LengthDist, Workload, check_length_flags, open_loop
from phasewise.workload.generators import CV_RANGE, MAX_LOGNORMAL_SPREAD
from phasewise.workload.request import MAX_ARRIVAL_S, prefix_copies, prefix_stride

FIXED = LengthDist("fixed", 100)


# --- finding 1: prefix copies never collide, whatever the sign of the ids ----------------------------------------
@pytest.mark.parametrize("hashes", [
    [tuple(range(-240 + 4 * i, -236 + 4 * i)) for i in range(60)],  # every id below zero (stride was 0)
    [(-5, -4), (3, 9), ()],  # both signs
    [(7, 8), (12,)],  # all above zero, none at 0
])
def test_copies_share_no_block_with_any_other_copy(hashes):
    copies = 3
    repeated = prefix_copies(hashes, copies)
    per_copy = [{h for blocks in repeated[k * len(hashes):(k + 1) * len(hashes)] for h in blocks}
                for k in range(copies)]
    assert per_copy[0] == {h for blocks in hashes for h in blocks}  # copy 0: the trace's own
    for a in range(copies):
        for b in range(a + 1, copies):
            assert not per_copy[a] & per_copy[b], (a, b)


def test_a_trace_from_id_0_keeps_its_stride():
    # ids 0..max: the stride is max + 1 as before, so runs of such traces (the bundled Mooncake excerpt) do not move
    assert prefix_stride([(0, 1, 2), (0, 5)]) == 6
    assert prefix_stride([(), ()]) == 1


def test_a_looped_trace_with_negative_ids_gets_no_hits_on_itself():
    work = Workload(np.arange(4.0), np.full(4, 1024), np.full(4, 8),
                    prefix_hashes=[(-8 + 2 * i, -7 + 2 * i) for i in range(4)])
    looped = work.looped(20.0)
    ids = [h for blocks in looped.prefix_hashes for h in blocks]
    assert len(looped) > len(work) and len(ids) == len(set(ids))


# --- finding 2: uniform lengths need a spread --------------------------------------------------------------------
@pytest.mark.parametrize("spread", [None, 0.0])
def test_uniform_without_a_spread_is_refused(spread):
    with pytest.raises(PhasewiseError, match="--isl-spread must be > 0 for uniform"):
        check_length_flags(1000, 20, "uniform", None, spread, None)
    with pytest.raises(PhasewiseError, match="--osl-spread must be > 0 for uniform"):
        build(rate=5, requests=50, isl=1000, osl=20, osl_dist="uniform", osl_spread=spread)


def test_plan_names_its_own_fields():
    with pytest.raises(PhasewiseError, match="isl_spread must be > 0 for uniform"):
        check_length_flags(1000, 200, "uniform", "uniform", 0.0, 0.0, name=lambda field: field)


# --- finding 3: --cv and a lognormal spread in a range that means what it says -------------------------------------
@pytest.mark.parametrize("cv", [1e-200, 1e-170, 1e200, 30.0, float("nan"), float("inf")])
def test_a_cv_out_of_range_is_one_line(cv):
    with pytest.raises(PhasewiseError, match=r"--cv must be a finite number > 0 within \[0.001, 10\]"):
        open_loop(5, 10, FIXED, FIXED, arrival="gamma", cv=cv)


@pytest.mark.parametrize("cv", CV_RANGE)
def test_the_cv_range_ends_run(cv):
    assert len(open_loop(5, 10, FIXED, FIXED, arrival="gamma", cv=cv)) == 10


def test_the_cv_range_figures():
    """CV_RANGE's comment: the share of gamma gaps float64 rounds to 0."""
    rng = np.random.default_rng(0)
    zero = {cv: float((rng.gamma(1 / cv**2, cv**2, 100_000) == 0).mean()) for cv in (10, 30, 100)}
    assert zero[10] < 0.001 and 0.4 < zero[30] < 0.5 and zero[100] > 0.9


@pytest.mark.parametrize("spread", [1e200, 40.0, 2.5])
def test_a_lognormal_spread_past_the_bound_is_refused(spread):
    with pytest.raises(PhasewiseError, match="--isl-spread must be <= 2 for lognormal"):
        check_length_flags(1000, None, "lognormal", None, spread, None)
    with pytest.raises(PhasewiseError, match="must be <= 2"):
        LengthDist("lognormal", 1000, spread)
    LengthDist("lognormal", 1000, MAX_LOGNORMAL_SPREAD)  # the bound itself runs


def test_the_lognormal_bound_figures():
    """MAX_LOGNORMAL_SPREAD's comment: the median over 30 seeds of 1,000 draws' mean, over the asked 1,000."""
    def median_ratio(sigma: float) -> float:
        dist = LengthDist("lognormal", 1000, sigma, max_tokens=1 << 40)  # unclipped above, as the bound's figures
        return float(np.median([dist.sample(np.random.default_rng(k), 1000).mean() / 1000 for k in range(30)]))
    assert median_ratio(2.0) == pytest.approx(0.90, abs=0.02)
    assert median_ratio(1.0) > 0.97


# --- finding 4: --seed reaches the routers that draw ----------------------------------------------------------------
def test_the_random_router_draws_by_seed():
    names = ["a", "b", "c", "d"]
    routers = {seed: make_router("random", names, seed=seed) for seed in (0, 1, 2)}
    draws = {seed: [router.pick() for _ in range(64)] for seed, router in routers.items()}
    assert draws[0] != draws[1] and draws[1] != draws[2] and draws[2] != draws[0]
    again = make_router("random", names, seed=1)
    assert draws[1] == [again.pick() for _ in range(64)]  # a seed repeats
    old = random.Random(" ".join(names))  # seed 0: the draws of the runs before the seed reached the router
    assert draws[0] == [names[old.randrange(4)] for _ in range(64)]


def test_the_dynamo_router_draws_by_seed():
    settings = DynamoKvSettings(temperature=0.5)
    assert make_router("dynamo_kv", ["a", "b"], settings, seed=7).draws.random() == random.Random(7).random()
    assert make_router("dynamo_kv", ["a", "b"], settings).draws.random() == random.Random(0).random()


def test_the_spec_carries_the_seed():
    assert build(trace="azure-conv", trace_limit=10, router="random", replicas=2, seed=3).seed == 3


def test_a_trace_run_with_a_random_router_follows_the_seed():
    """The seed reaches the routers through simulate (a trace's arrivals and lengths are fixed, so only the
    router's draws can move): seeds 0 and 1 route differently, seed 0 as a run without one."""
    def mean_ttft_ms(**seed):
        return run(trace="azure-conv", trace_limit=120, rate=20, router="random", replicas=2, **seed).summary()[
            "ttft_ms"]["mean"]
    assert mean_ttft_ms(seed=0) == mean_ttft_ms()
    assert mean_ttft_ms(seed=1) != mean_ttft_ms(seed=0)


# --- finding 5: a client's lengths are whole tokens ---------------------------------------------------------------
@pytest.mark.parametrize("client, isl, osl, flag", [("aiperf", 99.99, 2, "--isl"), ("aiperf", 100, 1.7, "--osl"),
                                                     ("vllm-bench", 1000.5, 16, "--isl"),
                                                     ("sglang-bench", 1000, 16.9, "--osl")])
def test_a_client_takes_whole_tokens(client, isl, osl, flag):
    with pytest.raises(PhasewiseError, match=f"{flag} must be a whole number of tokens for the client's sampling"):
        build(concurrency=2, client=client, isl=isl, osl=osl)


def test_a_client_with_a_distribution_takes_a_mean():
    work = build(concurrency=2, client="vllm-bench", isl=1000.5, isl_dist="uniform", isl_spread=0.1, osl=16,
                 requests=4).workload
    assert work.prompt.mean == 1000.5


# --- finding 6 and 7b: notes for a priority column nothing reads and a --trace-limit past the trace ---------------
def _trace(tmp_path, priority: bool) -> str:
    rows = ["arrived_at,num_prefill_tokens,num_decode_tokens" + (",priority" if priority else "")]
    rows += [f"{i * 0.1},100,10" + (f",{i % 2}" if priority else "") for i in range(6)]
    path = tmp_path / ("prio.csv" if priority else "plain.csv")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_priority_column_nothing_reads_is_noted(tmp_path):
    notes = build(trace=_trace(tmp_path, True)).notes
    assert any("its priority column is ignored" in note for note in notes)
    assert not build(trace=_trace(tmp_path, False)).notes


def test_a_trace_limit_past_the_trace_is_noted():
    spec = build(trace="azure-conv", trace_limit=5000)
    assert len(spec.workload) == 2000
    assert "--trace-limit 5,000: trace 'azure-conv' holds 2,000 requests, all of them replayed" in spec.notes
    assert not build(trace="azure-conv", trace_limit=100).notes


# --- finding 7a: a rate whose arrivals float64 cannot time ---------------------------------------------------------
def test_a_rate_past_float64s_reach_is_refused():
    with pytest.raises(PhasewiseError, match="--rate 1e-300 spreads 5 requests over"):
        build(rate=1e-300, requests=5)
    with pytest.raises(PhasewiseError, match="rate 1e-300 spreads 5 requests over"):
        build(trace="azure-conv", trace_limit=5, rate=1e-300)
    with pytest.raises(PhasewiseError, match="--rate 1e-310 spreads 5 requests over inf s"):  # before any draw
        build(rate=1e-310, requests=5)
    assert build(rate=1e-6, requests=5).workload.arrival_s[-1] < MAX_ARRIVAL_S  # a slow rate, within reach


def test_the_planners_lowest_probe_is_no_users_rate():
    """The bound is on a rate a user gives: plan's search, which quarters its guess down to 1 / 4,096 of it where
    nothing attains, still builds its probes (500 requests at 2.4e-7 req/s span ~2e9 s) and reports 'no strategy'."""
    from phasewise.plan.goodput import workload_spec

    probe = workload_spec(None, "poisson", 512, 128, "fixed", "fixed", 0.0, 0.0, 0).at_rate(1e-3 / 4**6, 500)
    assert probe.arrival_s[-1] > MAX_ARRIVAL_S


def test_an_autoscale_replays_prime_shares_no_block_with_a_trace_of_negative_ids():
    """plan --autoscale's prime (its first minutes replayed first, each prompt a prefix of its own) takes block ids
    below every id of the trace's, whatever their sign."""
    from phasewise.plan.fleet import primed

    trace = Workload(np.arange(0.0, 400.0, 2.0), np.arange(200) + 100, np.full(200, 16),
                     prefix_hashes=[(-3 - i, -2 - i) for i in range(200)])
    replay = primed(trace)
    primes = [h for hs in replay.traffic.prefix_hashes[:replay.primed] for h in hs]
    assert replay.primed and len(set(primes)) == len(primes)
    assert not set(primes) & {h for hs in trace.prefix_hashes for h in hs}
