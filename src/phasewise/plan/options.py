"""What a plan chooses from and what it chooses: PlanOptions (the CLI's --tp-options, --chunk-sizes, ... flags),
a Strategy (a deployment of identical units, searched on one), and the Deployment fields a strategy's groups
become (deployment_fields: the plan's host-memory prefix tier and KV store where the groups cache prefixes), and
check_options: which options cannot apply to the models, chips and engines asked (plan's and sweep's one check)."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from phasewise.errors import PhasewiseError, name_list
from phasewise.sim.deployment import Deployment
from phasewise.sim.flag_checks import is_integer, is_number
from phasewise.sim.kv_tiers import HOST_TIER_RELEASES
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_kv import prefix_caching_default
from phasewise.specs.engines import resolve_engine
from phasewise.specs.reading import spec_file_stamps


@dataclass(slots=True, frozen=True)
class PlanOptions:
    """What the planner may choose from (the CLI's --tp-options, --chunk-sizes, ... flags)."""

    tp_options: tuple[int, ...] = (1, 2, 4, 8)
    # when no strategy fits within tp_options: also try TP across whole nodes (2, 4, ... x the chip's gpus_per_node,
    # up to the budget), as a model larger than one node's memory needs (the CLI's default; off once the user names
    # --tp-options)
    tp_across_nodes: bool = True
    # TP sizes of whole nodes tried in the DP-EP layout only (the wide-EP layout across nodes): what
    # enumerate_strategies adds, with tp_across_nodes, for a MoE model that fits within one node on an engine with
    # expert and attention-data parallelism (set by the planner, not a flag)
    wide_ep_tp: tuple[int, ...] = ()
    pp_options: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ()  # empty: the model's native format (its checkpoint's), else bf16
    # chunked-prefill token budgets (the engine's own default too) and sequence caps, each as the engine's own flag
    # reads it: with attention DP, vLLM's --max-num-batched-tokens / --max-num-seqs and TensorRT-LLM's max_num_tokens
    # / max_batch_size are each rank's, SGLang's --chunked-prefill-size / --max-running-requests the instance's
    # (specs/engine_caps.py caps_per_rank); the last cap is also the disaggregated decode instances'
    chunk_sizes: tuple[int, ...] = (512, 2048)
    batch_caps: tuple[int, ...] = (256,)
    # also try the engine's own default sequence cap on the chip (specs/engines.py default_seq_cap: vLLM 0.14's 1,024
    # per rank on a GPU of 70 GB or more, TensorRT-LLM's 2,048 per rank, SGLang's unset cap sized by its KV pool,
    # `bauto`), after batch_caps, so the decode instances run at it: `plan`'s default while --batch-caps is not
    # named; a sweep sets it as strategies.engine_default_cap
    engine_default_cap: bool = False
    disaggregated: bool = True
    ratios: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1))  # prefill:decode instances
    speculative: tuple[bool, ...] = (False,)
    spec_tokens: int = 3
    spec_acceptance: float = 0.7
    engine: str = "vllm"
    kv_link: str = "nvlink"
    memory_fraction: float | None = None  # None: the engine default (specs/engine_config.py EngineConfig)
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

    def check(self) -> None:
        """A one-line error naming the field (and the plan flag that sets it) where a value is one plan's flags
        refuse (apps/cli_common.py parse_ints: sizes are integers >= 1), rather than a strategy quietly built from it
        (a batch cap of 0 ran at max_num_seqs 1) or quietly dropped (a chunk size of -1). plan() calls it; not run at
        construction, where sweep's pydantic reading of a config would wrap the message (sweep_options.py refuses the
        same values with its strategies.* keys). Empty lists: chunk_sizes and ratios may be (the engine's default
        chunking alone, collocated strategies alone), batch_caps with engine_default_cap."""
        for name in ("tp_options", "pp_options", "chunk_sizes", "batch_caps", "wide_ep_tp"):
            values = getattr(self, name)
            empty_allowed = name in ("chunk_sizes", "wide_ep_tp") or (name == "batch_caps" and self.engine_default_cap)
            if (not isinstance(values, (tuple, list)) or not (values or empty_allowed)
                    or not all(is_integer(v) and v >= 1 for v in values)):
                raise PhasewiseError(f"{_label(name)} must list integers >= 1 (got {values!r})")
        if not isinstance(self.ratios, (tuple, list)) or not all(
                isinstance(pair, (tuple, list)) and len(pair) == 2 and all(is_integer(v) and v >= 1 for v in pair)
                for pair in self.ratios):
            raise PhasewiseError(f"{_label('ratios')} must list (prefill, decode) instance counts >= 1 "
                                 f"(got {self.ratios!r})")
        fraction = self.memory_fraction
        if fraction is not None and not (is_number(fraction) and 0 < fraction <= 1):
            raise PhasewiseError(f"{_label('memory_fraction')} must be in (0, 1] (got {fraction!r})")
        if self.routing_skew is not None and not (is_number(self.routing_skew) and math.isfinite(self.routing_skew)):
            raise PhasewiseError(f"{_label('routing_skew')} must be a finite number (got {self.routing_skew!r})")
        for name in ("host_kv_cache_bytes", "kv_store_bytes"):
            size = getattr(self, name)
            if not (is_number(size) and 0 <= size < math.inf):
                raise PhasewiseError(f"{_label(name)} must be a finite size >= 0 in bytes (got {size!r})")
        if not all(isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
                   and is_integer(pair[1]) and pair[1] >= 1 for pair in self.chip_gpus):
            raise PhasewiseError(f"{_label('chip_gpus')} must give each chip (name, GPUs) with GPUs an integer >= 1 "
                                 f"(got {self.chip_gpus!r})")


# the plan flags that set PlanOptions' fields, where the flag is not the field's name spelled as a flag
PLAN_FLAGS = {"ratios": None, "wide_ep_tp": None, "host_kv_cache_bytes": "--host-kv-cache-gb (GB)",
              "kv_store_bytes": "--kv-store-gb (GB)", "routers": "--router"}


def _label(name: str) -> str:
    """How PlanOptions.check names a field: PlanOptions.batch_caps (plan --batch-caps)."""
    flag = PLAN_FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"PlanOptions.{name}" + (f" (plan {flag})" if flag else "")


POLICIES = ("priority-pools", "attention-offload", "encoders")


class NoStrategyFits(PhasewiseError):
    """Nothing within the budget fits the model (a one-line error like any PhasewiseError)."""


ROUTERS = typing.get_args(Deployment.model_fields["router"].annotation)
MOE_LAYOUTS = ("tp", "ep", "dp-ep")


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
        the prefill:decode and LP:HP ratios kept, and a KV store across the cluster to its share); slice(units) is
        its whole deployment (tested)."""
        fields = dict(self.unit, instances=[dict(g, replicas=g.get("replicas", 1) * units)
                                            for g in self.unit["instances"]])
        if self.unit.get("kv_store_bytes"):  # --kv-store-gb is the whole cluster's: a slice holds its share
            fields["kv_store_bytes"] = self.unit["kv_store_bytes"] * units / self.units
        if self.unit.get("encoders"):  # disaggregated encoders: each unit's own
            fields["encoders"] = dict(self.unit["encoders"], replicas=self.unit["encoders"]["replicas"] * units)
        return fields


def deployment_fields(model: str, groups: list[dict], opts: PlanOptions, spec: dict | None,
                      host_tier: bool = True) -> dict[str, Any]:
    """The deployment of `groups`; --host-kv-cache-gb on the groups that admit prompts with prefix caching (their
    engine's default) and --kv-store-gb shared by them, unless `host_tier` is False (priority pools and attention
    offload keep no prefix cache)."""
    caching = [host_tier and g.get("role") != "decode"
               and caches_prefixes(model, g.get("engine", opts.engine), g["hardware"]) for g in groups]
    if opts.host_kv_cache_bytes:
        groups = [dict(g, host_kv_cache_bytes=opts.host_kv_cache_bytes) if caches else g
                  for g, caches in zip(groups, caching)]
    dep: dict[str, Any] = {"model": model, "instances": groups, "router": opts.routers[0]}
    if any(g.get("role") in ("prefill", "decode") or g.get("pool") for g in groups):  # KV moves between groups
        dep["kv_link"] = opts.kv_link
    if opts.kv_store_bytes and any(caching):
        dep["kv_store_bytes"] = opts.kv_store_bytes
    if spec:
        dep["speculative"] = spec
    return dep


def caches_prefixes(model: str, engine: str, hardware: str) -> bool:
    """Whether `engine` caches prompt prefixes by default for `model` and keeps a host-memory tier (the plan's
    --host-kv-cache-gb goes where both hold)."""
    return not host_tier_refusal(model, engine, hardware)


# how a command names a strategy option, given its field and, where the refusal is about one value, that value as a
# sweep's YAML writes it: plan its flag (plan_flag), sweep its `strategies.` key (sweep_key)
OptionName = Callable[..., str]

# options that shape disaggregated strategies only: (field, the value that does, as YAML writes it, or None: any
# chip listed; kv_link: given at all, and it shapes priority pools' too)
_DISAGG_ONLY = (("prefill_hardware", None), ("decode_hardware", None), ("policies", "attention-offload"),
                ("kv_link", None))


def check_options(models: Sequence[str], chips: Sequence[str], opts: PlanOptions, given: Collection[str],
                  name: OptionName) -> None:
    """A one-line error where a strategy option cannot apply to the plan (or to any cell of the sweep) of `models`
    on `chips` (prefill and decode chips too) with opts.engine (one or several, comma-separated): what plan and sweep
    would otherwise take and ignore. `given` holds the fields the user set (a default is not a choice), `name` names
    an option (plan: its flag; sweep: its `strategies.` key)."""
    if not opts.disaggregated:
        for option, value in _DISAGG_ONLY:
            if option == "kv_link":  # given at all, unless priority pools move their KV over it
                used = option in given and "priority-pools" not in opts.policies
            else:
                used = value in getattr(opts, option) if value else bool(getattr(opts, option))
            if used:
                raise PhasewiseError(f"{name(option, value)} shapes disaggregated strategies, which "
                                     f"{name('disaggregated', 'false')} leaves out")
    if True not in opts.speculative:
        for option in ("spec_tokens", "spec_acceptance"):
            if option in given:
                raise PhasewiseError(f"{name(option)} needs {name('speculative', '[false, true]')} (the strategies "
                                     "try speculative decoding only with it)")
    else:
        check_speculative(models, opts, name)
    if "moe_layouts" in given:
        dense = [model for model in models if not load_model(model).num_experts]
        if len(dense) == len(models):
            raise PhasewiseError(f"{name('moe_layouts')} applies to mixture-of-experts models; "
                                 f"{' and '.join(dense)} {'is' if len(dense) == 1 else 'are'} dense")
    for option in ("host_kv_cache_bytes", "kv_store_bytes"):
        if getattr(opts, option):
            why = _no_host_tier(models, chips, name_list(name("engine"), opts.engine))
            if why:
                raise PhasewiseError(f"{name(option)} holds prefix blocks evicted from the GPU: it needs prefix "
                                     f"caching and a host-memory KV tier, which no strategy here keeps ({why})")


def check_speculative(models: Sequence[str], opts: PlanOptions, name: OptionName) -> None:
    """The speculative options of a plan or sweep that tries speculative decoding: the draft tokens and acceptance
    within SpecDecode's ranges (sim/deployment_blocks.py), each named as the command names it (plan: --spec-tokens,
    sweep: strategies.spec_tokens), and an MTP draft on at least one model (the strategies draft with the model's
    own MTP layers: a model without them is tried without speculative decoding, strategy_enumeration.py)."""
    from phasewise.sim.deployment import SpecDecode, mtp_draft_refusal

    limits = SpecDecode.model_fields["draft_tokens"].metadata
    low = next(m.ge for m in limits if getattr(m, "ge", None) is not None)
    high = next(m.le for m in limits if getattr(m, "le", None) is not None)
    tokens = opts.spec_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not low <= tokens <= high:
        raise PhasewiseError(f"{name('spec_tokens')} must be an integer from {low} to {high} draft tokens per step "
                             f"(got {tokens!r})")
    acceptance = opts.spec_acceptance
    if isinstance(acceptance, bool) or not isinstance(acceptance, (int, float)) or not 0 <= acceptance < 1:
        raise PhasewiseError(f"{name('spec_acceptance')} must be a probability at least 0 and below 1 (got "
                             f"{acceptance!r}: at 1 every draft would be accepted and a step would never end)")
    refusals = [(index, model, mtp_draft_refusal(model)) for index, model in enumerate(models)]
    refused = [(index, model, why) for index, model, why in refusals if why]
    if refused and len(refused) == len(models):
        index, model, why = refused[0]
        where = f" (models.{index}; no model listed has MTP layers)" if len(models) > 1 else ""
        raise PhasewiseError(f"{name('speculative', '[false, true]')} plans MTP speculative decoding, which {why}"
                             f"{where}: drop it (to weigh a draft model, simulate it: simulate --spec-tokens N "
                             "--spec-draft MODEL)")


def _no_host_tier(models: Sequence[str], chips: Sequence[str], engines: Sequence[str]) -> str:
    """Why no instance of any model x chip x engine keeps prefix blocks in host memory, "" where one does (a pair
    the engine cannot run, the plan's own error or pruned line later, is left out)."""
    reasons = []
    for model, chip, engine in ((m, c, e) for m in models for c in chips for e in engines):
        try:
            reasons.append(host_tier_refusal(model, engine, chip))
        except PhasewiseError:  # an engine the chip lacks
            continue
        if not reasons[-1]:
            return ""
    return "; ".join(dict.fromkeys(reasons))


def host_tier_refusal(model: str, engine: str, hardware: str) -> str:
    """Why `engine` keeps no host-memory tier of prompt prefixes for `model` on `hardware` ("" where it does: it
    caches prefixes by default and has such a tier; the plan's --host-kv-cache-gb and --kv-store-gb go there).
    Cached per process, keyed on the stamps of the files named too (an edited model or chip file read afresh)."""
    return _host_tier_refusal(model, engine, hardware, spec_file_stamps(model, engine, hardware))


@lru_cache(maxsize=256)
def _host_tier_refusal(model: str, engine: str, hardware: str, stamps: tuple) -> str:
    spec = load_model(model)
    config = resolve_engine(engine, load_hardware(hardware), model_type=spec.model_type)
    if spec.window_all_layers:
        return f"prefix caching of {model} (sliding-window attention on every layer) is not modelled"
    if not prefix_caching_default(config, spec):
        return f"prefix caching is off on {config.label} by default for {model}"
    if config.host_kv_load is None:
        return f"{config.label} keeps no host-memory KV tier ({HOST_TIER_RELEASES})"
    return ""
