"""The twin's NVIDIA Dynamo frontend metrics (apps/twin_dynamo.py): the frontend's bucket rule by hand, and after
real requests over 127.0.0.1 the dynamo_frontend_* series hold what a Dynamo frontend would count (started and
finished requests by endpoint, type and outcome, lengths, TTFT and ITL as its planner averages them)."""

import re
import time

import httpx
import pytest
from conftest import serving

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.apps.twin_dynamo import ITL_BUCKETS, TTFT_BUCKETS, log_buckets
from phasewise.sim.deployment import collocated

M = "Qwen/Qwen3-8B"


def test_log_buckets_follow_the_frontends_rule():
    # generate_log_buckets(1, 100, 5): 0, then 1 x 100^(i/4) for i = 1..4, two significant figures
    assert log_buckets(1.0, 100.0, 5) == (0.0, 3.2, 10.0, 32.0, 100.0)
    assert log_buckets(1.0, 100.0, 2) == (0.0, 100.0)
    assert TTFT_BUCKETS[:4] == (0.0, 0.0022, 0.0047, 0.01) and TTFT_BUCKETS[-1] == 480.0 and len(TTFT_BUCKETS) == 18
    # the ITL buckets of a frontend's real export (as a mock server of Dynamo's metrics copies them)
    assert ITL_BUCKETS == (0.0, 0.0019, 0.0035, 0.0067, 0.013, 0.024, 0.045, 0.084, 0.16, 0.3, 0.56, 1.1, 2.0)


def series(text: str, name: str) -> dict[str, float]:
    """Every sample of metric `name`: its label set (as written) -> value."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


def one(text: str, name: str) -> float:
    values = series(text, name)
    assert len(values) == 1, (name, values)
    return next(iter(values.values()))


def test_dynamo_frontend_series_after_real_requests():
    live = LiveSim(collocated(M, "h100-sxm"), speed=50.0)
    live.dynamo_namespace = "twin-ns"
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        prompts, outputs = [], []
        for k in range(2):  # two streamed chat requests, read to the end
            body = {"model": M, "messages": [{"role": "user", "content": "hello " * (20 + 10 * k)}],
                    "max_tokens": 6 + k, "stream": True, "stream_options": {"include_usage": True}}
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                usage = [line for line in response.iter_lines() if '"usage"' in line and '"prompt_tokens"' in line]
            prompts.append(int(re.search(r'"prompt_tokens": ?(\d+)', usage[-1]).group(1)))
            outputs.append(6 + k)
        r = http.post("/v1/completions", json={"model": M, "prompt": "a b c d e f g h", "max_tokens": 5}).json()
        prompts.append(r["usage"]["prompt_tokens"])
        outputs.append(5)
        text = http.get("/metrics").text
    lab = 'model="qwen/qwen3-8b",dynamo_namespace="twin-ns"'  # the served name lowercased, as Dynamo labels it
    assert series(text, "dynamo_frontend_requests_started_total") == {  # by endpoint and request type, as Dynamo
        f'{lab},endpoint="chat_completions",request_type="stream"': 2,
        f'{lab},endpoint="completions",request_type="unary"': 1}
    assert series(text, "dynamo_frontend_requests_total") == {
        f'{lab},endpoint="chat_completions",request_type="stream",status="success",error_type=""': 2,
        f'{lab},endpoint="completions",request_type="unary",status="success",error_type=""': 1}
    assert one(text, "dynamo_frontend_active_requests") == one(text, "dynamo_frontend_queued_requests") == 0
    assert one(text, "dynamo_frontend_output_tokens_total") == sum(outputs)
    assert one(text, "dynamo_frontend_input_sequence_tokens_sum") == sum(prompts)
    assert one(text, "dynamo_frontend_output_sequence_tokens_sum") == sum(outputs)
    assert one(text, "dynamo_frontend_time_to_first_token_seconds_count") == 3
    assert one(text, "dynamo_frontend_inter_token_latency_seconds_count") == sum(outputs) - 3  # one a later token
    # the planner's averages (increase(x_sum) / increase(x_count)) agree with the twin's vLLM series
    ttft = one(text, "dynamo_frontend_time_to_first_token_seconds_sum") / 3
    vllm_ttft = one(text, "vllm:time_to_first_token_seconds_sum") / one(text, "vllm:time_to_first_token_seconds_count")
    assert ttft == pytest.approx(vllm_ttft) and ttft > 0
    itl = one(text, "dynamo_frontend_inter_token_latency_seconds_sum") / (sum(outputs) - 3)
    vllm_itl = (one(text, "vllm:time_per_output_token_seconds_sum")
                / one(text, "vllm:time_per_output_token_seconds_count"))
    assert itl == pytest.approx(vllm_itl) and itl > 0
    buckets = series(text, "dynamo_frontend_time_to_first_token_seconds_bucket")
    assert f'{lab},le="+Inf"' in buckets and len(buckets) == len(TTFT_BUCKETS) + 1
    assert all("dynamo_namespace" in line for line in text.splitlines() if line.startswith("dynamo_frontend_"))


def test_a_client_that_leaves_is_a_cancelled_error():
    live = LiveSim(collocated(M, "h100-sxm"), speed=1.0)
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        body = {"model": M, "prompt": "hello " * 50, "max_tokens": 2000, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    break  # the first token is out: leave
        for _ in range(100):
            text = http.get("/metrics").text
            if series(text, "dynamo_frontend_requests_total"):
                break
            time.sleep(0.05)
    assert series(text, "dynamo_frontend_requests_total") == {
        'model="qwen/qwen3-8b",endpoint="completions",request_type="stream",status="error",error_type="cancelled"': 1}
    assert one(text, "dynamo_frontend_active_requests") == 0
    assert series(text, "dynamo_frontend_requests_started_total") == {
        'model="qwen/qwen3-8b",endpoint="completions",request_type="stream"': 1}
    assert 0 < one(text, "dynamo_frontend_output_sequence_tokens_sum") < 2000


def test_a_bad_dynamo_namespace_is_a_one_line_error(run_cli):
    code, out, err = run_cli("serve", "--dynamo-namespace", 'a"b', "--port", "1")
    assert code == 2 and "--dynamo-namespace" in err and len(err.strip().splitlines()) == 1


def test_per_worker_gauges_as_dynamos_planner_reads_them():
    """The per-worker gauges (worker_id, dp_rank, worker_type): a request's TTFT and input length under the
    prefill worker it went to, its mean inter-token latency so far under the decode worker that produced its
    tokens (the frontend's RequestTracker: (last - first token) / (tokens - 1)), each checked against the same
    request's dynamo_frontend_* histogram deltas; no load left once every request is done."""
    from phasewise.sim.deployment import disaggregated

    live = LiveSim(disaggregated(M, "h100-sxm", 1, 2), speed=10.0)
    with serving(create_app(live, M, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        before = http.get("/metrics").text
        usage = http.post("/v1/completions", json={"model": M, "prompt": "hello " * 900, "max_tokens": 12}).json()
        text = http.get("/metrics").text
    prefill, decode = 'worker_id="1",dp_rank="0",worker_type="prefill"', "worker_type=\"decode\""

    def delta(name: str) -> float:
        return one(text, name) - one(before, name)

    assert series(text, "dynamo_frontend_worker_last_time_to_first_token_seconds") == {
        prefill: pytest.approx(delta("dynamo_frontend_time_to_first_token_seconds_sum"), rel=1e-4)}
    assert series(text, "dynamo_frontend_worker_last_input_sequence_tokens") == {
        prefill: usage["usage"]["prompt_tokens"]}
    (labels, itl), = series(text, "dynamo_frontend_worker_last_inter_token_latency_seconds").items()
    assert decode in labels and labels.startswith('worker_id="') and labels != prefill
    # first to last token over the tokens after the first (the first chunk carries two here: the prefill's token
    # leaves with the first decode step, and the histogram takes gaps between chunks only)
    tokens = usage["usage"]["completion_tokens"]
    assert itl == pytest.approx(delta("dynamo_frontend_inter_token_latency_seconds_sum") / (tokens - 1), rel=1e-4)
    load = series(text, "dynamo_frontend_worker_active_prefill_tokens")
    assert set(load) == {prefill, 'worker_id="2",dp_rank="0",worker_type="decode"',
                         'worker_id="3",dp_rank="0",worker_type="decode"'} and set(load.values()) == {0}
    assert set(series(text, "dynamo_frontend_worker_active_decode_blocks").values()) == {0}


def test_active_prefill_tokens_count_the_queued_and_prefilling_prompts():
    live = LiveSim(collocated(M, "h100-sxm"))
    for prompt in (3000, 5000, 7000):  # submitted together: one prefilling, two queued
        live.submit(prompt, 10)
    text = live.prometheus(M)
    worker = 'worker_id="1",dp_rank="0",worker_type="decode"'  # a collocated worker, as Dynamo labels it
    assert series(text, "dynamo_frontend_worker_active_prefill_tokens") == {worker: 15000}
    assert series(text, "dynamo_frontend_worker_active_decode_blocks")[worker] == live.instances[0].kv.used > 0
