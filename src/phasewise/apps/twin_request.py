"""What a twin request asks for besides its prompt text, checked as vLLM's OpenAI server checks it: the error object
the twin answers with; how many choices (`n`, and a completions batch of prompts); streaming and its usage options;
the sampling parameters, validated by type and range though they change no timing (an output is always max_tokens
long, as with `ignore_eos`); and what the twin cannot answer (log-probabilities, echo, best_of), refused by name
rather than answered with nulls a client would trip over."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from phasewise.errors import one_line

# the most choices (prompts x n) one request may ask for: each is a request in the simulation
MAX_CHOICES = 1024


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt of a request as the simulation takes it: its tokens, its leading blocks' hashes (None: it shares
    no prefix), its images' encoder patches and prompt tokens, and the output tokens asked for it."""

    tokens: int
    blocks: tuple | None
    image_patches: tuple[int, ...]
    image_tokens: tuple[int, ...]
    max_tokens: int


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        message = one_line(message)  # a line break or a lone surrogate echoed from the body, escaped
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def int_field(body: dict, name: str, at_least: int = 1) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, f"'{name}' must be an integer (got {json.dumps(v)})", name)
    if v < at_least:
        raise ApiError(400, f"'{name}' must be >= {at_least} (got {v})", name)
    return v


def _number(body: dict, name: str, low: float, high: float, low_open: bool = False) -> None:
    v = body.get(name)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ApiError(400, f"'{name}' must be a number (got {json.dumps(v)})", name)
    if v < low or (low_open and v == low) or v > high:
        span = f"in {'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else \
            f"{'>' if low_open else '>='} {low:g}"
        raise ApiError(400, f"'{name}' must be {span} (got {v})", name)


def _list_of(body: dict, name: str, kind: type, what: str) -> None:
    v = body.get(name)
    if v is None or (kind is str and isinstance(v, str)):
        return
    if not isinstance(v, list) or not all(isinstance(x, kind) and not isinstance(x, bool) for x in v):
        raise ApiError(400, f"'{name}' must be {what} (got {json.dumps(v)[:80]})", name)


def check_sampling(body: dict) -> None:
    """The sampling parameters vLLM validates, by type and range (vLLM's SamplingParams checks); none changes the
    simulated timing."""
    _number(body, "temperature", 0.0, math.inf)
    _number(body, "top_p", 0.0, 1.0, low_open=True)
    _number(body, "min_p", 0.0, 1.0)
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)
    _number(body, "repetition_penalty", 0.0, math.inf, low_open=True)
    top_k = body.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1):
        raise ApiError(400, f"'top_k' must be an integer, -1 or 0 (off) or >= 1 (got {json.dumps(top_k)})", "top_k")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"'seed' must be an integer (got {json.dumps(seed)})", "seed")
    _list_of(body, "stop", str, "a string or a list of strings")
    _list_of(body, "stop_token_ids", int, "a list of token ids")
    if body.get("ignore_eos") is not None and not isinstance(body["ignore_eos"], bool):
        raise ApiError(400, f"'ignore_eos' must be a boolean (got {json.dumps(body['ignore_eos'])})", "ignore_eos")
    int_field(body, "min_tokens", at_least=0)


def refuse_unanswerable(body: dict, chat: bool) -> None:
    """What the twin's filler output cannot carry, refused by name (a 200 with nulls would break a client that reads
    it): log-probabilities, the prompt echoed, best_of's extra candidates."""
    why = "the twin's output is filler text of simulated length"
    if body.get("logprobs") is not None and body["logprobs"] is not False:  # completions' 0 asks for the token's
        raise ApiError(400, f"'logprobs': {why}; it has no log-probabilities", "logprobs")
    if body.get("top_logprobs") not in (None, 0):
        raise ApiError(400, f"'top_logprobs': {why}; it has no log-probabilities", "top_logprobs")
    if body.get("prompt_logprobs") is not None:
        raise ApiError(400, f"'prompt_logprobs': {why}; it has no log-probabilities", "prompt_logprobs")
    if not chat and body.get("echo") not in (None, False):
        raise ApiError(400, f"'echo': {why}; it does not echo the prompt", "echo")
    if not chat and body.get("best_of") not in (None, 1):
        raise ApiError(400, f"'best_of': {why}; it does not rank candidates (ask for n choices instead)", "best_of")


def stream_flags(body: dict) -> tuple[bool, bool, bool]:
    """(streaming, usage in a last chunk, usage in every chunk): `stream` (null is false, as OpenAI's default) and
    `stream_options`' include_usage and continuous_usage_stats (vLLM's), which only a stream may carry."""
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be a boolean", "stream")
    opts = body.get("stream_options")
    if opts is None:
        return stream, False, False
    if not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    if not stream:
        raise ApiError(400, "'stream_options' can only be given with 'stream': true", "stream_options")
    include = bool(opts.get("include_usage"))
    return stream, include, include and bool(opts.get("continuous_usage_stats"))


def completion_prompts(body: dict) -> list[str | list[int]]:
    """A completions request's prompts: a string, a list of strings, a list of token ids, or a list of such lists
    (OpenAI's and vLLM's batch), each answered as its own choices."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if _token_ids(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and (all(isinstance(p, str) for p in prompt)
                                                or all(_token_ids(p) for p in prompt)):
        return prompt  # a batch: a list of strings or of token-id lists
    raise ApiError(400, "'prompt' must be a string, a list of strings, a list of token ids, or a list of lists of "
                        "token ids", "prompt")


def _token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool)
                                                           for t in value)


def choice_count(body: dict, prompts: int) -> int:
    """`n` (null: 1), bounded with the prompts so one request does not flood the simulation."""
    n = int_field(body, "n") or 1
    if n * prompts > MAX_CHOICES:
        raise ApiError(400, f"the request asks for {n * prompts} choices ({prompts} prompt(s) x n = {n}); the twin "
                            f"answers at most {MAX_CHOICES} in one request", "n")
    return n
