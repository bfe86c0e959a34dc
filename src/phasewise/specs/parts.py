"""A chip described by its parts (LLMCompass-style): compute cores of systolic arrays and vector units,
on-chip SRAM, a memory of a known type, links and a process node. The spec-sheet figures the cost model
reads (tensor peak per dtype, vector peak, memory bandwidth and capacity) follow from the parts:

    tensor peak  = cores x lanes_per_core x array_rows x array_cols x 2 FLOP x clock x dtype rate
    vector peak  = cores x lanes_per_core x vector_width x 2 FLOP x clock
    bandwidth    = interface_bits x gbps_per_pin / 8
A hardware YAML entry gives `parts:` instead of those figures (and of its TDP and idle power): one of them given
beside the parts as well is an error unless it is what the parts give (specs/chip_cost.py fill_from_parts), so that
a chip's timing, cost, power and energy all come from one set of parts.
Constants per memory type and process node: specs/data/chip_parts.yaml.
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phasewise.errors import PhasewiseError
from phasewise.specs.catalog import packaged
from phasewise.specs.hardware_errors import spec_message
from phasewise.specs.quant import dtype_bytes

# The tensor dtypes a chip may have a path for (a hardware entry's peak_flops keys, a part's dtype_rates keys)
ComputeDtype = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
COMPUTE_DTYPES: tuple[str, ...] = get_args(ComputeDtype)

# MACs per PE per cycle relative to BF16, when the parts do not say (Hopper-class tensor paths: FP8 and
# INT8 at twice the BF16 rate, TF32 at half)
DEFAULT_DTYPE_RATES = {"fp32": 0.5, "bf16": 1.0, "fp16": 1.0, "fp8": 2.0, "int8": 2.0}


def chip_constants() -> dict[str, Any]:
    return packaged("chip_parts.yaml")


class ComputeUnits(BaseModel):
    """`cores` of `lanes_per_core` sub-lanes, each with one array_rows x array_cols systolic array (K x N of a
    GEMM's weight tile) and `vector_width` FP32 vector lanes; SRAM per core (L1 / shared memory) and registers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cores: int = Field(gt=0)
    lanes_per_core: int = Field(gt=0)
    array_rows: int = Field(gt=0)
    array_cols: int = Field(gt=0)
    clock_hz: float = Field(gt=0)
    vector_width: int = Field(gt=0)
    sram_per_core_bytes: float = Field(gt=0)  # required: a core stages its arrays' tiles in it (_stages_a_tile)
    register_bytes_per_core: float = Field(default=0.0, ge=0)
    # MACs each PE does a cycle in a dtype, relative to the arrays' own rate (1: array_rows x array_cols MACs)
    dtype_rates: dict[ComputeDtype, float] = Field(default_factory=lambda: dict(DEFAULT_DTYPE_RATES))

    @field_validator("dtype_rates")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for dtype, rate in value.items():
            if not rate > 0:
                raise ValueError(f"dtype_rates.{dtype} must be > 0 (got {rate})")
        if "bf16" not in value:  # perf/cost.py CostModel: hp_dtype, attention's peak
            raise ValueError(f"needs bf16 (has: {', '.join(value) or 'none'}): attention and the other high-precision "
                             "work run in bf16 whatever the --precision (fp32 and fp16 aside)")
        return value

    @model_validator(mode="after")
    def _stages_a_tile(self) -> ComputeUnits:
        if self.sram_per_core_bytes < self.tile_bytes_per_core:
            raise ValueError(f"sram_per_core_bytes {self.sram_per_core_bytes:g} cannot stage a tile for each of the "
                             f"core's arrays: {self.lanes_per_core} x {self.array_rows} x {self.array_cols} bf16 "
                             f"weights = {self.tile_bytes_per_core:g} bytes at least (H100: 256 KiB an SM)")
        return self

    @property
    def tile_bytes_per_core(self) -> float:
        """One bf16 weight tile (array_rows x array_cols) for each array of a core: the least its SRAM stages."""
        return self.lanes_per_core * self.array_rows * self.array_cols * dtype_bytes("bf16")

    @property
    def arrays(self) -> int:
        return self.cores * self.lanes_per_core

    @property
    def macs_per_cycle(self) -> int:
        return self.arrays * self.array_rows * self.array_cols

    @property
    def array_flops(self) -> float:
        """FLOP/s of every array at its own rate (dtype rate 1): a MAC a PE a cycle, 2 FLOP each."""
        return 2.0 * self.macs_per_cycle * self.clock_hz

    def tensor_flops(self, dtype: str = "bf16") -> float:
        return self.array_flops * self.dtype_rates.get(dtype, 0.0)

    @property
    def vector_flops(self) -> float:
        return 2.0 * self.arrays * self.vector_width * self.clock_hz


class Memory(BaseModel):
    """Off-chip memory: its type (chip_parts.yaml memory_types), bus width, pin rate and capacity, the capacity at most
    what the bus's units hold (an HBM stack, a 32-bit GDDR / LPDDR channel: max_bytes_per_unit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    interface_bits: int = Field(gt=0)
    gbps_per_pin: float = Field(gt=0)
    capacity_bytes: float = Field(gt=0)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        return known_constant("memory_types", value, "memory type")

    @model_validator(mode="after")
    def _fits_type(self) -> Memory:
        kind = self.constants
        if self.interface_bits % kind["interface_unit_bits"]:
            raise ValueError(f"interface_bits {self.interface_bits} is not a multiple of {self.type}'s "
                             f"{kind['interface_unit_bits']}-bit unit")
        if self.gbps_per_pin > kind["max_gbps_per_pin"]:
            raise ValueError(f"gbps_per_pin {self.gbps_per_pin} exceeds {self.type}'s {kind['max_gbps_per_pin']}")
        most = self.units * kind["max_bytes_per_unit"]
        if self.capacity_bytes > most:
            unit = kind["unit_name"]
            raise ValueError(
                f"capacity_bytes {self.capacity_bytes:.4g} exceeds what interface_bits {self.interface_bits} hold: "
                f"{self.units} {self.type} {unit}{'s' if self.units > 1 else ''} x "
                f"{kind['max_bytes_per_unit'] / 2 ** 30:g} GiB = {most:.4g} (chip_parts.yaml max_bytes_per_unit): "
                "widen interface_bits or lower capacity_bytes")
        return self

    @property
    def constants(self) -> dict[str, Any]:
        return chip_constants()["memory_types"][self.type]

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.interface_bits * self.gbps_per_pin * 1e9 / 8

    @property
    def units(self) -> int:
        """PHY / controller units (HBM stacks, GDDR devices' channels)."""
        return self.interface_bits // self.constants["interface_unit_bits"]

    def of_type(self, memory_type: str, where: str) -> Memory:
        """This memory's bandwidth and capacity in another type (chip_parts.yaml memory_types): the bus widened to
        whole units of the type at its fastest pin rate, the pins then slowed to carry this bandwidth exactly; a
        one-line error (`where`) for a type not known or a capacity its units cannot hold."""
        try:
            kind = chip_constants()["memory_types"][known_constant("memory_types", memory_type, "memory type")]
            unit, bits_per_s = kind["interface_unit_bits"], self.interface_bits * self.gbps_per_pin
            interface_bits = math.ceil(bits_per_s / kind["max_gbps_per_pin"] / unit) * unit
            return Memory(type=memory_type, interface_bits=interface_bits, gbps_per_pin=bits_per_s / interface_bits,
                          capacity_bytes=self.capacity_bytes)
        except ValidationError as exc:
            raise spec_message(where, exc, Memory, "parts.memory") from None
        except ValueError as exc:
            raise PhasewiseError(f"{where}: parts.memory.type: {exc}") from None


class ChipParts(BaseModel):
    """A chip's parts. `other_mm2`: die area the parts do not model (schedulers, media engines, I/O)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    process_node: str  # a node of chip_parts.yaml process_nodes (N7, N5, N3, N2): area, cost and power follow it
    compute: ComputeUnits
    l2_bytes: float = Field(gt=0)  # required: the tiles every core streams from memory pass through it (_l2)
    memory: Memory
    links: int = Field(default=0, ge=0)  # chip-to-chip link PHYs (NVLink-class)
    other_mm2: float = Field(default=0.0, ge=0)
    dies: int = Field(default=1, ge=1)  # the parts split evenly over this many dies on one interposer
    die_to_die_bandwidth_bytes_per_s: float = Field(default=0.0, ge=0)  # each die's die-to-die link, each direction

    @model_validator(mode="after")
    def _l2(self) -> ChipParts:
        least = self.compute.cores * self.compute.tile_bytes_per_core
        if self.l2_bytes < least:
            raise ValueError(f"l2_bytes {self.l2_bytes:g} cannot stage a tile for each core's arrays: "
                             f"{self.compute.cores} cores x {self.compute.tile_bytes_per_core:g} bytes = {least:g} "
                             "bytes at least (H100: 50 MiB)")
        return self

    @model_validator(mode="after")
    def _die_to_die(self) -> ChipParts:
        if self.dies > 1 and not self.die_to_die_bandwidth_bytes_per_s > 0:
            raise ValueError(f"dies: {self.dies} needs die_to_die_bandwidth_bytes_per_s > 0, the bandwidth each die's "
                             "link to the others carries each way (B200's NV-HBI: 10.0e+12)")
        if self.dies == 1 and self.die_to_die_bandwidth_bytes_per_s:
            raise ValueError("die_to_die_bandwidth_bytes_per_s needs dies > 1 (one die has no die-to-die link)")
        return self

    @field_validator("process_node")
    @classmethod
    def _node(cls, value: str) -> str:
        return known_constant("process_nodes", value, "process node")

    @property
    def node(self) -> dict[str, Any]:
        return chip_constants()["process_nodes"][self.process_node]

    def peak_flops(self) -> dict[str, float]:
        return {dtype: self.compute.tensor_flops(dtype) for dtype in self.compute.dtype_rates}


def known_constant(table: str, value: str, what: str) -> str:
    """`value` if chip_parts.yaml's `table` has it, else the validation error naming the known ones."""
    known = chip_constants()[table]
    if value not in known:
        raise ValueError(f"unknown {what} '{value}' (known: {', '.join(known)})")
    return value


def parse_parts(data: Any, where: str) -> ChipParts:
    """`parts:` of a hardware entry, as one line on any error (each field by its path, parts.compute.cores)."""
    if isinstance(data, ChipParts):
        return data
    if not isinstance(data, dict):
        raise PhasewiseError(f"{where}: parts must be a mapping")
    try:
        return ChipParts(**data)
    except ValidationError as exc:
        raise spec_message(where, exc, ChipParts, "parts") from None
    except TypeError as exc:
        raise PhasewiseError(f"{where} parts: {exc}") from None


def derived_figures(parts: ChipParts) -> dict[str, Any]:
    """The spec-sheet fields the parts determine (an entry may not give other values for them: fill_from_parts)."""
    memory = parts.memory
    return {"peak_flops": parts.peak_flops(), "vector_flops": parts.compute.vector_flops,
            "memory_bandwidth_bytes_per_s": memory.bandwidth_bytes_per_s,
            "memory_capacity_bytes": memory.capacity_bytes, "memory_type": memory.type}
