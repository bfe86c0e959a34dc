"""Measured TTFT (per sub-sequence count S and link speed) and decode per-token latency of a real two-process
pipeline (measure/pipeline_check.py) against the split simulator on the calibrated hardware entry: a Llama-shaped
stack, or an LFM2 checkpoint's short-conv hybrid (its first layers' pattern; each stage, real and simulated,
holds the conv layers its range has: ModelSpec.layer_pattern, stack_part)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.pipeline_check import TwoStagePipeline
from phasewise.measure.torch_env import MAX_REPEATS
from phasewise.measure.validate import (
    UNFITTED_ENGINE,
    UNFITTED_HARDWARE,
    measured_engine,
    relative_error,
    scaled_config,
    scaled_kv_heads,
    scaled_width,
    timed_hardware,
)
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DecodePlan, run_split, sub_sequence_lengths
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.model import ModelSpec
from phasewise.specs.topology import chain_topology

# Idle time before each latency round trip: a decode message finds both stages blocked, waiting for each other
# for a stage's forward (milliseconds). Measured here (2 vCPUs): one-way 33 us back to back, ~100-150 us after
# 5-10 ms idle, 220-235 us after 20 ms, the same for 4 B, 2 KB and 4 KB payloads (a wake-up cost, not bytes);
# the per-token transport measured inside the default decode run was ~0.2 ms per message.
LINK_IDLE_S = 0.02


@dataclass(slots=True)
class PipelinePoint:
    metric: str  # "ttft" or "decode" (per token)
    link_mbps: float
    sub_sequences: int
    measured_s: float
    predicted_s: float  # on the calibrated entry
    unfitted_s: float  # on the class-default entry (UNFITTED_HARDWARE / UNFITTED_ENGINE)

    @property
    def error(self) -> float:
        return relative_error(self.predicted_s, self.measured_s)

    @property
    def unfitted_error(self) -> float:
        return relative_error(self.unfitted_s, self.measured_s)


def scaled_lfm2_config(model: ModelSpec, layers: int, hidden: int) -> dict[str, Any]:
    """transformers Lfm2Config fields of an LFM2 checkpoint's shape at `layers` layers and `hidden` width: the first
    `layers` of its layer pattern (ModelSpec.layer_pattern, as its full_attn_idxs or layer_types name them; one
    attention layer at least), heads of its head_dim and its query-to-KV-head ratio, its MLP width scaled with the
    width (given as is: no auto-adjust), its vocabulary and conv taps."""
    pattern = model.layer_pattern
    if model.model_type != "lfm2" or not pattern:
        raise PhasewiseError(f"--pipeline builds a short-conv hybrid from an LFM2 checkpoint (a catalog LFM2 entry, "
                             f"e.g. LiquidAI/LFM2-1.2B, or an LFM2 config.json); '{model.name}' is not one")
    types = ["full_attention" if kind == "F" else "conv" for kind in pattern[:layers]]
    if len(types) < layers or "full_attention" not in types:
        raise PhasewiseError(f"--layers {layers}: the scaled stack takes the checkpoint's first layers (1.."
                             f"{model.num_layers}), an attention layer among them ({pattern.index('F') + 1} or "
                             "more)")
    if hidden % model.head_dim:
        raise PhasewiseError(f"--hidden must be a multiple of the heads' {model.head_dim} for {model.name} "
                             f"(got {hidden})")
    heads = hidden // model.head_dim
    kv_heads = scaled_kv_heads(heads, model.num_heads // model.num_kv_heads)
    width = scaled_width(model.intermediate_size, hidden, model.hidden_size)
    return dict(model_type="lfm2", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=width, block_auto_adjust_ff_dim=False,
                layer_types=types, conv_L_cache=model.linear_conv_kernel, conv_bias=False,
                vocab_size=model.vocab_size, max_position_embeddings=8192, tie_word_embeddings=model.tie_embeddings,
                norm_eps=1e-5)


def pipeline_validate(model: str, hardware: str, stages: int = 2, link_mbps: list[float] | None = None,
                      sub_sequences: list[int] | None = None, layers: int = 4, hidden: int = 512,
                      prompt_tokens: int = 512, decode_steps: int = 16, repeats: int = 3, engine: str | None = None,
                      progress: Callable[[str], None] | None = None) -> tuple[list[PipelinePoint], dict[str, Any]]:
    if stages != 2:
        raise PhasewiseError(f"--pipeline {stages}: only 2 stages (two processes on this machine) are built")
    if layers < 2 or prompt_tokens < 1 or repeats < 1 or decode_steps < 0:
        raise PhasewiseError("--pipeline needs --layers >= 2, a prompt >= 1 token, repeats >= 1, decode steps >= 0")
    if repeats > MAX_REPEATS:
        raise PhasewiseError(f"--repeats must be at most {MAX_REPEATS:,} for a real run here (got {repeats:,})")
    link_mbps = link_mbps or [20.0, 200.0]
    sub_sequences = sub_sequences or [1, 2, 4, 8]
    if any(m <= 0 for m in link_mbps) or any(s < 1 for s in sub_sequences):
        raise PhasewiseError("--link-mbps must be > 0 and sub-sequence counts >= 1")
    say = progress or (lambda _m: None)
    spec = load_model(model)
    family = "lfm2" if spec.model_type == "lfm2" else "llama"  # a short-conv hybrid, or a Llama-shaped stack
    hf_config = scaled_lfm2_config(spec, layers, hidden) if family == "lfm2" else scaled_config(spec, layers, hidden)
    config = {k: v for k, v in hf_config.items() if k not in ("model_type", "architectures")}
    from phasewise.specs.hf_config import from_hf_config

    small = from_hf_config(f"{spec.name} (scaled)", hf_config)
    boundary = layers // 2
    hw = timed_hardware(hardware, "cpu")
    eng = measured_engine(hardware, engine)
    quant = load_quant("fp32")
    sides = ((hardware, hw, eng), (UNFITTED_HARDWARE, load_hardware(UNFITTED_HARDWARE), load_engine(UNFITTED_ENGINE)))

    measured: dict[tuple[str, float, int], list[float]] = {}
    wall_start = time.perf_counter()
    say(f"starting two stage processes ({small.total_params / 1e6:.0f}M parameters, split {boundary}+"
        f"{layers - boundary})")
    with TwoStagePipeline(config, boundary, family) as pipeline:
        stage_allocators = pipeline.stage_allocators
        ping_s = pipeline.one_way_latency_s(1)  # 4 bytes back to back: the bare socket, for reference
        # a decode step's messages, from idle stages: the link's per-message latency
        latency_s = pipeline.one_way_latency_s(small.hidden_size, 30, LINK_IDLE_S)
        warm = sub_sequence_lengths(prompt_tokens, max(sub_sequences))
        pipeline.run(warm, min(decode_steps, 2), max(link_mbps))  # warm-up: allocator, first-call paths
        for mbps in link_mbps:
            for subs in sub_sequences:
                say(f"TTFT at {mbps:g} Mbit/s, S={subs}")
                lengths = sub_sequence_lengths(prompt_tokens, subs)
                for _ in range(repeats):
                    run = pipeline.run(lengths, 0, mbps)
                    measured.setdefault(("ttft", mbps, subs), []).append(run.ttft_s)
            if decode_steps:
                say(f"decode at {mbps:g} Mbit/s")
                for _ in range(repeats):
                    run = pipeline.run([prompt_tokens], decode_steps, mbps)
                    measured.setdefault(("decode", mbps, 1), []).append(run.token_gap_s)
    wall_s = time.perf_counter() - wall_start

    points = []
    for (metric, mbps, subs), times in measured.items():
        predicted = []
        for key, chip, profile in sides:  # calibrated, then unfitted
            topo = chain_topology([key, key], mbps, latency_s)
            split = SplitModel(small, quant, profile, topo, [chip, chip], [boundary, layers - boundary])
            if metric == "ttft":
                predicted.append(run_split(split, prompt_tokens, 0, subs).ttft_s)
            else:
                predicted.append(run_split(split, prompt_tokens, decode_steps, 1, DecodePlan()).tpot_s)
        points.append(PipelinePoint(metric, mbps, subs, statistics.median(times), *predicted))
    info = {"model": small.name, "params": small.total_params, "layers": layers, "hidden": hidden, "family": family,
            "stage_linear_layers": [split_layers(small, n, first) for n, first in ((boundary, 0),
                                                                                  (layers - boundary, boundary))],
            "split": [boundary, layers - boundary], "hardware": hw.key, "engine": eng.name,
            "unfitted_hardware": UNFITTED_HARDWARE, "unfitted_engine": UNFITTED_ENGINE,
            "prompt_tokens": prompt_tokens, "decode_steps": decode_steps, "repeats": repeats,
            "socket_one_way_latency_s": latency_s, "small_message_one_way_latency_s": ping_s,
            "measure_wall_s": wall_s, "host_allocator": host_allocator_note(),
            "stage_host_allocators": stage_allocators,
            "hidden_state_bytes": prompt_tokens * small.hidden_size * 4}
    return points, info


def split_layers(model: ModelSpec, layers: int, first_layer: int) -> int:
    """Linear-attention layers the simulator gives the stage of `layers` from `first_layer` (ModelSpec.stack_part)."""
    return model.stack_part(layers, first_layer).linear_attention_layers


def pipeline_summary(points: list[PipelinePoint]) -> dict[str, float]:
    """Median and worst |error| per metric and over all points, of the calibrated ("") and the unfitted
    ("unfitted_") prediction against the measured time."""
    out: dict[str, float] = {}
    for metric in ("ttft", "decode", None):
        chosen = [p for p in points if metric is None or p.metric == metric]
        prefix = f"{metric}_" if metric else ""
        for label, errs in (("", [abs(p.error) for p in chosen]), ("unfitted_", [abs(p.unfitted_error)
                                                                                 for p in chosen])):
            if errs:
                out[f"{prefix}{label}median_abs_error"] = statistics.median(errs)
                out[f"{prefix}{label}worst_abs_error"] = max(errs)
            elif metric is None:
                out[f"{label}median_abs_error"] = out[f"{label}worst_abs_error"] = math.nan
    return out
