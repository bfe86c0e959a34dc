"""Tensor-parallel edge inference (the baseline Jupiter compares against): every layer split across all devices,
two all-reduces of the hidden states per layer over the topology's links.

Each device's share of a forward is CostModel with tp = devices on its own hardware, less the cost model's own
all-reduce (priced for a datacenter interconnect); the devices wait for the slowest at every layer. An
all-reduce is simulated once per message size as a ring over the devices in order: 2(P-1) steps, in each of
which every device sends 1/P of the message to the next over its route (sim/link.py, so a link two ring
hops share is contended), the step ending when the last chunk arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.sim.events import EventLoop
from phasewise.sim.link import Link
from phasewise.sim.split_model import hidden_state_bytes
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme
from phasewise.specs.topology import Topology


@dataclass(frozen=True, slots=True)
class TensorParallelRun:
    ttft_s: float
    end_s: float
    output_tokens: int
    allreduce_share: float  # of the whole request's time

    @property
    def tpot_s(self) -> float:
        return (self.end_s - self.ttft_s) / max(self.output_tokens, 1)


class TensorParallelEdge:
    def __init__(self, model: ModelSpec, quant: QuantScheme, engine: EngineProfile, topology: Topology,
                 hardware: list[HardwareSpec]) -> None:
        self.model, self.quant, self.topology = model, quant, topology
        ranks = len(topology.devices)
        self.costs = [CostModel(model, hw, quant, engine, tp=ranks) for hw in hardware]
        self.overlap = engine.overlap_scheduling
        self._allreduce: dict[float, float] = {}

    def allreduce_s(self, nbytes: float) -> float:
        """One ring all-reduce of `nbytes` over the topology (simulated; cached by size)."""
        cached = self._allreduce.get(nbytes)
        if cached is not None:
            return cached
        ranks = len(self.topology.devices)
        if ranks == 1:
            return 0.0
        loop = EventLoop()
        links = [Link(loop, spec.bandwidth_bytes_per_s, spec.latency_s) for spec in self.topology.links]
        routes = [self.topology.route(i, (i + 1) % ranks) for i in range(ranks)]
        chunk = nbytes / ranks
        state = {"pending": 0, "steps": 0, "key": 0}

        def step() -> None:
            if state["steps"] == 2 * (ranks - 1):
                return
            state["steps"] += 1
            state["pending"] = ranks
            for route in routes:
                send(route, 0)

        def send(route: list[int], hop: int) -> None:
            if hop == len(route):
                state["pending"] -= 1
                if state["pending"] == 0:
                    step()
                return
            state["key"] += 1
            links[route[hop]].send(state["key"], chunk, lambda: send(route, hop + 1))

        step()
        loop.run()
        self._allreduce[nbytes] = loop.now
        return loop.now

    def forward_s(self, new: int, cached: int) -> tuple[float, float]:
        """(time, all-reduce time) of one forward of one sequence."""
        shape = BatchShape()
        shape.add(new, cached, logits=new if cached and new > 1 else 1)
        device_s, reductions = 0.0, 0
        for cost in self.costs:
            iteration = cost.iteration(shape)
            ops_s = sum(op.time_s for op in iteration.operators if op.name != "tp_allreduce")
            # how many all-reduces a forward runs: the cost model's count (perf/collectives.py), timed here instead
            reductions = sum(op.count for op in iteration.operators if op.name == "tp_allreduce")
            host_s = iteration.host_s
            device_s = max(device_s, max(ops_s, host_s) if self.overlap else ops_s + host_s)
        comm_s = reductions * self.allreduce_s(hidden_state_bytes(self.model, self.quant, new))
        return device_s + comm_s, comm_s

    def run(self, prompt_tokens: int, output_tokens: int) -> TensorParallelRun:
        """One request: the prompt in one forward, then plain autoregressive decode."""
        ttft_s, comm_s = self.forward_s(prompt_tokens, 0)
        now = ttft_s
        for step in range(output_tokens):
            forward_s, step_comm_s = self.forward_s(1, prompt_tokens + step)
            now += forward_s
            comm_s += step_comm_s
        return TensorParallelRun(ttft_s, now, output_tokens, comm_s / now if now else 0.0)
