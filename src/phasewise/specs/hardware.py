"""Hardware: spec-sheet figures (with sources) plus the named efficiencies the cost model applies.

Spec sheets live in specs/data/hardware_specs.yaml, efficiencies in specs/data/efficiency.yaml
(a default per hardware kind, overridden per entry). A user's chip is one YAML entry in the
spec-sheet format, optionally with its own `efficiency:` block.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phasewise.errors import PhasewiseError, name_list, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file, refuse_beside
from phasewise.specs.chip_cost import fill_from_parts, work_energy
from phasewise.specs.engine_profile import (  # noqa: F401 (importable here, as before)
    PRESET_PROFILE_FIELDS,
    DeepEPBuffers,
    EngineProfile,
    UnfusedElementwise,
    UnfusedKernels,
    engine_file_preset,
    load_engine,
)
from phasewise.specs.hardware_errors import allowed_keys, spec_message
from phasewise.specs.parts import COMPUTE_DTYPES, ChipParts
from phasewise.specs.substrates import Substrate, check_unique_names

# The keys of an entry's peak_flops: the compute dtypes, and tf32 (a GPU's TF32 tensor peak, which IEEE fp32 GEMMs do
# not run at: HardwareSpec.peak)
PEAK_DTYPES: tuple[str, ...] = (*COMPUTE_DTYPES, "tf32")
# The kinds whose fp32 GEMMs run on their FP32 vector units (CUDA cores) where the entry gives no peak_flops.fp32
IEEE_FP32_ON_VECTOR_KINDS = ("gpu", "edge")


class Efficiency(BaseModel):
    """Fractions of the spec-sheet peaks real kernels reach, and fixed costs. See efficiency.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    gemm_efficiency_max: float = Field(gt=0, le=1)
    gemm_half_rows: float = Field(ge=0)
    # measured alternative to the two numbers above: [[rows, efficiency], ...], interpolated in log(rows)
    gemm_efficiency_curve: tuple[tuple[float, float], ...] | None = None
    memory_efficiency_max: float = Field(gt=0, le=1)
    memory_half_bytes: float = Field(ge=0)
    # a weight matrix whose contiguous rows hold k elements streams at k / (k + weight_row_half_elems) of the
    # bandwidth (a per-row start-up cost: prefetchers restart, loop overheads); 0 = no effect (GPU tiles hide it)
    weight_row_half_elems: float = Field(default=0.0, ge=0)
    attention_efficiency_max: float = Field(gt=0, le=1)
    attention_half_tokens: float = Field(ge=0)
    decode_attention_half_rows: float = Field(ge=0)
    attention_memory_efficiency: float = Field(gt=0, le=1)
    vector_efficiency: float = Field(gt=0, le=1)
    dequant_tile_rows: int = Field(gt=0)
    # fraction of the GEMM efficiency that kernels built on warp-synchronous mma.sync (Ampere-style, e.g.
    # QServe's W4A8 main loop) reach on this chip; 1 where that is the native tensor-core instruction
    sync_mma_efficiency: float = Field(default=1.0, gt=0, le=1)
    kernel_launch_s: float = Field(ge=0)
    # A device that runs its own kernels' dispatch (a CPU: one core issues and executes them): the per-kernel host cost
    # when the kernels before it streamed beyond host_cache_bytes (the core's private cache), which evicts the
    # framework's code and data; measured by `calibrate` (measure/calibrate.py), absent elsewhere (kernel_launch_at)
    kernel_launch_cold_s: float | None = Field(default=None, ge=0)
    host_cache_bytes: float | None = Field(default=None, gt=0)
    # single-thread speed of the platform's host CPU relative to the host the engines' host costs (eager launches,
    # scheduler and per-sequence work: engines.yaml) were measured on; those costs divide by it
    host_speed: float = Field(default=1.0, gt=0)
    # per weight dtype: how much of memory_efficiency_max the GEMMs streaming weights of that dtype reach
    # (block-scaled FP4 kernels at decode batch sizes reach less than FP8/BF16 ones); absent = 1
    weight_read_efficiency: dict[str, float] = Field(default_factory=dict)
    link_efficiency: float = Field(gt=0, le=1)
    reserved_bytes: float = Field(ge=0)

    @model_validator(mode="after")
    def _cold_dispatch_pair(self) -> Efficiency:
        if (self.kernel_launch_cold_s is None) != (self.host_cache_bytes is None):
            raise ValueError("kernel_launch_cold_s and host_cache_bytes go together: give both or neither")
        return self

    def kernel_launch_at(self, layer_weight_bytes: float) -> float:
        """Per-kernel launch cost on a device whose layers stream `layer_weight_bytes` of weights each: kernel_launch_s,
        or where a cold dispatch cost is known, moving towards it linearly as the layer's weights outgrow the host's
        cache, all of it from twice the cache. An approximation: measured on an AVX-512 Xeon (L2 2 MiB), an RMSNorm's
        ops after a GEMV over 1 / 2 / 4 / 17 MB of weights paid 1 / 21 / 65 / 100 % of their cold extra cost; the ramp
        gives 25 / 50 / 100 / 100 %."""
        if self.kernel_launch_cold_s is None or self.host_cache_bytes is None:
            return self.kernel_launch_s
        cold_share = min(1.0, layer_weight_bytes / (2.0 * self.host_cache_bytes))
        return self.kernel_launch_s + cold_share * (self.kernel_launch_cold_s - self.kernel_launch_s)

    @field_validator("gemm_efficiency_curve")
    @classmethod
    def _curve(cls, value: tuple[tuple[float, float], ...] | None) -> tuple[tuple[float, float], ...] | None:
        """Points the GEMM efficiency interpolates between (perf/gemm_cost.py, in log rows): at least one, rows > 0
        and strictly increasing (a repeated or unsorted row would make the interpolation pick points out of order),
        each efficiency a fraction of the peak in (0, 1]."""
        if value is None:
            return value
        if not value:
            raise ValueError("needs at least one [rows, efficiency] point (or leave it out)")
        for rows, efficiency in value:
            if not (math.isfinite(rows) and rows > 0):
                raise ValueError(f"rows must be > 0 (got [{rows:g}, {efficiency:g}])")
            if not 0 < efficiency <= 1:
                raise ValueError(f"an efficiency must be in (0, 1] (got [{rows:g}, "
                                 f"{efficiency:g}])")
        for (before, _), (after, _) in zip(value, value[1:]):
            if not after > before:
                raise ValueError(f"rows must increase strictly ({before:g} then {after:g})")
        return value

    @field_validator("weight_read_efficiency")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for dtype, fraction in value.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"weight_read_efficiency.{dtype} must be in (0, 1] (got {fraction})")
        return value


class Interconnect(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    intra_node_bandwidth_bytes_per_s: float = Field(gt=0)
    intra_node_latency_s: float = Field(ge=0)
    inter_node_bandwidth_bytes_per_s: float = Field(gt=0)
    inter_node_latency_s: float = Field(ge=0)
    pcie_bandwidth_bytes_per_s: float = Field(default=32e9, gt=0)
    # the GPUs of one NVLink (or PCIe) domain: collectives of a group up to this size stay on the intra-node link
    gpus_per_node: int = Field(default=8, gt=0)
    # the GPUs one host (one machine: its CPUs, DIMMs and disks) drives; absent: gpus_per_node (an HGX board is one
    # host). An NVL72 rack is one NVLink domain of 72 GPUs over 18 hosts of 4 (its compute trays): each host reads
    # its own share of a checkpoint (perf/startup.py)
    gpus_per_host: int = Field(default=8, gt=0)
    # the reference node's host memory (DIMMs), all its GPUs' together; None: not known (nothing checked against it)
    host_memory_bytes_per_node: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # switch: every GPU reaches its whole intra-node bandwidth to any peer (NVLink through NVSwitch); mesh: one direct
    # link to each other GPU of the node (AMD Infinity Fabric), intra_node_bandwidth being all gpus_per_node - 1 links
    intra_node_topology: Literal["switch", "mesh"] = "switch"

    @model_validator(mode="before")
    @classmethod
    def _host_defaults_to_node(cls, data: Any) -> Any:
        """gpus_per_host absent: the node's GPUs (one host drives its whole NVLink or PCIe domain)."""
        if isinstance(data, dict) and data.get("gpus_per_host") is None and "gpus_per_node" in data:
            data = {**data, "gpus_per_host": data["gpus_per_node"]}
        return data

    @model_validator(mode="after")
    def _hosts_tile_the_node(self) -> Interconnect:
        if self.gpus_per_host > self.gpus_per_node or self.gpus_per_node % self.gpus_per_host:
            raise ValueError(f"gpus_per_host ({self.gpus_per_host}) must divide gpus_per_node ({self.gpus_per_node}): "
                             "a node (NVLink domain) is whole hosts, e.g. 4 of 72 for an NVL72 rack, or leave it out "
                             "(one host a node)")
        return self

    def group_bandwidth(self, ranks: int) -> float:
        """Bytes/s per direction one GPU moves to the other members of an intra-node group of `ranks` GPUs: the whole
        intra-node bandwidth behind a switch; on a mesh, only its links to the group's other members."""
        if self.intra_node_topology == "switch" or self.gpus_per_node < 2:
            return self.intra_node_bandwidth_bytes_per_s
        peers = min(max(ranks, 2), self.gpus_per_node) - 1
        return self.intra_node_bandwidth_bytes_per_s * peers / (self.gpus_per_node - 1)

    @property
    def peer_bandwidth(self) -> float:
        """Bytes/s per direction from one GPU to one other GPU of its node (a KV transfer, a pipeline hop)."""
        return self.group_bandwidth(2)


class HardwareSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    key: str
    name: str
    kind: Literal["gpu", "edge", "cpu", "accelerator"] = "gpu"
    # who makes it, for the engines that run on one vendor's chips only (engine_presets.yaml `vendors`: TensorRT-LLM
    # on NVIDIA's); None (a chip that does not exist yet, a CPU): any engine
    vendor: Literal["nvidia", "amd"] | None = None
    peak_flops: dict[str, float]
    # the block-scaled FP4 formats the fp4 tensor path consumes (quant.yaml `fp4_format`): NVIDIA Blackwell's takes
    # both NVFP4 (E4M3 scale per 16) and MXFP4 (E8M0 per 32); AMD CDNA4's block-scaled MFMA E8M0 scales only
    fp4_formats: tuple[Literal["nvfp4", "mxfp4"], ...] = Field(default=("nvfp4", "mxfp4"), min_length=1)
    # what a user comparing this chip should know of its predictions where no measured serving run backs them, or
    # where one shows a bias nothing corrects (`plan`, `simulate` and `estimate` print it beside their answer)
    caveat: str | None = None
    vector_flops: float = Field(gt=0)
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    memory_capacity_bytes: float = Field(gt=0)
    memory_type: str = ""
    interconnect: Interconnect
    tdp_w: float = Field(ge=0)
    idle_w: float | None = Field(default=None, ge=0)
    price_per_hour_usd: float = Field(ge=0)
    sources: dict[str, str] = Field(default_factory=dict)
    efficiency: Efficiency
    parts: ChipParts | None = None  # a chip built from parts (specs/parts.py): its figures derive from them
    # compute substrates (specs/substrates.py): parts an operator mapping places operators on (HALO, CENT)
    substrates: tuple[Substrate, ...] = ()

    @field_validator("substrates")
    @classmethod
    def _unique_substrates(cls, value: tuple[Substrate, ...]) -> tuple[Substrate, ...]:
        return check_unique_names(value)

    @model_validator(mode="after")
    def _idle_within_tdp(self) -> HardwareSpec:
        # tdp_w 0: not known (a power objective refuses it)
        if self.idle_w is not None and 0 < self.tdp_w < self.idle_w:
            raise ValueError(f"idle_w ({self.idle_w:g} W) must be at most tdp_w ({self.tdp_w:g} W): the simulator's "
                             "power runs from idle to TDP with utilization")
        return self

    @property
    def gpu_hour_usd(self) -> float:
        """The chip's price per GPU-hour, NaN where the catalog knows none (its price_per_hour_usd 0): the one rule
        by which a sum over chips that holds an unpriced one is unknown, not the priced chips' partial sum
        (simulate's tokens per dollar, plan's cluster price, a fleet's dollars)."""
        return self.price_per_hour_usd if self.price_per_hour_usd > 0 else math.nan

    @property
    def known_tdp_w(self) -> float:
        """The chip's TDP, NaN where the catalog knows none (tdp_w 0: cpu-local), by gpu_hour_usd's rule: a cluster
        holding such a chip has no TDP, `--json` writes it null."""
        return self.tdp_w if self.tdp_w > 0 else math.nan

    def peak(self, dtype: str) -> float:
        """Dense peak a compute dtype's GEMMs run at; a one-line error if the chip has no such path. fp32 GEMMs run
        in IEEE FP32 (PyTorch's default float32_matmul_precision 'highest', which vLLM's workers set
        (VLLM_FLOAT32_MATMUL_PRECISION) and SGLang keeps): at peak_flops.fp32 where the entry gives one (a CPU's
        measured matmul, a chip's arrays that run FP32), else on a GPU at its non-tensor FP32 rate (vector_flops),
        never at its TF32 tensor peak (peak_flops.tf32: no --precision runs on it)."""
        value = self.peak_flops.get(dtype) if dtype in COMPUTE_DTYPES else None
        if not value and dtype == "fp32" and self.kind in IEEE_FP32_ON_VECTOR_KINDS:
            value = self.vector_flops
        if value is None or value <= 0:
            raise PhasewiseError(
                f"hardware '{self.key}' has no {dtype} compute path (has: {', '.join(self.compute_paths)}); "
                "choose another --precision"
            )
        return value

    @property
    def compute_paths(self) -> list[str]:
        """The compute dtypes peak() runs on this chip."""
        paths = [k for k, v in self.peak_flops.items() if k in COMPUTE_DTYPES and v > 0]
        if "fp32" not in paths and self.kind in IEEE_FP32_ON_VECTOR_KINDS:
            paths.insert(0, "fp32")
        return paths

    @property
    def captures_cuda_graphs(self) -> bool:
        """Whether an engine captures and replays CUDA graphs on this chip: not on a CPU, which has no CUDA stream to
        capture (vLLM's CPU platform empties cudagraph_capture_sizes, vllm/platforms/cpu.py
        check_and_update_config): every step launches its kernels eagerly and start-up captures none."""
        return self.kind != "cpu"

    @property
    def idle_power_w(self) -> float:
        """A GPU's power when idle: `idle_w` when the entry gives it; a chip built from parts, its static and link
        power (chip_cost.work_energy); else 30 % of its TDP (a documented assumption; the simulator's energy runs
        between it and the TDP by utilization)."""
        if self.idle_w is not None:
            return self.idle_w
        if self.parts is not None:
            return work_energy(self)[0]
        return 0.3 * self.tdp_w

    @property
    def host_memory_per_gpu_bytes(self) -> float | None:
        """A GPU's share of its node's host memory for a KV tier, HOST_MEMORY_RESERVE_BYTES kept free (None: the
        node's memory is not known)."""
        node = self.interconnect.host_memory_bytes_per_node
        return None if node is None else max(node - HOST_MEMORY_RESERVE_BYTES, 0.0) / self.interconnect.gpus_per_node

    def ridge_flops_per_byte(self, dtype: str) -> float:
        """The roofline's ridge at compute dtype `dtype`: its dense peak FLOP/s over memory bytes/s, the arithmetic
        intensity above which a kernel is compute-bound (the one definition: `estimate`, perf/dllm.py, scenarios)."""
        return self.peak(dtype) / self.memory_bandwidth_bytes_per_s


# host memory a KV tier leaves free on a node: SGLang's HiCache refuses a host pool beyond the available memory less
# 10 GiB (mem_cache/memory_pool_host.py: "preserve at least 10GB for other usage", HICACHE_HOST_MEMORY_RESERVE_BYTES)
HOST_MEMORY_RESERVE_BYTES = 10 * 2**30


# A user's chip that runs on its kind's efficiency defaults (build_hardware), said beside its predictions
DEFAULTS_NOTE = ("no `efficiency:` block: runs on the {kind} class defaults of specs/data/efficiency.yaml, not a "
                 "catalog chip's fitted values (`phasewise hardware KEY --yaml` writes a catalog chip with its own)")

# Floors below which a figure is a unit slip, not a chip (3.35 for 3.35 TB/s, 1.776 for 1.776 GHz, 64 for 64 GB):
# at or below the Intel 8086 (1978; Intel's 8086 datasheet: a 5 MHz clock, a 20-bit address bus reaching 1 MiB, a
# 16-bit bus cycle of 4 clocks: 2.5 MB/s; no floating point, its 8087 coprocessor some 50 kFLOP/s), which no LLM
# runs on. The ceiling on memory: 1e18 bytes (an exabyte), ~800x the most memory attached to one accelerator
# (Cerebras CS-3 with MemoryX: up to 1.2 PB, Cerebras' CS-3 announcement, March 2024).
_FIGURE_RANGES = {  # field path: (floor, ceiling, unit, an example of the unit slip)
    "memory_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "3.35 TB/s is 3.35e12"),
    "interconnect.intra_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "450 GB/s is 450e9"),
    "interconnect.inter_node_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "50 GB/s is 50e9"),
    "interconnect.pcie_bandwidth_bytes_per_s": (1e6, math.inf, "bytes/s", "64 GB/s is 64e9"),
    "memory_capacity_bytes": (2**20, 1e18, "bytes", "80 GB is 80e9"),
    "parts.memory.capacity_bytes": (2**20, 1e18, "bytes", "64 GB is 64e9"),
    "parts.compute.clock_hz": (1e6, math.inf, "Hz", "1.776 GHz is 1.776e9"),
    "vector_flops": (1e6, math.inf, "FLOP/s", "67 TFLOP/s is 67e12"),
    "peak_flops.*": (1e6, math.inf, "FLOP/s", "989 TFLOP/s is 989e12"),  # each dtype's; 0: no such path
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
        limits = _FIGURE_RANGES.get("peak_flops.*" if field.startswith("peak_flops.") else field)
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


def build_hardware(key: str, entry: dict[str, Any], where: str, catalog: bool = False) -> HardwareSpec:
    """Validate one spec-sheet entry, filling efficiencies from its kind's default where absent; a `catalog` entry
    takes its key's fitted values (efficiency.yaml `hardware:`) over those, a user's entry never (whatever its key:
    one named h100-sxm is not the catalog's H100). A user's entry without an `efficiency:` block says, in its caveat,
    that it runs on its kind's defaults."""
    eff_data = packaged("efficiency.yaml")
    entry = dict(entry)
    kind = entry.get("kind", "gpu")
    defaults = eff_data["defaults"].get(kind) if isinstance(kind, str) else None
    if defaults is None:
        raise PhasewiseError(f"{where}: kind {kind!r} is not one of {', '.join(eff_data['defaults'])}")
    for field in ("efficiency", "peak_flops"):  # mappings: a number or a list there is refused by name
        if entry.get(field) is not None and not isinstance(entry[field], dict):
            raise PhasewiseError(f"{where}: {field} must be a mapping of "
                                 f"{'dtype: FLOP/s' if field == 'peak_flops' else 'constant: value'} "
                                 f"(got {entry[field]!r})")
    check_figures(entry, where)
    eff = {k: v for k, v in defaults.items() if not k.startswith("source")}
    if catalog:
        eff.update({k: v for k, v in (eff_data["hardware"].get(key) or {}).items() if k != "sources"})
    elif entry.get("efficiency") is None and isinstance(entry.get("caveat") or "", str):  # else: refused below
        entry["caveat"] = " ".join(filter(None, (entry.get("caveat"), DEFAULTS_NOTE.format(kind=kind))))
    eff.update(entry.pop("efficiency", None) or {})
    entry.pop("efficiency_sources", None)
    entry.pop("aliases", None)  # other names for a catalog entry; used only by load_hardware
    if entry.get("parts") is not None:
        entry = fill_from_parts(entry, where)
    else:
        refuse_no_figures(entry, where)
    bad = [d for d in (entry.get("peak_flops") or {}) if d not in PEAK_DTYPES]
    if bad:
        raise PhasewiseError(
            f"{where}: peak_flops.{bad[0]} is not a known dtype (allowed: {', '.join(PEAK_DTYPES)})"
        )
    try:
        return HardwareSpec(key=key, efficiency=eff, **entry)
    except ValidationError as exc:
        raise spec_message(where, exc, HardwareSpec) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None


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


def chip_caveats(chips) -> dict[str, str]:
    """{chip: its entry's caveat} for the chips named (catalog keys, aliases or files) whose entry has one, each once."""
    caveats = {chip: load_hardware(chip).caveat for chip in dict.fromkeys(chips)}  # each chip loaded once
    return {chip: caveat for chip, caveat in caveats.items() if caveat}


def hardware_names() -> list[str]:
    return list(packaged("hardware_specs.yaml")["hardware"])


def parts_chips() -> list[str]:
    """The catalog chips built from parts (the ones a hardware cost can price)."""
    return [key for key, entry in packaged("hardware_specs.yaml")["hardware"].items() if entry.get("parts")]


def catalog_key(name: str) -> str | None:
    """The catalog key a name or one of an entry's `aliases:` refers to (case-insensitive); keys win."""
    catalog = packaged("hardware_specs.yaml")["hardware"]
    names = {str(alias).lower(): key for key, entry in catalog.items() for alias in entry.get("aliases") or []}
    names.update({key.lower(): key for key in catalog})
    return names.get(name.lower())


def load_hardware(name_or_path: str) -> HardwareSpec:
    """A catalog chip by key or alias (case-insensitive), or a YAML file: one entry or `hardware: {key: entry}`."""
    if looks_like_path(name_or_path):
        data = read_user_file(name_or_path, "hardware")
        if isinstance(data.get("hardware"), dict):
            refuse_beside(data, "hardware", f"hardware file '{name_or_path}'")
            if len(data["hardware"]) != 1:
                raise PhasewiseError(
                    f"hardware file '{name_or_path}' must hold exactly one entry under 'hardware:' "
                    f"(found {len(data['hardware'])})"
                )
            key, entry = next(iter(data["hardware"].items()))
        else:
            key, entry = str(data.get("key") or data.get("name") or name_or_path), data
            entry = {k: v for k, v in entry.items() if k != "key"}
        if not isinstance(entry, dict):
            raise PhasewiseError(f"hardware file '{name_or_path}': the entry must be a mapping")
        return build_hardware(str(key), entry, f"hardware file '{name_or_path}'")
    catalog = packaged("hardware_specs.yaml")["hardware"]
    key = catalog_key(name_or_path)
    if key is None:
        raise unknown_name("hardware", name_or_path, catalog)
    return build_hardware(key, catalog[key], f"hardware '{key}'", catalog=True)


def catalog_entry_yaml(name: str) -> dict[str, Any]:
    """A catalog chip as a user's hardware file holds it (`hardware: {key: entry}`), its efficiencies resolved into
    an `efficiency:` block (its kind's defaults, then its fitted values) with their sources under
    `efficiency_sources:`: that file gives the catalog chip's figures exactly, and is the one to edit for a variant."""
    key = catalog_key(name)
    catalog = packaged("hardware_specs.yaml")["hardware"]
    if looks_like_path(name):
        raise PhasewiseError(f"hardware '{name}' is a file: only a catalog chip is written as one")
    if key is None:
        raise unknown_name("hardware", name, catalog)
    eff_data = packaged("efficiency.yaml")
    entry = {k: v for k, v in catalog[key].items() if k not in ("aliases", "efficiency", "efficiency_sources")}
    defaults = eff_data["defaults"][entry.get("kind", "gpu")]
    fitted = eff_data["hardware"].get(key) or {}
    efficiency = {k: v for k, v in defaults.items() if k != "sources"}
    efficiency.update({k: v for k, v in fitted.items() if k != "sources"})
    efficiency.update(catalog[key].get("efficiency") or {})
    sources = {**(defaults.get("sources") or {}), **(fitted.get("sources") or {}),
               **(catalog[key].get("efficiency_sources") or {})}
    # a copy: the caller may edit it (a variant) without editing the packaged catalog every later load reads
    return copy.deepcopy({"hardware": {key: {**entry, "efficiency": efficiency, "efficiency_sources": sources}}})


def hardware_list(flag: str, value: str) -> list[str]:
    """The chips of a comma-separated `flag` (--hardware A,B,C), each named once: two entries naming one chip (a
    catalog key and its alias or another case, or one file by two paths) are a one-line error."""
    chips = name_list(flag, value)
    seen: dict[str, str] = {}
    for chip in chips:
        identity = chip_identity(chip)
        if identity in seen:
            raise PhasewiseError(f"{flag} names one chip twice: {seen[identity]} and {chip}")
        seen[identity] = chip
    return chips


def chip_identity(chip: str) -> str:
    """What a chip name stands for: its catalog key (any alias or case), or its file's resolved path."""
    return str(Path(chip).resolve()) if looks_like_path(chip) else catalog_key(chip) or chip


def chips_apart(p_name: str, d_name: str, sides: tuple[str, str] = ("prefill", "decode")) -> str | None:
    """Why prefill and decode instances (or the two `sides` named, e.g. encoders and the instances they feed) cannot
    share a node's NVLink or PCIe (their chips differ: two machines), or None; sim/deployment.py phases_apart (the
    prefill / decode rule of plan, `simulate --arch disagg` and deployment files, which adds one node's GPU count)
    and a deployment's other links (two priority pools, encoders) apply it."""
    if chip_identity(p_name) != chip_identity(d_name):
        return f"with {sides[0]} on {p_name} and {sides[1]} on {d_name} (two machines)"
    return None
