"""Energy of the iterations an instance runs on a chip's substrates under an operator mapping (perf/mapped_cost.py),
by substrate, as perf/mapping.py counts it (FLOPs, MACs and ADC conversions, bytes where they are read, CiM
programming, crossings between substrates). Reported in SimResult.policy["mapping"].

A prefill or mixed iteration adds its mapped energy; a decode run of n steps adds n x the energy of its middle step
(contexts grow linearly over a run and a step's energy is linear in its attention pairs and KV tokens, so the
middle step is the run's mean: exact but where the CiM's capacity is crossed within the run, or requests are
cancelled mid-run, or a sliding window caps the contexts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasewise.perf.batch import BatchShape
from phasewise.perf.mapped_cost import MappedCostModel
from phasewise.perf.mapping import MappedIteration

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance


class MappedEnergy:
    """One instance's mapped energy, in total and by substrate (movements under 'movement')."""

    __slots__ = ("cost", "energy_j", "by_substrate_j", "iterations")

    def __init__(self, cost: MappedCostModel) -> None:
        self.cost = cost
        self.energy_j = 0.0
        self.by_substrate_j: dict[str, float] = {}
        self.iterations = 0

    def add_iteration(self, shape: BatchShape) -> None:
        self._add(self.cost.mapped_iteration(shape), 1)

    def add_decode_run(self, inst: Instance, steps: int) -> None:
        """A decode run of `steps` iterations of `inst`'s decoding set, from its current decode step."""
        seqs = inst.running.n
        if not seqs or steps <= 0:
            return
        fed, accepted = inst.decode_new_tokens, inst.tokens_per_step
        pairs, kv = inst._decode_sums()
        middle = (steps - 1) / 2.0
        shape = BatchShape(decode_seqs=seqs, decode_tokens=seqs * fed, logit_tokens=seqs * fed,
                           decode_pairs=pairs + seqs * accepted * fed * middle,
                           decode_kv_tokens=kv + seqs * accepted * middle)
        self._add(self.cost.mapped_iteration(shape), steps)

    def _add(self, it: MappedIteration, times: int) -> None:
        self.iterations += times
        self.energy_j += it.energy_j * times
        for name, (_, energy_j) in it.by_substrate().items():
            self.by_substrate_j[name] = self.by_substrate_j.get(name, 0.0) + energy_j * times


def mapping_summary(energies: list[MappedEnergy]) -> dict:
    """SimResult.policy["mapping"]: the mappings run, their energy in total and by substrate."""
    by_substrate: dict[str, float] = {}
    for energy in energies:
        for name, joules in energy.by_substrate_j.items():
            by_substrate[name] = by_substrate.get(name, 0.0) + joules
    return {"mappings": sorted({e.cost.mapping.name for e in energies}),
            "energy_j": sum(e.energy_j for e in energies), "by_substrate_j": by_substrate,
            "iterations": sum(e.iterations for e in energies)}
