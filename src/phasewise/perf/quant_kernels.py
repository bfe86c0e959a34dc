"""Kernel models of quantized GEMMs and attention: where the CUDA-core dequantization goes.

A W4A8 GEMM multiplies INT4 weights on an 8-bit tensor path, so every thread block first expands the
weight tile it multiplies on CUDA cores:
  dequant_s = weight elements x ceil(rows / tile_rows) x ops per weight / vector rate
  (each of the ceil(rows / tile_rows) thread blocks along the rows expands its own copy of the tile).
Its MMAs take flops / (peak x GEMM efficiency), divided by the chip's sync_mma_efficiency when the kernel
is built on warp-synchronous mma.sync rather than the chip's native instruction (QServe's Ampere-style
kernels on Hopper, whose native path is wgmma). Two main loops (specs.quant.GemmKernel):
  pipelined  warp-specialized (Hopper TMA + wgmma, FireQ's CUTLASS INT4->FP8 lookup): producer warps
             expand the next tile while the consumer warps' MMAs run,  main loop = max(mma_s, dequant_s);
             the expansion is hidden while the MMAs are the longer stage and exposed past that;
  serial     the MMA warps expand their tile then multiply it (QServe's INT4->INT8 main loop, register-
             level parallel but on the same warps),  main loop = mma_s + dequant_s.
Prefill attention with an INT4 KV cache and FP8 queries (specs.quant.AttentionKernel): q.k and p.v on
the query dtype's tensor path; every query tile of tile_rows rows expands the K and V rows it reads
(2 x head_dim elements per key and query head); FlashAttention-3's pipeline of >= 3 stages (load,
dequant, MMA: FireQ's three-stage prefill) overlaps the expansion with the MMAs as above, fewer stages
add it. The max(compute, memory) rule stays perf/cost.py's.
"""

from __future__ import annotations

import math

from phasewise.specs.quant import AttentionKernel, GemmKernel

PIPELINE_STAGES_TO_OVERLAP = 3  # load, dequantize, multiply: each in flight on a different tile


def main_loop_s(mma_s: float, dequant_s: float, pipelined: bool) -> float:
    """Time of a main loop whose MMAs take `mma_s` and whose CUDA-core expansion takes `dequant_s`."""
    return max(mma_s, dequant_s) if pipelined else mma_s + dequant_s


def gemm_dequant_s(weight_elements: float, rows_per_weight: float, tile_rows: int, ops_per_weight: float,
                   vector_flops_per_s: float, tiles_per_weight: float | None = None) -> float:
    """CUDA-core time expanding `weight_elements` stored weights once per thread block along the rows:
    ceil(rows / tile_rows) blocks, or `tiles_per_weight` where the rows differ between the weight matrices (a
    grouped GEMM's experts, perf/expert_load.py expected_row_tiles)."""
    if ops_per_weight <= 0 or rows_per_weight <= 0:
        return 0.0
    tiles = math.ceil(rows_per_weight / tile_rows) if tiles_per_weight is None else tiles_per_weight
    return weight_elements * tiles * ops_per_weight / vector_flops_per_s


def gemm_compute_s(kernel: GemmKernel, mma_s: float, weight_elements: float, rows_per_weight: float,
                   ops_per_weight: float, vector_flops_per_s: float, sync_mma_efficiency: float = 1.0,
                   tiles_per_weight: float | None = None) -> float:
    """Compute time of a quantized GEMM on `kernel`: its MMAs (`mma_s` at the chip's GEMM efficiency, slowed
    to sync_mma_efficiency of it when the kernel uses mma.sync) and its weight expansion, overlapped or not."""
    if kernel.mma == "sync":
        mma_s /= sync_mma_efficiency
    dequant_s = gemm_dequant_s(weight_elements, rows_per_weight, kernel.tile_rows, ops_per_weight,
                               vector_flops_per_s, tiles_per_weight)
    return main_loop_s(mma_s, dequant_s, kernel.pipelined)


def attention_dequant_s(kernel: AttentionKernel, pairs: float, query_rows: float, flops_per_pair: float,
                        vector_flops_per_s: float) -> float:
    """CUDA-core time expanding the cached K and V: per (query tile, key) and query head, 2 x head_dim
    elements, i.e. flops_per_pair / 2 elements per pair shared by the rows of one query tile."""
    if kernel.dequant_ops_per_element <= 0:
        return 0.0
    rows_per_tile = min(float(kernel.tile_rows), max(query_rows, 1.0))
    return pairs * (flops_per_pair / 2.0) / rows_per_tile * kernel.dequant_ops_per_element / vector_flops_per_s


def attention_compute_s(kernel: AttentionKernel, mma_s: float, pairs: float, query_rows: float,
                        flops_per_pair: float, vector_flops_per_s: float) -> float:
    """Compute time of a prefill attention kernel: its MMAs and its KV expansion, pipelined when it has
    the stages to overlap them."""
    dequant_s = attention_dequant_s(kernel, pairs, query_rows, flops_per_pair, vector_flops_per_s)
    return main_loop_s(mma_s, dequant_s, kernel.pipeline_stages >= PIPELINE_STAGES_TO_OVERLAP)
