"""Time of one forward iteration, operator by operator.

Each operator costs  max(compute, memory) + device launch,  where
  compute = FLOPs / (peak of its dtype x efficiency that grows with the rows it multiplies),
  memory  = bytes / (bandwidth x efficiency that grows with the transfer size).
When the engine runs an iteration eagerly (no captured CUDA graph) the host launches each kernel
(dispatch = kernels x the engine's eager_launch_s), asynchronously: it runs ahead of the device, which
waits only when the host falls behind, so a stage's layers take  max(their device time, the host's
dispatch of all their kernels)  (the excess is the EAGER_DISPATCH operator). The embedding and LM head,
once per iteration, keep max(compute, memory, dispatch) + launch each.
Collectives (TP all-reduce, PP send/recv, MoE all-to-all) cost latency + bytes over the link
(collectives.py). The iteration adds the engine's host overhead (scheduler, input preparation, sampling) per
iteration and per sequence.
Every constant comes from HardwareSpec.efficiency or EngineProfile; see specs/data/*.yaml.

One formula per operator: attention's is AttentionCost (attention.py), shared by iteration(), fast() and
the decode series; how layers, embedding, LM head and transfers form pipeline stages is Pipeline
(stages.py), shared likewise; iteration_parts() gives an iteration by stage and operator group
(operators.py names the operators, their kernels and groups); runs of decode iterations in closed form are
decode_line.py's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from phasewise.errors import PhasewiseError
from phasewise.perf.attention import AttentionCost, LatentAttention, LinearAttention, SparseIndexer
from phasewise.perf.batch import BatchShape
from phasewise.perf.collectives import Communication, link, ring_bandwidth
from phasewise.perf.compressed_cost import compressed_attention_layer, compressed_elementwise, compressed_projections
from phasewise.perf.decode_line import DecodeSeries
from phasewise.perf.expert_load import expected_distinct_experts, expected_row_tiles
from phasewise.perf.operators import (
    EAGER_DISPATCH,
    KERNELS,
    LOGIT_SOFTCAP_KERNELS,
    QK_NORM_KERNELS,
    IterationCost,
    OperatorCost,
    compressed_shares,
    kernel_counts,
)
from phasewise.perf.parallel import ParallelLayout
from phasewise.perf.quant_kernels import gemm_compute_s
from phasewise.perf.stages import NOT_PER_LAYER, IterationParts, Pipeline, stage_inputs
from phasewise.perf.tiling import array_utilization
from phasewise.perf.vision import EncoderCost, encoder_forward
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes, kv_bytes_per_element

__all__ = ["KERNELS", "CostModel", "IterationCost", "IterationParts", "OperatorCost", "check_parallelism",
           "compressed_entry_bytes", "compressed_kv_bytes", "kv_heads_per_gpu", "kv_elements_per_token_layer",
           "kv_bytes_per_token_layer", "cached_kv_bytes_per_token", "window_kv_ratio"]


class CostModel(DecodeSeries, Communication):
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
        # the routed experts' own scheme where the checkpoint stores them apart (QuantScheme.experts), on this chip
        self.expert_quant = quant.experts_scheme().on(hardware) if quant.experts else None
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
        self.mlp_free_share = m.mlp_free_share  # layers without an MLP (Nemotron-H's unpaired mixer blocks)
        # a hybrid stack: this share of the layers attends over the last `window` keys only (BatchShape.windowed);
        # under PP every stage takes the stack's share (exact where a stage holds whole repeats of the pattern:
        # gpt-oss's pairs, Gemma 3's sixes at PP 2, Llama 4's fours at PP 2-4; within a layer per stage otherwise)
        self.window_share, self.hybrid_window = m.window_layer_share, m.sliding_window
        # a hybrid stack with linear-attention layers: every layer operator is the mean layer's (_mean_layer)
        self.linear_share = m.linear_layer_share
        # the share of the layers with softmax attention: all but the linear and the attention-free ones (never both)
        self.softmax_share = 1.0 - self.linear_share - m.attention_free_share
        self.gemm_eff = eff.gemm_efficiency_max * engine.compute_efficiency
        # the model's own weights run on the scheme's kernels: at their small-batch tile where it is fewer rows
        self._own_kernel_half_rows = min(eff.gemm_half_rows, quant.kernel_half_rows or eff.gemm_half_rows)
        # a chip built from parts: a GEMM's efficiency follows from how it tiles onto the arrays (tiling.py)
        self._arrays = hardware.parts.compute if hardware.parts is not None else None
        self.vector_rate = hardware.vector_flops * eff.vector_efficiency
        # compressed attention (DeepSeek-V4): one K = V entry per key, read once as key and value, so each counts
        # half its bytes (perf/compressed_cost.py)
        kv_bytes = self.kv_bytes if m.compressed is None else compressed_entry_bytes(m, quant) / (2 * m.head_dim)
        self.attention = AttentionCost(hardware, engine, head_dim=m.head_dim, heads=self.heads, value_dim=m.v_dim,
                                       kv_heads=self.kv_heads, kv_bytes=kv_bytes, activation_bytes=self.a_bytes,
                                       tensor_peak_flops=self.attn_peak, vector_flops_per_s=self.vector_rate,
                                       memory_s=self._memory_s, prefill_kernel=quant.attention_kernel,
                                       latent=self._latent_attention() if m.latent_attention else None,
                                       ranks=layout.attention_dp,
                                       linear=self._linear_attention() if m.linear_attention_layers else None,
                                       sparse=self._sparse_indexer(), layer_share=m.attending_share)
        # a hybrid stack's windowed layers shaped unlike its full ones (Gemma 4): their own attention kernel
        self.window_kv_heads = kv_heads_per_gpu(m.window_layer_kv_heads, layout.attention_tp)
        self.window_attention = AttentionCost(
            hardware, engine, head_dim=m.window_layer_head_dim, heads=self.heads, kv_heads=self.window_kv_heads,
            kv_bytes=self.kv_bytes, activation_bytes=self.a_bytes, tensor_peak_flops=self.attn_peak,
            vector_flops_per_s=self.vector_rate, memory_s=self._memory_s, prefill_kernel=quant.attention_kernel,
            ranks=layout.attention_dp, value_dim=m.window_layer_v_dim) if m.window_own_geometry else self.attention
        # an engine that quantizes GEMM inputs in kernels of their own, where the GEMMs take a narrower dtype than the
        # activations: their launches (operators.QUANTIZED_INPUTS) and their traffic, the activations read and the
        # compute dtype written (elementwise)
        self.activation_quant = (quant.compute_dtype if engine.activation_quant_kernels
                                 and dtype_bytes(quant.compute_dtype) < self.a_bytes else None)
        self._quantized_bytes_per_token = (self._quantized_input_elements() * (self.a_bytes + dtype_bytes(
            self.activation_quant)) if self.activation_quant else 0.0)
        # q / k (and v) norms on the softmax layers: q's and k's one kernel's time (QK_NORM_KERNELS), none where the
        # engine runs them inside its RoPE kernel, v's one; the elements they read (and write) per token, per GPU, on
        # the mean layer
        qk_normed = (m.qk_norm or m.qk_norm_across_heads) and m.model_type not in engine.qk_norm_rope_fused
        self._qk_norm_kernels = QK_NORM_KERNELS * qk_normed + m.v_norm
        self._qk_normed_width = (self._qk_width(keys=qk_normed, queries=qk_normed, values=m.v_norm)
                                 * self.softmax_share)
        # the attention operator over a stage's layers (_op's rule): its kernels' host dispatch per layer when
        # eager, and the device launches of all of them
        kernels = kernel_counts(m.latent_attention, m.shared_expert_intermediate_size > 0, m.sparse_attention_topk > 0,
                                m.linear_layer_share, m.linear_recurrence, self.activation_quant,
                                compressed_shares(m), self._qk_norm_kernels, m.post_norms, m.logit_softcap,
                                m.attention_free_share)
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

    def encoder(self, patches: tuple[int, ...], copies: int = 1) -> EncoderCost:
        """The model's vision encoder over images of `patches` patches each (`copies` times over), in one forward
        (perf/vision.py)."""
        key = ("encoder", tuple(sorted(patches)), copies)
        found = self._cache.get(key)
        if found is None:
            if self.model.vision is None:
                raise PhasewiseError(f"model '{self.model.name}' has no vision encoder: it takes no image inputs")
            found = self._cache[key] = encoder_forward(self, self.model.vision, patches, copies)
        return found

    def _sparse_indexer(self) -> SparseIndexer | None:
        """The lightning indexer of DeepSeek sparse attention (over every token) or of compressed attention's CSA
        layers (over their compressed entries; perf/compressed_cost.py); None without one."""
        m = self.model
        if m.compressed is not None:
            c = m.compressed
            return SparseIndexer(c.index_topk, c.indexer_heads, c.indexer_head_dim,
                                 c.indexer_head_dim + INDEXER_KEY_SCALE_BYTES)
        if m.sparse_attention_topk:
            return SparseIndexer(m.sparse_attention_topk, m.indexer_heads, m.indexer_head_dim, m.indexer_key_bytes)
        return None

    def _latent_attention(self) -> LatentAttention:
        """Multi-head latent attention's shapes on this GPU, and its per-head up-projections (the KV-up weight,
        split by head across TP) as GEMMs of the model's own weight format."""
        m = self.model

        def up_projection(rows: float, k: float, n: float, heads: float) -> tuple[float, float, float, float]:
            return self._gemm(rows, k, n, self.w_bytes, self.peak, True, weights=heads)

        return LatentAttention(kv_lora_rank=m.kv_lora_rank, qk_rope_head_dim=m.qk_rope_head_dim,
                               v_head_dim=m.v_dim, up_projection=up_projection,
                               cached_bytes=cached_kv_bytes_per_token(m, self.quant, self.tp))

    def _linear_attention(self) -> LinearAttention:
        """This GPU's share of the linear-attention layers' heads and conv channels (split by attention TP)."""
        m, tp = self.model, self.layout.attention_tp
        return LinearAttention(share=self.linear_share, value_heads=m.linear_value_heads / tp,
                               key_head_dim=m.linear_key_head_dim, value_head_dim=m.linear_value_head_dim,
                               conv_dim=m.linear_conv_channels(tp), conv_taps=m.linear_conv_kernel,
                               state_bytes=dtype_bytes(self.engine.recurrent_state_dtype),
                               activation_bytes=self.a_bytes, recurrence=m.linear_recurrence,
                               # a single Mamba-2 group is whole on every GPU (ModelSpec.linear_replicated_width)
                               key_heads=1.0 if m.linear_replicated_width(tp) else m.linear_key_heads / tp,
                               chunk_tokens=m.linear_chunk_tokens)

    def _quantized_input_elements(self) -> float:
        """Elements of the quantized GEMM inputs per token of this GPU, per layer (the stack's mean layer):
        operators.QUANTIZED_INPUTS's, at their widths on this GPU (a hybrid's linear-attention layers taken at the
        full-attention layers' widths; a sparse indexer's projections not counted)."""
        m, layout, h = self.model, self.layout, self.model.hidden_size
        attention = h + (m.q_lora_rank if m.latent_attention else 0) + self.heads * m.v_dim
        dense = h + m.intermediate_size * m.dense_mlp_width_factor / layout.attention_tp
        moe = m.expert_hidden_size  # the experts' input; the Triton kernel's down-projection input too (not FP4's)
        if self.activation_quant != "fp4":  # this GPU's expert rows per token of its rank, each expert's share
            moe += (m.experts_per_token * m.expert_intermediate_size / layout.moe_tp * layout.attention_dp / layout.ep)
        if m.shared_expert_intermediate_size:
            moe += h + m.shared_expert_intermediate_size / layout.attention_tp
        return attention + dense * m.dense_layer_share + moe * self.moe_share

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
              row_tiles: Callable[[int], float] | None = None,
              scheme: QuantScheme | None = None) -> tuple[float, float, float, float]:
        """FLOPs, bytes, compute_s, memory_s of `rows` x k @ k x n, with `weights` copies of the weight read and
        `extra_bytes` streamed beside it (an LM head's logits); `row_tiles(R)`: the row tiles of R rows over all
        `weights` where their rows differ (a grouped GEMM's experts), else ceil(rows / weights / R) each; `scheme`:
        the stored weights' own scheme where it is not the model's (the routed experts': expert_quant), whose
        kernels, dequantization, small-batch tile and streaming efficiency then apply (`w_bytes`, `peak` its)."""
        if rows <= 0:
            return 0.0, 0.0, 0.0, 0.0
        quant = self.quant if scheme is None else scheme
        flops = 2.0 * rows * k * n
        weight_bytes = weights * k * n * w_bytes
        nbytes = weight_bytes + rows * (k + n) * self.a_bytes + extra_bytes
        if self._arrays is None:
            half_rows = None if scheme is None else min(self.eff.gemm_half_rows,
                                                         scheme.kernel_half_rows or self.eff.gemm_half_rows)
            eff = self._gemm_efficiency(rows / weights, dequant, half_rows)
        else:
            eff = self.gemm_eff * array_utilization(rows / weights, k, n, self._arrays)
        compute = flops / (peak * eff)
        kernel = quant.gemm_kernel
        if dequant and kernel is not None:  # the scheme's own main loop (quant_kernels.py)
            per_weight = row_tiles(kernel.tile_rows) / weights if row_tiles else None
            compute = gemm_compute_s(kernel, compute, weights * k * n, rows / weights,
                                     quant.dequant_ops_per_weight, self.vector_rate, self.eff.sync_mma_efficiency,
                                     per_weight)
        elif dequant and quant.dequant_ops_per_weight:
            tile = self.eff.dequant_tile_rows
            tiles = row_tiles(tile) if row_tiles else weights * math.ceil(rows / weights / tile)
            compute += k * n * tiles * quant.dequant_ops_per_weight / self.vector_rate
        memory = self._memory_s(nbytes + self._row_start_bytes(k, weight_bytes))
        if dequant:  # the model's own (quantized) weights: their kernels' streaming efficiency
            memory /= (self._weight_read_efficiency if scheme is None
                       else self.eff.weight_read_efficiency.get(scheme.weight_dtype, 1.0))
        return flops, nbytes, compute, memory

    def _gemm_efficiency(self, rows: float, own_kernel: bool = False, own_half_rows: float | None = None) -> float:
        """Fraction of the tensor peak a GEMM with `rows` activation rows per weight matrix reaches; `own_kernel`:
        the scheme's weight-expanding kernel multiplies the model's weights, at its kernel_half_rows where fewer
        (`own_half_rows`: another scheme's, the routed experts')."""
        curve = self._curve
        if curve is None:
            own = self._own_kernel_half_rows if own_half_rows is None else own_half_rows
            half_rows = own if own_kernel else self.eff.gemm_half_rows
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
        prefill, decode = self._rank_shares(shape)
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
        its windowed layers; with compressed attention the mean of its kinds (perf/compressed_cost.py)."""
        if self.model.compressed is not None:
            return compressed_attention_layer(self, shape)
        full = self.attention.layer(shape)
        if not self.window_share:
            return full
        return self._mean_layer(full, self.window_attention.layer(shape.windowed(self.hybrid_window)),
                                self.window_share)

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

    def _qk_width(self, queries: bool = True, keys: bool = True, values: bool = False) -> float:
        """Elements per token on this GPU of q, k and v (those asked for) on the mean softmax layer (a hybrid
        stack's windowed layers at their own geometry)."""
        m = self.model

        def width(kv_heads: float, head_dim: int) -> float:
            return (queries * self.heads + (keys + values) * kv_heads) * head_dim

        full = width(self.kv_heads, m.head_dim)
        if not m.window_own_geometry:
            return full
        return full + (width(self.window_kv_heads, m.window_layer_head_dim) - full) * self.window_share

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
        inter = (m.intermediate_size * m.dense_mlp_width_factor * m.dense_layer_share
                 + (m.experts_per_token * m.expert_intermediate_size + m.shared_expert_intermediate_size)
                 * self.moe_share) / self.layout.attention_tp
        act = (3 if m.mlp_gated else 2) * inter
        roped = self._qk_width() if not m.latent_attention else self.heads * hd + m.kv_latent_size
        if m.compressed is not None:  # q and the K = V entry normed and roped, the output's inverse RoPE
            roped = (2 * self.heads + 1) * hd
        # the linear layers' own elementwise work (conv, gated norm) is the linear-attention kernel's (attention.py)
        roped *= self.softmax_share * m.attention_rope
        # an output gate: its sigmoid over the attention output (gate and output read, gated output written)
        gated = 3 * self.heads * m.v_dim * self.softmax_share if m.attention_output_gate else 0.0
        # the two fused add + norms (compressed attention: the norms alone, the mixers adding the residual streams;
        # an attention-free layer: the MLP's alone); norms without a residual add: a post-norm's read and write of
        # the hidden state, the q / k norms' of q and k where not inside RoPE's pass
        norms = 10 * h * (1.0 - m.attention_free_share / 2) if m.compressed is None else 4 * h
        plain_norms = 2 * h * m.post_norms + 2 * self._qk_normed_width
        unfused = self.engine.unfused_elementwise  # an engine of unfused eager ops: each class's own traffic
        if unfused is not None:
            norms, roped, act = norms * unfused.norm, roped * unfused.rope, act * unfused.activation
            plain_norms *= unfused.norm if unfused.plain_norm is None else unfused.plain_norm
        elem_bytes = (T * ab * (norms + plain_norms + 2 * roped + gated + act) * self.engine.elementwise_passes
                      + T * self._quantized_bytes_per_token)
        elem_flops = 6.0 * T * h
        if m.compressed is not None:  # the hyper-connection mixers and the compressors' pooling
            extra_flops, extra_bytes = compressed_elementwise(self, T)
            elem_flops, elem_bytes = elem_flops + extra_flops, elem_bytes + extra_bytes
        ops.append(self._op("elementwise", L, elem_flops, elem_bytes, 0.0, self._memory_s(elem_bytes), eager))
        qkv, o_proj = self._attention_projections(T)
        ops.append(self._op("qkv_proj", L, *qkv, eager))
        ops.append(self._op("o_proj", L, *o_proj, eager))
        ops.extend(self._mlp(T, L, eager, all_tokens))
        if m.per_layer_input_size:  # per-layer embeddings: each layer's gate and projection back, whole on every GPU
            ple = m.per_layer_input_size
            gate, back = self._gemm(T, h, ple, self.w_bytes, self.peak, True), self._gemm(T, ple, h, self.w_bytes,
                                                                                           self.peak, True)
            side = T * ab * (5 * h + 3 * ple)  # GELU x the layer's input, the norm, the residual add
            flops, nbytes = gate[0] + back[0], gate[1] + back[1] + side
            ops.append(self._op("per_layer_input", L, flops, nbytes, gate[2] + back[2],
                                gate[3] + back[3] + self._memory_s(side), eager))
        ops.extend(self._reductions(T, L, eager, all_tokens, extend))
        if self.model.qk_norm_across_heads and self.layout.attention_tp > 1:
            # a QK RMSNorm over every head's elements (MiniMax-M2): each TP rank holds some heads, so the per-token
            # sums of squares of q and k are all-reduced (FP32, 2 per token) before normalising, once per layer
            # (vLLM MiniMaxText01RMSNormTP.forward_qk)
            ops.append(self._collective("qk_norm_allreduce", L, T * 2 * 4, self.layout.attention_tp, self.tp_bw,
                                        self.tp_lat, eager))
        linear_reduced = self._linear_reduced_bytes()
        if linear_reduced and self.layout.attention_tp > 1:
            ops.append(self._collective("linear_allreduce", round(L * self.linear_share), T * linear_reduced,
                                        self.layout.attention_tp, self.tp_bw, self.tp_lat, eager))
        # Embedding gather on the first stage, final norm + LM head + sampling on the last.
        emb_bytes = T * h * (self.hp_bytes + ab)
        embedding = (0.0, emb_bytes, 0.0, self._memory_s(emb_bytes))
        if m.per_layer_input_size:  # every layer's per-layer embedding gathered, and the token's projected to them
            width = m.num_layers * m.per_layer_input_size
            gather = T * width * (self.hp_bytes + ab)
            projection = self._gemm(T, h, width, self.hp_bytes, self.attn_peak, False)
            embedding = (projection[0], emb_bytes + gather + projection[1], projection[2],
                         self._memory_s(emb_bytes + gather) + projection[3])
        ops.append(self._op("embedding", 1, *embedding, eager))
        vocab = m.vocab_size / self.layout.attention_tp
        # fp32 logits written and read by the sampler; a soft cap's division, tanh and product, kernels of their own
        # after the GEMM (its time added to it, not hidden under it), each reading and writing the logits in the
        # activations' dtype (vLLM's LogitsProcessor and transformers run the three; SGLang's fused_softcap one)
        softcap_bytes = LOGIT_SOFTCAP_KERNELS * 2 * logit_tokens * vocab * ab if m.logit_softcap else 0.0
        flops, nbytes, compute_s, memory_s = self._gemm(logit_tokens, h, vocab, self.hp_bytes, self.attn_peak, False,
                                                        extra_bytes=logit_tokens * vocab * 4.0)
        ops.append(self._op("lm_head", 1, flops, nbytes + softcap_bytes, compute_s, memory_s, eager,
                            extra_s=self._memory_s(softcap_bytes) if softcap_bytes else 0.0))
        if self.pp > 1:  # the residual stream crosses each stage boundary (compressed attention: its hc_mult streams)
            streams = m.compressed.hc_mult if m.compressed is not None else 1
            ops.append(self._collective("pp_send_recv", self.pp - 1, T * streams * h * ab, 2, self.pp_bw, self.pp_lat,
                                        eager))
        return ops

    def _attention_projections(self, T: float) -> tuple[tuple, tuple]:
        """(qkv_proj, o_proj) of the mean layer's `T` tokens, each (flops, bytes, compute_s, memory_s): latent
        attention's down-projections, or q, k and v (values from the key projection: k alone) and o of this GPU's
        heads; a hybrid stack's windowed layers at their own widths and KV-shared layers without k and v, each in
        their share of their kind; linear-attention layers' own projections in theirs."""
        m, h = self.model, self.model.hidden_size
        hd, heads = m.head_dim, self.heads
        if m.compressed is not None:
            return compressed_projections(self, T)

        def gemm(k: float, n: float) -> tuple:
            return self._gemm(T, k, n, self.w_bytes, self.peak, True)

        if m.latent_attention:
            qkv = self._latent_down_projections(T)
        else:
            q = heads * hd * (2 if m.attention_output_gate else 1)
            qkv = gemm(h, q + self.kv_heads * (hd + (0 if m.value_from_key else m.v_dim)))
            shared_full = m.kv_shared_layers - m.kv_shared_window_layers
            if shared_full:
                qkv = self._mean_layer(qkv, gemm(h, q), shared_full / (m.full_kv_layers + shared_full))
        o_proj = gemm(heads * m.v_dim, h)
        if m.attention_free_layers:  # the mean layer's: attention-free layers project nothing
            keep = m.attending_share
            qkv, o_proj = tuple(value * keep for value in qkv), tuple(value * keep for value in o_proj)
        if self.linear_share:  # the linear layers' input projections and out_proj (from their value heads)
            qkv = self._mean_layer(qkv, self._linear_in_projections(T), self.linear_share)
            o_proj = self._mean_layer(o_proj, gemm(m.linear_value_dim / self.layout.attention_tp, h), self.linear_share)
        if m.window_own_geometry or m.kv_shared_window_layers:  # the windowed layers', in their share
            window_hd, window_v = m.window_layer_head_dim, m.window_layer_v_dim
            window_q = heads * window_hd
            window_qkv = gemm(h, window_q + self.window_kv_heads * (window_hd + window_v))
            if m.kv_shared_window_layers:
                window_qkv = self._mean_layer(window_qkv, gemm(h, window_q), m.kv_shared_window_layers
                                              / (m.window_kv_layers + m.kv_shared_window_layers))
            qkv = self._mean_layer(qkv, window_qkv, self.window_share)
            if m.window_own_geometry:
                o_proj = self._mean_layer(o_proj, gemm(heads * window_v, h), self.window_share)
        return qkv, o_proj

    def _linear_reduced_bytes(self) -> float:
        """Bytes per token a linear-attention layer all-reduces over the attention TP group inside its mixer (beside
        the all-reduce after out_proj): Mamba-1's x_proj output, dt's rank with B and C (vLLM MambaMixer: a
        RowParallelLinear), in the activation dtype; lightning attention's RMSNorm variance across every head, one
        FP32 sum per token (MiniMaxText01RMSNormTP); 0 for the others."""
        m = self.model
        if m.linear_recurrence == "mamba1":
            return m.linear_dt_projections[0] * self.a_bytes
        return 4.0 if m.linear_recurrence == "lightning" else 0.0

    def _linear_in_projections(self, T: int) -> tuple[float, float, float, float]:
        """A linear-attention layer's projections of the new tokens, summed: in_proj (q, k, v, the gate z, the heads'
        scalars) split by head; Mamba-1's x_proj and dt_proj; KDA's low-rank decay and output-gate pairs, their
        down-projections whole on every TP rank (vLLM kda.py: ReplicatedLinear f_a_proj / g_a_proj) and their
        up-projections split."""
        m, h, tp = self.model, self.model.hidden_size, self.layout.attention_tp
        parts = [self._gemm(T, h, m.linear_in_proj_size / tp + m.linear_replicated_width(tp), self.w_bytes, self.peak,
                            True)]
        x_proj, dt_proj = m.linear_dt_projections
        if x_proj:  # Mamba-1: x_proj from this rank's channels (a partial sum, linear_allreduce), dt_proj back to them
            parts += [self._gemm(T, m.linear_value_dim / tp, x_proj, self.w_bytes, self.peak, True),
                      self._gemm(T, m.linear_dt_rank, dt_proj / tp, self.w_bytes, self.peak, True)]
        decay, gate = m.linear_low_rank
        if decay or gate:
            parts += [self._gemm(T, h, decay + gate, self.w_bytes, self.peak, True),
                      self._gemm(T, decay, m.linear_key_dim / tp, self.w_bytes, self.peak, True),
                      self._gemm(T, gate, m.linear_value_dim / tp, self.w_bytes, self.peak, True)]
        return tuple(sum(values) for values in zip(*parts))

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

    def mlp_layers(self, L: int) -> tuple[int, int]:
        """(dense-MLP layers, MoE layers) among a stage's `L` layers, at the stack's shares (the rest have no MLP)."""
        moe_layers = L - round(L * (1 - self.moe_share))
        return L - moe_layers - round(L * self.mlp_free_share), moe_layers

    def _mlp(self, T: float, L: int, eager: bool, all_tokens: int | None = None) -> list[OperatorCost]:
        """The MLP of this GPU's `T` tokens; MoE experts see the tokens of every attention rank
        (`all_tokens`, default T) routed to the experts this GPU holds."""
        m, h = self.model, self.model.hidden_size
        layout = self.layout
        all_tokens = T if all_tokens is None else all_tokens
        ops: list[OperatorCost] = []
        dense_layers, moe_layers = self.mlp_layers(L)
        up = m.mlp_matrices - 1  # gate + up (2) or up (1)
        if dense_layers:
            i = m.intermediate_size * m.dense_mlp_width_factor / layout.attention_tp  # the mean dense layer's
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

            he = m.expert_hidden_size  # what the experts read and write: the hidden state, or a latent MoE's latent
            # the experts' own scheme where the checkpoint stores them apart (DeepSeek-V4's MXFP4 beside FP8)
            scheme = self.expert_quant
            w_bytes, peak = (self.w_bytes, self.peak) if scheme is None else (scheme.weight_bytes_per_param,
                                                                              self.hw.peak(scheme.compute_dtype))
            f1, b1, c1, _ = self._gemm(assignments, he, up * i, w_bytes, peak, True, weights=active,
                                       row_tiles=row_tiles, scheme=scheme)
            f2, b2, c2, _ = self._gemm(assignments, i, he, w_bytes, peak, True, weights=active,
                                       row_tiles=row_tiles, scheme=scheme)
            # Fused-MoE kernels gather token rows inside the GEMM (counted in its activation bytes);
            # the top-k combine then reads every expert output and writes one hidden state per token.
            b = b1 + b2 + (assignments + T) * he * self.a_bytes
            # the experts' weights: up (rows of he elements) and down (rows of i), at their row lengths' rates
            up_bytes = active * he * up * i * w_bytes
            row_start = self._row_start_bytes(he, up_bytes) + self._row_start_bytes(i, up_bytes / up)
            ops.append(self._op("moe_experts", moe_layers, f1 + f2, b, c1 + c2, self._memory_s(b + row_start), eager))
            ops.append(self._op("moe_router", moe_layers, *self._gemm(T, h, E, self.hp_bytes, self.attn_peak, False), eager))
            if m.moe_latent_size:  # fc1 / fc2_latent_proj: whole on every GPU (replicated), over its own tokens
                down = self._gemm(T, h, m.moe_latent_size, self.w_bytes, self.peak, True)
                back = self._gemm(T, m.moe_latent_size, h, self.w_bytes, self.peak, True)
                ops.append(self._op("moe_latent_proj", moe_layers, *(a + b for a, b in zip(down, back)), eager))
            if m.shared_expert_intermediate_size:  # on every attention rank, over its own tokens
                si = m.shared_expert_intermediate_size / layout.attention_tp
                f1, b1, c1, m1 = self._gemm(T, h, up * si, self.w_bytes, self.peak, True)
                f2, b2, c2, m2 = self._gemm(T, si, h, self.w_bytes, self.peak, True)
                side = not eager and T <= self.engine.shared_expert_stream_tokens  # beside the routed experts
                ops.append(self._op("moe_shared", moe_layers, f1 + f2, b1 + b2, c1 + c2, m1 + m2, eager,
                                    side_stream=side))
        return ops


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
    compressor states are per sequence: perf/memory.py kv_window_terms; a stack of sliding layers only, its window's
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
    for kv_heads, which in ((model.num_kv_heads, "num_key_value_heads"),
                            (model.window_layer_kv_heads, "the windowed layers' KV heads")):
        if kv_heads % tp and tp % kv_heads:
            raise PhasewiseError(f"--tp {tp} neither divides nor is a multiple of {which}={kv_heads} of {model.name}")
    if model.linear_attention_layers and ((model.linear_key_heads % tp and not model.linear_replicated_width(tp))
                                          or model.linear_value_heads % tp):
        ok = [d for d in range(1, model.num_heads + 1) if model.num_heads % d == 0 and model.linear_value_heads % d == 0
              and (model.linear_key_heads % d == 0 or model.linear_replicated_width(d))]
        raise PhasewiseError(
            f"--tp {tp} does not divide the linear-attention heads of {model.name} (linear_num_key_heads="
            f"{model.linear_key_heads}, linear_num_value_heads={model.linear_value_heads}; allowed: "
            f"{', '.join(map(str, ok))})")
    if model.compressed is not None and model.compressed.o_groups % tp:
        ok = [d for d in range(1, model.compressed.o_groups + 1) if model.compressed.o_groups % d == 0]
        raise PhasewiseError(f"--tp {tp} does not divide o_groups={model.compressed.o_groups} of {model.name} (its "
                             f"grouped output projection is split by group; allowed: {', '.join(map(str, ok))})")
    if pp > model.num_layers:
        raise PhasewiseError(f"--pp {pp} exceeds the {model.num_layers} layers of {model.name}")
    if model.linear_attention_layers and pp > 1:
        # a stage is costed as the stack's share of each kind (ModelSpec.stage_layers): it must keep a softmax layer
        def softmax_layers(stages: int) -> int:
            layers, linear = model.stage_layers(stages)
            return layers - linear

        if softmax_layers(pp) < 1:
            most = max(d for d in range(1, pp) if softmax_layers(d) >= 1)
            raise PhasewiseError(
                f"--pp {pp}: a stage of {model.stage_layers(pp)[0]} layers keeps no softmax-attention layer at "
                f"{model.name}'s share ({model.linear_attention_layers} of {model.num_layers} layers linear), and "
                f"stages are costed at the stack's shares; use --pp {most} or less")
    if model.kv_shared_layers and pp > 1:
        raise PhasewiseError(f"--pp {pp}: pipeline parallelism of a model whose layers reuse earlier layers' KV "
                             f"({model.name}) is not modelled yet; use --pp 1")
