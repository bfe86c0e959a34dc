"""The plan command's pieces: its workload, the rich ranking table, and the winners' detail runs."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from phasewise.plan import PlanResult, WorkloadSpec
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import build_deployment


def render_plan(console: Console, result: PlanResult) -> None:
    slo = result.slo
    console.print(f"[bold]{result.model}[/] on up to {result.gpus} x {result.hardware}; {result.workload}; "
                  f"TTFT <= {slo.ttft_ms:g} ms and TPOT <= {slo.tbt_ms:g} ms for {result.target:.0%} of requests; "
                  f"{len(result.screened)} strategies simulated, {len(result.pruned)} pruned, "
                  f"{result.wall_s:.1f} s")
    table = Table(title=f"Top strategies by {result.objective} (goodput verified on the whole deployment: "
                        f"attainment there, at what share of the search's rate)", title_justify="left")
    for col in ("#", "strategy", "GPUs", "goodput req/s", "per GPU", result.objective, "TTFT p90 ms", "TPOT p90 ms",
                "tok/s/GPU", "verified", "binds"):
        table.add_column(col, justify="right" if col not in ("strategy", "binds") else "left")
    for r in result.rows():
        v, search = r["verified_attainment"], r["search_rps"]
        if math.isnan(v):
            verified = "-"
        elif r["goodput_rps"] <= 0:
            verified = "failed"
        else:
            verified = f"{v:.0%} at {r['goodput_rps'] / search:.0%}"
        table.add_row(str(r["rank"]), r["strategy"], str(r["gpus"]), f"{r['goodput_rps']:.2f}",
                      f"{r['goodput_rps_per_gpu']:.2f}", f"{r['objective']:.4g}", f"{r['ttft_p90_ms']:.0f}",
                      f"{r['tpot_p90_ms']:.1f}", f"{r['tokens_per_s_per_gpu']:,.0f}",
                      verified, r["binding"])
    console.print(table)
    front = result.pareto()
    if front:
        pareto = Table(title="Pareto front: output tokens/s per GPU vs tokens/s per user", title_justify="left")
        for col in ("tok/s/GPU", "tok/s/user", "rate req/s", "strategy"):
            pareto.add_column(col, justify="left" if col == "strategy" else "right")
        step = max(1, len(front) // 8)
        for p in front[::step]:
            pareto.add_row(f"{p['tokens_per_s_per_gpu']:,.0f}", f"{p['tokens_per_s_per_user']:.1f}",
                           f"{p['rate_rps']:.2f}", p["strategy"])
        console.print(pareto)


def winners_detail(result: PlanResult, work: WorkloadSpec, slo: Slo, count: int = 3) -> dict[str, SimResult]:
    """Re-simulate the top strategies at their goodput rate, with the utilization timeline recorded."""
    out: dict[str, SimResult] = {}
    for r in result.ranked[:count]:
        if r.goodput_rps <= 0:
            continue
        dep = build_deployment(r.strategy.deployment)
        n = int(max(500, r.goodput_rps * 30))
        out[r.strategy.name] = simulate(dep, work.at_rate(r.goodput_rps, n), slo, record_timeline=True)
    return out
