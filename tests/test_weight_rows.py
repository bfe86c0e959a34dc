"""Weight streaming that depends on the row length (Efficiency.weight_row_half_elems): the cost model's rule and
calibrate's fit of it (synthetic points, no timing)."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.measure.calibrate import fit_weight_rows
from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_quant
from phasewise.specs.hardware import build_hardware
from phasewise.specs.model import ModelSpec

# a small Llama-shaped model: 512-wide rows in the projections and the LM head, 2048-wide in the MLP down
SMALL = ModelSpec(name="small", model_type="llama", num_layers=2, hidden_size=512, num_heads=8, num_kv_heads=2,
                  head_dim=64, intermediate_size=2048, vocab_size=32000)
SMALL_MOE = SMALL.model_copy(update=dict(name="small-moe", intermediate_size=0, num_experts=8, experts_per_token=2,
                                         expert_intermediate_size=1024, num_moe_layers=2))


def cpu(half: float, memory_half_bytes: float = 0.0):
    hw = load_hardware("cpu-local")
    eff = hw.efficiency.model_copy(update={"weight_row_half_elems": half, "memory_half_bytes": memory_half_bytes})
    return hw.model_copy(update={"efficiency": eff})


def cost(hw, model=SMALL):
    return CostModel(model, hw, load_quant("fp32"), load_engine("ideal"))


def test_short_rows_stream_slower_by_the_factor():
    half, bw = 384.0, 12.0e9  # cpu-local's bandwidth, memory_efficiency_max 1
    for k, n in ((512, 128256), (2048, 512), (8192, 1024)):
        _, nbytes, _, memory_s = cost(cpu(half)).gemm(1, k, n)
        weight_bytes = k * n * 4.0
        assert nbytes == weight_bytes + (k + n) * 4.0  # the bytes moved do not change, only their rate
        weight_s = memory_s - (k + n) * 4.0 / bw  # the activations stream at the full rate
        assert weight_s == pytest.approx(weight_bytes / (bw * k / (k + half)), rel=1e-12)


def test_every_weight_gemm_gets_it_and_nothing_else_does():
    shape = BatchShape.uniform(1, 1, 100)
    plain = {o.name: o for o in cost(cpu(0.0)).iteration(shape).operators}
    rows = {o.name: o for o in cost(cpu(512.0)).iteration(shape).operators}
    # the LM head's rows hold 512 elements: its 32000 x 512 weights take 2x as long at half 512
    lm_weight_s = 32000 * 512 * 4.0 / 12.0e9
    assert rows["lm_head"].memory_s - plain["lm_head"].memory_s == pytest.approx(lm_weight_s, rel=1e-12)
    for name in ("qkv_proj", "o_proj", "mlp_gate_up", "mlp_down", "lm_head"):
        assert rows[name].memory_s > plain[name].memory_s and rows[name].bytes == plain[name].bytes
    for name in ("elementwise", "embedding", "attention"):
        assert rows[name].memory_s == plain[name].memory_s
    moe = {o.name: o for o in cost(cpu(512.0), SMALL_MOE).iteration(shape).operators}
    moe_plain = {o.name: o for o in cost(cpu(0.0), SMALL_MOE).iteration(shape).operators}
    for name in ("moe_experts", "moe_router"):
        assert moe[name].memory_s > moe_plain[name].memory_s


def test_half_zero_is_the_plain_streaming_rule():
    model = cost(cpu(0.0, memory_half_bytes=1.0e5))
    k, n = 512, 4096
    _, nbytes, _, memory_s = model.gemm(1, k, n)
    assert memory_s == pytest.approx((nbytes + 1.0e5) / 12.0e9, rel=1e-12)
    assert load_hardware("h100-sxm").efficiency.weight_row_half_elems == 0.0  # GPUs: tiles hide it


def test_negative_half_is_refused_by_name():
    entry = {"name": "x", "kind": "cpu", "peak_flops": {"fp32": 1e10}, "vector_flops": 1e10,
             "memory_bandwidth_bytes_per_s": 1e10, "memory_capacity_bytes": 1e10,
             "interconnect": {"intra_node_bandwidth_bytes_per_s": 1e10, "intra_node_latency_s": 0,
                              "inter_node_bandwidth_bytes_per_s": 1e9, "inter_node_latency_s": 0},
             "tdp_w": 0, "price_per_hour_usd": 0, "efficiency": {"weight_row_half_elems": -1.0}}
    with pytest.raises(PhasewiseError, match="weight_row_half_elems"):
        build_hardware("x", entry, "hardware file 'x.yaml'")


@pytest.mark.parametrize("half", [0.0, 100.0, 383.0, 2500.0])
def test_calibrate_fit_recovers_a_known_half(half):
    bandwidth = 25.0e9
    rates = {k: bandwidth * k / (k + half) for k in (256, 512, 1024, 2048, 4096, 8192)}
    got_bandwidth, got_half = fit_weight_rows(rates)
    # within half of the fit's grid step (2^(1/16): 4.4 %), and the bandwidth fitted with it
    assert got_half == pytest.approx(half, rel=0.023)
    assert got_bandwidth == pytest.approx(bandwidth, rel=0.023)
    with pytest.raises(PhasewiseError, match="2 or more row lengths"):
        fit_weight_rows({512: 1e9})
