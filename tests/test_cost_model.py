"""Hand-computed FLOPs and bytes of each operator, for GQA, MoE, TP splitting and quantization."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.batch import attention_pairs
from phasewise.specs import load_engine, load_hardware, load_quant
from phasewise.specs.model import ModelSpec

# A small GQA model whose numbers are easy to check by hand.
TINY = ModelSpec(name="tiny", model_type="llama", num_layers=2, hidden_size=1024, num_heads=8, num_kv_heads=2,
                 head_dim=128, intermediate_size=4096, vocab_size=1000)
TINY_MOE = TINY.model_copy(update=dict(name="tiny-moe", intermediate_size=0, num_experts=8, experts_per_token=2,
                                       expert_intermediate_size=512, num_moe_layers=2))


def cost(model=TINY, precision="bf16", kv=None, tp=1, pp=1, hw="h100-sxm", engine="ideal"):
    return CostModel(model, load_hardware(hw), load_quant(precision, kv), load_engine(engine), tp, pp)


def ops(it):
    return {o.name: o for o in it.operators}


def test_attention_pairs_hand_counts():
    assert attention_pairs(4, 0) == 1 + 2 + 3 + 4
    assert attention_pairs(1, 9) == 10
    assert attention_pairs(3, 2) == 3 + 4 + 5
    assert attention_pairs(4, 0, window=2) == 1 + 2 + 2 + 2
    assert attention_pairs(2, 10, window=4) == 8
    assert attention_pairs(3, 2, causal=False) == 15


def test_batch_shape_splits_prefill_and_decode():
    s = BatchShape.from_sequences([(100, 0), (1, 50), (20, 30), (4, 10)])
    assert (s.prefill_seqs, s.prefill_tokens) == (2, 120)  # (20, 30) is a chunk: prefill kernel
    assert (s.decode_seqs, s.decode_tokens) == (2, 5)  # (4, 10) is a speculative verify step
    assert s.decode_kv_tokens == 51 + 14
    assert s.logit_tokens == 1 + 1 + 1 + 4
    assert BatchShape.uniform(3, 1, 50) == BatchShape.from_sequences([(1, 50)] * 3)
    with pytest.raises(ValueError):
        BatchShape.from_sequences([(0, 5)])


def test_gqa_projection_flops_and_bytes():
    T = 64
    o = ops(cost().iteration(BatchShape.uniform(1, T, 0)))
    qkv_n = (8 + 2 * 2) * 128  # 8 query heads + K and V of 2 KV heads
    assert o["qkv_proj"].flops == 2 * (2 * T * 1024 * qkv_n)  # 2 layers
    assert o["qkv_proj"].bytes == 2 * (1024 * qkv_n * 2 + T * (1024 + qkv_n) * 2)
    assert o["o_proj"].flops == 2 * (2 * T * 1024 * 1024)
    assert o["mlp_gate_up"].flops == 2 * (2 * T * 1024 * 2 * 4096)
    assert o["mlp_down"].bytes == 2 * (4096 * 1024 * 2 + T * (4096 + 1024) * 2)
    assert o["lm_head"].flops == 2 * 1 * 1024 * 1000  # only the last prompt token needs logits


def test_attention_flops_and_kv_bytes():
    o = ops(cost().iteration(BatchShape.uniform(3, 1, 99)))  # decode, 100 keys each
    assert o["attention"].flops == 2 * (4 * 128 * 8 * 3 * 100)
    kv_per_token_layer = 2 * 2 * 128 * 2  # K and V, 2 KV heads, bf16
    expected = (3 * 100 + 3) * kv_per_token_layer + 2 * 3 * 8 * 128 * 2
    assert o["attention"].bytes == 2 * expected
    o8 = ops(cost(kv="fp8").iteration(BatchShape.uniform(3, 1, 99)))
    assert o8["attention"].bytes < o["attention"].bytes


def test_tensor_parallel_splits_weights_and_adds_all_reduce():
    T = 32
    one = ops(cost().iteration(BatchShape.uniform(1, T, 0)))
    two = ops(cost(tp=2).iteration(BatchShape.uniform(1, T, 0)))
    assert two["qkv_proj"].flops == one["qkv_proj"].flops / 2
    assert two["mlp_down"].flops == one["mlp_down"].flops / 2
    assert "tp_allreduce" not in one
    assert two["tp_allreduce"].count == 4  # after attention and after the MLP, 2 layers
    assert two["tp_allreduce"].bytes == 4 * T * 1024 * 2


def test_tp_must_divide_heads():
    with pytest.raises(PhasewiseError, match="does not divide num_attention_heads=8.*allowed: 1, 2, 4, 8"):
        cost(tp=3)
    with pytest.raises(PhasewiseError, match="exceeds the 2 layers"):
        cost(pp=3)


def test_moe_experts_cost():
    T = 1
    o = ops(cost(TINY_MOE).iteration(BatchShape.uniform(1, T, 0)))
    assert "mlp_gate_up" not in o
    # top-2 of 8: two experts' gate/up/down matrices are read and multiplied for one token
    assert o["moe_experts"].flops == 2 * (2 * 2 * 1024 * 3 * 512)
    weights = 2 * 3 * 1024 * 512 * 2
    assert o["moe_experts"].bytes == pytest.approx(2 * (weights + 2 * (1024 + 1024) * 2 + 2 * (512 + 1024) * 2
                                                        + (2 + 1) * 1024 * 2))
    # many tokens touch all experts: weight bytes saturate at all 8 experts
    big = ops(cost(TINY_MOE).iteration(BatchShape.uniform(1, 4096, 0)))
    assert big["moe_experts"].bytes > 4 * weights * 2 * 0.99


@pytest.mark.parametrize(
    "precision, w_bytes, peak_key",
    [("bf16", 2, "bf16"), ("fp8", 1, "fp8"), ("int8", 1, "int8"), ("w4a16", 0.5 + 2.5 / 128, "bf16"),
     ("w4a8", 0.5 + 1.5 / 128, "int8"), ("w4a8-fp8", 0.5 + 1 / 128, "fp8")],
)
def test_quantization_changes_bytes_and_tensor_path(precision, w_bytes, peak_key):
    cm = cost(precision=precision)
    assert cm.peak == load_hardware("h100-sxm").peak_flops[peak_key]
    o = ops(cm.iteration(BatchShape.uniform(1, 1, 10)))
    T = 1
    assert o["o_proj"].bytes == pytest.approx(2 * (1024 * 1024 * w_bytes + T * 2048 * 2))


def test_w4a16_dequant_costs_compute_at_large_batch():
    """Weight-only INT4 is faster than BF16 at decode but pays dequantization in large prefills."""
    bf, w4 = cost(precision="bf16"), cost(precision="w4a16")
    small = BatchShape.uniform(1, 1, 100)
    assert ops(w4.iteration(small))["mlp_gate_up"].time_s < ops(bf.iteration(small))["mlp_gate_up"].time_s
    big = BatchShape.uniform(1, 8192, 0)
    assert ops(w4.iteration(big))["mlp_gate_up"].compute_s > ops(bf.iteration(big))["mlp_gate_up"].compute_s


def test_fp8_requires_the_hardware_path():
    with pytest.raises(PhasewiseError, match="no fp8 compute path"):
        cost(precision="fp8", hw="a100-sxm-80gb")


def test_pipeline_parallel_latency_and_stage():
    T = 512
    one = cost().iteration(BatchShape.uniform(1, T, 0))
    two = cost(pp=2).iteration(BatchShape.uniform(1, T, 0))
    assert two.stage_s < one.latency_s < two.latency_s  # a stage is half the work; latency adds the hop
    assert ops(two)["pp_send_recv"].bytes == T * 1024 * 2


def test_operator_time_is_max_of_roofs_plus_launch():
    for op in cost(engine="vllm").iteration(BatchShape.uniform(4, 1, 100)).operators:
        assert op.time_s == pytest.approx(max(op.compute_s, op.memory_s, op.dispatch_s) + op.launch_s)


def test_engine_overhead_is_dispatch():
    ideal = cost(engine="ideal").iteration(BatchShape.uniform(1, 1, 10))
    old = cost(engine="vllm-2023").iteration(BatchShape.uniform(1, 1, 10))
    assert ideal.host_s == 0
    assert old.host_s > 0.01 and old.bound == "dispatch"


def test_decode_series_matches_iteration_by_iteration():
    import numpy as np

    for hw, engine, tp, pp in (("h100-sxm", "vllm", 1, 1), ("a100-sxm-80gb", "vllm-2023", 2, 2)):
        cm = cost(TINY, hw=hw, engine=engine, tp=tp, pp=pp)
        seqs = [(1, c) for c in (10, 200, 3000)]
        shape = BatchShape.from_sequences(seqs)
        n = 50
        j = np.arange(n)
        lat, base = cm.decode_series(shape, shape.decode_pairs + 3 * j, shape.decode_kv_tokens + 3 * j)
        for step in (0, 7, 49):
            expected = cm.iteration(BatchShape.from_sequences([(1, c + step) for _, c in seqs])).latency_s
            assert lat[step] == pytest.approx(expected, rel=1e-12)
        first = cm.fast(shape)
        assert base == pytest.approx((first[0], first[2], first[3]), rel=1e-12)
        linear, base2 = cm.decode_series_linear(shape, j, 3, 3)
        assert linear == pytest.approx(lat, rel=1e-12) and base2 == base
