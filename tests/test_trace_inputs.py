"""Trace and workload inputs that ran silently wrong or failed without saying where: a trace with no arrival span
rescaled to a rate, a trace no request of which fits the model's context, a sweep workload's errors, Mooncake's
optional columns, priority classes past class_slo_ms, a suffix's case, file lines after blank lines, a timestamp
that is no time, and the length flags' allowed values. Each is a one-line error naming the field and the line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.goodput import workload_spec
from phasewise.plan.sweep import load_sweep, run_sweep
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.workload import Workload, check_length_flags, load_trace

HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens"
LLAMA = "meta-llama/Llama-3.1-8B"
CONTEXT = 131_072  # its max_position_embeddings


def _file(tmp_path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _mooncake(t_ms: float, n_in: int = 600, **extra) -> str:
    return json.dumps({"timestamp": t_ms, "input_length": n_in, "output_length": 5,
                       "hash_ids": list(range(-(-n_in // 512))), **extra})


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- 1: a trace whose arrivals span no time has no rate to rescale --------------------------------------------------
@pytest.mark.parametrize("times, which", [([0, 0, 0], "its 3 requests all arrive at one instant"),
                                          ([5.0], "it has one request")])
def test_a_trace_at_one_instant_is_not_rescaled_to_a_rate(times, which):
    work = Workload(np.asarray(times, dtype=float), [100] * len(times), [10] * len(times), name="same.csv")
    with pytest.raises(PhasewiseError) as err:
        work.scaled_to_rate(5.0)
    message = _one_line(err)
    assert f"trace 'same.csv': {which}" in message and "--arrivals poisson" in message


def test_simulate_plan_and_sweep_refuse_to_rescale_it(run_cli, tmp_path):
    trace = _file(tmp_path, "same.csv", [HEADER, "0,374,44", "0,396,109", "0,879,55"])
    code, _, err = run_cli("simulate", "--trace", trace, "--rate", "5")  # --rate was ignored
    assert code == 2 and "all arrive at one instant" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(PhasewiseError, match="all arrive at one instant"):  # plan: 7,434 req/s reported
        workload_spec(trace, "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0, context_tokens=CONTEXT)
    assert workload_spec(trace, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0).arrivals is None  # Poisson: fine


# --- 2: no request of the trace fits the model's context ----------------------------------------------------------
def test_plan_refuses_a_trace_none_of_whose_requests_fits_the_context(tmp_path):
    trace = _file(tmp_path, "huge.csv", [HEADER, "0,200000,10", "1,300000,10"])
    with pytest.raises(PhasewiseError) as err:
        workload_spec(trace, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, context_tokens=CONTEXT)
    assert "nothing can run: all 2 of the workload's requests" in _one_line(err) and "131,072-token" in str(err.value)
    some = _file(tmp_path, "some.csv", [HEADER, "0,200000,10", "1,300,10"])
    spec = workload_spec(some, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, context_tokens=CONTEXT)
    assert spec.beyond_context_share == 0.5  # some fit: refused one by one, as before


def test_sweep_refuses_it_naming_the_entry_and_the_model(tmp_path):
    trace = _file(tmp_path, "huge.csv", [HEADER, "0,200000,10", "1,300000,10"])
    cfg = _sweep(tmp_path, f"{{name: big, trace: {trace}}}")
    with pytest.raises(PhasewiseError) as err:
        run_sweep(load_sweep(cfg))  # ran the whole search, its rows saying "decode (TPOT)"
    message = _one_line(err)
    assert "workloads.0, workload 'big': nothing can run" in message and f"{LLAMA}'s 131,072-token" in message


def test_a_run_where_every_request_is_refused_summarises_without_a_warning():
    dep = build_deployment({"model": LLAMA, "instances": [{"hardware": "h100-sxm"}]})
    work = Workload(np.array([0.0, 1.0]), [200_000, 300_000], [10, 10])
    res = simulate(dep, work, Slo(1000, 50), refuse_beyond_context=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "All-NaN slice encountered" from the nanmax over finish_s
        assert np.isnan(res.duration_s)
        assert res.summary()["slo"]["attainment"] == 0


# --- 3: a sweep workload's errors name the file, the entry and its keys ---------------------------------------------
def _sweep(tmp_path, workload: str) -> str:
    return _file(tmp_path, "grid.yaml", [f"models: [{LLAMA}]", "hardware: [h100-sxm]", "gpus: 1",
                                         f"workloads: [{workload}]", "slo: {ttft_ms: 1000, tpot_ms: 50}",
                                         "strategies: {tp_options: [1], chunk_sizes: [512], disaggregated: false}"])


@pytest.mark.parametrize("workload, message", [
    ("{name: a, isl: 100, arrivals: trace}", "workloads.0, workload 'a': arrivals trace needs trace"),
    ("{name: a, trace: azure-conv, isl: 100}", "workloads.0, workload 'a': give either trace or isl/osl, not both"),
    ("{name: a, trace: azure-conv, isl_dist: uniform, isl_spread: 0.5}",  # (without a spread: it needs one first)
     "workloads.0, workload 'a': isl_dist uniform needs isl/osl"),
    ("{name: a, isl: 100, isl_spread: 0.5}", "workload 'a': isl_spread applies to isl_dist uniform or lognormal"),
    ("{name: a, isl: 10.5}", "workload 'a': isl must be a whole number of tokens for fixed lengths"),
    ("{name: a, trace: missing.csv}", "workloads.0, workload 'a': trace 'missing.csv' does not exist"),
])
def test_sweep_workload_errors_name_the_file_and_the_entry(tmp_path, workload, message):
    cfg = _sweep(tmp_path, workload)
    with pytest.raises(PhasewiseError) as err:
        run_sweep(load_sweep(cfg))  # refused before any search
    text = _one_line(err)
    assert text.startswith(f"sweep config '{cfg}': ") and message in text and "--" not in text


def test_sweep_length_distributions_are_checked_by_the_schema(tmp_path):
    cfg = _sweep(tmp_path, "{name: a, isl: 100, isl_dist: normal}")
    with pytest.raises(PhasewiseError) as err:
        load_sweep(cfg)
    assert "workloads.0.isl_dist: Input should be 'fixed', 'uniform' or 'lognormal'" in _one_line(err)


def test_a_sweep_entry_with_neither_trace_nor_lengths_takes_plans_default(tmp_path):
    """As plan without --workload: the bundled Azure conversation excerpt's lengths (README, sweep)."""
    from phasewise.plan.sweep import _workloads

    [work] = _workloads(load_sweep(_sweep(tmp_path, "{name: a}")))
    conv = load_trace("azure-conv")
    assert work.prompts == tuple(conv.prompt_tokens.tolist()) and work.arrivals is None


# --- 4: Mooncake's optional priority and NumImages keys -------------------------------------------------------------
def test_mooncake_reads_and_checks_priority_and_images(tmp_path):
    trace = _file(tmp_path, "mc.jsonl", [_mooncake(0, priority=1, NumImages=2), _mooncake(10, priority=0, NumImages=0)])
    work = load_trace(trace)
    assert work.priority.tolist() == [1, 0] and work.image_counts.tolist() == [2, 0]
    assert load_trace(_file(tmp_path, "plain.jsonl", [_mooncake(0)])).priority is None


@pytest.mark.parametrize("extra, message", [({"priority": -7}, "line 3: priority must be an integer >= 0 (got -7)"),
                                            ({"NumImages": "lots"}, "line 3: NumImages must be an integer in 0..64")])
def test_mooncake_refuses_a_bad_optional_value_as_the_azure_reader_does(tmp_path, extra, message):
    good = {key: 0 for key in extra}
    trace = _file(tmp_path, "mc.jsonl", [_mooncake(0, **good), "", _mooncake(10, **extra)])
    with pytest.raises(PhasewiseError) as err:
        load_trace(trace)
    assert message in _one_line(err)


# --- 5: priority classes past class_slo_ms --------------------------------------------------------------------------
def test_a_priority_past_class_slo_ms_is_named(tmp_path):
    dep = build_deployment({"model": "meta-llama/Meta-Llama-3-8B", "instances": [
        dict(hardware="a100-sxm-80gb", engine="ascendra-lp", replicas=1, pool="lp"),
        dict(hardware="a100-sxm-80gb", engine="ascendra-hp", replicas=1, pool="hp")],
        "priority_pools": {"class_slo_ms": [[500, 50], [2000, 100]]}})
    work = Workload(np.arange(4) * 0.5, [300] * 4, [20] * 4, priority=[0, 1, 3, 0])
    with pytest.raises(PhasewiseError) as err:  # it took the pools' default SLOs silently
        simulate(dep, work, Slo(1000, 100))
    message = _one_line(err)
    assert "class_slo_ms gives 2 classes (priorities 0..1) and none for priority 3" in message
    simulate(dep, Workload(np.arange(4) * 0.5, [300] * 4, [20] * 4, priority=[0, 1, 1, 0]), Slo(1000, 100))


# --- 6: the file's type, whatever the suffix's case -----------------------------------------------------------------
def test_an_upper_case_jsonl_suffix_is_read_as_jsonl(tmp_path):
    assert len(load_trace(_file(tmp_path, "mc.JSONL", [_mooncake(0), _mooncake(10)]))) == 2
    azure = json.dumps({"arrived_at": 0, "num_prefill_tokens": 10, "num_decode_tokens": 5})
    assert load_trace(_file(tmp_path, "az.Json", [azure])).prompt_tokens.tolist() == [10]


# --- 7: the file's line, and the timestamp field named ----------------------------------------------------------------
@pytest.mark.parametrize("name, lines, message", [
    ("blank.csv", [HEADER, "0,100,10", "", "", "1,100,10", "2,-4,10"], "line 6: prompt tokens must be"),
    ("blank.jsonl", [json.dumps({"arrived_at": 0, "num_prefill_tokens": 100, "num_decode_tokens": 10}), "", "",
                     json.dumps({"arrived_at": 1, "num_prefill_tokens": -4, "num_decode_tokens": 10})],
     "line 4: prompt tokens must be"),
    ("prio.csv", [HEADER + ",priority", "0,100,10,0", "", "1,100,10,x"], "line 4: priority must be"),
    ("us.csv", ["TIMESTAMP,ContextTokens,GeneratedTokens", "11/16/2023 18:15,100,10"],
     "line 2: TIMESTAMP must be seconds (a number) or an ISO 8601 date-time such as 2023-11-16 18:15:46"),
    ("nan.csv", [HEADER, "0,100,10", "nan,100,10"], "line 3: arrived_at must be a finite time >= 0 (got 'nan')"),
    ("inf.csv", [HEADER, "0,100,10", "inf,100,10"], "line 3: arrived_at must be a finite time >= 0 (got 'inf')"),
    ("neg.csv", [HEADER, "-1,100,10", "0,100,10"], "line 2: arrived_at must be a finite time >= 0 (got '-1')"),
    ("empty_hash.jsonl", [_mooncake(0), json.dumps({"timestamp": 5, "input_length": 300, "output_length": 5,
                                                    "hash_ids": []})],
     "line 2: `hash_ids` lists 0 and input_length 300 needs 1 (one block hash per 512 prompt tokens)"),
])
def test_a_bad_row_names_its_file_line_and_field(tmp_path, name, lines, message):
    with pytest.raises(PhasewiseError) as err:
        load_trace(_file(tmp_path, name, lines))
    assert message in _one_line(err)


# --- 8, 9: the length flags' allowed values ---------------------------------------------------------------------------
def test_the_length_flags_list_only_what_a_flag_can_name(run_cli):
    with pytest.raises(PhasewiseError) as err:
        check_length_flags(100, None, "empirical", None, None, None)
    assert _one_line(err) == "--isl-dist 'empirical' is not one of fixed, uniform, lognormal"
    code, _, err = run_cli("plan", "--gpus", "1", "--isl", "100", "--isl-dist", "normal")
    assert code == 2 and "--isl-dist 'normal' is not one of fixed, uniform, lognormal\n" in err


def test_a_fixed_length_is_whole_tokens(run_cli):
    with pytest.raises(PhasewiseError) as err:  # it floored to 10 silently
        check_length_flags(10.5, None, None, None, None, None)
    assert "--isl must be a whole number of tokens for fixed lengths (got 10.5" in _one_line(err)
    check_length_flags(10.5, 200.5, "uniform", "lognormal", 0.5, 0.8)  # a mean: as before
    with pytest.raises(PhasewiseError, match="whole number of tokens for the client's sampling"):  # it floored too
        check_length_flags(10.5, None, None, None, None, None, sampled_by="the client's sampling")
    code, _, err = run_cli("simulate", "--rate", "5", "--requests", "10", "--osl", "64.5")
    assert code == 2 and "--osl must be a whole number of tokens" in err
