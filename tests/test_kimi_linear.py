"""Kimi Linear (kimi_linear): KDA layers beside latent attention without RoPE, and a DeepSeek-style MoE under its own
field names; parameter counts, KV and state bytes, TP sharding and kernel counts against hand computations."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token, recurrent_state_bytes_per_sequence, weight_bytes_per_gpu
from phasewise.perf.operators import KDA_KERNELS, LATENT_KERNELS, kernel_counts
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

KIMI = "moonshotai/Kimi-Linear-48B-A3B-Instruct"
H = 2304


def _config():
    return json.loads(json.dumps(packaged("models.yaml")["models"][KIMI]["config"]))


def _write(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_counts_by_hand():
    """20 KDA mixers (q, k, v 2304 -> 4096; b -> 32 heads; the decay and gate pairs 2304 -> 128 -> 4096; three
    4-tap convs; o 4096 -> 2304), 7 latent ones (q 2304 -> 32 x 192, KV down to 512 + 64, KV up 512 -> 32 x 256,
    o 4096 -> 2304), 26 MoE layers (256 experts and 1 shared of 1024, the router) and 1 dense (9216), untied
    embeddings of 163,840."""
    m = load_model(KIMI)
    assert (m.linear_attention_layers, m.full_attention_layers, m.num_moe_layers) == (20, 7, 26)
    assert (m.experts_per_token, m.shared_expert_intermediate_size, m.attention_rope) == (8, 1024, False)
    kda = H * (3 * 4096 + 32) + 2 * (H * 128 + 128 * 4096) + 3 * 4096 * 4 + 4096 * H
    mla = H * 32 * 192 + H * 576 + 512 * 32 * 256 + 32 * 128 * H
    moe = 256 * 3 * H * 1024 + 3 * H * 1024 + H * 256
    total = 20 * kda + 7 * mla + 26 * moe + 3 * H * 9216 + 2 * 163840 * H
    assert m.linear_attention_params == kda and m.total_params == total == 49_122_459_648
    assert m.active_params == total - 26 * (256 - 8) * 3 * H * 1024  # 3.48 B: the name's A3B


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_kv_state_and_weights_per_gpu(tp):
    """Latent KV of 576 elements per token on the 7 attention layers, whole on every rank; each sequence's state:
    32 / tp heads of 128 x 128 plus the convs' last 3 inputs of 3 x 4096 / tp channels, on 20 layers; the low-rank
    down-projections (2304 -> 128, twice) whole on every rank, the rest of a KDA mixer split."""
    m, quant = load_model(KIMI), load_quant("bf16")
    assert kv_bytes_per_token(m, quant, tp, 1) == 576 * 2 * 7
    state = recurrent_state_bytes_per_sequence(m, quant, tp, 1, "fp32")
    assert state == pytest.approx(20 * (32 * 128 * 128 * 4 + 3 * 4096 * 3 * 2) / tp)
    whole = 2 * H * 128
    split = m.linear_attention_params - whole
    no_kda = m.model_copy(update={"linear_attention_layers": 0, "linear_recurrence": "gated_deltanet"})
    # 20 of the 27 layers hold a KDA mixer (per GPU: split / tp + whole) in place of a latent one, in BF16
    expected = 20 * (split / tp + whole - _mla_per_gpu(m, tp)) * 2
    assert weight_bytes_per_gpu(m, quant, tp, 1) - weight_bytes_per_gpu(no_kda, quant, tp, 1) == pytest.approx(
        expected, rel=1e-9)


def _mla_per_gpu(m, tp):
    whole = H * m.kv_latent_size  # q_lora_rank 0: the KV down-projection is the whole part
    return whole + (m.attention_params - whole) / tp


def test_kernel_counts_mix_kda_into_latent_attention():
    share = 20 / 27
    counts = kernel_counts(True, True, linear_share=share, linear_recurrence="kda")
    for name in ("qkv_proj", "attention"):
        assert counts[name] == pytest.approx(LATENT_KERNELS[name] * (1 - share) + KDA_KERNELS[name] * share)


def test_no_rope_on_the_latent_layers_and_a_decode_step_costs_the_kda_state():
    """mla_use_nope: the elementwise pass carries no RoPE; a decode step reads and writes every running sequence's
    KDA state, so it grows by 2 x state bytes per sequence whatever the context."""
    m, hw, quant, engine = load_model(KIMI), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    roped = m.model_copy(update={"attention_rope": True})
    shape = BatchShape.uniform(8, 1, 4096)

    def op(model, name):
        return next(o for o in CostModel(model, hw, quant, engine, 2, 1).iteration(shape).operators
                    if o.name == name)

    assert op(roped, "elementwise").bytes > op(m, "elementwise").bytes
    state = recurrent_state_bytes_per_sequence(m, quant, 2, 1, engine.recurrent_state_dtype)
    one = op(m, "attention").bytes
    sixteen = next(o for o in CostModel(m, hw, quant, engine, 2, 1).iteration(BatchShape.uniform(16, 1, 4096))
                   .operators if o.name == "attention").bytes
    assert sixteen - one >= 8 * state * 2 * 0.99


@pytest.mark.parametrize("field,value,message", [
    ("routed_expert_hidden_size", 3584, "routed_expert_hidden_size \\(a latent MoE\\)"),
    ("attn_res_block_size", 12, "attn_res_block_size \\(attention residuals\\)"),
    ("mla_use_output_gate", True, "mla_use_output_gate \\(gated latent attention\\)"),
])
def test_kimi_k3_additions_are_refused_by_name(tmp_path, field, value, message):
    cfg = _config() | {field: value}
    with pytest.raises(PhasewiseError, match=f"field {message} is not modelled for model_type 'kimi_linear'"):
        load_model(_write(tmp_path, cfg))


@pytest.mark.parametrize("change,message", [
    (lambda c: c.pop("linear_attn_config"), "missing field linear_attn_config"),
    (lambda c: c["linear_attn_config"].update(kda_layers="1-26"), "kda_layers must be a list of layer numbers"),
    (lambda c: c["linear_attn_config"].update(full_attn_layers=[4, 8]), "must name each of the 27 layers"),
    (lambda c: c["linear_attn_config"].update(kda_layers=list(range(0, 20))), "must name each of the 27 layers"),
    (lambda c: c["linear_attn_config"].update(num_heads=0), "linear_attn_config.num_heads must be a positive"),
    (lambda c: c["linear_attn_config"].pop("head_dim"), "linear_attn_config.head_dim must be a positive"),
])
def test_malformed_linear_attn_config_is_a_one_line_error(tmp_path, change, message):
    cfg = _config()
    change(cfg)
    with pytest.raises(PhasewiseError, match=message) as err:
        load_model(_write(tmp_path, cfg))
    assert "\n" not in str(err.value)


def test_tp_must_divide_the_kda_heads(tmp_path):
    from phasewise.perf.parallel import check_parallelism
    check_parallelism(load_model(KIMI), 8, 1)
    cfg = _config()
    cfg["linear_attn_config"]["num_heads"] = 16
    with pytest.raises(PhasewiseError, match="--tp 32 does not divide the linear-attention heads"):
        check_parallelism(load_model(_write(tmp_path, cfg)), 32, 1)
