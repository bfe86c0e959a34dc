"""`phasewise validate --train-reuse`: a real training step of a small random-weight transformers Llama on this
machine, with the forward recomputed vs with the forward's saved activations reused (Alchemist), timed, against
perf/training.py's prediction on the calibrated hardware entry (and on the class-default CPU entry, unfitted).

  recompute  timed: forward with autograd (decoder layers, LM head, loss) | backward + AdamW step
  reuse      untimed: the decoder layers' forward with autograd recording, as serving's prefill would run it;
             timed: the head (LM head + loss over every token, which serving does not compute) + backward + AdamW
Nothing is kept across repeats: each timed step follows its own forward. fp32, one thread (MEASURING.md).
Times are the timing thread's CPU time (CLOCK_THREAD_CPUTIME_ID, user + system): with one torch thread every op,
the CPU autograd engine's backward and the fused AdamW run on the calling thread, so on an idle machine this is
the wall time, and on a shared one it leaves out the time the thread waits for a core (wall times are kept too).
LoRA: every weight frozen, rank-r adapters on q_proj and v_proj (torch only), AdamW over the adapters.
The bytes autograd really saves in the forward (saved-tensor hooks, unique storages, weights excluded) are
reported beside the model's activation_bytes.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import need_transformers, torch_and_device
from phasewise.measure.validate import (
    UNFITTED_ENGINE,
    UNFITTED_HARDWARE,
    cpu_cost_models,
    relative_error,
    scaled_config,
)
from phasewise.perf import CostModel
from phasewise.perf.training import TRAIN_METHODS, training_step
from phasewise.specs import load_model

DEFAULT_GRID = [(1, 128), (2, 256), (4, 256), (1, 512)]  # (sequences, tokens per sequence)
QUICK_GRID = [(1, 64), (2, 64), (1, 128)]
UNFITTED = (UNFITTED_HARDWARE, UNFITTED_ENGINE)  # the class-default CPU entry and eager profile (not calibrated)
LORA_RANK = 16  # LoRA paper's typical rank range (Hu et al. 2021, sec. 7.2: r in 1..64); the cost model's default
METRICS = ("forward", "backward_optimizer", "optimizer", "step", "reuse_step")


@dataclass(slots=True)
class TrainPoint:
    seqs: int
    tokens_per_seq: int
    measured_s: dict[str, float]  # by METRICS, thread CPU time
    predicted_s: dict[str, float]
    unfitted_s: dict[str, float]
    saved_bytes: float = 0.0  # what autograd saved in the forward (measured)
    predicted_saved_bytes: float = 0.0
    wall_s: dict[str, float] = field(default_factory=dict)  # by METRICS, wall time
    system_s: dict[str, float] = field(default_factory=dict)  # by METRICS, the kernel's share (page faults, ...)
    page_faults: dict[str, float] = field(default_factory=dict)  # by METRICS, minor faults (fresh memory touched)

    def error(self, metric: str, unfitted: bool = False) -> float:
        pred = (self.unfitted_s if unfitted else self.predicted_s)[metric]
        return relative_error(pred, self.measured_s[metric])

    def speedup(self, which: str = "measured") -> float:
        times = {"measured": self.measured_s, "predicted": self.predicted_s, "unfitted": self.unfitted_s}[which]
        return times["step"] / times["reuse_step"]


def _predict(cm: CostModel, seqs: int, tokens: int, method: str) -> dict[str, float]:
    base = training_step(cm, seqs, tokens, method=method, lora_rank=LORA_RANK)
    reuse = training_step(cm, seqs, tokens, method=method, lora_rank=LORA_RANK, reuse="keep")
    return {"forward": base.forward_s, "backward_optimizer": base.backward_s + base.optimizer_s,
            "optimizer": base.optimizer_s, "step": base.step_s, "reuse_step": reuse.step_s}


def _add_lora(torch, hf, rank: int) -> list:
    """Freeze every weight and put rank-`rank` adapters beside q_proj and v_proj; returns the adapters' params."""
    nn = torch.nn

    class LoraLinear(nn.Module):
        def __init__(self, base: nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.lora_a = nn.Parameter(torch.randn(base.in_features, rank) / math.sqrt(base.in_features))
            self.lora_b = nn.Parameter(torch.zeros(rank, base.out_features))  # LoRA's init: B = 0 (Hu et al. 2021)

        def forward(self, x):
            return self.base(x) + (x @ self.lora_a) @ self.lora_b

    for p in hf.parameters():
        p.requires_grad_(False)
    params = []
    for layer in hf.model.layers:
        attn = layer.self_attn
        attn.q_proj, attn.v_proj = LoraLinear(attn.q_proj), LoraLinear(attn.v_proj)
        params += [attn.q_proj.lora_a, attn.q_proj.lora_b, attn.v_proj.lora_a, attn.v_proj.lora_b]
    return params


def train_reuse_validate(model: str, hardware: str, layers: int = 4, hidden: int = 512, method: str = "full",
                         quick: bool = False, repeats: int | None = None, engine: str | None = None,
                         grid: list[tuple[int, int]] | None = None, threads: int | None = None,
                         progress: Callable[[str], None] | None = None) -> tuple[list[TrainPoint], dict[str, Any]]:
    """Measured vs predicted training steps (recompute and reuse) for every (sequences, tokens) of the grid."""
    if method not in TRAIN_METHODS:
        raise PhasewiseError(f"--train-method '{method}' is not one of {', '.join(TRAIN_METHODS)}")
    if layers < 1 or hidden < 1:
        raise PhasewiseError(f"--layers and --hidden must be >= 1 (got {layers}, {hidden})")
    spec = load_model(model)
    if not spec.causal:  # the step timed is a causal LM's (next-token loss, causal mask): not this model's training
        raise PhasewiseError(f"--train-reuse times a causal LM's training step (next-token loss, causal attention); "
                             f"{spec.name} is a diffusion LM (bidirectional): give an autoregressive --model")
    torch, dev = torch_and_device("cpu", threads)
    transformers = need_transformers()
    cfg = scaled_config(spec, layers, hidden)
    from phasewise.specs.hf_config import from_hf_config

    small = from_hf_config(f"{spec.name} (scaled)", cfg)
    cm, cm_unfitted = cpu_cost_models(small, hardware, engine)
    grid = grid or (QUICK_GRID if quick else DEFAULT_GRID)
    if any(s < 1 or t < 2 for s, t in grid):
        raise PhasewiseError("the grid needs sequences >= 1 and >= 2 tokens per sequence")
    reps = repeats or (3 if quick else 5)
    say = progress or (lambda _m: None)
    say(f"building {small.name}: {small.total_params / 1e6:.0f}M parameters")
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        **{k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}))
    hf = hf.to(dev, torch.float32).train()
    hf.config.use_cache = False
    params = _add_lora(torch, hf, LORA_RANK) if method == "lora" else list(hf.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    weights = {p.untyped_storage().data_ptr() for p in hf.parameters()}
    vocab = small.vocab_size
    fn = torch.nn.functional

    def layers_forward(ids):
        return hf.model(input_ids=ids, use_cache=False).last_hidden_state

    def head(hidden_states, labels):  # transformers' causal-LM loss: labels shifted by padding, fp32 logits
        logits = hf.lm_head(hidden_states)
        return fn.cross_entropy(logits.view(-1, vocab), labels.view(-1), ignore_index=-100)

    def clock() -> tuple[float, float, float, float]:
        """Thread CPU time, wall time, and the thread's system time and minor page faults (0 where unknown)."""
        usage = resource.getrusage(resource.RUSAGE_THREAD) if hasattr(resource, "RUSAGE_THREAD") else None
        return (time.thread_time(), time.perf_counter(), usage.ru_stime if usage else 0.0,
                float(usage.ru_minflt) if usage else 0.0)

    points = []
    started = time.perf_counter()
    for seqs, tokens in grid:
        say(f"{method} training step {seqs} x {tokens}")
        ids = torch.randint(0, vocab, (seqs, tokens), device=dev)
        labels = fn.pad(ids, (0, 1), value=-100)[:, 1:].contiguous()
        saved = _saved_bytes(torch, lambda: head(layers_forward(ids), labels), weights)
        runs: dict[int, dict[str, list[float]]] = {c: {m: [] for m in METRICS} for c in range(4)}
        for rep in range(reps + 1):  # the first is a warm-up
            t0 = clock()
            loss = head(layers_forward(ids), labels)
            t1 = clock()
            loss.backward()
            t2 = clock()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t3 = clock()
            recorded = layers_forward(ids)  # "serving": the layers' forward with autograd recording, untimed
            t4 = clock()
            head(recorded, labels).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t5 = clock()
            del loss, recorded
            if rep:
                for c in range(4):  # CPU time, wall time, system time, page faults
                    spans = (t1[c] - t0[c], t3[c] - t1[c], t3[c] - t2[c], t3[c] - t0[c], t5[c] - t4[c])
                    for m, t in zip(METRICS, spans):
                        runs[c][m].append(t)
        measured = {m: statistics.median(v) for m, v in runs[0].items()}
        wall, system, faults = ({m: statistics.median(v) for m, v in runs[c].items()} for c in (1, 2, 3))
        predicted_saved = training_step(cm, seqs, tokens, method=method, lora_rank=LORA_RANK).activation_bytes
        points.append(TrainPoint(seqs, tokens, measured, _predict(cm, seqs, tokens, method),
                                 _predict(cm_unfitted, seqs, tokens, method), saved, predicted_saved, wall,
                                 system, faults))
    info = {"model": small.name, "params": small.total_params, "config": cfg, "layers": layers, "hidden": hidden,
            "method": method, "lora_rank": LORA_RANK if method == "lora" else None, "hardware": cm.hw.key,
            "engine": cm.engine.name, "unfitted": "/".join(UNFITTED), "repeats": reps,
            "threads": torch.get_num_threads(), "host_allocator": host_allocator_note(),
            "measure_wall_s": time.perf_counter() - started,
            "clock": "thread CPU time"}
    return points, info


def _saved_bytes(torch, forward: Callable[[], Any], exclude: set[int]) -> float:
    """Bytes of the distinct storages autograd saves during `forward()` (weights in `exclude` left out)."""
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    del loss
    return float(sum(seen.values()))


def train_reuse_summary(points: list[TrainPoint]) -> dict[str, float]:
    """Median and worst |error| per metric and over both steps (recompute and reuse), calibrated and unfitted."""
    out: dict[str, float] = {}
    for tag, unfitted in (("", False), ("unfitted_", True)):
        for metric in METRICS:
            errs = [abs(p.error(metric, unfitted)) for p in points]
            out[f"{tag}{metric}_median_abs_error"] = statistics.median(errs)
        steps = [abs(p.error(m, unfitted)) for p in points for m in ("step", "reuse_step")]
        out[f"{tag}median_abs_error"] = statistics.median(steps) if steps else math.nan
        out[f"{tag}worst_abs_error"] = max(steps) if steps else math.nan
        which = "unfitted" if unfitted else "predicted"
        speed = [abs(p.speedup(which) / p.speedup() - 1) for p in points]
        out[f"{tag}speedup_median_abs_error"] = statistics.median(speed)
    return out
