"""config.json model_types grouped by the parser that reads them (specs/hf_config.py from_hf_config dispatches on
these): the Llama-style names, DeepSeek's latent attention, the linear and Mamba-2 hybrids, the multimodal wrappers
around a supported language model, and the families refused by name."""

from __future__ import annotations

from phasewise.specs.hf_gpt import GPT_TYPES
from phasewise.specs.hf_mimo import MIMO_TYPES
from phasewise.specs.hf_nas import NAS_TYPES
from phasewise.specs.hf_recurrent import LFM2_TYPES, LIGHTNING_TYPES

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
# latent attention with DeepSeek sparse attention's indexer (index_topk, index_n_heads, index_head_dim)
SPARSE_LATENT_TYPES = ("deepseek_v32", "glm_moe_dsa")
LATENT_ATTENTION_TYPES = ("deepseek_v2", "deepseek_v3", "kimi_k2", "kimi_linear") + SPARSE_LATENT_TYPES
# Llama-style fields plus gated-DeltaNet linear-attention layers (layer_types "linear_attention", or every layer but
# each full_attention_interval-th) and gated softmax attention (transformers qwen3_next, qwen3_5(_moe)_text)
LINEAR_HYBRID_TYPES = ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")
# Mamba-2 hybrids: Nemotron-H / Nemotron 3 (transformers nemotron_h; single-block layers in a pattern) and
# Granite 4.0-H (granitemoehybrid; a Mamba-2 or attention mixer and a MoE + shared MLP in every layer)
MAMBA_HYBRID_TYPES = ("nemotron_h", "granitemoehybrid")
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
