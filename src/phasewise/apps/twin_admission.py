"""The twin's front door for one request: read its body (bounded), count its prompt's tokens and blocks (a chat's
messages, tools and images, or a completion's text or token ids), refuse what the model's context or every
instance's limits could never hold (with OpenAI's error shapes and the parameter to blame), and enter its choices
in the live simulation."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from fastapi import Request

from phasewise.apps.image_header import data_url_size
from phasewise.apps.tokenizer import Tokenizer, id_blocks
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

# Prompts longer than this many characters are tokenized on a worker thread, off the event loop that streams
# every other request's tokens (a 700 KB prompt takes ~0.5 s to count here).
INLINE_TOKENIZE_CHARS = 16384

# A chat template's tokens, as the twin counts them (OpenAI's cookbook, num_tokens_from_messages: 4 a message, 3
# priming the reply) and hashes them with the contents: a message opens with its turn's start, its role and the
# header's end (Llama 3: <|start_header_id|>user<|end_header_id|>) and closes with its turn's end (<|eot_id|>); the
# reply opens as an assistant message does. Each stands for one token, never equal to a text's (tuples, not str).
TURN_START, HEADER_END, TURN_END = ("template", "turn start"), ("template", "header end"), ("template", "turn end")


def message_open(role: str) -> tuple:
    """The template's tokens before a message's content: its role among them."""
    return TURN_START, ("role", role), HEADER_END


MESSAGE_CLOSE = (TURN_END,)
REPLY_OPEN = message_open("assistant")


def template_tokens(messages: int) -> int:
    """The tokens a chat template puts around `messages` messages and before the reply."""
    return messages * (len(message_open("")) + len(MESSAGE_CLOSE)) + len(REPLY_OPEN)


def chat_tokens_and_blocks(tokenizer: Tokenizer, roles: list[str], texts: list[str], tools: str,
                           block_tokens: int) -> tuple[int, tuple]:
    """A chat's tokens as its template renders them (each message's role and the template's tokens around it,
    then its content: the first's begins with the tools' JSON; then the reply's opening) and the hashes of its
    leading full `block_tokens`-token blocks, as a completion's (id_blocks, over one key a token): a chat and a
    completion of the same text share no block, messages of the same text under two roles part at the role, and a
    chat extended by turns shares the whole earlier chat. Each content is counted alone, as the template's own
    tokens part it from the next."""
    keys: list = []
    for n, (role, text) in enumerate(zip(roles, texts)):
        keys += message_open(role)
        for said in ([tools] if tools and n == 0 else []) + [text]:
            keys += tokenizer.count_and_blocks(said, 1)[1]  # one key a token
        keys += MESSAGE_CLOSE
    keys += REPLY_OPEN
    return len(keys), id_blocks(keys, block_tokens)


@dataclass(slots=True)
class RequestAdmission:
    """`max_request_bytes`: larger bodies get 413 before they are read whole; `url_image_px`: the (width, height)
    of an image sent by URL, which the twin does not fetch (an inline data: URL's own size is read from its
    header); `default_chat_tokens`: a chat's output without max_tokens (or what the context leaves)."""
    live: LiveSim
    model_name: str
    tokenizer: Tokenizer
    default_chat_tokens: int
    max_request_bytes: int
    url_image_px: tuple[int, int] | None
    context_tokens: int = field(init=False)
    vocab_size: int = field(init=False)
    block_tokens: int = field(init=False)  # a prompt's hashes, one per engine KV block
    vision: bool = field(init=False)

    def __post_init__(self) -> None:
        self.context_tokens = self.live.model.max_position_embeddings or 0
        self.vocab_size = self.live.model.vocab_size
        self.block_tokens = self.live.cluster.prefix_block_tokens
        self.vision = self.live.model.vision is not None

    async def parse(self, request: Request) -> dict:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_request_bytes:
            raise ApiError(413, f"the request body has {int(declared)} bytes; this server accepts at most "
                                f"{self.max_request_bytes}", code="request_too_large")
        raw = bytearray()
        async for part in request.stream():  # also bounds bodies sent without a Content-Length
            raw += part
            if len(raw) > self.max_request_bytes:
                raise ApiError(413, f"the request body exceeds {self.max_request_bytes} bytes",
                               code="request_too_large")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        if body.get("model") is not None and not isinstance(body["model"], str):
            raise ApiError(400, f"'model' must be a string (got {json.dumps(body['model'])[:80]})", "model")
        if body.get("model") and body["model"] != self.model_name:  # none or "": the served model, as vLLM takes it
            raise ApiError(404, f"the model '{body.get('model')}' does not exist; this server serves "
                                f"'{self.model_name}'", "model", "model_not_found", "invalid_request_error")
        return body

    def image_geometry(self, part: dict, where: str) -> ImageGeometry:
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
        elif self.url_image_px is None:
            raise ApiError(400, f"{where}: an image by URL: the twin fetches nothing, so its size is unknown; send it "
                                "inline (data:image/...;base64,...) or start the twin with --image-size WxH",
                           "messages")
        else:
            size = self.url_image_px
        try:  # the size's bounds and the processor's limits (specs/vision.py)
            return self.live.model.image_geometry(*size)
        except PhasewiseError as exc:
            raise ApiError(400, f"{where}: {exc}", "messages") from None

    def check_context(self, prompt_tokens: int, max_tokens: int, prompt_param: str, tokens_param: str,
                      at_least: bool = False) -> None:
        """The context-length error, naming what makes the request too long: the prompt alone, or the output
        tokens asked for on top of it."""
        context = self.context_tokens
        if not context or prompt_tokens + max_tokens <= context:
            return
        counted = f"at least {prompt_tokens}" if at_least else str(prompt_tokens)
        param = prompt_param if prompt_tokens >= context else tokens_param
        raise ApiError(400, f"this model's maximum context length is {context} tokens; the request has {counted} "
                            f"prompt and {max_tokens} output tokens ({param} is too large)", param,
                       "context_length_exceeded")

    async def count(self, text: str, max_tokens: int, prompt_param: str, tokens_param: str) -> tuple[int, tuple]:
        """A completion's prompt tokens of `text` and its leading blocks' hashes (the prefix cache's, the engines'
        KV block each), once refuse_at_least() let it through; tokenized off the event loop where long."""
        self.refuse_at_least(text, 0, max_tokens, prompt_param, tokens_param)
        return await _off_the_loop(len(text), self.tokenizer.count_and_blocks, text, self.block_tokens)

    def refuse_at_least(self, text: str, overhead: int, max_tokens: int, prompt_param: str, tokens_param: str) -> None:
        """A prompt whose linear-time lower bound (`text`'s, with `overhead` more tokens around it: a chat
        template's and its images') alone reaches the context is refused from it before any tokenizing, naming the
        prompt; any other is tokenized and the callers' exact check names the field to blame, as vLLM's counted
        error does (a bound under the context with max_tokens over it says nothing certain of the prompt)."""
        bound = self.tokenizer.min_tokens(text) + overhead
        if self.context_tokens and bound >= self.context_tokens:
            self.check_context(bound, max_tokens, prompt_param, tokens_param, at_least=True)

    async def chat_prompt(self, body: dict) -> Prompt:
        """A chat request's prompt; without max_tokens, `default_chat_tokens` or what the context leaves after the
        prompt, whichever is fewer."""
        tokens_param = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
        # both checked (vLLM validates each); max_completion_tokens, OpenAI's current name, wins
        named = int_field(body, "max_completion_tokens"), int_field(body, "max_tokens")
        asked = named[0] or named[1]
        text, images = chat_texts(body, self.image_geometry if self.vision else None)
        roles = [message["role"] for message in body["messages"]]  # each a string (chat_texts)
        image_tokens = sum(image.prompt_tokens for image in images)
        tools = tools_text(body)  # in the first message, as templates put them in the system prompt
        joined = "\n".join(([tools] if tools else []) + text)
        self.refuse_at_least(joined, template_tokens(len(text)) + image_tokens, asked or 1, "messages", tokens_param)
        prompt_tokens, blocks = await _off_the_loop(len(joined), chat_tokens_and_blocks, self.tokenizer, roles, text,
                                                    tools, self.block_tokens)
        prompt_tokens += image_tokens
        if images:  # their pixels are not hashed: such a prompt shares no prefix
            blocks = None
        self.check_context(prompt_tokens, asked or 1, "messages", tokens_param)
        if asked is None:  # the prompt alone fits: checked above
            asked = self.default_output(prompt_tokens, int_field(body, "min_tokens", at_least=0) or 0)
        return Prompt(prompt_tokens, blocks, tuple(image.patches for image in images),
                      tuple(image.prompt_tokens for image in images), asked)

    def default_output(self, prompt_tokens: int, least: int) -> int:
        """The output of a request that names no max_tokens (a chat without one, a completion's explicit null):
        `default_chat_tokens`, at least `least` (min_tokens), within what the context leaves after the prompt."""
        tokens = max(self.default_chat_tokens, least)
        return min(tokens, self.context_tokens - prompt_tokens) if self.context_tokens else tokens

    async def completion_prompt(self, prompt: str | list[int], max_tokens: int | None, least: int = 0) -> Prompt:
        """A completions prompt (a string, or token ids). max_tokens None (an explicit null: vLLM then generates
        to the end of the context, its CompletionRequest.max_tokens `int | None = 16`): as a chat without one,
        `default_chat_tokens` (at least min_tokens) or what the context leaves, whichever is fewer."""
        if isinstance(prompt, str):
            prompt_tokens, blocks = await self.count(prompt, max_tokens or 1, "prompt", "max_tokens")
        else:  # token ids, each within the vocabulary (vLLM's input processor: "Token id ... is out of vocabulary")
            bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise ApiError(400, f"Token id {bad} is out of vocabulary (0 to {self.vocab_size - 1})", "prompt")
            prompt_tokens, blocks = len(prompt), id_blocks(prompt, self.block_tokens)
        self.check_context(prompt_tokens, max_tokens or 1, "prompt", "max_tokens")
        if max_tokens is None:
            max_tokens = self.default_output(prompt_tokens, least)
        return Prompt(prompt_tokens, blocks, (), (), max_tokens)

    async def submit(self, body: dict, chat: bool) -> tuple[list[Stream], int, bool, bool, bool]:
        """The request's choices entered in the simulation, `n` a prompt (prompt-major, as vLLM indexes them), with
        the choices a prompt, and (streaming, usage at the end, usage in every chunk)."""
        streaming, include_usage, continuous = stream_flags(body)
        check_sampling(body)
        refuse_unanswerable(body, chat)
        if chat:
            choices = choice_count(body, 1)
            prompts = [await self.chat_prompt(body)]
        else:
            texts = completion_prompts(body)
            choices = choice_count(body, len(texts))
            # left out: vLLM's (and OpenAI's) default of 16; an explicit null: completion_prompt's rule
            max_tokens = int_field(body, "max_tokens") if "max_tokens" in body else 16
            least = int_field(body, "min_tokens", at_least=0) or 0
            prompts = [await self.completion_prompt(text, max_tokens, least) for text in texts]
        least = int_field(body, "min_tokens", at_least=0) or 0
        if least > prompts[0].max_tokens:
            raise ApiError(400, f"'min_tokens' ({least}) must be <= the output's max_tokens ({prompts[0].max_tokens})",
                           "min_tokens")
        for prompt in prompts:
            self._refuse_never_served(prompt, body, chat)
        endpoint = "chat_completions" if chat else "completions"
        http = self.live.http_request(endpoint, streaming, len(prompts) * choices)  # Dynamo counts it once
        streams = [self.live.submit(max(p.tokens, 1), p.max_tokens, p.image_patches, p.image_tokens, p.blocks,
                                    http=http) for p in prompts for _ in range(choices)]
        return streams, choices, streaming, include_usage, continuous

    def _refuse_never_served(self, prompt: Prompt, body: dict, chat: bool) -> None:
        """Refused up front, with the reason: a request no instance of a role it needs could ever hold (front: the
        collocated or prefill instances; disaggregated, the decode instances too, which take its KV over), prompt
        and output together (never_fits: the simulation refuses it on arrival, as an engine does)."""
        front = [i for i in self.live.instances if i.role != "decode"]
        back = [i for i in self.live.instances if i.role == "decode"]
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


async def _off_the_loop(chars: int, tokenize, *args):
    """tokenize(*args), on a worker thread where the prompt has more than INLINE_TOKENIZE_CHARS characters."""
    if chars > INLINE_TOKENIZE_CHARS:
        return await asyncio.to_thread(tokenize, *args)
    return tokenize(*args)
