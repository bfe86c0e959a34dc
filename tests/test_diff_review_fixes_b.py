"""The diff review's fixes (fix-diffB): simulate's tables on a narrow terminal keep every figure and key whole (no
ellipsis: a column that cannot fit is left out by name, a text column folds), and a SIGTERM to a multi-worker plan
prints no traceback (the pool's manager thread waited for) and leaves no worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).with_name("phasewise")
ENV = {**os.environ, "NO_COLOR": "1"}
BORDERS = "│┃┓┐┤┩┘┫"  # what a table line ends with where rich crops nothing


def _recorded(width: int) -> Console:
    return Console(width=width, record=True, color_system=None)


def _table_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()[:1] in "┏┃┡│└"]


# 4. narrow terminals: simulate's latency and instances tables, and fit_to_width itself

@pytest.fixture(scope="module")
def summary() -> dict:
    done = subprocess.run([str(BIN), "simulate", "--requests", "20", "--rate", "2", "--json"], capture_output=True,
                          text=True, env=ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("width", [40, 30])
def test_simulate_tables_keep_figures_and_keys_whole_on_a_narrow_terminal(summary, width):
    from phasewise.apps.simulate_view import render_summary

    console = _recorded(width)
    render_summary(console, summary)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    assert all(line[-1] in BORDERS for line in _table_lines(text))  # no table line cropped
    e2e = summary["e2e_ms"]
    shown = ("mean", "p50", "p90", "p99") if width == 40 else ("mean", "p90", "p99")
    for key in shown:  # the end-to-end figures (the widest) whole
        assert f"{e2e[key]:.1f}" in text, key
    if width == 30:
        assert "p50 left out at 30 columns" in " ".join(text.split())  # (the caption wraps)
    inst = summary["instances"][0]
    assert inst["name"] in text and inst["role"] in text and f"{inst['busy_fraction']:.0%}" in text
    for header in ("metric", "instance", "role", "busy"):  # keys whole
        assert header in text


def test_fit_to_width_leaves_out_figures_by_name_rather_than_cut_them():
    from phasewise.apps.cli_common import fit_to_width

    table = Table(title="t")
    for header in ("name", "first", "second", "third"):
        table.add_column(header, no_wrap=True)
    table.add_row("a-key", "1234567.8", "2345678.9", "3456789.0")
    fit_to_width(table, 30)
    console = _recorded(30)
    console.print(table)
    text = console.export_text()
    assert "…" not in text and all(line[-1] in BORDERS for line in _table_lines(text))
    assert "a-key" in text and "1234567.8" in text and "2345678.9" in text
    assert "third left out at 30 columns" in " ".join(text.split())


def test_fit_to_width_folds_a_text_column_rather_than_cut_it():
    from phasewise.apps.cli_common import fit_to_width

    table = Table()
    table.add_column("label")
    table.add_column("value", no_wrap=True)
    table.add_row("end-to-end-latency", "12345.6")
    fit_to_width(table, 20)
    console = _recorded(20)
    console.print(table)
    text = console.export_text()
    assert "…" not in text and "12345.6" in text and "left out" not in text
    assert "".join(line.split("│")[1] for line in _table_lines(text) if line.startswith("│")).replace(" ", "") \
        == "end-to-end-latency"  # every character of the label, folded over lines


def test_fit_to_width_gives_each_wrapped_column_room_for_its_longest_word():
    """rich narrows the widest wrapped column first: here it would cut 'incomprehensibilities' though the other
    column had room to give."""
    from phasewise.apps.cli_common import fit_to_width

    table = Table()
    table.add_column("a")
    table.add_column("b")
    table.add_row("incomprehensibilities x y", "aa bb cc dd ee ff gg hh ii jj kk ll")
    fit_to_width(table, 40)
    console = _recorded(40)
    console.print(table)
    text = console.export_text()
    assert "…" not in text and "incomprehensibilities" in text


# 6. SIGTERM during a multi-worker plan: no traceback, no worker left

RACE = textwrap.dedent("""
    import os, signal, sys, threading, time
    import concurrent.futures.process as cfp
    from phasewise.apps.cli_common import on_sigterm
    from phasewise.plan.backends import run_all

    def wakeup(self):  # the exit hook's check of its wake-up pipe and its write to it, apart
        if not self._closed:
            time.sleep(0.6)
            self._writer.send_bytes(b"")

    join = cfp._ExecutorManagerThread.join_executor_internals

    def late_join(self):  # the manager thread's closing of that pipe, late
        time.sleep(0.3)
        join(self)

    cfp._ThreadWakeup.wakeup = wakeup
    cfp._ExecutorManagerThread.join_executor_internals = late_join
    on_sigterm()
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    try:
        run_all(time.sleep, [(30,)] * 4, workers=2)
    except KeyboardInterrupt:
        sys.exit(143)
""")


def test_sigterm_in_a_pool_prints_no_traceback_where_the_exit_hook_races_the_manager_thread():
    """The race widened (the manager closes its pipe while the interpreter's exit hook writes to it): _stop_pool
    waits for the manager thread, so the hook finds the pipe closed and writes nothing."""
    done = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True, env=ENV, timeout=30)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr


def test_stop_pool_waits_for_the_manager_thread(monkeypatch):
    import concurrent.futures.process as cfp
    import multiprocessing

    from phasewise.plan.backends import _stop_pool

    join = cfp._ExecutorManagerThread.join_executor_internals

    def late_join(self):
        time.sleep(0.5)
        join(self)

    monkeypatch.setattr(cfp._ExecutorManagerThread, "join_executor_internals", late_join)
    before = {p.pid for p in multiprocessing.active_children()}
    pool = cfp.ProcessPoolExecutor(max_workers=2)
    futures = [pool.submit(time.sleep, 30) for _ in range(4)]
    deadline = time.monotonic() + 10
    while not all(f.running() for f in futures[:2]) and time.monotonic() < deadline:
        time.sleep(0.05)
    manager, wakeup = pool._executor_manager_thread, pool._executor_manager_thread_wakeup
    _stop_pool(pool, before)
    assert not manager.is_alive() and wakeup._closed
    assert not [p for p in multiprocessing.active_children() if p.pid not in before]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc")
def test_sigterm_to_a_multi_worker_plan_at_several_moments():
    args = [str(BIN), "plan", "--model", "meta-llama/Llama-3.1-8B", "--gpus", "4", "--workers", "2",
            "--slo-ttft-ms", "500", "--slo-tpot-ms", "50"]
    for delay_s in (1.0, 2.0, 3.0, 4.5):  # before the pool, as it starts, while it searches
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        time.sleep(delay_s)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode in (143, -signal.SIGTERM), (delay_s, proc.returncode, err)
        assert "Traceback" not in err, (delay_s, err)
        deadline = time.monotonic() + 3
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], delay_s
