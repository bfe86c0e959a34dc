"""A model split into consecutive layer ranges placed on devices: each stage's compute time and memory.

A stage of k layers is costed by CostModel on a copy of the model with num_layers = k, on its device's
hardware: its layers, plus the embedding gather on the first stage only and the final norm + LM head on the
last stage only (CostModel prices both on every pp=1 model; the other stages drop them, so nothing is
counted twice). Medusa heads (one LM-head-sized projection each; their hidden x hidden ResBlock, ~11 % of a
head's weights for Vicuna-7B, is left out) run on the last stage. What crosses a stage boundary is the
hidden states: tokens x hidden_size x activation bytes (SplitModel.boundary_bytes: with Gemma 4 E2B / E4B's
per-layer embeddings each later layer's input too, and the KV that later KV-shared layers reuse). A hybrid
stack's stage holds the linear and windowed layers its range has where the config names each layer's kind
(ModelSpec.layer_pattern), else the stack's share of them (ModelSpec.stack_part); a linear layer keeps a recurrent
state per sequence where a softmax layer keeps KV; a stage of KV-shared layers whose source sits upstream keeps a
copy of the source's KV.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer, window_kv_ratio
from phasewise.perf.memory import (
    activation_bytes,
    kv_bytes_per_token,
    recurrent_state_bytes_per_sequence,
    weight_bytes_per_gpu,
)
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes
from phasewise.specs.topology import Topology, parse_split

TOKEN_ID_BYTES = 8  # sampled token ids sent back to the first stage (int64, as torch sends them)


def hidden_state_bytes(model: ModelSpec, quant: QuantScheme, tokens: int) -> float:
    """Bytes of the hidden states of `tokens` tokens crossing a stage boundary."""
    return tokens * model.hidden_size * quant.activation_bytes


@dataclass(frozen=True, slots=True)
class Stage:
    device: int  # index into the topology's devices
    first_layer: int
    end_layer: int  # exclusive

    @property
    def layers(self) -> int:
        return self.end_layer - self.first_layer


class SplitModel:
    """Stages of `model` over `topology`'s devices (stage i on device i), with cached stage costs."""

    __slots__ = ("model", "quant", "engine", "topology", "hardware", "stages", "medusa_heads", "_costs", "_times",
                 "_routes")

    def __init__(self, model: ModelSpec, quant: QuantScheme, engine: EngineProfile, topology: Topology,
                 hardware: list[HardwareSpec], split, medusa_heads: int = 0) -> None:
        if model.compressed is not None:
            raise PhasewiseError(f"device splits of compressed attention ({model.name}) are not modelled yet")
        if not model.causal:  # its stages pipeline token-by-token decode steps, drafts and heads
            raise PhasewiseError(f"model '{model.name}' is a diffusion LM (bidirectional, decoded block by block): a "
                                 "split across devices decodes token by token; give an autoregressive model "
                                 "(`simulate --dllm` serves a diffusion LM)")
        ranges = parse_split(split, model.num_layers, len(topology.devices))
        self.model, self.quant, self.engine, self.topology = model, quant, engine, topology
        self.hardware = hardware
        self.stages = tuple(Stage(i, a, b) for i, (a, b) in enumerate(ranges))
        self.medusa_heads = medusa_heads
        self._costs: dict[tuple[int, int, int], CostModel] = {}
        self._times: dict[tuple, float] = {}  # by (device, layers, first layer, first, last, sequences)
        self._routes: dict[tuple[int, int], list[int]] = {}

    def resplit(self, split) -> SplitModel:
        """The same model, devices and links split as `split`, sharing this one's cost, stage-time and route
        caches (a stage's time depends on its device, its layers and whether it is first or last)."""
        other = SplitModel(self.model, self.quant, self.engine, self.topology, self.hardware, split,
                           self.medusa_heads)
        other._costs, other._times, other._routes = self._costs, self._times, self._routes
        return other

    def route(self, src: int, dst: int) -> list[int]:
        """topology.route(src, dst), cached."""
        path = self._routes.get((src, dst))
        if path is None:
            path = self._routes[(src, dst)] = self.topology.route(src, dst)
        return path

    @property
    def split(self) -> list[int]:
        return [s.layers for s in self.stages]

    def cost_model(self, device: int, layers: int, first_layer: int = 0) -> CostModel:
        """The part of `layers` layers from `first_layer` (ModelSpec.stack_part) on `device`'s hardware."""
        key = (device, layers, self._place(first_layer))
        cost = self._costs.get(key)
        if cost is None:
            part = self.model.stack_part(layers, first_layer)
            cost = self._costs[key] = CostModel(part, self.hardware[device], self.quant, self.engine)
        return cost

    def stage_part(self, index: int) -> ModelSpec:
        """The layers stage `index` holds, as a model of their own (ModelSpec.stack_part)."""
        stage = self.stages[index]
        return self.cost_model(stage.device, stage.layers, stage.first_layer).model

    def _place(self, first_layer: int) -> int:
        """A part's first layer as its costs depend on it (0 where parts do not differ by place)."""
        return first_layer if self.model.parts_vary_by_place else 0

    def boundary_bytes(self, index: int, tokens: int) -> float:
        """Bytes of `tokens` tokens crossing from stage `index` to the next: the hidden states; with per-layer
        embeddings (Gemma 4 E2B / E4B, gathered and projected on the first stage) each later layer's input; and the
        new KV of each layer whose KV later KV-shared layers reuse (ModelSpec.kv_share_sources) when it sits
        before the boundary (the stage past it keeps a copy to attend over)."""
        m, boundary = self.model, self.stages[index].end_layer
        nbytes = hidden_state_bytes(m, self.quant, tokens)
        if m.per_layer_input_size:
            nbytes += tokens * (m.num_layers - boundary) * m.per_layer_input_size * self.quant.activation_bytes
        for layer, windowed in m.kv_share_sources if m.kv_shared_layers else ():
            if layer < boundary:
                one = kv_bytes_per_token_layer(m, self.quant, 1)
                nbytes += tokens * (one * window_kv_ratio(m, 1) if windowed else one)
        return nbytes

    def stage_s(self, index: int, sequences: list[tuple[int, int, int]]) -> float:
        """Compute time of stage `index` for one forward of `sequences` (new tokens, cached tokens, logit tokens)
        each: its layers, the embedding if first, the LM head (and Medusa heads) if last, host overhead."""
        stage = self.stages[index]
        first, last = index == 0, index == len(self.stages) - 1
        key = (stage.device, stage.layers, self._place(stage.first_layer), first, last, tuple(sequences))
        cached = self._times.get(key)
        if cached is not None:
            return cached
        shape = BatchShape()
        for new, context, logits in sequences:
            shape.add(new, context, logits=logits)
        cost = self.cost_model(stage.device, stage.layers, stage.first_layer).iteration(shape)
        device_s = 0.0
        for op in cost.operators:
            if op.name == "embedding" and not first or op.name == "lm_head" and not last:
                continue
            if op.name == "embedding" and self.model.per_layer_input_size and stage.layers < self.model.num_layers:
                # the first stage gathers and projects every layer's per-layer input, not its own layers' only
                whole = self.cost_model(stage.device, self.model.num_layers).iteration(shape)
                op = next(o for o in whole.operators if o.name == "embedding")
            device_s += op.time_s
            if op.name == "lm_head" and last:
                device_s += self.medusa_heads * op.time_s
        host_s = cost.host_s
        time_s = max(device_s, host_s) if self.engine.overlap_scheduling else device_s + host_s
        self._times[key] = time_s
        return time_s

    def stage_memory_bytes(self, index: int, context_tokens: int, batch_tokens: int, sequences: int) -> float:
        """Weights of a stage (embedding on the first, LM head and Medusa heads on the last), the KV cache of
        `context_tokens`, a hybrid's linear layers' recurrent state for each of `sequences`, the activation peak of a
        forward of `batch_tokens`, and the runtime's reserve."""
        stage = self.stages[index]
        part = self.model.stack_part(stage.layers, stage.first_layer)
        hp = dtype_bytes(self.quant.compute_dtype if self.quant.compute_dtype in ("fp32", "fp16") else "bf16")
        embed = self.model.embedding_params * hp
        lm_head = embed if not self.model.tie_embeddings else 0.0
        # per-layer embeddings (table and projection) all on the first stage, which computes every layer's input
        weights = weight_bytes_per_gpu(part, self.quant, 1, 1) - embed - lm_head - part.per_layer_input_params * hp
        if index == 0:
            weights += embed + self.model.per_layer_input_params * hp
        if index == len(self.stages) - 1:
            weights += lm_head if lm_head else embed * (index != 0)
            weights += self.medusa_heads * embed
        kv = kv_bytes_per_token(part, self.quant, 1, 1) * context_tokens  # its softmax layers' (a hybrid's share)
        state = recurrent_state_bytes_per_sequence(part, self.quant, 1, 1, self.engine.recurrent_state_dtype)
        act = activation_bytes(self.model, self.quant, 1, batch_tokens, sequences)
        return weights + kv + state * sequences + act + self.hardware[stage.device].efficiency.reserved_bytes

    def usable_bytes(self, index: int, memory_fraction: float = 0.9) -> float:
        """The memory stage `index` may fill on its device: `memory_fraction` of it."""
        return self.hardware[self.stages[index].device].memory_capacity_bytes * memory_fraction

    def check_memory(self, context_tokens: int, batch_tokens: int, sequences: int,
                     memory_fraction: float = 0.9) -> None:
        """A one-line error for the first stage that does not fit in its device's memory."""
        for index, stage in enumerate(self.stages):
            need = self.stage_memory_bytes(index, context_tokens, batch_tokens, sequences)
            hw = self.hardware[stage.device]
            usable = self.usable_bytes(index, memory_fraction)
            if need > usable:
                name = self.topology.devices[stage.device].name
                raise PhasewiseError(
                    f"stage {index} (layers {stage.first_layer}-{stage.end_layer - 1}) needs "
                    f"{need / 2**30:.1f} GiB on '{name}' ({hw.key}), which has {usable / 2**30:.1f} GiB usable")

    def fits(self, context_tokens: int, batch_tokens: int, sequences: int, memory_fraction: float = 0.9) -> bool:
        try:
            self.check_memory(context_tokens, batch_tokens, sequences, memory_fraction)
        except PhasewiseError:
            return False
        return True
