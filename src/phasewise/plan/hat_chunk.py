"""HAT's prompt-chunk size per device: the chunk of least simulated TTFT for a prompt on that device.

Small chunks let the upload of one chunk overlap the cloud's (and the device's) compute of the one before,
but every chunk pays a forward of its own (the weights read again, the launches) on the device and in the
cloud, and a per-transfer latency; large chunks pipeline nothing. So TTFT(c) is U-shaped and its minimum
moves with the device's uplink and compute. Objective: TTFT of one request alone on the device (the event
simulation of sim/device_cloud.py, so device input/output layers, up- and downlink and the cloud's middle
model are all in it); candidates: powers of two from `min_chunk_tokens` up to the prompt, and the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.sim.device_cloud import DeviceRequest, UShapedCost, run_device_cloud
from phasewise.specs.device_cloud import DeviceCloud
from phasewise.specs.hardware import EngineProfile
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    chunk_tokens: int
    ttft_s: float
    unchunked_ttft_s: float  # c = the whole prompt
    ttft_by_chunk: tuple[tuple[int, float], ...]  # (c, TTFT s), c ascending

    @property
    def reduction(self) -> float:
        """TTFT saved against sending the prompt in one piece (a fraction)."""
        return 1.0 - self.ttft_s / self.unchunked_ttft_s


def chunk_candidates(prompt_tokens: int, min_chunk_tokens: int = 1) -> list[int]:
    if prompt_tokens < 1 or min_chunk_tokens < 1:
        raise PhasewiseError("chunk search: the prompt and the smallest chunk need at least one token")
    out, c = [], min_chunk_tokens
    while c < prompt_tokens:
        out.append(c)
        c *= 2
    return out + [prompt_tokens]


def plan_chunk(model: ModelSpec, quant: QuantScheme, engine: EngineProfile, setup: DeviceCloud, prompt_tokens: int,
               min_chunk_tokens: int = 1, cost: UShapedCost | None = None) -> ChunkPlan:
    """The chunk size of least simulated TTFT for one device of `setup` (its uplink, downlink, compute)."""
    cost = cost or UShapedCost(model, quant, engine, setup)
    curve = []
    for chunk in chunk_candidates(prompt_tokens, min_chunk_tokens):
        run = run_device_cloud(model, quant, engine, setup, [DeviceRequest(prompt_tokens, 0, chunk)], cost=cost)
        curve.append((chunk, run.requests[0].ttft_s))
    best = min(curve, key=lambda x: (x[1], -x[0]))
    return ChunkPlan(best[0], best[1], curve[-1][1], tuple(curve))
