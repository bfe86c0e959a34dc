"""What a twin request asks for, checked as vLLM's OpenAI server checks it: the error object the twin answers with;
a chat's messages and tools as the text its template renders (what the twin counts as prompt tokens); how many
choices (`n`, and a completions batch of prompts); streaming and its usage options; the sampling parameters,
validated by type and range though they change no timing (an output is always max_tokens long, as with
`ignore_eos`); and what the twin cannot answer (log-probabilities, echo, best_of, beam search, a suffix, structured
output, tool calls), refused by name rather than answered with nulls or plain text a client would trip over."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.errors import one_line

# the most choices (prompts x n) one request may ask for: each is a request in the simulation
MAX_CHOICES = 1024
# vLLM's bounds: vllm/sampling_params.py (_SAMPLING_EPS, the temperature below which sampling is greedy, where n must
# be 1; "temperature must be in [0, 2]") and vllm/entrypoints/openai/chat_completion/protocol.py (seed: a signed
# 64-bit integer, Field(ge=_INT64_MIN, le=_INT64_MAX))
GREEDY_TEMPERATURE = 1e-5
MAX_TEMPERATURE = 2.0
SEED_RANGE = (-(2**63), 2**63 - 1)
# chat content parts the twin counts (OpenAI's text part, and an assistant message's refusal text); an image_url
# part where the model has a vision encoder (its tokens and encoder patches, specs/vision.py); audio, video and file
# parts are refused: their tokens and encoders are not simulated
TEXT_PARTS = ("text", "refusal")
IMAGE_PART = "image_url"
# response_format types (vLLM's AnyResponseFormat): only plain text is answerable with filler text
RESPONSE_FORMATS = ("text", "json_object", "json_schema", "structural_tag")
# vLLM's structured-output fields besides response_format (structured_outputs, and the guided_* of older versions)
STRUCTURED_FIELDS = ("structured_outputs", "guided_json", "guided_regex", "guided_choice", "guided_grammar")
# vLLM's request models are plain pydantic models, which read a field in lax mode (pydantic's conversion table):
# a string is an int when it is ASCII digits (a sign, '_' between digits, a '.0...' tail, spaces around), a float
# when Python's float() reads its ASCII text, a bool when it is one of these words in any case (no spaces)
INT_TEXT = re.compile(r"[+-]?[0-9](?:_?[0-9])*(?:\.0+)?")
BOOL_WORDS = {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True,
              "0": False, "off": False, "f": False, "false": False, "n": False, "no": False}


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


def lax_int(v: Any) -> int | None:
    """`v` as pydantic's lax mode reads an int field, None where it refuses it: an int or a bool (True is 1), a
    float with no fractional part within a signed 64-bit integer (3.0, not 3.5), a string of digits (INT_TEXT)."""
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() and abs(v) < 2.0**63 else None
    if isinstance(v, str) and INT_TEXT.fullmatch(v.strip()):
        try:
            return int(v.strip().split(".")[0])
        except ValueError:  # beyond Python's 4,300 digits (pydantic: "exceeded maximum size")
            return None
    return None


def lax_float(v: Any) -> float | None:
    """`v` as pydantic's lax mode reads a float field, None where it refuses it: a number or a bool, a string
    Python's float() reads in ASCII ("0.5", "1e-3", "inf")."""
    try:
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str) and v.strip().isascii():
            return float(v.strip())
    except (ValueError, OverflowError):
        pass
    return None


def lax_bool(v: Any) -> bool | None:
    """`v` as pydantic's lax mode reads a bool field, None where it refuses it: a bool, 0 or 1 (int or float), one
    of BOOL_WORDS in any case."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return v == 1
    if isinstance(v, str):
        return BOOL_WORDS.get(v.lower())
    return None


def typed_field(body: dict, name: str, lax: Callable[[Any], Any], what: str, where: str | None = None) -> Any:
    """A field read as vLLM's pydantic models read it (`lax`: lax_int, lax_float or lax_bool), None when absent or
    null; one it refuses is a 400 naming it (`where`: its place in the body, if not `name`) and what it must be."""
    v = body.get(name)
    if v is None:
        return None
    read = lax(v)
    if read is None:
        raise ApiError(400, f"'{where or name}' must be {what} (got {json.dumps(v)[:80]})", where or name)
    return read


def int_field(body: dict, name: str, at_least: int = 1) -> int | None:
    v = typed_field(body, name, lax_int, "an integer")
    if v is not None and v < at_least:
        raise ApiError(400, f"'{name}' must be >= {at_least} (got {v})", name)
    return v


def _number(body: dict, name: str, low: float, high: float, low_open: bool = False) -> float | None:
    v = typed_field(body, name, lax_float, "a number")
    if v is None:
        return None
    if not math.isfinite(v):
        raise ApiError(400, f"'{name}' must be a finite number (got {json.dumps(body[name])})", name)
    if v < low or (low_open and v == low) or v > high:
        span = f"in {'(' if low_open else '['}{low:g}, {high:g}]" if high < math.inf else \
            f"{'>' if low_open else '>='} {low:g}"
        raise ApiError(400, f"'{name}' must be {span} (got {v:g})", name)
    return v


def _list_of(body: dict, name: str, kind: type, what: str) -> None:
    v = body.get(name)
    if v is None or (kind is str and isinstance(v, str)):
        return
    # a list of ints: each as lax_int reads it; of strings: strings only (pydantic's lax mode makes no number a str)
    if not isinstance(v, list) or not all(lax_int(x) is not None if kind is int else isinstance(x, kind) for x in v):
        raise ApiError(400, f"'{name}' must be {what} (got {json.dumps(v)[:80]})", name)


def check_sampling(body: dict) -> None:
    """The sampling parameters vLLM validates, by type (read as its pydantic models read them: typed_field) and range
    (vLLM's SamplingParams checks); none changes the simulated timing."""
    temperature = _number(body, "temperature", 0.0, MAX_TEMPERATURE)
    _number(body, "top_p", 0.0, 1.0, low_open=True)
    _number(body, "min_p", 0.0, 1.0)
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)
    _number(body, "repetition_penalty", 0.0, math.inf, low_open=True)
    top_k = typed_field(body, "top_k", lax_int, "an integer, -1 or 0 (off) or >= 1")
    if top_k is not None and top_k < -1:
        raise ApiError(400, f"'top_k' must be an integer, -1 or 0 (off) or >= 1 (got {top_k})", "top_k")
    seed = typed_field(body, "seed", lax_int, "an integer")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ApiError(400, f"'seed' must be in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], a signed 64-bit integer "
                            f"(got {seed})", "seed")
    _list_of(body, "stop", str, "a string or a list of strings")
    stop = body.get("stop")
    if stop == "" or (isinstance(stop, list) and "" in stop):  # vLLM's error, word for word (sampling_params.py)
        raise ApiError(400, "stop cannot contain an empty string.", "stop")
    n = lax_int(body.get("n"))  # (refused, if it is no integer, with the choices: choice_count)
    if temperature is not None and temperature < GREEDY_TEMPERATURE and n is not None and n > 1:
        raise ApiError(400, f"n must be 1 when using greedy sampling, got {n}. ('temperature' {temperature:g} is "
                            "greedy; the n choices would be the same text)", "n")
    _list_of(body, "stop_token_ids", int, "a list of token ids")
    typed_field(body, "ignore_eos", lax_bool, "a boolean")
    int_field(body, "min_tokens", at_least=0)


def refuse_unanswerable(body: dict, chat: bool) -> None:
    """What the twin's filler output cannot carry, refused by name (a 200 with nulls, or plain text where JSON was
    asked for, would break a client that reads it): log-probabilities, the prompt echoed, best_of's extra candidates,
    beam search, a completion's suffix (which vLLM refuses too), structured output."""
    why = "the twin's output is filler text of simulated length"
    # a chat's logprobs is a bool (false: none asked); a completion's a count (vLLM's CompletionRequest.logprobs:
    # int | None, vllm/entrypoints/openai/protocol.py), where 0 asks for the sampled token's own and false, which
    # pydantic reads as 0, too: any value but null asks for log-probabilities
    asked = typed_field(body, "logprobs", lax_bool if chat else lax_int, "a boolean" if chat else "an integer")
    if asked is not None and (not chat or asked is not False):
        raise ApiError(400, f"'logprobs': {why}; it has no log-probabilities", "logprobs")
    if typed_field(body, "top_logprobs", lax_int, "an integer") not in (None, 0):
        raise ApiError(400, f"'top_logprobs': {why}; it has no log-probabilities", "top_logprobs")
    if body.get("prompt_logprobs") is not None:
        raise ApiError(400, f"'prompt_logprobs': {why}; it has no log-probabilities", "prompt_logprobs")
    if not chat and typed_field(body, "echo", lax_bool, "a boolean"):
        raise ApiError(400, f"'echo': {why}; it does not echo the prompt", "echo")
    if not chat and typed_field(body, "best_of", lax_int, "an integer") not in (None, 1):
        raise ApiError(400, f"'best_of': {why}; it does not rank candidates (ask for n choices instead)", "best_of")
    if typed_field(body, "use_beam_search", lax_bool, "a boolean"):
        raise ApiError(400, f"'use_beam_search': {why}; it does not search beams (ask for n choices instead)",
                       "use_beam_search")
    if not chat and body.get("suffix") is not None:  # vLLM's own answer (its completion serving)
        raise ApiError(400, "suffix is not currently supported", "suffix")
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in RESPONSE_FORMATS:
            raise ApiError(400, f"'response_format' must be an object whose type is one of "
                                f"{', '.join(RESPONSE_FORMATS)} (got {json.dumps(fmt)[:80]})", "response_format")
        if kind != "text":
            raise ApiError(400, f"'response_format' {kind}: {why}; it cannot follow a JSON or structural format "
                                "(leave response_format out, or give type text)", "response_format")
    named = next((name for name in STRUCTURED_FIELDS if body.get(name) is not None), None)
    if named:
        raise ApiError(400, f"'{named}': {why}; it cannot follow a structured-output constraint", named)


def stream_flags(body: dict) -> tuple[bool, bool, bool]:
    """(streaming, usage in a last chunk, usage in every chunk): `stream` (null is false, as OpenAI's default) and
    `stream_options`' include_usage and continuous_usage_stats (vLLM's), each read as vLLM's pydantic models read a
    bool (lax_bool: "true" is true). As vLLM: include_usage left out is true (`include_usage: bool | None = True`,
    StreamOptions in vllm/entrypoints/openai/protocol.py, engine/protocol.py in later versions: `stream_options: {}`
    asks for usage), null or false none, and usage in every chunk needs both (vllm/entrypoints/utils.py
    should_include_usage: include_usage and continuous_usage_stats); only a stream may carry stream_options, but an
    empty object, falsy to vLLM's check (validate_stream_options: `data.get("stream_options") and not
    data.get("stream")`), is let through without one."""
    stream = bool(typed_field(body, "stream", lax_bool, "a boolean"))
    opts = body.get("stream_options")
    if opts is None:
        return stream, False, False
    if not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    if opts and not body.get("stream"):  # vLLM's words (its check reads the raw value, as here)
        raise ApiError(400, "Stream options can only be defined when `stream=True`.", "stream_options")
    include, continuous = (typed_field(opts, name, lax_bool, "a boolean: true or false", f"stream_options.{name}")
                           for name in ("include_usage", "continuous_usage_stats"))
    if "include_usage" not in opts:
        include = True
    return stream, stream and include is True, stream and include is True and continuous is True


def completion_prompts(body: dict) -> list[str | list[int]]:
    """A completions request's prompts: a string, a list of strings, a list of token ids, or a list of such lists
    (OpenAI's and vLLM's batch), each answered as its own choices."""
    prompt = body.get("prompt")
    if prompt == "":  # vLLM's words (CompletionRequest.validate_prompt_and_prompt_embeds refuses an empty string)
        raise ApiError(400, "Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
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


def chat_texts(body: dict, image: Callable[[dict, str], Any] | None) -> tuple[list[str], list]:
    """A chat's messages as the text its template renders, one a message (its content, and an assistant message's
    tool calls: each function's name and arguments), and its images' geometry (`image`: an image_url part's, given
    the part and where it is; None for a model without a vision encoder, whose image parts are refused)."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    allowed = TEXT_PARTS + ((IMAGE_PART,) if image else ())
    texts, images = [], []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role' string", "messages")
        c = m.get("content")
        if isinstance(c, list):  # content parts: text, and images where the model has a vision encoder
            said = []
            for j, part in enumerate(c):
                kind = part.get("type", "text") if isinstance(part, dict) else None
                where = f"messages[{i}].content[{j}]"
                if kind == IMAGE_PART and image:
                    images.append(image(part, where))
                elif kind in TEXT_PARTS:
                    if not isinstance(part.get(kind), str):
                        raise ApiError(400, f"{where}.{kind} must be a string (got {json.dumps(part.get(kind))[:80]})",
                                       "messages")
                    said.append(part[kind])
                else:
                    raise ApiError(400, f"{where}: a part of type {kind!r} is not simulated (allowed: "
                                        f"{', '.join(allowed)}; the twin costs "
                                        f"{'text and images' if image else 'text prompts only'})", "messages")
            c = " ".join(said)
        elif c is not None and not isinstance(c, str):
            raise ApiError(400, f"messages[{i}].content must be a string, a list of content parts or null (got "
                                f"{json.dumps(c)[:80]})", "messages")
        texts.append(" ".join(filter(None, [c or "", *_tool_calls(m.get("tool_calls"), i)])))
    return texts, images


def _tool_calls(calls, i: int) -> list[str]:
    """An assistant message's tool calls as its template renders them: each function's name and arguments."""
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise ApiError(400, f"messages[{i}].tool_calls must be a list of tool calls", "messages")
    out = []
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise ApiError(400, f"messages[{i}].tool_calls[{k}] must be an object whose 'function' has a 'name' and "
                                "an 'arguments' string", "messages")
        out.append(f"{fn['name']} {fn['arguments']}")
    return out


def tools_text(body: dict) -> str:
    """A chat's tools as the JSON its template renders into the prompt ('' without tools), once `tool_choice` is
    checked as vLLM's ChatCompletionRequest checks it (protocol.py check_tool_usage; with tools and no tool_choice it
    is "auto"). The twin answers only tool_choice "none": "auto" gets the 400 a vLLM server started without
    --enable-auto-tool-choice gives (serving_chat), and "required" or a named tool, which vLLM answers with a tool call
    (structured output), are refused by name, as the twin's filler text holds no tool call."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        raise ApiError(400, "'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\": ...}} objects",
                       "tools")
    for k, tool in enumerate(tools or ()):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise ApiError(400, f"tools[{k}] must be an object of type \"function\" (got {json.dumps(tool)[:80]})",
                           "tools")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ApiError(400, f"tools[{k}].function must be an object with a non-empty 'name' string", "tools")
    if choice is None and tools:
        choice = "auto"
    if choice == "required" and tools == []:  # vLLM (as OpenAI): as "none"
        choice = "none"
    if choice not in (None, "none"):
        if tools is None:
            raise ApiError(400, "When using `tool_choice`, `tools` must be set.", "tool_choice")
        if choice not in ("auto", "required") and not isinstance(choice, dict):
            raise ApiError(400, f"Invalid value for `tool_choice`: {json.dumps(choice)[:80]}! Only named tools, "
                                "\"none\", \"auto\" or \"required\" are supported.", "tool_choice")
        if isinstance(choice, dict):
            fn = choice.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str) or not name:
                raise ApiError(400, "Invalid value for `tool_choice`: a named tool is {\"type\": \"function\", "
                                    "\"function\": {\"name\": \"my_function\"}}", "tool_choice")
            if name not in {tool["function"]["name"] for tool in tools}:
                raise ApiError(400, "The tool specified in `tool_choice` does not match any of the specified `tools`",
                               "tool_choice")
        why = "the twin's output is filler text of simulated length and holds no tool call; give tool_choice \"none\""
        if choice == "auto":
            raise ApiError(400, f"\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be "
                                f"set ({why})", "tool_choice")
        raise ApiError(400, f"'tool_choice' {json.dumps(choice)[:80]}: {why}", "tool_choice")
    return "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools or ())
