"""A plan's result (PlanResult): the ranked and screened strategies, the table's rows, the budget in words, the
closest miss of a plan no strategy meets, and the Pareto front; with each row's reason and verified point."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from phasewise.errors import name_list
from phasewise.plan.chip_budgets import strategy_chip
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput_results import GoodputResult
from phasewise.plan.objectives import OBJECTIVE_UNITS, objective_value
from phasewise.plan.run_summaries import curve_point, goodput_tokens_per_s_per_gpu
from phasewise.plan.verification import VERIFY_TOLERANCE, p90_excess
from phasewise.plan.windows import VERIFY_FACTORS
from phasewise.sim import Slo
from phasewise.specs.hardware import chip_identity


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
    memory_fraction: float | None = None  # --memory-fraction: every strategy's (None: each engine's own)

    def memory_words(self) -> str:
        """'; --memory-fraction F' where the plan set every strategy's device memory fraction, else ''."""
        return "" if self.memory_fraction is None else f"; --memory-fraction {self.memory_fraction:g}"

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
        (run_summaries.py goodput_tokens_per_s_per_gpu: goodput x that run's tokens per request); NaN where no rate
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
                    f"unit, not held on the whole deployment at {VERIFY_FACTORS[-1] * 100:.0f}-100 % of that rate "
                    f"({why})")
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


def verified_point(r: GoodputResult) -> dict[str, Any]:
    """A ranked strategy's curve point at its goodput from its verification run (the figures its row reads: the same
    summary, the whole deployment's rate and GPUs), `run` "verification". A run that verified held whole with a stable
    queue (verify)."""
    v = r.verified
    summary = dict(v.summary, sim={"stopped_s": math.nan}, stable=True)
    return dict(curve_point(summary, r.goodput_rps, v.units / v.units_simulated, r.gpus), run="verification")


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
