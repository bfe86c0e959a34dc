"""User-facing errors: one line, naming the field and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PhasewiseError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> PhasewiseError:
    """Error for a name that is not in a catalog, suggesting the closest known names."""
    known = sorted(known)
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(lower[c] for c in close)}?" if close else ""
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return PhasewiseError(f"unknown {kind} '{name}'{hint} (known: {shown})")


def pydantic_message(where: str, exc: Exception) -> PhasewiseError:
    """Turn a pydantic ValidationError into one line naming the field(s)."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return PhasewiseError(f"{where}: {exc}")
    parts = []
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return PhasewiseError(f"{where}: " + "; ".join(parts))
