"""Transformer architectures described by the Hugging Face config.json fields that set their cost.

A catalog entry (specs/data/models.yaml) holds the config.json fields verbatim, so a user's own
config.json goes through the same parser: `load_model("path/to/config.json")`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from phasewise.errors import PhasewiseError, pydantic_message, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file


class ModelSpec(BaseModel):
    """The shape of a decoder-only transformer, in the units the cost model needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model_type: str
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(ge=0)  # dense MLP width (0 when every layer is MoE)
    vocab_size: int = Field(gt=0)
    tie_embeddings: bool = False
    mlp_gated: bool = True  # SwiGLU-style gate + up + down (3 matrices) vs up + down (2)
    causal: bool = True  # False for diffusion LMs (bidirectional attention)
    num_experts: int = Field(default=0, ge=0)  # routed experts (0 = dense)
    experts_per_token: int = Field(default=0, ge=0)
    expert_intermediate_size: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    num_moe_layers: int = Field(default=0, ge=0)
    sliding_window: int | None = Field(default=None, gt=0)
    max_position_embeddings: int = Field(default=0, ge=0)
    norm: Literal["rms", "layer"] = "rms"

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        if self.num_experts:
            if not 0 < self.experts_per_token <= self.num_experts:
                raise ValueError(
                    f"num_experts_per_tok={self.experts_per_token} must be in 1..{self.num_experts}"
                )
            if self.expert_intermediate_size <= 0:
                raise ValueError("an MoE model needs a positive expert intermediate size")
            if self.num_moe_layers > self.num_layers:
                raise ValueError("more MoE layers than layers")
        if self.num_moe_layers < self.num_layers and self.intermediate_size <= 0:
            raise ValueError("dense layers need a positive intermediate_size")
        return self

    # --- parameter counts (per layer unless named otherwise) ---------------------------------
    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attention_params(self) -> int:
        """QKV and O projection weights of one layer."""
        return self.hidden_size * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden_size

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.mlp_gated else 2

    @property
    def dense_mlp_params(self) -> int:
        return self.mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def moe_layer_params(self) -> int:
        """All routed + shared expert weights and the router of one MoE layer."""
        per_expert = self.mlp_matrices * self.hidden_size * self.expert_intermediate_size
        shared = self.mlp_matrices * self.hidden_size * self.shared_expert_intermediate_size
        return self.num_experts * per_expert + shared + self.hidden_size * self.num_experts

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        lm_head = 0 if self.tie_embeddings else self.embedding_params
        return (
            self.num_layers * self.attention_params
            + self.num_dense_layers * self.dense_mlp_params
            + self.num_moe_layers * self.moe_layer_params
            + self.embedding_params
            + lm_head
        )

    @property
    def active_params(self) -> int:
        """Parameters one token touches (MoE: top-k experts + shared)."""
        if not self.num_experts:
            return self.total_params
        per_expert = self.mlp_matrices * self.hidden_size * self.expert_intermediate_size
        shared = self.mlp_matrices * self.hidden_size * self.shared_expert_intermediate_size
        active_moe = self.experts_per_token * per_expert + shared + self.hidden_size * self.num_experts
        return self.total_params - self.num_moe_layers * (self.moe_layer_params - active_moe)


# --- parsing Hugging Face config.json ----------------------------------------------------------

_GATED_ACTS = {"silu", "swiglu", "swish", "gelu_pytorch_tanh_gated"}


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def _require(cfg: dict[str, Any], where: str, *keys: str) -> Any:
    value = _first(cfg, *keys)
    if value is None:
        raise PhasewiseError(f"{where}: missing field {' or '.join(keys)}")
    return value


def from_hf_config(name: str, cfg: dict[str, Any], where: str | None = None) -> ModelSpec:
    """Build a ModelSpec from the fields of a Hugging Face config.json (any of the common families)."""
    where = where or f"model '{name}'"
    mt = str(cfg.get("model_type", "")).lower()
    try:
        if mt == "opt":
            spec = _opt(name, cfg, where)
        elif mt == "bloom":
            spec = _bloom(name, cfg, where)
        elif mt in ("llada", "olmo") or "d_model" in cfg:
            spec = _olmo_style(name, cfg, where)
        else:
            spec = _llama_style(name, cfg, where, mt)
    except ValidationError as exc:
        raise pydantic_message(where, exc) from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PhasewiseError):
            raise
        raise PhasewiseError(f"{where}: {exc}") from None
    return spec


def _llama_style(name: str, cfg: dict[str, Any], where: str, mt: str) -> ModelSpec:
    hidden = int(_require(cfg, where, "hidden_size"))
    heads = int(_require(cfg, where, "num_attention_heads"))
    layers = int(_require(cfg, where, "num_hidden_layers"))
    num_experts = int(_first(cfg, "num_local_experts", "num_experts", "n_routed_experts", default=0))
    top_k = int(_first(cfg, "num_experts_per_tok", default=0)) if num_experts else 0
    moe_layers = 0
    expert_inter = 0
    shared_inter = 0
    if num_experts:
        expert_inter = int(_first(cfg, "moe_intermediate_size", "intermediate_size", default=0))
        shared_inter = int(_first(cfg, "shared_expert_intermediate_size", default=0))
        n_shared = int(_first(cfg, "n_shared_experts", default=0))
        if n_shared and not shared_inter:
            shared_inter = n_shared * expert_inter
        step = int(_first(cfg, "decoder_sparse_step", default=1)) or 1
        dense_only = set(cfg.get("mlp_only_layers") or [])
        first_dense = int(_first(cfg, "first_k_dense_replace", default=0))
        moe_layers = sum(
            1
            for i in range(layers)
            if i not in dense_only and i >= first_dense and (i + 1) % step == 0
        )
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False:
        window = None
    act = str(_first(cfg, "hidden_act", "hidden_activation", default="silu")).lower()
    return ModelSpec(
        name=name,
        model_type=mt or "llama",
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(_first(cfg, "num_key_value_heads", default=heads)),
        head_dim=int(_first(cfg, "head_dim", default=hidden // heads)),
        intermediate_size=int(_first(cfg, "intermediate_size", default=0))
        if moe_layers < layers
        else 0,
        vocab_size=int(_require(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        mlp_gated=act in _GATED_ACTS or mt in ("llama", "mistral", "mixtral", "qwen2", "qwen3"),
        num_experts=num_experts,
        experts_per_token=top_k,
        expert_intermediate_size=expert_inter,
        shared_expert_intermediate_size=shared_inter,
        num_moe_layers=moe_layers,
        sliding_window=int(window) if window else None,
        max_position_embeddings=int(_first(cfg, "max_position_embeddings", default=0)),
    )


def _opt(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    hidden = int(_require(cfg, where, "hidden_size"))
    heads = int(_require(cfg, where, "num_attention_heads"))
    return ModelSpec(
        name=name,
        model_type="opt",
        num_layers=int(_require(cfg, where, "num_hidden_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=int(_require(cfg, where, "ffn_dim")),
        vocab_size=int(_require(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        mlp_gated=False,
        max_position_embeddings=int(_first(cfg, "max_position_embeddings", default=0)),
        norm="layer",
    )


def _bloom(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    hidden = int(_require(cfg, where, "hidden_size", "n_embed"))
    heads = int(_require(cfg, where, "n_head", "num_attention_heads"))
    return ModelSpec(
        name=name,
        model_type="bloom",
        num_layers=int(_require(cfg, where, "n_layer", "num_hidden_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=4 * hidden,
        vocab_size=int(_require(cfg, where, "vocab_size")),
        tie_embeddings=True,
        mlp_gated=False,
        norm="layer",
    )


def _olmo_style(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """OLMo-style names (LLaDA): d_model, n_heads, n_kv_heads, n_layers, mlp_hidden_size."""
    hidden = int(_require(cfg, where, "d_model"))
    heads = int(_require(cfg, where, "n_heads"))
    mt = str(cfg.get("model_type", "olmo")).lower()
    inter = _first(cfg, "mlp_hidden_size")
    if inter is None:
        inter = int(_require(cfg, where, "mlp_ratio")) * hidden
    act = str(_first(cfg, "activation_type", default="swiglu")).lower()
    return ModelSpec(
        name=name,
        model_type=mt,
        num_layers=int(_require(cfg, where, "n_layers")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(_first(cfg, "n_kv_heads", "effective_n_kv_heads", default=heads)),
        head_dim=hidden // heads,
        intermediate_size=int(inter),
        vocab_size=int(_first(cfg, "embedding_size", "vocab_size")),
        tie_embeddings=bool(cfg.get("weight_tying", False)),
        mlp_gated=act in _GATED_ACTS,
        causal=mt != "llada" and not cfg.get("bidirectional", False),
        max_position_embeddings=int(_first(cfg, "max_sequence_length", default=0)),
    )


# --- catalog --------------------------------------------------------------------------------------


def catalog_names() -> dict[str, str]:
    """Lower-case name or alias -> canonical catalog id."""
    names: dict[str, str] = {}
    for key, entry in packaged("models.yaml")["models"].items():
        names[key.lower()] = key
        names[key.split("/")[-1].lower()] = key
        for alias in entry.get("aliases") or []:
            names[alias.lower()] = key
            names[alias.split("/")[-1].lower()] = key
    return names


def load_model(name_or_path: str) -> ModelSpec:
    """A catalog model by HF id or alias (case-insensitive), or a config.json / YAML file by path."""
    if looks_like_path(name_or_path):
        cfg = read_user_file(name_or_path, "model config")
        if isinstance(cfg.get("config"), dict):  # a catalog-format entry
            cfg = cfg["config"]
        return from_hf_config(name_or_path, cfg, where=f"model config '{name_or_path}'")
    names = catalog_names()
    key = names.get(name_or_path.lower())
    if key is None:
        raise unknown_name("model", name_or_path, packaged("models.yaml")["models"])
    return from_hf_config(key, packaged("models.yaml")["models"][key]["config"])
