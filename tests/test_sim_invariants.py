"""BLIS-style invariants over random workloads and deployments (simulate(check_invariants=True) also
asserts per request: exact token count, tokens in order, arrival <= schedule <= first token <= finish,
and no decode before the KV arrived; per instance: KV blocks conserved and never above capacity)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.sim import simulate
from phasewise.sim.deployment import build_deployment
from phasewise.workload import ClosedLoop, LengthDist, Workload

MODELS = ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1", "Qwen/Qwen3-30B-A3B"]


@st.composite
def deployments(draw):
    model = draw(st.sampled_from(MODELS))
    common = dict(hardware=draw(st.sampled_from(["h100-sxm", "a100-sxm-80gb", "h200-sxm"])),
                  scheduler=draw(st.sampled_from(["vllm", "sarathi"])),
                  chunk_size=draw(st.sampled_from([64, 256, 512])),
                  max_batch=draw(st.sampled_from([4, 32, 256])),
                  max_batched_tokens=draw(st.sampled_from([2048, 8192])),
                  # small memory fractions force KV pressure and preemption
                  memory_fraction=draw(st.sampled_from([0.9, 0.5])) if model != "Qwen/Qwen3-30B-A3B" else 0.9)
    if draw(st.booleans()):
        groups = [dict(role="prefill", replicas=draw(st.integers(1, 2)), **common),
                  dict(role="decode", replicas=draw(st.integers(1, 2)), **common)]
    else:
        groups = [dict(role="collocated", replicas=draw(st.integers(1, 3)), **common)]
    data = dict(model=model, instances=groups, router=draw(st.sampled_from(["round_robin", "least_outstanding",
                                                                            "kv_aware"])),
                kv_link=draw(st.sampled_from(["nvlink", "pcie", "rdma"])))
    if draw(st.booleans()):
        data["speculative"] = dict(draft_tokens=draw(st.integers(1, 6)), acceptance=draw(st.floats(0.0, 0.95)))
    return build_deployment(data)


@st.composite
def workloads(draw):
    n = draw(st.integers(1, 60))
    gaps = draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n))
    prompts = draw(st.lists(st.integers(1, 6000), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n))
    return Workload(np.cumsum(gaps), prompts, outputs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), workloads())
def test_invariants_hold(dep, work):
    res = simulate(dep, work, check_invariants=True)
    done = np.isfinite(res.finish_s)
    assert done.sum() + res.rejected == len(work)  # every request finishes exactly once (or is rejected)
    assert (res.ttft_s[done] <= res.e2e_s[done] + 1e-12).all()
    assert (res.ttft_s[done] > 0).all()
    for st_ in res.instances:
        assert st_.busy_s >= 0 and st_.energy_j >= 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deployments(), st.integers(1, 16), st.integers(1, 80))
def test_closed_loop_invariants(dep, concurrency, n):
    res = simulate(dep, ClosedLoop(concurrency, n, LengthDist("uniform", 800, 0.9), LengthDist("uniform", 100, 0.9)),
                   check_invariants=True)
    assert np.isfinite(res.finish_s).sum() + res.rejected == n
    order = np.argsort(res.arrival_s)
    assert (np.diff(res.arrival_s[order]) >= 0).all()


def test_determinism():
    dep = build_deployment({"instances": [{"hardware": "h100-sxm", "replicas": 2}]})
    work = Workload(np.linspace(0, 20, 200), np.full(200, 1500), np.full(200, 120))
    a, b = simulate(dep, work), simulate(dep, work)
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.first_token_s, b.first_token_s)
