"""`phasewise serve`: the digital twin, an OpenAI-compatible server whose tokens stream at the simulator's timings
(apps/twin.py, apps/twin_live.py), on the deployment the same flags as `simulate` describe."""

from __future__ import annotations

import math
import re
import socket
import time
from types import SimpleNamespace
from typing import Annotated, Optional

import typer

from phasewise.apps.cli_common import (
    AdpBatchingWaitIters,
    AdpEnableBalance,
    AdpTimeoutIters,
    All2allBackend,
    Arch,
    AsyncScheduling,
    AttentionDp,
    BatchWaitMaxTokensRatio,
    BatchWaitTimeoutIters,
    ChunkedPrefill,
    ChunkedPrefillSize,
    ChunkSize,
    CompileCache,
    Conservativeness,
    CudaGraphMaxBatchSize,
    CudaGraphMaxBs,
    CudaGraphPadding,
    DecodeAttentionDp,
    DecodeEp,
    DecodeHardware,
    DecodeTp,
    DecodeWorkers,
    DeploymentFile,
    DisableHybridSwaMemory,
    DisableOverlapScheduler,
    Engine,
    EntryPoint,
    Ep,
    Hardware,
    HicacheWritePolicy,
    HostKvCache,
    HpEngine,
    HpInstances,
    KvDtype,
    KvLink,
    KvOverlapWeight,
    KvStore,
    LpEngine,
    MambaSsmDtype,
    MappingOption,
    MaxBatchSize,
    MaxNumBatchedTokens,
    MaxNumSeqs,
    MaxNumTokens,
    MaxPrefillTokens,
    MaxRunningRequests,
    MemoryFraction,
    Migration,
    MixedChunk,
    Model,
    MoeA2aBackend,
    MoeImbalance,
    MoeTp,
    PartialPrefills,
    PiecewiseCudaGraph,
    PiecewiseMaxTokens,
    Pp,
    Precision,
    PrefillAttentionDp,
    PrefillDelayer,
    PrefillDelayerPasses,
    PrefillEp,
    PrefillHardware,
    PrefillTp,
    PrefillWorkers,
    PrefixCaching,
    RecvIntervalOption,
    Replicas,
    Router,
    RouterKvEvents,
    RouterQueueThreshold,
    RouterTemperature,
    RouterTtl,
    RoutingSkew,
    Scheduler,
    SlackMarginMs,
    SpecAcceptance,
    SpecDraft,
    SpecTokens,
    SwaFullTokensRatio,
    Tp,
    WeightsReadGbps,
    app,
    console,
    given_knobs,
    given_layout,
    refuse_typed_beside_deployment,
    refuse_typed_hardware_beside_role_hardware,
    refuse_typed_tp_beside_role_tps,
)
from phasewise.errors import PhasewiseError, refuse_empty

MAX_COLD_START_WAIT_S = 86_400  # --cold-start / --speed: a twin that waits longer than a day is a typo, not a test


@app.command("serve")
def serve_cmd(
    model: Model = "meta-llama/Llama-3.1-8B",
    hardware: Hardware = "h100-sxm",
    tp: Tp = 1,
    pp: Pp = 1,
    precision: Precision = None,
    kv_dtype: KvDtype = None,
    engine: Engine = "vllm",
    replicas: Replicas = None,
    arch: Arch = "collocated",
    prefill_workers: PrefillWorkers = None,
    decode_workers: DecodeWorkers = None,
    deployment: DeploymentFile = None,
    entry_point: EntryPoint = "server",
    max_num_seqs: MaxNumSeqs = None,
    max_num_batched_tokens: MaxNumBatchedTokens = None,
    enable_chunked_prefill: ChunkedPrefill = None,
    max_num_partial_prefills: PartialPrefills = None,
    async_scheduling: AsyncScheduling = None,
    chunk_size: ChunkSize = None,
    chunked_prefill_size: ChunkedPrefillSize = None,
    max_running_requests: MaxRunningRequests = None,
    max_prefill_tokens: MaxPrefillTokens = None,
    enable_mixed_chunk: MixedChunk = None,
    cuda_graph_max_bs: CudaGraphMaxBs = None,
    schedule_conservativeness: Conservativeness = None,
    scheduler_recv_interval: RecvIntervalOption = None,
    enable_piecewise_cuda_graph: PiecewiseCudaGraph = None,
    piecewise_cuda_graph_max_tokens: PiecewiseMaxTokens = None,
    mamba_ssm_dtype: MambaSsmDtype = None,
    swa_full_tokens_ratio: SwaFullTokensRatio = None,
    disable_hybrid_swa_memory: DisableHybridSwaMemory = None,
    hicache_write_policy: HicacheWritePolicy = None,
    moe_a2a_backend: MoeA2aBackend = None,
    all2all_backend: All2allBackend = None,
    enable_prefill_delayer: PrefillDelayer = None,
    prefill_delayer_max_delay_passes: PrefillDelayerPasses = None,
    max_batch_size: MaxBatchSize = None,
    max_num_tokens: MaxNumTokens = None,
    cuda_graph_max_batch_size: CudaGraphMaxBatchSize = None,
    cuda_graph_padding_enabled: CudaGraphPadding = None,
    disable_overlap_scheduler: DisableOverlapScheduler = None,
    attention_dp_enable_balance: AdpEnableBalance = None,
    attention_dp_timeout_iters: AdpTimeoutIters = None,
    attention_dp_batching_wait_iters: AdpBatchingWaitIters = None,
    batch_wait_timeout_iters: BatchWaitTimeoutIters = None,
    batch_wait_max_tokens_ratio: BatchWaitMaxTokensRatio = None,
    spec_tokens: SpecTokens = 0,
    spec_acceptance: SpecAcceptance = None,
    spec_draft: SpecDraft = None,
    prefill_tp: PrefillTp = None,
    decode_tp: DecodeTp = None,
    prefill_hardware: PrefillHardware = None,
    decode_hardware: DecodeHardware = None,
    kv_link: KvLink = None,
    router: Router = "least_outstanding",
    kv_overlap_score_weight: KvOverlapWeight = None,
    router_temperature: RouterTemperature = None,
    router_queue_threshold: RouterQueueThreshold = None,
    router_kv_events: RouterKvEvents = None,
    router_ttl_s: RouterTtl = None,
    prefix_caching: PrefixCaching = None,
    host_kv_cache_gb: HostKvCache = None,
    kv_store_gb: KvStore = None,
    scheduler: Scheduler = None,
    hp_instances: HpInstances = None,
    lp_engine: LpEngine = "ascendra-lp",
    hp_engine: HpEngine = "ascendra-hp",
    slack_margin_ms: SlackMarginMs = 300.0,
    migration: Migration = "auto",
    slo_ttft_ms: Annotated[float, typer.Option(help="priority pools: the TTFT deadline they steer by (ms)")] = float("inf"),
    slo_tpot_ms: Annotated[float, typer.Option(help="priority pools: the TPOT deadline they steer by (ms)")] = float("inf"),
    memory_fraction: MemoryFraction = None,
    mapping: MappingOption = None,
    ep: Ep = None,
    moe_tp: MoeTp = None,
    attention_dp: AttentionDp = None,
    prefill_ep: PrefillEp = None,
    decode_ep: DecodeEp = None,
    prefill_attention_dp: PrefillAttentionDp = None,
    decode_attention_dp: DecodeAttentionDp = None,
    moe_imbalance: MoeImbalance = None,
    routing_skew: RoutingSkew = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall second")] = 1.0,
    tokenizer: Annotated[Optional[str], typer.Option(help="tokenizer.json (default: built-in approximate count)")] = None,
    served_model_name: Annotated[Optional[str], typer.Option(help="model id clients must send (default --model)")] = None,
    max_request_bytes: Annotated[int, typer.Option(help="largest request body accepted (413 beyond)")] = 4 * 2**20,
    max_concurrent_requests: Annotated[int, typer.Option(help="requests in flight before new ones get 429")] = 4096,
    image_size: Annotated[Optional[str], typer.Option(help="a multimodal model: the size WIDTHxHEIGHT of images sent by URL, which the twin does not fetch (an inline data: URL's size is read from it)")] = None,
    cold_start: Annotated[str, typer.Option(help="wait before listening, as an engine starting up does: off, auto (the engine's predicted start-up: weights, init, torch.compile, CUDA graphs) or SECONDS; simulated seconds, divided by --speed")] = "off",
    enable_prompt_tokens_details: Annotated[bool, typer.Option("--enable-prompt-tokens-details", "--enable-cache-report", help="report each request's prefix-cache hits in its usage, usage.prompt_tokens_details.cached_tokens, when there are any, as vLLM (--enable-prompt-tokens-details) and SGLang (--enable-cache-report) do; needs a deployment that caches prefixes")] = False,
    dynamo_namespace: Annotated[Optional[str], typer.Option(help="label the dynamo_frontend_* series /metrics serves with dynamo_namespace=NAME, which Dynamo's planner filters on (a Kubernetes scrape adds it from the pod's labels instead)")] = None,
    weights_read_gbps: WeightsReadGbps = None,
    compile_cache: CompileCache = None,
) -> None:
    """An OpenAI-compatible server whose tokens stream at the simulator's timings (the digital twin)."""
    import uvicorn

    from phasewise.apps.tokenizer import Tokenizer
    from phasewise.apps.twin import create_app, draining_server
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim import Slo
    from phasewise.sim.api import deployment_from_flags

    DrainingServer = draining_server()
    refuse_typed_beside_deployment(deployment)
    refuse_empty(dict(served_model_name=served_model_name, tokenizer=tokenizer, host=host))
    if not 0 < port < 65536:
        raise PhasewiseError(f"--port must be in 1..65535 (got {port})")
    refuse_typed_tp_beside_role_tps(arch, prefill_tp, decode_tp)
    refuse_typed_hardware_beside_role_hardware(arch, prefill_hardware, decode_hardware)
    dep = deployment_from_flags(model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype,
                                engine=engine, replicas=replicas, arch=arch, prefill_workers=prefill_workers,
                                decode_workers=decode_workers, deployment=deployment, entry_point=entry_point,
                                spec_tokens=spec_tokens, spec_acceptance=spec_acceptance, spec_draft=spec_draft,
                                prefill_tp=prefill_tp, decode_tp=decode_tp, prefill_hardware=prefill_hardware,
                                decode_hardware=decode_hardware, kv_link=kv_link, router=router,
                                kv_overlap_score_weight=kv_overlap_score_weight, router_temperature=router_temperature,
                                router_queue_threshold=router_queue_threshold, router_kv_events=router_kv_events,
                                router_ttl_s=router_ttl_s, memory_fraction=memory_fraction,
                                mapping=mapping, prefix_caching=prefix_caching,
                                host_kv_cache_gb=host_kv_cache_gb, kv_store_gb=kv_store_gb,
                                scheduler=scheduler, hp_instances=hp_instances, lp_engine=lp_engine,
                                hp_engine=hp_engine, slack_margin_ms=slack_margin_ms, migration=migration,
                                **given_layout(locals()), **given_knobs(locals()))
    refuse_unread_slos(dep, slo_ttft_ms, slo_tpot_ms)
    for flag, value in (("--max-request-bytes", max_request_bytes),
                        ("--max-concurrent-requests", max_concurrent_requests)):
        if value < 1:
            raise PhasewiseError(f"{flag} must be >= 1 (got {value})")
    if dynamo_namespace is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", dynamo_namespace):
        raise PhasewiseError(f"--dynamo-namespace must be letters, digits, '_', '.' or '-' (got {dynamo_namespace!r})")
    live = LiveSim(dep, speed, Slo(slo_ttft_ms, slo_tpot_ms))
    live.dynamo_namespace = dynamo_namespace
    if enable_prompt_tokens_details and all(instance.kv.prefix is None for instance in live.instances):
        raise PhasewiseError("--enable-prompt-tokens-details reports prefix-cache hits, and no instance of this "
                             "deployment caches prefixes (its engine's default, or --prefix-caching off): turn "
                             "--prefix-caching on or drop the flag")
    startup_s, startup_words = cold_start_s(live, cold_start, weights_read_gbps, compile_cache)
    if startup_s / speed > MAX_COLD_START_WAIT_S:
        raise PhasewiseError(f"--cold-start: {startup_s:g} simulated s at --speed {speed:g} is a wait of "
                             f"{startup_s / speed:.3g} s before listening; at most {MAX_COLD_START_WAIT_S:,} s (a day)")
    url_image_px = None
    if image_size is not None:
        from phasewise.workload import image_inputs

        refuse_empty(dict(image_size=image_size))
        url_image_px = image_inputs(1, image_size, None).one_size("serve")
        live.model.image_geometry(*url_image_px, flag="--image-size")  # a text model, or a size it refuses
    name = served_model_name or (dep.model if deployment else model)
    app = create_app(live, name, Tokenizer(tokenizer), max_request_bytes=max_request_bytes,
                     max_concurrent_requests=max_concurrent_requests, url_image_px=url_image_px,
                     prompt_tokens_details=enable_prompt_tokens_details)
    check_listen_address(host, port)  # after every other refusal (a test's --port 1 is never bound), before a banner
    for note in deployment_notes(dep):  # as simulate prints them, before the banner
        console.print(f"[yellow]note[/] {note}", highlight=False)
    server = DrainingServer(uvicorn.Config(app, host=host, port=port, log_level="warning", loop="auto", http="auto"),
                            live, say=console.print)
    try:
        if startup_s > 0:  # as vLLM and SGLang do, the port opens once the engine is up: until then, refused
            console.print(f"phasewise twin: starting up ({startup_words}), listening in {startup_s / speed:.1f} s")
            time.sleep(startup_s / speed)
            live.start_clock()
        console.print(f"phasewise twin: {name} on {dep.gpus} simulated GPU(s) at {speed:g}x, "
                      f"http://{host}:{port}/v1")
        server.run()  # SIGTERM / SIGINT: stop accepting, let open streams finish, then exit 0 (apps/twin.py)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C before it listens (a replica scaled down while starting up)
        console.print("phasewise twin: stopped before listening")
        return
    if server.stopped_now:  # a second Ctrl-C ended open requests with an error: an interrupted command's status
        raise typer.Exit(130)


def check_listen_address(host: str, port: int) -> None:
    """Before any banner: --host names an address of this machine and --port is free there, else a one-line error
    naming them (uvicorn would print the URL first, then fail with its own "[Errno ...]" line and exit 3). The port is
    bound and let go at once, with SO_REUSEADDR as uvicorn binds it (a port in TIME_WAIT is free to both)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise PhasewiseError(f"--host '{host}': {why} (give an address or name of this machine: 127.0.0.1, the "
                             "default, or 0.0.0.0 for every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise PhasewiseError(f"--host '{host}' --port {port}: cannot listen there "
                                 f"({exc.strerror or exc})") from None


def deployment_notes(dep) -> tuple[str, ...]:
    """What the deployment does that serve's flags may not say, in simulate's words (sim/api.py build): a link left
    unset costed over RDMA (Deployment.link_notes), prefix_aware routing over instances that cache no prefixes, and
    router settings with no choice to make (sim/run_notes.py). The twin's prompts carry their prefix hashes
    (apps/twin_admission.py), as a trace with hash_ids does."""
    from phasewise.sim.api import prefix_notes, router_notes

    return dep.link_notes() + prefix_notes(SimpleNamespace(prefix_hashes=()), dep) + router_notes(dep)


def refuse_unread_slos(dep, slo_ttft_ms: float, slo_tpot_ms: float) -> None:
    """A one-line error for an SLO flag nothing in serve reads: only priority pools steer by the SLOs; the twin's
    /metrics report latencies, not attainment, and attention offload, the other reader in simulate, does not run live.
    One beside the pools' block's own is refused as simulate refuses it (sim/priority_pools.py headline_slo, the rule's
    one place). Unset (inf): nothing to check."""
    from phasewise.sim.metrics import Slo
    from phasewise.sim.priority_pools import headline_slo

    pools = dep.priority_pools
    if pools is None:
        for flag, value in (("--slo-ttft-ms", slo_ttft_ms), ("--slo-tpot-ms", slo_tpot_ms)):
            if value != math.inf:
                raise PhasewiseError(f"{flag} is the deadline priority pools steer by: it needs --scheduler ascendra "
                                     "(or a --deployment with a priority_pools block); nothing else in serve reads it")
        return
    headline_slo(pools, Slo(slo_ttft_ms, slo_tpot_ms), flags=True)


def cold_start_s(live, cold_start: str, weights_read_gbps: float | None,
                 compile_cache: str | None) -> tuple[float, str]:
    """`--cold-start`: the simulated seconds the twin waits before listening, and what they are made of."""
    if cold_start == "auto":
        estimate = live.startup(weights_read_gbps, compile_cache)
        return estimate.total_s, f"predicted {estimate.summary()}"
    given = [flag for flag, value in (("--weights-read-gbps", weights_read_gbps),
                                      ("--compile-cache", compile_cache))
             if value is not None]
    if given:
        raise PhasewiseError(f"{given[0]} shapes the predicted start-up: it needs --cold-start auto "
                             f"(got --cold-start {cold_start})")
    if cold_start == "off":
        return 0.0, ""
    try:
        seconds = float(cold_start)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise PhasewiseError(f"--cold-start must be off, auto or a number of seconds >= 0 (got '{cold_start}')")
    return seconds, f"{seconds:g} s as given"
