"""`phasewise edge`, `device-cloud`, `models` and `hardware`: split models over devices, and the catalogs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from phasewise.apps.cli_common import (
    DeviceEngine,
    DevicePrecision,
    Json,
    Model,
    app,
    changed_options,
    console,
    given_on_command_line,
)
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError
from phasewise.specs.device_cloud import DeviceCloud


def flags_given(command, values: dict, keys: tuple[str, ...]) -> list[str]:
    """The flags of `keys` the user gave, even at their default's value."""
    changed = dict(changed_options(command, values))
    return [changed.get(key, "--" + key.replace("_", "-")) for key in keys
            if key in changed or given_on_command_line(key)]


def refuse_replaced(command, values: dict, replaced: tuple[str, ...], file_flag: str, what: str) -> None:
    """A file option (--topology, --setup) replaces the flags `replaced`: any of them the user gave too, even at its
    default's value, is a conflict named in one line, not a flag quietly ignored."""
    given = flags_given(command, values, replaced)
    if given:
        raise PhasewiseError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply with {file_flag} "
                             f"(the file {what})")


@app.command("edge")
def edge_cmd(
    model: Model = "lmsys/vicuna-7b-v1.3",
    topology: Annotated[Optional[str], typer.Option(help="topology YAML: devices, links, split (replaces "
                                                         "--devices/--mbps/--latency-ms)")] = None,
    devices: Annotated[str, typer.Option(help="comma-separated hardware, chained by links")] =
        "jetson-agx-orin,jetson-agx-orin,jetson-agx-orin,jetson-agx-orin",
    mbps: Annotated[float, typer.Option(help="bandwidth of each link (Mbit/s)")] = 1000.0,
    latency_ms: Annotated[float, typer.Option(help="latency of each link (ms)")] = 1.0,
    split: Annotated[Optional[str], typer.Option(
        help="layers per device (8,8,8,8), auto (planned) or file (the topology YAML's); default: the topology "
             "YAML's split: where it has one, else auto")] = None,
    precision: DevicePrecision = "bf16",
    engine: DeviceEngine = "ideal",
    prompt_len: Annotated[int, typer.Option(help="prompt tokens")] = 640,
    output_len: Annotated[int, typer.Option(help="output tokens, the prefill's first included (as simulate's --osl): "
                                                 "TPOT over the output-len - 1 decoded after it")] = 128,
    subsequences: Annotated[int, typer.Option(help="prefill sub-sequences S (0: planned)")] = 0,
    outline_points: Annotated[int, typer.Option(help="outline points decoded in parallel (1: plain AR)")] = 1,
    outline_tokens: Annotated[int, typer.Option(help="skeleton tokens decoded before the points")] = 0,
    medusa_heads: Annotated[int, typer.Option(help="Medusa heads (0: none)")] = 0,
    acceptance: Annotated[float, typer.Option(
        help="Medusa: tokens a decode step advances on average (its accepted guesses + 1), in [1, 1 + "
             "--medusa-heads] (without Medusa: 1)")] = 1.0,
    objective: Annotated[Optional[str], typer.Option(
        help="what a planned split / S minimises: ttft (the default), or total (the last token's time, decode "
             "included)")] = None,
    as_json: Json = False,
) -> None:
    """One request through a model split over edge devices and links (Jupiter-style pipelined prefill and decode)."""
    from phasewise.apps.edge_view import render_edge, run_edge

    if topology is not None:  # the file's devices and links replace these: giving both is a conflict, not a default
        refuse_replaced(edge_cmd, locals(), ("devices", "mbps", "latency_ms"), "--topology",
                        "names the devices and links")
    elif "," not in devices:  # one device: no link for --mbps / --latency-ms to set
        given = flags_given(edge_cmd, locals(), ("mbps", "latency_ms"))
        if given:
            raise PhasewiseError(f"{', '.join(given)}: --devices names one device, so there is no link to set "
                                 "(list two or more devices, comma-separated)")
    result = run_edge(model, topology, devices, mbps, latency_ms, split, precision, engine, prompt_len, output_len,
                      subsequences, outline_points, outline_tokens, medusa_heads, acceptance, objective)
    if as_json:
        print(dumps(result))
        return
    render_edge(console, result)


DEVICE_CLOUD_FLAGS = ("devices", "device_hardware", "cloud_hardware", "cloud_gpus", "uplink_mbps", "downlink_mbps",
                      "latency_ms", "input_layers", "output_layers", "adapter_layers")  # what --setup replaces
REPLACED_BY_SETUP = f"--{DEVICE_CLOUD_FLAGS[0]} to --{DEVICE_CLOUD_FLAGS[-1]}".replace("_", "-")  # (--setup's help)


# the flags' defaults are the setup file's (one set: a file that leaves a field out runs as the flags would)
_SETUP = {name: field.default for name, field in DeviceCloud.model_fields.items()}


@app.command("device-cloud")
def device_cloud_cmd(
    model: Model = "meta-llama/Llama-2-7b-hf",
    setup: Annotated[Optional[str], typer.Option(help="device-cloud YAML (specs/device_cloud.py): replaces "
                                                      f"{REPLACED_BY_SETUP} (the devices, the cloud, the links, the "
                                                      "split); --precision, --engine and --prompt-len to "
                                                      "--acceptance still apply")
                     ] = None,
    devices: Annotated[int, typer.Option(help="devices sharing the cloud, one request each")] = _SETUP["devices"],
    device_hardware: Annotated[str, typer.Option(help="each device's hardware")] = _SETUP["device_hardware"],
    cloud_hardware: Annotated[str, typer.Option(help="the cloud's GPUs")] = _SETUP["cloud_hardware"],
    cloud_gpus: Annotated[int, typer.Option(help="cloud GPUs, each a copy of the middle layers")
                          ] = _SETUP["cloud_gpus"],
    uplink_mbps: Annotated[float, typer.Option(help="each device's uplink (Mbit/s)")] = _SETUP["uplink_mbps"],
    downlink_mbps: Annotated[float, typer.Option(help="each device's downlink (Mbit/s)")] = _SETUP["downlink_mbps"],
    latency_ms: Annotated[float, typer.Option(help="one-way device-cloud latency (ms)")] = _SETUP["latency_s"] * 1e3,
    input_layers: Annotated[int, typer.Option(help="first layers on the device")] = _SETUP["input_layers"],
    output_layers: Annotated[int, typer.Option(help="last layers on the device")] = _SETUP["output_layers"],
    adapter_layers: Annotated[int, typer.Option(help="the device's draft adapter (decoder layers); needs "
                                                     "--draft-tokens >= 1")] = _SETUP["adapter_layers"],
    precision: DevicePrecision = "fp16",
    engine: DeviceEngine = "ideal",
    prompt_len: Annotated[int, typer.Option(help="prompt tokens")] = 1024,
    output_len: Annotated[int, typer.Option(help="output tokens, the prefill's first included (as simulate's --osl): "
                                                 "TBT over the output-len - 1 decoded after it")] = 64,
    chunk: Annotated[int, typer.Option(help="prompt chunk tokens (0: planned per device)")] = 0,
    draft_tokens: Annotated[int, typer.Option(help="tokens the device drafts per verify, 0 to 16 (0: plain AR, "
                                                   "no draft)")] = 4,
    acceptance: Annotated[float, typer.Option(
        help="probability that each drafted token is accepted (i.i.d.), in [0, 1); needs --draft-tokens >= 1"
    )] = 0.8,
    as_json: Json = False,
) -> None:
    """Many devices sharing one cloud server over a U-shaped split (HAT-style chunked upload and drafting)."""
    from phasewise.apps.device_cloud_view import render_device_cloud, run_device_cloud_view

    if setup is not None:  # the file's devices, cloud, links and split replace these flags (its fields)
        refuse_replaced(device_cloud_cmd, locals(), DEVICE_CLOUD_FLAGS, "--setup",
                        "sets the devices, the cloud, the links and the split")
    if draft_tokens == 0:  # no draft: the flags that shape it would change nothing
        given = flags_given(device_cloud_cmd, locals(), ("adapter_layers", "acceptance"))
        if given:
            raise PhasewiseError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --draft-tokens >= 1 "
                                 "(with 0 the devices decode plain autoregressively: there is no draft to run or "
                                 "accept)")
    flags = {"devices": devices, "device_hardware": device_hardware, "cloud_hardware": cloud_hardware,
             "cloud_gpus": cloud_gpus, "uplink_mbps": uplink_mbps, "downlink_mbps": downlink_mbps,
             "latency_s": latency_ms / 1e3, "input_layers": input_layers, "output_layers": output_layers,
             "adapter_layers": adapter_layers}
    result = run_device_cloud_view(model, setup, flags, precision, engine, prompt_len, output_len, chunk,
                                   draft_tokens, acceptance)
    if as_json:
        print(dumps(result))
        return
    render_device_cloud(console, result)


@app.command("models")
def models_cmd(as_json: Json = False) -> None:
    """List the model catalog."""
    from rich.table import Table

    from phasewise.specs.catalog import packaged
    from phasewise.specs.model_catalog import load_model

    table = Table(title="Model catalog (HF config.json fields)")
    for col in ("model", "params", "active", "layers", "hidden", "attention", "experts", "format", "aliases"):
        table.add_column(col, overflow="fold")  # ids are copied from here: wrapped, never cut
    rows = []
    for key, entry in packaged("models.yaml")["models"].items():
        m = load_model(key)
        experts = f"{m.experts_per_token}/{m.num_experts}" if m.num_experts else "-"
        attention = (f"MLA {m.num_heads}h, {m.kv_latent_size} cached" if m.latent_attention
                     else f"{m.num_heads}/{m.num_kv_heads} heads")
        if m.window_own_geometry:  # Gemma 4: each kind's KV heads and head width
            attention = (f"{m.num_heads}/{m.num_kv_heads} heads of {m.head_dim}"
                         f"{' (V from K)' if m.value_from_key else ''}; windowed layers {m.num_heads}/"
                         f"{m.window_layer_kv_heads} of {m.window_layer_head_dim}")
        if m.window_layer_share:
            kind = "chunked" if m.chunked_attention else "windowed"
            attention += f", {m.sliding_window_layers} of {m.num_layers} layers {kind} {m.sliding_window}"
        elif m.window_all_layers:
            attention += f", window {m.sliding_window}"
        if m.linear_attention_layers:
            kind = {"gated_deltanet": "gated DeltaNet", "mamba2": "Mamba-2", "kda": "KDA", "mamba1": "Mamba-1",
                    "lightning": "lightning", "short_conv": "short conv"}[m.linear_recurrence]
            if m.decoder_layers == m.num_layers:
                attention += f", {m.linear_attention_layers} of {m.num_layers} layers linear ({kind})"
            elif m.model_type == "falcon_h1":  # costed as a mixer layer and an attention layer per decoder layer
                attention += f", a {kind} mixer beside attention in each of its {m.decoder_layers} layers"
            else:  # Nemotron-H: its blocks (mixer, attention, MLP) costed in pairs
                attention += (f", blocks: {m.linear_attention_layers} {kind}, {m.full_attention_layers} attention, "
                              f"{m.num_layers - m.mlp_free_layers} MLP / MoE")
        if m.mlp_free_layers and m.decoder_layers == m.num_layers:
            attention += f", {m.mlp_free_layers} without an MLP"
        if m.attention_free_layers:
            attention += f", {m.attention_free_layers} of {m.num_layers} layers without attention"
        if m.mlp_width_varies:
            attention += f", MLPs {m.intermediate_size:,} wide on average (widest {m.widest_mlp_size:,})"
        if m.kv_shared_layers:
            attention += f", the last {m.kv_shared_layers} reuse earlier layers' KV"
        if m.per_layer_input_size:
            attention += f", per-layer inputs of {m.per_layer_input_size}"
        if m.sparse_attention_topk:
            attention += f", sparse top-{m.sparse_attention_topk} (indexer {m.indexer_heads}x{m.indexer_head_dim})"
        if m.compressed is not None:  # DeepSeek-V4
            c = m.compressed
            attention = (f"{m.num_heads}h over 1 K=V head of {m.head_dim}, window {c.window}; {c.csa_layers} CSA "
                         f"1/{c.csa_ratio} top-{c.index_topk}, {c.hca_layers} HCA 1/{c.hca_ratio}")
        if not m.causal:
            attention += ", bidirectional"
        aliases = list(entry.get("aliases") or [])
        rows.append({"model": key, "aliases": aliases, "total_params": m.total_params,
                     "active_params": m.active_params, "layers": m.decoder_layers, "hidden_size": m.hidden_size,
                     "attention": attention, "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads,
                     "experts_per_token": m.experts_per_token, "num_experts": m.num_experts,
                     "default_precision": m.default_precision,
                     "max_position_embeddings": m.max_position_embeddings})
        table.add_row(key, f"{m.total_params / 1e9:.1f}B", f"{m.active_params / 1e9:.1f}B", str(m.decoder_layers),
                      str(m.hidden_size), attention, experts, m.default_precision, ", ".join(aliases))
    if as_json:
        print(dumps({"models": rows}))
        return
    console.print(table)


@app.command("hardware")
def hardware_cmd(
    chips: Annotated[Optional[str], typer.Argument(
        help="catalog keys or hardware YAML paths, comma-separated (none: the whole catalog); a chip built from "
             "parts also shows its die area, yield, cost and TDP by part")] = None,
    as_json: Json = False,
    as_yaml: Annotated[bool, typer.Option(
        "--yaml", help="print one catalog chip as a hardware YAML file (its efficiencies resolved into its "
                       "`efficiency:` block): that file gives the catalog's numbers exactly; edit a copy for a "
                       "variant")] = False,
) -> None:
    """List the hardware catalog, or describe the chips named (your own YAML files too)."""
    from phasewise.apps.hardware_view import chip_row, render_chips
    from phasewise.specs.hardware import catalog_entry_yaml, hardware_list, hardware_names, load_hardware

    if chips is not None and not chips.strip():
        raise PhasewiseError("hardware: the chip list is empty: name chips (keys or YAML paths, comma-separated) "
                             "or give none for the whole catalog")
    if as_yaml:
        import yaml

        if as_json or chips is None or len(hardware_list("hardware", chips)) != 1:
            raise PhasewiseError("hardware --yaml: name one catalog chip (phasewise hardware b200 --yaml > my.yaml), "
                                 "without --json")
        entry = catalog_entry_yaml(chips.strip())
        print(f"# Written by `phasewise hardware {chips.strip()} --yaml`: the catalog entry, its efficiencies "
              "resolved; use with --hardware FILE")
        print(yaml.safe_dump(entry, sort_keys=False, allow_unicode=True), end="")
        return
    keys = hardware_names() if chips is None else hardware_list("hardware", chips)
    rows = [chip_row(key, load_hardware(key)) for key in keys]
    if as_json:
        print(dumps({"hardware": rows}))
        return
    render_chips(console, rows, "Hardware catalog (dense peaks)" if chips is None else "Hardware (dense peaks)")
