"""The twin answers as vLLM's OpenAI server does where a client would see the difference, each checked against vLLM's
source: `stream_options: {}` asks for usage (StreamOptions.include_usage defaults to true) and, without a stream,
is let through (vLLM's check reads an empty object as absent); a completion's `logprobs: false` is 0 to vLLM's
int field, which asks for log-probabilities, so the twin refuses it as it refuses 0; /metrics' vLLM histograms carry
vLLM V1's buckets (vllm/v1/metrics/loggers.py); an empty completion prompt is vLLM's 400; /v1/models carries
vLLM's `root`, which `vllm bench serve` reads. 127.0.0.1 only."""

import json
import re

import httpx
import pytest
from conftest import serving

from phasewise.apps import twin
from phasewise.apps.tokenizer import Tokenizer
from phasewise.sim.deployment import collocated

M = "lmsys/vicuna-7b-v1.3"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]

# vllm/v1/metrics/loggers.py PrometheusStatLogger (v0.11, v0.12), written out here as the source lists them
VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0, 160.0, 640.0, 2560.0]
VLLM_TOKEN = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
              80.0]
VLLM_REQUEST = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                480.0, 960.0, 1920.0, 7680.0]
VLLM_BUCKETS = {"vllm:time_to_first_token_seconds": VLLM_TTFT,
                "vllm:inter_token_latency_seconds": VLLM_TOKEN,
                "vllm:time_per_output_token_seconds": VLLM_TOKEN,
                "vllm:request_time_per_output_token_seconds": VLLM_TOKEN,
                "vllm:e2e_request_latency_seconds": VLLM_REQUEST,
                "vllm:request_queue_time_seconds": VLLM_REQUEST,
                "vllm:request_prefill_time_seconds": VLLM_REQUEST,
                "vllm:request_decode_time_seconds": VLLM_REQUEST,
                "vllm:request_inference_time_seconds": VLLM_REQUEST}


@pytest.fixture(scope="module")
def url():
    live = twin.LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=50.0)
    with serving(twin.create_app(live, M, Tokenizer())) as base:
        yield base


def _body(path: str, **fields) -> dict:
    body = {"model": M, "max_tokens": 3, **fields}
    body.setdefault("messages" if path == CHAT else "prompt", USER if path == CHAT else "hi")
    return body


def _events(url: str, path: str, **fields) -> list[dict]:
    with httpx.stream("POST", url + path, json=_body(path, stream=True, **fields), timeout=30) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_empty_stream_options_ask_for_usage_as_vllms_default_include_usage_true(url, path):
    """vLLM: StreamOptions.include_usage: bool | None = True; should_include_usage reads it from the object."""
    events = _events(url, path, stream_options={})
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 3
    assert all("usage" not in e for e in events[:-1])  # not continuous: only the last chunk carries it
    # continuous_usage_stats alone: include_usage still defaults to true, so every chunk carries the usage so far
    events = _events(url, path, stream_options={"continuous_usage_stats": True})
    assert all("usage" in e for e in events) and events[-1]["usage"]["completion_tokens"] == 3
    # null or false: none (include_usage given, and falsy)
    for options in ({"include_usage": None}, {"include_usage": False, "continuous_usage_stats": True}):
        assert all("usage" not in e for e in _events(url, path, stream_options=options))


@pytest.mark.parametrize("path", [COMPLETIONS, CHAT])
def test_an_empty_stream_options_without_a_stream_is_taken_a_filled_one_refused(url, path):
    """vLLM's validate_stream_options: `data.get("stream_options") and not data.get("stream")`."""
    r = httpx.post(url + path, json=_body(path, stream_options={}), timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3, r.text
    r = httpx.post(url + path, json=_body(path, stream=False, stream_options={"include_usage": True}), timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options", r.text
    assert "stream=True" in r.json()["error"]["message"]


def test_a_completions_logprobs_false_is_refused_as_vllm_reads_it_as_0(url):
    """CompletionRequest.logprobs: int | None; pydantic reads false as 0, the sampled token's log-probability,
    which vLLM returns and the twin's filler text has not: refused by name, as 0 is."""
    for value in (False, 0, True, 2):
        r = httpx.post(url + COMPLETIONS, json=_body(COMPLETIONS, logprobs=value), timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs", (value, r.text)
        assert "log-probabilities" in r.json()["error"]["message"]
    r = httpx.post(url + COMPLETIONS, json=_body(COMPLETIONS, logprobs="false"), timeout=30)  # no integer to pydantic
    assert r.status_code == 400 and "integer" in r.json()["error"]["message"], r.text
    assert httpx.post(url + COMPLETIONS, json=_body(COMPLETIONS, logprobs=None), timeout=30).status_code == 200
    # a chat's logprobs is a bool: false asks for none
    assert httpx.post(url + CHAT, json=_body(CHAT, logprobs=False), timeout=30).status_code == 200


def test_an_empty_completion_prompt_is_vllms_400(url):
    """CompletionRequest.validate_prompt_and_prompt_embeds: an empty string is no prompt."""
    r = httpx.post(url + COMPLETIONS, json=_body(COMPLETIONS, prompt=""), timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    assert r.json()["error"]["message"] == "Either prompt or prompt_embeds must be provided and non-empty."
    assert httpx.post(url + COMPLETIONS, json=_body(COMPLETIONS, prompt=" "), timeout=30).status_code == 200


def test_models_carry_vllms_root_which_vllm_bench_serve_reads(url):
    """vllm/benchmarks/serve.py get_first_model_from_server: data[0]["id"], data[0]["root"] (its tokenizer)."""
    card = httpx.get(url + "/v1/models", timeout=30).json()["data"][0]
    assert card["id"] == M and card["root"] == M and card["parent"] is None


def test_vllm_histograms_carry_vllm_v1_buckets():
    """Every vLLM histogram the twin serves has vLLM V1's `le` list; a 100 s TTFT and a 30 s gap fall in a finite
    bucket (160 s, 40 s), as on vLLM, not only in +Inf."""
    live = twin.LiveSim(collocated(M, "h100-sxm"))
    live.metrics.ttft.observe(100.0)
    live.metrics.step_itl.observe(30.0)
    live.metrics.e2e.observe(1000.0)
    text = live.prometheus(M)
    for name, buckets in VLLM_BUCKETS.items():
        les = re.findall(rf'^{re.escape(name)}_bucket{{[^}}]*le="([^"]+)"}}', text, re.MULTILINE)
        assert les == [str(b) for b in buckets] + ["+Inf"], name
    lab = f'model_name="{M}"'
    assert f'vllm:time_to_first_token_seconds_bucket{{{lab},le="160.0"}} 1' in text
    assert f'vllm:time_to_first_token_seconds_bucket{{{lab},le="80.0"}} 0' in text
    assert f'vllm:inter_token_latency_seconds_bucket{{{lab},le="40.0"}} 1' in text
    assert f'vllm:e2e_request_latency_seconds_bucket{{{lab},le="1920.0"}} 1' in text
    assert "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds." in text


def test_a_completions_explicit_null_max_tokens_is_a_chats_default_not_16(url):
    """vLLM's CompletionRequest.max_tokens is `int | None = 16`: left out 16, an explicit null generates to the end
    of the context, which the twin, with no end-of-sequence, answers as a chat without max_tokens (256 here, or
    what the context leaves); min_tokens above it raises it, as for a chat."""
    def completion_tokens(**fields) -> int:
        body = {"model": M, "prompt": "hi", **fields}
        r = httpx.post(url + COMPLETIONS, json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["usage"]["completion_tokens"]

    assert completion_tokens() == 16
    assert completion_tokens(max_tokens=None) == 256
    assert completion_tokens(max_tokens=None, min_tokens=300) == 300
    # vicuna-7b's 2,048-token context: a 2,000-token prompt (token ids) leaves 48
    r = httpx.post(url + COMPLETIONS, json={"model": M, "prompt": [1] * 2000, "max_tokens": None}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 48, r.text
