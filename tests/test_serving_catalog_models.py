"""Models AIConfigurator's default list serves (Qwen3 0.6B-14B, Qwen3-Coder, Qwen3.5 27B / 35B-A3B / 122B-A10B,
MiniMax-M2.7, MiMo-7B, Nemotron-H-56B, Nemotron 3 Super) in the catalog (their sizes against their names:
tests/test_specs.py): parameters and KV bytes per token by hand, and the two things a real config.json of them
needed: transformers' Infinity in a Mamba-2 config, and MiMo's own model_type."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.specs import load_model, load_quant
from phasewise.specs.catalog import packaged


def test_qwen3_dense_sizes_by_hand():
    """Qwen3-0.6B: 28 layers of q (16 x 128), k and v (8 x 128 each), o, q / k norms, a 3072-wide SwiGLU MLP and two
    norms, one final norm, one tied 151,936 x 1,024 embedding; KV 28 x 2 x 8 x 128 x 2 bytes per token in BF16."""
    m = load_model("Qwen/Qwen3-0.6B")
    h = 1024
    attention = h * 16 * 128 + 2 * h * 8 * 128 + 16 * 128 * h
    layer = attention + 3 * h * 3072
    assert m.total_params == pytest.approx(28 * layer + 151936 * h, rel=2e-4)  # norms: ~0.01 %
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 28 * 2 * 8 * 128 * 2


def test_the_coder_moe_is_qwen3_moe_at_480b():
    """62 layers of 160 experts (2 x 6144 x 2560 up, 2560 x 6144 down), top-8, no shared expert; 96 query / 8 KV
    heads of 128; KV 62 x 2 x 8 x 128 x 2 bytes per token in BF16."""
    m = load_model("Qwen/Qwen3-Coder-480B-A35B-Instruct")
    assert (m.num_layers, m.num_experts, m.experts_per_token) == (62, 160, 8)
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 62 * 2 * 8 * 128 * 2
    assert load_model("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8").native_precision == "fp8-block"


def test_minimax_m27_is_m2s_architecture_with_its_own_context():
    """M2.7 has M2's shapes; the routing skew fitted on M2.5's runs stays with the M2 entry (M2 / M2.1 / M2.5), a
    trained router's property no M2.7 run was fitted on: M2.7 routes uniformly."""
    m2, m27 = load_model("MiniMaxAI/MiniMax-M2"), load_model("MiniMaxAI/MiniMax-M2.7")
    apart = {"name", "max_position_embeddings", "expert_top20_share"}
    assert m27.model_dump(exclude=apart) == m2.model_dump(exclude=apart)
    assert m27.native_precision == "fp8-block"
    assert m2.expert_top20_share is not None and m27.expert_top20_share is None


def test_nemotron_3_super_checkpoints_default_to_their_formats():
    assert load_model("nemotron-3-super").native_precision is None
    assert load_model("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-FP8").native_precision == "fp8"
    assert load_model("nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4").native_precision == "nvfp4"


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "config.json"
    path.write_text(text)
    return str(path)


def test_a_mamba2_config_json_as_transformers_writes_it_loads(tmp_path):
    """transformers' Mamba-2 family configs default time_step_limit to (0.0, inf), which Python's json writes as
    Infinity: the real Nemotron-H files hold it. The field is not read, so the file loads as the catalog entry does."""
    cfg = packaged("models.yaml")["models"]["nvidia/Nemotron-H-56B-Base-8K"]["config"]
    text = json.dumps({**cfg, "time_step_limit": [0.0, float("inf")]})
    assert "Infinity" in text
    m = load_model(_write(tmp_path, text))
    assert m.total_params == load_model("nvidia/Nemotron-H-56B-Base-8K").total_params


@pytest.mark.parametrize("field, token", [
    ('"hidden_size": 8192', '"hidden_size": NaN'),
    ('"num_attention_heads": 64', '"num_attention_heads": Infinity'),
    ('"time_step_min": 0.001', '"time_step_min": -Infinity'),  # allowed only in time_step_limit
])
def test_a_non_finite_number_anywhere_else_is_refused_by_name(tmp_path, field, token):
    cfg = packaged("models.yaml")["models"]["nvidia/Nemotron-H-56B-Base-8K"]["config"]
    text = json.dumps({**cfg, "time_step_limit": [0.0, float("inf")]}).replace(field, token)
    assert token in text
    name = token.split(":")[0].strip('"')
    with pytest.raises(PhasewiseError, match=rf"field {name} holds {token.split(': ')[1]} \(a number must be "
                                             "finite\\)") as info:
        load_model(_write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_a_nested_non_finite_number_names_its_path(tmp_path):
    cfg = packaged("models.yaml")["models"]["Qwen/Qwen3.5-27B"]["config"]
    text = json.dumps(cfg).replace('"hidden_size": 5120', '"hidden_size": Infinity')
    with pytest.raises(PhasewiseError, match=r"field text_config\.hidden_size holds Infinity"):
        load_model(_write(tmp_path, text))


def test_other_json_files_still_refuse_infinity_anywhere(tmp_path):
    from phasewise.specs.reading import read_user_file
    path = tmp_path / "deployment.json"
    path.write_text('{"model": "Qwen/Qwen3-0.6B", "time_step_limit": [0.0, Infinity]}')
    with pytest.raises(PhasewiseError, match="Infinity is not JSON"):
        read_user_file(path, "deployment")


def test_mimo_is_qwen2_layers_and_its_mtp_layer_is_not_counted(tmp_path):
    """MiMo-7B (MiMoConfig(Qwen2Config)): 36 layers of q / k / v with biases, o, an 11,008-wide SwiGLU MLP; untied
    151,680 x 4,096 embeddings; its num_nextn_predict_layers MTP layer serves as a draft and is not counted."""
    m = load_model("XiaomiMiMo/MiMo-7B-Base")
    h = 4096
    layer = h * 4096 + 2 * h * 1024 + 4096 * h + 3 * h * 11008
    assert m.total_params == pytest.approx(36 * layer + 2 * 151680 * h, rel=2e-4)  # biases and norms: ~0.01 %
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 36 * 2 * 8 * 128 * 2
    cfg = packaged("models.yaml")["models"]["XiaomiMiMo/MiMo-7B-Base"]["config"]
    assert load_model(_write(tmp_path, json.dumps({**cfg, "num_nextn_predict_layers": 0}))).total_params == \
        m.total_params
