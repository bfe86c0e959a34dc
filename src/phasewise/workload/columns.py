"""A trace's two optional columns, read alike from an Azure CSV/JSONL trace (workload/traces.py) and a Mooncake JSONL
one (workload/mooncake.py): a request's class (`priority`, 0 = most urgent; priority pools give each class its SLOs)
and the images it carries (`NumImages`, as Azure's 2025 multimodal trace names it, AzureLMMInferenceDataset2025.md:
TIMESTAMP, NumImages, ContextTokens, GeneratedTokens; the images' width and height are not in the trace:
--image-size)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.workload.images import MAX_IMAGES_PER_REQUEST

PRIORITY = "priority"
IMAGES = "NumImages"
OPTIONAL = (PRIORITY, IMAGES)
TOPS = {PRIORITY: None, IMAGES: MAX_IMAGES_PER_REQUEST}  # each column's largest value (None: no bound)


def refuse_unread_priority(names: list, path: Path) -> None:
    """The trace's column (or JSONL key) `names`: one spelled as the class column but for case or spaces
    (`Priority`, ' priority') is a one-line error, not a column quietly skipped, every request then class 0 (any other
    column the readers do not know is skipped: Azure's traces carry more)."""
    if PRIORITY in names:
        return
    near = [name for name in names if isinstance(name, str) and name.strip().lower() == PRIORITY]
    if near:
        found = ", ".join(repr(name)[:40] for name in names[:12]) + (", ..." if len(names) > 12 else "")
        raise PhasewiseError(f"trace '{path}': column {near[0]!r} is not read: a request's class is the column "
                             f"'{PRIORITY}', lower case (found columns: {found})")


def optional_columns(extra: dict[str, list], path: Path,
                     line_of: Callable[[int], int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(priority, image counts) per request from the optional columns a trace has (`extra`: each one's raw values,
    one per request; a column it lacks: None), every value checked; `line_of(row)`: the file line of request `row`,
    which an error names."""
    priority, images = (None if name not in extra else _integers(extra[name], path, line_of, name, TOPS[name])
                        for name in OPTIONAL)
    return priority, images


def _integers(values: list, path: Path, line_of: Callable[[int], int], column: str, top: int | None) -> np.ndarray:
    """An optional integer column (0..`top`; no bound: None)."""
    out = np.empty(len(values), dtype=np.int64)
    allowed = "an integer >= 0" if top is None else f"an integer in 0..{top}"
    for i, value in enumerate(values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (number >= 0 and number == int(number) and (top is None or number <= top)):
            raise PhasewiseError(f"trace '{path}' line {line_of(i)}: {column} must be {allowed} (got {value!r})")
        out[i] = int(number)
    return out
