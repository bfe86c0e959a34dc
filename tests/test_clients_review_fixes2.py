"""Benchmark-client review fixes (round 2): each client's own default lengths (a note where it has none), the
warm-up copies sharing request 0's prompt in a prefix cache, SGLang's warm-ups sent all at once, vLLM's readiness
request kept before its --num-warmups copies."""

import numpy as np
import pytest

from phasewise.sim.api import build, run
from phasewise.workload import client_workload, load_client


def test_sglang_bench_without_lengths_draws_from_its_random_dataset_defaults():
    """bench_serving's --random-input-len / --random-output-len default to 1024 / 1024 (range ratio 0): outputs
    uniform in [1, 1024], mean ~512, where phasewise's 256 had been taken (outputs 1-256, mean 124)."""
    assert load_client("sglang-bench").default_lengths == (1024, 1024)
    spec = build(concurrency=8, client="sglang-bench", num_prompts=2000, warmup=0)
    prompts, outputs = spec.workload.lengths()
    assert prompts.max() <= 1024 and outputs.max() <= 1024 and outputs.max() > 1000
    assert abs(outputs.mean() - 512) < 30 and abs(prompts.mean() - 512) < 30
    assert not any("sglang-bench" in note for note in spec.notes)  # its own defaults: nothing to note


@pytest.mark.parametrize("client", ["aiperf", "genai-perf"])
def test_aiperf_and_genai_perf_take_their_prompt_default_and_note_the_output_length(client):
    """Their synthetic prompts default to 550 tokens; they set no output length (the model decides): phasewise's
    256 are taken, and the run says so, naming --osl."""
    spec = build(concurrency=8, client=client)
    prompts, outputs = spec.workload.lengths()
    assert set(prompts.tolist()) == {550} and set(outputs.tolist()) == {256}
    (note,) = [n for n in spec.notes if n.startswith(f"--client {client}")]
    assert "without --osl: 256 output tokens, phasewise's default" in note
    assert not any(n.startswith("--client") for n in build(concurrency=8, client=client, osl=64).notes)


def test_inferencex_without_lengths_notes_both(run_cli):
    spec = build(concurrency=2, client="inferencex", num_prompts=4, warmup=0)
    notes = [n for n in spec.notes if n.startswith("--client inferencex")]
    assert len(notes) == 2 and "--isl: 1,024 prompt tokens" in notes[0] and "--osl: 256 output" in notes[1]
    code, out, _ = run_cli("simulate", "--concurrency", "8", "--client", "aiperf", "--isl", "256")
    assert code == 0 and "--client aiperf without --osl" in " ".join(out.split())  # the text output prints it


def _copies(prefix_caching=None):
    return run(engine="vllm", concurrency=2, client="inferencex", num_prompts=6, isl=8192, osl=16,
               prefix_caching=prefix_caching, check_invariants=True)


def test_warmup_copies_and_request_0_share_one_prompt_in_the_prefix_cache():
    """InferenceX sends 2 x C copies of input_requests[0] C at a time, then request 0 itself: with the engine's
    prefix cache on, the later copies and request 0 hit the cached prefix (block-aligned, at most prompt - 1
    tokens, in the engine's own 16-token blocks: a closed loop's prompts are keyed as the twin keys its); the other
    prompts share nothing. They never hit before."""
    r = _copies()
    n = 6
    prompt0 = int(r.prompt_tokens[0])
    expected = (prompt0 - 1) // 16 * 16
    warm = r.cached_tokens[n:]
    assert warm[0] == 0 and set(warm[2:].tolist()) == {expected}  # the first wave's first copy computes it all
    assert r.cached_tokens[0] == expected and (r.cached_tokens[1:n] == 0).all()
    assert r.ttft_s[n + 2] < 0.5 * r.ttft_s[n]  # the second wave's copies skip the cached prefill


def test_with_prefix_caching_off_the_copies_share_nothing():
    r = _copies("off")
    n = 6
    ttft = r.ttft_s[n:]
    assert ttft[2:4] == pytest.approx(ttft[:2], rel=0.05)  # the second wave prefills all as the first: no hit
    assert "cached_tokens" not in r.records()


def test_sglang_warmups_are_sent_all_at_once():
    """bench_serving gathers request_func tasks for its warm-ups: no semaphore (they had gone C at a time)."""
    r = run(engine="sglang", concurrency=2, client="sglang-bench", warmup=6, num_prompts=4, isl=512, osl=16)
    assert (r.arrival_s[4:] == 0.0).all()
    assert r.arrival_s[:4].min() == pytest.approx(r.finish_s[4:].max() + 1.0)  # then 1 s of sleep


def test_inferencex_and_vllm_warmups_stay_behind_the_semaphore():
    w = client_workload("inferencex", 2, num_prompts=4, isl=512, osl=16)
    assert (w.warmup_requests, w.readiness_requests, w.warmup_at_once) == (4, 0, False)
    r = run(engine="vllm", concurrency=2, client="inferencex", num_prompts=4, isl=512, osl=16)
    arrivals = np.sort(r.arrival_s[4:])
    assert (arrivals[:2] == 0).all() and (arrivals[2:] > 0).all()


def test_vllm_readiness_request_runs_alone_first_then_the_num_warmups_copies():
    """vLLM's benchmark() awaits its readiness request (wait_for_endpoint) before --num-warmups N copies go behind
    warmup_semaphore: --warmup 4 is 5 unmeasured requests (it had been 4, no lone readiness request)."""
    r = run(engine="vllm", concurrency=2, client="vllm-bench", warmup=4, num_prompts=4, isl=512, osl=16)
    assert r.summary()["warmup_requests"] == 5
    ready, copies = 4, np.arange(5, 9)
    assert r.arrival_s[ready] == 0.0 and (r.arrival_s[copies] > 0).all()
    assert r.arrival_s[copies[:2]] == pytest.approx([r.finish_s[ready]] * 2)  # then C at a time
    assert r.arrival_s[copies[2:]].min() > r.arrival_s[copies[:2]].max()
    w = client_workload("vllm-bench", 8, warmup=0, isl=512, osl=16)  # --num-warmups 0: the readiness one stays
    assert (w.warmup_requests, w.readiness_requests) == (1, 1)
