"""The deployment flags' own rules, each checked where `phasewise simulate` (and sim/api.py's build, for Python
callers) turns flags into a deployment's fields: the autoscaler's, encoders', MoE layout's, role and priority-pool
flags, and the argument types a Python caller may get wrong. Each error names the flag. Beside them, the notes on
router and --seed settings that change nothing in the run at hand (router_notes, seed_notes)."""

from __future__ import annotations

import math
import numbers
import typing

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import EncodeWorkers, link_between, phases_apart
from phasewise.specs.hardware import chips_apart


def autoscale_flags(minimum: int | None, metric: str | None, target: float | None,
                    startup_s: float | None, autoscaler: str | None = None, replicas: int | None = None) -> dict:
    """The deployment's `autoscale` block from the --autoscale-* flags and --autoscaler ({} without
    --autoscale-min), the rules between its fields named by their flags (a field's own bounds the Autoscale block
    checks, FlagOf naming its flag); `replicas`: --replicas, the most the autoscaler runs."""
    if minimum is None:
        given = [flag for flag, value in (("--autoscale-metric", metric), ("--autoscale-target", target),
                                          ("--autoscale-startup-s", startup_s), ("--autoscaler", autoscaler))
                 if value is not None]
        if given:
            raise PhasewiseError(f"{given[0]} needs --autoscale-min N (the autoscaler is off without it)")
        return {}
    if metric == "sla":
        raise PhasewiseError("--autoscale-metric sla (Dynamo's SLA planner) takes its SLA and modes from an "
                             "`autoscale: {metric: sla, ...}` block in a --deployment file (each disaggregated "
                             "group's, or a collocated one's, load-based); the --autoscale-* flags scale collocated "
                             "replicas on waiting, running, concurrency, rps or kv_usage")
    if target is None:
        raise PhasewiseError("--autoscale-min needs --autoscale-target X: the metric's value per ready replica the "
                             "autoscaler aims at (waiting or running requests, or a KV cache share)")
    if metric == "kv_usage" and target > 1:
        raise PhasewiseError(f"--autoscale-target for --autoscale-metric kv_usage is a share of the KV cache, in "
                             f"(0, 1] (got {target:g})")
    if autoscaler == "kpa" and metric not in (None, "concurrency", "rps"):  # None: the block's concurrency
        raise PhasewiseError(f"--autoscaler kpa (Knative's Pod Autoscaler) scales on --autoscale-metric concurrency "
                             f"or rps (got {metric})")
    if replicas is not None and minimum > replicas:
        raise PhasewiseError(f"--autoscale-min ({minimum}) is above --replicas ({replicas}), the most the autoscaler "
                             "runs")
    if replicas is not None and minimum == replicas:
        raise PhasewiseError(f"--autoscale-min ({minimum}) is --replicas ({replicas}), the most the autoscaler runs: "
                             "it would have no replica to add; give --replicas above --autoscale-min, or drop the "
                             "autoscaler")
    block = {"min_replicas": minimum, "target": target}
    if metric is not None:
        block["metric"] = metric
    if startup_s is not None:
        block["startup_s"] = startup_s
    if autoscaler is not None:
        block["autoscaler"] = autoscaler
    return {"autoscale": block}


def host_kv_cache_bytes(flag: str, gb: float | None) -> float:
    """Bytes of `flag`'s GB of memory for prefix blocks (a host tier, a shared store; 0 when not given); a finite
    number > 0 when given."""
    if gb is None:
        return 0.0
    if not 0 < gb < math.inf:
        raise PhasewiseError(f"{flag} must be a finite number > 0 (got {gb:g}); leave it out for none")
    return gb * 1e9


def moe_layout_flags(arch: str, ep: int | None, moe_tp: int | None, attention_dp: int | None,
                     prefill_ep: int | None, decode_ep: int | None, prefill_attention_dp: int | None,
                     decode_attention_dp: int | None, moe_imbalance: float | None) -> dict[str, dict]:
    """The instance-group fields of the layout flags, by role (only the flags given)."""
    per_role = {"--prefill-ep": prefill_ep, "--decode-ep": decode_ep,
                "--prefill-attention-dp": prefill_attention_dp, "--decode-attention-dp": decode_attention_dp}
    given = [flag for flag, value in per_role.items() if value is not None]
    if given and arch != "disagg":
        raise PhasewiseError(f"{given[0]} needs --arch disagg (collocated instances take --ep / --attention-dp)")

    def fields(role_ep: int | None, role_dp: int | None) -> dict:
        values = dict(ep=role_ep if role_ep is not None else ep, moe_tp=moe_tp,
                      attention_dp=role_dp if role_dp is not None else attention_dp, moe_imbalance=moe_imbalance)
        return {k: v for k, v in values.items() if v is not None}

    return {"collocated": fields(None, None), "prefill": fields(prefill_ep, prefill_attention_dp),
            "decode": fields(decode_ep, decode_attention_dp)}


ENCODE_LINKS = typing.get_args(EncodeWorkers.model_fields["link"].annotation)  # the deployment field's values


def encoder_flags(workers: int | None, tp: int | None, hardware: str | None, link: str | None,
                  default_hardware: str, fed_hardware: str | None = None) -> dict:
    """The `encoders` block of --encode-workers N (--encode-tp, --encode-hardware, default the instances' chip,
    --encode-link), each flag checked; {} without --encode-workers (then the others must be left alone).
    `fed_hardware`: the chip of the instances the encoders feed (those that prefill; default `default_hardware`),
    for the link's rule (sim/deployment_links.py link_between: nvlink and pcie do not reach another chip's machine)."""
    if workers is None:
        for flag, value in (("--encode-tp", tp), ("--encode-hardware", hardware), ("--encode-link", link)):
            if value is not None:
                raise PhasewiseError(f"{flag} needs --encode-workers N (disaggregated vision encoders)")
        return {}
    if workers < 1:
        raise PhasewiseError(f"--encode-workers must be >= 1 (got {workers})")
    if tp is not None and tp < 1:
        raise PhasewiseError(f"--encode-tp must be >= 1 (got {tp})")
    if link is not None and link not in ENCODE_LINKS:
        raise PhasewiseError(f"--encode-link '{link}' is not one of {', '.join(ENCODE_LINKS)}")
    fed = fed_hardware or default_hardware
    apart = chips_apart(hardware or default_hardware, fed, ("the encoders", "the instances they feed"))
    refusal = link_between(link, apart, "the embeddings")[1]
    if refusal:
        raise PhasewiseError(f"--encode-link {refusal}; give --encode-link rdma (the default there)")
    block = {"hardware": hardware or default_hardware, "replicas": workers, "tp": tp or 1,
             **({"link": link} if link else {})}
    return {"encoders": block}


SCHEDULER_MODES = ("plain", "ascendra")


def disagg_kv_link(asked: str | None, groups: list[dict]) -> str | None:
    """The kv_link a disaggregated deployment from flags states (its prefill and decode `groups`): a typed --kv-link,
    refused in one line where it is nvlink or pcie and prefill and decode cannot share one node (sim/deployment_links.py
    phases_apart: on different chips, or more GPUs together than one node's, as plan's rule); else None: unset, the
    deployment takes nvlink or, where they cannot share a node, rdma, and says so (Deployment.link_notes)."""
    if asked is None:
        return None
    gpus = sum(g["tp"] * g["pp"] * g["replicas"] for g in groups)
    refusal = link_between(asked, phases_apart(groups[0]["hardware"], groups[1]["hardware"], gpus))[1]
    if refusal:
        raise PhasewiseError(f"--kv-link {refusal}; give --kv-link rdma (the default there)")
    return asked


def is_integer(value) -> bool:
    """An integer (numpy's too), not a bool: what an integer flag takes (2e3, 16.0 are not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number (numpy's too), not a bool or a string: what a number flag takes."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_argument_types(integers: dict, reals: dict) -> None:
    """A one-line error naming the argument (as its flag) whose value is not of the type its flag takes, an integer
    (`integers`: requests, seed) or a number (`reals`: rate), rather than a TypeError inside numpy; None: not given.
    The CLI's flags are parsed to these types already."""
    for names, ok, kind in ((integers, is_integer, "an integer"), (reals, is_number, "a number")):
        for name, value in names.items():
            if value is not None and not ok(value):
                raise PhasewiseError(f"--{name.replace('_', '-')} takes {kind} (got {value!r})")


MIGRATIONS = ("auto", "transfer", "recompute")


def role_flags(arch: str, scheduler: str | None, replicas: int | None, prefill_workers: int | None,
               decode_workers: int | None, prefill_tp: int | None, decode_tp: int | None,
               kv_link: str | None) -> tuple[int, int, int, str]:
    """(replicas, prefill workers, decode workers, kv_link) once each flag is checked against the architecture it
    shapes: --replicas counts collocated instances (a disaggregated deployment counts --prefill-workers and
    --decode-workers), the per-role flags need --arch disagg, and --kv-link carries KV between instances
    (disaggregated, or priority pools migrating requests). Unset: one instance a role, NVLink."""
    if arch == "disagg" and replicas is not None and scheduler != "ascendra":  # (pools say why they need collocated)
        raise PhasewiseError("--replicas counts collocated instances; a disaggregated deployment takes "
                             "--prefill-workers and --decode-workers")
    if arch != "disagg":
        for flag, value in (("--prefill-workers", prefill_workers), ("--decode-workers", decode_workers),
                            ("--prefill-tp", prefill_tp), ("--decode-tp", decode_tp)):
            if value is not None:
                raise PhasewiseError(f"{flag} needs --arch disagg")
        if kv_link is not None and scheduler != "ascendra":
            raise PhasewiseError("--kv-link needs --arch disagg or --scheduler ascendra (it carries KV between "
                                 "instances; collocated instances move none)")
    def one(value: int | None) -> int:
        return 1 if value is None else value

    return one(replicas), one(prefill_workers), one(decode_workers), "nvlink" if kv_link is None else kv_link


def priority_pool_flags(scheduler: str | None, hp_instances: int | None, lp_engine: str, hp_engine: str,
                        slack_margin_ms: float, migration: str, arch: str, engine: str, replicas: int
                        ) -> tuple[int, dict] | None:
    """--scheduler ascendra's flags checked: (low-priority instance count, the priority_pools block), or None
    for a plain deployment (then the pool flags must be left alone)."""
    if scheduler not in (None, *SCHEDULER_MODES):
        raise PhasewiseError(f"--scheduler '{scheduler}' is not one of {', '.join(SCHEDULER_MODES)}")
    if scheduler != "ascendra":
        flags = (("--hp-instances", hp_instances, None), ("--lp-engine", lp_engine, "ascendra-lp"),
                 ("--hp-engine", hp_engine, "ascendra-hp"), ("--slack-margin-ms", slack_margin_ms, 300.0),
                 ("--migration", migration, "auto"))
        given = [flag for flag, value, default in flags if value != default]
        if given:
            raise PhasewiseError(f"{given[0]} needs --scheduler ascendra (priority pools)")
        return None
    if arch != "collocated":
        raise PhasewiseError("--scheduler ascendra needs --arch collocated (priority pools of collocated instances)")
    if engine != "vllm":
        raise PhasewiseError("--engine does not apply with --scheduler ascendra: the pools' engines are --lp-engine "
                             "and --hp-engine")
    hp = 1 if hp_instances is None else hp_instances
    if not 1 <= hp < replicas:
        raise PhasewiseError(f"--hp-instances must be between 1 and --replicas - 1 = {replicas - 1} "
                             f"(got {hp}; --replicas {replicas} is the LP and HP instances together)")
    if migration not in MIGRATIONS:
        raise PhasewiseError(f"--migration '{migration}' is not one of {', '.join(MIGRATIONS)}")
    if not slack_margin_ms >= 0:
        raise PhasewiseError(f"--slack-margin-ms must be >= 0 (got {slack_margin_ms})")
    return replicas - hp, {"slack_margin_ms": slack_margin_ms, "migration": migration}
