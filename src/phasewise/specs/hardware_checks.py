"""The checks of a hardware entry's figures before its models validate it: a flag or a unit slip where a number
belongs (check_figures), an entry with neither parts nor the figures they would give (refuse_no_figures)."""

from __future__ import annotations

import math
import re
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hardware_errors import allowed_keys
from phasewise.specs.hardware_spec import HardwareSpec
from phasewise.specs.parts import ChipParts

# Floors below which a figure is a unit slip, not a chip (3.35 for 3.35 TB/s, 1.776 for 1.776 GHz, 64 for 64 GB):
# at or below the Intel 8086 (1978; Intel's 8086 datasheet: a 5 MHz clock, a 20-bit address bus reaching 1 MiB, a
# 16-bit bus cycle of 4 clocks: 2.5 MB/s; no floating point, its 8087 coprocessor some 50 kFLOP/s), which no LLM
# runs on. The ceiling on memory: 1e18 bytes (an exabyte), ~800x the most memory attached to one accelerator
# (Cerebras CS-3 with MemoryX: up to 1.2 PB, Cerebras' CS-3 announcement, March 2024). The ceiling on a clock: 10 GHz,
# above any clock silicon has run (the HWBot-validated overclocking record, under liquid helium: 9,130.33 MHz, an
# Intel Core i9-14900KF, 2025, hardwareluxx.de news 66900; an accelerator's arrays clock at 1-2 GHz: H100 SXM's
# boost 1.98 GHz, NVIDIA's H100 datasheet): 1e15 for 1 GHz would be a chip of a million times the power. A
# substrate's bandwidths and FLOP/s (specs/substrates.py) have the same floors (a substrate's `[i]` reads `[*]`);
# those reading the chip's DRAM are at most its own memory bandwidth (substrates.py check_dram_readers).
_FIGURE_RANGES = {  # field path: (floor, ceiling, unit, an example of the unit slip)
    "memory_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.35 TB/s is 3.35e12"),
    "interconnect.intra_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "450 GB/s is 450e9"),
    "interconnect.inter_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "50 GB/s is 50e9"),
    "interconnect.pcie_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "64 GB/s is 64e9"),
    "memory_capacity_bytes": (2**20, 1e18, "bytes", "80 GB is 80e9"),
    "parts.memory.capacity_bytes": (2**20, 1e18, "bytes", "64 GB is 64e9"),
    "parts.compute.clock_hz": (1e6, 1e10, "Hz", "1.776 GHz is 1.776e9"),
    "vector_flops": (1e6, math.inf, "FLOP/s", "67 TFLOP/s is 67e12"),
    "peak_flops.*": (1e6, math.inf, "FLOP/s", "989 TFLOP/s is 989e12"),  # each dtype's; 0: no such path
    "substrates[*].flops_per_s": (1e6, math.inf, "FLOP/s", "52 TFLOP/s is 52e12"),
    "substrates[*].memory_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.28 TB/s is 3.28e12"),
    "substrates[*].external_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.28 TB/s is 3.28e12"),
    "substrates[*].weight_source_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.28 TB/s is 3.28e12"),
    "substrates[*].port.bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "2 TB/s is 2e12"),
}


def _figure(value: float, unit: str) -> str:
    """A range's bound with its unit (1 MiB: itself a number of bytes)."""
    return "1 MiB" if value == 2**20 else f"{value:.0e}".replace("e+0", "e").replace("e+", "e") + f" {unit}"


def check_figures(entry: dict[str, Any], where: str) -> None:
    """One line for a figure no chip has: true / false anywhere in the entry (no field of it is a flag: `true` for
    a bandwidth would read as 1 byte/s), a negative peak, or a figure of _FIGURE_RANGES outside its range (the unit
    slipped). Other fields' ranges are their models' (HardwareSpec, Interconnect, Efficiency, ChipParts)."""
    stack: list[tuple[str, Any]] = [(str(key), value) for key, value in entry.items()]
    while stack:
        field, value = stack.pop()
        if isinstance(value, bool):
            raise PhasewiseError(f"{where}: {field} must be a number or text, not {str(value).lower()} (no field of "
                                 "a hardware entry is a flag)")
        if isinstance(value, dict):
            stack.extend((f"{field}.{key}", item) for key, item in value.items())
            continue
        if isinstance(value, list):
            stack.extend((f"{field}[{i}]", item) for i, item in enumerate(value))
            continue
        limits = _FIGURE_RANGES.get("peak_flops.*" if field.startswith("peak_flops.") else
                                    re.sub(r"\[\d+\]", "[*]", field))
        if limits is None or not isinstance(value, (int, float)):
            continue
        floor, ceiling, unit, example = limits
        if field.startswith("peak_flops.") and value == 0:
            continue
        if value < 0:
            raise PhasewiseError(f"{where}: {field} must be >= 0 {unit} (got {value:g})")
        if not floor <= value <= ceiling:
            side = f"below {_figure(floor, unit)}" if value < floor else f"above {_figure(ceiling, unit)}"
            raise PhasewiseError(f"{where}: {field} is {value:g} {unit}, {side}: the field is in {unit} "
                                 f"(a unit slip? {example})")


# The figures a chip's entry gives, or its parts derive (parts.py derived_figures, chip_cost.py: TDP), with the
# rental price a chip from parts has none of (0)
PARTS_FIGURES = ("peak_flops", "vector_flops", "memory_bandwidth_bytes_per_s", "memory_capacity_bytes", "tdp_w",
                 "price_per_hour_usd")


def refuse_no_figures(entry: dict[str, Any], where: str) -> None:
    """One line for an entry with neither parts nor the figures they would give (an empty `parts:`, a misspelt
    `part:`), naming both ways and any unknown key, in place of a "Field required" for each figure."""
    missing = [field for field in PARTS_FIGURES if field not in entry]
    if not missing:
        return
    unknown = [str(k) for k in entry if k not in HardwareSpec.model_fields]
    said = [f"{k}: unknown key (allowed: {', '.join(allowed_keys(HardwareSpec))})" for k in unknown[:1]]
    if "parts" in entry:
        said.append("parts: is empty")
    parts_keys = ", ".join(allowed_keys(ChipParts))
    said.append(f"a chip needs either parts: {{{parts_keys}}} (its figures derive from them) or the figures "
                f"{', '.join(PARTS_FIGURES)} (missing: {', '.join(missing)})")
    raise PhasewiseError(f"{where}: " + "; ".join(said))
