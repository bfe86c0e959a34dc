"""The README's command blocks run in a fresh clone: every `phasewise ...` line of a ```sh block parses (its
command and every flag and value exist), and those that need no GPU, no measuring extra, no file the clone lacks
and no long run are run here and exit 0."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import typer

from phasewise.apps.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
# Not run (they are still parsed): what each needs that a quick test does not have.
NOT_RUN = {
    "serve": "starts a server (tests/test_twin*.py serve it)",
    "calibrate": "times this CPU for a minute (tests/test_measure.py runs a quick one)",
    "validate": "needs the torch extra and a calibration (tests/test_measure.py)",
}
SLOW_REPRODUCE = "--all"  # every scenario: tests/test_reproduce.py runs it


def readme_commands() -> list[list[str]]:
    """The `phasewise` lines of the README's sh blocks, continuation lines joined, comments dropped."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("phasewise "):
                commands.append(shlex.split(line)[1:])
    return commands


def readme_files() -> dict[str, str]:
    """The files the README shows whole: ```yaml blocks whose first line is `# NAME.yaml: ...`."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    return {m.group(1): b for b in blocks if (m := re.match(r"# ([\w.-]+\.ya?ml):", b))}


COMMANDS = readme_commands()


def test_the_readme_has_command_blocks():
    assert len(COMMANDS) >= 15


def _filled(args: list[str]) -> list[str]:
    """A template's optional parts taken ([--flag v] -> --flag v), '...' dropped, the first of 'a|b'."""
    out = []
    for a in args:
        a = a.strip("[]")
        if a in ("", "..."):
            continue
        out.append(a.split("|")[0] if "|" in a and not a.startswith("-") else a)
    return out


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_each_readme_command_parses(args):
    args = _filled(args)
    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("phasewise", ["--help"], resilient_parsing=True), args[0])
    assert command is not None, f"no command {args[0]}"
    command.make_context(args[0], list(args[1:]))  # raises on an unknown flag or a value of the wrong type


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_each_readme_command_runs(args, run_cli, tmp_path, monkeypatch):
    if args[0] in NOT_RUN:
        pytest.skip(NOT_RUN[args[0]])
    if args[0] == "reproduce" and SLOW_REPRODUCE in args:
        pytest.skip("reproduce --all: tests/test_reproduce.py runs it")
    args = _filled(args)  # a template runs with its optional parts
    if "--backend" in args and importlib.util.find_spec("ray") is None:  # the optional ray extra
        i = args.index("--backend")
        args = args[:i] + args[i + 2:]
    monkeypatch.chdir(tmp_path)
    for name, body in readme_files().items():  # files the README writes out (```yaml blocks headed `# NAME:`)
        (tmp_path / name).write_text(body)
    files = [a for a in args if a.endswith((".yaml", ".yml", ".csv", ".jsonl", ".json")) and "/" not in a]
    if any(not Path(f).exists() for f in files):
        pytest.skip(f"needs the user's own file {files[0]}")
    code, out, err = run_cli(*args)
    # reproduce exits 1 when a check is not reached (a variation may move one), never 2 (bad input)
    assert code == 0 or (args[0] == "reproduce" and code == 1), err
