"""The plan command's pieces: the rich ranking table (units in every header; fewer columns on a narrow
terminal, the objective column never truncated), the one line of an infeasible plan, and the winner's
verification run again with its utilization timeline (for the report)."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from phasewise.apps.cli_common import fit_to_width, render_caveats
from phasewise.plan import PlanResult, WorkloadSpec
from phasewise.plan.planner import OBJECTIVE_UNITS, verified_timeline
from phasewise.plan.strategies import ACROSS_NODES
from phasewise.sim import SimResult

WIDE_COLUMNS = 120  # assumed: below this many terminal columns the table drops its secondary columns


def _verified(r: dict) -> str:
    v, search = r["verified_attainment"], r["search_rps"]
    if math.isnan(v):
        return "-"
    if r["goodput_rps"] <= 0:
        return "failed"
    where = f" on {r['verified_units']}/{r['units']} units" if r["verified_units"] < r["units"] else ""
    return f"{v:.0%} at {r['goodput_rps'] / search:.0%}{where}"


def num_cell(x: float | None, fmt: str) -> str:
    """A table cell: `x` formatted, '-' where it is missing (None, NaN, infinite)."""
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def plan_table(result: PlanResult, width: int) -> Table:
    """The ranking: every column's unit in its header; under WIDE_COLUMNS wide, only rank, strategy (wrapped),
    GPUs, goodput, the objective, the p90 latencies and the binding phase."""
    wide = width >= WIDE_COLUMNS
    unit = OBJECTIVE_UNITS[result.objective]
    objective = f"{result.objective}\n({unit})"
    sliced = any(r.verified is not None and r.verified.sliced for r in result.ranked)
    where = "the whole deployment or a slice of its units" if sliced else "the whole deployment"
    table = Table(title=f"Top strategies by {result.objective}, goodput verified on {where}"
                        + (" (attainment there, at what share of the search's rate)" if wide else ""),
                  title_justify="left")
    # the figures whole (no_wrap), the strategy and what binds wrapped at their words
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("strategy", ratio=1, overflow="fold", min_width=12)
    table.add_column("GPUs", justify="right", no_wrap=True)
    table.add_column("goodput\nreq/s", justify="right", no_wrap=True)
    per_gpu = wide and result.objective != "goodput-per-gpu"
    if per_gpu:
        table.add_column("goodput\nreq/s/GPU", justify="right", no_wrap=True)
    table.add_column(objective, justify="right", no_wrap=True)
    table.add_column("TTFT p90\nms", justify="right", no_wrap=True)
    table.add_column("TPOT p90\nms", justify="right", no_wrap=True)
    tbt = math.isfinite(result.slo.max_tbt_ms)  # a TBT deadline (--slo-tbt-ms): the gaps its "binds" may name
    if tbt:
        table.add_column("TBT p99\nms", justify="right", no_wrap=True)
    if wide:
        table.add_column("tok/s/GPU", justify="right", no_wrap=True)
        table.add_column("verified", justify="right")
    table.add_column("binds", overflow="fold")
    for r in result.rows():
        cells = [str(r["rank"]), r["strategy"], str(r["gpus"]), f"{r['goodput_rps']:.2f}"]
        if per_gpu:
            cells.append(f"{r['goodput_rps_per_gpu']:.2f}")
        cells += [num_cell(r["objective"], ".4g"), num_cell(r["ttft_p90_ms"], ".0f"),
                  num_cell(r["tpot_p90_ms"], ".1f")]
        if tbt:
            cells.append(num_cell(r["tbt_p99_ms"], ".1f"))
        if wide:
            cells += [num_cell(r["tokens_per_s_per_gpu"], ",.0f"), _verified(r)]
        cells.append(r["binding"] if wide else r["binding"].split(" (")[0])
        table.add_row(*cells)
    fit_to_width(table, width, optional=("GPUs",))  # narrower than its figures: no padding, then no GPUs column
    return table


def render_plan(console: Console, result: PlanResult) -> None:
    slo = result.slo
    console.print(f"[bold]{result.model}[/] on up to {result.budget()}{result.memory_words()}; {result.workload}; "
                  f"{slo.describe()} for {result.target:.0%} of requests; "
                  f"{len(result.screened)} strategies simulated, {len(result.pruned)} pruned, "
                  f"{result.wall_s:.1f} s")
    across = [line for line in result.pruned if ACROSS_NODES in line]
    if across:  # the planner went beyond one node: say so, as the strategies' TP shows it
        console.print(across[0])
    console.print(plan_table(result, console.width))
    chips = result.best_per_chip()
    if len(chips) > 1:  # a plan across chips: its answer to "which GPU", one line
        unit = OBJECTIVE_UNITS[result.objective]
        console.print("best per chip: " + "; ".join(
            f"{chip} #{rank} {result.score(r):.4g} {unit} ({r.strategy.name.removeprefix(chip + ' ')})"
            for chip, rank, r in chips))
    sliced = [r for r in result.ranked if r.verified is not None and r.verified.sliced]
    if sliced:
        shown = ", ".join(f"#{result.ranked.index(r) + 1} {r.verified.units_simulated} of {r.verified.units}"
                          for r in sliced)
        console.print(f"verified on a slice of identical units behind the same router, receiving their share of the "
                      f"traffic ({shown} units; how far a slice stands for the fleet: benchmarks/plan_slice.py)")
    rows = [row for row in result.rows() if math.isfinite(row["prefix_hit_rate"])]
    routers = {row["deployment"]["router"] for row in rows}
    if rows:
        served = ", ".join(f"#{row['rank']} {row['prefix_hit_rate']:.1%}"
                           + (f" ({row['deployment']['router']})" if len(routers) > 1 else "") for row in rows)
        console.print(f"prefix caches served {served} of the prompt tokens in the verification runs"
                      + (f", behind router {routers.pop()}" if len(routers) == 1 else ""))
    beyond = host_tier_beyond_node(result.rows())
    if beyond:
        console.print(f"[yellow]host memory[/]: {beyond}")
    render_caveats(console, plan_caveats(result))
    front = result.pareto()
    if front:
        shown, step = front_rows(front)
        every = (f"; every {ordinal(step)} of its {len(front)} points and the last (--json and --report have all)"
                 if step > 1 else "")
        pareto = Table(title="Pareto front: output tokens/s per GPU vs tokens/s per user (the ranked strategies: "
                             "verified, their rows' figures; search, their refined searches below)" + every,
                       title_justify="left")
        for col in ("tok/s/GPU", "tok/s/user", "rate req/s"):
            pareto.add_column(col, justify="right")
        pareto.add_column("run")
        pareto.add_column("strategy", ratio=1, overflow="fold")
        for p in shown:
            pareto.add_row(f"{p['tokens_per_s_per_gpu']:,.0f}", f"{p['tokens_per_s_per_user']:.1f}",
                           f"{p['rate_rps']:.2f}", FRONT_RUNS.get(p.get("run", ""), p.get("run", "")), p["strategy"])
        console.print(pareto)


FRONT_ROWS = 16  # the printed Pareto front's most rows: past it, every Nth point and the last, the title says so
FRONT_RUNS = {"verification": "verified", "refined search": "search", "screening": "screening"}


def front_rows(front: list[dict]) -> tuple[list[dict], int]:
    """The Pareto front's points the console prints and the step between them: all of them (step 1) up to
    FRONT_ROWS, else every Nth (N the smallest keeping within FRONT_ROWS - 1) and the last: both ends of the front."""
    if len(front) <= FRONT_ROWS:
        return front, 1
    step = -(-len(front) // (FRONT_ROWS - 1))
    shown = front[::step]
    return (shown if shown[-1] is front[-1] else [*shown, front[-1]]), step


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def plan_caveats(result: PlanResult) -> dict[str, str]:
    """The caveats of the chips the ranked strategies run on (specs/hardware.py chip_caveats)."""
    from phasewise.specs.hardware import chip_caveats

    return chip_caveats(group["hardware"] for r in result.ranked for group in r.strategy.deployment["instances"])


def winner_timeline(result: PlanResult, work: WorkloadSpec) -> dict[str, SimResult]:
    """{winner's name: its verification run again, with the utilization timeline} (empty if none verified)."""
    res = verified_timeline(result, work, 1)
    return {result.ranked[0].strategy.name: res} if res is not None else {}


def host_tier_beyond_node(rows: list[dict]) -> str | None:
    """The ranked deployments whose --host-kv-cache-gb asks more host memory per GPU than their node has, and why
    (the first), or None."""
    from phasewise.sim.kv_tiers import beyond_node
    from phasewise.specs import load_hardware

    ranks, why = [], None
    for row in rows:
        for group in row["deployment"]["instances"]:
            host_bytes = group.get("host_kv_cache_bytes")
            if host_bytes:
                reason = beyond_node(load_hardware(group["hardware"]), host_bytes,
                                     group.get("tp", 1) * group.get("pp", 1))
                if reason:
                    ranks.append(f"#{row['rank']}")
                    why = why or reason
                    break
    return f"{', '.join(ranks)}: {why}" if ranks else None
