"""How a batch launches on CostModel's GPUs (a base class: it reads the engine profile and the parallel layout):
a captured CUDA graph or eager kernels, the tokens a replayed graph pads up to, the busiest attention-DP rank's share
of the batch (every rank waits for it at the MoE layers), and the host's work per iteration."""

from __future__ import annotations

import bisect
import math

from phasewise.perf.batch import BatchShape


class BatchLaunch:
    """CostModel's graph launch, attention-DP ranks and host work (a base class)."""

    def eager(self, shape: BatchShape) -> bool:
        return self.graph_launch(shape)[0]

    def graph_launch(self, shape: BatchShape) -> tuple[bool, int]:
        """Whether the iteration runs eagerly (no captured CUDA graph), and the tokens its GEMMs process:
        a graph replays at a captured size, so a batch between sizes pads up to the next one (its padded
        rows cost GEMM work, not attention). Decode-only graphs are captured by batch size; vLLM V1's
        piecewise graphs by token count, mixed batches included (EngineProfile.cuda_graph_mixed); SGLang's
        piecewise graphs for batches with prefill tokens by token count (piecewise_graph_tokens). A batch
        with prefill tokens that replays graphs still launches its attention eagerly between the pieces
        (iteration()). On a chip that captures no CUDA graphs (a CPU: HardwareSpec.captures_cuda_graphs) every
        iteration runs eagerly."""
        engine, tokens = self.engine, shape.tokens
        graphs = engine.cuda_graphs and self.hw.captures_cuda_graphs
        if graphs and shape.prefill_tokens > 0 and engine.piecewise_graph_tokens and not engine.cuda_graph_mixed:
            sizes = engine.piecewise_graph_tokens
            size = math.ceil(self._busiest_rank(shape)[0])  # each attention rank replays its share
            if size > sizes[-1]:
                return True, tokens
            return False, self._padded(tokens, sizes[bisect.bisect_left(sizes, size)])
        if not graphs or (shape.prefill_tokens > 0 and not engine.cuda_graph_mixed):
            return True, tokens
        size = tokens if engine.cuda_graph_mixed else shape.seqs
        if self.attention_dp > 1:  # each attention rank replays its own graph for its share of the batch
            size = math.ceil(size / self.attention_dp)
        sizes = engine.cuda_graph_sizes  # none listed: every size up to cuda_graph_max_batch is captured
        if size > (sizes[-1] if sizes else engine.cuda_graph_max_batch):
            return True, tokens
        captured = sizes[bisect.bisect_left(sizes, size)] if sizes else size
        if not engine.cuda_graph_padding:  # only a captured size replays; the ranks run their own tokens
            return captured != size, tokens
        per_unit = 1 if engine.cuda_graph_mixed else tokens // shape.seqs
        return False, self._padded(tokens, captured * per_unit)

    def _padded(self, tokens: int, rank_tokens: int) -> int:
        """The tokens a batch's GEMMs process when every attention-DP rank replays the busiest rank's captured graph
        of `rank_tokens` tokens (the lighter ranks pad up to it as the busiest pads up to a captured size)."""
        return max(tokens, rank_tokens * self.attention_dp)

    def _busiest_rank(self, shape: BatchShape) -> tuple[float, float]:
        """(tokens, logit tokens) of `shape` on its busiest attention-DP rank, before graph padding: each rank
        runs whole sequences (ParallelLayout.busiest_rank_share, per kernel class); its logit tokens at the larger
        of the two classes' shares. The batch's own without attention DP."""
        if self.attention_dp == 1:
            return shape.tokens, shape.logit_tokens
        prefill, decode = self._rank_shares(shape)
        tokens = shape.prefill_tokens * prefill + shape.decode_tokens * decode
        logit_share = max(prefill if shape.prefill_seqs else 0.0, decode if shape.decode_seqs else 0.0)
        return tokens, shape.logit_tokens * logit_share

    def _rank_rows(self, shape: BatchShape, gemm_tokens: int) -> tuple[float, float]:
        """(tokens, logit tokens) the busiest attention-DP rank's dense GEMMs process: its share of `shape`
        (_busiest_rank), or the captured graph's tokens every rank replays when graph_launch padded the batch."""
        if self.attention_dp == 1:
            return gemm_tokens, shape.logit_tokens
        tokens, logit_tokens = self._busiest_rank(shape)
        return max(tokens, gemm_tokens / self.attention_dp), logit_tokens

    def _attention_eager(self, shape: BatchShape, eager: bool) -> bool:
        """Whether the iteration launches its attention eagerly: when it runs eagerly, when a batch with prefill
        tokens replays piecewise graphs (vLLM V1's, SGLang's), which leave attention between the pieces, and for
        every batch where the engine's graphs are piecewise only (EngineProfile.cuda_graph_attention_eager: vLLM
        before 0.11, its decode batches too)."""
        return eager or shape.prefill_tokens > 0 or self.engine.cuda_graph_attention_eager

    def _with_host(self, device_s: float, host_s: float) -> float:
        """An iteration's time from its device time and its host work: their sum, or, when the engine's
        scheduler overlaps the host work of the next step with this one (overlap_scheduling), the larger."""
        return max(device_s, host_s) if self.engine.overlap_scheduling else device_s + host_s

    def host_s(self, shape: BatchShape) -> float:
        """The engine's host work for one iteration of `shape` (scheduler, input preparation, sampling). With
        attention data parallelism each rank has a scheduler process of its own that prepares its own sequences
        while the others prepare theirs (SGLang's DP attention, one scheduler per rank; TensorRT-LLM's attention
        DP, one executor per rank; vLLM's data-parallel engine cores): the busiest rank's sequences count."""
        return (self.engine.iteration_overhead_s + self.engine.per_sequence_overhead_s * self._rank_seqs(shape)
                ) / self.eff.host_speed

    def _rank_seqs(self, shape: BatchShape) -> float:
        """The sequences of `shape` on its busiest attention-DP rank (_rank_shares); the batch's own without
        attention DP."""
        if self.attention_dp == 1:
            return shape.seqs
        prefill, decode = self._rank_shares(shape)
        return shape.prefill_seqs * prefill + shape.decode_seqs * decode

    def _rank_shares(self, shape: BatchShape) -> tuple[float, float]:
        """The busiest attention-DP rank's shares of `shape`'s prefilling and of its decoding sequences: each rank
        runs whole sequences (ParallelLayout.busiest_rank_share, per kernel class)."""
        share = self.layout.busiest_rank_share
        return share(shape.prefill_seqs), share(shape.decode_seqs)

