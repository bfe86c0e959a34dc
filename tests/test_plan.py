"""The planner: rankings follow the known effects, goodput search is monotone and verified, memory
pruning, backends agree, bad input is one line, the sweep writes its grid."""

import csv
import json
import math

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan import PlanOptions, WorkloadSpec, enumerate_strategies, evaluate, plan
from phasewise.plan.backends import run_all
from phasewise.plan.strategies import Strategy
from phasewise.sim import Slo, simulate
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware
from phasewise.specs.chip_cost import hardware_cost_usd

M = "meta-llama/Llama-3.1-8B"


def fixed(isl: int, osl: int, seed: int = 0) -> WorkloadSpec:
    return WorkloadSpec((isl,), (osl,), seed=seed, name=f"{isl}/{osl}")


def test_long_prompts_tight_tbt_favour_chunking_or_disaggregation():
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(512,), ratios=((1, 1), (2, 2)))
    res = plan(M, "h100-sxm", 4, Slo(3000, 20), fixed(6000, 256), opts=opts, refine=3, workers=1)
    best = res.ranked[0].strategy
    assert best.kind == "disaggregated" or "chunked" in best.name
    first = next(r for r in res.screened if "prefill-first" in r.strategy.name)
    assert res.ranked[0].goodput_rps > 1.2 * first.goodput_rps


def test_short_prompts_loose_slo_favour_collocation():
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(512,), ratios=((1, 1), (1, 3), (3, 1)))
    res = plan(M, "h100-sxm", 4, Slo(5000, 200), fixed(256, 128), opts=opts, refine=3, workers=2)
    assert res.ranked[0].strategy.kind == "collocated"


def test_strategies_that_do_not_fit_never_appear():
    strategies, pruned = enumerate_strategies("meta-llama/Llama-3.1-70B", "h100-sxm", 8, PlanOptions())
    assert strategies and all(s.details.get("tp", 2) >= 2 for s in strategies if s.kind == "collocated")
    assert all("P(TP1)" not in s.name and "D(TP1)" not in s.name for s in strategies)
    assert any("do not fit" in p or "does not fit" in p for p in pruned)
    with pytest.raises(PhasewiseError, match="no strategy fits"):
        enumerate_strategies("meta-llama/Llama-3.1-70B", "l40s", 1, PlanOptions(tp_options=(1,)))


def test_a_model_larger_than_one_node_is_planned_across_nodes_unless_tp_sizes_are_named(run_cli):
    """DeepSeek-R1 in FP8 fits no 8 x H100 instance: with the default TP sizes the planner tries whole nodes (TP16
    over two), saying so; with --tp-options named it keeps to them and the error names the next step."""
    from phasewise.plan.strategies import ACROSS_NODES

    opts = PlanOptions(chunk_sizes=(), disaggregated=False, moe_layouts=("tp",))
    strategies, pruned = enumerate_strategies("deepseek-ai/DeepSeek-R1", "h100-sxm", 16, opts)
    assert strategies and {s.details["tp"] for s in strategies} == {16}
    assert pruned[0].startswith(ACROSS_NODES) and "tried TP 16 across nodes" in pruned[0]
    named = PlanOptions(tp_options=(1, 2, 4, 8), tp_across_nodes=False, chunk_sizes=(), disaggregated=False)
    with pytest.raises(PhasewiseError, match=r"tp=8 .*does not fit.*; --tp-options 16 spans two nodes$"):
        enumerate_strategies("deepseek-ai/DeepSeek-R1", "h100-sxm", 16, named)
    with pytest.raises(PhasewiseError, match="an instance of two 8-GPU nodes needs --gpus 16$"):
        enumerate_strategies("deepseek-ai/DeepSeek-R1", "h100-sxm", 8, opts)
    code, _, err = run_cli("plan", "--model", "deepseek-ai/DeepSeek-R1", "--hardware", "h100-sxm", "--gpus", "16",
                           "--tp-options", "8", "--no-disagg", "--chunk-sizes", "512")
    assert code == 2 and "--tp-options 16 spans two nodes" in err and "Traceback" not in err


def test_trtllm_strategies_capture_decode_graphs_up_to_their_batch_cap():
    """TensorRT-LLM captures decode graphs to 128 by default; the planner's TensorRT-LLM deployments set
    cuda_graph_config to their batch cap with padding, as AIConfigurator's generator does (graph_knobs)."""
    from phasewise.specs.engines import graph_knobs

    assert graph_knobs("trtllm", 256) == {"cuda_graph_max_batch_size": 256, "cuda_graph_padding_enabled": True}
    assert graph_knobs("vllm", 256) == {} and graph_knobs("sglang", 256) == {}
    strategies, _ = enumerate_strategies(M, "h100-sxm", 2, PlanOptions(tp_options=(1,), engine="trtllm"))
    groups = [g for s in strategies for g in s.deployment["instances"] if g.get("role", "collocated") != "prefill"]
    assert groups and all(g["cuda_graph_max_batch_size"] == g["max_batch_size"] and g["cuda_graph_padding_enabled"]
                          for g in groups)


def test_a_finer_search_reads_the_probes_a_coarser_one_ran_on_a_replayed_trace():
    """On a replayed trace every window is the whole trace, so refining (6 bisections) repeats screening's probes
    (3) exactly: read from `known`, its answer, binding, curve and summary are those of a search that simulates
    them all, with 3 simulations instead of 8; a Poisson workload's windows differ, so nothing is read."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False)
    strategy = enumerate_strategies(M, "h100-sxm", 1, opts)[0][0]
    rng = np.random.default_rng(3)
    n = 1500  # more than any probe's 60 s window holds (a shorter trace is looped to fill it: another workload)
    gaps_s = rng.exponential(1.0, n) * (1 + np.sin(np.arange(n) / 40))
    trace = WorkloadSpec(tuple(int(x) for x in rng.integers(200, 3000, n)),
                         tuple(int(x) for x in rng.integers(20, 400, n)),
                         tuple(float(x) for x in np.cumsum(gaps_s)), name="bursty trace")
    slo = Slo(1500, 60)
    coarse = evaluate(strategy, trace, slo, 0.9, steps=3, window_s=20.0, min_requests=150)
    alone = evaluate(strategy, trace, slo, 0.9, steps=6)
    fine = evaluate(strategy, trace, slo, 0.9, steps=6, known=coarse.probes)
    def simulated(r):  # the search's outcome, less the simulator's own wall time
        return r.goodput_rps, r.binding, r.curve, {k: v for k, v in r.at_goodput.items() if k != "sim"}

    assert simulated(fine) == simulated(alone)
    assert coarse.simulations == len(coarse.curve) and alone.simulations == len(alone.curve)
    assert fine.simulations == alone.simulations - coarse.simulations == 3
    assert fine.probes.keys() == alone.probes.keys() >= coarse.probes.keys()
    poisson = fixed(1024, 128)
    screened = evaluate(strategy, poisson, slo, 0.9, steps=3, window_s=20.0, min_requests=150)
    refined = evaluate(strategy, poisson, slo, 0.9, steps=6, known=screened.probes)
    assert refined.simulations == len(refined.curve)


def test_a_search_stops_a_probe_once_its_target_is_out_of_reach_and_finds_the_same_goodput(monkeypatch):
    """A probe that cannot meet the target is stopped once more requests surely missed than the target allows:
    every probe passes or fails as when it runs whole, so the answer is the same, in fewer simulated events; the
    stopped probes are marked on the curve. Where no rate attains, the lowest tried is run whole (how close it
    came)."""
    import phasewise.plan.goodput as goodput

    strategy = enumerate_strategies(M, "h100-sxm", 1, PlanOptions(tp_options=(1,), chunk_sizes=(),
                                                                    disaggregated=False))[0][0]
    work, slo = fixed(1024, 128), Slo(1000, 50)
    events = []
    real = goodput.simulate

    def counted(*args, **kwargs):
        res = real(*args, **kwargs)
        events.append(res.events)
        return res

    monkeypatch.setattr(goodput, "simulate", counted)
    stopping = evaluate(strategy, work, slo, 0.9, steps=5)
    stopping_events = sum(events)
    events.clear()
    monkeypatch.setattr(goodput, "simulate",
                        lambda *a, stop_after_misses=None, **k: counted(*a, **k))  # every probe whole
    whole = evaluate(strategy, work, slo, 0.9, steps=5)
    assert stopping.goodput_rps == whole.goodput_rps > 0
    assert [c["rate_rps"] for c in stopping.curve] == [c["rate_rps"] for c in whole.curve]
    stopped = [c for c in stopping.curve if c["stopped"]]
    assert stopped and not any(c["stopped"] for c in whole.curve)
    for c, w in zip(stopping.curve, whole.curve):
        assert (c["attainment"] >= 0.9) == (w["attainment"] >= 0.9)
        assert c["attainment"] <= w["attainment"] + 1e-12  # unfinished requests count as missing
        if not c["stopped"]:
            assert c == w
    assert stopping_events < 0.9 * sum(events)
    monkeypatch.setattr(goodput, "simulate", real)
    none = evaluate(strategy, work, Slo(1, 50), 0.9, steps=5)  # a 1 ms TTFT: no rate attains
    assert none.goodput_rps == 0
    lowest = min(none.curve, key=lambda c: c["rate_rps"])
    assert not lowest["stopped"] and any(c["stopped"] for c in none.curve)


def test_one_unit_of_a_replayed_trace_receives_its_share_of_the_requests_at_the_traces_instants():
    """A unit of 8 behind a router that does not read prompts: about 1/8 of the trace's requests, each at its
    instant in the whole trace at the rate (the trace is not slowed down 8-fold, which would stretch its bursts);
    Poisson arrivals are thinned by their rate as before."""
    from phasewise.plan.goodput import slice_traffic

    rng = np.random.default_rng(5)
    n = 4000
    arrivals = tuple(float(x) for x in np.cumsum(rng.exponential(1.0, n)))
    trace = WorkloadSpec(tuple(range(1, n + 1)), tuple([64] * n), arrivals, name="trace")
    whole = trace.at_rate(40.0)
    unit = slice_traffic(trace, 40.0, 300, 1, 8, "least_outstanding")
    assert abs(len(unit) - n / 8) < 4 * math.sqrt(n / 8)
    rows = unit.prompt_tokens - 1  # each request's row in the trace (its prompt length here)
    assert np.array_equal(unit.arrival_s, whole.arrival_s[rows])
    assert unit.duration_s == pytest.approx(whole.duration_s, rel=0.02)
    poisson = slice_traffic(fixed(1024, 128), 40.0, 300, 1, 8, "least_outstanding")
    assert len(poisson) == 300 and poisson.mean_rate_rps == pytest.approx(5.0, rel=0.15)


def test_goodput_search_is_monotone_and_verified():
    strategy = enumerate_strategies(M, "h100-sxm", 1, PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False))[0][0]
    work = fixed(1024, 128)
    loose = evaluate(strategy, work, Slo(2000, 100), 0.9, steps=5)
    tight = evaluate(strategy, work, Slo(500, 30), 0.9, steps=5)
    assert 0 < tight.goodput_rps <= loose.goodput_rps
    assert evaluate(strategy, work, Slo(2000, 100), 0.99, steps=5).goodput_rps <= loose.goodput_rps
    # re-simulation at the answer holds the target; well above it, it does not
    dep = build_deployment(strategy.deployment)
    n = int(max(300, loose.goodput_rps * 60))
    at = simulate(dep, work.at_rate(loose.goodput_rps, n), Slo(2000, 100)).summary()["slo"]["attainment"]
    above = simulate(dep, work.at_rate(1.5 * loose.goodput_rps, n), Slo(2000, 100)).summary()["slo"]["attainment"]
    assert at >= 0.9 > above
    rates = [c["rate_rps"] for c in loose.curve]
    att = [c["attainment"] for c in loose.curve]
    assert att[rates.index(loose.goodput_rps)] >= 0.9


def test_plan_ranks_by_objective_and_reports():
    opts = PlanOptions(tp_options=(1, 2), chunk_sizes=(1024,), ratios=((1, 1),))
    res = plan(M, "h100-sxm", 2, Slo(1000, 50), fixed(1024, 128), opts=opts, refine=3, workers=2,
               objective="goodput-per-dollar")
    scores = [res.score(r) for r in res.ranked]
    assert scores == sorted(scores, reverse=True)
    for r in res.ranked:  # the verified goodput is the search's answer or a step below it
        assert r.goodput_rps <= r.search_rps + 1e-12
        assert r.goodput_rps == 0 or r.verified_attainment >= 0.88
    rows = res.rows()
    assert rows[0]["rank"] == 1 and rows[0]["reason"] and math.isfinite(rows[0]["goodput_rps"])
    front = res.pareto()
    assert front and not any(p["stopped"] for p in front)  # only runs of every request
    refined = {r.strategy.name: r.curve for r in res.ranked}  # a refined strategy's points: its refined search's
    assert len(refined) == len(res.ranked) and any(r.strategy.name in refined for r in res.screened)
    assert all(p in refined[name] for name, p in res.whole_points() if name in refined)
    assert all(a["tokens_per_s_per_gpu"] >= b["tokens_per_s_per_gpu"] and
               a["tokens_per_s_per_user"] <= b["tokens_per_s_per_user"] for a, b in zip(front, front[1:]))


def test_local_pool_equals_serial():
    strategies, _ = enumerate_strategies(M, "h100-sxm", 2, PlanOptions(tp_options=(1,), chunk_sizes=(), ratios=((1, 1),)))
    tasks = [(s, fixed(512, 64), Slo(1000, 50), 0.9, 3, 10.0, 100) for s in strategies]
    serial = run_all(evaluate, tasks, workers=1)
    pooled = run_all(evaluate, tasks, workers=2)
    assert [r.goodput_rps for r in serial] == [r.goodput_rps for r in pooled]


def test_ray_backend_matches_local():
    ray = pytest.importorskip("ray")
    strategies, _ = enumerate_strategies(M, "h100-sxm", 2, PlanOptions(tp_options=(1,), chunk_sizes=(), ratios=((1, 1),)))
    tasks = [(s, fixed(512, 64), Slo(1000, 50), 0.9, 3, 10.0, 100) for s in strategies]
    try:
        remote = run_all(evaluate, tasks, backend="ray")
    finally:
        ray.shutdown()
    local = run_all(evaluate, tasks, workers=1)
    assert [r.goodput_rps for r in remote] == [r.goodput_rps for r in local]
    assert [r.curve for r in remote] == [r.curve for r in local]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--slo-ttft-ms", "0"], "--slo-ttft-ms must be > 0"),
        (["--slo-tbt-ms", "-5"], "--slo-tbt-ms must be > 0"),
        (["--gpus", "2", "--tp-options", "4,8"], "needs more GPUs per instance than --gpus 2"),
        (["--objective", "goodput-per-parsec"], "--objective 'goodput-per-parsec' is not one of"),
        (["--attainment", "1.5"], "--attainment must be in (0, 1]"),
        (["--tp-options", "a,b"], "--tp-options must be comma-separated integers"),
        (["--backend", "slurm", "--gpus", "1"], "--backend 'slurm' is not one of"),
        (["--model", "no/such-model"], "unknown model"),
        (["--hardware", "a100-sxm-80gb", "--precisions", "fp8"], "no fp8 compute path"),
        # found by a fuzz of every flag (tracebacks) or ignored without a word before
        (["--isl", "nan"], "--isl must be a finite number of tokens >= 1 (got nan)"),
        (["--seed", "-1"], "--seed must be >= 0 (got -1)"),
        (["--gpus", "1", "--workers", "0"], "--workers must be >= 1 (got 0)"),
        (["--isl-dist", "uniform"], "--isl-dist uniform needs --isl/--osl"),
        (["--isl", "500", "--isl-spread", "0.3"], "--isl-spread applies to --isl-dist uniform or lognormal"),
        (["--osl", "1e9"], "--isl + --osl = 1e+09 tokens exceed the model's 131,072-token context"),  # ran forever
    ],
)
def test_plan_bad_input(run_cli, args, message):
    code, _, err = run_cli("plan", *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_plan_cli_json_and_report(run_cli, tmp_path):
    report = tmp_path / "r.html"
    code, out, err = run_cli("plan", "--gpus", "2", "--tp-options", "1", "--chunk-sizes", "512", "--no-disagg",
                             "--isl", "512", "--osl", "64", "--top", "2", "--workers", "1", "--json",
                             "--report", str(report))
    assert code == 0, err
    d = json.loads(out)
    assert d["rows"][0]["goodput_rps"] > 0 and report.exists() and report.stat().st_size > 100_000


def test_sweep_writes_grid(run_cli, tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("models: [meta-llama/Llama-3.1-8B]\nhardware: [h100-sxm, a100-sxm-80gb, spad-decode-chip]\ngpus: 1\n"
                   "workloads: [{name: short, isl: 512, osl: 64}]\nslo: {ttft_ms: 1000, tbt_ms: 50}\n"
                   "strategies: {tp_options: [1], chunk_sizes: [512], disaggregated: false}\n")
    out = tmp_path / "s.csv"
    code, _, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code == 0, err
    lines = out.read_text().splitlines()
    # per hardware: vLLM with its default budget, chunked at 512, and V0 prefill-first, at b256 and (as plan without
    # --batch-caps) the engine's own cap where it differs: vLLM's 1,024 on the 80 GB chips, not spad-decode-chip's
    assert len(lines) == 1 + 5 + 5 + 3 and lines[0].startswith("model,hardware,workload,strategy")
    # each row's cluster TDP and goodput per kW; a hardware cost for the chip built from parts only
    for row in csv.DictReader(lines):
        chip = load_hardware(row["hardware"])
        assert float(row["cluster_tdp_w"]) == pytest.approx(chip.tdp_w)
        assert float(row["search_rps_per_kw"]) == pytest.approx(float(row["search_rps"]) / (chip.tdp_w / 1e3))
        cost = float(row["cluster_cost_usd"])
        if chip.parts is None:
            assert math.isnan(cost) and math.isnan(float(row["search_rps_per_1k_usd"]))
        else:
            assert cost == pytest.approx(hardware_cost_usd(chip))
            assert float(row["search_rps_per_1k_usd"]) == pytest.approx(float(row["search_rps"]) / (cost / 1e3))
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [m]\nhardware: [h100-sxm]\nworkloads: [{name: a}]\nstrategies: {tp: [1]}\n")
    code, _, err = run_cli("sweep", str(bad), "--out", str(out))
    assert code == 2 and "strategies.tp is not an option" in err


def test_sweep_out_is_checked_before_the_sweep_and_its_folder_made(run_cli, tmp_path, monkeypatch):
    """`sweep --out` into a folder that does not exist makes it (as plan's --report does; it was a FileNotFoundError
    traceback after the whole sweep), a folder or an unwritable place is one line before any evaluation, and
    `--ray-address` without `--backend ray` is refused, not ignored."""
    import phasewise.plan.sweep as sweep

    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("models: [meta-llama/Llama-3.1-8B]\nhardware: [h100-sxm]\ngpus: 1\n"
                   "workloads: [{name: short, isl: 512, osl: 64}]\nslo: {ttft_ms: 1000, tbt_ms: 50}\n"
                   "strategies: {tp_options: [1], chunk_sizes: [512], disaggregated: false}\n")
    out = tmp_path / "new" / "deeper" / "s.csv"
    code, printed, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code == 0 and out.exists() and len(out.read_text().splitlines()) == 1 + 5, err  # b256 and b1024
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: pytest.fail("the sweep ran before --out was checked"))
    (tmp_path / "folder.csv").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    for where, words in ((tmp_path / "folder.csv", "Is a directory"), (tmp_path / "grid.txt", "must end in .csv"),
                         (blocker / "s.csv", "cannot write")):
        if words == "cannot write":  # a file where the folder goes: found when the rows are written
            monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: [{"model": "m"}])
        code, _, err = run_cli("sweep", str(cfg), "--out", str(where))
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kwargs, message", [
    (dict(ray_address="ray://head:10001"), "--ray-address names a Ray cluster: it needs --backend ray"),
    (dict(backend="ray", ray_address="ray://head:10001", workers=2),
     "with --ray-address 'ray://head:10001' the cluster's own CPUs"),
])
def test_backend_flags_that_would_go_unused_are_refused(kwargs, message):
    with pytest.raises(PhasewiseError, match=message):
        run_all(abs, [(-1,)], **kwargs)


@pytest.mark.parametrize("strategies, message", [
    ("{tp_options: abc}", "strategies: tp_options: Input should be a valid tuple"),
    ("{tp_options: 0}", "strategies: tp_options: Input should be a valid tuple"),
    ("{chunk_sizes: [abc]}", "strategies: chunk_sizes.0: Input should be a valid integer"),
    ("{tp_options: [0]}", "strategies.tp_options must list integers >= 1"),
    ("{ratios: [[1, 0]]}", "strategies.ratios must list [prefill, decode] instance counts >= 1"),
    ("{spec_acceptance: .nan}", "strategies.spec_acceptance holds NaN"),
    ("{memory_fraction: 2}", "strategies.memory_fraction must be in (0, 1]"),
])
def test_sweep_strategies_are_checked_as_plans_flags_are(run_cli, tmp_path, strategies, message):
    """A sweep's `strategies:` options take PlanOptions' types and plan's flags' ranges: each wrong one is one line
    naming it (benchmarks/fuzz_files.py found text, a number for a list and a list for a number failing with
    TypeErrors in the search)."""
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("models: [meta-llama/Llama-3.1-8B]\nhardware: [h100-sxm]\ngpus: 1\n"
                   f"workloads: [{{name: short, isl: 512, osl: 64}}]\nstrategies: {strategies}\n")
    code, _, err = run_cli("sweep", str(cfg), "--out", str(tmp_path / "s.csv"), "--workers", "1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_trace_arrivals_are_replayed_and_bursts_lower_goodput():
    from phasewise.plan.goodput import workload_spec

    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=False)
    poisson = plan(M, "h100-sxm", 1, Slo(1000, 50), workload_spec("azure-code", "poisson", None, None, "fixed",
                                                                   "fixed", 0, 0, 0), opts=opts, refine=1, workers=1)
    bursty = plan(M, "h100-sxm", 1, Slo(1000, 50), workload_spec("azure-code", "trace", None, None, "fixed",
                                                                  "fixed", 0, 0, 0), opts=opts, refine=1, workers=1)
    # the Azure coding trace arrives in bursts (gap CV ~13): replayed, the SLOs break far earlier
    assert 0 < bursty.ranked[0].goodput_rps < 0.5 * poisson.ranked[0].goodput_rps
    assert "capacity" not in bursty.ranked[0].binding  # bursts are not read as a growing backlog


def test_verification_climbs_above_the_search_where_instances_share_a_router():
    """verify: at a rate well inside what 2 replicas behind least-outstanding hold, the answer climbs in 10 % steps
    (up to 1.1^6 x) and says so; a lone instance (searched whole) keeps the rate it was given; a rate that does not
    hold steps down until one does (tests/test_plan_slo_monotone.py: to 5 % of it)."""
    from phasewise.plan.planner import VERIFY_CLIMB, VERIFY_CLIMB_STEPS, verify

    work, slo = fixed(1024, 128), Slo(1000, 50)
    one_dep = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    two_dep = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 2}]}
    two = Strategy("2x TP1", two_dep, one_dep, 2, 2, "collocated")
    one = Strategy("1x TP1", one_dep, one_dep, 1, 1, "collocated")
    rate, att, run = verify(two, 4.0, work, slo, 0.9)
    assert 4.0 * VERIFY_CLIMB <= rate <= 4.0 * VERIFY_CLIMB ** VERIFY_CLIMB_STEPS * 1.0001 and run.rate_rps == rate
    assert att >= 0.88
    assert verify(one, 2.0, work, slo, 0.9)[0] == 2.0
    stepped, _, lower = verify(two, 400.0, work, slo, 0.9)  # 10 x what they hold: the 0.1 step holds, 0.15 not
    assert stepped == pytest.approx(40.0) and lower.binding_rps == pytest.approx(60.0)


def test_every_strategy_is_its_unit_times_its_units():
    """Strategy.slice: the unit's groups scaled by `units` are the whole deployment, for every kind the planner
    enumerates (collocated, disaggregated xPyD, priority pools, attention offload, each router), so a slice of the
    fleet is the same deployment, smaller."""
    opts = PlanOptions(tp_options=(1, 2), policies=("priority-pools", "attention-offload"),
                       routers=("least_outstanding", "round_robin"))
    strategies, _ = enumerate_strategies(M, "h100-sxm", 12, opts)
    assert {s.kind for s in strategies} == {"collocated", "disaggregated"}
    assert any("priority_pools" in s.deployment for s in strategies)
    for s in strategies:
        assert s.slice(s.units) == s.deployment, s.name
        built = build_deployment(s.slice(1))
        assert sum(g.replicas for g in built.instances) == s.instances_per_unit


def test_large_fleets_verify_on_a_slice_that_errs_low(monkeypatch):
    """slice_units: past SLICE_INSTANCES instances the verification simulates the fewest whole units that hold that
    many, at their share of the rate. Here the slice threshold is lowered to 4 instances of a 16-instance fleet: the
    slice's verified goodput is within 15 % of the whole fleet's and not above it by more than the verification's
    sampling noise; the run says what it simulated, and the report's timeline re-runs the slice."""
    import phasewise.plan.goodput as goodput
    from phasewise.plan.goodput import slice_units
    from phasewise.plan.planner import verify

    one = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    fleet = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 16}]}
    strategy = Strategy("16x TP1", fleet, one, 16, 16, "collocated")
    work, slo = fixed(1024, 128), Slo(1000, 50)
    assert slice_units(strategy, work) == 16  # under the default threshold: the whole fleet
    whole_rate, _, whole = verify(strategy, 16 * 2.5, work, slo, 0.9)
    assert whole is not None and not whole.sliced and whole.deployment == fleet
    monkeypatch.setattr(goodput, "SLICE_INSTANCES", 4)
    assert slice_units(strategy, work) == 4
    slice_rate, att, part = verify(strategy, 16 * 2.5, work, slo, 0.9)
    assert part is not None and part.sliced and (part.units_simulated, part.units) == (4, 16)
    assert part.simulated_rate_rps == pytest.approx(slice_rate / 4)
    assert sum(g["replicas"] for g in part.deployment["instances"]) == 4
    assert 0.85 * whole_rate <= slice_rate <= 1.05 * whole_rate
    rebuilt = simulate(build_deployment(part.deployment), part.workload(work), slo)
    assert np.array_equal(rebuilt.ttft_s[rebuilt.measured_mask] * 1e3, part.ttft_ms, equal_nan=True)


def test_goodput_per_watt_divides_by_the_whole_deployments_power():
    """The per-watt objective's power is every GPU's (the search ran one unit; its power times the units, the
    verification run's scaled from its slice): between the cluster's idle and TDP power, for four units or eight."""
    opts = PlanOptions(tp_options=(1, 2), chunk_sizes=(), disaggregated=False)
    result = plan(M, "h100-sxm", 8, Slo(1000, 50), fixed(1024, 128), objective="goodput-per-watt", opts=opts,
                  refine=2, workers=1)
    hw = load_hardware("h100-sxm")
    assert {r.strategy.units for r in result.screened} == {4, 8}
    assert all(r.verified is None for r in result.screened) and result.ranked[0].verified is not None
    for r in result.screened + result.ranked:  # the search's power times its units; the verification run's
        assert hw.idle_w * 8 <= r.power_w() <= hw.tdp_w * 8, r.strategy.name
        assert result.score(r) == pytest.approx(r.goodput_rps / r.power_w())


def test_a_prefix_trace_is_searched_and_verified_on_a_slice_of_whole_conversations(monkeypatch):
    """Past SLICE_INSTANCES instances a workload with prefix structure is searched and verified on a slice too; behind
    prefix_aware the slice receives whole conversations; the verification run rebuilds exactly (report timeline)."""
    import phasewise.plan.goodput as goodput
    from phasewise.plan.goodput import workload_spec
    from phasewise.plan.planner import verify

    monkeypatch.setattr(goodput, "SLICE_INSTANCES", 2)
    one = {"model": M, "router": "prefix_aware",
           "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    fleet = dict(one, instances=[dict(one["instances"][0], replicas=8)])
    strategy = Strategy("8x TP1", fleet, one, 8, 8, "collocated")
    work, slo = workload_spec("mooncake", "poisson", None, None, "fixed", "fixed", 0, 0, 0), Slo(2000, 50)
    searched = evaluate(strategy, work, slo, 0.9, steps=2, window_s=20.0, min_requests=100)
    assert searched.search_units == 2 and searched.goodput_rps > 0
    rate, _, run = verify(strategy, searched.goodput_rps, work, slo, 0.9)
    assert run is not None and (run.units_simulated, run.units) == (2, 8)
    assert run.simulated_rate_rps == pytest.approx(rate / 4)
    rebuilt = simulate(build_deployment(run.deployment), run.workload(work), slo)
    assert np.array_equal(rebuilt.ttft_s[rebuilt.measured_mask] * 1e3, run.ttft_ms, equal_nan=True)


def test_a_budget_beyond_a_groups_instances_prunes_only_the_strategies_that_need_more():
    """A deployment holds at most MAX_REPLICAS instances a group: at 20,000 GPUs the TP1 strategies (20,000
    instances) are pruned with the reason, the TP2 ones (10,000) remain, and the plan answers (verified on slices)."""
    from phasewise.sim.deployment import MAX_REPLICAS

    strategies, pruned = enumerate_strategies(M, "h100-sxm", 2 * MAX_REPLICAS,
                                              PlanOptions(tp_options=(1, 2), chunk_sizes=(), disaggregated=False))
    assert strategies and all(s.details["tp"] == 2 for s in strategies)
    assert any(f"{2 * MAX_REPLICAS:,} instances in one group" in line for line in pruned)
    for s in strategies:
        build_deployment(s.deployment)  # within the bound


def test_a_fleet_no_deployment_can_hold_says_so_and_how_to_plan_it():
    with pytest.raises(PhasewiseError, match=r"needs more than a deployment's 10,000 instances in a group .*"
                                             r"at TP2, --gpus 20,000 at most"):
        enumerate_strategies(M, "h100-sxm", 100_000, PlanOptions(tp_options=(1, 2), chunk_sizes=(),
                                                                  disaggregated=False, tp_across_nodes=False))


def test_several_engines_compete_in_one_ranking():
    """--engine vllm,sglang: each engine's strategies, named after it and deploying it, in one list; the plan ranks
    them together and its best runs the engine its name says."""
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(1024,), ratios=((1, 1),), engine="vllm,sglang")
    strategies, _ = enumerate_strategies(M, "h100-sxm", 2, opts)
    for engine in ("vllm", "sglang"):
        mine = [s for s in strategies if s.name.startswith(engine + " ")]
        # (vLLM's plan also tries its V0 prefill-first scheduler, vllm-v0, as a variant)
        assert mine and all(g["engine"].split("-")[0] == engine for s in mine for g in s.deployment["instances"])
        assert all(s.details["engine"] == engine for s in mine)
    assert len({s.name for s in strategies}) == len(strategies)
    one, _ = enumerate_strategies(M, "h100-sxm", 2, PlanOptions(tp_options=(1,), chunk_sizes=(1024,),
                                                                ratios=((1, 1),), engine="sglang"))
    assert {f"sglang {s.name}" for s in one} == {s.name for s in strategies if s.name.startswith("sglang ")}
    res = plan(M, "h100-sxm", 2, Slo(1000, 50), fixed(1024, 128), opts=opts, refine=2, workers=1)
    best = res.ranked[0].strategy
    assert {g["engine"].split("-")[0] for g in best.deployment["instances"]} == {best.name.split()[0]}


@pytest.mark.parametrize("engine, message", [("vllm,,sglang", "an empty name"), ("vllm,vllm", "names vllm twice"),
                                             ("vllm,nosuch", "unknown engine 'nosuch'")])
def test_plan_engine_lists_are_checked(engine, message):
    with pytest.raises(PhasewiseError, match=message):
        enumerate_strategies(M, "h100-sxm", 2, PlanOptions(tp_options=(1,), engine=engine))


def test_no_engine_in_the_list_fits_is_one_error_naming_them():
    with pytest.raises(PhasewiseError, match="no strategy fits with any of vllm, sglang: vllm: no strategy fits"):
        enumerate_strategies("meta-llama/Llama-3.1-70B", "l40s", 1, PlanOptions(tp_options=(1,), engine="vllm,sglang"))


def test_the_rate_search_never_answers_a_rate_it_did_not_try():
    """A bracket whose every doubling attains answers the last rate it tried, not the next doubling."""
    from phasewise.plan.goodput import highest_rate

    tried = []

    def attains(rate):
        tried.append(rate)
        return rate <= 100

    lo, hi = highest_rate(attains, 10.0, 6)
    assert lo in tried and 100 >= lo > 90 and hi > 100
    lo, hi = highest_rate(lambda rate: True, 1.0, 6)  # never fails: the last tried, 2^7
    assert (lo, hi) == (128.0, 256.0)


def test_verification_climbs_only_where_it_runs_more_units_than_the_search():
    """The climb above the search's rate rests on more units sharing their bursts behind the router: verifying the
    very deployment the search ran (one unit) never reports more than the rate the search found."""
    from phasewise.plan.planner import VERIFY_CLIMB, verify

    one = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    strategy = Strategy("1x TP1", one, one, 1, 1, "collocated")
    work, slo = fixed(1024, 128), Slo(1000, 50)
    rate, _, run = verify(strategy, 2.0, work, slo, 0.9)  # a rate one GPU holds with room to spare
    assert run is not None and rate == pytest.approx(2.0)
    two = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 2}]}
    pair = Strategy("2x TP1", two, one, 2, 2, "collocated")
    climbed, _, _ = verify(pair, 4.0, work, slo, 0.9)  # the search ran one of the two units
    assert climbed >= 4.0 * VERIFY_CLIMB * 0.999
    same, _, _ = verify(pair, 4.0, work, slo, 0.9, search_units=2)  # the search ran both: no climb
    assert same == pytest.approx(4.0)


def test_a_slice_holds_its_share_of_the_clusters_kv_store():
    unit = {"model": M, "kv_store_bytes": 1e12,
            "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    strategy = Strategy("64x TP1", {**unit, "instances": [{**unit["instances"][0], "replicas": 64}]}, unit, 64, 64,
                        "collocated")
    assert strategy.slice(32)["kv_store_bytes"] == pytest.approx(5e11)
    assert strategy.slice(64) == strategy.deployment


@pytest.mark.parametrize("extra, workload, message", [
    ("", "{name: short, isl: 512, osl: 64}", "sweep needs at least one SLO"),
    ("slo: {ttft_ms: 1000}\n", "{name: huge, isl: 200000, osl: 128}",
     "workload 'huge': isl + osl = 200128 tokens exceed meta-llama/Llama-3.1-8B's 131,072-token context"),
])
def test_sweep_refuses_what_plan_refuses(run_cli, tmp_path, extra, workload, message):
    """Without an SLO a sweep's 'goodput' is only capacity, and a request past the model's context never runs:
    plan refuses both, and the sweep now does too (it wrote rows for them)."""
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"models: [meta-llama/Llama-3.1-8B]\nhardware: [h100-sxm]\ngpus: 1\nworkloads: [{workload}]\n"
                   f"{extra}strategies: {{tp_options: [1], chunk_sizes: [512], disaggregated: false}}\n")
    code, _, err = run_cli("sweep", str(cfg), "--out", str(tmp_path / "s.csv"), "--workers", "1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
