"""Serving strategies a GPU budget allows: collocated (TP x PP x replicas, prefill-first or chunked,
batch caps) and disaggregated (xPyD with per-phase TP), by precision and speculative decoding.
Strategies whose instances cannot hold the model (and a batch's KV) are pruned before simulation
(plan/instance_fit.py); policies derive more from them (plan/strategy_policies.py); what a strategy is and the
options a plan chooses from: plan/options.py."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from phasewise.errors import PhasewiseError, name_list
from phasewise.perf.expert_load import with_routing_skew
from phasewise.perf.parallel import LAYOUT_FLAGS, check_layout_parallelism, check_parallelism
from phasewise.plan.chip_budgets import PLACEMENT, chip_budget, chip_labels, kv_link_between, own_budget
from phasewise.plan.instance_fit import instance_fits, instance_layouts, role_layouts
from phasewise.plan.options import (
    POLICIES,
    ROUTERS,
    NoStrategyFits,
    OptionName,
    PlanOptions,
    Strategy,
    deployment_fields,
)
from phasewise.plan.scheduling_variants import (
    cap_label,
    group_spec_budget_refusal,
    plan_caps,
    scheduling_variants,
)
from phasewise.plan.strategy_policies import behind_each_router, priority_pools, with_encoders
from phasewise.sim.deployment import MAX_REPLICAS, mtp_draft_refusal
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engine_refusals import disagg_tp_refusal, layout_refusal, pipeline_refusal, vendor_refusal
from phasewise.specs.engines import graph_knobs, instance_seqs, knob_values
from phasewise.specs.hardware import chip_identity, hardware_list
from phasewise.specs.mappings import load_mapping, resolve_mapping

ACROSS_NODES = "nothing fits within one"  # the pruned line that opens a plan gone beyond one node
CAPPED = f"({MAX_REPLICAS:,}; larger instances fill the budget with fewer)"  # ends a pruned line: a group too large


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


@dataclass(slots=True)
class _Enumeration:
    """One pass of _enumerate: the strategies found (`out`) and the lines saying why others were not (`pruned`),
    collocated and disaggregated, for each precision and speculative choice."""

    model_name: str
    hardware: str
    gpus: int
    opts: PlanOptions
    min_kv_tokens: int
    model: Any = None
    hw: Any = None
    pruned: list[str] = field(default_factory=list)
    out: list[Strategy] = field(default_factory=list)
    caps: list = field(default_factory=list)
    prefill_chips: list = field(default_factory=list)
    decode_chips: list = field(default_factory=list)
    chip_label: dict = field(default_factory=dict)
    mapping: Any = None

    def __post_init__(self) -> None:
        opts, hardware = self.opts, self.hardware
        self.model = with_routing_skew(load_model(self.model_name), opts.routing_skew)
        self.hw = load_hardware(hardware)
        refusal = mtp_draft_refusal(self.model_name) if True in opts.speculative else None
        if refusal:  # the speculative strategies draft with MTP (deployment_fields: the default draft); a model
            # without MTP layers is planned without them (a sweep's grid of models with and without:
            # plan/options.py check_speculative refuses speculative decoding that applies to no model)
            line = f"speculative decoding (+spec): MTP drafting, which {refusal}"
            if False not in opts.speculative:
                raise NoStrategyFits(f"no strategy fits: {line}")
            self.pruned.append(line)
            self.opts = opts = replace(opts, speculative=tuple(s for s in opts.speculative if s is not True))
        self.caps = plan_caps(opts, self.hw)
        self.prefill_chips = [(name, load_hardware(name)) for name in opts.prefill_hardware or (hardware,)]
        self.decode_chips = [(name, load_hardware(name)) for name in opts.decode_hardware or (hardware,)]
        self.chip_label = chip_labels(list(dict.fromkeys([hardware, *opts.prefill_hardware,
                                                           *opts.decode_hardware])))
        if opts.mapping:  # one-line errors before any simulation: an unknown mapping, a chip without substrates
            self.mapping = load_mapping(opts.mapping)
            for _, chip in [(hardware, self.hw), *self.prefill_chips, *self.decode_chips]:
                resolve_mapping(self.mapping, chip)

    def attention_ok(self, tp: int, pp: int, layout: dict[str, Any], record: bool = True) -> bool:
        """Whether the layout's attention ranks split the model's heads, tp / attention_dp GPUs each
        (check_layout_parallelism); an attention-data-parallel layout's refusal is a pruned line (with `record`),
        the others' parallel_ok's."""
        dp = layout.get("attention_dp", 1)
        try:
            check_layout_parallelism(self.model, tp, pp, dp)
        except PhasewiseError as exc:
            if dp > 1 and record:
                self.pruned.append(f"tp={tp} pp={pp} attention_dp={dp}: {exc}")
            return False
        return True

    def parallel_ok(self, tp: int, pp: int, budget: int | None = None) -> bool:
        """Whether a tp x pp instance splits the model (or, where attention over all tp GPUs cannot, a DP-EP
        layout's ranks do) and fits `budget` (the plan's GPUs by default)."""
        opts, pruned = self.opts, self.pruned
        if opts.mapping and (tp, pp) != (1, 1):
            pruned.append(f"tp={tp} pp={pp}: an operator mapping places one chip's operators (tp=1, pp=1 only)")
            return False
        try:
            check_parallelism(self.model, tp, pp)
        except PhasewiseError as exc:  # attention over all tp GPUs cannot: a DP-EP layout's ranks split tp / dp
            if not any(self.attention_ok(tp, pp, fields, record=False)
                       for _, fields in instance_layouts(self.model, tp, opts, [])):
                pruned.append(f"tp={tp} pp={pp}: {exc}")
                return False
            others = () if tp in opts.wide_ep_tp else [name for name in opts.moe_layouts if name != "dp-ep"]
            if others:  # the layouts with attention over all tp GPUs, refused; the DP-EP one goes on
                pruned.append(f"tp={tp} pp={pp} {'/'.join(others)} layouts (attention over all {tp} GPUs): {exc}")
        return tp * pp <= (self.gpus if budget is None else budget)

    def decode_seqs(self, layout: dict[str, Any]) -> int | None:
        """A decode instance's sequences: the last cap's."""
        cap = self.caps[-1]
        return None if cap is None else instance_seqs(self.opts.engine, cap, layout.get("attention_dp", 1))

    def usable_precisions(self) -> list[tuple[str, Any]]:
        """(precision, its quant scheme) for each precision every chip has a compute path for; the others pruned
        (NoStrategyFits with the first one's error where none is)."""
        usable, missing = [], None
        for precision in self.opts.precisions or (self.model.default_precision,):
            quant = load_quant(precision)
            chips = [chip for _, chip in [(self.hardware, self.hw), *self.prefill_chips, *self.decode_chips]]
            refusal = next(filter(None, (quant.path_refusal(chip) for chip in chips)), None)
            if refusal:  # another precision (or, across chips, another chip) may still serve
                self.pruned.append(f"{precision}: {refusal}")
                missing = missing or refusal
                continue
            usable.append((precision, quant))
        if not usable:  # the first precision's error, as one line
            raise NoStrategyFits(str(missing))
        return usable

    def _variant(self, precision: str, spec: bool) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        """(the strategies' tag, the fields every group shares, the speculative block) of one precision and
        speculative choice; an operator mapping is named beside the precision: the same layout without it is
        another strategy."""
        opts = self.opts
        spec_cfg = {"draft_tokens": opts.spec_tokens, "acceptance": opts.spec_acceptance} if spec else None
        tag = f"{precision}{' +spec' if spec else ''}{f' mapping {self.mapping.name}' if opts.mapping else ''}"
        base = dict(hardware=self.hardware, precision=precision, engine=opts.engine,
                    memory_fraction=opts.memory_fraction)  # engine fields per variant replace `engine`
        if opts.mapping:
            base["mapping"] = opts.mapping
        if opts.routing_skew is not None:
            base["routing_skew"] = opts.routing_skew
        return tag, base, spec_cfg

    def collocated(self, precision: str, quant: Any, spec: bool) -> None:
        """Replicas of one TP x PP group fill the budget: each layout, cap and scheduling variant that fits."""
        opts, model, hw, pruned, hardware = self.opts, self.model, self.hw, self.pruned, self.hardware
        tag, base, spec_cfg = self._variant(precision, spec)
        min_kv = self.min_kv_tokens
        for tp, pp in itertools.product(opts.tp_options, opts.pp_options):
            if not self.parallel_ok(tp, pp):
                continue
            replicas = self.gpus // (tp * pp)
            layouts = [(split, layout) for split, layout in instance_layouts(model, tp, opts, pruned,
                                                                             precision=precision)
                       if self.attention_ok(tp, pp, layout)]
            for cap, (split, layout) in itertools.product(self.caps, layouts):
                dp = layout.get("attention_dp", 1)
                label = cap_label(opts.engine, cap, dp)
                seqs = None if cap is None else instance_seqs(opts.engine, cap, dp)
                where = f"collocated tp={tp}{split} pp={pp}"
                refusal = pipeline_refusal(opts.engine, pp, speculative=spec)
                if refusal:  # the engine refuses the combination at start-up (SGLang: PP with speculation)
                    pruned.append(f"{where} {label} {tag}: {refusal}")
                    continue
                if not instance_fits(model, hw, quant, tp, pp, seqs, opts.memory_fraction, min_kv, layout,
                                     opts.engine, spec):
                    pruned.append(f"{where} {label} {tag}: model + KV for {min_kv} tokens do not fit in {hardware} "
                                  "memory")
                    continue
                for sched, engine_fields in scheduling_variants(opts, cap, opts.spec_tokens + 1 if spec else 1,
                                                                 tp, layout, pruned):
                    variant = engine_fields["engine"]
                    starves = group_spec_budget_refusal(engine_fields, hw, model, tp, pp, layout, opts.spec_tokens) \
                        if spec else None
                    if starves:  # the engine's own token budget (its default variant) below a decode step
                        pruned.append(f"{where} {sched} {label} {tag}: {starves}")
                        continue
                    if variant != opts.engine and not instance_fits(
                            model, hw, quant, tp, pp, cap, opts.memory_fraction, min_kv, layout, variant, spec):
                        # another engine holds memory otherwise: vLLM V0 a recurrent state for every seat
                        pruned.append(f"{where} {sched} {label} {tag}: model + KV for {min_kv} tokens do not fit "
                                      f"in {hardware} memory under {variant}")
                        continue
                    group = dict(base, role="collocated", tp=tp, pp=pp, replicas=replicas, **layout, **engine_fields)
                    name = f"{replicas}x TP{tp}{f'PP{pp}' if pp > 1 else ''}{split} {sched} {label} {tag}"
                    self.out.append(Strategy(
                        name, deployment_fields(self.model_name, [group], opts, spec_cfg),
                        deployment_fields(self.model_name, [dict(group, replicas=1)], opts, spec_cfg),
                        replicas, replicas * tp * pp, "collocated",
                        dict(tp=tp, pp=pp, replicas=replicas, scheduler=sched, batch_cap=cap, precision=precision,
                             speculative=spec, **layout)))
                if layout or cap not in opts.batch_caps:
                    continue  # the policies below run on tensor-parallel instances, at the caps given
                if "priority-pools" in opts.policies:
                    pools = priority_pools(self.model_name, base, tp, pp, replicas, cap, tag, opts, spec_cfg)
                    if pools is None:
                        pruned.append(f"priority pools tp={tp} pp={pp} {tag}: need pp = 1, no speculative "
                                      f"decoding and at least 2 instances (budget gives {replicas})")
                    else:
                        self.out.append(pools)

    def disaggregated(self, precision: str, quant: Any, spec: bool) -> None:
        """x prefill and y decode instances, each phase with its own chip, TP and layout: every pair that fits,
        each ratio's xPyD unit replicated to fill the budget."""
        opts, model, pruned = self.opts, self.model, self.pruned
        tag, base, spec_cfg = self._variant(precision, spec)
        for (p_name, p_hw), (d_name, d_hw), p_tp, d_tp in itertools.product(
                self.prefill_chips, self.decode_chips, opts.tp_options, opts.tp_options):
            # budgets: one --gpus for both groups, unless --chip-gpus gives their (different) chips their own,
            # each group then within its chip's whatever the numbers (equal ones too)
            p_gpus, d_gpus = chip_budget(opts, p_name, self.gpus), chip_budget(opts, d_name, self.gpus)
            apart = chip_identity(p_name) != chip_identity(d_name) and (
                own_budget(opts, p_name) is not None or own_budget(opts, d_name) is not None)
            if not (self.parallel_ok(p_tp, 1, p_gpus) and self.parallel_ok(d_tp, 1, d_gpus)):
                continue
            chips = ("" if p_name == d_name == self.hardware
                     else f" {self.chip_label[p_name]}/{self.chip_label[d_name]}")
            pairs = role_layouts(model, p_tp, d_tp, opts, pruned, precision)
            for (p_split, p_layout), (d_split, d_layout) in pairs:
                if not (self.attention_ok(p_tp, 1, p_layout) and self.attention_ok(d_tp, 1, d_layout)):
                    continue
                roles = f"P-TP{p_tp}{p_split}/D-TP{d_tp}{d_split}{chips}"
                refusal = disagg_tp_refusal(opts.engine, p_tp // p_layout.get("attention_dp", 1),
                                            d_tp // d_layout.get("attention_dp", 1), model.num_kv_heads)
                if refusal:  # the engine's P/D connector would not start the pair
                    pruned.append(f"disaggregated {roles}: {refusal}")
                    continue
                if not (instance_fits(model, p_hw, quant, p_tp, 1, 64, opts.memory_fraction,
                                      self.min_kv_tokens, p_layout, opts.engine, spec, "prefill")
                        and instance_fits(model, d_hw, quant, d_tp, 1, self.decode_seqs(d_layout),
                                          opts.memory_fraction, self.min_kv_tokens, d_layout, opts.engine, spec,
                                          "decode")):
                    pruned.append(f"disaggregated {roles} {tag}: an instance does not fit in memory")
                    continue
                if spec:  # each phase's engine with its token budget (the decode one: the last cap's)
                    starves = next(filter(None, (
                        group_spec_budget_refusal(dict(engine=opts.engine, **knob_values(opts.engine, seqs)), chip,
                                             model, role_tp, 1, role_layout, opts.spec_tokens, role)
                        for role, chip, role_tp, role_layout, seqs in (
                            ("prefill", p_hw, p_tp, p_layout, 64), ("decode", d_hw, d_tp, d_layout, self.caps[-1])))),
                        None)
                    if starves:
                        pruned.append(f"disaggregated {roles} {tag}: {starves}")
                        continue
                pair = dict(p_name=p_name, p_hw=p_hw, d_name=d_name, d_hw=d_hw, p_tp=p_tp, d_tp=d_tp,
                            p_split=p_split, d_split=d_split, p_layout=p_layout, d_layout=d_layout, chips=chips)
                for x, y in opts.ratios:
                    if apart:  # each group within its own chip's budget
                        k = min(p_gpus // (x * p_tp), d_gpus // (y * d_tp))
                    else:
                        k = p_gpus // (x * p_tp + y * d_tp)  # replicate the xPyD unit to fill the budget
                    if k >= 1:
                        self._xpyd(x, y, k, pair, precision, spec, tag, base, spec_cfg)

    def _xpyd(self, x: int, y: int, k: int, pair: dict[str, Any], precision: str, spec: bool, tag: str,
              base: dict[str, Any], spec_cfg: dict[str, Any] | None) -> None:
        """k copies of the xPyD unit of one prefill / decode pair (and its attention-offload variant)."""
        opts = self.opts
        p_tp, d_tp, p_layout, d_layout = pair["p_tp"], pair["d_tp"], pair["p_layout"], pair["d_layout"]
        unit = x * p_tp + y * d_tp
        px, dy = x * k, y * k
        # each as the engine's flag reads it (per attention-DP rank on vLLM and TensorRT-LLM): the prefill's 64
        # sequences, the decode's the last cap (with the engine's own, that one)
        cap = self.caps[-1]
        groups = [dict(base, role="prefill", hardware=pair["p_name"], tp=p_tp, replicas=px, **p_layout,
                       **knob_values(opts.engine, 64)),
                  dict(base, role="decode", hardware=pair["d_name"], tp=d_tp, replicas=dy, **d_layout,
                       **knob_values(opts.engine, cap), **(graph_knobs(opts.engine, cap) if cap is not None else {}))]
        one = [dict(groups[0], replicas=x), dict(groups[1], replicas=y)]
        name = f"{px}P(TP{p_tp}{pair['p_split']}) {dy}D(TP{d_tp}{pair['d_split']}){pair['chips']} {tag}"
        details = dict(prefill=px, prefill_tp=p_tp, decode=dy, decode_tp=d_tp, precision=precision,
                       speculative=spec, prefill_hardware=pair["p_name"], decode_hardware=pair["d_name"],
                       **{f"prefill_{key}": v for key, v in p_layout.items()},
                       **{f"decode_{key}": v for key, v in d_layout.items()})
        link, apart_why = kv_link_between(opts.kv_link, pair["p_name"], pair["p_hw"], pair["d_name"], pair["d_hw"],
                                          k * unit)
        if apart_why:
            note = (f"disaggregated strategies {apart_why}: KV transfers costed over rdma, not "
                    f"--kv-link {opts.kv_link} ({PLACEMENT})")
            self.pruned.extend([note] if note not in self.pruned else [])
        link_opts = replace(opts, kv_link=link)
        details["kv_link"] = link
        self.out.append(Strategy(name, deployment_fields(self.model_name, groups, link_opts, spec_cfg),
                                 deployment_fields(self.model_name, one, link_opts, spec_cfg), k, k * unit,
                                 "disaggregated", details))
        if ("attention-offload" in opts.policies and spec_cfg is None and not opts.mapping
                and not (p_layout or d_layout)):
            offload = {"attention_offload": {"mode": "auto"}}
            self.out.append(Strategy(f"{name} +offload",
                                     {**deployment_fields(self.model_name, groups, link_opts, None, False), **offload},
                                     {**deployment_fields(self.model_name, one, link_opts, None, False), **offload},
                                     k, k * unit, "disaggregated", dict(details, attention_offload="auto")))

    def finish(self) -> tuple[list[Strategy], list[str]]:
        """The strategies with the encoder policy's and each router's variants, each name once and no group past
        MAX_REPLICAS; the pruned lines, each once (a refusal met in several loops: precisions, P/D pairs)."""
        out, pruned = self.out, self.pruned
        if "encoders" in self.opts.policies:
            if self.model.vision is None:
                raise PhasewiseError(f"--policies encoders: model '{self.model_name}' has no vision encoder (its "
                                     "config.json has no vision_config this parser reads)")
            out += [v for s in list(out) for v in with_encoders(s, self.gpus, self.hardware)]
        names = set()
        unique = []
        for s in behind_each_router(out, self.opts.routers):  # the same deployment can arise twice (1:1 and 2:2)
            largest = max(g.get("replicas", 1) for g in s.deployment["instances"])
            if largest > MAX_REPLICAS:
                pruned.append(f"{s.name}: {largest:,} instances in one group, more than a deployment holds {CAPPED}")
                continue
            if s.name not in names:
                names.add(s.name)
                unique.append(s)
        return unique, list(dict.fromkeys(pruned))
