"""A CostModel whose iterations run on a chip's substrates under an operator mapping (what `simulate` and `plan`
cost when an instance group names `mapping:`).

Every iteration's operators come from the roofline CostModel's breakdown and are re-costed by perf/mapping.py
(MappedCost.iteration: one formula, not copied here); the engine's host work is added as CostModel adds it.
Phase: an iteration with prefill tokens (a prefill, or a mixed batch of prompt chunks and decodes) runs on the
mapping's prefill table, the decodes riding along as extra rows of one pass through the layers; a pure-decode
iteration runs on its decode table.

Decode runs (CostModel.decode_line / decode_line_series) stay closed-form where the mapped decode step is the
DecodeLine's form: only attention varies with the contexts, on a digital or CiD substrate, whose time is
max(FLOPs / rate: linear in pairs, KV bytes / bandwidth + activations: linear in KV tokens). The line's
coefficients are read off three mapped iterations (no context, PROBE pairs, PROBE KV tokens). Where attention runs
on a CiM (its KV shares the arrays' capacity, so reprogramming grows with context and couples every operator on
it: a sum of a line and a kink, not a max of two lines), decode runs fall back to costing each step with fast()
(StepwiseDecode): exact, slower.
"""

from __future__ import annotations

from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.decode_line import DecodeLine, StepwiseDecode
from phasewise.perf.mapping import MappedCost, MappedIteration
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.mappings import Mapping
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme

# pairs / KV tokens at which decode_line() probes the mapped iteration (a power of two: slopes divide exactly)
PROBE = 2.0 ** 20


class MappedCostModel(CostModel):
    """CostModel with fast() and the decode series on the substrates `mapping` places each operator on (tp = pp = 1)."""

    def __init__(self, model: ModelSpec, hardware: HardwareSpec, quant: QuantScheme, engine: EngineProfile,
                 mapping: Mapping, tp: int = 1, pp: int = 1) -> None:
        super().__init__(model, hardware, quant, engine, tp, pp)
        # the roofline breakdown MappedCost re-costs (a CostModel of its own: this one's fast() is the mapped one)
        self.mapped = MappedCost(CostModel(model, hardware, quant, engine, tp, pp), mapping)
        self.mapping = mapping

    def mapped_iteration(self, shape: BatchShape) -> MappedIteration:
        """The iteration on the mapping's prefill table if it has prefill tokens, else its decode table."""
        return self.mapped.iteration(shape, "prefill" if shape.prefill_tokens else "decode")

    def fast(self, shape: BatchShape) -> tuple[float, float, float, float]:
        """(latency_s, stage_s, flops, bytes) of the mapped iteration plus the engine's host work (pp = 1: the
        stage is the whole iteration); bytes are what the operators read and write (stationary + activations)."""
        it = self.mapped_iteration(shape)
        latency_s = self._with_host(it.latency_s, self.host_s(shape))
        return latency_s, latency_s, it.flops, it.bytes

    # --- series of decode iterations ---------------------------------------------------------------
    def decode_line(self, seqs: int, tokens: int, logit_tokens: int) -> DecodeLine | StepwiseDecode:
        """The mapped decode step of a batch as a DecodeLine (see the module docstring), or StepwiseDecode where
        it is not one; cached by batch size."""
        key = ("mapped-decode", seqs, tokens, logit_tokens)
        line = self._cache.get(key)
        if line is None:
            line = self._read_line(seqs, tokens, logit_tokens)
            self._cache[key] = line
        return line

    def _read_line(self, seqs: int, tokens: int, logit_tokens: int) -> DecodeLine | StepwiseDecode:
        def probe(pairs: float, kv: float) -> MappedIteration:
            return self.mapped.iteration(BatchShape(decode_seqs=seqs, decode_tokens=tokens, decode_pairs=pairs,
                                                    decode_kv_tokens=kv, logit_tokens=logit_tokens), "decode")

        zero, by_pairs, by_kv = probe(0.0, 0.0), probe(PROBE, 0.0), probe(0.0, PROBE)
        attention = [next(op for op in it.operators if op.name == "attention") for it in (zero, by_pairs, by_kv)]
        others = [[op.time_s for op in it.operators if op.name != "attention"] + [m.time_s for m in it.movements]
                  for it in (zero, by_pairs, by_kv)]
        a_zero, a_pairs, a_kv = attention
        linear = (a_zero.kind != "cim" and others[0] == others[1] == others[2]
                  and a_zero.compute_s == 0.0 and a_kv.compute_s == a_zero.compute_s  # compute: pairs only
                  and a_pairs.memory_s == a_zero.memory_s)  # memory: KV tokens only
        if not linear:
            return StepwiseDecode(seqs, tokens, logit_tokens)
        host_s = self.host_s(BatchShape(decode_seqs=seqs, decode_tokens=tokens, logit_tokens=logit_tokens))
        overlapped_host_s = host_s if self.engine.overlap_scheduling else 0.0
        offset_s = sum(others[0]) + (0.0 if overlapped_host_s else host_s)
        (flops_0, bytes_0), (flops_p, _), (_, bytes_k) = ((it.flops, it.bytes) for it in (zero, by_pairs, by_kv))
        return DecodeLine(
            s_per_pair=(a_pairs.compute_s - a_zero.compute_s) / PROBE,
            s_per_kv_token=(a_kv.memory_s - a_zero.memory_s) / PROBE, fixed_s=a_zero.memory_s, dispatch_s=0.0,
            latency_per_attention_s=1.0, latency_offset_s=offset_s, stage_per_attention_s=1.0, stage_offset_s=offset_s,
            flops_per_pair=(flops_p - flops_0) / PROBE, flops=flops_0, bytes_per_kv_token=(bytes_k - bytes_0) / PROBE,
            bytes=bytes_0, overlapped_host_s=overlapped_host_s)
