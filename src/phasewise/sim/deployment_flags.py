"""A Deployment from simulate's deployment flags (deployment_from_flags, which sim/api.py build calls), and how an
error about it names a field: by the flag that set it (flag_of)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from phasewise.errors import PhasewiseError, refuse_empty
from phasewise.sim.attention_offload import offload_block
from phasewise.sim.deployment import DYNAMO_ROUTER_FIELDS, Deployment, build_deployment, load_deployment
from phasewise.sim.flag_checks import (
    autoscale_flags,
    disagg_kv_link,
    encoder_flags,
    host_kv_cache_bytes,
    moe_layout_flags,
    priority_pool_flags,
    role_flags,
)
from phasewise.sim.flag_fields import BLOCK_FLAGS, ROLE_FLAGS, refuse_beside_deployment
from phasewise.sim.online_training import training_block
from phasewise.specs.engines import KNOB_TYPES


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
    if spec_tokens:  # unset acceptance and draft: the Speculative block's defaults (sim/deployment_blocks.py)
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
