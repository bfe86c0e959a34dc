"""Importing PyTorch on demand, with one-line errors that say what to install or change."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from phasewise.errors import PhasewiseError

DEVICES = ("cpu", "cuda")


def torch_and_device(device: str, threads: int | None = None):
    """(torch, torch.device); CPU timing uses `threads` threads (1 by default: a busy second core
    otherwise makes times blow up 8-15x on small machines)."""
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
