"""The Python API behind `phasewise simulate`: the same arguments as the CLI flags.

    from phasewise.sim.api import build, run
    result = run(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", rate=8, requests=2000,
                 isl=1024, osl=256, slo_ttft_ms=1000, slo_tbt_ms=50)
    result.summary()["goodput"]
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.sim.deployment import Deployment, build_deployment, load_deployment
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.simulate import simulate
from phasewise.workload import ClosedLoop, LengthDist, Workload, load_trace, open_loop


@dataclass(slots=True)
class SimSpec:
    """Everything one simulation needs, as the CLI takes it."""

    deployment: Deployment
    workload: Workload | ClosedLoop
    slo: Slo


def deployment_from_flags(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1,
                          pp: int = 1, precision: str = "bf16", kv_dtype: str | None = None, engine: str = "vllm",
                          replicas: int = 1, arch: str = "collocated", prefill_workers: int = 1,
                          prefill_tp: int | None = None, decode_workers: int = 1, decode_tp: int | None = None,
                          kv_link: str = "nvlink", deployment: str | None = None, router: str = "least_outstanding",
                          scheduler: str = "vllm", chunk_size: int = 512, max_batch: int = 256,
                          max_batched_tokens: int = 8192, memory_fraction: float = 0.9, kv_admission: str = "greedy",
                          spec_tokens: int = 0, spec_acceptance: float = 0.7, spec_draft: str = "mtp") -> Deployment:
    """A Deployment from the CLI's deployment flags (or from --deployment FILE, which replaces them)."""
    if deployment is not None:
        return load_deployment(deployment)
    common = dict(hardware=hardware, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
                  scheduler=scheduler, chunk_size=chunk_size, max_batch=max_batch,
                  max_batched_tokens=max_batched_tokens, memory_fraction=memory_fraction, kv_admission=kv_admission)
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
          deployment: str | None = None, router: str = "least_outstanding",
          scheduler: str = "vllm", chunk_size: int = 512, max_batch: int = 256, max_batched_tokens: int = 8192,
          memory_fraction: float = 0.9, kv_admission: str = "greedy", spec_tokens: int = 0, spec_acceptance: float = 0.7, spec_draft: str = "mtp",
          trace: str | None = None, trace_limit: int | None = None, rate: float | None = None,
          requests: int = 1000, isl: float = 1024, osl: float = 256, isl_dist: str = "fixed",
          osl_dist: str = "fixed", isl_spread: float = 0.0, osl_spread: float = 0.0, arrival: str = "poisson",
          cv: float = 1.0, concurrency: int | None = None, seed: int = 0,
          slo_ttft_ms: float = float("inf"), slo_tbt_ms: float = float("inf")) -> SimSpec:
    slo = Slo(slo_ttft_ms, slo_tbt_ms)
    dep = deployment_from_flags(
        model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
        replicas=replicas, arch=arch, prefill_workers=prefill_workers, prefill_tp=prefill_tp,
        decode_workers=decode_workers, decode_tp=decode_tp, kv_link=kv_link, deployment=deployment, router=router,
        scheduler=scheduler, chunk_size=chunk_size, max_batch=max_batch, max_batched_tokens=max_batched_tokens,
        memory_fraction=memory_fraction, kv_admission=kv_admission, spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance, spec_draft=spec_draft)

    if trace is not None:
        work: Workload | ClosedLoop = load_trace(trace, trace_limit)
        if rate is not None:
            work = work.scaled_to_rate(rate)
    else:
        prompt = LengthDist(isl_dist, isl, isl_spread)
        output = LengthDist(osl_dist, osl, osl_spread)
        if concurrency is not None:
            if rate is not None:
                raise PhasewiseError("give either --rate (open loop) or --concurrency (closed loop), not both")
            work = ClosedLoop(concurrency, requests, prompt, output, seed=seed)
        else:
            if rate is None:
                raise PhasewiseError("the workload needs --trace, --rate (open loop) or --concurrency (closed loop)")
            work = open_loop(rate, requests, prompt, output, arrival=arrival, cv=cv, seed=seed)
    return SimSpec(dep, work, slo)


def run(check_invariants: bool = False, **kwargs) -> SimResult:
    spec = build(**kwargs)
    return simulate(spec.deployment, spec.workload, spec.slo, check_invariants=check_invariants)
