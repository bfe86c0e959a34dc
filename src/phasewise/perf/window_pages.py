"""TensorRT-LLM's KV pages for compressed attention (DeepSeek-V4): the window caches in whole pages per sequence.

TensorRT-LLM's DeepseekV4CacheManager (a KVCacheManagerV2; tensorrt_llm/_torch/attention/backends/sparse/
deepseek_v4/cache_manager.py and params.py, read via the code search) keeps, per layer, the compressed entries and
the CSA indexer's keys (pages of tokens_per_block / ratio entries: what grows with the context) and, as sliding
roles, every layer's 128-token window of entries and the compressors' FP32 states (CSA: kv and score for the
compressor and its indexer, a window of 2 x 4 tokens; HCA: kv and score, a window of 128), each in pages of
tokens_per_block token slots (128 by default, or 256). Its scheduler charges a request its context at the
compressed roles' bytes per token plus, whatever its length, every sliding role's window rounded up to whole pages
(_estimate_swa_cache_size(context=False): 40,828,928 bytes for DeepSeek-V4-Flash at 128-token pages in FP8, an
8-token CSA state taking a whole page), and a prompt token in flight every sliding role's slot (context=True:
318,976 bytes for Flash, 2.6 GB for an 8,192-token chunk, unless the opt-in scratch reuse is on). PR #14698
(2026-05) made the windows a fixed cost per request; before it they were counted per context token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from phasewise.perf.kv_geometry import compressed_entry_bytes, compressor_ring_bytes
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme


@dataclass(slots=True, frozen=True)
class WindowPages:
    """One GPU's view (a stage's layers; the single K = V head is whole on every attention rank)."""

    block_tokens: int  # tokens_per_block: a page's token slots
    bytes_per_token: float  # the compressed roles' (entries and indexer keys) bytes per context token
    sequence_window_bytes: float  # the sliding roles' windows of one request, in whole pages
    chunk_token_bytes: float  # the sliding roles' slot of one prompt token in flight

    def chunk_bytes(self, chunk_tokens: int) -> float:
        """What a prefill chunk of `chunk_tokens` holds in the sliding roles until its forward ends."""
        return chunk_tokens * self.chunk_token_bytes


def window_pages(model: ModelSpec, quant: QuantScheme, page_tokens: int, per_token_bytes: float, pp: int = 1
                 ) -> WindowPages:
    """TensorRT-LLM's pages of `model` at `page_tokens` token slots a page, for the deepest of `pp` stages (its
    share of each kind of layer); `per_token_bytes` the compressed roles' bytes per context token on that GPU
    (perf/memory.py kv_bytes_per_token)."""
    c = model.compressed
    if c is None:
        raise ValueError(f"{model.name} has no compressed attention: it has no window pages")

    def paged(window: int) -> int:
        return math.ceil(window / page_tokens) * page_tokens

    share = math.ceil(model.num_layers / pp) / model.num_layers
    entry = compressed_entry_bytes(model, quant)
    window = model.num_layers * entry * paged(c.window) + sum(
        compressor_ring_bytes(model, (paged(2 * c.csa_ratio), paged(c.hca_ratio))))
    in_flight = model.num_layers * entry + sum(compressor_ring_bytes(model, (1, 1)))
    return WindowPages(page_tokens, per_token_bytes, window * share, in_flight * share)
