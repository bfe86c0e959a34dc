"""A disaggregated deployment's KV link beyond one node: prefill and decode instances whose GPUs together pass one
node's (the chip's gpus_per_node: 8 on an HGX board, 72 in an NVL72 rack) are placed on several nodes (apps/
launch_nodes.py placements), and NVLink and PCIe do not leave a node. The deployment's unset kv_link is rdma there (a
note says so), a stated nvlink or pcie a one-line error, as plan's rule (plan/chip_budgets.py kv_link_between) and
simulate's --kv-link already said: one rule, sim/deployment_links.py phases_apart. A 2P2D TP8 deployment on H100s (32
GPUs, 4 nodes) had kept NVLink between its phases."""

import pytest

from phasewise.apps.launch_nodes import node_count
from phasewise.errors import PhasewiseError
from phasewise.plan.chip_budgets import kv_link_between
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment, disaggregated, phases_apart
from phasewise.specs import load_hardware

M70 = "meta-llama/Llama-3.1-70B"
M8 = "meta-llama/Llama-3.1-8B"


def _dep(p_tp: int, p_replicas: int, d_tp: int, d_replicas: int, hardware: str = "h100-sxm", **extra):
    return build_deployment({"model": M8, **extra, "instances": [
        {"role": "prefill", "hardware": hardware, "tp": p_tp, "replicas": p_replicas},
        {"role": "decode", "hardware": hardware, "tp": d_tp, "replicas": d_replicas}]})


def test_an_unset_kv_link_beyond_one_node_is_rdma_and_a_note_says_so():
    dep = build_deployment({"model": M70, "instances": [{"role": "prefill", "tp": 8, "replicas": 2},
                                                        {"role": "decode", "tp": 8, "replicas": 2}]})
    assert node_count(dep) == 4
    assert dep.kv_link == "rdma"
    assert dep.link_notes() == ("KV transfers costed over rdma beyond one 8-GPU node of h100-sxm, not the default "
                                "kv_link nvlink: NVLink and PCIe do not leave a node",)


@pytest.mark.parametrize("link", ["nvlink", "pcie"])
def test_a_stated_nvlink_or_pcie_beyond_one_node_is_a_one_line_error_naming_kv_link(link):
    with pytest.raises(PhasewiseError) as exc:
        _dep(8, 2, 8, 2, kv_link=link)
    assert str(exc.value) == (f"deployment: kv_link {link} cannot carry KV beyond one 8-GPU node of h100-sxm: NVLink "
                              "and PCIe do not leave a node; give kv_link: rdma (the default there)")
    assert "\n" not in str(exc.value)


def test_within_one_node_the_link_is_unchanged():
    dep = _dep(4, 1, 4, 1)  # 8 GPUs: one HGX node
    assert (dep.kv_link, dep.link_notes(), node_count(dep)) == ("nvlink", (), 1)
    assert _dep(2, 2, 2, 2, kv_link="pcie").kv_link == "pcie"
    assert _dep(8, 2, 8, 2, kv_link="rdma").link_notes() == ()  # rdma stated: nothing to say


def test_an_nvl72_rack_keeps_nvlink_to_72_gpus():
    assert _dep(4, 9, 4, 9, "gb200").kv_link == "nvlink"  # 72 GPUs, one NVLink domain
    assert _dep(4, 9, 4, 10, "gb200").kv_link == "rdma"  # 76: a second rack


def test_an_autoscaled_group_counts_its_most_replicas():
    dep = build_deployment({"model": M8, "instances": [
        {"role": "prefill", "tp": 4, "replicas": 2,
         "autoscale": {"min_replicas": 1, "metric": "running", "target": 16}},
        {"role": "decode", "tp": 4, "replicas": 1}]})
    assert dep.kv_link == "rdma"  # up to 12 GPUs: two nodes


@pytest.mark.parametrize("layout", [(1, 1, 1, 1), (4, 1, 4, 1), (2, 3, 2, 1), (4, 1, 8, 1), (8, 1, 8, 1),
                                    (1, 4, 1, 5), (8, 1, 16, 1)])
def test_the_link_leaves_nvlink_exactly_where_the_export_takes_a_second_node(layout):
    dep = _dep(*layout)
    assert (dep.kv_link == "rdma") == (node_count(dep) > 1)


@pytest.mark.parametrize("gpus", [8, 9, 32])
def test_plan_and_the_deployment_apply_one_rule(gpus):
    h100 = load_hardware("h100-sxm")
    planned = kv_link_between("nvlink", "h100-sxm", h100, "h100-sxm", h100, gpus)
    assert planned[1] == phases_apart("h100-sxm", "h100-sxm", gpus)
    assert _dep(1, gpus // 2, 1, gpus - gpus // 2).kv_link == planned[0]


def test_disaggregated_helper_leaves_the_link_unset():
    assert disaggregated(M8, "h100-sxm", 8, 8).kv_link == "rdma"  # 16 GPUs
    assert disaggregated(M8, "h100-sxm", 1, 1).kv_link == "nvlink"
    with pytest.raises(PhasewiseError, match="kv_link nvlink cannot carry KV beyond one 8-GPU node"):
        disaggregated(M8, "h100-sxm", 8, 8, kv_link="nvlink")


FLAGS = dict(model=M70, arch="disagg", prefill_workers=2, decode_workers=2, tp=8, rate=1.0, requests=10)


def test_simulate_without_kv_link_beyond_one_node_costs_rdma_and_says_so():
    spec = build(**FLAGS)
    assert spec.deployment.kv_link == "rdma"
    assert spec.notes == ("KV transfers costed over rdma beyond one 8-GPU node of h100-sxm, not the default "
                          "--kv-link nvlink: NVLink and PCIe do not leave a node",)


def test_simulate_refuses_a_typed_kv_link_nvlink_beyond_one_node_naming_the_flag():
    with pytest.raises(PhasewiseError) as exc:
        build(**FLAGS, kv_link="nvlink")
    assert str(exc.value) == ("--kv-link nvlink cannot carry KV beyond one 8-GPU node of h100-sxm: NVLink and PCIe do "
                              "not leave a node; give --kv-link rdma (the default there)")
    assert build(**FLAGS, kv_link="rdma").notes == ()


def test_simulate_on_two_chips_still_notes_rdma_once():
    spec = build(model=M8, arch="disagg", prefill_hardware="h200", decode_hardware="h100-sxm", rate=1.0,
                 requests=10)
    assert spec.deployment.kv_link == "rdma"
    assert spec.notes == ("KV transfers costed over rdma with prefill on h200 and decode on h100-sxm (two machines), "
                          "not the default --kv-link nvlink: NVLink and PCIe do not leave a node",)
    assert build(model=M8, arch="disagg", rate=1.0, requests=10).deployment.kv_link == "nvlink"
