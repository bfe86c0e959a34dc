"""The host allocator CPU timings run under: freed memory kept for reuse (`caching`, the default) or glibc's own
behaviour (`system`).

A GPU's framework allocates device memory through a caching allocator (PyTorch's CUDA allocator keeps freed blocks
and hands them out again), so a forward or a training step that allocates its activations, logits and gradients anew
each time pays nothing for it after the first. On a CPU, PyTorch's tensors come from glibc's malloc, which maps every
allocation above its mmap threshold (at most 32 MiB on 64-bit) afresh and returns it to the kernel when it is freed,
and trims the heap's free top: the next step faults the same pages in again, one minor fault per 4 KiB page, charged
to the thread as system time. Measured here (4-layer, 512-wide Llama training steps, `validate --train-reuse`): 48-160
thousand faults a step, 18-23 % of its time. The cost model describes the work a step does, not the CPU allocator's
page faults, so the timing harnesses (`calibrate`, `validate`) keep freed memory in the process as a caching allocator
would: glibc's mallopt(M_MMAP_MAX, 0) serves every allocation from the heap, mallopt(M_TRIM_THRESHOLD, -1) never
trims it (both documented in mallopt(3)). `system` leaves glibc as it is, to measure the CPU as it runs by default.

The setting is the process's (mallopt changes malloc's global parameters and cannot be undone exactly), so a process
chooses once: the first measurement takes the default unless a command chose before it."""

from __future__ import annotations

import ctypes

from phasewise.errors import PhasewiseError

HOST_ALLOCATORS = ("caching", "system")
DEFAULT_HOST_ALLOCATOR = "caching"
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's <malloc.h> parameter numbers

_chosen: dict[str, str] = {}  # "mode" and "note" once this process has chosen


def use_host_allocator(mode: str) -> str:
    """Put this process's malloc in `mode` (HOST_ALLOCATORS) and return a note saying what it runs under. A process
    chooses once: the same mode again is a no-op, the other one a one-line error."""
    if mode not in HOST_ALLOCATORS:
        raise PhasewiseError(f"--host-allocator '{mode}' is not one of {', '.join(HOST_ALLOCATORS)}")
    if _chosen:
        if _chosen["mode"] != mode:
            raise PhasewiseError(f"--host-allocator {mode}: this process already measures with the "
                                 f"'{_chosen['mode']}' host allocator (a process-wide malloc setting); "
                                 "run it in a new process")
        return _chosen["note"]
    if mode == "system":
        note = "system (the C library's malloc as it is: large blocks mapped afresh and returned when freed)"
    else:
        note = _keep_freed_memory()
    _chosen.update(mode=mode, note=note)
    return note


def host_allocator_note() -> str:
    """What this process's measurements run under (the default, chosen now, if nothing chose before): a note whose
    first word is `caching` or `system` (where caching was asked for but the C library cannot, `system`)."""
    return use_host_allocator(_chosen.get("mode", DEFAULT_HOST_ALLOCATOR))


def host_allocator_mode() -> str:
    """The mode this process runs under (choosing the default if nothing chose before): for child processes."""
    host_allocator_note()
    return _chosen["mode"]


def _keep_freed_memory() -> str:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to set
        return "system (caching asked for, but this C library has no mallopt: its malloc as it is)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not (mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, -1)):
        return "system (caching asked for, but mallopt refused it: the C library's malloc as it is)"
    return "caching (freed memory kept for reuse: glibc mallopt M_MMAP_MAX 0, M_TRIM_THRESHOLD -1)"


def allocator_words(info: dict) -> str:
    """`caching host allocator` or `system host allocator`, for a report's title, from a run's info."""
    return f"{info['host_allocator'].split(' ', 1)[0]} host allocator"
