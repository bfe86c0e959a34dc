"""W4A8 kernel models (perf/quant_kernels.py): FireQ's pipelined INT4->FP8 main loop and FP8 INT4-KV attention
against QServe's serial INT4->INT8 main loop; the one-constant fit; `phasewise reproduce fireq`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from phasewise.apps.cli import app
from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.kernel_fit import FFN_OPERATORS, fit_sync_mma_efficiency, speedup, with_sync_mma_efficiency
from phasewise.perf.quant_kernels import attention_compute_s, gemm_compute_s, main_loop_s
from phasewise.scenarios import get_scenario
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.quant import AttentionKernel, GemmKernel

H100 = load_hardware("h100-sxm")
IDEAL = load_engine("ideal")
LLAMA2 = load_model("meta-llama/Llama-2-7b-hf")
FIREQ, QSERVE = load_quant("w4a8-fp8"), load_quant("w4a8")
PIPELINED = GemmKernel(dequant="lut-int4-fp8", pipelined=True, tile_rows=128)
SERIAL = GemmKernel(dequant="int4-int8-mainloop", pipelined=False, tile_rows=128, mma="sync")


def ops(quant, shape, hw=H100, model=LLAMA2):
    return {o.name: o for o in CostModel(model, hw, quant, IDEAL).iteration(shape).operators}


def test_main_loop_overlaps_only_when_pipelined():
    assert main_loop_s(3.0, 1.0, pipelined=True) == 3.0  # hidden behind the MMAs
    assert main_loop_s(1.0, 3.0, pipelined=True) == 3.0  # exposed past them
    assert main_loop_s(3.0, 1.0, pipelined=False) == 4.0


def test_pipelined_dequant_hidden_when_compute_bound_exposed_at_small_rows():
    weights, ops_per_weight, vector = 4096 * 4096, 2.0, 33.5e12  # H100: 67 TFLOP/s CUDA cores at 50 %
    mma_s_per_row = 2.0 * weights / 1.5e15  # FP8 wgmma at 75 % of 1979 TFLOP/s
    # 16384 rows: 128 thread blocks along the rows each expand the tile; their MMAs take longer -> hidden
    big_mma = 16384 * mma_s_per_row
    big = gemm_compute_s(PIPELINED, big_mma, weights, 16384, ops_per_weight, vector)
    assert big == big_mma
    # 8 rows: one thread block expands the whole tile for 8 rows of MMAs -> the expansion is exposed
    small_mma = 8 * mma_s_per_row
    small = gemm_compute_s(PIPELINED, small_mma, weights, 8, ops_per_weight, vector)
    assert small == pytest.approx(weights * ops_per_weight / vector) and small > small_mma
    serial = gemm_compute_s(SERIAL, big_mma, weights, 16384, ops_per_weight, vector, sync_mma_efficiency=0.5)
    assert serial == pytest.approx(big_mma / 0.5 + weights * 128 * ops_per_weight / vector)


def test_qserve_slower_than_fireq_when_compute_bound_equal_when_memory_bound():
    prefill = BatchShape.uniform(16, 1024, 0)
    q, f = ops(QSERVE, prefill), ops(FIREQ, prefill)
    for name in ("qkv_proj", "o_proj", "mlp_gate_up", "mlp_down"):
        assert q[name].bound == f[name].bound == "compute"
        assert q[name].time_s > 1.3 * f[name].time_s
    decode = BatchShape.uniform(1, 1, 1024)
    q, f = ops(QSERVE, decode), ops(FIREQ, decode)
    assert f["mlp_down"].bound == "memory"
    assert q["mlp_down"].time_s == pytest.approx(f["mlp_down"].time_s, rel=0.05)


def test_sync_mma_efficiency_only_slows_sync_kernels():
    slow_hw = with_sync_mma_efficiency(H100, 0.5)
    prefill = BatchShape.uniform(16, 1024, 0)
    assert ops(FIREQ, prefill, slow_hw)["mlp_down"].time_s == ops(FIREQ, prefill)["mlp_down"].time_s
    assert ops(QSERVE, prefill, slow_hw)["mlp_down"].time_s > ops(QSERVE, prefill)["mlp_down"].time_s
    bf16 = load_quant("bf16")
    assert ops(bf16, prefill, slow_hw)["mlp_down"].time_s == ops(bf16, prefill)["mlp_down"].time_s


def test_int4_kv_fp8_attention_runs_on_fp8_and_pipelines_its_dequant():
    prefill = BatchShape.uniform(4, 2048, 0)
    f, q = ops(FIREQ, prefill)["attention"], ops(QSERVE, prefill)["attention"]
    assert f.bytes == q.bytes and f.flops == q.flops  # both read INT4 KV
    assert f.compute_s < 0.6 * q.compute_s  # FP8 tensor path: twice the BF16 peak
    kernel = FIREQ.attention_kernel
    two_stage = kernel.model_copy(update={"pipeline_stages": 2})
    pairs, flops_per_pair = 1e9, 4.0 * 128 * 32
    mma_s = pairs * flops_per_pair / (1979e12 * 0.5)  # FP8 at FlashAttention's efficiency
    args = (mma_s, pairs, 2048.0, flops_per_pair, 33.5e12)
    assert attention_compute_s(kernel, *args) == mma_s  # the third stage hides the KV expansion
    assert attention_compute_s(two_stage, *args) == pytest.approx(mma_s + pairs * 64 / 33.5e12 * 2)
    assert attention_compute_s(AttentionKernel(q_dtype="fp8", dequant_ops_per_element=0, tile_rows=128,
                                               pipeline_stages=1), *args) == mma_s
    decode = BatchShape.uniform(4, 1, 2048)  # decode attention keeps the generic kernel
    assert ops(FIREQ, decode)["attention"].compute_s == ops(QSERVE, decode)["attention"].compute_s


def test_estimate_reflects_the_kernels():
    runner = CliRunner()
    out = {}
    for precision in ("w4a8", "w4a8-fp8"):
        res = runner.invoke(app, ["estimate", "--model", "meta-llama/Llama-2-7b-hf", "--hardware", "h100-sxm",
                                  "--precision", precision, "--batch", "4", "--prompt-len", "4096", "--json"])
        assert res.exit_code == 0, res.output
        out[precision] = json.loads(res.output)
    assert out["w4a8"]["prefill_ms"] > 1.2 * out["w4a8-fp8"]["prefill_ms"]  # compute-bound: the kernels differ
    assert out["w4a8"]["decode_step_ms"] == pytest.approx(out["w4a8-fp8"]["decode_step_ms"], rel=0.05)


def test_fit_recovers_its_constant():
    shape = BatchShape.uniform(16, 1024, 0)
    truth = with_sync_mma_efficiency(H100, 0.6)
    measured = speedup(LLAMA2, truth, QSERVE, FIREQ, IDEAL, shape, FFN_OPERATORS)
    fit = fit_sync_mma_efficiency(LLAMA2, with_sync_mma_efficiency(H100, 1.0), QSERVE, FIREQ, IDEAL, shape, measured)
    assert fit.value == pytest.approx(0.6, rel=1e-6)
    assert fit.start == 1.0 and fit.start_speedup < measured
    assert fit.fitted_speedup == pytest.approx(measured, rel=1e-9)


def test_fit_out_of_range_names_the_speedup_the_right_way_round():
    """speedup(slow, fast) is how many times faster `fast` runs: the error says `fast` over `slow`."""
    shape = BatchShape.uniform(16, 1024, 0)
    with pytest.raises(PhasewiseError) as err:
        fit_sync_mma_efficiency(LLAMA2, H100, QSERVE, FIREQ, IDEAL, shape, 0.5)
    assert "gives w4a8-fp8 a speedup of 0.5 over w4a8 " in str(err.value), str(err.value)


def test_reproduce_fireq_off_its_range_says_fireq_over_qserve(run_cli):
    code, out, err = run_cli("reproduce", "fireq", "--set", "hardware=b200")
    assert code == 2 and "gives w4a8-fp8 a speedup of 1.68 over w4a8 " in err, (code, err)
    assert err.strip().count("\n") == 0


def test_reproduce_fireq_defaults_keep_their_checks(scenario_defaults):
    result = scenario_defaults("fireq")
    checks = {c.name: c for c in result.outcome.checks}
    assert len(checks) == 4
    assert checks["batch-1 decode: FFN speedup near 1"].passed
    assert checks["FireQ faster at every prefill batch"].passed
    assert checks["prefill speedup below the FFN's at every batch"].passed
    prefill = next(c for c in result.outcome.checks if "prefill speedup over QServe" in c.name)
    # the held-out prediction: the paper's 1.26 +- 0.10 (PAPERS.md FireQ-1), and phasewise's figure inside it
    assert prefill.paper == 1.26 and prefill.band == pytest.approx((1.16, 1.36))
    assert prefill.passed, (prefill.phasewise, prefill.why)
    assert result.outcome.figures and result.outcome.tables


@pytest.mark.parametrize("sets", [
    {"model": "meta-llama/Llama-2-13b-hf", "batch": "4"},
    {"seq_len": "2048", "batches": "1,8,32"},
    {"model": "Qwen/Qwen3-8B", "seq_len": "2048", "batch": "64"},
])
def test_directions_hold_under_set_variations(sets):
    result = get_scenario("fireq").run(sets)
    checks = {c.name: c for c in result.outcome.checks}
    assert checks["batch-1 decode: FFN speedup near 1"].passed, checks
    assert checks["FireQ faster at every prefill batch"].passed, checks
    assert checks["prefill speedup below the FFN's at every batch"].passed, checks


def test_host_bound_batch_is_no_speedup_and_says_why():
    """Qwen3-8B's 512-token prefill at batch 1 under hf-eager: the host's dispatch of its unfused kernels outlasts
    either scheme's device time, so FireQ's faster kernels gain nothing (1.00x). A tie is no speedup: the direction
    check fails there (it had passed on a band starting at 1.0), and its why names the host."""
    result = get_scenario("fireq").run({"model": "Qwen/Qwen3-8B", "seq_len": "512", "batch": "64"})
    check = {c.name: c for c in result.outcome.checks}["FireQ faster at every prefill batch"]
    assert check.phasewise == pytest.approx(1.0, abs=0.005) and check.band[0] > 1.0
    assert not check.passed
    assert "at batch 1" in check.why and "host dispatch" in check.why


def test_reproduce_fireq_cli_json():
    res = CliRunner().invoke(app, ["reproduce", "fireq", "--set", "batch=4", "--json"])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(res.output)
    assert data["scenario"] == "fireq" and data["setup"]["batch"] == 4 and len(data["checks"]) == 4


@pytest.mark.parametrize("precision", ["w4a8", "w4a8-fp8"])
def test_fast_path_and_decode_series_agree_with_iteration_under_the_kernels(precision):
    cm = CostModel(load_model("meta-llama/Meta-Llama-3-8B"), H100, load_quant(precision), load_engine("vllm"))
    mixed = BatchShape.from_sequences([(512, 0), (300, 700), (1, 900), (1, 1500)])
    assert cm.fast(mixed)[0] == pytest.approx(cm.iteration(mixed).latency_s, rel=1e-12)
    decode = BatchShape.uniform(8, 1, 1000)
    steps = np.arange(4, dtype=np.float64)
    series, _ = cm.decode_series_linear(decode, steps, decode.decode_seqs, decode.decode_seqs)
    for j in range(4):
        assert series[j] == pytest.approx(cm.iteration(BatchShape.uniform(8, 1, 1000 + j)).latency_s, rel=1e-9)
