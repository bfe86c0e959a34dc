"""Paged KV-cache accounting (vLLM-style blocks of `block_size` tokens) with conservation counters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class KVBlocks:
    capacity: int  # blocks
    block_size: int = 16
    used: int = 0
    allocated_total: int = 0
    freed_total: int = 0
    peak: int = 0
    # when a clock (the event loop) is set: the integral of blocks in use over simulated time since 0
    clock: object = None
    block_seconds: float = 0.0
    last_s: float = 0.0
    # prefix caching (sim/prefix_cache.py): shared blocks count once in `used`; its idle cached blocks count as free
    # and are evicted (least recently used first) when an allocation needs them. With attention DP a
    # RankedPrefixCache, a cache per rank: an allocation names its rank first (charge), a free its request
    prefix: object = None

    def blocks_for(self, tokens: int | float) -> int:
        return -(-int(tokens) // self.block_size)

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def allocate(self, n: int) -> None:
        if n < 0:
            raise ValueError("negative allocation")
        if self.clock is not None:
            self.advance()
        if self.prefix is not None:
            self.prefix.make_room(n)
        self.used += n
        self.allocated_total += n
        if self.used > self.capacity:
            raise RuntimeError(f"KV over capacity: {self.used} > {self.capacity} blocks")
        if self.used > self.peak:
            self.peak = self.used

    def free_blocks(self, n: int, req=None) -> None:
        """Free `n` blocks; with `req` (the request that held them) under prefix caching, its blocks other requests
        still share stay in use and its cached blocks become idle."""
        if req is not None and req.prefix_cache is not None and req.prefix_cache.kv is self:  # (its rank's, with
            n -= req.prefix_cache.release(req)  # attention DP)
        if n < 0 or n > self.used:
            raise RuntimeError(f"KV free of {n} blocks with {self.used} in use")
        if self.prefix is not None and self.prefix.ranked:  # attention DP: the blocks leave the request's rank
            self.prefix.freed(req, n)
        if self.clock is not None:
            self.advance()
        self.used -= n
        self.freed_total += n

    def advance(self) -> None:
        """Integrate the blocks in use up to the clock's time (block_seconds)."""
        now = self.clock.now
        self.block_seconds += self.used * (now - self.last_s)
        self.last_s = now
