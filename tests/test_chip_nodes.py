"""Process nodes and memory types a chip from parts may name (specs/data/chip_parts.yaml): N7, N5, N3, N2 and HBM4,
each figure sourced; what moving a chip to a newer node or memory does to its area, cost and TDP, worked by hand
from the table; and the one-line errors of a chip the cost objective cannot price."""

from __future__ import annotations

import pytest

from phasewise.specs.catalog import packaged
from phasewise.specs.chip_cost import chip_cost, die_yield, dies_per_wafer
from phasewise.specs.parts import ChipParts

SMALL_MODEL = "meta-llama/Llama-3.1-8B"


def parts(node: str = "N5", **memory) -> ChipParts:
    mem = {"type": "GDDR7", "interface_bits": 256, "gbps_per_pin": 28.0, "capacity_bytes": 48.0e9, **memory}
    return ChipParts(process_node=node, memory=mem, l2_bytes=33554432,
                     compute={"cores": 64, "lanes_per_core": 4, "array_rows": 16, "array_cols": 16, "clock_hz": 1.5e9,
                              "vector_width": 16, "sram_per_core_bytes": 262144})


def test_every_node_and_memory_type_is_sourced():
    table = packaged("chip_parts.yaml")
    assert list(table["process_nodes"]) == ["N7", "N5", "N3", "N2"]
    for name, node in table["process_nodes"].items():
        assert node["sources"], name
        assert {"wafer_usd", "mtr_per_mm2", "sram_bitcell_mm2", "defect_per_mm2", "cluster", "energy_vs_n5"} <= set(node)
    assert table["process_nodes"]["N5"]["energy_vs_n5"] == 1.0  # the table's pJ/FLOP are N5's
    for name, kind in table["memory_types"].items():
        assert kind["sources"], name
    hbm4 = table["memory_types"]["HBM4"]
    assert hbm4["interface_unit_bits"] == 2048 and hbm4["stacked"]  # JEDEC JESD270-4: 2048 bits a stack


def test_a_newer_node_shrinks_the_logic_costs_more_a_wafer_and_draws_less():
    table = packaged("chip_parts.yaml")["process_nodes"]
    costs = {node: chip_cost(parts(node)) for node in ("N7", "N5", "N3", "N2")}
    areas = [costs[n].die_area_mm2 for n in ("N7", "N5", "N3", "N2")]
    assert areas == sorted(areas, reverse=True)  # denser logic and (N2) SRAM
    assert [table[n]["wafer_usd"] for n in ("N7", "N5", "N3", "N2")] == sorted(
        table[n]["wafer_usd"] for n in ("N7", "N5", "N3", "N2"))
    tdp = [costs[n].tdp_w for n in ("N7", "N5", "N3", "N2")]
    assert tdp == sorted(tdp, reverse=True)
    # the memory and its PHY do not shrink: the same memory cost on every node
    assert len({round(c.memory_usd, 6) for c in costs.values()}) == 1
    # by hand: N3's tensor power is N5's at 0.66 (TSMC: -34 % at the same speed); 2 FLOP x MACs x clock x 0.30 pJ
    peak_flops = 2 * 64 * 4 * 16 * 16 * 1.5e9
    assert costs["N5"].power_w["tensor"] == pytest.approx(0.30e-12 * peak_flops)
    assert costs["N3"].power_w["tensor"] == pytest.approx(0.30e-12 * 0.66 * peak_flops)
    # systolic arrays: transistors / density, N3 1.6x N5's logic density
    assert costs["N5"].area_mm2["systolic arrays"] / costs["N3"].area_mm2["systolic arrays"] == pytest.approx(
        221.1 / 138.2)
    # die cost = wafer / (dies a wafer x yield), on N3's own wafer price and defect density
    n3 = costs["N3"]
    assert n3.die_usd == pytest.approx(
        20000 / (dies_per_wafer(n3.die_area_mm2) * die_yield(n3.die_area_mm2, table["N3"])))


def test_hbm4_stacks_give_twice_hbm3s_bus_and_its_own_price():
    hbm3 = chip_cost(parts(type="HBM3", interface_bits=4096, gbps_per_pin=6.4, capacity_bytes=96.0e9))
    hbm4 = parts(type="HBM4", interface_bits=4096, gbps_per_pin=8.0, capacity_bytes=96.0e9)
    assert hbm4.memory.units == 2 and hbm4.memory.bandwidth_bytes_per_s == pytest.approx(4096 * 8e9 / 8)
    cost = chip_cost(hbm4)
    assert cost.memory_usd == pytest.approx(96 * 10.9)  # TrendForce: > 30 % over HBM3E
    assert cost.memory_usd > hbm3.memory_usd
    assert cost.package_usd == hbm3.package_usd  # an interposer package, as HBM3's
    assert cost.power_w["memory"] == pytest.approx(2.5e-12 * 8 * 4096e9)  # 2.5 pJ/bit at 4.1 TB/s
    for memory, match in (({"interface_bits": 1024}, "not a multiple of HBM4's 2048-bit unit"),
                          ({"gbps_per_pin": 12.0}, "exceeds HBM4's 11.0")):
        with pytest.raises(ValueError, match=match):
            parts(**{"type": "HBM4", "interface_bits": 2048, "gbps_per_pin": 8.0, **memory})
    with pytest.raises(ValueError, match=r"unknown process node 'N4' \(known: N7, N5, N3, N2\)"):
        parts("N4")


def test_plan_cost_names_the_flag_that_brought_a_chip_without_parts(run_cli):
    """--objective cost prices chips from parts: collocated strategies run on --hardware (default h100-sxm) even
    when --prefill-hardware / --decode-hardware name chips from parts; the error names the flag, before any search."""
    common = ("plan", "--model", SMALL_MODEL, "--gpus", "2", "--tp-options", "1", "--isl", "512", "--osl", "16",
              "--objective", "cost")
    code, _, err = run_cli(*common, "--prefill-hardware", "spad-prefill-chip", "--decode-hardware", "spad-decode-chip")
    assert code == 2 and err.count("\n") == 1
    assert "--hardware names 'h100-sxm', which has none (h100-sxm is --hardware's default)" in err
    assert "spad-h100-model" in err  # the catalog chips it could use
    code, _, err = run_cli(*common, "--hardware", "spad-h100-model", "--prefill-hardware", "spad-prefill-chip,b200")
    assert code == 2 and "--prefill-hardware names 'b200', which has none" in err and err.count("\n") == 1


def test_simulate_on_a_chip_without_a_rental_price_says_so(run_cli):
    code, out, err = run_cli("simulate", "--model", SMALL_MODEL, "--hardware", "spad-h100-model", "--rate", "2",
                             "--requests", "20", "--isl", "256", "--osl", "8")
    assert code == 0, err
    assert "no rental price" in out and "nan" not in out.lower()
