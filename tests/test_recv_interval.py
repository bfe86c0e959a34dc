"""SGLang's --scheduler-recv-interval: new requests wait for the scheduler's next read (sim/recv_interval.py)."""

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import simulate
from phasewise.sim.deployment import collocated
from phasewise.sim.recv_interval import RecvInterval
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine
from phasewise.workload import Workload, client_workload

M = "meta-llama/Llama-3.1-8B"


def _ttft_of_late_request(interval: int, arrival_s: float, long_prompt: int = 512) -> tuple[float, float]:
    """One request decoding 3000 tokens; a short one arrives at `arrival_s`. (its TTFT, the decoder's TPOT)."""
    work = Workload(np.array([0.0, arrival_s]), np.array([long_prompt, 64]), np.array([3000, 4]))
    res = simulate(collocated(M, "h100-sxm", engine="sglang", scheduler_recv_interval=interval), work,
                   check_invariants=True)
    return float(res.first_token_s[1] - arrival_s), float(res.tpot_s[0])


def test_read_points_every_n_decode_steps_after_the_last_prompt_forward():
    recv = RecvInterval(10)
    assert [recv.steps_to_next_read(s) for s in (0, 1, 9, 10, 11)] == [10, 9, 1, 10, 9]
    assert not recv.read_due(0) and recv.read_due(10) and recv.read_due(20) and not recv.read_due(15)
    recv.inbox.extend(["a", "b"])
    assert recv.read(13, after_prompt=True) == ["a", "b"] and not recv.inbox
    assert recv.steps_to_next_read(13) == 10 and recv.read_due(23) and not recv.read_due(20)


def test_a_request_arriving_during_decodes_waits_for_the_next_read():
    interval = 10
    _, step_s = _ttft_of_late_request(1, 0.5)
    delays = []
    for k in range(20):  # arrivals spread over two read intervals of decode steps
        arrival = 0.5 + k * step_s * interval / 10.0 + 0.3 * step_s
        base, _ = _ttft_of_late_request(1, arrival)
        held, _ = _ttft_of_late_request(interval, arrival)
        delays.append((held - base) / step_s)
    delays = np.array(delays)
    assert delays.min() >= -0.01 and delays.max() <= interval + 0.05  # never early, at most N steps later
    assert 0.35 * interval < delays.mean() < 0.65 * interval  # on average about N/2 decode steps
    assert len(np.unique(np.round(delays))) >= 5  # the wait depends on where in the interval it arrives


def test_an_idle_scheduler_reads_at_once():
    work = Workload(np.array([0.0, 30.0]), np.array([512, 512]), np.array([16, 16]))  # the second finds it idle
    runs = [simulate(collocated(M, "h100-sxm", engine="sglang", scheduler_recv_interval=n), work)
            for n in (1, 30)]
    assert np.allclose(runs[0].first_token_s, runs[1].first_token_s)


def test_a_prompt_forward_reads_right_after_it():
    # The second request arrives while the first's long prompt is being prefilled: SGLang reads after that
    # forward (weight 1000 >= N), so the interval adds nothing.
    base, _ = _ttft_of_late_request(1, 0.001, long_prompt=8000)
    held, step_s = _ttft_of_late_request(30, 0.001, long_prompt=8000)
    assert abs(held - base) < 0.5 * step_s


def test_closed_loop_with_a_recv_interval_conserves_requests_and_slows_ttft_only():
    work = client_workload("inferencex", 8, isl=1024, osl=256, seed=3)
    runs = {n: simulate(collocated(M, "h100-sxm", engine="sglang", scheduler_recv_interval=n), work,
                        check_invariants=True) for n in (1, 10)}
    for res in runs.values():
        assert np.isfinite(res.finish_s).all()  # every request finished
    ttft = {n: np.nanmean(r.first_token_s - r.arrival_s) for n, r in runs.items()}
    tpot = {n: np.nanmean(r.tpot_s) for n, r in runs.items()}
    assert ttft[10] > 1.2 * ttft[1]
    assert abs(tpot[10] / tpot[1] - 1) < 0.1


@pytest.mark.parametrize("engine, knobs, message", [
    ("sglang", {"scheduler_recv_interval": 0}, "--scheduler-recv-interval must be an integer >= 1"),
    ("trtllm", {"scheduler_recv_interval": 10}, "--scheduler-recv-interval is not a knob of trtllm"),
])
def test_bad_recv_interval_is_a_one_line_error(engine, knobs, message):
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine(engine, load_hardware("h100-sxm"), knobs)


def test_default_reads_every_iteration():
    assert resolve_engine("sglang", load_hardware("h100-sxm")).recv_interval == 1
    assert resolve_engine("sglang", load_hardware("h100-sxm"), {"scheduler_recv_interval": 30}).recv_interval == 30


def test_a_request_cancelled_before_the_scheduler_reads_it_never_runs():
    from phasewise.sim.events import EventLoop
    from phasewise.sim.request import SimRequest
    from phasewise.sim.simulate import build_cluster

    loop = EventLoop()
    dep = collocated(M, "h100-sxm", engine="sglang", scheduler_recv_interval=30)
    cluster, instances, _ = build_cluster(dep, loop, 0, live=True)
    tokens: list[tuple[SimRequest, int]] = []
    cluster.on_token, cluster.on_done = (lambda req, n, t, instance: tokens.append((req, n))), (lambda req: None)
    decoder, late = SimRequest(0, 0.0, 512, 400), SimRequest(1, 0.5, 64, 4)
    cluster.arrive(decoder)
    loop.run_until(0.5)
    cluster.arrive(late)  # among decodes: held for the scheduler's next read
    assert late in instances[0].recv.inbox
    cluster.cancel(late)
    assert not instances[0].recv.inbox
    loop.run_until(10.0)
    assert all(req is not late for req, _ in tokens) and any(req is decoder for req, _ in tokens)
