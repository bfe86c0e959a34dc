"""Pins for the twin-admission mutants of mutation round 4 that the twin's wider tests left alive: each test names
the mutant (T3 ...) it kills and the vLLM OpenAI-server behaviour (or the twin's documented rule) it holds to. The
admission is called directly on a stand-in simulation (no server, no model load): only the fields
RequestAdmission reads."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin_admission import RequestAdmission
from phasewise.apps.twin_request import ApiError
from phasewise.specs.vision import ImageGeometry

IMAGE = ImageGeometry(patches=64, prompt_tokens=20, resized_px=(64, 64))  # one image's encoder patches and tokens


def _admission(context_tokens: int = 128, vocab_size: int = 1000, default_chat_tokens: int = 16,
               max_request_bytes: int = 1000, tokenizer: Tokenizer | None = None) -> RequestAdmission:
    """A RequestAdmission over a stand-in LiveSim: a model of `context_tokens` and `vocab_size` with a vision
    encoder whose every image is IMAGE, 4-token prefix blocks, no instances, and submit() handing back its
    arguments (tokens, max_tokens, ...)."""
    model = SimpleNamespace(max_position_embeddings=context_tokens, vocab_size=vocab_size, vision=object(),
                            image_geometry=lambda width_px, height_px: IMAGE)
    live = SimpleNamespace(model=model, cluster=SimpleNamespace(prefix_block_tokens=4), instances=[],
                           http_request=lambda *args: None, submit=lambda *args, **kwargs: args)
    return RequestAdmission(live, "m", tokenizer or Tokenizer(), default_chat_tokens, max_request_bytes, (64, 64))


def _chat(*texts: str, image: bool = False, **fields) -> dict:
    content = [{"type": "text", "text": t} for t in texts[-1:]]
    if image:
        content.append({"type": "image_url", "image_url": {"url": "http://example.invalid/cat.png"}})
    msgs = [{"role": "user", "content": t} for t in texts[:-1]] + [{"role": "user", "content": content}]
    return {"messages": msgs, **fields}


def _text_tokens(*texts: str) -> int:
    return Tokenizer().count("\n".join(texts))


# --- the chat template's tokens and an image's (T3, T13, T7) ---------------------------------------------------------

def test_a_chats_template_adds_4_tokens_a_message_and_3_priming_the_reply():
    """T3 (`4 * len(text) + 3` -> `3 * ...`). The twin counts a chat template as OpenAI's cookbook counts
    (num_tokens_from_messages, gpt-3.5-turbo-0301: 4 tokens a message, `<|start|>{role}\\n{content}<|end|>\\n`, and
    3 priming the reply): two messages are their text's tokens + 11."""
    prompt = asyncio.run(_admission().chat_prompt(_chat("hello there", "general kenobi", max_tokens=2)))
    assert prompt.tokens == _text_tokens("hello there", "general kenobi") + 4 * 2 + 3


def test_an_image_part_adds_its_images_prompt_tokens():
    """T13 (`overhead += sum(image.prompt_tokens ...)` -> `+= 0`). README, the twin: for a model with a vision
    encoder "an image_url part adds its image's prompt tokens"; a 20-token image on one message of text is the
    text's tokens + 4 + 3 + 20, and the image's tokens are handed to the simulation too."""
    prompt = asyncio.run(_admission().chat_prompt(_chat("describe this picture", image=True, max_tokens=2)))
    assert prompt.tokens == _text_tokens("describe this picture") + 4 + 3 + IMAGE.prompt_tokens
    assert (prompt.image_patches, prompt.image_tokens) == ((IMAGE.patches,), (IMAGE.prompt_tokens,))


def test_a_prompt_with_an_image_shares_no_prefix():
    """T7 (the `if images: blocks = None` lines deleted). twin_admission.py: an image's pixels are not hashed, so a
    prompt holding one shares no prefix (two prompts with the same text and different images must not hit each
    other's cache); the same text without the image does have its blocks' hashes."""
    text = "one two three four five six seven eight nine ten eleven twelve"
    plain = asyncio.run(_admission().chat_prompt(_chat(text, max_tokens=2)))
    assert plain.blocks  # the text alone fills whole 4-token blocks
    assert asyncio.run(_admission().chat_prompt(_chat(text, image=True, max_tokens=2))).blocks is None


# --- the output asked for (T14, T4, T8, T11, T12) ---------------------------------------------------------------------

def test_max_completion_tokens_wins_over_max_tokens():
    """T14 (`named[0] or named[1]` -> `named[1] or named[0]`). vLLM's ChatCompletionRequest.to_sampling_params:
    `max_tokens = self.max_completion_tokens or self.max_tokens` (OpenAI's current name wins): both given, 5 and 7,
    the chat asks 5."""
    prompt = asyncio.run(_admission().chat_prompt(_chat("hi", max_completion_tokens=5, max_tokens=7)))
    assert prompt.max_tokens == 5


def test_a_chat_without_max_tokens_gets_at_most_what_the_context_leaves():
    """T4 (`min(tokens, context_tokens - prompt_tokens)` -> `tokens`). README, the twin: "a chat without either gets
    256 tokens or what the context leaves after its prompt, whichever is fewer": at a 128-token context a 100-token
    prompt gets 28."""
    admission = _admission(default_chat_tokens=256)
    assert admission.default_output(100, 0) == 28
    assert admission.default_output(100, 0) + 100 == admission.context_tokens


def test_a_chat_without_max_tokens_generates_at_least_min_tokens():
    """T8 (`max(default_chat_tokens, least)` -> `default_chat_tokens`). vLLM's SamplingParams refuses only
    min_tokens > max_tokens, and a chat without max_tokens has the rest of the context (README, the twin), so
    min_tokens 50 above a 16-token default is honoured: 50 tokens."""
    admission = _admission(default_chat_tokens=16)
    assert admission.default_output(10, 50) == 50
    assert asyncio.run(admission.chat_prompt(_chat("hi", min_tokens=50))).max_tokens == 50


def test_a_completion_without_max_tokens_gets_vllms_default_of_16():
    """T11 (the 16 default -> None). vLLM's CompletionRequest `max_tokens: int | None = 16`, and README, the twin:
    "(left out, vLLM's default of 16)"; only an explicit null gets the chat's rule (here 256 within the context)."""
    admission = _admission(context_tokens=2048, default_chat_tokens=256)
    left_out = asyncio.run(admission.submit({"prompt": "hello"}, chat=False))[0]
    null = asyncio.run(admission.submit({"prompt": "hello", "max_tokens": None}, chat=False))[0]
    assert [args[1] for args in left_out] == [16]  # LiveSim.submit(tokens, max_tokens, ...)
    assert [args[1] for args in null] == [256]


def test_min_tokens_equal_to_max_tokens_is_served_and_one_more_refused():
    """T12 (`least > max_tokens` -> `>=`). vLLM's SamplingParams._verify_args: "min_tokens must be less than or equal
    to max_tokens": 4 and 4 is served, 5 and 4 a 400 naming min_tokens."""
    admission = _admission()
    streams = asyncio.run(admission.submit({"prompt": "hello", "max_tokens": 4, "min_tokens": 4}, chat=False))[0]
    assert [args[1] for args in streams] == [4]
    with pytest.raises(ApiError) as refused:
        asyncio.run(admission.submit({"prompt": "hello", "max_tokens": 4, "min_tokens": 5}, chat=False))
    assert (refused.value.status, refused.value.param) == (400, "min_tokens")


# --- token ids, body size, the bound before tokenizing (T5, T9, T15) -------------------------------------------------

def test_the_last_token_id_is_in_the_vocabulary_and_the_vocab_size_is_not():
    """T5 (`0 <= t < vocab_size` -> `<=`). vLLM's input processor refuses an id above the tokenizer's largest
    ("Token id ... is out of vocabulary"): of a 1,000-token vocabulary 999 is a prompt, 1000 a 400 naming prompt."""
    admission = _admission(vocab_size=1000)
    assert asyncio.run(admission.completion_prompt([0, 999], 4)).tokens == 2
    with pytest.raises(ApiError, match=r"Token id 1000 is out of vocabulary \(0 to 999\)") as refused:
        asyncio.run(admission.completion_prompt([0, 1000], 4))
    assert (refused.value.status, refused.value.param) == (400, "prompt")


class _Request:
    """What parse() reads of a Starlette request: its headers and its body in chunks."""

    def __init__(self, raw: bytes) -> None:
        self.headers = {"content-length": str(len(raw))}
        self._raw = raw

    async def stream(self):
        yield self._raw


def test_a_body_of_exactly_max_request_bytes_is_read_and_one_more_byte_is_413():
    """T9 (`int(declared) > max_request_bytes` -> `>=`). README, the twin: "413 beyond `--max-request-bytes`": a
    body of exactly the limit, declared in its Content-Length, is read; one byte more is refused unread."""
    admission = _admission(max_request_bytes=100)
    raw = json.dumps({"prompt": "x"}).encode()
    raw = raw[:-1] + b" " * (100 - len(raw)) + b"}"
    assert len(raw) == 100
    assert asyncio.run(admission.parse(_Request(raw))) == {"prompt": "x"}
    with pytest.raises(ApiError) as refused:
        asyncio.run(admission.parse(_Request(raw + b" ")))
    assert (refused.value.status, refused.value.code) == (413, "request_too_large")


class _NeverTokenizes(Tokenizer):
    def count_and_blocks(self, text: str, block_tokens: int) -> tuple[int, tuple[int, ...]]:
        raise AssertionError("tokenized a prompt the linear-time bound already refuses")


def test_a_chat_whose_template_tokens_overflow_the_context_is_refused_before_tokenizing():
    """T15 (the bound's `+ overhead` dropped). README, the twin: "A too-long prompt is refused from a linear-time
    bound before it is tokenized"; a chat's template tokens count in that bound: 30 messages of "hi" are at least
    15 text + 123 template tokens, over a 128-token context before any tokenizing."""
    admission = _admission(context_tokens=128, tokenizer=_NeverTokenizes())
    with pytest.raises(ApiError, match=r"the request has at least 138 prompt and 1 output tokens") as refused:
        asyncio.run(admission.chat_prompt(_chat(*["hi"] * 30, max_completion_tokens=1)))
    assert (refused.value.param, refused.value.code) == ("messages", "context_length_exceeded")


def test_a_prompt_over_the_context_is_blamed_whatever_max_tokens_asks():
    """A 3,000-token completion prompt against a 2,048-token context, with max_tokens 1,500 or 1: vLLM counts the
    prompt and blames it ("you requested ... tokens (3000 in the messages ...)"); the twin's linear-time bound (750
    tokens) is under the context, so it says nothing certain of the prompt: the exact count decides, both times the
    prompt (it had blamed max_tokens at 1,500, then the prompt once the client lowered it)."""
    admission = _admission(context_tokens=2048)
    for max_tokens in (1500, 1):
        with pytest.raises(ApiError) as refused:
            asyncio.run(admission.completion_prompt("a " * 3000, max_tokens))
        assert refused.value.param == "prompt"
        assert "3000 prompt" in refused.value.message
