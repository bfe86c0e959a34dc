"""Jupiter's parallelism planning: the layer split and the number of prefill sub-sequences S that minimise the
simulated TTFT of a prompt, or its whole latency, on heterogeneous devices and links.

Objective (OBJECTIVES): "ttft", the TTFT of one prompt of `prompt_tokens`, or "total", its last token's time after
`output_tokens` decoded as `decode` plans (outline points, Medusa heads: a stage that runs the heads is slower in
every decode step, which the TTFT does not see), by the event simulation (sim/split_pipeline.py), so the stage
compute, the hidden-state transfers and their contention are all in it; among splits whose every stage fits its
device's memory (weights, the KV cache of prompt + output for each decoded sequence, the activation peak).
Search: for each S in 1..max_sub_sequences, start from the split proportional to each device's speed (its
time for one layer of an n/S-token sub-sequence), and from the best split of the S before, then move 1 to
MAX_SHIFT layers from one stage to any other (the stages between them shifting along) at a time while that lowers
TTFT (steepest descent; contiguous splits only, one stage per device in topology order). Moves of more than one
layer, and past a neighbour, matter where a stage's cost depends on its range (a hybrid's kinds of layer,
ModelSpec.layer_pattern): there moving one layer can cost more than moving three. Given a split (the user's), only
S is searched, for that split.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DecodePlan, run_split, sub_sequence_lengths
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme
from phasewise.specs.topology import Topology

MAX_SHIFT = 3  # layers a boundary may move in one step of the descent
MAX_SUB_SEQUENCES = 16  # the S a plan tries by default: 1 to this
OBJECTIVES = ("ttft", "total")


@dataclass(frozen=True, slots=True)
class EdgePlan:
    split: tuple[int, ...]
    sub_sequences: int
    objective: str  # one of OBJECTIVES
    best_s: float  # the objective's value at the plan: its TTFT, or its last token's time
    by_sub_sequences: tuple[tuple[int, float], ...]  # (S, the objective's best value at that S)
    evaluated: int  # simulations run


def proportional_split(speeds: list[float], layers: int) -> list[int]:
    """`layers` split in proportion to `speeds` (largest remainders), at least one layer each."""
    total = sum(speeds)
    shares = [layers * s / total for s in speeds]
    split = [max(1, int(x)) for x in shares]
    order = sorted(range(len(speeds)), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    k = 0
    while sum(split) < layers:
        split[order[k % len(order)]] += 1
        k += 1
    while sum(split) > layers:  # raising a slow device's share to one layer took it from the stages that have more
        i = max((j for j in range(len(split)) if split[j] > 1), key=lambda j: split[j] - shares[j])
        split[i] -= 1
    return split


def plan_edge_split(model: ModelSpec, quant: QuantScheme, engine: EngineProfile, topology: Topology,
                    hardware: list[HardwareSpec], prompt_tokens: int, output_tokens: int = 0,
                    max_sub_sequences: int = MAX_SUB_SEQUENCES, medusa_heads: int = 0,
                    sub_sequence_options: list[int] | None = None, objective: str = "ttft",
                    decode: DecodePlan | None = None, fixed_split: tuple[int, ...] | None = None) -> EdgePlan:
    """The split and S of least simulated TTFT, or total latency (see module doc); given `fixed_split` (layers per
    stage, the user's), the S of least objective for that split alone."""
    if objective not in OBJECTIVES:
        raise PhasewiseError(f"--objective must be one of {', '.join(OBJECTIVES)} (got '{objective}')")
    stages = len(topology.devices)
    if stages > model.num_layers:
        raise PhasewiseError(f"{stages} devices for {model.num_layers} layers: at least one layer per device")
    cache: dict[tuple, float] = {}
    models: dict[tuple[int, ...], SplitModel] = {}
    probe = SplitModel(model, quant, engine, topology, hardware, [1] * (stages - 1) + [model.num_layers - stages + 1],
                       medusa_heads)

    def split_model(split: tuple[int, ...]) -> SplitModel:
        found = models.get(split)
        if found is None:
            found = models[split] = probe.resplit(list(split))  # every split shares the probe's stage costs
        return found

    plan = decode or DecodePlan()
    context = prompt_tokens + output_tokens + (plan.outline_tokens if plan.points > 1 else 0)
    # by split: the decode after the first token does not depend on S (to 1e-13 without link jitter; with it, the
    # decode's jitter draws are those of a run at S = 1)
    decode_s: dict[tuple[int, ...], float] = {}

    def score(split: tuple[int, ...], sub: int) -> float:
        key = (split, sub)
        if key not in cache:
            sm = split_model(split)
            piece = sub_sequence_lengths(prompt_tokens, sub)[0]
            if not sm.fits(context, piece, plan.points):
                cache[key] = float("inf")
            else:
                cache[key] = run_split(sm, prompt_tokens, 0, sub).ttft_s
                if objective == "total":
                    if split not in decode_s:
                        decode_s[split] = run_split(sm, prompt_tokens, output_tokens, 1, plan).decode_s
                    cache[key] += decode_s[split]
        return cache[key]

    def descend(split: tuple[int, ...], sub: int) -> tuple[float, tuple[int, ...]]:
        current = score(split, sub)
        while True:
            moves = []
            for give in range(stages):
                for take in range(stages):
                    for shift in range(1, min(MAX_SHIFT, split[give] - 1) + 1) if give != take else ():
                        moved = list(split)
                        moved[give] -= shift
                        moved[take] += shift
                        moves.append(tuple(moved))
            scored = min(((score(m, sub), m) for m in moves), default=(float("inf"), split))
            if scored[0] < current:
                current, split = scored
            else:
                return current, split

    options = sub_sequence_options or list(range(1, max_sub_sequences + 1))
    best: tuple[float, tuple[int, ...], int] | None = None
    by_sub = []
    previous: tuple[int, ...] | None = None
    for sub in options:
        if sub > prompt_tokens:
            continue
        if fixed_split is not None:
            current, split = score(tuple(fixed_split), sub), tuple(fixed_split)
        else:
            piece = sub_sequence_lengths(prompt_tokens, sub)[0]
            speeds = [1.0 / _one_layer_s(probe, i, piece) for i in range(stages)]
            starts = {tuple(proportional_split(speeds, model.num_layers))}
            if previous is not None:
                starts.add(previous)
            current, split = min(descend(start, sub) for start in sorted(starts))
        previous = split
        by_sub.append((sub, current))
        if best is None or current < best[0]:
            best = (current, split, sub)
    if best is None or best[0] == float("inf"):
        raise PhasewiseError(f"split {list(fixed_split)} does not fit the devices' memory at any S" if fixed_split
                             else "no layer split fits the devices' memory")
    return EdgePlan(best[1], best[2], objective, best[0], tuple(by_sub), len(cache))


def _one_layer_s(split: SplitModel, device: int, tokens: int) -> float:
    """A device's time for one layer of a `tokens`-token prefill (its speed for the proportional split)."""
    shape = BatchShape()
    shape.add(tokens, 0, logits=0)
    cost = split.cost_model(device, 1).iteration(shape)
    return sum(op.time_s for op in cost.operators if op.name not in ("embedding", "lm_head")) or 1e-12
