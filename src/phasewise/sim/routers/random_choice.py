"""Random: each request to an instance drawn uniformly, whatever its load (NVIDIA Dynamo's frontend
`--router-mode random`, beside its default round-robin and its KV router: docs/pages/components/frontend/
configuration.md "Routing strategy: round-robin, random, kv, direct"; its push router draws the worker with the
`rand` crate). Blind to load as round robin is, but without round robin's turn: in a closed loop whose requests
all take as long (a fixed-length benchmark) round robin's next turn falls on the instance whose seat just freed,
while a draw lands on a full instance as often as its share, and the request waits there for a seat while
another stands free. The draws come from a generator seeded with the instances' names and the run's --seed, so a
run repeats, another seed draws anew, and a disaggregated deployment's two routers (its prefill and its decode
instances) draw apart, as Dynamo's do. Seed 0 (the default) seeds with the names alone, as before seeds reached
the router."""

from __future__ import annotations

import random

from phasewise.sim.routers.base import Router


class RandomRouter(Router):
    __slots__ = ("draws",)

    def __init__(self, instances, seed: int = 0) -> None:
        super().__init__(instances)
        names = " ".join(str(getattr(i, "name", i)) for i in instances)
        self.draws = random.Random(f"{names} seed {seed}" if seed else names)  # str seeds: sha512

    def choose(self):
        # len() each time: an autoscaler adds and removes instances (sim/autoscaler.py)
        return self.instances[self.draws.randrange(len(self.instances))]
