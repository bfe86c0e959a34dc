"""The unfused engine's elementwise traffic (hf-eager: transformers' eager modules), by class: hand-counted bytes in
the cost model, and the profile's factors against a count of transformers' own layer (when torch is installed)."""


import pytest
from conftest import load_benchmark

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant


def elementwise_bytes(engine) -> float:
    cm = CostModel(load_model("meta-llama/Llama-3.1-8B"), load_hardware("h100-sxm"), load_quant("bf16"), engine)
    shape = BatchShape()
    shape.add(1024, 0)
    ops = {op.name: op for op in cm.iteration(shape).operators}
    return ops["elementwise"].bytes


def test_unfused_engine_moves_each_class_by_its_own_factor():
    """Llama-3.1-8B, 1,024 prompt tokens, bf16, 32 layers: per token and layer the fused count is 10 x 4096 (two add +
    norms) + 2 x (32 + 8) x 128 (RoPE on q and k) + 3 x 14336 (activation) elements; hf-eager multiplies each class by
    its counted factor (4.2, 5.05, 1.667)."""
    engine = load_engine("hf-eager")
    unfused = engine.unfused_elementwise
    assert (unfused.norm, unfused.rope, unfused.activation) == (4.2, 5.05, 1.667) and engine.elementwise_passes == 1
    tokens, layers, element = 1024, 32, 2
    fused = tokens * layers * element * (10 * 4096 + 2 * 40 * 128 + 3 * 14336)
    eager = tokens * layers * element * (10 * 4096 * 4.2 + 2 * 40 * 128 * 5.05 + 3 * 14336 * 1.667)
    assert elementwise_bytes(engine.model_copy(update={"unfused_elementwise": None})) == pytest.approx(fused)
    assert elementwise_bytes(engine) == pytest.approx(eager)
    assert eager / fused == pytest.approx(3.14, abs=0.01)  # the single number this replaces was 3.0


@pytest.mark.parametrize("field, value, named", [
    ("unfused_elementwise", "{norm: 0.5, rope: 5, activation: 2, residual: 1}", ("norm", "residual")),
    ("unfused_kernels", "{norm: 0, plain_norm: 8, rope: 10, activation: 2, qkv_proj: 3, mlp_gate_up: 2, "
                        "attention: 1.5, sampling: 4}", ("norm", "sampling")),
])
def test_bad_unfused_fields_are_one_line_errors(tmp_path, field, value, named):
    path = tmp_path / "engine.yaml"
    path.write_text("engines:\n  mine:\n    iteration_overhead_s: 1.0e-3\n    per_sequence_overhead_s: 0.0\n"
                    f"    eager_launch_s: 2.0e-5\n    {field}: {value}\n")
    with pytest.raises(PhasewiseError) as err:
        load_engine(str(path))
    message = str(err.value)
    assert "\n" not in message and all(f"{field}.{key}" in message for key in named), message


def test_profile_factors_match_a_count_of_transformers_layer():
    """The count itself (benchmarks/count_eager_elementwise.py, meta device: instant): each class within 4 % of the
    profile's factor on two shapes, 38 dispatched ops a layer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    counter = load_benchmark("count_eager_elementwise")
    unfused = load_engine("hf-eager").unfused_elementwise
    for shape in (counter.SHAPES["Llama-3-8B"], counter.SHAPES["small"]):
        counted = counter.count(256, shape)
        for name in ("norm", "rope", "activation"):
            assert counted[name] == pytest.approx(getattr(unfused, name), rel=0.04), (shape, name, counted)
        assert counted["ops"] == 38


def dispatched_per_layer(engine, model) -> float:
    """The ops an iteration's layers dispatch, per layer (eager: a 32-token prompt, no graph)."""
    cm = CostModel(model, load_hardware("h100-sxm"), load_quant("bf16"), engine)
    shape = BatchShape()
    shape.add(32, 0)
    per_layer = [op for op in cm.iteration(shape).operators if op.host_overlapped]
    return sum(op.dispatch_s for op in per_layer) / cm.layers_per_stage / cm.eager_launch_s


def test_unfused_engine_dispatches_each_op_as_a_kernel():
    """hf-eager, hand-counted from transformers' Llama layer (a decode step over a DynamicCache): two residual add +
    RMSNorms of 9 ops, RoPE 10, SiLU and product 2, q / k / v / o / gate / up / down 7 GEMMs, two cache cats and SDPA
    3 = 40 a layer, against the fused count's 10 (4 elementwise, qkv, attention 2, o, gate_up, down). Qwen3 adds its
    q and k norms, 8 ops each: 56 (the fused count's one q / k norm kernel: 11)."""
    from phasewise.specs.hf_config import from_hf_config

    engine = load_engine("hf-eager")
    fused = engine.model_copy(update={"unfused_kernels": None})
    llama = load_model("meta-llama/Llama-3.1-8B")
    assert dispatched_per_layer(fused, llama) == pytest.approx(10)
    assert dispatched_per_layer(engine, llama) == pytest.approx(40)
    qwen3 = from_hf_config("qwen3-8b", dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288,
                                            num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=8,
                                            head_dim=128, vocab_size=256))
    assert dispatched_per_layer(fused, qwen3) == pytest.approx(11)
    assert dispatched_per_layer(engine, qwen3) == pytest.approx(56)
    # an engine without the field (vLLM's fused kernels, a calibrated profile) keeps the fused count
    assert load_engine("vllm-2023").unfused_kernels is None


def test_profile_kernels_match_a_count_of_transformers_layer():
    """hf-eager's unfused_kernels are the count's (benchmarks/count_eager_elementwise.py kernels(), meta device)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    counter = load_benchmark("count_eager_elementwise")
    profile = load_engine("hf-eager").unfused_kernels.model_dump()
    for shape in (counter.SHAPES["Llama-3-8B"], counter.SHAPES["small"]):
        counted = counter.kernels(64, shape)
        assert counted.pop("layer") == 40
        assert counted == profile
