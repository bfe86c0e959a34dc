"""The twin under random and mutated requests to every endpoint: each answer is a success or a 4xx in OpenAI's error
shape (never a 500, never a hang), and the server still serves a good request afterwards. 127.0.0.1 only; examples
are bounded so `make test` stays fast (PHASEWISE_FUZZ_EXAMPLES=2000 runs long)."""

from __future__ import annotations

import json
import os

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from conftest import serving  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from phasewise.apps.tokenizer import Tokenizer  # noqa: E402
from phasewise.apps.twin import LiveSim, create_app  # noqa: E402
from phasewise.sim.deployment import collocated  # noqa: E402

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context
EXAMPLES = int(os.environ.get("PHASEWISE_FUZZ_EXAMPLES", "25"))
LONG = "PHASEWISE_FUZZ_EXAMPLES" in os.environ  # the long run draws new examples each time
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
GOOD = {"/v1/completions": {"model": M, "prompt": "hello there", "max_tokens": 4, "stream": True},
        "/v1/chat/completions": {"model": M, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}}


@pytest.fixture(scope="module")
def client():
    # speed 1000: a simulated second passes in a millisecond, so a valid fuzzed request is answered at once
    app = create_app(LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=1000.0), M, Tokenizer(),
                     max_request_bytes=100_000, max_concurrent_requests=64)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        yield c
        assert c.get("/health").status_code == 200  # still serving after everything below
        for path, body in GOOD.items():
            assert c.post(path, json=body).status_code == 200


def _answered(r: httpx.Response) -> None:
    """A success, or a 4xx whose body is one OpenAI error object."""
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"]), body
        assert isinstance(body["error"]["message"], str) and "\n" not in body["error"]["message"]


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)
_value = st.one_of(_json, st.sampled_from([M, "", 0, -1, 1, 2**31, 2**64, 1.5, True, None, [], {}, [1, 2, 3], [0],
                                           ["one string"], [{"role": "user", "content": [{"text": 7}]}],
                                           [{"role": "user", "content": {"a": 1}}], "word " * 3000, "\ud800"]))
_KEYS = ["model", "prompt", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options", "n",
         "logprobs", "top_logprobs", "echo", "best_of", "temperature", "top_p", "top_k", "stop", "min_tokens"]


@FUZZ
@given(path=st.sampled_from(list(GOOD)), fields=st.dictionaries(st.sampled_from(_KEYS), _value, max_size=6),
       keep=st.booleans())
@example(path="/v1/completions", fields={"model": "\n"}, keep=False)  # found by the long run: echoed line break
@example(path="/v1/chat/completions", fields={"model": "a\u2028b\x00"}, keep=True)
def test_json_bodies_with_random_fields(client, path, fields, keep):
    body = {**GOOD[path], **fields} if keep else fields
    _answered(client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}))


@FUZZ
@given(path=st.sampled_from(list(GOOD)), data=st.binary(max_size=300), cut=st.integers(0, 200),
       flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_random_and_mutated_bytes(client, path, data, cut, flips):
    good = bytearray(json.dumps(GOOD[path]).encode())
    for at, byte in flips:
        good[at % len(good)] = byte
    for raw in (data, bytes(good[:cut] if cut < len(good) else good), b"[" * 50_000, b'{"model": ' * 9_000):
        _answered(client.post(path, content=raw, headers={"content-type": "application/json"}))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
       path=st.sampled_from(["/health", "/v1/models", "/metrics", "/v1/completions", "/v1/chat/completions",
                             "/v1/embeddings", "/", "/v1/models/x"])
       | st.from_regex(r"\A/([a-z0-9._%-][a-z0-9/._%-]{0,20})?\Z"))  # not '//...': httpx refuses that itself
def test_every_path_and_method(client, method, path):
    r = client.request(method, path)
    _answered(r)
    if r.status_code == 200 and path == "/metrics":
        assert "vllm:" in r.text


@FUZZ
@given(text=st.text(max_size=200) | st.text(alphabet=" \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u2003\u3000ab", max_size=200))
def test_the_linear_time_bound_counts_what_split_counts(text):
    from phasewise.apps.tokenizer import non_space_chars

    assert non_space_chars(text) == sum(map(len, text.split()))


def test_a_prompt_beyond_every_instances_kv_cache_is_refused_up_front():
    """Llama-3.1-8B with 30 % of an H100: ~51 k tokens of KV, under its 128 k context: a 60 k-token prompt can never
    run, and is refused before it enters the simulation, naming the cache (not a 503 inside a started stream)."""
    m = "meta-llama/Llama-3.1-8B"
    app = create_app(LiveSim(collocated(m, "h100-sxm", memory_fraction=0.3), speed=1000.0), m, Tokenizer(),
                     max_request_bytes=1_000_000)
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v1/completions", json={"model": m, "prompt": "word " * 60_000, "max_tokens": 4, "stream": True})
        assert r.status_code == 400 and r.json()["error"]["code"] == "kv_cache_exhausted"
        assert r.json()["error"]["param"] == "prompt" and "KV cache" in r.json()["error"]["message"]
        assert c.post("/v1/completions", json={"model": m, "prompt": "word " * 1000, "max_tokens": 4}).status_code == 200
