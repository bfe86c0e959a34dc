"""config.json files as they are published (not the catalog's copies): compressed-tensors (llm-compressor)
quantization_config read by its weights' and activations' types, transformers' OLMo, YaRN in transformers 5's
rope_parameters, Falcon without max_position_embeddings, Qwen2.5-1M's dual chunk attention refused by name."""

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.specs import load_model
from phasewise.specs.hf_config import from_hf_config

# meta-llama/Llama-3.1-8B's shape (the catalog's entry), as the RedHatAI / nm-testing quantized copies restate it
LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
            "hidden_act": "silu", "rope_theta": 500000.0,
            "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"}}


def _args(kind, bits, group=None, strategy=None, **extra):
    """A QuantizationArgs mapping as compressed-tensors writes it."""
    strategy = strategy or ("group" if group else "channel")
    return {"num_bits": bits, "type": kind, "group_size": group, "strategy": strategy, "symmetric": True,
            "dynamic": False, **extra}


def _compressed(weights, acts, fmt="pack-quantized", **extra):
    return {**LLAMA_8B, "quantization_config": {
        "quant_method": "compressed-tensors", "format": fmt, "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": acts}},
        **extra}}


# llm-compressor's preset schemes (compressed_tensors quantization/quant_scheme.py) and the --precision each runs as
NVFP4 = _args("float", 4, 16, "tensor_group")
MXFP4 = _args("float", 4, 32)
PRESETS = [
    ("NVFP4", NVFP4, {**NVFP4, "dynamic": "local"}, "nvfp4-pack-quantized", "nvfp4"),
    ("MXFP4", MXFP4, {**MXFP4, "dynamic": True}, "mxfp4-pack-quantized", "mxfp4"),
    ("MXFP4A16", MXFP4, None, "mxfp4-pack-quantized", "mxfp4"),
    ("W8A16", _args("int", 8), None, "pack-quantized", "w8a16"),
    ("W8A8 INT8", _args("int", 8), _args("int", 8, strategy="token", dynamic=True), "int-quantized", "int8"),
    ("FP8_DYNAMIC", _args("float", 8), _args("float", 8, strategy="token", dynamic=True), "float-quantized", "fp8"),
    ("FP8 static", _args("float", 8, strategy="tensor"), _args("float", 8, strategy="tensor"), "float-quantized",
     "fp8"),
    ("FP8_BLOCK", _args("float", 8, strategy="block", block_structure=[128, 128]),
     _args("float", 8, 128, dynamic=True), "float-quantized", "fp8-block"),
    ("W4A16", _args("int", 4, 128), None, "pack-quantized", "w4a16"),
]


@pytest.mark.parametrize("preset, weights, acts, fmt, precision", PRESETS, ids=[p[0] for p in PRESETS])
def test_compressed_tensors_presets_run_as_their_scheme(preset, weights, acts, fmt, precision):
    spec = from_hf_config("q", _compressed(weights, acts, fmt))
    assert spec.native_precision == precision


def test_a_compressed_tensors_nvfp4_checkpoint_costs_as_nvfp4(tmp_path, run_cli):
    """RedHatAI-style Llama-3.1-8B NVFP4 (weights and activations FP4 in groups of 16) costs as the catalog's
    Llama-3.1-8B at --precision nvfp4: the same prefill and decode times."""
    path = tmp_path / "Llama-3.1-8B-NVFP4.json"
    path.write_text(json.dumps(_compressed(NVFP4, {**NVFP4, "dynamic": "local"}, "nvfp4-pack-quantized")))
    runs = [run_cli("estimate", "--model", str(path), "--hardware", "b200", "--json"),
            run_cli("estimate", "--model", "meta-llama/Llama-3.1-8B", "--precision", "nvfp4", "--hardware", "b200",
                    "--json")]
    assert [code for code, _, _ in runs] == [0, 0], runs[0][2] + runs[1][2]
    ours, reference = (json.loads(out) for _, out, _ in runs)
    assert (ours["prefill_ms"], ours["decode_step_ms"]) == (reference["prefill_ms"], reference["decode_step_ms"])


def test_a_w8a8_int8_checkpoint_runs_on_an_a100(tmp_path, run_cli):
    """INT8 weights and activations run on the A100's INT8 tensor path (it has no FP8 one): not refused as FP8."""
    path = tmp_path / "Llama-3.1-8B-w8a8.json"
    path.write_text(json.dumps(_compressed(_args("int", 8), _args("int", 8, strategy="token", dynamic=True),
                                           "int-quantized")))
    code, out, err = run_cli("estimate", "--model", str(path), "--hardware", "a100-sxm-80gb", "--json")
    assert code == 0, err
    assert (json.loads(out)["precision"], json.loads(out)["compute_dtype"]) == ("int8", "int8")


@pytest.mark.parametrize("weights, acts, fmt, message", [
    (_args("float", 8), None, "float-quantized",  # FP8 weight-only: vLLM's W8A16-FP8, no scheme here
     r"config_groups.group_0: weights float 8-bit \(group_size None\) with input_activations null \(weight-only\) "
     r"is not modelled \(known: .*nvfp4.*\); give --precision"),
    (NVFP4, None, "nvfp4-pack-quantized",  # NVFP4A16
     r"weights float 4-bit \(group_size 16\) with input_activations null \(weight-only\) is not modelled"),
    (_args("int", 4, 128), _args("int", 8, strategy="token", dynamic=True), "int-quantized",  # W4A8 INT
     r"weights int 4-bit \(group_size 128\) with input_activations int 8-bit is not modelled"),
    (_args("float", 8, 32), _args("float", 8, 32, dynamic=True), "float-quantized",  # MXFP8
     r"group_0.weights: FP8 with strategy 'group' \(block_structure None\) is not modelled \(known: tensor, channel "
     r"= fp8; block with block_structure \[128, 128\] = fp8-block\)"),
    (_args("int", 8), _args("int", 8, strategy="token"), "sparse-24-bitmask",
     r"quantization_config format 'sparse-24-bitmask' is not modelled \(sparse weights"),
    ({"num_bits": 8}, None, "pack-quantized",
     r"config_groups.group_0.weights needs type \(int or float\) and num_bits \(got type None, num_bits 8\)"),
])
def test_compressed_tensors_combinations_without_a_scheme_are_refused(weights, acts, fmt, message):
    with pytest.raises(PhasewiseError, match=message):
        from_hf_config("q", _compressed(weights, acts, fmt)).default_precision  # a run without --precision


def test_compressed_tensors_2_4_sparsity_is_refused_and_unstructured_dense_is_read():
    """vLLM runs a 2:4 sparsity_config on its CUTLASS 2:4 kernels even over dense-stored weights; an unstructured one
    over dense weights runs dense."""
    w8a8 = (_args("int", 8), _args("int", 8, strategy="token", dynamic=True), "int-quantized")
    two_four = _compressed(*w8a8, sparsity_config={"format": "dense", "sparsity_structure": "2:4"})
    with pytest.raises(PhasewiseError, match=r"sparsity_config.sparsity_structure '2:4' is not modelled"):
        from_hf_config("q", two_four).default_precision
    unstructured = _compressed(*w8a8, sparsity_config={"format": "dense", "sparsity_structure": "unstructured"})
    assert from_hf_config("q", unstructured).native_precision == "int8"


def test_compressed_tensors_groups_of_different_schemes_are_refused():
    cfg = _compressed(_args("int", 8), None)
    mlp = {"targets": ["re:.*mlp.*"], "weights": _args("int", 4, 128), "input_activations": None}
    cfg["quantization_config"]["config_groups"]["group_1"] = mlp
    with pytest.raises(PhasewiseError, match=r"config_groups give different schemes \(w4a16, w8a16\): mixed "
                                             r"precision is not modelled"):
        from_hf_config("q", cfg).default_precision


# allenai/OLMo-7B-0724-hf's config.json (transformers OlmoConfig names)
OLMO_7B_HF = {"architectures": ["OlmoForCausalLM"], "model_type": "olmo", "attention_bias": False, "clip_qkv": 8.0,
              "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 11008, "max_position_embeddings": 4096,
              "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "rope_scaling": None,
              "rope_theta": 10000.0, "tie_word_embeddings": False, "vocab_size": 50304}
# 32 x (4 x 4096^2 attention + 3 x 4096 x 11008 SwiGLU MLP) + 2 x 50,304 x 4096 (untied embeddings and LM head)
OLMO_7B_PARAMS = 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008) + 2 * 50304 * 4096  # 6,888,095,744


def test_transformers_olmo_reads_llama_style_names():
    spec = from_hf_config("olmo", OLMO_7B_HF)
    assert spec.total_params == OLMO_7B_PARAMS
    assert (spec.model_type, spec.num_kv_heads, spec.max_position_embeddings) == ("olmo", 32, 4096)
    # OlmoLayerNorm (weightless LayerNorm), no q / k norm in OLMo 1, untied as the config says
    assert (spec.norm, spec.qk_norm, spec.tie_embeddings, spec.mlp_gated) == ("layer", False, False, True)


def test_allenai_own_olmo_names_are_hf_olmo_and_size_alike():
    """allenai/OLMo-7B's own config.json (model_type hf_olmo, ai2-olmo's names): its fused SwiGLU ff_proj of
    mlp_hidden_size 22,016 is an MLP 11,008 wide, the same model as OLMo-7B-hf; a config without a model_type but
    with d_model is read the same way."""
    own = {"model_type": "hf_olmo", "d_model": 4096, "n_heads": 32, "n_layers": 32, "mlp_hidden_size": 22016,
           "activation_type": "swiglu", "embedding_size": 50304, "vocab_size": 50280, "weight_tying": False,
           "max_sequence_length": 2048}
    spec = from_hf_config("olmo", own)
    assert (spec.intermediate_size, spec.total_params, spec.model_type) == (11008, OLMO_7B_PARAMS, "hf_olmo")
    untyped = {k: v for k, v in own.items() if k != "model_type"}
    assert from_hf_config("olmo", untyped).total_params == OLMO_7B_PARAMS
    assert not load_model("GSAI-ML/LLaDA-8B-Instruct").causal  # LLaDA keeps AllenAI's names (silu: no halving)


QWEN3_8B = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 128, "hidden_act": "silu",
            "hidden_size": 4096, "intermediate_size": 12288, "max_position_embeddings": 40960,
            "num_attention_heads": 32, "num_hidden_layers": 36, "num_key_value_heads": 8, "vocab_size": 151936,
            "tie_word_embeddings": False, "use_sliding_window": False}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}


@pytest.mark.parametrize("fields", [
    {"rope_scaling": YARN, "rope_theta": 1000000},  # transformers 4
    {"rope_parameters": {**YARN, "rope_theta": 1000000}},  # transformers 5
    {"rope_parameters": {"full_attention": {**YARN, "rope_theta": 1000000},  # transformers 5, per layer type
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000}}},
], ids=["rope_scaling", "rope_parameters", "rope_parameters per layer type"])
def test_yarn_extends_the_context_in_either_field(fields):
    """Qwen3-8B with the card's YaRN settings: 32,768 x 4 = 131,072 tokens, whichever transformers wrote it."""
    assert from_hf_config("q", {**QWEN3_8B, **fields}).max_position_embeddings == 32768 * 4


def test_falcon_without_max_position_embeddings_serves_falcon_config_default():
    """tiiuae/falcon-7b's config.json names no max_position_embeddings: FalconConfig's default, 2,048."""
    falcon_7b = {"architectures": ["FalconForCausalLM"], "model_type": "falcon", "alibi": False, "bias": False,
                 "hidden_size": 4544, "multi_query": True, "new_decoder_architecture": False,
                 "num_attention_heads": 71, "num_hidden_layers": 32, "parallel_attn": True, "vocab_size": 65024}
    assert from_hf_config("falcon", falcon_7b).max_position_embeddings == 2048
    assert from_hf_config("falcon", {**falcon_7b, "max_position_embeddings": 8192}).max_position_embeddings == 8192


def test_dual_chunk_attention_is_refused_by_name():
    """Qwen/Qwen2.5-7B-Instruct-1M's config.json: dual chunk attention over its 1,010,000 positions, which the cost
    model does not represent."""
    qwen_1m = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
               "intermediate_size": 18944, "max_position_embeddings": 1010000, "num_attention_heads": 28,
               "num_hidden_layers": 28, "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False,
               "sliding_window": 32768, "use_sliding_window": False,
               "dual_chunk_attention_config": {"chunk_size": 262144, "local_size": 8192,
                                               "original_max_position_embeddings": 32768,
                                               "sparse_attention_enabled": True}}
    with pytest.raises(PhasewiseError, match=r"field dual_chunk_attention_config \(Dual Chunk Attention.*\) is not "
                                             r"modelled for model_type 'qwen2'"):
        from_hf_config("q", qwen_1m)
