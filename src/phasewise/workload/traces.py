"""Trace files: the Azure LLM inference trace CSV (both column namings) and JSONL, with two optional columns: a
request's class (`priority`) and the images it carries (`NumImages`, as Azure's 2025 multimodal trace names it)."""

from __future__ import annotations

import csv
import io
import math
from importlib import resources
from pathlib import Path

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import MAX_TOKENS, TRACE_MAX_BYTES, jsonl_objects, read_text
from phasewise.workload.images import MAX_IMAGES_PER_REQUEST
from phasewise.workload.mooncake import is_mooncake, load_mooncake
from phasewise.workload.request import Workload

# Column names: Azure's original release, and the splitwise/vidur processed variant.
COLUMNS = [
    ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
]
BUNDLED = {"azure-conv": "azure_conv_excerpt.csv", "azure-code": "azure_code_excerpt.csv",
           "mooncake": "mooncake_conversation_excerpt.jsonl"}
PRIORITY = "priority"  # optional column: the request's class (0 = most urgent)
# optional column: the images a request carries (the Azure LMM inference trace 2025, AzureLMMInferenceDataset2025.md:
# TIMESTAMP, NumImages, ContextTokens, GeneratedTokens); its width and height are not in the trace (--image-size)
IMAGES = "NumImages"
OPTIONAL = (PRIORITY, IMAGES)


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


def _rows_csv(path: Path, text: str) -> tuple[list[tuple[str, str, str]], int, dict[str, list]]:
    # csv.reader rather than DictReader (a dict per row costs more than the parsing), read as DictReader reads:
    # blank lines skipped, a repeated column name meaning its last column, a short row's missing fields None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _csv_columns(path, reader)
    except csv.Error as exc:  # a quoted field never closed, a field beyond csv's size limit, ...
        raise PhasewiseError(f"trace '{path}' line {reader.line_num}: not CSV ({exc})") from None


def _csv_columns(path: Path, reader) -> tuple[list[tuple[str, str, str]], int, dict[str, list]]:
    """(arrival, prompt, output) text per row, the first data line's number, and the optional columns present."""
    header = next(reader, None) or []
    index = {name: i for i, name in enumerate(header)}
    for cols in COLUMNS:
        if all(c in index for c in cols):
            a, b, c = (index[col] for col in cols)
            width = max(a, b, c) + 1

            def short(r: list[str]) -> tuple:  # a row with fewer fields: the missing ones None
                return tuple(r[i] if i < len(r) else None for i in (a, b, c))

            optional = [name for name in OPTIONAL if name in index]
            if not optional:
                return [(r[a], r[b], r[c]) if len(r) >= width else short(r) for r in reader if r], 2, {}
            raw = [r for r in reader if r]
            extra = {name: [r[index[name]] if index[name] < len(r) else None for r in raw] for name in optional}
            return [(r[a], r[b], r[c]) if len(r) >= width else short(r) for r in raw], 2, extra
    wanted = " or ".join("/".join(c) for c in COLUMNS)
    found = ", ".join(repr(h)[1:-1][:40] for h in header[:12]) + (", ..." if len(header) > 12 else "")
    raise PhasewiseError(f"trace '{path}': missing columns; need {wanted} (found {found or 'none'})")


def _rows_jsonl(path: Path, text: str) -> tuple[list[tuple[str, str, str]], int, dict[str, list]]:
    rows, extra = [], {name: [] for name in OPTIONAL}
    for i, obj in jsonl_objects(text, path):
        for cols in COLUMNS:
            if all(c in obj for c in cols):
                rows.append(tuple(str(obj[c]) for c in cols))
                for name, values in extra.items():
                    values.append(obj.get(name))
                break
        else:
            raise PhasewiseError(f"trace '{path}' line {i}: needs keys {' or '.join('/'.join(c) for c in COLUMNS)}"
                                 " or Mooncake's timestamp/input_length/output_length/hash_ids")
    return rows, 1, {name: values for name, values in extra.items() if any(v is not None for v in values)}


def _integers(values: list, path: Path, first_line: int, column: str, top: int | None = None) -> np.ndarray:
    """An optional integer column (priority: 0 = most urgent, priority pools give each class its SLOs; NumImages:
    0..`top`), every row's value checked."""
    out = np.empty(len(values), dtype=np.int64)
    allowed = "an integer >= 0" if top is None else f"an integer in 0..{top}"
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (number >= 0 and number == int(number) and (top is None or number <= top)):
            raise PhasewiseError(f"trace '{path}' row {i + first_line}: {column} must be {allowed} (got {value!r})")
        out[i] = int(number)
    return out


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
    if path.suffix in (".jsonl", ".json") and is_mooncake(text):
        return load_mooncake(path, limit, text)
    rows, first_line, extra = (_rows_jsonl if path.suffix in (".jsonl", ".json") else _rows_csv)(path, text)
    if limit:
        rows = rows[:limit]
    if not rows:
        raise PhasewiseError(f"trace '{path}' has no requests")
    priority, images = (None if name not in extra else
                        _integers(extra[name][:len(rows)], path, first_line, name, top)
                        for name, top in ((PRIORITY, None), (IMAGES, MAX_IMAGES_PER_REQUEST)))
    fast = _columns(rows)
    if fast is not None:
        arrival, prompt, output = fast
        return Workload(arrival - arrival[0], prompt, output, priority, name=path.name, image_counts=images)
    arrival = np.empty(len(rows))
    prompt = np.empty(len(rows), dtype=np.int64)
    output = np.empty(len(rows), dtype=np.int64)
    for i, (t, p, o) in enumerate(rows):
        where = f"trace '{path}' row {i + first_line}"
        if None in (t, p, o):
            raise PhasewiseError(f"{where}: fewer fields than the header's columns")
        try:
            arrival[i] = _timestamp(t)
            pf, of = float(p), float(o)
        except (TypeError, ValueError, OverflowError, OSError):  # a missing field, an impossible date
            raise PhasewiseError(f"{where}: non-numeric value in ({t!r}, {p!r}, {o!r})") from None
        if not 1 <= pf <= MAX_TOKENS or pf != int(pf):
            raise PhasewiseError(f"{where}: prompt tokens must be an integer >= 1 and <= {MAX_TOKENS} (got {p!r})")
        if not 1 <= of <= MAX_TOKENS or of != int(of):
            raise PhasewiseError(f"{where}: output tokens must be an integer >= 1 and <= {MAX_TOKENS} (got {o!r})")
        if i and arrival[i] < arrival[i - 1]:
            raise PhasewiseError(f"{where}: arrivals are not sorted ascending ({arrival[i]} after {arrival[i - 1]})")
        prompt[i], output[i] = int(pf), int(of)
    if not np.isfinite(arrival).all() or (arrival < 0).any():
        raise PhasewiseError(f"trace '{path}': arrival times must be finite and >= 0")
    return Workload(arrival - arrival[0], prompt, output, priority, name=path.name, image_counts=images)
