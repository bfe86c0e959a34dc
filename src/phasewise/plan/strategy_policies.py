"""Strategies derived from the enumerated ones by a serving policy: disaggregated vision encoders beside each unit
(--policies encoders), each strategy behind each of several routers (--router a,b), and Ascendra's priority pools
over collocated replicas (--policies priority-pools)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from phasewise.plan.options import PlanOptions, Strategy, deployment_fields
from phasewise.sim.metrics import Slo

POOL_UNIT = 4  # instances per priority-pool unit: 3 LP + 1 HP, as Ascendra-1 runs (PAPERS.md section 6)
ENCODER_SHARES = (1, 2, 4, 8)  # encoders policy: base units per encode GPU tried


def with_encoders(s: Strategy, gpus: int, hardware: str) -> list[Strategy]:
    """`s` with one encode GPU (TP1 on the plan's chip) beside every 1, 2, 4 or 8 of its units, as many such
    units as the budget then holds (none for priority pools and attention offload, which keep their own units)."""
    if "priority_pools" in s.unit or s.unit.get("attention_offload"):  # (an empty priority_pools block too)
        return []
    per_unit = s.gpus // s.units
    counts = {g["role"]: g.get("replicas", 1) for g in s.unit["instances"]}
    out = []
    for share in ENCODER_SHARES:
        units = gpus // (share * per_unit + 1)
        if units < 1:
            break
        grouped = dict(s.unit, instances=[dict(g, replicas=g.get("replicas", 1) * share) for g in s.unit["instances"]],
                       encoders={"hardware": hardware, "tp": 1, "replicas": 1})
        unit = Strategy(s.name, s.deployment, grouped, 1, share * per_unit + 1, s.kind, s.details)
        if s.kind == "disaggregated":
            name = re.sub(r"^\d+P", f"{counts['prefill'] * share * units}P", s.name)
            name = re.sub(r" \d+D\(", f" {counts['decode'] * share * units}D(", name)
            details = dict(s.details, prefill=counts["prefill"] * share * units,
                           decode=counts["decode"] * share * units)
        else:
            name = re.sub(r"^\d+x", f"{share * units}x", s.name)
            details = dict(s.details, replicas=share * units)
        out.append(Strategy(f"{name} +{units}E", unit.slice(units), grouped, units, units * (share * per_unit + 1),
                            s.kind, dict(details, encode_workers=units)))
    return out


def behind_each_router(strategies: list[Strategy], routers: tuple[str, ...]) -> list[Strategy]:
    """With several --router values, each strategy of more than one instance behind each of them (named with it);
    a lone instance, which has nothing to route, and priority pools, which route by their own rule, behind the
    first."""
    if len(routers) == 1:
        return strategies
    out = []
    for s in strategies:
        several = (sum(g.get("replicas", 1) for g in s.deployment["instances"]) > 1
                   and "priority_pools" not in s.deployment)
        for router in routers if several else routers[:1]:
            out.append(replace(s, name=f"{s.name} via {router}" if several else s.name,
                               deployment=dict(s.deployment, router=router), unit=dict(s.unit, router=router),
                               details=dict(s.details, router=router)))
    return out


def priority_pools(model: str, base: dict[str, Any], tp: int, pp: int, replicas: int, cap: int, tag: str,
                   opts: PlanOptions, spec: dict | None) -> Strategy | None:
    """Ascendra's priority pools over the collocated replicas: units of POOL_UNIT instances (fewer if the budget
    has fewer), one of each high-priority (`ascendra-hp`) and the rest low-priority (`ascendra-lp`, shortest
    prefill first, capped at `cap` sequences); deadlines come from the plan's SLOs, which with_planned_slos writes
    into its priority_pools block. None where they do not apply."""
    if pp != 1 or spec is not None or replicas < 2 or opts.mapping:
        return None
    size = min(POOL_UNIT, replicas)
    units = replicas // size
    fields = {k: v for k, v in base.items() if k != "engine"}
    lp = dict(fields, role="collocated", tp=tp, pool="lp", engine="ascendra-lp", max_num_seqs=cap)
    hp = dict(fields, role="collocated", tp=tp, pool="hp", engine="ascendra-hp")

    def deployment(n: int) -> dict[str, Any]:
        dep = deployment_fields(model, [dict(lp, replicas=(size - 1) * n), dict(hp, replicas=n)], opts, None,
                                host_tier=False)
        return {**dep, "priority_pools": {}}

    name = f"{units * size}x TP{tp} priority pools {(size - 1) * units}LP+{units}HP b{cap} {tag}"
    return Strategy(name, deployment(units), deployment(1), units, units * size * tp, "collocated",
                    dict(tp=tp, pp=pp, replicas=units * size, scheduler="priority pools", batch_cap=cap,
                         precision=base["precision"], speculative=False))


def pool_slos(slo: Slo) -> dict[str, float]:
    """The priority_pools block's SLO fields (deployment_blocks.py PriorityPools slo_ttft_ms / slo_tpot_ms) of the SLOs
    `slo`, those it sets (an unset one is infinite: no field)."""
    return {name: value for name, value in (("slo_ttft_ms", slo.ttft_ms), ("slo_tpot_ms", slo.tpot_ms))
            if math.isfinite(value)}


def with_planned_slos(strategies: list[Strategy], slo: Slo) -> list[Strategy]:
    """`strategies`, each priority-pools one with the SLOs it is planned under in its priority_pools block
    (pool_slos): its pools' controller sets its deadlines by them in the plan's runs as in `simulate --deployment` of
    its exported deployment.yaml, which then runs unchanged, without --slo-* flags (its SLOs were a run's, not the
    file's, before). Other strategies as they are."""
    fields = pool_slos(slo)

    def planned(dep: dict[str, Any]) -> dict[str, Any]:
        return {**dep, "priority_pools": {**dep["priority_pools"], **fields}}

    return [replace(s, deployment=planned(s.deployment), unit=planned(s.unit)) if "priority_pools" in s.deployment
            else s for s in strategies]
