"""The `phasewise` command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from phasewise.errors import PhasewiseError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict, plan and emulate LLM serving, prefill and decode treated as two workloads.")
console = Console(width=None if sys.stdout.isatty() else 140)


@app.command("estimate")
def estimate_cmd(
    model: Annotated[str, typer.Option(help="HF id or alias from the catalog, or a config.json path")] = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option(help="catalog key or a hardware YAML path")] = "h100-sxm",
    tp: Annotated[int, typer.Option(help="tensor-parallel degree")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline-parallel degree")] = 1,
    precision: Annotated[str, typer.Option(help="bf16|fp16|fp8|int8|w8a16|w4a16|w4a8|w4a8-fp8|nvfp4|fp32")] = "bf16",
    kv_dtype: Annotated[Optional[str], typer.Option(help="KV-cache dtype (default: the precision's)")] = None,
    engine: Annotated[str, typer.Option(help="serving-engine overhead profile: vllm|vllm-2023|trtllm|ideal")] = "vllm",
    batch: Annotated[int, typer.Option(help="sequences in the batch")] = 1,
    prompt_len: Annotated[int, typer.Option(help="prompt tokens per sequence (prefill)")] = 1024,
    context_len: Annotated[Optional[int], typer.Option(help="cached tokens per sequence at the decode step (default: prompt-len)")] = None,
    memory_fraction: Annotated[float, typer.Option(help="fraction of device memory the engine may use")] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Prefill latency, one decode step, the per-operator breakdown and the memory fit."""
    from phasewise.apps.estimate_view import render_estimate
    from phasewise.perf.estimate import estimate

    est = estimate(model, hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
                   batch=batch, prompt_len=prompt_len, context_len=context_len, memory_fraction=memory_fraction)
    mem = est.memory
    if mem.weight_bytes + mem.reserved_bytes >= mem.usable_bytes:
        raise PhasewiseError(
            f"{est.cost_model.model.name} does not fit on {hardware} at tp={tp} pp={pp} in {precision}: "
            f"{mem.reason()}; raise --tp/--pp or use a smaller --precision (fp8, w4a16)"
        )
    if as_json:
        print(json.dumps(est.to_dict()))
    else:
        render_estimate(console, est)


@app.command("models")
def models_cmd() -> None:
    """List the model catalog."""
    from phasewise.specs.catalog import packaged
    from phasewise.specs.model import load_model

    table = Table(title="Model catalog (HF config.json fields)")
    for col in ("model", "params", "active", "layers", "hidden", "heads/kv", "experts", "aliases"):
        table.add_column(col)
    for key, entry in packaged("models.yaml")["models"].items():
        m = load_model(key)
        experts = f"{m.experts_per_token}/{m.num_experts}" if m.num_experts else "-"
        table.add_row(key, f"{m.total_params / 1e9:.1f}B", f"{m.active_params / 1e9:.1f}B", str(m.num_layers),
                      str(m.hidden_size), f"{m.num_heads}/{m.num_kv_heads}", experts,
                      ", ".join(entry.get("aliases") or []))
    console.print(table)


@app.command("hardware")
def hardware_cmd() -> None:
    """List the hardware catalog."""
    from phasewise.specs.hardware import hardware_names, load_hardware

    table = Table(title="Hardware catalog (dense peaks)")
    for col in ("key", "name", "bf16 TFLOP/s", "fp8", "int8", "int4/fp4", "GB/s", "GiB", "W", "$/h"):
        table.add_column(col)
    for key in hardware_names():
        hw = load_hardware(key)
        pf = hw.peak_flops

        def tf(d: str) -> str:
            return f"{pf[d] / 1e12:.0f}" if d in pf else "-"

        low = "/".join(tf(d) for d in ("int4", "fp4") if d in pf) or "-"
        table.add_row(key, hw.name, tf("bf16"), tf("fp8"), tf("int8"), low,
                      f"{hw.memory_bandwidth_bytes_per_s / 1e9:.0f}", f"{hw.memory_capacity_bytes / 2**30:.0f}",
                      f"{hw.tdp_w:.0f}", f"{hw.price_per_hour_usd:.2f}")
    console.print(table)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        app(standalone_mode=False)
    except PhasewiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # usage errors of typer's (vendored or external) click: print, no traceback
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(1)
        raise
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
