"""Quantization schemes: the bytes a weight, activation and KV element cost, and the tensor path used."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasewise.errors import PhasewiseError, pydantic_message, unknown_name
from phasewise.specs.catalog import packaged


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
    dequant_ops_per_weight: float = Field(default=0.0, ge=0)

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
