"""How one pipeline stage's GPUs split a layer: attention tensor- or data-parallel, MoE experts
tensor- or expert-parallel, as the engines name it.

    tp            the stage's GPUs (vLLM --tensor-parallel-size, SGLang --tp, TensorRT-LLM tp_size)
    attention_dp  attention data-parallel ranks (SGLang --enable-dp-attention --dp N, TensorRT-LLM
                  enable_attention_dp, vLLM --data-parallel-size with expert parallelism): each rank runs
                  attention, with its own whole sequences and their KV cache, over tp / attention_dp GPUs;
                  an iteration lasts as long as its busiest rank (busiest_rank_share)
    ep            MoE expert-parallel size (SGLang --ep, TensorRT-LLM moe_expert_parallel_size, vLLM
                  --enable-expert-parallel): each GPU holds num_experts / ep experts
    moe_tp        MoE tensor-parallel size (TensorRT-LLM moe_tensor_parallel_size): each expert split over
                  moe_tp GPUs; ep x moe_tp = tp

With attention_dp > 1 and ep > 1 (SGLang's and TensorRT-LLM's wide-EP DeepSeek layout) tokens reach their
experts by an all-to-all dispatch and come back by an all-to-all combine; with attention_dp = 1 every GPU
already holds every token and the MoE output is summed by the all-reduce that tensor parallelism runs anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.expert_load import busiest_rank_ratio, max_rank_ratio
from phasewise.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class ParallelLayout:
    tp: int = 1
    attention_dp: int = 1
    ep: int = 1
    moe_imbalance: float | None = None  # most-loaded GPU's expert rows over the mean; None: as derived below
    popularity_ratio: float = 1.0  # the busiest EP rank's expected share of the routing over the mean (expert_load.py)
    max_ratio: float | None = None  # the most any EP rank can carry over the mean, min(ep, E / k); None: ep

    @property
    def attention_tp(self) -> int:
        return self.tp // self.attention_dp

    @property
    def moe_tp(self) -> int:
        return self.tp // self.ep

    @property
    def dispatches(self) -> bool:
        """Whether MoE layers move tokens to their experts by all-to-all (attention DP beside EP)."""
        return self.attention_dp > 1 and self.ep > 1

    def busiest_rank_share(self, seqs: float) -> float:
        """busiest_rank_share(seqs, attention_dp)."""
        return busiest_rank_share(seqs, self.attention_dp)

    def imbalance(self, assignments: float) -> float:
        """Expert rows on the most-loaded GPU over the mean for `assignments` token-expert pairs spread over
        `ep` GPUs: the given `moe_imbalance`, else the busiest rank's expected popularity r (the model's
        measured routing skew, expert_load.py; 1 when none is known) with the balls-into-bins sampling noise
        on its r x assignments / ep expected rows: r (1 + sqrt(2 ep ln(ep) / (r x assignments))) (Raab and
        Steger 1998, heavily loaded case; with r = 1, uniform routing's noise alone), at most min(ep, E / k) (its
        experts take every one of a token's rows they can: the bound holds where the heavily-loaded formula does
        not, a few rows over two GPUs)."""
        if self.ep == 1:
            return 1.0
        if self.moe_imbalance is not None:
            return self.moe_imbalance
        r = self.popularity_ratio
        most = self.ep if self.max_ratio is None else self.max_ratio
        return min(most, r * (1.0 + math.sqrt(2.0 * self.ep * math.log(self.ep) / max(r * assignments, 1.0))))


def busiest_rank_share(seqs: float, ranks: int) -> float:
    """The share of `seqs` like sequences that the busiest of `ranks` attention data-parallel ranks runs: a
    sequence lives on one rank (its KV cache is there), so the ranks hold whole sequences, ceil(seqs / ranks) on
    the busiest; every rank waits for it at the next MoE layer. 1 with one rank or no sequences."""
    if ranks == 1 or seqs <= 0:
        return 1.0
    return math.ceil(seqs / ranks) / seqs


# The flags that set a layout's sizes (simulate, estimate): an instance group in a role has its own (a disaggregated
# deployment's prefill and decode instances take --prefill-tp / --prefill-ep / ..., falling back to --tp / --ep)
LAYOUT_FLAGS = {"tp": "--tp", "ep": "--ep", "moe_tp": "--moe-tp", "attention_dp": "--attention-dp"}


def role_flags(role: str) -> dict[str, str]:
    """The flags that set the layout of an instance group in `role` (collocated: LAYOUT_FLAGS; prefill, decode:
    --{role}-tp, --{role}-ep, --{role}-attention-dp, the experts' --moe-tp being one for both)."""
    if role not in ("prefill", "decode"):
        return dict(LAYOUT_FLAGS)
    return {**LAYOUT_FLAGS, **{k: f"--{role}-{v.removeprefix('--')}" for k, v in LAYOUT_FLAGS.items() if k != "moe_tp"}}


def parallel_layout(model: ModelSpec, tp: int, ep: int | None = None, moe_tp: int | None = None,
                    attention_dp: int | None = None, moe_imbalance: float | None = None,
                    flags: dict[str, str] | None = None) -> ParallelLayout:
    """A validated layout; each error names the flag and what it may be (`flags`: the flags that set tp, ep,
    moe_tp and attention_dp, role_flags; LAYOUT_FLAGS by default). Expert and attention-data parallelism apply to
    mixture-of-experts models: on a dense one --ep above 1, any --moe-tp and --attention-dp above 1 are refused."""
    f = {**LAYOUT_FLAGS, **(flags or {})}
    for key, value in (("tp", tp), ("ep", ep), ("moe_tp", moe_tp), ("attention_dp", attention_dp)):
        if value is not None and value < 1:  # as given: 0 is not "unset", and a derived size never names the flag
            raise PhasewiseError(f"{f[key]} must be >= 1 (got {value})")
    if not model.num_experts:  # what only a MoE model has: refused, not silently run as something else
        given = [(f[k], v) for k, v in (("ep", ep), ("moe_tp", moe_tp), ("attention_dp", attention_dp))
                 if v is not None and (k == "moe_tp" or v > 1)]
        if given:
            flag, value = given[0]
            why = ("; independent copies of a dense model are --replicas" if flag == f["attention_dp"]
                   else "")
            raise PhasewiseError(f"{flag} {value}: {f['ep']}, {f['moe_tp']} and {f['attention_dp']} apply to "
                                 f"mixture-of-experts models; {model.name} is dense{why}")
    attention_dp = attention_dp or 1
    for key, value in (("ep", ep), ("moe_tp", moe_tp)):  # the one given alone sets the other: tp / it
        other = moe_tp if key == "ep" else ep
        if value is not None and value >= 1 and other is None and tp % value:
            allowed = [d for d in _divisors(tp)
                       if key == "moe_tp" or not model.num_experts or model.num_experts % d == 0]
            raise PhasewiseError(f"{f[key]} {value} must divide {f['tp']} {tp} (ep x moe-tp = tp, the stage's GPUs; "
                                 f"allowed: {', '.join(map(str, allowed))})")
    if ep is None:
        ep = tp // moe_tp if moe_tp else 1
    moe_tp = moe_tp or tp // max(ep, 1)
    for key, value in (("ep", ep), ("moe_tp", moe_tp), ("attention_dp", attention_dp)):
        if value < 1:
            raise PhasewiseError(f"{f[key]} must be >= 1 (got {value})")
    if tp % attention_dp:
        raise PhasewiseError(f"{f['attention_dp']} {attention_dp} must divide {f['tp']} {tp} (attention runs over "
                             f"tp / attention_dp GPUs per rank; allowed: {', '.join(map(str, _divisors(tp)))})")
    if ep > 1 or moe_tp != tp:
        if ep * moe_tp != tp:
            raise PhasewiseError(f"{f['ep']} {ep} x {f['moe_tp']} {moe_tp} must equal {f['tp']} {tp} (the stage's "
                                 "GPUs)")
        if model.num_experts % ep:
            raise PhasewiseError(f"{f['ep']} {ep} does not divide the {model.num_experts} experts of {model.name} "
                                 f"(allowed: {', '.join(str(d) for d in _divisors(model.num_experts) if tp % d == 0)})")
    if moe_imbalance is not None and ep == 1:  # one GPU holds every expert's rows: there is nothing to balance
        raise PhasewiseError(f"--moe-imbalance applies to expert parallelism: give {f['ep']} > 1 (a mixture-of-experts "
                             f"model; {model.name} runs with ep 1 here)")
    top_k = model.experts_per_token or 1
    most = max_rank_ratio(model.num_experts, top_k, ep) if model.num_experts else float(ep)
    if moe_imbalance is not None and not 1 <= moe_imbalance <= most:
        raise PhasewiseError(f"--moe-imbalance is the most-loaded GPU's expert rows over the mean: from 1 to "
                             f"{most:g}, min({f['ep']} {ep}, {model.num_experts} experts / top-{top_k}) (its experts "
                             f"take every row of a token they can) (got {moe_imbalance})")
    skew = model.expert_top20_share
    ratio = busiest_rank_ratio(model.num_experts, ep, skew, top_k) if skew and ep > 1 else 1.0
    return ParallelLayout(tp=tp, attention_dp=attention_dp, ep=ep, moe_imbalance=moe_imbalance,
                          popularity_ratio=ratio, max_ratio=most)


def _divisors(n: int) -> list[int]:
    """n's divisors in order, in sqrt(n) steps (a --tp of 10^11 hung listing them one by one)."""
    if n < 1:  # a --tp not yet checked: none
        return []
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def _tp_refusal(model: ModelSpec, tp: int) -> tuple[str, str] | None:
    """Why `tp` GPUs cannot split the model's attention, as (what check_parallelism says after "--tp N ", a note
    before the allowed values), None where they can: the heads (num_heads % tp), the KV heads of each kind (divided,
    or replicated: tp a multiple of them), the linear-attention heads (vLLM layers/mamba/mamba_mixer2.py
    MambaMixer2 asserts num_heads % tp == 0 and n_groups % tp == 0 or n_groups == 1, a single group replicated:
    linear_replicated_width; gated DeltaNet's and the others' key and value heads both split), DeepSeek-V4's grouped
    output projection (o_groups)."""
    if model.num_heads % tp:
        return f"does not divide num_attention_heads={model.num_heads}", ""
    for kv_heads, which in ((model.num_kv_heads, "num_key_value_heads"),
                            (model.window_layer_kv_heads, "the windowed layers' KV heads")):
        if kv_heads % tp and tp % kv_heads:
            return f"neither divides nor is a multiple of {which}={kv_heads}", ""
    if model.linear_attention_layers and ((model.linear_key_heads % tp and not model.linear_replicated_width(tp))
                                          or model.linear_value_heads % tp):
        key, value = model.linear_head_fields
        named = [f"{value}={model.linear_value_heads}"]
        if key and key != value:
            named.insert(0, f"{key}={model.linear_key_heads}")
        split = (": Mamba-2 splits its heads, and its groups unless there is one" if model.linear_recurrence == "mamba2"
                 else "")
        return "does not divide the linear-attention heads", f"{', '.join(named)}{split}; "
    if model.compressed is not None and model.compressed.o_groups % tp:
        return f"does not divide o_groups={model.compressed.o_groups}", ("its grouped output projection is split by "
                                                                         "group; ")
    return None


def check_parallelism(model: ModelSpec, tp: int, pp: int) -> None:
    """Whether `tp` GPUs can split the model's attention (_tp_refusal) and `pp` stages its layers (_check_stages);
    else a one-line error naming the flag and the values every constraint allows."""
    if tp < 1 or pp < 1:
        raise PhasewiseError(f"--tp and --pp must be >= 1 (got tp={tp}, pp={pp})")
    refusal = _tp_refusal(model, tp)
    if refusal:
        what, note = refusal
        allowed = [d for d in _divisors(model.num_heads) if _tp_refusal(model, d) is None]
        raise PhasewiseError(f"--tp {tp} {what} of {model.name} ({note}allowed: {', '.join(map(str, allowed))})")
    _check_stages(model, pp)


def check_layout_parallelism(model: ModelSpec, tp: int, pp: int, attention_dp: int = 1) -> None:
    """check_parallelism on the GPUs each attention rank splits the heads over, tp / attention_dp: with attention
    data-parallel a rank runs its own sequences' attention over its share of the stage's GPUs (vLLM --data-parallel-size
    N beside --tensor-parallel-size tp / N; SGLang's --enable-dp-attention, attention TP tp / dp), so Llama-4
    Maverick's 40 heads run TP16 DP16EP16 (attention TP 1) where plain TP16 cannot split them. A one-line error
    naming both flags where a rank's share cannot."""
    if attention_dp <= 1:
        check_parallelism(model, tp, pp)
        return
    try:
        check_parallelism(model, tp // attention_dp, pp)
    except PhasewiseError as exc:
        raise PhasewiseError(f"--tp {tp} / --attention-dp {attention_dp}: each attention rank's {exc}") from None


def _check_stages(model: ModelSpec, pp: int) -> None:
    """Whether `pp` pipeline stages can split the model's decoder layers (ModelSpec.decoder_layers, which engines
    split: vLLM's get_pp_indices over num_hidden_layers), each costed (ModelSpec.stage_layers) with a layer at least
    and a softmax-attention one."""
    layers = model.decoder_layers
    if pp > layers:
        raise PhasewiseError(f"--pp {pp} exceeds the {layers} layers of {model.name}")
    costed = "" if layers == model.num_layers else f"; its {layers} layers costed as {model.num_layers}"
    if model.linear_attention_layers and pp > 1:
        # a stage is costed as the stack's share of each kind (ModelSpec.stage_layers): it must keep a softmax layer
        def softmax_layers(stages: int) -> int:
            layers, linear = model.stage_layers(stages)
            return layers - linear

        if softmax_layers(pp) < 1:
            most = max(d for d in range(1, pp) if softmax_layers(d) >= 1)
            stage = f"{model.stage_layers(pp)[0]} {'costed ' if costed else ''}layers"
            raise PhasewiseError(
                f"--pp {pp}: a stage of {stage} keeps no softmax-attention layer at "
                f"{model.name}'s share ({model.linear_attention_layers} of {model.num_layers} layers linear{costed}), "
                f"and stages are costed at the stack's shares; use --pp {most} or less")
    if pp > model.num_layers:  # Nemotron-H's blocks, each MLP block paired with a mixer: a costed layer a stage
        raise PhasewiseError(f"--pp {pp}: {model.name}'s {layers} layers are costed as {model.num_layers} (each MLP "
                             f"block paired with a mixer block), a stage holding one at least; use --pp "
                             f"{model.num_layers} or less")
    if model.kv_shared_layers and pp > 1:
        raise PhasewiseError(f"--pp {pp}: pipeline parallelism of a model whose layers reuse earlier layers' KV "
                             f"({model.name}) is not modelled yet; use --pp 1")
