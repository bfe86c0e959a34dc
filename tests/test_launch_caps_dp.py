"""launch.sh's vLLM caps under attention data parallelism, and the multi-node flags' version line.

vLLM's --max-num-seqs and --max-num-batched-tokens are each data-parallel rank's (one engine core per rank:
specs/engine_caps.py PER_RANK_KNOBS), while the simulated engine's caps and vLLM's own defaults as
launch_caps.launched_default resolves them are the instance's (specs/engine_config.py multiplies the flags by
attention_dp). apps/launch_vllm_caps.py vllm_simulated_caps wrote the instance's caps into the per-rank flags:
a vllm@0.8.5 plan on A100-80G (8,192 tokens a rank, today's vLLM 2,048) at DP2 wrote --max-num-batched-tokens 16384,
and a 512-token budget at DP2 wrote --max-num-seqs 1024, which vLLM refuses (a budget below the sequence cap).
A vLLM instance over two nodes under a version before 0.11.1 said "needs vLLM >= 0.11.1" once per multi-node flag
(--nnodes, --node-rank, --master-addr, --master-port) at each node's command and in the header: now one line."""

import pytest

from phasewise.apps.launch import launch_commands, launch_script
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import build_group

MOE = "Qwen/Qwen3-30B-A3B"
CAP_FLAGS = ("--max-num-seqs", "--max-num-batched-tokens")


def _deployment(hardware: str, engine: str, **group):
    return build_deployment({"model": MOE, "instances": [{"hardware": hardware, "engine": engine, **group}]})


def _cap_flags(dep) -> dict[str, int]:
    """The cap flags the group's one command writes, by name."""
    (cmd,), _, _ = launch_commands(dep)
    return {flag: int(cmd.argv[cmd.argv.index(flag) + 1]) for flag in CAP_FLAGS if flag in cmd.argv}


@pytest.mark.parametrize("attention_dp", [2, 4])
def test_an_older_releases_budget_is_written_as_each_ranks_under_attention_dp(attention_dp):
    """vllm@0.8.5 on an A100-80G ran 8,192 tokens a rank (today's vLLM: 2,048 there), so the command writes its
    budget: 8,192, each rank's as simulated, not the instance's 8,192 x attention_dp."""
    dep = _deployment("a100-sxm-80gb", "vllm@0.8.5", tp=attention_dp, ep=attention_dp, attention_dp=attention_dp,
                      max_num_seqs=256)
    instance_budget_tokens = build_group(dep, dep.instances[0], 0)[3].token_budget
    assert instance_budget_tokens == 8192 * attention_dp  # the simulator's instance: the ranks' budgets together
    assert _cap_flags(dep) == {"--max-num-seqs": 256, "--max-num-batched-tokens": 8192}


def test_the_caps_written_do_not_grow_with_the_data_parallel_ranks():
    """A 512-token budget alone: vLLM 0.14 then runs min(1,024, 512) = 512 sequences a rank, as simulated; the
    command writes 512 at DP1 and DP2 alike (DP2 wrote 1,024, below which vLLM refuses a 512-token budget)."""
    written = {dp: _cap_flags(_deployment("h100-sxm", "vllm", tp=2, ep=2, attention_dp=dp, max_num_batched_tokens=512))
               for dp in (None, 2)}
    assert written[None] == written[2] == {"--max-num-seqs": 512, "--max-num-batched-tokens": 512}
    assert written[2]["--max-num-batched-tokens"] >= written[2]["--max-num-seqs"]  # vLLM's own check


def test_a_multi_node_vllm_command_says_its_0_11_1_flags_in_one_line():
    """vllm@0.10 at TP16 over two nodes: --nnodes, --node-rank, --master-addr and --master-port are 0.11.1's; the
    header and each node's command say so in one line naming the four, --nnodes' own reason kept."""
    script, _ = launch_script(_deployment("h100-sxm", "vllm@0.10", tp=16, ep=16), ["header"])
    said = [line for line in script.splitlines() if "vLLM >= 0.11.1" in line]
    assert len(said) == 3  # the header's, node 0's command's, node 1's command's
    assert len(set(said)) == 1
    (line,) = set(said)
    assert line.startswith("# --nnodes, --node-rank, --master-addr and --master-port need vLLM >= 0.11.1: vLLM 0.10 "
                           "(the version the plan modelled) has no --nnodes (its multi-node tensor / pipeline")
    assert line.endswith("and has no --node-rank, --master-addr or --master-port and refuses them; run this deployment "
                         "with vLLM 0.11.1 or later")


def test_a_multi_node_command_on_the_default_release_says_nothing_it_needs():
    script, _ = launch_script(_deployment("h100-sxm", "vllm", tp=16, ep=16), ["header"])
    assert "--nnodes 2" in script and "0.11.1" not in script
