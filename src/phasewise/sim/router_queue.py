"""Requests held at the router before it chooses an instance (Dynamo's router queue, router_queue_threshold;
sim/routers/dynamo_kv.py): a new request waits while the router's `must_hold()` says every instance is too busy,
and the waiting ones go, first come first served, each as soon as the router no longer holds (the cluster asks after
every iteration that prefilled prompt tokens, the moment an instance's pending prefill tokens fall)."""

from __future__ import annotations

from collections import deque


class RouterQueue:
    __slots__ = ("waiting", "held", "peak", "hold_s")

    def __init__(self) -> None:
        self.waiting: deque = deque()  # (request, held since)
        self.held = 0  # requests that waited here
        self.peak = 0  # most waiting at once
        self.hold_s = 0.0  # their waits, summed

    def hold(self, req, now_s: float) -> None:
        self.waiting.append((req, now_s))
        self.held += 1
        self.peak = max(self.peak, len(self.waiting))

    def release(self, router, now_s: float, send) -> None:
        """Send the waiting requests, oldest first, while the router takes them (`send(req)` routes one)."""
        while self.waiting and not router.must_hold():
            req, since_s = self.waiting.popleft()
            self.hold_s += now_s - since_s
            send(req)

    def drop(self, req) -> bool:
        """Take a cancelled request out (the client left while it waited here); whether it was here."""
        for entry in self.waiting:
            if entry[0] is req:
                self.waiting.remove(entry)
                return True
        return False

    def figures(self) -> dict:
        """SimResult.policy['router_queue']."""
        return {"held_requests": self.held, "peak_waiting": self.peak,
                "mean_hold_s": self.hold_s / self.held if self.held else 0.0, "still_waiting": len(self.waiting)}
