"""The twin's NVIDIA Dynamo frontend metrics: the dynamo_frontend_* series a Dynamo frontend serves at /metrics
(lib/llm/src/http/service/metrics.rs), kept over the twin's requests as that frontend keeps them, so that Dynamo's
SLA planner, its dashboards or any tool reading a Dynamo frontend can be pointed at a Prometheus scraping the twin.

What the frontend does, and this module with it: an HTTP request (a handler entry: one for a batch of prompts or n
choices, as its completions_single / completions_batch create one InflightGuard and one HttpQueueGuard a request;
FrontendRequest) counts as started when it arrives (requests_started_total by endpoint and request type) and in
flight until its response ends (active_requests and the deprecated inflight_requests); it waits for its first token,
of any of its choices, in the HTTP queue (queued_requests); when its last choice ends, its duration and one
requests_total by endpoint, request type (stream / unary), status (success / error) and error type ("" for none,
cancelled for a client that left, overload for the twin's 503; the first of its choices' errors). Per choice (the
response collector's observations; one choice a request in the usual case): its first chunk of tokens gives its
time to first token and its input length; every later chunk of n tokens gives n inter-token latencies of (gap / n);
its end its output length (if it has any tokens). Histograms take the frontend's default log-spaced buckets,
rounded to two significant figures (generate_log_buckets): TTFT 0.001-480 s in 18, ITL 0.001-2 s in 13, request
duration 1-512 s in 10, input length 50-128,000 tokens in 12, output length 50-32,000 in 10. The model label is
the served name lowercased, as the frontend writes it; `dynamo_namespace`, which the planner also filters on, is
added to every series when given (a Kubernetes deployment's scrape adds it from the pod's labels instead).
A request's cached tokens (prefix-cache hits) go into cached_tokens once, with its first chunk, on the input length's
buckets, as the frontend observes them when the engine reports them: here when the instance that first admitted it
keeps a prefix cache (none is observed where none is kept).

The per-worker gauges Dynamo's planner reads (labels worker_id, dp_rank, worker_type; its PLANNER_TARGET_NAMES), as
the frontend sets them (lib/llm/src/protocols/common/timing.rs RequestTracker): at a request's first token its TTFT
and input length under the worker it was routed to first (worker_type "prefill" for a disaggregated prefill
worker, "decode" for a collocated one, which Dynamo labels so), worker_last_time_to_first_token_seconds and
worker_last_input_sequence_tokens; with each later chunk its mean inter-token latency so far, (now - first token) /
(tokens - 1), under the worker that produced it (worker_last_inter_token_latency_seconds); and at the scrape, per
worker, the router's load view (kv_router worker monitor): worker_active_prefill_tokens, the prompt tokens still to
prefill of the requests queued or prefilling there (a decode worker's 0), and worker_active_decode_blocks, the KV
blocks in use there. A twin instance is a worker: worker_id its position + 1 (Dynamo's ids are lease ids, 0 meaning
none), dp_rank 0 (its attention-DP ranks are not told apart). Not kept: the tokenizer latency, the per-stage
gauges, requests refused before they reach the simulation (a 4xx)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from phasewise.apps.prom_histogram import Histogram


def log_buckets(lowest: float, highest: float, count: int) -> tuple[float, ...]:
    """The frontend's generate_log_buckets: 0, then `count` - 1 values log-spaced from `lowest` to `highest`, each
    rounded to two significant figures, repeats dropped."""
    out = [0.0]
    for i in range(1, count):
        value = math.exp(math.log(lowest) + (math.log(highest) - math.log(lowest)) * i / (count - 1))
        scale = 10.0 ** (1 - math.floor(math.log10(value)))
        rounded = math.floor(value * scale + 0.5) / scale  # Rust's f64::round, half away from zero
        if rounded != out[-1]:
            out.append(rounded)
    return tuple(out)


TTFT_BUCKETS = log_buckets(0.001, 480.0, 18)
ITL_BUCKETS = log_buckets(0.001, 2.0, 13)
DURATION_BUCKETS = log_buckets(1.0, 512.0, 10)
INPUT_BUCKETS = log_buckets(50.0, 128000.0, 12)
OUTPUT_BUCKETS = log_buckets(50.0, 32000.0, 10)


@dataclass(slots=True)
class FrontendRequest:
    """One HTTP request as Dynamo's frontend tracks it (metrics.rs InflightGuard and HttpQueueGuard, one a handler
    entry): the streams of its choices (a batch's prompts x n) share it."""

    endpoint: str  # chat_completions | completions, as the frontend labels it
    streaming: bool
    open: int  # its choices not yet ended
    arrival_s: float = math.nan  # simulated: its first choice's arrival (LiveSim.submit)
    answered: bool = False  # a first token of any choice out: it left the HTTP queue
    error_type: str = ""  # the first of its choices' errors (cancelled, overload); "" while all succeed


def prom_value(value: float, integer: bool) -> str:
    """A sample's value as the Prometheus text format carries it: an integer series' (IntGaugeVec) exactly, a float's
    in full (Python's shortest round-trip form), never rounded to a few significant figures."""
    return str(round(value)) if integer else repr(float(value))


class DynamoFrontendMetrics:
    """dynamo_frontend_* over the twin's requests (each request's observations through the calls below; every span
    in wall seconds, as LiveSim.wall_s gives them)."""

    __slots__ = ("ttft", "itl", "duration", "input_tokens", "output_tokens", "cached_tokens", "started", "active",
                 "queued", "output_tokens_total", "requests", "worker_ttft_s", "worker_isl", "worker_itl_s")

    def __init__(self) -> None:
        self.ttft, self.itl = Histogram(TTFT_BUCKETS), Histogram(ITL_BUCKETS)
        self.duration = Histogram(DURATION_BUCKETS)
        self.input_tokens, self.output_tokens = Histogram(INPUT_BUCKETS), Histogram(OUTPUT_BUCKETS)
        self.cached_tokens = Histogram(INPUT_BUCKETS)  # the frontend's: input_sequence_buckets
        self.active = self.queued = self.output_tokens_total = 0
        self.started: Counter[tuple[str, str]] = Counter()  # HTTP requests by (endpoint, type)
        self.requests: Counter[tuple[str, str, str, str]] = Counter()  # (endpoint, type, status, error type)
        # per worker (worker_id, dp_rank, worker_type): the last request's TTFT and input length, mean ITL so far
        self.worker_ttft_s: dict[tuple[str, str, str], float] = {}
        self.worker_isl: dict[tuple[str, str, str], int] = {}
        self.worker_itl_s: dict[tuple[str, str, str], float] = {}

    def arrived(self, endpoint: str, streaming: bool) -> None:
        """An HTTP request entered the handler (its InflightGuard and HttpQueueGuard made)."""
        self.started[(endpoint, "stream" if streaming else "unary")] += 1
        self.active += 1
        self.queued += 1

    def answered(self) -> None:
        """An HTTP request's first token (of any of its choices): it leaves the HTTP queue."""
        self.queued -= 1

    def tokens(self, n: int, first: bool, since_s: float, prompt: int, cached: int = -1) -> None:
        """`n` tokens in one chunk, `since_s` after the request's arrival (first) or its last chunk; `cached`: its
        prompt tokens found in a prefix cache (-1: none kept where it was admitted, nothing observed)."""
        self.output_tokens_total += n
        if first:
            self.ttft.observe(since_s)
            self.input_tokens.observe(prompt)
            if cached >= 0:
                self.cached_tokens.observe(cached)
        else:
            self.itl.observe(since_s / n, n)

    def worker_first_token(self, worker: tuple[str, str, str], ttft_s: float, prompt: int) -> None:
        """A request's first token: its TTFT and input length under the worker it was first routed to."""
        self.worker_ttft_s[worker] = ttft_s
        self.worker_isl[worker] = prompt

    def worker_inter_token(self, worker: tuple[str, str, str], mean_itl_s: float) -> None:
        """A later chunk: the request's mean inter-token latency so far, under the worker that produced it."""
        self.worker_itl_s[worker] = mean_itl_s

    def choice_ended(self, emitted: int) -> None:
        """A choice is over, with `emitted` tokens: its output length."""
        if emitted:
            self.output_tokens.observe(emitted)

    def ended(self, endpoint: str, streaming: bool, duration_s: float, error_type: str = "",
              answered: bool = True) -> None:
        """An HTTP request's response is over (its last choice ended): `error_type` "" for a success, else Dynamo's
        (cancelled, overload); `answered`: it had a first token (else it leaves the HTTP queue now)."""
        self.active -= 1
        self.queued -= not answered
        self.duration.observe(duration_s)
        self.requests[(endpoint, "stream" if streaming else "unary", "error" if error_type else "success",
                       error_type)] += 1

    def lines(self, model: str, namespace: str | None = None,
              load: list[tuple[tuple[str, str, str], int, int]] = ()) -> list[str]:
        """The series, labelled with the served model's name lowercased (and `namespace` as dynamo_namespace);
        `load`: per worker, (worker_id, dp_rank, worker_type), its active prefill tokens and decode blocks now."""
        lab = f'model="{model.lower()}"' + (f',dynamo_namespace="{namespace}"' if namespace else "")
        name = "dynamo_frontend_"
        out = [f"# HELP {name}requests_started_total Total number of LLM requests accepted by the frontend handler",
               f"# TYPE {name}requests_started_total counter"]
        out += [f'{name}requests_started_total{{{lab},endpoint="{endpoint}",request_type="{kind}"}} {count}'
                for (endpoint, kind), count in sorted(self.started.items())]
        out += [f"# HELP {name}requests_total Total number of LLM requests processed",
               f"# TYPE {name}requests_total counter"]
        out += [f'{name}requests_total{{{lab},endpoint="{endpoint}",request_type="{kind}",status="{status}",'
                f'error_type="{error}"}} {count}' for (endpoint, kind, status, error), count in
                sorted(self.requests.items())]
        for gauge, value, what in (("active_requests", self.active, "Number of requests currently being handled by "
                                    "the frontend, from HTTP handler entry to response completion"),
                                   ("inflight_requests", self.active, "Number of inflight requests"),
                                   ("queued_requests", self.queued, "Number of requests in HTTP processing queue")):
            out += [f"# HELP {name}{gauge} {what}", f"# TYPE {name}{gauge} gauge", f"{name}{gauge}{{{lab}}} {value}"]
        out += [f"# HELP {name}output_tokens_total Total number of output tokens generated (updates in real-time)",
                f"# TYPE {name}output_tokens_total counter",
                f"{name}output_tokens_total{{{lab}}} {self.output_tokens_total}"]
        for histogram, metric, what in ((self.duration, "request_duration_seconds", "Duration of LLM requests"),
                                        (self.input_tokens, "input_sequence_tokens", "Input sequence length in tokens"),
                                        (self.output_tokens, "output_sequence_tokens",
                                         "Output sequence length in tokens"),
                                        (self.cached_tokens, "cached_tokens",
                                         "Number of cached tokens (prefix cache hits) per request"),
                                        (self.ttft, "time_to_first_token_seconds", "Time to first token in seconds"),
                                        (self.itl, "inter_token_latency_seconds", "Inter-token latency in seconds")):
            out += [f"# HELP {name}{metric} {what}", f"# TYPE {name}{metric} histogram",
                    *histogram.lines(name + metric, lab)]
        space = f',dynamo_namespace="{namespace}"' if namespace else ""

        def worker_lines(metric: str, what: str, values: dict[tuple[str, str, str], float],
                         integer: bool = False) -> list[str]:
            """`integer`: an IntGaugeVec of the frontend's (tokens, blocks), else a GaugeVec (seconds)."""
            rows = [f'{name}{metric}{{worker_id="{w}",dp_rank="{rank}",worker_type="{kind}"{space}}} '
                    f'{prom_value(value, integer)}'
                    for (w, rank, kind), value in sorted(values.items(), key=lambda item: (int(item[0][0]), item[0]))]
            return [f"# HELP {name}{metric} {what}", f"# TYPE {name}{metric} gauge", *rows] if rows else []

        out += worker_lines("worker_active_prefill_tokens", "Active prefill tokens queued per worker",
                            {worker: prefill for worker, prefill, _ in load}, integer=True)
        out += worker_lines("worker_active_decode_blocks", "Active KV cache decode blocks per worker",
                            {worker: blocks for worker, _, blocks in load}, integer=True)
        out += worker_lines("worker_last_time_to_first_token_seconds",
                            "Last observed time to first token per worker (seconds)", self.worker_ttft_s)
        out += worker_lines("worker_last_input_sequence_tokens", "Last observed input sequence tokens per worker",
                            self.worker_isl, integer=True)
        out += worker_lines("worker_last_inter_token_latency_seconds",
                            "Last observed inter-token latency per worker (seconds)", self.worker_itl_s)
        return out
