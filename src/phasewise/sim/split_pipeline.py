"""One request through a model split over edge devices, event by event: each device its own timeline (a FIFO
of forwards), each link its own shared queue (sim/link.py), so pipelining and contention come out of the
simulation, not a formula.

Prefill (Jupiter's intra-sequence pipeline): the prompt is cut into S sub-sequences; sub-sequence j runs on
stage i once stage i is free and its hidden states have arrived from stage i-1, attending to the KV of the
sub-sequences before it (its cached context). TTFT: the last stage's forward of the last sub-sequence ends.

Decode modes (DecodePlan):
  - sequence-level pipelined AR (points=1, acceptance=1): one token through every stage per step, its id sent
    back to the first stage before the next step;
  - outline-parallel (points=K): a skeleton of `outline_tokens` is decoded first as one sequence, then its K
    points as independent sequences (prompt + own tokens as context), in flight together, so up to K stages
    have work at once;
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


class SplitPipeline:
    """The event world of one request: devices, links, and routes between stages."""

    def __init__(self, split: SplitModel, seed: int = 0) -> None:
        self.split = split
        self.loop = EventLoop()
        self.spans: list[Span] = []
        topo = split.topology
        self.devices = [DeviceQueue(self.loop, d.name, self.spans) for d in topo.devices]
        self.links = [Link(self.loop, link.bandwidth_bytes_per_s, link.latency_s) for link in topo.links]
        self.rng = random.Random(seed)
        self._keys = 0

    def transfer(self, src: int, dst: int, nbytes: float, label: str, done: Callable[[], None]) -> None:
        """Send `nbytes` from device `src` to device `dst` hop by hop; `done()` when the last hop delivers."""
        path = self.split.route(src, dst)
        links = self.split.topology.links

        def hop(step: int) -> None:
            if step == len(path):
                done()
                return
            k = path[step]
            spec, start = links[k], self.loop.now
            self._keys += 1

            def delivered() -> None:
                jitter = self.rng.uniform(0.0, spec.jitter_s) if spec.jitter_s else 0.0
                self.loop.at(self.loop.now + jitter, arrived)

            def arrived() -> None:
                self.spans.append(Span(f"link {spec.a}-{spec.b}", start, self.loop.now, label))
                hop(step + 1)

            self.links[k].send(self._keys, nbytes, delivered)

        hop(0)

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

    def decode_sequences(count: int, tokens_each: int, context: int, then: Callable[[], None]) -> None:
        """`count` independent sequences of `tokens_each` tokens, each step one forward through every stage."""
        plan = decode or DecodePlan()
        remaining = [count]

        def step(index: int, produced: float) -> None:
            if produced >= tokens_each:
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

        for index in range(count):
            step(index, 0.0)

    def decoded() -> None:
        result["end"] = loop.now

    def points() -> None:
        result["points_start"] = loop.now
        plan = decode or DecodePlan()
        per_point = -(-output_tokens // plan.points)
        decode_sequences(plan.points, per_point, prompt_tokens + plan.outline_tokens, decoded)

    def prefilled() -> None:
        result["ttft"] = result["end"] = result["points_start"] = loop.now
        if decode is None or output_tokens < 1:  # (one output token is one decode step, as for any other count)
            return
        if decode.points > 1 and decode.outline_tokens:
            decode_sequences(1, decode.outline_tokens, prompt_tokens, points)
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
