"""Serving strategies a GPU budget allows: collocated (TP x PP x replicas, prefill-first or chunked,
batch caps) and disaggregated (xPyD with per-phase TP), by precision and speculative decoding.
Strategies whose instances cannot hold the model (and a batch's KV) are pruned before simulation
(plan/instance_fit.py); one pass over the precisions and layouts: plan/strategy_enumeration.py; policies derive more
from them (plan/strategy_policies.py); what a strategy is and the options a plan chooses from: plan/options.py."""

from __future__ import annotations

from dataclasses import replace

from phasewise.errors import PhasewiseError, name_list
from phasewise.perf.parallel import LAYOUT_FLAGS
from phasewise.plan.chip_budgets import chip_budget, chip_labels
from phasewise.plan.options import (
    POLICIES,
    ROUTERS,
    NoStrategyFits,
    OptionName,
    PlanOptions,
    Strategy,
)
from phasewise.plan.strategy_enumeration import CAPPED, _Enumeration
from phasewise.sim.deployment import MAX_REPLICAS
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_refusals import layout_refusal, vendor_refusal
from phasewise.specs.hardware import hardware_list

ACROSS_NODES = "nothing fits within one"  # the pruned line that opens a plan gone beyond one node


def flag_words(option: str, value: str | None = None) -> str:
    """How plan names an option in a hint or a pruned line: its flag, with `value` ("--gpus 2", "--tp-options 4");
    a sweep passes its own (sweep_options.py sweep_words: "gpus: 2", "strategies.tp_options: [4]")."""
    flag = "--" + option.replace("_", "-")
    return f"{flag} {value}" if value else flag


def enumerate_strategies(model_name: str, hardware: str, gpus: int, opts: PlanOptions,
                         min_kv_tokens: int = 8192, name: OptionName = flag_words) -> tuple[list[Strategy], list[str]]:
    """Every strategy within the budget, and the reasons others were pruned (one line each). When none fits and
    opts.tp_across_nodes, instances of whole nodes (TP 2, 4, ... nodes, up to the budget) are tried too, with a
    pruned line saying so. opts.engine may list several engines (comma-separated): each one's strategies, named
    after it, compete in one ranking. When none fits, the error ends with the smallest step that would (_next_step),
    its options named by `name` (plan: its flags; a sweep: its file's keys)."""
    chips = hardware_list("--hardware", hardware)
    if len(chips) > 1:
        return _across_chips(model_name, chips, gpus, opts, min_kv_tokens, name)
    gpus = chip_budget(opts, hardware, gpus)
    engines = plan_engines(opts.engine)
    if len(engines) > 1:
        return _across_engines(model_name, hardware, gpus, opts, min_kv_tokens, engines, name)
    chip = load_hardware(hardware)
    refusal = vendor_refusal(opts.engine, chip)
    if refusal:  # beside other chips or engines a pruned line (_combined), alone the plan's one-line answer
        raise NoStrategyFits(refusal)
    strategies, pruned = _enumerate(model_name, hardware, gpus, opts, min_kv_tokens)
    node = chip.interconnect.gpus_per_node
    wider = tuple(n for n in (node * 2 ** i for i in range(1, 12)) if n <= gpus and n not in opts.tp_options)
    wide_ep = wide_ep_sizes(model_name, opts, wider) if strategies else ()
    if wide_ep:  # a MoE model within one node: its wide-EP layout over whole nodes competes too
        strategies, more = _enumerate(model_name, hardware, gpus,
                                      replace(opts, tp_options=(*opts.tp_options, *wide_ep), wide_ep_tp=wide_ep),
                                      min_kv_tokens)
        pruned = [f"{WIDE_EP} {node}-GPU nodes of {hardware}: tried TP {', '.join(map(str, wide_ep))} DP-EP "
                  f"(attention data-parallel, experts expert-parallel) beside "
                  f"{name('tp_options', ','.join(map(str, opts.tp_options)))}", *more]
    if not strategies and opts.tp_across_nodes and wider:
        strategies, more = _enumerate(model_name, hardware, gpus, replace(opts, tp_options=wider), min_kv_tokens)
        pruned = [f"{ACROSS_NODES} {node}-GPU node of {hardware} at "
                  f"{name('tp_options', ','.join(map(str, opts.tp_options)))}: tried TP {', '.join(map(str, wider))} "
                  "across nodes",
                  *more, *pruned]
    capped = [line for line in pruned if line.endswith(CAPPED)]
    if not strategies and capped:
        raise NoStrategyFits(f"no strategy fits: every one that fits {model_name} on {gpus:,} x {hardware} needs more "
                             f"than a deployment's {MAX_REPLICAS:,} instances in a group ({capped[0]}); its units are "
                             f"identical: plan a share of the fleet (at TP{max(opts.tp_options)}, "
                             f"{name('gpus', f'{max(opts.tp_options) * MAX_REPLICAS:,}')} at most) and scale its "
                             "goodput")
    if not strategies:
        within = [tp for tp in (*opts.tp_options, *(wider if opts.tp_across_nodes else ())) if tp <= gpus]
        tried = max(within or opts.tp_options)  # the largest instance the budget held (its pruned lines shown)
        largest = [line for line in pruned if f"tp={tried} " in line or f"TP{tried}" in line]
        shown = list(dict.fromkeys(largest or pruned))[:2]  # collocated and disaggregated can prune alike: once
        if shown and all(DOES_NOT_DIVIDE in line for line in shown):  # the layout, not the memory: no bigger node helps
            hint = f"choose {name('tp_options')} among the allowed values"
        else:
            hint = (_next_step(model_name, hardware, gpus, opts, min_kv_tokens, node, name)
                    or f"raise {name('gpus')}, or try {name('pp_options')} or a smaller {name('precisions')}")
        raise NoStrategyFits(
            f"no strategy fits: {model_name} on at most {gpus} x {hardware} "
            f"({'; '.join(shown) or 'no TP x PP within the budget'}); {hint}")
    return strategies, list(dict.fromkeys(pruned))  # the enumerations above can prune alike: each line once


def _next_step(model_name: str, hardware: str, gpus: int, opts: PlanOptions, min_kv_tokens: int, node: int,
               name: OptionName) -> str | None:
    """The smallest step to a strategy that fits where none did: the smallest TP instance (the PP size the options'
    smallest) that holds the model, among the sizes not tried within the budget (the options', powers of two up to
    a node, whole nodes), with the GPUs it needs and the TP size where the options would not try it; None where no
    such instance fits (or an operator mapping, TP 1 only)."""
    if opts.mapping:
        return None
    pp = min(opts.pp_options)
    wider = {node * 2 ** i for i in range(1, 12)}
    tried_later = {*opts.tp_options, *(wider if opts.tp_across_nodes else ())}  # tried once the budget holds them
    sizes = sorted({*opts.tp_options, *(2 ** i for i in range(12) if 2 ** i <= node), node, *wider}
                   - {tp for tp in tried_later if tp * pp <= gpus})
    for tp in sizes:
        try:
            found, _ = _enumerate(model_name, hardware, max(gpus, tp * pp),
                                  replace(opts, tp_options=(tp,), pp_options=(pp,)), min_kv_tokens)
        except PhasewiseError:  # nothing at this size (a precision the chip lacks ...): the next
            continue
        if found:
            break
    else:
        return None
    size, nodes = f"TP{tp}{f'PP{pp}' if pp > 1 else ''}", {2: "two"}.get(tp * pp // node, str(tp * pp // node))
    if tp * pp <= gpus:  # within the budget, a TP size the options did not name
        return (f"{name('tp_options', str(tp))} spans {nodes} nodes" if tp * pp > node
                else f"{size} fits: {name('tp_options', str(tp))}")
    more = name("gpus", str(tp * pp)) + ("" if tp in tried_later else f" and {name('tp_options', str(tp))}")
    return (f"an instance of {nodes} {node}-GPU nodes needs {more}" if tp * pp > node
            else f"{size} fits on {tp * pp} GPUs: {more}")


WIDE_EP = "wide-EP layout across"  # the pruned line that opens a plan that added it (wide_ep_sizes)
DOES_NOT_DIVIDE = "does not divide"  # a layout refusal's words (perf/parallel.py): the TP, not the memory, refused


def wide_ep_sizes(model_name: str, opts: PlanOptions, wider: tuple[int, ...]) -> tuple[int, ...]:
    """The TP sizes of whole nodes (`wider`: 2, 4, ... nodes within --gpus) a plan also tries in the DP-EP layout
    alone, as DeepSeek-class models are served across nodes (attention data-parallel, experts expert-parallel over
    16-plus GPUs: SGLang's and TensorRT-LLM's wide-EP deployments): with --tp-options left at its default
    (opts.tp_across_nodes), for a mixture-of-experts model, dp-ep among --moe-layouts, on an engine with expert and
    attention-data parallelism (engine_presets.yaml moe_parallelism). Pure TP and TP-attention EP across nodes
    stay out (an all-reduce over RDMA every layer): --tp-options 8,16 tries them."""
    if not (opts.tp_across_nodes and wider and "dp-ep" in opts.moe_layouts and not opts.mapping):
        return ()
    if not load_model(model_name).num_experts:
        return ()
    return tuple(n for n in wider if layout_refusal(opts.engine, n, n, None, n, LAYOUT_FLAGS) is None)


def plan_engines(engine: str) -> list[str]:
    """The engines a plan's --engine names (one, or several comma-separated), each once."""
    return name_list("--engine", engine)


def _across_chips(model_name: str, chips: list[str], gpus: int, opts: PlanOptions, min_kv_tokens: int,
                  name: OptionName) -> tuple[list[Strategy], list[str]]:
    """enumerate_strategies() on each chip of --hardware with the same GPU budget (engines, layouts, precisions
    as asked), its strategies named and its pruned lines prefixed with the chip (details['chip']); a chip on which
    nothing fits is a pruned line (an error only if nothing fits on any). Disaggregated strategies keep their
    phases on one chip: --prefill-hardware / --decode-hardware pair chips for a plan on one --hardware."""
    if opts.prefill_hardware or opts.decode_hardware:
        flag = "--prefill-hardware" if opts.prefill_hardware else "--decode-hardware"
        raise PhasewiseError(f"{flag} pairs chips for the phases of a plan on one --hardware; with several "
                             f"--hardware chips ({', '.join(chips)}) each chip's strategies run on it alone")
    for chip in chips:
        load_hardware(chip)  # an unknown chip is a one-line error, not a pruned line
    return _combined(chip_labels(chips), "chip", f"on any of {', '.join(chips)}",
                     lambda chip: enumerate_strategies(model_name, chip, chip_budget(opts, chip, gpus), opts,
                                                       min_kv_tokens, name))


def _across_engines(model_name: str, hardware: str, gpus: int, opts: PlanOptions, min_kv_tokens: int,
                    engines: list[str], name: OptionName) -> tuple[list[Strategy], list[str]]:
    """enumerate_strategies() for each engine, its strategies and pruned lines prefixed with its name; an engine
    with nothing that fits is a pruned line (an error only if none fits)."""
    return _combined(
        {engine: engine for engine in engines}, "engine", f"with any of {', '.join(engines)}",
        lambda engine: enumerate_strategies(model_name, hardware, gpus, replace(opts, engine=engine), min_kv_tokens,
                                            name))


def _combined(labels: dict[str, str], detail: str, which: str, enumerate_one) -> tuple[list[Strategy], list[str]]:
    """The strategies of several plans in one list (several engines, several chips): enumerate_one(name) for each
    of `labels`, its strategies named and its pruned lines prefixed with its label (details[detail] = the label);
    one with nothing that fits is a pruned line, none with anything one error ('no strategy fits {which}: ...')."""
    strategies: list[Strategy] = []
    pruned: list[str] = []
    for name, label in labels.items():
        try:
            found, why = enumerate_one(name)
        except NoStrategyFits as exc:
            pruned.append(f"{label}: {exc}")
            continue
        strategies += [replace(s, name=f"{label} {s.name}", details=dict(s.details, **{detail: label})) for s in found]
        pruned += [f"{label}: {line}" for line in why]
    if not strategies:
        raise NoStrategyFits(f"no strategy fits {which}: " + "; ".join(pruned[:len(labels)]))
    return strategies, pruned


def unknown_choice(opts: PlanOptions) -> tuple[str, str, tuple[str, ...]] | None:
    """The first serving policy or router `opts` names that does not exist (no router at all: '(none)'), as
    (field, name, allowed); None when all exist. Plan and sweep word the refusal (sweep_grid.py _check_names)."""
    for option, allowed in (("policies", POLICIES), ("routers", ROUTERS)):
        names = getattr(opts, option)
        unknown = [n for n in names if n not in allowed] or ([] if names or option == "policies" else ["(none)"])
        if unknown:
            return option, unknown[0], allowed
    return None


def _enumerate(model_name: str, hardware: str, gpus: int, opts: PlanOptions, min_kv_tokens: int
               ) -> tuple[list[Strategy], list[str]]:
    """enumerate_strategies() at opts.tp_options as given: (strategies, pruned), possibly no strategy."""
    if gpus < 1:
        raise PhasewiseError(f"--gpus must be >= 1 (got {gpus})")
    unknown = unknown_choice(opts)
    if unknown:
        option, name, allowed = unknown
        raise PhasewiseError(f"{'--policies' if option == 'policies' else '--router'} '{name}' is not one of "
                             f"{', '.join(allowed)}")
    run = _Enumeration(model_name, hardware, gpus, opts, min_kv_tokens)
    for precision, quant in run.usable_precisions():
        for spec in run.opts.speculative:
            run.collocated(precision, quant, spec)
            if run.opts.disaggregated:
                run.disaggregated(precision, quant, spec)
    return run.finish()
