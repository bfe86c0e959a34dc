"""Many devices sharing one cloud server over a U-shaped split (specs/device_cloud.py), event by event.

Each device has its own timeline (a FIFO of forwards: sim/split_pipeline.DeviceQueue), its own uplink and
downlink (sim/link.Link, one transfer at a time per direction: a stream); the cloud has `cloud_gpus` workers,
each holding the middle model and the KV of the devices assigned to it (device i -> worker i mod gpus). A free
worker takes what is queued for it (at most one piece per request, up to `max_batch_tokens`) and runs it as one
forward costed by CostModel with the batch's shape (SplitModel.stage_s of the middle stage), so batching and
queueing across devices come out of the simulation. Stage times: SplitModel on the three-stage U (device
input with the embedding, cloud middle, device output with the LM head); the draft model: SplitModel of
input + adapter + output layers on the device.

Prefill: the prompt in chunks of `chunk_tokens`; chunk j runs the input layers on the device, its hidden states
go up, the cloud runs the middle layers (after chunk j-1's, whose KV it attends to), they come down and the
device runs the output layers; so the upload of one chunk overlaps the cloud's compute of the one before.
TTFT: the output layers of the last chunk end.
Decode (DecodeMode): plain U-shaped AR (one token device -> cloud -> device per step), or speculative: the
device drafts `draft_tokens` tokens one by one with its draft model, the k+1 positions (last token + drafts)
go up, the cloud verifies them in one pass, they come down through the output layers, and a step advances
SpecDecode.tokens_per_step tokens on average (i.i.d. acceptance).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import SpecDecode
from phasewise.sim.events import EventLoop
from phasewise.sim.link import Link
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DeviceQueue, Span
from phasewise.specs import load_hardware
from phasewise.specs.device_cloud import DeviceCloud
from phasewise.specs.hardware import EngineProfile
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    prompt_tokens: int
    output_tokens: int = 0
    chunk_tokens: int = 0  # 0: the whole prompt in one piece
    arrival_s: float = 0.0


@dataclass(slots=True)
class DeviceRun:
    ttft_s: float  # from arrival
    end_s: float  # last token, from arrival
    output_tokens: int
    decode_steps: int

    @property
    def tbt_s(self) -> float:
        """Mean time between tokens after the first."""
        return (self.end_s - self.ttft_s) / max(self.output_tokens, 1)


@dataclass(slots=True)
class CloudRun:
    requests: list[DeviceRun]
    spans: list[Span] = field(default_factory=list)
    cloud_batches: int = 0
    cloud_batch_tokens: int = 0

    @property
    def mean_ttft_s(self) -> float:
        return sum(r.ttft_s for r in self.requests) / len(self.requests)

    @property
    def mean_tbt_s(self) -> float:
        return sum(r.tbt_s for r in self.requests) / len(self.requests)


class UShapedCost:
    """Stage times of the U (device input, cloud middle, device output) and of the device's draft model."""

    __slots__ = ("model", "quant", "setup", "u_stages", "draft")

    def __init__(self, model: ModelSpec, quant: QuantScheme, engine: EngineProfile, setup: DeviceCloud) -> None:
        self.model, self.quant, self.setup = model, quant, setup
        topo = setup.u_topology()
        self.u_stages = SplitModel(model, quant, engine, topo, [load_hardware(d.hardware) for d in topo.devices],
                            setup.split(model.num_layers))
        draft_layers = setup.input_layers + setup.adapter_layers + setup.output_layers
        drafter = model.stack_part(draft_layers, 0)
        self.draft = SplitModel(drafter, quant, engine, setup.draft_topology(),
                                [load_hardware(setup.device_hardware)], [draft_layers])

    def input_s(self, new: int, cached: int) -> float:
        return self.u_stages.stage_s(0, [(new, cached, 0)])

    def middle_s(self, sequences: list[tuple[int, int, int]]) -> float:
        return self.u_stages.stage_s(1, sequences)

    def output_s(self, new: int, cached: int, logits: int) -> float:
        return self.u_stages.stage_s(2, [(new, cached, logits)])

    def draft_s(self, cached: int) -> float:
        return self.draft.stage_s(0, [(1, cached, 1)])

    def up_bytes(self, tokens: int) -> float:
        """What `tokens` positions send up to the cloud (SplitModel.boundary_bytes: the hidden states, and any later
        layer's per-layer input)."""
        return self.u_stages.boundary_bytes(0, tokens)

    def down_bytes(self, tokens: int) -> float:
        """What they bring back down to the output layers (with the KV the device's KV-shared layers reuse)."""
        return self.u_stages.boundary_bytes(1, tokens)

    def check_memory(self, context_tokens: int, batch_tokens: int, sequences_per_gpu: int,
                     memory_fraction: float = 0.9) -> None:
        """One-line errors when a device's submodels and adapter (the draft model, with its KV) or a cloud GPU's
        middle model (with the KV of its devices' requests) do not fit."""
        self.draft.check_memory(context_tokens, batch_tokens, 1, memory_fraction)
        stages = self.u_stages
        need = stages.stage_memory_bytes(1, context_tokens * sequences_per_gpu, batch_tokens, sequences_per_gpu)
        hw, usable = stages.hardware[1], stages.usable_bytes(1, memory_fraction)
        if need > usable:
            raise PhasewiseError(f"the cloud's middle layers with {sequences_per_gpu} requests' KV need "
                                 f"{need / 2**30:.1f} GiB per GPU ({hw.key}), which has {usable / 2**30:.1f} GiB usable")


class CloudWorker:
    """One cloud GPU: batches what is queued for it (one piece per request per batch) into one forward."""

    __slots__ = ("loop", "name", "cost", "max_batch_tokens", "queue", "busy", "spans", "batches", "tokens")

    def __init__(self, loop: EventLoop, name: str, cost: UShapedCost, max_batch_tokens: int,
                 spans: list[Span]) -> None:
        self.loop, self.name, self.cost, self.spans = loop, name, cost, spans
        self.max_batch_tokens = max_batch_tokens
        self.queue: deque = deque()
        self.busy = False
        self.batches = self.tokens = 0

    def submit(self, owner: int, sequence: tuple[int, int, int], label: str, done: Callable[[], None]) -> None:
        self.queue.append((owner, sequence, label, done))
        if not self.busy:
            self._start()

    def _start(self) -> None:
        batch, owners, tokens, rest = [], set(), 0, deque()
        while self.queue:
            item = self.queue.popleft()
            owner, (new, _, _), _, _ = item
            if owner in owners or (batch and tokens + new > self.max_batch_tokens):
                rest.append(item)
                continue
            batch.append(item)
            owners.add(owner)
            tokens += new
        self.queue = rest
        self.busy = True
        self.batches += 1
        self.tokens += tokens
        work_s = self.cost.middle_s([seq for _, seq, _, _ in batch])
        self.loop.at(self.loop.now + work_s, self._finish, self.loop.now, batch)

    def _finish(self, start: float, batch: list) -> None:
        label = batch[0][2] if len(batch) == 1 else f"batch of {len(batch)}"
        self.spans.append(Span(f"cloud {self.name}", start, self.loop.now, label))
        self.busy = False
        if self.queue:
            self._start()
        for *_, done in batch:
            done()


class Stream:
    """One direction of a device's link: transfers one after another (a stream) over sim/link.Link; the next
    transfer starts when the last byte of this one is on the wire, so the latency does not serialise them."""

    __slots__ = ("loop", "link", "name", "latency_s", "queue", "busy", "spans", "keys")

    def __init__(self, loop: EventLoop, name: str, mbps: float, latency_s: float, spans: list[Span]) -> None:
        self.loop, self.name, self.spans, self.latency_s = loop, name, spans, latency_s
        self.link = Link(loop, mbps * 1e6 / 8.0, 0.0)
        self.queue: deque = deque()
        self.busy = False
        self.keys = 0

    def send(self, nbytes: float, label: str, done: Callable[[], None]) -> None:
        self.queue.append((nbytes, label, done))
        if not self.busy:
            self._start()

    def _start(self) -> None:
        nbytes, label, done = self.queue.popleft()
        self.busy = True
        self.keys += 1
        start = self.loop.now

        def sent() -> None:
            self.spans.append(Span(f"link {self.name}", start, self.loop.now + self.latency_s, label))
            self.busy = False
            if self.queue:
                self._start()
            self.loop.at(self.loop.now + self.latency_s, done)

        self.link.send(self.keys, nbytes, sent)


def chunk_lengths(prompt_tokens: int, chunk_tokens: int) -> list[int]:
    """The prompt in consecutive chunks of `chunk_tokens` (the last one shorter); 0 or >= prompt: one piece."""
    if chunk_tokens <= 0 or chunk_tokens >= prompt_tokens:
        return [prompt_tokens]
    full, rest = divmod(prompt_tokens, chunk_tokens)
    return [chunk_tokens] * full + ([rest] if rest else [])


def run_device_cloud(model: ModelSpec, quant: QuantScheme, engine: EngineProfile, setup: DeviceCloud,
                     requests: list[DeviceRequest], speculative: SpecDecode | None = None,
                     max_batch_tokens: int = 8192, cost: UShapedCost | None = None) -> CloudRun:
    """Simulate one request per device (request i on device i; fewer requests than devices leaves the rest
    idle). `speculative`: the device drafts and the cloud verifies; None: plain U-shaped AR decoding."""
    if len(requests) > setup.devices:
        raise PhasewiseError(f"{len(requests)} requests for {setup.devices} devices (one request per device)")
    cost = cost or UShapedCost(model, quant, engine, setup)
    loop = EventLoop()
    spans: list[Span] = []
    workers = [CloudWorker(loop, f"gpu{g}", cost, max_batch_tokens, spans) for g in range(setup.cloud_gpus)]
    results: list[dict] = [{"ttft": 0.0, "end": 0.0, "steps": 0} for _ in requests]

    for i, request in enumerate(requests):
        device = DeviceQueue(loop, f"dev{i}", spans)
        up = Stream(loop, f"dev{i} up", setup.uplink_mbps, setup.latency_s, spans)
        down = Stream(loop, f"dev{i} down", setup.downlink_mbps, setup.latency_s, spans)
        worker = workers[i % len(workers)]
        loop.at(request.arrival_s, start_request, i, request, device, up, down, worker, cost, speculative,
                results[i], loop)
    loop.run()
    runs = [DeviceRun(r["ttft"] - q.arrival_s, r["end"] - q.arrival_s, q.output_tokens, r["steps"])
            for r, q in zip(results, requests)]
    return CloudRun(runs, spans, sum(w.batches for w in workers), sum(w.tokens for w in workers))


def start_request(owner: int, request: DeviceRequest, device: DeviceQueue, up: Stream, down: Stream,
                  worker: CloudWorker, cost: UShapedCost, speculative: SpecDecode | None, result: dict,
                  loop: EventLoop) -> None:
    """Prefill in chunks, then decode, for one request on its device (see module doc)."""
    lengths = chunk_lengths(request.prompt_tokens, request.chunk_tokens)
    prompt = request.prompt_tokens

    def through_cloud(new: int, cached: int, logits: int, label: str, then: Callable[[], None]) -> None:
        """`new` positions' hidden states up, the middle layers in the cloud, back down, the output layers."""
        def computed() -> None:
            down.send(cost.down_bytes(new), label, lambda: device.submit(
                cost.output_s(new, cached, logits), f"{label} out", then))

        up.send(cost.up_bytes(new), label,
                lambda: worker.submit(owner, (new, cached, 0), label, computed))

    def decode_step(produced: float) -> None:
        if produced >= request.output_tokens:
            result["end"] = loop.now
            return
        cached = prompt + int(produced)
        result["steps"] += 1
        if speculative is None:
            device.submit(cost.input_s(1, cached), "decode in",
                          lambda: through_cloud(1, cached, 1, "decode", lambda: decode_step(produced + 1)))
            return
        k = speculative.draft_tokens

        def draft(index: int) -> None:
            if index == k:  # the last draft's input layers, then the k+1 positions to the cloud
                device.submit(cost.input_s(1, cached + k), "verify in", lambda: through_cloud(
                    k + 1, cached, k + 1, "verify", lambda: decode_step(produced + speculative.tokens_per_step)))
                return
            device.submit(cost.draft_s(cached + index), f"draft {index}", lambda: draft(index + 1))

        draft(0)

    arrived = [0]

    def chunk_done() -> None:
        arrived[0] += 1
        if arrived[0] == len(lengths):
            result["ttft"] = result["end"] = loop.now
            if request.output_tokens > 0:
                # the first token's id goes nowhere: the device sampled it itself (the LM head is on the device)
                decode_step(0.0)

    cached = 0
    for j, length in enumerate(lengths):
        logits = 1 if j == len(lengths) - 1 else 0
        label = f"chunk {j}"
        device.submit(cost.input_s(length, cached), f"{label} in",
                      lambda length=length, cached=cached, logits=logits, label=label:
                      through_cloud(length, cached, logits, label, chunk_done))
        cached += length
