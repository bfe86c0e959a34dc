"""Hardware cost, TDP and hourly price of a deployment's cluster: every instance group's chips, each at its chip's
cost (specs/chip_cost.py, chips built from parts), TDP and $/GPU-hour (any chip). What `plan --objective
cost|power|goodput-per-dollar` divides goodput by: ranking by goodput per dollar (per watt) of hardware is ranking
by the cheapest (lowest-TDP) cluster that serves a given request rate within the SLOs, as the strategy's units
scale with the rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phasewise.specs import load_hardware
from phasewise.specs.chip_cost import hardware_cost_usd


@dataclass(frozen=True, slots=True)
class ClusterHardware:
    chips: dict[str, int]  # hardware key -> chips
    cost_usd: float
    tdp_w: float
    price_per_hour_usd: float  # renting them: every chip at its catalog $/GPU-hour


def cluster_hardware(deployment: dict[str, Any], with_cost: bool = True) -> ClusterHardware:
    """Chips, hardware cost (when `with_cost`: every chip must be built from parts), TDP and hourly price of a
    deployment given as its fields (as Strategy.deployment)."""
    chips: dict[str, int] = {}
    encoders = [deployment["encoders"]] if deployment.get("encoders") else []  # disaggregated encoders' GPUs too
    for group in [*deployment["instances"], *encoders]:
        count = int(group.get("tp", 1)) * int(group.get("pp", 1)) * int(group.get("replicas", 1))
        name = group.get("hardware", "h100-sxm")
        chips[name] = chips.get(name, 0) + count
    cost = tdp = price = 0.0
    for name, count in chips.items():
        hw = load_hardware(name)
        # a price or TDP the catalog does not know leaves the cluster's unknown, not partial (NaN: HardwareSpec)
        tdp += hw.known_tdp_w * count
        price += hw.gpu_hour_usd * count
        if with_cost:
            cost += hardware_cost_usd(hw) * count
    return ClusterHardware(chips, cost, tdp, price)
