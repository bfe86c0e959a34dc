"""A deployment's links (a base of sim/deployment.py's Deployment, whose fields it reads): the KV link between its
prefill and decode groups (and its priority pools), the encoders' link to the instances that prefill, and the rule
they share, rdma where the parts they join cannot share one node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import model_validator

from phasewise.errors import PhasewiseError
from phasewise.specs.hardware import chips_apart

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment


def link_between(asked: str | None, apart: str | None, what: str = "KV") -> tuple[str, str | None]:
    """(the link `what` crosses between two parts of a deployment, why `asked` cannot be it or None): `asked` (None:
    unset, nvlink); where the parts cannot share one node (`apart`: phases_apart's or specs/hardware.py chips_apart's
    why), rdma, the default there, nvlink and PCIe not leaving a node. The one rule of the KV link (simulate's
    --kv-link, a deployment's kv_link) and the encoders' (--encode-link, encoders.link); plan's is
    plan/chip_budgets.py kv_link_between."""
    if apart is None:
        return asked or "nvlink", None
    if asked in (None, "rdma"):
        return "rdma", None
    return asked, f"{asked} cannot carry {what} {apart}: NVLink and PCIe do not leave a node"


def phases_apart(p_name: str, d_name: str, gpus: int, p_hw=None, d_hw=None) -> str | None:
    """Why a disaggregated deployment's prefill (on `p_name`) and decode (on `d_name`) instances cannot all share one
    node's NVLink or PCIe, or None: their chips differ (specs/hardware.py chips_apart: two machines), or their `gpus`
    (prefill and decode together; an autoscaled group's at its most replicas) pass one node's, the smaller
    gpus_per_node of the two chips (8 on an HGX board, 72 in an NVL72 rack): the export places the prefill
    instances, then the decode ones, node by node (apps/launch_nodes.py placements), and the router sends a
    prefill's KV to any decode instance, so some pair then sits on two nodes. `p_hw` / `d_hw`: the chips, loaded
    (else loaded here; one that does not load gives None, its own one-line error coming when the deployment is
    simulated). The one rule of a deployment's kv_link (Deployment.kv_apart), simulate's --kv-link (sim/flag_checks.py
    disagg_kv_link) and plan's (plan/chip_budgets.py kv_link_between)."""
    apart = chips_apart(p_name, d_name)
    if apart:
        return apart
    if p_hw is None or d_hw is None:
        from phasewise.specs import load_hardware

        try:
            p_hw, d_hw = p_hw or load_hardware(p_name), d_hw or load_hardware(d_name)
        except PhasewiseError:
            return None
    node = min(p_hw.interconnect.gpus_per_node, d_hw.interconnect.gpus_per_node)
    if gpus > node:
        return f"beyond one {node}-GPU node of {p_name}"
    return None


class DeploymentLinks:
    __slots__ = ()

    @model_validator(mode="after")
    def _links(self) -> Deployment:
        """The KV link and the encoders' where the parts they join cannot share one node (kv_apart, encoders_apart;
        link_between): rdma when unset (kept unset: link_notes says so), nvlink or pcie a one-line error."""
        link, refusal = link_between(self.kv_link if "kv_link" in self.model_fields_set else None, self.kv_apart())
        if refusal:
            raise ValueError(f"kv_link {refusal}; give kv_link: rdma (the default there)")
        object.__setattr__(self, "kv_link", link)  # frozen: set while validating, as the field's default
        encoders = self.encoders
        if encoders is not None:
            asked = encoders.link if "link" in encoders.model_fields_set else None
            link, refusal = link_between(asked, self.encoders_apart(), "the embeddings")
            if refusal:
                raise ValueError(f"encoders.link {refusal}; give link: rdma (the default there)")
            if link != encoders.link:  # a copy: the block given may be another deployment's too
                encoders = encoders.model_copy()
                object.__setattr__(encoders, "link", link)
                object.__setattr__(self, "encoders", encoders)
        return self

    def kv_apart(self) -> str | None:
        """Why KV cannot cross NVLink or PCIe here, or None: a prefill and a decode group that cannot share one node
        (phases_apart: on different chips, or more prefill and decode GPUs than one node's), or a low- and a
        high-priority pool (which migrate requests) on different chips (specs/hardware.py chips_apart)."""
        # an autoscaled group's replicas: the most it runs
        gpus = sum(g.gpus for g in self.instances if g.role in ("prefill", "decode"))
        for p_name in {g.hardware: None for g in self.instances if g.role == "prefill"}:
            for d_name in {g.hardware: None for g in self.instances if g.role == "decode"}:
                apart = phases_apart(p_name, d_name, gpus)
                if apart:
                    return apart
        for a in {g.hardware: None for g in self.instances if g.pool == "lp"}:
            for b in {g.hardware: None for g in self.instances if g.pool == "hp"}:
                apart = chips_apart(a, b, ("lp", "hp"))
                if apart:
                    return apart
        return None

    def encoders_apart(self) -> str | None:
        """Why the encoders' embeddings cannot cross NVLink or PCIe to the instances that prefill (chips_apart), or
        None."""
        if self.encoders is None:
            return None
        for g in self.instances:
            if g.role != "decode":
                apart = chips_apart(self.encoders.hardware, g.hardware, ("the encoders", f"the {g.role} instances"))
                if apart:
                    return apart
        return None

    def link_notes(self) -> tuple[str, ...]:
        """What a link left unset is costed over where it is not nvlink (_links), each naming the field as an error
        would (field_label: the flag where flags built the deployment), to print beside the run."""
        notes = []
        if "kv_link" not in self.model_fields_set and self.kv_link != "nvlink":
            notes.append(f"KV transfers costed over {self.kv_link} {self.kv_apart()}, not the default "
                         f"{self.field_label('kv_link')} nvlink: NVLink and PCIe do not leave a node")
        encoders = self.encoders
        if encoders is not None and "link" not in encoders.model_fields_set and encoders.link != "nvlink":
            notes.append(f"the encoders' embeddings costed over {encoders.link} {self.encoders_apart()}, not the "
                         f"default {self.field_label('encoders', 'link')} nvlink: NVLink and PCIe do not leave a node")
        return tuple(notes)
