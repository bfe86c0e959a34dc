"""The twin's side of a request's tokens: read them from the live simulation as it produces them (one choice, or
several interleaved), collect a non-streaming answer unless its client leaves first, and write the OpenAI chunks
and usage they make. A request whose client leaves is cancelled in the simulation (its KV freed, its seat given
back), as vLLM aborts it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import Request

from phasewise.apps.twin_live import LiveSim, Stream
from phasewise.apps.twin_request import ApiError


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone: the ASGI messages after the request's body are only its disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def tokens(live: LiveSim, stream: Stream):
    """Yield token counts as the simulation produces them; cancel the request if the client leaves."""
    try:
        while True:
            kind, value = await stream.queue.get()
            if kind == "tokens":
                stream.emitted += value
                yield value
            elif kind == "done":
                return
            else:  # (message, code): a request the KV cache cannot hold, or a server stopped now (LiveSim.stop_all)
                message, code = value
                raise ApiError(503, message, code=code, kind="server_error")
    finally:
        if not stream.done:
            live.cancel(stream)


async def choice_tokens(live: LiveSim, streams: list[Stream]):
    """(choice index, the choice's tokens before these, tokens) as the simulation produces them and (index, the
    choice's tokens, None) as a choice ends: one stream's directly, several interleaved in the order their tokens
    come (each with its own positions: a choice's pump runs ahead of what has been sent); closing it cancels
    what has not ended."""
    if len(streams) == 1:
        before = 0
        async for n in tokens(live, streams[0]):
            yield 0, before, n
            before += n
        yield 0, before, None
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: Stream) -> None:
        before = 0
        try:
            async for n in tokens(live, stream):
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


async def _collect(live: LiveSim, stream: Stream) -> int:
    total = 0
    async for n in tokens(live, stream):
        total += n
    return total


async def collect_all(live: LiveSim, streams: list[Stream]) -> list[int]:
    """Every choice's output tokens; the first to fail fails them all, and the others are cancelled."""
    tasks = [asyncio.ensure_future(_collect(live, stream)) for stream in streams]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()  # tokens()'s finally cancels an unfinished request in the simulation


async def until_done_or_gone(live: LiveSim, request: Request, streams: list[Stream]) -> list[int] | None:
    """A non-streaming request's output tokens, each choice's, once the simulation has produced them all, or
    None when its client disconnects first: then its requests are cancelled (their KV freed, their seats given
    back), as a streaming one's are and as vLLM aborts them. The disconnect is ASGI's http.disconnect, the next
    message once the body is read."""
    work = asyncio.ensure_future(collect_all(live, streams))
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


def usage(streams: list[Stream], choices: int, completion_tokens: int | None = None,
          prompt_tokens_details: bool = False) -> dict[str, Any]:
    """A response's usage: each prompt's tokens once however many choices it has (the streams are `choices` a
    prompt, in order), and every choice's output tokens (`completion_tokens`: those sent so far, where the
    simulation has produced more). `prompt_tokens_details`: the prompt tokens a prefix cache held, when there are
    any (vLLM's serving code and SGLang's usage processor omit it at 0)."""
    firsts = streams[::choices]
    prompt = sum(s.req.prompt for s in firsts)
    completion = sum(s.emitted for s in streams) if completion_tokens is None else completion_tokens
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    cached = sum(s.req.cached_tokens for s in firsts if s.req.cached_tokens > 0)
    if prompt_tokens_details and cached > 0:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def chunk(model_name: str, rid: str, created: int, delta: str | None, finish: str | None, chat: bool, first: bool,
          index: int = 0, used: dict | None = None) -> str:
    """One server-sent event of a streamed answer: a chat.completion.chunk (the first of a choice also carries
    the assistant role) or a text_completion; `used`: the choice's usage so far (continuous_usage_stats)."""
    if chat:
        delta_fields: dict[str, Any] = {}
        if first:
            delta_fields["role"] = "assistant"
        if delta is not None:
            delta_fields["content"] = delta
        choice = {"index": index, "delta": delta_fields, "logprobs": None, "finish_reason": finish}
        obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name,
               "choices": [choice]}
    else:
        choice = {"index": index, "text": delta or "", "logprobs": None, "finish_reason": finish}
        obj = {"id": rid, "object": "text_completion", "created": created, "model": model_name,
               "choices": [choice]}
    if used is not None:
        obj["usage"] = used
    return f"data: {json.dumps(obj)}\n\n"
