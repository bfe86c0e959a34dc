"""The twin shares prompt prefixes: every prompt's leading blocks are hashed in its engines' own KV blocks (16
tokens for vLLM serving Llama; apps/tokenizer.py count_and_blocks; token-id prompts by their ids), so requests
repeating a prefix hit the instances' prefix caches to the block, as the engines do, and /metrics counts it under
vLLM V1's names. On 127.0.0.1 only."""

import httpx
import pytest
from conftest import serving
from test_twin import samples

from phasewise.apps.tokenizer import Tokenizer, id_blocks
from phasewise.apps.twin import LiveSim, create_app
from phasewise.sim.deployment import collocated

M = "meta-llama/Llama-3.1-8B"
LAB = f'{{model_name="{M}"}}'
SHARED = "w " * 3000  # 3,000 built-in tokens, then each request's own question
SHARED_HIT = 3000 // 16 * 16  # vLLM's 16-token blocks: 187 full ones; the 188th mixes in the question


def test_leading_blocks_hash_alike_and_count_matches():
    tok = Tokenizer()
    a, a_blocks = tok.count_and_blocks(SHARED + "first question about oranges", 512)
    b, b_blocks = tok.count_and_blocks(SHARED + "a second, different question", 512)
    assert a == tok.count(SHARED + "first question about oranges") and len(a_blocks) == a // 512 == 5
    assert a_blocks[:5] == b_blocks[:5]
    assert tok.count_and_blocks("x " + SHARED, 512)[1][0] != a_blocks[0]  # one token earlier: another block
    assert id_blocks(list(range(1100)), 512) == id_blocks(list(range(1024)) + [7] * 76, 512)
    assert len(id_blocks(list(range(1100)), 512)) == 2
    long_word = "x" * 8000  # 2,000 built-in tokens in one word: it closes 3 blocks
    assert tok.count_and_blocks(long_word, 512) == (2000, tok.count_and_blocks(long_word, 512)[1])
    assert len(tok.count_and_blocks(long_word, 512)[1]) == 3


@pytest.fixture(scope="module")
def server():
    live = LiveSim(collocated(M, "h100-sxm"))  # vLLM V1: prefix caching on by default
    with serving(create_app(live, M, Tokenizer())) as url:
        yield url


def one(base: str, path: str, body: dict) -> dict[str, float]:
    """Send one request (non-streaming), return the change in the metrics it made."""
    before = samples(httpx.get(base + "/metrics").text)
    r = httpx.post(base + path, json={"model": M, "max_tokens": 4, **body}, timeout=30)
    assert r.status_code == 200, r.text
    after = samples(httpx.get(base + "/metrics").text)
    return {k: after[k] - before.get(k, 0.0) for k in after}


def test_a_repeated_prefix_hits_the_cache_and_shortens_the_first_token(server):
    first = one(server, "/v1/completions", {"prompt": SHARED + "first question about oranges"})
    second = one(server, "/v1/completions", {"prompt": SHARED + "a second, different question"})
    assert first["vllm:prefix_cache_hits_total" + LAB] == 0
    assert second["vllm:prefix_cache_hits_total" + LAB] == SHARED_HIT  # the shared blocks, not the question's
    assert second["vllm:prefix_cache_queries_total" + LAB] == second["vllm:prompt_tokens_total" + LAB]
    ttft = "vllm:time_to_first_token_seconds_sum" + LAB
    assert second[ttft] < 0.5 * first[ttft]  # (simulated time: the twin's clock runs the simulation)


def test_chat_turns_and_token_id_prompts_share_too(server):
    system = {"role": "system", "content": "z " * 1500}
    turn = {"messages": [system, {"role": "user", "content": "hello"}]}
    again = {"messages": [system, {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                          {"role": "user", "content": "more"}]}
    one(server, "/v1/chat/completions", turn)
    hits = one(server, "/v1/chat/completions", again)["vllm:prefix_cache_hits_total" + LAB]
    # the system prompt's 1,500 tokens and the template's few around it, to the last full 16-token block
    assert hits % 16 == 0 and 1488 <= hits < 1600
    ids = list(range(5, 1205))
    one(server, "/v1/completions", {"prompt": ids})
    # the same 1,200 ids again: the full blocks of its first 1,199 tokens (vLLM computes at least the last one)
    assert one(server, "/v1/completions", {"prompt": ids})["vllm:prefix_cache_hits_total" + LAB] == 1199 // 16 * 16


def test_host_tier_hits_count_as_vllm_connector_hits():
    """With --host-kv-cache-gb the twin counts host-tier hits as vLLM counts its KV connector's
    (vllm:external_prefix_cache_hits_total) and the GPU's own apart: a prefix pushed out of a small GPU cache by
    other prompts comes back from host memory."""
    # ~20k tokens of KV (a few 3,000-token prompts) and 200 GB of host memory behind it
    live = LiveSim(collocated(M, "h100-sxm", memory_fraction=0.25, host_kv_cache_bytes=200e9))
    with serving(create_app(live, M, Tokenizer())) as url:
        one(url, "/v1/completions", {"prompt": SHARED + "first"})
        for i in range(12):  # other prompts, each of its own: they evict the shared blocks from the GPU
            one(url, "/v1/completions", {"prompt": f"topic{i} " * 3000})
        again = one(url, "/v1/completions", {"prompt": SHARED + "second"})
    assert again["vllm:external_prefix_cache_hits_total" + LAB] == SHARED_HIT
    assert again["vllm:prefix_cache_hits_total" + LAB] == 0


def test_an_sglang_twin_also_speaks_sglangs_metric_names():
    """Instances of SGLang: /metrics adds SGLang's own names (srt/metrics/collector.py) for what its dashboards and
    autoscalers read, beside vLLM's."""
    live = LiveSim(collocated(M, "h100-sxm", engine="sglang"))
    lab = LAB
    with serving(create_app(live, M, Tokenizer())) as url:
        first = one(url, "/v1/completions", {"prompt": SHARED + "first"})
        second = one(url, "/v1/completions", {"prompt": SHARED + "second"})
        after = samples(httpx.get(url + "/metrics").text)
    assert first["sglang:prompt_tokens_total" + lab] == first["vllm:prompt_tokens_total" + lab] > 3000
    assert second["sglang:time_to_first_token_seconds_count" + lab] == 1
    assert second["sglang:inter_token_latency_seconds_count" + lab] == 3  # 4 output tokens, 3 gaps
    assert after["sglang:num_running_reqs" + lab] == after["sglang:num_queue_reqs" + lab] == 0
    # two prompts of 3,000 tokens, the second hitting all 3,000: SGLang's radix cache matches per token (page 1)
    queried = first["sglang:prompt_tokens_total" + lab] + second["sglang:prompt_tokens_total" + lab]
    assert after["sglang:cache_hit_rate" + lab] == pytest.approx(3000 / queried, abs=1e-6)
    assert 0 <= after["sglang:token_usage" + lab] <= 1


def test_cached_tokens_reach_the_usage_the_dynamo_histogram_and_vllms_computed_tokens():
    """Each request's prefix-cache hit (vLLM's num_cached_tokens, taken at its first admission) is reported as the
    engines and Dynamo report it: usage.prompt_tokens_details.cached_tokens with --enable-prompt-tokens-details
    (omitted at 0, as vLLM's serving code and SGLang's usage processor omit it), dynamo_frontend_cached_tokens
    (once a request) and vllm:request_prefill_kv_computed_tokens (prompt tokens less the cached ones)."""
    live = LiveSim(collocated(M, "h100-sxm"))
    with serving(create_app(live, M, Tokenizer(), prompt_tokens_details=True)) as url:
        body = {"model": M, "max_tokens": 3, "prompt": SHARED + "first question"}
        cold = httpx.post(url + "/v1/completions", json=body, timeout=30).json()["usage"]
        body["prompt"] = SHARED + "second question"
        warm = httpx.post(url + "/v1/completions", json=body, timeout=30).json()["usage"]
        with httpx.stream("POST", url + "/v1/completions", timeout=30,
                          json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
            chunks = [line for line in r.iter_lines() if line.startswith("data: {")]
        text = httpx.get(url + "/metrics").text
    assert "prompt_tokens_details" not in cold  # nothing cached: omitted
    assert warm["prompt_tokens_details"] == {"cached_tokens": SHARED_HIT}
    assert f'"prompt_tokens_details": {{"cached_tokens": {SHARED_HIT}}}' in chunks[-1]  # the streamed usage chunk
    values = samples(text)
    lab = f'{{model="{M.lower()}"}}'
    assert values["dynamo_frontend_cached_tokens_count" + lab] == 3
    assert values["dynamo_frontend_cached_tokens_sum" + lab] == 2 * SHARED_HIT
    prompts = values["vllm:prompt_tokens_total" + LAB]
    assert values["vllm:request_prefill_kv_computed_tokens_sum" + LAB] == prompts - 2 * SHARED_HIT
    assert values["vllm:request_prefill_kv_computed_tokens_count" + LAB] == 3


def test_without_the_flag_or_a_prefix_cache_usage_carries_no_details():
    live = LiveSim(collocated(M, "h100-sxm", prefix_caching=False))
    with serving(create_app(live, M, Tokenizer())) as url:
        for _ in range(2):
            usage = httpx.post(url + "/v1/completions", json={"model": M, "max_tokens": 2, "prompt": SHARED},
                               timeout=30).json()["usage"]
        text = httpx.get(url + "/metrics").text
    assert "prompt_tokens_details" not in usage
    assert "dynamo_frontend_cached_tokens_count" in text  # the family is served, empty: no cache, no observation
    assert samples(text)[f'dynamo_frontend_cached_tokens_count{{model="{M.lower()}"}}'] == 0
    values = samples(text)
    assert values["vllm:request_prefill_kv_computed_tokens_sum" + LAB] == values["vllm:prompt_tokens_total" + LAB]


def test_serve_refuses_prompt_token_details_without_a_prefix_cache(run_cli):
    for flag in ("--enable-prompt-tokens-details", "--enable-cache-report"):
        code, _, err = run_cli("serve", "--port", "1", "--prefix-caching", "off", flag)
        assert code == 2 and "no instance of this deployment caches prefixes" in err
        assert len(err.strip().splitlines()) == 1


def test_prompts_are_hashed_in_the_block_the_engine_runs_on():
    """The twin keys its prefix caches by the instances' own KV block (their least common multiple): vLLM's 16
    tokens for Llama, the 64 FlashMLA forces for DeepSeek on Hopper, SGLang's 1-token page; simulate keeps a trace's
    512-token hash ids."""
    assert LiveSim(collocated(M, "h100-sxm")).cluster.prefix_block_tokens == 16
    assert LiveSim(collocated("deepseek-ai/DeepSeek-R1", "h200-sxm", tp=8)).cluster.prefix_block_tokens == 64
    assert LiveSim(collocated(M, "h100-sxm", block_size=32)).cluster.prefix_block_tokens == 32
    assert LiveSim(collocated(M, "h100-sxm", engine="sglang")).cluster.prefix_block_tokens == 1  # its page
