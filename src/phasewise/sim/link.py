"""A link shared by concurrent KV transfers (processor sharing: active transfers split the bandwidth)."""

from __future__ import annotations

from collections.abc import Callable

from phasewise.sim.events import EventLoop


class Link:
    __slots__ = ("loop", "bandwidth", "latency_s", "active", "last_s", "version")

    def __init__(self, loop: EventLoop, bandwidth_bytes_per_s: float, latency_s: float) -> None:
        self.loop = loop
        self.bandwidth = bandwidth_bytes_per_s
        self.latency_s = latency_s
        self.active: dict[int, list] = {}  # transfer id -> [remaining bytes, callback]
        self.last_s = 0.0
        self.version = 0

    def send(self, key: int, nbytes: float, done: Callable[[], None]) -> None:
        """Start a transfer; `done()` runs when its last byte arrives (after the link latency)."""
        self._advance()
        self.active[key] = [nbytes, done]
        self._reschedule()

    def _advance(self) -> None:
        now = self.loop.now
        if self.active and now > self.last_s:
            share = self.bandwidth / len(self.active) * (now - self.last_s)
            for entry in self.active.values():
                entry[0] -= share
        self.last_s = now

    def _reschedule(self) -> None:
        self.version += 1
        if self.active:
            key, (remaining, _) = min(self.active.items(), key=lambda kv: kv[1][0])
            dt = max(remaining, 0.0) / (self.bandwidth / len(self.active))
            self.loop.at(self.loop.now + dt, self._finish, key, self.version)

    def _finish(self, key: int, version: int) -> None:
        if version != self.version:
            return
        self._advance()
        _, done = self.active.pop(key)
        self.loop.at(self.loop.now + self.latency_s, done)
        self._reschedule()


def link_rate(interconnect, kind: str) -> tuple[float, float]:
    """(bandwidth bytes/s per lane, latency s) of a KV link of `kind` (nvlink | pcie | rdma) on a GPU's interconnect;
    a lane is one GPU's point-to-point path to its peer (one link on a mesh)."""
    ic = interconnect
    return {"nvlink": (ic.peer_bandwidth, ic.intra_node_latency_s),
            "pcie": (ic.pcie_bandwidth_bytes_per_s, ic.intra_node_latency_s),
            "rdma": (ic.inter_node_bandwidth_bytes_per_s, ic.inter_node_latency_s)}[kind]


def effective_bandwidth(cost, kind: str) -> float:
    """Bytes/s one GPU of `cost`'s chip moves over its link of `kind`, at the link efficiency collectives reach."""
    return link_rate(cost.hw.interconnect, kind)[0] * cost.eff.link_efficiency
