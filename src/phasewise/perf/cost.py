"""Time of one forward iteration, operator by operator.

Each operator costs  max(compute, memory, eager dispatch) + device launch,  where
  compute = FLOPs / (peak of its dtype x efficiency that grows with the rows it multiplies),
  memory  = bytes / (bandwidth x efficiency that grows with the transfer size),
  dispatch = host-side launch time of its kernels when the engine runs them eagerly.
Collectives (TP all-reduce, PP send/recv) cost latency + bytes over the link. The iteration adds
the engine's host overhead (scheduler, input preparation, sampling) per iteration and per sequence.
Every constant comes from HardwareSpec.efficiency or EngineProfile; see specs/data/*.yaml.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes

# Kernels per operator in a fused modern engine (vLLM/TRT-LLM): fused add+norm x2, RoPE, activation;
# one GEMM per projection; attention plus the KV-cache write; router, permute, grouped GEMMs, combine.
KERNELS = {
    "elementwise": 4, "qkv_proj": 1, "attention": 2, "o_proj": 1, "mlp_gate_up": 1, "mlp_down": 1,
    "moe_router": 2, "moe_experts": 4, "moe_shared": 2, "tp_allreduce": 1, "embedding": 1,
    "lm_head": 3, "pp_send_recv": 1,
}
FIXED_OPERATORS = ("embedding", "lm_head")  # once per iteration, not per layer


@dataclass(slots=True)
class OperatorCost:
    """One operator summed over the layers it runs in (count = layers, or 1 for per-iteration ops)."""

    name: str
    count: int
    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    dispatch_s: float
    launch_s: float
    time_s: float = field(init=False)
    bound: str = field(init=False)

    def __post_init__(self) -> None:
        top = max(self.compute_s, self.memory_s, self.dispatch_s)
        self.time_s = top + self.launch_s
        if self.name in ("tp_allreduce", "pp_send_recv"):
            self.bound = "network" if self.memory_s >= self.dispatch_s else "dispatch"
        elif top == self.dispatch_s or self.launch_s > top:
            self.bound = "dispatch"
        else:
            self.bound = "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass(slots=True)
class IterationCost:
    latency_s: float  # wall time of the iteration through all pipeline stages
    stage_s: float  # time of the slowest pipeline stage (= latency_s when pp == 1)
    host_s: float  # engine host overhead included in both
    operators: list[OperatorCost]

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.operators)

    @property
    def bytes(self) -> float:
        return sum(op.bytes for op in self.operators)

    @property
    def bound(self) -> str:
        """The roof that accounts for most of the iteration's time."""
        by: dict[str, float] = {"dispatch": self.host_s}
        for op in self.operators:
            by[op.bound] = by.get(op.bound, 0.0) + op.time_s
        return max(by, key=by.__getitem__)


class CostModel:
    """Cost of forward iterations of one model on one TP x PP group of one hardware type."""

    def __init__(self, model: ModelSpec, hardware: HardwareSpec, quant: QuantScheme,
                 engine: EngineProfile, tp: int = 1, pp: int = 1) -> None:
        check_parallelism(model, tp, pp)
        self.model, self.hw, self.quant, self.engine, self.tp, self.pp = model, hardware, quant, engine, tp, pp
        eff = hardware.efficiency
        self.eff = eff
        self.peak = hardware.peak(quant.compute_dtype)
        self.hp_dtype = quant.compute_dtype if quant.compute_dtype in ("fp32", "fp16") else "bf16"
        self.attn_peak = hardware.peak(self.hp_dtype)
        self.hp_bytes = dtype_bytes(self.hp_dtype)
        self.w_bytes = quant.weight_bytes_per_param
        self.a_bytes = quant.activation_bytes if quant.compute_dtype != "fp32" else 4.0
        self.kv_bytes = quant.kv_bytes_per_element
        self.bw = hardware.memory_bandwidth_bytes_per_s
        self.layers_per_stage = math.ceil(model.num_layers / pp)
        m = model
        self.heads = m.num_heads // tp
        self.kv_heads = kv_heads_per_gpu(m.num_kv_heads, tp)
        self.kv_bytes_per_token_layer = 2 * self.kv_heads * m.head_dim * self.kv_bytes
        ic = hardware.interconnect
        self.tp_bw, self.tp_lat = link(ic, tp)
        self.pp_bw, self.pp_lat = link(ic, tp * pp) if pp > 1 else (ic.intra_node_bandwidth_bytes_per_s, 0.0)
        self.moe_share = m.num_moe_layers / m.num_layers
        self.gemm_eff = eff.gemm_efficiency_max * engine.compute_efficiency
        self.attn_eff = eff.attention_efficiency_max * engine.compute_efficiency
        self.vector_rate = hardware.vector_flops * eff.vector_efficiency
        self._att_flops_per_pair = 4.0 * m.head_dim * self.heads
        self._att_q_bytes = 2 * self.heads * m.head_dim * self.a_bytes
        self._q_per_kv = self.heads / self.kv_heads
        self._att_rate = self.attn_peak * self.attn_eff
        self._decode_s_per_byte = 1.0 / (self.bw * eff.attention_memory_efficiency)
        curve = eff.gemm_efficiency_curve
        self._curve = None if not curve else (tuple(math.log(r) for r, _ in curve), tuple(e for _, e in curve))
        self._cache: dict[tuple, tuple] = {}  # fast(): non-attention cost by (tokens, logit tokens, eager)

    # --- building blocks ------------------------------------------------------------------------
    def _memory_s(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        return nbytes / (self.bw * self.eff.memory_efficiency_max * nbytes / (nbytes + self.eff.memory_half_bytes))

    def _gemm(self, rows: float, k: float, n: float, w_bytes: float, peak: float, dequant: bool,
              weights: float = 1.0) -> tuple[float, float, float, float]:
        """FLOPs, bytes, compute_s, memory_s of `rows` x k @ k x n, with `weights` copies of the weight read."""
        if rows <= 0:
            return 0.0, 0.0, 0.0, 0.0
        flops = 2.0 * rows * k * n
        nbytes = weights * k * n * w_bytes + rows * (k + n) * self.a_bytes
        eff = self._gemm_efficiency(rows / weights)
        compute = flops / (peak * eff)
        if dequant and self.quant.dequant_ops_per_weight:
            tiles = math.ceil(rows / weights / self.eff.dequant_tile_rows)
            compute += (weights * k * n * tiles * self.quant.dequant_ops_per_weight
                        / self.vector_rate)
        return flops, nbytes, compute, self._memory_s(nbytes)

    def _gemm_efficiency(self, rows: float) -> float:
        """Fraction of the tensor peak a GEMM with `rows` activation rows per weight matrix reaches."""
        curve = self._curve
        if curve is None:
            return self.gemm_eff * rows / (rows + self.eff.gemm_half_rows)
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
            eager: bool, extra_s: float = 0.0) -> OperatorCost:
        """Scale one layer's cost by `count`; `extra_s` is a fixed cost per call added to launch."""
        k = KERNELS[name]
        dispatch = k * self.engine.eager_launch_s if eager else 0.0
        return OperatorCost(name, count, flops * count, nbytes * count, compute * count, memory * count,
                            dispatch * count, (k * self.eff.kernel_launch_s + extra_s) * count)

    def _collective(self, name: str, count: int, nbytes: float, ranks: int, bw: float, lat: float,
                    eager: bool) -> OperatorCost:
        """Ring all-reduce (2(r-1) steps) for TP; one point-to-point hop for PP."""
        if name == "tp_allreduce":
            steps, traffic = 2 * (ranks - 1), 2 * (ranks - 1) / ranks * nbytes
        else:
            steps, traffic = 1, nbytes
        net = steps * lat + traffic / (bw * self.eff.link_efficiency * self.engine.collective_efficiency)
        return self._op(name, count, 0.0, nbytes, 0.0, net, eager, self.engine.collective_overhead_s)

    # --- one iteration --------------------------------------------------------------------------
    def eager(self, shape: BatchShape) -> bool:
        e = self.engine
        if not e.cuda_graphs:
            return True
        return shape.prefill_tokens > 0 or shape.seqs > e.cuda_graph_max_batch

    def iteration(self, shape: BatchShape) -> IterationCost:
        """Cost of one forward pass over `shape` (see BatchShape), operator by operator."""
        T = shape.tokens
        if T <= 0:
            raise ValueError("an iteration needs at least one token")
        eager = self.eager(shape)
        ops = self._other_ops(T, shape.logit_tokens, eager)
        ops.insert(2, self._attention(shape, self.layers_per_stage, eager))
        latency, stage = self._assemble(*_stage_parts(ops))
        host = self._host_s(shape)
        return IterationCost(latency + host, stage + host, host, ops)

    def fast(self, shape: BatchShape) -> tuple[float, float, float, float]:
        """(latency_s, stage_s, flops, bytes) of iteration(shape), without building the breakdown:
        everything but attention depends only on (tokens, logit tokens, eager) and is cached."""
        eager = self.eager(shape)
        c = self._static(shape.tokens, shape.logit_tokens, eager)
        f, b, comp, mem = self._attention_terms(shape)
        L = self.layers_per_stage
        disp = KERNELS["attention"] * self.engine.eager_launch_s if eager else 0.0
        att = L * max(comp, mem, disp) + L * KERNELS["attention"] * self.eff.kernel_launch_s  # _op's rule
        latency, stage = self._assemble(c[0] + att, c[1], c[2], c[3])
        host = self._host_s(shape)
        return latency + host, stage + host, c[4] + L * f, c[5] + L * b

    def _static(self, T: int, logit_tokens: int, eager: bool) -> tuple:
        """Cached: (per-layer time without attention, embedding, LM head, PP send, FLOPs, bytes)."""
        key = (T, logit_tokens, eager)
        c = self._cache.get(key)
        if c is None:
            if T <= 0:
                raise ValueError("an iteration needs at least one token")
            ops = self._other_ops(T, logit_tokens, eager)
            c = (*_stage_parts(ops), sum(op.flops for op in ops), sum(op.bytes for op in ops))
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = c
        return c

    def _host_s(self, shape: BatchShape) -> float:
        return self.engine.iteration_overhead_s + self.engine.per_sequence_overhead_s * shape.seqs

    def _assemble(self, per_layer: float, embedding: float, lm_head: float, send: float) -> tuple[float, float]:
        """Latency through all pipeline stages, and the slowest stage's time (pp > 1)."""
        if self.pp == 1:
            stage = per_layer + embedding + lm_head
            return stage, stage
        latency = per_layer / self.layers_per_stage * self.model.num_layers + embedding + lm_head + send
        return latency, per_layer + max(embedding, lm_head) + send / (self.pp - 1)

    def _other_ops(self, T: int, logit_tokens: int, eager: bool) -> list[OperatorCost]:
        """Every operator of the iteration except attention (which depends on the batch's contexts)."""
        m = self.model
        L = self.layers_per_stage
        hd, h, ab = m.head_dim, m.hidden_size, self.a_bytes
        ops: list[OperatorCost] = []
        # Per-layer elementwise work: 2 fused add+norms, RoPE on q and k, the MLP activation.
        inter = (m.intermediate_size * (1 - self.moe_share)
                 + (m.experts_per_token * m.expert_intermediate_size + m.shared_expert_intermediate_size)
                 * self.moe_share) / self.tp
        act = (3 if m.mlp_gated else 2) * inter
        elem_bytes = T * ab * (10 * h + 2 * (self.heads + self.kv_heads) * hd + act) * self.engine.elementwise_passes
        ops.append(self._op("elementwise", L, 6.0 * T * h, elem_bytes, 0.0, self._memory_s(elem_bytes), eager))
        qkv_n = (self.heads + 2 * self.kv_heads) * hd
        ops.append(self._op("qkv_proj", L, *self._gemm(T, h, qkv_n, self.w_bytes, self.peak, True), eager))
        ops.append(self._op("o_proj", L, *self._gemm(T, self.heads * hd, h, self.w_bytes, self.peak, True), eager))
        ops.extend(self._mlp(T, L, eager))
        if self.tp > 1:
            ops.append(self._collective("tp_allreduce", 2 * L, T * h * ab, self.tp, self.tp_bw, self.tp_lat, eager))
        # Embedding gather on the first stage, final norm + LM head + sampling on the last.
        emb_bytes = T * h * (self.hp_bytes + ab)
        ops.append(self._op("embedding", 1, 0.0, emb_bytes, 0.0, self._memory_s(emb_bytes), eager))
        f, b, c, _ = self._gemm(logit_tokens, h, m.vocab_size / self.tp, self.hp_bytes, self.attn_peak, False)
        b += logit_tokens * m.vocab_size / self.tp * 4.0  # fp32 logits written and read by the sampler
        ops.append(self._op("lm_head", 1, f, b, c, self._memory_s(b), eager))
        if self.pp > 1:
            ops.append(self._collective("pp_send_recv", self.pp - 1, T * h * ab, 2, self.pp_bw, self.pp_lat, eager))
        return ops

    def _attention_part(self, seqs: int, tokens: int, pairs, kv, is_decode: bool):
        """FLOPs, bytes, compute_s, memory_s of one layer's attention for one kernel class.
        `pairs` and `kv` may be numpy arrays (a series of decode iterations)."""
        f = self._att_flops_per_pair * pairs
        # KV read (cached + new) and written (new), q read and output written.
        b = (kv + tokens) * self.kv_bytes_per_token_layer + tokens * self._att_q_bytes
        if is_decode:
            rows = tokens / seqs * self._q_per_kv
            rate = self._att_rate * rows / (rows + self.eff.decode_attention_half_rows)
        else:
            rows = tokens / seqs
            rate = self._att_rate * rows / (rows + self.eff.attention_half_tokens)
        if is_decode:  # few query rows per KV head: CUDA cores may beat padded tensor tiles
            rate = max(rate, self.vector_rate) if self.engine.decode_attention_tensor_cores else self.vector_rate
            return f, b, f / rate, b * self._decode_s_per_byte
        return f, b, f / rate, self._memory_s(b)

    def _attention_terms(self, s: BatchShape) -> tuple[float, float, float, float]:
        """One layer's attention over both kernel classes: FLOPs, bytes, compute_s, memory_s."""
        if s.prefill_seqs:
            f, b, c, m = self._attention_part(s.prefill_seqs, s.prefill_tokens, s.prefill_pairs,
                                              s.prefill_kv_tokens, False)
            if s.decode_seqs:
                f2, b2, c2, m2 = self._attention_part(s.decode_seqs, s.decode_tokens, s.decode_pairs,
                                                      s.decode_kv_tokens, True)
                return f + f2, b + b2, c + c2, m + m2
            return f, b, c, m
        return self._attention_part(s.decode_seqs, s.decode_tokens, s.decode_pairs, s.decode_kv_tokens, True)

    def _attention(self, s: BatchShape, L: int, eager: bool) -> OperatorCost:
        return self._op("attention", L, *self._attention_terms(s), eager)

    def _decode_coefficients(self, shape: BatchShape) -> tuple:
        """A pure-decode iteration's latency as max(pairs * a, kv * b + c, floor) * scale + offset, where
        only the attention pairs and KV tokens vary as the contexts grow (the same arithmetic as
        _attention_part + _op + _assemble + _host_s, rearranged; cached by batch size).
        Also returns (latency, flops, bytes) of `shape` itself."""
        if shape.prefill_seqs:
            raise ValueError("decode series take pure-decode batches")
        seqs, tokens, logits = shape.decode_seqs, shape.decode_tokens, shape.logit_tokens
        key = ("decode", seqs, tokens, logits)
        k = self._cache.get(key)
        if k is None:
            eager = self.eager(shape)
            c = self._static(tokens, logits, eager)
            rows = tokens / seqs * self._q_per_kv
            rate = self._att_rate * rows / (rows + self.eff.decode_attention_half_rows)
            rate = max(rate, self.vector_rate) if self.engine.decode_attention_tensor_cores else self.vector_rate
            a = self._att_flops_per_pair / rate
            b = self.kv_bytes_per_token_layer * self._decode_s_per_byte
            cst = (tokens * self.kv_bytes_per_token_layer + tokens * self._att_q_bytes) * self._decode_s_per_byte
            floor = KERNELS["attention"] * self.engine.eager_launch_s if eager else 0.0
            L = self.layers_per_stage
            per_layer = c[0] + L * KERNELS["attention"] * self.eff.kernel_launch_s
            if self.pp == 1:
                scale, offset = L, per_layer + c[1] + c[2]
            else:
                r = self.model.num_layers / L
                scale, offset = L * r, per_layer * r + c[1] + c[2] + c[3]
            offset += self._host_s(shape)
            k = (a, b, cst, floor, scale, offset, c[4], c[5])
            self._cache[key] = k
        a, b, cst, floor, scale, offset, flops, nbytes = k
        pairs, kv = shape.decode_pairs, shape.decode_kv_tokens
        first = max(pairs * a, kv * b + cst, floor) * scale + offset
        L = self.layers_per_stage
        f0 = self._att_flops_per_pair * pairs  # = _attention_part's flops and bytes
        b0 = (kv + tokens) * self.kv_bytes_per_token_layer + tokens * self._att_q_bytes
        return a, b, cst, floor, scale, offset, (first, flops + L * f0, nbytes + L * b0)

    def decode_series(self, shape: BatchShape, pairs: np.ndarray, kv: np.ndarray
                      ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Latencies of consecutive pure-decode iterations that differ from `shape` only in their
        attention pairs and KV tokens (the context grows): exact, without rebuilding each iteration.
        pairs[0], kv[0] must be shape's own. Returns the latencies and (latency, flops, bytes) of the first."""
        a, b, cst, floor, scale, offset, first = self._decode_coefficients(shape)
        att = np.maximum(pairs * a, kv * b + cst)
        if floor:
            np.maximum(att, floor, out=att)
        att *= scale
        att += offset
        return att, first

    def decode_series_linear(self, shape: BatchShape, steps: np.ndarray, kv_per_step: float, pairs_per_step: float
                             ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """decode_series for contexts growing linearly: KV tokens kv0 + kv_per_step*j, pairs likewise."""
        a, b, cst, floor, scale, offset, first = self._decode_coefficients(shape)
        att = steps * (pairs_per_step * a)
        att += shape.decode_pairs * a
        mem = steps * (kv_per_step * b)
        mem += shape.decode_kv_tokens * b + cst
        np.maximum(att, mem, out=att)
        if floor:
            np.maximum(att, floor, out=att)
        att *= scale
        att += offset
        return att, first

    def _mlp(self, T: int, L: int, eager: bool) -> list[OperatorCost]:
        m, h = self.model, self.model.hidden_size
        ops: list[OperatorCost] = []
        dense_layers = round(L * (1 - self.moe_share))
        moe_layers = L - dense_layers
        up = m.mlp_matrices - 1  # gate + up (2) or up (1)
        if dense_layers:
            i = m.intermediate_size / self.tp
            ops.append(self._op("mlp_gate_up", dense_layers, *self._gemm(T, h, up * i, self.w_bytes, self.peak, True), eager))
            ops.append(self._op("mlp_down", dense_layers, *self._gemm(T, i, h, self.w_bytes, self.peak, True), eager))
        if moe_layers:
            E, k = m.num_experts, m.experts_per_token
            i = m.expert_intermediate_size / self.tp
            assignments = T * k
            active = E * (1.0 - (1.0 - k / E) ** T)  # expected experts hit by at least one token
            f1, b1, c1, _ = self._gemm(assignments, h, up * i, self.w_bytes, self.peak, True, weights=active)
            f2, b2, c2, _ = self._gemm(assignments, i, h, self.w_bytes, self.peak, True, weights=active)
            # Fused-MoE kernels gather token rows inside the GEMM (counted in its activation bytes);
            # the top-k combine then reads every expert output and writes one hidden state per token.
            b = b1 + b2 + (assignments + T) * h * self.a_bytes
            ops.append(self._op("moe_experts", moe_layers, f1 + f2, b, c1 + c2, self._memory_s(b), eager))
            ops.append(self._op("moe_router", moe_layers, *self._gemm(T, h, E, self.hp_bytes, self.attn_peak, False), eager))
            if m.shared_expert_intermediate_size:
                si = m.shared_expert_intermediate_size / self.tp
                f1, b1, c1, m1 = self._gemm(T, h, up * si, self.w_bytes, self.peak, True)
                f2, b2, c2, m2 = self._gemm(T, si, h, self.w_bytes, self.peak, True)
                ops.append(self._op("moe_shared", moe_layers, f1 + f2, b1 + b2, c1 + c2, m1 + m2, eager))
        return ops


def _stage_parts(ops: list[OperatorCost]) -> tuple[float, float, float, float]:
    """(per-layer operators' time, embedding, LM head, PP send/recv) of an iteration's operators."""
    times = {op.name: op.time_s for op in ops}
    per_layer = sum(t for n, t in times.items() if n not in FIXED_OPERATORS and n != "pp_send_recv")
    return per_layer, times["embedding"], times["lm_head"], times.get("pp_send_recv", 0.0)


def kv_heads_per_gpu(num_kv_heads: int, tp: int) -> int:
    """KV heads stored per GPU: split across TP ranks, replicated when TP exceeds them."""
    return max(1, num_kv_heads // tp)


def link(ic, ranks: int) -> tuple[float, float]:
    """Bandwidth and latency of the link a group of `ranks` GPUs communicates over."""
    if ranks <= ic.gpus_per_node:
        return ic.intra_node_bandwidth_bytes_per_s, ic.intra_node_latency_s
    return ic.inter_node_bandwidth_bytes_per_s, ic.inter_node_latency_s


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
    if pp > model.num_layers:
        raise PhasewiseError(f"--pp {pp} exceeds the {model.num_layers} layers of {model.name}")
