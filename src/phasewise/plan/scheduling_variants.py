"""The ways a plan schedules a collocated instance: the sequence caps it tries on a chip and how a strategy's name
gives them, each engine's scheduling variants (its default token budget, each chunk size, vLLM V0's prefill-first
baseline, SGLang's prefill delayer under attention DP where the modelled release has it), and whether a group's token
budget holds a speculative decode step."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.perf.parallel import LAYOUT_FLAGS
from phasewise.plan.options import PlanOptions
from phasewise.sim.simulate import spec_budget_refusal
from phasewise.specs.catalog import looks_like_path
from phasewise.specs.engine_kv import version_key
from phasewise.specs.engine_presets import knob_since, preset_entry, preset_release
from phasewise.specs.engine_refusals import layout_refusal
from phasewise.specs.engines import (
    caps_per_rank,
    default_seq_cap,
    engine_knobs,
    graph_knobs,
    knob_values,
    resolve_engine,
)

# Schedulers that keep prompts whole unless a variant turns chunking on (specs/engine_config.py build_engine_config:
# vLLM V0's always; TensorRT-LLM's enable_chunked_prefill defaults to false, and trtllm-0.5 has no such knob): a token
# budget variant of theirs is named 'budget N' (whole prompts within N tokens a step), not 'chunked N'
WHOLE_PROMPT_SCHEDULERS = ("vllm-v0", "trtllm")


def group_spec_budget_refusal(engine_fields: dict[str, Any], hw, model, tp: int, pp: int, layout: dict[str, Any],
                         draft_tokens: int, role: str = "collocated") -> str | None:
    """Why a group of `role` with `engine_fields` cannot speculate `draft_tokens` drafts (sim/simulate.py
    spec_budget_refusal on the engine resolved as the simulation resolves it: its default token budget below the
    cap x (k + 1)), or None; an engine the simulation refuses otherwise is left to its own error."""
    knobs = {key: value for key, value in engine_fields.items() if key != "engine" and value is not None}
    try:
        engine = resolve_engine(engine_fields["engine"], hw, knobs, pp=pp, role=role, speculative_draft="mtp",
                                attention_dp=layout.get("attention_dp", 1), tp=tp, vision=model.vision,
                                model_type=model.model_type, max_model_len=model.max_position_embeddings or None)
    except PhasewiseError:
        return None
    return spec_budget_refusal(engine, draft_tokens)


def plan_caps(opts: PlanOptions, hw) -> list[int | None]:
    """The sequence caps a plan tries on chip `hw`: --batch-caps, then (opts.engine_default_cap) the engine's own
    default cap there where it is not among them (specs/engines.py default_seq_cap; None: the engine sizes it from
    its KV pool, SGLang's), each as the engine's own flag reads it (caps_per_rank)."""
    caps: list[int | None] = list(opts.batch_caps)
    own = default_seq_cap(opts.engine, hw) if opts.engine_default_cap else 0
    if own != 0 and own not in caps:
        caps.append(own)
    return caps


def cap_label(engine: str, cap: int | None, attention_dp: int = 1) -> str:
    """How a strategy's name gives its sequence cap: b256; b256/rank where the engine reads it per attention-DP
    rank (caps_per_rank: vLLM, TensorRT-LLM), the instance then holding attention_dp times it; bauto for the
    engine's own cap sized by its KV pool (SGLang's --max-running-requests unset)."""
    if cap is None:
        return "bauto"
    return f"b{cap}/rank" if attention_dp > 1 and caps_per_rank(engine) else f"b{cap}"


def scheduling_variants(opts: PlanOptions, cap: int | None, tokens_per_step: int = 1, tp: int = 1,
                         layout: dict[str, Any] | None = None,
                         pruned: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(label, engine fields) of each way to schedule a collocated instance of `tp` GPUs in `layout` with a
    sequence cap of `cap` (None: the engine's own) and decode steps of `tokens_per_step` tokens (speculative
    decoding: draft + 1): the engine with its default token budget; with each of --chunk-sizes as its budget
    (chunking on) where it holds a full decode step (with attention DP on vLLM or TensorRT-LLM, whose budget is
    each rank's, also exactly one full decode step of the rank: the ranks step together); for vLLM, V0's
    prefill-first scheduler as the unchunked baseline (where V0 runs the layout: none with expert or
    attention-data parallelism, a pruned line); and for SGLang with attention DP each of those budgets again with
    its prefill delayer on (the ranks prefill together: sim/prefill_delayer.py), where the modelled release has the
    delayer (specs/engine_presets.py knob_since; else a pruned line). `cap` and the chunk sizes are written as the
    engine's flags read them (per attention-DP rank on vLLM and TensorRT-LLM, the instance's on SGLang:
    specs/engine_caps.py caps_per_rank), and so named ('chunked 2048/rank'; 'budget 2048' where the engine keeps
    prompts whole, WHOLE_PROMPT_SCHEDULERS)."""
    layout = layout or {}
    attention_dp = layout.get("attention_dp", 1)
    per_rank = "/rank" if attention_dp > 1 and caps_per_rank(opts.engine) else ""
    # decode graphs up to the cap, as a tuned deployment sets them (each rank's where the cap is)
    graphs = graph_knobs(opts.engine, cap) if cap is not None else {}
    out = [(f"{opts.engine} default", dict(engine=opts.engine, **knob_values(opts.engine, cap), **graphs))]
    chunk_on = {"enable_chunked_prefill": True} if "enable_chunked_prefill" in engine_knobs(opts.engine) else {}
    cuts_prompts = bool(chunk_on) or preset_entry(opts.engine)["scheduler"] not in WHOLE_PROMPT_SCHEDULERS
    chunks = list(opts.chunk_sizes)
    if per_rank and cap is not None and cap * tokens_per_step not in chunks:
        # attention-DP ranks step together: one rank's prefill chunk holds up every rank's decodes, so the smallest
        # budget the engine takes, one full decode step of the rank's cap (vLLM refuses a smaller one), is tried too
        chunks.insert(0, cap * tokens_per_step)
    for chunk in chunks:
        if cap is None or chunk >= cap * tokens_per_step:  # a budget below a full decode step would starve prefills
            knobs = knob_values(opts.engine, cap, chunk)
            out.append((f"{'chunked' if cuts_prompts else 'budget'} {chunk}{per_rank}",
                        dict(engine=opts.engine, **knobs, **graphs, **chunk_on)))
    if opts.engine.split("@")[0] == "vllm":
        refusal = layout_refusal("vllm-v0", tp, layout.get("ep"), None, attention_dp, LAYOUT_FLAGS)
        if refusal is None:
            out.append(("prefill-first", dict(engine="vllm-v0", **knob_values("vllm-v0", cap))))
        elif pruned is not None:
            pruned.append(f"collocated tp={tp} prefill-first {cap_label(opts.engine, cap, attention_dp)}: {refusal}")
    if attention_dp > 1 and "enable_prefill_delayer" in engine_knobs(opts.engine):  # beside each token budget
        lacks = _release_lacking(opts.engine, "enable_prefill_delayer")
        if lacks is None:
            out += [(label.replace(" default", "") + " prefill-delayer", dict(fields, enable_prefill_delayer=True))
                    for label, fields in list(out) if fields["engine"] == opts.engine]
        elif pruned is not None:
            pruned.append(f"collocated tp={tp} prefill-delayer {cap_label(opts.engine, cap, attention_dp)}: {lacks}")
    return out


def _release_lacking(engine: str, knob: str) -> str | None:
    """Why `engine` (preset[@version], or an engine file that refines a preset) as modelled cannot launch the variant
    of `knob`: its version (specs/engine_presets.py preset_release, the version launch.sh names too: an engine
    file's own `preset:` version) is before the first release with the knob's flag (knob_since, the release
    launch.sh also gates the flag on: apps/data/engine_flags.yaml), which could not launch it; or None."""
    since = knob_since(engine, knob)
    preset, version = preset_release(engine)
    if since is None or version_key(version) >= version_key(since):
        return None
    later = [v for v in preset_entry(engine)["versions"] if version_key(v) >= version_key(since)]
    file = engine.partition("@")[0]
    name = file if looks_like_path(file) else preset  # an engine file at a later version: FILE@VERSION
    return (f"not planned: --{knob.replace('_', '-')} needs {preset} >= {since}, and {preset}@{version} (the version "
            f"modelled) has no such argument; " + (f"--engine {name}@{later[0]} plans it" if later else
                                                   f"no {preset} version modelled has it"))
