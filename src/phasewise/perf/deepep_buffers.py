"""DeepEP's communication buffers: the GPU memory an engine holds for DeepEP's all-to-all beside the weights and the
KV cache, sized as DeepEP sizes them (deepseek-ai/DeepEP csrc/config.hpp: Config.get_nvl_buffer_size_hint and
LowLatencyLayout, read via the code search) for the engine's request (EngineProfile.deepep_buffers)."""

from __future__ import annotations

from phasewise.perf.parallel import ParallelLayout
from phasewise.specs.hardware import DeepEPBuffers, EngineProfile
from phasewise.specs.model import ModelSpec

NVL_PEERS = 8  # DeepEP's NUM_MAX_NVL_PEERS: ranks one NVLink buffer serves; beyond them its kernels go internode
# deep_ep Buffer.num_sms (20): the normal kernels' channels are half the SMs
NORMAL_CHANNELS = 10
# deep_ep/buffer.py get_dispatch_config: each config's num_max_nvl_chunked_recv_tokens by EP group size (8 and fewer
# ranks: 256; 16 to 64: 288; 128: 560; 144 and more: 720)
NVL_RECV_TOKENS = ((8, 256), (64, 288), (128, 560))
NVL_RECV_TOKENS_LARGEST = 720
TOP_K_SLOTS = 128  # kNumMaxTopK and kNumMaxScales: a token's slot holds 128 int64 expert ids, 128 float weights and
SCALE_SLOTS = 128  # 128 float scales besides its hidden bytes and its 8-byte source metadata


def nvl_buffer_hint_bytes(hidden: int, ranks: int) -> float:
    """DeepEP's NVLink buffer size hint for BF16 tokens of `hidden` channels over `ranks` EP ranks."""
    recv_tokens = next((tokens for most, tokens in NVL_RECV_TOKENS if ranks <= most), NVL_RECV_TOKENS_LARGEST)
    nvl_ranks, rdma_ranks = min(ranks, NVL_PEERS), max(ranks // NVL_PEERS, 1)
    slot_bytes = 2 * hidden + 8 + TOP_K_SLOTS * (8 + 4) + SCALE_SLOTS * 4
    return NORMAL_CHANNELS * nvl_ranks * ((2 * rdma_ranks + 3) * 4 + recv_tokens * slot_bytes)


def low_latency_buffer_bytes(hidden: int, experts: int, tokens_per_rank: int) -> float:
    """The low-latency kernels' RDMA buffer: odd and even send and receive buffers, each the larger of a dispatch
    (FP8 or BF16 token with its scales and a 16-byte header) and a combine message (BF16 token with per-128-channel
    bf16x2 min/max) for `tokens_per_rank` tokens to every expert; the signalling words beside them are not counted."""
    scales = hidden // 128
    dispatch_msg = 16 + max(2 * hidden, hidden + 4 * scales)
    combine_msg = 4 * scales + 2 * hidden
    send = max(tokens_per_rank * dispatch_msg, experts * tokens_per_rank * combine_msg)
    receive = experts * tokens_per_rank * max(dispatch_msg, combine_msg)
    return 2.0 * (send + receive)


def deepep_buffer_bytes(buffers: DeepEPBuffers, hidden: int, experts: int, ranks: int) -> float:
    """Bytes one GPU holds for DeepEP's buffers as `buffers` asks for them, over an EP group of `ranks`."""
    nvl = buffers.nvl_bytes if buffers.nvl_bytes is not None else nvl_buffer_hint_bytes(hidden, ranks)
    rdma = 0.0
    if buffers.low_latency_tokens_per_rank:
        rdma = low_latency_buffer_bytes(hidden, experts, buffers.low_latency_tokens_per_rank)
    if ranks > NVL_PEERS:
        rdma = max(rdma, buffers.internode_rdma_bytes)
    return nvl + rdma


def exchange_buffer_bytes(profile: EngineProfile, model: ModelSpec, layout: ParallelLayout | None) -> float:
    """What an instance's engine holds on each GPU for its MoE exchange: DeepEP's buffers where the profile runs
    DeepEP's all-to-all (attention DP beside EP on a MoE model), else nothing."""
    if profile.deepep_buffers is None or layout is None or not layout.dispatches or not model.num_experts:
        return 0.0
    return deepep_buffer_bytes(profile.deepep_buffers, model.hidden_size, model.num_experts, layout.ep)
