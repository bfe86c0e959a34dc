"""`plan --autoscale` (plan/fleet.py): each ranked strategy over the whole trace as the smallest fixed fleet and
autoscaled (HPA, Dynamo's planner), and the autoscaler's initial_replicas it starts them with."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.fleet import PRIME_S, parse_fleets, primed, replayed_trace
from phasewise.plan.goodput import workload_spec
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.workload.request import Workload

SLO = Slo(1000.0, 50.0)
PLAN = ["plan", "--model", "meta-llama/Llama-3.1-8B", "--gpus", "3", "--tp-options", "1", "--no-disagg",
        "--chunk-sizes", "2048", "--batch-caps", "64", "--trace", "azure-conv", "--arrivals", "trace",
        "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50", "--top", "1"]


def _work(arrivals: str = "trace"):
    return workload_spec("azure-conv", arrivals, None, None, "fixed", "fixed", 0.0, 0.0, 0)


def test_the_trace_is_replayed_whole_at_its_own_pace_or_rescaled():
    work = _work()
    own = replayed_trace(work, None)
    assert len(own) == len(work.arrivals)
    span = work.arrivals[-1] - work.arrivals[0]
    assert own.duration_s == pytest.approx(span)
    fast = replayed_trace(work, 20.0)
    assert (len(fast) - 1) / fast.duration_s == pytest.approx(20.0)
    assert np.array_equal(fast.prompt_tokens, own.prompt_tokens)  # the same requests, in the same order


def test_the_prime_replays_the_first_minutes_first_with_prefixes_of_their_own():
    trace = Workload(np.arange(0.0, 400.0, 2.0), np.arange(200) + 100, np.full(200, 16),
                     prefix_hashes=[(7, 8, 9)] * 200)
    replay = primed(trace)
    t = replay.traffic
    assert replay.prime_s == PRIME_S and replay.primed == 150  # arrivals 0, 2, ..., 298 s
    assert len(t) == 350 and np.all(np.diff(t.arrival_s) >= 0)
    assert np.array_equal(t.arrival_s[150:], trace.arrival_s + PRIME_S)  # the trace itself, shifted whole
    assert np.array_equal(t.prompt_tokens[:150], trace.prompt_tokens[:150])
    assert t.prefix_hashes[150:] == trace.prefix_hashes
    primes = [h for hs in t.prefix_hashes[:150] for h in hs]
    assert len(set(primes)) == len(primes) and min(primes) < 0  # shared with nothing, not even each other
    short = primed(Workload(np.array([0.0, 10.0]), np.full(2, 8), np.full(2, 8)))
    assert short.prime_s == 10.0 and short.primed == 1


@pytest.mark.parametrize("autoscale, rate, slo, arrivals, message", [
    ("hpa,knative", None, SLO, "trace", "--autoscale 'knative' is not one of hpa, kpa, keda, dynamo"),
    (",", None, SLO, "trace", "--autoscale ',': an empty name in the list"),  # as --router's (errors.name_list)
    ("hpa,", None, SLO, "trace", "--autoscale 'hpa,': an empty name in the list"),
    (" dynamo, hpa,hpa", None, SLO, "trace", "--autoscale ' dynamo, hpa,hpa' names hpa twice"),
    (None, 10.0, SLO, "trace", "--autoscale-rate is the replay's rate for --autoscale"),
    ("hpa", None, SLO, "poisson", "give --trace and --arrivals trace"),
    ("hpa", -3.0, SLO, "trace", "--autoscale-rate must be a rate > 0"),
    ("hpa", math.nan, SLO, "trace", "--autoscale-rate must be a rate > 0"),
    ("dynamo", None, Slo(1000.0, math.inf), "trace", "give finite --slo-ttft-ms and --slo-tpot-ms"),
    ("hpa", 1e-6, SLO, "trace", "--autoscale hpa: the trace replayed at --autoscale-rate 1e-06 spans 2e+09 s, more "
                                "than 2,000,000 of the HPA's 15 s periods"),
])
def test_bad_fleet_flags_are_one_line_errors(autoscale, rate, slo, arrivals, message):
    with pytest.raises(PhasewiseError, match=re.escape(message)):
        parse_fleets(autoscale, rate, slo, _work(arrivals))
    assert parse_fleets(None, None, SLO, _work()) is None
    assert parse_fleets(" dynamo, hpa", None, SLO, _work()) == ("dynamo", "hpa")


def _requests_ready_at_start(initial: int | None) -> tuple[int, dict]:
    """A burst at t=0 on up to 4 replicas with the HPA at min 1: the replicas that take requests in the first
    second, and the run's autoscale entry."""
    block = {"metric": "running", "target": 8, "min_replicas": 1, "startup_s": 30.0}
    if initial is not None:
        block["initial_replicas"] = initial
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 4, "autoscale": block}]})
    n = 40
    work = Workload(np.linspace(0.0, 0.5, n), np.full(n, 512), np.full(n, 32))
    res = simulate(dep, work, SLO)
    first = res.instance[res.arrival_s < 1.0]
    return len(set(first.tolist())), res.summary()["policy"]["autoscale"][0]


def test_initial_replicas_serve_from_the_start():
    spread, entry = _requests_ready_at_start(3)
    assert spread == 3 and entry["initial_replicas"] == 3 and entry["peak_replicas"] >= 3
    spread, entry = _requests_ready_at_start(None)
    assert spread == 1 and entry["initial_replicas"] == 1


def test_an_autoscaled_run_over_years_of_idle_periods_is_refused():
    """The autoscaler's loop runs through idle time: arrivals spread over more than 2,000,000 of its periods are a
    one-line error, not hours of empty syncs."""
    dep = build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 2,
         "autoscale": {"metric": "running", "target": 8}}]})
    work = Workload(np.array([0.0, 4e7]), np.full(2, 128), np.full(2, 8))
    with pytest.raises(PhasewiseError, match="the arrivals span 4e\\+07 s, 2.67e\\+06 of the autoscaler's 15 s"):
        simulate(dep, work, SLO)
    sparse = Workload(np.array([0.0, 1.5e6]), np.full(2, 128), np.full(2, 8))
    assert simulate(dep, sparse, SLO).summary()["completed"] == 2


@pytest.mark.parametrize("block, message", [
    ({"initial_replicas": 0, "min_replicas": 1}, "initial_replicas (0) is below min_replicas (1)"),
    ({"initial_replicas": 5}, "initial_replicas (5) is above the group's replicas (4)"),
])
def test_bad_initial_replicas_are_errors(block, message):
    with pytest.raises(PhasewiseError, match=re.escape(message)):
        build_deployment({"model": "meta-llama/Llama-3.1-8B", "instances": [
            {"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 4,
             "autoscale": {"metric": "running", "target": 8, **block}}]})


def test_plan_autoscale_finds_the_smallest_fixed_fleet_and_the_cheapest_within_the_slos(run_cli, tmp_path):
    code, out, err = run_cli(*PLAN, "--autoscale", "hpa,dynamo,kpa,keda", "--autoscale-rate", "12", "--json",
                             "--export", str(tmp_path), "--report", str(tmp_path / "plan.html"))
    assert code == 0, err
    fleets = json.loads(out)["fleets"]
    # the first ranked strategy's fleets (a strategy the screening scores alike is refined and ranked beside it)
    runs = [r for r in fleets["runs"] if r["strategy"] == fleets["runs"][0]["strategy"]]
    assert fleets["requests"] == 2000 and fleets["rate_rps"] == pytest.approx(12.0)
    assert [r["fleet"] for r in runs] == ["fixed"] + ["hpa"] * 5 + ["kpa", "kpa", "keda", "dynamo"]
    blocks = {r["fleet"]: r["deployment"]["instances"][0]["autoscale"] for r in runs if r["fleet"] != "fixed"}
    assert blocks["kpa"]["autoscaler"] == "kpa" and blocks["kpa"]["metric"] == "concurrency"
    # the KPA at Knative's defaults, then with a 300 s scale-down delay (the HPA's default scale-down window)
    kpa = [r for r in runs if r["fleet"] == "kpa"]
    kpa_blocks = [r["deployment"]["instances"][0]["autoscale"] for r in kpa]
    assert [b.get("scale_down_delay_s", 0.0) for b in kpa_blocks] == [0.0, 300.0]
    assert kpa_blocks[0]["target"] == kpa_blocks[1]["target"] and kpa[1]["detail"].endswith(", scale-down delay 300 s")
    assert "scale-down" not in kpa[0]["detail"]
    assert blocks["keda"]["autoscaler"] == "keda" and blocks["keda"]["min_replicas"] == 0
    for r in runs:
        assert r["meets"] == (r["attainment"] >= 0.9)
        assert 0 < r["mean_gpus"] <= r["peak_gpus"] <= 3 and r["gpu_hours"] > 0 and r["cost_usd"] > 0
    # each HPA target a share of one replica's concurrency at its goodput: a higher target holds fewer GPUs, and the
    # highest with a 60 s scale-down window (Kubernetes' default: 300 s) fewer still
    hpa = [(r["deployment"]["instances"][0]["autoscale"], r["mean_gpus"]) for r in runs if r["fleet"] == "hpa"
           and r["deployment"]["instances"][0]["autoscale"]["metric"] == "running"]
    targets, held = [block["target"] for block, _ in hpa], [gpus for _, gpus in hpa]
    windows = [block.get("scale_down_window_s", 300.0) for block, _ in hpa]
    assert targets == sorted(targets) and targets[-1] == targets[-2] and windows == [300.0, 300.0, 300.0, 60.0]
    assert held == sorted(held, reverse=True) and held[-1] < held[-2]
    # the HPA on the KV cache's used share too, its target a replica's mean KV use in the verification run
    kv = [r for r in runs
          if r["fleet"] == "hpa" and r["deployment"]["instances"][0]["autoscale"]["metric"] == "kv_usage"]
    assert len(kv) == 1 and 0 < kv[0]["deployment"]["instances"][0]["autoscale"]["target"] <= 1
    assert kv[0]["detail"].endswith("a replica (its mean KV use at the goodput)")
    # the fixed fleet is the smallest that meets the SLOs: one unit fewer does not (re-simulated here)
    fixed = runs[0]
    units = fixed["deployment"]["instances"][0]["replicas"]
    assert fixed["meets"] and fixed["detail"] == f"{units} of 3 units"
    if units > 1:
        fewer = dict(fixed["deployment"], instances=[dict(fixed["deployment"]["instances"][0], replicas=units - 1)])
        replay = primed(replayed_trace(_work(), 12.0))
        res = simulate(build_deployment(fewer), replay.traffic, SLO)
        assert res.attained()[replay.primed:].mean() < 0.9
    best = fleets["best"]
    assert best["meets"] and f"{best['gpu_hours']:.3g}" == \
        f"{min(r['gpu_hours'] for r in fleets['runs'] if r['meets']):.3g}"
    assert fleets["answer"].startswith(f"fewest GPU-hours within the SLOs: {best['strategy']}, {best['fleet']}")
    page = (tmp_path / "plan.html").read_text()
    assert "Fleets over the whole trace" in page and 'id="fleets"' in page and fleets["answer"][:40] in page
    # --export writes the answer's deployment beside the rank-1 strategy's, and simulate reads it
    assert "fleet.yaml" in err
    code, out, err = run_cli("simulate", "--deployment", str(tmp_path / "fleet.yaml"), "--trace", "azure-conv",
                             "--trace-limit", "200", "--rate", "12")
    assert code == 0, err


def test_engine_autoscalers_scale_a_disaggregated_strategys_prefill_and_decode_groups_each():
    """The HPA, KPA and KEDA on an xPyD strategy: a block per group, each aimed at its group's load a replica at the
    goodput (by hand from the verification run: prefill on its request rate, for the KPA in flight = its rate x mean
    TTFT; decode running (KPA: in flight) = its rate x (mean E2E - mean TTFT)); KEDA takes prefill to zero but keeps
    a decode replica."""
    from phasewise.plan import PlanOptions, plan
    from phasewise.plan.fleet import plan_fleets

    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), ratios=((1, 1),), batch_caps=(64,))
    result = plan("meta-llama/Llama-3.1-8B", "h100-sxm", 2, SLO, _work(), opts=opts, refine=3, workers=1)
    disagg = next(r for r in result.ranked if r.strategy.kind == "disaggregated" and r.verified is not None)
    fleets = plan_fleets([disagg], _work(), SLO, 0.9, ("hpa", "kpa", "keda"), 4.0, workers=1)
    summary = disagg.verified.summary
    rate = disagg.goodput_rps / disagg.strategy.units  # one prefill and one decode replica a unit
    ttft_s, e2e_s = summary["ttft_ms"]["mean"] / 1e3, summary["e2e_ms"]["mean"] / 1e3
    prefill, decode = rate * ttft_s, rate * (e2e_s - ttft_s)
    runs = {(r.fleet, r.detail): r for r in fleets.runs}
    assert [f for f, _ in runs] == ["fixed"] + ["hpa"] * 5 + ["kpa", "kpa", "keda"]
    kv_use = disagg.verified.summary["kv_mean_use"]["decode"]
    for (fleet, detail), r in runs.items():
        if fleet == "fixed":
            continue
        if "kv_usage" in detail:  # the HPA on a decode replica's KV use; prefill on its rate, as the others
            blocks = [g["autoscale"] for g in r.deployment["instances"]]
            assert [b["metric"] for b in blocks] == ["rps", "kv_usage"]
            assert blocks[0]["target"] == max(0.1, round(rate, 1)) and blocks[1]["target"] == round(kv_use, 3)
            continue
        assert not r.note and 0 < r.mean_gpus <= r.peak_gpus <= 2 and r.gpu_hours > 0
        blocks = [g["autoscale"] for g in r.deployment["instances"]]
        assert [g["role"] for g in r.deployment["instances"]] == ["prefill", "decode"]
        share = {"kpa": 1.0, "keda": 0.8}.get(fleet) or float(detail.split("(")[1].split("%")[0]) / 100
        first = max(1, round(prefill * share)) if fleet == "kpa" else max(0.1, round(rate * share, 1))
        assert [b["target"] for b in blocks] == [first, max(1, round(decode * share))]
        metrics = ["concurrency", "concurrency"] if fleet == "kpa" else ["rps", "running"]
        assert [b["metric"] for b in blocks] == metrics
        assert [b.get("autoscaler", "hpa") for b in blocks] == [fleet, fleet]
        if fleet == "keda":
            assert [b["min_replicas"] for b in blocks] == [0, 1] and "prefill 0-1, decode 1-1" in detail


def test_a_strategy_autoscaling_refuses_is_one_row_a_fleet_with_its_reason():
    """Priority pools (and attention offload, encoders, online training) do not combine with autoscaling: each
    autoscaler is one row saying so, where the HPA would otherwise fail its three targets' deployments one by one."""
    from phasewise.plan import PlanOptions, enumerate_strategies
    from phasewise.plan.fleet import plan_fleets
    from phasewise.plan.goodput import GoodputResult

    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False, policies=("priority-pools",))
    pools = next(s for s in enumerate_strategies("meta-llama/Llama-3.1-8B", "h100-sxm", 4, opts)[0]
                 if "priority_pools" in s.deployment)
    fleets = plan_fleets([GoodputResult(pools, 8.0, 10.0, "-", {})], _work(), SLO, 0.9, ("hpa", "kpa", "dynamo"),
                         4.0, workers=1)
    assert [(r.fleet, r.note) for r in fleets.runs[1:]] == \
        [(f, "autoscale does not combine with priority pools") for f in ("hpa", "kpa", "dynamo")]


def test_the_table_and_the_answer_line():
    """The view: the fleet with the fewest GPU-hours within the SLOs against its strategy's smallest fixed fleet, and
    a fleet that was not run shown with its reason."""
    from rich.console import Console

    from phasewise.apps.fleet_view import answer_line, render_fleets
    from phasewise.plan.fleet import FleetPlan, FleetRun

    runs = [FleetRun("4x TP2", "fixed", "3 of 4 units", 0.95, 6.0, 6.0, 6.0, 24.0, 400, 30, True),
            FleetRun("4x TP2", "hpa", "running 40 a replica (80% of 50)", 0.93, 4.5, 8.0, 4.5, 18.0, 450, 32, True),
            FleetRun("4x TP2", "dynamo", "SLA planner", 0.6, 3.0, 4.0, 3.0, 12.0, 9000, 80, False),
            FleetRun("2P2D", "hpa", "", note="the HPA here scales one collocated group's replicas")]
    fleets = FleetPlan("trace", 16.0, 57600, 3600.0, 0.9, runs)
    assert fleets.best() is runs[1]
    assert answer_line(fleets) == ("fewest GPU-hours within the SLOs: 4x TP2, hpa (running 40 a replica (80% of "
                                   "50)): 4.5 GPU-h, $18.00, 4.50 GPUs on average, -25% GPU-h against its smallest "
                                   "fixed fleet (3 of 4 units, 6 GPU-h)")
    console = Console(record=True, width=200)
    render_fleets(console, fleets)
    text = console.export_text()
    assert "57,600 requests over 3,600 s at 16.00 req/s" in text and "the HPA here scales one collocated" in text
    assert answer_line(FleetPlan("trace", 16.0, 57600, 3600.0, 0.9, runs[2:])).startswith("no fleet meets the SLOs")


def test_a_disaggregated_fleets_peak_is_the_most_gpus_held_at_once():
    """Its prefill group peaks in a prompt-heavy burst and its decode group in a later output-heavy one: the fleet's
    peak is the most GPUs held at one time (6 here), not the sum of the groups' own peaks (8)."""
    from types import SimpleNamespace

    from phasewise.plan.fleet import Replay, _fleet_run

    fields = {"model": "meta-llama/Llama-3.1-8B", "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "replicas": 4},
        {"role": "decode", "hardware": "h100-sxm", "replicas": 4}]}
    prefill = [[0, 1000]] * 2 + [[100, 300]] * 2  # 4 from 100 s to 300 s, then 2
    decode = [[0, 1000]] * 2 + [[500, 700]] * 2  # 2, then 4 from 500 s to 700 s
    res = SimpleNamespace(arrival_s=np.array([0.0, 10.0]), finish_s=np.array([900.0, 1000.0]),
                          policy={"autoscale": [{"group": 0, "gpu_periods_s": prefill},
                                                {"group": 1, "gpu_periods_s": decode}]},
                          attained=lambda: np.array([True, True]), ttft_s=np.array([0.1, 0.1]),
                          tpot_s=np.array([0.02, 0.02]), output_tokens=np.array([10, 10]))
    run = _fleet_run("4P(TP1) 4D(TP1)", "hpa", "", fields, res, Replay(None, 0, 0.0), 0.9)
    assert run.peak_gpus == 6
    assert run.mean_gpus == pytest.approx((2 * 1000 + 2 * 200) * 2 / 1000)
