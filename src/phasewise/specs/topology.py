"""An edge topology: devices (catalog chips or hardware YAMLs) and the links between them, and a model's layer
split over those devices.

YAML (or the same dict built from flags):
  devices: [{name: orin0, hardware: jetson-agx-orin}, ...]   # or plain keys: [jetson-agx-orin, ...]
  links:   [{a: orin0, b: orin1, mbps: 100, latency_s: 1e-3, jitter_s: 0}, ...]   # or bandwidth_bps
  split:   [8, 8, 8, 8]        # layers per device, in device order; or ranges [[0, 8], [8, 16], ...]
A link is undirected and shared: each end sends its transfers one after another (one stream, in order), and the
two ends' streams split its bandwidth (sim/split_pipeline.py LinkStreams over sim/link.py). A transfer between
devices without a direct link follows the fewest-hop route. A number is a number: YAML's true / false is refused.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.specs.catalog import read_user_file
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.specs.reading import number


class EdgeDevice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    hardware: str = Field(min_length=1)  # catalog key or hardware YAML path (specs.load_hardware)


class EdgeLink(NumbersNotBooleans):
    model_config = ConfigDict(frozen=True, extra="forbid")

    a: str
    b: str
    bandwidth_bps: float = Field(gt=0, allow_inf_nan=False)  # bits per second
    latency_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    jitter_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)  # extra delay drawn uniformly in [0, jitter_s]

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_bps / 8.0


class Topology(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: tuple[EdgeDevice, ...]
    links: tuple[EdgeLink, ...] = ()

    def index(self, name: str) -> int:
        for i, device in enumerate(self.devices):
            if device.name == name:
                return i
        raise PhasewiseError(f"topology: unknown device '{name}' (known: {', '.join(self.names)})")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def route(self, src: int, dst: int) -> list[int]:
        """Indices into `links` of the fewest-hop path from device `src` to device `dst` ([] when equal)."""
        if src == dst:
            return []
        previous: dict[int, tuple[int, int]] = {src: (-1, -1)}
        todo = deque([src])
        while todo:
            here = todo.popleft()
            for k, link in enumerate(self.links):
                ends = (self.index(link.a), self.index(link.b))
                if here in ends:
                    there = ends[1] if ends[0] == here else ends[0]
                    if there not in previous:
                        previous[there] = (here, k)
                        todo.append(there)
        if dst not in previous:
            raise PhasewiseError(f"topology: no route from '{self.devices[src].name}' to "
                                 f"'{self.devices[dst].name}' (add a link)")
        path, node = [], dst
        while node != src:
            node, k = previous[node]
            path.append(k)
        return path[::-1]


def parse_topology(data: Any, where: str = "topology") -> Topology:
    """A Topology from its YAML dict; every mistake is one line."""
    if not isinstance(data, dict):
        raise PhasewiseError(f"{where}: expected a mapping with 'devices' and 'links'")
    unknown = set(data) - {"devices", "links", "split"}
    if unknown:
        raise PhasewiseError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: devices, links, split)")
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise PhasewiseError(f"{where}: 'devices' must be a non-empty list")
    devices = []
    for i, entry in enumerate(raw_devices):
        if isinstance(entry, str):
            entry = {"name": f"{entry}-{i}", "hardware": entry}
        if not isinstance(entry, dict):
            raise PhasewiseError(f"{where}: device {i} must be a hardware key or {{name, hardware}}")
        try:
            devices.append(EdgeDevice(**entry))
        except ValidationError as exc:
            raise pydantic_message(f"{where}: device {i}", exc) from None
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise PhasewiseError(f"{where}: device names repeat ({', '.join(names)})")
    links = []
    if not isinstance(data.get("links") or [], list):
        raise PhasewiseError(f"{where}: 'links' must be a list of {{a, b, mbps|bandwidth_bps, latency_s}}")
    for i, entry in enumerate(data.get("links") or []):
        if not isinstance(entry, dict):
            raise PhasewiseError(f"{where}: link {i} must be a mapping {{a, b, mbps|bandwidth_bps, latency_s}}")
        entry = dict(entry)
        in_mbps = "mbps" in entry
        if in_mbps:
            mbps = entry.pop("mbps")
            if "bandwidth_bps" in entry:
                raise PhasewiseError(f"{where}: link {i} gives both mbps and bandwidth_bps")
            entry["bandwidth_bps"] = number(mbps, "mbps", f"{where}: link {i}", "Mbit/s") * 1e6
        try:
            link = EdgeLink(**entry)
        except ValidationError as exc:  # a bandwidth given in Mbit/s is named by the key the file used
            raise pydantic_message(f"{where}: link {i}", exc,
                                   lambda loc: "mbps" if in_mbps and loc[:1] == ("bandwidth_bps",) else None
                                   ) from None
        for end in (link.a, link.b):
            if end not in names:
                raise PhasewiseError(f"{where}: link {i} names unknown device '{end}' (known: {', '.join(names)})")
        if link.a == link.b:
            raise PhasewiseError(f"{where}: link {i} joins '{link.a}' to itself")
        pair = {link.a, link.b}
        twice = next((j for j, other in enumerate(links) if {other.a, other.b} == pair), None)
        if twice is not None:  # a link is undirected: a second one between the pair would be silently unused
            raise PhasewiseError(f"{where}: links {twice} and {i} both join '{link.a}' and '{link.b}' (a link is "
                                 "undirected and shared both ways): give each pair of devices one link")
        links.append(link)
    return Topology(devices=tuple(devices), links=tuple(links))


def load_topology(path: str) -> tuple[Topology, list | None]:
    """(topology, its `split:` entry or None) from a YAML/JSON file."""
    data = read_user_file(path, "topology")
    return parse_topology(data, f"topology '{path}'"), (data.get("split") if isinstance(data, dict) else None)


def chain_topology(hardware: list[str], mbps: float, latency_s: float = 0.0, jitter_s: float = 0.0,
                   ring: bool = False) -> Topology:
    """Devices in a line, each linked to the next by its own link (what the flags build); `ring` also links
    the last to the first (more than two devices)."""
    devices = [{"name": f"dev{i}", "hardware": hw} for i, hw in enumerate(hardware)]
    pairs = [(i, i + 1) for i in range(len(hardware) - 1)]
    if ring and len(hardware) > 2:
        pairs.append((len(hardware) - 1, 0))
    links = [{"a": f"dev{i}", "b": f"dev{j}", "mbps": mbps, "latency_s": latency_s, "jitter_s": jitter_s}
             for i, j in pairs]
    return parse_topology({"devices": devices, "links": links}, "topology")


def parse_split(split: Any, num_layers: int, stages: int) -> tuple[tuple[int, int], ...]:
    """Layer ranges [start, end) of each stage from `split`: layers per stage ([8, 8, 8, 8]) or ranges
    ([[0, 8], [8, 16], ...]). They must cover the model's layers once, in order, one stage per device."""
    if not isinstance(split, (list, tuple)) or not split:
        raise PhasewiseError("split: expected a list of layer counts or [start, end) ranges")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in split):
        if any(x < 1 for x in split):
            raise PhasewiseError(f"split {list(split)}: every stage needs at least one layer")
        starts = [sum(split[:i]) for i in range(len(split))]
        ranges = tuple((s, s + n) for s, n in zip(starts, split))
    elif all(isinstance(x, (list, tuple)) and len(x) == 2
             and all(isinstance(y, int) and not isinstance(y, bool) for y in x) for x in split):
        ranges = tuple((a, b) for a, b in split)
    else:
        raise PhasewiseError(f"split {split}: expected layer counts or [start, end) ranges")
    if len(ranges) != stages:
        raise PhasewiseError(f"split {list(split)}: {len(ranges)} stages for {stages} devices (one per device)")
    expected = 0
    for start, end in ranges:
        if start != expected or end <= start:
            raise PhasewiseError(f"split {list(split)}: ranges must be consecutive and non-empty from layer 0 "
                                 f"(stage at [{start}, {end}) expected to start at {expected})")
        expected = end
    if expected != num_layers:
        raise PhasewiseError(f"split {list(split)}: covers {expected} layers, the model has {num_layers}")
    return ranges
