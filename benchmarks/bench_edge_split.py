"""How close `edge --split auto`'s descent (plan/edge_split.py) comes to the best split, and at what cost: for each
model, device chain and link speed, the planned split and S against every contiguous split at every S tried
(exhaustive), in simulated TTFT, simulations run and wall time.

    python benchmarks/bench_edge_split.py [--models LiquidAI/LFM2-1.2B,...] [--sub-sequences 1,2,4,8]
                                          [--prompt 640] [--max-shift 3]

`--max-shift 1` runs the descent with one-layer moves only (as before layer patterns made a stage's cost depend on
its range); the start from the previous S's best split and the moves past a neighbour stay. Exits 1 if a plan is
more than 1 % above the exhaustive best.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_args import at_least, counts, known, refusing  # noqa: E402 - the scripts' shared flag checks

CHAINS = {
    "3 x agx-orin": ["jetson-agx-orin"] * 3,
    "orin, a6000, orin": ["jetson-agx-orin", "a6000", "jetson-agx-orin"],
    "4 x agx-orin": ["jetson-agx-orin"] * 4,
}
MODELS = "LiquidAI/LFM2-1.2B,openai/gpt-oss-20b,lmsys/vicuna-7b-v1.3,google/gemma-3-27b-it"


def exhaustive(split_model, layers: int, stages: int, prompt: int, subs: list[int]):
    """(TTFT, split, S, simulations) of the best contiguous split at any S in `subs` that fits."""
    from phasewise.sim.split_pipeline import run_split, sub_sequence_lengths

    best, runs = (float("inf"), None, None), 0
    for cuts in itertools.combinations(range(1, layers), stages - 1):
        split = [b - a for a, b in zip((0, *cuts), (*cuts, layers))]
        sm = split_model.resplit(split)
        for sub in subs:
            if not sm.fits(prompt, sub_sequence_lengths(prompt, sub)[0], 1):
                continue
            ttft = run_split(sm, prompt, 0, sub).ttft_s
            runs += 1
            if ttft < best[0]:
                best = (ttft, split, sub)
    return (*best, runs)


def main() -> int:
    import phasewise.plan.edge_split as edge_split
    from phasewise.sim.split_model import SplitModel
    from phasewise.specs import load_engine, load_hardware, load_model, load_quant
    from phasewise.specs.topology import chain_topology

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS, help="comma-separated catalog models")
    ap.add_argument("--sub-sequences", type=counts, default="1,2,4,8")
    ap.add_argument("--prompt", type=at_least(1), default=640)
    ap.add_argument("--max-shift", type=at_least(1), default=edge_split.MAX_SHIFT)
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        ap.error("--models: give one or more catalog models, comma-separated")
    known(ap, "--models", models, load_model)
    edge_split.MAX_SHIFT = args.max_shift
    subs = args.sub_sequences
    quant, engine = load_quant("bf16"), load_engine("ideal")
    worst = 0.0
    for name in models:
        model = load_model(name)
        for chain, devices in CHAINS.items():
            if len(devices) == 4 and model.num_layers > 24:  # C(n-1, 3) splits: exhaustive gets slow
                continue
            hardware = [load_hardware(d) for d in devices]
            for mbps in (100.0, 1000.0):
                topo = chain_topology(devices, mbps, 0.001)
                t0 = time.perf_counter()
                try:
                    plan = edge_split.plan_edge_split(model, quant, engine, topo, hardware, args.prompt, 0,
                                                      sub_sequence_options=subs)
                except Exception as exc:  # noqa: BLE001 - a split that fits nowhere is a row, not a stop
                    print(f"{name:40s} {chain:18s} {mbps:6g} Mbit/s  {exc}")
                    continue
                plan_s = time.perf_counter() - t0
                n, stages = model.num_layers, len(devices)
                probe = SplitModel(model, quant, engine, topo, hardware, [1] * (stages - 1) + [n - stages + 1])
                t0 = time.perf_counter()
                best, split, sub, runs = exhaustive(probe, n, stages, args.prompt, subs)
                gap = plan.best_s / best - 1
                worst = max(worst, gap)
                print(f"{name:40s} {chain:18s} {mbps:6g} Mbit/s  plan {plan.best_s * 1e3:8.2f} ms "
                      f"{list(plan.split)} S={plan.sub_sequences} ({plan.evaluated} sims, {plan_s:.2f} s)  "
                      f"best {best * 1e3:8.2f} ms {split} S={sub} ({runs} sims, {time.perf_counter() - t0:.1f} s)  "
                      f"gap {100 * gap:.2f} %", flush=True)
    print(f"worst gap {100 * worst:.2f} %")
    return 1 if worst > 0.01 else 0


if __name__ == "__main__":
    sys.exit(refusing(main))
