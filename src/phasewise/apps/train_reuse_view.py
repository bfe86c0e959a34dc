"""`phasewise validate --train-reuse`: the measured-vs-predicted table of real training steps with the forward
recomputed vs reused (measure/train_reuse.py)."""

from __future__ import annotations

from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import allocator_words

LABELS = {"forward": "forward", "backward_optimizer": "backward+AdamW", "optimizer": "  of which AdamW",
          "step": "step (recompute)", "reuse_step": "step (reuse)"}


def check_train_reuse_flags(device: str, serve: bool, pipeline: int, others: dict[str, bool] | None = None) -> None:
    """--train-reuse runs alone, on this CPU: one line naming the flag it cannot be combined with."""
    if device != "cpu":
        raise PhasewiseError(f"--train-reuse times fp32 training steps on this CPU: use --device cpu (got '{device}')")
    clash = [flag for flag, on in {"--serve": serve, "--pipeline": bool(pipeline), **(others or {})}.items() if on]
    if clash:
        raise PhasewiseError(f"--train-reuse cannot be combined with {', '.join(clash)}: run them separately")


def run_train_reuse_validate(console, model: str, hardware: str, layers: int | None, hidden: int | None,
                             method: str, quick: bool, engine: str | None, threads: int | None,
                             as_json: bool) -> None:
    from rich.table import Table

    from phasewise.apps.cli_measure import entry_words, uncalibrated_note
    from phasewise.measure.train_reuse import METRICS, train_reuse_summary, train_reuse_validate

    if quick:
        layers, hidden = layers or 2, hidden or 256
    else:
        layers, hidden = layers or 4, hidden or 512
    with console.status("timing training steps") as status:
        points, info = train_reuse_validate(model, hardware, layers, hidden, method, quick, engine=engine,
                                            threads=threads, progress=lambda m: status.update(f"train-reuse: {m}"))
    stats = train_reuse_summary(points)
    words = entry_words(hardware)
    if as_json:
        info = {**info, "hardware_calibrated": words == "calibrated"}
        print(dumps({"info": info, "summary": stats, "points": [
            {"seqs": p.seqs, "tokens_per_seq": p.tokens_per_seq,
             "measured_ms": {m: p.measured_s[m] * 1e3 for m in METRICS},
             "measured_wall_ms": {m: p.wall_s[m] * 1e3 for m in METRICS},
             "system_ms": {m: p.system_s[m] * 1e3 for m in METRICS}, "page_faults": p.page_faults,
             "predicted_ms": {m: p.predicted_s[m] * 1e3 for m in METRICS},
             "unfitted_ms": {m: p.unfitted_s[m] * 1e3 for m in METRICS},
             "error": {m: p.error(m) for m in METRICS}, "unfitted_error": {m: p.error(m, True) for m in METRICS},
             "speedup": {"measured": p.speedup(), "predicted": p.speedup("predicted"),
                         "unfitted": p.speedup("unfitted")},
             "saved_bytes": {"measured": p.saved_bytes, "predicted": p.predicted_saved_bytes}} for p in points]}))
        return
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params, {info['layers']} layers x "
                        f"{info['hidden']}), {info['method']} training step, fp32, {info['threads']} thread(s), "
                        f"{allocator_words(info)}, "
                        f"measured in {info['clock']}, on "
                        f"{info['hardware']} / {info['engine']}; unfitted = {info['unfitted']}", title_justify="left")
    for col in ("batch", "metric", "measured ms", "predicted ms", "error", "unfitted ms", "unfitted error"):
        table.add_column(col, justify="left" if col in ("batch", "metric") else "right")
    for p in points:
        for i, m in enumerate(METRICS):
            table.add_row(f"{p.seqs} x {p.tokens_per_seq}" if i == 0 else "", LABELS[m],
                          f"{p.measured_s[m] * 1e3:.1f}", f"{p.predicted_s[m] * 1e3:.1f}", f"{p.error(m):+.1%}",
                          f"{p.unfitted_s[m] * 1e3:.1f}", f"{p.error(m, True):+.1%}")
        table.add_row("", "speedup recompute/reuse", f"{p.speedup():.2f}x", f"{p.speedup('predicted'):.2f}x",
                      f"{p.speedup('predicted') / p.speedup() - 1:+.1%}", f"{p.speedup('unfitted'):.2f}x",
                      f"{p.speedup('unfitted') / p.speedup() - 1:+.1%}")
        table.add_row("", "of the step: system ms (faults)", f"{p.system_s['step'] * 1e3:.1f} "
                      f"({p.page_faults['step']:.0f})", "", "", "", "")
        table.add_row("", "autograd saved MB", f"{p.saved_bytes / 1e6:.1f}", f"{p.predicted_saved_bytes / 1e6:.1f}",
                      f"{p.predicted_saved_bytes / p.saved_bytes - 1:+.1%}" if p.saved_bytes else "-", "", "",
                      end_section=True)
    console.print(table)
    console.print(f"|error| of the two steps (recompute, reuse): median {stats['median_abs_error']:.1%}, worst "
                  f"{stats['worst_abs_error']:.1%} {words}; median {stats['unfitted_median_abs_error']:.1%}, worst "
                  f"{stats['unfitted_worst_abs_error']:.1%} unfitted. Speedup error median "
                  f"{stats['speedup_median_abs_error']:.1%} (measuring took {info['measure_wall_s']:.0f} s)")
    note = uncalibrated_note(hardware)
    if note:
        console.print(f"[yellow]note[/] {note}", highlight=False)
