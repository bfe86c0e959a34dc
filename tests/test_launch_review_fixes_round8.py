"""Review fixes (round 8) to `plan --export`'s vLLM commands: --kv-offloading-size is each data-parallel rank's
share of the planned host KV tier (each DP rank is its own engine core with its own OffloadingConnector); the
offloading flags say they need vLLM 0.14 (0.11.1-0.13 have them, but their native backend does not start), and
vLLM releases before 0.11.0 (no OffloadingConnector) keep no host tier; a prefill-first (vllm-v0) export caps
--max-model-len at the simulated whole-prompt budget where the workload's requests fit it, so that vLLM without
chunked prefill runs that budget rather than the model's whole context."""

import pytest
from test_plan_export import PREFIX, _parse

from phasewise.apps.launch import launch_commands, launch_script
from phasewise.apps.launch_args import engine_flags
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine

MOE = "Qwen/Qwen3-30B-A3B"
DENSE = "meta-llama/Llama-3.1-8B"
HOST_BYTES = 100e9


def _dp_host_tier(engine: str) -> dict:
    """The reviewer's plan: one instance of TP 2 as attention DP 2 x EP 2, 100 GB of host KV tier."""
    return {"model": MOE, "instances": [{"hardware": "h100-sxm", "engine": engine, "tp": 2, "ep": 2,
                                         "attention_dp": 2, "host_kv_cache_bytes": HOST_BYTES}]}


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_vllm_kv_offloading_size_is_each_data_parallel_ranks_share():
    """vLLM gives every DP rank's engine core the whole --kv-offloading-size (split only over its TP x PP workers):
    the flag is the instance's tier over the DP ranks (100 GB / 2 = 46.57 GiB; was 93.13, twice what was planned),
    as the simulator gives each attention-DP rank its share (sim/prefix_cache_ranks.py rank_host_tier)."""
    (cmd,), _, _ = launch_commands(build_deployment(_dp_host_tier("vllm")))
    assert _arg(cmd.argv, "--data-parallel-size") == "2"
    assert float(_arg(cmd.argv, "--kv-offloading-size")) == pytest.approx(HOST_BYTES / 2 / 2**30, rel=1e-3)
    assert any("each of the 2 data-parallel ranks' own host KV tier" in c for c in cmd.comments)
    _parse(engine_flags()["vllm"], cmd.argv[len(PREFIX["vllm"]):])  # still a published argument


def test_vllm_without_data_parallelism_keeps_the_whole_tier_in_one_flag():
    data = _dp_host_tier("vllm")
    data["instances"][0].update(attention_dp=None, ep=None, tp=2)
    (cmd,), _, _ = launch_commands(build_deployment(data))
    assert float(_arg(cmd.argv, "--kv-offloading-size")) == pytest.approx(HOST_BYTES / 2**30, rel=1e-3)


def test_sglang_and_trtllm_still_give_each_rank_its_share():
    """SGLang's --hicache-size and TensorRT-LLM's host_cache_size are per GPU rank already: 50 GB each of 2."""
    (sg,), _, _ = launch_commands(build_deployment(_dp_host_tier("sglang")))
    assert float(_arg(sg.argv, "--hicache-size")) == pytest.approx(HOST_BYTES / 2 / 1e9)
    (trt,), _, files = launch_commands(build_deployment(_dp_host_tier("trtllm")))
    (options,) = files.values()
    assert f"host_cache_size: {int(HOST_BYTES / 2)}" in options


def test_kv_offloading_flags_say_they_need_vllm_0_14():
    """The flags came in 0.11.1 (PR #27621), but until 0.14.0 the native backend stops at start-up (num_cpu_blocks 0):
    a vllm@0.11 or @0.12 plan's script says at the command and in its header that it needs 0.14; 0.14 says nothing."""
    flags = engine_flags()["vllm"]["flags"]
    assert flags["--kv-offloading-size"]["since"] == flags["--kv-offloading-backend"]["since"] == "0.14"
    said = "--kv-offloading-size needs vLLM >= 0.14: vLLM {v} (the version the plan modelled) has no working form of it"
    for version, needs in (("0.11", True), ("0.12", True), ("0.14", False)):
        data = {"model": DENSE, "instances": [{"hardware": "h100-sxm", "engine": f"vllm@{version}",
                                               "host_kv_cache_bytes": HOST_BYTES}]}
        (cmd,), _, _ = launch_commands(build_deployment(data))
        assert "--kv-offloading-size" in cmd.argv
        assert any(said.format(v=version) in n for n in cmd.needs) == needs, version
        script, _ = launch_script(build_deployment(data), [])
        assert (script.count(said.format(v=version)) == 2) == needs  # the header's line and the command's


@pytest.mark.parametrize("version, tier", [("0.8.5", None), ("0.10", None), ("0.11", "async"), ("0.12", "async"),
                                           ("0.14", "async")])
def test_vllm_keeps_a_host_tier_from_0_11(version, tier):
    """vLLM's OffloadingConnector is first in 0.11.0 (not in the 0.10.1.1 or 0.10.2 wheels): older versions keep no
    host KV tier, so the plan and simulate refuse --host-kv-cache-gb there."""
    assert resolve_engine(f"vllm@{version}", load_hardware("h100-sxm")).host_kv_load == tier


@pytest.mark.parametrize("engine, refused", [("vllm@0.10", True), ("vllm@0.11", False)])
def test_simulate_refuses_a_host_tier_before_vllm_0_11_in_one_line(run_cli, engine, refused):
    code, out, err = run_cli("simulate", "--trace", "mooncake", "--trace-limit", "20", "--engine", engine,
                             "--host-kv-cache-gb", "100")
    if refused:
        assert code == 2 and f"{engine} keeps no host-memory KV tier" in err and len(err.strip().splitlines()) == 1
    else:
        assert code == 0, err


def _prefill_first(**knobs) -> dict:
    return {"model": DENSE, "instances": [{"hardware": "h100-sxm", "engine": "vllm-v0", "max_num_seqs": 128,
                                           **knobs}]}


def test_prefill_first_export_caps_the_context_at_the_simulated_budget():
    """vllm-v0 is simulated with an 8,192-token whole-prompt budget; vLLM 0.14 with --no-enable-chunked-prefill
    runs max(max_model_len, 8192) = 131,072 for Llama-3.1-8B. Where the workload's requests (1,200 tokens) fit,
    --max-model-len 8192 makes the launched engine's budget the simulated one."""
    dep = build_deployment(_prefill_first())
    simulated = build_group(dep, dep.instances[0], 0)[3]
    assert not simulated.chunked_prefill and simulated.token_budget == 8192
    (cmd,), _, _ = launch_commands(dep, longest_request=1200)
    assert "--no-enable-chunked-prefill" in cmd.argv and _arg(cmd.argv, "--max-model-len") == "8192"
    assert any(c.startswith("--max-model-len 8192: the simulated vllm-v0 budget") for c in cmd.comments)
    launched = resolve_engine("vllm", load_hardware("h100-sxm"), model_type="llama", max_model_len=8192,
                              knobs={"enable_chunked_prefill": False, "max_num_seqs": 128})
    assert (launched.token_budget, launched.max_seqs) == (simulated.token_budget, simulated.max_seqs)
    _parse(engine_flags()["vllm"], cmd.argv[len(PREFIX["vllm"]):])


@pytest.mark.parametrize("longest, why", [(None, "the workload's longest request is not known here"),
                                          (20_000, "the workload's requests reach 20,000 tokens, past it")])
def test_prefill_first_export_says_the_budget_differs_where_requests_do_not_fit(longest, why):
    (cmd,), _, _ = launch_commands(build_deployment(_prefill_first()), longest_request=longest)
    assert "--max-model-len" not in cmd.argv and "--max-num-batched-tokens" not in cmd.argv
    note = next(c for c in cmd.comments if c.startswith("the simulated vllm-v0 budget of 8,192 tokens a step"))
    assert "131,072" in note and note.endswith(why)


def test_prefill_first_budget_knob_below_the_context_is_not_written_where_vllm_would_refuse_it():
    """A vllm-v0 budget of 4,096: written with --max-model-len 4096 where the requests fit (vLLM accepts a budget
    of max_model_len), left out with a note where they do not (vLLM refuses one below max_model_len unchunked)."""
    (fits,), _, _ = launch_commands(build_deployment(_prefill_first(max_num_batched_tokens=4096)), longest_request=1200)
    assert _arg(fits.argv, "--max-num-batched-tokens") == "4096" and _arg(fits.argv, "--max-model-len") == "4096"
    (long,), _, _ = launch_commands(build_deployment(_prefill_first(max_num_batched_tokens=4096)))
    assert "--max-num-batched-tokens" not in long.argv and "--max-model-len" not in long.argv
    assert any(c.startswith("the simulated vllm-v0 budget of 4,096 tokens a step") for c in long.comments)
