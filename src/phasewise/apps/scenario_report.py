"""A scenario's HTML report: one self-contained file (plotly.js inlined): the paper and claim, the
checks (paper's figure, phasewise's, band, pass, why), the setup with each value's source, the plots
the scenario made (the comparison as the paper shows it) and its tables."""

from __future__ import annotations

import html
from pathlib import Path

from phasewise.apps.reproduce_view import figure
from phasewise.errors import PhasewiseError
from phasewise.plan.export import check_output_path
from phasewise.scenarios import ScenarioResult


def _table(columns: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_scenario_report(result: ScenarioResult, path: str | Path) -> Path:
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise PhasewiseError("the HTML report needs plotly: pip install plotly") from None
    s, out = result.scenario, result.outcome
    checks = _table(["check", "claim", "paper", "phasewise", "band", "pass", "why"],
                    [[c.name, c.claim, figure(c.paper), figure(c.phasewise), figure(list(c.band)),
                      "pass" if c.passed else "FAIL", c.why] for c in out.checks])
    setup = _table(["parameter", "value", "source"],
                   [[k, figure(result.setup[k]), p.source] for k, p in s.setup.items()])
    plots = []
    for i, fig in enumerate(out.figures):
        fig = fig if isinstance(fig, go.Figure) else go.Figure(fig)
        plots.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{i}",
                                 config={"displaylogo": False, "responsive": True}))
    tables = "".join(f"<h3>{html.escape(t['title'])}</h3>" + _table(t["columns"], t["rows"]) for t in out.tables)
    verdict = "every check passes" if result.passed else "some checks fail"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>phasewise reproduce {html.escape(s.name)}</title>
<script>{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}}th{{background:#f4f4f4}}</style>
</head><body>
<h1>{html.escape(s.paper)}</h1>
<p><b>phasewise reproduce {html.escape(s.name)}</b>: {html.escape(s.claim)}. {verdict} ({result.wall_s:.1f} s).</p>
<h2>Checks</h2>{checks}
<h2>Figures</h2>{''.join(plots) or '<p>none</p>'}
{'<h2>Tables</h2>' + tables if tables else ''}
<h2>Setup</h2>{setup}
</body></html>"""
    given = path
    path = check_output_path(f"--report '{given}'", given)  # '~' expanded as the check before the run reads it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the folders on its way, as plan --report makes them
        path.write_text(page)
    except OSError as exc:
        raise PhasewiseError(f"--report '{given}': cannot write ({exc.strerror})") from None
    return path
