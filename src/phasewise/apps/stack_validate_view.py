"""`phasewise validate --recurrent` and `--gemma4`: the measured-vs-predicted table of a scaled stack's prefill and
decode (measure/stack_timing.py)."""

from __future__ import annotations

import statistics

from phasewise.apps.cli_common import single_cpu_forwards
from phasewise.apps.jsonout import dumps
from phasewise.measure.host_allocator import allocator_words


def stack_summary(points) -> dict[str, float]:
    """Median and worst |error| per phase of the calibrated prediction against the wall time, and of the unfitted
    one."""
    out: dict[str, float] = {}
    for phase in ("prefill", "decode"):
        chosen = [p for p in points if p.phase == phase]
        for label, errors in (("", [abs(p.error) for p in chosen]), ("unfitted_", [abs(p.unfitted_error)
                                                                                  for p in chosen])):
            out[f"{phase}_{label}median_abs_error"] = statistics.median(errors)
            out[f"{phase}_{label}worst_abs_error"] = max(errors)
    return out


def _recurrent():
    from phasewise.measure.recurrent_check import RECURRENT_MODEL, recurrent_validate
    return "lightning-attention", recurrent_validate, RECURRENT_MODEL, 8


def _gemma4():
    from phasewise.measure.gemma4_check import GEMMA4_MODEL, gemma4_validate
    return "Gemma 4", gemma4_validate, GEMMA4_MODEL, 10


# flag -> (what is timed, the check, its default model and layers), imported when asked (torch behind them)
CHECKS = {"--recurrent": _recurrent, "--gemma4": _gemma4}


def run_stack_validate(console, flag: str, model: str | None, hardware: str, device: str, layers: int | None,
                       hidden: int | None, engine: str | None, quick: bool, threads: int | None, as_json: bool,
                       others: dict[str, bool]) -> None:
    from rich.table import Table

    single_cpu_forwards(flag, others, device, threads)
    what, check, default_model, default_layers = CHECKS[flag]()
    with console.status(f"timing {what} forwards") as status:
        points, info = check(hardware, model or default_model, layers or default_layers, hidden or 512, quick=quick,
                             engine=engine, progress=lambda m: status.update(f"{flag[2:]}: {m}"))
    stats = stack_summary(points)
    if as_json:
        print(dumps({"info": info, "summary": stats, "points": [
            {"phase": p.phase, "batch": p.batch, "tokens": p.tokens, "measured_ms": p.measured_s * 1e3,
             "cpu_ms": p.cpu_s * 1e3, "predicted_ms": p.predicted_s * 1e3, "error": p.error,
             "unfitted_predicted_ms": p.unfitted_s * 1e3, "unfitted_error": p.unfitted_error} for p in points]}))
        return
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params) on {info['hardware_source']} / "
                        f"{info['engine']} (unfitted: catalog {info['unfitted_hardware']} / {info['unfitted_engine']}),"
                        f" median of {info['repeats']}, 1 thread, {allocator_words(info)}", title_justify="left")
    for col in ("phase", "batch", "tokens", "wall ms", "cpu ms", "predicted ms", "error", "unfitted ms", "error"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for p in points:
        label = "prompt" if p.phase == "prefill" else "context"
        table.add_row(p.phase, str(p.batch), f"{p.tokens} {label}", f"{p.measured_s * 1e3:.1f}",
                      f"{p.cpu_s * 1e3:.1f}", f"{p.predicted_s * 1e3:.1f}", f"{p.error:+.1%}",
                      f"{p.unfitted_s * 1e3:.1f}", f"{p.unfitted_error:+.1%}")
    console.print(table)
    for phase in ("prefill", "decode"):
        console.print(f"{phase} |error| calibrated: median {stats[f'{phase}_median_abs_error']:.1%} (worst "
                      f"{stats[f'{phase}_worst_abs_error']:.1%}); unfitted: median "
                      f"{stats[f'{phase}_unfitted_median_abs_error']:.1%} (worst "
                      f"{stats[f'{phase}_unfitted_worst_abs_error']:.1%})")
