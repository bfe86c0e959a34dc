"""The twin's engine metrics beyond vLLM's basic ones, after real requests over 127.0.0.1: TensorRT-LLM's
(apps/twin_trtllm.py) at /prometheus/metrics, where trtllm-serve serves the trtllm_* series its collector keeps (a
vLLM twin serves none), and vLLM V1's per-request phase histograms (apps/twin_vllm.py)."""

import re

import httpx
import pytest
from conftest import serving

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.apps.twin_trtllm import TTFT_BUCKETS
from phasewise.sim.deployment import collocated

M = "Qwen/Qwen3-8B"


def value(text: str, name: str, labels: str = 'model_name="Qwen/Qwen3-8B",engine_type="trtllm"') -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    assert match, (name, labels)
    return float(match.group(1))


def test_trtllm_series_after_real_requests():
    live = LiveSim(collocated(M, "h100-sxm", engine="trtllm"), speed=50.0)
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        prompts = []
        for k in range(3):  # the same output length for each: the per-request TPOT averages by hand below
            r = http.post("/v1/completions", json={"model": M, "prompt": "word " * (30 + 20 * k), "max_tokens": 8})
            prompts.append(r.json()["usage"]["prompt_tokens"])
        text = http.get("/prometheus/metrics").text
        assert "trtllm_request_success_total" in http.get("/metrics").text
    lab = 'model_name="Qwen/Qwen3-8B",engine_type="trtllm"'
    assert value(text, "trtllm_request_success_total", lab + ',finished_reason="length"') == 3
    assert value(text, "trtllm_prompt_tokens_total") == sum(prompts)
    assert value(text, "trtllm_generation_tokens_total") == 24
    assert value(text, "trtllm_num_requests_running") == value(text, "trtllm_num_requests_waiting") == 0
    for name in ("e2e_request_latency_seconds", "time_to_first_token_seconds", "time_per_output_token_seconds",
                 "request_queue_time_seconds"):
        assert value(text, f"trtllm_{name}_count") == 3
    # one TPOT a request, (finish - first token) / 7: with equal outputs its mean is the E2E's less the TTFT's / 7
    e2e = value(text, "trtllm_e2e_request_latency_seconds_sum")
    ttft = value(text, "trtllm_time_to_first_token_seconds_sum")
    assert value(text, "trtllm_time_per_output_token_seconds_sum") == pytest.approx((e2e - ttft) / 7)
    assert len(re.findall(r"^trtllm_time_to_first_token_seconds_bucket", text, re.MULTILINE)) == len(TTFT_BUCKETS) + 1
    assert 0 <= value(text, "trtllm_kv_cache_utilization") < 1


def test_a_vllm_twin_serves_no_trtllm_series():
    live = LiveSim(collocated(M, "h100-sxm"), speed=50.0)
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post("/v1/completions", json={"model": M, "prompt": "hello", "max_tokens": 2})
        assert "trtllm_" not in http.get("/prometheus/metrics").text


def test_vllm_v1_request_phases_after_real_requests():
    """vLLM V1's per-request phase histograms (apps/twin_vllm.py): queue + prefill = TTFT and prefill + decode =
    inference, summed over the requests; prompt / generation token histograms; the inter-token latency under V1's
    name equal to time_per_output_token's."""
    from phasewise.apps.twin_vllm import one_two_five_buckets

    assert one_two_five_buckets(100) == (1, 2, 5, 10, 20, 50, 100)  # vLLM's docstring example
    live = LiveSim(collocated(M, "h100-sxm"), speed=50.0)
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        for k in range(3):
            http.post("/v1/completions", json={"model": M, "prompt": "word " * (30 + 20 * k), "max_tokens": 6})
        text = http.get("/metrics").text
    lab = 'model_name="Qwen/Qwen3-8B"'
    phase = {name: value(text, f"vllm:request_{name}_time_seconds_sum", lab)
             for name in ("queue", "prefill", "decode", "inference")}
    assert all(value(text, f"vllm:request_{name}_time_seconds_count", lab) == 3 for name in phase)
    assert phase["queue"] + phase["prefill"] == pytest.approx(value(text, "vllm:time_to_first_token_seconds_sum", lab))
    assert phase["prefill"] + phase["decode"] == pytest.approx(phase["inference"])
    e2e = value(text, "vllm:e2e_request_latency_seconds_sum", lab)
    assert phase["inference"] + phase["queue"] == pytest.approx(e2e)
    assert value(text, "vllm:request_generation_tokens_sum", lab) == 18
    assert value(text, "vllm:request_prompt_tokens_count", lab) == 3
    assert value(text, "vllm:inter_token_latency_seconds_sum", lab) == value(
        text, "vllm:time_per_output_token_seconds_sum", lab)
    assert value(text, "vllm:num_preemptions_total", lab) == 0
