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
    cached_bytes: float  # one token's latent + RoPE key as cached (perf/kv_geometry.py cached_kv_bytes_per_token)


# FLOPs of Mamba-1's selective scan per token, channel and state element: the discretisation exp(dt A) and dt B x,
# the update h = dA h + dB x, the output C h (Gu and Dao 2023, section 3.3: O(B L D N); the 9 B L D N the mamba
# kernels' FLOP counters use, state-spaces/mamba issue #110)
MAMBA1_SCAN_FLOPS = 9.0


@dataclass(slots=True, frozen=True)
class LinearAttention:
    """Linear-attention layers (gated DeltaNet: Qwen3-Next, Qwen3.5; Mamba-2 below), `share` of a hybrid stack's
    layers, as this GPU runs them: `value_heads` of key_head_dim x value_head_dim recurrent state each (the key
    heads are shared by value_heads / key_heads of them), `conv_dim` channels of a causal conv of `conv_taps` taps;
    states held at `state_bytes` per element (the engine's recurrent-state dtype), activations at `activation_bytes`.

    Prefill runs the chunked form (FLA chunk_gated_delta_rule, chunks of chunk_tokens, 64): per chunk and value
    head the chunk's K K^T, its triangular solve's W = A K and U = A V, the state's contributions W S,
    K^T (U - W S) and Q S, and the chunk-local (Q K^T) (U - W S): C^2 (6 d_k + 4 d_v) + 6 C d_k d_v FLOPs, on
    tensor cores; each chunk's state written and read back once. Decode runs the recurrence
    (fused_recurrent_gated_delta_rule): per token and value head ~8 d_k d_v FLOPs (decay, k^T S, the rank-1 update,
    q S) on CUDA cores, each sequence's state read and written once per step. Both read q, k, v (and beta, the
    decay), run the conv and the gated RMSNorm, write the output.

    Mamba-2 layers (`recurrence` "mamba2": Nemotron-H) run the SSD algorithm (Dao and Gu 2024, section 6; the
    mamba_chunk_scan_combined kernels vLLM and SGLang call) with the same state per value head (ssm_state_size x
    head_dim, key_head_dim here) and B and C shared by the `key_heads` groups: per chunk of C tokens, each group's
    C B^T (2 C^2 d_k), and per value head the masked (C B^T) X (2 C^2 d_v), the chunk's state B^T X and the
    states' output C S (2 C d_k d_v each), on tensor cores; decode (selective_state_update) per token and head
    the decayed state plus dt x B^T (3 d_k d_v) and its output C S (2 d_k d_v) on CUDA cores. One dt per head
    streams where DeltaNet has a beta and a decay.

    KDA layers (`recurrence` "kda": Kimi Linear; vLLM chunk_kda / fused_recurrent_kda) run DeltaNet's rule with a
    decay per key channel instead of per head: costed with DeltaNet's FLOPs (the per-channel decay scales q and k
    inside the chunk, elementwise work beside the matrix products), streaming each channel's decay.

    Mamba-1 layers (`recurrence` "mamba1": Jamba; vLLM selective_scan_fwd in prefill, selective_state_update in
    decode) scan each channel's d_state-wide state (value heads of width 1, key_head_dim d_state) on CUDA cores in
    both phases, with no matrix product to put on tensor cores: MAMBA1_SCAN_FLOPS per (token, channel, state
    element), the state kept on chip through a prompt, read and written once per sequence; the tokens' dt per
    channel and their B and C (whole on every rank) stream in.

    Lightning attention (`recurrence` "lightning": MiniMax-Text-01 / M1; vLLM lightning_attention, blocks of
    chunk_tokens = 256, and linear_decode_forward_triton) is linear attention with a fixed decay per head: per block
    and head the masked, decayed (Q K^T) V (2 C^2 (d_k + d_v)), the history's Q S and the block's K^T V into the
    state (2 C d_k d_v each), on tensor cores; decode the decayed state plus k^T v and q S (5 d_k d_v per token and
    head) on CUDA cores; no per-token scalars stream.

    Short convolutions (`recurrence` "short_conv": LFM2; vLLM ShortConv, causal_conv1d_fn / causal_conv1d_update)
    keep no state but the conv's last taps: per token and channel B x, the conv's 2 x taps FLOPs and C's gate on
    CUDA cores, in both phases."""

    share: float
    value_heads: float
    key_head_dim: int
    value_head_dim: int
    conv_dim: float
    conv_taps: int
    state_bytes: float
    activation_bytes: float
    recurrence: str = "gated_deltanet"
    key_heads: float = 0.0  # this GPU's key heads (Mamba-2's groups); read for Mamba-2 only
    chunk_tokens: int = 64

    def kernel(self, seqs: float, tokens: float, decode: bool, tensor_flops_per_s: float, vector_flops_per_s: float,
               memory_s: Callable[[float], float]) -> tuple[float, float, float, float]:
        """(flops, bytes, compute_s, memory_s) of one linear-attention layer over `seqs` sequences, `tokens` new."""
        dk, dv, chunk, recurrence = self.key_head_dim, self.value_head_dim, self.chunk_tokens, self.recurrence
        state = self.value_heads * dk * dv * self.state_bytes  # one sequence's recurrent state in this layer
        # q, k, v in and out of the conv, its taps' state, the heads' scalars (KDA: beta and a decay per channel;
        # Mamba-1: dt per channel, B and C), the gated norm's z and output
        scalars = {"gated_deltanet": 2 * self.value_heads, "mamba2": self.value_heads,
                   "kda": (1 + dk) * self.value_heads, "mamba1": self.value_heads + 2 * dk}.get(recurrence, 0)
        stream = tokens * (3 * self.conv_dim + 4 * self.value_heads * dv + scalars) * self.activation_bytes
        conv_state = seqs * self.conv_dim * max(self.conv_taps - 1, 0) * self.activation_bytes * 2
        if recurrence in ("mamba1", "short_conv"):  # CUDA cores in both phases; Mamba-1's state on chip
            flops = tokens * self.value_heads * (MAMBA1_SCAN_FLOPS * dk if recurrence == "mamba1"
                                                 else 2.0 * self.conv_taps + 2.0)
            nbytes = stream + conv_state + seqs * state * 2
            return flops, nbytes, flops / vector_flops_per_s, memory_s(nbytes)
        if decode:
            flops = tokens * self.value_heads * (5.0 if recurrence in ("mamba2", "lightning") else 8.0) * dk * dv
            nbytes = stream + conv_state + seqs * state * 2
            return flops, nbytes, flops / vector_flops_per_s, memory_s(nbytes)
        if recurrence == "mamba2":
            flops = tokens * (self.value_heads * (2.0 * chunk * dv + 4.0 * dk * dv) + self.key_heads * 2.0 * chunk * dk)
        elif recurrence == "lightning":
            flops = tokens * self.value_heads * (2.0 * chunk * (dk + dv) + 4.0 * dk * dv)
        else:
            flops = tokens * self.value_heads * (chunk * (6.0 * dk + 4.0 * dv) + 6.0 * dk * dv)
        chunks = tokens / chunk + seqs  # each sequence's last chunk is partial
        nbytes = stream + conv_state + chunks * state * 2 + seqs * state * 2
        return flops, nbytes, flops / tensor_flops_per_s, memory_s(nbytes)


@dataclass(slots=True, frozen=True)
class SparseIndexer:
    """DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2, GLM-5) as one GPU runs it: every new token's
    `heads` x `head_dim` FP8 query scores every earlier token's indexer key (`key_bytes` each: FP8 key + FP32 scale)
    on tensor cores (2 x heads x head_dim FLOPs per (query, key) pair), the FP32 scores written and read back by the
    top-k selection; the attention itself then runs over each query's `topk` selected keys (AttentionCost.layer)."""

    topk: int
    heads: int
    head_dim: int
    key_bytes: float

    def kernel(self, tokens: float, pairs, kv_tokens, tensor_flops_per_s: float,
               memory_s: Callable[[float], float]) -> tuple:
        """(flops, bytes, compute_s, memory_s) of scoring `pairs` (query, key) pairs of `tokens` new tokens over
        `kv_tokens` cached + new indexer keys, and selecting each query's top-k."""
        flops = 2.0 * self.heads * self.head_dim * pairs
        nbytes = kv_tokens * self.key_bytes + tokens * self.heads * self.head_dim + pairs * 4.0 * 2
        return flops, nbytes, flops / tensor_flops_per_s, memory_s(nbytes)


class AttentionCost:
    """FLOPs, bytes, compute_s and memory_s of one layer's attention, per kernel class."""

    __slots__ = ("flops_per_pair", "kv_bytes_per_token", "q_bytes_per_token", "queries_per_kv_head",
                 "tensor_flops_per_s", "vector_flops_per_s", "decode_tensor_cores", "prefill_half_tokens",
                 "decode_half_rows", "decode_s_per_byte", "memory_s", "prefill_kernel",
                 "prefill_tensor_flops_per_s", "decode_flops_per_pair", "decode_kv_bytes_per_token",
                 "decode_q_bytes_per_token", "latent", "heads", "head_dim", "ranks", "linear", "sparse", "layer_share")

    def __init__(self, hardware: HardwareSpec, engine: EngineProfile, *, head_dim: int, heads: int,
                 kv_heads: int, kv_bytes: float, activation_bytes: float, tensor_peak_flops: float,
                 vector_flops_per_s: float, memory_s: Callable[[float], float],
                 prefill_kernel: AttentionKernel | None = None, latent: LatentAttention | None = None,
                 ranks: int = 1, linear: LinearAttention | None = None, sparse: SparseIndexer | None = None,
                 value_dim: int | None = None, layer_share: float = 1.0) -> None:
        """`heads`/`kv_heads` are this GPU's; `value_dim`: a value head's width where it differs from the q.k width
        `head_dim` (MiMo-V2-Flash's 128 beside 192; None: head_dim); `memory_s(bytes)` is the streaming-copy time of
        the device;
        `prefill_kernel`: the quantization scheme's own prefill kernel (quant_kernels.py), else the generic one;
        `latent`: the model's latent attention (then head_dim is the q.k width and kv_heads is not used);
        `ranks`: attention data-parallel ranks, each running whole sequences of the batch (the costs are the
        busiest rank's: ceil(seqs / ranks) of the sequences); `linear`: a hybrid stack's linear-attention layers
        (then every cost is the mean layer's: the softmax layers' share of this one and linear's of its own);
        `sparse`: DeepSeek sparse attention's indexer (then each query attends over its top-k keys only);
        `layer_share`: the share of the layers that attend at all (ModelSpec.attention_free_layers run none), every
        cost then the mean layer's."""
        eff = hardware.efficiency
        self.latent, self.heads, self.head_dim, self.ranks, self.linear = latent, heads, head_dim, ranks, linear
        self.layer_share = layer_share
        self.sparse = sparse
        if latent is None:
            widths = head_dim + (value_dim or head_dim)  # a key's and a value's
            self.flops_per_pair = 2.0 * widths * heads  # q.k and p.v, 2 FLOPs per multiply-add
            self.kv_bytes_per_token = kv_heads * widths * kv_bytes  # K and V
            self.q_bytes_per_token = heads * widths * activation_bytes  # q read, output written
            self.queries_per_kv_head = heads / kv_heads
            self.decode_flops_per_pair = self.flops_per_pair
            self.decode_q_bytes_per_token = self.q_bytes_per_token
        else:
            cached = latent.kv_lora_rank + latent.qk_rope_head_dim
            # prefill: per-head K (head_dim) and V (v_head_dim) up-projected from the latent
            self.flops_per_pair = 2.0 * heads * (head_dim + latent.v_head_dim)
            self.q_bytes_per_token = heads * (head_dim + latent.v_head_dim) * activation_bytes
            self.kv_bytes_per_token = latent.cached_bytes  # the cache holds the latent and the RoPE key only
            # decode (absorbed): every head's query attends over the one shared latent
            self.queries_per_kv_head = heads
            self.decode_flops_per_pair = 2.0 * heads * (cached + latent.kv_lora_rank)
            self.decode_q_bytes_per_token = heads * (cached + latent.kv_lora_rank) * activation_bytes
        self.decode_kv_bytes_per_token = self.kv_bytes_per_token
        if engine.decode_kv_per_query_head and latent is None:  # query heads' thread blocks re-reading their K / V
            self.decode_kv_bytes_per_token *= 1.0 + engine.decode_kv_per_query_head * (self.queries_per_kv_head - 1)
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
        `kv_tokens` may be numpy arrays (a series of iterations): every result is then an array. A hybrid stack
        with linear-attention layers: the mean layer, its linear share's time added to both times (_plus_kernels),
        so that it is constant in the pairs and KV tokens (a decode line's fixed part)."""
        if self.ranks > 1:  # the busiest attention rank's share: whole sequences, ceil(seqs / ranks) of them
            share = busiest_rank_share(seqs, self.ranks)
            seqs, tokens, pairs, kv_tokens = seqs * share, tokens * share, pairs * share, kv_tokens * share
        softmax = self._softmax_kernel(seqs, tokens, pairs, kv_tokens, decode)
        if self.layer_share != 1.0:  # the mean layer of a stack with attention-free layers (no linear ones beside)
            return tuple(value * self.layer_share for value in softmax)
        lin = self.linear
        if lin is None:
            return softmax
        full = 1.0 - lin.share
        linear = lin.kernel(seqs, tokens, decode, self.tensor_flops_per_s, self.vector_flops_per_s, self.memory_s)
        return _plus_kernels(*(value * full for value in softmax), [tuple(value * lin.share for value in linear)])

    def _softmax_kernel(self, seqs, tokens, pairs, kv_tokens, decode: bool) -> tuple:
        """kernel() of softmax attention, on the busiest rank's sequences."""
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
        """(flops, bytes, compute_s, memory_s) of one layer's attention over both kernel classes of `shape`; with
        sparse attention, the indexer over every earlier token, then attention over each query's top-k keys."""
        if self.sparse is None:
            return self.dense_layer(shape)
        return self.indexed_layer(shape.windowed(self.sparse.topk), shape)

    def indexed_layer(self, keys: BatchShape, indexed: BatchShape) -> tuple:
        """(flops, bytes, compute_s, memory_s) of the indexer scoring the keys of `indexed` (both kernel classes), then
        attention over the keys of `keys` (the same sequences' selected ones): DeepSeek sparse attention's top-k of
        every token, compressed attention's window and top-k compressed entries (perf/compressed_cost.py)."""
        index = [self.indexer(seqs, tokens, pairs, kv) for seqs, tokens, pairs, kv in (
            (indexed.prefill_seqs, indexed.prefill_tokens, indexed.prefill_pairs, indexed.prefill_kv_tokens),
            (indexed.decode_seqs, indexed.decode_tokens, indexed.decode_pairs, indexed.decode_kv_tokens)) if seqs]
        return _plus_kernels(*self.dense_layer(keys), index)

    def indexer(self, seqs, tokens, pairs, kv_tokens) -> tuple:
        """(flops, bytes, compute_s, memory_s) of the sparse-attention indexer over one kernel class's sequences (the
        busiest attention-DP rank's), linear in `pairs` and `kv_tokens` (CostModel's SparseDecodeLine reads it so)."""
        if self.ranks > 1:  # the busiest attention rank's sequences, as kernel() takes them
            share = busiest_rank_share(seqs, self.ranks)
            tokens, pairs, kv_tokens = tokens * share, pairs * share, kv_tokens * share
        return self.sparse.kernel(tokens, pairs, kv_tokens, self.tensor_flops_per_s, self.memory_s)

    def dense_layer(self, shape: BatchShape) -> tuple:
        """layer() without a sparse indexer: attention over every key of `shape` (compressed attention runs its indexer
        over other keys than it attends: perf/compressed_cost.py)."""
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
