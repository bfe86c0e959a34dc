"""A hardware entry's validation errors as one line, each field by its path in the YAML (parts.compute.cores): an
unknown key with the keys allowed where it stands, a substrate without its `kind` with the kinds, an unknown key of
a mapping of dtypes with the dtypes; other errors as pydantic words them (errors.pydantic_message's form)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from phasewise.errors import PhasewiseError

# a mapping's keys, what the error calls one (a dict field whose keys are a Literal)
KEY_WORDS = {"dtype_rates": "dtype", "peak_flops": "dtype", "weight_read_efficiency": "dtype"}


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (X, X | None, tuple[X, ...], a discriminated union of several)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(m for m in models_in(arg) if m not in found)
    return found


def _model_at(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model whose fields the last element of `path` (a location pydantic reports) is one of."""
    models = [root]
    for part in path[:-1]:
        if isinstance(part, int) or not models:
            continue
        tagged = [m for m in models if "kind" in m.model_fields and part in typing.get_args(
            m.model_fields["kind"].annotation)]
        if len(models) > 1 and tagged:  # a discriminated union's member, by its tag
            models = tagged
            continue
        field = models[0].model_fields.get(str(part))
        models = models_in(field.annotation) if field is not None else []
    return models[0] if len(models) == 1 else None


def _tag_kinds(root: type[BaseModel], path: tuple) -> list[str]:
    """The `kind` tags of the discriminated union at `path` (a substrate's: digital, cid, cim)."""
    models = [root]
    for part in path:
        if isinstance(part, int) or not models:
            continue
        field = models[0].model_fields.get(str(part))
        models = models_in(field.annotation) if field is not None else []
    return [tag for m in models if "kind" in m.model_fields for tag in typing.get_args(m.model_fields["kind"].annotation)]


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys a YAML mapping for `model` may hold (a hardware entry's `key` is its name under `hardware:`)."""
    return [name for name in model.model_fields if not (model.__name__ == "HardwareSpec" and name == "key")]


def error_text(err: dict[str, Any], root: type[BaseModel], prefix: str = "") -> str:
    """One pydantic error of a `root` model as `path: what` (the path from `prefix`, e.g. parts)."""
    loc = tuple(err.get("loc", ()))
    kind = err.get("type", "")
    key_error = bool(loc) and loc[-1] == "[key]"
    if key_error:
        loc = loc[:-1]
    path = ".".join(str(p) for p in ((prefix,) if prefix else ()) + loc)
    if kind == "extra_forbidden":
        model = _model_at(root, loc)
        allowed = f" (allowed: {', '.join(allowed_keys(model))})" if model is not None else ""
        return f"{path}: unknown key{allowed}"
    if kind == "union_tag_not_found":
        return f"{path}: kind is required (one of {', '.join(_tag_kinds(root, loc))})"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        return f"{path}.kind: {tag!r} is not one of {', '.join(_tag_kinds(root, loc))}"
    if key_error and kind == "literal_error":
        word = KEY_WORDS.get(str(loc[-2]) if len(loc) > 1 else "", "key")
        expected = (err.get("ctx") or {}).get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"{path} is not a known {word} (allowed: {expected})"
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    return f"{path}: {msg}" if path else msg


def spec_message(where: str, exc: Exception, root: type[BaseModel], prefix: str = "") -> PhasewiseError:
    """A pydantic ValidationError of a `root` model (a hardware entry, its parts) as one line."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return PhasewiseError(f"{where}: {exc}")
    return PhasewiseError(f"{where}: " + "; ".join(error_text(err, root, prefix) for err in errors()))

