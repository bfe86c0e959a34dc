"""`phasewise validate --pipeline 2`: the measured-vs-predicted table of a real two-process pipeline."""

from __future__ import annotations

from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import allocator_words


def _numbers(text: str, what: str, cast=float) -> list:
    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise PhasewiseError(f"{what} must be comma-separated numbers (got '{text}')") from None
    if not values:
        raise PhasewiseError(f"{what}: give at least one value")
    return values


def run_pipeline_validate(console, model: str, hardware: str, stages: int, link_mbps: str, sub_sequences: str,
                          layers: int, hidden: int, engine: str | None, prompt: int, decode_steps: int,
                          repeats: int, as_json: bool) -> None:
    from rich.table import Table

    from phasewise.measure.pipeline_validate import pipeline_summary, pipeline_validate

    speeds = _numbers(link_mbps, "--link-mbps")
    counts = _numbers(sub_sequences, "--sub-sequences", int)
    with console.status("measuring a two-process pipeline") as status:
        points, info = pipeline_validate(model, hardware, stages, speeds, counts, layers, hidden, prompt,
                                         decode_steps, repeats, engine,
                                         progress=lambda m: status.update(f"pipeline: {m}"))
    stats = pipeline_summary(points)
    if as_json:
        print(dumps({"info": info, "summary": stats, "points": [
            {"metric": p.metric, "link_mbps": p.link_mbps, "sub_sequences": p.sub_sequences,
             "measured_ms": p.measured_s * 1e3, "predicted_ms": p.predicted_s * 1e3, "error": p.error,
             "unfitted_predicted_ms": p.unfitted_s * 1e3, "unfitted_error": p.unfitted_error}
            for p in points]}))
        return
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params), split {info['split']} over two "
                        f"processes, {info['prompt_tokens']}-token prompt, on {info['hardware']} / {info['engine']}; "
                        f"socket latency {info['socket_one_way_latency_s'] * 1e6:.0f} us; {allocator_words(info)}",
                  title_justify="left")
    for col in ("metric", "link Mbit/s", "S", "measured ms", "predicted ms", "error", "unfitted ms", "unfitted error"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for p in points:
        table.add_row("TTFT" if p.metric == "ttft" else "decode / token", f"{p.link_mbps:g}",
                      str(p.sub_sequences) if p.metric == "ttft" else "-", f"{p.measured_s * 1e3:.1f}",
                      f"{p.predicted_s * 1e3:.1f}", f"{p.error:+.1%}", f"{p.unfitted_s * 1e3:.1f}",
                      f"{p.unfitted_error:+.1%}")
    console.print(table)
    parts = [f"{m} median {stats[f'{m}_median_abs_error']:.1%} (worst {stats[f'{m}_worst_abs_error']:.1%})"
             for m in ("ttft", "decode") if f"{m}_median_abs_error" in stats]
    console.print("|error|: " + ", ".join(parts) + f"; all median {stats['median_abs_error']:.1%}, "
                  f"worst {stats['worst_abs_error']:.1%}; unfitted median {stats['unfitted_median_abs_error']:.1%}, "
                  f"worst {stats['unfitted_worst_abs_error']:.1%} ({info['unfitted_hardware']} / "
                  f"{info['unfitted_engine']}) (measuring took {info['measure_wall_s']:.0f} s)")
