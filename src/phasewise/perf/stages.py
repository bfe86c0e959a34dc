"""Pipeline stages: how one iteration's time splits across the pp stages of a pipeline-parallel group.

The model's num_layers layers are cut into pp stages of at most layers_per_stage = ceil(num_layers / pp)
layers; the embedding gather runs on the first stage, the final norm + LM head + sampling on the last,
and the activations cross each of the pp - 1 stage boundaries once (pp_send_recv, one hop each). The
cost model prices layers_per_stage layers; a stage of k layers costs k / layers_per_stage of that.

An iteration's latency is the sum of its stages (one batch passes through them in turn) plus the
engine's host overhead, which is paid once per iteration, not per stage. Its stage time (what bounds a
full pipeline's throughput) is the slowest stage plus that host overhead, where the slowest stage runs
a full layers_per_stage layers, the heavier of embedding and LM head, and one transfer (Pipeline.times).
IterationParts forms the stages so that the end stage carrying that heavier operator is exactly this:
  - each boundary's transfer is charged to the stage on its side toward that heavy end (the receiver
    when the LM head outweighs the embedding, the usual case; the sender otherwise);
  - the pp x layers_per_stage - num_layers layers the stages fall short of are taken, one per stage,
    from the stages at the other end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phasewise.perf.operators import FIXED_OPERATORS, GROUPS, OPERATOR_GROUP, OperatorCost

NOT_PER_LAYER = (*FIXED_OPERATORS, "pp_send_recv")


@dataclass(slots=True)
class StageParts:
    """Time of one pipeline stage's share of an iteration, by operator group (see operators.OPERATOR_GROUP)."""

    layers: int
    attention_s: float  # attention over the KV cache
    dense_s: float  # GEMMs: qkv/o projections, MLP or MoE experts, router; the LM head on the last stage
    elementwise_s: float  # norms, RoPE, activation; the embedding gather on the first stage
    communication_s: float  # TP all-reduces of its layers, and the PP activation transfer charged to it
    host_launch_s: float = 0.0  # eager: the host's kernel launches beyond the device time (EAGER_DISPATCH)

    @property
    def time_s(self) -> float:
        return self.attention_s + self.dense_s + self.elementwise_s + self.communication_s + self.host_launch_s


@dataclass(slots=True)
class IterationParts:
    """One iteration by pipeline stage and operator group; host overhead is per iteration (see module doc)."""

    stages: tuple[StageParts, ...]  # first to last
    host_s: float
    host_overlapped: bool = False  # the engine overlaps host work with the device (max, not sum)

    def _with_host(self, device_s: float) -> float:
        return max(device_s, self.host_s) if self.host_overlapped else device_s + self.host_s

    @property
    def latency_s(self) -> float:
        """= CostModel.iteration(shape).latency_s"""
        return self._with_host(sum(stage.time_s for stage in self.stages))

    @property
    def stage_s(self) -> float:
        """= CostModel.iteration(shape).stage_s"""
        return self._with_host(max(stage.time_s for stage in self.stages))

    @property
    def attention_s(self) -> float:
        return sum(stage.attention_s for stage in self.stages)

    @property
    def dense_s(self) -> float:
        return sum(stage.dense_s for stage in self.stages)

    @property
    def elementwise_s(self) -> float:
        return sum(stage.elementwise_s for stage in self.stages)

    @property
    def host_launch_s(self) -> float:
        return sum(stage.host_launch_s for stage in self.stages)

    @property
    def communication_s(self) -> float:
        return sum(stage.communication_s for stage in self.stages)


class Pipeline:
    """num_layers layers over `stages` pipeline stages of at most layers_per_stage layers."""

    __slots__ = ("num_layers", "stages", "layers_per_stage")

    def __init__(self, num_layers: int, stages: int) -> None:
        self.num_layers, self.stages = num_layers, stages
        self.layers_per_stage = math.ceil(num_layers / stages)

    def times(self, layers_s: float, embedding_s: float, lm_head_s: float, send_s: float) -> tuple[float, float]:
        """(latency_s, stage_s) without host overhead, from the time of layers_per_stage layers, the embedding,
        the LM head, and all pp - 1 activation transfers together."""
        if self.stages == 1:
            stage_s = layers_s + embedding_s + lm_head_s
            return stage_s, stage_s
        latency_s = layers_s / self.layers_per_stage * self.num_layers + embedding_s + lm_head_s + send_s
        return latency_s, layers_s + max(embedding_s, lm_head_s) + send_s / (self.stages - 1)

    def stage_layers(self, heavy_end_last: bool) -> list[int]:
        """Layers of each stage, first to last: layers_per_stage, less one on each of the stages the count
        falls short by, taken from the end opposite the heavy one."""
        layers = [self.layers_per_stage] * self.stages
        short = self.stages * self.layers_per_stage - self.num_layers
        for index in (range(short) if heavy_end_last else range(self.stages - short, self.stages)):
            layers[index] -= 1
        return layers

    def split(self, operators: list[OperatorCost], host_s: float, host_overlapped: bool = False) -> IterationParts:
        """IterationParts of an iteration's operators (CostModel.iteration(shape).operators)."""
        layers_s = dict.fromkeys(GROUPS, 0.0)  # layers_per_stage layers' time, by group
        for op in operators:
            if op.name not in NOT_PER_LAYER:
                layers_s[OPERATOR_GROUP[op.name]] += op.time_s
        _, embedding_s, lm_head_s, send_s = stage_inputs(operators)
        hop_s = send_s / (self.stages - 1) if self.stages > 1 else 0.0
        heavy_end_last = lm_head_s >= embedding_s
        last = self.stages - 1
        stages = []
        for index, layers in enumerate(self.stage_layers(heavy_end_last)):
            share = layers / self.layers_per_stage
            pays_hop = index != 0 if heavy_end_last else index != last  # receiver, or sender
            stages.append(StageParts(
                layers=layers,
                attention_s=share * layers_s["attention"],
                dense_s=share * layers_s["dense"] + (lm_head_s if index == last else 0.0),
                elementwise_s=share * layers_s["elementwise"] + (embedding_s if index == 0 else 0.0),
                communication_s=share * layers_s["communication"] + (hop_s if pays_hop else 0.0),
                host_launch_s=share * layers_s["host"],
            ))
        return IterationParts(tuple(stages), host_s, host_overlapped)


def stage_inputs(operators: list[OperatorCost]) -> tuple[float, float, float, float]:
    """What Pipeline.times takes, from an iteration's operators: (time of layers_per_stage layers, embedding,
    LM head, all PP transfers)."""
    times: dict[str, float] = {}
    for op in operators:  # a name may come twice (attention DP's all-reduce over the attention TP group, the MoE's)
        times[op.name] = times.get(op.name, 0.0) + op.time_s
    layers_s = sum(time_s for name, time_s in times.items() if name not in NOT_PER_LAYER)
    return layers_s, times["embedding"], times["lm_head"], times.get("pp_send_recv", 0.0)
