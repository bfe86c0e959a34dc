"""The simulator against published serving throughput (PAPERS.md Part 2, Table B).

    python benchmarks/validate_serving.py          # evaluate with the catalog's constants
    python benchmarks/validate_serving.py --fit    # what fitting trtllm-pytorch's iteration overhead on B1 does

No constant is fitted on these points in the catalog: the engine profile's overhead is a class
default. (--fit shows that fitting it to B1 worsens the other points: B1's gap is not host overhead.)

Table B: TensorRT-LLM v1.0 perf-overview (`trtllm-bench throughput`, PyTorch backend, in-flight
batching, max-throughput): fixed-length synthetic requests all submitted at once; metric = output
tokens/s of the whole TP group. Simulated as an offline run (every request arrives at t=0) with the
`trtllm-bench` engine preset: mixed prefill/decode batching (TRT-LLM's in-flight batching) under a token budget of 8192
(`max_num_tokens` default), up to 2048 sequences per iteration, 92 % of memory for the engine
(kv_cache_free_gpu_mem_fraction 0.90-0.95 of what the weights leave), admission that reserves a
request's whole KV (the GUARANTEED_NO_EVICT capacity policy, TRT-LLM's default), FP8 weights and an FP8 KV
cache (ModelOpt FP8 checkpoints quantize the KV cache too: an assumption, stated).

    python benchmarks/validate_serving.py --moe    # the same page's MoE tables, nothing fitted on them

--moe: the perf-overview file at the same commit also tabulates four MoE models (Llama 4 Scout and Maverick,
Qwen3-235B-A22B, Qwen3-30B-A3B) on B200/GB200 (NVFP4 checkpoints) and H200/H100 (FP8), 110 points, none of
them used by any fit in the catalog: a held-out check of the MoE path (expert parallelism, the shared expert,
Llama 4's chunked layers, NVFP4 grouped GEMMs) at maximum throughput. Its MoE command is `trtllm-bench --tp
$tp_size --ep $ep_size` with llm_options naming `enable_attention_dp: true`, but nested under
`cuda_graph_config`, a StrictBaseModel that forbids unknown fields (tensorrt_llm/llmapi/llm_args.py): that file
cannot be what ran, and $ep_size is not given per table. Read as the page intends (declared before any MoE error
was seen): EP = TP with attention data parallelism over the TP group (max_batch_size and max_num_tokens then per
attention rank, as TensorRT-LLM's executors are); `--moe-attention tp` gives the other reading (EP = TP, attention
tensor-parallel) beside it.

    python benchmarks/validate_serving.py --online  # the v0.17 page's online-serving table: TTFT and ITL vs QPS

--online: the same file at TensorRT-LLM v0.17 (commit 258c7540) tabulates online serving through the Triton
TensorRT-LLM backend (v0.14.0, BF16, 500 requests a row): Llama-3.1-8B TP1 and Llama-3.1-70B TP4 on H100 and H200
at 2-32 requests/s and all at once (INF), three ISL/OSL shapes, mean TTFT and mean ITL (72 rows). Simulated with
the `trtllm` preset (TensorRT-LLM 1.x: the engine phasewise models; v0.14's C++ runtime is not a preset), 500
requests with Poisson arrivals at the row's QPS (the page does not say how requests were spaced: assumed) or all at
t=0 for INF; nothing fitted on them.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import numpy as np

from phasewise.sim import simulate
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import _build_group
from phasewise.specs import load_engine
from phasewise.workload import Workload

L8, L70, L405 = "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-3.1-405B-Instruct"
# id, model, hardware, tp, isl, osl, requests, measured output tok/s, split
POINTS = [
    ("B1", L8, "h100-sxm", 1, 128, 128, 30000, 28312, "test"),
    ("B2", L8, "h100-sxm", 1, 2048, 128, 3000, 3450, "test"),
    ("B3", L8, "h100-sxm", 1, 128, 2048, 3000, 22714, "test"),
    ("B4", L8, "h100-sxm", 1, 1000, 1000, 3000, 15220, "test"),
    ("B5", L8, "h100-sxm", 1, 20000, 2000, 1000, 1351, "test"),
    ("B6", L8, "h200-sxm", 1, 128, 128, 30000, 27911, "test"),
    ("B7", L8, "h200-sxm", 1, 2048, 2048, 1500, 12194, "test"),
    ("B7h", L8, "h100-sxm", 1, 2048, 2048, 1500, 9305, "test"),
    ("B8", L70, "h100-sxm", 2, 128, 128, 30000, 6378, "test"),
    ("B9", L70, "h100-sxm", 2, 2048, 2048, 1500, 3082, "test"),
    ("B10", L70, "h200-sxm", 1, 128, 128, 30000, 3803, "test"),
    ("B11", L70, "h200-sxm", 1, 5000, 500, 1500, 566, "test"),
    ("B11h", L70, "h100-sxm", 2, 5000, 500, 1500, 898, "test"),
    ("B12", L405, "h100-sxm", 8, 1000, 1000, 3000, 2919, "test"),
    ("B12h", L405, "h200-sxm", 8, 1000, 1000, 3000, 3330, "test"),
]


# The perf-overview's MoE tables (same file and commit): model -> columns (hardware, TP, precision) and per
# ISL/OSL row the measured output tokens/s of each column (None: not published). Request counts per ISL/OSL from the
# page's own table. Checkpoints: nvidia/*-FP4 (NVFP4) on Blackwell, *-FP8 (ModelOpt per-tensor FP8) on Hopper.
MOE_REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (500, 2000): 3000, (1000, 1000): 3000,
                (1000, 2000): 1500, (2048, 128): 3000, (2048, 2048): 1500, (5000, 500): 1500, (20000, 2000): 1000}
MOE_LENGTHS = list(MOE_REQUESTS)
DENSE_TABLES = {
    L70: (
        [("b200", 1, "nvfp4"), ("gb200", 1, "nvfp4"), ("h200-sxm", 1, "fp8"), ("h100-sxm", 2, "fp8")],
        [(11147, 12189, 3803, 6378), (9922, 11309, 4336, 6651), (6831, 7849, 2872, 4199), (7762, 9028, 3666, 5222),
         (7007, 7326, 2909, 4205), (6271, 6513, 2994, 4146), (1339, 1450, 442, 762), (4783, 5646, 2003, 3082),
         (1459, 1602, 566, 898), (665, 755, 283, 437)]),
    L405: (
        [("b200", 4, "nvfp4"), ("gb200", 4, "nvfp4"), ("h200-sxm", 8, "fp8"), ("h100-sxm", 8, "fp8")],
        [(6281, 6740, 3814, 3627), (8020, 8151, 5348, 4340), (6345, 6608, 4741, 3116), (6244, 6540, 4724, 3994),
         (5209, 5389, 3330, 2919), (4933, 5135, 3722, 2895), (749, 797, 456, 453), (4212, 4407, 2948, 2296),
         (1048, 1112, 650, 610), (672, 739, 505, 345)]),
    L8: (
        [("h200-sxm", 1, "fp8"), ("h100-sxm", 1, "fp8")],
        [(27911, 28312), (26221, 22714), (18027, 14325), (20770, 17660), (17744, 15220), (16828, 13899),
         (3538, 3450), (12194, 9305), (3902, 3459), (1804, 1351)]),
}
MOE_TABLES = {
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": (
        [("b200", 1, "nvfp4"), ("gb200", 1, "nvfp4"), ("h200-sxm", 4, "fp8"), ("h100-sxm", 4, "fp8")],
        [(25342, 19954, 30354, None), (14699, 15238, 34316, 15130), (8932, 9556, 21332, 8603),
         (11977, 11795, 24630, 12399), (10591, 7738, 21636, 12129), (9356, 8581, 18499, 9838),
         (3137, 3295, 3699, 3253), (7152, 7464, 14949, 7972), (2937, 3107, 4605, 3342), (1644, 1767, 2105, None)]),
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": (
        [("b200", 8, "nvfp4"), ("h200-sxm", 8, "fp8"), ("h100-sxm", 8, "fp8")],
        [(124323, 63994, None), (112676, 40572, 10829), (68170, 24616, 6744), (None, 37835, 10108),
         (79617, 31782, 9677), (63766, 34734, 9151), (18088, 7307, None), (52195, 20957, 6916),
         (None, 8456, 3457), (12678, 4106, None)]),
    "Qwen/Qwen3-235B-A22B": (
        [("b200", 8, "nvfp4"), ("h200-sxm", 8, "fp8"), ("h100-sxm", 8, "fp8")],
        [(63362, 30429, None), (66057, 42821, 19658), (39496, 26852, 12447), (57117, 28026, 18351),
         (42391, 23789, 14898), (34105, 22061, 15136), (7329, 3331, None), (26854, 16672, 9924),
         (8190, 3623, 3225), (4453, 1876, None)]),
    "Qwen/Qwen3-30B-A3B": (
        [("b200", 1, "nvfp4"), ("gb200", 1, "nvfp4")],
        [(39827, 24107), (37844, 31311), (24953, 26337), (27817, 20604), (25828, 17481), (22051, 17177),
         (6251, 6595), (17554, 14719), (6142, 5908), (2944, 3203)]),
}


# (model, hardware, tp): {(isl, osl): [(qps or None for INF, measured req/s, mean TTFT ms, mean ITL ms), ...]}
ONLINE_TABLE = {
    (L70.replace("3.3", "3.1"), "h100-sxm", 4): {
        (467, 256): [(2, 2, 62, 21), (4, 4, 68, 24), (8, 7, 92, 32), (16, 12, 175, 66), (32, 16, 1229, 86),
                     (None, 16, 9123, 85)],
        (467, 16): [(2, 2, 53, 18), (4, 4, 58, 20), (8, 8, 71, 24), (16, 16, 109, 38), (32, 28, 1197, 482),
                    (None, 28, 9126, 548)],
        (202, 214): [(2, 2, 48, 20), (4, 4, 51, 22), (8, 7, 57, 25), (16, 11, 74, 32), (32, 14, 116, 42),
                     (None, 16, 4482, 50)]},
    ("meta-llama/Llama-3.1-8B-Instruct", "h100-sxm", 1): {
        (467, 256): [(2, 2, 23, 8), (4, 4, 24, 9), (8, 8, 26, 9), (16, 15, 30, 11), (32, 26, 50, 19),
                     (None, 37, 3335, 39)],
        (467, 16): [(2, 2, 19, 7), (4, 4, 20, 7), (8, 8, 22, 7), (16, 16, 24, 8), (32, 31, 29, 10),
                    (None, 79, 3280, 193)],
        (202, 214): [(2, 2, 19, 7), (4, 4, 20, 8), (8, 7, 21, 9), (16, 13, 23, 10), (32, 23, 27, 11),
                     (None, 39, 1657, 21)]},
    (L70.replace("3.3", "3.1"), "h200-sxm", 4): {
        (467, 256): [(2, 2, 58, 18), (4, 4, 63, 20), (8, 7, 84, 27), (16, 13, 165, 60), (32, 16, 1279, 83),
                     (None, 16, 9222, 83)],
        (467, 16): [(2, 2, 50, 15), (4, 4, 55, 16), (8, 8, 67, 20), (16, 16, 103, 33), (32, 28, 1259, 485),
                    (None, 29, 9074, 546)],
        (202, 214): [(2, 2, 43, 17), (4, 4, 46, 18), (8, 7, 51, 21), (16, 11, 67, 28), (32, 15, 112, 39),
                     (None, 17, 4480, 48)]},
    ("meta-llama/Llama-3.1-8B-Instruct", "h200-sxm", 1): {
        (467, 256): [(2, 2, 21, 6), (4, 4, 23, 7), (8, 8, 24, 7), (16, 15, 27, 9), (32, 27, 44, 16),
                     (None, 40, 3237, 36)],
        (467, 16): [(2, 2, 18, 5), (4, 4, 19, 6), (8, 8, 20, 6), (16, 16, 22, 7), (32, 31, 27, 9),
                    (None, 81, 3227, 190)],
        (202, 214): [(2, 2, 17, 6), (4, 4, 18, 6), (8, 7, 19, 7), (16, 14, 20, 8), (32, 24, 24, 9),
                     (None, 43, 1665, 19)]},
}
ONLINE_REQUESTS = 500
# The v0.17 page's throughput table (same commit as ONLINE_TABLE; trtllm-bench on engines built with --quantization
# FP8, so FP8 weights and KV) for its MoE model, Mixtral-8x7B, experts split by tensor parallelism (TensorRT-LLM's
# default moe_tp_size = tp_size when no EP size is given): TP -> per V017_LENGTHS row (H200, H100) output tok/s.
V017_LENGTHS = [(128, 128), (128, 2048), (128, 4096), (500, 2000), (1000, 1000), (2048, 128), (2048, 2048),
                (5000, 500), (20000, 2000)]
MIXTRAL_V017 = {
    1: [(17157.72, 15962.49), (15095.21, 8290.13), (9534.62, 4784.86), (12105.27, 6800.6), (10371.36, 6868.52),
        (2009.67, 1892.81), (6940.32, 3983.1), (2309.1, 1764.7), (1151.78, 673.7)],
    2: [(27825.34, 27451.13), (29584.05, 22830.08), (21564.68, 14237.01), (23410.63, 17036.04),
        (19151.19, 15770.89), (3383.16, 3333.68), (14007.29, 10685.85), (4223.68, 3646.09), (2299.21, 1757.45)],
    4: [(42551.59, 41068.23), (52291.78, 41164.73), (39513.73, 27912.48), (43818.99, 34489.34),
        (33580.9, 27784.74), (5467.62, 5234.98), (24980.93, 19432.08), (7084.94, 6401.56), (4236.84, 3303.83)],
    8: [(53212.55, 50849.55), (68608.45, 61607.7), (54827.78, 48280.37), (58706.39, 52583.65),
        (44705.48, 40631.71), (7554.38, 6988.18), (36193.64, 30983.35), (10271.8, 9210.11), (6835.53, 5602.43)],
}


def mixtral_points() -> list[tuple]:
    """The v0.17 Mixtral-8x7B rows as predict() points (request counts: MOE_REQUESTS, the same table)."""
    return [(f"Mixtral-8x7B:{hw}", "mistralai/Mixtral-8x7B-v0.1", hw, tp, isl, osl, MOE_REQUESTS[(isl, osl)], m,
             "test", {"precision": "fp8"})
            for tp, rows in MIXTRAL_V017.items() for (isl, osl), pair in zip(V017_LENGTHS, rows)
            for hw, m in zip(("h200-sxm", "h100-sxm"), pair)]


def predict_online(model: str, hardware: str, tp: int, isl: int, osl: int, qps: float | None,
                   seed: int = 0) -> tuple[float, float, float]:
    """(req/s, mean TTFT ms, mean TPOT ms) of one online row, simulated as the module docstring says."""
    dep = build_deployment({"model": model, "instances": [dict(hardware=hardware, tp=tp, precision="bf16",
                                                               engine="trtllm")]})
    n = ONLINE_REQUESTS
    arrivals = np.zeros(n) if qps is None else np.cumsum(np.random.default_rng(seed).exponential(1 / qps, n))
    res = simulate(dep, Workload(arrivals, np.full(n, isl), np.full(n, osl)))
    s = res.summary()
    return s["completed"] / s["duration_s"], s["ttft_ms"]["mean"], s["tpot_ms"]["mean"]


def online_main() -> int:
    print(f"online serving (TensorRT-LLM v0.14 via Triton, BF16, {ONLINE_REQUESTS} requests a row) vs the trtllm "
          "preset; nothing fitted")
    print(f"\n{'model':24} {'hardware':9} {'tp':>2} {'isl/osl':>8} {'qps':>4} | {'req/s':>5} {'pred':>5} | "
          f"{'TTFT meas':>9} {'pred':>7} {'err':>7} | {'ITL meas':>8} {'pred':>6} {'err':>7}")
    ttft, itl, by_load = [], [], {"below saturation": ([], []), "at or past it": ([], [])}
    for (model, hw, tp), shapes in ONLINE_TABLE.items():
        for (isl, osl), rows in shapes.items():
            for qps, tput, m_ttft, m_itl in rows:
                p_tput, p_ttft, p_itl = predict_online(model, hw, tp, isl, osl, qps)
                e1, e2 = p_ttft / m_ttft - 1, p_itl / m_itl - 1
                ttft.append(e1)
                itl.append(e2)
                # a row where the measured throughput fell short of its QPS (or INF) ran saturated
                load = by_load["below saturation" if qps is not None and tput >= 0.9 * qps else "at or past it"]
                load[0].append(e1)
                load[1].append(e2)
                print(f"{model.split('/')[-1][:24]:24} {hw:9} {tp:>2} {f'{isl}/{osl}':>8} {qps or 'INF':>4} | "
                      f"{tput:>5} {p_tput:>5.1f} | {m_ttft:>9,} {p_ttft:>7,.0f} {e1:>+7.0%} | {m_itl:>8,} {p_itl:>6.1f} {e2:>+7.0%}")

    def line(label: str, t: list[float], i: list[float]) -> str:
        at, ai = sorted(map(abs, t)), sorted(map(abs, i))
        return (f"{label:18} n={len(t):>2}  TTFT median |error| {statistics.median(at):6.1%} (signed "
                f"{statistics.median(t):+.0%}, worst {at[-1]:.0%})  ITL {statistics.median(ai):6.1%} (signed "
                f"{statistics.median(i):+.0%}, worst {ai[-1]:.0%})")

    print()
    for label, (t, i) in by_load.items():
        print(line(label, t, i))
    print(line("all", ttft, itl))
    return 0


def page_points(tables: dict, attention: str = "dp") -> list[tuple]:
    """A page's tables as points: (id, model, hardware, tp, isl, osl, requests, measured, split, instance fields);
    MoE models over TP > 1 get EP = TP and attention data- or tensor-parallel over TP (`attention`)."""
    points = []
    for model, (columns, rows) in tables.items():
        short = model.split("/")[-1].split("-Instruct")[0]
        for (isl, osl), row in zip(MOE_LENGTHS, rows):
            for (hw, tp, precision), measured in zip(columns, row):
                if measured is None:
                    continue
                extra = {"precision": precision}
                if tp > 1 and model in MOE_TABLES:
                    extra.update(ep=tp, attention_dp=tp if attention == "dp" else 1)
                points.append((f"{short}:{hw}", model, hw, tp, isl, osl, MOE_REQUESTS[(isl, osl)], measured,
                               "test", extra))
    return points


def predict(point, overrides: dict | None = None, scale: float = 1.0) -> float:
    _, model, hw, tp, isl, osl, n, _, _ = point[:9]
    extra = point[9] if len(point) > 9 else {}
    n = max(1, int(n * scale))
    dep = build_deployment({"model": model, "instances": [dict(dict(
        hardware=hw, tp=tp, precision="fp8", kv_dtype="fp8", engine="trtllm-bench", enable_chunked_prefill=True,
        max_num_tokens=8192, max_batch_size=2048, memory_fraction=0.92), **extra)]})
    if overrides:
        engines_mod = sys.modules["phasewise.specs.engines"]
        real = engines_mod.load_engine
        engines_mod.load_engine = lambda name: real(name).model_copy(update=overrides) if name == "trtllm-pytorch" else real(name)
        _build_group.cache_clear()
        try:
            res = simulate(dep, Workload(np.zeros(n), np.full(n, isl), np.full(n, osl)))
        finally:
            engines_mod.load_engine = real
            _build_group.cache_clear()
    else:
        res = simulate(dep, Workload(np.zeros(n), np.full(n, isl), np.full(n, osl)))
    return float(res.output_tokens.sum() / res.duration_s)


def fit_overhead(point) -> float:
    """Bisection on iteration_overhead_s so B1 is matched (throughput falls as overhead grows)."""
    lo, hi = 0.0, 0.02
    for _ in range(30):
        mid = (lo + hi) / 2
        if predict(point, {"iteration_overhead_s": mid}, 0.2) > point[7]:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="Table B: fit trtllm-pytorch's iteration overhead on B1")
    ap.add_argument("--scale", type=fraction, default=None,
                    help="fraction (0, 1] of the benchmark's request count to simulate (default 1; not --online, "
                         f"whose rows are {ONLINE_REQUESTS} requests each)")
    tables = ap.add_mutually_exclusive_group()
    tables.add_argument("--moe", action="store_true", help="the page's MoE tables instead of Table B's dense points")
    tables.add_argument("--mixtral", action="store_true",
                        help="the v0.17 page's Mixtral-8x7B throughput table (TP 1-8)")
    tables.add_argument("--online", action="store_true",
                        help="the v0.17 page's online-serving table (TTFT, ITL vs QPS)")
    tables.add_argument("--dense-page", action="store_true",
                        help="every dense table of the page (Table B's 15 points are a subset), Blackwell NVFP4 "
                             "included")
    ap.add_argument("--moe-attention", choices=("dp", "tp"), default=None,
                    help="--moe: attention data-parallel over the TP group (the page's intent, the default) or "
                         "tensor-parallel")
    args = ap.parse_args(argv)
    # a flag the chosen table does not read stops the run (never quietly ignored)
    other = next((f for f, on in (("--moe", args.moe), ("--mixtral", args.mixtral), ("--online", args.online),
                                  ("--dense-page", args.dense_page)) if on), None)
    if args.fit and other:
        ap.error(f"argument --fit: fits on Table B's B1; {other} has nothing fitted (drop one)")
    if args.moe_attention is not None and not args.moe:
        ap.error("argument --moe-attention: reads the MoE tables only; it needs --moe")
    if args.scale is not None and args.online:
        ap.error(f"argument --scale: --online simulates each row's {ONLINE_REQUESTS} requests as published; "
                 "drop --scale")
    args.moe_attention = args.moe_attention or "dp"
    args.scale = 1.0 if args.scale is None else args.scale
    if args.online:
        return online_main()
    if args.moe or args.dense_page or args.mixtral:
        return page_main(args)
    overrides = None
    if args.fit:
        v = fit_overhead(POINTS[0])
        overrides = {"iteration_overhead_s": v}
        print(f"fitted trtllm-pytorch iteration_overhead_s = {v:.4g} s on B1")
    else:
        print(f"trtllm-pytorch iteration_overhead_s = {load_engine('trtllm-pytorch').iteration_overhead_s:.4g} s")
    print(f"\n{'id':5} {'model':28} {'hardware':9} {'tp':>2} {'isl/osl':>11} {'measured':>9} {'predicted':>9} {'err':>7}  split")
    errs: dict[str, list[float]] = {"fit": [], "test": []}
    for p in POINTS:
        pred = predict(p, overrides, args.scale)
        e = pred / p[7] - 1
        split = "fit" if args.fit and p[0] == "B1" else p[8]
        errs[split].append(abs(e))
        print(f"{p[0]:5} {p[1].split('/')[-1]:28} {p[2]:9} {p[3]:>2} {f'{p[4]}/{p[5]}':>11} {p[7]:>9,} {pred:>9,.0f} "
              f"{e:>+7.1%}  {split}")
    for split, v in errs.items():
        if v:
            within = sum(x <= 0.2 for x in v) / len(v)
            print(f"median |error| {split}: {statistics.median(v):.1%} over {len(v)} points ({within:.0%} within 20 %)")
    return 0


def fraction(text: str) -> float:
    """--scale: a fraction of a benchmark's request count, in (0, 1] (0 would still simulate one request)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction in (0, 1], e.g. 0.1")
    return value


def page_main(args) -> int:
    if args.moe:
        print(f"MoE tables, EP = TP, attention {'data' if args.moe_attention == 'dp' else 'tensor'}-parallel over "
              "TP; nothing fitted on these points")
        points = page_points(MOE_TABLES, args.moe_attention)
    elif args.mixtral:
        print("Mixtral-8x7B on the v0.17 page (experts tensor-parallel, FP8); nothing fitted on these points")
        points = mixtral_points()
    else:
        print("Dense tables of the page; nothing fitted on these points")
        points = page_points(DENSE_TABLES)
    print(f"\n{'model:hardware':40} {'tp':>2} {'prec':5} {'isl/osl':>11} {'measured':>9} {'predicted':>9} {'err':>7}")
    errs: dict[str, list[float]] = {}
    for p in points:
        try:
            pred = predict(p, None, args.scale)
        except Exception as exc:  # a layout the model cannot take is reported, not fatal
            print(f"{p[0]:40} {p[3]:>2} {p[9]['precision']:5} {f'{p[4]}/{p[5]}':>11} {p[7]:>9,}  failed: {exc}")
            continue
        e = pred / p[7] - 1
        errs.setdefault(p[0], []).append(e)
        print(f"{p[0]:40} {p[3]:>2} {p[9]['precision']:5} {f'{p[4]}/{p[5]}':>11} {p[7]:>9,} {pred:>9,.0f} {e:>+7.1%}")
    print()
    every = [abs(e) for v in errs.values() for e in v]
    for key, v in errs.items():
        a = sorted(abs(e) for e in v)
        print(f"{key:40} n={len(v):>2}  median |error| {statistics.median(a):6.1%}  worst {a[-1]:6.1%}  "
              f"signed median {statistics.median(v):+6.1%}")
    if every:
        every.sort()
        print(f"{'all':40} n={len(every):>2}  median |error| {statistics.median(every):6.1%}  "
              f"p90 {every[int(0.9 * (len(every) - 1))]:6.1%}  worst {every[-1]:6.1%}  "
              f"within 20 %: {sum(x <= 0.2 for x in every) / len(every):.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
