"""Serving a diffusion LM: instances that batch their requests' forwards, event by event.

Requests (any Workload: a trace or synthetic arrivals; or a ClosedLoop of clients) are routed round-robin to
`replicas` identical instances (a closed loop runs on one). An instance admits waiting requests FCFS while
fewer than `batch_cap` are active; each iteration batches every active request's next forward (a refresh over
prompt + canvas, or a block step), costs the batch as one forward (perf/dllm.py: CostModel over the summed
BatchShape), and advances each request by that forward (sim/dllm_request.py drew its life). A request
finishes with its last block. Per request: time to first block (the first block fully decoded: reported as
TTFT), time per output token after it, end-to-end latency, answer tokens per second.
Deterministic: request i draws from its own generator seeded by (seed, i), whatever it is batched with.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.dllm import DllmCost
from phasewise.sim.dllm_request import KINDS, RequestPlan, plan_request
from phasewise.sim.metrics import dist_ms
from phasewise.specs.dllm import DllmDecoding
from phasewise.workload import ClosedLoop, Workload


@dataclass(slots=True)
class DllmRun:
    """What a dLLM simulation produced: per-request times (s), plans, per-instance counters, a timeline."""

    decoding: DllmDecoding
    plans: list[RequestPlan]
    arrival_s: np.ndarray
    admit_s: np.ndarray
    first_block_s: np.ndarray
    finish_s: np.ndarray
    replica: np.ndarray
    replicas: int
    batch_cap: int
    iterations: list[int]
    busy_s: list[float]
    batch_sum: list[int]
    iteration_start_s: list[list[float]]
    timeline: list[tuple[int, float, float, str, int]] = field(default_factory=list)  # request, start, end, kind, block
    wall_s: float = 0.0

    @property
    def answer_tokens(self) -> np.ndarray:
        return np.array([p.answer_tokens for p in self.plans], dtype=np.int64)

    def e2e_s(self) -> np.ndarray:
        return self.finish_s - self.arrival_s

    def ttfb_s(self) -> np.ndarray:
        return self.first_block_s - self.arrival_s

    def tpot_s(self) -> np.ndarray:
        """(E2E - time to first block) / (answer tokens - 1), as a benchmark client computes TPOT from what it
        receives (vllm bench: (E2E - TTFT) / (output tokens - 1)); the first block's tokens but its first are among
        them. Divided by the answer tokens after the first block, an answer within one block had TPOT 0 where the
        request stopped there (odb) and its trailing blocks' whole time where it decodes them all (fast-dllm).
        NaN for a one-token answer: it has no gap between tokens (vllm bench skips output_len <= 1; the
        autoregressive path leaves it undefined too, sim/cluster.py), so summaries leave it out and an SLO on TPOT
        does not apply to it (sim/metrics.py slo_met)."""
        after = self.answer_tokens - 1
        return np.where(after >= 1, (self.finish_s - self.first_block_s) / np.maximum(after, 1), math.nan)

    def records(self) -> dict[str, np.ndarray]:
        p = self.plans
        return {"request": np.arange(len(p)), "replica": self.replica, "arrival_s": self.arrival_s,
                "admit_s": self.admit_s, "first_block_s": self.first_block_s, "finish_s": self.finish_s,
                "prompt_tokens": np.array([x.prompt_tokens for x in p]), "answer_tokens": self.answer_tokens,
                "canvas_tokens": np.array([x.canvas_tokens for x in p]),
                "forwards": np.array([x.forwards for x in p]), "refreshes": np.array([x.refreshes for x in p]),
                "steps": np.array([x.steps for x in p])}

    def timeline_columns(self) -> dict[str, list]:
        """The recorded requests' forwards, one row each in time order per request: its replica, start and end (s),
        kind (full, refresh or step) and the block it decodes."""
        rows = sorted(self.timeline)
        return {"request": [r[0] for r in rows], "replica": [int(self.replica[r[0]]) for r in rows],
                "start_s": [r[1] for r in rows], "end_s": [r[2] for r in rows], "kind": [r[3] for r in rows],
                "block": [r[4] for r in rows]}

    def summary(self) -> dict[str, Any]:
        d, n = self.decoding, len(self.plans)
        done = np.isfinite(self.finish_s)
        span = float(np.max(self.finish_s[done]) - np.min(self.arrival_s)) if done.any() else math.nan
        answer = self.answer_tokens
        e2e = self.e2e_s()
        tok_s = answer / np.where(e2e > 0, e2e, np.nan)
        forwards = np.array([p.forwards for p in self.plans], dtype=np.float64)
        busy = sum(self.busy_s)
        return {
            "dllm": d.to_json(),
            "requests": n, "completed": int(done.sum()), "duration_s": span, "replicas": self.replicas,
            "batch_cap": self.batch_cap,
            "ttft_ms": dist_ms(self.ttfb_s()), "tpot_ms": dist_ms(self.tpot_s()), "e2e_ms": dist_ms(e2e),
            "queue_ms": dist_ms(self.admit_s - self.arrival_s),
            "tokens_per_s": {"mean": float(np.nanmean(tok_s)), "p50": float(np.nanpercentile(tok_s, 50))},
            # a run of one request has no rate: its span is its own E2E (sim/metrics.py NO_RATE)
            "throughput": {"requests_per_s": done.sum() / span if span > 0 and n > 1 else math.nan,
                           "output_tokens_per_s": answer[done].sum() / span if span > 0 and n > 1 else math.nan},
            "per_request": {"answer_tokens": float(answer.mean()),
                            "canvas_tokens": float(np.mean([p.canvas_tokens for p in self.plans])),
                            "forwards": float(forwards.mean()),
                            "refreshes": float(np.mean([p.refreshes for p in self.plans])),
                            "steps": float(np.mean([p.steps for p in self.plans])),
                            "tokens_per_forward": float(np.mean([p.canvas_tokens / p.forwards for p in self.plans]))},
            "instances": {"iterations": int(sum(self.iterations)),
                          "busy_fraction": busy / (span * self.replicas) if span > 0 else math.nan,
                          "mean_batch": sum(self.batch_sum) / max(sum(self.iterations), 1)},
            "sim": {"wall_s": self.wall_s},
        }

    def check_invariants(self) -> None:
        """Every request finished; its forwards decided exactly its canvas; time only moves forward."""
        for i, p in enumerate(self.plans):
            if not math.isfinite(self.finish_s[i]):
                raise AssertionError(f"request {i} did not finish")
            if sum(p.decided) != p.canvas_tokens:
                raise AssertionError(f"request {i}: decided {sum(p.decided)} tokens of a {p.canvas_tokens} canvas")
            if not self.arrival_s[i] <= self.admit_s[i] < self.first_block_s[i] <= self.finish_s[i]:
                raise AssertionError(f"request {i}: arrival, admission, first block and finish out of order")
        for starts in self.iteration_start_s:
            if any(b < a for a, b in zip(starts, starts[1:])):
                raise AssertionError("an iteration started before the previous one")
        last: dict[int, float] = {}
        for r, start, end, _, _ in self.timeline:
            if end <= start or start < last.get(r, -math.inf):
                raise AssertionError(f"request {r}: a forward ran backwards in time")
            last[r] = end


def simulate_dllm(dec: DllmDecoding, cost: DllmCost, workload: Workload | ClosedLoop, *, replicas: int = 1,
                  batch_cap: int = 1, seed: int = 0, timeline_requests: int = 3,
                  plans: list[RequestPlan] | None = None) -> DllmRun:
    """Serve `workload` with `dec` on `replicas` instances of `cost`'s model and chip; the first
    `timeline_requests` requests keep a per-forward timeline (refreshes vs block steps). `plans`: the requests'
    lives from an earlier run of the same lengths, decoding and seed (`DllmRun.plans`), reused as they are."""
    if replicas < 1:
        raise PhasewiseError(f"--replicas must be >= 1 (got {replicas})")
    if batch_cap < 1:
        raise PhasewiseError(f"--batch-cap must be >= 1 (got {batch_cap})")
    wall0 = time.perf_counter()
    closed = workload if isinstance(workload, ClosedLoop) else None
    if closed is not None:
        if replicas != 1:
            raise PhasewiseError("a closed loop (--concurrency) with --dllm runs on one instance: use --replicas 1 "
                                 "or an open loop (--rate, --trace)")
        if closed.warmup_requests:
            raise PhasewiseError("--warmup does not apply with --dllm")
        prompts, answers = closed.lengths()
        arrival = np.full(len(prompts), math.inf)
        arrival[:closed.concurrency] = 0.0
    else:
        prompts, answers, arrival = workload.prompt_tokens, workload.output_tokens, workload.arrival_s.copy()
    n = len(prompts)
    if plans is None:
        plans = [plan_request(dec, int(prompts[i]), int(answers[i]), np.random.default_rng([seed, i]))
                 for i in range(n)]
    elif len(plans) != n or any(p.prompt_tokens != prompts[i] or p.answer_tokens != min(max(int(answers[i]), 1),
                                                                                          dec.gen_length)
                                for i, p in enumerate(plans)):
        raise PhasewiseError("the plans given are not this workload's requests")
    run = DllmRun(dec, plans, arrival, np.full(n, math.nan), np.full(n, math.nan), np.full(n, math.inf),
                  np.arange(n) % replicas, replicas, batch_cap, [0] * replicas, [0.0] * replicas, [0] * replicas,
                  [[] for _ in range(replicas)])
    watch = set(range(min(timeline_requests, n)))
    for r in range(replicas):
        order = list(range(r, n, replicas))
        _serve(run, r, order, cost, closed, watch)
    run.wall_s = time.perf_counter() - wall0
    return run


def _serve(run: DllmRun, replica: int, order: list[int], cost: DllmCost, closed: ClosedLoop | None,
           watch: set[int]) -> None:
    """One instance: FCFS admission up to the batch cap, one batched forward per iteration."""
    plans, arrival = run.plans, run.arrival_s
    t, nxt, released = 0.0, 0, (closed.concurrency if closed is not None else len(order))
    waiting: deque[int] = deque()
    active: list[int] = []
    pos: dict[int, int] = {}
    starts = run.iteration_start_s[replica]
    while True:
        while nxt < len(order) and arrival[order[nxt]] <= t:
            waiting.append(order[nxt])
            nxt += 1
        while waiting and len(active) < run.batch_cap:
            r = waiting.popleft()
            run.admit_s[r] = t
            active.append(r)
            pos[r] = 0
        if not active:
            if nxt < len(order) and math.isfinite(arrival[order[nxt]]):
                t = float(arrival[order[nxt]])
                continue
            break
        if len(active) == 1:
            row = plans[active[0]].rows[pos[active[0]]]
        else:
            row = tuple(map(sum, zip(*(plans[r].rows[pos[r]] for r in active))))
        start = t
        t = start + cost.row_s(row)
        starts.append(start)
        run.iterations[replica] += 1
        run.busy_s[replica] += t - start
        run.batch_sum[replica] += len(active)
        still = []
        for r in active:
            p, k = plans[r], pos[r]
            if r in watch:
                run.timeline.append((r, start, t, KINDS[p.kind[k]], p.block[k]))
            if k == p.first_block_forward:
                run.first_block_s[r] = t
            k += 1
            if k == p.forwards:
                run.finish_s[r] = t
                if closed is not None and released < len(order):
                    arrival[order[released]] = t + closed.think_s
                    released += 1
            else:
                pos[r] = k
                still.append(r)
        active = still


__all__ = ["DllmRun", "simulate_dllm"]
