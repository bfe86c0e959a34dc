"""A weight GEMM's and a memory transfer's time, by the rule every operator of CostModel uses (a base class: it
reads the model's chip efficiencies, dtypes and quantization scheme, which CostModel.__init__ sets).

  compute = FLOPs / (peak of its dtype x efficiency that grows with the rows it multiplies: gemm_half_rows,
            a measured curve, or, on a chip built from parts, how the GEMM tiles onto its arrays: tiling.py),
            or the scheme's own main loop (quant_kernels.py), plus dequantization on the vector units;
  memory  = bytes / (bandwidth x efficiency that grows with the transfer size), the quantized weights at their
            kernels' streaming efficiency.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from phasewise.perf.quant_kernels import gemm_compute_s
from phasewise.perf.tiling import array_utilization
from phasewise.specs.quant import QuantScheme


class GemmCost:
    """CostModel's GEMMs and memory traffic (a base class)."""

    def memory_s(self, nbytes: float) -> float:
        """Time of `nbytes` of streaming memory traffic (reads + writes), by the rule every operator uses."""
        return self._memory_s(nbytes)

    def gemm(self, rows: float, k: float, n: float) -> tuple[float, float, float, float]:
        """(FLOPs, bytes, compute_s, memory_s) of one `rows` x k @ k x n GEMM with high-precision weights and no
        quantized kernel (e.g. a LoRA adapter), by the rule every projection of iteration() is costed with."""
        return self._gemm(rows, k, n, self.hp_bytes, self.attn_peak, False)

    def _memory_s(self, nbytes: float) -> float:
        if nbytes <= 0:
            return 0.0
        return nbytes / (self._stream_bw * nbytes / (nbytes + self.eff.memory_half_bytes))

    def _row_start_bytes(self, k: float, weight_bytes: float) -> float:
        """The per-row start-up cost of streaming `weight_bytes` of weight matrices whose contiguous rows hold `k`
        elements (torch stores W of x @ W^T as n x k), as bytes of streaming: with them the weights stream at
        k / (k + weight_row_half_elems) of the bandwidth (0 on GPUs: no effect)."""
        return weight_bytes * self.eff.weight_row_half_elems / k

    def _gemm(self, rows: float, k: float, n: float, w_bytes: float, peak: float, dequant: bool,
              weights: float = 1.0, extra_bytes: float = 0.0,
              row_tiles: Callable[[int], float] | None = None,
              scheme: QuantScheme | None = None) -> tuple[float, float, float, float]:
        """FLOPs, bytes, compute_s, memory_s of `rows` x k @ k x n, with `weights` copies of the weight read and
        `extra_bytes` streamed beside it (an LM head's logits); `row_tiles(R)`: the row tiles of R rows over all
        `weights` where their rows differ (a grouped GEMM's experts), else ceil(rows / weights / R) each; `scheme`:
        the stored weights' own scheme where it is not the model's (the routed experts': expert_quant), whose
        kernels, dequantization, small-batch tile and streaming efficiency then apply (`w_bytes`, `peak` its)."""
        if rows <= 0:
            return 0.0, 0.0, 0.0, 0.0
        quant = self.quant if scheme is None else scheme
        flops = 2.0 * rows * k * n
        weight_bytes = weights * k * n * w_bytes
        nbytes = weight_bytes + rows * (k + n) * self.a_bytes + extra_bytes
        if self._arrays is None:
            half_rows = None if scheme is None else min(self.eff.gemm_half_rows,
                                                         scheme.kernel_half_rows or self.eff.gemm_half_rows)
            eff = self._gemm_efficiency(rows / weights, dequant, half_rows)
        else:
            eff = self.gemm_eff * array_utilization(rows / weights, k, n, self._arrays)
        compute = flops / (peak * eff)
        kernel = quant.gemm_kernel
        if dequant and kernel is not None:  # the scheme's own main loop (quant_kernels.py)
            per_weight = row_tiles(kernel.tile_rows) / weights if row_tiles else None
            compute = gemm_compute_s(kernel, compute, weights * k * n, rows / weights,
                                     quant.dequant_ops_per_weight, self.vector_rate, self.eff.sync_mma_efficiency,
                                     per_weight)
        elif dequant and quant.dequant_ops_per_weight:
            tile = self.eff.dequant_tile_rows
            tiles = row_tiles(tile) if row_tiles else weights * math.ceil(rows / weights / tile)
            compute += k * n * tiles * quant.dequant_ops_per_weight / self.vector_rate
        memory = self._memory_s(nbytes + self._row_start_bytes(k, weight_bytes))
        if dequant:  # the model's own (quantized) weights: their kernels' streaming efficiency
            memory /= (self._weight_read_efficiency if scheme is None
                       else self.eff.weight_read_efficiency.get(scheme.weight_dtype, 1.0))
        return flops, nbytes, compute, memory

    def _gemm_efficiency(self, rows: float, own_kernel: bool = False, own_half_rows: float | None = None) -> float:
        """Fraction of the tensor peak a GEMM with `rows` activation rows per weight matrix reaches; `own_kernel`:
        the scheme's weight-expanding kernel multiplies the model's weights, at its kernel_half_rows where fewer
        (`own_half_rows`: another scheme's, the routed experts')."""
        curve = self._curve
        if curve is None:
            own = self._own_kernel_half_rows if own_half_rows is None else own_half_rows
            half_rows = own if own_kernel else self.eff.gemm_half_rows
            return self.gemm_eff * rows / (rows + half_rows)
        x = math.log(max(rows, 1.0))
        xs, ys = curve
        if x <= xs[0]:
            return ys[0] * self.engine.compute_efficiency
        if x >= xs[-1]:
            return ys[-1] * self.engine.compute_efficiency
        i = bisect.bisect_right(xs, x)
        t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
        return (ys[i - 1] + t * (ys[i] - ys[i - 1])) * self.engine.compute_efficiency

