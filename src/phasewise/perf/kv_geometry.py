"""KV-cache geometry: the bytes one token's KV occupies per layer on one GPU, as each attention kind stores it.

Multi-head and grouped-query attention keep K and V of the GPU's KV heads (replicated when TP exceeds them); latent
attention (MLA) the latent and the shared RoPE key, whole on every rank; a DeepSeek-sparse-attention model adds its
indexer's keys and may keep its FP8 latent in FlashMLA's sparse layout; compressed attention (DeepSeek-V4) keeps
compressed entries per csa_ratio / hca_ratio tokens, a window of keys and the compressors' state rings. The cost
model (cost.py) reads these for attention's KV traffic, perf/memory.py for the KV pool's capacity, and the
simulator for a KV transfer's bytes.
"""

from __future__ import annotations

import math

from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, kv_bytes_per_element

__all__ = ["COMPRESSOR_STATE_BYTES", "INDEXER_KEY_SCALE_BYTES", "cached_kv_bytes_per_token", "compressed_entry_bytes",
           "compressed_kv_bytes", "compressed_swa_token_bytes", "compressor_ring_bytes", "kv_bytes_per_token_layer",
           "kv_elements_per_token_layer", "kv_heads_per_gpu", "window_kv_ratio"]


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads stored per GPU: split across TP ranks, replicated when TP exceeds them."""
    return max(1, num_kv_heads // tp)


def window_kv_ratio(model: ModelSpec, tp: int) -> float:
    """A windowed layer's KV elements per token on one GPU of a `tp`-wide attention group over a full layer's: 1 but
    where the windowed layers have their own geometry (Gemma 4 at TP 1: 16 KV heads of 256 against 4 of 512, 2.0;
    at TP 8, with the full layers' 4 heads replicated, 1.0)."""
    if not model.window_own_geometry:
        return 1.0
    window = kv_heads_per_gpu(model.window_layer_kv_heads, tp) * (model.window_layer_head_dim
                                                                   + model.window_layer_v_dim)
    return window / kv_elements_per_token_layer(model, tp)


def kv_elements_per_token_layer(model: ModelSpec, tp: int) -> int:
    """KV-cache elements one token occupies in one layer on one GPU of a TP group: K and V of this GPU's
    KV heads (a value v_dim wide), or with latent attention the latent and the shared RoPE key, which every TP rank
    holds whole (the heads are split, the latent is not)."""
    if model.latent_attention:
        return model.kv_latent_size
    if model.compressed is not None:  # one K = V entry, whole on every rank
        return model.head_dim
    return kv_heads_per_gpu(model.num_kv_heads, tp) * (model.head_dim + model.v_dim)


# FlashMLA's sparse FP8 KV layout, in which vLLM and SGLang keep a DeepSeek-sparse-attention model's FP8 cache (the
# quant's sparse_kv_layout "flashmla"): the latent in FP8 with one FP32 scale per 128 elements, the shared RoPE key
# kept in BF16 (656 bytes for a 512 + 64 latent: vLLM's fp8_ds_mla, "custom storage format is 656 bytes, see FlashMLA
# readme"; SGLang's NSATokenToKVPool, "rope is always stored in bf16"). TensorRT-LLM's DSA cache manager keeps it as
# plain per-tensor FP8, one byte an element (576; "plain"), its 656-byte fp8_ds_mla an opt-in dtype of one SM120 path
# (_torch/attention_backend/sparse/dsa/cache_manager.py get_cache_size_per_token; its DeepSeek-V3.2 blog: "Sparse
# MLA - KV cache: Per-tensor FP8")
SPARSE_FP8_SCALE_ELEMENTS = 128
SPARSE_FP8_SCALE_BYTES = 4
SPARSE_FP8_ROPE_BYTES = 2


def cached_kv_bytes_per_token(model: ModelSpec, quant: QuantScheme, tp: int) -> float:
    """Bytes of one token's attention KV in one layer on one GPU of a TP group, as attention reads them:
    kv_elements_per_token_layer at the KV dtype's bytes, or a sparse-attention model's FP8 latent in FlashMLA's
    sparse layout where the engine keeps it so (quant.sparse_kv_layout; the indexer's keys apart:
    kv_bytes_per_token_layer)."""
    if model.compressed is not None:
        return compressed_entry_bytes(model, quant)
    if (model.latent_attention and model.sparse_attention_topk and quant.kv_dtype == "fp8"
            and quant.sparse_kv_layout == "flashmla"):
        scales = model.kv_lora_rank / SPARSE_FP8_SCALE_ELEMENTS * SPARSE_FP8_SCALE_BYTES
        return model.kv_lora_rank + scales + model.qk_rope_head_dim * SPARSE_FP8_ROPE_BYTES
    return kv_elements_per_token_layer(model, tp) * kv_bytes_per_element(quant.kv_dtype)


def kv_bytes_per_token_layer(model: ModelSpec, quant: QuantScheme, tp: int) -> float:
    """Bytes the KV cache holds for one token in one layer on one GPU of a TP group: its attention KV
    (cached_kv_bytes_per_token) and a sparse-attention model's indexer keys (FP8 + a scale, on every rank). Compressed
    attention: the mean layer's compressed entries and indexer keys per token (compressed_kv_bytes; its window and
    compressor states are per sequence: perf/window_kv.py kv_window_terms; a stack of sliding layers only, its window's
    per token)."""
    if model.compressed is not None:
        per_token, per_window_token = compressed_kv_bytes(model, quant)
        return (per_token or per_window_token) / model.num_layers
    return cached_kv_bytes_per_token(model, quant, tp) + model.indexer_key_bytes


# DeepSeek-V4's cache entries (specs/compressed_attention.py): one K = V head of head_dim per window key and per
# compressed entry, whole on every rank. In FP8 as vLLM and SGLang keep them (fp8_ds_mla: vLLM
# model_executor/layers/deepseek_v4_attention.py and kv_cache_interface.py, 584 bytes "for model_version
# deepseek_v4"; SGLang mem_cache/deepseek_v4_memory_pool.py DeepSeekV4SingleKVPool): the NoPE part in FP8 E4M3 with
# one UE8M0 scale byte per 64 elements, the RoPE part in BF16, one byte of padding (448 + 7 + 128 + 1 = 584 for
# head_dim 512). TensorRT-LLM keeps them as plain FP8, one byte an element (its DeepseekV4CacheManager: 512; the
# quant's sparse_kv_layout "plain"). The CSA indexer's keys are FP8 with an FP32 scale in every engine (132 bytes)
COMPRESSED_FP8_SCALE_ELEMENTS = 64
COMPRESSED_FP8_PAD_BYTES = 1
INDEXER_KEY_SCALE_BYTES = 4
# The compressors' running state, per sequence (vLLM deepseek_compressor.py CompressorStateCache, SGLang's compress-
# state rings, TensorRT-LLM's COMPRESSOR_STATE / SCORE caches): FP32 kv and score, 2 x coff x width a slot (coff 2
# for CSA's overlapping windows, 1 for HCA), over a ring of coff x ratio slots (8 for CSA, 128 for HCA); the CSA
# indexer's compressor likewise at indexer_head_dim
COMPRESSOR_STATE_BYTES = 4


def compressed_entry_bytes(model: ModelSpec, quant: QuantScheme) -> float:
    """Bytes of one cached entry (window key or compressed entry) of compressed attention in the KV dtype: FP8 in
    the engine's layout (fp8_ds_mla or plain), else head_dim elements."""
    if quant.kv_dtype == "fp8" and quant.sparse_kv_layout == "flashmla":
        nope = model.head_dim - model.qk_rope_head_dim
        return (nope + math.ceil(nope / COMPRESSED_FP8_SCALE_ELEMENTS) + model.qk_rope_head_dim * SPARSE_FP8_ROPE_BYTES
                + COMPRESSED_FP8_PAD_BYTES)
    return model.head_dim * kv_bytes_per_element(quant.kv_dtype)


def compressed_kv_bytes(model: ModelSpec, quant: QuantScheme) -> tuple[float, float]:
    """(bytes per token of context, bytes per token of the window) compressed attention holds for one sequence on
    every GPU of its attention group (its one K = V head is not split): per token, each CSA layer's entry and
    indexer key per csa_ratio tokens and each HCA layer's entry per hca_ratio; per window token (a sequence's last
    `window`), every layer's window entry and the compressors' state rings spread over the window."""
    c = model.compressed
    entry = compressed_entry_bytes(model, quant)
    index_key = c.indexer_head_dim + INDEXER_KEY_SCALE_BYTES
    per_token = c.csa_layers * (entry + index_key) / c.csa_ratio + c.hca_layers * entry / c.hca_ratio
    csa_rings, hca_rings = compressor_ring_bytes(model)
    return per_token, model.num_layers * entry + (csa_rings + hca_rings) / c.window


def compressor_ring_bytes(model: ModelSpec, ring_slots: tuple[int, int] | None = None) -> tuple[float, float]:
    """(CSA layers', HCA layers') compressor state rings of one sequence (COMPRESSOR_STATE_BYTES): a CSA layer's
    over 2 x csa_ratio slots of 2 x 2 x head_dim and its indexer's of 2 x 2 x indexer_head_dim, an HCA layer's over
    hca_ratio slots of 2 x head_dim (SGLang's get_compress_state_ring_size without speculative decoding: 8 and 128);
    `ring_slots` (CSA, HCA): another ring (SGLang's with speculative decoding: 16 and 256)."""
    c = model.compressed
    csa_slots, hca_slots = ring_slots or (2 * c.csa_ratio, c.hca_ratio)

    def ring(coff: int, slots: int, width: int) -> float:
        return 2 * coff * width * COMPRESSOR_STATE_BYTES * slots

    return (c.csa_layers * (ring(2, csa_slots, model.head_dim) + ring(2, csa_slots, c.indexer_head_dim)),
            c.hca_layers * ring(1, hca_slots, model.head_dim))


def compressed_swa_token_bytes(model: ModelSpec, quant: QuantScheme, ring_slots: tuple[int, int] | None = None
                               ) -> float:
    """Bytes of one token of SGLang's SWA pool for compressed attention (its DeepSeek-V4 pools,
    mem_cache/deepseek_v4_memory_pool.py and model_executor/pool_configurator.py DSV4PoolConfigurator): every
    layer's window entry, and the CSA compressors' rings, whose pool is sized from the SWA pool's (a ring per
    window of SWA tokens): 61 x 584 + 8 / 128 x (8,192 + 2,048) x 30 = 54,824 bytes for DeepSeek-V4-Pro (`ring_slots`:
    compressor_ring_bytes's)."""
    csa_rings, _ = compressor_ring_bytes(model, ring_slots)
    return model.num_layers * compressed_entry_bytes(model, quant) + csa_rings / model.compressed.window
