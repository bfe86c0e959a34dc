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
This module dispatches on model_type (the groupings: specs/hf_families.py) and fills in what config classes default;
the Llama-style parser is specs/hf_llama_style.py, the fields refused before any parser reads them
specs/hf_refusals.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.specs.hf_classic import bloom_spec, olmo_spec, opt_spec
from phasewise.specs.hf_deepseek_v4 import deepseek_v4_spec
from phasewise.specs.hf_families import (
    FLAT_WRAPPER_TYPES,
    HUNYUAN_TYPES,
    MAMBA_HYBRID_TYPES,
    NOT_MODELLED,
    SUPPORTED_TYPES,
    TEXT_WRAPPER_TYPES,
)
from phasewise.specs.hf_gemma4 import GEMMA4_DEFAULTS, gemma4_config
from phasewise.specs.hf_gpt import GPT_TYPES, gpt_spec
from phasewise.specs.hf_layers import first_field, hunyuan_fields, require_field
from phasewise.specs.hf_llama_style import llama_style_spec
from phasewise.specs.hf_mamba import granite_hybrid_spec, nemotron_h_spec
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
    bamba_config,
    falcon_h1_spec,
    lfm2_config,
)
from phasewise.specs.hf_refusals import refuse_mistyped_fields, refuse_unread_fields
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
# Kimi Linear (moonshotai kimi_linear, vLLM models/kimi_linear.py): latent attention (NoPE: mla_use_nope) on the
# layers linear_attn_config.full_attn_layers names, KDA on its kda_layers (both 1-based), a DeepSeek-style MoE that
# names its fields num_experts_per_token and num_shared_experts. Kimi K3's additions on the same model_type
# (routed_expert_hidden_size: a latent MoE; attn_res_block_size: attention residuals; mla_use_output_gate) are
# refused by name (specs/hf_refusals.py KIMI_LINEAR_UNREAD)
KIMI_LINEAR_NAMES = {"num_experts_per_token": "num_experts_per_tok", "num_shared_experts": "n_shared_experts"}
# Fields a config.json may hold NaN or Infinity in, which no parser here reads: the Mamba-2 families' dt clamp
# (transformers' Mamba2Config, NemotronHConfig, BambaConfig, FalconH1Config, GraniteMoeHybridConfig default
# time_step_limit = (0.0, float("inf")), saved by Python's json as [0.0, Infinity]: Nemotron-H-56B's and Nemotron 3
# Super's files hold it). A non-finite number in any other field is refused by name (specs/reading.py).
NON_FINITE_FIELDS = ("time_step_limit",)
# The wrappers whose vision encoder's weights are counted (specs/hf_vision.py); Kimi-K2.5's (MoonViT) and GLM-4.5V's
# are not. Qwen3.5 / 3.6 (qwen3_5, qwen3_5_moe) describe theirs with Qwen3-VL's fields (a public Qwen3.6-35B-A3B
# config.json's vision_config: depth 27, hidden 1152, intermediate 4304, patch 16, out_hidden_size 2048, 2,304
# positions; no deepstack_visual_indexes)
ENCODERS = {"qwen2_vl": qwen2_vl_encoder, "qwen2_5_vl": qwen2_5_vl_encoder, "qwen3_vl": qwen3_vl_encoder,
            "qwen3_vl_moe": qwen3_vl_encoder, "qwen3_5": qwen3_vl_encoder, "qwen3_5_moe": qwen3_vl_encoder,
            "mistral3": pixtral_encoder, "gemma3": siglip_encoder, "llama4": llama4_encoder,
            "internvl_chat": internvl_encoder, "internvl": internvl_encoder, "gemma4": gemma4_encoder}


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
    refuse_mistyped_fields(cfg, where, mt)
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
    refuse_unread_fields(cfg, where, mt)
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
            spec = llama_style_spec(name, cfg, where, mt)
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


def mtp_module_count(cfg: dict[str, Any], mt: str) -> int:
    """The MTP modules a checkpoint's config.json counts (the first of MTP_FIELDS it sets), 0 for none."""
    count = first_field(cfg, *MTP_FIELDS, default=0)
    if not count and mt in MIMO_TYPES:
        return MIMO_V2_MTP_MODULES
    return int(count) if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
