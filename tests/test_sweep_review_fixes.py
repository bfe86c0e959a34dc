"""Sweep review fixes: a row's goodput is the figure plan verifies (search rates, unverified, are named search_*),
the strategy options default as plan's flags (the engine's own sequence cap tried without batch_caps), an output
path through a folder not yet made is checked where it lands (`sub/../trace.csv` overwrote the trace), and YAML's
true / false is no number in a sweep config (gpus: true ran 1 GPU)."""

from __future__ import annotations

import csv

import pytest

from phasewise.apps.simulate_view import check_records_out, refuse_overwriting_inputs
from phasewise.errors import PhasewiseError
from phasewise.plan import planner
from phasewise.plan import sweep as sweep_module
from phasewise.plan.goodput import workload_spec
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.plan.sweep import SweepConfig, _options, load_sweep, run_sweep
from phasewise.sim import Slo

M = "meta-llama/Llama-3.1-8B"
GRID = dict(models=[M], hardware=["h100-sxm"], gpus=1, workloads=[{"name": "short", "isl": 512, "osl": 64}],
            slo={"ttft_ms": 1000, "tbt_ms": 50},
            strategies={"tp_options": [1], "chunk_sizes": [512], "batch_caps": [256], "disaggregated": False})


def _one_strategy(monkeypatch) -> None:
    """Both sweep and plan enumerate only the prefill-first strategy (one verification at a low rate: a fast test)."""
    def prefill_first(*args, **kwargs):
        strategies, pruned = enumerate_strategies(*args, **kwargs)
        return [s for s in strategies if "prefill-first" in s.name], pruned

    monkeypatch.setattr(sweep_module, "enumerate_strategies", prefill_first)
    monkeypatch.setattr(planner, "enumerate_strategies", prefill_first)


def test_a_verified_row_is_plans_row_for_the_strategy(monkeypatch):
    """The row said the screening's search rate on one unit (prefill-first b256, 512/128 tokens: 9.89 req/s where
    plan verified 5.56; chunked 512: 39.24 where plan verified 41.07 and its verification refused 43.35): the row is
    now plan's figures (its goodput, latencies and tokens/s of the verification run, the refined search's rate
    beside them as search_rps)."""
    _one_strategy(monkeypatch)
    [row] = run_sweep(SweepConfig(**GRID, fidelity="verified"), workers=1)
    slo = Slo(1000, float("inf"), 50)
    work = workload_spec(None, "poisson", 512, 64, "fixed", "fixed", 0.0, 0.0, 0)
    opts = PlanOptions(tp_options=(1,), tp_across_nodes=False, chunk_sizes=(512,), batch_caps=(256,),
                       disaggregated=False)
    [plan_row] = planner.plan(M, "h100-sxm", 1, slo, work, target=0.9, opts=opts, workers=1).rows()
    assert row["strategy"] == plan_row["strategy"]
    for name in ("goodput_rps", "search_rps", "verified_attainment", "ttft_p90_ms", "tpot_p90_ms", "tbt_p99_ms",
                 "tokens_per_s_per_gpu", "reason"):
        assert row[name] == plan_row[name], name
    assert row["goodput_rps"] > 0 and "verification" in row["reason"]


def test_search_rates_are_named_as_such(monkeypatch):
    """fidelity screen (the default) / refine: the search's answer on one unit, unverified, in search_* columns (it
    was in goodput_rps, as if plan's)."""
    _one_strategy(monkeypatch)
    assert SweepConfig(**GRID).fidelity == "screen"
    rows = run_sweep(SweepConfig(**GRID), workers=1)
    assert rows and not any(name.startswith("goodput") for name in rows[0])
    assert {"search_rps", "search_rps_per_gpu", "search_requests_per_dollar", "search_requests_per_joule",
            "search_rps_per_kw", "search_rps_per_1k_usd"} <= set(rows[0])
    assert rows[0]["search_rps"] > 0 and rows[0]["search_rps_per_gpu"] == rows[0]["search_rps"]


def test_a_cell_with_no_strategy_is_named_as_the_other_rows():
    """A cell with no strategy (TensorRT-LLM on an AMD chip) among search rates: search_rps 0, the others' columns."""
    cfg = SweepConfig(**{**GRID, "hardware": ["h100-sxm", "mi300x"],
                         "strategies": {**GRID["strategies"], "engine": "trtllm"}}, fidelity="screen")
    rows = run_sweep(cfg, workers=1)
    none = [r for r in rows if r["kind"] == "none"]
    assert none and none[0]["search_rps"] == 0.0 and list(none[0]) == list(rows[0])


@pytest.mark.parametrize("strategies, default_cap", [
    ({}, True), ({"tp_options": [1]}, True), ({"batch_caps": [256]}, False),
    ({"batch_caps": [256], "engine_default_cap": True}, True), ({"engine_default_cap": False}, False),
])
def test_strategy_options_default_as_plans_flags(strategies, default_cap):
    """plan without --batch-caps also tries the engine's own sequence cap (b1024 on an H100 with vLLM); the sweep
    left it out unless the undocumented strategies.engine_default_cap: true."""
    cfg = SweepConfig(**{**GRID, "strategies": strategies})
    assert _options(cfg).engine_default_cap is default_cap


def test_the_sweep_grid_has_plans_strategies():
    """Without batch_caps, the rows are plan's strategies: b256 and the engine's own cap (b1024)."""
    cfg = SweepConfig(**{**GRID, "strategies": {"tp_options": [1], "chunk_sizes": [512], "disaggregated": False}})
    names = [s.name for s in enumerate_strategies(M, "h100-sxm", 1, _options(cfg))[0]]
    assert any("b1024" in name for name in names) and any("b256" in name for name in names)


# --- outputs through a folder not yet made ---------------------------------------------------------------------

def test_an_output_through_a_missing_folder_is_the_file_it_lands_on(tmp_path):
    """`sweep --out ./sub/../tr.csv` (sub/ missing) replaced the trace tr.csv it read: stat() of the path as given
    found no file, then writing made sub/ and landed on tr.csv."""
    trace = tmp_path / "tr.csv"
    trace.write_text("x\n")
    with pytest.raises(PhasewiseError, match="would overwrite --workload"):
        refuse_overwriting_inputs({"--out": tmp_path / "sub" / ".." / "tr.csv"}, {"--workload": str(trace)})
    with pytest.raises(PhasewiseError, match="would overwrite --workload"):  # two folders deep, as text
        refuse_overwriting_inputs({"--out": str(tmp_path / "a" / "b" / ".." / ".." / "tr.csv")},
                                  {"--workload": str(trace)})
    refuse_overwriting_inputs({"--out": tmp_path / "sub" / "tr.csv"}, {"--workload": str(trace)})  # another file
    assert not (tmp_path / "sub").exists()


def test_an_existing_link_is_followed_before_its_dotdot(tmp_path):
    """A folder that exists is followed through its link (as the OS does): `link/../t.csv` is t.csv beside the
    link's target, not beside the link (a lexical normpath would say the other)."""
    target = tmp_path / "other" / "dir"
    target.mkdir(parents=True)
    (tmp_path / "link").symlink_to(target)
    here, there = tmp_path / "t.csv", tmp_path / "other" / "t.csv"
    here.write_text("x\n")
    there.write_text("y\n")
    refuse_overwriting_inputs({"--out": tmp_path / "link" / ".." / "t.csv"}, {"--workload": str(here)})
    with pytest.raises(PhasewiseError, match="would overwrite"):
        refuse_overwriting_inputs({"--out": tmp_path / "link" / ".." / "t.csv"}, {"--workload": str(there)})


def test_records_out_through_a_missing_folder(tmp_path):
    """`simulate --out nosub/../FILE`: a file of that name, found before the run (the check saw no file)."""
    (tmp_path / "f").write_text("x\n")
    with pytest.raises(PhasewiseError, match="a file of that name exists"):
        check_records_out(str(tmp_path / "nosub" / ".." / "f"), "csv", {})
    trace = tmp_path / "d" / "requests.csv"
    trace.parent.mkdir()
    trace.write_text("x\n")
    with pytest.raises(PhasewiseError, match="would overwrite"):
        check_records_out(str(tmp_path / "nosub" / ".." / "d"), "csv", {"--trace": str(trace)})
    assert not (tmp_path / "nosub").exists()


def test_sweep_out_through_a_missing_folder_keeps_its_trace(run_cli, tmp_path, monkeypatch):
    trace = tmp_path / "tr.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                     "2023-11-16 18:15:50.9951690,396,109\n")
    monkeypatch.setattr(sweep_module, "run_sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    cfg = tmp_path / "sw.yaml"
    cfg.write_text(f"models: [{M}]\nhardware: [h100-sxm]\ngpus: 1\nworkloads: [{{name: t, trace: {trace}}}]\n"
                   "slo: {ttft_ms: 1000}\n")
    before = trace.read_bytes()
    code, _, err = run_cli("sweep", str(cfg), "--out", str(tmp_path / "sub" / ".." / "tr.csv"))
    assert code == 2 and "workloads.0.trace" in err and "overwrite" in err and len(err.strip().splitlines()) == 1
    assert trace.read_bytes() == before and not (tmp_path / "sub").exists()


# --- true / false is no number ---------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, message", [
    ("gpus: true", "gpus: must be a number, not true"),
    ("attainment: true", "attainment: must be a number, not true"),
    ("seed: false", "seed: must be a number, not false"),
])
def test_a_boolean_is_no_number_at_the_top(tmp_path, entry, message):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"models: [{M}]\nhardware: [h100-sxm]\nworkloads: [{{name: a, isl: 512, osl: 64}}]\n"
                   f"slo: {{ttft_ms: 1000}}\n{entry}\n")
    with pytest.raises(PhasewiseError) as exc:
        load_sweep(str(cfg))
    assert str(exc.value) == f"sweep config '{cfg}': {message}"


@pytest.mark.parametrize("workload, slo, message", [
    ("{name: a, isl: true, osl: 64}", "{ttft_ms: 1000}", "workloads.0.isl: must be a number, not true"),
    ("{name: a, isl: 512, osl: 64, osl_spread: true}", "{ttft_ms: 1000}", "workloads.0.osl_spread: must be a number"),
    ("{name: a, isl: 512, osl: 64, images_per_request: true}", "{ttft_ms: 1000}",
     "workloads.0.images_per_request: must be a number"),
    ("{name: a, isl: 512, osl: 64}", "{ttft_ms: true}", "slo.ttft_ms: must be a number, not true"),
    ("{name: a, isl: 512, osl: 64}", "{ttft_ms: 1000, tbt_ms: false}", "slo.tbt_ms: must be a number, not false"),
])
def test_a_boolean_is_no_length_nor_limit(tmp_path, workload, slo, message):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"models: [{M}]\nhardware: [h100-sxm]\nworkloads: [{workload}]\nslo: {slo}\n")
    with pytest.raises(PhasewiseError, match=message):
        load_sweep(str(cfg))


@pytest.mark.parametrize("strategies, key", [
    ({"tp_options": [True]}, "tp_options"), ({"ratios": [[1, True]]}, "ratios"),
    ({"memory_fraction": True}, "memory_fraction"), ({"host_kv_cache_bytes": True}, "host_kv_cache_bytes"),
])
def test_a_boolean_is_no_strategy_size(strategies, key):
    with pytest.raises(PhasewiseError, match=rf"strategies\.{key} takes numbers or names, not true"):
        _options(SweepConfig(**{**GRID, "strategies": strategies}))


def test_flags_still_take_booleans():
    opts = _options(SweepConfig(**{**GRID, "strategies": {"disaggregated": False, "speculative": [False, True],
                                                          "engine_default_cap": False}}))
    assert opts.disaggregated is False and opts.speculative == (False, True) and opts.engine_default_cap is False


def test_the_csv_is_written_with_the_fidelity_named(run_cli, tmp_path, monkeypatch):
    """The console line says which figures the rows hold."""
    _one_strategy(monkeypatch)
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"models: [{M}]\nhardware: [h100-sxm]\ngpus: 1\nworkloads: [{{name: a, isl: 512, osl: 64}}]\n"
                   "slo: {ttft_ms: 1000, tbt_ms: 50}\nstrategies: {tp_options: [1], chunk_sizes: [512], "
                   "batch_caps: [256], disaggregated: false}\n")
    out = tmp_path / "g.csv"
    code, printed, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code == 0, err
    assert "unverified, in search_* columns" in " ".join(printed.split())
    assert "search_rps" in next(csv.reader(out.open()))
