"""Synthetic workloads: open-loop Poisson/Gamma arrivals and closed-loop clients, with length distributions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.workload.request import Workload

LengthKind = Literal["fixed", "uniform", "lognormal"]  # the length distributions a flag or a sweep entry names
FLAG_DISTRIBUTIONS: tuple[str, ...] = get_args(LengthKind)
DISTRIBUTIONS = (*FLAG_DISTRIBUTIONS, "empirical")  # empirical: a trace's own lengths (samples), never a flag's
DEFAULT_ISL, DEFAULT_OSL = 1024, 256  # mean prompt and output tokens when neither a trace nor --isl/--osl says
# the largest lognormal spread (sigma of log length): past it a run's lengths no longer have the asked mean. The
# median over 30 seeds of 1,000 draws' mean (mean 1,000 tokens): 10 % below the asked mean at sigma 2, 22 % at 2.5,
# 36 % at 3, 73 % at 4 (the draws' mass sits ever further below the mean, in a tail few samples reach); at 40 every
# draw clips to one token (tests/test_workload_review_fixes.py)
MAX_LOGNORMAL_SPREAD = 2.0
# gamma arrivals' coefficient of variation, [lowest, highest]: below 0.001 the gaps are within 0.3 % (3 sd) of the
# mean gap, a fixed rate (and under ~1e-154 cv**2 underflows to 0); above 10 float64 rounds a growing share of the
# gaps to exactly 0 (0.05 % at 10, 44 % at 30, 93 % at 100), so the requests bunch at single instants and the
# sample's cv falls short of the asked one (tests/test_workload_review_fixes.py)
CV_RANGE = (0.001, 10.0)


def flag_name(field: str) -> str:
    """A workload field as plan's and simulate's flags name it (isl_dist: --isl-dist)."""
    return "--" + field.replace("_", "-")


def check_length_flags(isl: float | None, osl: float | None, isl_dist: str | None, osl_dist: str | None,
                       isl_spread: float | None, osl_spread: float | None, sampled_by: str = "fixed",
                       name: Callable[[str], str] = flag_name) -> None:
    """One-line errors naming the flag (`name`: a field's name in the caller's words, plan's and simulate's flags by
    default) for --isl / --osl means (finite, >= 1 token; whole tokens for fixed lengths and for `sampled_by`, a
    client's own sampling), their distributions (FLAG_DISTRIBUTIONS) and spreads (uniform: in (0, 1]; lognormal: in
    (0, MAX_LOGNORMAL_SPREAD]; only for uniform or lognormal lengths, not for fixed ones or a client's sampling)."""
    for side, mean, dist, spread in (("isl", isl, isl_dist, isl_spread), ("osl", osl, osl_dist, osl_spread)):
        _check_length_flag(side, mean, dist, spread, sampled_by, name)


def _check_length_flag(side: str, mean: float | None, dist: str | None, spread: float | None, sampled_by: str,
                       name: Callable[[str], str]) -> None:
    """check_length_flags for one side (`side`: isl or osl)."""
    flag, dist_flag, spread_flag = name(side), name(f"{side}_dist"), name(f"{side}_spread")
    if dist is not None and dist not in FLAG_DISTRIBUTIONS:
        raise PhasewiseError(f"{dist_flag} '{dist}' is not one of {', '.join(FLAG_DISTRIBUTIONS)}")
    if mean is not None and not (np.isfinite(mean) and mean >= 1):
        raise PhasewiseError(f"{flag} must be a finite number of tokens >= 1 (got {mean})")
    if mean is not None and dist in (None, "fixed") and mean != int(mean):  # fixed lengths, or a client's flags
        # (vllm/sglang --random-input-len, genai-perf/aiperf --synthetic-input-tokens-mean: integers)
        whose = "fixed lengths" if (dist or sampled_by) == "fixed" else f"{sampled_by}, whose length flags are integers"
        raise PhasewiseError(f"{flag} must be a whole number of tokens for {whose} (got {mean:g}; "
                             f"{dist_flag} uniform or lognormal take a mean)")
    if dist == "lognormal" and not (spread is not None and spread > 0):
        raise PhasewiseError(f"{spread_flag} must be > 0 for lognormal (the sigma of log length, e.g. 0.8)")
    if dist == "lognormal" and not spread <= MAX_LOGNORMAL_SPREAD:
        raise PhasewiseError(f"{spread_flag} must be <= {MAX_LOGNORMAL_SPREAD:g} for lognormal (the sigma of log "
                             f"length; got {spread:g}: past it the lengths drawn no longer have the asked mean)")
    if dist == "uniform" and not (spread is not None and spread > 0):
        given = "not given" if spread is None else f"got {spread:g}"
        raise PhasewiseError(f"{spread_flag} must be > 0 for uniform (the half-width over the mean, at most 1, e.g. "
                             f"0.5; {given}): without it the lengths are fixed, which is {dist_flag} fixed")
    if dist == "uniform" and spread > 1:
        raise PhasewiseError(f"{spread_flag} must be <= 1 for uniform (the half-width over the mean; got {spread}: "
                             "lengths below one token would be clipped and move the mean)")
    if spread and dist not in ("uniform", "lognormal"):
        raise PhasewiseError(f"{spread_flag} applies to {dist_flag} uniform or lognormal (got {dist or sampled_by})")


@dataclass(slots=True, frozen=True)
class LengthDist:
    """Token lengths: fixed (mean), uniform (mean +- spread), lognormal (mean, sigma), empirical (samples)."""

    kind: str = "fixed"
    mean: float = 512
    spread: float = 0.0  # uniform: half-width as a fraction of mean; lognormal: sigma of log
    samples: tuple[int, ...] = ()
    min_tokens: int = 1
    max_tokens: int = 1 << 20

    def __post_init__(self) -> None:
        if self.kind not in DISTRIBUTIONS:
            raise PhasewiseError(f"length distribution '{self.kind}' is not one of {', '.join(FLAG_DISTRIBUTIONS)}")
        if self.kind == "empirical" and not self.samples:
            raise PhasewiseError("an empirical length distribution needs samples (a trace)")
        if self.kind != "empirical" and not (np.isfinite(self.mean) and self.mean >= 1):
            raise PhasewiseError(f"mean length must be a finite number of tokens >= 1 (got {self.mean})")
        if not (np.isfinite(self.spread) and self.spread >= 0):
            raise PhasewiseError(f"length spread must be a finite number >= 0 (got {self.spread})")
        if self.kind == "uniform" and self.spread > 1:  # its draws below one token would be clipped: the mean drifts
            raise PhasewiseError(f"a uniform length's spread (half-width over the mean) must be <= 1 "
                                 f"(got {self.spread})")
        if self.kind == "lognormal" and self.spread <= 0:  # used to become 1.0 silently
            raise PhasewiseError("a lognormal length needs spread (sigma of log length) > 0, e.g. 0.8")
        if self.kind == "lognormal" and self.spread > MAX_LOGNORMAL_SPREAD:
            raise PhasewiseError(f"a lognormal length's spread (sigma of log length) must be <= "
                                 f"{MAX_LOGNORMAL_SPREAD:g} (got {self.spread:g}): past it the draws miss the mean")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            x = np.full(n, self.mean)
        elif self.kind == "uniform":
            lo, hi = self.mean * (1 - self.spread), self.mean * (1 + self.spread)
            x = rng.uniform(lo, hi + 1, n)
        elif self.kind == "lognormal":
            sigma = self.spread
            x = rng.lognormal(np.log(self.mean) - sigma**2 / 2, sigma, n)  # the requested mean (less the floor's ~0.5)
        else:
            x = rng.choice(np.asarray(self.samples), n)
        return np.clip(np.floor(x), self.min_tokens, self.max_tokens).astype(np.int64)


def poisson_arrivals(rng: np.random.Generator, n: int, rate_rps: float) -> np.ndarray:
    """n Poisson arrival instants at `rate_rps`, the first at 0 s: exponential gaps of mean 1 drawn from `rng`,
    summed, over the rate, so that the same draws at another rate are the same instants scaled (plan's search
    shares its random numbers across rates). The one formula simulate's open loop and plan's workloads
    (plan/goodput.py WorkloadSpec.at_rate) draw by: the same seed, count and rate give the same instants."""
    gaps = rng.exponential(1.0, n)
    gaps[0] = 0.0
    return np.cumsum(gaps) / rate_rps


def open_loop(rate_rps: float, n: int, prompt: LengthDist, output: LengthDist, *, arrival: str = "poisson",
              cv: float = 1.0, seed: int = 0) -> Workload:
    """n requests arriving at `rate_rps`: Poisson, or Gamma with coefficient of variation `cv` (bursty > 1)."""
    if not (np.isfinite(rate_rps) and rate_rps > 0):
        raise PhasewiseError(f"--rate must be a finite number > 0 (got {rate_rps})")
    if n < 1:
        raise PhasewiseError(f"--requests must be >= 1 (got {n})")
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        arrival_s = poisson_arrivals(rng, n, rate_rps)
    elif arrival == "gamma":
        low, high = CV_RANGE
        if not low <= cv <= high:
            raise PhasewiseError(f"--cv must be a finite number > 0 within [{low:g}, {high:g}] (got {cv:g}): "
                                 "below, the gaps are a fixed rate's; above, float64 rounds ever more of them to 0")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate_rps * shape), n)
        gaps[0] = 0.0
        arrival_s = np.cumsum(gaps)
    else:
        raise PhasewiseError(f"--arrival '{arrival}' is not one of poisson, gamma")
    return Workload(arrival_s, prompt.sample(rng, n), output.sample(rng, n), name=f"{arrival}@{rate_rps:g}")


@dataclass(slots=True, frozen=True)
class ClosedLoop:
    """`concurrency` clients, each sending its next request when its last one finishes (benchmark clients).

    With think_s = 0 this is what `vllm bench serve --max-concurrency C`, SGLang's bench_serving, aiperf
    and genai-perf do: every request released at t=0 behind a semaphore of C, no jitter; a request's
    arrival (TTFT start) is when it passes the semaphore. Request i is the i-th to pass.
    Warm-up: `warmup_requests` copies of the first measured request (its prompt and its lengths, outputs capped at
    `warmup_output_cap` when set; with `warmup_copies_prompt`, as vLLM's, SGLang's and InferenceX's clients send
    input_requests[0] itself, a prefix cache that is on matches them and request 0 as one prompt:
    sim/bench_clients.py), run first: the first `readiness_requests` of them one at a time, each alone (vLLM's
    readiness check), then the rest all at once (`warmup_at_once`, SGLang's) or behind the same semaphore of C;
    the measured requests are released `warmup_sleep_s` after the last of them finishes. Warm-up requests take
    simulated time but are excluded from every summary figure."""

    concurrency: int
    requests: int
    prompt: LengthDist
    output: LengthDist
    think_s: float = 0.0
    seed: int = 0
    warmup_requests: int = 0
    warmup_sleep_s: float = 0.0
    warmup_output_cap: int | None = None
    readiness_requests: int = 0  # of the warm-up requests, the first ones, each sent alone and awaited
    warmup_at_once: bool = False  # the other warm-up requests all sent at once, not C at a time
    warmup_copies_prompt: bool = False  # they send request 0's very prompt (else prompts of their own, none shared)
    name: str = "closed loop"

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise PhasewiseError(f"--concurrency must be >= 1 (got {self.concurrency})")
        if self.requests < 1:
            raise PhasewiseError(f"--requests must be >= 1 (got {self.requests})")
        if self.warmup_requests < 0:
            raise PhasewiseError(f"--warmup must be >= 0 (got {self.warmup_requests})")
        if not 0 <= self.readiness_requests <= self.warmup_requests:
            raise PhasewiseError(f"readiness requests must be within [0, warm-up requests {self.warmup_requests}] "
                                 f"(got {self.readiness_requests}): they are the first warm-up requests")
        if not (self.warmup_sleep_s >= 0 and np.isfinite(self.warmup_sleep_s)):
            raise PhasewiseError(f"warm-up sleep must be a finite number of seconds >= 0 (got {self.warmup_sleep_s})")
        if self.warmup_output_cap is not None and self.warmup_output_cap < 1:
            raise PhasewiseError(f"warm-up output cap must be >= 1 (got {self.warmup_output_cap})")
        if not (self.think_s >= 0 and np.isfinite(self.think_s)):
            raise PhasewiseError(f"think time must be a finite number of seconds >= 0 (got {self.think_s})")

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Prompt and output lengths of the measured requests (in release order)."""
        rng = np.random.default_rng(self.seed)
        return self.prompt.sample(rng, self.requests), self.output.sample(rng, self.requests)

    def warmup_lengths(self, prompts: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The warm-up requests' lengths: the first measured request's (as vLLM's, SGLang's and InferenceX's clients
        send input_requests[0]), outputs capped at `warmup_output_cap`."""
        w = self.warmup_requests
        out = int(outputs[0]) if self.warmup_output_cap is None else min(int(outputs[0]), self.warmup_output_cap)
        return np.full(w, int(prompts[0]), dtype=np.int64), np.full(w, out, dtype=np.int64)
