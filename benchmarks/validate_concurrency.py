"""Fixed-concurrency serving runs: predicted vs measured mean TTFT and mean TPOT, grouped by engine.

    python benchmarks/validate_concurrency.py                   # every covered row, class-default constants
    python benchmarks/validate_concurrency.py --limit 20 --engine vllm
    python benchmarks/validate_concurrency.py --fit --csv out.csv
    python benchmarks/validate_concurrency.py --constants catalog --fit --fit-only engine:   # engine constants only
    python benchmarks/validate_concurrency.py --with engine:trtllm.eager_launch_s=3e-5        # try one value

Sources
  ../shared/measured/blackwell_serving.csv (AIConfigurator's measured Blackwell runs): the DENSE
  COLLOCATED rows (mode=agg; meta-llama/Llama-3.1-70B, Qwen/Qwen3-32B, nvidia/Qwen3-32B-NVFP4). MoE
  models and disaggregated rows are benchmarks/validate_moe.py's (which reuses this file's simulation,
  constants, fit and tables; predict_deployment below); here they, and every other row this harness cannot
  map, are counted under a skip reason. The Hopper rows of the same source are reserved for an
  independent check and are not used here in any way. nvidia/Qwen3-32B-NVFP4 is simulated as the
  Qwen/Qwen3-32B architecture (precision nvfp4) when the model catalog does not list the checkpoint.
  benchmarks/public_concurrency.yaml: the public tables of ../shared/measured/public_concurrency.md, and the
  public pages its tables' `source:` names (SGLang's DeepSeek-V4 cookbook cells among them, with their attention
  DP, expert parallelism and speculative decoding as `settings`). Tables whose hardware part or precision the page
  does not state are skipped with the reason; so are those that run speculative decoding without stating its
  acceptance, unless --assume-acceptance names one (printed in each row's notes).

Row -> simulation: one function, `predict(case, constants)`: `phasewise.sim.api.run` with the row's
engine preset (engine="vllm"|"sglang"|"trtllm": each brings its scheduler and its defaults for the GPU
and version), its benchmark client, request count and warm-up, and the row's batch_size as the engine's
own sequence-cap knob (max_num_seqs / max_running_requests / max_batch_size). TensorRT-LLM rows whose
prompt plus batch exceeds max_num_tokens get max_num_tokens = isl + batch (chunking is off: a step must
hold a whole prompt beside the running decodes, as trtllm-bench sets it). CSV rows: the token budget
(vLLM max_num_batched_tokens, TensorRT-LLM max_num_tokens) is batch_size + isl + 1500, the value
AIConfigurator's generator writes for an aggregated worker (generator/rule_plugin/benchmark/{trtllm,vllm}.rule;
assumed to be how its silicon rows were deployed: the CSV does not list engine flags). KV cache: FP8 for fp8 and fp4 rows. Evidence: the TensorRT-LLM FP8 TP1 1024/8192 run at
concurrency 64 holds 64 x 9,216 tokens of KV (590k) with a 347 ms mean TTFT, which a bf16 KV cache
(320 KiB/token on Llama-3.1-70B: 189 GB) cannot hold on one B200 next to 70 GB of weights, and FP8
checkpoints of NVIDIA's Model Optimizer quantize the KV cache too (an assumption otherwise: stated).
(The baseline before the presets existed: median |error| of mean TTFT 135 %, TPOT 17 %, over 265 rows.)
Either way the row's own settings are passed: TP, PP, precision (its quant modes by quant_precision's rule:
fp8 -> fp8, fp4/nvfp4 -> nvfp4, empty/bf16 -> bf16, ...), max batch = batch_size, replicas. A public table whose
engine is not stated is simulated as vllm (printed as such). A row whose concurrency differs from its batch_size
(no attention-DP) does not state its deployment (the CSV has no worker count): read as k = C / batch
replicas, such rows contradict themselves (Qwen3-32B on gb200: batch 1 at concurrency 2 measures 5x the
TPOT of concurrency 1), so they are skipped with that reason.

Benchmark client and request count (the CSV does not say). Assumption: the rows were measured the way
AIConfigurator's own 2025 `eval` pipeline measures a deployment (not proven: the CSV names no client),
which runs genai-perf at fixed concurrency C with --request-count 10*C,
--warmup-request-count 2*C, fixed ISL/OSL (stddev 0, min_tokens = max_tokens = OSL, ignore_eos)
(ai-dynamo/aiconfigurator src/aiconfigurator/eval/benchmarks/genai_perf_runner.py, called by
src/aiconfigurator/eval/pipeline.py). Its newer generated bench_run.sh uses aiperf with
--num-requests 50*C and --warmup-request-count 2*C (backend_templates/benchmark/bench_run.sh.j2):
`--rounds 50` reproduces that reading. So each row simulates N = rounds * C requests (default 10*C)
from C closed-loop clients that all start at t=0; the 2*C warm-up requests are assumed to finish
before the measured ones start and are not simulated (today's API; the preset API gets warmup=2*C).
Public tables that do not state a request count get max(10, 2*C) (genai-perf's default rule).

Fit / held-out split (fixed before any error was looked at): a row is one unit, and rows are
assigned by configuration = (backend, model, system, precision, TP). Within each backend, the
configurations are ordered by sha256 of that key and the first ceil(n/3) of them are 'fit', the rest
'test' (held out): held-out rows are configurations the fit never saw. The split is computed over
every dense collocated configuration in the CSV, whether or not its hardware loads today, so it does
not move when new hardware entries land. Public tables are held out, except those a constant was chosen
because of (CHOSEN_TABLES: InferenceX's DeepSeek-R1 H200 runs, Hopper's per-kernel gap), whose rows are 'chosen':
printed apart and never pooled into a held-out ('test') figure.

Constants and --fit. 'class-default' (the default --constants) = the engine profiles as in
engines.yaml (class defaults, not fitted) and each hardware entry's efficiencies reset to its kind's
defaults in efficiency.yaml; '--constants catalog' takes the catalog as shipped. Candidate constants
are applied without editing YAML: in each worker process the module-level names through which
phasewise.sim.simulate (and, with presets, phasewise.specs.engines) load profiles, hardware and models
(load_engine, load_hardware, load_model) are wrapped so the profile / efficiency / model comes back with the
candidate values (`--with model:openai/gpt-oss-120b.expert_top20_share=0.5`), and the cached cost models
(_build_group) are cleared whenever the candidate changes (the same hook benchmarks/validate_serving.py uses).
--fit runs coordinate descent with a golden-section search per constant (numpy only) over FIT_PARAMS (per
engine its host constants; shared by the Blackwell entries (b200, b300, gb200, gb300) their GEMM and memory
efficiencies and per-kernel gap; the routing skew of a MoE model whose skew no measurement gives), minimizing
the mean over fit rows of |ln(pred/measured)| of mean TTFT plus that of mean TPOT (each capped at ln 10); by
default the fit simulates 2*C requests per row
(--fit-rounds; 0 = as many as the evaluation). Fitted constants are printed, never written to the YAML.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib
import json
import math
import re
import sys
import time
import typing
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least  # noqa: E402 - the scripts' shared flag checks (a whole number >= a bound)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
CSV_PATH = SHARED / "measured" / "blackwell_serving.csv"
YAML_PATH = HERE / "public_concurrency.yaml"

# a checkpoint name the model catalog may not list, and the architecture it is a quantization of
# a re-quantized checkpoint -> the catalog architecture it keeps (its table's `precision` says how it is stored):
# SGLang's FP8 repackaging of DeepSeek-V4 (experts block-FP8 instead of MXFP4, for Hopper) and NVIDIA's NVFP4 ones
# (NVIDIA's ModelOpt checkpoints quantize the same architecture's linear layers: config.json keeps its fields)
MODEL_FALLBACK = {"nvidia/Qwen3-32B-NVFP4": "Qwen/Qwen3-32B",
                  "sgl-project/DeepSeek-V4-Flash-FP8": "deepseek-ai/DeepSeek-V4-Flash",
                  "sgl-project/DeepSeek-V4-Pro-FP8": "deepseek-ai/DeepSeek-V4-Pro",
                  "nvidia/DeepSeek-V4-Flash-NVFP4": "deepseek-ai/DeepSeek-V4-Flash",
                  "nvidia/DeepSeek-V4-Pro-NVFP4": "deepseek-ai/DeepSeek-V4-Pro",
                  "nvidia/DeepSeek-R1-NVFP4": "deepseek-ai/DeepSeek-R1",
                  "nvidia/DeepSeek-V3.1-NVFP4": "deepseek-ai/DeepSeek-V3",  # V3.1 keeps V3's DeepseekV3 fields
                  "nvidia/Kimi-K2.5-NVFP4": "moonshotai/Kimi-K2.5",
                  "nvidia/Qwen3-235B-A22B-NVFP4": "Qwen/Qwen3-235B-A22B",
                  "nvidia/MiniMax-M2.5-NVFP4": "MiniMaxAI/MiniMax-M2.5",
                  "nvidia/MiniMax-M2.7-NVFP4": "MiniMaxAI/MiniMax-M2.7",  # M2's fields (its file: 196,608 positions)
                  "nvidia/GLM-5-NVFP4": "zai-org/GLM-5",
                  "nvidia/Llama-3.1-70B-Instruct-FP8": "meta-llama/Llama-3.1-70B",
                  "Qwen/Qwen3-32B-FP8-Static-PerTensor": "Qwen/Qwen3-32B"}
# precisions whose rows run an FP8 KV cache (the harness docstring's evidence: FP8 and FP4 checkpoints quantize it)
FP8_KV = ("fp8", "fp8-block", "nvfp4", "mxfp4", "bf16-mxfp4")
# a public table's rows: the KV dtype its command sets (settings kv_dtype), else FP8 only where the checkpoint's own
# quantization config quantizes the KV cache (NVIDIA Model Optimizer's FP8 and NVFP4 checkpoints); DeepSeek's
# block-FP8 and OpenAI's MXFP4 checkpoints do not, and a `vllm serve` / `sglang` command without --kv-cache-dtype
# runs the model's dtype ("auto")
PUBLIC_FP8_KV = ("fp8", "nvfp4")
# AIConfigurator's quant modes (its sdk/common.py GEMMQuantMode and MoEQuantMode) -> phasewise precisions ('' and
# None: the mode not written; a mode missing here is not mapped, and the row says so)
GEMM_QUANT = {"": None, "bf16": "bf16", "bfloat16": "bf16", "float16": "bf16", "fp8": "fp8", "fp8_static": "fp8",
              "fp8_ootb": "fp8", "fp8_block": "fp8-block", "sq": "int8", "int8_wo": "w8a16", "int4_wo": "w4a16",
              "nvfp4": "nvfp4"}
MOE_QUANT = {"": None, "bf16": "bf16", "bfloat16": "bf16", "float16": "bf16", "fp8": "fp8", "fp8_block": "fp8-block",
             "int4_wo": "w4a16", "nvfp4": "nvfp4",
             # gpt-oss's native MXFP4 experts beside BF16 attention: its Hopper (W4A16) and Blackwell (W4A8) kernels
             "w4a16_mxfp4": "bf16-mxfp4", "w4a8_mxfp4_mxfp8": "bf16-mxfp4"}
# CSV system (AIConfigurator's system names) -> names to try in order (the CSV's own name first); the Hopper and
# Ampere ones too, so a CSV of the same source's rows on those parts runs through this harness unchanged (--rows)
HARDWARE_NAMES = {"b200_sxm": ("b200_sxm", "b200"), "b300_sxm": ("b300_sxm", "b300"),
                  "gb200": ("gb200",), "gb300": ("gb300",), "h100_sxm": ("h100_sxm", "h100-sxm"),
                  "h200_sxm": ("h200_sxm", "h200-sxm"), "a100_sxm": ("a100_sxm", "a100-sxm-80gb"), "l40s": ("l40s",)}
BLACKWELL = ("b200", "b300", "gb200", "gb300", "b200_sxm", "b300_sxm")
PRECISION = {"fp8": "fp8", "fp4": "nvfp4", "nvfp4": "nvfp4", "": "bf16", "bf16": "bf16"}
ENGINES = ("vllm", "sglang", "trtllm")
# benchmark clients the engine-preset API names; others are not passed (printed as not modelled)
PRESET_CLIENTS = {"genai-perf": "genai-perf", "aiperf": "aiperf", "vllm bench serve": "vllm-bench", "inferencex": "inferencex",
                  "sglang bench_serving": "sglang-bench"}
LN10 = math.log(10.0)
# A public table's TTFT quantiles, where its page gives them beside the mean: (case key, the table's metric key)
TTFT_QUANTILES = (("ttft_p50", "ttft_median_ms"), ("ttft_p99", "ttft_p99_ms"))
# AIConfigurator's generator sets an agg worker's token budget (TensorRT-LLM max_num_tokens, vLLM
# max_num_batched_tokens) to max_batch_size + isl + 1500 (generator/rule_plugin/benchmark/trtllm.rule and
# vllm.rule, "agg max_num_tokens = max_batch_size + SlaConfig.isl + 1500")
AIC_BUDGET_MARGIN = 1500


# --- rows -> cases --------------------------------------------------------------------------------
@cache
def resolve_hardware(names: tuple[str, ...]) -> str | None:
    from phasewise.specs import load_hardware
    for name in names:
        try:
            load_hardware(name)
            return name
        except Exception:  # noqa: BLE001 - any failure means "does not load yet"
            continue
    return None


@cache
def resolve_model(name: str) -> str | None:
    from phasewise.specs import load_model
    for candidate in (name, MODEL_FALLBACK.get(name)):
        if candidate is None:
            continue
        try:
            load_model(candidate)
            return candidate
        except Exception:  # noqa: BLE001
            continue
    return None


def quant_precision(row: dict[str, str], dense: bool = False) -> tuple[str | None, str]:
    """A row's phasewise precision from its (precision, gemm_quant_mode, moe_quant_mode) columns, or None and why:
    the GEMM and MoE modes' scheme where they agree (or one is not written), block-FP8 for per-tensor FP8 linear
    layers beside block-FP8 experts (DeepSeek's checkpoints), MXFP4 experts beside BF16 layers (gpt-oss); the
    `precision` column alone where neither mode is written. A dense model's MoE mode is not read."""
    gemm, moe = row.get("gemm_quant_mode", ""), row.get("moe_quant_mode", "")
    if dense or moe == gemm:
        moe = ""
    if gemm not in GEMM_QUANT or moe not in MOE_QUANT:
        return None, f"quant modes {gemm or '-'} / {moe or '-'} not mapped"
    linear, experts = GEMM_QUANT[gemm], MOE_QUANT[moe]
    if experts == "bf16-mxfp4":
        return experts, ""
    if linear is None and experts is None:
        prec = PRECISION.get(row["precision"])
        return prec, "" if prec else f"precision '{row['precision']}' not mapped"
    if linear is None or experts is None or linear == experts:
        return linear or experts, ""
    if {linear, experts} == {"fp8", "fp8-block"}:
        return "fp8-block", ""
    return None, f"quant modes {gemm} / {moe}: no phasewise scheme holds {linear} layers beside {experts} experts"


@cache
def is_dense(model_path: str) -> bool:
    """Whether a row's checkpoint is a dense model in the catalog (no routed experts); one the catalog does not
    know is left to validate_moe.py, which reports it."""
    name = resolve_model(model_path)
    if name is None:
        return False
    from phasewise.specs import load_model
    return load_model(name).num_experts == 0


def config_key(row: dict[str, str]) -> str:
    return "|".join((row["backend"], row["model_path"], row["system"], row["precision"], row["tp_size"]))


def split_configs(rows: list[dict[str, str]]) -> set[str]:
    """The 'fit' configurations: per backend, the first ceil(n/3) by sha256 of the key."""
    by_backend: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_backend[r["backend"]].add(config_key(r))
    fit: set[str] = set()
    for keys in by_backend.values():
        ordered = sorted(keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
        fit.update(ordered[: math.ceil(len(ordered) / 3)])
    return fit


# the measured CSV's columns (../shared/measured/README.md): a --rows file has them all (values may be empty)
ROW_COLUMNS = ("id,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,moe_quant_mode,"
               "concurrency,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,"
               "prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,"
               "prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,"
               "decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms,"
               "measured_on,image").split(",")


# the columns the harnesses read as numbers: a value there is a whole number >= 0 (empty: not stated, a row the
# harness skips with the reason, e.g. 'concurrency not stated'), except the lengths (whole numbers >= 1) and the
# measured means (numbers > 0), which every row states (../shared/measured/README.md)
COUNT_COLUMNS = tuple(c for c in ROW_COLUMNS if c.endswith(("_size", "_num_workers")) or c == "concurrency")
REQUIRED_NUMBERS = {"isl": "a whole number of tokens >= 1", "osl": "a whole number of tokens >= 1",
                    "silicon_ttft_ms": "a number of milliseconds > 0",
                    "silicon_tpot_ms": "a number of milliseconds > 0"}


def row_value_error(row: dict[str, str]) -> str | None:
    """The first value of a measured CSV row that is not what the harnesses read it as ('field 'isl' is '1k': it
    must be ...'), else None."""
    for col in COUNT_COLUMNS:
        value = (row.get(col) or "").strip()
        if value and not (value.isdigit() and value.isascii()):
            return f"field '{col}' is {value!r}: it must be a whole number >= 0, or empty where not stated"
    for col, what in REQUIRED_NUMBERS.items():
        value = (row.get(col) or "").strip()
        try:
            ok = int(value) >= 1 if col in ("isl", "osl") else math.isfinite(float(value)) and float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            return f"field '{col}' is {value!r}: it must be {what}"
    return None


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a measured CSV; a one-line exit naming the file when it is no CSV text or lacks some of
    ROW_COLUMNS, and the file, line and field of a value that is not a number where the harnesses need one."""
    if path.is_dir():
        raise SystemExit(f"--rows {path}: is a directory; give a measured CSV file")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ROW_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise SystemExit(f"{path}: missing columns {', '.join(missing)} (a measured CSV has all of "
                                 "../shared/measured/blackwell_serving.csv's columns; values may be empty)")
            rows = []
            for row in reader:
                why = row_value_error(row)
                if why is not None:
                    raise SystemExit(f"{path} line {reader.line_num} (id {row.get('id') or '?'}): {why}")
                rows.append(row)
            return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"--rows {path}: not a CSV text file ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
                         ) from None


def load_csv_cases(path: Path = CSV_PATH, rounds: int = 10, warmup_rounds: int = 2
                   ) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Cases for the dense collocated rows; every other row as (source, id, skip reason)."""
    rows = read_rows(path)
    dense_agg = [r for r in rows if is_dense(r["model_path"]) and r["mode"] == "agg"]
    fit = split_configs(dense_agg)
    cases, skipped = [], []
    for r in rows:
        why = None
        precision, unmapped = quant_precision(r, dense=True)
        if not is_dense(r["model_path"]):
            why = "MoE model (another issue)"
        elif r["mode"] != "agg":
            why = "disaggregated (mode=disagg; another issue)"
        elif not r["concurrency"]:
            why = "concurrency not stated in the source"
        elif r["backend"] not in ENGINES:
            why = f"backend '{r['backend']}' not mapped"
        elif precision is None:
            why = unmapped
        if why is None:
            hw = resolve_hardware(HARDWARE_NAMES.get(r["system"], (r["system"],)))
            model = resolve_model(r["model_path"])
            c, batch = int(r["concurrency"]), int(r["batch_size"] or r["concurrency"])
            adp = int(r["attention_dp_size"] or 1)
            if hw is None:
                why = f"hardware '{r['system']}' not in the catalog yet"
            elif model is None:
                why = f"model '{r['model_path']}' not in the catalog"
            elif adp > 1:
                why = "attention data parallel"
            elif c != batch:
                # e.g. Qwen3-32B on gb200, batch 1 at concurrency 2: read as 2 replicas, its measured TPOT
                # (42 ms) is 5x that at concurrency 1 (8 ms), which 2 replicas cannot give
                why = "deployment not stated: concurrency != batch_size and no worker count"
        if why is not None:
            skipped.append(("csv", r["id"], why))
            continue
        replicas = c // batch
        cases.append({
            "source": "csv", "id": r["id"], "group": f"csv:{r['backend']}", "engine": r["backend"],
            "model": model, "model_stated": r["model_path"], "hardware": hw, "system": r["system"],
            "tp": int(r["tp_size"]), "pp": int(r["pp_size"] or 1), "replicas": replicas, "max_batch": batch,
            "precision": precision, "isl": int(r["isl"]), "osl": int(r["osl"]),
            "concurrency": c, "requests": rounds * c, "warmup": warmup_rounds * c, "client": "genai-perf",
            "measured_ttft_ms": float(r["silicon_ttft_ms"]), "measured_tpot_ms": float(r["silicon_tpot_ms"]),
            "split": "fit" if config_key(r) in fit else "test", "config": config_key(r),
            "notes": [f"{replicas} replicas (inferred: concurrency / batch_size)"] if replicas > 1 else [],
        })
    return cases, skipped


# Public tables a constant was chosen because of (not fitted on them, but not held out either): their rows get the
# split 'chosen', printed apart and never pooled into a held-out ('test') figure. The GH100 parts' per-kernel gap
# (efficiency.yaml kernel_launch_s: b200's fitted 3.8 us) was chosen because of InferenceX's 9 DeepSeek-R1 H200 rows
# (README, "Hopper's per-kernel gap").
CHOSEN_WHY = "Hopper's per-kernel gap was chosen because of these rows: not held out"
CHOSEN_TABLES = {t: "chosen" for t in ("inferencex-issue-870-dsr1-fp8-h200-sglang-c4",
                                       "inferencex-issue-870-dsr1-fp8-h200-sglang-sweep",
                                       "inferencex-issue-890-dsr1-fp8-h200-sglang")}


def load_public_cases(path: Path = YAML_PATH, assume_parts: dict[str, str] | None = None,
                      assume_acceptance: float | None = None
                      ) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
    """Cases for the public tables' rows (held out, split 'test', except CHOSEN_TABLES' rows: 'chosen'); the rest
    as (source, id, skip reason). `assume_parts`
    (--assume-part): a GPU named in a table's stated hardware (e.g. 'H100') -> the catalog part assumed for it
    where the page does not pin one (printed in each row's notes); without it such tables are skipped.
    `assume_acceptance` (--assume-acceptance): the per-token draft acceptance assumed for tables that run
    speculative decoding without stating it (printed in each row's notes); without it such tables are skipped."""
    tables = yaml.safe_load(path.read_text())["tables"]
    cases, skipped = [], []
    for t in tables:
        s = t["settings"]
        for i, row in enumerate(t["rows"]):
            get = lambda k: row.get(k, s.get(k, "unknown"))  # noqa: E731 - row overrides table
            rid = f"{t['id']}#{i + 1}"
            reasons, notes = [], []
            hardware = get("hardware")
            if hardware == "unknown":
                stated = str(s.get("stated_hardware", "?"))
                named = [gpu for gpu in (assume_parts or {}) if re.search(rf"\b{re.escape(gpu)}\b", stated)]
                if len(named) == 1:
                    hardware = assume_parts[named[0]]
                    notes.append(f"hardware part not stated ('{stated}'): assumed {hardware} (--assume-part)")
                else:
                    reasons.append(f"hardware part not stated ('{stated}')")
            if get("precision") == "unknown":
                reasons.append("precision not stated")
            all_at_once = get("concurrency") == "unlimited" and isinstance(get("requests"), int)
            if not isinstance(get("concurrency"), int) and not all_at_once:
                reasons.append("not fixed concurrency")
            if get("lengths") in ("sharegpt",):
                reasons.append("ShareGPT lengths")
            spec = s.get("speculative")
            acceptance = spec.get("acceptance", "unknown") if spec else None
            if spec and acceptance == "unknown":
                if assume_acceptance is None:
                    reasons.append(f"speculative decoding ({speculative_label(spec)}): draft acceptance not stated")
                else:
                    acceptance = assume_acceptance
                    notes.append(f"{speculative_label(spec)}: draft acceptance not stated, assumed {acceptance} per "
                                 "token (--assume-acceptance)")
            model = resolve_model(get("model"))
            if not reasons and model is None:
                reasons.append(f"model '{get('model')}' not in the catalog")
            hw = None if reasons else resolve_hardware((hardware,))
            if not reasons and hw is None:
                reasons.append(f"hardware '{hardware}' does not load")
            if reasons:
                skipped.append(("public", rid, "; ".join(reasons)))
                continue
            if all_at_once:  # every prompt released at t=0, no cap: C = N clients sending one request each
                c = int(get("requests"))
                notes.append(f"all {c} prompts at once: simulated as {c} clients sending one request each")
            else:
                c = int(get("concurrency"))
            engine = get("engine")
            if engine not in ENGINES:
                notes.append("engine not stated: simulated with the vllm mapping")
            tp, pp = get("tp"), get("pp")
            if tp == "unknown":
                tp = int(get("gpus"))
                notes.append(f"TP not stated: assumed TP{tp} (all stated GPUs in one instance)")
            if pp == "unknown":
                pp = 1
            n = get("requests")
            if not isinstance(n, int):
                n = max(10, 2 * c)
                notes.append(f"request count not stated: assumed max(10, 2C) = {n}")
            if get("lengths") == "unknown":
                notes.append("length distribution not stated: simulated fixed")
            elif get("lengths") == "client default" and get("client") in PRESET_CLIENTS:
                notes.append(f"lengths: the {PRESET_CLIENTS[get('client')]} client preset's")
            elif get("lengths") != "fixed":
                notes.append(f"lengths {get('lengths')}: simulated fixed at isl/osl")
            version = stated_version(engine, get("engine_release"))
            if engine in ENGINES and get("engine_release") != "unknown" and version is None:
                notes.append(f"no preset for {get('engine_release')}: simulated with {engine}'s default version")
            notes += [f"{name} {s[key]}" for key, name in (("attention_dp", "attention DP"), ("ep", "EP"))
                      if s.get(key) is not None]
            notes += [f"not modelled: {flag}" for flag in s.get("unmodelled") or ()]
            client = get("client")
            if client not in PRESET_CLIENTS:
                notes.append(f"client '{client}' not modelled")
            # warm-up requests before the measured ones: a stated count, the client preset's own ('client
            # default': None lets the preset decide), or none where the page does not say
            warmup = get("warmup")
            if warmup == "client default" and client in PRESET_CLIENTS:
                warmup = None  # the run's client preset decides
            elif warmup in ("client default", "unknown"):
                notes.append("warm-up: none simulated" + (f" (client '{client}' has no preset)"
                                                          if warmup == "client default" else " (not stated)"))
                warmup = 0
            elif not isinstance(warmup, int):
                raise ValueError(f"{path.name} table {t['id']}: warmup {warmup!r} is not a count, 'client default' "
                                 "or 'unknown'")
            cases.append({
                "source": "public", "id": rid, "group": f"public:{t['id']}",
                "engine": engine if engine in ENGINES else "unknown", "engine_version": version,
                "model": model, "model_stated": get("model"), "hardware": hw, "system": hardware,
                "tp": int(tp), "pp": int(pp), "replicas": 1,
                "max_batch": None if get("max_seqs") == "engine default" else max(c, 256),
                "precision": get("precision"), "isl": int(get("isl")), "osl": int(get("osl")),
                "kv_dtype": row.get("kv_dtype", s.get("kv_dtype")) or ("fp8" if get("precision") in PUBLIC_FP8_KV
                                                                       else None),
                "concurrency": c, "requests": n, "warmup": warmup, "client": client,
                "measured_ttft_ms": float(row["ttft_ms"]), "measured_tpot_ms": float(row["tpot_ms"]),
                # TTFT quantiles where the page gives them (compared apart: print_ttft_quantiles)
                **{f"measured_{q}_ms": float(row[key]) for q, key in TTFT_QUANTILES if key in row},
                "split": CHOSEN_TABLES.get(t["id"], "test"), "config": t["id"],
                "notes": notes + ([f"split 'chosen': {CHOSEN_WHY}"] if t["id"] in CHOSEN_TABLES else []),
                "knobs": {**(s.get("knobs") or {}), **(row.get("knobs") or {})},  # a row's own flags win
                "run_layout": public_layout(s, acceptance),
            })
    return cases, skipped


def speculative_label(spec: dict[str, Any]) -> str:
    """'EAGLE 3-1-4': a table's speculative settings as SGLang's recipes name them (steps-topk-draft tokens)."""
    return f"{spec['algorithm']} {spec['num_steps']}-{spec['eagle_topk']}-{spec['num_draft_tokens']}"


def public_layout(settings: dict[str, Any], acceptance: float | None) -> dict[str, Any]:
    """The run's MoE / attention layout and speculative decoding as the sim API takes them: attention_dp and ep
    where the table states them; an EAGLE chain of num_steps drafts from the model's own MTP module (top-1: each
    step verifies num_steps drafts plus the bonus token, num_draft_tokens = num_steps + 1)."""
    layout = {key: int(settings[key]) for key in ("attention_dp", "ep") if settings.get(key) is not None}
    spec = settings.get("speculative")
    if spec:
        if spec.get("algorithm") != "EAGLE" or spec.get("eagle_topk") != 1 \
                or spec.get("num_draft_tokens") != spec.get("num_steps") + 1:
            raise ValueError(f"speculative {spec}: only top-1 EAGLE chains (num_draft_tokens = num_steps + 1) "
                             "are simulated")
        layout.update(spec_tokens=int(spec["num_steps"]), spec_acceptance=acceptance, spec_draft="mtp")
    return layout


def stated_version(engine: str, release: str) -> str | None:
    """The engine preset's version a page's release string names ('vLLM 0.10.2' -> '0.10'), matched on the
    preset's own version keys (major.minor, or the exact string); None where the preset has no such version."""
    from phasewise.specs.engine_presets import preset_versions

    if engine not in ENGINES or not isinstance(release, str):
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if match is None:
        return None
    versions = preset_versions(engine)
    for key in (match.group(0), f"{match.group(1)}.{match.group(2)}"):
        if key in versions:
            return key
    return None


# --- one case -> one simulation -------------------------------------------------------------------
_STATE: dict[str, Any] = {"applied": None}


def _preset_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    """The engine-preset API's arguments: the preset brings the scheduler and its defaults; the row adds
    its client, request count, warm-up and the sequence cap (batch_size) in the engine's own knob name."""
    from phasewise.specs.engines import graph_knobs, knob_values

    engine = case["engine"] if case["engine"] in ENGINES else "vllm"
    version = case.get("engine_version")
    kw = dict(engine=f"{engine}@{version}" if version else engine, num_prompts=case["requests"],
              warmup=case["warmup"],
              kv_dtype=case["kv_dtype"] if "kv_dtype" in case else "fp8" if case["precision"] in FP8_KV else None,
              **knob_values(engine, max_seqs=case["max_batch"]))
    if case["source"] == "csv":  # the token budget AIConfigurator's generator writes for an agg worker
        kw.update(knob_values(engine, token_budget=case["max_batch"] + case["isl"] + AIC_BUDGET_MARGIN))
        kw.update(graph_knobs(engine, case["max_batch"]))  # and its trtllm.rule's CUDA graphs: padded, to max_bs
    elif engine == "trtllm" and case["max_batch"] and case["isl"] + case["max_batch"] > 8192:
        # chunking off: max_num_tokens must hold a whole prompt next to the running decodes
        kw.update(knob_values(engine, token_budget=case["isl"] + case["max_batch"]))
    client = PRESET_CLIENTS.get(case["client"])
    if client is not None:
        kw["client"] = client
    kw.update(case.get("knobs") or {})  # the page's own engine flags (e.g. vLLM's async_scheduling)
    return kw


def _family(case: dict[str, Any]) -> str:
    return case["engine"] if case["engine"] in ENGINES else "vllm"


def apply_constants(constants: dict[str, Any] | None, family: str) -> None:
    """Make phasewise.sim.simulate load engine profiles / hardware with the candidate constants.

    constants: {"base": "class-default"|"catalog", "engine:<family>": {field: value},
                "hardware:<key>" or "hardware:blackwell": {efficiency field: value},
                "model:<catalog id>": {ModelSpec field: value}}."""
    from phasewise.specs.catalog import packaged

    sim_mod = importlib.import_module("phasewise.sim.simulate")  # the module: phasewise.sim exports a function of that name

    constants = constants or {}
    key = json.dumps([constants.get("base", "class-default"), constants.get(f"engine:{family}"),
                      {k: v for k, v in constants.items() if k.startswith(("hardware:", "model:"))}], sort_keys=True)
    if _STATE["applied"] == key:
        return
    # every module that resolves engine profiles by this name (presets load theirs in specs.engines)
    engine_mods = [sim_mod] + [sys.modules[m] for m in ("phasewise.specs.engines",) if m in sys.modules]
    if "orig" not in _STATE:  # each patched module's own loaders, for restore_constants
        _STATE["orig"] = {mod: {name: getattr(mod, name) for name in ("load_engine", "load_hardware", "load_model")
                                if hasattr(mod, name)} for mod in engine_mods}
    real_engine, real_hardware = _STATE["orig"][sim_mod]["load_engine"], _STATE["orig"][sim_mod]["load_hardware"]
    real_model = _STATE["orig"][sim_mod]["load_model"]
    base = constants.get("base", "class-default")
    # class defaults: the engine constants fitted on these rows (vllm's collective_overhead_s, TensorRT-LLM's
    # kv_handoff_s fitted on validate_moe.py's disaggregated fit rows) back at 0
    engine_upd = {"collective_overhead_s": 0.0} if base == "class-default" else {}
    engine_upd.update(constants.get(f"engine:{family}") or {})
    fitted_here = {"trtllm-pytorch": {"kv_handoff_s": 0.0}} if base == "class-default" else {}

    def load_engine(name: str):
        profile = real_engine(name)
        upd = {**fitted_here.get(profile.name, {}), **engine_upd}
        return profile.model_copy(update=upd) if upd and profile.name != "ideal" else profile

    def load_hardware(name: str):
        hw = real_hardware(name)
        upd: dict[str, Any] = {}
        if base == "class-default":  # every efficiency at its kind's default (absent ones: their own)
            upd.update({k: v for k, v in packaged("efficiency.yaml")["defaults"][hw.kind].items()
                        if not k.startswith("source")})
            upd.setdefault("weight_read_efficiency", {})
        if hw.key in BLACKWELL:
            upd.update(constants.get("hardware:blackwell") or {})
        upd.update(constants.get(f"hardware:{hw.key}") or {})
        for key in [k for k in upd if "." in k]:  # a dict field's entry, e.g. weight_read_efficiency.fp4
            field, entry = key.split(".", 1)
            upd[field] = {**getattr(hw.efficiency, field), **upd.get(field, {}), entry: upd.pop(key)}
        return hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=upd)}) if upd else hw

    model_upd = {k.split(":", 1)[1]: v for k, v in constants.items() if k.startswith("model:")}

    def load_model(name: str):
        spec = real_model(name)
        # class defaults: the model constants fitted on these rows back at their unfitted values
        upd = {**(FITTED_MODEL_CONSTANTS.get(spec.name, {}) if base == "class-default" else {}),
               **model_upd.get(spec.name, {})}
        return spec.model_copy(update=upd) if upd else spec

    for mod in engine_mods:
        if hasattr(mod, "load_engine"):
            mod.load_engine = load_engine
    sim_mod.load_hardware = load_hardware
    sim_mod.load_model = load_model
    sim_mod._build_group.cache_clear()
    _STATE["applied"] = key


def restore_constants() -> None:
    """Undo apply_constants in this process: the catalog's own loaders back and the group cache cleared, so that a
    caller running main() in-process (the tests) leaves no candidate constants behind for what runs after it."""
    if "orig" not in _STATE:
        return
    for mod, loaders in _STATE.pop("orig").items():
        for name, loader in loaders.items():
            setattr(mod, name, loader)
    importlib.import_module("phasewise.sim.simulate")._build_group.cache_clear()
    _STATE["applied"] = None


def predict(case: dict[str, Any], constants: dict[str, Any] | None = None) -> dict[str, float]:
    """What the simulator predicts for one measured row (ms): mean TTFT ('ttft') and mean TPOT ('tpot'), the
    metrics every row is scored on, and the median and p99 TTFT ('ttft_p50', 'ttft_p99') of the same run."""
    from phasewise.sim.api import run

    apply_constants(constants, _family(case))
    if case.get("deployment") is not None:  # MoE / disaggregated rows (benchmarks/validate_moe.py)
        return predict_deployment(case)
    result = run(model=case["model"], hardware=case["hardware"], tp=case["tp"], pp=case["pp"],
                 precision=case["precision"], replicas=case["replicas"], concurrency=case["concurrency"],
                 isl=case["isl"], osl=case["osl"], **_preset_kwargs(case), **(case.get("run_layout") or {}))
    return _predicted(result.summary())


def _predicted(summary: dict[str, Any]) -> dict[str, float]:
    ttft = summary["ttft_ms"]
    return {"ttft": float(ttft["mean"]), "tpot": float(summary["tpot_ms"]["mean"]),
            "ttft_p50": float(ttft["p50"]), "ttft_p99": float(ttft["p99"])}


def predict_deployment(case: dict[str, Any]) -> dict[str, float]:
    """predict() for a case that carries its whole deployment (instance groups with their layouts and
    per-role engine knobs, as a deployment YAML holds them), from the same closed-loop client."""
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.metrics import Slo
    from phasewise.sim.simulate import simulate
    from phasewise.workload import client_workload

    dep = build_deployment(case["deployment"], f"CSV row {case['id']}")
    work = client_workload(PRESET_CLIENTS[case["client"]], case["concurrency"], case["requests"], case["warmup"],
                           case["isl"], case["osl"])
    return _predicted(simulate(dep, work, Slo(math.inf, math.inf)).summary())


def _work(task: tuple[int, dict[str, Any], dict[str, Any] | None]) -> dict[str, Any]:
    index, case, constants = task
    t0 = time.perf_counter()
    try:
        pred = predict(case, constants)
        err = ""
    except Exception as exc:  # noqa: BLE001 - one failing row must not stop the run
        pred = dict.fromkeys(("ttft", "tpot", "ttft_p50", "ttft_p99"), math.nan)
        err = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return {"index": index, **pred, "error": err, "wall_s": time.perf_counter() - t0}


def evaluate(cases: list[dict[str, Any]], constants: dict[str, Any] | None, pool) -> list[dict[str, Any]]:
    """Predictions for `cases` (in their order); the heaviest simulations are started first."""
    order = sorted(range(len(cases)), key=lambda i: -cases[i]["requests"] * cases[i]["osl"])
    tasks = [(i, cases[i], constants) for i in order]
    results = list(pool.map(_work, tasks)) if pool is not None else [_work(t) for t in tasks]
    out: list[dict[str, Any]] = [{}] * len(cases)
    for r in results:
        out[r["index"]] = r
    return out


# --- errors and tables ----------------------------------------------------------------------------
def rel_err(pred: float, meas: float) -> float:
    return pred / meas - 1 if math.isfinite(pred) and meas > 0 else math.nan


def stats(errs: list[float]) -> tuple[float, float, float]:
    """median, p90 and worst |error| (nan-free); a failed prediction counts as infinite error."""
    a = np.abs(np.array([e if math.isfinite(e) else math.inf for e in errs], dtype=float))
    if not len(a):
        return (math.nan,) * 3
    return float(np.median(a)), float(np.percentile(a, 90, method="higher")), float(a.max())


def fmt_pct(x: float) -> str:
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "fail"
    return f"{x:.0%}" if abs(x) < 100 else f"{x + 1:.0f}x"


def loss(case: dict[str, Any], res: dict[str, Any]) -> float:
    total = 0.0
    for pred, meas in ((res["ttft"], case["measured_ttft_ms"]), (res["tpot"], case["measured_tpot_ms"])):
        total += min(abs(math.log(pred / meas)), LN10) if math.isfinite(pred) and pred > 0 else LN10
    return total


def print_rows(cases, results, fitted=None) -> None:
    print(f"\n{'group':<42} {'model':<16} {'hw':<8} {'prec':<5} {'tp':>2} {'rep':>3} {'isl/osl':>10} {'C':>4} "
          f"{'N':>5} | {'TTFT ms':>9} {'pred':>9} {'err':>6} | {'TPOT ms':>7} {'pred':>7} {'err':>6} | split"
          + ("  | fitted TTFT err  TPOT err" if fitted else ""))
    for i in sorted(range(len(cases)), key=lambda i: (cases[i]["group"], cases[i]["model"], cases[i]["precision"],
                                                     cases[i]["tp"], cases[i]["isl"], cases[i]["osl"],
                                                     cases[i]["concurrency"])):
        c, r = cases[i], results[i]
        shape = f"{c['isl']}/{c['osl']}"
        line = (f"{c['group']:<42} {c['model_stated'].split('/')[-1][:16]:<16} {c['hardware'][:8]:<8} "
                f"{c['precision']:<5} {c['tp']:>2} {c['replicas']:>3} {shape:>10} "
                f"{c['concurrency']:>4} {c['requests']:>5} | {c['measured_ttft_ms']:>9.1f} {r['ttft']:>9.1f} "
                f"{fmt_pct(rel_err(r['ttft'], c['measured_ttft_ms'])):>6} | {c['measured_tpot_ms']:>7.2f} "
                f"{r['tpot']:>7.2f} {fmt_pct(rel_err(r['tpot'], c['measured_tpot_ms'])):>6} | {c['split']}")
        if fitted:
            f = fitted[i]
            line += (f"  | {fmt_pct(rel_err(f['ttft'], c['measured_ttft_ms'])):>15} "
                     f"{fmt_pct(rel_err(f['tpot'], c['measured_tpot_ms'])):>9}")
        if r["error"]:
            line += f"  ! {r['error']}"
        if c["notes"]:
            line += "  [" + "; ".join(c["notes"]) + "]"
        print(line)


def print_ttft_quantiles(cases, results) -> None:
    """The rows whose page gives a TTFT median or p99 beside the mean, each against the same simulated run's:
    whether the mean's error sits in the typical request (the median) or in the tail. Reported apart, scored
    nowhere (every row is scored on its means)."""
    idx = [i for i, c in enumerate(cases) if any(f"measured_{q}_ms" in c for q, _ in TTFT_QUANTILES)]
    if not idx:
        return
    print(f"\nTTFT quantiles where the page gives them (ms, measured / predicted, error):\n"
          f"{'group':<52} {'isl/osl':>10} {'C':>4} | {'mean':>22} | {'median':>22} | {'p99':>22}")
    errs: dict[str, list[float]] = {"ttft": [], "ttft_p50": [], "ttft_p99": []}
    for i in idx:
        c, r = cases[i], results[i]
        cells = []
        for q in ("ttft", "ttft_p50", "ttft_p99"):
            meas = c.get("measured_ttft_ms" if q == "ttft" else f"measured_{q}_ms")
            if meas is None:
                cells.append(f"{'-':>22}")
                continue
            err = rel_err(r[q], meas)
            errs[q].append(err)
            cells.append(f"{meas:>8.0f} {r[q]:>7.0f} {fmt_pct(err):>5}")
        print(f"{c['group'][:52]:<52} {c['isl']:>5}/{c['osl']:<4} {c['concurrency']:>4} | " + " | ".join(cells))
    summary = ", ".join(f"{name} {fmt_pct(stats(errs[q])[0])} ({len(errs[q])} rows)"
                        for name, q in (("mean", "ttft"), ("median", "ttft_p50"), ("p99", "ttft_p99")) if errs[q])
    print(f"median |error|: {summary}")


def print_table(cases, columns: list[tuple[str, list[dict[str, Any]], str]]) -> None:
    """columns: (label, results, which rows: 'all' | 'fit' | 'test' | 'chosen')."""
    print(f"\n{'group':<42} {'constants':<14} {'rows':<9} {'n':>3} | {'TTFT |err| median':>17} {'p90':>6} "
          f"{'worst':>6} | {'TPOT |err| median':>17} {'p90':>6} {'worst':>6}")
    groups = sorted({c["group"] for c in cases}) + ["ALL csv", "ALL public"]
    for g in groups:
        if g.startswith("ALL"):
            idx = [i for i, c in enumerate(cases) if c["source"] == g.split()[1]]
        else:
            idx = [i for i, c in enumerate(cases) if c["group"] == g]
        for label, results, which in columns:
            sel = [i for i in idx if which == "all" or cases[i]["split"] == which]
            if not sel:
                continue
            t = stats([rel_err(results[i]["ttft"], cases[i]["measured_ttft_ms"]) for i in sel])
            p = stats([rel_err(results[i]["tpot"], cases[i]["measured_tpot_ms"]) for i in sel])
            print(f"{g:<42} {label:<14} {which:<9} {len(sel):>3} | {fmt_pct(t[0]):>17} {fmt_pct(t[1]):>6} "
                  f"{fmt_pct(t[2]):>6} | {fmt_pct(p[0]):>17} {fmt_pct(p[1]):>6} {fmt_pct(p[2]):>6}")


# --- fitting --------------------------------------------------------------------------------------
# (constants key, field, low, high, log-scale search)
# Ranges are what the constants can physically be (a GEMM efficiency above 0.9 of the dense FP8/FP4 peak,
# or a kernel gap above 20 us, would be a fit absorbing something else).
FIT_PARAMS = [
    ("hardware:blackwell", "gemm_efficiency_max", 0.5, 0.9, False),
    ("hardware:blackwell", "weight_read_efficiency.fp4", 0.3, 1.0, False),
    ("hardware:blackwell", "memory_efficiency_max", 0.4, 0.95, False),
    ("hardware:blackwell", "kernel_launch_s", 5e-7, 2e-5, True),
]
for _eng in ENGINES:
    FIT_PARAMS += [(f"engine:{_eng}", "iteration_overhead_s", 1e-5, 2e-2, True),
                   (f"engine:{_eng}", "collective_overhead_s", 1e-7, 1e-4, True)]
# The host time per kernel of an iteration without a CUDA graph: SGLang and TensorRT-LLM's PyTorch backend run
# prefill eagerly (vLLM V1 replays piecewise graphs for mixed batches up to its largest size: see below). 1-100 us:
# a PyTorch op from Python costs ~5-30 us of host time; 2023 vLLM's fitted value was 28 us (engines.yaml).
FIT_PARAMS += [(f"engine:{_eng}", "eager_launch_s", 1e-6, 1e-4, True) for _eng in ("sglang", "trtllm")]
# vLLM's is not fitted: its piecewise graphs stop at the largest captured size (512 tokens by default), so longer
# prefills do run without graphs, but fitted on the 45 dense vLLM fit rows it goes to 48 us (TTFT 21 -> 16 %), which
# on the 99 MoE vLLM fit rows (validate_moe.py), with their several times more kernels per layer, moves TTFT
# 19.5 -> 28.3 % (p90 46 -> 90 %): a per-prefill cost of the dense TP8 rows, not a per-kernel one (2026-12-01).
# Disaggregated serving's hand-off between a prefill's end and its KV being usable on the decode instance (EngineProfile
# kv_handoff_s): 0.1-500 ms. Only benchmarks/validate_moe.py's disaggregated rows move it; vLLM has too few of them in
# the fit split (3, all at 128+ clients) to fit it.
FIT_PARAMS += [(f"engine:{_eng}", "kv_handoff_s", 1e-4, 0.5, True) for _eng in ("sglang", "trtllm")]
# A MoE model's routing skew where no measurement is published (perf/expert_load.py: the busiest 20 % of the
# experts' share of the routed tokens; 0.2 = uniform, 0.65 = the most skewed published, Qwen3-235B's): it sets how
# many distinct experts, so how many weights, a decode step of a given batch reads. Only benchmarks/validate_moe.py's
# gpt-oss, MiniMax-M2.5 and Kimi-K2.5 rows move theirs (each catalog entry's, so its aliases' too).
SKEW_FITTED_MODELS = ("openai/gpt-oss-120b", "MiniMaxAI/MiniMax-M2", "moonshotai/Kimi-K2-Instruct")
FIT_PARAMS += [(f"model:{name}", "expert_top20_share", 0.2, 0.8, False) for name in SKEW_FITTED_MODELS]
# the model constants fitted by the line above, at their unfitted values (the class-default column)
FITTED_MODEL_CONSTANTS = {name: {"expert_top20_share": None} for name in SKEW_FITTED_MODELS}


def golden_section(f, lo: float, hi: float, evals: int) -> tuple[float, float]:
    """Minimize f on [lo, hi] with `evals` evaluations; returns (x, f(x)) of the best point seen."""
    g = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    best = min((fc, c), (fd, d))
    for _ in range(max(evals - 2, 0)):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
            best = min(best, (fc, c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
            best = min(best, (fd, d))
    return best[1], best[0]


def fit(cases, constants: dict[str, Any], pool, evals: int, sweeps: int, rounds: int | None,
        only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Coordinate descent over FIT_PARAMS on the 'fit' rows (optionally with fewer requests per row), from
    `constants` (--constants' base and the --with candidates, which stay in every evaluation; a fitted one starts
    at its --with value); `only`: fit just the constants whose key or field starts with one of these (e.g.
    'engine:', 'eager_launch_s')."""
    from phasewise.specs import load_engine, load_model
    from phasewise.specs.catalog import packaged

    rows = [dict(c) for c in cases if c["split"] == "fit"]
    if rounds:
        for c in rows:
            c["requests"] = rounds * c["concurrency"]
    fams = sorted({_family(c) for c in rows})
    def profile(*names: str):
        for name in names:
            try:
                return load_engine(name)
            except Exception:  # noqa: BLE001
                continue
        raise RuntimeError(f"no engine profile among {names}")

    start = {"engine:vllm": profile("vllm"), "engine:sglang": profile("sglang", "vllm"),
             "engine:trtllm": profile("trtllm-pytorch")}
    gpu = packaged("efficiency.yaml")["defaults"]["gpu"]
    consts: dict[str, Any] = json.loads(json.dumps(constants))
    params = [p for p in FIT_PARAMS if (not only or any(_fits_only(p, o) for o in only))
              and not (p[0].startswith("engine:") and p[0].split(":")[1] not in fams)]  # no fit row of that engine
    for key, field, *_ in params:
        if field in consts.get(key, {}):  # a --with candidate: the fit starts there
            continue
        if key.startswith("model:"):  # its catalog value, else uniform routing
            value = getattr(load_model(key.split(":", 1)[1]), field) or 0.2
        else:
            value = getattr(start[key], field) if key.startswith("engine:") else gpu.get(field, 1.0)
        consts.setdefault(key, {})[field] = value
    per_fam: dict[str, float] = {}

    def family_loss(fam: str, cs: dict[str, Any]) -> float:
        sel = [c for c in rows if _family(c) == fam]
        res = evaluate(sel, cs, pool)
        return sum(loss(c, r) for c, r in zip(sel, res)) / max(len(rows), 1)

    for fam in fams:
        per_fam[fam] = family_loss(fam, consts)
    print(f"fit: {len(rows)} rows, start loss {sum(per_fam.values()):.4f}", flush=True)
    for sweep in range(sweeps):
        for key, field, lo, hi, log in params:
            fams_hit = fams if key.startswith(("hardware:", "model:")) else [key.split(":")[1]]

            def objective(x: float) -> float:
                cs = json.loads(json.dumps(consts))
                cs[key][field] = 10 ** x if log else x
                return sum(family_loss(f, cs) if f in fams_hit else per_fam[f] for f in fams)

            a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
            x, fx = golden_section(objective, a, b, evals)
            current = sum(per_fam.values())
            if fx < current:
                consts[key][field] = 10 ** x if log else x
                for f in fams_hit:
                    per_fam[f] = family_loss(f, consts)
            print(f"fit sweep {sweep + 1}: {key} {field} = {consts[key][field]:.4g}  loss {sum(per_fam.values()):.4f}",
                  flush=True)
    return consts


# --- main -----------------------------------------------------------------------------------------
def output_csv(path: str) -> str:
    """`--csv`'s type: an output file that can be written (plan/export.py check_output_path, the CLI's rule: not a
    directory, no file on its way, a writable folder; folders that do not exist yet are made when it is written) and
    is none of the inputs a run reads: the measured data (anything under ../shared), the package's catalog (anything
    in the phasewise package: its data YAMLs), this directory's files (the harnesses, their tables). The --rows file
    is refused by rows_args. One-line errors, before any run."""
    import phasewise
    from phasewise.errors import PhasewiseError
    from phasewise.plan.export import check_output_path

    target = Path(path).expanduser().resolve()
    if target == CSV_PATH.resolve() or SHARED.resolve() in target.parents or target == YAML_PATH.resolve():
        raise argparse.ArgumentTypeError(f"{path} is measured input data; --csv writes the predictions, "
                                         "give it a new file (e.g. /tmp/predictions.csv)")
    package = Path(phasewise.__file__).resolve().parent
    if package in target.parents:
        raise argparse.ArgumentTypeError(f"{path} is inside the phasewise package ({package}: its catalog is what "
                                         "the run reads); --csv writes the predictions, give it a new file "
                                         "(e.g. /tmp/predictions.csv)")
    if target.is_file() and target.parent == HERE:
        raise argparse.ArgumentTypeError(f"{path} is one of the benchmarks' own files; --csv writes the predictions, "
                                         "give it a new file (e.g. /tmp/predictions.csv)")
    try:
        check_output_path(path, path)
    except PhasewiseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return path


def add_rows_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--rows", type=Path, default=None,
                    help="the measured runs, a CSV with blackwell_serving.csv's columns (another part's rows of the "
                         "same source, a user's own runs); default ../shared/measured/blackwell_serving.csv")


def rows_missing(path: Path) -> str:
    """The one-line message for a --rows file that is not there."""
    if path == CSV_PATH:
        return f"{path} not found (../shared is not present)"
    return f"--rows {path}: no such file"


def rows_args(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse argv; the --csv output may not be the --rows input (one-line errors, before any run). `rows_given`:
    whether --rows was named (a --source that reads no CSV refuses it)."""
    args = ap.parse_args(argv)
    args.rows_given = args.rows is not None
    args.rows = CSV_PATH if args.rows is None else args.rows
    if args.csv and Path(args.csv).resolve() == args.rows.resolve():
        ap.error(f"argument --csv: {args.csv} is the --rows input; --csv writes the predictions, give it a new file")
    return args


def write_csv(path: str, cases, results, fitted, skipped) -> None:
    cols = ["source", "id", "group", "engine", "model", "hardware", "precision", "tp", "pp", "replicas",
            "max_batch", "isl", "osl", "concurrency", "requests", "split", "status",
            "measured_ttft_ms", "measured_tpot_ms", "pred_ttft_ms", "pred_tpot_ms", "err_ttft", "err_tpot",
            "fitted_ttft_ms", "fitted_tpot_ms", "fitted_err_ttft", "fitted_err_tpot", "notes"]
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)  # (output_csv checked that they can be made)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for i, (c, r) in enumerate(zip(cases, results)):
            row = {k: c.get(k, "") for k in cols}
            row.update(status="error: " + r["error"] if r["error"] else "ok",
                       model=c["model_stated"], pred_ttft_ms=r["ttft"], pred_tpot_ms=r["tpot"],
                       err_ttft=rel_err(r["ttft"], c["measured_ttft_ms"]),
                       err_tpot=rel_err(r["tpot"], c["measured_tpot_ms"]), notes="; ".join(c["notes"]))
            if fitted:
                fr = fitted[i]
                row.update(fitted_ttft_ms=fr["ttft"], fitted_tpot_ms=fr["tpot"],
                           fitted_err_ttft=rel_err(fr["ttft"], c["measured_ttft_ms"]),
                           fitted_err_tpot=rel_err(fr["tpot"], c["measured_tpot_ms"]))
            w.writerow(row)
        for source, rid, why in skipped:
            w.writerow({"source": source, "id": rid, "status": f"skipped: {why}"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=at_least(1), default=2, help="processes (1 = in this process)")
    ap.add_argument("--limit", type=at_least(1), default=None,
                    help="only the first N covered rows (CSV order, then public)")
    ap.add_argument("--engine", choices=ENGINES + ("unknown",), default=None, help="only rows of this engine")
    ap.add_argument("--source", choices=("all", "csv", "public"), default="all")
    ap.add_argument("--max-concurrency", type=at_least(1), default=None, help="only rows with concurrency <= this")
    ap.add_argument("--rounds", type=at_least(1), default=None,
                    help="CSV rows: requests per row = rounds x concurrency (default 10)")
    ap.add_argument("--warmup-rounds", type=at_least(0), default=None,
                    help="CSV rows: warm-up requests = this x concurrency (default 2)")
    add_constant_options(ap)
    ap.add_argument("--no-rows", action="store_true", help="print only the summary tables")
    ap.add_argument("--csv", type=output_csv, default=None,
                    help="write every row's prediction (and every skipped row) here (an output file)")
    add_rows_option(ap)
    ap.add_argument("--assume-part", action="append", default=[], metavar="GPU=KEY", type=assumed_part,
                    help="public tables whose page names a GPU but not its part (form factor, memory): run them "
                         "on this catalog part, printed as an assumption (repeatable), e.g. H100=h100-sxm")
    ap.add_argument("--tables", default="", metavar="PREFIX[,PREFIX]",
                    help="public tables: only those whose id starts with one of these (e.g. sglang-cookbook-dsv4)")
    ap.add_argument("--assume-acceptance", type=acceptance_value, default=None, metavar="A",
                    help="public tables that run speculative decoding without stating its acceptance: run them "
                         "with this per-token draft acceptance (0 <= A < 1), printed as an assumption")
    args = rows_args(ap, argv)
    check_source_options(ap, args)
    prefixes = table_prefixes(ap, args.tables) if args.tables else ()
    check_assumed_parts(ap, args.assume_part, prefixes)

    if not args.rows.exists() and args.source != "public":
        print(rows_missing(args.rows), file=sys.stderr)
        return 2
    cases: list[dict[str, Any]] = []
    skipped: list[tuple[str, str, str]] = []
    if args.source in ("all", "csv"):
        c, s = load_csv_cases(args.rows, args.rounds, args.warmup_rounds)
        cases += c
        skipped += s
    if args.source in ("all", "public"):
        c, s = load_public_cases(YAML_PATH, dict(args.assume_part), args.assume_acceptance)
        if args.tables:  # only the public tables whose id starts with one of these
            c = [case for case in c if case["group"].removeprefix("public:").startswith(prefixes)]
            s = [row for row in s if row[1].startswith(prefixes)]
        cases += c
        skipped += s
    all_fit = sorted({c["config"] for c in cases if c["split"] == "fit"})
    all_test = sorted({c["config"] for c in cases if c["split"] == "test" and c["source"] == "csv"})
    if args.engine:
        cases = [c for c in cases if c["engine"] == args.engine]
    if args.max_concurrency is not None:
        cases = [c for c in cases if c["concurrency"] <= args.max_concurrency]
    if args.limit is not None:
        cases = cases[: args.limit]

    import phasewise

    print(__doc__.splitlines()[0])
    print(f"simulator: {Path(phasewise.__file__).parent}")
    print(f"constants: {args.constants}; CSV rows: N = {args.rounds} x C requests from C closed-loop clients "
          f"(genai-perf --request-count {args.rounds}*C; warm-up {args.warmup_rounds}*C assumed drained first)")
    by_source = Counter(s for s, _, _ in skipped)
    csv_skips = Counter(why for s, _, why in skipped if s == "csv")
    print(f"fit split: {len(all_fit)} of {len(all_fit) + len(all_test)} covered CSV configurations "
          f"(backend|model|system|precision|TP) are 'fit', the rest and every public row held out:")
    for key in all_fit:
        print(f"  fit: {key}")
    chosen = sorted({c["config"] for c in cases if c["split"] == "chosen"})
    if chosen:
        print(f"  chosen, not held out ({CHOSEN_WHY}; printed apart, in no 'test' figure): {', '.join(chosen)}")
    print(f"\ncoverage: {sum(c['source'] == 'csv' for c in cases)} CSV rows and "
          f"{sum(c['source'] == 'public' for c in cases)} public rows selected; skipped: "
          f"{by_source.get('csv', 0)} CSV rows, {by_source.get('public', 0)} public rows")
    for why, n in csv_skips.most_common():
        print(f"  skipped {n:>5} CSV rows: {why}")
    pub_skips = Counter(f"{rid.split('#')[0]}: {why}" for s, rid, why in skipped if s == "public")
    for why, n in pub_skips.most_common():
        print(f"  skipped {n:>5} public rows ({why})")
    if not cases:
        print("nothing to simulate")
        return 1

    results, fitted, fitted_consts, wall = run_cases(cases, args)
    failed = [(c, r) for c, r in zip(cases, results) if r["error"]]
    print(f"simulated {len(cases)} rows in {wall:.0f} s wall ({args.workers} workers); {len(failed)} failed")
    if not args.no_rows:
        print_rows(cases, results, fitted)
    print_ttft_quantiles(cases, results)
    report(args, cases, results, fitted, fitted_consts, skipped, print_table)
    return 0


def check_source_options(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The options one --source reads and the other has no rows for stop the run instead of being ignored;
    then --rounds and --warmup-rounds get their defaults (10 and 2)."""
    if args.source == "csv":
        given = [flag for flag, value in (("--tables", args.tables), ("--assume-part", args.assume_part),
                                          ("--assume-acceptance", args.assume_acceptance is not None)) if value]
        if given:
            ap.error(f"argument {given[0]}: chooses or runs public tables; --source csv has none "
                     "(use --source all or public)")
    if args.source == "public":
        if args.rows_given:
            ap.error(f"argument --rows: {args.rows} is the measured CSV rows' file; --source public reads none "
                     "(use --source all or csv)")
        given = [flag for flag, value in (("--rounds", args.rounds), ("--warmup-rounds", args.warmup_rounds))
                 if value is not None]
        if given:
            ap.error(f"argument {given[0]}: sets the CSV rows' request count; --source public has none (a public "
                     "table's rows use its stated count; use --source all or csv)")
    args.rounds = 10 if args.rounds is None else args.rounds
    args.warmup_rounds = 2 if args.warmup_rounds is None else args.warmup_rounds


def table_prefixes(ap: argparse.ArgumentParser, tables: str, path: Path = YAML_PATH) -> tuple[str, ...]:
    """--tables' prefixes; one that starts no table id of public_concurrency.yaml stops the run, listing the ids."""
    ids = [t["id"] for t in yaml.safe_load(path.read_text())["tables"]]
    prefixes = tuple(p.strip() for p in tables.split(","))
    for prefix in prefixes:
        if not prefix or not any(i.startswith(prefix) for i in ids):
            ap.error(f"argument --tables: {prefix!r} starts no table id (comma-separated prefixes of: "
                     f"{', '.join(ids)})")
    return prefixes


def check_assumed_parts(ap: argparse.ArgumentParser, parts: list[tuple[str, str]], prefixes: tuple[str, ...] = (),
                        path: Path = YAML_PATH) -> None:
    """--assume-part's GPU names: one that no (selected: --tables `prefixes`) public table with an unpinned part
    states as a word of its stated hardware (as load_public_cases matches it, case included) stops the run, listing
    what those tables state."""
    stated = []
    for t in yaml.safe_load(path.read_text())["tables"]:
        s = t["settings"]
        unpinned = s.get("hardware", "unknown") == "unknown" or any(r.get("hardware") == "unknown" for r in t["rows"])
        if unpinned and (not prefixes or t["id"].startswith(prefixes)):
            stated.append(str(s.get("stated_hardware", "?")))
    for gpu, key in parts:
        if not any(re.search(rf"\b{re.escape(gpu)}\b", text) for text in stated):
            names = sorted(set(re.findall(r"\b[A-Z]{1,2}\d{2,3}\b", " ".join(stated))))
            ap.error(f"argument --assume-part: {gpu}={key}: no{' selected' if prefixes else ''} public table whose "
                     f"part is not pinned states '{gpu}' (they state: {', '.join(names) or 'none'}; case matters)")


def acceptance_value(text: str) -> float:
    """--assume-acceptance A: a per-token draft acceptance probability in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a probability in [0, 1), e.g. 0.7")
    return value


def assumed_part(text: str) -> tuple[str, str]:
    """--assume-part GPU=KEY: a GPU name as pages state it and the catalog key assumed for it."""
    gpu, _, key = text.partition("=")
    if not gpu or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GPU=KEY, e.g. H100=h100-sxm")
    if resolve_hardware((key,)) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: hardware '{key}' is not a catalog key or hardware YAML")
    return gpu, key


# --fit's search: golden-section evaluations per constant, sweeps, requests per fit row (x concurrency)
FIT_DEFAULTS = {"fit_evals": 10, "fit_sweeps": 2, "fit_rounds": 2}


def add_constant_options(ap: argparse.ArgumentParser) -> None:
    """The options run_cases() reads: the constants, candidate values on top of them, and the fit."""
    ap.add_argument("--constants", choices=("class-default", "catalog"), default="class-default")
    ap.add_argument("--with", dest="with_", action="append", default=None, metavar="KEY.FIELD=VALUE",
                    help="a candidate constant on top of --constants (repeatable), e.g. engine:sglang.eager_launch_s=3e-5")
    ap.add_argument("--fit", action="store_true", help="fit the named constants on the fit rows, then evaluate")
    ap.add_argument("--fit-only", default="", help="fit only the constants whose key or field starts with one of "
                    "these, or is exactly KEY.FIELD (comma-separated, e.g. engine:, eager_launch_s or "
                    "engine:trtllm.eager_launch_s); default: every one")
    ap.add_argument("--fit-evals", type=at_least(2), default=None,
                    help="golden-section evaluations per constant (at least its first 2; default "
                         f"{FIT_DEFAULTS['fit_evals']})")
    ap.add_argument("--fit-sweeps", type=at_least(1), default=None,
                    help=f"coordinate-descent sweeps (default {FIT_DEFAULTS['fit_sweeps']})")
    ap.add_argument("--fit-rounds", type=at_least(0), default=None, help="requests per fit row = this x concurrency "
                    f"(0 = --rounds; default {FIT_DEFAULTS['fit_rounds']})")


def _fits_only(param: tuple, only: str) -> bool:
    """Whether a FIT_PARAMS entry is one `--fit-only` names: its key or field starts with `only`, or key.field."""
    return param[0].startswith(only) or param[1].startswith(only) or f"{param[0]}.{param[1]}" == only


def check_fit_only(fit_only: str) -> tuple[str, ...]:
    """--fit-only's names; one that names no fitted constant (e.g. a profile name, engine:trtllm-pytorch) stops the
    run instead of fitting nothing under the 'fitted' column."""
    names = tuple(x for x in fit_only.split(",") if x)
    for name in names:
        if not any(_fits_only(p, name) for p in FIT_PARAMS):
            keys = sorted({f"{p[0]}.{p[1]}" for p in FIT_PARAMS})
            raise SystemExit(f"--fit-only {name!r} names no fitted constant (they are: {', '.join(keys)})")
    return names


def run_cases(cases, args) -> tuple[list, list | None, dict | None, float]:
    """Every case with the --constants, and with --fit the fitted constants too: (results, fitted results,
    fitted constants, wall seconds)."""
    t0 = time.perf_counter()
    if args.fit_only and not args.fit:
        raise SystemExit("--fit-only chooses the constants --fit fits: it needs --fit")
    for name, default in FIT_DEFAULTS.items():
        if getattr(args, name) is not None and not args.fit:
            raise SystemExit(f"--{name.replace('_', '-')} sets --fit's search: it needs --fit")
        if getattr(args, name) is None:
            setattr(args, name, default)
    constants, only = with_overrides({"base": args.constants}, args.with_), check_fit_only(args.fit_only)
    if args.fit and not any(c["split"] == "fit" for c in cases):
        raise SystemExit(f"--fit: no fit rows among the {len(cases)} selected rows (splits: "
                         f"{', '.join(sorted({c['split'] for c in cases}))}); it fits on 'fit' rows only: select some "
                         "(e.g. drop --split test, widen --family / --engine / --limit) or drop --fit")
    pool = ProcessPoolExecutor(max_workers=args.workers) if args.workers > 1 else None
    try:
        results = evaluate(cases, constants, pool)
        fitted = fitted_consts = None
        if args.fit:
            fitted_consts = fit(cases, constants, pool, args.fit_evals, args.fit_sweeps, args.fit_rounds or None,
                                only)
            fitted = evaluate(cases, fitted_consts, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    return results, fitted, fitted_consts, time.perf_counter() - t0


def with_overrides(constants: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """`--with engine:sglang.eager_launch_s=3e-5` (repeatable): candidate constants on top of --constants, to
    explore a mechanism before fitting it; the key is a constants key (engine:<family>, hardware:blackwell,
    hardware:<key>, model:<catalog id>), then the field (a dict field's entry as field.entry, e.g.
    hardware:blackwell.weight_read_efficiency.fp4). A key or field no loader reads stops the run."""
    from phasewise.specs.hardware import Efficiency

    for item in overrides or []:
        key_field, _, value = item.partition("=")
        key, _, field = key_field.rpartition(".")
        if key.startswith("hardware:") and key.rpartition(".")[2] in Efficiency.model_fields:
            key, _, dict_field = key.rpartition(".")  # a dict field's entry: ...weight_read_efficiency.fp4
            field = f"{dict_field}.{field}"
        if not key or not field or not value:
            raise SystemExit(f"--with {item!r}: expected KEY.FIELD=VALUE, e.g. engine:sglang.eager_launch_s=3e-5")
        check_override(key, field, item)
        try:
            constants.setdefault(key, {})[field] = float(value)
        except ValueError:
            raise SystemExit(f"--with {item!r}: VALUE must be a number (got {value!r})") from None
    return constants


def check_override(key: str, field: str, item: str) -> None:
    """A `--with` key and field that no loader would read (e.g. engine:trtllm-pytorch: the engine constants are
    keyed by family) stop the run instead of being silently ignored."""
    from phasewise.errors import PhasewiseError
    from phasewise.specs import load_model
    from phasewise.specs.hardware import Efficiency, EngineProfile, hardware_names

    kind, _, name = key.partition(":")
    if kind == "engine":
        if name not in ENGINES:
            raise SystemExit(f"--with {item!r}: engine constants are keyed by family: engine:{'|engine:'.join(ENGINES)}")
        allowed = EngineProfile.model_fields
    elif kind == "hardware":
        if name != "blackwell" and name not in hardware_names():
            raise SystemExit(f"--with {item!r}: hardware:{name} is neither hardware:blackwell nor a catalog key")
        allowed = Efficiency.model_fields
        field, entry, _ = field.partition(".")  # a dict field's entry, e.g. weight_read_efficiency.fp4
        if entry and field in allowed and typing.get_origin(allowed[field].annotation) is not dict:
            raise SystemExit(f"--with {item!r}: {field} is one number, not a mapping of entries")
    elif kind == "model":
        try:
            allowed = type(load_model(name)).model_fields
        except PhasewiseError as exc:  # the catalog's one-line error
            raise SystemExit(f"--with {item!r}: {exc}") from None
    else:
        raise SystemExit(f"--with {item!r}: KEY must be engine:<family>, hardware:blackwell, hardware:<key> or "
                         "model:<catalog id>")
    if field not in allowed:
        raise SystemExit(f"--with {item!r}: {kind} has no field {field!r}")


def report(args, cases, results, fitted, fitted_consts, skipped, tables) -> None:
    """The error tables (`tables(cases, columns)`: fit and held-out, class-default and fitted), the fitted
    constants, and the --csv file."""
    columns = [(args.constants, results, "fit"), (args.constants, results, "test")]
    if fitted is not None:
        columns = [(args.constants, results, "fit"), ("fitted", fitted, "fit"),
                   (args.constants, results, "test"), ("fitted", fitted, "test")]
    if any(c["split"] == "chosen" for c in cases):  # their own rows, never pooled into a held-out ('test') figure
        columns += [(args.constants, results, "chosen")] + ([("fitted", fitted, "chosen")] if fitted else [])
    tables(cases, columns)
    if fitted_consts is not None:
        print("\nfitted constants (not written to the catalog):")
        for key, upd in fitted_consts.items():
            if key != "base":
                print(f"  {key}: " + ", ".join(f"{k}: {v:.4g}" for k, v in upd.items()))
    if args.csv:
        write_csv(args.csv, cases, results, fitted, skipped)
        print(f"\nwrote {args.csv}")


if __name__ == "__main__":
    sys.exit(main())
