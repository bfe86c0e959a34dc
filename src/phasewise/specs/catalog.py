"""Reading the YAML catalogs shipped under specs/data; user files in the same format go through specs/reading.py."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import read_user_file

__all__ = ["CALIBRATE_KEYS", "looks_like_path", "packaged", "read_user_file", "refuse_beside"]  # read_user_file: specs/reading.py

# libyaml's safe loader when PyYAML was built with it (the same result, ~4x faster on the catalogs)
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@cache
def packaged(name: str) -> dict[str, Any]:
    """A catalog file shipped with the package (parsed once per process)."""
    text = resources.files("phasewise.specs").joinpath("data", name).read_text()
    return yaml.load(text, Loader=_FAST_SAFE_LOADER)


def looks_like_path(name: str) -> bool:
    return name.endswith((".json", ".yaml", ".yml")) or Path(name).is_file()


# What `phasewise calibrate` writes beside each other in one file (measure/calibrate.py): a hardware and an engine
# entry and the measurements they came from; such a file is both a --hardware and an --engine file.
CALIBRATE_KEYS = ("hardware", "engines", "measurements")


def refuse_beside(data: dict[str, Any], wrapper: str, where: str) -> None:
    """A one-line error for a top-level key beside `wrapper:` that no reader reads (an `efficiency:` block meant for
    the entry above it, a typo), rather than dropping it."""
    stray = [key for key in data if key != wrapper and key not in CALIBRATE_KEYS]
    if stray:
        raise PhasewiseError(f"{where}: top-level key '{stray[0]}' beside '{wrapper}:' is not read (move it into "
                             f"the entry under '{wrapper}:', or remove it)")
