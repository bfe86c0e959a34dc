"""Per-iteration cost model: one forward pass over a batch of (new tokens, cached context) sequences."""

from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel, IterationCost, OperatorCost
from phasewise.perf.estimate import Estimate, estimate
from phasewise.perf.memory import MemoryFit, memory_fit
from phasewise.perf.stages import IterationParts, StageParts

__all__ = ["Estimate", "estimate", "BatchShape", "CostModel", "IterationCost", "IterationParts", "MemoryFit",
           "OperatorCost", "StageParts", "memory_fit"]
