"""Cost and power of a chip from its parts (LLMCompass's area model, a negative-binomial yield model):

    die area   = logic transistors / density + SRAM bits x bit cell / array efficiency
                 + memory and link PHYs (which do not shrink with the node) + other_mm2
                 (over `dies` dies: each holds 1/dies of it plus a die-to-die PHY for its bandwidth, and none
                 may exceed the reticle; A below is one die's area)
    dies/wafer = pi r^2 / A - pi d / sqrt(2 A)                      (300 mm wafer)
    yield      = (1 + A x defect density / cluster)^-cluster
    die cost   = dies x wafer price / (dies per wafer x yield)
    chip cost  = die cost + memory GB x $/GB of its type + package (organic, or 2.5D interposer for HBM or dies > 1)
    TDP        = static W/mm2 x area + (tensor pJ/FLOP x array FLOP/s + vector pJ/FLOP x vector peak) x node energy
                 + memory pJ/bit x bandwidth + link pJ/bit x link bandwidth + die-to-die pJ/bit x its traffic
                 (node energy: the process node's switching energy relative to N5, whose pJ/FLOP the table holds;
                 array FLOP/s: every PE's MAC a cycle, 2 FLOP, at the clock, whatever dtype_rates say: a dtype
                 at rate 2 does twice the FLOPs in the same arrays at the same power)
    links      = the intra-node bandwidth each way is at most parts.links x one link's rate each way
                 (NVLink4's 25 GB/s), or, with no links, the PCIe host link's (the node's GPUs meet over PCIe)
Every constant with its source: specs/data/chip_parts.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.parts import ChipParts, chip_constants, derived_figures, parse_parts
from phasewise.specs.reading import number

WAFER_DIAMETER_MM = 300.0


@dataclass(frozen=True, slots=True)
class ChipCost:
    area_mm2: dict[str, float]  # silicon area by part, all dies together
    dies: int
    dies_per_wafer: float  # of one die
    die_yield: float  # of one die
    die_usd: float  # all dies
    memory_usd: float
    package_usd: float
    power_w: dict[str, float]  # TDP by part

    @property
    def die_area_mm2(self) -> float:
        """Silicon area of all the chip's dies."""
        return sum(self.area_mm2.values())

    @property
    def area_per_die_mm2(self) -> float:
        return self.die_area_mm2 / self.dies

    @property
    def total_usd(self) -> float:
        return self.die_usd + self.memory_usd + self.package_usd

    @property
    def tdp_w(self) -> float:
        return sum(self.power_w.values())

    @property
    def idle_w(self) -> float:
        """What burns whether the chip works or not: static leakage and the links, chip-to-chip and die-to-die."""
        return self.power_w["static"] + self.power_w["links"] + self.power_w["die-to-die"]


def sram_mm2(nbytes: float, node: dict) -> float:
    logic = chip_constants()["logic"]
    return nbytes * 8 * node["sram_bitcell_mm2"] / logic["sram_area_efficiency"]


def die_area_mm2(parts: ChipParts) -> dict[str, float]:
    """Die area by part (mm2)."""
    logic, node = chip_constants()["logic"], parts.node
    density = node["mtr_per_mm2"]
    c, memory = parts.compute, parts.memory
    kind = memory.constants
    vector_mtr = c.vector_width * (logic["vector_fp32_mtr"] + logic["vector_int32_mtr"] + logic["lane_control_mtr"])
    return {
        "systolic arrays": c.arrays * c.array_rows * c.array_cols * logic["pe_mtr"] / density,
        "vector units": c.arrays * vector_mtr / density,
        "core SRAM": c.cores * sram_mm2(c.sram_per_core_bytes + c.register_bytes_per_core, node),
        "core crossbar": c.cores * logic["core_comm_mtr"] / density,
        "L2": sram_mm2(parts.l2_bytes, node),
        "memory PHY": memory.units * (kind["phy_mm2_per_unit"] + kind["controller_mtr_per_unit"] / density),
        "links": parts.links * (logic["link_phy_mm2"] + logic["link_controller_mtr"] / density),
        "other": parts.other_mm2,
        "die-to-die PHY": parts.dies * die_to_die_phy_mm2(parts) if parts.dies > 1 else 0.0,
    }


def die_to_die_phy_mm2(parts: ChipParts) -> float:
    """One die's die-to-die PHY: its bandwidth both ways over the PHY's bandwidth per mm2."""
    return 2 * parts.die_to_die_bandwidth_bytes_per_s / chip_constants()["die_to_die"]["phy_bytes_per_s_per_mm2"]


def check_reticle(parts: ChipParts, area_mm2: dict[str, float]) -> None:
    """One line when a die is larger than the lithography field, with the fewest dies that would fit."""
    reticle = chip_constants()["die_to_die"]["reticle_mm2"]
    per_die = sum(area_mm2.values()) / parts.dies
    if per_die <= reticle:
        return
    logic_mm2 = sum(area for part, area in area_mm2.items() if part != "die-to-die PHY")
    phy_mm2 = die_to_die_phy_mm2(parts) if parts.dies > 1 else 0.0
    fewest = max(parts.dies + 1, math.ceil(logic_mm2 / max(reticle - phy_mm2, 1.0)))
    raise PhasewiseError(f"parts: a {per_die:,.0f} mm2 die exceeds the {reticle:,.0f} mm2 reticle (26 x 33 mm): "
                         f"split it over dies: {fewest} or more (with die_to_die_bandwidth_bytes_per_s), or take "
                         "parts out")


def dies_per_wafer(area_mm2: float) -> float:
    radius = WAFER_DIAMETER_MM / 2
    return math.pi * radius ** 2 / area_mm2 - math.pi * WAFER_DIAMETER_MM / math.sqrt(2 * area_mm2)


def die_yield(area_mm2: float, node: dict) -> float:
    cluster = node["cluster"]
    return (1 + area_mm2 * node["defect_per_mm2"] / cluster) ** -cluster


def power_w(parts: ChipParts, link_bandwidth_bytes_per_s: float = 0.0) -> dict[str, float]:
    """TDP by part (W): every part at full rate at once."""
    power = chip_constants()["power"]
    c, memory, node_energy = parts.compute, parts.memory, parts.node["energy_vs_n5"]
    return {
        "static": power["static_w_per_mm2"] * sum(die_area_mm2(parts).values()),
        "tensor": power["tensor_pj_per_flop"] * node_energy * 1e-12 * c.array_flops,
        "vector": power["vector_pj_per_flop"] * node_energy * 1e-12 * c.vector_flops,
        "memory": memory.constants["pj_per_bit"] * 1e-12 * 8 * memory.bandwidth_bytes_per_s,
        "links": power["link_pj_per_bit"] * 1e-12 * 8 * link_bandwidth_bytes_per_s if parts.links else 0.0,
        "die-to-die": (chip_constants()["die_to_die"]["pj_per_bit"] * 1e-12 * 8
                       * parts.dies * parts.die_to_die_bandwidth_bytes_per_s),
    }


def chip_cost(parts: ChipParts, link_bandwidth_bytes_per_s: float = 0.0) -> ChipCost:
    """Die, memory and package cost and TDP of one chip. `link_bandwidth_bytes_per_s`: both directions of its
    chip-to-chip links together (their power)."""
    constants, node, memory = chip_constants(), parts.node, parts.memory
    area = die_area_mm2(parts)
    check_reticle(parts, area)
    per_die = sum(area.values()) / parts.dies
    per_wafer = dies_per_wafer(per_die)
    good = die_yield(per_die, node)
    packaging = constants["packaging"]
    on_interposer = memory.constants["stacked"] or parts.dies > 1
    package = packaging["interposer_usd"] if on_interposer else packaging["organic_usd"]
    die_usd = parts.dies * node["wafer_usd"] / (per_wafer * good) * packaging["die_margin"]
    return ChipCost(area, parts.dies, per_wafer, good, die_usd,
                    memory.capacity_bytes / 1e9 * memory.constants["usd_per_gb"], package,
                    power_w(parts, link_bandwidth_bytes_per_s))


def fill_from_parts(entry: dict[str, Any], where: str) -> dict[str, Any]:
    """A hardware entry with `parts:` completed by the figures the parts determine (peaks, bandwidth, capacity,
    memory type, TDP; no rental price: 0, unless the entry gives one). A figure the parts determine given beside
    them is a one-line error unless it is theirs (parts_figure_refusal), and so is an intra-node bandwidth their
    links cannot carry (check_links): the chip is one chip, its timing, cost, power and energy from one set of parts."""
    parts = parse_parts(entry["parts"], where)
    interconnect = entry.get("interconnect") if isinstance(entry.get("interconnect"), dict) else {}
    per_direction = number(interconnect.get("intra_node_bandwidth_bytes_per_s", 0.0),
                           "interconnect.intra_node_bandwidth_bytes_per_s", where, "bytes/s")
    if per_direction < 0:
        raise PhasewiseError(f"{where}: interconnect.intra_node_bandwidth_bytes_per_s must be a number of bytes/s "
                             f">= 0 (got {per_direction:g})")
    try:
        cost = chip_cost(parts, 2 * per_direction)  # a die past the reticle is an error
    except PhasewiseError as exc:
        raise PhasewiseError(f"{where} {exc}") from None
    derived = {**derived_figures(parts), "tdp_w": cost.tdp_w}
    # idle_w: checked, not filled (HardwareSpec.idle_power_w: a chip from parts' own, work_energy)
    for field, theirs in {**derived, "idle_w": cost.idle_w}.items():
        if entry.get(field) is not None:  # (null: not given)
            refusal = parts_figure_refusal(field, entry[field], theirs)
            if refusal:
                raise PhasewiseError(f"{where}: {refusal}")
    if "intra_node_bandwidth_bytes_per_s" in interconnect:
        from phasewise.specs.hardware_spec import Interconnect  # (hardware_spec.py imports this module)

        default_pcie = Interconnect.model_fields["pcie_bandwidth_bytes_per_s"].default
        pcie = number(interconnect.get("pcie_bandwidth_bytes_per_s", default_pcie),
                      "interconnect.pcie_bandwidth_bytes_per_s", where, "bytes/s")
        check_links(parts, per_direction, pcie, where)
    return {**derived, "price_per_hour_usd": 0.0, **entry, "parts": parts}


def parts_entry(hardware: Any) -> dict[str, Any]:
    """A chip built from parts as a hardware file's entry (`hardware: {key: entry}`, its efficiencies resolved), less
    the figures its parts determine (those fill_from_parts fills or checks: derived_figures, tdp_w, idle_w), so that a
    copy with other parts derives its own; a one-line error for a chip without parts."""
    parts = getattr(hardware, "parts", None)
    if parts is None:
        raise PhasewiseError(f"hardware '{hardware.key}' has no parts: only a chip built from parts (`parts:` in its "
                             "YAML) can take other parts")
    derived = {"key", *derived_figures(parts), "tdp_w", "idle_w"}
    return hardware.model_dump(mode="json", exclude=derived, exclude_none=True)


def check_links(parts: ChipParts, per_direction: float, pcie_bytes_per_s: float, where: str) -> None:
    """One line where the intra-node bandwidth (bytes/s each way) is more than the chip's links carry: parts.links x
    one link's rate (chip_parts.yaml links), or with no links, more than its PCIe host link (the node's GPUs then meet
    over PCIe, as h100-pcie's do)."""
    per_link = chip_constants()["links"]["bytes_per_s_per_direction"]
    needed = math.ceil(per_direction / per_link - 1e-9)
    if parts.links:
        limit = parts.links * per_link
        if per_direction > limit * (1 + 1e-9):
            raise PhasewiseError(
                f"{where}: interconnect.intra_node_bandwidth_bytes_per_s {per_direction:.4g} (each way) is more than "
                f"parts.links carry: {parts.links} x {per_link / 1e9:g} GB/s each way = {limit:.4g} "
                f"(chip_parts.yaml links; NVLink4: 18 links, 450e9 each way, 900 GB/s both ways): give parts.links "
                f"{needed} or lower the bandwidth")
    elif per_direction > pcie_bytes_per_s * (1 + 1e-9):
        raise PhasewiseError(
            f"{where}: parts.links is 0 (no chip-to-chip links: the node's GPUs meet over PCIe), but "
            f"interconnect.intra_node_bandwidth_bytes_per_s {per_direction:.4g} is above "
            f"interconnect.pcie_bandwidth_bytes_per_s {pcie_bytes_per_s:.4g}: give parts.links {needed} "
            f"({per_link / 1e9:g} GB/s each way a link) or lower the bandwidth to the PCIe link's")


def parts_figure_refusal(field: str, given: Any, theirs: Any) -> str | None:
    """Why a figure given beside `parts:` is refused (None where it is the parts' own figure). The parts' figures
    print in full (Python's shortest repr that reads back as the same float, not rounded to a few digits), so that
    the value the message gives, copied into the file, is accepted: a rounded 597.5 for the parts' 597.5068 W would be
    refused again, and comparing at the rounding instead would let the file's figure replace the parts' own."""
    if isinstance(theirs, dict):
        same = isinstance(given, dict) and set(given) == set(theirs) and all(
            _same(given[k], v) for k, v in theirs.items())
        text = "{" + ", ".join(f"{k}: {_figure(v)}" for k, v in theirs.items()) + "}"
    elif isinstance(theirs, str):
        same, text = given == theirs, repr(theirs)
    else:
        same, text = _same(given, theirs), _figure(theirs)
    if same:
        return None
    shown = ("{" + ", ".join(f"{k}: {_figure(v)}" for k, v in given.items()) + "}" if isinstance(given, dict)
             else _figure(given))
    return (f"{field} {shown} is given beside parts:, which give {field} {text}: remove one (a chip from parts takes "
            "its figures from them, so that its timing, cost, power and energy are one chip's)")


def _figure(value: Any) -> str:
    """A number as the shortest text that reads back as the same float (597.5067764921462, 3349760000000.0)."""
    return repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _same(given: Any, theirs: float) -> bool:
    """Whether a figure given (a number, or text spelling one) is the parts' own."""
    try:
        return not isinstance(given, bool) and math.isclose(float(given), theirs, rel_tol=1e-9)
    except (TypeError, ValueError):
        return False


def hardware_chip_cost(hardware: Any) -> ChipCost:
    """A hardware entry's cost and power from its parts, its links at both directions of its intra-node bandwidth;
    a one-line error for a catalog chip without parts."""
    parts = getattr(hardware, "parts", None)
    if parts is None:
        raise PhasewiseError(f"hardware '{hardware.key}' has no parts: a hardware cost needs a chip built from "
                             "parts (`parts:` in its YAML; see specs/parts.py); a catalog chip has a rental price "
                             "instead (--objective goodput-per-dollar) and a TDP (--objective power)")
    return chip_cost(parts, 2 * hardware.interconnect.intra_node_bandwidth_bytes_per_s)


def work_energy(hardware: Any, dtype: str = "bf16") -> tuple[float, float, float] | None:
    """A chip built from parts: (static W, J per FLOP in `dtype`, J per byte of memory traffic), from the parts' power
    at full rate (power_w: the tensor units' watts, which are the arrays' at their own rate whatever the dtype, over
    the tensor FLOP/s in `dtype`, array_flops x its dtype_rates rate: an fp8 FLOP at rate 2 costs half a rate-1 one;
    the memory's over its bandwidth; ChipCost.idle_w: static leakage and the links, chip-to-chip and die-to-die, burn
    whether the chip works or not), so its energy follows the work its parts do rather than a share of its TDP, and
    work at a dtype's peak draws the tensor units' share of the TDP, no more. None for a catalog chip (no parts)."""
    parts = getattr(hardware, "parts", None)
    if parts is None:
        return None
    flops = parts.compute.tensor_flops(dtype)
    if not flops > 0:
        raise PhasewiseError(f"hardware '{hardware.key}' has no {dtype} compute path (parts.compute.dtype_rates: "
                             f"{', '.join(parts.compute.dtype_rates)})")
    cost = hardware_chip_cost(hardware)
    return (cost.idle_w, cost.power_w["tensor"] / flops, cost.power_w["memory"] / parts.memory.bandwidth_bytes_per_s)


def hardware_cost_usd(hardware: Any) -> float:
    """One chip's hardware cost from its parts (hardware_chip_cost)."""
    return hardware_chip_cost(hardware).total_usd
