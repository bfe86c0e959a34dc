import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from phasewise.apps import cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, *, folder: Path = BENCHMARKS, module_name: str | None = None, register: bool = False):
    """A script of benchmarks/ (`folder`/NAME.py) imported as a module, under `module_name` (default NAME).
    register: put it in sys.modules under that name before it runs (a script with slotted dataclasses looks its
    module up there); the caller takes it out again."""
    spec = importlib.util.spec_from_file_location(module_name or name, Path(folder) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the `phasewise` entry point in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.argv", ["phasewise", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def reproduce_all():
    """`phasewise reproduce --all --json` run once in this process, as a user runs it: (exit code, stdout, the
    scenario results it printed by name). The contract test reads its output; each scenario's test of its defaults
    reads its result instead of running the scenario again."""
    import io
    from contextlib import redirect_stdout

    import phasewise.scenarios as scenarios_module

    run_scenarios, results = scenarios_module.run_scenarios, {}

    def recording(names, progress=None):
        ran = run_scenarios(names, progress=progress)
        results.update((r.scenario.name, r) for r in ran)
        return ran

    argv, out, code = sys.argv, io.StringIO(), 0
    scenarios_module.run_scenarios, sys.argv = recording, ["phasewise", "reproduce", "--all", "--json"]
    try:
        with redirect_stdout(out):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        scenarios_module.run_scenarios, sys.argv = run_scenarios, argv
    return code, out.getvalue(), results


@pytest.fixture(scope="session")
def scenario_defaults(request):
    """A scenario's result on its defaults: from the session's one `reproduce --all` run where the session runs the
    contract test anyway (the whole suite), else that scenario alone (a file run by itself stays quick)."""
    from functools import cache

    from phasewise.scenarios import get_scenario

    if any(item.name == "test_reproduce_all_json_passes_every_check" for item in request.session.items):
        results = request.getfixturevalue("reproduce_all")[2]
        return lambda name: results[name]
    return cache(lambda name: get_scenario(name).run())


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, tries: int = 200) -> None:
    """Wait until `url`/health answers (a server starting in a thread or a process)."""
    import time

    import httpx

    for _ in range(tries):
        try:
            httpx.get(f"{url}/health", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)


@contextmanager
def serving(app):
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread: yields its base URL, stops it afterwards."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def assert_decode_runs_match_fast(cm, line_type, batch_sizes, contexts, n_steps: int, checked_steps) -> None:
    """A cost model's closed-form decode runs (decode_line_series and decode_series over `n_steps` steps from each
    context, for each batch size) give fast()'s latency at every checked step and the first step's (latency, flops,
    bytes), to rounding; each batch's decode_line is a `line_type`."""
    import numpy as np

    from phasewise.perf import BatchShape

    steps = np.arange(n_steps, dtype=np.float64)
    for seqs in batch_sizes:
        line = cm.decode_line(seqs, seqs, seqs)
        assert isinstance(line, line_type)
        for context in contexts:
            pairs = kv = seqs * (context + 1.0)
            latencies, first = cm.decode_line_series(line, pairs, kv, steps, seqs, seqs)
            for step in checked_steps:
                grown = pairs + seqs * step
                fast = cm.fast(BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=grown,
                                          decode_kv_tokens=grown, logit_tokens=seqs))
                assert latencies[step] == pytest.approx(fast[0], rel=1e-12)
                if step == 0:
                    assert first == pytest.approx((fast[0], fast[2], fast[3]), rel=1e-12)
            series, _ = cm.decode_series(BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=pairs,
                                                    decode_kv_tokens=kv, logit_tokens=seqs),
                                         pairs + seqs * steps, kv + seqs * steps)
            assert series == pytest.approx(latencies, rel=1e-12)
