"""Where an exported deployment's instances run: instances packed onto nodes of the chip's GPUs (placements), and an
instance's command on each of its nodes, with its engine's multi-node arguments where it is wider than a node
(per_node)."""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.apps.launch_args import Command, node_addr
from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.specs import load_hardware

NIXL_SIDE_CHANNEL_PORT = 5600  # vLLM's default VLLM_NIXL_SIDE_CHANNEL_PORT (nixl_connector_usage.html), + GPU index
# the multi-node rendezvous ports, on an instance's first node (each instance wider than a node has its own nodes):
# vLLM's defaults (vllm 0.14 config/parallel.py: data_parallel_rpc_port 29550, master_port 29501), written out so
# that the firewall's holes are in the script; SGLang's --dist-init-addr port as its multi-node guide writes it
VLLM_DP_RPC_PORT, VLLM_MASTER_PORT = 29550, 29501
SGLANG_DIST_INIT_PORT = 20000


def visible_devices(g: InstanceGroup) -> str:
    """The variable that gives a worker its GPUs: on an AMD chip HIP_VISIBLE_DEVICES, the HIP runtime's device list
    (ROCm docs, 'HIP environment variables', GPU isolation; vLLM on ROCm deprecates CUDA_VISIBLE_DEVICES there,
    vllm-project/vllm PR #46636, 2026-06), CUDA_VISIBLE_DEVICES otherwise."""
    return "HIP_VISIBLE_DEVICES" if load_hardware(g.hardware).vendor == "amd" else "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one instance runs: its nodes (the first serves its API), its first GPU and GPU count on each."""

    nodes: tuple[int, ...]
    first_gpu: int
    gpus: int


def placements(dep: Deployment) -> list[list[Placement]]:
    """Each group's instances' places, packed onto nodes in order (a node: the machine a command runs on, the chip's
    interconnect.gpus_per_host: an NVL72 rack's 4-GPU compute tray, not its 72-GPU NVLink domain; a group on
    another chip than the last starts a node): one that fits a node stays on one, a wider one takes whole nodes,
    the same number of GPUs on each (the engines' multi-node launches split an instance evenly)."""
    out: list[list[Placement]] = []
    node, gpu, chip = 0, 0, None
    for g in dep.instances:
        per_node = load_hardware(g.hardware).interconnect.gpus_per_host
        if gpu and g.hardware != chip:
            node, gpu = node + 1, 0
        chip, group = g.hardware, []
        for _ in range(g.replicas):
            n = g.tp * g.pp
            if n <= per_node:
                if gpu + n > per_node:  # an instance does not straddle two nodes
                    node, gpu = node + 1, 0
                group.append(Placement((node,), gpu, n))
                gpu += n
                continue
            if gpu:
                node, gpu = node + 1, 0
            span = -(-n // per_node)
            if n % span:
                raise PhasewiseError(f"{g.role} instance of {n} GPUs on {g.hardware} ({per_node} per node): it cannot "
                                     f"be split evenly over {span} nodes, as the engines' multi-node launches need")
            group.append(Placement(tuple(range(node, node + span)), 0, n // span))
            node += span
        out.append(group)
    return out


def node_count(dep: Deployment) -> int:
    """The nodes the deployment's instances take (placements)."""
    return 1 + max(p.nodes[-1] for group in placements(dep) for p in group)


def per_node(cmd: Command, family: str, g: InstanceGroup, place: Placement, cross_node: bool) -> list[Command]:
    """The instance's command on each of its nodes: its GPUs, and an instance wider than a node started with its
    engine's multi-node arguments (apps/data/engine_flags.yaml): vLLM's data-parallel ranks per node (headless
    after the first) or its multiprocessing executor over --nnodes, SGLang's --nnodes / --node-rank /
    --dist-init-addr, TensorRT-LLM's one MPI world from the first node (mpirun ... trtllm-llmapi-launch)."""
    devices = {visible_devices(g): ",".join(str(place.first_gpu + k) for k in range(place.gpus))}
    head, count = node_addr(place.nodes[0]), len(place.nodes)

    def on(node: int, argv: list[str], comments: list[str]) -> Command:
        env = {**cmd.env, **devices}
        if family == "vllm" and g.role != "collocated":  # NIXL's handshake: one port per worker on a host, and the
            env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(NIXL_SIDE_CHANNEL_PORT + place.first_gpu)
            if cross_node:  # address the prefill worker hands the decode worker (localhost by default)
                env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = node_addr(node)
        return Command(argv, env=env, comments=comments, files=cmd.files, node=node, needs=cmd.needs,
                       differs=cmd.differs)

    if count == 1:
        return [on(place.nodes[0], cmd.argv, cmd.comments)]
    if family == "trtllm":
        hosts = ",".join(f"{node_addr(n)}:{place.gpus}" for n in place.nodes)
        (name, value), = devices.items()
        argv = ["mpirun", "-H", hosts, "-np", str(count * place.gpus), "-x", f"{name}={value}",
                "trtllm-llmapi-launch", *cmd.argv]
        return [Command(argv, comments=cmd.comments + [
            f"one MPI world of {count * place.gpus} ranks over nodes {place.nodes[0]}-{place.nodes[-1]}, started from "
            f"node {place.nodes[0]} (mpirun reaches the others over ssh; under Slurm: srun -N {count} "
            f"--ntasks-per-node {place.gpus} --mpi=pmix trtllm-llmapi-launch trtllm-serve ...)"],
            files=cmd.files, node=place.nodes[0], needs=cmd.needs, differs=cmd.differs)]
    out = []
    dp = g.attention_dp or 1
    rank = g.tp // dp * g.pp  # a vLLM data-parallel rank's GPUs
    for k, node in enumerate(place.nodes):
        if family == "sglang":
            extra = ["--nnodes", str(count), "--node-rank", str(k), "--dist-init-addr",
                     f"{head}:{SGLANG_DIST_INIT_PORT}"]
            said = f"node rank {k} of {count}"
        elif dp > 1 and place.gpus % rank == 0:  # whole data-parallel ranks on each node
            local = place.gpus // rank
            extra = (["--headless", "--data-parallel-start-rank", str(k * local)] if k else []) + [
                "--data-parallel-size-local", str(local), "--data-parallel-address", head,
                "--data-parallel-rpc-port", str(VLLM_DP_RPC_PORT)]
            said = f"data-parallel ranks {k * local}-{k * local + local - 1} of {dp}" + (
                ", headless (the API server is node " + f"{place.nodes[0]}'s)" if k else "")
        else:  # tensor / pipeline ranks across nodes: the multiprocessing executor over the nodes
            extra = ["--nnodes", str(count), "--node-rank", str(k), "--master-addr", head,
                     "--master-port", str(VLLM_MASTER_PORT)] + (["--headless"] if k else [])
            said = f"node rank {k} of {count}" + (", headless workers" if k else "") + (
                f"; each of the {dp} data-parallel ranks spans nodes, its rank inferred from --node-rank (vLLM 0.14 "
                "arg_utils.py create_engine_config)" if dp > 1 and not k else "")
        out.append(on(node, cmd.argv + extra, (cmd.comments if not k else cmd.comments[:1]) + [
            f"node {node}: {said}"]))
    return out
