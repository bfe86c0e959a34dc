"""Diff review fixes (A): the online trainer's GPU memory for recordings is sized by the bytes serving's prefill
holds for them, one per-token figure (perf/training.py held_bytes_per_token): TrainingStep.held_bytes, which sizes
the recording buffer and the KV blocks taken for it, and what the simulator charges each recording against that
buffer. The head's fp32 log-probs are not in it (serving never writes them); the step's own peak keeps them."""

import pytest

from phasewise.perf import CostModel
from phasewise.perf.training import (
    head_saved_bytes_per_token,
    held_bytes_per_token,
    recording_bytes_per_token,
    training_step,
)
from phasewise.sim import simulate
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engines import resolve_engine

LLAMA = "meta-llama/Llama-3.1-8B"
TOKENS = 4096


def _cost_model(tp: int) -> CostModel:
    hw = load_hardware("h100-sxm")
    return CostModel(load_model(LLAMA), hw, load_quant("bf16"), resolve_engine("vllm", hw).profile, tp, 1)


@pytest.mark.parametrize("tp", [1, 4])
@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("reuse, keep", [("keep", 0), ("offload", 2), ("offload", 20), ("offload", 0)])
def test_a_steps_held_bytes_are_what_serving_recorded_per_token(tp, method, reuse, keep):
    """Llama-3.1-8B on H100, LoRA, offload keeping 2 layers: 213,376 B per recorded token held (2 layers' saved
    activations and the final hidden state), not 726,400 B (the same plus the head's 513,024 B of fp32 log-probs,
    128,256 x 4 B, which serving's prefill never writes)."""
    cm = _cost_model(tp)
    step = training_step(cm, 4, TOKENS // 4, method=method, reuse=reuse, keep_layers=keep)
    recorded = recording_bytes_per_token(cm.model, method, tp=tp, layers=32 if reuse == "keep" else keep)
    assert step.held_bytes == pytest.approx(TOKENS * recorded, rel=1e-12)
    assert held_bytes_per_token(cm, method, reuse, keep_layers=keep) == recorded
    if reuse == "offload" and keep == 2 and method == "lora" and tp == 1:
        assert recorded == 213_376
        assert head_saved_bytes_per_token(cm.model, method) - cm.model.hidden_size * 2 == 513_024
    if reuse == "keep":  # the step's own peak still holds the head's log-probs
        assert step.peak_activation_bytes - step.held_bytes == pytest.approx(
            TOKENS * (head_saved_bytes_per_token(cm.model, method, tp=tp) - cm.model.hidden_size * 2), rel=1e-12)


def test_a_partly_recorded_batch_holds_its_recorded_share_and_recompute_holds_none():
    cm = _cost_model(1)
    half = training_step(cm, 4, TOKENS // 4, method="lora", reuse="keep", reused_share=0.5)
    assert half.held_bytes == pytest.approx(0.5 * TOKENS * recording_bytes_per_token(cm.model, "lora"), rel=1e-12)
    assert training_step(cm, 4, TOKENS // 4, method="lora").held_bytes == 0.0
    assert held_bytes_per_token(cm, "lora", "recompute") == 0.0


def _trainer(reuse: str, keep_layers: int | None = None) -> dict:
    s = build(model=LLAMA, hardware="h100-sxm", rate=4.0, requests=40, isl=512, osl=32, seed=0)
    data = s.deployment.model_dump()
    block = {"method": "lora", "reuse": reuse, "feedback_share": 0.5, "train_batch_tokens": TOKENS}
    if keep_layers is not None:
        block["keep_layers"] = keep_layers
    data["online_training"] = block
    return simulate(build_deployment(data), s.workload, s.slo).summary()["policy"]["online_training"]


@pytest.mark.parametrize("reuse, keep", [("keep", None), ("offload", 20)])
def test_the_kv_cache_gives_up_record_buffer_batches_of_recordings_not_of_log_probs(reuse, keep):
    """The reservation beyond the trained parameters' state is the 1.5-batch buffer of what a recording holds on the
    GPU: keep 1.5 x 4,096 x 3,291,136 B, offload with 20 layers kept 1.5 x 4,096 x 2,060,032 B (it was 3,804,160 and
    2,573,056 B a token: the buffer held 1.7 and 1.9 batches, and the KV cache gave up blocks for bytes never held),
    and beside it what a fully recorded batch's step holds beyond its recordings, its fp32 log-probs (4,096 x the
    vocabulary x 4 B: sim/online_training.py _reserved; the larger of the two alone until 2026-12-07)."""
    stats = _trainer(reuse, keep)
    m = load_model(LLAMA)
    per_token = recording_bytes_per_token(m, "lora", layers=keep)
    assert per_token == (3_291_136 if keep is None else 2_060_032)
    buffer = 1.5 * TOKENS * per_token
    log_probs = TOKENS * m.vocab_size * 4
    assert stats["reserved_bytes"] - stats["weight_state_bytes"] == pytest.approx(buffer + log_probs, rel=1e-12)
