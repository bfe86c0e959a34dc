"""The known effects of serving architectures, named, on the simulator."""

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import Slo, simulate
from phasewise.sim.api import build, run
from phasewise.sim.deployment import build_deployment, collocated, disaggregated
from phasewise.workload import LengthDist, load_trace, open_loop

M = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def conv():
    return load_trace("azure-conv", 1000)


def test_chunked_prefill_lowers_p99_tbt_and_raises_ttft(conv):
    work = conv.scaled_to_rate(10)
    first = simulate(collocated(M, "h100-sxm", engine="vllm-v0"), work).summary()
    chunked = simulate(collocated(M, "h100-sxm", engine="sarathi", chunk_size=512), work).summary()
    assert chunked["tbt_ms"]["p99"] < 0.5 * first["tbt_ms"]["p99"]
    assert chunked["ttft_ms"]["p50"] > first["ttft_ms"]["p50"]


def test_latency_explodes_past_capacity():
    p, o = LengthDist("fixed", 1024), LengthDist("fixed", 256)
    ttft = []
    for rate in (2, 8, 30):
        res = simulate(collocated(M, "h100-sxm"), open_loop(rate, 600, p, o, seed=3))
        ttft.append(res.summary()["ttft_ms"]["p90"])
    assert ttft[0] < 200 and ttft[1] < 1000
    assert ttft[2] > 20 * ttft[1]  # queueing: past capacity the queue grows without bound


def test_disaggregation_removes_prefill_decode_interference(conv):
    work = conv.scaled_to_rate(8)
    col = simulate(collocated(M, "h100-sxm", replicas=2), work).summary()
    dis = simulate(disaggregated(M, "h100-sxm", 1, 1), work).summary()
    assert dis["tbt_ms"]["p99"] < 0.4 * col["tbt_ms"]["p99"]
    # a decode instance's steps vary only with batch and context: p99 TBT stays near p50
    assert dis["tbt_ms"]["p99"] < 1.5 * dis["tbt_ms"]["p50"]


def test_too_small_kv_causes_preemptions(conv):
    work = conv.scaled_to_rate(10)
    roomy = simulate(collocated(M, "h100-sxm"), work, check_invariants=True)
    tight = simulate(collocated(M, "h100-sxm", memory_fraction=0.26), work, check_invariants=True)
    assert roomy.preemptions.sum() == 0
    assert tight.preemptions.sum() > 10
    assert tight.instances[0].kv_peak_blocks <= tight.instances[0].kv_capacity_blocks


# a target and a draft model of one vocabulary: Llama-3.1-8B has no MTP layers to draft with (deployment_model_checks.py
# mtp_draft_refusal) and the catalog has no small Llama 3; a 32B target, its 0.6B draft a small share of a step
SPEC_TARGET, SPEC_DRAFT = "Qwen/Qwen3-32B", "Qwen/Qwen3-0.6B"


def test_speculative_decoding_lowers_tpot_at_low_load():
    base = run(model=SPEC_TARGET, rate=1, requests=200, isl=512, osl=256)
    spec = run(model=SPEC_TARGET, rate=1, requests=200, isl=512, osl=256, spec_tokens=4, spec_acceptance=0.8,
               spec_draft=SPEC_DRAFT)
    assert spec.summary()["tpot_ms"]["p50"] < 0.6 * base.summary()["tpot_ms"]["p50"]
    assert spec.output_tokens.sum() == base.output_tokens.sum()


def test_slower_kv_link_delays_the_first_token():
    """Disaggregated: the client's first token comes from the decode instance once the KV has arrived, so the
    transfer is in TTFT (an 8,000-token Llama-3.1-70B prompt's 2.6 GB over 4 GPUs: ~1.5 ms over NVLink, ~13 ms over RDMA),
    not in the gaps between tokens."""
    ttft, gaps = {}, {}
    for link in ("nvlink", "rdma"):
        dep = build_deployment({"model": "meta-llama/Llama-3.1-70B", "kv_link": link, "instances": [
            {"role": "prefill", "hardware": "h100-sxm", "tp": 4}, {"role": "decode", "hardware": "h100-sxm", "tp": 4}]})
        res = simulate(dep, open_loop(0.5, 40, LengthDist("fixed", 8000), LengthDist("fixed", 50), seed=1),
                       check_invariants=True)
        ttft[link] = np.median(res.first_token_s - res.arrival_s)
        gaps[link] = np.median(res.max_tbt_s)
    assert ttft["rdma"] - ttft["nvlink"] > 0.008
    assert gaps["rdma"] == pytest.approx(gaps["nvlink"], rel=0.05)


def test_disaggregated_first_token_arrives_with_the_first_decode_step():
    """The decode instance returns the first token (sampled by the prefill) with the second, after its first
    decode step (SGLang's PD decode server; sgl-project/sglang issue #8210): a 2-token request ends at its TTFT,
    which exceeds the prefill by the KV transfer and that step. (vLLM's and TensorRT-LLM's decode sides stream them
    apart: tests/test_disagg_first_token.py.)"""
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "kv_link": "rdma", "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "engine": "sglang"},
        {"role": "decode", "hardware": "h100-sxm", "engine": "sglang"}]})
    res = simulate(dep, open_loop(0.2, 20, LengthDist("fixed", 2000), LengthDist("fixed", 2), seed=3),
                   check_invariants=True)
    assert np.allclose(res.finish_s, res.first_token_s, rtol=0, atol=1e-12)
    collocated = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [{"hardware": "h100-sxm"}]})
    alone = simulate(collocated, open_loop(0.2, 20, LengthDist("fixed", 2000), LengthDist("fixed", 2), seed=3))
    assert np.median(res.first_token_s - res.arrival_s) > np.median(alone.first_token_s - alone.arrival_s)


def test_kv_handoff_delays_every_first_token_by_the_same_time(tmp_path):
    """An engine's kv_handoff_s (router hop, transfer setup, polling) delays each disaggregated first token by that
    much at low load, and no token after it."""
    import yaml

    def deployment(handoff: float):
        path = tmp_path / f"engine_{handoff}.yaml"
        path.write_text(yaml.safe_dump({"engines": {"vllm-h": {
            "iteration_overhead_s": 1e-3, "per_sequence_overhead_s": 1e-5, "eager_launch_s": 6e-6,
            "kv_handoff_s": handoff, "scheduler": "vllm"}}}))
        return build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
            {"role": "prefill", "hardware": "h100-sxm", "engine": str(path)},
            {"role": "decode", "hardware": "h100-sxm", "engine": str(path)}]})
    work = open_loop(0.2, 20, LengthDist("fixed", 1000), LengthDist("fixed", 20), seed=5)
    none, some = simulate(deployment(0.0), work), simulate(deployment(0.1), work, check_invariants=True)
    assert np.allclose((some.first_token_s - none.first_token_s), 0.1, atol=1e-3)
    assert np.allclose(some.finish_s - some.first_token_s, none.finish_s - none.first_token_s, atol=1e-3)


def test_tp_speeds_up_decode():
    one = run(model=M, rate=0.5, requests=50, isl=512, osl=128)
    two = run(model=M, tp=2, rate=0.5, requests=50, isl=512, osl=128)
    assert two.summary()["tpot_ms"]["p50"] < 0.75 * one.summary()["tpot_ms"]["p50"]


def test_round_robin_spreads_requests():
    res = run(model=M, replicas=4, router="round_robin", rate=4, requests=400, isl=256, osl=64)
    counts = np.bincount(res.instance, minlength=4)
    assert counts.min() == counts.max() == 100


def test_summary_keys_and_goodput():
    res = run(model=M, rate=4, requests=300, isl=1024, osl=128, slo_ttft_ms=500, slo_tpot_ms=30)
    s = res.summary()
    for key in ("ttft_ms", "tpot_ms", "tbt_ms", "e2e_ms"):
        assert set(s[key]) == {"mean", "p50", "p90", "p99"}
    assert 0 < s["goodput"]["requests_per_s"] <= s["throughput"]["requests_per_s"] + 1e-9
    assert 0 < s["slo"]["attainment"] <= 1
    inst = s["instances"][0]
    assert 0 < inst["busy_fraction"] <= 1 and 0 < inst["bandwidth_utilization"] <= 1 and inst["energy_j"] > 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n1,2,3\n", "missing columns"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n1,-3,5\n", "line 3: prompt tokens must be an integer >= 1"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n1,abc,5\n", "line 3: non-numeric"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n5,10,5\n1,10,5\n", "line 3: arrivals are not sorted"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,0\n", "line 2: output tokens must be an integer >= 1"),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n", "has no requests"),
    ],
)
def test_bad_traces_name_the_row(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(PhasewiseError, match=message) as err:
        build(trace=str(path))
    assert "\n" not in str(err.value)


def test_both_trace_namings_and_jsonl(tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n")
    w = load_trace(str(a))
    assert list(w.prompt_tokens) == [374, 396] and w.arrival_s[1] == pytest.approx(4.314579, abs=1e-6)
    j = tmp_path / "t.jsonl"
    j.write_text('{"arrived_at": 0, "num_prefill_tokens": 5, "num_decode_tokens": 2}\n'
                 '{"arrived_at": 1.5, "num_prefill_tokens": 7, "num_decode_tokens": 3}\n')
    assert list(load_trace(str(j)).output_tokens) == [2, 3]


def test_iso_timestamps_keep_their_offsets_and_read_naive_times_as_utc(tmp_path, monkeypatch):
    """A fractional second does not swallow the offset after it, and a time without one is UTC whatever this
    machine's zone (a daylight-saving change there would move the arrivals by an hour)."""
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    if hasattr(time, "tzset"):
        time.tzset()
    try:
        path = tmp_path / "zones.csv"
        path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00+00:00,10,2\n"
                        "2024-05-10 00:00:00.5+00:00,10,2\n2024-05-10T02:00:00.75+02:00,10,2\n")
        assert list(load_trace(str(path)).arrival_s) == pytest.approx([0.0, 0.5, 0.75])
        path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-03-31 01:30:00,10,2\n"
                        "2024-03-31 03:30:00.5,10,2\n")  # across Berlin's spring-forward hour: still 2 h apart
        assert load_trace(str(path)).arrival_s[1] == pytest.approx(7200.5)
    finally:
        monkeypatch.delenv("TZ")
        if hasattr(time, "tzset"):
            time.tzset()


def test_full_shared_trace_loads_when_present():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
    if not path.exists():
        pytest.skip("../shared/traces not present")
    w = load_trace(str(path))
    assert len(w) == 19366 and np.median(w.prompt_tokens) == pytest.approx(1020, abs=5)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"instances": [{"role": "prefill"}]}, "needs at least one decode instance"),
        ({"instances": [{"role": "decode"}]}, "needs at least one prefill instance"),
        ({"instances": []}, "instances"),
        ({"instances": [{"hardware": "h100-sxm", "tp": 0}]}, "instances.0.tp"),
        ({"instances": [{"entry_point": "fcfs"}]}, "instances.0.entry_point"),
        ({"router": "randomly", "instances": [{}]}, "router"),
    ],
)
def test_bad_deployments_name_the_field(data, message):
    with pytest.raises(PhasewiseError, match=message):
        build_deployment(data)


def test_deployment_that_does_not_fit_memory():
    dep = collocated("meta-llama/Llama-3.1-70B", "h100-sxm", tp=1)
    with pytest.raises(PhasewiseError, match=r"instances\[0\].*does not fit in memory"):
        simulate(dep, open_loop(1, 5, LengthDist(), LengthDist()))


def test_zero_decode_workers_flag():
    with pytest.raises(PhasewiseError, match="--decode-workers must be >= 1"):
        build(arch="disagg", decode_workers=0, rate=1)


def test_bad_slo():
    with pytest.raises(PhasewiseError, match="--slo-ttft-ms must be > 0"):
        Slo(0, 10)


def test_reserve_admission_never_preempts():
    work = load_trace("azure-conv", 600).scaled_to_rate(10)
    tight = dict(memory_fraction=0.26)
    greedy = simulate(collocated(M, "h100-sxm", **tight), work, check_invariants=True)
    reserve = simulate(collocated(M, "h100-sxm", engine="trtllm", **tight), work, check_invariants=True)
    assert greedy.preemptions.sum() > 0
    assert reserve.preemptions.sum() == 0


def test_batch_cap_holds_on_every_role():
    for dep in (collocated(M, "h100-sxm", max_num_seqs=32), disaggregated(M, "h100-sxm", 1, 1, max_num_seqs=32)):
        res = simulate(dep, open_loop(200, 800, LengthDist("fixed", 128), LengthDist("fixed", 256), seed=2),
                       check_invariants=True)
        for st in res.instances:
            if st.role != "prefill":
                assert st.batch_seqs_sum / st.iterations <= 32 + 1e-9


def test_out_dir_writes_csv_and_parquet(run_cli, tmp_path):
    code, _, err = run_cli("simulate", "--rate", "2", "--requests", "50", "--isl", "256", "--osl", "32",
                           "--out", str(tmp_path / "csv"))
    assert code == 0, err
    lines = (tmp_path / "csv" / "requests.csv").read_text().splitlines()
    assert len(lines) == 51 and lines[0].startswith("request_id,arrival_s")
    pq = pytest.importorskip("pyarrow.parquet")
    code, _, err = run_cli("simulate", "--rate", "2", "--requests", "50", "--isl", "256", "--osl", "32",
                           "--out", str(tmp_path / "pq"), "--format", "parquet")
    assert code == 0, err
    assert pq.read_table(tmp_path / "pq" / "requests.parquet").num_rows == 50


def test_speculative_steps_stream_one_chunk_so_the_itl_is_the_step_not_a_zero_gap():
    """`vllm bench serve` and SGLang's bench_serving take ITL per streamed chunk: a speculative step's accepted
    tokens arrive together, one gap. The TBT figures are those gaps (the p50 was 0 where a step accepted ~2.5
    tokens), their mean the step time, while TPOT divides the same span by every token."""
    work = open_loop(4, 200, LengthDist("fixed", 512), LengthDist("fixed", 128), seed=5)
    plain = simulate(collocated(SPEC_TARGET, "h100-sxm"), work).summary()
    spec = simulate(build_deployment({"model": SPEC_TARGET, "instances": [dict(role="collocated", hardware="h100-sxm")],
                                      "speculative": {"draft_tokens": 3, "acceptance": 0.7, "draft": SPEC_DRAFT}}),
                    work).summary()
    assert spec["tpot_ms"]["mean"] < 0.6 * plain["tpot_ms"]["mean"]  # ~2.5 tokens a step
    assert spec["tbt_ms"]["p50"] > plain["tbt_ms"]["p50"]  # a verify step is longer than a plain one
    assert spec["tbt_ms"]["mean"] > 2 * spec["tpot_ms"]["mean"]
    assert plain["tbt_ms"]["mean"] == pytest.approx(plain["tpot_ms"]["mean"], rel=0.05)
