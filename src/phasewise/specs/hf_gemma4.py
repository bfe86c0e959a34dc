"""Gemma 4's config.json (transformers 5.25 models/gemma4/configuration_gemma4.py Gemma4TextConfig, model_type
gemma4_text; Gemma4ForConditionalGeneration wraps it as the text_config of model_type gemma4), read into the fields
specs/hf_llama_style.py's Llama-style parser takes.

Gemma 4 keeps Gemma 3's five sliding-window layers to one full layer (layer_types; by default every 6th layer full,
and the last layer full whatever the list says: Gemma4TextConfig.__post_init__) but shapes the two kinds apart
(Gemma4TextAttention): a sliding layer has head_dim-wide heads and num_key_value_heads KV heads; a full layer
global_head_dim-wide heads (512 by default) and, where attention_k_eq_v is set, num_global_key_value_heads KV heads
whose values come from the key projection (no v_proj; K and V both cached, V normed apart and without RoPE). The
query heads are num_attention_heads in both. The MoE variant (enable_moe_block: 26B-A4B) runs in every layer its
dense MLP (intermediate_size) and, beside it on the same input, num_experts routed experts of moe_intermediate_size,
top_k_experts a token (Gemma4TextDecoderLayer): costed as a MoE layer whose shared expert is the dense MLP.
The on-device models (E2B, E4B) add KV-shared layers: the last num_kv_shared_layers layers attend over the KV the
last unshared layer of their kind stored (Gemma4TextConfig.kv_sharing_modes), with no K or V projection of their own,
and with use_double_wide_mlp a dense MLP twice intermediate_size wide (Gemma4TextMLP); and per-layer embeddings
(hidden_size_per_layer_input wide for each layer, from a table of vocab_size_per_layer_input tokens, with a projection
of the embedded token and each layer's gate and projection back: Gemma4TextModel, Gemma4TextDecoderLayer).
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import SPEC_FIELDS, positive

__all__ = ["GEMMA4_DEFAULTS", "gemma4_config"]

# Gemma4TextConfig's field defaults (a config.json may omit them); global_head_dim is popped with 512
GEMMA4_DEFAULTS = dict(vocab_size=262144, hidden_size=2304, intermediate_size=9216, num_hidden_layers=30,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131072, sliding_window=512,
                       tie_word_embeddings=True, hidden_size_per_layer_input=256, vocab_size_per_layer_input=262144,
                       attention_k_eq_v=False, num_kv_shared_layers=0, enable_moe_block=False,
                       use_double_wide_mlp=False)
# the default layer pattern: every 6th layer full ("by default 5:1")
GEMMA4_PATTERN = 6


def gemma4_config(cfg: dict[str, Any], where: str, layers: int) -> dict[str, Any]:
    """`cfg` (Gemma4TextConfig's defaults filled in; `layers` its checked num_hidden_layers) as the Llama-style
    parser reads it: head_dim and num_key_value_heads the full layers', the sliding layers' window_head_dim /
    window_kv_heads (where the stack has sliding layers), value_from_key, the KV-shared, double-wide and per-layer
    embedding fields as ModelSpec fields under SPEC_FIELDS, layer_types with the last layer full, and the MoE block's
    experts in the parser's names (the dense MLP as the shared expert)."""
    out = {k: v for k, v in cfg.items() if k not in ("num_experts", "top_k_experts", "moe_intermediate_size")}
    layer_types = cfg.get("layer_types")
    if layer_types is None:
        layer_types = ["sliding_attention" if (i + 1) % GEMMA4_PATTERN else "full_attention" for i in range(layers)]
    elif isinstance(layer_types, list) and layer_types:
        layer_types = [*layer_types[:-1], "full_attention"]  # transformers forces it (with a warning)
    out["layer_types"] = layer_types
    sliding_dim = positive(cfg.get("head_dim"), where, "head_dim")
    sliding_kv = positive(cfg.get("num_key_value_heads"), where, "num_key_value_heads")
    shared_kv = cfg.get("attention_k_eq_v")
    if not isinstance(shared_kv, bool):
        raise PhasewiseError(f"{where}: field attention_k_eq_v must be true or false (got {shared_kv!r})")
    full_dim = positive(cfg.get("global_head_dim", 512), where, "global_head_dim")
    global_kv = cfg.get("num_global_key_value_heads")
    full_kv = positive(global_kv, where, "num_global_key_value_heads") if shared_kv and global_kv is not None \
        else sliding_kv  # transformers applies the global count only with attention_k_eq_v
    out.update(head_dim=full_dim, num_key_value_heads=full_kv)
    fields = out[SPEC_FIELDS] = {"value_from_key": shared_kv}
    windowed = sum(kind == "sliding_attention" for kind in layer_types) if isinstance(layer_types, list) else 0
    if 0 < windowed < layers and cfg.get("sliding_window"):
        fields.update(window_head_dim=sliding_dim, window_kv_heads=sliding_kv)
    shared = cfg.get("num_kv_shared_layers") or 0
    if not isinstance(shared, int) or isinstance(shared, bool) or not 0 <= shared < layers:
        raise PhasewiseError(f"{where}: field num_kv_shared_layers must be an integer in 0..{layers - 1} (got "
                             f"{shared!r}): the first layer keeps its own KV")
    if shared:  # the last `shared` layers reuse their kind's KV; the double-wide MLP is theirs (Gemma4TextMLP)
        fields.update(kv_shared_layers=shared, wide_mlp_layers=shared if cfg.get("use_double_wide_mlp") else 0,
                      kv_shared_window_layers=sum(kind == "sliding_attention" for kind in layer_types[-shared:])
                      if "window_head_dim" in fields else 0)
    ple = cfg.get("hidden_size_per_layer_input") or 0
    if ple:  # per-layer embeddings: their width and vocabulary
        fields.update(per_layer_input_size=positive(ple, where, "hidden_size_per_layer_input"),
                      per_layer_input_vocab=positive(cfg.get("vocab_size_per_layer_input", 262144), where,
                                                     "vocab_size_per_layer_input"))
    if cfg.get("enable_moe_block"):
        experts = positive(cfg.get("num_experts"), where, "num_experts")
        out.update(num_experts=experts, num_experts_per_tok=positive(cfg.get("top_k_experts"), where,
                                                                     "top_k_experts"),
                   moe_intermediate_size=positive(cfg.get("moe_intermediate_size"), where, "moe_intermediate_size"),
                   shared_expert_intermediate_size=positive(cfg.get("intermediate_size"), where,
                                                            "intermediate_size"))
    return out
