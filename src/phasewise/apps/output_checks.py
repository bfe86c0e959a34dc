"""Where a run's `--out` files land and the checks before any work: no directory in a file's place, no file on a
folder's way, and no output over a file the run reads (its inputs, the texts of a --deployment file among them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError

RECORDS = "requests"  # --out DIR's files: the per-request records' stem, and the summary
SUMMARY = "summary.json"


# the files of a checkpoint directory a run may read (config, tokenizer, weights, remote code)
CHECKPOINT_SUFFIXES = frozenset({".json", ".yaml", ".yml", ".safetensors", ".bin", ".pt", ".model", ".tiktoken",
                                 ".txt", ".py", ".gguf"})


def input_files(values: dict[str, Any]) -> dict[tuple[int, int], str]:
    """The files a run reads that its command line names by path, keyed by file identity (device, inode: a symlink or
    another spelling of the path is the same file), each with how the command named it ("--workload 'T.csv'"):
    every string value (and each item of a comma-separated one) naming an existing file, and a checkpoint's files
    directly in one naming a directory (a local checkpoint's config.json; not an earlier run's report or records
    beside them). `values`: {flag or label: value}; a --deployment file's own texts count too (named_in_deployment)."""
    found: dict[tuple[int, int], str] = {}
    for flag, value in {**values, **named_in_deployment(values.get("--deployment"))}.items():
        if not isinstance(value, str):
            continue
        for part in dict.fromkeys([value.strip(), *(v.strip() for v in value.split(","))]):
            if not part:
                continue
            path = Path(part).expanduser()
            try:
                if path.is_file():
                    files = [path]
                elif path.is_dir():  # a checkpoint's files, not an earlier run's summary.json beside them
                    files = [f for f in path.iterdir()
                             if f.suffix in CHECKPOINT_SUFFIXES and f.name != SUMMARY and f.is_file()]
                else:
                    continue
                for f in files:
                    key = _identity(f)
                    if key is not None:
                        found.setdefault(key, f"{flag} '{part}'" + ("" if f is path else f" ({f.name})"))
            except OSError:  # unreadable: the run's own reading of it says why
                continue
    return found


def named_in_deployment(path: Any) -> dict[str, str]:
    """{how an error names it: text} of every text a --deployment file holds, the files the run reads through it among
    them (its model, each group's hardware, model, engine and mapping, a draft model: any path it can name), each
    named by its place in the file ("--deployment 'd.yaml' (instances.0.hardware)"). {} where `path` is no readable
    deployment file (the run's own reading of it says why)."""
    if not isinstance(path, str):
        return {}
    from phasewise.specs.reading import read_user_file

    try:
        data = read_user_file(path, "deployment")
    except PhasewiseError:
        return {}
    found: dict[str, str] = {}

    def walk(node: Any, where: tuple[str, ...]) -> None:
        if isinstance(node, str):
            found[f"--deployment '{path}' ({'.'.join(where)})"] = node
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*where, str(key)))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*where, str(index)))

    walk(data, ())
    return found


def as_written(path: str | Path) -> Path:
    """Where writing to `path` lands once the folders on its way are made (as the outputs' writers make them): the
    folders that exist followed through their links, a `..` after one not yet made its parent (`sub/../t.csv` is
    `t.csv`: stat() of the path as given finds no file while sub/ is missing)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _identity(path: Path) -> tuple[int, int] | None:
    """The file `path` names (device, inode), as writing to it would find it (as_written); None where there is none."""
    try:
        st = as_written(path).stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting_inputs(outputs: dict[str, str | Path], inputs: dict[str, Any]) -> None:
    """Before any work: a one-line error where an output (`outputs`: {how to name it: its path}) cannot be written
    (plan/export.py check_output_path: a folder in its place, a file on its way, no writable folder) or is a file
    the run reads (input_files of `inputs`): outputs never overwrite their inputs."""
    from phasewise.plan.export import check_output_path

    for what, out in outputs.items():
        check_output_path(what, out)
    read = input_files(inputs)
    for what, out in outputs.items():
        key = _identity(Path(out))
        if key is not None and key in read:
            raise PhasewiseError(f"{what} would overwrite {read[key]}, which this run reads: outputs never replace "
                                 "their inputs; write it elsewhere")


def records_paths(out_dir: str, fmt: str, extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """{how an error names it: path} of the files `--out DIR` writes (the records, `extra`'s tables by file stem,
    summary.json)."""
    out = Path(out_dir)
    tables = [table_path(out / stem, fmt) for stem in (RECORDS, *extra)]
    return {**{f"--out '{out_dir}' ({path.name})": path for path in tables},
            f"--out '{out_dir}' ({SUMMARY})": out / SUMMARY}


def check_records_out(out_dir: str, fmt: str, inputs: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    """Before the run: `--out DIR` can take its files (the records, `extra`'s tables by file stem, summary.json: none
    of them a directory, DIR not a file) and none of them is a file the run reads (`inputs`: {flag: value} as given,
    refuse_overwriting_inputs). One-line errors."""
    out = as_written(out_dir)
    if out.exists() and not out.is_dir():
        raise PhasewiseError(f"--out '{out_dir}': a file of that name exists; give a directory (new or not)")
    paths = records_paths(out_dir, fmt, extra)
    for what, path in paths.items():
        if as_written(path).is_dir():
            raise PhasewiseError(f"{what}: cannot write, {path} is a directory")
    refuse_overwriting_inputs(paths, inputs)


def table_path(stem: Path, fmt: str) -> Path:
    """Where a table of `stem` is written in format `fmt`: `stem`.csv or `stem`.parquet."""
    if fmt not in ("csv", "parquet"):
        raise PhasewiseError(f"--format '{fmt}' is not one of csv, parquet")
    return stem.with_suffix(f".{fmt}")
