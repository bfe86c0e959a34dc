"""Progress on long work: the event loop's tick, simulate's progress(done, total), and the bar shown only on a
terminal and only once a run has taken a while."""

import io

from rich.console import Console

import phasewise.apps.simulate_view as simulate_view
from phasewise.sim.api import build
from phasewise.sim.events import EventLoop
from phasewise.sim.simulate import simulate


def test_the_event_loop_ticks_every_n_events_and_runs_them_all():
    loop, seen, ticks = EventLoop(), [], []
    for i in range(10):
        loop.at(float(i), seen.append, i)
    loop.run(tick=lambda: ticks.append(loop.events), every=4)
    assert seen == list(range(10)) and ticks == [4, 8, 10]


def test_simulate_reports_progress_up_to_every_request():
    spec = build(rate=20, requests=300, isl=128, osl=16)
    calls = []
    result = simulate(spec.deployment, spec.workload, spec.slo, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (300, 300) and result.summary()["completed"] == 300
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_the_bar_appears_on_a_terminal_after_the_delay_and_never_in_pipes(monkeypatch):
    pipe = Console(file=io.StringIO(), force_terminal=False)
    with simulate_view.progress_after(pipe, "simulating") as progress:
        assert progress is None
    monkeypatch.setattr(simulate_view, "PROGRESS_AFTER_S", 0.0)
    out = io.StringIO()
    with simulate_view.progress_after(Console(file=out, force_terminal=True, width=80), "simulating") as progress:
        progress(5, 10)
    assert "simulating" in out.getvalue()
