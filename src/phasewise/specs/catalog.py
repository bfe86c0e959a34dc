"""Reading the YAML catalogs shipped under specs/data and user files in the same format."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError

# libyaml's safe loader when PyYAML was built with it (the same result, ~4x faster on the catalogs)
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_user_file(path: str | Path, what: str) -> Any:
    """Parse a user-supplied YAML or JSON file, turning every failure into a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise PhasewiseError(f"{what} file '{path}' does not exist")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PhasewiseError(f"{what} file '{path}' is malformed: {first}") from None
    if not isinstance(data, dict):
        raise PhasewiseError(f"{what} file '{path}' must hold a mapping at the top level")
    return data


@cache
def packaged(name: str) -> dict[str, Any]:
    """A catalog file shipped with the package (parsed once per process)."""
    text = resources.files("phasewise.specs").joinpath("data", name).read_text()
    return yaml.load(text, Loader=_FAST_SAFE_LOADER)


def looks_like_path(name: str) -> bool:
    return name.endswith((".json", ".yaml", ".yml")) or Path(name).is_file()
