"""config.json fields refused by name before a parser reads them: a shape field that is not a whole number of its
sign or a yes / no field that is not a boolean (refuse_mistyped_fields), and a field that changes a layer's cost and
that the model_type's parser does not read (refuse_unread_fields)."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_families import (
    LATENT_ATTENTION_TYPES,
    LINEAR_HYBRID_TYPES,
    MAMBA_HYBRID_TYPES,
    SPARSE_LATENT_TYPES,
)
from phasewise.specs.hf_layers import DIVISORS, WINDOW_PATTERN_DEFAULT, check_layer_count, positive
from phasewise.specs.hf_mamba import GRANITE_LAYER_KINDS
from phasewise.specs.hf_recurrent import LFM2_TYPES, LIGHTNING_TYPES

# Kimi K3's additions on model_type kimi_linear, refused by name (Kimi Linear's own names: specs/hf_config.py
# KIMI_LINEAR_NAMES)
KIMI_LINEAR_UNREAD = {"routed_expert_hidden_size": "a latent MoE", "attn_res_block_size": "attention residuals",
                      "mla_use_output_gate": "gated latent attention"}
# Fields that change a layer's cost; a config carrying one its parser does not read is refused by name.
LATENT_FIELDS = ("kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
SPARSE_FIELDS = ("index_topk", "index_n_heads", "index_head_dim")
LAYER_PATTERN_FIELDS = ("sliding_window_pattern", "attention_chunk_size", "full_attention_interval",
                        "attn_type_list", "hybrid_override_pattern")
# Dense families: their transformers classes (LlamaConfig / LlamaMLP, Qwen2Config, Gemma's, ...) build one MLP in
# every layer and no experts, whatever expert count the file holds; the MoE siblings are model_types of their own
# (mixtral, qwen2_moe, qwen3_moe, glm4_moe, olmoe, ernie4_5_moe, granitemoe, phimoe, qwen3_vl_moe_text). An expert
# count here, which the Llama-style parser would cost as a MoE, is refused by name
DENSE_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "qwen3_vl_text",
               "ministral3", "glm4", "seed_oss", "olmo2", "olmo3", "smollm3", "exaone4", "ernie4_5", "granite",
               "internlm3", "phi", "starcoder2", "internlm2", "olmo", "cohere", "cohere2", "qwen2_vl_text",
               "qwen2_5_vl_text", "mimo")
EXPERT_COUNT_FIELDS = ("num_local_experts", "num_experts", "n_routed_experts")  # what the parser reads as experts
# MoE families without a shared expert: Qwen3-MoE's sparse block is the routed experts alone (transformers
# Qwen3MoeSparseMoeBlock; vLLM qwen3_moe.py Qwen3MoeSparseMoeBlock builds FusedMoE and the gate, no shared_expert,
# which Qwen2-MoE's block has; vLLM qwen3_vl_moe.py reuses it). So do these MoE blocks, a gate (router) and FusedMoE
# over the routed experts and nothing beside them: vLLM mixtral.py MixtralMoE, olmoe.py OlmoeMoE, phimoe.py PhiMoE,
# granitemoe.py GraniteMoeMoE, gpt_oss.py MLPBlock, minimax_m2.py MiniMaxM2MoE, jamba.py JambaMoE, lfm2_moe.py
# Lfm2MoeSparseMoeBlock, mimo_v2_flash.py MiMoV2MoE (also the checkpoint's remote-code model_type mimo_v2). A
# shared-expert width there is refused by name. Their siblings that do build one keep it:
# granitemoeshared (shared_mlp), qwen2_moe, glm4_moe, dots1, ernie4_5_moe, bailing_moe, the DeepSeek lineage, and
# MiniMax-Text-01 / M1 (minimax_text_01.py builds shared_mlp where shared_intermediate_size > 0)
NO_SHARED_EXPERT_TYPES = ("qwen3_moe", "qwen3_vl_moe_text", "mixtral", "olmoe", "phimoe", "granitemoe", "gpt_oss",
                          "minimax_m2", "jamba", "lfm2_moe", "mimo_v2_flash", "mimo_v2")
SHARED_EXPERT_FIELDS = ("shared_expert_intermediate_size", "shared_intermediate_size", "n_shared_experts")


# Shape fields the parsers read as whole numbers (int() of them would take true as 1 and 2.5 as 2): where a config
# sets one (not null), an integer (or, for a family's per-layer lists, a list of them): > 0 for these (the
# dividing ones among them, hf_layers.DIVISORS), >= 0 for NON_NEGATIVE_FIELDS
POSITIVE_FIELDS = (*DIVISORS, "num_key_value_heads", "head_dim", "vocab_size", "n_routed_experts",
                   "num_experts_per_tok", "kv_lora_rank", "qk_rope_head_dim", "v_head_dim", "index_topk",
                   "index_n_heads", "index_head_dim")
NON_NEGATIVE_FIELDS = (
    "intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size", "shared_intermediate_size",
    "max_position_embeddings", "num_experts", "num_local_experts", "n_shared_experts", "first_k_dense_replace",
    "decoder_sparse_step", "moe_layer_freq", "q_lora_rank", "qk_nope_head_dim", "num_nextn_predict_layers", "n_group",
    "topk_group")
# Families whose config marks a dense model by num_experts_per_tok 0 beside num_local_experts 0 (or none):
# Granite 4.0's dense checkpoints (ibm-granite/granite-4.0-h-1b, -micro: "num_local_experts": 0,
# "num_experts_per_tok": 0); vLLM's granitemoehybrid.py builds the MoE block only where num_local_experts > 0 (the
# shared MLP alone then), so the top-k is never read. A 0 top-k beside experts stays refused
DENSE_TOP_K_TYPES = ("granitemoehybrid",)
# yes / no fields: a JSON boolean ("yes" or 1 would be read as true)
BOOLEAN_FIELDS = ("tie_word_embeddings", "use_sliding_window")


def _dense_top_k(cfg: dict[str, Any], mt: str) -> bool:
    """Whether the config marks a dense model by a top-k of 0 beside no experts, as its family's config class does
    (DENSE_TOP_K_TYPES)."""
    return mt in DENSE_TOP_K_TYPES and cfg.get("num_experts_per_tok") == 0 and not cfg.get("num_local_experts")


def refuse_mistyped_fields(cfg: dict[str, Any], where: str, mt: str) -> None:
    """A one-line error naming a shape field that is not a whole number of its sign (POSITIVE_FIELDS,
    NON_NEGATIVE_FIELDS), or a yes / no field that is not a boolean (BOOLEAN_FIELDS), before any parser reads it;
    a family's dense marker (_dense_top_k) aside."""
    for key in (*POSITIVE_FIELDS, *NON_NEGATIVE_FIELDS):
        value = cfg.get(key)
        if value is None or (key == "num_experts_per_tok" and _dense_top_k(cfg, mt)):
            continue
        for item in value if isinstance(value, list) else (value,):
            if key in POSITIVE_FIELDS:
                positive(item, where, key)
            elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise PhasewiseError(f"{where}: field {key} must be a non-negative integer (got {value!r})")
    for key in BOOLEAN_FIELDS:
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise PhasewiseError(f"{where}: field {key} must be true or false (got {value!r})")


def refuse_unread_fields(cfg: dict[str, Any], where: str, mt: str) -> None:
    # per-layer lists, refused by name when they are not lists (a number there failed in set() / all())
    for field, what in (("layer_types", "each layer's kind"), ("attn_type_list", "0 (lightning) or 1 (softmax) per "
                                                                                 "layer")):
        if cfg.get(field) is not None and not isinstance(cfg[field], list):
            raise PhasewiseError(f"{where}: field {field} must be a list of {what} (got {cfg[field]!r})")
    odd = [kind for kind in cfg.get("layer_types") or [] if not isinstance(kind, str)]
    if odd:
        raise PhasewiseError(f"{where}: field layer_types must name each layer's kind as a string (got {odd[0]!r})")
    # MiniMax's attn_type_list: 1 = full softmax attention, 0 = lightning (linear); all 1 (MiniMax-M2) is plain
    kinds_listed = cfg.get("attn_type_list")
    layers = cfg.get("num_hidden_layers")
    if (kinds_listed is not None and mt not in LIGHTNING_TYPES  # lightning_fields checks it with its kinds
            and isinstance(layers, int) and not isinstance(layers, bool)):
        check_layer_count(kinds_listed, where, "attn_type_list", layers)  # as layer_types (hf_layers window_layers)
    full = kinds_listed is not None and all(kind == 1 for kind in kinds_listed)
    hybrid = mt in LINEAR_HYBRID_TYPES or mt in LIGHTNING_TYPES
    unread = [k for k in LAYER_PATTERN_FIELDS if cfg.get(k) is not None
              and not (k == "attn_type_list" and (full or mt in LIGHTNING_TYPES))
              and not (k == "full_attention_interval" and hybrid)
              and not (k == "sliding_window_pattern" and (mt in WINDOW_PATTERN_DEFAULT or mt == "exaone4"))
              and not (k == "attention_chunk_size" and mt == "llama4_text")
              and not (k == "hybrid_override_pattern" and mt in MAMBA_HYBRID_TYPES)]
    if cfg.get("dual_chunk_attention_config"):  # Qwen2.5-7B / 14B-Instruct-1M (vLLM's DualChunkFlashAttention)
        unread.append("dual_chunk_attention_config (Dual Chunk Attention: attention within and across chunks of "
                      "chunk_size, sparse where sparse_attention_enabled)")
    if cfg.get("moe_latent_size") and mt not in MAMBA_HYBRID_TYPES:  # Nemotron 3 Super's latent MoE
        unread.append("moe_latent_size (latent MoE: experts over a down-projected hidden state)")
    if mt in MAMBA_HYBRID_TYPES:  # per-layer windows and per-block widths (Nemotron-H Puzzle variants)
        unread += [k for k in ("sliding_window", "block_configs") if cfg.get(k)]
    if mt == "kimi_linear":
        unread += [f"{k} ({what})" for k, what in KIMI_LINEAR_UNREAD.items() if cfg.get(k)]
    if cfg.get("use_bidirectional_attention") and not (mt == "gemma4_text"
                                                       and cfg["use_bidirectional_attention"] == "vision"):
        unread.append("use_bidirectional_attention")  # EmbeddingGemma-style encoders: not causal decoders (Gemma 4's
        # "vision": image tokens attend both ways, text tokens causally)
    if mt not in LATENT_ATTENTION_TYPES:
        unread += [k for k in LATENT_FIELDS if cfg.get(k)]
    if mt in DENSE_TYPES:
        unread += [f"{k} (experts: model_type '{mt}' builds one dense MLP a layer)" for k in EXPERT_COUNT_FIELDS
                   if cfg.get(k)]
    if mt in NO_SHARED_EXPERT_TYPES:
        unread += [f"{k} (a shared expert: model_type '{mt}' routes to its experts alone)"
                   for k in SHARED_EXPERT_FIELDS if cfg.get(k)]
    if mt not in SPARSE_LATENT_TYPES:
        unread += [k for k in SPARSE_FIELDS if cfg.get(k)]
    kinds = set(cfg.get("layer_types") or []) - {"full_attention", "sliding_attention"} - (
        {"linear_attention"} if hybrid else set()) - ({"chunked_attention"} if mt == "llama4_text" else set()) - (
        set(GRANITE_LAYER_KINDS) if mt in ("granitemoehybrid", "bamba") else set()) - ({"conv"} if mt in LFM2_TYPES else set())
    if "linear_attention" in kinds:
        unread.append("layer_types (linear_attention: gated DeltaNet or lightning attention, read for model_type "
                      f"{', '.join(LINEAR_HYBRID_TYPES + LIGHTNING_TYPES)} only)")
        kinds.discard("linear_attention")
    if "sliding_attention" in (cfg.get("layer_types") or []) and not cfg.get("sliding_window"):
        unread.append("layer_types (sliding_attention without a sliding_window)")
    if kinds:
        unread.append(f"layer_types ({', '.join(sorted(map(str, kinds)))})")
    if unread:
        raise PhasewiseError(f"{where}: field {unread[0]} is not modelled for model_type '{mt}' "
                             f"(its layers would be costed wrongly)")
