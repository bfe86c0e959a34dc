"""Sweep and plan-report review fixes: a 'no strategy' hint names the smallest instance that fits (TP2 on 2 GPUs, not
two 8-GPU nodes) in the words of the command (a sweep's keys), a sweep refuses the repeated sizes plan refuses, router
variants a screening search cannot tell apart, and an engine list's error names the file; a cell whose model cannot
run a workload (images beside a text model) is a row of kind none; missing figures are NaN; the report's CDFs are
bounded quantile curves, its pruned list says what it leaves out, its charts give each trace its own colour, a
legend entry to the verification stars and the timeline's slice; the Pareto front drops a point dominated by a sum's
last bits (planner.py's patch)."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan import sweep as sweep_module
from phasewise.plan.goodput import GoodputResult, workload_spec
from phasewise.plan.planner import PlanResult
from phasewise.plan.strategies import NoStrategyFits, PlanOptions, enumerate_strategies
from phasewise.plan.sweep import SweepConfig, _routes, _row, load_sweep, run_sweep, sweep_words
from phasewise.sim import Slo

M8, M70, VL = "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B", "Qwen/Qwen2.5-VL-7B-Instruct"
STRATEGIES = {"tp_options": [1], "chunk_sizes": [512], "batch_caps": [256], "disaggregated": False}
GRID = dict(models=[M8], hardware=["h100-sxm"], gpus=1, workloads=[{"name": "short", "isl": 512, "osl": 128}],
            slo={"ttft_ms": 1000, "tpot_ms": 50}, strategies=STRATEGIES)


def _no_simulation(monkeypatch) -> None:
    """The sweep's jobs answered without simulating (each strategy 1 req/s, no curve): the tests read the rows."""
    monkeypatch.setattr(sweep_module, "run_all", lambda fn, tasks, *args: [
        GoodputResult(task[0], 1.0, 1.0, "capacity (backlog grows)", {}, [], 1) for task in tasks])


def _sweep_file(tmp_path, text: str) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return str(path)


# --- 1. the 'no strategy' hint ----------------------------------------------------------------------------------

def test_the_hint_is_the_smallest_instance_that_fits():
    """Llama-3.1-70B on 1 GPU at TP 1, 2: the hint said 'an instance of two 8-GPU nodes needs --gpus 16' where TP2 on
    2 GPUs runs; plan's default TP sizes alike; TP sizes within the budget the options did not name: that size."""
    named = PlanOptions(tp_options=(1, 2), tp_across_nodes=False, chunk_sizes=(512,), disaggregated=False)
    with pytest.raises(NoStrategyFits, match=r"\); TP2 fits on 2 GPUs: --gpus 2$"):
        enumerate_strategies(M70, "h100-sxm", 1, named)
    with pytest.raises(NoStrategyFits, match=r"\); TP2 fits on 2 GPUs: --gpus 2$"):
        enumerate_strategies(M70, "h100-sxm", 1, PlanOptions(disaggregated=False))
    with pytest.raises(NoStrategyFits, match=r"\); TP2 fits: --tp-options 2$"):
        enumerate_strategies(M70, "h100-sxm", 8, PlanOptions(tp_options=(1,), tp_across_nodes=False,
                                                             disaggregated=False))
    with pytest.raises(NoStrategyFits, match=r"\); TP2 fits on 2 GPUs: gpus: 2$"):  # a sweep's words
        enumerate_strategies(M70, "h100-sxm", 1, named, name=sweep_words)


def test_a_sweep_names_the_hint_by_its_keys():
    """The sweep's line for the cell names its file's keys (gpus:, strategies.tp_options), not plan's flags."""
    cfg = SweepConfig(**{**GRID, "models": [M70], "strategies": {**STRATEGIES, "tp_options": [1, 2]}})
    with pytest.raises(NoStrategyFits, match=r"TP2 fits on 2 GPUs: gpus: 2\)$"):
        run_sweep(cfg, workers=1)
    assert sweep_words("tp_options", "16") == "strategies.tp_options: [16]"
    with pytest.raises(NoStrategyFits, match=r"needs gpus: 16 and strategies.tp_options: \[16\]$"):
        enumerate_strategies("deepseek-ai/DeepSeek-R1", "h100-sxm", 8,
                             PlanOptions(tp_options=(8,), tp_across_nodes=False, chunk_sizes=(),
                                         disaggregated=False), name=sweep_words)


# --- 2, 10. repeated sizes and engines --------------------------------------------------------------------------

@pytest.mark.parametrize("option, values, word", [
    ("chunk_sizes", "[512, 512]", "512"), ("batch_caps", "[256, 256]", "256"), ("tp_options", "[1, 1]", "1"),
    ("ratios", "[[1, 1], [1, 1]]", "[1, 1]"), ("speculative", "[false, false]", "false")])
def test_a_size_named_twice_is_refused_as_plan_refuses_it(tmp_path, option, values, word):
    """chunk_sizes [512, 512] ran (one row each), where plan --chunk-sizes 512,512 says 'names 512 twice'."""
    strategies = {**STRATEGIES, option: values}
    text = (f"models: [{M8}]\nhardware: [h100-sxm]\ngpus: 1\nworkloads: [{{name: s, isl: 512, osl: 128}}]\n"
            "slo: {ttft_ms: 1000}\nstrategies: {" + ", ".join(f"{k}: {str(v).lower()}" for k, v in strategies.items())
            + "}\n")
    path = _sweep_file(tmp_path, text)
    with pytest.raises(PhasewiseError, match=rf"^sweep config '.*grid.yaml': strategies.{option} names "
                                             rf"{re.escape(word)} twice$"):
        run_sweep(load_sweep(path), workers=1)


@pytest.mark.parametrize("engine, needle", [("vllm,vllm", "names vllm twice"), ("", "an empty name")])
def test_an_engine_list_error_names_the_file(tmp_path, engine, needle):
    path = _sweep_file(tmp_path, f"models: [{M8}]\nhardware: [h100-sxm]\ngpus: 1\n"
                                 "workloads: [{name: s, isl: 512, osl: 128}]\nslo: {ttft_ms: 1000}\n"
                                 f"strategies: {{tp_options: [1], engine: '{engine}'}}\n")
    with pytest.raises(PhasewiseError, match=rf"^sweep config '.*grid.yaml': strategies.engine '{engine}'.*{needle}"):
        run_sweep(load_sweep(path), workers=1)


# --- 3. routers a screening cannot tell apart -------------------------------------------------------------------

def test_routers_a_screening_never_sees_are_refused(monkeypatch):
    """Two routers in front of 2 x TP1: the screen's search simulates one instance, so the rows were identical."""
    _no_simulation(monkeypatch)
    cfg = SweepConfig(**{**GRID, "gpus": 2, "strategies": {**STRATEGIES,
                                                           "routers": ["least_outstanding", "round_robin"]}})
    with pytest.raises(PhasewiseError, match="strategies.routers compares least_outstanding, round_robin, which a "
                                             "fidelity screen search never sees.*set fidelity: verified"):
        run_sweep(cfg, workers=1)


def test_a_search_routes_where_its_unit_has_several_instances_of_a_group():
    """A 2P1D unit routes among its two prefill instances; a collocated unit (one instance) does not."""
    opts = PlanOptions(tp_options=(1,), tp_across_nodes=False, chunk_sizes=(), ratios=((2, 1), (1, 1)))
    strategies, _ = enumerate_strategies(M8, "h100-sxm", 3, opts)
    work = workload_spec(None, "poisson", 512, 128, "fixed", "fixed", 0.0, 0.0, 0)
    by_kind = {(s.kind, s.details.get("prefill", 0) // max(1, s.units)): _routes(s, work) for s in strategies}
    assert by_kind[("collocated", 0)] is False and by_kind[("disaggregated", 2)] is True


# --- 9. a workload a model cannot run ---------------------------------------------------------------------------

def test_images_beside_a_text_model_are_a_row_of_kind_none(monkeypatch):
    """Qwen2.5-VL and Llama-3.1-8B with a text and an image workload: the whole sweep stopped on Llama's images."""
    _no_simulation(monkeypatch)
    cfg = SweepConfig(**{**GRID, "models": [VL, M8], "workloads": [
        {"name": "short", "isl": 512, "osl": 128},
        {"name": "photos", "isl": 200, "osl": 128, "images_per_request": 1, "image_size": "1280x720"}]})
    rows = run_sweep(cfg, workers=1)
    cells = {(r["model"], r["workload"], r["kind"]) for r in rows}
    assert {(VL, "photos", "collocated"), (M8, "short", "collocated"), (M8, "photos", "none")} <= cells
    [none] = [r for r in rows if r["kind"] == "none"]
    assert "workload 'photos': images_per_request: model" in none["binding"] and "no vision encoder" in none["binding"]
    text_only = SweepConfig(**{**cfg.model_dump(), "models": [M8]})  # no model runs the images: an error still
    with pytest.raises(PhasewiseError, match="workloads.1, workload 'photos': images_per_request: model"):
        run_sweep(text_only, workers=1)


# --- 7. missing figures -----------------------------------------------------------------------------------------

def test_a_missing_figure_is_nan_in_every_row():
    """No rate attained (TTFT 5 ms): the row's latencies were None (empty CSV cells, a null Parquet column)."""
    cfg = SweepConfig(**GRID)
    strategy = enumerate_strategies(M8, "h100-sxm", 1, sweep_module._options(cfg))[0][0]
    r = GoodputResult(strategy, 0.0, 1.0, "prefill (TTFT)", {}, [], 8)
    row = _row(cfg, {"model": M8, "hardware": "h100-sxm", "workload": "short"}, r, Slo(5, 50), False)
    for name in ("ttft_p90_ms", "tpot_p90_ms", "tbt_p99_ms", "tokens_per_s_per_gpu"):
        assert isinstance(row[name], float) and math.isnan(row[name]), name


# --- 4. the Pareto front (planner.py: /tmp/s109/fix/sweepreport/pareto.patch) -----------------------------------

def test_the_front_drops_a_point_dominated_by_a_sums_last_bits():
    """4367.217051467987 vs 4367.2170514679865 tokens/s per GPU: the point at 75.2 tokens/s per user stayed beside
    the one at 81.5."""
    def point(gpu: float, user: float) -> dict:
        return {"tokens_per_s_per_gpu": gpu, "tokens_per_s_per_user": user, "stable": True, "run": "search"}

    pts = [("a", point(5994.0, 38.4)), ("b", point(4367.217051467987, 75.2)),
           ("c", point(4367.2170514679865, 81.5)), ("d", point(1747.0, 117.2))]
    front = PlanResult.pareto(SimpleNamespace(front_points=lambda: pts))
    assert [p["strategy"] for p in front] == ["a", "c", "d"]


# --- 5, 6, 8. the report ----------------------------------------------------------------------------------------

def test_the_cdf_is_a_bounded_quantile_curve_with_the_tables_percentiles():
    """98,304 requests drew 98,304 points (18 MB for 3 strategies); now about 1,000, min, max, p50/p90/p99 exact."""
    from phasewise.apps.report_charts import quantile_curve

    v = np.random.default_rng(0).lognormal(3, 1, 98_304)
    x, y = quantile_curve(np.append(v, np.nan))
    assert len(x) <= 1010 and x[0] == v.min() and x[-1] == v.max() and np.all(np.diff(y) > 0)
    for q in (50, 90, 99):
        assert x[y == q / 100][0] == np.percentile(v, q)
    few = np.array([3.0, 1.0, 2.0])
    assert set(quantile_curve(few)[0]) >= {1.0, 2.0, 3.0}


def test_the_pruned_list_says_what_it_leaves_out():
    from phasewise.apps.report import _pruned

    text = _pruned([f"line {i}" for i in range(66)])
    assert "and 16 more" in text and all(f"line {i}<" in text for i in range(66))
    assert "more" not in _pruned(["a"]) and _pruned([]) == "<li>none</li>"


def test_each_trace_has_its_own_colour_and_the_slice_is_named():
    from phasewise.apps.report import _timeline_title
    from phasewise.apps.report_charts import palette

    assert len(set(palette(9))) == 9 and len(set(palette(32))) == 32 and palette(3) == palette(8)[:3]
    verified = SimpleNamespace(sliced=True, units_simulated=32, units=64)
    result = SimpleNamespace(ranked=[SimpleNamespace(strategy=SimpleNamespace(name="64x TP1"), verified=verified)],
                             screened=[])
    title = _timeline_title(result, "64x TP1", SimpleNamespace(instances=[None] * 32))
    assert title.endswith("64x TP1; its verification's slice, 32 of 64 units (32 instances) at their share of the "
                          "rate")


def test_the_report_gives_the_stars_a_legend_entry(monkeypatch, tmp_path):
    """A one-strategy plan's report: its curve and star share a colour and a legend group; the stars have an entry."""
    from phasewise.apps.report import write_report
    from phasewise.plan import planner

    def prefill_first(*args, **kwargs):
        strategies, pruned = enumerate_strategies(*args, **kwargs)
        return [s for s in strategies if "prefill-first" in s.name], pruned

    monkeypatch.setattr(planner, "enumerate_strategies", prefill_first)
    work = workload_spec(None, "poisson", 512, 64, "fixed", "fixed", 0.0, 0.0, 0)
    opts = PlanOptions(tp_options=(1,), tp_across_nodes=False, chunk_sizes=(512,), batch_caps=(256,),
                       disaggregated=False)
    res = planner.plan(M8, "h100-sxm", 1, Slo(1000, 50), work, opts=opts, refine=1, workers=1)
    text = write_report(res, {}, tmp_path / "r.html").read_text()
    assert "star: verified goodput (the table&#x27;s)" in text or "star: verified goodput (the table's)" in text
    assert len(re.findall(r'"legendgroup":"1x TP1 prefill-first b256 bf16"', text)) == 2
