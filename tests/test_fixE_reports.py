"""The reports of alchemist, ascendra and jupiter agree with their checks; device-cloud refuses flags its setup file
replaces; priority pools bound their class SLOs and find the trace's priority column."""

from __future__ import annotations

import pytest

from phasewise.scenarios import get_scenario


# --- alchemist: the memory figure and table show the run the memory check compares ---------------------------------
@pytest.fixture(scope="module")
def alchemist():
    return get_scenario("alchemist").run({"sweep_shares": "0.2", "requests": "600"})


def test_alchemist_memory_figure_and_table_show_the_checked_run(alchemist):
    check = next(c for c in alchemist.to_json()["checks"] if c["name"] == "peak training memory (offload vs recompute)")
    memory = next(f for f in alchemist.outcome.figures if f.layout.title.text == "Peak training memory per GPU")
    totals = {}
    for bar in memory.data:
        for label, gib in zip(bar.x, bar.y):
            totals[label] = totals.get(label, 0.0) + gib
    checked = [label for label in totals if "every layer offloaded" in label]
    assert len(checked) == 1, list(totals)
    assert totals[checked[0]] / totals["recompute"] == pytest.approx(check["phasewise"], rel=1e-9)
    hedged = [label for label in totals if label.startswith("offload (") and "layers kept on the GPU" in label]
    assert len(hedged) == 1, list(totals)  # the plotted offload run says how many layers it kept
    table = alchemist.outcome.tables[0]
    rows = {row[0]: row for row in table["rows"]}
    column = table["columns"].index("peak training GiB")
    assert rows[checked[0]][column] / rows["recompute"][column] == pytest.approx(check["phasewise"], abs=0.01)
