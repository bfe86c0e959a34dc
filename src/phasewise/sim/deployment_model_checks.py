"""A deployment's checks against the models it serves (a base of sim/deployment.py's Deployment, whose fields it
reads): a draft `mtp` on a checkpoint without MTP layers, each group's MoE layout and block-scaled split the engine
refuses, and the prefill / decode TP pairs the engines' P/D connector refuses for the model's KV heads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import model_validator

from phasewise.errors import PhasewiseError
from phasewise.sim.instance_group import InstanceGroup
from phasewise.specs.engine_refusals import block_shape_refusal, disagg_tp_refusal, layout_refusal
from phasewise.specs.hf_config import MTP_FIELDS

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment


class DeploymentModelChecks:
    __slots__ = ()

    @model_validator(mode="after")
    def _mtp_draft(self) -> Deployment:
        if self.speculative is None or self.speculative.draft != "mtp":
            return self
        for model in dict.fromkeys(g.model or self.model for g in self.instances):
            refusal = mtp_draft_refusal(model)
            if refusal:
                raise ValueError(f"speculative draft 'mtp' (--spec-draft's default) {refusal}: give a draft model of "
                                 "its family (--spec-draft MODEL, `draft:` in a deployment file), or leave speculative "
                                 "decoding off")
        return self

    @model_validator(mode="after")
    def _layouts(self) -> Deployment:
        """Each group's MoE layout (ep, moe_tp, attention_dp, moe_imbalance), one line naming the flags that set it
        in its role (perf/parallel.py role_flags: a decode group's --decode-ep, --decode-tp): an engine without
        expert or attention-data parallelism (engine_presets.yaml moe_parallelism), a dense model, sizes that do
        not divide (perf/parallel.py parallel_layout); and every group's split of a block-scaled checkpoint the
        engine refuses at load (specs/engine_refusals.py block_shape_refusal: FP8 slices of partial 128-wide
        blocks), with or without those fields. Before the checks that divide by them (_disagg_tp)."""
        from phasewise.perf.parallel import parallel_layout, role_flags
        from phasewise.specs import load_model

        for index, g in enumerate(self.instances):
            moe_fields = not (g.ep is None and g.moe_tp is None and g.attention_dp is None and g.moe_imbalance is None)
            flags = role_flags(g.role)
            refusal = layout_refusal(g.engine, g.tp, g.ep, g.moe_tp, g.attention_dp, flags, g.knobs) \
                if moe_fields else None
            if refusal:
                raise ValueError(f"instances[{index}] ({g.role}): {refusal}")
            try:
                model = load_model(g.model or self.model)
            except PhasewiseError:  # its own one-line error comes when the deployment is simulated
                continue
            try:
                split = parallel_layout(model, g.tp, g.ep, g.moe_tp, g.attention_dp, g.moe_imbalance, flags=flags)
            except PhasewiseError as exc:
                raise ValueError(f"instances[{index}] ({g.role}): {exc}") from None
            try:
                refusal = block_shape_refusal(g.engine, model, g.precision or model.default_precision, g.tp,
                                              split.moe_tp, split.attention_dp, flags)
            except PhasewiseError:  # an engine file that does not read: its own one-line error comes later
                continue
            if refusal:
                raise ValueError(f"instances[{index}] ({g.role}): {refusal}")
        return self

    @model_validator(mode="after")
    def _disagg_tp(self) -> Deployment:
        """The prefill / decode TP pairs the decode groups' engines' P/D connector refuses (specs/engine_refusals.py
        disagg_tp_refusal: vLLM's NixlConnector), one line; the router may send any prefill's KV to any decode."""
        def attention_tp(g: InstanceGroup) -> int:  # the engine's tensor-parallel size (each attention-DP rank's)
            return g.tp // (g.attention_dp or 1)

        for d in (g for g in self.instances if g.role == "decode"):
            for p in (g for g in self.instances if g.role == "prefill" and attention_tp(g) != attention_tp(d)):
                refusal = disagg_tp_refusal(d.engine, attention_tp(p), attention_tp(d),
                                            _kv_heads(d.model or self.model))
                if refusal:
                    raise ValueError(f"a prefill group of tp={p.tp} beside a decode group of tp={d.tp}: {refusal}")
        return self


def _kv_heads(model: str) -> int | None:
    """The model's KV heads (config.json num_key_value_heads), or None where it does not load (its own one-line error
    comes when the deployment is simulated)."""
    from phasewise.specs import load_model

    try:
        return load_model(model).num_kv_heads
    except PhasewiseError:
        return None


def mtp_modules(model: str) -> int | None:
    """The multi-token-prediction modules `model`'s checkpoint carries (ModelSpec.mtp_layers, which the config
    parser reads from each family's own field: specs/hf_config.py MTP_FIELDS); None where the model does not load."""
    from phasewise.specs import load_model

    try:
        return load_model(model).mtp_layers
    except PhasewiseError:
        return None


def mtp_draft_refusal(model: str) -> str | None:
    """Why draft `mtp` cannot run on `model` (a clause: '... drafts with ...'), or None: an MTP draft is the model's
    own multi-token-prediction modules, loaded from the target's checkpoint (SGLang 0.5.5-era srt/server_args.py
    _handle_speculative_decoding: NEXTN runs as EAGLE with the target as its draft path only for DeepseekV3/V32,
    Glm4Moe and BailingMoe(V2), any other model needs --speculative-draft-model-path); a checkpoint without them has
    nothing to draft with."""
    modules = mtp_modules(model)
    if modules is None or modules > 0:
        return None
    return (f"drafts with the model's own multi-token-prediction layers, and {model} has none (its config.json "
            f"counts none in {' / '.join(MTP_FIELDS)})")
