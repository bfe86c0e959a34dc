"""`phasewise sweep config.yaml`: every strategy's goodput search (or, `fidelity: verified`, the goodput plan
verifies) over a grid of models x hardware x workloads, one row per (model, hardware, workload, strategy) to CSV or
Parquet.

    models: [meta-llama/Llama-3.1-8B, Qwen/Qwen3-8B]
    hardware: [h100-sxm, a100-sxm-80gb]
    gpus: 8
    workloads:
      - {name: conv, trace: azure-conv}
      - {name: short, isl: 512, osl: 128}
      - {name: photos, isl: 200, osl: 128, images_per_request: 1, image_size: 1280x720}   # multimodal models
      - {name: lmm, trace: lmm.csv, image_size: 1280x720}   # a trace with a NumImages column: its counts
    slo: {ttft_ms: 1000, tpot_ms: 50}
    attainment: 0.9
    strategies: {tp_options: [1, 2], chunk_sizes: [512], disaggregated: false}
    fidelity: screen          # screen (fast) | refine (longer searches) | verified (plan's figures: slow)

`screen` and `refine` stop at the search's answer on one unit, which plan's verification on the whole deployment
often refuses or moves: their rate columns are named search_* (search_rps, search_rps_per_gpu, ...), never goodput_*.
`verified` gives each strategy the goodput `plan` ranks it by (screened, refined, then verified on fresh seeds:
verification.py), in goodput_* columns with that verification's latencies, at plan's cost per strategy (7 to 36 times
a screening's time on the 1- and 8-GPU grids timed). The strategy options default as plan's flags do (without
batch_caps the engine's own sequence cap is tried too: strategies.engine_default_cap).

With `strategies: {policies: [encoders]}` the strategies with encode workers (+NE) run on the workloads that
carry images only.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

from phasewise.errors import PhasewiseError, name_list, pydantic_message
from phasewise.plan.backends import run_all
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput import (
    GoodputResult,
    WorkloadSpec,
    capacity_estimate,
    evaluate,
    lengths_within_context,
    refuse_when_none_fits,
    searched_units,
    workload_spec,
)
from phasewise.plan.options import check_options
from phasewise.plan.planner import PlanResult, objective_value, take_verification, verify
from phasewise.plan.strategies import NoStrategyFits, PlanOptions, Strategy, enumerate_strategies, unknown_choice
from phasewise.plan.strategy_policies import with_planned_slos
from phasewise.plan.windows import REFINE, SCREEN, refine_anchor_rps, search_task
from phasewise.sim import Slo
from phasewise.specs.catalog import read_user_file
from phasewise.specs.hardware import chip_identity
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.workload.generators import LengthKind


class SweepWorkload(NumbersNotBooleans):
    """One workload of the grid: a trace (bundled or a file) or lengths (isl/osl); neither: the bundled Azure
    conversation excerpt's lengths, as plan without --workload."""
    model_config = ConfigDict(extra="forbid")
    name: str
    trace: str | None = None
    arrivals: Literal["poisson", "trace"] = "poisson"
    isl: float | None = Field(default=None, gt=0)
    osl: float | None = Field(default=None, gt=0)
    isl_dist: LengthKind = "fixed"
    osl_dist: LengthKind = "fixed"
    isl_spread: float = Field(default=0.0, ge=0)
    osl_spread: float = Field(default=0.0, ge=0)
    # images each request carries, as simulate's and plan's --images-per-request / --image-size / --image-share
    images_per_request: int | None = None
    image_size: str | None = None
    image_share: float | None = None
    image_tokens_included: bool = False  # the lengths count the images' tokens (--image-tokens-included)


class SweepSlo(NumbersNotBooleans):
    """TTFT, TPOT (each request's mean gap) and every-gap TBT limits, as plan's --slo-ttft-ms / --slo-tpot-ms /
    --slo-tbt-ms."""
    model_config = ConfigDict(extra="forbid")
    ttft_ms: float = Field(default=float("inf"), gt=0)
    tpot_ms: float = Field(default=float("inf"), gt=0)
    tbt_ms: float = Field(default=float("inf"), gt=0)


class SweepConfig(NumbersNotBooleans):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(min_length=1)
    hardware: list[str] = Field(min_length=1)
    gpus: int = Field(default=8, ge=1)
    workloads: list[SweepWorkload] = Field(min_length=1)
    slo: SweepSlo = SweepSlo()
    attainment: float = Field(default=0.9, gt=0, le=1)
    strategies: dict[str, Any] = Field(default_factory=dict)
    # screen / refine: the search's rate on one unit, unverified (search_* columns); verified: plan's figures
    fidelity: Literal["screen", "refine", "verified"] = "screen"
    seed: int = Field(default=0, ge=0)
    _source: str = PrivateAttr(default="sweep config")  # how errors name it: its file, once load_sweep read it


def load_sweep(path: str) -> SweepConfig:
    data = read_user_file(path, "sweep config")
    try:
        cfg = SweepConfig(**data)
    except ValidationError as exc:
        raise pydantic_message(f"sweep config '{path}'", exc) from None
    cfg._source = f"sweep config '{path}'"
    return cfg


def sweep_field(field: str) -> str:
    """A workload field as a sweep entry names it (workload_spec's `name`): its key, the trace's `trace`."""
    return "trace" if field == "workload" else field


# the image flags workload/images.py names in its errors, as a sweep workload's keys
_IMAGE_KEYS = {"--images-per-request": "images_per_request", "--image-size": "image_size",
               "--image-share": "image_share", "--image-tokens-included": "image_tokens_included"}


def _keyed(exc: PhasewiseError) -> str:
    """An error about a workload with the image settings named by the entry's keys, not plan's flags."""
    message = str(exc)
    for flag, key in _IMAGE_KEYS.items():
        message = message.replace(flag, key)
    return message


def _entry(cfg: SweepConfig, index: int, exc: PhasewiseError) -> PhasewiseError:
    """An error about workload entry `index`, naming the file and the entry as a schema error does (and the image
    settings by the entry's keys, not plan's flags)."""
    return PhasewiseError(f"{cfg._source}: workloads.{index}, workload '{cfg.workloads[index].name}': {_keyed(exc)}")


def _workloads(cfg: SweepConfig) -> list[WorkloadSpec]:
    """Each workload once (its trace read once), whatever the models and chips it runs on; two of one name are a
    one-line error (the rows name their workload by it: they could not be told apart)."""
    names = [w.name for w in cfg.workloads]
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise PhasewiseError(f"{cfg._source}: workloads.{names.index(twice, names.index(twice) + 1)}: the name "
                             f"'{twice}' is given twice (each workload needs a name of its own: the rows name it)")
    works = []
    for index, w in enumerate(cfg.workloads):
        try:
            works.append(workload_spec(w.trace, w.arrivals, w.isl, w.osl, w.isl_dist, w.osl_dist, w.isl_spread,
                                       w.osl_spread, cfg.seed, images_per_request=w.images_per_request,
                                       image_size=w.image_size, image_share=w.image_share,
                                       image_tokens_included=w.image_tokens_included, name=sweep_field))
        except PhasewiseError as exc:
            raise _entry(cfg, index, exc) from None
    return works


def _check_model(model: str, works: list[WorkloadSpec], cfg: SweepConfig) -> dict[int, PhasewiseError]:
    """Each workload on `model`: mean lengths and, for a trace, at least one request within its context; images
    its processor takes. The refusal of each workload `model` cannot run, by its index."""
    from phasewise.specs import load_model

    spec = load_model(model)
    context = spec.max_position_embeddings
    refused = {}
    for index, (w, work) in enumerate(zip(cfg.workloads, works)):
        try:
            lengths_within_context(w.isl, w.osl, context, "isl + osl", f"{model}'s")
            refuse_when_none_fits(work, context, f"{model}'s")
            if work.images is not None:  # a text model, or a size its processor refuses
                work.images.geometries(spec)
        except PhasewiseError as exc:
            refused[index] = exc
    return refused


def _cells_refused(cfg: SweepConfig, works: list[WorkloadSpec]) -> dict[tuple[str, int], str]:
    """The (model, workload index) cells whose model cannot run the workload (images beside a text model, lengths
    beyond its context: _check_model), each with its reason, the entry's keys named: rows of kind none, as a cell
    with no strategy is. A workload no model of the grid runs is a one-line error naming the entry (the first
    model's refusal): it applies to no cell of the grid."""
    refused = {model: _check_model(model, works, cfg) for model in cfg.models}
    for index in range(len(works)):
        if all(index in by_index for by_index in refused.values()):
            raise _entry(cfg, index, refused[cfg.models[0]][index])
    return {(model, index): f"workload '{cfg.workloads[index].name}': {_keyed(exc)}"
            for model, by_index in refused.items() for index, exc in by_index.items()}


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


# the values plan's flags refuse (cli.py: --tp-options and the other size lists through parse_ints, the rest through
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


def run_sweep(cfg: SweepConfig, backend: str = "local", workers: int | None = None, ray_address: str | None = None,
              progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> list[dict[str, Any]]:
    """One row per (model, hardware, workload, strategy): plan's figures (`fidelity: verified`), or the search's
    answer on one unit, its rate columns named search_* (`screen`, `refine`)."""
    opts = _options(cfg)
    slo = Slo(cfg.slo.ttft_ms, cfg.slo.tpot_ms, cfg.slo.tbt_ms)
    if not any(math.isfinite(v) for v in (slo.ttft_ms, slo.tpot_ms, slo.max_tbt_ms)):  # as plan refuses
        raise PhasewiseError("sweep needs at least one SLO: slo.ttft_ms, slo.tpot_ms or slo.tbt_ms (without one a "
                             "'goodput' is only the capacity)")
    verified = cfg.fidelity == "verified"
    settings = SCREEN if cfg.fidelity == "screen" else REFINE
    jobs: list[tuple[dict[str, Any], tuple]] = []
    unfit: list[tuple[dict[str, Any], str]] = []  # (model, chip, workload) cells with no strategy, and why
    _check_names(cfg, opts)
    works = _workloads(cfg)
    refused = _cells_refused(cfg, works)  # each workload on each model, then the options, before any simulation
    _check_grid(cfg, opts)
    routed = False  # whether the search of any job routes (several routers: _routes)
    for model in cfg.models:
        for hw in cfg.hardware:
            try:
                strategies, _ = enumerate_strategies(model, hw, cfg.gpus, opts, name=sweep_words)
                strategies = with_planned_slos(strategies, slo)
            except NoStrategyFits as exc:  # one cell of the grid (a model too large, an engine the chip lacks)
                unfit += [({"model": model, "hardware": hw, "workload": w.name}, refused.get((model, index), str(exc)))
                          for index, w in enumerate(cfg.workloads)]
                continue
            for index, (w, work) in enumerate(zip(cfg.workloads, works)):
                if (model, index) in refused:  # a workload the model cannot run (images beside a text model)
                    unfit.append(({"model": model, "hardware": hw, "workload": w.name}, refused[model, index]))
                    continue
                for s in strategies:
                    if s.deployment.get("encoders") and work.images is None:
                        continue  # encode workers beside a text workload: nothing for them to do
                    if not verified and len(opts.routers) > 1:
                        if not _routes(s, work):
                            if s.details.get("router", opts.routers[0]) != opts.routers[0]:
                                continue  # the search sees no router: its row once, behind the first (as a lone
                                # instance's in plan: behind_each_router)
                        else:
                            routed = True
                    task = (s, work, slo, cfg.attainment) if verified else search_task(
                        settings, s, work, slo, cfg.attainment, capacity_estimate(s, work))
                    jobs.append(({"model": model, "hardware": hw, "workload": w.name}, task))
    if not verified and len(opts.routers) > 1 and jobs and not routed:
        raise PhasewiseError(f"{cfg._source}: {sweep_key('routers')} compares {', '.join(opts.routers)}, which a "
                             f"fidelity {cfg.fidelity} search never sees: it simulates one unit of each strategy, "
                             "here one instance per group with nothing to route (plan compares routers by its "
                             "verification on the whole deployment): set fidelity: verified, or name one router")
    tick = progress("sweeping", 0, len(jobs)) if progress else None
    results = run_all(plan_figures if verified else evaluate, [j[1] for j in jobs], backend, workers, ray_address,
                      tick)
    rows = [_row(cfg, key, r, slo, verified) for (key, _), r in zip(jobs, results)]
    if unfit and not rows:
        raise NoStrategyFits(f"no cell of the sweep has a strategy ({unfit[0][0]['model']} on "
                             f"{unfit[0][0]['hardware']}: {unfit[0][1]})")
    for key, why in unfit:  # a row of its own with the reason, goodput 0: the grid stays whole
        rows.append({**dict.fromkeys(rows[0], math.nan), **key, "strategy": "", "kind": "none", "gpus": 0,
                     "goodput_rps": 0.0, "goodput_rps_per_gpu": 0.0, "binding": why, "simulations": 0,
                     **({"reason": why} if verified else {})})
    return rows if verified else [searched(row) for row in rows]


def _routes(strategy: Strategy, work: WorkloadSpec) -> bool:
    """Whether the search (goodput.evaluate) simulates a group of more than one instance, for a router to choose
    among (the units it simulates: goodput.searched_units)."""
    units = searched_units(strategy, work)
    return any(group.get("replicas", 1) * units > 1 for group in strategy.unit["instances"])


def plan_figures(strategy: Strategy, work: WorkloadSpec, slo: Slo, target: float) -> GoodputResult:
    """The strategy's goodput as `plan` ranks it (planner.plan's refine_and_verify): screened, refined from the
    screening's probes, then verified on the whole deployment (or its slice) on fresh seeds (verification.verify); the
    refined search's answer kept as search_rps. Runs in a worker process."""
    screened = evaluate(*search_task(SCREEN, strategy, work, slo, target, capacity_estimate(strategy, work)))
    r = evaluate(*search_task(REFINE, strategy, work, slo, target, refine_anchor_rps(screened), screened.probes))
    take_verification(r, *verify(strategy, r.goodput_rps, work, slo, target, r.search_units))
    r.probes = {}  # the search's summaries: not sent back from the worker (no row reads them)
    return r


# the figures a row takes from plan's own row of the strategy (PlanResult.rows: the verification run's), verified
_PLAN_FIGURES = ("ttft_p90_ms", "tpot_p90_ms", "tbt_p99_ms", "tokens_per_s_per_gpu")
_VERIFICATION = ("search_rps", "verified_attainment", "reason")


def _row(cfg: SweepConfig, key: dict[str, Any], r: GoodputResult, slo: Slo, verified: bool) -> dict[str, Any]:
    """A strategy's row. Verified: the latencies and tokens/s per GPU of plan's row for it (the verification run at
    the goodput), the refined search's rate, the attainment verified and plan's reason; else the search's run at its
    answer (GoodputResult.point)."""
    if verified:
        plan_row = PlanResult(key["model"], key["hardware"], cfg.gpus, slo, cfg.attainment, "goodput-per-gpu",
                              key["workload"], [r], [], []).rows()[0]
        figures = {name: plan_row[name] for name in _PLAN_FIGURES}
    else:  # a figure the point lacks (no rate attained: no point) NaN, as PlanResult.rows has it: one type a column
        point = r.point()
        figures = {name: math.nan if point.get(name) is None else float(point[name]) for name in _PLAN_FIGURES}
    row = {**key, "strategy": r.strategy.name, "kind": r.strategy.kind, "gpus": r.gpus,
           "goodput_rps": r.goodput_rps, "goodput_rps_per_gpu": r.goodput_rps / r.gpus,
           "goodput_requests_per_dollar": objective_value("goodput-per-dollar", r),
           "goodput_requests_per_joule": _per_joule(r), **_cluster_figures(r), "binding": r.binding,
           **figures, "simulations": r.simulations}
    if verified:
        row.update({name: plan_row[name] for name in _VERIFICATION})
    return row


def searched(row: dict[str, Any]) -> dict[str, Any]:
    """A row of search rates (`fidelity: screen | refine`, unverified): its goodput_* columns named search_*."""
    return {("search_" + name.removeprefix("goodput_") if name.startswith("goodput_") else name): value
            for name, value in row.items()}


def _per_joule(r: GoodputResult) -> float:
    """Goodput per joule of the simulated power (plan's --objective goodput-per-watt, which refuses such chips); NaN
    where the power is unknown, as the other per-unit figures are, not 0: a chip of the deployment with no TDP
    (tdp_w 0, as `calibrate` writes one: the simulated energy has no dynamic power to scale), or no power simulated."""
    from phasewise.specs import load_hardware

    chips = cluster_hardware(r.strategy.deployment, with_cost=False).chips
    if any(not load_hardware(chip).tdp_w > 0 for chip in chips) or not r.power_w() > 0:
        return math.nan
    return objective_value("goodput-per-watt", r)


def _cluster_figures(r: GoodputResult) -> dict[str, float]:
    """The strategy's cluster TDP and goodput per kW of it (plan's --objective power), and its hardware cost and
    goodput per $1,000 of it (--objective cost) where every chip is built from parts (NaN where one is not)."""
    cluster = cluster_hardware(r.strategy.deployment, with_cost=False)
    figures = {"cluster_tdp_w": cluster.tdp_w, "goodput_rps_per_kw": objective_value("power", r),
               "cluster_cost_usd": math.nan, "goodput_rps_per_1k_usd": math.nan}
    try:
        figures.update(cluster_cost_usd=cluster_hardware(r.strategy.deployment).cost_usd,
                       goodput_rps_per_1k_usd=objective_value("cost", r))
    except PhasewiseError:  # a catalog chip: no parts to cost
        pass
    return figures


def check_out(path: str) -> Path:
    """`--out` as a path the rows can go to, checked before the sweep runs (not after its minutes of work): its
    suffix, and that it can be written (export.py check_output_path: no folder there, no file on its way, the
    nearest folder writable); the path to write, '~' expanded as the check read it."""
    from phasewise.plan.export import check_output_path

    out = Path(path)
    if out.suffix not in (".csv", ".parquet"):
        raise PhasewiseError(f"--out '{path}' must end in .csv or .parquet")
    if out.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise PhasewiseError("--out *.parquet needs pyarrow: pip install pyarrow (or write .csv)")
    # where the rows land once the folders on the way are made (a `..` after a folder not yet made: its parent)
    if Path(os.path.realpath(out.expanduser())).is_dir():
        raise PhasewiseError(f"--out '{path}': cannot write (Is a directory)")
    return check_output_path(f"--out '{path}'", out)


def write_rows(rows: list[dict[str, Any]], path: str) -> Path:
    out = check_out(path)
    if not rows:
        raise PhasewiseError("the sweep produced no rows")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), out)
            return out
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    except OSError as exc:
        raise PhasewiseError(f"--out '{path}': cannot write ({exc.strerror})") from None
    return out
