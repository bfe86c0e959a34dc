"""Knative's Pod Autoscaler (KPA) decision (knative/serving pkg/autoscaler/scaling/autoscaler.go Scale), for an
autoscale block with `autoscaler: kpa` on metric concurrency or rps (sim/autoscaler.py samples and applies it).

The metric is sampled every second as the whole revision's (sum over the ready replicas of the requests in flight,
plus those the activator, here the cluster's gateway, holds; or the requests received that second) and averaged
over two windows: stable (60 s) and panic (10 % of it, 6 s). Every tick (2 s) it wants ceil(stable average / target
value) replicas, the target value the per-replica target x the target utilization (70 %); both counts are kept
within [floor(ready / max scale-down rate), ceil(ready x max scale-up rate)] (rates 2 and 1000), ready counted at
least 1. When the panic count reaches the panic threshold (200 %) of the ready replicas it panics: it wants the
larger of the two counts and never fewer than the most it wanted while panicking, until a whole stable window
passes without crossing the threshold again. Defaults: Knative's config-autoscaler (stable-window 60s,
panic-window-percentage 10.0, panic-threshold-percentage 200.0, max-scale-up-rate 1000.0, max-scale-down-rate 2.0,
container-concurrency-target-percentage 70, tick-interval 2s; knative.dev/docs/serving/autoscaling).
Activation scale (autoscaling.knative.dev/activation-scale, default 1): while either window's count is above zero,
that count is at least this many replicas. Scale-down delay (scale-down-delay, default 0 s): the count it acts on
is the most it wanted over that many seconds back, so it scales down only once the lower want has lasted that
long (Knative's delay window, applied after the panic logic). To zero (scale_to_zero: Knative's reconciler,
pkg/reconciler/autoscaling/kpa/scaler.go handleScaleToZero): a count of 0 from a revision active for less than a
stable window keeps one replica; after that it marks the revision inactive (the activator in the path) and keeps
its replicas for the scale-to-zero grace period (config-autoscaler scale-to-zero-grace-period, default 30 s), a
count above 0 meanwhile making it active again. Not here: the target burst capacity's routing through the
activator, the weighted-exponential window averaging (linear is the default), scale-to-zero-pod-retention-period
(default 0 s), the activation timeout.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class KpaDecider:
    target_value: float  # per replica: the target x the target utilization
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0  # the panic count over the ready replicas that starts (or extends) panicking
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    activation_scale: int = 1  # the fewest replicas while there is traffic (Knative's activation-scale)
    scale_down_delay_s: float = 0.0  # a lower count acts only once it has lasted this long (scale-down-delay)
    # inactive this long before the last replicas go (scale-to-zero-grace-period; config-autoscaler's default 30 s)
    scale_to_zero_grace_period_s: float = 30.0
    active_since_s: float = math.nan  # when a replica last served after none did (the PA's Active; NaN: none serves)
    inactive_since_s: float = math.nan  # when a count of 0 marked it inactive (NaN: active)
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (time, the revision's metric)
    wants: deque[tuple[float, int]] = field(default_factory=deque)  # (time, count) within the scale-down delay
    panic_since_s: float = math.nan  # when it last crossed the panic threshold (NaN: not panicking)
    max_panic_replicas: int = 0
    panics: int = 0  # times it started panicking

    def record(self, now: float, value: float) -> None:
        self.samples.append((now, value))
        while self.samples[0][0] <= now - self.stable_window_s:
            self.samples.popleft()

    def _average(self, now: float, window_s: float) -> float:
        values = [value for t, value in self.samples if t > now - window_s]
        return sum(values) / len(values) if values else 0.0

    def desired(self, now: float, ready: int) -> int | None:
        """The replicas it wants at this tick; None before the first sample (Knative's "no data")."""
        if not self.samples:
            return None
        counted = max(1, ready)
        most = math.ceil(self.max_scale_up_rate * counted)
        fewest = math.floor(counted / self.max_scale_down_rate)
        stable_count = math.ceil(self._average(now, self.stable_window_s) / self.target_value)
        panic_count = math.ceil(self._average(now, self.panic_window_s) / self.target_value)
        over = panic_count / counted >= self.panic_threshold
        if over:
            self.panics += math.isnan(self.panic_since_s)
            self.panic_since_s = now
        elif not math.isnan(self.panic_since_s) and self.panic_since_s + self.stable_window_s < now:
            self.panic_since_s, self.max_panic_replicas = math.nan, 0  # the surge reached the stable window
        wanted = min(max(stable_count, fewest), most)
        panic_wanted = min(max(panic_count, fewest), most)
        if self.activation_scale > 1:  # any traffic: at least the activation scale
            wanted = max(wanted, self.activation_scale) if stable_count > 0 else wanted
            panic_wanted = max(panic_wanted, self.activation_scale) if panic_count > 0 else panic_wanted
        if not math.isnan(self.panic_since_s):  # panicking: the larger count, and never down
            wanted = max(wanted, panic_wanted, self.max_panic_replicas)
            self.max_panic_replicas = wanted
        if self.scale_down_delay_s > 0:  # the most it wanted over the delay: a lower count waits that long
            self.wants.append((now, wanted))
            while len(self.wants) > 1 and self.wants[0][0] <= now - self.scale_down_delay_s:
                self.wants.popleft()  # (a delay below the clock's resolution keeps this tick's own want)
            wanted = max(count for _, count in self.wants)
        return wanted

    def scale_to_zero(self, now: float, wanted: int, current: int, ready: int) -> int | None:
        """The count the reconciler applies for this tick's `wanted` (Knative's handleScaleToZero), `current`
        replicas held (ready or starting), `ready` of them serving; None: no change this tick. Above 0 it applies as
        is. 0 from a revision serving for less than a stable window: 1 (the rest of the window first); then it is
        marked inactive and keeps its replicas until the grace period has passed; while none serves yet
        (activating), no change."""
        if not ready:
            self.active_since_s = math.nan
        if wanted > 0 or current == 0:
            self.inactive_since_s = math.nan
            return wanted
        if not ready:  # activating: Knative waits (up to its activation timeout, not modelled)
            return None
        if math.isnan(self.inactive_since_s):
            if now - self.active_since_s < self.stable_window_s:
                return 1
            self.inactive_since_s = now  # marked inactive: the activator in the path, the replicas kept
            return None
        return 0 if now - self.inactive_since_s >= self.scale_to_zero_grace_period_s else None
