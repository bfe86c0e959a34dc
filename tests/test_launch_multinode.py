"""`plan --export`'s launch.sh beyond one node and against the engine versions it names: an instance wider than a
node runs as one command per node with its engine's multi-node arguments (TensorRT-LLM: one MPI launch), numbered
from node 0; workers another node must reach listen beyond localhost; SGLang's disaggregated servers get what
SGLang asserts (round-robin balance on a DP decode server, a bootstrap port per prefill server, told to the
router); a flag later than the modelled version says which version it needs; Sarathi's partial prefills, which
vLLM 0.14 refuses, are not written; the header names the version modelled and the one the flags are from."""

import os
import stat
import subprocess

import pytest
from test_plan_export import PREFIX, _parse

from phasewise.apps.launch import launch_commands, launch_script
from phasewise.apps.launch_args import engine_flags
from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import build_deployment

MOE, M = "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-3.1-8B"


def _dep(engine: str, **group) -> object:
    return build_deployment({"model": MOE, "instances": [{"hardware": "h100-sxm", "engine": engine, **group}]})


def _args(engine: str, cmd):
    return _parse(engine_flags()[engine], cmd.argv[len(PREFIX[engine]):])


def test_a_vllm_instance_over_two_nodes_runs_a_command_on_each_numbered_from_node_0():
    """TP1 x DP16 on 8-GPU nodes: node 0 serves the API with data-parallel ranks 0-7 on its GPUs 0-7, node 1 runs
    ranks 8-15 headless from --data-parallel-start-rank 8, both given node 0's address and RPC port (vLLM's
    data-parallel deployment); the old script ran one command of 8 GPUs labelled node 1."""
    workers, _, _ = launch_commands(_dep("vllm", tp=16, ep=16, attention_dp=16))
    assert [c.node for c in workers] == [0, 1]
    head, other = (_args("vllm", c) for c in workers)
    for cmd, args in zip(workers, (head, other)):
        assert cmd.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
        assert (args.data_parallel_size, args.data_parallel_size_local) == (16, 8)
        assert (args.data_parallel_address, args.data_parallel_rpc_port) == ("${NODE0_ADDR}", 29550)
    assert not head.headless and head.data_parallel_start_rank is None
    assert other.headless and other.data_parallel_start_rank == 8
    assert workers[0].comments[0] == "collocated 1/1 on nodes 0-1 (8 GPUs on each)"


def test_tensor_ranks_across_nodes_use_vllms_multiprocessing_executor_over_nnodes():
    workers, _, _ = launch_commands(_dep("vllm", tp=16, ep=16))
    args = [_args("vllm", c) for c in workers]
    assert [(a.nnodes, a.node_rank, a.master_addr, a.headless) for a in args] == [
        (2, 0, "${NODE0_ADDR}", False), (2, 1, "${NODE0_ADDR}", True)]
    assert all(a.tensor_parallel_size == 16 for a in args)


def test_sglang_and_trtllm_over_two_nodes():
    """SGLang: the same arguments on each node with --nnodes, its --node-rank and node 0's --dist-init-addr;
    TensorRT-LLM: one MPI world of 16 ranks from node 0 through trtllm-llmapi-launch. Both listen on 0.0.0.0."""
    sg, _, _ = launch_commands(_dep("sglang", tp=16, ep=16, attention_dp=16, memory_fraction=0.85))
    args = [_args("sglang", c) for c in sg]
    assert [(a.nnodes, a.node_rank, a.dist_init_addr, a.host) for a in args] == [
        (2, 0, "${NODE0_ADDR}:20000", "0.0.0.0"), (2, 1, "${NODE0_ADDR}:20000", "0.0.0.0")]
    assert all(c.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7" for c in sg)
    (trt,), _, _ = launch_commands(_dep("trtllm", tp=16, ep=16))
    launcher = trt.argv.index("trtllm-llmapi-launch")
    assert trt.argv[:launcher] == ["mpirun", "-H", "${NODE0_ADDR}:8,${NODE1_ADDR}:8", "-np", "16",
                                   "-x", "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"]
    args = _parse(engine_flags()["trtllm"], trt.argv[launcher + 2:])
    assert (args.tp_size, args.host) == (16, "0.0.0.0")


@pytest.fixture
def stub_engines(tmp_path):
    """`vllm` and `python` that print their command lines instead of serving: the script as bash runs it."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("vllm", "python"):
        path = bin_ / name
        path.write_text('#!/bin/sh\necho "$(basename "$0") $* env:${VLLM_NIXL_SIDE_CHANNEL_HOST:-}"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_


def _run(script: str, tmp_path, bin_, **env) -> str:
    path = tmp_path / "launch.sh"
    path.write_text(script)
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{bin_}:{os.environ['PATH']}", **env})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_script_runs_a_nodes_commands_with_its_addresses(tmp_path, stub_engines):
    """bash expands the node variables and starts node k's commands only; without them it stops, naming them."""
    script, _ = launch_script(_dep("vllm", tp=16, ep=16, attention_dp=16), ["header"])
    env = {"NODE0_ADDR": "10.0.0.1", "NODE1_ADDR": "10.0.0.2"}
    out = _run(script, tmp_path, stub_engines, NODE="1", **env)
    assert out.count("vllm serve") == 1
    assert "--headless --data-parallel-start-rank 8" in out and "--data-parallel-address 10.0.0.1 " in out
    assert "--data-parallel-start-rank" not in _run(script, tmp_path, stub_engines, NODE="0", **env)
    fails = subprocess.run(["bash", str(tmp_path / "launch.sh")], capture_output=True, text=True, timeout=60,
                           env={"PATH": f"{stub_engines}:{os.environ['PATH']}", "NODE": "0"})
    assert fails.returncode != 0 and "NODE0_ADDR" in fails.stderr


DISAGG = {"model": M, "kv_link": "rdma", "instances": [{"role": "prefill", "tp": 1, "replicas": 2},
                                                       {"role": "decode", "tp": 8, "replicas": 1}]}


def test_workers_another_node_reaches_listen_beyond_localhost(tmp_path, stub_engines):
    """Prefill on node 0, decode on node 1: vLLM's NIXL listener (localhost by default, and the address a prefill
    worker hands its decode worker) takes the node's address; SGLang's servers (and the prefill's bootstrap
    server, which binds --host) listen on 0.0.0.0, the router reaching them at the nodes' addresses."""
    vllm = build_deployment(DISAGG)
    workers, _, _ = launch_commands(vllm)
    assert [(c.node, c.env["VLLM_NIXL_SIDE_CHANNEL_HOST"]) for c in workers] == [
        (0, "${NODE0_ADDR}"), (0, "${NODE0_ADDR}"), (1, "${NODE1_ADDR}")]
    script, _ = launch_script(vllm, [])
    out = _run(script, tmp_path, stub_engines, NODE="1", NODE0_ADDR="10.0.0.1", NODE1_ADDR="10.0.0.2")
    assert out.strip().endswith("env:10.0.0.2")
    sglang = build_deployment(dict(DISAGG, instances=[dict(g, engine="sglang") for g in DISAGG["instances"]]))
    workers, front, _ = launch_commands(sglang)
    assert all(_args("sglang", c).host == "0.0.0.0" for c in workers)
    router = _parse(engine_flags()["sglang"]["router"], front.argv[3:])
    assert [u for u, _ in router.prefill] == ["http://${NODE0_ADDR}:8001", "http://${NODE0_ADDR}:8002"]
    assert router.decode == ["http://${NODE1_ADDR}:8003"]
    one_node = build_deployment(dict(DISAGG, instances=[dict(g, tp=1) for g in DISAGG["instances"]]))
    workers, _, _ = launch_commands(one_node)  # all on node 0: the engines' defaults, as before
    assert all("VLLM_NIXL_SIDE_CHANNEL_HOST" not in c.env and "--host" not in c.argv for c in workers)


def test_sglang_prefill_servers_get_their_own_bootstrap_ports_and_a_dp_decode_round_robin_balance():
    """Two prefill servers on one node would both bind bootstrap port 8998; a decode server with --dp-size > 1
    asserts --prefill-round-robin-balance (server_args.py _handle_disaggregation)."""
    dep = build_deployment({"model": MOE, "kv_link": "rdma", "instances": [
        {"role": "prefill", "tp": 2, "replicas": 2, "engine": "sglang"},
        {"role": "decode", "tp": 4, "ep": 4, "attention_dp": 4, "engine": "sglang"}]})
    workers, front, _ = launch_commands(dep)
    args = [_args("sglang", c) for c in workers]
    assert [a.disaggregation_bootstrap_port for a in args] == [8998, 8999, None]
    assert [a.prefill_round_robin_balance for a in args] == [False, False, True]
    router = _parse(engine_flags()["sglang"]["router"], front.argv[3:])
    # one node: the router reaches the servers on localhost, where SGLang listens by default (no --host given)
    assert router.prefill == [["http://localhost:8001", "8998"], ["http://localhost:8002", "8999"]]
    assert all("--host" not in c.argv for c in workers)


def test_a_flag_later_than_the_modelled_version_says_the_version_it_needs():
    """SGLang's prefill delayer is in neither 0.5.5 (modelled) nor 0.5.7; 0.5.8 has it: the command and the
    header say so."""
    assert engine_flags()["sglang"]["flags"]["--enable-prefill-delayer"]["since"] == "0.5.8"
    dep = _dep("sglang", tp=8, ep=8, attention_dp=8, enable_prefill_delayer=True)
    script, _ = launch_script(dep, ["header"])
    said = "--enable-prefill-delayer needs SGLang >= 0.5.8: SGLang 0.5.5 (the version the plan modelled)"
    head, body = script.split("set -euo pipefail")
    assert said in head and said in body
    assert said not in launch_script(_dep("sglang", tp=8, ep=8, attention_dp=8), [])[0]


def test_sarathis_partial_prefills_are_not_written_and_the_script_says_what_runs():
    dep = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "engine": "sarathi"}]})
    (cmd,), _, _ = launch_commands(dep)
    assert "--max-num-partial-prefills" not in cmd.argv and "--max-num-partial-prefills" not in engine_flags()[
        "vllm"]["flags"]
    assert any("no vLLM V1 equivalent" in c and "512-token budget" in c for c in cmd.comments)
    asked = build_deployment({"model": M, "instances": [{"hardware": "h100-sxm", "max_num_partial_prefills": 4}]})
    with pytest.raises(PhasewiseError, match="max-num-partial-prefills=4 is not possible on vllm@0.14"):
        launch_commands(asked)  # vLLM V1 refuses it, so the deployment is refused before any export


@pytest.mark.parametrize("engine, line", [
    ("vllm", "# Engine: vLLM 0.14, the version the plan modelled; the flags are vLLM 0.14.0's"),
    ("sglang", "# Engine: SGLang 0.5.5, the version the plan modelled; the flags are SGLang 0.5.5's"),
    ("trtllm", "# Engine: TensorRT-LLM 1.1, the version the plan modelled; the flags are TensorRT-LLM 1.0.0's "
               "(apps/data/engine_flags.yaml): check them against --help of TensorRT-LLM 1.1"),
])
def test_the_header_names_the_modelled_engine_version_and_the_flags_version(engine, line):
    script, _ = launch_script(build_deployment({"model": M, "instances": [{"hardware": "h100-sxm",
                                                                          "engine": engine}]}), ["header"])
    assert line in script.splitlines()[2]
