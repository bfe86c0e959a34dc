"""A sweep's grid checked before any simulation: each model, chip, precision, engine, policy and router it names
exists (_check_names) and is named once, and every strategy option it sets applies to some cell (_check_grid)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError, name_list
from phasewise.plan.options import check_options
from phasewise.plan.strategies import PlanOptions, unknown_choice
from phasewise.plan.sweep_config import SweepConfig
from phasewise.plan.sweep_options import sweep_key
from phasewise.specs.hardware import chip_identity


def _check_grid(cfg: SweepConfig, opts: PlanOptions) -> None:
    """Each model, chip, engine and named strategy option of the grid once (two rows of one cell could not be told
    apart; plan's flags refuse the same), and no strategy option that applies to no cell of it (plan/options.py
    check_options: plan refuses the same flags). One line naming the file and the entry otherwise."""
    lists = [("models", cfg.models, model_identity), ("hardware", cfg.hardware, chip_identity),
             *((sweep_key(option), getattr(opts, option), chip_identity)
               for option in ("prefill_hardware", "decode_hardware")),
             *((sweep_key(option), getattr(opts, option), str)
               for option in ("precisions", "policies", "moe_layouts", "routers"))]
    try:
        for key, names, identity in lists:
            seen: dict[str, str] = {}
            for name in names:
                if identity(name) in seen:
                    first = seen[identity(name)]
                    what = "model" if key == "models" else "chip"
                    raise PhasewiseError(f"{key} names {name} twice" if first == name
                                         else f"{key} names one {what} twice: {first} and {name}")
                seen[identity(name)] = name
        name_list(sweep_key("engine"), opts.engine)  # each engine once, as plan's --engine
        check_options(cfg.models, [*cfg.hardware, *opts.prefill_hardware, *opts.decode_hardware], opts,
                      set(cfg.strategies), sweep_key)
    except PhasewiseError as exc:
        raise PhasewiseError(f"{cfg._source}: {exc}") from None


def model_identity(model: str) -> str:
    """What a model name stands for: its catalog key (an alias or another case of it), a requantized alias of its
    own (its checkpoint is another: alias_precisions), or its file's resolved path."""
    from phasewise.specs.catalog import looks_like_path, packaged
    from phasewise.specs.model_catalog import catalog_names

    if looks_like_path(model) or Path(model).is_dir():
        return str(Path(model).resolve())
    key = catalog_names().get(model.lower())
    if key is None:
        return model
    requantized = {alias.lower() for alias in packaged("models.yaml")["models"][key].get("alias_precisions") or {}}
    return model.lower() if model.lower() in requantized else key


def _check_names(cfg: SweepConfig, opts: PlanOptions) -> None:
    """Each model, chip, precision, engine, serving policy and router the file names exists: one line naming the file
    and the entry's key otherwise (not plan's flag, not a bare 'unknown model'). Speculative strategies on models
    without MTP layers: check_options (an error only where no model listed has them)."""
    from phasewise.specs import load_hardware, load_model, load_quant
    from phasewise.specs.engine_refusals import vendor_refusal
    from phasewise.specs.engines import resolve_engine

    def named(key: str, load: Callable[[str], Any], names: Any) -> list[Any]:
        out = []
        for index, name in enumerate(names):
            try:
                out.append(load(name))
            except PhasewiseError as exc:
                raise PhasewiseError(f"{cfg._source}: {key}.{index}: {exc}") from None
        return out

    named("models", load_model, cfg.models)
    chips = named("hardware", load_hardware, cfg.hardware)
    for option in ("prefill_hardware", "decode_hardware"):
        named(sweep_key(option), load_hardware, getattr(opts, option))
    named(sweep_key("precisions"), load_quant, opts.precisions)
    unknown = unknown_choice(opts)  # as plan refuses them (strategies.py _enumerate)
    if unknown:
        option, name, allowed = unknown
        raise PhasewiseError(f"{cfg._source}: {sweep_key(option)}: '{name}' is not one of {', '.join(allowed)}")
    try:  # each engine once, none empty, as plan's --engine
        engines = name_list(sweep_key("engine"), opts.engine)
    except PhasewiseError as exc:
        raise PhasewiseError(f"{cfg._source}: {exc}") from None
    for engine in engines:
        try:
            for hw in chips:
                if vendor_refusal(engine, hw) is None:  # an engine the chip lacks: that cell's row says so
                    resolve_engine(engine, hw)
        except PhasewiseError as exc:
            message = str(exc).removeprefix("--engine ")
            raise PhasewiseError(f"{cfg._source}: {sweep_key('engine')}: {message}") from None
