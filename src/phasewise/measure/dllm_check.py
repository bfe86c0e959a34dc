"""`phasewise validate --dllm`: bidirectional (diffusion-LM) forwards of a real transformers model, timed
against the cost model.

A diffusion LM (LLaDA, Dream; Fast-dLLM's caching) runs two kinds of forward, both with a full (non-causal)
attention mask:
  block    `new` positions of the canvas over a cached prefix: the block's queries attend to the whole prefix
           and to each other in both directions; the prefix's KV comes from an earlier full forward;
  refresh  a full forward over prompt + canvas (nothing cached), which writes the KV the next blocks read.
Each is costed by the one forward-pass formula, `CostModel.iteration(BatchShape.uniform(batch, new, cached,
causal=False))` (attention pairs new x (cached + new)), with the LM head over the positions whose logits a
step needs: every block position (a step unmasks some of them), every canvas position on a refresh.

The model is a random-weight `LlamaForCausalLM` of the architecture's shape, scaled down (validate's
scaled_config), made bidirectional the way transformers 5.x allows it: `config.is_causal = False` (its
masking utilities then build a bidirectional mask, or none: with 5.24 SDPA gets no mask, is_causal=False and
every key) and, for versions whose SDPA path reads the module's own flag when the mask is omitted,
`is_causal = False` on every attention module. `bidirectionality()` checks it for real: changing the last
position changes the first one's output.

The block's KV cache is a StaticCache of exactly prefix + block slots, filled by one full forward over the
prefix and the block (Fast-dLLM's first step); each timed block forward writes the block's slots in place and
`crop` rewinds them, so the context never grows and no repeat copies the cache.

Timed as MEASURING.md asks (fp32, one torch thread, median of repeats after a warm-up): the wall time, and
beside it the CPU time of the timing thread, which on a shared machine leaves out the time the thread waited
for a core (the wall time is the figure; the CPU time says how much of an error is load).

Predicted on two hardware entries: the calibrated one (`phasewise calibrate`: micro-benchmarks, none of these
forwards; a fit/test split) and the catalog's class-default CPU entry (`cpu-local` with `hf-eager`): the
unfitted error beside the calibrated one.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import check_run_fits, kv_cache_arg, need_transformers, torch_and_device
from phasewise.measure.validate import (
    UNFITTED_ENGINE,
    UNFITTED_HARDWARE,
    MeasuredVsPredicted,
    cpu_cost_models,
    scaled_config,
)
from phasewise.perf import BatchShape
from phasewise.plan.dllm_plan import diffusion_model
from phasewise.specs.hf_config import from_hf_config
from phasewise.specs.model import ModelSpec

DLLM_MODEL = "GSAI-ML/LLaDA-8B-Instruct"  # the catalog's diffusion LM (Llama-shaped block, MHA, causal=False)
# Issue 13: block forwards of 32, 64, 128, 256 new positions over a cached prefix.
BLOCKS = (32, 64, 128, 256)
QUICK_BLOCKS = (32, 64)  # assumed: above batch.DECODE_MAX_NEW_TOKENS (16), so the same kernel class as BLOCKS
# Unfitted baseline: the catalog's class-default entry for this machine's CPU (hardware_specs.yaml) and the
# class-default engine profile of a transformers eager forward (engines.yaml).
KINDS = ("block", "refresh")


@dataclass(slots=True)
class DllmPoint(MeasuredVsPredicted):
    """One timed forward: `new` positions (the block, or prompt + canvas on a refresh) over `cached` ones."""

    kind: str  # "block" or "refresh"
    batch: int
    new: int
    cached: int
    logit_tokens: int  # positions through the LM head, whole batch
    measured_s: float  # median wall time
    cpu_s: float  # median CPU time of the timing thread (excludes waiting for a core on a shared machine)
    predicted_s: float  # on the calibrated entry
    unfitted_s: float  # on the class-default entry


def forward_shape(batch: int, new: int, cached: int, logits_per_seq: int) -> BatchShape:
    """The BatchShape of one bidirectional forward: `batch` sequences of `new` positions after `cached` ones,
    `logits_per_seq` of them through the LM head (BatchShape's own default is 1 for prefill-sized steps)."""
    shape = BatchShape.uniform(batch, new, cached, causal=False)
    shape.logit_tokens = batch * logits_per_seq
    return shape


def make_bidirectional(hf: Any) -> Any:
    """Switch a transformers Llama to full (non-causal) attention in place; returns it."""
    hf.config.is_causal = False
    for module in hf.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return hf


def bidirectionality(hf: Any, transformers: Any, torch: Any, prefix: int = 8, block: int = 8) -> dict[str, bool]:
    """Whether a later position reaches an earlier one's output: changing the last token changes position 0's
    logits over a full forward ("full"), and the block's first position's logits over a block forward with a
    cached prefix ("block"). A causal model gives False for both."""
    vocab = hf.config.vocab_size
    kv_arg = kv_cache_arg(hf)
    ids = torch.randint(0, vocab, (1, prefix + block))
    other = ids.clone()
    other[0, -1] = (ids[0, -1] + 1) % vocab

    def differ(a, b) -> bool:
        return bool((a - b).abs().max() > 1e-6 * a.abs().max())

    def block_first(x):
        cache = transformers.StaticCache(config=hf.config, max_cache_len=prefix + block)
        hf(ids, **{kv_arg: cache}, use_cache=True, logits_to_keep=1)
        cache.crop(-block)
        return hf(x[:, prefix:], **{kv_arg: cache}, use_cache=True).logits[0, 0]

    with torch.inference_mode():
        full = [hf(x, use_cache=False).logits[0, 0] for x in (ids, other)]
        blocks = [block_first(x) for x in (ids, other)]
    return {"full": differ(*full), "block": differ(*blocks)}


def median_wall_and_cpu_s(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median wall time and median CPU time of this thread over `repeats` runs of fn() after `warmup` runs (CPU
    work runs synchronously on this thread at one torch thread). Alone on a core the two agree; on a shared
    machine the wall time also holds the time the thread waited for a core, the CPU time does not."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def _positive(values: list[int], what: str) -> None:
    if not values or any(v < 1 for v in values):
        raise PhasewiseError(f"{what} must be positive integers (got {values})")


def dllm_validate(hardware: str, model: str = DLLM_MODEL, layers: int = 6, hidden: int = 768,
                  prompt_tokens: int = 128, canvas_tokens: int = 256, blocks: list[int] | None = None,
                  quick: bool = False, engine: str | None = None, threads: int | None = None,
                  repeats: int | None = None, progress: Callable[[str], None] | None = None
                  ) -> tuple[list[DllmPoint], dict[str, Any]]:
    """Measured vs predicted for block forwards (each of `blocks` new positions over a cached prompt of
    `prompt_tokens`) and full refreshes over prompt + canvas at (prompt, canvas) and, unless quick, twice
    that; also returns what was built and the bidirectionality check."""
    blocks = list(blocks or (QUICK_BLOCKS if quick else BLOCKS))
    _positive(blocks, "--blocks")
    _positive([prompt_tokens], "--prompt")
    _positive([canvas_tokens], "--canvas")
    _positive([layers, hidden], "--layers/--hidden")
    if threads not in (None, 1):
        raise PhasewiseError(f"--threads {threads}: --dllm times one torch thread (MEASURING.md), whose CPU time it "
                             "reports beside the wall time; leave --threads unset or 1")
    spec = diffusion_model(model)  # an autoregressive model: simulate's and plan's one-line error
    torch, dev = torch_and_device("cpu", 1)
    transformers = need_transformers()
    cfg = scaled_config(spec, layers, hidden)
    small: ModelSpec = from_hf_config(f"{spec.name} (scaled, bidirectional)", cfg).model_copy(
        update={"causal": False})
    # fp32 on this CPU (MEASURING.md: bf16 matmul ~1 GFLOP/s)
    calibrated, unfitted = cpu_cost_models(small, hardware, engine)
    hw = calibrated.hw
    params_bytes = small.total_params * 4
    if params_bytes > hw.memory_capacity_bytes * 0.8:
        raise PhasewiseError(f"{small.name} needs {params_bytes / 2**30:.1f} GiB of weights; pass smaller "
                             "--layers/--hidden")
    scale = 1 if quick else 2  # the refresh is also timed at twice prompt + canvas
    longest = max(scale * (prompt_tokens + canvas_tokens), prompt_tokens + max(blocks))
    check_run_fits("the --dllm run", cfg, small.total_params, longest, longest,
                   max(scale * canvas_tokens, max(blocks)), 4, torch, dev, "lower --prompt, --canvas or --blocks")
    say = progress or (lambda _m: None)
    say(f"building {small.name}: {small.total_params / 1e6:.0f}M parameters")
    config = transformers.LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")})
    hf = make_bidirectional(transformers.LlamaForCausalLM(config).to(dev, torch.float32).eval())
    checked = bidirectionality(hf, transformers, torch)
    kv_arg = kv_cache_arg(hf)
    if not all(checked.values()):
        raise PhasewiseError(f"the model did not attend bidirectionally ({checked}): this transformers version "
                             "ignores is_causal=False")
    reps = repeats or (3 if quick else 5)  # median of repeats after one warm-up (MEASURING.md)
    refresh = [(prompt_tokens, canvas_tokens)] + ([] if quick else [(2 * prompt_tokens, 2 * canvas_tokens)])
    batch, vocab = 1, small.vocab_size
    points: list[DllmPoint] = []

    def point(kind: str, new: int, cached: int, logits: int, measured: tuple[float, float]) -> DllmPoint:
        shape = forward_shape(batch, new, cached, logits)
        return DllmPoint(kind, batch, new, cached, batch * logits, *measured,
                         calibrated.iteration(shape).latency_s, unfitted.iteration(shape).latency_s)

    with torch.inference_mode():
        for block in blocks:
            say(f"block of {block} over a cached prefix of {prompt_tokens}")
            ids = torch.randint(0, vocab, (batch, prompt_tokens + block))
            cache = transformers.StaticCache(config=hf.config, max_cache_len=prompt_tokens + block)
            hf(ids, **{kv_arg: cache}, use_cache=True, logits_to_keep=1)  # fills the prefix's (and block's) KV
            cache.crop(-block)
            block_ids = ids[:, prompt_tokens:]

            def step():  # writes the block's KV slots in place, then rewinds them: the context stays fixed
                hf(block_ids, **{kv_arg: cache}, use_cache=True, logits_to_keep=block)
                cache.crop(-block)

            points.append(point("block", block, prompt_tokens, block, median_wall_and_cpu_s(step, reps)))
        for prompt, canvas in refresh:
            say(f"refresh over {prompt} + {canvas}")
            ids = torch.randint(0, vocab, (batch, prompt + canvas))
            t = median_wall_and_cpu_s(lambda: hf(ids, use_cache=True, logits_to_keep=canvas), reps)
            points.append(point("refresh", prompt + canvas, 0, canvas, t))
    info = {"model": small.name, "params": small.total_params, "config": cfg, "hardware": hw.key,
            "hardware_source": hardware, "engine": calibrated.engine.name, "unfitted_hardware": UNFITTED_HARDWARE,
            "unfitted_engine": UNFITTED_ENGINE,
            "prompt_tokens": prompt_tokens, "canvas_tokens": canvas_tokens, "repeats": reps,
            "threads": 1, "host_allocator": host_allocator_note(),
            "bidirectional": checked}
    return points, info


def dllm_summary(points: list[DllmPoint]) -> dict[str, float]:
    """Median and worst |error| per kind and over all points, of the calibrated and the unfitted prediction
    against the wall time ("", "unfitted_") and against the CPU time ("cpu_", "unfitted_cpu_")."""
    out: dict[str, float] = {}
    for kind in (*KINDS, None):
        chosen = [p for p in points if kind is None or p.kind == kind]
        if not chosen:
            continue
        prefix = f"{kind}_" if kind else ""
        for label, errors in (("", [abs(p.error) for p in chosen]), ("cpu_", [abs(p.cpu_error) for p in chosen]),
                              ("unfitted_", [abs(p.unfitted_error) for p in chosen]),
                              ("unfitted_cpu_", [abs(p.unfitted_cpu_error) for p in chosen])):
            out[f"{prefix}{label}median_abs_error"] = statistics.median(errors)
            out[f"{prefix}{label}worst_abs_error"] = max(errors)
    if not points:
        out["median_abs_error"] = math.nan
    return out
