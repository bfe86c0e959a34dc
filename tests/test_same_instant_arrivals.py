"""Requests that reach an engine's scheduler at one simulated instant are seated together in its first step, under
the engine's usual caps: the engines drain their input before each schedule (vLLM V1's EngineCoreProc run_busy_loop
empties input_queue in _process_input_queue before the step, v0.10.1 vllm/v1/engine/core.py). The step an idle
engine starts runs at the end of that instant (EventLoop.at_end), after every arrival due then."""

import numpy as np
import pytest
import yaml

from phasewise.sim import simulate
from phasewise.sim.deployment import collocated, disaggregated
from phasewise.sim.events import EventLoop
from phasewise.workload import Workload
from phasewise.workload.generators import ClosedLoop, LengthDist

M = "meta-llama/Llama-3.1-8B"


def _launches(res, instance: int = 0) -> list[tuple[float, int, int, int]]:
    """The instance's launches: (start_s, sequences, prefill tokens, decode tokens)."""
    return [(float(start), int(seqs), int(p), int(d)) for start, _, _, seqs, p, d in res.instances[instance].timeline]


def test_an_end_of_instant_event_runs_after_every_ordinary_event_of_its_instant():
    loop, order = EventLoop(), []

    def first() -> None:
        order.append("first")
        loop.at_end(order.append, "end-1")
        loop.at(loop.now, later)  # an ordinary event for this instant, scheduled after the at_end one

    def later() -> None:
        order.append("later")
        loop.at_end(order.append, "end-2")

    loop.at(1.0, first)
    loop.at(1.0, order.append, "second")
    loop.at(2.0, order.append, "next")
    loop.run()
    assert order == ["first", "second", "later", "end-1", "end-2", "next"]


def test_the_live_clock_runs_the_end_of_its_instant_too():
    loop, order = EventLoop(), []
    loop.at(0.5, lambda: loop.at_end(order.append, "end"))
    loop.run_until(0.5)
    assert order == ["end"] and loop.now == 0.5 and loop.next_time() == float("inf")


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "vllm-v0", "sarathi"])
def test_prompts_arriving_together_share_the_first_step(engine):
    """Four 16-token prompts at t=0 (no frontend cost in the presets): one 64-token prefill of 4 sequences, as a
    closed-loop burst of concurrency 4 launches."""
    dep = collocated(M, "h100-sxm", engine=engine)
    opened = simulate(dep, Workload(np.zeros(4), np.full(4, 16), np.full(4, 4)), record_timeline=True,
                      check_invariants=True)
    closed = simulate(dep, ClosedLoop(4, 4, LengthDist("fixed", 16), LengthDist("fixed", 4)), record_timeline=True)
    assert _launches(opened)[0] == (0.0, 4, 64, 0)
    assert _launches(opened)[:2] == _launches(closed)[:2]
    assert np.ptp(opened.first_token_s) == 0.0


def test_ties_in_a_millisecond_trace_are_seated_together():
    """A trace stamped in ms: three requests at 250 ms find the engine idle (the first finished long before) and
    start in one step."""
    work = Workload(np.array([0.0, 0.25, 0.25, 0.25]), np.full(4, 16), np.full(4, 4))
    res = simulate(collocated(M, "h100-sxm"), work, record_timeline=True, check_invariants=True)
    at_tie = [launch for launch in _launches(res) if launch[0] >= 0.25]
    assert at_tie[0] == (0.25, 3, 48, 0)


def test_an_idle_scheduler_with_a_recv_interval_reads_everything_sent_together():
    """SGLang --scheduler-recv-interval 30: an idle scheduler reads at once, every request sent to it."""
    dep = collocated(M, "h100-sxm", engine="sglang", scheduler_recv_interval=30)
    res = simulate(dep, Workload(np.zeros(4), np.full(4, 16), np.full(4, 4)), record_timeline=True,
                   check_invariants=True)
    assert _launches(res)[0] == (0.0, 4, 64, 0)


def test_the_engine_caps_still_hold_over_requests_arriving_together():
    """max_num_seqs 2: two of the four are seated in the first step, the others when seats free."""
    dep = collocated(M, "h100-sxm", max_num_seqs=2)
    res = simulate(dep, Workload(np.zeros(4), np.full(4, 16), np.full(4, 4)), record_timeline=True,
                   check_invariants=True)
    assert _launches(res)[0] == (0.0, 2, 32, 0)
    assert np.isfinite(res.finish_s).all()


def test_disaggregated_prompts_arriving_together_prefill_and_decode_together():
    res = simulate(disaggregated(M, "h100-sxm", 1, 1), Workload(np.zeros(4), np.full(4, 16), np.full(4, 6)),
                   record_timeline=True, check_invariants=True)
    roles = [inst.role for inst in res.instances]
    prefill, decode = _launches(res, roles.index("prefill")), _launches(res, roles.index("decode"))
    assert prefill == [(0.0, 4, 64, 0)]
    assert decode[0][1] == 4  # the four hand-offs land together and join one decode step


def test_the_frontend_still_staggers_requests_sent_together(tmp_path):
    """An API server of 5 ms a request (modelled on purpose, sim/instance.py enqueue) hands them to the scheduler
    5 ms apart: the first starts alone."""
    from phasewise.specs import load_engine

    profile = load_engine("vllm").model_dump(mode="json", exclude={"name"})
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump({"engines": {"slow-frontend": dict(profile, frontend_request_s=0.005)}}))
    res = simulate(collocated(M, "h100-sxm", engine=str(path)), Workload(np.zeros(4), np.full(4, 16), np.full(4, 4)),
                   record_timeline=True, check_invariants=True)
    first = _launches(res)[0]
    assert first[0] == pytest.approx(0.005) and first[1:] == (1, 16, 0)
