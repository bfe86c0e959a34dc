"""Benchmark clients at fixed concurrency: presets, length sampling, warm-up, steady-state figures, flags."""

import json

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.api import build, deployment_from_flags
from phasewise.sim.simulate import simulate
from phasewise.workload import ClosedLoop, LengthDist, client_names, client_workload, load_client


def test_presets_defaults():
    assert set(client_names()) == {"vllm-bench", "sglang-bench", "genai-perf", "aiperf", "inferencex"}
    expect = {  # name: (requests at C=8, at C=64, warm-up at C=64, sleep s)
        "vllm-bench": (1000, 1000, 1, 0.0),
        "sglang-bench": (1000, 1000, 1, 1.0),
        "genai-perf": (16, 128, 0, 0.0),  # max(10, 2 x C)
        "aiperf": (10, 10, 0, 0.0),
        "inferencex": (80, 640, 128, 0.0),  # 10 x C prompts, 2 x C warm-up copies of the first
    }
    for name, (n8, n64, warm, sleep) in expect.items():
        c = load_client(name)
        assert c.default_num_prompts(8) == n8 and c.default_num_prompts(64) == n64
        assert c.default_num_prompts(3) == {"genai-perf": 10, "inferencex": 30}.get(name, n8)  # genai-perf: max(10, 6)
        w = client_workload(name, 64)
        assert (w.requests, w.warmup_requests, w.warmup_sleep_s) == (n64, warm, sleep)
        assert w.think_s == 0.0 and w.concurrency == 64
        for key in ("num_prompts", "warmup_requests", "lengths", "range_ratio"):
            assert c.source(key), f"{name}.{key} has no source"
    assert load_client("sglang-bench").warmup_output_cap == 32
    # overrides
    w = client_workload("vllm-bench", 16, num_prompts=80, warmup=3)
    assert (w.requests, w.warmup_requests) == (80, 4)  # vLLM's readiness request, then --num-warmups 3
    assert client_workload("sglang-bench", 16, warmup=0).warmup_sleep_s == 0.0


def test_fixed_lengths_for_vllm_aiperf_genai_perf():
    for name in ("vllm-bench", "aiperf", "genai-perf"):
        p, o = client_workload(name, 8, num_prompts=200, isl=2048, osl=256).lengths()
        assert (p == 2048).all() and (o == 256).all()


def test_sglang_random_lengths_are_uniform_from_1_to_L():
    w = client_workload("sglang-bench", 8, num_prompts=40000, isl=1000, osl=200, seed=1)
    p, o = w.lengths()
    for x, length in ((p, 1000), (o, 200)):
        assert x.min() == 1 and x.max() == length
        assert abs(x.mean() - (length + 1) / 2) < 0.02 * length  # mean ~ L/2
        counts = np.bincount((x - 1) * 10 // length, minlength=10)  # ten equal bins of [1, L]
        assert counts.min() > 0.9 * len(x) / 10 and counts.max() < 1.1 * len(x) / 10
    # --isl-dist/--osl-dist override the client's sampling
    p, _ = client_workload("sglang-bench", 8, num_prompts=50, isl=1000, osl=200,
                           prompt=LengthDist("fixed", 1000)).lengths()
    assert (p == 1000).all()


def test_inferencex_lengths_are_uniform_from_0_8_l_to_l():
    p, o = client_workload("inferencex", 8, num_prompts=20000, isl=1024, osl=8192, seed=2).lengths()
    for x, length in ((p, 1024), (o, 8192)):
        assert x.min() == int(0.8 * length) and x.max() == length
        assert abs(x.mean() - 0.9 * length) < 0.01 * length


def test_unknown_client_lists_the_names():
    with pytest.raises(PhasewiseError, match="--client 'vllm' is not one of vllm-bench, sglang-bench"):
        client_workload("vllm", 8)


def test_closed_loop_validation():
    p = LengthDist("fixed", 128)
    with pytest.raises(PhasewiseError, match="--warmup must be >= 0"):
        ClosedLoop(4, 10, p, p, warmup_requests=-1)
    with pytest.raises(PhasewiseError, match="warm-up sleep"):
        ClosedLoop(4, 10, p, p, warmup_sleep_s=-1.0)
    with pytest.raises(PhasewiseError, match="lognormal"):
        LengthDist("lognormal", 512, 0.0)


def test_warmup_is_excluded_and_delays_the_measured_requests():
    dep = deployment_from_flags(prefix_caching="off")  # with a prefix cache its copy warms request 0 (below)
    warm = simulate(dep, client_workload("sglang-bench", 4, 20, None, 512, 64, seed=3), check_invariants=True)
    cold = simulate(dep, client_workload("sglang-bench", 4, 20, 0, 512, 64, seed=3), check_invariants=True)
    sw, sc = warm.summary(), cold.summary()
    assert (sw["requests"], sw["warmup_requests"], sc["warmup_requests"]) == (20, 1, 0)
    # the warm-up request ran first, alone; the measured ones were released 1 s after it finished
    assert warm.measured is not None and not warm.measured[-1] and warm.measured[:20].all()
    assert warm.arrival_s[-1] == 0.0
    assert warm.arrival_s[:20].min() == pytest.approx(warm.finish_s[-1] + 1.0)
    assert warm.output_tokens[-1] == min(warm.output_tokens[0], 32)  # sglang caps the warm-up's output
    # without a prefix cache it warms nothing in a simulator: the measured figures are those of the run without it
    for key in ("ttft_ms", "tpot_ms", "tbt_ms", "e2e_ms", "queue_ms"):
        for q in ("mean", "p50", "p99"):
            assert sw[key][q] == pytest.approx(sc[key][q], rel=1e-9), (key, q)
    assert sw["duration_s"] == pytest.approx(sc["duration_s"], rel=1e-9)
    assert sw["completed"] == 20 and warm.tbt.n == cold.tbt.n
    assert sw["throughput"]["output_tokens_per_s"] == pytest.approx(sc["throughput"]["output_tokens_per_s"])
    assert not warm.records()["measured"][-1]
    # with the engine's prefix cache (on by default) the copy warms request 0, its very prompt, and nothing else
    cached = simulate(deployment_from_flags(), client_workload("sglang-bench", 4, 20, None, 512, 64, seed=3),
                      check_invariants=True)
    assert cached.cached_tokens[0] > 0 and (cached.cached_tokens[1:20] == 0).all()
    assert cached.ttft_s[0] < warm.ttft_s[0]


@pytest.mark.parametrize("client, warmup", [("vllm-bench", None), ("vllm-bench", 5), ("sglang-bench", 3)])
def test_warmup_gaps_leave_the_tbt_histogram(client, warmup):
    dep = deployment_from_flags()
    kw = dict(isl=512, osl=64, seed=1)
    warm = simulate(dep, client_workload(client, 2, 12, warmup, **kw), check_invariants=True)
    cold = simulate(dep, client_workload(client, 2, 12, 0, **kw), check_invariants=True)
    w = warm.summary()["warmup_requests"]
    readiness = int(client == "vllm-bench")  # vLLM's readiness request comes before its --num-warmups copies
    assert w == (1 if warmup is None else warmup + readiness) and (warm.output_tokens[12:] > 1).all()
    assert warm.arrival_s[:12].min() >= warm.finish_s[12:].max()  # all warm-ups done before the release
    assert warm.tbt.n == cold.tbt.n == int((cold.output_tokens[:12] - 1).sum())
    assert warm.summary()["tbt_ms"] == pytest.approx(cold.summary()["tbt_ms"], rel=1e-9)


def _prefill_first_deployment():
    for engine in ("vllm-v0", "vllm-2023"):  # vLLM V0's prefill-first scheduler
        try:
            return deployment_from_flags(engine=engine)
        except PhasewiseError:
            continue
    return deployment_from_flags(scheduler="vllm")  # before engine presets: 'vllm' was prefill-first


def test_steady_state_differs_from_all_requests_with_equal_requests():
    c, n = 16, 200
    res = simulate(_prefill_first_deployment(), ClosedLoop(c, n, LengthDist("fixed", 1024), LengthDist("fixed", 128)))
    s = res.summary()
    ss = s["steady_state"]
    assert ss is not None and ss["requests"] == n - 2 * c and ss["completed"] == n - 2 * c
    assert (ss["excluded_first"], ss["excluded_last"], ss["concurrency"]) == (c, c, c)
    assert set(ss) >= {"ttft_ms", "tpot_ms", "tbt_ms", "e2e_ms"}
    diffs = [abs(ss[k][q] / s[k][q] - 1) for k in ("ttft_ms", "tpot_ms", "tbt_ms") for q in ("mean", "p50", "p99")]
    assert max(diffs) > 0.01
    # the steady-state window is requests c .. n-c-1 (in release order)
    ttft = res.ttft_s[c:n - c] * 1e3
    assert ss["ttft_ms"]["mean"] == pytest.approx(ttft.mean())
    assert ss["ttft_ms"]["p99"] == pytest.approx(np.percentile(ttft, 99))


def test_first_wave_burst_weighs_on_chunked_engines():
    # decode-first chunked prefill: after the first wave the requests spread out; the burst is the p99
    res = simulate(deployment_from_flags(engine="sarathi"),
                   ClosedLoop(16, 200, LengthDist("fixed", 1024), LengthDist("fixed", 128)))
    s = res.summary()
    assert s["ttft_ms"]["p99"] > 3 * s["steady_state"]["ttft_ms"]["p99"]


def test_steady_state_is_none_where_it_does_not_apply():
    dep = deployment_from_flags()
    res = simulate(dep, client_workload("genai-perf", 8, isl=256, osl=16))  # 2 x C requests: two waves only
    assert res.summary()["requests"] == 16 and res.summary()["steady_state"] is None
    spec = build(rate=5, requests=20, isl=256, osl=16)
    s = simulate(spec.deployment, spec.workload).summary()
    assert s["steady_state"] is None and s["concurrency"] is None and s["warmup_requests"] == 0


def test_build_wires_the_client():
    spec = build(concurrency=8, client="sglang-bench", num_prompts=40, isl=512, osl=64)
    w = spec.workload
    assert isinstance(w, ClosedLoop) and (w.requests, w.warmup_requests, w.warmup_sleep_s) == (40, 1, 1.0)
    assert w.name == "sglang-bench"
    assert build(concurrency=8, client="aiperf").workload.requests == 10
    assert build(concurrency=8, warmup=2).workload.warmup_requests == 2
    assert build(concurrency=8, requests=30).workload.requests == 30
    assert build(concurrency=8).workload.requests == 1000
    p, _ = build(concurrency=8, client="sglang-bench", isl_dist="fixed", isl=512).workload.lengths()
    assert (p == 512).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--client", "vllm-bench"], "--client vllm-bench needs --concurrency"),
        (["--concurrency", "8", "--client", "vllm"], "--client 'vllm' is not one of vllm-bench, sglang-bench"),
        (["--concurrency", "8", "--requests", "10", "--num-prompts", "10"], "give either --requests or --num-prompts"),
        (["--rate", "5", "--warmup", "2"], "--warmup needs --concurrency"),
        (["--concurrency", "8", "--warmup", "-1"], "--warmup must be >= 0"),
        (["--concurrency", "8", "--num-prompts", "0"], "--num-prompts must be >= 1"),
        (["--trace", "azure-conv", "--requests", "10"], "--requests does not apply to --trace"),
        (["--trace", "azure-conv", "--num-prompts", "10"], "--num-prompts does not apply to --trace"),
        (["--trace", "azure-conv", "--concurrency", "8"], "--concurrency does not apply to --trace"),
        (["--rate", "5", "--isl-dist", "lognormal"], "--isl-spread must be > 0 for lognormal"),
        (["--rate", "5", "--osl-dist", "lognormal"], "--osl-spread must be > 0 for lognormal"),
        # a uniform spread past 1 clipped its draws below one token to 1: the mean drifted (100 -> 134 at 3)
        (["--rate", "5", "--isl-dist", "uniform", "--isl-spread", "3"], "--isl-spread must be <= 1 for uniform"),
        # found by a fuzz of every flag: tracebacks, a NumPy warning, an out-of-memory kill
        (["--rate", "5", "--isl", "nan"], "--isl must be a finite number of tokens >= 1 (got nan)"),
        (["--concurrency", "4", "--osl", "inf"], "--osl must be a finite number of tokens >= 1 (got inf)"),
        (["--rate", "5", "--seed", "-1"], "--seed must be >= 0 (got -1)"),
        (["--rate", "5", "--requests", "99999999999"], "--requests must be <= 10,000,000"),
        (["--rate", "5", "--replicas", "99999999999"], "--replicas: Input should be less than or equal to"),
        # flags that used to be ignored without a word
        (["--trace", "azure-conv", "--isl", "100"], "--isl does not apply to --trace"),
        (["--trace", "azure-conv", "--osl-dist", "uniform"], "--osl-dist does not apply to --trace"),
        (["--rate", "5", "--isl-spread", "0.5"], "--isl-spread applies to --isl-dist uniform or lognormal (got fixed)"),
        (["--concurrency", "4", "--client", "vllm-bench", "--osl-spread", "0.2"], "(got the client's sampling)"),
        (["--rate", "5", "--trace-limit", "30"], "--trace-limit needs --trace"),
    ],
)
def test_bad_combinations_are_one_line_errors(run_cli, args, message):
    code, _, err = run_cli("simulate", *args)
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_json_has_the_steady_state_block(run_cli):
    code, out, err = run_cli("simulate", "--concurrency", "8", "--client", "vllm-bench", "--num-prompts", "40",
                             "--isl", "512", "--osl", "32", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["requests"] == 40 and d["warmup_requests"] == 1 and d["concurrency"] == 8
    ss = d["steady_state"]
    assert ss["requests"] == 24 and set(ss["ttft_ms"]) >= {"mean", "p50", "p99"}
    code, out, _ = run_cli("simulate", "--concurrency", "8", "--client", "aiperf", "--isl", "512", "--osl", "32",
                           "--json")
    assert code == 0 and json.loads(out)["steady_state"] is None


def test_text_output_prints_the_steady_state_line(run_cli):
    code, out, err = run_cli("simulate", "--concurrency", "8", "--client", "sglang-bench", "--num-prompts", "40",
                             "--isl", "512", "--osl", "32")
    assert code == 0, err
    assert "Steady state (24 requests, first/last wave of 8 excluded)" in out
    assert "1 warm-up request(s)" in out
    code, out, _ = run_cli("simulate", "--concurrency", "8", "--client", "genai-perf", "--isl", "512", "--osl", "32")
    assert code == 0 and "Steady state: none" in out


def test_tokens_per_joule_does_not_charge_the_measured_tokens_for_the_warm_up(run_cli):
    """The instances' energy covers the warm-up too: tokens per joule divides every token generated in it, so a
    warm-up barely moves it (it fell 17 % with InferenceX's 16 warm-up requests when only the measured tokens
    counted). Without a prefix cache: with one, the copies of the first prompt skip most of their prefill, so a
    warm-up's tokens cost less energy than the run's."""
    figures = []
    for warmup in ("16", "0"):
        code, out, _ = run_cli("simulate", "--concurrency", "8", "--client", "inferencex", "--warmup", warmup,
                               "--prefix-caching", "off", "--json")
        assert code == 0
        figures.append(json.loads(out)["throughput"]["output_tokens_per_joule"])
    assert figures[0] == pytest.approx(figures[1], rel=0.01)


def test_vllm_bench_without_lengths_uses_its_random_datasets_defaults():
    """`vllm bench serve`'s random dataset is 1024 / 128 tokens by default (ENGINES.md), SGLang's bench_serving's
    1024 / 1024; given lengths win."""
    assert load_client("vllm-bench").default_lengths == (1024, 128)
    for client, osl, expected in (("vllm-bench", None, {128}), ("vllm-bench", 64, {64})):
        spec = build(concurrency=2, client=client, num_prompts=4, osl=osl, warmup=0)
        result = simulate(spec.deployment, spec.workload)
        assert set(result.output_tokens.tolist()) == expected and set(result.prompt_tokens.tolist()) == {1024}
    spec = build(concurrency=2, client="sglang-bench", num_prompts=40, warmup=0)
    outputs = simulate(spec.deployment, spec.workload).output_tokens
    assert outputs.max() <= 1024 < 2 * outputs.max()  # SGLang's random dataset: uniform in [1, L], L = 1024
