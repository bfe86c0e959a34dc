"""Hugging Face config.json -> ModelSpec.

Each supported model_type has its parser (Llama-style field names, DeepSeek's latent attention and its sparse
indexer, gated-DeltaNet hybrids, the Mamba-2 hybrids Nemotron-H and Granite 4.0-H (specs/hf_mamba.py), Kimi
Linear's KDA beside latent attention, Falcon-H1's attention and Mamba-2 side by side, Jamba's Mamba-1, LFM2's short
convolutions and MiniMax-Text-01 / M1's lightning attention (specs/hf_recurrent.py), multimodal wrappers around a
supported language model, OPT, BLOOM, AllenAI's own OLMo names (hf_olmo, LLaDA: specs/hf_classic.py)); an unknown
model_type, or a field that changes a layer's cost and that its parser does not read, is a one-line error naming it,
never a fallback to another family.
specs/model_catalog.py load_model() takes a catalog id or alias (specs/data/models.yaml, config.json fields
verbatim) or a user's file; specs/hf_quant.py reads a checkpoint's quantization_config.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.specs.hf_classic import bloom_spec, olmo_spec, opt_spec
from phasewise.specs.hf_deepseek_v4 import deepseek_v4_spec
from phasewise.specs.hf_gemma4 import GEMMA4_DEFAULTS, gemma4_config
from phasewise.specs.hf_gpt import GPT_TYPES, gpt_spec
from phasewise.specs.hf_layers import (
    DIVISORS,
    GATED_ACTS,
    SPEC_FIELDS,
    WINDOW_PATTERN_DEFAULT,
    check_layer_count,
    check_layer_indices,
    ernie_moe_layers,
    first_field,
    hunyuan_fields,
    llama4_moe_layers,
    positive,
    require_field,
    serving_context,
    window_layers,
)
from phasewise.specs.hf_linear_attention import gated_deltanet_fields, kda_fields
from phasewise.specs.hf_mamba import GRANITE_LAYER_KINDS, granite_hybrid_spec, nemotron_h_spec
from phasewise.specs.hf_mimo import MIMO_DEFAULTS, MIMO_TYPES, mimo_config
from phasewise.specs.hf_nas import NAS_TYPES, nas_config
from phasewise.specs.hf_quant import with_checkpoint_precision
from phasewise.specs.hf_recurrent import (
    BAMBA_DEFAULTS,
    FALCON_H1_DEFAULTS,
    JAMBA_DEFAULTS,
    LFM2_DEFAULTS,
    LFM2_MOE_DEFAULTS,
    LFM2_TYPES,
    LIGHTNING_TYPES,
    bamba_config,
    falcon_h1_spec,
    jamba_moe_layers,
    lfm2_config,
    lightning_fields,
    mamba1_fields,
    short_conv_fields,
)
from phasewise.specs.hf_vision import (
    gemma4_encoder,
    internvl_encoder,
    llama4_encoder,
    pixtral_encoder,
    qwen2_5_vl_encoder,
    qwen2_vl_encoder,
    qwen3_vl_encoder,
    siglip_encoder,
)
from phasewise.specs.model import ModelSpec

__all__ = ["SUPPORTED_TYPES", "from_hf_config"]


# model_type -> the parser that understands it. Llama-style: the common field names (hidden_size,
# num_attention_heads, num_key_value_heads, head_dim, intermediate_size; MoE as Mixtral/Qwen/DeepSeek name it);
# latent: the same plus DeepSeek's multi-head latent attention fields.
LLAMA_STYLE_TYPES = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
                     "gemma3_text", "gpt_oss", "minimax_m2", "llama4_text", "glm4_moe", "phi3", "qwen3_vl_text",
                     "qwen3_vl_moe_text", "ministral3", "glm4v_moe_text",
                     # transformers 5.25's classes of these read the same names; extra norms (GLM-4's sandwich,
                     # OLMo 2 / 3's and EXAONE 4's post-norms and QK norms), biases, Granite's scalar multipliers,
                     # partial or no RoPE on some layers and Phi-2's parallel attention and MLP cost nothing of note
                     "glm4", "seed_oss", "olmo2", "olmo3", "smollm3", "exaone4", "ernie4_5", "granite", "internlm3",
                     "phi", "starcoder2",
                     # InternLM2 / 2.5 (remote code, InternLM2Config: the same names; a fused wqkv costs as q, k, v)
                     "internlm2",
                     # OLMo 1 as transformers reads it (OlmoConfig, models/olmo: hidden_size, num_attention_heads,
                     # num_key_value_heads, intermediate_size; SwiGLU MLP, no biases, no q / k norm, untied unless
                     # tie_word_embeddings; clip_qkv clamps q, k, v: no cost of note); its LayerNorms carry no
                     # weights (OlmoLayerNorm: F.layer_norm without weight or bias). AllenAI's own d_model names:
                     # hf_olmo
                     "olmo",
                     # Cohere's Command R (cohere) and Command A / R7B (cohere2: three windowed layers in four by
                     # sliding_window_pattern, as Gemma's): attention and MLP in parallel off one norm, each still
                     # all-reduced under TP (vLLM commandr.py), so costed as in sequence
                     "cohere", "cohere2",
                     # Qwen2-VL's and Qwen2.5-VL's language models: Qwen2's (multimodal RoPE costs as RoPE on text)
                     "qwen2_vl_text", "qwen2_5_vl_text",
                     # MiMo-7B (the checkpoints' remote code: MiMoConfig(Qwen2Config), model_type mimo; Qwen2's layers,
                     # vLLM mimo.py): its MTP layers (num_nextn_predict_layers) serve only as a draft, not read here
                     "mimo",
                     # MoE: OLMoE, Phi-3.5-MoE and Granite 3 MoE name their experts' width intermediate_size (every
                     # layer MoE); Granite's shared variant adds shared_intermediate_size, ERNIE 4.5 its own names
                     # (ERNIE_MOE_NAMES), dots.llm1 DeepSeek's
                     "olmoe", "phimoe", "granitemoe", "granitemoeshared", "ernie4_5_moe", "dots1",
                     # Ling / Ling 2.0 (inclusionAI's BailingMoe(V2)ForCausalLM, remote code; vLLM bailing_moe.py):
                     # a fused qkv, DeepSeek-style layers from first_k_dense_replace on, num_shared_experts
                     # (BAILING_NAMES)
                     "bailing_moe",
                     # Tencent Hunyuan (vLLM hunyuan_v1.py; transformers hunyuan_v1_dense / _moe; the checkpoints'
                     # remote code: hunyuan): its per-layer lists and names (hunyuan_fields)
                     "hunyuan", "hunyuan_v1_moe", "hunyuan_v1_dense",
                     # Gemma 4 (transformers gemma4_text): its sliding and full layers shaped apart, the MoE block
                     # beside the dense MLP (specs/hf_gemma4.py)
                     "gemma4_text",
                     # MiMo-V2-Flash (transformers mimo_v2_flash; the checkpoint's remote code mimo_v2): sliding
                     # layers with twice the KV heads, values narrower than keys (specs/hf_mimo.py)
                     *MIMO_TYPES,
                     # Llama-Nemotron Super / Ultra (DeciLM, remote code; vLLM nemotron_nas.py): Llama's layers with
                     # their attention or MLP left out and MLP widths of their own, from block_configs (hf_nas.py)
                     *NAS_TYPES)
HUNYUAN_TYPES = ("hunyuan", "hunyuan_v1_moe", "hunyuan_v1_dense")
# Norms beyond the two before attention and MLP, as transformers 5.25's classes build them (models/<family>/
# modeling_<family>.py): q and k RMSNormed on every softmax layer (per head: Qwen3's q_norm / k_norm, dots.llm1,
# EXAONE 4, LFM2's q_layernorm / k_layernorm, Gemma 3 / 4, Hunyuan's query_layernorm / key_layernorm; over all heads at
# once: OLMo 2 / 3 and OLMoE's q_norm of num_heads x head_dim) ...
QK_NORM_TYPES = ("qwen3", "qwen3_moe", "qwen3_vl_text", "qwen3_vl_moe_text", "qwen3_next", "qwen3_5_text",
                 "qwen3_5_moe_text", "gemma3_text", "gemma4_text", "dots1", "exaone4", "olmo2", "olmo3", "olmoe",
                 "lfm2", "lfm2_moe", *HUNYUAN_TYPES)
# ... or where the config's use_qk_norm says so, with the class's default: GLM-4.5's (false), Command R's LayerNorms
# (false), Llama 4's weightless RMSNorm (true; its RoPE layers only, counted on all: 3 in 4 of Scout's), MiniMax-M2's
# over all heads (false), Ling 2.0's (false: vLLM bailing_moe.py reads getattr(config, "use_qk_norm", False))
QK_NORM_FLAG_TYPES = {"glm4_moe": False, "glm4v_moe_text": False, "cohere": False, "llama4_text": True,
                      "minimax_m2": False, "bailing_moe": False}
# Gemma 4's v_norm (a weightless RMSNorm on the values, Gemma4TextAttention)
V_NORM_TYPES = ("gemma4_text",)
# Sandwich norms: Gemma 2 / 3 / 4's post_attention_layernorm and post_feedforward_layernorm beside input_layernorm and
# pre_feedforward_layernorm, GLM-4's post_self_attn_layernorm and post_mlp_layernorm (OLMo 2 / 3's and EXAONE 4's
# norms come after the sublayers instead of before them: two, as a pre-norm layer's)
SANDWICH_NORM_TYPES = ("gemma2", "gemma3_text", "gemma4_text", "glm4")
# final_logit_softcapping and its default in the family's config class (Gemma 2: 30.0; Gemma 3 / 4: None, set by the
# Gemma 4 checkpoints' config.json)
LOGIT_SOFTCAP_DEFAULTS = {"gemma2": 30.0, "gemma3_text": None, "gemma4_text": None}
# LayerNorm rather than RMSNorm (OLMo 1's OlmoLayerNorm, weightless)
LAYER_NORM_TYPES = ("olmo",)
# MLPs that are not gated: fc1 -> GELU -> fc2 (transformers PhiMLP, Starcoder2MLP)
NON_GATED_TYPES = ("phi", "starcoder2")
# tie_word_embeddings defaults to true in these families' config classes (transformers 5.25), false elsewhere
TIED_BY_DEFAULT = ("gemma", "gemma2", "gemma3_text", "gemma4_text", "smollm3", "ernie4_5", "ernie4_5_moe",
                   "starcoder2", "cohere", "cohere2")
# ERNIE 4.5 MoE (transformers Ernie4_5_MoeConfig attribute_map and fields): its names for the experts, and layer i is
# MoE when (i + 1) % moe_layer_interval == 0 and moe_layer_start_index <= i <= moe_layer_end_index (-1: the last)
ERNIE_MOE_NAMES = {"moe_num_experts": "num_experts", "moe_k": "num_experts_per_tok",
                   "moe_num_shared_experts": "n_shared_experts"}
BAILING_NAMES = {"num_shared_experts": "n_shared_experts"}
# Fields a config.json may omit because transformers' config class supplies them: the checkpoints' own files rely on
# them (google/gemma-3-27b-it's text_config names 10 fields; vocab_size, the activation and the window pattern come
# from Gemma3TextConfig). Values: the config classes' __init__ defaults (transformers
# models/gemma2/configuration_gemma2.py, models/gemma3/configuration_gemma3.py)
CONFIG_CLASS_DEFAULTS = {
    "gemma2": dict(vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=256, hidden_activation="gelu_pytorch_tanh",
                   max_position_embeddings=8192, sliding_window=4096, tie_word_embeddings=True),
    # Llama 4 (transformers models/llama4/configuration_llama4.py Llama4TextConfig): RoPE layers attend within
    # chunks of attention_chunk_size, every no_rope_layer_interval-th layer (NoPE) globally; MoE layers every
    # interleave_moe_layer_step-th, each with one shared expert of intermediate_size beside the routed ones, the
    # dense layers' MLP intermediate_size_mlp wide
    "llama4_text": dict(vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                        num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                        num_experts_per_tok=1, num_local_experts=16, interleave_moe_layer_step=1,
                        no_rope_layer_interval=4, attention_chunk_size=8192, max_position_embeddings=131072,
                        tie_word_embeddings=False),
    "gemma3_text": dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=256, hidden_activation="gelu_pytorch_tanh",
                        max_position_embeddings=131072, sliding_window=4096, tie_word_embeddings=True),
    # the window fields of families whose classes derive layer_types (specs/hf_layers.py family_layer_types), and
    # ERNIE 4.5 MoE's expert fields (transformers 5.25 Olmo3Config, Exaone4Config, SmolLM3Config, Dots1Config,
    # Ernie4_5_MoeConfig)
    "olmo3": dict(sliding_window=4096),
    "cohere2": dict(sliding_window=4096),
    "exaone4": dict(sliding_window=4096, sliding_window_pattern=4),
    "smollm3": dict(use_sliding_window=False),
    "dots1": dict(sliding_window=4096, max_window_layers=62),
    "gemma4_text": GEMMA4_DEFAULTS,
    "mimo_v2_flash": MIMO_DEFAULTS,
    "jamba": JAMBA_DEFAULTS,
    "falcon_h1": FALCON_H1_DEFAULTS,
    "bamba": BAMBA_DEFAULTS,
    "lfm2": LFM2_DEFAULTS,
    "lfm2_moe": LFM2_MOE_DEFAULTS,
    "ernie4_5_moe": dict(moe_num_experts=64, moe_k=6, moe_num_shared_experts=2, moe_intermediate_size=1536,
                         moe_layer_start_index=1, moe_layer_end_index=-1, moe_layer_interval=1),
}
# latent attention with DeepSeek sparse attention's indexer (index_topk, index_n_heads, index_head_dim)
SPARSE_LATENT_TYPES = ("deepseek_v32", "glm_moe_dsa")
LATENT_ATTENTION_TYPES = ("deepseek_v2", "deepseek_v3", "kimi_k2", "kimi_linear") + SPARSE_LATENT_TYPES
# Kimi Linear (moonshotai kimi_linear, vLLM models/kimi_linear.py): latent attention (NoPE: mla_use_nope) on the
# layers linear_attn_config.full_attn_layers names, KDA on its kda_layers (both 1-based), a DeepSeek-style MoE that
# names its fields num_experts_per_token and num_shared_experts. Kimi K3's additions on the same model_type
# (routed_expert_hidden_size: a latent MoE; attn_res_block_size: attention residuals; mla_use_output_gate) are
# refused by name
KIMI_LINEAR_NAMES = {"num_experts_per_token": "num_experts_per_tok", "num_shared_experts": "n_shared_experts"}
KIMI_LINEAR_UNREAD = {"routed_expert_hidden_size": "a latent MoE", "attn_res_block_size": "attention residuals",
                      "mla_use_output_gate": "gated latent attention"}
# Llama-style fields plus gated-DeltaNet linear-attention layers (layer_types "linear_attention", or every layer but
# each full_attention_interval-th) and gated softmax attention (transformers qwen3_next, qwen3_5(_moe)_text)
LINEAR_HYBRID_TYPES = ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")
# Mamba-2 hybrids: Nemotron-H / Nemotron 3 (transformers nemotron_h; single-block layers in a pattern) and
# Granite 4.0-H (granitemoehybrid; a Mamba-2 or attention mixer and a MoE + shared MLP in every layer)
MAMBA_HYBRID_TYPES = ("nemotron_h", "granitemoehybrid")
# Fields a config.json may hold NaN or Infinity in, which no parser here reads: the Mamba-2 families' dt clamp
# (transformers' Mamba2Config, NemotronHConfig, BambaConfig, FalconH1Config, GraniteMoeHybridConfig default
# time_step_limit = (0.0, float("inf")), saved by Python's json as [0.0, Infinity]: Nemotron-H-56B's and Nemotron 3
# Super's files hold it). A non-finite number in any other field is refused by name (specs/reading.py).
NON_FINITE_FIELDS = ("time_step_limit",)
# multimodal wrappers whose text_config holds the language model (its own model_type, one of the above)
# (the language models each may hold; the first when text_config names none). Mistral 3 (Mistral Small 3.x, Devstral
# Small 2, Ministral 3) wraps a Mistral or a Ministral 3 language model (YaRN RoPE and a query temperature: no cost);
# Kimi-K2.5 / K2.6 (KimiK25ForConditionalGeneration) a DeepSeek-V3-shaped one, named deepseek_v3 or kimi_k2;
# GLM-4.5V / 4.6V (Glm4vMoeForConditionalGeneration) GLM-4.5-Air's shape with multimodal RoPE (glm4v_moe_text)
# InternVL 2.5 / 3 / 3.5's language models (Qwen2.5, Qwen3, Qwen3 MoE, gpt-oss, InternLM2 / 3, Llama): in
# llm_config (the checkpoints' internvl_chat) or text_config (transformers' internvl)
INTERNVL_LANGUAGE_MODELS = ("qwen2", "qwen3", "qwen3_moe", "gpt_oss", "internlm2", "internlm3", "llama")
TEXT_WRAPPER_TYPES = {"qwen3_5": ("qwen3_5_text",), "qwen3_5_moe": ("qwen3_5_moe_text",), "gemma3": ("gemma3_text",),
                      "gemma4": ("gemma4_text",),
                      "llama4": ("llama4_text",), "qwen3_vl": ("qwen3_vl_text",),
                      "qwen3_vl_moe": ("qwen3_vl_moe_text",), "mistral3": ("mistral", "ministral3"),
                      "kimi_k25": ("deepseek_v3", "kimi_k2"), "glm4v_moe": ("glm4v_moe_text",),
                      "qwen2_vl": ("qwen2_vl_text",), "qwen2_5_vl": ("qwen2_5_vl_text",),
                      "internvl_chat": INTERNVL_LANGUAGE_MODELS, "internvl": INTERNVL_LANGUAGE_MODELS}
# Qwen2-VL and Qwen2.5-VL publish their language model's fields at the top level beside vision_config (the
# checkpoints' config.json, transformers 4.41-4.49); later transformers re-save them with a text_config too
FLAT_WRAPPER_TYPES = ("qwen2_vl", "qwen2_5_vl")
# (Qwen3-VL's language model is Qwen3's, dense or MoE, with interleaved multimodal RoPE, which costs as RoPE on text.)
# The wrappers whose vision encoder's weights are counted (specs/hf_vision.py); Kimi-K2.5's (MoonViT) and GLM-4.5V's
# are not. Qwen3.5 / 3.6 (qwen3_5, qwen3_5_moe) describe theirs with Qwen3-VL's fields (a public Qwen3.6-35B-A3B
# config.json's vision_config: depth 27, hidden 1152, intermediate 4304, patch 16, out_hidden_size 2048, 2,304
# positions; no deepstack_visual_indexes)
ENCODERS = {"qwen2_vl": qwen2_vl_encoder, "qwen2_5_vl": qwen2_5_vl_encoder, "qwen3_vl": qwen3_vl_encoder,
            "qwen3_vl_moe": qwen3_vl_encoder, "qwen3_5": qwen3_vl_encoder, "qwen3_5_moe": qwen3_vl_encoder,
            "mistral3": pixtral_encoder, "gemma3": siglip_encoder, "llama4": llama4_encoder,
            "internvl_chat": internvl_encoder, "internvl": internvl_encoder, "gemma4": gemma4_encoder}
OTHER_TYPES = ("opt", "bloom", "llada", "hf_olmo") + GPT_TYPES  # GPT-2's lineage: specs/hf_gpt.py
# Llama-style fields around recurrent layers of their own (specs/hf_recurrent.py): Jamba's Mamba-1, LFM2's short
# convolutions, MiniMax's lightning attention
RECURRENT_HYBRID_TYPES = ("jamba",) + LFM2_TYPES + LIGHTNING_TYPES
SUPPORTED_TYPES = LLAMA_STYLE_TYPES + LATENT_ATTENTION_TYPES + LINEAR_HYBRID_TYPES + MAMBA_HYBRID_TYPES \
    + ("falcon_h1", "bamba", "deepseek_v4") + RECURRENT_HYBRID_TYPES + tuple(TEXT_WRAPPER_TYPES) + OTHER_TYPES
# Families whose cost depends on something the cost model does not represent yet: refused by name rather than
# costed as if they were Llama.
NOT_MODELLED = {
    "mamba": "state-space layers only, no attention layer", "mamba2": "state-space layers only, no attention layer",
    "falcon_mamba": "state-space layers only, no attention layer",
}
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
# The MLP activations the Llama-style parser costs (an elementwise function of the gate, or of fc1 in the ungated
# MLPs of NON_GATED_TYPES: their cost is the matmuls around it): what the supported checkpoints name. Another one
# (e.g. Nemotron's relu2, whose MLP is ungated) is refused by name; vLLM refuses it too (llama.py LlamaMLP: "Only
# silu is supported for now"; gemma.py _get_gemma_act_fn: gelu or gelu_pytorch_tanh)
MODELLED_ACTS = tuple(sorted(GATED_ACTS)) + ("gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast")


def from_hf_config(name: str, cfg: dict[str, Any], where: str | None = None) -> ModelSpec:
    """Build a ModelSpec from the fields of a Hugging Face config.json (any of the supported families);
    an unknown model_type, or a field that changes the cost and that its parser does not read, is an error."""
    where = where or f"model '{name}'"
    mt = str(cfg.get("model_type", "")).lower()
    if not mt and "d_model" in cfg:  # AllenAI's own OLMo names without a model_type
        mt = "hf_olmo"
    if not mt:
        raise PhasewiseError(f"{where}: missing field model_type (supported: {', '.join(SUPPORTED_TYPES)})")
    if mt in NOT_MODELLED:
        raise PhasewiseError(f"{where}: model_type '{mt}' is not modelled yet ({NOT_MODELLED[mt]}); "
                             f"supported: {', '.join(SUPPORTED_TYPES)}")
    if mt not in SUPPORTED_TYPES:
        raise PhasewiseError(f"{where}: unknown model_type '{mt}' (supported: {', '.join(SUPPORTED_TYPES)})")
    _refuse_mistyped_fields(cfg, where, mt)
    if mt in TEXT_WRAPPER_TYPES:  # the language model of a multimodal checkpoint (its vision encoder: ENCODERS)
        field = "llm_config" if mt == "internvl_chat" else "text_config"  # InternVL's own files: llm_config
        text = cfg.get(field)
        if text is None and mt in FLAT_WRAPPER_TYPES:
            text = {k: v for k, v in cfg.items() if k not in ("model_type", "vision_config", "architectures")}
        if not isinstance(text, dict):
            raise PhasewiseError(f"{where}: model_type '{mt}' needs its language model's fields in {field}")
        allowed = TEXT_WRAPPER_TYPES[mt]
        inner = {"model_type": allowed[0], **text}
        if str(inner["model_type"]).lower() not in allowed:
            raise PhasewiseError(f"{where}: {field}.model_type '{inner['model_type']}' is not modelled inside "
                                 f"model_type '{mt}' (allowed: {', '.join(allowed)})")
        if cfg.get("quantization_config") is not None:  # the checkpoint's files: the top level's, as vLLM reads it
            inner["quantization_config"] = cfg["quantization_config"]
        if cfg.get("tie_word_embeddings") is not None:  # Qwen3-VL states it at the top level only
            inner.setdefault("tie_word_embeddings", cfg["tie_word_embeddings"])
        spec = from_hf_config(name, inner, where)
        if mt in ENCODERS and cfg.get("vision_config") is not None:
            spec = spec.model_copy(update={"vision": ENCODERS[mt](cfg, where, spec.hidden_size)})
        return spec
    if mt == "deepseek_v4":  # compressed attention (specs/hf_deepseek_v4.py reads and checks its own fields)
        try:
            spec = deepseek_v4_spec(name, cfg, where)
        except ValidationError as exc:
            raise pydantic_message(where, exc) from None
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. int(nan)
            if isinstance(exc, PhasewiseError):
                raise
            raise PhasewiseError(f"{where}: {exc}") from None
        return with_checkpoint_precision(spec, cfg, where)
    cfg = {**CONFIG_CLASS_DEFAULTS.get(mt, {}), **cfg}
    if mt in HUNYUAN_TYPES:
        cfg = hunyuan_fields(cfg, where)
    if mt == "gemma4_text":
        cfg = gemma4_config(cfg, where, int(require_field(cfg, where, "num_hidden_layers")))
    if mt in MIMO_TYPES:
        cfg = mimo_config(cfg, where, mt, int(require_field(cfg, where, "num_hidden_layers")))
    if mt in LFM2_TYPES:
        cfg = lfm2_config(cfg, where, mt, int(require_field(cfg, where, "num_hidden_layers")))
    if mt in NAS_TYPES:
        require_field(cfg, where, "num_hidden_layers")  # the layer-count bound, before its blocks are walked
        cfg = nas_config(cfg, where)
    if mt == "bamba":
        cfg = bamba_config(cfg, where, int(require_field(cfg, where, "num_hidden_layers")))
    names = {"kimi_linear": KIMI_LINEAR_NAMES, "ernie4_5_moe": ERNIE_MOE_NAMES,
             "bailing_moe": BAILING_NAMES}.get(mt, {})
    if names:  # their own names for the MoE fields
        cfg = {**{ours: cfg[theirs] for theirs, ours in names.items() if cfg.get(theirs) is not None}, **cfg}
    _refuse_unread_fields(cfg, where, mt)
    try:
        if mt == "opt":
            spec = opt_spec(name, cfg, where)
        elif mt == "bloom":
            spec = bloom_spec(name, cfg, where)
        elif mt in ("llada", "hf_olmo"):
            spec = olmo_spec(name, cfg, where)
        elif mt in GPT_TYPES:
            require_field(cfg, where, "n_layer", "num_hidden_layers")  # the layer-count bound
            spec = gpt_spec(name, cfg, where, mt)
        elif mt in ("granitemoehybrid", "bamba"):  # Bamba: Granite 4.0-H's dense layers
            spec = granite_hybrid_spec(name, cfg, where).model_copy(update={"model_type": mt})
        elif mt in MAMBA_HYBRID_TYPES:
            spec = nemotron_h_spec(name, cfg, where)
        elif mt == "falcon_h1":  # attention and Mamba-2 side by side in every layer (specs/hf_recurrent.py)
            spec = falcon_h1_spec(name, cfg, where)
        else:
            spec = _llama_style(name, cfg, where, mt)
        spec = with_checkpoint_precision(spec, cfg, where)
    except ValidationError as exc:
        raise pydantic_message(where, exc) from None
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. int('wide'), int(inf)
        if isinstance(exc, PhasewiseError):
            raise
        raise PhasewiseError(f"{where}: {exc}") from None
    modules = mtp_module_count(cfg, mt)
    return spec.model_copy(update={"mtp_layers": modules}) if modules and not spec.mtp_layers else spec


# The fields a checkpoint counts its multi-token-prediction modules in (what speculative draft `mtp` runs; the engines
# load them from the target's own checkpoint): DeepSeek-V3, GLM-4.5 / 5, MiMo-7B and Nemotron 3 Super
# num_nextn_predict_layers, Qwen3-Next / Qwen3.5 mtp_num_hidden_layers, MiniMax-M2.x num_mtp_modules (models.yaml)
MTP_FIELDS = ("num_nextn_predict_layers", "mtp_num_hidden_layers", "num_mtp_modules")
# MiMo-V2-Flash's three MTP modules, which its config class does not count (the model card: "3 MTP modules";
# specs/data/models.yaml)
MIMO_V2_MTP_MODULES = 3


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


def _refuse_mistyped_fields(cfg: dict[str, Any], where: str, mt: str) -> None:
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


def mtp_module_count(cfg: dict[str, Any], mt: str) -> int:
    """The MTP modules a checkpoint's config.json counts (the first of MTP_FIELDS it sets), 0 for none."""
    count = first_field(cfg, *MTP_FIELDS, default=0)
    if not count and mt in MIMO_TYPES:
        return MIMO_V2_MTP_MODULES
    return int(count) if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def _refuse_unread_fields(cfg: dict[str, Any], where: str, mt: str) -> None:
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


def _check_expert_groups(cfg: dict[str, Any], where: str, experts: int, top_k: int) -> None:
    """DeepSeek-style grouped routing (n_group groups of the routed experts, the best topk_group groups kept, top-k
    chosen among their experts), refused where it cannot run: vLLM's grouped_topk views the router's scores as
    n_group groups of equal size (n_routed_experts % n_group == 0) and keeps topk_group of them (<= n_group), among
    whose experts the top-k are picked (num_experts_per_tok <= topk_group x experts per group)."""
    groups, kept = cfg.get("n_group"), cfg.get("topk_group")
    if groups is None:
        return
    groups = positive(groups, where, "n_group")
    if experts % groups:
        allowed = ", ".join(str(d) for d in range(1, experts + 1) if experts % d == 0)
        raise PhasewiseError(f"{where}: field n_group {groups} must divide the {experts} routed experts into equal "
                             f"groups (allowed: {allowed})")
    kept = positive(groups if kept is None else kept, where, "topk_group")
    if kept > groups:
        raise PhasewiseError(f"{where}: field topk_group {kept} must be at most n_group {groups} (the groups the "
                             "router keeps of n_group)")
    if top_k > kept * (experts // groups):
        raise PhasewiseError(f"{where}: field num_experts_per_tok {top_k} must be at most topk_group {kept} x "
                             f"{experts // groups} experts a group ({kept * (experts // groups)}): the experts the "
                             "kept groups hold")


def _llama_style(name: str, cfg: dict[str, Any], where: str, mt: str) -> ModelSpec:
    hidden = int(require_field(cfg, where, "hidden_size"))
    heads = int(require_field(cfg, where, "num_attention_heads"))
    layers = int(require_field(cfg, where, "num_hidden_layers"))
    num_experts = int(first_field(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0))
    top_k = int(first_field(cfg, "num_experts_per_tok", default=0)) if num_experts else 0
    moe_layers = 0
    expert_inter = 0
    shared_inter = 0
    if num_experts:
        expert_inter = int(first_field(cfg, "moe_intermediate_size", "intermediate_size", default=0))
        shared_inter = int(first_field(cfg, "shared_expert_intermediate_size", "shared_intermediate_size", default=0))
        n_shared = int(first_field(cfg, "n_shared_experts", default=0))
        if n_shared and not shared_inter:
            shared_inter = n_shared * expert_inter
        # Qwen: layer i is MoE if (i + 1) % step == 0; DeepSeek: if i % freq == 0 (transformers and vLLM divide by
        # them: a 0 is a ZeroDivisionError there, not "every layer")
        step = positive(first_field(cfg, "decoder_sparse_step", default=1), where, "decoder_sparse_step")
        freq = positive(first_field(cfg, "moe_layer_freq", default=1), where, "moe_layer_freq")
        _check_expert_groups(cfg, where, num_experts, top_k)
        dense_only = set(check_layer_indices(cfg.get("mlp_only_layers") or [], where, "mlp_only_layers", layers))
        first_dense = int(first_field(cfg, "first_k_dense_replace", default=0))
        moe_layers = sum(
            1
            for i in range(layers)
            if i not in dense_only and i >= first_dense and (i + 1) % step == 0 and i % freq == 0
        )
        if mt == "llama4_text":  # its own rule: moe_layers, else every interleave_moe_layer_step-th layer
            moe_layers, shared_inter = llama4_moe_layers(cfg, where, layers), expert_inter
        if mt == "ernie4_5_moe":
            moe_layers = ernie_moe_layers(cfg, where, layers)
        if mt == "jamba":
            moe_layers = jamba_moe_layers(cfg, where, layers)
    layer_types = cfg.get("layer_types") or []
    # latent attention attends over every cached token: the engines apply no sliding_window to it (vLLM
    # mla_attention.py MLAAttention builds its impl with sliding_window=None and an MLAAttentionSpec, a full-attention
    # KV spec; transformers' DeepseekV3Config has no sliding_window field), so a config's sliding_window is ignored here
    # as there (it had been costed as a 4,096-token window on every layer)
    windows = {k: v for k, v in cfg.items() if k != "sliding_window"} if mt in LATENT_ATTENTION_TYPES else cfg
    window, windowed_layers, chunked, pattern = window_layers(windows, where, mt, layers)
    # gpt-oss's attention sinks (one learned logit per head) and attention biases change no cost worth modelling
    act_field = "hidden_act" if cfg.get("hidden_act") is not None else "hidden_activation"
    act = str(first_field(cfg, "hidden_act", "hidden_activation", default="silu")).lower()
    if act not in MODELLED_ACTS:
        raise PhasewiseError(f"{where}: field {act_field} '{act}' is not modelled for model_type '{mt}' "
                             f"(allowed: {', '.join(MODELLED_ACTS)})")
    latent = {}
    head_dim = int(first_field(cfg, "head_dim", default=hidden // heads))
    if mt in LATENT_ATTENTION_TYPES:
        rope = int(require_field(cfg, where, "qk_rope_head_dim"))
        head_dim = int(require_field(cfg, where, "qk_nope_head_dim")) + rope
        latent = dict(q_lora_rank=int(first_field(cfg, "q_lora_rank", default=0)),
                      kv_lora_rank=int(require_field(cfg, where, "kv_lora_rank")), qk_rope_head_dim=rope,
                      v_head_dim=int(require_field(cfg, where, "v_head_dim")),
                      mtp_layers=int(first_field(cfg, "num_nextn_predict_layers", default=0)))
        if mt in SPARSE_LATENT_TYPES:
            latent.update(sparse_attention_topk=int(require_field(cfg, where, "index_topk")),
                          indexer_heads=int(require_field(cfg, where, "index_n_heads")),
                          indexer_head_dim=int(require_field(cfg, where, "index_head_dim")))
    if mt in LINEAR_HYBRID_TYPES:
        latent = gated_deltanet_fields(cfg, where, layers, layer_types)
    if mt == "jamba":
        latent = mamba1_fields(cfg, where, layers)
    if mt in LIGHTNING_TYPES:
        latent = lightning_fields(cfg, where, layers)
    if mt in LFM2_TYPES:
        latent = short_conv_fields(cfg, where, layer_types)
    if mt == "kimi_linear":
        latent.update(kda_fields(cfg, where, layers), attention_rope=not cfg.get("mla_use_nope", False))
    if SPEC_FIELDS in cfg:  # a family reader's own (specs/hf_gemma4.py, specs/hf_mimo.py)
        latent.update(cfg[SPEC_FIELDS])
    latent.setdefault("layer_pattern", pattern)  # a linear hybrid's own, else the windowed layers'
    return ModelSpec(
        name=name,
        model_type=mt,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(first_field(cfg, "num_key_value_heads", default=heads)),
        head_dim=head_dim,
        intermediate_size=int(first_field(cfg, "intermediate_size_mlp" if mt == "llama4_text" else "intermediate_size",
                                     default=0))
        if moe_layers < layers
        else 0,
        vocab_size=int(require_field(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", mt in TIED_BY_DEFAULT)),
        # gated MLPs: SwiGLU (Llama, Mistral, Qwen, DeepSeek) and Gemma's GeGLU (gate_proj, up_proj, down_proj)
        mlp_gated=mt not in NON_GATED_TYPES and (act in GATED_ACTS or mt in LLAMA_STYLE_TYPES
                                                 or mt in LATENT_ATTENTION_TYPES),
        num_experts=num_experts,
        experts_per_token=top_k,
        expert_intermediate_size=expert_inter,
        shared_expert_intermediate_size=shared_inter,
        num_moe_layers=moe_layers,
        sliding_window=int(window) if window else None,
        sliding_window_layers=windowed_layers if window else None,
        chunked_attention=chunked,
        # the context the engines serve (vLLM's max_model_len): a YaRN-extended one where the config extends it
        max_position_embeddings=serving_context(cfg) or int(first_field(cfg, "max_position_embeddings", default=0)),
        norm="layer" if mt in LAYER_NORM_TYPES else "rms",
        qk_norm=mt in QK_NORM_TYPES or (mt in QK_NORM_FLAG_TYPES
                                        and bool(cfg.get("use_qk_norm", QK_NORM_FLAG_TYPES[mt]))),
        v_norm=mt in V_NORM_TYPES,
        post_norms=2 if mt in SANDWICH_NORM_TYPES else 0,
        logit_softcap=mt in LOGIT_SOFTCAP_DEFAULTS and cfg.get("final_logit_softcapping",
                                                                LOGIT_SOFTCAP_DEFAULTS[mt]) is not None,
        # MiniMax-M2's "per_layer" QK norm spans every head (Qwen3's default is one norm per head)
        qk_norm_across_heads=bool(cfg.get("use_qk_norm")) and str(cfg.get("qk_norm_type", "")).lower() == "per_layer",
        **latent,
    )
