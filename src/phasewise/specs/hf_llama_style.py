"""The Llama-style parser (specs/hf_config.py dispatches to it): a config.json in the common field names
(hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size; MoE as Mixtral / Qwen / DeepSeek
name it), DeepSeek's latent attention and its sparse indexer, and the hybrids whose recurrent layers a family reader
adds (specs/hf_linear_attention.py, specs/hf_recurrent.py), read into a ModelSpec; the norms, activation and tied
embeddings each model_type implies."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_families import (
    HUNYUAN_TYPES,
    LATENT_ATTENTION_TYPES,
    LINEAR_HYBRID_TYPES,
    LLAMA_STYLE_TYPES,
    SPARSE_LATENT_TYPES,
)
from phasewise.specs.hf_layers import (
    GATED_ACTS,
    SPEC_FIELDS,
    check_layer_indices,
    ernie_moe_layers,
    first_field,
    llama4_moe_layers,
    positive,
    require_field,
    serving_context,
    window_layers,
)
from phasewise.specs.hf_linear_attention import gated_deltanet_fields, kda_fields
from phasewise.specs.hf_recurrent import (
    LFM2_TYPES,
    LIGHTNING_TYPES,
    jamba_moe_layers,
    lightning_fields,
    mamba1_fields,
    short_conv_fields,
)
from phasewise.specs.model import ModelSpec

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
# The MLP activations the Llama-style parser costs (an elementwise function of the gate, or of fc1 in the ungated
# MLPs of NON_GATED_TYPES: their cost is the matmuls around it): what the supported checkpoints name. Another one
# (e.g. Nemotron's relu2, whose MLP is ungated) is refused by name; vLLM refuses it too (llama.py LlamaMLP: "Only
# silu is supported for now"; gemma.py _get_gemma_act_fn: gelu or gelu_pytorch_tanh)
MODELLED_ACTS = tuple(sorted(GATED_ACTS)) + ("gelu", "gelu_pytorch_tanh", "gelu_new", "gelu_fast")


def _check_expert_groups(cfg: dict[str, Any], where: str, experts: int, top_k: int) -> dict[str, int]:
    """DeepSeek-style grouped routing (n_group groups of the routed experts, the best topk_group groups kept, top-k
    chosen among their experts) as ModelSpec's n_group and topk_group (topk_group n_group where not given; {}
    without n_group: no group routing), refused where it cannot run: vLLM's grouped_topk views the router's scores
    as n_group groups of equal size (n_routed_experts % n_group == 0) and keeps topk_group of them (<= n_group),
    among whose experts the top-k are picked (num_experts_per_tok <= topk_group x experts per group)."""
    groups, kept = cfg.get("n_group"), cfg.get("topk_group")
    if groups is None:
        return {}
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
    return {"n_group": groups, "topk_group": kept}


def llama_style_spec(name: str, cfg: dict[str, Any], where: str, mt: str) -> ModelSpec:
    hidden = int(require_field(cfg, where, "hidden_size"))
    heads = int(require_field(cfg, where, "num_attention_heads"))
    layers = int(require_field(cfg, where, "num_hidden_layers"))
    num_experts = int(first_field(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0))
    top_k = int(first_field(cfg, "num_experts_per_tok", default=0)) if num_experts else 0
    moe_layers = 0
    expert_groups: dict[str, int] = {}
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
        expert_groups = _check_expert_groups(cfg, where, num_experts, top_k)
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
        **expert_groups,
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
