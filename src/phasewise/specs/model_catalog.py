"""The model catalog (specs/data/models.yaml: each entry a checkpoint's config.json fields verbatim, its aliases,
its measured routing skew and its requantized aliases' formats) and users' config files, read by name or path into
a ModelSpec through the config.json parser (specs/hf_config.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file
from phasewise.specs.hf_config import NON_FINITE_FIELDS, from_hf_config
from phasewise.specs.model import ModelSpec
from phasewise.specs.reading import CHECKPOINT_CONFIG

__all__ = ["catalog_names", "checkpoint_id", "checkpoint_model_type", "load_model"]


def catalog_names() -> dict[str, str]:
    """Lower-case name or alias -> canonical catalog id."""
    names: dict[str, str] = {}
    for key, entry in packaged("models.yaml")["models"].items():
        names[key.lower()] = key
        names[key.split("/")[-1].lower()] = key
        for alias in entry.get("aliases") or []:
            names[alias.lower()] = key
            names[alias.split("/")[-1].lower()] = key
    return names


def checkpoint_id(name_or_path: str) -> str:
    """What an engine loads for `name_or_path`: a catalog short alias (no '/': 'nemotron-3-nano') becomes its
    entry's Hugging Face id; an id, an alias that is a repository of its own (an -FP8 checkpoint) or a checkpoint
    directory stays; a config.json by path becomes the directory holding it (vllm serve, SGLang's --model-path and
    trtllm-serve load a directory or a hub id, not the file). Any other file (a YAML, a config under another name)
    is no checkpoint an engine can load: a one-line error naming --model."""
    if Path(name_or_path).is_dir():
        return name_or_path
    if looks_like_path(name_or_path):
        path = Path(name_or_path)
        if path.name != CHECKPOINT_CONFIG:
            raise PhasewiseError(f"--model '{name_or_path}': an engine loads a checkpoint directory (holding "
                                 f"{CHECKPOINT_CONFIG}) or a hub id, not a file named {path.name}; give the "
                                 f"directory, or its {CHECKPOINT_CONFIG} by path")
        return str(path.parent)
    if "/" in name_or_path:
        return name_or_path
    return catalog_names().get(name_or_path.lower(), name_or_path)


def _config_path(name_or_path: str) -> str | None:
    """The config file `name_or_path` names: itself when it looks like a file (specs/catalog.py looks_like_path),
    a checkpoint directory's config.json (an error when the directory has none), else None (a catalog name)."""
    path = Path(name_or_path)
    if path.is_dir():
        config = path / CHECKPOINT_CONFIG
        if not config.is_file():
            raise PhasewiseError(f"model directory '{name_or_path}' holds no {CHECKPOINT_CONFIG}: a checkpoint "
                                 f"directory needs one (or give a config file by path, or a catalog model)")
        return str(config)
    return name_or_path if looks_like_path(name_or_path) else None


def _checkpoint_config(name_or_path: str) -> tuple[dict[str, Any], dict[str, Any] | None, str]:
    """The config.json fields of a user's file by path, or of a catalog entry by HF id or alias (case-insensitive):
    (fields, the catalog entry or None, its catalog key or the path); a checkpoint directory's config.json."""
    path = _config_path(name_or_path)
    if path is not None:
        cfg = read_user_file(path, "model config", NON_FINITE_FIELDS)
        if isinstance(cfg.get("config"), dict):  # a catalog-format entry
            cfg = cfg["config"]
        return cfg, None, name_or_path
    key = catalog_names().get(name_or_path.lower())
    if key is None:
        raise unknown_name("model", name_or_path, packaged("models.yaml")["models"])
    entry = packaged("models.yaml")["models"][key]
    return entry["config"], entry, key


def checkpoint_model_type(name_or_path: str) -> str:
    """The model_type at the top of the checkpoint's config.json, lower-case: a multimodal checkpoint's own
    (internvl_chat), not its language model's; a catalog entry's as copied, a user's file's as written."""
    return str(_checkpoint_config(name_or_path)[0].get("model_type", "")).lower()


def load_model(name_or_path: str) -> ModelSpec:
    """A catalog model by HF id or alias (case-insensitive), a config.json / YAML file by path, or a checkpoint
    directory (its config.json)."""
    cfg, entry, key = _checkpoint_config(name_or_path)
    if entry is None:
        return _with_catalog_skew(from_hf_config(name_or_path, cfg, where=f"model config '{name_or_path}'"))
    spec = from_hf_config(key, cfg)
    if entry.get("routing_skew"):  # a measured property of the trained router, not a config.json field
        spec = spec.model_copy(update={"expert_top20_share": float(entry["routing_skew"]["top20_share"])})
    requantized = {alias.lower(): precision for alias, precision in (entry.get("alias_precisions") or {}).items()}
    native = requantized.get(name_or_path.lower())
    return spec.model_copy(update={"native_precision": native}) if native else spec


def _with_catalog_skew(spec: ModelSpec) -> ModelSpec:
    """A user's config file of a MoE model that parses to exactly a catalog model (every field of the spec but its
    name: the catalog's config.json, downloaded or copied) takes that model's routing skew, as its catalog id does;
    any other config runs on uniform routing (--routing-skew sets a skew)."""
    if not spec.num_experts:
        return spec
    for key, entry in packaged("models.yaml")["models"].items():
        if entry.get("routing_skew"):
            catalog_spec = from_hf_config(key, entry["config"])
            if catalog_spec == spec.model_copy(update={"name": key}):
                return spec.model_copy(update={"expert_top20_share": float(entry["routing_skew"]["top20_share"])})
    return spec
