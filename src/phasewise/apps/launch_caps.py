"""What a launch command sets so that the engine it launches runs as the plan simulated, where that engine's own
defaults differ from the simulated preset's: the launched engine's defaults for the group (launched_default, which
launch_vllm_caps.vllm_simulated_caps compares vLLM's caps against too), prefix caching (one rule for the three
engines: prefix_caching_setting) and TensorRT-LLM's token budget and chunked prefill (trtllm_simulated_caps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.schedulers.trtllm import runs_long_prompts
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_caps import rank_share
from phasewise.specs.engine_kv import prefix_caching_default
from phasewise.specs.engines import resolve_engine


def launched_default(dep: Deployment, g: InstanceGroup, family: str, knobs: dict[str, Any] | None = None,
                     max_model_len: int | None = None):
    """The engine `family` (vllm | sglang | trtllm: the command's) as it runs the group with `knobs` and nothing else
    set: its preset's defaults at the default version (the engine a script launches: apps/launch_args.py
    launch_version), for the group's chip, layout and role, at `max_model_len` (None: the model's context)."""
    model = load_model(g.model or dep.model)
    return resolve_engine(family, load_hardware(g.hardware), knobs=knobs or {}, pp=g.pp, role=g.role,
                          attention_dp=g.attention_dp or 1, tp=g.tp, model_type=model.model_type,
                          max_model_len=max_model_len or model.max_position_embeddings or None)


def prefix_caching_setting(dep: Deployment, g: InstanceGroup, family: str, engine) -> bool | None:
    """Whether the command turns prefix caching on (True) or off (False); None where the launched engine's own
    default is what was simulated. The group's prefix_caching where it sets one; else the simulated engine's
    (`engine`, build_group's: its preset's default for the model, specs/engine_kv.py prefix_caching_default) where
    the launched engine's default differs: vllm-v0, sarathi and trtllm-0.5 were simulated without a prefix cache,
    which vLLM 0.14 (enable_prefix_caching on for generative models), trtllm-serve (KvCacheConfig.enable_block_reuse
    default True) and SGLang (its radix cache, on unless --disable-radix-cache) would otherwise run."""
    if g.prefix_caching is not None:
        return g.prefix_caching
    launched = prefix_caching_default(launched_default(dep, g, family), load_model(g.model or dep.model))
    return engine.prefix_caching if engine.prefix_caching != launched else None


@dataclass(slots=True)
class TrtllmCaps:
    """trtllm_simulated_caps' answer: the arguments, the options-YAML keys, and what differs from the simulation
    (said at the command and in the script's header)."""

    argv: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    differs: list[str] = field(default_factory=list)


def trtllm_simulated_caps(dep: Deployment, g: InstanceGroup, engine, knobs: dict[str, Any],
                          longest_prompt: int | None) -> TrtllmCaps:
    """--max_batch_size and --max_num_tokens as simulated (each attention-DP rank's, as trtllm-serve reads them),
    written whatever the launched release's defaults (trtllm-serve's 2048 / 8192 in 1.x serve.py; a preset of another
    release, trtllm-0.5's 16,384-token budget, runs with its own only so), unless `knobs` (the group's, written
    beside) give them; and chunked prefill where the simulated preset ran a prompt longer than its budget whole
    (sim/schedulers/trtllm.py RUNS_LONG_PROMPTS: trtllm-0.5, trtllm-bench) and the plan's prompts may be longer
    (`longest_prompt` beyond the budget; not known: the model's context beyond it): trtllm-serve without chunked
    prefill refuses such a prompt (the PyTorch LLM API's _check_arguments, "should not exceed max_num_tokens": HTTP 400; TrtllmScheduler.refusal),
    so the command turns chunking on at the simulated budget and says what differs."""
    dp = g.attention_dp or 1
    seqs, budget = rank_share(engine.max_seqs, dp), rank_share(engine.token_budget, dp)
    out = TrtllmCaps()
    for flag, value in (("max_batch_size", seqs), ("max_num_tokens", budget)):
        if flag not in knobs:
            out.argv += [f"--{flag}", str(value)]
    budget = int(knobs.get("max_num_tokens", budget))
    if engine.chunked_prefill or not runs_long_prompts(engine.engine) or knobs.get("enable_chunked_prefill"):
        return out
    context = load_model(g.model or dep.model).max_position_embeddings
    if (longest_prompt if longest_prompt is not None else context or budget + 1) <= budget:
        return out
    out.options["enable_chunked_prefill"] = True
    reach = (f"the plan's prompts reach {longest_prompt:,} tokens" if longest_prompt is not None else
             "the plan's longest prompt is not known here" + (f" (the model's context: {context:,} tokens)"
                                                               if context else ""))
    out.differs.append(
        f"TensorRT-LLM enable_chunked_prefill true (extra-llm-api-{g.role}-*.yaml), which the plan did not simulate: "
        f"{g.engine} ran a prompt longer than its {budget:,}-token budget whole, alone in its step "
        f"(sim/schedulers/trtllm.py RUNS_LONG_PROMPTS), which trtllm-serve refuses without chunked prefill (HTTP 400: "
        f"the LLM API's max_num_tokens check), and {reach}; so such a prompt runs in {budget:,}-token chunks over "
        "several steps instead (its TTFT and its neighbours' steps are not the plan's)")
    return out
