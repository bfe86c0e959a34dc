"""An iteration's operators re-costed on the substrates an operator mapping places them on (HALO, CENT, AttAcc).

CostModel.iteration() gives each operator's FLOPs and bytes; here its bytes split into stationary bytes (the
weights of a GEMM, the KV cache of attention: what stays in memory) and activation bytes (what flows in and
out), and each operator costs, on its substrate (specs/substrates.py):
  digital  max(FLOPs / flops_per_s, all bytes / DRAM bandwidth)
  cid      max(FLOPs / flops_per_s, stationary / internal bandwidth + activations / external bandwidth)
  cim      MACs / (arrays x rows x ADCs x sample rate / slices) + programmed bytes / min(write rate, source
           DRAM bandwidth); the stationary bytes of every operator a phase puts on the CiM share its capacity:
           when they exceed it, the excess is programmed again every pass (each operator its share); the KV
           the pass's own tokens make (a prompt's) is in no array yet and is programmed at least once.
Operators of one sequence at low batch run one after another: the iteration is their sum plus the
movements, an activation crossing from one substrate to another between consecutive operator classes
(bytes / the slower port + both ports' latency, per layer), and in prefill the prompt's KV cache handed to
the substrate decode's attention reads it on. Energy: FLOPs (or MACs and ADC conversions)
times their pJ, bytes times the pJ of where they are read, programmed bytes, crossings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel, OperatorCost
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer
from phasewise.perf.operators import EAGER_DISPATCH
from phasewise.specs.mappings import Mapping, resolve_mapping
from phasewise.specs.substrates import ComputeInDram, ComputeInMemory, DigitalUnit, Substrate

PJ = 1e-12

# CostModel operator -> operator class (specs/mappings.py)
OPERATOR_CLASS = {
    "embedding": "embedding", "elementwise": "norms", "qkv_proj": "qkv", "attention": "attention",
    "o_proj": "o_proj", "mlp_gate_up": "ffn", "mlp_down": "ffn", "moe_router": "ffn", "moe_experts": "ffn",
    "moe_shared": "ffn", "moe_latent_proj": "ffn", "lm_head": "lm_head",
}


@dataclass(slots=True)
class MappedOperator:
    """One operator of the iteration on its substrate (summed over its layers)."""

    name: str
    op_class: str
    substrate: str
    kind: str
    count: int
    flops: float
    stationary_bytes: float  # weights (GEMMs) or KV cache (attention)
    activation_bytes: float
    programmed_bytes: float  # written into CiM arrays this pass (0 elsewhere)
    compute_s: float
    memory_s: float
    program_s: float
    time_s: float
    energy_j: float


@dataclass(slots=True)
class Movement:
    """Activations crossing between two substrates at one boundary of the layer, over all layers."""

    edge: str
    source: str
    target: str
    bytes: float
    time_s: float
    energy_j: float


@dataclass(slots=True)
class MappedIteration:
    phase: str
    operators: list[MappedOperator]
    movements: list[Movement]

    @property
    def latency_s(self) -> float:
        return sum(op.time_s for op in self.operators) + sum(m.time_s for m in self.movements)

    @property
    def energy_j(self) -> float:
        """Dynamic energy: the work's (FLOPs, MACs and conversions, bytes, programming, crossings), no static power."""
        return sum(op.energy_j for op in self.operators) + sum(m.energy_j for m in self.movements)

    @property
    def dynamic_power_w(self) -> float:
        return self.energy_j / self.latency_s if self.latency_s > 0 else 0.0

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.operators)

    @property
    def bytes(self) -> float:
        """Bytes the operators read and write (stationary + activations)."""
        return sum(op.stationary_bytes + op.activation_bytes for op in self.operators)

    def bound(self, host_s: float = 0.0) -> str:
        """What accounts for most of the iteration's time: each operator's compute, memory or (CiM) programming,
        the movements between substrates, or the engine's host work (`host_s`, as IterationCost.bound counts it)."""
        by: dict[str, float] = {"dispatch": host_s, "movement": sum(m.time_s for m in self.movements)}
        for op in self.operators:
            roof = max((("compute", op.compute_s), ("memory", op.memory_s), ("program", op.program_s)),
                       key=lambda pair: pair[1])[0]
            by[roof] = by.get(roof, 0.0) + op.time_s
        return max(by, key=by.__getitem__)

    def by_substrate(self) -> dict[str, tuple[float, float]]:
        """substrate -> (time_s, energy_j), movements under 'movement'."""
        out: dict[str, tuple[float, float]] = {}
        for op in self.operators:
            t, e = out.get(op.substrate, (0.0, 0.0))
            out[op.substrate] = (t + op.time_s, e + op.energy_j)
        if self.movements:
            out["movement"] = (sum(m.time_s for m in self.movements), sum(m.energy_j for m in self.movements))
        return out


@dataclass(slots=True)
class MappedPhases:
    """A prefill and a decode step under one mapping (what `estimate --mapping` shows): each iteration on the
    substrates, the engine's host work for it, and the iteration's time with that work as the engine adds it
    (CostModel._with_host: after the device's, or under it where the engine schedules ahead)."""

    mapping: str
    prefill: MappedIteration
    decode: MappedIteration
    tdp_w: float  # the chip's: a phase whose dynamic power exceeds it cannot run at the substrates' rates
    prefill_host_s: float
    decode_host_s: float
    prefill_s: float  # the prefill iteration's time, its host work included
    decode_s: float  # the decode step's
    host_overlapped: bool  # the engine's host work runs under the device's (overlap scheduling)


@dataclass(slots=True)
class RequestCost:
    """One request on a mapping: prefill of the prompt, then `output_len` decode steps at growing context."""

    mapping: str
    prompt_len: int
    output_len: int
    prefill: MappedIteration
    decode_s: float
    decode_j: float
    decode_first: MappedIteration  # the first decode step (context = prompt)

    @property
    def latency_s(self) -> float:
        return self.prefill.latency_s + self.decode_s

    @property
    def energy_j(self) -> float:
        return self.prefill.energy_j + self.decode_j


class MappedCost:
    """Iterations of one CostModel's model on a chip's substrates under one mapping (TP = PP = 1)."""

    def __init__(self, cost_model: CostModel, mapping: Mapping) -> None:
        if cost_model.tp != 1 or cost_model.pp != 1:
            raise PhasewiseError("an operator mapping places one chip's operators on its substrates: use tp=1, pp=1")
        if cost_model.model.latent_attention:
            raise PhasewiseError(f"operator mappings do not model latent attention yet ({cost_model.model.name})")
        if cost_model.model.linear_attention_layers:
            raise PhasewiseError(f"operator mappings do not model linear-attention layers yet ({cost_model.model.name})")
        if not cost_model.model.uniform_layers:
            raise PhasewiseError("operator mappings do not model layers that are not all alike yet (attention heads of "
                                 "more than one width, KV-shared layers, per-layer embeddings: "
                                 f"{cost_model.model.name})")
        self.cm, self.mapping = cost_model, mapping
        self.placement = resolve_mapping(mapping, cost_model.hw)
        m = cost_model.model
        self.hidden = m.hidden_size
        self.q_width = cost_model.heads * m.head_dim
        self.qkv_width = (cost_model.heads + 2 * cost_model.kv_heads) * m.head_dim
        self.kv_bytes_per_token = kv_bytes_per_token_layer(m, cost_model.quant, cost_model.tp)  # one layer
        self.weight_bits = 8.0 * cost_model.w_bytes
        self.kv_bits = 8.0 * cost_model.kv_bytes

    # --- what each operator reads -------------------------------------------------------------------------
    def _activation_bytes(self, op: OperatorCost, tokens: int, logit_tokens: int) -> float:
        """Bytes flowing in and out of `op`: a projection's input and output, the MLP's hidden state in and out
        (its intermediate stays in the substrate's buffers between its GEMMs: the gate / up GEMM reads the hidden
        state, the down GEMM writes it, a fused expert or shared-expert block does both)."""
        cm, ab, h = self.cm, self.cm.a_bytes, self.hidden
        widths = {"qkv_proj": h + self.qkv_width, "o_proj": self.q_width + h, "attention": 2 * self.q_width,
                  "mlp_gate_up": h, "mlp_down": h, "moe_experts": 2 * h, "moe_shared": 2 * h, "moe_router": h,
                  "moe_latent_proj": 2 * h}
        if op.name in widths:
            return min(op.bytes, tokens * widths[op.name] * ab * op.count)
        if op.name == "lm_head":
            vocab = cm.model.vocab_size
            return logit_tokens * ((h + vocab) * ab + vocab * 4.0)
        return op.bytes  # elementwise work and the embedding gather: all of it streams

    def _gemm_io_bytes(self, op: OperatorCost, tokens: int) -> float | None:
        """Every activation byte the MLP-class operator's GEMMs read and write, its intermediate included, as
        perf/layer_gemms.py counts them (TP 1): the rest of its bytes are its weights. None for other operators."""
        m, h = self.cm.model, self.hidden
        up, inter = m.mlp_matrices - 1, m.intermediate_size * m.dense_mlp_width_factor
        if op.name == "mlp_gate_up":
            width = h + up * inter
        elif op.name == "mlp_down":
            width = inter + h
        elif op.name == "moe_experts":  # top-k rows through both GEMMs, then the combine reads them and writes one
            he, k, expert = m.expert_hidden_size, m.experts_per_token, m.expert_intermediate_size
            width = k * (2 * he + (up + 1) * expert) + (k + 1) * he
        elif op.name == "moe_shared":
            width = 2 * h + (up + 1) * m.shared_expert_intermediate_size
        elif op.name == "moe_router":
            width = h + m.num_experts
        elif op.name == "moe_latent_proj":
            width = 2 * (h + m.moe_latent_size)
        else:
            return None
        return tokens * width * self.cm.a_bytes * op.count

    def _stationary_bytes(self, op: OperatorCost, shape: BatchShape, activation: float) -> float:
        """The bytes the operator holds still while its activations stream: the KV cache it attends over, or its
        weights (the MLP's by what its GEMMs' activations leave of its bytes, the intermediate not among them)."""
        if op.name == "attention":  # the KV cache read, as its own formula (the kernel's bytes include more)
            return (shape.prefill_kv_tokens + shape.decode_kv_tokens) * self.kv_bytes_per_token * op.count
        io = self._gemm_io_bytes(op, shape.tokens)
        return max(op.bytes - (activation if io is None else io), 0.0)

    def _new_kv_bytes(self, op: OperatorCost, shape: BatchShape) -> float:
        """The K and V this iteration's tokens make (attention: every new token's, over its layers; 0 for a GEMM):
        never in the CiM's crossbars before the pass that makes them."""
        return shape.tokens * self.kv_bytes_per_token * op.count if op.name == "attention" else 0.0

    # --- one iteration ----------------------------------------------------------------------------------
    def iteration(self, shape: BatchShape, phase: str) -> MappedIteration:
        """iteration(shape) of the CostModel with each operator on the substrate `phase` maps its class to."""
        cost = self.cm.iteration(shape)
        placement = self.placement[phase]
        rows = []
        for op in cost.operators:
            if op.name == EAGER_DISPATCH:  # host launch time: substrates are priced by their own compute and memory
                continue
            op_class = OPERATOR_CLASS.get(op.name)
            if op_class is None:
                raise PhasewiseError(f"operator '{op.name}' has no operator class an operator mapping places")
            activation = self._activation_bytes(op, shape.tokens, shape.logit_tokens)
            rows.append((op, op_class, placement[op_class], activation, self._stationary_bytes(op, shape, activation)))
        # the CiM's capacity is shared by the stationary bytes of every operator it runs this pass
        on_cim: dict[str, float] = {}
        for _, _, part, _, stationary in rows:
            if part.kind == "cim":
                on_cim[part.name] = on_cim.get(part.name, 0.0) + stationary
        operators = []
        for op, op_class, part, activation, stationary in rows:
            programmed = 0.0
            if isinstance(part, ComputeInMemory):
                programmed = cim_programmed_bytes(stationary, on_cim[part.name], part.capacity_bytes,
                                                  self._new_kv_bytes(op, shape))
            bits = self.kv_bits if op_class == "attention" else self.weight_bits
            operators.append(substrate_cost(part, op, op_class, stationary, activation, programmed, bits))
        return MappedIteration(phase, operators, self._movements(placement, shape, phase))

    def _movements(self, placement: dict[str, Substrate], shape: BatchShape, phase: str) -> list[Movement]:
        """Activation crossings at the boundaries of the layer (in the order it runs) whose two sides differ, and in
        prefill the KV cache's hand-off to the substrate decode's attention reads it on."""
        layers = self.cm.layers_per_stage
        ab, tokens = self.cm.a_bytes, shape.tokens
        edges = (  # (from, to, bytes per token, times per iteration)
            ("embedding", "norms", self.hidden, 1), ("norms", "qkv", self.hidden, layers),
            ("qkv", "attention", self.qkv_width, layers), ("attention", "o_proj", self.q_width, layers),
            ("o_proj", "norms", self.hidden, layers), ("norms", "ffn", self.hidden, layers),
            ("ffn", "norms", self.hidden, layers),
        )
        out = []
        for source, target, width, times in edges:
            out.append(crossing(f"{source}->{target}", placement[source], placement[target],
                                tokens * width * ab * times, times))
        out.append(crossing("norms->lm_head", placement["norms"], placement["lm_head"],
                            shape.logit_tokens * self.hidden * ab, 1))
        if phase == "prefill":  # the prompt's K and V go to where decode's attention reads the cache
            out.append(crossing("kv->decode", placement["attention"], self.placement["decode"]["attention"],
                                shape.prefill_tokens * self.kv_bytes_per_token * layers, layers))
        return [m for m in out if m.bytes > 0 and m.source != m.target]

    # --- a whole request ----------------------------------------------------------------------------------
    def request(self, prompt_len: int, output_len: int, batch: int = 1, samples: int = 9) -> RequestCost:
        """Prefill of `batch` prompts, then `output_len` decode steps at contexts prompt .. prompt+output-1.
        Each step's cost is linear in its context but for the CiM's capacity (a kink where its stationary
        bytes pass the capacity): `samples` contexts, integrated by the trapezoid rule over the steps (one sample: the
        middle step's cost, once for every step)."""
        if prompt_len < 1 or output_len < 1 or batch < 1 or samples < 1:
            raise PhasewiseError(f"a request needs prompt_len, output_len, batch and samples >= 1 (got prompt_len="
                                 f"{prompt_len}, output_len={output_len}, batch={batch}, samples={samples})")
        model = self.cm.model

        def decode_step(step: int) -> MappedIteration:
            return self.iteration(BatchShape.uniform(batch, 1, prompt_len + step, model.causal,
                                                     model.window_all_layers), "decode")

        prefill = self.iteration(BatchShape.uniform(batch, prompt_len, 0, model.causal, model.window_all_layers),
                                 "prefill")
        if samples == 1:
            steps = np.array([(output_len - 1) // 2])
        else:
            steps = np.unique(np.linspace(0, output_len - 1, min(samples, output_len)).round().astype(int))
        times, energies = [], []
        its = [decode_step(int(step)) for step in steps]
        for it in its:
            times.append(it.latency_s)
            energies.append(it.energy_j)
        first = its[0] if steps[0] == 0 else decode_step(0)
        decode_s, decode_j = _steps_sum(steps, times, output_len), _steps_sum(steps, energies, output_len)
        return RequestCost(self.mapping.name, prompt_len, output_len, prefill, decode_s, decode_j, first)


def _steps_sum(steps: np.ndarray, values: list[float], count: int) -> float:
    """Sum over the `count` steps 0 .. count-1 of a quantity sampled at `steps`: trapezoids between samples that span
    them (steps[0] = 0, steps[-1] = count - 1), or one sample standing for every step."""
    if len(steps) == 1:
        return float(values[0]) * count
    widths = np.diff(steps).astype(float)
    ys = np.asarray(values)
    # for a line f: sum_{j=a..b} f(j) = integral_a^b f + (f(a) + f(b)) / 2 (exact; trapezoids between samples)
    return float(np.sum((ys[:-1] + ys[1:]) / 2.0 * widths) + (ys[0] + ys[-1]) / 2.0)


def cim_programmed_bytes(stationary: float, on_cim: float, capacity: float, new: float = 0.0) -> float:
    """Bytes an operator writes into the CiM's arrays in one pass: the stationary bytes (`stationary`) of every
    operator the pass puts on the CiM (`on_cim`) share its `capacity`, each in proportion; what does not fit is
    programmed again every pass (the steady-state rule: weights that fit stay), and bytes made this pass (`new`: a
    prompt's KV) are in no array yet, so at least they are written, once: max(excess share, new)."""
    excess = stationary * (1.0 - capacity / on_cim) if on_cim > capacity else 0.0
    return max(excess, new)


def substrate_cost(part: Substrate, op: OperatorCost, op_class: str, stationary: float, activation: float,
                   programmed: float, weight_bits: float) -> MappedOperator:
    """One operator's time and energy on `part` (the module docstring's formulas)."""
    flops, program_s = op.flops, 0.0
    if isinstance(part, DigitalUnit):
        compute_s = flops / part.flops_per_s
        memory_s = (stationary + activation) / part.memory_bandwidth_bytes_per_s
        time_s = max(compute_s, memory_s)
        energy_pj = flops * part.energy_pj_per_flop + (stationary + activation) * part.memory_energy_pj_per_byte
    elif isinstance(part, ComputeInDram):
        compute_s = flops / part.flops_per_s
        memory_s = stationary / part.internal_bandwidth_bytes_per_s + activation / part.external_bandwidth_bytes_per_s
        time_s = max(compute_s, memory_s)
        energy_pj = (flops * part.energy_pj_per_flop + stationary * part.internal_energy_pj_per_byte
                     + activation * part.external_energy_pj_per_byte)
    else:
        macs = flops / 2.0
        slices = part.slices(weight_bits)
        compute_s = macs / part.macs_per_s(weight_bits)
        memory_s = 0.0  # operands sit in the arrays; activations arrive as movements
        program_s = programmed / min(part.program_bandwidth_bytes_per_s, part.weight_source_bandwidth_bytes_per_s)
        time_s = compute_s + program_s  # an array being written does not compute (no double buffering)
        conversions = macs * slices / part.array_rows
        energy_pj = (macs * slices * part.energy_pj_per_mac + conversions * part.adc_conversion_pj
                     + programmed * (part.program_energy_pj_per_byte + part.weight_source_energy_pj_per_byte))
    return MappedOperator(op.name, op_class, part.name, part.kind, op.count, flops, stationary, activation,
                          programmed, compute_s, memory_s, program_s, time_s, energy_pj * PJ)


def crossing(edge: str, source: Substrate, target: Substrate, nbytes: float, times: int) -> Movement:
    """`nbytes` crossing from `source` to `target` in `times` transfers (none when they are the same part)."""
    if source.name == target.name:
        return Movement(edge, source.name, target.name, nbytes, 0.0, 0.0)
    bandwidth = min(source.port.bandwidth_bytes_per_s, target.port.bandwidth_bytes_per_s)
    time_s = nbytes / bandwidth + times * (source.port.latency_s + target.port.latency_s)
    energy_j = nbytes * (source.port.energy_pj_per_byte + target.port.energy_pj_per_byte) * PJ
    return Movement(edge, source.name, target.name, nbytes, time_s, energy_j)
