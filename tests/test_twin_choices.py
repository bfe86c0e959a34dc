"""The twin's request surface beyond one prompt and one choice, as vLLM's OpenAI server answers it: n choices and
batched prompts (streaming and not), usage options, sampling parameters checked, what it cannot answer refused by
name, a chat's default output within the context, and CORS. 127.0.0.1 only."""

import json

import httpx
import pytest
from conftest import serving

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.sim.deployment import collocated

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context
CHAT = {"model": M, "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def url():
    live = LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=50.0)
    with serving(create_app(live, M, Tokenizer())) as base:
        yield base


def _events(base: str, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", base + path, json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_n_chat_choices_each_whole_and_the_prompt_counted_once(url):
    one = httpx.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 4}).json()
    three = httpx.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 4, "n": 3}).json()
    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert all(len(c["message"]["content"].split()) == 4 and c["finish_reason"] == "length" for c in three["choices"])
    assert three["usage"]["prompt_tokens"] == one["usage"]["prompt_tokens"]  # once, however many choices
    assert three["usage"]["completion_tokens"] == 12


@pytest.mark.parametrize("prompt, tokens", [
    (["one two three", "four"], [Tokenizer().count_and_blocks(t, 16)[0] for t in ("one two three", "four")]),
    ([[1, 2, 3, 4, 5], [6, 7]], [5, 2]),
    ([[1, 2, 3]], [3]),  # one pre-tokenized prompt in a batch, as lm-evaluation-harness sends it
])
def test_a_batch_of_prompts_answers_each_prompt_n_times_in_prompt_major_order(url, prompt, tokens):
    r = httpx.post(url + "/v1/completions", json={"model": M, "prompt": prompt, "max_tokens": 3, "n": 2}).json()
    assert [c["index"] for c in r["choices"]] == list(range(2 * len(tokens)))
    assert all(len(c["text"].split()) == 3 for c in r["choices"])
    assert r["usage"] == {"prompt_tokens": sum(tokens), "completion_tokens": 6 * len(tokens),
                          "total_tokens": sum(tokens) + 6 * len(tokens)}


@pytest.mark.parametrize("chat", [True, False])
def test_streamed_choices_interleave_each_with_its_role_finish_and_running_usage(url, chat):
    body = ({**CHAT} if chat else {"model": M, "prompt": ["a b", "c"]}) | {
        "max_tokens": 5, "n": 2, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    events = _events(url, "/v1/chat/completions" if chat else "/v1/completions", body)
    *chunks, last = events
    indices = sorted({c["choices"][0]["index"] for c in chunks})
    assert indices == list(range(2 if chat else 4))
    for index in indices:
        mine = [c for c in chunks if c["choices"][0]["index"] == index]
        key = "delta" if chat else "text"
        texts = [(c["choices"][0][key].get("content", "") if chat else c["choices"][0][key]) or "" for c in mine]
        assert len("".join(texts).split()) == 5
        assert [c["choices"][0]["finish_reason"] for c in mine] == [None] * (len(mine) - 1) + ["length"]
        if chat:
            assert mine[0]["choices"][0]["delta"]["role"] == "assistant"
            assert all("role" not in c["choices"][0]["delta"] for c in mine[1:])
        # vLLM's continuous usage: the choice's own output so far, in every chunk
        assert [c["usage"]["completion_tokens"] for c in mine] == sorted(c["usage"]["completion_tokens"] for c in mine)
        assert mine[-1]["usage"]["completion_tokens"] == 5
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5 * len(indices)


def test_stream_null_is_false_and_stream_options_need_a_stream(url):
    r = httpx.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 2, "stream": None})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    r = httpx.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 2,
                                                       "stream_options": {"include_usage": True}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


@pytest.mark.parametrize("path, fields, param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 2}, "logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/completions", {"logprobs": 0}, "logprobs"),
    ("/v1/completions", {"echo": True}, "echo"),
    ("/v1/completions", {"best_of": 3}, "best_of"),
    ("/v1/completions", {"prompt_logprobs": 1}, "prompt_logprobs"),
    ("/v1/chat/completions", {"temperature": "hot"}, "temperature"),
    ("/v1/chat/completions", {"temperature": -0.5}, "temperature"),
    ("/v1/completions", {"top_p": 0}, "top_p"),
    ("/v1/completions", {"top_k": -2}, "top_k"),
    ("/v1/completions", {"presence_penalty": 3}, "presence_penalty"),
    ("/v1/completions", {"stop": [1]}, "stop"),
    ("/v1/completions", {"seed": 1.5}, "seed"),
    ("/v1/completions", {"ignore_eos": "maybe"}, "ignore_eos"),  # ("yes" is true, as vLLM reads it)
    ("/v1/completions", {"min_tokens": 9}, "min_tokens"),  # more than max_tokens
    ("/v1/completions", {"prompt": [["a"]]}, "prompt"),
    ("/v1/completions", {"prompt": ["a", [1]]}, "prompt"),
    ("/v1/completions", {"prompt": ["a"] * 600, "n": 2}, "n"),  # 1,200 choices: beyond the twin's bound
])
def test_what_the_twin_cannot_answer_or_vllm_refuses_is_a_400_naming_the_field(url, path, fields, param):
    base = {"model": M, "prompt": "hi"} if path == "/v1/completions" else dict(CHAT)
    r = httpx.post(url + path, json={**base, "max_tokens": 4, **fields})
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_valid_sampling_parameters_are_taken(url):
    fields = {"temperature": 0.7, "top_p": 0.9, "top_k": -1, "min_p": 0.05, "seed": 7, "stop": ["\n"],
              "stop_token_ids": [2], "ignore_eos": True, "min_tokens": 4, "presence_penalty": 0.5,
              "frequency_penalty": -0.5, "repetition_penalty": 1.1, "logprobs": None, "echo": False, "best_of": 1}
    r = httpx.post(url + "/v1/completions", json={"model": M, "prompt": "hi", "max_tokens": 4, **fields})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


def test_a_chat_without_max_tokens_gets_what_the_context_leaves(url):
    """vicuna's 2,048-token context: a chat prompt of ~2,000 tokens asks for nothing and is answered within the
    context (the 256-token default would not fit); a prompt alone past the context names messages."""
    near = {"model": M, "messages": [{"role": "user", "content": "word " * 1990}]}
    r = httpx.post(url + "/v1/chat/completions", json=near)
    assert r.status_code == 200, r.text
    used = r.json()["usage"]
    assert used["total_tokens"] == 2048 and 0 < used["completion_tokens"] < 256
    short = httpx.post(url + "/v1/chat/completions", json=CHAT).json()
    assert short["usage"]["completion_tokens"] == 256
    over = httpx.post(url + "/v1/chat/completions", json={"model": M, "messages": [{"role": "user",
                                                                                   "content": "word " * 2100}]})
    assert over.status_code == 400 and over.json()["error"]["param"] == "messages"


def test_cors_preflight_and_headers_allow_any_origin(url):
    pre = httpx.options(url + "/v1/chat/completions",
                        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "content-type,authorization"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    got = httpx.get(url + "/v1/models", headers={"Origin": "http://localhost:3000"})
    assert got.headers["access-control-allow-origin"] == "*"
