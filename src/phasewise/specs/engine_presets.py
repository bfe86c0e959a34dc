"""The engine presets' table (engine_presets.yaml): a preset's entry by name (`preset[@version]`, or the preset an
engine file refines), the preset and version an engine runs as, its versions, the release a knob came in, and a
version's defaults with what it inherits."""

from __future__ import annotations

import re
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
    return preset_release(engine)[0]


def preset_release(engine: str) -> tuple[str, str]:
    """(preset key, version) `engine` runs as: `preset@version`, or the preset at its default_version; an engine
    file that refines a preset (`preset: NAME[@VERSION]`, engine_file_preset) that preset, at the version
    `FILE@VERSION` gives, else the file's, else the preset's default (the version specs/engines.py resolve_engine
    simulates, in each of these); a profile name or a bare engine file: its own name (no preset's: preset_entry
    reads vLLM V1's entry for it) at the version given, else vLLM V1's default (resolve_engine schedules a bare file
    as its `scheduler:` says). The planner's (plan/scheduling_variants.py) and the launch scripts'
    (apps/launch_args.py) one reading of the version modelled. `name@` gives an empty version, which resolve_engine
    refuses."""
    name, at, given = engine.partition("@")
    preset = engine_file_preset(name) if looks_like_path(name) else None
    key = (preset or name).split("@", 1)[0].lower()
    if at:
        return key, given
    presets = packaged("engine_presets.yaml")["presets"]
    return key, (preset or "").partition("@")[2] or str(presets.get(key, presets["vllm"])["default_version"])


def preset_versions(engine: str) -> tuple[str, ...]:
    """The versions a preset carries defaults for (`engine@version`); a profile name or file: vLLM V1's."""
    return tuple(preset_entry(engine).get("versions", {}))


def knob_since(engine: str, knob: str) -> str | None:
    """The first release of `engine`'s preset (`preset[@version]`, or the preset an engine file refines) with
    `knob`'s flag, where that is later than a version the preset models (engine_presets.yaml `knob_since`: the
    planner's and the launch scripts' one record of it); None: every version modelled has it. A release that is not
    a version string as the preset's versions are (a quoted "0.5.8": YAML reads 0.6 unquoted as a number) is a
    one-line error naming the preset and the knob."""
    since = (preset_entry(engine).get("knob_since") or {}).get(knob)
    if since is not None and not (isinstance(since, str) and _RELEASE.fullmatch(since)):
        key = preset_key(engine) if preset_key(engine) in preset_names() else "vllm"  # the entry preset_entry read
        raise PhasewiseError(f"specs/data/engine_presets.yaml: preset {key}'s knob_since {knob}: {since!r} is not a "
                             "release: it must be a quoted version string like the preset's versions ("
                             f"{', '.join(repr(v) for v in preset_entry(engine).get('versions', {}))}), no spaces")
    return since


# a release as the presets' versions and engine_flags.yaml's `since` give it (specs/engine_kv.py version_key reads
# it): numbers and dots, optionally a dev / a / b / rc / post tag; no spaces
_RELEASE = re.compile(r"v?\d+(?:\.\d+)*(?:[.-]?(?:dev|a|b|rc|post)\.?\d*)?")


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
