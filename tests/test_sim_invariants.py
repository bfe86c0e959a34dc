"""BLIS-style invariants over random workloads and deployments (simulate(check_invariants=True) also
asserts per request: exact token count, tokens in order, arrival <= schedule <= first token <= finish,
and no decode before the KV arrived; per instance: KV blocks conserved and never above capacity)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.sim import simulate
from phasewise.sim.deployment import build_deployment
from phasewise.workload import ClosedLoop, LengthDist, Workload

# Gemma-3-27B: a hybrid window stack (52 of 62 layers keep 1,024 tokens), run where it fits with KV pressure
MODELS = ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1", "Qwen/Qwen3-30B-A3B", "google/gemma-3-27b-it",
          "XiaomiMiMo/MiMo-7B-Base"]
# speculative decoding's draft by model: MiMo-7B's own MTP layer, a small Qwen3 for Qwen3; the others have neither
# MTP layers nor a draft of their vocabulary in the catalog (an MTP draft on them is refused)
SPEC_DRAFTS = {"XiaomiMiMo/MiMo-7B-Base": "mtp", "Qwen/Qwen3-30B-A3B": "Qwen/Qwen3-0.6B"}
HYBRID = {"google/gemma-3-27b-it": dict(hardware="h200-sxm", memory_fraction=0.5)}


def engine_fields(draw, max_new_tokens: int) -> dict:
    """An engine preset with knobs it has; token budgets kept >= sequences x tokens per decode step."""
    engine = draw(st.sampled_from(["vllm", "vllm-v0", "sarathi", "sglang", "trtllm"]))
    seqs = draw(st.sampled_from([4, 32, 256]))
    budget = draw(st.sampled_from([b for b in (64, 256, 512, 2048, 8192) if b >= seqs * max_new_tokens]))
    if engine == "vllm":
        return dict(engine=engine, max_num_seqs=seqs, max_num_batched_tokens=budget)
    if engine == "vllm-v0":
        return dict(engine=engine, max_num_seqs=seqs, max_num_batched_tokens=max(budget, 2048))
    if engine == "sarathi":
        return dict(engine=engine, max_num_seqs=seqs, chunk_size=budget)
    if engine == "sglang":
        return dict(engine=engine, max_running_requests=seqs, chunked_prefill_size=budget,
                    # SGLang turns mixed chunks off under speculative decoding (asked for beside it: an error)
                    enable_mixed_chunk=draw(st.booleans()) if max_new_tokens == 1 else None,
                    scheduler_recv_interval=draw(st.sampled_from([1, 1, 4, 30])))  # 1: read every iteration
    return dict(engine=engine, max_batch_size=seqs, max_num_tokens=budget,
                enable_chunked_prefill=draw(st.booleans()),
                # TensorRT-LLM's batch waiting (sim/context_wait.py): off, or holding prompts beside decodes (it
                # waits only with both knobs above 0: specs/engine_knob_checks.py refuses either alone)
                **dict(zip(("batch_wait_timeout_iters", "batch_wait_max_tokens_ratio"),
                           draw(st.sampled_from([(0, 0.0), (0, 0.0), (5, 0.3), (40, 0.3)])))))


@st.composite
def deployments(draw):
    model = draw(st.sampled_from(MODELS))
    speculative = None
    if model in SPEC_DRAFTS and draw(st.booleans()):
        speculative = dict(draft_tokens=draw(st.integers(1, 6)), acceptance=draw(st.floats(0.0, 0.95)),
                           draft=SPEC_DRAFTS[model])
    step_tokens = speculative["draft_tokens"] + 1 if speculative else 1
    common = dict(hardware=draw(st.sampled_from(["h100-sxm", "a100-sxm-80gb", "h200-sxm"])),
                  pp=draw(st.sampled_from([1, 1, 2])),  # PP replicas run virtual engines through one pipeline
                  # small memory fractions force KV pressure and preemption
                  memory_fraction=draw(st.sampled_from([0.9, 0.5])) if model != "Qwen/Qwen3-30B-A3B" else 0.9,
                  **engine_fields(draw, step_tokens))
    common.update(HYBRID.get(model, {}))  # H200s at half their memory
    if common["engine"] == "sglang" and (speculative or common.get("enable_mixed_chunk")):
        common["pp"] = 1  # SGLang refuses PP beside speculative decoding or mixed chunks at start-up
    if draw(st.booleans()):
        groups = [dict(role="prefill", replicas=draw(st.integers(1, 2)), **common),
                  dict(role="decode", replicas=draw(st.integers(1, 2)), **common)]
    else:
        groups = [dict(role="collocated", replicas=draw(st.integers(1, 3)), **common)]
    data = dict(model=model, instances=groups, router=draw(st.sampled_from(["round_robin", "random", "least_outstanding",
                                                                            "kv_aware", "dynamo_kv"])),
                kv_link=draw(st.sampled_from(["nvlink", "pcie", "rdma"])))
    if speculative:
        data["speculative"] = speculative
    if data["router"] == "dynamo_kv":  # Dynamo's softmax sampling and router queue (held requests still finish)
        data["router_temperature"] = draw(st.sampled_from([None, 0.5]))
        data["router_queue_threshold"] = draw(st.sampled_from([None, 0.0, 1.0]))
        data["router_kv_events"] = draw(st.sampled_from([None, False]))  # False: its approximate index
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
    done = np.isfinite(res.finish_s)
    assert done.sum() + res.rejected == n
    # Request i is the i-th through the client's semaphore: arrivals in id order, the first wave at t = 0.
    assert (np.diff(res.arrival_s) >= 0).all()
    assert (res.arrival_s[:concurrency] == 0).all()
    a, s, f = res.arrival_s[done], res.scheduled_s[done], res.first_token_s[done]
    assert (a <= s).all() and (s <= f).all() and (f <= res.finish_s[done]).all()
    if res.rejected == 0:
        # think_s = 0: every later request is sent the instant an earlier one finishes, so the arrivals
        # after the first wave are exactly the n - concurrency earliest finish times (never more than
        # `concurrency` in flight, never an idle client).
        later = res.arrival_s[concurrency:]
        assert np.array_equal(later, np.sort(res.finish_s)[:len(later)])


def test_determinism():
    dep = build_deployment({"instances": [{"hardware": "h100-sxm", "replicas": 2}]})
    work = Workload(np.linspace(0, 20, 200), np.full(200, 1500), np.full(200, 120))
    a, b = simulate(dep, work), simulate(dep, work)
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.first_token_s, b.first_token_s)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([1, 5, 60]), st.sampled_from([0, 3]), st.booleans(), workloads())
def test_attention_dp_balance_never_loses_or_strands_a_request(timeout, batching, chunked, work):
    """TensorRT-LLM's attention-DP balance holds prompts for iterations: every request still finishes, in order."""
    dep = build_deployment(dict(model="Qwen/Qwen3-30B-A3B", instances=[dict(
        hardware="h100-sxm", tp=4, attention_dp=4, ep=4, engine="trtllm", max_batch_size=64, max_num_tokens=8192,
        enable_chunked_prefill=chunked, attention_dp_enable_balance=True, attention_dp_timeout_iters=timeout,
        attention_dp_batching_wait_iters=batching)]))
    res = simulate(dep, work, check_invariants=True)
    assert np.isfinite(res.finish_s).sum() + res.rejected == len(work)


def _h100(role: str, **fields) -> dict:
    return dict(role=role, hardware="h100-sxm", memory_fraction=0.3, **fields)


def test_a_prompt_no_decode_instance_can_hold_is_rejected_and_strands_no_other():
    """Disaggregated: a request whose KV exceeds the decode instance's whole cache is rejected there (as a
    collocated instance rejects it), not left at the head of the transfer queue blocking every later one."""
    dep = build_deployment(dict(instances=[_h100("prefill"), _h100("decode")]))
    work = Workload(np.arange(6) * 0.5, [1000, 51344, 1000, 1000, 1000, 1000], np.full(6, 50))
    res = simulate(dep, work, check_invariants=True)
    assert res.rejected == 1 and np.isfinite(res.finish_s).sum() == 5
    assert not np.isfinite(res.finish_s[1])


def test_reserve_admission_holds_on_a_disaggregated_decode_instance():
    """TensorRT-LLM admits a sequence with its whole output's KV (guaranteed no evict): its decode servers too,
    so a loaded disaggregated deployment preempts nothing, as the collocated one does not."""
    dep = build_deployment(dict(instances=[_h100("prefill", engine="trtllm"), _h100("decode", engine="trtllm")]))
    work = Workload(np.arange(300) / 50.0, np.full(300, 2000), np.full(300, 500))
    res = simulate(dep, work, check_invariants=True)
    assert np.isfinite(res.finish_s).all() and res.summary()["preemptions"] == 0


def test_a_rejection_releases_the_requests_dynamos_router_queue_holds():
    """The router queue releases when prefill progresses; a rejected prompt leaves the pending count too, so the
    requests it held go on even when the instance then idles."""
    dep = build_deployment(dict(instances=[dict(hardware="h100-sxm", memory_fraction=0.3)], router="dynamo_kv",
                                router_queue_threshold=1.0))
    res = simulate(dep, Workload([0.0, 0.1, 0.2], [100, 60000, 100], [200, 10, 10]), check_invariants=True)
    assert res.rejected == 1 and np.isfinite(res.finish_s[[0, 2]]).all()
