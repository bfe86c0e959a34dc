"""`phasewise validate --vision`: the measured-vs-predicted table of a vision encoder's forwards."""

from __future__ import annotations

from phasewise.apps.cli_common import single_cpu_forwards
from phasewise.apps.jsonout import dumps
from phasewise.measure.host_allocator import allocator_words


def run_vision_validate(console, model: str | None, hardware: str, device: str, layers: int | None,
                        hidden: int | None, engine: str | None, quick: bool, threads: int | None, as_json: bool,
                        others: dict[str, bool]) -> None:
    from rich.table import Table

    from phasewise.measure.vision_check import VISION_MODEL, vision_summary, vision_validate

    single_cpu_forwards("--vision", others, device, threads)
    with console.status("timing vision encoder forwards") as status:
        points, info = vision_validate(hardware, model or VISION_MODEL, layers or 4, hidden or 384, quick=quick,
                                       engine=engine, progress=lambda m: status.update(f"vision: {m}"))
    stats = vision_summary(points)
    if as_json:
        print(dumps({"info": info, "summary": stats, "points": [
            {"images": p.images, "width_px": p.width_px, "height_px": p.height_px, "patches": p.patches,
             "measured_ms": p.measured_s * 1e3, "cpu_ms": p.cpu_s * 1e3, "predicted_ms": p.predicted_s * 1e3,
             "error": p.error, "cpu_error": p.cpu_error, "unfitted_predicted_ms": p.unfitted_s * 1e3,
             "unfitted_error": p.unfitted_error} for p in points]}))
        return
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params) on {info['hardware_source']} / "
                        f"{info['engine']} (unfitted: catalog {info['unfitted_hardware']} / {info['unfitted_engine']}),"
                        f" median of {info['repeats']}, 1 thread, {allocator_words(info)}", title_justify="left")
    for col in ("images", "size px", "patches each", "wall ms", "cpu ms", "predicted ms", "error", "vs cpu",
                "unfitted ms", "error"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(str(p.images), f"{p.width_px}x{p.height_px}", f"{p.patches:,}", f"{p.measured_s * 1e3:.1f}",
                      f"{p.cpu_s * 1e3:.1f}", f"{p.predicted_s * 1e3:.1f}", f"{p.error:+.1%}", f"{p.cpu_error:+.1%}",
                      f"{p.unfitted_s * 1e3:.1f}", f"{p.unfitted_error:+.1%}")
    console.print(table)
    console.print(f"|error| calibrated vs wall: median {stats['median_abs_error']:.1%} (worst "
                  f"{stats['worst_abs_error']:.1%}); vs CPU time: median {stats['cpu_median_abs_error']:.1%}; "
                  f"unfitted vs wall: median {stats['unfitted_median_abs_error']:.1%} (worst "
                  f"{stats['unfitted_worst_abs_error']:.1%})")
