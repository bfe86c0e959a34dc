"""Where a stage's GPUs hold the vocabulary: the input embedding's table and the output head's, by engine under
attention data parallelism (vocab_split), the one rule perf/memory.py's weights, perf/collectives.py's embedding
all-reduce and LM-head exchange and perf/cost.py's LM-head row read."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from phasewise.specs.catalog import packaged
from phasewise.specs.engine_profile import EngineProfile, load_engine
from phasewise.specs.model import ModelSpec


@dataclass(slots=True, frozen=True)
class VocabSplit:
    """How a stage's GPUs hold the vocabulary (vocab_split): the GPUs the input embedding's table and the output
    head's are split over, and whether the head runs on every attention rank's logit tokens gathered."""

    embedding_gpus: int
    lm_head_gpus: int
    gathers_logit_tokens: bool


def vocab_split(model: ModelSpec, tp: int, attention_dp: int, engine: EngineProfile | None) -> VocabSplit:
    """The one rule of where the embedding and the LM head live (weight_bytes_per_gpu's bytes, the cost model's
    embedding all-reduce and LM head row). Without attention DP both are split over the `tp` GPUs. With it, over each
    attention rank's tp / attention_dp GPUs, unless `engine` (its profile; None: that default) holds the head over
    all `tp` GPUs (lm_head_split tp: SGLang, which then gathers every rank's logit tokens before it) or the embedding
    whole on every GPU (embedding_split replicated: SGLang); a tied head is the embedding's table, split as it is."""
    attention_tp = tp // attention_dp
    if attention_dp == 1 or engine is None:
        return VocabSplit(attention_tp, attention_tp, False)
    embedding = 1 if engine.embedding_split == "replicated" else attention_tp
    gathers = engine.lm_head_split == "tp"
    head = embedding if model.tie_embeddings else (tp if gathers else attention_tp)
    return VocabSplit(embedding, head, gathers)


@functools.lru_cache(maxsize=64)
def _catalog_profile(name: str) -> EngineProfile | None:
    """The profile engines.yaml holds under `name`; None for another name (a user's engine file's)."""
    return load_engine(name) if name.lower() in packaged("engines.yaml")["engines"] else None


def profile_of(engine: str | EngineProfile | None) -> EngineProfile | None:
    """The profile an `engine` argument of this module names: itself, or a catalog profile by its name (a name
    engines.yaml does not hold, as a user's engine file's: None, the defaults; pass the profile itself for those)."""
    return _catalog_profile(engine) if isinstance(engine, str) else engine
