"""Memory model: weights, KV per token, capacity; what does and does not fit."""

import json

import pytest

from phasewise.perf import memory_fit
from phasewise.specs import load_hardware, load_model, load_quant


def fit(model, hw="h100-sxm", precision="bf16", tp=1, pp=1, **kw):
    return memory_fit(load_model(model), load_hardware(hw), load_quant(precision), tp, pp, **kw)


def test_kv_bytes_per_token_hand_computed():
    # Llama-3.1-8B: 2 (K, V) x 8 KV heads x 128 x 32 layers x 2 bytes
    assert fit("meta-llama/Llama-3.1-8B").kv_bytes_per_token == 2 * 8 * 128 * 32 * 2
    # TP 2 splits the KV heads; TP 16 on 8 KV heads replicates them (1 head per GPU)
    assert fit("meta-llama/Llama-3.1-70B", tp=2).kv_bytes_per_token == 2 * 4 * 128 * 80 * 2
    assert fit("meta-llama/Llama-3.1-70B", tp=16).kv_bytes_per_token == 2 * 1 * 128 * 80 * 2
    assert fit("meta-llama/Llama-3.1-8B", precision="w4a8").kv_bytes_per_token == pytest.approx(
        2 * 8 * 128 * 32 * (0.5 + 2 / 128))


def test_weights_scale_with_precision_and_parallelism():
    bf16 = fit("meta-llama/Llama-3.1-70B", tp=4).weight_bytes
    fp8 = fit("meta-llama/Llama-3.1-70B", precision="fp8", tp=4).weight_bytes
    assert 0.5 < fp8 / bf16 < 0.56  # linear layers halve; embeddings stay 16-bit
    assert fit("meta-llama/Llama-3.1-70B", tp=8).weight_bytes == pytest.approx(bf16 / 2, rel=0.01)
    m = load_model("meta-llama/Llama-3.1-8B")
    assert fit("meta-llama/Llama-3.1-8B").weight_bytes == pytest.approx(m.total_params * 2, rel=0.001)


def test_70b_does_not_fit_one_h100_but_fits_two():
    assert not fit("meta-llama/Llama-3.1-70B").fits
    assert fit("meta-llama/Llama-3.1-70B").kv_capacity_tokens == 0
    assert fit("meta-llama/Llama-3.1-70B", tp=2).fits
    assert fit("meta-llama/Llama-3.1-70B", hw="h200-sxm", precision="fp8").fits


def test_kv_capacity_limits_the_batch():
    f = fit("meta-llama/Llama-3.1-8B", kv_needed_tokens=10**7)
    assert not f.fits and "KV tokens" in f.reason()
    expected = int(f.kv_free_bytes // f.kv_bytes_per_token)
    assert f.kv_capacity_tokens == expected
    assert 400_000 < expected < 500_000  # ~57 GiB free for 128 KiB tokens


def test_pipeline_stage_holds_its_share():
    one = fit("meta-llama/Llama-3.1-70B", hw="h200-sxm")
    two = fit("meta-llama/Llama-3.1-70B", hw="h200-sxm", pp=2)
    assert two.weight_bytes < one.weight_bytes * 0.55
    assert two.kv_bytes_per_token == one.kv_bytes_per_token / 2


def test_trtllm_memory_fraction_is_of_the_free_memory():
    """TensorRT-LLM sizes its KV pool as free_gpu_memory_fraction x the memory left once the weights and
    activations are in (resource_manager.py: mem_get_info()'s free bytes x the fraction); vLLM and SGLang take
    their fraction of the whole GPU."""
    from phasewise.perf.memory import memory_fit
    from phasewise.specs import load_hardware, load_model, load_quant
    from phasewise.specs.engines import memory_fraction_of, resolve_engine

    model, hw, quant = load_model("deepseek-ai/DeepSeek-R1"), load_hardware("b200"), load_quant("fp8", "fp8")
    whole = memory_fit(model, hw, quant, tp=4, memory_fraction=0.9)
    free = memory_fit(model, hw, quant, tp=4, memory_fraction=0.9, fraction_of="free")
    left = hw.memory_capacity_bytes - free.weight_bytes - free.activation_bytes - free.reserved_bytes
    assert abs(free.kv_free_bytes - 0.9 * left) < 1.0
    assert free.kv_capacity_tokens > 10 * whole.kv_capacity_tokens > 0  # the weights nearly fill 0.9 of the GPU
    assert memory_fraction_of("trtllm") == memory_fraction_of("trtllm-bench@1.0") == "free"
    assert memory_fraction_of("vllm") == "total" and memory_fraction_of("sglang") == "static"
    assert resolve_engine("trtllm", hw).memory_fraction_of == "free"
    # SGLang's mem_fraction_static holds the weights and the KV pool: activations and the runtime are outside it;
    # it is a fraction of the memory free before loading, the runtime's context out (profile_max_num_token)
    static = memory_fit(model, hw, quant, tp=4, memory_fraction=0.95, fraction_of="static")
    before_loading = hw.memory_capacity_bytes - hw.efficiency.reserved_bytes
    assert abs(static.kv_free_bytes - (0.95 * before_loading - static.weight_bytes)) < 1.0


def test_sglangs_static_fraction_leaves_room_for_the_activations_or_it_does_not_fit(run_cli):
    """SGLang's --mem-fraction-static holds the weights and the KV pool; the activations and the runtime's reserve
    live in what it leaves. At 0.99 of an H100 that is 0.8 GiB, short of Llama-3.1-70B TP2's 2.0 + 1.4 GiB: the GPU
    runs out of memory (the fit said yes, with 82.3 GiB in use of 79.6)."""
    code, out, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-70B", "--hardware", "h100-sxm", "--tp", "2",
                             "--engine", "sglang", "--batch", "8", "--prompt-len", "2048", "--memory-fraction",
                             "0.99", "--json")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    kv_bytes = memory["kv_capacity_tokens"] * memory["kv_bytes_per_token"]
    in_use = memory["weight_bytes"] + memory["activation_bytes"] + memory["reserved_bytes"] + kv_bytes
    assert in_use > memory["capacity_bytes"] and not memory["fits"] and "lower the memory fraction" in memory["reason"]
    # SGLang's default fraction leaves room (at TP4: at TP2 its 0.83 of the 78.3 GiB free before loading holds less
    # than the weights' 65.7 GiB, as SGLang's profile_max_num_token counts it)
    code, out, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-70B", "--hardware", "h100-sxm", "--tp", "4",
                             "--engine", "sglang", "--batch", "1", "--prompt-len", "2048", "--json")
    assert code == 0 and json.loads(out)["memory"]["fits"], err
