"""simulate's `--out DIR` written: the per-request records (and any more tables) and summary.json, all or none, each
staged beside its place and all renamed in together with Ctrl-C and SIGTERM held."""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phasewise.apps.jsonout import dumps
from phasewise.apps.output_checks import RECORDS, SUMMARY, check_records_out, table_path
from phasewise.errors import PhasewiseError

if TYPE_CHECKING:
    from phasewise.sim.metrics import SimResult


def write_records(result: SimResult, summary: dict[str, Any], out_dir: str, fmt: str,
                  extra: dict[str, dict[str, Any]] | None = None, inputs: dict[str, Any] | None = None) -> list[Path]:
    """Per-request records as CSV (always available) or Parquet (needs pyarrow), plus summary.json; `extra`: more
    tables by file stem ({stem: {column: values}}), written the same way. Checked first (check_records_out, extra's
    tables among them, with `inputs` where given: the run's {flag: value}), so a directory in a file's place is a
    one-line error, not a traceback. Nothing is half written: each file is written to a temporary name beside it
    (staging_path) and all are renamed into place together once every one is written (summary.json last, Ctrl-C and
    SIGTERM held over the renames: signals_held); an interrupt or a failed write before then removes the temporaries
    and leaves DIR's earlier files as they were, saying so in one line. The files an earlier run left in DIR that this
    one did not write (records in the other format, a --dllm run's timeline) are named in a note on stderr, as
    plan --export names its folder's: they are not this run's."""
    check_records_out(out_dir, fmt, inputs or {}, tuple(extra or {}))
    out = Path(out_dir).expanduser()  # '~' as check_records_out reads it
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PhasewiseError(f"--out '{out_dir}': cannot create the directory ({exc.strerror})") from None
    staged: list[tuple[Path, Path]] = []  # (temporary, final), in the order they are renamed: summary.json last
    placed = False
    try:
        for stem, cols in ((RECORDS, None), *(extra or {}).items()):
            final = table_path(out / stem, fmt)
            staged.append((staging_path(final), final))
            write_table(result.records() if cols is None else cols, staged[-1][0], fmt)
        summary_path = out / SUMMARY
        staged.append((staging_path(summary_path), summary_path))
        staged[-1][0].write_text(dumps(summary, indent=2))
        with signals_held():  # every file renamed, or (an interrupt before) none
            for temporary, final in staged:
                os.replace(temporary, final)
            placed = True
    except OSError as exc:  # a directory in a table's place (extra's), no permission, a full disk
        finals = {str(temporary): final for temporary, final in staged}  # a temporary named as the file it stands for
        where = f" {finals.get(str(exc.filename), exc.filename)}" if exc.filename else ""
        raise PhasewiseError(f"--out '{out_dir}': cannot write{where} ({exc.strerror})") from None
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (cli_common.on_sigterm): the exit status stays the interrupt's
        if not placed:  # (one held over the renames arrives after them: every file is this run's)
            print(f"interrupted: --out '{out_dir}' not written (its previous files left as they were)",
                  file=sys.stderr)
        raise
    finally:
        if not placed:
            discard(staged)
    written = [final for _, final in staged]
    note_others(out_dir, written)
    return written


def staging_path(final: Path) -> Path:
    """The temporary name `final` is written under before it is renamed into place: beside it (the same folder, so
    the rename is atomic), hidden, this process's, and named partial should a kill leave it."""
    return final.with_name(f".{final.name}.{os.getpid()}.partial")


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove the temporaries of `staged` ((temporary, final) pairs) that exist; the finals are left alone."""
    for temporary, _ in staged:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held while the block runs (renames that take microseconds: an interrupt lands before or after
    all of them, not between two), the first that came handled as it ends, by the handler it found (Ctrl-C's
    KeyboardInterrupt, cli_common.on_sigterm's; a default one's signal sent again). Python's own handlers, swapped for
    the block's span, not a thread's signal mask, which a signal sent to the process passes by way of any other
    thread (pyarrow's pool). Outside the main thread, which alone can set handlers, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    before = {signum: handler for signum, handler in before.items() if handler is not None}  # None: not Python's
    for signum in before:
        signal.signal(signum, lambda number, frame: came.append(number))
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if came:
            handler = before[came[0]]
            if callable(handler):
                handler(came[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), came[0])


def note_others(out_dir: str, written: list[Path]) -> None:
    """A note on stderr naming the files in `out_dir` besides `written` (an earlier run's), if any."""
    names = {path.name for path in written}
    try:
        others = sorted(p.name for p in Path(out_dir).expanduser().iterdir() if p.name not in names)
    except OSError:
        return
    if others:
        more = ", ..." if len(others) > 5 else ""
        print(f"note: {out_dir} also holds {', '.join(others[:5])}{more}, not written by this run (an earlier "
              "one's?): summary.json describes this run's files alone", file=sys.stderr)


def write_table(cols: dict[str, Any], path: Path, fmt: str) -> Path:
    """One table ({column: values}) at `path` (table_path names it; write_records writes a temporary name) as CSV or
    Parquet."""
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise PhasewiseError("--format parquet needs pyarrow: pip install pyarrow (or use --format csv)") from None
        pq.write_table(pa.table(dict(cols)), path)
    elif fmt == "csv":
        names = list(cols)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            w.writerows(zip(*(cols[n].tolist() if hasattr(cols[n], "tolist") else list(cols[n]) for n in names)))
    else:
        raise PhasewiseError(f"--format '{fmt}' is not one of csv, parquet")
    return path
