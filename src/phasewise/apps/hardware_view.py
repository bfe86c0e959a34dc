"""`phasewise hardware [CHIPS]`: the catalog's chips, or the ones named (catalog keys or a user's YAML files), one row
each; a chip built from parts also shows what its parts cost and draw (specs/chip_cost.py): die area by part, dies
per wafer, yield, die, memory and package cost, and TDP by part, so an architect sees what a chip they wrote costs
before running it through estimate, simulate and plan."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from phasewise.specs.chip_cost import ChipCost, hardware_chip_cost
from phasewise.specs.hardware import HardwareSpec


def cell(figure: float, spec: str) -> str:
    """A figure in a table cell, formatted by `spec`; n/a where it is not known (NaN: HardwareSpec.gpu_hour_usd, known_tdp_w)."""
    return format(figure, spec) if math.isfinite(figure) else "n/a"


def significant(figure: float) -> str:
    """A figure whole where it is 10 or more, else to 3 significant digits (a CPU's 0.001 TFLOP/s is not 0)."""
    return f"{figure:.0f}" if abs(figure) >= 10 or figure == 0 else f"{figure:.3g}"


def chip_row(key: str, hw: HardwareSpec) -> dict[str, Any]:
    """One chip's figures as `hardware --json` lists them; `parts_cost` for a chip built from parts (else None);
    tdp_w and price_per_hour_usd null where the catalog has none (HardwareSpec.known_tdp_w, gpu_hour_usd);
    gemm_peak_flops: the peak each compute dtype's GEMMs run at (HardwareSpec.peak: fp32 on a GPU's vector units,
    not its peak_flops.tf32)."""
    return {"key": key, "name": hw.name, "kind": hw.kind, "peak_flops": dict(hw.peak_flops),
            "gemm_peak_flops": {dtype: hw.peak(dtype) for dtype in hw.compute_paths},
            "vector_flops": hw.vector_flops, "memory_bandwidth_bytes_per_s": hw.memory_bandwidth_bytes_per_s,
            "memory_capacity_bytes": hw.memory_capacity_bytes, "memory_type": hw.memory_type,
            "interconnect": hw.interconnect.model_dump(), "tdp_w": hw.known_tdp_w,
            "price_per_hour_usd": hw.gpu_hour_usd, "sources": dict(hw.sources),
            "parts_cost": None if hw.parts is None else cost_dict(hardware_chip_cost(hw)),
            "substrates": [substrate_dict(substrate) for substrate in hw.substrates]}


def substrate_dict(substrate: Any) -> dict[str, Any]:
    """A substrate's fields with what they derive (a CiM's weight capacity, a CiD's internal bandwidth)."""
    derived = {name: getattr(substrate, name) for name in ("capacity_bytes", "internal_bandwidth_bytes_per_s")
               if hasattr(substrate, name)}
    return {**substrate.model_dump(mode="json"), **derived}


def cost_dict(cost: ChipCost) -> dict[str, Any]:
    return {"area_mm2": cost.area_mm2, "die_area_mm2": cost.die_area_mm2, "dies": cost.dies,
            "area_per_die_mm2": cost.area_per_die_mm2, "dies_per_wafer": cost.dies_per_wafer,
            "die_yield": cost.die_yield, "die_usd": cost.die_usd, "memory_usd": cost.memory_usd,
            "package_usd": cost.package_usd, "total_usd": cost.total_usd, "power_w": cost.power_w,
            "tdp_w": cost.tdp_w}


def render_chips(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    from phasewise.apps.cli_common import fit_to_width

    table = Table(title=title)
    # the key and the figures whole (no_wrap), the name wrapped; narrower than them, fit_to_width drops the peaks
    # below bf16 first
    for col in ("key", "name", "bf16\nTFLOP/s", "fp8", "int8", "int4/fp4", "GB/s", "GiB", "W", "$/h"):
        table.add_column(col, no_wrap=col != "name", overflow="fold")
    for row in rows:
        peaks = row["peak_flops"]

        def tflops(dtype: str) -> str:
            return significant(peaks[dtype] / 1e12) if dtype in peaks else "-"

        low = "/".join(tflops(d) for d in ("int4", "fp4") if d in peaks) or "-"
        table.add_row(row["key"], row["name"], tflops("bf16"), tflops("fp8"), tflops("int8"), low,
                      significant(row["memory_bandwidth_bytes_per_s"] / 1e9),
                      significant(row["memory_capacity_bytes"] / 2**30),
                      cell(row["tdp_w"], ".0f"), cell(row["price_per_hour_usd"], ".2f"))
    fit_to_width(table, console.width, optional=("int4/fp4", "int8", "fp8", "W"))
    console.print(table)
    for row in rows:
        if row["parts_cost"] is not None:
            render_parts_cost(console, row["key"], row["parts_cost"])
        if row["substrates"]:
            console.print(f"[bold]{row['key']}[/] substrates (what `--mapping` places operators on): "
                          + "; ".join(substrate_line(part) for part in row["substrates"]))


def render_parts_cost(console: Console, key: str, cost: dict[str, Any]) -> None:
    area = ", ".join(f"{part} {mm2:,.0f}" for part, mm2 in cost["area_mm2"].items() if mm2 > 0)
    power = ", ".join(f"{part} {watts:,.0f}" for part, watts in cost["power_w"].items() if watts > 0)
    dies = (f"die {cost['die_area_mm2']:,.0f} mm2" if cost["dies"] == 1 else
            f"{cost['dies']} dies of {cost['area_per_die_mm2']:,.0f} mm2, {cost['die_area_mm2']:,.0f} mm2 in all")
    console.print(
        f"[bold]{key}[/] from its parts (specs/data/chip_parts.yaml): {dies} ({area}); "
        f"{cost['dies_per_wafer']:.1f} dies a wafer at {cost['die_yield']:.1%} yield; cost ${cost['total_usd']:,.0f} "
        f"= die ${cost['die_usd']:,.0f} + memory ${cost['memory_usd']:,.0f} + package ${cost['package_usd']:,.0f}; "
        f"TDP {cost['tdp_w']:,.0f} W ({power})")


def substrate_line(part: dict[str, Any]) -> str:
    """One compute substrate in a few figures: digital units and compute-in-DRAM by FLOP/s and bandwidth, analog
    compute-in-memory by its crossbars, weight capacity and ADCs."""
    if part["kind"] == "digital":
        return (f"{part['name']} (digital) {part['flops_per_s'] / 1e12:,.0f} TFLOP/s at "
                f"{part['memory_bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s")
    if part["kind"] == "cid":
        return (f"{part['name']} (compute-in-DRAM) {part['flops_per_s'] / 1e12:,.0f} TFLOP/s, banks read at "
                f"{part['internal_bandwidth_multiple']:g}x its {part['external_bandwidth_bytes_per_s'] / 1e9:,.0f} "
                "GB/s interface")
    return (f"{part['name']} (analog CiM) {part['arrays']:,} crossbars of {part['array_rows']}x{part['array_cols']}, "
            f"{part['capacity_bytes'] / 2**20:,.0f} MiB of weights, {part['adc_bits']}-bit ADCs at "
            f"{part['adc_samples_per_s'] / 1e9:g} GS/s")
