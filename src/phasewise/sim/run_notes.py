"""What a simulation's flags may not say but its workload and deployment do: notes `phasewise simulate` prints
beside its figures (prefix caching with no prefix hashes to share, a trace's limit and priority column)."""

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
