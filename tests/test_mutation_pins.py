"""Pins for behaviours a light mutation-testing pass found unguarded: each test below fails under one of those
mutations (named in its docstring) and states the behaviour by a hand-computed number."""

import asyncio
import math
from types import SimpleNamespace

import numpy as np
import pytest

import phasewise.plan.goodput as goodput
from phasewise.apps.twin_live import LiveSim, Stream
from phasewise.perf import memory_fit
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.plan import WorkloadSpec, evaluate
from phasewise.plan.goodput import goodput_tokens_per_s_per_gpu, highest_rate
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import collocated
from phasewise.sim.kv import KVBlocks
from phasewise.sim.metrics import slo_met
from phasewise.sim.request import SimRequest
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.workload.generators import LengthDist, open_loop
from phasewise.workload.request import Workload

LLAMA = "meta-llama/Llama-3.1-8B"


# --- perf/memory.py: the busiest pipeline stage holds ceil(layers / pp) layers (M09) ----------------------------

def test_a_pipeline_stage_holds_the_kv_of_its_busiest_stages_layers():
    """M09. Llama-3.1-8B (32 layers, 8 KV heads of 128) in BF16 at PP 3: stages of 11, 11 and 10 layers; a token's
    KV on one GPU is the busiest stage's: 11 layers x 8 heads x (128 K + 128 V) x 2 bytes = 45,056 (not 10 layers'
    40,960, which floor(32 / 3) would give)."""
    expected = 11 * 8 * (128 + 128) * 2  # = 45056
    model, quant = load_model(LLAMA), load_quant("bf16")
    assert kv_bytes_per_token(model, quant, 1, 3) == expected == 45056
    fit = memory_fit(model, load_hardware("h100-sxm"), quant, 1, 3)
    assert fit.kv_bytes_per_token == expected


# --- sim/schedulers/base.py: the prefill budget is the token budget less the step's decode tokens (M11) ----------

def _prefill_tokens_per_launch(res) -> list[int]:
    # the timeline's launches: (start_s, duration_s, utilization, sequences, prefill tokens, decode tokens)
    return [int(launch[4]) for launch in res.instances[0].timeline]


def test_a_prompt_one_token_over_the_budget_prefills_in_two_chunks():
    """M11. vLLM V1 with max_num_batched_tokens 2048: a lone 2049-token prompt runs as a 2048-token chunk, then the
    last token (2048 + 1 = 2049), then its second output token's decode step."""
    dep = collocated(LLAMA, "h100-sxm", max_num_batched_tokens=2048)
    res = simulate(dep, Workload(np.array([0.0]), np.array([2049]), np.array([2])), record_timeline=True)
    assert _prefill_tokens_per_launch(res) == [2048, 1, 0]


def test_running_decodes_take_their_tokens_out_of_the_prefill_budget():
    """M11. A 2048-token budget, 3 requests decoding (1 token each a step) and a 4096-token prompt arriving:
    each step's prompt chunk is 2048 - 3 = 2045 tokens, alongside the 3 decode tokens."""
    dep = collocated(LLAMA, "h100-sxm", max_num_batched_tokens=2048)
    work = Workload(np.array([0.0, 0.0, 0.0, 0.05]), np.array([16, 16, 16, 4096]), np.array([400, 400, 400, 2]))
    res = simulate(dep, work, record_timeline=True)
    # the launches from the long prompt's arrival on that carry prompt tokens: (prefill tokens, decode tokens)
    chunks = [(int(p), int(d)) for start, _, _, _, p, d in res.instances[0].timeline if start >= 0.05 and p > 0]
    assert chunks == [(2045, 3), (2045, 3), (6, 3)]  # 2045 + 2045 + 6 = 4096


# --- workload/generators.py: Gamma arrivals keep the rate whatever the CV (M18) ---------------------------------

def test_gamma_arrivals_keep_the_requested_rate_and_cv():
    """M18. Gamma gaps of shape k = 1 / cv^2 and scale 1 / (rate x k): mean k x 1 / (rate x k) = 1 / rate =
    1 / 4 = 0.25 s, CV 1 / sqrt(k) = cv = 2 (a scale of 1 / rate would give a mean of k / rate = 0.0625 s)."""
    fixed = LengthDist("fixed", 16)
    work = open_loop(4.0, 200_000, fixed, fixed, arrival="gamma", cv=2.0)
    gaps = np.diff(work.arrival_s)  # 199,999 gaps after the first request at 0
    assert work.arrival_s[0] == 0.0
    # standard error of the mean: cv / sqrt(n) = 2 / 447 = 0.45 %; of the CV a few times that
    assert gaps.mean() == pytest.approx(0.25, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(2.0, rel=0.05)


# --- plan/goodput.py: the search, the attainment test, tokens per GPU (M19, M20, M22) ---------------------------

def test_highest_rate_bisects_the_bracket_exactly_steps_times():
    """M19. Attaining up to 100 rps from a guess of 10: doublings 10, 20, 40, 80 attain, 160 does not (5 probes,
    bracket [80, 160]); then 6 bisections: 120 no, 100 yes, 110 no, 105 no, 102.5 no, 101.25 no -> (100, 101.25)
    after 5 + 6 = 11 probes."""
    tried: list[float] = []

    def attains(rate: float) -> bool:
        tried.append(rate)
        return rate <= 100

    assert highest_rate(attains, 10.0, 6) == (100.0, 101.25)
    assert tried == [10.0, 20.0, 40.0, 80.0, 160.0, 120.0, 100.0, 110.0, 105.0, 102.5, 101.25]


def test_an_attainment_exactly_at_the_target_attains(monkeypatch):
    """M20. evaluate() with the simulation stubbed to attain exactly 0.9 at every rate, target 0.9: every rate
    attains, so the bracket doubles 8 times from the guess max(capacity 8 x 1.25, 1e-3) = 10 rps: 10, 20, ..., 1280
    all attain and the goodput is 10 x 2^7 = 1280 rps (with > instead of >=, none would and the goodput be 0)."""
    summary = {"slo": {"attainment": 0.9, "ttft_attainment": 0.9, "tpot_attainment": 0.9, "tbt_attainment": 0.9},
               "sim": {"stopped_s": math.nan}}
    monkeypatch.setattr(goodput, "build_deployment", lambda spec, what: SimpleNamespace(router="round_robin"))
    monkeypatch.setattr(goodput, "capacity_estimate", lambda strategy, work: 8.0)
    monkeypatch.setattr(goodput, "simulate", lambda *a, **k: SimpleNamespace(summary=lambda: dict(summary)))
    monkeypatch.setattr(goodput, "queue_verdict", lambda res: goodput.STEADY)  # the queue stays bounded
    monkeypatch.setattr(goodput, "curve_point", lambda s, rate, scale, gpus: {"rate_rps": rate})
    strategy = SimpleNamespace(name="stub", units=1, gpus=1, slice=lambda units: {})
    work = WorkloadSpec((16,), (4,), seed=0, name="16/4")
    result = evaluate(strategy, work, Slo(1000, 50), target=0.9, steps=6, window_s=0.01, min_requests=2)
    assert result.goodput_rps == 1280.0
    assert [p["rate_rps"] for p in result.curve] == [10.0 * 2**i for i in range(8)]


def test_goodput_tokens_per_gpu_divides_by_the_gpus():
    """M22. 2 rps x (2048 tokens/s x 50 s / 100 requests = 1024 tokens a request) / 4 GPUs = 512 tokens/s/GPU."""
    s = {"requests": 100, "duration_s": 50.0, "throughput": {"output_tokens_per_s": 2048.0}}
    assert goodput_tokens_per_s_per_gpu(2.0, s, 4) == 512.0
    assert goodput_tokens_per_s_per_gpu(2.0, s, 1) == 2048.0  # 2 x 1024 / 1


# --- sim/metrics.py: an SLO is met at its limit (M21) -----------------------------------------------------------

def test_slo_met_at_exactly_the_ttft_limit():
    """M21. TTFT <= 100 ms attains: 0.1 s x 1e3 = 100 ms meets it, 100.1 ms does not; TPOT 20 ms <= 20 ms."""
    met = slo_met(Slo(ttft_ms=100, tpot_ms=20), np.array([0.1, 0.1001]), np.array([0.02] * 2), np.array([0.02] * 2),
                  np.array([10, 10]))
    assert met.tolist() == [True, False]
    assert bool(slo_met(Slo(ttft_ms=100, tpot_ms=20), 0.1, 0.02, 0.02, 10))  # scalars alike


def _small_run(slo: Slo):
    dep = collocated(LLAMA, "h100-sxm")
    fixed_prompt, fixed_output = LengthDist("fixed", 512), LengthDist("fixed", 32)
    return simulate(dep, open_loop(40.0, 60, fixed_prompt, fixed_output, seed=3), slo)


def test_summary_attainment_counts_a_request_exactly_at_its_ttft_limit():
    """M21 through summary(): an SLO whose TTFT limit is exactly the run's longest TTFT (in ms, as the comparison
    computes it) is met by every request, in the headline attainment as in ttft_attainment (the same simulation:
    the SLO steers nothing here)."""
    longest_ms = float(np.nanmax(_small_run(Slo()).ttft_s) * 1e3)
    s = _small_run(Slo(ttft_ms=longest_ms)).summary()
    assert s["completed"] == s["requests"] == 60
    assert s["slo"]["ttft_attainment"] == 1.0
    assert s["slo"]["attainment"] == 1.0


def test_summary_attainment_is_at_most_each_dimensions():
    """summary() restates each dimension's comparison rather than calling slo_met: a request attains only if it
    meets all three, so the headline attainment can be no more than any one dimension's."""
    s = _small_run(Slo(ttft_ms=30, tpot_ms=12, max_tbt_ms=30)).summary()["slo"]
    per_dimension = (s["ttft_attainment"], s["tpot_attainment"], s["tbt_attainment"])
    assert all(0 < a < 1 for a in per_dimension)  # each SLO binds some requests and not others (0.72, 0.75, 0.70)
    assert s["attainment"] <= min(per_dimension) + 1e-12


# --- apps/twin_live.py: the twin's TTFT and inter-token histograms (M25, M26) -----------------------------------

@pytest.fixture(scope="module")
def live():
    return LiveSim(collocated(LLAMA, "h100-sxm"), speed=1.0)


def _stream(live: LiveSim, arrival_s: float, scheduled_s: float) -> SimRequest:
    req = SimRequest(10_000 + live.next_id, arrival_s, 64, 8)
    live.next_id += 1
    req.scheduled_s, req.first_instance, req.cached_tokens = scheduled_s, 0, 0
    req.handle = Stream(req, asyncio.Queue(), http=live.http_request("completions", True, 1))
    return req


def test_ttft_counts_from_arrival_not_from_scheduling(live):
    """M26. Arrived at 0.0 s, scheduled at 0.5 s, first token at 1.0 s, speed 1: the TTFT histogram observes
    1.0 - 0.0 = 1.0 s (not 1.0 - 0.5 = 0.5 s)."""
    m = live.metrics
    req = _stream(live, 0.0, 0.5)
    n0, total0 = m.ttft.n, m.ttft.total
    live._on_token(req, 1, 1.0, live.instances[0])
    assert m.ttft.n == n0 + 1
    assert m.ttft.total - total0 == pytest.approx(1.0, abs=1e-12)


def test_inter_token_histograms_split_a_step_per_token_for_sglang_not_for_vllm(live):
    """M25. 3 tokens 0.03 s after the previous one, speed 1: SGLang's per-token histogram takes 3 samples of
    0.03 / 3 = 0.01 s (count +3, sum +3 x 0.01 = 0.03); vLLM's per-step one a single sample of 0.03 s (count +1,
    sum +0.03)."""
    m = live.metrics
    req = _stream(live, 0.0, 0.0)
    instance = live.instances[0]
    live._on_token(req, 1, 1.0, instance)  # the first token (TTFT)
    token_n, token_total, step_n, step_total = m.token_itl.n, m.token_itl.total, m.step_itl.n, m.step_itl.total
    live._on_token(req, 3, 1.03, instance)
    assert m.token_itl.n - token_n == 3
    assert m.token_itl.total - token_total == pytest.approx(0.03, abs=1e-9)
    assert m.step_itl.n - step_n == 1
    assert m.step_itl.total - step_total == pytest.approx(0.03, abs=1e-9)


# --- sim/kv.py: a prompt takes ceil(tokens / block_size) blocks (M30) -------------------------------------------

def test_kv_blocks_round_up_to_whole_blocks():
    """M30. 16-token blocks: 16 tokens fill 1 block exactly, 17 need ceil(17 / 16) = 2, 0 need none, 32 need 2."""
    kv = KVBlocks(capacity=8, block_size=16)
    assert [kv.blocks_for(t) for t in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]
