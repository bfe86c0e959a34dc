"""`phasewise validate`: a real transformers model of the given architecture (random weights, built
from its config, optionally scaled down) timed on prefill and decode over a grid, against the cost
model's prediction on the calibrated hardware entry."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import kv_cache_arg, median_time, need_transformers, torch_and_device
from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import read_user_file
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec

DEFAULT_GRID = {
    "prefill": [(1, 128), (1, 512), (4, 128), (1, 1024)],  # (batch, prompt tokens)
    "decode": [(1, 128), (1, 1024), (4, 512), (16, 256)],  # (batch, cached tokens)
}
QUICK_GRID = {"prefill": [(1, 64), (1, 256), (4, 64)], "decode": [(1, 64), (4, 256), (8, 128)]}


@dataclass(slots=True)
class Point:
    phase: str
    batch: int
    tokens: int
    measured_s: float
    predicted_s: float  # on the calibrated entry
    unfitted_s: float | None = None  # on the class-default entry (UNFITTED_HARDWARE / UNFITTED_ENGINE); None on CUDA

    @property
    def error(self) -> float:
        return relative_error(self.predicted_s, self.measured_s)

    @property
    def unfitted_error(self) -> float | None:
        return None if self.unfitted_s is None else relative_error(self.unfitted_s, self.measured_s)


def relative_error(predicted_s: float, measured_s: float) -> float:
    """predicted / measured - 1: the signed error every measured-vs-predicted table reports."""
    return predicted_s / measured_s - 1


class MeasuredVsPredicted:
    """The errors of a timed point that holds measured_s (median wall time), cpu_s (the timing thread's CPU time),
    predicted_s (on the calibrated entry) and unfitted_s (on the class-default entry): a mixin of slotted
    dataclasses."""

    __slots__ = ()

    @property
    def error(self) -> float:
        return relative_error(self.predicted_s, self.measured_s)

    @property
    def cpu_error(self) -> float:
        return relative_error(self.predicted_s, self.cpu_s)

    @property
    def unfitted_error(self) -> float:
        return relative_error(self.unfitted_s, self.measured_s)

    @property
    def unfitted_cpu_error(self) -> float:
        return relative_error(self.unfitted_s, self.cpu_s)


# the catalog's class-default CPU entry and transformers' eager engine profile, neither calibrated here: the
# checks' unfitted prediction beside the calibrated one
UNFITTED_HARDWARE, UNFITTED_ENGINE = "cpu-local", "hf-eager"


# the hardware kinds a timed device can be: this CPU, or a CUDA device (a data-centre GPU or an edge module's)
DEVICE_KINDS = {"cpu": ("cpu",), "cuda": ("gpu", "edge")}


def timed_hardware(hardware: str, device: str = "cpu") -> HardwareSpec:
    """The `--hardware` entry a check on `device` predicts with, before anything is timed: one of the device's kinds
    (DEVICE_KINDS), else a one-line error (an H100's figures against this CPU's times compare nothing)."""
    hw = load_hardware(hardware)
    kinds = DEVICE_KINDS[device]
    if hw.kind not in kinds:
        fix = (f"calibrate's YAML (`phasewise calibrate --device {device}`)" +
               (f" or the catalog's {UNFITTED_HARDWARE}" if device == "cpu" else "") +
               f", an entry of kind {' or '.join(kinds)}")
        raise PhasewiseError(f"--hardware '{hardware}' is a {hw.kind} entry ({hw.name}), but --device {device} times "
                             f"{'this CPU' if device == 'cpu' else 'a CUDA device'}: give {fix}")
    return hw


def cpu_cost_models(model: ModelSpec, hardware: str, engine: str | None = None) -> tuple[CostModel, CostModel]:
    """(calibrated, unfitted) cost models of `model` in fp32 on this CPU (MEASURING.md): on the `hardware` entry (a
    CPU's: timed_hardware) with measured_engine's profile, and on UNFITTED_HARDWARE with UNFITTED_ENGINE."""
    quant = load_quant("fp32")
    calibrated = CostModel(model, timed_hardware(hardware, "cpu"), quant, measured_engine(hardware, engine))
    return calibrated, CostModel(model, load_hardware(UNFITTED_HARDWARE), quant, load_engine(UNFITTED_ENGINE))


def measured_engine(hardware: str, engine: str | None = None) -> EngineProfile:
    """The engine profile a check predicts with: `engine` if given, else the one `calibrate` measured beside the
    hardware entry in its YAML, else transformers' eager forward (`hf-eager`)."""
    if engine:
        return load_engine(engine)
    if hardware.endswith((".yaml", ".yml")) and "engines" in (read_user_file(hardware, "hardware") or {}):
        return load_engine(hardware)
    return load_engine("hf-eager")


def scaled_kv_heads(heads: int, queries_per_kv_head: int) -> int:
    """KV heads of a stack narrowed to `heads` query heads: the checkpoint's query-to-KV-head ratio kept, else the
    largest count below it that divides them (at least one)."""
    kv_heads = max(1, heads // queries_per_kv_head)
    while heads % kv_heads:
        kv_heads -= 1
    return kv_heads


def scaled_width(width: int, hidden: int, checkpoint_hidden: int) -> int:
    """An MLP width scaled with the hidden size from `checkpoint_hidden` to `hidden`, in multiples of 64 (64 at
    least)."""
    return int(round(width * hidden / checkpoint_hidden / 64)) * 64 or 64


# dense families built as their own transformers class (their extra norms run for real: Qwen3's q / k norms); the
# others as LlamaForCausalLM of their shape
OWN_CLASSES = {"qwen3": ("Qwen3Config", "Qwen3ForCausalLM")}


def scaled_config(model: ModelSpec, layers: int | None, hidden: int | None, own_class: bool = False) -> dict[str, Any]:
    """A LlamaConfig-style dict of `model`'s shape, optionally narrowed to `hidden` and `layers`
    (head_dim, the GQA ratio and the MLP ratio kept); with `own_class`, a family of OWN_CLASSES keeps its model_type."""
    family = model.model_type if own_class and model.model_type in OWN_CLASSES else "llama"
    if model.num_experts or model.norm != "rms" or not model.mlp_gated or model.linear_attention_layers:
        kind = ("MoE" if model.num_experts else "a linear-attention hybrid" if model.linear_attention_layers
                else "not a gated-MLP RMSNorm model")
        raise PhasewiseError(f"validate builds Llama-shaped models; {model.name} is {kind}")
    h = hidden or model.hidden_size
    if h < model.head_dim and h % 2:  # found by a manual pass over validate's flags: a RuntimeError in RoPE
        raise PhasewiseError(f"--hidden {h} is below {model.name}'s head_dim ({model.head_dim}), so it becomes the "
                             "head_dim, which rotary embeddings need even")
    head_dim = model.head_dim if h >= model.head_dim else h
    heads = max(1, h // head_dim)
    if h % heads:  # transformers' LlamaConfig refuses it (a StrictDataclass validation traceback)
        raise PhasewiseError(f"--hidden {h} must be a multiple of its {heads} attention heads of {head_dim} (e.g. "
                             f"{heads * head_dim})")
    kv = scaled_kv_heads(heads, model.num_heads // model.num_kv_heads)
    inter = scaled_width(model.intermediate_size, h, model.hidden_size)
    return dict(hidden_size=h, intermediate_size=inter, num_hidden_layers=layers or model.num_layers,
                num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, vocab_size=model.vocab_size,
                tie_word_embeddings=model.tie_embeddings, max_position_embeddings=8192, hidden_act="silu",
                model_type=family, architectures=[OWN_CLASSES.get(family, ("", "LlamaForCausalLM"))[1]])


def validate(model: str, hardware: str, device: str = "cpu", layers: int | None = None, hidden: int | None = None,
             engine: str | None = None, quick: bool = False, threads: int | None = None,
             grid: dict[str, list[tuple[int, int]]] | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[list[Point], dict[str, Any]]:
    """Measured vs predicted for every grid point; also returns what was built."""
    torch, dev = torch_and_device(device, threads)
    transformers = need_transformers()
    spec = load_model(model)
    cfg = scaled_config(spec, layers, hidden, own_class=True)
    from phasewise.specs.hf_config import from_hf_config

    small = from_hf_config(f"{spec.name} (scaled)", cfg)
    cuda = dev.type == "cuda"
    unfitted: CostModel | None = None  # the catalog has no class-default entry for an unnamed GPU: none on CUDA
    if cuda:
        cm = CostModel(small, timed_hardware(hardware, "cuda"), load_quant("bf16"), measured_engine(hardware, engine))
    else:
        cm, unfitted = cpu_cost_models(small, hardware, engine)
    hw, eng = cm.hw, cm.engine
    params_bytes = small.total_params * (2 if cuda else 4)
    free = torch.cuda.mem_get_info(dev)[0] if cuda else hw.memory_capacity_bytes * 0.8
    if params_bytes > free:
        raise PhasewiseError(f"{small.name} needs {params_bytes / 2**30:.1f} GiB of weights but {device} has "
                             f"{free / 2**30:.1f} GiB free; pass smaller --layers/--hidden")
    dtype = torch.bfloat16 if cuda else torch.float32
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    say = progress or (lambda _m: None)
    say(f"building {small.name}: {small.total_params / 1e6:.0f}M parameters")
    config_class, model_class = OWN_CLASSES.get(cfg["model_type"], ("LlamaConfig", "LlamaForCausalLM"))
    hf = getattr(transformers, model_class)(getattr(transformers, config_class)(
        **{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
    hf = hf.to(dev, dtype).eval()
    kv_arg = kv_cache_arg(hf)
    grid = grid or (QUICK_GRID if quick else DEFAULT_GRID)
    reps = 3 if quick else 5
    points: list[Point] = []
    vocab = small.vocab_size

    def predicted(shape: BatchShape) -> tuple[float, float | None]:
        return (cm.iteration(shape).latency_s,
                None if unfitted is None else unfitted.iteration(shape).latency_s)

    with torch.inference_mode():
        for batch, prompt in grid["prefill"]:
            say(f"prefill batch {batch} x {prompt}")
            ids = torch.randint(0, vocab, (batch, prompt), device=dev)
            t = median_time(lambda: hf(ids, use_cache=True, logits_to_keep=1), sync, reps)
            points.append(Point("prefill", batch, prompt, t, *predicted(BatchShape.uniform(batch, prompt, 0))))
        for batch, ctx in grid["decode"]:
            say(f"decode batch {batch} at {ctx}")
            ids = torch.randint(0, vocab, (batch, ctx), device=dev)
            # A preallocated (static) KV cache, as serving engines keep one: a step writes its token in
            # place instead of concatenating the whole cache (DynamicCache would copy O(context) per step)
            cache = transformers.StaticCache(config=hf.config, max_cache_len=ctx + reps + 2)
            hf(ids, **{kv_arg: cache}, use_cache=True, logits_to_keep=1)
            nxt = ids[:, -1:]

            def step():  # each step appends one token: the context grows by at most reps + 1 tokens
                hf(nxt, **{kv_arg: cache}, use_cache=True, logits_to_keep=1)

            t = median_time(step, sync, reps)
            points.append(Point("decode", batch, ctx, t, *predicted(BatchShape.uniform(batch, 1, ctx))))
    info = {"model": small.name, "params": small.total_params, "config": cfg, "hardware": hw.key,
            "engine": eng.name, "unfitted_hardware": None if cuda else UNFITTED_HARDWARE,
            "unfitted_engine": None if cuda else UNFITTED_ENGINE, "device": device,
            "threads": torch.get_num_threads() if not cuda else None,
            "host_allocator": host_allocator_note()}
    return points, info


def summary(points: list[Point]) -> dict[str, float]:
    """Median and worst |error| per phase and over all points, of the calibrated prediction ("") and, where the points
    have one (a CPU run), of the unfitted one ("unfitted_"), against the measured wall time."""
    out: dict[str, float] = {}
    unfitted = bool(points) and all(p.unfitted_s is not None for p in points)
    for phase in ("prefill", "decode", None):
        chosen = [p for p in points if phase is None or p.phase == phase]
        prefix = f"{phase}_" if phase else ""
        if not chosen:
            if phase is None:
                out["median_abs_error"] = out["worst_abs_error"] = math.nan
            continue
        sides = [("", [abs(p.error) for p in chosen])]
        if unfitted:
            sides.append(("unfitted_", [abs(p.unfitted_error) for p in chosen]))
        for label, errors in sides:
            out[f"{prefix}{label}median_abs_error"] = statistics.median(errors)
            out[f"{prefix}{label}worst_abs_error"] = max(errors)
    return out
