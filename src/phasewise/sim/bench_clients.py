"""A benchmark client at fixed concurrency, in simulated time (ENGINES.md "How benchmark clients send").

Warm-up requests first: the readiness requests one at a time, each alone (vLLM's test run), then the others all at
once (`warmup_at_once`: SGLang's, with no semaphore) or C at a time behind the client's semaphore (vLLM's
--num-warmups, InferenceX's); `warmup_sleep_s` after the last of them has finished, every measured request is
released behind the semaphore: C in flight, the next one sent when one finishes (+ `think_s`). Measured requests are
ids 0..measured-1 in release order, warm-up requests come after them. The warm-up requests are copies of measured
request 0 (its lengths); where the client sends its very prompt (`warmup_copies_prompt`: vLLM's, SGLang's and
InferenceX's) and an instance caches prefixes, they and request 0 carry one prefix identity (the
prefix hashes a Mooncake trace's requests carry, sim/prefix_cache.py), so later copies hit what earlier ones
cached, block-aligned and at most prompt - 1 tokens; no other request shares anything. The warm-up requests' gaps
are kept apart (to be taken out of the run's TBT histogram); the steady-state requests' (neither the first nor the
last wave of C) are collected on their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from phasewise.sim.cluster import Cluster
from phasewise.sim.events import EventLoop
from phasewise.sim.metrics import TbtHistogram
from phasewise.sim.request import SimRequest
from phasewise.workload import ClosedLoop


@dataclass(slots=True)
class BenchmarkClients:
    loop: EventLoop
    cluster: Cluster
    workload: ClosedLoop
    new_request: Callable[[int, float], SimRequest]  # request i, created when it is sent
    arrival_s: np.ndarray  # written as each request is sent
    warm_tbt: TbtHistogram = field(default_factory=TbtHistogram)
    steady_tbt: TbtHistogram | None = None
    measured_ids: Iterator[int] = iter(())
    warmup_ids: Iterator[int] = iter(())
    warmup_left: int = 0  # warm-up requests not finished yet
    readiness_left: int = 0  # readiness requests not sent yet
    shares_prefix: bool = False  # whether request 0 and its copies carry a prefix identity (a cache is on)

    def __post_init__(self) -> None:
        measured, warmup = self.workload.requests, self.workload.warmup_requests
        self.measured_ids, self.warmup_ids = iter(range(measured)), iter(range(measured, measured + warmup))
        self.warmup_left, self.readiness_left = warmup, self.workload.readiness_requests
        if measured - self.workload.concurrency > self.workload.concurrency:
            self.steady_tbt = TbtHistogram()

    def start(self) -> None:
        """The first wave at time 0: the warm-up requests', or the measured ones' where there is no warm-up."""
        self.cluster.on_finish = self.finished
        # with prefix caching off everywhere the copies carry nothing: the run is the one it was
        self.shares_prefix = self.workload.warmup_copies_prompt and self.workload.warmup_requests > 0 and any(
            inst.kv.prefix is not None for inst in self.cluster.instances)
        if self.workload.warmup_requests:
            self._warm_up()
        else:
            for client in range(min(self.workload.concurrency, self.workload.requests)):
                self.loop.at(0.0, self._issue, client)

    def _warm_up(self) -> None:
        """The next readiness request, alone; once none is left, the other warm-up requests: all of them at once
        (warmup_at_once), else the first C, each next one sent as one finishes (finished)."""
        if self.readiness_left:
            self.readiness_left -= 1
            self.loop.at(self.loop.now, self._send, next(self.warmup_ids), 0)
            return
        left = self.warmup_left
        for client in range(left if self.workload.warmup_at_once else min(self.workload.concurrency, left)):
            self.loop.at(self.loop.now, self._send, next(self.warmup_ids), client)

    def _send(self, i: int, client: int) -> None:
        req = self.new_request(i, self.loop.now)
        req.client = client
        if self.shares_prefix and (i == 0 or i >= self.workload.requests):  # request 0 and its copies: one prompt
            key_tokens = self.cluster.prefix_block_tokens
            req.prefix = tuple(range(-(-req.prompt // key_tokens)))  # one id per prefix block, as hash_ids
        self.arrival_s[i] = self.loop.now
        self.cluster.arrive(req)

    def _issue(self, client: int) -> None:  # the client's next measured request, if any is left
        i = next(self.measured_ids, None)
        if i is not None:
            self._send(i, client)

    def _release(self) -> None:
        for client in range(min(self.workload.concurrency, self.workload.requests)):
            self.loop.at(self.loop.now, self._issue, client)

    def finished(self, req: SimRequest) -> None:
        completed = req.finish_s == req.finish_s  # not rejected
        measured, concurrency = self.workload.requests, self.workload.concurrency
        if req.id >= measured:  # a warm-up request
            if completed:
                self.warm_tbt.add(np.diff(self.cluster.token_times(req)))
            self.warmup_left -= 1
            if self.warmup_left == 0:
                self.loop.at(self.loop.now + self.workload.warmup_sleep_s, self._release)
            elif req.id - measured < self.workload.readiness_requests:  # a readiness request: the next step
                self._warm_up()
            else:
                j = next(self.warmup_ids, None)
                if j is not None:
                    self.loop.at(self.loop.now, self._send, j, req.client)
            return
        if self.steady_tbt is not None and completed and concurrency <= req.id < measured - concurrency:
            self.steady_tbt.add(np.diff(self.cluster.token_times(req)))
        self.loop.at(self.loop.now + self.workload.think_s, self._issue, req.client)
