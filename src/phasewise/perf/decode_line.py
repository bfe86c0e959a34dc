"""Runs of pure-decode iterations whose contexts grow, in closed form.

Between the iterations of a decode run only attention's pairs and KV tokens change, so fast()'s latency is a
line in one layer's attention time, itself the larger of a compute line and a KV-read line (DecodeLine, read off
the cost model's own assembly at no attention and at PROBE_S). DecodeSeries, a base of CostModel, builds the line
of each batch size once and evaluates whole runs with numpy; a hybrid sliding-window stack (HybridDecodeLine),
sparse attention (SparseDecodeLine) and compressed attention (CompressedDecodeLine) have their own, the indexers'
part of the last two in one place (IndexerLine); a step with an operator on a compute-in-memory substrate is costed
step by step (StepwiseDecode). tests/test_decode_line_parity.py holds every line to fast().
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from phasewise.perf.attention import PROBE_TOKENS
from phasewise.perf.batch import BatchShape

__all__ = ["DOMINANCE", "PROBE_S", "CompressedDecodeLine", "DecodeLine", "DecodeSeries", "HybridDecodeLine",
           "IndexerLine", "SparseDecodeLine", "StepwiseDecode"]

# One layer's attention time at which decode series read their latency's slope off fast()'s assembly
# (a power of two, so dividing by it is exact).
PROBE_S = 2.0 ** 20
# A decode series' attention is max(compute line, KV-read line), both linear in the step. Where one exceeds the
# other at both ends of the series by this factor, far above their rounding (~1e-16 relative), it exceeds it at
# every step in between, and max() is that line alone: the other is not evaluated (the same values, faster).
DOMINANCE = 1.0 + 1e-9


class DecodeLine(NamedTuple):
    """A pure-decode batch whose contexts grow, in fast()'s arithmetic with only its attention pairs and KV
    tokens varying:  attention_s = max(pairs x s_per_pair + fixed_compute_s, kv_tokens x s_per_kv_token + fixed_s,
    dispatch_s) (one layer; the fixed parts are the kernels that run beside attention's whatever the context, e.g.
    latent attention's absorbed up-projections, added to both its times: attention.py _plus_kernels),
    latency_s = attention_s x latency_per_attention_s + latency_offset_s, stage_s likewise,
    FLOPs = flops + pairs x flops_per_pair, bytes = bytes + kv_tokens x bytes_per_kv_token. dispatch_s is the
    eager host floor as one layer's attention time (the layers take at least their kernels' dispatch)."""

    s_per_pair: float
    s_per_kv_token: float
    fixed_s: float
    dispatch_s: float
    latency_per_attention_s: float
    latency_offset_s: float
    stage_per_attention_s: float
    stage_offset_s: float
    flops_per_pair: float
    flops: float
    bytes_per_kv_token: float
    bytes: float
    overlapped_host_s: float  # with overlap scheduling: each latency is at least this host time (else 0)
    fixed_compute_s: float = 0.0

    def attention(self, pairs, kv, maximum):
        """One layer's attention time at `pairs` pairs and `kv` KV tokens (arrays with np.maximum, floats with
        max): the larger of its compute and memory lines, each with its fixed part."""
        return maximum(pairs * self.s_per_pair + self.fixed_compute_s, kv * self.s_per_kv_token + self.fixed_s)


def _first(line: DecodeLine, attention_s: float, flops: float, nbytes: float) -> tuple[float, float, float]:
    """(latency_s, flops, bytes) of one decode iteration on `line` whose attention takes `attention_s` a layer."""
    attention_s = max(attention_s, line.dispatch_s)
    return (max(attention_s * line.latency_per_attention_s + line.latency_offset_s, line.overlapped_host_s), flops,
            nbytes)


def first_step(line: DecodeLine, pairs: float, kv: float, counted_pairs: float, counted_kv: float
               ) -> tuple[float, float, float]:
    """(latency_s, flops, bytes) of one decode iteration on `line`: its time at `pairs` pairs and `kv` KV tokens, its
    FLOPs and bytes at `counted_pairs` and `counted_kv` (the same but where a hybrid stack weighs them apart)."""
    return _first(line, line.attention(pairs, kv, max), line.flops + counted_pairs * line.flops_per_pair,
                  line.bytes + counted_kv * line.bytes_per_kv_token)


class HybridDecodeLine(NamedTuple):
    """decode_line() of a hybrid sliding-window stack (gpt-oss): its `line` in the effective pairs and KV tokens of
    one layer, the mean over its full layers and its `window_share` of windowed ones, which see at most `pairs_cap`
    pairs and `kv_cap` KV tokens (BatchShape.windowed): fast()'s averaged attention, step by step in numpy.
    Windowed layers of their own geometry (Gemma 4) weigh their pairs and KV tokens by their per-pair compute time
    and per-token KV-read time over the full layers' (`pair_s_ratio`, `kv_s_ratio`; `line`'s fixed parts are then
    the mean layer's), and by their FLOPs per pair and bytes per KV token in the counts (`pair_flops_ratio`,
    `kv_bytes_ratio`); all 1 where the two kinds are shaped alike."""

    line: DecodeLine
    window_share: float
    pairs_cap: float
    kv_cap: float
    pair_s_ratio: float = 1.0
    kv_s_ratio: float = 1.0
    pair_flops_ratio: float = 1.0
    kv_bytes_ratio: float = 1.0

    def effective(self, pairs: np.ndarray, kv: np.ndarray, window: tuple | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(pairs, KV tokens) of the mean layer's time, from arrays of the batch's own; `window`: the windowed
        layers' own (pairs, KV tokens) arrays where each context is known, else the caps on the sums."""
        return self._mean_layer(pairs, kv, np.minimum, self.pair_s_ratio, self.kv_s_ratio, window)

    def first(self, pairs: float, kv: float, window: tuple[float, float] | None = None) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch at `pairs` pairs and `kv` KV tokens (`window`: as effective()'s):
        fast() of it less its stage_s (plain floats: no numpy on the per-series path)."""
        return first_step(self.line, *self._mean_layer(pairs, kv, min, self.pair_s_ratio, self.kv_s_ratio, window),
                          *self._mean_layer(pairs, kv, min, self.pair_flops_ratio, self.kv_bytes_ratio, window))

    def _mean_layer(self, pairs, kv, minimum, pair_ratio: float, kv_ratio: float, window=None):
        share = self.window_share
        window_pairs, window_kv = (minimum(pairs, self.pairs_cap), minimum(kv, self.kv_cap)) if window is None \
            else window
        return ((1.0 - share) * pairs + share * pair_ratio * window_pairs,
                (1.0 - share) * kv + share * kv_ratio * window_kv)


class IndexerLine(NamedTuple):
    """A lightning indexer's part of a decode step (perf/attention.py SparseIndexer, linear in its pairs and keys),
    read off AttentionCost.indexer: one layer's time max(pairs x s_per_pair, keys x s_per_key + pairs x read_s_per_pair
    + fixed_s), its FLOPs and bytes over the stage's layers."""

    s_per_pair: float
    s_per_key: float
    read_s_per_pair: float
    fixed_s: float
    flops_per_pair: float
    bytes_per_key: float
    bytes_per_pair: float
    bytes: float

    def time(self, pairs, keys, maximum):
        """One layer's indexer time at `pairs` pairs over `keys` keys (arrays with np.maximum, floats with max)."""
        return maximum(pairs * self.s_per_pair, keys * self.s_per_key + pairs * self.read_s_per_pair + self.fixed_s)

    def counts(self, pairs: float, keys: float) -> tuple[float, float]:
        """(flops, bytes) of the stage's layers' indexers at `pairs` pairs over `keys` keys."""
        return pairs * self.flops_per_pair, keys * self.bytes_per_key + pairs * self.bytes_per_pair + self.bytes


class SparseDecodeLine(NamedTuple):
    """decode_line() of sparse attention (DSA: GLM-5, DeepSeek-V3.2): its latent attention's `line` over at most
    `pairs_cap` pairs and `kv_cap` KV tokens (each new token's top-k keys: BatchShape.windowed), plus the `index`er
    over all of them (IndexerLine), one after the other: AttentionCost.layer's sum, step by step in numpy."""

    line: DecodeLine
    pairs_cap: float
    kv_cap: float
    index: IndexerLine

    def attention(self, pairs, kv, minimum, maximum):
        """One layer's attention time at `pairs` pairs and `kv` KV tokens (arrays with np.minimum / np.maximum,
        floats with min / max): the capped latent attention and the uncapped indexer, one after the other."""
        main = self.line.attention(minimum(pairs, self.pairs_cap), minimum(kv, self.kv_cap), maximum)
        return main + self.index.time(pairs, kv, maximum)

    def first(self, pairs: float, kv: float) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch at `pairs` pairs and `kv` KV tokens: fast() of it less its stage_s."""
        line = self.line
        index_flops, index_bytes = self.index.counts(pairs, kv)
        return _first(line, self.attention(pairs, kv, min, max),
                      line.flops + min(pairs, self.pairs_cap) * line.flops_per_pair + index_flops,
                      line.bytes + min(kv, self.kv_cap) * line.bytes_per_kv_token + index_bytes)


class CompressedDecodeLine(NamedTuple):
    """decode_line() of compressed attention (DeepSeek-V4: perf/compressed_cost.py): its attention kernel's `line` in
    the mean layer's pairs and KV entries, each kind's own (the window's, at most `window_pairs_cap` and
    `window_kv_cap`; a CSA layer's top-k compressed entries beside them, 1 / csa_ratio of the batch's, at most
    `topk_pairs_cap` and `topk_kv_cap`; an HCA layer's 1 / hca_ratio), weighed by the kinds' shares; plus the CSA
    layers' `index`er over all their entries in its share (IndexerLine): compressed_attention_layer's sums, step by
    step in numpy."""

    line: DecodeLine
    csa_share: float
    hca_share: float
    csa_ratio: float
    hca_ratio: float
    window_pairs_cap: float
    window_kv_cap: float
    topk_pairs_cap: float
    topk_kv_cap: float
    index: IndexerLine

    def effective(self, pairs, kv, minimum):
        """(pairs, KV entries) of the mean layer's attention kernel from the batch's own (arrays with np.minimum,
        floats with min)."""
        csa, hca = self.csa_share, self.hca_share
        pairs_c, kv_c = pairs / self.csa_ratio, kv / self.csa_ratio
        return (minimum(pairs, self.window_pairs_cap) + csa * minimum(pairs_c, self.topk_pairs_cap)
                + hca * (pairs / self.hca_ratio),
                minimum(kv, self.window_kv_cap) + csa * minimum(kv_c, self.topk_kv_cap) + hca * (kv / self.hca_ratio))

    def attention(self, pairs, kv, minimum, maximum):
        """One layer's attention time at `pairs` pairs and `kv` KV tokens: the kernel over the mean layer's keys, then
        the CSA layers' indexer in their share."""
        main = self.line.attention(*self.effective(pairs, kv, minimum), maximum)
        return main + self.csa_share * self.index.time(pairs / self.csa_ratio, kv / self.csa_ratio, maximum)

    def first(self, pairs: float, kv: float) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch at `pairs` pairs and `kv` KV tokens: fast() of it less its stage_s."""
        line = self.line
        pairs_eff, kv_eff = self.effective(pairs, kv, min)
        index_flops, index_bytes = self.index.counts(pairs / self.csa_ratio, kv / self.csa_ratio)
        return _first(line, self.attention(pairs, kv, min, max),
                      line.flops + pairs_eff * line.flops_per_pair + self.csa_share * index_flops,
                      line.bytes + kv_eff * line.bytes_per_kv_token + self.csa_share * index_bytes)


class StepwiseDecode(NamedTuple):
    """decode_line() of a batch whose decode step is not a DecodeLine (an operator on a CiM substrate,
    mapped_cost.py): its runs are costed step by step with fast(): exact, slower."""

    seqs: int
    tokens: int
    logit_tokens: int


class DecodeSeries:
    """CostModel's decode runs (a base class: it reads the model's attention, pipeline, caches and fast())."""

    def _decode_line(self, shape: BatchShape) -> DecodeLine:
        """decode_line() of a pure-decode `shape`."""
        if shape.prefill_seqs:
            raise ValueError("decode series take pure-decode batches")
        return self.decode_line(shape.decode_seqs, shape.decode_tokens, shape.logit_tokens)

    def decode_line(self, seqs: int, tokens: int, logit_tokens: int
                    ) -> DecodeLine | HybridDecodeLine | SparseDecodeLine | CompressedDecodeLine | StepwiseDecode:
        """fast() of a pure-decode batch of `seqs` sequences with `tokens` new tokens (`logit_tokens` of them
        through the LM head) as a function of its attention pairs and KV tokens (see DecodeLine): read off
        attention.decode_linear and off pipeline.times at 0 and PROBE_S; cached by batch size. A hybrid
        sliding-window stack: the same line in the mean layer's pairs and KV tokens (HybridDecodeLine); compressed
        attention (DeepSeek-V4) likewise, each kind's keys capped or scaled apart (CompressedDecodeLine)."""
        line = self._plain_decode_line(seqs, tokens, logit_tokens)
        if self.model.compressed is not None:
            return self._compressed_decode_line(line, seqs, tokens)
        if self.model.sparse_attention_topk:
            return self._sparse_decode_line(line, seqs, tokens)
        if not self.window_share:
            return line
        caps = (tokens * self.hybrid_window, seqs * self.hybrid_window)
        if self.window_attention is self.attention:
            return HybridDecodeLine(line, self.window_share, *caps)
        key = ("window geometry", seqs, tokens, logit_tokens)
        hybrid = self._cache.get(key)
        if hybrid is None:
            hybrid = self._cache[key] = self._geometry_decode_line(line, seqs, tokens, caps)
        return hybrid

    def _geometry_decode_line(self, line: DecodeLine, seqs: int, tokens: int, caps: tuple[float, float]
                              ) -> HybridDecodeLine:
        """decode_line() of a hybrid stack whose windowed layers have their own geometry: `line`'s fixed parts made
        the mean layer's, and the windowed kind's slopes over the full kind's as HybridDecodeLine's ratios."""
        full_pair, full_kv, full_fixed = self.attention.decode_linear(seqs, tokens)
        window_pair, window_kv, window_fixed = self.window_attention.decode_linear(seqs, tokens)
        share, layers = self.window_share, self.layers_per_stage
        mean = [(1.0 - share) * full + share * window for full, window in zip(full_fixed, window_fixed)]
        line = line._replace(fixed_compute_s=mean[2], fixed_s=mean[3],
                             flops=line.flops + layers * (mean[0] - full_fixed[0]),
                             bytes=line.bytes + layers * (mean[1] - full_fixed[1]))
        return HybridDecodeLine(line, share, *caps, pair_s_ratio=window_pair[2] / full_pair[2],
                                kv_s_ratio=window_kv[3] / full_kv[3], pair_flops_ratio=window_pair[0] / full_pair[0],
                                kv_bytes_ratio=window_kv[1] / full_kv[1])

    def _plain_decode_line(self, seqs: int, tokens: int, logit_tokens: int) -> DecodeLine:
        """decode_line() but for a hybrid stack's windowed layers: every layer attends over the whole context."""
        key = ("decode", seqs, tokens, logit_tokens)
        line = self._cache.get(key)
        if line is None:
            shape = BatchShape(decode_seqs=seqs, decode_tokens=tokens, logit_tokens=logit_tokens)
            eager, gemm_tokens = self.graph_launch(shape)
            layers_s, embedding_s, lm_head_s, send_s, flops, nbytes, dispatch_s = self._static(
                gemm_tokens, shape.logit_tokens, eager, *self._rank_rows(shape, gemm_tokens), False)
            layers_s += self._attention_launch_s
            layers = self.layers_per_stage
            # eager (_eager_dispatch): the layers take at least the host's dispatch of their kernels, i.e. one
            # layer's attention at least this much
            attention_floor_s = (max(0.0, (dispatch_s + layers * self._attention_dispatch_s - layers_s) / layers)
                                 if eager else 0.0)
            latency0_s, stage0_s = self.pipeline.times(layers_s, embedding_s, lm_head_s, send_s)
            latency1_s, stage1_s = self.pipeline.times(layers_s + self.layers_per_stage * PROBE_S, embedding_s,
                                                       lm_head_s, send_s)
            host_s = self.host_s(shape)
            overlapped_host_s = host_s if self.engine.overlap_scheduling else 0.0
            if overlapped_host_s:
                host_s = 0.0  # applied as a floor after the line (max, not sum)
            per_pair, per_kv_token, fixed = self.attention.decode_linear(shape.decode_seqs, shape.decode_tokens)
            line = DecodeLine(
                s_per_pair=per_pair[2], s_per_kv_token=per_kv_token[3], fixed_s=fixed[3], fixed_compute_s=fixed[2],
                dispatch_s=attention_floor_s,
                latency_per_attention_s=(latency1_s - latency0_s) / PROBE_S, latency_offset_s=latency0_s + host_s,
                stage_per_attention_s=(stage1_s - stage0_s) / PROBE_S, stage_offset_s=stage0_s + host_s,
                flops_per_pair=layers * per_pair[0], flops=flops + layers * fixed[0],
                bytes_per_kv_token=layers * per_kv_token[1], bytes=nbytes + layers * fixed[1],
                overlapped_host_s=overlapped_host_s)
            self._cache[key] = line
        return line

    def _sparse_decode_line(self, line: DecodeLine, seqs: int, tokens: int) -> SparseDecodeLine:
        """decode_line() of sparse attention: `line` (the latent attention alone: AttentionCost.kernel) capped at each
        token's top-k keys, and the indexer's slopes (_indexer_line)."""
        top_k = self.model.sparse_attention_topk
        return SparseDecodeLine(line, tokens * top_k, seqs * top_k, self._indexer_line(seqs, tokens))

    def _compressed_decode_line(self, line: DecodeLine, seqs: int, tokens: int) -> CompressedDecodeLine:
        """decode_line() of compressed attention: `line` (its attention kernel: AttentionCost.kernel) over the mean
        layer's keys, each kind's capped or scaled, and the CSA indexer's slopes (_indexer_line)."""
        m = self.model
        c = m.compressed
        return CompressedDecodeLine(line, c.csa_layers / m.num_layers, c.hca_layers / m.num_layers, c.csa_ratio,
                                    c.hca_ratio, tokens * c.window, seqs * c.window, tokens * c.index_topk,
                                    seqs * c.index_topk, self._indexer_line(seqs, tokens))

    def _indexer_line(self, seqs: int, tokens: int) -> IndexerLine:
        """A lightning indexer's time, FLOPs and bytes per pair and per key (AttentionCost.indexer, linear in both) over
        a decode batch of `seqs` sequences with `tokens` new tokens, read off at no keys and PROBE_TOKENS pairs or
        keys; FLOPs and bytes over the stage's layers."""
        layers, index = self.layers_per_stage, self.attention.indexer
        zero, per_pair, per_kv = (index(seqs, tokens, pairs, kv) for pairs, kv in
                                  ((0.0, 0.0), (PROBE_TOKENS, 0.0), (0.0, PROBE_TOKENS)))
        pair_slope = [(value - base) / PROBE_TOKENS for value, base in zip(per_pair, zero)]
        kv_slope = [(value - base) / PROBE_TOKENS for value, base in zip(per_kv, zero)]
        return IndexerLine(s_per_pair=pair_slope[2], s_per_key=kv_slope[3], read_s_per_pair=pair_slope[3],
                           fixed_s=zero[3], flops_per_pair=layers * pair_slope[0], bytes_per_key=layers * kv_slope[1],
                           bytes_per_pair=layers * pair_slope[1], bytes=layers * zero[1])

    @staticmethod
    def _decode_first(line: DecodeLine, pairs: float, kv: float) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch with `pairs` attention pairs and `kv` KV tokens on `line`:
        fast() of it less its stage_s."""
        return first_step(line, pairs, kv, pairs, kv)

    def decode_series(self, shape: BatchShape, pairs: np.ndarray, kv: np.ndarray
                      ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Latencies of consecutive pure-decode iterations that differ from `shape` only in their
        attention pairs and KV tokens (the context grows): exact, without rebuilding each iteration.
        pairs[0], kv[0] must be shape's own. Returns the latencies and (latency, flops, bytes) of the first."""
        line = self._decode_line(shape)
        if isinstance(line, StepwiseDecode):
            return self._stepwise(line, pairs, kv)
        first_pairs, first_kv = shape.decode_pairs, shape.decode_kv_tokens
        if isinstance(line, (SparseDecodeLine, CompressedDecodeLine)):
            attention = line.attention(np.asarray(pairs, dtype=np.float64), np.asarray(kv, dtype=np.float64),
                                       np.minimum, np.maximum)
            return self._series_latencies(line.line, attention, ascending=False), line.first(first_pairs, first_kv)
        if isinstance(line, HybridDecodeLine):
            pairs, kv = line.effective(np.asarray(pairs, dtype=np.float64), np.asarray(kv, dtype=np.float64))
            attention = line.line.attention(pairs, kv, np.maximum)  # one layer's
            return (self._series_latencies(line.line, attention, ascending=False), line.first(first_pairs, first_kv))
        attention = line.attention(pairs, kv, np.maximum)  # one layer's
        return (self._series_latencies(line, attention, ascending=False),
                self._decode_first(line, first_pairs, first_kv))

    @staticmethod
    def _series_latencies(line: DecodeLine, attention: np.ndarray, ascending: bool) -> np.ndarray:
        """A decode series' latencies from one layer's attention time per iteration (in place): the
        dispatch floor, the rest of the iteration, then the overlapped host floor (skipped when the
        latencies ascend and the first already clears it: then it changes none)."""
        if line.dispatch_s:
            np.maximum(attention, line.dispatch_s, out=attention)
        attention *= line.latency_per_attention_s
        attention += line.latency_offset_s
        host_s = line.overlapped_host_s
        if host_s and not (ascending and attention[0] >= host_s):
            np.maximum(attention, host_s, out=attention)
        return attention

    def decode_series_linear(self, shape: BatchShape, steps: np.ndarray, kv_per_step: float, pairs_per_step: float
                             ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """decode_series for contexts growing linearly: KV tokens kv0 + kv_per_step*j, pairs likewise."""
        return self.decode_line_series(self._decode_line(shape), shape.decode_pairs, shape.decode_kv_tokens, steps,
                                       kv_per_step, pairs_per_step)

    def decode_line_series(self, line: DecodeLine, pairs: float, kv: float, steps: np.ndarray, kv_per_step: float,
                           pairs_per_step: float, window: tuple[np.ndarray, np.ndarray] | None = None
                           ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """decode_series_linear from the batch's sums instead of a BatchShape: its DecodeLine (decode_line())
        and its first iteration's attention pairs and KV tokens (what the simulator's decode runs call).
        `steps` ascend (step indices). `window`: a hybrid sliding-window stack's windowed layers' own (pairs, KV
        tokens) at each step, where each context is known (else each capped on the sums: BatchShape.windowed)."""
        if isinstance(line, StepwiseDecode):
            return self._stepwise(line, pairs + pairs_per_step * steps, kv + kv_per_step * steps, window)
        if isinstance(line, (SparseDecodeLine, CompressedDecodeLine)):
            attention = line.attention(pairs + pairs_per_step * steps, kv + kv_per_step * steps, np.minimum, np.maximum)
            growing = pairs_per_step >= 0 and kv_per_step >= 0
            return self._series_latencies(line.line, attention, ascending=growing), line.first(pairs, kv)
        if isinstance(line, HybridDecodeLine):  # the mean layer's pairs and KV: lines capped in the windowed layers
            pair_series, kv_series = line.effective(pairs + pairs_per_step * steps, kv + kv_per_step * steps, window)
            attention = line.line.attention(pair_series, kv_series, np.maximum)
            growing = pairs_per_step >= 0 and kv_per_step >= 0  # the effective series do not fall either
            first_window = None if window is None else (float(window[0][0]), float(window[1][0]))
            return (self._series_latencies(line.line, attention, ascending=growing),
                    line.first(pairs, kv, first_window))
        s_per_pair, s_per_kv_token, fixed_s = line[:3]
        # DecodeLine.attention over the steps: max(compute, memory), each a line *_0 + *_step x step
        compute_0, compute_step = pairs * s_per_pair + line.fixed_compute_s, pairs_per_step * s_per_pair
        memory_0, memory_step = kv * s_per_kv_token + fixed_s, kv_per_step * s_per_kv_token
        first, last = float(steps[0]), float(steps[-1])
        # both lines >= 0 and growing over the steps: no latency is below the first, and _exceeds() holds
        growing = 0 <= first <= last and min(compute_0, compute_step, memory_0, memory_step) >= 0
        latency = steps * memory_step
        latency += memory_0
        if not (growing and _exceeds(memory_0, memory_step, compute_0, compute_step, first, last)):
            compute = steps * compute_step
            compute += compute_0
            np.maximum(compute, latency, out=latency)
        return self._series_latencies(line, latency, ascending=growing), self._decode_first(line, pairs, kv)

    def _stepwise(self, line: StepwiseDecode, pairs: np.ndarray, kv: np.ndarray, window: tuple | None = None
                  ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """fast() of every step (`window`: as decode_line_series'): the latencies and (latency, flops, bytes) of the
        first."""
        steps = len(np.asarray(pairs))
        windows = ([None] * steps if window is None else
                   [(self.hybrid_window, wp, wk) for wp, wk in zip(np.asarray(window[0]).tolist(),
                                                                   np.asarray(window[1]).tolist())])
        costs = [self.fast(BatchShape(decode_seqs=line.seqs, decode_tokens=line.tokens, decode_pairs=step_pairs,
                                      decode_kv_tokens=step_kv, logit_tokens=line.logit_tokens,
                                      decode_window=step_window))
                 for step_pairs, step_kv, step_window in zip(np.asarray(pairs).tolist(), np.asarray(kv).tolist(),
                                                             windows)]
        first = costs[0]
        return np.array([cost[0] for cost in costs], dtype=np.float64), (first[0], first[2], first[3])

    def decode_stage_series(self, shape: BatchShape, latencies: np.ndarray) -> np.ndarray:
        """stage_s of each iteration of a decode series, given the latencies decode_series or
        decode_series_linear returned for `shape` (before anything is added to them): what fast() returns
        as stage_s for each iteration; a copy of `latencies` when pp == 1."""
        if self.pp == 1:
            return np.array(latencies, dtype=np.float64)
        line = self._decode_line(shape)
        if isinstance(line, (HybridDecodeLine, SparseDecodeLine, CompressedDecodeLine)):
            line = line.line
        stage = np.subtract(latencies, line.latency_offset_s)
        stage *= line.stage_per_attention_s / line.latency_per_attention_s
        stage += line.stage_offset_s
        if line.overlapped_host_s:  # a latency held at the host floor had a device stage below it too
            np.maximum(stage, line.overlapped_host_s, out=stage)
            np.minimum(stage, latencies, out=stage)
        return stage


def _exceeds(a_0: float, a_step: float, b_0: float, b_step: float, first: float, last: float) -> bool:
    """Whether the line a_0 + a_step x j exceeds b_0 + b_step x j, each as numpy rounds it, at every step j from
    `first` to `last` (all of them >= 0): by the DOMINANCE factor at both ends (see DOMINANCE)."""
    return (a_0 + first * a_step > (b_0 + first * b_step) * DOMINANCE
            and a_0 + last * a_step > (b_0 + last * b_step) * DOMINANCE)

