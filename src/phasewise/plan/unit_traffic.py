"""The traffic some of a deployment's identical units receive when the whole receives a workload: their share of
the rate (rate_share), the requests the router would send them (slice_traffic), whether another seed draws other
traffic for them (fresh_draws), and a replayed trace's requests once (trace_requests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasewise.sim.routers import CACHE_AWARE
from phasewise.workload import Workload
from phasewise.workload.traffic_share import traffic_share

if TYPE_CHECKING:
    from phasewise.plan.goodput import WorkloadSpec


def rate_share(rate_rps: float, units: int, of_units: int) -> float:
    """The rate `units` of `of_units` identical units receive (exactly `rate_rps` for all of them)."""
    return rate_rps if units >= of_units else rate_rps * units / of_units


def slice_traffic(work: WorkloadSpec, rate_rps: float, requests: int, units: int, of_units: int,
                  router: str) -> Workload:
    """`requests` requests of the traffic `units` of a deployment's `of_units` identical units receive when the
    whole receives `work` at `rate_rps`: Poisson arrivals at their share of the rate; for a replayed trace or a
    workload with prefix structure, the requests the router would send them out of the whole's, at the whole's
    instants and in the trace's order (workload/traffic_share.py: each request kept with the units' share, or whole
    conversations behind a cache-aware router, which keeps them where their prefix is cached). A trace is not
    slowed down to the units' share of its rate: that would stretch its bursts by of_units / units."""
    if (work.prefix_hashes is None and work.arrivals is None) or units >= of_units:
        return work.at_rate(rate_share(rate_rps, units, of_units), requests)
    share = units / of_units
    whole = work.at_rate(rate_rps, -(-requests * of_units // units))  # ceil(requests / share), exactly
    return traffic_share(whole, share, work.seed, whole_conversations=router in CACHE_AWARE)


def fresh_draws(work: WorkloadSpec, units: int, of_units: int) -> bool:
    """Whether another seed draws other traffic for `units` of `of_units` units (slice_traffic): Poisson arrivals
    do (their gaps and lengths; a prefix trace's window), a slice of a replayed trace does (the requests its share
    keeps); a replayed trace simulated whole does not (at_rate takes it as it is, whatever the seed)."""
    return work.arrivals is None or units < of_units


def trace_requests(work: WorkloadSpec, units: int, of_units: int) -> int:
    """The requests a replayed trace's verification asks slice_traffic for: the trace once, as `simulate --trace
    --rate` replays it (at_rate loops it past its end for more), or a slice's share of them (the whole trace once,
    shared out: ceil(share x floor(n / share)) <= n)."""
    return max(1, len(work.prompts) * min(units, of_units) // of_units)
