"""More model families from their config.json (transformers 5.25's config classes): dense Llama-shaped ones with
their own window rules (Olmo 3, EXAONE 4, SmolLM3), MLPs that are not gated (Phi-2, StarCoder2), MoE families that
name their experts their own way (ERNIE 4.5, OLMoE, Phi-3.5-MoE, Granite MoE, dots.llm1). Each checkpoint's shapes
as its config.json states them; its parameter count as its model card or safetensors index publishes it."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hf_config import from_hf_config


def _load(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return load_model(str(path))


def _dense(model_type, hidden, heads, kv_heads, inter, layers, vocab, **extra):
    return {"model_type": model_type, "hidden_size": hidden, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "intermediate_size": inter, "num_hidden_layers": layers,
            "vocab_size": vocab, **extra}


def _non_embedding(m):
    return m.total_params - m.embedding_params * (1 if m.tie_embeddings else 2)


@pytest.mark.parametrize("cfg, published, kv_layers", [
    # ByteDance-Seed/Seed-OSS-36B-Instruct: 80 query heads of 128 over a 5,120 hidden (q wider than the hidden);
    # safetensors total 36,151,104,512
    (_dense("seed_oss", 5120, 80, 8, 27648, 64, 155136, head_dim=128, tie_word_embeddings=False,
            attention_bias=True), 36.151e9, 64),
    # zai-org/GLM-4-32B-0414 (card: 32B; its sandwich norms and partial RoPE cost nothing of note)
    (_dense("glm4", 6144, 48, 2, 23040, 61, 151552, head_dim=128, partial_rotary_factor=0.5,
            tie_word_embeddings=False), 32.56e9, 61),
    # allenai/OLMo-2-0325-32B (card: 32B)
    (_dense("olmo2", 5120, 40, 8, 27648, 64, 100352, tie_word_embeddings=False), 32.23e9, 64),
    # ibm-granite/granite-3.3-8b-instruct (8.17B; its four scalar multipliers cost nothing)
    (_dense("granite", 4096, 32, 8, 12800, 40, 49159, tie_word_embeddings=True, embedding_multiplier=12.0,
            attention_multiplier=0.0078125, residual_multiplier=0.22, logits_scaling=16.0), 8.17e9, 40),
    # internlm/internlm3-8b-instruct (8.8B)
    (_dense("internlm3", 4096, 32, 2, 10240, 48, 128512, head_dim=128, qkv_bias=False, bias=False), 8.80e9, 48),
])
def test_llama_shaped_families_match_their_published_sizes(tmp_path, cfg, published, kv_layers):
    m = _load(tmp_path, cfg)
    assert m.mlp_gated and m.sliding_window is None and m.num_experts == 0
    assert m.total_params == pytest.approx(published, rel=0.003)
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == kv_layers * 2 * cfg["num_key_value_heads"] * head_dim * 2


def test_cohere_command_a_and_command_r(tmp_path):
    """CohereLabs/c4ai-command-a-03-2025 (cohere2; card: 111B): 64 layers, three in four in a 4,096-token window
    (sliding_window_pattern 4, as Cohere2Config derives layer_types), tied embeddings by the class's default;
    CohereForAI/c4ai-command-r-v01 (cohere; 35B): no window, 64 KV heads."""
    command_a = _load(tmp_path, _dense("cohere2", 12288, 96, 8, 36864, 64, 256000, sliding_window=4096,
                                       sliding_window_pattern=4))
    assert command_a.tie_embeddings and (command_a.sliding_window, command_a.sliding_window_layers) == (4096, 48)
    assert command_a.total_params == pytest.approx(111e9, rel=0.005)
    assert kv_bytes_per_token(command_a, load_quant("bf16"), 1, 1) == 16 * 2 * 8 * 128 * 2
    command_r = _load(tmp_path, _dense("cohere", 8192, 64, 64, 22528, 40, 256000, logit_scale=0.0625))
    assert command_r.tie_embeddings and command_r.sliding_window is None
    assert command_r.total_params == pytest.approx(34.98e9, rel=0.003)


def test_class_defaults_tie_the_embeddings_where_the_family_does(tmp_path):
    """HuggingFaceTB/SmolLM3-3B (safetensors 3,075,098,624) and baidu/ERNIE-4.5-0.3B-PT (0.36B) without a
    tie_word_embeddings field: their config classes tie by default (a Llama default would add a second embedding)."""
    smol = _load(tmp_path, _dense("smollm3", 2048, 16, 4, 11008, 36, 128256))
    assert smol.tie_embeddings and smol.total_params == pytest.approx(3.0751e9, rel=0.002)
    ernie = _load(tmp_path, _dense("ernie4_5", 1024, 16, 2, 3072, 18, 103424, head_dim=128))
    assert ernie.tie_embeddings and ernie.q_size == 2048 and ernie.total_params == pytest.approx(0.3607e9, rel=0.005)
    assert not _load(tmp_path, _dense("olmo2", 1024, 8, 8, 4096, 2, 1000)).tie_embeddings


def test_smollm3_windows_only_its_nope_layers_and_only_when_asked(tmp_path):
    """SmolLM3Config: no window unless use_sliding_window (absent: false), then on the NoPE layers only (every 4th by
    default: 9 of 36, or as no_rope_layers lists them, 0 = NoPE)."""
    base = _dense("smollm3", 2048, 16, 4, 11008, 36, 128256, sliding_window=4096)
    assert _load(tmp_path, base).sliding_window is None
    asked = _load(tmp_path, {**base, "use_sliding_window": True})
    assert (asked.sliding_window, asked.sliding_window_layers) == (4096, 9)
    listed = _load(tmp_path, {**base, "use_sliding_window": True, "no_rope_layers": [0, 1] * 18})
    assert listed.sliding_window_layers == 18
    with pytest.raises(PhasewiseError, match="field no_rope_layers must list 0 or 1 for each of the 36 layers"):
        _load(tmp_path, {**base, "use_sliding_window": True, "no_rope_layers": [1, 0]})


def test_olmo3_windows_three_layers_in_four_by_its_class_default(tmp_path):
    """Olmo3Config: without layer_types every 4th layer full, the others in a 4,096-token window, also when the
    file names no window (allenai/Olmo-3-32B-Think: 48 of 64 windowed, 32.2B); an explicit null window: none."""
    cfg = _dense("olmo3", 5120, 40, 8, 27648, 64, 100278, tie_word_embeddings=False)
    m = _load(tmp_path, cfg)
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 48)
    assert m.total_params == pytest.approx(32.23e9, rel=0.003)
    listed = ["sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(64)]
    assert _load(tmp_path, {**cfg, "sliding_window": 4096, "layer_types": listed}) == m
    assert _load(tmp_path, {**cfg, "sliding_window": None}).sliding_window is None
    # the KV a long sequence holds: 16 full layers' worth plus 48 layers' window
    bf16 = load_quant("bf16")
    assert kv_bytes_per_token(m, bf16, 1, 1) == 16 * 2 * 8 * 128 * 2


@pytest.mark.parametrize("pattern, layer_types", [("LLLG", None), (4, None), ("LLLG", "listed")])
def test_exaone4_reads_its_pattern_as_a_number_or_as_letters(tmp_path, pattern, layer_types):
    """LGAI-EXAONE/EXAONE-4.0-32B (card: 30.95B without embeddings): sliding_window_pattern "LLLG" (three local layers,
    one global, from layer 0; the last layer always global) or 4, or layer_types spelled out: 48 of 64 layers in a
    4,096-token window."""
    cfg = _dense("exaone4", 5120, 40, 8, 27392, 64, 102400, head_dim=128, tie_word_embeddings=False,
                 sliding_window=4096, sliding_window_pattern=pattern)
    if layer_types:
        cfg["layer_types"] = ["full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(64)]
    m = _load(tmp_path, cfg)
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 48)
    assert _non_embedding(m) == pytest.approx(30.95e9, rel=0.002)


def test_exaone4_odd_patterns(tmp_path):
    cfg = _dense("exaone4", 2048, 32, 8, 4096, 30, 102400, head_dim=64, tie_word_embeddings=True)
    # EXAONE-4.0-1.2B: no window at all (the class would divide by a zero pattern); card 1.07B without embeddings
    small = _load(tmp_path, {**cfg, "sliding_window": None})
    assert small.sliding_window is None and _non_embedding(small) == pytest.approx(1.07e9, rel=0.005)
    # "LG" over 5 layers: L G L G L -> the last one global: 2 local
    assert _load(tmp_path, {**cfg, "num_hidden_layers": 5, "sliding_window_pattern": "LG"}).sliding_window_layers == 2
    with pytest.raises(PhasewiseError, match="field sliding_window_pattern must be a positive integer or a string"):
        _load(tmp_path, {**cfg, "sliding_window_pattern": "LXG"})


def test_phi2_and_starcoder2_mlps_are_not_gated(tmp_path):
    """microsoft/phi-2 (2.78B: fc1 -> GELU -> fc2, two matrices a layer, not three) and bigcode/starcoder2-15b
    (15.96B; every layer in a 4,096-token window)."""
    phi = _load(tmp_path, _dense("phi", 2560, 32, 32, 10240, 32, 51200, hidden_act="gelu_new",
                                 partial_rotary_factor=0.4, tie_word_embeddings=False))
    assert not phi.mlp_gated and phi.total_params == pytest.approx(2.78e9, rel=0.005)
    star = _load(tmp_path, _dense("starcoder2", 6144, 48, 4, 24576, 40, 49152, sliding_window=4096,
                                  hidden_act="gelu_pytorch_tanh", tie_word_embeddings=False, use_bias=True))
    assert not star.mlp_gated and star.total_params == pytest.approx(15.96e9, rel=0.005)
    assert (star.sliding_window, star.sliding_window_layers) == (4096, None)  # every layer
    # the same shapes gated would cost a third more MLP FLOPs: the flag reaches the cost model
    hw, bf16, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    gated = phi.model_copy(update={"mlp_gated": True})
    flops = [CostModel(m, hw, bf16, engine).iteration(BatchShape.uniform(1, 2048, 0)).flops for m in (phi, gated)]
    assert flops[0] < flops[1]


def test_ernie45_moe_counts_its_own_expert_fields(tmp_path):
    """baidu/ERNIE-4.5-21B-A3B-PT: 64 experts top-6 (moe_num_experts, moe_k) and two shared ones of 1,536 in layers 1-27
    (moe_layer_start_index 1, end 27, interval 1), a dense first layer; safetensors 21,825,437,888; the card's A3B
    without the tied embedding."""
    cfg = _dense("ernie4_5_moe", 2560, 20, 4, 12288, 28, 103424, head_dim=128, tie_word_embeddings=True,
                 moe_num_experts=64, moe_k=6, moe_num_shared_experts=2, moe_intermediate_size=1536,
                 moe_layer_start_index=1, moe_layer_end_index=27, moe_layer_interval=1)
    m = _load(tmp_path, cfg)
    assert (m.num_moe_layers, m.num_experts, m.experts_per_token) == (27, 64, 6)
    assert (m.expert_intermediate_size, m.shared_expert_intermediate_size, m.intermediate_size) == (1536, 3072, 12288)
    assert m.total_params == pytest.approx(21.825e9, rel=0.002)
    assert m.active_params - m.embedding_params == pytest.approx(3.09e9, rel=0.01)
    assert _load(tmp_path, {**cfg, "moe_layer_end_index": -1}) == m
    every_other = _load(tmp_path, {**cfg, "moe_layer_interval": 2})
    assert every_other.num_moe_layers == 14  # layers 1, 3, ..., 27: (i + 1) even
    for start in ("one", -1):
        with pytest.raises(PhasewiseError, match="field moe_layer_start_index must be a layer index"):
            _load(tmp_path, {**cfg, "moe_layer_start_index": start})


@pytest.mark.parametrize("cfg, total, active", [
    # allenai/OLMoE-1B-7B-0924: 64 experts of 1,024 top-8 in all 16 layers (intermediate_size is the experts' width)
    (_dense("olmoe", 2048, 16, 16, 1024, 16, 50304, num_experts=64, num_experts_per_tok=8,
            tie_word_embeddings=False), 6.92e9, 1.28e9),
    # microsoft/Phi-3.5-MoE-instruct: 16 experts of 6,400 top-2; its 131,072-token window is its whole context
    (_dense("phimoe", 4096, 32, 8, 6400, 32, 32064, num_local_experts=16, num_experts_per_tok=2,
            sliding_window=131072, max_position_embeddings=131072, tie_word_embeddings=False), 41.9e9, 6.6e9),
    # ibm-granite/granite-3.1-3b-a800m-instruct: 40 experts of 512 top-8 (3.3B; a800m without the embeddings)
    (_dense("granitemoe", 1536, 24, 8, 512, 32, 49155, num_local_experts=40, num_experts_per_tok=8,
            tie_word_embeddings=True), 3.30e9, 0.80e9 + 49155 * 1536),
    # rednote-hilab/dots.llm1.inst: 128 experts of 1,408 top-6 and two shared after a dense first layer (142B / 14B)
    (_dense("dots1", 4096, 32, 32, 10944, 62, 152064, head_dim=128, moe_intermediate_size=1408,
            n_routed_experts=128, num_experts_per_tok=6, n_shared_experts=2, first_k_dense_replace=1,
            tie_word_embeddings=False), 142.8e9, 14.0e9),
    # inclusionAI/Ling-flash-2.0 (BailingMoeV2ForCausalLM, model_type bailing_moe): 256 experts of 1,024 top-8 and one
    # shared (num_shared_experts) after a dense first layer; safetensors 102,889,705,216, 6.1B active
    (_dense("bailing_moe", 4096, 32, 4, 9216, 32, 157184, head_dim=128, moe_intermediate_size=1024, num_experts=256,
            num_experts_per_tok=8, num_shared_experts=1, first_k_dense_replace=1, partial_rotary_factor=0.5,
            tie_word_embeddings=False), 102.89e9, 6.15e9),
])
def test_moe_families_match_their_published_sizes(tmp_path, cfg, total, active):
    m = _load(tmp_path, cfg)
    assert m.num_experts and m.sliding_window is None
    assert m.total_params == pytest.approx(total, rel=0.01)
    assert m.active_params == pytest.approx(active, rel=0.02)


def test_a_window_only_as_long_as_the_context_is_none(tmp_path):
    """Phi-3.5-MoE's 131,072-token window over its 131,072 positions restricts nothing; a window as long as the
    positions trained but a YaRN factor beyond them does (the context runs to 4 x 32,768)."""
    cfg = _dense("mistral", 1024, 8, 8, 4096, 2, 1000, sliding_window=32768, max_position_embeddings=32768)
    assert _load(tmp_path, cfg).sliding_window is None
    yarn = _load(tmp_path, {**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 32768}})
    assert yarn.sliding_window == 32768
    assert _load(tmp_path, {**cfg, "sliding_window": 4096}).sliding_window == 4096


def test_granite_shared_experts_read_their_width(tmp_path):
    """GraniteMoeSharedConfig's shared_intermediate_size: one gated shared MLP beside the routed experts."""
    cfg = _dense("granitemoeshared", 1024, 16, 8, 512, 24, 49155, num_local_experts=32, num_experts_per_tok=8,
                 shared_intermediate_size=1024)
    m = _load(tmp_path, cfg)
    assert m.shared_expert_intermediate_size == 1024
    assert m.active_params - _load(tmp_path, {**cfg, "shared_intermediate_size": 0}).active_params == 24 * 3 * 1024**2


def test_dots1_windows_only_from_max_window_layers(tmp_path):
    """Dots1Config: layers from max_window_layers (62, its class default) on are windowed, none of dots.llm1's 62."""
    cfg = _dense("dots1", 1024, 8, 8, 4096, 8, 1000, moe_intermediate_size=256, n_routed_experts=8,
                 num_experts_per_tok=2)
    assert _load(tmp_path, cfg).sliding_window is None
    m = _load(tmp_path, {**cfg, "max_window_layers": 6})
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 2)


def test_the_new_families_run_end_to_end(run_cli, tmp_path):
    """A user's config.json of a new family through estimate and simulate (one short run each)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_dense("olmo3", 2048, 16, 4, 8192, 16, 100278, tie_word_embeddings=False)))
    code, out, err = run_cli("estimate", "--model", str(path), "--hardware", "h100-sxm", "--prompt-len", "8192",
                             "--json")
    assert code == 0, err
    code, out, err = run_cli("simulate", "--model", str(path), "--hardware", "h100-sxm", "--rate", "2",
                             "--requests", "20", "--isl", "2048", "--osl", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 20


# Qwen/Qwen2-VL-7B-Instruct's config.json as published (transformers 4.41.2: the language model's fields at the top
# level beside vision_config, no text_config), architecture fields
QWEN2_VL_7B = {"architectures": ["Qwen2VLForConditionalGeneration"], "hidden_act": "silu", "hidden_size": 3584,
               "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
               "model_type": "qwen2_vl", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
               "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
               "use_sliding_window": False,
               "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_chans": 3,
                                 "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                                 "spatial_patch_size": 14, "temporal_patch_size": 2},
               "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064}
QWEN25_VL_VISION = {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                    "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                    "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                    "tokens_per_second": 2, "temporal_patch_size": 2}
QWEN25_VL_7B = {**QWEN2_VL_7B, "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
                "max_position_embeddings": 128000, "vision_config": QWEN25_VL_VISION}


def test_qwen2_vl_and_qwen25_vl_flat_configs_hold_qwen2_and_their_encoders(tmp_path):
    """The checkpoints' safetensors indexes: Qwen2-VL-7B-Instruct 8,291,375,616 parameters (16,582,751,232 bytes),
    Qwen2.5-VL-7B-Instruct 8,292,166,656 (16,584,333,312 bytes); their encoders 675,759,104 (a 1,280-wide GELU ViT,
    its merger's LayerNorm and 5,120 -> 5,120 -> 3,584) and 676,550,144 (RMSNorms, a gated SiLU MLP 1,280 -> 3,420,
    no position table). Their language model is Qwen2-7B's shape (no window: use_sliding_window false)."""
    qwen2 = _load(tmp_path, QWEN2_VL_7B)
    qwen25 = _load(tmp_path, QWEN25_VL_7B)
    for m, encoder, total in ((qwen2, 675_759_104, 8_291_375_616), (qwen25, 676_550_144, 8_292_166_656)):
        assert m.vision.params == encoder
        assert m.encoder_params == encoder and m.sliding_window is None and m.mlp_gated
        assert m.total_params + m.encoder_params == pytest.approx(total, rel=1e-4)  # norms and q/k/v biases apart
        assert m.vision.embedding_width == 3584 and m.vision.merge == 4 and m.vision.patch_inputs == 3 * 2 * 14 * 14
    assert (qwen2.vision.family, qwen2.vision.hidden_size, qwen2.vision.intermediate_size) == ("qwen2_vl", 1280, 5120)
    assert (qwen25.vision.window_patches, qwen25.vision.full_attention_blocks) == (64, 4)
    # a transformers re-save nests the same fields in a text_config (model_type qwen2_5_vl_text): the same model
    text = {k: v for k, v in QWEN25_VL_7B.items() if k not in ("architectures", "vision_config")}
    resaved = {**QWEN25_VL_7B, "text_config": {**text, "model_type": "qwen2_5_vl_text", "sliding_window": None}}
    assert _load(tmp_path, resaved) == qwen25
    # the catalog's entries (the published files): the same models by name
    for name, parsed in (("Qwen/Qwen2-VL-7B-Instruct", qwen2), ("qwen2.5-vl-7b", qwen25)):
        assert load_model(name).model_copy(update={"name": parsed.name}) == parsed


def test_qwen2_vl_processor_rounds_to_28_within_its_own_pixel_bounds(tmp_path):
    """Qwen2VLImageProcessor with these checkpoints' preprocessor_config.json (min_pixels 3,136, max_pixels
    12,845,056): 1920 x 1080 -> 1932 x 1092 (sides to multiples of 28), 138 x 78 patches, a quarter of them plus the
    vision start and end tokens; a 100 x 100 image is not scaled up to Qwen3-VL's 65,536-pixel floor."""
    vision = _load(tmp_path, QWEN25_VL_7B).vision
    geometry = vision.image_geometry(1920, 1080)
    assert geometry.resized_px == (1932, 1092) and geometry.patches == 138 * 78
    assert geometry.prompt_tokens == 138 * 78 // 4 + 2
    assert vision.image_geometry(100, 100).resized_px == (112, 112)
    huge = vision.image_geometry(8000, 8000)
    assert huge.resized_px[0] * huge.resized_px[1] <= 12_845_056 and huge.patches <= 16384 * 4


def test_qwen25_vl_windowed_blocks_attend_within_64_patches(tmp_path):
    """Qwen2.5-VL's encoder over one image of P patches: 28 windowed blocks attend over P x 64 (query, key) pairs
    (windows of 8 x 8 patches), the 4 full blocks over P^2; 4 FLOPs per pair and head dimension (1,280 over 16
    heads); so its attention FLOPs are the all-full encoder's less 28 x 4 x 1,280 x (P^2 - 64 P)."""
    m = _load(tmp_path, QWEN25_VL_7B)
    all_full = m.model_copy(update={"vision": m.vision.model_copy(update={"window_patches": 0})})
    hw, bf16, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    patches = 64 * 64
    windowed, full = (CostModel(spec, hw, bf16, engine).encoder((patches,)) for spec in (m, all_full))
    assert full.flops - windowed.flops == pytest.approx(28 * 4 * 1280 * (patches ** 2 - 64 * patches), rel=1e-9)
    assert windowed.time_s < full.time_s


@pytest.mark.parametrize("field, value, message", [
    ("fullatt_block_indexes", [7, 40], r"fullatt_block_indexes must list block indexes in 0\.\.31"),
    ("window_size", 100, r"window_size \(100\) must be a multiple of patch_size x spatial_merge_size \(28\)"),
    ("hidden_size", None, "vision_config.hidden_size must be a positive integer"),
])
def test_malformed_qwen25_vl_vision_fields_are_one_line_errors(tmp_path, field, value, message):
    vision = {k: v for k, v in {**QWEN25_VL_VISION, field: value}.items() if v is not None}
    with pytest.raises(PhasewiseError, match=message) as err:
        _load(tmp_path, {**QWEN25_VL_7B, "vision_config": vision})
    assert "\n" not in str(err.value)
    with pytest.raises(PhasewiseError, match="vision_config.mlp_ratio must be a number"):
        _load(tmp_path, {**QWEN2_VL_7B, "vision_config": {**QWEN2_VL_7B["vision_config"], "mlp_ratio": "four"}})


def test_a_qwen25_vl_request_with_images_simulates(run_cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN25_VL_7B))
    code, out, err = run_cli("simulate", "--model", str(path), "--hardware", "h100-sxm", "--rate", "2",
                             "--requests", "10", "--isl", "512", "--osl", "16", "--images-per-request", "1",
                             "--image-size", "1280x720", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 10


def test_an_encoder_over_alike_images_is_costed_without_listing_them(tmp_path, run_cli):
    """CostModel.encoder((p,), copies=k) is the forward over k images of p patches (estimate's batch of alike
    requests, plan's k images a request): the same figures as listing them, and a batch of 10^11 requests with an
    image each is costed in one pass (it built a 10^11-entry tuple: MemoryError)."""
    hw, bf16, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    for m in (_load(tmp_path, QWEN25_VL_7B), load_model("Qwen/Qwen3-VL-30B-A3B-Instruct")):
        listed = CostModel(m, hw, bf16, engine, 2).encoder((1200, 1200, 1200))
        copied = CostModel(m, hw, bf16, engine, 2).encoder((1200,), copies=3)
        assert (copied.time_s, copied.flops, copied.bytes, copied.images, copied.patches) == (
            listed.time_s, listed.flops, listed.bytes, listed.images, listed.patches)
    code, out, err = run_cli("estimate", "--model", "qwen2.5-vl-7b", "--hardware", "h100-sxm", "--images-per-request",
                             "1", "--image-size", "1280x720", "--batch", "99999999999", "--json")
    assert code == 0, err
    assert json.loads(out)["images"]["encoder_ms"] > 1e9


# OpenGVLab/InternVL3-8B's config.json (model_type internvl_chat): Qwen2.5-7B in llm_config beside InternViT-300M
INTERNVIT_300M = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                  "patch_size": 14, "image_size": 448, "qkv_bias": True, "qk_normalization": False,
                  "norm_type": "layer_norm", "use_moe": False, "num_channels": 3}
INTERNVIT_6B = {"hidden_size": 3200, "intermediate_size": 12800, "num_hidden_layers": 45, "num_attention_heads": 25,
                "patch_size": 14, "image_size": 448, "qkv_bias": False, "qk_normalization": True,
                "norm_type": "rms_norm", "num_channels": 3}
INTERNVL_TOP = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "downsample_ratio": 0.5,
                "dynamic_image_size": True, "force_image_size": 448, "max_dynamic_patch": 12, "min_dynamic_patch": 1,
                "ps_version": "v2", "select_layer": -1, "template": "internvl2_5", "use_thumbnail": True,
                "tie_word_embeddings": False}
QWEN25_7B_LLM = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                 "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                 "num_key_value_heads": 4, "vocab_size": 151674, "max_position_embeddings": 32768,
                 "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"}, "sliding_window": 32768,
                 "use_sliding_window": False, "tie_word_embeddings": False}
QWEN25_72B_LLM = {**QWEN25_7B_LLM, "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                  "num_attention_heads": 64, "num_key_value_heads": 8}
INTERNVL3_8B = {**INTERNVL_TOP, "llm_config": QWEN25_7B_LLM, "vision_config": INTERNVIT_300M}
INTERNVL3_78B = {**INTERNVL_TOP, "llm_config": QWEN25_72B_LLM, "vision_config": INTERNVIT_6B}


def test_internvl3_counts_match_the_checkpoints():
    """InternVL3-8B: 7.94B (InternViT-300M's 304,012,288 and the projector's 27,540,480 beside Qwen2.5-7B's shapes);
    InternVL3-78B: 78.41B (InternViT-6B-448px-V2.5's 45 blocks, 5.54B, and a 172,008,448 projector)."""
    small = from_hf_config("InternVL3-8B", INTERNVL3_8B)
    assert small.vision.params == 304_012_288 + 27_540_480
    assert small.total_params + small.encoder_params == pytest.approx(7.944e9, rel=0.002)
    big = from_hf_config("InternVL3-78B", INTERNVL3_78B)
    assert big.vision.params == pytest.approx(5.5365e9 + 172_008_448, rel=0.0005)
    assert big.total_params + big.encoder_params == pytest.approx(78.408e9, rel=0.002)
    assert (small.vision.tile_positions, small.vision.tokens_per_image, small.vision.max_tiles) == (1025, 256, 12)
    # transformers' -hf format of the same model: text_config, attention_bias / use_qk_norm, [448, 448] sizes
    vision_hf = {k: v for k, v in INTERNVIT_300M.items() if k not in ("qkv_bias", "qk_normalization")}
    hf = {"model_type": "internvl", "text_config": QWEN25_7B_LLM, "downsample_ratio": 0.5, "vision_feature_layer": -1,
          "vision_config": {**vision_hf, "attention_bias": True, "use_qk_norm": False, "image_size": [448, 448],
                            "patch_size": [14, 14]}}
    assert from_hf_config("InternVL3-8B", hf) == small


@pytest.mark.parametrize("size, tiles, grid", [
    ((1920, 1080), 9, (4, 2)),  # 16:9 is as far from 2:1 as from 3:2... the 4 x 2 grid and a thumbnail
    ((1280, 720), 9, (4, 2)),
    ((448, 448), 1, (1, 1)),  # one tile: no thumbnail
    ((800, 600), 13, (4, 3)),  # 4:3 exactly: twelve tiles and a thumbnail
])
def test_internvl_tiles_an_image_as_its_processor_does(size, tiles, grid):
    """dynamic_preprocess with max_dynamic_patch 12 and a thumbnail: each tile 1,025 encoder positions (32 x 32
    patches and a class token) and 256 prompt tokens, between <img> and </img>."""
    vision = from_hf_config("InternVL3-8B", INTERNVL3_8B).vision
    geometry = vision.image_geometry(*size)
    assert geometry.resized_px == (448 * grid[0], 448 * grid[1])
    assert (geometry.patches, geometry.prompt_tokens) == (tiles * 1025, tiles * 256 + 2)
    single = from_hf_config("x", {**INTERNVL3_8B, "dynamic_image_size": False}).vision
    assert single.image_geometry(*size).prompt_tokens == 258  # one 448 x 448 tile whatever the image


def test_internvl_tiles_attend_within_themselves_and_internvit_6b_runs_its_attention_whole_under_tp():
    """The encoder's attention over an image of T tiles: T x 1,025^2 pairs (each tile its own sequence, as vLLM
    batches them), not (T x 1,025)^2. InternViT-6B's 25 heads do not divide over 2, 4 or 8 GPUs: vLLM's intern_vit.py
    then holds the q, k, v and output weights whole on each GPU (45 x 4 x 3,200^2, 1.84B) and runs every head there,
    its MLPs still split; 25 heads over 5 GPUs split."""
    hw, bf16, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    m = from_hf_config("InternVL3-8B", INTERNVL3_8B)
    tiled = CostModel(m, hw, bf16, engine).encoder((9 * 1025,))
    as_one = m.model_copy(update={"vision": m.vision.model_copy(update={"tile_positions": 0})})
    whole = CostModel(as_one, hw, bf16, engine).encoder((9 * 1025,))
    # the attention's pairs, and the projector's rows: 9 x 256 tokens, not 9 x 1,025 positions / 4 (class tokens)
    projector = 2 * (9 * 1025 // 4 - 9 * 256) * (4096 * 3584 + 3584 * 3584)
    assert whole.flops - tiled.flops == pytest.approx(24 * 4 * 1024 * ((9 * 1025) ** 2 - 9 * 1025 ** 2) + projector,
                                                      rel=1e-9)
    big = from_hf_config("InternVL3-78B", INTERNVL3_78B).vision
    attention = 45 * (4 * 3200 * 3200 + 3200)
    assert big.attention_params == attention and big.attention_replicated(8) and not big.attention_replicated(5)
    assert big.params_per_gpu(8) == pytest.approx((big.params - attention) / 8 + attention)
    assert big.params_per_gpu(5) == big.params / 5
    small = from_hf_config("InternVL3-8B", INTERNVL3_8B).vision
    assert not small.attention_replicated(8) and small.params_per_gpu(8) == small.params / 8


@pytest.mark.parametrize("change, message", [
    ({"vision_config": {**INTERNVIT_300M, "use_moe": True}}, "vision_config.use_moe"),
    ({"select_layer": 30}, r"field select_layer must be a layer index in -24\.\.23"),
    ({"downsample_ratio": 0.3}, "field downsample_ratio must be 1 / n"),
    ({"max_dynamic_patch": 0}, "field max_dynamic_patch must be a positive integer"),
    ({"llm_config": {**QWEN25_7B_LLM, "model_type": "internlm2"}},
     r"llm_config\.model_type 'internlm2' is not modelled inside model_type 'internvl_chat'"),
    ({"llm_config": None}, "model_type 'internvl_chat' needs its language model's fields in llm_config"),
])
def test_malformed_internvl_configs_are_one_line_errors(change, message):
    cfg = {k: v for k, v in {**INTERNVL3_8B, **change}.items() if v is not None}
    with pytest.raises(PhasewiseError, match=message) as err:
        from_hf_config("x", cfg)
    assert "\n" not in str(err.value)


def test_an_internvl_request_with_images_simulates(run_cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(INTERNVL3_8B))
    code, out, err = run_cli("simulate", "--model", str(path), "--hardware", "h100-sxm", "--rate", "2",
                             "--requests", "10", "--isl", "256", "--osl", "16", "--images-per-request", "1",
                             "--image-size", "1280x720", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["completed"] == 10
    code, out, err = run_cli("estimate", "--model", str(path), "--hardware", "h100-sxm", "--images-per-request", "1",
                             "--image-size", "1280x720", "--json")
    assert code == 0, err
    assert json.loads(out)["images"]["prompt_tokens_per_image"] == 9 * 256 + 2
