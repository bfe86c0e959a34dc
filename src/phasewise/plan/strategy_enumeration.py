"""One pass of a plan's strategy enumeration (strategies.py _enumerate): for each precision and speculative choice,
the collocated and disaggregated strategies whose instances fit the budget and the model, and a pruned line for each
one that does not."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.perf.expert_load import with_routing_skew
from phasewise.perf.parallel import check_layout_parallelism, check_parallelism
from phasewise.plan.chip_budgets import PLACEMENT, chip_budget, chip_labels, kv_link_between, own_budget
from phasewise.plan.instance_fit import instance_layouts, instance_memory_refusal, role_layouts
from phasewise.plan.options import NoStrategyFits, PlanOptions, Strategy, deployment_fields
from phasewise.plan.scheduling_variants import cap_label, group_spec_budget_refusal, plan_caps, scheduling_variants
from phasewise.plan.strategy_policies import behind_each_router, priority_pools, with_encoders
from phasewise.sim.deployment import MAX_REPLICAS, mtp_draft_refusal
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engine_refusals import disagg_tp_refusal, pipeline_refusal
from phasewise.specs.engines import graph_knobs, instance_seqs, knob_values
from phasewise.specs.hardware import chip_identity
from phasewise.specs.mappings import load_mapping, resolve_mapping

CAPPED = f"({MAX_REPLICAS:,}; larger instances fill the budget with fewer)"  # ends a pruned line: a group too large


def memory_pruned(opts: PlanOptions, hardware: str, refusal: str) -> str:
    """A pruned line's words for an instance `refusal` (plan/instance_fit.py instance_memory_refusal) does not let
    fit on `hardware`, naming the plan's --memory-fraction where it sets one (else each engine's own)."""
    at = "" if opts.memory_fraction is None else f" at --memory-fraction {opts.memory_fraction:g}"
    return f"does not fit {hardware}{at}: {refusal}"


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
                refusal = instance_memory_refusal(model, hw, quant, tp, pp, seqs, opts.memory_fraction, min_kv,
                                                  layout, opts.engine, spec)
                if refusal:
                    pruned.append(f"{where} {label} {tag}: {memory_pruned(opts, hardware, refusal)}")
                    continue
                for sched, engine_fields in scheduling_variants(opts, cap, opts.spec_tokens + 1 if spec else 1,
                                                                 tp, layout, pruned):
                    variant = engine_fields["engine"]
                    starves = group_spec_budget_refusal(engine_fields, hw, model, tp, pp, layout, opts.spec_tokens) \
                        if spec else None
                    if starves:  # the engine's own token budget (its default variant) below a decode step
                        pruned.append(f"{where} {sched} {label} {tag}: {starves}")
                        continue
                    refusal = None if variant == opts.engine else instance_memory_refusal(
                        model, hw, quant, tp, pp, cap, opts.memory_fraction, min_kv, layout, variant, spec)
                    if refusal:  # another engine holds memory otherwise: vLLM V0 a recurrent state for every seat
                        pruned.append(f"{where} {sched} {label} {tag}: under {variant} "
                                      f"{memory_pruned(opts, hardware, refusal)}")
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
                refusal = None  # the first role whose instance does not fit (the decode one checked only after)
                for role, chip, chip_spec, role_tp, seqs, role_layout in (
                        ("prefill", p_name, p_hw, p_tp, 64, p_layout),
                        ("decode", d_name, d_hw, d_tp, self.decode_seqs(d_layout), d_layout)):
                    why = instance_memory_refusal(model, chip_spec, quant, role_tp, 1, seqs, opts.memory_fraction,
                                                  self.min_kv_tokens, role_layout, opts.engine, spec, role)
                    if why:
                        refusal = f"its {role} instance {memory_pruned(opts, chip, why)}"
                        break
                if refusal:
                    pruned.append(f"disaggregated {roles} {tag}: {refusal}")
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
