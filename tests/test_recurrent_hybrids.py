"""Jamba's Mamba-1 layers and MiniMax-Text-01 / M1's lightning attention: their config.json fields, parameter counts
against the published ones, recurrent state, the scan and lightning kernels and the mixers' own all-reduce, each
against a hand computation."""

from __future__ import annotations

import json
import math

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.attention import MAMBA1_SCAN_FLOPS, LinearAttention
from phasewise.perf.memory import kv_bytes_per_token, kv_state_pages, recurrent_state_bytes_per_sequence
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.engines import resolve_engine

JAMBA_MINI, JAMBA_LARGE, MINIMAX_M1 = ("ai21labs/AI21-Jamba-Mini-1.5", "ai21labs/AI21-Jamba-Large-1.5",
                                       "MiniMaxAI/MiniMax-M1-80k")


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _mamba1_params(h: int, inner: int, state: int, rank: int, taps: int) -> int:
    """in_proj to x and z, the depthwise conv, x_proj to dt's rank with B and C, dt_proj back to the channels, the
    channels' decays A (inner x state), out_proj; biases, D and the dt / B / C norms not counted (as no norm is)."""
    return h * 2 * inner + inner * taps + inner * (rank + 2 * state) + rank * inner + inner * state + inner * h


def _jamba_params(h, layers, heads, kv_heads, inter, rank, vocab=65536):
    attention_layers = layers // 8
    mamba = _mamba1_params(h, 2 * h, 16, rank, 4)
    attention = h * (heads * 128 + 2 * kv_heads * 128) + heads * 128 * h
    mlp = 3 * h * inter
    moe = 16 * mlp + h * 16
    total = ((layers - attention_layers) * mamba + attention_layers * attention + layers // 2 * (mlp + moe)
             + 2 * vocab * h)
    active = total - layers // 2 * 14 * mlp
    return total, active


@pytest.mark.parametrize("name, shape, published", [
    (JAMBA_MINI, (4096, 32, 32, 8, 14336, 256), (52e9, 12e9)),
    (JAMBA_LARGE, (8192, 72, 64, 8, 24576, 512), (398e9, 94e9)),
])
def test_jamba_layers_and_parameters_by_hand(name, shape, published):
    """Attention in every 8th layer from layer 4, Mamba-1 in the rest; a MoE in every odd layer; the card's totals
    (52B / 12B active, 398B / 94B) to 1 %."""
    m = load_model(name)
    h, layers = shape[0], shape[1]
    assert (m.num_layers, m.linear_attention_layers, m.num_moe_layers, m.num_dense_layers) == (
        layers, layers - layers // 8, layers // 2, layers // 2)
    assert (m.linear_recurrence, m.linear_key_heads, m.linear_value_heads, m.linear_value_head_dim,
            m.linear_key_head_dim, m.linear_conv_kernel, m.linear_dt_rank) == ("mamba1", 0, 2 * h, 1, 16, 4, shape[5])
    assert not m.attention_rope and m.shared_expert_intermediate_size == 0
    assert m.linear_attention_params == _mamba1_params(h, 2 * h, 16, shape[5], 4)
    total, active = _jamba_params(*shape)
    assert (m.total_params, m.active_params) == (total, active)
    assert m.total_params == pytest.approx(published[0], rel=0.01)
    assert m.active_params == pytest.approx(published[1], rel=0.01)


def test_minimax_m1_layers_and_parameters_by_hand():
    """70 lightning and 10 softmax layers (attn_type_list), every layer a MoE of 32 experts; 456 B parameters and
    45.9 B active without the embeddings (the model card's figures)."""
    m = load_model(MINIMAX_M1)
    assert (m.num_layers, m.linear_attention_layers, m.num_moe_layers, m.num_dense_layers) == (80, 70, 80, 0)
    assert (m.linear_recurrence, m.linear_key_heads, m.linear_value_heads, m.linear_key_head_dim,
            m.linear_value_head_dim, m.linear_conv_kernel, m.linear_chunk_tokens) == ("lightning", 64, 64, 128, 128,
                                                                                      0, 256)
    h, width = 6144, 64 * 128
    lightning = h * (3 * width + width) + width * h  # q, k, v and the output gate; out_proj
    attention = h * (width + 2 * 8 * 128) + width * h
    moe = 32 * 3 * h * 9216 + h * 32
    assert m.linear_attention_params == lightning
    assert m.total_params == 70 * lightning + 10 * attention + 80 * moe + 2 * 200064 * h
    assert m.total_params == pytest.approx(456e9, rel=0.001)
    assert m.active_params - 2 * m.embedding_params == pytest.approx(45.9e9, rel=0.002)


def test_transformers_minimax_names_its_layers_in_layer_types(tmp_path):
    """transformers' MiniMaxConfig (model_type minimax) lists layer_types; the count follows them."""
    cfg = {"model_type": "minimax", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 512, "num_local_experts": 4,
           "num_experts_per_tok": 2, "vocab_size": 1000,
           "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"]}
    m = load_model(_write(tmp_path, cfg))
    assert (m.linear_attention_layers, m.linear_recurrence, m.linear_value_heads) == (3, "lightning", 8)
    listed = {k: v for k, v in cfg.items() if k != "layer_types"} | {"model_type": "minimax_m1",
                                                                     "attn_type_list": [0, 0, 0, 1]}
    assert load_model(_write(tmp_path, listed)).total_params == m.total_params


def test_jamba_dt_rank_auto_and_the_class_defaults(tmp_path):
    """mamba_dt_rank "auto" is ceil(hidden / 16); the period fields JambaConfig supplies may be left out."""
    cfg = {"model_type": "jamba", "hidden_size": 1000, "num_hidden_layers": 16, "num_attention_heads": 8,
           "num_key_value_heads": 8, "intermediate_size": 512, "vocab_size": 1000, "mamba_dt_rank": "auto"}
    m = load_model(_write(tmp_path, cfg))
    assert (m.linear_dt_rank, m.linear_attention_layers, m.num_moe_layers, m.num_experts) == (
        math.ceil(1000 / 16), 14, 8, 16)


@pytest.mark.parametrize("change, match", [
    ({"attn_layer_offset": 8}, "field attn_layer_offset must be an integer in 0..7"),
    ({"expert_layer_period": 0}, "field expert_layer_period must be a positive integer"),
    ({"attn_layer_period": 64, "attn_layer_offset": 40}, "leave none of the 32 layers with attention"),
    ({"mamba_dt_rank": "wide"}, "field mamba_dt_rank must be a positive integer"),
    ({"mamba_d_state": -1}, "field mamba_d_state must be a positive integer"),
    ({"sliding_window": 4096}, "sliding-window attention are not modelled"),
])
def test_bad_jamba_fields_are_one_line_errors(tmp_path, change, match):
    cfg = _catalog_config(JAMBA_MINI) | change
    with pytest.raises(PhasewiseError, match=match):
        load_model(_write(tmp_path, cfg))


@pytest.mark.parametrize("change, match", [
    ({"attn_type_list": [0, 1]}, "field attn_type_list must give each of the 80 layers 0 \\(lightning\\) or 1"),
    ({"attn_type_list": [2] * 80}, "field attn_type_list must give each of the 80 layers"),
    ({"attn_type_list": None}, "missing field attn_type_list or layer_types"),
    ({"attn_type_list": None, "layer_types": ["linear_attention"] * 79}, "layer_types lists 79 layers"),
    ({"attn_type_list": None, "layer_types": ["linear_attention"] * 79 + ["chunked_attention"]},
     "field layer_types \\(chunked_attention\\) is not modelled for model_type 'minimax_m1'"),
    ({"attn_type_list": [0] * 80}, "at least one of the 80 layers must keep softmax attention"),
])
def test_bad_minimax_fields_are_one_line_errors(tmp_path, change, match):
    cfg = _catalog_config(MINIMAX_M1) | change
    with pytest.raises(PhasewiseError, match=match):
        load_model(_write(tmp_path, cfg))


@pytest.mark.parametrize("model_type", ["mamba", "mamba2", "falcon_mamba"])
def test_pure_state_space_models_are_refused_by_name(tmp_path, model_type):
    with pytest.raises(PhasewiseError, match=f"model_type '{model_type}' is not modelled yet \\(state-space layers "
                                             "only, no attention layer\\)"):
        load_model(_write(tmp_path, {"model_type": model_type, "hidden_size": 4096}))


def _catalog_config(name: str) -> dict:
    from phasewise.specs.catalog import packaged

    return dict(packaged("models.yaml")["models"][name]["config"])


def test_recurrent_state_and_vllm_page_of_jamba_mini_by_hand():
    """28 Mamba-1 layers x (8,192 channels x 16 state elements + the conv's 3 taps of 8,192 channels): 8.3 MiB per
    sequence in BF16 on one GPU; 4 attention layers of 8 KV heads: 16 KiB per token; vLLM's hybrid page raises the
    attention block to 80 tokens (one layer's state of 311,296 bytes over 4,096 bytes a token and layer, to 16s)."""
    m, bf16 = load_model(JAMBA_MINI), load_quant("bf16")
    assert recurrent_state_bytes_per_sequence(m, bf16, 1, 1, "bf16") == 28 * (8192 * 16 * 2 + 8192 * 3 * 2)
    assert recurrent_state_bytes_per_sequence(m, bf16, 2, 1, "fp32") == 28 * (4096 * 16 * 4 + 4096 * 3 * 2)
    assert kv_bytes_per_token(m, bf16, 1, 1) == 4 * 2 * 8 * 128 * 2
    block, _ = kv_state_pages(resolve_engine("vllm", load_hardware("h100-sxm")), m, bf16, 1, 1)
    assert block == 16 * math.ceil(311_296 / 4096 / 16)


def test_minimax_state_is_a_head_dim_square_per_head():
    m, bf16 = load_model(MINIMAX_M1), load_quant("bf16")
    assert recurrent_state_bytes_per_sequence(m, bf16, 8, 1, "bf16") == 70 * 8 * 128 * 128 * 2  # no conv
    assert kv_bytes_per_token(m, bf16, 8, 1) == 10 * 2 * 1 * 128 * 2


def test_mamba1_scan_by_hand():
    """The selective scan: 9 FLOPs per token, channel and state element on CUDA cores in prefill and decode alike;
    the state read and written once per sequence (no per-chunk states); dt per channel and B, C stream in."""
    scan = LinearAttention(share=28 / 32, value_heads=4096, key_head_dim=16, value_head_dim=1, conv_dim=4096,
                           conv_taps=4, state_bytes=2, activation_bytes=2, recurrence="mamba1", key_heads=0)
    state = 4096 * 16 * 2
    stream = 8192 * (3 * 4096 + 4 * 4096 + 4096 + 2 * 16) * 2
    conv = 4096 * 3 * 2 * 2
    flops, nbytes, compute_s, _ = scan.kernel(2, 8192, False, 1e15, 1e14, lambda b: b / 4e12)
    assert flops == 8192 * 4096 * MAMBA1_SCAN_FLOPS * 16 and compute_s == flops / 1e14
    assert nbytes == stream + 2 * conv + 2 * state * 2
    decode = scan.kernel(16, 16, True, 1e15, 1e14, lambda b: b / 4e12)
    assert decode[0] == 16 * 4096 * 9 * 16 and decode[2] == decode[0] / 1e14


def test_lightning_kernels_by_hand():
    """Prefill in blocks of 256: per token and head 2 x 256 x (d_k + d_v) + 4 d_k d_v on tensor cores; decode 5 d_k
    d_v on CUDA cores; no conv, no per-token scalars."""
    lightning = LinearAttention(share=70 / 80, value_heads=8, key_head_dim=128, value_head_dim=128,
                                conv_dim=3 * 8 * 128, conv_taps=0, state_bytes=2, activation_bytes=2,
                                recurrence="lightning", key_heads=8, chunk_tokens=256)
    flops, nbytes, compute_s, _ = lightning.kernel(1, 4096, False, 1e15, 1e14, lambda b: b)
    assert flops == 4096 * 8 * (2 * 256 * 256 + 4 * 128 * 128) and compute_s == flops / 1e15
    state = 8 * 128 * 128 * 2
    assert nbytes == 4096 * (3 * 3072 + 4 * 1024) * 2 + (4096 / 256 + 1) * state * 2 + state * 2
    flops, _, compute_s, _ = lightning.kernel(16, 16, True, 1e15, 1e14, lambda b: b)
    assert flops == 16 * 8 * 5 * 128 * 128 and compute_s == flops / 1e14


def _cost(name: str, tp: int, engine: str = "vllm", hardware: str = "h100-sxm") -> CostModel:
    return CostModel(load_model(name), load_hardware(hardware), load_quant("bf16"), load_engine(engine), tp)


def _ops(cm: CostModel, shape: BatchShape) -> dict:
    return {op.name: op for op in cm.iteration(shape).operators}


def test_the_mixers_own_all_reduce_by_hand():
    """Under TP, Mamba-1's x_proj output (dt's rank with B and C, 256 + 32 values a token) and lightning attention's
    RMSNorm variance (one FP32 sum a token) are all-reduced once in each such layer, beside the block's all-reduces;
    nothing at TP 1."""
    jamba = _ops(_cost(JAMBA_MINI, 2), BatchShape.uniform(4, 512, 0))
    assert jamba["linear_allreduce"].count == 28 and jamba["linear_allreduce"].bytes == 28 * 4 * 512 * 288 * 2
    assert jamba["tp_allreduce"].count == 64
    minimax = _ops(_cost(MINIMAX_M1, 8, hardware="h200-sxm"), BatchShape.uniform(2, 1024, 0))
    assert minimax["linear_allreduce"].count == 70 and minimax["linear_allreduce"].bytes == 70 * 2 * 1024 * 4
    assert "linear_allreduce" not in _ops(_cost(JAMBA_MINI, 1), BatchShape.uniform(4, 512, 0))


def test_jamba_projections_by_hand():
    """The Mamba-1 layers' projections: in_proj (x, z), x_proj from this rank's channels, dt_proj back to them; the
    attention layers' q, k, v; the mean layer's FLOPs at TP 2."""
    cm = _cost(JAMBA_MINI, 2)
    tokens = 1024
    qkv = _ops(cm, BatchShape.uniform(1, tokens, 0))["qkv_proj"]
    mamba = 2 * tokens * (4096 * 8192 + 4096 * 288 + 256 * 4096)
    attention = 2 * tokens * 4096 * (16 * 128 + 2 * 4 * 128)
    assert qkv.flops == pytest.approx(28 * mamba + 4 * attention, rel=1e-9)


@pytest.mark.parametrize("name, tp, hardware", [(JAMBA_MINI, 2, "h100-sxm"), (MINIMAX_M1, 8, "h200-sxm"),
                                                ("LiquidAI/LFM2-8B-A1B", 1, "h100-sxm"),
                                                ("tiiuae/Falcon-H1-34B-Instruct", 2, "h100-sxm")])
def test_decode_runs_are_costed_as_fast_does_step_by_step(name, tp, hardware):
    from phasewise.perf.decode_line import DecodeLine

    assert_decode_runs_match_fast(_cost(name, tp, hardware=hardware), DecodeLine, (1, 64), (20, 8000), 200, (0, 150))


@pytest.mark.parametrize("name, tp, hardware", [(JAMBA_MINI, 2, "h100-sxm"), (MINIMAX_M1, 8, "h200-sxm")])
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_recurrent_hybrids_simulate_with_their_invariants(name, tp, hardware, engine):
    from phasewise.sim.api import run

    result = run(model=name, hardware=hardware, tp=tp, engine=engine, rate=4, requests=30, isl=2048, osl=64,
                 check_invariants=True).summary()
    assert result["completed"] == 30


def test_tp_must_divide_the_channels_and_heads():
    with pytest.raises(PhasewiseError, match="--tp 3 does not divide num_attention_heads=32"):
        _cost(JAMBA_MINI, 3)


LFM2, LFM2_MOE = "LiquidAI/LFM2-1.2B", "LiquidAI/LFM2-8B-A1B"


def _short_conv_params(h: int, taps: int) -> int:
    """in_proj to B, C and x, the depthwise conv's taps, out_proj (no biases)."""
    return h * 3 * h + h * taps + h * h


def test_lfm2_layers_and_parameters_by_hand():
    """LFM2-1.2B: 10 short-conv and 6 attention layers, every MLP 8,192 wide (two thirds of block_ff_dim 12,288,
    rounded to 256), tied embeddings: the card's 1,170,340,608 less its norms (68,352) exactly."""
    m = load_model(LFM2)
    assert (m.num_layers, m.linear_attention_layers, m.intermediate_size, m.tie_embeddings) == (16, 10, 8192, True)
    assert (m.linear_recurrence, m.linear_key_heads, m.linear_key_head_dim, m.linear_value_heads,
            m.linear_value_head_dim, m.linear_conv_kernel) == ("short_conv", 0, 0, 2048, 1, 3)
    h = 2048
    attention = h * (32 * 64 + 2 * 8 * 64) + 32 * 64 * h
    assert m.linear_attention_params == _short_conv_params(h, 3)
    assert m.total_params == 10 * _short_conv_params(h, 3) + 6 * attention + 16 * 3 * h * 8192 + 65536 * h
    norms = 16 * 2 * h + h + 6 * 2 * 64  # two per layer, the final one, the attention layers' q and k norms
    assert m.total_params + norms == 1_170_340_608


def test_lfm2_moe_dense_layers_and_experts_by_hand():
    """LFM2-8B-A1B: the first 2 layers dense (7,168, as written), 22 MoE of 32 experts of 1,792, top-4; 8.3B total
    and 1.5B active (the paper's figures)."""
    m = load_model(LFM2_MOE)
    assert (m.num_layers, m.linear_attention_layers, m.num_dense_layers, m.num_moe_layers, m.intermediate_size) == (
        24, 18, 2, 22, 7168)
    assert (m.num_experts, m.experts_per_token, m.expert_intermediate_size, m.shared_expert_intermediate_size) == (
        32, 4, 1792, 0)
    assert m.total_params == pytest.approx(8.3e9, rel=0.01) and m.active_params == pytest.approx(1.5e9, rel=0.04)


@pytest.mark.parametrize("change, width", [
    ({}, 8192),
    ({"block_auto_adjust_ff_dim": False}, 12288),  # LFM2-2.6B writes its width so
    ({"block_ffn_dim_multiplier": 1.5}, 12288),  # int(1.5 x 8192) rounded up to 256
    ({"block_ff_dim": 6656}, 4608),  # LFM2-350M's
])
def test_lfm2_mlp_width_follows_lfm2mlp(tmp_path, change, width):
    assert load_model(_write(tmp_path, _catalog_config(LFM2) | change)).intermediate_size == width


def test_lfm2_layer_types_and_full_attn_idxs_agree(tmp_path):
    """Lfm2Config's own layer_types ("conv" / "full_attention") give the spec full_attn_idxs gives; with neither,
    every layer is attention (the class's default)."""
    cfg = _catalog_config(LFM2)
    listed = {k: v for k, v in cfg.items() if k != "full_attn_idxs"} | {
        "layer_types": ["full_attention" if i in (2, 5, 8, 10, 12, 14) else "conv" for i in range(16)]}
    assert load_model(_write(tmp_path, listed)) == load_model(LFM2).model_copy(update={"name": str(tmp_path /
                                                                                              "config.json")})
    plain = load_model(_write(tmp_path, {k: v for k, v in cfg.items() if k != "full_attn_idxs"}))
    assert plain.linear_attention_layers == 0 and plain.full_attention_layers == 16


@pytest.mark.parametrize("model, change, match", [
    (LFM2, {"full_attn_idxs": [2, 16]}, "field full_attn_idxs must list layer indices in 0..15"),
    (LFM2, {"block_ffn_dim_multiplier": -1}, "field block_ffn_dim_multiplier must be a positive number"),
    (LFM2, {"conv_L_cache": 0}, "field conv_L_cache must be a positive integer"),
    (LFM2, {"full_attn_idxs": None, "layer_types": ["conv"] * 15 + ["linear_attention"]},
     "field layer_types \\(linear_attention"),
    (LFM2, {"full_attn_idxs": []}, "at least one of the 16 layers must keep softmax attention"),
    (LFM2_MOE, {"num_dense_layers": -2}, "field num_dense_layers must be a non-negative integer"),
])
def test_bad_lfm2_fields_are_one_line_errors(tmp_path, model, change, match):
    cfg = {k: v for k, v in (_catalog_config(model) | change).items() if v is not None}
    with pytest.raises(PhasewiseError, match=match):
        load_model(_write(tmp_path, cfg))


def test_short_conv_kernel_and_state_by_hand():
    """Per token and channel B x, the conv's 2 x 3 FLOPs and C's gate on CUDA cores; no recurrent state, only the
    conv's last 2 inputs per channel (8 KiB a layer for LFM2-1.2B in BF16 on one GPU)."""
    conv = LinearAttention(share=10 / 16, value_heads=2048, key_head_dim=0, value_head_dim=1, conv_dim=2048,
                           conv_taps=3, state_bytes=2, activation_bytes=2, recurrence="short_conv", key_heads=0)
    flops, nbytes, compute_s, _ = conv.kernel(2, 1024, False, 1e15, 1e14, lambda b: b)
    assert flops == 1024 * 2048 * 8 and compute_s == flops / 1e14
    assert nbytes == 1024 * (3 * 2048 + 4 * 2048) * 2 + 2 * 2048 * 2 * 2 * 2
    m = load_model(LFM2)
    assert recurrent_state_bytes_per_sequence(m, load_quant("bf16"), 1, 1) == 10 * 2048 * 2 * 2


@pytest.mark.parametrize("name", [LFM2, LFM2_MOE])
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_lfm2_simulates_with_its_invariants(name, engine):
    from phasewise.sim.api import run

    result = run(model=name, hardware="h100-sxm", engine=engine, rate=8, requests=30, isl=1024, osl=64,
                 check_invariants=True).summary()
    assert result["completed"] == 30


FALCON_H1 = "tiiuae/Falcon-H1-34B-Instruct"
# Falcon-H1-7B's shapes (secondary sources agree on these: a public MLX port's config, Megatron-Bridge's provider)
FALCON_H1_7B = {"model_type": "falcon_h1", "hidden_size": 3072, "num_hidden_layers": 44, "num_attention_heads": 12,
                "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 12288, "mamba_d_ssm": 3072,
                "mamba_n_heads": 24, "mamba_d_head": 128, "mamba_n_groups": 1, "mamba_d_state": 256,
                "mamba_d_conv": 4, "mamba_chunk_size": 128, "vocab_size": 130048, "tie_word_embeddings": False}


def _mamba2_params(h: int, heads: int, head_dim: int, groups: int, state: int, taps: int = 4) -> int:
    inner = heads * head_dim
    return h * (2 * inner + 2 * groups * state + heads) + (inner + 2 * groups * state) * taps + inner * h


def test_falcon_h1_pairs_each_layer_by_hand(tmp_path):
    """Falcon-H1-34B: 72 layers of attention and Mamba-2 side by side, costed as 144 (72 attention layers with the
    MLP, 72 Mamba-2 without); 33.64 B parameters (biases and norms apart); the 7B's shapes give 7.59 B."""
    m = load_model(FALCON_H1)
    assert (m.num_layers, m.full_attention_layers, m.linear_attention_layers, m.mlp_free_layers,
            m.num_dense_layers) == (144, 72, 72, 72, 72)
    assert (m.linear_recurrence, m.linear_key_heads, m.linear_value_heads, m.linear_value_head_dim,
            m.linear_chunk_tokens) == ("mamba2", 2, 32, 128, 128)
    h = 5120
    attention = h * (20 * 128 + 2 * 4 * 128) + 20 * 128 * h
    assert m.total_params == 72 * (attention + _mamba2_params(h, 32, 128, 2, 256) + 3 * h * 21504) + 2 * 261120 * h
    assert m.total_params == 33_641_103_360
    seven = load_model(_write(tmp_path, FALCON_H1_7B))
    assert seven.total_params == pytest.approx(7.59e9, rel=0.002)


def test_falcon_h1_all_reduces_and_tp_rules():
    """Under TP each layer all-reduces after its attention, its Mamba-2 mixer and its MLP (vLLM falcon_h1.py: three
    RowParallelLinear reductions); two groups split at TP 2 but not at TP 4 (vLLM asserts n_groups % tp == 0 or
    n_groups == 1)."""
    ops = _ops(_cost(FALCON_H1, 2), BatchShape.uniform(2, 512, 0))
    assert ops["tp_allreduce"].count == 3 * 72
    with pytest.raises(PhasewiseError, match="--tp 4 does not divide the linear-attention heads"):
        _cost(FALCON_H1, 4)


def test_falcon_h1_single_group_runs_at_tp4(tmp_path):
    """The 7B's one group is whole on every GPU (ModelSpec.linear_replicated_width), so TP 4 runs."""
    from phasewise.sim.api import run

    path = _write(tmp_path, FALCON_H1_7B)
    result = run(model=path, hardware="h100-sxm", tp=4, rate=4, requests=20, isl=1024, osl=32,
                 check_invariants=True).summary()
    assert result["completed"] == 20


@pytest.mark.parametrize("change, match", [
    ({"mamba_d_head": 100}, "mamba_n_heads \\(32\\) x mamba_d_head \\(100\\) must be the mixer's width"),
    ({"attn_layer_indices": [3, 7]}, "field attn_layer_indices is not modelled for model_type 'falcon_h1'"),
    ({"mamba_use_mlp": False}, "field mamba_use_mlp false"),
    ({"mamba_n_groups": 0}, "field mamba_n_groups must be a positive integer"),
])
def test_bad_falcon_h1_fields_are_one_line_errors(tmp_path, change, match):
    with pytest.raises(PhasewiseError, match=match):
        load_model(_write(tmp_path, _catalog_config(FALCON_H1) | change))


# A smoke bound, not an accuracy claim: the quick check's prediction (the class-default `cpu-local` entry, an older
# CPU's figures) within this factor of the thread's CPU time. On this 2-core machine (2026-12-05) the unfitted
# predictions came out 4.0-5.2x the CPU time from run to run (vision, gemma4, recurrent quick checks; the same with
# hf-eager's counted kernels or without them), so 4 failed a clean run by chance; 6 keeps the smoke test's purpose
RECURRENT_SMOKE_FACTOR = 6.0


def test_quick_recurrent_validate_json(run_cli):
    """`validate --recurrent` times a scaled MiniMax stack (transformers' MiniMaxForCausalLM: 7 lightning layers and
    one softmax layer, 2 heads of 128) and predicts the same shapes, parsed from transformers' minimax form."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    code, out, err = run_cli("validate", "--recurrent", "--quick", "--hardware", "cpu-local", "--hidden", "256",
                             "--json")
    assert code == 0, err
    data = json.loads(out)
    config = data["info"]["config"]
    assert config["layer_types"] == ["linear_attention"] * 7 + ["full_attention"]
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (2, 1, 384)
    assert [(p["phase"], p["batch"], p["tokens"]) for p in data["points"]] == [
        ("prefill", 1, 256), ("prefill", 1, 512), ("prefill", 2, 256), ("decode", 1, 256), ("decode", 4, 256)]
    for key in ("prefill_median_abs_error", "decode_worst_abs_error", "prefill_unfitted_median_abs_error"):
        assert math.isfinite(data["summary"][key])
    for p in data["points"]:
        assert 0 < p["cpu_ms"] <= p["measured_ms"] * 1.05
        assert 1 / RECURRENT_SMOKE_FACTOR < p["predicted_ms"] / p["cpu_ms"] < RECURRENT_SMOKE_FACTOR, p


@pytest.mark.parametrize("args, needle", [
    (("--dllm",), "does not combine with --dllm"),
    (("--device", "cuda"), "--device cpu"),
    (("--threads", "2"), "--threads"),
    (("--model", JAMBA_MINI), "has none"),
    (("--hidden", "100"), "multiple of the heads' 128"),
    (("--layers", "4"), "at least one softmax layer"),
    (("--blocks", "32"), "--blocks applies to --dllm"),
])
def test_recurrent_validate_flag_errors_are_one_line(run_cli, args, needle):
    code, out, err = run_cli("validate", "--recurrent", *args)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_plan_prunes_a_scheduling_variant_whose_engine_holds_more_memory():
    """vLLM V0 (the prefill-first variant) holds a recurrent state for every seat: Falcon-H1-34B's 146 MiB x 256 do
    not fit one H100 beside its weights, where V1's KV pool does; the variant is pruned, not a failed plan."""
    from phasewise.plan import PlanOptions
    from phasewise.plan.strategies import enumerate_strategies

    opts = PlanOptions(tp_options=(1,), pp_options=(1,), batch_caps=(256,), disaggregated=False)
    strategies, pruned = enumerate_strategies(FALCON_H1, "h100-sxm", 2, opts)
    assert strategies and not any("prefill-first" in s.name for s in strategies)
    assert any("prefill-first b256" in line and "under vllm-v0" in line for line in pruned)
