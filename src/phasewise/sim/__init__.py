"""Request-level serving simulator: event loop, instances, schedulers, KV memory, transfers, metrics."""

from phasewise.sim.deployment import Deployment, InstanceGroup, SpecDecode
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.simulate import simulate

__all__ = ["Deployment", "InstanceGroup", "SimResult", "Slo", "SpecDecode", "simulate"]
