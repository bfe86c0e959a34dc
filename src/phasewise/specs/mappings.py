"""Operator mappings as data: per phase, which substrate of a chip runs each operator class.

Policies live in specs/data/mappings.yaml (HALO, CENT-like all-CiD, AttAcc-like, all-CiM); a user's
mapping is a YAML file in the same format (one entry, or `mappings: {name: entry}` with one entry).
resolve_mapping() binds a mapping to a chip's substrates (specs/substrates.py); perf/mapping.py costs it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from phasewise.errors import PhasewiseError, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file
from phasewise.specs.hardware import HardwareSpec
from phasewise.specs.hardware_errors import spec_message
from phasewise.specs.substrates import SUBSTRATE_KINDS, Substrate

# in the order a layer runs them (embedding first, lm_head last)
OPERATOR_CLASSES = ("embedding", "norms", "qkv", "attention", "o_proj", "ffn", "lm_head")
GEMM_CLASSES = ("qkv", "attention", "o_proj", "ffn", "lm_head")
PHASES = ("prefill", "decode")


class Mapping(BaseModel):
    """Per phase, operator class -> substrate name or kind (`default` covers the classes not named)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    source: str = ""
    prefill: dict[str, str]
    decode: dict[str, str]

    def targets(self, phase: str) -> dict[str, str]:
        """Every operator class of `phase` with its target (name or kind)."""
        table = self.prefill if phase == "prefill" else self.decode
        default = table.get("default")
        return {op_class: table.get(op_class, default) for op_class in OPERATOR_CLASSES}


def build_mapping(name: str, entry: Any, where: str) -> Mapping:
    if not isinstance(entry, dict):
        raise PhasewiseError(f"{where}: a mapping must be a mapping of prefill/decode tables")
    try:
        mapping = Mapping(name=name, **entry)
    except ValidationError as exc:  # an unknown key with the keys allowed, as a hardware or parts file's
        raise spec_message(where, exc, Mapping) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None
    for phase in PHASES:
        table = getattr(mapping, phase)
        for op_class in table:
            if op_class != "default" and op_class not in OPERATOR_CLASSES:
                raise PhasewiseError(f"{where}: {phase}: unknown operator class '{op_class}' "
                                     f"(known: {', '.join(OPERATOR_CLASSES)}, default)")
        missing = [c for c, target in mapping.targets(phase).items() if not target]
        if missing:
            raise PhasewiseError(f"{where}: {phase} maps no substrate for {', '.join(missing)} (name them or "
                                 "give `default:`)")
    return mapping


def load_mapping(name_or_path: str) -> Mapping:
    """A catalog policy by name (case-insensitive) or a YAML file holding one mapping."""
    if looks_like_path(name_or_path):
        data = read_user_file(name_or_path, "mapping")
        where = f"mapping file '{name_or_path}'"
        if isinstance(data.get("mappings"), dict):
            if len(data["mappings"]) != 1:
                raise PhasewiseError(f"{where} must hold exactly one entry under 'mappings:' "
                                     f"(found {len(data['mappings'])})")
            stray = [key for key in data if key != "mappings"]
            if stray:
                raise PhasewiseError(f"{where}: top-level key '{stray[0]}' beside 'mappings:' is not read (move it "
                                     "into the entry under 'mappings:', or remove it)")
            name, entry = next(iter(data["mappings"].items()))
        else:
            name = str(data.get("name") or name_or_path)
            entry = {k: v for k, v in data.items() if k != "name"}
        return build_mapping(str(name), entry, where)
    catalog = packaged("mappings.yaml")["mappings"]
    key = name_or_path.lower()
    if key not in catalog:
        raise unknown_name("mapping", name_or_path, catalog)
    return build_mapping(key, catalog[key], f"mapping '{key}'")


def find_substrate(hw: HardwareSpec, target: str, where: str) -> Substrate:
    """The substrate `target` names on `hw`: by name, else by kind when the chip has exactly one of it."""
    by_name = {part.name: part for part in hw.substrates}
    if target in by_name:
        return by_name[target]
    if target in SUBSTRATE_KINDS:
        of_kind = [part for part in hw.substrates if part.kind == target]
        if len(of_kind) == 1:
            return of_kind[0]
        if of_kind:
            raise PhasewiseError(f"{where}: hardware '{hw.key}' has {len(of_kind)} {target} substrates "
                                 f"({', '.join(p.name for p in of_kind)}); name one")
    has = ", ".join(f"{p.name} ({p.kind})" for p in hw.substrates)
    raise PhasewiseError(f"{where}: no substrate '{target}' on hardware '{hw.key}' (has: {has})")


def resolve_mapping(mapping: Mapping, hw: HardwareSpec) -> dict[str, dict[str, Substrate]]:
    """phase -> operator class -> the substrate of `hw` that runs it; one-line errors for what cannot run."""
    if not hw.substrates:
        raise PhasewiseError(f"hardware '{hw.key}' lists no substrates: an operator mapping needs a chip with a "
                             "`substrates:` list (see halo-2.5d in the catalog)")
    out: dict[str, dict[str, Substrate]] = {}
    for phase in PHASES:
        out[phase] = {}
        for op_class, target in mapping.targets(phase).items():
            where = f"mapping '{mapping.name}' {phase}.{op_class}"
            part = find_substrate(hw, target, where)
            if part.kind == "cim" and op_class not in GEMM_CLASSES:
                raise PhasewiseError(f"{where}: '{part.name}' is an analog CiM, which runs matrix products only "
                                     f"({', '.join(GEMM_CLASSES)})")
            out[phase][op_class] = part
    return out
