"""vLLM's shared KV block pool for compressed attention (DeepSeek-V4): every cache group draws its blocks from one
pool, and a block of any group costs the same slot of it.

vLLM registers five kinds of cache per V4 stack (v1/kv_cache_interface.py MLAAttentionSpec / SlidingWindowMLASpec,
v1/attention/backends/mla/sparse_swa.py, model_executor/layers/deepseek_compressor.py, read via the code search):
the CSA layers' compressed entries and indexer keys and the HCA layers' compressed entries (one group, 256-token
blocks holding block / ratio entries each, every page rounded up to 576 bytes for FlashMLA), every layer's window
entries (64-token blocks) and the CSA and HCA compressors' fp32 states (4- and 8-token blocks, windows of 2 x 4 and
128 tokens). v1/core/kv_cache_utils.py (_get_kv_cache_groups_uniform_groups, _get_kv_cache_config_deepseek_v4; the
2026 DeepseekV4KVCachePlanner keeps the same layout) lays them out as `layer_tuples` repeats of the three compressed
pages, the count that pads the kinds' layer counts least (_approximate_gcd, at least the compressed group's), splits
each windowed kind into groups of at most that many layers, and gives every tensor of every repeat one page per
block id: a block costs layer_tuples x (the three pages), 1,051,776 bytes for DeepSeek-V4-Flash (22 x 47,808),
whichever group takes it.

A request holds the compressed group's blocks for its whole context and, in each windowed group, the blocks its
window spans (vLLM frees a block once it leaves the window); while it prefills a chunk, the windowed groups hold
blocks for the whole chunk until its forward ends. vLLM checks at start-up that one request of max_model_len fits
with a chunk of max_num_batched_tokens in flight, and logs its "Maximum concurrency" as the pool's blocks over that
request's (request_blocks): the figures its issue #51454 (20.43x at 1M on 8 x B200) and #44376 (6.66 GiB needed at
30,000 tokens, 13,528 the longest that fits 5.44 GiB) print, reproduced by tests/test_shared_block_pool.py.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.kv_geometry import INDEXER_KEY_SCALE_BYTES, compressed_entry_bytes
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme


@dataclass(slots=True, frozen=True)
class WindowGroup:
    """One windowed cache group: its block, in tokens, and the window of tokens a request keeps in it."""

    kind: str  # window entries, CSA compressor states, HCA compressor states
    block_tokens: int
    window_tokens: int

    def span_blocks(self, new_tokens: int) -> int:
        """Blocks the window plus `new_tokens` being computed can span (vLLM's SlidingWindowSpec bound)."""
        return math.ceil((self.window_tokens - 1 + new_tokens) / self.block_tokens) + 1


@dataclass(slots=True, frozen=True)
class SharedBlockPool:
    """One GPU's view of the pool (a stage's layers; the single K = V head is whole on every attention rank)."""

    block_tokens: int  # the compressed group's block (--block-size 256)
    block_bytes: int  # what one block id costs, in every group
    layer_tuples: int
    page_bytes: tuple[int, ...]  # the compressed group's distinct pages (after alignment)
    window_groups: tuple[WindowGroup, ...]

    @property
    def bytes_per_token(self) -> float:
        """Pool bytes one context token takes in the compressed group (the unit of the simulator's KV tokens)."""
        return self.block_bytes / self.block_tokens

    @property
    def sequence_window_bytes(self) -> float:
        """The pool a decoding request holds for its windows beside its context (window_blocks)."""
        return self.window_blocks() * self.block_bytes

    def chunk_bytes(self, chunk_tokens: int) -> float:
        """The pool a prefill chunk of `chunk_tokens` holds beside that until its forward ends (chunk_blocks)."""
        return self.chunk_blocks(chunk_tokens) * self.block_bytes

    def window_blocks(self) -> int:
        """Blocks a decoding request holds in the windowed groups: each group's window and the token in flight."""
        return sum(group.span_blocks(1) for group in self.window_groups)

    def chunk_blocks(self, chunk_tokens: int) -> int:
        """Blocks beyond window_blocks() a prefill chunk of `chunk_tokens` holds in the windowed groups until its
        forward ends."""
        return sum(group.span_blocks(chunk_tokens) - group.span_blocks(1) for group in self.window_groups)

    def request_blocks(self, max_model_len: int, max_batched_tokens: int) -> int:
        """Blocks vLLM counts for one request of `max_model_len` with a chunk of `max_batched_tokens` in flight
        (get_max_concurrency_for_kv_cache_config: every group's max_memory_usage, in blocks)."""
        compressed = math.ceil(max_model_len / self.block_tokens)
        return compressed + sum(math.ceil(min(group.window_tokens - 1 + max_batched_tokens, max_model_len)
                                          / group.block_tokens) + 1 for group in self.window_groups)

    def longest_request(self, pool_bytes: float, max_batched_tokens: int, max_model_len: int) -> int:
        """The longest max_model_len whose request_blocks fit `pool_bytes` (vLLM's "estimated maximum model
        length", a bisection over 1..max_model_len); 0 when not even one token fits."""
        def fits(length: int) -> bool:
            return self.request_blocks(length, max_batched_tokens) * self.block_bytes <= pool_bytes

        low, high, best = 1, max_model_len, 0
        while low <= high:
            mid = (low + high) // 2
            if fits(mid):
                best, low = mid, mid + 1
            else:
                high = mid - 1
        return best


def approximate_gcd(counts: list[int], lower_bound: int) -> int:
    """The repeat count from `lower_bound` up that pads `counts` (each rounded up to a multiple of it) least, ties
    to the larger (vLLM's _approximate_gcd)."""
    if lower_bound > max(counts):
        return lower_bound
    return min(range(lower_bound, max(counts) + 1), key=lambda d: (sum(-count % d for count in counts), -d))


def shared_block_pool(model: ModelSpec, quant: QuantScheme, rule: dict, pp: int = 1) -> SharedBlockPool:
    """The pool of `model`'s compressed attention on one GPU of a `pp`-stage pipeline (the deepest stage's share of
    each kind of layer), as the engine rule `rule` (engine_presets.yaml window_kv compressed_block_pool) lays it
    out: block_tokens, page_alignment_bytes (per KV layout), window_block_tokens, state_block_tokens (csa, hca)."""
    c = model.compressed
    if c is None:
        raise ValueError(f"{model.name} has no compressed attention: it has no shared block pool")
    if not c.compressed_layers:  # vLLM builds the pool's pages from them (get_kv_cache_groups: "len(mla_specs) > 0")
        raise PhasewiseError(f"{model.name} has sliding layers only (every compress ratio 0): vLLM's DeepSeek-V4 KV "
                             "cache sizes its block pool from the compressed layers' pages, so it cannot hold this "
                             "stack (--engine sglang or trtllm can)")
    block = int(rule["block_tokens"])
    layout = quant.sparse_kv_layout if quant.kv_dtype == "fp8" else "other"
    alignment = int(rule["page_alignment_bytes"].get(layout, rule["page_alignment_bytes"]["other"]))

    def aligned(size: float) -> int:
        return math.ceil(size / alignment) * alignment

    entry = compressed_entry_bytes(model, quant)
    csa, hca, layers = (math.ceil(count / pp) for count in (c.csa_layers, c.hca_layers, model.num_layers))
    pages = Counter()  # the compressed group's page sizes -> layers with that page
    for page, count in ((aligned(block // c.csa_ratio * entry), csa),
                        (aligned(block // c.csa_ratio * (c.indexer_head_dim + INDEXER_KEY_SCALE_BYTES)), csa),
                        (aligned(block // c.hca_ratio * entry), hca)):
        if count:
            pages[page] += count
    states = rule["state_block_tokens"]
    kinds = [(WindowGroup("window entries", int(rule["window_block_tokens"]), c.window), layers),
             (WindowGroup("CSA compressor states", int(states["csa"]), 2 * c.csa_ratio), csa),
             (WindowGroup("HCA compressor states", int(states["hca"]), c.hca_ratio), hca)]
    kinds = [(group, count) for group, count in kinds if count]
    tuples = approximate_gcd([max(pages.values())] + [count for _, count in kinds], max(pages.values()))
    groups = tuple(group for group, count in kinds for _ in range(math.ceil(count / tuples)))
    return SharedBlockPool(block, tuples * sum(pages), tuples, tuple(sorted(pages)), groups)
