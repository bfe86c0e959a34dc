"""What the `phasewise` commands share: the Typer app and console, the option types several commands take,
and the helpers that read knob, layout and integer-list flags."""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from phasewise.errors import PhasewiseError, name_list

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict, plan and emulate LLM serving, prefill and decode treated as two workloads.")


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """stdout's reader went away mid-print (`| head`): exit as closed_stdout_exit says (rich's own exits 1)."""
        self.quiet = True
        closed_stdout_exit()


def closed_stdout_exit() -> NoReturn:
    """stdout's reader closed the pipe (`phasewise ... | head -1`): quietly, with exit status 141, the 128 + SIGPIPE a
    shell reports for a writer the closed pipe ended (as `yes | head -1`): the output was cut short, so not 0, and
    not 1 either (a failing check, no strategy meeting the SLOs) nor 2 (an error). What is left to flush goes to
    /dev/null (the interpreter's flush at exit would fail again)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no stdout, or not a file
        pass
    raise SystemExit(CLOSED_PIPE_EXIT)


CLOSED_PIPE_EXIT = 128 + 13  # 128 + SIGPIPE, as a shell reports it


def output_write_failed(exc: OSError) -> bool:
    """Whether `exc` is a write that failed for want of room or a working device (a full disk, a quota, an I/O error)
    on a stream already open, stdout above all (a file the commands open and write is their own one-line error,
    naming its flag): then what is left of stdout goes to /dev/null, so that the interpreter's flush at exit does
    not fail again with a traceback."""
    if exc.filename is not None or exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
        return False
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    return True


def on_sigterm() -> list[bool]:
    """A SIGTERM to this process raises KeyboardInterrupt as Ctrl-C does (so a pool's workers are ended, never left
    running: plan/backends.py), once: a second one ends it at once. The list returned holds True once one came. A
    forked worker process inheriting the handler dies of the signal as by default. (`serve` sets its own.)"""
    came: list[bool] = []
    main_pid = os.getpid()

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() != main_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        came.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    return came


def fit_to_width(table: Table, width: int, optional: tuple[str, ...] = ()) -> None:
    """`table` made to fit `width` columns without cutting a cell short (rich's ellipsis or crop): where its narrowest
    layout (its no_wrap columns, numbers and keys, whole; the others wrapped at their longest word) is wider, its
    cells lose their padding, then the `optional` columns (by header) go, in that order; still wider, the wrapped
    columns fold (a word split across lines, never cut; FOLD_MIN_CHARS wide at least), then more columns go from the
    right (never the first; a first column wider than the terminal folds). The caption names every column left out.
    The wrapped columns' widths are set here (share_out): rich's own narrowing takes from the widest first and can
    cut a word another column had room for."""
    import io

    from rich.measure import Measurement

    measuring = Console(width=width, file=io.StringIO())

    options = measuring.options.update_width(10_000)

    folding: list[bool] = []  # once true, the wrapped columns fold

    def span(column) -> tuple[int, int]:  # (narrowest, widest), padding in; a no_wrap column's are one
        # (rich's own measure reads a no_wrap header "p90 ms" as 3 wide, its longest word)
        sizes = [Measurement.get(measuring, options, cell) for cell in (column.header, *column.cells)]
        widest = max(m.maximum for m in sizes)
        least = widest if column.no_wrap else max(m.minimum for m in sizes)
        if folding and not column.no_wrap:
            least = min(least, FOLD_MIN_CHARS)
        pad = table._get_padding_width(column._index)
        return max(least, column.min_width or 0) + pad, max(widest, column.min_width or 0) + pad

    def narrowest() -> int:
        return table._extra_width + sum(span(column)[0] for column in table.columns)

    dropped: list[str] = []

    def drop(column) -> None:
        table.columns.remove(column)
        dropped.append(str(column.header).replace("\n/", "/").replace("\n", " "))
        for index, kept in enumerate(table.columns):
            kept._index = index  # (rich's padding reads it)

    if narrowest() > width:
        table.padding = (0, 0)
        for header in optional:
            if narrowest() <= width:
                break
            column = next((c for c in table.columns if str(c.header) == header), None)
            if column is not None:
                drop(column)
    if narrowest() > width:  # the wrapped columns fold; the figures and keys whole, or left out by name
        folding.append(True)
        for column in table.columns:
            if not column.no_wrap:
                column.overflow = "fold"
        while narrowest() > width and len(table.columns) > 1:
            drop(table.columns[-1])
    if dropped:
        table.caption = (f"{', '.join(dropped)} left out at {width} columns: a wider terminal or --json shows "
                         f"{'it' if len(dropped) == 1 else 'them'}")
    if narrowest() > width:  # one column left, a figure or key wider than the terminal: folded, not cut
        only = table.columns[0]
        only.no_wrap, only.overflow = False, "fold"
        only.width = max(width - table._extra_width - table._get_padding_width(0), 1)
        return
    share_out(table, width, [span(column) for column in table.columns])


FOLD_MIN_CHARS = 6  # the narrowest a folded column gets (fit_to_width): narrower, a column to its right goes


def share_out(table: Table, width: int, spans: list[tuple[int, int]]) -> None:
    """Where `table`'s columns at their widest (`spans`: each column's (narrowest, widest), padding in) exceed `width`,
    the wrapped (not no_wrap) columns' widths set: what the no_wrap ones leave goes to them as water fills, each
    from its narrowest up to its widest, the narrowest first."""
    if table._extra_width + sum(widest for _, widest in spans) <= width:
        return
    loose = [i for i, column in enumerate(table.columns) if not column.no_wrap]
    room = width - table._extra_width - sum(spans[i][1] for i in range(len(spans)) if i not in loose)
    level = 0
    while level < max((spans[i][1] for i in loose), default=0) and sum(
            min(max(level + 1, spans[i][0]), spans[i][1]) for i in loose) <= room:
        level += 1
    sizes = {i: min(max(level, spans[i][0]), spans[i][1]) for i in loose}
    for i in loose:  # what the level leaves, a column each, left to right
        if sum(sizes.values()) < room and sizes[i] < spans[i][1]:
            sizes[i] += 1
    for i, size in sizes.items():
        table.columns[i].width = max(size - table._get_padding_width(i), 1)


# 140 columns where stdout is no terminal (a file, a pipe) or closed (`>&-`: None; main() refuses to run then)
console = _Console(width=None if sys.stdout is not None and sys.stdout.isatty() else 140)

# Options several commands share, defined once.
Model = Annotated[str, typer.Option(help="HF id or alias from the catalog, or a config.json path")]
Hardware = Annotated[str, typer.Option(help="catalog key or a hardware YAML path")]
Tp = Annotated[int, typer.Option(help="tensor-parallel degree per instance")]
Pp = Annotated[int, typer.Option(help="pipeline-parallel degree per instance")]


def _catalog_names() -> dict[str, str]:
    """What the engine and precision flags take, read from the catalogs themselves so that their help cannot drift
    from what runs: the engine presets (engine_presets.yaml; vLLM, SGLang, TensorRT-LLM first, as
    specs/engines.py engine_names), the host profiles (engines.yaml) beside them and alone, and the
    precisions (quant.yaml), each '|'-joined."""
    from phasewise.specs.catalog import packaged
    from phasewise.specs.engines import engine_names

    presets, other_profiles = engine_names()
    return {"presets": "|".join(presets), "other_profiles": ", ".join(other_profiles),
            "profiles": "|".join(packaged("engines.yaml")["engines"]),
            "precisions": "|".join(packaged("quant.yaml")["schemes"])}


_NAMES = _catalog_names()
# (`\[`: rich reads a bare [@version] as markup and drops it from the help)
ENGINE_HELP = (f"serving engine\\[@version] (e.g. vllm@0.12; an unknown version's error lists the preset's): a preset "
               f"(scheduler + defaults + host costs) {_NAMES['presets']}, a host profile alone "
               f"({_NAMES['other_profiles']}: vLLM V1's scheduling), or an engine YAML")
Precision = Annotated[Optional[str], typer.Option(help=f"{_NAMES['precisions']} (default: the checkpoint's own "
                                                       "format, else bf16)")]
# edge and device-cloud: each device runs the model's layers alone, so they take host profiles, no scheduler preset
DevicePrecision = Annotated[str, typer.Option(help=f"{_NAMES['precisions']} (each chip needs its compute path: a "
                                                   "one-line error names the paths a chip has)")]
DeviceEngine = Annotated[str, typer.Option(help=f"host profile (engines.yaml: per-step host costs; no scheduler "
                                                f"preset nor @version): {_NAMES['profiles']}, or an engine YAML")]
KvDtype = Annotated[Optional[str], typer.Option(help="KV-cache dtype (default: the precision's)")]
Engine = Annotated[str, typer.Option(help=ENGINE_HELP)]
PlanEngines = Annotated[str, typer.Option(
    "--engine", help="serving engine\\[@version] as for simulate, or several comma-separated (e.g. vllm,sglang,trtllm): "
                     "each one's strategies compete in one ranking, named after it")]
PlanHardware = Annotated[str, typer.Option(
    "--hardware", help="catalog key or a hardware YAML path, or several comma-separated (e.g. h100-sxm,h200-sxm,b200): "
                       "each chip's strategies, on the same --gpus, compete in one ranking, named after it")]
Replicas = Annotated[Optional[int], typer.Option(help="collocated instances (default 1)")]
Arch = Annotated[str, typer.Option(help="collocated|disagg")]
PrefillWorkers = Annotated[Optional[int], typer.Option(help="disagg: prefill instances (default 1)")]
DecodeWorkers = Annotated[Optional[int], typer.Option(help="disagg: decode instances (default 1)")]
DeploymentFile = Annotated[Optional[str], typer.Option(help="deployment YAML (replaces the deployment flags)")]
EntryPoint = Annotated[str, typer.Option(help="server|offline: engine defaults of the OpenAI server or the LLM class")]
# SLOs: TPOT is each request's mean gap between output tokens (DistServe's definition), TBT every single gap
# between streamed chunks (a token; with speculative decoding a step's accepted tokens).
SloTpot = Annotated[float, typer.Option(help="TPOT SLO (ms): each request's mean time per output token")]
SloTbt = Annotated[float, typer.Option(help="TBT SLO (ms): every gap between two streamed chunks of a request (a token; "
                                           "with speculative decoding a step's accepted tokens)")]
# Deployment options `simulate` and `serve` share.
PrefillTp = Annotated[Optional[int], typer.Option(help="disagg: TP of prefill instances (default --tp)")]
DecodeTp = Annotated[Optional[int], typer.Option(help="disagg: TP of decode instances (default --tp)")]
PrefillHardware = Annotated[Optional[str], typer.Option(help="disagg: chip of the prefill instances (default --hardware)")]
DecodeHardware = Annotated[Optional[str], typer.Option(help="disagg: chip of the decode instances (default --hardware)")]
KvLink = Annotated[Optional[str], typer.Option(help="KV transfer link between instances (disagg, priority pools): nvlink|pcie|rdma (default nvlink; disagg: rdma, and a note, where prefill and decode cannot share one node: on different chips, or more GPUs together than one node holds, the chip's gpus_per_node; nvlink or pcie given there is an error)")]
MemoryFraction = Annotated[Optional[float], typer.Option(
    help="device memory fraction, as the engine means it: vllm of the whole GPU (default 0.9); sglang for weights + KV "
         "(mem_fraction_static; default: what SGLang computes from the GPU, chunk, graphs and layout); trtllm of what "
         "weights and activations leave (free_gpu_memory_fraction; default 0.9)")]
SpecDraft = Annotated[Optional[str], typer.Option(help="speculative decoding: 'mtp' or a draft model id (default mtp)")]
# Serving policies and options of a deployment (simulate and serve)
Router = Annotated[str, typer.Option(help="round_robin|random (Dynamo's --router-mode random)|least_outstanding|kv_aware (most free KV blocks)|prefix_aware (longest cached prefix, SGLang router's rule)|dynamo_kv (NVIDIA Dynamo's KV router: cache-miss prefill blocks + decode blocks)")]
KvOverlapWeight = Annotated[Optional[float], typer.Option(help="--router dynamo_kv: weight of the cache-miss prefill blocks in its cost (Dynamo's --kv-overlap-score-weight; default 1.0; 0: load alone)")]
RouterTemperature = Annotated[Optional[float], typer.Option(help="--router dynamo_kv: draw the instance from its costs by softmax at this temperature (Dynamo's --router-temperature; default 0: the lowest cost)")]
RouterKvEvents = Annotated[Optional[bool], typer.Option("--router-kv-events/--no-router-kv-events", help="--router dynamo_kv: read the instances' prefix caches from their KV events (default), or predict them from its own routing (Dynamo's --no-router-kv-events)")]
RouterTtl = Annotated[Optional[float], typer.Option(help="--router dynamo_kv --no-router-kv-events: seconds its approximate index keeps a routed block (Dynamo's router_ttl_secs; default 120)")]
RouterQueueThreshold = Annotated[Optional[float], typer.Option(help="--router dynamo_kv: hold new requests at the router while every instance has more than this many times its token budget of prompt tokens to prefill (Dynamo's --router-queue-threshold; default: no queue)")]
HostKvCache = Annotated[Optional[float], typer.Option(help="GB of host memory per instance (all its GPUs) keeping prefix blocks evicted from the GPU, copied back over PCIe on a hit (vLLM --kv-offloading-size, SGLang HiCache); needs prefix caching")]
KvStore = Annotated[Optional[float], typer.Option(help="GB of a KV store every instance that admits prompts shares (Mooncake Store, LMCache remote, SGLang HiCache storage): prefix blocks any instance cached, fetched over each GPU's RDMA link on a hit; needs prefix caching")]
PrefixCaching = Annotated[Optional[str], typer.Option(help="on|off: share cached prompt-prefix KV blocks (default: the engine's; traces with prefix hashes, e.g. Mooncake)")]
# image inputs (workload/images.py): a multimodal model's images per request, their size, the requests carrying them
ImagesPerRequest = Annotated[Optional[int], typer.Option(help="images each request carries (a model with a vision encoder: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, InternVL, Llama 4, Mistral 3, Gemma 3); their tokens are added to the prompt, the encoder runs at its prefill")]
ImageSize = Annotated[Optional[str], typer.Option(help="with --images-per-request, or alone for a trace with a NumImages column: WIDTHxHEIGHT in pixels, before the model's processor resizes it (e.g. 1280x720), or a mixture WIDTHxHEIGHT[:WEIGHT],... (e.g. 1280x720:0.7,640x480:0.3; simulate, plan, sweep)")]
EncodeWorkers = Annotated[Optional[int], typer.Option(help="disaggregated vision encoders: encode workers that run the model's vision encoder before the language model's instances (a multimodal model; default: none, each instance encodes its own requests' images)")]
EncodeTp = Annotated[Optional[int], typer.Option(help="with --encode-workers: GPUs per encode worker (default 1)")]
EncodeHardware = Annotated[Optional[str], typer.Option(help="with --encode-workers: their chip (default --hardware)")]
EncodeLink = Annotated[Optional[str], typer.Option(help="with --encode-workers: nvlink|pcie|rdma, what carries the embeddings to the language model's instances (default nvlink)")]
ImageTokensIncluded = Annotated[bool, typer.Option("--image-tokens-included", help="the prompt lengths (a trace's, or --isl) already count the images' tokens, as an engine's usage.prompt_tokens does: they are not added (each prompt must hold them)")]
ImageShare = Annotated[Optional[float], typer.Option(help="with --images-per-request: the share of requests that carry images, (0, 1] (default 1)")]
Scheduler = Annotated[Optional[str], typer.Option(help="plain | ascendra (priority pools: --replicas split into LP and --hp-instances HP, proactive offload; needs SLOs)")]
HpInstances = Annotated[Optional[int], typer.Option(help="ascendra: high-priority instances among --replicas (default 1)")]
LpEngine = Annotated[str, typer.Option(help="ascendra: engine of the low-priority pool (engine knobs apply to it)")]
HpEngine = Annotated[str, typer.Option(help="ascendra: engine of the high-priority pool")]
SlackMarginMs = Annotated[float, typer.Option(help="ascendra: offload when a request's predicted SLO slack is below this")]
Migration = Annotated[str, typer.Option(help="ascendra: how a decoding request moves to HP: auto|transfer|recompute")]
AttentionOffload = Annotated[str, typer.Option(help="disagg: offload decode attention of extra requests to prefill instances (Adrenaline): auto|N|off")]
AttentionOffloadSmShare = Annotated[Optional[float], typer.Option(help="attention offload: the prefill GPU's SM share for offloaded attention (default: what keeps it bandwidth-bound)")]
OnlineTraining = Annotated[str, typer.Option(help="collocated: a trainer on the serving GPUs learning from feedback (Alchemist): full|lora|off")]
TrainReuseMode = Annotated[Optional[str], typer.Option(help="online training: recompute (own forward) | keep (reuse prefill activations on the GPU) | offload (to host, reloaded in backward order)")]
FeedbackShare = Annotated[Optional[float], typer.Option(help="online training: share of served requests that become training samples (default 0.1)")]
TrainBatchTokens = Annotated[Optional[int], typer.Option(help="online training: tokens per training step (default 8192)")]
GpuSharing = Annotated[Optional[str], typer.Option(help="online training: time-slice | sm-partition (default time-slice)")]
TrainerSmShare = Annotated[Optional[float], typer.Option(help="online training, sm-partition: the trainer's SM share (default 0.3)")]
LoraRank = Annotated[Optional[int], typer.Option(help="online training lora: adapter rank (default 16)")]
KeepLayers = Annotated[Optional[int], typer.Option(help="online training, offload: layers whose recordings stay on the GPU")]
HostLink = Annotated[Optional[str], typer.Option(
    help="online training, offload: pcie (the host's memory, default) | nvlink (a peer's memory)")]
# How an instance's tp GPUs split MoE experts and attention (perf/parallel.py), as the engines name it.
Ep = Annotated[Optional[int], typer.Option(help="MoE expert-parallel size (each GPU holds experts / ep; ep x moe-tp = tp)")]
MoeTp = Annotated[Optional[int], typer.Option(help="MoE tensor-parallel size (default tp / ep)")]
AttentionDp = Annotated[Optional[int], typer.Option(help="attention data-parallel ranks (each runs its own sequences over tp / attention-dp GPUs)")]
PrefillEp = Annotated[Optional[int], typer.Option(help="disagg: the prefill instances' --ep")]
DecodeEp = Annotated[Optional[int], typer.Option(help="disagg: the decode instances' --ep")]
PrefillAttentionDp = Annotated[Optional[int], typer.Option(help="disagg: the prefill instances' --attention-dp")]
DecodeAttentionDp = Annotated[Optional[int], typer.Option(help="disagg: the decode instances' --attention-dp")]
MoeImbalance = Annotated[Optional[float], typer.Option(help="expert parallelism: most-loaded GPU's expert rows over the mean, 1 to min(ep, experts / top-k) (default: the model's measured routing skew where the catalog has one, with the sampling noise; uniform routing's noise otherwise)")]
RoutingSkew = Annotated[Optional[float], typer.Option(help="MoE: your traffic's routing skew, the busiest 20 % of the experts' share of the routed tokens, 0.2 (uniform) to <1 (default: the model's, models.yaml routing_skew, else uniform)")]
# Engine knobs, named as each engine names its flag; unset = the engine's default for the GPU and version.
MaxNumSeqs = Annotated[Optional[int], typer.Option(help="vllm, vllm-v0, sarathi: max sequences per step (vllm: per attention-DP rank)")]
MaxNumBatchedTokens = Annotated[Optional[int], typer.Option(help="vllm, vllm-v0: token budget per step (vllm: per attention-DP rank)")]
ChunkedPrefill = Annotated[Optional[bool], typer.Option("--enable-chunked-prefill/--no-enable-chunked-prefill",
                                                        help="vllm (>= 0.12), trtllm: split prompts across steps")]
PartialPrefills = Annotated[Optional[int], typer.Option(help="vllm: prompts part-way through prefill at once")]
ChunkSize = Annotated[Optional[int], typer.Option(help="sarathi: token budget per iteration")]
ChunkedPrefillSize = Annotated[Optional[int], typer.Option(help="sglang: prompt tokens per prefill step (the instance's: each attention-DP rank takes 1/dp)")]
MaxRunningRequests = Annotated[Optional[int], typer.Option(help="sglang: max running requests")]
MaxPrefillTokens = Annotated[Optional[int], typer.Option(help="sglang: prompt tokens admitted per prefill batch (per attention-DP rank)")]
MixedChunk = Annotated[Optional[bool], typer.Option("--enable-mixed-chunk/--no-enable-mixed-chunk",
                                                    help="sglang: run prefill chunks with the decodes")]
CudaGraphMaxBs = Annotated[Optional[int], typer.Option(help="sglang: largest decode batch with a CUDA graph")]
Conservativeness = Annotated[Optional[float], typer.Option(help="sglang: scales the new-token ratio reserved at admission")]
RecvIntervalOption = Annotated[Optional[int], typer.Option(help="sglang: new requests are read every N decode-only "
                                                           "steps (a prefill step or idleness reads at once)")]
MambaSsmDtype = Annotated[Optional[str], typer.Option(help="sglang, vllm: dtype of linear-attention layers' "
                                                              "recurrent states, fp32|bf16 (default sglang fp32, "
                                                              "vllm bf16)")]
All2allBackend = Annotated[Optional[str], typer.Option(
    help="vllm, with --attention-dp and --ep: allgather_reducescatter (default: every rank's BF16 tokens gathered) | "
         "deepep_high_throughput | deepep_low_latency (DeepEP's all-to-all, FP8 with FP8 GEMMs)")]
MoeA2aBackend = Annotated[Optional[str], typer.Option(
    help="sglang, with --attention-dp and --ep: none (default: the ranks' BF16 hidden states gathered) | deepep "
         "(DeepEP's all-to-all, FP8 with FP8 GEMMs)")]
HicacheWritePolicy = Annotated[Optional[str], typer.Option(
    help="sglang: when a prefix block reaches the host tier (--host-kv-cache-gb), write_through (default, as cached) | "
         "write_through_selective (at its second use) | write_back (as the GPU evicts it, the forward waiting)")]
SwaFullTokensRatio = Annotated[Optional[float], typer.Option(
    help="sglang: window-pool tokens per full-pool token of its hybrid SWA pool (gpt-oss, Llama 4; default 0.8)")]
DisableHybridSwaMemory = Annotated[Optional[bool], typer.Option(
    "--disable-hybrid-swa-memory/--no-disable-hybrid-swa-memory",
    help="sglang: no window pool, every layer holds every token (default: off; on for gpt-oss on B200, B300, GB200, "
         "GB300)")]
PiecewiseCudaGraph = Annotated[Optional[bool], typer.Option(
    "--enable-piecewise-cuda-graph/--no-enable-piecewise-cuda-graph",
    help="sglang: replay piecewise CUDA graphs for prefill batches (attention still eager)")]
PiecewiseMaxTokens = Annotated[Optional[int], typer.Option(help="sglang: largest prefill batch (tokens) with a "
                                                           "piecewise CUDA graph (default 4096)")]
MaxBatchSize = Annotated[Optional[int], typer.Option(help="trtllm: max sequences per iteration (per attention-DP rank)")]
MaxNumTokens = Annotated[Optional[int], typer.Option(help="trtllm: token budget per iteration (per attention-DP rank)")]
CudaGraphMaxBatchSize = Annotated[Optional[int], typer.Option(help="trtllm: largest decode batch with a CUDA graph "
                                                              "(cuda_graph_config.max_batch_size; default 128)")]
CudaGraphPadding = Annotated[Optional[bool], typer.Option(
    "--cuda-graph-padding-enabled/--no-cuda-graph-padding-enabled",
    help="trtllm: pad a decode batch up to the next captured size (cuda_graph_config.enable_padding)")]
AsyncScheduling = Annotated[Optional[bool], typer.Option(
    "--async-scheduling/--no-async-scheduling",
    help="vllm >= 0.10: schedule step n+1 while step n runs (default: off to 0.12, on from 0.14 unless pp > 1 or "
         "a draft model speculates)")]
DisableOverlapScheduler = Annotated[Optional[bool], typer.Option(
    "--disable-overlap-scheduler/--no-disable-overlap-scheduler",
    help="trtllm: run without the overlap scheduler (default: with it; without it on a disaggregated prefill role)")]
PrefillDelayer = Annotated[Optional[bool], typer.Option(
    "--enable-prefill-delayer/--no-enable-prefill-delayer",
    help="sglang: with attention DP, a rank's prefill waits while other ranks have none to run, so that the ranks "
         "prefill together (up to --prefill-delayer-max-delay-passes passes; default off)")]
PrefillDelayerPasses = Annotated[Optional[int], typer.Option(
    help="sglang: the forward passes a prefill waits at most under --enable-prefill-delayer (default 30)")]
AdpEnableBalance = Annotated[Optional[bool], typer.Option(
    "--attention-dp-enable-balance/--no-attention-dp-enable-balance",
    help="trtllm: attention_dp_config.enable_balance: with attention DP, prompts wait until every rank has one "
         "(or the timeout)")]
AdpTimeoutIters = Annotated[Optional[int], typer.Option(help="trtllm: attention_dp_config.timeout_iters (default 50)")]
AdpBatchingWaitIters = Annotated[Optional[int], typer.Option(
    help="trtllm: attention_dp_config.batching_wait_iters (default 10)")]
BatchWaitTimeoutIters = Annotated[Optional[int], typer.Option(
    help="trtllm: without attention DP, prompts wait up to this many iterations beside decodes (default 0: off)")]
BatchWaitMaxTokensRatio = Annotated[Optional[float], typer.Option(
    help="trtllm: ... or until the iteration's tokens reach this share of max_num_tokens (default 0)")]
SpecTokens = Annotated[int, typer.Option(help="speculative decoding: draft tokens per step (0 = off)")]
SpecAcceptance = Annotated[Optional[float], typer.Option(help="speculative decoding: per-token acceptance rate (default 0.7)")]
WeightsReadGbps = Annotated[Optional[float], typer.Option(help="start-up: GB/s (gigabytes a second, not the gigabits of the *-mbps flags' Mbit/s) a node reads the checkpoint at (default 5.3: a checkpoint in the page cache; a cold disk or network store reads ~0.3-2)")]
CompileCache = Annotated[Optional[str], typer.Option(help="start-up: torch.compile's cache on disk, cold|warm (default cold; vLLM compiles, the others do not)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object")]
MappingOption = Annotated[Optional[str], typer.Option("--mapping", help="operator mapping onto the chip's substrates "
                                                   "(halo|all-cid|attacc|all-cim or a YAML): every iteration costed on "
                                                   "them; needs a chip with substrates, tp=1, pp=1")]


LAYOUT_FLAGS = ("ep", "moe_tp", "attention_dp", "prefill_ep", "decode_ep", "prefill_attention_dp",
                "decode_attention_dp", "moe_imbalance", "routing_skew")


def given_layout(params: dict) -> dict:
    """The MoE / attention layout flags among a command's parameters (perf/parallel.py)."""
    return {k: params[k] for k in LAYOUT_FLAGS if k in params}


def _version(value: bool) -> None:
    if value:
        from phasewise import __version__

        print(f"phasewise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Predict, plan and emulate LLM serving, prefill and decode treated as two workloads."""


def given_knobs(params: dict) -> dict:
    """The engine knobs among a command's parameters (unset ones are None and dropped downstream)."""
    from phasewise.specs.engines import KNOB_TYPES

    return {k: params[k] for k in KNOB_TYPES if k in params}


def parse_ints(flag: str, text: str) -> tuple[int, ...]:
    """The integers >= 1 a comma-separated `flag` lists, each once: an empty item or a repeat is a one-line error, as
    in a list of names (errors.py name_list)."""
    items = name_list(flag, text, "integer")  # (a PhasewiseError is a ValueError: outside the try)
    try:
        values = tuple(int(x) for x in items)
    except ValueError:
        raise PhasewiseError(f"{flag} must be comma-separated integers (got '{text}')") from None
    if min(values) < 1:
        raise PhasewiseError(f"{flag} must list integers >= 1 (got '{text}')")
    twice = next((value for value in values if values.count(value) > 1), None)  # 1,01 as 1,1
    if twice is not None:
        raise PhasewiseError(f"{flag} '{text}' names {twice} twice")
    return values


def refuse_typed_tp_beside_role_tps(arch: str, prefill_tp: int | None, decode_tp: int | None) -> None:
    """--tp typed, even at its default's value, beside both --prefill-tp and --decode-tp (--arch disagg): it would
    set neither role's TP (deployment_flags.py refuses a --tp off its default there; it cannot tell one typed at 1)."""
    if arch == "disagg" and prefill_tp is not None and decode_tp is not None and given_on_command_line("tp"):
        from phasewise.sim.api import TP_BESIDE_ROLE_TPS

        raise PhasewiseError(TP_BESIDE_ROLE_TPS.format(tp=""))


def refuse_typed_hardware_beside_role_hardware(arch: str, prefill_hardware: str | None, decode_hardware: str | None,
                                               encoders_on_hardware: bool = False) -> None:
    """--hardware typed, even at its default's value, beside both --prefill-hardware and --decode-hardware (--arch
    disagg) with no encoder on it: it would set no chip (deployment_flags.py refuses one off its default; it cannot
    tell one typed at h100-sxm)."""
    if (arch == "disagg" and prefill_hardware and decode_hardware and not encoders_on_hardware
            and given_on_command_line("hardware")):
        from phasewise.sim.api import HARDWARE_BESIDE_ROLE_HARDWARE

        raise PhasewiseError(HARDWARE_BESIDE_ROLE_HARDWARE.format(hardware=""))


def single_cpu_forwards(mode: str, others: dict[str, bool], device: str, threads: int | None) -> None:
    """validate's modes that time single forwards on this CPU at one torch thread (--vision, --recurrent, --gemma4):
    another mode beside them, another device or more threads is a one-line error."""
    given = [flag for flag, on in others.items() if on]
    if given:
        raise PhasewiseError(f"{mode} times single forwards: it does not combine with {given[0]}")
    if device != "cpu":
        raise PhasewiseError(f"{mode} times this CPU (fp32, one thread): use --device cpu (got '{device}')")
    if threads not in (None, 1):
        raise PhasewiseError(f"--threads {threads}: {mode} times one torch thread (MEASURING.md); leave --threads "
                             "unset or 1")


def render_caveats(out: Console, caveats: dict[str, str]) -> None:
    """One line per chip whose catalog entry carries a caveat on its predictions (specs/hardware.py chip_caveats)."""
    for chip, caveat in caveats.items():
        out.print(f"[yellow]caveat[/] {chip}: {caveat}", highlight=False)


def given_on_command_line(parameter: str) -> bool:
    """Whether the running command's `parameter` was given on its command line, even at its default's value (which
    changed_options cannot tell apart): the click context's parameter source (typer's own click, else click's);
    False outside a command."""
    for module in ("typer._click.globals", "click"):
        try:
            context = __import__(module, fromlist=["get_current_context"]).get_current_context(silent=True)
        except ImportError:
            continue
        if context is not None:
            source = context.get_parameter_source(parameter)
            return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    return False


def refuse_typed_beside_deployment(deployment: str | None) -> None:
    """--deployment sets the whole deployment: a deployment flag typed beside it is refused by name, even at its
    default's value (deployment_flags.py deployment_from_flags refuses the ones whose value differs; it cannot tell
    these)."""
    if deployment is not None:
        from phasewise.sim.api import deployment_flag_names, refuse_beside_deployment

        refuse_beside_deployment([n for n in deployment_flag_names() if given_on_command_line(n)])


def changed_options(command, values: dict) -> list[tuple[str, str]]:
    """(parameter, flag) of each option of the typer `command` whose value in `values` differs from its default,
    in declaration order: what the user gave (a mode that reads only some of them refuses the rest by name)."""
    import inspect
    import math
    import typing

    hints = typing.get_type_hints(command, include_extras=True)
    out = []
    for name, param in inspect.signature(command).parameters.items():
        if name not in values:
            continue
        value, default = values[name], param.default
        if value == default or (isinstance(value, float) and isinstance(default, float) and math.isnan(value)
                                and math.isnan(default)):
            continue
        decls = []  # in Annotated, typer.Option's first positional (its `default` slot) is the first flag
        for arg in typing.get_args(hints.get(name))[1:]:
            decls += [d for d in (getattr(arg, "default", None), *(getattr(arg, "param_decls", None) or ()))
                      if isinstance(d, str) and d.startswith("--")]
        flag = decls[0] if decls else "--" + name.replace("_", "-")
        if "/" in flag:  # a boolean's pair (--spec/--no-spec): the one given
            on, _, off = flag.partition("/")
            flag = on if value else off
        out.append((name, flag))
    return out
