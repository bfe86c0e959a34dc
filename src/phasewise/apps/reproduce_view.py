"""`phasewise reproduce`: the scenarios listed, one run's checks, or every run's checks in one table."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from phasewise.scenarios import Scenario, ScenarioResult


def figure(value: Any) -> str:
    """A check's figure as the table prints it: a number, a [lo, hi] range, or '-'."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(figure(v) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render_list(console: Console, papers: list[dict[str, Any]], scenarios: dict[str, Scenario]) -> None:
    table = Table(title="The ten papers (phasewise reproduce NAME [--set key=value ...]; --all runs every one; "
                        "NAME --help-setup: each key's default, allowed values and source)")
    for col in ("#", "paper", "scenario", "status", "claim rerun", "setup keys (--set key=value)"):
        table.add_column(col, overflow="fold")
    for paper in papers:
        scenario = scenarios.get(paper["scenario"])
        table.add_row(str(paper["number"]), f"{paper['short']}: {paper['title']}", paper["scenario"],
                      paper["status"], scenario.claim if scenario else "-",
                      ", ".join(scenario.setup) if scenario else "-")
    console.print(table)


def setup_rows(scenario: Scenario) -> list[dict[str, Any]]:
    """Each setup key of a scenario: its default, the values `--set` takes, where the default comes from and what
    it sets (Param.help, where given); then the paper's figures and bands that are not setup keys."""
    rows = [{"key": key, "default": p.value, "allowed": p.allowed(), "source": p.source, "help": p.help}
            for key, p in scenario.setup.items()]
    return rows + [{"key": key, "default": None, "allowed": "fixed: the paper's (not a setup key)", "source": what,
                    "help": ""} for key, what in scenario.fixed.items()]


def render_setup(console: Console, scenario: Scenario) -> None:
    table = Table(title=f"phasewise reproduce {scenario.name} --set key=value: the setup keys")
    for col in ("key", "default", "allowed", "source / help"):
        table.add_column(col, overflow="fold")
    for row in setup_rows(scenario):
        default = row["default"]
        shown = "-" if default is None else (", ".join(map(str, default)) if isinstance(default, (list, tuple))
                                             else str(default))
        table.add_row(row["key"], shown, row["allowed"], row["source"] + (f" ({row['help']})" if row["help"] else ""))
    console.print(table)


def render_checks(console: Console, results: list[ScenarioResult]) -> None:
    table = Table(title="phasewise reproduce")
    for col in ("scenario", "check", "paper", "phasewise", "band", "pass"):
        table.add_column(col, overflow="fold")
    for r in results:
        for c in r.outcome.checks:
            table.add_row(r.scenario.name, c.name, figure(c.paper), figure(c.phasewise), figure(list(c.band)),
                          "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    console.print(table)
    for r in results:
        console.print(f"[bold]{r.scenario.name}[/] ({r.wall_s:.1f} s): {r.scenario.paper}")
        for c in r.outcome.checks:
            console.print(f"  {'pass' if c.passed else 'FAIL'}  {c.name}: {c.why}", soft_wrap=True)
