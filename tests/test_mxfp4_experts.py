"""gpt-oss's checkpoint format, bf16-mxfp4: MXFP4 routed experts beside BF16 attention, router, embeddings and LM head
(config.json modules_to_not_convert), the experts multiplied as the engines run them: MXFP8 activations x MXFP4
weights at the FP8 rate on Blackwell (W4A8), expanded to BF16 in the main loop elsewhere (W4A16)."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

OSS = "openai/gpt-oss-120b"


def test_only_the_routed_experts_are_mxfp4():
    """Weights by hand: the routed experts (36 layers x 128 x gate-up 2880 x 5760 and down 2880 x 2880) at 4.25 bits a
    weight (E2M1 + one E8M0 scale per 32), everything else at BF16's 2 bytes; whole-model mxfp4 (a what-if) reads the
    non-expert weights at 4.25 bits too."""
    model, hw = load_model(OSS), load_hardware("b200")
    routed = 36 * 128 * (2880 * 5760 + 2880 * 2880)
    mxfp4_bytes = 1 / 2 + 1 / 32
    checkpoint = memory_fit(model, hw, load_quant("bf16-mxfp4"), 1, 1).weight_bytes
    whole = memory_fit(model, hw, load_quant("mxfp4"), 1, 1).weight_bytes
    bf16 = memory_fit(model, hw, load_quant("bf16"), 1, 1).weight_bytes
    assert bf16 - checkpoint == pytest.approx(routed * (2 - mxfp4_bytes), rel=1e-9)
    # the non-expert weights (attention, router, norms, embeddings) are what separates it from whole-model MXFP4
    assert checkpoint - whole > 0
    assert checkpoint / 2**30 == pytest.approx(60.7, abs=0.3)  # the checkpoint's safetensors: ~60.8 GiB


def test_experts_run_w4a8_on_blackwell_and_w4a16_on_hopper():
    """On B200 the experts' GEMMs take the FP8 path (MXFP8 x MXFP4: kind::f8f6f4 runs at the FP8 rate), the rest
    BF16; on H100 (no FP4-class path) the experts expand to BF16 in the main loop, as mxfp4's W4A16 fallback."""
    model, quant, engine = load_model(OSS), load_quant("bf16-mxfp4"), load_engine("trtllm-pytorch")
    b200, h100 = load_hardware("b200"), load_hardware("h100-sxm")
    on_b200 = CostModel(model, b200, quant, engine, 1)
    assert (on_b200.quant.compute_dtype, on_b200.expert_quant.compute_dtype) == ("bf16", "fp8")
    assert on_b200.expert_quant.dequant_ops_per_weight == 0
    on_h100 = CostModel(model, h100, quant, engine, 2)
    assert on_h100.expert_quant.compute_dtype == "bf16" and on_h100.expert_quant.dequant_ops_per_weight == 4
    assert on_h100.expert_quant.weight_bytes_per_param == on_b200.expert_quant.weight_bytes_per_param
    # the checkpoint's native format, so what every command costs gpt-oss in by default
    assert model.default_precision == "bf16-mxfp4"


def test_w4a8_experts_are_slower_than_fp4_compute_and_faster_than_bf16_in_prefill():
    """A compute-heavy prefill's expert GEMMs: FP4 x FP4 (the what-if mxfp4) < MXFP8 x MXFP4 (W4A8) < BF16 weights."""
    model, hw, engine = load_model(OSS), load_hardware("b200"), load_engine("vllm")
    shape = BatchShape.from_sequences([(8192, 0)])

    def experts_compute_s(precision: str) -> float:
        it = CostModel(model, hw, load_quant(precision), engine, 1).iteration(shape)
        return next(op.compute_s for op in it.operators if op.name == "moe_experts")

    assert experts_compute_s("mxfp4") < experts_compute_s("bf16-mxfp4") < experts_compute_s("bf16")


def test_an_experts_only_precision_on_a_dense_model_is_a_one_line_error():
    with pytest.raises(PhasewiseError, match="bf16-mxfp4 quantizes a MoE model's routed experts only"):
        CostModel(load_model("meta-llama/Llama-3.1-8B"), load_hardware("b200"), load_quant("bf16-mxfp4"),
                  load_engine("vllm"))


def test_vllm_launch_exports_the_w4a8_switch_where_it_is_simulated():
    """vLLM runs MXFP4 experts with BF16 activations on Blackwell unless VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8 is set
    (get_mxfp4_backend); the launch script sets it where the simulation ran W4A8 (B200), not on H100 (W4A16 both)."""
    from phasewise.apps.launch import launch_commands
    from phasewise.apps.launch_args import engine_flags
    from phasewise.sim.deployment import build_deployment

    def env(hardware: str, engine: str) -> dict[str, str]:
        dep = build_deployment({"model": OSS, "instances": [{"hardware": hardware, "tp": 2, "engine": engine}]})
        (cmd,), _, _ = launch_commands(dep)
        return cmd.env

    assert env("b200", "vllm").get("VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8") == "1"
    assert set(env("b200", "vllm")) <= set(engine_flags()["vllm"]["env"])  # an environment variable vLLM reads
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in env("h100-sxm", "vllm")
    assert "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8" not in env("b200", "trtllm")  # its own default is W4A8
