"""Requests beyond the model's context: their share of a workload (refused on arrival, as an engine refuses them),
and the one-line errors where none could run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.workload import DEFAULT_ISL, DEFAULT_OSL

if TYPE_CHECKING:
    from phasewise.plan.goodput import WorkloadSpec


def refuse_when_none_fits(spec: WorkloadSpec, context_tokens: int, model: str = "the model's") -> float:
    """The workload's share of requests past the model's context (beyond_context_share); where that is all of
    them, a one-line error, as simulate's: nothing can run."""
    beyond = beyond_context_share(spec, context_tokens)
    if beyond == 1.0:
        raise PhasewiseError(f"nothing can run: all {len(spec.prompts):,} of the workload's requests have prompt + "
                             f"output tokens beyond {model} {context_tokens:,}-token context (max_position_embeddings)")
    return beyond


def beyond_context_share(spec: WorkloadSpec, context_tokens: int) -> float:
    """The share of the workload's requests whose prompt + output pass the model's context (0: unknown): the engine
    refuses them, so they count against the attainment, and an attainment above the share that fits is out of
    reach."""
    if not context_tokens:
        return 0.0
    return float(np.mean(np.asarray(spec.prompts) + np.asarray(spec.outputs) > context_tokens))


def lengths_within_context(isl: float | None, osl: float | None, context_tokens: int, label: str = "--isl + --osl",
                           model: str = "the model's") -> None:
    """A one-line error where the given mean lengths (the defaults for the one not given) pass the model's context
    (`context_tokens`, 0: unknown): no such request runs."""
    if context_tokens and (isl is not None or osl is not None):
        total = (isl if isl is not None else DEFAULT_ISL) + (osl if osl is not None else DEFAULT_OSL)
        if total > context_tokens:
            raise PhasewiseError(f"{label} = {total:g} tokens exceed {model} {context_tokens:,}-token context")
