"""Mamba-2 hybrids from their config.json: NVIDIA Nemotron-H (hybrid_override_pattern: a letter per block, M for
Mamba-2, * for attention, - for an MLP, E for a MoE) and IBM Granite 4.0-H (transformers granitemoehybrid: layer_types
names each layer's mixer, every layer has the MLP or MoE)."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import (
    GATED_ACTS,
    first_field,
    linear_pattern,
    nemotron_blocks,
    positive,
    require_field,
)
from phasewise.specs.model import ModelSpec

# Granite 4.0-H (transformers granitemoehybrid): layer_types names each layer's mixer, every layer has the MLP
GRANITE_LAYER_KINDS = ("mamba", "attention")


def nemotron_h_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """Nemotron-H / Nemotron 3 (transformers NemotronHConfig): each layer one block, a Mamba-2 mixer (M), attention
    (*), a non-gated squared-ReLU MLP (-) or a MoE of such experts with a shared one (E). Each MLP or MoE block is
    paired with a mixer block into one layer of the cost model; the mixers left over are MLP-free layers (an MLP
    block without a mixer to pair with is not modelled). Mamba-2: mamba_num_heads heads of mamba_head_dim, n_groups
    groups sharing B and C of ssm_state_size, a conv of conv_kernel taps, chunked prefill in chunks of chunk_size.
    A latent MoE (moe_latent_size: Nemotron 3 Super) runs its routed experts in the latent width (vLLM
    models/nemotron_h.py NemotronHMoE: fc1_latent_proj / fc2_latent_proj replicated around the fused experts; the
    shared expert, moe_shared_expert_intermediate_size x n_shared_experts wide, on the hidden state)."""
    blocks = nemotron_blocks(cfg, where)
    mixers, mlps = blocks["mamba"] + blocks["attention"], blocks["mlp"] + blocks["moe"]
    if mlps > mixers:
        raise PhasewiseError(f"{where}: {mlps} MLP / MoE blocks against {mixers} Mamba / attention blocks: MLP "
                             "blocks without a mixer to pair with are not modelled")
    hidden = int(require_field(cfg, where, "hidden_size"))
    heads = int(require_field(cfg, where, "num_attention_heads"))
    moe = {}
    if blocks["moe"]:
        # E blocks need positive expert fields (a 0 or false left a MoE without experts, a ZeroDivisionError later)
        expert_inter, experts, top_k = (positive(require_field(cfg, where, key), where, key) for key in
                                        ("moe_intermediate_size", "n_routed_experts", "num_experts_per_tok"))
        moe = dict(num_experts=experts, experts_per_token=top_k,
                   expert_intermediate_size=expert_inter, num_moe_layers=blocks["moe"],
                   # the shared expert: moe_shared_expert_intermediate_size x n_shared_experts (vLLM NemotronHMoE)
                   shared_expert_intermediate_size=int(first_field(cfg, "moe_shared_expert_intermediate_size",
                                                                   default=0))
                   * int(first_field(cfg, "n_shared_experts", default=1)),
                   moe_latent_size=int(first_field(cfg, "moe_latent_size", default=0)))
    act = str(first_field(cfg, "mlp_hidden_act", default="relu2")).lower()
    return ModelSpec(
        name=name, model_type="nemotron_h", num_layers=mixers, hidden_size=hidden, num_heads=heads,
        # its decoder layers are the blocks (vLLM nemotron_h.py: make_layers(len(hybrid_override_pattern)), which
        # pipeline stages split), num_hidden_layers of them
        num_hidden_layers=sum(blocks.values()),
        num_kv_heads=int(first_field(cfg, "num_key_value_heads", default=heads)),
        head_dim=int(first_field(cfg, "head_dim", "attention_head_dim", default=hidden // heads)),
        intermediate_size=int(require_field(cfg, where, "intermediate_size")) if blocks["mlp"] else 0,
        vocab_size=int(require_field(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        mlp_gated=act in GATED_ACTS,
        max_position_embeddings=int(first_field(cfg, "max_position_embeddings", default=0)),
        mlp_free_layers=mixers - mlps, attention_rope=False,  # NemotronHAttention rotates neither q nor k
        # MTP modules (Nemotron 3 Super: one, an attention and a MoE block, mtp_hybrid_override_pattern "*E")
        mtp_layers=int(first_field(cfg, "num_nextn_predict_layers", default=0)),
        linear_attention_layers=blocks["mamba"], linear_recurrence="mamba2",
        linear_key_heads=int(require_field(cfg, where, "n_groups")),
        linear_value_heads=int(require_field(cfg, where, "mamba_num_heads")),
        linear_head_fields=("n_groups", "mamba_num_heads"),
        linear_key_head_dim=int(require_field(cfg, where, "ssm_state_size")),
        linear_value_head_dim=int(require_field(cfg, where, "mamba_head_dim")),
        linear_conv_kernel=int(require_field(cfg, where, "conv_kernel")),
        # transformers NemotronHConfig's default chunk_size: 128
        linear_chunk_tokens=int(first_field(cfg, "chunk_size", default=128)),
        **moe,
    )


def granite_hybrid_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """Granite 4.0-H (transformers GraniteMoeHybridConfig): layer_types names each layer's mixer, a Mamba-2
    (mamba_n_heads heads of mamba_d_head, or "auto": mamba_expand x hidden over the heads; mamba_n_groups groups
    sharing B and C of mamba_d_state; a conv of mamba_d_conv taps; chunks of mamba_chunk_size) or softmax attention
    (no RoPE with position_embedding_type "nope"); every layer then runs a gated MoE of num_local_experts
    (intermediate_size each) beside a gated shared MLP of shared_intermediate_size, or that MLP alone without
    experts (num_local_experts 0: Granite 4.0-H-1B, -micro, whose num_experts_per_tok 0 is then not read)."""
    kinds = cfg.get("layer_types")
    if not isinstance(kinds, list) or not kinds:
        raise PhasewiseError(f"{where}: missing field layer_types (each layer's mixer: "
                             f"{', '.join(GRANITE_LAYER_KINDS)})")
    layers = int(require_field(cfg, where, "num_hidden_layers"))
    if layers != len(kinds):
        raise PhasewiseError(f"{where}: field layer_types names {len(kinds)} layers but num_hidden_layers is {layers}")
    hidden = int(require_field(cfg, where, "hidden_size"))
    heads = int(require_field(cfg, where, "num_attention_heads"))
    mamba_heads = positive(require_field(cfg, where, "mamba_n_heads"), where, "mamba_n_heads")
    head = require_field(cfg, where, "mamba_d_head")
    head_dim = int(require_field(cfg, where, "mamba_expand")) * hidden // mamba_heads if head == "auto" else int(head)
    shared = int(require_field(cfg, where, "shared_intermediate_size"))
    experts = int(first_field(cfg, "num_local_experts", default=0))
    moe = dict(num_experts=experts, experts_per_token=int(require_field(cfg, where, "num_experts_per_tok")),
               expert_intermediate_size=int(require_field(cfg, where, "intermediate_size")),
               shared_expert_intermediate_size=shared, num_moe_layers=layers) if experts else {}
    position = str(first_field(cfg, "position_embedding_type", default="rope")).lower()
    if position not in ("rope", "nope"):
        raise PhasewiseError(f"{where}: field position_embedding_type '{position}' is not one of rope, nope")
    return ModelSpec(
        name=name, model_type="granitemoehybrid", num_layers=layers, hidden_size=hidden, num_heads=heads,
        num_kv_heads=int(first_field(cfg, "num_key_value_heads", default=heads)), head_dim=hidden // heads,
        intermediate_size=0 if experts else shared, vocab_size=int(require_field(cfg, where, "vocab_size")),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", True)), mlp_gated=True,
        max_position_embeddings=int(first_field(cfg, "max_position_embeddings", default=0)),
        attention_rope=position == "rope",
        linear_attention_layers=kinds.count("mamba"), linear_recurrence="mamba2",
        layer_pattern=linear_pattern((i for i, kind in enumerate(kinds) if kind == "mamba"), layers),
        linear_key_heads=int(require_field(cfg, where, "mamba_n_groups")), linear_value_heads=mamba_heads,
        linear_head_fields=("mamba_n_groups", "mamba_n_heads"),
        linear_key_head_dim=int(require_field(cfg, where, "mamba_d_state")), linear_value_head_dim=head_dim,
        linear_conv_kernel=int(require_field(cfg, where, "mamba_d_conv")),
        linear_chunk_tokens=int(first_field(cfg, "mamba_chunk_size", default=256)),
        **moe,
    )
