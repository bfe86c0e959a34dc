"""GPT-2's lineage of decoders: GPT-2, GPT-J, GPT-NeoX (Pythia), GPT-BigCode (StarCoder) and Falcon, under their own
field names, as transformers 5.25's config classes read them (GPT2Config, GPTJConfig, GPTNeoXConfig,
GPTBigCodeConfig, FalconConfig) and vLLM's model files run them.

What they share: LayerNorm, a plain fc -> GELU -> fc MLP (4 x hidden wide unless the config says otherwise) and full
multi-head attention, or one K / V head (GPT-BigCode's and Falcon-7B's multi_query), or Falcon-40B / 180B's groups
(new_decoder_architecture, num_kv_heads). Positions: GPT-2 and GPT-BigCode learn them (no RoPE); GPT-J, GPT-NeoX
and Falcon rotate q and k (a part of each head for GPT-J's rotary_dim and GPT-NeoX's rotary_pct, costed as whole
heads), older Falcons may use ALiBi instead (no RoPE). Attention and MLP side by side off one input: GPT-J always,
GPT-NeoX with use_parallel_residual, Falcon with parallel_attn or new_decoder_architecture. Only Falcon's vLLM
layer sums the two before one all-reduce under TP (falcon.py: reduce_row_parallel_results is false for either flag;
gpt_j.py and gpt_neox.py reduce each RowParallelLinear): `ModelSpec.parallel_block_reduce`.

Not costed: learned position tables' weights (GPT-2's 1,024 x 768: 0.6 % of its 124 M), biases, GPT-J's single norm
a layer (two are charged)."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import positive
from phasewise.specs.model import ModelSpec

# Falcon's first checkpoints' remote-code names, which vLLM reads as Falcon (RWConfig: n_head, n_layer, n_head_kv)
FALCON_TYPES = ("falcon", "refinedweb", "refinedwebmodel")
GPT_TYPES = ("gpt2", "gptj", "gpt_neox", "gpt_bigcode") + FALCON_TYPES
# learned absolute positions: no rotary embedding on q and k
LEARNED_POSITIONS = ("gpt2", "gpt_bigcode")
# tie_word_embeddings when the config does not say (the config classes' defaults)
GPT_TIED_BY_DEFAULT = ("gpt2", "gpt_bigcode", *FALCON_TYPES)
# Falcon's context where its config.json names none (tiiuae/falcon-7b's does not): FalconConfig's
# max_position_embeddings default (transformers models/falcon/configuration_falcon.py: "defaults to 2048 ...
# Pretrained Falcon models with RoPE support up to 2048 tokens"); vLLM assumes the same 2,048 for a config without
# one (RefinedWeb's RWConfig), config/model.py _get_and_verify_max_len
FALCON_DEFAULT_CONTEXT = 2048


def _field(cfg: dict[str, Any], where: str, *keys: str, default: int | None = None) -> int:
    """The first of `keys` the config sets, a positive integer; `default` when none is set (None: required)."""
    for key in keys:
        if cfg.get(key) is not None:
            return positive(cfg[key], where, key)
    if default is None:
        raise PhasewiseError(f"{where}: missing field {' or '.join(keys)}")
    return default


def _flag(cfg: dict[str, Any], where: str, key: str, default: bool) -> bool:
    """A true / false field (`default` when absent or null); anything else is refused by name."""
    value = cfg.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise PhasewiseError(f"{where}: field {key} must be true or false (got {value!r})")
    return value


def _refuse_foreign_fields(cfg: dict[str, Any], where: str, mt: str, derived: dict[str, int]) -> None:
    """Llama-style fields these families do not read: accepted where they restate what the family's own fields give
    (a transformers re-save writes FalconConfig's num_key_value_heads), refused by name where they differ, as are
    experts and windows, which no member has."""
    for key, value in derived.items():
        if cfg.get(key) is not None and cfg[key] != value:
            raise PhasewiseError(f"{where}: field {key} ({cfg[key]!r}) is not read for model_type '{mt}', whose own "
                                 f"fields give {value}")
    for key in ("num_local_experts", "num_experts", "n_routed_experts", "sliding_window"):
        if cfg.get(key):
            raise PhasewiseError(f"{where}: field {key} is not modelled for model_type '{mt}' (its layers would be "
                                 "costed wrongly)")


def gpt_spec(name: str, cfg: dict[str, Any], where: str, mt: str) -> ModelSpec:
    """A ModelSpec of a GPT-2-lineage config; a shape field missing or not a positive integer is an error."""
    falcon = mt in FALCON_TYPES
    hidden = _field(cfg, where, "n_embd", "hidden_size", "n_embed")
    heads = _field(cfg, where, "n_head", "num_attention_heads")
    if hidden % heads:
        raise PhasewiseError(f"{where}: hidden size {hidden} is not a multiple of its {heads} attention heads")
    # the MLP's width: GPT-NeoX names it, Falcon's ffn_hidden_size and the n_inner of the others default to 4 x hidden
    inner = (_field(cfg, where, "intermediate_size") if mt == "gpt_neox"
             else _field(cfg, where, "ffn_hidden_size" if falcon else "n_inner", default=4 * hidden))
    # Falcon's K / V heads: grouped with new_decoder_architecture (Falcon-40B / 180B), else one (multi_query, the
    # default) or one a query head. RefinedWeb configs as vLLM's RWConfig reads them: n_head_kv, parallel_attn off
    # unless set, and the new architecture also at hidden size 8,192 (its "hack for falcon-40b")
    refined = mt in FALCON_TYPES[1:]
    new_arch = falcon and (_flag(cfg, where, "new_decoder_architecture", False) or (refined and hidden == 8192))
    if new_arch:
        kv_heads = _field(cfg, where, "num_kv_heads", "n_head_kv", default=1 if refined else heads)
    elif mt == "gpt_bigcode" or falcon:  # multi_query defaults to true in GPTBigCodeConfig, FalconConfig, RWConfig
        kv_heads = 1 if _flag(cfg, where, "multi_query", True) else heads
    else:
        kv_heads = heads
    if heads % kv_heads:
        raise PhasewiseError(f"{where}: {kv_heads} K / V heads do not divide the {heads} attention heads")
    _refuse_foreign_fields(cfg, where, mt, {"intermediate_size": inner, "num_key_value_heads": kv_heads,
                                            "head_dim": hidden // heads})
    alibi = falcon and _flag(cfg, where, "alibi", False)
    parallel = falcon and (new_arch or _flag(cfg, where, "parallel_attn", not refined))
    return ModelSpec(
        name=name,
        model_type="falcon" if falcon else mt,
        num_layers=_field(cfg, where, "n_layer", "num_hidden_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=hidden // heads,
        intermediate_size=inner,
        vocab_size=_field(cfg, where, "vocab_size"),
        tie_embeddings=_flag(cfg, where, "tie_word_embeddings", mt in GPT_TIED_BY_DEFAULT),
        mlp_gated=False,
        max_position_embeddings=_field(cfg, where, "n_positions", "max_position_embeddings",
                                       default=FALCON_DEFAULT_CONTEXT if falcon else 0),
        norm="layer",
        attention_rope=mt not in LEARNED_POSITIONS and not alibi,
        parallel_block_reduce=parallel,
    )
