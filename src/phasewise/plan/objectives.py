"""What a plan ranks strategies by (OBJECTIVES): goodput per GPU, per dollar, per watt, per $1,000 of hardware or
per kW of TDP; each one's unit, its divisor known before any simulation, a result's score, and the one-line errors
for chips without the price or TDP an objective needs."""

from __future__ import annotations

import math

from phasewise.errors import PhasewiseError
from phasewise.plan.cluster_cost import cluster_hardware
from phasewise.plan.goodput_results import GoodputResult
from phasewise.plan.strategies import PlanOptions, Strategy
from phasewise.specs import load_hardware
from phasewise.specs.hardware import hardware_list, parts_chips

# goodput per GPU, per dollar of GPU time (req/$), per joule of simulated power (req/J); cost / power: goodput per
# $1,000 of cluster hardware (chips from parts) / per kW of cluster TDP (plan/cluster_cost.py)
OBJECTIVES = ("goodput-per-gpu", "goodput-per-dollar", "goodput-per-watt", "cost", "power")
# the objective's unit, for table headers and JSON (objective_value below)
OBJECTIVE_UNITS = {"goodput-per-gpu": "req/s/GPU", "goodput-per-dollar": "req/$", "goodput-per-watt": "req/J",
                   "cost": "req/s per $1k", "power": "req/s per kW"}


def objective_per(objective: str, strategy: Strategy) -> float:
    """What `objective` divides a strategy's goodput (req/s) by, known before any simulation: its GPUs, its GPU time's
    price in $/s, $1,000 of its cluster hardware, kW of its cluster TDP (goodput-per-watt too: objective_value
    then divides by the simulated power, which the TDP bounds)."""
    if objective == "goodput-per-gpu":
        return strategy.gpus
    cluster = cluster_hardware(strategy.deployment, with_cost=objective == "cost")
    if objective == "cost":
        return cluster.cost_usd / 1e3
    if objective == "goodput-per-dollar":  # every group's chips at their price
        return cluster.price_per_hour_usd / 3600
    return cluster.tdp_w / 1e3


def objective_value(objective: str, r: GoodputResult) -> float:
    """The strategy's score: goodput per GPU, per dollar of GPU time (req/$), per $1,000 of hardware, per kW of
    TDP, or per watt of the simulated power (req/J)."""
    if objective == "goodput-per-watt":
        power = r.power_w()
        return r.goodput_rps / power if power > 0 else 0.0  # requests per joule of the whole deployment
    per = objective_per(objective, r.strategy)
    return r.goodput_rps / per if per > 0 else math.nan


def require_prices(objective: str, hardware: str, opts: PlanOptions) -> None:
    """--objective cost prices every chip from its parts, goodput-per-dollar by its rental price, goodput-per-watt
    and power by its TDP: a one-line error naming the flag that brought in a chip without them (collocated
    strategies run on --hardware even when --prefill-hardware / --decode-hardware name the disaggregated ones'
    chips)."""
    for flag, chips in (("--hardware", hardware_list("--hardware", hardware)),
                        ("--prefill-hardware", list(opts.prefill_hardware)),
                        ("--decode-hardware", list(opts.decode_hardware))):
        for chip in chips:
            hw = load_hardware(chip)
            default = " (h100-sxm is --hardware's default)" if flag == "--hardware" and chip == "h100-sxm" else ""
            if objective == "cost" and hw.parts is None:
                raise PhasewiseError(
                    f"--objective cost prices chips from their parts, and {flag} names '{chip}', which has none"
                    f"{default}: give {flag} chips built from parts (catalog: {', '.join(parts_chips())}, or your "
                    "own YAML with `parts:`), or rank catalog chips by --objective goodput-per-dollar or power")
            if objective in ("goodput-per-watt", "power") and not hw.tdp_w > 0:
                raise PhasewiseError(
                    f"--objective {objective} weighs strategies by their chips' power, and {flag} names '{chip}', "
                    f"whose tdp_w is {hw.tdp_w:g}: give it a TDP in a hardware YAML (W > 0), or rank by another "
                    "--objective")
            if objective == "goodput-per-dollar" and not hw.price_per_hour_usd > 0:
                raise PhasewiseError(
                    f"--objective goodput-per-dollar divides by the chips' rental prices, and {flag} names '{chip}', "
                    "which has none (price_per_hour_usd 0): give it one in a hardware YAML, or rank by "
                    "--objective " + " or ".join(["goodput-per-gpu"] + (["power"] if hw.tdp_w > 0 else [])
                                                 + (["cost"] if hw.parts is not None else [])))
