"""NVIDIA Dynamo's SLA planner for one group of a deployment (an `autoscale` block with metric sla;
sim/autoscaler.py calls it), as components/planner (planner_core.py, its PrefillPlanner and DecodePlanner) sizes
prefill and decode workers, its profile and its latency regressions the cost model's instead of a profiling sweep's
and of forward-pass metrics.

Throughput-based: every adjustment interval it reads the frontend's counters over the interval
(sim/frontend_counters.py): requests received, and over the requests finished their mean ISL, OSL, TTFT, ITL and
duration; it skips the adjustment where none finished (its metrics NaN: "no active requests"). Its predictors
(sim/load_predictor.py: constant, the last interval's, or Kalman; one each for requests, ISL and OSL, fed every
interval, and first a warm-up trace's intervals when given) forecast the next interval's load, and it wants
- prefill: ceil(requests x ISL / interval x min(1, TTFT correction) / (ISL / TTFT(ISL))), an engine's prefill
  throughput its profile's for one request of ISL tokens alone (chunked as the engine chunks it), whatever that
  TTFT against the SLA (Dynamo's PrefillPlanner._compute_replica_requirements divides by
  PrefillInterpolator.interpolate_thpt_per_gpu(ISL) with no TTFT test: a prompt slower alone than ttft_s still
  counts its load);
- decode: ceil(requests x OSL / interval / decode throughput), the engine's best (the largest batch at a context of
  ISL + OSL / 2 that its KV cache holds and whose step meets ITL / ITL correction; where even a batch of one misses
  it, a batch of one's, the lightest point: DecodeInterpolator.find_best_throughput_per_gpu returns the lightest
  profiled point when none meets the ITL, and DecodePlanner falls back to min_endpoint only on a throughput <= 0);
never fewer than the group's min_replicas. Corrections (unless `correction: false`): the observed mean TTFT over
the profile's at the observed ISL, and the observed ITL over the profile's at the decode replicas' mean
concurrency (requests / replicas x duration / interval), both over what the interval observed. Replicas are set
to what it wants at once, up or down (no tolerance, no stabilization window); the group's `replicas` caps it, and
a GPU budget over both groups trims both (sim/planner_budget.py).

Load-based (`load_scaling`): every load period, unless a scaling it asked for is still starting, it predicts each
ready replica's next latency from what it holds: prefill, the TTFT of its queued prompt tokens plus a mean prompt
(the finished requests' so far) in token-budget chunks; decode, the step of its running and queued sequences over
their KV tokens. All above the SLA: one replica more; all below load_down_sensitivity x the SLA: one fewer (never
below min_replicas, nor below the throughput-based count when both run).

A collocated group is Dynamo's aggregated planner (agg_planner.py; its profile sim/agg_profile.py):
throughput-based, ceil(requests / interval / the engine's request rate at the largest decode batch meeting both
the TTFT and the ITL with the prefill that feeds it riding along), no correction; load-based, both predictions on
every replica with the other phase riding along (each prompt chunk beside the decode batch, the next decode step
beside the prompt tokens its iterations carried), one more when either is above its SLA everywhere, one fewer when
both are below their thresholds everywhere. Dynamo fits these iteration times by regression on forward-pass
metrics; here the cost model prices them.

A replica removed drains its requests (sim/autoscaler.py); Dynamo documents that its planner terminates a worker
without draining, so the simulated scale-downs are the kind case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.sim.agg_profile import agg_engine_rps, agg_ttft_s, engine_share, mixed_step_s
from phasewise.sim.frontend_counters import FrontendCounters
from phasewise.sim.load_predictor import LoadPredictor, warmup_intervals
from phasewise.workload.traces import load_trace

if TYPE_CHECKING:
    from phasewise.sim.autoscale_block import Autoscale
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.instance import Instance


@dataclass(slots=True, frozen=True)
class Adjustment:
    """One adjustment's inputs and result (the run's `policy` / `autoscale` / `adjustments`)."""

    t_s: float
    requests: int  # received over the interval (the predicted load for the next)
    isl: float
    osl: float
    ttft_s: float  # observed means over the requests finished in the interval
    itl_s: float
    correction: float  # the prefill group's TTFT correction, or the decode group's ITL correction
    replicas: int  # wanted
    next_requests: float  # the predictor's forecast for the next interval, which `replicas` is sized for
    next_isl: float
    next_osl: float


class SlaPlanner:
    __slots__ = ("config", "cluster", "engine", "role", "last", "correction", "adjustments", "floor", "load_ups",
                 "load_downs", "budget_trims", "predictors", "_chunk_s", "_last_stats")
    # load_ups / downs: its decisions that changed the replicas (sim/autoscaler.py counts them); budget_trims: the
    # adjustments a GPU budget over both groups lowered (sim/planner_budget.py)

    def __init__(self, config: Autoscale, cluster: Cluster, engine: Instance) -> None:
        """`engine`: one of the group's replicas, whose cost model, engine knobs and KV cache are the profile."""
        self.config, self.cluster, self.engine, self.role = config, cluster, engine, engine.role
        if cluster.frontend is None:  # the cluster counts finished requests from now on (every planner reads them)
            cluster.frontend = FrontendCounters()
        self.last = cluster.frontend.copy()
        self.correction = 1.0
        self.adjustments: list[Adjustment] = []
        self.floor = config.min_replicas  # the throughput-based count, a floor for the load-based decisions
        self.load_ups = self.load_downs = self.budget_trims = 0
        self.predictors = tuple(LoadPredictor(config.predictor, config.predictor_log1p, config.kalman_q_level or 0.0,
                                              config.kalman_q_trend or 0.0, config.kalman_r or 0.0)
                                for _ in range(3))  # requests, ISL, OSL
        if config.predictor_warmup_trace is not None and config.throughput_scaling:
            try:
                past = load_trace(config.predictor_warmup_trace)
            except PhasewiseError as exc:  # a bad row, or a file gone since the block was read: name the field
                raise PhasewiseError(f"autoscale predictor_warmup_trace: {exc}") from None
            intervals = warmup_intervals(past.arrival_s, past.prompt_tokens, past.output_tokens, config.sync_period_s)
            for k, predictor in enumerate(self.predictors):
                predictor.warm([interval[k] for interval in intervals])
        self._chunk_s: dict[int, float] = {}  # a prefill chunk's seconds by its tokens (the load-based TTFT)
        self._last_stats: dict[int, tuple[int, int]] = {}  # a replica's prompt tokens and iterations at the last look

    # --- the profile (Dynamo's pre-deployment sweep, here the cost model's) ---------------------------------------
    def prefill_ttft_s(self, isl: int) -> float:
        """One request of `isl` tokens alone on the engine: its prefill chunks' iterations in turn."""
        engine, inst = self.engine.engine, self.engine
        chunk = engine.prefill_chunk_tokens if engine.chunked_prefill else isl
        total_s, done = 0.0, 0
        while done < isl:
            take = min(chunk, isl - done)
            shape = BatchShape()
            shape.add(take, done, inst.model.causal, inst.window, logits=1 if done + take >= isl else 0)
            total_s += inst.cost.fast(shape)[0]
            done += take
        return total_s

    def decode_itl_s(self, batch: int, context: int) -> float:
        """A decode step of `batch` sequences at `context` tokens each (the seconds between a sequence's tokens,
        speculative decoding's accepted tokens a step counted)."""
        return mixed_step_s(self.engine, 0, batch, context) / self.engine.tokens_per_step

    def best_decode_tokens_per_s(self, itl_s: float, context: int) -> float:
        """The engine's decode throughput at the largest batch whose step meets `itl_s` (its KV cache and sequence
        cap bounding the batch; a step's time rises with the batch: bisection); where even a batch of one misses it,
        a batch of one's, the lightest point (Dynamo's DecodeInterpolator.find_best_throughput_per_gpu returns its
        sweep's lightest point when none meets the ITL, so DecodePlanner still sizes the group on the load; its
        min_endpoint fallback is for a throughput <= 0, which a step's finite time never gives)."""
        seqs, kv_tokens = engine_share(self.engine)  # (sim/agg_profile.py: a PP virtual engine's share)
        most = max(1, min(seqs, kv_tokens // max(context, 1)))
        low, high = 1, most
        if self.decode_itl_s(most, context) <= itl_s:
            low = most
        while high - low > 1:
            middle = (low + high) // 2
            if self.decode_itl_s(middle, context) <= itl_s:
                low = middle
            else:
                high = middle
        return low / self.decode_itl_s(low, context)  # low 1 where a batch of one misses: the lightest point

    # --- one adjustment -------------------------------------------------------------------------------------------
    def wanted(self, now: float, ready: int, requests: int) -> int | None:
        """The replicas the next interval needs, `requests` routed over it; None: no request finished in the
        interval (no adjustment)."""
        config = self.config
        interval = self.cluster.frontend.since(self.last)
        self.last = self.cluster.frontend.copy()
        isl, osl, ttft_s, itl_s, duration_s = interval.means()
        for predictor, observed in zip(self.predictors, (requests, isl, osl)):
            predictor.observe(observed)  # every interval, one with no request finished too (as 0)
        if math.isnan(isl):
            return None
        period = config.sync_period_s
        if self.role == "prefill":  # the corrections compare the profile with what the interval observed
            profile_ttft_s = self.prefill_ttft_s(max(int(round(isl)), 1))
            if config.correction:
                self.correction = ttft_s / profile_ttft_s
        elif self.role == "decode" and config.correction and ready and not math.isnan(itl_s):
            concurrency = requests / ready * duration_s / period
            observed_context = max(int(isl + osl / 2), 1)
            self.correction = itl_s / self.decode_itl_s(max(int(round(concurrency)), 1), observed_context)
        next_requests, next_isl, next_osl = (predictor.predict() for predictor in self.predictors)
        if self.role == "collocated":  # Dynamo's aggregated planner: no correction, the engine's rate at both SLAs
            best = agg_engine_rps(self.engine, next_isl, next_osl, config.ttft_s, config.itl_s)
            want = math.ceil(next_requests / period / best) if best > 0 else 0
        elif self.role == "prefill":  # the next interval's load at the profile's throughput for its prompts
            profile_ttft_s = self.prefill_ttft_s(max(int(round(next_isl)), 1))
            need = next_requests * next_isl / period * min(1.0, self.correction)
            want = math.ceil(need / (max(next_isl, 1.0) / profile_ttft_s))  # no TTFT test, as Dynamo's
        else:
            target_s = config.itl_s / self.correction if self.correction > 0 else config.itl_s
            best = self.best_decode_tokens_per_s(target_s, max(int(next_isl + next_osl / 2), 1))
            want = math.ceil(next_requests * next_osl / period / best) if best > 0 else 0
        want = max(want, config.min_replicas)
        self.floor = want
        self.adjustments.append(Adjustment(now, requests, isl, osl, ttft_s, itl_s, self.correction, want,
                                           next_requests, next_isl, next_osl))
        return want

    # --- load-based -----------------------------------------------------------------------------------------------
    def _prefill_chunk_s(self, tokens: int) -> float:
        if tokens not in self._chunk_s:
            shape = BatchShape()
            shape.add(tokens, 0, self.engine.model.causal, self.engine.window)
            self._chunk_s[tokens] = self.engine.cost.fast(shape)[0]
        return self._chunk_s[tokens]

    def _iteration_prefill_tokens(self, inst: Instance) -> int:
        """The prompt tokens a replica's iterations carried on average since the last look (Dynamo's moving average
        of its forward passes' scheduled prefill tokens)."""
        stats = inst.stats
        tokens, iterations = self._last_stats.get(inst.index, (0, 0))
        self._last_stats[inst.index] = (stats.prefill_tokens, stats.iterations)
        done = stats.iterations - iterations
        return (stats.prefill_tokens - tokens) // done if done > 0 else 0

    def next_latency_s(self, inst: Instance, role: str) -> float:
        """A ready replica's predicted next TTFT (role prefill) or ITL (decode) from what it holds now; a collocated
        replica's with the other phase riding along (its decode batch beside each prompt chunk, the prompt tokens
        its iterations carried beside the next decode step), as Dynamo's aggregated planner estimates them."""
        frontend = self.cluster.frontend
        mean_prompt = frontend.input_tokens // frontend.requests if frontend.requests else 0
        engines = (inst, *inst.siblings)  # those drawing on its KV pool (a PP replica's virtual engines share one)
        if self.role == "collocated":
            seqs = inst.running.n
            pooled = sum(engine.running.n for engine in engines)
            context = inst.kv.used * inst.kv.block_size // pooled if pooled else 0
            if role == "prefill":
                queued = sum(req.prefill_target - req.prefilled for req in (*inst.waiting, *inst.prefilling))
                return agg_ttft_s(inst, queued + mean_prompt, seqs, context)
            return mixed_step_s(inst, self._iteration_prefill_tokens(inst), seqs + 1,
                                context or mean_prompt) / inst.tokens_per_step
        if role == "prefill":
            queued = sum(req.prefill_target - req.prefilled for req in inst.waiting)
            queued += sum(req.prefill_target - req.prefilled for req in inst.prefilling)
            tokens = queued + mean_prompt
            budget = inst.engine.token_budget
            full, rest = divmod(tokens, budget)
            return full * self._prefill_chunk_s(budget) + (self._prefill_chunk_s(rest) if rest else 0.0)
        seqs = inst.running.n + len(inst.ready) + len(inst.pending_transfers)
        if not seqs:
            return 0.0
        pooled = sum(engine.running.n + len(engine.ready) + len(engine.pending_transfers) for engine in engines)
        kv_tokens = inst.kv.used * inst.kv.block_size + sum(req.prompt for engine in engines
                                                            for req, _ in engine.pending_transfers)
        return self.decode_itl_s(seqs, max(kv_tokens // pooled, 1))

    def load_step(self, ready: list[Instance]) -> int:
        """+1, -1 or 0 replicas: the load-based decision over the ready replicas. A collocated group (Dynamo's
        aggregated planner) weighs both: one more when either the TTFT or the ITL of every replica is predicted
        above its SLA, one fewer only when both are below their thresholds on every replica."""
        if not ready:
            return 0
        roles = ("prefill", "decode") if self.role == "collocated" else (self.role,)
        ups, downs = [], []
        for role in roles:
            sla_s = self.config.ttft_s if role == "prefill" else self.config.itl_s
            latencies = [self.next_latency_s(inst, role) for inst in ready]
            ups.append(all(latency > sla_s for latency in latencies))
            downs.append(all(latency < sla_s * self.config.load_down_sensitivity for latency in latencies))
        if any(ups):
            return 1
        return -1 if len(ready) > 1 and all(downs) else 0

    def summary(self) -> dict:
        """The planner's settings and decisions, for the autoscaler's entry in the run's `policy`."""
        config = self.config
        return {"ttft_s": config.ttft_s, "itl_s": config.itl_s, "throughput_scaling": config.throughput_scaling,
                "correction": config.correction, "load_scaling": config.load_scaling,
                "load_period_s": config.load_period_s, "load_down_sensitivity": config.load_down_sensitivity,
                "load_scale_ups": self.load_ups, "load_scale_downs": self.load_downs,
                "predictor": config.predictor, "predictor_log1p": config.predictor_log1p,
                "predictor_warmup_trace": config.predictor_warmup_trace,
                "max_gpu_budget": config.max_gpu_budget, "budget_trims": self.budget_trims,
                "adjustments": [{"t_s": a.t_s, "requests": a.requests, "isl": a.isl, "osl": a.osl,
                                 "ttft_s": a.ttft_s, "itl_s": a.itl_s, "correction": a.correction,
                                 "replicas": a.replicas, "next_requests": a.next_requests, "next_isl": a.next_isl,
                                 "next_osl": a.next_osl} for a in self.adjustments]}
