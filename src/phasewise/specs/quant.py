"""Quantization schemes: the bytes a weight, activation and KV element cost, and the tensor path used."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasewise.errors import PhasewiseError, pydantic_message, unknown_name
from phasewise.specs.catalog import packaged


class GemmKernel(BaseModel):
    """How a scheme's GEMM kernel expands its stored weights inside the main loop (perf/quant_kernels.py).

    Each thread block dequantizes the weight tile it multiplies, so the CUDA-core work is
    weights x ceil(rows / tile_rows) x the scheme's dequant_ops_per_weight. `pipelined`: warp-specialized
    producer warps dequantize the next tile while the consumer warps' MMAs run on this one (Hopper
    TMA + wgmma, FireQ); otherwise the same warps dequantize then multiply (QServe's main loop)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dequant: str  # the dequantization path, in words (lut-int4-fp8, int4-int8-mainloop)
    pipelined: bool
    # async: the chip's native tensor-core instructions (wgmma on Hopper); sync: warp-level mma.sync, which
    # reaches the hardware's sync_mma_efficiency of its GEMM efficiency (Efficiency, efficiency.yaml)
    mma: Literal["async", "sync"] = "async"
    tile_rows: int = Field(gt=0)


class AttentionKernel(BaseModel):
    """A scheme's prefill attention kernel (perf/quant_kernels.py): the tensor path its q.k and p.v run on,
    the CUDA-core ops that expand one cached K/V element per query tile of `tile_rows` rows, and whether a
    pipeline of `pipeline_stages` >= 3 (FlashAttention-3: load / dequant / MMA) hides that expansion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    q_dtype: str
    dequant_ops_per_element: float = Field(ge=0)
    tile_rows: int = Field(gt=0)
    pipeline_stages: int = Field(ge=1)


class ComputeFallback(BaseModel):
    """How kernels run a scheme on a chip without its tensor path (QuantScheme.on): the stored weights are expanded
    inside the GEMM main loop to `compute_dtype`, at `dequant_ops_per_weight` CUDA-core ops per weight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    compute_dtype: str
    dequant_ops_per_weight: float = Field(ge=0)
    kernel_half_rows: float | None = Field(default=None, gt=0)  # as QuantScheme's, for the expanding kernels
    source: str


class QuantScheme(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    weight_dtype: str
    weight_group_size: int = Field(default=0, ge=0)
    scale_bytes: float = Field(default=2.0, ge=0)
    zero_point_bytes: float = Field(default=0.0, ge=0)
    compute_dtype: str
    activation_dtype: str
    kv_dtype: str
    # how a DeepSeek-sparse-attention model's FP8 latent cache is stored (perf/kv_geometry.py cached_kv_bytes_per_token):
    # flashmla, FlashMLA's sparse layout (FP32 scales, BF16 RoPE key; vLLM, SGLang), or plain per-tensor FP8
    # (TensorRT-LLM); the serving engine sets it (specs/engine_kv.py engine_kv)
    sparse_kv_layout: Literal["flashmla", "plain"] = "flashmla"
    dequant_ops_per_weight: float = Field(default=0.0, ge=0)
    gemm_kernel: GemmKernel | None = None  # None: the generic dequant term of perf/cost.py
    # rows at which the scheme's own (weight-expanding) GEMM kernels reach half their tensor efficiency, where that
    # is fewer than the chip's gemm_half_rows: kernels that pad a small batch to their MMA tile (Marlin's m16)
    # rather than the chip's cuBLAS-fitted ramp. None: the chip's
    kernel_half_rows: float | None = Field(default=None, gt=0)
    attention_kernel: AttentionKernel | None = None  # None: the generic AttentionCost prefill kernel
    # where a chip has no `compute_dtype` tensor path (or no `tensor_path`, where the kernels need another: MXFP4 x
    # MXFP8 runs at the FP8 rate on Blackwell's FP4-class MMA): how kernels run the stored weights instead (None: an
    # error)
    without_compute_path: ComputeFallback | None = None
    tensor_path: str | None = None
    # a block-scaled FP4 format's name where its scales ride the fp4 tensor path (NVFP4: E4M3 per 16; MXFP4: E8M0 per
    # 32); a chip's fp4 path takes only the formats its `fp4_formats` lists (specs/hardware_spec.py)
    fp4_format: Literal["nvfp4", "mxfp4"] | None = None
    # the routed experts' own scheme (a scheme name), the rest of the model in this one (DeepSeek-V4: FP8 blocks
    # beside MXFP4 experts); None: the experts in this scheme too
    experts: str | None = None

    def experts_scheme(self) -> QuantScheme:
        """The scheme the routed experts' weights are stored and multiplied in: `experts`, with this scheme's KV
        dtype, or this scheme itself."""
        if self.experts is None:
            return self
        return load_quant(self.experts, self.kv_dtype)

    @property
    def weight_bytes_per_param(self) -> float:
        """Storage per linear-layer weight including group scales and zero points."""
        b = dtype_bytes(self.weight_dtype)
        if self.weight_group_size:
            b += (self.scale_bytes + self.zero_point_bytes) / self.weight_group_size
        return b

    @property
    def activation_bytes(self) -> float:
        return dtype_bytes(self.activation_dtype)

    @property
    def kv_bytes_per_element(self) -> float:
        return kv_bytes_per_element(self.kv_dtype)

    def path_refusal(self, hardware) -> str | None:
        """Why `hardware` cannot run this scheme (no tensor path for it as the chip runs it: on(), HardwareSpec.peak),
        one line; None where it can."""
        try:
            hardware.peak(self.on(hardware).compute_dtype)
        except PhasewiseError as exc:
            return str(exc)
        return None

    def on(self, hardware) -> QuantScheme:
        """The scheme as `hardware` (a HardwareSpec) runs it: itself where the chip has its tensor path (for an FP4
        format, one that takes its block scales: HardwareSpec.fp4_formats); where it has not and the scheme says how
        kernels expand its weights (without_compute_path), that path, the weights stored as they are; otherwise
        itself (HardwareSpec.peak then names the missing path in one line), or for an FP4 format the chip's path
        does not take a one-line error naming the formats it does. The path is `tensor_path` where the scheme names
        one, else compute_dtype's."""
        fallback = self.without_compute_path
        path = self.tensor_path or self.compute_dtype
        has_path = hardware.peak_flops.get(path, 0.0) > 0
        other_format = has_path and path == "fp4" and self.fp4_format not in (None, *hardware.fp4_formats)
        if other_format and fallback is None:
            raise PhasewiseError(
                f"hardware '{hardware.key}' has an fp4 tensor path for {', '.join(hardware.fp4_formats)} only, not "
                f"{self.fp4_format} (its block scales are another format; engines run it there only by emulation, "
                f"not costed); choose another --precision ({', '.join(hardware.fp4_formats)}, fp8)")
        if fallback is None or (has_path and not other_format):
            return self
        return self.model_copy(update={"compute_dtype": fallback.compute_dtype, "without_compute_path": None,
                                       "dequant_ops_per_weight": fallback.dequant_ops_per_weight,
                                       "kernel_half_rows": fallback.kernel_half_rows, "tensor_path": None})

    def with_kv(self, kv_dtype: str | None) -> QuantScheme:
        if kv_dtype is None:
            return self
        kv_bytes_per_element(kv_dtype)  # validates
        return self.model_copy(update={"kv_dtype": kv_dtype})


def dtype_bytes(dtype: str) -> float:
    table = packaged("quant.yaml")["dtype_bytes"]
    if dtype not in table:
        raise PhasewiseError(f"unknown dtype '{dtype}' (allowed: {', '.join(table)})")
    return float(table[dtype])


def kv_bytes_per_element(kv_dtype: str) -> float:
    data = packaged("quant.yaml")
    allowed = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
    if kv_dtype not in allowed:
        raise PhasewiseError(f"--kv-dtype '{kv_dtype}' is not supported (allowed: {', '.join(allowed)})")
    b = float(data["dtype_bytes"][kv_dtype])
    if kv_dtype == "int4":
        b += data["kv_scale_bytes"] / data["kv_group_size"]
    return b


def quant_names() -> list[str]:
    return list(packaged("quant.yaml")["schemes"])


def load_quant(name: str, kv_dtype: str | None = None) -> QuantScheme:
    schemes = packaged("quant.yaml")["schemes"]
    key = name.lower()
    if key not in schemes:
        raise unknown_name("precision", name, schemes)
    try:
        scheme = QuantScheme(name=key, **schemes[key])
    except ValidationError as exc:
        raise pydantic_message(f"precision '{name}'", exc) from None
    return scheme.with_kv(kv_dtype)
