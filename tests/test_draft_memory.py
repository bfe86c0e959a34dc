"""A speculative draft's weights and KV sit beside the target's (perf/memory.py draft_memory): the KV cache holds
fewer tokens with one than without."""

from __future__ import annotations

import pytest

from phasewise.perf.memory import draft_memory, kv_bytes_per_token, memory_fit, mtp_module
from phasewise.perf.parallel import parallel_layout
from phasewise.sim.deployment import Deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware, load_model, load_quant

DEEPSEEK = "deepseek-ai/DeepSeek-V3"


def test_deepseek_mtp_module_adds_one_latent_layer_of_kv_and_one_moe_block_of_weights():
    """DeepSeek-V3's MTP module (arXiv 2412.19437 section 2.2; 685B on the model card = 671B + 14B of MTP, of which
    the embedding and head, 2 x 129,280 x 7,168 = 1.85B, are the target's): one latent-attention layer of KV, 576
    elements x 2 bytes per token; ~12B of block and projection weights, FP8 experts spread over 8 GPUs ~1.5-1.9 GB."""
    model, quant = load_model(DEEPSEEK), load_quant("fp8-block")
    layout = parallel_layout(model, 8, 8, None, None, None)
    weights, kv = draft_memory(model, None, quant, 8, layout)
    assert kv == 576 * 2 == kv_bytes_per_token(model, load_quant("bf16"), 8, 1) / 61
    assert 1.4e9 < weights < 1.9e9
    block = mtp_module(model)
    assert (block.num_layers, block.num_moe_layers, block.sliding_window, block.linear_attention_layers) == (1, 1, None,
                                                                                                           0)


def test_a_draft_model_brings_its_whole_weights_and_kv():
    """Llama-3.1-8B drafting for Llama-3.1-70B at TP4, BF16: its 32 layers x 8 KV heads x 128 x 2 x 2 bytes over
    4 GPUs per token, and its weights (embedding and head included) over the same 4."""
    target, draft, quant = load_model("meta-llama/Llama-3.1-70B"), load_model("meta-llama/Llama-3.1-8B"), \
        load_quant("bf16")
    weights, kv = draft_memory(target, draft, quant, 4)
    assert kv == 32 * 2 * 2 * 128 * 2  # 8 KV heads over 4 GPUs: 2 per GPU
    assert weights == pytest.approx(draft.total_params * 2 / 4, rel=0.02)


@pytest.mark.parametrize("draft", ["mtp", "meta-llama/Llama-3.1-8B"])
def test_the_simulated_cache_holds_fewer_tokens_with_a_draft(draft):
    model = DEEPSEEK if draft == "mtp" else "meta-llama/Llama-3.1-70B"
    tp, hardware, precision = (8, "h200-sxm", "fp8-block") if draft == "mtp" else (4, "h100-sxm", "bf16")
    group = dict(hardware=hardware, tp=tp, precision=precision, engine="vllm")
    plain = Deployment(model=model, instances=[group])
    spec = Deployment(model=model, instances=[group], speculative=dict(draft_tokens=3, acceptance=0.7, draft=draft))
    _, tokens_plain, _, engine = build_group(plain, plain.instances[0], 0)
    _, tokens_spec, _, _ = build_group(spec, spec.instances[0], 0)
    m, hw, quant = load_model(model), load_hardware(hardware), load_quant(precision)
    layout = parallel_layout(m, tp, None, None, None, None)
    extra = draft_memory(m, None if draft == "mtp" else load_model(draft), quant, tp, layout)
    fit = memory_fit(m, hw, quant, tp, 1, max_tokens=engine.token_budget, max_seqs=min(engine.max_seqs, 1024),
                     memory_fraction=engine.memory_fraction, layout=layout, draft=extra)
    assert tokens_spec == fit.kv_capacity_tokens < tokens_plain
    free = fit.usable_bytes - fit.weight_bytes - fit.activation_bytes - fit.reserved_bytes
    assert tokens_spec == int(free // (fit.kv_bytes_per_token + extra[1]))


def test_every_mtp_module_the_checkpoint_has_is_loaded():
    model, quant = load_model(DEEPSEEK), load_quant("fp8-block")
    one = draft_memory(model, None, quant, 8)
    three = draft_memory(model.model_copy(update={"mtp_layers": 3}), None, quant, 8)
    assert three == pytest.approx((3 * one[0], 3 * one[1]))
    assert draft_memory(model.model_copy(update={"mtp_layers": 0}), None, quant, 8) == one  # an EAGLE-style head


def test_a_draft_of_another_vocabulary_is_refused_in_one_line():
    """The engines verify the draft's token ids against the target's: Qwen3-0.6B (151,936 tokens) cannot draft for
    Llama-3.1-8B (128,256); it ran as if it could."""
    from phasewise.errors import PhasewiseError

    group = dict(hardware="h100-sxm", tp=1, engine="vllm")
    spec = Deployment(model="meta-llama/Llama-3.1-8B", instances=[group],
                      speculative=dict(draft_tokens=3, acceptance=0.7, draft="Qwen/Qwen3-0.6B"))
    with pytest.raises(PhasewiseError, match="151,936-token vocabulary and meta-llama/Llama-3.1-8B 128,256") as err:
        build_group(spec, spec.instances[0], 0)
    assert "\n" not in str(err.value)
