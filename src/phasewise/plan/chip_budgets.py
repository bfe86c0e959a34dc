"""A plan's chips and their GPU budgets: each chip's --chip-gpus budget, how a plan across chips names each chip,
and the link a disaggregated deployment's KV moves over (one node's NVLink, else RDMA)."""

from __future__ import annotations

from pathlib import Path

from phasewise.errors import PhasewiseError, name_list
from phasewise.plan.options import PlanOptions, Strategy
from phasewise.sim.deployment import phases_apart
from phasewise.specs.catalog import looks_like_path
from phasewise.specs.hardware import catalog_key, chip_identity

# Where the export puts a disaggregated deployment's instances (apps/launch_nodes.py placements: the groups in order,
# prefill then decode, packed onto nodes of the chip's GPUs, an instance that fits one node not split across two),
# and so where its KV goes
PLACEMENT = ("the export places the prefill instances, then the decode ones, node by node, and the router sends a "
             "prefill's KV to any decode instance; NVLink and PCIe do not leave a node")


def kv_link_between(asked: str, p_name: str, p_hw, d_name: str, d_hw, gpus: int) -> tuple[str, str | None]:
    """(the link a disaggregated deployment of `gpus` GPUs moves its KV over, why it is not `asked` or None): the
    plan's --kv-link (nvlink by default) while every prefill and decode instance shares one node's NVLink domain
    (the chip's gpus_per_node: 8 on an HGX board, 72 in an NVL72 rack), rdma where they cannot: the deployment's
    GPUs beyond one node (PLACEMENT: some prefill-decode pair then sits on two nodes, and an instance spanning nodes
    is one already) or its phases on different chips: deployment_links.py phases_apart, the deployment's own rule. The
    link is one for the whole deployment (deployment_links.py kv_link): past one node, RDMA is the one every pair can
    use."""
    if asked == "rdma":
        return asked, None
    apart = phases_apart(p_name, d_name, gpus, p_hw, d_hw)
    return ("rdma", apart) if apart else (asked, None)


def chip_budget(opts: PlanOptions, chip: str, gpus: int) -> int:
    """The GPUs `chip` may use: its --chip-gpus budget (by catalog key or file), else the plan's --gpus."""
    own = own_budget(opts, chip)
    return gpus if own is None else own


def own_budget(opts: PlanOptions, chip: str) -> int | None:
    """`chip`'s own --chip-gpus budget (by catalog key or file); None where --chip-gpus gives it none."""
    identity = chip_identity(chip)
    return next((n for name, n in opts.chip_gpus if chip_identity(name) == identity), None)


def parse_chip_gpus(value: str, chips: list[str]) -> tuple[tuple[str, int], ...]:
    """--chip-gpus 'h100-sxm=16,b200=8': each chip (one the plan uses) with its GPU budget (an integer >= 1)."""
    used = {chip_identity(c): c for c in chips}
    out: list[tuple[str, int]] = []
    for item in name_list("--chip-gpus", value):
        chip, sep, count = item.partition("=")
        chip, count = chip.strip(), count.strip()
        if not sep or not chip or not count.isdigit() or int(count) < 1:
            raise PhasewiseError(f"--chip-gpus '{item}' is not CHIP=N with N an integer >= 1 (e.g. h100-sxm=16,b200=8)")
        if chip_identity(chip) not in used:
            raise PhasewiseError(f"--chip-gpus names {chip}, which the plan does not use (its chips: "
                                 f"{', '.join(chips)})")
        if any(chip_identity(name) == chip_identity(chip) for name, _ in out):
            raise PhasewiseError(f"--chip-gpus gives {chip} twice")
        out.append((used[chip_identity(chip)], int(count)))
    return tuple(out)


def strategy_chip(strategy: Strategy) -> str:
    """The chip a strategy of a plan across chips runs on (details['chip']), else '' (a plan on one chip)."""
    return strategy.details.get("chip", "")


def chip_labels(chips: list[str]) -> dict[str, str]:
    """How a plan across chips names each: a catalog key as it is, a user's hardware YAML by its file's stem
    (chips/my_chip.yaml -> my_chip) unless two files share it or it is a catalog key (then the path)."""
    stems = {chip: Path(chip).stem if looks_like_path(chip) else catalog_key(chip) or chip for chip in chips}
    taken = list(stems.values())
    return {chip: stem if taken.count(stem) == 1 and (not looks_like_path(chip) or catalog_key(stem) is None)
            else chip for chip, stem in stems.items()}
