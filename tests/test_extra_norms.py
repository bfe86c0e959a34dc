"""Norms beyond the two fused add + norms: q / k (and Gemma 4's v) RMSNorms on the softmax layers and Gemma's sandwich
post-norms, read from the model type (specs/hf_config.py) and costed as kernels and traffic (perf/cost.py), by hand."""


import pytest
from conftest import load_benchmark

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.operators import KERNELS, kernel_counts
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hf_config import from_hf_config

TOKENS, ELEMENT = 1024, 2  # a 1,024-token prompt in bf16


def elementwise(model: str, engine: str = "vllm", tokens: int = TOKENS, context: int = 0):
    """The elementwise operator of one iteration (a prompt, or one decode step at `context`) on one H100."""
    cm = CostModel(load_model(model), load_hardware("h100-sxm"), load_quant("bf16"), load_engine(engine))
    shape = BatchShape()
    shape.add(tokens, context)
    return cm, {op.name: op for op in cm.iteration(shape).operators}["elementwise"]


@pytest.mark.parametrize("model, qk_norm, v_norm, post_norms", [
    ("Qwen/Qwen3-8B", True, False, 0),
    ("Qwen/Qwen3-30B-A3B", True, False, 0),
    ("Qwen/Qwen3.5-397B-A17B", True, False, 0),
    ("google/gemma-2-27b-it", False, False, 2),
    ("google/gemma-3-27b-it", True, False, 2),
    ("google/gemma-4-31B-it", True, True, 2),
    ("MiniMaxAI/MiniMax-M2", True, False, 0),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", True, False, 0),  # use_qk_norm true in its config
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", False, False, 0),  # use_qk_norm false
    ("zai-org/GLM-4.5-Air", False, False, 0),  # use_qk_norm false
    ("LiquidAI/LFM2-1.2B", True, False, 0),
    ("meta-llama/Llama-3.1-8B", False, False, 0),
    ("deepseek-ai/DeepSeek-V3", False, False, 0),  # latent attention's own norms are its projections' kernels
    ("openai/gpt-oss-120b", False, False, 0),
])
def test_catalog_models_read_their_norms(model, qk_norm, v_norm, post_norms):
    spec = load_model(model)
    assert (spec.qk_norm, spec.v_norm, spec.post_norms) == (qk_norm, v_norm, post_norms)


def test_config_flags_turn_qk_norm_on_only_where_the_class_reads_them():
    base = dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
                num_key_value_heads=4, vocab_size=32000)
    assert from_hf_config("glm", dict(base, model_type="glm4_moe", use_qk_norm=True)).qk_norm
    assert not from_hf_config("glm", dict(base, model_type="glm4_moe")).qk_norm  # the class's default: off
    assert from_hf_config("scout", dict(base, model_type="llama4_text")).qk_norm  # the class's default: on
    assert not from_hf_config("llama", dict(base, model_type="llama", use_qk_norm=True)).qk_norm  # not read by Llama
    olmo = from_hf_config("olmo", dict(base, model_type="olmo2"))
    assert olmo.qk_norm and olmo.post_norms == 0  # over all heads at once; its two norms come after the sublayers
    assert from_hf_config("glm4", dict(base, model_type="glm4")).post_norms == 2


def test_kernel_counts_add_the_norms_on_the_layers_that_have_them():
    assert kernel_counts(False, False)["elementwise"] == KERNELS["elementwise"] == 4
    assert kernel_counts(False, False, qk_norm_kernels=1, post_norms=2)["elementwise"] == 7
    # a hybrid stack with 3 in 4 layers linear: the q / k norms on the softmax quarter only
    assert kernel_counts(False, False, linear_share=0.75, qk_norm_kernels=2)["elementwise"] == pytest.approx(4.5)


def test_qwen3_qk_norms_read_and_write_q_and_k():
    """Qwen3-8B (36 layers, hidden 4096, 32 heads, 8 KV heads of 128, MLP 12288) per token and layer: two add + norms
    10 x 4096, the q / k norms 2 x (32 + 8) x 128, RoPE 2 x (32 + 8) x 128, the activation 3 x 12288 elements; one
    kernel's time more a layer than Llama's four (q's and k's side by side, or one fused kernel)."""
    cm, op = elementwise("Qwen/Qwen3-8B")
    per_layer = 10 * 4096 + 2 * 40 * 128 + 2 * 40 * 128 + 3 * 12288
    assert op.bytes == pytest.approx(TOKENS * 36 * ELEMENT * per_layer)
    _, decode = elementwise("Qwen/Qwen3-8B", tokens=1, context=1024)  # graph-replayed: launches only
    assert decode.launch_s == pytest.approx(36 * 5 * cm.eff.kernel_launch_s)


def test_tensorrt_llm_runs_qwen3s_qk_norms_inside_rope():
    """TensorRT-LLM's fused_qk_norm_rope: no kernels or traffic of their own for qwen3 / qwen3_moe."""
    cm, op = elementwise("Qwen/Qwen3-8B", engine="trtllm-pytorch")
    assert op.bytes == pytest.approx(TOKENS * 36 * ELEMENT * (10 * 4096 + 2 * 40 * 128 + 3 * 12288))
    _, decode = elementwise("Qwen/Qwen3-8B", engine="trtllm-pytorch", tokens=1, context=1024)
    assert decode.launch_s == pytest.approx(36 * 4 * cm.eff.kernel_launch_s)
    # Gemma 3's (1 + w) norms are not fused there: its q / k norms keep their kernel
    _, gemma = elementwise("google/gemma-3-27b-it", engine="trtllm-pytorch", tokens=1, context=1024)
    assert gemma.launch_s == pytest.approx(62 * 7 * cm.eff.kernel_launch_s)


def test_gemma3_sandwich_norms_and_qk_norms():
    """Gemma-3-27B (62 layers, hidden 5376, 32 heads, 16 KV heads of 128, GeGLU 21504): its post-attention and
    post-feedforward norms read and write the hidden state (4 x 5376 more), its q / k norms q and k; 4 + 2 + 1
    kernels a layer."""
    cm, op = elementwise("google/gemma-3-27b-it")
    per_layer = (10 + 4) * 5376 + 2 * 48 * 128 + 2 * 48 * 128 + 3 * 21504
    assert op.bytes == pytest.approx(TOKENS * 62 * ELEMENT * per_layer)
    _, decode = elementwise("google/gemma-3-27b-it", tokens=1, context=1024)
    assert decode.launch_s == pytest.approx(62 * 7 * cm.eff.kernel_launch_s)


def test_gemma4_normalises_values_too():
    """Gemma-4-31B: q and k normed (one kernel's time), v normed (one) beside its sandwich norms (two): 4 + 1 + 1 + 2
    kernels a layer."""
    cm, decode = elementwise("google/gemma-4-31B-it", tokens=1, context=1024)
    layers = load_model("google/gemma-4-31B-it").num_layers
    assert decode.launch_s == pytest.approx(layers * 8 * cm.eff.kernel_launch_s)


def test_unfused_engine_scales_the_extra_norms_as_plain_norms():
    """hf-eager: transformers runs each norm as its own ops; a norm with no residual add (the q / k norms) moves its
    own counted factor (9.05x its read and write), the two add + norms theirs (4.2x)."""
    _, op = elementwise("Qwen/Qwen3-8B", engine="hf-eager")
    unfused = load_engine("hf-eager").unfused_elementwise
    assert unfused.plain_norm == 9.05
    per_layer = (10 * 4096 * unfused.norm + 2 * 40 * 128 * unfused.plain_norm + 2 * 40 * 128 * unfused.rope
                 + 3 * 12288 * unfused.activation)
    assert op.bytes == pytest.approx(TOKENS * 36 * ELEMENT * per_layer)


def test_qwen3_layer_of_transformers_moves_what_the_cost_model_says():
    """A check, not a fit: transformers' Qwen3DecoderLayer on the meta device (benchmarks/count_eager_elementwise.py)
    moves the cost model's hf-eager elementwise bytes to within 2 %, and a plain RMSNorm its profile's factor."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    counter = load_benchmark("count_eager_elementwise")
    assert counter.check_layer(256, "Qwen3-8B")["ratio"] == pytest.approx(1.0, abs=0.02)
    counted = counter.count(256, counter.SHAPES["Llama-3-8B"])["plain_norm"]
    assert counted == pytest.approx(load_engine("hf-eager").unfused_elementwise.plain_norm, rel=0.02)


def test_logit_softcap_adds_three_passes_over_the_logits_after_the_lm_head():
    """Gemma-2-27B (final_logit_softcapping 30 by its class's default; vocab 256,000): a soft cap's division, tanh and
    product each read and write the logits (bf16), three kernels, their time added after the LM head's GEMM."""
    model = load_model("google/gemma-2-27b-it")
    assert model.logit_softcap and not load_model("google/gemma-3-27b-it").logit_softcap
    hw, quant, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    shape = BatchShape.uniform(64, 1, 1024)  # a decode step of 64 sequences: 64 tokens' logits
    capped = CostModel(model, hw, quant, engine)
    plain = CostModel(model.model_copy(update={"logit_softcap": False}), hw, quant, engine)
    head = {op.name: op for op in capped.iteration(shape).operators}["lm_head"]
    base = {op.name: op for op in plain.iteration(shape).operators}["lm_head"]
    softcap_bytes = 3 * 2 * 64 * 256000 * ELEMENT
    assert head.bytes - base.bytes == pytest.approx(softcap_bytes)
    assert head.time_s - base.time_s == pytest.approx(capped.memory_s(softcap_bytes) + 3 * capped.eff.kernel_launch_s)


def test_kimi_int4_checkpoint_keeps_its_attention_bf16():
    """Kimi-K2.5's native format (bf16-w4a16-g32): its 60 MoE layers' 384 routed experts of 3 x 7,168 x 2,048 weights
    in symmetric INT4 groups of 32 (0.5 + 2/32 bytes a weight), everything else BF16; against w4a16-g32 everywhere the
    difference is the non-routed linear weights at 2 - 0.5625 bytes, against BF16 everywhere the routed ones."""
    from phasewise.perf.memory import weight_bytes_per_gpu

    m = load_model("moonshotai/Kimi-K2.5")
    native, everywhere = load_quant(m.default_precision), load_quant("w4a16-g32")
    assert m.default_precision == "bf16-w4a16-g32" and native.experts_scheme().weight_bytes_per_param == 0.5625
    routed = 60 * 384 * 3 * 7168 * 2048
    bf16 = load_quant("bf16")
    by_hand = {q: weight_bytes_per_gpu(m, q, 1, 1) for q in (native, everywhere, bf16)}
    assert by_hand[bf16] - by_hand[native] == pytest.approx(routed * (2 - 0.5625), rel=1e-12)
    # per layer the latent attention's q_a, q_b, kv_a, kv_b and o (61 layers); per MoE layer the shared expert (60;
    # its router is BF16 in both: the engines keep it unquantized); the dense first layer's MLP
    attention = 7168 * 1536 + 1536 * 64 * 192 + 7168 * 576 + 512 * 64 * 256 + 64 * 128 * 7168
    other = 61 * attention + 60 * 3 * 7168 * 2048 + 3 * 7168 * 18432
    assert by_hand[native] - by_hand[everywhere] == pytest.approx(other * (2 - 0.5625), rel=1e-12)
    cm = CostModel(m, load_hardware("b200"), native, load_engine("vllm"), tp=8)
    assert (cm.quant.compute_dtype, cm.expert_quant.weight_dtype) == ("bf16", "int4")
