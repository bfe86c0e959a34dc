"""The Python API behind `phasewise simulate`: the same arguments as the CLI flags.

    from phasewise.sim.api import build, run
    result = run(model="meta-llama/Llama-3.1-8B", hardware="h100-sxm", rate=8, requests=2000,
                 isl=1024, osl=256, slo_ttft_ms=1000, slo_tpot_ms=50)
    result.summary()["goodput"]

Here: what one simulation needs (SimSpec), its build from the flags (build: the workload, the SLO, the notes) and
its run (run). The deployment from the flags: sim/deployment_flags.py; the field each flag sets and where a
deployment file sets it: sim/flag_fields.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError, refuse_empty
from phasewise.sim.deployment import Deployment
from phasewise.sim.deployment_flags import (  # noqa: F401 (importable here, as before)
    HARDWARE_BESIDE_ROLE_HARDWARE,
    TP_BESIDE_ROLE_TPS,
    FlagOf,
    deployment_flag_names,
    deployment_from_flags,
    flag_named,
    flag_names,
    flag_of,
    refuse_hardware_beside_role_hardware,
)
from phasewise.sim.flag_checks import autoscale_flags, check_argument_types, host_kv_cache_bytes  # noqa: F401
from phasewise.sim.flag_fields import (  # noqa: F401 (importable here, as before)
    AUTOSCALE_FLAGS,
    BLOCK_FLAGS,
    ENCODER_FLAGS,
    OFFLOAD_FLAGS,
    POOL_FLAGS,
    ROLE_FLAGS,
    SPECULATIVE_FLAGS,
    YAML_PATHS,
    refuse_beside_deployment,
    yaml_path,
)
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.prefix_cache import migrates_kv
from phasewise.sim.priority_pools import headline_slo
from phasewise.sim.run_notes import prefix_notes, router_notes, seed_notes, trace_notes
from phasewise.sim.simulate import simulate
from phasewise.specs.hardware import chip_caveats
from phasewise.workload import (
    DEFAULT_ISL,
    DEFAULT_OSL,
    ClosedLoop,
    ImageInputs,
    LengthDist,
    Workload,
    check_arrival_span,
    check_length_flags,
    client_workload,
    image_inputs,
    load_client,
    load_trace,
    open_loop,
)


@dataclass(slots=True)
class SimSpec:
    """Everything one simulation needs, as the CLI takes it."""

    deployment: Deployment
    workload: Workload | ClosedLoop
    slo: Slo
    images: ImageInputs | None = None  # the images requests carry (workload/images.py)
    notes: tuple[str, ...] = ()  # what the flags did not say but the deployment does (its link_notes), to print
    seed: int = 0  # --seed: the lengths' and arrivals' draws (in the workload) and the routers' that draw


# requests one simulation generates at most (~12-16k simulated requests/s: benchmarks/bench_sim.py)
MAX_REQUESTS = 10_000_000


def build(*, model: str = "meta-llama/Llama-3.1-8B", hardware: str = "h100-sxm", tp: int = 1, pp: int = 1,
          precision: str | None = None, kv_dtype: str | None = None, engine: str = "vllm",
          replicas: int | None = None, arch: str = "collocated", prefill_workers: int | None = None,
          prefill_tp: int | None = None, decode_workers: int | None = None, decode_tp: int | None = None,
          kv_link: str | None = None,
          deployment: str | None = None, router: str = "least_outstanding",
          kv_overlap_score_weight: float | None = None, router_temperature: float | None = None,
          router_queue_threshold: float | None = None, router_kv_events: bool | None = None,
          router_ttl_s: float | None = None, entry_point: str = "server",
          memory_fraction: float | None = None, spec_tokens: int = 0, spec_acceptance: float | None = None,
          spec_draft: str | None = None,
          scheduler: str | None = None, hp_instances: int | None = None, lp_engine: str = "ascendra-lp",
          hp_engine: str = "ascendra-hp", slack_margin_ms: float = 300.0, migration: str = "auto",
          attention_offload: str = "off", attention_offload_sm_share: float | None = None,
          prefill_hardware: str | None = None, decode_hardware: str | None = None, mapping: str | None = None,
          online_training: str = "off", train_reuse_mode: str | None = None, feedback_share: float | None = None,
          train_batch_tokens: int | None = None, gpu_sharing: str | None = None,
          trainer_sm_share: float | None = None, lora_rank: int | None = None, keep_layers: int | None = None,
          host_link: str | None = None, prefix_caching: str | None = None, host_kv_cache_gb: float | None = None,
          kv_store_gb: float | None = None,
          trace: str | None = None,
          trace_limit: int | None = None, rate: float | None = None,
          requests: int | None = None, isl: float | None = None, osl: float | None = None,
          isl_dist: str | None = None, osl_dist: str | None = None, isl_spread: float | None = None,
          osl_spread: float | None = None, arrival: str | None = None,
          cv: float | None = None, concurrency: int | None = None, seed: int = 0,
          client: str | None = None, num_prompts: int | None = None, warmup: int | None = None,
          slo_ttft_ms: float = float("inf"), slo_tpot_ms: float = float("inf"), slo_tbt_ms: float = float("inf"),
          images_per_request: int | None = None, image_size: str | None = None, image_share: float | None = None,
          image_tokens_included: bool = False,
          **knobs) -> SimSpec:
    """`knobs`: engine knobs by their engines' names (see deployment_from_flags). Beside `deployment=FILE` a
    deployment argument off its default is refused; one at its default's value cannot be told from none here (the
    CLI passes every flag): run() refuses those too, as simulate refuses a flag typed beside --deployment."""
    check_argument_types(dict(trace_limit=trace_limit, requests=requests, num_prompts=num_prompts, warmup=warmup,
                              concurrency=concurrency, seed=seed, images_per_request=images_per_request),
                         dict(rate=rate, isl=isl, osl=osl, isl_spread=isl_spread, osl_spread=osl_spread, cv=cv,
                              slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, slo_tbt_ms=slo_tbt_ms,
                              image_share=image_share))
    refuse_empty(dict(isl_dist=isl_dist, osl_dist=osl_dist, arrival=arrival, client=client, image_size=image_size))
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_tbt_ms)
    if trace is None:
        images = image_inputs(images_per_request, image_size, image_share, included=image_tokens_included)
    dep = deployment_from_flags(
        model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
        replicas=replicas, arch=arch, prefill_workers=prefill_workers, prefill_tp=prefill_tp,
        decode_workers=decode_workers, decode_tp=decode_tp, kv_link=kv_link, deployment=deployment, router=router,
        kv_overlap_score_weight=kv_overlap_score_weight, router_temperature=router_temperature,
        router_queue_threshold=router_queue_threshold, router_kv_events=router_kv_events, router_ttl_s=router_ttl_s,
        entry_point=entry_point, memory_fraction=memory_fraction,
        spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance, spec_draft=spec_draft, scheduler=scheduler, hp_instances=hp_instances,
        lp_engine=lp_engine, hp_engine=hp_engine, slack_margin_ms=slack_margin_ms, migration=migration,
        attention_offload=attention_offload, attention_offload_sm_share=attention_offload_sm_share,
        prefill_hardware=prefill_hardware, decode_hardware=decode_hardware, mapping=mapping,
        online_training=online_training, train_reuse_mode=train_reuse_mode, feedback_share=feedback_share,
        train_batch_tokens=train_batch_tokens, gpu_sharing=gpu_sharing, trainer_sm_share=trainer_sm_share,
        lora_rank=lora_rank, keep_layers=keep_layers, host_link=host_link, prefix_caching=prefix_caching,
        host_kv_cache_gb=host_kv_cache_gb, kv_store_gb=kv_store_gb, **knobs)

    # the headline's SLOs: a priority_pools block's own where it sets them (--slo-* beside them refused)
    slo = headline_slo(dep.priority_pools, slo, flags=True)
    # Workload. Benchmark clients (--client) run a closed loop: request count, warm-up and lengths as they do.
    notes: tuple[str, ...] = ()  # SimSpec.notes
    if dep.priority_pools is not None and dep.priority_pools.class_slo_ms:
        notes += (f"priority_pools.class_slo_ms steers the pools by each request's class (its priority); the headline "
                  f"attainment scores every request against one SLO: {slo.describe()} (the block's slo_ttft_ms / "
                  "slo_tpot_ms, else --slo-*)",)
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
    if count is not None and count > MAX_REQUESTS:
        flag = "--requests" if requests is not None else "--num-prompts"
        raise PhasewiseError(f"{flag} must be <= {MAX_REQUESTS:,} (got {count:,}): a simulation this long is a sample "
                             "of a steady state; a shorter one gives the same figures")
    if seed < 0:
        raise PhasewiseError(f"--seed must be >= 0 (got {seed})")
    if trace is not None or concurrency is not None:
        for flag, value in (("--arrival", arrival), ("--cv", cv)):
            if value is not None:
                raise PhasewiseError(f"{flag} shapes open-loop arrivals (--rate without --trace); "
                                     f"{'a trace keeps its own' if trace is not None else 'a closed loop has none'}")
    if trace_limit is not None and trace is None:
        raise PhasewiseError("--trace-limit needs --trace (it takes a trace's first N requests)")
    if trace is not None:
        if count is not None:
            flag = "--requests" if requests is not None else "--num-prompts"
            raise PhasewiseError(f"{flag} does not apply to --trace (the trace is the requests; "
                                 "--trace-limit N takes its first N)")
        if concurrency is not None:
            raise PhasewiseError("--concurrency does not apply to --trace (a trace replays its own arrival times; "
                                 "--rate rescales them)")
        for flag, value in (("--isl", isl), ("--osl", osl), ("--isl-dist", isl_dist), ("--osl-dist", osl_dist),
                            ("--isl-spread", isl_spread), ("--osl-spread", osl_spread)):
            if value is not None:
                raise PhasewiseError(f"{flag} does not apply to --trace (the trace gives every request's lengths)")
        work: Workload | ClosedLoop = load_trace(trace, trace_limit)
        notes += trace_notes(trace, trace_limit, work, dep)
        images = image_inputs(images_per_request, image_size, image_share, work.image_counts, f"trace '{trace}'",
                              image_tokens_included)
        if rate is not None:
            work.check_rescalable()
            check_arrival_span(work.span_at_rate_s(rate), len(work), rate, "--rate")
            work = work.scaled_to_rate(rate)
    else:
        check_length_flags(isl, osl, isl_dist, osl_dist, isl_spread, osl_spread,
                           sampled_by="the client's sampling" if client else "fixed")
        if client is not None:  # a client's own dataset defaults (vllm-bench: 1024 / 128), else phasewise's, noted
            isl, osl, length_notes = load_client(client).lengths_for(isl, osl)
            notes += length_notes
        isl, osl = DEFAULT_ISL if isl is None else isl, DEFAULT_OSL if osl is None else osl
        isl_spread, osl_spread = isl_spread or 0.0, osl_spread or 0.0
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
            arrival = "poisson" if arrival is None else arrival
            if cv is not None and arrival != "gamma":
                raise PhasewiseError(f"--cv shapes gamma arrivals (--arrival gamma; got {arrival})")
            check_arrival_span((1000 if count is None else count) / rate, 1000 if count is None else count, rate,
                               "--rate")  # the arrivals' expected span, before drawing them
            work = open_loop(rate, 1000 if count is None else count, prompt, output, arrival=arrival,
                             cv=1.0 if cv is None else cv,
                             seed=seed)
    if isinstance(work, ClosedLoop) and work.requests + work.warmup_requests > MAX_REQUESTS:
        # the warm-up requests are simulated too: the cap is on all of them (a --warmup of 10^9 ran out of memory)
        flag = "--warmup" if warmup is not None else "--concurrency"  # else the client's warm-up per connection
        raise PhasewiseError(f"{flag}: {work.warmup_requests:,} warm-up requests beside {work.requests:,} measured "
                             f"ones pass the {MAX_REQUESTS:,} requests one simulation holds (warm-up ones are "
                             f"simulated too): at most {MAX_REQUESTS - work.requests:,} warm-up requests here")
    if knobs.get("encode_workers") is not None and images is None:
        raise PhasewiseError("--encode-workers needs image inputs (--images-per-request, or a trace with a NumImages "
                             "column and --image-size): without images the encode workers would have nothing to do")
    notes += dep.link_notes() + prefix_notes(work, dep)  # an unset --kv-link's rdma among them (disagg_kv_link)
    notes += router_notes(dep) + seed_notes(seed, work, trace is not None, dep)  # settings with nothing to act on
    if migrates_kv(dep) and any(group.prefix_caching is not False for group in dep.instances):
        notes += ("no instance caches prefixes with priority pools or attention offload, whatever its engine's "
                  "default (their migrations move KV blocks the cache does not follow; sim/prefix_cache.py): "
                  "--out's records have no cached_tokens column",)
    return SimSpec(dep, work, slo, images, notes, seed)


# simulate's diffusion-LM arguments (apps/dllm_view.py KNOB_FLAGS and --dllm): run() simulates autoregressive decoding
DLLM_ARGUMENTS = ("dllm", "gen_length", "block_length", "dllm_steps", "dllm_threshold", "dllm_cache", "tokens_per_step",
                  "tokens_per_step_probs", "jump_copies", "jump_probs", "batch_cap")


def run(check_invariants: bool = False, refuse_beyond_context: bool = False, **kwargs) -> SimResult:
    """`build(**kwargs)` simulated; the result's `caveats` and `notes` (its summary()'s "caveats" and "notes", as
    simulate --json gives them) are what `phasewise simulate` prints beside its figures. Two things simulate does
    are the caller's to ask for, as the library's own users (tests, the papers' replays) run without them:
    `refuse_beyond_context=True` rejects a request whose prompt and output pass the model's context as an engine
    does (simulate's; off, it runs if its KV fits, as the papers' replays run them), and result.rejection_warning()
    is simulate's line on requests that can never run, its one-line error ("nothing can run") where every one was
    rejected (summary()'s "rejected" / "rejected_by" count them either way). With `deployment=FILE`, any
    deployment argument given (not None), at its default's value too, is refused as simulate refuses its flag typed
    beside --deployment. A diffusion LM (LLaDA) is not run here: simulate --dllm, or
    phasewise.sim.dllm.simulate_dllm (its decoding, cost model and workload) in Python."""
    given = [name for name in DLLM_ARGUMENTS if name in kwargs]
    if given:
        raise PhasewiseError(f"run() does not take {given[0]}: it simulates autoregressive decoding; a diffusion LM "
                             "runs through `phasewise simulate --dllm`, or phasewise.sim.dllm.simulate_dllm in Python")
    if kwargs.get("deployment") is not None:  # the caller's own arguments: one at its default's value is told apart
        refuse_beside_deployment([name for name in deployment_flag_names() if kwargs.get(name) is not None])
    spec = build(**kwargs)
    result = simulate(spec.deployment, spec.workload, spec.slo, check_invariants=check_invariants, images=spec.images,
                      seed=spec.seed, refuse_beyond_context=refuse_beyond_context)
    result.caveats = chip_caveats(g.hardware for g in spec.deployment.instances)
    result.notes = spec.notes
    return result
