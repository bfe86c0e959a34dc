"""How one sequence's context maps onto full-layer KV tokens (the unit of kv_bytes_per_token, the KV capacity and
the simulator's KV blocks) when some or all layers keep only a window of it, as each engine lays such a stack's KV out:
per sequence, every token in every layer, a window pool of its own, a pool shared by every cache group, or pages."""

from __future__ import annotations

import numpy as np

from phasewise.perf.kv_geometry import (
    compressed_kv_bytes,
    compressed_swa_token_bytes,
    compressor_ring_bytes,
    window_kv_ratio,
)
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme

WINDOW_KV_LAYOUTS = ("per_sequence", "layer_groups", "all_tokens", "window_pool", "block_pool", "window_pages")


def kv_window_terms(model: ModelSpec, layout: str = "per_sequence", pool_ratio: float = 1.0, *, attention_tp: int,
                    quant: QuantScheme | None = None,
                    speculation: tuple[tuple[int, int], int] | None = None) -> tuple[float, float, int, bool]:
    """(full, windowed, window, pooled) of kv_token_equivalents: how one sequence's context maps onto the tokens of
    kv_bytes_per_token (its full layers' KV per token; every layer's when every layer is windowed), as the engine
    holds a windowed stack's KV (`layout`, specs/engine_kv.py window_kv):
    - per_sequence: the context on the full layers plus, on the windowed layers (this many per full layer), its
      last `window` tokens; every layer windowed: min(context, window). vLLM's hybrid KV cache manager (it frees the
      blocks that leave a window); TensorRT-LLM is modelled so too, unverified (README).
    - layer_groups: per_sequence in vLLM's KV cache groups (v1/core/kv_cache_utils.py
      _get_kv_cache_groups_uniform_page_size): every group holds the same number of layers, the group size the
      smallest attention type's layer count (the largest where it is under 1.5x the smallest), each type in
      ceil(its layers / group size) groups, the last padded; a block of any group costs a group's layers. So a
      windowed layer counts ceil(W / g) x g / F per full layer (gemma-3's 52 sliding, 10 full: 6 groups of 10, 60
      / 10 where per_sequence counts 52 / 10), and the full layers ceil(F / g) x g / F (vllm_layer_groups).
    - all_tokens: every layer holds the whole context, the windows only masking attention (SGLang's one KV pool
      for every model but the few its hybrid SWA pool takes, or with that pool disabled; vLLM with its hybrid KV
      cache manager off: chunked local attention, a KV connector, versions before the hybrid allocator).
    - window_pool: the windowed layers' KV in a pool of its own, `pool_ratio` of its tokens per full-pool token
      (SGLang's --swa-full-tokens-ratio), the memory split between the two pools once: a sequence takes its context
      from the full pool and its last `window` tokens from the window pool, so its share of the memory is the
      larger of the two shares; in full-layer tokens max((1 + ratio x windowed) x context, (1 + ratio x windowed)
      / ratio x min(context, window)) (pooled=True). Its transient at admission (a prompt's whole chunk sits in the
      window pool until its forward ends) is not modelled.
    No window: the context (every layout). Windowed layers of their own geometry (Gemma 4) count as full-layer
    tokens by their KV per token on one GPU of the `attention_tp`-wide attention group over a full layer's
    (perf/kv_geometry.py window_kv_ratio). Compressed attention (DeepSeek-V4; `quant` its KV dtype): per_sequence
    (vLLM's sliding-window cache groups, TensorRT-LLM's per-layer SWA pages), its window entries and compressor states
    per window token (perf/kv_geometry.py compressed_kv_bytes); window_pool (SGLang's DeepSeek-V4 pools,
    DSV4PoolConfigurator): every layer's window entries and the CSA compressors' rings in an SWA pool of
    `pool_ratio` tokens per context token (perf/kv_geometry.py compressed_swa_token_bytes), the HCA compressors'
    rings apart, per request slot
    (slot_state_bytes), with `speculation` (specs/engine_kv.py window_pool_speculation: SGLang's speculative
    decoding) its rings' slots and the pool's bytes per full token x (layers + draft layers) / layers;
    block_pool (vLLM's pool shared by every cache group, perf/shared_block_pool.py) and window_pages (TensorRT-LLM's
    pages, perf/window_pages.py): the context only, in the engine's bytes per token (memory_fit), the windows in
    whole blocks or pages a constant per sequence (compressed_kv_pool, kv_state_pages)."""
    if layout not in WINDOW_KV_LAYOUTS:
        raise ValueError(f"window KV layout {layout!r} is not one of {WINDOW_KV_LAYOUTS}")
    if model.compressed is not None:
        if quant is None:
            raise ValueError("compressed attention's window terms need the KV dtype (quant)")
        per_token, per_window_token = compressed_kv_bytes(model, quant)
        if not per_token:  # sliding layers only (an MTP module's): every layer windowed
            return 0.0, 1.0, model.compressed.window, False
        if layout in ("block_pool", "window_pages"):
            return 1.0, 0.0, 0, False
        if layout == "window_pool":
            rings, draft_layers = speculation or (None, 0)
            full = ((1.0 + pool_ratio * compressed_swa_token_bytes(model, quant, rings) / per_token)
                    * (model.num_layers + draft_layers) / model.num_layers)
            return full, full / pool_ratio, model.compressed.window, True
        return 1.0, per_window_token / per_token, model.compressed.window, False
    if model.window_all_layers:
        return (1.0, 0.0, 0, False) if layout == "all_tokens" else (0.0, 1.0, model.window_all_layers, False)
    if model.window_layer_share:
        windowed = _windowed_per_full_layer(model, attention_tp)
        if layout == "all_tokens":
            return 1.0 + windowed, 0.0, 0, False
        if layout == "window_pool":
            full = 1.0 + pool_ratio * windowed
            return full, full / pool_ratio, model.sliding_window, True
        if layout == "layer_groups":
            full_slots, window_slots = vllm_layer_groups(model.full_kv_layers, model.window_kv_layers)
            full_layers = model.full_kv_layers
            return (full_slots / full_layers, window_slots / full_layers * window_kv_ratio(model, attention_tp),
                    model.sliding_window, False)
        return 1.0, windowed, model.sliding_window, False
    return 1.0, 0.0, 0, False


def vllm_group_size(full_layers: int, window_layers: int) -> int:
    """The layers of each of vLLM's KV cache groups for a stack of `full_layers` full-attention and `window_layers`
    sliding-window layers holding KV (v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size: the smaller
    count, or the larger where it is under 1.5x the smaller)."""
    size = min(full_layers, window_layers)
    return max(full_layers, window_layers) if max(full_layers, window_layers) < size * 1.5 else size


def vllm_layer_groups(full_layers: int, window_layers: int) -> tuple[int, int]:
    """(full, windowed) layer slots vLLM gives such a stack: each type in cdiv(layers, group size) groups of
    vllm_group_size layers, the last padded."""
    size = vllm_group_size(full_layers, window_layers)
    return -(-full_layers // size) * size, -(-window_layers // size) * size


def vllm_kv_cache_groups(model: ModelSpec) -> int:
    """The KV cache groups vLLM's hybrid KV cache manager splits `model`'s attention layers into (1 for a stack of
    one attention type)."""
    if not model.window_layer_share or model.window_all_layers:
        return 1
    full, window = model.full_kv_layers, model.window_kv_layers
    return sum(vllm_layer_groups(full, window)) // vllm_group_size(full, window)


def slot_state_bytes(model: ModelSpec, layout: str, slots: int = 1,
                     speculation: tuple[tuple[int, int], int] | None = None) -> float:
    """Bytes an engine holds for `slots` request slots beside the KV pool for `model` in window layout `layout`:
    SGLang's DeepSeek-V4 pools (window_pool) keep the HCA compressors' rings per slot of --max-running-requests
    (DSV4PoolConfigurator._get_c128_state_fixed_bytes: 16.25 MB for DeepSeek-V4-Pro's 31 HCA layers, 3.9 GiB at 256
    slots; twice that under speculative decoding, `speculation`'s 256-slot rings); elsewhere nothing (the rings are
    per running sequence: kv_window_terms)."""
    if model.compressed is None or layout != "window_pool":
        return 0.0
    return compressor_ring_bytes(model, speculation[0] if speculation else None)[1] * slots


def _windowed_per_full_layer(model: ModelSpec, attention_tp: int) -> float:
    """A hybrid stack's windowed layers holding KV per full layer holding KV (KV-shared layers hold none), each
    weighed by its KV per token on one GPU over a full layer's (1 unless the windowed layers have their own
    geometry)."""
    return model.window_kv_layers / model.full_kv_layers * window_kv_ratio(model, attention_tp)


def window_pool_tokens(capacity_tokens: int, terms: tuple[float, float, int, bool], pool_ratio: float
                       ) -> tuple[int, int]:
    """(full-pool, window-pool) tokens a window_pool layout (`terms`: its kv_window_terms) splits `capacity_tokens`
    full-layer tokens into: the memory over (1 + ratio x windowed per full layer) full-layer tokens each, the window
    pool `pool_ratio` of that (what SGLang logs as "Use sliding window memory pool. full_layer_tokens=...,
    swa_layer_tokens=...", and for DeepSeek-V4 as "DSV4 pool sizes: full=..., swa=...")."""
    full = int(capacity_tokens / terms[0])
    return full, int(full * pool_ratio)


def kv_stored_terms(model: ModelSpec, layout: str = "per_sequence", *, attention_tp: int,
                    quant: QuantScheme | None = None) -> tuple[float, float, int, bool]:
    """kv_window_terms of the bytes a sequence's KV holds (what a KV transfer moves), not of its share of the
    memory: a window pool's sequence holds its context on the full layers and its window on the windowed ones."""
    stored = "per_sequence" if layout in ("layer_groups", "window_pool", "block_pool", "window_pages") else layout
    return kv_window_terms(model, stored, attention_tp=attention_tp, quant=quant)


def kv_token_equivalents(tokens, terms: tuple[float, float, int, bool]):
    """Full-layer KV tokens one sequence of `tokens` context holds (a number, or a numpy array of contexts): the
    unit of kv_bytes_per_token, MemoryFit.kv_capacity_tokens and the simulator's KV blocks."""
    full, windowed, window, pooled = terms
    if not windowed:
        return tokens if full == 1.0 else full * tokens
    capped = np.minimum(tokens, window) if isinstance(tokens, np.ndarray) else min(tokens, window)
    if not full:
        return capped
    if pooled:
        return np.maximum(full * tokens, windowed * capped) if isinstance(tokens, np.ndarray) else max(
            full * tokens, windowed * capped)
    return (tokens if full == 1.0 else full * tokens) + windowed * capped


def kv_tokens_bound(tokens: float, seqs: int, terms: tuple[float, float, int, bool]) -> float:
    """An upper bound on the summed kv_token_equivalents of `seqs` sequences whose contexts sum to `tokens`. Per
    sequence: full x context + windowed x min(context, window), concave in the context, so the sum is at most
    full x tokens + windowed x min(tokens, seqs x window); a pooled sequence's max(full x context, windowed x
    min(context, window)) is at most full x context + (windowed - full) x min(context, window) (windowed > full),
    bounded likewise. Every layer windowed or none: the windows only lower `tokens`."""
    full, windowed, window, pooled = terms
    if not full:
        return tokens
    if not windowed:
        return full * tokens
    return full * tokens + (windowed - full if pooled else windowed) * min(tokens, seqs * window)


def kv_growth_per_token(terms: tuple[float, float, int, bool]) -> float:
    """Full-layer KV tokens one more context token adds to a sequence, at most (below its window)."""
    full, windowed, _, pooled = terms
    if not full:
        return 1.0
    return max(full, windowed) if pooled else full + windowed
