"""How long a goodput search or a verification offers its load for: windows of arrivals long enough for an overload
at the search's resolution to show (the queue beyond the seats growing out of its own random walk, stability.stable)
and for the seats to fill many times over, and no longer than that needs (a small model's unit at thousands of
requests a second holds what it needs in seconds)."""

from __future__ import annotations

import math
from typing import Any

from phasewise.plan.goodput import GoodputResult, WorkloadSpec, rate_share, seats
from phasewise.plan.strategies import Strategy
from phasewise.sim import Slo
from phasewise.sim.deployment import Deployment, build_deployment

VERIFY_WINDOW_S, VERIFY_MAX_WINDOW_S = 60.0, 600.0  # verification's shortest and longest windows of arrivals
# their windows in times the seats take to fill (verify_window_s): the first seed's long enough for a slow overload's
# queue to grow (a 1-GPU b256 deployment 5 % above its capacity: 12 fills, ~110 s, fail where 60 s hold), the
# others' for a lucky draw of lengths to show in the attainment
VERIFY_FILLS, VERIFY_SEED_FILLS = 12.0, 4.0
SCREEN = dict(steps=3, window_s=20.0, min_requests=150)
REFINE = dict(steps=6, window_s=60.0, min_requests=500)
VERIFY_STEP = 0.05  # verification's step down from the search's rate, a share of that rate
# the shares of the search's rate verification tries, highest first, until one holds (verification.verify): 1, 0.95,
# ..., 0.05. No floor near the search's answer, which a looser SLO raises, and which overshoots what every fresh seed
# holds by more there: 2 x H100 TP1 on 400 Mooncake requests, vLLM's default b128, searched 1.02 req/s and verified
# 0.87 (85 %) at TTFT <= 2 s / TPOT <= 50 ms; at 3 s / 100 ms it searched 1.61, and a floor at 0.8 of it, 1.29, held
# nothing (a fresh seed 0.878 < 0.88 there), so the plan found no strategy though 0.87, 1.0, 1.1 and 1.25 req/s
# each held; now 1.12 (70 %)
VERIFY_FACTORS = tuple(round(1.0 - k * VERIFY_STEP, 2) for k in range(round(1.0 / VERIFY_STEP)))
# a window need hold no more requests than it takes (window_requests) for an overload at its resolution (a search's
# last bisection step, verification's step) to show: the queue beyond the seats grows by that share of the requests
# that arrive (stability.stable reads it), and must stand out of the queue's own random walk (sqrt(n)) by this many
# standard deviations: (sigmas / resolution)^2 requests. Measured: a 0.6B model's 1-GPU b256 unit of 128/32-token
# requests, whose queue grows past ~1,355 req/s, read as growing at 1,307 req/s on 2 of 6 seeds over 3,000
# requests, 1 of 6 over 10,000, none over 25,000 (~(8 / 5 %)^2); at 1,420 on all 6 at each
WINDOW_SIGMAS = 8.0


def fill_s(dep: Deployment, work: WorkloadSpec, slo: Slo, rate_rps: float) -> float:
    """The time `dep`'s seats take to fill at `rate_rps` (the simulated deployment's): seats / rate, the E2E a request
    takes once they are full (Little's law; capacity.seats), no longer than the E2E a request meeting the SLOs takes,
    TTFT + output x TPOT, where they are finite (a load that never fills the seats settles within it)."""
    fill = seats(dep, work) / rate_rps
    slo_e2e_s = (slo.ttft_ms + work.mean_output * slo.tpot_ms) / 1e3
    return min(fill, slo_e2e_s) if math.isfinite(slo_e2e_s) else fill


def window_requests(resolution: float) -> float:
    """The requests a window needs for an overload of `resolution` (a share of the rate) to show out of the queue's
    random walk: (WINDOW_SIGMAS / resolution)^2."""
    return (WINDOW_SIGMAS / resolution) ** 2


def verify_window_s(dep: Deployment, work: WorkloadSpec, slo: Slo, rate_rps: float, fills: float) -> float:
    """How long verification offers `rate_rps` (the simulated deployment's) for: `fills` times the time its
    seats take to fill (fill_s), between VERIFY_WINDOW_S and VERIFY_MAX_WINDOW_S. An overload a little above the
    capacity shows only once the seats are full and the queue beyond them has grown for a while: a 1-GPU b256
    deployment of Llama-3.1-8B at 28 req/s fills its seats in ~9 s and holds a 60 s window at 100 % attainment,
    but not 300 s (0.22). The floor is shorter where fewer seconds hold both VERIFY_FILLS fills and the requests an
    overload of VERIFY_STEP takes to show (window_requests): a 0.6B model's 1-GPU b256 unit at 1,300 req/s of
    128/32-token requests holds them in 20 s, where 60 s held 78,000 requests a seed."""
    fill = fill_s(dep, work, slo, rate_rps)
    floor = min(VERIFY_WINDOW_S, max(VERIFY_FILLS * fill, window_requests(VERIFY_STEP) / rate_rps))
    return min(max(floor, fills * fill), VERIFY_MAX_WINDOW_S)


def search_window_s(strategy: Strategy, work: WorkloadSpec, slo: Slo, settings: dict[str, Any],
                    rate_rps: float) -> float:
    """A goodput search's window of arrivals (goodput.evaluate's `window_s`) for `strategy` at `settings` (SCREEN or
    REFINE): their window_s, or, where fewer seconds do, what one unit needs at its share of `rate_rps` (the whole
    deployment's rate the search is expected to answer near): VERIFY_FILLS fills of its seats (fill_s) and the
    requests an overload of the search's resolution takes to show (window_requests; its last bisection step, 1 /
    2^steps of the bracket's low end). The window is one length at every rate the search probes, so its probes
    still share their random numbers (goodput.WorkloadSpec.at_rate). The refinement's resolution (1/64) asks
    262,144 requests, more than 60 s hold below 4,369 req/s a unit; the screening's (1/8), 4,096 requests, fewer
    than 20 s hold above 205 req/s. `window_s` itself where `rate_rps` is not a positive rate."""
    window_s = settings["window_s"]
    if not (rate_rps > 0 and math.isfinite(rate_rps)):
        return window_s
    unit = build_deployment(strategy.slice(1), f"strategy '{strategy.name}'")
    unit_rate = rate_share(rate_rps, 1, strategy.units)
    needed_s = max(VERIFY_FILLS * fill_s(unit, work, slo, unit_rate),
                   window_requests(0.5 ** settings["steps"]) / unit_rate)
    return min(window_s, needed_s)


def search_task(settings: dict[str, Any], strategy: Strategy, work: WorkloadSpec, slo: Slo, target: float,
                anchor_rps: float, known: dict | None = None) -> tuple:
    """goodput.evaluate's arguments for a search at `settings` (SCREEN or REFINE) of `strategy`: their steps and
    request floor, their window no longer than search_window_s at `anchor_rps` needs; `known`: an earlier search's
    probes (evaluate's)."""
    window_s = search_window_s(strategy, work, slo, settings, anchor_rps)
    return (strategy, work, slo, target, settings["steps"], window_s, settings["min_requests"], known)


def refine_anchor_rps(r: GoodputResult) -> float:
    """The rate a refinement's window is sized at (search_task): the screening's answer, or its analytic capacity
    estimate where the screening held no rate."""
    return r.goodput_rps if r.goodput_rps > 0 else r.capacity_estimate_rps
