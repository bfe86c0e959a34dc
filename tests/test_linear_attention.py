"""Hybrid linear-attention models (gated DeltaNet: Qwen3.5, Qwen3-Next): their config.json, parameter counts, KV
and recurrent-state memory, and costs, each against a hand computation."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.perf.attention import LinearAttention
from phasewise.perf.memory import kv_bytes_per_token, recurrent_state_bytes_per_sequence
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

QWEN35 = "Qwen/Qwen3.5-397B-A17B"
TEXT = {  # Qwen3.5-397B-A17B's text_config fields that set its cost
    "hidden_size": 4096, "num_hidden_layers": 60, "num_attention_heads": 32, "num_key_value_heads": 2,
    "head_dim": 256, "attn_output_gate": True, "full_attention_interval": 4, "linear_num_key_heads": 16,
    "linear_num_value_heads": 64, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
    "linear_conv_kernel_dim": 4, "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 1024,
    "shared_expert_intermediate_size": 1024, "vocab_size": 248320, "tie_word_embeddings": False,
    "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(60)],
}


def _write(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_qwen35_counts_match_its_name_by_hand():
    """45 gated-DeltaNet layers (in_proj: q and k 16 x 128, v and z 64 x 128, beta and decay per value head; a
    4-tap conv over q, k, v; out_proj 8192 -> 4096) and 15 gated softmax layers (q_proj twice 32 x 256 wide)."""
    m = load_model(QWEN35)
    assert (m.linear_attention_layers, m.full_attention_layers) == (45, 15)
    h = 4096
    linear = h * (2 * 2048 + 2 * 8192 + 2 * 64) + (2 * 2048 + 8192) * 4 + 8192 * h
    full = h * (2 * 32 * 256 + 2 * 2 * 256) + 32 * 256 * h
    assert m.linear_attention_params == linear and m.attention_params == full
    moe = 512 * 3 * h * 1024 + 3 * h * 1024 + h * 512
    assert m.total_params == 45 * linear + 15 * full + 60 * moe + 2 * 248320 * h
    assert m.total_params == pytest.approx(397e9, rel=0.01)  # the name's 397B
    assert m.active_params == pytest.approx(17e9, rel=0.03)  # and A17B


def test_only_the_softmax_layers_hold_kv_and_every_sequence_holds_its_state():
    m, bf16 = load_model(QWEN35), load_quant("bf16")
    # 15 layers x K and V of 2 heads x 256 x 2 bytes; at TP 8 each GPU keeps one (replicated) KV head
    assert kv_bytes_per_token(m, bf16, 1, 1) == 15 * 2 * 2 * 256 * 2
    assert kv_bytes_per_token(m, bf16, 8, 1) == 15 * 2 * 1 * 256 * 2
    # 45 layers x (64 / 8 value heads x 128 x 128 FP32 state + 12,288 / 8 conv channels x 3 taps x 2 bytes)
    assert recurrent_state_bytes_per_sequence(m, bf16, 8, 1, "fp32") == 45 * (8 * 128 * 128 * 4 + 1536 * 3 * 2)
    assert recurrent_state_bytes_per_sequence(load_model("openai/gpt-oss-120b"), bf16, 1, 1) == 0.0
    hw = load_hardware("b200")
    few, many = (memory_fit(m, hw, load_quant("fp8-block"), 8, 1, max_seqs=seqs, state_dtype="fp32")
                 for seqs in (64, 512))
    per_sequence = recurrent_state_bytes_per_sequence(m, load_quant("fp8-block"), 8, 1, "fp32")
    assert few.state_bytes == 64 * per_sequence and many.state_bytes == 512 * per_sequence
    # the KV cache gives up the extra seats' states (and their logits' activations)
    assert few.kv_free_bytes - many.kv_free_bytes >= 448 * per_sequence
    assert few.kv_capacity_tokens > many.kv_capacity_tokens


def test_the_multimodal_wrapper_and_its_text_config_parse_alike(tmp_path):
    """The checkpoint's config.json nests the language model as text_config (its vision encoder, in Qwen3-VL's
    fields, is held in memory, not run: specs/hf_vision.py); its quantization_config sits at the top and still
    sets the native precision."""
    vision = {"depth": 27, "hidden_size": 1152, "num_heads": 16, "intermediate_size": 4304, "out_hidden_size": 4096,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
              "num_position_embeddings": 2304}
    wrapped = {"model_type": "qwen3_5_moe", "architectures": ["Qwen3_5MoeForConditionalGeneration"],
               "text_config": {"model_type": "qwen3_5_moe_text", **TEXT}, "vision_config": vision,
               "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    m = load_model(_write(tmp_path, wrapped))
    catalog = load_model(QWEN35)
    assert m.total_params == catalog.total_params and m.linear_attention_layers == 45
    assert m.encoder_params == 576_388_336 - 3 * 40_125_952  # Qwen3-VL-235B's encoder less its 3 deepstack mergers
    assert catalog.encoder_params == 0  # the catalog entry quotes text_config alone
    assert m.native_precision == "fp8-block"
    with pytest.raises(PhasewiseError, match="needs its language model's fields in text_config"):
        load_model(_write(tmp_path, {"model_type": "qwen3_5_moe"}))


def test_qwen3_next_counts_its_linear_layers_from_the_interval_and_names_missing_fields(tmp_path):
    cfg = {k: v for k, v in TEXT.items() if k != "layer_types"}
    cfg.update(model_type="qwen3_next", num_hidden_layers=48, num_attention_heads=16, linear_num_value_heads=32)
    cfg.pop("attn_output_gate")
    m = load_model(_write(tmp_path, cfg))
    assert (m.linear_attention_layers, m.full_attention_layers) == (36, 12)
    assert m.attention_output_gate  # Qwen3-Next's softmax layers always gate
    for field in ("full_attention_interval", "linear_num_key_heads"):
        with pytest.raises(PhasewiseError, match=f"missing field {field}") as err:
            load_model(_write(tmp_path, {k: v for k, v in cfg.items() if k != field}))
        assert "\n" not in str(err.value)
    with pytest.raises(PhasewiseError, match="at least one of the 4 layers must keep softmax attention"):
        load_model(_write(tmp_path, {**cfg, "num_hidden_layers": 4,
                                     "layer_types": ["linear_attention"] * 4}))


def test_tp_must_divide_the_linear_heads_too():
    with pytest.raises(PhasewiseError, match="--tp 32 does not divide the linear-attention heads .*allowed: 1, 2, 4, 8, 16"):
        CostModel(load_model(QWEN35), load_hardware("b200"), load_quant("fp8-block"), load_engine("sglang"), 32)


def _cost(engine: str = "vllm", tp: int = 8) -> CostModel:
    return CostModel(load_model(QWEN35), load_hardware("b200"), load_quant("fp8-block"), load_engine(engine), tp)


def test_decode_attention_grows_with_context_in_the_softmax_layers_only():
    cm = _cost()

    def attention_bytes(context: int) -> float:
        return {op.name: op for op in cm.iteration(BatchShape.uniform(64, 1, context)).operators}["attention"].bytes

    grow = attention_bytes(8192) - attention_bytes(4096)
    one_layer = 64 * 4096 * 2 * 1 * 256 * 2  # 64 sequences x 4096 more tokens x K and V of one head per GPU
    assert grow == pytest.approx(15 * one_layer, rel=1e-9)
    # at no context, the linear layers still read and write each sequence's state: 45 x 64 x 8 MiB
    state = 64 * 8 * 128 * 128 * 4 * 2
    assert attention_bytes(0) >= 45 * state


def test_linear_attention_kernels_by_hand():
    """Prefill (chunks of 64): per token and value head 64 (6 d_k + 4 d_v) + 6 d_k d_v FLOPs; decode: 8 d_k d_v per
    token and head, each sequence's state read and written once per step."""
    lin = LinearAttention(share=0.75, value_heads=8, key_head_dim=128, value_head_dim=128, conv_dim=1536,
                          conv_taps=4, state_bytes=4, activation_bytes=2)
    flops, _, compute_s, _ = lin.kernel(1, 8192, False, 1e15, 1e14, lambda b: b / 4e12)
    assert flops == 8192 * 8 * (64 * 1280 + 6 * 128 * 128) and compute_s == flops / 1e15
    assert lin.kernel(2, 16384, False, 1e15, 1e14, lambda b: b / 4e12)[0] == 2 * flops  # linear in the tokens
    flops, nbytes, _, memory_s = lin.kernel(32, 32, True, 1e15, 1e14, lambda b: b / 4e12)
    assert flops == 32 * 8 * 8 * 128 * 128
    assert nbytes >= 32 * 8 * 128 * 128 * 4 * 2 and memory_s == nbytes / 4e12


def test_sglang_runs_hybrid_linear_models_without_its_overlap_scheduler():
    """SGLang's default MambaRadixCache (no_buffer) turns the overlap scheduler off; vLLM's stays on."""
    assert load_engine("sglang").overlap_scheduling
    assert not _cost("sglang").engine.overlap_scheduling
    assert CostModel(load_model("deepseek-ai/DeepSeek-V3"), load_hardware("b200"), load_quant("fp8-block"),
                     load_engine("sglang"), 8).engine.overlap_scheduling
    decode = BatchShape.uniform(8, 1, 1024)
    host = _cost("sglang").host_s(decode)
    assert _cost("sglang").fast(decode)[0] > host  # host and device time add up


@pytest.mark.parametrize("engine, pp", [("vllm", 1), ("sglang", 1), ("vllm", 2)])
def test_hybrid_linear_decode_runs_are_costed_as_fast_does_step_by_step(engine, pp):
    from phasewise.perf.decode_line import DecodeLine

    cm = CostModel(load_model(QWEN35), load_hardware("b200"), load_quant("fp8-block"), load_engine(engine), 8, pp)
    assert_decode_runs_match_fast(cm, DecodeLine, (1, 64), (20, 8000), 200, (0, 150))


def test_pipeline_stages_hold_the_stack_s_share_of_states_and_kv():
    """Under PP a stage holds ceil(60 / 2) = 30 layers at the stack's shares: round(30 x 45 / 60) = 22 (rounded to
    even) gated-DeltaNet layers with a recurrent state each, 8 softmax layers with KV, against 45 and 15 at PP 1."""
    from phasewise.perf.memory import kv_bytes_per_token, recurrent_state_bytes_per_sequence

    m, quant = load_model(QWEN35), load_quant("fp8-block")
    assert kv_bytes_per_token(m, quant, 8, 2) / kv_bytes_per_token(m, quant, 8, 1) == pytest.approx(8 / 15)
    assert (recurrent_state_bytes_per_sequence(m, quant, 8, 2, "bf16")
            / recurrent_state_bytes_per_sequence(m, quant, 8, 1, "bf16")) == pytest.approx(22 / 45)


def test_a_hybrid_linear_model_simulates_with_its_invariants():
    from phasewise.sim.api import run

    result = run(model=QWEN35, hardware="b200", tp=8, engine="sglang", rate=4, requests=30, isl=2048, osl=64,
                 check_invariants=True).summary()
    assert result["completed"] == 30


def test_disaggregated_hybrid_linear_serving_sends_each_sequences_state_with_its_kv():
    from phasewise.sim.api import run

    result = run(model=QWEN35, hardware="b200", tp=8, engine="sglang", arch="disagg", prefill_workers=1,
                 decode_workers=1, rate=2, requests=12, isl=1024, osl=16, check_invariants=True)
    assert result.summary()["completed"] == 12
    state = recurrent_state_bytes_per_sequence(load_model(QWEN35), load_quant("fp8-block"), 1, 1, "fp32")
    assert state == 45 * (64 * 128 * 128 * 4 + 12288 * 3 * 2)  # ~189 MB per request over the KV link


def test_surfaces_that_do_not_model_linear_layers_say_so():
    """An operator mapping onto a chip's substrates refuses linear layers by name (device splits take them:
    tests/test_edge.py)."""
    from phasewise.perf.mapping import MappedCost
    from phasewise.specs.mappings import load_mapping

    cm = CostModel(load_model(QWEN35), load_hardware("halo-2.5d"), load_quant("bf16"), load_engine("vllm"))
    with pytest.raises(PhasewiseError, match="linear-attention layers"):
        MappedCost(cm, load_mapping("halo"))


def test_sglang_gives_the_states_their_own_pool_whose_slots_cap_the_running_requests():
    """SGLang's mamba pool: --mamba-full-memory-ratio 0.9 of the KV cache's memory (the pool 0.9 / 1.9 of what the
    weights leave), its slots the most requests it runs; vLLM keeps a slot per max_num_seqs sequence instead."""
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import _build_group

    m, hw, fp8 = load_model(QWEN35), load_hardware("b200"), load_quant("fp8-block")
    per_sequence = recurrent_state_bytes_per_sequence(m, fp8, 4, 1, "fp32")
    pooled = memory_fit(m, hw, fp8, 4, 1, state_dtype="fp32", state_pool_ratio=0.9)
    left = pooled.usable_bytes - pooled.weight_bytes - pooled.activation_bytes - pooled.reserved_bytes
    assert pooled.state_bytes == pytest.approx(left * 0.9 / 1.9)
    assert pooled.state_seats == int(pooled.state_bytes // per_sequence)
    assert memory_fit(m, hw, fp8, 4, 1, max_seqs=256, state_dtype="bf16").state_seats is None
    dep = build_deployment({"model": QWEN35, "instances": [
        {"role": "collocated", "hardware": "b200", "tp": 4, "precision": "fp8-block", "engine": "sglang",
         "memory_fraction": 0.62}]}, "test")
    _, _, _, engine = _build_group(dep.model, dep.instances[0], None, 0)
    seats = memory_fit(m, hw, fp8, 4, 1, memory_fraction=0.62, fraction_of="static", state_dtype="fp32",
                       state_pool_ratio=0.9).state_seats
    assert 0 < engine.max_seqs == seats < 512


def test_sglang_keeps_its_overlap_scheduler_for_hybrids_with_the_radix_cache_off_and_reads_its_ssm_dtype():
    """SGLang turns the overlap scheduler off for a hybrid only with its (no_buffer Mamba) radix cache on
    (srt/server_args.py); --mamba-ssm-dtype bf16 halves each sequence's state."""
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import _build_group

    def group(**extra):
        dep = build_deployment({"model": QWEN35, "instances": [
            {"role": "collocated", "hardware": "b200", "tp": 8, "precision": "fp8-block", "engine": "sglang",
             **extra}]}, "test")
        cost, _, _, engine = _build_group(dep.model, dep.instances[0], None, 0)
        return cost, engine

    assert not group()[0].engine.overlap_scheduling  # radix cache on by default
    assert group(prefix_caching=False)[0].engine.overlap_scheduling
    fp32, bf16 = group()[1], group(mamba_ssm_dtype="bf16")[1]
    assert (fp32.profile.recurrent_state_dtype, bf16.profile.recurrent_state_dtype) == ("fp32", "bf16")
    assert bf16.max_seqs > fp32.max_seqs  # the pool's slots hold twice the sequences
    with pytest.raises(PhasewiseError, match="--mamba-ssm-dtype must be one of fp32, bf16"):
        group(mamba_ssm_dtype="fp16")


def test_a_hybrid_stack_launches_its_linear_layers_kernels():
    """A gated-DeltaNet layer runs 2 projection GEMMs and 4 attention-side kernels (conv, gating, delta rule, gated
    norm) where a softmax layer runs 1 and 2: the mean layer of Qwen3.5's 3/4 linear stack."""
    from phasewise.perf.operators import KERNELS, kernel_counts

    counts = kernel_counts(False, True, linear_share=0.75)
    assert counts["qkv_proj"] == pytest.approx(KERNELS["qkv_proj"] + 0.75 * 1)
    assert counts["attention"] == pytest.approx(KERNELS["attention"] + 0.75 * 2)
    assert kernel_counts(False, True)["attention"] == KERNELS["attention"]
