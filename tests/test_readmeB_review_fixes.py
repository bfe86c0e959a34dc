"""Review fixes (the twin's README claims): bench_twin_prompts.py serves its long prompts on TensorRT-LLM (chunked
prefill on); the running / waiting gauges count a request mid chunked prefill as each engine does; Dynamo's frontend
counts an HTTP request once (requests_started_total with its endpoint and request_type labels, requests_total, the
active and queued gauges, the request duration), whatever its prompts x n choices; its integer gauges are exact;
an engine that runs no torch.compile reports no compile cache."""

from __future__ import annotations

import json
import re

import httpx
from conftest import load_benchmark, serving

from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import LiveSim, create_app
from phasewise.apps.twin_dynamo import DynamoFrontendMetrics
from phasewise.perf.estimate import estimate
from phasewise.perf.startup import startup_estimate
from phasewise.sim.deployment import collocated
from phasewise.specs.engines import resolve_engine

LLAMA = "meta-llama/Llama-3.1-8B"


def series(text: str, name: str) -> dict[str, str]:
    """Every sample of metric `name`: its label set (as written) -> its value as written."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def test_bench_twin_prompts_serves_32k_prompts_on_trtllm():
    """The benchmark's TensorRT-LLM deployment chunks its prefill (trtllm-serve refuses a prompt beyond
    max_num_tokens with chunking off, its default), so its 32,003-token prompts are served, not a 400."""
    bench = load_benchmark("bench_twin_prompts")
    assert bench.long_prompt_knobs("trtllm") == {"enable_chunked_prefill": True}
    assert bench.long_prompt_knobs("vllm") == bench.long_prompt_knobs("sglang") == {}
    served = LiveSim(collocated(LLAMA, "h100-sxm", engine="trtllm", **bench.long_prompt_knobs("trtllm")))
    assert served.instances[0].scheduler.refusal(32_003) is None
    unchunked = LiveSim(collocated(LLAMA, "h100-sxm", engine="trtllm"))
    assert unchunked.instances[0].scheduler.refusal(32_003) == "beyond_token_budget"  # what the bench hit before


def _mid_prefill(engine: str, **knobs) -> LiveSim:
    """One 30,000-token prompt a few ms into its chunked prefill (the simulation advanced without the pump)."""
    live = LiveSim(collocated(LLAMA, "h100-sxm", engine=engine, **knobs))
    live.submit(30_000, 4)
    inst, t = live.instances[0], 0.0
    while not inst.prefilling and t < 5.0:
        t += 0.001
        live.loop.run_until(t)
    assert inst.prefilling and inst.prefilling[0].prefilled < 30_000 and not inst.waiting and not inst.running.n
    return live


def test_a_partial_prefill_is_running_on_vllm_and_trtllm_and_in_neither_gauge_on_sglang():
    vllm = _mid_prefill("vllm")
    assert (vllm.gauges()["running"], vllm.gauges()["waiting"]) == (1, 0)  # V1: running holds partial prefills
    text = vllm.prometheus(LLAMA)
    assert series(text, "vllm:num_requests_running") == {f'model_name="{LLAMA}"': "1"}
    assert series(text, "vllm:num_requests_waiting") == {f'model_name="{LLAMA}"': "0"}
    trt = _mid_prefill("trtllm", enable_chunked_prefill=True)  # numActiveRequests: chunked contexts included
    trt_text = trt.prometheus(LLAMA)
    lab = f'model_name="{LLAMA}",engine_type="trtllm"'
    assert series(trt_text, "trtllm_num_requests_running") == {lab: "1"}
    assert series(trt_text, "trtllm_num_requests_waiting") == {lab: "0"}
    sglang = _mid_prefill("sglang")  # the chunked req: out of waiting_queue, not yet in running_batch
    sg_text = sglang.prometheus(LLAMA)
    assert series(sg_text, "sglang:num_running_reqs") == series(sg_text, "sglang:num_queue_reqs") == {
        f'model_name="{LLAMA}"': "0"}


def test_dynamo_counts_an_http_request_once_whatever_its_choices():
    """A streamed batch of 2 prompts x n 2 (4 choices) and a unary chat: two HTTP requests as Dynamo's frontend
    counts them (one InflightGuard a handler entry): started and finished by endpoint and request_type, one
    duration each, no request left active or queued; the output lengths stay per choice."""
    model = "Qwen/Qwen3-8B"
    live = LiveSim(collocated(model, "h100-sxm"), speed=50.0)
    with serving(create_app(live, model, Tokenizer())) as url, httpx.Client(base_url=url, timeout=30) as http:
        body = {"model": model, "prompt": ["a b c d", "e f g h i"], "n": 2, "temperature": 1.0, "max_tokens": 3,
                "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200 and "data: [DONE]" in list(response.iter_lines())
        chat = {"model": model, "messages": [{"role": "user", "content": "hi there"}], "max_tokens": 2}
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
        text = http.get("/metrics").text
    lab = 'model="qwen/qwen3-8b"'
    assert "# HELP dynamo_frontend_requests_started_total Total number of LLM requests accepted by the frontend " \
           "handler" in text
    assert series(text, "dynamo_frontend_requests_started_total") == {
        f'{lab},endpoint="chat_completions",request_type="unary"': "1",
        f'{lab},endpoint="completions",request_type="stream"': "1"}
    assert series(text, "dynamo_frontend_requests_total") == {
        f'{lab},endpoint="chat_completions",request_type="unary",status="success",error_type=""': "1",
        f'{lab},endpoint="completions",request_type="stream",status="success",error_type=""': "1"}
    assert series(text, "dynamo_frontend_request_duration_seconds_count") == {lab: "2"}
    assert series(text, "dynamo_frontend_active_requests") == series(text, "dynamo_frontend_queued_requests") == {
        lab: "0"}
    assert series(text, "dynamo_frontend_output_sequence_tokens_count") == {lab: "5"}  # 4 choices + the chat


def test_an_http_request_leaves_the_queue_with_its_first_token_of_any_choice():
    live = LiveSim(collocated("Qwen/Qwen3-8B", "h100-sxm"))
    http = live.http_request("completions", True, 2)
    for _ in range(2):
        live.submit(100, 2, http=http)
    dyn = live.dynamo
    assert (dict(dyn.started), dyn.active, dyn.queued) == ({("completions", "stream"): 1}, 1, 1)
    live.loop.run_until(60.0)  # both choices run to their end
    assert (dyn.active, dyn.queued, sum(dyn.requests.values()), dyn.duration.n) == (0, 0, 1, 1)


def test_dynamo_integer_gauges_are_exact_and_float_gauges_in_full():
    dyn = DynamoFrontendMetrics()
    worker = ("1", "0", "decode")
    dyn.worker_first_token(worker, 0.123456789, 1_230_451)
    text = "\n".join(dyn.lines("m", load=[(worker, 1_230_451, 1_234_567)]))
    w = 'worker_id="1",dp_rank="0",worker_type="decode"'
    assert series(text, "dynamo_frontend_worker_active_prefill_tokens") == {w: "1230451"}  # IntGaugeVec
    assert series(text, "dynamo_frontend_worker_active_decode_blocks") == {w: "1234567"}
    assert series(text, "dynamo_frontend_worker_last_input_sequence_tokens") == {w: "1230451"}
    assert series(text, "dynamo_frontend_worker_last_time_to_first_token_seconds") == {w: "0.123456789"}


def test_an_engine_without_torch_compile_reports_no_compile_cache(run_cli):
    est = estimate(LLAMA, "h100-sxm", engine="sglang")
    start = startup_estimate(est.cost_model, resolve_engine("sglang", est.cost_model.hw))
    assert start.compile_cache is None and start.compile_s == 0
    assert "no torch.compile" in start.summary() and "cache" not in start.summary()
    for engine in ("sglang", "trtllm"):
        code, out, _ = run_cli("estimate", "--model", LLAMA, "--engine", engine, "--json")
        assert code == 0 and json.loads(out)["startup"]["compile_cache"] is None
    code, out, _ = run_cli("estimate", "--model", LLAMA, "--engine", "vllm", "--json")
    assert code == 0 and json.loads(out)["startup"]["compile_cache"] == "cold"  # vLLM V1 compiles: cold by default


def test_an_autoscalers_concurrency_counts_a_chunked_prefill_on_every_engine():
    """SGLang's gauges leave a chunked prefill out of both running and waiting, as its scheduler counts them; a
    proxy in front (Knative's queue-proxy, the autoscalers' `concurrency`) still has it in flight
    (Instance.in_flight), where it vanished from the signal on SGLang."""
    from phasewise.sim.api import build
    from phasewise.sim.events import EventLoop
    from phasewise.sim.request import SimRequest
    from phasewise.sim.simulate import build_cluster

    for engine in ("vllm", "sglang"):  # (TensorRT-LLM's default, chunking off, refuses a 60k prompt)
        spec = build(engine=engine, requests=1, rate=1.0, isl=60000, osl=10, model="meta-llama/Llama-3.1-8B")
        loop = EventLoop()
        cluster, instances, _ = build_cluster(spec.deployment, loop, 1)
        cluster.arrive(SimRequest(0, 0.0, 60000, 10))
        loop.run_until(0.3)
        inst = instances[0]
        assert len(inst.prefilling) == 1 and inst.in_flight() == 1, engine
        running, waiting, _ = inst.gauges()
        assert (running, waiting) == ((0, 0) if engine == "sglang" else (1, 0)), engine
