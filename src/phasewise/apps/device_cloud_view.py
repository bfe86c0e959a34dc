"""`phasewise device-cloud`: many devices sharing one cloud server over a U-shaped split (HAT-style): the
planned prompt chunk, TTFT and TBT with and without on-device drafting, where one request's time goes."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.plan.goodput import lengths_within_context
from phasewise.plan.hat_chunk import plan_chunk
from phasewise.sim.deployment import SpecDecode
from phasewise.sim.device_cloud import DeviceRequest, UShapedCost, run_device_cloud
from phasewise.specs import load_engine, load_model, load_quant
from phasewise.specs.catalog import read_user_file
from phasewise.specs.device_cloud import parse_device_cloud


def run_device_cloud_view(model: str, setup_file: str | None, flags: dict[str, Any], precision: str, engine: str,
                          prompt_len: int, output_len: int, chunk: int, draft_tokens: int,
                          acceptance: float) -> dict[str, Any]:
    if prompt_len < 1 or output_len < 1 or chunk < 0:
        raise PhasewiseError("--prompt-len and --output-len must be >= 1; --chunk >= 0")
    if not 0 <= acceptance < 1 or not 0 <= draft_tokens <= 16:
        raise PhasewiseError(f"--acceptance must lie in [0, 1) and --draft-tokens in [0, 16] "
                             f"(got {acceptance}, {draft_tokens})")
    if chunk > prompt_len:
        raise PhasewiseError(f"--chunk {chunk} is longer than the prompt (--prompt-len {prompt_len}): a chunk is a "
                             f"piece of the prompt uploaded at once (1 to {prompt_len}; 0: planned per device)")
    data = read_user_file(setup_file, "device-cloud setup") if setup_file else flags
    setup = parse_device_cloud(data, f"device-cloud '{setup_file}'" if setup_file else "device-cloud",
                               None if setup_file else _flag)
    spec, quant, profile = load_model(model), load_quant(precision), load_engine(engine)
    lengths_within_context(prompt_len, output_len, spec.max_position_embeddings, "--prompt-len + --output-len",
                           f"{spec.name}'s")  # as simulate refuses a request past the context
    cost = UShapedCost(spec, quant, profile, setup)
    # --output-len counts as simulate's --osl: the prefill's first token, then output_len - 1 decoded (the TBT over
    # them)
    decoded = output_len - 1
    cost.check_memory(prompt_len + decoded, prompt_len, -(-setup.devices // setup.cloud_gpus))
    lone = setup.model_copy(update={"devices": 1})
    planned = plan_chunk(spec, quant, profile, lone, prompt_len, cost=cost) if chunk == 0 else None
    chunk_tokens = planned.chunk_tokens if planned else chunk
    speculative = SpecDecode(draft_tokens=draft_tokens, acceptance=acceptance) if draft_tokens else None
    requests = [DeviceRequest(prompt_len, decoded, chunk_tokens)] * setup.devices
    run = run_device_cloud(spec, quant, profile, setup, requests, speculative, cost=cost)
    plain = run_device_cloud(spec, quant, profile, setup, requests, None, cost=cost) if speculative else run
    mine = [s for s in run.spans if s.resource in ("device dev0", "link dev0 up", "link dev0 down", "cloud gpu0")]
    busy: dict[str, float] = {}
    for span in mine:
        busy[span.resource] = busy.get(span.resource, 0.0) + span.end_s - span.start_s
    return {"model": spec.name, "devices": setup.devices, "cloud_gpus": setup.cloud_gpus,
            "split": setup.split(spec.num_layers), "chunk_tokens": chunk_tokens,
            "ttft_s": run.mean_ttft_s, "tbt_s": run.mean_tbt_s, "plain_tbt_s": plain.mean_tbt_s,
            "end_s": max(r.end_s for r in run.requests),
            "ttft_by_chunk": [list(x) for x in planned.ttft_by_chunk] if planned else None, "busy_s": busy}


def _flag(key: str) -> str:
    """The device-cloud flag that sets a setup field (the flags build the setup as a file would: latency_s from
    --latency-ms)."""
    return "--latency-ms" if key == "latency_s" else "--" + key.replace("_", "-")


def render_device_cloud(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"{result['model']}: {result['devices']} devices (layers {result['split'][0]} in, "
                  f"{result['split'][2]} out) and {result['cloud_gpus']} cloud GPUs ({result['split'][1]} layers); "
                  f"prompt chunk {result['chunk_tokens']} tokens")
    console.print(f"mean TTFT {result['ttft_s'] * 1e3:.1f} ms, mean TBT {result['tbt_s'] * 1e3:.2f} ms "
                  f"(plain U-shaped AR {result['plain_tbt_s'] * 1e3:.2f} ms), last token at {result['end_s']:.3f} s")
    if result["ttft_by_chunk"]:
        table = Table(title="TTFT vs chunk size, one device alone")
        table.add_column("chunk tokens")
        table.add_column("TTFT ms")
        for chunk, ttft in result["ttft_by_chunk"]:
            table.add_row(str(chunk), f"{ttft * 1e3:.1f}")
        console.print(table)
    table = Table(title="Device 0's request: busy time of its device, links and (shared) cloud GPU")
    table.add_column("resource")
    table.add_column("busy s")
    for name, busy in result["busy_s"].items():
        table.add_row(name, f"{busy:.3f}")
    console.print(table)
