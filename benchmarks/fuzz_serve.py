"""Every flag of `serve` (the digital twin) with odd values, in-process: each run either refuses in one line
(`error: ...`, exit status 2, or click's usage message for a value typer cannot parse) or builds the twin, which
then answers /v1/models, a completion, a streamed chat completion and /metrics without a server error. Nothing
listens on a port: uvicorn's Server.run is replaced by a TestClient on the same app, and the cold-start wait is
recorded, not slept (a wait over a day counts as a hang). Prints each run that does not pass, then the count.

    python benchmarks/fuzz_serve.py                              # every flag x every value (~2 min on 2 cores)
    python benchmarks/fuzz_serve.py --flags speed,cold-start --base --arch,disagg,--prefill-workers,1
    python benchmarks/fuzz_serve.py --sample 60 --seed 3         # 60 of the runs, drawn at random (CI's size)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import typer
import uvicorn
from fastapi.testclient import TestClient

from phasewise.apps import cli, cli_serve


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VALUES = _sibling("fuzz_flags").VALUES  # the same odd values every flag fuzzer tries
fuzz_files = _sibling("fuzz_files")
DAY_S = 86_400.0


class Hang(Exception):
    pass


def serve_flags() -> list[tuple[str, bool]]:
    """(flag, is a bare switch) for every option of `serve`, from the command itself (so none is missed)."""
    command = typer.main.get_command(cli.app).commands["serve"]
    flags = []
    for param in command.params:
        if param.param_type_name == "option" and param.opts[0] != "--help":
            flags.append((param.opts[0], bool(param.is_flag)))
    return flags


def exercise(app: Any, problems: list[str]) -> None:
    """What `serve` would have served: models, a completion, a streamed chat completion, metrics; any status of
    500 or more, or a completion that does not finish, goes to `problems`."""
    with TestClient(app) as client:
        listed = client.get("/v1/models")
        if listed.status_code != 200:
            problems.append(f"/v1/models {listed.status_code}")
            return
        name = listed.json()["data"][0]["id"]
        done = client.post("/v1/completions", json={"model": name, "prompt": "hello there", "max_tokens": 4})
        if done.status_code >= 500 or (done.status_code == 200 and
                                       done.json()["choices"][0]["finish_reason"] != "length"):
            problems.append(f"completion {done.status_code}: {done.text[:200]}")
        body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            text = "".join(stream.iter_text())
            if stream.status_code >= 500 or (stream.status_code == 200 and "[DONE]" not in text):
                problems.append(f"streamed chat {stream.status_code}: {text[-200:]}")
        metrics = client.get("/metrics")
        if metrics.status_code >= 500:
            problems.append(f"/metrics {metrics.status_code}")


def run_case(argv: list[str], seconds: float) -> str | None:
    """What is wrong with `phasewise serve argv` (None: it refused in one line, or built a twin that served)."""
    problems: list[str] = []
    waits: list[float] = []

    def fake_run(server: uvicorn.Server, *_: Any, **__: Any) -> None:
        exercise(server.config.app, problems)

    def fake_sleep(wait_s: float) -> None:
        waits.append(wait_s)
        if not wait_s <= DAY_S:
            raise Hang(f"would wait {wait_s:g} s before listening")

    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["phasewise", "serve", *argv]

    def work() -> None:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()

    real_run, real_time = uvicorn.Server.run, cli_serve.time
    uvicorn.Server.run = fake_run
    cli_serve.time = type("FakeTime", (), {"sleep": staticmethod(fake_sleep)})
    try:
        ended, problem = fuzz_files.guarded(work, seconds, (SystemExit,))
    finally:
        uvicorn.Server.run, cli_serve.time = real_run, real_time
    if problem is not None:
        return problem
    if problems:
        return "; ".join(problems)
    code = 0 if ended is None else ended.code if isinstance(ended.code, int) else 1
    text = err.getvalue().strip()
    if code == 0:
        return None
    usage = "Usage:" in text or "╭" in text  # click's own message for a value typer cannot parse
    lines = [line for line in text.splitlines() if not line.startswith("warning:")]
    if code == 2 and (usage or (len(lines) == 1 and lines[0].startswith("error: "))):
        return None
    return f"exit {code}: {text[-300:]!r}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flags", default="", help="comma-separated flag names without dashes (default: every flag)")
    ap.add_argument("--base", default="", help="comma-separated arguments every run starts from")
    ap.add_argument("--seconds", type=float, default=60.0, help="a case's time limit")
    ap.add_argument("--sample", type=int, default=0, help="run only this many (flag, value) cases, drawn at random")
    ap.add_argument("--seed", type=int, default=0, help="the draw's seed")
    args = ap.parse_args()
    flags = serve_flags()
    if args.flags:
        wanted = {"--" + f.strip().lstrip("-") for f in args.flags.split(",") if f.strip()}
        unknown = wanted - {flag for flag, _ in flags}
        if unknown:
            print(f"--flags: not a serve flag: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        flags = [(flag, switch) for flag, switch in flags if flag in wanted]
    base = [a for a in args.base.split(",") if a]
    signal.signal(signal.SIGALRM, fuzz_files._too_slow)
    cases = [base] + [base + ([flag] if switch else [flag, value])
                      for flag, switch in flags for value in ([None] if switch else VALUES)]
    if args.sample:
        cases = [cases[0]] + random.Random(args.seed).sample(cases[1:], min(args.sample, len(cases) - 1))
    failures = 0
    t0 = time.perf_counter()
    for argv in cases:
        if (why := run_case(argv, args.seconds)) is not None:
            failures += 1
            print(f"serve {' '.join(repr(a) for a in argv)}: {why}")
    wall = time.perf_counter() - t0
    print(f"{len(cases)} runs of serve ({len(flags)} flags), {failures} failing, {wall:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
