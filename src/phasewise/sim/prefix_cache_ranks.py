"""Prefix caching under attention data parallelism: a PrefixCache per rank (sim/prefix_cache.py), each over its
share of the instance's KV blocks, and how each engine's attention-DP ranks get their requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasewise.errors import PhasewiseError
from phasewise.sim.kv_tiers import HostTier, host_tier
from phasewise.sim.prefix_cache import PrefixCache
from phasewise.workload.mooncake import MOONCAKE_BLOCK_TOKENS

if TYPE_CHECKING:
    from phasewise.sim.kv import KVBlocks
    from phasewise.sim.request import SimRequest


def _ranks_sum(name: str) -> property:
    """A figure of all ranks together: the sum of each rank's cache's `name`."""
    return property(lambda self: sum(getattr(cache, name) for cache in self.ranks))


# How an engine's attention-DP ranks get their requests (each rank has its own scheduler and its own prefix cache; none
# of these defaults looks at the caches):
#   round_robin  SGLang's data-parallel controller, --load-balance-method round_robin by default
#                (srt/managers/data_parallel_controller.py round_robin_scheduler; server_args.py; 0.4-0.5 versions read
#                via the code search): the next rank in turn, whatever it holds;
#   least_loaded vLLM's internal DP load balancing (v1/engine/core_client.py DPLBAsyncMPClient, v0.10-era and later
#                versions read via the code search, assumed for 0.14): the rank with the lowest 4 x waiting + running
#                requests, the lowest rank on a tie (the coordinator's counts, refreshed every 100 ms, plus the
#                requests the frontend has sent since: here the rank's own counts at once);
#   trtllm       TensorRT-LLM's attention DP (_pytorch/pyexecutor executor_request_queue.py
#                _schedule_attention_dp_requests, _balance_requests_across_ranks): among the ranks holding fewer
#                than the mean active requests (rounded up, at least the busiest's), the one whose active requests'
#                prompt tokens are fewest (then fewer requests, the lower rank); a request counts as active on its
#                rank from its assignment on.
# A request is assigned when it reaches the instance's scheduler (TensorRT-LLM assigns a request when its executor
# fetches it from the shared queue, which waits while every rank is full: not modelled); a recomputed one stays on
# its rank.
DP_DISPATCH = {"sglang": "round_robin", "trtllm": "trtllm"}  # by EngineConfig.scheduler; the others vLLM's


def dp_dispatch(scheduler: str) -> str:
    return DP_DISPATCH.get(scheduler, "least_loaded")


class _HostSum:
    """The ranks' host tiers' hits together (what the live twin's metrics read of an instance's cache)."""
    __slots__ = ("hosts",)

    def __init__(self, hosts: list[HostTier]) -> None:
        self.hosts = hosts

    @property
    def hit_keys(self) -> int:
        return sum(h.hit_keys for h in self.hosts)


class RankedPrefixCache:
    """An instance's prefix caches under attention data parallelism: one PrefixCache per rank, as each DP rank keeps
    its own (vLLM: a KV cache manager per engine core; SGLang: a radix tree per DP scheduler; TensorRT-LLM: a KV cache
    manager per rank), over its share of the instance's KV blocks (the memory model's pool is per rank, the
    instance's capacity their sum: a block belongs to one rank). Each request is assigned a rank when it reaches the
    scheduler (dp_dispatch: the engine's default policy); its lookups, insertions and evictions happen in that
    rank's cache, and the engine blocks it allocates count against that rank's share (`used`).

    Admission stays the instance's (sim/kv_admission.py: seats and blocks of all ranks together), so a rank's
    requests may hold more than its share while another rank has room: its idle cached blocks are then all
    evicted, and the instance's free + idle + in use <= capacity is kept by evicting idle blocks where a rank holds
    more than its share, the most over first (other ranks' too: their pool lent), least recently used first;
    `borrowed_blocks` counts those evictions, beyond those each rank's own share forces.

    Every allocation names its rank first (`charge`); every free passes the request (KVBlocks.free_blocks)."""
    ranked = True
    __slots__ = ("kv", "ranks", "shares", "used", "policy", "rank_of", "admitted", "waiting", "running",
                 "active_tokens", "next_rank", "charging", "borrowed_blocks", "key_tokens")

    def __init__(self, kv: KVBlocks, ranks: int, policy: str, hosts: list[HostTier | None],
                 key_tokens: int = MOONCAKE_BLOCK_TOKENS) -> None:
        self.kv = kv
        self.key_tokens = key_tokens
        base, extra = divmod(kv.capacity, ranks)
        self.shares = [base + (r < extra) for r in range(ranks)]  # engine blocks of each rank's pool
        self.ranks = [PrefixCache(kv, hosts[r], key_tokens=key_tokens, capacity=self.shares[r]) for r in range(ranks)]
        self.used = [0] * ranks  # engine blocks in use by each rank's requests (a shared block once)
        self.policy = policy
        self.rank_of: dict[SimRequest, int] = {}  # requests on a rank (assigned, not gone)
        self.admitted: set[SimRequest] = set()  # those of them holding blocks
        self.waiting = [0] * ranks  # a rank's requests not holding blocks (queued)
        self.running = [0] * ranks  # and holding them
        self.active_tokens = [0] * ranks  # prompt tokens of a rank's requests (TensorRT-LLM's balance)
        self.next_rank = 0  # round robin's counter
        self.charging = -1  # the rank the next allocation is for (-1: none named)
        self.borrowed_blocks = 0

    # --- ranks ------------------------------------------------------------------------------------------------------
    def assign(self, req: SimRequest) -> int:
        """The rank `req` goes to, by the engine's default dispatch (it reaches the scheduler now)."""
        r = self.rank_of.get(req)
        if r is not None:
            return r
        n = len(self.ranks)
        if self.policy == "round_robin":
            r = self.next_rank
            self.next_rank = (r + 1) % n
        elif self.policy == "least_loaded":
            waiting, running = self.waiting, self.running
            r = min(range(n), key=lambda i: (4 * waiting[i] + running[i], i))
        else:  # trtllm
            active = [w + a for w, a in zip(self.waiting, self.running)]
            expected = max(-(-(sum(active) + 1) // n), max(active))
            r = min((i for i in range(n) if active[i] < expected),
                    key=lambda i: (self.active_tokens[i], active[i], i))
        self._join(req, r)
        return r

    def _join(self, req: SimRequest, r: int) -> None:
        self.rank_of[req] = r
        self.waiting[r] += 1
        self.active_tokens[r] += req.prompt

    def drop(self, req: SimRequest) -> None:
        """`req` leaves the instance without holding blocks (cancelled or refused while queued)."""
        r = self.rank_of.pop(req, None)
        if r is None:
            return
        if req in self.admitted:
            raise RuntimeError(f"request {req.id} dropped from rank {r} while it holds KV blocks")
        self.waiting[r] -= 1
        self.active_tokens[r] -= req.prompt

    def count_unhashed(self, req: SimRequest) -> None:
        """`req`, without prefix hashes, is admitted: looked up in its rank's cache (PrefixCache.count_unhashed)."""
        self.ranks[self.assign(req)].count_unhashed(req)

    def charge(self, req: SimRequest) -> None:
        """The next allocation is `req`'s: on its rank (assigned now if it was not)."""
        self.charging = self.assign(req)

    def admit(self, req: SimRequest) -> None:
        """`req` takes its blocks (its admission's allocation is charged to its rank)."""
        r = self.rank_of[req]
        if req not in self.admitted:
            self.admitted.add(req)
            self.waiting[r] -= 1
            self.running[r] += 1

    def freed(self, req: SimRequest | None, n: int) -> None:
        """`req` gave back `n` engine blocks (those no other request holds): all it held; it leaves its rank (a
        preempted one is queued again on it: requeue)."""
        if req is None or req not in self.rank_of:
            raise RuntimeError("KV blocks freed under attention DP without the request that held them")
        r = self.rank_of.pop(req)
        self.used[r] -= n
        if req in self.admitted:
            self.admitted.discard(req)
            self.running[r] -= 1
        else:
            self.waiting[r] -= 1
        self.active_tokens[r] -= req.prompt

    def requeue(self, req: SimRequest, r: int) -> None:
        """A preempted request waits again on its rank (vLLM's engine core and SGLang's scheduler keep it)."""
        self._join(req, r)

    # --- the PrefixCache interface, on the request's rank -------------------------------------------------------------
    def keys(self, req: SimRequest) -> list[int]:
        return self.ranks[0].keys(req)

    def probe(self, req: SimRequest) -> tuple[int, int]:
        r = self.rank_of.get(req)
        if r is None:  # not on a rank yet (a router's look): the best any rank offers
            return max(c.probe(req) for c in self.ranks)
        return self.ranks[r].probe(req)

    def matched_blocks(self, req: SimRequest) -> int:
        """Leading prefix blocks cached on any rank (a router sees the instance: the union of its ranks' prefixes)."""
        return max(c.matched_blocks(req) for c in self.ranks)

    def acquire(self, req: SimRequest, blocks: int, hit: int, held_blocks: int) -> int:
        self.charge(req)
        self.admit(req)
        return self.ranks[self.charging].acquire(req, blocks, hit, held_blocks)

    def make_room(self, n: int) -> None:
        """Before `n` engine blocks are allocated to the rank charged: its least recently used idle blocks go until
        they fit in its share, then any rank's while the instance's pool is short. The blocks count as the rank's."""
        r, self.charging = self.charging, -1
        if r < 0:
            raise RuntimeError("KV blocks allocated under attention DP without naming the rank they are for")
        cache = self.ranks[r]
        per = cache.per_key
        if per and cache.idle:
            over = self.used[r] + n + len(cache.idle) * per - self.shares[r]
            if over > 0:
                cache.evict(min(-(-over // per), len(cache.idle)))
        kv = self.kv
        over = kv.used + n + self.idle_blocks - kv.capacity
        while over > 0:  # some rank's requests hold more than its share: idle blocks go where a rank keeps more than
            # its share (the most over first; this allocation counted), least recently used first
            fullest, excess = None, 0
            for i, c in enumerate(self.ranks):
                if c.idle:
                    e = self.used[i] + (n if i == r else 0) + len(c.idle) * c.per_key - self.shares[i]
                    if fullest is None or e > excess:
                        fullest, excess = c, e
            if fullest is None:
                break
            per = fullest.per_key
            keys = min(-(-over // per), len(fullest.idle))
            if excess > 0:
                keys = min(keys, -(-excess // per))
            fullest.evict(keys)
            self.borrowed_blocks += keys * per
            over -= keys * per
        self.used[r] += n

    def write_wait_s(self) -> float:
        """The writes to host memory an iteration waits for (each rank's own, the ranks in step: the longest), taken."""
        wait = 0.0
        for c in self.ranks:
            if c.host is not None and c.host.pending_write_s:
                wait = max(wait, c.host.pending_write_s)
                c.host.pending_write_s = 0.0
        return wait

    # --- the figures, all ranks together ----------------------------------------------------------------------------
    idle_blocks = _ranks_sum("idle_blocks")
    requests = _ranks_sum("requests")
    recompute_lookups = _ranks_sum("recompute_lookups")
    prompt_tokens = _ranks_sum("prompt_tokens")
    hit_tokens = _ranks_sum("hit_tokens")
    store_hit_keys = _ranks_sum("store_hit_keys")
    @property
    def host(self) -> _HostSum | None:
        hosts = [c.host for c in self.ranks if c.host is not None]
        return _HostSum(hosts) if hosts else None

    @property
    def store(self) -> HostTier | None:
        return self.ranks[0].store


def rank_host_tier(inst, ranks: int) -> HostTier | None:
    """One attention rank's host-memory tier: its share of the instance's (host_tier sizes the whole instance's in
    blocks held on one rank's GPUs)."""
    tier = host_tier(inst)
    if tier is None:
        return None
    tier.capacity_keys //= ranks
    if tier.capacity_keys < 1:
        raise PhasewiseError(f"--host-kv-cache-gb {inst.group.host_kv_cache_bytes / 1e9:g}: each of the {ranks} "
                             f"attention-DP ranks keeps its own host tier, and its share holds no "
                             f"{inst.cluster.prefix_block_tokens}-token prefix block; give at least {ranks}x more")
    return tier
