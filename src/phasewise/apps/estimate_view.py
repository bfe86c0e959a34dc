"""Rich rendering of an Estimate for the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from phasewise.apps.cli_common import fit_to_width
from phasewise.apps.hardware_view import cell, significant
from phasewise.apps.mapping_view import render_mapped
from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import Estimate

# the estimate tables' host row: added after the device's work, or overlapped with it (engine overlap_scheduling)
HOST_ROW = {False: "host overhead", True: "host (overlapped: max with device)"}
WINDOW_KV_WORDS = {"all_tokens": "every token on every layer (one pool)",
                   "window_pool": "a pool of their own (--swa-full-tokens-ratio)",
                   "layer_groups": "their last window, in vLLM's KV cache groups"}
# what bounds estimate's max batch (Estimate.to_dict max_batch_bound_by)
BATCH_BOUND_WORDS = {"kv_pool": "the KV pool", "state_seats": "the recurrent-state pool's seats",
                     "engine_max_sequences": "the engine's max sequences"}


def _fmt_flops(x: float) -> str:
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if x >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f}"


def _fmt_bytes(x: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f} B"


def idle_ranks(batch: int, attention_dp: int, each: str) -> str:
    """What a batch of fewer sequences than attention-DP ranks leaves idle (each rank runs its own sequences): the
    iteration's tokens/s is then only the busy ranks' share of the instance's, and --batch N fills every rank."""
    if batch >= attention_dp:
        return ""
    return (f" on {batch} of {attention_dp} attention-DP ranks (the others idle; --batch {attention_dp} gives "
            f"every rank {each})")


def render_estimate(console: Console, est: Estimate) -> None:
    d = est.to_dict()
    cm = est.cost_model
    layout = cm.layout
    console.print(
        f"[bold]{d['model']}[/] on [bold]{d['hardware']}[/] x{cm.tp * cm.pp} (tp={cm.tp}, pp={cm.pp}"
        + (f", ep={layout.ep}" if layout.ep > 1 else "")
        + (f", attention_dp={layout.attention_dp}" if layout.attention_dp > 1 else "") + "), "
        f"{d['precision']} weights ({d['compute_dtype']} compute"
        f"{'' if d['expert_compute_dtype'] is None else ', experts ' + d['expert_compute_dtype']}), "
        f"{d['kv_dtype']} KV, engine {d['engine']}; "
        f"ridge {significant(d['ridge_flops_per_byte'])} FLOP/byte"
    )
    shapes = {"prefill": f"{est.batch} x {est.prompt_len} tokens in one iteration"
                         + idle_ranks(est.batch, layout.attention_dp, "a prompt"),
              "decode": f"{est.batch} sequences at {est.context_len} cached tokens"
                        + idle_ranks(est.batch, layout.attention_dp, "a sequence")}
    roofline, unmapped = d, ""
    if est.mapped is not None:  # the mapped figures lead; the roofline's follow, said to be without the mapping
        name = est.mapped.mapping
        render_mapped(console, est.mapped, {
            phase: f"{label} on mapping '{name}': {shapes[phase]} -> {d[phase]['latency_ms']:.2f} ms, "
                   f"{d[phase]['tokens_per_s']:,.0f} tok/s, {d[phase]['bound']}-bound"
            for phase, label in (("prefill", "Prefill"), ("decode", "Decode step"))})
        roofline, unmapped = d["unmapped"], "Unmapped (the chip's peaks as one roofline, not the mapping) "
    for phase, it, title in (("prefill", est.prefill, f"{unmapped}Prefill: {shapes['prefill']}"),
                             ("decode", est.decode, f"{unmapped}Decode step: {shapes['decode']}")):
        p = roofline[phase]
        table = Table(title=f"{title} -> {p['latency_ms']:.2f} ms, {p['tokens_per_s']:,.0f} tok/s, "
                            f"{p['bound']}-bound, intensity {p['arithmetic_intensity']:.1f} FLOP/B",
                      title_justify="left")
        for col in ("operator", "x", "time ms", "compute ms", "memory ms", "dispatch ms", "FLOPs", "bytes",
                    "FLOP/B", "bound"):
            # figures and names whole (no_wrap); on a narrow terminal fit_to_width drops padding, then columns
            table.add_column(col, justify="right" if col not in ("operator", "bound") else "left",
                             no_wrap=col != "bound", overflow="fold")
        for op in it.operators:
            table.add_row(op.name, str(op.count), f"{op.time_s * 1e3:.3f}", f"{op.compute_s * 1e3:.3f}",
                          f"{op.memory_s * 1e3:.3f}", f"{(op.dispatch_s + op.launch_s) * 1e3:.3f}",
                          _fmt_flops(op.flops), _fmt_bytes(op.bytes), f"{op.arithmetic_intensity:.1f}", op.bound)
        # the engine's host work: after the device's (the rows add up to the title's time), or, where its scheduler
        # overlaps the next step's host work with this one, under it (the title: the larger of the two, not the sum)
        table.add_row(HOST_ROW[cm.engine.overlap_scheduling], "1", f"{it.host_s * 1e3:.3f}", "", "",
                      f"{it.host_s * 1e3:.3f}", "", "", "", "dispatch")
        if cm.engine.overlap_scheduling:
            table.caption = (f"{d['engine']} overlaps its host work with the device's: the step takes the larger of "
                             "the host row and the operators' time, not their sum")
            table.caption_justify = "left"
        fit_to_width(table, console.width, ("dispatch ms", "FLOP/B", "compute ms", "memory ms"))
        console.print(table)
    images = d.get("images")
    if images:
        console.print(
            f"Images: {images['per_sequence']} of {images['size_px'][0]}x{images['size_px'][1]} px per prompt, resized "
            f"to {images['resized_px'][0]}x{images['resized_px'][1]}: {images['patches_per_image']:,} encoder patches "
            f"and {images['prompt_tokens_per_image']:,} prompt tokens each ({images['text_prompt_len']:,} text tokens "
            f"+ the images' = {d['prompt_len']:,} prefilled); the vision encoder over the batch's images "
            f"{images['encoder_ms']:.2f} ms, and with the prefill after it {images['prefill_with_encoder_ms']:.2f} ms")
    m = d["memory"]
    gib = 2**30
    status = "[green]fits[/]" if m["fits"] else f"[red]does not fit[/]: {m['reason']}"
    console.print(
        f"Memory per GPU: weights {m['weight_bytes'] / gib:.2f} GiB"
        + (f" (a vision encoder of {m['encoder_params'] / 1e9:.2f} B parameters with them)" if m["encoder_params"]
           else "")
        + f", activations {m['activation_bytes'] / gib:.2f} GiB, "
        f"reserved {m['reserved_bytes'] / gib:.2f} GiB"
        + (f", recurrent state {m['recurrent_state_bytes'] / gib:.2f} GiB "
           f"({m['recurrent_state_bytes_per_sequence'] / 2**20:.1f} MiB/sequence"
           + (f", {m['recurrent_state_seats']:,} sequences" if m["recurrent_state_seats"] is not None else "") + ")"
           if m["recurrent_state_bytes"] else "")
        + (f", compressor state {m['slot_state_bytes'] / gib:.2f} GiB (the engine's request slots)"
           if m["slot_state_bytes"] else "")
        + (f", recurrent state from the KV pool ({m['recurrent_state_bytes_per_sequence'] / 2**20:.1f} MiB/sequence, "
           f"blocks of {m['hybrid_kv_block_tokens']:,} tokens)" if m["recurrent_state_in_kv_pool"] else "")
        + f" of {m['usable_bytes'] / gib:.1f} GiB usable; "
        f"KV {m['kv_bytes_per_token'] / 1024:.1f} KiB/token on {m['kv_token_unit']} -> "
        f"{m['kv_capacity_tokens']:,} tokens "
        + (f"(the instance's: its {d['attention_dp']} attention ranks' caches together) "
           if d.get("attention_dp", 1) > 1 else "")
        + (f"(vLLM's start-up 'GPU KV cache size': {m['engine_kv_cache_tokens']:,} tokens) "
           if m["engine_kv_cache_tokens"] is not None
           and m["engine_kv_cache_tokens"] < m["kv_capacity_tokens"] - m["kv_block_tokens"] else "")
        + f"(max batch {m['max_batch_at_context']:,} at this context, bound by "
        f"{BATCH_BOUND_WORDS[m['max_batch_bound_by']]}"
        + (f" of {m['engine_max_sequences']:,}" if m["max_batch_bound_by"] == "engine_max_sequences" else "")
        + f"; {m['kv_tokens_per_sequence']:,} tokens' KV each"
        + (f" in {m['kv_block_tokens']}-token blocks" if m["kv_block_tokens"] > 1 else "")
        + (f", windowed layers' KV: {WINDOW_KV_WORDS[m['window_kv_layout']]}"
           if m["window_kv_layout"] not in (None, "per_sequence") else "")
        + (f", full pool {m['window_pool_tokens'][0]:,} / window pool {m['window_pool_tokens'][1]:,} tokens per "
           "attention rank" if m["window_pool_tokens"] else "") + "); "
        f"{status}"
    )
    pool = m["compressed_kv_pool"]
    if pool and pool["layout"] == "window_pages":
        console.print(
            f"Window pages (TensorRT-LLM, perf/window_pages.py): a sequence holds "
            f"{pool['sequence_window_bytes'] / 2**20:.1f} MiB for its windows and compressor states in whole pages "
            f"of {pool['block_tokens']} tokens beside {pool['bytes_per_token']:,.0f} bytes per context token; this "
            f"batch's prefill chunk {m['chunk_window_bytes'] / gib:.2f} GiB more while it runs (kept free)")
    elif pool:
        console.print(
            f"Shared KV block pool (vLLM, every cache group's blocks in one: perf/shared_block_pool.py): "
            f"{pool['blocks_per_rank']:,} blocks of {pool['block_bytes']:,} bytes per attention rank "
            f"({pool['layer_tuples']} sets of the compressed pages); a sequence holds one per {pool['block_tokens']} "
            f"context tokens and {pool['window_blocks_per_sequence']} for its windows, this batch's prefill chunk "
            f"{pool['chunk_window_blocks']:,} more while it runs ({m['chunk_window_bytes'] / gib:.2f} GiB kept free). "
            f"vLLM's start-up: maximum concurrency for {pool['max_model_len']:,} tokens per request "
            f"{pool['max_concurrency']:.2f}x, GPU KV cache size {pool['kv_cache_tokens']:,} tokens"
            + ("" if pool["longest_request"] >= pool["max_model_len"] else
               f"; one such request does not fit: --max-model-len {pool['longest_request']:,} at most"))
    if est.startup is not None:
        console.print(f"Start-up (engine start to port open, perf/startup.py): {est.startup.summary()}")


def compare_chips(chips: list[str], estimate_on: Callable[[str], Estimate]) -> list[dict[str, Any]]:
    """`estimate --hardware A,B,...`: one row per chip, its estimate's figures (estimate_on(chip)) or, where the
    model does not fit or the chip lacks the precision's tensor path, that one-line reason (`fits` false, `error`).
    Tokens per dollar: the phase's tokens/s over the instance's GPUs at the chip's $/GPU-hour; both NaN (null in
    --json, n/a in the table) for a chip with no rental price."""
    rows = []
    for chip in chips:
        try:
            est = estimate_on(chip)
        except PhasewiseError as exc:
            rows.append({"hardware": chip, "fits": False, "error": str(exc)})
            continue
        d, cm = est.to_dict(), est.cost_model
        per_hour = cm.hw.gpu_hour_usd * cm.tp * cm.pp
        row = {"hardware": chip, "fits": d["fits"], "error": None if d["fits"] else d["memory"]["reason"],
               "gpus": cm.tp * cm.pp, "price_per_hour_usd": per_hour, "estimate": d}
        for phase in ("prefill", "decode"):
            tps = d[phase]["tokens_per_s"]
            row[f"{phase}_tokens_per_dollar"] = tps * 3600 / per_hour
        rows.append(row)
    return rows


def render_comparison(console: Console, rows: list[dict[str, Any]]) -> None:
    first = next((r["estimate"] for r in rows if "estimate" in r), None)
    if first is not None:
        dp = first["attention_dp"]
        layout = (f", ep={first['ep']}" if first["ep"] > 1 else "") + (f", attention_dp={dp}" if dp > 1 else "")
        mapping = first.get("mapping")
        console.print(f"[bold]{first['model']}[/] (tp={first['tp']}, pp={first['pp']}{layout}, {first['precision']}, "
                      f"engine {first['engine']}): prefill of {first['batch']} x {first['prompt_len']} tokens, a "
                      f"decode step of {first['batch']} at {first['context_len']} cached tokens, per chip"
                      + (f", on mapping '{mapping['name']}' (its substrates; --json's estimate.unmapped: the "
                         "roofline without it)" if mapping else "")
                      + idle_ranks(first["batch"], dp, "a prompt and a sequence; tokens/s and per $ are the busy "
                                   "ranks'"))
    table = Table(title_justify="left")
    for col in ("chip", "prefill ms", "prefill bound", "decode ms", "decode bound", "decode tok/s", "KV tokens",
                "$/h", "prefill tok/$", "decode tok/$", "fits"):
        table.add_column(col, justify="left" if col in ("chip", "prefill bound", "decode bound", "fits") else "right",
                         no_wrap=col not in ("prefill bound", "decode bound", "fits"), overflow="fold")
    for r in rows:
        if "estimate" not in r:
            table.add_row(r["hardware"], *[""] * 9, "[red]no[/] (below)")
            continue
        d = r["estimate"]
        per_dollar = [cell(r[k], ",.0f") for k in ("prefill_tokens_per_dollar", "decode_tokens_per_dollar")]
        table.add_row(r["hardware"], f"{d['prefill']['latency_ms']:.2f}", d["prefill"]["bound"],
                      f"{d['decode']['latency_ms']:.2f}", d["decode"]["bound"], f"{d['decode']['tokens_per_s']:,.0f}",
                      f"{d['memory']['kv_capacity_tokens']:,}", cell(r["price_per_hour_usd"], ".2f"), *per_dollar,
                      "[green]yes[/]" if r["fits"] else "[red]no[/] (below)")
    fit_to_width(table, console.width, ("prefill tok/$", "decode tok/$", "$/h", "KV tokens", "decode tok/s"))
    console.print(table)
    for r in rows:
        if not r["fits"]:
            console.print(f"{r['hardware']}: {r['error']}")
