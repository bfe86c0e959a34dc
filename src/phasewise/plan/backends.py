"""Where strategy evaluations run: a local process pool (default) or a Ray cluster (--backend ray).
Each evaluation is deterministic, so both give identical results for the same inputs."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from phasewise.errors import PhasewiseError

BACKENDS = ("local", "ray")
# stage_lines: no line before the work has run this long (a plan that answers in seconds prints nothing extra, as
# simulate's bar, apps/simulate_view.py PROGRESS_AFTER_S), and at most these many a stage: its start and each
# quarter of its tasks done
STAGE_LINES_AFTER_S = 5.0
STAGE_LINE_QUARTERS = 4


def run_all(fn: Callable[..., Any], tasks: Sequence[tuple], backend: str = "local", workers: int | None = None,
            ray_address: str | None = None, progress: Callable[[int], None] | None = None) -> list[Any]:
    """fn(*task) for every task, results in task order; progress(k) after each completion."""
    if backend not in BACKENDS:
        raise PhasewiseError(f"--backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise PhasewiseError(f"--workers must be >= 1 (got {workers})")
    if backend == "local" and ray_address is not None:
        raise PhasewiseError("--ray-address names a Ray cluster: it needs --backend ray")
    if backend == "ray":
        # RAY_ADDRESS as Ray itself reads it: a cluster to join (its own CPUs, no num_cpus), as --ray-address is
        address = ray_address if ray_address is not None else os.environ.get("RAY_ADDRESS", "").strip() or None
        source = "--ray-address" if ray_address is not None else "RAY_ADDRESS"
        if address is not None and workers is not None:
            raise PhasewiseError(f"--workers sizes the local pool or a Ray started here; with {source} '{address}' "
                                 "the cluster's own CPUs set it"
                                 + (" (unset RAY_ADDRESS to start a Ray here)" if source == "RAY_ADDRESS" else ""))
        return _run_ray(fn, tasks, address, source, workers, progress)
    # at most one process a task (a larger --workers starts no idle processes)
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    if workers <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(fn(*t))
            if progress:
                progress(1)
        return out
    results: list[Any] = [None] * len(tasks)
    before = {p.pid for p in multiprocessing.active_children()}
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress:
                progress(1)
    except BaseException:  # Ctrl-C, a SIGTERM (apps/cli.py main raises it here), a task's error
        _stop_pool(pool, before)
        raise
    pool.shutdown()
    return results


def _stop_pool(pool: ProcessPoolExecutor, before: set[int]) -> None:
    """The pool's queued tasks dropped and its workers ended now: a `with` block's shutdown would wait for every
    queued task (the whole search) and a worker never told (a SIGTERM to the main process alone) would outlive it.
    The pool's manager thread is then waited for: it closes its wake-up pipe as it sees the workers gone, and one
    closing while the interpreter's exit hook (concurrent.futures.process._python_exit) writes to it prints a
    traceback (OSError: Bad file descriptor) after the run."""
    manager = getattr(pool, "_executor_manager_thread", None)  # (shutdown(wait=False) forgets it)
    pool.shutdown(wait=False, cancel_futures=True)
    workers = [p for p in multiprocessing.active_children() if p.pid not in before]
    for proc in workers:
        proc.terminate()
    for proc in workers:
        proc.join(timeout=WORKER_EXIT_S)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=WORKER_EXIT_S)
    if manager is not None:
        manager.join(timeout=WORKER_EXIT_S)


WORKER_EXIT_S = 2.0  # how long a terminated worker may take to exit before it is killed


def _run_ray(fn: Callable[..., Any], tasks: Sequence[tuple], address: str | None, source: str, workers: int | None,
             progress: Callable[[int], None] | None) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise PhasewiseError("--backend ray needs Ray: pip install 'phasewise[ray]' (or pip install ray)") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:  # (before Ray is asked: one already started here would not look at the address)
        check_ray_address(address, source)
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False, num_cpus=workers or os.cpu_count())
        except Exception as exc:  # connection failures come as several exception types
            where = f" at {source} '{address}'" if address else ""
            raise PhasewiseError(f"--backend ray: cannot start or reach Ray{where} ({type(exc).__name__}: {exc})"
                                 ) from None
    remote = ray.remote(fn)
    refs = [remote.remote(*t) for t in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(tasks)
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            results[index[ref]] = ray.get(ref)
            if progress:
                progress(1)
    return results


RAY_CONNECT_TIMEOUT_S = 5.0  # how long --ray-address's head may take to accept a connection


def check_ray_address(address: str, source: str = "--ray-address", timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """A one-line error naming `source` (--ray-address, or the RAY_ADDRESS environment variable) where nothing
    accepts a connection at its host:port within `timeout_s` (ray.init would retry the GCS for minutes with
    warnings). `auto` (the cluster this machine joined) and an address without a port are left to Ray."""
    import socket

    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not host:
        return
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise PhasewiseError(f"{source} '{address}': the port must be a number in 1-65535 (host:port, e.g. "
                             "127.0.0.1:6379)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = (f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError)
               else (exc.strerror or type(exc).__name__).lower())
        leave = "unset RAY_ADDRESS" if source == "RAY_ADDRESS" else "leave --ray-address out"
        raise PhasewiseError(f"{source} '{address}': no Ray cluster answers there ({why}); start one with "
                             f"`ray start --head` and give its address, or {leave} for a Ray started here") from None


def stage_lines(write: Callable[[str], None], label: str, after_s: float | None = None,
                clock: Callable[[], float] = time.monotonic) -> Callable[[str, int, int], Callable[[int], None]]:
    """A progress(stage, done, total) callback, as plan() and run_all take it, for output that is not a terminal (a
    log, a CI job: no bar to redraw): `write` gets one line as a stage starts and one as each quarter of its tasks
    completes, at most STAGE_LINE_QUARTERS + 1 a stage whatever its size, each with the time since the callback was
    made; none before `after_s` (STAGE_LINES_AFTER_S) have passed."""
    start = clock()
    after_s = STAGE_LINES_AFTER_S if after_s is None else after_s

    def line(text: str) -> None:
        elapsed = clock() - start
        if elapsed >= after_s:
            write(f"{label}: {text} ({elapsed:.0f} s)")

    def progress(stage: str, done: int, total: int) -> Callable[[int], None]:
        state = {"done": done, "quarter": done * STAGE_LINE_QUARTERS // total if total > 0 else 0}
        line(f"{stage}: {total} to run" if done == 0 else f"{stage}: {done} of {total} done")

        def advance(k: int) -> None:
            state["done"] += k
            quarter = state["done"] * STAGE_LINE_QUARTERS // total if total > 0 else STAGE_LINE_QUARTERS
            if quarter > state["quarter"]:
                state["quarter"] = quarter
                line(f"{stage}: {min(state['done'], total)} of {total} done")

        return advance

    return progress
