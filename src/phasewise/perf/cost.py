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
decode_line.py's; a layer's weight GEMMs (projections, MLP, MoE experts) layer_gemms.py's; the time of one GEMM
and of a memory transfer gemm_cost.py's; whether a batch replays a graph, the busiest attention-DP rank's share and
the host's work batch_launch.py's; the bytes a token's KV occupies kv_geometry.py's.
"""

from __future__ import annotations

import math

from phasewise.errors import PhasewiseError
from phasewise.perf.attention import AttentionCost, LatentAttention, LinearAttention, SparseIndexer
from phasewise.perf.batch import BatchShape
from phasewise.perf.batch_launch import BatchLaunch
from phasewise.perf.collectives import Communication, link, peer_link, ring_bandwidth
from phasewise.perf.compressed_cost import compressed_attention_layer, compressed_elementwise
from phasewise.perf.decode_line import DecodeSeries
from phasewise.perf.gemm_cost import GemmCost
from phasewise.perf.kv_geometry import (
    INDEXER_KEY_SCALE_BYTES,
    cached_kv_bytes_per_token,
    compressed_entry_bytes,
    kv_heads_per_gpu,
)
from phasewise.perf.layer_gemms import LayerGemms
from phasewise.perf.memory import padded_expert_widths, weight_bytes_per_gpu
from phasewise.perf.operators import (
    EAGER_DISPATCH,
    KERNELS,
    LOGIT_SOFTCAP_KERNELS,
    QK_NORM_KERNELS,
    IterationCost,
    OperatorCost,
    compressed_shares,
    kernel_counts,
    unfused_kernel_counts,
)
from phasewise.perf.parallel import ParallelLayout, check_parallelism
from phasewise.perf.stages import NOT_PER_LAYER, IterationParts, Pipeline, stage_inputs
from phasewise.perf.vision import EncoderCost, encoder_forward
from phasewise.perf.vocab_split import vocab_split
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes

__all__ = ["KERNELS", "CostModel", "IterationCost", "IterationParts", "OperatorCost"]


class CostModel(DecodeSeries, Communication, LayerGemms, GemmCost, BatchLaunch):
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
        self.vocab = vocab_split(model, tp, layout.attention_dp, engine)  # where the embedding and LM head live
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
        # (hidden, intermediate per GPU) of a routed expert as the engine's MoE kernels hold it (padded_expert_widths)
        self.expert_widths = padded_expert_widths(model, quant, layout.moe_tp, engine.name, hardware)
        if quant.experts and quant.weight_dtype in ("bf16", "fp16", "fp32") and not model.num_experts:
            raise PhasewiseError(f"--precision {quant.name} quantizes a MoE model's routed experts only (the rest "
                                 f"stays {quant.weight_dtype}); {model.name} has no experts: give bf16, fp8, nvfp4, "
                                 f"mxfp4 or another whole-model precision")
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
        self.pp_bw, self.pp_lat = peer_link(ic, tp * pp) if pp > 1 else (ic.peer_bandwidth, 0.0)
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
        if engine.unfused_kernels is not None:  # each op of an unfused eager engine a kernel of its own
            plain_share = 1.0 - m.linear_layer_share - m.attention_free_share  # kernel_counts' softmax layers
            kernels = unfused_kernel_counts(
                kernels, engine.unfused_kernels, self._qk_norm_kernels * plain_share + m.post_norms,
                (2 * qk_normed + m.v_norm) * plain_share + m.post_norms)  # q's and k's norms: two calls
        self.eager_launch_s = engine.eager_launch_s / eff.host_speed  # host time per eager kernel on this platform
        self._attention_dispatch_s = kernels["attention"] * self.eager_launch_s
        # each kernel's launch cost on the device: on a calibrated CPU, colder as the layers' weights outgrow its cache
        # (the weights are summed only there: this runs for every cost model a plan builds)
        self.kernel_launch_s = eff.kernel_launch_s if eff.kernel_launch_cold_s is None else eff.kernel_launch_at(
            weight_bytes_per_gpu(m, quant, tp, 1, layout, embeddings=False, engine=engine.name, hardware=hardware)
            / m.num_layers)
        self._attention_launch_s = self.layers_per_stage * kernels["attention"] * self.kernel_launch_s
        curve = eff.gemm_efficiency_curve
        self._curve = None if not curve else (tuple(math.log(r) for r, _ in curve), tuple(e for _, e in curve))
        # _op's per-call dispatch (eager) and launch times of each operator's kernels
        self._op_dispatch_s = {name: k * self.eager_launch_s for name, k in kernels.items()}
        self._op_launch_s = {name: k * self.kernel_launch_s for name, k in kernels.items()}
        # fast(): cost but attention's by (tokens, logit tokens, eager); decode series: decode_line by batch
        self._cache: dict[tuple, tuple] = {}

    # --- building blocks ------------------------------------------------------------------------
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
        with_host_s = self._with_host(latency_s, host_s)
        return IterationCost(with_host_s, self._with_host(stage_s, host_s), host_s, ops, with_host_s - latency_s)

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
        all_tokens, all_logit_tokens = T, logit_tokens
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
        # a vocabulary-split table: its lookups summed over the attention TP group (embedding_reduction) after the
        # gather, on its row: the links' time after the gather's, the all-reduce's launch and overhead
        reduction = self.embedding_reduction(T)
        extra_s = 0.0
        if reduction is not None:
            embedding = (embedding[0], embedding[1] + reduction.bytes, embedding[2], embedding[3] + reduction.memory_s)
            extra_s = reduction.launch_s
        ops.append(self._op("embedding", 1, *embedding, eager, extra_s=extra_s))
        vocab = m.vocab_size / self.vocab.lm_head_gpus  # the head's vocabulary on each GPU (vocab_split.py vocab_split)
        exchanged, exchange_s = 0.0, 0.0
        if self.vocab.gathers_logit_tokens:  # every attention rank's logit tokens through this GPU's slice of the head
            logit_tokens = all_logit_tokens
            exchanged, exchange_s = self.lm_head_exchange(logit_tokens, vocab)
        # fp32 logits written and read by the sampler; a soft cap's division, tanh and product, kernels of their own
        # after the GEMM (its time added to it, not hidden under it), each reading and writing the logits in the
        # activations' dtype (vLLM's LogitsProcessor and transformers run the three; SGLang's fused_softcap one);
        # the gathered head's communication after it likewise
        softcap_bytes = LOGIT_SOFTCAP_KERNELS * 2 * logit_tokens * vocab * ab if m.logit_softcap else 0.0
        flops, nbytes, compute_s, memory_s = self._gemm(logit_tokens, h, vocab, self.hp_bytes, self.attn_peak, False,
                                                        extra_bytes=logit_tokens * vocab * 4.0)
        ops.append(self._op("lm_head", 1, flops, nbytes + softcap_bytes + exchanged, compute_s, memory_s, eager,
                            extra_s=(self._memory_s(softcap_bytes) if softcap_bytes else 0.0) + exchange_s))
        if self.pp > 1:  # the residual stream crosses each stage boundary (compressed attention: its hc_mult streams)
            streams = m.compressed.hc_mult if m.compressed is not None else 1
            ops.append(self._collective("pp_send_recv", self.pp - 1, T * streams * h * ab, 2, self.pp_bw, self.pp_lat,
                                        eager))
        return ops
