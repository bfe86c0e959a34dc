"""`phasewise reproduce`: rerun a paper's comparison (scenarios/) and hold phasewise's figures against the paper's."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from phasewise.apps.cli_common import Json, app, console
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError


@app.command("reproduce")
def reproduce_cmd(
    name: Annotated[Optional[str], typer.Argument(help="scenario to run (none: list them)")] = None,
    run_all: Annotated[bool, typer.Option("--all", help="run every scenario; one table of all checks")] = False,
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="override a setup parameter: key=value")] = None,
    json_out: Json = False,
    report: Annotated[Optional[str], typer.Option(help="write the scenario's HTML report here")] = None,
    help_setup: Annotated[bool, typer.Option("--help-setup", help="list NAME's setup keys (default, allowed values, "
                                                                  "source) and run nothing")] = False,
) -> None:
    """Rerun a paper's comparison and hold phasewise's figures against the paper's (../shared/SCENARIOS.md)."""
    from phasewise.apps.reproduce_view import render_checks, render_list, render_setup, setup_rows
    from phasewise.scenarios import get_scenario, papers, parse_sets, run_scenarios, scenarios

    overrides = parse_sets(sets)
    if help_setup:
        if name is None or run_all or overrides or report:
            raise PhasewiseError("--help-setup lists one scenario's setup keys: give its NAME alone")
        scenario = get_scenario(name)
        if json_out:
            print(dumps({"scenario": scenario.name, "setup": setup_rows(scenario)}))
        else:
            render_setup(console, scenario)
        return
    if run_all and name is not None:
        raise PhasewiseError("give either a scenario NAME or --all, not both")
    if name is None and not run_all:
        if overrides or report:
            raise PhasewiseError("--set and --report need a scenario NAME (or --all for --set-free runs)")
        known, listed = scenarios(), papers()
        if json_out:
            print(dumps([{"number": p["number"], "paper": p["title"], "scenario": p["scenario"], "status": p["status"],
                          "claim": known[p["scenario"]].claim if p["scenario"] in known else None,
                          "setup": list(known[p["scenario"]].setup) if p["scenario"] in known else []}
                         for p in listed]))
        else:
            render_list(console, listed, known)
        return
    if run_all:
        if overrides:
            raise PhasewiseError("--set applies to one scenario's setup; run it by NAME")
        if report:
            raise PhasewiseError("--report writes one scenario's report; run it by NAME")
    else:
        scenario = get_scenario(name)
        scenario.resolve(overrides)  # bad keys and values fail before anything runs
        if report:  # the report's path, before the run (not after its seconds)
            from phasewise.apps.report import check_report_path

            check_report_path(report)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=json_out) as bar:
        if run_all:
            names = list(scenarios())
            task = bar.add_task("scenarios (one process per core)", total=len(names))
            results = run_scenarios(names, progress=lambda k: bar.advance(task, k))
        else:
            bar.add_task(f"reproduce {name}", total=None)  # (elapsed time while it runs)
            results = [scenario.run(overrides)]
    if report:
        from phasewise.apps.scenario_report import write_scenario_report

        write_scenario_report(results[0], report)
    passed = all(r.passed for r in results)
    if json_out:
        print(dumps(results[0].to_json() if not run_all else
                    {"scenarios": [r.to_json() for r in results], "pass": passed}))
    else:
        render_checks(console, results)
        if report:
            console.print(f"report: {report}")
    if not passed:
        raise typer.Exit(1)
