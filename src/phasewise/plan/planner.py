"""`plan()`: enumerate strategies, screen every one's goodput cheaply, refine the best (and those the screening
cannot order against the last of them: screen_cut.py) with larger simulations, verify each answer on the whole
deployment (a slice of its units for a large fleet) with fresh random numbers (stepping down 5 % at a time until it
holds), rank by the verified goodput. Its parts: the objectives (objectives.py), the analytic pre-screen
(analytic_prescreen.py), verification (verification.py), the result (plan_result.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from phasewise.errors import PhasewiseError
from phasewise.plan.analytic_prescreen import PRESCREEN, PRESCREEN_UNITS, prescreen  # noqa: F401 (re-exported)
from phasewise.plan.backends import run_all
from phasewise.plan.chip_budgets import strategy_chip
from phasewise.plan.goodput import GoodputResult, WorkloadSpec, capacity_estimate, evaluate
from phasewise.plan.objectives import (  # noqa: F401 (importable here, as before)
    OBJECTIVE_UNITS,
    OBJECTIVES,
    objective_per,
    objective_value,
    require_prices,
)
from phasewise.plan.plan_result import PlanResult, reason, verified_point  # noqa: F401 (re-exported)
from phasewise.plan.screen_cut import refined_at_cut
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.plan.strategy_policies import with_planned_slos
from phasewise.plan.verification import (  # noqa: F401 (importable here, as before)
    VERIFY_CLIMB,
    VERIFY_CLIMB_STEPS,
    VERIFY_SEEDS,
    VERIFY_TOLERANCE,
    p90_excess,
    take_verification,
    verified_timeline,
    verify,
)
from phasewise.plan.windows import (  # noqa: F401 (importable here, as before)
    REFINE,
    SCREEN,
    VERIFY_FILLS,
    VERIFY_MAX_WINDOW_S,
    VERIFY_SEED_FILLS,
    VERIFY_STEP,
    VERIFY_WINDOW_S,
    WINDOW_SIGMAS,
    fill_s,
    refine_anchor_rps,
    search_task,
    search_window_s,
    verify_window_s,
    window_requests,
)
from phasewise.sim import Slo
from phasewise.sim.flag_checks import is_integer

VERIFY_MORE_ROUNDS = 2  # rounds of further screened strategies refined and verified where too few of the first held


def _check_arguments(gpus, slo, work, opts, refine) -> None:
    """plan()'s arguments of the types and ranges plan's flags give (--gpus, --top: integers >= 1), a one-line error
    naming the argument otherwise; the options' values by PlanOptions.check."""
    for name, value in (("--gpus", gpus), ("--top (refine)", refine)):
        if not is_integer(value):
            raise PhasewiseError(f"{name} must be an integer >= 1 (got {value!r})")
        if value < 1:
            raise PhasewiseError(f"{name} must be >= 1 (got {value})")
    for name, value, kind, what in (("slo", slo, Slo, "a Slo (phasewise.sim.Slo(ttft_ms, tpot_ms, max_tbt_ms))"),
                                    ("work", work, WorkloadSpec, "a WorkloadSpec (plan/goodput.py workload_spec)"),
                                    ("opts", opts, (PlanOptions, type(None)), "a PlanOptions or None")):
        if not isinstance(value, kind):
            raise PhasewiseError(f"plan(): {name} must be {what} (got {type(value).__name__})")
    if opts is not None:
        opts.check()


def plan(model: str, hardware: str, gpus: int, slo: Slo, work: WorkloadSpec, *, target: float = 0.9,
         objective: str = "goodput-per-gpu", opts: PlanOptions | None = None, refine: int = 5,
         backend: str = "local", workers: int | None = None, ray_address: str | None = None,
         progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> PlanResult:
    """Rank every strategy the budget allows by `objective` under the SLOs (attainment >= target). `hardware` may
    name several chips (comma-separated): each one's strategies on the same budget compete in one ranking, the
    analytic pre-screen weighs each chip's against that chip's best, and each chip's best screened strategy is
    refined and verified beside the overall top `refine`, so the ranking shows every chip that meets the SLOs."""
    t0 = time.perf_counter()
    _check_arguments(gpus, slo, work, opts, refine)
    if objective not in OBJECTIVES:
        raise PhasewiseError(f"--objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if not 0 < target <= 1:
        raise PhasewiseError(f"--attainment must be in (0, 1] (got {target})")
    if not any(math.isfinite(v) for v in (slo.ttft_ms, slo.tpot_ms, slo.max_tbt_ms)):
        raise PhasewiseError("plan needs at least one SLO: --slo-ttft-ms, --slo-tpot-ms or --slo-tbt-ms")
    opts = opts or PlanOptions()
    if "encoders" in opts.policies and work.images is None:
        raise PhasewiseError("--policies encoders needs image inputs (--images-per-request, or a trace with a "
                             "NumImages column and --image-size): without images encode workers have nothing to do")
    if max(min(opts.tp_options), 1) > max([gpus, *(n for _, n in opts.chip_gpus)]):
        raise PhasewiseError(f"every --tp-options value needs more GPUs than --gpus {gpus}")
    if objective in ("cost", "goodput-per-dollar", "goodput-per-watt", "power"):
        require_prices(objective, hardware, opts)
    strategies, pruned = enumerate_strategies(model, hardware, gpus, opts)
    strategies = with_planned_slos(strategies, slo)  # a pools strategy's controller: the SLOs it is planned under
    capacities = {id(s): capacity_estimate(s, work) for s in strategies}
    strategies = prescreen(objective, strategies, list(capacities.values()), pruned)

    def tick(stage: str, total: int) -> Callable[[int], None] | None:
        return progress(stage, 0, total) if progress else None

    # each search's window sized at the rate it is expected to answer near (search_task): the screening's at the
    # analytic capacity, the refinement's at the screening's answer
    screen = run_all(evaluate, [search_task(SCREEN, s, work, slo, target, capacities[id(s)]) for s in strategies],
                     backend, workers, ray_address, tick("screening", len(strategies)))
    screen.sort(key=lambda r: objective_value(objective, r), reverse=True)
    # the cut at `refine` splits no two strategies the screening cannot order: those within a bisection step of the
    # last one refined are refined too (screen_cut.py), ties among them (e.g. a disaggregated unit whose prefill
    # binds, beside the same unit with another decode layout)
    top = refined_at_cut(screen, refine, lambda r: objective_value(objective, r))
    refined_chips = {strategy_chip(r.strategy) for r in top}
    for r in screen:  # a plan across chips: each chip's best is refined too, so the ranking compares the chips
        if r.goodput_rps > 0 and strategy_chip(r.strategy) not in refined_chips:
            top.append(r)
            refined_chips.add(strategy_chip(r.strategy))

    def refine_and_verify(batch: list[GoodputResult]) -> list[GoodputResult]:
        # each with its screening's probes: on a replayed trace, refining repeats them exactly and reads them
        done = run_all(evaluate, [search_task(REFINE, r.strategy, work, slo, target, refine_anchor_rps(r), r.probes)
                                  for r in batch], backend, workers, ray_address, tick("refining", len(batch)))
        checks = [(r.strategy, r.goodput_rps, work, slo, target, r.search_units) for r in done]
        for r, verdict in zip(done, run_all(verify, checks, backend, workers, ray_address,
                                            tick("verifying", len(checks)))):
            take_verification(r, *verdict)
        return done

    # every refined strategy is verified: verification steps down from the refined rate (5 % a step) or climbs past
    # it, so an order by the refined goodput is no order by the verified one (a cut there dropped a strategy that
    # verifies first: tests/test_plan_prefix.py)
    refined = refine_and_verify(top)
    # verification can refuse what the search held (longer windows, other seeds): while fewer than `refine` strategies
    # hold, the next screened ones that held are refined and verified too, so a plan whose first candidates all fail
    # verification still ranks those that hold (VERIFY_MORE_ROUNDS rounds at most)
    chosen = {id(r) for r in top}
    for _ in range(VERIFY_MORE_ROUNDS):
        holding = sum(r.goodput_rps > 0 for r in refined)
        more = [r for r in screen if id(r) not in chosen and r.goodput_rps > 0][:max(refine - holding, 0)]
        if not more:
            break
        chosen.update(id(r) for r in more)
        refined += refine_and_verify(more)
    refined.sort(key=lambda r: (objective_value(objective, r), r.goodput_rps), reverse=True)
    return PlanResult(model, hardware, gpus, slo, target, objective, work.name, refined, screen, pruned,
                      time.perf_counter() - t0, opts.chip_gpus, (opts.prefill_hardware, opts.decode_hardware),
                      work.beyond_context_share, work.trace, work.images is not None, work.replay_lengths,
                      opts.memory_fraction)
