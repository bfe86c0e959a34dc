"""An instance's queue of prompts waiting to prefill: a deque that keeps the sum of its requests' prefill targets,
so a router reads the prompt tokens queued on an instance in constant time however long the queue grows under
overload (Dynamo's cost, sim/routers/dynamo_kv.py, reads every instance's at every arrival). A request's prefill
target (prompt + tokens generated before a preemption) does not change while it waits."""

from __future__ import annotations

from collections import deque


class PromptQueue(deque):
    __slots__ = ("tokens",)

    def __init__(self) -> None:
        super().__init__()
        self.tokens = 0  # sum of the queued requests' prefill_target

    def append(self, req) -> None:
        super().append(req)
        self.tokens += req.prefill_target

    def appendleft(self, req) -> None:
        super().appendleft(req)
        self.tokens += req.prefill_target

    def insert(self, index: int, req) -> None:
        super().insert(index, req)
        self.tokens += req.prefill_target

    def extend(self, reqs) -> None:
        reqs = list(reqs)
        super().extend(reqs)
        self.tokens += sum(r.prefill_target for r in reqs)

    def extendleft(self, reqs) -> None:
        reqs = list(reqs)
        super().extendleft(reqs)
        self.tokens += sum(r.prefill_target for r in reqs)

    def __iadd__(self, reqs):
        self.extend(reqs)
        return self

    def pop(self):
        req = super().pop()
        self.tokens -= req.prefill_target
        return req

    def popleft(self):
        req = super().popleft()
        self.tokens -= req.prefill_target
        return req

    def remove(self, req) -> None:
        super().remove(req)
        self.tokens -= req.prefill_target

    def __delitem__(self, index) -> None:
        self.tokens -= self[index].prefill_target
        super().__delitem__(index)

    def __setitem__(self, index, req) -> None:
        self.tokens += req.prefill_target - self[index].prefill_target
        super().__setitem__(index, req)

    def clear(self) -> None:
        super().clear()
        self.tokens = 0
