"""`phasewise validate --dllm`: the measured-vs-predicted table of bidirectional (diffusion-LM) forwards."""

from __future__ import annotations

from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import allocator_words


def _blocks(text: str | None) -> list[int] | None:
    """--blocks as given; None when not given (dllm_validate's default: BLOCKS, or QUICK_BLOCKS with --quick)."""
    if text is None:
        return None
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PhasewiseError(f"--blocks must be comma-separated positive integers (got '{text}')") from None
    if not values or any(v < 1 for v in values):
        raise PhasewiseError(f"--blocks must be comma-separated positive integers (got '{text}')")
    return values


def run_dllm_validate(console, model: str | None, hardware: str, device: str, layers: int | None,
                      hidden: int | None, engine: str | None, prompt: int, canvas: int, blocks: str | None, quick: bool,
                      threads: int | None, as_json: bool, serve: bool = False, pipeline: int = 0) -> None:
    from rich.table import Table

    from phasewise.apps.cli_measure import entry_words, uncalibrated_note
    from phasewise.measure.dllm_check import DLLM_MODEL, dllm_summary, dllm_validate

    if serve or pipeline:
        raise PhasewiseError("--dllm times single forwards: it does not combine with "
                             f"{'--serve' if serve else '--pipeline'}")
    if device != "cpu":
        raise PhasewiseError(f"--dllm times this CPU (fp32, one thread): use --device cpu (got '{device}')")
    sizes = _blocks(blocks)
    with console.status("timing bidirectional forwards") as status:
        points, info = dllm_validate(hardware, model or DLLM_MODEL, layers or 6, hidden or 768, prompt, canvas,
                                     sizes, quick, engine, threads,
                                     progress=lambda m: status.update(f"dllm: {m}"))
    stats = dllm_summary(points)
    words = entry_words(hardware)
    if as_json:
        info = {**info, "hardware_calibrated": words == "calibrated"}
        print(dumps({"info": info, "summary": stats, "points": [
            {"kind": p.kind, "batch": p.batch, "new": p.new, "cached": p.cached, "logit_tokens": p.logit_tokens,
             "measured_ms": p.measured_s * 1e3, "cpu_ms": p.cpu_s * 1e3, "predicted_ms": p.predicted_s * 1e3,
             "error": p.error, "cpu_error": p.cpu_error,
             "unfitted_predicted_ms": p.unfitted_s * 1e3, "unfitted_error": p.unfitted_error,
             "unfitted_cpu_error": p.unfitted_cpu_error}
            for p in points]}))
        return
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params), full attention, on "
                        f"{info['hardware_source']} / {info['engine']} (unfitted: catalog {info['unfitted_hardware']} / "
                        f"{info['unfitted_engine']}), median of {info['repeats']}, 1 thread, "
                        f"{allocator_words(info)}", title_justify="left")
    for col in ("forward", "new", "cached", "logits", "wall ms", "cpu ms", "predicted ms", "error", "vs cpu",
                "unfitted ms", "error", "vs cpu"):
        table.add_column(col, justify="left" if col == "forward" else "right")
    for p in points:
        label = "block over prefix" if p.kind == "block" else "refresh prompt+canvas"
        table.add_row(label, str(p.new), str(p.cached), str(p.logit_tokens), f"{p.measured_s * 1e3:.1f}",
                      f"{p.cpu_s * 1e3:.1f}", f"{p.predicted_s * 1e3:.1f}", f"{p.error:+.1%}", f"{p.cpu_error:+.1%}",
                      f"{p.unfitted_s * 1e3:.1f}", f"{p.unfitted_error:+.1%}", f"{p.unfitted_cpu_error:+.1%}")
    console.print(table)
    for label, key in ((f"{words} vs wall", ""), (f"{words} vs CPU time", "cpu_"), ("unfitted vs wall", "unfitted_"),
                       ("unfitted vs CPU time", "unfitted_cpu_")):
        parts = [f"{k} median {stats[f'{k}_{key}median_abs_error']:.1%} (worst {stats[f'{k}_{key}worst_abs_error']:.1%})"
                 for k in ("block", "refresh") if f"{k}_{key}median_abs_error" in stats]
        console.print(f"|error| {label}: " + ", ".join(parts) + f"; all median {stats[f'{key}median_abs_error']:.1%}")
    note = uncalibrated_note(hardware)
    if note:
        console.print(f"[yellow]note[/] {note}", highlight=False)
