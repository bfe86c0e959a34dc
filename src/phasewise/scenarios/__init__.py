"""Paper scenarios for `phasewise reproduce`: one module per paper, each defining SCENARIO (base.Scenario).

Scenarios compose public capabilities only; the technique itself lives in its layer (a scheduler in
sim/schedulers, a chip part in specs, an operator mapping in perf)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from importlib import resources
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.plan import run_all
from phasewise.scenarios.base import Check, Outcome, Param, Scenario, ScenarioResult, parse_sets

_NOT_SCENARIOS = {"base"}


def scenarios() -> dict[str, Scenario]:
    """Every scenario, in the papers' order (PAPERS.md numbering)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NOT_SCENARIOS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        scenario = getattr(module, "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found.append(scenario)
    return {s.name: s for s in sorted(found, key=lambda s: (s.number, s.name))}


def get_scenario(name: str) -> Scenario:
    known = scenarios()
    if name not in known:
        raise PhasewiseError(f"unknown scenario '{name}' (known: {', '.join(known)})")
    return known[name]


def run_scenarios(names: list[str], progress: Callable[[int], None] | None = None) -> list[ScenarioResult]:
    """Each named scenario on its defaults, one process per core, results in `names`' order; progress(1) as each
    ends. Each run is deterministic, so its figures are those of a run alone; its wall_s is its own run's."""
    return run_all(_run_defaults, [(name,) for name in names], progress=progress)


def _run_defaults(name: str) -> ScenarioResult:
    return get_scenario(name).run()


def papers() -> list[dict[str, Any]]:
    """The ten seed papers with their scenario's name and status: 'runs' (`phasewise reproduce NAME`) or the
    issue that brings it (scenarios/data/papers.yaml)."""
    text = resources.files(__name__).joinpath("data", "papers.yaml").read_text()
    known = scenarios()
    out = []
    for paper in yaml.safe_load(text)["papers"]:
        runs = paper["scenario"] in known
        out.append({**paper, "status": "runs" if runs else f"not yet (issue {paper['issue']})"})
    return out


__all__ = ["Check", "Outcome", "Param", "Scenario", "ScenarioResult", "get_scenario", "papers", "parse_sets",
           "run_scenarios", "scenarios"]
