"""Hand-computed FLOPs and bytes of each operator, for GQA, MoE, TP splitting and quantization."""

import json
from pathlib import Path

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.batch import attention_pairs
from phasewise.specs import EngineProfile, HardwareSpec, QuantScheme, load_engine, load_hardware, load_model, load_quant
from phasewise.specs.model import ModelSpec

# A small GQA model whose numbers are easy to check by hand.
TINY = ModelSpec(name="tiny", model_type="llama", num_layers=2, hidden_size=1024, num_heads=8, num_kv_heads=2,
                 head_dim=128, intermediate_size=4096, vocab_size=1000)
TINY_MOE = TINY.model_copy(update=dict(name="tiny-moe", intermediate_size=0, num_experts=8, experts_per_token=2,
                                       expert_intermediate_size=512, num_moe_layers=2))
# 3 layers, the first dense, two MoE with a shared expert: stages of unequal layers under pp=2
TINY_MIX = TINY.model_copy(update=dict(name="tiny-mix", num_layers=3, num_experts=8, experts_per_token=2,
                                       expert_intermediate_size=512, shared_expert_intermediate_size=256,
                                       num_moe_layers=2))


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


def test_cross_node_all_reduce_runs_over_every_nic_of_the_node():
    """NCCL's rings leave a node through every GPU's NIC at once: across nodes the ring's bytes move at the node's
    NICs together (capped by NVLink), not at one GPU's NIC; its latency steps are unchanged."""
    from phasewise.perf.collectives import ring_bandwidth

    hw = load_hardware("h100-sxm")
    ic = hw.interconnect
    assert ring_bandwidth(ic, 8) == ic.intra_node_bandwidth_bytes_per_s == 450e9
    assert ring_bandwidth(ic, 16) == 8 * ic.inter_node_bandwidth_bytes_per_s == 400e9  # 8 x 400 Gb/s NDR
    assert ring_bandwidth(ic, 12) == 4 * ic.inter_node_bandwidth_bytes_per_s  # packed: 8 + 4, the 4 bind
    a100 = load_hardware("a100-sxm-80gb").interconnect
    assert ring_bandwidth(a100, 16) == min(a100.intra_node_bandwidth_bytes_per_s,
                                           8 * a100.inter_node_bandwidth_bytes_per_s)
    wide = TINY.model_copy(update=dict(name="wide", num_heads=32, num_kv_heads=16))
    T, engine = 4096, load_engine("ideal")
    op = ops(cost(wide, tp=16).iteration(BatchShape.uniform(1, T, 0)))["tp_allreduce"]
    rate = 400e9 * hw.efficiency.link_efficiency * engine.collective_efficiency
    per_call = 2 * 15 * ic.inter_node_latency_s + 2 * 15 / 16 * T * 1024 * 2 / rate
    assert op.count == 4 and op.memory_s == pytest.approx(4 * per_call, rel=1e-12)


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


def test_eager_launches_overlap_the_stage_device_time():
    """Eager, the host launches a stage's kernels asynchronously, ahead of the device: the layers take the larger of
    their device time and the host's dispatch of all their kernels, not the sum of per-operator maxima."""
    cm = cost(load_model("meta-llama/Llama-3.1-8B"), engine="vllm-2023")
    engine = load_engine("vllm-2023")
    # per layer: 4 elementwise + qkv + 2 attention + o_proj + gate_up + down = 10 kernels; 32 layers, TP 1
    host_s = 32 * 10 * engine.eager_launch_s
    for shape in (BatchShape.uniform(1, 1, 10), BatchShape.uniform(8, 4096, 0)):
        assert cm.eager(shape)
        it = cm.iteration(shape)
        layer_ops = [op for op in it.operators if op.host_overlapped]
        assert {op.name for op in layer_ops} == {"elementwise", "qkv_proj", "attention", "o_proj", "mlp_gate_up",
                                                 "mlp_down"}
        device_s = sum(max(op.compute_s, op.memory_s) + op.launch_s for op in layer_ops)
        assert sum(op.dispatch_s for op in layer_ops) == pytest.approx(host_s, rel=1e-12)
        by_name = ops(it)
        assert by_name["eager_dispatch"].time_s == pytest.approx(max(0.0, host_s - device_s), rel=1e-12)
        once_s = by_name["embedding"].time_s + by_name["lm_head"].time_s
        assert it.latency_s == pytest.approx(max(device_s, host_s) + once_s + it.host_s, rel=1e-12)
        assert cm.fast(shape)[0] == pytest.approx(it.latency_s, rel=1e-12)
        per_operator_s = sum(max(op.compute_s, op.memory_s, op.dispatch_s) + op.launch_s for op in layer_ops)
        assert max(device_s, host_s) <= per_operator_s * (1 + 1e-12)
        if host_s > device_s:  # the old per-operator rule charged the host's and the device's time both
            assert max(device_s, host_s) < per_operator_s
    decode, prefill = (cm.iteration(BatchShape.uniform(1, 1, 10)), cm.iteration(BatchShape.uniform(8, 4096, 0)))
    assert decode.bound == "dispatch" and ops(decode)["eager_dispatch"].time_s > 0  # batch 1: host-bound
    assert ops(prefill)["eager_dispatch"].time_s == 0  # 32k tokens: the device is the slower of the two


def test_host_costs_divide_by_the_platform_host_speed():
    hw = load_hardware("a100-sxm-80gb")
    assert hw.efficiency.host_speed < 1  # fitted: Zen 2 hosts of the A100 platform (efficiency.yaml)
    reference = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update={"host_speed": 1.0})})
    model, quant, engine = load_model("meta-llama/Llama-3.1-8B"), load_quant("bf16"), load_engine("vllm-2023")
    shape = BatchShape.uniform(1, 1, 10)  # host-bound eager decode
    slow, fast = (CostModel(model, h, quant, engine).iteration(shape) for h in (hw, reference))
    assert slow.host_s == pytest.approx(fast.host_s / hw.efficiency.host_speed, rel=1e-12)
    assert ops(slow)["elementwise"].dispatch_s == pytest.approx(
        ops(fast)["elementwise"].dispatch_s / hw.efficiency.host_speed, rel=1e-12)
    assert slow.latency_s > fast.latency_s


def test_engine_overhead_is_dispatch():
    ideal = cost(engine="ideal").iteration(BatchShape.uniform(1, 1, 10))
    old = cost(engine="vllm-2023").iteration(BatchShape.uniform(1, 1, 10))
    assert ideal.host_s == 0
    assert old.host_s > 0 and old.bound == "dispatch"  # eager launches and host work outweigh a batch-1 step


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


def test_attention_kernel_takes_arrays_and_is_linear_in_pairs_and_kv():
    """One formula: the decode kernel over arrays equals it per element, and decode_linear reproduces it."""
    attention = cost(engine="vllm").attention
    pairs, kv = np.array([100.0, 3000.0, 7e5]), np.array([100.0, 2900.0, 6e5])
    arrays = attention.kernel(4, 8, pairs, kv, True)
    per_pair, per_kv_token, fixed = attention.decode_linear(4, 8)
    for i in range(3):
        scalars = attention.kernel(4, 8, pairs[i], kv[i], True)
        line = [p * pairs[i] + k * kv[i] + f for p, k, f in zip(per_pair, per_kv_token, fixed)]
        assert [a[i] for a in arrays] == pytest.approx(scalars, rel=1e-15)
        assert line == pytest.approx(scalars, rel=1e-12)


def test_iteration_parts_reproduce_latency_and_stage_time():
    for model, hardware, quant, engine, tp, pp, _ in reference_cases():  # the fixture's grid of specs
        cm = CostModel(model, hardware, quant, engine, tp, pp)
        for name, shape in ref_shapes(model).items():
            it, parts = cm.iteration(shape), cm.iteration_parts(shape)
            where = (model.name, cm.tp, cm.pp, name)
            assert len(parts.stages) == cm.pp, where
            assert sum(stage.layers for stage in parts.stages) == model.num_layers, where
            assert max(stage.layers for stage in parts.stages) == cm.layers_per_stage, where
            assert parts.host_s == it.host_s
            assert parts.latency_s == pytest.approx(it.latency_s, rel=1e-12), where
            assert parts.stage_s == pytest.approx(it.stage_s, rel=1e-12), where
            times = {op.name: op.time_s for op in it.operators}
            share = model.num_layers / cm.layers_per_stage
            assert parts.attention_s == pytest.approx(times["attention"] * share, rel=1e-12), where
            assert parts.elementwise_s == pytest.approx(times["elementwise"] * share + times["embedding"], rel=1e-12)
            assert parts.communication_s == pytest.approx(times.get("tp_allreduce", 0.0) * share
                                                          + times.get("pp_send_recv", 0.0), rel=1e-12), where


def test_pipeline_stages_by_hand():
    """3 layers on 2 stages: the end with the heavier of LM head and embedding runs 2 layers and one hop."""
    cm = cost(TINY_MIX, pp=2)
    decode = BatchShape.uniform(4, 1, 100)  # LM head (logits of 4 tokens) outweighs the embedding of 4 tokens
    it, parts = cm.iteration(decode), cm.iteration_parts(decode)
    o = ops(it)
    assert o["lm_head"].time_s > o["embedding"].time_s
    first, last = parts.stages
    assert (first.layers, last.layers) == (1, 2)
    assert first.communication_s == 0 and last.communication_s == pytest.approx(o["pp_send_recv"].time_s)
    assert last.dense_s == pytest.approx(2 * first.dense_s + o["lm_head"].time_s)
    assert first.attention_s == pytest.approx(o["attention"].time_s / 2)
    assert last.attention_s == pytest.approx(o["attention"].time_s)
    chunk = BatchShape()
    chunk.add(8192, 0, logits=0)  # a prompt chunk that samples nothing: the embedding end is heavier
    it, parts = cm.iteration(chunk), cm.iteration_parts(chunk)
    assert ops(it)["embedding"].time_s > ops(it)["lm_head"].time_s
    first, last = parts.stages
    assert (first.layers, last.layers) == (2, 1)
    assert first.communication_s == pytest.approx(ops(it)["pp_send_recv"].time_s) and last.communication_s == 0
    assert parts.stage_s == pytest.approx(it.stage_s, rel=1e-12) == first.time_s + it.host_s


def test_decode_stage_series_matches_fast_iteration_by_iteration():
    configs = [(TINY, "h100-sxm", "vllm", 1, 1), (TINY, "a100-sxm-80gb", "vllm-2023", 2, 2),
               (TINY_MIX, "h100-sxm", "hf-eager", 1, 3), (TINY_MIX, "l40s", "trtllm-0.5", 1, 2)]
    contexts = (10, 200, 3000)
    for model, hw, engine, tp, pp in configs:
        cm = cost(model, hw=hw, engine=engine, tp=tp, pp=pp)
        for batch in (contexts, contexts * 200):  # graph-captured and eager (vllm captures up to 512)
            shape = BatchShape.from_sequences([(1, c) for c in batch])
            steps = np.arange(40.0)
            latencies, _ = cm.decode_series_linear(shape, steps, len(batch), len(batch))
            series, _ = cm.decode_series(shape, shape.decode_pairs + len(batch) * steps,
                                         shape.decode_kv_tokens + len(batch) * steps)
            stages = cm.decode_stage_series(shape, latencies)
            assert stages is not latencies and stages.shape == latencies.shape
            assert cm.decode_stage_series(shape, series) == pytest.approx(stages, rel=1e-12)
            if pp == 1:
                assert np.array_equal(stages, latencies)
            for step in (0, 1, 17, 39):
                latency_s, stage_s, _, _ = cm.fast(BatchShape.from_sequences([(1, c + step) for c in batch]))
                assert latencies[step] == pytest.approx(latency_s, rel=1e-12)
                assert stages[step] == pytest.approx(stage_s, rel=1e-12)
                assert pp == 1 or stage_s < latency_s


# --- reference values: the public results, recorded before the cost formulas were merged -------------
# tests/data/cost_model_reference.json holds iteration(), fast(), decode_series() and decode_series_linear()
# on a seeded sample of models x hardware x precisions x engines x (tp, pp), with the specs they were
# computed from (so catalog edits do not move them), recorded by `python tests/test_cost_model.py --record`
# with the cost model of commit 1656420, before attention, fast path and decode series shared one formula, and
# re-recorded when eager host launches came to overlap a stage's device time (max of the two sums, not per
# operator) and host costs to divide by the platform's host_speed.
# Refactors must reproduce them to 1e-12; a deliberate change of the model re-records them.
REFERENCE = Path(__file__).parent / "data" / "cost_model_reference.json"
REF_MODELS = {"tiny": TINY, "tiny-moe": TINY_MOE, "tiny-mix": TINY_MIX}
REF_HARDWARE = ("h100-sxm", "a100-sxm-80gb", "l40s", "b200", "gb200", "cpu-local", "h100-curve")
REF_PRECISIONS = (("bf16", None), ("fp8", "fp8"), ("w4a16", None), ("fp32", None), ("int8", "fp8"),
                  ("w4a8", None), ("nvfp4", "fp8"), ("fp16", None))
REF_ENGINES = ("vllm", "vllm-2023", "hf-eager", "trtllm-0.5", "trtllm-pytorch", "ideal")
REF_PARALLEL = ((1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2), (1, 3), (4, 4), (2, 3), (1, 5))
REF_NAMES = ("tiny", "tiny-moe", "tiny-mix", "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B",
             "meta-llama/Llama-3.1-70B", "mistralai/Mistral-7B-v0.1", "facebook/opt-13b",
             "GSAI-ML/LLaDA-8B-Instruct", "meta-llama/Llama-3.1-405B", "mistralai/Mixtral-8x7B-v0.1")
# every config in the first rows, then a seeded sample of the rest of the product
REF_PINNED = (
    ("tiny", "h100-sxm", "bf16", None, "vllm", 1, 1), ("tiny", "a100-sxm-80gb", "bf16", None, "vllm-2023", 2, 2),
    ("tiny-mix", "h100-sxm", "w4a16", None, "hf-eager", 1, 3), ("tiny-moe", "b200", "nvfp4", "fp8", "ideal", 2, 2),
    ("meta-llama/Llama-3.1-8B", "h100-sxm", "bf16", None, "vllm", 1, 1),
    ("meta-llama/Llama-3.1-8B", "h100-sxm", "bf16", None, "vllm", 1, 3),
    ("meta-llama/Llama-3.1-70B", "h100-sxm", "fp8", "fp8", "trtllm-pytorch", 4, 2),
    ("meta-llama/Llama-3.1-405B", "gb200", "fp8", "fp8", "vllm", 8, 4),
    ("mistralai/Mistral-7B-v0.1", "l40s", "bf16", None, "vllm-2023", 2, 3),
    ("GSAI-ML/LLaDA-8B-Instruct", "h100-sxm", "bf16", None, "hf-eager", 1, 1),
    ("Qwen/Qwen3-30B-A3B", "h100-curve", "bf16", None, "vllm", 2, 2),
)


def ref_model(name):
    return REF_MODELS[name] if name in REF_MODELS else load_model(name)


def ref_hardware(name):
    if name != "h100-curve":
        return load_hardware(name)
    hw = load_hardware("h100-sxm")  # a measured GEMM efficiency curve instead of the saturating fit
    curve = ((1.0, 0.05), (16.0, 0.3), (256.0, 0.7), (4096.0, 0.85))
    return hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update={"gemm_efficiency_curve": curve})})


def ref_specs(config):
    model, hw, precision, kv, engine, _, _ = config
    return ref_model(model), ref_hardware(hw), load_quant(precision, kv), load_engine(engine)


def ref_cost_model(config):
    return CostModel(*ref_specs(config), *config[5:])


def ref_configs(sample=50):
    import itertools
    import random

    rest = [(m, hw, p, kv, e, tp, pp) for m, hw, (p, kv), e, (tp, pp) in
            itertools.product(REF_NAMES, REF_HARDWARE, REF_PRECISIONS, REF_ENGINES, REF_PARALLEL)]
    configs = list(REF_PINNED)
    for config in random.Random(20240601).sample(rest, len(rest)):
        if len(configs) >= len(REF_PINNED) + sample:
            break
        try:
            ref_cost_model(config)
        except PhasewiseError:
            continue  # a precision the hardware lacks, a TP that does not divide the heads, ...
        configs.append(config)
    return configs


def ref_shapes(model):
    """Named batches covering both attention kernels, eager and graph decode, verify steps, no-logit chunks."""
    causal, window = model.causal, model.sliding_window
    seqs = {
        "prefill": [(1000, 0)], "prefills": [(7, 0), (300, 0)], "first-token": [(1, 1)],
        "decode": [(1, c) for c in (10, 200, 3000, 5000)], "mixed": [(512, 1024)] + [(1, 1000 + i) for i in range(15)],
        "verify": [(4, 100), (4, 2000)],
    }
    shapes = {name: BatchShape.from_sequences(s, causal, window) for name, s in seqs.items()}
    shapes["decode-600"] = BatchShape.uniform(600, 1, 100, causal, window)  # past the CUDA-graph batch of vllm
    chunk = BatchShape.from_sequences([(1, 700)], causal, window)
    chunk.add(256, 512, causal, window, logits=0)  # a prompt chunk that samples no token
    shapes["chunk"] = chunk
    return shapes


def ref_decode_series(model, name):
    """(shape, pairs, kv, kv_per_step, pairs_per_step) of a 6-step decode run growing by 1 token per sequence."""
    causal, window = model.causal, model.sliding_window
    contexts = {"decode": (10, 200, 3000, 5000), "decode-600": (100,) * 600}[name]
    shape = BatchShape.from_sequences([(1, c) for c in contexts], causal, window)
    steps = [BatchShape.from_sequences([(1, c + j) for c in contexts], causal, window) for j in range(6)]
    pairs = np.array([s.decode_pairs for s in steps], dtype=float)
    kv = np.array([s.decode_kv_tokens for s in steps], dtype=float)
    return shape, pairs, kv, float(len(contexts)), float(len(contexts))


def ref_values(model, hardware, quant, engine, tp, pp):
    """What the simulator and the reports read from one cost model, as plain floats."""
    cm = CostModel(model, hardware, quant, engine, tp, pp)
    out = {}
    for name, shape in ref_shapes(model).items():
        it = cm.iteration(shape)
        att = next(op for op in it.operators if op.name == "attention")
        out[name] = {"iteration": [it.latency_s, it.stage_s, it.host_s, it.flops, it.bytes],
                     "attention": [att.flops, att.bytes, att.compute_s, att.memory_s, att.time_s],
                     "fast": list(cm.fast(shape))}
    for name in ("decode", "decode-600"):
        shape, pairs, kv, kv_step, pairs_step = ref_decode_series(model, name)
        lat, first = cm.decode_series(shape, pairs, kv)
        out[name]["decode_series"] = [*lat.tolist(), *first]
        if model.sliding_window is None:
            lat, first = cm.decode_series_linear(shape, np.arange(6.0), kv_step, pairs_step)
            out[name]["decode_series_linear"] = [*lat.tolist(), *first]
    return out


SPEC_TYPES = {"model": ModelSpec, "hardware": HardwareSpec, "quant": QuantScheme, "engine": EngineProfile}
NOT_COST = {"sources", "description", "source"}  # documentation fields of the specs


def record_reference() -> None:
    """The specs are stored with the values, so later catalog edits do not move the reference."""
    configs = ref_configs()
    specs: dict[str, dict] = {kind: {} for kind in SPEC_TYPES}
    cases = []
    for config in configs:
        names = {"model": config[0], "hardware": config[1], "quant": f"{config[2]}/{config[3]}", "engine": config[4]}
        for kind, spec in zip(SPEC_TYPES, ref_specs(config)):
            specs[kind][names[kind]] = spec.model_dump(mode="json", exclude_defaults=True, exclude=NOT_COST)
        cases.append({**names, "tp": config[5], "pp": config[6],
                      "values": ref_values(*ref_specs(config), config[5], config[6])})
    data = {"specs": specs, "cases": cases}
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} configs to {REFERENCE}")


def reference_cases():
    """(model, hardware, quant, engine, tp, pp, recorded values) of each case of the reference fixture."""
    data = json.loads(REFERENCE.read_text())
    specs = {kind: {name: cls(**d) for name, d in data["specs"][kind].items()} for kind, cls in SPEC_TYPES.items()}
    return [(*(specs[kind][case[kind]] for kind in SPEC_TYPES), case["tp"], case["pp"], case["values"])
            for case in data["cases"]]


def test_public_results_match_the_recorded_reference():
    cases = reference_cases()
    assert len(cases) >= 60
    for *config, expected in cases:
        got = ref_values(*config)
        assert got.keys() == expected.keys()
        for shape, values in expected.items():
            assert got[shape].keys() == values.keys()
            for key, numbers in values.items():
                where = (config[0].name, config[1].key, config[2].name, config[3].name, *config[4:], shape, key)
                assert got[shape][key] == pytest.approx(numbers, rel=1e-12, abs=0), where


if __name__ == "__main__":
    import sys

    if "--record" in sys.argv:
        record_reference()


def test_decode_kv_read_again_by_a_groups_query_heads():
    """TensorRT-LLM's pre-XQA masked MHA: a thread block per query head, so a GQA group's K / V head is read again by
    the group's other query heads (decode_kv_per_query_head of those re-reads reach HBM). TINY: 4 query heads a K / V
    head, so K / V bytes x (1 + share x 3); prefill and the query bytes are untouched."""
    shape = BatchShape.uniform(3, 1, 99)
    base = load_engine("ideal")
    shared, reread = (cost(engine="ideal").iteration(shape),
                      CostModel(TINY, load_hardware("h100-sxm"), load_quant("bf16"),
                                base.model_copy(update={"decode_kv_per_query_head": 0.5})).iteration(shape))
    # the keys: 100 per sequence and its new one's write; 2 K / V heads of 128, K and V, bf16; 2 layers
    kv = (3 * 100 + 3) * 2 * 2 * 128 * 2
    assert ops(reread)["attention"].bytes - ops(shared)["attention"].bytes == pytest.approx(2 * kv * 0.5 * 3)
    prefill = BatchShape.uniform(1, 64, 0)
    assert ops(CostModel(TINY, load_hardware("h100-sxm"), load_quant("bf16"), base.model_copy(
        update={"decode_kv_per_query_head": 1.0})).iteration(prefill))["attention"].bytes == ops(
        cost(engine="ideal").iteration(prefill))["attention"].bytes
