"""`phasewise sweep config.yaml`: every strategy's goodput search (or, `fidelity: verified`, the goodput plan
verifies) over a grid of models x hardware x workloads, one row per (model, hardware, workload, strategy) to CSV or
Parquet.

    models: [meta-llama/Llama-3.1-8B, Qwen/Qwen3-8B]
    hardware: [h100-sxm, a100-sxm-80gb]
    gpus: 8
    workloads:
      - {name: conv, trace: azure-conv}
      - {name: short, isl: 512, osl: 128}
      - {name: photos, isl: 200, osl: 128, images_per_request: 1, image_size: 1280x720}   # multimodal models
      - {name: lmm, trace: lmm.csv, image_size: 1280x720}   # a trace with a NumImages column: its counts
    slo: {ttft_ms: 1000, tpot_ms: 50}
    attainment: 0.9
    strategies: {tp_options: [1, 2], chunk_sizes: [512], disaggregated: false}
    fidelity: screen          # screen (fast) | refine (longer searches) | verified (plan's figures: slow)

`screen` and `refine` stop at the search's answer on one unit, which plan's verification on the whole deployment
often refuses or moves: their rate columns are named search_* (search_rps, search_rps_per_gpu, ...), never goodput_*.
`verified` gives each strategy the goodput `plan` ranks it by (screened, refined, then verified on fresh seeds:
verification.py), in goodput_* columns with that verification's latencies, at plan's cost per strategy (7 to 36 times
a screening's time on the 1- and 8-GPU grids timed). The strategy options default as plan's flags do (without
batch_caps the engine's own sequence cap is tried too: strategies.engine_default_cap).

With `strategies: {policies: [encoders]}` the strategies with encode workers (+NE) run on the workloads that
carry images only.

Here: the run (run_sweep) and plan's figures of one strategy (plan_figures, run in a worker). Its parts: the config
file (sweep_config.py), the workloads and the cells they cannot run (sweep_workloads.py), the strategy options
(sweep_options.py), the grid's names (sweep_grid.py), the rows (sweep_rows.py), --out (sweep_output.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.plan.backends import run_all
from phasewise.plan.goodput import GoodputResult, WorkloadSpec, capacity_estimate, evaluate, searched_units
from phasewise.plan.planner import take_verification, verify
from phasewise.plan.strategies import NoStrategyFits, Strategy, enumerate_strategies
from phasewise.plan.strategy_policies import with_planned_slos
from phasewise.plan.sweep_config import SweepConfig, SweepSlo, SweepWorkload, load_sweep  # noqa: F401 (re-exported)
from phasewise.plan.sweep_grid import _check_grid, _check_names, model_identity  # noqa: F401 (re-exported)
from phasewise.plan.sweep_options import (  # noqa: F401 (importable here, as before)
    _PLAN_OPTIONS,
    SIZE_LISTS,
    _check_ranges,
    _options,
    _refuse_flags,
    sweep_key,
    sweep_words,
)
from phasewise.plan.sweep_output import check_out, write_rows  # noqa: F401 (re-exported)
from phasewise.plan.sweep_rows import (  # noqa: F401 (importable here, as before)
    _PLAN_FIGURES,
    _VERIFICATION,
    _cluster_figures,
    _per_joule,
    _row,
    searched,
)
from phasewise.plan.sweep_workloads import (  # noqa: F401 (importable here, as before)
    _IMAGE_KEYS,
    _cells_refused,
    _check_model,
    _entry,
    _keyed,
    _workloads,
    sweep_field,
)
from phasewise.plan.windows import REFINE, SCREEN, refine_anchor_rps, search_task
from phasewise.sim import Slo


def run_sweep(cfg: SweepConfig, backend: str = "local", workers: int | None = None, ray_address: str | None = None,
              progress: Callable[[str, int, int], Callable[[int], None]] | None = None) -> list[dict[str, Any]]:
    """One row per (model, hardware, workload, strategy): plan's figures (`fidelity: verified`), or the search's
    answer on one unit, its rate columns named search_* (`screen`, `refine`)."""
    opts = _options(cfg)
    slo = Slo(cfg.slo.ttft_ms, cfg.slo.tpot_ms, cfg.slo.tbt_ms)
    if not any(math.isfinite(v) for v in (slo.ttft_ms, slo.tpot_ms, slo.max_tbt_ms)):  # as plan refuses
        raise PhasewiseError("sweep needs at least one SLO: slo.ttft_ms, slo.tpot_ms or slo.tbt_ms (without one a "
                             "'goodput' is only the capacity)")
    verified = cfg.fidelity == "verified"
    settings = SCREEN if cfg.fidelity == "screen" else REFINE
    jobs: list[tuple[dict[str, Any], tuple]] = []
    unfit: list[tuple[dict[str, Any], str]] = []  # (model, chip, workload) cells with no strategy, and why
    _check_names(cfg, opts)
    works = _workloads(cfg)
    refused = _cells_refused(cfg, works)  # each workload on each model, then the options, before any simulation
    _check_grid(cfg, opts)
    routed = False  # whether the search of any job routes (several routers: _routes)
    for model in cfg.models:
        for hw in cfg.hardware:
            try:
                strategies, _ = enumerate_strategies(model, hw, cfg.gpus, opts, name=sweep_words)
                strategies = with_planned_slos(strategies, slo)
            except NoStrategyFits as exc:  # one cell of the grid (a model too large, an engine the chip lacks)
                unfit += [({"model": model, "hardware": hw, "workload": w.name}, refused.get((model, index), str(exc)))
                          for index, w in enumerate(cfg.workloads)]
                continue
            for index, (w, work) in enumerate(zip(cfg.workloads, works)):
                if (model, index) in refused:  # a workload the model cannot run (images beside a text model)
                    unfit.append(({"model": model, "hardware": hw, "workload": w.name}, refused[model, index]))
                    continue
                for s in strategies:
                    if s.deployment.get("encoders") and work.images is None:
                        continue  # encode workers beside a text workload: nothing for them to do
                    if not verified and len(opts.routers) > 1:
                        if not _routes(s, work):
                            if s.details.get("router", opts.routers[0]) != opts.routers[0]:
                                continue  # the search sees no router: its row once, behind the first (as a lone
                                # instance's in plan: behind_each_router)
                        else:
                            routed = True
                    task = (s, work, slo, cfg.attainment) if verified else search_task(
                        settings, s, work, slo, cfg.attainment, capacity_estimate(s, work))
                    jobs.append(({"model": model, "hardware": hw, "workload": w.name}, task))
    if not verified and len(opts.routers) > 1 and jobs and not routed:
        raise PhasewiseError(f"{cfg._source}: {sweep_key('routers')} compares {', '.join(opts.routers)}, which a "
                             f"fidelity {cfg.fidelity} search never sees: it simulates one unit of each strategy, "
                             "here one instance per group with nothing to route (plan compares routers by its "
                             "verification on the whole deployment): set fidelity: verified, or name one router")
    tick = progress("sweeping", 0, len(jobs)) if progress else None
    results = run_all(plan_figures if verified else evaluate, [j[1] for j in jobs], backend, workers, ray_address,
                      tick)
    rows = [_row(cfg, key, r, slo, verified) for (key, _), r in zip(jobs, results)]
    if unfit and not rows:
        raise NoStrategyFits(f"no cell of the sweep has a strategy ({unfit[0][0]['model']} on "
                             f"{unfit[0][0]['hardware']}: {unfit[0][1]})")
    for key, why in unfit:  # a row of its own with the reason, goodput 0: the grid stays whole
        rows.append({**dict.fromkeys(rows[0], math.nan), **key, "strategy": "", "kind": "none", "gpus": 0,
                     "goodput_rps": 0.0, "goodput_rps_per_gpu": 0.0, "binding": why, "simulations": 0,
                     **({"reason": why} if verified else {})})
    return rows if verified else [searched(row) for row in rows]


def _routes(strategy: Strategy, work: WorkloadSpec) -> bool:
    """Whether the search (goodput.evaluate) simulates a group of more than one instance, for a router to choose
    among (the units it simulates: goodput.searched_units)."""
    units = searched_units(strategy, work)
    return any(group.get("replicas", 1) * units > 1 for group in strategy.unit["instances"])


def plan_figures(strategy: Strategy, work: WorkloadSpec, slo: Slo, target: float) -> GoodputResult:
    """The strategy's goodput as `plan` ranks it (planner.plan's refine_and_verify): screened, refined from the
    screening's probes, then verified on the whole deployment (or its slice) on fresh seeds (verification.verify); the
    refined search's answer kept as search_rps. Runs in a worker process."""
    screened = evaluate(*search_task(SCREEN, strategy, work, slo, target, capacity_estimate(strategy, work)))
    r = evaluate(*search_task(REFINE, strategy, work, slo, target, refine_anchor_rps(screened), screened.probes))
    take_verification(r, *verify(strategy, r.goodput_rps, work, slo, target, r.search_units))
    r.probes = {}  # the search's summaries: not sent back from the worker (no row reads them)
    return r
