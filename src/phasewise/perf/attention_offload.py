"""A decode step whose attention for some of its requests runs on another GPU (Adrenaline's attention offload).

The decode instance runs every dense operator (QKV, O projection, MLP, LM head) for all M + N requests and the
attention of its own M; the attention of the N offloaded requests, whose KV lives on a prefill GPU (the host),
runs there. Per layer the decode GPU sends each offloaded token's q and new k, v and receives its attention
output (two messages over the link). The exchange overlaps with the decode GPU's own attention and dense
layers, and the step waits for the slower side (PAPERS.md section 8, constraint (ii)):

    step_s = max(decode side: the decode iteration of M + N requests with the attention of the M only,
                 host side:   layers x (offloaded attention at the host's SM share + exchange))

The host runs the offloaded attention on an SM share (CUDA MPS): its compute time is that of the host's decode
kernel divided by the share; its KV reads run at the host's attention bandwidth (the compute-bound prefill
next to it leaves HBM bandwidth mostly free: assumed). Both sides use AttentionCost (the one attention formula)
and the decode side is CostModel.decode_line, so every offloaded step is costed as decode runs are: linear in
the attention pairs and KV tokens of each side, a series in one vectorized call.
Simplification: the embedding, LM head and host overhead of a step count on the decode side (the host side has
only the layers), which errs towards the host side by that share of a step (~2 % for a 7B model).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.cost import CostModel

# The smallest SM share the offloaded attention gets. Assumed: MPS's active-thread percentage is set in
# coarse steps, and below ~10 % of the SMs a decode-attention kernel no longer saturates HBM bandwidth.
MIN_SM_SHARE = 0.1
# The largest: assumed, so that the prefill keeps at least half of its SMs (a host whose attention would need
# more is not worth sharing; the controller's TTFT and load limits then refuse to offload).
MAX_SM_SHARE = 0.5


class OffloadedStep(NamedTuple):
    """One offloaded decode step: its latency, each side's time, and the work on each GPU (per GPU)."""

    latency_s: float
    decode_side_s: float
    host_side_s: float
    decode_flops: float
    decode_bytes: float
    host_flops: float
    host_bytes: float


class HostAttentionLine(NamedTuple):
    """The offloaded attention of `seqs` sequences over all layers on the host, linear in pairs and KV tokens:
    host_side_s = max(pairs x s_per_pair, kv_tokens x s_per_kv_token + fixed_s) (exchange included in fixed_s),
    flops = pairs x flops_per_pair, bytes = kv_tokens x bytes_per_kv_token + bytes."""

    s_per_pair: float
    s_per_kv_token: float
    fixed_s: float
    flops_per_pair: float
    bytes_per_kv_token: float
    bytes: float


class AttentionOffloadCost:
    """Cost of offloaded decode steps from a decode group's CostModel, the host's, the SM share and the link."""

    __slots__ = ("_lines", "decode", "exchange_bytes_per_token", "host", "layers", "link_bandwidth_bytes_per_s",
                 "link_latency_s", "sm_share")

    def __init__(self, decode: CostModel, host: CostModel, sm_share: float | None, link_bandwidth_bytes_per_s: float,
                 link_latency_s: float) -> None:
        """`sm_share` None: the share that keeps the host's decode attention bandwidth-bound (at least
        MIN_SM_SHARE). The link's bandwidth is per direction (q/k/v go one way, outputs the other)."""
        if decode.model.latent_attention:
            raise PhasewiseError(f"attention offload does not model latent attention yet ({decode.model.name})")
        if decode.model.linear_attention_layers:
            raise PhasewiseError(f"attention offload does not model linear-attention layers yet ({decode.model.name})")
        if not decode.model.uniform_layers:
            raise PhasewiseError("attention offload does not model layers that are not all alike yet (attention heads "
                                 "of more than one width, KV-shared layers, per-layer embeddings: "
                                 f"{decode.model.name})")
        self.decode, self.host = decode, host
        self.layers = decode.layers_per_stage
        self.link_bandwidth_bytes_per_s, self.link_latency_s = link_bandwidth_bytes_per_s, link_latency_s
        attention = decode.attention
        head_dim = decode.model.head_dim
        # per offloaded token and layer: q and the new k, v sent; the attention output received
        self.exchange_bytes_per_token = (decode.heads * head_dim * decode.a_bytes + attention.kv_bytes_per_token,
                                         decode.heads * head_dim * decode.a_bytes)
        self.sm_share = bandwidth_bound_sm_share(host) if sm_share is None else sm_share
        self._lines: dict[int, HostAttentionLine] = {}

    def exchange_s(self, tokens: int) -> float:
        """One layer's q/k/v out and attention output back for `tokens` offloaded tokens: two messages, one
        after the other (the output exists only once the host's attention ran), each the link latency plus
        its bytes over the link."""
        if tokens <= 0:
            return 0.0
        send, receive = self.exchange_bytes_per_token
        return 2 * self.link_latency_s + tokens * (send + receive) / self.link_bandwidth_bytes_per_s

    def host_line(self, seqs: int) -> HostAttentionLine:
        """The host side of `seqs` offloaded one-token decode sequences (cached by seqs)."""
        line = self._lines.get(seqs)
        if line is None:
            per_pair, per_kv_token, fixed = self.host.attention.decode_linear(seqs, seqs)
            layers = self.layers
            line = HostAttentionLine(
                s_per_pair=layers * per_pair[2] / self.sm_share, s_per_kv_token=layers * per_kv_token[3],
                fixed_s=layers * (fixed[3] + self.exchange_s(seqs)), flops_per_pair=layers * per_pair[0],
                bytes_per_kv_token=layers * per_kv_token[1], bytes=layers * fixed[1])
            self._lines[seqs] = line
        return line

    def series(self, local_seqs: int, local_pairs: float, local_kv: float, host_seqs: int, host_pairs: float,
               host_kv: float, steps: np.ndarray, other_seqs: int = 0) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Latencies of consecutive offloaded decode steps (every context grows by one token a step) and
        (latency, flops, bytes) of the decode side's first step (what the decode instance accounts).
        `other_seqs`: requests of the batch offloaded to other hosts (dense work here, attention elsewhere)."""
        total = local_seqs + host_seqs + other_seqs
        line = self.decode.decode_line(total, total, total)
        latencies, first = self.decode.decode_line_series(line, local_pairs, local_kv, steps, local_seqs, local_seqs)
        if host_seqs:
            host = self.host_line(host_seqs)
            compute = steps * host_seqs
            compute += host_pairs
            compute *= host.s_per_pair
            memory = steps * host_seqs
            memory += host_kv
            memory *= host.s_per_kv_token
            memory += host.fixed_s
            np.maximum(compute, memory, out=memory)
            np.maximum(latencies, memory, out=latencies)
        return latencies, first

    def step(self, local_seqs: int, local_pairs: float, local_kv: float, host_seqs: int, host_pairs: float,
             host_kv: float, other_seqs: int = 0) -> OffloadedStep:
        """One offloaded step with each side's time and work (what the offload controller weighs)."""
        total = local_seqs + host_seqs + other_seqs
        line = self.decode.decode_line(total, total, total)
        _, (decode_s, decode_flops, decode_bytes) = self.decode.decode_line_series(
            line, local_pairs, local_kv, _FIRST, 0.0, 0.0)
        host_s = host_flops = host_bytes = 0.0
        if host_seqs:
            host = self.host_line(host_seqs)
            host_s = max(host_pairs * host.s_per_pair, host_kv * host.s_per_kv_token + host.fixed_s)
            host_flops = host_pairs * host.flops_per_pair
            host_bytes = host_kv * host.bytes_per_kv_token + host.bytes
        return OffloadedStep(max(decode_s, host_s), decode_s, host_s, decode_flops, decode_bytes, host_flops,
                             host_bytes)

    def host_work(self, host_seqs: int, host_pairs: float, host_kv: float, steps: int) -> tuple[float, float]:
        """(flops, bytes) on the host of `steps` consecutive steps from the given sums (every context grows by
        one token a step): exact sums of the linear series."""
        if not host_seqs or steps <= 0:
            return 0.0, 0.0
        host = self.host_line(host_seqs)
        growth = host_seqs * steps * (steps - 1) / 2  # sum over the steps of the tokens added to each sum
        pairs, kv = host_pairs * steps + growth, host_kv * steps + growth
        return pairs * host.flops_per_pair, kv * host.bytes_per_kv_token + host.bytes * steps

    def prefill_slowdown(self) -> float:
        """Factor on a prefill iteration's time while the host's SMs are shared with offloaded attention:
        the prefill keeps 1 - sm_share of the SMs (compute-bound, its time scales inversely)."""
        return 1.0 / (1.0 - self.sm_share)


_FIRST = np.zeros(1)


def bandwidth_bound_sm_share(host: CostModel) -> float:
    """The SM share at which the host's decode attention reads KV as fast as its bandwidth allows: the ratio of
    its compute time per (query, key) pair to its memory time per KV token (one query per KV token in decode),
    at least MIN_SM_SHARE and at most MAX_SM_SHARE."""
    per_pair, per_kv_token, _ = host.attention.decode_linear(1, 1)
    return min(max(per_pair[2] / per_kv_token[3], MIN_SM_SHARE), MAX_SM_SHARE)
