"""The recurrent layers of hybrid families a config.json describes, as ModelSpec fields (specs/hf_llama_style.py's
Llama-style parser reads the rest: attention, MLPs, experts): Jamba's Mamba-1 layers, MiniMax-Text-01 / M1's
lightning attention, LFM2's short convolutions; and Falcon-H1's whole spec (attention and Mamba-2 side by side)."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import is_int_list, linear_pattern, positive
from phasewise.specs.model import ModelSpec

# Jamba (ai21labs; transformers models/jamba/configuration_jamba.py JambaConfig, vLLM models/jamba.py): layer i has
# softmax attention when i % attn_layer_period == attn_layer_offset, else a Mamba-1 mixer; its MLP is a MoE of
# num_experts (top num_experts_per_tok, no shared expert) when i % expert_layer_period == expert_layer_offset, else
# a dense SwiGLU MLP; every expert is intermediate_size wide as the dense MLP is. Its attention has no positional
# encoding. The fields' class defaults (JambaConfig.__init__), which a config.json may leave out
JAMBA_DEFAULTS = dict(attn_layer_period=8, attn_layer_offset=4, expert_layer_period=2, expert_layer_offset=1,
                      num_experts=16, num_experts_per_tok=2, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2,
                      mamba_dt_rank="auto", tie_word_embeddings=False)
# MiniMax-Text-01 and MiniMax-M1 (vLLM models/minimax_text_01.py, which serves MiniMaxText01ForCausalLM,
# MiniMaxM1ForCausalLM and transformers' MiniMaxForCausalLM): the model_type of the M1 checkpoints' config.json
# (minimax_m1), of the Text-01 remote code's config class (MiniMaxText01) and of public test fixtures
# (minimax_text_01), and transformers' own (minimax, whose configs list layer_types)
LIGHTNING_TYPES = ("minimax_m1", "minimaxtext01", "minimax_text_01", "minimax")
# vLLM's lightning_attention kernel runs blocks of 256 tokens whatever block_size the config states (lightning_attn.py
# BLOCK = 256; transformers' MiniMaxConfig block_size defaults to 256 too)
LIGHTNING_BLOCK_TOKENS = 256


def _period_layers(cfg: dict[str, Any], where: str, layers: int, kind: str) -> list[int]:
    """The layers Jamba's `kind` (attn or expert) period and offset pick."""
    period = positive(cfg.get(f"{kind}_layer_period"), where, f"{kind}_layer_period")
    offset = cfg.get(f"{kind}_layer_offset")
    if not (isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset < period):
        raise PhasewiseError(f"{where}: field {kind}_layer_offset must be an integer in 0..{period - 1} (below "
                             f"{kind}_layer_period; got {offset!r})")
    return [i for i in range(layers) if i % period == offset]


def jamba_moe_layers(cfg: dict[str, Any], where: str, layers: int) -> int:
    """Jamba's MoE layers: every expert_layer_period-th from expert_layer_offset (JambaConfig.layers_num_experts)."""
    return len(_period_layers(cfg, where, layers, "expert"))


def mamba1_fields(cfg: dict[str, Any], where: str, layers: int) -> dict[str, Any]:
    """Jamba's Mamba-1 layers (all but every attn_layer_period-th from attn_layer_offset; JambaConfig.
    layers_block_type): mamba_expand x hidden_size channels (d_inner) of mamba_d_state each, a conv of mamba_d_conv
    taps, dt through a rank of mamba_dt_rank ("auto": ceil(hidden_size / 16), as JambaConfig sets it)."""
    attention = _period_layers(cfg, where, layers, "attn")
    if not attention:
        raise PhasewiseError(f"{where}: attn_layer_period / attn_layer_offset leave none of the {layers} layers with "
                             "attention (a stack of Mamba layers only is not modelled)")
    hidden = positive(cfg.get("hidden_size"), where, "hidden_size")
    rank = cfg.get("mamba_dt_rank")
    rank = math.ceil(hidden / 16) if rank == "auto" else positive(rank, where, "mamba_dt_rank")
    return dict(linear_attention_layers=layers - len(attention),
                layer_pattern=linear_pattern(set(range(layers)) - set(attention), layers),
                linear_recurrence="mamba1", linear_key_heads=0,
                linear_value_heads=positive(cfg.get("mamba_expand"), where, "mamba_expand") * hidden,
                linear_head_fields=("", "mamba_expand x hidden_size"),
                linear_value_head_dim=1,
                linear_key_head_dim=positive(cfg.get("mamba_d_state"), where, "mamba_d_state"),
                linear_conv_kernel=positive(cfg.get("mamba_d_conv"), where, "mamba_d_conv"), linear_dt_rank=rank,
                attention_rope=False)


def lightning_fields(cfg: dict[str, Any], where: str, layers: int) -> dict[str, Any]:
    """MiniMax-Text-01 / M1's lightning-attention layers: those attn_type_list marks 0 (1: softmax attention), or
    layer_types names "linear_attention" (transformers' MiniMaxConfig); each with num_attention_heads heads of
    head_dim for q, k and v, the state head_dim x head_dim per head, no conv."""
    kinds = cfg.get("attn_type_list")
    if kinds is not None:
        if not is_int_list(kinds) or set(kinds) - {0, 1} or len(kinds) != layers:
            raise PhasewiseError(f"{where}: field attn_type_list must give each of the {layers} layers 0 (lightning) "
                                 f"or 1 (softmax attention)")
        linear = [i for i, kind in enumerate(kinds) if kind == 0]
    else:  # its kinds and length checked with every family's (hf_refusals.py refuse_unread_fields, hf_layers.py window_layers)
        named = cfg.get("layer_types")
        if not named:
            raise PhasewiseError(f"{where}: missing field attn_type_list or layer_types (which layers are lightning "
                                 "attention)")
        linear = [i for i, kind in enumerate(named) if kind == "linear_attention"]
    heads = positive(cfg.get("num_attention_heads"), where, "num_attention_heads")
    head_dim = cfg.get("head_dim")
    head_dim = positive(head_dim, where, "head_dim") if head_dim is not None else (
        positive(cfg.get("hidden_size"), where, "hidden_size") // heads)
    return dict(linear_attention_layers=len(linear), layer_pattern=linear_pattern(linear, layers),
                linear_recurrence="lightning", linear_key_heads=heads,
                linear_head_fields=("num_attention_heads", "num_attention_heads"),
                linear_value_heads=heads, linear_key_head_dim=head_dim, linear_value_head_dim=head_dim,
                linear_conv_kernel=0, linear_chunk_tokens=LIGHTNING_BLOCK_TOKENS)


# LFM2 (Liquid AI; transformers models/lfm2/configuration_lfm2.py Lfm2Config, vLLM models/lfm2.py): short-conv layers
# and GQA attention layers (layer_types "conv" / "full_attention", else full_attn_idxs, every layer by default), each
# with a SwiGLU MLP whose width Lfm2MLP derives from block_ff_dim (intermediate_size). LFM2-MoE (lfm2_moe,
# Lfm2MoeConfig): the same layers, the first num_dense_layers with a dense MLP of intermediate_size as it is, the
# others a MoE of num_experts (moe_intermediate_size wide, top num_experts_per_tok, no shared expert). The fields'
# class defaults
LFM2_TYPES = ("lfm2", "lfm2_moe")
LFM2_DEFAULTS = dict(conv_L_cache=3, block_multiple_of=256, block_ffn_dim_multiplier=1.0,
                     block_auto_adjust_ff_dim=True, tie_word_embeddings=True)
LFM2_MOE_DEFAULTS = dict(conv_L_cache=3, num_dense_layers=2, num_experts=32, num_experts_per_tok=4,
                         tie_word_embeddings=True)


def lfm2_config(cfg: dict[str, Any], where: str, mt: str, layers: int) -> dict[str, Any]:
    """LFM2's config as the Llama-style parser reads it: the MLP width Lfm2MLP builds (block_auto_adjust_ff_dim:
    int(2 x block_ff_dim / 3) times block_ffn_dim_multiplier, rounded up to block_multiple_of; LFM2-MoE's dense
    width as it is, its dense layers the first num_dense_layers), tie_embedding as tie_word_embeddings, layer_types
    from full_attn_idxs where the config lists none (`layers`: num_hidden_layers, checked by the caller)."""
    out = dict(cfg)
    width = positive(cfg.get("block_ff_dim", cfg.get("intermediate_size")), where, "block_ff_dim")
    if mt == "lfm2_moe":
        dense = cfg.get("num_dense_layers")
        if not (isinstance(dense, int) and not isinstance(dense, bool) and dense >= 0):
            raise PhasewiseError(f"{where}: field num_dense_layers must be a non-negative integer (got {dense!r})")
        out["first_k_dense_replace"] = dense
    elif cfg.get("block_auto_adjust_ff_dim"):
        width = int(2 * width / 3)
        multiplier = cfg.get("block_ffn_dim_multiplier")
        if multiplier is not None:
            if not isinstance(multiplier, (int, float)) or isinstance(multiplier, bool) or not multiplier > 0:
                raise PhasewiseError(f"{where}: field block_ffn_dim_multiplier must be a positive number (got "
                                     f"{multiplier!r})")
            multiple = positive(cfg.get("block_multiple_of"), where, "block_multiple_of")
            width = multiple * -(-int(multiplier * width) // multiple)
    out["intermediate_size"] = positive(width, where, "block_ff_dim (its MLP width)")
    if cfg.get("tie_embedding") is not None:
        out["tie_word_embeddings"] = bool(cfg["tie_embedding"])
    if not cfg.get("layer_types"):
        attention = cfg.get("full_attn_idxs")
        if attention is None:
            attention = list(range(layers))
        if not is_int_list(attention) or any(not 0 <= i < layers for i in attention):
            raise PhasewiseError(f"{where}: field full_attn_idxs must list layer indices in 0..{layers - 1}")
        attention = set(attention)
        out["layer_types"] = ["full_attention" if i in attention else "conv" for i in range(layers)]
    return out


def short_conv_fields(cfg: dict[str, Any], where: str, layer_types: list) -> dict[str, Any]:
    """LFM2's short-conv layers (layer_types "conv"): hidden_size channels, a conv of conv_L_cache taps."""
    conv = [i for i, kind in enumerate(layer_types) if kind == "conv"]
    if not conv:
        return {}
    return dict(linear_attention_layers=len(conv), layer_pattern=linear_pattern(conv, len(layer_types)),
                linear_recurrence="short_conv", linear_key_heads=0,
                linear_key_head_dim=0, linear_value_heads=positive(cfg.get("hidden_size"), where, "hidden_size"),
                linear_head_fields=("", "hidden_size"),
                linear_value_head_dim=1, linear_conv_kernel=positive(cfg.get("conv_L_cache"), where, "conv_L_cache"))


# FalconH1Config's defaults of the mixer's fields, which a config.json may leave out
FALCON_H1_DEFAULTS = dict(mamba_d_ssm=1024, mamba_n_heads=128, mamba_d_head="auto", mamba_n_groups=1,
                          mamba_d_state=256, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=256,
                          tie_word_embeddings=False)


def falcon_h1_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """Falcon-H1 (transformers models/falcon_h1/configuration_falcon_h1.py FalconH1Config, vLLM models/falcon_h1.py):
    every layer runs softmax attention and a Mamba-2 mixer side by side on the same normed input, their outputs
    summed, then a gated SiLU MLP. Costed as Nemotron-H's blocks are paired: each layer's attention with its MLP, its
    Mamba-2 mixer an MLP-free layer beside it (2 x num_hidden_layers layers; one TP all-reduce after each mixer and
    each MLP); num_hidden_layers stays its decoder layers (ModelSpec.decoder_layers: what pipeline stages split).
    The mixer: mamba_n_heads heads of mamba_d_head ("auto": its width over the heads) over mamba_d_ssm
    channels (else mamba_expand x hidden_size), mamba_n_groups groups sharing B and C of mamba_d_state, a conv of
    mamba_d_conv taps, chunks of mamba_chunk_size. The multipliers (attention_in_multiplier, ssm_multipliers, ...)
    scale activations and cost nothing."""
    for field in ("attn_layer_indices", "sliding_window"):  # attention in some layers only; windowed attention
        if cfg.get(field) is not None:
            raise PhasewiseError(f"{where}: field {field} is not modelled for model_type 'falcon_h1' (every layer is "
                                 "costed with full attention beside its Mamba-2 mixer)")
    if cfg.get("mamba_use_mlp") is False:
        raise PhasewiseError(f"{where}: field mamba_use_mlp false (layers without an MLP) is not modelled for "
                             "model_type 'falcon_h1'")
    layers = positive(cfg.get("num_hidden_layers"), where, "num_hidden_layers")
    hidden = positive(cfg.get("hidden_size"), where, "hidden_size")
    heads = positive(cfg.get("num_attention_heads"), where, "num_attention_heads")
    mamba_heads = positive(cfg.get("mamba_n_heads"), where, "mamba_n_heads")
    width = cfg.get("mamba_d_ssm")
    width = positive(width, where, "mamba_d_ssm") if width is not None else (
        positive(cfg.get("mamba_expand"), where, "mamba_expand") * hidden)
    head = cfg.get("mamba_d_head")
    head = width // mamba_heads if head == "auto" else positive(head, where, "mamba_d_head")
    if head * mamba_heads != width:
        raise PhasewiseError(f"{where}: mamba_n_heads ({mamba_heads}) x mamba_d_head ({head}) must be the mixer's "
                             f"width mamba_d_ssm ({width})")
    kv_heads = cfg.get("num_key_value_heads")
    return ModelSpec(
        name=name, model_type="falcon_h1", num_layers=2 * layers, num_hidden_layers=layers, hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=positive(kv_heads, where, "num_key_value_heads") if kv_heads is not None else heads,
        head_dim=positive(cfg.get("head_dim", hidden // heads), where, "head_dim"),
        intermediate_size=positive(cfg.get("intermediate_size"), where, "intermediate_size"),
        vocab_size=positive(cfg.get("vocab_size"), where, "vocab_size"),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), mlp_gated=True,
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 0),
        mlp_free_layers=layers, linear_attention_layers=layers, linear_recurrence="mamba2",
        linear_key_heads=positive(cfg.get("mamba_n_groups"), where, "mamba_n_groups"), linear_value_heads=mamba_heads,
        linear_head_fields=("mamba_n_groups", "mamba_n_heads"),
        linear_key_head_dim=positive(cfg.get("mamba_d_state"), where, "mamba_d_state"), linear_value_head_dim=head,
        linear_conv_kernel=positive(cfg.get("mamba_d_conv"), where, "mamba_d_conv"),
        linear_chunk_tokens=positive(cfg.get("mamba_chunk_size"), where, "mamba_chunk_size"))


# Bamba (IBM; transformers models/bamba/configuration_bamba.py BambaConfig, vLLM models/bamba.py): Granite 4.0-H's
# dense layers, a Mamba-2 or attention mixer (attention on the layers attn_layer_indices lists) and a gated MLP of
# intermediate_size in every layer. The mixer fields' class defaults
BAMBA_DEFAULTS = dict(mamba_n_heads=128, mamba_d_head="auto", mamba_n_groups=1, mamba_d_state=256, mamba_d_conv=4,
                      mamba_expand=2, mamba_chunk_size=256, tie_word_embeddings=False)


def bamba_config(cfg: dict[str, Any], where: str, layers: int) -> dict[str, Any]:
    """Bamba's config as the Granite 4.0-H parser reads it: layer_types from attn_layer_indices (every layer Mamba-2
    without them, as BambaConfig.layers_block_type), its MLP as the shared MLP of a layer without experts, RoPE."""
    attention = cfg.get("attn_layer_indices") or []
    if not is_int_list(attention) or any(not 0 <= i < layers for i in attention):
        raise PhasewiseError(f"{where}: field attn_layer_indices must list layer indices in 0..{layers - 1}")
    attention = set(attention)
    return {**cfg, "layer_types": ["attention" if i in attention else "mamba" for i in range(layers)],
            "shared_intermediate_size": positive(cfg.get("intermediate_size"), where, "intermediate_size"),
            "num_local_experts": 0, "position_embedding_type": "rope"}
