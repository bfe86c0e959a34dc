"""SPAD-1: a Prefill Chip (GDDR7, 32x32 arrays) and a Decode Chip (HBM, half the tensor compute), built from
their parts, against an H100 modeled from its parts: prefill performance and hardware cost, decode performance
and TDP, and the cost / TDP of disaggregated clusters sized for the same SLOs on the Azure traces, plus the
re-allocation check (either chip running either phase when the workload changes).

Chips: specs catalog entries spad-h100-model, spad-prefill-chip, spad-decode-chip (specs/data/hardware_specs.yaml,
parts and constants sourced in specs/data/chip_parts.yaml). Per-chip performance comes from the cost model, whose
GEMMs tile onto each chip's arrays (perf/tiling.py). Cluster sizing: each phase's goodput per TP instance on each
chip is searched by the planner's bisection (plan.goodput.evaluate) on a unit of one instance of that phase on the
chip, the other phase over-provisioned with `helpers` H100-model instances; a cluster serving a rate R within the
SLOs then needs R / goodput instances of each phase (fractional: the rate cancels in every ratio).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.fit import roofline_cost
from phasewise.plan import run_all
from phasewise.plan.goodput import WorkloadSpec, capacity_estimate, evaluate
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.scenarios.base import (
    Check,
    Outcome,
    Param,
    Scenario,
    autoregressive,
    check_with,
    lengths_within_context,
    memory_refusal,
    setup_error,
)
from phasewise.sim import Slo
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.chip_cost import chip_cost, parts_entry
from phasewise.specs.engines import resolve_engine
from phasewise.specs.parts import chip_constants
from phasewise.workload import load_trace

MEMORY_TYPES = tuple(chip_constants()["memory_types"])  # every type chip_parts.yaml prices
AZURE_TRACES = ("azure-conv", "azure-code")  # PAPERS.md SPAD-1's two workloads, bundled excerpts
COLLECTIVES = ("tp_allreduce", "pp_send_recv")

SETUP = {
    "model": Param("meta-llama/Llama-2-70b-hf", "PAPERS.md SPAD-1: Llama-2-70B (or Llama-3-70B), TP8"),
    "tp": Param(8, "PAPERS.md SPAD-1: TP8"),
    "precision": Param("bf16", "PAPERS.md section 2: the chips' peaks are BF16"),
    "engine": Param("vllm", "assumed: the serving engine of the other scenarios (vLLM V1 class defaults)"),
    "h100": Param("spad-h100-model", "PAPERS.md SPAD-1: H100 model {0.96 PF, 3.35 TB/s, 80 GB} built from parts"),
    "prefill_chip": Param("spad-prefill-chip", "PAPERS.md SPAD-1: Prefill Chip {1.92 PF, 2.048 TB/s GDDR7, 64 GB}"),
    "decode_chip": Param("spad-decode-chip", "PAPERS.md SPAD-1: Decode Chip {~0.5x H100 tensor, 3.35 TB/s, 80 GB}"),
    "prefill_memory": Param("GDDR7", "PAPERS.md section 2: the Prefill Chip's GDDR7; another type keeps its bandwidth "
                            "and capacity (the bus widened to whole units of the type at its fastest pin rate)",
                            choices=MEMORY_TYPES),
    "prompts": Param([512, 1024, 2048, 4096, 8192], "PAPERS.md SPAD-1: prompts 512-8192 on Llama-2-70B (or "
                     "Llama-3-70B, whose context is 8,192): 8,192 is past Llama-2-70B's 4,096-token context, and the "
                     "cost model runs the architecture there as given; a prompt is held within the model's context or "
                     "this range's longest, 8,192 (a decode context within the model's)"),
    "decode_batches": Param([1, 8, 16, 32, 64], "PAPERS.md SPAD-1: batch 1-64"),
    "decode_contexts": Param([1024, 2048, 4096], "PAPERS.md SPAD-1: 1-4k context"),
    "traces": Param(list(AZURE_TRACES), "PAPERS.md SPAD-1: Azure conversation and coding traces (bundled excerpts); "
                    "with one trace, the re-allocation check also searches the other Azure trace (azure-conv for a "
                    "trace of neither) to move the fleet to"),
    # at most the bundled excerpts' 2,000 requests (more would silently be the whole excerpt)
    "trace_requests": Param(1000, "assumed: the excerpts' first 1,000 requests keep the scenario within seconds",
                            upper=2000),
    "slo_ttft_ms": Param(2000.0, "assumed: the paper's SLOs were not recovered; MLPerf server limits for "
                         "Llama-2-70B (TTFT 2 s), as BestServe-1"),
    "slo_tpot_ms": Param(200.0, "assumed: MLPerf server limits for Llama-2-70B (TPOT 200 ms), as BestServe-1"),
    "attainment": Param(0.9, "DistServe goodput: 90 % of requests meet both SLOs", upper=1.0),
    # at most 10x the default: each goodput search simulates the helpers' instances too
    "helpers": Param(6, "assumed: H100-model instances of the other phase, enough that it never binds (the table "
                     "shows the binding phase)", upper=60),
    "window_s": Param(15.0, "assumed: each goodput search simulates this many seconds of arrivals per rate, within "
                      "seconds; a longer window lets a slow overload show (a queue that grows, TTFTs that drift past "
                      "the SLO) at proportionally more simulation: rerun at 30 or 60 to see whether the cluster "
                      "figures have settled (the README's SPAD row gives them at a longer window too)", upper=3600.0),
    "seed": Param(0, "assumed: any seed"),
}

# the longest prompt of the paper's range (PAPERS.md SPAD-1): allowed past a model's shorter context
PROMPTS_LONGEST = max(SETUP["prompts"].value)
# Bisections of each goodput search after its bracket (plan.bisection.highest_rate): 4 left the found goodput within
# ~5 % of the lowest rate that failed, as wide as the chips' differences the cluster ratios rest on (23.60 vs 23.11
# req/s); 7 narrow it to under 1 % (each phase's goodput and its resolution in the checks' why)
GOODPUT_STEPS = 7


def validate(setup: dict[str, Any]) -> None:
    """Before anything runs: the prompts within the model's context (or the paper's range), the decode contexts within
    the model's."""
    autoregressive("spad", "model", setup["model"])
    lengths_within_context("spad", setup["model"], max(setup["prompts"]), keys="prompts (the longest)",
                           beyond=PROMPTS_LONGEST)
    lengths_within_context("spad", setup["model"], max(setup["decode_contexts"]), keys="decode_contexts (the longest)")
    # the TP degree and precision as the cost model takes them (its own checks: TP dividing the heads, a known scheme)
    check_with("spad", {"--tp": "--set tp", "--precision": "--set precision"},
               lambda: CostModel(load_model(setup["model"]), load_hardware(setup["h100"]),
                                 load_quant(setup["precision"]), load_engine(setup["engine"]), setup["tp"], 1))
    for key in CHIPS:  # their cost, TDP and GEMM tiling come from their parts
        if load_hardware(setup[key]).parts is None:
            raise setup_error("spad", key, f"needs a chip built from parts ('{setup[key]}' has none: `parts:` in its "
                                           "YAML, specs/parts.py)")
    variant_memory(load_hardware(setup["prefill_chip"]), setup["prefill_memory"])
    fits_every_chip(setup)


# the setup keys of the three chips, as the checks name them
CHIPS = {"h100": "the H100 model", "prefill_chip": "the Prefill Chip", "decode_chip": "the Decode Chip"}


def chip_refusal(setup: dict[str, Any], tp: int, chip: str) -> str | None:
    """Why `chip` cannot hold the setup's model at `tp` (MemoryFit.reason), or None: its weights and the KV of one
    request of the longest prompt (the longest decode context where longer) as `phasewise estimate` sizes them (perf's
    memory fit under the engine's memory fraction and start-up profile batch; the planner's disaggregated unit needs
    as much: phase_unit)."""
    return memory_refusal(setup["model"], chip, tp=tp, precision=setup["precision"], engine=setup["engine"],
                          prompt_len=max(setup["prompts"]), context_len=max(setup["decode_contexts"]))


def fits_every_chip(setup: dict[str, Any]) -> None:
    """Before anything runs: a one-line error naming the --set keys where a chip cannot hold the model at the setup's
    TP and precision (chip_refusal), with the TP degrees within a node at which every chip holds it."""
    refused = next(((key, why) for key in CHIPS if (why := chip_refusal(setup, setup["tp"], setup[key]))), None)
    if refused is None:
        return
    key, why = refused
    node = load_hardware(setup["h100"]).interconnect.gpus_per_node
    holding = []
    for tp in (2 ** i for i in range(node.bit_length())):
        try:
            if not any(chip_refusal(setup, tp, setup[chip]) for chip in CHIPS):
                holding.append(tp)
        except PhasewiseError:  # a TP the model's heads do not divide
            continue
    hint = (f"every chip holds it at tp {', '.join(map(str, holding))}" if holding else
            f"no tp up to a node's {node} holds it on every chip: a smaller precision or model")
    tokens = max(max(setup["prompts"]), max(setup["decode_contexts"]))
    raise setup_error("spad", f"model, precision, tp, {key}",
                      f"{setup['model']} in {setup['precision']} at TP{setup['tp']} does not fit {CHIPS[key]} "
                      f"'{setup[key]}': {why} (one request of {tokens:,} tokens, as `phasewise estimate` sizes it); "
                      f"{hint}")


def peak_path(paths: dict[str, str]) -> str:
    """The tensor path a peak ratio is of, in words: nothing for the chips' BF16 peaks (the paper's), else its own."""
    named = sorted(set(paths.values()))
    return "" if named == ["bf16"] else f" ({' / '.join(named)})"


def tensor_path(hw, precision: str) -> str:
    """The tensor path `precision` runs on `hw` (QuantScheme.on: its own, or the one its kernels fall back to)."""
    scheme = load_quant(precision).on(hw)
    return scheme.tensor_path or scheme.compute_dtype


# the paper's figures (PAPERS.md section 2) and the bands, fixed before any result was seen
PREFILL_GAIN = (1.08, (1.0, 1.3))  # paper +8 % average; PAPERS.md: >= 1.0x for prompts >= 512
PREFILL_COST = (0.48, (0.38, 0.58))  # paper -52 % hardware cost; +-10 points for public cost inputs
DECODE_PERF = (0.97, (0.95, 1.0))  # paper 97 % of H100 decode; PAPERS.md: >= 0.95 for batch 1-64, 1-4k context
DECODE_TDP = (0.72, (0.62, 0.82))  # paper -28 % TDP; +-10 points
CLUSTER_COST = ([0.59, 0.81], (0.59, 0.81))  # paper -19 % to -41 % cluster hardware cost
CLUSTER_TDP = ([0.83, 0.98], (0.83, 0.98))  # paper -2 % to -17 % cluster TDP
REALLOCATED_COST = ([0.57, 0.89], (0.57, 0.89))  # paper -11 % to -43 % after re-allocation


def prefill_variant(name: str, memory_type: str, folder: Path) -> str:
    """The Prefill Chip (`name`: a catalog key, alias or file, a chip built from parts) with another memory type of the
    same bandwidth and capacity (specs/parts.py Memory.of_type), as a hardware YAML path in `folder`, its memory's
    source the new memory's; `name` itself where its memory is already of that type."""
    hw = load_hardware(name)
    if hw.parts is None or hw.parts.memory.type == memory_type:  # (validate refuses a chip without parts)
        return name
    memory = variant_memory(hw, memory_type)
    kind = chip_constants()["memory_types"][memory_type]
    entry = parts_entry(hw)
    source = (f"{memory_type} in place of the chip's {hw.parts.memory.type} (reproduce spad --set prefill_memory): "
              f"its {memory.bandwidth_bytes_per_s / 1e9:,.0f} GB/s and {memory.capacity_bytes / 2 ** 30:,.0f} GiB kept "
              f"over {memory.units} {kind['unit_name']}{'s' if memory.units > 1 else ''} ({memory.interface_bits} "
              f"bits at {memory.gbps_per_pin:.3g} Gb/s; chip_parts.yaml {memory_type} max_gbps_per_pin: "
              f"{kind['sources']['max_gbps_per_pin']})")
    variant = dict(entry, parts=dict(entry["parts"], memory=memory.model_dump()), name=f"{hw.name} with {memory_type}",
                   sources={**entry.get("sources", {}), "memory": source})
    path = folder / f"prefill-chip-{memory_type}.yaml"
    path.write_text(yaml.safe_dump({"hardware": {f"{hw.key}-{memory_type.lower()}": variant}}))
    return str(path)


def variant_memory(hw, memory_type: str):
    """The Prefill Chip's memory as `memory_type` (specs/parts.py Memory.of_type: its bandwidth and capacity kept); a
    one-line error naming --set prefill_memory where the type's units cannot hold the capacity."""
    return hw.parts.memory.of_type(memory_type, f"reproduce spad: --set prefill_memory={memory_type} on prefill_chip "
                                                f"'{hw.key}'")


def chip_table(chips: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for role, name in chips.items():
        hw = load_hardware(name)
        cost = chip_cost(hw.parts, 2 * hw.interconnect.intra_node_bandwidth_bytes_per_s)
        out[role] = {"hw": hw, "cost": cost}
    return out


def prefill_latencies(setup: dict[str, Any], chips: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """Per chip: a prompt's prefill latency (cost model) and its pure roofline (perf/fit.py roofline_cost:
    spec-sheet peaks, every efficiency 1, no host time)."""
    model, quant, engine = load_model(setup["model"]), load_quant(setup["precision"]), load_engine(setup["engine"])
    out = {}
    for role, name in chips.items():
        hw = load_hardware(name)
        cost = CostModel(model, hw, quant, engine, setup["tp"], 1)
        roof = roofline_cost(model, hw, quant, setup["tp"])
        latency, roofline, memory_bound = [], [], []
        for prompt in setup["prompts"]:
            shape = BatchShape.uniform(1, prompt, 0)
            iteration = cost.iteration(shape)
            latency.append(iteration.latency_s)
            # the operators' time where memory binds them (weight and activation streaming)
            memory_bound.append(sum(op.time_s for op in iteration.operators
                                    if op.name not in COLLECTIVES and op.memory_s >= op.compute_s))
            roofline.append(roof.fast(shape)[0])
        out[role] = {"latency": latency, "roofline": roofline, "memory_bound": memory_bound}
    return out


def decode_throughputs(setup: dict[str, Any], chips: dict[str, str]) -> dict[str, dict[tuple[int, int], float]]:
    """Per chip: decode tokens/s of a batch at a context (one decode step's latency)."""
    model, quant, engine = load_model(setup["model"]), load_quant(setup["precision"]), load_engine(setup["engine"])
    out = {}
    for role, name in chips.items():
        cost = CostModel(model, load_hardware(name), quant, engine, setup["tp"], 1)
        out[role] = {(b, c): b / cost.fast(BatchShape.uniform(b, 1, c))[0]
                     for b, c in itertools.product(setup["decode_batches"], setup["decode_contexts"])}
    return out


def h100_engine_knobs(setup: dict[str, Any], chip: str, role: str) -> dict[str, Any]:
    """The engine knobs in force on the H100 model for `role` that `chip` would resolve otherwise: the engine's
    defaults by GPU memory (vLLM's token budget and sequence cap: 2,048 / 256 below 70 GiB, 8,192 / 1,024 from it,
    engine_presets.yaml), a serving setting and not the chip's, so that every chip runs the H100 model's."""
    own = resolve_engine(setup["engine"], load_hardware(chip), role=role, tp=setup["tp"]).knobs
    h100 = resolve_engine(setup["engine"], load_hardware(setup["h100"]), role=role, tp=setup["tp"]).knobs
    return {knob: value for knob, value in h100.items() if own.get(knob) != value}


def phase_unit(setup: dict[str, Any], chip: str, phase: str, helpers: int):
    """A disaggregated unit: one TP instance of `phase` on `chip`, `helpers` H100-model instances of the other, every
    instance under the H100 model's engine configuration (h100_engine_knobs; the strategy's own knobs kept)."""
    tp = setup["tp"]
    ratio = (1, helpers) if phase == "prefill" else (helpers, 1)
    opts = PlanOptions(tp_options=(tp,), chunk_sizes=(), batch_caps=(256,), ratios=(ratio,), engine=setup["engine"],
                       precisions=(setup["precision"],),
                       prefill_hardware=(chip if phase == "prefill" else setup["h100"],),
                       decode_hardware=(chip if phase == "decode" else setup["h100"],))
    strategies, pruned = enumerate_strategies(setup["model"], setup["h100"], tp * (1 + helpers), opts)
    unit = next((s for s in strategies if s.kind == "disaggregated"), None)
    if unit is None:  # what validate's memory check (fits_every_chip) let through, in the planner's words
        why = "; ".join(line for line in pruned if line.startswith("disaggregated"))
        raise setup_error("spad", "model, precision, tp", f"the planner finds no disaggregated unit of one TP{tp} "
                          f"{phase} instance on '{chip}': {why or 'no strategy of that kind'}")
    knobs = h100_engine_knobs(setup, chip, phase)
    if not knobs:
        return unit

    def same_engine(fields: dict[str, Any]) -> dict[str, Any]:
        return dict(fields, instances=[{**knobs, **group} if group["hardware"] == chip else group
                                       for group in fields["instances"]])

    return dataclasses.replace(unit, deployment=same_engine(unit.deployment), unit=same_engine(unit.unit))


def phase_goodput(setup: dict[str, Any], chip: str, phase: str, work: WorkloadSpec,
                  slo: Slo) -> tuple[float, str, float]:
    """Goodput (req/s) of one TP instance of `phase` on `chip`, the other phase over-provisioned: at least
    `helpers` H100-model instances, and 1.5x the count whose analytic capacity (plan.capacity.capacity_estimate)
    matches the measured instance's; what binds above it; and the search's resolution (the lowest rate found to
    fail over the goodput, less 1: the goodput lies within it)."""
    many = 1000  # capacity_estimate of a unit with this many helpers is the measured instance's own capacity
    own = capacity_estimate(phase_unit(setup, chip, phase, many), work)
    # the helpers are H100-model instances (phase_unit): their capacity in the other phase, not `chip`'s
    helper = capacity_estimate(phase_unit(setup, setup["h100"], "decode" if phase == "prefill" else "prefill", many),
                               work)
    helpers = max(setup["helpers"], math.ceil(1.5 * own / helper))
    unit = phase_unit(setup, chip, phase, helpers)
    result = evaluate(unit, work, slo, setup["attainment"], steps=GOODPUT_STEPS, window_s=setup["window_s"],
                      min_requests=200)
    resolution = result.binding_rps / result.goodput_rps - 1 if result.goodput_rps > 0 else math.inf
    return result.goodput_rps, f"{result.binding} ({helpers} helpers)", resolution


def reallocation_traces(traces: list[str]) -> list[str]:
    """The workloads the re-allocation check moves a fleet between: the setup's traces, or, where it names one, that
    trace and the other Azure trace (azure-conv for a trace of neither): a fleet sized for a trace and serving that
    same trace would only repeat the cluster-cost check."""
    if len(traces) > 1:
        return list(traces)
    return [traces[0], next(name for name in AZURE_TRACES if name != traces[0])]


def reallocated_rate(fleet: dict[str, float], goodput: dict[tuple[str, str], float], steps: int = 60) -> float:
    """The highest rate a fleet of instances ({chip role: instances}) serves when each instance may run either
    phase: max over the split of each chip's instances of min(prefill capacity, decode capacity)."""
    (a, n_a), (b, n_b) = fleet.items()
    best = 0.0
    for i, j in itertools.product(range(steps + 1), repeat=2):
        pa, pb = n_a * i / steps, n_b * j / steps
        prefill = pa * goodput[(a, "prefill")] + pb * goodput[(b, "prefill")]
        decode = (n_a - pa) * goodput[(a, "decode")] + (n_b - pb) * goodput[(b, "decode")]
        best = max(best, min(prefill, decode))
    return best


def arrays(hw) -> str:
    """A chip's systolic arrays as the checks name them ('32x32')."""
    return f"{hw.parts.compute.array_rows}x{hw.parts.compute.array_cols}"


def memory_words(hw) -> str:
    """A chip's memory as the checks name it: its type and bandwidth ('GDDR7 at 2.05 TB/s')."""
    return f"{hw.memory_type} at {hw.memory_bandwidth_bytes_per_s / 1e12:.2f} TB/s"


def slowest_prompt_note(setup: dict[str, Any], prefill: dict[str, dict[str, list[float]]], gains: list[float],
                        table: dict[str, dict[str, Any]]) -> str:
    """The prompt >= 512 where the Prefill Chip gains least, with both chips' latency and memory-bound share (each
    chip's memory named from the chip)."""
    long = [i for i, prompt in enumerate(setup["prompts"]) if prompt >= 512]
    if not long:
        return "no prompt of 512 tokens or more in prompts"
    i = min(long, key=lambda j: gains[j])
    h100, chip = prefill["h100"], prefill["prefill"]
    return (f"lowest at {setup['prompts'][i]} tokens: {h100['latency'][i] * 1e3:.1f} ms on the H100 model vs "
            f"{chip['latency'][i] * 1e3:.1f} ms on the Prefill Chip, whose memory-bound operators (weights streamed "
            f"from its {memory_words(table['prefill']['hw'])}) take {chip['memory_bound'][i] / chip['latency'][i]:.0%} "
            f"of it against {h100['memory_bound'][i] / h100['latency'][i]:.0%} on the H100 model's "
            f"{memory_words(table['h100']['hw'])}")


def same_engine_note(setup: dict[str, Any], chips: dict[str, str]) -> str:
    """The engine configuration every chip's goodput search runs under, in words (h100_engine_knobs)."""
    config = resolve_engine(setup["engine"], load_hardware(setup["h100"]), role="prefill", tp=setup["tp"])
    moved = sorted({knob for role in ("prefill", "decode") for chip in chips.values()
                    for knob in h100_engine_knobs(setup, chip, role)})
    return (f"every chip under the H100 model's {setup['engine']} configuration (token budget "
            f"{config.token_budget:,}" + (f"; {', '.join(moved)} set to the H100 model's where a chip's memory "
                                           "would change the engine's default" if moved else "") + ")")


def phase_split(goodput: dict[tuple[str, str], float], measure: dict[str, float], what: str) -> str:
    """The cluster ratio as its two phases make it: each phase's `what` per req/s on the SPAD chip over the H100
    model's, weighted by the phase's share of the H100-model cluster (ratio = share x prefill + rest x decode)."""
    per = {(role, phase): measure[role] / goodput[(role, phase)] if goodput[(role, phase)] > 0 else math.inf
           for role, phase in (("h100", "prefill"), ("prefill", "prefill"), ("h100", "decode"), ("decode", "decode"))}
    base = per[("h100", "prefill")] + per[("h100", "decode")]
    share = per[("h100", "prefill")] / base if math.isfinite(base) else math.nan
    return (f"prefill holds {share:.0%} of the H100-model cluster's {what}; per req/s, Prefill Chips need "
            f"{per[('prefill', 'prefill')] / per[('h100', 'prefill')]:.2f}x the H100 model's {what} for prefill and "
            f"Decode Chips {per[('decode', 'decode')] / per[('h100', 'decode')]:.2f}x for decode")


def run(setup: dict[str, Any]) -> Outcome:
    with tempfile.TemporaryDirectory() as folder:
        chips = {"h100": setup["h100"], "prefill": prefill_variant(setup["prefill_chip"], setup["prefill_memory"],
                                                                   Path(folder)),
                 "decode": setup["decode_chip"]}
        return _run(setup, chips)


def _run(setup: dict[str, Any], chips: dict[str, str]) -> Outcome:
    table = chip_table(chips)
    usd = {role: info["cost"].total_usd for role, info in table.items()}
    tdp = {role: info["hw"].tdp_w for role, info in table.items()}
    tp = setup["tp"]

    # (a) prefill: the Prefill Chip against the H100 model
    prefill = prefill_latencies(setup, {"h100": chips["h100"], "prefill": chips["prefill"]})
    gains = [h / p for h, p in zip(prefill["h100"]["latency"], prefill["prefill"]["latency"])]
    long_gains = [g for prompt, g in zip(setup["prompts"], gains) if prompt >= 512]
    roof_gains = [h / p for h, p in zip(prefill["h100"]["roofline"], prefill["prefill"]["roofline"])]
    paths = {role: tensor_path(info["hw"], setup["precision"]) for role, info in table.items()}
    peak_ratio = (table["prefill"]["hw"].peak(paths["prefill"]) / table["h100"]["hw"].peak(paths["h100"]))
    # (b) decode: the Decode Chip against the H100 model
    decode = decode_throughputs(setup, {"h100": chips["h100"], "decode": chips["decode"]})
    decode_ratio = {key: decode["decode"][key] / decode["h100"][key] for key in decode["h100"]}
    worst_decode = min(decode_ratio, key=decode_ratio.get)

    checks = [
        Check("Prefill Chip prefill performance",
              "the Prefill Chip prefills faster than the H100 model, +8 % on average (mean H100 / Prefill Chip "
              f"latency over prompts {setup['prompts'][0]}-{setup['prompts'][-1]})",
              PREFILL_GAIN[0], statistics.mean(gains), PREFILL_GAIN[1],
              f"per prompt {', '.join(f'{g:.2f}x' for g in gains)}; tensor-peak ratio{peak_path(paths)} "
              f"{peak_ratio:.2f}x (the pure compute roofline PAPERS.md expects to over-predict, ~1.8-2x); the "
              f"cost model at every efficiency 1 with no host time {statistics.mean(roof_gains):.2f}x. GEMMs tile "
              f"onto the arrays (fill/drain of {arrays(table['prefill']['hw'])} arrays), weight streaming from "
              f"{memory_words(table['prefill']['hw'])} binds short prompts, and elementwise traffic, TP all-reduce "
              "and host costs do not scale with the tensor peak"),
        Check("Prefill Chip no slower at any prompt >= 512",
              "PAPERS.md SPAD-1 (a): the Prefill Chip's prefill latency <= 1.0x the H100 model's for prompts >= 512 "
              "(the lowest H100 / Prefill Chip latency ratio over those prompts)",
              None, min(long_gains) if long_gains else math.nan, (1.0, 1e9),
              slowest_prompt_note(setup, prefill, gains, table)),
        Check("Prefill Chip hardware cost",
              "the Prefill Chip costs 52 % less than the H100 model (chip cost ratio: die from wafer price and yield, "
              "memory $/GB, package)", PREFILL_COST[0], usd["prefill"] / usd["h100"], PREFILL_COST[1],
              f"H100 model ${usd['h100']:,.0f} (die {table['h100']['cost'].die_area_mm2:.0f} mm2 "
              f"${table['h100']['cost'].die_usd:,.0f}, HBM ${table['h100']['cost'].memory_usd:,.0f}, package "
              f"${table['h100']['cost'].package_usd:,.0f}); Prefill Chip ${usd['prefill']:,.0f} (die "
              f"{table['prefill']['cost'].die_area_mm2:.0f} mm2 ${table['prefill']['cost'].die_usd:,.0f}, "
              f"{table['prefill']['hw'].memory_type} ${table['prefill']['cost'].memory_usd:,.0f}, package "
              f"${table['prefill']['cost'].package_usd:,.0f}); constants: specs/data/chip_parts.yaml"),
        Check("Decode Chip decode performance",
              "the Decode Chip keeps >= 95 % (paper: 97 %) of the H100 model's decode throughput (worst ratio over "
              f"batch {setup['decode_batches'][0]}-{setup['decode_batches'][-1]} x context "
              f"{setup['decode_contexts'][0]}-{setup['decode_contexts'][-1]})",
              DECODE_PERF[0], decode_ratio[worst_decode], DECODE_PERF[1],
              f"worst at batch {worst_decode[0]}, context {worst_decode[1]}; mean "
              f"{statistics.mean(decode_ratio.values()):.3f}: decode streams weights and KV from the same HBM, half "
              "the arrays only show where the batch's GEMMs leave the memory roof"),
        Check("Decode Chip TDP",
              "the Decode Chip's TDP is 28 % below the H100 model's (TDP from the parts)", DECODE_TDP[0],
              tdp["decode"] / tdp["h100"], DECODE_TDP[1],
              f"H100 model {tdp['h100']:.0f} W (" + ", ".join(f"{k} {v:.0f}" for k, v in
                                                            table['h100']['cost'].power_w.items())
              + f"); Decode Chip {tdp['decode']:.0f} W; the real H100 SXM is rated 700 W"),
    ]

    # (c) clusters sized for the same SLOs on each trace
    slo = Slo(setup["slo_ttft_ms"], setup["slo_tpot_ms"])
    searched = reallocation_traces(setup["traces"])  # the setup's traces, and the re-allocation's other with one
    keys, tasks = [], []
    for trace_name in searched:
        trace = load_trace(trace_name, setup["trace_requests"])
        work = WorkloadSpec(tuple(int(x) for x in trace.prompt_tokens), tuple(int(x) for x in trace.output_tokens),
                            None, seed=setup["seed"], name=trace_name)
        for role, phase in itertools.product(chips, ("prefill", "decode")):
            keys.append((trace_name, role, phase))
            tasks.append((setup, chips[role], phase, work, slo))
    # The searches are independent: one process per core, each deterministic, so the figures do not change. A
    # search simulates about its capacity x the window in requests: the largest go first, so none runs alone last.
    size = [capacity_estimate(phase_unit(setup, chip, phase, 1000), work) for _, chip, phase, work, _ in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -size[i])
    found = dict(zip(order, run_all(phase_goodput, [tasks[i] for i in order])))
    goodputs: dict[str, dict[tuple[str, str], float]] = {trace_name: {} for trace_name in searched}
    bindings: dict[str, dict[tuple[str, str], str]] = {trace_name: {} for trace_name in searched}
    resolutions: dict[str, dict[tuple[str, str], float]] = {trace_name: {} for trace_name in searched}
    for (trace_name, role, phase), (g, binding, resolution) in zip(keys, (found[i] for i in range(len(tasks)))):
        goodputs[trace_name][(role, phase)] = g
        bindings[trace_name][(role, phase)] = binding
        resolutions[trace_name][(role, phase)] = resolution
    engine_note = same_engine_note(setup, chips)

    def per_rps(trace_name: str, p_role: str, d_role: str, measure: dict[str, float]) -> float:
        """Cost (or TDP) per req/s of a cluster with prefill on p_role's chips and decode on d_role's."""
        g = goodputs[trace_name]
        if min(g[(p_role, "prefill")], g[(d_role, "decode")]) <= 0:
            return math.inf
        return tp * (measure[p_role] / g[(p_role, "prefill")] + measure[d_role] / g[(d_role, "decode")])

    clusters = []
    for trace_name in setup["traces"]:
        base_usd, base_w = per_rps(trace_name, "h100", "h100", usd), per_rps(trace_name, "h100", "h100", tdp)
        spad_usd, spad_w = per_rps(trace_name, "prefill", "decode", usd), per_rps(trace_name, "prefill", "decode", tdp)
        clusters.append((trace_name, base_usd, base_w, spad_usd, spad_w))
        g = goodputs[trace_name]
        shape = (f"per TP{tp} instance: prefill {g[('h100', 'prefill')]:.2f} (H100 model) vs {g[('prefill', 'prefill')]:.2f}"
                 f" (Prefill Chip) req/s, decode {g[('h100', 'decode')]:.2f} vs {g[('decode', 'decode')]:.2f} (Decode "
                 f"Chip) req/s, each within {max(resolutions[trace_name].values()):.1%} of the lowest rate found to "
                 f"fail ({GOODPUT_STEPS} bisections); {engine_note}")
        checks.append(Check(f"cluster hardware cost at equal SLOs ({trace_name})",
                            "Prefill + Decode Chip clusters cost 19-41 % less than H100-model clusters serving the same "
                            f"rate within the SLOs (cost ratio; TTFT {slo.ttft_ms:.0f} ms, TPOT {slo.tpot_ms:.0f} ms)",
                            CLUSTER_COST[0], spad_usd / base_usd, CLUSTER_COST[1],
                            f"{shape}; {phase_split(g, usd, 'cost')}"))
        checks.append(Check(f"cluster TDP at equal SLOs ({trace_name})",
                            "Prefill + Decode Chip clusters draw 2-17 % less TDP than H100-model clusters at equal SLOs",
                            CLUSTER_TDP[0], spad_w / base_w, CLUSTER_TDP[1],
                            f"TDP per chip: H100 model {tdp['h100']:.0f} W, Prefill Chip {tdp['prefill']:.0f} W, Decode "
                            f"Chip {tdp['decode']:.0f} W (specs/data/chip_parts.yaml: the Prefill Chip's doubled "
                            f"arrays draw their energy at full clock); {shape}; {phase_split(g, tdp, 'TDP')}"))

    # (d) re-allocation: a fleet sized for one trace serves another, each chip running either phase
    realloc = []
    for sized, served in itertools.permutations(searched, 2):
        g_sized = goodputs[sized]
        fleet = {"prefill": 1.0 / g_sized[("prefill", "prefill")], "decode": 1.0 / g_sized[("decode", "decode")]}
        rate = reallocated_rate(fleet, goodputs[served])
        fleet_usd = tp * (fleet["prefill"] * usd["prefill"] + fleet["decode"] * usd["decode"])
        ratio = (fleet_usd / rate) / per_rps(served, "h100", "h100", usd) if rate > 0 else math.inf
        realloc.append((sized, served, rate, ratio))
    worst = max(realloc, key=lambda r: r[3])
    checks.append(Check("re-allocated fleet cost when the workload changes",
                        "a Prefill + Decode Chip fleet sized for one trace, its chips re-allocated to either phase for "
                        "another, still costs 11-43 % less than an H100-model cluster for the new trace (worst case)",
                        REALLOCATED_COST[0], worst[3], REALLOCATED_COST[1],
                        "; ".join(f"sized for {a}, serving {b}: {rate:.2f} req/s per 1 req/s of fleet, cost ratio "
                                  f"{ratio:.2f}" for a, b, rate, ratio in realloc)
                        + ("".join(f"; {name}: not in traces, searched for this check only (traces names one)"
                                   for name in searched if name not in setup["traces"]))))

    return Outcome(checks, figures=_figures(setup, prefill, decode_ratio, table, clusters),
                   tables=[_chips_table(table, chips, setup["precision"]), _goodput_table(goodputs, bindings),
                           _cluster_table(clusters)])


def _chips_table(table: dict[str, dict[str, Any]], chips: dict[str, str], precision: str) -> dict[str, Any]:
    rows = []
    paths = {role: tensor_path(info["hw"], precision) for role, info in table.items()}
    for role, info in table.items():
        hw, cost = info["hw"], info["cost"]
        rows.append([hw.key, f"{hw.peak(paths[role]) / 1e12:.0f}", f"{hw.memory_bandwidth_bytes_per_s / 1e9:.0f}",
                     f"{hw.memory_capacity_bytes / 2 ** 30:.0f}", hw.memory_type, f"{cost.die_area_mm2:.0f}",
                     f"{cost.die_yield:.2f}", f"{cost.die_usd:,.0f}", f"{cost.memory_usd:,.0f}",
                     f"{cost.package_usd:,.0f}", f"{cost.total_usd:,.0f}", f"{hw.tdp_w:.0f}"])
    return {"title": "Chips from their parts: derived peaks, die, cost and TDP",
            "columns": ["chip", f"{' / '.join(sorted(set(paths.values()))).upper()} TFLOP/s", "GB/s", "GiB", "memory",
                        "die mm2", "yield", "die $", "memory $", "package $", "chip $", "TDP W"], "rows": rows}


def _goodput_table(goodputs: dict, bindings: dict) -> dict[str, Any]:
    rows = [[trace, role, phase, f"{g:.2f}", bindings[trace][(role, phase)]]
            for trace, per in goodputs.items() for (role, phase), g in per.items()]
    return {"title": "Goodput of one TP instance per phase and chip (the other phase over-provisioned), req/s",
            "columns": ["trace", "chip", "phase", "goodput", "binds above it"], "rows": rows}


def _cluster_table(clusters: list) -> dict[str, Any]:
    rows = [[trace, f"{bu:,.0f}", f"{su:,.0f}", f"{su / bu:.2f}", f"{bw:,.0f}", f"{sw:,.0f}", f"{sw / bw:.2f}"]
            for trace, bu, bw, su, sw in clusters]
    return {"title": "Clusters sized for the same SLOs: hardware $ and TDP W per req/s served",
            "columns": ["trace", "H100 $", "SPAD $", "ratio", "H100 W", "SPAD W", "ratio"], "rows": rows}


def _figures(setup: dict[str, Any], prefill: dict, decode_ratio: dict, table: dict, clusters: list) -> list[Any]:
    import plotly.graph_objects as go

    lat = go.Figure()
    for role, label in (("h100", "H100 model"), ("prefill", "Prefill Chip")):
        lat.add_trace(go.Scatter(x=setup["prompts"], y=[s * 1e3 for s in prefill[role]["latency"]],
                                 mode="lines+markers", name=label))
        lat.add_trace(go.Scatter(x=setup["prompts"], y=[s * 1e3 for s in prefill[role]["roofline"]],
                                 mode="lines", line={"dash": "dot"}, name=f"{label}, pure roofline"))
    lat.update_layout(title=f"Prefill latency of {setup['model']} at TP{setup['tp']} (ms)",
                      xaxis={"type": "log", "title": "prompt tokens"}, yaxis={"type": "log", "title": "ms"})
    dec = go.Figure()
    for context in setup["decode_contexts"]:
        dec.add_trace(go.Scatter(x=setup["decode_batches"], y=[decode_ratio[(b, context)] for b in setup["decode_batches"]],
                                 mode="lines+markers", name=f"context {context}"))
    dec.update_layout(title="Decode Chip / H100 model decode throughput", xaxis={"title": "batch"},
                      yaxis={"title": "ratio"})
    parts = go.Figure()
    names = [info["hw"].key for info in table.values()]
    for label, attr in (("die", "die_usd"), ("memory", "memory_usd"), ("package", "package_usd")):
        parts.add_trace(go.Bar(x=names, y=[getattr(info["cost"], attr) for info in table.values()], name=label))
    parts.update_layout(title="Chip hardware cost by part ($)", barmode="stack")
    bars = go.Figure()
    traces = [c[0] for c in clusters]
    bars.add_trace(go.Bar(x=traces, y=[c[1] for c in clusters], name="H100-model cluster, $ per req/s"))
    bars.add_trace(go.Bar(x=traces, y=[c[3] for c in clusters], name="Prefill + Decode Chip cluster, $ per req/s"))
    bars.update_layout(title="Cluster hardware cost at equal SLOs ($ per req/s)", barmode="group")
    power = go.Figure()
    power.add_trace(go.Bar(x=traces, y=[c[2] for c in clusters], name="H100-model cluster, W per req/s"))
    power.add_trace(go.Bar(x=traces, y=[c[4] for c in clusters], name="Prefill + Decode Chip cluster, W per req/s"))
    power.update_layout(title="Cluster TDP at equal SLOs (W per req/s)", barmode="group")
    return [lat, dec, parts, bars, power]


SCENARIO = Scenario(
    name="spad", number=2,
    paper="Specialized Prefill and Decode Hardware for Disaggregated LLM Inference (SPAD)",
    claim="a GDDR7 Prefill Chip with larger arrays and an HBM Decode Chip with less compute, built from parts, cut "
          "prefill hardware cost and decode TDP, and cluster cost at equal SLOs, against a modeled H100",
    setup=SETUP, run_fn=run, validate=validate)
