"""The twin's live simulation: requests enter the simulator at their real arrival times and their tokens come out
when the simulated clock (wall clock x speed) reaches them; the twin's Prometheus metrics (TTFT/TPOT histograms,
gauges) as vLLM names them. apps/twin.py serves it over the OpenAI API.

Every latency the metrics expose (each engine's and Dynamo's _seconds histograms and gauges) is in wall seconds,
the clock the clients see their tokens on and the counters are rated over (Prometheus reads them against its scrape
timestamps): a span of simulated seconds takes simulated / speed of them (LiveSim.wall_s, the one conversion)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from phasewise.apps.prom_histogram import Histogram
from phasewise.apps.twin_dynamo import DynamoFrontendMetrics, FrontendRequest
from phasewise.apps.twin_trtllm import TrtllmMetrics
from phasewise.apps.twin_vllm import (
    REQUEST_LATENCY_BUCKETS,
    TOKEN_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    VllmRequestPhases,
)
from phasewise.errors import PhasewiseError
from phasewise.perf.startup import StartupEstimate, startup_estimate
from phasewise.sim.deployment import Deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import Slo
from phasewise.sim.request import SimRequest
from phasewise.sim.simulate import build_cluster

# --speed's range, simulated seconds a wall second. Below 1e-3 a 1-second request takes over 17 minutes to answer
# (a 10 ms engine step 10 s of wall time), slower than any test watches. The simulated clock is wall seconds x
# speed, a float64 that resolves about 2^-52 of its value: at 1e6, after a day of wall time (8.6e10 simulated
# s), still 15 us, well under an engine step's milliseconds; at 1e12 a minute's run (6e13 s) resolves only 8 ms,
# and at 1e300 a step's end rounds to its start (latencies of 0). Above ~1e3 a step is shorter than the event
# loop's timer (epoll waits in whole milliseconds: selectors.EpollSelector.select), so tokens already stream as
# fast as the simulation runs: a larger speed only coarsens the clock.
SPEED_RANGE = (1e-3, 1e6)


@dataclass(slots=True)
class Stream:
    req: SimRequest
    queue: asyncio.Queue
    last_token_s: float = math.nan
    done: bool = False
    emitted: int = 0
    first_token_s: float = math.nan
    seen: int = 0  # tokens the simulation produced for it so far
    http: FrontendRequest | None = None  # the HTTP request it is a choice of (its route, streamed or not; Dynamo's)


@dataclass(slots=True)
class TwinMetrics:
    """The engines' counters and histograms over the twin's requests, each kept when its engine keeps it."""

    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    # vLLM V1's inter-token latency: one sample an engine step a request gets tokens in, the gap since its last
    # ones, not divided by how many came (vllm/v1/metrics/stats.py IterationStats.update_from_output:
    # inter_token_latencies_iter.append(engine_core_timestamp - last_token_ts)); a speculative step's 2-3 tokens
    # are one sample
    step_itl: Histogram = field(default_factory=lambda: Histogram(TOKEN_LATENCY_BUCKETS))
    # SGLang's: a step's gap divided over its new tokens, one sample each (srt/metrics/collector.py
    # observe_inter_token_latency: interval / num_new_tokens, observed num_new_tokens times)
    token_itl: Histogram = field(default_factory=lambda: Histogram(TOKEN_LATENCY_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    # vLLM V1 counts a request's prompt when its prefill yields its first token (IterationStats.update_from_output,
    # under is_prefilling): a prompt still queued, or cancelled before its first token, is not counted
    prompt_tokens: int = 0
    generation_tokens: int = 0
    # SGLang counts both when a request finishes (tokenizer_manager.py collect_metrics: observe_one_finished_request
    # once state.finished, prompt_tokens_total.inc(prompt_tokens), generation_tokens_total.inc(completion_tokens))
    finished_prompt_tokens: int = 0
    finished_generation_tokens: int = 0
    success: int = 0
    cancelled: int = 0
    rejected: int = 0


class LiveSim:
    """The simulator advanced in real time (x speed) by a pump task on the server's event loop."""

    def __init__(self, deployment: Deployment, speed: float = 1.0, slo: Slo | None = None) -> None:
        """`slo`: the deadlines priority pools steer by (their block's own, if it sets them, come first)."""
        if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:  # NaN too
            raise PhasewiseError(f"--speed must be a finite number > 0 within [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}] "
                                 f"simulated seconds a wall second (got {speed:g})")
        self.loop = EventLoop()
        # prompts are hashed in the engines' own KV blocks (prefix_block_tokens None), so hits come to the block
        self.cluster, self.instances, _ = build_cluster(deployment, self.loop, 0, live=True, slo=slo,
                                                        prefix_block_tokens=None)
        self.cluster.on_token, self.cluster.on_done = self._on_token, self._on_done
        self.speed = speed
        self.wall0 = time.perf_counter()
        self.started = int(time.time())
        self.next_id = 0
        self.metrics = TwinMetrics()
        self.dynamo = DynamoFrontendMetrics()  # the same requests as a Dynamo frontend counts them
        self.trtllm = TrtllmMetrics()  # and as TensorRT-LLM's collector does (served for TensorRT-LLM instances)
        self.model = self.instances[0].model
        # vLLM V1's per-request phases; token buckets up to the model's context (10^6 where its config states none)
        self.vllm_phases = VllmRequestPhases(self.model.max_position_embeddings or 10**6)
        self.dynamo_namespace: str | None = None  # a label the frontend series carry (serve --dynamo-namespace)
        self.wakeup: asyncio.Event | None = None
        self.open: dict[int, Stream] = {}  # the streams not yet ended, by request id (stop_all())
        # one per KV pool: the first virtual engine of a PP replica stands for its replica's shared pool and cache
        self.pools = [instance for instance in self.instances if instance.first_of_pool]
        # Dynamo's worker of each instance: its replica (the virtual engines of a PP replica are one worker)
        ids = {id(first): n + 1 for n, first in enumerate(self.pools)}
        self.worker_ids = [ids[id(next(e for e in (i, *i.siblings) if e.first_of_pool))] for i in self.instances]

    def now(self) -> float:
        """The simulated clock: wall seconds since start_clock() x speed."""
        return (time.perf_counter() - self.wall0) * self.speed

    def wall_s(self, simulated_s: float) -> float:
        """A span of `simulated_s` simulated seconds as the wall seconds it takes (tokens stream when now() reaches
        them): the clock of every latency /metrics exposes, as clients measure them and counters are rated."""
        return simulated_s / self.speed

    def start_clock(self) -> None:
        """Simulated time starts now (after a cold start the twin waited out before listening)."""
        self.wall0 = time.perf_counter()
        self.started = int(time.time())

    def startup(self, weights_read_gbps: float | None = None, compile_cache: str | None = None) -> StartupEstimate:
        """The deployment's start-up (perf/startup.py): its instances start together, so the slowest one's."""
        return max((startup_estimate(instance.cost, instance.engine, weights_read_gbps, compile_cache)
                    for instance in self.instances), key=lambda estimate: estimate.total_s)

    def http_request(self, endpoint: str, streaming: bool, choices: int) -> FrontendRequest:
        """An HTTP request arriving now with `choices` choices (its prompts x n), each submit()ted with it: Dynamo's
        frontend counts it once (started, in flight, queued, then one requests_total when its last choice ends)."""
        self.dynamo.arrived(endpoint, streaming)
        return FrontendRequest(endpoint, streaming, choices)

    def submit(self, prompt_tokens: int, output_tokens: int, image_patches: tuple[int, ...] = (),
               image_tokens: tuple[int, ...] = (), prefix: tuple[int, ...] | None = None,
               endpoint: str = "completions", streaming: bool = True, http: FrontendRequest | None = None) -> Stream:
        """A request arriving now; `image_patches`, `image_tokens`: its images' encoder patches and prompt tokens
        (those in prompt_tokens); `prefix`: its prompt's leading 512-token blocks' hashes, which the instances'
        prefix caches share (None: nothing to share); `http`: the HTTP request (http_request()) it is a choice of
        (None: an HTTP request of its own, of one choice, `endpoint` (chat_completions | completions) and
        `streaming` saying how it came, for the Dynamo frontend's counters)."""
        if http is None:
            http = self.http_request(endpoint, streaming, 1)
        t = self.now()
        if math.isnan(http.arrival_s):  # its first choice's arrival
            http.arrival_s = t
        self.loop.run_until(t)
        req = SimRequest(self.next_id, t, prompt_tokens, output_tokens, image_patches=image_patches,
                         image_tokens=image_tokens, prefix=prefix)
        self.next_id += 1
        stream = Stream(req, asyncio.Queue(), http=http)
        req.handle = stream
        self.open[req.id] = stream
        self.cluster.arrive(req)
        if self.wakeup is not None:
            self.wakeup.set()
        return stream

    def cancel(self, stream: Stream) -> None:
        if not stream.done:
            stream.done = True
            self.open.pop(stream.req.id, None)
            self.cluster.cancel(stream.req)
            self.metrics.cancelled += 1
            self._dynamo_ended(stream, self.now(), "cancelled")

    def stop_all(self, message: str) -> int:
        """End every open stream now, cancelled in the simulation, with `message` as the error its response ends
        with (a forced stop of the server: apps/twin.py); how many there were."""
        streams = list(self.open.values())
        for stream in streams:
            self.cancel(stream)
            stream.queue.put_nowait(("error", (message, "server_stopping")))
        return len(streams)

    def _dynamo_ended(self, stream: Stream, end_s: float, error_type: str = "") -> None:
        """A choice ended (`error_type` "" for a success); its HTTP request's response with its last choice."""
        self.dynamo.choice_ended(stream.req.streamed)
        http = stream.http
        http.open -= 1
        http.error_type = http.error_type or error_type
        if http.open == 0:
            self.dynamo.ended(http.endpoint, http.streaming, self.wall_s(end_s - http.arrival_s), http.error_type,
                              http.answered)

    def worker(self, index: int) -> tuple[str, str, str]:
        """Instance `index` as Dynamo labels a worker: (worker_id, dp_rank, worker_type), its replica's (a PP
        replica's virtual engines are one worker); a collocated worker is a "decode" one, as Dynamo's frontend labels
        aggregated workers."""
        return str(self.worker_ids[index]), "0", "prefill" if self.instances[index].role == "prefill" else "decode"

    def _on_token(self, req: SimRequest, n: int, t: float, instance) -> None:
        stream: Stream = req.handle
        if stream is None or stream.done:
            return
        m = self.metrics
        first = math.isnan(stream.last_token_s)
        stream.seen += n
        since_s = self.wall_s(t - (req.arrival_s if first else stream.last_token_s))  # since arrival / last chunk
        if first:
            m.ttft.observe(since_s)
            m.prompt_tokens += req.prompt
            stream.first_token_s = t
            if not stream.http.answered:  # the HTTP request's first token, of any of its choices
                stream.http.answered = True
                self.dynamo.answered()
            self.dynamo.worker_first_token(self.worker(req.first_instance), since_s, req.prompt)
        else:
            m.step_itl.observe(since_s)
            m.token_itl.observe(since_s / n, n)
            self.dynamo.worker_inter_token(self.worker(instance.index),
                                           self.wall_s(t - stream.first_token_s) / (stream.seen - 1))
        self.dynamo.tokens(n, first, since_s, req.prompt, req.cached_tokens)
        stream.last_token_s = t
        m.generation_tokens += n
        stream.queue.put_nowait(("tokens", n))

    def _on_done(self, req: SimRequest) -> None:
        stream: Stream = req.handle
        if stream is None or stream.done:
            return
        stream.done = True
        self.open.pop(req.id, None)
        if req.finish_s == req.finish_s:
            self.metrics.success += 1
            self.metrics.finished_prompt_tokens += req.prompt
            self.metrics.finished_generation_tokens += stream.seen
            self.metrics.e2e.observe(self.wall_s(req.finish_s - req.arrival_s))
            self._dynamo_ended(stream, req.finish_s)
            self.trtllm.finished(req, self.wall_s)
            self.vllm_phases.finished(req, self.wall_s)
            stream.queue.put_nowait(("done", None))
        else:
            self.metrics.rejected += 1
            self._dynamo_ended(stream, self.loop.now, "overload")  # the twin's 503, Dynamo's overload
            stream.queue.put_nowait(("error", ("the request does not fit in the simulated KV cache",
                                               "kv_cache_exhausted")))

    async def pump(self) -> None:
        """Process simulated events as the clock reaches them; sleep until the next one or a new request."""
        self.wakeup = asyncio.Event()
        while True:
            self.loop.run_until(self.now())
            nxt = self.loop.next_time()
            delay = 0.05 if nxt == math.inf else min(0.05, max(0.0, (nxt - self.now()) / self.speed))
            if delay > 0:
                try:
                    await asyncio.wait_for(self.wakeup.wait(), timeout=delay)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
            else:
                await asyncio.sleep(0)
            self.wakeup.clear()

    def gauges(self) -> dict[str, float]:
        """Requests running and waiting over the instances; the KV blocks in use over the pools, each counted once
        (a PP replica's virtual engines each report their shared pool's)."""
        rows = [(i.first_of_pool, i.gauges()) for i in self.instances]
        running, waiting = sum(row[0] for _, row in rows), sum(row[1] for _, row in rows)
        used = sum(row[2] for first, row in rows if first)
        cap = sum(i.kv.capacity for i in self.pools)
        return {"running": running, "waiting": waiting, "kv_usage": used / cap if cap else 0.0}

    def prometheus(self, model_name: str) -> str:
        g, m = self.gauges(), self.metrics
        lab = f'model_name="{model_name}"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{lab}}} {g['running']}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{lab}}} {g['waiting']}",
            "# HELP vllm:gpu_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:gpu_cache_usage_perc gauge", f"vllm:gpu_cache_usage_perc{{{lab}}} {g['kv_usage']:.6f}",
            # vLLM V1's current name of the same gauge (vllm/v1/metrics/loggers.py)
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{lab}}} {g['kv_usage']:.6f}",
            "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{lab}}} {m.prompt_tokens}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {m.generation_tokens}",
            # vLLM V1 labels successes by why they finished (no unlabelled series beside them: a sum over the
            # labels is the total); the twin's requests all run to max_tokens
            "# TYPE vllm:request_success_total counter",
            f'vllm:request_success_total{{{lab},finished_reason="length"}} {m.success}',
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} 0',
            f'vllm:request_success_total{{{lab},finished_reason="abort"}} {m.cancelled}',
            "# TYPE phasewise:requests_cancelled_total counter",
            f"phasewise:requests_cancelled_total{{{lab}}} {m.cancelled}",
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram", *m.ttft.lines("vllm:time_to_first_token_seconds", lab),
            "# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.",
            "# TYPE vllm:time_per_output_token_seconds histogram",
            *m.step_itl.lines("vllm:time_per_output_token_seconds", lab),
            "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
            "# TYPE vllm:e2e_request_latency_seconds histogram", *m.e2e.lines("vllm:e2e_request_latency_seconds", lab),
            *self.vllm_phases.lines(lab, m.step_itl),
        ]
        caches = [i.kv.prefix for i in self.pools if i.kv.prefix is not None]  # (once each, as Cluster.finalize)
        if caches:  # vLLM V1's prefix-cache counters, in tokens (first lookups: prompt tokens queried, hit)
            queries = sum(c.prompt_tokens for c in caches)
            host = (sum(c.host.hit_keys for c in caches if c.host is not None)
                    + sum(c.store_hit_keys for c in caches)) * self.cluster.prefix_block_tokens
            hits = sum(c.hit_tokens for c in caches) - host  # the GPU's own; host tier and store through a connector
            lines += ["# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried "
                      "tokens.",
                      "# TYPE vllm:prefix_cache_queries_total counter",
                      f"vllm:prefix_cache_queries_total{{{lab}}} {queries}",
                      "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.",
                      "# TYPE vllm:prefix_cache_hits_total counter", f"vllm:prefix_cache_hits_total{{{lab}}} {hits}"]
            if any(c.host is not None or c.store is not None for c in caches):  # as vLLM counts its KV connector's
                lines += ["# HELP vllm:external_prefix_cache_queries_total Prefix tokens asked of the KV connector "
                          "(here the host-memory tier and the shared store): those the GPU's cache did not hold.",
                          "# TYPE vllm:external_prefix_cache_queries_total counter",
                          f"vllm:external_prefix_cache_queries_total{{{lab}}} {queries - hits}",
                          "# HELP vllm:external_prefix_cache_hits_total Prefix tokens the KV connector (here the "
                          "host-memory tier and the shared store) served.",
                          "# TYPE vllm:external_prefix_cache_hits_total counter",
                          f"vllm:external_prefix_cache_hits_total{{{lab}}} {host}"]
        queried = sum(c.prompt_tokens for c in caches)
        hit_rate = sum(c.hit_tokens for c in caches) / queried if queried else 0.0  # the prefix caches', so far
        if any(i.engine.scheduler == "sglang" for i in self.instances):
            lines += self._sglang_lines(lab, g, m, hit_rate)
        if any(i.engine.scheduler == "trtllm" for i in self.instances):
            lines += self.trtllm.lines(model_name, g["running"], g["waiting"], g["kv_usage"], hit_rate)
        load = [(self.worker(i.index), sum(e.prefill_tokens_pending() for e in (i, *i.siblings)), i.kv.used)
                for i in self.pools]  # per worker: a PP replica's virtual engines together
        lines += self.dynamo.lines(model_name, self.dynamo_namespace, load)
        return "\n".join(lines) + "\n"

    def _sglang_lines(self, lab: str, g: dict[str, float], m: TwinMetrics, rate: float) -> list[str]:
        """The same state under SGLang's names (srt/metrics/collector.py), for a deployment of SGLang instances:
        what its dashboards and autoscalers read. Its histograms here keep the twin's (vLLM's) buckets; its token
        counters count a request when it finishes, its inter-token latency a sample a token (TwinMetrics);
        sglang:cache_hit_rate is the prefix cache's hit rate so far (SGLang's gauge: the last batch's)."""
        used = sum(i.kv.used for i in self.pools) * self.instances[0].kv.block_size
        return [
            "# HELP sglang:num_running_reqs The number of running requests.",
            "# TYPE sglang:num_running_reqs gauge", f"sglang:num_running_reqs{{{lab}}} {g['running']}",
            "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.",
            "# TYPE sglang:num_queue_reqs gauge", f"sglang:num_queue_reqs{{{lab}}} {g['waiting']}",
            "# HELP sglang:num_used_tokens The number of used tokens.",
            "# TYPE sglang:num_used_tokens gauge", f"sglang:num_used_tokens{{{lab}}} {used}",
            "# HELP sglang:token_usage The token usage.",
            "# TYPE sglang:token_usage gauge", f"sglang:token_usage{{{lab}}} {g['kv_usage']:.6f}",
            "# HELP sglang:cache_hit_rate The prefix cache hit rate.",
            "# TYPE sglang:cache_hit_rate gauge", f"sglang:cache_hit_rate{{{lab}}} {rate:.6f}",
            "# HELP sglang:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE sglang:prompt_tokens_total counter",
            f"sglang:prompt_tokens_total{{{lab}}} {m.finished_prompt_tokens}",
            "# HELP sglang:generation_tokens_total Number of generation tokens processed.",
            "# TYPE sglang:generation_tokens_total counter",
            f"sglang:generation_tokens_total{{{lab}}} {m.finished_generation_tokens}",
            "# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE sglang:time_to_first_token_seconds histogram",
            *m.ttft.lines("sglang:time_to_first_token_seconds", lab),
            "# HELP sglang:inter_token_latency_seconds Histogram of inter-token latency in seconds.",
            "# TYPE sglang:inter_token_latency_seconds histogram",
            *m.token_itl.lines("sglang:inter_token_latency_seconds", lab),
            "# HELP sglang:e2e_request_latency_seconds Histogram of End-to-end request latency in seconds",
            "# TYPE sglang:e2e_request_latency_seconds histogram",
            *m.e2e.lines("sglang:e2e_request_latency_seconds", lab),
        ]
