"""An instance's KV-block admission (a mixin of sim/instance.py's Instance, whose state it reads): seats and blocks for
a new prompt (with prefix caching, only its uncached blocks), the decoding set's growth bounded from above between
exact checks (and allocated as a sequence leaves), and recompute preemption when the next decode step's blocks do not
fit. The virtual engines of a pipeline-parallel replica (Instance.siblings) share one pool and one sequence cap, as
the engines' one scheduler and KV cache manager hold them: each counts the others' decoding sets' growth too."""

from __future__ import annotations

import math

import numpy as np

from phasewise.perf.window_kv import kv_growth_per_token, kv_token_equivalents, kv_tokens_bound
from phasewise.sim.request import SimRequest


class KvAdmission:
    __slots__ = ()

    def _seats(self) -> int:
        return self.max_seqs - self.running.n - len(self.prefilling)

    def _growth_bound(self) -> float:
        """Blocks the decoding set has grown into (through the steps in flight) beyond those allocated to it, at most."""
        S = self.running.n
        if not S:
            return 0.0
        # the iterations in flight will grow the contexts up to decode step d_planned
        tokens = self._kv_tokens_bound(self._decoding_tokens(self.planned_steps), S)
        grown = tokens / self.kv.block_size + S + self.reserved_ahead_blocks - self.decoding_blocks
        return grown if grown > 0.0 else 0.0

    def _free_blocks_bound(self) -> float:
        """Free blocks, counting the decoding set's growth since its last exact top-up by an upper bound (and, in a
        pipeline-parallel replica, its other virtual engines' decoding sets', which share the pool)."""
        free = self.kv.free - self._growth_bound()
        for other in self.siblings:
            free -= other._growth_bound()
        return free

    def _exact_growth(self, d: int) -> int:
        """Blocks the decoding set needs to run decode step d beyond those allocated to it (exact)."""
        S = self.running.n
        if not S:
            return 0
        held = self.running.blocks[:S]
        return int((np.maximum(self._exact_blocks(d), held) - held).sum())

    def _siblings_growth(self) -> int:
        """The other virtual engines' of a pipeline-parallel replica (one KV pool): their decoding sets' growth through
        the step each has in flight, or will run next (exact); 0 without pipeline parallelism."""
        return sum(other._exact_growth(other.planned_steps) for other in self.siblings)

    def can_reserve(self, blocks: int) -> bool:
        """Whether `blocks` can be allocated now without starving the decoding set's growth so far."""
        if blocks <= self._free_blocks_bound():
            return True
        # exact: the decoding set's blocks through the steps in flight, then what is left
        S = self.running.n
        others = self._siblings_growth() if self.siblings else 0
        if S:
            held = self.running.blocks[:S]
            need = int(np.maximum(self._exact_blocks(self.planned_steps), held).sum())
            return self.kv.used - self.decoding_blocks + need + others + blocks <= self.kv.capacity
        return blocks + others <= self.kv.free

    def try_admit(self, req: SimRequest, extra_blocks: int = 0) -> bool:
        """Take a seat and the KV blocks of `req`'s prompt (and, with reserve admission, of its whole
        output) if the seats and blocks allow, keeping `extra_blocks` free beyond them."""
        tokens = req.prefill_target
        if self.engine.kv_admission == "reserve":
            tokens += req.output - req.generated
        blocks = self.kv.blocks_for(self._kv_tokens(tokens))
        cache = self.kv.prefix
        if cache is not None and req.prefix is not None:  # prefix caching: its cached prefix is shared, not computed
            hit, held = cache.probe(req)
            if self._seats() <= 0 or not self.can_reserve(blocks - held + extra_blocks):
                return False
            req.prefilled = cache.acquire(req, blocks, hit, held)
            if req.cached_tokens < 0:  # the first admission's hit, as vLLM reports it (num_cached_tokens)
                req.cached_tokens = req.prefilled
            if req.kv_load_s and self.engine.host_kv_load == "async":  # waits for its copy, the others run
                start = max(self.loop.now, self.host_link_free_s)  # one copy at a time on the PCIe link
                req.kv_ready_s = self.host_link_free_s = start + req.kv_load_s
                req.kv_load_s = 0.0
                self.loop.at(req.kv_ready_s, self.poke)
            req.kv_blocks = blocks
            req.images_done = 0
            if math.isnan(req.scheduled_s):
                req.scheduled_s = self.loop.now
            return True
        if self._seats() <= 0 or not self.can_reserve(blocks + extra_blocks):
            return False
        if cache is not None and cache.ranked:  # attention DP: its blocks are its rank's
            cache.charge(req)
            cache.admit(req)
        self.kv.allocate(blocks)
        req.kv_blocks = blocks
        req.prefilled = 0
        if cache is not None and req.cached_tokens < 0:  # a prompt with nothing to share, where prefixes are cached
            req.cached_tokens = 0
            cache.count_unhashed(req)
        req.images_done = 0  # every attempt encodes its images again (an engine frees a preempted one's encoder cache)
        if math.isnan(req.scheduled_s):
            req.scheduled_s = self.loop.now
        return True

    def never_fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        """Whether a request this long can never run here: the KV blocks of its whole sequence, prompt + output (on a
        prefill instance, which hands it on after its first token, its prompt's), exceed the whole cache. An engine
        refuses it on arrival: vLLM does not start unless one request of max_model_len fits its KV cache
        (vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory), so a request beyond the cache is beyond
        max_model_len, refused before it queues."""
        tokens = prompt_tokens + (0 if self.role == "prefill" else output_tokens)
        return self.kv.blocks_for(self._kv_tokens(tokens)) > self.kv.capacity

    def _kv_tokens_bound(self, tokens: float, seqs: int) -> float:
        """An upper bound on the full-layer KV tokens of `seqs` sequences whose contexts sum to `tokens`
        (perf/window_kv.py kv_tokens_bound)."""
        return kv_tokens_bound(tokens, seqs, self.kv_terms) + seqs * self.kv_state

    def _kv_growth_per_token(self) -> float:
        """Full-layer KV tokens one more context token adds to a sequence, at most (perf/memory.py)."""
        return kv_growth_per_token(self.kv_terms)

    def _kv_tokens(self, tokens: float) -> float:
        """Full-layer KV tokens a sequence of `tokens` context holds (perf/window_kv.py kv_token_equivalents), with its
        recurrent state where the engine keeps it in the KV pool (kv_state)."""
        return kv_token_equivalents(tokens, self.kv_terms) + self.kv_state

    def _exact_blocks(self, d: int) -> np.ndarray:
        """Blocks each decoding sequence needs to run decode step d (its context plus the new tokens)."""
        tokens = self.running.contexts(d, self.tokens_per_step) + self.decode_new_tokens
        return np.ceil((kv_token_equivalents(tokens, self.kv_terms) + self.kv_state) / self.kv.block_size
                       ).astype(np.int64)

    def _check_growth(self, d: int) -> None:
        """Check mode: the blocks the decoding set grew into by step d fit beside every other block in use (exact).
        Verified, not allocated: an allocation evicts idle prefix-cache blocks (KVBlocks.allocate), so topping the
        growth up here changed what a run with prefix caching evicts and hits; check mode must not change results."""
        n = self.running.n
        if n:
            grow = self._exact_growth(d) + self._siblings_growth()
            if self.kv.used + grow > self.kv.capacity:
                raise AssertionError(f"{self.name}: the decoding set's blocks at step {d} exceed the KV cache "
                                     f"({self.kv.used} + {grow} > {self.kv.capacity})")

    def _preempt(self) -> None:
        """Recompute preemption (SGLang: retraction) of the policy's victim: it gives its blocks back and
        waits again (at the head of the queue or its tail, as the policy says) to re-prefill its prompt and the
        tokens it has generated."""
        req = self.running.reqs[self.scheduler.victim(self)]
        held = self._leave(req, self.decode_steps)
        cache = self.kv.prefix
        rank = cache.rank_of[req] if cache is not None and cache.ranked else -1
        self.kv.free_blocks(held, req)
        if rank >= 0 and self.role != "decode":  # attention DP: it waits again on its rank
            cache.requeue(req, rank)
        req.kv_blocks = 0
        req.prefilled = 0  # it re-prefills its prompt and generated tokens (admission sets a prefix cache's hit)
        req.epoch += 1
        req.preemptions += 1
        self.stats.preemptions += 1
        if self.role == "decode":  # no prefill here: recompute on a prefill instance
            self.outstanding -= req.prompt + req.output
            self.cluster.requeue(req)
        elif self.scheduler.requeue_at_head:
            self.waiting.appendleft(req)
        else:
            self.waiting.append(req)
        self.scheduler.on_preempt(self)

    def make_room(self) -> int:
        """Preempt until the next decode step's blocks fit; returns how many requests were preempted."""
        if self.running.n and self._free_blocks_bound() >= 0:
            return 0  # even the upper bound fits
        preempted = 0
        others = self._siblings_growth() if self.siblings else 0  # (a PP replica's other virtual engines)
        while self.running.n:
            seqs = self.running.n
            held = self.running.blocks[:seqs]
            if self.kv.used - int(held.sum()) + int(np.maximum(self._exact_blocks(self.decode_steps), held).sum()) \
                    + others <= self.kv.capacity:
                break
            self._preempt()
            preempted += 1
        return preempted
