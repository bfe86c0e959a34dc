"""The unfused engine's elementwise traffic (hf-eager: transformers' eager modules), by class: hand-counted bytes in
the cost model, and the profile's factors against a count of transformers' own layer (when torch is installed)."""

import importlib.util
from pathlib import Path

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "count_eager_elementwise.py"


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


def test_bad_unfused_factors_are_one_line_errors(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text("engines:\n  mine:\n    iteration_overhead_s: 1.0e-3\n    per_sequence_overhead_s: 0.0\n"
                    "    eager_launch_s: 2.0e-5\n    unfused_elementwise: {norm: 0.5, rope: 5, activation: 2, "
                    "residual: 1}\n")
    with pytest.raises(PhasewiseError) as err:
        load_engine(str(path))
    message = str(err.value)
    assert "\n" not in message and "unfused_elementwise.norm" in message and "unfused_elementwise.residual" in message


def test_profile_factors_match_a_count_of_transformers_layer():
    """The count itself (benchmarks/count_eager_elementwise.py, meta device: instant): each class within 4 % of the
    profile's factor on two shapes, 38 dispatched ops a layer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("count_eager_elementwise", SCRIPT)
    counter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counter)
    unfused = load_engine("hf-eager").unfused_elementwise
    for shape in (counter.SHAPES["Llama-3-8B"], counter.SHAPES["small"]):
        counted = counter.count(256, shape)
        for name in ("norm", "rope", "activation"):
            assert counted[name] == pytest.approx(getattr(unfused, name), rel=0.04), (shape, name, counted)
        assert counted["ops"] == 38
