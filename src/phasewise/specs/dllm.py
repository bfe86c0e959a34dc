"""How a diffusion LM (LLaDA-style) decodes one request, as data: the canvas, its blocks, the cache mode, how many
tokens a forward decides, and ODB-dLLM's two boundaries (adaptive length prediction, jump-share speculation).

A request's canvas is its prompt plus `gen_length` masked positions, decoded block by block (`block_length`);
every forward is bidirectional. What each forward covers follows the released code (NVlabs/Fast-dLLM
llada/generate.py, PKU-SEC-Lab/ODB-dLLM llada_instruct/generate_alp_jump_share.py):

  cache none    every forward runs prompt + canvas (LLaDA's `generate`)
  cache prefix  a full forward at each block start (the refresh), then block + suffix over the cached prefix
  cache dual    a full forward at each block start (the refresh: Fast-dLLM's "prefill"), then the block alone over
                the cache of everything else (the memory-bound block "decode")

Tokens decided per forward: a fixed schedule without a threshold (`steps` spread evenly over the blocks, as
`get_num_transfer_tokens`), else every masked token whose confidence passes `threshold`, at least one (the top
one is always kept): an input distribution, 1 + Poisson(tokens_per_step - 1) answer tokens per forward, or the
categorical `tokens_per_step_probs` (P(1, 2, ..., k) tokens, e.g. a measured histogram) when given.

Modes are the settings ladder of ODB-dLLM's eval script (llada_instruct/eval_llada_instruct.sh):
  baseline   LLaDA: no cache, steps = gen_length (one token a step)
  fast-dllm  dual cache + threshold 0.9 (parallel decoding); all gen_length / block_length blocks
  alp        + adaptive length prediction: at a refresh the end marker turns confident, the canvas is cut to the
             answer's end rounded up to a block, and decoding stops after the block that holds it
  odb        + jump-share: a block step forwards the block and `copies - 1` speculative copies (4 x 32 = 128
             tokens, block-diagonal attention: the candidates none, top-1, top-2, both) and accepts 0-2 extra
             tokens; once few masks are left in the block (late_phase) it forwards 2 x copies candidates (none, 1,
             2, 12, 3, 123, 4, 1234) over the block's masked positions only, block + 7 x masks wide, and accepts
             0-4 (`jump_probs`: P(0, 1, ... extra tokens accepted), past a phase's most: its most)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phasewise.errors import PhasewiseError

MODES = ("baseline", "fast-dllm", "alp", "odb")
CACHE_MODES = ("none", "prefix", "dual")

# ODB-dLLM llada_instruct/eval_llada_instruct.sh (every configuration): gen_length=1024, steps=1024, block_length=32
GEN_LENGTH = 1024
BLOCK_LENGTH = 32
# same script: Fast-dLLM / ODB configurations add use_cache=True, dual_cache=True, threshold=0.9
THRESHOLD = 0.9
# Tokens decided per forward (TPF) of Fast-dLLM on LLaDA-8B-Instruct, GSM8K-CoT, threshold 0.9, dual cache,
# block 32: 2.77 (d3LLM, arXiv 2601.07568, its AUP benchmark data; eval command in hao-ai-lab/d3LLM's scripts).
TOKENS_PER_STEP = 2.77
# generate_alp_jump_share.py: the block plus 3 copies (top-1 filled, top-2 filled, both) = 4 x block_length
JUMP_COPIES = 4
# P(0, 1, 2 speculative tokens accepted) in a jump-share step. Assumed: uniform over the three outcomes the
# first phase of jump-share can have (none, one of the top-2, both), because the paper's acceptance
# statistics are not accessible (PAPERS.md section 1 lists none); an input to vary, not a measured figure.
JUMP_PROBS = (1 / 3, 1 / 3, 1 / 3)
# generate_alp_jump_share.py's switch to 8 candidates: after a step that accepted e extra tokens (choice 0, 1|2,
# 3: seven_threshold 86, 89, 92), when 32 + 3 x the masks the step before left <= that threshold, i.e. when
# those masks <= LATE_PHASE_MASKS + e; then to the block's end
LATE_PHASE_MASKS = 18


@dataclass(frozen=True, slots=True)
class DllmDecoding:
    """One decoding configuration. Build it with `decoding(mode, ...)`: a mode's defaults, then overrides."""

    mode: str = "odb"
    gen_length: int = GEN_LENGTH
    block_length: int = BLOCK_LENGTH
    steps: int = GEN_LENGTH  # without a threshold: forwards over the whole canvas (gen_length / steps tokens each)
    cache: str = "dual"
    threshold: float | None = THRESHOLD  # None: the fixed `steps` schedule
    tokens_per_step: float = TOKENS_PER_STEP  # mean answer tokens a forward decides at the threshold
    # P(1, 2, ..., k answer tokens decided by a forward) at the threshold; None: 1 + Poisson(tokens_per_step - 1).
    # When given, tokens_per_step is its mean (decoding() sets it)
    tokens_per_step_probs: tuple[float, ...] | None = None
    alp: bool = True  # adaptive length prediction
    copies: int = JUMP_COPIES  # jump-share: block + speculative copies per block step (1 = off)
    jump_probs: tuple[float, ...] = JUMP_PROBS  # P(k extra tokens accepted), k = 0, 1, ...

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PhasewiseError(f"--dllm '{self.mode}' is not one of {', '.join(MODES)}")
        if self.cache not in CACHE_MODES:
            raise PhasewiseError(f"--dllm-cache '{self.cache}' is not one of {', '.join(CACHE_MODES)}")
        for flag, value in (("--gen-length", self.gen_length), ("--block-length", self.block_length),
                            ("--dllm-steps", self.steps), ("--jump-copies", self.copies)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PhasewiseError(f"{flag} must be an integer >= 1 (got {value!r})")
        if self.gen_length % self.block_length:
            raise PhasewiseError(f"--gen-length {self.gen_length} is not a multiple of --block-length "
                                 f"{self.block_length} (the canvas is decoded in whole blocks)")
        if self.threshold is None:
            if self.steps > self.gen_length or self.steps % self.blocks:
                raise PhasewiseError(f"--dllm-steps {self.steps} must divide evenly over the {self.blocks} blocks "
                                     f"and be <= --gen-length {self.gen_length} (LLaDA's steps % num_blocks == 0)")
        elif not 0 < self.threshold <= 1:
            raise PhasewiseError(f"--dllm-threshold must be in (0, 1] (got {self.threshold})")
        if self.tokens_per_step_probs is not None:
            self._check_tokens_per_step_probs()
        if not (math.isfinite(self.tokens_per_step) and 1 <= self.tokens_per_step <= self.block_length):
            raise PhasewiseError(f"--tokens-per-step must be a number from 1 to --block-length {self.block_length} "
                                 f"(a forward decides at most its block; got {self.tokens_per_step})")
        if self.copies > 1 and self.cache != "dual":
            raise PhasewiseError(f"--jump-copies {self.copies} needs --dllm-cache dual (jump-share forwards the "
                                 "block's copies over the dual cache)")
        probs = self.jump_probs
        if not probs or any(not (math.isfinite(p) and p >= 0) for p in probs) or abs(sum(probs) - 1) > 1e-6:
            raise PhasewiseError(f"--jump-probs must be numbers >= 0 summing to 1, P(0, 1, ... extra tokens) "
                                 f"(got {', '.join(f'{p:g}' for p in probs)})")
        if self.jump_share and len(probs) > self.most_extra + 1:
            raise PhasewiseError(f"--jump-probs gives P(0 .. {len(probs) - 1} extra tokens) but --jump-copies "
                                 f"{self.copies} accepts at most {self.most_extra} (its late phase's "
                                 f"{2 * self.copies} candidates): give at most {self.most_extra + 1} numbers "
                                 f"(got {', '.join(f'{p:g}' for p in probs)})")

    def to_json(self) -> dict:
        """The settings as simulate --json's and plan --json's `dllm` block report them (a knob the mode does not
        read is None)."""
        return {"mode": self.mode, "gen_length": self.gen_length, "block_length": self.block_length,
                "cache": self.cache, "threshold": self.threshold,
                "steps": self.steps if self.threshold is None else None,
                "tokens_per_step": self.tokens_per_step if self.threshold is not None else None,
                "tokens_per_step_probs": list(self.tokens_per_step_probs) if self.tokens_per_step_probs else None,
                "alp": self.alp, "jump_copies": self.copies,
                "jump_probs": list(self.jump_probs) if self.jump_share else None}

    def _check_tokens_per_step_probs(self) -> None:
        probs = self.tokens_per_step_probs
        if self.threshold is None:
            raise PhasewiseError(f"--tokens-per-step-probs does not apply to --dllm {self.mode} (it decodes a fixed "
                                 "--dllm-steps schedule)")
        shown = ", ".join(f"{p:g}" for p in probs)
        if not probs or any(not (math.isfinite(p) and p >= 0) for p in probs) or abs(sum(probs) - 1) > 1e-6:
            raise PhasewiseError(f"--tokens-per-step-probs must be numbers >= 0 summing to 1, P(1, 2, ... answer "
                                 f"tokens a forward decides) (got {shown})")
        if len(probs) > self.block_length:
            raise PhasewiseError(f"--tokens-per-step-probs gives P(1 .. {len(probs)} tokens) but a forward decides "
                                 f"at most its block, --block-length {self.block_length} (got {shown})")
        if abs(self.tokens_per_step - mean_tokens(probs)) > 1e-9:
            raise PhasewiseError(f"--tokens-per-step {self.tokens_per_step:g} is not the mean "
                                 f"{mean_tokens(probs):g} of --tokens-per-step-probs {shown}: give one of them")

    @property
    def blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.blocks

    @property
    def jump_share(self) -> bool:
        return self.copies > 1

    @property
    def first_extra(self) -> int:
        """Extra tokens a first-phase step accepts at most: its `copies` candidates are the chain none, 1, 2, 12
        (generate_alp_jump_share.py), each further pair adding top-k alone and tops 1..k, so copies // 2; a draw
        of more accepts that many (the top candidates it has all agree)."""
        return self.copies // 2

    @property
    def most_extra(self) -> int:
        """Extra tokens a late-phase step accepts at most: its 2 x copies candidates (8: none, 1, 2, 12, 3, 123, 4,
        1234, up to 4 extra, choice_id 7)."""
        return self.copies

    def late_step_tokens(self, masks: int) -> int:
        """New tokens of a late-phase step with `masks` masked positions left in the block: the block once and
        each other candidate's masked positions (32 + 7 x masks for 8 candidates)."""
        return self.block_length + (2 * self.copies - 1) * masks

    def schedule(self) -> list[int]:
        """Tokens decided by each forward of a block without a threshold (LLaDA's get_num_transfer_tokens)."""
        n, b = self.steps_per_block, self.block_length
        return [b // n + (1 if i < b % n else 0) for i in range(n)]


def mean_tokens(probs: tuple[float, ...]) -> float:
    """Mean tokens a forward decides under P(1, 2, ..., k) = `probs`."""
    return sum((k + 1) * p for k, p in enumerate(probs)) / sum(probs)


MODE_DEFAULTS = {
    "baseline": {"cache": "none", "threshold": None, "alp": False, "copies": 1},
    "fast-dllm": {"cache": "dual", "threshold": THRESHOLD, "alp": False, "copies": 1},
    "alp": {"cache": "dual", "threshold": THRESHOLD, "alp": True, "copies": 1},
    "odb": {"cache": "dual", "threshold": THRESHOLD, "alp": True, "copies": JUMP_COPIES},
}


def decoding(mode: str, *, gen_length: int | None = None, block_length: int | None = None,
             steps: int | None = None, cache: str | None = None, threshold: float | None = None,
             tokens_per_step: float | None = None, copies: int | None = None,
             jump_probs: tuple[float, ...] | None = None,
             tokens_per_step_probs: tuple[float, ...] | None = None) -> DllmDecoding:
    """The mode's configuration (MODE_DEFAULTS) with the given overrides; `steps` defaults to gen_length (one
    token a step, as the eval script's steps=1024 for gen_length=1024); `tokens_per_step_probs` sets
    tokens_per_step to its mean. A threshold or jump knob on a mode that has none is an error, not silently
    ignored."""
    if mode not in MODE_DEFAULTS:
        raise PhasewiseError(f"--dllm '{mode}' is not one of {', '.join(MODES)}")
    base = MODE_DEFAULTS[mode]
    # a threshold mode's forward time depends on the threshold only through the tokens it decides at it, and no
    # source gives that relation beyond the one measured point (TOKENS_PER_STEP at THRESHOLD; the relation is the
    # task's, not the model's alone): a threshold would be reported and change nothing, tokens_per_step carries it
    if base["threshold"] is not None and threshold is not None:
        raise PhasewiseError(f"--dllm-threshold {threshold:g} changes nothing by itself: a threshold acts only through "
                             f"the tokens a forward decides at it, --tokens-per-step ({TOKENS_PER_STEP} measured at "
                             f"{THRESHOLD} on GSM8K, the default): give --tokens-per-step for your threshold instead")
    if base["threshold"] is None and (threshold, tokens_per_step, tokens_per_step_probs) != (None, None, None):
        flag = ("--dllm-threshold" if threshold is not None else "--tokens-per-step" if tokens_per_step is not None
                else "--tokens-per-step-probs")
        raise PhasewiseError(f"{flag} does not apply to --dllm {mode} (it decodes a fixed --dllm-steps schedule)")
    if base["threshold"] is not None and steps is not None:
        raise PhasewiseError(f"--dllm-steps does not apply to --dllm {mode}: it decodes the tokens above a confidence "
                             f"threshold, not a fixed schedule of steps; --tokens-per-step ({TOKENS_PER_STEP} by "
                             f"default) or --tokens-per-step-probs set how many a forward decides")
    if tokens_per_step is not None and tokens_per_step_probs is not None:
        raise PhasewiseError("--tokens-per-step and --tokens-per-step-probs both set what a forward decides: give "
                             "one (the mean, or the distribution)")
    if tokens_per_step_probs is not None:
        tokens_per_step_probs = tuple(tokens_per_step_probs)
        if tokens_per_step_probs and sum(tokens_per_step_probs) > 0:  # else DllmDecoding's check names the flag
            tokens_per_step = mean_tokens(tokens_per_step_probs)
    if base["copies"] == 1 and (copies is not None or jump_probs is not None):
        flag = "--jump-copies" if copies is not None else "--jump-probs"
        raise PhasewiseError(f"{flag} needs --dllm odb (jump-share speculation)")
    gen = GEN_LENGTH if gen_length is None else gen_length
    out = DllmDecoding(mode=mode, gen_length=gen, block_length=BLOCK_LENGTH if block_length is None else block_length,
                       steps=gen if steps is None else steps, cache=base["cache"] if cache is None else cache,
                       threshold=base["threshold"] if threshold is None else threshold,
                       tokens_per_step=TOKENS_PER_STEP if tokens_per_step is None else tokens_per_step,
                       alp=base["alp"], copies=base["copies"] if copies is None else copies,
                       jump_probs=JUMP_PROBS if jump_probs is None else tuple(jump_probs),
                       tokens_per_step_probs=tokens_per_step_probs)
    return out


def ladder(**overrides) -> dict[str, DllmDecoding]:
    """The settings ladder (baseline, fast-dllm, alp, odb) with shared overrides (gen_length, block_length,
    tokens_per_step, tokens_per_step_probs, copies, jump_probs: each applied where the mode has it)."""
    out = {}
    for mode in MODES:
        base = MODE_DEFAULTS[mode]
        kw = {k: v for k, v in overrides.items() if v is not None}
        if base["threshold"] is None:
            kw.pop("tokens_per_step", None)
            kw.pop("tokens_per_step_probs", None)
            kw.pop("threshold", None)
        else:
            kw.pop("steps", None)
        if base["copies"] == 1:
            kw.pop("copies", None)
            kw.pop("jump_probs", None)
        out[mode] = decoding(mode, **kw)
    return out


__all__ = ["BLOCK_LENGTH", "CACHE_MODES", "DllmDecoding", "GEN_LENGTH", "JUMP_COPIES", "JUMP_PROBS", "MODES",
           "MODE_DEFAULTS", "THRESHOLD", "TOKENS_PER_STEP", "decoding", "ladder", "mean_tokens"]
