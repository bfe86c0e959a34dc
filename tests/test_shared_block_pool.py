"""vLLM's DeepSeek-V4 KV block pool (perf/shared_block_pool.py): the layout from vLLM's cache specs, held against the
figures vLLM printed for users (issues #44376 and #51454), and what it changes in estimate, simulate and launch."""

from __future__ import annotations

import math

import pytest

from phasewise.apps.launch import launch_commands
from phasewise.apps.launch_args import engine_flags
from phasewise.perf.estimate import estimate
from phasewise.perf.memory import compressed_kv_pool, kv_state_pages, memory_fit
from phasewise.perf.shared_block_pool import approximate_gcd
from phasewise.perf.window_kv import kv_stored_terms, kv_window_terms
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import engine_kv, window_kv
from phasewise.specs.engines import resolve_engine

FLASH, PRO = "deepseek-ai/DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Pro"


def _pool(model: str, engine: str = "vllm", pp: int = 1):
    spec, hw = load_model(model), load_hardware("b200")
    config = resolve_engine(engine, hw, model_type=spec.model_type)
    quant = engine_kv(load_quant(spec.default_precision, None), config, spec, hw, asked_kv_dtype=False)
    return spec, config, quant, compressed_kv_pool(config, spec, quant, pp)


def test_approximate_gcd_pads_the_layer_counts_least():
    """Flash's kinds hold 21 (compressed pages), 43 (window entries), 21 and 20 (compressor states) layers: 22
    repeats pad them by 1 + 1 + 1 + 2 = 5, 21 by 0 + 20 + 0 + 1 = 21. Pro's 31, 61, 30, 31: 31 pads by 2."""
    assert approximate_gcd([21, 43, 21, 20], 21) == 22
    assert approximate_gcd([31, 61, 30, 31], 31) == 31
    assert approximate_gcd([4, 6], 8) == 8  # a lower bound past every count is kept


def test_flash_pool_by_hand():
    """A 256-token block holds 64 CSA entries (64 x 584 = 37,376 -> 37,440 at 576-byte pages), 64 indexer keys (64 x
    132 = 8,448 -> 8,640) and 2 HCA entries (1,168 -> 1,728): 47,808 bytes, 22 times, 1,051,776 a block. A decoding
    request holds in each windowed group the blocks its window spans: window entries 128 tokens in 64 (3 blocks, two
    groups of at most 22 of the 43 layers), CSA states 8 in 4 (3), HCA states 128 in 8 (17): 26. A request of 1M
    tokens with an 8,192-token chunk in flight: 4,096 + 2 x 131 + 2,051 + 1,041 = 7,450 blocks."""
    spec, _, _, pool = _pool(FLASH)
    assert pool.page_bytes == (1_728, 8_640, 37_440) and pool.layer_tuples == 22
    assert pool.block_bytes == 22 * 47_808 == 1_051_776 and pool.bytes_per_token == 4_108.5
    assert [g.kind for g in pool.window_groups].count("window entries") == 2
    assert pool.window_blocks() == 2 * 3 + 3 + 17 == 26
    assert pool.request_blocks(1_048_576, 8_192) == 4_096 + 2 * 131 + 2_051 + 1_041 == 7_450
    assert pool.chunk_blocks(8_192) == 2 * 128 + 2_048 + 1_024
    _, _, _, pro = _pool(PRO)
    assert pro.layer_tuples == 31 and pro.block_bytes == 31 * 47_808


def test_vllm_issue_44376_start_up_error_to_the_block():
    """vLLM v0.22, DeepSeek-V4-Flash on 2 x GH200, max_model_len 30,000, max_num_batched_tokens 16,384 (LLM()'s
    default): "6.66 GiB KV cache is needed, which is larger than the available KV cache memory (5.44 GiB) ... the
    estimated maximum model length is 13528" (vllm-project/vllm issue #44376)."""
    _, _, _, pool = _pool(FLASH)
    needed = pool.request_blocks(30_000, 16_384)
    assert needed == 6_800 and f"{needed * pool.block_bytes / 2**30:.2f}" == "6.66"
    available = 5_554 * pool.block_bytes  # the pool of 5,554 blocks vLLM printed as 5.44 GiB
    assert f"{available / 2**30:.2f}" == "5.44"
    assert pool.longest_request(available, 16_384, 30_000) == 13_528
    assert pool.longest_request(available - 1, 16_384, 30_000) < 13_528 < pool.longest_request(
        available + 2 * pool.block_bytes, 16_384, 30_000)  # 13,529 needs 5,556


def test_vllm_issue_51454_maximum_concurrency():
    """vLLM v0.25.0, DeepSeek-V4-Flash on 8 x B200 at --gpu-memory-utilization 0.95, its 1M-token context: "Maximum
    concurrency for 1,048,576 tokens per request: 20.43x" at TP8 and 156.9x at DP8 + EP (issue #51454 and its
    recipes thread). phasewise's memory model (weights, activations, reserved) was not fitted to either; the
    pool's accounting turns its free memory into vLLM's figures."""
    tp8 = estimate(FLASH, "b200", tp=8, memory_fraction=0.95, prompt_len=8192).to_dict()["memory"]["compressed_kv_pool"]
    assert tp8["request_blocks_at_max_model_len"] == 7_450 and tp8["max_num_batched_tokens"] == 8_192
    assert tp8["max_concurrency"] == pytest.approx(20.43, abs=0.05)
    assert tp8["kv_cache_tokens"] == pytest.approx(21.4e6, rel=0.005)  # "KV ≈ 21.4M tokens"
    dp8 = estimate(FLASH, "b200", tp=8, attention_dp=8, ep=8, memory_fraction=0.95,
                   prompt_len=8192).to_dict()["memory"]["compressed_kv_pool"]
    assert dp8["max_num_batched_tokens"] == 8_192  # each rank's engine core batches its own
    # 155.7x: the pool sized at the engine's start-up profile (its token budget over its max sequences, as simulate
    # sizes it: perf/memory.py profile_batch), 0.8 % under the issue's figure
    assert dp8["max_concurrency"] == pytest.approx(156.9, rel=0.01)


def test_only_vllm_keeps_the_shared_pool():
    """vLLM: the context in the pool's bytes per token, the windowed groups' blocks a constant per sequence in whole
    blocks, and what a transfer moves still the real bytes. SGLang (its own DSV4 pools) and TensorRT-LLM (its window
    pages): no such pool."""
    spec, config, quant, pool = _pool(FLASH)
    hw = load_hardware("b200")
    assert window_kv(config, spec, hw) == ("block_pool", 1.0)
    assert kv_window_terms(spec, "block_pool", attention_tp=8, quant=quant) == (1.0, 0.0, 0, False)
    assert kv_stored_terms(spec, "block_pool", attention_tp=1, quant=quant) == kv_stored_terms(
        spec, "per_sequence", attention_tp=1, quant=quant)
    assert kv_state_pages(config, spec, quant, 8, 1, 256) == (256, 26 * 256)
    assert _pool(FLASH, "sglang")[3] is None
    assert type(_pool(FLASH, "trtllm")[3]).__name__ == "WindowPages"  # tests/test_window_pages.py
    assert _pool("deepseek-ai/DeepSeek-V3", "vllm")[3] is None  # MLA without compressed attention: no such pool


def test_memory_fit_keeps_a_prefill_chunk_free():
    """The step's token budget of chunk in flight holds its window blocks until the forward ends: kept free of
    running sequences' KV, and a KV token costs the pool's 4,108.5 bytes (3,850 without the page rounding)."""
    spec, _, quant, pool = _pool(FLASH)
    hw = load_hardware("b200")
    plain = memory_fit(spec, hw, quant, 8, max_tokens=8192, memory_fraction=0.95)
    pooled = memory_fit(spec, hw, quant, 8, max_tokens=8192, memory_fraction=0.95, kv_pool=pool)
    assert pooled.chunk_window_bytes == 3_328 * pool.block_bytes
    assert pooled.kv_bytes_per_token == 4_108.5 and plain.kv_bytes_per_token == pytest.approx(3_850.25)
    assert pooled.kv_capacity_tokens == int((plain.kv_free_bytes - pooled.chunk_window_bytes) // 4_108.5)
    # a pipeline stage holds its share of each kind: 11 of 21 CSA layers, 10 of 20 HCA, 22 of 43 in all
    _, _, _, half = _pool(FLASH, pp=2)
    assert half.layer_tuples == approximate_gcd([11, 22, 11, 10], 11) == 11


def test_simulated_sequences_take_their_window_blocks():
    """The simulator's vLLM instance runs on the pool's 256-token blocks, each running sequence holding 26 more."""
    dep = build_deployment({"model": FLASH, "instances": [{"hardware": "b200", "tp": 8, "engine": "vllm"}]})
    cost, kv_tokens, _, engine = build_group(dep, dep.instances[0], 0)
    assert cost.quant.kv_dtype == "fp8"
    _, _, _, pool = _pool(FLASH)
    free = memory_fit(cost.model, cost.hw, cost.quant, 8, max_tokens=engine.token_budget,
                      max_seqs=min(engine.max_seqs, 1024), memory_fraction=engine.fraction(None), kv_pool=pool)
    assert kv_tokens == free.kv_capacity_tokens
    assert kv_state_pages(engine, cost.model, cost.quant, 8, 1, 256) == (256, 26 * 256)


def test_launch_caps_max_model_len_as_vllm_checks_it():
    """Where one 1M-token request and a chunk's window blocks do not fit the pool, vLLM refuses to start: the script
    passes the longest request the pool holds (its estimated maximum model length), in whole 256-token blocks."""
    dep = build_deployment({"model": FLASH, "instances": [{"hardware": "h100-sxm", "tp": 4, "engine": "vllm",
                                                           "memory_fraction": 0.58}]})
    (cmd,), _, _ = launch_commands(dep)
    argv = cmd.argv
    assert "--max-model-len" in argv and "--max-model-len" in engine_flags()["vllm"]["flags"]
    longest = int(argv[argv.index("--max-model-len") + 1])
    _, kv_tokens, _, engine = build_group(dep, dep.instances[0], 0)
    _, _, _, pool = _pool(FLASH)
    budget = engine.token_budget
    blocks = kv_tokens // 256 + pool.chunk_blocks(budget)
    assert longest % 256 == 0 and 0 < longest < 1_048_576
    assert pool.request_blocks(longest, budget) <= blocks < pool.request_blocks(longest + 256, budget)
    assert math.ceil(longest / 256) < blocks  # the window groups' blocks make it shorter than the pool's tokens


def test_a_stack_of_sliding_layers_only_is_refused_by_vllm_and_costed_elsewhere(tmp_path):
    """Every compress ratio 0 (found by an ad-hoc fuzz of the engines' V4 accounting): vLLM builds its pool's pages
    from the compressed layers (it asserts there are some), so it is a one-line error; TensorRT-LLM and SGLang keep
    such a stack's windows per sequence (no window pages, no full pool)."""
    import json

    from phasewise.errors import PhasewiseError
    from phasewise.specs.catalog import packaged

    config = dict(packaged("models.yaml")["models"][FLASH]["config"], num_hidden_layers=2, compress_ratios=[0, 0, 0])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(PhasewiseError, match="sliding layers only") as err:
        estimate(str(path), "b200", tp=8, engine="vllm")
    assert "\n" not in str(err.value)
    for engine in ("trtllm", "sglang"):
        memory = estimate(str(path), "b200", tp=8, engine=engine).to_dict()["memory"]
        assert memory["compressed_kv_pool"] is None and memory["window_pool_tokens"] is None
        # the window, on every layer, in the engine's whole pages (TensorRT-LLM 128 tokens, SGLang's DSV4 page 256)
        assert memory["kv_tokens_per_sequence"] == {"trtllm": 128, "sglang": 256}[engine]
