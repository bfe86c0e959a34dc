"""Trace files: the Azure LLM inference trace CSV (both column namings) and JSONL, with two optional columns: a
request's class (`priority`) and the images it carries (`NumImages`, as Azure's 2025 multimodal trace names it;
workload/columns.py reads both)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import MAX_TOKENS, TRACE_MAX_BYTES, jsonl_objects, read_text
from phasewise.workload.columns import OPTIONAL, optional_columns, refuse_unread_priority
from phasewise.workload.mooncake import is_mooncake, load_mooncake
from phasewise.workload.request import Workload

# Column names: Azure's original release, and the splitwise/vidur processed variant.
COLUMNS = [
    ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
]
BUNDLED = {"azure-conv": "azure_conv_excerpt.csv", "azure-code": "azure_code_excerpt.csv",
           "mooncake": "mooncake_conversation_excerpt.jsonl"}
JSON_SUFFIXES = (".jsonl", ".json")  # compared with the file's suffix in lower case
TIMESTAMP_FORMS = "seconds (a number) or an ISO 8601 date-time such as 2023-11-16 18:15:46.6805900"


@dataclass(slots=True)
class _Rows:
    """A trace file's requests as text: (arrival, prompt, output) per request, the file line of request i
    (`line_of(i)`), the optional columns present (workload/columns.py) and the arrival column's name (a JSONL
    file's: its first request's)."""

    rows: list[tuple[str, str, str]]
    line_of: Callable[[int], int]
    extra: dict[str, list]
    arrival_column: str


def _timestamp(value: str) -> float:
    """Seconds: a number, or an ISO date-time as in Azure's original TIMESTAMP column, its offset honoured and a
    time without one read as UTC (not this machine's zone: its daylight-saving change would move arrivals)."""
    try:
        return float(value)
    except ValueError:
        from datetime import datetime, timezone

        text = value.strip().replace(" ", "T")
        if "." in text:  # Azure writes 7 fractional digits; Python parses at most 6
            head, frac = text.split(".", 1)
            digits = len(frac) - len(frac.lstrip("0123456789"))  # the fraction's digits, not its offset's
            text = f"{head}.{frac[:min(digits, 6)]}{frac[digits:]}"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()


def _rows_csv(path: Path, text: str) -> _Rows:
    # csv.reader rather than DictReader (a dict per row costs more than the parsing), read as DictReader reads:
    # blank lines skipped, a repeated column name meaning its last column, a short row's missing fields None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _csv_columns(path, text, reader)
    except csv.Error as exc:  # a quoted field never closed, a field beyond csv's size limit, ...
        raise PhasewiseError(f"trace '{path}' line {reader.line_num}: not CSV ({exc})") from None


def _csv_columns(path: Path, text: str, reader) -> _Rows:
    """The requests of a CSV trace whose header `reader` is about to read."""
    header = next(reader, None) or []
    index = {name: i for i, name in enumerate(header)}
    refuse_unread_priority(header, path)
    for cols in COLUMNS:
        if all(c in index for c in cols):
            a, b, c = (index[col] for col in cols)
            width = max(a, b, c) + 1

            def short(r: list[str]) -> tuple:  # a row with fewer fields: the missing ones None
                return tuple(r[i] if i < len(r) else None for i in (a, b, c))

            optional = [name for name in OPTIONAL if name in index]
            line_of = _csv_line_of(text)
            raw = [r for r in reader if r]
            long = next((i for i, r in enumerate(raw) if len(r) > len(header)), None)
            if long is not None:  # a shifted or corrupt row: which field is which is not known
                raise PhasewiseError(f"trace '{path}' line {line_of(long)}: {len(raw[long])} fields, more than the "
                                     f"header's {len(header)} columns")
            extra = {name: [r[index[name]] if index[name] < len(r) else None for r in raw] for name in optional}
            return _Rows([(r[a], r[b], r[c]) if len(r) >= width else short(r) for r in raw], line_of, extra, cols[0])
    wanted = " or ".join("/".join(c) for c in COLUMNS)
    found = ", ".join(repr(h)[1:-1][:40] for h in header[:12]) + (", ..." if len(header) > 12 else "")
    raise PhasewiseError(f"trace '{path}': missing columns; need {wanted} (found {found or 'none'})")


def _csv_line_of(text: str) -> Callable[[int], int]:
    """The file line where a CSV trace's request `row` (0: the first after the header) starts, blank lines
    counted: found by reading the file again, only for an error's message (the reading itself keeps no line
    numbers, so a valid trace costs nothing more)."""
    def line_of(row: int) -> int:
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader, None)  # the header
        before, data = reader.line_num, -1
        for fields in reader:
            if fields:
                data += 1
                if data == row:
                    return before + 1
            before = reader.line_num
        return before

    return line_of


def _rows_jsonl(path: Path, text: str) -> _Rows:
    """The requests of a JSONL trace in Azure's namings, each with its file line."""
    rows, lines, extra = [], [], {name: [] for name in OPTIONAL}
    naming, keys = None, {}
    for i, obj in jsonl_objects(text, path):
        keys.update(obj)  # every key any request has, in the order first seen
        for cols in COLUMNS:
            if all(c in obj for c in cols):
                rows.append(tuple(str(obj[c]) for c in cols))
                lines.append(i)
                naming = naming or cols
                for name, values in extra.items():
                    values.append(obj.get(name))
                break
        else:
            raise PhasewiseError(f"trace '{path}' line {i}: needs keys {' or '.join('/'.join(c) for c in COLUMNS)}"
                                 " or Mooncake's timestamp/input_length/output_length/hash_ids")
    refuse_unread_priority(list(keys), path)
    present = {name: values for name, values in extra.items() if any(v is not None for v in values)}
    return _Rows(rows, lines.__getitem__, present, (naming or COLUMNS[0])[0])


def _columns(rows: list[tuple[str, str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(arrival, prompt, output) of a well-formed trace, converted column by column (much faster than the row
    by row checks of load_trace, which give the same arrays); None if any value is not plainly valid (a
    date-time, a non-integer...): load_trace's row by row pass then converts it or names the bad row."""
    n = len(rows)
    try:
        times, prompts, outputs = (np.fromiter(map(float, column), dtype=np.float64, count=n) for column in zip(*rows))
    except (ValueError, TypeError):
        return None
    if not (np.isfinite(times).all() and times[0] >= 0 and (n == 1 or (times[1:] >= times[:-1]).all())):
        return None
    for tokens in (prompts, outputs):  # integers in 1..MAX_TOKENS (exact in float64, as int(float(text)) reads)
        if not ((tokens >= 1).all() and (tokens <= MAX_TOKENS).all() and (tokens == np.floor(tokens)).all()):
            return None
    return times, prompts.astype(np.int64), outputs.astype(np.int64)


def load_trace(name_or_path: str, limit: int | None = None) -> Workload:
    """A bundled excerpt ('azure-conv', 'azure-code', 'mooncake') or a CSV/JSONL file (a JSONL file with
    Mooncake's `hash_ids` is read by workload/mooncake.py); arrivals start at 0."""
    if limit is not None and limit < 1:
        raise PhasewiseError(f"--trace-limit must be >= 1 (got {limit})")
    if name_or_path in BUNDLED:
        ref = resources.files("phasewise.workload").joinpath("data", BUNDLED[name_or_path])
        with resources.as_file(ref) as p:
            return load_trace(str(p), limit)
    if not name_or_path.strip():
        raise PhasewiseError(f"trace name is empty: give a CSV/JSONL file or one of {', '.join(BUNDLED)}")
    path = Path(name_or_path)
    if not path.exists():
        raise PhasewiseError(f"trace '{name_or_path}' does not exist (bundled: {', '.join(BUNDLED)})")
    text = read_text(path, "trace", TRACE_MAX_BYTES)
    json_lines = path.suffix.lower() in JSON_SUFFIXES
    if json_lines and is_mooncake(text):
        return load_mooncake(path, limit, text)
    found = (_rows_jsonl if json_lines else _rows_csv)(path, text)
    rows = found.rows[:limit] if limit else found.rows
    if not rows:
        raise PhasewiseError(f"trace '{path}' has no requests")
    priority, images = optional_columns({name: values[:len(rows)] for name, values in found.extra.items()}, path,
                                        found.line_of)
    fast = _columns(rows)
    if fast is not None:
        arrival, prompt, output = fast
    else:
        arrival, prompt, output = _checked_columns(rows, path, found)
    return Workload(arrival - arrival[0], prompt, output, priority, name=path.name, image_counts=images)


class _BadRow(ValueError):
    """What is wrong with one request's fields (_checked_columns adds the file and line)."""


def _checked_columns(rows: list[tuple[str, str, str]], path: Path,
                     found: _Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(arrival, prompt, output) converted row by row, a bad value a one-line error naming its file line."""
    arrival = np.empty(len(rows))
    prompt = np.empty(len(rows), dtype=np.int64)
    output = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        try:
            arrival[i], prompt[i], output[i] = _request(row, found.arrival_column)
            if i and arrival[i] < arrival[i - 1]:
                raise _BadRow(f"arrivals are not sorted ascending ({arrival[i]} after {arrival[i - 1]})")
        except _BadRow as exc:
            raise PhasewiseError(f"trace '{path}' line {found.line_of(i)}: {exc}") from None
    return arrival, prompt, output


def _request(row: tuple[str, str, str], arrival_column: str) -> tuple[float, int, int]:
    """One request's (arrival s, prompt tokens, output tokens) from its text, or _BadRow saying what is wrong."""
    t, p, o = row
    if None in row:
        raise _BadRow("fewer fields than the header's columns")
    try:
        seconds = _timestamp(t)
    except (TypeError, ValueError, OverflowError, OSError):  # not a number nor a date, an impossible date
        raise _BadRow(f"{arrival_column} must be {TIMESTAMP_FORMS} (got {t!r})") from None
    if not (np.isfinite(seconds) and seconds >= 0):
        raise _BadRow(f"{arrival_column} must be a finite time >= 0 (got {t!r})")
    try:
        pf, of = float(p), float(o)
    except (TypeError, ValueError):
        raise _BadRow(f"non-numeric value in ({t!r}, {p!r}, {o!r})") from None
    if not 1 <= pf <= MAX_TOKENS or pf != int(pf):
        raise _BadRow(f"prompt tokens must be an integer >= 1 and <= {MAX_TOKENS} (got {p!r})")
    if not 1 <= of <= MAX_TOKENS or of != int(of):
        raise _BadRow(f"output tokens must be an integer >= 1 and <= {MAX_TOKENS} (got {o!r})")
    return seconds, int(pf), int(of)
