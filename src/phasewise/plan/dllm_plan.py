"""`phasewise plan --dllm MODE`: diffusion-LM deployments ranked by goodput under SLOs.

Candidates: each chip x each batch cap whose requests fit one GPU (perf/dllm.py `memory_error`: every request
keeps the KV of its prompt + canvas, and the batch's largest forward holds the logits of every position it
decodes), with as many one-GPU instances as the budget holds. Goodput: the highest Poisson rate at which
`attainment` of the requests meet the SLOs as sim/metrics.py slo_met tests them (time to first block <= the TTFT
limit; TPOT after it <= the TPOT limit, for answers of more than one token) while the instance keeps up (it
completes >= 90 % of the offered rate over the run): bisection on one instance fed rate / replicas (round-robin
routing splits the load evenly), times the replicas.
Every evaluation is deterministic (one seed for all rates: the same requests at every rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.cost import CostModel
from phasewise.perf.dllm import DllmCost, memory_error
from phasewise.sim.dllm import DllmRun, simulate_dllm
from phasewise.sim.metrics import Slo, slo_met
from phasewise.specs import HardwareSpec, ModelSpec, QuantScheme, load_hardware, load_model, load_quant
from phasewise.specs.dllm import DllmDecoding
from phasewise.specs.engines import resolve_engine
from phasewise.workload import ClosedLoop, LengthDist, open_loop

OBJECTIVES = ("goodput-per-gpu", "goodput-per-dollar")
KEEP_UP = 0.9  # assumed: an instance that completes < 90 % of the offered rate over the run is falling behind
BISECTIONS = 10  # assumed: rate resolution of hi / 2^10, far below run-to-run noise


@dataclass(frozen=True, slots=True)
class DllmStrategy:
    hardware: str
    batch_cap: int
    replicas: int


@dataclass(slots=True)
class DllmRanked:
    strategy: DllmStrategy
    goodput_rps: float
    per_gpu_rps: float
    requests_per_dollar: float
    ttft_p90_ms: float  # at the goodput rate
    tpot_p90_ms: float
    e2e_mean_ms: float
    busy_fraction: float

    def to_json(self) -> dict:
        s = self.strategy
        return {"hardware": s.hardware, "batch_cap": s.batch_cap, "replicas": s.replicas,
                "goodput_rps": self.goodput_rps, "goodput_rps_per_gpu": self.per_gpu_rps,
                "requests_per_dollar": self.requests_per_dollar, "ttft_p90_ms": self.ttft_p90_ms,
                "tpot_p90_ms": self.tpot_p90_ms, "e2e_mean_ms": self.e2e_mean_ms, "busy_fraction": self.busy_fraction}


@dataclass(frozen=True, slots=True)
class DllmInstance:
    """One dLLM instance's engine, as simulate --dllm and plan --dllm both cost it (dllm_instance)."""
    cost: CostModel  # its forwards, with the engine preset's profile as resolved for the chip
    memory_fraction: float  # the share of GPU memory it may fill: --memory-fraction, else the engine's own
    engine: str  # the profile's name, for the summary


def check_memory_fraction(memory_fraction: float | None) -> None:
    """A one-line error for a --memory-fraction outside (0, 1] (None: the engine's own, always fine): simulate
    --dllm's and plan --dllm's one rule."""
    if memory_fraction is not None and not 0 < memory_fraction <= 1:
        raise PhasewiseError(f"--memory-fraction must be in (0, 1], the share of GPU memory the engine takes (got "
                             f"{memory_fraction:g})")


def dllm_instance(spec: ModelSpec, hw: HardwareSpec, quant: QuantScheme, engine: str, tp: int = 1,
                  memory_fraction: float | None = None) -> DllmInstance:
    """`engine` (a preset[@version], a profile key or file, as simulate's --engine) resolved for `hw` (specs/engines.py
    resolve_engine: the preset's profile on this chip and its memory fraction); `memory_fraction` the deployment's
    (None: the engine's default). The one place both simulate --dllm and plan --dllm turn --engine into a cost."""
    check_memory_fraction(memory_fraction)
    config = resolve_engine(engine, hw, tp=tp)
    return DllmInstance(CostModel(spec, hw, quant, config.profile, tp, 1), config.fraction(memory_fraction),
                        config.profile.name)


def diffusion_model(model: str) -> ModelSpec:
    """The model's spec; a one-line error naming --dllm when it is autoregressive (causal attention: it decodes one
    token a forward, no canvas). A scenario re-words the flag to its setup key (scenarios/base.py check_with)."""
    spec = load_model(model)
    if spec.causal:
        raise PhasewiseError(f"--dllm needs a diffusion LM (bidirectional attention, e.g. GSAI-ML/LLaDA-8B-Instruct);"
                             f" {spec.name} is autoregressive")
    return spec


def check_lengths(model: ModelSpec, dec: DllmDecoding, prompts, answers) -> None:
    """One-line errors for requests a dLLM cannot serve as asked: a prompt + canvas past the model's context (the
    canvas is always --gen-length positions), an answer longer than the canvas (it would be cut there). The flags'
    names are the CLI's; a scenario re-words them to its setup keys (scenarios/base.py check_with)."""
    prompts, answers = np.asarray(prompts), np.asarray(answers)
    context = model.max_position_embeddings or 0
    beyond = int(np.count_nonzero(prompts + dec.gen_length > context)) if context else 0
    if beyond:
        raise PhasewiseError(f"{beyond} of {len(prompts)} requests' prompt + --gen-length {dec.gen_length} canvas pass "
                             f"{model.name}'s {context:,}-token context (longest prompt {int(prompts.max()):,})")
    longer = int(np.count_nonzero(answers > dec.gen_length))
    if longer:
        raise PhasewiseError(f"{longer} of {len(answers)} answers are longer than the --gen-length {dec.gen_length} "
                             f"canvas (longest {int(answers.max()):,}); they would be cut there: raise --gen-length")


def attainment(run: DllmRun, slo_ttft_ms: float, slo_tpot_ms: float) -> float:
    """Share of requests that attain the SLOs as the autoregressive path's do (sim/metrics.py slo_met): time to first
    block as TTFT, and TPOT after it for answers of more than one token (a one-token answer has none)."""
    ok = slo_met(Slo(ttft_ms=slo_ttft_ms, tpot_ms=slo_tpot_ms), run.ttfb_s(), run.tpot_s(), math.nan,
                 run.answer_tokens)
    return float(ok.mean())


def rank_dllm(dec: DllmDecoding, model: str, hardware: list[str], gpus: int, batch_caps: list[int], *,
              prompt: LengthDist, answer: LengthDist, slo_ttft_ms: float, slo_tpot_ms: float, target: float,
              engine: str = "hf-eager", precision: str | None = None, objective: str = "goodput-per-gpu",
              requests: int = 200, seed: int = 0, memory_fraction: float | None = None,
              left_out: list[tuple[str, int]] | None = None) -> list[DllmRanked]:
    """Every fitting (chip, batch cap) with `gpus` one-GPU replicas, best first by `objective`; the (chip, cap)
    pairs whose batch does not fit are appended to `left_out` where given (the caller says so). `engine` and
    `memory_fraction` (None: the engine's own) resolved per chip as simulate --dllm resolves them (dllm_instance)."""
    if objective not in OBJECTIVES:
        raise PhasewiseError(f"--objective '{objective}' is not one of {', '.join(OBJECTIVES)} with --dllm")
    if not 0 < target <= 1:
        raise PhasewiseError(f"--attainment must be in (0, 1] (got {target})")
    if gpus < 1:
        raise PhasewiseError(f"--gpus must be >= 1 (got {gpus})")
    check_memory_fraction(memory_fraction)  # before any chip's instance: dllm_instance's rule
    spec = load_model(model)
    quant = load_quant(precision or spec.default_precision)
    # the requests every rate serves (open_loop draws the lengths after the gaps: the same at any rate), checked as
    # simulate --dllm checks its own
    served = open_loop(1.0, requests, prompt, answer, seed=seed)
    check_lengths(spec, dec, served.prompt_tokens, served.output_tokens)
    longest = int(served.prompt_tokens.max())
    out, refused = [], []
    for key in hardware:
        hw = load_hardware(key)
        instance = dllm_instance(spec, hw, quant, engine, memory_fraction=memory_fraction)
        cost = DllmCost.of(instance.cost)
        for cap in batch_caps:
            error = memory_error(cost.cm, dec, longest, cap, instance.memory_fraction, "--batch-caps")
            if error is not None:
                refused.append(error)
                if left_out is not None:
                    left_out.append((hw.key, cap))
                continue
            out.append(_evaluate(dec, cost, DllmStrategy(hw.key, cap, gpus), prompt, answer, slo_ttft_ms,
                                 slo_tpot_ms, target, requests, seed))
    if not out:
        # the copies, or one request's lengths, not the caps, are what does not fit: memory_error names their flags
        # (and a --memory-fraction given, the other way to make room)
        larger = f", or a larger --memory-fraction than {memory_fraction:g}" if memory_fraction is not None else ""
        for cause in ("copies", "lengths"):
            named = [e.text for e in refused if e.cause == cause]
            if named:
                raise PhasewiseError(named[0] + larger)
        raise PhasewiseError(f"no batch cap in {', '.join(map(str, batch_caps))} fits {spec.name} with its "
                             f"{dec.gen_length}-token canvas on {', '.join(hardware)}; try smaller --batch-caps"
                             f"{larger}")
    metric = (lambda r: r.per_gpu_rps) if objective == "goodput-per-gpu" else (lambda r: r.requests_per_dollar)
    return sorted(out, key=lambda r: (-metric(r), r.strategy.hardware, r.strategy.batch_cap))


def _evaluate(dec: DllmDecoding, cost: DllmCost, strategy: DllmStrategy, prompt: LengthDist, answer: LengthDist,
              slo_ttft_ms: float, slo_tpot_ms: float, target: float, requests: int, seed: int) -> DllmRanked:
    alone = simulate_dllm(dec, cost, ClosedLoop(1, min(requests, 8), prompt, answer, seed=seed), seed=seed)
    hi = 2.0 * strategy.batch_cap / float(alone.e2e_s().mean())  # past saturation for any batch speedup <= 2x cap

    plans = None  # the same requests at every rate (open_loop draws the lengths after the gaps): drawn once

    def run_at(rate: float) -> tuple[bool, DllmRun]:
        nonlocal plans
        run = simulate_dllm(dec, cost, open_loop(rate, requests, prompt, answer, seed=seed),
                            batch_cap=strategy.batch_cap, seed=seed, timeline_requests=0, plans=plans)
        plans = run.plans
        arrived = float(run.arrival_s.max() - run.arrival_s.min())
        served = float(run.finish_s.max() - run.arrival_s.min())
        keeps_up = served <= 0 or arrived / served >= KEEP_UP
        return keeps_up and attainment(run, slo_ttft_ms, slo_tpot_ms) >= target, run

    lo, best = 0.0, None
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        ok, run = run_at(mid)
        if ok:
            lo, best = mid, run
        else:
            hi = mid
    price = load_hardware(strategy.hardware).price_per_hour_usd
    rate = lo * strategy.replicas
    if best is None:
        return DllmRanked(strategy, 0.0, 0.0, 0.0, np.nan, np.nan, np.nan, 0.0)
    s = best.summary()
    return DllmRanked(strategy, rate, lo, rate * 3600 / (strategy.replicas * price) if price else np.nan,
                      s["ttft_ms"]["p90"], s["tpot_ms"]["p90"], s["e2e_ms"]["mean"], s["instances"]["busy_fraction"])


__all__ = ["DllmInstance", "DllmRanked", "DllmStrategy", "OBJECTIVES", "attainment", "check_lengths",
           "check_memory_fraction", "diffusion_model", "dllm_instance", "rank_dllm"]
