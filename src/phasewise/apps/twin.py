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
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from phasewise.apps.image_header import data_url_size
from phasewise.apps.tokenizer import Tokenizer, filler, id_blocks
from phasewise.apps.twin_live import LiveSim, Stream
from phasewise.apps.twin_request import (
    IMAGE_PART,
    ApiError,
    Prompt,
    chat_texts,
    check_sampling,
    choice_count,
    completion_prompts,
    int_field,
    refuse_unanswerable,
    stream_flags,
    tools_text,
)
from phasewise.errors import PhasewiseError
from phasewise.sim.metrics import REJECT_REASONS
from phasewise.specs.vision import ImageGeometry


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


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone: the ASGI messages after the request's body are only its disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# Prompts longer than this many characters are tokenized on a worker thread, off the event loop that streams
# every other request's tokens (a 700 KB prompt takes ~0.5 s to count here).
INLINE_TOKENIZE_CHARS = 16384


def create_app(live: LiveSim, model_name: str, tokenizer: Tokenizer, default_chat_tokens: int = 256,
               max_request_bytes: int = 4 * 2**20, max_concurrent_requests: int = 4096,
               url_image_px: tuple[int, int] | None = None, prompt_tokens_details: bool = False):
    """`max_request_bytes`: larger bodies get 413 before they are read whole; `max_concurrent_requests`: requests
    in flight beyond it get 429 (every error in OpenAI's error shape); `url_image_px`: the (width, height) of an
    image sent by URL, which the twin does not fetch (an inline data: URL's own size is read from its header);
    `prompt_tokens_details`: a usage carries the prompt tokens a prefix cache held, when there are any, as
    usage.prompt_tokens_details.cached_tokens (vLLM's serving code and SGLang's usage processor omit it at 0)."""
    from contextlib import asynccontextmanager

    context = live.model.max_position_embeddings or 0
    vocab = live.model.vocab_size
    block_tokens = live.cluster.prefix_block_tokens  # a prompt's hashes, one per engine KV block
    in_flight = [0]
    vision = live.model.vision is not None

    def image_geometry(part: dict, where: str) -> ImageGeometry:
        """An image_url part's patches and prompt tokens: its size read from an inline data: URL's header, else
        url_image_px (the twin fetches nothing)."""
        spec = part.get(IMAGE_PART)
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str) or not url:
            raise ApiError(400, f"{where}: image_url.url must be a non-empty string", "messages")
        if url.startswith("data:"):
            size = data_url_size(url)
            if size is None:
                raise ApiError(400, f"{where}: the data: URL does not hold a base64 PNG, JPEG, GIF, WebP or BMP image "
                                    "whose size its header gives", "messages")
        elif url_image_px is None:
            raise ApiError(400, f"{where}: an image by URL: the twin fetches nothing, so its size is unknown; send it "
                                "inline (data:image/...;base64,...) or start the twin with --image-size WxH",
                           "messages")
        else:
            size = url_image_px
        try:  # the size's bounds and the processor's limits (specs/vision.py)
            return live.model.image_geometry(*size)
        except PhasewiseError as exc:
            raise ApiError(400, f"{where}: {exc}", "messages") from None

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
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": live.started,
                                            "owned_by": "phasewise", "max_model_len": context or None}]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(live.prometheus(model_name), media_type="text/plain; version=0.0.4")

    @app.get("/prometheus/metrics")  # where trtllm-serve serves its Prometheus text (its /metrics is JSON stats)
    async def prometheus_metrics():
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
        if body.get("model") is not None and not isinstance(body["model"], str):
            raise ApiError(400, f"'model' must be a string (got {json.dumps(body['model'])[:80]})", "model")
        if body.get("model") and body["model"] != model_name:  # none or "": the served model, as vLLM takes it
            raise ApiError(404, f"the model '{body.get('model')}' does not exist; this server serves '{model_name}'",
                           "model", "model_not_found", "invalid_request_error")
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

    async def count(text: str, max_tokens: int, prompt_param: str, tokens_param: str,
                    overhead: int = 0) -> tuple[int, tuple]:
        """Prompt tokens of `text` and its leading blocks' hashes (the prefix cache's, the engines' KV block each):
        a too-long prompt (with `overhead` more tokens around it: a chat template's) is refused from a linear-time
        bound before any tokenizing, and a long one is tokenized off the event loop."""
        check_context(tokenizer.min_tokens(text) + overhead, max_tokens, prompt_param, tokens_param, at_least=True)
        if len(text) > INLINE_TOKENIZE_CHARS:
            return await asyncio.to_thread(tokenizer.count_and_blocks, text, block_tokens)
        return tokenizer.count_and_blocks(text, block_tokens)

    def usage(streams: list[Stream], choices: int, completion_tokens: int | None = None) -> dict[str, Any]:
        """A response's usage: each prompt's tokens once however many choices it has (the streams are `choices` a
        prompt, in order), and every choice's output tokens (`completion_tokens`: those sent so far, where the
        simulation has produced more)."""
        firsts = streams[::choices]
        p = sum(s.req.prompt for s in firsts)
        c = sum(s.emitted for s in streams) if completion_tokens is None else completion_tokens
        out: dict[str, Any] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        cached = sum(s.req.cached_tokens for s in firsts if s.req.cached_tokens > 0)
        if prompt_tokens_details and cached > 0:
            out["prompt_tokens_details"] = {"cached_tokens": cached}
        return out

    async def collect(stream: Stream) -> int:
        total = 0
        async for n in tokens(stream):
            total += n
        return total

    async def collect_all(streams: list[Stream]) -> list[int]:
        """Every choice's output tokens; the first to fail fails them all, and the others are cancelled."""
        tasks = [asyncio.ensure_future(collect(stream)) for stream in streams]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()  # tokens()'s finally cancels an unfinished request in the simulation

    async def _until_done_or_gone(request: Request, streams: list[Stream]) -> list[int] | None:
        """A non-streaming request's output tokens, each choice's, once the simulation has produced them all, or
        None when its client disconnects first: then its requests are cancelled (their KV freed, their seats given
        back), as a streaming one's are and as vLLM aborts them. The disconnect is ASGI's http.disconnect, the next
        message once the body is read."""
        work = asyncio.ensure_future(collect_all(streams))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            work.cancel()
            try:
                await work
            except asyncio.CancelledError:
                pass
            return None
        finally:
            gone.cancel()

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

    async def choice_tokens(streams: list[Stream]):
        """(choice index, the choice's tokens before these, tokens) as the simulation produces them and (index, the
        choice's tokens, None) as a choice ends: one stream's directly, several interleaved in the order their tokens
        come (each with its own positions: a choice's pump runs ahead of what has been sent); closing it cancels
        what has not ended."""
        if len(streams) == 1:
            before = 0
            async for n in tokens(streams[0]):
                yield 0, before, n
                before += n
            yield 0, before, None
            return
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index: int, stream: Stream) -> None:
            before = 0
            try:
                async for n in tokens(stream):
                    queue.put_nowait((index, before, n))
                    before += n
                queue.put_nowait((index, before, None))
            except ApiError as exc:
                queue.put_nowait((index, before, exc))

        tasks = [asyncio.ensure_future(pump(index, stream)) for index, stream in enumerate(streams)]
        try:
            left = len(streams)
            while left:
                index, before, item = await queue.get()
                if isinstance(item, ApiError):
                    raise item
                left -= item is None
                yield index, before, item
        finally:
            for task in tasks:
                task.cancel()

    async def chat_prompt(body: dict) -> Prompt:
        """A chat request's prompt; without max_tokens, `default_chat_tokens` or what the context leaves after the
        prompt, whichever is fewer."""
        tokens_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        # both checked (vLLM validates each); max_completion_tokens, OpenAI's current name, wins
        named = int_field(body, "max_completion_tokens"), int_field(body, "max_tokens")
        asked = named[0] or named[1]
        text, images = chat_texts(body, image_geometry if vision else None)
        overhead = 4 * len(text) + 3  # the chat template's tokens around each message
        overhead += sum(image.prompt_tokens for image in images)
        tools = tools_text(body)  # rendered first, as templates put them in the system prompt: a shared prefix
        prompt_tokens, blocks = await count("\n".join(([tools] if tools else []) + text), asked or 1, "messages",
                                            tokens_param, overhead)
        prompt_tokens += overhead
        if images:  # their pixels are not hashed: such a prompt shares no prefix
            blocks = None
        check_context(prompt_tokens, asked or 1, "messages", tokens_param)
        if asked is None:  # at least min_tokens, within the context (the prompt alone fits: checked above)
            asked = max(default_chat_tokens, int_field(body, "min_tokens", at_least=0) or 0)
            asked = min(asked, context - prompt_tokens) if context else asked
        return Prompt(prompt_tokens, blocks, tuple(image.patches for image in images),
                      tuple(image.prompt_tokens for image in images), asked)

    async def completion_prompt(prompt: str | list[int], max_tokens: int) -> Prompt:
        """A completions prompt (a string, or token ids)."""
        if isinstance(prompt, str):
            prompt_tokens, blocks = await count(prompt, max_tokens, "prompt", "max_tokens")
        else:  # token ids, each within the vocabulary (vLLM's input processor: "Token id ... is out of vocabulary")
            bad = next((t for t in prompt if not 0 <= t < vocab), None)
            if bad is not None:
                raise ApiError(400, f"Token id {bad} is out of vocabulary (0 to {vocab - 1})", "prompt")
            prompt_tokens, blocks = len(prompt), id_blocks(prompt, block_tokens)
        check_context(prompt_tokens, max_tokens, "prompt", "max_tokens")
        return Prompt(prompt_tokens, blocks, (), (), max_tokens)

    async def run(body: dict, chat: bool) -> tuple[list[Stream], int, bool, bool, bool]:
        """The request's choices entered in the simulation, `n` a prompt (prompt-major, as vLLM indexes them), with
        the choices a prompt, and (streaming, usage at the end, usage in every chunk)."""
        streaming, include_usage, continuous = stream_flags(body)
        check_sampling(body)
        refuse_unanswerable(body, chat)
        if chat:
            choices = choice_count(body, 1)
            prompts = [await chat_prompt(body)]
        else:
            texts = completion_prompts(body)
            choices = choice_count(body, len(texts))
            max_tokens = int_field(body, "max_tokens") or 16
            prompts = [await completion_prompt(text, max_tokens) for text in texts]
        least = int_field(body, "min_tokens", at_least=0) or 0
        if least > prompts[0].max_tokens:
            raise ApiError(400, f"'min_tokens' ({least}) must be <= the output's max_tokens ({prompts[0].max_tokens})",
                           "min_tokens")
        # refused up front, with the reason: a request no instance of a role it needs could ever hold (front: the
        # collocated or prefill instances; disaggregated, the decode instances too, which take its KV over), prompt
        # and output together (never_fits: the simulation refuses it on arrival, as an engine does)
        front = [i for i in live.instances if i.role != "decode"]
        back = [i for i in live.instances if i.role == "decode"]
        for prompt in prompts:
            tokens = max(prompt.tokens, 1)
            refused = {i.scheduler.refusal(tokens) for i in front}
            if front and None not in refused:  # past a limit of every instance that would prefill it
                reason = refused.pop()
                raise ApiError(400, f"the request's {prompt.tokens} prompt tokens: {REJECT_REASONS[reason]}",
                               "messages" if chat else "prompt", reason)
            for group in (front, back):
                if group and all(i.never_fits(tokens, prompt.max_tokens) for i in group):
                    where = "decode instance" if group is back else "instance"
                    alone = all(i.never_fits(tokens, 0) for i in group)  # the prompt alone, or the output on top
                    named = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
                    param = ("messages" if chat else "prompt") if alone else named
                    raise ApiError(400, f"the request's {prompt.tokens} prompt and {prompt.max_tokens} output tokens "
                                        f"do not fit in the simulated KV cache of any {where} "
                                        f"({max(i.kv.capacity * i.kv.block_size for i in group)} tokens)", param,
                                   "kv_cache_exhausted")
        endpoint = "chat_completions" if chat else "completions"
        streams = [live.submit(max(p.tokens, 1), p.max_tokens, p.image_patches, p.image_tokens, p.blocks, endpoint,
                               streaming) for p in prompts for _ in range(choices)]
        return streams, choices, streaming, include_usage, continuous

    def chunk(rid: str, created: int, delta: str | None, finish: str | None, chat: bool, first: bool,
              index: int = 0, used: dict | None = None) -> str:
        if chat:
            d: dict[str, Any] = {}
            if first:
                d["role"] = "assistant"
            if delta is not None:
                d["content"] = delta
            choice = {"index": index, "delta": d, "logprobs": None, "finish_reason": finish}
            obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                   "choices": [choice]}
        else:
            choice = {"index": index, "text": delta or "", "logprobs": None, "finish_reason": finish}
            obj = {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                   "choices": [choice]}
        if used is not None:  # stream_options.continuous_usage_stats: the choice's usage so far, in every chunk
            obj["usage"] = used
        return f"data: {json.dumps(obj)}\n\n"

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

    async def answer(request: Request, chat: bool):
        body = await parse(request)
        streams, choices, streaming, include_usage, continuous = await run(body, chat)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if streaming:
            # One choice's content chunks differ only in their text: format the JSON once, splice the text in.
            spliced = len(streams) == 1 and not continuous
            head, tail = chunk(rid, created, "\x00", None, chat, False).split('"\\u0000"')

            async def sse():
                started = [not chat] * len(streams)  # a chat choice's first chunk also carries the assistant role
                try:
                    async for index, before, n in choice_tokens(streams):
                        # the choice's tokens sent with this chunk (its pump may have run ahead)
                        used = usage([streams[index]], 1, before + (n or 0)) if continuous else None
                        if n is None:  # the choice ended
                            yield chunk(rid, created, None if chat else "", "length", chat, False, index, used)
                            continue
                        text = filler(before, n)
                        if not started[index]:
                            yield chunk(rid, created, text, None, chat, True, index, used)
                            started[index] = True
                        elif spliced:
                            yield f'{head}"{text}"{tail}'
                        else:
                            yield chunk(rid, created, text, None, chat, False, index, used)
                except ApiError as exc:  # after the headers went out: an error event, then the end
                    yield f"data: {json.dumps(exc.body())}\n\n"
                    yield "data: [DONE]\n\n"
                    return
                if include_usage:
                    obj = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                           "created": created, "model": model_name, "choices": [], "usage": usage(streams, choices)}
                    yield f"data: {json.dumps(obj)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        totals = await _until_done_or_gone(request, streams)
        if totals is None:  # the client left: its requests were cancelled in the simulation (tokens())
            return Response(status_code=499)
        if chat:
            answers = [{"index": index, "message": {"role": "assistant", "content": filler(0, total)},
                        "logprobs": None, "finish_reason": "length"} for index, total in enumerate(totals)]
            return {"id": rid, "object": "chat.completion", "created": created, "model": model_name,
                    "choices": answers, "usage": usage(streams, choices)}
        answers = [{"index": index, "text": filler(0, total), "logprobs": None, "finish_reason": "length"}
                   for index, total in enumerate(totals)]
        return {"id": rid, "object": "text_completion", "created": created, "model": model_name,
                "choices": answers, "usage": usage(streams, choices)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await respond(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await respond(request, chat=True)

    return app
