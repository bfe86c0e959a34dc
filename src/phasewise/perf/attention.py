"""Attention of one layer on one GPU: the one formula the iteration, the fast path and decode series share.

A batch's sequences run one of two kernel classes (see batch.DECODE_MAX_NEW_TOKENS):
  prefill  many query rows per sequence: tensor-core FlashAttention whose efficiency grows with the
           query tokens per sequence; memory traffic at the streaming efficiency of any large copy;
  decode   a few query rows per sequence (x the query heads sharing a KV head): tensor cores when the
           engine's kernel uses them and they beat CUDA cores, else CUDA cores; the KV cache is read
           at the attention kernels' own bandwidth efficiency.
Both compute 4 x head_dim FLOPs per (query, key) pair and head, read the cached and new KV, write the
new KV, read q and write the output. Decode time is linear in the pairs and the KV tokens, which is
what lets a series of decode iterations be costed as arrays (CostModel.decode_series).

Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2; LatentAttention) runs as its engines run it
(vLLM's MLA backends, FlashMLA): prefill up-projects every key's latent to per-head K (nope + rope) and V
and runs FlashAttention over them (2 x (qk + v) FLOPs per pair and head, plus the up-projection GEMM over
the keys); decode absorbs the K and V up-projections into the query and the output (two per-head GEMMs over
the new tokens) and attends over the latent itself, as multi-query attention of width kv_lora + rope for
scores and kv_lora for values, reading kv_lora + rope elements per cached token once for all heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phasewise.perf.batch import BatchShape
from phasewise.perf.parallel import busiest_rank_share
from phasewise.perf.quant_kernels import attention_compute_s
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.quant import AttentionKernel

# Where decode_linear() evaluates the decode kernel besides zero: far from it, so that the slopes read off
# carry only rounding relative to themselves, and a power of two, so that dividing by it is exact.
PROBE_TOKENS = 2.0 ** 32


@dataclass(slots=True, frozen=True)
class LatentAttention:
    """Multi-head latent attention's widths and its up-projection GEMM: up_projection(rows, k, n, heads) ->
    (flops, bytes, compute_s, memory_s) of `heads` per-head k x n weights over `rows` rows in all."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    v_head_dim: int
    up_projection: Callable[[float, float, float, float], tuple[float, float, float, float]]


class AttentionCost:
    """FLOPs, bytes, compute_s and memory_s of one layer's attention, per kernel class."""

    __slots__ = ("flops_per_pair", "kv_bytes_per_token", "q_bytes_per_token", "queries_per_kv_head",
                 "tensor_flops_per_s", "vector_flops_per_s", "decode_tensor_cores", "prefill_half_tokens",
                 "decode_half_rows", "decode_s_per_byte", "memory_s", "prefill_kernel",
                 "prefill_tensor_flops_per_s", "decode_flops_per_pair", "decode_kv_bytes_per_token",
                 "decode_q_bytes_per_token", "latent", "heads", "head_dim", "ranks")

    def __init__(self, hardware: HardwareSpec, engine: EngineProfile, *, head_dim: int, heads: int,
                 kv_heads: int, kv_bytes: float, activation_bytes: float, tensor_peak_flops: float,
                 vector_flops_per_s: float, memory_s: Callable[[float], float],
                 prefill_kernel: AttentionKernel | None = None, latent: LatentAttention | None = None,
                 ranks: int = 1) -> None:
        """`heads`/`kv_heads` are this GPU's; `memory_s(bytes)` is the streaming-copy time of the device;
        `prefill_kernel`: the quantization scheme's own prefill kernel (quant_kernels.py), else the generic one;
        `latent`: the model's latent attention (then head_dim is the q.k width and kv_heads is not used);
        `ranks`: attention data-parallel ranks, each running whole sequences of the batch (the costs are the
        busiest rank's: ceil(seqs / ranks) of the sequences)."""
        eff = hardware.efficiency
        self.latent, self.heads, self.head_dim, self.ranks = latent, heads, head_dim, ranks
        if latent is None:
            self.flops_per_pair = 4.0 * head_dim * heads  # q.k and p.v, 2 FLOPs per multiply-add
            self.kv_bytes_per_token = 2 * kv_heads * head_dim * kv_bytes  # K and V
            self.q_bytes_per_token = 2 * heads * head_dim * activation_bytes  # q read, output written
            self.queries_per_kv_head = heads / kv_heads
            self.decode_flops_per_pair = self.flops_per_pair
            self.decode_q_bytes_per_token = self.q_bytes_per_token
        else:
            cached = latent.kv_lora_rank + latent.qk_rope_head_dim
            # prefill: per-head K (head_dim) and V (v_head_dim) up-projected from the latent
            self.flops_per_pair = 2.0 * heads * (head_dim + latent.v_head_dim)
            self.q_bytes_per_token = heads * (head_dim + latent.v_head_dim) * activation_bytes
            self.kv_bytes_per_token = cached * kv_bytes  # the cache holds the latent and the RoPE key only
            # decode (absorbed): every head's query attends over the one shared latent
            self.queries_per_kv_head = heads
            self.decode_flops_per_pair = 2.0 * heads * (cached + latent.kv_lora_rank)
            self.decode_q_bytes_per_token = heads * (cached + latent.kv_lora_rank) * activation_bytes
        self.decode_kv_bytes_per_token = self.kv_bytes_per_token
        self.tensor_flops_per_s = tensor_peak_flops * eff.attention_efficiency_max * engine.compute_efficiency
        self.vector_flops_per_s = vector_flops_per_s
        self.decode_tensor_cores = engine.decode_attention_tensor_cores
        self.prefill_half_tokens = eff.attention_half_tokens
        self.decode_half_rows = eff.decode_attention_half_rows
        self.decode_s_per_byte = 1.0 / (hardware.memory_bandwidth_bytes_per_s * eff.attention_memory_efficiency)
        self.memory_s = memory_s
        self.prefill_kernel = prefill_kernel
        self.prefill_tensor_flops_per_s = self.tensor_flops_per_s if prefill_kernel is None else (
            hardware.peak(prefill_kernel.q_dtype) * eff.attention_efficiency_max * engine.compute_efficiency)

    def kernel(self, seqs: int, tokens: int, pairs, kv_tokens, decode: bool) -> tuple:
        """(flops, bytes, compute_s, memory_s) of one kernel class over `seqs` sequences with `tokens` new
        tokens, `pairs` (query, key) pairs and `kv_tokens` cached + new keys. For decode, `pairs` and
        `kv_tokens` may be numpy arrays (a series of iterations): every result is then an array."""
        if self.ranks > 1:  # the busiest attention rank's share: whole sequences, ceil(seqs / ranks) of them
            share = busiest_rank_share(seqs, self.ranks)
            seqs, tokens, pairs, kv_tokens = seqs * share, tokens * share, pairs * share, kv_tokens * share
        if decode:  # few query rows per KV head: CUDA cores may beat padded tensor tiles
            flops = self.decode_flops_per_pair * pairs
            nbytes = (kv_tokens + tokens) * self.decode_kv_bytes_per_token + tokens * self.decode_q_bytes_per_token
            if self.decode_tensor_cores:
                rows = tokens / seqs * self.queries_per_kv_head
                flops_per_s = max(self.tensor_flops_per_s * rows / (rows + self.decode_half_rows),
                                  self.vector_flops_per_s)
            else:
                flops_per_s = self.vector_flops_per_s
            compute_s, memory_s = flops / flops_per_s, nbytes * self.decode_s_per_byte
            if self.latent is None:
                return flops, nbytes, compute_s, memory_s
            # the absorbed K-up (q_nope -> latent) and V-up (latent -> v) GEMMs over the new tokens, per head
            lat = self.latent
            nope = self.head_dim - lat.qk_rope_head_dim
            rows = tokens * self.heads
            up = [lat.up_projection(rows, nope, lat.kv_lora_rank, self.heads),
                  lat.up_projection(rows, lat.kv_lora_rank, lat.v_head_dim, self.heads)]
            return _plus_kernels(flops, nbytes, compute_s, memory_s, up)
        flops = self.flops_per_pair * pairs
        nbytes = (kv_tokens + tokens) * self.kv_bytes_per_token + tokens * self.q_bytes_per_token
        rows = tokens / seqs
        flops_per_s = self.prefill_tensor_flops_per_s * rows / (rows + self.prefill_half_tokens)
        compute_s = flops / flops_per_s
        if self.prefill_kernel is not None:
            compute_s = attention_compute_s(self.prefill_kernel, compute_s, pairs, rows, self.flops_per_pair,
                                            self.vector_flops_per_s)
        if self.latent is None:
            return flops, nbytes, compute_s, self.memory_s(nbytes)
        # every key's latent up-projected to this GPU's heads' K (nope part) and V
        lat = self.latent
        width = self.heads * (self.head_dim - lat.qk_rope_head_dim + lat.v_head_dim)
        up = [lat.up_projection(kv_tokens, lat.kv_lora_rank, width, 1)]
        return _plus_kernels(flops, nbytes, compute_s, self.memory_s(nbytes), up)

    def layer(self, shape: BatchShape) -> tuple:
        """(flops, bytes, compute_s, memory_s) of one layer's attention over both kernel classes of `shape`."""
        if not shape.prefill_seqs:
            return self.kernel(shape.decode_seqs, shape.decode_tokens, shape.decode_pairs,
                               shape.decode_kv_tokens, True)
        flops, nbytes, compute_s, memory_s = self.kernel(shape.prefill_seqs, shape.prefill_tokens,
                                                         shape.prefill_pairs, shape.prefill_kv_tokens, False)
        if not shape.decode_seqs:
            return flops, nbytes, compute_s, memory_s
        decode_flops, decode_bytes, decode_compute_s, decode_memory_s = self.kernel(
            shape.decode_seqs, shape.decode_tokens, shape.decode_pairs, shape.decode_kv_tokens, True)
        return flops + decode_flops, nbytes + decode_bytes, compute_s + decode_compute_s, memory_s + decode_memory_s

    def decode_linear(self, seqs: int, tokens: int) -> tuple[tuple, tuple, tuple]:
        """The decode kernel of `seqs` sequences with `tokens` new tokens as linear in its pairs and KV tokens:
        (per_pair, per_kv_token, fixed), each a (flops, bytes, compute_s, memory_s) tuple, such that
        kernel(..., pairs, kv_tokens, True) = pairs x per_pair + kv_tokens x per_kv_token + fixed.
        Read off kernel() at no context and PROBE_TOKENS pairs or KV tokens."""
        fixed = self.kernel(seqs, tokens, 0.0, 0.0, True)
        per_pair = self.kernel(seqs, tokens, PROBE_TOKENS, 0.0, True)
        per_kv_token = self.kernel(seqs, tokens, 0.0, PROBE_TOKENS, True)
        return (tuple((value - zero) / PROBE_TOKENS for value, zero in zip(per_pair, fixed)),
                tuple((value - zero) / PROBE_TOKENS for value, zero in zip(per_kv_token, fixed)), fixed)


def _plus_kernels(flops: float, nbytes: float, compute_s: float, memory_s: float, kernels: list[tuple]) -> tuple:
    """An attention kernel followed by other kernels (run one after another): the others' time, each the
    larger of its compute and memory time, added to both of the attention's, so that the operator's
    max(compute, memory) is the sum of the kernels' times."""
    for k_flops, k_bytes, k_compute_s, k_memory_s in kernels:
        k_s = max(k_compute_s, k_memory_s)
        flops, nbytes, compute_s, memory_s = flops + k_flops, nbytes + k_bytes, compute_s + k_s, memory_s + k_s
    return flops, nbytes, compute_s, memory_s
