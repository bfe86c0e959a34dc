"""A sweep's rows: one strategy's figures (plan's row of it, verified, or the search's run at its answer), its power
and cost figures, and an unverified row's rates named search_*."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput import GoodputResult
from phasewise.plan.planner import PlanResult, objective_value
from phasewise.plan.sweep_config import SweepConfig
from phasewise.sim import Slo

# the figures a row takes from plan's own row of the strategy (PlanResult.rows: the verification run's), verified
_PLAN_FIGURES = ("ttft_p90_ms", "tpot_p90_ms", "tbt_p99_ms", "tokens_per_s_per_gpu")
_VERIFICATION = ("search_rps", "verified_attainment", "reason")


def _row(cfg: SweepConfig, key: dict[str, Any], r: GoodputResult, slo: Slo, verified: bool) -> dict[str, Any]:
    """A strategy's row. Verified: the latencies and tokens/s per GPU of plan's row for it (the verification run at
    the goodput), the refined search's rate, the attainment verified and plan's reason; else the search's run at its
    answer (GoodputResult.point)."""
    if verified:
        plan_row = PlanResult(key["model"], key["hardware"], cfg.gpus, slo, cfg.attainment, "goodput-per-gpu",
                              key["workload"], [r], [], []).rows()[0]
        figures = {name: plan_row[name] for name in _PLAN_FIGURES}
    else:  # a figure the point lacks (no rate attained: no point) NaN, as PlanResult.rows has it: one type a column
        point = r.point()
        figures = {name: math.nan if point.get(name) is None else float(point[name]) for name in _PLAN_FIGURES}
    row = {**key, "strategy": r.strategy.name, "kind": r.strategy.kind, "gpus": r.gpus,
           "goodput_rps": r.goodput_rps, "goodput_rps_per_gpu": r.goodput_rps / r.gpus,
           "goodput_requests_per_dollar": objective_value("goodput-per-dollar", r),
           "goodput_requests_per_joule": _per_joule(r), **_cluster_figures(r), "binding": r.binding,
           **figures, "simulations": r.simulations}
    if verified:
        row.update({name: plan_row[name] for name in _VERIFICATION})
    return row


def searched(row: dict[str, Any]) -> dict[str, Any]:
    """A row of search rates (`fidelity: screen | refine`, unverified): its goodput_* columns named search_*."""
    return {("search_" + name.removeprefix("goodput_") if name.startswith("goodput_") else name): value
            for name, value in row.items()}


def _per_joule(r: GoodputResult) -> float:
    """Goodput per joule of the simulated power (plan's --objective goodput-per-watt, which refuses such chips); NaN
    where the power is unknown, as the other per-unit figures are, not 0: a chip of the deployment with no TDP
    (tdp_w 0, as `calibrate` writes one: the simulated energy has no dynamic power to scale), or no power simulated."""
    from phasewise.specs import load_hardware

    chips = cluster_hardware(r.strategy.deployment, with_cost=False).chips
    if any(not load_hardware(chip).tdp_w > 0 for chip in chips) or not r.power_w() > 0:
        return math.nan
    return objective_value("goodput-per-watt", r)


def _cluster_figures(r: GoodputResult) -> dict[str, float]:
    """The strategy's cluster TDP and goodput per kW of it (plan's --objective power), and its hardware cost and
    goodput per $1,000 of it (--objective cost) where every chip is built from parts (NaN where one is not)."""
    cluster = cluster_hardware(r.strategy.deployment, with_cost=False)
    figures = {"cluster_tdp_w": cluster.tdp_w, "goodput_rps_per_kw": objective_value("power", r),
               "cluster_cost_usd": math.nan, "goodput_rps_per_1k_usd": math.nan}
    try:
        figures.update(cluster_cost_usd=cluster_hardware(r.strategy.deployment).cost_usd,
                       goodput_rps_per_1k_usd=objective_value("cost", r))
    except PhasewiseError:  # a catalog chip: no parts to cost
        pass
    return figures
