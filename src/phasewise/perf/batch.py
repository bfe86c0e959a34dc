"""What one forward iteration processes, reduced to the sums the cost model needs.

A batch is a list of sequences, each with `new` tokens to process this iteration and `cached`
tokens already in its KV cache. Pure prefill is (prompt, 0); a decode step is (1, context);
a chunk of chunked prefill is (chunk, done_so_far); a speculative verify step is (k+1, context).
All are the same call; the cost model only sees the sums below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

# A sequence with cached context and at most this many new tokens runs the decode attention kernel
# (memory-bound KV reads, e.g. paged/flash-decoding); longer ones run the prefill kernel.
DECODE_MAX_NEW_TOKENS = 16


def attention_pairs(new: int, cached: int, causal: bool = True, window: int | None = None) -> int:
    """(query, key) pairs attention computes for `new` queries after `cached` keys: causal, query j of
    cached + 1..cached + new sees min(j, window) keys (its closed form); otherwise each sees min(cached + new, window).
    windowed_pairs sums the same count over many sequences and decode steps."""
    if not causal:
        keys = cached + new if window is None else min(cached + new, window)
        return new * keys
    a, b = cached + 1, cached + new  # each query j in a..b sees min(j, window) keys
    if window is None or b <= window:
        return (a + b) * new // 2
    if a > window:
        return new * window
    return (a + window) * (window - a + 1) // 2 + (b - window) * window


def windowed_keys(keys: np.ndarray, window: float, grown: np.ndarray) -> np.ndarray:
    """The sum over sequences of min(keys + grown, window) at each step: `keys` each sequence's at the first step,
    `grown` the tokens each has added by each step (ascending). The keys under the window sorted, a prefix sum and one
    searchsorted over the steps: O(S log S + steps), where the whole S x steps minimum is O(S x steps)."""
    short = np.sort(keys[keys < window])
    below_sum = np.concatenate(((0.0,), np.cumsum(short)))
    below = np.searchsorted(short, window - grown)  # sequences still under the window at each step
    return below_sum[below] + below * grown + (keys.size - below) * float(window)


def windowed_pairs(new: int, keys: np.ndarray, causal: bool, window: float, grown: np.ndarray) -> np.ndarray:
    """attention_pairs(new, keys + grown - new, causal, window) summed over the sequences at each step: `keys` each
    sequence's keys (cached + new) at the first step, `grown` as windowed_keys'. Causal, query t of the `new`
    (0 the last) sees min(keys + grown - t, window) keys, so the sum is windowed_keys' of keys - t over the queries:
    O(new x (S log S + steps))."""
    if not causal:
        return new * windowed_keys(keys, window, grown)
    return sum(windowed_keys(keys - t, window, grown) for t in range(new))


@dataclass(slots=True)
class BatchShape:
    """Sums over the sequences of one iteration, split by the attention kernel they run."""

    prefill_seqs: int = 0
    prefill_tokens: int = 0
    prefill_pairs: int = 0  # attention (query, key) pairs
    prefill_kv_tokens: int = 0  # KV entries read (cached + new, windowed)
    decode_seqs: int = 0
    decode_tokens: int = 0
    decode_pairs: int = 0
    decode_kv_tokens: int = 0
    logit_tokens: int = 0  # tokens that go through the LM head
    # each sequence added, (new, cached, causal, count), by kernel: windowed() counts their windowed pairs exactly
    # (not compared: uniform()'s one span of n copies is n spans of one added apart)
    prefill_spans: list[tuple[int, int, bool, int]] = field(default_factory=list, compare=False)
    decode_spans: list[tuple[int, int, bool, int]] = field(default_factory=list, compare=False)
    # (window, pairs, KV tokens) of the decoding sequences at that window, from a caller that knows each context (the
    # simulator's decoding set keeps sums, not sequences): windowed() at that window takes them
    decode_window: tuple[int, float, float] | None = None

    @property
    def seqs(self) -> int:
        return self.prefill_seqs + self.decode_seqs

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_tokens

    def add(self, new: int, cached: int, causal: bool = True, window: int | None = None,
            logits: int | None = None) -> None:
        """Add one sequence. `logits` defaults to 1 for prefill and `new` for decode/verify."""
        if new <= 0 or cached < 0:
            raise ValueError(f"a sequence needs new >= 1 and cached >= 0 tokens (got new={new}, cached={cached})")
        pairs = attention_pairs(new, cached, causal, window)
        kv = cached + new if window is None else min(cached + new, window)
        if cached > 0 and new <= DECODE_MAX_NEW_TOKENS:
            self.decode_seqs += 1
            self.decode_tokens += new
            self.decode_pairs += pairs
            self.decode_kv_tokens += kv
            self.logit_tokens += new if logits is None else logits
            if window is None:
                self.decode_spans.append((new, cached, causal, 1))
        else:
            self.prefill_seqs += 1
            self.prefill_tokens += new
            self.prefill_pairs += pairs
            self.prefill_kv_tokens += kv
            self.logit_tokens += 1 if logits is None else logits
            if window is None:
                self.prefill_spans.append((new, cached, causal, 1))

    def windowed(self, window: int) -> BatchShape:
        """The same batch through a layer that attends over the last `window` keys only (or a top-k selection of
        `window` keys): each new token sees at most `window` keys, each sequence reads at most `window` cached
        ones. Each kernel's pairs and KV reads are exact where its sequences are known: counted from their spans
        (a prompt's first `window` tokens see fewer keys; a short context beside a long one keeps its own), or,
        for the decoding sequences, taken from decode_window. Otherwise from the sums, exact when every context
        reaches the window and over by less than `window` pairs per new token of a shorter one."""
        prefill = _windowed_sums(self.prefill_spans, window, self.prefill_seqs, self.prefill_tokens,
                                 self.prefill_pairs, self.prefill_kv_tokens)
        if self.decode_window is not None and self.decode_window[0] == window:
            decode = self.decode_window[1:]
        else:
            decode = _windowed_sums(self.decode_spans, window, self.decode_seqs, self.decode_tokens,
                                    self.decode_pairs, self.decode_kv_tokens)
        return BatchShape(self.prefill_seqs, self.prefill_tokens, *prefill, self.decode_seqs, self.decode_tokens,
                          *decode, self.logit_tokens)

    def compressed(self, ratio: int, cap: int | None = None) -> BatchShape:
        """The same batch over compressed entries, one per `ratio` tokens of context (DeepSeek-V4's compressed
        attention): each new token sees 1 / ratio of its keys, each sequence reads 1 / ratio of its context; with
        `cap` (a top-k selection) at most `cap` entries per new token and per sequence: the keys windowed at
        ratio x cap, so each sequence's own where windowed() knows them (a prompt's first ratio x cap tokens select
        fewer), else capped on the sums."""
        keys = self if cap is None else self.windowed(ratio * cap)
        return BatchShape(self.prefill_seqs, self.prefill_tokens, keys.prefill_pairs / ratio,
                          keys.prefill_kv_tokens / ratio, self.decode_seqs, self.decode_tokens,
                          keys.decode_pairs / ratio, keys.decode_kv_tokens / ratio, self.logit_tokens)

    def plus_keys(self, other: BatchShape) -> BatchShape:
        """This batch attending over its own keys and `other`'s (the same sequences and new tokens): pairs and KV
        entries summed, as one kernel reads a window's keys and compressed entries together."""
        return BatchShape(self.prefill_seqs, self.prefill_tokens, self.prefill_pairs + other.prefill_pairs,
                          self.prefill_kv_tokens + other.prefill_kv_tokens, self.decode_seqs, self.decode_tokens,
                          self.decode_pairs + other.decode_pairs, self.decode_kv_tokens + other.decode_kv_tokens,
                          self.logit_tokens)

    @classmethod
    def from_sequences(cls, seqs: Iterable[tuple[int, int]], causal: bool = True,
                       window: int | None = None) -> BatchShape:
        shape = cls()
        for new, cached in seqs:
            shape.add(new, cached, causal, window)
        return shape

    @classmethod
    def uniform(cls, batch: int, new: int, cached: int, causal: bool = True,
                window: int | None = None) -> BatchShape:
        """`batch` identical sequences, in O(1)."""
        one = cls()
        one.add(new, cached, causal, window)
        return cls(*(getattr(one, f) * batch for f in SUM_FIELDS),
                   prefill_spans=[(n, c, k, count * batch) for n, c, k, count in one.prefill_spans],
                   decode_spans=[(n, c, k, count * batch) for n, c, k, count in one.decode_spans])


def _windowed_sums(spans: list[tuple[int, int, bool, int]], window: int, seqs: int, tokens: int, pairs: float,
                   kv_tokens: float) -> tuple[float, float]:
    """(pairs, KV tokens) of one kernel's sequences at `window`: each span's own where the spans are those sequences,
    the sums unedited since (a shape built from sums, or whose pairs a caller changed, has none to go by), else
    each new token's and each sequence's cap on the sums."""
    if spans:
        counted = full = windowed = kv = 0
        for new, cached, causal, count in spans:
            counted += count
            full += attention_pairs(new, cached, causal) * count
            windowed += attention_pairs(new, cached, causal, window) * count
            kv += min(cached + new, window) * count
        if counted == seqs and full == pairs:
            return windowed, kv
    return min(pairs, tokens * window), min(kv_tokens, seqs * window)


# BatchShape's sums (its fields but the spans and the decode window): what adds up across sequences and batches
SUM_FIELDS = tuple(name for name in BatchShape.__slots__
                   if name not in ("prefill_spans", "decode_spans", "decode_window"))
