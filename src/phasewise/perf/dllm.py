"""Cost of diffusion-LM forwards: a refresh (prompt + canvas, bidirectional, no cache) and a block step (the
block, or the block and its jump-share copies, over the cached rest), alone or batched across requests.

Built only on BatchShape(causal=False) and CostModel: every forward's time is `CostModel.fast` (the same
figure as `CostModel.iteration`) of the batch's shape. A forward's shape is kept as the tuple of BatchShape's
fields (`shape_row`), so a batch of many requests' forwards is their sum and costs are memoized by it.

Jump-share copies attend block-diagonally (ODB-dLLM generate_alp_jump_share.py's attention mask): each of the
`copies` blocks sees the cache and itself, never another copy, so the pairs are copies x block x (cache + block)
rather than a dense (copies x block)^2 square; every copy's KV is read and written as new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import SUM_FIELDS, BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.memory import MemoryFit, memory_fit
from phasewise.specs.dllm import LATE_PHASE_MASKS, DllmDecoding

FIELDS = SUM_FIELDS
ROW_WIDTH = len(FIELDS)


def forward_shape(new_tokens: int, cached_tokens: int, copies: int = 1) -> BatchShape:
    """One request's forward: `new_tokens` positions over `cached_tokens` cached ones, bidirectional, logits at
    every new position (LLaDA predicts every masked token). With `copies` > 1 the new tokens are that many
    equal blocks attending block-diagonally (jump-share)."""
    if copies < 1 or new_tokens % copies:
        raise PhasewiseError(f"jump-share: {new_tokens} new tokens do not split into {copies} equal copies")
    shape = BatchShape()
    shape.add(new_tokens, cached_tokens, causal=False, logits=new_tokens)
    if copies > 1:
        block = new_tokens // copies
        dense_extra = new_tokens * (new_tokens - block)  # pairs between different copies, masked out
        if shape.prefill_seqs:
            shape.prefill_pairs -= dense_extra
        else:
            shape.decode_pairs -= dense_extra
    return shape


def shape_row(new_tokens: int, cached_tokens: int, copies: int = 1) -> tuple[int, ...]:
    """forward_shape as a tuple of BatchShape's fields (rows add up to a batch's shape)."""
    shape = forward_shape(new_tokens, cached_tokens, copies)
    return tuple(int(getattr(shape, f)) for f in FIELDS)


def row_shape(row) -> BatchShape:
    return BatchShape(*(int(x) for x in row))


@dataclass(slots=True)
class DllmCost:
    """Seconds of a batched dLLM forward on one instance (`cm`), memoized by the batch's shape."""

    cm: CostModel
    memo: dict

    @classmethod
    def of(cls, cm: CostModel) -> DllmCost:
        return cls(cm, {})

    def row_s(self, row: tuple[int, ...]) -> float:
        """Latency of one iteration whose shape is `row` (a sum of shape_row()s)."""
        t = self.memo.get(row)
        if t is None:
            t = self.cm.fast(row_shape(row))[0]
            if len(self.memo) > 100_000:
                self.memo.clear()
            self.memo[row] = t
        return t

    def forward_s(self, new_tokens: int, cached_tokens: int, copies: int = 1, batch: int = 1) -> float:
        """A batch of `batch` identical forwards."""
        row = shape_row(new_tokens, cached_tokens, copies)
        return self.row_s(tuple(x * batch for x in row))

    def step_s(self, prompt_tokens: int, canvas_tokens: int, block_tokens: int, copies: int = 1,
               batch: int = 1) -> float:
        """A dual-cache block step: the block (x copies) over the cache of prompt + canvas less the block."""
        return self.forward_s(block_tokens * copies, prompt_tokens + canvas_tokens - block_tokens, copies, batch)


def ridge_flops_per_byte(cm: CostModel) -> float:
    """The roofline's ridge of `cm`'s chip at its compute dtype (specs/hardware_spec.py ridge_flops_per_byte)."""
    return cm.hw.ridge_flops_per_byte(cm.quant.compute_dtype)


def ridge_tokens(cm: CostModel) -> float:
    """New tokens per forward at which the weight GEMMs reach the chip's ridge: 2 FLOPs per weight and token
    against the weight bytes each forward streams (the ridge in FLOP/byte x bytes per weight / 2)."""
    return ridge_flops_per_byte(cm) * cm.w_bytes / 2.0


def forward_curve(cost: DllmCost, context_tokens: int, new_tokens: list[int]) -> list[tuple[int, float, float]]:
    """(new tokens, seconds, FLOP per byte) of one forward of each size over `context_tokens` positions in all
    (cached = context - new): forward time vs new positions, for the memory-bound / compute-bound picture."""
    out = []
    for new in new_tokens:
        if not 0 < new <= context_tokens:
            raise PhasewiseError(f"forward of {new} new tokens does not fit a context of {context_tokens}")
        shape = forward_shape(new, context_tokens - new)
        latency_s, _, flops, nbytes = cost.cm.fast(shape)
        out.append((new, latency_s, flops / nbytes if nbytes else 0.0))
    return out


def dllm_memory(cm: CostModel, prompt_tokens: int, gen_length: int, batch: int, extra_tokens: int = 0,
                memory_fraction: float = 0.9, step_tokens: int = 0) -> MemoryFit:
    """Memory of `batch` requests on one instance: each holds the KV of its prompt + canvas (+ `extra_tokens`, e.g.
    jump-share's copies written beside the block), and the largest forward runs for all of them at once: a refresh
    over prompt + canvas, or a block step of `step_tokens` new positions (jump-share's block x copies) where that is
    more. Its activations hold the logits of every new position (forward_shape's LM head: logits = new tokens)."""
    largest = max(prompt_tokens + gen_length, step_tokens)
    return memory_fit(cm.model, cm.hw, cm.quant, cm.tp, 1, max_tokens=batch * largest, max_seqs=batch,
                      kv_needed_tokens=batch * (prompt_tokens + gen_length + extra_tokens),
                      memory_fraction=memory_fraction, logit_tokens=batch * largest, engine=cm.engine)


def decoding_memory(cm: CostModel, dec: DllmDecoding, prompt_tokens: int, batch: int, memory_fraction: float = 0.9,
                    copies: int | None = None) -> MemoryFit:
    """dllm_memory of `batch` requests of `prompt_tokens` decoded by `dec` (`copies` in place of its own): the
    canvas, jump-share's copies beside the block and their step, the wider of its two phases' (the first phase's
    copies x block; the late phase's block and 2 x copies - 1 candidates over the masks left, at most
    LATE_PHASE_MASKS + the first phase's extra: 32 + 7 x 20 = 172 tokens at 4 copies of 32)."""
    copies = dec.copies if copies is None else copies
    if copies <= 1:
        return dllm_memory(cm, prompt_tokens, dec.gen_length, batch, 0, memory_fraction, 0)
    dec = replace(dec, copies=copies)
    late_masks = min(dec.block_length - 1, LATE_PHASE_MASKS + dec.first_extra)
    step_tokens = max(copies * dec.block_length, dec.late_step_tokens(late_masks))
    return dllm_memory(cm, prompt_tokens, dec.gen_length, batch, step_tokens - dec.block_length, memory_fraction,
                       step_tokens)


class MemoryRefusal(NamedTuple):
    """Why a dLLM batch does not fit one instance: what to change ("copies", "lengths" or "cap") and the one line
    that says so (naming its flag)."""

    cause: str
    text: str


def memory_error(cm: CostModel, dec: DllmDecoding, prompt_tokens: int, batch: int, memory_fraction: float = 0.9,
                 cap_flag: str = "--batch-cap") -> MemoryRefusal | None:
    """None when `batch` requests of up to `prompt_tokens` fit one instance (decoding_memory), else what does not
    fit and a one-line error naming the flag to change: --jump-copies where the copies are what does not fit (the
    batch fits without them), the lengths where one request does not fit, else `cap_flag`."""
    mem = decoding_memory(cm, dec, prompt_tokens, batch, memory_fraction)
    if mem.fits:
        return None
    what = (f"each request keeps the KV of its prompt (up to {prompt_tokens:,}) + {dec.gen_length}-token canvas"
            + (f" + jump-share's {dec.copies - 1} copies of its {dec.block_length}-token block, or its late "
               f"phase's {2 * dec.copies - 1} candidates over the masks left" if dec.copies > 1 else "")
            + ", and a forward of them all holds the logits of every position it decodes")
    if dec.copies > 1 and decoding_memory(cm, dec, prompt_tokens, batch, memory_fraction, copies=1).fits:
        at = f" at {cap_flag} {batch}" if batch > 1 else ""
        also = f" (or {cap_flag})" if batch > 1 else ""
        return MemoryRefusal("copies", f"--jump-copies {dec.copies} does not fit on {cm.hw.key}{at}: "
                                       f"{mem.reason()} ({what}); lower --jump-copies{also}")
    if batch == 1:
        return MemoryRefusal("lengths", f"one request does not fit on {cm.hw.key}: {mem.reason()} ({what}); lower "
                                        "--gen-length or the prompts' lengths (--isl)")
    return MemoryRefusal("cap", f"{cap_flag} {batch} does not fit on {cm.hw.key}: {mem.reason()} ({what}); lower "
                                f"{cap_flag}")


__all__ = ["DllmCost", "FIELDS", "MemoryRefusal", "ROW_WIDTH", "decoding_memory", "dllm_memory", "forward_curve",
           "forward_shape", "memory_error", "ridge_flops_per_byte", "ridge_tokens", "row_shape", "shape_row"]
