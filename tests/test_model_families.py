"""Model families as config.json describes them: multi-head latent attention (DeepSeek-V3, Kimi-K2), and the
families and fields the parser does not model, refused by name instead of costed as Llama."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

DEEPSEEK = "deepseek-ai/DeepSeek-V3"


def test_deepseek_v3_parameter_counts_match_its_technical_report():
    """arXiv 2412.19437: 671B total parameters, 37B activated per token (MTP module excluded)."""
    m = load_model(DEEPSEEK)
    assert m.latent_attention and m.head_dim == 192 and m.v_dim == 128
    assert m.total_params == pytest.approx(671e9, rel=0.01)
    assert m.active_params == pytest.approx(37e9, rel=0.03)
    assert (m.num_moe_layers, m.mtp_layers) == (58, 1)
    assert load_model("deepseek-ai/DeepSeek-R1").total_params == m.total_params


def test_kimi_k2_is_a_trillion_parameter_latent_attention_model():
    """moonshotai's model card: 1T total, 32B activated."""
    m = load_model("moonshotai/Kimi-K2-Instruct")
    assert m.total_params == pytest.approx(1.0e12, rel=0.04)
    assert m.active_params == pytest.approx(32e9, rel=0.04)


def test_latent_kv_cache_is_576_elements_per_token_and_layer_on_every_tp_rank():
    """DeepSeek-V3's cache: kv_lora_rank 512 + RoPE key 64 per token and layer (70,272 bytes per token in
    BF16 over 61 layers), not 2 x 128 heads x head_dim; every TP rank holds the whole latent."""
    m, bf16 = load_model(DEEPSEEK), load_quant("bf16")
    assert kv_bytes_per_token(m, bf16, 1, 1) == 70_272
    assert kv_bytes_per_token(m, bf16, 8, 1) == 70_272
    as_plain_attention = 2 * 128 * (7168 // 128) * 2 * 61  # the old misparse: MHA with head_dim 56
    assert as_plain_attention / kv_bytes_per_token(m, bf16, 1, 1) == pytest.approx(24.9, abs=0.1)


def _cost(model: str, tp: int = 8, precision: str = "fp8") -> CostModel:
    return CostModel(load_model(model), load_hardware("h200-sxm"), load_quant(precision), load_engine("sglang"), tp=tp)


def test_latent_decode_reads_the_latent_once_for_all_heads():
    """Absorbed decode: attention bytes grow by 576 x 2 bytes per cached token and layer, whatever the heads."""
    cm = _cost(DEEPSEEK)
    short = cm.iteration(BatchShape.uniform(32, 1, 1024))
    long = cm.iteration(BatchShape.uniform(32, 1, 9216))
    attention = {op.name: op for op in long.operators}["attention"].bytes - \
        {op.name: op for op in short.operators}["attention"].bytes
    assert attention == pytest.approx(32 * 8192 * 576 * 2 * 61, rel=1e-9)
    assert long.latency_s > short.latency_s


def test_latent_prefill_up_projects_every_key_and_decode_absorbs():
    """Prefill FLOPs per (query, key) pair and head: 2 x (192 + 128); decode: 2 x (576 + 512) over the latent."""
    cm = _cost(DEEPSEEK, tp=1, precision="bf16")
    assert cm.attention.flops_per_pair == 2 * 128 * (192 + 128)
    assert cm.attention.decode_flops_per_pair == 2 * 128 * (576 + 512)

    def attention_flops(prompt: int) -> float:
        return {op.name: op for op in cm.iteration(BatchShape.uniform(1, prompt, 0)).operators}["attention"].flops

    # 4x the prompt: 16x the (query, key) pairs but 4x the keys to up-project, so between the two
    assert 4 < attention_flops(4096) / attention_flops(1024) < 16


def test_gqa_models_keep_their_kv_and_costs():
    m = load_model("meta-llama/Llama-3.1-8B")
    assert not m.latent_attention
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 2 * 8 * 128 * 2 * 32
    assert kv_bytes_per_token(m, load_quant("bf16"), 2, 1) == 2 * 4 * 128 * 2 * 32


def test_deepseek_v3_fits_one_h200_node_in_fp8_not_in_bf16():
    m, hw = load_model(DEEPSEEK), load_hardware("h200-sxm")
    assert memory_fit(m, hw, load_quant("fp8"), tp=8).fits
    assert not memory_fit(m, hw, load_quant("bf16"), tp=8).fits


def _write(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


LLAMA = {"model_type": "llama", "hidden_size": 1024, "num_attention_heads": 8, "num_hidden_layers": 2,
         "intermediate_size": 4096, "vocab_size": 1000}


@pytest.mark.parametrize("change, match", [
    ({"model_type": "mpt"}, "unknown model_type 'mpt' \\(supported: llama"),
    ({"model_type": "mamba"}, "model_type .mamba. is not modelled yet \\(state-space"),
    ({"model_type": "gemma2", "use_bidirectional_attention": True}, "field use_bidirectional_attention"),
    ({"model_type": "gemma3_text", "sliding_window": 64, "sliding_window_pattern": 0},
     "field sliding_window_pattern must be a positive integer"),
    ({"model_type": "llama4_text", "no_rope_layers": [1, 0, 1]}, "field no_rope_layers must list one 0 or 1 per layer"),
    ({"model_type": "llama4_text", "no_rope_layers": [1, "a"]}, "field no_rope_layers must list one 0 or 1 per layer"),
    ({"model_type": "llama4_text", "attention_chunk_size": -1}, "field attention_chunk_size must be a positive integer"),
    ({"model_type": "mistral", "sliding_window": "wide"}, "field sliding_window must be a positive integer"),
    ({"model_type": "llama4_text", "num_local_experts": 4, "moe_layers": [0, 5]},
     "field moe_layers must list layer indices in 0..1"),
    ({"model_type": "llama4_text", "layer_types": ["chunked_attention", "linear_attention"]},
     "field layer_types \\(linear_attention"),
    ({"model_type": "minimax"}, "missing field attn_type_list or layer_types"),
    ({"index_topk": 2048}, "field index_topk is not modelled for model_type 'llama'"),
    ({"model_type": "qwen3_next"}, "missing field full_attention_interval"),
    ({"kv_lora_rank": 512}, "field kv_lora_rank is not modelled for model_type 'llama'"),
    ({"layer_types": ["linear_attention", "full_attention"]}, "field layer_types \\(linear_attention: gated DeltaNet or "
                                                               "lightning attention, read for model_type qwen3_next"),
    ({"layer_types": ["sliding_attention", "full_attention"]}, "sliding_attention without a sliding_window"),
    ({"sliding_window_pattern": 6}, "field sliding_window_pattern"),
    ({"model_type": None}, "missing field model_type"),
    # a config fuzz found these failing with a TypeError / ZeroDivisionError instead of naming the field
    ({"model_type": "minimax_m2", "attn_type_list": 7}, r"field attn_type_list must be a list of 0 \(lightning\)"),
    ({"layer_types": 3}, "field layer_types must be a list of each layer's kind"),
    ({"layer_types": ["full_attention", {}]}, "field layer_types must name each layer's kind as a string"),
    ({"model_type": "qwen2_moe", "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [[0]]},
     "field mlp_only_layers must list layer indices in 0.."),
    ({"model_type": "qwen3_next", "full_attention_interval": 0},
     "field full_attention_interval must be a positive integer"),
    # a typo the MoE and window parsers would walk layer by layer (it hung them): refused at once
    ({"model_type": "qwen2_moe", "num_hidden_layers": 10**12, "num_experts": 8, "num_experts_per_tok": 2},
     r"field num_hidden_layers must be at most 100,000 \(got 1000000000000\)"),
    # fields a family's engines do not build, which the parser had costed (issue 14's audit): experts in a dense
    # family (71 -> 424 MB of weights), a shared expert in Qwen3-MoE (71.2 -> 83.8 MB), an activation not modelled
    ({"num_experts": 8, "num_experts_per_tok": 2},
     "field num_experts \\(experts: model_type 'llama' builds one dense MLP a layer\\) is not modelled"),
    ({"model_type": "mistral", "num_local_experts": 8, "num_experts_per_tok": 2}, "field num_local_experts \\(experts"),
    ({"model_type": "qwen3_moe", "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 512,
      "shared_expert_intermediate_size": 1024},
     "field shared_expert_intermediate_size \\(a shared expert: model_type 'qwen3_moe' routes to its experts alone"),
    # the MoE families whose engines build no shared expert either (vLLM mixtral.py, olmoe.py, phimoe.py, granitemoe.py,
    # gpt_oss.py, minimax_m2.py, jamba.py, lfm2_moe.py): each shared-expert name the parser reads is refused
    *[({"model_type": family, "num_local_experts": 8, "num_experts": 8, "num_experts_per_tok": 2, field: width},
       f"field {field} \\(a shared expert: model_type '{family}' routes to its experts alone\\)")
      for family, field, width in (("mixtral", "shared_expert_intermediate_size", 1024),
                                   ("olmoe", "shared_intermediate_size", 1024), ("phimoe", "n_shared_experts", 1),
                                   ("granitemoe", "shared_intermediate_size", 1024),
                                   ("gpt_oss", "shared_expert_intermediate_size", 1024),
                                   ("minimax_m2", "n_shared_experts", 1),
                                   ("jamba", "shared_expert_intermediate_size", 1024),
                                   ("lfm2_moe", "n_shared_experts", 1))],
    ({"model_type": "gemma", "hidden_activation": "relu2"},
     "field hidden_activation 'relu2' is not modelled for model_type 'gemma' \\(allowed: gelu_pytorch_tanh_gated, "
     "silu, swiglu, swish, gelu, gelu_pytorch_tanh, gelu_new, gelu_fast\\)"),
    ({"hidden_act": "relu2"}, "field hidden_act 'relu2' is not modelled for model_type 'llama'"),
])
def test_configs_it_cannot_cost_are_refused_by_name(tmp_path, change, match):
    cfg = {k: v for k, v in {**LLAMA, **change}.items() if v is not None}
    with pytest.raises(PhasewiseError, match=match) as err:
        load_model(_write(tmp_path, cfg))
    assert "\n" not in str(err.value)


def test_moe_fields_where_the_family_builds_them_are_read(tmp_path):
    """The refusals above name fields only where a family's engines do not build them: Qwen2-MoE keeps its shared
    expert, Qwen3-MoE without one loads, Gemma's GeGLU activation is read."""
    moe = {**LLAMA, "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 512}
    qwen2 = load_model(_write(tmp_path, {**moe, "model_type": "qwen2_moe", "shared_expert_intermediate_size": 1024}))
    assert (qwen2.num_experts, qwen2.shared_expert_intermediate_size) == (8, 1024)
    qwen3 = load_model(_write(tmp_path, {**moe, "model_type": "qwen3_moe"}))
    assert (qwen3.num_experts, qwen3.shared_expert_intermediate_size) == (8, 0)
    # Granite's shared variant builds its shared MLP (vLLM granitemoeshared.py shared_mlp), MiniMax-Text-01 its
    # shared_mlp where shared_intermediate_size > 0 (minimax_text_01.py)
    granite = load_model(_write(tmp_path, {**LLAMA, "model_type": "granitemoeshared", "num_local_experts": 8,
                                           "num_experts_per_tok": 2, "shared_intermediate_size": 1024}))
    assert (granite.num_experts, granite.shared_expert_intermediate_size) == (8, 1024)
    assert load_model(_write(tmp_path, {**LLAMA, "model_type": "gemma",
                                        "hidden_activation": "gelu_pytorch_tanh"})).mlp_gated


def test_latent_attention_ignores_a_sliding_window_as_the_engines_do(tmp_path):
    """vLLM's MLAAttention builds its kernel with sliding_window=None and a full-attention KV spec (and
    DeepseekV3Config has no such field): a sliding_window in a deepseek_v3 config changes nothing. It had been costed
    as a 4,096-token window on every layer (DeepSeek-V3 on 8 x H200 at 64 x 64k tokens: 33.6 ms a decode step
    instead of 115 ms, and fitting where it does not)."""
    latent = {**LLAMA, "model_type": "deepseek_v3", "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
              "qk_nope_head_dim": 128, "v_head_dim": 128, "max_position_embeddings": 163840}
    plain = load_model(_write(tmp_path, latent))
    windowed = load_model(_write(tmp_path, {**latent, "sliding_window": 4096}))
    assert windowed.sliding_window is None and windowed == plain


def test_full_attention_layer_types_are_accepted(tmp_path):
    m = load_model(_write(tmp_path, {**LLAMA, "layer_types": ["full_attention", "full_attention"]}))
    assert m.num_layers == 2


def test_a_latent_config_missing_its_ranks_names_the_field(tmp_path):
    cfg = {**LLAMA, "model_type": "deepseek_v3", "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}
    with pytest.raises(PhasewiseError, match="missing field kv_lora_rank"):
        load_model(_write(tmp_path, cfg))


def test_features_not_modelled_for_latent_attention_say_so():
    from phasewise.perf.mapping import MappedCost
    from phasewise.specs.mappings import load_mapping

    cm = CostModel(load_model(DEEPSEEK), load_hardware("halo-2.5d"), load_quant("bf16"), load_engine("vllm"))
    with pytest.raises(PhasewiseError, match="latent attention"):
        MappedCost(cm, load_mapping("halo"))


def test_a_checkpoint_runs_in_its_native_format_unless_told_otherwise():
    """DeepSeek-V3 ships block-scaled FP8 (quantization_config weight_block_size [128, 128]): that is its default
    --precision, as engines load it; re-quantized aliases carry their own format."""
    assert load_model(DEEPSEEK).default_precision == "fp8-block"
    assert load_model("Qwen/Qwen3-32B").default_precision == "bf16"
    assert load_model("Qwen/Qwen3-32B-FP8").default_precision == "fp8-block"
    assert load_model("nvidia/Qwen3-32B-NVFP4").default_precision == "nvfp4"
    # INT4 routed experts in groups of 32, the rest BF16
    assert load_model("moonshotai/Kimi-K2-Thinking").default_precision == "bf16-w4a16-g32"
    assert load_model("moonshotai/Kimi-K2-Instruct").default_precision == "fp8-block"
    from phasewise.perf import estimate

    native = estimate(DEEPSEEK, "h200-sxm", tp=8)
    assert native.memory.fits and native.cost_model.quant.weight_dtype == "fp8"
    assert not estimate(DEEPSEEK, "h200-sxm", tp=8, precision="bf16").memory.fits


@pytest.mark.parametrize("qc, precision", [
    ({"quant_method": "fp8", "weight_block_size": [128, 128]}, "fp8-block"),
    ({"quant_method": "fp8"}, "fp8"),
    ({"quant_method": "mxfp4"}, "bf16-mxfp4"),  # Mxfp4Config: the MoE experts only
    ({"quant_method": "modelopt", "quant_algo": "NVFP4"}, "nvfp4"),
    ({"quant_method": "awq", "bits": 4}, "w4a16"),
])
def test_quantization_configs_name_their_precision(tmp_path, qc, precision):
    assert load_model(_write(tmp_path, {**LLAMA, "quantization_config": qc})).default_precision == precision


def test_an_unknown_quantization_method_is_refused_by_name(tmp_path):
    with pytest.raises(PhasewiseError, match="quant_method 'bitsandbytes' is not modelled .*give --precision"):
        load_model(_write(tmp_path, {**LLAMA, "quantization_config": {"quant_method": "bitsandbytes"}})
                   ).default_precision


def test_gemma_is_parsed_with_its_gated_gelu_mlp_and_tied_embeddings(tmp_path):
    cfg = {"model_type": "gemma", "hidden_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 16,
           "head_dim": 256, "num_hidden_layers": 28, "intermediate_size": 24576, "vocab_size": 256000,
           "hidden_act": "gelu"}
    m = load_model(_write(tmp_path, cfg))
    assert m.mlp_gated and m.tie_embeddings and m.head_dim == 256
    assert m.total_params == pytest.approx(8.54e9, rel=0.01)  # Gemma-7B's model card: 8.54B parameters


GEMMA3_27B_TEXT = {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504, "model_type": "gemma3_text",
                   "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16,
                   "query_pre_attn_scalar": 168, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                   "sliding_window": 1024}


def test_gemma3_sparse_config_takes_the_config_class_defaults_and_its_five_to_one_windows(tmp_path):
    """google/gemma-3-27b-it's config.json names 10 text fields under a gemma3 wrapper; transformers'
    Gemma3TextConfig supplies the rest: vocab 262,208, GeGLU, tied embeddings, sliding_window_pattern 6 (layer i
    global when i + 1 is a multiple of 6: 10 of 62). The same file with layer_types spelled out parses the same."""
    wrapped = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
               "text_config": GEMMA3_27B_TEXT, "vision_config": {"hidden_size": 1152}}
    m = load_model(_write(tmp_path, wrapped))
    assert (m.vocab_size, m.head_dim, m.sliding_window, m.sliding_window_layers) == (262208, 128, 1024, 52)
    assert m.mlp_gated and m.tie_embeddings and m.max_position_embeddings == 131072
    assert m.total_params == pytest.approx(27.0e9, rel=0.01)  # the card's 27B, less its 0.4B vision encoder
    listed = {**GEMMA3_27B_TEXT, "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                                 for i in range(62)]}
    # the wrapper's vision_config adds its encoder's weights (specs/hf_vision.py), nothing else
    assert m.encoder_params > 0
    assert load_model(_write(tmp_path, listed)) == m.model_copy(update={"model_type": "gemma3_text",
                                                                         "vision": None})
    assert load_model("google/gemma-3-27b-it").sliding_window_layers == 52


def test_gemma2_alternates_local_and_global_layers():
    """transformers Gemma2Config: layer i windowed when i + 1 is odd: 23 of gemma-2-27b's 46 (27.2B parameters)."""
    m = load_model("google/gemma-2-27b-it")
    assert (m.sliding_window, m.sliding_window_layers, m.head_dim) == (4096, 23, 128)
    assert m.total_params == pytest.approx(27.2e9, rel=0.01)


def test_llama4_chunked_layers_moe_interleave_and_shared_expert_match_the_model_cards():
    """Llama 4 (transformers Llama4TextConfig): RoPE layers attend within 8,192-token chunks, every 4th (NoPE)
    globally: 36 of 48 chunked; Scout's 48 MoE layers of 16 experts top-1 plus a shared expert (107.8 B text
    parameters, the card's 109 B with the vision encoder; 17 B active), Maverick's 24 of 128 experts with dense
    16,384-wide MLPs between them (400 B, 17 B active). Chunked layers hold a chunk's worth of KV at most: per
    sequence 3 x min(context, 8,192) tokens beyond the 12 global layers' context."""
    from phasewise.perf.window_kv import kv_window_terms

    scout, maverick = (load_model(f"meta-llama/Llama-4-{name}-Instruct") for name in ("Scout-17B-16E",
                                                                                          "Maverick-17B-128E"))
    for m in (scout, maverick):
        assert (m.sliding_window, m.sliding_window_layers, m.chunked_attention) == (8192, 36, True)
        assert m.active_params == pytest.approx(17.2e9, rel=0.01)
        assert kv_window_terms(m, attention_tp=1) == (1.0, 3.0, 8192, False)
        assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 12 * 2 * 8 * 128 * 2
    assert (scout.num_moe_layers, scout.num_experts, scout.intermediate_size) == (48, 16, 0)
    assert scout.shared_expert_intermediate_size == scout.expert_intermediate_size == 8192
    assert scout.total_params == pytest.approx(107.8e9, rel=0.005)
    assert (maverick.num_moe_layers, maverick.num_experts, maverick.intermediate_size) == (24, 128, 16384)
    assert maverick.total_params == pytest.approx(400.7e9, rel=0.005)


def test_glm45_air_is_a_deepseek_style_moe_under_wide_grouped_query_attention():
    """zai-org/GLM-4.5-Air (model card: 106B total, 12B active): 128 routed experts top-8 plus a shared one in 45 of
    46 layers, 96 query heads of 128 over a 4,096 hidden, 8 KV heads: 46 x 2 x 8 x 128 x 2 bytes of KV per token."""
    m = load_model("zai-org/GLM-4.5-Air")
    assert (m.num_moe_layers, m.num_experts, m.experts_per_token, m.shared_expert_intermediate_size) == (45, 128, 8,
                                                                                                        1408)
    assert m.q_size == 96 * 128 and m.total_params == pytest.approx(106.9e9, rel=0.005)
    assert m.active_params - m.embedding_params * 2 == pytest.approx(12.2e9, rel=0.01)
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 46 * 2 * 8 * 128 * 2


def test_phi4_is_llama_shaped():
    """microsoft/phi-4 (card: 14B): 40 layers of 40 query heads over 10 KV heads, 17,920-wide SwiGLU, no window."""
    m = load_model("microsoft/phi-4")
    assert m.total_params == pytest.approx(14.66e9, rel=0.005) and m.sliding_window is None and m.mlp_gated
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 40 * 2 * 10 * 128 * 2


def test_hybrid_windowed_layers_hold_the_last_window_of_each_sequence(tmp_path):
    """Gemma-3-27B, BF16, TP1: per token 10 full layers x K and V of 16 heads x 128 x 2 bytes = 80 KiB; per
    sequence its 52 windowed layers hold min(context, 1,024) tokens more, 5.2 full-layer tokens each: at 8,192
    prompt tokens a sequence holds 8,193 + 5.2 x 1,024 = 13,518 tokens' KV, at 512 only 512 x 6.2 = 3,175."""
    from phasewise.perf.estimate import estimate
    from phasewise.perf.window_kv import kv_token_equivalents, kv_window_terms

    m = load_model("google/gemma-3-27b-it")
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 10 * 2 * 16 * 128 * 2
    terms = kv_window_terms(m, attention_tp=1)
    assert terms == (1.0, 5.2, 1024, False)
    assert kv_token_equivalents(8193, terms) == pytest.approx(13517.8)
    assert kv_token_equivalents(512, terms) == pytest.approx(3174.4)
    # vLLM pads the 52 windowed layers to 6 KV cache groups of 10 (perf/window_kv.py vllm_layer_groups): 8,193 +
    # 6 x 1,024 = 14,337, in 16-token blocks 14,352
    mem = estimate("google/gemma-3-27b-it", "h100-sxm", prompt_len=8192).to_dict()["memory"]
    assert mem["kv_tokens_per_sequence"] == 14352
    assert mem["max_batch_at_context"] == mem["kv_capacity_tokens"] // 16 * 16 // 14352
    # every layer windowed (Mistral-7B-v0.1, 4,096): a sequence holds its last window only
    assert kv_token_equivalents(8193, kv_window_terms(load_model("mistralai/Mistral-7B-v0.1"), attention_tp=1)) == 4096


def test_a_hybrid_sequence_holds_its_windowed_layers_blocks_in_the_simulator():
    """One request alone, 2,000 prompt tokens and 8 out, 16-token blocks, conservation checked throughout: Gemma-3-27B
    holds 2,000 + 6 x 1,024 = 8,144 tokens' KV at admission under vLLM's padded KV cache groups (509 blocks), at most
    8,152 (510) by its last step;
    gpt-oss-20b (12 windowed layers per 12 full, a 128-token window) 2,000 + 128 (133 blocks)."""
    from phasewise.sim.api import run

    for model, hardware, admitted, last in (("google/gemma-3-27b-it", "h100-sxm", 509, 510),
                                            ("openai/gpt-oss-20b", "b200", 133, 134)):
        stats = run(model=model, hardware=hardware, rate=1, requests=1, isl=2000, osl=8,
                    check_invariants=True).instances[0]
        assert admitted <= stats.kv_peak_blocks <= last, model


def test_a_hybrid_stack_under_kv_pressure_keeps_its_blocks_within_the_cache():
    """Gemma-3-27B on an H200 at half its memory, the bundled Mooncake excerpt (long prompts): each decode step adds up
    to 6.2 full-layer tokens per sequence below the window, not 1, so the decode runs and the admission bound must
    count that (they had overflowed the cache by 25 blocks); preemption makes room and every request completes."""
    from phasewise.sim.api import run

    result = run(model="google/gemma-3-27b-it", hardware="h200-sxm", trace="mooncake", trace_limit=60, rate=10,
                 memory_fraction=0.5, check_invariants=True)
    assert result.summary()["completed"] == 60 and result.instances[0].preemptions >= 1


def test_gpt_oss_counts_match_its_model_card():
    """arXiv 2508.10925: gpt-oss-120b 116.8B total and 5.1B active parameters (the card counts active ones
    without the input embedding, a lookup), gpt-oss-20b 20.9B and 3.6B; both MXFP4 experts natively, the rest BF16."""
    for name, total, active in (("openai/gpt-oss-120b", 116.8e9, 5.13e9), ("openai/gpt-oss-20b", 20.9e9, 3.61e9)):
        m = load_model(name)
        assert m.total_params == pytest.approx(total, rel=0.005)
        assert m.active_params - m.embedding_params == pytest.approx(active, rel=0.01)
        assert m.default_precision == "bf16-mxfp4" and m.window_layer_share == 0.5 and m.window_all_layers is None


def test_hybrid_windows_count_only_full_layers_kv_per_token():
    """gpt-oss-120b: 18 full layers x K and V of 8 heads x 64 x 2 bytes = 36,864 bytes per token; the 18 windowed
    layers keep 128 tokens per sequence whatever the context."""
    assert kv_bytes_per_token(load_model("openai/gpt-oss-120b"), load_quant("bf16"), 1, 1) == 18 * 2 * 8 * 64 * 2


def test_hybrid_window_layers_stop_growing_past_the_window():
    cm = CostModel(load_model("openai/gpt-oss-120b"), load_hardware("b200"), load_quant("mxfp4"),
                   load_engine("vllm"))

    def attention_bytes(context: int) -> float:
        return {op.name: op for op in cm.iteration(BatchShape.uniform(64, 1, context)).operators}["attention"].bytes

    # past the window, each extra cached token is read by the 18 full layers only (of 36)
    grow = attention_bytes(8192) - attention_bytes(4096)
    one_layer = 64 * 4096 * 2 * 8 * 64 * 2  # 64 sequences x 4096 more tokens x K and V bytes
    assert grow == pytest.approx(18 * one_layer, rel=1e-9)
    shape = BatchShape.uniform(64, 1, 4096)
    assert cm.fast(shape)[0] == pytest.approx(cm.iteration(shape).latency_s, rel=1e-12)


def test_a_hybrid_model_simulates_with_its_invariants():
    from phasewise.sim.api import run

    result = run(model="openai/gpt-oss-20b", hardware="b200", rate=5, requests=40, isl=512, osl=64,
                 check_invariants=True).summary()
    assert result["completed"] == 40


def test_layer_types_must_cover_every_layer(tmp_path):
    cfg = {**LLAMA, "sliding_window": 64, "layer_types": ["sliding_attention"]}
    with pytest.raises(PhasewiseError, match="layer_types lists 1 layers, num_hidden_layers is 2"):
        load_model(_write(tmp_path, cfg))


def test_minimax_m2_is_a_full_attention_moe_and_linear_attention_is_still_refused(tmp_path):
    """MiniMax's model card: 230B total, 10B activated; its attn_type_list is all 1 (softmax attention)."""
    m = load_model("MiniMaxAI/MiniMax-M2.5")
    assert m.total_params == pytest.approx(230e9, rel=0.01)
    assert m.active_params - m.embedding_params == pytest.approx(10e9, rel=0.05)
    cfg = {**LLAMA, "model_type": "minimax_m2", "attn_type_list": [0, 1]}
    with pytest.raises(PhasewiseError, match="field attn_type_list"):
        load_model(_write(tmp_path, cfg))


def test_minimax_qk_norm_spans_every_head_so_tp_adds_one_all_reduce_per_layer(tmp_path):
    """MiniMax-M2's per_layer QK norm is one RMSNorm over all heads' q (and k) elements (vLLM's
    MiniMaxText01RMSNormTP): TP ranks all-reduce each token's two FP32 sums of squares once per layer."""
    minimax = "MiniMaxAI/MiniMax-M2.5"
    assert load_model(minimax).qk_norm_across_heads
    shape = BatchShape.uniform(4, 1, 1024)
    ops = {op.name: op for op in _cost(minimax, tp=4).iteration(shape).operators}
    qk = ops["qk_norm_allreduce"]
    assert qk.count == 62 and qk.bytes == pytest.approx(62 * 4 * 2 * 4)
    assert "qk_norm_allreduce" not in {op.name for op in _cost(minimax, tp=1).iteration(shape).operators}
    per_head = {**LLAMA, "model_type": "qwen3", "use_qk_norm": True, "qk_norm_type": "per_head"}
    assert not load_model(_write(tmp_path, per_head)).qk_norm_across_heads


def test_mxfp4_runs_on_hopper_and_ampere_through_the_bf16_path():
    """gpt-oss's native MXFP4 on a chip without an FP4 tensor path (H100, A100): the weights stay 4-bit in memory
    and kernels expand them to BF16 in the GEMM main loop (quant.yaml mxfp4 without_compute_path: vLLM's Triton
    matmul_ogs on Hopper); on Blackwell the FP4 path. A format without a declared expansion (NVFP4) still fails."""
    model, mxfp4 = load_model("openai/gpt-oss-120b"), load_quant("mxfp4")
    b200, h100 = load_hardware("b200"), load_hardware("h100-sxm")
    assert mxfp4.on(b200) is mxfp4
    expanded = mxfp4.on(h100)
    assert (expanded.compute_dtype, expanded.weight_dtype) == ("bf16", "fp4") and expanded.dequant_ops_per_weight == 4
    assert expanded.weight_bytes_per_param == mxfp4.weight_bytes_per_param  # the same bytes stream
    engine = load_engine("vllm")
    on_h100 = CostModel(model, h100, mxfp4, engine)
    assert on_h100.quant.compute_dtype == "bf16"
    assert memory_fit(model, h100, mxfp4, 1, 1).weight_bytes == memory_fit(model, b200, mxfp4, 1, 1).weight_bytes
    # the expansion is CUDA-core work on top of the BF16 GEMM: a large prefill costs more than the same GEMMs
    # with no expansion, and decode still streams the 4-bit weights
    plain = CostModel(model, h100, expanded.model_copy(update={"dequant_ops_per_weight": 0.0}), engine)
    prefill = BatchShape.uniform(1, 4096, 0)
    assert on_h100.fast(prefill)[0] > plain.fast(prefill)[0]
    decode = BatchShape.uniform(1, 1, 1024)
    assert on_h100.fast(decode)[3] == pytest.approx(plain.fast(decode)[3])  # the same bytes
    with pytest.raises(PhasewiseError, match="has no fp4 compute path"):
        CostModel(model, h100, load_quant("nvfp4"), engine)


@pytest.mark.parametrize("hardware", ["h100-sxm", "a100-sxm-80gb"])
def test_weight_only_kernels_pad_a_small_batch_to_their_mma_tile(hardware):
    """Hopper's and Ampere's GEMM ramp (gemm_half_rows 76.5) was fitted on cuBLAS BF16 GEMMs at 1, 512 and 4,096
    rows; Marlin-style weight-only kernels (w4a16, w8a16, MXFP4 expanded to BF16) pad a small batch to their m16
    MMA tile (quant.yaml kernel_half_rows: 16; Marlin's near-ideal 4x up to batch 16-32). Their MMAs follow that
    tile, the expansion's CUDA-core work is added as before, and BF16 GEMMs keep the chip's fitted ramp."""
    hw, engine = load_hardware(hardware), load_engine("vllm")
    model = load_model("meta-llama/Llama-3.1-8B")
    assert hw.efficiency.gemm_half_rows > 16
    assert load_quant("w4a16").kernel_half_rows == 16 and load_quant("mxfp4").on(hw).kernel_half_rows == 16
    assert load_quant("mxfp4").on(load_hardware("b200")).kernel_half_rows is None  # the FP4 tensor path: the chip's
    rows = 16
    decode = BatchShape.uniform(rows, 1, 1024)
    peak = hw.peak("bf16")
    gemm_eff = hw.efficiency.gemm_efficiency_max * engine.compute_efficiency

    def qkv(quant):
        return {op.name: op for op in CostModel(model, hw, quant, engine).iteration(decode).operators}["qkv_proj"]

    w4 = load_quant("w4a16")
    mma_only = qkv(w4.model_copy(update={"dequant_ops_per_weight": 0.0}))
    assert mma_only.compute_s == pytest.approx(mma_only.flops / (peak * gemm_eff * rows / (rows + 16)))
    assert qkv(w4).compute_s > mma_only.compute_s  # the expansion still costs CUDA-core time
    bf16 = qkv(load_quant("bf16"))
    assert bf16.compute_s == pytest.approx(
        bf16.flops / (peak * gemm_eff * rows / (rows + hw.efficiency.gemm_half_rows)))


@pytest.mark.parametrize("hardware, engine", [("b200", "vllm"), ("h100-sxm", "trtllm-pytorch")])
def test_hybrid_decode_runs_are_costed_as_fast_does_step_by_step(hardware, engine):
    """gpt-oss's decode runs through HybridDecodeLine (numpy over the steps) give fast()'s latency at every step,
    with runs crossing the 128-token window and past it, and the first step's (latency, flops, bytes)."""
    from phasewise.perf.decode_line import HybridDecodeLine

    cm = CostModel(load_model("openai/gpt-oss-120b"), load_hardware(hardware), load_quant("mxfp4"),
                   load_engine(engine))
    assert_decode_runs_match_fast(cm, HybridDecodeLine, (1, 17, 256), (20, 127, 2000), 300, (0, 1, 107, 108, 299))
