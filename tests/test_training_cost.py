"""The training-step cost model (perf/training.py): backward from the forward's operators, LoRA, activation reuse,
offload with hedging, the saved-activation count, and one-line errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.perf.training import (
    REUSE_MODES,
    TRAIN_METHODS,
    exposed_reload_s,
    layer_saved_bytes_per_token,
    recording_bytes_per_token,
    trained_params,
    training_step,
)
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.model import ModelSpec

# GPT-like (no gating, no GQA, 4h MLP): Korthikanti et al.'s layer, whose count we can check by hand
GPT = ModelSpec(name="gpt-like", model_type="gpt2", num_layers=4, hidden_size=1024, num_heads=16, num_kv_heads=16,
                head_dim=64, intermediate_size=4096, vocab_size=1000, mlp_gated=False, norm="layer")


@pytest.fixture(scope="module")
def cm():
    return CostModel(load_model("meta-llama/Llama-3.1-8B"), load_hardware("h100-sxm"), load_quant("bf16"),
                     load_engine("ideal"))


def test_backward_is_about_twice_the_forward_for_full_and_less_for_lora(cm):
    full = training_step(cm, 4, 2048)
    lora = training_step(cm, 4, 2048, method="lora")
    # compute-bound GEMMs: dX + dW = 2x; FlashAttention-2's backward 2.5x; the loss's backward is memory-bound
    assert 1.9 < full.backward_s / full.forward_s < 2.6
    # LoRA: dX through the frozen weights (1x) and small adapters
    assert 0.9 < lora.backward_s / lora.forward_s < 1.5
    assert lora.backward_s < full.backward_s and lora.optimizer_s < full.optimizer_s / 100
    assert lora.weight_state_bytes < full.weight_state_bytes / 100


def test_reuse_removes_the_layers_forward_but_keeps_the_head(cm):
    base = training_step(cm, 4, 1024)
    keep = training_step(cm, 4, 1024, reuse="keep")
    assert keep.forward_s == 0 and keep.reload_s == 0
    # the trainer still runs the head (LM head + loss over every token): it moves into backward_s
    assert keep.backward_s == pytest.approx(base.backward_s + keep.head_forward_s)
    assert 0 < keep.head_forward_s < base.forward_s / 5
    assert keep.step_s < base.step_s
    speedup = base.step_s / keep.step_s
    assert 1.2 < speedup < 1.6  # backward ~2x forward: removing most of the forward saves about a third
    assert keep.peak_activation_bytes == base.peak_activation_bytes == base.activation_bytes


def test_offload_exposes_reload_only_when_the_link_is_slow(cm):
    fast = training_step(cm, 4, 1024, reuse="offload", host_link_bytes_per_s=1e15)
    pcie = training_step(cm, 4, 1024, reuse="offload")  # the hardware's PCIe
    slow = training_step(cm, 4, 1024, reuse="offload", host_link_bytes_per_s=1e9)
    slower = training_step(cm, 4, 1024, reuse="offload", host_link_bytes_per_s=2.5e8)
    assert fast.reload_s == 0 and slow.reload_s > 0 and slower.reload_s > slow.reload_s
    assert pcie.reload_s < slow.reload_s
    hedged = training_step(cm, 4, 1024, reuse="offload", host_link_bytes_per_s=1e9, keep_layers=16)
    assert hedged.reload_s < slow.reload_s
    assert training_step(cm, 4, 1024, reuse="offload", host_link_bytes_per_s=1e9,
                         keep_layers=32).reload_s == 0
    keep = training_step(cm, 4, 1024, reuse="keep")
    assert fast.peak_activation_bytes < keep.peak_activation_bytes / 4
    assert fast.activation_bytes == keep.activation_bytes
    assert fast.peak_activation_bytes < hedged.peak_activation_bytes < keep.peak_activation_bytes


@settings(max_examples=60, deadline=None)
@given(layers=st.integers(1, 40), keep=st.integers(0, 40), back=st.floats(1e-4, 1.0), head=st.floats(0, 1.0),
       reload=st.floats(0, 2.0))
def test_exposed_reload_is_bounded_and_hedging_never_hurts(layers, keep, back, head, reload):
    keep = min(keep, layers)
    exposed = exposed_reload_s(back, head, layers, keep, reload)
    assert -1e-9 <= exposed <= (layers - keep) * reload + 1e-9
    if keep < layers:
        assert exposed_reload_s(back, head, layers, keep + 1, reload) <= exposed + 1e-9
    if reload <= back and reload <= head:
        assert exposed == pytest.approx(0.0, abs=1e-9)


def test_saved_activations_match_korthikanti_without_masks_and_with_flash_attention():
    h = GPT.hidden_size
    per_token = layer_saved_bytes_per_token(GPT, element_bytes=2.0)
    lse = GPT.num_heads * 4.0
    assert per_token - lse == pytest.approx((34 - 2) * h)  # 34 s b h less the dropout masks, no s^2 term
    # LoRA saves less (no inputs of frozen GEMMs), full saves more; recording covers every layer + final state
    m = load_model("meta-llama/Llama-3.1-8B")
    full, lora = recording_bytes_per_token(m), recording_bytes_per_token(m, "lora")
    assert lora < full
    assert full == pytest.approx(m.num_layers * layer_saved_bytes_per_token(m) + m.hidden_size * 2.0)
    assert trained_params(m, "lora", 16) == m.num_layers * 16 * ((m.hidden_size + m.q_size)
                                                                   + (m.hidden_size + m.kv_size))


def test_more_tokens_cost_more_and_throughput_is_positive(cm):
    small, big = training_step(cm, 1, 512), training_step(cm, 8, 512)
    assert big.step_s > small.step_s and big.tokens == 8 * 512 and small.tokens_per_s > 0
    assert big.activation_bytes == pytest.approx(8 * small.activation_bytes)


def test_bad_arguments_are_one_line_errors(cm):
    with pytest.raises(PhasewiseError, match="method 'qlora' is not one of full, lora"):
        training_step(cm, 1, 128, method="qlora")
    with pytest.raises(PhasewiseError, match="reuse 'swap' is not one of recompute, keep, offload"):
        training_step(cm, 1, 128, reuse="swap")
    with pytest.raises(PhasewiseError, match="seqs and tokens_per_seq must be >= 1"):
        training_step(cm, 0, 128)
    with pytest.raises(PhasewiseError, match="tokens_per_seq"):
        training_step(cm, 1, -5)
    with pytest.raises(PhasewiseError, match="lora_rank must be >= 1"):
        training_step(cm, 1, 128, method="lora", lora_rank=0)
    with pytest.raises(PhasewiseError, match="keep_layers must be in 0..32"):
        training_step(cm, 1, 128, reuse="offload", keep_layers=33)
    with pytest.raises(PhasewiseError, match="host_link_bytes_per_s must be > 0"):
        training_step(cm, 1, 128, reuse="offload", host_link_bytes_per_s=0)
    with pytest.raises(PhasewiseError, match="method 'x'"):
        recording_bytes_per_token(cm.model, "x")
    assert TRAIN_METHODS == ("full", "lora") and REUSE_MODES == ("recompute", "keep", "offload")


@settings(max_examples=40, deadline=None)
@given(seqs=st.integers(1, 16), tokens=st.integers(1, 4096), method=st.sampled_from(TRAIN_METHODS),
       link=st.floats(1e8, 1e12), keep=st.integers(0, 32))
def test_reuse_never_costs_more_than_recompute_and_offload_never_holds_more(cm, seqs, tokens, method, link, keep):
    base = training_step(cm, seqs, tokens, method=method)
    kept = training_step(cm, seqs, tokens, method=method, reuse="keep")
    off = training_step(cm, seqs, tokens, method=method, reuse="offload", host_link_bytes_per_s=link,
                        keep_layers=keep)
    assert 0 < kept.step_s < base.step_s
    assert off.reload_s >= 0 and off.step_s == pytest.approx(kept.step_s + off.reload_s)
    assert off.peak_activation_bytes <= kept.peak_activation_bytes == base.activation_bytes
    assert base.optimizer_s == kept.optimizer_s > 0 and base.weight_state_bytes > 0


def test_a_hybrid_window_stack_trains_its_full_layers_over_the_whole_sequence():
    """gpt-oss-20b windows half its layers (128 tokens): a training forward over 8,192-token sequences attends over
    the whole sequence in its 12 full layers, so it costs more than the same model with every layer windowed."""
    hybrid = load_model("openai/gpt-oss-20b")
    windowed = hybrid.model_copy(update={"sliding_window_layers": None})
    assert windowed.window_all_layers == 128 and hybrid.window_all_layers is None

    def forward_s(model):
        return training_step(CostModel(model, load_hardware("b200"), load_quant("bf16"), load_engine("ideal")),
                             1, 8192).forward_s

    assert forward_s(hybrid) > 1.05 * forward_s(windowed)


def test_each_tp_rank_records_what_its_own_trainer_reads_back():
    """Under TP a rank's prefill holds the replicated hidden-size activations whole and its share of the heads and
    the MLP: what it records per token is its trainer's saved bytes per token (not the TP-1 figure over tp)."""
    m = load_model("meta-llama/Llama-3.1-8B")
    cm4 = CostModel(m, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("ideal"), tp=4)
    step = training_step(cm4, 1, 1000, reuse="keep")
    per_rank = recording_bytes_per_token(m, tp=4)
    assert per_rank == m.num_layers * layer_saved_bytes_per_token(m, tp=4) + 2 * m.hidden_size
    assert per_rank > recording_bytes_per_token(m) / 4  # the hidden-size activations are not split
    assert 1000 * per_rank <= step.activation_bytes  # the trainer also keeps its head's log-probs
