"""MiMo-V2-Flash's config.json, read into the fields specs/hf_llama_style.py's Llama-style parser takes, in either of the
forms it is published in:

- transformers 5.25's `mimo_v2_flash` (models/mimo_v2_flash, MiMoV2FlashConfig, whose defaults are the checkpoint's):
  `layer_types` (by default full attention in the first layer and every 6th, sliding-window attention in the rest),
  `mlp_layer_types` ("dense" or "sparse"; by default the first dense), and sliding layers with twice
  `num_key_value_heads` (MiMoV2FlashAttention: "SWA layers double the kv heads vs full-attention");
- the checkpoint's own remote-code form `mimo_v2` (MiMoV2ForCausalLM, as vLLM and SGLang read it):
  `hybrid_layer_pattern` (1: a sliding layer, 0: full), `moe_layer_freq` (1: MoE), and the sliding layers' own
  `swa_num_attention_heads`, `swa_num_key_value_heads`, `swa_head_dim` and `swa_v_head_dim`.

Both: q.k heads `head_dim` (192) wide and values `v_head_dim` (128) in every layer; a window of
`sliding_window_size` keys plus the query's own (transformers' reading: sliding_window = size + 1), else
`sliding_window`. Attention sinks on the sliding layers, the value scale and partial RoPE cost nothing of note. The
MTP modules (`num_nextn_predict_layers`: dense, ~0.33 B each) are not read: an MTP draft is the generic one (a block
shaped as the model's own, perf/memory.py mtp_module).
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import SPEC_FIELDS, is_int_list, positive

__all__ = ["MIMO_DEFAULTS", "MIMO_TYPES", "mimo_config"]

MIMO_TYPES = ("mimo_v2_flash", "mimo_v2")
# MiMoV2FlashConfig's field defaults (transformers 5.25), the checkpoint's shapes
MIMO_DEFAULTS = dict(vocab_size=152576, hidden_size=4096, intermediate_size=16384, num_hidden_layers=48,
                     num_attention_heads=64, num_key_value_heads=4, hidden_act="silu", max_position_embeddings=131072,
                     tie_word_embeddings=False, moe_intermediate_size=2048, num_experts_per_tok=8,
                     n_routed_experts=256, head_dim=192, v_head_dim=128, sliding_window=129)
# the default pattern: full attention in layer 0 and every 6th layer
MIMO_PATTERN = 6


def mimo_config(cfg: dict[str, Any], where: str, mt: str, layers: int) -> dict[str, Any]:
    """`cfg` (MiMoV2FlashConfig's defaults filled in for mimo_v2_flash; `layers` its checked num_hidden_layers) as
    the Llama-style parser reads it: layer_types, the dense layers as mlp_only_layers, the window, and under
    SPEC_FIELDS the value width and the sliding layers' KV heads (ModelSpec.v_head_dim, window_kv_heads)."""
    heads = positive(cfg.get("num_attention_heads"), where, "num_attention_heads")
    kv_heads = positive(cfg.get("num_key_value_heads"), where, "num_key_value_heads")
    head_dim = positive(cfg.get("head_dim"), where, "head_dim")
    v_dim = positive(cfg.get("v_head_dim", head_dim), where, "v_head_dim")
    out = {k: v for k, v in cfg.items() if k not in ("v_head_dim", "moe_layer_freq", "hybrid_layer_pattern",
                                                     "mlp_layer_types", "sliding_window_size")}
    pattern = cfg.get("hybrid_layer_pattern")
    if pattern is not None:  # the remote-code form: 1 sliding, 0 full; the sliding layers' own fields
        kinds = _flags(pattern, where, "hybrid_layer_pattern", layers)
        out["layer_types"] = ["sliding_attention" if kind else "full_attention" for kind in kinds]
        window_kv = positive(cfg.get("swa_num_key_value_heads", kv_heads), where, "swa_num_key_value_heads")
        for field, value in (("swa_num_attention_heads", heads), ("swa_head_dim", head_dim),
                             ("swa_v_head_dim", v_dim)):
            if cfg.get(field, value) != value:
                raise PhasewiseError(f"{where}: field {field}={cfg[field]} differs from the full layers' ({value}); "
                                     f"sliding layers of another query-head count or head width are not modelled "
                                     f"for model_type '{mt}'")
    else:  # transformers' form: layer_types, the sliding layers with twice the KV heads
        out["layer_types"] = cfg.get("layer_types") or [
            "full_attention" if i == 0 or not (i + 1) % MIMO_PATTERN else "sliding_attention" for i in range(layers)]
        window_kv = 2 * kv_heads
    size = cfg.get("sliding_window_size")
    if size is not None:  # a window of `size` earlier keys plus the query's own
        out["sliding_window"] = positive(size, where, "sliding_window_size") + 1
    moe = cfg.get("moe_layer_freq")
    if moe is not None and not isinstance(moe, int):
        dense = [i for i, kind in enumerate(_flags(moe, where, "moe_layer_freq", layers)) if not kind]
    else:
        kinds = cfg.get("mlp_layer_types") or ["dense"] + ["sparse"] * (layers - 1)
        if not isinstance(kinds, list) or len(kinds) != layers or set(kinds) - {"dense", "sparse"}:
            raise PhasewiseError(f"{where}: field mlp_layer_types must list 'dense' or 'sparse' for each of the "
                                 f"{layers} layers")
        dense = [i for i, kind in enumerate(kinds) if kind == "dense"]
    out["mlp_only_layers"] = dense
    windowed = sum(kind == "sliding_attention" for kind in out["layer_types"]) \
        if isinstance(out["layer_types"], list) else 0
    out[SPEC_FIELDS] = {"v_head_dim": v_dim}
    if 0 < windowed < layers and window_kv != kv_heads:
        out[SPEC_FIELDS]["window_kv_heads"] = window_kv
    return out


def _flags(value: Any, where: str, field: str, layers: int) -> list[int]:
    """A per-layer list of 0 / 1 flags, checked."""
    if not is_int_list(value) or len(value) != layers or set(value) - {0, 1}:
        raise PhasewiseError(f"{where}: field {field} must list 0 or 1 for each of the {layers} layers")
    return value
