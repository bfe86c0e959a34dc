"""The load predictors of NVIDIA Dynamo's SLA planner (components/planner load_predictor.py): each adjustment interval
the planner feeds one observation (the requests received, or their mean ISL or OSL) to a predictor of its own and
sizes the next interval for its one-step forecast (sim/sla_planner.py).

- constant: the next interval is the last one.
- kalman: a local linear trend Kalman filter (level and trend; the level follows the trend from one interval to the
  next, each with its own process noise, `q_level` and `q_trend`, observed with noise `measurement_noise`), Dynamo's
  choice for bursty traffic: it extrapolates a ramp where the constant predictor lags it by an interval. Its defaults are
  Dynamo's (PlannerConfig kalman_q_level 1.0, kalman_q_trend 0.1, kalman_r 10.0; the first observation sets the
  level, trend 0, their variance 1000).

Both skip the idle run before the first non-zero observation (a deployment waiting for its traffic) and read a
missing observation (NaN: no request finished) as 0, as Dynamo's BasePredictor does. A warm-up trace (Dynamo's
load_predictor_warmup_trace) feeds them its intervals first (warmup_intervals). `log1p` (Dynamo's
load_predictor_log1p) filters log(1 + x) and returns exp(level) - 1. Dynamo's default predictor, ARIMA (pmdarima's
auto_arima), and Prophet are not here (they fit order and seasonality with packages this project does not depend
on); the planner's default here is the constant one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KALMAN_INITIAL_VARIANCE = 1000.0  # Dynamo's KalmanPredictor: P *= 1000 over filterpy's identity


def warmup_intervals(arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray,
                     interval_s: float) -> list[tuple[float, float, float]]:
    """A past trace as the planner would have observed it (Dynamo's load_predictor_warmup_trace,
    extract_metrics_from_mooncake): per adjustment interval from its first arrival, the requests that arrived, their
    mean prompt and mean output tokens (NaN where none did)."""
    if not len(arrival_s):
        return []
    bucket = ((arrival_s - arrival_s.min()) // interval_s).astype(np.int64)
    intervals = int(bucket.max()) + 1
    counts = np.bincount(bucket, minlength=intervals)
    with np.errstate(invalid="ignore", divide="ignore"):
        isl = np.bincount(bucket, weights=prompt, minlength=intervals) / counts
        osl = np.bincount(bucket, weights=output, minlength=intervals) / counts
    return [(float(c), float(i), float(o)) for c, i, o in zip(counts, isl, osl)]


@dataclass(slots=True)
class LoadPredictor:
    """One series' predictor: observe() once an interval, predict() the next interval's value."""

    kind: str = "constant"  # constant | kalman
    log1p: bool = False
    q_level: float = 1.0
    q_trend: float = 0.1
    measurement_noise: float = 10.0  # Dynamo's kalman_r: the variance of an observation about the level
    last: float = 0.0  # the last observation kept (raw)
    seen_traffic: bool = False  # a non-zero observation came: zeros count from then on
    level: float = math.nan  # the Kalman state [level, trend] and its covariance [[p00, p01], [p01, p11]]
    trend: float = 0.0
    p00: float = KALMAN_INITIAL_VARIANCE
    p01: float = 0.0
    p11: float = KALMAN_INITIAL_VARIANCE
    forecast_pending: bool = False  # predict() advanced the state to the interval its next observation measures

    def warm(self, values: list[float]) -> None:
        """Past observations first (a warm-up trace), then the idle run before live traffic is skipped again."""
        for value in values:
            self.observe(value)
        self.seen_traffic = False

    def observe(self, value: float) -> None:
        value = 0.0 if math.isnan(value) else value
        if value == 0.0 and not self.seen_traffic:
            return  # the idle run before the traffic
        self.seen_traffic = self.seen_traffic or value != 0.0
        self.last = value
        if self.kind != "kalman":
            return
        measured = math.log1p(max(0.0, value)) if self.log1p else value
        if math.isnan(self.level):
            self.level = measured
            return
        if not self.forecast_pending:
            self._advance()
        self._correct(measured)
        self.forecast_pending = False

    def predict(self) -> float:
        """The next interval's value (the last observation until the filter has one)."""
        if self.kind != "kalman" or math.isnan(self.level):
            return self.last
        if not self.forecast_pending:
            self._advance()
            self.forecast_pending = True
        return max(0.0, math.expm1(self.level)) if self.log1p else self.level

    def _advance(self) -> None:
        """x <- F x, P <- F P F' + Q, F = [[1, 1], [0, 1]], Q = diag(q_level, q_trend)."""
        self.level += self.trend
        p00, p01, p11 = self.p00, self.p01, self.p11
        self.p00 = p00 + 2.0 * p01 + p11 + self.q_level
        self.p01 = p01 + p11
        self.p11 = p11 + self.q_trend

    def _correct(self, measured: float) -> None:
        """The measurement update, H = [1, 0], in the Joseph form filterpy uses (symmetric, positive)."""
        innovation = measured - self.level
        s = self.p00 + self.measurement_noise
        gain0, gain1 = self.p00 / s, self.p01 / s
        self.level += gain0 * innovation
        self.trend += gain1 * innovation
        # P <- (I - K H) P (I - K H)' + K R K'
        one_minus = 1.0 - gain0
        p00, p01, p11 = self.p00, self.p01, self.p11
        a00 = one_minus * p00
        a01 = one_minus * p01
        a10 = p01 - gain1 * p00
        a11 = p11 - gain1 * p01
        self.p00 = a00 * one_minus + gain0 * gain0 * self.measurement_noise
        self.p01 = -a00 * gain1 + a01 + gain0 * gain1 * self.measurement_noise
        self.p11 = -a10 * gain1 + a11 + gain1 * gain1 * self.measurement_noise
