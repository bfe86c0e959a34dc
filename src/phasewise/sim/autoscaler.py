"""A horizontal autoscaler over an instance group's replicas (an `autoscale` block, sim/autoscale_block.py
Autoscale), as Kubernetes' HPA runs one on an engine's metric; a disaggregated deployment's prefill and decode groups
each their own, as NVIDIA Dynamo's planner scales them apart.

Every sync period it reads the metric from the replicas that serve (ready), averages it, and wants ceil(ready x mean
/ target) replicas (none changed while the mean is within the tolerance of the target; replicas still starting
count as the HPA counts pods without a metric: hpa_replicas), then the HPA's behavior (sim/hpa_behavior.py):
stabilization windows (up 0 s, down 300 s) and scaling policies (up by 100 % or 4 pods a 15 s period, the higher;
down by 100 %). More than it has: it starts them at once; each serves after its start-up (its engine's,
perf/startup.py, or the block's startup_s) and holds its GPUs from the moment it starts. Fewer: it stops first the
replicas still starting, then ready ones, in the order Kubernetes' ReplicaSet deletes pods (pkg/controller
controller_utils.go ActivePodsWithRanks, blind to load: not ready before ready, then the most recently ready,
deletion_order); a ready one takes no new requests and leaves once its last one finishes (found at the next sync, or
within 15 s when the period is longer). A replica started again is a new engine process: its prefix cache and host
KV tier start empty (PrefixCache.reset; a KV store beside the fleet keeps its blocks). The router sees the
ready replicas only (decode replicas: the KV transfers' router). At zero (min_replicas 0: KEDA's or Knative's scale
to zero) requests wait at the cluster's gateway; the first starts a replica at once and they go to it when it serves
(to the replicas ready at that instant, shared by the router's rule, when several start together).
A replica's GPU time is counted from its start to its leaving: the run's price and idle energy follow it.
Metric sla: NVIDIA Dynamo's SLA planner sets the replicas instead (sim/sla_planner.py): its throughput-based mode at
each adjustment interval, up or down at once; its load-based mode one at a time every load period; the replicas
start, serve and drain as above. Two groups' planners under one GPU budget adjust together (sim/planner_budget.py
calls them: `paired`). Autoscaler kpa: Knative's Pod Autoscaler instead (sim/kpa.py) on concurrency or rps, sampled
every second, deciding every tick (2 s), its count set at once, its last replica kept for the scale-to-zero grace
period (KpaDecider.scale_to_zero).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from phasewise.errors import PhasewiseError
from phasewise.perf.startup import startup_estimate
from phasewise.sim.hpa_behavior import HpaBehavior
from phasewise.sim.kpa import KpaDecider
from phasewise.sim.sla_planner import SlaPlanner

if TYPE_CHECKING:
    from phasewise.sim.autoscale_block import Autoscale
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.instance import Instance

# a draining replica's leaving is found at the next sync, or this often when the period is longer (a planner's 180 s)
DRAIN_CHECK_S = 15.0
KPA_SAMPLE_S = 1.0  # Knative's metric collector scrapes the revision's pods every second
# an autoscaler's loop runs through idle hours as through busy ones: a run whose arrivals span more of its periods
# than this (a year at 15 s, 23 days at Knative's 1 s; a trace replayed at a vanishing rate) is refused rather than
# left to run for hours
MAX_AUTOSCALER_TICKS = 2_000_000


def check_span(scalers: list[Autoscaler], span_s: float) -> None:
    """A one-line error when the arrivals' span holds more than MAX_AUTOSCALER_TICKS of an autoscaler's periods."""
    for scaler in scalers:
        field, tick = shortest_period(scaler.config)
        if span_s / tick > MAX_AUTOSCALER_TICKS:
            longer = (f", or give a longer {field}" if field.endswith("_s") else f" (its period is {field})")
            raise PhasewiseError(f"autoscale: the arrivals span {span_s:.3g} s, {span_s / tick:.3g} of the "
                                 f"autoscaler's {tick:g} s periods (at most {MAX_AUTOSCALER_TICKS:,}): replay the "
                                 f"trace at a higher rate{longer}")


def shortest_period(config: Autoscale) -> tuple[str, float]:
    """(what sets it, seconds) of the shortest period of an autoscale block's loops: its sync (the KPA's tick too),
    Knative's 1 s sampling, the planner's load period, KEDA's poll."""
    periods = [("sync_period_s", config.sync_period_s)]
    if config.autoscaler == "kpa":
        periods.append(("the KPA's 1 s sampling, fixed", KPA_SAMPLE_S))
    if config.metric == "sla" and config.load_scaling:
        periods.append(("load_period_s", config.load_period_s))
    if config.autoscaler == "keda":
        periods.append(("polling_interval_s", config.polling_interval_s))
    return min(periods, key=lambda named: named[1])


def deletion_order(times_s: list[float], now: float) -> list[int]:
    """Indices of replicas in the order Kubernetes' ReplicaSet deletes its pods among pods alike (same phase and
    readiness; pkg/controller/controller_utils.go ActivePodsWithRanks.Less, rules 6 and 8): `times_s` their ready
    (or, not ready, creation) times; the youngest first, ages compared in base-2 logarithmic buckets of nanoseconds
    (logarithmicRankDiff, LogarithmicScaleDown on by default since Kubernetes 1.22). Within a bucket Kubernetes
    orders by pod UID, at random: here the more recent first. No pod-deletion-cost, node co-location or restarts."""
    def bucket(t: float) -> int:
        age_ns = (now - t) * 1e9
        return int(math.log2(age_ns)) if age_ns > 0 else -1
    return sorted(range(len(times_s)), key=lambda k: (bucket(times_s[k]), -times_s[k]))


def hpa_replicas(ratio: float, ready: int, starting: int, tolerance: float) -> int:
    """The HPA's replica count for a pods metric (kubernetes pkg/controller/podautoscaler replica_calculator.go
    calcPlainMetricReplicas): `ratio` the ready replicas' mean over the target. Replicas still starting have no
    metric yet (its missing pods): on a scale-down they count as at the target, on a scale-up as at 0, and a
    change that the recount turns within the tolerance or the other way keeps the current count."""
    if not starting:
        return ready if abs(ratio - 1.0) <= tolerance else math.ceil(ready * ratio)
    current = ready + starting
    recount = (ready * ratio + (starting if ratio < 1.0 else 0.0)) / current if ratio != 1.0 else ratio
    if abs(recount - 1.0) <= tolerance or (ratio < 1.0 < recount) or (recount < 1.0 < ratio):
        return current
    wanted = math.ceil(recount * current)
    if (recount < 1.0 and wanted > current) or (recount > 1.0 and wanted < current):
        return current
    return wanted


class Autoscaler:
    __slots__ = ("config", "cluster", "loop", "group", "replicas", "routed", "state", "since_s", "active_s",
                 "gpu_periods", "version", "behavior", "events", "startup_s", "n_requests", "peak", "mean_replicas",
                 "last_routed", "planner", "drain_check", "kpa", "sampled_routed", "keda_routed", "keda_active_s",
                 "ready_s")

    def __init__(self, config: Autoscale, cluster: Cluster, group: int, replicas: list[Instance], routed: list,
                 n_requests: int, paired: bool = False) -> None:
        """`replicas`: every replica group `group` may run, one instance each (pp 1); `routed`: the router's list
        of instances its role's requests (or KV transfers) go to, this group's ready replicas among them; `paired`:
        its planner adjusts together with the other group's under a GPU budget (sim/planner_budget.py), which calls
        it (no syncs of its own)."""
        self.config, self.cluster, self.loop, self.group = config, cluster, cluster.loop, group
        self.replicas = replicas
        self.routed = routed  # changed in place: the router sees the ready replicas only
        first = replicas[0]
        self.startup_s = config.startup_s if config.startup_s is not None else \
            startup_estimate(first.cost, first.engine).total_s
        n = len(replicas)
        if config.activation_scale is not None and config.activation_scale > n:
            # Knative's activation-scale is the fewest replicas while there is traffic (and the wake from zero): above
            # the most the group runs it could never hold
            raise PhasewiseError(f"autoscale activation_scale ({config.activation_scale}) is above the group's "
                                 f"replicas ({n}), the most it runs: give 1 to {n}")
        serving = config.min_replicas if config.initial_replicas is None else config.initial_replicas
        self.state = ["ready" if k < serving else "off" for k in range(n)]
        for inst in replicas[serving:]:
            routed.remove(inst)
        self.since_s = [0.0 if k < serving else math.nan for k in range(n)]  # GPU time from here
        self.ready_s = list(self.since_s)  # when each replica became ready (NaN: not ready)
        self.active_s = [0.0] * n  # GPU time of the periods that ended
        self.gpu_periods: list[tuple[float, float]] = []  # (start, end) of every period a replica held its GPUs
        self.version = [0] * n  # a start the autoscaler took back does not become ready later
        # the HPA's stabilization windows and scaling policies (neither Dynamo's planner nor Knative's KPA has them)
        self.behavior = HpaBehavior(config) if config.metric != "sla" and config.autoscaler != "kpa" else None
        self.events: list[tuple[float, str, int]] = []  # (time, "up" | "down", replicas after)
        self.n_requests = n_requests
        self.peak = serving
        self.mean_replicas = math.nan  # over the run (finish())
        self.last_routed = 0  # the cluster's routed requests at the last sync (rps)
        self.planner = SlaPlanner(config, cluster, first) if config.metric == "sla" else None
        self.drain_check = False  # a check of the draining replicas is due (periods longer than DRAIN_CHECK_S)
        self.kpa = None if config.autoscaler != "kpa" else KpaDecider(
            config.target * config.target_utilization_percentage / 100.0, config.stable_window_s,
            config.stable_window_s * config.panic_window_percentage / 100.0,
            config.panic_threshold_percentage / 100.0, config.max_scale_up_rate, config.max_scale_down_rate,
            config.activation_scale, config.scale_down_delay_s, config.scale_to_zero_grace_period_s,
            active_since_s=0.0 if serving else math.nan)
        self.sampled_routed = 0  # the cluster's routed requests at the last KPA sample
        self.keda_routed, self.keda_active_s = 0, 0.0  # at KEDA's last poll; when its metric was last above zero
        if config.autoscaler == "keda":
            self.loop.at(config.polling_interval_s, self.keda_poll)
        if self.kpa is not None:
            self.loop.at(KPA_SAMPLE_S, self.kpa_sample)
        if paired:
            return
        if self.planner is not None and config.load_scaling:
            self.loop.at(config.load_period_s, self.load_sync)
        self.loop.at(config.sync_period_s, self.sync)

    def tick_s(self) -> float:
        """The shortest period of its loops (sync, Knative's tick and sampling, KEDA's poll, the planner's load
        period)."""
        return self.shortest_period()[1]

    def shortest_period(self) -> tuple[str, float]:
        """(what sets it, seconds) of the shortest period of its loops: tick_s and the field that sets it."""
        return shortest_period(self.config)

    def wake(self) -> None:
        """A request reached the gateway with no replica serving: a group that takes requests and has none ready
        or starting starts one now (scale from zero, as Knative's activator wakes it); under KEDA the next poll
        does (keda_poll)."""
        if self.config.autoscaler == "keda":
            return
        if self.replicas[0].role != "decode" and not self._count("ready") and not self._count("starting"):
            first = 1 if self.kpa is None else min(self.kpa.activation_scale, len(self.replicas))
            self._scale_up(first, 0, self.loop.now)

    def keda_poll(self) -> None:
        """KEDA's loop, every polling interval: at zero, one replica once the metric (the requests the gateway holds)
        is above the activation threshold; above zero, to zero (min_replicas 0) once the metric's total has stayed
        at or below it for the cooldown period. Between, the HPA scales (sync)."""
        now, config = self.loop.now, self.config
        if self._run_over():
            return
        self._leave_drained(now)
        current = self._count("ready") + self._count("starting")
        routed, self.keda_routed = self.cluster.routed_requests - self.keda_routed, self.cluster.routed_requests
        total = self._keda_total(self._ready_replicas(), routed, config.polling_interval_s)
        if total > config.activation_threshold:
            self.keda_active_s = now
            if not current:
                self._scale_up(1, 0, now)
        elif current and config.min_replicas == 0 and now - self.keda_active_s >= config.cooldown_period_s:
            self._scale_down(current, now)
        self.loop.at(now + config.polling_interval_s, self.keda_poll)

    def _run_over(self) -> bool:
        """Every request finished or rejected: no more syncs or checks."""
        return self.cluster.done + self.cluster.rejected >= self.n_requests

    def _count(self, state: str) -> int:
        return sum(1 for s in self.state if s == state)

    def _ready_replicas(self) -> list[Instance]:
        return [inst for inst, state in zip(self.replicas, self.state) if state == "ready"]

    def _metric_total(self, ready: list[Instance], routed: int, period_s: float) -> float:
        """The metric summed over the ready replicas, as a Prometheus query behind KEDA's trigger sums it (rps: the
        requests routed a second, `routed` over `period_s`; kv_usage: each replica's share of its KV cache in use,
        vllm:kv_cache_usage_perc, a pool the virtual engines of a PP replica share counted once)."""
        metric = self.config.metric
        if metric == "rps":
            return routed / period_s
        if metric == "kv_usage":
            return sum(i.gauges()[2] / i.kv.capacity for i in ready if i.first_of_pool)
        if metric == "concurrency":  # in flight, as a proxy in front counts them (a chunked prefill on every engine)
            return sum(i.in_flight() for i in ready)
        gauges = [i.gauges() for i in ready]
        column = 0 if metric == "running" else 1
        return sum(g[column] for g in gauges)

    def _keda_total(self, ready: list[Instance], routed: int, period_s: float) -> float:
        """KEDA's trigger value: the metric's total with the requests the gateway holds (as its HTTP add-on's
        interceptor counts its pending requests). One query gives both the HPA's external metric and the activity
        check (a scaler's GetMetricsAndActivity returns the value and value > activationThreshold)."""
        return self._metric_total(ready, routed, period_s) + self._held()

    def _held(self) -> int:
        """Requests the gateway holds for this group, as Knative's activator and KEDA's HTTP interceptor report them
        beside the replicas' metric (none for a decode group, which takes none, nor on rps, which counted them as
        received)."""
        if self.replicas[0].role == "decode" or self.config.metric == "rps":
            return 0
        return len(self.cluster.gateway)

    def _metric_mean(self, ready: list[Instance], routed: int) -> float:
        """The metric over the ready replicas; `routed`: requests routed since the last sync."""
        if self.config.metric == "rps":  # a second over the last period, per instance taking them
            return routed / self.config.sync_period_s / max(len(self.routed), 1)
        replicas = sum(1 for i in ready if i.first_of_pool)  # (a PP replica's virtual engines: one replica)
        return self._metric_total(ready, routed, self.config.sync_period_s) / replicas

    def planner_wanted(self, now: float) -> tuple[int | None, int]:
        """The throughput-based planner's replicas for the next interval (None: no adjustment) and the current
        count (ready and starting)."""
        self._leave_drained(now)
        ready = self._count("ready")
        routed, self.last_routed = self.cluster.routed_requests - self.last_routed, self.cluster.routed_requests
        return self.planner.wanted(now, ready, routed), ready + self._count("starting")

    def kpa_sample(self) -> None:
        """Knative's metric collection, every second: the revision's requests in flight (the ready replicas' and
        the gateway's, as the activator reports those it holds) or the requests it received that second."""
        if self._run_over():
            return
        routed, self.sampled_routed = self.cluster.routed_requests - self.sampled_routed, self.cluster.routed_requests
        self.kpa.record(self.loop.now, self._metric_total(self._ready_replicas(), routed, KPA_SAMPLE_S) + self._held())
        self.loop.at(self.loop.now + KPA_SAMPLE_S, self.kpa_sample)

    def sync(self) -> None:
        now, config = self.loop.now, self.config
        if self._run_over():
            return
        if self.kpa is not None:  # Knative's tick: the decider's count, at once (within the group's bounds)
            self._leave_drained(now)
            wanted = self.kpa.desired(now, self._count("ready"))
            current = self._count("ready") + self._count("starting")
            if wanted is not None:  # to zero only after Knative's grace period (handleScaleToZero)
                wanted = self.kpa.scale_to_zero(now, wanted, current, self._count("ready"))
            if wanted is not None:
                self._set(wanted, current, now)
            self.loop.at(now + config.sync_period_s, self.sync)
            return
        if self.planner is not None:  # Dynamo's planner: the replicas its throughput-based mode wants, at once (with
            if config.throughput_scaling:  # the load-based mode too: a floor for that one's decisions)
                wanted, current = self.planner_wanted(now)
                if wanted is not None and not config.load_scaling:
                    self._set(wanted, current, now)
            self.loop.at(now + config.sync_period_s, self.sync)
            return
        self._leave_drained(now)
        serving = self._ready_replicas()
        ready = len(serving)
        current = ready + self._count("starting")
        routed, self.last_routed = self.cluster.routed_requests - self.last_routed, self.cluster.routed_requests
        if config.autoscaler == "keda":  # the HPA on KEDA's external metric: its total over the target a replica
            if not current:  # at zero the HPA is off; KEDA's poll activates the group
                self.loop.at(now + config.sync_period_s, self.sync)
                return
            total = self._keda_total(serving, routed, config.sync_period_s)
            wanted = current if abs(total / (config.target * current) - 1.0) <= config.tolerance else \
                max(1, math.ceil(total / config.target))  # KEDA keeps the HPA at one replica at least
        elif ready:
            wanted = hpa_replicas(self._metric_mean(serving, routed) / config.target, ready, current - ready,
                                  config.tolerance)
        else:  # at zero (or all starting): the requests the gateway holds are the queue
            wanted = max(current, math.ceil(len(self.cluster.gateway) / config.target))
        wanted = min(max(wanted, config.min_replicas), len(self.replicas))
        desired = self.behavior.desired(now, wanted, current)  # stabilized and rate-limited (sim/hpa_behavior.py)
        if desired > current:
            self._scale_up(desired, current, now)
        elif desired < current:
            self._scale_down(current - desired, now)
        self.behavior.record(now, current, self._count("ready") + self._count("starting"))
        self.loop.at(now + config.sync_period_s, self.sync)

    def load_wanted(self) -> tuple[int | None, int]:
        """The load-based planner's replicas (one more or fewer than the ready ones, the throughput-based count a
        floor when both run; None: no step) and the ready count. Call it with none starting."""
        self._leave_drained(self.loop.now)
        current = self._count("ready")
        step = self.planner.load_step(self._ready_replicas())
        if not step:
            return None, current
        return max(current + step, self.planner.floor if self.config.throughput_scaling else 0), current

    def load_kept(self, wanted: int | None, current: int) -> int:
        """A load-based want, or where it took no step the current count, at least the throughput-based floor."""
        if wanted is not None:
            return wanted
        return max(current, self.planner.floor if self.config.throughput_scaling else 0)

    def load_sync(self) -> None:
        """Dynamo's load-based mode: one replica more or fewer from the ready replicas' predicted latencies, none
        while a scaling it asked for is still starting (its blocking scaling)."""
        now = self.loop.now
        if self._run_over():
            return
        if self._count("starting"):
            self._leave_drained(now)
        else:
            wanted, current = self.load_wanted()
            if wanted is not None:
                self.set_counted(wanted, current, now)
        self.loop.at(now + self.config.load_period_s, self.load_sync)

    def set_counted(self, wanted: int, current: int, now: float) -> None:
        """A load-based decision applied, counted as the planner's scale-up or -down when it changes the group."""
        if self._set(wanted, current, now):
            if min(max(wanted, self.config.min_replicas), len(self.replicas)) > current:
                self.planner.load_ups += 1
            else:
                self.planner.load_downs += 1

    def _set(self, wanted: int, current: int, now: float) -> bool:
        """The planner's replica count, within the group's bounds, at once; False: no change."""
        wanted = min(max(wanted, self.config.min_replicas), len(self.replicas))
        if wanted > current:
            self._scale_up(wanted, current, now)
        elif wanted < current:
            self._scale_down(current - wanted, now)
        return wanted != current

    def _leave_drained(self, now: float) -> None:
        """Stop the draining replicas that hold nothing: no request, no iteration, and (prefill) no KV a decode
        instance has still to pull."""
        for k, inst in enumerate(self.replicas):
            if self.state[k] == "draining" and inst.outstanding == 0 and not inst.busy and not inst.sending:
                self._stop(k, now)

    def _check_drains(self) -> None:
        self._leave_drained(self.loop.now)
        self.drain_check = "draining" in self.state and not self._run_over()
        if self.drain_check:
            self.loop.at(self.loop.now + DRAIN_CHECK_S, self._check_drains)

    def _scale_up(self, wanted: int, current: int, now: float) -> None:
        """Start up to `wanted` - `current` replicas: those off (the group's replicas hold GPUs at most, draining
        ones included)."""
        started = [k for k, s in enumerate(self.state) if s == "off"][:wanted - current]
        for k in started:
            self.state[k], self.since_s[k] = "starting", now
            self.version[k] += 1
            self.loop.at(now + self.startup_s, self._ready, k, self.version[k])
        if started:
            self.peak = max(self.peak, len(self.state) - self._count("off"))
            self.events.append((now, "up", current + len(started)))

    def _ready(self, k: int, version: int) -> None:
        """Replica `k` serves (unless its start was taken back). The requests the gateway holds go once every replica
        ready at this instant is routable: the last of a run of ready events due now (replicas started together,
        any group's) releases them, so the router shares them among those replicas by its rule, as Knative's
        activator and a load balancer send held requests to the endpoints ready."""
        loop, cluster = self.loop, self.cluster
        if self.state[k] == "starting" and self.version[k] == version:
            self.state[k], self.ready_s[k] = "ready", loop.now
            if self.kpa is not None and math.isnan(self.kpa.active_since_s):  # the revision serves again: active
                self.kpa.active_since_s = loop.now
            self.routed.append(self.replicas[k])
            cluster.release_due = True
        when, call = loop.next_call()
        if when == loop.now and getattr(call, "__func__", None) is Autoscaler._ready:
            return  # another replica's ready event is next, at this instant: it releases them
        if cluster.release_due:
            cluster.release_due = False
            cluster.release_gateway()

    def _scale_down(self, fewer: int, now: float) -> None:
        """Stop `fewer` replicas: those starting first, then drain ready ones, each kind in the ReplicaSet's order
        (deletion_order: the youngest first, whatever their load). A group that takes requests keeps one while the
        gateway holds some for it (Knative's activator reports the requests it buffers, so the revision is not
        scaled to zero under them; with none left, nothing would wake it)."""
        if self.replicas[0].role != "decode" and self.cluster.gateway:
            fewer = min(fewer, self._count("ready") + self._count("starting") - 1)
            if fewer <= 0:
                return
        starting = [k for k, s in enumerate(self.state) if s == "starting"]
        for j in deletion_order([self.since_s[k] for k in starting], now)[:fewer]:  # not serving yet: stopped now
            self._stop(starting[j], now)
        left = fewer - min(fewer, len(starting))
        ready = [k for k, s in enumerate(self.state) if s == "ready"]
        for j in deletion_order([self.ready_s[k] for k in ready], now)[:left]:
            k = ready[j]
            self.state[k] = "draining"
            self.routed.remove(self.replicas[k])
        if left and self.config.sync_period_s > DRAIN_CHECK_S and not self.drain_check:
            self.drain_check = True
            self.loop.at(now + DRAIN_CHECK_S, self._check_drains)
        self.events.append((now, "down", self._count("ready") + self._count("starting")))

    def _stop(self, k: int, now: float) -> None:
        """Replica `k` leaves its GPUs: its engine process ends, and with it the KV it cached (a start later is a new
        process, its prefix cache and host tier empty, the router's index told; PrefixCache.reset)."""
        self.active_s[k] += now - self.since_s[k]
        self.gpu_periods.append((self.since_s[k], now))
        self.state[k], self.since_s[k], self.ready_s[k] = "off", math.nan, math.nan
        prefix = self.replicas[k].kv.prefix
        for cache in () if prefix is None else prefix.ranks if prefix.ranked else (prefix,):
            cache.reset()
        self.cluster.front.forget(self.replicas[k])  # what the router recorded there (Dynamo's approximate index)

    def finish(self, end_s: float) -> None:
        """At the run's end: every replica still holding GPUs counts them to `end_s`; the run's figures."""
        for k, state in enumerate(self.state):
            if state != "off":
                self.active_s[k] += max(end_s - self.since_s[k], 0.0)
                self.gpu_periods.append((self.since_s[k], max(end_s, self.since_s[k])))
                self.state[k], self.since_s[k] = "off", math.nan
        replica_s = sum(self.active_s)
        self.mean_replicas = replica_s / end_s if end_s > 0 else float(len(self.replicas))
        config = self.config
        self.cluster.policy_stats.setdefault("autoscale", []).append({
            "group": self.group, "role": self.replicas[0].role, "min_replicas": config.min_replicas,
            "initial_replicas": config.min_replicas if config.initial_replicas is None else config.initial_replicas,
            "max_replicas": len(self.replicas), "metric": config.metric, "target": config.target,
            "sync_period_s": config.sync_period_s, "startup_s": self.startup_s, "autoscaler": config.autoscaler,
            **({"panics": self.kpa.panics, "target_utilization_percentage": config.target_utilization_percentage,
                "stable_window_s": config.stable_window_s, "scale_down_delay_s": config.scale_down_delay_s,
                "activation_scale": config.activation_scale,
                "scale_to_zero_grace_period_s": config.scale_to_zero_grace_period_s} if self.kpa is not None else {}),
            **({"polling_interval_s": config.polling_interval_s, "cooldown_period_s": config.cooldown_period_s,
                "activation_threshold": config.activation_threshold} if config.autoscaler == "keda" else {}),
            "scale_down_window_s": config.scale_down_window_s, "scale_ups": sum(e[1] == "up" for e in self.events),
            "scale_downs": sum(e[1] == "down" for e in self.events), "peak_replicas": self.peak,
            "replica_seconds": replica_s, "mean_replicas": self.mean_replicas,
            "gpu_periods_s": [[start, end] for start, end in sorted(self.gpu_periods)],  # each replica's, holding GPUs
            "events": [{"t_s": t, "action": action, "replicas": count} for t, action, count in self.events],
            **(self.planner.summary() if self.planner is not None else {})})

    def active_seconds(self) -> dict[Instance, float]:
        """Each replica's GPU time (after finish())."""
        return dict(zip(self.replicas, self.active_s))
