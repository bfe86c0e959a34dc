"""Hardware: spec-sheet figures (with sources) plus the named efficiencies the cost model applies, built from a
catalog or user entry (build_hardware, load_hardware) and named by key, alias or file (hardware_list, chip_identity);
the models themselves: specs/hardware_spec.py; the checks of an entry's figures: specs/hardware_checks.py.

Spec sheets live in specs/data/hardware_specs.yaml, efficiencies in specs/data/efficiency.yaml
(a default per hardware kind, overridden per entry). A user's chip is one YAML entry in the
spec-sheet format, optionally with its own `efficiency:` block.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from phasewise.errors import PhasewiseError, name_list, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file, refuse_beside
from phasewise.specs.chip_cost import fill_from_parts
from phasewise.specs.engine_profile import (  # noqa: F401 (importable here, as before)
    PRESET_PROFILE_FIELDS,
    DeepEPBuffers,
    EngineProfile,
    UnfusedElementwise,
    UnfusedKernels,
    engine_file_preset,
    load_engine,
)
from phasewise.specs.hardware_checks import (  # noqa: F401 (importable here, as before)
    _FIGURE_RANGES,
    PARTS_FIGURES,
    _figure,
    check_figures,
    refuse_no_figures,
)
from phasewise.specs.hardware_errors import spec_message
from phasewise.specs.hardware_spec import (  # noqa: F401 (importable here, as before)
    HOST_MEMORY_RESERVE_BYTES,
    IEEE_FP32_ON_VECTOR_KINDS,
    PEAK_DTYPES,
    Efficiency,
    HardwareSpec,
    Interconnect,
)

# A user's chip that runs on its kind's efficiency defaults (build_hardware), said beside its predictions
DEFAULTS_NOTE = ("no `efficiency:` block: runs on the {kind} class defaults of specs/data/efficiency.yaml, not a "
                 "catalog chip's fitted values (`phasewise hardware KEY --yaml` writes a catalog chip with its own)")


def build_hardware(key: str, entry: dict[str, Any], where: str, catalog: bool = False) -> HardwareSpec:
    """Validate one spec-sheet entry, filling efficiencies from its kind's default where absent; a `catalog` entry
    takes its key's fitted values (efficiency.yaml `hardware:`) over those, a user's entry never (whatever its key:
    one named h100-sxm is not the catalog's H100). A user's entry without an `efficiency:` block says, in its caveat,
    that it runs on its kind's defaults."""
    eff_data = packaged("efficiency.yaml")
    entry = dict(entry)
    kind = entry.get("kind", "gpu")
    defaults = eff_data["defaults"].get(kind) if isinstance(kind, str) else None
    if defaults is None:
        raise PhasewiseError(f"{where}: kind {kind!r} is not one of {', '.join(eff_data['defaults'])}")
    for field in ("efficiency", "peak_flops"):  # mappings: a number or a list there is refused by name
        if entry.get(field) is not None and not isinstance(entry[field], dict):
            raise PhasewiseError(f"{where}: {field} must be a mapping of "
                                 f"{'dtype: FLOP/s' if field == 'peak_flops' else 'constant: value'} "
                                 f"(got {entry[field]!r})")
    check_figures(entry, where)
    eff = {k: v for k, v in defaults.items() if not k.startswith("source")}
    if catalog:
        eff.update({k: v for k, v in (eff_data["hardware"].get(key) or {}).items() if k != "sources"})
    elif entry.get("efficiency") is None and isinstance(entry.get("caveat") or "", str):  # else: refused below
        entry["caveat"] = " ".join(filter(None, (entry.get("caveat"), DEFAULTS_NOTE.format(kind=kind))))
    eff.update(entry.pop("efficiency", None) or {})
    entry.pop("efficiency_sources", None)
    entry.pop("aliases", None)  # other names for a catalog entry; used only by load_hardware
    if entry.get("parts") is not None:
        entry = fill_from_parts(entry, where)
    else:
        refuse_no_figures(entry, where)
    bad = [d for d in (entry.get("peak_flops") or {}) if d not in PEAK_DTYPES]
    if bad:
        raise PhasewiseError(
            f"{where}: peak_flops.{bad[0]} is not a known dtype (allowed: {', '.join(PEAK_DTYPES)})"
        )
    try:
        return HardwareSpec(key=key, efficiency=eff, **entry)
    except ValidationError as exc:
        raise spec_message(where, exc, HardwareSpec) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None


def chip_caveats(chips) -> dict[str, str]:
    """{chip: its entry's caveat} for the chips named (catalog keys, aliases or files) whose entry has one, each once."""
    caveats = {chip: load_hardware(chip).caveat for chip in dict.fromkeys(chips)}  # each chip loaded once
    return {chip: caveat for chip, caveat in caveats.items() if caveat}


def hardware_names() -> list[str]:
    return list(packaged("hardware_specs.yaml")["hardware"])


def parts_chips() -> list[str]:
    """The catalog chips built from parts (the ones a hardware cost can price)."""
    return [key for key, entry in packaged("hardware_specs.yaml")["hardware"].items() if entry.get("parts")]


def catalog_key(name: str) -> str | None:
    """The catalog key a name or one of an entry's `aliases:` refers to (case-insensitive); keys win."""
    catalog = packaged("hardware_specs.yaml")["hardware"]
    names = {str(alias).lower(): key for key, entry in catalog.items() for alias in entry.get("aliases") or []}
    names.update({key.lower(): key for key in catalog})
    return names.get(name.lower())


def load_hardware(name_or_path: str) -> HardwareSpec:
    """A catalog chip by key or alias (case-insensitive), or a YAML file: one entry or `hardware: {key: entry}`."""
    if looks_like_path(name_or_path):
        data = read_user_file(name_or_path, "hardware")
        if isinstance(data.get("hardware"), dict):
            refuse_beside(data, "hardware", f"hardware file '{name_or_path}'")
            if len(data["hardware"]) != 1:
                raise PhasewiseError(
                    f"hardware file '{name_or_path}' must hold exactly one entry under 'hardware:' "
                    f"(found {len(data['hardware'])})"
                )
            key, entry = next(iter(data["hardware"].items()))
        else:
            key, entry = str(data.get("key") or data.get("name") or name_or_path), data
            entry = {k: v for k, v in entry.items() if k != "key"}
        if not isinstance(entry, dict):
            raise PhasewiseError(f"hardware file '{name_or_path}': the entry must be a mapping")
        return build_hardware(str(key), entry, f"hardware file '{name_or_path}'")
    catalog = packaged("hardware_specs.yaml")["hardware"]
    key = catalog_key(name_or_path)
    if key is None:
        raise unknown_name("hardware", name_or_path, catalog)
    return build_hardware(key, catalog[key], f"hardware '{key}'", catalog=True)


def catalog_entry_yaml(name: str) -> dict[str, Any]:
    """A catalog chip as a user's hardware file holds it (`hardware: {key: entry}`), its efficiencies resolved into
    an `efficiency:` block (its kind's defaults, then its fitted values) with their sources under
    `efficiency_sources:`: that file gives the catalog chip's figures exactly, and is the one to edit for a variant."""
    key = catalog_key(name)
    catalog = packaged("hardware_specs.yaml")["hardware"]
    if looks_like_path(name):
        raise PhasewiseError(f"hardware '{name}' is a file: only a catalog chip is written as one")
    if key is None:
        raise unknown_name("hardware", name, catalog)
    eff_data = packaged("efficiency.yaml")
    entry = {k: v for k, v in catalog[key].items() if k not in ("aliases", "efficiency", "efficiency_sources")}
    defaults = eff_data["defaults"][entry.get("kind", "gpu")]
    fitted = eff_data["hardware"].get(key) or {}
    efficiency = {k: v for k, v in defaults.items() if k != "sources"}
    efficiency.update({k: v for k, v in fitted.items() if k != "sources"})
    efficiency.update(catalog[key].get("efficiency") or {})
    sources = {**(defaults.get("sources") or {}), **(fitted.get("sources") or {}),
               **(catalog[key].get("efficiency_sources") or {})}
    # a copy: the caller may edit it (a variant) without editing the packaged catalog every later load reads
    return copy.deepcopy({"hardware": {key: {**entry, "efficiency": efficiency, "efficiency_sources": sources}}})


def hardware_list(flag: str, value: str) -> list[str]:
    """The chips of a comma-separated `flag` (--hardware A,B,C), each named once: two entries naming one chip (a
    catalog key and its alias or another case, or one file by two paths) are a one-line error."""
    chips = name_list(flag, value)
    seen: dict[str, str] = {}
    for chip in chips:
        identity = chip_identity(chip)
        if identity in seen:
            raise PhasewiseError(f"{flag} names one chip twice: {seen[identity]} and {chip}")
        seen[identity] = chip
    return chips


def chip_identity(chip: str) -> str:
    """What a chip name stands for: its catalog key (any alias or case), or its file's resolved path."""
    return str(Path(chip).resolve()) if looks_like_path(chip) else catalog_key(chip) or chip


def chips_apart(p_name: str, d_name: str, sides: tuple[str, str] = ("prefill", "decode")) -> str | None:
    """Why prefill and decode instances (or the two `sides` named, e.g. encoders and the instances they feed) cannot
    share a node's NVLink or PCIe (their chips differ: two machines), or None; sim/deployment_links.py phases_apart (the
    prefill / decode rule of plan, `simulate --arch disagg` and deployment files, which adds one node's GPU count)
    and a deployment's other links (two priority pools, encoders) apply it."""
    if chip_identity(p_name) != chip_identity(d_name):
        return f"with {sides[0]} on {p_name} and {sides[1]} on {d_name} (two machines)"
    return None
