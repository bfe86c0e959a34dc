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
    table = Table(title="The ten papers (phasewise reproduce NAME [--set key=value ...]; --all runs every one)")
    for col in ("#", "paper", "scenario", "status", "claim rerun"):
        table.add_column(col, overflow="fold")
    for paper in papers:
        scenario = scenarios.get(paper["scenario"])
        table.add_row(str(paper["number"]), f"{paper['short']}: {paper['title']}", paper["scenario"],
                      paper["status"], scenario.claim if scenario else "-")
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
