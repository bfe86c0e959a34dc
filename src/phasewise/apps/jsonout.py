"""JSON as every command writes it: strict JSON, where a non-finite number (an unset SLO is inf, an empty
percentile NaN) is written as null, never as the `Infinity` / `NaN` tokens JSON parsers reject."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None, through dicts, lists, tuples and numpy values."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity (they become null); kwargs go to json.dumps."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
