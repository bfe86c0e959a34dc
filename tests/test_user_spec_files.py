"""Users' spec files (hardware, engine, mapping, topology, model config) are read as written or refused in one line:
a catalog chip copied into a file gives the catalog's numbers only with its efficiencies (`phasewise hardware KEY
--yaml`), never by its key; YAML 1.2 exponents are numbers everywhere; no NaN / Infinity, repeated key, stray key
beside the wrapper, boolean or unit slip passes silently."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.specs.catalog import packaged
from phasewise.specs.hardware import load_engine, load_hardware
from phasewise.specs.mappings import load_mapping
from phasewise.specs.model_catalog import load_model
from phasewise.specs.reading import read_user_file
from phasewise.specs.topology import load_topology


def catalog_entry(key: str) -> dict:
    entry = copy.deepcopy(dict(packaged("hardware_specs.yaml")["hardware"][key]))
    entry.pop("aliases", None)
    return entry


def write(tmp_path, data, name: str = "chip.yaml") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


# --- 1: a copied catalog chip -------------------------------------------------------------------------------------

def test_a_user_chip_keyed_like_a_catalog_chip_takes_no_fitted_efficiencies(tmp_path):
    defaults = packaged("efficiency.yaml")["defaults"]["gpu"]
    for key in ("h100-sxm", "my-chip"):
        hw = load_hardware(write(tmp_path, {"hardware": {key: catalog_entry("h100-sxm")}}, f"{key}.yaml"))
        assert hw.efficiency.memory_efficiency_max == defaults["memory_efficiency_max"], key
        assert hw.efficiency.kernel_launch_s == defaults["kernel_launch_s"], key
        assert "no `efficiency:` block" in hw.caveat and "--yaml" in hw.caveat
    assert load_hardware("h100-sxm").efficiency.kernel_launch_s != defaults["kernel_launch_s"]  # the catalog's fit


def test_hardware_yaml_writes_a_file_that_reproduces_the_catalog_chip(run_cli, tmp_path):
    code, out, err = run_cli("hardware", "b200", "--yaml")
    assert code == 0, err
    path = write(tmp_path, out, "b200.yaml")
    assert load_hardware(path).model_dump() == load_hardware("b200").model_dump()
    decode = []
    for chip in ("b200", path):
        code, out, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-8B", "--precision", "int8",
                                 "--hardware", chip, "--json")
        assert code == 0, err
        decode.append(json.loads(out)["decode"]["latency_ms"])
    assert decode[0] == decode[1]
    for args in (("hardware", "--yaml"), ("hardware", "b200,h100-sxm", "--yaml"), ("hardware", path, "--yaml")):
        code, out, err = run_cli(*args)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1 and err.startswith("error: "), args


def test_every_catalog_chip_round_trips_through_its_yaml(tmp_path):
    from phasewise.specs.hardware import catalog_entry_yaml, hardware_names

    for key in hardware_names():
        path = write(tmp_path, yaml.safe_dump(catalog_entry_yaml(key), sort_keys=False), f"{key}.yaml")
        assert load_hardware(path).model_dump() == load_hardware(key).model_dump(), key


# --- 2: YAML 1.2 exponents ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mbps", ["1e3", "1.0e3", "'1e3'", "1000"])
def test_an_edge_link_reads_an_exponent_as_megabits(tmp_path, mbps):
    path = write(tmp_path, "devices: [{name: a, hardware: jetson-agx-orin}, {name: b, hardware: jetson-agx-orin}]\n"
                           f"links: [{{a: a, b: b, mbps: {mbps}, latency_s: 1e-3}}]\n", "t.yaml")
    topology, _ = load_topology(path)
    assert topology.links[0].bandwidth_bps == 1e9 and topology.links[0].latency_s == 1e-3


def test_an_edge_link_refuses_a_flag_for_its_bandwidth(tmp_path):
    path = write(tmp_path, "devices: [jetson-agx-orin, jetson-agx-orin]\n"
                           "links: [{a: jetson-agx-orin-0, b: jetson-agx-orin-1, mbps: true}]\n", "t.yaml")
    with pytest.raises(PhasewiseError, match="mbps must be a number of Mbit/s"):
        load_topology(path)


def test_a_chip_from_parts_reads_an_exponent_for_its_link_bandwidth(tmp_path):
    entry = catalog_entry("spad-prefill-chip")
    text = yaml.safe_dump({"hardware": {"mine": entry}}, sort_keys=False)
    bandwidth = entry["interconnect"]["intra_node_bandwidth_bytes_per_s"]
    assert f"intra_node_bandwidth_bytes_per_s: {bandwidth!r}" in text
    text = text.replace(f"intra_node_bandwidth_bytes_per_s: {bandwidth!r}", "intra_node_bandwidth_bytes_per_s: 450e9")
    hw = load_hardware(write(tmp_path, text))
    assert hw.interconnect.intra_node_bandwidth_bytes_per_s == 450e9


# --- 3: the GEMM efficiency curve ---------------------------------------------------------------------------------

@pytest.mark.parametrize("curve, message", [
    ([[1, 0.0], [1000, 0.5]], r"an efficiency must be in \(0, 1\]"),
    ([[-5, 0.5], [0, 0.3]], "rows must be > 0"),
    ([[1, 2]], r"an efficiency must be in \(0, 1\]"),
    ([[1, -0.5], [100, 0.5]], r"an efficiency must be in \(0, 1\]"),
    ([[1000, 0.5], [1, 0.2]], "rows must increase strictly"),
    ([[16, 0.3], [16, 0.5]], "rows must increase strictly"),
    ([], "needs at least one"),
])
def test_a_bad_gemm_efficiency_curve_is_one_line(tmp_path, curve, message):
    entry = catalog_entry("h100-sxm")
    entry["efficiency"] = {"gemm_efficiency_curve": curve}
    with pytest.raises(PhasewiseError, match=f"efficiency.gemm_efficiency_curve: {message}"):
        load_hardware(write(tmp_path, {"hardware": {"mine": entry}}))


# --- 4: NaN and Infinity ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("peak_flops.bf16", ".nan"), ("efficiency.memory_half_bytes", ".inf"),
                                          ("memory_bandwidth_bytes_per_s", "-.inf"), ("tdp_w", "'inf'")])
def test_a_hardware_file_refuses_nan_and_infinity(tmp_path, field, value):
    entry = catalog_entry("h100-sxm")
    entry.setdefault("efficiency", {})
    parent, _, leaf = field.rpartition(".")
    (entry[parent] if parent else entry)[leaf] = "SENTINEL"
    text = yaml.safe_dump({"hardware": {"mine": entry}}, sort_keys=False).replace("SENTINEL", value)
    with pytest.raises(PhasewiseError, match=f"{leaf}.*finite"):
        load_hardware(write(tmp_path, text))


@pytest.mark.parametrize("value, extra, message", [
    (".inf", "", "engines.e.iteration_overhead_s holds Infinity"),
    ("true", ", cuda_graphs: false", "iteration_overhead_s must be a number, not true")])
def test_an_engine_file_refuses_infinity_or_a_flag_for_a_number(tmp_path, value, extra, message):
    path = write(tmp_path, f"engines:\n  e: {{iteration_overhead_s: {value}, per_sequence_overhead_s: 0, "
                           f"eager_launch_s: 0{extra}}}\n", "e.yaml")
    with pytest.raises(PhasewiseError, match=message):
        load_engine(path)


# --- 5: keys beside the wrapper -----------------------------------------------------------------------------------

def test_a_key_beside_the_wrapper_is_refused(tmp_path):
    hardware = {"hardware": {"mine": catalog_entry("h100-sxm")}, "efficiency": {"gemm_efficiency_max": 0.1}}
    with pytest.raises(PhasewiseError, match="top-level key 'efficiency' beside 'hardware:'"):
        load_hardware(write(tmp_path, hardware))
    engine = {"engines": {"e": {"iteration_overhead_s": 0.001, "per_sequence_overhead_s": 0, "eager_launch_s": 0}},
              "iteration_overhead_s": 5.0}
    with pytest.raises(PhasewiseError, match="top-level key 'iteration_overhead_s' beside 'engines:'"):
        load_engine(write(tmp_path, engine, "e.yaml"))
    mapping = {"mappings": {"mine": {"prefill": {"default": "digital"}, "decode": {"default": "cid"}}},
               "prefill": {"default": "cim"}}
    with pytest.raises(PhasewiseError, match="top-level key 'prefill' beside 'mappings:'"):
        load_mapping(write(tmp_path, mapping, "m.yaml"))


def test_calibrates_file_is_both_a_hardware_and_an_engine_file(tmp_path):
    entry = catalog_entry("h100-sxm")
    path = write(tmp_path, {"hardware": {"mine": entry}, "engines": {"mine-eager": {
        "iteration_overhead_s": 0.001, "per_sequence_overhead_s": 0, "eager_launch_s": 0}},
        "measurements": {"gemm_flops_by_rows": [[1, 1e9]]}})
    assert load_hardware(path).key == "mine" and load_engine(path).name == "mine-eager"


# --- 6: repeated keys ---------------------------------------------------------------------------------------------

def test_a_repeated_key_is_one_line_naming_file_line_and_key(tmp_path):
    path = write(tmp_path, "model: meta-llama/Llama-3.1-8B\ninstances:\n  - {role: collocated, hardware: h100-sxm}\n"
                           "instances:\n  - {role: collocated, hardware: h200-sxm}\n", "d.yaml")
    with pytest.raises(PhasewiseError, match=r"d.yaml' is malformed: line 4: key 'instances' appears twice .*"
                                             r"first at line 2"):
        read_user_file(path, "deployment")
    path = write(tmp_path, "mappings:\n  mine:\n    prefill: {default: digital}\n    decode: {default: cid, "
                           "default: cim}\n", "m.yaml")
    with pytest.raises(PhasewiseError, match="line 4: key 'default' appears twice"):
        load_mapping(path)
    path = write(tmp_path, '{"a": 1,\n "b": {"c": 1,\n  "c": 2}}', "x.json")
    with pytest.raises(PhasewiseError, match="key 'c' appears twice in the object opened at line 2"):
        read_user_file(path, "model config")


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = write(tmp_path, "base: &b {x: 1, y: 2}\nmine: {<<: *b, x: 3}\n", "x.yaml")
    assert read_user_file(path, "test")["mine"] == {"x": 3, "y": 2}


# --- 7: flags and unit slips --------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("memory_bandwidth_bytes_per_s", 3.35, r"memory_bandwidth_bytes_per_s is 3.35 bytes/s, below 1e6 bytes/s.*"
                                           r"unit slip\? 3.35 TB/s is 3.35e12"),
    ("memory_bandwidth_bytes_per_s", True, "memory_bandwidth_bytes_per_s must be a number or text, not true"),
    ("memory_capacity_bytes", 64, "memory_capacity_bytes is 64 bytes, below 1 MiB"),
    ("memory_capacity_bytes", 1e30, "memory_capacity_bytes is 1e\\+30 bytes, above 1e18 bytes"),
    ("peak_flops.bf16", -1e15, "peak_flops.bf16 must be >= 0 FLOP/s"),
    ("peak_flops.bf16", 989.4, "peak_flops.bf16 is 989.4 FLOP/s, below 1e6"),
    ("interconnect.gpus_per_node", False, "interconnect.gpus_per_node must be a number or text, not false"),
])
def test_a_unit_slip_or_a_flag_for_a_figure_is_one_line(tmp_path, field, value, message):
    entry = catalog_entry("h100-sxm")
    parent, _, leaf = field.rpartition(".")
    (entry[parent] if parent else entry)[leaf] = value
    with pytest.raises(PhasewiseError, match=message):
        load_hardware(write(tmp_path, {"hardware": {"mine": entry}}))


@pytest.mark.parametrize("field, value, message", [
    ("clock_hz", 1.776, r"parts.compute.clock_hz is 1.776 Hz, below 1e6 Hz.*1.776 GHz is 1.776e9"),
    ("capacity_bytes", 64, "parts.memory.capacity_bytes is 64 bytes, below 1 MiB"),
])
def test_a_unit_slip_in_a_chips_parts_is_one_line(tmp_path, field, value, message):
    entry = catalog_entry("spad-prefill-chip")
    entry["parts"]["compute" if field == "clock_hz" else "memory"][field] = value
    with pytest.raises(PhasewiseError, match=message):
        load_hardware(write(tmp_path, {"hardware": {"mine": entry}}))


# --- 8: a catalog MoE model's config.json -------------------------------------------------------------------------

def test_a_catalog_models_config_file_keeps_its_routing_skew(tmp_path):
    config = dict(packaged("models.yaml")["models"]["openai/gpt-oss-120b"]["config"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "bos_token_id": 199998, "transformers_version": "4.55.0"}))
    from_file, from_id = load_model(str(path)), load_model("openai/gpt-oss-120b")
    assert from_file.expert_top20_share == from_id.expert_top20_share == 0.738
    path.write_text(json.dumps({**config, "num_experts_per_tok": config["num_experts_per_tok"] + 1}))
    assert load_model(str(path)).expert_top20_share is None  # another model: uniform routing
