"""What makes a ModelSpec consistent: the checks its validator runs (specs/model.py), each a one-line ValueError
naming the config.json fields at fault, which the parser (specs/hf_config.py) turns into a one-line error."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.specs.model import ModelSpec

# ModelSpec.layer_pattern's letters
LAYER_KINDS = {"F": "full softmax attention", "W": "windowed softmax attention", "L": "a linear recurrence",
               "N": "no attention (an MLP alone)"}


def check_model(spec: ModelSpec) -> None:
    """Raise ValueError where the fields contradict each other or name a combination the cost model does not
    cover."""
    if spec.num_heads % spec.num_kv_heads:
        raise ValueError(
            f"num_attention_heads={spec.num_heads} is not a multiple of "
            f"num_key_value_heads={spec.num_kv_heads}"
        )
    if spec.num_experts:
        if not 0 < spec.experts_per_token <= spec.num_experts:
            raise ValueError(
                f"num_experts_per_tok={spec.experts_per_token} must be in 1..{spec.num_experts}"
            )
        if spec.expert_intermediate_size <= 0:
            raise ValueError("an MoE model needs a positive expert intermediate size")
        if spec.num_moe_layers > spec.num_layers:
            raise ValueError("more MoE layers than layers")
    if spec.num_moe_layers and not spec.num_experts:
        raise ValueError(f"{spec.num_moe_layers} MoE layers need routed experts (num_experts / n_routed_experts "
                         "is 0)")
    if spec.moe_latent_size and not spec.num_experts:
        raise ValueError("moe_latent_size belongs to a MoE: n_routed_experts is missing")
    if spec.num_moe_layers + spec.mlp_free_layers > spec.num_layers:
        raise ValueError(f"num_moe_layers={spec.num_moe_layers} and mlp_free_layers={spec.mlp_free_layers} "
                         f"exceed the {spec.num_layers} layers")
    if spec.attention_free_layers:
        if spec.attention_free_layers >= spec.num_layers:
            raise ValueError(f"attention_free_layers={spec.attention_free_layers} leaves none of the "
                             f"{spec.num_layers} layers attending")
        if spec.attention_free_layers + spec.mlp_free_layers > spec.num_layers:
            raise ValueError("a layer with neither attention nor an MLP is no layer: attention_free_layers + "
                             "mlp_free_layers exceed num_hidden_layers")
        if (spec.linear_attention_layers or spec.sliding_window_layers or spec.kv_shared_layers
                or spec.compressed is not None or spec.latent_attention or spec.parallel_block_reduce):
            raise ValueError("attention_free_layers is modelled beside plain softmax layers only (no linear, "
                             "windowed, KV-shared, compressed or latent attention)")
    if spec.parallel_block_reduce and (spec.num_moe_layers or spec.mlp_free_layers or spec.linear_attention_layers):
        raise ValueError("parallel_block_reduce (attention and MLP summed before one all-reduce) is modelled for "
                         "dense softmax-attention layers only")
    if spec.num_dense_layers > 0 and spec.intermediate_size <= 0:
        raise ValueError("dense layers need a positive intermediate_size")
    if spec.kv_lora_rank and not 0 < spec.qk_rope_head_dim < spec.head_dim:
        raise ValueError(f"latent attention needs 0 < qk_rope_head_dim < head_dim={spec.head_dim} "
                         f"(got qk_rope_head_dim={spec.qk_rope_head_dim})")
    if spec.sliding_window_layers is not None and (
            not spec.sliding_window or spec.sliding_window_layers > spec.num_layers):
        raise ValueError(f"sliding_window_layers={spec.sliding_window_layers} needs a sliding_window and at "
                         f"most {spec.num_layers} layers")
    if spec.window_head_dim or spec.window_kv_heads:
        if not spec.window_layer_share:
            raise ValueError("window_head_dim / window_kv_heads give a hybrid stack's windowed layers their own "
                             "geometry: sliding_window_layers must be between 1 and num_layers - 1")
        if spec.num_heads % spec.window_layer_kv_heads:
            raise ValueError(f"num_attention_heads={spec.num_heads} is not a multiple of the windowed layers' "
                             f"{spec.window_layer_kv_heads} KV heads")
    if (spec.window_own_geometry or spec.value_from_key) and (spec.latent_attention
                                                               or spec.linear_attention_layers):
        raise ValueError("windowed layers of their own geometry and values from the key projection are modelled "
                         "on plain softmax attention (no latent or linear attention)")
    if spec.kv_shared_layers:
        if spec.kv_shared_window_layers > min(spec.kv_shared_layers, spec.hybrid_windowed_layers):
            raise ValueError(f"kv_shared_window_layers={spec.kv_shared_window_layers} exceeds the KV-shared or "
                             "the windowed layers")
        if (spec.kv_shared_layers > spec.kv_shared_window_layers and spec.full_kv_layers < 1) or (
                spec.kv_shared_window_layers and spec.window_kv_layers < 1):
            raise ValueError("a kind of layer whose KV is shared needs an unshared layer of that kind storing it")
        if spec.latent_attention or spec.linear_attention_layers:
            raise ValueError("KV-shared layers are modelled on plain softmax attention")
    if spec.wide_mlp_layers > spec.num_dense_layers:
        raise ValueError(f"wide_mlp_layers={spec.wide_mlp_layers} exceeds the {spec.num_dense_layers} dense layers")
    if bool(spec.per_layer_input_size) != bool(spec.per_layer_input_vocab):
        raise ValueError("per-layer embeddings need both their width and their vocabulary")
    if spec.value_from_key and spec.v_head_dim not in (0, spec.head_dim):
        raise ValueError(f"values from the key projection are head_dim={spec.head_dim} wide, not "
                         f"v_head_dim={spec.v_head_dim}")
    if spec.linear_attention_layers:
        if spec.linear_attention_layers >= spec.num_layers:
            raise ValueError(f"linear_attention_layers={spec.linear_attention_layers}: at least one of the "
                             f"{spec.num_layers} layers must keep softmax attention (a stack of linear-attention "
                             "layers only is not modelled)")
        mamba1 = spec.linear_recurrence == "mamba1"
        if spec.linear_recurrence == "short_conv":
            if (spec.linear_key_heads or spec.linear_key_head_dim or spec.linear_value_head_dim != 1
                    or min(spec.linear_value_heads, spec.linear_conv_kernel) <= 0):
                raise ValueError("short-conv layers are channels of width 1 (linear_value_head_dim 1) with no key "
                                 "heads and no state, and a conv of positive taps (conv_L_cache)")
        elif min(spec.linear_value_heads, spec.linear_key_head_dim, spec.linear_value_head_dim) <= 0 or (
                spec.linear_key_heads <= 0 and not mamba1):
            raise ValueError("linear-attention layers need positive linear_num_key_heads, linear_num_value_heads, "
                             "linear_key_head_dim and linear_value_head_dim")
        if mamba1 and (spec.linear_key_heads or spec.linear_value_head_dim != 1 or spec.linear_dt_rank <= 0):
            raise ValueError("Mamba-1 layers are d_inner channels of width 1 (linear_value_head_dim 1) sharing B "
                             "and C (no key heads), with a positive dt rank (mamba_dt_rank)")
        if not mamba1 and spec.linear_dt_rank:
            raise ValueError("a dt rank (mamba_dt_rank) belongs to Mamba-1 layers")
        if spec.linear_key_heads and spec.linear_value_heads % spec.linear_key_heads:
            raise ValueError(f"linear_num_value_heads={spec.linear_value_heads} is not a multiple of "
                             f"linear_num_key_heads={spec.linear_key_heads}")
        if spec.sliding_window:
            raise ValueError("linear-attention layers beside sliding-window attention are not modelled")
        if spec.latent_attention and spec.linear_recurrence != "kda":
            raise ValueError("linear-attention layers beside latent attention are modelled for KDA (Kimi Linear) "
                             "only")
    if spec.sparse_attention_topk and (not spec.latent_attention or spec.indexer_heads <= 0
                                       or spec.indexer_head_dim <= 0 or not spec.q_lora_rank):
        raise ValueError("sparse attention (index_topk) is modelled on latent attention with a q_lora_rank and "
                         "positive index_n_heads and index_head_dim")
    if not spec.kv_lora_rank and spec.compressed is None and (spec.q_lora_rank or spec.qk_rope_head_dim):
        raise ValueError("q_lora_rank / qk_rope_head_dim belong to latent attention: kv_lora_rank is missing")
    if spec.compressed is not None:
        c = spec.compressed
        if (spec.num_kv_heads != 1 or not spec.q_lora_rank or spec.latent_attention or spec.sliding_window
                or spec.linear_attention_layers or spec.sparse_attention_topk or spec.v_head_dim
                or spec.kv_shared_layers):
            raise ValueError("compressed attention is one K = V head (num_key_value_heads 1) with a q_lora_rank, "
                             "its window its own (no sliding_window, latent, sparse or linear attention beside it)")
        if c.compressed_layers > spec.num_layers:
            raise ValueError(f"{c.csa_layers} CSA and {c.hca_layers} HCA layers exceed the {spec.num_layers} "
                             "layers")
        if spec.num_heads % c.o_groups:
            raise ValueError(f"num_attention_heads={spec.num_heads} is not a multiple of o_groups={c.o_groups}")
    if spec.layer_pattern:
        _check_layer_pattern(spec)


def _check_layer_pattern(spec: ModelSpec) -> None:
    """layer_pattern names each layer once, with the letters LAYER_KINDS allows, and counts the linear and the
    windowed layers the other fields count."""
    pattern = spec.layer_pattern
    if len(pattern) != spec.num_layers or set(pattern) - set(LAYER_KINDS):
        raise ValueError(f"layer_pattern must give each of the {spec.num_layers} layers one letter of "
                         f"{', '.join(f'{k} ({v})' for k, v in LAYER_KINDS.items())} (got {pattern!r})")
    windowed = spec.windowed_layer_count
    if pattern.count("L") != spec.linear_attention_layers or pattern.count("W") != windowed:
        raise ValueError(f"layer_pattern {pattern!r} has {pattern.count('L')} linear and {pattern.count('W')} "
                         f"windowed layers, the stack {spec.linear_attention_layers} and {windowed}")
    if pattern.count("N") != spec.attention_free_layers:
        raise ValueError(f"layer_pattern {pattern!r} has {pattern.count('N')} layers without attention, the stack "
                         f"{spec.attention_free_layers}")
