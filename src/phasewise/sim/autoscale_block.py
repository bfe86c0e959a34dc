"""An instance group's `autoscale` block (sim/deployment.py InstanceGroup.autoscale, or the deployment's for its one
collocated group): which autoscaler runs it (Kubernetes' HPA with its behavior, Knative's KPA, NVIDIA Dynamo's SLA
planner) and with what knobs, each with its defaults and its one-line errors; sim/autoscaler.py runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.workload.traces import BUNDLED

# an Autoscale block's fields for metric sla only (Dynamo's planner)
PLANNER_FIELDS = ("ttft_s", "itl_s", "correction", "throughput_scaling", "load_scaling", "load_period_s",
                  "load_down_sensitivity", "predictor", "predictor_log1p", "kalman_q_level", "kalman_q_trend",
                  "kalman_r", "predictor_warmup_trace", "max_gpu_budget")
MAX_STARTUP_S = 86_400.0  # a replica's start-up, at most (Autoscale.startup_s)
KALMAN_FIELDS = ("kalman_q_level", "kalman_q_trend", "kalman_r")
# the planner's fields that one of its modes alone reads (sim/autoscaler.py sync / load_sync, sim/sla_planner.py):
# given while that mode is off, they do nothing, and are an error (its switch, whether it is on by default)
MODE_FIELDS = (("throughput-based", "throughput_scaling", True,
                ("sync_period_s", "correction", "predictor", "predictor_log1p", "predictor_warmup_trace",
                 *KALMAN_FIELDS)),
               ("load-based", "load_scaling", False, ("load_period_s", "load_down_sensitivity")))
# an Autoscale block's fields for autoscaler keda only (KEDA's ScaledObject around the HPA)
KEDA_FIELDS = ("polling_interval_s", "cooldown_period_s", "activation_threshold")
# an Autoscale block's fields for autoscaler kpa only (Knative's Pod Autoscaler)
KPA_FIELDS = ("stable_window_s", "panic_window_percentage", "panic_threshold_percentage", "max_scale_up_rate",
              "max_scale_down_rate", "target_utilization_percentage", "scale_down_delay_s", "activation_scale",
              "scale_to_zero_grace_period_s")


def _runs(data, autoscaler: str, fields: tuple[str, ...], whose: str) -> bool:
    """Whether an autoscale block (its raw fields) runs `autoscaler`; its `fields` given to another are an error."""
    if not isinstance(data, dict):
        return False
    if data.get("autoscaler") == autoscaler:
        return True
    given = [key for key in fields if data.get(key) is not None]
    if given:
        raise ValueError(f"autoscale {given[0]} is {whose}: give autoscaler: {autoscaler} (allowed autoscalers: hpa, "
                         f"kpa, keda)")
    return False


def _switched_on(data: dict, switch: str, default: bool) -> bool:
    """Whether a raw block turns `switch` (a bool field) on, as pydantic will read it ("false" too); `default`
    where it is not given, or not a boolean (the field's own error follows)."""
    try:
        return _BOOL.validate_python(data.get(switch, default))
    except ValidationError:
        return default


_BOOL = TypeAdapter(bool)


class ScalingPolicy(NumbersNotBooleans):
    """One of an HPA's scaling policies (behavior.scaleUp / scaleDown .policies): at most `value` pods or `value`
    percent of the replicas at the start of each `period_s` (sim/hpa_behavior.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["pods", "percent"]
    value: int = Field(gt=0)  # pods, or percent of the replicas at the period's start (an integer, as Kubernetes')
    period_s: float = Field(gt=0, le=1800, allow_inf_nan=False)


# the HPA's default behavior (kubernetes.io HPA "Default Behavior")
HPA_SCALE_UP_POLICIES = (ScalingPolicy(type="percent", value=100, period_s=15),
                         ScalingPolicy(type="pods", value=4, period_s=15))
HPA_SCALE_DOWN_POLICIES = (ScalingPolicy(type="percent", value=100, period_s=15),)
# an Autoscale block's fields for the HPA only (neither Dynamo's planner nor Knative's KPA takes them)
HPA_FIELDS = ("tolerance", "scale_down_window_s", "scale_up_window_s", "scale_up_policies", "scale_down_policies",
              "scale_up_select", "scale_down_select")


class Autoscale(NumbersNotBooleans):
    """A horizontal autoscaler over an instance group's replicas (the deployment's one collocated group, or any group,
    a disaggregated deployment's prefill and decode groups each their own), as Kubernetes' HPA (or KEDA behind it)
    runs one on an engine's metric: every `sync_period_s` it reads `metric` from the ready replicas (waiting:
    requests queued, vllm:num_requests_waiting; running: in the batch, vllm:num_requests_running; concurrency: both,
    in flight, as Knative's autoscaler counts them; rps: requests routed a second, over the last period, Knative's
    other metric; kv_usage: the KV cache's used share, vllm:kv_cache_usage_perc), wants ceil(replicas x mean /
    `target`) of them (no change within `tolerance` of the target), adds them at once (at most max(100 %, 4) more a
    period) and removes them only when every want of the last `scale_down_window_s` was lower. A replica added
    serves after `startup_s` (None: the engine's predicted start-up, perf/startup.py); one removed stops taking
    requests and leaves when its last one finishes. The group's `replicas` is the most it runs; `initial_replicas`
    serve from the start (a Deployment's spec.replicas before the autoscaler's first decision; default
    `min_replicas`). Defaults: the HPA's
    (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale: --horizontal-pod-autoscaler-sync-period 15
    s, tolerance 0.1, scale-down stabilization window 300 s, scale-up policies 100 % or 4 pods per 15 s).
    metric `sla`: NVIDIA Dynamo's SLA planner instead (a disaggregated deployment's prefill or decode group, or a
    collocated group: its aggregated planner; sim/sla_planner.py): throughput-based, every `sync_period_s`
    (its adjustment interval, default 180 s) it sets the replicas the predicted load needs to meet `ttft_s` and
    `itl_s` (defaults 0.5 s and 0.05 s), its profile the cost model's; load-based (`load_scaling`, off by default as
    in Dynamo), every `load_period_s` (5 s) one more replica when every replica's next TTFT (or ITL) is predicted
    above the SLA, one fewer when all are below `load_down_sensitivity` (0.8) of it, the throughput-based count a
    floor when both run. `predictor`: how it forecasts the next interval's requests, ISL and OSL (constant: the last
    interval; kalman: Dynamo's local linear trend filter, sim/load_predictor.py). `max_gpu_budget`: Dynamo's GPU
    budget over both groups, given the same in the prefill and the decode group's blocks (sim/planner_budget.py);
    none by default, where each group's `replicas` caps it (Dynamo's default is 8 GPUs). No target, tolerance or
    stabilization window (Dynamo's PlannerConfig defaults: components/planner, docs.nvidia.com/dynamo planner
    guide). `autoscaler: kpa`: Knative's Pod Autoscaler instead of the HPA's algorithm, on concurrency or rps
    (sim/kpa.py): every second's revision-wide metric averaged over a stable and a panic window, a tick every 2 s,
    `target` the per-replica target before `target_utilization_percentage` (70); its knobs are Knative's
    config-autoscaler keys (`scale_down_delay_s`, 0: a lower count acts once it has lasted that long;
    `scale_to_zero_grace_period_s`, 30: how long the last replicas stay once it is inactive) and the revision's
    `activation_scale` (1: the fewest replicas while there is traffic, from zero too). The HPA's
    `behavior`: `scale_up_window_s` (0) beside `scale_down_window_s`, scaling policies `scale_up_policies` /
    `scale_down_policies` (each {type: pods|percent, value, period_s}) and `scale_up_select` / `scale_down_select`
    (max|min|disabled), Kubernetes' defaults (sim/hpa_behavior.py).
    (sim/autoscaler.py)"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # 0: scaled to zero, requests held at the gateway meanwhile (autoscaler kpa or keda: the HPA's are Pods metrics)
    min_replicas: int = Field(default=1, ge=0)
    # replicas serving when the run starts (a Deployment's spec.replicas before the autoscaler's first decision);
    # None: min_replicas
    initial_replicas: int | None = Field(default=None, ge=0)
    metric: Literal["waiting", "running", "concurrency", "rps", "kv_usage", "sla"] = "waiting"
    target: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # per ready replica (kv_usage: a share)
    sync_period_s: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_down_window_s: float = Field(default=300.0, ge=0, le=3600, allow_inf_nan=False)
    # the HPA's behavior beyond its scale-down window (sim/hpa_behavior.py): its scale-up stabilization window,
    # scaling policies and how it picks among them
    scale_up_window_s: float = Field(default=0.0, ge=0, le=3600, allow_inf_nan=False)
    scale_up_policies: tuple[ScalingPolicy, ...] = HPA_SCALE_UP_POLICIES
    scale_down_policies: tuple[ScalingPolicy, ...] = HPA_SCALE_DOWN_POLICIES
    scale_up_select: Literal["max", "min", "disabled"] = "max"
    scale_down_select: Literal["max", "min", "disabled"] = "max"
    # a day at most: a replica's start is minutes (weights, compile, graphs); the autoscaler's loop ticks through it
    startup_s: float | None = Field(default=None, ge=0, le=MAX_STARTUP_S, allow_inf_nan=False)
    # metric sla: the SLA the planner sizes for (mean TTFT, mean inter-token latency); whether the throughput-based
    # planner corrects its profile by the latencies it observes (Dynamo's --no-correction: False); its two modes
    ttft_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    itl_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    correction: bool | None = None
    throughput_scaling: bool | None = None
    load_scaling: bool | None = None
    load_period_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    load_down_sensitivity: float | None = Field(default=None, gt=0, le=1)
    predictor: Literal["constant", "kalman"] | None = None
    predictor_log1p: bool | None = None
    kalman_q_level: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    kalman_q_trend: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    kalman_r: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # a past trace (a CSV/JSONL file or a bundled name) the predictors see first, interval by interval
    predictor_warmup_trace: str | None = None
    max_gpu_budget: int | None = Field(default=None, ge=1)  # GPUs over both planned groups (sim/planner_budget.py)
    # hpa: Kubernetes' HPA algorithm (every metric); kpa: Knative's Pod Autoscaler (concurrency or rps; sim/kpa.py)
    autoscaler: Literal["hpa", "kpa", "keda"] = "hpa"
    # keda: the ScaledObject's polling interval (its activation and deactivation checks), cooldown period (quiet
    # seconds before it scales to zero) and activation threshold (the metric's total above which it is active)
    polling_interval_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cooldown_period_s: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    activation_threshold: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    stable_window_s: float | None = Field(default=None, ge=6, le=3600, allow_inf_nan=False)
    panic_window_percentage: float | None = Field(default=None, ge=1, le=100)
    panic_threshold_percentage: float | None = Field(default=None, ge=110, le=1000)
    max_scale_up_rate: float | None = Field(default=None, gt=1, allow_inf_nan=False)
    max_scale_down_rate: float | None = Field(default=None, gt=1, allow_inf_nan=False)
    target_utilization_percentage: float | None = Field(default=None, gt=0, le=100)
    scale_down_delay_s: float | None = Field(default=None, ge=0, le=3600, allow_inf_nan=False)
    activation_scale: int | None = Field(default=None, ge=1)
    # Knative's validation: "scale-to-zero-grace-period must be positive" (pkg/autoscaler/config/config.go)
    scale_to_zero_grace_period_s: float | None = Field(default=None, gt=0, le=3600, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _keda_defaults(cls, data):
        """autoscaler keda takes KEDA's ScaledObject defaults (pollingInterval 30 s, cooldownPeriod 300 s, activation
        threshold 0: keda.sh/docs/latest/reference/scaledobject-spec) beside the HPA's; its knobs without it are
        errors."""
        if not _runs(data, "keda", KEDA_FIELDS, "KEDA's"):
            return data
        if data.get("metric") == "sla":
            raise ValueError("autoscaler keda scales on an engine metric (waiting, running, concurrency, rps, "
                             "kv_usage); metric sla is Dynamo's planner, which needs no autoscaler")
        return {"polling_interval_s": 30.0, "cooldown_period_s": 300.0, "activation_threshold": 0.0,
                **{key: value for key, value in data.items() if value is not None}}

    @model_validator(mode="before")
    @classmethod
    def _knative_defaults(cls, data):
        """autoscaler kpa takes Knative's config-autoscaler defaults (stable-window 60s, panic-window-percentage 10,
        panic-threshold-percentage 200, max-scale-up-rate 1000, max-scale-down-rate 2,
        container-concurrency-target-percentage 70, tick-interval 2s, scale-down-delay 0s, scale-to-zero-grace-period
        30s: pkg/autoscaler/config/config.go defaultConfig; the revision annotation activation-scale 1) and refuses
        the HPA's knobs; the KPA's knobs without it are errors."""
        if not _runs(data, "kpa", KPA_FIELDS, "Knative's Pod Autoscaler's"):
            return data
        if data.get("metric") is None:
            # Knative's KPA scales on concurrency unless told otherwise: the revision annotation
            # autoscaling.knative.dev/metric defaults to "concurrency" for the KPA class (knative.dev/docs/serving/
            # autoscaling/autoscaling-metrics: "concurrency" (default) | "rps"); --autoscaler kpa's default too
            data = {**data, "metric": "concurrency"}
        if data.get("metric") not in ("concurrency", "rps"):
            raise ValueError(f"autoscaler kpa (Knative's Pod Autoscaler) scales on metric concurrency or rps (got "
                             f"{data.get('metric', 'waiting')})")
        hpa = [key for key in HPA_FIELDS if data.get(key) is not None]
        if hpa:
            raise ValueError(f"autoscaler kpa has no {hpa[0]} (the HPA's): its windows are stable_window_s and "
                             f"panic_window_percentage")
        return {"sync_period_s": 2.0, "stable_window_s": 60.0, "panic_window_percentage": 10.0,
                "panic_threshold_percentage": 200.0, "max_scale_up_rate": 1000.0, "max_scale_down_rate": 2.0,
                "target_utilization_percentage": 70.0, "scale_down_delay_s": 0.0, "activation_scale": 1,
                "scale_to_zero_grace_period_s": 30.0,
                **{key: value for key, value in data.items() if value is not None}}

    @model_validator(mode="before")
    @classmethod
    def _planner_defaults(cls, data):
        """metric sla takes Dynamo's planner defaults (components/planner/src/dynamo/planner/defaults.py
        SLAPlannerDefaults: adjustment_interval 180 s, ttft 0.5 s, itl 0.05 s; PlannerConfig: throughput scaling
        on, load scaling off, load_adjustment_interval 5 s, load_scaling_down_sensitivity 80, load_predictor_log1p
        false, kalman_q_level 1.0, kalman_q_trend 0.1, kalman_r 10.0; the predictor constant, not Dynamo's arima;
        the correction off with load scaling, as validate_sla_planner_args turns it off) and refuses the HPA's
        knobs."""
        if not isinstance(data, dict) or data.get("metric") != "sla":
            return data
        given = [key for key in ("target", *HPA_FIELDS) if data.get(key) is not None]
        if given:
            raise ValueError(f"autoscale metric sla (Dynamo's planner) sets the replicas its SLA needs: it takes no "
                             f"{given[0]} (its fields: sync_period_s, {', '.join(PLANNER_FIELDS)})")
        data = {key: value for key, value in data.items() if value is not None}
        for mode, switch, default, fields in MODE_FIELDS:
            given = [key for key in fields if key in data]
            if given and not _switched_on(data, switch, default):
                state = "false" if switch in data else "off (its default)"
                raise ValueError(f"autoscale {given[0]} is for the planner's {mode} mode: with {switch} {state} it "
                                 f"does nothing (drop it, or give {switch}: true)")
        kalman = [key for key in KALMAN_FIELDS if key in data]
        if kalman and data.get("predictor") != "kalman":
            raise ValueError(f"autoscale {kalman[0]} is the kalman predictor's: give predictor: kalman (allowed "
                             f"predictors: constant, kalman)")
        filter_defaults = {"kalman_q_level": 1.0, "kalman_q_trend": 0.1, "kalman_r": 10.0} \
            if data.get("predictor") == "kalman" else {}
        if _switched_on(data, "load_scaling", False):  # Dynamo's validate_sla_planner_args: no correction with it
            if data.get("correction"):
                raise ValueError("autoscale correction is off when load_scaling is on (Dynamo disables it: load-based "
                                 "scaling already answers to the latencies observed); drop correction")
            data["correction"] = False
        return {"sync_period_s": 180.0, "ttft_s": 0.5, "itl_s": 0.05, "correction": True, "throughput_scaling": True,
                "load_scaling": False, "load_period_s": 5.0, "load_down_sensitivity": 0.8, "predictor": "constant",
                "predictor_log1p": False, **filter_defaults, **data, "tolerance": 0.0, "scale_down_window_s": 0.0}

    @field_validator("predictor_warmup_trace")
    @classmethod
    def _warmup_trace(cls, value: str | None) -> str | None:
        """A warm-up trace that is neither bundled nor a file is refused as the block is read (its rows are read
        when the planner starts: sim/sla_planner.py)."""
        if value is not None and value not in BUNDLED and not (value.strip() and Path(value).exists()):
            raise ValueError(f"autoscale predictor_warmup_trace '{value}' does not exist (give a CSV/JSONL trace "
                             f"file or one of {', '.join(BUNDLED)})")
        return value

    @model_validator(mode="after")
    def _target(self) -> Autoscale:
        if self.initial_replicas is not None and self.initial_replicas < self.min_replicas:
            raise ValueError(f"autoscale initial_replicas ({self.initial_replicas}) is below min_replicas "
                             f"({self.min_replicas})")
        if self.metric == "sla":
            if self.min_replicas < 1:
                # Dynamo's planner keeps at least --min-endpoint workers a group (default 1: components/planner
                # defaults.py BasePlannerDefaults.min_endpoint); at zero no request finishes, its interval metrics
                # read "no active requests" and it skips them: nothing would start a worker again
                raise ValueError(f"autoscale min_replicas {self.min_replicas} with metric sla: Dynamo's SLA planner "
                                 f"does not scale from zero (allowed: min_replicas >= 1, its --min-endpoint)")
            if not (self.throughput_scaling or self.load_scaling):
                raise ValueError("autoscale metric sla needs throughput_scaling or load_scaling (or both) on")
            if self.throughput_scaling and self.load_scaling and self.load_period_s >= self.sync_period_s:
                raise ValueError(f"autoscale load_period_s ({self.load_period_s:g}) must be shorter than "
                                 f"sync_period_s ({self.sync_period_s:g}) when both modes run (Dynamo's fast reactive "
                                 f"loop beside its slow predictive one)")
            return self
        given = [key for key in PLANNER_FIELDS if getattr(self, key) is not None]
        if given:
            raise ValueError(f"autoscale {given[0]} is the sla planner's (metric sla); metric {self.metric} scales "
                             f"on its target")
        if self.autoscaler == "hpa" and self.min_replicas == 0:
            # Kubernetes' HorizontalPodAutoscalerSpec.minReplicas: "allowed to be 0 if the alpha feature gate
            # HPAScaleToZero is enabled and at least one Object or External metric is configured"; the engine's
            # gauges here (vllm:num_requests_waiting / _running, its KV share, requests a replica) are Pods metrics
            raise ValueError(f"autoscale min_replicas 0 (scale to zero) needs autoscaler kpa or keda (--autoscaler "
                             f"kpa|keda): the HPA scales to zero only on an Object or External metric behind the "
                             f"alpha HPAScaleToZero gate, and metric {self.metric} is a per-pod metric (allowed: "
                             f"min_replicas >= 1 with autoscaler hpa)")
        for direction in ("up", "down"):
            # Kubernetes' HPAScalingRules.policies: "At least one policy must be specified, otherwise the
            # HPAScalingRules will be discarded as invalid"; selectPolicy Disabled turns a direction off
            if not getattr(self, f"scale_{direction}_policies"):
                raise ValueError(f"autoscale scale_{direction}_policies is empty: give at least one {{type: "
                                 f"pods|percent, value, period_s}} (Kubernetes refuses scaling rules without a "
                                 f"policy), or scale_{direction}_select: disabled to turn scaling {direction} off")
        if self.target is None:
            raise ValueError(f"autoscale metric {self.metric} needs a target: its value per ready replica (allowed "
                             f"metrics: waiting, running, concurrency, rps, kv_usage, or sla without one)")
        if self.metric == "kv_usage" and self.target > 1:
            raise ValueError(f"autoscale target for metric kv_usage is a share of the KV cache, in (0, 1] "
                             f"(got {self.target:g})")
        return self
