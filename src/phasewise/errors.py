"""User-facing errors: one line, naming the field and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable


class PhasewiseError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""


def one_line(text: str) -> str:
    """`text` as one printable line: a line break or other control character (echoed from the user's input, e.g. a
    model named "a\nb") and a lone surrogate written as its escape."""
    text = text.encode("utf-8", "backslashreplace").decode()
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def refuse_empty(flags: dict) -> None:
    """A text flag given as an empty string is a one-line error naming it (never read as its default)."""
    for name, value in flags.items():
        if isinstance(value, str) and not value.strip():
            raise PhasewiseError(f"--{name.replace('_', '-')} is empty: give a value or leave the flag out")


def name_list(flag: str, value: str, item: str = "name") -> list[str]:
    """The names a comma-separated `flag` gives (--engine, --hardware: one, or several), each once; `item` what each
    is, for the error (a name; a size of --tp-options)."""
    names = [name.strip() for name in value.split(",")]
    if not all(names):
        raise PhasewiseError(f"{flag} '{value}': an empty {item} in the list (give {item}s separated by commas)")
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice:
        raise PhasewiseError(f"{flag} '{value}' names {twice} twice")
    return names


def unknown_name(kind: str, name: str, known: Iterable[str]) -> PhasewiseError:
    """Error for a name that is not in a catalog, suggesting the closest known names."""
    known = sorted(known)
    lower = {k.lower(): k for k in known}
    wanted = name.lower()
    # a known name the input extends or shortens at a separator ('b200-sxm' -> 'b200') first: difflib's
    # character ratio alone ranks 'h200-sxm' above it
    stems = [k for k in lower if k != wanted and any(wanted.startswith(k + sep) or k.startswith(wanted + sep)
                                                      for sep in "-_/ .")]
    close = (stems + [c for c in difflib.get_close_matches(wanted, list(lower), n=3, cutoff=0.5)
                      if c not in stems])[:3]
    hint = f"; did you mean {', '.join(lower[c] for c in close)}?" if close else ""
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return PhasewiseError(f"unknown {kind} '{name}'{hint} (known: {shown})")


def field_label(path: tuple, field_name: Callable[[tuple], str | None] | None = None) -> str:
    """What an error calls the field at `path`: what `field_name` calls it (the flag that set it) where it has a
    name for it, else its location (instances.0.tp, online_training.keep_layers)."""
    return (field_name(path) if field_name is not None else None) or ".".join(str(p) for p in path)


def pydantic_message(where: str, exc: Exception, field_name: Callable[[tuple], str | None] | None = None
                     ) -> PhasewiseError:
    """Turn a pydantic ValidationError into one line naming the field(s): each by its location (e.g.
    instances.0.tp), or by what `field_name` calls it (the flag that set it), where it has a name for it."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return PhasewiseError(f"{where}: {exc}")
    parts = []
    for err in errors():
        path = tuple(err.get("loc", ()))
        loc = field_label(path, field_name)
        msg = err.get("msg", "invalid").removeprefix("Value error, ")  # a validator's own sentence names its fields
        parts.append(f"{loc}: {msg}" if loc else msg)
    return PhasewiseError(f"{where}: " + "; ".join(parts))
