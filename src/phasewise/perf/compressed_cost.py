"""DeepSeek-V4's compressed attention (specs/compressed_attention.py) in a CostModel's operators: its projections, its
attention kernel over each kind of layer, and the elementwise work it adds. The mean layer over the stack's sliding,
CSA and HCA layers, as every hybrid's (CostModel._mean_layer).

As vLLM runs it (model_executor/layers/deepseek_v4_attention.py, deepseek_compressor.py; models/deepseek_v4.py):
  - projections: q_a and the K = V projection fused (FP8, whole on every TP rank: one KV head), q_b split by head;
    each compressor's kv and gate in BF16 with FP32 output (not quantized), whole on every rank; the CSA indexer's
    q_b (FP8) and weights_proj (BF16), whole on every rank;
  - attention: FlashMLA's sparse kernel over each query's window keys and selected compressed entries (one kernel:
    BatchShape.windowed plus BatchShape.compressed), multi-query over the one K = V head (the cache entry read once
    for all heads: AttentionCost with a value as wide as the key, each half an entry's bytes); the CSA indexer
    (SparseIndexer) scores every compressed entry before it;
  - output: the heads' inverse RoPE, o_a per group of heads (a block-diagonal FP8 einsum, groups split across TP
    ranks), o_b (row-parallel, all-reduced as every o_proj);
  - manifold-constrained hyper-connections: two fused TileLang ops a layer (the previous sublayer's post-mix and the
    next one's pre-mix), each reading the hc_mult residual streams and the sublayer's output and writing the
    streams and the collapsed input; their small projection (hc_mult x hidden -> (2 + hc_mult) x hc_mult) counted
    in FLOPs.
The compressors' pooling reads each token's FP32 kv and gate once (their entries' norm, RoPE and cache write fused
into it). Nothing here is fitted: no measurement of DeepSeek-V4 is at hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasewise.perf.batch import BatchShape

if TYPE_CHECKING:
    from phasewise.perf.cost import CostModel

__all__ = ["COMPRESSOR_OUTPUT_BYTES", "compressed_attention_layer", "compressed_elementwise", "compressed_projections"]

# the compressors' kv and gate outputs: FP32 (vLLM's torch.mm(..., out_dtype=torch.float32))
COMPRESSOR_OUTPUT_BYTES = 4


def _shares(cost: CostModel) -> tuple[float, float, float]:
    """(sliding, CSA, HCA) shares of the stack's layers."""
    m = cost.model
    c = m.compressed
    csa, hca = c.csa_layers / m.num_layers, c.hca_layers / m.num_layers
    return 1.0 - csa - hca, csa, hca


def compressed_projections(cost: CostModel, T: float) -> tuple[tuple, tuple]:
    """(qkv_proj, o_proj) of the mean layer's `T` tokens on this GPU, each (flops, bytes, compute_s, memory_s)."""
    m, h = cost.model, cost.model.hidden_size
    c, hd = m.compressed, m.head_dim
    _, csa, hca = _shares(cost)
    tp = cost.layout.attention_tp

    def own(k: float, n: float, rows: float = T, weights: float = 1.0) -> tuple:  # the checkpoint's FP8 layers
        return cost._gemm(rows, k, n, cost.w_bytes, cost.peak, True, weights=weights)

    def bf16(k: float, n: float) -> tuple:  # the compressors' and the indexer weights' unquantized GEMMs
        return cost._gemm(T, k, n, cost.hp_bytes, cost.attn_peak, False)

    parts = [own(h, m.q_lora_rank + hd), own(m.q_lora_rank, cost.heads * hd)]
    csa_parts = [bf16(h, 2 * 2 * hd), bf16(h, 2 * 2 * c.indexer_head_dim),
                 own(m.q_lora_rank, c.indexer_heads * c.indexer_head_dim), bf16(h, c.indexer_heads)]
    parts += [tuple(value * csa for value in part) for part in csa_parts]
    parts.append(tuple(value * hca for value in bf16(h, 2 * hd)))
    qkv = tuple(sum(values) for values in zip(*parts))
    groups = c.o_groups / tp  # this GPU's groups of heads, each its own o_lora_rank-wide projection
    o_a = own(cost.heads * hd / groups, c.o_lora_rank, rows=T * groups, weights=groups)
    o_b = own(groups * c.o_lora_rank, h)
    return qkv, tuple(a + b for a, b in zip(o_a, o_b))


def compressed_attention_layer(cost: CostModel, shape: BatchShape) -> tuple:
    """(flops, bytes, compute_s, memory_s) of the mean layer's attention over `shape`: the sliding layers over their
    window, the CSA layers over their window and each query's top-k compressed entries after the indexer, the HCA
    layers over their window and every compressed entry."""
    c = cost.model.compressed
    attention = cost.attention
    window = shape.windowed(c.window)
    sliding_share, csa_share, hca_share = _shares(cost)
    kinds = [(sliding_share, attention.dense_layer(window))]
    if csa_share:  # the indexer over every compressed entry, then the window and the top-k entries
        selected = window.plus_keys(shape.compressed(c.csa_ratio, c.index_topk))
        kinds.append((csa_share, attention.indexed_layer(selected, shape.compressed(c.csa_ratio))))
    if hca_share:
        kinds.append((hca_share, attention.dense_layer(window.plus_keys(shape.compressed(c.hca_ratio)))))
    return tuple(sum(share * kind[i] for share, kind in kinds) for i in range(4))


def compressed_elementwise(cost: CostModel, T: float) -> tuple[float, float]:
    """(flops, bytes) of the mean layer's elementwise work compressed attention adds for `T` tokens beside the
    generic kernels' (CostModel._other_ops): the two hyper-connection mixers and the compressors' pooling."""
    m, h = cost.model, cost.model.hidden_size
    c, hd = m.compressed, m.head_dim
    _, csa, hca = _shares(cost)
    streams = c.hc_mult * h
    # each mixer: the streams and the sublayer's output read, the streams and the collapsed input written
    mixer_elements = 2 * streams + 2 * h
    mixer_flops = 2 * streams * (2 + c.hc_mult) * c.hc_mult
    pooled = csa * (2 * 2 * hd + 2 * 2 * c.indexer_head_dim) + hca * 2 * hd  # the compressors' kv and gate
    nbytes = T * (2 * mixer_elements * cost.a_bytes + pooled * COMPRESSOR_OUTPUT_BYTES)
    return T * 2 * mixer_flops, nbytes
