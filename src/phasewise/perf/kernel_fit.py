"""Kernel speedups between two quantization schemes, and the fit of one kernel constant to a measured one.

speedup(slow, fast) = time of the chosen operators under `slow` / under `fast`, both from CostModel.iteration
on the same model, hardware, engine and batch (the operators' time_s: max(compute, memory, dispatch) +
launch). fit_sync_mma_efficiency() bisects the one kernel constant of the W4A8 comparison, the fraction of
the chip's GEMM efficiency that mma.sync kernels reach (Efficiency.sync_mma_efficiency, quant_kernels.py),
until that speedup equals a measured one; it falls monotonically as the constant rises: one root.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.specs.hardware import EngineProfile, HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme

FFN_OPERATORS = ("mlp_gate_up", "mlp_down", "moe_experts", "moe_shared", "moe_latent_proj")
LINEAR_OPERATORS = ("qkv_proj", "o_proj") + FFN_OPERATORS
BISECTION_STEPS = 60


@dataclass(frozen=True, slots=True)
class KernelFit:
    """The hardware's sync_mma_efficiency fitted so that `scheme`'s operators take `target_speedup` times as
    long as the reference scheme's at one point; `start` is its value before the fit (the class default)."""

    scheme: str
    reference: str
    start: float
    value: float
    target_speedup: float
    start_speedup: float
    fitted_speedup: float

    def hardware(self, hardware: HardwareSpec) -> HardwareSpec:
        """`hardware` with the fitted constant."""
        return with_sync_mma_efficiency(hardware, self.value)


def with_sync_mma_efficiency(hardware: HardwareSpec, value: float) -> HardwareSpec:
    """`hardware` whose warp-synchronous mma.sync kernels reach `value` of its GEMM efficiency."""
    return hardware.model_copy(update={"efficiency": hardware.efficiency.model_copy(
        update={"sync_mma_efficiency": value})})


def operator_time_s(model: ModelSpec, hardware: HardwareSpec, quant: QuantScheme, engine: EngineProfile,
                    shape: BatchShape, operators: tuple[str, ...] | None = None, tp: int = 1) -> float:
    """Time of `operators` (all of them when None: the iteration's latency) of one iteration of `shape`."""
    cost = CostModel(model, hardware, quant, engine, tp, 1).iteration(shape)
    if operators is None:
        return cost.latency_s
    return sum(op.time_s for op in cost.operators if op.name in operators)


def speedup(model: ModelSpec, hardware: HardwareSpec, slow: QuantScheme, fast: QuantScheme,
            engine: EngineProfile, shape: BatchShape, operators: tuple[str, ...] | None = None) -> float:
    """How many times faster `fast` runs `operators` of one iteration of `shape` than `slow` does."""
    return (operator_time_s(model, hardware, slow, engine, shape, operators)
            / operator_time_s(model, hardware, fast, engine, shape, operators))


def fit_sync_mma_efficiency(model: ModelSpec, hardware: HardwareSpec, slow: QuantScheme, fast: QuantScheme,
                             engine: EngineProfile, shape: BatchShape, target_speedup: float,
                             operators: tuple[str, ...] = FFN_OPERATORS, lowest: float = 0.01) -> KernelFit:
    """Fit `hardware`'s sync_mma_efficiency so that speedup(slow, fast) over `operators` at `shape` equals
    `target_speedup` (bisection in [lowest, 1]; the speedup falls as the efficiency rises). An error when no
    value in that range reaches it (e.g. `slow` declares no mma.sync kernel, both schemes run mma.sync kernels so
    the constant moves both, or `shape` is memory-bound). Both schemes are timed at each trial value."""

    def ratio(value: float) -> float:
        trial = with_sync_mma_efficiency(hardware, value)
        return speedup(model, trial, slow, fast, engine, shape, operators)

    lo, hi = lowest, 1.0
    lo_ratio, hi_ratio = ratio(lo), ratio(hi)
    if not hi_ratio <= target_speedup <= lo_ratio:
        # speedup(slow, fast): how many times faster `fast` runs than `slow`
        raise PhasewiseError(f"no sync_mma_efficiency of {hardware.key} in [{lowest:g}, 1] gives {fast.name} a "
                             f"speedup of {target_speedup:g} over {slow.name} (range {hi_ratio:.3g}-{lo_ratio:.3g})")
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if ratio(mid) > target_speedup:
            lo = mid
        else:
            hi = mid
    value = 0.5 * (lo + hi)
    start = hardware.efficiency.sync_mma_efficiency
    return KernelFit(slow.name, fast.name, start, value, target_speedup, ratio(start), ratio(value))
