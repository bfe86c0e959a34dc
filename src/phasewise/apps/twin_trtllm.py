"""The twin's TensorRT-LLM metrics: the trtllm_* series `trtllm-serve` serves in Prometheus' text format at
/prometheus/metrics (its /metrics is JSON iteration stats), named, labelled and bucketed as its
tensorrt_llm/metrics/collector.py MetricsCollector makes them, for a deployment of TensorRT-LLM instances, so that
dashboards and autoscalers written against TensorRT-LLM read the twin.

Per request, when it finishes (as the collector logs a finished request's metrics): trtllm_request_success_total
by finished reason (the twin's requests all run to max_tokens: "length"), its end-to-end latency, time to first
token, time per output token (one value a request: its decode time over its output tokens after the first), time
queued (arrival to its first scheduled iteration) and its prompt and generation tokens. Per iteration (a gauge at
the scrape): requests running and waiting, the KV cache's used share (used / max blocks) and its prefix-cache hit
rate so far. Labels model_name (the served name) and engine_type="trtllm", as trtllm-serve passes them. Not kept:
the prefill / decode / inference time histograms, memory and batch-size gauges, speculative decoding counters."""

from __future__ import annotations

import math
from collections.abc import Callable

from phasewise.apps.prom_histogram import Histogram
from phasewise.sim.request import SimRequest

# the collector's default buckets
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)  # end-to-end and queue time
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0)


class TrtllmMetrics:
    """trtllm_* over the twin's finished requests (finished()), rendered with the state at the scrape (lines())."""

    __slots__ = ("e2e", "ttft", "tpot", "queue", "success", "prompt_tokens", "generation_tokens")

    def __init__(self) -> None:
        self.e2e, self.queue = Histogram(LATENCY_BUCKETS), Histogram(LATENCY_BUCKETS)
        self.ttft, self.tpot = Histogram(TTFT_BUCKETS), Histogram(TPOT_BUCKETS)
        self.success = self.prompt_tokens = self.generation_tokens = 0

    def finished(self, req: SimRequest, wall_s: Callable[[float], float]) -> None:
        """A finished request; `wall_s`: its spans of simulated seconds as wall seconds (LiveSim.wall_s)."""
        self.success += 1
        self.e2e.observe(wall_s(req.finish_s - req.arrival_s))
        self.ttft.observe(wall_s(req.first_token_s - req.arrival_s))
        if req.output > 1:
            self.tpot.observe(wall_s(req.finish_s - req.first_token_s) / (req.output - 1))
        if not math.isnan(req.scheduled_s):
            self.queue.observe(wall_s(req.scheduled_s - req.arrival_s))
        self.prompt_tokens += req.prompt
        self.generation_tokens += req.output

    def lines(self, model_name: str, running: float, waiting: float, kv_usage: float, hit_rate: float) -> list[str]:
        lab = f'model_name="{model_name}",engine_type="trtllm"'
        out = ["# HELP trtllm_request_success_total Count of successfully processed requests.",
               "# TYPE trtllm_request_success_total counter",
               f'trtllm_request_success_total{{{lab},finished_reason="length"}} {self.success}']
        for name, what, value in (("prompt_tokens_total", "Cumulative number of prompt (input) tokens processed.",
                                   self.prompt_tokens),
                                  ("generation_tokens_total",
                                   "Cumulative number of generation (output) tokens produced.",
                                   self.generation_tokens)):
            out += [f"# HELP trtllm_{name} {what}", f"# TYPE trtllm_{name} counter", f"trtllm_{name}{{{lab}}} {value}"]
        for name, what, value in (("num_requests_running", "Number of active requests", running),
                                  ("num_requests_waiting", "Number of queued requests", waiting),
                                  ("kv_cache_utilization", "KV cache utilization", kv_usage),
                                  ("kv_cache_hit_rate", "KV cache hit rate", hit_rate)):
            out += [f"# HELP trtllm_{name} {what}", f"# TYPE trtllm_{name} gauge", f"trtllm_{name}{{{lab}}} {value}"]
        for histogram, name, what in (
                (self.e2e, "e2e_request_latency_seconds", "Histogram of end to end request latency in seconds."),
                (self.ttft, "time_to_first_token_seconds", "Histogram of time to first token in seconds."),
                (self.tpot, "time_per_output_token_seconds", "Histogram of time per output token in seconds."),
                (self.queue, "request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.")):
            out += [f"# HELP trtllm_{name} {what}", f"# TYPE trtllm_{name} histogram",
                    *histogram.lines(f"trtllm_{name}", lab)]
        return out
