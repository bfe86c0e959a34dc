"""Activation quantization in kernels of their own (EngineProfile.activation_quant_kernels; operators.QUANTIZED_INPUTS):
off in every packaged engine; on, each quantized GEMM input adds one kernel and its BF16-read / quantized-write
traffic, counted here by hand for DeepSeek-V3."""

from __future__ import annotations

import pytest

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.operators import KERNELS, LATENT_KERNELS, SHARED_EXPERT_KERNELS, kernel_counts
from phasewise.perf.parallel import ParallelLayout
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

DEEPSEEK = "deepseek-ai/DeepSeek-V3"


def test_every_packaged_engine_fuses_its_activation_quantization_by_default():
    for name in packaged("engines.yaml")["engines"]:
        assert load_engine(name).activation_quant_kernels is False, name


def test_one_kernel_per_quantized_gemm_input():
    """Latent attention's two projections and o_proj; the MLP's two GEMMs; the shared expert's two; the routed
    experts' two inputs on the Triton fused-MoE path (FP8, INT8), one on FlashInfer's FP4 fused MoE."""
    plain = kernel_counts(True, True)
    fp8 = kernel_counts(True, True, activation_quant="fp8")
    assert fp8["qkv_proj"] == LATENT_KERNELS["qkv_proj"] + 2 and fp8["o_proj"] == KERNELS["o_proj"] + 1
    assert fp8["mlp_gate_up"] == KERNELS["mlp_gate_up"] + 1 and fp8["mlp_down"] == KERNELS["mlp_down"] + 1
    assert fp8["moe_shared"] == SHARED_EXPERT_KERNELS + 2 and fp8["moe_experts"] == KERNELS["moe_experts"] + 2
    assert kernel_counts(True, True, activation_quant="fp4")["moe_experts"] == KERNELS["moe_experts"] + 1
    assert kernel_counts(False, False, activation_quant="fp8")["qkv_proj"] == KERNELS["qkv_proj"] + 1
    for name in ("attention", "elementwise", "moe_router", "lm_head", "tp_allreduce"):
        assert fp8[name] == plain[name]


def _costs(quantize: bool, precision: str = "fp8-block") -> CostModel:
    engine = load_engine("sglang").model_copy(update={"activation_quant_kernels": quantize})
    return CostModel(load_model(DEEPSEEK), load_hardware("b200"), load_quant(precision), engine, 8,
                     layout=ParallelLayout(tp=8, ep=8))


def _operators(costs: CostModel, tokens: int) -> dict:
    shape = BatchShape()
    shape.add(tokens, 0)
    return {op.name: op for op in costs.iteration(shape).operators}


@pytest.mark.parametrize("precision", ["fp8-block", "nvfp4"])
def test_the_quantization_kernels_launch_and_stream_what_they_read_and_write(precision):
    """DeepSeek-V3, TP8 with EP8 on B200, a 2,048-token prefill: per token and layer the kernels read in BF16 and
    write in the compute dtype the hidden state (7,168) and the q latent (1,536) and this GPU's 16 heads x 128
    attention output; the 3 dense layers' hidden state and 18,432 / 8 intermediate; the 58 MoE layers' hidden state
    for the routed experts (FP8: also their down-projection's 8 x 2,048 / 8 rows per token) and the shared expert's
    hidden state and 2,048 / 8 intermediate."""
    tokens, dense, moe, layers = 2048, 3, 58, 61
    fused, apart = _operators(_costs(False, precision), tokens), _operators(_costs(True, precision), tokens)
    routed = 7168 + (8 * 2048 // 8 if precision == "fp8-block" else 0)
    per_token = (layers * (7168 + 1536 + 16 * 128) + dense * (7168 + 18432 / 8) + moe * (routed + 7168 + 2048 / 8))
    written = 1.0 if precision == "fp8-block" else 0.5
    assert apart["elementwise"].bytes - fused["elementwise"].bytes == pytest.approx(tokens * per_token * (2 + written))
    launch_s = load_hardware("b200").efficiency.kernel_launch_s
    added = {"qkv_proj": 2 * layers, "o_proj": layers, "mlp_gate_up": dense, "mlp_down": dense,
             "moe_experts": (2 if precision == "fp8-block" else 1) * moe, "moe_shared": 2 * moe}
    for name, kernels in added.items():
        assert apart[name].launch_s - fused[name].launch_s == pytest.approx(kernels * launch_s), name
        assert apart[name].flops == fused[name].flops and apart[name].bytes == fused[name].bytes


def test_a_model_without_quantized_gemms_quantizes_nothing():
    tokens = 512
    assert _operators(_costs(True, "bf16"), tokens) == _operators(_costs(False, "bf16"), tokens)
