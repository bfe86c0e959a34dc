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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from phasewise.apps.tokenizer import Tokenizer, filler
from phasewise.errors import PhasewiseError, one_line
from phasewise.sim.deployment import Deployment
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import Slo
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

    def __init__(self, deployment: Deployment, speed: float = 1.0, slo: Slo | None = None) -> None:
        """`slo`: the deadlines priority pools steer by (their block's own, if it sets them, come first)."""
        if not speed > 0:
            raise PhasewiseError(f"--speed must be > 0 (got {speed})")
        self.loop = EventLoop()
        self.cluster, self.instances, _ = build_cluster(deployment, self.loop, 0, live=True, slo=slo)
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
            # vLLM V1's current name of the same gauge (vllm/v1/metrics/loggers.py)
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{lab}}} {g['kv_usage']:.6f}",
            "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{lab}}} {m.prompt_tokens}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{lab}}} {m.generation_tokens}",
            "# TYPE vllm:request_success_total counter", f"vllm:request_success_total{{{lab}}} {m.success}",
            # vLLM V1 labels successes by why they finished; the twin's requests all run to max_tokens
            f'vllm:request_success_total{{{lab},finished_reason="length"}} {m.success}',
            f'vllm:request_success_total{{{lab},finished_reason="stop"}} 0',
            f'vllm:request_success_total{{{lab},finished_reason="abort"}} {m.cancelled}',
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


async def _counted(chunks, counter: list[int]):
    """A streaming response's chunks; the request leaves the in-flight count when they end or the client leaves."""
    try:
        async for part in chunks:
            yield part
    finally:
        counter[0] -= 1


def draining_server():
    import contextlib
    import signal
    import threading

    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, but a SIGTERM or SIGINT ends it with exit status 0 once open streams have drained
        (uvicorn re-raises the signal after its graceful shutdown, which a process manager reads as a crash)."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return DrainingServer


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        message = one_line(message)  # a line break or a lone surrogate echoed from the body, escaped
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


# Prompts longer than this many characters are tokenized on a worker thread, off the event loop that streams
# every other request's tokens (a 700 KB prompt takes ~0.5 s to count here).
INLINE_TOKENIZE_CHARS = 16384


def create_app(live: LiveSim, model_name: str, tokenizer: Tokenizer, default_chat_tokens: int = 256,
               max_request_bytes: int = 4 * 2**20, max_concurrent_requests: int = 4096):
    """`max_request_bytes`: larger bodies get 413 before they are read whole; `max_concurrent_requests`: requests
    in flight beyond it get 429 (every error in OpenAI's error shape)."""
    from contextlib import asynccontextmanager

    context = live.model.max_position_embeddings or 0
    in_flight = [0]

    @asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(live.pump())
        yield
        task.cancel()

    app = FastAPI(title="phasewise digital twin", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):  # 404 unknown path, 405 wrong method, ...
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(ApiError(exc.status_code, str(exc.detail), kind=kind).body(), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return JSONResponse(ApiError(422, str(first.get("msg", "invalid request")), param).body(), status_code=422)

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
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_request_bytes:
            raise ApiError(413, f"the request body has {int(declared)} bytes; this server accepts at most "
                                f"{max_request_bytes}", code="request_too_large")
        raw = bytearray()
        async for part in request.stream():  # also bounds bodies sent without a Content-Length
            raw += part
            if len(raw) > max_request_bytes:
                raise ApiError(413, f"the request body exceeds {max_request_bytes} bytes", code="request_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if "model" not in body:
            raise ApiError(400, "missing field 'model'", "model")
        if body.get("model") != model_name:
            raise ApiError(404, f"the model '{body.get('model')}' does not exist; this server serves '{model_name}'",
                           "model", "model_not_found", "invalid_request_error")
        n = body.get("n", 1)
        if n != 1:
            raise ApiError(400, "only n = 1 is supported", "n")
        return body

    def check_context(prompt_tokens: int, max_tokens: int, prompt_param: str, tokens_param: str,
                      at_least: bool = False) -> None:
        """The context-length error, naming what makes the request too long: the prompt alone, or the output
        tokens asked for on top of it."""
        if not context or prompt_tokens + max_tokens <= context:
            return
        counted = f"at least {prompt_tokens}" if at_least else str(prompt_tokens)
        param = prompt_param if prompt_tokens >= context else tokens_param
        raise ApiError(400, f"this model's maximum context length is {context} tokens; the request has {counted} "
                            f"prompt and {max_tokens} output tokens ({param} is too large)", param,
                       "context_length_exceeded")

    async def count(text: str, max_tokens: int, prompt_param: str, tokens_param: str) -> int:
        """Prompt tokens of `text`: a too-long prompt is refused from a linear-time bound before any tokenizing,
        and a long one is tokenized off the event loop."""
        check_context(tokenizer.min_tokens(text), max_tokens, prompt_param, tokens_param, at_least=True)
        if len(text) > INLINE_TOKENIZE_CHARS:
            return await asyncio.to_thread(tokenizer.count, text)
        return tokenizer.count(text)

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

    async def run(body: dict, chat: bool) -> tuple[Stream, bool, bool]:
        if chat:
            tokens_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
            max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens") \
                or default_chat_tokens
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise ApiError(400, "'messages' must be a non-empty list", "messages")
            text = []
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or "role" not in m:
                    raise ApiError(400, f"messages[{i}] must be an object with a 'role'", "messages")
                c = m.get("content") or ""
                if isinstance(c, list):  # content parts
                    c = " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
                text.append(str(c))
            overhead = 4 * len(text) + 3  # the chat template's tokens around each message
            prompt_tokens = await count("\n".join(text), max_tokens + overhead, "messages", tokens_param) + overhead
            check_context(prompt_tokens, max_tokens, "messages", tokens_param)
        else:
            max_tokens = _int_field(body, "max_tokens") or 16
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if isinstance(prompt, str):
                prompt_tokens = await count(prompt, max_tokens, "prompt", "max_tokens")
            elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
                prompt_tokens = len(prompt)  # token ids
            else:
                raise ApiError(400, "'prompt' must be a string, a list of one string, or a list of token ids",
                               "prompt")
            check_context(prompt_tokens, max_tokens, "prompt", "max_tokens")
        # refused up front, with the reason: a request no instance of a role it needs could ever hold (front: the
        # collocated or prefill instances; disaggregated, the decode instances too, which take its KV over)
        front = [i for i in live.instances if i.role != "decode"]
        back = [i for i in live.instances if i.role == "decode"]
        for group in (front, back):
            if group and all(i.never_fits(max(prompt_tokens, 1), max_tokens) for i in group):
                where = "decode instance" if group is back else "instance"
                raise ApiError(400, f"the request's {prompt_tokens} prompt tokens do not fit in the simulated KV "
                                    f"cache of any {where} ({max(i.kv.capacity * i.kv.block_size for i in group)} "
                                    f"tokens)", "messages" if chat else "prompt", "kv_cache_exhausted")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be a boolean", "stream")
        opts = body.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        return live.submit(max(prompt_tokens, 1), max_tokens), stream, include_usage

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
        if in_flight[0] >= max_concurrent_requests:
            raise ApiError(429, f"{in_flight[0]} requests are in flight, the most this server takes "
                                f"(--max-concurrent-requests); retry later", code="rate_limit_exceeded",
                           kind="rate_limit_error")
        in_flight[0] += 1
        try:
            response = await answer(request, chat)
        except BaseException:
            in_flight[0] -= 1
            raise
        if isinstance(response, StreamingResponse):  # in flight until its stream ends (or its client leaves)
            response.body_iterator = _counted(response.body_iterator, in_flight)
        else:
            in_flight[0] -= 1
        return response

    async def answer(request: Request, chat: bool):
        body = await parse(request)
        stream, streaming, include_usage = await run(body, chat)
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
