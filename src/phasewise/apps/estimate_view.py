"""Rich rendering of an Estimate for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from phasewise.apps.mapping_view import render_mapped
from phasewise.perf.estimate import Estimate

WINDOW_KV_WORDS = {"all_tokens": "every token on every layer (one pool)",
                   "window_pool": "a pool of their own (--swa-full-tokens-ratio)"}


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


def render_estimate(console: Console, est: Estimate) -> None:
    d = est.to_dict()
    cm = est.cost_model
    console.print(
        f"[bold]{d['model']}[/] on [bold]{d['hardware']}[/] x{cm.tp * cm.pp} (tp={cm.tp}, pp={cm.pp}), "
        f"{d['precision']} weights ({d['compute_dtype']} compute), {d['kv_dtype']} KV, engine {d['engine']}; "
        f"ridge {d['ridge_flops_per_byte']:.0f} FLOP/byte"
    )
    for phase, it, title in (
        ("prefill", est.prefill, f"Prefill: {est.batch} x {est.prompt_len} tokens in one iteration"),
        ("decode", est.decode, f"Decode step: {est.batch} sequences at {est.context_len} cached tokens"),
    ):
        p = d[phase]
        table = Table(title=f"{title} -> {p['latency_ms']:.2f} ms, {p['tokens_per_s']:,.0f} tok/s, "
                            f"{p['bound']}-bound, intensity {p['arithmetic_intensity']:.1f} FLOP/B",
                      title_justify="left")
        for col in ("operator", "x", "time ms", "compute ms", "memory ms", "dispatch ms", "FLOPs", "bytes",
                    "FLOP/B", "bound"):
            table.add_column(col, justify="right" if col not in ("operator", "bound") else "left")
        for op in it.operators:
            table.add_row(op.name, str(op.count), f"{op.time_s * 1e3:.3f}", f"{op.compute_s * 1e3:.3f}",
                          f"{op.memory_s * 1e3:.3f}", f"{(op.dispatch_s + op.launch_s) * 1e3:.3f}",
                          _fmt_flops(op.flops), _fmt_bytes(op.bytes), f"{op.arithmetic_intensity:.1f}", op.bound)
        table.add_row("host overhead", "1", f"{it.host_s * 1e3:.3f}", "", "", f"{it.host_s * 1e3:.3f}", "", "", "",
                      "dispatch")
        console.print(table)
    if est.mapped is not None:
        render_mapped(console, est.mapped)
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
        + (f", recurrent state from the KV pool ({m['recurrent_state_bytes_per_sequence'] / 2**20:.1f} MiB/sequence, "
           f"blocks of {m['hybrid_kv_block_tokens']:,} tokens)" if m["recurrent_state_in_kv_pool"] else "")
        + f" of {m['usable_bytes'] / gib:.1f} GiB usable; "
        f"KV {m['kv_bytes_per_token'] / 1024:.1f} KiB/token -> {m['kv_capacity_tokens']:,} tokens "
        f"(max batch {m['max_batch_at_context']:,} at this context, {m['kv_tokens_per_sequence']:,} tokens' KV each"
        + (f", windowed layers' KV: {WINDOW_KV_WORDS[m['window_kv_layout']]}"
           if m["window_kv_layout"] not in (None, "per_sequence") else "")
        + (f", full pool {m['window_pool_tokens'][0]:,} / window pool {m['window_pool_tokens'][1]:,} tokens per "
           "attention rank" if m["window_pool_tokens"] else "") + "); "
        f"{status}"
    )
