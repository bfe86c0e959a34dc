"""The environment review's fixes (fix-env): tables on an 80-column terminal, plan --export's user files by absolute
path, output paths checked before the work, SIGTERM ending a pool's workers, a closed stdout pipe (141) and a failed
stdout write (one line), RAY_ADDRESS honoured, simulate --out naming an earlier run's files, python -m phasewise."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from rich.console import Console

from phasewise.errors import PhasewiseError

BIN = Path(sys.executable).with_name("phasewise")
ENV = {**os.environ, "NO_COLOR": "1"}
BORDERS = "│┃┓┐┤┩┘┫"  # what a table line ends with where rich crops nothing


def _cli(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=60, **kw)


def _recorded(width: int = 80) -> Console:
    return Console(width=width, record=True, color_system=None)


def _table_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()[:1] in "┏┃┡│└"]


# 1. narrow terminals: figures and keys whole, no ellipsis, nothing past the width

def test_hardware_table_keeps_keys_and_figures_whole_at_80_columns():
    from phasewise.apps.hardware_view import chip_row, render_chips
    from phasewise.specs import load_hardware

    console = _recorded()
    render_chips(console, [chip_row(k, load_hardware(k)) for k in ("h100-sxm", "b200", "mi300x")], "Hardware")
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for key in ("h100-sxm", "b200", "mi300x", "1979", "3350", "3.99"):
        assert key in text


def test_simulate_instances_table_keeps_names_and_figures_whole_at_80_columns():
    from phasewise.apps.simulate_view import render_summary

    summary = json.loads(_cli("simulate", "--requests", "40", "--rate", "5", "--replicas", "2", "--json").stdout)
    console = _recorded()
    render_summary(console, summary)
    text = console.export_text()
    assert "…" not in text and "collocated" in text and "col0.1" in text
    assert f"{summary['instances'][0]['iterations']:,}" in text
    assert all(line[-1] in BORDERS for line in _table_lines(text))  # no table line cropped
    wide = _recorded(200)
    render_summary(wide, summary)
    assert "energy" in wide.export_text()  # the secondary columns stay where there is room


def test_plan_table_fits_80_columns_with_whole_figures_and_binds():
    from phasewise.apps.plan_view import plan_table
    from phasewise.plan import PlanOptions, WorkloadSpec, plan
    from phasewise.sim import Slo

    res = plan("meta-llama/Llama-3.1-8B", "h100-sxm", 1, Slo(1000, 50), WorkloadSpec((2048,), (256,)), refine=1,
               workers=1, opts=PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False))
    for width in (80, 70):
        console = _recorded(width)
        console.print(plan_table(res, width))
        text = console.export_text()
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        assert all(line[-1] in BORDERS for line in _table_lines(text))  # a right border on every line
        row = res.rows()[0]
        assert row["binding"].split(" (")[0] in text and f"{row['goodput_rps']:.2f}" in text


def test_estimate_tables_fold_instead_of_an_ellipsis_at_80_columns():
    from phasewise.apps.estimate_view import render_estimate
    from phasewise.perf.estimate import estimate

    console = _recorded()
    render_estimate(console, estimate("meta-llama/Llama-3.1-8B", "h100-sxm"))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80


# 2. plan --export: the user's files by absolute path

def test_exported_deployment_names_user_files_by_absolute_path(tmp_path, monkeypatch):
    from phasewise.plan.export import deployment_yaml

    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "chip.yaml").write_text("x: 1\n")
    (tmp_path / "cfg" / "eng.yaml").write_text("x: 1\n")
    monkeypatch.chdir(tmp_path)
    text = deployment_yaml({"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"hardware": "cfg/chip.yaml", "engine": "cfg/eng.yaml"}, {"hardware": "h100-sxm", "engine": "vllm"}],
        "router": "round_robin"})
    assert f"hardware: {tmp_path / 'cfg' / 'chip.yaml'}" in text and f"engine: {tmp_path / 'cfg' / 'eng.yaml'}" in text
    assert "hardware: h100-sxm" in text and "engine: vllm" in text and "model: meta-llama/Llama-3.1-8B" in text
    assert "router: round_robin" in text


def test_export_replays_from_its_own_folder(tmp_path):
    """The header's replay line, run from the export's folder, reads the deployment's files (a relative chip file)."""
    (tmp_path / "cfgdir").mkdir()
    chip = _cli("hardware", "h100-sxm", "--yaml")
    (tmp_path / "cfgdir" / "chip.yaml").write_text(chip.stdout)
    (tmp_path / "cfgdir" / "t.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + "".join(
        f"{i * 0.5},{300 + i * 37 % 200},{40 + i * 13 % 80}\n" for i in range(30)))
    done = _cli("plan", "--gpus", "1", "--hardware", "cfgdir/chip.yaml", "--workload", "cfgdir/t.csv", "--arrivals",
                "trace", "--top", "1", "--export", "ex", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    deployment = (tmp_path / "ex" / "deployment.yaml").read_text()
    assert f"hardware: {tmp_path / 'cfgdir' / 'chip.yaml'}" in deployment
    replay = next(line for line in deployment.splitlines() if line.startswith("# replay: phasewise "))
    args = replay.removeprefix("# replay: phasewise ").split(" (the verification")[0].split()
    run = _cli(*args, cwd=tmp_path / "ex")
    assert run.returncode == 0 and "attainment" in run.stdout, run.stderr


# 3. output paths checked before the work, '~' read alike in check and write, folders made

def test_output_paths_are_checked_before_the_work(tmp_path, monkeypatch):
    from phasewise.apps.launch import check_export_directory
    from phasewise.apps.simulate_view import refuse_overwriting_inputs
    from phasewise.plan.sweep import check_out

    (tmp_path / "afile").write_text("")
    with pytest.raises(PhasewiseError, match="--export .*afile is not a directory"):
        check_export_directory(tmp_path / "afile" / "sub")
    with pytest.raises(PhasewiseError, match="--out .*afile is not a directory"):
        check_out(str(tmp_path / "afile" / "sub" / "g.csv"))
    with pytest.raises(PhasewiseError, match="--out 'x': cannot write, .*afile is not a directory"):
        refuse_overwriting_inputs({"--out 'x'": tmp_path / "afile" / "e.yaml"}, {})  # fit-engine's, before the fit
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_out("~/e.csv") == tmp_path / "e.csv"  # the path written is the one checked


def test_fit_engine_out_makes_its_folders_and_refuses_a_file_on_the_way_at_once(tmp_path):
    points = Path(__file__).parents[1] / "src" / "phasewise" / "scenarios" / "data" / "splitwise_vllm.yaml"
    (tmp_path / "afile").write_text("")
    refused = _cli("fit-engine", str(points), "--params", "per_sequence_overhead_s", "--out", "afile/e.yaml",
                   cwd=tmp_path)
    assert refused.returncode == 2 and "afile is not a directory" in refused.stderr
    done = _cli("fit-engine", str(points), "--params", "per_sequence_overhead_s", "--out", "nd/e.yaml",
                cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "nd" / "e.yaml").is_file(), done.stderr


# 4. SIGTERM ends a pool's workers

def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_sigterm_ends_the_pool_workers():
    code = ("from phasewise.apps.cli_common import on_sigterm; on_sigterm()\n"
            "import time; from phasewise.plan.backends import run_all\n"
            "print('go', flush=True); run_all(time.sleep, [(20,)] * 4, workers=2)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    workers: list[int] = []
    try:
        assert proc.stdout.readline().strip() == "go"
        deadline = time.monotonic() + 10
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = _children(proc.pid)
        assert workers
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        time.sleep(0.5)
        assert not [w for w in workers if Path(f"/proc/{w}").exists()
                    and "Z" not in Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    finally:
        for pid in [proc.pid, *workers]:  # (only what this test started)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# 5. a closed stdout pipe: 141, quietly

@pytest.mark.parametrize("args", [("hardware",), ("models", "--json")])
def test_a_closed_stdout_pipe_exits_141_quietly(args):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        done = subprocess.run([str(BIN), *args], stdout=write, stderr=subprocess.PIPE, text=True, env=ENV,
                              timeout=60)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


# 6. a failed stdout write: one line, non-zero

@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [("models", "--json"), ("models",)])
def test_a_full_stdout_is_one_line_not_a_traceback(args):
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(BIN), *args], stdout=full, stderr=subprocess.PIPE, text=True, env=ENV,
                              timeout=60)
    assert done.returncode == 2 and done.stderr.splitlines() == ["error: cannot write the output (No space left on "
                                                                 "device)"]


def test_a_closed_stdout_is_one_line_not_a_traceback():
    done = subprocess.run(["bash", "-c", f"'{BIN}' models >&-"], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "standard output is closed" in done.stderr


# 7. RAY_ADDRESS joins that cluster, as --ray-address does

def test_ray_address_from_the_environment_is_joined_without_num_cpus(monkeypatch):
    from phasewise.plan import backends

    calls = []
    fake = types.SimpleNamespace(
        is_initialized=lambda: False, init=lambda **kw: calls.append(kw),
        remote=lambda fn: types.SimpleNamespace(remote=lambda *a: fn(*a)),
        wait=lambda pending, num_returns: (pending[:1], pending[1:]), get=lambda ref: ref)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with socket.socket() as head:  # something that accepts connections there (check_ray_address connects)
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        monkeypatch.setenv("RAY_ADDRESS", address)
        assert backends.run_all(pow, [(2, 3), (3, 2)], backend="ray") == [8, 9]
    assert calls == [{"address": address, "log_to_driver": False}]
    with pytest.raises(PhasewiseError, match="RAY_ADDRESS"):
        backends.run_all(pow, [(2, 3)], backend="ray", workers=2)


# 8. simulate --out names the files an earlier run left

def test_simulate_out_names_an_earlier_runs_files(tmp_path):
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "requests.parquet").write_text("an earlier run's")
    done = _cli("simulate", "--requests", "10", "--rate", "5", "--out", "st", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "note: st also holds requests.parquet, not written by this run" in done.stderr


# 9. python -m phasewise

def test_python_m_phasewise_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "phasewise", "--version"], capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("phasewise ")
