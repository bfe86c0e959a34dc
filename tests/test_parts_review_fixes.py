"""A review of chips from parts and operator mappings: `estimate --mapping` leads with the mapped figures (the engine's
host work with them, as simulate adds it); a chip from parts is one chip (no figure beside its parts overrides them,
its links carry its intra-node bandwidth, its tensor power is its arrays' whatever the dtype rates, bf16 required);
two chips in a disaggregated simulation move KV over rdma; a bad chip file is one line naming the field it wrote."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.sim.api import build, run
from phasewise.specs.catalog import packaged
from phasewise.specs.chip_cost import chip_cost
from phasewise.specs.hardware import catalog_entry_yaml, load_hardware

LLAMA2 = "meta-llama/Llama-2-7b-hf"


def chip(key: str = "spad-decode-chip", **changes) -> dict:
    entry = copy.deepcopy(dict(packaged("hardware_specs.yaml")["hardware"][key]))
    entry.pop("aliases", None)
    entry.update(changes)
    return entry


def write(tmp_path, entry: dict, name: str = "chip.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(entry, sort_keys=False))
    return str(path)


# --- 1 and 6: estimate --mapping ----------------------------------------------------------------------------------

def test_estimate_with_a_mapping_leads_with_the_mapped_figures(tmp_path, run_cli, monkeypatch):
    """The side-by-side table, the headline and --json's prefill_ms / decode_step_ms were the unmapped roofline's
    (302.01 / 5.67 ms) beside a mapping of 70.71 ms."""
    monkeypatch.chdir(tmp_path)  # a short name: the table's columns keep their figures
    mine = "myhalo.yaml"
    (tmp_path / mine).write_text(yaml.safe_dump(catalog_entry_yaml("halo-2.5d")))
    code, out, _ = run_cli("estimate", "--model", LLAMA2, "--hardware", f"halo-2.5d,{mine}", "--precision", "int8",
                           "--mapping", "halo", "--json")
    assert code == 0
    for row in json.loads(out)["chips"]:
        d = row["estimate"]
        assert d["prefill_ms"] == pytest.approx(d["mapping"]["prefill"]["with_host_ms"]) == d["prefill"]["latency_ms"]
        assert d["decode_step_ms"] == pytest.approx(d["mapping"]["decode"]["with_host_ms"])
        assert d["prefill_ms"] == pytest.approx(70.71, abs=0.01)
        assert d["unmapped"]["prefill_ms"] == pytest.approx(302.01, abs=0.01)  # the roofline's, labelled
    code, out, _ = run_cli("estimate", "--model", LLAMA2, "--hardware", f"halo-2.5d,{mine}", "--precision", "int8",
                           "--mapping", "halo")
    words = " ".join(out.split())
    assert code == 0 and "on mapping 'halo'" in words and "302.01" not in out and out.count("70.71") == 2
    code, out, _ = run_cli("estimate", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precision", "int8",
                           "--mapping", "halo")
    out = " ".join(out.split())
    assert code == 0 and "Prefill on mapping 'halo': 1 x 1024 tokens in one iteration -> 70.71 ms" in out
    assert out.index("Prefill on mapping") < out.index("Unmapped (the chip's peaks as one roofline") < out.index(
        "-> 302.01")


@pytest.mark.parametrize("engine", ["vllm", "vllm-v0"])
def test_a_mapped_estimate_has_the_engines_host_work_as_simulate_does(engine):
    """vllm overlaps its host work with the device's (max), vllm-v0 adds it: the mapped estimate took neither."""
    est = estimate(LLAMA2, "halo-2.5d", precision="int8", mapping="halo", engine=engine)
    d, m = est.to_dict(), est.mapped
    host_ms = m.prefill_host_s * 1e3
    assert host_ms == pytest.approx(est.prefill.host_s * 1e3) and host_ms > 0  # the roofline's host work
    device_ms = m.prefill.latency_s * 1e3
    want = max(device_ms, host_ms) if engine == "vllm" else device_ms + host_ms
    assert d["prefill_ms"] == pytest.approx(want, rel=1e-12)
    result = run(model=LLAMA2, hardware="halo-2.5d", precision="int8", mapping="halo", engine=engine,
                 concurrency=1, requests=1, isl=1024, osl=2)
    s = result.summary()
    assert s["ttft_ms"]["mean"] == pytest.approx(d["prefill_ms"], rel=1e-9)
    if engine == "vllm":  # the decode step is host-bound: 1.01 ms, not the substrates' 0.27 ms
        assert d["decode_step_ms"] == pytest.approx(1.01, abs=1e-6) and 1.01 > m.decode.latency_s * 1e3


# --- 2: a figure beside parts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("tdp_w", 50), ("memory_bandwidth_bytes_per_s", 30e12),
                                          ("idle_w", 10), ("peak_flops", {"bf16": 1e15})])
def test_a_figure_beside_parts_is_refused(tmp_path, field, value):
    """tdp_w: 50 beside the parts set the TDP while cost, memory power and energy stayed on the parts."""
    theirs = load_hardware("spad-decode-chip")
    with pytest.raises(PhasewiseError, match=rf"{field} .* is given beside parts:, which give {field} .*remove one"):
        load_hardware(write(tmp_path, chip(**{field: value})))
    if field == "tdp_w":
        with pytest.raises(PhasewiseError, match=f"which give tdp_w {re.escape(repr(theirs.tdp_w))}:"):  # in full
            load_hardware(write(tmp_path, chip(**{field: value})))


def test_the_parts_own_figure_beside_them_is_read(tmp_path):
    """A loaded chip written back (every figure beside its parts) reads as the same chip."""
    hw = load_hardware("spad-prefill-chip")
    again = load_hardware(write(tmp_path, hw.model_dump(mode="json", exclude={"key"})))
    assert again.tdp_w == hw.tdp_w and again.peak_flops == hw.peak_flops


# --- 3: links and the intra-node bandwidth ------------------------------------------------------------------------

def test_the_links_carry_the_intra_node_bandwidth(tmp_path):
    """links 0 kept 450 GB/s of TP collectives and paid no link power; links 1 was credited with all of it."""
    assert packaged("chip_parts.yaml")["links"]["bytes_per_s_per_direction"] == 25e9
    assert load_hardware("spad-h100-model").interconnect.intra_node_bandwidth_bytes_per_s == 450e9  # 18 links
    one = chip()
    one["parts"] = dict(one["parts"], links=1)
    with pytest.raises(PhasewiseError, match=r"interconnect.intra_node_bandwidth_bytes_per_s 4.5e\+11 .* parts.links "
                                             r"carry: 1 x 25 GB/s each way = 2.5e\+10.*give parts.links 18"):
        load_hardware(write(tmp_path, one))
    none = chip()
    none["parts"] = dict(none["parts"], links=0)
    with pytest.raises(PhasewiseError, match=r"parts.links is 0 .*intra_node_bandwidth_bytes_per_s 4.5e\+11 is above "
                                             r"interconnect.pcie_bandwidth_bytes_per_s"):
        load_hardware(write(tmp_path, none))
    none["interconnect"] = dict(none["interconnect"], intra_node_bandwidth_bytes_per_s=64e9)  # over PCIe: read
    hw = load_hardware(write(tmp_path, none))
    assert chip_cost(hw.parts, 2 * 64e9).power_w["links"] == 0.0


# --- 4 and 7: dtype rates -----------------------------------------------------------------------------------------

def _rates(tmp_path, rates: dict) -> str:
    entry = chip()
    entry["parts"] = dict(entry["parts"], compute=dict(entry["parts"]["compute"], dtype_rates=rates))
    return write(tmp_path, entry)


def test_tensor_power_is_the_arrays_whatever_the_dtype_rates(tmp_path):
    """{bf16: 0.5, fp8: 2} halved the tensor power (bf16's FLOPs x pJ), though the same arrays run fp8 at 2x."""
    base = load_hardware("spad-decode-chip")
    half = load_hardware(_rates(tmp_path, {"bf16": 0.5, "fp8": 2}))
    assert half.tdp_w == pytest.approx(base.tdp_w)
    assert chip_cost(half.parts).power_w["tensor"] == pytest.approx(chip_cost(base.parts).power_w["tensor"])
    assert estimate(LLAMA2, _rates(tmp_path, {"bf16": 0.5, "fp8": 2}), precision="fp8").prefill.latency_s > 0


def test_dtype_rates_need_bf16_and_known_dtypes(tmp_path):
    """Without bf16 the chip loaded and every estimate failed ('no bf16 compute path') even at --precision fp8; fp6
    was reported as peak_flops.fp6, a field the user never wrote."""
    with pytest.raises(PhasewiseError, match=r"parts.compute.dtype_rates: needs bf16 \(has: fp8\)"):
        load_hardware(_rates(tmp_path, {"fp8": 2}))
    with pytest.raises(PhasewiseError, match=r"parts.compute.dtype_rates.fp6 is not a known dtype \(allowed: fp32, "):
        load_hardware(_rates(tmp_path, {"bf16": 1, "fp6": 3}))


# --- 5: KV between two chips --------------------------------------------------------------------------------------

def test_a_disaggregated_simulation_on_two_chips_moves_kv_over_rdma(run_cli):
    """It costed the hop over NVLink (the default --kv-link) while plan said NVLink does not leave a node."""
    flags = dict(model=LLAMA2, arch="disagg", prefill_hardware="spad-prefill-chip",
                 decode_hardware="spad-decode-chip", rate=1, requests=5)
    spec = build(**flags)
    assert spec.deployment.kv_link == "rdma" and "not the default --kv-link nvlink" in spec.notes[0]
    assert build(**{**flags, "decode_hardware": "spad-prefill-chip"}).deployment.kv_link == "nvlink"  # one chip
    args = ("simulate", "--model", LLAMA2, "--arch", "disagg", "--prefill-hardware", "spad-prefill-chip",
            "--decode-hardware", "spad-decode-chip", "--rate", "1", "--requests", "5")
    code, out, _ = run_cli(*args, "--json")
    assert code == 0 and "costed over rdma" in json.loads(out)["notes"][0]
    code, out, _ = run_cli(*args)
    assert code == 0 and "note KV transfers costed over rdma" in " ".join(out.split())
    for link in ("nvlink", "pcie"):
        code, _, err = run_cli(*args, "--kv-link", link)
        assert code != 0 and len(err.strip().splitlines()) == 1
        assert f"--kv-link {link} cannot carry KV with prefill on spad-prefill-chip" in err


# --- 8 and 9: the words of a refusal ------------------------------------------------------------------------------

@pytest.mark.parametrize("where, field, value, message", [
    ("memory", "capacity_bytes", 1e19, "is 1e+19 bytes, above 1e18 bytes: the field is in bytes"),
    ("memory", "capacity_bytes", 1000, "is 1000 bytes, below 1 MiB: the field is in bytes"),
    ("compute", "clock_hz", 0, "is 0 Hz, below 1e6 Hz: the field is in Hz"),
])
def test_a_range_error_says_its_unit_once(tmp_path, where, field, value, message):
    entry = chip()
    entry["parts"] = dict(entry["parts"], **{where: dict(entry["parts"][where], **{field: value})})
    with pytest.raises(PhasewiseError) as info:
        load_hardware(write(tmp_path, entry))
    assert message in str(info.value)


def _without_kind(entry: dict) -> dict:
    substrates = copy.deepcopy(entry["substrates"])
    del substrates[1]["kind"]
    return dict(entry, substrates=substrates)


@pytest.mark.parametrize("change, message", [
    (lambda e: dict(e, parts=dict(e["parts"], hbm_stacks=4)),
     "parts.hbm_stacks: unknown key (allowed: process_node, compute, l2_bytes, memory, links"),
    (lambda e: dict(e, parts=dict(e["parts"], compute=dict(e["parts"]["compute"], frequency_ghz=2))),
     "parts.compute.frequency_ghz: unknown key (allowed: cores, lanes_per_core"),
    (lambda e: dict(e, interconnect=dict(e["interconnect"], nvlink_gen=4)),
     "interconnect.nvlink_gen: unknown key (allowed: intra_node_bandwidth_bytes_per_s"),
    (lambda e: dict(e, parts=None), "parts: is empty; a chip needs either parts: {process_node, compute"),
    (lambda e: {("part" if k == "parts" else k): v for k, v in e.items()},
     "part: unknown key (allowed: name, kind"),
])
def test_a_bad_key_names_what_is_allowed(tmp_path, change, message):
    with pytest.raises(PhasewiseError) as info:
        load_hardware(write(tmp_path, change(chip())))
    text = str(info.value)
    assert message in text and "Field required" not in text and "Extra inputs" not in text
    if "parts" in message or "part:" in message:
        assert "or the figures peak_flops, vector_flops" in text or "unknown key" in text


def test_a_substrate_without_its_kind_says_kind_is_required(tmp_path):
    with pytest.raises(PhasewiseError, match=r"substrates.1: kind is required \(one of digital, cid, cim\)"):
        load_hardware(write(tmp_path, _without_kind(chip("halo-2.5d"))))
