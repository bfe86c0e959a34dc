"""Synthetic workloads: open-loop Poisson/Gamma arrivals and closed-loop clients, with length distributions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.workload.request import Workload

DISTRIBUTIONS = ("fixed", "uniform", "lognormal", "empirical")


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
            raise PhasewiseError(f"length distribution '{self.kind}' is not one of {', '.join(DISTRIBUTIONS)}")
        if self.kind == "empirical" and not self.samples:
            raise PhasewiseError("an empirical length distribution needs samples (a trace)")
        if self.kind != "empirical" and self.mean < 1:
            raise PhasewiseError(f"mean length must be >= 1 (got {self.mean})")
        if self.spread < 0:
            raise PhasewiseError(f"length spread must be >= 0 (got {self.spread})")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            x = np.full(n, self.mean)
        elif self.kind == "uniform":
            lo, hi = self.mean * (1 - self.spread), self.mean * (1 + self.spread)
            x = rng.uniform(lo, hi + 1, n)
        elif self.kind == "lognormal":
            sigma = self.spread or 1.0
            x = rng.lognormal(np.log(self.mean) - sigma**2 / 2, sigma, n)  # keeps the requested mean
        else:
            x = rng.choice(np.asarray(self.samples), n)
        return np.clip(np.floor(x), self.min_tokens, self.max_tokens).astype(np.int64)


def open_loop(rate_rps: float, n: int, prompt: LengthDist, output: LengthDist, *, arrival: str = "poisson",
              cv: float = 1.0, seed: int = 0) -> Workload:
    """n requests arriving at `rate_rps`: Poisson, or Gamma with coefficient of variation `cv` (bursty > 1)."""
    if rate_rps <= 0:
        raise PhasewiseError(f"--rate must be > 0 (got {rate_rps})")
    if n < 1:
        raise PhasewiseError(f"--requests must be >= 1 (got {n})")
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / rate_rps, n)
    elif arrival == "gamma":
        if cv <= 0:
            raise PhasewiseError(f"--cv must be > 0 (got {cv})")
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (rate_rps * shape), n)
    else:
        raise PhasewiseError(f"--arrival '{arrival}' is not one of poisson, gamma")
    gaps[0] = 0.0
    return Workload(np.cumsum(gaps), prompt.sample(rng, n), output.sample(rng, n), name=f"{arrival}@{rate_rps:g}")


@dataclass(slots=True, frozen=True)
class ClosedLoop:
    """`concurrency` clients, each sending its next request when its last one finishes (benchmark clients)."""

    concurrency: int
    requests: int
    prompt: LengthDist
    output: LengthDist
    think_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise PhasewiseError(f"--concurrency must be >= 1 (got {self.concurrency})")
        if self.requests < 1:
            raise PhasewiseError(f"--requests must be >= 1 (got {self.requests})")

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return self.prompt.sample(rng, self.requests), self.output.sample(rng, self.requests)
