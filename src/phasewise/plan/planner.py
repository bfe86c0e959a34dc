"""`plan()`: enumerate strategies, screen every one's goodput cheaply, refine the best with larger
simulations, verify each answer on the whole deployment with fresh random numbers (stepping down 5 %
at a time until it holds), rank by the verified goodput."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.plan.backends import run_all
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput import GoodputResult, WorkloadSpec, capacity_estimate, evaluate
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware

# cost / power: goodput per dollar of cluster hardware (chips from parts) / per watt of cluster TDP: the cheapest /
# lowest-TDP cluster meeting the SLOs at a given rate (plan/cluster_cost.py)
OBJECTIVES = ("goodput-per-gpu", "goodput-per-dollar", "goodput-per-watt", "cost", "power")
VERIFY_TOLERANCE = 0.02  # sampling noise allowed when re-simulating at the goodput rate
VERIFY_WINDOW_S = 60.0
SCREEN = dict(steps=3, window_s=20.0, min_requests=150)
REFINE = dict(steps=6, window_s=60.0, min_requests=500)
PRESCREEN = 0.4  # strategies whose analytic capacity is below this fraction of the best one are not simulated


@dataclass(slots=True)
class PlanResult:
    model: str
    hardware: str
    gpus: int
    slo: Slo
    target: float
    objective: str
    workload: str
    ranked: list[GoodputResult]  # refined and verified strategies, best first
    screened: list[GoodputResult]  # every strategy's screening result
    pruned: list[str]
    wall_s: float = 0.0

    def score(self, r: GoodputResult) -> float:
        return objective_value(self.objective, r, self.hardware)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for rank, r in enumerate(self.ranked, start=1):
            at = r.at_goodput
            c = r.point()
            out.append({
                "rank": rank, "strategy": r.strategy.name, "kind": r.strategy.kind, "gpus": r.gpus,
                "goodput_rps": r.goodput_rps, "goodput_rps_per_gpu": r.goodput_rps / r.gpus,
                "objective": self.score(r),
                "ttft_p90_ms": at.get("ttft_ms", {}).get("p90", math.nan) if at else math.nan,
                "tpot_p90_ms": at.get("tpot_ms", {}).get("p90", math.nan) if at else math.nan,
                "tbt_p99_ms": at.get("tbt_ms", {}).get("p99", math.nan) if at else math.nan,
                "tokens_per_s_per_gpu": c.get("tokens_per_s_per_gpu", math.nan),
                "search_rps": r.search_rps,
                "verified_attainment": r.verified_attainment,
                "binding": r.binding, "reason": reason(r),
            })
            if self.objective in ("cost", "power"):
                cluster = cluster_hardware(r.strategy.deployment, with_cost=self.objective == "cost")
                out[-1].update(cluster_cost_usd=cluster.cost_usd if self.objective == "cost" else math.nan,
                               cluster_tdp_w=cluster.tdp_w, chips=cluster.chips)
        return out

    def pareto(self) -> list[dict[str, float]]:
        """Non-dominated (tokens/s per GPU, tokens/s per user) points over every simulated rate."""
        pts = [dict(p, strategy=r.strategy.name) for r in self.screened + self.ranked for p in r.curve
               if math.isfinite(p["tokens_per_s_per_user"])]
        pts.sort(key=lambda p: (-p["tokens_per_s_per_gpu"], -p["tokens_per_s_per_user"]))
        front, best_user = [], -math.inf
        for p in pts:
            if p["tokens_per_s_per_user"] > best_user:
                front.append(p)
                best_user = p["tokens_per_s_per_user"]
        return front


def objective_value(objective: str, r: GoodputResult, hardware: str) -> float:
    if objective in ("cost", "power"):  # requests/s per $1,000 of hardware / per kW of TDP
        cluster = cluster_hardware(r.strategy.deployment, with_cost=objective == "cost")
        per = cluster.cost_usd / 1e3 if objective == "cost" else cluster.tdp_w / 1e3
        return r.goodput_rps / per if per > 0 else math.nan
    if objective == "goodput-per-gpu":
        return r.goodput_rps / r.gpus
    if objective == "goodput-per-dollar":  # requests per dollar of GPU time
        price = load_hardware(hardware).price_per_hour_usd * r.gpus
        return r.goodput_rps * 3600 / price if price > 0 else math.nan
    power = r.at_goodput.get("energy_j", 0) / r.at_goodput["duration_s"] if r.at_goodput else 0
    return r.goodput_rps / power if power > 0 else 0.0  # requests per joule


def reason(r: GoodputResult) -> str:
    if r.goodput_rps <= 0:
        return "meets the SLOs at no tested rate"
    c = r.point() or None
    found = r.goodput_rps if math.isnan(r.search_rps) else r.search_rps
    why = f"{r.binding} binds above {found:.2f} req/s"
    if c:
        why += (f"; at it TTFT p90 {c['ttft_p90_ms']:.0f} ms, TPOT p90 {c['tpot_p90_ms']:.1f} ms, "
                f"{c['tokens_per_s_per_gpu']:,.0f} tok/s/GPU")
    return why


def plan(model: str, hardware: str, gpus: int, slo: Slo, work: WorkloadSpec, *, target: float = 0.9,
         objective: str = "goodput-per-gpu", opts: PlanOptions | None = None, refine: int = 5,
         backend: str = "local", workers: int | None = None, ray_address: str | None = None,
         progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> PlanResult:
    """Rank every strategy the budget allows by `objective` under the SLOs (attainment >= target)."""
    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise PhasewiseError(f"--objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if not 0 < target <= 1:
        raise PhasewiseError(f"--attainment must be in (0, 1] (got {target})")
    if not (math.isfinite(slo.ttft_ms) or math.isfinite(slo.tbt_ms)):
        raise PhasewiseError("plan needs at least one SLO: --slo-ttft-ms and/or --slo-tbt-ms")
    opts = opts or PlanOptions()
    if max(min(opts.tp_options), 1) > gpus:
        raise PhasewiseError(f"every --tp-options value needs more GPUs than --gpus {gpus}")
    strategies, pruned = enumerate_strategies(model, hardware, gpus, opts)
    if objective == "cost":  # a one-line error now if a chip has no parts to cost
        for s in strategies:
            cluster_hardware(s.deployment)
    caps = [capacity_estimate(s, work) for s in strategies]
    best = max(caps)
    kept = []
    for s, c in zip(strategies, caps):
        if c >= PRESCREEN * best:
            kept.append(s)
        else:
            pruned.append(f"{s.name}: analytic capacity {c:.1f} req/s is under {PRESCREEN:.0%} of the best {best:.1f}")
    strategies = kept

    def tick(stage: str, total: int) -> Callable[[int], None] | None:
        return progress(stage, 0, total) if progress else None

    screen = run_all(evaluate, [(s, work, slo, target, SCREEN["steps"], SCREEN["window_s"],
                                 SCREEN["min_requests"]) for s in strategies],
                     backend, workers, ray_address, tick("screening", len(strategies)))
    screen.sort(key=lambda r: objective_value(objective, r, hardware), reverse=True)
    top = [r.strategy for r in screen[:refine]]
    refined = run_all(evaluate, [(s, work, slo, target, REFINE["steps"], REFINE["window_s"],
                                  REFINE["min_requests"]) for s in top],
                      backend, workers, ray_address, tick("refining", len(top)))
    refined.sort(key=lambda r: (objective_value(objective, r, hardware), r.goodput_rps), reverse=True)
    checks = [(r.strategy.deployment, r.goodput_rps, work, slo, target) for r in refined]
    for r, (rate, att) in zip(refined, run_all(verify, checks, backend, workers, ray_address,
                                               tick("verifying", len(checks)))):
        r.search_rps, r.goodput_rps, r.verified_attainment = r.goodput_rps, rate, att
    refined.sort(key=lambda r: (objective_value(objective, r, hardware), r.goodput_rps), reverse=True)
    return PlanResult(model, hardware, gpus, slo, target, objective, work.name, refined, screen, pruned,
                      time.perf_counter() - t0)


def verify(deployment: dict, rate: float, work: WorkloadSpec, slo: Slo, target: float) -> tuple[float, float]:
    """The whole deployment, behind its router, on fresh random numbers: the highest of rate x
    (1, 0.95, ..., 0.8) at which attainment >= target - VERIFY_TOLERANCE with a stable backlog, and
    the attainment there; (0, attainment at 0.8 x rate) if none holds."""
    dep = build_deployment(deployment)
    fresh = replace(work, seed=work.seed + 1)
    att = 0.0
    if rate <= 0:
        return 0.0, math.nan
    for factor in (1.0, 0.95, 0.9, 0.85, 0.8):
        r = rate * factor
        res = simulate(dep, fresh.at_rate(r, int(max(REFINE["min_requests"], r * VERIFY_WINDOW_S))), slo)
        att = float(res.summary()["slo"]["attainment"])
        if att >= target - VERIFY_TOLERANCE and fresh.steady(res):
            return r, att
    return 0.0, att
