"""Fitting a few constants of the cost model to measured latencies: a user's own measurements, or a
paper's table (BestServe-1 fits an engine's host costs to Splitwise's measured vLLM latencies).

A point is one measured figure of one run: the prefill of `batch` prompts of `prompt` tokens as one
iteration (TTFT), or one decode step of `batch` sequences at `context` cached tokens (TBT). The run is
the unit of a fit/test split: a run's TTFT and TBT are on the same side. The fit scans each named EngineProfile
field over a coarse log grid, then refines by a pattern search in log space, minimising the mean
|log(predicted / measured)|; a field no point responds to is reported undetermined, not fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.specs.quant import QuantScheme
from phasewise.specs.reading import spec_file_stamps

FITTABLE = ("iteration_overhead_s", "per_sequence_overhead_s", "eager_launch_s", "elementwise_passes",
            "collective_overhead_s", "compute_efficiency", "collective_efficiency")
_BOUNDS = {"compute_efficiency": (1e-3, 1.0), "collective_efficiency": (1e-3, 1.0), "elementwise_passes": (1.0, 1e3)}


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    run: str  # the measured run this figure belongs to
    phase: str  # "prefill" (TTFT of the batch's prompts) or "decode" (one step's TBT)
    model: str
    hardware: str
    tp: int
    batch: int
    tokens: int  # prefill: prompt tokens per sequence; decode: cached context per sequence
    measured_ms: float
    precision: str = "fp16"

    @property
    def label(self) -> str:
        return f"{self.run} {'TTFT' if self.phase == 'prefill' else 'TBT'}"


class MeasuredRun(NumbersNotBooleans):
    """One row of a points file: a run's configuration and its measured TTFT and/or TBT (YAML's true / false where
    a number goes refused, naming the field, as in every user file).

    points:
      - {run: D1, model: meta-llama/Llama-2-70b-hf, hardware: h100-sxm, tp: 8, batch: 1, prompt: 512,
         tbt_context: 576, ttft_ms: 53.4, tbt_ms: 29.8, precision: fp16}
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run: str = Field(min_length=1)
    model: str
    hardware: str
    tp: int = Field(default=1, ge=1)
    batch: int = Field(default=1, ge=1)
    precision: str = "fp16"
    prompt: int | None = Field(default=None, ge=1)  # prompt tokens per sequence of the measured prefill
    ttft_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # a measured time: finite
    tbt_context: int | None = Field(default=None, ge=0)  # cached tokens per sequence at the measured decode step
    tbt_ms: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # the context the measured run served where it set one past the model's (vLLM's --max-model-len over
    # max_position_embeddings, as Splitwise's 8,192-token Llama-2 runs did); None: the model's own
    max_model_len: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _pairs(self) -> MeasuredRun:
        if (self.prompt is None) != (self.ttft_ms is None):
            raise ValueError("prompt and ttft_ms go together")
        if (self.tbt_context is None) != (self.tbt_ms is None):
            raise ValueError("tbt_context and tbt_ms go together")
        if self.ttft_ms is None and self.tbt_ms is None:
            raise ValueError("a run needs ttft_ms (with prompt) or tbt_ms (with tbt_context)")
        return self

    def points(self) -> list[LatencyPoint]:
        common = dict(model=self.model, hardware=self.hardware, tp=self.tp, batch=self.batch,
                      precision=self.precision)
        out = []
        if self.ttft_ms is not None:
            out.append(LatencyPoint(self.run, "prefill", tokens=self.prompt, measured_ms=self.ttft_ms, **common))
        if self.tbt_ms is not None:
            out.append(LatencyPoint(self.run, "decode", tokens=self.tbt_context, measured_ms=self.tbt_ms, **common))
        return out


def parse_points(data: dict, where: str) -> list[LatencyPoint]:
    """The latency points of a points file's parsed content (`points:` a list of MeasuredRun rows)."""
    rows = data.get("points") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise PhasewiseError(f"{where}: needs a non-empty list under 'points:'")
    points: list[LatencyPoint] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PhasewiseError(f"{where}: points[{i}] must be a mapping")
        try:
            points += MeasuredRun(**row).points()
        except ValidationError as exc:
            raise pydantic_message(f"{where}: points[{i}]", exc) from None
    return points


def _specs(model: str, hardware: str, precision: str):
    """The specs a point names, cached per process and keyed on its files' stamps (an edited file read afresh)."""
    return _cached_specs(model, hardware, precision, spec_file_stamps(model, hardware))


@lru_cache(maxsize=256)
def _cached_specs(model: str, hardware: str, precision: str, stamps: tuple):
    return load_model(model), load_hardware(hardware), load_quant(precision)


# the pure roofline's efficiencies: every fraction of a peak 1, no half-saturation sizes, no kernel launch
ROOFLINE_EFFICIENCY = dict(
    gemm_efficiency_max=1.0, gemm_half_rows=0.0, gemm_efficiency_curve=(), memory_efficiency_max=1.0,
    memory_half_bytes=0.0, attention_efficiency_max=1.0, attention_half_tokens=0.0,
    attention_memory_efficiency=1.0, kernel_launch_s=0.0, link_efficiency=1.0)


def roofline_cost(model: ModelSpec, hw: HardwareSpec, quant: QuantScheme, tp: int, pp: int = 1) -> CostModel:
    """The pure roofline of `model` on `hw` (the one definition: predict_ms(roofline=True), scenarios that set one
    beside the cost model): spec-sheet peaks with every efficiency 1 and no host, launch or dispatch time (the
    `ideal` engine); the operators, GEMM tiling and collectives' algorithms are the cost model's own."""
    eff = hw.efficiency.model_copy(update=ROOFLINE_EFFICIENCY)
    return CostModel(model, hw.model_copy(update={"efficiency": eff}), quant, load_engine("ideal"), tp, pp)


def predict_ms(point: LatencyPoint, engine: EngineProfile, roofline: bool = False) -> float:
    """The cost model's figure for `point` with `engine`'s host costs; `roofline`: the pure roofline
    (roofline_cost), whatever `engine`."""
    model, hw, quant = _specs(point.model, point.hardware, point.precision)
    if roofline:
        cost = roofline_cost(model, hw, quant, point.tp)
    else:
        cost = CostModel(model, hw, quant, engine, point.tp, 1)
    if point.phase == "prefill":
        shape = BatchShape.uniform(point.batch, point.tokens, 0, model.causal)
    elif point.phase == "decode":
        shape = BatchShape.uniform(point.batch, 1, point.tokens, model.causal)
    else:
        raise PhasewiseError(f"latency point {point.run}: phase '{point.phase}' is not one of prefill, decode")
    return cost.fast(shape)[0] * 1e3


def log_error(predicted_ms: float, measured_ms: float) -> float:
    """|log(predicted / measured)|: a point's term of the fits' loss (fit_engine, benchmarks/validate_public.py)."""
    return abs(math.log(predicted_ms / measured_ms))


def relative_error(point: LatencyPoint, engine: EngineProfile, roofline: bool = False) -> float:
    """(predicted - measured) / measured."""
    return predict_ms(point, engine, roofline) / point.measured_ms - 1.0


@dataclass(frozen=True, slots=True)
class FitResult:
    engine: EngineProfile  # the start profile with the fitted fields
    values: dict[str, float]  # every field asked for: fitted, or its start value where undetermined
    loss: float  # mean |log error| over the fit points
    points: int
    runs: int
    # fields no fit point responds to (the loss the same over the field's whole grid): left at their start value,
    # not fitted (collective_overhead_s where every run is TP1)
    undetermined: tuple[str, ...] = ()

    @property
    def fitted(self) -> dict[str, float]:
        """The fields the points determined, with their fitted values."""
        return {k: v for k, v in self.values.items() if k not in self.undetermined}


Predict = Callable[[LatencyPoint, EngineProfile], float]  # a point's figure in ms with an engine's host constants

# Each field's coarse log grid (lowest, highest; factor GRID_STEP): the search first scans it field by field so that a
# start on a flat stretch (a host time hidden under the device time it overlaps: max(host, device)) still finds the
# slope; then a pattern search refines. Efficiencies and elementwise_passes over their allowed range (_BOUNDS); host
# times from 10 ns to 1 s (assumed: engines' per-step, per-sequence and per-kernel host costs lie inside it).
_TIME_GRID = (1e-8, 1.0)
GRID_STEP = 2.0
_SAME = 1e-12  # loss differences below this are none


def _grid(key: str) -> list[float]:
    lo, hi = _BOUNDS.get(key, _TIME_GRID)
    count = int(math.floor(math.log(hi / lo) / math.log(GRID_STEP) + 1e-9))
    return [lo * GRID_STEP ** i for i in range(count + 1)] + ([hi] if lo * GRID_STEP ** count < hi else [])


def fit_engine(points: list[LatencyPoint], start: EngineProfile, params: tuple[str, ...],
               rounds: int = 60, predict: Predict = predict_ms, sweeps: int = 3) -> FitResult:
    """Fit `params` (EngineProfile fields, at most as many as the fit has runs) of `start` to `points`; `predict`
    costs a point with a trial profile (predict_ms: the profile alone; running_costs: an engine as it runs).
    A pattern search in log space from the start, then up to `sweeps` times each field's coarse grid (_grid, the
    others held) and, where it found a lower loss, the pattern search again from there. A field whose grid never
    moves the loss is undetermined by these points: left at its start value and named in FitResult.undetermined,
    never reported as fitted."""
    unknown = [p for p in params if p not in FITTABLE]
    if unknown:
        raise PhasewiseError(f"cannot fit '{unknown[0]}' (fittable: {', '.join(FITTABLE)})")
    runs = {p.run for p in points}
    if len(params) > len(runs):
        raise PhasewiseError(f"{len(params)} constants cannot be fitted on {len(runs)} run{'s' * (len(runs) != 1)}: "
                             f"a fit determines at most one constant a run (give at most {len(runs)})")
    values = {k: float(getattr(start, k)) or _floor(k) for k in params}

    def loss(trial: dict[str, float]) -> float:
        engine = start.model_copy(update=trial)
        return sum(log_error(predict(p, engine), p.measured_ms) for p in points) / len(points)

    values, best = _pattern_search(loss, values, loss(values), params, rounds)
    moved: set[str] = set()  # fields whose grid changed the loss somewhere
    for _ in range(sweeps):
        before = best
        for key in params:
            scanned = [(loss(dict(values, **{key: v})), v) for v in _grid(key)]
            if max(s for s, _ in scanned) - min(s for s, _ in scanned) > _SAME:
                moved.add(key)
            value, at = min(scanned)
            if value < best - _SAME:
                values, best = dict(values, **{key: at}), value
        if best >= before - _SAME:
            break
        values, best = _pattern_search(loss, values, best, tuple(k for k in params if k in moved), rounds)
    undetermined = tuple(k for k in params if k not in moved)
    values.update({k: float(getattr(start, k)) for k in undetermined})
    best = loss(values)
    return FitResult(start.model_copy(update=values), values, best, len(points), len(runs), undetermined)


def _pattern_search(loss: Callable[[dict[str, float]], float], values: dict[str, float], best: float,
                    params: tuple[str, ...], rounds: int) -> tuple[dict[str, float], float]:
    """Coordinate steps of x4 up and down in log space, halved (in log) whenever none improves, to 1e-3."""
    step = math.log(4.0)
    for _ in range(rounds):
        improved = False
        for key in params:
            for direction in (1.0, -1.0):
                lo, hi = _BOUNDS.get(key, (0.0, math.inf))
                trial = dict(values)
                trial[key] = min(max(values[key] * math.exp(direction * step), lo), hi)
                if trial[key] == values[key]:
                    continue
                value = loss(trial)
                if value < best - _SAME:
                    values, best, improved = trial, value, True
        if not improved:
            step /= 2
            if step < 1e-3:
                break
    return values, best


def _floor(key: str) -> float:
    """A starting value for a field that is 0 in the start profile (log steps need a positive value)."""
    return {"elementwise_passes": 1.0, "compute_efficiency": 1.0, "collective_efficiency": 1.0}.get(key, 1e-6)


def running_costs(data: dict, engine: str, where: str) -> tuple[EngineProfile, Predict]:
    """How `estimate --engine ENGINE` costs each point of a points file's parsed content (checked by parse_points
    first): the model, chip, precision (with the engine's KV dtype), layout and the engine's host profile as it runs
    there (a preset's CUDA graphs and overlap scheduling for the row's chip and TP; perf/estimate.py), so a fit and its
    errors are what the written engine file predicts. A row that estimate or simulate would refuse is a one-line error
    naming points[i] and its key: an unknown model, chip or precision, a TP that does not split the model, a prompt or
    context past the model's context, a batch that does not fit in memory. Returns the engine's host profile as it
    runs (the fit's start) and predict(point, profile): the point's figure in ms with `profile`'s fittable constants
    over the engine's own."""
    from phasewise.perf.estimate import estimate
    from phasewise.perf.parallel import check_parallelism

    costs: dict[LatencyPoint, CostModel] = {}
    for i, row in enumerate(data["points"]):
        run, at = MeasuredRun(**row), f"{where}: points[{i}]"
        loaded: list[Any] = []
        for key, load in (("model", load_model), ("hardware", load_hardware), ("precision", load_quant)):
            try:
                loaded.append(load(getattr(run, key)))
            except PhasewiseError as exc:
                raise PhasewiseError(f"{at}.{key}: {exc}") from None
        spec = loaded[0]
        try:
            check_parallelism(spec, run.tp, 1)
        except PhasewiseError as exc:
            raise PhasewiseError(f"{at}.tp: {str(exc).replace(f'--tp {run.tp} ', f'tp {run.tp} ', 1)}") from None
        limit = run.max_model_len or spec.max_position_embeddings
        for key, tokens in (("prompt", run.prompt), ("tbt_context", run.tbt_context)):
            if limit and tokens is not None and tokens > limit:
                served = (f"the run's max_model_len {limit:,}" if run.max_model_len else
                          f"{spec.name}'s {limit:,}-token context (max_position_embeddings)")
                raise PhasewiseError(f"{at}.{key}: {tokens:,} tokens are beyond {served}: the engines refuse such a "
                                     "request, as estimate and simulate do (a run that served a longer context says "
                                     "so with max_model_len: N)")
        prompt = run.prompt or 1
        context = run.tbt_context if run.tbt_context is not None else prompt
        try:
            est = estimate(run.model, run.hardware, tp=run.tp, precision=run.precision, engine=engine,
                           batch=run.batch, prompt_len=prompt, context_len=context)
        except PhasewiseError as exc:
            if str(exc).startswith("unknown engine"):
                raise
            raise PhasewiseError(f"{at}: {exc}") from None
        mem = est.memory
        if not mem.fits:
            raise PhasewiseError(f"{at}: {spec.name} with a batch of {run.batch} at {max(prompt, context + 1):,} "
                                 f"tokens does not fit on {run.hardware} at tp={run.tp} in {run.precision} with "
                                 f"{engine}: {mem.reason()} (as estimate reports it; check tp, batch and precision)")
        for point in run.points():
            costs[point] = est.cost_model

    def predict(point: LatencyPoint, engine_profile: EngineProfile) -> float:
        cm = costs[point]
        profile = cm.engine.model_copy(update={k: getattr(engine_profile, k) for k in FITTABLE})
        cost = CostModel(cm.model, cm.hw, cm.quant, profile, cm.tp, cm.pp, cm.layout)
        window = cm.model.window_all_layers
        if point.phase == "prefill":
            shape = BatchShape.uniform(point.batch, point.tokens, 0, cm.model.causal, window)
        else:
            shape = BatchShape.uniform(point.batch, 1, point.tokens, cm.model.causal, window)
        return cost.fast(shape)[0] * 1e3

    return next(iter(costs.values())).engine, predict
