"""`phasewise calibrate`, `validate` and `fit-engine`: measuring this machine and real models, and fitting engine
constants to a user's own measurements."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from phasewise.apps.cli_common import Json, app, console
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError

HostAllocator = Annotated[str, typer.Option(
    "--host-allocator", help="caching: freed memory kept for reuse, as a GPU's caching allocator keeps it (no page "
                             "faults re-mapping it each step) | system: the C library's malloc as it is")]


@app.command("calibrate")
def calibrate_cmd(
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    out: Annotated[str, typer.Option(help="hardware YAML to write")] = "hw.yaml",
    quick: Annotated[bool, typer.Option("--quick", help="fewer shapes and repeats (seconds, noisier)")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for timing (default 1)")] = None,
    name: Annotated[Optional[str], typer.Option(help="key of the hardware entry (default cpu-local / cuda-local)")] = None,
    host_allocator: HostAllocator = "caching",
) -> None:
    """Measure this machine with PyTorch micro-benchmarks and write a hardware entry (plus its engine profile)."""
    from pathlib import Path

    import yaml

    from phasewise.errors import refuse_empty
    from phasewise.measure.calibrate import calibrate, compact_measurements
    from phasewise.measure.host_allocator import use_host_allocator

    refuse_empty(dict(out=out, name=name))
    use_host_allocator(host_allocator)
    target = Path(out)
    if target.is_dir() or not target.parent.is_dir():  # checked before the minutes of measuring, not after
        raise PhasewiseError(f"--out '{out}': cannot write ({'Is a directory' if target.is_dir() else 'no such folder'})")
    with console.status("calibrating") as status:
        result = calibrate(device, quick, threads, name, progress=lambda m: status.update(f"calibrating: {m}"))
    measurements = result["measurements"]
    try:
        with open(out, "w") as f:
            f.write("# Written by `phasewise calibrate`; use with --hardware " + out + "\n# measurements: the raw "
                    "figures the fields above were fitted from (what each field came from: its sources)\n")
            yaml.safe_dump(dict(result, measurements=compact_measurements(measurements)), f, sort_keys=False)
    except OSError as exc:
        raise PhasewiseError(f"--out '{out}': cannot write ({exc.strerror})") from None
    for warning in measurements["warnings"]:
        console.print(f"[yellow]warning[/]: {warning}", highlight=False)
    (key, entry), = result["hardware"].items()
    eff = entry["efficiency"]
    peak = next(iter(entry["peak_flops"].values()))
    console.print(f"[bold]{key}[/]: peak {peak / 1e9:,.1f} GFLOP/s, bandwidth "
                  f"{entry['memory_bandwidth_bytes_per_s'] / 1e9:,.1f} GB/s (half of it at "
                  f"{eff.get('weight_row_half_elems', 0.0):,.0f}-element weight rows), GEMM efficiency by rows "
                  + ", ".join(f"{int(r)}:{e:.2f}" for r, e in eff["gemm_efficiency_curve"])
                  + f"; per-kernel dispatch {eff['kernel_launch_s'] * 1e6:.1f} us"
                  + (f" ({eff['kernel_launch_cold_s'] * 1e6:.1f} us where the layers stream beyond the "
                     f"{eff['host_cache_bytes'] / 2**20:g} MiB core cache)" if "kernel_launch_cold_s" in eff else "")
                  + ", per-forward "
                    f"{measurements['iteration_overhead_s'] * 1e3:.2f} ms -> {out}")


@app.command("validate")
def validate_cmd(
    model: Annotated[Optional[str], typer.Option(help="HF id or alias from the catalog, or a config.json path "
                                                 "(default meta-llama/Llama-3.1-8B; --dllm: GSAI-ML/LLaDA-8B-Instruct)")] = None,
    hardware: Annotated[str, typer.Option(help="hardware entry: calibrate's YAML or a catalog key")] = "hw.yaml",
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    layers: Annotated[Optional[int], typer.Option(
        help="scale down: decoder layers (default: the model's own with --device cuda, 6 on cpu; --pipeline 4, "
             "--vision 4 blocks, --recurrent 8, --gemma4 10, --train-reuse 4 (--quick 2), --dllm 6); --layers and "
             "--hidden default each on its own: giving one leaves the other at its default")] = None,
    hidden: Annotated[Optional[int], typer.Option(
        help="scale down: hidden size, head_dim, GQA and MLP ratios kept (default: the model's own with --device "
             "cuda, 768 on cpu; --pipeline 512, --vision 384, --recurrent and --gemma4 512, --train-reuse 512 "
             "(--quick 256), --dllm 768)")] = None,
    engine: Annotated[Optional[str], typer.Option(help="engine profile (default: the one calibrate measured, else hf-eager)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="smaller grid")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default 1)")] = None,
    serve: Annotated[bool, typer.Option("--serve", help="also replay a closed loop through a real continuous-batching loop")] = False,
    clients: Annotated[Optional[int], typer.Option(help="--serve: concurrent clients (closed loop; default 4)")] = None,
    requests: Annotated[Optional[int], typer.Option(help="--serve: requests (default 16)")] = None,
    prompt: Annotated[Optional[int], typer.Option(help="--serve / --pipeline / --dllm: prompt tokens (default 128)")] = None,
    output: Annotated[Optional[int], typer.Option(help="--serve: output tokens; --pipeline: decode steps timed "
                                                       "(default 32)")] = None,
    pipeline: Annotated[int, typer.Option(help="split the model over this many OS processes (2) joined by a "
                                               "throttled local socket; compare with the split simulator")] = 0,
    link_mbps: Annotated[Optional[str], typer.Option(help="--pipeline: link speeds in Mbit/s, comma-separated "
                                                          "(default 20,200)")] = None,
    sub_sequences: Annotated[Optional[str], typer.Option(help="--pipeline: prefill sub-sequence counts S "
                                                              "(default 1,2,4,8)")] = None,
    repeats: Annotated[Optional[int], typer.Option(help="--pipeline: runs per point; --serve: runs of the real loop "
                                                        "(the median of each figure; default 3)")] = None,
    dllm: Annotated[bool, typer.Option("--dllm", help="time bidirectional (diffusion-LM) block forwards over a cached "
                                                      "prompt and full refreshes over prompt + canvas")] = False,
    canvas: Annotated[Optional[int], typer.Option(help="--dllm: canvas positions of the refresh (also timed at 2x "
                                                       "prompt + canvas; default 256)")] = None,
    blocks: Annotated[Optional[str], typer.Option(help="--dllm: block sizes (new positions), comma-separated "
                                                       "(default 32,64,128,256; --quick 32,64)")] = None,
    train_reuse: Annotated[bool, typer.Option("--train-reuse", help="time training steps with the forward recomputed "
                                              "vs its saved activations reused (Alchemist) against the training cost "
                                              "model (default model mistralai/Mistral-7B-v0.1, scaled)")] = False,
    train_method: Annotated[Optional[str], typer.Option(help="--train-reuse: full | lora (rank-16 adapters on q/v; "
                                                             "default full)")] = None,
    vision: Annotated[bool, typer.Option("--vision", help="time a Qwen3-VL (or, with --model, Qwen2.5-VL) vision "
                                         "encoder (random weights, scaled: --layers blocks, --hidden width) on images "
                                         "of several sizes against the cost model's encoder forward")] = False,
    recurrent: Annotated[bool, typer.Option("--recurrent", help="time a MiniMax lightning-attention stack (random "
                                            "weights, scaled: --layers, --hidden) on prefill and decode against the "
                                            "cost model (default model MiniMaxAI/MiniMax-M1-80k)")] = False,
    gemma4: Annotated[bool, typer.Option("--gemma4", help="time a Gemma 4 stack (random weights, scaled: --layers, "
                                         "--hidden; its two kinds of layer, KV-shared layers and per-layer inputs) "
                                         "on prefill and decode against the cost model (default model "
                                         "google/gemma-4-E2B-it)")] = False,
    host_allocator: HostAllocator = "caching",
    as_json: Json = False,
) -> None:
    """Time a real model (random weights) on prefill and decode and compare with the cost model."""
    from rich.table import Table

    from phasewise.measure.host_allocator import allocator_words, use_host_allocator
    from phasewise.measure.validate import summary, validate

    use_host_allocator(host_allocator)
    modes = {"--serve": serve, "--pipeline": pipeline != 0, "--dllm": dllm, "--train-reuse": train_reuse,
             "--vision": vision, "--recurrent": recurrent, "--gemma4": gemma4}
    refuse_unused(modes, dict(clients=clients, requests=requests, prompt=prompt, output=output, repeats=repeats,
                              link_mbps=link_mbps, sub_sequences=sub_sequences, canvas=canvas, blocks=blocks,
                              train_method=train_method, quick=quick or None, threads=threads))
    for flag, value in (("--layers", layers), ("--hidden", hidden), ("--threads", threads)):
        if value is not None and value < 1:
            raise PhasewiseError(f"{flag} must be >= 1 (got {value})")

    def given_or(value, default):
        return default if value is None else value

    clients, requests, repeats = given_or(clients, 4), given_or(requests, 16), given_or(repeats, 3)
    prompt, output, canvas = given_or(prompt, 128), given_or(output, 32), given_or(canvas, 256)
    link_mbps, sub_sequences = given_or(link_mbps, "20,200"), given_or(sub_sequences, "1,2,4,8")
    train_method = given_or(train_method, "full")  # --blocks stays None when not given: --dllm's default by --quick
    if recurrent or gemma4:
        from phasewise.apps.stack_validate_view import run_stack_validate

        flag = "--recurrent" if recurrent else "--gemma4"
        others = {k: on for k, on in {"--dllm": dllm, "--serve": serve, "--pipeline": bool(pipeline),
                                      "--train-reuse": train_reuse, "--vision": vision, "--recurrent": recurrent,
                                      "--gemma4": gemma4}.items() if k != flag}
        run_stack_validate(console, flag, model, hardware, device, layers, hidden, engine, quick, threads, as_json,
                           others)
        return
    if vision:
        from phasewise.apps.vision_validate_view import run_vision_validate

        others = {"--dllm": dllm, "--serve": serve, "--pipeline": bool(pipeline), "--train-reuse": train_reuse}
        run_vision_validate(console, model, hardware, device, layers, hidden, engine, quick, threads, as_json, others)
        return
    if train_reuse:
        from phasewise.apps.train_reuse_view import check_train_reuse_flags, run_train_reuse_validate

        check_train_reuse_flags(device, serve, pipeline, {"--dllm": dllm})
        run_train_reuse_validate(console, model or "mistralai/Mistral-7B-v0.1", hardware, layers, hidden,
                                 train_method, quick, engine, threads, as_json)
        return
    if dllm:
        from phasewise.apps.dllm_validate_view import run_dllm_validate

        run_dllm_validate(console, model, hardware, device, layers, hidden, engine, prompt, canvas, blocks, quick,
                          threads, as_json, serve, pipeline)
        return
    model = model or "meta-llama/Llama-3.1-8B"
    if pipeline:
        from phasewise.apps.pipeline_view import run_pipeline_validate

        if device != "cpu":
            raise PhasewiseError("--pipeline runs its stages as CPU processes on this machine: use --device cpu")
        run_pipeline_validate(console, model, hardware, pipeline, link_mbps, sub_sequences, layers or 4,
                              hidden or 512, engine, prompt, output, repeats, as_json)
        return
    if device == "cpu":  # a ~100-300M-parameter model, CPU-sized; each flag not given takes its own default
        layers, hidden = given_or(layers, 6), given_or(hidden, 768)
    serving = None
    if serve:
        from phasewise.measure.serve import serve_check

        with console.status("serving a closed loop through a real continuous-batching loop"):
            serving = serve_check(model, hardware, device, layers, hidden, engine, clients, requests, prompt,
                                  output, threads, repeats)
    with console.status("validating") as status:
        points, info = validate(model, hardware, device, layers, hidden, engine, quick, threads,
                                progress=lambda m: status.update(f"validating: {m}"))
    stats = summary(points)
    words = entry_words(hardware)
    if as_json:
        info = {**info, "hardware_calibrated": words == "calibrated"}
        print(dumps({"info": info, "summary": stats, "serve": serving, "points": [
            {"phase": p.phase, "batch": p.batch, "tokens": p.tokens, "measured_ms": p.measured_s * 1e3,
             "predicted_ms": p.predicted_s * 1e3, "error": p.error,
             "unfitted_predicted_ms": None if p.unfitted_s is None else p.unfitted_s * 1e3,
             "unfitted_error": p.unfitted_error} for p in points]}))
        return
    unfitted = "unfitted_median_abs_error" in stats
    table = Table(title=f"{info['model']} ({info['params'] / 1e6:.0f}M params) on {info['hardware']}, "
                        f"engine {info['engine']}"
                        + (f" (unfitted: catalog {info['unfitted_hardware']} / {info['unfitted_engine']})"
                           if unfitted else "") + f", {allocator_words(info)}", title_justify="left")
    for col in ("phase", "batch", "tokens", "measured ms", "predicted ms", "error") + (
            ("unfitted ms", "error") if unfitted else ()):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for p in points:
        label = "prompt" if p.phase == "prefill" else "context"
        table.add_row(p.phase, str(p.batch), f"{p.tokens} {label}", f"{p.measured_s * 1e3:.1f}",
                      f"{p.predicted_s * 1e3:.1f}", f"{p.error:+.1%}",
                      *((f"{p.unfitted_s * 1e3:.1f}", f"{p.unfitted_error:+.1%}") if unfitted else ()))
    console.print(table)
    for phase, prefix in (("prefill", "prefill_"), ("decode", "decode_"), ("all", "")):
        if f"{prefix}median_abs_error" not in stats:
            continue
        console.print(f"{phase} |error| {words}: median {stats[f'{prefix}median_abs_error']:.1%} (worst "
                      f"{stats[f'{prefix}worst_abs_error']:.1%})"
                      + (f"; unfitted: median {stats[f'{prefix}unfitted_median_abs_error']:.1%} (worst "
                         f"{stats[f'{prefix}unfitted_worst_abs_error']:.1%})" if unfitted else ""))
    note = uncalibrated_note(hardware)
    if note:
        console.print(f"[yellow]note[/] {note}", highlight=False)
    if not unfitted:
        console.print("unfitted: none on --device cuda (the catalog has no class-default entry for an unnamed GPU)")
    if serving:
        st = Table(title=f"Closed loop: {serving['clients']} clients, {serving['requests']} requests of "
                         f"{serving['prompt']}/{serving['output']} tokens, real loop (median of "
                         f"{serving['repeats']} runs) vs phasewise simulate",
                   title_justify="left")
        for col in ("metric", "real", "simulated", "error"):
            st.add_column(col, justify="left" if col == "metric" else "right")
        for m in ("ttft_ms", "tbt_ms"):
            for q in ("p50", "p90", "mean"):
                st.add_row(f"{m[:-3].upper()} {q} ms", f"{serving['real'][m][q]:.1f}",
                           f"{serving['simulated'][m][q]:.1f}", f"{serving['errors'].get(f'{m}_{q}', math.nan):+.1%}")
        st.add_row("duration s", f"{serving['real']['duration_s']:.2f}", f"{serving['simulated']['duration_s']:.2f}",
                   f"{serving['errors']['duration']:+.1%}")
        console.print(st)


def entry_words(hardware: str) -> str:
    """validate's name for the entry its first prediction is on (`--hardware` as given): 'calibrated' for a file
    (`phasewise calibrate`'s YAML: the README's calibrated entry), else the catalog entry named, which is not
    calibrated on this machine."""
    from phasewise.specs.catalog import looks_like_path

    return "calibrated" if looks_like_path(hardware) else f"catalog {hardware} (not calibrated)"


def uncalibrated_note(hardware: str) -> str | None:
    """A line saying a catalog key's predictions are the catalog's, not this machine's calibrated ones (None for a
    file)."""
    if entry_words(hardware) == "calibrated":
        return None
    return (f"--hardware {hardware} is a catalog entry, not calibrated here (`phasewise calibrate` writes one): the "
            "first prediction column is that entry's figures, not this machine's measured ones")


# validate's flags that shape one mode's run, and the modes each applies to ("" the plain prefill/decode grid)
MODE_FLAGS = {
    "clients": ("--serve",), "requests": ("--serve",), "prompt": ("--serve", "--pipeline", "--dllm"),
    "output": ("--serve", "--pipeline"), "repeats": ("--serve", "--pipeline"), "link_mbps": ("--pipeline",),
    "sub_sequences": ("--pipeline",), "canvas": ("--dllm",), "blocks": ("--dllm",), "train_method": ("--train-reuse",),
    "quick": ("", "--serve", "--dllm", "--train-reuse", "--vision", "--recurrent", "--gemma4"),
    "threads": ("", "--serve", "--dllm", "--train-reuse", "--vision", "--recurrent", "--gemma4"),
}


def refuse_unused(modes: dict[str, bool], given: dict[str, object]) -> None:
    """A flag given (not None) that none of the chosen modes reads is a one-line error, never quietly ignored; so
    is --pipeline beside --serve (each is its own run)."""
    chosen = [mode for mode, on in modes.items() if on]
    if modes["--pipeline"] and modes["--serve"]:
        raise PhasewiseError("--pipeline times a two-process split on its own: it does not combine with --serve")
    for name, value in given.items():
        if value is None:
            continue
        applies = MODE_FLAGS[name]
        if not any(mode in applies for mode in chosen) and not ("" in applies and not set(chosen) - {"--serve"}):
            where = " or ".join(mode or "the plain grid" for mode in applies)
            mode_words = " ".join(chosen) or "the plain prefill/decode grid"
            raise PhasewiseError(f"--{name.replace('_', '-')} applies to {where}, not to {mode_words}: it would be "
                                 "ignored")


@app.command("fit-engine")
def fit_engine_cmd(
    points: Annotated[str, typer.Argument(help="YAML/JSON with measured runs under 'points:' (see README)")],
    engine: Annotated[str, typer.Option(help="engine to start from, run as estimate runs it: a preset "
                                             "(vllm, vllm@0.12, sglang, ...), a host profile or an engine file "
                                             "(its unfitted values)")] = "vllm",
    params: Annotated[str, typer.Option(help="comma-separated EngineProfile fields to fit")] =
        "per_sequence_overhead_s,eager_launch_s,elementwise_passes",
    holdout: Annotated[str, typer.Option(help="every-other: every second run (file order) is held out; none")] =
        "every-other",
    out: Annotated[Optional[str], typer.Option(help="write the fitted engine YAML here (use with --engine FILE)")] = None,
    json_out: Json = False,
) -> None:
    """Fit an engine's host constants to measured TTFT/TBT points; report held-out error beside the unfitted."""
    from phasewise.apps.fit_view import render_fit, run_fit, write_engine
    from phasewise.apps.simulate_view import refuse_overwriting_inputs
    from phasewise.specs.catalog import looks_like_path

    if out:  # before the fit: the engine file never replaces the points or the engine file it starts from
        engine_file = engine.partition("@")[0]  # --engine FILE[@version]; a preset's name is no file
        refuse_overwriting_inputs({f"--out '{out}'": out}, {"POINTS": points, **(
            {"--engine": engine_file} if looks_like_path(engine_file) else {})})
    result = run_fit(points, engine, params, holdout)
    if out:
        write_engine(result, engine, points, out)
    if json_out:
        print(dumps({k: v for k, v in result.items() if k != "profile"}))
        return
    render_fit(console, result)
    if out:
        console.print(f"engine written: {out} (phasewise simulate --engine {out} ...)")
