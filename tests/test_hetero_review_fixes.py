"""The heterogeneous-chip review's findings, fixed: --chip-gpus budgets kept per phase chip whatever their numbers,
--hardware beside both role chips refused, energy per FLOP at the dtype's rate, an unknown --precision refused before
the side-by-side table, memory capacity within what the bus's stacks / devices hold, and SRAM / L2 that can stage a
tile."""

from __future__ import annotations

import math

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.plan.options import PlanOptions
from phasewise.plan.strategies import enumerate_strategies
from phasewise.scenarios.spad import prefill_variant
from phasewise.sim.api import deployment_from_flags
from phasewise.specs import load_hardware
from phasewise.specs.catalog import packaged
from phasewise.specs.chip_cost import hardware_chip_cost, work_energy
from phasewise.specs.parts import chip_constants, parse_parts

SMALL = "meta-llama/Llama-3.1-8B"


def parts(compute: dict | None = None, memory: dict | None = None, **rest) -> dict:
    """The H100 model's parts (spad-h100-model), with fields replaced."""
    return {"process_node": "N5",
            "compute": {"cores": 132, "lanes_per_core": 4, "array_rows": 16, "array_cols": 32, "clock_hz": 1.776e9,
                        "vector_width": 32, "sram_per_core_bytes": 262144, **(compute or {})},
            "l2_bytes": 52428800,
            "memory": {"type": "HBM3", "interface_bits": 5120, "gbps_per_pin": 5.234, "capacity_bytes": 85.899e9,
                       **(memory or {})},
            "links": 18, "other_mm2": 259.3, **rest}


def chip_file(tmp_path, name: str, chip_parts: dict) -> str:
    entry = {"name": name, "kind": "accelerator", "parts": chip_parts,
             "interconnect": {"intra_node_bandwidth_bytes_per_s": 450.0e9, "intra_node_latency_s": 2.0e-6,
                              "inter_node_bandwidth_bytes_per_s": 50.0e9, "inter_node_latency_s": 5.0e-6,
                              "gpus_per_node": 8}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"hardware": {name: entry}}))
    return str(path)


# --- 1: each phase chip's --chip-gpus budget is its own, equal numbers too -------------------------------------------

def test_equal_chip_budgets_keep_each_disaggregated_group_within_its_own_chip():
    opts = PlanOptions(tp_options=(1,), prefill_hardware=("spad-prefill-chip",),
                       decode_hardware=("spad-decode-chip",),
                       chip_gpus=(("spad-h100-model", 2), ("spad-prefill-chip", 2), ("spad-decode-chip", 2)))
    strategies, _ = enumerate_strategies(SMALL, "spad-h100-model", 8, opts)
    disagg = {s.name.split(" spad-")[0]: s.gpus for s in strategies if s.kind == "disaggregated"}
    # before: the two groups shared one budget of 2, so 1P1D was the only unit (2P2D, 2P1D never planned)
    assert disagg["2P(TP1) 2D(TP1)"] == 4 and disagg["2P(TP1) 1D(TP1)"] == 3
    assert max(disagg.values()) == 4  # within 2 prefill chips and 2 decode chips
    collocated = [s for s in strategies if s.kind == "collocated"]
    assert collocated and max(s.gpus for s in collocated) == 2  # the collocated chip's own budget


# --- 2: --hardware beside both --prefill-hardware and --decode-hardware ----------------------------------------------

def test_hardware_beside_both_role_chips_is_one_line(run_cli):
    flags = dict(arch="disagg", prefill_hardware="spad-prefill-chip", decode_hardware="spad-decode-chip")
    with pytest.raises(PhasewiseError, match=r"^--hardware nosuch-chip sets the chip of a role given none of its "
                                             r"own .* drop --hardware$"):
        deployment_from_flags(hardware="nosuch-chip", **flags)
    # one role's chip left to it: --hardware is that role's
    one = deployment_from_flags(hardware="h200-sxm", arch="disagg", prefill_hardware="spad-prefill-chip")
    assert [g.hardware for g in one.instances] == ["spad-prefill-chip", "h200-sxm"]
    assert [g.hardware for g in deployment_from_flags(**flags).instances] == ["spad-prefill-chip", "spad-decode-chip"]
    code, out, err = run_cli("simulate", "--model", SMALL, "--requests", "2", "--arch", "disagg",
                             "--prefill-hardware", "spad-prefill-chip", "--decode-hardware", "spad-decode-chip",
                             "--hardware", "nosuch-chip")
    assert code == 2 and out == "" and err.count("\n") == 1 and "drop --hardware" in err


def test_hardware_that_the_encoders_run_on_is_not_refused():
    dep = deployment_from_flags(model="Qwen/Qwen2.5-VL-7B-Instruct", hardware="h200-sxm", arch="disagg",
                                prefill_hardware="h100-sxm", decode_hardware="h100-sxm", encode_workers=1)
    assert dep.encoders.hardware == "h200-sxm"


# --- 3: a FLOP's energy at its dtype's rate -------------------------------------------------------------------------

def test_work_at_each_dtypes_peak_draws_at_most_the_tdp(tmp_path):
    hw = load_hardware(chip_file(tmp_path, "fp8x4", parts({"dtype_rates": {"bf16": 1.0, "fp8": 4.0}},
                                                          {"type": "HBM3e", "interface_bits": 8192,
                                                           "gbps_per_pin": 9.6, "capacity_bytes": 192.0e9})))
    power = hardware_chip_cost(hw).power_w
    for dtype in ("bf16", "fp8"):
        static_w, j_per_flop, j_per_byte = work_energy(hw, dtype)
        tensor_w = j_per_flop * hw.peak(dtype)  # every array busy at the dtype's peak
        assert math.isclose(tensor_w, power["tensor"], rel_tol=1e-9)  # before: 4x it for fp8 (1,152 W of 288)
        busy_w = static_w + tensor_w + j_per_byte * hw.memory_bandwidth_bytes_per_s
        assert busy_w <= hw.tdp_w
    # an fp8 FLOP at rate 4 costs a quarter of a bf16 one (rate 1); the default stays bf16's
    assert math.isclose(work_energy(hw, "fp8")[1] * 4, work_energy(hw)[1], rel_tol=1e-12)
    with pytest.raises(PhasewiseError, match="no int8 compute path"):
        work_energy(hw, "int8")


def test_a_bf16_flop_at_half_rate_costs_twice_a_rate_one_flop(tmp_path):
    """README: {bf16: 0.5, fp8: 2} draws what {bf16: 1} does: its bf16 FLOP takes twice the array time."""
    half = load_hardware(chip_file(tmp_path, "half", parts({"dtype_rates": {"bf16": 0.5, "fp8": 2.0}})))
    one = load_hardware(chip_file(tmp_path, "one", parts({"dtype_rates": {"bf16": 1.0}})))
    assert math.isclose(half.tdp_w, one.tdp_w)
    assert math.isclose(work_energy(half, "bf16")[1], 2 * work_energy(one, "bf16")[1], rel_tol=1e-12)
    assert math.isclose(work_energy(half, "fp8")[1], work_energy(one, "bf16")[1] / 2, rel_tol=1e-12)


# --- 4: estimate --hardware A,B with an unknown --precision ----------------------------------------------------------

def test_unknown_precision_beside_several_chips_is_one_line_before_any_table(run_cli):
    code, out, err = run_cli("estimate", "--model", SMALL, "--hardware", "spad-prefill-chip,spad-decode-chip",
                             "--precision", "fp4")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--precision: unknown precision 'fp4'" in err and "(known: " in err and "fp8" in err


# --- 5: memory capacity within what the bus's units hold -----------------------------------------------------------

@pytest.mark.parametrize("memory, message", [
    ({"type": "HBM3", "interface_bits": 1024, "gbps_per_pin": 6.4, "capacity_bytes": 1.0e12},
     "capacity_bytes 1e+12 exceeds what interface_bits 1024 hold: 1 HBM3 stack x 64 GiB = 6.872e+10"),
    ({"type": "GDDR7", "interface_bits": 384, "gbps_per_pin": 32.0, "capacity_bytes": 1.0e13},
     "12 GDDR7 32-bit channels x 8 GiB = 1.031e+11"),
    ({"type": "HBM4", "interface_bits": 2048, "gbps_per_pin": 8.0, "capacity_bytes": 2 ** 36 + 1},
     "1 HBM4 stack x 64 GiB"),
    ({"type": "LPDDR5X", "interface_bits": 64, "gbps_per_pin": 8.5, "capacity_bytes": 2 ** 36 + 1},
     "2 LPDDR5X 32-bit channels x 32 GiB"),
])
def test_capacity_beyond_the_units_is_one_line(memory, message):
    with pytest.raises(PhasewiseError) as info:
        parse_parts(parts(memory=memory), "chip.yaml")
    assert message in str(info.value) and "parts.memory" in str(info.value) and "\n" not in str(info.value)


def test_capacity_up_to_the_units_is_kept_and_every_limit_is_sourced():
    for name, kind in chip_constants()["memory_types"].items():
        assert kind["max_bytes_per_unit"] > 0 and kind["sources"]["max_bytes_per_unit"] and kind["unit_name"], name
        unit_bits = kind["interface_unit_bits"]
        full = {"type": name, "interface_bits": 2 * unit_bits, "gbps_per_pin": 1.0,
                "capacity_bytes": 2 * kind["max_bytes_per_unit"]}
        assert parse_parts(parts(memory=full), "chip.yaml").memory.capacity_bytes == full["capacity_bytes"]


def test_every_catalog_chip_from_parts_and_spads_memory_variants_still_load(tmp_path):
    from_parts = [k for k, e in packaged("hardware_specs.yaml")["hardware"].items() if "parts" in e]
    assert len(from_parts) >= 3
    for key in from_parts:
        assert load_hardware(key).memory_capacity_bytes > 0
    for memory_type in chip_constants()["memory_types"]:  # reproduce spad's prefill_memory: same capacity
        hw = load_hardware(prefill_variant("spad-prefill-chip", memory_type, tmp_path))
        assert hw.memory_type == memory_type


# --- 6: on-chip SRAM and L2 that can stage a tile ------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (dict(compute={"sram_per_core_bytes": 0}), "parts.compute.sram_per_core_bytes: Input should be greater than 0"),
    (dict(l2_bytes=0), "parts.l2_bytes: Input should be greater than 0"),
    (dict(compute={"sram_per_core_bytes": 2048}),
     "sram_per_core_bytes 2048 cannot stage a tile for each of the core's arrays: 4 x 16 x 32 bf16 weights = 4096"),
    (dict(l2_bytes=65536), "l2_bytes 65536 cannot stage a tile for each core's arrays: 132 cores x 4096 bytes"),
])
def test_no_sram_or_l2_to_stage_a_tile_is_one_line(change, message):
    with pytest.raises(PhasewiseError) as info:
        parse_parts(parts(**change), "chip.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_sram_and_l2_must_be_given():
    chip = parts()
    del chip["l2_bytes"], chip["compute"]["sram_per_core_bytes"]
    with pytest.raises(PhasewiseError) as info:
        parse_parts(chip, "chip.yaml")
    assert "parts.compute.sram_per_core_bytes: Field required" in str(info.value)
    assert "parts.l2_bytes: Field required" in str(info.value)


def test_a_simulated_fp8_run_on_a_chip_from_parts_draws_at_most_its_tdp(tmp_path):
    """The simulator charges a FLOP at the run's compute dtype (sim/instance.py): Llama-3.1-70B FP8 prefills back to
    back on the fp8-x4 chip drew 888 W mean against its 766 W TDP, charged at the bf16 energy; now under the TDP."""
    from phasewise.sim import simulate
    from phasewise.sim.api import build

    path = chip_file(tmp_path, "fp8x4", parts({"dtype_rates": {"bf16": 1.0, "fp8": 4.0}},
                                              {"type": "HBM3e", "interface_bits": 8192, "gbps_per_pin": 9.6,
                                               "capacity_bytes": 192.0e9}))
    hw = load_hardware(path)
    spec = build(model="meta-llama/Llama-3.1-70B", hardware=str(path), precision="fp8", requests=40, rate=1000.0,
                 isl=2048, osl=1)
    result = simulate(spec.deployment, spec.workload, spec.slo)
    busy = sum(s.busy_s for s in result.instances)
    assert busy > 0.9 * result.duration_s  # back to back: the chip works the whole run
    mean_w = sum(s.energy_j for s in result.instances) / result.duration_s
    assert mean_w <= hw.tdp_w * result.gpus
