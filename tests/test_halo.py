"""Compute substrates (specs/substrates.py), operator mappings (specs/mappings.py, perf/mapping.py), `estimate
--mapping` and the HALO scenario."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.mapping import MappedCost
from phasewise.scenarios import get_scenario
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.mappings import load_mapping

LLAMA2 = "meta-llama/Llama-2-7b-hf"


def chip_entry() -> dict:
    return copy.deepcopy(packaged("hardware_specs.yaml")["hardware"]["halo-2.5d"])


def write_yaml(tmp_path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def mapped(mapping: str, hw=None, precision: str = "int8") -> MappedCost:
    cm = CostModel(load_model(LLAMA2), hw or load_hardware("halo-2.5d"), load_quant(precision, "int8"),
                   load_engine("ideal"))
    return MappedCost(cm, load_mapping(mapping))


def test_catalog_chip_has_its_three_substrates():
    hw = load_hardware("halo-2.5d")
    parts = {p.kind: p for p in hw.substrates}
    assert set(parts) == {"digital", "cid", "cim"}
    cid, cim = parts["cid"], parts["cim"]
    assert cid.internal_bandwidth_bytes_per_s == cid.external_bandwidth_bytes_per_s * cid.internal_bandwidth_multiple
    assert cim.capacity_bytes == 1024 * 256 * 256 / 8  # 8 MiB of single-bit cells
    assert cim.slices(8) == 8 and cim.macs_per_s(8) * 8 == cim.macs_per_s(1)
    assert load_hardware("h100-sxm").substrates == ()  # catalog GPUs: no substrates, costs unchanged


@pytest.mark.parametrize("edit, message", [
    (lambda e: e["substrates"][2].update(arrays=-4), "substrates.2.cim.arrays"),
    (lambda e: e["substrates"][1].update(kind="quantum"), "substrates.1"),
    (lambda e: e["substrates"][1].update(internal_bandwidth_multiple=0.5), "internal_bandwidth_multiple"),
    (lambda e: e["substrates"][2].update(adcs_per_array=1000), "adcs_per_array"),
    (lambda e: e["substrates"][1].update(name="vector"), "two substrates are named 'vector'"),
    (lambda e: e["substrates"][0]["port"].update(bandwidth_bytes_per_s=0), "port.bandwidth_bytes_per_s"),
])
def test_malformed_substrates_are_one_line_errors(tmp_path, edit, message):
    entry = chip_entry()
    edit(entry)
    path = write_yaml(tmp_path, "chip.yaml", {"hardware": {"my-chip": entry}})
    with pytest.raises(PhasewiseError, match=message.replace(".", r"\.")) as err:
        load_hardware(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mapping, message", [
    ({"prefill": {"default": "cid", "qkv": "tpu"}, "decode": {"default": "cid"}}, "no substrate 'tpu'"),
    ({"prefill": {"default": "cid", "softmax": "cid"}, "decode": {"default": "cid"}}, "unknown operator class 'softmax'"),
    ({"prefill": {"qkv": "cid"}, "decode": {"default": "cid"}}, "maps no substrate for embedding"),
    ({"prefill": {"default": "cim"}, "decode": {"default": "cid"}}, "runs matrix products only"),
    ({"prefill": {"default": "cid"}}, "decode"),
])
def test_malformed_mappings_are_one_line_errors(tmp_path, mapping, message):
    path = write_yaml(tmp_path, "map.yaml", {"mappings": {"mine": mapping}})
    with pytest.raises(PhasewiseError, match=message) as err:
        cm = CostModel(load_model(LLAMA2), load_hardware("halo-2.5d"), load_quant("int8"), load_engine("ideal"))
        MappedCost(cm, load_mapping(path))
    assert "\n" not in str(err.value)


def test_mapping_needs_a_chip_with_substrates():
    cm = CostModel(load_model(LLAMA2), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("ideal"))
    with pytest.raises(PhasewiseError, match="lists no substrates"):
        MappedCost(cm, load_mapping("halo"))


def test_gemv_runs_faster_in_dram_than_on_the_digital_units(tmp_path):
    """A decode GEMV is memory-bound: the CiD reads its weights at k x the bandwidth the digital units see."""
    path = write_yaml(tmp_path, "digital.yaml", {"prefill": {"default": "vector"}, "decode": {"default": "vector"}})
    shape = BatchShape.uniform(1, 1, 1024)
    digital = {op.name: op for op in mapped(path).iteration(shape, "decode").operators}
    cid = {op.name: op for op in mapped("all-cid", precision="bf16").iteration(shape, "decode").operators}
    assert digital["mlp_down"].memory_s > digital["mlp_down"].compute_s  # memory-bound on the digital units
    hw = load_hardware("halo-2.5d")
    k = next(p for p in hw.substrates if p.kind == "cid").internal_bandwidth_multiple
    digital_bf16 = {op.name: op for op in mapped(path, precision="bf16").iteration(shape, "decode").operators}
    ratio = digital_bf16["mlp_down"].time_s / cid["mlp_down"].time_s
    assert 0.5 * k < ratio <= k * 1.01  # weights at k x the rate, activations over the external interface


def test_cim_reprograms_weights_beyond_its_capacity_and_not_within():
    shape = BatchShape.uniform(1, 1, 1024)
    small = {op.name: op for op in mapped("all-cim").iteration(shape, "decode").operators}
    hw = load_hardware("halo-2.5d")
    cim = next(p for p in hw.substrates if p.kind == "cim")
    rate = min(cim.program_bandwidth_bytes_per_s, cim.weight_source_bandwidth_bytes_per_s)
    op = small["mlp_gate_up"]
    assert op.programmed_bytes > 0.99 * op.stationary_bytes  # 8 MiB against gigabytes: almost all of it
    assert op.program_s == pytest.approx(op.programmed_bytes / rate)
    assert op.time_s == pytest.approx(op.compute_s + op.program_s)
    big = cim.model_copy(update={"arrays": 10_000_000})  # holds the whole model and its KV
    roomy = hw.model_copy(update={"substrates": tuple(big if p.kind == "cim" else p for p in hw.substrates)})
    fits = {op.name: op for op in mapped("all-cim", roomy).iteration(shape, "decode").operators}
    # the weights and the cached KV stay programmed; the step's new token's K and V (32 layers x 8,192 bytes) are
    # written once (perf/mapping.py cim_programmed_bytes)
    assert all(op.programmed_bytes == 0 and op.program_s == 0 for name, op in fits.items() if name != "attention")
    assert fits["attention"].programmed_bytes == pytest.approx(32 * 8192)
    assert fits["mlp_gate_up"].time_s < op.time_s / 10


@pytest.mark.parametrize("tokens", [1, 4096])
def test_an_mlps_stationary_bytes_are_its_weights_at_any_prompt_length(tokens):
    """The MLP's intermediate stays in the substrate's buffers between its GEMMs: neither streamed traffic nor
    weights a CiM would have to program (it was counted as weights, 2.6x the gate / up GEMM's at 4k tokens)."""
    m = load_model(LLAMA2)
    ops = {op.name: op for op in mapped("all-cim").iteration(BatchShape.uniform(1, tokens, 0), "prefill").operators}
    weights = m.hidden_size * m.intermediate_size * m.num_layers  # int8: a byte a weight
    assert ops["mlp_gate_up"].stationary_bytes == pytest.approx(2 * weights)
    assert ops["mlp_down"].stationary_bytes == pytest.approx(weights)
    assert ops["mlp_gate_up"].activation_bytes == ops["mlp_down"].activation_bytes  # the hidden state, in / out


def test_energy_adds_up_over_operators_and_movements():
    it = mapped("halo").iteration(BatchShape.uniform(1, 512, 0), "prefill")
    assert it.energy_j == pytest.approx(sum(o.energy_j for o in it.operators) + sum(m.energy_j for m in it.movements))
    assert it.movements and all(m.source != m.target for m in it.movements)
    handoff = next(m for m in it.movements if m.edge == "kv->decode")  # prompt KV: CiM (prefill) -> CiD (decode)
    assert (handoff.source, handoff.target) == ("cim", "cid") and handoff.bytes == 512 * 32 * 2 * 32 * 128 * 1.0
    assert not mapped("all-cid").iteration(BatchShape.uniform(1, 512, 0), "prefill").movements
    hw = load_hardware("halo-2.5d")
    vector = next(p for p in hw.substrates if p.kind == "digital")
    norms = next(o for o in it.operators if o.name == "elementwise")
    expected = (norms.flops * vector.energy_pj_per_flop
                + (norms.stationary_bytes + norms.activation_bytes) * vector.memory_energy_pj_per_byte) * 1e-12
    assert norms.substrate == "vector" and norms.energy_j == pytest.approx(expected)
    by = it.by_substrate()
    assert sum(t for t, _ in by.values()) == pytest.approx(it.latency_s)


def test_decode_sum_is_exact_where_the_step_cost_is_linear():
    cost = mapped("all-cid")
    sampled = cost.request(1024, 40, samples=5)
    every = cost.request(1024, 40, samples=40)
    assert sampled.decode_s == pytest.approx(every.decode_s, rel=1e-9)
    assert sampled.energy_j == pytest.approx(every.energy_j, rel=1e-9)


def test_estimate_shows_each_operator_on_its_substrate(run_cli, tmp_path):
    entry = chip_entry()
    entry["name"] = "my HALO-like chip"
    path = write_yaml(tmp_path, "mine.yaml", {"hardware": {"mine": entry}})
    code, out, err = run_cli("estimate", "--model", LLAMA2, "--hardware", path, "--precision", "int8",
                             "--mapping", "halo", "--prompt-len", "2048", "--json")
    assert code == 0, err
    data = json.loads(out)["mapping"]
    assert data["name"] == "halo"
    prefill = {o["name"]: o for o in data["prefill"]["operators"]}
    decode = {o["name"]: o for o in data["decode"]["operators"]}
    assert prefill["qkv_proj"]["kind"] == "cim" and decode["qkv_proj"]["kind"] == "cid"
    assert prefill["elementwise"]["substrate"] == "vector"
    assert all(o["energy_j"] > 0 and o["time_ms"] > 0 for o in data["prefill"]["operators"])
    assert data["decode"]["latency_ms"] < data["prefill"]["latency_ms"]
    code, out, _ = run_cli("estimate", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precision", "int8",
                           "--mapping", "all-cid")
    out = " ".join(out.split())
    assert code == 0 and "Decode step on mapping 'all-cid':" in out and "by substrate" in out


@pytest.mark.parametrize("args, message", [
    (("--hardware", "h100-sxm", "--mapping", "halo"), "lists no substrates"),
    (("--hardware", "halo-2.5d", "--mapping", "halo-x"), "unknown mapping 'halo-x'"),
    (("--hardware", "halo-2.5d", "--mapping", "halo", "--tp", "2"), "use tp=1"),
])
def test_estimate_mapping_errors_are_one_line(run_cli, args, message):
    code, out, err = run_cli("estimate", "--model", LLAMA2, "--precision", "int8", *args)
    assert code == 2 and message in err and err.strip().count("\n") == 0


def test_estimate_rejects_a_malformed_chip_file(run_cli, tmp_path):
    entry = chip_entry()
    entry["substrates"][0]["kind"] = "fpga"
    path = write_yaml(tmp_path, "bad.yaml", {"hardware": {"bad": entry}})
    code, out, err = run_cli("estimate", "--hardware", path, "--mapping", "halo")
    assert code == 2 and "substrates.0" in err and err.strip().count("\n") == 0


DIRECTIONS = ("HALO at or below both extremes", "speedup over all-CiD grows with prompt/output",
              "speedup over all-CiM grows with output length", "HALO saves energy over AttAcc-like and CENT-like")


def test_scenario_on_its_defaults(scenario_defaults):
    result = scenario_defaults("halo")
    checks = {c.name: c for c in result.outcome.checks}
    for name in (*DIRECTIONS, "geomean speedup over all-CiD (CENT-like)"):
        assert checks[name].passed, (name, checks[name].phasewise, checks[name].why)
    attacc = checks["geomean speedup over AttAcc-like"]
    assert attacc.paper == 18.0 and attacc.phasewise > 1  # faster, though not by the paper's margin (see its why)
    assert any("Per-operator" in t["title"] for t in result.outcome.tables)


@pytest.mark.parametrize("sets", [
    {"models": "Qwen/Qwen3-8B", "prompts": "2048,8192", "outputs": "256,1024"},
    {"models": "meta-llama/Llama-3.1-8B", "cid_internal_multiple": "8", "outputs": "64,1024,4096"},
])
def test_scenario_directions_hold_under_other_setups(sets):
    result = get_scenario("halo").run(sets)
    checks = {c.name: c for c in result.outcome.checks}
    for name in DIRECTIONS:
        assert checks[name].passed, (sets, name, checks[name].phasewise, checks[name].why)


def test_scenario_rejects_a_chip_without_the_substrates():
    with pytest.raises(PhasewiseError, match="needs a cid and a cim substrate"):
        get_scenario("halo").run({"hardware": "h100-sxm"})


def test_the_mapped_energy_says_its_mean_power_and_when_it_is_over_the_tdp(run_cli):
    """The mapped energy is the work's, without static power; its mean power per phase is printed, with a note where
    it is over the chip's TDP: halo-2.5d's CiD reads 16 x 3.28 TB/s at 12 pJ/B and computes 52 TFLOP/s at 1 pJ (~681 W
    at both full rates); an all-CiD int8 decode step of Llama-2-7B is compute-bound at 2 FLOPs a weight byte, so it
    reads at half the internal rate: ~371 W (0.254 ms, 94.4 mJ) against the package's assumed 300 W."""
    code, out, err = run_cli("estimate", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precision", "int8",
                             "--mapping", "all-cid", "--prompt-len", "1", "--context-len", "1", "--json")
    assert code == 0, err
    decode = json.loads(out)["mapping"]["decode"]
    cid = next(p for p in load_hardware("halo-2.5d").substrates if p.kind == "cid")
    full_rate_w = (cid.internal_bandwidth_bytes_per_s * cid.internal_energy_pj_per_byte
                   + cid.flops_per_s * cid.energy_pj_per_flop) * 1e-12
    assert decode["dynamic_power_w"] == pytest.approx(decode["energy_j"] / (decode["latency_ms"] / 1e3))
    assert 300 < decode["dynamic_power_w"] <= full_rate_w and decode["over_tdp"]
    code, out, _ = run_cli("estimate", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precision", "int8",
                           "--mapping", "all-cid", "--prompt-len", "1", "--context-len", "1")
    flat = " ".join(out.split())
    assert code == 0 and "mJ of dynamic energy" in flat and "over the chip's 300 W TDP" in flat


@pytest.mark.parametrize("precision, tops, slices, bound", [
    ("int8", 210, 8, "reads the weights at 8.0x the HBM rate, compute-bound: its 52 TFLOP/s at 2 FLOPs per int8 weight "
                     "byte"),
    ("bf16", 105, 16, "reads the weights at 16.0x the HBM rate, bound by its 16x internal bandwidth, under its 52 "
                      "TFLOP/s"),
])
def test_scenario_explanations_follow_the_precision_run(precision, tops, slices, bound):
    """The checks' explanations quote the CiM's rate at the weights' width and the CiD's bound at the precision
    run (they said int8 and 210 TOPS whatever it was): 16-bit weights take twice the 1-bit cell slices, and a
    bf16 GEMV needs the CiD's 1 FLOP per internal byte, no more."""
    result = get_scenario("halo").run({"models": LLAMA2, "prompts": "1024,4096", "outputs": "128,512",
                                       "precision": precision, "kv_dtype": precision})
    why = {c.name: c.why for c in result.outcome.checks}
    cent, attacc = why["geomean speedup over all-CiD (CENT-like)"], why["geomean speedup over AttAcc-like"]
    assert f"the CiM's {tops} TOPS ({precision} weights in {slices} cell slices)" in cent, cent
    assert f"on the CiD {bound}" in attacc, attacc
    other = "int8" if precision == "bf16" else "bf16"
    assert all(other not in text for text in why.values()), why


def test_simulate_says_the_mapping_and_its_energy_by_substrate(run_cli):
    """`simulate --mapping` printed nothing of the mapping (its energy was in --json only): one line names it, with
    its dynamic energy by substrate and its mean power over the run, the figures --json gives."""
    args = ("simulate", "--model", LLAMA2, "--hardware", "halo-2.5d", "--precision", "int8", "--mapping", "halo",
            "--requests", "20", "--isl", "512", "--osl", "32", "--rate", "2")
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    summary = json.loads(out)
    mapped = summary["policy"]["mapping"]
    code, out, err = run_cli(*args)
    flat = " ".join(out.split())
    assert code == 0, err
    line = flat[flat.index("Operator mapping halo:"):]
    assert line.startswith(f"Operator mapping halo: {mapped['energy_j']:.3g} J of dynamic energy over "
                           f"{mapped['iterations']:,} iterations on the substrates (")
    assert set(mapped["by_substrate_j"]) == {"vector", "cid", "cim", "movement"}
    for name, joules in mapped["by_substrate_j"].items():
        assert f"{name} {joules:.3g} J" in line
    mean_w = mapped["energy_j"] / summary["duration_s"]
    assert f"{mean_w:.3g} W on average over the {summary['duration_s']:.1f} simulated s" in line
