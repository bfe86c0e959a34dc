"""A sweep's `strategies:` block read as plan's options (PlanOptions): its keys, types and values refused as plan's
flags refuse them, each named by its `strategies.` key (sweep_key, sweep_words)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import TypeAdapter, ValidationError

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.plan.strategies import PlanOptions
from phasewise.plan.sweep_config import SweepConfig


def _options(cfg: SweepConfig) -> PlanOptions:
    allowed = set(PlanOptions.__dataclass_fields__)
    unknown = set(cfg.strategies) - allowed
    if unknown:
        raise PhasewiseError(f"{cfg._source}: strategies.{sorted(unknown)[0]} is not an option "
                             f"(allowed: {', '.join(sorted(allowed))})")
    fields = dict(cfg.strategies)
    _refuse_flags(fields, cfg._source)
    if "tp_options" in fields:  # TP sizes named: those only, as --tp-options on `plan`
        fields.setdefault("tp_across_nodes", False)
    if "batch_caps" not in fields:  # as plan without --batch-caps: 256, then the engine's own cap on the chip
        fields.setdefault("engine_default_cap", True)
    try:  # each option's type, as PlanOptions declares it (lists of sizes, names, flags)
        opts = _PLAN_OPTIONS.validate_python(fields)
    except ValidationError as exc:
        raise pydantic_message(f"{cfg._source}: strategies", exc) from None
    return _check_ranges(opts, cfg._source)


def _refuse_flags(fields: dict[str, Any], source: str) -> None:
    """true / false given for a strategy option that is no flag (a size, a share, a name; pydantic would read true as
    1): a one-line error naming its key, as the sweep's own numbers refuse them (specs/numbers_not_booleans.py)."""
    flags = [name for name, f in PlanOptions.__dataclass_fields__.items() if "bool" in str(f.type)]
    for name, value in fields.items():
        if name in flags:  # a flag, or a list of them (speculative)
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            elif isinstance(item, bool):
                raise PhasewiseError(f"{source}: strategies.{name} takes numbers or names, not "
                                     f"{str(item).lower()} (true / false are for {', '.join(flags)})")


# the values plan's flags refuse (cli_plan: --tp-options and the other size lists through parse_ints, the rest through
# their own checks), refused here with the option's name
_PLAN_OPTIONS = TypeAdapter(PlanOptions)
SIZE_LISTS = ("tp_options", "pp_options", "chunk_sizes", "batch_caps")


def _check_ranges(opts: PlanOptions, source: str = "sweep config") -> PlanOptions:
    def bad(name: str, rule: str) -> PhasewiseError:
        return PhasewiseError(f"{source}: strategies.{name} {rule} (got {getattr(opts, name)!r})")

    for name in SIZE_LISTS:
        if not getattr(opts, name) or min(getattr(opts, name)) < 1:
            raise bad(name, "must list integers >= 1")
    if not opts.ratios or min(min(pair) for pair in opts.ratios) < 1:
        raise bad("ratios", "must list [prefill, decode] instance counts >= 1")
    # spec_tokens / spec_acceptance: plan/options.py check_speculative, by SpecDecode's own bounds
    if opts.memory_fraction is not None and not 0 < opts.memory_fraction <= 1:
        raise bad("memory_fraction", "must be in (0, 1]")
    if opts.routing_skew is not None and not math.isfinite(opts.routing_skew):
        raise bad("routing_skew", "must be a finite number")
    for name in ("host_kv_cache_bytes", "kv_store_bytes"):
        if not 0 <= getattr(opts, name) < math.inf:
            raise bad(name, "must be a finite size >= 0")
    if any(gpus < 1 for _, gpus in opts.chip_gpus):
        raise bad("chip_gpus", "must give each chip >= 1 GPU")
    for name in (*SIZE_LISTS, "ratios", "speculative"):  # as plan's flags refuse 512,512 (cli_common parse_ints)
        values = [list(v) if isinstance(v, tuple) else v for v in getattr(opts, name)]
        twice = next((v for index, v in enumerate(values) if v in values[:index]), None)
        if twice is not None:
            word = str(twice).lower() if isinstance(twice, bool) else str(twice)
            raise PhasewiseError(f"{source}: strategies.{name} names {word} twice")
    return opts


def sweep_key(option: str, value: str | None = None) -> str:
    """How a sweep names a strategy option (plan/options.py OptionName): its `strategies.` key, with `value`."""
    return f"strategies.{option}" + (f": {value}" if value else "")


def sweep_words(option: str, value: str | None = None) -> str:
    """How a sweep names the options of a 'no strategy' hint (strategies.py flag_words is plan's): `gpus:`, a
    strategy option's `strategies.` key, a size list's value as a YAML list ("strategies.tp_options: [2]")."""
    if option == "gpus":
        return f"gpus: {value}" if value else "gpus"
    return sweep_key(option, f"[{value.replace(',', ', ')}]" if value and option in SIZE_LISTS else value)
