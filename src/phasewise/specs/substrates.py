"""Compute substrates: the parts of a chip an operator can run on, each with its own roofs and energies.

A chip YAML may list `substrates:`, each one of three kinds (HALO, AttAcc, CENT):
  digital  tensor/vector units that read DRAM over its external interface;
  cid      compute-in-DRAM (bank-level PIM): the DRAM's internal bandwidth is a multiple of its external
           one, its FLOP/s are low;
  cim      analog compute-in-memory crossbars: high GEMM throughput from arrays x rows MACs per ADC
           sample, a limited weight capacity, and a (re)programming cost when weights do not fit.
Every substrate has a port on the package (2.5D interposer): activations crossing between two substrates
pay both ports' latency and energy and the slower port's bandwidth (perf/mapping.py).
Which operator runs on which substrate is a mapping (specs/mappings.py); the costing is perf/mapping.py.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

SUBSTRATE_KINDS = ("digital", "cid", "cim")


class Port(BaseModel):
    """A substrate's link onto the package interconnect."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bandwidth_bytes_per_s: float = Field(gt=0)
    latency_s: float = Field(ge=0)
    energy_pj_per_byte: float = Field(ge=0)


class DigitalUnit(BaseModel):
    """Digital tensor/vector units that stream operands from DRAM over its external interface."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["digital"]
    flops_per_s: float = Field(gt=0)
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    energy_pj_per_flop: float = Field(ge=0)
    memory_energy_pj_per_byte: float = Field(ge=0)
    port: Port
    sources: dict[str, str] = Field(default_factory=dict)


class ComputeInDram(BaseModel):
    """Bank-level processing-in-memory: near-bank units read their banks at internal_bandwidth_multiple x
    the external bandwidth; the activations they multiply come in over the external interface."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["cid"]
    external_bandwidth_bytes_per_s: float = Field(gt=0)
    internal_bandwidth_multiple: float = Field(ge=1)
    flops_per_s: float = Field(gt=0)
    energy_pj_per_flop: float = Field(ge=0)
    internal_energy_pj_per_byte: float = Field(ge=0)  # a bank read without the I/O
    external_energy_pj_per_byte: float = Field(ge=0)  # through the DRAM's interface
    port: Port
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def internal_bandwidth_bytes_per_s(self) -> float:
        return self.external_bandwidth_bytes_per_s * self.internal_bandwidth_multiple


class ComputeInMemory(BaseModel):
    """Analog crossbars: each array multiplies an input vector by its rows x cols cells, one ADC sample per
    column output; a weight of b bits spans ceil(b / bits_per_cell) cells (slices), each digitized apart.
    Weights beyond the arrays' capacity are written in (programmed) from `weight_source` every pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["cim"]
    arrays: int = Field(gt=0)
    array_rows: int = Field(gt=0)
    array_cols: int = Field(gt=0)
    bits_per_cell: int = Field(gt=0, le=8)
    adc_bits: int = Field(gt=0, le=16)
    adcs_per_array: int = Field(gt=0)
    adc_samples_per_s: float = Field(gt=0)
    energy_pj_per_mac: float = Field(ge=0)  # cell array and input drivers, per MAC of one slice
    adc_energy_pj_per_step: float = Field(ge=0)  # Walden figure of merit: a conversion costs this x 2^adc_bits
    program_rows_per_s: float = Field(gt=0)  # rows written per second per array
    program_energy_pj_per_byte: float = Field(ge=0)
    weight_source_bandwidth_bytes_per_s: float = Field(gt=0)  # the DRAM weights are programmed from
    weight_source_energy_pj_per_byte: float = Field(ge=0)
    port: Port
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _adcs_fit(self) -> ComputeInMemory:
        if self.adcs_per_array > self.array_cols:
            raise ValueError(f"adcs_per_array ({self.adcs_per_array}) exceeds array_cols ({self.array_cols})")
        return self

    def slices(self, weight_bits: float) -> int:
        """Cells (and ADC conversions) per weight of `weight_bits` bits."""
        return max(1, math.ceil(weight_bits / self.bits_per_cell))

    @property
    def capacity_bytes(self) -> float:
        """Bits the arrays hold, in bytes: the weights (or KV) that stay programmed between passes."""
        return self.arrays * self.array_rows * self.array_cols * self.bits_per_cell / 8

    def macs_per_s(self, weight_bits: float) -> float:
        """MACs per second with every array busy: rows MACs per ADC sample, divided among the slices."""
        return self.arrays * self.array_rows * self.adcs_per_array * self.adc_samples_per_s / self.slices(weight_bits)

    @property
    def program_bandwidth_bytes_per_s(self) -> float:
        """Bytes written per second into the arrays (all arrays in parallel), before the source's limit."""
        return self.arrays * self.program_rows_per_s * self.array_cols * self.bits_per_cell / 8

    @property
    def adc_conversion_pj(self) -> float:
        return self.adc_energy_pj_per_step * 2.0 ** self.adc_bits


Substrate = Annotated[Union[DigitalUnit, ComputeInDram, ComputeInMemory], Field(discriminator="kind")]


def check_unique_names(substrates: tuple[Substrate, ...]) -> tuple[Substrate, ...]:
    """Substrate names are what a mapping refers to: they must differ."""
    seen: set[str] = set()
    for part in substrates:
        if part.name in seen:
            raise ValueError(f"two substrates are named '{part.name}'")
        seen.add(part.name)
    return substrates


# Each substrate's field for the bandwidth at which it reads the chip's DRAM (a digital unit's operands, a CiD's
# interface, the DRAM a CiM is programmed from): one DRAM, so none above the chip's memory bandwidth
DRAM_READS = {"digital": "memory_bandwidth_bytes_per_s", "cid": "external_bandwidth_bytes_per_s",
              "cim": "weight_source_bandwidth_bytes_per_s"}


def check_dram_readers(substrates: tuple[Substrate, ...], memory_bandwidth_bytes_per_s: float) -> None:
    """A substrate reading the chip's DRAM faster than the chip's own memory bandwidth is a unit slip (1e13 for a
    3.28e12 HBM), not a chip: a ValueError naming the substrate, its field and the chip's figure. A CiD's banks
    read faster inside the DRAM (internal_bandwidth_multiple), not over its interface."""
    for i, part in enumerate(substrates):
        field = DRAM_READS[part.kind]
        value = getattr(part, field)
        if value > memory_bandwidth_bytes_per_s * (1 + 1e-9):
            inside = " (a CiD's faster bank reads are its internal_bandwidth_multiple)" if part.kind == "cid" else ""
            raise ValueError(f"substrates[{i}].{field} ({part.kind} '{part.name}') is {value:.4g} bytes/s, above the "
                             f"chip's memory_bandwidth_bytes_per_s {memory_bandwidth_bytes_per_s:.4g}, the DRAM it "
                             f"reads{inside}: a unit slip? (3.28 TB/s is 3.28e12)")
