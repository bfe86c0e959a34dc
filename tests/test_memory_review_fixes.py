"""The memory review's fixes: one KV pool per deployment (estimate = simulate), the engine's sequence cap, vLLM's
padded KV cache groups, whole KV blocks, vLLM's own "GPU KV cache size", SGLang's static fraction of the memory free
before loading."""

from __future__ import annotations

from phasewise.perf.estimate import estimate
from phasewise.perf.memory import kv_pool_sequences, memory_fit
from phasewise.perf.window_kv import vllm_kv_cache_groups, vllm_layer_groups
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware, load_model, load_quant

LLAMA = "meta-llama/Llama-3.1-8B"
GEMMA = "google/gemma-3-27b-it"
GPT_OSS = "openai/gpt-oss-120b"


def test_estimate_sizes_one_pool_per_deployment_as_simulate_does():
    """The pool comes from the engine's start-up profile (its token budget and max sequences), not the batch asked."""
    pools = {estimate(LLAMA, "h100-sxm", engine="vllm", batch=b, prompt_len=1024).memory.kv_capacity_tokens
             for b in (1, 32, 1024)}
    group = InstanceGroup(hardware="h100-sxm", tp=1, engine="vllm")
    _, simulated, _, _ = build_group(Deployment(model=LLAMA, instances=[group]), group, 0)
    assert pools == {simulated}


def test_a_batch_above_the_engines_max_sequences_does_not_fit():
    est = estimate(LLAMA, "h100-sxm", engine="vllm", batch=2000, prompt_len=128, context_len=128)
    memory = est.to_dict()["memory"]
    assert memory["max_batch_at_context"] == 1024 and memory["max_batch_bound_by"] == "engine_max_sequences"
    assert not memory["fits"] and "max sequences" in memory["reason"]
    assert estimate(LLAMA, "h100-sxm", engine="vllm", batch=1000, prompt_len=128).memory.fits


def test_vllm_pads_its_sliding_window_groups():
    """gemma-3: 10 full and 52 sliding layers -> groups of 10, the sliding ones in 6 (the last padded)."""
    assert vllm_layer_groups(10, 52) == (10, 60)
    assert vllm_layer_groups(18, 18) == (18, 18)
    assert vllm_layer_groups(13, 12) == (13, 13)  # under 1.5x: the larger count (gpt-oss-20b + a drafter)
    assert vllm_kv_cache_groups(load_model(GEMMA)) == 7
    memory = estimate(GEMMA, "h100-sxm", engine="vllm", prompt_len=8192).to_dict()["memory"]
    assert memory["kv_tokens_per_sequence"] == 14_352  # 8,193 + 6 x 1,024 in 16-token blocks (was 13,518)
    # SGLang's one pool is not vLLM's groups
    assert estimate(GEMMA, "h100-sxm", engine="sglang", prompt_len=8192).to_dict()["memory"][
        "kv_tokens_per_sequence"] == 50_797


def test_max_batch_is_in_the_engines_whole_blocks():
    """DeepSeek-V3 under vLLM on Hopper: FlashMLA's 64-token blocks, a 1,025-token sequence in 17 of them."""
    memory = estimate("deepseek-ai/DeepSeek-V3", "h200-sxm", tp=8, precision="fp8", engine="vllm",
                      prompt_len=1024).to_dict()["memory"]
    assert memory["kv_block_tokens"] == 64 and memory["kv_tokens_per_sequence"] == 17 * 64
    assert memory["max_batch_at_context"] == memory["kv_capacity_tokens"] // 64 // 17
    assert kv_pool_sequences(10_000, 1_025, (1.0, 0.0, 0, False), (64, 0.0)) == 156 // 17


def test_estimate_labels_its_tokens_and_prints_vllms_kv_cache_size():
    memory = estimate(GPT_OSS, "h100-sxm", engine="vllm").to_dict()["memory"]
    assert "18 full-attention layers" in memory["kv_token_unit"]
    # two groups of 18 layers, a block one group's: num_blocks // 2 x 16
    assert memory["engine_kv_cache_tokens"] == memory["kv_capacity_tokens"] // 16 // 2 * 16
    assert estimate(GPT_OSS, "h100-sxm", engine="sglang").to_dict()["memory"]["engine_kv_cache_tokens"] is None


def test_sglangs_static_fraction_is_of_the_memory_free_before_loading():
    model, hw, quant = load_model(LLAMA), load_hardware("h100-sxm"), load_quant("bf16")
    fit = memory_fit(model, hw, quant, memory_fraction=0.85, fraction_of="static")
    expected = 0.85 * (hw.memory_capacity_bytes - hw.efficiency.reserved_bytes) - fit.weight_bytes
    assert abs(fit.kv_free_bytes - expected) < 1.0
