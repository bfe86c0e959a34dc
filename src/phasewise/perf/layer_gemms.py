"""The weight GEMMs of a layer, as CostModel costs them (a base class: it reads the model, its layout, dtypes and
peaks, and CostModel's _gemm(), _op() and _mean_layer()): the attention projections (q, k, v and o of this GPU's
heads; latent attention's down-projections; a hybrid stack's windowed, KV-shared and linear-attention layers at
their own widths, each in its share), the dense MLP, and a MoE layer's routed experts (this GPU's experts and the
rows routed to them on its most loaded, under the model's routing skew), router, latent projections and shared
expert."""

from __future__ import annotations

from phasewise.perf.compressed_cost import compressed_projections
from phasewise.perf.expert_load import expected_distinct_experts, expected_row_tiles
from phasewise.perf.operators import OperatorCost


class LayerGemms:
    """CostModel's layer GEMMs (a base class)."""

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
            # the widths the engine's kernels multiply them at: padded where they pad (memory.padded_expert_widths)
            he_w, i = self.expert_widths
            # the experts' own scheme where the checkpoint stores them apart (DeepSeek-V4's MXFP4 beside FP8)
            scheme = self.expert_quant
            w_bytes, peak = (self.w_bytes, self.peak) if scheme is None else (scheme.weight_bytes_per_param,
                                                                              self.hw.peak(scheme.compute_dtype))
            f1, b1, c1, _ = self._gemm(assignments, he_w, up * i, w_bytes, peak, True, weights=active,
                                       row_tiles=row_tiles, scheme=scheme)
            f2, b2, c2, _ = self._gemm(assignments, i, he_w, w_bytes, peak, True, weights=active,
                                       row_tiles=row_tiles, scheme=scheme)
            # Fused-MoE kernels gather token rows inside the GEMM (counted in its activation bytes);
            # the top-k combine then reads every expert output and writes one hidden state per token.
            b = b1 + b2 + (assignments + T) * he * self.a_bytes
            # the experts' weights: up (rows of he elements) and down (rows of i), at their row lengths' rates
            up_bytes = active * he_w * up * i * w_bytes
            row_start = self._row_start_bytes(he_w, up_bytes) + self._row_start_bytes(i, up_bytes / up)
            # at memory_efficiency_max: weight_read_efficiency is the dense kernels' (efficiency.yaml says why)
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
