"""`plan --autoscale`'s table of fleets over the replayed trace (plan/fleet.py), its one-line answer, and the
answer's deployment file for --export."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from phasewise.errors import PhasewiseError
from phasewise.plan.export import deployment_yaml
from phasewise.plan.fleet import FleetPlan, FleetRun


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def answer_line(fleets: FleetPlan) -> str:
    """The fleet with the fewest GPU-hours within the SLOs, against its strategy's smallest fixed fleet."""
    best = fleets.best()
    if best is None:
        return (f"no fleet meets the SLOs for {fleets.target:.0%} of the requests over the trace (the largest fixed "
                f"fleets' attainment is in the table)")
    line = (f"fewest GPU-hours within the SLOs: {best.strategy}, {best.fleet} ({best.detail}): "
            f"{best.gpu_hours:.3g} GPU-h, ${best.cost_usd:,.2f}, {best.mean_gpus:.2f} GPUs on average")
    fixed = fleets.fixed(best.strategy)
    if best.fleet != "fixed" and fixed is not None and fixed.meets and fixed.gpu_hours > 0:
        line += (f", {best.gpu_hours / fixed.gpu_hours - 1:+.0%} GPU-h against its smallest fixed fleet "
                 f"({fixed.detail}, {fixed.gpu_hours:.3g} GPU-h)")
    return line


def fleet_table(fleets: FleetPlan) -> Table:
    table = Table(title=f"Fleets over the whole trace ({fleets.workload}; {fleets.requests:,} requests over "
                        f"{fleets.span_s:,.0f} s at {fleets.rate_rps:.2f} req/s), fixed with hindsight or "
                        f"autoscaled", title_justify="left")
    for name, justify in (("strategy", "left"), ("fleet", "left"), ("settings", "left"), ("GPUs\nmean", "right"),
                          ("GPUs\npeak", "right"), ("GPU-h", "right"), ("$", "right"), ("SLO\nattained", "right"),
                          ("TTFT p90\nms", "right"), ("TPOT p90\nms", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    best = fleets.best()
    for run in fleets.runs:
        style = "bold green" if run is best else ("dim" if run.note or run.never_scaled else None)
        settings = run.note if run.note else run.detail
        table.add_row(run.strategy, run.fleet, settings, _num(run.mean_gpus, ".2f"), _num(run.peak_gpus, ".0f"),
                      _num(run.gpu_hours, ".3g"), _num(run.cost_usd, ",.2f"),
                      _num(run.attainment, ".1%") if not run.note else "-", _num(run.ttft_p90_ms, ".0f"),
                      _num(run.tpot_p90_ms, ".1f"), style=style)
    return table


def fleets_json(fleets: FleetPlan) -> dict:
    best = fleets.best()
    return {"workload": fleets.workload, "rate_rps": fleets.rate_rps, "requests": fleets.requests,
            "span_s": fleets.span_s, "runs": fleets.rows(), "best": None if best is None else fleets.rows()[
                fleets.runs.index(best)], "answer": answer_line(fleets)}


def render_fleets(console: Console, fleets: FleetPlan) -> None:
    console.print(fleet_table(fleets))
    console.print(answer_line(fleets))


def fleets_html(fleets: FleetPlan) -> str:
    """The report's section: the fleets' table, the answer, and GPU-hours against attainment (one point a fleet,
    the --attainment line across)."""
    import html

    import plotly.graph_objects as go

    head = ("strategy", "fleet", "settings", "GPUs mean", "GPUs peak", "GPU-h", "$", "SLO attained", "TTFT p90 ms",
            "TPOT p90 ms")
    rows = []
    for run in fleets.runs:
        cells = (run.strategy, run.fleet, run.note or run.detail, _num(run.mean_gpus, ".2f"),
                 _num(run.peak_gpus, ".0f"), _num(run.gpu_hours, ".3g"), _num(run.cost_usd, ",.2f"),
                 "-" if run.note else _num(run.attainment, ".1%"), _num(run.ttft_p90_ms, ".0f"),
                 _num(run.tpot_p90_ms, ".1f"))
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    fig = go.Figure()
    for fleet in dict.fromkeys(r.fleet for r in fleets.runs):
        runs = [r for r in fleets.runs if r.fleet == fleet and not r.note]
        fig.add_trace(go.Scatter(x=[r.gpu_hours for r in runs], y=[r.attainment for r in runs], mode="markers",
                                 name=fleet, text=[f"{r.strategy}: {r.detail}" for r in runs]))
    fig.add_hline(y=fleets.target, line_dash="dot", annotation_text="--attainment")
    fig.update_layout(title="Fleets over the trace: GPU-hours against the share of requests within the SLOs",
                      xaxis_title="GPU-hours", yaxis_title="SLO attainment", yaxis_tickformat=".0%", height=420)
    chart = fig.to_html(full_html=False, include_plotlyjs=False, div_id="fleets",
                        config={"displaylogo": False, "responsive": True})
    return (f"<h2>Fleets over the whole trace</h2><p class=\"meta\">{html.escape(fleets.workload)}: "
            f"{fleets.requests:,} requests over {fleets.span_s:,.0f} s at {fleets.rate_rps:.2f} req/s; fixed with "
            f"hindsight or autoscaled (<code>plan --autoscale</code>).</p><table id=\"fleets-table\"><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows)
            + f"</tbody></table><p>{html.escape(answer_line(fleets))}</p>{chart}")


def write_fleet(fleets: FleetPlan, directory: str | Path) -> Path:
    """--export with --autoscale: the answer's fleet (fewest GPU-hours) deployment, its autoscale blocks with it, as
    fleet.yaml, which `simulate --deployment` reads (`serve` too when it is the fixed fleet: the twin serves a fixed
    deployment, one process a replica under a real autoscaler)."""
    best: FleetRun | None = fleets.best()
    if best is None:
        raise PhasewiseError("--export with --autoscale writes the fleet with the fewest GPU-hours within the SLOs: "
                             "none met them")
    header = ["phasewise plan --autoscale: the fleet with the fewest GPU-hours within the SLOs over the trace",
              f"{best.strategy}, {best.fleet} ({best.detail}); {fleets.workload} at {fleets.rate_rps:.2f} req/s",
              f"{best.mean_gpus:.2f} GPUs on average (peak {best.peak_gpus:.0f}), {best.gpu_hours:.3g} GPU-h, "
              f"{best.attainment:.1%} of requests within the SLOs"]
    path = Path(directory) / "fleet.yaml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(deployment_yaml(best.deployment, header), encoding="utf-8")
    except OSError as exc:
        raise PhasewiseError(f"--export '{directory}': cannot write ({exc.strerror})") from None
    return path
