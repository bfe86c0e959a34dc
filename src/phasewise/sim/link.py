"""A link shared by concurrent KV transfers (processor sharing: active transfers split the bandwidth)."""

from __future__ import annotations

from collections.abc import Callable

from phasewise.sim.events import EventLoop
from phasewise.sim.fabric import Fabric, Port


class Link:
    """A link shared by concurrent transfers, processor sharing (the transfers in flight split its bandwidth): a
    fabric of one port whose transfers name no receiver (sim/fabric.py)."""

    __slots__ = ("port", "fabric")

    def __init__(self, loop: EventLoop, bandwidth_bytes_per_s: float, latency_s: float) -> None:
        self.port = Port("link", bandwidth_bytes_per_s, latency_s)
        self.fabric = Fabric(loop)

    @property
    def bandwidth(self) -> float:
        return self.port.bandwidth

    @property
    def latency_s(self) -> float:
        return self.port.latency_s

    @property
    def active(self) -> dict[int, list]:
        """The transfers in flight (transfer id -> its state)."""
        return self.fabric.flows

    def send(self, key: int, nbytes: float, done: Callable[[], None]) -> None:
        """Start a transfer; `done()` runs when its last byte arrives (after the link latency)."""
        self.fabric.send(key, self.port, None, nbytes, done)


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
