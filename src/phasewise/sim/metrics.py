"""Per-request records, per-instance counters, and the summaries users read (percentiles, SLOs, goodput)."""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError

# Inter-token gaps over all tokens go into a log-spaced histogram (bins 0.23 % wide, 1 us .. 10^4 s):
# percentiles over millions of tokens in constant memory, within 0.12 % of the exact value.
_TBT_LO, _TBT_DECADES, _TBT_BINS_PER_DECADE = 1e-6, 10, 1000
_TBT_NBINS = _TBT_DECADES * _TBT_BINS_PER_DECADE


@dataclass(slots=True, frozen=True)
class Slo:
    """Latency SLOs: a request attains them if its TTFT <= ttft_ms, its TPOT (the mean gap between its output
    tokens, DistServe's definition) <= tpot_ms, and every gap between two of its tokens (TBT) <= max_tbt_ms.
    Unset limits are infinite (--slo-ttft-ms, --slo-tpot-ms, --slo-tbt-ms)."""

    ttft_ms: float = math.inf
    tpot_ms: float = math.inf
    max_tbt_ms: float = math.inf

    def __post_init__(self) -> None:
        for name, v in (("--slo-ttft-ms", self.ttft_ms), ("--slo-tpot-ms", self.tpot_ms),
                        ("--slo-tbt-ms", self.max_tbt_ms)):
            if not isinstance(v, numbers.Real) or isinstance(v, bool):
                raise PhasewiseError(f"{name} takes a number of ms > 0 (got {v!r})")
            if not v > 0:
                raise PhasewiseError(f"{name} must be > 0 (got {v})")

    def describe(self) -> str:
        """The limits set, in words: 'TTFT <= 1000 ms and TPOT <= 50 ms' ('no SLO' when none)."""
        parts = [f"{name} <= {v:g} ms" for name, v in (("TTFT", self.ttft_ms), ("TPOT", self.tpot_ms),
                                                       ("every TBT", self.max_tbt_ms)) if math.isfinite(v)]
        return " and ".join(parts) or "no SLO"


def slo_met(slo: Slo, ttft_s, tpot_s, max_tbt_s, output_tokens):
    """Whether a request (or each of arrays of them) attains `slo`: TTFT, then TPOT and every TBT for requests of
    more than one output token; a NaN latency (never produced) does not attain. Scalars or numpy arrays alike."""
    single = output_tokens <= 1
    met = (ttft_s * 1e3 <= slo.ttft_ms) & ((tpot_s * 1e3 <= slo.tpot_ms) | single)
    if math.isfinite(slo.max_tbt_ms):
        met = met & ((max_tbt_s * 1e3 <= slo.max_tbt_ms) | single)
    return met


def miss_allowance(requests: int, target: float) -> int:
    """The most of `requests` that may miss their SLO with the attainment (met / requests) still >= target."""
    misses = max(int(requests * (1.0 - target)), 0)
    while misses < requests and (requests - misses - 1) / requests >= target:
        misses += 1
    while misses > 0 and (requests - misses) / requests < target:
        misses -= 1
    return misses


# Why a request can never run (Cluster.reject's reasons), as the one-line note names them
REJECT_REASONS = {"beyond_context": "prompt + output tokens beyond the model's context (max_position_embeddings)",
                  "beyond_kv_capacity": "prompt + output tokens beyond one instance's whole KV cache",
                  "beyond_token_budget": "prompt tokens beyond max_num_tokens with chunked prefill off "
                                         "(trtllm-serve refuses them)"}


def rejected_note(rejected_by: dict[str, int], requests: int) -> str | None:
    """One line naming how many requests can never run and why; None when every request can run."""
    if not rejected_by:
        return None
    parts = [f"{n} with {REJECT_REASONS.get(reason, reason)}" for reason, n in sorted(rejected_by.items())]
    return f"{sum(rejected_by.values())} of {requests} requests can never run and were rejected: {'; '.join(parts)}"


# Why a run of one measured request has no throughput or goodput (null in simulate --json, SimResult.rated_duration_s):
# its duration, first request sent to last finished, is that request's own end-to-end latency, and one over it no
# rate of the requests offered (58 req/s for one 17 ms request offered at 1 req/s). The printer's words for it.
NO_RATE = "no rate from one request (its duration is its own end-to-end latency)"


# How each benchmark client (`--client`) takes ITL: every gap between a request's streamed chunks, pooled over the
# requests (the summary's tbt_ms), or one figure per request, (E2E - TTFT) / (output tokens - 1), which is its TPOT
# (tpot_ms). Without a client, every gap (`vllm bench serve`'s).
CLIENT_ITL = {
    "vllm-bench": "tbt_ms",  # vllm/benchmarks/serve.py calculate_metrics: itls += outputs[i].itl (ENGINES.md)
    "sglang-bench": "tbt_ms",  # python/sglang/bench_serving.py calculate_metrics, as vLLM's (ENGINES.md)
    # SemiAnalysis InferenceX utils/bench_serving/benchmark_serving.py calculate_metrics: itls += outputs[i].itl
    "inferencex": "tbt_ms",
    # triton-inference-server/perf_analyzer genai-perf/genai_perf/profile_data_parser/llm_profile_data_parser.py
    # _parse_requests: inter_token_latency = (req_latency_ns - ttft) / (total_output_token - 1), per request
    "genai-perf": "tpot_ms",
    "aiperf": "tpot_ms",  # aiperf metrics/types/inter_token_latency_metric.py, likewise (replay_names)
}


def client_itl(client: str | None) -> str:
    """The summary key of the ITL figures `client` reports (CLIENT_ITL); every gap without a client."""
    if client is None:
        return "tbt_ms"
    if client not in CLIENT_ITL:
        raise PhasewiseError(f"--client '{client}' is not one of {', '.join(CLIENT_ITL)}")
    return CLIENT_ITL[client]


class TbtHistogram:
    """The gaps between a request's streamed chunks (ITL as `vllm bench serve`, SGLang's bench_serving and InferenceX
    take it: one gap per chunk received after the first, pooled over the requests; genai-perf and aiperf take one
    per request, CLIENT_ITL). The tokens one step releases together (a speculative step's accepted tokens) arrive as
    one chunk: the zero gaps between them are not gaps, and a histogram counting them put the p50 ITL of a run
    accepting ~2 tokens a step at 0."""

    __slots__ = ("counts", "n", "total", "_pending", "_pending_n")

    def __init__(self) -> None:
        self.counts = np.zeros(_TBT_NBINS + 2, dtype=np.int64)
        self.n = 0
        self.total = 0.0
        self._pending: list[np.ndarray] = []  # binned in batches: one numpy pass per ~64k gaps
        self._pending_n = 0

    def add(self, gaps: np.ndarray) -> None:
        self._pending.append(gaps)
        self._pending_n += len(gaps)
        if self._pending_n >= 65536:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        gaps = np.concatenate(self._pending)
        self._pending, self._pending_n = [], 0
        self.add_weighted(gaps, None)

    def add_weighted(self, gaps: np.ndarray, weights: np.ndarray | None) -> None:
        """Each gaps[i] occurring weights[i] times (1 when weights is None)."""
        if weights is None:
            weights = np.ones(len(gaps), dtype=np.int64)
        keep = (weights > 0) & (gaps > 0)  # a zero gap: tokens of one chunk
        gaps, weights = gaps[keep], weights[keep]
        if not len(gaps):
            return
        self.n += int(weights.sum())
        self.total += float((gaps * weights).sum())
        idx = np.floor((np.log10(gaps) - math.log10(_TBT_LO)) * _TBT_BINS_PER_DECADE).astype(np.int64) + 1
        np.clip(idx, 0, _TBT_NBINS + 1, out=idx)
        self.counts += np.bincount(idx, weights=weights, minlength=_TBT_NBINS + 2).astype(np.int64)

    def percentile(self, q: float) -> float:
        self._flush()
        if self.n == 0:
            return math.nan
        rank = q / 100 * (self.n - 1)
        cum = np.cumsum(self.counts)
        b = int(np.searchsorted(cum, rank, side="right"))
        return _TBT_LO * 10 ** ((b - 0.5) / _TBT_BINS_PER_DECADE)

    @property
    def mean(self) -> float:
        self._flush()
        return self.total / self.n if self.n else math.nan

    def subtract(self, other: TbtHistogram) -> None:
        """Remove gaps binned in `other` (they must have been binned here too: warm-up requests' gaps)."""
        self._flush()
        other._flush()
        self.counts -= other.counts
        self.n -= other.n
        self.total -= other.total
        if self.n < 0 or (self.counts < 0).any():
            raise AssertionError("TBT histogram: subtracted gaps that were never binned")

    def figures(self) -> dict[str, float]:
        """mean, p50, p90, p99 in ms."""
        return {"mean": self.mean * 1e3, **{f"p{q}": self.percentile(q) * 1e3 for q in (50, 90, 99)}}


def dist_ms(x: np.ndarray) -> dict[str, float]:
    """mean, p50, p90, p99 in ms of the finite values of x (seconds)."""
    x = x[np.isfinite(x)] * 1e3
    if not len(x):
        return {k: math.nan for k in ("mean", "p50", "p90", "p99")}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


@dataclass(slots=True)
class InstanceStats:
    name: str
    role: str
    gpus: int
    busy_s: float = 0.0
    end_s: float = 0.0  # when its last iteration ends (SimResult.duration_s covers it)
    iterations: int = 0
    decode_iterations: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    batch_seqs_sum: int = 0  # sequences summed over iterations (mean batch = this / iterations)
    flops: float = 0.0
    bytes: float = 0.0
    energy_j: float = 0.0  # busy-time energy; idle energy is added at the end
    kv_token_seconds: float = 0.0  # integral of KV blocks in use over time (x block size)
    kv_capacity_blocks: int = 0
    peak_flops: float = 0.0  # the group's dense peak for its compute dtype, all its GPUs
    bandwidth: float = 0.0  # the group's memory bandwidth, all its GPUs
    kv_peak_blocks: int = 0
    preemptions: int = 0
    images_encoded: int = 0  # images its vision encoder ran over (perf/vision.py)
    encoder_busy_s: float = 0.0  # the time those forwards took, within busy_s
    # when recorded, per launch: (start_s, duration_s, roofline utilization = max(compute, bandwidth) share,
    # sequences, prefill tokens, decode tokens)
    timeline: list = field(default_factory=list)


@dataclass(slots=True)
class SimResult:
    """What a simulation produced: per-request arrays (index = request id) and per-instance stats."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    scheduled_s: np.ndarray
    tpot_s: np.ndarray
    max_tbt_s: np.ndarray
    preemptions: np.ndarray
    instance: np.ndarray
    tbt: TbtHistogram
    instances: list[InstanceStats]
    gpus: float  # the deployment's GPUs (autoscaled: the mean it held over the run, sim/autoscaler.py)
    price_per_hour_usd: float
    slo: Slo
    wall_s: float = 0.0
    events: int = 0
    rejected: int = 0
    rejected_by: dict[str, int] = field(default_factory=dict)  # requests that can never run, per REJECT_REASONS key
    # Benchmark clients (closed loops): which requests the client counts (False: warm-up requests, simulated
    # but excluded from every summary figure); None = all. Measured ids are in release order.
    measured: np.ndarray | None = None
    concurrency: int | None = None  # closed loop: requests in flight (one wave); None for open loops
    steady_tbt: TbtHistogram | None = None  # every gap of the steady-state requests (see steady_state())
    # figures of the deployment's serving policy (priority pools' offloads, attention offload, ...), by name
    policy: dict[str, Any] = field(default_factory=dict)
    images: np.ndarray | None = None  # images each request carried (workload/images.py); None: a text workload
    stopped_s: float = math.nan  # when a run with stop_after_misses ended early (NaN: it ran every request)
    # prompt tokens each request's first admission found in a prefix cache (-1: none kept where it was admitted)
    cached_tokens: np.ndarray | None = None
    # what `phasewise simulate` prints beside the figures, set by sim/api.py run(): the chips' caveats ({chip: its
    # entry's caveat}) and the notes on what the flags did not say (SimSpec.notes); summary() gives them as its
    # "caveats" and "notes", as simulate --json does. simulate() leaves them empty (its caller has the spec).
    caveats: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def rejection_warning(self) -> str | None:
        """The one-line note on requests that can never run (None if every one can); a one-line error when no
        request can run at all (nothing to report then)."""
        note = rejected_note(self.rejected_by, len(self.arrival_s))
        if note and self.rejected == len(self.arrival_s):
            raise PhasewiseError(f"nothing can run: {note}")
        return note

    @property
    def measured_mask(self) -> np.ndarray:
        return np.ones(len(self.arrival_s), dtype=bool) if self.measured is None else self.measured

    @property
    def ttft_s(self) -> np.ndarray:
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    @property
    def queue_s(self) -> np.ndarray:
        return self.scheduled_s - self.arrival_s

    @property
    def duration_s(self) -> float:
        """Simulated time of all requests, warm-up included, to the last finish or the last iteration's end, whichever
        is later (what the instances' statistics cover: a request rejected part-way, once its prompt and generated
        tokens outgrew the KV cache, leaves iterations after the last finish); NaN when none finished (every one
        rejected)."""
        if not np.isfinite(self.finish_s).any():
            return math.nan
        end = max([float(np.nanmax(self.finish_s)), *(s.end_s for s in self.instances)])
        return end - float(self.arrival_s.min())

    @property
    def measured_duration_s(self) -> float:
        """First measured request sent to last measured request finished (the clients' benchmark duration); the span
        the summary's rates are counted over (rated_duration_s)."""
        m = self.measured_mask
        fin = self.finish_s[m]
        if not np.isfinite(fin).any():
            return math.nan
        return float(np.nanmax(fin) - self.arrival_s[m].min())

    @property
    def rated_duration_s(self) -> float:
        """measured_duration_s where a rate can be counted over it: where it spans more than one measured request;
        NaN for a run of one (NO_RATE), whose duration is that request's own end-to-end latency."""
        return self.measured_duration_s if int(self.measured_mask.sum()) > 1 else math.nan

    def attained(self, slo: Slo | None = None) -> np.ndarray:
        slo = slo or self.slo
        return np.isfinite(self.finish_s) & slo_met(slo, self.ttft_s, self.tpot_s, self.max_tbt_s, self.output_tokens)

    def steady_state(self) -> dict[str, Any] | None:
        """The latency figures without the first wave (the first `concurrency` requests released, which
        arrive together) and the last wave (the last `concurrency` released, which drain the system);
        None for open loops, or when no request is left in between."""
        c = self.concurrency
        if c is None:
            return None
        ids = np.flatnonzero(self.measured_mask)
        if len(ids) <= 2 * c:
            return None
        w = ids[c:len(ids) - c]
        done = np.isfinite(self.finish_s[w])
        return {
            "requests": len(w),
            "completed": int(done.sum()),
            "concurrency": c,
            "excluded_first": c,
            "excluded_last": c,
            "ttft_ms": dist_ms(self.ttft_s[w]),
            "tpot_ms": dist_ms(self.tpot_s[w]),
            "tbt_ms": self.steady_tbt.figures() if self.steady_tbt is not None else
            {k: math.nan for k in ("mean", "p50", "p90", "p99")},
            "e2e_ms": dist_ms(self.e2e_s[w]),
        }

    def summary(self) -> dict[str, Any]:
        """Figures over all completed measured requests, as benchmark clients report them (TPOT per request
        = (E2E - TTFT) / (output - 1); TBT = ITL, every gap), plus the closed loop's steady state."""
        m = self.measured_mask
        dur = self.measured_duration_s
        rated = self.rated_duration_s  # the rates' span: NaN (no rate) for a run of one measured request
        finished = np.isfinite(self.finish_s) & m
        done = int(finished.sum())
        out_tokens = int(self.output_tokens[finished].sum())
        attained = self.attained()[m]
        tps = out_tokens / rated if rated > 0 else math.nan
        dollars_per_s = self.price_per_hour_usd / 3600.0
        # the instances' energy covers the whole run, warm-up included, as their statistics do: tokens per joule
        # divides every token generated in it (the measured ones alone would charge them the warm-up's energy)
        energy = sum(s.energy_j for s in self.instances)
        all_tokens = int(self.output_tokens[np.isfinite(self.finish_s)].sum())
        span = self.duration_s
        ttft, tpot = self.ttft_s[m], self.tpot_s[m]
        multi = self.output_tokens[m] > 1
        policy = copy.deepcopy(self.policy)  # the summary's own: a change to it leaves the result's as it was
        out = {
            "requests": int(m.sum()),
            "completed": done,
            "rejected": self.rejected if self.measured is None else int(m.sum()) - done,
            "rejected_by": dict(self.rejected_by),  # every request's, warm-up included
            "warmup_requests": int((~m).sum()),
            "concurrency": self.concurrency,
            "duration_s": dur,
            "ttft_ms": dist_ms(ttft),
            "tpot_ms": dist_ms(tpot),
            "tbt_ms": self.tbt.figures(),
            "e2e_ms": dist_ms(self.e2e_s[m]),
            "queue_ms": dist_ms(self.queue_s[m]),
            "steady_state": self.steady_state(),
            "preemptions": int(self.preemptions[m].sum()),
            "throughput": {
                "requests_per_s": done / rated if rated > 0 else math.nan,
                "output_tokens_per_s": tps,
                "output_tokens_per_s_per_gpu": tps / self.gpus,
                "output_tokens_per_dollar": tps / dollars_per_s if dollars_per_s > 0 else math.nan,
                "output_tokens_per_joule": all_tokens / energy if energy > 0 else math.nan,
            },
            "slo": {"ttft_ms": self.slo.ttft_ms, "tpot_ms": self.slo.tpot_ms, "tbt_ms": self.slo.max_tbt_ms,
                    "applied": self.slo.describe(),
                    "attainment": float(attained.mean()),
                    "ttft_attainment": float((ttft * 1e3 <= self.slo.ttft_ms).mean()),
                    # a one-token answer has no TPOT or TBT to miss, if it finished
                    "tpot_attainment": float(np.where(multi, tpot * 1e3 <= self.slo.tpot_ms, finished[m]).mean()),
                    "tbt_attainment": float(np.where(multi, self.max_tbt_s[m] * 1e3 <= self.slo.max_tbt_ms,
                                                     finished[m]).mean())},
            "goodput": {"requests_per_s": attained.sum() / rated if rated > 0 else math.nan,
                        "requests_per_s_per_gpu": attained.sum() / rated / self.gpus if rated > 0 else math.nan},
            "gpus": self.gpus,
            "energy_j": energy,
            "sim": {"wall_s": self.wall_s, "events": self.events, "stopped_s": self.stopped_s,
                    "requests_per_wall_s": len(self.arrival_s) / self.wall_s if self.wall_s else math.nan},
            "instances": [self._instance_summary(s, span) for s in self.instances],
            "policy": policy,
            # prefix caching (sim/prefix_cache.py): hit rates, saved prefill tokens, evictions; None without hashes
            "prefix_cache": policy.get("prefix_cache"),
        }
        if self.images is not None:  # image inputs (workload/images.py): what each carrying request had, and the
            carried = self.images[m] > 0  # TTFT of the requests with images and of those without apart
            out["images"] = {**policy["images"], "requests_with_images": int(carried.sum()),
                             "images_carried": int(self.images[m].sum()),
                             "ttft_ms_with_images": dist_ms(ttft[carried]),
                             "ttft_ms_without_images": dist_ms(ttft[~carried])}
        out["aiperf"] = replay_names(out)
        if self.caveats:  # run()'s (sim/api.py), after every figure as simulate --json has them
            out["caveats"] = dict(self.caveats)
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def _instance_summary(self, s: InstanceStats, dur: float) -> dict[str, Any]:
        it = max(s.iterations, 1)
        return {
            "name": s.name, "role": s.role, "gpus": s.gpus,
            "busy_fraction": s.busy_s / dur if dur > 0 else math.nan,
            "iterations": s.iterations,
            "mean_batch_seqs": s.batch_seqs_sum / it,
            "mean_tokens_per_iteration": (s.prefill_tokens + s.decode_tokens) / it,
            "prefill_tokens": s.prefill_tokens, "decode_tokens": s.decode_tokens,
            "kv_mean_use": s.kv_token_seconds / (s.kv_capacity_blocks * dur) if dur > 0 and s.kv_capacity_blocks else 0.0,
            "kv_peak_use": s.kv_peak_blocks / s.kv_capacity_blocks if s.kv_capacity_blocks else 0.0,
            "compute_utilization": s.flops / (s.peak_flops * dur) if dur > 0 and s.peak_flops else 0.0,
            "bandwidth_utilization": s.bytes / (s.bandwidth * dur) if dur > 0 and s.bandwidth else 0.0,
            "energy_j": s.energy_j,
            "preemptions": s.preemptions,
            **({"images_encoded": s.images_encoded, "encoder_busy_fraction": s.encoder_busy_s / dur if dur > 0
                else math.nan} if s.images_encoded else {}),
        }

    def records(self) -> dict[str, np.ndarray]:
        """Per-request columns (for CSV/Parquet)."""
        return {
            "request_id": np.arange(len(self.arrival_s)),
            "arrival_s": self.arrival_s, "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
            "ttft_ms": self.ttft_s * 1e3, "tpot_ms": self.tpot_s * 1e3, "max_tbt_ms": self.max_tbt_s * 1e3,
            "e2e_ms": self.e2e_s * 1e3, "queue_ms": self.queue_s * 1e3, "preemptions": self.preemptions,
            "instance": self.instance, "slo_attained": self.attained(), "measured": self.measured_mask,
            **({"images": self.images} if self.images is not None else {}),
            **({"cached_tokens": np.maximum(self.cached_tokens, 0)} if self.caches_prefixes else {}),
        }

    @property
    def caches_prefixes(self) -> bool:
        """Whether any request was admitted where a prefix cache is kept (its cached_tokens then count)."""
        return self.cached_tokens is not None and bool((self.cached_tokens >= 0).any())


def replay_names(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A summary's headline figures under the names NVIDIA's replay/benchmark tools print (aiperf's
    profile_export_aiperf.json: per metric a stats block with `unit`, `avg`, `p50`, `p90`, `p99`; docs.nvidia.com/aiperf
    reference/json-export-schema and the metrics reference), so results compare key for key. aiperf's
    inter_token_latency is per request, (request_latency - time_to_first_token) / (output_sequence_length - 1)
    (aiperf metrics/types/inter_token_latency_metric.py): TPOT here, not every gap."""

    def stats(d: dict[str, float]) -> dict[str, Any]:
        return {"unit": "ms", "avg": d["mean"], "p50": d["p50"], "p90": d["p90"], "p99": d["p99"]}

    t = s["throughput"]
    return {"time_to_first_token": stats(s["ttft_ms"]), "inter_token_latency": stats(s["tpot_ms"]),
            "request_latency": stats(s["e2e_ms"]),
            "output_token_throughput": {"unit": "tokens/sec", "avg": t["output_tokens_per_s"]},
            "request_throughput": {"unit": "requests/sec", "avg": t["requests_per_s"]}}
