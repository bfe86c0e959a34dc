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
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import check_fits, kv_cache_arg, need_transformers, torch_and_device
from phasewise.measure.validate import UNFITTED_ENGINE, UNFITTED_HARDWARE, MeasuredVsPredicted, cpu_cost_models
from phasewise.perf import BatchShape, CostModel
from phasewise.specs.hf_config import from_hf_config

__all__ = ["DECODE", "PREFILL", "QUICK_DECODE", "QUICK_PREFILL", "StackPoint", "time_stack", "validate_stack"]

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


def validate_stack(name: str, config: dict[str, Any], vocab: int, hardware: str, engine: str | None,
                   build: Callable[[Any, dict[str, Any]], Any], quick: bool, repeats: int | None,
                   progress: Callable[[str], None] | None,
                   every_logit: bool = False) -> tuple[list[StackPoint], dict[str, Any]]:
    """A scaled stack's check: `config` (a config.json's fields, model_type included) parsed into the model the cost
    models price (calibrated and unfitted), the transformers model `build(transformers, fields)` makes from the same
    fields in fp32 on one CPU thread, time_stack over the grid (quick or full), and what was built."""
    small = from_hf_config(f"{name} (scaled)", config)
    calibrated, unfitted = cpu_cost_models(small, hardware, engine)
    torch, dev = torch_and_device("cpu", 1)
    check_fits("the scaled model", small.total_params * 4, "fp32 weights", torch, dev, "lower --layers or --hidden")
    transformers = need_transformers()
    say = progress or (lambda _m: None)
    say(f"building {small.name}: {small.total_params / 1e6:.0f}M parameters")
    fields = {k: v for k, v in config.items() if k != "model_type"}
    hf = build(transformers, fields).to(dev, torch.float32).eval()
    reps = repeats or (3 if quick else 5)
    points = time_stack(hf, torch, dev, vocab, calibrated, unfitted, QUICK_PREFILL if quick else PREFILL,
                        QUICK_DECODE if quick else DECODE, reps, say, every_logit)
    info = {"model": small.name, "params": small.total_params, "config": config, "hardware": calibrated.hw.key,
            "hardware_source": hardware, "engine": calibrated.engine.name, "unfitted_hardware": UNFITTED_HARDWARE,
            "unfitted_engine": UNFITTED_ENGINE, "repeats": reps, "threads": 1, "host_allocator": host_allocator_note(),
            "transformers": transformers.__version__}
    return points, info
