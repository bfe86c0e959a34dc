"""The twin after a soak review: a second Ctrl-C while open requests drain ends each with an error (one line, status
130, no traceback), and the first says it is draining; SIGTERM or Ctrl-C during --cold-start exits 0; vLLM's
prompt-token counter counts a prompt when its prefill yields a token (SGLang's when its request finishes); vLLM's
inter-token histograms take one sample an engine step (a speculative step's tokens together), SGLang's one a token;
vLLM V1's per-request TPOT histogram; request fields read as vLLM's pydantic models read them (lax mode: 3.0 is 3,
"true" is true). 127.0.0.1 only; every server stopped."""

import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import free_port, serving, wait_healthy

from phasewise.apps import twin_request
from phasewise.apps.tokenizer import Tokenizer
from phasewise.apps.twin import create_app
from phasewise.apps.twin_live import LiveSim
from phasewise.sim.api import deployment_from_flags
from phasewise.sim.deployment import collocated

M = "lmsys/vicuna-7b-v1.3"  # a 2,048-token context


def _serve(*flags: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "phasewise.apps.cli", "serve", "--model", M, "--port", str(port),
                             *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    return proc, port


def _line_with(proc: subprocess.Popen, words: str, within_s: float = 10.0) -> str:
    """The first line of the server's stdout holding `words` (bounded wait)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if words in line:
            return line
    raise AssertionError(f"no line with {words!r} on the server's stdout")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_ctrl_c_ends_open_requests_with_an_error_in_one_line_and_status_130():
    proc, port = _serve()
    url = f"http://127.0.0.1:{port}"
    unary: list[httpx.Response] = []
    try:
        wait_healthy(url)
        body = {"model": M, "prompt": "hi", "max_tokens": 1500}
        waiter = threading.Thread(target=lambda: unary.append(httpx.post(url + "/v1/completions", json=body,
                                                                          timeout=20)))
        waiter.start()
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=20) as s:
            lines = s.iter_lines()
            assert next(lines).startswith("data: {")
            proc.send_signal(signal.SIGINT)
            assert "draining 2 open request(s)" in _line_with(proc, "draining")
            proc.send_signal(signal.SIGINT)
            rest = [line for line in lines if line]
        waiter.join(timeout=20)
        assert proc.wait(timeout=20) == 130
        out, err = proc.communicate(timeout=5)
    finally:
        _stop(proc)
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2][len("data: "):])["error"]
    assert error["code"] == "server_stopping" and "stopped" in error["message"]
    assert len(rest) < 1500  # cut short
    assert unary[0].status_code == 503 and unary[0].json()["error"]["code"] == "server_stopping"
    assert "stopping now: 2 open request(s) end with an error" in out
    assert "Traceback" not in err and "ERROR" not in err, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_cold_start_exits_zero(sig):
    proc, _ = _serve("--cold-start", "60")
    try:
        _line_with(proc, "starting up")
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate(timeout=5)
    finally:
        _stop(proc)
    assert "stopped before listening" in out and "Traceback" not in err


def _run_to_end(live: LiveSim) -> None:
    live.loop.run_until(1e6)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def _chunks(stream) -> list[int]:
    out = []
    while not stream.queue.empty():
        kind, n = stream.queue.get_nowait()
        if kind == "tokens":
            out.append(n)
    return out


def test_prompt_tokens_are_counted_when_prefilled_not_on_arrival():
    live = LiveSim(collocated(M, "h100-sxm"))
    waiting = live.submit(1500, 10)  # arrived, not yet prefilled (the simulated clock has not moved)
    text = live.prometheus(M)
    assert _metric(text, "vllm:prompt_tokens_total") == 0
    live.cancel(waiting)  # cancelled before its first token: never counted
    done = live.submit(700, 5)
    _run_to_end(live)
    assert sum(_chunks(done)) == 5
    text = live.prometheus(M)
    assert _metric(text, "vllm:prompt_tokens_total") == 700
    assert _metric(text, "vllm:request_prompt_tokens_sum") == 700


def test_sglang_counts_a_requests_tokens_when_it_finishes_and_splits_inter_token_gaps_per_token():
    live = LiveSim(collocated(M, "h100-sxm", engine="sglang"))
    live.cancel(live.submit(900, 10))
    done = live.submit(300, 6)
    _run_to_end(live)
    assert sum(_chunks(done)) == 6
    text = live.prometheus(M)
    assert _metric(text, "sglang:prompt_tokens_total") == 300
    assert _metric(text, "sglang:generation_tokens_total") == 6
    assert _metric(text, "sglang:inter_token_latency_seconds_count") == 5


def test_vllm_inter_token_histograms_take_one_sample_a_step_with_speculative_decoding():
    live = LiveSim(deployment_from_flags(model="Qwen/Qwen3-8B", spec_tokens=4, spec_draft="Qwen/Qwen3-0.6B"))
    stream = live.submit(200, 60)
    _run_to_end(live)
    chunks = _chunks(stream)
    assert sum(chunks) == 60 and len(chunks) < 40  # speculative steps of 2-3 tokens
    text = live.prometheus("Qwen/Qwen3-8B")
    decode_s = live.wall_s(stream.req.finish_s - stream.req.first_token_s)
    for name in ("vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"):
        assert _metric(text, name + "_count") == len(chunks) - 1  # one a step after the first (old: 59, a token)
        assert _metric(text, name + "_sum") == pytest.approx(decode_s)  # each step's whole gap
    assert _metric(text, "vllm:generation_tokens_total") == 60


def test_vllm_per_request_time_per_output_token_histogram():
    live = LiveSim(collocated(M, "h100-sxm"))
    long, one = live.submit(100, 11), live.submit(100, 1)
    _run_to_end(live)
    assert sum(_chunks(long)) == 11 and sum(_chunks(one)) == 1
    text = live.prometheus(M)
    name = "vllm:request_time_per_output_token_seconds"
    assert "# TYPE vllm:request_time_per_output_token_seconds histogram" in text
    assert _metric(text, name + "_count") == 2
    mean_s = live.wall_s(long.req.finish_s - long.req.first_token_s) / 10  # decode time over the tokens after the 1st
    assert _metric(text, name + "_sum") == pytest.approx(mean_s)  # the one-token request records 0
    assert re.search(rf'^{name}_bucket{{[^}}]*le="80.0"}} 2$', text, re.MULTILINE)


PYDANTIC_CASES = [3, 3.0, 3.5, -2.0, "3", " 3 ", "3.0", "3.00", "-0.0", "1_000", "3.", ".5", "3.5", "1e3", "0x10",
                  "_1", "1__0", "", "abc", "\uff13", True, False, None, [], {}, 2.0**63, float("inf"), float("nan"),
                  0, 1, 2, 1.0, 0.0, 0.5, "true", "TRUE", "yes", "No", "on", "OFF", "t", "f", "y", "n", "1", "0",
                  " true", "2", "1.0", "0.5", " 0.5 ", "1e-3", "inf", "-nan", "1_0.5", "1e", "\uff10.\uff15", 10**400,
                  "9" * 5000, "\xa03", "+3.0", "1_000.0"]


def test_lax_reads_match_pydantic_lax_mode():
    """vLLM's request models are plain pydantic models: the twin reads an int, float and bool field as their lax mode
    does (pydantic is FastAPI's, so it is installed)."""
    from pydantic import BaseModel, ValidationError

    class Fields(BaseModel):
        i: int
        f: float
        b: bool

    for value in PYDANTIC_CASES:
        for field, lax in (("i", twin_request.lax_int), ("f", twin_request.lax_float), ("b", twin_request.lax_bool)):
            try:
                expected = getattr(Fields.model_validate({"i": 0, "f": 0.0, "b": False, field: value}), field)
            except ValidationError:
                expected = None
            got = lax(value)
            same = (got is None and expected is None) or (
                got is not None and expected is not None and type(got) is type(expected)
                and (got == expected or (isinstance(got, float) and math.isnan(got) and math.isnan(expected))))
            assert same, (field, value, got, expected)


@pytest.fixture(scope="module")
def url():
    live = LiveSim(collocated(M, "h100-sxm", max_num_seqs=64), speed=50.0)
    with serving(create_app(live, M, Tokenizer())) as base:
        yield base


def test_whole_floats_and_string_booleans_vllm_takes_are_taken(url):
    post = lambda **fields: httpx.post(url + "/v1/completions", json={"model": M, "prompt": "hi", **fields},  # noqa
                                       timeout=30)
    r = post(max_tokens=3.0, n=2.0, temperature="0.5", ignore_eos="yes", echo="false", top_k="-1", seed=7.0)
    assert r.status_code == 200, r.text
    assert [c["index"] for c in r.json()["choices"]] == [0, 1] and r.json()["usage"]["completion_tokens"] == 6
    r = post(max_tokens=2, stream="true", stream_options={"include_usage": "1"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.text.splitlines() if line.startswith("data: {")]
    assert json.loads(events[-1][len("data: "):])["usage"]["completion_tokens"] == 2
    r = httpx.post(url + "/v1/chat/completions", json={"model": M, "messages": [{"role": "user", "content": "hi"}],
                                                       "max_tokens": 2, "logprobs": "false"}, timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("fields, param", [
    ({"max_tokens": 3.5}, "max_tokens"),
    ({"max_tokens": "3.5"}, "max_tokens"),
    ({"n": "two"}, "n"),
    ({"stream": "maybe"}, "stream"),
    ({"stream": 2}, "stream"),
    ({"temperature": "warm"}, "temperature"),
    ({"temperature": "inf"}, "temperature"),
    ({"stream": True, "stream_options": {"include_usage": " true"}}, "stream_options.include_usage"),
    ({"ignore_eos": "maybe"}, "ignore_eos"),
    ({"echo": "sure"}, "echo"),
])
def test_what_vllms_pydantic_models_refuse_is_still_a_400_naming_the_field(url, fields, param):
    r = httpx.post(url + "/v1/completions", json={"model": M, "prompt": "hi", "max_tokens": 2, **fields}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert "\n" not in r.json()["error"]["message"]
