"""The model-parsing review's findings: Granite 4.0's dense checkpoints (num_experts_per_tok 0), checkpoints whose
quantization_config is not modelled running at the --precision the user gives, Mamba hybrids' layer counts and
--pp bound in the config's decoder layers, and one --tp allowed list that every constraint accepts."""

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.parallel import check_parallelism
from phasewise.specs.hf_config import from_hf_config
from phasewise.specs.model_catalog import load_model

FALCON = "tiiuae/Falcon-H1-34B-Instruct"
NEMOTRON_56B = "nvidia/Nemotron-H-56B-Base-8K"

# ibm-granite/granite-4.0-h-1b's config.json, the fields the parser reads: dense (GraniteMoeHybridConfig's marker,
# num_local_experts 0 and num_experts_per_tok 0), 4 attention layers in 40
GRANITE_H_1B = {
    "model_type": "granitemoehybrid", "hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 12,
    "num_key_value_heads": 4, "intermediate_size": 4096, "shared_intermediate_size": 4096, "num_local_experts": 0,
    "num_experts_per_tok": 0, "vocab_size": 100352, "tie_word_embeddings": True, "mamba_d_state": 128,
    "mamba_n_groups": 1, "mamba_n_heads": 48, "mamba_d_head": 64, "mamba_expand": 2, "mamba_d_conv": 4,
    "mamba_chunk_size": 256, "max_position_embeddings": 131072,
    "layer_types": ["attention" if i in (5, 15, 25, 35) else "mamba" for i in range(40)]}
# nvidia/NVIDIA-Nemotron-Nano-9B-v2's config.json (the fields read): 56 blocks, 27 Mamba-2, 4 attention, 25 MLP
NANO_9B = {
    "model_type": "nemotron_h", "num_hidden_layers": 56, "hidden_size": 4480, "intermediate_size": 15680,
    "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
    "hybrid_override_pattern": "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-", "ssm_state_size": 128,
    "conv_kernel": 4, "n_groups": 8, "mamba_num_heads": 128, "mamba_head_dim": 80, "mlp_hidden_act": "relu2",
    "max_position_embeddings": 131072, "tie_word_embeddings": False, "chunk_size": 128}
# Qwen2.5-7B's shape with a quantization_config
QWEN_7B = {"model_type": "qwen2", "hidden_size": 3584, "num_attention_heads": 28, "num_key_value_heads": 4,
           "num_hidden_layers": 28, "intermediate_size": 18944, "vocab_size": 152064}


def _catalog_config(key: str) -> dict:
    from phasewise.specs.catalog import packaged

    return dict(packaged("models.yaml")["models"][key]["config"])


def _write(tmp_path, cfg: dict, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


# --- 1. Granite 4.0's dense checkpoints --------------------------------------------------------------------------
def test_granite_dense_checkpoints_load_with_a_top_k_of_zero():
    """num_experts_per_tok 0 beside num_local_experts 0 is GraniteMoeHybridConfig's dense marker: the shared MLP
    alone in every layer, ~1.5 B parameters (Granite-4.0-H-1B's model card: 1.5B)."""
    m = from_hf_config("granite-4.0-h-1b", GRANITE_H_1B)
    assert (m.num_experts, m.experts_per_token, m.num_moe_layers, m.intermediate_size) == (0, 0, 0, 4096)
    assert m.total_params == pytest.approx(1.461e9, rel=1e-3)


@pytest.mark.parametrize("change, message", [
    ({"num_local_experts": 8}, "field num_experts_per_tok must be a positive integer \\(got 0\\)"),
    ({"num_experts_per_tok": -1}, "field num_experts_per_tok must be a positive integer \\(got -1\\)"),
    ({"model_type": "granitemoe", "num_local_experts": 0}, "field num_experts_per_tok must be a positive integer"),
])
def test_a_zero_top_k_stays_refused_beside_experts_or_elsewhere(change, message):
    cfg = {**GRANITE_H_1B, **change}
    if cfg["model_type"] == "granitemoe":  # another family: no dense marker there
        cfg = {k: v for k, v in cfg.items() if not k.startswith("mamba") and k != "layer_types"}
    with pytest.raises(PhasewiseError, match=message):
        from_hf_config("g", cfg)


# --- 2. a quantization_config not modelled runs at the --precision given ------------------------------------------
@pytest.mark.parametrize("qc, message", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "quant_method 'bitsandbytes' is not modelled"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "quantization_config bits 8 is not modelled for "
                                                              "quant_method 'gptq' \\(modelled: 4 \\(w4a16\\)\\)"),
    ({"quant_method": "awq", "w_bit": 3}, "quantization_config w_bit 3 is not modelled for quant_method 'awq'"),
])
def test_an_unmodelled_format_needs_precision_and_takes_it(tmp_path, run_cli, qc, message):
    """The checkpoint loads; without --precision the run is a one-line error naming the format (or the parameter)
    and asking for --precision, with it the weights are costed as the user says."""
    path = _write(tmp_path, {**QWEN_7B, "quantization_config": qc})
    with pytest.raises(PhasewiseError, match=f"{message}.*; give --precision"):
        load_model(path).default_precision
    code, _, err = run_cli("estimate", "--model", path, "--hardware", "h100-sxm")
    assert code != 0 and err.count("\n") == 1 and "give --precision" in err
    code, out, err = run_cli("estimate", "--model", path, "--hardware", "h100-sxm", "--precision", "w8a16", "--json")
    assert code == 0, err
    assert json.loads(out)["precision"] == "w8a16"


def test_a_malformed_quantization_config_is_still_refused_at_once():
    with pytest.raises(PhasewiseError, match="quantization_config bits must be an integer"):
        from_hf_config("q", {**QWEN_7B, "quantization_config": {"quant_method": "gptq", "bits": "eight"}})
    with pytest.raises(PhasewiseError, match="quantization_config must be a mapping"):
        from_hf_config("q", {**QWEN_7B, "quantization_config": ["fp8"]})


def test_meta_fbgemm_fp8_checkpoints_run_as_the_catalog_runs_them(tmp_path):
    """meta-llama/Llama-3.1-405B-Instruct-FP8's own config.json (quant_method fbgemm_fp8: per-channel FP8 weights,
    per-token dynamic FP8 activations in vLLM) is fp8, as the catalog's alias of that checkpoint is."""
    catalog = load_model("meta-llama/Llama-3.1-405B-Instruct-FP8")
    qc = {"activation_scale_ub": 1200.0, "modules_to_not_convert": ["model.layers.0.mlp.down_proj", "lm_head"],
          "quant_method": "fbgemm_fp8"}
    ours = load_model(_write(tmp_path, {**_catalog_config("meta-llama/Llama-3.1-405B"), "quantization_config": qc}))
    assert ours.default_precision == catalog.default_precision == "fp8"
    assert ours.model_copy(update={"name": catalog.name}) == catalog


def test_an_unquantized_checkpoint_keeps_bf16_and_a_catalog_alias_keeps_its_format():
    assert load_model("meta-llama/Llama-3.1-8B").default_precision == "bf16"
    assert load_model("nvidia/Llama-3.1-8B-Instruct-FP8").default_precision == "fp8"


# --- 3. layers in the config's decoder layers ---------------------------------------------------------------------
def test_mamba_hybrids_count_the_configs_decoder_layers():
    """Falcon-H1-34B's 72 layers (each costed as two) and Nemotron-H-56B's 118 blocks (costed as 64 paired
    layers): decoder_layers is the config's num_hidden_layers; the cost model's layers stay as they were."""
    falcon, nemotron = load_model(FALCON), load_model(NEMOTRON_56B)
    assert (falcon.decoder_layers, falcon.num_layers) == (72, 144)
    assert (nemotron.decoder_layers, nemotron.num_layers) == (118, 64)
    nano = from_hf_config("nano-9b", NANO_9B)
    assert (nano.decoder_layers, nano.num_layers) == (56, 31)
    assert load_model("meta-llama/Llama-3.1-8B").decoder_layers == 32  # num_layers where they are the same


def test_the_pp_bound_is_the_decoder_layers():
    falcon, nemotron = load_model(FALCON), load_model(NEMOTRON_56B)
    check_parallelism(falcon, 1, 72)
    with pytest.raises(PhasewiseError, match="^--pp 73 exceeds the 72 layers of tiiuae/Falcon-H1-34B-Instruct$"):
        check_parallelism(falcon, 1, 73)
    with pytest.raises(PhasewiseError, match="^--pp 119 exceeds the 118 layers of"):
        check_parallelism(nemotron, 1, 119)
    # within the 118 layers: refused only where a stage would be costed without a softmax layer, naming the bound
    with pytest.raises(PhasewiseError, match="--pp 66: a stage of 1 costed layers keeps no softmax-attention layer "
                                             ".*its 118 layers costed as 64.*use --pp 21 or less"):
        check_parallelism(nemotron, 1, 66)
    check_parallelism(nemotron, 1, 21)


# --- 4. one --tp allowed list, naming the config's own fields -----------------------------------------------------
@pytest.mark.parametrize("model, tp, message", [
    (FALCON, 8, "--tp 8 does not divide num_attention_heads=20 of .* \\(allowed: 1, 2\\)$"),
    (FALCON, 4, "--tp 4 does not divide the linear-attention heads of .* \\(mamba_n_groups=2, mamba_n_heads=32: "
                ".*allowed: 1, 2\\)$"),
    (NANO_9B, 16, "--tp 16 does not divide num_attention_heads=40 of .* \\(allowed: 1, 2, 4, 8\\)$"),
    (NANO_9B, 40, "--tp 40 does not divide the linear-attention heads of .* \\(n_groups=8, mamba_num_heads=128: "
                  ".*allowed: 1, 2, 4, 8\\)$"),
])
def test_tp_errors_allow_only_values_that_pass(model, tp, message):
    spec = from_hf_config("nano-9b", model) if isinstance(model, dict) else load_model(model)
    with pytest.raises(PhasewiseError, match=message) as err:
        check_parallelism(spec, tp, 1)
    assert "linear_num_key_heads" not in str(err.value)
    allowed = str(err.value).rsplit("allowed: ", 1)[1].rstrip(")").split(", ")
    for value in allowed:
        check_parallelism(spec, int(value), 1)


@pytest.mark.parametrize("model", [FALCON, NEMOTRON_56B, "Qwen/Qwen3.5-27B", "moonshotai/Kimi-Linear-48B-A3B-Instruct",
                                   "ai21labs/AI21-Jamba-Mini-1.5", "MiniMaxAI/MiniMax-M1-80k",
                                   "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "meta-llama/Llama-3.1-8B"])
def test_every_tp_a_refusal_allows_passes(model):
    spec = load_model(model)
    with pytest.raises(PhasewiseError, match="allowed: ") as err:
        check_parallelism(spec, 3 * spec.num_heads + 1, 1)  # divides nothing
    for value in str(err.value).rsplit("allowed: ", 1)[1].rstrip(")").split(", "):
        check_parallelism(spec, int(value), 1)
