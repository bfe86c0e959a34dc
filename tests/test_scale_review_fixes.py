"""The scale review's fixes: `simulate --out` never leaves a cut-off file beside an earlier run's summary (each file
written to a temporary name, all renamed into place once written; an interrupt or a failed write removes them and
says so), and plan's cut at --top refines every strategy within a bisection step of the last one kept, not only its
ties (a 64-GPU DeepSeek-R1 plan left out a strategy better than its own #3 there)."""

from __future__ import annotations

import errno
import math
import os
import signal

import numpy as np
import pytest

from phasewise.apps import simulate_view
from phasewise.apps.simulate_view import write_records
from phasewise.errors import PhasewiseError
from phasewise.plan import planner
from phasewise.plan.goodput import GoodputResult, WorkloadSpec, workload_spec
from phasewise.sim import Slo

ROWS = 2000


class Records:
    """A stand-in SimResult: records() gives `rows` rows of two columns; `fail` raises that exception once `after`
    rows of the first column have been read (mid-write: csv.writer reads the columns row by row)."""

    def __init__(self, rows: int = ROWS, fail: BaseException | None = None, after: int = 500, offset: int = 0):
        self.rows, self.fail, self.after, self.offset = rows, fail, after, offset

    def records(self) -> dict:
        fail, after = self.fail, self.after
        ids = np.arange(self.rows) + self.offset

        class Column:
            def tolist(self):
                for k, value in enumerate(ids.tolist()):
                    if fail is not None and k == after:
                        raise fail
                    yield value

            def __iter__(self):
                return iter(self.tolist())

        return {"request_id": Column(), "ttft_ms": ids * 0.5}


def folder_state(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def earlier_run(tmp_path):
    """An earlier run's complete files in tmp_path/out (records and summary), and their bytes."""
    out = tmp_path / "out"
    write_records(Records(), {"run": "earlier"}, str(out), "csv")
    return out, folder_state(out)


def test_an_interrupt_mid_write_leaves_the_earlier_run_whole_and_says_so(earlier_run, capsys):
    out, before = earlier_run
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):  # the interrupt still ends the run (exit 130 / 143 in main)
        write_records(Records(offset=10**6, fail=KeyboardInterrupt()), {"run": "interrupted"}, str(out), "csv")
    assert folder_state(out) == before  # no cut-off requests.csv, no temporaries, the earlier summary's own files
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"interrupted: --out '{out}' not written (its previous files left as they were)"]


def test_an_interrupt_in_a_later_table_leaves_no_new_records_beside_the_old_summary(earlier_run):
    out, before = earlier_run
    with pytest.raises(KeyboardInterrupt):  # the records whole, the --dllm timeline table interrupted
        write_records(Records(offset=10**6), {"run": "interrupted"}, str(out), "csv",
                      extra={"timeline": Records(fail=KeyboardInterrupt()).records()})
    assert folder_state(out) == before


def test_a_failed_write_is_one_line_and_removes_its_temporaries(earlier_run):
    out, before = earlier_run
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PhasewiseError, match=r"--out '.*': cannot write \(No space left on device\)"):
        write_records(Records(offset=10**6, fail=full), {"run": "failed"}, str(out), "csv")
    assert folder_state(out) == before


def test_a_whole_write_replaces_every_file_and_leaves_no_temporaries(earlier_run, capsys):
    out, before = earlier_run
    written = write_records(Records(rows=10, offset=10**6), {"run": "later"}, str(out), "csv")
    assert [p.name for p in written] == ["requests.csv", "summary.json"]
    after = folder_state(out)
    assert sorted(after) == ["requests.csv", "summary.json"]
    assert b"later" in after["summary.json"] and after["requests.csv"].count(b"\n") == 11
    assert "interrupted" not in capsys.readouterr().err


def test_parquet_is_staged_alike(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "pq"
    write_records(Records(rows=10), {"run": "one"}, str(out), "parquet")
    before = folder_state(out)
    assert sorted(before) == ["requests.parquet", "summary.json"]
    with pytest.raises(KeyboardInterrupt):
        write_records(Records(rows=10, offset=10**6), {"run": "two"}, str(out), "parquet",
                      extra={"timeline": Records(fail=KeyboardInterrupt(), after=3).records()})
    assert folder_state(out) == before


def test_signals_held_delivers_an_interrupt_after_the_block():
    from phasewise.apps.simulate_view import signals_held

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)  # held: the block runs on
            reached.append(True)
    assert reached == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signals_held_hands_a_sigterm_to_the_handler_it_found():
    from phasewise.apps.simulate_view import signals_held

    came = []

    def on_sigterm(signum, frame):  # as cli_common.on_sigterm: record it, raise KeyboardInterrupt
        came.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)  # a second one while held: handled once
                assert came == []
        assert came == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is on_sigterm
    finally:
        signal.signal(signal.SIGTERM, old)


def test_records_paths_name_the_tables_by_their_format():
    paths = simulate_view.records_paths("d", "parquet", ("timeline",))
    assert [p.name for p in paths.values()] == ["requests.parquet", "timeline.parquet", "summary.json"]
    with pytest.raises(PhasewiseError, match="--format 'xlsx'"):
        simulate_view.records_paths("d", "xlsx")


# --- plan's cut at --top -------------------------------------------------------------------------------------------

class Screened(GoodputResult):  # (not slotted: a name and a GPU count beside the fields, no Strategy needed)
    pass


def screened(name: str, lo: float, hi: float, gpus: int = 1) -> GoodputResult:
    r = Screened(None, lo, math.nan, "-", {}, binding_rps=hi)
    r.name, r.n_gpus = name, gpus
    return r


def per_gpu(r: GoodputResult) -> float:
    return r.goodput_rps / r.n_gpus


# the 64-GPU DeepSeek-R1 plan's screening (h200-sxm, azure-conv, TTFT 1 s, TPOT 50 ms, 90 %): per GPU, the highest
# rate each search held and the lowest it failed (/tmp/s108/fix/scale/screen64.json, plan() stopped after screening)
R1_64 = [("4P(TP8) 2D(TP8)", 4.609, 5.211, 48), ("2P(TP16 DeepEP) 1D(TP16 DeepEP)", 4.322, 4.821, 48),
         ("3P(TP8) 1D(TP16)", 4.231, 4.782, 40), ("3P(TP8) 1D(TP16 DeepEP)", 4.231, 4.782, 40),
         ("2P(TP16 DeepEP) 2D(TP8)", 4.008, 4.609, 48), ("2P(TP16 DeepEP) 4D(TP8)", 3.606, 4.076, 64),
         ("4P(TP8) 2D(TP16)", 3.526, 3.985, 64), ("6P(TP8) 2D(TP8)", 3.457, 3.908, 64),
         ("2P(TP16) 1D(TP16)", 3.253, 3.677, 48), ("3P(TP16 DeepEP) 1D(TP16 DeepEP)", 3.242, 3.616, 64)]


def test_the_cut_refines_what_lies_within_a_bisection_step_of_the_last_kept():
    from phasewise.plan.screen_cut import refined_at_cut, screened_step

    screen = [screened(n, lo * g, hi * g, g) for n, lo, hi, g in R1_64]
    assert screened_step(screen[4]) == pytest.approx(4.609 / 4.008 - 1)  # the cut's last step: 15 % of its goodput
    names = [r.name for r in refined_at_cut(screen, 5, per_gpu)]
    # 4P(TP8) 2D(TP16): two units of the 32-GPU plan's winner, verified at 3.68 req/s/GPU there, above the 64-GPU
    # plan's own #3 (3.52); within the cut's step (4.008 x 0.85 = 3.41) below it, as 6P2D is; 2P(TP16) 1D(TP16)
    # at 3.253 is not (its own step reaches 3.68 < 4.008)
    assert names == [n for n, *_ in R1_64[:8]]


def test_the_cut_refines_a_strategy_whose_own_step_reaches_it():
    from phasewise.plan.screen_cut import refined_at_cut

    # the cut's step is narrow (1 %), the candidate's wide (a quartered bracket): its failing rate passes the cut's
    screen = [screened("a", 10.0, 10.5), screened("cut", 9.0, 9.09), screened("wide", 7.0, 9.5),
              screened("b", 7.0, 7.5)]
    assert [r.name for r in refined_at_cut(screen, 2, lambda r: r.goodput_rps)] == ["a", "cut", "wide"]


def test_the_cut_keeps_ties_refuses_non_holders_and_reads_no_bracket_where_none_was_found():
    from phasewise.plan.screen_cut import refined_at_cut, screened_step

    tie = [screened("a", 5.0, 5.5), screened("cut", 4.0, math.nan), screened("tie", 4.0, math.nan),
           screened("below", 3.99, math.nan), screened("none", 0.0, 0.1)]
    assert screened_step(tie[1]) == 0.0  # every doubling held: no failing rate, no step
    assert [r.name for r in refined_at_cut(tie, 2, lambda r: r.goodput_rps)] == ["a", "cut", "tie"]
    # a cut that held nothing refines no more; a --top beyond the screen refines it all
    zero = [screened("a", 5.0, 6.0), screened("cut", 0.0, 0.1), screened("z", 0.0, 0.1)]
    assert [r.name for r in refined_at_cut(zero, 2, lambda r: r.goodput_rps)] == ["a", "cut"]
    assert len(refined_at_cut(zero, 9, lambda r: r.goodput_rps)) == 3


def test_plan_refines_every_strategy_within_the_cuts_step(monkeypatch):
    """plan() itself, its simulations stood in for: the screening scores strategy k at 10 - 0.3 k req/s/GPU with a
    bracket of 1/8 (three steps from a doubling bracket at its bottom); --top 5 cuts at 8.8, whose step reaches down
    to 7.7: strategies 5-7 (8.5, 8.2, 7.9) are refined and verified too, 8 (7.6, failing at 8.55) is not."""
    refined: list[str] = []

    def fake_run_all(fn, tasks, *args, **kwargs):
        if fn is planner.evaluate and tasks[0][4] == planner.SCREEN["steps"]:  # screening (its bisection steps)
            return [GoodputResult(s, (10 - 0.3 * k) * s.gpus, math.nan, "-", {}, binding_rps=(10 - 0.3 * k) * s.gpus
                                  * 1.125) for k, (s, *_) in enumerate(tasks)]
        if fn is planner.evaluate:  # refining: each at its screened rate
            refined.extend(t[0].name for t in tasks)
            return [GoodputResult(t[0], 1.0, math.nan, "-", {}) for t in tasks]
        return [(rate, 1.0, None) for _, rate, *_ in tasks]  # verification holds every rate

    monkeypatch.setattr(planner, "run_all", fake_run_all)
    work: WorkloadSpec = workload_spec(None, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, 131072)
    result = planner.plan("meta-llama/Llama-3.1-8B", "h100-sxm", 8, Slo(1000.0, 50.0), work, refine=5)
    order = [r.strategy.name for r in result.screened]
    assert len(order) > 9
    assert refined == order[:8]  # the old cut (ties only) refined order[:5]
    assert len(result.ranked) == 8


def test_an_infeasible_plan_names_the_rate_its_search_held_not_its_lowest_probe():
    """A plan whose strategy met the SLOs on one unit but not on the whole deployment: the line names the rate the
    search held, from which verification stepped down, and why verification refused it (its attainment there, or
    the queue that grew), not the lowest rate probed (whose attainment is the highest, hence closest())."""
    from phasewise.plan.planner import PlanResult

    work: WorkloadSpec = workload_spec(None, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, 131072)
    strategies = planner.enumerate_strategies("meta-llama/Llama-3.1-8B", "h100-sxm", 1, planner.PlanOptions())[0]
    point = {"rate_rps": 2.35, "attainment": 1.0, "ttft_attainment": 1.0, "tpot_attainment": 1.0,
             "ttft_p90_ms": 10.0, "tpot_p90_ms": 5.0}
    r = GoodputResult(strategies[0], 0.0, math.nan, "-", {}, curve=[point])
    r.search_rps, r.verified_attainment = 7.41, 1.0
    result = PlanResult("meta-llama/Llama-3.1-8B", "h100-sxm", 1, Slo(5000.0, 100.0), 0.9, "goodput-per-gpu",
                        work.name, [r], [r], [], 1.0, None, ((), ()), 0.0, None, False)
    line = result.infeasible_line()
    assert "whose search held 7.41 req/s" in line and "queue grew" in line and "2.35" not in line
