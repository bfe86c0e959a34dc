"""Review fixes (papers13): Alchemist's hedged offload, partly recorded batches and the kept layers' memory;
ODB-dLLM's jump-share as the released code runs it and the ridge its flat-forward check prints."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.perf.dllm import DllmCost
from phasewise.perf.training import exposed_reload_s, layer_saved_bytes_per_token, training_step
from phasewise.scenarios.odb_dllm import model_ridge_tokens, ridge_text
from phasewise.sim import simulate
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment
from phasewise.sim.dllm_request import STEP, plan_request
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.dllm import decoding

LLAMA = "meta-llama/Llama-3.1-8B"


def _llama_tp4() -> CostModel:
    return CostModel(load_model(LLAMA), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"), tp=4)


# --- 1. the hedged offload's reload runs while the kept layers' backward does -----------------------------------
def test_reloads_start_as_kept_layers_free_their_slots():
    """5 layers, 3 kept (3 slots), backward 1 s a layer, reload 1.5 s: layer 1's reload takes the slot layer 4's
    backward frees at 1 s and arrives at 2.5 (needed at 3), layer 0's the slot of layer 3 (free at 2), arriving
    at 4.0 (needed at 4): nothing waits. (Reloading only once the layer above starts waited 1 s.)"""
    assert exposed_reload_s(1.0, 0.0, 5, 3, 1.5) == pytest.approx(0.0)
    # below two kept layers the two slots hold one computing, one arriving: 4 layers, none kept, reload 1.5 s
    # layer 3 arrives at 1.5, layer 2 at 3.0, layer 1 (slot of layer 3, free at 2.5) at 4.5, layer 0 at 6.0
    assert exposed_reload_s(1.0, 0.0, 4, 0, 1.5) == pytest.approx(1.5 + 0.5 + 0.5 + 0.5)


def test_keep_18_hides_the_reload_by_the_reviewers_arithmetic():
    """Llama-3.1-8B at TP4, one 8192-token batch: a layer's reload 9.51 ms, its backward 4.49 ms. Keeping 18,
    the 14 offloaded layers arrive by 4.49 + 14 x 9.51 = 137.6 ms, the last needed at 31 x 4.49 = 139.2 ms."""
    assert exposed_reload_s(4.49e-3, 0.0, 32, 18, 9.51e-3) == 0.0
    assert exposed_reload_s(4.49e-3, 0.0, 32, 16, 9.51e-3) > 0.0
    cm = _llama_tp4()
    kept = {k: training_step(cm, 1, 8192, reuse="offload", keep_layers=k) for k in (16, 18, 32)}
    assert kept[18].reload_s == 0.0 < kept[16].reload_s
    # the memory charged is unchanged: the head and max(keep, 2) layers
    per_layer = 8192 * layer_saved_bytes_per_token(cm.model, tp=4)
    assert kept[32].peak_activation_bytes - kept[18].peak_activation_bytes == pytest.approx(14 * per_layer)


def _run(training: dict, rate: float = 20.0, requests: int = 120, isl: int = 2000, osl: int = 200) -> dict:
    s = build(model=LLAMA, hardware="h100-sxm", tp=4, rate=rate, requests=requests, isl=isl, osl=osl,
              isl_dist="lognormal", osl_dist="lognormal", isl_spread=0.8, osl_spread=0.8, seed=0)
    data = s.deployment.model_dump()
    data["online_training"] = {"method": "full", **training}
    return simulate(build_deployment(data), s.workload, s.slo).summary()["policy"]["online_training"]


def test_the_hedge_keeps_fewer_than_every_layer_over_pcie():
    stats = _run({"reuse": "offload", "feedback_share": 0.2, "sample": "prompt", "train_batch_tokens": 8192},
                 rate=6.0, requests=600, isl=161, osl=338)
    assert 0 < stats["keep_layers"] < 32 and stats["steps"] > 0
    assert stats["step_s"]["reload"] == 0.0


# --- 2. a partly recorded batch: the recorded share reloaded, the rest recomputed and held --------------------
def test_a_partly_recorded_batch_reloads_only_its_recorded_share():
    cm = _llama_tp4()
    share = 0.3
    part = training_step(cm, 1, 8192, reuse="offload", keep_layers=0, reused_share=share)
    full = training_step(cm, 1, 8192, reuse="offload", keep_layers=0)
    recompute = training_step(cm, 1, 8192)
    assert full.reload_s > 0.1 and part.reload_s == 0.0  # 30 % of a layer's reload hides behind its backward
    assert part.forward_s == pytest.approx((1 - share) * (recompute.forward_s - recompute.head_forward_s))
    per_layer = 8192 * layer_saved_bytes_per_token(cm.model, tp=4)
    head = full.peak_activation_bytes - 2 * per_layer
    assert part.peak_activation_bytes == pytest.approx(head + per_layer * (share * 2 + (1 - share) * 32))
    with pytest.raises(PhasewiseError, match="reused_share must be in"):
        training_step(cm, 1, 8192, reuse="offload", reused_share=1.5)


def test_answers_fed_back_are_recomputed_not_reloaded_and_their_activations_count():
    stats = _run({"reuse": "offload", "keep_layers": 0, "feedback_share": 0.2, "sample": "prompt+answer",
                  "train_batch_tokens": 8192}, rate=6.0, requests=300, isl=161, osl=338)
    assert 0 < stats["reused_tokens"] < 0.5 * stats["trained_tokens"]
    assert stats["step_s"]["reload"] == 0.0
    assert stats["peak_activation_bytes"] > 5 * 2 ** 30  # the recomputed tokens' every layer, not two
    # beyond what was reserved from the KV cache: said (the text output warns), not silent
    over = stats["weight_state_bytes"] + stats["peak_activation_bytes"] - stats["reserved_bytes"]
    assert over > 5 * 2 ** 30 and stats["peak_over_reserved_bytes"] == pytest.approx(over)
    prompts = _run({"reuse": "offload", "keep_layers": 0, "feedback_share": 0.2, "sample": "prompt",
                    "train_batch_tokens": 8192}, rate=6.0, requests=300, isl=161, osl=338)
    assert prompts["steps"] > 0 and prompts["peak_over_reserved_bytes"] == 0.0


# --- 3. offload's kept layers are held on the GPU from prefill to the step ---------------------------------------
def test_offload_keeping_every_layer_holds_what_keep_holds():
    block = {"feedback_share": 1.0, "sample": "prompt", "train_batch_tokens": 8192}
    keep = _run({**block, "reuse": "keep"})
    kept_all = _run({**block, "reuse": "offload", "keep_layers": 32})
    for key in ("reserved_bytes", "kv_blocks_reserved", "peak_activation_bytes", "recording_skipped",
                "reused_tokens", "training_tokens_per_trainer_s"):
        assert kept_all[key] == pytest.approx(keep[key]), key
    assert keep["recording_skipped"] > 0
    assert kept_all["record_link_utilization"] == 0.0  # nothing crosses the link: every layer stays
    none_kept = _run({**block, "reuse": "offload", "keep_layers": 0})
    some_kept = _run({**block, "reuse": "offload", "keep_layers": 16})
    assert none_kept["reserved_bytes"] < some_kept["reserved_bytes"] < keep["reserved_bytes"]
    assert 0 < some_kept["record_link_utilization"] < none_kept["record_link_utilization"]


# --- 4. jump-share as generate_alp_jump_share.py runs it ---------------------------------------------------------
def test_jump_share_switches_to_eight_candidates_when_few_masks_are_left():
    """One 32-token answer block, one token a forward, 4 extra always accepted where the candidates allow:
    the refresh decides 1 (31 left); 4-candidate steps (128 wide) accept 2: 28, 25, 22, 19 left; the step that
    leaves 16 follows one that left 19 <= 18 + 2, so from then on 8 candidates, 32 + 7 x masks wide, accept 4."""
    dec = decoding("odb", tokens_per_step=1.0, jump_probs=(0, 0, 0, 0, 1))
    plan = plan_request(dec, 100, 32, np.random.default_rng(0))
    assert plan.decided == [1, 3, 3, 3, 3, 3, 5, 5, 5, 1]
    assert plan.new_tokens[1:] == [128, 128, 128, 128, 128, 32 + 7 * 16, 32 + 7 * 11, 32 + 7 * 6, 32 + 7 * 1]
    assert plan.extra == [0, 2, 2, 2, 2, 2, 4, 4, 4, 0]
    assert all(k == STEP for k in plan.kind[1:])


def test_jump_probs_past_the_candidates_are_an_error_not_folded():
    assert decoding("odb", copies=8).most_extra == 8 and decoding("odb").most_extra == 4
    with pytest.raises(PhasewiseError, match="--jump-copies 4 accepts at most 4"):
        decoding("odb", jump_probs=(0, 0, 0, 0, 0, 1))
    more = [plan_request(decoding("odb", tokens_per_step=1.0, jump_probs=p), 1000, 256,
                         np.random.default_rng(1)).steps for p in ((0, 0, 0, 0, 1), (0, 0, 1))]
    assert more[0] < more[1]  # 3 or 4 extra tokens are used where the candidates allow them


# --- 5. the ridge the flat-forward check prints is the cost model's ---------------------------------------------
def test_the_printed_ridge_is_where_the_cost_models_gemms_turn_compute_bound():
    cm = CostModel(load_model("GSAI-ML/LLaDA-8B-Instruct"), load_hardware("a100-sxm-80gb"), load_quant("bf16"),
                   load_engine("hf-eager"))
    cost = DllmCost.of(cm)
    ridge = model_ridge_tokens(cost, 2048)
    assert 32 < ridge < 128  # the peak ridge (153 new tokens) is not the model's: its GEMMs run below peak
    text = ridge_text(cost, 2048, ridge, (32, 128))
    assert f"compute-bound from {ridge} new tokens" in text and "128-token forward is past it" in text


def test_jump_shares_memory_holds_its_late_phases_wider_step():
    """A late-phase step forwards the block and 7 candidates over up to 18 + 2 masks, 32 + 7 x 20 = 172 positions,
    wider than the first phase's 4 x 32 = 128: the memory check holds the wider (by hand: step 172, 140 beside the
    block)."""
    from phasewise.perf.dllm import decoding_memory, dllm_memory

    cm = CostModel(load_model("GSAI-ML/LLaDA-8B-Instruct"), load_hardware("h100-sxm"), load_quant("bf16"),
                   load_engine("hf-eager"))
    dec = decoding("odb")
    assert dec.copies == 4 and dec.block_length == 32
    got = decoding_memory(cm, dec, 1000, 64)
    assert got == dllm_memory(cm, 1000, dec.gen_length, 64, 140, 0.9, 172)
    assert got != dllm_memory(cm, 1000, dec.gen_length, 64, 96, 0.9, 128)
    assert decoding_memory(cm, dec, 1000, 64, copies=1) == dllm_memory(cm, 1000, dec.gen_length, 64, 0, 0.9, 0)
