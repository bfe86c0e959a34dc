"""KV-aware: the instance with the most free KV blocks (ties: the least outstanding work). Blind to the prompts
routed to an instance and not yet admitted, which hold no blocks: a burst goes to one instance (on the Mooncake
conversation trace, 4 x H100: mean TTFT 2.5x least-outstanding's; benchmarks/bench_prefix_cache.py). dynamo_kv
counts them."""

from __future__ import annotations

from phasewise.sim.routers.base import Router


class KvAwareRouter(Router):
    __slots__ = ()

    def choose(self):
        return max(self.instances, key=lambda i: (i.kv.free, -i.outstanding))
