"""Time of one forward iteration, operator by operator.

Each operator costs  max(compute, memory) + device launch,  where
  compute = FLOPs / (peak of its dtype x efficiency that grows with the rows it multiplies),
  memory  = bytes / (bandwidth x efficiency that grows with the transfer size).
When the engine runs an iteration eagerly (no captured CUDA graph) the host launches each kernel
(dispatch = kernels x the engine's eager_launch_s), asynchronously: it runs ahead of the device, which
waits only when the host falls behind, so a stage's layers take  max(their device time, the host's
dispatch of all their kernels)  (the excess is the EAGER_DISPATCH operator). The embedding and LM head,
once per iteration, keep max(compute, memory, dispatch) + launch each.
Collectives (TP all-reduce, PP send/recv) cost latency + bytes over the link. The iteration adds
the engine's host overhead (scheduler, input preparation, sampling) per iteration and per sequence.
Every constant comes from HardwareSpec.efficiency or EngineProfile; see specs/data/*.yaml.

One formula per operator: attention's is AttentionCost (attention.py), shared by iteration(), fast() and
the decode series; how layers, embedding, LM head and transfers form pipeline stages is Pipeline
(stages.py), shared likewise; iteration_parts() gives an iteration by stage and operator group
(operators.py names the operators, their kernels and groups).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.attention import PROBE_TOKENS, AttentionCost, LatentAttention, LinearAttention, SparseIndexer
from phasewise.perf.batch import BatchShape
from phasewise.perf.expert_load import expected_distinct_experts, expected_row_tiles
from phasewise.perf.operators import EAGER_DISPATCH, KERNELS, IterationCost, OperatorCost, kernel_counts
from phasewise.perf.parallel import ParallelLayout
from phasewise.perf.quant_kernels import gemm_compute_s
from phasewise.perf.stages import NOT_PER_LAYER, IterationParts, Pipeline, stage_inputs
from phasewise.perf.tiling import array_utilization
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes

__all__ = ["KERNELS", "CostModel", "IterationCost", "IterationParts", "OperatorCost", "check_parallelism",
           "kv_heads_per_gpu", "kv_elements_per_token_layer", "link"]

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


class HybridDecodeLine(NamedTuple):
    """decode_line() of a hybrid sliding-window stack (gpt-oss): its `line` in the effective pairs and KV tokens of
    one layer, the mean over its full layers and its `window_share` of windowed ones, which see at most `pairs_cap`
    pairs and `kv_cap` KV tokens (BatchShape.windowed): fast()'s averaged attention, step by step in numpy."""

    line: DecodeLine
    window_share: float
    pairs_cap: float
    kv_cap: float

    def effective(self, pairs: np.ndarray, kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pairs, KV tokens) of the mean layer, from arrays of the batch's own."""
        return self._mean_layer(pairs, kv, np.minimum)

    def effective_one(self, pairs: float, kv: float) -> tuple[float, float]:
        """effective() of one iteration's sums (plain floats: no numpy on the per-series path)."""
        return self._mean_layer(pairs, kv, min)

    def _mean_layer(self, pairs, kv, minimum):
        share = self.window_share
        return ((1.0 - share) * pairs + share * minimum(pairs, self.pairs_cap),
                (1.0 - share) * kv + share * minimum(kv, self.kv_cap))


class SparseDecodeLine(NamedTuple):
    """decode_line() of sparse attention (DSA: GLM-5, DeepSeek-V3.2): its latent attention's `line` over at most
    `pairs_cap` pairs and `kv_cap` KV tokens (each new token's top-k keys: BatchShape.windowed), plus the indexer over
    all of them, one layer's indexer taking max(pairs x index_s_per_pair, kv x index_s_per_kv_token + pairs x
    index_read_s_per_pair + index_fixed_s) (perf/attention.py SparseIndexer, linear in both); its FLOPs and bytes
    per pair and KV token over the stage's `layers`: AttentionCost.layer's sum, step by step in numpy."""

    line: DecodeLine
    pairs_cap: float
    kv_cap: float
    index_s_per_pair: float
    index_s_per_kv_token: float
    index_read_s_per_pair: float
    index_fixed_s: float
    index_flops_per_pair: float
    index_bytes_per_kv_token: float
    index_bytes_per_pair: float
    index_bytes: float

    def attention(self, pairs, kv, minimum, maximum):
        """One layer's attention time at `pairs` pairs and `kv` KV tokens (arrays with np.minimum / np.maximum,
        floats with min / max): the capped latent attention and the uncapped indexer, one after the other."""
        main = self.line.attention(minimum(pairs, self.pairs_cap), minimum(kv, self.kv_cap), maximum)
        return main + maximum(pairs * self.index_s_per_pair,
                              kv * self.index_s_per_kv_token + pairs * self.index_read_s_per_pair + self.index_fixed_s)

    def first(self, pairs: float, kv: float) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch at `pairs` pairs and `kv` KV tokens: fast() of it less its stage_s."""
        line = self.line
        attention_s = max(self.attention(pairs, kv, min, max), line.dispatch_s)
        latency_s = max(attention_s * line.latency_per_attention_s + line.latency_offset_s, line.overlapped_host_s)
        flops = line.flops + min(pairs, self.pairs_cap) * line.flops_per_pair + pairs * self.index_flops_per_pair
        nbytes = (line.bytes + min(kv, self.kv_cap) * line.bytes_per_kv_token + kv * self.index_bytes_per_kv_token
                  + pairs * self.index_bytes_per_pair + self.index_bytes)
        return latency_s, flops, nbytes


class StepwiseDecode(NamedTuple):
    """decode_line() of a batch whose decode step is not a DecodeLine (an operator on a CiM substrate,
    mapped_cost.py): its runs are costed step by step with fast(): exact, slower."""

    seqs: int
    tokens: int
    logit_tokens: int


class CostModel:
    """Cost of forward iterations of one model on one TP x PP group of one hardware type."""

    def __init__(self, model: ModelSpec, hardware: HardwareSpec, quant: QuantScheme,
                 engine: EngineProfile, tp: int = 1, pp: int = 1, layout: ParallelLayout | None = None) -> None:
        """`tp` GPUs per pipeline stage; `layout` (perf/parallel.py): how they split attention (tensor or data
        parallel) and the MoE experts (tensor or expert parallel); None: all tensor-parallel."""
        layout = layout or ParallelLayout(tp=tp)
        if layout.tp != tp:
            raise ValueError(f"layout for tp={layout.tp} given to a tp={tp} cost model")
        check_parallelism(model, layout.attention_tp, pp)
        quant = quant.on(hardware)  # a format the chip has no tensor path for: the path its kernels expand it to
        if model.linear_attention_layers and engine.overlap_scheduling and not engine.recurrent_state_overlap:
            engine = engine.model_copy(update={"overlap_scheduling": False})  # e.g. SGLang's MambaRadixCache
        self.model, self.hw, self.quant, self.engine, self.tp, self.pp = model, hardware, quant, engine, tp, pp
        self.layout = layout
        self.attention_dp = layout.attention_dp  # attention ranks: each runs whole sequences of the batch
        eff = hardware.efficiency
        self.eff = eff
        self.peak = hardware.peak(quant.compute_dtype)
        self.hp_dtype = quant.compute_dtype if quant.compute_dtype in ("fp32", "fp16") else "bf16"
        self.attn_peak = hardware.peak(self.hp_dtype)
        self.hp_bytes = dtype_bytes(self.hp_dtype)
        self.w_bytes = quant.weight_bytes_per_param
        self._weight_read_efficiency = eff.weight_read_efficiency.get(quant.weight_dtype, 1.0)
        self.a_bytes = quant.activation_bytes if quant.compute_dtype != "fp32" else 4.0
        self.kv_bytes = quant.kv_bytes_per_element
        self.bw = hardware.memory_bandwidth_bytes_per_s
        self._stream_bw = self.bw * eff.memory_efficiency_max  # _memory_s's first factor
        self.pipeline = Pipeline(model.num_layers, pp)
        self.layers_per_stage = self.pipeline.layers_per_stage
        m = model
        self.heads = m.num_heads // layout.attention_tp
        self.kv_heads = kv_heads_per_gpu(m.num_kv_heads, layout.attention_tp)
        ic = hardware.interconnect
        self.tp_bw, self.tp_lat = ring_bandwidth(ic, layout.attention_tp), link(ic, layout.attention_tp)[1]
        self.moe_bw, self.moe_lat = link(ic, tp)  # the MoE group, every GPU of the stage: its all-to-all
        self.moe_ring_bw = ring_bandwidth(ic, tp)  # and its all-reduce
        self.pp_bw, self.pp_lat = link(ic, tp * pp) if pp > 1 else (ic.intra_node_bandwidth_bytes_per_s, 0.0)
        self.moe_share = m.num_moe_layers / m.num_layers
        # a hybrid stack: this share of the layers attends over the last `window` keys only (BatchShape.windowed)
        self.window_share, self.hybrid_window = m.window_layer_share, m.sliding_window
        if self.window_share and pp > 1:
            raise PhasewiseError(f"--pp {pp}: pipeline parallelism of a hybrid sliding-window stack ({model.name}) "
                                 "is not modelled yet; use --pp 1")
        # a hybrid stack with linear-attention layers: every layer operator is the mean layer's (_mean_layer)
        self.linear_share = m.linear_layer_share
        if self.linear_share and pp > 1:
            raise PhasewiseError(f"--pp {pp}: pipeline parallelism of a hybrid linear-attention stack ({model.name}) "
                                 "is not modelled yet; use --pp 1")
        self.gemm_eff = eff.gemm_efficiency_max * engine.compute_efficiency
        # the model's own weights run on the scheme's kernels: at their small-batch tile where it is fewer rows
        self._own_kernel_half_rows = min(eff.gemm_half_rows, quant.kernel_half_rows or eff.gemm_half_rows)
        # a chip built from parts: a GEMM's efficiency follows from how it tiles onto the arrays (tiling.py)
        self._arrays = hardware.parts.compute if hardware.parts is not None else None
        self.vector_rate = hardware.vector_flops * eff.vector_efficiency
        self.attention = AttentionCost(hardware, engine, head_dim=m.head_dim, heads=self.heads,
                                       kv_heads=self.kv_heads, kv_bytes=self.kv_bytes, activation_bytes=self.a_bytes,
                                       tensor_peak_flops=self.attn_peak, vector_flops_per_s=self.vector_rate,
                                       memory_s=self._memory_s, prefill_kernel=quant.attention_kernel,
                                       latent=self._latent_attention() if m.latent_attention else None,
                                       ranks=layout.attention_dp,
                                       linear=self._linear_attention() if m.linear_attention_layers else None,
                                       sparse=SparseIndexer(m.sparse_attention_topk, m.indexer_heads,
                                                            m.indexer_head_dim, m.indexer_key_bytes)
                                       if m.sparse_attention_topk else None)
        # the attention operator over a stage's layers (_op's rule): its kernels' host dispatch per layer when
        # eager, and the device launches of all of them
        kernels = kernel_counts(m.latent_attention, m.shared_expert_intermediate_size > 0, m.sparse_attention_topk > 0,
                                m.linear_layer_share)
        self.eager_launch_s = engine.eager_launch_s / eff.host_speed  # host time per eager kernel on this platform
        self._attention_dispatch_s = kernels["attention"] * self.eager_launch_s
        self._attention_launch_s = self.layers_per_stage * kernels["attention"] * eff.kernel_launch_s
        curve = eff.gemm_efficiency_curve
        self._curve = None if not curve else (tuple(math.log(r) for r, _ in curve), tuple(e for _, e in curve))
        # _op's per-call dispatch (eager) and launch times of each operator's kernels
        self._op_dispatch_s = {name: k * self.eager_launch_s for name, k in kernels.items()}
        self._op_launch_s = {name: k * eff.kernel_launch_s for name, k in kernels.items()}
        # fast(): cost but attention's by (tokens, logit tokens, eager); decode series: decode_line by batch
        self._cache: dict[tuple, tuple] = {}

    # --- building blocks ------------------------------------------------------------------------
    def memory_s(self, nbytes: float) -> float:
        """Time of `nbytes` of streaming memory traffic (reads + writes), by the rule every operator uses."""
        return self._memory_s(nbytes)

    def gemm(self, rows: float, k: float, n: float) -> tuple[float, float, float, float]:
        """(FLOPs, bytes, compute_s, memory_s) of one `rows` x k @ k x n GEMM with high-precision weights and no
        quantized kernel (e.g. a LoRA adapter), by the rule every projection of iteration() is costed with."""
        return self._gemm(rows, k, n, self.hp_bytes, self.attn_peak, False)

    def _latent_attention(self) -> LatentAttention:
        """Multi-head latent attention's shapes on this GPU, and its per-head up-projections (the KV-up weight,
        split by head across TP) as GEMMs of the model's own weight format."""
        m = self.model

        def up_projection(rows: float, k: float, n: float, heads: float) -> tuple[float, float, float, float]:
            return self._gemm(rows, k, n, self.w_bytes, self.peak, True, weights=heads)

        return LatentAttention(kv_lora_rank=m.kv_lora_rank, qk_rope_head_dim=m.qk_rope_head_dim,
                               v_head_dim=m.v_dim, up_projection=up_projection)

    def _linear_attention(self) -> LinearAttention:
        """This GPU's share of the linear-attention layers' heads and conv channels (split by attention TP)."""
        m, tp = self.model, self.layout.attention_tp
        return LinearAttention(share=self.linear_share, value_heads=m.linear_value_heads / tp,
                               key_head_dim=m.linear_key_head_dim, value_head_dim=m.linear_value_head_dim,
                               conv_dim=m.linear_conv_dim / tp, conv_taps=m.linear_conv_kernel,
                               state_bytes=dtype_bytes(self.engine.recurrent_state_dtype),
                               activation_bytes=self.a_bytes)

    @staticmethod
    def _mean_layer(plain: tuple, other: tuple, share: float) -> tuple:
        """(flops, bytes, compute_s, memory_s) of a hybrid stack's mean layer: `share` of its layers cost `other`
        (windowed attention, linear attention), the rest `plain`."""
        return tuple(p * (1.0 - share) + o * share for p, o in zip(plain, other))

    def _memory_s(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        return nbytes / (self._stream_bw * nbytes / (nbytes + self.eff.memory_half_bytes))

    def _row_start_bytes(self, k: float, weight_bytes: float) -> float:
        """The per-row start-up cost of streaming `weight_bytes` of weight matrices whose contiguous rows hold `k`
        elements (torch stores W of x @ W^T as n x k), as bytes of streaming: with them the weights stream at
        k / (k + weight_row_half_elems) of the bandwidth (0 on GPUs: no effect)."""
        return weight_bytes * self.eff.weight_row_half_elems / k

    def _gemm(self, rows: float, k: float, n: float, w_bytes: float, peak: float, dequant: bool,
              weights: float = 1.0, extra_bytes: float = 0.0,
              row_tiles: Callable[[int], float] | None = None) -> tuple[float, float, float, float]:
        """FLOPs, bytes, compute_s, memory_s of `rows` x k @ k x n, with `weights` copies of the weight read and
        `extra_bytes` streamed beside it (an LM head's logits); `row_tiles(R)`: the row tiles of R rows over all
        `weights` where their rows differ (a grouped GEMM's experts), else ceil(rows / weights / R) each."""
        if rows <= 0:
            return 0.0, 0.0, 0.0, 0.0
        flops = 2.0 * rows * k * n
        weight_bytes = weights * k * n * w_bytes
        nbytes = weight_bytes + rows * (k + n) * self.a_bytes + extra_bytes
        if self._arrays is None:
            eff = self._gemm_efficiency(rows / weights, dequant)
        else:
            eff = self.gemm_eff * array_utilization(rows / weights, k, n, self._arrays)
        compute = flops / (peak * eff)
        kernel = self.quant.gemm_kernel
        if dequant and kernel is not None:  # the scheme's own main loop (quant_kernels.py)
            per_weight = row_tiles(kernel.tile_rows) / weights if row_tiles else None
            compute = gemm_compute_s(kernel, compute, weights * k * n, rows / weights,
                                     self.quant.dequant_ops_per_weight, self.vector_rate, self.eff.sync_mma_efficiency,
                                     per_weight)
        elif dequant and self.quant.dequant_ops_per_weight:
            tile = self.eff.dequant_tile_rows
            tiles = row_tiles(tile) if row_tiles else weights * math.ceil(rows / weights / tile)
            compute += k * n * tiles * self.quant.dequant_ops_per_weight / self.vector_rate
        memory = self._memory_s(nbytes + self._row_start_bytes(k, weight_bytes))
        if dequant:  # the model's own (quantized) weights: their kernels' streaming efficiency
            memory /= self._weight_read_efficiency
        return flops, nbytes, compute, memory

    def _gemm_efficiency(self, rows: float, own_kernel: bool = False) -> float:
        """Fraction of the tensor peak a GEMM with `rows` activation rows per weight matrix reaches; `own_kernel`:
        the scheme's weight-expanding kernel multiplies the model's weights, at its kernel_half_rows where fewer."""
        curve = self._curve
        if curve is None:
            half_rows = self._own_kernel_half_rows if own_kernel else self.eff.gemm_half_rows
            return self.gemm_eff * rows / (rows + half_rows)
        x = math.log(max(rows, 1.0))
        xs, ys = curve
        if x <= xs[0]:
            return ys[0] * self.engine.compute_efficiency
        if x >= xs[-1]:
            return ys[-1] * self.engine.compute_efficiency
        i = bisect.bisect_right(xs, x)
        t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
        return (ys[i - 1] + t * (ys[i] - ys[i - 1])) * self.engine.compute_efficiency

    def _op(self, name: str, count: int, flops: float, nbytes: float, compute: float, memory: float,
            eager: bool, extra_s: float = 0.0, side_stream: bool = False) -> OperatorCost:
        """Scale one layer's cost by `count`; `extra_s` is a fixed cost per call added to launch. Eager, a
        layer operator's dispatch overlaps the stage's device time (_eager_dispatch()). On a side stream its
        kernels' launch gaps hide behind the main stream's kernels."""
        dispatch = self._op_dispatch_s[name] if eager else 0.0  # k kernels x eager launch
        launch = 0.0 if side_stream else self._op_launch_s[name]
        return OperatorCost(name, count, flops * count, nbytes * count, compute * count, memory * count,
                            dispatch * count, (launch + extra_s) * count,
                            host_overlapped=eager and name not in NOT_PER_LAYER)

    def _eager_dispatch(self, operators: list[OperatorCost]) -> OperatorCost:
        """EAGER_DISPATCH: the host's launches of a stage's layers beyond their device time, so that the
        layers take max(device time, host dispatch) (module doc): the device time of all of them (graph-replayed
        pieces too), the dispatch of the kernels launched eagerly."""
        device_s = sum(op.time_s for op in operators if op.name not in NOT_PER_LAYER)
        dispatch_s = sum(op.dispatch_s for op in operators if op.host_overlapped)
        return OperatorCost(EAGER_DISPATCH, self.layers_per_stage, 0.0, 0.0, 0.0, 0.0,
                            max(0.0, dispatch_s - device_s), 0.0)

    def _collective(self, name: str, count: int, nbytes: float, ranks: int, bw: float, lat: float,
                    eager: bool) -> OperatorCost:
        """TP all-reduce: NCCL's ring (2(r-1) latency steps, 2(r-1)/r of the bytes over each link) or, with
        the engine's custom all-reduce inside one NVLink domain, the fastest of ring, two-shot (reduce-scatter
        + all-gather through peer memory: 2 steps, the ring's bytes) and one-shot (every rank reads the r-1
        peer buffers: 1 step, (r-1) x the bytes), as those kernels pick by message size. PP: one hop."""
        rate = bw * self.eff.link_efficiency * self.engine.collective_efficiency
        if name.endswith("allreduce"):
            ring = 2 * (ranks - 1) * lat + 2 * (ranks - 1) / ranks * nbytes / rate
            net = ring
            if self.engine.custom_allreduce and ranks <= self.hw.interconnect.gpus_per_node:
                two_shot = 2 * lat + 2 * (ranks - 1) / ranks * nbytes / rate
                one_shot = lat + (ranks - 1) * nbytes / rate
                net = min(ring, two_shot, one_shot)
        else:
            net = lat + nbytes / rate
        return self._op(name, count, 0.0, nbytes, 0.0, net, eager, self.engine.collective_overhead_s)

    # --- one iteration --------------------------------------------------------------------------
    def eager(self, shape: BatchShape) -> bool:
        return self.graph_launch(shape)[0]

    def graph_launch(self, shape: BatchShape) -> tuple[bool, int]:
        """Whether the iteration runs eagerly (no captured CUDA graph), and the tokens its GEMMs process:
        a graph replays at a captured size, so a batch between sizes pads up to the next one (its padded
        rows cost GEMM work, not attention). Decode-only graphs are captured by batch size; vLLM V1's
        piecewise graphs by token count, mixed batches included (EngineProfile.cuda_graph_mixed); SGLang's
        piecewise graphs for batches with prefill tokens by token count (piecewise_graph_tokens). A batch
        with prefill tokens that replays graphs still launches its attention eagerly between the pieces
        (iteration())."""
        engine, tokens = self.engine, shape.tokens
        if engine.cuda_graphs and shape.prefill_tokens > 0 and engine.piecewise_graph_tokens \
                and not engine.cuda_graph_mixed:
            sizes = engine.piecewise_graph_tokens
            size = math.ceil(self._busiest_rank(shape)[0])  # each attention rank replays its share
            if size > sizes[-1]:
                return True, tokens
            return False, tokens + (sizes[bisect.bisect_left(sizes, size)] - size) * self.attention_dp
        if not engine.cuda_graphs or (shape.prefill_tokens > 0 and not engine.cuda_graph_mixed):
            return True, tokens
        size = tokens if engine.cuda_graph_mixed else shape.seqs
        if self.attention_dp > 1:  # each attention rank replays its own graph for its share of the batch
            size = math.ceil(size / self.attention_dp)
        sizes = engine.cuda_graph_sizes
        if not sizes:
            return size > engine.cuda_graph_max_batch, tokens
        if size > sizes[-1]:
            return True, tokens
        captured = sizes[bisect.bisect_left(sizes, size)]
        if captured == size:
            return False, tokens
        if not engine.cuda_graph_padding:
            return True, tokens
        per_unit = 1 if engine.cuda_graph_mixed else tokens // shape.seqs
        return False, tokens + (captured - size) * per_unit * self.attention_dp  # every rank pads alike

    def _busiest_rank(self, shape: BatchShape) -> tuple[float, float]:
        """(tokens, logit tokens) of `shape` on its busiest attention-DP rank, before graph padding: each rank
        runs whole sequences (ParallelLayout.busiest_rank_share, per kernel class); its logit tokens at the larger
        of the two classes' shares. The batch's own without attention DP."""
        if self.attention_dp == 1:
            return shape.tokens, shape.logit_tokens
        share = self.layout.busiest_rank_share
        prefill, decode = share(shape.prefill_seqs), share(shape.decode_seqs)
        tokens = shape.prefill_tokens * prefill + shape.decode_tokens * decode
        logit_share = max(prefill if shape.prefill_seqs else 0.0, decode if shape.decode_seqs else 0.0)
        return tokens, shape.logit_tokens * logit_share

    def _rank_rows(self, shape: BatchShape, gemm_tokens: int) -> tuple[float, float]:
        """(tokens, logit tokens) the busiest attention-DP rank's dense GEMMs process: its share of `shape`
        (_busiest_rank) plus its graph padding (graph_launch pads every rank alike)."""
        if self.attention_dp == 1:
            return gemm_tokens, shape.logit_tokens
        tokens, logit_tokens = self._busiest_rank(shape)
        return tokens + (gemm_tokens - shape.tokens) / self.attention_dp, logit_tokens

    @staticmethod
    def _attention_eager(shape: BatchShape, eager: bool) -> bool:
        """Whether the iteration launches its attention eagerly: when it runs eagerly, and when a batch with
        prefill tokens replays piecewise graphs (vLLM V1's, SGLang's), which leave attention between the pieces."""
        return eager or shape.prefill_tokens > 0

    def _with_host(self, device_s: float, host_s: float) -> float:
        """An iteration's time from its device time and its host work: their sum, or, when the engine's
        scheduler overlaps the host work of the next step with this one (overlap_scheduling), the larger."""
        return max(device_s, host_s) if self.engine.overlap_scheduling else device_s + host_s

    def iteration(self, shape: BatchShape) -> IterationCost:
        """Cost of one forward pass over `shape` (see BatchShape), operator by operator."""
        if shape.tokens <= 0:
            raise ValueError("an iteration needs at least one token")
        eager, gemm_tokens = self.graph_launch(shape)
        attention_eager = self._attention_eager(shape, eager)
        ops = self._other_ops(gemm_tokens, shape.logit_tokens, eager, *self._rank_rows(shape, gemm_tokens),
                              shape.prefill_tokens > 0)
        ops.insert(2, self._op("attention", self.layers_per_stage, *self._attention_layer(shape), attention_eager))
        if attention_eager:
            ops.append(self._eager_dispatch(ops))
        latency_s, stage_s = self.pipeline.times(*stage_inputs(ops))
        host_s = self.host_s(shape)
        return IterationCost(self._with_host(latency_s, host_s), self._with_host(stage_s, host_s), host_s, ops)

    def iteration_parts(self, shape: BatchShape) -> IterationParts:
        """iteration(shape) by pipeline stage and operator group (attention, dense GEMMs, elementwise,
        communication) plus host overhead; the stages sum to its latency_s and the slowest is its stage_s.
        How the stages are formed: stages.py."""
        cost = self.iteration(shape)
        return self.pipeline.split(cost.operators, cost.host_s, self.engine.overlap_scheduling)

    def fast(self, shape: BatchShape) -> tuple[float, float, float, float]:
        """(latency_s, stage_s, flops, bytes) of iteration(shape), without building the breakdown:
        everything but attention depends only on (tokens, logit tokens, eager, prompt tokens or not) and is
        cached."""
        eager, gemm_tokens = self.graph_launch(shape)
        layers_s, embedding_s, lm_head_s, send_s, flops, nbytes, dispatch_s = self._static(
            gemm_tokens, shape.logit_tokens, eager, *self._rank_rows(shape, gemm_tokens), shape.prefill_tokens > 0)
        attention_flops, attention_bytes, compute_s, memory_s = self._attention_layer(shape)
        layers = self.layers_per_stage
        layers_s += layers * max(compute_s, memory_s) + self._attention_launch_s  # _op's rule
        if self._attention_eager(shape, eager):  # _eager_dispatch's rule, as iteration() applies it
            layers_s = max(layers_s, dispatch_s + layers * self._attention_dispatch_s)
        latency_s, stage_s = self.pipeline.times(layers_s, embedding_s, lm_head_s, send_s)
        host_s = self.host_s(shape)
        return (self._with_host(latency_s, host_s), self._with_host(stage_s, host_s),
                flops + layers * attention_flops, nbytes + layers * attention_bytes)

    def _static(self, tokens: int, logit_tokens: int, eager: bool, rank_tokens: float, rank_logit_tokens: float,
                extend: bool) -> tuple:
        """Cached by its arguments: (device time of a stage's layers without attention, embedding, LM head, PP
        send/recv, FLOPs, bytes, the host dispatch of those layers' kernels when eager) of every operator but
        attention (_other_ops)."""
        key = (tokens, logit_tokens, eager, rank_tokens, rank_logit_tokens, extend)
        static = self._cache.get(key)
        if static is None:
            if tokens <= 0:
                raise ValueError("an iteration needs at least one token")
            ops = self._other_ops(tokens, logit_tokens, eager, rank_tokens, rank_logit_tokens, extend)
            static = (*stage_inputs(ops), sum(op.flops for op in ops), sum(op.bytes for op in ops),
                      sum(op.dispatch_s for op in ops if op.host_overlapped))
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = static
        return static

    def _attention_layer(self, shape: BatchShape) -> tuple:
        """One layer's attention (flops, bytes, compute_s, memory_s); in a hybrid stack the mean over its full and
        its windowed layers."""
        full = self.attention.layer(shape)
        if not self.window_share:
            return full
        return self._mean_layer(full, self.attention.layer(shape.windowed(self.hybrid_window)), self.window_share)

    def host_s(self, shape: BatchShape) -> float:
        """The engine's host work for one iteration of `shape` (scheduler, input preparation, sampling)."""
        return (self.engine.iteration_overhead_s + self.engine.per_sequence_overhead_s * shape.seqs
                ) / self.eff.host_speed

    def _other_ops(self, T: int, logit_tokens: int, eager: bool, rank_tokens: float, rank_logit_tokens: float,
                   extend: bool) -> list[OperatorCost]:
        """Every operator of the iteration except attention (which depends on the batch's contexts): `T` tokens
        (`logit_tokens` through the LM head), of which the busiest attention-DP rank runs `rank_tokens`
        (`rank_logit_tokens`; _rank_rows); `extend`: the batch has prompt tokens (an all-to-all's kernels)."""
        m = self.model
        L = self.layers_per_stage
        hd, h, ab = m.head_dim, m.hidden_size, self.a_bytes
        ops: list[OperatorCost] = []
        all_tokens = T
        if self.attention_dp > 1:  # the busiest attention rank's tokens: the others wait for it at the MoE layers
            T, logit_tokens = rank_tokens, rank_logit_tokens
        # Per-layer elementwise work: 2 fused add+norms, RoPE on q and k, the MLP activation.
        inter = (m.intermediate_size * (1 - self.moe_share)
                 + (m.experts_per_token * m.expert_intermediate_size + m.shared_expert_intermediate_size)
                 * self.moe_share) / self.layout.attention_tp
        act = (3 if m.mlp_gated else 2) * inter
        roped = (self.heads + self.kv_heads) * hd if not m.latent_attention else self.heads * hd + m.kv_latent_size
        # the linear layers' own elementwise work (conv, gated norm) is the linear-attention kernel's (attention.py)
        roped *= 1.0 - self.linear_share
        # an output gate: its sigmoid over the attention output (gate and output read, gated output written)
        gated = 3 * self.heads * m.v_dim * (1.0 - self.linear_share) if m.attention_output_gate else 0.0
        elem_bytes = T * ab * (10 * h + 2 * roped + gated + act) * self.engine.elementwise_passes
        ops.append(self._op("elementwise", L, 6.0 * T * h, elem_bytes, 0.0, self._memory_s(elem_bytes), eager))
        if m.latent_attention:
            ops.append(self._op("qkv_proj", L, *self._latent_down_projections(T), eager))
        else:
            qkv_n = (self.heads * (2 if m.attention_output_gate else 1) + 2 * self.kv_heads) * hd
            qkv = self._gemm(T, h, qkv_n, self.w_bytes, self.peak, True)
            if self.linear_share:  # the linear layers' in_proj: q, k, v, the gate z, beta and the decay
                tp = self.layout.attention_tp
                qkv = self._mean_layer(qkv, self._gemm(T, h, m.linear_in_proj_size / tp, self.w_bytes, self.peak,
                                                       True), self.linear_share)
            ops.append(self._op("qkv_proj", L, *qkv, eager))
        o_proj = self._gemm(T, self.heads * m.v_dim, h, self.w_bytes, self.peak, True)
        if self.linear_share:  # the linear layers' out_proj from their value heads
            o_proj = self._mean_layer(o_proj, self._gemm(T, m.linear_value_dim / self.layout.attention_tp, h,
                                                         self.w_bytes, self.peak, True), self.linear_share)
        ops.append(self._op("o_proj", L, *o_proj, eager))
        ops.extend(self._mlp(T, L, eager, all_tokens))
        ops.extend(self._reductions(T, L, eager, all_tokens, extend))
        if self.model.qk_norm_across_heads and self.layout.attention_tp > 1:
            # a QK RMSNorm over every head's elements (MiniMax-M2): each TP rank holds some heads, so the per-token
            # sums of squares of q and k are all-reduced (FP32, 2 per token) before normalising, once per layer
            # (vLLM MiniMaxText01RMSNormTP.forward_qk)
            ops.append(self._collective("qk_norm_allreduce", L, T * 2 * 4, self.layout.attention_tp, self.tp_bw,
                                        self.tp_lat, eager))
        # Embedding gather on the first stage, final norm + LM head + sampling on the last.
        emb_bytes = T * h * (self.hp_bytes + ab)
        ops.append(self._op("embedding", 1, 0.0, emb_bytes, 0.0, self._memory_s(emb_bytes), eager))
        vocab = m.vocab_size / self.layout.attention_tp
        # fp32 logits written and read by the sampler
        lm_head = self._gemm(logit_tokens, h, vocab, self.hp_bytes, self.attn_peak, False,
                             extra_bytes=logit_tokens * vocab * 4.0)
        ops.append(self._op("lm_head", 1, *lm_head, eager))
        if self.pp > 1:
            ops.append(self._collective("pp_send_recv", self.pp - 1, T * h * ab, 2, self.pp_bw, self.pp_lat, eager))
        return ops

    # --- series of decode iterations ---------------------------------------------------------------
    def _decode_line(self, shape: BatchShape) -> DecodeLine:
        """decode_line() of a pure-decode `shape`."""
        if shape.prefill_seqs:
            raise ValueError("decode series take pure-decode batches")
        return self.decode_line(shape.decode_seqs, shape.decode_tokens, shape.logit_tokens)

    def decode_line(self, seqs: int, tokens: int, logit_tokens: int
                    ) -> DecodeLine | HybridDecodeLine | SparseDecodeLine | StepwiseDecode:
        """fast() of a pure-decode batch of `seqs` sequences with `tokens` new tokens (`logit_tokens` of them
        through the LM head) as a function of its attention pairs and KV tokens (see DecodeLine): read off
        attention.decode_linear and off pipeline.times at 0 and PROBE_S; cached by batch size. A hybrid
        sliding-window stack: the same line in the mean layer's pairs and KV tokens (HybridDecodeLine)."""
        line = self._plain_decode_line(seqs, tokens, logit_tokens)
        if self.model.sparse_attention_topk:
            return self._sparse_decode_line(line, seqs, tokens)
        if not self.window_share:
            return line
        return HybridDecodeLine(line, self.window_share, tokens * self.hybrid_window, seqs * self.hybrid_window)

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
        token's top-k keys, and the indexer's slopes read off AttentionCost.indexer at no context and PROBE_TOKENS
        pairs or KV tokens."""
        top_k, layers = self.model.sparse_attention_topk, self.layers_per_stage
        index = self.attention.indexer
        zero, per_pair, per_kv = (index(seqs, tokens, pairs, kv) for pairs, kv in
                                  ((0.0, 0.0), (PROBE_TOKENS, 0.0), (0.0, PROBE_TOKENS)))
        pair_slope = [(value - base) / PROBE_TOKENS for value, base in zip(per_pair, zero)]
        kv_slope = [(value - base) / PROBE_TOKENS for value, base in zip(per_kv, zero)]
        return SparseDecodeLine(line, tokens * top_k, seqs * top_k, index_s_per_pair=pair_slope[2],
                                index_s_per_kv_token=kv_slope[3], index_read_s_per_pair=pair_slope[3],
                                index_fixed_s=zero[3], index_flops_per_pair=layers * pair_slope[0],
                                index_bytes_per_kv_token=layers * kv_slope[1],
                                index_bytes_per_pair=layers * pair_slope[1], index_bytes=layers * zero[1])

    @staticmethod
    def _decode_first(line: DecodeLine, pairs: float, kv: float) -> tuple[float, float, float]:
        """(latency_s, flops, bytes) of the batch with `pairs` attention pairs and `kv` KV tokens on `line`:
        fast() of it less its stage_s."""
        attention_s = max(line.attention(pairs, kv, max), line.dispatch_s)
        latency_s = max(attention_s * line.latency_per_attention_s + line.latency_offset_s, line.overlapped_host_s)
        return latency_s, line.flops + pairs * line.flops_per_pair, line.bytes + kv * line.bytes_per_kv_token

    def decode_series(self, shape: BatchShape, pairs: np.ndarray, kv: np.ndarray
                      ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Latencies of consecutive pure-decode iterations that differ from `shape` only in their
        attention pairs and KV tokens (the context grows): exact, without rebuilding each iteration.
        pairs[0], kv[0] must be shape's own. Returns the latencies and (latency, flops, bytes) of the first."""
        line = self._decode_line(shape)
        if isinstance(line, StepwiseDecode):
            return self._stepwise(line, pairs, kv)
        first_pairs, first_kv = shape.decode_pairs, shape.decode_kv_tokens
        if isinstance(line, SparseDecodeLine):
            attention = line.attention(np.asarray(pairs, dtype=np.float64), np.asarray(kv, dtype=np.float64),
                                       np.minimum, np.maximum)
            return self._series_latencies(line.line, attention, ascending=False), line.first(first_pairs, first_kv)
        if isinstance(line, HybridDecodeLine):
            pairs, kv = line.effective(np.asarray(pairs, dtype=np.float64), np.asarray(kv, dtype=np.float64))
            first_pairs, first_kv = line.effective_one(first_pairs, first_kv)
            line = line.line
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
                           pairs_per_step: float) -> tuple[np.ndarray, tuple[float, float, float]]:
        """decode_series_linear from the batch's sums instead of a BatchShape: its DecodeLine (decode_line())
        and its first iteration's attention pairs and KV tokens (what the simulator's decode runs call).
        `steps` ascend (step indices)."""
        if isinstance(line, StepwiseDecode):
            return self._stepwise(line, pairs + pairs_per_step * steps, kv + kv_per_step * steps)
        if isinstance(line, SparseDecodeLine):
            attention = line.attention(pairs + pairs_per_step * steps, kv + kv_per_step * steps, np.minimum, np.maximum)
            growing = pairs_per_step >= 0 and kv_per_step >= 0
            return self._series_latencies(line.line, attention, ascending=growing), line.first(pairs, kv)
        if isinstance(line, HybridDecodeLine):  # the mean layer's pairs and KV: lines capped in the windowed layers
            pair_series, kv_series = line.effective(pairs + pairs_per_step * steps, kv + kv_per_step * steps)
            attention = line.line.attention(pair_series, kv_series, np.maximum)
            growing = pairs_per_step >= 0 and kv_per_step >= 0  # the effective series do not fall either
            return (self._series_latencies(line.line, attention, ascending=growing),
                    self._decode_first(line.line, *line.effective_one(pairs, kv)))
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

    def _stepwise(self, line: StepwiseDecode, pairs: np.ndarray, kv: np.ndarray
                  ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """fast() of every step: the latencies and (latency, flops, bytes) of the first."""
        costs = [self.fast(BatchShape(decode_seqs=line.seqs, decode_tokens=line.tokens, decode_pairs=step_pairs,
                                      decode_kv_tokens=step_kv, logit_tokens=line.logit_tokens))
                 for step_pairs, step_kv in zip(np.asarray(pairs).tolist(), np.asarray(kv).tolist())]
        first = costs[0]
        return np.array([cost[0] for cost in costs], dtype=np.float64), (first[0], first[2], first[3])

    def decode_stage_series(self, shape: BatchShape, latencies: np.ndarray) -> np.ndarray:
        """stage_s of each iteration of a decode series, given the latencies decode_series or
        decode_series_linear returned for `shape` (before anything is added to them): what fast() returns
        as stage_s for each iteration; a copy of `latencies` when pp == 1."""
        if self.pp == 1:
            return np.array(latencies, dtype=np.float64)
        line = self._decode_line(shape)
        if isinstance(line, (HybridDecodeLine, SparseDecodeLine)):
            line = line.line
        stage = np.subtract(latencies, line.latency_offset_s)
        stage *= line.stage_per_attention_s / line.latency_per_attention_s
        stage += line.stage_offset_s
        if line.overlapped_host_s:  # a latency held at the host floor had a device stage below it too
            np.maximum(stage, line.overlapped_host_s, out=stage)
            np.minimum(stage, latencies, out=stage)
        return stage

    def _latent_down_projections(self, T: int) -> tuple[float, float, float, float]:
        """Latent attention's projections of the new tokens, (flops, bytes, compute_s, memory_s) summed: q
        (through its low-rank latent when q_lora_rank is set: the down-projection whole on every TP rank, the
        up-projection split by head) and KV down to the latent + RoPE key (whole on every rank)."""
        m, h = self.model, self.model.hidden_size
        q_width = self.heads * m.head_dim
        parts = [self._gemm(T, h, m.kv_latent_size, self.w_bytes, self.peak, True)]
        if m.q_lora_rank:
            parts += [self._gemm(T, h, m.q_lora_rank, self.w_bytes, self.peak, True),
                      self._gemm(T, m.q_lora_rank, q_width, self.w_bytes, self.peak, True)]
        else:
            parts.append(self._gemm(T, h, q_width, self.w_bytes, self.peak, True))
        if m.sparse_attention_topk:  # the indexer's query (from the q latent), key and per-head weights, whole per rank
            parts += [self._gemm(T, m.q_lora_rank, m.indexer_heads * m.indexer_head_dim, self.w_bytes, self.peak, True),
                      self._gemm(T, h, m.indexer_head_dim, self.w_bytes, self.peak, True),
                      self._gemm(T, h, m.indexer_heads, self.hp_bytes, self.attn_peak, False)]
        return tuple(sum(values) for values in zip(*parts))

    def _reductions(self, T: float, L: int, eager: bool, all_tokens: int, extend: bool) -> list[OperatorCost]:
        """Communication of a stage's layers: the all-reduce after attention (over the attention TP group) and
        after each MLP (dense layers: the attention TP group; MoE layers: the whole stage), or for MoE layers
        with attention DP beside EP an all-to-all dispatch of each token to its experts' GPUs and a combine back
        (_all_to_all)."""
        h, ab, layout = self.model.hidden_size, self.a_bytes, self.layout
        if layout.attention_dp == 1 and not layout.dispatches:  # the plain tensor-parallel stage
            if self.tp == 1:
                return []
            return [self._collective("tp_allreduce", 2 * L, T * h * ab, self.tp, self.tp_bw, self.tp_lat, eager)]
        ops: list[OperatorCost] = []
        moe_layers = L - round(L * (1 - self.moe_share))
        attention_tp_reductions = L + (L - moe_layers)  # after attention, and after each dense MLP
        if layout.attention_tp > 1:
            ops.append(self._collective("tp_allreduce", attention_tp_reductions, T * h * ab, layout.attention_tp,
                                        self.tp_bw, self.tp_lat, eager))
        if moe_layers and layout.dispatches:
            moved_bytes, network_s = self._all_to_all(T, extend)
            ops.append(self._op("moe_all_to_all", moe_layers, 0.0, moved_bytes, 0.0, network_s, eager,
                                self.engine.collective_overhead_s))
        elif moe_layers and self.tp > 1:  # every rank's tokens gathered, the outputs reduced and scattered back
            ops.append(self._collective("tp_allreduce", moe_layers, all_tokens * h * ab, self.tp, self.moe_ring_bw,
                                        self.moe_lat, eager))
        return ops

    def _all_to_all(self, T: float, extend: bool) -> tuple[float, float]:
        """(bytes moved, seconds) of one MoE layer's dispatch and combine for this GPU's `T` tokens, DeepEP-style:
        the dispatch in FP8 with one FP32 scale per 128 channels when the GEMMs run FP8 (else the activation
        dtype), the combine in BF16. Inside one NVLink domain every (token, expert) copy held on another GPU
        moves over NVLink. Across nodes (the EP group larger than a node, packed gpus_per_node a node), as
        DeepEP's two kernel families do (deepseek-ai/DeepEP README): a batch with prompt tokens (SGLang's deepep
        "auto" mode picks the normal kernels for extend batches) sends each token once over RDMA to every other
        node holding one of its experts, and forwards it there over NVLink, RDMA being the bottleneck ("Internode
        16 EP: 43 GB/s (RDMA)" on 400 Gb/s NICs); a decode batch (the low-latency kernels) sends each (token,
        expert) copy straight to its GPU, over RDMA to other nodes and over NVLink inside its own (DeepEP PR
        #173), the two at once. Checked, not fitted, against the README's low-latency table (H800, 128 tokens a
        rank, 7,168 hidden, top-8, FP8 dispatch, BF16 combine; tests/test_moe_layouts.py)."""
        m, layout, ic = self.model, self.layout, self.hw.interconnect
        k, ep, h = m.experts_per_token, layout.ep, m.hidden_size
        dispatch_bytes = 1.0 + 4.0 / 128 if self.quant.compute_dtype == "fp8" else self.a_bytes
        per_token_bytes = h * (dispatch_bytes + self.hp_bytes)  # dispatched, then combined back
        scale = self.eff.link_efficiency * self.engine.collective_efficiency
        if ep <= ic.gpus_per_node:
            copies = T * k * (ep - 1) / ep
            return copies * per_token_bytes, 2 * self.moe_lat + copies * per_token_bytes / (self.moe_bw * scale)
        nic_rate = ic.inter_node_bandwidth_bytes_per_s * scale
        nvlink_rate = ic.intra_node_bandwidth_bytes_per_s * scale
        local, nodes = ic.gpus_per_node, math.ceil(ep / ic.gpus_per_node)
        if extend:  # normal kernels: once per other node the token's experts are on (uniform routing)
            rdma_tokens = T * (nodes - 1) * (1.0 - (1.0 - 1.0 / nodes) ** k)
            moved = rdma_tokens * per_token_bytes
            return moved, 2 * ic.inter_node_latency_s + moved / nic_rate
        rdma_copies = T * k * (ep - local) / ep
        nvlink_copies = T * k * (local - 1) / ep
        network_s = (2 * ic.inter_node_latency_s
                     + max(rdma_copies / nic_rate, nvlink_copies / nvlink_rate) * per_token_bytes)
        return (rdma_copies + nvlink_copies) * per_token_bytes, network_s

    def _mlp(self, T: float, L: int, eager: bool, all_tokens: int | None = None) -> list[OperatorCost]:
        """The MLP of this GPU's `T` tokens; MoE experts see the tokens of every attention rank
        (`all_tokens`, default T) routed to the experts this GPU holds."""
        m, h = self.model, self.model.hidden_size
        layout = self.layout
        all_tokens = T if all_tokens is None else all_tokens
        ops: list[OperatorCost] = []
        dense_layers = round(L * (1 - self.moe_share))
        moe_layers = L - dense_layers
        up = m.mlp_matrices - 1  # gate + up (2) or up (1)
        if dense_layers:
            i = m.intermediate_size / layout.attention_tp
            ops.append(self._op("mlp_gate_up", dense_layers, *self._gemm(T, h, up * i, self.w_bytes, self.peak, True), eager))
            ops.append(self._op("mlp_down", dense_layers, *self._gemm(T, i, h, self.w_bytes, self.peak, True), eager))
        if moe_layers:
            E, k = m.num_experts, m.experts_per_token
            i = m.expert_intermediate_size / layout.moe_tp
            assignments = all_tokens * k
            # expected experts hit by at least one token, under the model's measured routing skew (expert_load.py)
            active = expected_distinct_experts(E, k, all_tokens, m.expert_top20_share)
            share = 1.0  # this GPU's share of the experts' rows
            if layout.ep > 1:  # this GPU's experts and the rows routed to them, on its most loaded
                share = layout.imbalance(assignments) / layout.ep
                assignments = assignments * share
                active = active / layout.ep

            def row_tiles(tile_rows: int) -> float:  # the experts' rows differ: each runs its own row tiles
                return share * expected_row_tiles(E, k, all_tokens, tile_rows, m.expert_top20_share)

            f1, b1, c1, _ = self._gemm(assignments, h, up * i, self.w_bytes, self.peak, True, weights=active,
                                       row_tiles=row_tiles)
            f2, b2, c2, _ = self._gemm(assignments, i, h, self.w_bytes, self.peak, True, weights=active,
                                       row_tiles=row_tiles)
            # Fused-MoE kernels gather token rows inside the GEMM (counted in its activation bytes);
            # the top-k combine then reads every expert output and writes one hidden state per token.
            b = b1 + b2 + (assignments + T) * h * self.a_bytes
            # the experts' weights: up (rows of h elements) and down (rows of i), at their row lengths' rates
            up_bytes = active * h * up * i * self.w_bytes
            row_start = self._row_start_bytes(h, up_bytes) + self._row_start_bytes(i, up_bytes / up)
            ops.append(self._op("moe_experts", moe_layers, f1 + f2, b, c1 + c2, self._memory_s(b + row_start), eager))
            ops.append(self._op("moe_router", moe_layers, *self._gemm(T, h, E, self.hp_bytes, self.attn_peak, False), eager))
            if m.shared_expert_intermediate_size:  # on every attention rank, over its own tokens
                si = m.shared_expert_intermediate_size / layout.attention_tp
                f1, b1, c1, m1 = self._gemm(T, h, up * si, self.w_bytes, self.peak, True)
                f2, b2, c2, m2 = self._gemm(T, si, h, self.w_bytes, self.peak, True)
                side = not eager and T <= self.engine.shared_expert_stream_tokens  # beside the routed experts
                ops.append(self._op("moe_shared", moe_layers, f1 + f2, b1 + b2, c1 + c2, m1 + m2, eager,
                                    side_stream=side))
        return ops


def _exceeds(a_0: float, a_step: float, b_0: float, b_step: float, first: float, last: float) -> bool:
    """Whether the line a_0 + a_step x j exceeds b_0 + b_step x j, each as numpy rounds it, at every step j from
    `first` to `last` (all of them >= 0): by the DOMINANCE factor at both ends (see DOMINANCE)."""
    return (a_0 + first * a_step > (b_0 + first * b_step) * DOMINANCE
            and a_0 + last * a_step > (b_0 + last * b_step) * DOMINANCE)


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads stored per GPU: split across TP ranks, replicated when TP exceeds them."""
    return max(1, num_kv_heads // tp)


def kv_elements_per_token_layer(model: ModelSpec, tp: int) -> int:
    """KV-cache elements one token occupies in one layer on one GPU of a TP group: K and V of this GPU's
    KV heads, or with latent attention the latent and the shared RoPE key, which every TP rank holds whole
    (the heads are split, the latent is not)."""
    if model.latent_attention:
        return model.kv_latent_size
    return 2 * kv_heads_per_gpu(model.num_kv_heads, tp) * model.head_dim


def link(ic, ranks: int) -> tuple[float, float]:
    """Bandwidth and latency of the link a group of `ranks` GPUs communicates over: NVLink inside a node, each
    GPU's own NIC (inter_node_bandwidth_bytes_per_s is per GPU) across nodes."""
    if ranks <= ic.gpus_per_node:
        return ic.intra_node_bandwidth_bytes_per_s, ic.intra_node_latency_s
    return ic.inter_node_bandwidth_bytes_per_s, ic.inter_node_latency_s


def ring_bandwidth(ic, ranks: int) -> float:
    """Bus bandwidth of NCCL's ring all-reduce over `ranks` GPUs. Inside a node, the NVLink rate. Across nodes
    NCCL runs one ring (channel) per NIC, each ring leaving a node through a different GPU's NIC, so all of a
    node's NICs carry node-crossing hops at once: the bus bandwidth is the NICs of the node with the fewest
    group members together (one NIC per GPU), at most the NVLink rate the rings' other hops run at. Sources:
    NCCL's maintainers on two H100 nodes, "For NDR @ 400Gbps you should see 46-48GB/s per NIC" (NVIDIA/nccl-tests
    issue #290); three A100 nodes with 4 HDR NICs each, 100 GB/s bus bandwidth expected (4 x 200 Gb/s) and 85-96
    GB/s measured (nccl-tests issue #119). A group split over nodes is taken as packed: gpus_per_node a node.
    Checked after the change, not fitted: DeepSeek-R1 on 2 x 8 H100 under SGLang (TP16 assumed: the flags are
    not in the part of tenstorrent/tt-inference-server issue #356 read), one 8,192-token prompt: TTFT 264 ms
    measured, 859 ms predicted with one NIC's rate, 271 ms with this."""
    bw, _ = link(ic, ranks)
    if ranks <= ic.gpus_per_node:
        return bw
    fewest = ranks % ic.gpus_per_node or ic.gpus_per_node
    return min(ic.intra_node_bandwidth_bytes_per_s, bw * fewest)


def check_parallelism(model: ModelSpec, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise PhasewiseError(f"--tp and --pp must be >= 1 (got tp={tp}, pp={pp})")
    if model.num_heads % tp:
        ok = [d for d in range(1, model.num_heads + 1) if model.num_heads % d == 0 and
              (model.num_kv_heads % d == 0 or d % model.num_kv_heads == 0)]
        raise PhasewiseError(
            f"--tp {tp} does not divide num_attention_heads={model.num_heads} of {model.name} "
            f"(allowed: {', '.join(map(str, ok))})"
        )
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise PhasewiseError(
            f"--tp {tp} neither divides nor is a multiple of num_key_value_heads={model.num_kv_heads} "
            f"of {model.name}"
        )
    if model.linear_attention_layers and (model.linear_key_heads % tp or model.linear_value_heads % tp):
        ok = [d for d in range(1, model.num_heads + 1) if model.num_heads % d == 0
              and model.linear_key_heads % d == 0 and model.linear_value_heads % d == 0]
        raise PhasewiseError(
            f"--tp {tp} does not divide the linear-attention heads of {model.name} (linear_num_key_heads="
            f"{model.linear_key_heads}, linear_num_value_heads={model.linear_value_heads}; allowed: "
            f"{', '.join(map(str, ok))})")
    if pp > model.num_layers:
        raise PhasewiseError(f"--pp {pp} exceeds the {model.num_layers} layers of {model.name}")
