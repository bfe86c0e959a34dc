"""Per-kernel dispatch on a CPU whose layers stream beyond its cache (Efficiency.kernel_launch_at, measured by
calibrate's cold-dispatch probe): the ramp by hand, the pair's validation, the cost model's use of it, and the
sysfs reading of the core's private cache. No timing."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.measure.calibrate import private_cache_bytes
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hardware import build_hardware

WARM_S, COLD_S, CACHE_BYTES = 20e-6, 60e-6, 2 * 2**20


def cpu_entry(**efficiency) -> dict:
    return {"name": "test cpu", "kind": "cpu", "peak_flops": {"fp32": 1.6e11}, "memory_bandwidth_bytes_per_s": 1.5e10,
            "memory_capacity_bytes": 6.4e10, "vector_flops": 1.6e11, "tdp_w": 0.0, "price_per_hour_usd": 0.0,
            "interconnect": {"intra_node_bandwidth_bytes_per_s": 1.5e10, "intra_node_latency_s": 1e-6,
                             "inter_node_bandwidth_bytes_per_s": 1.25e9, "inter_node_latency_s": 5e-5,
                             "gpus_per_node": 1},
            "efficiency": {"kernel_launch_s": WARM_S, **efficiency}}


def cold_cpu():
    return build_hardware("test-cpu", cpu_entry(kernel_launch_cold_s=COLD_S, host_cache_bytes=CACHE_BYTES), "test")


@pytest.mark.parametrize("layer_mib, expected_s", [
    (0.0, WARM_S), (1.0, WARM_S + 0.25 * (COLD_S - WARM_S)), (2.0, WARM_S + 0.5 * (COLD_S - WARM_S)),
    (4.0, COLD_S), (100.0, COLD_S)])
def test_the_launch_cost_ramps_from_warm_to_cold_as_a_layer_outgrows_the_cache(layer_mib, expected_s):
    assert cold_cpu().efficiency.kernel_launch_at(layer_mib * 2**20) == pytest.approx(expected_s)


def test_without_a_cold_cost_every_layer_pays_the_warm_one():
    hw = build_hardware("test-cpu", cpu_entry(), "test")
    assert hw.efficiency.kernel_launch_at(1e9) == WARM_S
    assert load_hardware("h100-sxm").efficiency.kernel_launch_at(1e9) == load_hardware("h100-sxm").efficiency \
        .kernel_launch_s  # GPUs: their host's caches are not the kernels' (no cold cost in the catalog)


@pytest.mark.parametrize("given", [{"kernel_launch_cold_s": COLD_S}, {"host_cache_bytes": CACHE_BYTES}])
def test_half_of_the_pair_is_a_one_line_error(given):
    with pytest.raises(PhasewiseError, match="kernel_launch_cold_s and host_cache_bytes go together") as err:
        build_hardware("test-cpu", cpu_entry(**given), "hardware file 'x.yaml'")
    assert "\n" not in str(err.value)


def test_the_cost_model_charges_each_kernel_the_launch_of_its_layers_size():
    """A Llama-3.1-8B layer (fp32: ~0.9 GB) pays the cold cost on every kernel; the embedding and LM head kernels
    too (they follow the layers); with no cold cost the iteration is cheaper by exactly kernels x the difference."""
    model, quant, engine = load_model("meta-llama/Llama-3.1-8B"), load_quant("fp32"), load_engine("hf-eager")
    assert weight_bytes_per_gpu(model, quant, 1, 1, embeddings=False) / model.num_layers > 2 * CACHE_BYTES
    cold = CostModel(model, cold_cpu(), quant, engine)
    warm = CostModel(model, build_hardware("test-cpu", cpu_entry(), "test"), quant, engine)
    assert cold.kernel_launch_s == pytest.approx(COLD_S) and warm.kernel_launch_s == WARM_S
    shape = BatchShape.uniform(1, 1, 256)
    cold_ops, warm_ops = cold.iteration(shape).operators, warm.iteration(shape).operators
    for cold_op, warm_op in zip(cold_ops, warm_ops):
        assert cold_op.launch_s == pytest.approx(warm_op.launch_s * COLD_S / WARM_S)
        assert cold_op.memory_s == warm_op.memory_s and cold_op.compute_s == warm_op.compute_s
    assert cold.fast(shape)[0] == pytest.approx(cold.iteration(shape).latency_s)  # the fast path agrees


def test_the_private_cache_is_read_from_sysfs(tmp_path):
    for index, (level, kind, size, shared) in enumerate([(1, "Data", "48K", "0"), (1, "Instruction", "64K", "0"),
                                                         (2, "Unified", "2048K", "0"),
                                                         (3, "Unified", "491520K", "0-1")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            (folder / name).write_text(f"{value}\n")
    assert private_cache_bytes(tmp_path) == 2 * 2**20  # L2: the L3 is shared by cores 0-1
    assert private_cache_bytes(tmp_path / "missing") is None
