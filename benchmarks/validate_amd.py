"""The catalog's AMD Instinct entries against published runs, every run held out (nothing here is fitted into the
catalog):

1. static batches (amd_points.yaml: ROCm/vllm's MI300X latency table, Llama-3.1-70B / 405B FP8 TP8 on vLLM): a
   batch's prefill, then output-len - 1 decode steps, with the catalog's constants and the GPU class defaults;
2. fixed-concurrency serving (amd_serving_points.yaml: InferenceX's DeepSeek-R1 runs on MI300X, MI325X and MI355X
   with SGLang, collocated): mean TTFT and TPOT from the closed-loop client InferenceX runs, the server launched
   with the flags its scripts pass (SERVING_FLAGS).

    python benchmarks/validate_amd.py [--json] [--serving-only] [--fit-kernel-gap]

--fit-kernel-gap is an experiment, not a calibration: it fits one constant per GPU generation (the kernel gap,
efficiency.yaml kernel_launch_s; CDNA3 = MI300X and MI325X, CDNA4 = MI355X) on a third of the serving
configurations (sha256 order), reports the held-out serving runs beside the catalog's error, and checks the fitted
gap on the other source (the static vLLM batches). Its finding is why nothing is shipped: the gap that fixes SGLang
DeepSeek-R1's TPOT (~15 us on CDNA3) makes vLLM's Llama batches +67-134 % slow at batch 1, so it belongs to one
software stack, not to the chip. The static-batch cost is validate_public.py's (its `predict`); the serving
simulation is validate_concurrency.py's (its `predict`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = ("catalog", "defaults")
GENERATION = {"mi300x": "cdna3", "mi325x": "cdna3", "mi355x": "cdna4"}
# InferenceX's dsr1_{fp8,fp4}_{mi300x,mi325x,mi355x}.sh (SemiAnalysisAI/InferenceX benchmarks/, the stored version
# @1fc5d73c; the runs' own script version is not in the rows): SGLang with --mem-fraction-static 0.8,
# --cuda-graph-max-bs 128, --disable-radix-cache, --num-continuous-decode-steps 4 (read here as a receive interval of
# 4: new requests wait for the 4 decode steps to finish; the host work those steps share is not modelled),
# --chunked-prefill-size = --max-prefill-tokens 131072 (CDNA3) or 196608 (MI355X; FP4 at 8k / 1k above 32 clients
# 32768), --kv-cache-dtype fp8_e4m3 except on MI355X FP8 (none: the model's BF16)
SERVING_FLAGS = {"memory_fraction": 0.8, "cuda_graph_max_bs": 128, "prefix_caching": False,
                 "scheduler_recv_interval": 4, "enable_mixed_chunk": False}
# the checkpoints the rows ran (InferenceX .github/configs/amd-master.yaml): deepseek-ai/DeepSeek-R1-0528 (FP8
# blocks) and amd/DeepSeek-R1-0528-MXFP4-Preview (Quark: MXFP4 weights and activations in every MLP and expert,
# attention, router and LM head left BF16; costed as mxfp4 throughout, so its attention projections run at the FP4
# rate here: the prediction is fast by their share)
PRECISION = {"fp8": "fp8-block", "fp4": "mxfp4"}


def _load(name: str):
    """A sibling harness, executed once: the module already imported under its name (validate_moe imports
    validate_concurrency so), else loaded from benchmarks/ and registered."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _validate_public():
    return _load("validate_public")


# --- 1. static batches -------------------------------------------------------------------------------------------

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


@contextmanager
def kernel_gap(gaps: dict[str, float]):
    """The catalog with each generation's kernel_launch_s replaced by gaps[generation] (for the static batches): the
    name validate_public's cost models load hardware through, its cache of loaded specs cleared on entry and exit (so
    the gap reaches the batches whether or not they were costed before, and leaves none behind)."""
    vp = _validate_public()
    real = vp.load_hardware

    def patched(name: str):
        hw = real(name)
        gap = gaps.get(GENERATION.get(hw.key, ""))
        return hw if gap is None else hw.model_copy(
            update={"efficiency": hw.efficiency.model_copy(update={"kernel_launch_s": gap})})

    vp.load_hardware = patched
    vp._specs.cache_clear()
    try:
        yield
    finally:
        vp.load_hardware = real
        vp._specs.cache_clear()


# --- 2. fixed-concurrency serving --------------------------------------------------------------------------------

def load_runs(path: Path = HERE / "amd_serving_points.yaml") -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The runs this check costs, and (run id, reason) for the others."""
    data = yaml.safe_load(path.read_text())
    runs, skipped = [], []
    for r in data["runs"]:
        why = None
        if r["disagg"]:
            why = "disaggregated (prefill and decode worker layouts not read by this check)"
        elif r["framework"] != "sglang":
            why = f"engine '{r['framework']}' is not one phasewise models"
        elif r["spec"] != "none":
            why = f"speculative decoding ({r['spec']}): no draft length or acceptance stated"
        if why:
            skipped.append((run_id(r), why))
        else:
            runs.append(r)
    return runs, skipped


def run_id(r: dict[str, Any]) -> str:
    return f"{r['gpu']}-{r['framework']}-{r['precision']}-tp{r['tp']}-{r['isl']}x{r['osl']}-c{r['conc']}"


def config_key(r: dict[str, Any]) -> str:
    return f"{r['gpu']}|{r['precision']}|tp{r['tp']}|{r['isl']}x{r['osl']}"


def serving_case(r: dict[str, Any]) -> dict[str, Any]:
    """One run as validate_concurrency.predict takes it: the deployment its script launches and InferenceX's client
    (10 x C prompts, 2 x C warm-up, lengths uniform in [0.8 L, L])."""
    gpu, conc = r["gpu"], r["conc"]
    chunk = 131072 if GENERATION[gpu] == "cdna3" else 196608
    if r["precision"] == "fp4" and (r["isl"], r["osl"]) == (8192, 1024) and conc > 32:
        chunk = 32768
    group = dict(role="collocated", hardware=gpu, tp=r["tp"], replicas=1, engine="sglang",
                 precision=PRECISION[r["precision"]], chunked_prefill_size=chunk, max_prefill_tokens=chunk,
                 max_running_requests=conc, **SERVING_FLAGS)
    if not (gpu == "mi355x" and r["precision"] == "fp8"):
        group["kv_dtype"] = "fp8"
    return {"id": run_id(r), "config": config_key(r), "generation": GENERATION[gpu], "family": "DeepSeek-V3/R1",
            "engine": "sglang", "deployment": {"model": "deepseek-ai/DeepSeek-R1", "instances": [group]},
            "client": "inferencex", "concurrency": conc, "requests": 10 * conc, "warmup": 2 * conc,
            "isl": r["isl"], "osl": r["osl"], "measured_ttft_ms": 1e3 * r["mean_ttft_s"],
            "measured_tpot_ms": 1e3 * r["mean_tpot_s"], "group": f"{gpu} {r['precision']} TP{r['tp']}"}


def fit_configs(cases: list[dict[str, Any]]) -> set[str]:
    """Within each generation, the first third of its configurations in sha256 order (the rest held out)."""
    fit: set[str] = set()
    for gen in sorted({c["generation"] for c in cases}):
        keys = sorted({c["config"] for c in cases if c["generation"] == gen},
                      key=lambda k: hashlib.sha256(k.encode()).hexdigest())
        fit.update(keys[:math.ceil(len(keys) / 3)])
    return fit


def _constants(gaps: dict[str, float] | None) -> dict[str, Any] | None:
    if not gaps:
        return None
    return {"base": "catalog", **{f"hardware:{hw}": {"kernel_launch_s": gaps[gen]}
                                  for hw, gen in GENERATION.items() if gen in gaps}}


def evaluate_serving(cases: list[dict[str, Any]], gaps: dict[str, float] | None = None) -> list[dict[str, float]]:
    """Per case the predicted mean TTFT and TPOT (ms) and their signed errors, with the catalog (or `gaps`)."""
    vc = _load("validate_concurrency")
    out = []
    for c in cases:
        pred = vc.predict(c, _constants(gaps))
        out.append({"ttft": pred["ttft"], "tpot": pred["tpot"], "err_ttft": pred["ttft"] / c["measured_ttft_ms"] - 1,
                    "err_tpot": pred["tpot"] / c["measured_tpot_ms"] - 1})
    vc.restore_constants()
    return out


def fit_kernel_gap(cases: list[dict[str, Any]], fit: set[str], evals: int = 14) -> dict[str, float]:
    """Per generation the kernel gap (1-100 us, golden section in log space) minimising validate_concurrency's loss
    (|log| error of mean TTFT and TPOT, each capped at 10x) over its fit configurations' runs."""
    vc = _load("validate_concurrency")
    gaps: dict[str, float] = {}
    for gen in sorted({c["generation"] for c in cases}):
        chosen = [c for c in cases if c["generation"] == gen and c["config"] in fit]

        def loss(log_gap: float) -> float:
            return sum(vc.loss(c, vc.predict(c, _constants({gen: math.exp(log_gap)}))) for c in chosen)

        best, _ = vc.golden_section(loss, math.log(1e-6), math.log(1e-4), evals)
        gaps[gen] = math.exp(best)
    vc.restore_constants()
    return gaps


def serving_table(cases, results: dict[str, list[dict[str, float]]], fit: set[str] | None = None) -> list[dict]:
    """Per group (and split, where a fit ran) and column: n and the median, p90 and worst |error| of TTFT and TPOT."""
    rows = []
    groups = sorted({c["group"] for c in cases}) + ["ALL"]
    for group in groups:
        for split in (("fit", "test") if fit else ("all",)):
            idx = [i for i, c in enumerate(cases) if group in ("ALL", c["group"])
                   and (split == "all" or (c["config"] in fit) == (split == "fit"))]
            if not idx:
                continue
            for column, res in results.items():
                row = {"group": group, "split": split, "column": column, "n": len(idx)}
                for metric in ("ttft", "tpot"):
                    errs = sorted(abs(res[i][f"err_{metric}"]) for i in idx)
                    row[metric] = {"median": statistics.median(errs), "p90": errs[math.ceil(0.9 * len(errs)) - 1],
                                   "worst": errs[-1], "signed": statistics.median(res[i][f"err_{metric}"] for i in idx)}
                rows.append(row)
    return rows


def _print_static(rows, stats) -> None:
    print(f"{'id':4} {'model':18} {'batch':>5} {'isl':>5} {'osl':>5} {'measured s':>10} {'catalog s':>9} {'err':>6} "
          f"{'defaults s':>10} {'err':>6}")
    for r in rows:
        print(f"{r['id']:4} {r['model'].split('/')[-1]:18} {r['batch']:>5} {r['isl']:>5} {r['osl']:>5} "
              f"{r['measured_s']:>10.3f} {r['predicted_s']['catalog']:>9.3f} {r['error']['catalog']:>+6.0%} "
              f"{r['predicted_s']['defaults']:>10.3f} {r['error']['defaults']:>+6.0%}")
    for c, s in stats.items():
        print(f"{c}: median |error| {s['median_abs']:.0%} (signed {s['median_signed']:+.0%}), worst {s['worst']} "
              f"{s['worst_error']:+.0%}, {s['n']} runs held out")


def _print_serving(table) -> None:
    print(f"\n{'group':<18} {'split':<5} {'column':<8} {'n':>3} | {'TTFT |err| median':>17} {'p90':>5} {'worst':>6} "
          f"{'signed':>7} | {'TPOT |err| median':>17} {'p90':>5} {'worst':>6} {'signed':>7}")
    for r in table:
        cells = " | ".join(f"{r[m]['median']:>17.0%} {r[m]['p90']:>5.0%} {r[m]['worst']:>6.0%} {r[m]['signed']:>+7.0%}"
                           for m in ("ttft", "tpot"))
        print(f"{r['group']:<18} {r['split']:<5} {r['column']:<8} {r['n']:>3} | {cells}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--serving-only", action="store_true", help="skip the static batches")
    only.add_argument("--static-only", action="store_true", help="skip the serving runs")
    ap.add_argument("--fit-kernel-gap", action="store_true", help="the kernel-gap experiment (see the docstring)")
    args = ap.parse_args(argv)
    if args.fit_kernel_gap and args.static_only:  # the gap is fitted on the serving runs --static-only skips
        ap.error("argument --fit-kernel-gap: fits on the serving runs, which --static-only skips (drop one)")
    out: dict[str, Any] = {}
    if not args.serving_only:
        rows = evaluate(load_points())
        out["static"] = {"rows": rows, "summary": summary(rows)}
        if not args.json:
            _print_static(rows, out["static"]["summary"])
    if not args.static_only:
        runs, skipped = load_runs()
        cases = [serving_case(r) for r in runs]
        results = {"catalog": evaluate_serving(cases)}
        fit = None
        if args.fit_kernel_gap:
            fit = fit_configs(cases)
            gaps = fit_kernel_gap(cases, fit)
            results["fitted"] = evaluate_serving(cases, gaps)
            with kernel_gap(gaps):
                static = evaluate(load_points())
            out["kernel_gap_s"] = gaps
            out["static_with_fitted_gap"] = {"rows": static, "summary": summary(static)}
        out["serving"] = {"table": serving_table(cases, results, fit), "skipped": skipped,
                          "rows": [{**{k: c[k] for k in ("id", "measured_ttft_ms", "measured_tpot_ms")},
                                    **{col: res[i] for col, res in results.items()}} for i, c in enumerate(cases)]}
        if not args.json:
            reasons: dict[str, int] = {}
            for _, why in skipped:
                reasons[why] = reasons.get(why, 0) + 1
            print(f"\nserving: {len(cases)} InferenceX runs costed (SGLang, collocated), every one held out"
                  + "".join(f"; skipped {n}: {why}" for why, n in reasons.items()))
            _print_serving(out["serving"]["table"])
            if fit:
                print("\nkernel gap fitted on " + ", ".join(sorted(fit)) + ": " + ", ".join(
                    f"{gen} {gap * 1e6:.1f} us" for gen, gap in out["kernel_gap_s"].items()))
                s = out["static_with_fitted_gap"]["summary"]["catalog"]
                print(f"the static vLLM batches with it (another source, held out): median |error| "
                      f"{s['median_abs']:.0%} (signed {s['median_signed']:+.0%}), worst {s['worst']} "
                      f"{s['worst_error']:+.0%}")
    if args.json:
        print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
