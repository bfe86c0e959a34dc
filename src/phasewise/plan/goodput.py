"""Goodput of one strategy: the highest request rate at which the SLO attainment target holds
(DistServe / Vidur-Search: percentile-based, e.g. 90 % of requests meet both TTFT and TBT SLOs),
found by bisection on simulations that share their random numbers across rates."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape
from phasewise.plan.strategies import Strategy
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import Deployment, build_deployment
from phasewise.sim.draft_cost import draft_time_s
from phasewise.sim.encode_pool import encoder_cost
from phasewise.sim.metrics import miss_allowance
from phasewise.sim.routers import CACHE_AWARE
from phasewise.sim.simulate import build_group
from phasewise.workload import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    ImageInputs,
    LengthDist,
    Workload,
    check_length_flags,
    flag_name,
    image_inputs,
    load_trace,
    prefix_copy,
    prefix_stride,
    reusable_prompt_share,
)
from phasewise.workload.generators import poisson_arrivals
from phasewise.workload.traffic_share import traffic_share

SLICE_INSTANCES = 32  # a deployment of more instances is simulated as whole units holding at least this many
# a search probe whose queue grew and drained (queue_verdict) runs again over this many times its window: one
# Llama-3.1-8B unit (H100, chunked 2048, 256 seats) at 19.6 req/s, 1/8 of make run's plan's 156.6 req/s, drained in
# its 60 s window, and 0.83 of its requests meet the SLOs over 300 s (8 such units over 600 s: 2 of 3 seeds miss)
AMBIGUOUS_WINDOWS = 5


@dataclass(slots=True, frozen=True)
class WorkloadSpec:
    """Request lengths (samples) and an optional arrival pattern; `at_rate` builds the workload.
    The same seed at every rate: lengths are identical and Poisson gaps scale as 1/rate.

    A trace with prefix structure (`prefix_hashes`, Mooncake's hash_ids) keeps its requests in the trace's order,
    so that the prefixes later turns share with earlier ones stay as the trace has them: with Poisson arrivals, a
    window of the trace from a seed-chosen request on (wrapping), re-timed."""

    prompts: tuple[int, ...]
    outputs: tuple[int, ...]
    arrivals: tuple[float, ...] | None = None  # a trace's arrival pattern, time-scaled to each rate
    requests: int = 400
    seed: int = 0
    name: str = "workload"
    prefix_hashes: tuple[tuple[int, ...], ...] | None = None  # per trace request, its prompt's block hashes
    reusable_share: float = 0.0  # prompt tokens an unbounded prefix cache serves (reusable_prompt_share)
    images: ImageInputs | None = None  # the images requests carry (workload/images.py), beside the text lengths
    image_counts: tuple[int, ...] | None = None  # per trace request, its images (a trace's NumImages column)
    # a request whose prompt + output pass the model's context is refused on arrival, as an engine refuses it (plan
    # and sweep's workloads, workload_spec); off, it runs if its KV fits, as the papers' replays run them
    refuse_beyond_context: bool = False
    beyond_context_share: float = 0.0  # its requests' share past the model's context (workload_spec, when refused)
    trace: str | None = None  # the trace replayed with its own arrivals (plan --arrivals trace), as --trace names it

    def at_rate(self, rate: float, requests: int | None = None) -> Workload:
        n = requests or self.requests
        rng = np.random.default_rng(self.seed)
        hashes = list(self.prefix_hashes) if self.prefix_hashes is not None else None
        counts = np.asarray(self.image_counts) if self.image_counts is not None else None
        if self.arrivals is not None:  # the whole trace at the rate, looped when the window needs more requests
            base = Workload(np.asarray(self.arrivals), np.asarray(self.prompts), np.asarray(self.outputs),
                            prefix_hashes=hashes, image_counts=counts)
            n = max(n, len(base))
            if n > len(base):
                span = base.arrival_s[-1] - base.arrival_s[0]
                base = base.looped(n * span / max(len(base) - 1, 1))
            return base.head(n).scaled_to_rate(rate)
        arrival_s = poisson_arrivals(rng, n, rate)  # simulate's open loop's formula: its --seed draws the same
        if hashes is not None:  # the trace's order from a random request on, Poisson-spaced; past its end, another
            # pass whose prefix blocks are its own (prefix_copy)
            position = int(rng.integers(0, len(self.prompts))) + np.arange(n)
            idx = position % len(self.prompts)
            # (the stride, a pass over every block id, only where a probe wraps past the trace: copy 0 keeps its ids)
            stride = prefix_stride(hashes) if position[-1] >= len(self.prompts) else 1
            return Workload(arrival_s, np.asarray(self.prompts)[idx], np.asarray(self.outputs)[idx],
                            prefix_hashes=[prefix_copy(hashes[i], int(p) // len(self.prompts), stride)
                                           for i, p in zip(idx, position)],
                            image_counts=None if counts is None else counts[idx])
        idx_p = rng.integers(0, len(self.prompts), n)
        idx_o = idx_p if len(self.outputs) == len(self.prompts) else rng.integers(0, len(self.outputs), n)
        return Workload(arrival_s, np.asarray(self.prompts)[idx_p], np.asarray(self.outputs)[idx_o],
                        image_counts=None if counts is None else counts[idx_p])

    def steady(self, res: SimResult) -> bool:
        """Backlog check (see stable) for stationary arrivals; a replayed trace's bursts are not overload."""
        return self.queue(res) != GROWS

    def queue(self, res: SimResult) -> str:
        """queue_verdict for stationary arrivals; a replayed trace's bursts are not overload (STEADY)."""
        return STEADY if self.arrivals is not None else queue_verdict(res)

    @property
    def replay_lengths(self) -> tuple[int, int] | None:
        """(prompt, output) tokens of every request where simulate's open loop draws this workload as at_rate does:
        Poisson arrivals (no trace pattern, no prefix order, no images) of one length each, so that whatever request
        at_rate resamples has them (`simulate --rate --requests --isl P --osl O --seed S`); None otherwise."""
        if self.arrivals is not None or self.prefix_hashes is not None or self.images is not None:
            return None
        if len(set(self.prompts)) != 1 or len(set(self.outputs)) != 1:
            return None
        return self.prompts[0], self.outputs[0]

    @property
    def mean_prompt(self) -> float:
        return float(np.mean(self.prompts))

    @property
    def mean_output(self) -> float:
        return float(np.mean(self.outputs))


def workload_spec(workload: str | None, arrivals: str, isl: float | None, osl: float | None, isl_dist: str,
                  osl_dist: str, isl_spread: float, osl_spread: float, seed: int, context_tokens: int = 0,
                  images_per_request: int | None = None, image_size: str | None = None,
                  image_share: float | None = None, image_tokens_included: bool = False,
                  name: Callable[[str], str] = flag_name) -> WorkloadSpec:
    """Lengths from a trace (default: the bundled Azure conversation excerpt) or from distributions; mean --isl +
    --osl beyond `context_tokens` (the model's context, when known) is an error: no such request runs, nor a trace
    all of whose requests pass it. The image flags (workload/images.py image_inputs): the images requests carry,
    their tokens added to the text lengths when simulated; a trace with a NumImages column gives each request's
    count itself. `name`: a field's name in the errors (plan's flags by default; a sweep entry's keys)."""
    spec = _text_spec(workload, arrivals, isl, osl, isl_dist, osl_dist, isl_spread, osl_spread, seed, context_tokens,
                      name)
    beyond = refuse_when_none_fits(spec, context_tokens)
    note = (f"; {beyond:.1%} of its requests pass the model's {context_tokens:,}-token context and are refused, as "
            f"the engine refuses them" if beyond else "")
    spec = replace(spec, refuse_beyond_context=True, beyond_context_share=beyond, name=spec.name + note)
    counts = None if spec.image_counts is None else np.asarray(spec.image_counts)
    images = image_inputs(images_per_request, image_size, image_share, counts, f"workload '{workload}'",
                          image_tokens_included)
    if images is None:
        return replace(spec, image_counts=None)
    return replace(spec, images=images, name=f"{spec.name}; {images.describe()}")


def refuse_when_none_fits(spec: WorkloadSpec, context_tokens: int, model: str = "the model's") -> float:
    """The workload's share of requests past the model's context (beyond_context_share); where that is all of
    them, a one-line error, as simulate's: nothing can run."""
    beyond = beyond_context_share(spec, context_tokens)
    if beyond == 1.0:
        raise PhasewiseError(f"nothing can run: all {len(spec.prompts):,} of the workload's requests have prompt + "
                             f"output tokens beyond {model} {context_tokens:,}-token context (max_position_embeddings)")
    return beyond


def beyond_context_share(spec: WorkloadSpec, context_tokens: int) -> float:
    """The share of the workload's requests whose prompt + output pass the model's context (0: unknown): the engine
    refuses them, so they count against the attainment, and an attainment above the share that fits is out of
    reach."""
    if not context_tokens:
        return 0.0
    return float(np.mean(np.asarray(spec.prompts) + np.asarray(spec.outputs) > context_tokens))


def lengths_within_context(isl: float | None, osl: float | None, context_tokens: int, label: str = "--isl + --osl",
                           model: str = "the model's") -> None:
    """A one-line error where the given mean lengths (the defaults for the one not given) pass the model's context
    (`context_tokens`, 0: unknown): no such request runs."""
    if context_tokens and (isl is not None or osl is not None):
        total = (isl if isl is not None else DEFAULT_ISL) + (osl if osl is not None else DEFAULT_OSL)
        if total > context_tokens:
            raise PhasewiseError(f"{label} = {total:g} tokens exceed {model} {context_tokens:,}-token context")


def _text_spec(workload: str | None, arrivals: str, isl: float | None, osl: float | None, isl_dist: str,
               osl_dist: str, isl_spread: float, osl_spread: float, seed: int, context_tokens: int,
               name: Callable[[str], str]) -> WorkloadSpec:
    """workload_spec's text lengths and arrivals."""
    if arrivals not in ("poisson", "trace"):
        raise PhasewiseError(f"{name('arrivals')} '{arrivals}' is not one of poisson, trace")
    if seed < 0:
        raise PhasewiseError(f"{name('seed')} must be >= 0 (got {seed})")
    lengths_flags = f"{name('isl')}/{name('osl')}"
    for side, dist, spread in (("isl", isl_dist, isl_spread), ("osl", osl_dist, osl_spread)):
        if isl is None and osl is None and (dist != "fixed" or spread):
            shown = f"{name(side + '_dist')} {dist}" if dist != "fixed" else name(side + "_spread")
            raise PhasewiseError(f"{shown} needs {lengths_flags} (without them the lengths are the trace's: "
                                 f"{workload or 'azure-conv'})")
    check_length_flags(isl, osl, isl_dist, osl_dist, isl_spread, osl_spread, name=name)
    lengths_within_context(isl, osl, context_tokens, f"{name('isl')} + {name('osl')}")
    if isl is not None or osl is not None:
        if workload is not None:
            raise PhasewiseError(f"give either {name('workload')} or {lengths_flags}, not both")
        if arrivals == "trace":
            raise PhasewiseError(f"{name('arrivals')} trace needs {name('workload')}")
        rng = np.random.default_rng(seed)
        p = LengthDist(isl_dist, isl if isl is not None else DEFAULT_ISL, isl_spread).sample(rng, 4096)
        o = LengthDist(osl_dist, osl if osl is not None else DEFAULT_OSL, osl_spread).sample(rng, 4096)
        return WorkloadSpec(tuple(int(x) for x in p), tuple(int(x) for x in o), None, seed=seed,
                            name=f"prompts {isl_dist} {isl or DEFAULT_ISL:g}, outputs {osl_dist} {osl or DEFAULT_OSL:g}")
    trace = load_trace("azure-conv" if workload is None else workload)
    if arrivals == "trace":  # its arrivals are rescaled to each rate the search tries (WorkloadSpec.at_rate)
        trace.check_rescalable()
    hashes = tuple(trace.prefix_hashes) if trace.prefix_hashes is not None else None
    share = reusable_prompt_share(trace.prefix_hashes, trace.prompt_tokens) if hashes is not None else 0.0
    label = f"{workload or 'azure-conv'} lengths"
    if hashes is not None:
        label += f" and prefixes ({share:.0%} of prompt tokens reusable), in order"
    label += ", trace arrivals" if arrivals == "trace" else ", Poisson arrivals"
    pattern = tuple(float(x) for x in trace.arrival_s) if arrivals == "trace" else None
    counts = None if trace.image_counts is None else tuple(int(x) for x in trace.image_counts)
    return WorkloadSpec(tuple(int(x) for x in trace.prompt_tokens), tuple(int(x) for x in trace.output_tokens),
                        pattern, seed=seed, name=label, prefix_hashes=hashes, reusable_share=share,
                        image_counts=counts, trace=(workload or "azure-conv") if arrivals == "trace" else None)


@dataclass(slots=True)
class VerifiedRun:
    """The simulation that verified a goodput (plan.verify): the whole deployment, or a slice of its units at their
    share of the rate (`units_simulated` of `units`; `deployment`: the fields simulated). `rate_rps` is the whole
    deployment's rate, `simulated_rate_rps` the simulated one's; its summary and every request's TTFT and TPOT, so
    the table's percentiles and the report's CDFs are one run. `workload(work)` rebuilds its workload exactly."""

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
    seeds: int = 1  # the fresh seeds the rate held on, this run the worst (plan.verify; fresh_draws)
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


def slice_units(strategy: Strategy, work: WorkloadSpec) -> int:
    """How many of the strategy's units a simulation of the whole deployment holds: all of them, or, past
    SLICE_INSTANCES instances, the fewest whole units holding at least that many, receiving their share of the
    traffic (slice_traffic). A slice stands for the fleet because its units are identical and the router spreads
    the load evenly; the router's smoothing of bursts grows with the instances it can choose from, so a slice errs
    on the low side (on a trace with prefix structure, within the whole fleet's seed-to-seed spread:
    benchmarks/plan_slice.py, README)."""
    return min(strategy.units, max(1, math.ceil(SLICE_INSTANCES / strategy.instances_per_unit)))


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


def goodput_tokens_per_s_per_gpu(rate_rps: float, s: dict[str, Any], gpus: int) -> float:
    """The output tokens per second per GPU a goodput of `rate_rps` requests/s carries: the rate times the output
    tokens per measured request of the run summarised in `s` (the verification run at that rate), over `gpus`
    GPUs; not that run's tokens over its duration, which runs on past the last arrival until every request has
    drained (by a third with 1,024-token answers: 732 for a row whose goodput carries 1,123). NaN without a run."""
    requests, throughput = s.get("requests", 0), s.get("throughput", {})
    if not requests or gpus <= 0 or not s.get("duration_s"):
        return math.nan
    tokens_per_request = throughput.get("output_tokens_per_s", math.nan) * s["duration_s"] / requests
    return rate_rps * tokens_per_request / gpus


def stopped_early(s: dict[str, Any]) -> bool:
    """Whether the run a summary comes from was stopped once its target was out of reach (simulate's
    stop_after_misses): its figures then cover only the requests finished by then."""
    stopped = s["sim"]["stopped_s"]
    return bool(stopped == stopped)


def curve_point(s: dict[str, Any], rate: float, scale: float, gpus: int) -> dict[str, Any]:
    """The curve's point at `rate` (the whole deployment's, on its `gpus` GPUs) from a run of 1/`scale` of it;
    `stopped` where the run was stopped once the target was out of reach (its attainment then a lower bound, its
    rates partial), `stable` whether its queue stayed bounded (stable()); tokens/s per GPU the rate's output tokens,
    as the ranked table's (goodput_tokens_per_s_per_gpu)."""
    tpot = s["tpot_ms"]["mean"]
    return {
        "rate_rps": rate,
        "attainment": s["slo"]["attainment"],
        "stable": bool(s.get("stable", True)),
        "stopped": stopped_early(s),
        "ttft_attainment": s["slo"]["ttft_attainment"],
        "tpot_attainment": s["slo"]["tpot_attainment"],
        "tbt_attainment": s["slo"]["tbt_attainment"],
        "ttft_p90_ms": s["ttft_ms"]["p90"],
        "tpot_p90_ms": s["tpot_ms"]["p90"],
        "tbt_p99_ms": s["tbt_ms"]["p99"],
        "tokens_per_s_per_gpu": goodput_tokens_per_s_per_gpu(rate, s, gpus),
        "tokens_per_s_per_user": 1e3 / tpot if tpot and tpot == tpot else math.nan,
        "power_w": s["energy_j"] / s["duration_s"] * scale if s["duration_s"] > 0 else math.nan,  # every GPU's
    }


WAITING_MARGIN_PER_INSTANCE = 2  # waiting requests per instance a stable queue may add over the window (noise)
# the last fifth's queue samples (every 0.01 of the window) that fall in its final twentieth, where a queue that grew
# must be back at the middle's level (after its highest sample) for the growth to be an excursion that drained
DRAINED_SAMPLES = 6
STEADY, DRAINED, GROWS = "steady", "drained", "grows"  # queue_verdict's answers


def stable(res: SimResult) -> bool:
    """Whether the deployment keeps up: its queue did not grow, or grew and drained (queue_verdict)."""
    return queue_verdict(res) != GROWS


def queue_verdict(res: SimResult) -> str:
    """Whether the requests waiting for a seat (arrived, not yet scheduled) over the last fifth of the arrival window
    are not clearly more than over its middle (STEADY), are but that excursion drained by the window's end
    (DRAINED), or grew (GROWS). The queue beyond the seats, not the requests in the system: while the running batch
    fills its seats the in-system count rises whatever the load, and once they are full an overload shows only as
    arrivals that wait (a growing backlog is overload, whatever a finite window's attainment says). At exactly the
    capacity the queue wanders like a random walk; the margin (WAITING_MARGIN_PER_INSTANCE per instance that seats
    requests, and half the middle's) only flags clear growth.
    An overload's backlog grows by (arrival rate - service rate) x time and does not fall back; a stationary queue's
    excursion, however high, drains: 20,000-token prompts prefilled one at a time on one H100 at 80 % of its capacity
    queue up 12 in a burst and are back to 1 eight seconds later (2,000 s of that load keep the queue under 6),
    which the means alone took for a backlog on a seed at each of verification's steps: the plan found none. So a
    last fifth that grew has DRAINED where, in the window's final twentieth and after the fifth's highest sample,
    the queue is back at the middle's mean (plus the margin). Not anywhere in the fifth: a backlog starts once the
    seats fill, which may follow a burst that drained (a 20 s window of one Llama-3.1-8B b1024 unit at 23 req/s,
    whose queue grows 3 requests/s over 300 s); nor a burst still under way at the end. Windows of a queue above its
    capacity GROW as the means alone found them to (tests/test_plan_stable_draining_queue.py). A queue that drained
    is also what a rate at the capacity shows, a random walk that drained this once: the search runs such a probe
    again over a longer window (evaluate). A request never scheduled (refused) never waits."""
    arrival, scheduled = res.arrival_s, res.scheduled_s
    end = float(arrival.max())
    if end <= 0:
        return STEADY
    admitted = np.isfinite(scheduled)
    arrived = np.sort(arrival[admitted])
    seated = np.sort(scheduled[admitted])

    def waiting(ts: np.ndarray) -> np.ndarray:
        return np.searchsorted(arrived, ts, side="right") - np.searchsorted(seated, ts, side="right")

    middle = float(np.mean(waiting(np.linspace(0.3, 0.5, 21) * end)))
    last = waiting(np.linspace(0.8, 1.0, 21) * end)
    # the queue forms where requests are first seated: collocated and prefill instances (and encoders before
    # them), never on decode ones (scheduled_s is their prefill's), so idle decode instances widen no margin
    queues = sum(stats.role != "decode" for stats in res.instances)
    margin = WAITING_MARGIN_PER_INSTANCE * max(queues, 1)
    if float(np.mean(last)) <= 1.5 * middle + margin:
        return STEADY
    after_peak = last[max(int(np.argmax(last)), len(last) - DRAINED_SAMPLES):]
    return DRAINED if after_peak.min() <= middle + margin else GROWS


def seats(dep: Deployment, work: WorkloadSpec) -> int:
    """The requests a deployment's (collocated or decode) instances hold at once on `work`'s mean lengths: each
    one's batch (decode_batch), times its replicas. The time to fill them, seats / rate, is the E2E a request takes
    once they are full (Little's law): verification's window is a multiple of it (planner.verify_window_s)."""
    prompt, osl = work.mean_prompt, work.mean_output
    total = 0
    for index, group in enumerate(dep.instances):
        if group.role == "prefill":
            continue
        _, kv_tokens, _, engine = build_group(dep, group, index)
        total += group.replicas * decode_batch(engine.max_seqs, kv_tokens, prompt, osl)
    return max(total, 1)


def decode_batch(max_seqs: int, kv_tokens: float, prompt: float, osl: float) -> int:
    """An instance's batch at mean lengths: its sequence cap, or the requests its KV holds at half their output."""
    return max(1, min(max_seqs, int(kv_tokens / (prompt + osl / 2))))


def capacity_estimate(strategy: Strategy, work: WorkloadSpec) -> float:
    """Requests/s the whole deployment can process at most (a bisection bracket), from the simulator's own
    cost path: each group's cost model, KV capacity, draft model and engine as `simulate` builds them; a
    prompt's prefill (one on each attention-DP rank, side by side) and a decode step at the batch the KV and the
    engine's sequence cap allow, timed by the slowest pipeline stage (PP micro-batches overlap), speculative steps
    emitting their expected tokens; where a group caches prefixes, its prefill skips the share of prompt tokens an
    unbounded cache would serve."""
    dep = build_deployment(strategy.deployment, f"strategy '{strategy.name}'")
    isl, osl = work.mean_prompt, work.mean_output
    images = work.images
    spec = dep.speculative
    tokens_per_step = spec.tokens_per_step if spec else 1.0
    step_tokens = spec.draft_tokens + 1 if spec else 1
    prefill_rps = decode_rps = 0.0
    encode_rps = math.inf
    if images is not None and dep.encoders is not None:  # disaggregated encoders: their forwards, not the prefill's
        encode_s = image_load(encoder_cost(dep), work)[1]
        encode_rps = dep.encoders.replicas / encode_s if encode_s > 0 else math.inf
    for index, group in enumerate(dep.instances):
        cost, kv_tokens, draft, engine = build_group(dep, group, index)
        # a request's images: the mean prompt tokens they add and the encoder time they take (on an encode worker
        # when the deployment has them)
        image_tokens, encoder_s = image_load(cost, work) if images is not None else (0.0, 0.0)
        if dep.encoders is not None:
            encoder_s = 0.0
        prompt = isl if images is not None and images.in_prompt else isl + image_tokens
        batch = decode_batch(engine.max_seqs, kv_tokens, prompt, osl)
        context = int(prompt + osl / 2)
        caching = group.prefix_caching if group.prefix_caching is not None else engine.prefix_caching
        cached = int(isl * work.reusable_share) if caching else 0
        ranks = cost.layout.attention_dp  # they prefill their own prompts side by side
        new_tokens = max(int(prompt) - cached, 1)
        t_prefill = cost.fast(BatchShape.uniform(ranks, new_tokens, cached))[1]
        verify = BatchShape.uniform(batch, step_tokens, context)
        t_step = cost.fast(verify)[1]
        if draft is not None:  # the draft beside each verify step and over each prompt (sim/draft_cost.py)
            t_step += draft_time_s(draft, spec.draft_tokens, batch, verify.decode_pairs + verify.prefill_pairs,
                                   verify.decode_kv_tokens + verify.prefill_kv_tokens)
            t_prefill += draft_time_s(draft, spec.draft_tokens, 0, 0.0, 0.0, [(new_tokens, cached, True)] * ranks)
        per_prefill = ranks / (t_prefill + encoder_s)
        per_decode = batch * tokens_per_step / (max(osl - 1, 1.0) * t_step)
        n = group.replicas
        if group.role == "prefill":
            prefill_rps += n * per_prefill
        elif group.role == "decode":
            decode_rps += n * per_decode
        else:
            prefill_rps += n / (1.0 / per_prefill + 1.0 / per_decode)
            decode_rps = math.inf
    return min(prefill_rps, decode_rps, encode_rps)


def image_load(cost, work: WorkloadSpec) -> tuple[float, float]:
    """The mean prompt tokens a request's images add and the mean encoder time they take, by the model `cost`
    costs: `images.per_request` on `images.share` of the requests, or each request's count from the trace; a model
    without a vision encoder is a one-line error."""
    images = work.images
    geometries = images.geometries(cost.model)
    weights = images.weights
    tokens = sum(w * g.prompt_tokens for w, g in zip(weights, geometries))  # an image's mean

    def encode_s(k: int) -> float:  # k images in a request: as if all had one size, weighted over the sizes
        return sum(w * cost.encoder((g.patches,), copies=k).time_s for w, g in zip(weights, geometries))

    if images.per_request is not None:
        return images.share * images.per_request * tokens, images.share * encode_s(images.per_request)
    counts, requests = np.unique(np.asarray(work.image_counts), return_counts=True)
    share = requests / requests.sum()
    return float(share @ counts) * tokens, float(sum(p * encode_s(int(k)) for k, p in zip(counts, share) if k))


def highest_rate(attains: Callable[[float], bool], guess: float, steps: int) -> tuple[float, float]:
    """(the highest rate found to attain, the lowest found not to; 0 for the first if none does), assuming
    attainment falls with the rate: a bracket from `guess` (doubled while it attains, at most 8 times, or
    quartered until one attains, at most 6 times), then `steps` bisections. Where every doubling attains, the
    last one tried is the answer (the second rate, twice it, was not tried)."""
    hi, lo = guess, 0.0
    for _ in range(8):  # the bracket's top must fail
        if not attains(hi):
            break
        lo, hi = hi, hi * 2
    else:
        return lo, hi
    if lo == 0.0:  # find any attaining rate by quartering
        probe = hi / 4
        for _ in range(6):
            if attains(probe):
                lo = probe
                break
            hi, probe = probe, probe / 4
    if lo > 0.0:
        for _ in range(steps):
            mid = (lo + hi) / 2
            if attains(mid):
                lo = mid
            else:
                hi = mid
    return lo, hi


def searched_units(strategy: Strategy, work: WorkloadSpec) -> int:
    """The units a goodput search (evaluate) simulates: one, or, for a workload with prefix structure, the whole
    deployment or its slice (slice_units): which instance's cache a request finds depends on the router's choices
    over all of them, so no one unit stands for the deployment."""
    return slice_units(strategy, work) if work.prefix_hashes is not None and strategy.units > 1 else 1


def evaluate(strategy: Strategy, work: WorkloadSpec, slo: Slo, target: float = 0.9, steps: int = 6,
             window_s: float = 60.0, min_requests: int = 300,
             known: dict[tuple[float, str], dict[str, Any]] | None = None) -> GoodputResult:
    """Bisection for the highest total rate whose SLO attainment >= target, simulating one unit receiving its
    share of the traffic (slice_traffic; for a workload with prefix structure, the whole deployment or its slice:
    slice_units) for at least `window_s` of arrivals. `known`: an earlier search's probes of this strategy under
    these SLOs (its GoodputResult.probes); a probe whose rate and workload it holds is read, not simulated again (a
    replayed trace is replayed whole at any window, so a finer search repeats a coarser one's probes exactly). Runs
    in a worker process."""
    simulated_units = searched_units(strategy, work)
    simulated = build_deployment(strategy.slice(simulated_units), f"strategy '{strategy.name}'")
    cap = capacity_estimate(strategy, work)
    points: dict[float, dict[str, float]] = {}  # the curve's, by rate
    summaries: dict[float, dict] = {}
    probes: dict[tuple[float, str], dict[str, Any]] = {}
    runs = 0

    def run(traffic: Workload, complete: bool) -> tuple[dict[str, Any], str]:
        """The summary of a run of `traffic` (stopped once the target is out of reach, unless `complete`), with
        whether its queue stayed bounded, and its queue_verdict."""
        nonlocal runs
        res = simulate(simulated, traffic, slo, images=work.images,
                       stop_after_misses=None if complete else miss_allowance(len(traffic), target),
                       refuse_beyond_context=work.refuse_beyond_context)
        runs += 1
        s, queue = res.summary(), work.queue(res)
        s["stable"] = queue != GROWS
        return s, queue

    def attains(rate: float, complete: bool = False) -> bool:
        """Whether the unit meets the target at `rate`; a run that cannot is stopped once that is certain (its
        figures cover the requests finished by then), unless `complete`. Where the target holds and the queue grew
        but drained (queue_verdict), the rate may be below the capacity (an excursion) or at it (a random walk that
        drained this once): a window AMBIGUOUS_WINDOWS times as long, whose summary the probe keeps, tells."""
        n = int(max(min_requests, rate_share(rate, simulated_units, strategy.units) * window_s))
        traffic = slice_traffic(work, rate, n, simulated_units, strategy.units, simulated.router)
        key = (rate, traffic.fingerprint())
        s = (known or {}).get(key)
        if s is None or (complete and stopped_early(s)):
            s, queue = run(traffic, complete)
            if queue == DRAINED and s["slo"]["attainment"] >= target:
                longer = slice_traffic(work, rate, n * AMBIGUOUS_WINDOWS, simulated_units, strategy.units,
                                       simulated.router)
                s, _ = run(longer, complete)
        probes[key] = summaries[rate] = s
        points[rate] = curve_point(s, rate, strategy.units / simulated_units, strategy.gpus)
        return s["slo"]["attainment"] >= target and s["stable"]

    lo, hi = highest_rate(attains, max(cap * 1.25, 1e-3), steps)
    if lo == 0.0 and summaries and stopped_early(summaries[min(summaries)]):
        attains(min(summaries), complete=True)  # no rate attains: the lowest tried, whole, says how close it came
    above = summaries.get(hi)
    binding = binds(above, target) if above is not None else "-"
    curve = [points[rate] for rate in sorted(points)]
    return GoodputResult(strategy, lo, cap, binding, summaries.get(lo) or {}, curve, runs,
                         search_units=simulated_units, probes=probes,
                         binding_rps=hi if above is not None else math.nan)


def binds(s: dict[str, Any], target: float) -> str:
    """What fails in the run `s` summarises (a rate above the goodput): the SLO fewest requests meet, or the
    backlog where every SLO's attainment holds but the queue grows (s["stable"]). A stopped run: the SLO the
    requests finished by then missed most."""
    t, d, g = (s["slo"][k] for k in ("ttft_attainment", "tpot_attainment", "tbt_attainment"))
    if min(t, d, g) >= target and not s.get("stable", True):
        return "capacity (backlog grows)"
    return min((t, "prefill (TTFT)"), (d, "decode (TPOT)"), (g, "decode (every TBT)"))[1]
