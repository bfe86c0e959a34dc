"""A sweep's `--out`: the path checked before the sweep runs (check_out), and the rows written to it as CSV or
Parquet (write_rows)."""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError


def check_out(path: str) -> Path:
    """`--out` as a path the rows can go to, checked before the sweep runs (not after its minutes of work): its
    suffix, and that it can be written (export.py check_output_path: no folder there, no file on its way, the
    nearest folder writable); the path to write, '~' expanded as the check read it."""
    from phasewise.plan.export import check_output_path

    out = Path(path)
    if out.suffix not in (".csv", ".parquet"):
        raise PhasewiseError(f"--out '{path}' must end in .csv or .parquet")
    if out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise PhasewiseError("--out *.parquet needs pyarrow: pip install pyarrow (or write .csv)")
    # where the rows land once the folders on the way are made (a `..` after a folder not yet made: its parent)
    if Path(os.path.realpath(out.expanduser())).is_dir():
        raise PhasewiseError(f"--out '{path}': cannot write (Is a directory)")
    return check_output_path(f"--out '{path}'", out)


def write_rows(rows: list[dict[str, Any]], path: str) -> Path:
    out = check_out(path)
    if not rows:
        raise PhasewiseError("the sweep produced no rows")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), out)
            return out
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    except OSError as exc:
        raise PhasewiseError(f"--out '{path}': cannot write ({exc.strerror})") from None
    return out
