"""A real two-process pipeline (measure/pipeline_check.py) against the split simulator (skips without torch).

Quick and loose on purpose: a tiny model on the packaged cpu-local entry (no calibration, to stay within
seconds) at a link speed where the throttled socket dominates TTFT; the bound (median |error| <= 50 %) is what
that holds with margin on a noisy shared 2-core machine. The figures after a full `phasewise calibrate`
(4 layers x 512 wide, S = 1, 2, 4, 8 at 20 and 200 Mbit/s) are in the README, from the command itself.
"""

import multiprocessing
import socket
import threading
import time

import pytest

from phasewise.errors import PhasewiseError

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_token_bucket_throttles_a_socket():
    from phasewise.measure.pipeline_check import HIDDEN, TokenBucket, receive, send_throttled

    rate_bytes_per_s, nbytes = 2e6, 200_000  # 16 Mbit/s, 200 kB: ~0.1 s on the wire
    left, right = socket.socketpair()
    got = {}
    try:
        reader = threading.Thread(target=lambda: got.update(message=receive(right)))
        reader.start()
        start = time.perf_counter()
        send_throttled(left, TokenBucket(rate_bytes_per_s), HIDDEN, b"\0" * nbytes)
        reader.join(timeout=10)
        elapsed_s = time.perf_counter() - start
    finally:
        left.close()
        right.close()
    assert got["message"][0] == HIDDEN and len(got["message"][1]) == nbytes
    expected_s = (nbytes + 16) / rate_bytes_per_s  # no burst credit: the whole message (and header) pays B/R
    assert 0.9 * expected_s <= elapsed_s <= 1.5 * expected_s, (elapsed_s, expected_s)


def test_two_process_pipeline_against_the_simulator():
    from phasewise.measure.pipeline_validate import pipeline_summary, pipeline_validate

    points, info = pipeline_validate("meta-llama/Llama-2-7b-hf", "cpu-local", link_mbps=[10.0], sub_sequences=[1, 4],
                                     layers=2, hidden=128, prompt_tokens=128, decode_steps=4, repeats=2)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("phasewise-stage")]
    assert {(p.metric, p.sub_sequences) for p in points} == {("ttft", 1), ("ttft", 4), ("decode", 1)}
    # each stage process measures under its parent's host allocator (a spawned process starts with malloc's defaults)
    assert info["stage_host_allocators"] == [info["host_allocator"]] * 2
    # the link's latency is measured on a decode step's own messages (hidden_size fp32 out, a token id back)
    assert 0 < info["small_message_one_way_latency_s"] < 0.01 and 0 < info["socket_one_way_latency_s"] < 0.01
    ttft = {p.sub_sequences: p for p in points if p.metric == "ttft"}
    # 64 kB of hidden states at 10 Mbit/s: ~52 ms on the wire, more than the tiny model's compute
    assert ttft[1].measured_s >= 0.9 * info["hidden_state_bytes"] * 8 / 10e6
    stats = pipeline_summary(points)
    assert stats["median_abs_error"] <= 0.50, [(p.metric, p.sub_sequences, p.measured_s, p.predicted_s) for p in points]


def test_a_small_message_pays_its_serialisation_time():
    """A message smaller than a chunk (a decode step's hidden state) is not let through at once: B/R, as the
    simulator's link charges it."""
    from phasewise.measure.pipeline_check import TokenBucket

    bucket = TokenBucket(1e6)  # 1 MB/s, starts full (one chunk of credit)
    start = time.perf_counter()
    bucket.begin()  # a message starts: the idle credit is dropped
    bucket.take(2048)
    assert bucket.empty_s >= start + 2048 / 1e6  # the 2 KB chunk left 2 ms after the message started


def test_pipeline_errors():
    from phasewise.measure.pipeline_validate import pipeline_validate

    with pytest.raises(PhasewiseError, match="only 2 stages"):
        pipeline_validate("meta-llama/Llama-2-7b-hf", "cpu-local", stages=3)
    with pytest.raises(PhasewiseError, match="--link-mbps must be > 0"):
        pipeline_validate("meta-llama/Llama-2-7b-hf", "cpu-local", link_mbps=[-1.0])
    from phasewise.measure.pipeline_check import TwoStagePipeline

    with pytest.raises(PhasewiseError, match="ping: floats"):  # checked before any process is asked
        TwoStagePipeline({}, 1).one_way_latency_s(0, idle_s=-1.0)


def test_a_short_conv_hybrid_split_over_two_processes():
    """LFM2's first 4 layers (conv, conv, attention, conv) scaled to 128 wide over two processes: stage 0 holds two
    conv layers (no attention: transformers is given no mask for it), stage 1 the attention and a conv layer, each
    with its own cache of conv states and KV; the simulator's stages hold the same (ModelSpec.layer_pattern,
    stack_part). Loose, as the Llama test above."""
    from phasewise.measure.pipeline_validate import pipeline_summary, pipeline_validate

    points, info = pipeline_validate("LiquidAI/LFM2-1.2B", "cpu-local", link_mbps=[10.0], sub_sequences=[1, 4],
                                     layers=4, hidden=128, prompt_tokens=128, decode_steps=4, repeats=2)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("phasewise-stage")]
    assert info["family"] == "lfm2" and info["stage_linear_layers"] == [2, 1]
    assert pipeline_summary(points)["median_abs_error"] <= 0.50, [(p.metric, p.measured_s, p.predicted_s)
                                                                   for p in points]


def test_hybrid_pipeline_errors():
    from phasewise.measure.pipeline_validate import scaled_lfm2_config
    from phasewise.measure.validate import scaled_config
    from phasewise.specs import load_model

    lfm2 = load_model("LiquidAI/LFM2-1.2B")
    with pytest.raises(PhasewiseError, match="an attention layer among them \\(3 or more\\)"):
        scaled_lfm2_config(lfm2, 2, 128)
    with pytest.raises(PhasewiseError, match="--hidden must be a multiple of the heads' 64"):
        scaled_lfm2_config(lfm2, 4, 100)
    with pytest.raises(PhasewiseError, match="is a linear-attention hybrid"):  # never built as a Llama stack
        scaled_config(lfm2, 4, 128)
    with pytest.raises(PhasewiseError, match="catalog LFM2 entry"):
        scaled_lfm2_config(load_model("meta-llama/Llama-2-7b-hf"), 4, 128)
