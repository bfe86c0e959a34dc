"""The Python API behind `phasewise simulate`: the same arguments as the CLI flags.

    from phasewise.sim.api import build, run
    result = run(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", rate=8, requests=2000,
                 isl=1024, osl=256, slo_ttft_ms=1000, slo_tpot_ms=50)
    result.summary()["goodput"]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from phasewise.errors import PhasewiseError, refuse_empty
from phasewise.sim.attention_offload import offload_block
from phasewise.sim.deployment import DYNAMO_ROUTER_FIELDS, Deployment, InstanceGroup, build_deployment, load_deployment
from phasewise.sim.flag_checks import (
    autoscale_flags,
    check_argument_types,
    disagg_kv_link,
    encoder_flags,
    host_kv_cache_bytes,
    moe_layout_flags,
    priority_pool_flags,
    role_flags,
)
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.online_training import TRAINING_FLAGS, training_block
from phasewise.sim.prefix_cache import migrates_kv
from phasewise.sim.priority_pools import headline_slo
from phasewise.sim.run_notes import prefix_notes, router_notes, seed_notes, trace_notes
from phasewise.sim.simulate import simulate
from phasewise.specs.engines import KNOB_TYPES
from phasewise.specs.hardware import chip_caveats
from phasewise.workload import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    ClosedLoop,
    ImageInputs,
    LengthDist,
    Workload,
    check_arrival_span,
    check_length_flags,
    client_workload,
    image_inputs,
    load_client,
    load_trace,
    open_loop,
)


@dataclass(slots=True)
class SimSpec:
    """Everything one simulation needs, as the CLI takes it."""

    deployment: Deployment
    workload: Workload | ClosedLoop
    slo: Slo
    images: ImageInputs | None = None  # the images requests carry (workload/images.py)
    notes: tuple[str, ...] = ()  # what the flags did not say but the deployment does (its link_notes), to print
    seed: int = 0  # --seed: the lengths' and arrivals' draws (in the workload) and the routers' that draw


def deployment_from_flags(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1,
                          pp: int = 1, precision: str | None = None, kv_dtype: str | None = None, engine: str = "vllm",
                          entry_point: str = "server", replicas: int | None = None, arch: str = "collocated",
                          prefill_workers: int | None = None, prefill_tp: int | None = None,
                          decode_workers: int | None = None, decode_tp: int | None = None,
                          kv_link: str | None = None, deployment: str | None = None,
                          router: str = "least_outstanding", kv_overlap_score_weight: float | None = None,
                          router_temperature: float | None = None, router_queue_threshold: float | None = None,
                          router_kv_events: bool | None = None, router_ttl_s: float | None = None,
                          memory_fraction: float | None = None, spec_tokens: int = 0,
                          spec_acceptance: float | None = None, spec_draft: str | None = None,
                          scheduler: str | None = None,
                          hp_instances: int | None = None, lp_engine: str = "ascendra-lp",
                          hp_engine: str = "ascendra-hp", slack_margin_ms: float = 300.0, migration: str = "auto",
                          attention_offload: str = "off", attention_offload_sm_share: float | None = None,
                          prefill_hardware: str | None = None, decode_hardware: str | None = None,
                          mapping: str | None = None, online_training: str = "off",
                          train_reuse_mode: str | None = None, feedback_share: float | None = None,
                          train_batch_tokens: int | None = None, gpu_sharing: str | None = None,
                          trainer_sm_share: float | None = None, lora_rank: int | None = None,
                          keep_layers: int | None = None, host_link: str | None = None, ep: int | None = None,
                          moe_tp: int | None = None,
                          attention_dp: int | None = None, prefill_ep: int | None = None,
                          decode_ep: int | None = None, prefill_attention_dp: int | None = None,
                          decode_attention_dp: int | None = None, moe_imbalance: float | None = None,
                          routing_skew: float | None = None, prefix_caching: str | None = None,
                          host_kv_cache_gb: float | None = None, kv_store_gb: float | None = None,
                          encode_workers: int | None = None,
                          encode_tp: int | None = None,
                          encode_hardware: str | None = None, encode_link: str | None = None,
                          autoscale_min: int | None = None, autoscale_metric: str | None = None,
                          autoscale_target: float | None = None, autoscale_startup_s: float | None = None,
                          autoscaler: str | None = None, **knobs) -> Deployment:
    """A Deployment from the CLI's deployment flags, or from --deployment FILE (then no other deployment
    flag may be given: the file is the whole deployment). `knobs` are engine knobs by their engines'
    names (max_num_seqs, max_num_batched_tokens, chunked_prefill_size, max_num_tokens, ...).
    `scheduler='ascendra'`: priority pools (Ascendra) over the `replicas` instances, `hp_instances` of them
    (default 1) high-priority with `hp_engine`, the rest low-priority with `lp_engine` (engine knobs apply
    to the low-priority instances); see sim/priority_pools.py.
    `prefill_hardware` / `decode_hardware` (disagg): the chips of the prefill / decode instances (default `hardware`).
    `mapping`: every instance group's operator mapping onto its chip's substrates (perf/mapped_cost.py).
    `online_training` full|lora (and train_reuse_mode, feedback_share, ...): a colocated trainer on every collocated
    instance (sim/online_training.py).
    `ep`, `moe_tp`, `attention_dp` (and per role `prefill_ep`, `decode_ep`, `prefill_attention_dp`,
    `decode_attention_dp`): how each instance's tp GPUs split the MoE experts and attention (perf/parallel.py).
    `routing_skew`: the traffic's MoE routing skew in place of the model's (perf/expert_load.py).
    `encode_workers` (and `encode_tp`, `encode_hardware`, `encode_link`): disaggregated vision encoders
    (sim/encode_pool.py).
    `autoscale_min` (and `autoscale_metric`, `autoscale_target`, `autoscale_startup_s`, `autoscaler` hpa|kpa): an
    autoscaler over the collocated replicas, `replicas` the most it runs (sim/autoscaler.py)."""
    unknown = sorted(set(knobs) - set(KNOB_TYPES))
    if unknown:
        raise PhasewiseError(f"unknown engine knob '{unknown[0]}' (known: {', '.join(KNOB_TYPES)})")
    refuse_empty(locals())
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if deployment is not None:
        given = dict(locals())
        defaults = {n: p.default for n, p in inspect.signature(deployment_from_flags).parameters.items()
                    if p.default is not inspect.Parameter.empty and n != "deployment"}
        refuse_beside_deployment([n for n, d in defaults.items() if given[n] != d] + list(knobs))
        return load_deployment(deployment)
    asked_kv_link = kv_link
    replicas, prefill_workers, decode_workers, kv_link = role_flags(arch, scheduler, replicas, prefill_workers,
                                                                    decode_workers, prefill_tp, decode_tp, kv_link)
    common = dict(hardware=hardware, pp=pp, kv_dtype=kv_dtype, engine=engine, entry_point=entry_point,
                  memory_fraction=memory_fraction, **knobs)
    if precision is not None:  # else each group takes its model's native format (InstanceGroup.precision)
        common["precision"] = precision
    if mapping is not None:
        common["mapping"] = mapping
    if routing_skew is not None:  # the traffic's routing skew, for every group (perf/expert_load.py)
        common["routing_skew"] = routing_skew
    if prefix_caching is not None:  # on|off; unset: each engine's default (sim/prefix_cache.py)
        if prefix_caching not in ("on", "off"):
            raise PhasewiseError(f"--prefix-caching '{prefix_caching}' is not one of on, off")
        common["prefix_caching"] = prefix_caching == "on"
    if host_kv_cache_gb is not None:  # host memory for evicted prefix blocks (sim/prefix_cache.py HostTier)
        common["host_kv_cache_bytes"] = host_kv_cache_bytes("--host-kv-cache-gb", host_kv_cache_gb)
    # router dynamo_kv's settings (sim/routers/dynamo_kv.py)
    dynamo = {name: value for name, value in (("kv_overlap_score_weight", kv_overlap_score_weight),
                                              ("router_temperature", router_temperature),
                                              ("router_queue_threshold", router_queue_threshold),
                                              ("router_kv_events", router_kv_events),
                                              ("router_ttl_s", router_ttl_s)) if value is not None}
    if dynamo and router != "dynamo_kv":
        name = next(iter(dynamo))
        flag = "no-router-kv-events" if dynamo.get(name) is False else name.replace("_", "-")
        raise PhasewiseError(f"--{flag} {DYNAMO_ROUTER_FIELDS[name].replace('router', '--router', 1)}"
                             f"; the router here is {router}")
    if router_ttl_s is not None and router_kv_events is not False:
        raise PhasewiseError("--router-ttl-s keeps a block in --router dynamo_kv's approximate index, which it uses "
                             "only without KV events: add --no-router-kv-events")
    refuse_hardware_beside_role_hardware(arch, hardware, prefill_hardware, decode_hardware,
                                         encode_workers is not None and encode_hardware is None)
    encoders = encoder_flags(encode_workers, encode_tp, encode_hardware, encode_link, hardware,
                             (prefill_hardware or hardware) if arch == "disagg" else hardware)
    encoders.update(autoscale_flags(autoscale_min, autoscale_metric, autoscale_target, autoscale_startup_s,
                                    autoscaler, replicas if arch == "collocated" and scheduler is None else None))
    pools = priority_pool_flags(scheduler, hp_instances, lp_engine, hp_engine, slack_margin_ms, migration, arch,
                                engine, replicas)
    training = training_block(online_training, train_reuse_mode, feedback_share, train_batch_tokens, gpu_sharing,
                              trainer_sm_share, lora_rank, keep_layers, arch == "collocated", host_link, pp,
                              mapping is not None)
    if training is not None and pools is not None:
        raise PhasewiseError("--online-training does not combine with --scheduler ascendra")
    # every check below applies to priority pools as to a plain deployment: the pools are collocated instances
    if arch != "disagg" and (prefill_hardware or decode_hardware):
        raise PhasewiseError("--prefill-hardware / --decode-hardware need --arch disagg")
    layouts = moe_layout_flags(arch, ep, moe_tp, attention_dp, prefill_ep, decode_ep, prefill_attention_dp,
                               decode_attention_dp, moe_imbalance)
    blocks: dict = {}
    if pools is not None:  # the LP instances take the engine knobs, the HP ones their engine's own settings
        common.pop("engine")
        lp_count, blocks["priority_pools"] = pools
        hp = {k: v for k, v in common.items() if k not in knobs}
        groups = [dict(role="collocated", pool="lp", tp=tp, replicas=lp_count, engine=lp_engine, **common,
                       **layouts["collocated"]),
                  dict(role="collocated", pool="hp", tp=tp, replicas=replicas - lp_count, engine=hp_engine, **hp,
                       **layouts["collocated"])]
    elif arch == "collocated":
        groups = [dict(role="collocated", tp=tp, replicas=replicas, **common, **layouts["collocated"])]
    elif arch == "disagg":
        if decode_workers < 1:
            raise PhasewiseError("--decode-workers must be >= 1 with --arch disagg")
        if prefill_workers < 1:
            raise PhasewiseError("--prefill-workers must be >= 1 with --arch disagg")
        if prefill_tp is not None and decode_tp is not None and tp != 1:
            raise PhasewiseError(TP_BESIDE_ROLE_TPS.format(tp=f" {tp}"))
        groups = [dict(role="prefill", tp=tp if prefill_tp is None else prefill_tp, replicas=prefill_workers,
                       **dict(common, hardware=prefill_hardware or hardware), **layouts["prefill"]),
                  dict(role="decode", tp=tp if decode_tp is None else decode_tp, replicas=decode_workers,
                       **dict(common, hardware=decode_hardware or hardware), **layouts["decode"])]
        kv_link = disagg_kv_link(asked_kv_link, groups)
    else:
        raise PhasewiseError(f"--arch '{arch}' is not one of collocated, disagg")
    data = {"model": model, "instances": groups, "router": router, **blocks, **encoders, **dynamo}
    if kv_link is not None:  # None: a disaggregated deployment's unset link, its own rule's (disagg_kv_link)
        data["kv_link"] = kv_link
    if kv_store_gb is not None:  # a KV store the instances share (sim/kv_tiers.py kv_store)
        data["kv_store_bytes"] = host_kv_cache_bytes("--kv-store-gb", kv_store_gb)
    if spec_tokens:  # unset acceptance and draft: the Speculative block's defaults (sim/deployment.py)
        data["speculative"] = {"draft_tokens": spec_tokens, **({"acceptance": spec_acceptance}
                                                               if spec_acceptance is not None else {}),
                               **({"draft": spec_draft} if spec_draft is not None else {})}
    elif spec_acceptance is not None or spec_draft is not None:
        flag = "--spec-acceptance" if spec_acceptance is not None else "--spec-draft"
        raise PhasewiseError(f"{flag} needs --spec-tokens N (speculative decoding is off without draft tokens)")
    offload = offload_block(attention_offload, attention_offload_sm_share, arch == "disagg")
    if offload is not None:
        data["attention_offload"] = offload
    if training is not None:
        data["online_training"] = training
    return build_deployment(data, "deployment flags", flag_of(groups))


# the flags that set a field of one role's (or priority pool's) instance groups, where the field's own name is not one
ROLE_FLAGS = {("prefill", "replicas"): "--prefill-workers", ("decode", "replicas"): "--decode-workers",
              ("hp", "replicas"): "--hp-instances", ("lp", "replicas"): "--replicas (less --hp-instances)"}
SPECULATIVE_FLAGS = {"draft_tokens": "--spec-tokens", "acceptance": "--spec-acceptance", "draft": "--spec-draft"}
AUTOSCALE_FLAGS = {"min_replicas": "--autoscale-min", "metric": "--autoscale-metric", "target": "--autoscale-target",
                   "startup_s": "--autoscale-startup-s", "autoscaler": "--autoscaler"}
ENCODER_FLAGS = {"replicas": "--encode-workers", "tp": "--encode-tp", "hardware": "--encode-hardware",
                 "link": "--encode-link"}
POOL_FLAGS = {"slack_margin_ms": "--slack-margin-ms", "migration": "--migration"}
OFFLOAD_FLAGS = {"mode": "--attention-offload", "requests": "--attention-offload",
                 "sm_share": "--attention-offload-sm-share"}
# the deployment's blocks that flags set field by field: each field's flag (FlagOf names a refused field by it; a
# flag's place in a deployment file, yaml_path, is its field's)
BLOCK_FLAGS = {"speculative": SPECULATIVE_FLAGS, "online_training": TRAINING_FLAGS, "autoscale": AUTOSCALE_FLAGS,
               "encoders": ENCODER_FLAGS, "priority_pools": POOL_FLAGS, "attention_offload": OFFLOAD_FLAGS}


def flag_of(groups: list[dict]) -> Callable[[tuple], str | None]:
    """What names a field of a deployment built from flags in an error: the flag that set it (a group's tp: --tp; a
    prefill group's: --prefill-tp / --tp; a speculative block's acceptance: --spec-acceptance), not its location in
    the deployment (instances.0.tp); a field no flag of that name sets keeps its location. A plain object, not a
    closure: the Deployment keeps it (Deployment.field_label) and a deployment crosses processes (plan/backends)."""
    return FlagOf(tuple(group.get("pool") or group.get("role") for group in groups))


@dataclass(frozen=True, slots=True)
class FlagOf:
    """flag_of's namer: each instance group's role (or priority pool), in the deployment's order."""

    roles: tuple[str | None, ...]

    def __call__(self, loc: tuple) -> str | None:
        if len(loc) >= 3 and loc[0] == "instances" and isinstance(loc[1], int) and loc[1] < len(self.roles):
            role, field = self.roles[loc[1]], str(loc[2])
            if (role, field) in ROLE_FLAGS:
                return ROLE_FLAGS[role, field]
            return " / ".join(f for f in (flag_named(f"{role}_{field}"), flag_named(field)) if f) or None
        if len(loc) >= 2 and loc[0] in BLOCK_FLAGS:
            return BLOCK_FLAGS[loc[0]].get(str(loc[1]))
        return flag_named(str(loc[0])) if len(loc) == 1 else None


def flag_named(name: str) -> str | None:
    """The flag spelling of a deployment field set by a flag of its name (tp: --tp), None for one no flag sets."""
    return "--" + name.replace("_", "-") if name in flag_names() else None


@cache
def flag_names() -> frozenset[str]:
    return frozenset(deployment_flag_names())


def deployment_flag_names() -> list[str]:
    """The flags deployment_from_flags reads (and the engine knobs), which a --deployment file replaces."""
    return [n for n in inspect.signature(deployment_from_flags).parameters
            if n not in ("deployment", "knobs")] + list(KNOB_TYPES)


def refuse_beside_deployment(names: list[str]) -> None:
    """A one-line error naming the first of `names`, deployment flags given beside --deployment, and where the file
    sets what it sets (yaml_path): the file sets the whole deployment (a caller that can tell a flag typed at its
    default's value, the CLI, passes those too)."""
    if names:
        raise PhasewiseError(f"--{names[0].replace('_', '-')} cannot be combined with --deployment (the file sets the "
                             f"whole deployment; put {yaml_path(names[0])} in it)")


# where a deployment file sets what a flag sets, for the flags not named after a field of the deployment or of its
# instance groups, nor of a block in BLOCK_FLAGS
YAML_PATHS = {
    "arch": "instance groups of role: prefill and role: decode",
    "prefill_workers": "the role: prefill group's replicas", "decode_workers": "the role: decode group's replicas",
    "prefill_tp": "the role: prefill group's tp", "decode_tp": "the role: decode group's tp",
    "prefill_hardware": "the role: prefill group's hardware", "decode_hardware": "the role: decode group's hardware",
    "prefill_ep": "the role: prefill group's ep", "decode_ep": "the role: decode group's ep",
    "prefill_attention_dp": "the role: prefill group's attention_dp",
    "decode_attention_dp": "the role: decode group's attention_dp",
    "scheduler": "a priority_pools block and instance groups of pool: lp and pool: hp",
    "hp_instances": "the pool: hp group's replicas", "lp_engine": "the pool: lp group's engine",
    "hp_engine": "the pool: hp group's engine",
    "attention_offload": "attention_offload: {mode: auto} or {mode: fixed, requests: N}",
    "host_kv_cache_gb": "instances[].host_kv_cache_bytes (bytes, not GB)",
    "kv_store_gb": "kv_store_bytes (bytes, not GB)",
}


def yaml_path(name: str) -> str:
    """Where a deployment file sets what the deployment flag `name` (its parameter name) sets: a block's field
    (autoscale.min_replicas for --autoscale-min), an instance group's (instances[].tp), the deployment's (router)."""
    if name in YAML_PATHS:
        return YAML_PATHS[name]
    flag = "--" + name.replace("_", "-")
    for block, flags in BLOCK_FLAGS.items():
        field = next((field for field, f in flags.items() if f == flag), None)
        if field is not None:
            return f"{block}.{field}"
    if name in InstanceGroup.model_fields and name not in Deployment.model_fields:
        return f"instances[].{name}"
    return name


# --tp beside both --prefill-tp and --decode-tp (with a " VALUE" where the value is known): it would set neither
TP_BESIDE_ROLE_TPS = ("--tp{tp} sets the TP of a role given none of its own (--prefill-tp, --decode-tp), and both "
                      "are given here: drop --tp")
# --hardware beside both --prefill-hardware and --decode-hardware (and no encoders on it): it would set no chip
HARDWARE_BESIDE_ROLE_HARDWARE = ("--hardware{hardware} sets the chip of a role given none of its own "
                                 "(--prefill-hardware, --decode-hardware; the encoders' without --encode-hardware), "
                                 "and both are given here: drop --hardware")


def refuse_hardware_beside_role_hardware(arch: str, hardware: str, prefill_hardware: str | None,
                                         decode_hardware: str | None, encoders_on_hardware: bool) -> None:
    """--hardware off its default beside both --prefill-hardware and --decode-hardware (--arch disagg), where no
    encoder runs on it (--encode-workers without --encode-hardware): a one-line error, as --tp beside both role TPs
    is (TP_BESIDE_ROLE_TPS), not a chip quietly unused. A --hardware typed at its default's value cannot be told
    from none here."""
    default = inspect.signature(deployment_from_flags).parameters["hardware"].default
    if (arch == "disagg" and prefill_hardware and decode_hardware and hardware != default
            and not encoders_on_hardware):
        raise PhasewiseError(HARDWARE_BESIDE_ROLE_HARDWARE.format(hardware=f" {hardware}"))


# requests one simulation generates at most (~12-16k simulated requests/s: benchmarks/bench_sim.py)
MAX_REQUESTS = 10_000_000


def build(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1, pp: int = 1,
          precision: str | None = None, kv_dtype: str | None = None, engine: str = "vllm",
          replicas: int | None = None, arch: str = "collocated", prefill_workers: int | None = None,
          prefill_tp: int | None = None, decode_workers: int | None = None, decode_tp: int | None = None,
          kv_link: str | None = None,
          deployment: str | None = None, router: str = "least_outstanding",
          kv_overlap_score_weight: float | None = None, router_temperature: float | None = None,
          router_queue_threshold: float | None = None, router_kv_events: bool | None = None,
          router_ttl_s: float | None = None, entry_point: str = "server",
          memory_fraction: float | None = None, spec_tokens: int = 0, spec_acceptance: float | None = None,
          spec_draft: str | None = None,
          scheduler: str | None = None, hp_instances: int | None = None, lp_engine: str = "ascendra-lp",
          hp_engine: str = "ascendra-hp", slack_margin_ms: float = 300.0, migration: str = "auto",
          attention_offload: str = "off", attention_offload_sm_share: float | None = None,
          prefill_hardware: str | None = None, decode_hardware: str | None = None, mapping: str | None = None,
          online_training: str = "off", train_reuse_mode: str | None = None, feedback_share: float | None = None,
          train_batch_tokens: int | None = None, gpu_sharing: str | None = None,
          trainer_sm_share: float | None = None, lora_rank: int | None = None, keep_layers: int | None = None,
          host_link: str | None = None, prefix_caching: str | None = None, host_kv_cache_gb: float | None = None,
          kv_store_gb: float | None = None,
          trace: str | None = None,
          trace_limit: int | None = None, rate: float | None = None,
          requests: int | None = None, isl: float | None = None, osl: float | None = None,
          isl_dist: str | None = None, osl_dist: str | None = None, isl_spread: float | None = None,
          osl_spread: float | None = None, arrival: str | None = None,
          cv: float | None = None, concurrency: int | None = None, seed: int = 0,
          client: str | None = None, num_prompts: int | None = None, warmup: int | None = None,
          slo_ttft_ms: float = float("inf"), slo_tpot_ms: float = float("inf"), slo_tbt_ms: float = float("inf"),
          images_per_request: int | None = None, image_size: str | None = None, image_share: float | None = None,
          image_tokens_included: bool = False,
          **knobs) -> SimSpec:
    """`knobs`: engine knobs by their engines' names (see deployment_from_flags). Beside `deployment=FILE` a
    deployment argument off its default is refused; one at its default's value cannot be told from none here (the
    CLI passes every flag): run() refuses those too, as simulate refuses a flag typed beside --deployment."""
    check_argument_types(dict(trace_limit=trace_limit, requests=requests, num_prompts=num_prompts, warmup=warmup,
                              concurrency=concurrency, seed=seed, images_per_request=images_per_request),
                         dict(rate=rate, isl=isl, osl=osl, isl_spread=isl_spread, osl_spread=osl_spread, cv=cv,
                              slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, slo_tbt_ms=slo_tbt_ms,
                              image_share=image_share))
    refuse_empty(dict(isl_dist=isl_dist, osl_dist=osl_dist, arrival=arrival, client=client, image_size=image_size))
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_tbt_ms)
    if trace is None:
        images = image_inputs(images_per_request, image_size, image_share, included=image_tokens_included)
    dep = deployment_from_flags(
        model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
        replicas=replicas, arch=arch, prefill_workers=prefill_workers, prefill_tp=prefill_tp,
        decode_workers=decode_workers, decode_tp=decode_tp, kv_link=kv_link, deployment=deployment, router=router,
        kv_overlap_score_weight=kv_overlap_score_weight, router_temperature=router_temperature,
        router_queue_threshold=router_queue_threshold, router_kv_events=router_kv_events, router_ttl_s=router_ttl_s,
        entry_point=entry_point, memory_fraction=memory_fraction,
        spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance, spec_draft=spec_draft, scheduler=scheduler, hp_instances=hp_instances,
        lp_engine=lp_engine, hp_engine=hp_engine, slack_margin_ms=slack_margin_ms, migration=migration,
        attention_offload=attention_offload, attention_offload_sm_share=attention_offload_sm_share,
        prefill_hardware=prefill_hardware, decode_hardware=decode_hardware, mapping=mapping,
        online_training=online_training, train_reuse_mode=train_reuse_mode, feedback_share=feedback_share,
        train_batch_tokens=train_batch_tokens, gpu_sharing=gpu_sharing, trainer_sm_share=trainer_sm_share,
        lora_rank=lora_rank, keep_layers=keep_layers, host_link=host_link, prefix_caching=prefix_caching,
        host_kv_cache_gb=host_kv_cache_gb, kv_store_gb=kv_store_gb, **knobs)

    # the headline's SLOs: a priority_pools block's own where it sets them (--slo-* beside them refused)
    slo = headline_slo(dep.priority_pools, slo, flags=True)
    # Workload. Benchmark clients (--client) run a closed loop: request count, warm-up and lengths as they do.
    notes: tuple[str, ...] = ()  # SimSpec.notes
    if dep.priority_pools is not None and dep.priority_pools.class_slo_ms:
        notes += (f"priority_pools.class_slo_ms steers the pools by each request's class (its priority); the headline "
                  f"attainment scores every request against one SLO: {slo.describe()} (the block's slo_ttft_ms / "
                  "slo_tpot_ms, else --slo-*)",)
    if requests is not None and num_prompts is not None:
        raise PhasewiseError("give either --requests or --num-prompts (the same count), not both")
    count = num_prompts if num_prompts is not None else requests
    if num_prompts is not None and num_prompts < 1:
        raise PhasewiseError(f"--num-prompts must be >= 1 (got {num_prompts})")
    if client is not None and concurrency is None:
        raise PhasewiseError(f"--client {client} needs --concurrency C (benchmark clients run at fixed concurrency)")
    if warmup is not None and concurrency is None:
        raise PhasewiseError("--warmup needs --concurrency (and optionally --client): warm-up requests precede a "
                             "closed loop's measured ones")
    if count is not None and count > MAX_REQUESTS:
        flag = "--requests" if requests is not None else "--num-prompts"
        raise PhasewiseError(f"{flag} must be <= {MAX_REQUESTS:,} (got {count:,}): a simulation this long is a sample "
                             "of a steady state; a shorter one gives the same figures")
    if seed < 0:
        raise PhasewiseError(f"--seed must be >= 0 (got {seed})")
    if trace is not None or concurrency is not None:
        for flag, value in (("--arrival", arrival), ("--cv", cv)):
            if value is not None:
                raise PhasewiseError(f"{flag} shapes open-loop arrivals (--rate without --trace); "
                                     f"{'a trace keeps its own' if trace is not None else 'a closed loop has none'}")
    if trace_limit is not None and trace is None:
        raise PhasewiseError("--trace-limit needs --trace (it takes a trace's first N requests)")
    if trace is not None:
        if count is not None:
            flag = "--requests" if requests is not None else "--num-prompts"
            raise PhasewiseError(f"{flag} does not apply to --trace (the trace is the requests; "
                                 "--trace-limit N takes its first N)")
        if concurrency is not None:
            raise PhasewiseError("--concurrency does not apply to --trace (a trace replays its own arrival times; "
                                 "--rate rescales them)")
        for flag, value in (("--isl", isl), ("--osl", osl), ("--isl-dist", isl_dist), ("--osl-dist", osl_dist),
                            ("--isl-spread", isl_spread), ("--osl-spread", osl_spread)):
            if value is not None:
                raise PhasewiseError(f"{flag} does not apply to --trace (the trace gives every request's lengths)")
        work: Workload | ClosedLoop = load_trace(trace, trace_limit)
        notes += trace_notes(trace, trace_limit, work, dep)
        images = image_inputs(images_per_request, image_size, image_share, work.image_counts, f"trace '{trace}'",
                              image_tokens_included)
        if rate is not None:
            work.check_rescalable()
            check_arrival_span(work.span_at_rate_s(rate), len(work), rate, "--rate")
            work = work.scaled_to_rate(rate)
    else:
        check_length_flags(isl, osl, isl_dist, osl_dist, isl_spread, osl_spread,
                           sampled_by="the client's sampling" if client else "fixed")
        defaults = (load_client(client).default_lengths if client else None) or (DEFAULT_ISL, DEFAULT_OSL)
        isl = defaults[0] if isl is None else isl  # a client's own dataset defaults (vllm-bench: 1024 / 128)
        osl = defaults[1] if osl is None else osl
        isl_spread, osl_spread = isl_spread or 0.0, osl_spread or 0.0
        prompt = LengthDist(isl_dist or "fixed", isl, isl_spread)
        output = LengthDist(osl_dist or "fixed", osl, osl_spread)
        if concurrency is not None:
            if rate is not None:
                raise PhasewiseError("give either --rate (open loop) or --concurrency (closed loop), not both")
            if client is not None:  # the client's length sampling unless --isl-dist/--osl-dist say otherwise
                work = client_workload(client, concurrency, count, warmup, isl, osl, seed,
                                       prompt=prompt if isl_dist is not None else None,
                                       output=output if osl_dist is not None else None)
            else:
                work = ClosedLoop(concurrency, 1000 if count is None else count, prompt, output, seed=seed,
                                  warmup_requests=warmup or 0)
        else:
            if rate is None:
                raise PhasewiseError("the workload needs --trace, --rate (open loop) or --concurrency (closed loop)")
            arrival = "poisson" if arrival is None else arrival
            if cv is not None and arrival != "gamma":
                raise PhasewiseError(f"--cv shapes gamma arrivals (--arrival gamma; got {arrival})")
            check_arrival_span((1000 if count is None else count) / rate, 1000 if count is None else count, rate,
                               "--rate")  # the arrivals' expected span, before drawing them
            work = open_loop(rate, 1000 if count is None else count, prompt, output, arrival=arrival,
                             cv=1.0 if cv is None else cv,
                             seed=seed)
    if isinstance(work, ClosedLoop) and work.requests + work.warmup_requests > MAX_REQUESTS:
        # the warm-up requests are simulated too: the cap is on all of them (a --warmup of 10^9 ran out of memory)
        flag = "--warmup" if warmup is not None else "--concurrency"  # else the client's warm-up per connection
        raise PhasewiseError(f"{flag}: {work.warmup_requests:,} warm-up requests beside {work.requests:,} measured "
                             f"ones pass the {MAX_REQUESTS:,} requests one simulation holds (warm-up ones are "
                             f"simulated too): at most {MAX_REQUESTS - work.requests:,} warm-up requests here")
    if knobs.get("encode_workers") is not None and images is None:
        raise PhasewiseError("--encode-workers needs image inputs (--images-per-request, or a trace with a NumImages "
                             "column and --image-size): without images the encode workers would have nothing to do")
    notes += dep.link_notes() + prefix_notes(work, dep)  # an unset --kv-link's rdma among them (disagg_kv_link)
    notes += router_notes(dep) + seed_notes(seed, work, trace is not None, dep)  # settings with nothing to act on
    if migrates_kv(dep) and any(group.prefix_caching is not False for group in dep.instances):
        notes += ("no instance caches prefixes with priority pools or attention offload, whatever its engine's "
                  "default (their migrations move KV blocks the cache does not follow; sim/prefix_cache.py): "
                  "--out's records have no cached_tokens column",)
    return SimSpec(dep, work, slo, images, notes, seed)


# simulate's diffusion-LM arguments (apps/dllm_view.py KNOB_FLAGS and --dllm): run() simulates autoregressive decoding
DLLM_ARGUMENTS = ("dllm", "gen_length", "block_length", "dllm_steps", "dllm_threshold", "dllm_cache", "tokens_per_step",
                  "tokens_per_step_probs", "jump_copies", "jump_probs", "batch_cap")


def run(check_invariants: bool = False, refuse_beyond_context: bool = False, **kwargs) -> SimResult:
    """`build(**kwargs)` simulated; the result's `caveats` and `notes` (its summary()'s "caveats" and "notes", as
    simulate --json gives them) are what `phasewise simulate` prints beside its figures. Two things simulate does
    are the caller's to ask for, as the library's own users (tests, the papers' replays) run without them:
    `refuse_beyond_context=True` rejects a request whose prompt and output pass the model's context as an engine
    does (simulate's; off, it runs if its KV fits, as the papers' replays run them), and result.rejection_warning()
    is simulate's line on requests that can never run, its one-line error ("nothing can run") where every one was
    rejected (summary()'s "rejected" / "rejected_by" count them either way). With `deployment=FILE`, any
    deployment argument given (not None), at its default's value too, is refused as simulate refuses its flag typed
    beside --deployment. A diffusion LM (LLaDA) is not run here: simulate --dllm, or
    phasewise.sim.dllm.simulate_dllm (its decoding, cost model and workload) in Python."""
    given = [name for name in DLLM_ARGUMENTS if name in kwargs]
    if given:
        raise PhasewiseError(f"run() does not take {given[0]}: it simulates autoregressive decoding; a diffusion LM "
                             "runs through `phasewise simulate --dllm`, or phasewise.sim.dllm.simulate_dllm in Python")
    if kwargs.get("deployment") is not None:  # the caller's own arguments: one at its default's value is told apart
        refuse_beside_deployment([name for name in deployment_flag_names() if kwargs.get(name) is not None])
    spec = build(**kwargs)
    result = simulate(spec.deployment, spec.workload, spec.slo, check_invariants=check_invariants, images=spec.images,
                      seed=spec.seed, refuse_beyond_context=refuse_beyond_context)
    result.caveats = chip_caveats(g.hardware for g in spec.deployment.instances)
    result.notes = spec.notes
    return result
