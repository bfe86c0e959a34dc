"""Predicted vs measured for every public point in public_points.yaml (PAPERS.md Part 2).

    python benchmarks/validate_public.py            # evaluate the catalog's constants
    python benchmarks/validate_public.py --fit      # refit the named constants on the fit runs, print them for the YAML

The unit of the fit/test split is a measured run (one configuration measured once: a Splitwise row's TTFT and
TBT together). public_points.yaml lists the fit runs and the rule that chose them; every other run is held out.
Each group of constants (FIT_GROUPS) is fitted on the fit runs it covers, and only those; the held-out figures
are computed over held-out runs only.

Prints one row per point, then per kind of point and engine, for the fit runs and the held-out runs: median and
p90 |error| and the worst point of
  class-default  unfitted constants: efficiency.yaml's GPU class defaults; for a fitted engine, EngineProfile's
                 defaults with the host costs of its unfitted class profile (CLASS_PROFILE)
  fitted         the catalog's constants (with --fit, the refitted ones)
  roofline       spec-sheet peaks, every efficiency 1, no host or launch overhead
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.fit import log_error
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

HERE = Path(__file__).resolve().parent
LINEAR = ("qkv_proj", "o_proj", "mlp_gate_up", "mlp_down")
KINDS = {"linear_ms_per_layer": "kernel", "ttft_ms": "TTFT", "tbt_ms": "TBT", "static_tput": "static tput"}
SIDES = ("fit", "held-out")
COLUMNS = ("class-default", "fitted", "roofline")


@dataclass(frozen=True)
class FitGroup:
    """Constants fitted together, on the fit runs among the points they cover; `keys` all receive the values."""

    # "hardware" (efficiency.yaml: kernel constants), "host" (efficiency.yaml: the platform's host_speed) or
    # "engine" (engines.yaml)
    section: str
    keys: tuple[str, ...]
    params: tuple[str, ...]
    on_hardware: tuple[str, ...] = ()  # engine: only its runs on these platforms (empty: all)
    on_engine: str = ""  # host: the engine whose runs on these platforms set their host speed

    def covers(self, p: dict[str, Any]) -> bool:
        if self.section == "hardware":  # kernel constants from the engine-free operator profiles only
            return p["kind"] == "linear_ms_per_layer" and p["hardware"] in self.keys
        if self.section == "host":
            return p.get("engine") == self.on_engine and p["hardware"] in self.keys
        return p.get("engine") in self.keys and (not self.on_hardware or p["hardware"] in self.on_hardware)


# One set of GEMM/bandwidth constants for both NVIDIA GPUs (Vidur's profiles reach the same fractions of peak on
# both: 71-76 % of tensor peak, 73-86 % of HBM), from the kernel profiles; then each engine's host costs from its
# whole-iteration latencies with those kernels. vllm-2023's slowness is modelled as host dispatch and unfused
# elementwise traffic, not as slower GEMMs: its compute_efficiency and collective_efficiency stay at 1.
# vllm-2023's host costs are fitted on its H100 runs (Azure ND H100 v5, Xeon Platinum 8480C hosts), then the A100
# platform's host speed relative to them on its A100 runs (NDm A100 v4, EPYC 7V12 hosts): an eager engine's
# batch-1 decode is host-bound, so the host CPU, not the GPU, sets it.
FIT_GROUPS: tuple[FitGroup, ...] = (
    FitGroup("hardware", ("h100-sxm", "a100-sxm-80gb"), ("gemm_efficiency_max", "gemm_half_rows", "memory_efficiency_max")),
    FitGroup("engine", ("vllm-2023",), ("per_sequence_overhead_s", "eager_launch_s", "elementwise_passes"),
             on_hardware=("h100-sxm",)),
    FitGroup("host", ("a100-sxm-80gb",), ("host_speed",), on_engine="vllm-2023"),
    FitGroup("engine", ("trtllm-0.5",), ("iteration_overhead_s", "eager_launch_s", "decode_kv_per_query_head")),
)
BOUNDS = {"gemm_efficiency_max": (0.0, 1.0), "memory_efficiency_max": (0.0, 1.0), "elementwise_passes": (1.0, math.inf),
          "decode_kv_per_query_head": (0.0, 1.0)}

# The unfitted ("class-default") values of a fitted engine: EngineProfile's defaults (efficiencies 1, fused
# elementwise, no collective overhead) and the host costs of the engine's own class-default profile. Its boolean
# facts (CUDA graphs, tensor-core decode attention) stay as the catalog states them. The fit starts from these.
CLASS_PROFILE = {"vllm-2023": "vllm", "trtllm-0.5": "trtllm-pytorch"}
HOST = ("iteration_overhead_s", "per_sequence_overhead_s", "eager_launch_s")
NEUTRAL = {"collective_overhead_s": 0.0, "compute_efficiency": 1.0, "collective_efficiency": 1.0, "elementwise_passes": 1.0,
           "decode_kv_per_query_head": 0.0}


def load_points() -> list[dict[str, Any]]:
    """The points, each with `split` = 'fit' if its run is one of `fit_runs`, else 'held-out'."""
    data = yaml.safe_load((HERE / "public_points.yaml").read_text())
    fit_runs = {r for runs in data["fit_runs"].values() for r in runs}
    points = data["points"]
    unknown = fit_runs - {p["run"] for p in points}
    if unknown:
        raise ValueError(f"fit_runs names runs no point has: {sorted(unknown)}")
    for p in points:
        p["split"] = "fit" if p["run"] in fit_runs else "held-out"
    return points


def label(p: dict[str, Any]) -> str:
    return f"{p['id']} {KINDS[p['kind']]}" if p["kind"] in ("ttft_ms", "tbt_ms") else p["id"]


def engine_of(p: dict[str, Any]) -> str:
    return p.get("engine", "-")


@cache
def _specs(model: str, hardware: str, precision: str, kv_dtype: str | None, engine: str):
    return load_model(model), load_hardware(hardware), load_quant(precision, kv_dtype), load_engine(engine)


@cache
def class_default_engine(name: str):
    engine = load_engine(name)
    if name not in CLASS_PROFILE:
        return engine  # the other engines' entries are class defaults already (vllm, ideal)
    base = load_engine(CLASS_PROFILE[name])
    return engine.model_copy(update={**{k: getattr(base, k) for k in HOST}, **NEUTRAL})


def cost_model(p: dict[str, Any], overrides: dict, mode: str) -> CostModel:
    """mode: 'catalog' (constants as shipped), 'defaults' (class defaults, then `overrides`), 'roofline'."""
    model, hw, quant, engine = _specs(p["model"], p["hardware"], p.get("precision", "bf16"),
                                      p.get("kv_dtype"), p.get("engine", "ideal"))
    if mode == "roofline":
        eff = hw.efficiency.model_copy(update=dict(
            gemm_efficiency_max=1.0, gemm_half_rows=0.0, memory_efficiency_max=1.0, memory_half_bytes=0.0,
            attention_efficiency_max=1.0, attention_half_tokens=0.0, attention_memory_efficiency=1.0,
            kernel_launch_s=0.0, link_efficiency=1.0))
        hw = hw.model_copy(update={"efficiency": eff})
        engine = load_engine("ideal")
    elif mode == "defaults":
        base = {k: v for k, v in packaged("efficiency.yaml")["defaults"][hw.kind].items() if k != "sources"}
        base.update(overrides.get(("hardware", hw.key), {}))
        base.update(overrides.get(("host", hw.key), {}))
        hw = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=base)})
        engine = class_default_engine(engine.name).model_copy(update=overrides.get(("engine", engine.name), {}))
    elif mode != "catalog":
        raise ValueError(f"unknown mode {mode}")
    return CostModel(model, hw, quant, engine, p.get("tp", 1), p.get("pp", 1))


def predict(p: dict[str, Any], overrides: dict | None = None, mode: str = "catalog") -> float:
    cm = cost_model(p, overrides or {}, mode)
    m = cm.model
    kind = p["kind"]
    if kind == "linear_ms_per_layer":  # kernel durations (Vidur's record_function profiles): no gap between kernels
        it = cm.iteration(BatchShape.uniform(1, p["tokens"], 0))
        return sum(o.time_s - o.launch_s for o in it.operators if o.name in LINEAR) / cm.layers_per_stage * 1e3
    if kind == "ttft_ms":
        return cm.iteration(BatchShape.uniform(p["batch"], p["prompt"], 0, m.causal)).latency_s * 1e3
    if kind == "tbt_ms":
        return cm.iteration(BatchShape.uniform(p["batch"], 1, p["context"], m.causal)).latency_s * 1e3
    if kind == "static_tput":  # one prefill of the batch, then osl-1 decode steps at contexts isl+1 .. isl+osl-1
        b, isl, osl = p["batch"], p["isl"], p["osl"]
        total = cm.iteration(BatchShape.uniform(b, isl, 0, m.causal)).latency_s
        if osl > 1:
            first = BatchShape.uniform(b, 1, isl + 1, m.causal)
            steps, _ = cm.decode_series_linear(first, np.arange(osl - 1, dtype=float), float(b), float(b))
            total += float(steps.sum())
        return b * osl / total / (cm.tp * cm.pp)
    raise ValueError(f"unknown kind {kind}")


@dataclass
class Fit:
    """What fit() found: the values per (section, key), and per group the points (labels) and runs it used."""

    overrides: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    used: dict[FitGroup, list[str]] = field(default_factory=dict)
    runs: dict[FitGroup, set[str]] = field(default_factory=dict)
    loss: dict[FitGroup, float] = field(default_factory=dict)

    @property
    def used_runs(self) -> set[str]:
        return set().union(*self.runs.values()) if self.runs else set()

    @property
    def constants(self) -> int:
        return sum(len(g.params) for g in self.used)


def given_constants() -> dict[tuple[str, str], dict[str, float]]:
    """The catalog's constants of the fitted hardware entries that this fit does not fit, because they were fitted
    elsewhere (efficiency.yaml names where: e.g. h100-sxm's kernel_launch_s, b200's fit; sync_mma_efficiency,
    `phasewise reproduce fireq`): the fit starts from the class defaults plus these, so that the catalog predicts
    what the fit predicts. The class-default column leaves them out."""
    fitted_here: dict[str, set[str]] = {}
    for group in FIT_GROUPS:
        if group.section in ("hardware", "host"):
            for key in group.keys:
                fitted_here.setdefault(key, set()).update(group.params)
    entries = packaged("efficiency.yaml")["hardware"]
    return {("hardware", key): {k: float(v) for k, v in entries.get(key, {}).items()
                                if k not in params and isinstance(v, (int, float))}
            for key, params in fitted_here.items()}


def start_values(group: FitGroup) -> dict[str, float]:
    key = group.keys[0]
    if group.section == "host":
        return {"host_speed": 1.0}
    if group.section == "hardware":
        src = packaged("efficiency.yaml")["defaults"][load_hardware(key).kind]
    else:
        src = class_default_engine(key).model_dump()
    return {k: float(src[k]) for k in group.params}


def fit(points: list[dict[str, Any]], say=print) -> Fit:
    """Pattern search in log space, one group after the other (hardware first), from the class defaults,
    minimising the mean |log(predicted/measured)| over the group's fit runs. The hardware entries' constants
    fitted elsewhere (given_constants()) are held at their catalog values throughout."""
    result = Fit(overrides=given_constants())
    for group in FIT_GROUPS:
        pts = [p for p in points if group.covers(p) and p["split"] == "fit"]
        if not pts:
            continue

        def trial(values: dict[str, float]) -> dict:
            out = dict(result.overrides)
            for key in group.keys:
                out[(group.section, key)] = {**out.get((group.section, key), {}), **values}
            return out

        def loss(values: dict[str, float]) -> float:
            return statistics.fmean(log_error(predict(p, trial(values), "defaults"), p["measured"]) for p in pts)

        x = {k: max(v, 1e-6) for k, v in start_values(group).items()}
        best, step = loss(x), 2.0
        while step > 1.005:
            improved = False
            for k in group.params:
                lo, hi = BOUNDS.get(k, (0.0, math.inf))
                for factor in (step, 1 / step):
                    cand = dict(x)
                    cand[k] = min(max(x[k] * factor, lo), hi)
                    val = loss(cand)
                    if val < best - 1e-12:
                        x, best, improved = cand, val, True
            if not improved:
                step = math.sqrt(step)
        result.overrides = trial(x)
        result.used[group] = [label(p) for p in pts]
        result.runs[group] = {p["run"] for p in pts}
        result.loss[group] = best
        say(f"fitted {group.section} {'+'.join(group.keys)}: {len(group.params)} constants on "
            f"{len(result.runs[group])} runs ({len(pts)} figures: {', '.join(result.used[group])}); "
            f"mean |log err| {best:.3f}")
    return result


def yaml_number(v: float) -> str:
    """4 significant digits; a signed exponent where one is needed (YAML 1.1 reads 1e-3 as a string)."""
    return f"{v:.4g}" if 1e-2 <= abs(v) < 1e4 else f"{v:.3e}"


def evaluate(points: list[dict[str, Any]], fitted: Fit | None = None) -> list[dict[str, Any]]:
    """One row per point: signed relative errors of the fitted (catalog, or `fitted` on the class defaults),
    class-default and roofline predictions."""
    rows = []
    for p in points:
        pred = predict(p, fitted.overrides, "defaults") if fitted else predict(p)
        errs = {"fitted": pred / p["measured"] - 1,
                "class-default": predict(p, {}, "defaults") / p["measured"] - 1,
                "roofline": predict(p, {}, "roofline") / p["measured"] - 1}
        rows.append({"point": p, "label": label(p), "run": p["run"], "side": p["split"], "kind": KINDS[p["kind"]],
                     "engine": engine_of(p), "predicted": pred, "errors": errs})
    return rows


def stats(rows: list[dict[str, Any]], column: str) -> dict[str, Any]:
    errs = [abs(r["errors"][column]) for r in rows]
    worst = max(rows, key=lambda r: abs(r["errors"][column]))
    return {"n": len(rows), "median": statistics.median(errs), "p90": float(np.percentile(errs, 90)),
            "worst": worst["label"], "worst_error": worst["errors"][column]}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells by (kind, engine, side), plus 'all' kinds per side; each lists the labels and runs it counts."""
    groups: dict[tuple[str, str, str], list] = {}
    for r in rows:
        groups.setdefault((r["kind"], r["engine"], r["side"]), []).append(r)
        groups.setdefault(("all", "all", r["side"]), []).append(r)
    order = {k: i for i, k in enumerate([*KINDS.values(), "all"])}
    cells = []
    for (kind, engine, side), rs in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], SIDES.index(kv[0][2]))):
        cells.append({"kind": kind, "engine": engine, "side": side, "labels": [r["label"] for r in rs],
                      "runs": {r["run"] for r in rs}, **{c: stats(rs, c) for c in COLUMNS}})
    return cells


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'id':11} {'model':15} {'hardware':13} {'tp':>2} {'engine':10} {'measured':>9} {'predicted':>9} "
          f"{'err':>7} {'class-def':>9} {'roofline':>8}  {'run':13} side")
    for r in rows:
        p, e = r["point"], r["errors"]
        print(f"{r['label']:11} {p['model'].split('/')[-1][:15]:15} {p['hardware']:13} {p.get('tp', 1):>2} "
              f"{r['engine']:10} {p['measured']:>9.4g} {r['predicted']:>9.4g} {e['fitted']:>+7.1%} "
              f"{e['class-default']:>+9.1%} {e['roofline']:>+8.1%}  {r['run']:13} {r['side']}")


def print_summary(cells: list[dict[str, Any]]) -> None:
    print("\n|error| by kind and engine: median / p90 / worst point (n = figures; p90 interpolated)"
          "\n  'fitted' on the fit runs is in-sample; 'fitted' on the held-out runs is the validation")
    head = "".join(f" | {c:^30}" for c in COLUMNS)
    print(f"{'kind':11} {'engine':10} {'side':8} {'n':>3}{head}")
    for c in cells:
        vals = "".join(f" | {c[col]['median']:6.1%} {c[col]['p90']:6.1%} {c[col]['worst']:>9} {c[col]['worst_error']:+6.0%}"
                       for col in COLUMNS)
        print(f"{c['kind']:11} {c['engine']:10} {c['side']:8} {c['fitted']['n']:>3}{vals}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="refit the constants, evaluate with them, print them for the YAML")
    args = ap.parse_args(argv)
    points = load_points()
    fitted = fit(points) if args.fit else None
    rows = evaluate(points, fitted)
    print_table(rows)
    print_summary(summarize(rows))
    fit_runs = {p["run"] for p in points if p["split"] == "fit"}
    held = [p for p in points if p["split"] == "held-out"]
    n_const = sum(len(g.params) for g in FIT_GROUPS)
    print(f"\n{n_const} constants fitted on {len(fit_runs)} fit runs "
          f"({sum(p['split'] == 'fit' for p in points)} figures); "
          f"held out: {len({p['run'] for p in held})} runs ({len(held)} figures)")
    for g in FIT_GROUPS:
        runs = sorted({p["run"] for p in points if g.covers(p) and p["split"] == "fit"}, key=_natural)
        print(f"  {g.section} {'+'.join(g.keys)}: {', '.join(g.params)} on {len(runs)} runs ({', '.join(runs)})")
    if fitted:
        print("\nvalues to paste (efficiency.yaml `hardware:` entries, engines.yaml `engines:` entries):")
        paste: dict[str, dict[str, float]] = {}  # a platform's kernel constants and host speed under one key
        for g in FIT_GROUPS:
            if g in fitted.used:
                values = fitted.overrides[(g.section, g.keys[0])]
                for key in g.keys:
                    paste.setdefault(key, {}).update({k: values[k] for k in g.params})
        for key, values in paste.items():
            print(f"  {key}:")
            for k, v in values.items():
                print(f"    {k}: {yaml_number(v)}")
    return 0


def _natural(run: str) -> tuple:
    digits = "".join(ch for ch in run if ch.isdigit())
    return (run.rstrip("0123456789"), int(digits) if digits else 0, run)


if __name__ == "__main__":
    sys.exit(main())
