"""`phasewise simulate`: a workload run on a deployment, per request and in sum (a diffusion LM's decoding through
apps/dllm_view.py)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from phasewise.apps import dllm_view as knobs  # --dllm's option declarations, shared with plan
from phasewise.apps.cli_common import (
    AdpBatchingWaitIters,
    AdpEnableBalance,
    AdpTimeoutIters,
    All2allBackend,
    Arch,
    AsyncScheduling,
    AttentionDp,
    AttentionOffload,
    AttentionOffloadSmShare,
    BatchWaitMaxTokensRatio,
    BatchWaitTimeoutIters,
    ChunkedPrefill,
    ChunkedPrefillSize,
    ChunkSize,
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
    EncodeHardware,
    EncodeLink,
    EncodeTp,
    EncodeWorkers,
    Engine,
    EntryPoint,
    Ep,
    FeedbackShare,
    GpuSharing,
    Hardware,
    HicacheWritePolicy,
    HostKvCache,
    HostLink,
    HpEngine,
    HpInstances,
    ImageShare,
    ImageSize,
    ImagesPerRequest,
    ImageTokensIncluded,
    Json,
    KeepLayers,
    KvDtype,
    KvLink,
    KvOverlapWeight,
    KvStore,
    LoraRank,
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
    OnlineTraining,
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
    SloTbt,
    SloTpot,
    SpecAcceptance,
    SpecDraft,
    SpecTokens,
    SwaFullTokensRatio,
    Tp,
    TrainBatchTokens,
    TrainerSmShare,
    TrainReuseMode,
    app,
    changed_options,
    console,
    given_knobs,
    given_layout,
    refuse_typed_beside_deployment,
    refuse_typed_hardware_beside_role_hardware,
    refuse_typed_tp_beside_role_tps,
    render_caveats,
)
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError


@app.command("simulate")
def simulate_cmd(
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
    prefill_tp: PrefillTp = None,
    decode_workers: DecodeWorkers = None,
    decode_tp: DecodeTp = None,
    prefill_hardware: PrefillHardware = None,
    decode_hardware: DecodeHardware = None,
    kv_link: KvLink = None,
    deployment: DeploymentFile = None,
    router: Router = "least_outstanding",
    kv_overlap_score_weight: KvOverlapWeight = None,
    router_temperature: RouterTemperature = None,
    router_queue_threshold: RouterQueueThreshold = None,
    router_kv_events: RouterKvEvents = None,
    router_ttl_s: RouterTtl = None,
    prefix_caching: PrefixCaching = None,
    host_kv_cache_gb: HostKvCache = None,
    kv_store_gb: KvStore = None,
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
    memory_fraction: MemoryFraction = None,
    spec_tokens: SpecTokens = 0,
    spec_acceptance: SpecAcceptance = None,
    spec_draft: SpecDraft = None,
    scheduler: Scheduler = None,
    hp_instances: HpInstances = None,
    lp_engine: LpEngine = "ascendra-lp",
    hp_engine: HpEngine = "ascendra-hp",
    slack_margin_ms: SlackMarginMs = 300.0,
    migration: Migration = "auto",
    attention_offload: AttentionOffload = "off",
    attention_offload_sm_share: AttentionOffloadSmShare = None,
    online_training: OnlineTraining = "off",
    train_reuse_mode: TrainReuseMode = None,
    feedback_share: FeedbackShare = None,
    train_batch_tokens: TrainBatchTokens = None,
    gpu_sharing: GpuSharing = None,
    trainer_sm_share: TrainerSmShare = None,
    lora_rank: LoraRank = None,
    keep_layers: KeepLayers = None,
    host_link: HostLink = None,
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
    images_per_request: ImagesPerRequest = None,
    image_size: ImageSize = None,
    image_share: ImageShare = None,
    image_tokens_included: ImageTokensIncluded = False,
    encode_workers: EncodeWorkers = None,
    encode_tp: EncodeTp = None,
    encode_hardware: EncodeHardware = None,
    encode_link: EncodeLink = None,
    autoscale_min: Annotated[Optional[int], typer.Option(help="autoscale the collocated replicas between N (0: to zero, requests held at the gateway) and --replicas, as Kubernetes' HPA on an engine metric (sim/autoscaler.py); needs --autoscale-target")] = None,
    autoscale_metric: Annotated[Optional[str], typer.Option(help="autoscale on: waiting (vllm:num_requests_waiting; the default) | running | concurrency (both, as Knative; the default with --autoscaler kpa, as Knative's) | rps (requests routed a second) | kv_usage, per ready replica")] = None,
    autoscale_target: Annotated[Optional[float], typer.Option(help="autoscale: the metric's value per ready replica it aims at (kv_usage: a share in (0, 1])")] = None,
    autoscale_startup_s: Annotated[Optional[float], typer.Option(help="autoscale: seconds a new replica takes to serve (default: its engine's predicted start-up, as estimate prints it)")] = None,
    autoscaler: Annotated[Optional[str], typer.Option(help="autoscale with: hpa (Kubernetes' HPA, default) | kpa (Knative's Pod Autoscaler: concurrency or rps, stable and panic windows, sim/kpa.py) | keda (KEDA: the HPA on the metric's total, from zero at its 30 s poll, to zero after a 300 s cooldown)")] = None,
    trace: Annotated[Optional[str], typer.Option("--trace", "--workload", help="CSV/JSONL trace (Mooncake JSONL with hash_ids too; optional priority and NumImages columns), or azure-conv / azure-code / mooncake (bundled excerpts)")] = None,
    trace_limit: Annotated[Optional[int], typer.Option(help="first N requests of the trace")] = None,
    rate: Annotated[Optional[float], typer.Option(help="open-loop arrival rate, req/s (rescales a trace)")] = None,
    requests: Annotated[Optional[int], typer.Option(help="requests to generate (default 1000; with --client, the client's count)")] = None,
    isl: Annotated[Optional[float], typer.Option(help="mean prompt tokens (default 1024; with --client its own: vllm-bench and sglang-bench 1024, aiperf and genai-perf 550)")] = None,
    osl: Annotated[Optional[float], typer.Option(help="mean output tokens (default 256; with --client vllm-bench its random dataset's 128, sglang-bench's 1024; aiperf, genai-perf and inferencex set none: 256, noted)")] = None,
    isl_dist: Annotated[Optional[str], typer.Option(help="fixed|uniform|lognormal (default fixed, or --client's sampling)")] = None,
    osl_dist: Annotated[Optional[str], typer.Option(help="fixed|uniform|lognormal (default fixed, or --client's sampling)")] = None,
    isl_spread: Annotated[Optional[float], typer.Option(help="uniform: +- fraction of mean; lognormal: sigma")] = None,
    osl_spread: Annotated[Optional[float], typer.Option(help="uniform: +- fraction of mean; lognormal: sigma")] = None,
    arrival: Annotated[Optional[str], typer.Option(help="open-loop arrivals: poisson|gamma (default poisson)")] = None,
    cv: Annotated[Optional[float], typer.Option(help="gamma arrivals: coefficient of variation (default 1)")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="closed loop: concurrent clients")] = None,
    client: Annotated[Optional[str], typer.Option(help="benchmark client at --concurrency: vllm-bench|sglang-bench|aiperf|genai-perf|inferencex (its request count, warm-up, lengths)")] = None,
    num_prompts: Annotated[Optional[int], typer.Option(help="requests measured, as the clients name it (default: the client's, else 1000)")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="closed loop: warm-up requests, simulated, excluded from every figure (default: the client's): vllm-bench's --num-warmups (default 0), after its readiness request, which stays; sglang-bench's --warmup-requests, all sent at once; inferencex's --num-warmups (2 x C); C at a time but for sglang-bench")] = None,
    seed: Annotated[int, typer.Option(help="random seed: open-loop arrivals, lengths drawn from a distribution, the routers that draw (random; dynamo_kv with --router-temperature above 0) and --dllm's decoding; a run where nothing draws says so")] = 0,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT SLO (ms)")] = float("inf"),
    slo_tpot_ms: SloTpot = float("inf"),
    slo_tbt_ms: SloTbt = float("inf"),
    as_json: Json = False,
    out: Annotated[Optional[str], typer.Option(help="directory for per-request records and summary.json")] = None,
    out_format: Annotated[str, typer.Option("--format", help="records format: csv|parquet")] = "csv",
    # diffusion LMs (apps/dllm_view.py): --osl is the answer length, the end marker's place in the canvas
    dllm: Annotated[Optional[str], typer.Option(help="diffusion-LM decoding (LLaDA models): baseline|fast-dllm|alp|odb")] = None,
    gen_length: knobs.GenLength = None,
    block_length: knobs.BlockLength = None,
    dllm_steps: knobs.DllmSteps = None,
    dllm_threshold: knobs.DllmThreshold = None,
    dllm_cache: knobs.DllmCache = None,
    tokens_per_step: knobs.TokensPerStep = None,
    tokens_per_step_probs: knobs.TokensPerStepProbs = None,
    jump_copies: knobs.JumpCopies = None,
    jump_probs: knobs.JumpProbs = None,
    batch_cap: Annotated[Optional[int], typer.Option(help="--dllm: requests batched per instance (default 1)")] = None,
) -> None:
    """Simulate a workload on a deployment: per-request TTFT/TBT/E2E, throughput, goodput, per-instance stats."""
    from phasewise.apps.dllm_view import dllm_requested, simulate_dllm_cmd

    refuse_typed_beside_deployment(deployment)
    refuse_typed_tp_beside_role_tps(arch, prefill_tp, decode_tp)
    refuse_typed_hardware_beside_role_hardware(arch, prefill_hardware, decode_hardware,
                                                encode_workers is not None and encode_hardware is None)
    if out_format not in ("csv", "parquet"):  # before the run, not after it
        raise PhasewiseError(f"--format '{out_format}' is not one of csv, parquet")
    if out is None and out_format != "csv":
        raise PhasewiseError("--format chooses the records' format under --out DIR: give --out")
    if out:  # before the run: --out DIR's files can be written, and none is a file this run reads
        from phasewise.apps.simulate_view import check_records_out

        given = locals()
        check_records_out(out, out_format, {flag: given[name] for name, flag in changed_options(simulate_cmd, given)
                                            if name != "out"})
    if dllm is not None and images_per_request is not None:
        raise PhasewiseError("--images-per-request does not apply to --dllm (a diffusion LM takes text prompts)")
    if dllm_requested(model, dllm, locals()):
        return simulate_dllm_cmd(console, dllm, dict(locals()), changed_options(simulate_cmd, locals()),
                                 as_json=as_json, out=out, out_format=out_format)
    from phasewise.apps.simulate_view import progress_after, render_summary, write_records
    from phasewise.sim.api import build
    from phasewise.sim.simulate import simulate
    from phasewise.specs.hardware import chip_caveats

    spec = build(model=model, hardware=hardware, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype,
                 engine=engine, replicas=replicas, arch=arch, prefill_workers=prefill_workers, prefill_tp=prefill_tp,
                 decode_workers=decode_workers, decode_tp=decode_tp, kv_link=kv_link, deployment=deployment,
                 router=router, kv_overlap_score_weight=kv_overlap_score_weight, router_temperature=router_temperature,
                 router_queue_threshold=router_queue_threshold, router_kv_events=router_kv_events,
                 router_ttl_s=router_ttl_s, entry_point=entry_point,
                 memory_fraction=memory_fraction, spec_tokens=spec_tokens,
                 spec_acceptance=spec_acceptance, spec_draft=spec_draft, trace=trace, trace_limit=trace_limit,
                 rate=rate, requests=requests, isl=isl, osl=osl, isl_dist=isl_dist, osl_dist=osl_dist,
                 isl_spread=isl_spread, osl_spread=osl_spread, arrival=arrival, cv=cv, concurrency=concurrency,
                 seed=seed, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, slo_tbt_ms=slo_tbt_ms,
                 client=client, num_prompts=num_prompts, warmup=warmup, scheduler=scheduler,
                 hp_instances=hp_instances, lp_engine=lp_engine, hp_engine=hp_engine,
                 slack_margin_ms=slack_margin_ms, migration=migration, attention_offload=attention_offload,
                 attention_offload_sm_share=attention_offload_sm_share, prefill_hardware=prefill_hardware,
                 decode_hardware=decode_hardware, mapping=mapping, online_training=online_training,
                 train_reuse_mode=train_reuse_mode, feedback_share=feedback_share,
                 train_batch_tokens=train_batch_tokens, gpu_sharing=gpu_sharing, trainer_sm_share=trainer_sm_share,
                 lora_rank=lora_rank, keep_layers=keep_layers, host_link=host_link, prefix_caching=prefix_caching,
                 host_kv_cache_gb=host_kv_cache_gb, kv_store_gb=kv_store_gb,
                 images_per_request=images_per_request, image_size=image_size, image_share=image_share,
                 image_tokens_included=image_tokens_included, encode_workers=encode_workers, encode_tp=encode_tp,
                 encode_hardware=encode_hardware, encode_link=encode_link, autoscale_min=autoscale_min,
                 autoscale_metric=autoscale_metric, autoscale_target=autoscale_target,
                 autoscale_startup_s=autoscale_startup_s, autoscaler=autoscaler, **given_layout(locals()),
                 **given_knobs(locals()))
    with progress_after(console, "simulating", enabled=not as_json) as progress:
        result = simulate(spec.deployment, spec.workload, spec.slo, progress=progress, refuse_beyond_context=True,
                          images=spec.images, seed=spec.seed)
    warning = result.rejection_warning()  # requests beyond the context or KV cache (all of them: an error)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    summary = result.summary()
    caveats = chip_caveats(g.hardware for g in spec.deployment.instances)
    if caveats:
        summary["caveats"] = caveats
    if spec.notes:  # what the deployment does that the flags did not say (sim/api.py SimSpec.notes)
        summary["notes"] = list(spec.notes)
    if out:
        for path in write_records(result, summary, out, out_format):
            print(f"wrote {path}", file=sys.stderr)
    if as_json:
        print(dumps(summary))
    else:
        from phasewise.apps.online_training_view import render_online_training

        render_summary(console, summary, client, speculative=spec.deployment.speculative is not None)
        render_online_training(console, summary)
        render_caveats(console, caveats)
        for note in spec.notes:
            console.print(f"[yellow]note[/] {note}", highlight=False)
