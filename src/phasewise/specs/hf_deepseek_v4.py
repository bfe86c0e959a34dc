"""DeepSeek-V4's config.json (model_type deepseek_v4) -> ModelSpec, in either of the forms it is published in:

- transformers 5.25's (models/deepseek_v4, DeepseekV4Config, whose defaults are V4-Flash's): `layer_types`
  ("sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention") and `compress_rates`
  ({"compressed_sparse_attention": 4, "heavily_compressed_attention": 128});
- the checkpoints' own: `compress_ratios`, one per layer and MTP layer (0: sliding only, else the layer's
  compression ratio; vLLM transformers_utils/deepseek_v4_utils.py get_compress_ratios), `compress_rate_csa` /
  `compress_rate_hca` where given, `num_hash_layers`.
With neither, DeepseekV4Config's own default: two HCA layers, then CSA and HCA alternating from HCA.

Every layer is MoE (DeepseekV4SparseMoeBlock: the first num_hash_layers route by a token-id table, the rest by a
learned top-k; both compute the gate's scores, so both cost a router), with n_shared_experts shared experts of
moe_intermediate_size. transformers' attention projects one K = V head whatever num_key_value_heads says, so that
field is not read. The MTP modules (num_nextn_predict_layers) are read as mtp_layers. A checkpoint's experts in FP4
(expert_dtype) make its native format mxfp4 (hf_quant.py native_precision).
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.compressed_attention import CompressedAttention
from phasewise.specs.hf_layers import is_int_list, positive
from phasewise.specs.model import ModelSpec

__all__ = ["DEEPSEEK_V4_DEFAULTS", "deepseek_v4_spec"]

# DeepseekV4Config's field defaults (transformers 5.25): V4-Flash's shapes
DEEPSEEK_V4_DEFAULTS = dict(vocab_size=129280, hidden_size=4096, moe_intermediate_size=2048, num_hidden_layers=43,
                            num_attention_heads=64, head_dim=512, q_lora_rank=1024, num_experts_per_tok=6,
                            n_routed_experts=256, n_shared_experts=1, max_position_embeddings=1048576,
                            hc_mult=4, sliding_window=128, o_groups=8, o_lora_rank=1024, index_n_heads=64,
                            index_head_dim=128, index_topk=512, num_nextn_predict_layers=1,
                            tie_word_embeddings=False)
# fields of later checkpoints this reader does not understand (DeepSeek-V4-Flash-0731 and the DSpark checkpoints add
# dspark_* keys and three more compress_ratios entries, as third-party copies of their config.json show): refused
UNREAD_PREFIXES = ("dspark",)
LAYER_KINDS = ("sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention")
DEFAULT_RATES = {"compressed_sparse_attention": 4, "heavily_compressed_attention": 128}
# the share of head_dim under RoPE when neither qk_rope_head_dim nor partial_rotary_factor is given
# (DeepseekV4Config.default_partial_rotary_factor: 64 / 512)
DEFAULT_ROTARY_FACTOR = 64 / 512


def deepseek_v4_spec(name: str, cfg: dict[str, Any], where: str) -> ModelSpec:
    """ModelSpec of a deepseek_v4 config.json (DEEPSEEK_V4_DEFAULTS filled in where it is silent)."""
    cfg = {**DEEPSEEK_V4_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    unread = sorted(k for k in cfg if k.startswith(UNREAD_PREFIXES))
    if unread:
        raise PhasewiseError(f"{where}: field {unread[0]} is not modelled for model_type 'deepseek_v4' (the -0731 / "
                             "DSpark checkpoints' extra layers; their cost would be missed)")
    layers = positive(cfg["num_hidden_layers"], where, "num_hidden_layers")
    heads = positive(cfg["num_attention_heads"], where, "num_attention_heads")
    head_dim = positive(cfg["head_dim"], where, "head_dim")
    hidden = positive(cfg["hidden_size"], where, "hidden_size")
    csa_rate, hca_rate = _rates(cfg, where)
    kinds = _layer_kinds(cfg, where, layers, csa_rate, hca_rate)
    rope = cfg.get("qk_rope_head_dim")
    if rope is None:
        factor = cfg.get("partial_rotary_factor", DEFAULT_ROTARY_FACTOR)
        if not (isinstance(factor, (int, float)) and not isinstance(factor, bool) and 0 < factor < 1):
            raise PhasewiseError(f"{where}: field partial_rotary_factor must be a number in (0, 1) (got {factor!r})")
        rope = max(int(head_dim * factor), 1)
    rope = positive(rope, where, "qk_rope_head_dim")
    if rope >= head_dim:
        raise PhasewiseError(f"{where}: field qk_rope_head_dim={rope} must be below head_dim={head_dim}")
    expert_width = positive(cfg["moe_intermediate_size"], where, "moe_intermediate_size")
    shared = cfg["n_shared_experts"]
    if not (isinstance(shared, int) and not isinstance(shared, bool) and shared >= 0):
        raise PhasewiseError(f"{where}: field n_shared_experts must be a non-negative integer (got {shared!r})")
    compressed = CompressedAttention(
        window=positive(cfg["sliding_window"], where, "sliding_window"),
        csa_layers=kinds.count("compressed_sparse_attention"), hca_layers=kinds.count("heavily_compressed_attention"),
        csa_ratio=csa_rate, hca_ratio=hca_rate, index_topk=positive(cfg["index_topk"], where, "index_topk"),
        indexer_heads=positive(cfg["index_n_heads"], where, "index_n_heads"),
        indexer_head_dim=positive(cfg["index_head_dim"], where, "index_head_dim"),
        o_groups=positive(cfg["o_groups"], where, "o_groups"), o_lora_rank=positive(cfg["o_lora_rank"], where,
                                                                                      "o_lora_rank"),
        hc_mult=positive(cfg["hc_mult"], where, "hc_mult"))
    if heads % compressed.o_groups:
        raise PhasewiseError(f"{where}: field o_groups={compressed.o_groups} does not divide "
                             f"num_attention_heads={heads}")
    mtp = cfg["num_nextn_predict_layers"]
    if not (isinstance(mtp, int) and not isinstance(mtp, bool) and mtp >= 0):
        raise PhasewiseError(f"{where}: field num_nextn_predict_layers must be a non-negative integer (got {mtp!r})")
    return ModelSpec(
        name=name, model_type="deepseek_v4", num_layers=layers, hidden_size=hidden, num_heads=heads, num_kv_heads=1,
        head_dim=head_dim, intermediate_size=0, vocab_size=positive(cfg["vocab_size"], where, "vocab_size"),
        tie_embeddings=bool(cfg["tie_word_embeddings"]),
        num_experts=positive(cfg["n_routed_experts"], where, "n_routed_experts"),
        experts_per_token=positive(cfg["num_experts_per_tok"], where, "num_experts_per_tok"),
        expert_intermediate_size=expert_width, shared_expert_intermediate_size=shared * expert_width,
        num_moe_layers=layers, max_position_embeddings=int(cfg["max_position_embeddings"] or 0),
        q_lora_rank=positive(cfg["q_lora_rank"], where, "q_lora_rank"), qk_rope_head_dim=rope, mtp_layers=mtp,
        compressed=compressed)


def _rates(cfg: dict[str, Any], where: str) -> tuple[int, int]:
    """(CSA, HCA) compression ratios: compress_rates, else compress_rate_csa / compress_rate_hca, else 4 and 128."""
    rates = cfg.get("compress_rates")
    if rates is not None and not isinstance(rates, dict):
        raise PhasewiseError(f"{where}: field compress_rates must map compressed_sparse_attention and "
                             "heavily_compressed_attention to their ratios")
    rates = {**DEFAULT_RATES, **(rates or {})}
    for field, kind in (("compress_rate_csa", "compressed_sparse_attention"),
                        ("compress_rate_hca", "heavily_compressed_attention")):
        if cfg.get(field) is not None:
            rates[kind] = cfg[field]
    unknown = set(rates) - set(DEFAULT_RATES)
    if unknown:
        raise PhasewiseError(f"{where}: field compress_rates names {sorted(unknown)} (allowed: "
                             f"{', '.join(DEFAULT_RATES)})")
    csa = positive(rates["compressed_sparse_attention"], where, "compress_rates.compressed_sparse_attention")
    hca = positive(rates["heavily_compressed_attention"], where, "compress_rates.heavily_compressed_attention")
    if csa >= hca:
        raise PhasewiseError(f"{where}: the CSA compression ratio ({csa}) must be below the HCA one ({hca})")
    return csa, hca


def _layer_kinds(cfg: dict[str, Any], where: str, layers: int, csa_rate: int, hca_rate: int) -> list[str]:
    """Each layer's attention kind: layer_types, else compress_ratios (its first `layers` entries: the rest are the
    MTP layers'), else DeepseekV4Config's default."""
    kinds = cfg.get("layer_types")
    if kinds is not None:
        if not isinstance(kinds, list) or len(kinds) < layers or set(kinds[:layers]) - set(LAYER_KINDS):
            raise PhasewiseError(f"{where}: field layer_types must list one of {', '.join(LAYER_KINDS)} for each of "
                                 f"the {layers} layers")
        return kinds[:layers]
    ratios = cfg.get("compress_ratios")
    if ratios is not None:
        by_ratio = {0: "sliding_attention", csa_rate: "compressed_sparse_attention",
                    hca_rate: "heavily_compressed_attention"}
        if not is_int_list(ratios) or len(ratios) < layers or set(ratios[:layers]) - set(by_ratio):
            raise PhasewiseError(f"{where}: field compress_ratios must list 0, {csa_rate} or {hca_rate} for each of "
                                 f"the {layers} layers")
        return [by_ratio[ratio] for ratio in ratios[:layers]]
    interleave = ["compressed_sparse_attention" if i % 2 else "heavily_compressed_attention"
                  for i in range(max(layers - 2, 0))]
    return (["heavily_compressed_attention"] * min(layers, 2) + interleave)[:layers]
