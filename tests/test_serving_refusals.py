"""What a server refuses on arrival, check mode leaving results alone, and each benchmark client's ITL."""

from __future__ import annotations

import numpy as np

from phasewise.sim.api import run


def test_check_mode_changes_no_result_with_prefix_caching():
    """Check mode verifies the decoding set's growth fits; it must not allocate it (an allocation evicts idle
    prefix blocks, which changed the evictions and the TTFTs of a Mooncake run)."""
    kw = dict(engine="vllm", trace="mooncake", trace_limit=200, rate=10, memory_fraction=0.5, seed=121)
    plain, checked = run(**kw).summary(), run(check_invariants=True, **kw).summary()
    assert plain["prefix_cache"]["evicted_prefix_blocks"] == checked["prefix_cache"]["evicted_prefix_blocks"]
    assert plain["ttft_ms"] == checked["ttft_ms"] and plain["tbt_ms"] == checked["tbt_ms"]


def _mix(tmp_path, servable_only: bool) -> str:
    """40 requests half a second apart, every fourth 4,000 + 3,000 tokens (beyond the KV cache of an H100 at memory
    fraction 0.23), the others 1,000 + 100; or the 30 servable ones alone."""
    rows = ["arrived_at,num_prefill_tokens,num_decode_tokens"]
    for i in range(40):
        if i % 4 == 0 and servable_only:
            continue
        rows.append(f"{i * 0.5},4000,3000" if i % 4 == 0 else f"{i * 0.5},1000,100")
    path = tmp_path / ("ok.csv" if servable_only else "all.csv")
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_a_request_beyond_the_kv_cache_is_refused_on_arrival_and_costs_the_others_nothing(tmp_path):
    """It never queues: the servable requests' latencies are those of a run without it (it had been served until
    the cache filled, preempted ten times and rejected then: TTFT 47.8 s instead of 26 ms)."""
    both = run(check_invariants=True, trace=_mix(tmp_path, False), memory_fraction=0.23)
    alone = run(check_invariants=True, trace=_mix(tmp_path, True), memory_fraction=0.23)
    s = both.summary()
    assert s["rejected_by"] == {"beyond_kv_capacity": 10} and s["completed"] == 30
    served = np.isfinite(both.finish_s)
    assert np.allclose(both.ttft_s[served], alone.ttft_s, rtol=0, atol=1e-9)
    assert np.allclose(both.e2e_s[served], alone.e2e_s, rtol=0, atol=1e-9)
    inst = s["instances"][0]
    assert inst["preemptions"] == s["preemptions"] == 0 and inst["busy_fraction"] <= 1.0
    assert inst["prefill_tokens"] == alone.summary()["instances"][0]["prefill_tokens"]


def test_disaggregated_a_request_beyond_every_decode_cache_is_refused_before_its_prefill():
    """Its prompt fits the prefill instance (TP2) but prompt + output not the decode instance (TP1): refused on
    arrival, not prefilled (29,043 prompt tokens) and preempted on the decode side first."""
    r = run(check_invariants=True, arch="disagg", prefill_tp=2, decode_tp=1, memory_fraction=0.23, rate=1,
            requests=3, isl=4000, osl=3000, seed=0)
    s = r.summary()
    assert s["rejected_by"] == {"beyond_kv_capacity": 3}
    assert all(i["prefill_tokens"] == i["decode_tokens"] == i["preemptions"] == 0 for i in s["instances"])


def test_the_summary_counts_the_preemptions_of_requests_rejected_part_way():
    """Disaggregated, a request preempted on the decode instance recomputes on a prefill instance whose cache its
    prompt and generated tokens outgrew: rejected there. Its preemptions count in the summary as in the instance
    table (11 against 17)."""
    r = run(arch="disagg", prefill_tp=1, decode_tp=2, memory_fraction=0.23, rate=100, requests=80, isl=3000,
            osl=5000, seed=0)
    s = r.summary()
    assert s["rejected_by"].get("beyond_kv_capacity", 0) > 0
    assert s["preemptions"] == sum(i["preemptions"] for i in s["instances"]) > 0


def test_busy_fraction_never_exceeds_one_when_work_outlasts_the_last_finish():
    """A probe stopped at its misses has iterations running past its last finish: the span the busy time divides
    reaches their end (it was 145 %)."""
    from phasewise.sim.api import build
    from phasewise.sim.metrics import Slo
    from phasewise.sim.simulate import simulate

    spec = build(rate=50, requests=200, isl=2000, osl=2, seed=0)
    r = simulate(spec.deployment, spec.workload, Slo(ttft_ms=1), stop_after_misses=3)
    assert r.stopped_s == r.stopped_s
    assert all(i["busy_fraction"] <= 1.0 + 1e-12 for i in r.summary()["instances"])


def test_the_twin_refuses_up_front_a_request_whose_output_outgrows_the_kv_cache():
    """The prompt fits the twin's KV cache, prompt + max_tokens does not: a 400 naming max_tokens before streaming,
    as the simulation refuses it on arrival (it had been a 503 inside a stream already started)."""
    import httpx
    from conftest import serving

    from phasewise.apps.tokenizer import Tokenizer
    from phasewise.apps.twin import LiveSim, create_app
    from phasewise.sim.deployment import build_deployment

    model = "meta-llama/Llama-3.1-8B"
    live = LiveSim(build_deployment({"model": model, "instances": [
        {"role": "collocated", "hardware": "l40s", "memory_fraction": 0.45}]}, "test"))
    inst = live.instances[0]
    assert not inst.never_fits(20_000, 16) and inst.never_fits(20_000, 20_000)
    with serving(create_app(live, model, Tokenizer())) as base:
        r = httpx.post(base + "/v1/completions", json={"model": model, "prompt": [7] * 20_000, "max_tokens": 20_000},
                       timeout=30)
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == "kv_cache_exhausted" and error["param"] == "max_tokens"
        assert "20000 prompt and 20000 output tokens" in error["message"]
        r = httpx.post(base + "/v1/completions", json={"model": model, "prompt": [7] * 20_000, "max_tokens": 4},
                       timeout=30)
        assert r.status_code == 200


def test_trtllm_serve_refuses_a_prompt_beyond_max_num_tokens_with_chunking_off(run_cli):
    """The PyTorch backend's LLM API raises "should not exceed max_num_tokens" without chunked prefill (trtllm-serve:
    a 400); trtllm-bench, which raises max_num_tokens to the longest prompt, runs it, as trtllm-serve does with
    chunking on."""
    from phasewise.sim.metrics import REJECT_REASONS

    refused = run(engine="trtllm", concurrency=2, requests=4, isl=10_000, osl=4).summary()
    assert refused["completed"] == 0 and refused["rejected_by"] == {"beyond_token_budget": 4}
    assert run(engine="trtllm", concurrency=2, requests=4, isl=8_000, osl=4).summary()["completed"] == 4
    for kw in (dict(engine="trtllm-bench"), dict(engine="trtllm", enable_chunked_prefill=True)):
        assert run(concurrency=2, requests=4, isl=10_000, osl=4, **kw).summary()["completed"] == 4
    code, _, err = run_cli("simulate", "--engine", "trtllm", "--concurrency", "2", "--requests", "4", "--isl", "10000",
                           "--osl", "4")
    assert code == 2 and REJECT_REASONS["beyond_token_budget"] in err and "4 of 4" in err
    code, _, err = run_cli("simulate", "--engine", "trtllm", "--rate", "5", "--requests", "8", "--isl", "9000",
                           "--isl-dist", "uniform", "--isl-spread", "0.2", "--osl", "4")
    assert code == 0 and "with prompt tokens beyond max_num_tokens" in err


def test_the_twin_answers_a_prompt_beyond_max_num_tokens_with_a_400():
    import httpx
    from conftest import serving

    from phasewise.apps.tokenizer import Tokenizer
    from phasewise.apps.twin import LiveSim, create_app
    from phasewise.sim.deployment import collocated

    model = "meta-llama/Llama-3.1-8B"
    with serving(create_app(LiveSim(collocated(model, "h100-sxm", engine="trtllm")), model, Tokenizer())) as base:
        r = httpx.post(base + "/v1/completions", json={"model": model, "prompt": [7] * 9_000, "max_tokens": 4},
                       timeout=30)
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == "beyond_token_budget" and error["param"] == "prompt"
        r = httpx.post(base + "/v1/completions", json={"model": model, "prompt": [7] * 8_000, "max_tokens": 4},
                       timeout=30)
        assert r.status_code == 200


def test_every_client_has_its_itl_definition():
    from phasewise.sim.metrics import CLIENT_ITL
    from phasewise.workload.clients import client_names

    assert set(client_names()) == set(CLIENT_ITL)


def test_each_client_s_itl_is_printed_as_that_client_computes_it(run_cli):
    """genai-perf and aiperf take ITL per request, (E2E - TTFT) / (output - 1): their TPOT, not the pooled gaps
    `vllm bench serve` reports (which had been printed for every client: 12.4/8.5/140.4 against 12.4/12.7/14.8)."""
    import re

    figures = {}
    for client in ("genai-perf", "aiperf", "vllm-bench"):
        code, out, _ = run_cli("simulate", "--engine", "vllm", "--concurrency", "8", "--client", client,
                               "--num-prompts", "40", "--isl", "3000", "--osl", "64")
        line = next(line for line in out.splitlines() if "reports them" in line)
        figures[client] = re.search(r"TPOT ([\d./]+), ITL (?:\(([a-z ]+)\) )?([\d./]+)", line).groups()
    for client in ("genai-perf", "aiperf"):
        tpot, how, itl = figures[client]
        assert itl == tpot and how == "per request"
    tpot, how, itl = figures["vllm-bench"]
    assert itl != tpot and how == "every gap"
