"""Serving strategies a GPU budget allows: collocated (TP x PP x replicas, prefill-first or chunked,
batch caps) and disaggregated (xPyD with per-phase TP), by precision and speculative decoding.
Strategies whose instances cannot hold the model (and a batch's KV) are pruned before simulation."""

from __future__ import annotations

import itertools
import math
import re
import typing
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from phasewise.errors import PhasewiseError, name_list
from phasewise.perf import memory_fit
from phasewise.perf.expert_load import with_routing_skew
from phasewise.perf.memory import (
    compressed_kv_pool,
    draft_memory,
    kv_sequence_tokens,
    kv_state_pages,
    kv_window_terms,
    slot_state_bytes,
)
from phasewise.perf.parallel import check_parallelism, parallel_layout
from phasewise.sim.deployment import MAX_REPLICAS, Deployment
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.catalog import looks_like_path
from phasewise.specs.engine_kv import (
    engine_kv,
    prefix_caching_default,
    recurrent_state_in_kv_pool,
    window_kv,
    window_pool_speculation,
)
from phasewise.specs.engines import engine_knobs, graph_knobs, knob_values, memory_fraction_of, resolve_engine
from phasewise.specs.hardware import catalog_key, chip_identity, hardware_list
from phasewise.specs.mappings import load_mapping, resolve_mapping

ACROSS_NODES = "nothing fits within one"  # the pruned line that opens a plan gone beyond one node
CAPPED = f"({MAX_REPLICAS:,}; larger instances fill the budget with fewer)"  # ends a pruned line: a group too large


@dataclass(slots=True, frozen=True)
class PlanOptions:
    """What the planner may choose from (the CLI's --tp-options, --chunk-sizes, ... flags)."""

    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    # when no strategy fits within tp_options: also try TP across whole nodes (2, 4, ... x the chip's gpus_per_node,
    # up to the budget), as a model larger than one node's memory needs (the CLI's default; off once the user names
    # --tp-options)
    tp_across_nodes: bool = True
    pp_options: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ()  # empty: the model's native format (its checkpoint's), else bf16
    chunk_sizes: tuple[int, ...] = (512, 2048)  # chunked-prefill token budgets; the engine's own default too
    batch_caps: tuple[int, ...] = (256,)
    disaggregated: bool = True
    ratios: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1))  # prefill:decode instances
    speculative: tuple[bool, ...] = (False,)
    spec_tokens: int = 3
    spec_acceptance: float = 0.7
    engine: str = "vllm"
    kv_link: str = "nvlink"
    memory_fraction: float | None = None  # None: each engine's default (specs/engines.py EngineConfig.memory_fraction)
    # disaggregated strategies: chips the prefill / decode instances may run on (empty: the plan's hardware)
    prefill_hardware: tuple[str, ...] = ()
    decode_hardware: tuple[str, ...] = ()
    mapping: str | None = None  # operator mapping of every group (its chips need substrates; tp = pp = 1 only)
    # serving policies also tried: priority-pools (Ascendra: LP + HP pools of collocated instances),
    # attention-offload (Adrenaline: every disaggregated strategy with decode attention offloaded, auto),
    # encoders (a multimodal model's images: every strategy with one encode GPU per unit, sim/encode_pool.py)
    policies: tuple[str, ...] = ()
    # MoE models: how each instance's GPUs split attention and experts (perf/parallel.py): tp (all tensor
    # parallel), ep (experts expert-parallel over the tp GPUs, attention TP), dp-ep (attention data-parallel
    # and experts expert-parallel: the wide-EP layout SGLang and TensorRT-LLM run DeepSeek with)
    moe_layouts: tuple[str, ...] = ("tp", "ep", "dp-ep")
    # the router(s) in front of a deployment's instances (sim/routers/): with several, each strategy of more than one
    # instance is tried behind each (the first alone where one instance has nothing to route)
    routers: tuple[str, ...] = ("least_outstanding",)
    # MoE: the traffic's routing skew in every group (perf/expert_load.py); None: the model's
    routing_skew: float | None = None
    # host memory per instance keeping evicted prefix blocks (sim/kv_tiers.py HostTier); 0: none
    host_kv_cache_bytes: float = 0.0
    # a KV store the deployment's instances share (sim/kv_tiers.py kv_store); 0: none
    kv_store_bytes: float = 0.0
    # GPU budgets of some chips ((chip, GPUs), ...: --chip-gpus), in place of the plan's --gpus for those chips:
    # a plan across chips gives each its own; a disaggregated strategy's prefill and decode groups each stay within
    # their chip's
    chip_gpus: tuple[tuple[str, int], ...] = ()


POLICIES = ("priority-pools", "attention-offload", "encoders")


class NoStrategyFits(PhasewiseError):
    """Nothing within the budget fits the model (a one-line error like any PhasewiseError)."""

ROUTERS = typing.get_args(Deployment.model_fields["router"].annotation)
MOE_LAYOUTS = ("tp", "ep", "dp-ep")
POOL_UNIT = 4  # instances per priority-pool unit: 3 LP + 1 HP, as Ascendra-1 runs (PAPERS.md section 6)


@dataclass(slots=True)
class Strategy:
    """A deployment of `units` identical units (one collocated replica, or one xPyD group). Goodput is
    searched on one unit receiving 1/units of the traffic (independent queues behind the router), then
    verified on the whole deployment."""

    name: str
    deployment: dict[str, Any]  # the whole budget's Deployment fields
    unit: dict[str, Any]  # one unit's Deployment fields
    units: int
    gpus: int
    kind: str  # collocated | disaggregated
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def instances_per_unit(self) -> int:
        return sum(g.get("replicas", 1) for g in self.unit["instances"])

    def slice(self, units: int) -> dict[str, Any]:
        """The Deployment fields of `units` of its units behind the same router (every group's replicas scaled:
        the prefill:decode and LP:HP ratios kept); slice(units) is its whole deployment (tested)."""
        fields = dict(self.unit, instances=[dict(g, replicas=g.get("replicas", 1) * units)
                                            for g in self.unit["instances"]])
        if self.unit.get("encoders"):  # disaggregated encoders: each unit's own
            fields["encoders"] = dict(self.unit["encoders"], replicas=self.unit["encoders"]["replicas"] * units)
        return fields


def _fits(model, hw, quant, tp: int, pp: int, max_tokens: int, max_seqs: int, fraction: float | None,
          min_kv_tokens: int, layout: dict[str, Any] | None = None, engine: str = "vllm", mtp: bool = False,
          role: str = "collocated") -> bool:
    """Whether the weights and `min_kv_tokens` of KV fit one instance in `role` (`mtp`: with the MTP draft beside
    them, the planner's speculative decoding)."""
    split = parallel_layout(model, tp, **layout) if layout else None
    dp = split.attention_dp if split else 1
    config = resolve_engine(engine, hw, pp=pp, tp=tp, attention_dp=dp, speculative_draft="mtp" if mtp else None,
                            role=role, vision=model.vision, model_type=model.model_type)
    if fraction is None:  # the engine's own default on this layout
        fraction = config.memory_fraction
    quant = engine_kv(quant, config, model, hw, asked_kv_dtype=False)  # the engine's "auto" KV, as simulate's
    window = window_kv(config, model, hw)
    mem = memory_fit(model, hw, quant, tp, pp, max_tokens=max_tokens, max_seqs=max_seqs, memory_fraction=fraction,
                     layout=split, fraction_of=memory_fraction_of(engine),
                     state_dtype=config.profile.recurrent_state_dtype,
                     state_pool_ratio=config.profile.recurrent_state_pool_ratio,
                     draft=draft_memory(model, None, quant, tp, split) if mtp else (0.0, 0.0),
                     state_in_kv_pool=recurrent_state_in_kv_pool(config, model),
                     slot_bytes=slot_state_bytes(model, window[0], math.ceil(max_seqs / dp),
                                                 window_pool_speculation(config, model, mtp)),
                     kv_pool=compressed_kv_pool(config, model, quant, pp))
    terms = kv_window_terms(model, *window, attention_tp=tp // dp, quant=quant,
                            speculation=window_pool_speculation(config, model, mtp))
    pages = kv_state_pages(config, model, quant, tp // dp, pp, 1)
    return mem.kv_capacity_tokens >= kv_sequence_tokens(min_kv_tokens, terms, pages)


def _layouts(model, tp: int, opts: PlanOptions, pruned: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(name suffix, instance-group fields) of each --moe-layouts layout a tp-GPU instance of `model` can run
    (a dense model, or tp = 1: tensor parallel only)."""
    unknown = [name for name in opts.moe_layouts if name not in MOE_LAYOUTS]
    if unknown:
        raise PhasewiseError(f"--moe-layouts '{unknown[0]}' is not one of {', '.join(MOE_LAYOUTS)}")
    if not model.num_experts or tp == 1:
        return [("", {})]
    out = []
    for name in opts.moe_layouts:
        fields = {"tp": {}, "ep": {"ep": tp}, "dp-ep": {"ep": tp, "attention_dp": tp}}[name]
        try:
            if fields:
                parallel_layout(model, tp, **fields)
        except PhasewiseError as exc:
            pruned.append(f"tp={tp} {name}: {exc}")
            continue
        suffix = {"tp": "", "ep": f" EP{tp}", "dp-ep": f" DP{tp}EP{tp}"}[name]
        out.append((suffix, fields))
    return out


def enumerate_strategies(model_name: str, hardware: str, gpus: int, opts: PlanOptions,
                         min_kv_tokens: int = 8192) -> tuple[list[Strategy], list[str]]:
    """Every strategy within the budget, and the reasons others were pruned (one line each). When none fits and
    opts.tp_across_nodes, instances of whole nodes (TP 2, 4, ... nodes, up to the budget) are tried too, with a
    pruned line saying so. opts.engine may list several engines (comma-separated): each one's strategies, named
    after it, compete in one ranking."""
    chips = hardware_list("--hardware", hardware)
    if len(chips) > 1:
        return _across_chips(model_name, chips, gpus, opts, min_kv_tokens)
    gpus = chip_budget(opts, hardware, gpus)
    engines = plan_engines(opts.engine)
    if len(engines) > 1:
        return _across_engines(model_name, hardware, gpus, opts, min_kv_tokens, engines)
    strategies, pruned = _enumerate(model_name, hardware, gpus, opts, min_kv_tokens)
    node = load_hardware(hardware).interconnect.gpus_per_node
    wider = tuple(n for n in (node * 2 ** i for i in range(1, 12)) if n <= gpus and n not in opts.tp_options)
    if not strategies and opts.tp_across_nodes and wider:
        strategies, more = _enumerate(model_name, hardware, gpus, replace(opts, tp_options=wider), min_kv_tokens)
        pruned = [f"{ACROSS_NODES} {node}-GPU node of {hardware} at --tp-options "
                  f"{','.join(map(str, opts.tp_options))}: tried TP {', '.join(map(str, wider))} across nodes",
                  *more, *pruned]
    capped = [line for line in pruned if line.endswith(CAPPED)]
    if not strategies and capped:
        raise NoStrategyFits(f"no strategy fits: every one that fits {model_name} on {gpus:,} x {hardware} needs more "
                             f"than a deployment's {MAX_REPLICAS:,} instances in a group ({capped[0]}); its units are "
                             f"identical: plan a share of the fleet (at TP{max(opts.tp_options)}, --gpus "
                             f"{max(opts.tp_options) * MAX_REPLICAS:,} at most) and scale its goodput")
    if not strategies:
        tried = max((*opts.tp_options, *(wider if opts.tp_across_nodes else ())))
        largest = [line for line in pruned if f"tp={tried} " in line or f"TP{tried}" in line]
        if tried < 2 * node:  # one node's GPUs at most: the next step is an instance of two nodes
            hint = (f"an instance of two {node}-GPU nodes needs --gpus {2 * node}" if gpus < 2 * node
                    else f"--tp-options {2 * node} spans two nodes")
        else:
            hint = "raise --gpus, or try --pp-options or a smaller --precision"
        raise NoStrategyFits(
            f"no strategy fits: {model_name} on at most {gpus} x {hardware} "
            f"({'; '.join((largest or pruned)[:2]) or 'no TP x PP within the budget'}); {hint}")
    return strategies, pruned


def chip_budget(opts: PlanOptions, chip: str, gpus: int) -> int:
    """The GPUs `chip` may use: its --chip-gpus budget (by catalog key or file), else the plan's --gpus."""
    identity = chip_identity(chip)
    return next((n for name, n in opts.chip_gpus if chip_identity(name) == identity), gpus)


def parse_chip_gpus(value: str, chips: list[str]) -> tuple[tuple[str, int], ...]:
    """--chip-gpus 'h100-sxm=16,b200=8': each chip (one the plan uses) with its GPU budget (an integer >= 1)."""
    used = {chip_identity(c): c for c in chips}
    out: list[tuple[str, int]] = []
    for item in name_list("--chip-gpus", value):
        chip, sep, count = item.partition("=")
        chip, count = chip.strip(), count.strip()
        if not sep or not chip or not count.isdigit() or int(count) < 1:
            raise PhasewiseError(f"--chip-gpus '{item}' is not CHIP=N with N an integer >= 1 (e.g. h100-sxm=16,b200=8)")
        if chip_identity(chip) not in used:
            raise PhasewiseError(f"--chip-gpus names {chip}, which the plan does not use (its chips: "
                                 f"{', '.join(chips)})")
        if any(chip_identity(name) == chip_identity(chip) for name, _ in out):
            raise PhasewiseError(f"--chip-gpus gives {chip} twice")
        out.append((used[chip_identity(chip)], int(count)))
    return tuple(out)


def plan_engines(engine: str) -> list[str]:
    """The engines a plan's --engine names (one, or several comma-separated), each once."""
    return name_list("--engine", engine)


def strategy_chip(strategy: Strategy) -> str:
    """The chip a strategy of a plan across chips runs on (details['chip']), else '' (a plan on one chip)."""
    return strategy.details.get("chip", "")


def _chip_labels(chips: list[str]) -> dict[str, str]:
    """How a plan across chips names each: a catalog key as it is, a user's hardware YAML by its file's stem
    (chips/my_chip.yaml -> my_chip) unless two files share it or it is a catalog key (then the path)."""
    stems = {chip: Path(chip).stem if looks_like_path(chip) else catalog_key(chip) or chip for chip in chips}
    taken = list(stems.values())
    return {chip: stem if taken.count(stem) == 1 and (not looks_like_path(chip) or catalog_key(stem) is None)
            else chip for chip, stem in stems.items()}


def _across_chips(model_name: str, chips: list[str], gpus: int, opts: PlanOptions, min_kv_tokens: int
                  ) -> tuple[list[Strategy], list[str]]:
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
    return _combined(_chip_labels(chips), "chip", f"on any of {', '.join(chips)}",
                     lambda chip: enumerate_strategies(model_name, chip, chip_budget(opts, chip, gpus), opts,
                                                       min_kv_tokens))


def _across_engines(model_name: str, hardware: str, gpus: int, opts: PlanOptions, min_kv_tokens: int,
                    engines: list[str]) -> tuple[list[Strategy], list[str]]:
    """enumerate_strategies() for each engine, its strategies and pruned lines prefixed with its name; an engine
    with nothing that fits is a pruned line (an error only if none fits)."""
    return _combined(
        {engine: engine for engine in engines}, "engine", f"with any of {', '.join(engines)}",
        lambda engine: enumerate_strategies(model_name, hardware, gpus, replace(opts, engine=engine), min_kv_tokens))


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


def _enumerate(model_name: str, hardware: str, gpus: int, opts: PlanOptions, min_kv_tokens: int
               ) -> tuple[list[Strategy], list[str]]:
    """enumerate_strategies() at opts.tp_options as given: (strategies, pruned), possibly no strategy."""
    if gpus < 1:
        raise PhasewiseError(f"--gpus must be >= 1 (got {gpus})")
    unknown = [p for p in opts.policies if p not in POLICIES]
    if unknown:
        raise PhasewiseError(f"--policies '{unknown[0]}' is not one of {', '.join(POLICIES)}")
    unknown = [r for r in opts.routers if r not in ROUTERS] or ([] if opts.routers else ["(none)"])
    if unknown:
        raise PhasewiseError(f"--router '{unknown[0]}' is not one of {', '.join(ROUTERS)}")
    model, hw = with_routing_skew(load_model(model_name), opts.routing_skew), load_hardware(hardware)
    pruned: list[str] = []
    out: list[Strategy] = []

    def parallel_ok(tp: int, pp: int, budget: int = gpus) -> bool:
        if opts.mapping and (tp, pp) != (1, 1):
            pruned.append(f"tp={tp} pp={pp}: an operator mapping places one chip's operators (tp=1, pp=1 only)")
            return False
        try:
            check_parallelism(model, tp, pp)
        except PhasewiseError as exc:
            pruned.append(f"tp={tp} pp={pp}: {exc}")
            return False
        return tp * pp <= budget

    prefill_chips = [(name, load_hardware(name)) for name in opts.prefill_hardware or (hardware,)]
    decode_chips = [(name, load_hardware(name)) for name in opts.decode_hardware or (hardware,)]
    if opts.mapping:  # one-line errors before any simulation: an unknown mapping, a chip without substrates
        mapping = load_mapping(opts.mapping)
        for _, chip in [(hardware, hw), *prefill_chips, *decode_chips]:
            resolve_mapping(mapping, chip)
    usable, missing = [], None
    for precision in opts.precisions or (model.default_precision,):
        quant = load_quant(precision)
        try:
            for _, chip in [(hardware, hw), *prefill_chips, *decode_chips]:
                chip.peak(quant.on(chip).compute_dtype)  # a one-line error if a chip lacks the path
        except PhasewiseError as exc:  # another precision (or, across chips, another chip) may still serve
            pruned.append(f"{precision}: {exc}")
            missing = missing or exc
            continue
        usable.append((precision, quant))
    if not usable:  # the first precision's error, as one line
        raise NoStrategyFits(str(missing))
    for precision, quant in usable:
        for spec in opts.speculative:
            spec_cfg = {"draft_tokens": opts.spec_tokens, "acceptance": opts.spec_acceptance} if spec else None
            tag = f"{precision}{' +spec' if spec else ''}"
            base = dict(hardware=hardware, precision=precision, engine=opts.engine,
                        memory_fraction=opts.memory_fraction)  # engine fields per variant replace `engine`
            if opts.mapping:
                base["mapping"] = opts.mapping
            if opts.routing_skew is not None:
                base["routing_skew"] = opts.routing_skew
            # --- collocated: replicas of one TP x PP group fill the budget ---------------------------
            for tp, pp in itertools.product(opts.tp_options, opts.pp_options):
                if not parallel_ok(tp, pp):
                    continue
                replicas = gpus // (tp * pp)
                for cap, (split, layout) in itertools.product(opts.batch_caps, _layouts(model, tp, opts, pruned)):
                    if not _fits(model, hw, quant, tp, pp, 8192, cap, opts.memory_fraction, min_kv_tokens, layout,
                                 opts.engine, spec):
                        pruned.append(f"collocated tp={tp}{split} pp={pp} {tag}: model + KV for {min_kv_tokens} "
                                      f"tokens do not fit in {hardware} memory")
                        continue
                    for sched, engine_fields in _scheduling_variants(opts, cap, opts.spec_tokens + 1 if spec else 1,
                                                                     layout.get("attention_dp", 1)):
                        variant = engine_fields["engine"]
                        if variant != opts.engine and not _fits(model, hw, quant, tp, pp, 8192, cap,
                                                                opts.memory_fraction, min_kv_tokens, layout, variant,
                                                                spec):
                            # another engine holds memory otherwise: vLLM V0 a recurrent state for every seat
                            pruned.append(f"collocated tp={tp}{split} pp={pp} {sched} b{cap} {tag}: model + KV for "
                                          f"{min_kv_tokens} tokens do not fit in {hardware} memory under {variant}")
                            continue
                        group = dict(base, role="collocated", tp=tp, pp=pp, replicas=replicas, **layout,
                                     **engine_fields)
                        name = f"{replicas}x TP{tp}{f'PP{pp}' if pp > 1 else ''}{split} {sched} b{cap} {tag}"
                        out.append(Strategy(name, _deployment(model_name, [group], opts, spec_cfg),
                                            _deployment(model_name, [dict(group, replicas=1)], opts, spec_cfg),
                                            replicas, replicas * tp * pp, "collocated",
                                            dict(tp=tp, pp=pp, replicas=replicas, scheduler=sched, batch_cap=cap,
                                                 precision=precision, speculative=spec, **layout)))
                    if layout:
                        continue  # the policies below run on tensor-parallel instances
                    if "priority-pools" in opts.policies:
                        pools = _priority_pools(model_name, base, tp, pp, replicas, cap, tag, opts, spec_cfg)
                        if pools is None:
                            pruned.append(f"priority pools tp={tp} pp={pp} {tag}: need pp = 1, no speculative "
                                          f"decoding and at least 2 instances (budget gives {replicas})")
                        else:
                            out.append(pools)
            # --- disaggregated: x prefill and y decode instances, each phase with its own TP and layout -----
            if not opts.disaggregated:
                continue
            for (p_name, p_hw), (d_name, d_hw), p_tp, d_tp in itertools.product(
                    prefill_chips, decode_chips, opts.tp_options, opts.tp_options):
                # budgets: one --gpus for both groups, unless --chip-gpus gives their chips their own
                p_gpus, d_gpus = chip_budget(opts, p_name, gpus), chip_budget(opts, d_name, gpus)
                apart = chip_identity(p_name) != chip_identity(d_name) and (p_gpus, d_gpus) != (gpus, gpus)
                if not (parallel_ok(p_tp, 1, p_gpus) and parallel_ok(d_tp, 1, d_gpus)):
                    continue
                chips = "" if p_name == d_name == hardware else f" {p_name}/{d_name}"
                for (p_split, p_layout), (d_split, d_layout) in _role_layouts(model, p_tp, d_tp, opts, pruned):
                    roles = f"P-TP{p_tp}{p_split}/D-TP{d_tp}{d_split}{chips}"
                    if not (_fits(model, p_hw, quant, p_tp, 1, 8192, 64, opts.memory_fraction, min_kv_tokens,
                                  p_layout, opts.engine, spec, "prefill")
                            and _fits(model, d_hw, quant, d_tp, 1, 512, 256, opts.memory_fraction, min_kv_tokens,
                                      d_layout, opts.engine, spec, "decode")):
                        pruned.append(f"disaggregated {roles} {tag}: an instance does not fit in memory")
                        continue
                    for x, y in opts.ratios:
                        unit = x * p_tp + y * d_tp
                        if apart:  # each group within its own chip's budget
                            k = min(p_gpus // (x * p_tp), d_gpus // (y * d_tp))
                        else:
                            k = p_gpus // unit  # replicate the xPyD unit to fill the budget
                        if k < 1:
                            continue
                        px, dy = x * k, y * k
                        p_dp, d_dp = p_layout.get("attention_dp", 1), d_layout.get("attention_dp", 1)
                        groups = [dict(base, role="prefill", hardware=p_name, tp=p_tp, replicas=px, **p_layout,
                                       **knob_values(opts.engine, 64, attention_dp=p_dp)),
                                  dict(base, role="decode", hardware=d_name, tp=d_tp, replicas=dy, **d_layout,
                                       **knob_values(opts.engine, opts.batch_caps[-1], attention_dp=d_dp),
                                       **graph_knobs(opts.engine, opts.batch_caps[-1], d_dp))]
                        one = [dict(groups[0], replicas=x), dict(groups[1], replicas=y)]
                        name = f"{px}P(TP{p_tp}{p_split}) {dy}D(TP{d_tp}{d_split}){chips} {tag}"
                        details = dict(prefill=px, prefill_tp=p_tp, decode=dy, decode_tp=d_tp, precision=precision,
                                       speculative=spec, prefill_hardware=p_name, decode_hardware=d_name,
                                       **{f"prefill_{k}": v for k, v in p_layout.items()},
                                       **{f"decode_{k}": v for k, v in d_layout.items()})
                        out.append(Strategy(name, _deployment(model_name, groups, opts, spec_cfg),
                                            _deployment(model_name, one, opts, spec_cfg), k, k * unit,
                                            "disaggregated", details))
                        if ("attention-offload" in opts.policies and spec_cfg is None and not opts.mapping
                                and not (p_layout or d_layout)):
                            offload = {"attention_offload": {"mode": "auto"}}
                            out.append(Strategy(f"{name} +offload",
                                                {**_deployment(model_name, groups, opts, None, False), **offload},
                                                {**_deployment(model_name, one, opts, None, False), **offload}, k,
                                                k * unit,
                                                "disaggregated", dict(details, attention_offload="auto")))
    if "encoders" in opts.policies:
        if model.vision is None:
            raise PhasewiseError(f"--policies encoders: model '{model_name}' has no vision encoder (its config.json "
                                 "has no vision_config this parser reads)")
        out += [v for s in list(out) for v in _with_encoders(s, gpus, hardware)]
    names = set()
    unique = []
    for s in _behind_each_router(out, opts.routers):  # the same deployment can arise twice (e.g. 1:1 and 2:2 ratios)
        largest = max(g.get("replicas", 1) for g in s.deployment["instances"])
        if largest > MAX_REPLICAS:
            pruned.append(f"{s.name}: {largest:,} instances in one group, more than a deployment holds {CAPPED}")
            continue
        if s.name not in names:
            names.add(s.name)
            unique.append(s)
    return unique, pruned


ENCODER_SHARES = (1, 2, 4, 8)  # encoders policy: base units per encode GPU tried


def _with_encoders(s: Strategy, gpus: int, hardware: str) -> list[Strategy]:
    """`s` with one encode GPU (TP1 on the plan's chip) beside every 1, 2, 4 or 8 of its units, as many such
    units as the budget then holds (none for priority pools and attention offload, which keep their own units)."""
    if s.unit.get("priority_pools") or s.unit.get("attention_offload"):
        return []
    per_unit = s.gpus // s.units
    counts = {g["role"]: g.get("replicas", 1) for g in s.unit["instances"]}
    out = []
    for share in ENCODER_SHARES:
        units = gpus // (share * per_unit + 1)
        if units < 1:
            break
        grouped = dict(s.unit, instances=[dict(g, replicas=g.get("replicas", 1) * share) for g in s.unit["instances"]],
                       encoders={"hardware": hardware, "tp": 1, "replicas": 1})
        unit = Strategy(s.name, s.deployment, grouped, 1, share * per_unit + 1, s.kind, s.details)
        if s.kind == "disaggregated":
            name = re.sub(r"^\d+P", f"{counts['prefill'] * share * units}P", s.name)
            name = re.sub(r" \d+D\(", f" {counts['decode'] * share * units}D(", name)
            details = dict(s.details, prefill=counts["prefill"] * share * units,
                           decode=counts["decode"] * share * units)
        else:
            name = re.sub(r"^\d+x", f"{share * units}x", s.name)
            details = dict(s.details, replicas=share * units)
        out.append(Strategy(f"{name} +{units}E", unit.slice(units), grouped, units, units * (share * per_unit + 1),
                            s.kind, dict(details, encode_workers=units)))
    return out


def _behind_each_router(strategies: list[Strategy], routers: tuple[str, ...]) -> list[Strategy]:
    """With several --router values, each strategy of more than one instance behind each of them (named with it);
    a lone instance, which has nothing to route, and priority pools, which route by their own rule, behind the
    first."""
    if len(routers) == 1:
        return strategies
    out = []
    for s in strategies:
        several = (sum(g.get("replicas", 1) for g in s.deployment["instances"]) > 1
                   and "priority_pools" not in s.deployment)
        for router in routers if several else routers[:1]:
            out.append(replace(s, name=f"{s.name} via {router}" if several else s.name,
                               deployment=dict(s.deployment, router=router), unit=dict(s.unit, router=router),
                               details=dict(s.details, router=router)))
    return out


def _role_layouts(model, p_tp: int, d_tp: int, opts: PlanOptions, pruned: list[str]) -> list[tuple]:
    """Layout pairs of a disaggregated unit: each --moe-layouts layout on both roles, and prefill with experts
    expert-parallel beside decode in the wide-EP layout (as the Blackwell disaggregated DeepSeek rows run)."""
    prefill, decode = _layouts(model, p_tp, opts, pruned), _layouts(model, d_tp, opts, pruned)
    pairs = [(p, d) for p in prefill for d in decode if p[1].keys() == d[1].keys()]
    pairs += [(p, d) for p in prefill for d in decode if "attention_dp" not in p[1] and "attention_dp" in d[1]
              and p[1]]
    return pairs


def _priority_pools(model: str, base: dict[str, Any], tp: int, pp: int, replicas: int, cap: int, tag: str,
                    opts: PlanOptions, spec: dict | None) -> Strategy | None:
    """Ascendra's priority pools over the collocated replicas: units of POOL_UNIT instances (fewer if the budget
    has fewer), one of each high-priority (`ascendra-hp`) and the rest low-priority (`ascendra-lp`, shortest
    prefill first, capped at `cap` sequences); deadlines come from the plan's SLOs. None where they do not apply."""
    if pp != 1 or spec is not None or replicas < 2 or opts.mapping:
        return None
    size = min(POOL_UNIT, replicas)
    units = replicas // size
    fields = {k: v for k, v in base.items() if k != "engine"}
    lp = dict(fields, role="collocated", tp=tp, pool="lp", engine="ascendra-lp", max_num_seqs=cap)
    hp = dict(fields, role="collocated", tp=tp, pool="hp", engine="ascendra-hp")

    def deployment(n: int) -> dict[str, Any]:
        dep = _deployment(model, [dict(lp, replicas=(size - 1) * n), dict(hp, replicas=n)], opts, None,
                          host_tier=False)
        return {**dep, "priority_pools": {}}

    name = f"{units * size}x TP{tp} priority pools {(size - 1) * units}LP+{units}HP b{cap} {tag}"
    return Strategy(name, deployment(units), deployment(1), units, units * size * tp, "collocated",
                    dict(tp=tp, pp=pp, replicas=units * size, scheduler="priority pools", batch_cap=cap,
                         precision=base["precision"], speculative=False))


def _scheduling_variants(opts: PlanOptions, cap: int, tokens_per_step: int = 1,
                         attention_dp: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(label, engine fields) of each way to schedule a collocated instance with at most `cap` sequences of
    `tokens_per_step` tokens per decode step (speculative decoding: draft + 1): the engine with its default token
    budget, with each of --chunk-sizes as its budget (chunking on) where it holds a full decode step, for vLLM,
    V0's prefill-first scheduler as the unchunked baseline, and for SGLang with attention DP each of those budgets
    again with its prefill delayer on (the ranks prefill together: sim/prefill_delayer.py). `cap` and the chunk
    sizes are the instance's; a knob the engine reads per attention-DP rank gets its rank's share (knob_values)."""
    graphs = graph_knobs(opts.engine, cap, attention_dp)  # decode graphs up to the cap, as a tuned deployment sets them
    out = [(f"{opts.engine} default", dict(engine=opts.engine, **knob_values(opts.engine, cap, attention_dp=attention_dp),
                                           **graphs))]
    chunk_on = {"enable_chunked_prefill": True} if "enable_chunked_prefill" in engine_knobs(opts.engine) else {}
    for chunk in opts.chunk_sizes:
        if chunk >= cap * tokens_per_step:  # a budget below a full decode step would starve prefills
            knobs = knob_values(opts.engine, cap, chunk, attention_dp)
            out.append((f"chunked {chunk}", dict(engine=opts.engine, **knobs, **graphs, **chunk_on)))
    if opts.engine.split("@")[0] == "vllm":
        out.append(("prefill-first", dict(engine="vllm-v0", **knob_values("vllm-v0", cap))))
    if attention_dp > 1 and "enable_prefill_delayer" in engine_knobs(opts.engine):  # beside each token budget
        out += [(label.replace(" default", "") + " prefill-delayer", dict(fields, enable_prefill_delayer=True))
                for label, fields in list(out) if fields["engine"] == opts.engine]
    return out


def _deployment(model: str, groups: list[dict], opts: PlanOptions, spec: dict | None,
                host_tier: bool = True) -> dict[str, Any]:
    """The deployment of `groups`; --host-kv-cache-gb on the groups that admit prompts with prefix caching (their
    engine's default) and --kv-store-gb shared by them, unless `host_tier` is False (priority pools and attention
    offload keep no prefix cache)."""
    caching = [host_tier and g.get("role") != "decode"
               and _caches_prefixes(model, g.get("engine", opts.engine), g["hardware"]) for g in groups]
    if opts.host_kv_cache_bytes:
        groups = [dict(g, host_kv_cache_bytes=opts.host_kv_cache_bytes) if caches else g
                  for g, caches in zip(groups, caching)]
    dep: dict[str, Any] = {"model": model, "instances": groups, "router": opts.routers[0],
                           "kv_link": opts.kv_link}
    if opts.kv_store_bytes and any(caching):
        dep["kv_store_bytes"] = opts.kv_store_bytes
    if spec:
        dep["speculative"] = spec
    return dep


@lru_cache(maxsize=256)
def _caches_prefixes(model: str, engine: str, hardware: str) -> bool:
    """Whether `engine` caches prompt prefixes by default for `model` and keeps a host-memory tier (the plan's
    --host-kv-cache-gb goes where both hold)."""
    spec = load_model(model)
    config = resolve_engine(engine, load_hardware(hardware), model_type=spec.model_type)
    return not spec.window_all_layers and config.host_kv_load is not None and prefix_caching_default(config, spec)
