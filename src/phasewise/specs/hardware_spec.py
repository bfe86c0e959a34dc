"""The hardware spec: a chip's spec-sheet figures (HardwareSpec), its interconnect (Interconnect) and the named
efficiencies the cost model applies (Efficiency), each validated as pydantic models; specs/hardware.py builds one
from a catalog or user entry."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from phasewise.errors import PhasewiseError
from phasewise.specs.catalog import packaged
from phasewise.specs.chip_cost import work_energy
from phasewise.specs.parts import COMPUTE_DTYPES, ChipParts
from phasewise.specs.substrates import Substrate, check_dram_readers, check_unique_names

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
    def _parts_tile_their_gemms(self) -> HardwareSpec:
        """A chip from parts: each GEMM's efficiency is how it tiles onto the arrays (perf/tiling.py) times
        gemm_efficiency_max, so a GEMM curve or half rows of its own would be read by nothing: refused, but for the
        class default `phasewise hardware KEY --yaml` writes (the kind's, efficiency.yaml)."""
        if self.parts is None:
            return self
        why = ("a chip from parts takes its GEMM efficiency from how each GEMM tiles onto parts.compute's arrays "
               "(perf/tiling.py) times efficiency.gemm_efficiency_max")
        if self.efficiency.gemm_efficiency_curve:
            raise ValueError(f"efficiency.gemm_efficiency_curve is not used: {why}; remove it")
        default = packaged("efficiency.yaml")["defaults"][self.kind]["gemm_half_rows"]
        if self.efficiency.gemm_half_rows != default:
            raise ValueError(f"efficiency.gemm_half_rows {self.efficiency.gemm_half_rows:g} is not used: {why}; remove "
                             f"it (or keep the {self.kind} class default {default:g})")
        return self

    @model_validator(mode="after")
    def _substrates_within_the_memory(self) -> HardwareSpec:
        check_dram_readers(self.substrates, self.memory_bandwidth_bytes_per_s)
        return self

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
