"""Attention offload (Adrenaline): the capability, its invariants, and the `reproduce adrenaline` scenario."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.perf.attention_offload import AttentionOffloadCost
from phasewise.scenarios import get_scenario
from phasewise.sim import simulate
from phasewise.sim.api import build, deployment_from_flags
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.workload import Workload

LLAMA2 = "meta-llama/Llama-2-7b-hf"
A100 = "a100-sxm-80gb"


def disagg(offload=None, memory_fraction=0.9, max_num_seqs=1024, model=LLAMA2, hardware=A100, replicas=(1, 1)):
    common = {"hardware": hardware, "max_num_seqs": max_num_seqs, "memory_fraction": memory_fraction}
    data = {"model": model, "instances": [{"role": "prefill", "replicas": replicas[0], **common},
                                          {"role": "decode", "replicas": replicas[1], **common}]}
    if offload is not None:
        data["attention_offload"] = offload
    return build_deployment(data)


def sharegpt_like(rate, n=600, seed=0):
    return build(model=LLAMA2, hardware=A100, arch="disagg", rate=rate, requests=n, isl=161, osl=338,
                 isl_dist="lognormal", osl_dist="lognormal", isl_spread=0.8, osl_spread=0.8, seed=seed,
                 slo_ttft_ms=1000, slo_tpot_ms=100, max_num_seqs=1024)


# --- the cost of an offloaded step --------------------------------------------------------------
def test_offloaded_step_overlaps_and_waits_for_the_slower_side():
    cost = CostModel(load_model(LLAMA2), load_hardware(A100), load_quant("bf16"), load_engine("vllm"))
    offload = AttentionOffloadCost(cost, cost, None, 240e9, 2e-6)
    local, ctx = 100, 800
    plain = offload.step(local, local * ctx, local * ctx, 0, 0.0, 0.0)
    with_n = offload.step(local, local * ctx, local * ctx, local, local * ctx, local * ctx)
    # the local attention does not grow; the dense work for 2x the rows costs far less than 2x the step
    assert plain.latency_s < with_n.latency_s < 1.3 * plain.latency_s
    assert with_n.latency_s == max(with_n.decode_side_s, with_n.host_side_s)
    assert with_n.host_bytes > 0 and with_n.host_flops > 0
    slow_link = AttentionOffloadCost(cost, cost, None, 1e6, 2e-6)  # the exchange dominates: host-side bound
    assert slow_link.step(local, local * ctx, local * ctx, local, local * ctx, local * ctx).latency_s \
        > with_n.latency_s
    assert 0 < offload.sm_share < 1 and offload.prefill_slowdown() > 1


# --- the capability --------------------------------------------------------------------------------
def test_offload_raises_decode_batch_and_throughput_when_decode_is_kv_bound():
    spec = sharegpt_like(rate=22, n=1200)
    plain = simulate(spec.deployment, spec.workload, spec.slo, check_invariants=True)
    dep = build_deployment({**spec.deployment.model_dump(), "attention_offload": {"mode": "auto"}})
    offload = simulate(dep, spec.workload, spec.slo, check_invariants=True)
    policy = offload.summary()["policy"]["attention_offload"]
    assert policy["offloaded_requests"] > 0 and policy["offloaded_per_local_active"] > 0.2
    plain_dec, off_dec = plain.summary()["instances"][1], offload.summary()["instances"][1]
    assert off_dec["mean_batch_seqs"] > plain_dec["mean_batch_seqs"]
    assert offload.summary()["slo"]["attainment"] > plain.summary()["slo"]["attainment"]
    assert offload.duration_s < plain.duration_s
    plain_pre, off_pre = plain.summary()["instances"][0], offload.summary()["instances"][0]
    assert off_pre["bandwidth_utilization"] > plain_pre["bandwidth_utilization"]  # the offloaded KV reads
    assert policy["hosts"][0]["offloaded_kv_mean_bytes"] > 0


def test_the_offloaded_attention_costs_the_prefill_gpu_energy():
    """The host's energy covers the offloaded attention it runs: at least idle power over the run plus the power
    above idle for the time its work (its own prefills' and the offloaded reads') needs at the chip's peak."""
    spec = sharegpt_like(rate=22, n=1200)
    dep = build_deployment({**spec.deployment.model_dump(), "attention_offload": {"mode": "auto"}})
    result = simulate(dep, spec.workload, spec.slo)
    hardware, dur = load_hardware(A100), result.duration_s
    prefill = result.summary()["instances"][0]
    work_s = max(prefill["compute_utilization"], prefill["bandwidth_utilization"]) * dur
    floor_j = prefill["gpus"] * (hardware.idle_w * dur + (hardware.tdp_w - hardware.idle_w) * work_s)
    assert prefill["energy_j"] >= floor_j * (1 - 1e-9)


def test_off_and_fixed_zero_equal_the_plain_deployment():
    spec = sharegpt_like(rate=30, n=1000)
    plain = simulate(spec.deployment, spec.workload, spec.slo)
    off = simulate(build_deployment({**spec.deployment.model_dump(), "attention_offload": {"mode": "off"}}),
                   spec.workload, spec.slo)
    zero = simulate(disagg({"mode": "fixed", "requests": 0}), spec.workload, spec.slo)
    flags = build(model=LLAMA2, hardware=A100, arch="disagg", rate=30, requests=1000, isl=161, osl=338,
                  isl_dist="lognormal", osl_dist="lognormal", isl_spread=0.8, osl_spread=0.8, slo_ttft_ms=1000,
                  slo_tpot_ms=100, max_num_seqs=1024, attention_offload="off")
    assert flags.deployment == spec.deployment
    for other in (off, zero):
        assert np.array_equal(other.finish_s, plain.finish_s)
        assert np.array_equal(other.first_token_s, plain.first_token_s)
    assert off.policy == {} and zero.policy["attention_offload"]["offloaded_requests"] == 0


def test_no_offload_when_the_prefill_is_saturated():
    """Load-aware: a prefill instance whose load (with the SM share's slowdown) exceeds the limit takes none,
    and a prefill instance with a queue of prompts (its HBM full of queued KV) takes none."""
    spec = sharegpt_like(rate=30, n=1000)
    plain = simulate(spec.deployment, spec.workload, spec.slo)
    busy = simulate(disagg({"mode": "auto", "max_prefill_utilization": 0.01}), spec.workload, spec.slo)
    assert busy.policy["attention_offload"]["offloaded_requests"] == 0
    assert "prefill_load" in busy.policy["attention_offload"]["declined"]
    assert np.array_equal(busy.finish_s, plain.finish_s)
    flood = sharegpt_like(rate=200, n=800)
    res = simulate(disagg({"mode": "auto"}), flood.workload, flood.slo, check_invariants=True)
    declined = res.policy["attention_offload"]["declined"]
    assert declined.get("prefill_queue", 0) + declined.get("ttft_slo", 0) > res.policy["attention_offload"][
        "offloaded_requests"]


def test_fixed_n_caps_the_offloaded_requests():
    spec = sharegpt_like(rate=30, n=1000)
    res = simulate(disagg({"mode": "fixed", "requests": 8}), spec.workload, spec.slo, check_invariants=True)
    policy = res.policy["attention_offload"]
    assert 0 < policy["mean_offloaded_seqs"] <= 8 and "limit" in policy["declined"]


@pytest.mark.parametrize("flags, message", [
    ({"attention_offload": "auto"}, "needs --arch disagg"),
    ({"arch": "disagg", "attention_offload": "lots"}, "takes auto, off or a number"),
    ({"arch": "disagg", "attention_offload": "-1"}, "must be >= 0"),
    ({"arch": "disagg", "attention_offload": "off", "attention_offload_sm_share": 0.2}, "needs --attention-offload"),
    ({"arch": "disagg", "attention_offload": "auto", "attention_offload_sm_share": 1.5}, "in (0, 1)"),
    ({"arch": "disagg", "attention_offload": "auto", "spec_tokens": 2}, "speculative"),
])
def test_bad_flags_are_one_line_errors(flags, message):
    with pytest.raises(PhasewiseError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        deployment_from_flags(**flags)
    assert "\n" not in str(err.value)


def test_bad_yaml_blocks_are_errors():
    with pytest.raises(PhasewiseError, match="disaggregated"):
        build_deployment({"instances": [{"role": "collocated"}], "attention_offload": {"mode": "auto"}})
    with pytest.raises(PhasewiseError, match="needs `requests`"):
        disagg({"mode": "fixed"})
    with pytest.raises(PhasewiseError, match="sliding-window"):
        dep = disagg({"mode": "auto"}, model="mistralai/Mistral-7B-v0.1", hardware="h100-sxm")
        simulate(dep, Workload([0.0], [100], [10]))
    assert disagg({"mode": "off"}).attention_offload.mode == "off"  # off is allowed anywhere disaggregated


# --- invariants over random workloads ----------------------------------------------------------------
@st.composite
def offload_cases(draw):
    offload = draw(st.sampled_from([{"mode": "auto"}, {"mode": "fixed", "requests": draw(st.integers(0, 40))},
                                    {"mode": "auto", "prefill_kv_headroom": 0.0, "sm_share": 0.3}]))
    # small memory fractions: a few thousand KV tokens per GPU, so the decode and host KV run out and preempt
    dep = disagg(offload, memory_fraction=draw(st.sampled_from([0.2, 0.25, 0.9])),
                 max_num_seqs=draw(st.sampled_from([8, 64, 1024])),
                 replicas=draw(st.sampled_from([(1, 1), (1, 2), (2, 1)])))
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.floats(0.0, 0.2), min_size=n, max_size=n))
    prompts = draw(st.lists(st.integers(1, 3000), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 600), min_size=n, max_size=n))
    return dep, Workload(np.cumsum(gaps), prompts, outputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offload_cases())
def test_invariants_hold_with_offload(case):
    """check_invariants: every request finishes once with its exact tokens in order; KV blocks conserved on
    every instance (the offloaded KV allocated and freed on the prefill instance) and never over capacity."""
    dep, work = case
    res = simulate(dep, work, check_invariants=True)
    done = np.isfinite(res.finish_s)
    assert done.sum() + res.rejected == len(work)
    assert (res.ttft_s[done] <= res.e2e_s[done] + 1e-12).all()


# --- the scenario ------------------------------------------------------------------------------------
DIRECTION = ("offloaded_per_local", "prefill_hbm_capacity", "decode_compute")


def test_scenario_passes_on_defaults(scenario_defaults):
    result = scenario_defaults("adrenaline")
    checks = {c.name: c for c in result.outcome.checks}
    for name in DIRECTION:
        assert checks[name].passed, (name, checks[name].phasewise, checks[name].why)
    assert checks["prefill_hbm_bandwidth"].phasewise > 1.5  # rises; above the paper's 2.07x here (a known gap)
    assert 1.4 < checks["throughput_gain"].phasewise < 1.8  # a gain; at the band's upper edge (a known gap)
    # the median over three saturated rates, each reported with its offloaded count, all beyond what the prefill
    # instance can prefill: its prompts alone keep it busy, so the load-aware controller offloads nothing there
    assert checks["saturated_gain"].why.count("offloaded)") == 3
    assert checks["saturated_gain"].passed and checks["saturated_gain"].why.count("(0 offloaded)") == 3
    assert len(result.outcome.figures) == 2 and result.outcome.tables


@pytest.mark.parametrize("overrides", [
    {"hardware": "h100-sxm", "model": "meta-llama/Llama-2-13b-hf"},
    {"slo_tpot_ms": "150", "output_tokens": "250", "rate_min": "5"},
    # seed 1 offloaded through two of three saturated rates (1.47x) when they were 2x the offloaded capacity
    {"seed": "1"},
])
def test_scenario_direction_holds_under_overrides(overrides):
    result = get_scenario("adrenaline").run(overrides)
    checks = {c.name: c for c in result.outcome.checks}
    assert checks["throughput_gain"].phasewise > 1.2  # gain when the prefill GPU has headroom
    assert 0.9 <= checks["saturated_gain"].phasewise <= 1.15  # ~none when it is saturated


def test_scenario_bad_set_is_an_error():
    with pytest.raises(PhasewiseError):
        get_scenario("adrenaline").run({"rate_factor": "1.0"})


def test_preempting_an_offloaded_request_wakes_its_host():
    """Found by the property test above: an offloaded request preempted on a small prefill host freed its KV there
    without waking the host, whose waiting prompt then never ran (the run ended with it unfinished)."""
    from phasewise.sim.deployment import build_deployment

    group = dict(hardware="a100-sxm-80gb", tp=1, engine="vllm", memory_fraction=0.2, max_num_seqs=1024)
    dep = build_deployment({"model": "meta-llama/Llama-2-7b-hf", "router": "least_outstanding",
                            "instances": [dict(role="prefill", replicas=2, **group),
                                          dict(role="decode", replicas=1, **group)],
                            "attention_offload": {"mode": "fixed", "requests": 1}})
    prompts, outputs = np.ones(58, dtype=int), np.ones(58, dtype=int)
    prompts[[2, 3, 19]], outputs[[2, 3, 19]] = (139, 2369, 3000), (519, 513, 554)
    res = simulate(dep, Workload(np.zeros(58), prompts, outputs), check_invariants=True)
    assert np.isfinite(res.finish_s).sum() + res.rejected == 58
