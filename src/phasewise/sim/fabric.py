"""KV transfers between a disaggregated deployment's instances, each through two ports: out of its sender's (a prefill
replica's lanes) and into its receiver's (a decode replica's). The transfers in flight share every port max-min
fairly (progressive filling: the flows through the most contended port get its equal share, the rest then split
what the others have left), so several prefill replicas sending to one decode replica share its lanes as one
prefill replica sending to several shares its own. A transfer's last byte is followed by its sender port's latency
(the link's and the prefill engine's hand-off, which use no bandwidth). With one sender port and no receiver, each
transfer gets the port's bandwidth over the transfers in flight: sim/link.py's Link, processor sharing."""

from __future__ import annotations

from collections.abc import Callable

from phasewise.sim.events import EventLoop


class Port:
    """An instance's lanes for KV transfers: bytes/s over all its lanes, and the latency after a transfer's last
    byte (a sender's)."""

    __slots__ = ("name", "bandwidth", "latency_s")

    def __init__(self, name: str, bandwidth_bytes_per_s: float, latency_s: float = 0.0) -> None:
        self.name, self.bandwidth, self.latency_s = name, bandwidth_bytes_per_s, latency_s


class Fabric:
    __slots__ = ("loop", "flows", "last_s", "version")

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        # transfer id -> [remaining bytes, rate bytes/s, sender port, receiver port or None, done callback]
        self.flows: dict[int, list] = {}
        self.last_s = 0.0
        self.version = 0

    def send(self, key: int, sender: Port, receiver: Port | None, nbytes: float, done: Callable[[], None]) -> None:
        """Start a transfer; `done()` runs when its last byte has arrived and the sender's latency has passed."""
        self._advance()
        self.flows[key] = [nbytes, 0.0, sender, receiver, done]
        self._reschedule()

    def _advance(self) -> None:
        now = self.loop.now
        if self.flows and now > self.last_s:
            elapsed = now - self.last_s
            for flow in self.flows.values():
                flow[0] -= flow[1] * elapsed
        self.last_s = now

    def _share(self) -> None:
        """Each flow's rate, max-min fair over the ports: flows of one (sender, receiver) pair alike, as a group."""
        if len(self.flows) == 1:  # most often: one transfer in flight, at its slower end's bandwidth
            flow = next(iter(self.flows.values()))
            flow[1] = flow[2].bandwidth if flow[3] is None else min(flow[2].bandwidth, flow[3].bandwidth)
            return
        groups: dict[tuple[Port, Port | None], list[list]] = {}
        for flow in self.flows.values():
            groups.setdefault((flow[2], flow[3]), []).append(flow)
        left = {port: port.bandwidth for pair in groups for port in pair if port is not None}
        while groups:
            load: dict[Port, int] = {}
            for pair, flows in groups.items():
                for port in pair:
                    if port is not None:
                        load[port] = load.get(port, 0) + len(flows)
            bottleneck = min(load, key=lambda port: left[port] / load[port])
            share = max(left[bottleneck], 0.0) / load[bottleneck]
            for pair in [pair for pair in groups if bottleneck in pair]:
                flows = groups.pop(pair)
                for flow in flows:
                    flow[1] = share
                for port in pair:
                    if port is not None:
                        left[port] -= share * len(flows)

    def _reschedule(self) -> None:
        self.version += 1
        if self.flows:
            self._share()
            key, flow = min(((k, f) for k, f in self.flows.items() if f[1] > 0),
                            key=lambda kv: max(kv[1][0], 0.0) / kv[1][1])
            self.loop.at(self.loop.now + max(flow[0], 0.0) / flow[1], self._finish, key, self.version)

    def _finish(self, key: int, version: int) -> None:
        if version != self.version:
            return
        self._advance()
        _, _, sender, _, done = self.flows.pop(key)
        self.loop.at(self.loop.now + sender.latency_s, done)
        self._reschedule()
