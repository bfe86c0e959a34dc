"""A sweep's config file (`phasewise sweep config.yaml`): its schema (the grid's models, hardware and workloads, the
SLO, the strategy options, the fidelity) and its reading (load_sweep)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError

from phasewise.errors import pydantic_message
from phasewise.specs.catalog import read_user_file
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans
from phasewise.workload.generators import LengthKind


class SweepWorkload(NumbersNotBooleans):
    """One workload of the grid: a trace (bundled or a file) or lengths (isl/osl); neither: the bundled Azure
    conversation excerpt's lengths, as plan without --workload."""
    model_config = ConfigDict(extra="forbid")
    name: str
    trace: str | None = None
    arrivals: Literal["poisson", "trace"] = "poisson"
    isl: float | None = Field(default=None, gt=0)
    osl: float | None = Field(default=None, gt=0)
    isl_dist: LengthKind = "fixed"
    osl_dist: LengthKind = "fixed"
    isl_spread: float = Field(default=0.0, ge=0)
    osl_spread: float = Field(default=0.0, ge=0)
    # images each request carries, as simulate's and plan's --images-per-request / --image-size / --image-share
    images_per_request: int | None = None
    image_size: str | None = None
    image_share: float | None = None
    image_tokens_included: bool = False  # the lengths count the images' tokens (--image-tokens-included)


class SweepSlo(NumbersNotBooleans):
    """TTFT, TPOT (each request's mean gap) and every-gap TBT limits, as plan's --slo-ttft-ms / --slo-tpot-ms /
    --slo-tbt-ms."""
    model_config = ConfigDict(extra="forbid")
    ttft_ms: float = Field(default=float("inf"), gt=0)
    tpot_ms: float = Field(default=float("inf"), gt=0)
    tbt_ms: float = Field(default=float("inf"), gt=0)


class SweepConfig(NumbersNotBooleans):
    model_config = ConfigDict(extra="forbid")
    models: list[str] = Field(min_length=1)
    hardware: list[str] = Field(min_length=1)
    gpus: int = Field(default=8, ge=1)
    workloads: list[SweepWorkload] = Field(min_length=1)
    slo: SweepSlo = SweepSlo()
    attainment: float = Field(default=0.9, gt=0, le=1)
    strategies: dict[str, Any] = Field(default_factory=dict)
    # screen / refine: the search's rate on one unit, unverified (search_* columns); verified: plan's figures
    fidelity: Literal["screen", "refine", "verified"] = "screen"
    seed: int = Field(default=0, ge=0)
    _source: str = PrivateAttr(default="sweep config")  # how errors name it: its file, once load_sweep read it


def load_sweep(path: str) -> SweepConfig:
    data = read_user_file(path, "sweep config")
    try:
        cfg = SweepConfig(**data)
    except ValidationError as exc:
        raise pydantic_message(f"sweep config '{path}'", exc) from None
    cfg._source = f"sweep config '{path}'"
    return cfg
