"""The engine presets' table (engine_presets.yaml): a preset's entry by name (`preset[@version]`, or the preset an
engine file refines), its versions, the release a knob came in, and a version's defaults with what it inherits."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.catalog import looks_like_path, packaged
from phasewise.specs.hardware import engine_file_preset


def preset_names() -> list[str]:
    return list(packaged("engine_presets.yaml")["presets"])


def preset_entry(engine: str) -> dict[str, Any]:
    """A preset's entry in engine_presets.yaml by name (`preset[@version]`), or the preset an engine file refines
    (its `preset:`); a profile name or bare file behaves as vLLM V1."""
    presets = packaged("engine_presets.yaml")["presets"]
    return presets.get(preset_key(engine), presets["vllm"])


def preset_key(engine: str) -> str:
    """The preset key `engine` (`preset[@version]`, a profile name or an engine file) stands for: the name; an engine
    file's `preset:` (engine_file_preset) where it names one."""
    name = engine.split("@", 1)[0]
    preset = engine_file_preset(name) if looks_like_path(name) else None
    return (preset or name).split("@", 1)[0].lower()


def preset_versions(engine: str) -> tuple[str, ...]:
    """The versions a preset carries defaults for (`engine@version`); a profile name or file: vLLM V1's."""
    return tuple(preset_entry(engine).get("versions", {}))


def knob_since(engine: str, knob: str) -> str | None:
    """The first release of `engine`'s preset (`preset[@version]`, or the preset an engine file refines) with
    `knob`'s flag, where that is later than a version the preset models (engine_presets.yaml `knob_since`: the
    planner's and the launch scripts' one record of it); None: every version modelled has it."""
    return (preset_entry(engine).get("knob_since") or {}).get(knob)


def version_table(name: str, entry: dict, version: str) -> dict[str, Any]:
    versions = entry["versions"]
    if version not in versions:
        raise PhasewiseError(f"--engine {name}@{version}: unknown version '{version}' (known: {', '.join(versions)})")
    table = dict(versions[version])
    while "inherit" in table:
        parent = dict(versions[table.pop("inherit")])
        parent.update(table)
        table = parent
    return table
