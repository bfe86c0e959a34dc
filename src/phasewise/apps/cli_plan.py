"""`phasewise plan` (rank serving strategies by goodput under SLOs, export the winner's launch files, replay a
trace through fixed and autoscaled fleets) and `phasewise sweep` (goodput over a grid, to CSV/Parquet)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from phasewise.apps.cli_common import (
    HostKvCache,
    ImageShare,
    ImageSize,
    ImagesPerRequest,
    ImageTokensIncluded,
    KvStore,
    MappingOption,
    Model,
    PlanEngines,
    PlanHardware,
    RoutingSkew,
    SloTbt,
    SloTpot,
    SpecAcceptance,
    app,
    changed_options,
    console,
    parse_ints,
)
from phasewise.apps.dllm_view import (
    BlockLength,
    DllmCache,
    DllmSteps,
    DllmThreshold,
    GenLength,
    JumpCopies,
    JumpProbs,
    TokensPerStep,
    TokensPerStepProbs,
)
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError, name_list, refuse_empty

if TYPE_CHECKING:
    from phasewise.plan.options import PlanOptions

# the engine strategies' device memory fraction, as the engine means it (cli_common.MemoryFraction), and plan --dllm's
# instances' share of each GPU, as simulate --dllm's --memory-fraction (plan/dllm_plan.py dllm_instance)
PlanMemoryFraction = Annotated[Optional[float], typer.Option(
    "--memory-fraction", help="device memory fraction every strategy's instances launch with, as the engine means it: "
                              "vllm of the whole GPU (default 0.9); sglang for weights + KV (mem_fraction_static; "
                              "default: what SGLang computes); trtllm of what weights and activations leave "
                              "(free_gpu_memory_fraction; default 0.9); --dllm: the share of each GPU an instance may "
                              "fill (default the engine's own, 0.9 for hf-eager). Exported launch commands carry it")]


@app.command("plan")
def plan_cmd(
    model: Model = "meta-llama/Llama-3.1-8B",
    hardware: PlanHardware = "h100-sxm",
    gpus: Annotated[int, typer.Option(help="GPU budget")] = 8,
    slo_ttft_ms: Annotated[float, typer.Option(help="TTFT SLO (ms)")] = 1000.0,
    slo_tpot_ms: SloTpot = 50.0,
    slo_tbt_ms: SloTbt = float("inf"),
    attainment: Annotated[float, typer.Option(help="fraction of requests that must meet both SLOs")] = 0.9,
    workload: Annotated[Optional[str], typer.Option("--workload", "--trace", help="trace CSV/JSONL (Mooncake JSONL with hash_ids too; optional NumImages column), or azure-conv / azure-code / mooncake (bundled excerpts); default: Azure conversation lengths")] = None,
    arrivals: Annotated[str, typer.Option(help="poisson | trace (the trace's own arrival pattern, time-scaled)")] = "poisson",
    isl: Annotated[Optional[float], typer.Option(help="mean prompt tokens (instead of a trace)")] = None,
    osl: Annotated[Optional[float], typer.Option(help="mean output tokens (instead of a trace)")] = None,
    isl_dist: Annotated[str, typer.Option(help="fixed|uniform|lognormal")] = "fixed",
    osl_dist: Annotated[str, typer.Option(help="fixed|uniform|lognormal")] = "fixed",
    isl_spread: Annotated[float, typer.Option(help="uniform +- fraction / lognormal sigma")] = 0.0,
    osl_spread: Annotated[float, typer.Option(help="uniform +- fraction / lognormal sigma")] = 0.0,
    images_per_request: ImagesPerRequest = None,
    image_size: ImageSize = None,
    image_share: ImageShare = None,
    image_tokens_included: ImageTokensIncluded = False,
    objective: Annotated[str, typer.Option(help="what the ranking divides the goodput by: goodput-per-gpu (req/s per GPU) | goodput-per-dollar (requests per $ of GPU rental time) | goodput-per-watt (requests per joule of simulated power) | cost (req/s per $1k of cluster hardware, chips from parts) | power (req/s per kW of cluster TDP)")] = "goodput-per-gpu",
    tp_options: Annotated[str | None, typer.Option(help="TP degrees to try (default: 1,2,4,8, and whole nodes, TP 16, 32, ... within --gpus, when the model fits in none of those; for a mixture-of-experts model on an engine with expert parallelism, also its DP-EP layout over whole nodes within --gpus)")] = None,
    pp_options: Annotated[str, typer.Option(help="PP degrees to try (collocated)")] = "1",
    precisions: Annotated[str, typer.Option(help="precisions to try, e.g. bf16,fp8 (default: the checkpoint's own format, else bf16)")] = "",
    chunk_sizes: Annotated[str, typer.Option(help="chunked-prefill token budgets to try, as the engine's flag reads them (vllm --max-num-batched-tokens and trtllm max_num_tokens per attention-DP rank, sglang --chunked-prefill-size per instance; names say '/rank'); the engine's default and vLLM V0's prefill-first too")] = "512,2048",
    batch_caps: Annotated[Optional[str], typer.Option(help="max sequences to try, as the engine's flag reads them: vllm --max-num-seqs and trtllm max_batch_size per attention-DP rank (an instance holds ranks x it; names say 'b256/rank'), sglang --max-running-requests per instance; the last also the disaggregated decode instances' (default: 256 and the engine's own default on the chip: vllm 1024 per rank on GPUs of 70 GiB or more but A100s (256 on those and smaller GPUs; vllm@0.8.5: 1024 on an A100-80G too), trtllm 2048 per rank, sglang unset, 'bauto')")] = None,
    disagg: Annotated[bool, typer.Option("--disagg/--no-disagg", help="include disaggregated xPyD strategies")] = True,
    spec: Annotated[bool, typer.Option("--spec/--no-spec", help="also try speculative decoding")] = False,
    spec_tokens: Annotated[Optional[int], typer.Option(help="speculative decoding (--spec): draft tokens per step (default 3)")] = None,
    spec_acceptance: SpecAcceptance = None,
    engine: PlanEngines = "vllm",
    kv_link: Annotated[Optional[str], typer.Option(help="KV link between instances (disaggregated, priority pools): nvlink|pcie|rdma (default nvlink; a disaggregated strategy whose prefill and decode instances cannot share one node, on different chips or more GPUs than one node holds, is costed over rdma whatever this says, and the run says so)")] = None,
    prefill_hardware: Annotated[str, typer.Option(help="disaggregated: chips prefill instances may run on, comma-separated (default --hardware)")] = "",
    decode_hardware: Annotated[str, typer.Option(help="disaggregated: chips decode instances may run on, comma-separated (default --hardware)")] = "",
    mapping: MappingOption = None,
    policies: Annotated[str, typer.Option(help="serving policies also tried, comma-separated: priority-pools (Ascendra LP+HP pools), attention-offload (Adrenaline, disaggregated), encoders (a multimodal model's images: one encode GPU beside every 1, 2, 4 or 8 units)")] = "",
    moe_layouts: Annotated[str, typer.Option(help="MoE models: layouts tried per instance, comma-separated: tp (all tensor parallel), ep (experts expert-parallel), dp-ep (attention data-parallel + experts expert-parallel; wider than 8 GPUs also with DeepEP where the engine has its knob)")] = "tp,ep,dp-ep",
    routing_skew: RoutingSkew = None,
    host_kv_cache_gb: HostKvCache = None,
    kv_store_gb: KvStore = None,
    chip_gpus: Annotated[Optional[str], typer.Option(help="GPU budgets of some chips, in place of --gpus for them: CHIP=N,... (e.g. h100-sxm=16,b200=8), with several --hardware chips or --prefill-/--decode-hardware: each chip's strategies, and each disaggregated group, within its chip's")] = None,
    router: Annotated[str, typer.Option(help="router(s) in front of a deployment's instances, comma-separated to try each: round_robin|random|least_outstanding|kv_aware|prefix_aware (longest cached prefix, SGLang router's rule)|dynamo_kv (NVIDIA Dynamo's KV router, its default weight)")] = "least_outstanding",
    top: Annotated[int, typer.Option(help="strategies refined with long simulations (and any the screening cannot order against the last of them: within a bisection step of it; each verified; with several --hardware chips, each chip's best)")] = 5,
    backend: Annotated[str, typer.Option(help="local (process pool) | ray (RAY_ADDRESS set: that cluster is joined, as with --ray-address)")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: a local Ray)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local worker processes (default: CPU count)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    report: Annotated[Optional[str], typer.Option(help="write the HTML report to this path (none unless asked; checked before the search, the folders on its way created, as --export creates its own)")] = None,
    export: Annotated[Optional[str], typer.Option(help="write the --rank strategy's deployment.yaml and launch.sh (vllm/sglang/trtllm) to this directory")] = None,
    rank: Annotated[int, typer.Option(help="--export: which ranked strategy (1 = the winner)")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the ranking as JSON (each row with its deployment)")] = False,
    dllm: Annotated[Optional[str], typer.Option(help="diffusion LM (LLaDA): rank chips (--hardware, comma-separated) x --batch-caps (default 1,2,4,8,16,32) of one-GPU instances for this decoding: baseline|fast-dllm|alp|odb")] = None,
    gen_length: GenLength = None,
    block_length: BlockLength = None,
    dllm_steps: DllmSteps = None,
    dllm_threshold: DllmThreshold = None,
    dllm_cache: DllmCache = None,
    tokens_per_step: TokensPerStep = None,
    tokens_per_step_probs: TokensPerStepProbs = None,
    jump_copies: JumpCopies = None,
    jump_probs: JumpProbs = None,
    memory_fraction: PlanMemoryFraction = None,
    autoscale: Annotated[Optional[str], typer.Option(help="after ranking, replay the whole trace (--arrivals trace) through each ranked strategy as a fixed fleet (the fewest units meeting the SLOs) and autoscaled with, comma-separated: hpa (Kubernetes' HPA on vllm:num_requests_running, targets 60/80/100 % of a replica's concurrency at its goodput, and 100 % with a 60 s scale-down window) | kpa (Knative's KPA on requests in flight) | keda (KEDA, from and to zero) | dynamo (NVIDIA Dynamo's SLA planner on the SLOs); GPU-hours, $ and attainment of each (plan/fleet.py)")] = None,
    autoscale_rate: Annotated[Optional[float], typer.Option(help="--autoscale: the trace's mean rate for the replay, req/s (default: its own pace)")] = None,
) -> None:
    """Rank serving strategies by goodput under SLOs (the highest rate at which --attainment of requests meet them).
    Exit status 1 when no strategy meets the SLOs (one line names the closest and the SLO that binds)."""
    from phasewise.apps.dllm_view import dllm_requested, plan_dllm_cmd

    if dllm is not None and images_per_request is not None:
        raise PhasewiseError("--images-per-request does not apply to --dllm (a diffusion LM takes text prompts)")
    if dllm_requested(model, dllm, locals()):  # a decoding knob without --dllm: a one-line error
        # unset --batch-caps stays None: the dLLM ranking's own caps
        return plan_dllm_cmd(console, dllm, dict(locals()), changed_options(plan_cmd, locals()))
    from dataclasses import replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from phasewise.apps.fleet_view import fleets_html, fleets_json, render_fleets, write_fleet
    from phasewise.apps.plan_view import render_plan, winner_timeline
    from phasewise.plan import PlanOptions, plan
    from phasewise.plan.backends import stage_lines
    from phasewise.plan.chip_budgets import parse_chip_gpus
    from phasewise.plan.fleet import parse_fleets, plan_fleets
    from phasewise.plan.goodput import workload_spec
    from phasewise.plan.options import check_options
    from phasewise.sim import Slo
    from phasewise.sim.api import host_kv_cache_bytes
    from phasewise.specs import load_model
    from phasewise.specs.hardware import chip_identity, hardware_list

    if gpus < 1:
        raise PhasewiseError(f"--gpus must be >= 1 (got {gpus})")
    if top < 1:
        raise PhasewiseError(f"--top must be >= 1 (got {top})")
    if rank < 1:
        raise PhasewiseError(f"--rank must be >= 1, 1 being the winner (got {rank})")
    if rank != 1 and export is None:
        raise PhasewiseError(f"--rank {rank} picks the strategy --export writes: give --export DIR")
    if export:
        from phasewise.apps.launch import check_export_directory

        check_export_directory(export, model)
    # before the search: the report's path can be written, and no output is a file this plan reads
    outputs = {}
    if report:
        from phasewise.apps.report import check_report_path

        check_report_path(report)
        outputs[f"--report '{report}'"] = report
    if export:
        outputs.update({f"--export '{export}' ({name})": Path(export) / name
                        for name in ("deployment.yaml", "launch.sh")})
    if outputs:
        from phasewise.apps.simulate_view import refuse_overwriting_inputs

        given = locals()
        refuse_overwriting_inputs(outputs, {flag: given[name] for name, flag in changed_options(plan_cmd, given)
                                            if name not in ("report", "export")})
    refuse_empty(dict(tp_options=tp_options, moe_layouts=moe_layouts, router=router, engine=engine, kv_link=kv_link,
                      objective=objective, arrivals=arrivals, isl_dist=isl_dist, osl_dist=osl_dist,
                      image_size=image_size))
    spec_values = {k: v for k, v in (("spec_tokens", spec_tokens), ("spec_acceptance", spec_acceptance))
                   if v is not None}  # unset: PlanOptions' defaults
    opts = PlanOptions(tp_options=parse_ints("--tp-options", tp_options or "1,2,4,8"), tp_across_nodes=tp_options is None,
                       pp_options=parse_ints("--pp-options", pp_options),
                       precisions=listed("--precisions", precisions),
                       chunk_sizes=parse_ints("--chunk-sizes", chunk_sizes),
                       batch_caps=parse_ints("--batch-caps", "256" if batch_caps is None else batch_caps), engine_default_cap=batch_caps is None,
                       disaggregated=disagg, speculative=(False, True) if spec else (False,),
                       **spec_values, engine=engine, kv_link="nvlink" if kv_link is None else kv_link,
                       prefill_hardware=listed("--prefill-hardware", prefill_hardware),
                       decode_hardware=listed("--decode-hardware", decode_hardware),
                       mapping=mapping, policies=listed("--policies", policies),
                       moe_layouts=listed("--moe-layouts", moe_layouts),
                       routers=listed("--router", router), routing_skew=routing_skew,
                       host_kv_cache_bytes=host_kv_cache_bytes("--host-kv-cache-gb", host_kv_cache_gb),
                       kv_store_bytes=host_kv_cache_bytes("--kv-store-gb", kv_store_gb),
                       memory_fraction=memory_fraction)
    # the options that cannot apply to this plan, refused as sweep refuses them (plan/options.py check_options)
    chips = hardware_list("--hardware", hardware)
    check_options([model], [*chips, *opts.prefill_hardware, *opts.decode_hardware], opts,
                  {key for key, _ in changed_options(plan_cmd, locals())}, plan_flag)
    if chip_gpus is not None:
        chips = list(dict.fromkeys([*chips, *opts.prefill_hardware, *opts.decode_hardware]))
        if len({chip_identity(c) for c in chips}) < 2:
            raise PhasewiseError("--chip-gpus gives several chips their own budgets: name them in --hardware A,B or "
                                 "--prefill-hardware / --decode-hardware (one chip: --gpus)")
        opts = replace(opts, chip_gpus=parse_chip_gpus(chip_gpus, chips))
    if min(opts.tp_options) * min(opts.pp_options) > max([gpus, *(n for _, n in opts.chip_gpus)]):
        raise PhasewiseError(f"every strategy needs more GPUs per instance than --gpus {gpus} "
                             f"(smallest: tp={min(opts.tp_options)} x pp={min(opts.pp_options)})")
    slo = Slo(slo_ttft_ms, slo_tpot_ms, slo_tbt_ms)
    work = workload_spec(workload, arrivals, isl, osl, isl_dist, osl_dist, isl_spread, osl_spread, seed,
                         context_tokens=load_model(model).max_position_embeddings,
                         images_per_request=images_per_request, image_size=image_size, image_share=image_share,
                         image_tokens_included=image_tokens_included)
    fleets_asked = parse_fleets(autoscale, autoscale_rate, slo, work)  # before the long search: its errors first
    # on a terminal a bar per stage; off one (a log, a pipe) or under --json, no bar: a few lines on stderr, each
    # stage's start and quarters, none for a plan done within seconds (plan/backends.py stage_lines)
    bar_shown = console.is_terminal and not as_json
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=not bar_shown) as bar:
        def bar_progress(stage: str, done: int, total: int):
            task = bar.add_task(stage, total=total)
            return lambda k: bar.advance(task, k)

        progress = bar_progress if bar_shown else stage_lines(lambda line: print(line, file=sys.stderr, flush=True),
                                                              "plan")
        result = plan(model, hardware, gpus, slo, work, target=attainment, objective=objective, opts=opts,
                      refine=top, backend=backend, workers=workers, ray_address=ray_address, progress=progress)
        fleets = None
        if fleets_asked and result.feasible:
            fleets = plan_fleets(result.ranked, work, slo, attainment, fleets_asked, autoscale_rate, backend,
                                 workers, ray_address, progress)
    # --json's top level says the fraction every strategy ran at (each row's deployment carries it too)
    fraction_json = {} if result.memory_fraction is None else {"memory_fraction": result.memory_fraction}
    if not result.feasible:  # one line, the closest strategy and the SLO that binds; no table of zeros
        if as_json:
            print(dumps({"feasible": False, "budget": result.budget(), **fraction_json,
                         "closest": result.closest(),
                         "pruned": result.pruned, "wall_s": result.wall_s}, default=float))
        print(result.infeasible_line(), file=sys.stderr)
        if export:
            print(f"export: skipped, no strategy meets the SLOs (nothing to write to {export})", file=sys.stderr)
        if report:  # the verdict, the closest strategy's figures, the curves of how close each came
            print(f"report: {written_report(result, {}, report)}", file=sys.stderr)
        raise typer.Exit(1)
    if as_json:
        from phasewise.apps.plan_view import host_tier_beyond_node, plan_caveats

        rows = result.rows()
        caveats = plan_caveats(result)
        unused = without_host_tier(rows, opts)
        print(dumps({"feasible": True, "budget": result.budget(), **fraction_json, "rows": rows,
                     "pareto": result.pareto(),
                     "pruned": result.pruned, "host_beyond_node": host_tier_beyond_node(rows),
                     **({"caveats": caveats} if caveats else {}), **({"without_host_tier": unused} if unused else {}),
                     "wall_s": result.wall_s, **({"fleets": fleets_json(fleets)} if fleets else {})},
                    default=float))
    else:
        render_plan(console, result)
        unused = without_host_tier(result.rows(), opts)
        if unused:
            console.print(f"[yellow]host memory[/]: {unused}")
        if fleets:
            render_fleets(console, fleets)
    if export:
        from phasewise.apps.launch import write_export

        written = write_export(result, export, rank) + ([write_fleet(fleets, export)] if fleets else [])
        print(f"export: {', '.join(str(p) for p in written)}", file=sys.stderr)
        names = {Path(p).name for p in written}
        others = sorted(p.name for p in Path(export).iterdir() if p.name not in names)
        if others:  # an earlier export's files (a TensorRT-LLM disagg.yaml beside a vLLM script) are not this one's
            more = ", ..." if len(others) > 5 else ""
            print(f"note: {export} also holds {', '.join(others[:5])}{more}, not written by this export (an earlier "
                  "one's?): launch.sh reads only the files above", file=sys.stderr)
    elif not as_json:
        console.print("to launch #1: the same command with --export DIR (deployment.yaml and the engine's launch.sh; "
                      "--rank N for another)", style="dim")
    if report:
        path = written_report(result, winner_timeline(result, work), report,
                              fleets=fleets_html(fleets) if fleets else "")
        print(f"report: {path}", file=sys.stderr)


def written_report(result, timeline, report: str, fleets: str = "") -> str:
    """Write plan's --report; the path written, and the folders created on its way (as --export and sweep --out
    create theirs) named, so none appears unsaid."""
    from phasewise.apps.report import new_folders, write_report

    created = new_folders(report)
    path = write_report(result, timeline, report, fleets=fleets)
    return f"{path}" + (f" (created {', '.join(str(f) for f in created)})" if created else "")


@app.command("sweep")
def sweep_cmd(
    config: Annotated[str, typer.Argument(help="sweep YAML: models x hardware x workloads x strategies")],
    out: Annotated[str, typer.Option(help="output file (.csv or .parquet)")] = "sweep.csv",
    backend: Annotated[str, typer.Option(help="local (process pool) | ray (RAY_ADDRESS set: that cluster is joined, as with --ray-address)")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address")] = None,
    workers: Annotated[Optional[int], typer.Option(help="local worker processes")] = None,
) -> None:
    """Goodput of every strategy over a grid of models x hardware x workloads, to CSV/Parquet."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from phasewise.apps.simulate_view import refuse_overwriting_inputs
    from phasewise.plan.sweep import check_out, load_sweep, run_sweep, write_rows

    check_out(out)
    cfg = load_sweep(config)
    refuse_overwriting_inputs({f"--out '{out}'": out}, sweep_inputs(config, cfg))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        def progress(stage: str, done: int, total: int):
            task = bar.add_task(stage, total=total)
            return lambda k: bar.advance(task, k)

        rows = run_sweep(cfg, backend, workers, ray_address, progress)
    path = write_rows(rows, out)
    what = ("each strategy's goodput verified as plan verifies it" if cfg.fidelity == "verified" else
            f"fidelity {cfg.fidelity}: the search's rates on one unit, unverified, in search_* columns")
    console.print(f"{len(rows)} rows -> {path} ({what})", markup=False)
    for row in rows:
        if row["kind"] == "none":
            console.print(f"no strategy for {row['model']} on {row['hardware']} ({row['workload']}): {row['binding']}",
                          markup=False)


def sweep_inputs(config: str, cfg) -> dict[str, str]:
    """{how an error names it: value} of what a sweep reads that may name a file: its config, each workload's trace,
    each model and chip (a YAML or checkpoint by path), the strategies' disaggregated chips."""
    found = {"the sweep config": config}
    for index, w in enumerate(cfg.workloads):
        if w.trace:
            found[f"the sweep's workloads.{index}.trace"] = w.trace
    for key in ("models", "hardware"):
        for index, value in enumerate(getattr(cfg, key)):
            found[f"the sweep's {key}.{index}"] = value
    for key in ("prefill_hardware", "decode_hardware"):
        values = cfg.strategies.get(key) or []
        for index, value in enumerate([values] if isinstance(values, str) else values):
            found[f"the sweep's strategies.{key}.{index}"] = value
    return found


def without_host_tier(rows: list[dict], opts: PlanOptions) -> str | None:
    """The ranked strategies that run without --host-kv-cache-gb / --kv-store-gb although given (no instance of
    theirs caches prefixes: plan/options.py deployment_fields), as a line, or None. check_options has refused the
    flags where no strategy could keep them."""
    flags = " and ".join(flag for flag, size in (("--host-kv-cache-gb", opts.host_kv_cache_bytes),
                                                 ("--kv-store-gb", opts.kv_store_bytes)) if size)
    ranks = [f"#{row['rank']}" for row in rows
             if not row["deployment"].get("kv_store_bytes")
             and not any(group.get("host_kv_cache_bytes") for group in row["deployment"]["instances"])]
    if not (flags and ranks):
        return None
    return (f"{', '.join(ranks)} run without {flags}: none of their instances caches prefixes (off by default on "
            "their engine, as vLLM V0's prefill-first, or a policy keeping no prefix cache)")


# a PlanOptions field's plan flag where it is not --field-name, and the flag that gives a value (check_options names)
_FLAGS = {"routers": "--router", "host_kv_cache_bytes": "--host-kv-cache-gb", "kv_store_bytes": "--kv-store-gb"}
_VALUE_FLAGS = {("disaggregated", "false"): "--no-disagg", ("speculative", "[false, true]"): "--spec"}


def plan_flag(option: str, value: str | None = None) -> str:
    """How plan names a strategy option (plan/options.py OptionName): its flag, with `value` where one is meant."""
    if (option, value) in _VALUE_FLAGS:
        return _VALUE_FLAGS[option, value]
    flag = _FLAGS.get(option, "--" + option.replace("_", "-"))
    return f"{flag} {value}" if value else flag


def listed(flag: str, value: str) -> tuple[str, ...]:
    """The names a comma-separated plan flag gives, none empty ('' : none given, its default where that is empty)."""
    return tuple(name_list(flag, value)) if value.strip() else ()

