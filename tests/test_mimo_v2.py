"""MiMo-V2-Flash: sliding layers with twice the KV heads and values narrower than keys (ModelSpec.v_head_dim on plain
attention, window_kv_heads), parsed from either published form (specs/hf_mimo.py) and costed kind by kind: the
parameter count against the published one, KV bytes per token, prefill attention and projection FLOPs, each against a
hand computation; decode runs against fast() step by step; SGLang's hybrid SWA pool; refusals by name."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.decode_line import HybridDecodeLine
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer, window_kv_ratio
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.perf.parallel import ParallelLayout
from phasewise.perf.training import training_step
from phasewise.perf.window_kv import kv_window_terms
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import window_kv
from phasewise.specs.engines import resolve_engine

MIMO = "XiaomiMiMo/MiMo-V2-Flash"
H, HEADS, QK, V = 4096, 64, 192, 128
FULL_LAYERS = (0, 5, 11, 17, 23, 29, 35, 41, 47)


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _remote_config() -> dict:
    """The checkpoint's remote-code form (MiMoV2ForCausalLM) of the same shapes."""
    return {"architectures": ["MiMoV2ForCausalLM"], "model_type": "mimo_v2", "vocab_size": 152576, "hidden_size": H,
            "intermediate_size": 16384, "num_hidden_layers": 48, "num_attention_heads": HEADS,
            "num_key_value_heads": 4, "head_dim": QK, "v_head_dim": V, "swa_num_attention_heads": HEADS,
            "swa_num_key_value_heads": 8, "swa_head_dim": QK, "swa_v_head_dim": V, "sliding_window_size": 128,
            "hybrid_layer_pattern": [0 if i in FULL_LAYERS else 1 for i in range(48)],
            "moe_layer_freq": [0] + [1] * 47, "n_routed_experts": 256, "num_experts_per_tok": 8,
            "moe_intermediate_size": 2048, "n_shared_experts": None, "max_position_embeddings": 262144,
            "num_nextn_predict_layers": 3, "add_swa_attention_sink_bias": True, "attention_value_scale": 0.707,
            "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128], "fmt": "e4m3"}}


def test_layers_and_parameters_by_hand(tmp_path):
    """9 full layers (4 KV heads) and 39 sliding (8), q.k 192 and v 128 wide; a dense first layer and 47 MoE of 256
    experts of 2,048 (top 8), untied embeddings: 309 B total, 15 B active (published); the remote-code form the same."""
    m = load_model(MIMO)
    assert (m.num_kv_heads, m.window_layer_kv_heads, m.head_dim, m.v_dim, m.window_layer_head_dim) == (4, 8, QK, V, QK)
    assert (m.sliding_window, m.sliding_window_layers, m.num_moe_layers, m.default_precision) == (129, 39, 47,
                                                                                                 "fp8-block")
    assert m.window_own_geometry and not m.single_head_geometry

    def attention(kv_heads):
        return H * (HEADS * QK + kv_heads * (QK + V)) + HEADS * V * H

    moe = 256 * 3 * H * 2048 + H * 256
    total = 9 * attention(4) + 39 * attention(8) + 3 * H * 16384 + 47 * moe + 2 * 152576 * H
    assert m.total_params == total
    assert m.active_params == total - 47 * 248 * 3 * H * 2048
    assert (m.total_params, m.active_params) == (pytest.approx(309e9, rel=0.005), pytest.approx(15e9, rel=0.04))
    remote = load_model(_write(tmp_path, _remote_config()))
    keep = ("name", "model_type")
    assert {k: v for k, v in remote.model_dump().items() if k not in keep} == {
        k: v for k, v in m.model_dump().items() if k not in keep}


def test_kv_bytes_per_token_by_hand():
    """Per GPU in BF16: the full layers' 4 KV heads of 192 + 128; the sliding layers' 8 per full-layer token by
    window_kv_ratio: 2 up to TP 4, 1 at TP 8 (the full layers' heads replicated there)."""
    m, bf16 = load_model(MIMO), load_quant("bf16")
    assert kv_bytes_per_token_layer(m, bf16, 1) == 4 * (QK + V) * 2
    assert kv_bytes_per_token(m, bf16, 1, 1) == 9 * 4 * 320 * 2
    assert kv_bytes_per_token(m, bf16, 8, 1) == 9 * 1 * 320 * 2
    assert (window_kv_ratio(m, 1), window_kv_ratio(m, 4), window_kv_ratio(m, 8)) == (2.0, 2.0, 1.0)
    full, windowed, window, pooled = kv_window_terms(m, attention_tp=1)
    assert (full, window, pooled) == (1.0, 129, False) and windowed == pytest.approx(39 / 9 * 2, rel=1e-15)


def test_prefill_attention_and_projections_by_hand():
    """One 2,048-token prompt at TP 2: attention at 2 x (192 + 128) FLOPs per pair and head, the sliding layers' over
    at most 129 keys a token (the prompt's first 129 tokens 1..129); q (192), k (192), v (128) and o (from 128) at each
    kind's KV heads."""
    m = load_model(MIMO)
    tp, n = 2, 2048
    cm = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8-block"), load_engine("vllm"), tp=tp)
    shape = BatchShape.uniform(1, n, 0, True, None)
    ops = {op.name: op for op in cm.iteration(shape).operators}
    heads = HEADS // tp
    attention = 2 * (QK + V) * heads * (9 * n * (n + 1) / 2 + 39 * (129 * 130 / 2 + (n - 129) * 129))
    assert ops["attention"].flops == pytest.approx(attention, rel=1e-12)
    qkv = 2 * n * H * (9 * (heads * QK + 2 * 320) + 39 * (heads * QK + 4 * 320))
    assert ops["qkv_proj"].flops == pytest.approx(qkv, rel=1e-12)
    assert ops["o_proj"].flops == pytest.approx(2 * n * heads * V * H * 48, rel=1e-12)


@pytest.mark.parametrize("engine, tp, layout", [
    ("vllm", 8, dict(ep=8)), ("sglang", 8, dict(attention_dp=8, ep=8)), ("trtllm-pytorch", 4, {}),
    ("vllm", 16, dict(ep=16)),
])
def test_decode_runs_match_fast_step_by_step(engine, tp, layout):
    cm = CostModel(load_model(MIMO), load_hardware("b200"), load_quant("fp8-block"), load_engine(engine), tp=tp,
                   layout=ParallelLayout(tp=tp, **layout))
    assert_decode_runs_match_fast(cm, HybridDecodeLine, (1, 16, 200), (0, 100, 128, 129, 3000), 40, (0, 20, 39))


def test_sglang_takes_its_hybrid_swa_pool():
    """SGLang's is_hybrid_swa_model names MiMo-V2-Flash: its sliding layers in a pool of their own."""
    m, hw = load_model(MIMO), load_hardware("h200-sxm")
    assert window_kv(resolve_engine("sglang", hw, tp=8), m, hw) == ("window_pool", 0.8)
    assert window_kv(resolve_engine("vllm", hw, tp=8), m, hw)[0] == "layer_groups"  # vLLM's KV cache groups


def test_refusals_name_the_field(tmp_path):
    """Sliding layers of another query-head count or value width, a pattern of the wrong length, an FP8 checkpoint
    stored in another format: one-line errors naming the field; the colocated trainer, which takes one head width,
    refuses the model by name."""
    for field, value in (("swa_num_attention_heads", 32), ("swa_v_head_dim", 192),
                         ("hybrid_layer_pattern", [0, 1] * 10), ("n_shared_experts", 1)):  # vLLM's MiMoV2MoE: none
        with pytest.raises(PhasewiseError, match=f"field {field}") as err:
            load_model(_write(tmp_path, dict(_remote_config(), **{field: value})))
        assert "\n" not in str(err.value)
    with pytest.raises(PhasewiseError, match="num_hidden_layers must be at most"):  # before any per-layer list
        load_model(_write(tmp_path, {"model_type": "mimo_v2_flash", "num_hidden_layers": 10**12}))
    stored = dict(_remote_config(), quantization_config={"quant_method": "fp8", "store_dtype": "mxfp4"})
    with pytest.raises(PhasewiseError, match="store_dtype 'mxfp4' is not modelled"):
        load_model(_write(tmp_path, stored)).default_precision
    cm = CostModel(load_model(MIMO), load_hardware("h200-sxm"), load_quant("fp8-block"), load_engine("vllm"), tp=8)
    with pytest.raises(PhasewiseError, match="not all alike"):
        training_step(cm, seqs=1, tokens_per_seq=128)


def test_serving_runs_end_to_end_under_memory_pressure():
    """simulate with expert parallelism on 8 x H200, the Mooncake excerpt's long prompts at a third of the memory,
    invariants checked at every step; every request completes."""
    from phasewise.sim.api import run

    result = run(model=MIMO, hardware="h200-sxm", tp=8, ep=8, trace="mooncake", trace_limit=40, rate=10,
                 memory_fraction=0.33, check_invariants=True)
    assert result.summary()["completed"] == 40
