"""One diffusion-LM request's life: the forwards it runs, in order, and how many canvas tokens each decides.

The life depends on the request and its own random numbers only, not on what it is batched with, so it is
drawn once (`plan_request`) and the instance (sim/dllm.py) only times it. Structure, from the released code:

* each block starts with a forward over prompt + canvas (cache none: every forward is one; prefix / dual: the
  refresh that rebuilds the cache), then block steps until no position of the block is masked
  (Fast-dLLM llada/generate.py, ODB-dLLM generate_alp_jump_share.py);
* without a threshold a block takes the fixed `steps` schedule; with one, a forward decides 1 + Poisson(mean - 1)
  of the block's answer tokens (the top one always, the rest above the threshold: the input distribution), or a
  draw from `tokens_per_step_probs` (P(1, 2, ..., k) tokens) when the decoding gives one, and
  the end-of-text filler after the answer in the whole block at its first forward (EOS predictions are
  confident: in Fast-dLLM's released GSM8K decode histories, llada/predictions.jsonl, each all-EOS block is
  decided by one forward);
* without ALP all gen_length / block_length blocks are decoded (Fast-dLLM's dual-cache loop has no early exit);
  with ALP the refresh of block `detect_block` finds the end marker confident and cuts the canvas to the
  answer's end rounded up to a block (its later refreshes and steps cover prompt + that canvas), and decoding
  stops after the block holding the end;
* jump-share (copies > 1), as generate_alp_jump_share.py runs it: a block step forwards copies x block tokens
  (the block and its candidates, block-diagonal) and decides extra answer tokens drawn from jump_probs, at most
  DllmDecoding.first_extra (2 of 4 candidates); from the step after the one that finds the masks the step before
  left <= LATE_PHASE_MASKS + its extra, to the block's end, a step forwards 2 x copies candidates over the block's
  masked positions only (DllmDecoding.late_step_tokens: 32 + 7 x masks) and accepts up to most_extra (4).
Assumed where the papers give no figure: the end marker turns confident at a refresh drawn uniformly over the
answer's blocks (ODB-dLLM publishes no per-refresh detection statistics), and the cut is exact (ALP keeps
accuracy, ODB-dLLM abstract), i.e. never inside the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from phasewise.perf.dllm import FIELDS, forward_shape, shape_row
from phasewise.specs.dllm import LATE_PHASE_MASKS, DllmDecoding

KINDS = ("full", "refresh", "step")
FULL, REFRESH, STEP = range(3)


@lru_cache(maxsize=65536)
def _row(new_tokens: int, cached_tokens: int, copies: int) -> tuple[int, ...]:
    return shape_row(new_tokens, cached_tokens, copies)


@lru_cache(maxsize=65536)
def _late_row(new_tokens: int, cached_tokens: int, block_tokens: int) -> tuple[int, ...]:
    """A late jump-share step's row: every new position sees the cache and `block_tokens` of the new ones (the
    block's, or its decided positions and its own candidate's masked ones: the released attention mask), so
    new x (new - block) of a dense forward's pairs are masked out (as forward_shape's equal copies)."""
    shape = forward_shape(new_tokens, cached_tokens)
    masked = new_tokens * (new_tokens - block_tokens)
    if shape.prefill_seqs:
        shape.prefill_pairs -= masked
    else:
        shape.decode_pairs -= masked
    return tuple(int(getattr(shape, f)) for f in FIELDS)


@dataclass(slots=True)
class RequestPlan:
    """Index-aligned per forward: kind (FULL/REFRESH/STEP), block, new and cached tokens, copies, tokens decided,
    and the forward's BatchShape row (perf.dllm.shape_row)."""

    prompt_tokens: int
    answer_tokens: int
    canvas_tokens: int  # positions decoded in all: gen_length, or the ALP canvas
    detect_block: int | None
    kind: list[int]
    block: list[int]
    new_tokens: list[int]
    cached_tokens: list[int]
    decided: list[int]
    rows: list[tuple[int, ...]]
    first_block_forward: int  # index of the forward that completes block 0
    extra: list[int]  # jump-share: speculative tokens each forward accepted (part of decided)

    @property
    def forwards(self) -> int:
        return len(self.kind)

    @property
    def refreshes(self) -> int:
        return sum(1 for k in self.kind if k != STEP)

    @property
    def steps(self) -> int:
        return sum(1 for k in self.kind if k == STEP)


def cumulative_of(probs: tuple[float, ...]) -> np.ndarray:
    """A categorical distribution's cumulative shares (normalised), for `draw`."""
    return np.cumsum(probs) / sum(probs)


def draw(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """An index from the categorical `cumulative` (one uniform draw of `rng`)."""
    return min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(cumulative) - 1)


def plan_request(dec: DllmDecoding, prompt_tokens: int, answer_tokens: int, rng: np.random.Generator) -> RequestPlan:
    """The forwards of one request with `prompt_tokens` and an answer of `answer_tokens` (capped at the canvas)."""
    P, G, B = int(prompt_tokens), dec.gen_length, dec.block_length
    A = min(max(int(answer_tokens), 1), G)
    answer_blocks = math.ceil(A / B)
    blocks = answer_blocks if dec.alp else dec.blocks
    detect = int(rng.random() * answer_blocks) if dec.alp else None
    schedule = dec.schedule() if dec.threshold is None else None
    accepted = cumulative_of(dec.jump_probs)
    mean_more = dec.tokens_per_step - 1.0
    # the categorical P(1, 2, ..., k tokens decided), drawn as jump_probs; None: 1 + Poisson(mean_more)
    decided_by = None if dec.tokens_per_step_probs is None else cumulative_of(dec.tokens_per_step_probs)
    canvas = G
    kind: list[int] = []
    block: list[int] = []
    new: list[int] = []
    cached: list[int] = []
    decided: list[int] = []
    rows: list[tuple[int, ...]] = []
    extra: list[int] = []
    first_block_forward = -1
    for b in range(blocks):
        start = b * B
        answer_left = min(max(A - start, 0), B)
        eos_left = B - answer_left
        i = 0
        late, left_before = False, None  # jump-share's late phase; the masks the step before left
        while answer_left + eos_left > 0:
            masks, more = answer_left + eos_left, 0
            if dec.cache == "none" or i == 0:
                k, n, c = (FULL if dec.cache == "none" else REFRESH), P + canvas, 0
            elif dec.cache == "dual":
                k, c = STEP, P + canvas - B
                n = dec.late_step_tokens(masks) if late else B * dec.copies
            else:  # prefix: the block and everything after it, over the cached prompt and finished blocks
                k, n, c = STEP, canvas - start, P + start
            if schedule is not None:
                d = min(schedule[min(i, len(schedule) - 1)], answer_left + eos_left)
                take = min(d, answer_left)
                answer_left -= take
                eos_left -= d - take
            else:
                if not answer_left:
                    d_answer = 0
                elif decided_by is None:
                    d_answer = min(answer_left, 1 + int(rng.poisson(mean_more)))
                else:
                    d_answer = min(answer_left, 1 + draw(decided_by, rng))
                if k == STEP and dec.copies > 1 and answer_left > d_answer:
                    most = dec.most_extra if late else dec.first_extra
                    more = min(draw(accepted, rng), most, answer_left - d_answer)
                    d_answer += more
                d = d_answer + (eos_left if i == 0 else 0)
                answer_left -= d_answer
                eos_left -= d - d_answer
            kind.append(k)
            block.append(b)
            new.append(n)
            cached.append(c)
            decided.append(d)
            extra.append(more)
            rows.append(_late_row(n, c, B) if late and k == STEP else _row(n, c, dec.copies if k == STEP else 1))
            if k == STEP and dec.copies > 1 and schedule is None and not late:
                late = left_before is not None and left_before <= LATE_PHASE_MASKS + more
                left_before = masks - d
            if dec.alp and b == detect and i == 0:
                canvas = answer_blocks * B  # the end marker is confident: cut the canvas after this refresh
            i += 1
        if b == 0:
            first_block_forward = len(kind) - 1
    return RequestPlan(P, A, blocks * B, detect, kind, block, new, cached, decided, rows, first_block_forward, extra)


__all__ = ["FULL", "KINDS", "REFRESH", "RequestPlan", "STEP", "plan_request"]
