"""Verification of a searched goodput: the whole deployment (or its slice) behind its router, on fresh seeds, over
windows that fill its seats many times (windows.py), stepping down from the search's rate until it holds, or climbing
above it where more units than the search ran may hold more; the result taking it, and its run again with the
utilization timeline."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.plan.goodput import WorkloadSpec, slice_units
from phasewise.plan.goodput_results import GoodputResult, VerifiedRun
from phasewise.plan.run_summaries import binds
from phasewise.plan.strategies import Strategy
from phasewise.plan.unit_traffic import fresh_draws, rate_share, slice_traffic, trace_requests
from phasewise.plan.windows import REFINE, VERIFY_FACTORS, VERIFY_FILLS, VERIFY_SEED_FILLS, verify_window_s
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import miss_allowance

if TYPE_CHECKING:
    from phasewise.plan.plan_result import PlanResult


VERIFY_TOLERANCE = 0.02  # sampling noise allowed when re-simulating at the goodput rate
VERIFY_SEEDS = 3  # fresh seeds each verified rate must hold on, every one
VERIFY_CLIMB, VERIFY_CLIMB_STEPS = 1.1, 6  # verification's steps above the search's rate (up to 1.77 x)


def p90_excess(slo: Slo, ttft_p90_ms: float, tpot_p90_ms: float) -> float:
    """How far a run's p90 latencies reach into their SLOs: the larger of TTFT p90 / its SLO and TPOT p90 / its SLO
    (an SLO not set counts 0, a p90 missing under one set infinite). It orders runs of one attainment: the closest
    miss (PlanResult.closest, the least) and, among seeds that hold alike, the worst (verify, the most)."""
    ratios = [p / limit if math.isfinite(p) else math.inf
              for p, limit in ((ttft_p90_ms, slo.ttft_ms), (tpot_p90_ms, slo.tpot_ms)) if math.isfinite(limit)]
    return max(ratios, default=0.0)


def take_verification(r: GoodputResult, rate: float, attainment: float, run) -> None:
    """A refined strategy takes its verification (verify's rate, attainment and run): the search's answer kept as
    search_rps, the goodput the verified rate, and the binding SLO the verification's where a step above failed."""
    r.search_rps, r.goodput_rps, r.verified_attainment, r.verified = r.goodput_rps, rate, attainment, run
    if run is not None and run.binding is not None:  # the verification step above the goodput that failed
        r.binding, r.binding_rps, r.binding_by = run.binding, run.binding_rps, "verification"


def verify(strategy: Strategy, rate: float, work: WorkloadSpec, slo: Slo,
           target: float, search_units: int = 1) -> tuple[float, float, VerifiedRun | None]:
    """The deployment (or its slice, slice_units), behind its router, on VERIFY_SEEDS fresh seeds (the first over
    VERIFY_FILLS times the seats' fill time, the others over VERIFY_SEED_FILLS: verify_window_s): the highest of
    rate x (1, 0.95, ..., 0.05: VERIFY_FACTORS, stepping down until one holds) at which every seed's attainment >=
    target - VERIFY_TOLERANCE with a stable queue (stability.stable), the worst seed's attainment there and its run
    (the table's latencies and the report's CDFs come from it; among seeds of one attainment the worst is the one
    whose p90s reach furthest into the SLOs, p90_excess); (0, the attainment of the last run, at the lowest step,
    None) if none holds. The steps reach down to 5 % of the search's rate, not 80 %: a looser SLO raises the
    search's answer, and a floor near it rose above the rates that held under tighter SLOs (VERIFY_FACTORS). A
    replayed trace (--arrivals trace) shorter than the window is looped to fill it, and must hold both so and once,
    as `simulate --trace --rate` replays it (trace_requests), the run kept the latter; simulated whole it is one
    seed, every seed drawing it alike (fresh_draws).
    When the search's rate holds, the rate climbs by VERIFY_CLIMB while it still does (at most VERIFY_CLIMB_STEPS
    times) where verification runs more units than the search did (`search_units`): the search ran them at their
    share of the rate, and more units behind a load-aware router share their bursts (a prompt far longer than most
    waits on one unit while the router sends the next requests to the others), so the whole can hold more than its
    units' sum. The climb tries each rate on the first seed; the highest it reached is then confirmed on the others,
    stepping back down the climb where one fails. Where both ran the same units (one xPyD unit, a prefix workload's
    slice) the search's own bracket already bounds the rate. The run kept records the step above it that failed
    (its binding and rate). Rates are the whole deployment's."""
    if rate <= 0:
        return 0.0, math.nan, None
    units = slice_units(strategy, work)
    fields = strategy.slice(units)
    dep = build_deployment(fields)
    seeds = [work.seed + k for k in range(1, (VERIFY_SEEDS if fresh_draws(work, units, strategy.units) else 1) + 1)]

    def worst_first(att: float, s: dict[str, Any]) -> tuple[float, float]:  # min(): the worst run of those held
        return att, -p90_excess(slo, s["ttft_ms"]["p90"], s["tpot_ms"]["p90"])

    def attempt(r: float, tried: list[int]) -> tuple[float, VerifiedRun | None, dict[str, Any]]:
        """The worst attainment over the seeds `tried` at rate `r`, that seed's run where every one held (None at
        the first that did not), and the summary of the worst (or failing) run."""
        simulated_rate = rate_share(r, units, strategy.units)
        worst: tuple[float, SimResult, dict[str, Any], int, int, int] | None = None
        for seed in tried:
            fills = VERIFY_FILLS if seed == seeds[0] else VERIFY_SEED_FILLS
            window_s = verify_window_s(dep, work, slo, simulated_rate, fills)
            n = int(max(REFINE["min_requests"], simulated_rate * window_s))
            # a replayed trace shorter than the window is looped to fill it (at_rate), a run simulate cannot replay:
            # it must hold, and so must the trace once, as simulate --trace --rate replays it, the run kept
            once = trace_requests(work, units, strategy.units) if work.arrivals is not None else n
            looped = n if once < n else 0
            fresh = replace(work, seed=seed)
            for count in (looped, once) if looped else (once,):
                traffic = slice_traffic(fresh, r, count, units, strategy.units, dep.router)
                # a run that cannot hold is stopped once that is certain (a run that holds runs whole)
                res = simulate(dep, traffic, slo, images=work.images, refuse_beyond_context=work.refuse_beyond_context,
                               stop_after_misses=miss_allowance(len(traffic), target - VERIFY_TOLERANCE))
                s = res.summary()
                s["stable"] = fresh.steady(res)
                att = float(s["slo"]["attainment"])
                if not (att >= target - VERIFY_TOLERANCE and s["stable"]):
                    return att, None, s
            if worst is None or worst_first(att, s) < worst_first(worst[0], worst[2]):
                worst = (att, res, s, seed, once, looped)
        att, res, s, seed, n, looped = worst
        m = res.measured_mask
        kept = {k: s[k] for k in ("ttft_ms", "tpot_ms", "tbt_ms", "e2e_ms", "slo", "throughput", "energy_j",
                                  "duration_s", "requests", "completed", "prefix_cache") if k in s}
        # each role's mean KV use (the share of its instances' KV caches held, time-averaged): the HPA on
        # kv_usage aims at it (plan/fleet.py)
        by_role: dict[str, list[float]] = {}
        for instance in s.get("instances", []):
            by_role.setdefault(instance["role"], []).append(float(instance["kv_mean_use"]))
        kept["kv_mean_use"] = {role: float(np.mean(uses)) for role, uses in by_role.items()}
        return att, VerifiedRun(r, n, seed, kept, res.ttft_s[m] * 1e3, res.tpot_s[m] * 1e3, units,
                                strategy.units, fields, looped_requests=looped), s

    def held(run: VerifiedRun, att: float, above: tuple[float, dict[str, Any]] | None
             ) -> tuple[float, float, VerifiedRun]:
        if above is not None:
            run.binding, run.binding_rps = binds(above[1], target), above[0]
        run.seeds = len(seeds)
        return run.rate_rps, att, run

    att, above = 0.0, None
    for factor in VERIFY_FACTORS:  # 1, 0.95, ..., 0.05, until one holds
        att, run, s = attempt(rate * factor, seeds)
        if run is None:
            above = (rate * factor, s)
            continue
        if factor < 1.0 or units <= search_units:  # no climb: the step above (or the search's bracket) binds
            return held(run, att, above)
        # more units than the search ran: they may hold more. Climb on the first seed, then confirm downwards
        climbed: list[tuple[float, float, VerifiedRun]] = []
        for step in range(1, VERIFY_CLIMB_STEPS + 1):
            higher_rate = rate * VERIFY_CLIMB ** step
            higher_att, higher, s = attempt(higher_rate, seeds[:1])
            if higher is None:
                above = (higher_rate, s)
                break
            climbed.append((higher_rate, higher_att, higher))
        for higher_rate, first_att, first in reversed(climbed):
            rest_att, rest, s = attempt(higher_rate, seeds[1:]) if len(seeds) > 1 else (first_att, first, {})
            if rest is None:
                above = (higher_rate, s)
                continue
            worse = min((first_att, first), (rest_att, rest), key=lambda pair: worst_first(pair[0], pair[1].summary))
            return held(worse[1], worse[0], above)
        return held(run, att, above)
    return 0.0, att, None


def verified_timeline(result: PlanResult, work: WorkloadSpec, rank: int = 1) -> SimResult | None:
    """The rank-th strategy's verification run again, identical inputs, with the utilization timeline recorded
    (the run is deterministic: the same requests, the same TTFTs; checked). None if it was not verified."""
    r = result.ranked[rank - 1] if 0 < rank <= len(result.ranked) else None
    if r is None or r.verified is None:
        return None
    run = r.verified
    res = simulate(build_deployment(run.deployment), run.workload(work), result.slo, record_timeline=True,
                   images=work.images, refuse_beyond_context=work.refuse_beyond_context)
    m = res.measured_mask
    if not np.array_equal(res.ttft_s[m] * 1e3, run.ttft_ms, equal_nan=True):
        raise PhasewiseError(f"strategy '{r.strategy.name}': re-running its verification run gave other TTFTs "
                             "(the simulation is not deterministic); the report would not match its table")
    return res
