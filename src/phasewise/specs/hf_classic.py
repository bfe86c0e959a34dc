"""Decoder families with their own config.json field names: OPT (Meta, 2022), BLOOM (BigScience, 2022) and
AllenAI's own OLMo configs (model_type hf_olmo, the ai2-olmo package's; LLaDA's follow them: d_model, n_heads,
n_kv_heads, n_layers, mlp_hidden_size). transformers' OLMo (model_type olmo: OlmoConfig's hidden_size,
num_attention_heads, ...) is Llama-style (specs/hf_llama_style.py)."""

from __future__ import annotations

from typing import Any

from phasewise.specs.hf_layers import GATED_ACTS, first_field, require_field
from phasewise.specs.model import ModelSpec


def opt_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    hidden = int(require_field(cfg, where, "hidden_size"))
    heads = int(require_field(cfg, where, "num_attention_heads"))
    return ModelSpec(
        name=name,
        model_type="opt",
        num_layers=int(require_field(cfg, where, "num_hidden_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=int(require_field(cfg, where, "ffn_dim")),
        vocab_size=int(require_field(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        mlp_gated=False,
        max_position_embeddings=int(first_field(cfg, "max_position_embeddings", default=0)),
        norm="layer",
    )


def bloom_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    hidden = int(require_field(cfg, where, "hidden_size", "n_embed"))
    heads = int(require_field(cfg, where, "n_head", "num_attention_heads"))
    return ModelSpec(
        name=name,
        model_type="bloom",
        num_layers=int(require_field(cfg, where, "n_layer", "num_hidden_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=4 * hidden,
        vocab_size=int(require_field(cfg, where, "vocab_size")),
        tie_embeddings=True,
        mlp_gated=False,
        norm="layer",
    )


def olmo_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """AllenAI's OLMo names (hf_olmo; LLaDA): d_model, n_heads, n_kv_heads, n_layers, mlp_hidden_size (or mlp_ratio x
    d_model) wide ff_proj."""
    hidden = int(require_field(cfg, where, "d_model"))
    heads = int(require_field(cfg, where, "n_heads"))
    mt = str(cfg.get("model_type", "hf_olmo")).lower()
    ff_proj = first_field(cfg, "mlp_hidden_size")
    if ff_proj is None:
        ff_proj = int(require_field(cfg, where, "mlp_ratio")) * hidden
    act = str(first_field(cfg, "activation_type", default="swiglu")).lower()
    # OLMo's SwiGLU splits its fused ff_proj output into value and gate halves (allenai/OLMo olmo/model.py SwiGLU:
    # x.chunk(2), output_multiplier 0.5; ff_out reads output_multiplier x the width); LLaDA's silu block has its
    # own up_proj beside ff_proj (output_multiplier 1.0)
    inter = int(ff_proj) // 2 if act == "swiglu" else int(ff_proj)
    return ModelSpec(
        name=name,
        model_type=mt,
        num_layers=int(require_field(cfg, where, "n_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(first_field(cfg, "n_kv_heads", "effective_n_kv_heads", default=heads)),
        head_dim=hidden // heads,
        intermediate_size=int(inter),
        vocab_size=int(first_field(cfg, "embedding_size", "vocab_size")),
        tie_embeddings=bool(cfg.get("weight_tying", False)),
        mlp_gated=act in GATED_ACTS,
        causal=mt != "llada" and not cfg.get("bidirectional", False),
        max_position_embeddings=int(first_field(cfg, "max_sequence_length", default=0)),
    )


# --- catalog --------------------------------------------------------------------------------------
