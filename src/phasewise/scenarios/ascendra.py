"""Ascendra-1: priority pools with proactive offload serve more requests within both SLOs than vLLM and
Sarathi-Serve on the same GPUs.

Four instances of an 8B model on A100-80GB take Poisson arrivals with Azure conversation-trace lengths
(PAPERS.md section 6). Three policies share the GPUs and the requests: vLLM V1 (FCFS, one token budget),
Sarathi-Serve (decode-first, 512-token chunks) and Ascendra (`priority_pools`: 3 low-priority instances
serving shortest prefill first, 1 high-priority instance with small chunks and batches, and a controller
that predicts each request's TTFT/TPOT with the instances' own cost model and moves those predicted to
miss to the HP pool). Each policy's goodput (the highest rate on a 1 % grid at which >= 90 % of requests meet
both SLOs, the next 10 grid rates above it all missing: GOODPUT) is found by bisection, then a scan of the grid,
over the same arrivals time-scaled to each rate; the offload fraction and the HP pool's TBT violations are read
from SimResult.policy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from phasewise.perf import BatchShape
from phasewise.plan import run_all
from phasewise.plan.goodput import highest_rate
from phasewise.scenarios.base import Check, Outcome, Param, Scenario, autoregressive, check_with, setup_error
from phasewise.sim import SimResult, Slo, simulate
from phasewise.sim.deployment import Deployment, build_deployment
from phasewise.sim.simulate import build_group
from phasewise.workload import Workload, load_trace, poisson_arrivals

POLICIES = ("vllm", "sarathi", "ascendra")
UNCHECKED = ("other_vllm", "lp_only")  # reported beside them: the other vLLM scheduler; the LP policy without HP

SETUP = {
    "model": Param("meta-llama/Meta-Llama-3-8B", "PAPERS.md section 6 (Ascendra-1): Llama-3-8B"),
    "hardware": Param("a100-sxm-80gb", "PAPERS.md section 6 (Ascendra-1): A100-80GB"),
    # at most 4 nodes of 8: each search's rates (and a simulation's instances) grow with the instances
    "instances": Param(4, "PAPERS.md section 6 (Ascendra-1): 4 instances, the same GPUs for every policy", upper=32),
    "hp_instances": Param(1, "PAPERS.md section 6 (Ascendra-1): 3 LP + 1 HP", help="fewer than instances"),
    "slo_ttft_ms": Param(1000.0, "PAPERS.md section 6 (Ascendra-1): TTFT SLO e.g. 1 s"),
    "slo_tpot_ms": Param(100.0, "PAPERS.md section 6 (Ascendra-1): TBT SLO e.g. 100 ms (on each request's TPOT)"),
    "attainment": Param(0.9, "PAPERS.md section 6 (Ascendra-1): >= 90 % of requests meet both SLOs", upper=1.0),
    "trace": Param("azure-conv", "PAPERS.md section 6 (Ascendra-1): Splitwise conversation trace lengths (bundled "
                   "Azure 2023 excerpt)", choices=("azure-conv", "azure-code")),
    # at most the bundled excerpt's 2,000 requests (more would silently be the whole excerpt)
    "requests": Param(1000, "assumed: 1,000 requests per simulation keep the whole run within seconds", upper=2000),
    "seed": Param(0, "assumed: any seed; the Poisson arrivals shared by every policy and rate"),
    "baseline_engine": Param("vllm-v0", "PAPERS.md section 6 (Ascendra-1): vLLM-like = prefill-first FCFS (vLLM V0's "
                             "scheduler, as the paper characterises vLLM); vllm = today's V1, reported beside it",
                             choices=("vllm-v0", "vllm")),
    # chunks of at least 64 tokens: a prompt's iterations grow as 1/chunk (64: 8x Sarathi's 512)
    "sarathi_chunk": Param(512, "PAPERS.md section 6 (Ascendra-1): Sarathi-like chunk 512", lower=64),
    "lp_token_budget": Param(0, "assumed: 0 = the largest power of two (>= 256) whose mixed LP iteration (64 "
                             "decodes beside it) the cost model times within 0.9 x the TBT SLO: under load every LP "
                             "decode step is such an iteration (1024 for Llama-3-8B on A100 at 100 ms)",
                             help="0 (auto) or at least the LP engine's max_num_seqs"),
    "hp_chunk": Param(256, "assumed: a small chunk for the HP pool (half Sarathi's 512; preset ascendra-hp)", lower=64),
    "hp_max_seqs": Param(64, "assumed: a small HP batch (preset ascendra-hp)"),
    "slack_margin_ms": Param(300.0, "assumed: offload when the predicted slack falls below 0.3 s (the prediction "
                             "ignores later arrivals, so it errs early)"),
    "rate_max_rps": Param(100.0, "assumed: top of the bisection bracket (doubled while it still attains)"),
    # at most 14 halvings (a simulation per policy each: twice the default's searches)
    "bisect_steps": Param(7, "assumed: 7 halvings of the bracket (within ~1 % of the rate at 100 req/s)", upper=14),
    # 3 rates at least (the offload trend is a rank correlation), 24 at most (3 simulations each: 4x the default's)
    "rate_grid": Param([0.5, 0.7, 0.85, 1.0, 1.15, 1.3], "assumed: rates as multiples of the baseline vLLM "
                       "goodput for the attainment-vs-rate curves and the offload trend", items=(3, 24)),
}
# Goodput, robust to attainment's noise near the target (1,000 requests: it wanders +-3 % around 90 % over a few
# percent of rate, so a bisection returns whichever crossing its path meets): the highest rate on a 1 % geometric grid
# (1.01^k req/s) at which >= `attainment` of the requests meet both SLOs, with the next STAY_BELOW grid rates above it
# (10 % more load) all below the target. The attainment figure's rates lie on the same grid.
GRID_RATIO = 1.01
STAY_BELOW = 10
SCAN_LIMIT = 200  # grid rates scanned from the bisection's rate at most (7.3x): where all attain, the highest of them
GOODPUT = (f"the highest rate on a {GRID_RATIO - 1:.0%} grid of rates at which the target share of requests meets "
           f"both SLOs, the next {STAY_BELOW} grid rates above it ({STAY_BELOW * (GRID_RATIO - 1):.0%} more load) all "
           "missing it")


def grid_rate(index: int) -> float:
    return GRID_RATIO ** index


def on_grid(rate: float) -> float:
    """The grid rate nearest `rate`."""
    return grid_rate(round(math.log(rate) / math.log(GRID_RATIO)))


# the engine flags each policy's groups take from the setup (sim/simulate.py names them as the CLI's)
GROUP_KEYS = {"lp": {"--max-num-batched-tokens": "--set lp_token_budget",
                     "--max-num-seqs": "the ascendra-lp engine's max_num_seqs"},
              "hp": {"--chunk-size": "--set hp_chunk", "--max-num-seqs": "--set hp_max_seqs"},
              "sarathi": {"--chunk-size": "--set sarathi_chunk"}}


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: an LP pool beside the HP one, and every policy's instances as the simulator builds them
    (its own checks, e.g. a token budget below the batch's sequences, with the --set keys named)."""
    autoregressive("ascendra", "model", setup["model"])
    if setup["hp_instances"] >= setup["instances"]:
        raise setup_error("ascendra", "hp_instances, instances", f"hp_instances {setup['hp_instances']} must be "
                          f"fewer than instances {setup['instances']} (the LP pool needs one at least)")
    probe = {**setup, "lp_token_budget": setup["lp_token_budget"] or 256}  # 0: sized at run time, from 256 up
    for policy in (*POLICIES, *UNCHECKED):
        dep = check_with("ascendra", {}, lambda policy=policy: deployment(policy, probe))
        for index, group in enumerate(dep.instances):
            names = GROUP_KEYS.get(group.pool or {"sarathi": "sarathi", "lp_only": "lp"}.get(policy, ""), {})
            check_with("ascendra", names, lambda group=group, index=index: build_group(dep, group, index))


class _Runs:
    """Every policy's runs on the same arrivals (unit-rate Poisson gaps time-scaled to each rate), memoised."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup, self.slo = setup, Slo(setup["slo_ttft_ms"], setup["slo_tpot_ms"])
        self.lengths = load_trace(setup["trace"], setup["requests"])
        # mean gap 1 s: divided by the rate (the workload layer's one Poisson formula, at rate 1)
        self.unit_arrivals = poisson_arrivals(np.random.default_rng(setup["seed"]), len(self.lengths), 1.0)
        self.deployments: dict[str, Deployment] = {}
        self.runs: dict[tuple[str, float], SimResult] = {}

    @staticmethod
    def key(policy: str, rate: float) -> tuple[str, float]:
        return policy, round(rate, 6)

    def __call__(self, policy: str, rate: float) -> SimResult:
        key = self.key(policy, rate)
        if key not in self.runs:
            if policy not in self.deployments:
                self.deployments[policy] = deployment(policy, self.setup)
            work = Workload(self.unit_arrivals / rate, self.lengths.prompt_tokens, self.lengths.output_tokens,
                            name=f"poisson@{rate:g}")
            self.runs[key] = simulate(self.deployments[policy], work, self.slo)
        return self.runs[key]

    def attains(self, policy: str, rate: float) -> bool:
        return float(self(policy, rate).attained().mean()) >= self.setup["attainment"]

    def goodput(self, policy: str) -> float:
        """GOODPUT (see there): bracket and bisect for a rate that attains, then scan the grid up from it."""
        setup = self.setup
        found = highest_rate(lambda rate: self.attains(policy, rate), setup["rate_max_rps"], setup["bisect_steps"])[0]
        if found <= 0.0:
            return 0.0
        start = math.floor(math.log(found) / math.log(GRID_RATIO) + 1e-9)  # the grid rate at or below it
        best, misses, index = None, 0, start
        while misses < STAY_BELOW and index < start + SCAN_LIMIT:
            if self.attains(policy, grid_rate(index)):
                best, misses = index, 0
            else:
                misses += 1
            index += 1
        index = start - 1
        while best is None and index > start - SCAN_LIMIT:  # every rate scanned missed: the first below that attains
            if self.attains(policy, grid_rate(index)):
                best = index
            index -= 1
        return grid_rate(best) if best is not None else 0.0


def _goodput(setup: dict[str, Any], policy: str) -> tuple[float, dict[str, Any]]:
    """The policy's goodput and, for Ascendra, its pools' figures at it (from the search's own run there)."""
    runs = _Runs(setup)
    rate = runs.goodput(policy)
    return rate, pool_figures(runs(policy, rate)) if policy == "ascendra" and rate > 0 else {}


def _run_at(setup: dict[str, Any], policy: str, rate: float) -> SimResult:
    return _Runs(setup)(policy, rate)


def run(setup: dict[str, Any]) -> Outcome:
    slo = Slo(setup["slo_ttft_ms"], setup["slo_tpot_ms"])
    if setup["lp_token_budget"] <= 0:
        setup["lp_token_budget"] = lp_budget(setup)
    # each policy's search, then the figures' runs: independent and deterministic, one process per core
    policies = (*POLICIES, *UNCHECKED)
    searched = dict(zip(policies, run_all(_goodput, [(setup, p) for p in policies])))
    goodput = {p: rate for p, (rate, _) in searched.items()}
    vllm, sarathi, ascendra = (goodput[p] for p in POLICIES)
    grid = [on_grid(x * vllm) for x in setup["rate_grid"]] if vllm > 0 else []
    sim = _Runs(setup)
    wanted = [(p, r) for p in POLICIES for r in grid]
    for (p, r), result in zip(wanted, run_all(_run_at, [(setup, p, r) for p, r in wanted])):
        sim.runs[sim.key(p, r)] = result
    at_goodput = searched["ascendra"][1]
    offload = [pool_figures(sim("ascendra", r)).get("offload_fraction", math.nan) for r in grid]
    trend = spearman(grid, offload)
    hp_tbt = at_goodput.get("hp_tbt_violation_fraction", math.nan)
    hp_served = at_goodput.get("hp_requests", 0)

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    checks = [
        Check("goodput vs vLLM", "Ascendra's goodput over vLLM's on the same GPUs and requests", [1.2, 1.7],
              ratio(ascendra, vllm), (1.2, 1.7),
              f"goodput {ascendra:.1f} vs {vllm:.1f} req/s ({setup['baseline_engine']}; {other_engine(setup)}: "
              f"{goodput['other_vllm']:.1f}, ratio {ratio(ascendra, goodput['other_vllm']):.2f}): "
              + ("shortest-prefill-first LP instances drain the queue faster and the HP pool takes the prompts they "
                 "would starve" if ascendra > vllm else
                 "Ascendra is not ahead here: the gain the paper names (shortest-prefill-first LP instances draining "
                 "the queue, the HP pool taking the prompts they would starve) does not show at this setup; the "
                 "goodput table lists every policy")),
        Check("goodput vs Sarathi", "Ascendra's goodput over Sarathi-Serve's on the same GPUs and requests",
              [1.2, 1.7], ratio(ascendra, sarathi), (1.2, 1.7),
              f"goodput {ascendra:.1f} vs {sarathi:.1f} req/s (Sarathi chunk {setup['sarathi_chunk']}): "
              + ("small chunks keep TBT low but cap each iteration's prefill tokens, so TTFT binds first"
                 if ascendra > sarathi else "Ascendra is not ahead of Sarathi's small chunks at this setup")),
        Check("HP TBT violations", "the HP pool shows ~0 TBT violations (share of requests it finished whose TPOT "
              "exceeds the TBT SLO, at Ascendra's goodput)", 0.0, hp_tbt, (0.0, 0.02),
              f"{at_goodput.get('hp_tbt_violations', 0)} of {hp_served} requests finished on HP: it takes a request "
              f"only when its own cost model predicts the deadline is met"),
        Check("offload rises with load", "offload fraction increases with the request rate (Spearman rank "
              "correlation over the rate grid)", 1.0, trend, (0.9, 1.0),
              "offload fractions " + ", ".join(f"{f:.1%}" for f in offload) + " at " +
              ", ".join(f"{r:.1f}" for r in grid) + " req/s: " + ("longer queues leave less slack" if trend >= 0.9
                                                               else "the fraction does not rise with every step of "
                                                               "the rate here")),
    ]
    compare = grid[len(grid) // 2] if grid else vllm
    figures = [attainment_figure(grid, sim, setup, goodput), offload_figure(grid, offload),
               cdf_figure(sim, compare, slo), utilization_figure(sim, compare, setup)] if grid else []
    table = {"title": f"Goodput (req/s, >= {setup['attainment']:.0%} of requests within both SLOs: {GOODPUT})",
             "columns": ["policy", "goodput req/s", "vs vLLM", "vs Sarathi"],
             "rows": [[label(p, setup), round(goodput[p], 2), round(ratio(goodput[p], vllm), 3),
                       round(ratio(goodput[p], sarathi), 3)] for p in (*POLICIES, *UNCHECKED)]}
    pools = {"title": f"Priority pools at Ascendra's goodput ({ascendra:.1f} req/s; LP token budget "
                      f"{setup['lp_token_budget']})",
             "columns": ["figure", "value"], "rows": [[k, v] for k, v in at_goodput.items()
                                                      if not isinstance(v, list)]}
    return Outcome(checks, figures, [table, pools])


LABELS = {"vllm": "vLLM", "sarathi": "Sarathi-Serve", "ascendra": "Ascendra"}
VLLM_NAMES = {"vllm-v0": "vLLM prefill-first (V0)", "vllm": "vLLM V1"}


def other_engine(setup: dict[str, Any]) -> str:
    """The vLLM scheduler not chosen as the baseline (reported beside it, not checked)."""
    return "vllm" if setup["baseline_engine"] == "vllm-v0" else "vllm-v0"


def label(policy: str, setup: dict[str, Any]) -> str:
    if policy == "vllm":
        return VLLM_NAMES[setup["baseline_engine"]] + " (baseline)"
    if policy == "other_vllm":
        return VLLM_NAMES[other_engine(setup)] + " (not checked)"
    if policy == "lp_only":
        return "shortest-prefill-first on every instance, no HP pool (ablation, not checked)"
    return LABELS[policy]


def deployment(policy: str, setup: dict[str, Any]) -> Deployment:
    common = {"hardware": setup["hardware"], "role": "collocated"}
    n, hp = setup["instances"], setup["hp_instances"]
    if policy == "ascendra":
        budget = setup["lp_token_budget"] if setup["lp_token_budget"] > 0 else lp_budget(setup)
        groups = [dict(common, pool="lp", engine="ascendra-lp", replicas=n - hp, max_num_batched_tokens=budget),
                  dict(common, pool="hp", engine="ascendra-hp", replicas=hp, chunk_size=setup["hp_chunk"],
                       max_num_seqs=setup["hp_max_seqs"])]
        extra = {"priority_pools": {"slack_margin_ms": setup["slack_margin_ms"]}}
    elif policy == "lp_only":
        budget = setup["lp_token_budget"] if setup["lp_token_budget"] > 0 else lp_budget(setup)
        groups, extra = [dict(common, engine="ascendra-lp", replicas=n, max_num_batched_tokens=budget)], {}
    elif policy == "sarathi":
        groups, extra = [dict(common, engine="sarathi", replicas=n, chunk_size=setup["sarathi_chunk"])], {}
    else:
        engine = setup["baseline_engine"] if policy == "vllm" else other_engine(setup)
        groups, extra = [dict(common, engine=engine, replicas=n)], {}
    return build_deployment({"model": setup["model"], "instances": groups, **extra}, f"ascendra scenario ({policy})")


def lp_budget(setup: dict[str, Any], decodes: int = 64, context: int = 1200) -> int:
    """The LP token budget sized to the TBT SLO by the instance's own cost model (see the setup's source)."""
    probe = {**setup, "lp_token_budget": 256}
    dep = deployment("ascendra", probe)
    cost = build_group(dep, dep.instances[0], 0)[0]
    budget = 256
    while budget < 16384:
        shape = BatchShape.uniform(decodes, 1, context)
        shape.add(2 * budget, 0)
        if cost.fast(shape)[0] * 1e3 > 0.9 * setup["slo_tpot_ms"]:
            break
        budget *= 2
    return budget


def pool_figures(result: SimResult) -> dict[str, Any]:
    return dict(result.policy.get("priority_pools", {}))


def spearman(x: list[float], y: list[float]) -> float:
    """Rank correlation (ties averaged); NaN when either side is constant or too short."""
    if len(x) < 3 or any(math.isnan(v) for v in y):
        return math.nan

    def ranks(v: list[float]) -> np.ndarray:
        arr = np.asarray(v, dtype=float)
        order = arr.argsort()
        r = np.empty(len(arr))
        r[order] = np.arange(len(arr), dtype=float)
        for value in np.unique(arr):
            tie = arr == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def attainment_figure(grid, sim, setup, goodput):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in POLICIES:  # each curve passes through its goodput (on the grid, as the curve's rates)
        rates = sorted({*grid, *([goodput[p]] if goodput[p] > 0 else [])})
        fig.add_trace(go.Scatter(x=rates, y=[float(sim(p, r).attained().mean()) for r in rates], mode="lines+markers",
                                 name=f"{label(p, setup)} (goodput {goodput[p]:.1f} req/s)"))
    fig.add_hline(y=setup["attainment"], line_dash="dash", annotation_text="goodput target")
    fig.update_layout(title="SLO attainment (TTFT and TPOT both met) vs request rate<br><sub>goodput: "
                      f"{GOODPUT}</sub>",
                      xaxis_title="request rate (req/s)", yaxis_title="share of requests within both SLOs",
                      yaxis_range=[0, 1.02])
    return fig


def offload_figure(grid, offload):
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=grid, y=offload, mode="lines+markers", name="offloaded to HP"))
    fig.update_layout(title="Ascendra: share of requests offloaded LP -> HP vs request rate",
                      xaxis_title="request rate (req/s)", yaxis_title="offload fraction", yaxis_tickformat=".0%")
    return fig


def cdf_figure(sim, rate, slo):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT", "TPOT"))
    for p in POLICIES:
        res = sim(p, rate)
        for col, values in ((1, res.ttft_s), (2, res.tpot_s)):
            x = np.sort(values[np.isfinite(values)] * 1e3)
            fig.add_trace(go.Scatter(x=x, y=np.arange(1, len(x) + 1) / max(len(x), 1), mode="lines", name=LABELS[p],
                                     legendgroup=p, showlegend=col == 1), row=1, col=col)
    fig.add_vline(x=slo.ttft_ms, line_dash="dash", row=1, col=1)
    fig.add_vline(x=slo.tpot_ms, line_dash="dash", row=1, col=2)
    fig.update_xaxes(type="log", title_text="ms")
    fig.update_yaxes(title_text="share of requests", row=1, col=1)
    fig.update_layout(title=f"Latency CDFs per policy at {rate:.1f} req/s (dashed: SLOs)")
    return fig


def utilization_figure(sim, rate, setup):
    import plotly.graph_objects as go

    fig = go.Figure()
    for p in POLICIES:
        s = sim(p, rate).summary()
        hp = set(s["policy"].get("priority_pools", {}).get("hp_instances", []))
        names = [f"{'HP' if i in hp else ('LP' if hp else 'inst')} {i}" for i in range(len(s["instances"]))]
        fig.add_trace(go.Bar(x=names, y=[inst["busy_fraction"] for inst in s["instances"]], name=LABELS[p]))
    fig.update_layout(title=f"Busy fraction per instance at {rate:.1f} req/s", barmode="group",
                      yaxis_title="busy fraction", yaxis_tickformat=".0%")
    return fig


SCENARIO = Scenario(
    name="ascendra", number=6, paper="Dynamic Request Prioritization for Efficient LLM Serving (Ascendra)",
    claim="priority pools with proactive offload reach 1.2-1.7x the goodput of vLLM and Sarathi-Serve on the same "
          "GPUs, with ~0 TBT violations on the HP pool and offloads rising with load",
    setup=SETUP, run_fn=run, validate=validate)
