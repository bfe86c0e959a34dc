"""Importing PyTorch on demand, with one-line errors that say what to install or change."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note

DEVICES = ("cpu", "cuda")
MAX_REQUESTS, MAX_REPEATS = 100_000, 100  # a real run on this machine: more would run for days (10^11 ran for ever)


def torch_and_device(device: str, threads: int | None = None):
    """(torch, torch.device); CPU timing uses `threads` threads (1 by default: a busy second core
    otherwise makes times blow up 8-15x on small machines), under the process's host allocator
    (measure/host_allocator.py: freed memory kept for reuse unless a command chose otherwise)."""
    if device not in DEVICES:
        raise PhasewiseError(f"--device '{device}' is not one of {', '.join(DEVICES)}")
    cpus = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cpus:  # torch.set_num_threads(99999) is a segmentation fault
        raise PhasewiseError(f"--threads must be in 1..{cpus}, this machine's CPUs (got {threads})")
    if threads is not None and device != "cpu":
        raise PhasewiseError("--threads sets the CPU's timing threads: it does not apply to --device cuda")
    try:
        import torch
    except ImportError:
        raise PhasewiseError("measuring needs PyTorch: pip install 'phasewise[measure]' "
                             "(on this machine: pip install torch==2.13.0 transformers)") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise PhasewiseError("--device cuda: torch.cuda.is_available() is False (no GPU or a CPU build of "
                             "torch); use --device cpu")
    if device == "cpu":
        torch.set_num_threads(threads or 1)
    host_allocator_note()
    return torch, torch.device(device)


def kv_cache_arg(model) -> str:
    """The keyword a transformers model's forward takes its KV cache by: `cache` (5.2x on, which deprecates
    `past_key_values` and removes it in 5.40) or `past_key_values` (earlier releases)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_kv_cache(output):
    """The KV cache a forward returned, under either name (kv_cache_arg)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def available_memory_bytes(torch, dev) -> float:
    """What a run here can allocate: the GPU's free memory, or this machine's available physical memory."""
    if dev.type == "cuda":
        return float(torch.cuda.mem_get_info(dev)[0])
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_run_fits(what: str, cfg: dict, params: int, forward_tokens: int, cached_tokens: int, logits_tokens: int,
                   dtype_bytes: int, torch, dev, shrink: str) -> None:
    """A one-line error when a timed run's weights, the KV of `cached_tokens`, one forward's activations over
    `forward_tokens` (a layer's hidden, attention and MLP rows) and its logits over `logits_tokens` would not fit in
    80 % of what this machine can allocate: an estimate, to refuse sizes that cannot run (a 10^11-token prompt was
    an allocator RuntimeError), not a fine accounting."""
    kv_per_token = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * cfg["head_dim"]
    act_per_token = 4 * cfg["hidden_size"] + 3 * cfg["intermediate_size"]
    need = dtype_bytes * (params + cached_tokens * kv_per_token + forward_tokens * act_per_token
                          + logits_tokens * cfg["vocab_size"])
    check_fits(what, need, "weights, KV cache, one forward's activations and logits", torch, dev, shrink)


def check_fits(what: str, need_bytes: float, made_of: str, torch, dev, shrink: str) -> None:
    """A one-line error when `need_bytes` exceed 80 % of what this machine can allocate (available_memory_bytes)."""
    budget = 0.8 * available_memory_bytes(torch, dev)
    if need_bytes > budget:
        raise PhasewiseError(f"{what} needs about {need_bytes / 2**30:,.1f} GiB ({made_of}) but {dev.type} can "
                             f"allocate {budget / 2**30:,.1f} GiB here; {shrink}")


def need_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise PhasewiseError("validate needs transformers: pip install 'phasewise[measure]'") from None
    return transformers


def median_time(fn: Callable[[], object], sync: Callable[[], None], repeats: int = 5, warmup: int = 1,
                min_time_s: float = 0.0) -> float:
    """Median wall time of fn() over `repeats` runs after `warmup` runs; each run may loop to last
    at least `min_time_s` (very short kernels), and is divided by its loop count."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        loops, start = 0, time.perf_counter()
        while True:
            fn()
            loops += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s:
                break
        times.append(elapsed / loops)
    return statistics.median(times)
