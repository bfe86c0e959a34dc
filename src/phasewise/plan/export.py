"""A ranked strategy as a deployment YAML: the file `simulate --deployment` and `serve --deployment` read
unchanged (sim/deployment.py's fields), headed by comment lines saying what the plan found for it."""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput import GoodputResult
from phasewise.plan.planner import PlanResult


def pick(result: PlanResult, rank: int) -> GoodputResult:
    """The rank-th strategy of the ranking (1 = the winner); a one-line error naming --rank otherwise."""
    n = len(result.ranked)
    if not 1 <= rank <= n:
        raise PhasewiseError(f"--rank must be between 1 and {n}, the strategies ranked (got {rank})")
    r = result.ranked[rank - 1]
    if r.goodput_rps <= 0:
        raise PhasewiseError(f"--rank {rank}: '{r.strategy.name}' meets the SLOs at no tested rate; "
                             "export a strategy with a goodput")
    return r


def deployment_yaml(deployment: dict[str, Any], header: list[str] | None = None) -> str:
    """The deployment's fields as YAML (comments first), keys in the order the planner built them; the user's files
    it names by absolute path (absolute_paths), so that it reads the same from any folder."""
    lines = [f"# {line}" for line in header or []]
    return "\n".join(lines + [yaml.safe_dump(absolute_paths(deployment), sort_keys=False,
                                              default_flow_style=False).rstrip()]) + "\n"


def absolute_paths(node: Any) -> Any:
    """`node` (a deployment's fields) with every text naming a user's file or checkpoint folder by a path relative to
    this folder (a hardware, engine, mapping or model file, a checkpoint: 'cfgdir/chip.yaml') made absolute, as
    the replay line's trace is: the exported file is read from its own folder (`simulate --deployment` there) or
    any other (`serve --deployment /path/...`). A path is a text ending in .yaml / .yml / .json or holding a
    folder separator that names a file here, or a folder with a config.json (the loaders read those before the
    catalog); catalog names (h100-sxm, vllm, meta-llama/Llama-3.1-8B where no such checkpoint is here) stay."""
    if isinstance(node, dict):
        return {key: absolute_paths(value) for key, value in node.items()}
    if isinstance(node, list):
        return [absolute_paths(value) for value in node]
    if isinstance(node, str) and node.strip() and not Path(node).expanduser().is_absolute() \
            and (node.endswith((".yaml", ".yml", ".json")) or "/" in node or os.sep in node):
        path = Path(node).expanduser()
        try:
            if path.is_file() or (path / "config.json").is_file():  # a file, or a checkpoint as load_model reads it
                return str(path.resolve())
        except (OSError, ValueError):  # unreadable or an odd name: left for the reader's own error
            pass
    return node


def plan_header(result: PlanResult, r: GoodputResult, rank: int) -> list[str]:
    """What the plan found for this strategy, as comment lines of its exported files."""
    slo = result.slo
    v = r.verified.summary if r.verified is not None else {}
    p90 = (v.get("ttft_ms", {}).get("p90", math.nan), v.get("tpot_ms", {}).get("p90", math.nan))
    chips = " + ".join(f"{n} x {chip}" for chip, n in cluster_hardware(r.strategy.deployment, with_cost=False
                                                                        ).chips.items())
    seeds = r.verified.seeds if r.verified is not None else 0
    return [f"phasewise plan, rank {rank} of {len(result.ranked)} by {result.objective}: {r.strategy.name}",
            f"{result.model} on {chips}; workload {result.workload}",
            f"SLOs: {slo.describe()} for {result.target:.0%} of requests",
            f"planned goodput {r.goodput_rps:.3f} req/s (verified"
            + (f" on {r.verified.units_simulated} of its {r.verified.units} units at their share of the rate"
               if r.verified is not None and r.verified.sliced else "")
            + (f" on {seeds} fresh seeds, the worst's run" if seeds > 1 else
               " on one seed, a replayed trace having nothing to resample" if seeds == 1 else "")
            + (f", held looped to {r.verified.looped_requests:,} requests too to fill its window, the run shown the "
               "trace once" if r.verified is not None and r.verified.looped_requests else "")
            + f": attainment {r.verified_attainment:.1%}, "
            f"TTFT p90 {p90[0]:.0f} ms, TPOT p90 {p90[1]:.1f} ms); binds: {r.binding}",
            *replay_line(result, r)]


def replay_line(result: PlanResult, r: GoodputResult) -> list[str]:
    """The command that replays the verification run (the whole deployment simulated, no images), [] where none
    does: `simulate --deployment` on this file reads the same attainment and p90s, from a replayed trace (plan
    --arrivals trace: the trace once at the row's rate, its exact float, tests/test_plan_review_fixes.py) or from
    Poisson arrivals of one prompt and one output length (PlanResult.replay_lengths: the run's rate, requests and
    seed, the open loop drawing the arrivals by plan's formula, workload/generators.py poisson_arrivals; not
    behind a router that draws, which plan seeds 0 and simulate's --seed). With a note (REPLAY_GOODPUT_NOTE) that
    its goodput and tok/s are over the run's duration, not the plan's. A slice's share and lengths resampled from a
    trace or a distribution are the planner's own: no flag of simulate's makes them."""
    v = r.verified
    if v is None or v.sliced or result.images:
        return []
    if result.trace is not None:
        # a trace file by its absolute path (the command runs from the export's folder, deployment.yaml beside it); a
        # bundled trace by its name
        trace = str(Path(result.trace).resolve()) if Path(result.trace).is_file() else result.trace
        load, what = f"--trace {shlex.quote(trace)} --rate {v.rate_rps!r}", "the trace once at that rate"
    elif result.replay_lengths is not None and not draws_routes(v.deployment):
        prompt, output = result.replay_lengths
        load = f"--rate {v.rate_rps!r} --requests {v.requests} --isl {prompt} --osl {output} --seed {v.seed}"
        what = f"seed {v.seed}'s Poisson arrivals"
    else:
        return []
    slo = result.slo
    in_file = r.strategy.deployment.get("priority_pools") or {}  # the SLOs its block sets: simulate refuses them again
    flags = []
    for name, field, value in (("slo-ttft-ms", "slo_ttft_ms", slo.ttft_ms), ("slo-tpot-ms", "slo_tpot_ms", slo.tpot_ms),
                               ("slo-tbt-ms", None, slo.max_tbt_ms)):
        if math.isfinite(value) and field not in in_file:
            flags.append(f"--{name} {value:g}" if float(f"{value:g}") == value else f"--{name} {value!r}")
    return [f"replay: phasewise simulate --deployment deployment.yaml {load} {' '.join(flags)} (the verification's "
            f"run: {what}, from this file's folder)", REPLAY_GOODPUT_NOTE]


def draws_routes(deployment: dict[str, Any]) -> bool:
    """Whether the deployment's router draws (random, or dynamo_kv at a temperature above 0): simulate's --seed seeds
    it, where plan's runs seed it 0."""
    router = deployment.get("router")
    return router == "random" or (router == "dynamo_kv" and (deployment.get("router_temperature") or 0) > 0)


# what the replay's own goodput and tok/s divide by (sim/metrics.py SimResult.summary), beside the plan's
# (plan/run_summaries.py goodput_tokens_per_s_per_gpu): the same run, two quantities of one name
REPLAY_GOODPUT_NOTE = ("the replay's goodput and output tok/s: over its run's duration, first arrival to last "
                       "finish (the drain past the last arrival included), so lower than the planned goodput (the "
                       "rate offered while the attainment holds) and its tok/s (that rate x output tokens per "
                       "request); compare the attainment and the p90s")


def check_output_path(what: str, path: str | Path, directory: bool = False) -> Path:
    """Before the work (not after its minutes): `path`, an output file (a folder with `directory`: --export's), can
    be written, a one-line error naming `what` (the flag and its value) otherwise: it is no folder (no file), no
    folder on its way is a file, and the nearest folder that exists takes new files (writable, not on a read-only
    file system). Folders on the way that do not exist yet are made when it is written. '~' is expanded, here as in
    the writing: the path returned is the one to write."""
    out = Path(path).expanduser()
    if out.is_dir() and not directory:
        raise PhasewiseError(f"{what}: cannot write, it is a directory (give a file path)")
    if out.exists() and not out.is_dir() and directory:
        raise PhasewiseError(f"{what}: a file of that name exists; give a directory (new or not)")
    folder = out if directory else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PhasewiseError(f"{what}: cannot write, {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PhasewiseError(f"{what}: cannot write in {folder} ({_why_not_writable(folder)})")
    if out.is_file() and not os.access(out, os.W_OK):
        raise PhasewiseError(f"{what}: cannot write ({_why_not_writable(out)})")
    return out


def _why_not_writable(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        read_only = False
    return "Read-only file system" if read_only else "Permission denied"
