"""The catalog's AMD Instinct entries against published runs (amd_points.yaml): predicted vs measured latency of a
static batch (its prefill, then output-len - 1 decode steps), with the catalog's constants (AMD's from public
microbenchmarks, none fitted on these runs) and with the GPU class defaults.

    python benchmarks/validate_amd.py [--json]

Nothing is fitted here: every run is held out. The static-batch cost is validate_public.py's (its `predict`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = ("catalog", "defaults")


def _validate_public():
    spec = importlib.util.spec_from_file_location("validate_public", HERE / "validate_public.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_public", module)
    spec.loader.exec_module(module)
    return module


def load_points(path: Path = HERE / "amd_points.yaml") -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    return [{**data["common"], **p} for p in data["points"]]


def evaluate(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run: the measured and predicted latency (s) and the signed error, per column."""
    predict = _validate_public().predict
    rows = []
    for p in points:
        tokens_per_gpu = p["batch"] * p["osl"] / p["tp"]
        point = {**p, "kind": "static_tput"}
        predicted = {c: tokens_per_gpu / predict(point, mode=c) for c in COLUMNS}
        rows.append({"id": p["id"], "model": p["model"], "batch": p["batch"], "isl": p["isl"], "osl": p["osl"],
                     "measured_s": p["latency_s"], "predicted_s": predicted,
                     "error": {c: predicted[c] / p["latency_s"] - 1 for c in COLUMNS}})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for c in COLUMNS:
        errors = [r["error"][c] for r in rows]
        worst = max(rows, key=lambda r: abs(r["error"][c]))
        out[c] = {"n": len(rows), "median_abs": statistics.median(abs(e) for e in errors),
                  "median_signed": statistics.median(errors), "worst": worst["id"], "worst_error": worst["error"][c]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = evaluate(load_points())
    stats = summary(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": stats}))
        return 0
    print(f"{'id':4} {'model':18} {'batch':>5} {'isl':>5} {'osl':>5} {'measured s':>10} {'catalog s':>9} {'err':>6} "
          f"{'defaults s':>10} {'err':>6}")
    for r in rows:
        print(f"{r['id']:4} {r['model'].split('/')[-1]:18} {r['batch']:>5} {r['isl']:>5} {r['osl']:>5} "
              f"{r['measured_s']:>10.3f} {r['predicted_s']['catalog']:>9.3f} {r['error']['catalog']:>+6.0%} "
              f"{r['predicted_s']['defaults']:>10.3f} {r['error']['defaults']:>+6.0%}")
    for c, s in stats.items():
        print(f"{c}: median |error| {s['median_abs']:.0%} (signed {s['median_signed']:+.0%}), worst {s['worst']} "
              f"{s['worst_error']:+.0%}, {s['n']} runs held out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
