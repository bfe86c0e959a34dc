"""The digital twin against the official OpenAI Python SDK, on 127.0.0.1 only."""

import asyncio
import json
import math
import re
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

from conftest import serving  # noqa: E402

from phasewise.apps.tokenizer import Tokenizer, filler  # noqa: E402
from phasewise.apps.twin import LiveSim, create_app  # noqa: E402
from phasewise.sim.deployment import collocated  # noqa: E402

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context, to exercise context_length_exceeded


@pytest.fixture(scope="module")
def server():
    live = LiveSim(collocated(M, "h100-sxm", max_num_seqs=64))
    with serving(create_app(live, M, Tokenizer())) as url:
        yield url, live


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="EMPTY", max_retries=0, timeout=30)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [M]
    assert httpx.get(server[0] + "/health").json() == {"status": "ok"}


def test_completion_non_streaming(client):
    r = client.completions.create(model=M, prompt="The quick brown fox jumps over the lazy dog.", max_tokens=7)
    # The(1) quick(2) brown(2) fox(1) jumps(2) over(1) the(1) lazy(1) dog(1) .(1): 4 characters a token
    assert r.usage.completion_tokens == 7 and r.usage.prompt_tokens == 13
    assert len(r.choices[0].text.split()) == 7 and r.choices[0].finish_reason == "length"


def test_chat_streaming_with_usage(client):
    stream = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "hello there"}],
                                            max_completion_tokens=5, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_completion_streaming_tokens_arrive_over_time(client):
    t0 = time.perf_counter()
    times = []
    for c in client.completions.create(model=M, prompt="x " * 200, max_tokens=40, stream=True):
        if c.choices and c.choices[0].text:
            times.append(time.perf_counter() - t0)
    assert len(times) == 40
    # 39 decode steps of a 7B model on an H100 take several ms each: the stream is paced, not dumped
    assert times[-1] - times[0] > 39 * 0.004


@pytest.mark.parametrize(
    "call, status, code",
    [
        (lambda c: c.completions.create(model="gpt-9", prompt="hi", max_tokens=2), 404, "model_not_found"),
        (lambda c: c.completions.create(model=M, prompt="hi", max_tokens=-4), 400, None),
        (lambda c: c.chat.completions.create(model=M, messages=[], max_tokens=2), 400, None),
        (lambda c: c.completions.create(model=M, prompt="word " * 2100, max_tokens=2), 400, "context_length_exceeded"),
        (lambda c: c.completions.create(model=M, prompt="hi", max_tokens=2, logprobs=1), 400, None),
    ],
)
def test_errors_are_openai_error_objects(client, call, status, code):
    with pytest.raises(openai.APIStatusError) as err:
        call(client)
    assert err.value.status_code == status
    body = err.value.body
    assert body["type"] == "invalid_request_error" and (code is None or body["code"] == code)


def test_invalid_json_and_missing_fields(server):
    url = server[0] + "/v1/chat/completions"
    r = httpx.post(url, content=b"{nope")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(url, json={"model": M, "messages": [{"content": "no role"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_chat_text_parts_count_and_other_parts_are_refused(server, client):
    """Content parts: text (and an assistant's refusal) counted as plain content; an image, audio or file part is a
    400 naming it (the twin does not simulate an image's tokens or its encoder), not silently dropped."""
    plain = client.chat.completions.create(model=M, messages=[{"role": "user", "content": "what is this"}],
                                           max_tokens=2)
    parts = client.chat.completions.create(model=M, max_tokens=2, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what is this"}]}])
    assert parts.usage.prompt_tokens == plain.usage.prompt_tokens
    url = server[0] + "/v1/chat/completions"
    for part in ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                 {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, "just a string"):
        r = httpx.post(url, json={"model": M, "max_tokens": 2, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this"}, part]}]})
        error = r.json()["error"]
        assert r.status_code == 400 and error["param"] == "messages"
        assert error["message"].startswith("messages[0].content[1]: a part of type ")
        assert "is not simulated (allowed: text, refusal" in error["message"]


def test_load_raises_ttft(server):
    async def ttft(session, prompt_words, first_word="w"):
        # each prompt its own first word: no prefix shared (48 equal prompts would hit the first one's cached blocks and
        # skip their prefills, and only the twin's own CPU time per request would queue them)
        t0 = time.perf_counter()
        body = {"model": M, "prompt": f"{first_word} " + "w " * (prompt_words - 1), "max_tokens": 8, "stream": True}
        async with session.stream("POST", server[0] + "/v1/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    return time.perf_counter() - t0

    async def run():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as s:
            alone = await ttft(s, 1500)
            loaded = await asyncio.gather(*(ttft(s, 1500, f"q{i}") for i in range(48)))
            return alone, sorted(loaded)

    alone, loaded = asyncio.run(run())
    assert loaded[len(loaded) // 2] > 3 * alone  # queued behind each other's prefills


def _metric(base: str, name: str) -> float | None:
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _leave_mid_stream(base: str, n: int = 1) -> None:
    with httpx.stream("POST", base + "/v1/completions",
                      json={"model": M, "prompt": "hi", "max_tokens": 1500, "stream": True, "n": n}, timeout=30) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen += 1
            if seen == 3:
                break


def _leave_before_the_answer(base: str, n: int = 1) -> None:
    with pytest.raises(httpx.TimeoutException):  # 1,500 tokens take ~10 s here; the client waits 0.5 s
        httpx.post(base + "/v1/completions", json={"model": M, "prompt": "hi", "max_tokens": 1500, "n": n},
                   timeout=0.5)


@pytest.mark.parametrize("leave", [_leave_mid_stream, _leave_before_the_answer], ids=["streaming", "non-streaming"])
@pytest.mark.parametrize("choices", [1, 3])
def test_disconnect_cancels_in_the_simulation(server, leave, choices):
    """A client that leaves frees its seat and KV at once (as vLLM aborts it), streaming or not, every choice of
    it: a non-streaming one used to run to every token it asked for."""
    base, live = server
    before = _metric(base, "phasewise:requests_cancelled_total")
    leave(base, choices)
    for _ in range(100):
        if (_metric(base, "phasewise:requests_cancelled_total") >= before + choices
                and _metric(base, "vllm:num_requests_running") == 0):
            break
        time.sleep(0.05)
    assert _metric(base, "phasewise:requests_cancelled_total") == before + choices
    assert _metric(base, "vllm:num_requests_running") == 0
    assert all(inst.kv.used == 0 for inst in live.instances)  # its KV blocks were freed


FOX = "The quick brown fox jumps over the lazy dog."  # 13 prompt tokens (test_completion_non_streaming)
HISTOGRAMS = ("vllm:time_to_first_token_seconds", "vllm:time_per_output_token_seconds",
              "vllm:e2e_request_latency_seconds")


def samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}; every other line must be a # comment."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        assert re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\}', key), line
        out[key] = float(value)
    return out


def test_metrics_exposition(server):
    base = server[0]
    before = samples(httpx.get(base + "/metrics").text)
    r = httpx.post(base + "/v1/completions", json={"model": M, "prompt": FOX, "max_tokens": 5}, timeout=30)
    assert r.status_code == 200
    after = samples(httpx.get(base + "/metrics").text)
    lab = f'{{model_name="{M}"}}'
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc"):
        assert name + lab in after

    def delta(name: str) -> float:
        return after[name + lab] - before[name + lab]

    # One finished request of 13 prompt and 5 output tokens: 1 TTFT sample, 4 inter-token samples.
    assert delta("vllm:prompt_tokens_total") == 13 and delta("vllm:generation_tokens_total") == 5
    length = "vllm:request_success_total" + lab[:-1] + ',finished_reason="length"}'
    assert after[length] - before[length] == 1  # vLLM V1's series, by finished_reason only
    assert "vllm:request_success_total" + lab not in after
    assert delta("vllm:time_to_first_token_seconds_count") == 1
    assert delta("vllm:time_per_output_token_seconds_count") == 4
    assert delta("vllm:e2e_request_latency_seconds_count") == 1
    assert delta("vllm:e2e_request_latency_seconds_sum") >= delta("vllm:time_to_first_token_seconds_sum") > 0
    for h in HISTOGRAMS:  # buckets are cumulative, in increasing `le`, ending at +Inf = _count
        buckets = [(float(re.search(r'le="([^"]+)"', k)[1]), v) for k, v in after.items()
                   if k.startswith(h + "_bucket{")]
        assert [le for le, _ in buckets] == sorted(le for le, _ in buckets)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert buckets[-1] == (math.inf, after[h + "_count" + lab])


def sse_payloads(base: str, path: str, body: dict) -> list[str]:
    """The `data:` payloads of one streamed response, read as raw SSE (no SDK to smooth them over)."""
    with httpx.stream("POST", base + path, json=body, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    assert all(line == "" or line.startswith("data: ") for line in lines)
    return [line.removeprefix("data: ") for line in lines if line]


@pytest.mark.parametrize("chat", [False, True])
def test_raw_sse_chunks_follow_the_openai_stream_schema(server, chat):
    n = 6
    if chat:
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": FOX}], "max_tokens": n}
    else:
        path, body = "/v1/completions", {"prompt": FOX, "max_tokens": n}
    body["model"] = M
    plain = httpx.post(server[0] + path, json=body, timeout=30).json()
    payloads = sse_payloads(server[0], path, body | {"stream": True, "stream_options": {"include_usage": True}})
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]  # every payload before [DONE] is one JSON object
    assert {c["object"] for c in chunks} == {"chat.completion.chunk" if chat else "text_completion"}
    assert {c["model"] for c in chunks} == {M} and len({c["created"] for c in chunks}) == 1
    (rid,) = {c["id"] for c in chunks}  # one id for the whole stream, new for each request
    assert rid.startswith("chatcmpl-" if chat else "cmpl-") and rid != plain["id"]

    *content, last, usage = chunks
    choices = [c["choices"][0] for c in content]
    texts = [ch["delta"]["content"] if chat else ch["text"] for ch in choices]
    assert len(content) == n and all(len(t.split()) == 1 for t in texts)  # one token a chunk
    assert "".join(texts) == filler(0, n)
    assert all(ch["index"] == 0 and ch["finish_reason"] is None for ch in choices)
    if chat:  # the role comes once, on the first chunk
        assert [ch["delta"].get("role") for ch in choices] == ["assistant"] + [None] * (n - 1)
        assert plain["choices"][0]["message"]["content"] == "".join(texts)
    else:
        assert plain["choices"][0]["text"] == "".join(texts)
    assert last["choices"][0]["finish_reason"] == "length"
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]
    u = usage["usage"]
    assert u["completion_tokens"] == n and u["total_tokens"] == u["prompt_tokens"] + n
    if chat:
        assert u["prompt_tokens"] > 13  # the chat template adds tokens around the message
    else:
        assert u["prompt_tokens"] == 13


def test_disaggregated_twin_streams_every_token_after_the_decode_side_takes_over():
    """Disaggregated: the first token reaches the client with the decode instance's first step (after the KV
    transfer and the engine's hand-off), then every other token; none is lost or doubled."""
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": M, "instances": [{"role": "prefill", "hardware": "h100-sxm", "engine": "sglang"},
                                                      {"role": "decode", "hardware": "h100-sxm"}]})
    live = LiveSim(dep)
    with serving(create_app(live, M, Tokenizer())) as url:
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="EMPTY", max_retries=0, timeout=30)
        t0 = time.perf_counter()
        stream = sdk.completions.create(model=M, prompt=filler(0, 1000), max_tokens=6, stream=True,
                                        stream_options={"include_usage": True})
        first = None
        text = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                first = first if first is not None else time.perf_counter() - t0
                text += chunk.choices[0].text
        assert len(text.split()) == 6
        assert first is not None and first >= 0.18  # SGLang's prefill-side hand-off (engines.yaml) is in it


def test_n_null_is_the_default_and_a_chat_context_error_counts_the_output_asked_for(server):
    """OpenAI's n may be null (its default, 1); a chat request too long for the context names the output tokens it
    asked for, not them plus the chat template's tokens."""
    url = server[0] + "/v1/chat/completions"
    ok = httpx.post(url, json={"model": M, "n": None, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200
    for n in (0, 1.5, 2000):  # (true is 1, as vLLM's pydantic model reads it)
        bad = httpx.post(url, json={"model": M, "n": n, "messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"
    long = httpx.post(url, json={"model": M, "max_tokens": 5000, "messages": [{"role": "user", "content": "hi"}]})
    assert long.status_code == 400 and " and 5000 output tokens" in long.json()["error"]["message"]
    both = httpx.post(url, json={"model": M, "max_completion_tokens": 2, "max_tokens": "x",
                                 "messages": [{"role": "user", "content": "hi"}]})
    assert both.status_code == 400 and both.json()["error"]["param"] == "max_tokens"
