"""The recurrent layers of two hybrid families a config.json describes, as ModelSpec fields (specs/hf_config.py's
Llama-style parser reads the rest: attention, MLPs, experts): Jamba's Mamba-1 layers and MiniMax-Text-01 / M1's
lightning attention."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import is_int_list, positive

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
    return dict(linear_attention_layers=layers - len(attention), linear_recurrence="mamba1", linear_key_heads=0,
                linear_value_heads=positive(cfg.get("mamba_expand"), where, "mamba_expand") * hidden,
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
        linear = kinds.count(0)
    else:  # its kinds and length checked with every family's (hf_config.py, hf_layers.py window_layers)
        named = cfg.get("layer_types")
        if not named:
            raise PhasewiseError(f"{where}: missing field attn_type_list or layer_types (which layers are lightning "
                                 "attention)")
        linear = named.count("linear_attention")
    heads = positive(cfg.get("num_attention_heads"), where, "num_attention_heads")
    head_dim = cfg.get("head_dim")
    head_dim = positive(head_dim, where, "head_dim") if head_dim is not None else (
        positive(cfg.get("hidden_size"), where, "hidden_size") // heads)
    return dict(linear_attention_layers=linear, linear_recurrence="lightning", linear_key_heads=heads,
                linear_value_heads=heads, linear_key_head_dim=head_dim, linear_value_head_dim=head_dim,
                linear_conv_kernel=0, linear_chunk_tokens=LIGHTNING_BLOCK_TOKENS)
