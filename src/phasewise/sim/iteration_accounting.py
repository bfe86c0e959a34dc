"""An instance's bookkeeping of the iterations it runs (a mixin of sim/instance.py's Instance, whose state it reads):
busy time, FLOPs and bytes, energy between idle power and TDP by utilization (a chip built from parts: its static
power and its work's energy per FLOP and per byte, specs/chip_cost.py work_energy), and the KV blocks held over
time. The virtual engines of a pipeline-parallel replica share one KV pool (Instance.siblings): each accounts the
replica's pool (every virtual engine's decoding set) over the time none of them had accounted yet, and adds it to
every one's figures, so each shows its replica's pool (kv_mean_use, kv_peak_use), counted once over time. Both
figures are of one per-iteration quantity, whole blocks held (held_blocks): the mean is at most the peak."""

from __future__ import annotations


class IterationAccounting:
    __slots__ = ()

    @property
    def first_of_pool(self) -> bool:
        """Whether it is the first instance of those sharing its KV pool (a PP replica's virtual engines share one;
        any other instance has its own): a sum over instances counts each pool once by counting it at its first."""
        return all(other.index > self.index for other in self.siblings)

    def work_energy_j(self, flops: float, nbytes: float, duration_s: float | None = None) -> float:
        """The energy above idle of work on this instance's GPUs (FLOPs and bytes, all of them together): a chip built
        from parts, each FLOP's and byte's energy; else the power above idle for the time the work needs at the
        chip's peak, max(compute, memory) time, at most `duration_s` (utilization x duration, capped at 1)."""
        if self._work_joules is not None:
            return flops * self._work_joules[0] + nbytes * self._work_joules[1]
        compute, memory = flops * self._inv_peak, nbytes * self._inv_bw
        work_s = compute if compute >= memory else memory
        if duration_s is not None and work_s > duration_s:
            work_s = duration_s
        return self._dynamic_power * work_s

    def _account(self, it: tuple, t: float, seqs: int, prefill_tokens: int, decode_tokens: float,
                 iterations: int, start: float) -> None:
        """Busy time, work, energy (power between idle and TDP by utilization) and KV use of iterations."""
        st = self.stats
        # PP: how far the replica's pool is accounted already (its virtual engines' iterations start in order)
        pool_mark = max(st.end_s, *(other.stats.end_s for other in self.siblings)) if self.siblings else 0.0
        scale = self._work_scale * iterations
        flops, nbytes = it[-2] * scale, it[-1] * scale
        if t > 0:
            compute, memory = flops * self._inv_peak, nbytes * self._inv_bw
            util = (compute if compute >= memory else memory) / t  # max(compute, memory) / t
            if self.cluster.record_timeline:
                st.timeline.append((start, t, min(util, 1.0), seqs, prefill_tokens, decode_tokens))
            st.energy_j += self._idle_power * t + self.work_energy_j(flops, nbytes, t)
        st.busy_s += t
        if start + t > st.end_s:
            st.end_s = start + t
        st.iterations += iterations
        if decode_tokens:
            st.decode_iterations += iterations
            st.decode_tokens += int(decode_tokens)
        st.prefill_tokens += prefill_tokens
        st.batch_seqs_sum += seqs * iterations
        st.flops += flops
        st.bytes += nbytes
        if self.siblings:
            self._account_pool(start + t - (start if start > pool_mark else pool_mark))
            return
        S, kv = self.running.n, self.kv
        used = kv.used - self.decoding_blocks
        if S:  # the decoding set's tokens in blocks (a hybrid's windows bounded), plus half a block of slack each
            used += self._kv_tokens_bound(self._decoding_tokens(self.decode_steps), S) / kv.block_size + S / 2
        held = held_blocks(used, kv.capacity)
        st.kv_token_seconds += held * t
        if held > st.kv_peak_blocks:
            st.kv_peak_blocks = held

    def _account_pool(self, new_s: float) -> None:
        """PP: the replica's one KV pool held over `new_s` seconds no virtual engine of it had accounted: its blocks in
        use, every virtual engine's decoding set bounded as _account bounds one's, added to each one's figures."""
        engines = (self, *self.siblings)
        used = float(self.kv.used)
        for engine in engines:
            S = engine.running.n
            used -= engine.decoding_blocks
            if S:
                used += engine._kv_tokens_bound(engine._decoding_tokens(engine.decode_steps), S) / self.kv.block_size \
                    + S / 2
        held = held_blocks(used, self.kv.capacity)
        for engine in engines:
            st = engine.stats
            if new_s > 0:
                st.kv_token_seconds += held * new_s
            if held > st.kv_peak_blocks:
                st.kv_peak_blocks = held


def held_blocks(used: float, capacity: int) -> int:
    """The whole KV blocks a pool holds, from `used`, the blocks its allocator counts with each decoding set's
    estimated (its tokens in blocks plus half a block each, the mean of a last block's part left empty): rounded to
    the nearest block, at most the pool's `capacity`. The one figure both the mean use (its integral over time)
    and the peak use take, so the mean never passes the peak."""
    return min(int(used + 0.5), capacity)
