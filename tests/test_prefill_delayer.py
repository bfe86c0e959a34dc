"""SGLang's prefill delayer (sim/prefill_delayer.py, --enable-prefill-delayer) and SGLang's DeepSeek-V4 defaults
(its model hook: 256 running requests, 256-token pages)."""

from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import simulate
from phasewise.sim.deployment import collocated
from phasewise.sim.prefill_delayer import PrefillDelayer
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_kv import kv_block
from phasewise.specs.engines import resolve_engine
from phasewise.workload import client_workload

MOE = "openai/gpt-oss-120b"
V4 = "deepseek-ai/DeepSeek-V4-Flash"


def _instance(running: int, waiting: int, steps: int = 0, max_seqs: int = 256, prefilling: int = 0):
    """A stand-in for sim.instance.Instance with what PrefillDelayer reads."""
    return SimpleNamespace(decode_steps=steps, running=SimpleNamespace(n=running), waiting=[object()] * waiting,
                           prefilling=[object()] * prefilling, max_seqs=max_seqs)


def test_a_lone_prefillable_rank_waits_until_the_timeout():
    """Some ranks with a prompt and some without ('mixed'): the prompts wait max_delay_passes - 1 passes, and the
    next look lets them run (SGLang: delayed_count < max_delay_passes - 1 delays, else 'wait_timeout')."""
    delayer = PrefillDelayer(ranks=8, max_delay_passes=30)
    inst = _instance(running=250, waiting=100, steps=0)  # 6 free seats: 6 of 8 ranks could prefill
    assert delayer.holds(inst) and delayer.hold_steps == 29
    assert delayer.holds(inst)  # the same boundary asked again: the same answer
    inst.decode_steps = 10  # a request finished after 10 passes: still mixed, 19 passes left
    assert delayer.holds(inst) and delayer.hold_steps == 19
    inst.decode_steps = 29
    assert not delayer.holds(inst) and delayer.delayed_passes == 0  # timed out: they run, the count restarts


def test_prefills_run_at_once_when_every_rank_or_none_has_one_or_nothing_decodes():
    delayer = PrefillDelayer(ranks=8, max_delay_passes=30)
    assert not delayer.holds(_instance(running=248, waiting=100))  # 8 free seats: every rank prefills
    assert not delayer.holds(_instance(running=250, waiting=0, steps=1))  # nothing to prefill
    assert not delayer.holds(_instance(running=0, waiting=3, steps=2, max_seqs=256))  # every rank idle
    assert not delayer.holds(_instance(running=100, waiting=0, prefilling=8, steps=3))  # 8 prompts part-way
    assert delayer.holds(_instance(running=100, waiting=0, prefilling=2, steps=4))


def _dp_run(**knobs):
    # 32 clients over 4 DP ranks with lengths spread over [0.8 L, L]: completions, and so new prompts, come one
    # by one, so a rank's prompt rarely finds the other ranks with one
    work = client_workload("inferencex", 32, num_prompts=96, warmup=0, isl=2048, osl=256, seed=3)
    dep = collocated(MOE, "b200", tp=4, attention_dp=4, ep=4, engine="sglang", **knobs)
    res = simulate(dep, work, check_invariants=True)
    assert np.isfinite(res.finish_s).all()  # every request finished: no prompt waits forever
    return res


def test_the_delayer_gathers_prefills_and_frees_the_decodes_from_lone_ones():
    """With the delayer the ranks' prefills run together: fewer prefill passes stall the decodes, so the decode
    step time seen by a request (TPOT) falls while a prompt waits longer for its first token; every request still
    finishes with its own output length."""
    base, delayed = _dp_run(), _dp_run(enable_prefill_delayer=True)
    assert np.array_equal(base.output_tokens, delayed.output_tokens)
    assert np.nanmean(delayed.tpot_s) < 0.95 * np.nanmean(base.tpot_s)
    waited = np.nanmean(delayed.first_token_s - delayed.arrival_s) - np.nanmean(base.first_token_s - base.arrival_s)
    assert waited > 0
    assert waited < 30 * np.nanmean(base.tpot_s) * 2  # bounded by the timeout (30 passes), with slack


def test_the_delayer_needs_attention_dp_and_takes_its_pass_count():
    hw = load_hardware("b200")
    with pytest.raises(PhasewiseError, match="--enable-prefill-delayer .* needs --attention-dp of 2 or more"):
        resolve_engine("sglang", hw, {"enable_prefill_delayer": True})
    assert resolve_engine("sglang", hw, {"enable_prefill_delayer": True}, attention_dp=4).prefill_delayer == 30
    config = resolve_engine("sglang", hw, {"enable_prefill_delayer": True, "prefill_delayer_max_delay_passes": 5},
                            attention_dp=4)
    assert config.prefill_delayer == 5
    assert resolve_engine("sglang", hw, attention_dp=4).prefill_delayer is None  # off by default
    with pytest.raises(PhasewiseError, match="--prefill-delayer-max-delay-passes"):
        resolve_engine("sglang", hw, {"prefill_delayer_max_delay_passes": 0}, attention_dp=4)


def test_sglang_runs_deepseek_v4_with_its_model_hook_defaults():
    """SGLang's deepseek_v4 hook: 256 running requests unless asked (the instance's, over its DP ranks), pages of
    256 tokens whatever is asked; other models keep the KV-derived default."""
    hw, model = load_hardware("b200"), load_model(V4)
    config = resolve_engine("sglang", hw, model_type=model.model_type, kv_capacity_tokens=10_000_000)
    assert config.max_seqs == 256
    assert resolve_engine("sglang", hw, {"max_running_requests": 512}, model_type=model.model_type).max_seqs == 512
    assert resolve_engine("sglang", hw, kv_capacity_tokens=10_000_000).max_seqs == 4096  # the request pool
    assert kv_block(config, model, hw, None) == (256, "dsv4 attention backend")
    work = client_workload("sglang-bench", 600, num_prompts=600, warmup=0, isl=512, osl=64, seed=0)
    res = simulate(collocated(V4, "b200", tp=4, engine="sglang"), work)
    assert max(i["mean_batch_seqs"] for i in res.summary()["instances"]) <= 256


def test_the_exported_sglang_command_carries_the_delayer_and_v4_s_page():
    """`plan --export` / launch: the knobs become SGLang's own flags; DeepSeek-V4 on SGLang runs 256-token pages."""
    from phasewise.apps.launch import launch_commands
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": V4, "instances": [
        {"hardware": "b200", "tp": 4, "attention_dp": 4, "ep": 4, "engine": "sglang", "enable_prefill_delayer": True,
         "prefill_delayer_max_delay_passes": 12}]})
    (cmd,), _, _ = launch_commands(dep)
    argv = " ".join(cmd.argv)
    assert "--enable-prefill-delayer" in argv and "--prefill-delayer-max-delay-passes 12" in argv
    assert "--page-size 256" in argv


def test_the_planner_tries_the_delayer_on_sglang_s_attention_dp_layouts(monkeypatch):
    """`plan` under an SGLang version with the flag: every attention-DP layout also runs with the prefill delayer on,
    at the default token budget and at each --chunk-sizes budget (a strategy of its own, its deployment carrying the
    knob and that budget); tensor-parallel layouts, and other engines, do not get it. (No modelled SGLang has it
    yet: 0.5.5 is made to stand for one here, the sglang preset's knob_since for the flag moved to it;
    tests/test_launch_review_fixes2.py checks 0.5.5 leaves it out.)"""
    from phasewise.plan.strategies import PlanOptions, enumerate_strategies
    from phasewise.specs.engine_presets import preset_entry

    monkeypatch.setitem(preset_entry("sglang")["knob_since"], "enable_prefill_delayer", "0.5.5")

    opts = PlanOptions(engine="sglang", tp_options=(4,), chunk_sizes=(), disaggregated=False)
    strategies, _ = enumerate_strategies(MOE, "b200", 4, opts)
    delayed = [s for s in strategies if "prefill-delayer" in s.name]
    assert delayed and all("DP4" in s.name for s in delayed)
    assert all(s.deployment["instances"][0]["enable_prefill_delayer"] is True for s in delayed)
    assert {s.name.replace(" prefill-delayer", " default") for s in delayed} <= {s.name for s in strategies}
    chunked, _ = enumerate_strategies(MOE, "b200", 4, PlanOptions(engine="sglang", tp_options=(4,),
                                                                  chunk_sizes=(2048,), disaggregated=False))
    by_name = {s.name: s.deployment["instances"][0] for s in chunked}
    pairs = [(name, name.replace(" prefill-delayer", "")) for name in by_name
             if "chunked 2048 prefill-delayer" in name]
    assert pairs and all("DP4" in name for name, _ in pairs)
    for delayed_name, plain_name in pairs:  # the same budget, the delayer on
        assert by_name[delayed_name] == dict(by_name[plain_name], enable_prefill_delayer=True)
    vllm, _ = enumerate_strategies(MOE, "b200", 4, PlanOptions(engine="vllm", tp_options=(4,), chunk_sizes=(),
                                                                disaggregated=False))
    assert not [s for s in vllm if "prefill-delayer" in s.name]
