"""The digital twin against the official OpenAI Python SDK, on 127.0.0.1 only."""

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

from phasewise.apps.tokenizer import Tokenizer  # noqa: E402
from phasewise.apps.twin import LiveSim, create_app  # noqa: E402
from phasewise.sim.deployment import collocated  # noqa: E402

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context, to exercise context_length_exceeded


@pytest.fixture(scope="module")
def server():
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    live = LiveSim(collocated(M, "h100-sxm", max_batch=64))
    config = uvicorn.Config(create_app(live, M, Tokenizer()), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", live
    srv.should_exit = True
    thread.join(timeout=10)


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
        (lambda c: c.completions.create(model=M, prompt="hi", max_tokens=2, n=3), 400, None),
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


def test_load_raises_ttft(server):
    async def ttft(session, prompt_words):
        t0 = time.perf_counter()
        async with session.stream("POST", server[0] + "/v1/completions",
                                  json={"model": M, "prompt": "w " * prompt_words, "max_tokens": 8, "stream": True}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    return time.perf_counter() - t0

    async def run():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as s:
            alone = await ttft(s, 1500)
            loaded = await asyncio.gather(*(ttft(s, 1500) for _ in range(48)))
            return alone, sorted(loaded)

    alone, loaded = asyncio.run(run())
    assert loaded[len(loaded) // 2] > 3 * alone  # queued behind each other's prefills


def test_disconnect_cancels_in_the_simulation(server):
    base, live = server

    def metric(name):
        for line in httpx.get(base + "/metrics").text.splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])

    before = metric("phasewise:requests_cancelled_total")
    with httpx.stream("POST", base + "/v1/completions",
                      json={"model": M, "prompt": "hi", "max_tokens": 1500, "stream": True}, timeout=30) as r:
        seen = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                seen += 1
            if seen == 3:
                break
    for _ in range(100):
        if metric("phasewise:requests_cancelled_total") > before and metric("vllm:num_requests_running") == 0:
            break
        time.sleep(0.05)
    assert metric("phasewise:requests_cancelled_total") == before + 1
    assert metric("vllm:num_requests_running") == 0
    assert all(inst.kv.used == 0 for inst in live.instances)  # its KV blocks were freed


def test_metrics_exposition(server):
    text = httpx.get(server[0] + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:time_per_output_token_seconds_count",
                 "vllm:generation_tokens_total"):
        assert name in text
    assert json.loads(json.dumps(text))  # plain text, one sample per line
