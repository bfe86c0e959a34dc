"""The analytic pre-screen: strategies whose analytic capacity (capacity.capacity_estimate), in the objective's
units, falls under PRESCREEN of their chip's best are not simulated."""

from __future__ import annotations

import math

from phasewise.plan.chip_budgets import strategy_chip
from phasewise.plan.objectives import OBJECTIVE_UNITS, objective_per
from phasewise.plan.strategies import Strategy

# the unit of objective_per's quotient (the analytic pre-screen's figures): goodput-per-watt's divides by TDP there
PRESCREEN_UNITS = dict(OBJECTIVE_UNITS, **{"goodput-per-watt": "req/s per kW of TDP"})
PRESCREEN = 0.4  # strategies whose analytic capacity is below this fraction of the best one are not simulated


def prescreen(objective: str, strategies: list[Strategy], capacities: list[float], pruned: list[str]
              ) -> list[Strategy]:
    """The strategies worth simulating: those whose analytic capacity, in the objective's units (objective_per),
    reaches PRESCREEN of the best one's on the same chip (a plan across chips weighs each chip's against its own
    best); one without a figure in those units (a chip with no price) is kept. The others get a pruned line."""
    scores = []
    for s, capacity in zip(strategies, capacities):
        per = objective_per(objective, s)
        scores.append(capacity / per if per > 0 else math.nan)
    unit = PRESCREEN_UNITS[objective]
    best: dict[str, float] = {}
    for s, score in zip(strategies, scores):
        if not math.isnan(score):
            best[strategy_chip(s)] = max(best.get(strategy_chip(s), 0.0), score)
    kept = []
    for s, capacity, score in zip(strategies, capacities, scores):
        chip = strategy_chip(s)  # '' on one chip
        if math.isnan(score) or score >= PRESCREEN * best[chip]:
            kept.append(s)
        else:
            pruned.append(f"{s.name}: analytic capacity {capacity:.1f} req/s ({score:.4g} {unit}) is under "
                          f"{PRESCREEN:.0%} of the best ({best[chip]:.4g} {unit}" + (f" on {chip})" if chip else ")"))
    return kept
