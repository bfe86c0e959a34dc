"""Fleets on a trace: after `plan` ranks strategies on a steady load, each ranked strategy's units serve the trace at
its own pace (or rescaled to a mean rate), its whole span: a fixed fleet (the fewest units that meet the SLOs over
the whole trace, sized with hindsight), Kubernetes' HPA on vllm:num_requests_running (the target a share of one
replica's concurrency at its goodput, each share tried; on a disaggregated strategy, each group at its own: a
prefill replica's request rate, a decode replica's running), Knative's KPA on requests in flight (that concurrency
the target, its 70 % utilization on top; at its defaults, and with a 300 s scale-down delay), KEDA (the HPA's middle
target, from and to zero; a decode group keeps one) and NVIDIA Dynamo's SLA planner on the plan's SLOs (both kinds;
sim/sla_planner.py). Each fleet: the GPUs it held on average and at its peak, GPU-hours and dollars over the trace,
and the share of requests within the SLOs; the one with the fewest GPU-hours that meets --attainment is the answer
(dollars beside it: on one chip the same order). Every fleet meets the
trace already serving: a prime of the trace's first 300 s (each request's prefix its own) is replayed before it and
not measured, and autoscaled fleets start with the units the trace's first minute needs at one unit's goodput
(initial_replicas); new replicas pay their engine's start-up. GPU-hours and dollars count from the trace's first
arrival to its last request's end."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError, name_list
from phasewise.plan.backends import run_all
from phasewise.plan.capacity import decode_batch
from phasewise.plan.goodput import GoodputResult, WorkloadSpec
from phasewise.plan.strategies import Strategy
from phasewise.sim import Slo, simulate
from phasewise.sim.autoscale_block import Autoscale
from phasewise.sim.autoscaler import MAX_AUTOSCALER_TICKS, hpa_replicas, shortest_period
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware
from phasewise.workload.images import ImageInputs
from phasewise.workload.request import Workload

FLEETS = ("hpa", "kpa", "keda", "dynamo")  # --autoscale: the autoscalers tried beside the fixed fleet
AUTOSCALER_NAMES = {"hpa": "the HPA", "kpa": "Knative's KPA", "keda": "KEDA"}
HPA_TOLERANCE = Autoscale.model_fields["tolerance"].default  # the HPA scales up beyond target x (1 + it)
HPA_TARGET_SHARES = (0.6, 0.8, 1.0)  # of one replica's concurrency at its goodput (Little's law), each tried
# the HPA's variants: each target share at Kubernetes' default 300 s scale-down window, and the highest share with
# the window cut to 60 s, which releases what a surge added sooner (behavior.scaleDown.stabilizationWindowSeconds)
HPA_SCALE_DOWN_WINDOW_S = Autoscale.model_fields["scale_down_window_s"].default
HPA_SHORT_SCALE_DOWN_WINDOW_S = 60.0
HPA_VARIANTS = tuple((share, {}) for share in HPA_TARGET_SHARES) + \
    ((HPA_TARGET_SHARES[-1], {"scale_down_window_s": HPA_SHORT_SCALE_DOWN_WINDOW_S}),)
# (and once more on kv_usage, the KV cache's used share, its target a replica's mean KV use at the goodput: _kv_aims)
# the KPA's variants: Knative's defaults, and a 300 s scale-down delay (config-autoscaler's scale-down-delay; 300 s,
# the HPA's default scale-down window, so that it holds what a surge added as long as the HPA does): on
# bench_autoscale.py's repeated bursts, 3 minutes apart, it met 86.6 % of the requests on 6.30 replicas on average
# against 73.1 % on 4.96 without (README); on one burst or a slow trace it holds replicas it does not need
KPA_SCALE_DOWN_DELAY_S = HPA_SCALE_DOWN_WINDOW_S
KPA_VARIANTS = ((1.0, {}), (1.0, {"scale_down_delay_s": KPA_SCALE_DOWN_DELAY_S}))
KEDA_TARGET_SHARE = 0.8  # KEDA: the HPA's middle target, its difference being the scaling from and to zero
FIRST_MINUTE_S = 60.0  # the window whose rate sizes an autoscaled fleet's starting replicas
# the trace's first seconds replayed before it and not measured, so that every fleet meets the trace already serving:
# its requests in flight, the autoscalers' windows filled (Knative's 60 s, Dynamo's 180 s interval) and a cold
# start's reactions over (the KPA's partial first window halves a cold fleet, panics and releases the surge ~290 s
# later on bench_fleet.py's trace); assumed: the HPA's 300 s scale-down window
PRIME_S = 300.0


@dataclass(slots=True, frozen=True)
class Replay:
    """The trace after a prime: its first `prime_s` seconds of requests (sharing no prefix with anything), then the
    whole trace from `prime_s` on; the first `primed` requests are not measured."""

    traffic: Workload
    primed: int
    prime_s: float


@dataclass(slots=True)
class FleetRun:
    """One fleet of one strategy over the trace (`note`: why it was not run, its figures NaN)."""

    strategy: str
    fleet: str  # fixed | hpa | dynamo
    detail: str  # its size or its autoscaler's settings, in words
    attainment: float = math.nan
    mean_gpus: float = math.nan
    peak_gpus: float = math.nan
    gpu_hours: float = math.nan
    cost_usd: float = math.nan
    ttft_p90_ms: float = math.nan
    tpot_p90_ms: float = math.nan
    meets: bool = False
    note: str = ""
    deployment: dict[str, Any] = field(default_factory=dict)  # the Deployment fields simulated
    # autoscaled, but no group scaled once over the replay: its starting replicas did the work, not its autoscaler
    never_scaled: bool = False


@dataclass(slots=True)
class FleetPlan:
    workload: str
    rate_rps: float  # the replayed trace's mean rate
    requests: int
    span_s: float  # first to last arrival
    target: float  # --attainment
    runs: list[FleetRun]

    def best(self) -> FleetRun | None:
        """The fleet with the fewest GPU-hours (to 3 significant digits; a tie goes to the higher-ranked strategy,
        then the fixed fleet) that meets the SLOs (None: no fleet does); an autoscaled fleet that never scaled is not
        an autoscaled answer (its strategy's fixed fleet of that size meets them as well)."""
        meeting = [r for r in self.runs if r.meets and not r.never_scaled]
        return min(meeting, key=lambda r: float(f"{r.gpu_hours:.3g}")) if meeting else None

    def fixed(self, strategy: str) -> FleetRun | None:
        return next((r for r in self.runs if r.strategy == strategy and r.fleet == "fixed"), None)

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.runs]


def replayed_trace(work: WorkloadSpec, rate_rps: float | None) -> Workload:
    """The whole trace once, at its own pace or time-scaled to `rate_rps`."""
    if work.arrivals is None:
        raise PhasewiseError("--autoscale replays a trace's arrivals over time: give --trace and --arrivals trace")
    if rate_rps is not None and not (math.isfinite(rate_rps) and rate_rps > 0):
        raise PhasewiseError(f"--autoscale-rate must be a rate > 0 in req/s (got {rate_rps})")
    own = Workload(np.asarray(work.arrivals), np.asarray(work.prompts), np.asarray(work.outputs)).mean_rate_rps
    rate = (own if math.isfinite(own) else 1.0) if rate_rps is None else rate_rps
    return work.at_rate(rate, len(work.arrivals))


def primed(trace: Workload) -> Replay:
    """The trace behind a prime of its own first PRIME_S seconds (or all of it, if shorter): the same lengths and
    arrival pattern, each prime request's prefix its own (no cache hit it would not have had)."""
    t = trace.arrival_s - trace.arrival_s[0]
    prime_s = min(PRIME_S, float(t[-1])) if len(t) > 1 else 0.0
    head = np.flatnonzero(t < prime_s)
    cat = np.concatenate
    hashes = None
    if trace.prefix_hashes is not None:  # fresh block hashes for the prime: below every id of the trace's, whatever
        # their sign (workload/request.py prefix_stride takes ids as opaque labels too)
        below = min((h for hs in trace.prefix_hashes for h in hs), default=0)
        step = max((len(hs) for hs in trace.prefix_hashes), default=0) + 1
        hashes = [tuple(min(below, 0) - (1 + k * step + b) for b in range(len(trace.prefix_hashes[i])))
                  for k, i in enumerate(head)] + list(trace.prefix_hashes)
    images = None if trace.image_counts is None else cat([trace.image_counts[head], trace.image_counts])
    priority = None if trace.priority is None else cat([trace.priority[head], trace.priority])
    traffic = Workload(cat([t[head], t + prime_s]), cat([trace.prompt_tokens[head], trace.prompt_tokens]),
                       cat([trace.output_tokens[head], trace.output_tokens]), priority, trace.name, hashes, images)
    return Replay(traffic, len(head), prime_s)


def parse_fleets(autoscale: str | None, rate_rps: float | None, slo: Slo, work: WorkloadSpec
                 ) -> tuple[str, ...] | None:
    """--autoscale's autoscalers (None: no fleets asked for), checked with --autoscale-rate against the SLOs and
    the workload before any simulation."""
    if autoscale is None:
        if rate_rps is not None:
            raise PhasewiseError("--autoscale-rate is the replay's rate for --autoscale: give --autoscale "
                                 "hpa|kpa|keda|dynamo")
        return None
    names = tuple(name_list("--autoscale", autoscale))  # each once, none empty: as --router's
    unknown = [a for a in names if a not in FLEETS]
    if unknown:
        raise PhasewiseError(f"--autoscale '{unknown[0]}' is not one of {', '.join(FLEETS)} (comma-separated)")
    if "dynamo" in names and not (math.isfinite(slo.ttft_ms) and math.isfinite(slo.tpot_ms)):
        raise PhasewiseError("--autoscale dynamo sizes for a TTFT and an inter-token latency: give finite "
                             "--slo-ttft-ms and --slo-tpot-ms")
    replayed_trace(work, None)  # a trace's arrivals, and a rate > 0, before the span's arithmetic
    if rate_rps is not None and not (math.isfinite(rate_rps) and rate_rps > 0):
        raise PhasewiseError(f"--autoscale-rate must be a rate > 0 in req/s (got {rate_rps})")
    own = Workload(np.asarray(work.arrivals), np.asarray(work.prompts), np.asarray(work.outputs))
    span_s = own.duration_s if rate_rps is None else own.span_at_rate_s(rate_rps)
    replay_s = span_s + min(PRIME_S, span_s)  # the prime replayed before it (primed)
    for name in names:  # each autoscaler against its own shortest period, as the simulation checks it (check_span)
        what, tick = shortest_period(Autoscale(metric="sla") if name == "dynamo" else
                                     Autoscale(autoscaler=name, metric="rps", target=1.0))
        if replay_s / tick > MAX_AUTOSCALER_TICKS:
            pace = "at its own pace" if rate_rps is None else f"at --autoscale-rate {rate_rps:g}"
            whose = AUTOSCALER_NAMES.get(name, "Dynamo's planner")
            raise PhasewiseError(f"--autoscale {name}: the trace replayed {pace} spans {replay_s:.3g} s, more than "
                                 f"{MAX_AUTOSCALER_TICKS:,} of {whose}'s {tick:g} s periods ({what}): give a higher "
                                 f"--autoscale-rate")
    return names


def plan_fleets(ranked: list[GoodputResult], work: WorkloadSpec, slo: Slo, target: float,
                autoscalers: tuple[str, ...], rate_rps: float | None = None, backend: str = "local",
                workers: int | None = None, ray_address: str | None = None,
                progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> FleetPlan:
    """Every ranked strategy that meets the SLOs, over the replayed trace, as a fixed fleet and with each of
    `autoscalers` (FLEETS, as parse_fleets reads them)."""
    trace = replayed_trace(work, rate_rps)
    replay = primed(trace)
    first_rate = float(np.sum(trace.arrival_s < FIRST_MINUTE_S)) / min(FIRST_MINUTE_S, max(trace.duration_s, 1.0))
    tasks: list[tuple] = []
    skipped: list[FleetRun] = []
    for r in ranked:
        if r.goodput_rps <= 0:
            continue
        s = r.strategy
        per_unit = r.goodput_rps / s.units
        start = min(s.units, max(1, math.ceil(first_rate / per_unit)))
        tasks.append((_smallest_fixed, s, replay, slo, target, work.images))
        for fleet in autoscalers:
            runs = _autoscaled(fleet, r, start, slo, work)
            for detail, fields in runs:
                if isinstance(fields, str):
                    skipped.append(FleetRun(s.name, fleet, detail, note=fields))
                else:
                    tasks.append((_replay, s.name, fleet, detail, fields, replay, slo, target, work.images))
    tick = progress("fleets over the trace", 0, len(tasks)) if progress else None
    runs = run_all(_task, [(t,) for t in tasks], backend, workers, ray_address, tick)
    order = {r.strategy.name: k for k, r in enumerate(ranked)}
    kinds = {"fixed": 0, **{a: k + 1 for k, a in enumerate(FLEETS)}}
    runs = sorted([*runs, *skipped], key=lambda f: (order[f.strategy], kinds[f.fleet]))
    return FleetPlan(work.name, trace.mean_rate_rps, len(trace), trace.duration_s, target, runs)


def _task(task: tuple) -> FleetRun:
    fn, *args = task
    return fn(*args)


def _autoscaled(fleet: str, r: GoodputResult, start_units: int, slo: Slo, work: WorkloadSpec
                ) -> list[tuple[str, dict | str]]:
    """(detail, Deployment fields) of each autoscaled fleet of `fleet` for the strategy; (detail, why not) where
    none runs, or where its blocks are an earlier variant's once capped."""
    s = r.strategy
    fields = s.slice(s.units)
    groups = fields["instances"]
    if any(g.get("pp", 1) > 1 for g in groups):
        return [("", "autoscale supports pp=1 replicas only")]
    beside = [k.replace("_", " ") for k in ("priority_pools", "online_training", "encoders", "attention_offload")
              if fields.get(k) is not None and not (isinstance(fields[k], dict) and fields[k].get("mode") == "off")]
    if beside:  # as the deployment refuses them (sim/deployment.py)
        return [("", f"autoscale does not combine with {' or '.join(beside)}")]
    if fleet == "dynamo":
        block = {"metric": "sla", "ttft_s": slo.ttft_ms / 1e3, "itl_s": slo.tpot_ms / 1e3}
        scaled = dict(fields, instances=[dict(g, autoscale=dict(block, initial_replicas=start_units * u["replicas"]))
                                         for g, u in zip(groups, s.unit["instances"])])
        return [(f"SLA planner: TTFT {slo.ttft_ms:g} ms, ITL {slo.tpot_ms:g} ms", scaled)]
    roles = [g.get("role", "collocated") for g in groups]
    if roles not in (["collocated"], ["prefill", "decode"]):
        return [("", f"{AUTOSCALER_NAMES[fleet]} here scales one collocated group's replicas or a prefill and a "
                     f"decode group's (this strategy's groups: {', '.join(roles)})")]
    if r.verified is None:
        return [("", "not verified: no concurrency at its goodput to aim at")]
    aims = _aims(r, roles, fleet)  # per group, its metric and that metric's value a replica at the goodput
    variants = [(share, knobs, aims) for share, knobs in
                {"kpa": KPA_VARIANTS, "keda": ((KEDA_TARGET_SHARE, {}),)}.get(fleet, HPA_VARIANTS)]
    if fleet == "hpa" and (kv_aims := _kv_aims(r, roles, aims)) is not None:
        variants.append((1.0, {}, kv_aims))
    # the requests a replica runs at most, which its running gauge cannot pass (the KPA's metrics have no ceiling)
    ceilings = _ceilings(fields, work) if fleet != "kpa" else [math.inf] * len(roles)
    out: list[tuple[str, dict | str]] = []
    for share, knobs, group_aims in variants:
        words, blocks = [], []
        for role, (metric, load), unit, ceiling in zip(roles, group_aims, s.unit["instances"], ceilings):
            most = _reachable(metric, ceiling)
            if most <= 0:
                words = [f"{role} {metric} reads too little to scale up on: no target lets {AUTOSCALER_NAMES[fleet]} "
                         f"add replicas (it adds them above the target + {HPA_TOLERANCE:.0%})"]
                break
            target = _target(metric, load * share, most)
            # KEDA from and to zero, but a decode group keeps one replica (a finished prefill needs somewhere to go)
            floor = {"min_replicas": 0 if role != "decode" else 1} if fleet == "keda" else {}
            blocks.append({"metric": metric, "target": target, "initial_replicas": start_units * unit["replicas"],
                           **({"autoscaler": fleet} if fleet != "hpa" else {}), **floor, **knobs})
            whose = "" if role == "collocated" else f"{role} "
            of = f"{load:.1f}" if metric == "rps" else f"{load:.0f}"
            share_words = (" x 70 % utilization" if fleet == "kpa" else " (its mean KV use at the goodput"
                           if metric == "kv_usage" else f" ({share:.0%} of {of}")
            if target < _target(metric, load * share):  # a replica's gauge never passes target x 1.1 above it
                share_words += f", capped at {most:g} to scale up at all"
            words.append(f"{whose}{metric} {target:g} a replica{share_words}{')' if fleet != 'kpa' else ''}")
        if len(blocks) < len(roles):
            out.append(("", words[0]))
            continue
        detail = "; ".join(words)
        for knob, what in (("scale_down_window_s", "scale-down window"), ("scale_down_delay_s", "scale-down delay")):
            if knob in knobs:
                detail += f", {what} {knobs[knob]:g} s"
        if fleet == "keda":
            detail += ", " + ", ".join(("" if role == "collocated" else f"{role} ") + f"{b['min_replicas']}-"
                                       f"{g['replicas']}" for role, b, g in zip(roles, blocks, groups))
        scaled = dict(fields, instances=[dict(g, autoscale=b) for g, b in zip(groups, blocks)])
        same = next((d for d, f in out if f == scaled), None)  # two shares capped to one target: run once
        out.append((detail, scaled if same is None else f"its blocks are those of '{same}' once capped"))
    return out


def _ceilings(fields: dict[str, Any], work: WorkloadSpec) -> list[float]:
    """Per group, the most a replica's vllm:num_requests_running reads: the requests it runs at once on the trace's
    mean lengths (plan/capacity.py decode_batch: its engine's sequence cap, max_num_seqs, or what its KV holds)."""
    dep = build_deployment(fields)
    out = []
    for g, group in enumerate(dep.instances):
        _, kv_tokens, _, engine = build_group(dep, group, g)
        out.append(float(decode_batch(engine.max_seqs, kv_tokens, work.mean_prompt, work.mean_output)))
    return out


def _reachable(metric: str, running_most: float) -> float:
    """The highest target of `metric` the HPA can scale up from (inf: any): it adds replicas once the ready
    replicas' mean over the target is beyond its tolerance (sim/autoscaler.py hpa_replicas; KEDA's external metric
    alike), which a gauge that reads at most `running_most` requests running (kv_usage: all the KV, 1) never is at a
    target of that over 1 + tolerance or above; 0: no target of its step (a request, 0.1 % of the KV) can."""
    if metric not in ("running", "kv_usage"):
        return math.inf
    most, step = (running_most, 1.0) if metric == "running" else (1.0, 0.001)
    n = math.floor(most / (1.0 + HPA_TOLERANCE) / step) + 1
    while n > 0 and hpa_replicas(most / (n * step), 1, 0, HPA_TOLERANCE) <= 1:  # one ready replica stays one
        n -= 1
    return round(n * step, 3)


def _target(metric: str, load: float, most: float = math.inf) -> float:
    """An autoscale block's target for `load` of `metric` a replica: a rate to a tenth of a request a second, a KV
    share to 0.1 % (at most all of it), requests running or in flight whole ones; at most `most` (_reachable)."""
    if metric == "rps":
        return max(0.1, round(load, 1))
    if metric == "kv_usage":
        return min(1.0, most, max(0.001, round(load, 3)))
    return min(most, max(1, round(load)))


def _kv_aims(r: GoodputResult, roles: list[str], aims: list[tuple[str, float]]) -> list[tuple[str, float]] | None:
    """The HPA on the KV cache's used share (kv_usage, vllm:kv_cache_usage_perc; KServe's LLM autoscaling docs,
    kserve.github.io .../generative-inference/autoscaling, scale vLLM on it or on waiting requests): a collocated or
    decode replica's target its mean KV use in the verification run (time-averaged, plan/verification.py); a prefill
    group keeps its request rate, its KV held only until the hand-off. None when the run reports no KV use for a
    group that needs it."""
    uses = r.verified.summary.get("kv_mean_use") or {}
    out = []
    for role, aim in zip(roles, aims):
        use = uses.get(role, math.nan)
        if role == "prefill":
            out.append(aim)
        elif not (math.isfinite(use) and use > 0):
            return None
        else:
            out.append(("kv_usage", use))
    return out


def _aims(r: GoodputResult, roles: list[str], fleet: str) -> list[tuple[str, float]]:
    """Per group, the metric `fleet`'s autoscaler reads there and that metric's value a replica at the strategy's
    goodput (Little's law on the verification run): a collocated replica's requests running (the KPA: in flight), its
    rate times the mean E2E; a decode replica's running (in flight), its rate times the mean E2E less the mean TTFT;
    a prefill replica's request rate (rps) for the HPA and KEDA, as Dynamo's planner sizes prefill, since its requests
    in flight, its rate times the mean TTFT, read 0 between requests at a low rate (KEDA scaled a prefill group to
    zero in a 2 req/s stretch on them), and for the KPA its requests in flight (its rps mode did worse on
    bench_fleet.py's burst: README)."""
    summary = r.verified.summary
    ttft_s, e2e_s = float(summary["ttft_ms"]["mean"]) / 1e3, float(summary["e2e_ms"]["mean"]) / 1e3
    unit_rps = r.goodput_rps / r.strategy.units
    in_flight = "concurrency" if fleet == "kpa" else "running"  # the KPA counts requests in flight
    out = []
    for role, group in zip(roles, r.strategy.unit["instances"]):
        per_replica_rps = unit_rps / group["replicas"]
        if role == "prefill":
            out.append(("concurrency", per_replica_rps * ttft_s) if fleet == "kpa" else ("rps", per_replica_rps))
        else:
            out.append((in_flight, per_replica_rps * (e2e_s - ttft_s if role == "decode" else e2e_s)))
    return out


def _simulate(fields: dict[str, Any], replay: Replay, slo: Slo, images: ImageInputs | None):
    try:
        dep = build_deployment(fields)
    except PhasewiseError as exc:
        return None, str(exc)
    return simulate(dep, replay.traffic, slo, images=images, refuse_beyond_context=True), ""


def _replay(strategy: str, fleet: str, detail: str, fields: dict[str, Any], replay: Replay, slo: Slo,
            target: float, images: ImageInputs | None) -> FleetRun:
    res, why = _simulate(fields, replay, slo, images)
    if res is None:
        return FleetRun(strategy, fleet, detail, note=why, deployment=fields)
    return _fleet_run(strategy, fleet, detail, fields, res, replay, target)


def _held_s(periods: list[list[float]], start_s: float, end_s: float) -> tuple[float, int]:
    """Replica-seconds of `periods` ([start, end] each) within [start_s, end_s], and the most held at once there."""
    inside = [(max(start, start_s), min(end, end_s)) for start, end in periods if end > start_s and start < end_s]
    held = peak = 0
    for _, step in sorted([(start, 1) for start, _ in inside] + [(end, -1) for _, end in inside]):
        held += step
        peak = max(peak, held)
    return sum(end - start for start, end in inside), peak


def _fleet_run(strategy: str, fleet: str, detail: str, fields: dict[str, Any], res, replay: Replay,
               target: float) -> FleetRun:
    """One fleet's figures over the measured trace (after the prime): attainment and p90 latencies of its requests,
    GPUs and dollars from the trace's first arrival to its last request's end (each chip at its $/GPU-hour)."""
    measured = np.arange(len(res.arrival_s)) >= replay.primed
    end_s = float(np.nanmax(res.finish_s))
    window_s = max(end_s - replay.prime_s, 1e-9)
    scaled = {e["group"]: e for e in res.policy.get("autoscale") or []}
    dep = build_deployment(fields)
    mean_gpus = price_per_hour = fixed_gpus = 0.0  # each group's GPUs held on average (a fixed one's all), its price
    steps: list[tuple[float, float]] = []  # the autoscaled groups' GPUs taken (+) and given back (-), over time
    groups = [(g, group.hardware, group.gpus, group.replicas) for g, group in enumerate(dep.instances)]
    if dep.encoders is not None:
        groups.append((-1, dep.encoders.hardware, dep.encoders.gpus, 1))
    for g, hardware, gpus, replicas in groups:
        if g in scaled:
            held, _ = _held_s(scaled[g]["gpu_periods_s"], replay.prime_s, end_s)
            for start, stop in scaled[g]["gpu_periods_s"]:
                if stop > replay.prime_s and start < end_s:
                    steps += [(max(start, replay.prime_s), gpus / replicas), (min(stop, end_s), -gpus / replicas)]
        else:
            held = replicas * window_s
            fixed_gpus += gpus
        gpus_held = held / window_s * gpus / replicas
        mean_gpus += gpus_held
        price_per_hour += gpus_held * load_hardware(hardware).gpu_hour_usd
    peak = taken = 0.0  # the most GPUs held at once: the groups peak at their own times
    for _, step in sorted(steps, key=lambda s: (s[0], s[1])):  # a release before a take at the same instant
        taken += step
        peak = max(peak, taken)
    peak += fixed_gpus
    attained = res.attained()[measured]
    att = float(attained.mean())
    ttft = res.ttft_s[measured] * 1e3
    multi = res.output_tokens[measured] > 1
    tpot = res.tpot_s[measured][multi] * 1e3
    hours = window_s / 3600.0
    never = bool(scaled) and not any(e.get("events", True) for e in scaled.values())  # (no record: not known)
    if never:
        detail += "; never scaled: its starting replicas served the whole replay"
    return FleetRun(strategy, fleet, detail, att, mean_gpus, float(peak), mean_gpus * hours, price_per_hour * hours,
                    float(np.nanpercentile(ttft, 90)), float(np.nanpercentile(tpot, 90)) if len(tpot) else math.nan,
                    att >= target, deployment=fields, never_scaled=never)


def _smallest_fixed(strategy: Strategy, replay: Replay, slo: Slo, target: float,
                    images: ImageInputs | None) -> FleetRun:
    """The fewest of the strategy's units that meet the SLOs over the whole trace (bisection: attainment grows with
    units); all of them, marked as not meeting, when even they do not."""
    runs: dict[int, FleetRun] = {}

    def run(units: int) -> FleetRun:
        if units not in runs:
            runs[units] = _replay(strategy.name, "fixed", f"{units} of {strategy.units} units", strategy.slice(units),
                                  replay, slo, target, images)
        return runs[units]

    low, high = 1, strategy.units
    if not run(high).meets:
        return runs[high]
    while low < high:
        mid = (low + high) // 2
        if run(mid).meets:
            high = mid
        else:
            low = mid + 1
    return run(low)
