"""TensorRT-LLM holding context requests back: attention-DP balance and batch waiting (sim/context_wait.py),
the overlap scheduler off on disaggregated context servers, and the knobs' errors."""

from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import simulate
from phasewise.sim.context_wait import ContextWait
from phasewise.sim.deployment import collocated, disaggregated
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine
from phasewise.workload import Workload, client_workload

MOE = "openai/gpt-oss-120b"
DENSE = "meta-llama/Llama-3.1-8B"


def _instance(ranks: int, running: int, waiting: int, prompt: int = 1024, steps: int = 0, max_seqs: int = 2048):
    """A stand-in for sim.instance.Instance with what ContextWait reads."""
    req = SimpleNamespace(prefill_target=prompt, prefilled=0)
    return SimpleNamespace(decode_steps=steps, running=SimpleNamespace(n=running), waiting=[req] * waiting,
                           prefilling=[], max_seqs=max_seqs, decode_new_tokens=1,
                           cost=SimpleNamespace(layout=SimpleNamespace(attention_dp=ranks)))


def _wait(adp=None, batch=None, budget=8192):
    return ContextWait(SimpleNamespace(adp_balance=adp, batch_wait=batch, token_budget=budget))


def test_adp_balance_holds_a_lone_prompt_until_the_count_wraps():
    # TensorRT-LLM py_executor._balance_adp_requests: the count grows each iteration not every rank has a
    # context; a lone prompt runs when it reaches timeout_iters
    wait = _wait(adp=(60, 0))
    inst = _instance(ranks=8, running=64, waiting=1, steps=0)
    assert wait.holds(inst) and wait.count == 1 and wait.hold_steps == 59
    inst.decode_steps = 59  # the instance looks again where the hold would end
    assert not wait.holds(inst) and wait.count == 0


def test_adp_balance_count_runs_on_while_nothing_waits():
    # 25 iterations passed with no prompt waiting since the last look: the count stood at 25 + 1 when one came
    wait = _wait(adp=(60, 0))
    wait.holds(_instance(ranks=8, running=64, waiting=8, steps=0))  # every rank has one: they run, count 0
    inst = _instance(ranks=8, running=64, waiting=1, steps=26)
    assert wait.holds(inst) and wait.count == 26 and wait.hold_steps == 34


def test_adp_balance_runs_prompts_once_every_rank_has_one_or_a_rank_idles():
    wait = _wait(adp=(60, 0))
    assert not wait.holds(_instance(ranks=8, running=64, waiting=8, steps=3))
    assert not wait.holds(_instance(ranks=8, running=5, waiting=1, steps=4))  # a rank has nothing to decode
    assert not _wait(adp=(60, 0)).holds(_instance(ranks=1, running=64, waiting=1))  # no attention DP: no balance


def test_adp_batching_wait_holds_full_rounds_for_more():
    wait = _wait(adp=(50, 2))
    inst = _instance(ranks=4, running=32, waiting=4, steps=10)
    assert wait.holds(inst) and wait.hold_steps == 1
    inst.decode_steps = 11
    assert wait.holds(inst)
    inst.decode_steps = 12
    assert not wait.holds(inst)  # batching_wait_iters (2) waited: they run


def test_batch_wait_until_the_timeout_or_the_token_share():
    wait = _wait(batch=(3, 0.5), budget=8192)
    inst = _instance(ranks=1, running=16, waiting=1, prompt=1024, steps=0)
    assert wait.holds(inst) and wait.hold_steps == 3  # 1040 tokens < 0.5 x 8192: wait up to 3 iterations
    inst.decode_steps = 3
    assert not wait.holds(inst)
    assert not _wait(batch=(3, 0.5)).holds(_instance(ranks=1, running=16, waiting=4, prompt=1024))  # 4112 tokens
    assert not _wait(batch=(3, 0.5)).holds(_instance(ranks=1, running=0, waiting=1))  # no decodes: no wait


def _moe_ttft(**knobs) -> tuple[float, float]:
    # 8 clients, lengths spread over [0.8 L, L] (InferenceX's client): completions, and so new prompts, come one
    # by one, tens of iterations apart, so a rank's prompt rarely finds every other rank with one
    work = client_workload("inferencex", 8, num_prompts=40, warmup=0, isl=1024, osl=1024, seed=1)
    dep = collocated(MOE, "b200", tp=4, attention_dp=4, ep=4, engine="trtllm", **knobs)
    res = simulate(dep, work, check_invariants=True)
    assert np.isfinite(res.finish_s).all()  # every request finished: no prompt waits forever
    return float(np.nanmean(res.first_token_s - res.arrival_s)), float(np.nanmean(res.tpot_s))


def test_adp_balance_trades_ttft_for_synchronised_prompts():
    base_ttft, base_tpot = _moe_ttft()
    held_ttft, held_tpot = _moe_ttft(attention_dp_enable_balance=True, attention_dp_timeout_iters=60,
                                     attention_dp_batching_wait_iters=0)
    step_s = base_tpot
    assert held_ttft > base_ttft + 10 * step_s  # prompts wait iterations for the other ranks
    assert held_ttft < base_ttft + 61 * step_s  # never past the timeout
    assert abs(held_tpot / base_tpot - 1) < 0.25


def test_balance_without_attention_dp_is_refused():
    """Without attention DP TensorRT-LLM never balances (py_executor.py _schedule): the flag would change nothing."""
    work = client_workload("inferencex", 16, num_prompts=48, warmup=0, isl=512, osl=64)
    with pytest.raises(PhasewiseError, match="--attention-dp-enable-balance .* needs --attention-dp of 2 or more"):
        simulate(collocated(DENSE, "h100-sxm", engine="trtllm", attention_dp_enable_balance=True), work)


def test_batch_waiting_delays_a_lone_prompt_beside_decodes():
    work = Workload(np.array([0.0, 0.5]), np.array([512, 64]), np.array([3000, 4]))
    runs = [simulate(collocated(DENSE, "h100-sxm", engine="trtllm", **kw), work, check_invariants=True)
            for kw in ({}, {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.5})]
    step_s = float(runs[0].tpot_s[0])
    delay = (runs[1].first_token_s[1] - runs[0].first_token_s[1]) / step_s
    assert 18 <= delay <= 22  # 20 iterations beside the decoder (its 64 tokens never reach half the budget)


def test_context_servers_run_without_the_overlap_scheduler():
    hw = load_hardware("h100-sxm")
    assert resolve_engine("trtllm", hw).profile.overlap_scheduling
    assert not resolve_engine("trtllm", hw, role="prefill").profile.overlap_scheduling
    assert resolve_engine("trtllm", hw, role="decode").profile.overlap_scheduling
    assert resolve_engine("trtllm", hw, {"disable_overlap_scheduler": False}, role="prefill").profile.overlap_scheduling
    assert not resolve_engine("trtllm", hw, {"disable_overlap_scheduler": True}).profile.overlap_scheduling
    work = client_workload("genai-perf", 4, num_prompts=8, warmup=0, isl=1024, osl=32)
    res = simulate(disaggregated(DENSE, "h100-sxm", 1, 1, engine="trtllm"), work, check_invariants=True)
    assert np.isfinite(res.finish_s).all()


@pytest.mark.parametrize("knobs, message", [
    ({"attention_dp_timeout_iters": 0}, "--attention-dp-timeout-iters must be an integer >= 1"),
    ({"attention_dp_batching_wait_iters": -1}, "--attention-dp-batching-wait-iters must be an integer >= 0"),
    ({"batch_wait_max_tokens_ratio": 1.5}, "--batch-wait-max-tokens-ratio must be a number from 0 to 1"),
    ({"attention_dp_enable_balance": "yes"}, "--attention-dp-enable-balance must be true or false"),
])
def test_bad_waiting_knobs_are_one_line_errors(knobs, message):
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine("trtllm", load_hardware("h100-sxm"), knobs)


def test_waiting_knobs_are_trtllm_s():
    with pytest.raises(PhasewiseError, match="--attention-dp-enable-balance is not a knob of vllm"):
        resolve_engine("vllm", load_hardware("h100-sxm"), {"attention_dp_enable_balance": True})
