"""The twin's limits and error shapes: body size (413), requests in flight (429), a context check that refuses a
huge prompt before tokenizing it, OpenAI-shaped 404/405/422, the right `param`, vLLM V1 metric names, and a
SIGTERM that drains open streams and exits 0. 127.0.0.1 only."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from conftest import free_port, serving, wait_healthy

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.sim.deployment import collocated

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context


@pytest.fixture(scope="module")
def url():
    app = create_app(LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=0.5), M, Tokenizer(),
                     max_request_bytes=200_000, max_concurrent_requests=2)
    with serving(app) as base:
        yield base


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_a_missing_model_is_the_served_one_as_vllm_takes_it(url):
    """vLLM's request models make `model` optional (serving_engine: no name is a supported name); another name is a
    404 naming the served one."""
    for body in ({"prompt": "hi", "max_tokens": 2}, {"model": None, "prompt": "hi", "max_tokens": 2}):
        r = httpx.post(url + "/v1/completions", json=body)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    r = httpx.post(url + "/v1/completions", json={"model": "other", "prompt": "hi"})
    assert r.status_code == 404 and _error(r)["param"] == "model"


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": "word " * 3000, "max_tokens": 10}, "prompt"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 2100}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}]}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 2100},
     "max_completion_tokens"),
])
def test_the_context_error_names_what_makes_the_request_too_long(url, path, body, param):
    r = httpx.post(url + path, json={"model": M, **body})
    assert r.status_code == 400
    assert _error(r)["code"] == "context_length_exceeded" and _error(r)["param"] == param


def test_a_huge_prompt_is_refused_before_tokenizing_and_over_the_body_limit_is_413(url):
    start = time.perf_counter()
    r = httpx.post(url + "/v1/completions", json={"model": M, "prompt": "abcdefgh " * 20_000, "max_tokens": 5})
    assert r.status_code == 400 and _error(r)["code"] == "context_length_exceeded"
    assert time.perf_counter() - start < 0.5  # a 180 KB prompt: the linear-time bound refuses it
    big = httpx.post(url + "/v1/completions", json={"model": M, "prompt": "x" * 300_000})
    assert big.status_code == 413 and _error(big)["code"] == "request_too_large"


def test_wrong_method_unknown_path_and_bad_json_are_openai_errors(url):
    assert httpx.get(url + "/v1/completions").status_code == 405
    assert _error(httpx.get(url + "/v1/completions"))["type"] == "invalid_request_error"
    assert _error(httpx.get(url + "/v1/nothing"))["type"] == "not_found_error"
    bad = httpx.post(url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and _error(bad)["message"]


def test_requests_beyond_the_in_flight_limit_get_429_and_then_are_served(url):
    body = {"model": M, "prompt": "hi", "max_tokens": 200, "stream": True}
    with httpx.Client(timeout=30) as c1, httpx.Client(timeout=30) as c2:
        with c1.stream("POST", url + "/v1/completions", json=body) as s1, \
                c2.stream("POST", url + "/v1/completions", json=body) as s2:
            lines1, lines2 = s1.iter_lines(), s2.iter_lines()  # kept: a dropped iterator closes its stream
            next(lines1), next(lines2)  # both are streaming
            third = httpx.post(url + "/v1/completions", json={**body, "stream": False})
            assert third.status_code == 429 and _error(third)["type"] == "rate_limit_error"
    for _ in range(50):  # the closed streams leave the count
        r = httpx.post(url + "/v1/completions", json={"model": M, "prompt": "hi", "max_tokens": 2}, timeout=30)
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200


def test_metrics_carry_vllm_v1_names(url):
    text = httpx.get(url + "/metrics").text
    assert "vllm:kv_cache_usage_perc{" in text and "vllm:gpu_cache_usage_perc{" in text
    assert 'finished_reason="length"' in text


def test_sigterm_drains_open_streams_and_exits_zero():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "phasewise.apps.cli", "serve", "--model", M, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        chunks = []
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", timeout=30,
                          json={"model": M, "prompt": "hi", "max_tokens": 100, "stream": True}) as s:
            lines = s.iter_lines()
            chunks.append(next(lines))
            proc.send_signal(signal.SIGTERM)
            chunks.extend(line for line in lines if line)
        assert chunks[-1] == "data: [DONE]"
        assert sum(1 for c in chunks if c.startswith("data: {")) == 101  # 100 tokens + the finish chunk
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_takes_the_deployment_flags_simulate_takes(run_cli):
    code, _, err = run_cli("serve", "--model", "deepseek-ai/DeepSeek-V3", "--hardware", "h200-sxm", "--tp", "8",
                           "--decode-ep", "8", "--port", "1")
    assert code == 2 and "--decode-ep needs --arch disagg" in err
    code, _, err = run_cli("serve", "--kv-link", "carrier-pigeon", "--arch", "disagg", "--port", "1")
    assert code == 2 and "kv" in err.lower()


def test_a_prompt_the_decode_instances_cannot_hold_is_refused_before_streaming():
    """Disaggregated: the prefill instance (an H200) holds a 40k-token prompt, the decode instances (an L40S at
    half its memory) cannot: a 400 naming the decode side, not a 503 inside a stream that already started."""
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "prefill", "hardware": "h200-sxm"},
        {"role": "decode", "hardware": "l40s", "memory_fraction": 0.45}]}, "test")
    live = LiveSim(dep)
    decode = [i for i in live.instances if i.role == "decode"][0]
    assert decode.never_fits(40_000, 16) and not live.instances[0].never_fits(40_000, 16)
    with serving(create_app(live, "meta-llama/Llama-3.1-8B", Tokenizer())) as base:
        r = httpx.post(base + "/v1/completions", json={"model": "meta-llama/Llama-3.1-8B",
                                                       "prompt": "word " * 40_000, "max_tokens": 16}, timeout=30)
        assert r.status_code == 400 and _error(r)["code"] == "kv_cache_exhausted"
        assert "decode instance" in _error(r)["message"] and _error(r)["param"] == "prompt"


def test_serve_takes_the_policy_flags_and_says_what_the_twin_cannot_run(run_cli, tmp_path):
    code, _, err = run_cli("serve", "--arch", "disagg", "--attention-offload", "auto", "--port", "1")
    assert code == 2 and "No such option: --attention-offload" in err  # serve has no flag for what it cannot run
    dep = tmp_path / "offload.yaml"  # a deployment file's block: named in one line
    dep.write_text("model: meta-llama/Llama-3.1-8B\ninstances:\n  - {role: prefill, hardware: h100-sxm}\n"
                   "  - {role: decode, hardware: h100-sxm}\nattention_offload: {mode: auto}\n")
    code, _, err = run_cli("serve", "--deployment", str(dep), "--port", "1")
    assert code == 2 and "not supported by the digital twin" in err
    code, _, err = run_cli("serve", "--scheduler", "ascendra", "--replicas", "2", "--port", "1")
    assert code == 2 and "--slo-ttft-ms" in err  # priority pools steer by deadlines: serve takes them too
    from phasewise.sim import Slo
    from phasewise.sim.api import deployment_from_flags

    live = LiveSim(deployment_from_flags(scheduler="ascendra", replicas=2), slo=Slo(1000, 50))
    assert live.cluster.pools is not None
