from contextlib import contextmanager

import pytest

from phasewise.apps import cli


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
