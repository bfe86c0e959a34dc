"""The chip-design review's findings (a model that does not fit a scenario's chip, --set prefill_memory on a chip given
as a file or alias, GEMM efficiency fields a chip from parts does not read, a mapping file's unknown key, unit slips
above the range): each a one-line error or applied, never a traceback or a value silently ignored."""

from __future__ import annotations

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.scenarios import get_scenario, spad
from phasewise.specs.chip_cost import hardware_cost_usd
from phasewise.specs.hardware import catalog_entry_yaml, hardware_names, load_hardware
from phasewise.specs.mappings import load_mapping

# a chip from its parts (the reviewer's arch1.yaml)
ARCH1 = """
name: Arch1 test chip
kind: accelerator
parts:
  process_node: N5
  compute: {cores: 64, lanes_per_core: 4, array_rows: 64, array_cols: 64, clock_hz: 1.5e+9,
            vector_width: 32, sram_per_core_bytes: 262144}
  l2_bytes: 33554432
  memory: {type: LPDDR5X, interface_bits: 1024, gbps_per_pin: 8.0, capacity_bytes: 128.0e+9}
  links: 0
interconnect:
  intra_node_bandwidth_bytes_per_s: 32.0e+9
  intra_node_latency_s: 2.0e-6
  inter_node_bandwidth_bytes_per_s: 25.0e+9
  inter_node_latency_s: 5.0e-6
  pcie_bandwidth_bytes_per_s: 64.0e+9
  gpus_per_node: 8
"""


def write(tmp_path, data, name: str = "chip.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def one_line(info) -> str:
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- 1: reproduce spad with a model a chip cannot hold ------------------------------------------------------------

def test_spad_tp_whose_model_a_chip_cannot_hold_is_one_line_before_anything_runs():
    """TP2 put ~64 GiB of Llama-2-70B bf16 weights on the 64 GB Prefill Chip: no disaggregated strategy, and
    phase_unit's next() raised StopIteration after the prefill and decode sweeps had run."""
    scenario = get_scenario("spad")
    with pytest.raises(PhasewiseError) as info:
        scenario.resolve({"tp": "2"})
    text = one_line(info)
    assert text.startswith("reproduce spad: --set model, precision, tp, prefill_chip: ")
    assert "does not fit the Prefill Chip 'spad-prefill-chip': weights 64.2 GiB" in text
    assert text.endswith("every chip holds it at tp 4, 8")
    with pytest.raises(PhasewiseError) as info:
        scenario.resolve({"model": "meta-llama/Llama-3.1-405B"})
    assert "no tp up to a node's 8 holds it on every chip" in one_line(info)
    assert scenario.resolve({"tp": "4"})["tp"] == 4  # one that fits passes


def test_spad_phase_unit_without_a_disaggregated_unit_is_one_line():
    """Past validate (called directly), the planner's missing unit is an error naming the keys, not StopIteration."""
    setup = {key: param.value for key, param in get_scenario("spad").setup.items()}
    with pytest.raises(PhasewiseError) as info:
        spad.phase_unit({**setup, "tp": 2}, "spad-prefill-chip", "prefill", 1)
    text = one_line(info)
    assert text.startswith("reproduce spad: --set model, precision, tp: the planner finds no disaggregated unit")


def test_spad_chip_without_parts_is_refused_before_anything_runs():
    with pytest.raises(PhasewiseError) as info:
        get_scenario("spad").resolve({"prefill_chip": "h100-sxm"})
    assert one_line(info).startswith("reproduce spad: --set prefill_chip: needs a chip built from parts ('h100-sxm'")


# --- 2: --set prefill_memory on a prefill chip given as a file, an alias or another case ---------------------------

@pytest.mark.parametrize("given", ["file", "SPAD-Prefill-Chip"])
def test_spad_prefill_memory_applies_to_a_prefill_chip_by_file_or_case(tmp_path, given):
    """The catalog-key lookup returned a file's or a case variant's name unchanged: the GDDR7 chip's figures under an
    echoed prefill_memory HBM3."""
    name = write(tmp_path, catalog_entry_yaml("spad-prefill-chip"), "my_prefill.yaml") if given == "file" else given
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    variant = load_hardware(spad.prefill_variant(name, "HBM3", tmp_path / "a"))
    by_key = load_hardware(spad.prefill_variant("spad-prefill-chip", "HBM3", tmp_path / "b"))
    gddr7 = load_hardware("spad-prefill-chip")
    assert variant.memory_type == by_key.memory_type == "HBM3"
    assert hardware_cost_usd(variant) == pytest.approx(hardware_cost_usd(by_key))
    assert hardware_cost_usd(variant) != pytest.approx(hardware_cost_usd(gddr7))
    # the same bandwidth and capacity (--help-setup: another type keeps them), the rest of the chip as it was
    assert variant.memory_bandwidth_bytes_per_s == gddr7.memory_bandwidth_bytes_per_s
    assert variant.memory_capacity_bytes == gddr7.memory_capacity_bytes
    assert variant.peak("bf16") == gddr7.peak("bf16") and variant.efficiency == gddr7.efficiency


def test_spad_memory_variants_source_is_the_new_memorys(tmp_path):
    """The HBM3 variant kept the GDDR7 chip's sources.memory ("GDDR7, 512-bit interface, 2048 GB/s")."""
    source = load_hardware(spad.prefill_variant("spad-prefill-chip", "HBM3", tmp_path)).sources["memory"]
    assert source.startswith("HBM3 in place of the chip's GDDR7") and "512-bit" not in source
    assert "2,048 GB/s and 64 GiB kept over 3 stacks (3072 bits at 5.33 Gb/s" in source and "JESD238" in source


# --- 3: GEMM efficiency fields a chip from parts does not read ---------------------------------------------------

@pytest.mark.parametrize("efficiency, field", [
    ("{gemm_half_rows: 100000}", "efficiency.gemm_half_rows 100000 is not used"),
    ("{gemm_efficiency_curve: [[1, 0.01], [100000, 0.02]]}", "efficiency.gemm_efficiency_curve is not used"),
])
def test_gemm_efficiency_fields_on_a_chip_from_parts_are_refused(tmp_path, efficiency, field):
    """They changed nothing (the arrays' tiling sets a GEMM's efficiency) and dropped the "no efficiency block"
    caveat."""
    with pytest.raises(PhasewiseError) as info:
        load_hardware(write(tmp_path, ARCH1 + f"efficiency: {efficiency}\n"))
    text = one_line(info)
    assert field in text and "tiles onto parts.compute's arrays (perf/tiling.py)" in text


def test_a_chip_from_parts_keeps_its_caveat_and_its_written_efficiency_block(tmp_path):
    assert "no `efficiency:` block" in load_hardware(write(tmp_path, ARCH1)).caveat
    mine = load_hardware(write(tmp_path, ARCH1 + "efficiency: {gemm_half_rows: 16, gemm_efficiency_max: 0.5}\n"))
    assert mine.efficiency.gemm_efficiency_max == 0.5  # the class default's half rows: what `hardware --yaml` writes
    for key in ("spad-prefill-chip", "halo-2.5d"):
        assert load_hardware(write(tmp_path, catalog_entry_yaml(key), f"{key}.yaml")).key == key


# --- 4: reproduce halo and fireq with a model that does not fit the chip -----------------------------------------

def test_halo_model_that_does_not_fit_the_chip_is_one_line():
    with pytest.raises(PhasewiseError) as info:
        get_scenario("halo").resolve({"models": "meta-llama/Llama-3.1-70B"})
    text = one_line(info)
    assert text.startswith("reproduce halo: --set models, precision, hardware: meta-llama/Llama-3.1-70B in int8 "
                           "does not fit 'halo-2.5d': weights 67.7 GiB")
    assert "exceed the usable 53.6 GiB per GPU" in text


@pytest.mark.parametrize("key", ["model", "fit_model"])
def test_fireq_model_that_does_not_fit_the_chip_is_one_line(key):
    with pytest.raises(PhasewiseError) as info:
        get_scenario("fireq").resolve({key: "meta-llama/Llama-3.1-405B"})
    text = one_line(info)
    assert text.startswith(f"reproduce fireq: --set {key}, fireq, hardware: meta-llama/Llama-3.1-405B in w4a8-fp8 "
                           "does not fit one 'h100-sxm': weights 197.8 GiB")


def test_scenarios_whose_models_fit_still_resolve():
    for name in ("spad", "halo", "fireq"):
        assert get_scenario(name).resolve()


# --- 5: a mapping file's unknown key ------------------------------------------------------------------------------

def test_unknown_key_in_a_mapping_file_lists_the_allowed_keys(tmp_path):
    path = write(tmp_path, "prefill: {default: cid}\ndecode: {default: cid}\ntrain: {default: cid}\n", "map.yaml")
    with pytest.raises(PhasewiseError) as info:
        load_mapping(path)
    assert one_line(info).endswith("train: unknown key (allowed: name, description, source, prefill, decode)")


# --- 6: unit slips above the range --------------------------------------------------------------------------------

def test_a_clock_above_10_ghz_is_a_unit_slip(tmp_path):
    with pytest.raises(PhasewiseError) as info:
        load_hardware(write(tmp_path, ARCH1.replace("clock_hz: 1.5e+9", "clock_hz: 1.0e+15")))
    assert "parts.compute.clock_hz is 1e+15 Hz, above 1e10 Hz: the field is in Hz" in one_line(info)


@pytest.mark.parametrize("value, message", [
    (1.0, "substrates[1].external_bandwidth_bytes_per_s is 1 bytes/s, below 1e6 bytes/s"),
    (1.0e13, "substrates[1].external_bandwidth_bytes_per_s (cid 'cid') is 1e+13 bytes/s, above the chip's "
             "memory_bandwidth_bytes_per_s 3.277e+12"),
])
def test_a_cid_bandwidth_outside_the_chips_memory_is_a_unit_slip(tmp_path, value, message):
    data = catalog_entry_yaml("halo-2.5d")
    cid = data["hardware"]["halo-2.5d"]["substrates"][1]
    assert cid["kind"] == "cid"
    cid["external_bandwidth_bytes_per_s"] = value
    with pytest.raises(PhasewiseError) as info:
        load_hardware(write(tmp_path, data))
    assert message in one_line(info)


def test_every_catalog_chip_still_loads():
    for key in hardware_names():
        assert load_hardware(key).key == key
