"""`phasewise estimate`: one deployment's prefill latency, decode step, per-operator breakdown, memory fit and
start-up time, on one chip or several side by side."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from phasewise.apps.cli_common import (
    All2allBackend,
    AttentionDp,
    CompileCache,
    Engine,
    Ep,
    ImageSize,
    ImagesPerRequest,
    Json,
    KvDtype,
    MemoryFraction,
    Model,
    MoeA2aBackend,
    MoeImbalance,
    MoeTp,
    Pp,
    Precision,
    RoutingSkew,
    Tp,
    WeightsReadGbps,
    app,
    console,
    given_knobs,
    render_caveats,
)
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError, refuse_empty


@app.command("estimate")
def estimate_cmd(
    model: Model = "meta-llama/Llama-3.1-8B",
    hardware: Annotated[str, typer.Option(help="catalog key or a hardware YAML path, or several comma-separated "
                                               "(e.g. h100-sxm,h200-sxm,b200): one row per chip, side by side")] = "h100-sxm",
    tp: Tp = 1,
    pp: Pp = 1,
    precision: Precision = None,
    kv_dtype: KvDtype = None,
    engine: Engine = "vllm",
    batch: Annotated[int, typer.Option(help="sequences in the batch")] = 1,
    prompt_len: Annotated[int, typer.Option(help="prompt tokens per sequence (prefill)")] = 1024,
    context_len: Annotated[Optional[int], typer.Option(help="cached tokens per sequence at the decode step (default: prompt-len)")] = None,
    memory_fraction: MemoryFraction = None,
    mapping: Annotated[Optional[str], typer.Option(help="operator mapping onto the chip's substrates: halo|all-cid|"
                                                        "attacc|all-cim or a YAML (needs a chip with substrates)")] = None,
    ep: Ep = None,
    moe_tp: MoeTp = None,
    attention_dp: AttentionDp = None,
    moe_imbalance: MoeImbalance = None,
    routing_skew: RoutingSkew = None,
    images_per_request: ImagesPerRequest = None,
    image_size: ImageSize = None,
    weights_read_gbps: WeightsReadGbps = None,
    compile_cache: CompileCache = None,
    moe_a2a_backend: MoeA2aBackend = None,
    all2all_backend: All2allBackend = None,
    as_json: Json = False,
) -> None:
    """Prefill latency, one decode step, the per-operator breakdown, the memory fit and the start-up time."""
    from phasewise.apps.estimate_view import render_estimate
    from phasewise.perf.estimate import estimate, refuse_beyond_context
    from phasewise.specs.hardware import chip_caveats, hardware_list
    from phasewise.workload import image_inputs

    refuse_empty(dict(image_size=image_size))
    images = image_inputs(images_per_request, image_size, None)
    from phasewise.perf.parallel import LAYOUT_FLAGS, parallel_layout
    from phasewise.specs import load_model
    from phasewise.specs.engine_refusals import block_shape_refusal, layout_refusal

    exchange_knobs = given_knobs(locals())  # the MoE exchange's: the engine knobs estimate takes
    refusal = layout_refusal(engine, tp, ep, moe_tp, attention_dp, LAYOUT_FLAGS,
                             exchange_knobs)  # as a deployment's (_layouts)
    if refusal:
        raise PhasewiseError(refusal)
    spec = load_model(model)  # a block-scaled checkpoint's split the engine refuses at load, as a deployment's
    split = parallel_layout(spec, tp, ep, moe_tp, attention_dp, moe_imbalance)
    refusal = block_shape_refusal(engine, spec, precision or spec.default_precision, tp, split.moe_tp,
                                  split.attention_dp, LAYOUT_FLAGS)
    if refusal:
        raise PhasewiseError(refusal)

    def one(chip: str):
        est = estimate(model, chip, tp=tp, pp=pp, precision=precision, kv_dtype=kv_dtype, engine=engine,
                       batch=batch, prompt_len=prompt_len, context_len=context_len, memory_fraction=memory_fraction,
                       mapping=mapping, ep=ep, moe_tp=moe_tp, attention_dp=attention_dp,
                       moe_imbalance=moe_imbalance, routing_skew=routing_skew,
                       images_per_sequence=images.per_request if images else 0,
                       image_px=images.one_size("estimate") if images else None,
                       weights_read_gbps=weights_read_gbps, compile_cache=compile_cache, knobs=exchange_knobs)
        refuse_beyond_context(est)  # (perf/estimate.py: Estimate.beyond_context)
        mem = est.memory
        if mem.weight_bytes + mem.reserved_bytes >= mem.usable_bytes:
            default = ", the engine default" if memory_fraction is None else ""
            # smaller precisions than the one run (fp8 beside fp8 was offered), each with a compute path on the chip
            from phasewise.specs.quant import load_quant

            here, hw = est.cost_model.quant.weight_bytes_per_param, est.cost_model.hw

            smaller = [name for name in ("fp8", "w4a16") if load_quant(name).weight_bytes_per_param < here
                       and load_quant(name).path_refusal(hw) is None]
            hint = f"use a smaller --precision ({', '.join(smaller)}), " if smaller else ""
            raise PhasewiseError(
                f"{est.cost_model.model.name} does not fit on {chip} at tp={tp} pp={pp} in "
                f"{precision or est.cost_model.model.default_precision}: "
                f"{mem.reason()}; raise --tp/--pp, {hint}or a larger "
                f"--memory-fraction ({est.memory_fraction:g} here{default})"
            )
        return est

    chips = hardware_list("--hardware", hardware)
    if precision is not None:  # an unknown one: one line before any chip's row (--hardware A,B), not a row each
        from phasewise.specs.quant import load_quant

        try:
            load_quant(precision)
        except PhasewiseError as exc:
            raise PhasewiseError(f"--precision: {exc}") from None
    if len(chips) > 1:  # one row per chip: the same model, layout and batch side by side
        from phasewise.apps.estimate_view import compare_chips, render_comparison

        rows = compare_chips(chips, one)
        caveats = chip_caveats(chips)
        if as_json:
            print(dumps({"chips": rows, **({"caveats": caveats} if caveats else {})}))
        else:
            render_comparison(console, rows)
            render_caveats(console, caveats)
        if not any(row["fits"] for row in rows):
            raise PhasewiseError(f"no chip of --hardware {hardware} runs it: {rows[0]['error']}")
        return
    est = one(hardware)
    caveats = chip_caveats(chips)
    if as_json:
        print(dumps({**est.to_dict(), **({"caveats": caveats} if caveats else {})}))
    else:
        render_estimate(console, est)
        render_caveats(console, caveats)
