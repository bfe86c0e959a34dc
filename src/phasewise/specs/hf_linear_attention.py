"""The linear-attention layers of hybrid families a config.json describes, as ModelSpec fields (specs/hf_llama_style.py's
Llama-style parser reads the rest): Qwen3-Next's and Qwen3.5's gated DeltaNet, Kimi Linear's KDA."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import is_int_list, linear_pattern, positive, require_field


def gated_deltanet_fields(cfg: dict[str, Any], where: str, layers: int, layer_types: list) -> dict[str, Any]:
    """A gated-DeltaNet hybrid's fields (transformers Qwen3NextConfig / Qwen3_5TextConfig): its linear-attention
    layers from layer_types, else every layer but each full_attention_interval-th (the configs' own default rule);
    the softmax layers' output gate (attn_output_gate; Qwen3-Next's attention always gates)."""
    if layer_types:
        linear = [i for i, kind in enumerate(layer_types) if kind == "linear_attention"]
    else:
        interval = positive(require_field(cfg, where, "full_attention_interval"), where, "full_attention_interval")
        linear = [i for i in range(layers) if (i + 1) % interval]
    return dict(
        attention_output_gate=bool(cfg.get("attn_output_gate", True)),
        linear_attention_layers=len(linear), layer_pattern=linear_pattern(linear, layers),
        linear_key_heads=int(require_field(cfg, where, "linear_num_key_heads")),
        linear_value_heads=int(require_field(cfg, where, "linear_num_value_heads")),
        linear_key_head_dim=int(require_field(cfg, where, "linear_key_head_dim")),
        linear_value_head_dim=int(require_field(cfg, where, "linear_value_head_dim")),
        linear_conv_kernel=int(require_field(cfg, where, "linear_conv_kernel_dim")),
    )


def kda_fields(cfg: dict[str, Any], where: str, layers: int) -> dict[str, Any]:
    """Kimi Linear's KDA layers (linear_attn_config: kda_layers and full_attn_layers, 1-based, covering every layer
    once between them; num_heads heads of head_dim for q, k and v; a short conv of short_conv_kernel_size taps)."""
    linear = cfg.get("linear_attn_config")
    if not isinstance(linear, dict):
        raise PhasewiseError(f"{where}: missing field linear_attn_config (kda_layers, full_attn_layers, num_heads, "
                             "head_dim, short_conv_kernel_size)")
    named = {}
    for field in ("kda_layers", "full_attn_layers"):
        value = linear.get(field)
        if not is_int_list(value):
            raise PhasewiseError(f"{where}: linear_attn_config.{field} must be a list of layer numbers (1-based)")
        named[field] = value
    kda, full = named["kda_layers"], named["full_attn_layers"]
    if sorted(kda + full) != list(range(1, layers + 1)):
        raise PhasewiseError(f"{where}: linear_attn_config.kda_layers and full_attn_layers must name each of the "
                             f"{layers} layers (1..{layers}) once between them")
    sizes = {}
    for field in ("num_heads", "head_dim", "short_conv_kernel_size"):
        sizes[field] = positive(linear.get(field), where, f"linear_attn_config.{field}")
    return dict(linear_attention_layers=len(kda), layer_pattern=linear_pattern((i - 1 for i in kda), layers),
                linear_key_heads=sizes["num_heads"],
                linear_value_heads=sizes["num_heads"],
                linear_head_fields=("linear_attn_config.num_heads", "linear_attn_config.num_heads"),
                linear_key_head_dim=sizes["head_dim"],
                linear_value_head_dim=sizes["head_dim"], linear_conv_kernel=sizes["short_conv_kernel_size"],
                linear_recurrence="kda")
