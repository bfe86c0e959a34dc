"""The Python API behind `phasewise simulate`: the same arguments as the CLI flags.

    from phasewise.sim.api import build, run
    result = run(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", rate=8, requests=2000,
                 isl=1024, osl=256, slo_ttft_ms=1000, slo_tbt_ms=50)
    result.summary()["goodput"]
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment, build_deployment, load_deployment
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.simulate import simulate
from phasewise.specs.engines import KNOB_TYPES
from phasewise.workload import ClosedLoop, LengthDist, Workload, client_workload, load_trace, open_loop


@dataclass(slots=True)
class SimSpec:
    """Everything one simulation needs, as the CLI takes it."""

    deployment: Deployment
    workload: Workload | ClosedLoop
    slo: Slo


def deployment_from_flags(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1,
                          pp: int = 1, precision: str = "bf16", kv_dtype: str | None = None, engine: str = "vllm",
                          entry_point: str = "server", replicas: int = 1, arch: str = "collocated",
                          prefill_workers: int = 1, prefill_tp: int | None = None, decode_workers: int = 1,
                          decode_tp: int | None = None, kv_link: str = "nvlink", deployment: str | None = None,
                          router: str = "least_outstanding", memory_fraction: float = 0.9, spec_tokens: int = 0,
                          spec_acceptance: float = 0.7, spec_draft: str = "mtp", **knobs) -> Deployment:
    """A Deployment from the CLI's deployment flags, or from --deployment FILE (then no other deployment
    flag may be given: the file is the whole deployment). `knobs` are engine knobs by their engines'
    names (max_num_seqs, max_num_batched_tokens, chunked_prefill_size, max_num_tokens, ...)."""
    unknown = sorted(set(knobs) - set(KNOB_TYPES))
    if unknown:
        raise PhasewiseError(f"unknown engine knob '{unknown[0]}' (known: {', '.join(KNOB_TYPES)})")
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if deployment is not None:
        given = dict(locals())
        defaults = {n: p.default for n, p in inspect.signature(deployment_from_flags).parameters.items()
                    if p.default is not inspect.Parameter.empty and n != "deployment"}
        beside = [n for n, d in defaults.items() if given[n] != d] + list(knobs)
        if beside:
            flag = beside[0].replace("_", "-")
            raise PhasewiseError(f"--{flag} cannot be combined with --deployment (the file sets the whole "
                                 f"deployment; put {beside[0]} in it)")
        return load_deployment(deployment)
    common = dict(hardware=hardware, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
                  entry_point=entry_point, memory_fraction=memory_fraction, **knobs)
    if arch == "collocated":
        groups = [dict(role="collocated", tp=tp, replicas=replicas, **common)]
    elif arch == "disagg":
        if decode_workers < 1:
            raise PhasewiseError("--decode-workers must be >= 1 with --arch disagg")
        if prefill_workers < 1:
            raise PhasewiseError("--prefill-workers must be >= 1 with --arch disagg")
        groups = [dict(role="prefill", tp=prefill_tp or tp, replicas=prefill_workers, **common),
                  dict(role="decode", tp=decode_tp or tp, replicas=decode_workers, **common)]
    else:
        raise PhasewiseError(f"--arch '{arch}' is not one of collocated, disagg")
    data = {"model": model, "instances": groups, "router": router, "kv_link": kv_link}
    if spec_tokens:
        data["speculative"] = {"draft_tokens": spec_tokens, "acceptance": spec_acceptance, "draft": spec_draft}
    return build_deployment(data, "deployment flags")


def build(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1, pp: int = 1,
          precision: str = "bf16", kv_dtype: str | None = None, engine: str = "vllm", replicas: int = 1,
          arch: str = "collocated", prefill_workers: int = 1, prefill_tp: int | None = None,
          decode_workers: int = 1, decode_tp: int | None = None, kv_link: str = "nvlink",
          deployment: str | None = None, router: str = "least_outstanding", entry_point: str = "server",
          memory_fraction: float = 0.9, spec_tokens: int = 0, spec_acceptance: float = 0.7, spec_draft: str = "mtp",
          trace: str | None = None, trace_limit: int | None = None, rate: float | None = None,
          requests: int | None = None, isl: float = 1024, osl: float = 256, isl_dist: str | None = None,
          osl_dist: str | None = None, isl_spread: float = 0.0, osl_spread: float = 0.0, arrival: str = "poisson",
          cv: float = 1.0, concurrency: int | None = None, seed: int = 0,
          client: str | None = None, num_prompts: int | None = None, warmup: int | None = None,
          slo_ttft_ms: float = float("inf"), slo_tbt_ms: float = float("inf"), **knobs) -> SimSpec:
    """`knobs`: engine knobs by their engines' names (see deployment_from_flags)."""
    slo = Slo(slo_ttft_ms, slo_tbt_ms)
    dep = deployment_from_flags(
        model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
        replicas=replicas, arch=arch, prefill_workers=prefill_workers, prefill_tp=prefill_tp,
        decode_workers=decode_workers, decode_tp=decode_tp, kv_link=kv_link, deployment=deployment, router=router,
        entry_point=entry_point, memory_fraction=memory_fraction, spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance, spec_draft=spec_draft, **knobs)

    # Workload. Benchmark clients (--client) run a closed loop: request count, warm-up and lengths as they do.
    if requests is not None and num_prompts is not None:
        raise PhasewiseError("give either --requests or --num-prompts (the same count), not both")
    count = num_prompts if num_prompts is not None else requests
    if num_prompts is not None and num_prompts < 1:
        raise PhasewiseError(f"--num-prompts must be >= 1 (got {num_prompts})")
    if client is not None and concurrency is None:
        raise PhasewiseError(f"--client {client} needs --concurrency C (benchmark clients run at fixed concurrency)")
    if warmup is not None and concurrency is None:
        raise PhasewiseError("--warmup needs --concurrency (and optionally --client): warm-up requests precede a "
                             "closed loop's measured ones")
    if trace is not None:
        if count is not None:
            flag = "--requests" if requests is not None else "--num-prompts"
            raise PhasewiseError(f"{flag} does not apply to --trace (the trace is the requests; "
                                 "--trace-limit N takes its first N)")
        if concurrency is not None:
            raise PhasewiseError("--concurrency does not apply to --trace (a trace replays its own arrival times; "
                                 "--rate rescales them)")
        work: Workload | ClosedLoop = load_trace(trace, trace_limit)
        if rate is not None:
            work = work.scaled_to_rate(rate)
    else:
        for flag, dist, spread in (("--isl-spread", isl_dist, isl_spread), ("--osl-spread", osl_dist, osl_spread)):
            if dist == "lognormal" and not spread > 0:
                raise PhasewiseError(f"{flag} must be > 0 for lognormal (the sigma of log length, e.g. 0.8)")
        prompt = LengthDist(isl_dist or "fixed", isl, isl_spread)
        output = LengthDist(osl_dist or "fixed", osl, osl_spread)
        if concurrency is not None:
            if rate is not None:
                raise PhasewiseError("give either --rate (open loop) or --concurrency (closed loop), not both")
            if client is not None:  # the client's length sampling unless --isl-dist/--osl-dist say otherwise
                work = client_workload(client, concurrency, count, warmup, isl, osl, seed,
                                       prompt=prompt if isl_dist is not None else None,
                                       output=output if osl_dist is not None else None)
            else:
                work = ClosedLoop(concurrency, 1000 if count is None else count, prompt, output, seed=seed,
                                  warmup_requests=warmup or 0)
        else:
            if rate is None:
                raise PhasewiseError("the workload needs --trace, --rate (open loop) or --concurrency (closed loop)")
            work = open_loop(rate, 1000 if count is None else count, prompt, output, arrival=arrival, cv=cv,
                             seed=seed)
    return SimSpec(dep, work, slo)


def run(check_invariants: bool = False, **kwargs) -> SimResult:
    spec = build(**kwargs)
    return simulate(spec.deployment, spec.workload, spec.slo, check_invariants=check_invariants)
