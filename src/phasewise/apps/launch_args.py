"""What every engine's launch command shares (apps/launch.py writes the commands): the engines' published argument
names, the precision and KV-cache dtype arguments, the KV block the instance runs on, the trust flag for checkpoints
with their own code, and the notes for what a deployment plans that no engine argument expresses."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from phasewise.apps.remote_code import remote_code_args
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.simulate import build_group
from phasewise.specs import load_model
from phasewise.specs.catalog import looks_like_path
from phasewise.specs.engine_kv import (
    default_kv_block,
    default_kv_dtype,
    kv_block,
    prefix_caching_refusal,
    version_key,
)
from phasewise.specs.engine_presets import knob_since, preset_entry, preset_key, preset_names, preset_release

# our precision -> the engines' online-quantization argument, where the engine quantizes a bf16 checkpoint itself
# (vLLM and SGLang: --quantization fp8, dynamic per-tensor FP8); other formats need a pre-quantized checkpoint
ONLINE_QUANT = {"fp8": "fp8"}
UNQUANTIZED = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# our KV dtype -> the engines' --kv-cache-dtype (None: the model's dtype, the engines' `auto`; an unquantized dtype is
# written only where it is not what `auto` keeps, kv_dtype_arg). The unquantized values are the ones
# specs/engine_refusals.py UNQUANTIZED_KV_VALUES lets a plan keep beside the model's dtype (sourced there), and
# vLLM's "bfloat16" (CacheDType from 0.11: the way out of a model whose `auto` is fp8)
KV_DTYPE = {"vllm": {"fp8": "fp8", "bf16": "bfloat16"}, "sglang": {"fp8": "fp8_e4m3", "bf16": "bfloat16"},
            "trtllm": {"fp8": "fp8"}}
# the KV transfer each engine uses between prefill and decode workers (assumed: NIXL, which vLLM, SGLang and
# Dynamo all support, over UCX; TensorRT-LLM's cache transceiver's UCX backend)
KV_BACKEND = {"vllm": "NixlConnector", "sglang": "nixl", "trtllm": "UCX"}
ENGINE_NAMES = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}
# a script whose deployment spans several nodes runs on each as `NODE=k ./launch.sh`, with each node's IP address in
# NODEk_ADDR (vLLM's --data-parallel-address / --master-addr, SGLang's --dist-init-addr, VLLM_NIXL_SIDE_CHANNEL_HOST
# and the routers' URLs take addresses)
NODE_VAR = "NODE"
_NODE_ADDR = re.compile(r"\$\{NODE\d+_ADDR\}")


def node_addr(node: int) -> str:
    """The script's variable holding node `node`'s address, as a shell word part."""
    return "${" + f"{NODE_VAR}{node}_ADDR" + "}"


def _shell_word(word: str) -> str:
    """`word` quoted for bash: node-address variables expand (double quotes), everything else is literal."""
    rest = _NODE_ADDR.sub("", word)
    if rest != word and not re.search(r'["`\\$]', rest):
        return f'"{word}"'
    return shlex.quote(word)


@cache
def _flag_file() -> dict[str, Any]:
    return yaml.safe_load(resources.files("phasewise.apps").joinpath("data", "engine_flags.yaml").read_text())


def engine_flags() -> dict[str, Any]:
    """The published argument names each engine's command takes (apps/data/engine_flags.yaml), a flag's `since:
    {knob: K}` read as the release the engine's preset records for knob K (specs/data/engine_presets.yaml
    knob_since, the planner's record of it too)."""
    table = _flag_file()
    return {family: _knob_releases(family, spec) for family, spec in table.items()}


def _knob_releases(family: str, spec: dict[str, Any]) -> dict[str, Any]:
    """`family`'s entry with each `since: {knob: K}` replaced by the preset's release (a copy; else the entry)."""
    refer = {flag: entry["since"]["knob"] for flag, entry in spec["flags"].items()
             if isinstance(entry.get("since"), dict)}
    if not refer:
        return spec
    flags = dict(spec["flags"])
    for flag, knob in refer.items():
        since = knob_since(family, knob)
        if since is None:
            raise LookupError(f"apps/data/engine_flags.yaml {family} {flag}: `since: {{knob: {knob}}}`, but "
                              f"specs/data/engine_presets.yaml's {family} preset has no knob_since for {knob}")
        flags[flag] = dict(flags[flag], since=since)
    return dict(spec, flags=flags)


def engine_family(engine: str) -> str:
    """vllm | sglang | trtllm: the engine whose commands a preset's group gets (vLLM for the others), an engine file
    that refines a preset (`preset: sglang@0.5.2`) its preset's (specs/engine_presets.py preset_key), a bare engine
    file vLLM's whatever its name or `scheduler:`."""
    name = preset_key(engine)
    if name not in preset_names() and looks_like_path(engine.partition("@")[0]):
        return "vllm"
    return "sglang" if name.startswith("sglang") else "trtllm" if name.startswith("trtllm") else "vllm"


@dataclass(slots=True)
class Command:
    """One process to start: its environment, argv, and comment lines (what the engine cannot express)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # config files it reads, name -> text
    node: int = 0  # the node it runs on (0: the first)
    needs: list[str] = field(default_factory=list)  # what it needs of a later engine than modelled (version_needs)
    # what it runs otherwise than simulated, said at the command and in the header (launch_caps.py TrtllmCaps)
    differs: list[str] = field(default_factory=list)

    def line(self) -> str:
        env = " ".join(f"{k}={_shell_word(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + " ".join(_shell_word(a) for a in self.argv)


def launch_version(dep: Deployment, g: InstanceGroup, family: str) -> str:
    """The engine version the plan modelled for the group's command: its preset's version where the group runs the
    family's own preset (`vllm@0.11`, or an engine file refining it: the file's `preset:` version), read as the
    planner reads it (specs/engine_presets.py preset_release), else the family preset's default
    (specs/data/engine_presets.yaml): a scheduler simulated without a command of its own is launched with today's
    engine."""
    preset, version = preset_release(g.engine)
    return version if preset == family else str(preset_entry(family)["default_version"])


def version_needs(family: str, argv: list[str], version: str) -> list[str]:
    """What the command needs of a later engine than `version` (the modelled one): a flag whose `since` in
    apps/data/engine_flags.yaml is later, said plainly, one line per flag (its `before`: what the older versions
    lack, where not the argument itself)."""
    flags = engine_flags()[family]["flags"]
    name = ENGINE_NAMES[family]
    return [f"{flag} needs {name} >= {flags[flag]['since']}: {name} {version} (the version the plan modelled) "
            f"{flags[flag].get('before', 'has no such argument and refuses it')}; run this deployment with {name} "
            f"{flags[flag]['since']} or later"
            for flag in argv if flag in flags and "since" in flags[flag]
            and version_key(flags[flag]["since"]) > version_key(version)]


def multi_node_needs(family: str, node_argv: list[str], needs: list[str], version: str) -> list[str]:
    """What the multi-node arguments per_node adds to a command (`node_argv`; vLLM's --nnodes, --node-rank,
    --master-addr and --master-port, all 0.11.1 on) need of a later engine than the modelled `version`, beyond the
    command's own `needs`: one line naming all the flags that came in one release (each flag's `before` kept), where
    version_needs says one line per flag: four lines repeating "needs vLLM >= 0.11.1" at each node's command and in
    the header."""
    flags = engine_flags()[family]["flags"]
    by_release: dict[str, list[str]] = {}
    for flag in node_argv:
        said = version_needs(family, [flag], version)
        if said and said[0] not in needs and flag not in by_release.get(flags[flag]["since"], []):
            by_release.setdefault(flags[flag]["since"], []).append(flag)
    lines = []
    for release, added in by_release.items():
        if len(added) == 1:
            lines += version_needs(family, added, version)
            continue
        name = ENGINE_NAMES[family]
        lacks = [flags[flag]["before"] for flag in added if "before" in flags[flag]]
        plain = [flag for flag in added if "before" not in flags[flag]]
        if plain:
            listed = plain[0] if len(plain) == 1 else f"{', '.join(plain[:-1])} or {plain[-1]}"
            lacks.append(f"has no {listed} and refuses {'it' if len(plain) == 1 else 'them'}")
        lines.append(f"{', '.join(added[:-1])} and {added[-1]} need {name} >= {release}: {name} {version} (the version "
                     f"the plan modelled) {', and '.join(lacks)}; run this deployment with {name} {release} or later")
    return lines


def engine_lines(dep: Deployment, needs: list[str]) -> list[str]:
    """launch.sh's header lines naming each engine it launches: the version the plan modelled, the version whose
    arguments the flags are (apps/data/engine_flags.yaml), and what the commands need of a later one."""
    lines = []
    for family in dict.fromkeys(engine_family(g.engine) for g in dep.instances):
        versions = sorted({launch_version(dep, g, family) for g in dep.instances if engine_family(g.engine) == family},
                          key=version_key)
        spec = engine_flags()[family]
        name, read = ENGINE_NAMES[family], spec["version"]
        same = all(read == v or read.startswith(v + ".") for v in versions)
        lines.append(f"Engine: {name} {' / '.join(versions)}, the version the plan modelled; the flags are {name} "
                     f"{read}'s (apps/data/engine_flags.yaml)" + ("" if same else f": check them against --help of "
                                                                                  f"{name} {' / '.join(versions)}"))
    return lines + list(dict.fromkeys(needs))


def precision_args(dep: Deployment, g: InstanceGroup, family: str, notes: list[str]) -> list[str]:
    model = load_model(g.model or dep.model)
    if g.precision and model.unmodelled_quantization and not model.native_precision:
        # a format phasewise does not model, costed as --precision: the engine reads the checkpoint's own
        notes.append(f"precision {g.precision} is what the checkpoint's weights were costed as (its quantization "
                     "format is not modelled here): the engine reads the checkpoint's own format from its "
                     "quantization config")
        return []
    native = model.default_precision
    precision = g.precision or native
    if precision == native:
        if precision not in UNQUANTIZED:
            notes.append(f"precision {precision} is the checkpoint's own format: the engine reads it from the "
                         "checkpoint's quantization config")
        return []
    if native not in UNQUANTIZED and precision in {**UNQUANTIZED, **ONLINE_QUANT}:
        # the engine reads a quantized checkpoint's weights in its own format whatever --dtype says, and refuses a
        # --quantization that differs from the checkpoint's: the arguments below are for a bf16 checkpoint
        notes.append(f"precision {precision} on a {native} checkpoint: serve a bf16 checkpoint of the model as MODEL "
                     f"(the engine reads this one's weights as {native}, whatever its arguments say)")
    if family == "trtllm":
        notes.append(f"precision {precision}: TensorRT-LLM's PyTorch backend has no online quantization; serve a "
                     f"{precision} checkpoint (e.g. quantized with NVIDIA ModelOpt) as MODEL")
        return []
    if precision in UNQUANTIZED:
        return ["--dtype", UNQUANTIZED[precision]]
    if precision in ONLINE_QUANT:
        return ["--quantization", ONLINE_QUANT[precision]]
    notes.append(f"precision {precision}: no online quantization in {family}; serve a pre-quantized {precision} "
                 "checkpoint as MODEL (its format is read from the checkpoint)")
    return []


def kv_dtype_arg(dep: Deployment, g: InstanceGroup, family: str, notes: list[str]) -> str | None:
    """The engine's --kv-cache-dtype for the group's kv_dtype: none where its `auto` gives that unquantized dtype
    (the engine's own pick for the model, specs/engine_kv.py default_kv_dtype: SGLang's FP8 for a DSA model on
    Blackwell, which a note names; else the model's dtype as served, the precision's activation dtype), the
    engine's explicit value where the plan's differs from it."""
    cost, _, _, engine = build_group(dep, g, dep.instances.index(g))
    model = load_model(g.model or dep.model)
    auto = default_kv_dtype(engine, model, cost.hw)
    served = auto or cost.quant.activation_dtype  # what --kv-cache-dtype auto keeps
    if g.kv_dtype is None and model.compressed is not None and family == "vllm":
        # DeepSeek-V4's attention asserts an FP8 cache, which its recipe passes (vLLM's DeepSeek-V4 blog and recipe:
        # --kv-cache-dtype fp8 --block-size 256)
        notes.append(f"kv_dtype: {g.model or dep.model}'s attention takes an FP8 KV cache only; written as fp8")
        return KV_DTYPE[family]["fp8"]
    if g.kv_dtype is None:
        if auto is not None:
            notes.append(f"kv_dtype: {engine.label} keeps {g.model or dep.model}'s KV cache in {auto} on "
                         f"{g.hardware} when --kv-cache-dtype is auto; simulated so")
        return None
    if g.kv_dtype in UNQUANTIZED and g.kv_dtype == served:
        return None  # the engine's `auto` gives it
    value = KV_DTYPE[family].get(g.kv_dtype)
    if value is None:  # a host profile's plan (a preset's refuses it: specs/engine_refusals.py kv_dtype_refusal)
        notes.append(f"kv_dtype {g.kv_dtype}: {family} has no such KV-cache dtype ({', '.join(KV_DTYPE[family])} "
                     f"only); not set: its auto keeps {served}, not the {g.kv_dtype} planned")
    return value


def common_notes(dep: Deployment, g: InstanceGroup, family: str) -> list[str]:
    notes = [f"{g.role} instances: {g.replicas} x {g.tp * g.pp} x {g.hardware}"]
    name = preset_key(g.engine)  # an engine file's preset where it refines one
    if name != family:
        notes.append(f"planned engine '{g.engine}' (simulated scheduler) has no launch command of its own; "
                     f"{family} is the nearest")
    elif name != g.engine.partition("@")[0].lower():
        notes.append(f"engine file '{g.engine.partition('@')[0]}' refines {name}: launched as {ENGINE_NAMES[family]}; "
                     "its host constants are simulation inputs, not arguments")
    if name == "vllm-v0":
        notes.append("prefill-first (vLLM V0) scheduling: vLLM >= 0.11 runs only V1; --no-enable-chunked-prefill "
                     "keeps prompts whole in vLLM 0.14 (0.11 forced chunking on), but V1 still mixes them into "
                     "decode steps")
    if g.entry_point == "offline":
        notes.append("entry_point offline: the planned engine defaults are the LLM class's, not the server's")
    if g.moe_imbalance is not None:
        notes.append(f"moe_imbalance {g.moe_imbalance:g} is a simulation input (expert load skew), not an argument")
    if g.routing_skew is not None:
        notes.append(f"routing_skew {g.routing_skew:g} is a simulation input (the traffic's expert routing), not an "
                     "argument")
    if g.mapping:
        notes.append(f"operator mapping '{g.mapping}' (chip substrates) has no engine equivalent")
    if g.pool:
        notes.append(f"priority pool '{g.pool}' (Ascendra): no engine equivalent; route by priority in front")
    if dep.kv_store_bytes and g.role != "decode":
        notes.append(f"kv_store_bytes {dep.kv_store_bytes / 1e9:g} GB: a KV store the instances share (Mooncake "
                     "Store, LMCache's remote backend, SGLang HiCache's storage backend) is configured through its own "
                     "connector, not written here")
    return notes


def remote_code_argv(dep: Deployment, g: InstanceGroup, family: str, notes: list[str]) -> list[str]:
    """The trust flag where the group's checkpoint needs its own code read (apps/remote_code.py); its why a note."""
    argv, why = remote_code_args(g.model or dep.model, family)
    notes += why
    return argv


def run_block(dep: Deployment, g: InstanceGroup, notes: list[str]) -> int:
    """The KV block the instance runs on, as simulated (specs/engine_kv.py kv_block): the deployment's block_size or
    the engine's default, unless a latent-attention model's kernel needs another, which the engine forces whatever
    its flag says (vLLM, SGLang) or requires (TensorRT-LLM with sparse attention): a note says so."""
    model = load_model(g.model or dep.model)
    cost, _, _, engine = build_group(dep, g, dep.instances.index(g))
    block, kernel = kv_block(engine, model, cost.hw, g.block_size)
    if kernel:
        asked = g.block_size if g.block_size is not None else f"{default_kv_block(engine)} (the engine's default)"
        notes.append(f"block_size {asked}: {kernel} ({g.model or dep.model} on {g.hardware}) runs on "
                     f"{block}-token KV blocks, which the engine forces or requires; simulated and written as {block}")
    return block


def reuse_refused(dep: Deployment, g: InstanceGroup) -> str:
    """Why the engine cannot reuse KV blocks for this group's model ("" where it can: specs/engines.py)."""
    return prefix_caching_refusal(build_group(dep, g, dep.instances.index(g))[3], load_model(g.model or dep.model))
