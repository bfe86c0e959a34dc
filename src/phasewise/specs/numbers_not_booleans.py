"""YAML's true / false where a number goes: pydantic's lax mode reads them as 1 / 0, so a user's `gpus: true` would run
on one GPU. One rule for every file phasewise reads through pydantic (deployments, sweeps, topologies, device-cloud
setups): such a value is refused, naming the field, as specs/reading.py number() refuses it in hardware and engine
files."""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, ValidationInfo, field_validator


def not_a_boolean(value: Any) -> Any:
    """A numeric field's raw value (each item of a list of them), refused where it is YAML's true / false."""
    if isinstance(value, (list, tuple)):
        for item in value:
            not_a_boolean(item)
        return value
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


def _holds_numbers(annotation: Any) -> bool:
    """Whether a field of type `annotation` holds numbers (int or float, optional, constrained, or a list of them)."""
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin in (Annotated, typing.Union, types.UnionType, list, tuple):
        return any(_holds_numbers(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return False


@cache
def numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """The fields of `model` that hold numbers."""
    return frozenset(name for name, field in model.model_fields.items() if _holds_numbers(field.annotation))


class NumbersNotBooleans(BaseModel):
    """A block of a user's file whose numeric fields (found from their types, so a new field is covered) refuse
    true / false."""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return not_a_boolean(value) if info.field_name in numeric_fields(cls) else value
