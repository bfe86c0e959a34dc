"""The first stage of a pipeline-parallel replica, shared by its virtual engines.

A micro-batch occupies each stage for (at most) the slowest stage's time; the next micro-batch may
enter the first stage as soon as this one has left it. With `pp` virtual engines each waiting for its
own previous micro-batch (its sampled tokens), throughput grows with the stages while the pipeline is
full, and bubbles show when fewer micro-batches are in flight than stages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class PipelineGate:
    virtual_engines: int  # micro-batches in flight at most (= pipeline stages)
    free_at_s: float = 0.0  # when the first stage takes the next micro-batch

    def enter(self, now_s: float, stage_s: float) -> float:
        """A micro-batch ready at `now_s` whose slowest stage takes `stage_s`: when it starts."""
        start_s = now_s if now_s > self.free_at_s else self.free_at_s
        self.free_at_s = start_s + stage_s
        return start_s
