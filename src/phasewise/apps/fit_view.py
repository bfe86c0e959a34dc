"""`phasewise fit-engine`: an engine's host constants fitted to a user's measured TTFT/TBT points, the
error on held-out runs beside the unfitted start's, and an engine YAML that `--engine FILE` accepts."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.fit import FITTABLE, fit_engine, parse_points, running_costs
from phasewise.plan.export import check_output_path
from phasewise.specs import load_engine
from phasewise.specs.catalog import looks_like_path, read_user_file
from phasewise.specs.engine_presets import preset_entry, preset_names
from phasewise.specs.engines import SCHEDULERS
from phasewise.specs.hardware import PRESET_PROFILE_FIELDS, engine_file_preset

HOLDOUTS = ("every-other", "none")


def run_fit(points_path: str, engine: str, params: str, holdout: str) -> dict[str, Any]:
    """The fit of `params` on the runs `holdout` keeps, each point costed as `estimate --engine ENGINE` costs it (a
    preset as it runs on the point's chip and TP: perf/fit.py running_costs), so the fitted and unfitted errors are
    those of the written engine file and of ENGINE themselves."""
    if holdout not in HOLDOUTS:
        raise PhasewiseError(f"--holdout '{holdout}' is not one of {', '.join(HOLDOUTS)}")
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    if not names:
        raise PhasewiseError(f"--params needs at least one of {', '.join(FITTABLE)}")
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if repeated:
        raise PhasewiseError(f"--params names {repeated} twice: give each field to fit once")
    where = f"points file '{points_path}'"
    data = read_user_file(points_path, "points")
    points = parse_points(data, where)
    runs = list(dict.fromkeys(p.run for p in points))  # file order
    if holdout == "every-other" and len(runs) < 2:
        raise PhasewiseError(f"{where}: --holdout every-other holds out every other run, and the file has one run "
                             f"('{runs[0]}'): add runs for a held-out error, or give --holdout none to fit on it alone")
    held = set(runs[1::2]) if holdout == "every-other" else set()
    _check_params(names, len(runs) - len(held), len(held))
    start, predict = running_costs(data, engine, where)
    fit = fit_engine([p for p in points if p.run not in held], start, names, predict=predict)
    if not fit.fitted:
        it = "it" if len(names) == 1 else "them"
        raise PhasewiseError(f"--params {', '.join(names)}: no fit point responds to "
                             f"{'it' if len(names) == 1 else 'any of them'} (the fit's error is the same over each "
                             f"field's whole range), so these points cannot determine {it}"
                             + (" (collective_overhead_s needs runs at tp > 1)" if "collective_overhead_s" in names
                                else ""))
    rows = [{"figure": p.label, "split": "held-out" if p.run in held else "fit", "measured_ms": p.measured_ms,
             "fitted_error": predict(p, fit.engine) / p.measured_ms - 1.0,
             "start_error": predict(p, start) / p.measured_ms - 1.0} for p in points]
    return {"engine": engine, "values": fit.fitted, "fit_runs": fit.runs, "held_out_runs": len(held),
            "undetermined": {k: fit.values[k] for k in fit.undetermined},
            "summary": {side: _errors([r for r in rows if r["split"] == side]) for side in ("fit", "held-out")},
            "points": rows, "profile": fit.engine}


def _check_params(names: tuple[str, ...], fit_runs: int, held_runs: int) -> None:
    """--params, one line naming it: each a fittable field, and at most one a run the fit keeps (perf/fit.py
    fit_engine's rule, worded for the flags), before the points are costed."""
    unknown = [n for n in names if n not in FITTABLE]
    if unknown:
        raise PhasewiseError(f"--params: cannot fit '{unknown[0]}' (fittable: {', '.join(FITTABLE)})")
    if len(names) > fit_runs:
        held = f", {held_runs} more held out by --holdout every-other" if held_runs else ""
        raise PhasewiseError(f"--params {','.join(names)}: {len(names)} constants, and the fit has {fit_runs} "
                             f"run{'s' * (fit_runs != 1)}{held}: a fit determines at most one constant a run, so "
                             f"--params takes at most {fit_runs} (of {', '.join(FITTABLE)})")


def _errors(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    if not rows:
        return None
    fitted = sorted(abs(r["fitted_error"]) for r in rows)
    start = sorted(abs(r["start_error"]) for r in rows)
    return {"figures": len(rows), "fitted_median": statistics.median(fitted), "fitted_worst": fitted[-1],
            "start_median": statistics.median(start), "start_worst": start[-1]}


def write_engine(result: dict[str, Any], engine: str, points_path: str, out: str) -> Path:
    """The fitted engine as an engine file. Fitted from a preset (`vllm[@0.12]`, or a file that refines one), the file
    refines that preset (`preset:`): `--engine FILE` runs the preset as `--engine PRESET` does (scheduler, knobs,
    CUDA graphs, async / overlap scheduling) with the fitted constants, and the file's fields that differ from the
    preset's profile. From a bare profile, the whole profile and its scheduler."""
    profile = result["profile"]
    preset = _preset_of(engine)
    if preset is not None:
        base = load_engine(preset_entry(preset)["profile"]).model_dump(exclude={"name"})
        fields = profile.model_dump(exclude={"name", "source", *PRESET_PROFILE_FIELDS})
        entry = {"preset": preset, **{k: v for k, v in fields.items() if v != base[k]},
                 **{k: fields[k] for k in result["values"]}}
    else:
        entry = profile.model_dump(exclude={"name"})
        entry["cuda_graph_sizes"] = list(entry["cuda_graph_sizes"])
        scheduler = engine.split("@")[0]
        if scheduler in SCHEDULERS:
            entry["scheduler"] = scheduler
    entry["source"] = (f"phasewise fit-engine {points_path} --engine {engine}: "
                       + ", ".join(f"{k} {v:.4g}" for k, v in result["values"].items())
                       + f" fitted on {result['fit_runs']} runs ({result['held_out_runs']} held out)"
                       + _undetermined_words(result))
    path = check_output_path(f"--out '{out}'", out)  # (checked before the fit too: cli_measure.py)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the folders on its way, as --report's and --export's
        path.write_text(yaml.safe_dump({"engines": {f"{profile.name}-fit": entry}}, sort_keys=False))
    except OSError as exc:
        raise PhasewiseError(f"--out {out}: cannot write ({exc.strerror})") from None
    return path


def _undetermined_words(result: dict[str, Any]) -> str:
    """'; not determined by these points (left at the start value): F V' for the fields no fit point responds to
    (run_fit's `undetermined`); '' if none."""
    undetermined = result.get("undetermined") or {}
    if not undetermined:
        return ""
    return "; not determined by these points (left at the start value): " + ", ".join(
        f"{k} {v:.4g}" for k, v in undetermined.items())


def _preset_of(engine: str) -> str | None:
    """The preset (`name[@version]`) fit-engine's --engine runs as: a preset named, or the one an engine file refines
    (with the version --engine gives, if any); None for a bare profile."""
    name, _, version = engine.partition("@")
    if name.lower() in preset_names():
        return engine.lower()
    preset = engine_file_preset(name) if looks_like_path(name) else None
    if preset is None:
        return None
    return f"{preset.split('@', 1)[0]}@{version}" if version else preset


def render_fit(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"fit-engine {result['engine']}: " + ", ".join(f"{k} = {v:.4g}"
                                                                       for k, v in result["values"].items())
                  + _undetermined_words(result))
    for col in ("figure", "split", "measured ms", "fitted", "unfitted"):
        table.add_column(col)
    for r in result["points"]:
        table.add_row(r["figure"], r["split"], f"{r['measured_ms']:.4g}", f"{r['fitted_error']:+.1%}",
                      f"{r['start_error']:+.1%}")
    console.print(table)
    for side, s in result["summary"].items():
        if s:
            console.print(f"{side}: {s['figures']} figures, median |error| fitted {s['fitted_median']:.1%} "
                          f"(worst {s['fitted_worst']:.1%}), unfitted {s['start_median']:.1%} "
                          f"(worst {s['start_worst']:.1%})")
