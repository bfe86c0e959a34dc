"""A workload: arrays of arrival times, prompt and output lengths (one row per request)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import MAX_TOKENS

# the latest arrival a workload holds, s (about 32 years): float64's step there is 0.12 us (2^-23 s), so latencies of
# a few ms keep their digits; at a rate of 1e-300 req/s the arrivals reached 1e300 s, where a step is 1e284 s and
# every TTFT read 0.0 ms
MAX_ARRIVAL_S = 1e9


def check_arrival_span(span_s: float, n: int, rate_rps: float, flag: str) -> None:
    """A one-line error naming `flag` where `n` requests at `rate_rps` span more than MAX_ARRIVAL_S: a rate a user
    gives (simulate's and serve's --rate, sim/api.py build); the planner's own probes, at least its first guess / 4,096,
    stay within a few times it (a lowest probe of 500 requests at 2.4e-7 req/s spans 2e9 s, kept to 0.24 us)."""
    if span_s > MAX_ARRIVAL_S:
        raise PhasewiseError(f"{flag} {rate_rps:g} spreads {n:,} requests over {span_s:.3g} s, past the "
                             f"{MAX_ARRIVAL_S:.0e} s (about 32 years) within which float64 keeps times to the "
                             f"microsecond: give a {flag} above {n / MAX_ARRIVAL_S:.3g}")


def _numbers(values, field: str, name: str) -> np.ndarray:
    """`values` as a 1-D array of real numbers, one per request; a one-line error naming `field` otherwise (a
    string, a scalar, a 2-D or ragged list)."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):  # a ragged list
        arr = None
    if arr is None or arr.ndim != 1 or arr.dtype.kind not in "iuf":
        if arr is None:
            what = "a ragged sequence"
        elif arr.ndim != 1:
            what = "a scalar" if arr.ndim == 0 else f"a {arr.ndim}-D array"
        else:
            what = {"U": "text", "S": "bytes", "b": "booleans", "O": "objects"}.get(arr.dtype.kind, str(arr.dtype))
        raise PhasewiseError(f"{name}: {field} must be a 1-D array of numbers, one per request (got {what})")
    return arr


def _classes(values, field: str, what: str, name: str, n: int) -> np.ndarray:
    """`values` as int64 integers >= 0, one per request (a priority class, an image count): a fractional, negative,
    NaN or non-numeric value, or a length other than the requests', is a one-line error naming the request, never
    truncated."""
    arr = _numbers(values, field, name)
    if len(arr) != n:
        raise PhasewiseError(f"{name}: {field} holds {len(arr):,} values for {n:,} requests (one per request)")
    ok = (np.isfinite(arr) & (arr == np.floor(arr)) & (arr >= 0)) if arr.dtype.kind == "f" else arr >= 0
    if not ok.all():
        row = int(np.argmin(ok))
        raise PhasewiseError(f"{name}: request {row}: {what} must be an integer >= 0 (got {arr[row].item()!r})")
    return arr.astype(np.int64, copy=False)


def _token_counts(values, field: str, what: str, name: str) -> np.ndarray:
    """`values` as int64 token counts, each an integer >= 1 and <= MAX_TOKENS as a trace's (workload/traces.py):
    a fractional, NaN or infinite count is a one-line error naming the request, never truncated."""
    arr = _numbers(values, field, name)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr) & (arr == np.floor(arr)) & (arr >= 1) & (arr <= MAX_TOKENS)
    else:
        ok = (arr >= 1) & (arr <= MAX_TOKENS)
    if not ok.all():
        row = int(np.argmin(ok))
        raise PhasewiseError(f"{name}: request {row}: {what} must be an integer >= 1 and <= {MAX_TOKENS} "
                             f"(got {arr[row].item()!r})")
    return arr.astype(np.int64, copy=False)


@dataclass(slots=True)
class Workload:
    """Open-loop requests. Arrays are index-aligned; arrivals are sorted ascending."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    priority: np.ndarray | None = None  # optional class: 0 = most urgent
    name: str = "workload"
    # per request, its prompt's prefix block hashes (Mooncake traces, workload/mooncake.py); None: no prefix structure
    prefix_hashes: list[tuple[int, ...]] | None = None
    # per request, the images it carries (a trace's NumImages column, workload/traces.py); None: not given
    image_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.arrival_s = _numbers(self.arrival_s, "arrival_s", self.name).astype(np.float64, copy=False)
        self.prompt_tokens = _token_counts(self.prompt_tokens, "prompt_tokens", "prompt tokens", self.name)
        self.output_tokens = _token_counts(self.output_tokens, "output_tokens", "output tokens", self.name)
        n = len(self.arrival_s)
        if not (len(self.prompt_tokens) == len(self.output_tokens) == n):
            raise PhasewiseError(f"{self.name}: workload arrays differ in length (arrival_s {n:,}, prompt_tokens "
                                 f"{len(self.prompt_tokens):,}, output_tokens {len(self.output_tokens):,})")
        if n == 0:
            raise PhasewiseError("workload has no requests")
        if self.priority is not None:
            self.priority = _classes(self.priority, "priority", "priority (0 most urgent)", self.name, n)
        if self.prefix_hashes is not None and len(self.prefix_hashes) != n:
            raise PhasewiseError("workload prefix hashes differ in length from its requests")
        if self.image_counts is not None:
            self.image_counts = _classes(self.image_counts, "image_counts", "image count", self.name, n)
        checks = (
            (np.isfinite(self.arrival_s) & (self.arrival_s >= 0), "arrival time must be a finite number >= 0"),
        )
        for ok, what in checks:
            if not ok.all():
                row = int(np.argmin(ok))
                raise PhasewiseError(f"{self.name}: request {row}: {what}")
        if n > 1 and (np.diff(self.arrival_s) < 0).any():
            row = int(np.argmax(np.diff(self.arrival_s) < 0)) + 1
            raise PhasewiseError(f"{self.name}: request {row}: arrivals are not sorted ascending")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def mean_rate_rps(self) -> float:
        """Requests a second over the arrivals' span ((n - 1) gaps; NaN for fewer than two or a zero span)."""
        span = self.duration_s if len(self) > 1 else 0.0
        return (len(self) - 1) / span if span > 0 else math.nan

    def fingerprint(self) -> str:
        """A digest of everything a simulation reads from the workload: equal digests, the same requests at the
        same instants."""
        digest = hashlib.blake2b(digest_size=16)
        for arr in (self.arrival_s, self.prompt_tokens, self.output_tokens, self.priority, self.image_counts):
            digest.update(b"-" if arr is None else arr.tobytes())
        digest.update(repr((self.prefix_hashes, self.name)).encode())
        return digest.hexdigest()

    def head(self, n: int) -> Workload:
        return self.take(np.arange(min(n, len(self))))

    def take(self, rows: np.ndarray) -> Workload:
        """The requests at `rows` (ascending), with their arrival times."""
        pr = None if self.priority is None else self.priority[rows]
        hashes = None if self.prefix_hashes is None else [self.prefix_hashes[i] for i in rows]
        images = None if self.image_counts is None else self.image_counts[rows]
        return Workload(self.arrival_s[rows], self.prompt_tokens[rows], self.output_tokens[rows], pr, self.name,
                        hashes, images)

    def scaled_to_rate(self, rate_rps: float) -> Workload:
        """Same requests and arrival pattern, time-scaled to a mean rate (how trace replays are swept)."""
        if not (math.isfinite(rate_rps) and rate_rps > 0):
            raise PhasewiseError(f"rate must be a finite number > 0 (got {rate_rps})")
        self.check_rescalable()
        t = self.arrival_s - self.arrival_s[0]
        factor = self.mean_rate_rps / rate_rps
        return Workload(t * factor, self.prompt_tokens, self.output_tokens, self.priority,
                        self.name, self.prefix_hashes, self.image_counts)

    def span_at_rate_s(self, rate_rps: float) -> float:
        """The arrivals' span once scaled_to_rate(rate_rps): its n - 1 gaps at the rate's mean gap."""
        return (len(self) - 1) / rate_rps

    def check_rescalable(self) -> None:
        """A one-line error where the arrivals span no time (one request, or all at one instant): they have no rate
        for scaled_to_rate to rescale (plan and sweep check it before their search, simulate before its run)."""
        if self.duration_s > 0:
            return
        which = "it has one request" if len(self) == 1 else f"its {len(self):,} requests all arrive at one instant"
        raise PhasewiseError(f"trace '{self.name}': {which}, so there is no arrival rate to rescale (simulate: "
                             "replay it without --rate; plan and sweep: Poisson arrivals at each rate, --arrivals "
                             "poisson / arrivals: poisson)")

    def looped(self, duration_s: float) -> Workload:
        """The requests replayed back to back (each copy starts one mean gap after the previous one ends)
        until the copies' periods cover `duration_s` (the arrivals span it less one gap): a short trace excerpt at a
        high rate lasts long enough to reach its steady state. Each copy's prefix blocks are its own
        (prefix_copy): later copies are new conversations, not cache hits on their earlier selves."""
        t = self.arrival_s - self.arrival_s[0]
        n = len(self)
        period = t[-1] + (t[-1] / (n - 1) if n > 1 and t[-1] > 0 else 1.0)
        copies = max(1, math.ceil(duration_s / period)) if duration_s > t[-1] else 1
        if copies == 1:
            return self
        shift = np.repeat(np.arange(copies) * period, n)
        priority = None if self.priority is None else np.tile(self.priority, copies)
        hashes = None if self.prefix_hashes is None else prefix_copies(self.prefix_hashes, copies)
        images = None if self.image_counts is None else np.tile(self.image_counts, copies)
        return Workload(np.tile(t, copies) + shift, np.tile(self.prompt_tokens, copies),
                        np.tile(self.output_tokens, copies), priority, self.name, hashes, images)


def prefix_stride(hashes: list[tuple[int, ...]]) -> int:
    """The span of `hashes`' block ids (largest - smallest + 1): copy k of a trace renames block h to h + k x stride,
    so each copy's ids lie in a range of their own, above the previous copy's, whatever their sign (hash ids are
    opaque labels: a trace's may be negative)."""
    used = [blocks for blocks in hashes if blocks]
    if not used:
        return 1
    return 1 + max(max(blocks) for blocks in used) - min(min(blocks) for blocks in used)


def prefix_copy(blocks: tuple[int, ...], copy: int, stride: int) -> tuple[int, ...]:
    """One request's prefix blocks in copy `copy` of its trace (copy 0: as the trace has them). A replayed trace's
    later passes stand for new traffic: their conversations share no block with the first pass's (the blocks all
    requests of a pass share, a common system prompt, are shared within the pass and not across passes)."""
    return blocks if copy == 0 else tuple(h + copy * stride for h in blocks)


def prefix_copies(hashes: list[tuple[int, ...]], copies: int) -> list[tuple[int, ...]]:
    """`hashes` repeated `copies` times, each copy's blocks its own (prefix_copy)."""
    stride = prefix_stride(hashes)
    return [prefix_copy(blocks, k, stride) for k in range(copies) for blocks in hashes]
