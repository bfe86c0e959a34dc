"""The planner's MoE strategies as the engines run them: caps and token budgets written as each engine's flags read
them (per attention-DP rank on vLLM and TensorRT-LLM, per instance on SGLang) with each engine's own default cap
among the candidates; the wide-EP layout over whole nodes; layouts refused on engines without expert or
attention-data parallelism and on dense models, in one line naming the flag (per role where the role has its own);
tokens/s per GPU in a plan's rows as its goodput's."""

from __future__ import annotations

import math

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan import PlanOptions, WorkloadSpec, enumerate_strategies, plan
from phasewise.sim import Slo
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware

R1 = "deepseek-ai/DeepSeek-R1"
KIMI = "moonshotai/Kimi-K2-Instruct"
LLAMA = "meta-llama/Llama-3.1-8B"


def _groups(strategies, prefix: str) -> list[dict]:
    return next(s.deployment["instances"] for s in strategies if s.name.startswith(prefix))


def test_plan_caps_and_budgets_are_each_engines_flags_per_rank_where_the_engine_reads_them_so():
    """vLLM runs one engine core per --data-parallel-size rank with its own --max-num-seqs and
    --max-num-batched-tokens, TensorRT-LLM's attention-DP ranks each their own max_batch_size / max_num_tokens;
    SGLang divides --max-running-requests and --chunked-prefill-size over its ranks itself. A cap of 256 and a budget
    of 2,048 are those flags' values on every layout: DP8EP8 under vLLM is exported with 256 sequences and 2,048
    tokens a rank (before: 32 and 256, the instance's values over 8), named so, and its decode instances too."""
    opts = PlanOptions(tp_options=(8,), precisions=("fp8",), chunk_sizes=(2048,), ratios=((1, 1),),
                       tp_across_nodes=False)
    vllm, _ = enumerate_strategies(R1, "h200-sxm", 16, opts)
    dp = _groups(vllm, "2x TP8 DP8EP8 chunked 2048/rank b256/rank")[0]
    assert (dp["attention_dp"], dp["max_num_seqs"], dp["max_num_batched_tokens"]) == (8, 256, 2048)
    assert _groups(vllm, "2x TP8 EP8 chunked 2048 b256")[0]["max_num_seqs"] == 256
    assert _groups(vllm, "1P(TP8 DP8EP8) 1D(TP8 DP8EP8)")[1]["max_num_seqs"] == 256
    # the smallest budget a rank takes, one decode step of its cap, is tried beside the named ones (ranks step
    # together: a rank's prefill chunk holds up every rank's decodes)
    assert _groups(vllm, "2x TP8 DP8EP8 chunked 256/rank b256/rank")[0]["max_num_batched_tokens"] == 256
    trt, _ = enumerate_strategies(R1, "h200-sxm", 16, _with(opts, engine="trtllm"))
    g = _groups(trt, "2x TP8 DP8EP8 chunked 2048/rank b256/rank")[0]
    assert (g["max_batch_size"], g["max_num_tokens"], g["cuda_graph_max_batch_size"]) == (256, 2048, 256)
    sgl, _ = enumerate_strategies(R1, "h200-sxm", 16, _with(opts, engine="sglang"))
    g = _groups(sgl, "2x TP8 DP8EP8 chunked 2048 b256")[0]  # the instance's: no '/rank'
    assert (g["max_running_requests"], g["chunked_prefill_size"]) == (256, 2048)
    # the simulator reads them as the engines do: 8 vLLM ranks of 256 hold 2,048 sequences
    from phasewise.sim.simulate import build_group

    dep = build_deployment(_groups_deployment(vllm, "2x TP8 DP8EP8 chunked 2048/rank b256/rank"))
    engine = build_group(dep, dep.instances[0], 0)[3]
    assert (engine.max_seqs, engine.prefill_rank_tokens) == (8 * 256, 2048)


def _with(opts: PlanOptions, **changes) -> PlanOptions:
    from dataclasses import replace

    return replace(opts, **changes)


def _groups_deployment(strategies, prefix: str) -> dict:
    return next(s.deployment for s in strategies if s.name.startswith(prefix))


@pytest.mark.parametrize("engine, own, label", [("vllm", 1024, "b1024/rank"), ("trtllm", 2048, "b2048/rank"),
                                                ("sglang", None, "bauto")])
def test_the_default_caps_include_each_engines_own(engine, own, label):
    """Without --batch-caps a plan tries 256 and the cap the engine runs with when its flag is not given (vLLM 0.14:
    1,024 sequences a rank on a GPU of 70 GB or more; TensorRT-LLM 1.1: 2,048 a rank; SGLang: unset, sized by its KV
    pool), so a DP layout runs at the batch the engine would; its disaggregated decode instances take it too."""
    from phasewise.plan.scheduling_variants import plan_caps

    opts = PlanOptions(tp_options=(8,), precisions=("fp8",), chunk_sizes=(), ratios=((1, 1),), engine=engine,
                       tp_across_nodes=False, engine_default_cap=True)
    assert plan_caps(opts, load_hardware("h200-sxm")) == [256, own]
    assert plan_caps(_with(opts, engine_default_cap=False), load_hardware("h200-sxm")) == [256]
    strategies, _ = enumerate_strategies(R1, "h200-sxm", 16, opts)
    names = [s.name for s in strategies]
    assert any(f"DP8EP8 {engine} default {label} " in n for n in names), names
    decode = _groups(strategies, "1P(TP8 DP8EP8) 1D(TP8 DP8EP8)")[1]
    cap_knob = {"vllm": "max_num_seqs", "trtllm": "max_batch_size", "sglang": "max_running_requests"}[engine]
    assert decode.get(cap_knob) == own


def test_sglangs_unset_running_requests_are_each_attention_dp_ranks_own():
    """SGLang without --max-running-requests: each DP-attention rank's scheduler takes min(its KV pool // 2, its
    request pool) (tp_worker.py), so an instance of 8 ranks holds 8 times a rank's (before: one rank's 4,096 for the
    whole instance); one rank as before."""
    from phasewise.specs.engines import SGLANG_REQUEST_POOL, resolve_engine

    hw = load_hardware("h200-sxm")
    ranks = resolve_engine("sglang", hw, attention_dp=8, kv_capacity_tokens=8 * 100_000)
    assert ranks.max_seqs == 8 * SGLANG_REQUEST_POOL
    assert resolve_engine("sglang", hw, attention_dp=8, kv_capacity_tokens=8 * 2_000).max_seqs == 8 * 1_000
    assert resolve_engine("sglang", hw, kv_capacity_tokens=2_000).max_seqs == 1_000
    assert resolve_engine("sglang", hw, {"max_running_requests": 256}, attention_dp=8).max_seqs == 256  # the instance's


def test_plan_cli_defaults_to_the_engines_own_cap_and_keeps_named_caps(monkeypatch):
    """`plan` without --batch-caps sets engine_default_cap; named caps are kept as given."""
    import phasewise.plan as plan_module
    from phasewise.apps import cli

    seen = []

    def fake_plan(*args, opts=None, **kwargs):
        seen.append(opts)
        raise PhasewiseError("stop")

    monkeypatch.setattr(plan_module, "plan", fake_plan)
    for extra in ([], ["--batch-caps", "64"]):
        monkeypatch.setattr("sys.argv", ["phasewise", "plan", "--model", R1, "--hardware", "h200-sxm", "--gpus",
                                         "16", *extra])
        with pytest.raises(SystemExit):
            cli.main()
    assert [(o.batch_caps, o.engine_default_cap) for o in seen] == [((256,), True), ((64,), False)]


def test_a_moe_model_within_one_node_also_tries_its_wide_ep_layout_across_nodes():
    """Kimi-K2 fits one 8 x H200 node, and served over 16 GPUs in the wide-EP layout (attention DP16, experts EP16)
    it beats two TP8 replicas by far: with --tp-options at its default the planner tries TP16 in that layout (not
    pure TP16 or TP-attention EP16 across nodes, an all-reduce over RDMA a layer), saying so; named --tp-options
    are kept as given, and an engine without expert parallelism gets none."""
    from phasewise.plan.strategies import WIDE_EP

    opts = PlanOptions(precisions=("fp8-block",), chunk_sizes=(), disaggregated=False)
    strategies, pruned = enumerate_strategies(KIMI, "h200-sxm", 16, opts)
    wide = [s for s in strategies if s.details["tp"] == 16]
    assert wide and all(s.details.get("attention_dp") == 16 and s.details.get("ep") == 16 for s in wide)
    assert {s.details["tp"] for s in strategies} == {8, 16} and pruned[0].startswith(WIDE_EP)
    named, _ = enumerate_strategies(KIMI, "h200-sxm", 16, _with(opts, tp_across_nodes=False))
    assert {s.details["tp"] for s in named} == {8}
    assert not any(s.details["tp"] == 16 for s in enumerate_strategies(KIMI, "h200-sxm", 16,
                                                                       _with(opts, engine="vllm-v0"))[0])
    dense, _ = enumerate_strategies(LLAMA, "h200-sxm", 16, opts)
    assert max(s.details["tp"] for s in dense) == 8


def test_the_wide_ep_layout_is_also_tried_with_deepep_where_the_engine_has_its_knob():
    """Across two nodes the engines' default exchange gathers every rank's tokens; vLLM and SGLang also run DeepEP's
    all-to-all there (vLLM's docs: deepep_high_throughput for multi-node prefill, deepep_low_latency for decode), so
    the planner tries the wide-EP layout both ways, each role with its choice, a disaggregated pair with DeepEP on
    both roles or neither; within one board (TP8) the default alone; TensorRT-LLM, which chooses its own, none."""
    from phasewise.plan.instance_fit import role_layouts

    opts = PlanOptions(precisions=("fp8-block",), chunk_sizes=(), disaggregated=False)
    vllm, _ = enumerate_strategies(R1, "h200-sxm", 16, opts)
    deepep = [s for s in vllm if "DeepEP" in s.name]
    assert deepep and all(s.details["tp"] == 16 and s.details["attention_dp"] == 16 for s in deepep)
    assert all(s.deployment["instances"][0]["all2all_backend"] == "deepep_low_latency" for s in deepep)
    plain = {s.name.replace(" DeepEP", "") for s in deepep}
    assert plain <= {s.name for s in vllm if s.details["tp"] == 16 and "DeepEP" not in s.name}
    assert not any("DeepEP" in s.name or "all2all_backend" in s.deployment["instances"][0]
                   for s in vllm if s.details["tp"] == 8)
    sglang, _ = enumerate_strategies(R1, "h200-sxm", 16, _with(opts, engine="sglang"))
    assert {s.deployment["instances"][0].get("moe_a2a_backend") for s in sglang if "DeepEP" in s.name} == {"deepep"}
    trtllm, _ = enumerate_strategies(R1, "h200-sxm", 16, _with(opts, engine="trtllm"))
    assert trtllm and not any("DeepEP" in s.name for s in trtllm)
    from phasewise.specs import load_model

    pairs = role_layouts(load_model(R1), 16, 16, _with(opts, disaggregated=True), [])
    knobs = {(p[1].get("all2all_backend"), d[1].get("all2all_backend")) for p, d in pairs if "attention_dp" in p[1]}
    assert knobs == {(None, None), ("deepep_high_throughput", "deepep_low_latency")}
    # a prefill instance in a board beside a wide DeepEP decode: the decode may take it alone
    beside = {d[1].get("all2all_backend") for p, d in role_layouts(load_model(R1), 8, 16, opts, [])
              if "attention_dp" in d[1]}
    assert beside == {None, "deepep_low_latency"}


def test_prefill_first_is_not_planned_under_expert_or_attention_data_parallelism():
    """vLLM V0 (0.6), which the prefill-first strategies run, has neither: the planner prunes them there, saying so."""
    opts = PlanOptions(tp_options=(8,), precisions=("fp8",), chunk_sizes=(), disaggregated=False,
                       tp_across_nodes=False)
    strategies, pruned = enumerate_strategies(R1, "h200-sxm", 16, opts)
    first = [s for s in strategies if s.details["scheduler"] == "prefill-first"]
    assert first and all("ep" not in s.deployment["instances"][0] for s in first)
    assert any("prefill-first" in p and "vllm-v0" in p and "--ep 8" in p for p in pruned)
    # an engine without them plans tensor-parallel instances only
    sarathi, pruned = enumerate_strategies(R1, "h200-sxm", 16, _with(opts, engine="sarathi"))
    assert sarathi and all(s.details.get("ep") is None for s in sarathi)
    assert any("not possible on engine 'sarathi'" in p for p in pruned)


@pytest.mark.parametrize("engine", ["vllm-v0", "sarathi", "trtllm-0.5", "vllm-2023"])
@pytest.mark.parametrize("flags, named", [(["--ep", "8"], "--ep 8"), (["--attention-dp", "8"], "--attention-dp 8"),
                                          (["--moe-tp", "2"], "--moe-tp 2")])
def test_engines_without_expert_or_attention_data_parallelism_refuse_it(run_cli, engine, flags, named):
    code, _, err = run_cli("simulate", "--model", R1, "--hardware", "h200-sxm", "--tp", "8", "--engine", engine,
                           *flags, "--requests", "5", "--rate", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"{named} is not possible on engine '{engine}'" in err and "vllm, sglang, trtllm" in err
    code, _, err = run_cli("estimate", "--model", R1, "--hardware", "h200-sxm", "--tp", "8", "--engine", engine,
                           *flags)
    assert code == 2 and f"{named} is not possible on engine '{engine}'" in err


@pytest.mark.parametrize("args, named", [
    (["simulate", "--tp", "8", "--attention-dp", "8", "--requests", "5", "--rate", "1"], "--attention-dp 8"),
    (["simulate", "--tp", "8", "--moe-tp", "8", "--requests", "5", "--rate", "1"], "--moe-tp 8"),
    (["estimate", "--tp", "8", "--attention-dp", "8"], "--attention-dp 8"),
    (["simulate", "--arch", "disagg", "--tp", "8", "--decode-attention-dp", "2", "--requests", "5", "--rate", "1"],
     "--decode-attention-dp 2"),
])
def test_moe_only_layout_flags_on_a_dense_model_are_one_line_errors(run_cli, args, named):
    """--attention-dp on Llama-3.1-8B TP8 ran (TPOT 2.6 -> 5.6 ms, ranks waiting at MoE layers it has none of),
    --moe-tp 8 was silently taken: like --ep, they are refused."""
    code, _, err = run_cli(*args[:1], "--model", LLAMA, "--hardware", "h100-sxm", *args[1:])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{named}: " in err and "apply to mixture-of-experts models" in err and "is dense" in err


def test_a_deployment_file_with_moe_fields_on_a_dense_model_is_refused():
    for fields in ({"moe_tp": 8, "ep": 1}, {"attention_dp": 2}):
        with pytest.raises(PhasewiseError, match="apply to mixture-of-experts models.*is dense"):
            build_deployment({"model": LLAMA, "instances": [{"hardware": "h100-sxm", "tp": 8, **fields}]})
    build_deployment({"model": LLAMA, "instances": [{"hardware": "h100-sxm", "tp": 8, "ep": 1}]})  # no EP: fine


@pytest.mark.parametrize("flags, message", [
    (["--decode-ep", "16"], "instances[1] (decode): --decode-ep 16 must divide --decode-tp 8"),
    (["--prefill-ep", "3"], "instances[0] (prefill): --prefill-ep 3 must divide --prefill-tp 8"),
    (["--decode-attention-dp", "16"], "--decode-attention-dp 16 must divide --decode-tp 8"),  # a ZeroDivisionError
    (["--decode-tp", "4", "--ep", "8"], "--decode-ep 8 must divide --decode-tp 4"),
])
def test_a_roles_layout_errors_name_that_roles_flags(run_cli, flags, message):
    code, _, err = run_cli("simulate", "--model", R1, "--hardware", "h200-sxm", "--arch", "disagg", "--tp", "8",
                           *flags, "--requests", "5", "--rate", "1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_tokens_per_gpu_in_a_plans_rows_are_its_goodputs():
    """A row's tok/s/GPU is its goodput's output tokens (goodput x the tokens a request returns / GPUs), not the
    verification run's tokens over its duration, which drains its last requests after the arrivals stop (732 shown
    for a goodput of 17.55 req/s x 1,024 tokens / 16 GPUs = 1,123)."""
    work = WorkloadSpec((512,), (256,), seed=0, name="512/256")
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(), disaggregated=False)
    res = plan(LLAMA, "h100-sxm", 1, Slo(1000, 50), work, opts=opts, refine=1, workers=1)
    row = res.rows()[0]
    assert row["goodput_rps"] > 0
    assert row["tokens_per_s_per_gpu"] == pytest.approx(row["goodput_rps"] * 256 / row["gpus"], rel=1e-9)
    measured = res.ranked[0].verified.summary["throughput"]["output_tokens_per_s_per_gpu"]
    assert measured < row["tokens_per_s_per_gpu"]  # what it showed before: the drain counted in (less of it since
    # verification's windows grew to several times the seats' fill time)
    assert math.isfinite(row["tokens_per_s_per_gpu"])
