"""`phasewise edge`: one request through a model split over edge devices (topology YAML or flags)."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.plan.edge_split import MAX_SUB_SEQUENCES, plan_edge_split
from phasewise.plan.goodput import lengths_within_context
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DecodePlan, run_split, sub_sequence_lengths
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.topology import chain_topology, load_topology, parse_split


def run_edge(model: str, topology: str | None, devices: str, mbps: float, latency_ms: float, split: str | None,
             precision: str, engine: str, prompt_len: int, output_len: int, subsequences: int, outline_points: int,
             outline_tokens: int, medusa_heads: int, acceptance: float, objective: str | None = None
             ) -> dict[str, Any]:
    """`split`: layer counts ("8,8,8,8"), "auto" (planned), "file" (the topology's `split:`), or None: the
    topology's `split:` where it has one, else planned."""
    if prompt_len < 1 or output_len < 1 or subsequences < 0 or outline_points < 1 or medusa_heads < 0 \
            or outline_tokens < 0:
        raise PhasewiseError("--prompt-len, --output-len and --outline-points must be >= 1; --subsequences, "
                             "--outline-tokens and --medusa-heads >= 0")
    if subsequences > prompt_len:
        raise PhasewiseError(f"--subsequences cuts the prompt into pieces of at least one token: at most --prompt-len "
                             f"{prompt_len} (got {subsequences})")
    if outline_tokens and outline_points == 1:
        raise PhasewiseError("--outline-tokens is the skeleton decoded before the outline points: it needs "
                             "--outline-points > 1")
    # --output-len counts the output as simulate's --osl does: the prefill's first token and output_len - 1 decoded
    # after it (run_split's output_tokens), the TPOT over those; the outline points share those tokens
    decoded = output_len - 1
    if outline_points > 1 and outline_points > decoded:
        raise PhasewiseError(f"--outline-points {outline_points}: more points than the {decoded} token(s) decoded "
                             f"after the prefill's first (--output-len {output_len} - 1), each point decoding one at "
                             f"least: give {f'at most {decoded}, or ' if decoded > 1 else ''}1 (plain AR)")
    if not 1.0 <= acceptance <= 1 + medusa_heads:  # NaN too
        raise PhasewiseError(f"--acceptance must lie in [1, 1 + medusa heads] = [1, {1 + medusa_heads}] "
                             f"(got {acceptance})")
    spec, quant, profile = load_model(model), load_quant(precision), load_engine(engine)
    label = "--prompt-len + --output-len" + (" + --outline-tokens" if outline_tokens else "")
    lengths_within_context(prompt_len + outline_tokens, output_len, spec.max_position_embeddings, label,
                           f"{spec.name}'s")  # as simulate refuses a request past the context
    file_split = None
    if topology:
        topo, file_split = load_topology(topology)
    else:
        names = [d.strip() for d in devices.split(",")]
        if not all(names):
            raise PhasewiseError(f"--devices lists hardware separated by commas, none empty (got '{devices}')")
        if not (mbps > 0 and math.isfinite(mbps)):
            raise PhasewiseError(f"--mbps is each link's bandwidth: a finite number > 0 Mbit/s (got {mbps:g})")
        if not (latency_ms >= 0 and math.isfinite(latency_ms)):
            raise PhasewiseError(f"--latency-ms is each link's latency: a finite number >= 0 ms (got {latency_ms:g})")
        topo = chain_topology(names, mbps, latency_ms / 1e3)
    hardware = []
    for i, device in enumerate(topo.devices):
        try:
            hardware.append(load_hardware(device.hardware))
        except PhasewiseError as exc:
            raise PhasewiseError(f"topology '{topology}': device {i}: hardware: {exc}" if topology
                                 else f"--devices: {exc}") from None
    for i in range(len(topo.devices) - 1):
        topo.route(i, i + 1)  # every consecutive pair of stages must be connected
    layers = _given_split(split, file_split, topology, spec.num_layers, len(topo.devices))
    given = layers is not None
    decode = DecodePlan(points=outline_points, outline_tokens=outline_tokens if outline_points > 1 else 0,
                        verify_tokens=1 + medusa_heads, acceptance=acceptance)
    planned = None
    if not given or subsequences == 0:
        options = None if subsequences == 0 else [subsequences]
        if given:  # S for the given split: first its memory at the smallest sub-sequence, named
            SplitModel(spec, quant, profile, topo, hardware, layers, medusa_heads).check_memory(
                prompt_len + decoded + outline_tokens, sub_sequence_lengths(prompt_len, MAX_SUB_SEQUENCES)[0],
                outline_points)
        planned = plan_edge_split(spec, quant, profile, topo, hardware, prompt_len, decoded,
                                  medusa_heads=medusa_heads,
                                  sub_sequence_options=options, objective=objective or "ttft", decode=decode,
                                  fixed_split=tuple(layers) if given else None)
    elif objective is not None:
        raise PhasewiseError("--objective chooses what a planned split or S minimises: give --split auto or "
                             "--subsequences 0 with it")
    if not given:
        layers = list(planned.split)
    subs = planned.sub_sequences if subsequences == 0 else subsequences
    model_split = SplitModel(spec, quant, profile, topo, hardware, layers, medusa_heads)
    model_split.check_memory(prompt_len + decoded + outline_tokens, sub_sequence_lengths(prompt_len, subs)[0],
                             outline_points)
    run = run_split(model_split, prompt_len, decoded, subs, decode)
    context = prompt_len + decoded + outline_tokens
    stages = [_stage_row(model_split, i, context, sub_sequence_lengths(prompt_len, subs)[0], outline_points)
              for i in range(len(model_split.stages))]
    return {"model": spec.name, "devices": [f"{d.name} ({d.hardware})" for d in topo.devices],
            "split": model_split.split, "sub_sequences": subs, "ttft_s": run.ttft_s, "tpot_s": run.tpot_s,
            "total_s": run.end_s, "output_tokens": output_len, "decode_steps": run.decode_steps,
            "planned": None if planned is None else "S" if given else "split" if subsequences else "split and S",
            "objective": planned.objective if planned else None,
            f"{planned.objective if planned else 'ttft'}_by_sub_sequences":
                [list(x) for x in planned.by_sub_sequences] if planned else None,
            "busy_s": run.busy_s(), "stages": stages}


def _given_split(split: str | None, file_split: Any, topology: str | None, num_layers: int, stages: int
                 ) -> list[int] | None:
    """The layers per stage the user gave (--split counts, or the topology file's `split:`), checked; None: plan
    it. A topology's `split:` is checked even where --split overrides it (a wrong file is an error, not ignored)."""
    file_counts = None
    if file_split is not None:
        try:
            file_counts = [end - start for start, end in parse_split(file_split, num_layers, stages)]
        except PhasewiseError as exc:
            raise PhasewiseError(f"topology '{topology}': {exc}") from None
    if split is None:
        return file_counts
    if split == "auto":
        return None
    if split == "file":
        if file_counts is None:
            raise PhasewiseError("--split file needs a topology YAML with a 'split:' entry")
        return file_counts
    try:
        counts = [int(x) for x in split.split(",")]
    except ValueError:
        raise PhasewiseError(f"--split must be auto, file or layer counts like 8,8,8,8 (got '{split}')") from None
    parse_split(counts, num_layers, stages)
    return counts


def _stage_row(split: SplitModel, index: int, context_tokens: int, batch_tokens: int, sequences: int
               ) -> dict[str, Any]:
    """A stage's device, layer range, layers of each kind (softmax full or windowed, linear, without attention) and
    the memory it needs for the request (weights, KV, recurrent state, activations, reserve) against what it may fill
    on its device."""
    stage, part = split.stages[index], split.stage_part(index)
    linear, windowed, free = part.linear_attention_layers, part.windowed_layer_count, part.attention_free_layers
    device = split.topology.devices[stage.device]
    return {"device": device.name, "first_layer": stage.first_layer, "last_layer": stage.end_layer - 1,
            "full_layers": part.full_attention_layers - windowed, "windowed_layers": windowed,
            "linear_layers": linear, "attention_free_layers": free,
            "memory_gib": split.stage_memory_bytes(index, context_tokens, batch_tokens, sequences) / 2**30,
            "usable_memory_gib": split.usable_bytes(index) / 2**30}


def render_edge(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    planned = f" ({result['planned']} planned for the least {result['objective']})" if result["planned"] else ""
    console.print(f"{result['model']} over {', '.join(result['devices'])}: split {result['split']}, "
                  f"S={result['sub_sequences']}{planned}")
    console.print(f"TTFT {result['ttft_s'] * 1e3:.1f} ms, TPOT {result['tpot_s'] * 1e3:.2f} ms, "
                  f"total {result['total_s']:.3f} s ({result['output_tokens']} output tokens: the prefill's first, "
                  f"then {result['decode_steps']} decode steps)")
    table = Table(title="Where the time goes (busy time per device and link)")
    table.add_column("resource")
    table.add_column("busy s")
    table.add_column("share of total")
    for name, busy in result["busy_s"].items():
        table.add_row(name, f"{busy:.3f}", f"{busy / result['total_s']:.0%}" if result["total_s"] else "-")
    console.print(table)
    stages = Table(title="Stages (the layers each holds, and the memory the request needs there)")
    free = any(row["attention_free_layers"] for row in result["stages"])  # a column only where a stage has some
    for col in ("stage", "device", "layers", "full", "windowed", "linear") + (("no attention",) if free else ()) + (
            "memory GiB", "usable GiB"):
        stages.add_column(col)
    for i, row in enumerate(result["stages"]):
        kinds = [str(row[k]) for k in ("full_layers", "windowed_layers", "linear_layers")] + (
            [str(row["attention_free_layers"])] if free else [])
        stages.add_row(str(i), row["device"], f"{row['first_layer']}-{row['last_layer']}", *kinds,
                       f"{row['memory_gib']:.2f}", f"{row['usable_memory_gib']:.1f}")
    console.print(stages)
