"""vLLM V1's per-request phase metrics on the twin's /metrics (vllm/v1/metrics/loggers.py PrometheusStatLogger), which
vLLM's own Grafana dashboard and benchmark tools read beside the TTFT / TPOT / E2E histograms apps/twin_live.py
keeps: for each finished request, the time it spent queued (arrival to its first scheduled iteration), in prefill
(scheduled to first token), in decode (first to last token) and running (scheduled to last token), on vLLM's
request-latency buckets; its prompt and generation token counts on vLLM's 1-2-5 buckets up to the model's context
(build_1_2_5_buckets(max_model_len); up to 10^6 tokens for a model whose config states no context), and the prompt
tokens its prefill computed, those a prefix cache held apart (vllm:request_prefill_kv_computed_tokens: prompt tokens
less num_cached_tokens, on the same buckets); its mean time per output token
(vllm:request_time_per_output_token_seconds: decode time over its generation tokens after the first, 0 for a request
of one token, as V1's IterationStats.update_from_finished_request computes mean_time_per_output_token); and the
inter-token latency under V1's newer name (vllm:inter_token_latency_seconds, the same observations as
time_per_output_token: one an engine step a request gets tokens in). Preemptions are counted when a preempted
request finishes (vllm:num_preemptions_total)."""

from __future__ import annotations

from collections.abc import Callable

from phasewise.apps.prom_histogram import Histogram
from phasewise.sim.request import SimRequest

# vLLM V1's histogram buckets, as vllm/v1/metrics/loggers.py PrometheusStatLogger.__init__ lists them (v0.11 and
# v0.12 alike): vllm:time_to_first_token_seconds' (up to 2,560 s)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0, 160.0, 640.0, 2560.0)
# vllm:inter_token_latency_seconds', vllm:time_per_output_token_seconds' (its name before 0.11) and
# vllm:request_time_per_output_token_seconds' (up to 80 s)
TOKEN_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                         40.0, 80.0)
# request_latency_buckets: vllm:e2e_request_latency_seconds' and the phases' (queue, prefill, decode, inference), up to
# 7,680 s
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
PHASES = (("queue", "Histogram of time spent in WAITING phase for request."),
          ("prefill", "Histogram of time spent in PREFILL phase for request."),
          ("decode", "Histogram of time spent in DECODE phase for request."),
          ("inference", "Histogram of time spent in RUNNING phase for request."))


def one_two_five_buckets(max_value: int) -> tuple[int, ...]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `max_value`."""
    out, scale = [], 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return tuple(out)
            out.append(mantissa * scale)
        scale *= 10


class VllmRequestPhases:
    """The per-request histograms over the twin's finished requests (finished()), rendered by lines()."""

    __slots__ = ("phases", "prompt_tokens", "generation_tokens", "kv_computed_tokens", "time_per_output_token",
                 "preemptions")

    def __init__(self, max_model_len: int) -> None:
        self.phases = {name: Histogram(REQUEST_LATENCY_BUCKETS) for name, _ in PHASES}
        self.prompt_tokens = Histogram(one_two_five_buckets(max_model_len))
        self.generation_tokens = Histogram(one_two_five_buckets(max_model_len))
        self.kv_computed_tokens = Histogram(one_two_five_buckets(max_model_len))
        self.time_per_output_token = Histogram(TOKEN_LATENCY_BUCKETS)
        self.preemptions = 0

    def finished(self, req: SimRequest, wall_s: Callable[[float], float]) -> None:
        """A finished request; `wall_s`: its spans of simulated seconds as wall seconds (LiveSim.wall_s)."""
        scheduled_s = req.scheduled_s if req.scheduled_s == req.scheduled_s else req.arrival_s
        for name, value in (("queue", scheduled_s - req.arrival_s), ("prefill", req.first_token_s - scheduled_s),
                            ("decode", req.finish_s - req.first_token_s), ("inference", req.finish_s - scheduled_s)):
            self.phases[name].observe(wall_s(value))
        self.prompt_tokens.observe(req.prompt)
        self.generation_tokens.observe(req.output)
        self.kv_computed_tokens.observe(req.prompt - max(req.cached_tokens, 0))
        # the token the prefill made is not counted; a request of one token records 0
        decode_s = wall_s(req.finish_s - req.first_token_s)
        self.time_per_output_token.observe(decode_s / (req.output - 1) if req.output > 1 else 0.0)
        self.preemptions += req.preemptions

    def lines(self, lab: str, time_per_output_token: Histogram) -> list[str]:
        out = ["# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.",
               "# TYPE vllm:num_preemptions_total counter", f"vllm:num_preemptions_total{{{lab}}} {self.preemptions}",
               "# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.",
               "# TYPE vllm:inter_token_latency_seconds histogram",
               *time_per_output_token.lines("vllm:inter_token_latency_seconds", lab)]
        for name, what in PHASES:
            metric = f"vllm:request_{name}_time_seconds"
            out += [f"# HELP {metric} {what}", f"# TYPE {metric} histogram", *self.phases[name].lines(metric, lab)]
        metric = "vllm:request_time_per_output_token_seconds"
        out += [f"# HELP {metric} Histogram of time_per_output_token_seconds per request.",
                f"# TYPE {metric} histogram", *self.time_per_output_token.lines(metric, lab)]
        for histogram, metric, what in ((self.prompt_tokens, "vllm:request_prompt_tokens",
                                         "Number of prefill tokens processed."),
                                        (self.generation_tokens, "vllm:request_generation_tokens",
                                         "Number of generation tokens processed."),
                                        (self.kv_computed_tokens, "vllm:request_prefill_kv_computed_tokens",
                                         "Histogram of new KV tokens computed during prefill (excluding cached "
                                         "tokens).")):
            out += [f"# HELP {metric} {what}", f"# TYPE {metric} histogram", *histogram.lines(metric, lab)]
        return out
