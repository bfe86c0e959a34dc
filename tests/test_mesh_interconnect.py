"""AMD Instinct (MI300X, MI325X, MI355X) and NVIDIA Rubin in the catalog, and the intra-node topology they bring: on
a mesh (AMD Infinity Fabric: one direct link to each other GPU) a group of n GPUs reaches only its n - 1 links, so
TP2 all-reduces, pipeline hops and KV transfers run on one link, while a switched fabric (NVLink) gives every group
the whole bandwidth. Figures worked by hand from the catalog entries."""

from __future__ import annotations

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.collectives import link, peer_link, ring_bandwidth
from phasewise.sim.link import link_rate
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.hardware import Interconnect

MODEL = "meta-llama/Llama-3.1-70B"


def test_a_mesh_gives_a_group_its_own_links_and_a_switch_the_whole_bandwidth():
    mesh = load_hardware("mi300x").interconnect
    assert mesh.intra_node_topology == "mesh" and mesh.gpus_per_node == 8
    assert mesh.peer_bandwidth == pytest.approx(64e9)  # one Infinity Fabric link each way
    assert [mesh.group_bandwidth(n) for n in (2, 4, 8)] == pytest.approx([64e9, 192e9, 448e9])
    assert link(mesh, 2)[0] == pytest.approx(64e9) and ring_bandwidth(mesh, 4) == pytest.approx(192e9)
    assert peer_link(mesh, 16)[0] == mesh.inter_node_bandwidth_bytes_per_s  # a hop across nodes: the NIC
    assert link_rate(mesh, "nvlink")[0] == pytest.approx(64e9)  # a KV transfer: GPU to GPU, one link
    switch = load_hardware("h100-sxm").interconnect
    assert switch.intra_node_topology == "switch"
    for n in (2, 4, 8):
        assert switch.group_bandwidth(n) == switch.peer_bandwidth == switch.intra_node_bandwidth_bytes_per_s
    # a YAML may name the topology; anything else is a one-line error naming the field
    base = dict(intra_node_bandwidth_bytes_per_s=448e9, intra_node_latency_s=2e-6,
                inter_node_bandwidth_bytes_per_s=50e9, inter_node_latency_s=5e-6)
    assert Interconnect(**base, intra_node_topology="mesh").group_bandwidth(3) == pytest.approx(128e9)
    with pytest.raises(ValueError, match="intra_node_topology"):
        Interconnect(**base, intra_node_topology="torus")


def test_tp2_on_a_mesh_all_reduces_over_one_link():
    """Llama-3.1-70B, 4,096-token prefill: per GPU 80 layers x 2 all-reduces of 4,096 x 8,192 BF16 activations;
    a 2-GPU ring moves each once, at one link's 64 GB/s x the measured 0.71 RCCL efficiency on MI300X."""
    model = load_model(MODEL)
    costs = {}
    for hw in ("mi300x", "h100-sxm"):
        cost = CostModel(model, load_hardware(hw), load_quant("fp8"), load_engine("vllm"), tp=2)
        costs[hw] = {op.name: op for op in cost.iteration(BatchShape.uniform(1, 4096, 0)).operators}
    mi300x = costs["mi300x"]["tp_allreduce"]
    moved = 160 * 4096 * 8192 * 2  # 2 (n - 1) / n = 1 for two ranks
    assert mi300x.bytes == pytest.approx(moved, rel=0.01)
    assert mi300x.memory_s == pytest.approx(moved / (64e9 * 0.71), rel=0.05)
    # NVLink through a switch: 450 GB/s each way to the one peer
    assert costs["h100-sxm"]["tp_allreduce"].memory_s < mi300x.memory_s / 5


def test_the_new_parts_are_sourced_and_run():
    for key, bf16, bandwidth, topology in (("mi300x", 1307.4e12, 5.3e12, "mesh"), ("mi325x", 1307.4e12, 6.0e12, "mesh"),
                                           ("mi355x", 2516.6e12, 8.0e12, "mesh"), ("vr200", 4.0e15, 22e12, "switch")):
        hw = load_hardware(key)
        assert hw.peak("bf16") == pytest.approx(bf16, rel=1e-4)
        assert hw.memory_bandwidth_bytes_per_s == bandwidth and hw.interconnect.intra_node_topology == topology
    for key in ("mi300x", "mi325x", "mi355x", "vr200"):  # measured by others, or an assumption said so
        assert packaged("efficiency.yaml")["hardware"][key]["sources"]
    assert load_hardware("rubin").key == "vr200" and load_hardware("Instinct-MI300X").key == "mi300x"
    assert load_hardware("mi355x").peak("fp4") == pytest.approx(2 * load_hardware("mi355x").peak("fp8"), rel=1e-3)
    with pytest.raises(PhasewiseError, match="no fp4 compute path"):
        load_hardware("mi300x").peak("fp4")  # CDNA3 has no FP4 path
    with pytest.raises(PhasewiseError, match="no int8 compute path"):
        load_hardware("vr200").peak("int8")  # not published by NVIDIA: left out, not guessed


def test_plan_by_dollar_refuses_a_chip_without_a_rental_price(run_cli):
    code, _, err = run_cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--hardware", "h200-sxm,mi355x", "--gpus",
                           "2", "--isl", "512", "--osl", "16", "--objective", "goodput-per-dollar")
    assert code == 2 and err.count("\n") == 1
    assert "--hardware names 'mi355x', which has none (price_per_hour_usd 0)" in err
    code, out, err = run_cli("plan", "--model", "meta-llama/Llama-3.1-8B", "--hardware", "mi300x", "--gpus", "2",
                             "--tp-options", "1,2", "--chunk-sizes", "2048", "--batch-caps", "64", "--isl", "512",
                             "--osl", "16", "--top", "1", "--workers", "1", "--json",
                             "--objective", "goodput-per-dollar", "--no-disagg")
    assert code == 0, err
