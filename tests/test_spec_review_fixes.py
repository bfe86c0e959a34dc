"""Speculative-decoding review fixes: the draft's prompt pass, plan pruning, sweep grids, SGLang mixed chunks,
flag-naming errors, the draft-token default, and the export of a draft-model deployment."""

import json

import numpy as np
import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.plan.options import PlanOptions, check_options
from phasewise.plan.strategies import enumerate_strategies
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

MIMO, LLAMA = "XiaomiMiMo/MiMo-7B-Base", "meta-llama/Llama-3.1-8B"


def _ttft_ms(**spec) -> float:
    res = run(model="Qwen/Qwen3-8B", concurrency=1, requests=3, isl=8192, osl=128, **spec)
    return float(np.median(res.first_token_s - res.arrival_s)) * 1e3


def test_draft_model_runs_over_the_prompt():
    """The draft builds its KV over the prompt (vLLM V1's proposers take the step's scheduled tokens, SGLang's
    forward_draft_extend, TensorRT-LLM's draft context request): TTFT grows by about the draft's prefill (Qwen3-4B,
    8,192 tokens ~140 ms on an H100), not by ~1 ms."""
    base = _ttft_ms()
    spec = _ttft_ms(spec_tokens=4, spec_draft="Qwen/Qwen3-4B", spec_acceptance=0.0)
    hw, quant = load_hardware("h100-sxm"), load_quant("bf16")
    draft_prefill = CostModel(load_model("Qwen/Qwen3-4B"), hw, quant, load_engine("ideal"), 1, 1).fast(
        BatchShape.uniform(1, 8192, 0))[0] * 1e3
    assert spec - base == pytest.approx(draft_prefill, rel=0.2), (base, spec, draft_prefill)


def test_mtp_draft_runs_over_the_prompt_too():
    base = run(model=MIMO, concurrency=1, requests=3, isl=8192, osl=64)
    spec = run(model=MIMO, concurrency=1, requests=3, isl=8192, osl=64, spec_tokens=3, spec_acceptance=0.0)
    ttft = [float(np.median(r.first_token_s - r.arrival_s)) for r in (base, spec)]
    assert ttft[1] > ttft[0] * 1.02, ttft  # one decoder layer + head over 8,192 tokens: several ms, not ~0.1 ms


def test_plan_prunes_the_default_variant_whose_budget_starves(run_cli):
    """--spec-tokens 8 at vLLM's default cap (1,024) and budget (8,192): the default variant is pruned, the plan
    ranks the rest (it aborted the whole plan)."""
    opts = PlanOptions(tp_options=(1,), batch_caps=(256,), engine_default_cap=True, speculative=(False, True),
                       spec_tokens=8, disaggregated=False)
    strategies, pruned = enumerate_strategies(MIMO, "h100-sxm", 1, opts)
    assert any("vllm default b1024" in line and "prefills would starve" in line for line in pruned), pruned
    assert not any("vllm default b1024" in s.name and "+spec" in s.name for s in strategies)
    assert any("+spec" in s.name for s in strategies)
    # Sarathi-Serve's default budget (512) below 256 x 9: its default variant pruned, the plan still ranks
    strategies, pruned = enumerate_strategies(MIMO, "h100-sxm", 1, PlanOptions(
        tp_options=(1,), batch_caps=(256,), speculative=(False, True), spec_tokens=8, disaggregated=False,
        engine="sarathi"))
    assert any("sarathi default b256" in line and "starve" in line for line in pruned) and strategies, pruned


def test_sweep_grid_tries_spec_on_the_models_with_mtp():
    """A grid of a model without MTP layers and one with them takes speculative: [false, true]; the first model's
    cells are planned without it (a pruned line), the second's with it."""
    from phasewise.plan.sweep import sweep_key

    opts = PlanOptions(tp_options=(1,), speculative=(False, True), spec_tokens=3, disaggregated=False)
    check_options([LLAMA, MIMO], ["h100-sxm"], opts, {"speculative", "spec_tokens"}, sweep_key)
    strategies, pruned = enumerate_strategies(LLAMA, "h100-sxm", 1, opts)
    assert strategies and not any("+spec" in s.name for s in strategies)
    assert any("MTP" in line and LLAMA in line for line in pruned), pruned
    assert any("+spec" in s.name for s in enumerate_strategies(MIMO, "h100-sxm", 1, opts)[0])
    with pytest.raises(PhasewiseError, match=r"strategies.speculative: \[false, true\] plans MTP .*models.0"):
        check_options([LLAMA, "Qwen/Qwen3-8B"], ["h100-sxm"], opts, {"speculative"}, sweep_key)


def test_plan_refuses_spec_on_a_model_without_mtp(run_cli):
    code, _, err = run_cli("plan", "--model", LLAMA, "--gpus", "1", "--isl", "512", "--osl", "64", "--spec")
    assert code == 2 and "--spec plans MTP speculative decoding" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("flags, message", [
    (["--spec-tokens", "0"], "--spec-tokens must be an integer from 1 to 16"),
    (["--spec-acceptance", "1.0"], "--spec-acceptance must be a probability at least 0 and below 1"),
])
def test_plan_names_the_spec_flags(run_cli, flags, message):
    code, _, err = run_cli("plan", "--model", MIMO, "--gpus", "1", "--isl", "512", "--osl", "64", "--spec", *flags)
    assert code == 2 and message in err and "strategy '" not in err and len(err.strip().splitlines()) == 1, err


def test_sglang_mixed_chunk_with_speculation_is_an_error(run_cli):
    code, _, err = run_cli("simulate", "--model", MIMO, "--engine", "sglang", "--enable-mixed-chunk",
                           "--spec-tokens", "3", "--concurrency", "1", "--requests", "2")
    assert code == 2 and "--enable-mixed-chunk" in err and "--spec-tokens" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("draft", ["eagle", "Eagle3"])
def test_unknown_draft_names_the_flag(run_cli, draft):
    code, _, err = run_cli("simulate", "--model", MIMO, "--spec-draft", draft, "--spec-tokens", "3",
                           "--concurrency", "1", "--requests", "2")
    assert code == 2 and "--spec-draft" in err and "mtp or a draft model id" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_mtp_is_case_insensitive():
    dep = build_deployment({"model": MIMO, "instances": [{"hardware": "h100-sxm"}],
                            "speculative": {"draft_tokens": 3, "draft": "MTP"}})
    assert dep.speculative.draft == "mtp"


def test_yaml_speculative_needs_draft_tokens(tmp_path, run_cli):
    """speculative: {} ran k = 4 while plan --spec defaults to 3 and simulate needs --spec-tokens: now a file
    states it too."""
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"model": MIMO, "instances": [{"hardware": "h100-sxm"}], "speculative": {}}))
    code, _, err = run_cli("simulate", "--deployment", str(path), "--concurrency", "1", "--requests", "2")
    assert code == 2 and "speculative: draft_tokens is required" in err and len(err.strip().splitlines()) == 1, err


def test_export_of_a_draft_model_deployment():
    from phasewise.apps.launch import launch_commands

    def dep(engine):
        return build_deployment({"model": "Qwen/Qwen3-8B", "instances": [{"hardware": "h100-sxm", "engine": engine}],
                                 "speculative": {"draft_tokens": 3, "draft": "Qwen/Qwen3-0.6B"}})

    workers, _, _ = launch_commands(dep("sglang"))
    argv = workers[0].argv
    assert argv[argv.index("--speculative-algorithm") + 1] == "STANDALONE"
    assert argv[argv.index("--speculative-draft-model-path") + 1] == "Qwen/Qwen3-0.6B"
    assert argv[argv.index("--speculative-num-draft-tokens") + 1] == "4"
    workers, _, files = launch_commands(dep("trtllm"))
    options = yaml.safe_load(next(iter(files.values())) if files else workers[0].files.popitem()[1])
    assert options["speculative_config"] == {"decoding_type": "Draft_Target", "max_draft_len": 3,
                                             "speculative_model_dir": "Qwen/Qwen3-0.6B"}
    workers, _, _ = launch_commands(dep("vllm"))
    argv = workers[0].argv
    assert json.loads(argv[argv.index("--speculative-config") + 1]) == {"model": "Qwen/Qwen3-0.6B",
                                                                        "num_speculative_tokens": 3}


def test_vllm_exports_a_draft_given_by_its_config_file_as_its_directory(tmp_path):
    """A draft model given as a config.json path reaches vLLM's --speculative-config as its checkpoint directory, as
    the target's path does (checkpoint_id), not as the file."""
    from phasewise.apps.launch import launch_commands
    from phasewise.specs.catalog import packaged

    (tmp_path / "config.json").write_text(json.dumps(packaged("models.yaml")["models"]["Qwen/Qwen3-0.6B"]["config"]))
    dep = build_deployment({"model": "Qwen/Qwen3-8B", "instances": [{"hardware": "h100-sxm", "engine": "vllm"}],
                            "speculative": {"draft_tokens": 2, "draft": str(tmp_path / "config.json")}})
    argv = launch_commands(dep)[0][0].argv
    assert json.loads(argv[argv.index("--speculative-config") + 1])["model"] == str(tmp_path)


def test_the_drafts_first_pass_reads_the_verify_steps_kv_once_at_any_k():
    """The draft's first forward runs over the k + 1 tokens each decode verified, reading the KV the verify step
    reads, not its new tokens a second time (the sums passed in hold them already), and in the decode kernel's class
    at k = 16 too (17 new tokens, which BatchShape.add would file as a prefill); with k = 1 it is the only pass."""
    from phasewise.sim.draft_cost import draft_time_s

    draft = CostModel(load_model("Qwen/Qwen3-0.6B"), load_hardware("h100-sxm"), load_quant("bf16"),
                      load_engine("ideal"), 1, 1)
    for k in (1, 16):
        verify = BatchShape(decode_seqs=8, decode_tokens=8 * (k + 1), decode_pairs=8 * (k + 1) * 2000.0,
                            decode_kv_tokens=8 * (2000.0 + k + 1), logit_tokens=8 * (k + 1))
        first = draft.fast(verify)[0]
        rest = (k - 1) * draft.fast(BatchShape.uniform(8, 1, 2000 + k + 1))[0]
        assert draft_time_s(draft, k, 8, verify.decode_pairs, verify.decode_kv_tokens) == pytest.approx(first + rest)


def test_the_capacity_estimate_counts_the_draft_over_the_prompt():
    """The planner's capacity estimate charges the draft as the simulator does (sim/draft_cost.py): a draft model's
    prefill beside each prompt lowers the prefill-bound capacity."""
    from phasewise.plan.goodput import WorkloadSpec, capacity_estimate
    from phasewise.plan.options import Strategy

    def capacity(speculative):
        dep = {"model": "Qwen/Qwen3-8B", "instances": [{"hardware": "h100-sxm"}], **speculative}
        strategy = Strategy(name="s", kind="collocated", gpus=1, deployment=dep, unit=dep, units=1)
        return capacity_estimate(strategy, WorkloadSpec(prompts=(8192,), outputs=(16,)))

    plain = capacity({})
    drafted = capacity({"speculative": {"draft_tokens": 2, "draft": "Qwen/Qwen3-4B", "acceptance": 0.0}})
    assert drafted < 0.8 * plain
