"""A goodput search's result (GoodputResult) and the simulation that verified its goodput on the whole deployment
or a slice of it (VerifiedRun)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from phasewise.plan.strategies import Strategy
from phasewise.plan.unit_traffic import rate_share, slice_traffic
from phasewise.sim.deployment import build_deployment
from phasewise.workload import Workload

if TYPE_CHECKING:
    from phasewise.plan.goodput import WorkloadSpec


@dataclass(slots=True)
class VerifiedRun:
    """The simulation that verified a goodput (verification.verify): the whole deployment, or a slice of its units at
    their share of the rate (`units_simulated` of `units`; `deployment`: the fields simulated). `rate_rps` is the
    whole deployment's rate, `simulated_rate_rps` the simulated one's; its summary and every request's TTFT and TPOT,
    so the table's percentiles and the report's CDFs are one run. `workload(work)` rebuilds its workload exactly."""

    rate_rps: float
    requests: int
    seed: int
    summary: dict[str, Any]
    ttft_ms: np.ndarray
    tpot_ms: np.ndarray
    units_simulated: int
    units: int
    deployment: dict[str, Any]
    # the verification step above this rate that failed (binds(): the SLO or the backlog), and its rate; None where
    # no step above failed (every climb held, or none was tried: the search's bracket then says)
    binding: str | None = None
    binding_rps: float = math.nan
    seeds: int = 1  # the fresh seeds the rate held on, this run the worst (verification.verify; fresh_draws)
    looped_requests: int = 0  # a replayed trace: the requests it was looped to, to fill the window, holding too

    def workload(self, work: WorkloadSpec) -> Workload:
        return slice_traffic(replace(work, seed=self.seed), self.rate_rps, self.requests, self.units_simulated,
                             self.units, build_deployment(self.deployment).router)

    @property
    def simulated_rate_rps(self) -> float:
        return rate_share(self.rate_rps, self.units_simulated, self.units)

    @property
    def sliced(self) -> bool:
        return self.units_simulated < self.units


@dataclass(slots=True)
class GoodputResult:
    strategy: Strategy
    goodput_rps: float  # highest rate meeting the attainment target (0 if none)
    capacity_estimate_rps: float
    binding: str  # what fails first above the goodput: prefill (TTFT), decode (TPOT), decode (every TBT) or capacity
    at_goodput: dict[str, Any]  # summary of the simulation at the goodput rate
    curve: list[dict[str, float]] = field(default_factory=list)  # every simulated rate
    simulations: int = 0
    search_rps: float = math.nan  # the unit search's answer, before verification on the whole deployment
    verified_attainment: float = math.nan
    verified: VerifiedRun | None = None  # the run at goodput_rps that verified it (None: not verified, or failed)
    search_units: int = 1  # units the search's simulations held (all of them for a workload with prefix structure)
    # the rate `binding` failed at (the whole deployment's): the search's lowest failing rate, or, once verified, the
    # failing verification step above the goodput (binding_by says which)
    binding_rps: float = math.nan
    binding_by: str = "search"
    # every simulated rate's summary, keyed by (rate, the workload's fingerprint): a later search of the same strategy
    # under the same SLOs reads a probe it repeats from here (evaluate's `known`)
    probes: dict[tuple[float, str], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def gpus(self) -> int:
        return self.strategy.gpus

    def power_w(self) -> float:
        """The whole deployment's mean power (simulated GPU energy / time) at its goodput: the verification run's,
        scaled from its slice to every unit; before verification, the search's run at its answer times its units."""
        if self.verified is not None:
            summary, scale = self.verified.summary, self.verified.units / self.verified.units_simulated
        else:
            summary, scale = self.at_goodput, self.strategy.units / self.search_units
        if not summary or summary.get("duration_s", 0) <= 0:
            return math.nan
        return summary["energy_j"] / summary["duration_s"] * scale

    def point(self) -> dict[str, float]:
        """The simulated point of the search's answer (latencies, tokens/s at the goodput found)."""
        rate = self.goodput_rps if math.isnan(self.search_rps) else self.search_rps
        return next((p for p in self.curve if p["rate_rps"] == rate), {})
