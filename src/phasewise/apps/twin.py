"""The digital twin: an OpenAI-compatible server whose tokens stream at simulated timings.

Every request enters a live simulation at its real arrival time; its first and every next token
are sent when the simulated clock (wall clock x --speed) reaches them, so TTFT and TBT seen by a
client rise with load, batching and KV pressure as the simulator predicts. A client that
disconnects is cancelled in the simulation.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from phasewise.apps.tokenizer import Tokenizer, filler
from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.request import SimRequest
from phasewise.sim.simulate import build_cluster

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0)


class Histogram:
    __slots__ = ("buckets", "counts", "total", "n")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets, self.counts, self.total, self.n = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, x: float, times: int = 1) -> None:
        for i, b in enumerate(self.buckets):
            if x <= b:
                self.counts[i] += times
                break
        self.total += x * times
        self.n += times

    def lines(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels},le="{b}"}} {cum}')
        out += [f'{name}_bucket{{{labels},le="+Inf"}} {self.n}', f"{name}_sum{{{labels}}} {self.total}",
                f"{name}_count{{{labels}}} {self.n}"]
        return out


@dataclass(slots=True)
class Stream:
    req: SimRequest
    queue: asyncio.Queue
    last_token_s: float = math.nan
    done: bool = False
    emitted: int = 0


@dataclass
class TwinMetrics:
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    tpot: Histogram = field(default_factory=lambda: Histogram(TPOT_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    prompt_tokens: int = 0
    generation_tokens: int = 0
    success: int = 0
    cancelled: int = 0
    rejected: int = 0


class LiveSim:
    """The simulator advanced in real time (x speed) by a pump task on the server's event loop."""

    def __init__(self, deployment: Deployment, speed: float = 1.0) -> None:
        if not speed > 0:
            raise PhasewiseError(f"--speed must be > 0 (got {speed})")
        self.loop = EventLoop()
        self.cluster, self.instances, _ = build_cluster(deployment, self.loop, 0, live=True)
        self.cluster.on_token, self.cluster.on_done = self._on_token, self._on_done
        self.speed = speed
        self.wall0 = time.perf_counter()
        self.started = int(time.time())
        self.next_id = 0
        self.metrics = TwinMetrics()
        self.wakeup: asyncio.Event | None = None
        self.model = self.instances[0].model

    def now(self) -> float:
        return (time.perf_counter() - self.wall0) * self.speed

    def submit(self, prompt_tokens: int, output_tokens: int) -> Stream:
        t = self.now()
        self.loop.run_until(t)
        req = SimRequest(self.next_id, t, prompt_tokens, output_tokens)
        self.next_id += 1
        stream = Stream(req, asyncio.Queue())
        req.handle = stream
        self.metrics.prompt_tokens += prompt_tokens
        self.cluster.arrive(req)
        if self.wakeup is not None:
            self.wakeup.set()
        return stream

    def cancel(self, stream: Stream) -> None:
        if not stream.done:
            stream.done = True
            self.cluster.cancel(stream.req)
            self.metrics.cancelled += 1

    def _on_token(self, req: SimRequest, n: int, t: float) -> None:
        stream: Stream = req.handle
        if stream is None or stream.done:
            return
        m = self.metrics
        if math.isnan(stream.last_token_s):
            m.ttft.observe(t - req.arrival_s)
        else:
            m.tpot.observe((t - stream.last_token_s) / n, n)
        stream.last_token_s = t
        m.generation_tokens += n
        stream.queue.put_nowait(("tokens", n))

    def _on_done(self, req: SimRequest) -> None:
        stream: Stream = req.handle
        if stream is None or stream.done:
            return
        stream.done = True
        if req.finish_s == req.finish_s:
            self.metrics.success += 1
            self.metrics.e2e.observe(req.finish_s - req.arrival_s)
            stream.queue.put_nowait(("done", None))
        else:
            self.metrics.rejected += 1
            stream.queue.put_nowait(("error", "the request does not fit in the simulated KV cache"))

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
        running = sum(i.running.n + len(i.ready) for i in self.instances)
        waiting = sum(len(i.waiting) + len(i.prefilling) + len(i.pending_transfers) for i in self.instances)
        cap = sum(i.kv.capacity for i in self.instances)
        used = sum(i.kv.capacity - max(i._free_blocks_bound(), 0.0) for i in self.instances)
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
            "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{lab}}} {m.prompt_tokens}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {m.generation_tokens}",
            "# TYPE vllm:request_success_total counter", f"vllm:request_success_total{{{lab}}} {m.success}",
            "# TYPE phasewise:requests_cancelled_total counter",
            f"phasewise:requests_cancelled_total{{{lab}}} {m.cancelled}",
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram", *m.ttft.lines("vllm:time_to_first_token_seconds", lab),
            "# HELP vllm:time_per_output_token_seconds Histogram of time per output token in seconds.",
            "# TYPE vllm:time_per_output_token_seconds histogram",
            *m.tpot.lines("vllm:time_per_output_token_seconds", lab),
            "# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.",
            "# TYPE vllm:e2e_request_latency_seconds histogram", *m.e2e.lines("vllm:e2e_request_latency_seconds", lab),
        ]
        return "\n".join(lines) + "\n"


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _int_field(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, f"'{name}' must be an integer (got {json.dumps(v)})", name)
    if v < 1:
        raise ApiError(400, f"'{name}' must be >= 1 (got {v})", name)
    return v


def create_app(live: LiveSim, model_name: str, tokenizer: Tokenizer, default_chat_tokens: int = 256):
    from contextlib import asynccontextmanager

    context = live.model.max_position_embeddings or 0

    @asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(live.pump())
        yield
        task.cancel()

    app = FastAPI(title="phasewise digital twin", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(Exception)
    async def internal_error(_request, exc: Exception):
        return JSONResponse(ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error").body(),
                            status_code=500)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": live.started,
                                            "owned_by": "phasewise", "max_model_len": context or None}]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(live.prometheus(model_name), media_type="text/plain; version=0.0.4")

    async def parse(request: Request) -> dict:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if body.get("model") != model_name:
            raise ApiError(404, f"the model '{body.get('model')}' does not exist; this server serves '{model_name}'",
                           "model", "model_not_found", "invalid_request_error")
        n = body.get("n", 1)
        if n != 1:
            raise ApiError(400, "only n = 1 is supported", "n")
        return body

    def admit(prompt_tokens: int, max_tokens: int) -> Stream:
        if context and prompt_tokens + max_tokens > context:
            raise ApiError(400, f"this model's maximum context length is {context} tokens; the request has "
                                f"{prompt_tokens} prompt and {max_tokens} output tokens", "messages",
                           "context_length_exceeded")
        return live.submit(prompt_tokens, max_tokens)

    def usage(stream: Stream) -> dict[str, int]:
        p, c = stream.req.prompt, stream.emitted
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def tokens(stream: Stream):
        """Yield token counts as the simulation produces them; cancel the request if the client leaves."""
        try:
            while True:
                kind, value = await stream.queue.get()
                if kind == "tokens":
                    stream.emitted += value
                    yield value
                elif kind == "done":
                    return
                else:
                    raise ApiError(503, value, code="kv_cache_exhausted", kind="server_error")
        finally:
            if not stream.done:
                live.cancel(stream)

    def run(body: dict, chat: bool) -> tuple[Stream, bool, bool]:
        if chat:
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise ApiError(400, "'messages' must be a non-empty list", "messages")
            text = []
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or "role" not in m:
                    raise ApiError(400, f"messages[{i}] must be an object with a 'role'", "messages")
                c = m.get("content") or ""
                if isinstance(c, list):  # content parts
                    c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
                text.append(str(c))
            prompt_tokens = sum(tokenizer.count(t) + 4 for t in text) + 3  # chat template overhead
            max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens") \
                or default_chat_tokens
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if isinstance(prompt, str):
                prompt_tokens = tokenizer.count(prompt)
            elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
                prompt_tokens = len(prompt)  # token ids
            else:
                raise ApiError(400, "'prompt' must be a string, a list of one string, or a list of token ids",
                               "prompt")
            max_tokens = _int_field(body, "max_tokens") or 16
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be a boolean", "stream")
        opts = body.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        return admit(max(prompt_tokens, 1), max_tokens), stream, include_usage

    def chunk(rid: str, created: int, delta: str | None, finish: str | None, chat: bool,
              first: bool) -> str:
        if chat:
            d: dict[str, Any] = {}
            if first:
                d["role"] = "assistant"
            if delta is not None:
                d["content"] = delta
            choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                   "choices": [choice]}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            obj = {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                   "choices": [choice]}
        return f"data: {json.dumps(obj)}\n\n"

    async def respond(request: Request, chat: bool):
        body = await parse(request)
        stream, streaming, include_usage = run(body, chat)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if streaming:
            # Every content chunk differs only in its text: format the JSON once, splice the text in.
            head, tail = chunk(rid, created, "\x00", None, chat, False).split('"\\u0000"')

            async def sse():
                first = chat  # the first chat chunk also carries the assistant role
                try:
                    async for n in tokens(stream):
                        text = filler(stream.emitted - n, n)
                        if first:
                            yield chunk(rid, created, text, None, chat, True)
                            first = False
                        else:
                            yield f'{head}"{text}"{tail}'
                except ApiError as exc:  # after the headers went out: an error event, then the end
                    yield f"data: {json.dumps(exc.body())}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                yield chunk(rid, created, None if chat else "", "length", chat, False)
                if include_usage:
                    obj = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                           "created": created, "model": model_name, "choices": [], "usage": usage(stream)}
                    yield f"data: {json.dumps(obj)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        total = 0
        async for n in tokens(stream):
            total += n
        text = filler(0, total)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": "length"}
            return {"id": rid, "object": "chat.completion", "created": created, "model": model_name,
                    "choices": [choice], "usage": usage(stream)}
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        return {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                "choices": [choice], "usage": usage(stream)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await respond(request, chat=True)

    return app
