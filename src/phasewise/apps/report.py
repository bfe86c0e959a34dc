"""The plan's HTML report: one self-contained file (plotly.js inlined), no network needed to view it.

Sections: the ranked table, SLO attainment (goodput) vs request rate, TTFT and TPOT CDFs of the
top strategies, the Pareto front of throughput per GPU vs per-user token rate, the winner's
per-instance utilization over time, and each ranked strategy's deployment (YAML). A plan no strategy meets: the
verdict line the console prints, the closest strategy's figures, attainment curves and deployment, no ranking of
zeros and no empty charts.

Every latency figure comes from the runs the table comes from: each strategy's verification run on
the whole deployment (or, for a large fleet, a slice of its units at their share of the rate) at the goodput
shown (plan.verify); the timeline is the winner's verification
run again with the timeline recorded (deterministic: the same requests, checked).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from phasewise.apps.plan_view import num_cell, plan_caveats
from phasewise.apps.report_charts import COLORS, palette, quantile_curve
from phasewise.errors import PhasewiseError
from phasewise.plan.export import deployment_yaml
from phasewise.plan.goodput import GoodputResult
from phasewise.plan.planner import OBJECTIVE_UNITS, PlanResult
from phasewise.plan.windows import VERIFY_FACTORS
from phasewise.sim.metrics import SimResult

PRUNED_SHOWN = 50  # pruned lines listed open; the rest behind "and N more"


def _fig_html(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def _table(result: PlanResult) -> str:
    unit = OBJECTIVE_UNITS[result.objective]
    head = ("rank", "strategy", "GPUs", "goodput req/s", "goodput req/s/GPU", f"{result.objective} ({unit})",
            "TTFT p90 ms", "TPOT p90 ms", "TBT p99 ms", "tok/s/GPU", "verified", "why")
    ranked = result.rows()
    hits = any(math.isfinite(r["prefix_hit_rate"]) for r in ranked)  # a workload with prefix structure
    if hits:
        head = (*head[:10], "prefix hits % of prompt tokens", *head[10:])
    rows = []
    for r in ranked:
        v = r["verified_attainment"]
        if math.isnan(v):
            verified = "-"
        elif r["goodput_rps"] <= 0:
            verified = f"failed ({v:.1%} at {VERIFY_FACTORS[-1] * 100:.0f} % of {r['search_rps']:.2f})"
        else:
            verified = f"{v:.1%} at {r['goodput_rps'] / r['search_rps']:.0%} of {r['search_rps']:.2f}"
            if r["verified_units"] < r["units"]:
                verified += f" on {r['verified_units']} of {r['units']} units"
        cells = (r["rank"], r["strategy"], r["gpus"], f"{r['goodput_rps']:.2f}", f"{r['goodput_rps_per_gpu']:.2f}",
                 num_cell(r["objective"], ".4g"), num_cell(r["ttft_p90_ms"], ".0f"), num_cell(r["tpot_p90_ms"], ".1f"),
                 num_cell(r["tbt_p99_ms"], ".1f"), num_cell(r["tokens_per_s_per_gpu"], ",.0f"), verified, r["reason"])
        if hits:
            cells = (*cells[:10], "-" if math.isnan(r["prefix_hit_rate"]) else f"{r['prefix_hit_rate']:.1%}",
                     *cells[10:])
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table id=\"ranked\"><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _searched(result: PlanResult, name: str) -> GoodputResult | None:
    """The search result of the strategy named `name`: its refined one where it was refined, else its screening's."""
    return next((r for r in (*result.ranked, *result.screened) if r.strategy.name == name), None)


def _closest(result: PlanResult) -> str:
    """An infeasible plan's verdict: the line the console prints, and the closest strategy's figures (the point
    that came nearest: PlanResult.closest), in place of a ranking of zeros."""
    line = f"<p id=\"verdict\"><b>{html.escape(result.infeasible_line())}</b></p>"
    c = result.closest()
    if not c:
        return line
    head = ("closest strategy", "rate req/s", "SLO attainment", "TTFT attainment", "TPOT attainment", "TTFT p90 ms",
            "TPOT p90 ms", "binds")
    cells = (c["strategy"], f"{c['rate_rps']:.3g}", f"{c['attainment']:.1%}", f"{c['ttft_attainment']:.1%}",
             f"{c['tpot_attainment']:.1%}", num_cell(c["ttft_p90_ms"], ".0f"), num_cell(c["tpot_p90_ms"], ".1f"),
             c["binds"])
    return (line + "<table id=\"closest\"><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody><tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in cells)
            + "</tr></tbody></table>")


def _deployments(result: PlanResult) -> str:
    """Each ranked strategy's deployment, the YAML `plan --export` writes (simulate/serve --deployment read it); an
    infeasible plan's: the closest strategy's."""
    if not result.feasible:
        r = _searched(result, result.closest().get("strategy", ""))
        if r is None:
            return ""
        return (f"<details open><summary>closest: {html.escape(r.strategy.name)}</summary>"
                f"<pre>{html.escape(deployment_yaml(r.strategy.deployment))}</pre></details>")
    out = []
    for rank, r in enumerate(result.ranked, start=1):
        text = deployment_yaml(r.strategy.deployment)
        out.append(f"<details{' open' if rank == 1 else ''}><summary>{rank}. {html.escape(r.strategy.name)}"
                   f"</summary><pre>{html.escape(text)}</pre></details>")
    return "".join(out)


def _deployments_note(result: PlanResult) -> str:
    if not result.feasible:
        return ("The closest strategy's deployment (nothing to export: it does not meet the SLOs); "
                "<code>phasewise simulate --deployment</code> reads it unchanged.")
    return ("Each ranked strategy's deployment; <code>phasewise plan --export DIR [--rank N]</code> writes it with the "
            "engines' launch commands, and <code>phasewise simulate --deployment</code> / <code>serve --deployment"
            "</code> read it unchanged.")


def _pruned(lines: list[str]) -> str:
    """The pruned lines as a list: the first PRUNED_SHOWN open, the rest behind "and N more" (every one listed)."""
    items = [f"<li>{html.escape(p)}</li>" for p in lines]
    if len(items) <= PRUNED_SHOWN:
        return "".join(items) or "<li>none</li>"
    return ("".join(items[:PRUNED_SHOWN]) + f"<li><details><summary>and {len(items) - PRUNED_SHOWN} more</summary>"
            f"<ul>{''.join(items[PRUNED_SHOWN:])}</ul></details></li>")


def _timeline_title(result: PlanResult, name: str, sim: SimResult) -> str:
    """The timeline's title: the strategy, and where its verification ran on a slice of the deployment, which."""
    title = f"Roofline utilization per instance over time, max(compute, bandwidth): {name}"
    r = _searched(result, name)
    v = r.verified if r is not None else None
    if v is not None and v.sliced:
        title += (f"; its verification's slice, {v.units_simulated} of {v.units} units ({len(sim.instances)} "
                  "instances) at their share of the rate")
    return title


def write_report(result: PlanResult, timeline: dict[str, SimResult], path: str | Path, cdfs: int = 3,
                 fleets: str = "") -> Path:
    """Write the report: CDFs of the top `cdfs` strategies from their verification runs; `timeline` maps the
    winner's name to its verification run re-simulated with record_timeline=True (apps.plan_view.winner_timeline);
    `fleets`: plan --autoscale's section (apps.fleet_view.fleets_html), after the deployments."""
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise PhasewiseError("the HTML report needs plotly: pip install plotly") from None
    figs = []

    # 1. attainment vs rate
    fig = go.Figure()
    curves = list(result.ranked)
    closest = None if result.feasible else _searched(result, result.closest().get("strategy", ""))
    if closest is not None and all(closest is not r for r in curves):  # a strategy screened only came closest: its curve first
        curves.insert(0, closest)
    # each strategy its own colour, the same in every chart (the CDFs draw some of them)
    color = dict(zip((r.strategy.name for r in curves), palette(len(curves))))
    for r in curves:
        name = r.strategy.name
        xs = [c["rate_rps"] for c in r.curve]
        ys = [c["attainment"] for c in r.curve]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, legendgroup=name,
                                 line={"color": color[name]},
                                 marker={"symbol": ["x" if c.get("stopped") else "circle" for c in r.curve]}))
        if r.verified is not None:  # the table's goodput: its verification run (the whole deployment, or its slice)
            fig.add_trace(go.Scatter(x=[r.goodput_rps], y=[r.verified_attainment], mode="markers",
                                     name=f"{name} (verified)", showlegend=False, legendgroup=name,
                                     marker={"symbol": "star", "size": 14, "color": color[name]}))
    if any(r.verified is not None for r in curves):  # the stars' legend entry (each star its strategy's colour)
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="star: verified goodput (the table's)",
                                 marker={"symbol": "star", "size": 14, "color": "#888888"}))
    fig.add_hline(y=result.target, line_dash="dash", annotation_text=f"target {result.target:.0%}")
    fig.update_layout(title="SLO attainment vs request rate: the search on one unit (lines; x: a run stopped once "
                            "the target was out of reach, its attainment this or a little more) and the verification "
                            "run on the deployment (stars, the table's goodput)",
                      xaxis_title="request rate (req/s, whole deployment)", yaxis_title="SLO attainment",
                      yaxis_range=[0, 1.05], height=420)
    figs.append(("curves", fig))

    # 2. CDFs of the top strategies: their verification runs, the runs the table's percentiles come from
    verified = [r for r in result.ranked if r.verified is not None][:cdfs]
    for metric, label in (("ttft", "TTFT (ms)"), ("tpot", "TPOT (ms)")) if verified else ():  # none: no empty chart
        fig = go.Figure()
        for r in verified:  # each at CDF_POINTS quantiles, the table's p50 / p90 / p99 exactly (quantile_curve)
            x, y = quantile_curve(r.verified.ttft_ms if metric == "ttft" else r.verified.tpot_ms)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=r.strategy.name,
                                     line={"color": color[r.strategy.name]}))
        limit = result.slo.ttft_ms if metric == "ttft" else result.slo.tpot_ms
        if math.isfinite(limit):
            fig.add_vline(x=limit, line_dash="dash", annotation_text="SLO")
        fig.update_layout(title=f"{label.split(' ')[0]} CDF of the top strategies in their verification runs "
                                "(at the goodput shown; the table's p90s)", xaxis_title=label,
                          yaxis_title="fraction of requests", height=380)
        figs.append((f"cdf_{metric}", fig))

    # 3. Pareto front: over the runs the ranking reads (PlanResult.front_points), none of them screening only
    front = result.pareto()
    if front:
        fig = go.Figure()
        pts = [(c["tokens_per_s_per_user"], c["tokens_per_s_per_gpu"], f"{name} ({c['run']})")
               for name, c in result.front_points() if math.isfinite(c["tokens_per_s_per_user"])]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                                 name="simulated points (verified, refined search)", text=[p[2] for p in pts],
                                 marker={"color": "#bbbbbb", "size": 6}))
        fig.add_trace(go.Scatter(x=[p["tokens_per_s_per_user"] for p in front],
                                 y=[p["tokens_per_s_per_gpu"] for p in front], mode="lines+markers",
                                 name="Pareto front", text=[f"{p['strategy']} ({p['run']})" for p in front],
                                 line={"color": COLORS[1]}))
        fig.update_layout(title="Throughput per GPU vs per-user token rate: each ranked strategy's verification run "
                                "(its row's figures) and its refined search at lower rates",
                          xaxis_title="tokens/s per user (1 / TPOT)", yaxis_title="output tokens/s per GPU",
                          height=420)
        figs.append(("pareto", fig))

    # 3b. a plan across chips: each chip's best verified strategy by the objective
    chips = result.best_per_chip()
    if len(chips) > 1:
        fig = go.Figure(go.Bar(x=[chip for chip, _, _ in chips], y=[result.score(r) for _, _, r in chips],
                               text=[f"#{rank} {r.strategy.name}" for _, rank, r in chips], textposition="auto",
                               marker={"color": palette(len(chips))}))
        fig.update_layout(title=f"Each chip's best strategy by {result.objective} (verified on the deployment)",
                          xaxis_title="chip", yaxis_title=f"{result.objective} ({OBJECTIVE_UNITS[result.objective]})",
                          height=380)
        figs.append(("chips", fig))

    # 4. utilization timeline of the winner
    if timeline:
        name, sim = next(iter(timeline.items()))
        fig = go.Figure()
        end = float(np.nanmax(sim.finish_s)) if np.isfinite(sim.finish_s).any() else 0.0
        bins = np.linspace(0, max(end, 1e-9), 121)
        width = bins[1] - bins[0]
        for st, line in zip(sim.instances, palette(len(sim.instances))):
            used = np.zeros(len(bins) - 1)
            for start, dur, util, *_ in st.timeline:
                a, b = start, start + dur
                lo, hi = int(a // width), min(int(b // width), len(used) - 1)
                for k in range(lo, hi + 1):
                    used[k] += util * max(0.0, min(b, bins[k + 1]) - max(a, bins[k]))
            fig.add_trace(go.Scatter(x=bins[:-1], y=used / width, mode="lines", name=f"{st.name} ({st.role})",
                                     line={"color": line}))
        fig.update_layout(title=_timeline_title(result, name, sim),
                          xaxis_title="simulated time (s)", yaxis_title="utilization", yaxis_range=[0, 1.05],
                          height=380)
        figs.append(("timeline", fig))

    slo = result.slo
    ranked = (f"<h2>Ranked strategies</h2>\n{_table(result)}" if result.feasible
              else f"<h2>No strategy meets the SLOs</h2>\n{_closest(result)}")
    pruned = _pruned(result.pruned)
    caveats = "".join(f"<p class=\"meta\"><b>Caveat</b> {html.escape(chip)}: {html.escape(text)}</p>"
                      for chip, text in plan_caveats(result).items())
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>phasewise plan: {html.escape(result.model)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f3f3f3; }}
.meta {{ color: #555; }}
</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>phasewise plan</h1>
<p class="meta">{html.escape(result.model)} on up to {html.escape(result.budget() + result.memory_words())};
workload {html.escape(result.workload)}; SLOs {html.escape(slo.describe())}
for {result.target:.0%} of requests; objective {html.escape(result.objective)};
{len(result.screened)} strategies simulated, {len(result.pruned)} pruned; planned in {result.wall_s:.1f} s.</p>
{ranked}
{caveats}
<h2>{"Goodput, latency distributions, Pareto front, utilization" if result.feasible
     else "SLO attainment vs request rate"}</h2>
{''.join(_fig_html(f, name) for name, f in figs)}
<h2>Deployments</h2>
<p class="meta">{_deployments_note(result)}</p>
{_deployments(result)}
{fleets}
<h2>Pruned</h2><ul>{pruned}</ul>
</body></html>"""
    out = check_report_path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise PhasewiseError(f"--report '{path}': cannot write ({exc.strerror})") from None
    return out


def check_report_path(path: str | Path) -> Path:
    """`--report PATH` checked before the search (as --export is), not after its minutes: plan/export.py
    check_output_path's rule (no folder in its place, no file on its way, the nearest folder that exists writable;
    '~' expanded: the path returned is the one written). Folders on the way that do not exist yet are created when
    the report is written (as --export and sweep --out create theirs; new_folders says which)."""
    from phasewise.plan.export import check_output_path

    if Path(path).expanduser().is_dir():
        raise PhasewiseError(f"--report '{path}': cannot write, it is a directory (give a file path, e.g. "
                             f"{Path(path) / 'report.html'})")
    return check_output_path(f"--report '{path}'", path)


def new_folders(path: str | Path) -> list[Path]:
    """The folders writing `path` creates (those on its way that do not exist yet), outermost first."""
    missing = []
    folder = Path(path).expanduser().parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]
