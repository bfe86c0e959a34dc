"""`plan()`: enumerate strategies, screen every one's goodput cheaply, refine the best (and those the screening
cannot order against the last of them: screen_cut.py) with larger simulations, verify each answer on the whole
deployment (a slice of its units for a large fleet) with fresh random numbers (stepping down 5 % at a time until it
holds), rank by the verified goodput."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError, name_list
from phasewise.plan.backends import run_all
from phasewise.plan.chip_budgets import strategy_chip
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput import (
    GoodputResult,
    VerifiedRun,
    WorkloadSpec,
    binds,
    capacity_estimate,
    curve_point,
    evaluate,
    fresh_draws,
    goodput_tokens_per_s_per_gpu,
    rate_share,
    slice_traffic,
    slice_units,
    trace_requests,
)
from phasewise.plan.screen_cut import refined_at_cut
from phasewise.plan.strategies import PlanOptions, Strategy, enumerate_strategies
from phasewise.plan.strategy_policies import with_planned_slos
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
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.sim.flag_checks import is_integer
from phasewise.sim.metrics import miss_allowance
from phasewise.specs import load_hardware
from phasewise.specs.hardware import chip_identity, hardware_list, parts_chips

# goodput per GPU, per dollar of GPU time (req/$), per joule of simulated power (req/J); cost / power: goodput per
# $1,000 of cluster hardware (chips from parts) / per kW of cluster TDP (plan/cluster_cost.py)
OBJECTIVES = ("goodput-per-gpu", "goodput-per-dollar", "goodput-per-watt", "cost", "power")
# the objective's unit, for table headers and JSON (objective_value below)
OBJECTIVE_UNITS = {"goodput-per-gpu": "req/s/GPU", "goodput-per-dollar": "req/$", "goodput-per-watt": "req/J",
                   "cost": "req/s per $1k", "power": "req/s per kW"}
# the unit of objective_per's quotient (the analytic pre-screen's figures): goodput-per-watt's divides by TDP there
PRESCREEN_UNITS = dict(OBJECTIVE_UNITS, **{"goodput-per-watt": "req/s per kW of TDP"})
VERIFY_TOLERANCE = 0.02  # sampling noise allowed when re-simulating at the goodput rate
VERIFY_SEEDS = 3  # fresh seeds each verified rate must hold on, every one
VERIFY_CLIMB, VERIFY_CLIMB_STEPS = 1.1, 6  # verification's steps above the search's rate (up to 1.77 x)
VERIFY_MORE_ROUNDS = 2  # rounds of further screened strategies refined and verified where too few of the first held
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
    chip_gpus: tuple[tuple[str, int], ...] = ()  # --chip-gpus: some chips' own budgets
    phase_chips: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # --prefill-hardware, --decode-hardware
    beyond_context_share: float = 0.0  # the workload's requests past the model's context, refused (WorkloadSpec)
    trace: str | None = None  # the trace replayed with its own arrivals (WorkloadSpec.trace): the export's replay line
    images: bool = False  # the requests carry images (WorkloadSpec.images): simulate's flags for them not kept here
    replay_lengths: tuple[int, int] | None = None  # WorkloadSpec.replay_lengths: the export's Poisson replay line

    def budget(self) -> str:
        """The GPU budget in words: '8 x h100-sxm', or '8 GPUs of h100-sxm or b200' for a plan across chips; with
        --chip-gpus, each chip's ('16 x h100-sxm or 8 x b200' across chips; '16 x h100-sxm, 8 x b200' when
        disaggregated groups combine them)."""
        *others, last = name_list("--hardware", self.hardware)
        if self.chip_gpus:
            given = {chip_identity(c) for c, _ in self.chip_gpus}
            rest = [c for c in (*others, last) if chip_identity(c) not in given]
            parts = [f"{n} x {c}" for c, n in self.chip_gpus] + [f"{self.gpus} x {c}" for c in rest]
            return " or ".join(parts) if others else ", ".join(parts)  # several chips: each alone; else together
        plural = "s" if self.gpus != 1 else ""
        if others:
            return f"{self.gpus} GPU{plural} of {', '.join(others)} or {last}"
        prefill, decode = self.phase_chips
        if prefill or decode:  # disaggregated groups on other chips: say which phase may run on which
            phases = [f"{role} on {' or '.join(chips or (last,))}" for role, chips in (("prefill", prefill),
                                                                                       ("decode", decode))]
            return f"{self.gpus} GPU{plural} ({last}; disaggregated: {', '.join(phases)})"
        return f"{self.gpus} x {last}"

    def best_per_chip(self) -> list[tuple[str, int, GoodputResult]]:
        """A plan across chips: (chip, rank, result) of each chip's best ranked strategy that meets the SLOs, in
        ranking order (empty for a plan on one chip)."""
        seen: dict[str, tuple[str, int, GoodputResult]] = {}
        for rank, r in enumerate(self.ranked, start=1):
            chip = strategy_chip(r.strategy)
            if chip and chip not in seen and r.goodput_rps > 0:
                seen[chip] = (chip, rank, r)
        return list(seen.values())

    def score(self, r: GoodputResult) -> float:
        return objective_value(self.objective, r)

    def rows(self) -> list[dict[str, Any]]:
        """One row per ranked strategy. Latencies are the verification run's (the whole deployment, or
        `verified_units` of its `units`, at the goodput shown); tokens/s per GPU the goodput's output tokens
        (goodput.py goodput_tokens_per_s_per_gpu: goodput x that run's tokens per request); NaN where no rate
        verified. `deployment`: its whole Deployment fields, as `simulate --deployment` / `serve --deployment`
        read them. `prefix_hit_rate`: the prompt tokens the prefix caches served in that run (a workload with prefix
        structure, engines caching prefixes; else NaN)."""
        out = []
        for rank, r in enumerate(self.ranked, start=1):
            v = r.verified.summary if r.verified is not None else {}
            out.append({
                "rank": rank, "strategy": r.strategy.name, "kind": r.strategy.kind, "gpus": r.gpus,
                "goodput_rps": r.goodput_rps, "goodput_rps_per_gpu": r.goodput_rps / r.gpus,
                "objective": self.score(r), "objective_unit": OBJECTIVE_UNITS[self.objective],
                "ttft_p90_ms": v.get("ttft_ms", {}).get("p90", math.nan),
                "tpot_p90_ms": v.get("tpot_ms", {}).get("p90", math.nan),
                "tbt_p99_ms": v.get("tbt_ms", {}).get("p99", math.nan),
                # the goodput's output tokens (goodput_rps x the verification run's tokens per request)
                "tokens_per_s_per_gpu": goodput_tokens_per_s_per_gpu(r.goodput_rps, v, r.gpus),
                "prefix_hit_rate": (v.get("prefix_cache") or {}).get("hit_rate_tokens", math.nan),
                "search_rps": r.search_rps,
                "verified_attainment": r.verified_attainment,
                # the fresh seeds it held on, the row the worst's run: 1 where they would draw alike (a replayed trace
                # simulated whole: verify); NaN where no rate verified
                "verified_seeds": r.verified.seeds if r.verified is not None else math.nan,
                # units the verification run simulated (a slice of the fleet past goodput.SLICE_INSTANCES instances)
                "verified_units": r.verified.units_simulated if r.verified is not None else math.nan,
                "units": r.strategy.units,
                "binding": r.binding, "binding_rps": r.binding_rps, "reason": reason(r),
                "deployment": r.strategy.deployment,
            })
            cluster = cluster_hardware(r.strategy.deployment, with_cost=self.objective == "cost")
            out[-1]["price_per_hour_usd"] = cluster.price_per_hour_usd  # every chip at its catalog $/GPU-hour
            if self.objective in ("cost", "power"):
                out[-1].update(cluster_cost_usd=cluster.cost_usd if self.objective == "cost" else math.nan,
                               cluster_tdp_w=cluster.tdp_w, chips=cluster.chips)
        return out

    @property
    def feasible(self) -> bool:
        """Whether any strategy meets the SLOs at some rate (verified on the whole deployment)."""
        return any(r.goodput_rps > 0 for r in self.ranked)

    def closest(self) -> dict[str, Any]:
        """When no strategy meets the SLOs: the simulated point with the highest attainment (on a tie, the one
        whose worse p90 is nearest its SLO), its strategy, and the SLO that binds there (the one fewer meet)."""
        def key(p: dict) -> tuple[float, float]:
            return p["attainment"], -p90_excess(self.slo, p["ttft_p90_ms"], p["tpot_p90_ms"])

        pts = [(key(p), name, p) for name, p in self.whole_points()]
        if not pts:
            return {}
        _, name, p = max(pts, key=lambda t: t[0])
        att = p["attainment"]
        ttft, tpot = p["ttft_attainment"], p["tpot_attainment"]
        binds = min((ttft, f"TTFT <= {self.slo.ttft_ms:g} ms"), (tpot, f"TPOT <= {self.slo.tpot_ms:g} ms"),
                    (p.get("tbt_attainment", 1.0), f"every TBT <= {self.slo.max_tbt_ms:g} ms"),
                    key=lambda pair: pair[0])[1]
        return {"strategy": name, "attainment": att, "rate_rps": p["rate_rps"], "binds": binds,
                "ttft_attainment": ttft, "tpot_attainment": tpot, "ttft_p90_ms": p["ttft_p90_ms"],
                "tpot_p90_ms": p["tpot_p90_ms"]}

    def infeasible_line(self) -> str:
        """One line for a plan no strategy meets (no table of zeros)."""
        c = self.closest()
        line = (f"no strategy meets {self.slo.describe()} for "
                f"{self.target:.0%} of requests on {self.budget()}")
        if not c:
            return line
        if c["attainment"] >= self.target:  # the search met them on one unit; the whole deployment did not
            searched = next((r for r in self.ranked if r.strategy.name == c["strategy"]
                             and r.search_rps > 0), None)
            if searched is None:  # a screened strategy verification never took
                return (f"{line}; closest: {c['strategy']}, {c['attainment']:.0%} on one unit at "
                        f"{c['rate_rps']:.3g} req/s (not refined)")
            why = (f"its queue grew at each rate (goodput.stable) though {searched.verified_attainment:.0%} met them"
                   if searched.verified_attainment >= self.target - VERIFY_TOLERANCE
                   else f"{searched.verified_attainment:.0%} met them at the lowest")
            return (f"{line}; closest: {c['strategy']}, whose search held {searched.search_rps:.3g} req/s on one "
                    f"unit, not held on the whole deployment at 80-100 % of that rate ({why})")
        beyond = self.beyond_context_share
        if beyond and 1.0 - beyond < self.target:  # the refused requests alone put the target out of reach
            return (f"{line}: {beyond:.1%} of the workload's requests pass the model's context and are refused, as "
                    f"the engine refuses them, so at most {1.0 - beyond:.1%} can meet them (a lower --attainment, "
                    f"or shorter requests); closest: {c['strategy']}, {c['attainment']:.0%} at "
                    f"{c['rate_rps']:.3g} req/s")
        return (f"{line}; closest: {c['strategy']}, {c['attainment']:.0%} at {c['rate_rps']:.3g} req/s "
                f"({c['binds']} binds: TTFT p90 {c['ttft_p90_ms']:.0f} ms, TPOT p90 {c['tpot_p90_ms']:.1f} ms)")

    def whole_points(self) -> list[tuple[str, dict[str, float]]]:
        """(strategy name, curve point) of every rate the searches simulated whole: a run stopped once its target was
        out of reach has figures over the requests finished by then only. A refined strategy's points are its
        refined search's (longer runs, more requests), not its screening's, which they supersede: the same strategy
        at the same rate is one point. Both fidelities, every strategy simulated: closest() reads them (an infeasible
        plan's nearest miss); the Pareto front reads front_points(), the runs of the ranking's fidelity only."""
        refined = [r.strategy for r in self.ranked]
        searches = [r for r in self.screened if r.strategy not in refined] + self.ranked
        return [(r.strategy.name, p) for r in searches for p in r.curve if not p.get("stopped")]

    def front_points(self) -> list[tuple[str, dict[str, Any]]]:
        """(strategy name, point) of the runs the Pareto front is built from: one fidelity, the one the ranking reads.
        Each ranked strategy's verification run at its goodput (the row's figures: the same rate, tokens/s per GPU and
        latencies) and its refined search's runs of every request at lower rates; not its search's runs at or above
        its goodput (the verification's run stands for that rate, and it or the search refused those above), nor any
        screening-only run (shorter windows, fewer requests: a strategy screened only out-ran the verified winner on
        the front, 167.60 req/s at 5,695 tok/s/GPU against its 156.57 and 5,165). A strategy whose verification held
        no rate adds none. `run` says which: "verification" or
        "refined search". A result with nothing ranked (no strategy refined): the screening's runs, the only ones."""
        if not self.ranked:
            return [(r.strategy.name, dict(p, run="screening")) for r in self.screened for p in r.curve
                    if not p.get("stopped")]
        out = []
        for r in self.ranked:
            out += [(r.strategy.name, dict(p, run="refined search")) for p in r.curve
                    if not p.get("stopped") and p["rate_rps"] < r.goodput_rps]
            if r.verified is not None and r.goodput_rps > 0:
                out.append((r.strategy.name, verified_point(r)))
        return out

    def pareto(self) -> list[dict[str, Any]]:
        """Non-dominated (tokens/s per GPU, tokens/s per user) points over front_points() whose queue stayed bounded
        (a growing backlog sustains neither figure); tokens/s per GPU is the rate's output tokens, as the ranked
        table's (goodput_tokens_per_s_per_gpu): a ranked strategy's point at its goodput is its row's figures."""
        pts = [dict(p, strategy=name) for name, p in self.front_points()
               if p["stable"] and math.isfinite(p["tokens_per_s_per_user"])]
        pts.sort(key=lambda p: (-p["tokens_per_s_per_gpu"], -p["tokens_per_s_per_user"]))
        # figures equal within a relative 1e-9 are one figure: the same rate summed in another order differs in its
        # last bits (4367.217051467987 and 4367.2170514679865 tokens/s per GPU), which let a point beside a better
        # one of "higher" throughput stay on the front
        front: list[dict[str, Any]] = []
        for p in pts:
            if front and _same(p["tokens_per_s_per_gpu"], front[-1]["tokens_per_s_per_gpu"]):
                if p["tokens_per_s_per_user"] > front[-1]["tokens_per_s_per_user"] and not _same(
                        p["tokens_per_s_per_user"], front[-1]["tokens_per_s_per_user"]):
                    front.pop()  # the same throughput at a higher per-user rate: the one before is dominated
                else:
                    continue
            if not front or (p["tokens_per_s_per_user"] > front[-1]["tokens_per_s_per_user"]
                             and not _same(p["tokens_per_s_per_user"], front[-1]["tokens_per_s_per_user"])):
                front.append(p)
        return front


def _same(a: float, b: float) -> bool:
    """Two figures one within a relative 1e-9 (PlanResult.pareto: a sum's last bits)."""
    return math.isclose(a, b, rel_tol=1e-9)


def p90_excess(slo: Slo, ttft_p90_ms: float, tpot_p90_ms: float) -> float:
    """How far a run's p90 latencies reach into their SLOs: the larger of TTFT p90 / its SLO and TPOT p90 / its SLO
    (an SLO not set counts 0, a p90 missing under one set infinite). It orders runs of one attainment: the closest
    miss (PlanResult.closest, the least) and, among seeds that hold alike, the worst (verify, the most)."""
    ratios = [p / limit if math.isfinite(p) else math.inf
              for p, limit in ((ttft_p90_ms, slo.ttft_ms), (tpot_p90_ms, slo.tpot_ms)) if math.isfinite(limit)]
    return max(ratios, default=0.0)


def verified_point(r: GoodputResult) -> dict[str, Any]:
    """A ranked strategy's curve point at its goodput from its verification run (the figures its row reads: the same
    summary, the whole deployment's rate and GPUs), `run` "verification". A run that verified held whole with a stable
    queue (verify)."""
    v = r.verified
    summary = dict(v.summary, sim={"stopped_s": math.nan}, stable=True)
    return dict(curve_point(summary, r.goodput_rps, v.units / v.units_simulated, r.gpus), run="verification")


def objective_per(objective: str, strategy: Strategy) -> float:
    """What `objective` divides a strategy's goodput (req/s) by, known before any simulation: its GPUs, its GPU time's
    price in $/s, $1,000 of its cluster hardware, kW of its cluster TDP (goodput-per-watt too: objective_value
    then divides by the simulated power, which the TDP bounds)."""
    if objective == "goodput-per-gpu":
        return strategy.gpus
    cluster = cluster_hardware(strategy.deployment, with_cost=objective == "cost")
    if objective == "cost":
        return cluster.cost_usd / 1e3
    if objective == "goodput-per-dollar":  # every group's chips at their price
        return cluster.price_per_hour_usd / 3600
    return cluster.tdp_w / 1e3


def objective_value(objective: str, r: GoodputResult) -> float:
    """The strategy's score: goodput per GPU, per dollar of GPU time (req/$), per $1,000 of hardware, per kW of
    TDP, or per watt of the simulated power (req/J)."""
    if objective == "goodput-per-watt":
        power = r.power_w()
        return r.goodput_rps / power if power > 0 else 0.0  # requests per joule of the whole deployment
    per = objective_per(objective, r.strategy)
    return r.goodput_rps / per if per > 0 else math.nan


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


def reason(r: GoodputResult) -> str:
    """Why the goodput is what it is: what failed at the lowest failing rate tried above it, and that rate (the
    whole deployment's): the verification step above the goodput, or, where none failed there (it held at the
    search's answer, or at every climb), the search's lowest failing rate (latencies are the verification run's,
    in the row's own columns)."""
    if r.goodput_rps <= 0:
        return "meets the SLOs at no tested rate"
    if math.isnan(r.binding_rps) or r.binding_rps <= r.goodput_rps:
        return f"held at every rate tried (up to {r.goodput_rps:.2f} req/s)"
    by = ("verification, the whole deployment" if r.binding_by == "verification" and not r.verified.sliced else
          "verification, a slice of the deployment" if r.binding_by == "verification" else
          "the search, on one unit" if r.search_units == 1 else f"the search, on {r.search_units} units")
    return f"{r.binding} binds at {r.binding_rps:.2f} req/s ({by})"


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
                      work.beyond_context_share, work.trace, work.images is not None, work.replay_lengths)


def take_verification(r: GoodputResult, rate: float, attainment: float, run) -> None:
    """A refined strategy takes its verification (verify's rate, attainment and run): the search's answer kept as
    search_rps, the goodput the verified rate, and the binding SLO the verification's where a step above failed."""
    r.search_rps, r.goodput_rps, r.verified_attainment, r.verified = r.goodput_rps, rate, attainment, run
    if run is not None and run.binding is not None:  # the verification step above the goodput that failed
        r.binding, r.binding_rps, r.binding_by = run.binding, run.binding_rps, "verification"


def require_prices(objective: str, hardware: str, opts: PlanOptions) -> None:
    """--objective cost prices every chip from its parts, goodput-per-dollar by its rental price, goodput-per-watt
    and power by its TDP: a one-line error naming the flag that brought in a chip without them (collocated
    strategies run on --hardware even when --prefill-hardware / --decode-hardware name the disaggregated ones'
    chips)."""
    for flag, chips in (("--hardware", hardware_list("--hardware", hardware)),
                        ("--prefill-hardware", list(opts.prefill_hardware)),
                        ("--decode-hardware", list(opts.decode_hardware))):
        for chip in chips:
            hw = load_hardware(chip)
            default = " (h100-sxm is --hardware's default)" if flag == "--hardware" and chip == "h100-sxm" else ""
            if objective == "cost" and hw.parts is None:
                raise PhasewiseError(
                    f"--objective cost prices chips from their parts, and {flag} names '{chip}', which has none"
                    f"{default}: give {flag} chips built from parts (catalog: {', '.join(parts_chips())}, or your "
                    "own YAML with `parts:`), or rank catalog chips by --objective goodput-per-dollar or power")
            if objective in ("goodput-per-watt", "power") and not hw.tdp_w > 0:
                raise PhasewiseError(
                    f"--objective {objective} weighs strategies by their chips' power, and {flag} names '{chip}', "
                    f"whose tdp_w is {hw.tdp_w:g}: give it a TDP in a hardware YAML (W > 0), or rank by another "
                    "--objective")
            if objective == "goodput-per-dollar" and not hw.price_per_hour_usd > 0:
                raise PhasewiseError(
                    f"--objective goodput-per-dollar divides by the chips' rental prices, and {flag} names '{chip}', "
                    "which has none (price_per_hour_usd 0): give it one in a hardware YAML, or rank by "
                    "--objective " + " or ".join(["goodput-per-gpu"] + (["power"] if hw.tdp_w > 0 else [])
                                                 + (["cost"] if hw.parts is not None else [])))


def verify(strategy: Strategy, rate: float, work: WorkloadSpec, slo: Slo,
           target: float, search_units: int = 1) -> tuple[float, float, VerifiedRun | None]:
    """The deployment (or its slice, slice_units), behind its router, on VERIFY_SEEDS fresh seeds (the first over
    VERIFY_FILLS times the seats' fill time, the others over VERIFY_SEED_FILLS: verify_window_s): the highest of
    rate x (1, 0.95, ..., 0.8) at which every seed's attainment >= target - VERIFY_TOLERANCE with a stable queue
    (goodput.stable), the worst seed's attainment there and its run (the table's latencies and the report's CDFs
    come from it; among seeds of one attainment the worst is the one whose p90s reach furthest into the SLOs,
    p90_excess); (0, the attainment of the last run at 0.8 x rate, None) if none holds. A replayed trace
    (--arrivals trace) shorter than the window is looped to fill it, and must hold both so and once, as `simulate
    --trace --rate` replays it (trace_requests), the run kept the latter; simulated whole it is one seed, every seed
    drawing it alike (fresh_draws).
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
    for factor in (round(1.0 - k * VERIFY_STEP, 2) for k in range(5)):  # 1, 0.95, ..., 0.8
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
