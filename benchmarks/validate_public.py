"""Predicted vs measured for every public point in public_points.yaml (PAPERS.md Part 2).

    python benchmarks/validate_public.py            # evaluate with the catalog's constants
    python benchmarks/validate_public.py --fit      # refit the named constants on the 'fit' points

Prints one row per point: the prediction with the catalog's constants, the error with the GPU-class
default efficiencies instead of the fitted per-GPU ones ('class-eff'), and the error of a pure
roofline (spec-sheet peaks, no efficiencies, no overheads); then the median absolute error of each
over the fit points, the held-out (test) points and each kind of point.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

HERE = Path(__file__).resolve().parent
LINEAR = ("qkv_proj", "o_proj", "mlp_gate_up", "mlp_down")

# What is fitted, on which points: per GPU the three GEMM/bandwidth constants (Vidur kernel
# profiles), per engine its host overheads (whole-iteration latencies).
FIT_GROUPS: list[tuple[str, str, tuple[str, ...]]] = [
    ("hardware", "h100-sxm", ("gemm_efficiency_max", "gemm_half_rows", "memory_efficiency_max")),
    ("hardware", "a100-sxm-80gb", ("gemm_efficiency_max", "gemm_half_rows", "memory_efficiency_max")),
    ("engine", "vllm-2023", ("iteration_overhead_s", "per_sequence_overhead_s", "compute_efficiency",
                             "collective_efficiency")),
    ("engine", "trtllm-0.5", ("iteration_overhead_s", "eager_launch_s")),
]
UPPER = {"gemm_efficiency_max": 1.0, "memory_efficiency_max": 1.0, "compute_efficiency": 1.0, "collective_efficiency": 1.0}


def load_points() -> list[dict[str, Any]]:
    return yaml.safe_load((HERE / "public_points.yaml").read_text())["points"]


@cache
def _specs(model: str, hardware: str, precision: str, kv_dtype: str | None, engine: str):
    return load_model(model), load_hardware(hardware), load_quant(precision, kv_dtype), load_engine(engine)


def cost_model(p: dict[str, Any], overrides: dict, mode: str) -> CostModel:
    """mode: 'catalog' (constants as shipped), 'defaults' (class defaults, no fit), 'roofline'."""
    model, hw, quant, engine = _specs(p["model"], p["hardware"], p.get("precision", "bf16"),
                                      p.get("kv_dtype"), p.get("engine", "ideal"))
    if mode == "roofline":
        eff = hw.efficiency.model_copy(update=dict(
            gemm_efficiency_max=1.0, gemm_half_rows=0.0, memory_efficiency_max=1.0, memory_half_bytes=0.0,
            attention_efficiency_max=1.0, attention_half_tokens=0.0, attention_memory_efficiency=1.0,
            kernel_launch_s=0.0, link_efficiency=1.0))
        hw = hw.model_copy(update={"efficiency": eff})
        engine = load_engine("ideal")
    else:
        if mode == "defaults":
            base = {k: v for k, v in packaged("efficiency.yaml")["defaults"][hw.kind].items() if k != "sources"}
            hw = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=base)})
        upd = overrides.get(("hardware", hw.key))
        if upd:
            hw = hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=upd)})
        upd = overrides.get(("engine", engine.name))
        if upd:
            engine = engine.model_copy(update=upd)
    return CostModel(model, hw, quant, engine, p.get("tp", 1), p.get("pp", 1))


def predict(p: dict[str, Any], overrides: dict | None = None, mode: str = "catalog") -> float:
    cm = cost_model(p, overrides or {}, mode)
    m = cm.model
    kind = p["kind"]
    if kind == "linear_ms_per_layer":
        it = cm.iteration(BatchShape.uniform(1, p["tokens"], 0))
        return sum(o.time_s for o in it.operators if o.name in LINEAR) / cm.layers_per_stage * 1e3
    if kind == "ttft_ms":
        return cm.iteration(BatchShape.uniform(p["batch"], p["prompt"], 0, m.causal)).latency_s * 1e3
    if kind == "tbt_ms":
        return cm.iteration(BatchShape.uniform(p["batch"], 1, p["context"], m.causal)).latency_s * 1e3
    if kind == "static_tput":
        b, isl, osl = p["batch"], p["isl"], p["osl"]
        total = cm.iteration(BatchShape.uniform(b, isl, 0, m.causal)).latency_s
        total += sum(cm.iteration(BatchShape.uniform(b, 1, isl + i, m.causal)).latency_s for i in range(1, osl))
        return b * osl / total / (cm.tp * cm.pp)
    raise ValueError(f"unknown kind {kind}")


def log_error(p: dict[str, Any], overrides: dict) -> float:
    return abs(math.log(predict(p, overrides, "defaults") / p["measured"]))


def fit(points: list[dict[str, Any]]) -> dict:
    """Pattern search in log space, one group after the other, minimising mean |log(pred/measured)|."""
    overrides: dict = {}
    for section, key, params in FIT_GROUPS:
        if section == "hardware":  # kernel constants from the engine-free operator profiles
            group = [p for p in points if p["kind"] == "linear_ms_per_layer" and p["hardware"] == key]
        else:
            group = [p for p in points if p.get("engine") == key]
        group = [p for p in group if p["split"] == "fit"]
        if not group:
            continue
        if section == "hardware":
            start = {k: v for k, v in packaged("efficiency.yaml")["defaults"]["gpu"].items() if k in params}
        else:
            start = {k: v for k, v in load_engine(key).model_dump().items() if k in params}
        x = {k: max(float(v), 1e-6) for k, v in start.items()}

        def loss(values: dict[str, float]) -> float:
            trial = dict(overrides)
            trial[(section, key)] = values
            return statistics.fmean(log_error(p, trial) for p in group)

        best = loss(x)
        step = 2.0
        while step > 1.005:
            improved = False
            for k in params:
                for factor in (step, 1 / step):
                    cand = dict(x)
                    cand[k] = min(x[k] * factor, UPPER.get(k, math.inf))
                    val = loss(cand)
                    if val < best - 1e-12:
                        x, best, improved = cand, val, True
            if not improved:
                step = math.sqrt(step)
        overrides[(section, key)] = x
        print(f"fitted {section} {key} on {', '.join(p['id'] for p in group)}: "
              + ", ".join(f"{k}={v:.4g}" for k, v in x.items()) + f" (mean |log err| {best:.3f})")
    return overrides


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="refit the constants and evaluate with the fit")
    args = ap.parse_args(argv)
    points = load_points()
    overrides = fit(points) if args.fit else {}
    mode = "defaults" if args.fit else "catalog"
    print(f"\n{'id':4} {'kind':20} {'model':26} {'hardware':13} {'tp':>2} {'engine':9} {'measured':>9} "
          f"{'predicted':>9} {'err':>7} {'class-eff':>9} {'roofline':>8}  split")
    errs: dict[tuple[str, str], list[float]] = {}
    for p in points:
        pred = predict(p, overrides, mode)
        raw = predict(p, {}, "defaults")
        roof = predict(p, {}, "roofline")
        e, e_raw, e_roof = (v / p["measured"] - 1 for v in (pred, raw, roof))
        for col, val in (("model", e), ("class-eff", e_raw), ("roofline", e_roof)):
            errs.setdefault((col, p["split"]), []).append(abs(val))
            errs.setdefault((col, p["kind"]), []).append(abs(val))
        print(f"{p['id']:4} {p['kind']:20} {p['model'].split('/')[-1]:26} {p['hardware']:13} {p.get('tp', 1):>2} "
              f"{p.get('engine', '-'):9} {p['measured']:>9.4g} {pred:>9.4g} {e:>+7.1%} {e_raw:>+9.1%} {e_roof:>+8.1%}  {p['split']}")
    print("\nmedian |error|        catalog class-eff roofline  points")
    for group in ("fit", "test", "linear_ms_per_layer", "ttft_ms", "tbt_ms", "static_tput"):
        if ("model", group) in errs:
            vals = [statistics.median(errs[(c, group)]) for c in ("model", "class-eff", "roofline")]
            within = sum(v <= 0.2 for v in errs[("model", group)]) / len(errs[("model", group)])
            print(f"  {group:20} {vals[0]:6.1%}  {vals[1]:7.1%}  {vals[2]:7.1%}   {len(errs[('model', group)]):3}"
                  f"   ({within:.0%} within 20 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
