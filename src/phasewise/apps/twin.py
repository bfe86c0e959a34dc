"""The digital twin: an OpenAI-compatible server whose tokens stream at simulated timings.

Every request enters a live simulation at its real arrival time; its first and every next token
are sent when the simulated clock (wall clock x --speed) reaches them, so TTFT and TBT seen by a
client rise with load, batching and KV pressure as the simulator predicts. A client that
disconnects is cancelled in the simulation (apps/twin_live.py: the live simulation and its metrics).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from phasewise.apps.tokenizer import Tokenizer, filler
from phasewise.apps.twin_admission import RequestAdmission
from phasewise.apps.twin_live import LiveSim
from phasewise.apps.twin_request import ApiError
from phasewise.apps.twin_streams import choice_tokens, chunk, until_done_or_gone, usage


async def _counted(chunks, counter: list[int]):
    """A streaming response's chunks; the request leaves the in-flight count when they end or the client leaves."""
    try:
        async for part in chunks:
            yield part
    finally:
        counter[0] -= 1


def draining_server():
    """The twin's uvicorn server class (uvicorn imported only when serving). A first SIGTERM or Ctrl-C stops
    accepting and lets open requests finish (one line says how many), then the server exits 0; a second Ctrl-C while
    they drain stops it now: each open request ends with a 503 error (a stream's as an error event, then [DONE]),
    one line says so, and `stopped_now` tells serve to exit 130, as an interrupted command does."""
    import contextlib
    import logging
    import signal
    import threading

    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, but a SIGTERM or SIGINT ends it with exit status 0 once open streams have drained
        (uvicorn re-raises the signal after its graceful shutdown, which a process manager reads as a crash), and a
        second SIGINT (uvicorn's force quit, which cancels the open requests mid-response and logs a traceback for
        each) ends them with an error instead (LiveSim.stop_all)."""

        def __init__(self, config, live: LiveSim, say: Callable[[str], object]) -> None:
            """`say`: prints a line to the operator."""
            super().__init__(config)
            self.live, self.say = live, say
            self.loop: asyncio.AbstractEventLoop | None = None
            self.stopped_now = False

        async def serve(self, sockets=None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

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

        def handle_exit(self, sig, frame) -> None:
            open_requests = len(self.server_state.tasks)
            if not self.should_exit:
                self.should_exit = True
                if open_requests:
                    self.say(f"phasewise twin: stopping: draining {open_requests} open request(s); "
                             "Ctrl-C again to stop now")
                return
            if sig != signal.SIGINT or self.stopped_now or self.loop is None:  # a second SIGTERM: still draining
                return
            self.stopped_now = True
            self.say(f"phasewise twin: stopping now: {open_requests} open request(s) end with an error")
            self.loop.call_soon_threadsafe(self._stop_now)

        def _stop_now(self) -> None:
            """On the event loop: the open requests end with an error; any still open FORCE_QUIT_S later (one not
            yet in the simulation, or a client not reading) are cancelled, quietly, and FORCE_QUIT_S after that
            uvicorn's force quit ends the wait for their connections."""
            self.live.stop_all("the server was stopped (a second Ctrl-C) before this request's last token")
            logging.getLogger("uvicorn.error").addFilter(_not_a_cancellation)
            self.loop.call_later(FORCE_QUIT_S, self._cancel_open)
            self.loop.call_later(2 * FORCE_QUIT_S, setattr, self, "force_exit", True)

        def _cancel_open(self) -> None:
            for task in list(self.server_state.tasks):
                task.cancel()

    return DrainingServer


FORCE_QUIT_S = 2.0  # a forced stop: how long the open requests have to send their error before they are cut off


def _not_a_cancellation(record) -> bool:
    """A log filter that drops the traceback uvicorn logs for each request (and the app's lifespan) a forced stop
    cancels: as an exception, or as the traceback's text."""
    if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
        return False
    return not str(record.msg).rstrip().endswith("CancelledError")


def create_app(live: LiveSim, model_name: str, tokenizer: Tokenizer, default_chat_tokens: int = 256,
               max_request_bytes: int = 4 * 2**20, max_concurrent_requests: int = 4096,
               url_image_px: tuple[int, int] | None = None, prompt_tokens_details: bool = False):
    """`max_request_bytes`: larger bodies get 413 before they are read whole; `max_concurrent_requests`: requests
    in flight beyond it get 429 (every error in OpenAI's error shape); `url_image_px`: the (width, height) of an
    image sent by URL, which the twin does not fetch (an inline data: URL's own size is read from its header);
    `prompt_tokens_details`: a usage carries the prompt tokens a prefix cache held, when there are any, as
    usage.prompt_tokens_details.cached_tokens (vLLM's serving code and SGLang's usage processor omit it at 0).
    A request's body and prompt are read in apps/twin_admission.py, its tokens streamed in apps/twin_streams.py."""
    from contextlib import asynccontextmanager

    admission = RequestAdmission(live, model_name, tokenizer, default_chat_tokens, max_request_bytes, url_image_px)
    in_flight = [0]

    @asynccontextmanager
    async def lifespan(_app):
        task = asyncio.create_task(live.pump())
        yield
        task.cancel()

    app = FastAPI(title="phasewise digital twin", lifespan=lifespan)
    # any origin, as vLLM's server allows by default (--allowed-origins '["*"]'), so a browser UI can call it
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])

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
        # vLLM's ModelCard (vllm/entrypoints/openai/protocol.py): `root` the model served (its path; `vllm bench
        # serve` without --model reads data[0]["root"] for its tokenizer, a KeyError where it is missing), `parent` null
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": live.started,
                                            "owned_by": "phasewise", "root": live.model.name, "parent": None,
                                            "max_model_len": admission.context_tokens or None}]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(live.prometheus(model_name), media_type="text/plain; version=0.0.4")

    @app.get("/prometheus/metrics")  # where trtllm-serve serves its Prometheus text (its /metrics is JSON stats)
    async def prometheus_metrics():
        return PlainTextResponse(live.prometheus(model_name), media_type="text/plain; version=0.0.4")

    async def respond(request: Request, chat: bool):
        if in_flight[0] >= max_concurrent_requests:
            raise ApiError(429, f"{in_flight[0]} requests are in flight, the most this server takes "
                                f"(--max-concurrent-requests); retry later", code="rate_limit_exceeded",
                           kind="rate_limit_error")
        in_flight[0] += 1
        try:
            response = await answer(request, chat)
        except RecursionError:  # a value the body's parser read just within its depth, written back a few calls deeper
            in_flight[0] -= 1
            raise ApiError(400, "the request body is nested too deep to handle") from None
        except BaseException:
            in_flight[0] -= 1
            raise
        if isinstance(response, StreamingResponse):  # in flight until its stream ends (or its client leaves)
            response.body_iterator = _counted(response.body_iterator, in_flight)
        else:
            in_flight[0] -= 1
        return response

    def used(streams, choices, completion_tokens=None):
        return usage(streams, choices, completion_tokens, prompt_tokens_details)

    async def answer(request: Request, chat: bool):
        body = await admission.parse(request)
        streams, choices, streaming, include_usage, continuous = await admission.submit(body, chat)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if streaming:
            # One choice's content chunks differ only in their text: format the JSON once, splice the text in.
            spliced = len(streams) == 1 and not continuous
            head, tail = chunk(model_name, rid, created, "\x00", None, chat, False).split('"\\u0000"')

            async def sse():
                started = [not chat] * len(streams)  # a chat choice's first chunk also carries the assistant role
                try:
                    async for index, before, n in choice_tokens(live, streams):
                        # the choice's tokens sent with this chunk (its pump may have run ahead)
                        so_far = used([streams[index]], 1, before + (n or 0)) if continuous else None
                        if n is None:  # the choice ended
                            yield chunk(model_name, rid, created, None if chat else "", "length", chat, False, index,
                                        so_far)
                            continue
                        text = filler(before, n)
                        if not started[index]:
                            yield chunk(model_name, rid, created, text, None, chat, True, index, so_far)
                            started[index] = True
                        elif spliced:
                            yield f'{head}"{text}"{tail}'
                        else:
                            yield chunk(model_name, rid, created, text, None, chat, False, index, so_far)
                except ApiError as exc:  # after the headers went out: an error event, then the end
                    yield f"data: {json.dumps(exc.body())}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                if include_usage:
                    obj = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                           "created": created, "model": model_name, "choices": [], "usage": used(streams, choices)}
                    yield f"data: {json.dumps(obj)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        totals = await until_done_or_gone(live, request, streams)
        if totals is None:  # the client left: its requests were cancelled in the simulation (tokens())
            return Response(status_code=499)
        if chat:
            answers = [{"index": index, "message": {"role": "assistant", "content": filler(0, total)},
                        "logprobs": None, "finish_reason": "length"} for index, total in enumerate(totals)]
            return {"id": rid, "object": "chat.completion", "created": created, "model": model_name,
                    "choices": answers, "usage": used(streams, choices)}
        answers = [{"index": index, "text": filler(0, total), "logprobs": None, "finish_reason": "length"}
                   for index, total in enumerate(totals)]
        return {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                "choices": answers, "usage": used(streams, choices)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await respond(request, chat=True)

    return app
