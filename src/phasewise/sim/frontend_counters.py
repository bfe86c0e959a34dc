"""What a serving frontend's Prometheus counters hold over the requests it finished (NVIDIA Dynamo's
dynamo_frontend_*: requests, input and output sequence tokens, time to first token, inter-token latency, request
duration, each a histogram's _sum and _count): a planner reads their increase over its interval, as its Prometheus
queries do (increase(x_sum[interval]) / increase(x_count[interval])). Kept by the cluster (sim/cluster.py finish)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from phasewise.sim.request import SimRequest


@dataclass(slots=True)
class FrontendCounters:
    requests: int = 0  # finished
    input_tokens: int = 0
    output_tokens: int = 0
    ttft_s: float = 0.0  # summed over the requests
    inter_token_s: float = 0.0  # the gaps between a request's tokens, summed (first to last token)
    inter_token_gaps: int = 0
    duration_s: float = 0.0  # arrival to last token, summed

    def observe(self, req: SimRequest) -> None:
        self.requests += 1
        self.input_tokens += req.prompt
        self.output_tokens += req.output
        self.ttft_s += req.first_token_s - req.arrival_s
        if req.output > 1:
            self.inter_token_s += req.finish_s - req.first_token_s
            self.inter_token_gaps += req.output - 1
        self.duration_s += req.finish_s - req.arrival_s

    def copy(self) -> FrontendCounters:
        return FrontendCounters(*(getattr(self, f.name) for f in fields(self)))

    def since(self, earlier: FrontendCounters) -> FrontendCounters:
        """The increase from `earlier` (a copy taken then) to now."""
        return FrontendCounters(*(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self)))

    def means(self) -> tuple[float, float, float, float, float]:
        """(ISL, OSL, TTFT s, ITL s, duration s) averaged over these requests; NaN where none finished (Prometheus'
        0 / 0), the ITL NaN too where none had a second token."""
        n = self.requests
        if not n:
            return (math.nan,) * 5
        itl_s = self.inter_token_s / self.inter_token_gaps if self.inter_token_gaps else math.nan
        return self.input_tokens / n, self.output_tokens / n, self.ttft_s / n, itl_s, self.duration_s / n
