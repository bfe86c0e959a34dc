"""Vision-language families from their config.json: Qwen2-VL and Qwen2.5-VL (their flat files, Qwen2.5-VL's windowed
encoder blocks, their processor's 28-pixel rounding) and InternVL 3 / 3.5 (both formats, InternViT and its projector,
an image as tiles, InternViT-6B's attention whole under TP); the encoder over alike images costed in one pass."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hf_config import from_hf_config


def _load(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return load_model(str(path))


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
    ({"llm_config": {**QWEN25_7B_LLM, "model_type": "mixtral"}},
     r"llm_config\.model_type 'mixtral' is not modelled inside model_type 'internvl_chat'"),
    ({"llm_config": None}, "model_type 'internvl_chat' needs its language model's fields in llm_config"),
])
def test_malformed_internvl_configs_are_one_line_errors(change, message):
    cfg = {k: v for k, v in {**INTERNVL3_8B, **change}.items() if v is not None}
    with pytest.raises(PhasewiseError, match=message) as err:
        from_hf_config("x", cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("family, tokens", [("qwen2_5_vl", 92 * 52 // 4 + 2), ("internvl", 9 * 256 + 2)])
def test_requests_with_images_simulate_and_estimate(run_cli, tmp_path, family, tokens):
    """A user's config.json of each through simulate and estimate with a 1280x720 image a request: Qwen2.5-VL's
    1288 x 728 (92 x 52 patches), InternVL's 4 x 2 tiles and a thumbnail."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN25_VL_7B if family == "qwen2_5_vl" else INTERNVL3_8B))
    image = ("--images-per-request", "1", "--image-size", "1280x720", "--json")
    code, out, err = run_cli("simulate", "--model", str(path), "--hardware", "h100-sxm", "--rate", "2",
                             "--requests", "10", "--isl", "256", "--osl", "16", *image)
    assert code == 0, err
    assert json.loads(out)["completed"] == 10
    code, out, err = run_cli("estimate", "--model", str(path), "--hardware", "h100-sxm", *image)
    assert code == 0, err
    assert json.loads(out)["images"]["prompt_tokens_per_image"] == tokens
