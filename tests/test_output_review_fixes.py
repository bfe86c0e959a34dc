"""An output review's findings: outputs that overwrote their own inputs, a Pareto front mixing screening-only points
with refined ones (and a ranked strategy's front point other than its row), an infeasible plan's report of zeros and
NaN, directories in --out's files' places (a traceback), --report checked only after the search, a printed front
dropping points unsaid, and `estimate`'s host row under overlap scheduling read as additive."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from phasewise.errors import PhasewiseError
from phasewise.plan import PlanOptions
from phasewise.plan.goodput import GoodputResult, VerifiedRun
from phasewise.plan.planner import PlanResult
from phasewise.plan.strategies import enumerate_strategies
from phasewise.sim import Slo

M = "meta-llama/Llama-3.1-8B"
TRACE = Path(__file__).resolve().parents[1] / "src/phasewise/workload/data/azure_conv_excerpt.csv"
# the quickest infeasible plan: one strategy, a TTFT no run meets (1-2 s)
INFEASIBLE = ["plan", "--gpus", "1", "--tp-options", "1", "--chunk-sizes", "2048", "--batch-caps", "256",
              "--no-disagg", "--slo-ttft-ms", "5", "--top", "1", "--workers", "1"]


@pytest.fixture
def trace(tmp_path) -> Path:
    path = tmp_path / "T.csv"
    shutil.copyfile(TRACE, path)
    return path


def no_search(monkeypatch):
    """Make plan's search fail the test: the checks under test must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the search ran before the output checks")

    monkeypatch.setattr("phasewise.plan.plan", refuse)


# 1. outputs never overwrite their inputs

def test_plan_report_refuses_to_overwrite_its_workload(run_cli, trace, monkeypatch):
    no_search(monkeypatch)
    before = trace.read_bytes()
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--workload", str(trace),
                           "--report", str(trace))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--report" in err and "--workload" in err and "overwrite" in err
    assert trace.read_bytes() == before
    link = trace.parent / "link.csv"  # another spelling of the same file: the same refusal
    link.symlink_to(trace)
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--workload", str(trace), "--report", str(link))
    assert code == 2 and "overwrite --workload" in err and trace.read_bytes() == before


def test_plan_export_refuses_to_overwrite_a_hardware_file(run_cli, tmp_path, monkeypatch):
    no_search(monkeypatch)
    export = tmp_path / "exp"
    export.mkdir()
    chip = export / "deployment.yaml"  # a chip YAML where --export writes its deployment.yaml (refused unread)
    chip.write_text("name: mine\n")
    code, _, err = run_cli("plan", "--gpus", "1", "--hardware", str(chip), "--export", str(export))
    assert code == 2 and "--export" in err and "--hardware" in err and "overwrite" in err


def test_sweep_out_refuses_to_overwrite_its_trace(run_cli, trace, tmp_path, monkeypatch):
    import phasewise.plan.sweep as sweep

    def refuse(*args, **kwargs):
        raise AssertionError("the sweep ran before the output check")

    monkeypatch.setattr(sweep, "run_sweep", refuse)
    config = tmp_path / "sw.yaml"
    config.write_text(f"models: [{M}]\nhardware: [h100-sxm]\ngpus: 1\nworkloads:\n  - {{name: t, trace: {trace}}}\n"
                      "slo: {ttft_ms: 1000, tpot_ms: 50}\nstrategies: {tp_options: [1], chunk_sizes: [512], "
                      "disaggregated: false}\n")
    before = trace.read_bytes()
    code, _, err = run_cli("sweep", str(config), "--out", str(trace))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "workloads.0.trace" in err and "overwrite" in err
    assert trace.read_bytes() == before


def test_simulate_out_refuses_to_overwrite_its_trace(tmp_path):
    """`simulate --trace DIR/requests.csv --out DIR`: the records would replace the trace (check_records_out, which
    simulate calls before the run with its flags)."""
    from phasewise.apps.simulate_view import check_records_out

    folder = tmp_path / "D"
    folder.mkdir()
    shutil.copyfile(TRACE, folder / "requests.csv")
    with pytest.raises(PhasewiseError, match=r"--out .*requests\.csv.* would overwrite --trace"):
        check_records_out(str(folder), "csv", {"--trace": str(folder / "requests.csv")})
    check_records_out(str(folder), "parquet", {"--trace": str(folder / "requests.csv")})  # requests.parquet: another
    with pytest.raises(PhasewiseError, match=r"summary\.json.* would overwrite --deployment"):
        (folder / "summary.json").write_text("{}")
        check_records_out(str(folder), "csv", {"--deployment": str(folder / "summary.json")})
    # --model DIR --out DIR, run twice: the first run's summary.json beside the checkpoint's config.json is no input
    (folder / "config.json").write_text("{}")
    check_records_out(str(folder), "parquet", {"--model": str(folder)})


# 2. the Pareto front: one fidelity, a ranked strategy's point its row's figures

def _strategies():
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(512, 2048), batch_caps=(256,), engine_default_cap=False,
                       disaggregated=False)
    strategies, _ = enumerate_strategies(M, "h100-sxm", 1, opts)
    return strategies[0], strategies[1]


def _point(rate: float, tokens: float, user: float) -> dict:
    return {"rate_rps": rate, "attainment": 0.95, "stable": True, "stopped": False, "ttft_attainment": 1.0,
            "tpot_attainment": 0.95, "tbt_attainment": 1.0, "ttft_p90_ms": 100.0, "tpot_p90_ms": 30.0,
            "tbt_p99_ms": 40.0, "tokens_per_s_per_gpu": tokens, "tokens_per_s_per_user": user, "power_w": 500.0}


def _summary(tokens_per_request: float, tpot_mean_ms: float) -> dict:
    return {"ttft_ms": {"p90": 120.0, "mean": 60.0}, "tpot_ms": {"p90": 35.0, "mean": tpot_mean_ms},
            "tbt_ms": {"p99": 45.0}, "slo": {"attainment": 0.93, "ttft_attainment": 0.99, "tpot_attainment": 0.93,
                                             "tbt_attainment": 1.0},
            "throughput": {"output_tokens_per_s": tokens_per_request * 10.0}, "duration_s": 100.0, "requests": 1000,
            "energy_j": 5e4}


def _ranked_and_screened(points_below: int = 2) -> PlanResult:
    """A ranked strategy verified at 10 req/s (its search said 10.5: the step down held) and a strategy screened
    only, whose short screening run reads more than the winner's verified figures."""
    ranked_s, screened_s = _strategies()
    below = [_point(10.0 * k / (points_below + 1), 1000.0 * k / (points_below + 1), 100.0 - 3 * k)
             for k in range(1, points_below + 1)]
    # the refined search at 10 and 10.5 req/s (the verification refused 10.5; its run at 10 has other figures)
    curve = [*below, _point(10.0, 990.0, 42.0), _point(10.5, 1100.0, 39.0)]
    winner = GoodputResult(ranked_s, 10.0, 20.0, "prefill (TTFT)", {}, curve, search_rps=10.5,
                           verified_attainment=0.93,
                           verified=VerifiedRun(10.0, 1000, 1, _summary(100.0, 25.0), None, None, 1, 1,
                                                ranked_s.deployment))
    screened_winner = GoodputResult(ranked_s, 10.5, 20.0, "-", {}, [_point(10.5, 1150.0, 38.0)])
    screened_only = GoodputResult(screened_s, 12.0, 20.0, "-", {}, [_point(12.0, 1300.0, 45.0)])
    return PlanResult(M, "h100-sxm", 1, Slo(1000, 50), 0.9, "goodput-per-gpu", "w", [winner],
                      [screened_winner, screened_only], [])


def test_pareto_front_holds_only_the_points_the_ranking_reads():
    result = _ranked_and_screened()
    front = result.pareto()
    ranked = {r.strategy.name for r in result.ranked}
    assert front and {p["strategy"] for p in front} <= ranked  # the screening-only strategy is not on it
    assert {p["run"] for p in front} <= {"verification", "refined search"}
    row = result.rows()[0]
    at_goodput = [p for p in front if p["rate_rps"] == row["goodput_rps"]]
    assert len(at_goodput) == 1 and at_goodput[0]["run"] == "verification"
    assert at_goodput[0]["tokens_per_s_per_gpu"] == pytest.approx(row["tokens_per_s_per_gpu"])  # the row's figure
    assert at_goodput[0]["tokens_per_s_per_user"] == pytest.approx(1e3 / 25.0)
    assert max(p["rate_rps"] for p in front) == row["goodput_rps"]  # nothing above what its verification held


def test_printed_front_says_when_it_leaves_points_out():
    from phasewise.apps.plan_view import FRONT_ROWS, front_rows, render_plan

    result = _ranked_and_screened(points_below=24)
    front = result.pareto()
    assert len(front) > FRONT_ROWS
    shown, step = front_rows(front)
    assert len(shown) <= FRONT_ROWS and step > 1 and shown[0] is front[0] and shown[-1] is front[-1]
    console = Console(record=True, width=200)
    render_plan(console, result)
    text = " ".join(console.export_text().split())  # the title wraps over the table's width
    assert f"of its {len(front)} points" in text and "--json and --report have all" in text
    small = _ranked_and_screened(points_below=3)
    console = Console(record=True, width=200)
    render_plan(console, small)
    text = console.export_text()
    assert "of its" not in text and len(small.pareto()) == len(front_rows(small.pareto())[0])


# 3. an infeasible plan's report: the verdict and the closest strategy, no zeros and NaN

def test_infeasible_report_carries_the_verdict_and_the_closest(run_cli, tmp_path):
    report = tmp_path / "inf.html"
    code, _, err = run_cli(*INFEASIBLE, "--report", str(report))
    assert code == 1
    verdict = next(line for line in err.splitlines() if line.startswith("no strategy meets"))
    text = report.read_text()
    assert "no strategy meets" in text and "closest" in text
    closest = re.search(r"closest: (.+?), ", verdict).group(1)
    assert closest in text
    cells = re.findall(r"<td>(.*?)</td>", text)
    assert cells and not any(c.strip().lower() == "nan" for c in cells)
    assert '<table id="ranked">' not in text  # no ranking of zeros
    assert '"cdf_ttft"' not in text and '"cdf_tpot"' not in text  # no empty CDF charts
    assert '"curves"' in text  # the attainment curves


def test_ranked_table_shows_no_nan_for_a_strategy_whose_verification_failed():
    from phasewise.apps.report import _table

    result = _ranked_and_screened()
    ranked_s, _ = _strategies()
    failed = GoodputResult(ranked_s, 0.0, 20.0, "prefill (TTFT)", {}, [], search_rps=9.0, verified_attainment=0.5)
    result.ranked.append(failed)
    cells = re.findall(r"<td>(.*?)</td>", _table(result))
    assert not any(c.strip().lower() == "nan" for c in cells)


# 4. a directory in --out's files' places: one line, not a traceback

@pytest.mark.parametrize("name", ["requests.csv", "summary.json"])
def test_simulate_out_with_a_directory_in_a_files_place(run_cli, tmp_path, name):
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    code, _, err = run_cli("simulate", "--requests", "20", "--rate", "1", "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --out") and name in err and "directory" in err


# 5. --report checked before the search; the folders it creates said

def test_plan_report_directory_is_refused_before_the_search(run_cli, tmp_path, monkeypatch):
    no_search(monkeypatch)
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--report", str(tmp_path))
    assert code == 2 and "--report" in err and "directory" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("plan", "--gpus", "1", "--tp-options", "1", "--report", str(blocker / "r.html"))
    assert code == 2 and "--report" in err and "not a directory" in err


def test_plan_report_names_the_folders_it_creates(run_cli, tmp_path):
    report = tmp_path / "new" / "sub" / "r.html"
    code, _, err = run_cli(*INFEASIBLE, "--report", str(report))
    assert code == 1 and report.exists()
    line = next(line for line in err.splitlines() if line.startswith("report:"))
    assert f"created {tmp_path / 'new'}, {tmp_path / 'new' / 'sub'}" in line


# 7. estimate's host row under overlap scheduling

def test_estimate_host_row_says_it_is_overlapped(run_cli):
    args = ("estimate", "--batch", "32", "--prompt-len", "2048", "--context-len", "4096")
    code, out, _ = run_cli(*args)
    assert code == 0 and "host (overlapped: max with device)" in out and "not their sum" in out
    code, out, _ = run_cli(*args, "--engine", "vllm-v0")  # no overlap: the row adds up with the others
    assert code == 0 and "host overhead" in out and "overlapped" not in out
