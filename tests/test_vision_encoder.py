"""Qwen3-VL checkpoints: their language model parsed from text_config as Qwen3's, their vision encoder's parameters
held in memory (counted by hand here), bad vision fields refused by name."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from phasewise.apps.cli import app
from phasewise.errors import PhasewiseError
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.specs import load_model, load_quant

VL30 = "Qwen/Qwen3-VL-30B-A3B-Instruct"


def _write(tmp_path, cfg, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


def _catalog_config(name):
    from phasewise.specs.catalog import packaged
    return json.loads(json.dumps(packaged("models.yaml")["models"][name]["config"]))


def test_qwen3_vl_30b_encoder_counted_by_hand_and_its_language_model_is_qwen3_30b():
    """Patch embedding 3 x 2 x 16 x 16 -> 1152 with bias; 2,304 positions; 27 blocks of two LayerNorms, qkv and
    proj with bias and a 1152 -> 4304 -> 1152 MLP with bias; a merger (LayerNorm over 1152, 4608 -> 4608 ->
    2048) and three deepstack mergers (LayerNorm over 4608)."""
    m = load_model(VL30)
    patch = 3 * 2 * 16 * 16 * 1152 + 1152
    positions = 2304 * 1152
    block = 4 * 1152 + (3 * 1152 * 1152 + 3 * 1152) + (1152 * 1152 + 1152) + (1152 * 4304 + 4304) \
        + (4304 * 1152 + 1152)
    fc = 4608 * 4608 + 4608 + 4608 * 2048 + 2048
    assert m.encoder_params == patch + positions + 27 * block + (2 * 1152 + fc) + 3 * (2 * 4608 + fc)
    assert m.encoder_params == 538_631_408
    text = load_model("Qwen/Qwen3-30B-A3B")
    assert (m.total_params, m.active_params, m.num_moe_layers) == (text.total_params, text.active_params, 48)
    # the card's 31.1 B is the two together
    assert round((m.total_params + m.encoder_params) / 1e8) == 311


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_the_encoder_weights_sit_beside_the_language_model_split_over_tp(tp):
    vl, text, quant = load_model(VL30), load_model("Qwen/Qwen3-30B-A3B"), load_quant("fp8")
    extra = weight_bytes_per_gpu(vl, quant, tp, 1) - weight_bytes_per_gpu(text, quant, tp, 1)
    assert extra == pytest.approx(538_631_408 * 2 / tp)  # bf16 whatever the language model's precision


def test_the_encoder_is_on_the_first_pipeline_stage_only():
    vl, quant = load_model(VL30), load_quant("bf16")
    no_encoder = vl.model_copy(update={"vision": None})
    with_first = weight_bytes_per_gpu(vl, quant, 1, 2)
    # the first stage holds the embedding and the encoder; the last the LM head: the most loaded is the first
    assert with_first - weight_bytes_per_gpu(no_encoder, quant, 1, 2) == pytest.approx(538_631_408 * 2)


def test_top_level_tie_word_embeddings_reaches_the_language_model(tmp_path):
    """Qwen3-VL states tie_word_embeddings beside text_config; a text_config's own value wins."""
    cfg = _catalog_config(VL30)
    cfg["tie_word_embeddings"] = True
    assert load_model(_write(tmp_path, cfg)).tie_embeddings
    cfg["text_config"]["tie_word_embeddings"] = False
    assert not load_model(_write(tmp_path, cfg)).tie_embeddings


def test_dense_qwen3_vl_parses_as_qwen3(tmp_path):
    text = {"model_type": "qwen3_vl_text", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
            "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"}}
    vision = _catalog_config(VL30)["vision_config"] | {"out_hidden_size": 4096}
    m = load_model(_write(tmp_path, {"model_type": "qwen3_vl", "text_config": text, "vision_config": vision,
                                     "tie_word_embeddings": False}))
    plain = load_model(_write(tmp_path, {**text, "model_type": "qwen3", "tie_word_embeddings": False}, "plain.json"))
    assert m.total_params == plain.total_params and not m.num_experts
    assert m.encoder_params == 576_388_336  # the 30B-A3B's encoder projecting to 4096


@pytest.mark.parametrize("field,value,message", [
    ("depth", 0, "vision_config.depth must be a positive integer"),
    ("hidden_size", None, "vision_config.hidden_size must be a positive integer"),
    ("out_hidden_size", "4096", "vision_config.out_hidden_size must be a positive integer"),
    ("in_channels", -3, "vision_config.in_channels must be a positive integer"),
    ("deepstack_visual_indexes", 8, "vision_config.deepstack_visual_indexes must be a list"),
])
def test_malformed_vision_fields_are_one_line_errors(tmp_path, field, value, message):
    cfg = _catalog_config(VL30)
    if value is None:
        del cfg["vision_config"][field]
    else:
        cfg["vision_config"][field] = value
    with pytest.raises(PhasewiseError, match=message) as err:
        load_model(_write(tmp_path, cfg))
    assert "\n" not in str(err.value)
    cfg["vision_config"] = [1, 2]
    with pytest.raises(PhasewiseError, match="vision_config must be an object"):
        load_model(_write(tmp_path, cfg))


def test_estimate_names_the_encoder_and_reports_it_in_json():
    runner = CliRunner()
    args = ["estimate", "--model", "qwen3-vl-30b-a3b", "--hardware", "h100-sxm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "vision encoder of 0.54 B parameters" in " ".join(result.output.split())
    data = json.loads(runner.invoke(app, args + ["--json"]).output)
    assert data["memory"]["encoder_params"] == 538_631_408
    text = json.loads(runner.invoke(app, ["estimate", "--model", "Qwen/Qwen3-30B-A3B", "--hardware", "h100-sxm",
                                          "--json"]).output)
    assert text["memory"]["encoder_params"] == 0
    assert data["memory"]["kv_capacity_tokens"] < text["memory"]["kv_capacity_tokens"]


MS32 = "mistralai/Mistral-Small-3.2-24B-Instruct-2506"


def test_mistral_small_pixtral_encoder_counted_by_hand():
    """Pixtral: a 3 x 14 x 14 -> 1024 conv without bias and an RMSNorm; 24 blocks of two RMSNorms, q, k, v, o of
    16 x 64 and a gated 1024 -> 4096 -> 1024 MLP, none with bias; the projector's RMSNorm, its 2 x 2 patch merger
    (4096 -> 1024) and 1024 -> 5120 -> 5120 without bias."""
    m = load_model(MS32)
    patch = 3 * 14 * 14 * 1024 + 1024
    block = 2 * 1024 + 4 * 1024 * 1024 + 3 * 1024 * 4096
    projector = 1024 + 4096 * 1024 + 1024 * 5120 + 5120 * 5120
    assert m.encoder_params == patch + 24 * block + projector == 438_958_080
    assert round((m.total_params + m.encoder_params) / 1e9) == 24  # the name's 24 B
    assert (m.model_type, m.num_layers, m.hidden_size, m.num_kv_heads) == ("mistral", 40, 5120, 8)


def test_projector_bias_adds_its_biases(tmp_path):
    cfg = _catalog_config(MS32)
    cfg["multimodal_projector_bias"] = True
    assert load_model(_write(tmp_path, cfg)).encoder_params == 438_958_080 + 2 * 5120


def test_mistral3_wraps_a_ministral3_language_model(tmp_path):
    """Ministral 3 / Devstral Small 2: the same wrapper around model_type ministral3 (YaRN RoPE and a query
    temperature in rope_parameters: no cost); a flat ministral3 config (Devstral 2) parses alike."""
    cfg = _catalog_config(MS32)
    text = {**cfg["text_config"], "model_type": "ministral3",
            "rope_parameters": {"rope_type": "yarn", "factor": 48.0, "llama_4_scaling_beta": 0.1}}
    wrapped = load_model(_write(tmp_path, {**cfg, "text_config": text}))
    flat = load_model(_write(tmp_path, {**text, "tie_word_embeddings": False}, "flat.json"))
    plain = load_model(MS32)
    assert wrapped.total_params == flat.total_params == plain.total_params
    assert wrapped.encoder_params == plain.encoder_params and flat.encoder_params == 0


def test_a_wrapper_refuses_a_language_model_it_does_not_hold(tmp_path):
    cfg = _catalog_config(MS32)
    cfg["text_config"]["model_type"] = "mistral4"
    with pytest.raises(PhasewiseError, match=r"text_config.model_type 'mistral4' is not modelled inside model_type "
                                             r"'mistral3' \(allowed: mistral, ministral3\)"):
        load_model(_write(tmp_path, cfg))
    vl = _catalog_config(VL30)
    vl["text_config"]["model_type"] = "qwen3_moe"
    with pytest.raises(PhasewiseError, match="allowed: qwen3_vl_moe_text"):
        load_model(_write(tmp_path, vl))


def test_malformed_pixtral_fields_are_one_line_errors(tmp_path):
    for path, value, message in ((("vision_config", "num_hidden_layers"), 0, "vision_config.num_hidden_layers"),
                                 (("vision_config", "head_dim"), 1.5, "vision_config.head_dim"),
                                 (("spatial_merge_size",), -2, "spatial_merge_size")):
        cfg = _catalog_config(MS32)
        target = cfg
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(PhasewiseError, match=f"{message} must be a positive integer") as err:
            load_model(_write(tmp_path, cfg))
        assert "\n" not in str(err.value)


def test_gemma3_siglip_encoder_counted_by_hand(tmp_path):
    """SigLIP at Gemma 3 27B's shape: a 3 x 14 x 14 -> 1152 conv with bias and 64 x 64 positions; 27 blocks of two
    LayerNorms, q, k, v, out with bias and a 1152 -> 4304 -> 1152 MLP with bias; a post-LayerNorm; the projector's
    RMSNorm and 1152 -> 5376 (27.4 B in all). Fields the file leaves out take SiglipVisionConfig's defaults."""
    cfg = _catalog_config("google/gemma-3-27b-it")
    cfg["vision_config"] = {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                            "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                            "patch_size": 14, "vision_use_head": False}
    m = load_model(_write(tmp_path, cfg))
    patch = 3 * 14 * 14 * 1152 + 1152 + 64 * 64 * 1152
    block = 4 * 1152 + 4 * (1152 * 1152 + 1152) + (1152 * 4304 + 4304) + (4304 * 1152 + 1152)
    assert m.encoder_params == patch + 27 * block + 2 * 1152 + 1152 + 1152 * 5376 == 423_060_336
    assert round((m.total_params + m.encoder_params) / 1e8) == 274
    assert load_model("google/gemma-3-27b-it").encoder_params == 0  # the catalog entry quotes text_config alone
    cfg["vision_config"] = {}  # SiglipVisionConfig's defaults: 768 wide, 12 layers, 224 / 16
    patch = 3 * 16 * 16 * 768 + 768 + 14 * 14 * 768
    block = 4 * 768 + 4 * (768 * 768 + 768) + 2 * 768 * 3072 + 3072 + 768
    assert load_model(_write(tmp_path, cfg)).encoder_params == patch + 12 * block + 2 * 768 + 768 + 768 * 5376
    cfg["vision_config"] = {"vision_use_head": True}
    with pytest.raises(PhasewiseError, match="vision_config.vision_use_head is not modelled"):
        load_model(_write(tmp_path, cfg))


def test_kimi_k25_wrapper_holds_the_kimi_k2_text_model(tmp_path):
    """KimiK25ForConditionalGeneration (Kimi-K2.5, K2.6): text_config named deepseek_v3 or kimi_k2, the DeepSeek-V3
    shape of Kimi-K2; its quantization_config (the top level's wins over one in text_config, as vLLM reads the
    checkpoint's) and tie_word_embeddings at the top. MoonViT is not counted."""
    text = _catalog_config("moonshotai/Kimi-K2-Instruct")
    for inner in ("deepseek_v3", "kimi_k2"):
        cfg = {"model_type": "kimi_k25", "architectures": ["KimiK25ForConditionalGeneration"],
               "tie_word_embeddings": False, "text_config": {**text, "model_type": inner},
               "vision_config": {"hidden_size": 1152},
               "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                                       "config_groups": {"group_0": {"weights": {"num_bits": 4, "group_size": 32,
                                                                                 "type": "int"}}}}}
        m = load_model(_write(tmp_path, cfg))
        k2 = load_model("moonshotai/Kimi-K2-Instruct")
        assert (m.total_params, m.kv_latent_size, m.encoder_params) == (k2.total_params, k2.kv_latent_size, 0)
        assert m.native_precision == "w4a16"  # 4-bit, its groups' symmetry and the ignore list not stated
        # as the checkpoints state them: symmetric groups of 32, the attention left BF16 (routed experts INT4)
        groups = {"group_0": {"weights": {"num_bits": 4, "group_size": 32, "symmetric": True, "type": "int"}}}
        cfg["quantization_config"].update(config_groups=groups, ignore=["lm_head", "re:.*self_attn.*"])
        assert load_model(_write(tmp_path, cfg)).native_precision == "bf16-w4a16-g32"
        cfg["quantization_config"]["ignore"] = ["lm_head"]
        assert load_model(_write(tmp_path, cfg)).native_precision == "w4a16-g32"
    for name in ("moonshotai/Kimi-K2-Thinking", "moonshotai/Kimi-K2.5"):
        assert load_model(name).native_precision == "bf16-w4a16-g32"


def test_glm45v_wrapper_holds_glm45_air_shape(tmp_path):
    """Glm4vMoeForConditionalGeneration (GLM-4.5V): text_config glm4v_moe_text in GLM-4.5-Air's shape (46 layers,
    128 experts top-8 + 1 shared, the first dense) with multimodal RoPE: the same parameters as the catalog's Air."""
    air = _catalog_config("zai-org/GLM-4.5-Air")
    text = {k: v for k, v in air.items() if k not in ("architectures", "num_nextn_predict_layers")}
    text["model_type"] = "glm4v_moe_text"
    text["rope_parameters"] = {"mrope_section": [8, 12, 12], "partial_rotary_factor": 0.5, "rope_type": "default"}
    m = load_model(_write(tmp_path, {"model_type": "glm4v_moe", "tie_word_embeddings": False, "text_config": text,
                                     "vision_config": {"depth": 24, "hidden_size": 1536}}))
    plain = load_model(_write(tmp_path, {k: v for k, v in air.items() if k != "num_nextn_predict_layers"}, "air.json"))
    assert (m.total_params, m.num_moe_layers, m.encoder_params) == (plain.total_params, 45, 0)


LLAMA4_SCOUT_VISION = {  # Llama-4-Scout-17B-16E's vision_config, as a public dump of its config prints it
    "hidden_act": "gelu", "hidden_size": 1408, "image_size": 336, "intermediate_size": 5632,
    "model_type": "llama4_vision_model", "multi_modal_projector_bias": False, "num_attention_heads": 16,
    "num_channels": 3, "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
    "projector_input_dim": 4096, "projector_output_dim": 4096, "vision_output_dim": 4096}


def test_llama4_vision_encoder_matches_a_module_by_module_count(tmp_path):
    """The same dump's module table: class embedding 1,408; positions 812,416; patch linear 827,904; two
    LayerNorms; per layer q, k, v, o 1,982,464 + 1,408 each, fc1 7,929,856 + 5,632, fc2 7,929,856 + 1,408, two
    LayerNorms; the adapter's 23,068,672 and 16,777,216; the projector's 20,971,520 (to Scout's 5,120)."""
    cfg = _catalog_config("meta-llama/Llama-4-Scout-17B-16E-Instruct")  # the wrapper: text_config, vision_config
    assert cfg["model_type"] == "llama4" and cfg["vision_config"] == LLAMA4_SCOUT_VISION
    cfg["vision_config"] = dict(LLAMA4_SCOUT_VISION)
    m = load_model(_write(tmp_path, cfg))
    assert m.vision == load_model("meta-llama/Llama-4-Scout-17B-16E-Instruct").vision  # the catalog entry's
    layer = 4 * (1_982_464 + 1_408) + 7_929_856 + 5_632 + 7_929_856 + 1_408 + 4 * 1_408
    table = 1_408 + 812_416 + 827_904 + 4 * 1_408 + 34 * layer + 23_068_672 + 16_777_216 + 20_971_520
    assert m.encoder_params == table == 871_932_416
    assert m.total_params == load_model("meta-llama/Llama-4-Scout-17B-16E-Instruct").total_params
    del cfg["vision_config"]["projector_input_dim"]
    with pytest.raises(PhasewiseError, match="vision_config.projector_input_dim must be a positive integer"):
        load_model(_write(tmp_path, cfg))
