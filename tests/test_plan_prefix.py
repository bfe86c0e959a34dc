"""plan on a trace with prefix structure (Mooncake hash_ids): the requests keep the trace's order and prefixes, the
capacity bracket counts what an unbounded cache would serve, a deployment of several units is searched whole (which
cache a request finds depends on the router), the rows report the hit rate, and --router is a plan option."""

from dataclasses import replace

import numpy as np
import pytest

from phasewise.apps.report import write_report
from phasewise.errors import PhasewiseError
from phasewise.plan import PlanOptions, enumerate_strategies, evaluate, plan
from phasewise.plan.goodput import capacity_estimate, workload_spec
from phasewise.sim import Slo
from phasewise.workload import load_trace, prefix_copy, prefix_stride

M = "meta-llama/Llama-3.1-8B"


def mooncake(arrivals: str = "poisson", seed: int = 0):
    return workload_spec("mooncake", arrivals, None, None, "fixed", "fixed", 0.0, 0.0, seed)


def token_share(trace) -> float:
    """Prompt tokens in full 512-token blocks whose prefix (the ids up to the block) an earlier prompt had, over all
    prompt tokens: computed from the ids as tuples, apart from workload/mooncake.py's chained hashes."""
    seen, reused = set(), 0
    for ids, tokens in zip(trace.prefix_hashes, trace.prompt_tokens):
        for j in range(min((int(tokens) - 1) // 512, len(ids))):
            reused += 512 * (tuple(ids[: j + 1]) in seen)
            seen.add(tuple(ids[: j + 1]))
    return reused / int(np.sum(trace.prompt_tokens))


def test_a_prefix_trace_keeps_its_order_and_prefixes():
    trace, work = load_trace("mooncake"), mooncake(seed=3)
    assert work.prefix_hashes == tuple(trace.prefix_hashes)
    assert work.reusable_share == pytest.approx(token_share(trace)) and 0.05 < work.reusable_share < 0.5
    assert "prefixes" in work.name
    n = len(trace)
    drawn = work.at_rate(2.0, n + 40)  # a window of the trace in its order, from a seeded start, wrapping into a
    # second pass whose prefix blocks are its own (new conversations, not hits on the first pass's)
    stride = prefix_stride(trace.prefix_hashes)
    start = next(i for i in range(n) if all(
        drawn.prefix_hashes[j] == prefix_copy(trace.prefix_hashes[(i + j) % n], (i + j) // n, stride)
        for j in range(n + 40)))
    rows = (start + np.arange(n + 40)) % n
    second = [j for j in range(n + 40) if start + j >= n]
    assert second and not {h for j in second for h in drawn.prefix_hashes[j]} & set().union(*trace.prefix_hashes)
    assert np.array_equal(drawn.prompt_tokens, trace.prompt_tokens[rows])
    assert np.array_equal(drawn.output_tokens, trace.output_tokens[rows])
    assert start != next(i for i in range(n) if mooncake(seed=4).at_rate(2.0, 5).prefix_hashes[0]
                         == trace.prefix_hashes[i])  # another seed, another window (verification's fresh draw)
    replay = mooncake("trace").at_rate(2.0, 10)  # the trace's own arrivals: every request, hashes kept
    assert replay.prefix_hashes == list(trace.prefix_hashes) and len(replay) == n


def test_capacity_counts_the_reusable_prompt_tokens_where_engines_cache_prefixes():
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False)
    strategy = next(s for s in enumerate_strategies(M, "h100-sxm", 2, opts)[0] if "default" in s.name)
    work = mooncake()
    plain = replace(work, reusable_share=0.0)
    assert capacity_estimate(strategy, work) > 1.03 * capacity_estimate(strategy, plain)  # 16 % of prompt tokens
    off = replace(strategy, deployment={**strategy.deployment, "instances": [
        {**g, "prefix_caching": False} for g in strategy.deployment["instances"]]})
    assert capacity_estimate(off, work) == pytest.approx(capacity_estimate(off, plain))


def test_plan_searches_a_prefix_trace_on_the_whole_deployment_and_reports_its_hits(tmp_path):
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False, routers=("prefix_aware",))
    strategy = next(s for s in enumerate_strategies(M, "h100-sxm", 2, opts)[0] if "default" in s.name)
    assert strategy.units == 2 and strategy.deployment["router"] == "prefix_aware"
    found = evaluate(strategy, mooncake(), Slo(3000, 100), steps=2, window_s=20.0, min_requests=60)
    assert found.at_goodput["prefix_cache"]["instances"] == 2  # both units, behind the router
    res = plan(M, "h100-sxm", 2, Slo(3000, 100), mooncake(), opts=replace(opts, routers=("least_outstanding",)),
               refine=1, workers=1)
    row = res.rows()[0]
    assert row["deployment"]["router"] == "least_outstanding" and 0 < row["prefix_hit_rate"] < 1
    page = write_report(res, {}, tmp_path / "plan.html").read_text()
    assert "prefix hits % of prompt tokens" in page and f"<td>{row['prefix_hit_rate']:.1%}</td>" in page


def test_bad_router_is_one_line(run_cli):
    with pytest.raises(PhasewiseError, match="--router 'nearest' is not one of round_robin, random, least_outstanding"):
        enumerate_strategies(M, "h100-sxm", 2, PlanOptions(routers=("nearest",)))
    code, _, err = run_cli("plan", "--gpus", "1", "--router", "nearest")
    assert code == 2 and err.strip().count("\n") == 0 and "--router 'nearest'" in err


def test_several_routers_are_tried_behind_every_multi_instance_strategy(run_cli):
    opts = PlanOptions(tp_options=(1, 2), chunk_sizes=(), disaggregated=False,
                       routers=("least_outstanding", "prefix_aware"))
    strategies = {s.name: s for s in enumerate_strategies(M, "h100-sxm", 2, opts)[0]}
    two = [n for n in strategies if n.startswith("2x TP1")]
    assert two and all(n.endswith((" via least_outstanding", " via prefix_aware")) for n in two)
    assert {strategies[n].deployment["router"] for n in two} == {"least_outstanding", "prefix_aware"}
    assert all(strategies[n].unit["router"] == strategies[n].deployment["router"] for n in two)
    one = [n for n in strategies if n.startswith("1x TP2")]  # one instance: nothing to route, tried once
    assert one and not any(" via " in n for n in one)
    code, out, err = run_cli("plan", "--gpus", "2", "--tp-options", "1", "--no-disagg", "--chunk-sizes", "512",
                             "--isl", "512", "--osl", "64", "--top", "2", "--workers", "1",
                             "--router", "least_outstanding,prefix_aware", "--json")
    assert code == 0, err
    assert " via " in out


def test_a_trace_replayed_past_its_end_does_not_hit_its_own_first_pass():
    """Drawn or replayed beyond its length, a prefix trace's later passes are new conversations: the share of
    prompt blocks an earlier request held stays the trace's own, not growing with every pass."""
    trace = load_trace("mooncake")
    n = len(trace)

    def block_hits(hashes) -> float:
        seen, hits, blocks = set(), 0, 0
        for ids in hashes:
            hits += sum(h in seen for h in ids)
            blocks += len(ids)
            seen.update(ids)
        return hits / blocks

    own = block_hits(trace.prefix_hashes)
    for arrivals in ("poisson", "trace"):
        drawn = mooncake(arrivals).at_rate(20.0, 3 * n)
        assert len(drawn) == 3 * n and block_hits(drawn.prefix_hashes) == pytest.approx(own, abs=0.03)

