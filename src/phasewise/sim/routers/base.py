"""The router seam: a policy picks the instance each arriving request (or each KV transfer) goes to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance


class Router:
    """Base policy over a fixed list of instances; subclasses implement `choose` for two or more."""

    __slots__ = ("instances",)

    def __init__(self, instances: list[Instance]) -> None:
        self.instances = instances

    def pick(self) -> Instance:
        return self.instances[0] if len(self.instances) == 1 else self.choose()

    def choose(self) -> Instance:
        raise NotImplementedError

    def pick_for(self, req) -> Instance:
        """The instance for request `req` (a policy that looks at the request, e.g. its cached prefix, overrides)."""
        return self.pick()

    def must_hold(self) -> bool:
        """Whether a new request waits at the router for now (Dynamo's router queue); no by default."""
        return False

    def forget(self, inst: Instance) -> None:
        """`inst` stopped (an autoscaler's replica, sim/autoscaler.py _stop): drop what the policy recorded about it
        beyond the instance's own state; nothing by default (Dynamo's approximate index drops its blocks)."""
