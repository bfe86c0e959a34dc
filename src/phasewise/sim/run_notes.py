"""What a simulation's flags may not say but its workload and deployment do: notes `phasewise simulate` prints
beside its figures (prefix caching with no prefix hashes to share, a trace's limit and priority column, a router
with one instance to choose among, a --seed nothing draws from)."""

from __future__ import annotations

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment
from phasewise.sim.prefix_cache import migrates_kv
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_kv import prefix_caching_default
from phasewise.specs.engines import resolve_engine
from phasewise.workload import ClosedLoop, Workload


def prefix_notes(work: Workload | ClosedLoop, dep: Deployment) -> tuple[str, ...]:
    """A note where the deployment asks for what only prompts' prefix hashes feed (prefix caching turned on, a host KV
    tier, a KV store, prefix_aware routing) and the workload has none (generated lengths, a trace without hash_ids):
    no prompt shares a prefix with another, so they change nothing, as README says of such traces."""
    if getattr(work, "prefix_hashes", None) is not None:
        uncached = uncached_prompts(dep) if dep.router == "prefix_aware" else ""
        return (f"--router prefix_aware routes by the instances' prefix caches, and {uncached}: it routes as "
                "least_outstanding here (sim/routers/prefix_aware.py)",) if uncached else ()
    asked = [flag for flag, on in (
        ("--prefix-caching on (prefix_caching: true)", any(g.prefix_caching for g in dep.instances)),
        ("--host-kv-cache-gb (host_kv_cache_bytes)", any(g.host_kv_cache_bytes for g in dep.instances)),
        ("--kv-store-gb (kv_store_bytes)", dep.kv_store_bytes > 0),
        ("--router prefix_aware", dep.router == "prefix_aware")) if on]
    if not asked:
        return ()
    if isinstance(work, ClosedLoop) and work.warmup_requests and work.warmup_copies_prompt:  # sim/bench_clients.py
        return (f"{', '.join(asked)}: workload '{work.name}' shares one prefix only, its first prompt with the "
                f"client's {work.warmup_requests} warm-up cop{'y' if work.warmup_requests == 1 else 'ies'} of it; "
                "its other prompts share none",)
    return (f"{', '.join(asked)}: workload '{work.name}' has no prefix hashes (a trace with hash_ids, as Mooncake's, "
            f"gives them), so no prompt shares a prefix and {'it changes' if len(asked) == 1 else 'they change'} "
            "nothing here",)


def uncached_prompts(dep: Deployment) -> str:
    """Why some instance that admits prompts keeps no prefix cache, as attach_prefix_caches decides it (its
    group's prefix_caching, else its engine's default for the model; none with priority pools or attention offload,
    nor for a sliding-window model), "" where each keeps one. A group simulate will refuse is left to it ("")."""
    if migrates_kv(dep):
        return "no instance caches prefixes with priority pools or attention offload"
    for g in dep.instances:
        if g.role == "decode" or g.prefix_caching:
            continue
        if g.prefix_caching is False:
            return "--prefix-caching off (prefix_caching: false) turns their caching off"
        try:
            model = load_model(g.model or dep.model)
            if model.window_all_layers:
                return f"prefix caching of {model.name} (sliding-window attention on every layer) is not modelled"
            config = resolve_engine(g.engine, load_hardware(g.hardware), g.knobs, g.entry_point, g.pp, role=g.role,
                                    model_type=model.model_type)
        except PhasewiseError:
            continue
        if not prefix_caching_default(config, model):
            return (f"prefix caching is off on {config.label} by default for {model.name} (--prefix-caching on "
                    "turns it on)")
    return ""


def trace_notes(trace: str, trace_limit: int | None, work: Workload, dep: Deployment) -> tuple[str, ...]:
    """What a trace run does that its flags may not say: a --trace-limit past the trace's requests (all of them
    run), and a priority column no part of the deployment reads (only priority pools' class_slo_ms do:
    sim/priority_pools.py PoolController.slo_s)."""
    notes: tuple[str, ...] = ()
    if trace_limit is not None and len(work) < trace_limit:
        notes += (f"--trace-limit {trace_limit:,}: trace '{trace}' holds {len(work):,} requests, all of them "
                  "replayed",)
    if work.priority is not None and not (dep.priority_pools is not None and dep.priority_pools.class_slo_ms):
        notes += (f"trace '{trace}': its priority column is ignored: only priority pools with per-class SLOs read "
                  "it (a --deployment file's priority_pools block with class_slo_ms); every request here is served "
                  "alike",)
    return notes


def routed_instances(dep: Deployment) -> tuple[int, int]:
    """(instances the router chooses a new request's among, decode instances it chooses a KV transfer's among), at
    the most replicas each group runs (an autoscaled group's `replicas`): the collocated or prefill ones, a priority
    pool's low-priority ones only (the high-priority pool takes migrated requests), and the decode ones, as
    sim/cluster.py Cluster.wire gives its two routers. One instance is every choice's (routers/base.py pick)."""
    front = sum(g.replicas for g in dep.instances if g.role in ("collocated", "prefill") and g.pool != "hp")
    return front, sum(g.replicas for g in dep.instances if g.role == "decode")


def router_notes(dep: Deployment) -> tuple[str, ...]:
    """A note where the router settings given change nothing, for want of two instances to choose among
    (routed_instances): the router itself (but a dynamo_kv router queue, which holds requests before even one
    instance) where every choice has one instance; router dynamo_kv's overlap weight and KV-event settings, which
    weigh only its choice among the instances that take new requests (its decode choice reads their decode blocks
    alone: routers/dynamo_kv.py choose), where that choice has one; its temperature where no choice has two."""
    front, back = routed_instances(dep)
    if front > 1 and back > 1:
        return ()
    queue = dep.router == "dynamo_kv" and dep.router_queue_threshold is not None
    idle = [f"{dep.field_label('router')} {dep.router}"] if (
        front <= 1 and back <= 1 and dep.router != "least_outstanding" and not queue) else []
    for name in ("kv_overlap_score_weight", "router_kv_events", "router_ttl_s", "router_temperature"):
        value = getattr(dep, name)
        if value is None or front > 1 or (name == "router_temperature" and back > 1):
            continue
        label = dep.field_label(name)
        idle.append("--no-router-kv-events" if label == "--router-kv-events" and value is False else label)
    if not idle:
        return ()
    if dep.disaggregated:
        why = "one prefill instance takes every request" + (
            " and one decode instance every KV transfer" if back <= 1 else
            f" (the router's choice among the {back} decode instances weighs their decode blocks alone)")
    elif dep.priority_pools is not None:
        why = "one low-priority instance takes every new request (the high-priority pool takes migrated ones)"
    else:
        why = "one instance takes every request"
    return (f"{', '.join(idle)}: {why}, so the router has no choice to make and "
            f"{'it changes' if len(idle) == 1 else 'they change'} nothing here",)


def seed_notes(seed: int, work: Workload | ClosedLoop, traced: bool, dep: Deployment) -> tuple[str, ...]:
    """A note where --seed is given (not 0) and nothing in the run draws: a trace's (`traced`) arrivals and lengths
    are its own, a closed loop's fixed lengths draw nothing (LengthDist.sample), and no router draws (random, or
    dynamo_kv at a temperature above 0, with two instances or more to draw among: routers/__init__.py make_router).
    Open-loop arrivals are always drawn."""
    if seed == 0 or not (traced or isinstance(work, ClosedLoop)):
        return ()
    if isinstance(work, ClosedLoop) and any(dist.kind == "empirical" or (dist.kind != "fixed" and dist.spread > 0)
                                            for dist in (work.prompt, work.output)):
        return ()
    drawing = dep.router == "random" or (dep.router == "dynamo_kv" and (dep.router_temperature or 0) > 0)
    if drawing and max(routed_instances(dep)) > 1:
        return ()
    what = "the trace gives every arrival and length" if traced else "the closed loop's lengths are fixed"
    return (f"--seed {seed}: nothing in this run draws ({what}, and no router draws: only --router random, or "
            "dynamo_kv with --router-temperature above 0, among two instances or more), so it changes nothing here",)
