"""The host allocator CPU timings run under (measure/host_allocator.py): freed memory kept for reuse by default, as
a GPU's caching allocator keeps it, or the C library's malloc as it is; one choice a process."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from phasewise.errors import PhasewiseError
from phasewise.measure import host_allocator

GLIBC = hasattr(ctypes.CDLL(None), "mallopt")

# a 64 MiB array allocated, filled and freed 5 times after one warm-up: the minor page faults of those 5. glibc maps
# blocks above 32 MiB afresh and unmaps them when freed, so each faults its pages in anew (16,384 of 4 KiB, or as few
# as 32 where the kernel backs it with 2 MiB pages); kept, none.
FAULTS = """
import resource, sys
import numpy as np
from phasewise.measure.host_allocator import use_host_allocator
note = use_host_allocator(sys.argv[1])
np.ones(8 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    block = np.ones(8 * 2**20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, note.split(" ", 1)[0])
"""


def _faults(mode: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=60, check=True)
    faults, word = out.stdout.split()
    return int(faults), word


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_caching_keeps_freed_memory_so_a_step_faults_no_pages_in_again():
    system_faults, system_word = _faults("system")
    caching_faults, caching_word = _faults("caching")
    assert (system_word, caching_word) == ("system", "caching")
    assert system_faults >= 5 * 32, system_faults  # every block's pages again, even as 2 MiB pages
    assert caching_faults < 16, caching_faults


def test_an_unknown_allocator_is_a_one_line_error_naming_the_choices(run_cli):
    with pytest.raises(PhasewiseError, match=r"--host-allocator 'pool' is not one of caching, system"):
        host_allocator.use_host_allocator("pool")
    for command in ("calibrate", "validate"):
        code, out, err = run_cli(command, "--host-allocator", "pool")
        assert code == 2 and err.strip() == "error: --host-allocator 'pool' is not one of caching, system", err


def test_a_process_chooses_once(monkeypatch):
    monkeypatch.setattr(host_allocator, "_chosen", {"mode": "caching", "note": "caching (kept)"})
    assert host_allocator.use_host_allocator("caching") == "caching (kept)"  # the same again: nothing to do
    assert host_allocator.host_allocator_mode() == "caching"
    with pytest.raises(PhasewiseError, match="already measures with the 'caching' host allocator"):
        host_allocator.use_host_allocator("system")
    assert host_allocator.allocator_words({"host_allocator": "caching (kept)"}) == "caching host allocator"

