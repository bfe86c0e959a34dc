"""Serving-engine presets: `--engine vllm | sglang | trtllm | vllm-v0 | ...[@version]` resolved, for one
GPU and entry point, into the scheduler to run and the values of its knobs (data in engine_presets.yaml).

A knob is named as its engine names it (`max_num_batched_tokens`, `chunked_prefill_size`,
`max_num_tokens`); `EngineConfig` carries both those names (for display and errors) and the generic
quantities the simulator's schedulers read (token budget, sequence cap, chunking, admission rule).

This module resolves an engine name, version and the user's knobs (resolve_engine); each knob's type and the knobs
refused: specs/engine_knob_checks.py; EngineConfig and each scheduler's build: specs/engine_config.py; the generic
caps in each engine's knob names: specs/engine_caps.py; DeepEP's all-to-all: specs/engine_deepep.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from phasewise.errors import PhasewiseError, unknown_name
from phasewise.specs.catalog import looks_like_path, packaged, read_user_file
from phasewise.specs.engine_caps import (  # noqa: F401 (importable here, as before)
    CAP_KNOBS,
    PER_RANK_KNOBS,
    cap_knob,
    caps_per_rank,
    engine_knobs,
    graph_knobs,
    instance_seqs,
    knob_values,
    rank_share,
)
from phasewise.specs.engine_config import (  # noqa: F401 (importable here, as before)
    HICACHE_WRITES,
    SCHEDULERS,
    SGLANG_DP_ATTENTION_SOURCE,
    SGLANG_DP_CONSERVATIVENESS,
    SGLANG_REQUEST_POOL,
    EngineConfig,
    build_engine_config,
    memory_fraction_of,
    sglang_request_pool,
)
from phasewise.specs.engine_deepep import (  # noqa: F401 (importable here, as before)
    DEEPEP_BUFFERS,
    DEEPEP_CHOICE,
    DEEPEP_KNOBS,
    deepep_choice,
    deepep_fields,
    takes_deepep,
)
from phasewise.specs.engine_defaults import (
    sglang_memory_fraction,
    sglang_memory_fraction_by_memory,
    sglang_vision_factor,
    vllm_batch_caps,
)
from phasewise.specs.engine_knob_checks import (  # noqa: F401 (importable here, as before)
    KNOB_CHOICES,
    KNOB_RANGES,
    KNOB_TYPES,
    async_scheduling_in_force,
    check_knob,
    refuse_idle_knobs,
    refuse_short_unchunked_budget,
)
from phasewise.specs.engine_presets import preset_entry, version_table
from phasewise.specs.engine_refusals import (
    pipeline_rule_refusal,
    vendor_refusal,
)
from phasewise.specs.hardware import HardwareSpec, engine_file_preset, load_engine
from phasewise.specs.vision import VisionEncoder

ENTRY_POINTS = ("server", "offline")
GIB = 1024**3


def default_seq_cap(engine: str, hw: HardwareSpec, tp: int = 1) -> int | None:
    """The sequence cap the engine runs with when its flag is not given (the preset's default for this GPU: vLLM
    0.14's --max-num-seqs 1024 on a GPU of 70 GB or more, TensorRT-LLM 1.1's max_batch_size 2048), in the flag's
    own meaning (caps_per_rank); None where the engine derives it from its KV pool (SGLang's max_running_requests
    left unset: specs/engine_config.py build_engine_config)."""
    return resolve_engine(engine, hw, tp=tp).knobs.get(cap_knob(engine, "max_seqs"))


def _pick(rule: Any, hw: HardwareSpec, entry_point: str, tp: int = 1) -> Any:
    """A default's value for this GPU, entry point and tensor-parallel size (see the forms in engine_presets.yaml)."""
    if isinstance(rule, dict) and set(rule) <= set(ENTRY_POINTS):
        rule = rule[entry_point]
    if isinstance(rule, dict) and "by_memory_gib" in rule:
        for prefix, value in (rule.get("except") or {}).items():
            if hw.key.lower().startswith(prefix):
                return value
        gib = hw.memory_capacity_bytes / GIB
        for limit, value in rule["by_memory_gib"]:
            if limit is None or gib < limit:
                rule = value
                break
    if isinstance(rule, dict) and "from_tp_4" in rule:
        return rule["below_tp_4"] if tp < 4 else rule["from_tp_4"]
    if isinstance(rule, dict) and "value" in rule:
        return rule["value"]
    return rule


def role_knobs(engine: str, role: str) -> dict[str, Any]:
    """The knob values a preset takes by default in a deployment role (`role_defaults` in engine_presets.yaml:
    TensorRT-LLM's context servers run without the overlap scheduler), which the user's knobs override."""
    return dict((preset_entry(engine).get("role_defaults") or {}).get(role) or {})


def resolve_engine(engine: str, hw: HardwareSpec, knobs: dict[str, Any] | None = None,
                   entry_point: str = "server", pp: int = 1, kv_capacity_tokens: int | None = None,
                   role: str = "collocated", speculative_draft: str | None = None,
                   attention_dp: int = 1, tp: int = 1, vision: VisionEncoder | None = None,
                   model_type: str | None = None, max_model_len: int | None = None) -> EngineConfig:
    """`engine` (preset[@version], a profile key, or a profile YAML) on `hw`, with the user's knobs, for an
    instance in `role` (collocated, prefill or decode); `speculative_draft` is the deployment's draft ('mtp' or a
    draft model id; None without speculative decoding); `attention_dp` its attention data-parallel ranks, `tp` its
    GPUs per pipeline stage (SGLang's defaults follow both); `vision` the model's vision encoder (SGLang lowers its
    default memory fraction for one); `model_type` the model's (config.json), for the knob defaults an engine sets
    for that model alone (the preset's `model_knob_defaults`: SGLang's 256 running requests for DeepSeek-V4);
    `max_model_len` the context the deployment serves (the model's: vLLM's max_model_len, SGLang's context_len),
    which vLLM's budget without chunked prefill and SGLang's request pool follow (None: not known)."""
    knobs = {k: v for k, v in (knobs or {}).items() if v is not None}
    if entry_point not in ENTRY_POINTS:
        raise PhasewiseError(f"entry_point '{entry_point}' is not one of {', '.join(ENTRY_POINTS)}")
    presets = packaged("engine_presets.yaml")["presets"]
    name, at, version = engine.partition("@")
    given = version if at else None  # `name@` gives an empty version: unknown, as any other (_version_table)
    key = name.lower()
    bare = False  # a host profile alone keeps its own CUDA-graph and overlap settings
    file_preset = engine_file_preset(name) if looks_like_path(name) else None
    if key in presets:
        entry = presets[key]
        profile = load_engine(entry["profile"])
    elif file_preset is not None:
        # a file that refines a preset: the preset as it runs, the file's host constants over its profile's
        preset, _, preset_version = file_preset.partition("@")
        entry, profile = presets[preset.lower()], load_engine(name)
        key, version = name, preset_version if given is None else given
    elif looks_like_path(engine) or key in packaged("engines.yaml")["engines"]:
        # A bare host profile (e.g. what `phasewise calibrate` writes): scheduled as its file says, else vLLM V1.
        profile = load_engine(engine)
        sched = _file_scheduler(engine) if looks_like_path(engine) else "vllm"
        entry = presets[sched]  # every scheduler has a preset of its own name
        key, version, bare = engine, entry["default_version"] if given is None else given, True
    else:
        raise unknown_engine(engine)
    if given is None:
        version = version or entry["default_version"]
    refusal = vendor_refusal(engine, hw)  # None for a bare profile: only presets name vendors
    if refusal:
        raise PhasewiseError(refusal)
    table = version_table(name, entry, version)
    allowed = entry["knobs"]
    for knob, value in knobs.items():
        if knob not in allowed:
            raise PhasewiseError(f"--{knob.replace('_', '-')} is not a knob of {name} "
                                 f"(its knobs: {', '.join('--' + k.replace('_', '-') for k in allowed)})")
        check_knob(knob, value)
        fixed = table.get(knob)
        if isinstance(fixed, dict) and "fixed" in fixed and value != fixed["value"]:
            raise PhasewiseError(f"--{knob.replace('_', '-')}={value} is not possible on {name}@{version}: {fixed['fixed']}")
    values = {k: _pick(table[k], hw, entry_point, tp) for k in allowed if k in table}
    values.update({k: v for k, v in role_knobs(name, role).items() if k in allowed})
    model_defaults = (entry.get("model_knob_defaults") or {}).get(model_type) or {}
    values.update({k: v for k, v in model_defaults.items() if k in allowed})
    values.update(knobs)
    pipeline = table.get("pipeline_parallel") or {}  # what the version does beside PP > 1 (SGLang's rules)
    refusal = pipeline_rule_refusal(f"{name}@{version}", pipeline, pp, speculative_draft is not None,
                                bool(values.get("enable_mixed_chunk")))
    if refusal:
        raise PhasewiseError(refusal)
    # what the version does with speculative decoding (the table's `speculative`: SGLang's mixed chunk forced off and
    # its running requests capped where not given; its overlap scheduler below)
    speculating = (table.get("speculative") or {}) if speculative_draft is not None else {}
    if "enable_mixed_chunk" in speculating:
        if knobs.get("enable_mixed_chunk") and not speculating["enable_mixed_chunk"]:
            # SGLang srt/server_args.py (_handle_speculative_decoding; EAGLE, EAGLE3, NEXTN and STANDALONE): "Mixed
            # chunked prefill is disabled because of using eagle speculative decoding" (a warning, then off)
            raise PhasewiseError(f"--enable-mixed-chunk is not possible with speculative decoding (--spec-tokens) on "
                                 f"{name}@{version}: SGLang turns mixed chunks off under speculative decoding; drop "
                                 "one of them")
        values["enable_mixed_chunk"] = speculating["enable_mixed_chunk"]
    if "max_running_requests" in speculating and values.get("max_running_requests") is None:
        values["max_running_requests"] = speculating["max_running_requests"]
    if "piecewise_cuda_graph_max_tokens" in knobs and not values.get("enable_piecewise_cuda_graph"):
        raise PhasewiseError("--piecewise-cuda-graph-max-tokens sizes SGLang's piecewise CUDA graphs: it needs "
                             "--enable-piecewise-cuda-graph")
    refuse_idle_knobs(knobs, values, attention_dp)
    if "async_scheduling" in table:
        values["async_scheduling"] = async_scheduling_in_force(
            f"{name}@{version}", bool(_pick(table["async_scheduling"], hw, entry_point)),
            table.get("async_speculation", "none"), knobs.get("async_scheduling"), pp, speculative_draft)
    sched = entry["scheduler"]
    if sched in ("vllm", "shortest-prefill"):  # the version's EngineArgs fill the caps not given
        chunked = values.get("enable_chunked_prefill", True)
        if not chunked and max_model_len and "max_num_batched_tokens" in knobs:
            refuse_short_unchunked_budget(knobs["max_num_batched_tokens"], max_model_len)
        values["max_num_batched_tokens"], values["max_num_seqs"] = vllm_batch_caps(
            table.get("batch_caps"), values["max_num_batched_tokens"], values["max_num_seqs"],
            "max_num_batched_tokens" in knobs, "max_num_seqs" in knobs, chunked, max_model_len)
    config = build_engine_config(key, version, sched, profile, values, table, hw, pp, kv_capacity_tokens,
                                 attention_dp, max_model_len)
    config = replace(config, role=role)
    # the version runs speculative decoding (SGLang), or PP > 1 (SGLang: "Pipeline parallelism is incompatible with
    # overlap schedule"), without the overlap
    if speculating.get("overlap_scheduler") is False or (pp > 1 and pipeline.get("overlap_scheduler") is False):
        config = replace(config, profile=config.profile.model_copy(update={"overlap_scheduling": False}))
    if sched == "sglang":  # its --mem-fraction-static default: by the GPU's memory alone before PR #10975, then by
        # the chunk, the graphs and the layout (engine_presets.yaml `mem_fraction_static_rule`)
        fraction = sglang_memory_fraction_by_memory(hw.memory_capacity_bytes, tp, pp, attention_dp, speculative_draft) \
            if table.get("mem_fraction_static_rule") == "by_memory" else sglang_memory_fraction(
                hw.memory_capacity_bytes, values["chunked_prefill_size"], values["cuda_graph_max_bs"], tp, pp,
                attention_dp, speculative_draft)
        config = replace(config, memory_fraction=fraction * (
            1.0 if vision is None else sglang_vision_factor(vision.depth, vision.hidden_size)))
    if bare:
        config = replace(config, profile=profile)
    return config


MAIN_PRESETS = ("vllm", "sglang", "trtllm")  # listed first where an engine name is unknown


def engine_names() -> tuple[list[str], list[str]]:
    """(every preset, vLLM, SGLang, TensorRT-LLM first; the host profiles that are not also presets), as
    engine_presets.yaml and engines.yaml list them: what --engine takes, for its errors and its help."""
    presets = list(packaged("engine_presets.yaml")["presets"])
    profiles = [name for name in packaged("engines.yaml")["engines"] if name not in presets]
    return [*MAIN_PRESETS, *(name for name in presets if name not in MAIN_PRESETS)], profiles


def unknown_engine(engine: str) -> PhasewiseError:
    """The one-line error for an engine name that is neither a preset, a host profile nor a file: the closest names
    (unknown_name), then every preset and the host profiles that are not also presets (engine_names), each once and
    none cut off."""
    ordered, profiles = engine_names()
    closest = str(unknown_name("engine", engine, ordered + profiles)).split(" (known: ", 1)[0]
    return PhasewiseError(f"{closest} (presets: {', '.join(ordered)}; host profiles: {', '.join(profiles)}; or an "
                          "engine YAML file)")


def _file_scheduler(path: str) -> str:
    entry = next(iter((read_user_file(path, "engine").get("engines") or {None: {}}).values()), {}) or {}
    sched = entry.get("scheduler", "vllm") if isinstance(entry, dict) else "vllm"
    if sched not in SCHEDULERS:
        raise PhasewiseError(f"engine file '{path}': scheduler '{sched}' is not one of {', '.join(SCHEDULERS)}")
    return sched
