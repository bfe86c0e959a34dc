"""Goodput of one strategy: the highest request rate at which the SLO attainment target holds
(DistServe / Vidur-Search: percentile-based, e.g. 90 % of requests meet both TTFT and TBT SLOs),
found by bisection on simulations that share their random numbers across rates.
Here: the workload a search offers (WorkloadSpec, workload_spec), the units it simulates (slice_units) and the
search (evaluate). Its parts: the bisection (bisection.py), the queue's verdict (stability.py), the analytic
capacity (capacity.py), the units' traffic (unit_traffic.py), the results (goodput_results.py), what a run's
summary says (run_summaries.py), requests beyond the model's context (context_limits.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.plan.bisection import highest_rate
from phasewise.plan.capacity import capacity_estimate, decode_batch, image_load, seats  # noqa: F401 (re-exported)
from phasewise.plan.context_limits import (  # noqa: F401 (importable here, as before)
    beyond_context_share,
    lengths_within_context,
    refuse_when_none_fits,
)
from phasewise.plan.goodput_results import GoodputResult, VerifiedRun  # noqa: F401 (re-exported)
from phasewise.plan.run_summaries import (  # noqa: F401 (importable here, as before)
    binds,
    curve_point,
    goodput_tokens_per_s_per_gpu,
    stopped_early,
)
from phasewise.plan.stability import (  # noqa: F401 (importable here, as before)
    DRAINED,
    DRAINED_SAMPLES,
    GROWS,
    STEADY,
    WAITING_MARGIN_PER_INSTANCE,
    queue_verdict,
    stable,
)
from phasewise.plan.strategies import Strategy
from phasewise.plan.unit_traffic import fresh_draws, rate_share, slice_traffic, trace_requests  # noqa: F401
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.sim.metrics import miss_allowance
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


def slice_units(strategy: Strategy, work: WorkloadSpec) -> int:
    """How many of the strategy's units a simulation of the whole deployment holds: all of them, or, past
    SLICE_INSTANCES instances, the fewest whole units holding at least that many, receiving their share of the
    traffic (slice_traffic). A slice stands for the fleet because its units are identical and the router spreads
    the load evenly; the router's smoothing of bursts grows with the instances it can choose from, so a slice errs
    on the low side (on a trace with prefix structure, within the whole fleet's seed-to-seed spread:
    benchmarks/plan_slice.py, README)."""
    return min(strategy.units, max(1, math.ceil(SLICE_INSTANCES / strategy.instances_per_unit)))


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
