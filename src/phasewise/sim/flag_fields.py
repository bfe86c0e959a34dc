"""Which field of a deployment each of simulate's deployment flags sets (a block's: BLOCK_FLAGS; a role's or a
pool's: ROLE_FLAGS), where a deployment file sets it (yaml_path), and such a flag refused beside --deployment."""

from __future__ import annotations

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.online_training import TRAINING_FLAGS

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
# the deployment's blocks that flags set field by field: each field's flag (sim/deployment_flags.py FlagOf names a
# refused field by it; a flag's place in a deployment file, yaml_path, is its field's)
BLOCK_FLAGS = {"speculative": SPECULATIVE_FLAGS, "online_training": TRAINING_FLAGS, "autoscale": AUTOSCALE_FLAGS,
               "encoders": ENCODER_FLAGS, "priority_pools": POOL_FLAGS, "attention_offload": OFFLOAD_FLAGS}


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
