"""Prefill and decode forwards of a scaled transformers causal LM timed against the cost model: the loop `validate
--recurrent` and `validate --gemma4` share. Each prefill point is one forward over `batch` fresh prompts; each decode
point one step after a prefill of its context (transformers' own cache, grown by the step). Timed as validate
--vision times (median wall time of repeats after a warm-up, the thread's CPU time beside it) and predicted with
CostModel.iteration on the calibrated entry and on the class-default one (measure/validate.py cpu_cost_models)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.measure.dllm_check import median_wall_and_cpu_s
from phasewise.measure.torch_env import kv_cache_arg
from phasewise.measure.validate import MeasuredVsPredicted
from phasewise.perf import BatchShape, CostModel

__all__ = ["DECODE", "PREFILL", "QUICK_DECODE", "QUICK_PREFILL", "StackPoint", "time_stack"]

# (batch, prompt tokens): one to eight lightning blocks of 256 (validate --recurrent), a partial one
PREFILL = ((1, 256), (1, 1024), (1, 2048), (4, 256), (2, 1024), (1, 640))
QUICK_PREFILL = ((1, 256), (1, 512), (2, 256))
# (batch, cached tokens) of a decode step
DECODE = ((1, 256), (1, 2048), (4, 512), (16, 256))
QUICK_DECODE = ((1, 256), (4, 256))


@dataclass(slots=True)
class StackPoint(MeasuredVsPredicted):
    phase: str
    batch: int
    tokens: int  # prompt tokens (prefill) or cached tokens (decode)
    measured_s: float
    cpu_s: float
    predicted_s: float
    unfitted_s: float


def time_stack(hf: Any, torch: Any, dev: Any, vocab: int, calibrated: CostModel, unfitted: CostModel,
               prefill: tuple[tuple[int, int], ...], decode: tuple[tuple[int, int], ...], repeats: int,
               say: Callable[[str], None], every_logit: bool = False) -> list[StackPoint]:
    """Measured vs predicted forwards of `hf` (prompts of random ids below `vocab`): `prefill` (batch, prompt
    tokens) and `decode` (batch, cached tokens) points, `repeats` timed runs each. `every_logit`: a prefill keeps
    every prompt token's logits (and is predicted so) rather than the last one's."""
    cache_arg = kv_cache_arg(hf)
    points: list[StackPoint] = []
    with torch.inference_mode():
        for batch, prompt in prefill:
            say(f"prefill {batch} x {prompt}")
            ids = torch.randint(0, vocab, (batch, prompt), device=dev)
            keep = 0 if every_logit else 1  # transformers: 0 keeps them all
            wall, cpu = median_wall_and_cpu_s(lambda: hf(ids, use_cache=True, logits_to_keep=keep), repeats)
            shape = BatchShape.from_sequences([(prompt, 0)] * batch)
            if every_logit:
                shape.logit_tokens = batch * prompt
            points.append(StackPoint("prefill", batch, prompt, wall, cpu, calibrated.iteration(shape).latency_s,
                                     unfitted.iteration(shape).latency_s))
        for batch, context in decode:
            say(f"decode {batch} at {context}")
            ids = torch.randint(0, vocab, (batch, context), device=dev)
            cache = hf(ids, use_cache=True, logits_to_keep=1).past_key_values
            token = ids[:, -1:]
            wall, cpu = median_wall_and_cpu_s(lambda: hf(token, **{cache_arg: cache}, use_cache=True,
                                                         logits_to_keep=1), repeats)
            shape = BatchShape.uniform(batch, 1, context)
            points.append(StackPoint("decode", batch, context, wall, cpu, calibrated.iteration(shape).latency_s,
                                     unfitted.iteration(shape).latency_s))
    return points
