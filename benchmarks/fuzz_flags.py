"""Every flag of `estimate`, `simulate`, `plan`, `edge` and `device-cloud` (read from each command, so none is
missed), and every `reproduce NAME --set` key, with odd values (negative, NaN, infinite, huge, empty, a line break,
text where a number goes, a list where one value goes; a switch given bare): each run either works (exit 0, or 1 for
a scenario check or a plan that fails) or ends in one line `error: ...` with exit status 2 (or click's usage message
for a value typer cannot parse), never a traceback, a kill or a run past --timeout seconds. Runs are in-process
(with an address-space limit, in a scratch folder for what they write) unless --processes; `reproduce` always runs
each in its own process (its scenarios start process pools). Prints each run that does not pass, then the count.

    python benchmarks/fuzz_flags.py                     # every command
    python benchmarks/fuzz_flags.py --commands simulate,estimate --timeout 60
    python benchmarks/fuzz_flags.py --commands simulate,estimate --model nemotron-3-nano   # another model's paths
    python benchmarks/fuzz_flags.py --commands simulate --flags trace,dllm --processes
    python benchmarks/fuzz_flags.py --commands simulate --base --engine,sglang        # SGLang's knobs with odd values
    python benchmarks/fuzz_flags.py --commands validate --base --serve   # with PyTorch: --serve's flags, a tiny model
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import positive  # noqa: E402 - the scripts' shared flag checks

PHASEWISE = str(Path(sys.executable).with_name("phasewise"))
VALUES = ["0", "-1", "1e400", "nan", "inf", "abc", "", "1.5", "99999999999", "\n", "1,2", "1e9", "[]"]
# each command's flags are read from the command itself (a flag added later is fuzzed too); these are the arguments
# every run of it starts from, so that one flag is all that is odd (simulate a short open-loop run, plan a small
# serial search, edge and device-cloud a short answer)
BASE = {
    "estimate": [],
    "simulate": ["--requests", "20", "--rate", "5"],
    "plan": ["--gpus", "2", "--top", "1", "--workers", "1"],
    "edge": ["--output-len", "8"],
    "device-cloud": ["--output-len", "8", "--devices", "2"],
    # needs PyTorch (run with its environment's python): a tiny Llama on this CPU, against a catalog chip
    "validate": ["--hardware", "h100-sxm", "--layers", "2", "--hidden", "64"],
}
NOT_FUZZED = {"--help"}
MEMORY_LIMIT_BYTES = 8 * 2**30  # in-process: a huge allocation is a MemoryError (reported), not the OOM killer
SCENARIO_VALUES = ["-1", "nan", "abc", "1e9", "[]", "\n"]


def bad(result: subprocess.CompletedProcess) -> bool:
    err = result.stderr.strip()
    if "Traceback" in result.stderr or result.returncode not in (0, 1, 2):
        return True
    usage = "Usage:" in err or "╭" in err  # click's own message for a value typer cannot parse
    return result.returncode == 2 and "\n" in err and not usage


def run(args: list[str], timeout_s: float) -> tuple[bool, str]:
    # its own process group, killed whole on a timeout: a run's worker processes (plan, reproduce) do not outlive it
    with subprocess.Popen([PHASEWISE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            _, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return True, f"no answer in {timeout_s:g} s"
    result = subprocess.CompletedProcess(args, proc.returncode, "", stderr)
    return bad(result), f"exit {result.returncode}: " + stderr[-300:].replace("\n", " | ")


def run_here(args: list[str], timeout_s: float) -> tuple[bool, str]:
    """`phasewise args` in this process under fuzz_files' time-limited call, judged as run() judges a process:
    (bad, what it printed last)."""
    import fuzz_files  # beside this script: main() put its folder on sys.path

    from phasewise.apps import cli

    err = io.StringIO()
    sys.argv = ["phasewise", *args]

    def work() -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            cli.main()

    ended, problem = fuzz_files.guarded(work, timeout_s, (SystemExit,))
    if problem is not None and problem.startswith("no answer"):
        return True, problem
    code = 1 if problem is not None else 0 if ended is None else ended.code if isinstance(ended.code, int) else 1
    stderr = err.getvalue() + (f"Traceback ... {problem}" if problem is not None else "")
    result = subprocess.CompletedProcess(args, code, "", stderr)
    return bad(result), f"exit {code}: " + stderr[-300:].replace("\n", " | ")


def command_flags(command: str) -> list[tuple[str, bool]]:
    """(flag, is a bare switch) for every option of `phasewise command`, from the command itself."""
    import typer

    from phasewise.apps import cli

    params = typer.main.get_command(cli.app).commands[command].params
    return [(p.opts[0], bool(p.is_flag)) for p in params
            if p.param_type_name == "option" and p.opts[0] not in NOT_FUZZED]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", default="estimate,simulate,plan,reproduce,edge,device-cloud",
                    help="comma-separated: estimate, simulate, plan, reproduce, edge, device-cloud, validate "
                         "(PyTorch)")
    ap.add_argument("--flags", default="", help="comma-separated flag names without dashes (default: every flag)")
    ap.add_argument("--timeout", type=positive, default=120.0, help="seconds one run may take")
    ap.add_argument("--model", help="estimate / simulate / plan this model instead of each command's default")
    ap.add_argument("--base", default="", help="comma-separated arguments every run also starts from (e.g. "
                    "--engine,sglang: that engine's knobs then take the odd values, not a refusal)")
    ap.add_argument("--processes", action="store_true", help="each run in its own process (slower, isolated)")
    args = ap.parse_args()
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    allowed = [*BASE, "reproduce"]
    unknown = [c for c in commands if c not in allowed]
    if unknown or not commands:
        ap.error(f"--commands: {', '.join(unknown) or 'none given'}: not one of {', '.join(allowed)}")
    wanted = {"--" + f.strip().lstrip("-") for f in args.flags.split(",") if f.strip()}
    if wanted:  # a misspelt flag fuzzes nothing: refused, not a green "0 runs, 0 failing"
        flagged = [c for c in commands if c != "reproduce"]
        if not flagged:
            ap.error("--flags: reproduce fuzzes each scenario's --set keys, not flags")
        unknown = sorted(wanted - {flag for c in flagged for flag, _ in command_flags(c)})
        if unknown:
            ap.error(f"--flags: not a flag of {', '.join(flagged)}: {', '.join(unknown)}")
    if not args.processes:
        sys.path.insert(0, str(Path(__file__).parent))
        import fuzz_files

        signal.signal(signal.SIGALRM, fuzz_files._too_slow)  # what fuzz_files.guarded catches as a time-out
    if not args.processes:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, resource.getrlimit(resource.RLIMIT_AS)[1]))
    start, runs, failures = time.perf_counter(), 0, 0
    scratch = tempfile.mkdtemp(prefix="fuzz_flags_")
    os.chdir(scratch)  # what runs write (--out, --report, --export with odd names) lands here
    for command in commands:
        cases: list[list[str]] = []
        if command == "reproduce":
            listing = subprocess.run([PHASEWISE, "reproduce", "--json"], capture_output=True, text=True).stdout
            for name in re.findall(r'"scenario": "([^"]+)"', listing):
                probe = subprocess.run([PHASEWISE, "reproduce", name, "--set", "zzz=1"], capture_output=True,
                                       text=True).stderr
                keys = re.search(r"known: ([^)]*)\)", probe)
                for key in (keys.group(1).split(", ") if keys else []):
                    cases += [["reproduce", name, "--set", f"{key}={value}", "--json"] for value in SCENARIO_VALUES]
        else:
            base = BASE[command] + (["--model", args.model] if args.model else []) + [a for a in args.base.split(",") if a]
            for flag, switch in command_flags(command):
                if wanted and flag not in wanted:
                    continue
                cases += [[command, *base, flag]] if switch else [[command, *base, flag, v] for v in VALUES]
        for case in cases:
            here = not args.processes and command != "reproduce"
            failed, what = run_here(case, args.timeout) if here else run(case, args.timeout)
            runs += 1
            if failed:
                failures += 1
                shown = " ".join(a if a and a.isprintable() else repr(a) for a in case)
                print(f"FAIL {shown}: {what}", flush=True)
    os.chdir(Path.home())
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{runs} runs, {failures} failing, in {time.perf_counter() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
