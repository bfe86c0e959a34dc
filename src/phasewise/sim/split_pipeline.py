"""One request through a model split over edge devices, event by event: each device its own timeline (a FIFO
of forwards), each link a stream per sending end (LinkStreams: one socket, its transfers one after another and
delivered in order, as measure/pipeline_check.py's sender thread drains its queue) whose two ends share the link's
bandwidth (sim/link.py), so pipelining and contention come out of the simulation, not a formula.

Prefill (Jupiter's intra-sequence pipeline): the prompt is cut into S sub-sequences; sub-sequence j runs on
stage i once stage i is free and its hidden states have arrived from stage i-1, attending to the KV of the
sub-sequences before it (its cached context). TTFT: the last stage's forward of the last sub-sequence ends.

Decode modes (DecodePlan):
  - sequence-level pipelined AR (points=1, acceptance=1): one token through every stage per step, its id sent
    back to the first stage before the next step;
  - outline-parallel (points=K): a skeleton of `outline_tokens` is decoded first as one sequence, then its K
    points as independent sequences (prompt + own tokens as context), in flight together, so up to K stages
    have work at once; the points share the output's tokens (the first ones a token longer; a point past the
    tokens decodes none);
  - Medusa (verify_tokens=k+1, acceptance=a): each step runs k+1 candidate tokens through every stage and
    advances a tokens on average (an input); the heads cost the last stage.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from phasewise.errors import PhasewiseError
from phasewise.sim.events import EventLoop
from phasewise.sim.link import Link
from phasewise.sim.split_model import TOKEN_ID_BYTES, SplitModel


@dataclass(frozen=True, slots=True)
class Span:
    """Something that occupied a resource: a device's forward or a link's transfer."""

    resource: str  # "device <name>" or "link <a>-<b>"
    start_s: float
    end_s: float
    label: str


@dataclass(frozen=True, slots=True)
class DecodePlan:
    points: int = 1  # K outline points decoded as independent sequences (1: plain AR)
    outline_tokens: int = 0  # the skeleton, decoded first as one sequence (points > 1)
    verify_tokens: int = 1  # tokens per sequence per step (Medusa: 1 + candidate tokens)
    acceptance: float = 1.0  # tokens a step advances on average (Medusa's mean acceptance length)

    def __post_init__(self) -> None:
        # a step advances its own token at least, and at most every token it verifies (1 + Medusa heads)
        if not 1.0 <= self.acceptance <= self.verify_tokens:
            raise PhasewiseError(f"DecodePlan acceptance {self.acceptance:g} must lie in [1, verify_tokens] = "
                                 f"[1, {self.verify_tokens}] (a step advances its own token at least, at most every "
                                 "token it verifies)")


@dataclass(slots=True)
class SplitRun:
    ttft_s: float
    end_s: float  # last token
    output_tokens: int
    decode_steps: int
    points_start_s: float  # when the outline points start (= ttft_s + outline decode)
    spans: list[Span] = field(default_factory=list)

    @property
    def decode_s(self) -> float:
        return self.end_s - self.ttft_s

    @property
    def tpot_s(self) -> float:
        return self.decode_s / max(self.output_tokens, 1)

    def busy_s(self) -> dict[str, float]:
        """Busy time per resource (a link's: time with at least one transfer in flight, overlaps merged)."""
        out: dict[str, float] = {}
        by_resource: dict[str, list[tuple[float, float]]] = {}
        for span in self.spans:
            by_resource.setdefault(span.resource, []).append((span.start_s, span.end_s))
        for name, intervals in by_resource.items():
            total, reach = 0.0, float("-inf")
            for start, end in sorted(intervals):
                if end > reach:
                    total += end - max(start, reach)
                    reach = end
            out[name] = total
        return out


class DeviceQueue:
    """A device runs one forward at a time, in arrival order."""

    __slots__ = ("loop", "name", "queue", "busy", "spans")

    def __init__(self, loop: EventLoop, name: str, spans: list[Span]) -> None:
        self.loop, self.name, self.spans = loop, name, spans
        self.queue: deque = deque()
        self.busy = False

    def submit(self, work_s: float, label: str, done: Callable[[], None]) -> None:
        self.queue.append((work_s, label, done))
        if not self.busy:
            self._start()

    def _start(self) -> None:
        work_s, label, done = self.queue.popleft()
        self.busy = True
        start = self.loop.now
        self.loop.at(start + work_s, self._finish, start, label, done)

    def _finish(self, start: float, label: str, done: Callable[[], None]) -> None:
        self.spans.append(Span(f"device {self.name}", start, self.loop.now, label))
        self.busy = False
        if self.queue:
            self._start()
        done()


class LinkStreams:
    """One link between two devices: each end sends its transfers one after another (one stream, as one socket or
    NCCL channel does), the next starting when the last byte of the one before is on the wire, so the latency does
    not serialise them; the two ends' streams in flight split the link's bandwidth (sim/link.Link, processor
    sharing). A transfer arrives the link latency and a jitter draw after its last byte leaves, never before the
    one its end sent before it (a stream delivers in order)."""

    __slots__ = ("loop", "link", "latency_s", "queues", "sending", "arrived_s", "keys")

    def __init__(self, loop: EventLoop, bandwidth_bytes_per_s: float, latency_s: float) -> None:
        self.loop, self.latency_s = loop, latency_s
        self.link = Link(loop, bandwidth_bytes_per_s, 0.0)
        self.queues: dict[int, deque] = {}
        self.sending: set[int] = set()
        self.arrived_s: dict[int, float] = {}
        self.keys = 0

    def send(self, sender: int, nbytes: float, jitter_s: Callable[[], float], done: Callable[[float], None]
             ) -> None:
        """Queue `nbytes` on device `sender`'s stream; `done(start_s)` when they arrive (start_s: when they went on
        the wire)."""
        self.queues.setdefault(sender, deque()).append((nbytes, jitter_s, done))
        if sender not in self.sending:
            self._start(sender)

    def _start(self, sender: int) -> None:
        nbytes, jitter_s, done = self.queues[sender].popleft()
        self.sending.add(sender)
        self.keys += 1
        start = self.loop.now

        def sent() -> None:
            arrive = max(self.loop.now + self.latency_s + jitter_s(), self.arrived_s.get(sender, 0.0))
            self.arrived_s[sender] = arrive
            self.loop.at(arrive, done, start)
            self.sending.discard(sender)
            if self.queues[sender]:
                self._start(sender)

        self.link.send(self.keys, nbytes, sent)


class SplitPipeline:
    """The event world of one request: devices, links, and routes between stages."""

    def __init__(self, split: SplitModel, seed: int = 0) -> None:
        self.split = split
        self.loop = EventLoop()
        self.spans: list[Span] = []
        topo = split.topology
        self.devices = [DeviceQueue(self.loop, d.name, self.spans) for d in topo.devices]
        self.links = [LinkStreams(self.loop, link.bandwidth_bytes_per_s, link.latency_s) for link in topo.links]
        self.ends = [(topo.index(link.a), topo.index(link.b)) for link in topo.links]
        self.rng = random.Random(seed)

    def transfer(self, src: int, dst: int, nbytes: float, label: str, done: Callable[[], None]) -> None:
        """Send `nbytes` from device `src` to device `dst` hop by hop, each hop on the stream of the device sending
        it; `done()` when the last hop delivers."""
        path = self.split.route(src, dst)
        links = self.split.topology.links

        def hop(step: int, here: int) -> None:
            if step == len(path):
                done()
                return
            k = path[step]
            spec, (a, b) = links[k], self.ends[k]

            def jitter_s() -> float:
                return self.rng.uniform(0.0, spec.jitter_s) if spec.jitter_s else 0.0

            def arrived(start_s: float) -> None:
                self.spans.append(Span(f"link {spec.a}-{spec.b}", start_s, self.loop.now, label))
                hop(step + 1, b if here == a else a)

            self.links[k].send(here, nbytes, jitter_s, arrived)

        hop(0, src)

    def forward(self, sequences: list[tuple[int, int, int]], label: str, done: Callable[[], None],
                stage: int = 0) -> None:
        """Run one forward of `sequences` (new, cached, logit tokens) from `stage` through the last stage."""
        stages = self.split.stages
        work_s = self.split.stage_s(stage, sequences)

        def computed() -> None:
            if stage + 1 == len(stages):
                done()
                return
            tokens = sum(new for new, _, _ in sequences)
            nbytes = self.split.boundary_bytes(stage, tokens)
            self.transfer(stages[stage].device, stages[stage + 1].device, nbytes, label,
                          lambda: self.forward(sequences, label, done, stage + 1))

        self.devices[stages[stage].device].submit(work_s, label, computed)


def sub_sequence_lengths(prompt_tokens: int, sub_sequences: int) -> list[int]:
    """The prompt cut into `sub_sequences` near-equal consecutive pieces (the first ones a token longer)."""
    pieces = max(1, min(sub_sequences, prompt_tokens))
    base, extra = divmod(prompt_tokens, pieces)
    return [base + (1 if j < extra else 0) for j in range(pieces)]


def run_split(split: SplitModel, prompt_tokens: int, output_tokens: int, sub_sequences: int = 1,
              decode: DecodePlan | None = None, seed: int = 0) -> SplitRun:
    """Simulate one request: pipelined prefill in `sub_sequences` pieces, then `decode` (none: TTFT only) of
    `output_tokens` tokens after the prefill's, a step each (as sim/device_cloud.py and split_tensor_parallel.py
    count them)."""
    world = SplitPipeline(split, seed)
    loop = world.loop
    result = {"ttft": 0.0, "end": 0.0, "steps": 0, "points_start": 0.0}
    stages = split.stages
    last_device, first_device = stages[-1].device, stages[0].device
    lengths = sub_sequence_lengths(prompt_tokens, sub_sequences)

    def decode_sequences(tokens: list[int], context: int, then: Callable[[], None]) -> None:
        """Independent sequences of `tokens` tokens each, each step one forward through every stage."""
        plan = decode or DecodePlan()
        remaining = [len(tokens)]

        def step(index: int, produced: float) -> None:
            if produced >= tokens[index]:
                remaining[0] -= 1
                if remaining[0] == 0:
                    then()
                return
            cached = context + int(produced)
            result["steps"] += 1

            def sampled() -> None:
                advanced = produced + plan.acceptance
                nbytes = plan.verify_tokens * TOKEN_ID_BYTES
                world.transfer(last_device, first_device, nbytes, f"ids {index}", lambda: step(index, advanced))

            world.forward([(plan.verify_tokens, cached, plan.verify_tokens)], f"decode {index}", sampled)

        for index in range(len(tokens)):
            step(index, 0.0)

    def decoded() -> None:
        result["end"] = loop.now

    def points() -> None:
        result["points_start"] = loop.now
        plan = decode or DecodePlan()  # the points decode the output's tokens between them, no more
        base, extra = divmod(output_tokens, plan.points)
        decode_sequences([base + (1 if j < extra else 0) for j in range(plan.points)],
                         prompt_tokens + plan.outline_tokens, decoded)

    def prefilled() -> None:
        result["ttft"] = result["end"] = result["points_start"] = loop.now
        if decode is None or output_tokens < 1:  # (one output token is one decode step, as for any other count)
            return
        if decode.points > 1 and decode.outline_tokens:
            decode_sequences([decode.outline_tokens], prompt_tokens, points)
        else:
            points()

    cached, arrived = 0, [0]
    for j, length in enumerate(lengths):
        logits = 1 if j == len(lengths) - 1 else 0

        def finished() -> None:
            arrived[0] += 1
            if arrived[0] == len(lengths):
                prefilled()

        world.forward([(length, cached, logits)], f"prefill {j}", finished)
        cached += length
    loop.run()
    return SplitRun(result["ttft"], result["end"], output_tokens if decode else 0, result["steps"],
                    result["points_start"], world.spans)
