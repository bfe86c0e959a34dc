"""An instance's bookkeeping of the iterations it runs (a mixin of sim/instance.py's Instance, whose state it reads):
busy time, FLOPs and bytes, energy between idle power and TDP by utilization (a chip built from parts: its static
power and its work's energy per FLOP and per byte, specs/chip_cost.py work_energy), and the KV blocks held over
time."""

from __future__ import annotations


class IterationAccounting:
    __slots__ = ()

    def _account(self, it: tuple, t: float, seqs: int, prefill_tokens: int, decode_tokens: float,
                 iterations: int, start: float) -> None:
        """Busy time, work, energy (power between idle and TDP by utilization) and KV use of iterations."""
        st = self.stats
        scale = self._work_scale * iterations
        flops, nbytes = it[-2] * scale, it[-1] * scale
        if t > 0:
            compute, memory = flops * self._inv_peak, nbytes * self._inv_bw
            util = (compute if compute >= memory else memory) / t  # max(compute, memory) / t
            if self.cluster.record_timeline:
                st.timeline.append((start, t, min(util, 1.0), seqs, prefill_tokens, decode_tokens))
            if self._work_joules is None:
                st.energy_j += (self._idle_power + self._dynamic_power * (util if util < 1.0 else 1.0)) * t
            else:  # a chip built from parts: its static power, and each FLOP's and byte's energy
                st.energy_j += self._idle_power * t + flops * self._work_joules[0] + nbytes * self._work_joules[1]
        st.busy_s += t
        st.iterations += iterations
        if decode_tokens:
            st.decode_iterations += iterations
            st.decode_tokens += int(decode_tokens)
        st.prefill_tokens += prefill_tokens
        st.batch_seqs_sum += seqs * iterations
        st.flops += flops
        st.bytes += nbytes
        S, kv = self.running.n, self.kv
        used = kv.used - self.decoding_blocks
        if S:  # the decoding set's tokens in blocks (a hybrid's windows bounded), plus half a block of slack each
            used += self._kv_tokens_bound(self._decoding_tokens(self.decode_steps), S) / kv.block_size + S / 2
        st.kv_token_seconds += used * t
        if used > st.kv_peak_blocks:
            st.kv_peak_blocks = min(int(used), kv.capacity)
