"""Chips from their parts (SPAD): derived peaks, tiling efficiency, cost / yield / TDP, malformed parts,
a user's chip through estimate / simulate / plan, heterogeneous disaggregation, plan --objective cost|power,
and the SPAD-1 scenario's directions under --set variations."""

from __future__ import annotations

import json

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.tiling import array_utilization
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.scenarios import get_scenario
from phasewise.sim.api import run as sim_run
from phasewise.specs import load_hardware
from phasewise.specs.catalog import packaged
from phasewise.specs.chip_cost import chip_cost, die_yield, dies_per_wafer, hardware_chip_cost, hardware_cost_usd
from phasewise.specs.parts import ChipParts, ComputeUnits

SMALL_MODEL = "meta-llama/Llama-3.1-8B"


def chip_entry(**memory) -> dict:
    """A small user chip built from parts (an L4-class GDDR part with 8x8 arrays)."""
    mem = {"type": "GDDR7", "interface_bits": 256, "gbps_per_pin": 28.0, "capacity_bytes": 48.0e9, **memory}
    return {"name": "my chip", "kind": "accelerator",
            "parts": {"process_node": "N5", "compute": {"cores": 64, "lanes_per_core": 4, "array_rows": 16,
                                                        "array_cols": 16, "clock_hz": 1.5e9, "vector_width": 16,
                                                        "sram_per_core_bytes": 262144},
                      "l2_bytes": 33554432, "memory": mem},
            # no links (parts.links 0): its GPUs meet over PCIe Gen4 x16, 32 GB/s each way (an L4's host link)
            "interconnect": {"intra_node_bandwidth_bytes_per_s": 32.0e9, "intra_node_latency_s": 2.0e-6,
                             "inter_node_bandwidth_bytes_per_s": 25.0e9, "inter_node_latency_s": 5.0e-6},
            "sources": {"all": "test chip"}}


def write_chip(tmp_path, entry: dict, name: str = "mychip") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"hardware": {name: entry}}))
    return str(path)


def test_parts_derive_the_spec_sheet_figures():
    h100, prefill, decode = (load_hardware(k) for k in ("spad-h100-model", "spad-prefill-chip", "spad-decode-chip"))
    assert prefill.peak("bf16") == pytest.approx(1.92e15, rel=1e-3)  # PAPERS.md: 1.92 PF
    assert h100.peak("bf16") == pytest.approx(0.96e15, rel=1e-3)
    assert decode.peak("bf16") == pytest.approx(0.5 * h100.peak("bf16"))
    assert prefill.peak("fp8") == 2 * prefill.peak("bf16")
    assert prefill.memory_bandwidth_bytes_per_s == pytest.approx(2.048e12)  # 512 bits x 32 Gb/s
    assert h100.memory_bandwidth_bytes_per_s == pytest.approx(3.35e12, rel=1e-3)
    assert prefill.memory_type == "GDDR7" and h100.memory_type == "HBM3"
    assert prefill.vector_flops == pytest.approx(h100.vector_flops / 2)  # 16-wide vector units
    assert 0 < decode.tdp_w < h100.tdp_w < prefill.tdp_w
    for key in ("spad-h100-model", "spad-prefill-chip", "spad-decode-chip"):
        assert packaged("hardware_specs.yaml")["hardware"][key]["sources"]
    # catalog chips without parts are untouched
    assert load_hardware("h100-sxm").parts is None


def test_bigger_arrays_gain_less_than_their_peak_on_skinny_gemms():
    small = ComputeUnits(cores=132, lanes_per_core=4, array_rows=16, array_cols=16, clock_hz=1e9, vector_width=32,
                         sram_per_core_bytes=262144)
    big = small.model_copy(update={"array_rows": 32, "array_cols": 32})
    for rows in (1, 8, 64):
        gain = (big.tensor_flops() * array_utilization(rows, 8192, 1280, big)
                / (small.tensor_flops() * array_utilization(rows, 8192, 1280, small)))
        assert gain < 4.0 * 0.8  # 4x the peak, well under 4x the speed
    assert array_utilization(8, 8192, 8192, big) < array_utilization(8, 8192, 8192, small)
    assert array_utilization(8192, 8192, 8192, big) > 0.97  # a large square GEMM keeps every array busy
    assert array_utilization(8192, 8192, 8192, small) > 0.97
    assert 0 < array_utilization(1, 3, 5, big) <= 1


def test_a_grouped_gemms_fractional_rows_per_expert_cost_time_that_grows_smoothly():
    """A grouped GEMM's mean rows per expert is fractional: its time (rows / utilization) rises continuously with
    it, never falling as it passes an integer; the MoE prefill of a chip built from parts rises with the prompt."""
    from phasewise.perf.estimate import estimate

    arrays = load_hardware("spad-decode-chip").parts.compute
    rows = [1 + step / 50 for step in range(0, 151)]
    cycles = [m / array_utilization(m, 4096, 1536, arrays) for m in rows]
    assert all(b >= a for a, b in zip(cycles, cycles[1:]))
    assert max(b - a for a, b in zip(cycles, cycles[1:])) < 3 * (cycles[-1] - cycles[0]) / 150  # no jump
    prefill = [estimate("deepseek-ai/DeepSeek-V4-Flash", "spad-decode-chip", engine="ideal", batch=4,
                        prompt_len=prompt).prefill.latency_s for prompt in (16, 17, 18, 19)]
    assert prefill == sorted(prefill)


def test_die_cost_and_yield_are_monotonic_and_sourced():
    constants = packaged("chip_parts.yaml")
    node = constants["process_nodes"]["N5"]
    assert dies_per_wafer(400) > dies_per_wafer(800) > 0
    assert 1 > die_yield(100, node) > die_yield(800, node) > 0
    base = ChipParts(**chip_entry()["parts"])
    more_cores = base.model_copy(update={"compute": base.compute.model_copy(update={"cores": 128})})
    assert chip_cost(more_cores).die_area_mm2 > chip_cost(base).die_area_mm2
    assert chip_cost(more_cores).die_usd > chip_cost(base).die_usd
    assert chip_cost(more_cores).die_yield < chip_cost(base).die_yield
    assert chip_cost(more_cores).tdp_w > chip_cost(base).tdp_w
    hbm = ChipParts(**chip_entry(type="HBM3", interface_bits=1024, gbps_per_pin=6.0)["parts"])
    assert chip_cost(hbm).memory_usd > chip_cost(base).memory_usd  # same capacity, HBM's $/GB
    assert chip_cost(hbm).package_usd > chip_cost(base).package_usd  # interposer
    for kind in constants["memory_types"].values():
        assert kind["sources"]
    for section in ("process_nodes", "logic", "packaging", "power"):
        assert constants[section]
    assert hardware_cost_usd(load_hardware("spad-prefill-chip")) < hardware_cost_usd(load_hardware("spad-h100-model"))
    with pytest.raises(PhasewiseError, match="no parts"):
        hardware_cost_usd(load_hardware("h100-sxm"))


@pytest.mark.parametrize("mutate, match", [
    (lambda e: e["parts"]["compute"].update(cores=-4), "compute.cores"),
    (lambda e: e["parts"]["memory"].update(type="HBM9"), "unknown memory type 'HBM9'"),
    (lambda e: e["parts"]["memory"].update(gbps_per_pin=64.0), "exceeds GDDR7"),
    (lambda e: e["parts"].update(process_node="N1"), "unknown process node"),
    (lambda e: e["parts"]["compute"].update(dtype_rates={"fp9": 1.0}), "fp9"),
    (lambda e: e.update(parts=[1, 2]), "parts must be a mapping"),
    # a TypeError / ValueError in the TDP's link term before (benchmarks/fuzz_configs.py)
    (lambda e: e.setdefault("interconnect", {}).update(intra_node_bandwidth_bytes_per_s="x"),
     "interconnect.intra_node_bandwidth_bytes_per_s must be a number of bytes/s"),
])
def test_malformed_parts_are_one_line_errors(tmp_path, mutate, match, run_cli):
    entry = chip_entry()
    mutate(entry)
    path = write_chip(tmp_path, entry)
    with pytest.raises(PhasewiseError, match=match) as err:
        load_hardware(path)
    assert "\n" not in str(err.value)
    code, _, stderr = run_cli("estimate", "--model", SMALL_MODEL, "--hardware", path)
    assert code == 2 and stderr.startswith("error:") and "Traceback" not in stderr and stderr.count("\n") == 1


def test_user_chip_runs_through_estimate_simulate_and_plan(tmp_path, run_cli):
    path = write_chip(tmp_path, chip_entry())
    hw = load_hardware(path)
    assert hw.parts is not None and hw.memory_bandwidth_bytes_per_s == pytest.approx(256 * 28e9 / 8)
    code, out, err = run_cli("estimate", "--model", SMALL_MODEL, "--hardware", path, "--json")
    assert code == 0, err
    code, out, err = run_cli("simulate", "--model", SMALL_MODEL, "--hardware", path, "--rate", "2", "--requests",
                             "40", "--isl", "512", "--osl", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 40
    code, out, err = run_cli("plan", "--model", SMALL_MODEL, "--hardware", path, "--gpus", "2", "--tp-options", "1",
                             "--chunk-sizes", "2048", "--batch-caps", "64", "--isl", "512", "--osl", "32",
                             "--top", "1", "--workers", "1", "--json", "--objective", "cost")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert rows and rows[0]["cluster_cost_usd"] > 0 and rows[0]["objective"] > 0


def test_hardware_describes_a_users_chip_with_its_cost_and_power_by_part(tmp_path, run_cli):
    """`phasewise hardware chips/mine.yaml,spad-prefill-chip,h100-sxm`: one row each; a chip from parts also gives
    its die area, yield, cost and TDP by part, the same figures plan --objective cost|power count; a catalog chip
    without parts has none; a bad name is one line."""
    path = write_chip(tmp_path, chip_entry())
    code, out, err = run_cli("hardware", f"{path},spad-prefill-chip,h100-sxm", "--json")
    assert code == 0, err
    rows = {row["key"]: row for row in json.loads(out)["hardware"]}
    assert list(rows) == [path, "spad-prefill-chip", "h100-sxm"] and rows["h100-sxm"]["parts_cost"] is None
    for key in (path, "spad-prefill-chip"):
        hw, cost = load_hardware(key), rows[key]["parts_cost"]
        assert cost["total_usd"] == pytest.approx(hardware_cost_usd(hw))
        assert cost["tdp_w"] == pytest.approx(hw.tdp_w) == pytest.approx(sum(cost["power_w"].values()))
        assert cost["die_area_mm2"] == pytest.approx(sum(cost["area_mm2"].values()))
        assert cost["total_usd"] == pytest.approx(cost["die_usd"] + cost["memory_usd"] + cost["package_usd"])
    code, out, err = run_cli("hardware", f"{path},spad-prefill-chip")
    flat = " ".join(out.split())
    assert code == 0 and "spad-prefill-chip from its parts" in flat and "yield; cost $996 = die $769" in flat
    assert "TDP 830 W (static 109, tensor 576" in flat and f"{path} from its parts" in flat
    code, out, _ = run_cli("hardware", "halo-2.5d", "--json")  # a chip of substrates: each with what it derives
    parts = {part["name"]: part for part in json.loads(out)["hardware"][0]["substrates"]}
    halo = {part.name: part for part in load_hardware("halo-2.5d").substrates}
    assert code == 0 and parts["cim"]["capacity_bytes"] == halo["cim"].capacity_bytes > 0
    assert parts["cid"]["internal_bandwidth_bytes_per_s"] == halo["cid"].internal_bandwidth_bytes_per_s
    assert "cim (analog CiM) 1,024 crossbars of 256x256" in " ".join(run_cli("hardware", "halo-2.5d")[1].split())
    for bad, message in (("nope", "unknown hardware 'nope'"), ("b200,B200", "names one chip twice"),
                         (" ", "the chip list is empty")):
        code, _, err = run_cli("hardware", bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_heterogeneous_disaggregation_simulates_and_the_link_takes_the_slower_end(tmp_path):
    common = dict(model=SMALL_MODEL, arch="disagg", rate=4, requests=60, isl=1024, osl=16)
    mixed = sim_run(prefill_hardware="spad-prefill-chip", decode_hardware="spad-decode-chip", **common).summary()
    same = sim_run(hardware="spad-h100-model", **common).summary()
    assert mixed["slo"]["attainment"] == 1.0 and same["slo"]["attainment"] == 1.0
    # a decode chip on a slow link: the KV transfer runs at the slower end's rate, so requests finish later (two
    # chips are two machines: the KV goes over rdma, each chip's inter-node link)
    slow = chip_entry(type="HBM3", interface_bits=1024, gbps_per_pin=6.0)
    slow["interconnect"]["inter_node_bandwidth_bytes_per_s"] = 1.0e9
    slow_path = write_chip(tmp_path, slow, "slowlink")
    slowed = sim_run(hardware="spad-h100-model", decode_hardware=slow_path, **common).summary()
    assert slowed["e2e_ms"]["mean"] > same["e2e_ms"]["mean"] + 100  # ~128 MB of KV over 1 GB/s x efficiency
    with pytest.raises(PhasewiseError, match="need --arch disagg"):
        sim_run(model=SMALL_MODEL, hardware="spad-h100-model", prefill_hardware="spad-prefill-chip", rate=1,
                requests=5)


def test_plan_objectives_cost_and_power(run_cli):
    args = ("plan", "--model", SMALL_MODEL, "--hardware", "spad-h100-model", "--gpus", "2", "--tp-options", "1",
            "--chunk-sizes", "2048", "--batch-caps", "64", "--isl", "1024", "--osl", "32", "--top", "2",
            "--workers", "2", "--json", "--prefill-hardware", "spad-h100-model,spad-prefill-chip",
            "--decode-hardware", "spad-decode-chip")
    code, out, err = run_cli(*args, "--objective", "cost")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert rows == sorted(rows, key=lambda r: -r["objective"])
    assert all(r["cluster_cost_usd"] > 0 for r in rows)
    code, out, err = run_cli(*args, "--objective", "power")
    assert code == 0, err
    assert all(r["cluster_tdp_w"] > 0 for r in json.loads(out)["rows"])
    code, _, err = run_cli("plan", "--model", SMALL_MODEL, "--hardware", "h100-sxm", "--gpus", "1", "--tp-options",
                           "1", "--isl", "512", "--osl", "16", "--objective", "cost", "--no-disagg")
    assert code == 2 and "which has none" in err and err.count("\n") == 1
    cluster = cluster_hardware({"instances": [{"hardware": "spad-prefill-chip", "tp": 8, "replicas": 1},
                                              {"hardware": "spad-decode-chip", "tp": 8, "replicas": 2}]})
    assert cluster.chips == {"spad-prefill-chip": 8, "spad-decode-chip": 16}
    assert cluster.tdp_w == pytest.approx(8 * load_hardware("spad-prefill-chip").tdp_w
                                          + 16 * load_hardware("spad-decode-chip").tdp_w)


def directions(result) -> dict[str, float]:
    return {c.name: c.phasewise for c in result.outcome.checks}


def assert_directions(checks: dict[str, float]) -> None:
    assert checks["Prefill Chip prefill performance"] > 1.0  # faster prefill on average
    assert checks["Prefill Chip hardware cost"] < 1.0  # cheaper chip
    assert checks["Decode Chip decode performance"] >= 0.9  # decode kept
    assert checks["Decode Chip TDP"] < 1.0  # less TDP
    cluster = [v for k, v in checks.items() if k.startswith("cluster hardware cost")]
    assert cluster and all(v < 1.0 for v in cluster)  # a cheaper cluster at equal SLOs
    assert checks["re-allocated fleet cost when the workload changes"] < 1.0


def test_spad_scenario_defaults_and_variations_keep_the_directions(scenario_defaults):
    scenario = get_scenario("spad")
    default = scenario_defaults("spad")
    checks = {c.name: c for c in default.outcome.checks}
    for name in ("Prefill Chip prefill performance", "Prefill Chip hardware cost", "Decode Chip decode performance",
                 "Decode Chip TDP", "cluster hardware cost at equal SLOs (azure-conv)",
                 "re-allocated fleet cost when the workload changes"):
        assert checks[name].passed, (name, checks[name].phasewise, checks[name].why)
    assert_directions(directions(default))
    assert len(default.outcome.figures) >= 4 and default.outcome.tables
    varied = scenario.run({"model": "meta-llama/Llama-3.1-70B", "prefill_memory": "LPDDR5X",
                           "decode_contexts": "2048,8192", "traces": "azure-conv"})
    assert varied.setup["prefill_memory"] == "LPDDR5X"
    assert_directions(directions(varied))
    # the variant chip really has the other memory, at the GDDR7 chip's bandwidth and capacity by design
    # (prefill_variant widens the bus): its row differs from the default's in the memory type and its price only
    default_chip, variant_chip = (result.outcome.tables[0]["rows"][1] for result in (default, varied))
    assert (default_chip[4], variant_chip[4]) == ("GDDR7", "LPDDR5X")
    assert variant_chip[2:4] == default_chip[2:4] and variant_chip[8] != default_chip[8]  # GB/s, GiB; memory $
    # one trace: the re-allocation moves the fleet to the other Azure trace, not back onto the trace it was sized for
    moved = {c.name: c for c in varied.outcome.checks}["re-allocated fleet cost when the workload changes"].why
    assert "sized for azure-conv, serving azure-code" in moved and "serving azure-conv" in moved
    assert "sized for azure-conv, serving azure-conv" not in moved and "azure-code: not in traces" in moved


def test_spad_search_window_is_a_setup_parameter():
    """The goodput searches' window (15 s of arrivals per rate by default) can be lengthened to see whether the
    cluster figures have settled; a window that is not positive is a one-line error."""
    scenario = get_scenario("spad")
    assert scenario.resolve({"window_s": "30"})["window_s"] == 30.0
    with pytest.raises(PhasewiseError, match="window_s='0' is not a number > 0"):
        scenario.resolve({"window_s": "0"})


def test_a_chip_from_parts_spends_energy_on_the_work_its_parts_do(tmp_path, run_cli):
    """Idle is the parts' static and link power (not 30 % of the TDP), and a FLOP or byte costs its part's energy:
    the same memory-bound decode at 1.0 and 2.5 GHz spends about the same energy (it was 1.96x: charged as a share
    of a TDP that grows with the clock)."""

    energy = {}
    for ghz in (1.0, 2.5):
        entry = chip_entry()
        entry["parts"]["compute"]["clock_hz"] = ghz * 1e9
        path = write_chip(tmp_path, entry, f"chip{ghz:g}")
        code, out, err = run_cli("simulate", "--hardware", path, "--requests", "60", "--rate", "2", "--isl", "512",
                                 "--osl", "128", "--json")
        assert code == 0, err
        energy[ghz] = json.loads(out)["instances"][0]["energy_j"]
        hardware = load_hardware(path)
        power = hardware_chip_cost(hardware).power_w
        assert hardware.idle_power_w == pytest.approx(power["static"] + power["links"])
        assert hardware.idle_power_w < 0.3 * hardware.tdp_w
    assert energy[2.5] == pytest.approx(energy[1.0], rel=0.1)


def big_chip(cores: int = 264, **parts) -> dict:
    """A B200-class chip from the H100 model's parts: twice the cores and L2, two dies' worth of silicon."""
    entry = json.loads(json.dumps(packaged("hardware_specs.yaml")["hardware"]["spad-h100-model"]))
    entry.pop("sources")
    entry["parts"]["compute"]["cores"] = cores
    entry["parts"]["l2_bytes"] *= 2
    entry["parts"]["other_mm2"] *= 2
    entry["parts"].update(parts)
    return entry


def test_a_die_past_the_reticle_is_refused_and_a_chip_of_two_dies_is_priced(tmp_path, run_cli):
    """No die larger than the 858 mm2 lithography field can be made: a chip whose parts need more names the dies it
    would take. Split over two dies on an interposer, each die yields better than one die of the same silicon
    would (negative-binomial yield), the die-to-die PHY adds area and power, and the performance is the parts'."""
    one_die = write_chip(tmp_path, big_chip(), "onedie")
    with pytest.raises(PhasewiseError, match=r"exceeds the 858 mm2 reticle .* dies: 2 or more") as err:
        load_hardware(one_die)
    assert "\n" not in str(err.value)
    code, _, stderr = run_cli("estimate", "--model", SMALL_MODEL, "--hardware", one_die)
    assert code == 2 and "reticle" in stderr and stderr.count("\n") == 1
    two = load_hardware(write_chip(tmp_path, big_chip(dies=2, die_to_die_bandwidth_bytes_per_s=5.0e12), "twodie"))
    h100 = load_hardware("spad-h100-model")
    cost, single = hardware_chip_cost(two), hardware_chip_cost(h100)
    assert cost.dies == 2 and cost.area_per_die_mm2 <= 858
    assert cost.area_mm2["die-to-die PHY"] == pytest.approx(2 * 2 * 5.0e12 / 1.35e12)
    assert cost.die_yield == pytest.approx(die_yield(cost.area_per_die_mm2, packaged("chip_parts.yaml")
                                                     ["process_nodes"]["N5"]))
    assert cost.die_yield > die_yield(cost.die_area_mm2, packaged("chip_parts.yaml")["process_nodes"]["N5"])
    assert cost.die_usd == pytest.approx(2 * 16988 / (cost.dies_per_wafer * cost.die_yield))
    assert cost.power_w["die-to-die"] == pytest.approx(0.3e-12 * 8 * 2 * 5.0e12)
    assert two.peak_flops["bf16"] == pytest.approx(2 * h100.peak_flops["bf16"])
    assert cost.total_usd > single.total_usd and two.tdp_w > h100.tdp_w
    code, out, err = run_cli("hardware", str(tmp_path / "twodie.yaml"))
    assert code == 0 and "2 dies of" in " ".join(out.split()), err


@pytest.mark.parametrize("parts, match", [
    ({"dies": 2}, "dies: 2 needs die_to_die_bandwidth_bytes_per_s > 0"),
    ({"die_to_die_bandwidth_bytes_per_s": 1.0e12}, "needs dies > 1"),
    ({"dies": 0, "die_to_die_bandwidth_bytes_per_s": 1.0e12}, "dies"),
])
def test_malformed_dies_are_one_line_errors(tmp_path, parts, match):
    with pytest.raises(PhasewiseError, match=match) as err:
        load_hardware(write_chip(tmp_path, big_chip(cores=132, **parts)))
    assert "\n" not in str(err.value)
