"""`phasewise simulate --dllm MODE`: diffusion-LM serving (sim/dllm.py) from the CLI's flags, and its printout.

cli_simulate.py declares the flags and calls `dllm_requested` (which also refuses a diffusion model without --dllm and
an autoregressive one with it) and `simulate_dllm_cmd`; everything else lives here.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from phasewise.apps.cli_common import fit_to_width
from phasewise.apps.jsonout import dumps
from phasewise.errors import PhasewiseError

if TYPE_CHECKING:
    from rich.console import Console

    from phasewise.specs.dllm import DllmDecoding

# --dllm's knobs: the simulate parameter and its flag
KNOB_FLAGS = {"gen_length": "--gen-length", "block_length": "--block-length", "dllm_steps": "--dllm-steps",
              "dllm_threshold": "--dllm-threshold", "dllm_cache": "--dllm-cache",
              "tokens_per_step": "--tokens-per-step", "tokens_per_step_probs": "--tokens-per-step-probs",
              "jump_copies": "--jump-copies", "jump_probs": "--jump-probs", "batch_cap": "--batch-cap"}
# --out's timeline (refreshes vs block steps, a row per forward) covers the first requests up to this many (~100
# forwards each at the defaults: bounded memory whatever --requests is)
TIMELINE_REQUESTS = 1000
TIMELINE = "timeline"  # its file stem under --out DIR, beside the records and summary.json
# the decoding's knobs (--batch-cap is an instance's): simulate --dllm and plan --dllm take them alike
DECODING_KNOBS = tuple(key for key in KNOB_FLAGS if key != "batch_cap")
# their options, as plan declares them (apps/cli_plan.py)
GenLength = Annotated[Optional[int], typer.Option(help="--dllm: masked canvas positions per request (default 1024)")]
BlockLength = Annotated[Optional[int], typer.Option(help="--dllm: canvas positions per block (default 32)")]
DllmSteps = Annotated[Optional[int], typer.Option(help="--dllm baseline: forwards per canvas (default --gen-length)")]
DllmThreshold = Annotated[Optional[float], typer.Option(
    help="--dllm: refused, a threshold acts only through --tokens-per-step (the tokens a forward decides at it; the "
         "modes decode at 0.9)")]
DllmCache = Annotated[Optional[str], typer.Option(help="--dllm: none|prefix|dual (default: the mode's)")]
TokensPerStep = Annotated[Optional[float], typer.Option(help="--dllm: mean answer tokens a forward decides at the threshold (default 2.77)")]
TokensPerStepProbs = Annotated[Optional[str], typer.Option(
    help="--dllm fast-dllm|alp|odb: P(1, 2, ..., k answer tokens a forward decides), comma-separated, k <= "
         "--block-length: the distribution instead of --tokens-per-step's mean (1 + Poisson)")]
JumpCopies = Annotated[Optional[int], typer.Option(help="--dllm odb: block + speculative copies per step (default 4)")]
JumpProbs = Annotated[Optional[str], typer.Option(help="--dllm odb: P(0, 1, ... extra tokens accepted), comma-separated "
                                                   "(up to --jump-copies extra: 4 by default)")]
# the simulate flags a dLLM run reads: any other given with --dllm is refused by name (apps/cli_common.py
# changed_options), never ignored
WORKLOAD_KEYS = ("trace", "trace_limit", "rate", "requests", "isl", "osl", "isl_dist", "osl_dist", "isl_spread",
                 "osl_spread", "arrival", "cv", "concurrency", "seed", "num_prompts")
DLLM_SIMULATE_READS = {"model", "hardware", "precision", "kv_dtype", "engine", "tp", "memory_fraction", "replicas",
                       "batch_cap", "dllm", "as_json", "out", "out_format", *WORKLOAD_KEYS, *KNOB_FLAGS}
# simulate --dllm reports latencies, not SLO attainment (plan --dllm ranks by goodput under SLOs)
DLLM_SIMULATE_UNUSED = {"slo_ttft_ms": "--slo-ttft-ms", "slo_tpot_ms": "--slo-tpot-ms", "slo_tbt_ms": "--slo-tbt-ms"}


def dllm_requested(model: str, dllm: str | None, knobs: dict[str, Any]) -> bool:
    """Whether this simulate or plan call is a dLLM one; a one-line error for a knob without --dllm, --dllm on an
    autoregressive model, or a diffusion model without --dllm."""
    from phasewise.specs import load_model

    given = [KNOB_FLAGS[k] for k, v in knobs.items() if k in KNOB_FLAGS and v is not None]
    if dllm is None and given:
        raise PhasewiseError(f"{given[0]} needs --dllm baseline|fast-dllm|alp|odb (a diffusion-LM decoding)")
    if dllm is not None:
        from phasewise.plan.dllm_plan import diffusion_model

        diffusion_model(model)  # an autoregressive model: a one-line error
        return True
    spec = load_model(model)
    if not spec.causal:
        from phasewise.sim.simulate import DIFFUSION_NEEDS_DLLM

        raise PhasewiseError(DIFFUSION_NEEDS_DLLM.format(model=spec.name))
    return False


def parse_probs(text: str | None, flag: str = "--jump-probs",
                meaning: str = "P(0, 1, ... extra tokens)") -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise PhasewiseError(f"{flag} takes comma-separated numbers, {meaning} (got {text!r})") from None
    if not values:
        raise PhasewiseError(f"{flag} takes comma-separated numbers, {meaning}")
    return values


def decoding_of(dllm: str, params: dict[str, Any]) -> DllmDecoding:
    """The --dllm MODE decoding with the knob flags in `params` (simulate's and plan's alike): specs/dllm.py's
    one-line errors for values it cannot take or a knob the mode has not (--dllm-threshold on the threshold modes
    among them: it acts only through --tokens-per-step)."""
    from phasewise.specs.dllm import decoding

    dec = decoding(dllm, gen_length=params.get("gen_length"), block_length=params.get("block_length"),
                   steps=params.get("dllm_steps"), cache=params.get("dllm_cache"),
                   threshold=params.get("dllm_threshold"), tokens_per_step=params.get("tokens_per_step"),
                   copies=params.get("jump_copies"), jump_probs=parse_probs(params.get("jump_probs")),
                   tokens_per_step_probs=parse_probs(params.get("tokens_per_step_probs"), "--tokens-per-step-probs",
                                                     "P(1, 2, ... answer tokens a forward decides)"))
    if params.get("jump_probs") is not None and not dec.jump_share:  # no speculative copy accepts anything
        raise PhasewiseError(f"--jump-probs needs --jump-copies 2 or more (--jump-copies {dec.copies} turns "
                             "jump-share speculation off)")
    return dec


def simulate_dllm_cmd(console: Console, dllm: str, params: dict[str, Any], given: list[tuple[str, str]], *,
                      as_json: bool, out: str | None, out_format: str) -> None:
    """Build the decoding, the instance's cost model and the workload from simulate's flags; run; print. `given`:
    the flags the user set ((parameter, flag), cli_common.changed_options): one this path does not read is an
    error."""
    from phasewise.apps.simulate_view import check_records_out, write_records
    from phasewise.perf.dllm import DllmCost
    from phasewise.plan.dllm_plan import check_lengths, dllm_instance
    from phasewise.sim.api import build, trace_notes
    from phasewise.sim.dllm import simulate_dllm
    from phasewise.specs import load_hardware, load_model, load_quant
    from phasewise.workload import ClosedLoop

    for key, flag in DLLM_SIMULATE_UNUSED.items():
        if params.get(key, float("inf")) != float("inf"):
            raise PhasewiseError(f"{flag} does not apply to simulate --dllm (it reports time to first block, TPOT "
                                 "and E2E; plan --dllm ranks under SLOs)")
    for key, flag in given:
        if key not in DLLM_SIMULATE_READS:
            raise PhasewiseError(f"{flag} does not apply with --dllm (a dLLM instance serves whole requests: its "
                                 "flags are the chip, precision, engine, --tp, --replicas, --batch-cap, the "
                                 "workload's and the decoding's)")
    inputs = {flag: params[key] for key, flag in given if key != "out"}  # the files the run reads, as given
    if out:  # before the run: none of --out DIR's files (the timeline's among them) replaces one of them
        check_records_out(out, out_format, inputs, (TIMELINE,))
    dec = decoding_of(dllm, params)
    for key, flag in (("batch_cap", "--batch-cap"), ("replicas", "--replicas")):
        if params.get(key) is not None and params[key] < 1:
            raise PhasewiseError(f"{flag} must be >= 1 (got {params[key]})")
    model, hw = load_model(params["model"]), load_hardware(params["hardware"])
    quant = load_quant(params.get("precision") or model.default_precision, params.get("kv_dtype"))
    # the engine as plan --dllm resolves it (plan/dllm_plan.py dllm_instance): its figures and its fit alike
    instance = dllm_instance(model, hw, quant, dllm_engine(params, given), params.get("tp", 1),
                             params.get("memory_fraction"))
    cm = instance.cost
    spec = build(model=params["model"], hardware=params["hardware"], precision=quant.name,
                 **{k: params[k] for k in WORKLOAD_KEYS if k in params})
    prompts, answers = (spec.workload.lengths() if isinstance(spec.workload, ClosedLoop)
                        else (spec.workload.prompt_tokens, spec.workload.output_tokens))
    check_lengths(model, dec, prompts, answers)
    batch_cap = params.get("batch_cap") or 1
    check_fits(cm, dec, spec.workload, batch_cap, instance.memory_fraction)
    run = simulate_dllm(dec, DllmCost.of(cm), spec.workload, replicas=params.get("replicas") or 1,
                        batch_cap=batch_cap, seed=params.get("seed", 0),
                        timeline_requests=TIMELINE_REQUESTS if out else 0)
    summary = run.summary()
    summary["model"], summary["hardware"], summary["engine"] = model.name, hw.key, instance.engine
    # what a trace run does that its flags may not say (an ignored priority column, a --trace-limit past its end), as
    # the autoregressive path notes it (sim/run_notes.py trace_notes)
    notes = (trace_notes(params["trace"], params.get("trace_limit"), spec.workload, spec.deployment)
             if params.get("trace") is not None else ())
    if notes:
        summary["notes"] = list(notes)
    if out:
        summary["timeline_requests"] = min(TIMELINE_REQUESTS, len(run.plans))
        for path in write_records(run, summary, out, out_format, extra={TIMELINE: run.timeline_columns()},
                                  inputs=inputs):
            print(f"wrote {path}", file=sys.stderr)
    if as_json:
        print(dumps(summary))
    else:
        render_dllm(console, summary)
        for note in notes:
            console.print(f"[yellow]note[/] {note}", highlight=False)


def dllm_engine(params: dict[str, Any], given: list[tuple[str, str]]) -> str:
    """The engine a dLLM run costs its forwards with: --engine where given (even its default's value, which
    click's parameter source tells apart), else hf-eager, the released code's transformers loop (the CLI's own
    default, vllm, serves no diffusion LM)."""
    from phasewise.apps.cli_common import given_on_command_line

    given_at_all = any(key == "engine" for key, _ in given) or given_on_command_line("engine")
    return params["engine"] if given_at_all else "hf-eager"


def check_fits(cm, dec, workload, batch_cap: int, memory_fraction: float) -> None:
    """A one-line error when `batch_cap` requests of the longest prompt + canvas do not fit one instance (perf/dllm.py
    memory_error: it names --batch-cap, --jump-copies or the lengths, whichever does not fit)."""
    from phasewise.perf.dllm import memory_error
    from phasewise.workload import ClosedLoop

    prompts = workload.lengths()[0] if isinstance(workload, ClosedLoop) else workload.prompt_tokens
    error = memory_error(cm, dec, int(max(prompts)), batch_cap, memory_fraction)
    if error is not None:
        raise PhasewiseError(error.text)


def decoding_words(d: dict[str, Any]) -> str:
    """The decoding's knobs in a line, from its `dllm` block (DllmDecoding.to_json): simulate's and plan's titles."""
    knobs = (f"threshold {d['threshold']}, {d['tokens_per_step']:g} tokens/forward" if d["threshold"] is not None
             else f"{d['steps']} steps")
    extra = (", ALP" if d["alp"] else "") + (f", jump-share x{d['jump_copies']}" if d["jump_copies"] > 1 else "")
    return f"canvas {d['gen_length']} in blocks of {d['block_length']}, cache {d['cache']}, {knobs}{extra}"


def render_dllm(console: Console, s: dict[str, Any]) -> None:
    from rich.table import Table

    from phasewise.apps.simulate_view import ms_cell
    from phasewise.sim.metrics import NO_RATE

    d, t, f = s["dllm"], s["throughput"], s["per_request"]
    console.print(f"[bold]dLLM {d['mode']}[/] on {s.get('model', '')} / {s.get('hardware', '')}: "
                  f"{decoding_words(d)}")
    rates = NO_RATE if s["requests"] < 2 else (f"{t['requests_per_s']:.2f} req/s, "
                                                f"{t['output_tokens_per_s']:,.0f} answer tok/s")
    console.print(f"[bold]{s['completed']}/{s['requests']}[/] requests in {s['duration_s']:.2f} simulated s on "
                  f"{s['replicas']} instance(s), batch cap {s['batch_cap']}: {rates}; per request "
                  f"{s['tokens_per_s']['mean']:,.1f} tok/s")
    table = Table(title="Latency (ms)", title_justify="left")
    for col in ("metric", "mean", "p50", "p90", "p99"):  # figures whole (no_wrap); a narrow terminal drops p50
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=col != "metric")
    for key, label in (("ttft_ms", "time to first block (TTFT)"), ("tpot_ms", "TPOT after the first block"),
                       ("e2e_ms", "end-to-end"), ("queue_ms", "queueing")):
        table.add_row(label, *(ms_cell(s[key][k]) for k in ("mean", "p50", "p90", "p99")))
    fit_to_width(table, console.width, ("p50",))
    console.print(table)
    if not any(math.isfinite(s["tpot_ms"][k]) for k in ("mean", "p99")) and math.isfinite(s["ttft_ms"]["mean"]):
        # as the autoregressive path says it (apps/simulate_view.py render_summary)
        console.print("TPOT: - (no request produced a second token: every answer here is one token long)")
    inst = s["instances"]
    console.print(f"Per request: {f['answer_tokens']:.0f} answer tokens, canvas {f['canvas_tokens']:.0f}, "
                  f"{f['forwards']:.1f} forwards ({f['refreshes']:.1f} full/refresh, {f['steps']:.1f} block steps), "
                  f"{f['tokens_per_forward']:.2f} canvas tokens per forward. Instances: {inst['iterations']:,} "
                  f"iterations, busy {inst['busy_fraction']:.0%}, mean batch {inst['mean_batch']:.2f}")
    console.print(f"[dim]simulated in {s['sim']['wall_s']:.2f} s wall[/]")


def _cell(value: float, spec: str) -> str:
    """A ranking figure in `spec`'s format, "-" where there is none (NaN: no rental price, no rate met the SLOs),
    not "nan" (as simulate_view.ms_cell)."""
    return f"{value:{spec}}" if math.isfinite(value) else "-"


PLAN_DLLM_BATCH_CAPS = (1, 2, 4, 8, 16, 32)  # assumed: powers of two up to what ~fits an 80 GB GPU at a 2k canvas
# the plan flags a dLLM ranking reads (a dLLM's tokens appear a block at a time, so --slo-tbt-ms, a gap between
# two of them, is not among them; the decoding's knobs as simulate's): any other given with --dllm is refused by name
PLAN_DLLM_READS = {"model", "hardware", "gpus", "slo_ttft_ms", "slo_tpot_ms", "attainment", "isl", "osl", "isl_dist",
                   "osl_dist", "isl_spread", "osl_spread", "objective", "precisions", "batch_caps", "engine", "seed",
                   "memory_fraction", "as_json", "dllm", *DECODING_KNOBS}


def plan_dllm_cmd(console: Console, dllm: str, params: dict[str, Any], given: list[tuple[str, str]]) -> None:
    """`plan --dllm MODE`: rank chips x batch caps of one-GPU dLLM instances by goodput (plan/dllm_plan.py);
    `given` as simulate_dllm_cmd's."""
    from phasewise.plan.dllm_plan import rank_dllm
    from phasewise.specs.hardware import hardware_list
    from phasewise.workload import DEFAULT_ISL, DEFAULT_OSL, LengthDist, check_length_flags

    dllm_requested(params["model"], dllm, params)
    for key, flag in given:
        if key not in PLAN_DLLM_READS:
            raise PhasewiseError(f"{flag} does not apply with --dllm (give --isl/--osl; a dLLM plan ranks chips "
                                 "and batch caps of one-GPU instances)")
    engines = [e for e in (params.get("engine") or "").split(",") if e.strip()]
    if len(engines) > 1:  # one-GPU instances of one engine: several would be several rankings
        raise PhasewiseError(f"--engine takes one engine with --dllm (got '{params.get('engine')}')")
    if len([p for p in (params.get("precisions") or "").split(",") if p.strip()]) > 1:
        raise PhasewiseError("--precisions takes one precision with --dllm (got "
                             f"'{params.get('precisions')}')")
    caps_text = params.get("batch_caps")  # None: not typed, the dLLM ranking's own caps
    if caps_text is None:
        caps = list(PLAN_DLLM_BATCH_CAPS)
    else:
        try:
            caps = [int(x) for x in caps_text.split(",") if x.strip()]
        except ValueError:
            raise PhasewiseError(f"--batch-caps must be comma-separated integers (got '{caps_text}')") from None
        if not caps or min(caps) < 1:
            raise PhasewiseError(f"--batch-caps must list integers >= 1 (got '{caps_text}')")
    chips = hardware_list("--hardware", params["hardware"])  # each chip once, as plan's --hardware
    precision = (params.get("precisions") or "").split(",")[0].strip() or None
    check_length_flags(params.get("isl"), params.get("osl"), params.get("isl_dist"), params.get("osl_dist"),
                       params.get("isl_spread"), params.get("osl_spread"))  # as simulate's and plan's
    isl, osl = params.get("isl") or DEFAULT_ISL, params.get("osl") or DEFAULT_OSL
    dec = decoding_of(dllm, params)
    memory_fraction = params.get("memory_fraction")  # None: the engine's own (rank_dllm checks the range)
    left_out: list[tuple[str, int]] = []
    ranked = rank_dllm(dec, params["model"], chips, params["gpus"], caps, left_out=left_out,
                       prompt=LengthDist(params.get("isl_dist", "fixed"), isl, params.get("isl_spread", 0.0)),
                       answer=LengthDist(params.get("osl_dist", "fixed"), osl, params.get("osl_spread", 0.0)),
                       slo_ttft_ms=params["slo_ttft_ms"], slo_tpot_ms=params["slo_tpot_ms"],
                       target=params["attainment"], engine=dllm_engine(params, given), precision=precision,
                       objective=params.get("objective", "goodput-per-gpu"), seed=params.get("seed", 0),
                       memory_fraction=memory_fraction)
    # the share of each GPU an instance may fill, where given (else the engine's own, as simulate --dllm's)
    within = f" in --memory-fraction {memory_fraction:g} of it" if memory_fraction is not None else ""
    at_fraction = f" at --memory-fraction {memory_fraction:g}" if memory_fraction is not None else ""
    dropped = (", ".join(f"{cap} on {chip}" for chip, cap in left_out) + f": their batch does not fit one GPU{within} "
               "(KV of prompt + canvas, and a refresh's logits at every position)") if left_out else ""
    if params.get("as_json"):
        print(dumps({"dllm": dec.to_json(), "memory_fraction": memory_fraction,
                     "ranking": [r.to_json() for r in ranked],
                     "left_out": [{"hardware": chip, "batch_cap": cap} for chip, cap in left_out]}))
    else:
        from rich.table import Table

        from phasewise.apps.simulate_view import ms_cell

        table = Table(title=f"dLLM {dllm} deployments ({decoding_words(dec.to_json())}) "
                            f"of {params['gpus']} GPU(s){at_fraction}, ranked by "
                            f"{params.get('objective', 'goodput-per-gpu')} (TTFT = time to first block <= "
                            f"{params['slo_ttft_ms']:g} ms, TPOT <= {params['slo_tpot_ms']:g} ms for "
                            f"{params['attainment']:.0%})", title_justify="left")
        for col in ("#", "chip", "batch cap", "instances", "goodput req/s", "per GPU", "req/$", "TTFT p90 ms",
                    "TPOT p90 ms", "E2E mean ms", "busy"):
            table.add_column(col, justify="left" if col == "chip" else "right", no_wrap=True)
        for i, r in enumerate(ranked, 1):
            s = r.strategy
            table.add_row(str(i), s.hardware, str(s.batch_cap), str(s.replicas), f"{r.goodput_rps:.2f}",
                          f"{r.per_gpu_rps:.2f}", _cell(r.requests_per_dollar, ",.0f"), _cell(r.ttft_p90_ms, ".0f"),
                          ms_cell(r.tpot_p90_ms), _cell(r.e2e_mean_ms, ".0f"), f"{r.busy_fraction:.0%}")
        fit_to_width(table, console.width, ("E2E mean ms", "busy", "req/$", "instances", "per GPU"))
        console.print(table)
        if dropped:
            console.print(f"batch caps left out: {dropped}")
    if ranked[0].goodput_rps <= 0:
        raise PhasewiseError("no dLLM deployment meets the SLOs at any rate (the time to first block or the TPOT "
                             "after it is over its limit even unloaded); relax --slo-ttft-ms / --slo-tpot-ms")


__all__ = ["DECODING_KNOBS", "DLLM_SIMULATE_READS", "KNOB_FLAGS", "PLAN_DLLM_READS", "check_fits", "decoding_of",
           "dllm_requested", "parse_probs", "plan_dllm_cmd", "render_dllm", "simulate_dllm_cmd"]
