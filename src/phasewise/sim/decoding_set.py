"""An instance's decoding set (a mixin of sim/instance.py's Instance, whose state it reads): requests joining and
leaving it, the sums a decode step is costed by (context tokens grow by the tokens accepted per step, so the whole
set's context at step d is one running sum plus seqs x accepted x d), when each request finishes (speculative
steps accept a fractional number of tokens), and how long a run of pure-decode iterations may last before a
finish or the KV blocks would overflow."""

from __future__ import annotations

import heapq
import math

import numpy as np

from phasewise.perf import BatchShape
from phasewise.perf.batch import attention_pairs, windowed_keys, windowed_pairs
from phasewise.sim.request import SimRequest

MAX_RUN = 4096  # decode iterations costed in one call at most
_FIRST_STEP = np.zeros(1)


def _capped_sum(short: list[float], seqs: int, window: float) -> float:
    """windowed_keys at its first step (grown 0) in plain Python, bit for bit: `short` the keys under the window in
    ascending order (its prefix sum's), the other of the `seqs` sequences reading the window whole."""
    total = 0.0
    for k in short:
        total += k
    return total + (seqs - len(short)) * float(window)


class DecodingSet:
    __slots__ = ()

    def _decode_shape(self) -> BatchShape:
        """The decoding sequences at decode index self.decode_steps as one BatchShape part (a hybrid sliding-window
        stack's windowed layers: each context's own keys, decode_window)."""
        S, new = self.running.n, self.decode_new_tokens
        pairs, kv = self._decode_sums()
        capped = self._capped_keys_first() if self.capped_keys else None
        return BatchShape(decode_seqs=S, decode_tokens=S * new, decode_pairs=pairs, decode_kv_tokens=kv,
                          logit_tokens=S * new, decode_window=None if capped is None else (self.keys_cap, *capped))

    def _keys_cap(self) -> int:
        """The keys a decoding sequence reads at most in the layers that cap them: a hybrid stack's sliding window
        (an all-windowed stack's is self.window's own path); 0 for other stacks. Sparse attention's top-k (DSA) is
        left to the caps on the sums: counting each context moved GLM-5's TPOT on the Azure conversation trace by
        0.05-0.25 % at 20-27 % more simulation time (its indexer reads every key either way). Instance keeps it as
        `keys_cap` (the model and its window are fixed)."""
        model = self.model
        return model.sliding_window if model.sliding_window and not self.window and model.window_layer_share else 0

    def _capped_keys_series(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(attention pairs, KV tokens) of the capped layers (_keys_cap) over the decode steps `steps` from decode
        index self.decode_steps: each sequence reads min(context + new, cap) keys, summed (sorted contexts: the ones
        still under the cap at each step from a prefix sum). None for other stacks, and where every context already
        reaches the cap or stays under it to the last step: the cost model's caps on the sums are then exact."""
        window = self.capped_keys
        if not window or not self.running.n:
            return None
        new, accepted = self.decode_new_tokens, self.tokens_per_step
        keys = self.running.contexts(self.decode_steps, accepted) + new
        under = keys < window
        if not under.any():  # contexts only grow: clear until a shorter one joins (_join)
            self.capped_keys = 0
            return None
        if under.all() and keys.max() + accepted * float(steps[-1]) < window:
            return None  # every context under the cap to the last step: the sums are each one's keys
        grown = accepted * np.asarray(steps, dtype=np.float64)
        kv = windowed_keys(keys, window, grown)
        causal = self.model.causal
        # one causal new token: its pairs are its keys (windowed_pairs' own sum, not computed twice)
        return kv if new == 1 and causal else windowed_pairs(new, keys, causal, window, grown), kv

    def _capped_keys_first(self) -> tuple[float, float] | None:
        """_capped_keys_series(_FIRST_STEP) as floats, the same sums in the same order (bit for bit): in plain Python
        over `capped_seqs`, the sequences whose keys less new - 1 (a step's earliest new token's) may be under the
        cap, the others reading it whole. Every decode iteration asks (_decode_shape), and a few short contexts beside
        a long one (a 128-token window: 4 % of the Azure conversation prompts) are enough to keep asking: NumPy's
        cost per call, not the sums, was the time."""
        window, S = self.capped_keys, self.running.n
        if not window or not S:
            return None
        new, accepted, d = self.decode_new_tokens, self.tokens_per_step, self.decode_steps
        last, keys, gone = new - 1, [], None
        members = self.capped_seqs
        for req in members:
            k = req.join_context + accepted * (d - req.join_step) + new  # RunningSet.contexts' arithmetic, + new
            if k - last < window:
                keys.append(k)
            elif gone is None:
                gone = [req]
            else:
                gone.append(req)
        if gone:  # contexts only grow: they never read under the cap again
            members.difference_update(gone)
        short = sorted([k for k in keys if k < window])
        if not short:
            self.capped_keys = 0  # as _capped_keys_series: clear until a shorter one joins
            return None
        if len(short) == S:
            return None  # every context under the cap at this step: the sums are each one's keys
        kv = _capped_sum(short, S, window)
        if not self.model.causal:
            return new * kv, kv
        if new == 1:
            return kv, kv
        pairs = 0
        for t in range(new):  # windowed_pairs' sum over the new tokens, the earliest reading t keys fewer
            pairs = pairs + _capped_sum(sorted([k - t for k in keys if k - t < window]), S, window)
        return pairs, kv

    def _decode_sums(self) -> tuple[float, float]:
        """(attention pairs, KV tokens) of the decoding sequences at decode index self.decode_steps."""
        S, new = self.running.n, self.decode_new_tokens
        if self.window:
            keys = self.running.contexts(self.decode_steps, self.tokens_per_step) + new
            kv = float(np.minimum(keys, self.window).sum())
            return float(windowed_pairs(new, keys, self.model.causal, self.window, _FIRST_STEP)[0]), kv
        ctx_sum = self._decoding_contexts(self.decode_steps)
        # attention_pairs is linear in the cached tokens below any window: each sequence's at 0 plus new per one
        return new * ctx_sum + S * attention_pairs(new, 0, self.model.causal), ctx_sum + S * new

    def _decoding_contexts(self, step: float) -> float:
        """Cached tokens of the whole decoding set at decode step `step` (before it runs)."""
        return self.context_base_sum + self.running.n * self.tokens_per_step * step

    def _decoding_tokens(self, step: float) -> float:
        """KV tokens the decoding set holds once decode step `step` has written its new tokens."""
        return self._decoding_contexts(step) + self.running.n * self.decode_new_tokens

    def _steps_to_finish(self, req: SimRequest) -> int:
        remaining = req.output - req.generated
        if not self.spec:
            return remaining
        g, o = self.tokens_per_step, req.spec_steps
        base = math.floor(g * o)
        j = max(1, math.ceil((remaining + base) / g) - o)
        while math.floor(g * (o + j)) - base < remaining:
            j += 1
        while j > 1 and math.floor(g * (o + j - 1)) - base >= remaining:
            j -= 1
        return j

    def _join(self, req: SimRequest) -> None:
        d, blocks = self.decode_steps, req.kv_blocks
        req.join_step = d
        req.join_context = context = req.prompt + req.generated - 1
        self.running.add(req, blocks)
        self.decoding_blocks += blocks
        cap = self.keys_cap
        if cap and context + self.decode_new_tokens < cap:
            self.capped_keys = cap  # a context under the cap: _capped_keys_series counts it
        if cap and context + 1 < cap:  # its keys less new - 1 under it (_capped_keys_first)
            self.capped_seqs.add(req)
        # blocks held beyond what its first step needs (reserved ahead): counted in the KV bound
        req.kv_excess = excess = max(0, blocks - self.kv.blocks_for(self._kv_tokens(context + self.decode_new_tokens)))
        self.reserved_ahead_blocks += excess
        self.context_base_sum += context - self.tokens_per_step * d
        heapq.heappush(self.finish_heap, (d + self._steps_to_finish(req), req.id, req, req.epoch))

    def _leave(self, req: SimRequest, d: int) -> int:
        """Remove from the decoding set after decode step d-1; record its decode segment; returns blocks held."""
        join_step, context, accepted = req.join_step, req.join_context, self.tokens_per_step
        steps = d - join_step
        self.cluster.first_token_at_decode(req, self, join_step, steps)
        if steps:
            if self.spec:
                tokens = math.floor(accepted * (req.spec_steps + steps)) - math.floor(accepted * req.spec_steps)
                tokens = min(tokens, req.output - req.generated)
                req.segments.append((self, join_step, steps, req.spec_steps, tokens))
                req.spec_steps += steps
            else:
                tokens = steps
                req.segments.append((self, join_step, steps, 0, tokens))
            req.generated += tokens
        self.context_base_sum -= context - accepted * join_step
        self.reserved_ahead_blocks -= req.kv_excess
        tokens = context + accepted * (d - 1 - join_step) + self.decode_new_tokens  # written by its last step
        final = self.kv.blocks_for(math.ceil(self._kv_tokens(tokens)))
        held = self.running.remove(req)
        self.capped_seqs.discard(req)
        self.decoding_blocks -= held
        if final > held:
            self.kv.allocate(final - held)
            held = final
        return held

    def _join_ready(self) -> None:
        """Arrived requests take free seats (max_seqs); the rest wait, their KV already here."""
        while self.ready and self.running.n < self.max_seqs:
            req = self.ready.popleft()
            if math.isnan(req.scheduled_s):
                req.scheduled_s = self.loop.now
            self.cluster.first_token_pending(req, self)
            self._join(req)

    def _run_length(self) -> int:
        """Decode iterations until the next finish, bounded so the KV blocks never overflow."""
        n = MAX_RUN if not self.window else 256
        heap = self.finish_heap
        while heap and heap[0][3] != heap[0][2].epoch:
            heapq.heappop(heap)  # stale entry of a preempted request
        if heap:
            n = min(n, heap[0][0] - self.decode_steps)
        S, kv, accepted = self.running.n, self.kv, self.tokens_per_step
        if not S:  # only offloaded requests decode (attention offload): nothing grows here
            return n
        other = kv.used - self.decoding_blocks
        # Upper bound on blocks at step d+j: (sum of tokens)/bs + S (+ blocks reserved ahead). Largest safe j:
        tokens0 = self._kv_tokens_bound(self._decoding_tokens(self.decode_steps), S)
        room = (kv.capacity - other - S - self.reserved_ahead_blocks) * kv.block_size - tokens0
        safe = int(room // (S * accepted * self._kv_growth_per_token())) + 1 if room >= 0 else 0
        if safe >= n:
            return n
        # Near capacity: check the next step exactly; one step at a time is enough to make progress.
        self.make_room()
        return max(1, min(n, safe)) if self.running.n else 0
