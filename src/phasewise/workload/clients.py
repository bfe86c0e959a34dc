"""Benchmark clients at fixed concurrency, as they really run: request count, warm-up and length sampling.

    from phasewise.workload.clients import client_workload
    work = client_workload("sglang-bench", concurrency=64, isl=2048, osl=256)   # a ClosedLoop
    simulate(deployment, work).summary()["steady_state"]

The presets are data (workload/data/clients.yaml, a source per value). Every client here releases every measured
request at t=0 behind a semaphore of C with no jitter, which is `ClosedLoop` with think_s = 0. Before them: a
readiness request alone (vLLM's), then the warm-up copies of the first request, C at a time or all at once (SGLang's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import yaml

from phasewise.errors import PhasewiseError
from phasewise.workload.generators import DEFAULT_ISL, DEFAULT_OSL, ClosedLoop, LengthDist

LENGTHS = ("fixed", "vllm-random", "sglang-random")
_FIELDS = ("num_prompts", "num_prompts_per_concurrency", "readiness_requests", "warmup_requests",
           "warmup_per_concurrency", "warmup_at_once", "warmup_copies_prompt", "warmup_sleep_s", "warmup_output_cap",
           "lengths", "range_ratio", "default_lengths")


@dataclass(slots=True, frozen=True)
class BenchmarkClient:
    """One benchmark client's behaviour at fixed concurrency (values and their sources from clients.yaml)."""

    name: str
    num_prompts: int  # requests measured: max(num_prompts, num_prompts_per_concurrency x C)
    num_prompts_per_concurrency: int
    readiness_requests: int  # sent first, each alone and awaited, not counted (vLLM's test run); --warmup keeps them
    warmup_requests: int  # sent next, not counted: max(warmup_requests, warmup_per_concurrency x C)
    warmup_per_concurrency: int
    warmup_at_once: bool  # the warm-up requests all sent at once (SGLang's), else C at a time behind the semaphore
    warmup_copies_prompt: bool  # they send the first request's very prompt (vLLM's, SGLang's, InferenceX's)
    warmup_sleep_s: float  # pause after the warm-up, before the measured requests are released
    warmup_output_cap: int | None  # warm-up output tokens = min(first request's, cap)
    lengths: str  # fixed | vllm-random | sglang-random
    range_ratio: float
    # (prompt, output) tokens where --isl / --osl are not given; None where the client has none (lengths_for)
    default_lengths: tuple[int | None, int | None] = (None, None)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        where = f"client '{self.name}'"
        if self.num_prompts < 1 or self.num_prompts_per_concurrency < 0:
            raise PhasewiseError(f"{where}: num_prompts must be >= 1 and num_prompts_per_concurrency >= 0")
        if (min(self.readiness_requests, self.warmup_requests, self.warmup_per_concurrency) < 0
                or not self.warmup_sleep_s >= 0):
            raise PhasewiseError(f"{where}: readiness_requests, warmup_requests, warmup_per_concurrency and "
                                 "warmup_sleep_s must be >= 0")
        if self.lengths not in LENGTHS:
            raise PhasewiseError(f"{where}: lengths '{self.lengths}' is not one of {', '.join(LENGTHS)}")
        if not 0 <= self.range_ratio < 1:
            raise PhasewiseError(f"{where}: range_ratio must be in [0, 1) (got {self.range_ratio})")

    def default_num_prompts(self, concurrency: int) -> int:
        return max(self.num_prompts, self.num_prompts_per_concurrency * concurrency)

    def default_warmup(self, concurrency: int) -> int:
        """Warm-up requests at `concurrency` (the readiness requests apart)."""
        return max(self.warmup_requests, self.warmup_per_concurrency * concurrency)

    def lengths_for(self, isl: float | None, osl: float | None) -> tuple[float, float, tuple[str, ...]]:
        """(isl, osl, notes): --isl / --osl where given, else this client's dataset defaults (default_lengths), else
        phasewise's DEFAULT_ISL / DEFAULT_OSL, each of those with a note saying so (the client sets none: aiperf's
        and genai-perf's outputs are the model's to end, which a simulation cannot leave to it)."""
        notes: tuple[str, ...] = ()
        given = {"isl": isl, "osl": osl}
        for (side, default), own in zip((("isl", DEFAULT_ISL), ("osl", DEFAULT_OSL)), self.default_lengths):
            if given[side] is None:
                given[side] = default if own is None else own
                if own is None:
                    what = "prompt" if side == "isl" else "output"
                    notes += (f"--client {self.name} without --{side}: {default:,} {what} tokens, phasewise's default "
                              f"({self.name} sets no {what} length of its own; workload/data/clients.yaml "
                              f"default_lengths); --{side} sets it",)
        return given["isl"], given["osl"], notes

    def length_dist(self, mean: float) -> LengthDist:
        """The lengths this client's random/synthetic dataset draws for a nominal length `mean`."""
        length = max(int(mean), 1)
        r = self.range_ratio
        if self.lengths == "vllm-random":  # randint(int(L(1-r)), int(L(1+r)) + 1)
            lo, hi = max(int(length * (1 - r)), 1), int(length * (1 + r))
        elif self.lengths == "sglang-random":  # randint(max(int(L r), 1), L + 1); outputs from int(L r), >= 1 here
            lo, hi = max(int(length * r), 1), length
        else:
            return LengthDist("fixed", mean)
        return uniform_integers(lo, hi)

    def source(self, key: str) -> str:
        return self.sources.get(key, "")


def uniform_integers(lo: int, hi: int) -> LengthDist:
    """Integers uniform in [lo, hi] (numpy's randint(lo, hi + 1)), as a LengthDist."""
    if lo == hi:
        return LengthDist("fixed", lo)
    return LengthDist("uniform", (lo + hi) / 2, (hi - lo) / (hi + lo), min_tokens=lo, max_tokens=hi)


@lru_cache(maxsize=1)
def _presets() -> dict[str, BenchmarkClient]:
    text = resources.files("phasewise.workload").joinpath("data", "clients.yaml").read_text()
    clients = {}
    for name, entry in yaml.safe_load(text)["clients"].items():
        missing = [f for f in _FIELDS if f not in entry]
        if missing:
            raise PhasewiseError(f"clients.yaml: client '{name}' lacks {', '.join(missing)}")
        values = {f: entry[f]["value"] for f in _FIELDS}
        values["default_lengths"] = tuple(values["default_lengths"] or (None, None))
        clients[name] = BenchmarkClient(name=name, sources={f: str(entry[f]["source"]) for f in _FIELDS}, **values)
    return clients


def client_names() -> tuple[str, ...]:
    return tuple(_presets())


def load_client(name: str) -> BenchmarkClient:
    presets = _presets()
    if name not in presets:
        raise PhasewiseError(f"--client '{name}' is not one of {', '.join(presets)}")
    return presets[name]


def client_workload(client: str | BenchmarkClient, concurrency: int, num_prompts: int | None = None,
                    warmup: int | None = None, isl: float | None = None, osl: float | None = None, seed: int = 0, *,
                    prompt: LengthDist | None = None, output: LengthDist | None = None) -> ClosedLoop:
    """The closed loop `client` runs at `concurrency`: its request count (unless `num_prompts`), its readiness
    request(s) and warm-up (its warm-up count unless `warmup`: vLLM's --num-warmups, SGLang's --warmup-requests), and
    its length sampling around isl/osl (its own defaults where None: BenchmarkClient.lengths_for, whose notes
    sim/api.py build() prints; unless `prompt`/`output` are given)."""
    c = client if isinstance(client, BenchmarkClient) else load_client(client)
    if concurrency < 1:
        raise PhasewiseError(f"--concurrency must be >= 1 (got {concurrency})")
    if num_prompts is not None and num_prompts < 1:
        raise PhasewiseError(f"--num-prompts must be >= 1 (got {num_prompts})")
    n = c.default_num_prompts(concurrency) if num_prompts is None else num_prompts
    w = c.default_warmup(concurrency) if warmup is None else warmup
    if w < 0:
        raise PhasewiseError(f"--warmup must be >= 0 (got {w})")
    isl, osl, _ = c.lengths_for(isl, osl)
    unmeasured = c.readiness_requests + w
    return ClosedLoop(concurrency, n, prompt or c.length_dist(isl), output or c.length_dist(osl),
                      seed=seed, warmup_requests=unmeasured, warmup_sleep_s=c.warmup_sleep_s if unmeasured else 0.0,
                      warmup_output_cap=c.warmup_output_cap, readiness_requests=c.readiness_requests,
                      warmup_at_once=c.warmup_at_once, warmup_copies_prompt=c.warmup_copies_prompt, name=c.name)
