"""`phasewise calibrate`: micro-benchmarks with PyTorch fitted into a hardware entry (and an engine
profile) in the catalog's own format.

Measured, then fitted:
  GEMM          x @ W^T over activation rows (1 .. 1024) at the hidden-size shapes transformers use:
                the peak FLOP/s of the best shape, and the efficiency curve over rows;
  memory        matrix-vector products over weights streamed from memory at row lengths 256 .. 8192: the
                bandwidth at long rows and the row length at which half of it is reached; large copies;
  attention     scaled_dot_product_attention at prefill shapes (causal, efficiency over query rows)
                and decode shapes (one query row over distinct K and V read from memory: bandwidth fraction at
                the longest context);
  overheads     a real transformers Llama at tiny width, 1 and 5 layers, one token: time per layer
                (-> per-kernel dispatch) and per forward (-> the engine's per-iteration overhead),
                and batch 1 vs 16 (-> per-sequence overhead).
"""

from __future__ import annotations

import math
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import (
    kv_cache_arg,
    median_time,
    need_transformers,
    returned_kv_cache,
    torch_and_device,
)
from phasewise.perf.cost import KERNELS

# hidden, MLP width, heads (of 128), KV heads: a Llama layer of 25 MB in fp32, beyond any core's private cache
COLD_WIDTH = (768, 2048, 6, 2)
COLD_ROWS = 32  # up to this many rows GEMMs are timed with their weights streamed from memory
PROBE_HEADS, PROBE_HEAD_DIM = 8, 64  # the attention probes' heads (prefill and decode)
DENSE_LAYER_KERNELS = sum(KERNELS[k] for k in ("elementwise", "qkv_proj", "attention", "o_proj", "mlp_gate_up",
                                                 "mlp_down"))


def _fit_half(points: list[tuple[float, float]], cap: float = 1.0) -> tuple[float, float]:
    """Fit y = ymax * x / (x + h) to (x, y) points by a log-space grid search over h (1 .. 2^15 in steps of
    2^(1/16), and 0); (ymax at most `cap`, h)."""
    best = (math.inf, 1.0, 0.0)
    for h in [0.0] + [2 ** (k / 16) for k in range(0, 241)]:
        shape = [x / (x + h) for x, _ in points]
        ymax = statistics.median(y / s for (_, y), s in zip(points, shape))
        err = sum(math.log(max(ymax * s, 1e-30) / y) ** 2 for (_, y), s in zip(points, shape))
        if err < best[0]:
            best = (err, min(ymax, cap), h)
    return best[1], best[2]


def fit_weight_rows(rates: dict[int, float]) -> tuple[float, float]:
    """(bandwidth at long rows in bytes/s, weight_row_half_elems) from weight-streaming rates by row length k:
    rate(k) = bandwidth * k / (k + half)."""
    if len(rates) < 2:
        raise PhasewiseError("fitting weight_row_half_elems needs rates at 2 or more row lengths")
    top = max(rates.values())
    relative, half = _fit_half([(float(k), r / top) for k, r in rates.items()], cap=math.inf)
    return relative * top, half


def calibrate(device: str = "cpu", quick: bool = False, threads: int | None = None, name: str | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the micro-benchmarks; returns {'hardware': {key: entry}, 'engines': {key: profile}}."""
    torch, dev = torch_and_device(device, threads)
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    dname = "bf16" if cuda else "fp32"
    esize = 2 if cuda else 4
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    reps = 3 if quick else 5
    say = progress or (lambda _msg: None)

    # --- GEMM -----------------------------------------------------------------------------------
    # The weight shapes transformer layers multiply by: projections (h x h), MLP up (h x 4h) and down
    # (4h x h), an LM head (h x 32000), at a small and a large width. Up to COLD_ROWS rows the weights
    # are streamed from memory as in a real decode step (a pool of copies larger than the caches,
    # used round-robin), so the measured efficiency includes what skinny GEMMs lose to memory; above
    # that the GEMMs are compute-bound and measured warm. The efficiency at each row count is the
    # geometric mean over shapes (one curve for all shapes is a compromise, stated).
    widths = (768,) if quick else (768, 2048)
    shapes = [(k, n) for h in widths for k, n in ((h, h), (h, 4 * h), (4 * h, h), (h, 32000))]
    rows_grid = (1, 2, 4, 8, 16, 64, 256) if quick else (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    pool_bytes = (128 if quick else 512) * 2**20
    rates: dict[int, list[float]] = {m: [] for m in rows_grid}
    cold_rates: list[float] = []  # bytes/s of weight streaming at one row (matrix-vector)
    for k, n in shapes:
        count = max(2, pool_bytes // (k * n * esize))
        pool = [torch.randn(n, k, device=dev, dtype=dtype) for _ in range(count)]
        for m in rows_grid:
            say(f"GEMM {m}x{k}x{n}" + (" (weights from memory)" if m <= COLD_ROWS else ""))
            x = torch.randn(m, k, device=dev, dtype=dtype)
            if m <= COLD_ROWS:
                t = median_time(lambda: [torch.nn.functional.linear(x, w) for w in pool], sync, reps) / count
            else:
                w = pool[0]
                t = median_time(lambda: torch.nn.functional.linear(x, w), sync, reps, min_time_s=0.01)
            rates[m].append(2.0 * m * k * n / t)
            if m == 1:
                cold_rates.append(k * n * esize / t)
        pool.clear()  # free the weights before the next shape
    peak = max(max(r) for r in rates.values())
    geo = {m: math.exp(statistics.fmean(math.log(r) for r in rates[m])) for m in rows_grid}
    curve = [[float(m), round(geo[m] / peak, 4)] for m in rows_grid]
    eff_max, half_rows = _fit_half([(float(m), geo[m] / peak) for m in rows_grid])

    # --- weight streaming by row length -------------------------------------------------------------
    # Decode streams every weight matrix once per step, row by row (torch stores W of x @ W^T as n x k, k
    # the reduction dimension). Matrix-vector products over matrices of one size (16 MiB, n x k at each row
    # length k) cut from a pool far beyond the caches, used round-robin: the rate grows with k as a per-row
    # start-up cost (prefetchers restart, loop overheads) is spread over longer rows; fitted as
    # bandwidth x k / (k + weight_row_half_elems) (the cost model's rule, perf/cost.py).
    row_lengths = (256, 512, 2048, 8192) if quick else (256, 512, 1024, 2048, 4096, 8192)
    matrix_elems = 16 * 2**20 // esize
    count = (128 if quick else 256) * 2**20 // esize // matrix_elems
    buffer = torch.randn(count * matrix_elems, device=dev, dtype=dtype)
    row_rates: dict[int, float] = {}
    for k in row_lengths:
        say(f"weight streaming, rows of {k} elements")
        n = matrix_elems // k
        mats = buffer.view(count, n, k)
        x = torch.randn(1, k, device=dev, dtype=dtype)
        t = median_time(lambda: [torch.nn.functional.linear(x, mats[i]) for i in range(count)], sync, reps) / count
        row_rates[k] = n * k * esize / t
    del buffer
    bandwidth, row_half = fit_weight_rows(row_rates)

    # --- memory -----------------------------------------------------------------------------------
    # up to 512 MiB: far beyond any last-level cache, so the largest copies measure DRAM
    sizes = (1 << 16, 1 << 20, 1 << 24, 1 << 27, 1 << 29) if not quick else (1 << 16, 1 << 20, 1 << 28)
    bws = []
    for size in sizes:
        say(f"copy {size / 1e6:.1f} MB")
        n = size // esize
        a = torch.empty(n, device=dev, dtype=dtype).normal_()
        b = torch.empty_like(a)
        t = median_time(lambda: b.copy_(a), sync, reps, min_time_s=0.01)
        bws.append((float(size), 2.0 * size / t))  # read + write
    # Streaming weights is what decode does: the bandwidth is that of the matrix-vector products over
    # weights streamed from memory at long rows (fitted above), bytes read / time; copies (read +
    # write-allocate) are kept in the measurements.
    mem_eff, mem_half = 1.0, 0.0

    # --- attention ----------------------------------------------------------------------------------
    sdpa = torch.nn.functional.scaled_dot_product_attention
    heads, hd = PROBE_HEADS, PROBE_HEAD_DIM
    pre = []
    for seq in ((64, 256) if quick else (64, 256, 1024)):
        say(f"attention prefill {seq}")
        q = torch.randn(1, heads, seq, hd, device=dev, dtype=dtype)
        t = median_time(lambda: sdpa(q, q, q, is_causal=True), sync, reps, min_time_s=0.01)
        flops = 4.0 * hd * heads * seq * (seq + 1) / 2
        pre.append((float(seq), flops / t / peak))
    att_eff, att_half = _fit_half(pre)
    contexts = (256, 2048) if quick else (512, 2048, 8192)
    dec = decode_attention_fractions(torch, dev, dtype, esize, sync, reps, bandwidth, pool_bytes, contexts, say)
    att_mem_eff, att_warning = decode_attention_efficiency(dec)

    # --- dispatch and per-iteration overheads, from a real (tiny) transformers Llama --------------
    layer_s, iteration_s, per_seq_s = _overheads(torch, dev, dtype, sync, reps, say)
    unfused = _elementwise_classes(torch, dev, dtype, esize, sync, reps, bandwidth, say)
    kernel_launch = max(layer_s / DENSE_LAYER_KERNELS, 0.0)

    key = name or ("cpu-local" if not cuda else "cuda-local")
    gpu_name = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or platform.machine())
    total_mem = (torch.cuda.get_device_properties(dev).total_memory if cuda else _host_memory_bytes())
    source = (f"measured by `phasewise calibrate --device {device}{' --quick' if quick else ''}` on {gpu_name}, "
              f"torch {torch.__version__}, {torch.get_num_threads() if not cuda else 'GPU'} thread(s), host allocator "
              f"{host_allocator_note()}")
    entry = {
        "name": f"{gpu_name} (calibrated)",
        "kind": "gpu" if cuda else "cpu",
        "peak_flops": {dname: float(f"{peak:.4g}")},
        "vector_flops": float(f"{peak:.4g}") if not cuda else float(f"{peak / 15:.4g}"),
        "memory_bandwidth_bytes_per_s": float(f"{bandwidth:.4g}"),
        "memory_capacity_bytes": float(total_mem),
        "memory_type": "measured",
        "interconnect": {"intra_node_bandwidth_bytes_per_s": float(f"{bandwidth:.4g}"), "intra_node_latency_s": 1e-6,
                         "inter_node_bandwidth_bytes_per_s": 1.25e9, "inter_node_latency_s": 5e-5,
                         "pcie_bandwidth_bytes_per_s": float(f"{bandwidth:.4g}"), "gpus_per_node": 1},
        "tdp_w": 0.0,
        "price_per_hour_usd": 0.0,
        "sources": {"peak_flops": source, "memory": source,
                    "weight_row_half_elems": "fitted with the bandwidth to cold matrix-vector products of 16 MiB "
                                             "by row length k (elements: GB/s): " + ", ".join(
                                                 f"{k}: {r / 1e9:.2f}" for k, r in row_rates.items())
                                             + f" -> {bandwidth / 1e9:.2f} GB/s x k / (k + {row_half:.4g})",
                    "attention_efficiency": f"scaled_dot_product_attention, causal, {heads} heads of {hd}, over "
                                            "prompts of " + ", ".join(f"{int(n)}: {e:.3f}" for n, e in pre)
                                            + " of the GEMM peak (tokens: fraction), fitted as max x n / (n + half)",
                    "attention_memory_efficiency": (
                        f"decode attention (one query row, {DECODE_BATCH} sequences x {heads} heads of {hd}, distinct "
                        f"K and V from a pool beyond {pool_bytes >> 20} MiB used round-robin) over the measured "
                        "bandwidth at contexts " + ", ".join(f"{c}: {f:.3f}" for c, f in dec.items())
                        + f" (tokens: fraction); the longest context's, {max(dec)} tokens, as decode reads a long "
                        "cache" + (f". WARNING: {att_warning}" if att_warning else "")),
                    "interconnect": "not measured (single device)",
                    "tdp_w": "not measured", "price_per_hour_usd": "not applicable"},
        "efficiency": {
            "gemm_efficiency_max": round(eff_max, 4),
            "gemm_half_rows": round(half_rows, 3),
            "gemm_efficiency_curve": curve,
            "memory_efficiency_max": round(mem_eff, 4),
            "memory_half_bytes": float(f"{mem_half:.4g}"),
            "weight_row_half_elems": float(f"{row_half:.4g}"),
            "attention_efficiency_max": round(min(att_eff, 1.0), 4),
            "attention_half_tokens": round(att_half, 3),
            "attention_memory_efficiency": round(att_mem_eff, 4),
            "kernel_launch_s": float(f"{kernel_launch:.4g}"),
        },
    }
    engine = {
        "description": f"transformers eager forward on {key} (measured)",
        "iteration_overhead_s": float(f"{max(iteration_s, 0.0):.4g}"),
        "per_sequence_overhead_s": float(f"{max(per_seq_s, 0.0):.4g}"),
        "eager_launch_s": 0.0,  # synchronous CPU execution: dispatch is additive (kernel_launch_s)
        # each elementwise class's measured traffic over the fused count (the time-based counterpart of hf-eager's
        # counted factors): elementwise_passes stays 1
        "unfused_elementwise": unfused,
        "cuda_graphs": False,
        "cuda_graph_max_batch": 0,
        "decode_attention_tensor_cores": bool(cuda),
        "source": source + "; unfused_elementwise: each class (transformers' LlamaRMSNorm after a residual add, on a "
                           "head, apply_rotary_pos_emb, SiLU gating; 512 tokens) timed alone, its time at the measured "
                           "bandwidth over its fused bytes (measurements: elementwise_over_fused_bytes)",
    }
    if cuda:
        engine["eager_launch_s"], entry["efficiency"]["kernel_launch_s"] = float(f"{kernel_launch:.4g}"), 2e-6
    cold: dict[str, float] = {}
    cache_bytes = None if cuda else private_cache_bytes()
    if cache_bytes is not None:  # the host runs the kernels: its dispatch after kernels that streamed its cache
        cold = _cold_dispatch(torch, dev, dtype, sync, reps, say, pool_bytes, key, entry, engine, kernel_launch)
        entry["efficiency"].update(kernel_launch_cold_s=float(f"{cold['kernel_launch_cold_s']:.4g}"),
                                   host_cache_bytes=float(cache_bytes))
        entry["sources"]["kernel_launch_cold_s"] = (
            f"a decode step of a {COLD_WIDTH[0]}-wide Llama ({cold['layer_weight_bytes'] / 1e6:.0f} MB of weights a "
            f"layer), 5 layers against 1, copies used round-robin beyond {pool_bytes >> 20} MiB: "
            f"{cold['layer_s'] * 1e3:.3f} ms a layer, of which the cost model's device time at the constants above "
            f"{cold['layer_device_s'] * 1e3:.3f} ms; the rest over its {DENSE_LAYER_KERNELS} kernels")
        entry["sources"]["host_cache_bytes"] = "the largest cache private to one core (Linux sysfs cpu0/cache)"
    return {"hardware": {key: entry}, "engines": {f"{key}-eager": engine},
            "measurements": {"gemm_flops_by_rows": geo,
                             "copy_bytes_per_s_by_size": dict(bws), "cold_matvec_bytes_per_s": cold_rates,
                             "weight_stream_bytes_per_s_by_row_length": row_rates,
                             "prefill_attention_efficiency": dict(pre),
                             "decode_attention_bandwidth_fraction_by_context": dec, "layer_overhead_s": layer_s,
                             "iteration_overhead_s": iteration_s, "per_sequence_overhead_s": per_seq_s,
                             "elementwise_over_fused_bytes": unfused, "cold_dispatch": cold,
                             "warnings": [w for w in (att_warning,) if w]}}


DECODE_BATCH = 8  # sequences of the decode-attention probe


def decode_attention_fractions(torch, dev, dtype, esize: int, sync, reps: int, bandwidth: float, pool_bytes: int,
                               contexts: tuple[int, ...], say) -> dict[int, float]:
    """{context: bytes of K and V read / time / `bandwidth`} of one query row's scaled_dot_product_attention over a
    cache of `context` tokens, as decode reads it: K and V two tensors (each byte read once), and enough (K, V) pairs,
    used round-robin, to pass `pool_bytes`, beyond the caches (so the KV is read from memory, not a warm cache)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    heads, hd = PROBE_HEADS, PROBE_HEAD_DIM
    fractions = {}
    for ctx in contexts:
        say(f"attention decode {ctx}")
        pair_bytes = 2 * DECODE_BATCH * heads * ctx * hd * esize
        count = max(2, pool_bytes // pair_bytes)
        q = torch.randn(DECODE_BATCH, heads, 1, hd, device=dev, dtype=dtype)
        pool = [tuple(torch.randn(DECODE_BATCH, heads, ctx, hd, device=dev, dtype=dtype) for _ in "kv")
                for _ in range(count)]
        t = median_time(lambda: [sdpa(q, k, v) for k, v in pool], sync, reps) / count
        fractions[ctx] = pair_bytes / t / bandwidth
        pool.clear()
    return fractions


def decode_attention_efficiency(fractions: dict[int, float]) -> tuple[float, str]:
    """(attention_memory_efficiency, a warning or '') from decode_attention_fractions: the longest context's (decode
    reads a long cache; a short one adds a per-call cost the dispatch term counts). Above 1 the measurement is wrong
    (the KV read from a cache, or the machine's load changed between the bandwidth probe and this one): the field
    can hold at most 1, so it is written as 1 and the warning, naming the measured fraction, goes beside it (its
    source, and calibrate's output), never a silent clamp."""
    longest = max(fractions)
    if fractions[longest] <= 1.0:
        return fractions[longest], ""
    return 1.0, (f"decode attention at {longest} tokens read its KV at {fractions[longest]:.2f}x the measured memory "
                 "bandwidth: above 1 the measurement is wrong (the KV served from a cache, or the machine's load "
                 "changed between the probes); attention_memory_efficiency written as 1, its upper bound: rerun "
                 "calibrate on an idle machine")


def compact_measurements(value: Any) -> Any:
    """calibrate's raw measurements as its YAML holds them: floats to 4 significant figures, keys as text (the
    readers' rule for YAML keys; a whole number without its '.0')."""
    if isinstance(value, dict):
        return {str(int(k) if isinstance(k, float) and k.is_integer() else k): compact_measurements(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [compact_measurements(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.4g}")
    return value


def _overheads(torch, dev, dtype, sync, reps: int, say) -> tuple[float, float, float]:
    transformers = need_transformers()
    times = {}
    for layers, batch in ((1, 1), (5, 1), (1, 16)):
        say(f"overheads: tiny Llama, {layers} layer(s), batch {batch}")
        cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                       num_attention_heads=2, num_key_value_heads=1, vocab_size=256,
                                       max_position_embeddings=512)
        model = transformers.LlamaForCausalLM(cfg).to(dev, dtype).eval()
        ids = torch.randint(0, 256, (batch, 8), device=dev)
        with torch.inference_mode():
            out = model(ids, use_cache=True)
            cache = returned_kv_cache(out)
            kv = {kv_cache_arg(model): cache}
            nxt = ids[:, -1:]

            def step():
                model(nxt, **kv, use_cache=True, logits_to_keep=1)
                cache.crop(-1)  # drop the token just appended: every step sees the same context

            times[(layers, batch)] = median_time(step, sync, reps * 3, warmup=3)
    per_layer = (times[(5, 1)] - times[(1, 1)]) / 4
    iteration = times[(1, 1)] - per_layer - 3 * per_layer / DENSE_LAYER_KERNELS  # embedding + LM head kernels
    per_seq = (times[(1, 16)] - times[(1, 1)]) / 15
    return per_layer, iteration, per_seq


def private_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> float | None:
    """The largest data cache private to one core (cpu0's, by Linux sysfs: L2 on current x86 and Arm cores); None
    where sysfs does not say."""
    found, units = None, {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        for index in sorted(root.glob("index*")):
            shared = (index / "shared_cpu_list").read_text().strip()
            if (index / "type").read_text().strip() == "Instruction" or not shared.isdigit():
                continue
            size = (index / "size").read_text().strip().upper()
            size_bytes = float(size[:-1]) * units[size[-1]] if size[-1] in units else float(size)
            found = max(found or 0.0, size_bytes)
    except (OSError, ValueError):
        return None
    return found


def _cold_dispatch(torch, dev, dtype, sync, reps: int, say, pool_bytes: int, key: str, entry: dict[str, Any],
                   engine: dict[str, Any], warm_launch_s: float) -> dict[str, float]:
    """The per-kernel host cost of a forward whose layers stream beyond the core's caches: the layers' GEMVs evict
    the framework's code and data (Python, the dispatcher) from them, so each op after one starts cold (measured
    here: an RMSNorm's ops after a GEMV over 17 MB took 47 us against 11 us after nothing). A decode step of a
    COLD_WIDTH Llama at 5 layers against 1 (copies of each used round-robin, beyond `pool_bytes`, as the weight
    streaming above), per layer, less the cost model's device time for that layer at the constants just measured,
    over the layer's kernels; at least the warm cost. Its width is one `validate` does not run."""
    transformers = need_transformers()
    from phasewise.perf.batch import BatchShape
    from phasewise.perf.cost import CostModel
    from phasewise.perf.memory import weight_bytes_per_gpu
    from phasewise.specs.hardware import EngineProfile, build_hardware
    from phasewise.specs.hf_config import from_hf_config
    from phasewise.specs.quant import load_quant

    hidden, mlp, heads, kv_heads = COLD_WIDTH
    fields = dict(hidden_size=hidden, intermediate_size=mlp, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  head_dim=hidden // heads, vocab_size=256, max_position_embeddings=512, tie_word_embeddings=False)
    quant = load_quant("fp32" if dtype == torch.float32 else "bf16")
    specs = {layers: from_hf_config("cold dispatch", dict(fields, num_hidden_layers=layers, model_type="llama",
                                                          hidden_act="silu")) for layers in (1, 5)}
    layer_bytes = weight_bytes_per_gpu(specs[1], quant, 1, 1, embeddings=False)
    times = {}
    for layers in (1, 5):
        say(f"cold dispatch: {hidden}-wide Llama, {layers} layer(s)")
        copies = max(2, math.ceil(pool_bytes / (layers * layer_bytes)))
        cfg = transformers.LlamaConfig(num_hidden_layers=layers, **fields)
        models = [transformers.LlamaForCausalLM(cfg).to(dev, dtype).eval() for _ in range(copies)]
        ids = torch.randint(0, 256, (1, 8), device=dev)
        with torch.inference_mode():
            caches = [returned_kv_cache(model(ids, use_cache=True)) for model in models]
            args = [{kv_cache_arg(model): cache} for model, cache in zip(models, caches)]
            nxt = ids[:, -1:]

            def step():
                for model, cache, kv in zip(models, caches, args):
                    model(nxt, **kv, use_cache=True, logits_to_keep=1)
                    cache.crop(-1)  # every step sees the same context

            times[layers] = median_time(step, sync, reps, warmup=2) / copies
        models.clear()
    layer_s = (times[5] - times[1]) / 4
    device = {}
    no_launch = dict(entry, efficiency=dict(entry["efficiency"], kernel_launch_s=0.0))
    hardware = build_hardware(key, no_launch, "calibrate")
    profile = EngineProfile(name=f"{key}-eager", **engine)
    for layers, spec in specs.items():
        device[layers] = CostModel(spec, hardware, quant, profile).iteration(BatchShape.uniform(1, 1, 8)).latency_s
    layer_device_s = (device[5] - device[1]) / 4
    cold_s = max(warm_launch_s, (layer_s - layer_device_s) / DENSE_LAYER_KERNELS)
    return {"kernel_launch_cold_s": cold_s, "layer_s": layer_s, "layer_device_s": layer_device_s,
            "layer_weight_bytes": float(layer_bytes)}


def _elementwise_classes(torch, dev, dtype, esize: int, sync, reps: int, bandwidth: float, say) -> dict[str, float]:
    """How many times each class of an eager engine's unfused elementwise work streams its data, relative to the fused
    count the cost model uses (perf/cost.py), from its time at the measured bandwidth: transformers' own modules
    (LlamaRMSNorm, apply_rotary_pos_emb, SiLU gating) timed class by class, so that a model with another mix (Gemma's
    sandwich norms, Qwen3's q / k norms, a wider MLP) weighs each as this machine runs it. Classes and their fused
    counts: an add + norm (the residual add, then the norm: 5 hidden-size vectors a token, two a layer), a norm with no
    residual add over a q-shaped tensor (read and written), RoPE on q and k (each read and written), the gated
    activation (gate and up read, the product written)."""
    transformers = need_transformers()
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    tokens, h, inter, heads, hd = 512, 1024, 4096, 16, 64
    say("elementwise classes")
    norm, head_norm = LlamaRMSNorm(h).to(dev, dtype), LlamaRMSNorm(hd).to(dev, dtype)
    x, residual = (torch.randn(1, tokens, h, device=dev, dtype=dtype) for _ in range(2))
    gate, up = (torch.randn(1, tokens, inter, device=dev, dtype=dtype) for _ in range(2))
    q, k = (torch.randn(1, heads, tokens, hd, device=dev, dtype=dtype) for _ in range(2))
    cos = torch.randn(1, tokens, hd, device=dev, dtype=dtype)
    act = torch.nn.functional.silu
    runs = {"norm": (lambda: norm(x + residual), 5 * h * tokens),
            "plain_norm": (lambda: head_norm(q), 2 * q.numel()),
            "rope": (lambda: apply_rotary_pos_emb(q, k, cos, cos), 2 * (q.numel() + k.numel())),
            "activation": (lambda: act(gate) * up, 3 * inter * tokens)}
    factors = {}
    for name, (run, fused_elements) in runs.items():
        t = median_time(run, sync, reps, min_time_s=0.01)
        factors[name] = round(max(1.0, t * bandwidth / (fused_elements * esize)), 3)
    del transformers
    return factors


def _host_memory_bytes() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    raise PhasewiseError("cannot read the host memory size (/proc/meminfo)")
