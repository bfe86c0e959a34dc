"""plan on a small model at a high rate: each window holds the requests its resolution needs, not a fixed number of
seconds (a 0.6B model's 1-GPU unit of 128/32-token requests runs at ~1,300 req/s: 60 s were 78,000 requests a
verification seed, 20 s 26,000 a screening probe), while a plan at make run's rates keeps its windows; and off a
terminal, a few progress lines on stderr."""

import json

import pytest

import phasewise.plan.backends as backends
import phasewise.plan.goodput as goodput
from phasewise.plan import PlanOptions, enumerate_strategies, evaluate
from phasewise.plan.goodput import capacity_estimate, seats, workload_spec
from phasewise.plan.planner import (
    REFINE,
    SCREEN,
    VERIFY_FILLS,
    VERIFY_SEED_FILLS,
    VERIFY_STEP,
    VERIFY_WINDOW_S,
    WINDOW_SIGMAS,
    search_task,
    verify_window_s,
    window_requests,
)
from phasewise.sim import Slo
from phasewise.sim.deployment import build_deployment

SMALL, LLAMA = "Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B"
SLO = Slo(1000, 50)


def strategy(model: str, name: str):
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), batch_caps=(256,), engine_default_cap=False,
                       disaggregated=False)
    return next(s for s in enumerate_strategies(model, "h100-sxm", 1, opts)[0] if s.name == name)


@pytest.fixture(scope="module")
def short():
    """The 0.6B model's 1-GPU b256 unit on 128/32-token requests: 256 seats, filled in 0.2 s at 1,300 req/s."""
    return (strategy(SMALL, "1x TP1 vllm default b256 bf16"),
            workload_spec(None, "poisson", 128, 32, "fixed", "fixed", 0, 0, 0, context_tokens=40960))


@pytest.fixture(scope="module")
def llama():
    """Make run's plan's unit: Llama-3.1-8B on one H100, b256, the conversation trace's lengths, ~20 req/s."""
    return (strategy(LLAMA, "1x TP1 vllm default b256 bf16"),
            workload_spec(None, "poisson", None, None, "fixed", "fixed", 0, 0, 0, context_tokens=131072))


def test_window_requests_are_the_drift_standing_out_of_the_random_walk():
    # an overload of share e grows the queue by e x n over n requests; its random walk, by sqrt(n)
    for resolution in (0.5 ** SCREEN["steps"], 0.5 ** REFINE["steps"], VERIFY_STEP):
        n = window_requests(resolution)
        assert resolution * n == pytest.approx(WINDOW_SIGMAS * n ** 0.5)
    assert window_requests(VERIFY_STEP) == pytest.approx(25_600)


def test_a_high_rate_search_window_holds_what_its_resolution_needs(short):
    s, work = short
    rate = 1300.0
    screen, refine = (search_task(settings, s, work, SLO, 0.9, rate)[5] for settings in (SCREEN, REFINE))
    # the screening's 1/8 resolution: 4,096 requests (more than 12 fills of 256 seats), not 20 s x 1,300 = 26,000
    assert rate * screen == pytest.approx(window_requests(0.5 ** SCREEN["steps"]))
    assert rate * screen > VERIFY_FILLS * seats(build_deployment(s.deployment), work)
    # the refinement's 1/64 asks 262,144, more than its 60 s hold: its window stays
    assert refine == REFINE["window_s"]


def test_make_runs_windows_are_unchanged(llama):
    """At ~20 req/s a unit (make run's plan, 1/8 of ~157 req/s) every window is the seconds it was: the searches'
    20 s and 60 s at up to twice the analytic capacity, verification's 60 s floor and the first seed's 12 fills."""
    s, work = llama
    cap = capacity_estimate(s, work)
    for rate in (cap, 2 * cap):
        assert search_task(SCREEN, s, work, SLO, 0.9, rate)[5] == SCREEN["window_s"]
        assert search_task(REFINE, s, work, SLO, 0.9, rate)[5] == REFINE["window_s"]
    dep = build_deployment(s.deployment)
    assert verify_window_s(dep, work, SLO, 19.6, VERIFY_SEED_FILLS) == VERIFY_WINDOW_S
    assert verify_window_s(dep, work, SLO, 19.6, VERIFY_FILLS) > VERIFY_WINDOW_S


def test_a_high_rate_verification_seed_holds_25_600_requests_not_60_s(short):
    s, work = short
    dep = build_deployment(s.deployment)
    for fills in (VERIFY_FILLS, VERIFY_SEED_FILLS):
        window_s = verify_window_s(dep, work, SLO, 1300.0, fills)
        assert 1300.0 * window_s == pytest.approx(window_requests(VERIFY_STEP))  # 25,600, not 78,000
        assert window_s < VERIFY_WINDOW_S
    # at 100 req/s those requests take longer than 60 s: the floor is 60 s, as it was
    assert verify_window_s(dep, work, SLO, 100.0, VERIFY_SEED_FILLS) == VERIFY_WINDOW_S


def test_requests_simulated_per_screening_probe(short, monkeypatch):
    """The screening of the high-rate unit, counted: every probe's requests are its rate times the window sized at
    the analytic capacity (4,096 requests there), under half the 20 s window's."""
    s, work = short
    sizes = []
    real = goodput.simulate

    def counted(dep, traffic, slo, **kw):
        sizes.append((len(traffic), float(traffic.arrival_s[-1])))
        return real(dep, traffic, slo, **kw)

    monkeypatch.setattr(goodput, "simulate", counted)
    cap = capacity_estimate(s, work)
    task = search_task(SCREEN, s, work, SLO, 0.9, cap)
    r = evaluate(*task)
    assert sizes and r.goodput_rps > cap  # the estimate is low for these short requests: the search doubles past it
    window_s = task[5]
    assert window_s * cap == pytest.approx(window_requests(0.5 ** SCREEN["steps"]))
    for p in r.curve:
        n = int(max(SCREEN["min_requests"], p["rate_rps"] * window_s))
        assert (n, pytest.approx(n / p["rate_rps"], rel=0.1)) in sizes
        assert n < 0.5 * p["rate_rps"] * SCREEN["window_s"]


def test_stage_lines_are_few_and_wait_for_a_slow_plan():
    now = [0.0]
    lines: list[str] = []
    progress = backends.stage_lines(lines.append, "plan", after_s=5.0, clock=lambda: now[0])
    advance = progress("screening", 0, 100)  # starts at 0 s: too early for a line
    for _ in range(100):
        now[0] += 0.125
        advance(1)
    # 25 done at 3.1 s: still quiet; 50 at 6.25 s, 75, 100
    assert lines == ["plan: screening: 50 of 100 done (6 s)", "plan: screening: 75 of 100 done (9 s)",
                     "plan: screening: 100 of 100 done (12 s)"]
    lines.clear()
    advance = progress("verifying", 0, 3)
    for _ in range(3):
        advance(1)
    assert lines == ["plan: verifying: 3 to run (12 s)", "plan: verifying: 1 of 3 done (12 s)",
                     "plan: verifying: 2 of 3 done (12 s)", "plan: verifying: 3 of 3 done (12 s)"]
    lines.clear()
    advance = progress("refining", 0, 10_000)  # however many tasks, at most 5 lines a stage
    for _ in range(10_000):
        advance(1)
    assert len(lines) == backends.STAGE_LINE_QUARTERS + 1


def test_plan_off_a_terminal_prints_its_stages_on_stderr(run_cli, monkeypatch):
    """Output captured (not a terminal), --json: stdout is the JSON alone, stderr a line per stage and quarter (here
    with no wait before the first), then the verdict's line (a TTFT SLO of 5 ms no strategy meets: a quick plan)."""
    monkeypatch.setattr(backends, "STAGE_LINES_AFTER_S", 0.0)
    code, out, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--chunk-sizes", "2048", "--batch-caps",
                             "256", "--no-disagg", "--slo-ttft-ms", "5", "--top", "1", "--workers", "1", "--json")
    assert code == 1 and json.loads(out)["feasible"] is False
    *stages, verdict = err.strip().splitlines()
    assert stages[0].startswith("plan: screening: ") and stages[0].endswith("to run (0 s)")
    assert any(line.startswith("plan: verifying: ") for line in stages)
    assert all(line.startswith("plan: ") for line in stages) and len(stages) <= 3 * (backends.STAGE_LINE_QUARTERS + 1)
    assert verdict.startswith("no strategy meets")


def test_a_plan_within_seconds_prints_no_progress_line(run_cli):
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--chunk-sizes", "2048", "--batch-caps",
                           "256", "--no-disagg", "--slo-ttft-ms", "5", "--top", "1", "--workers", "1", "--json")
    assert code == 1 and "plan: " not in err and len(err.strip().splitlines()) == 1
