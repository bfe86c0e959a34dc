"""Communication of a stage's GPUs, and the links it runs over.

A TP all-reduce runs NCCL's ring or, inside one NVLink domain, the engine's one-shot / two-shot kernels; a PP
hop is one send; a MoE layer with attention DP beside expert parallelism dispatches each token to its experts'
GPUs and combines it back, as DeepEP's kernels move it (inside a node over NVLink, across nodes over RDMA).
Communication is a base of CostModel (it reads the model's layout, dtypes and links); link() and ring_bandwidth()
give the bandwidth and latency a group of GPUs communicates at.
"""

from __future__ import annotations

import math

from phasewise.perf.group_routing import other_ranks_per_token
from phasewise.perf.operators import OperatorCost

__all__ = ["Communication", "link", "other_ranks_per_token", "ring_bandwidth"]

BOARD_GPUS = 8  # an HGX baseboard's NVLink domain; a larger one (an NVL72 rack's) spans nodes: multi-node NVLink


class Communication:
    """CostModel's collectives (a base class: it reads the model's layout, dtypes, links and _op())."""

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

    def embedding_reduction(self, T: float) -> OperatorCost | None:
        """The all-reduce of the embedding's output (`T` tokens x hidden, activation dtype) over the attention TP group,
        once per forward on the first stage: the table is split by vocabulary over the ranks, each looks up the rows it
        holds (zeros elsewhere) and the ranks sum them (vLLM and SGLang VocabParallelEmbedding.forward:
        tensor_model_parallel_all_reduce(output_parallel)). TensorRT-LLM's Embedding (split by hidden, its outputs
        gathered) was not read: costed as the same all-reduce, the common case. None without attention TP, or where
        the table is whole on every GPU (vocab_split.py vocab_split: SGLang under attention DP)."""
        ranks = self.vocab.embedding_gpus
        if ranks == 1:
            return None
        return self._collective("tp_allreduce", 1, T * self.model.hidden_size * self.a_bytes, ranks, self.tp_bw,
                                self.tp_lat, False)

    def lm_head_exchange(self, rows: float, vocab_per_gpu: float) -> tuple[float, float]:
        """(bytes moved, seconds) of the communication around an LM head split over the stage's whole TP group under
        attention DP (vocab_split.py vocab_split gathers_logit_tokens; SGLang's layers/logits_processor.py
        LogitsProcessor._get_logits without --enable-dp-lm-head): the `rows` logit tokens of every attention rank
        gathered onto every GPU before the head (dp_gather_replicate in SUM_LEN mode, layers/dp_attention.py
        _dp_gather_via_all_reduce: each rank's rows written into a zeroed buffer of all of them, all-reduced over the
        TP group in the activation dtype: _collective's rule), then the head's logits, `vocab_per_gpu` wide on each
        GPU, all-gathered over the TP group in the weight's dtype (tensor_model_parallel_all_gather: NCCL's ring,
        a step's latency per other GPU, (tp - 1) / tp of the gathered bytes over each link at the ring's bus
        bandwidth); each rank then copies out its own rows (dp_scatter, not counted). The launches and the engine's
        overhead of the two collectives are in the seconds."""
        gather = self._collective("tp_allreduce", 1, rows * self.model.hidden_size * self.a_bytes, self.tp,
                                  self.moe_ring_bw, self.moe_lat, False)
        logits = (self.tp - 1) * rows * vocab_per_gpu * self.hp_bytes  # every other GPU's slice of every row
        all_gather_s = (self._ring_s(logits, self.tp - 1) + self.kernel_launch_s
                        + self.engine.collective_overhead_s)
        return gather.bytes + logits, gather.time_s + all_gather_s

    def _ring_s(self, moved: float, steps: int) -> float:
        """Seconds of a ring collective over the stage's GPUs: a link latency per step, `moved` bytes (what each GPU's
        link carries) at the ring's bus bandwidth (across nodes, its NICs: ring_bandwidth)."""
        rate = self.moe_ring_bw * self.eff.link_efficiency * self.engine.collective_efficiency
        return steps * self.moe_lat + moved / rate

    def allreduce_s(self, nbytes: float) -> float:
        """Time of one all-reduce of `nbytes` over the attention TP group, by _collective()'s rule."""
        return self._collective("tp_allreduce", 1, nbytes, self.layout.attention_tp, self.tp_bw, self.tp_lat,
                                False).time_s

    def _reductions(self, T: float, L: int, eager: bool, all_tokens: int, extend: bool) -> list[OperatorCost]:
        """Communication of a stage's layers: the all-reduce after attention (over the attention TP group) and
        after each MLP (dense layers: the attention TP group; MoE layers: the whole stage), or for MoE layers
        with attention DP beside EP the exchange the engine runs: an all-to-all dispatch of each token to its experts'
        GPUs and a combine back (_all_to_all), or every rank's tokens gathered and the outputs reduce-scattered back
        (_gather), whose partial sums an attention-TP group then all-reduces (each of its GPUs held other experts)."""
        h, ab, layout = self.model.hidden_size, self.a_bytes, self.layout
        if layout.attention_dp == 1 and not layout.dispatches:  # the plain tensor-parallel stage
            if self.tp == 1:
                return []
            dense_layers, moe_layers = self.mlp_layers(L)  # after the mixer, and after each MLP
            return [self._collective("tp_allreduce", self._mixer_reductions(L) + self._own_dense_reductions(
                dense_layers) + moe_layers, T * h * ab, self.tp, self.tp_bw, self.tp_lat, eager)]
        ops: list[OperatorCost] = []
        dense_layers, moe_layers = self.mlp_layers(L)
        gathers = bool(moe_layers) and layout.dispatches and self._gathers_tokens()
        # after attention and each dense MLP (and each gathered MoE layer's reduce-scatter)
        attention_tp_reductions = self._mixer_reductions(L) + self._own_dense_reductions(dense_layers)
        attention_tp_reductions += moe_layers if gathers else 0
        if layout.attention_tp > 1:
            ops.append(self._collective("tp_allreduce", attention_tp_reductions, T * h * ab, layout.attention_tp,
                                        self.tp_bw, self.tp_lat, eager))
        if moe_layers and layout.dispatches:
            moved_bytes, network_s = self._gather(all_tokens) if gathers else self._all_to_all(T, extend)
            ops.append(self._op("moe_gather" if gathers else "moe_all_to_all", moe_layers, 0.0, moved_bytes, 0.0,
                                network_s, eager, self.engine.collective_overhead_s))
        elif moe_layers and self.tp > 1:  # every rank's tokens gathered, the outputs reduced and scattered back
            ops.append(self._collective("tp_allreduce", moe_layers, all_tokens * h * ab, self.tp, self.moe_ring_bw,
                                        self.moe_lat, eager))
        return ops

    def _mixer_reductions(self, L: int) -> int:
        """All-reduces after the token mixers of a stage's `L` layers: one each but in its attention-free layers (the
        stack's share of them)."""
        return L - round(L * self.model.attention_free_share)

    def _own_dense_reductions(self, dense_layers: int) -> int:
        """All-reduces of the dense MLPs' own: none where a layer sums its attention's and MLP's outputs before one
        (ModelSpec.parallel_block_reduce, Falcon), else one each."""
        return 0 if self.model.parallel_block_reduce else dense_layers

    def _gathers_tokens(self) -> bool:
        """Whether the engine brings a MoE layer's tokens to their experts by an all-gather and takes their outputs
        back by a reduce-scatter (EngineProfile.moe_dispatch gather) rather than by an all-to-all. TensorRT-LLM's rule
        (all_to_all_on_mnnvl, its MoE modules' select_alltoall_method_type): no all-to-all where the EP group is no
        larger than top-k, MNNVL's where the GPUs share a multi-node NVLink domain (one larger than an 8-GPU board,
        as NVL72 racks are), else none (DeepEP only behind TRTLLM_CAN_USE_DEEP_EP): the gather."""
        rule = self.engine.moe_dispatch
        if rule == "all_to_all_on_mnnvl":
            ic = self.hw.interconnect
            return not (self.layout.ep > self.model.experts_per_token and BOARD_GPUS < ic.gpus_per_node
                        and self.tp <= ic.gpus_per_node)
        return rule == "gather"

    def _dispatch_bytes(self) -> float:
        """Bytes per hidden element a token's dispatch carries: what the engine's profile sends for the model's scheme
        (EngineProfile.moe_dispatch_bytes), else DeepEP's rule: FP8 with one FP32 scale per 128 channels when the
        GEMMs run FP8, else the activation dtype."""
        dispatch_bytes = self.engine.moe_dispatch_bytes.get(self.quant.name)
        if dispatch_bytes is None:
            dispatch_bytes = 1.0 + 4.0 / 128 if self.quant.compute_dtype == "fp8" else self.a_bytes
        return dispatch_bytes

    def _gather(self, all_tokens: float) -> tuple[float, float]:
        """(bytes moved, seconds) of one MoE layer's exchange as SGLang's and vLLM's default attention-DP paths run it:
        every attention rank's tokens all-gathered onto every GPU before the experts (in the dispatch dtype), the
        experts' partial outputs reduce-scattered back to their ranks (BF16; NCCL all_gatherv / reduce_scatterv over
        the ranks), whatever the routing. Each a ring over the D ranks: every GPU's link carries (D - 1) / D of the
        `all_tokens` (the ranks' tokens together: with balanced ranks the others' (D - 1) T, as many bytes as the
        all-to-all's 7/8 x 8 copies a token at EP = attention DP = 8 with top-8, twice them with top-4 or over 16 ranks;
        one rank's lone prompt still crosses every link), a step's latency per other rank, the bytes at the ring's bus
        bandwidth (across nodes, its NICs: ring_bandwidth)."""
        h = self.model.expert_hidden_size  # a latent MoE gathers its latent
        ranks = self.layout.attention_dp
        moved = all_tokens * (ranks - 1) / ranks * h * (self._dispatch_bytes() + self.hp_bytes)
        return moved, self._ring_s(moved, 2 * (ranks - 1))  # the all-gather's ring, then the reduce-scatter's

    def _all_to_all(self, T: float, extend: bool) -> tuple[float, float]:
        """(bytes moved, seconds) of one MoE layer's dispatch and combine for this GPU's `T` tokens, DeepEP-style:
        the dispatch in FP8 with one FP32 scale per 128 channels when the GEMMs run FP8 (else the activation
        dtype; or in what the engine's profile sends for the model's scheme, EngineProfile.moe_dispatch_bytes), the
        combine in BF16. Inside one NVLink domain every (token, expert) copy held on another GPU moves over NVLink
        in a decode batch (the low-latency kernels), a batch with prompt tokens once per other GPU holding one of
        its experts where the exchange is DeepEP's (moe_dispatch all_to_all: the normal kernels' intranode dispatch;
        SGLang's deepep "auto" mode picks them for extend batches; TensorRT-LLM's MNNVL all-to-all, whose prefill
        packing was not read, keeps a copy per expert). Across nodes (the EP group larger than a node, packed
        gpus_per_node a node), as DeepEP's two kernel families do (deepseek-ai/DeepEP README): a batch with prompt tokens (SGLang's deepep
        "auto" mode picks the normal kernels for extend batches) sends each token once over RDMA to every other
        node holding one of its experts, and forwards it there over NVLink, RDMA being the bottleneck ("Internode
        16 EP: 43 GB/s (RDMA)" on 400 Gb/s NICs); a decode batch (the low-latency kernels) sends each (token,
        expert) copy straight to its GPU, over RDMA to other nodes and over NVLink inside its own (DeepEP PR
        #173), the two at once. Checked, not fitted, against the README's low-latency table (H800, 128 tokens a
        rank, 7,168 hidden, top-8, FP8 dispatch, BF16 combine; tests/test_moe_layouts.py)."""
        m, layout, ic = self.model, self.layout, self.hw.interconnect
        k, ep, h = m.experts_per_token, layout.ep, m.expert_hidden_size  # a latent MoE moves its latent
        per_token_bytes = h * (self._dispatch_bytes() + self.hp_bytes)  # dispatched, then combined back
        scale = self.eff.link_efficiency * self.engine.collective_efficiency
        if ep <= ic.gpus_per_node:
            if extend and layout.moe_tp == 1 and self.engine.moe_dispatch == "all_to_all":
                # the normal kernels send a token once to each other rank holding one of its experts (intranode
                # dispatch by is_token_in_rank; the combine sends back each rank's sum of its experts' outputs):
                # as across nodes below
                copies = T * self._other_ranks_per_token(ep)
            else:
                # each (token, expert) copy reaches every GPU of the expert's moe_tp group (each holds a slice of its
                # weights): the moe_tp - 1 others of this GPU's own group for the 1 / ep of its experts there, all
                # moe_tp of another group's for the rest; moe_tp 1: the (ep - 1) / ep copies that leave the GPU
                copies = T * k * (layout.moe_tp - 1.0 / ep)
            return copies * per_token_bytes, 2 * self.moe_lat + copies * per_token_bytes / (self.moe_bw * scale)
        nic_rate = ic.inter_node_bandwidth_bytes_per_s * scale
        nvlink_rate = ic.group_bandwidth(ic.gpus_per_node) * scale
        local, nodes = ic.gpus_per_node, math.ceil(ep / ic.gpus_per_node)
        if extend:  # normal kernels: once per other node the token's experts are on (group-limited routing)
            rdma_tokens = T * self._other_ranks_per_token(nodes)
            moved = rdma_tokens * per_token_bytes
            return moved, 2 * ic.inter_node_latency_s + moved / nic_rate
        rdma_copies = T * k * (ep - local) / ep
        nvlink_copies = T * k * (local - 1) / ep
        network_s = (2 * ic.inter_node_latency_s
                     + max(rdma_copies / nic_rate, nvlink_copies / nvlink_rate) * per_token_bytes)
        return (rdma_copies + nvlink_copies) * per_token_bytes, network_s

    def _other_ranks_per_token(self, ranks: int) -> float:
        """Expected ranks (GPUs, or nodes across them) other than its own a token's routed experts sit on, the
        experts split evenly and in order over `ranks`, under the model's group-limited routing where it has one
        (ModelSpec n_group / topk_group: perf/group_routing.py other_ranks_per_token)."""
        m = self.model
        return other_ranks_per_token(ranks, m.experts_per_token, m.num_experts, m.n_group, m.topk_group)


def link(ic, ranks: int) -> tuple[float, float]:
    """Bandwidth and latency of the link a group of `ranks` GPUs communicates over: NVLink inside a node (on a mesh,
    a GPU's links to the group's other members: Interconnect.group_bandwidth), each GPU's own NIC
    (inter_node_bandwidth_bytes_per_s is per GPU) across nodes."""
    if ranks <= ic.gpus_per_node:
        return ic.group_bandwidth(ranks), ic.intra_node_latency_s
    return ic.inter_node_bandwidth_bytes_per_s, ic.inter_node_latency_s


def peer_link(ic, ranks: int) -> tuple[float, float]:
    """Bandwidth and latency of one GPU's point-to-point hop to a GPU of a group spanning `ranks` GPUs (a pipeline
    stage's activations): one link on a mesh, the switch's whole rate, or the NIC across nodes."""
    if ranks <= ic.gpus_per_node:
        return ic.peer_bandwidth, ic.intra_node_latency_s
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
    return min(ic.group_bandwidth(ic.gpus_per_node), bw * fewest)
