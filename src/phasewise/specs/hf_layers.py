"""Which layers of a config.json's stack attend over a window or a chunk, and which are MoE where a family has its
own rule (specs/hf_config.py's Llama-style parser reads the rest)."""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError

# Gemma 2 / 3: sliding-window layers in a fixed pattern when the config does not list layer_types: layer i is
# windowed unless (i + 1) is a multiple of the pattern (transformers Gemma2Config: every other layer;
# Gemma3TextConfig: sliding_window_pattern, default 6, i.e. five local layers to one global)
WINDOW_PATTERN_DEFAULT = {"gemma2": 2, "gemma3_text": 6}


def positive(value: Any, where: str, key: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise PhasewiseError(f"{where}: field {key} must be a positive integer (got {value!r})")
    return value


def is_int_list(value: Any) -> bool:
    """Whether `value` is a list of integers (booleans excluded), as a config's layer-index fields hold them."""
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def window_layers(cfg: dict[str, Any], where: str, mt: str, layers: int) -> tuple[int | None, int | None, bool]:
    """(window, windowed layers, chunked) of a Llama-style stack: layer_types where the config lists them (gpt-oss's
    alternating sliding and full layers), else a family's pattern (Gemma), Llama 4's chunked local attention in its
    RoPE layers (costed as a window of the chunk: ModelSpec.chunked_attention), or every layer windowed by a bare
    sliding_window (Mistral); windowed layers None when every layer is."""
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False:
        window = None
    layer_types = cfg.get("layer_types") or []
    chunked = mt == "llama4_text" and cfg.get("attention_chunk_size") is not None
    if chunked:
        window = positive(cfg["attention_chunk_size"], where, "attention_chunk_size")
        layer_types = [("sliding_attention" if kind == "chunked_attention" else kind) for kind in layer_types] or [
            "sliding_attention" if rope else "full_attention" for rope in llama4_rope_layers(cfg, where, layers)]
    elif window:
        window = positive(window, where, "sliding_window")
    windowed = None
    if layer_types:
        if len(layer_types) != layers:
            raise PhasewiseError(f"{where}: layer_types lists {len(layer_types)} layers, num_hidden_layers is {layers}")
        windowed = sum(kind == "sliding_attention" for kind in layer_types)
    elif window and mt in WINDOW_PATTERN_DEFAULT:
        pattern = next((cfg[k] for k in ("sliding_window_pattern", "_sliding_window_pattern") if cfg.get(k) is not None),
                       WINDOW_PATTERN_DEFAULT[mt])
        pattern = positive(pattern, where, "sliding_window_pattern")
        windowed = sum(1 for i in range(layers) if (i + 1) % pattern)
    if windowed == 0:
        return None, None, False  # every layer full: a sliding_window field alone does not apply
    return (window or None), (windowed if window else None), chunked


def llama4_rope_layers(cfg: dict[str, Any], where: str, layers: int) -> list[bool]:
    """Which Llama 4 layers use RoPE (and so chunked attention): no_rope_layers (1 = RoPE), else all but each
    no_rope_layer_interval-th (Llama4TextConfig's default)."""
    listed = cfg.get("no_rope_layers")
    if listed:
        if not isinstance(listed, list) or len(listed) != layers or any(rope not in (0, 1) for rope in listed):
            raise PhasewiseError(f"{where}: field no_rope_layers must list one 0 or 1 per layer ({layers})")
        return [bool(rope) for rope in listed]
    interval = positive(cfg.get("no_rope_layer_interval"), where, "no_rope_layer_interval")
    return [(i + 1) % interval != 0 for i in range(layers)]


def llama4_moe_layers(cfg: dict[str, Any], where: str, layers: int) -> int:
    """Llama 4's MoE layer count: moe_layers where listed, else every interleave_moe_layer_step-th layer."""
    listed = cfg.get("moe_layers")
    if listed is not None:
        if not isinstance(listed, list) or any(not isinstance(i, int) or not 0 <= i < layers for i in listed):
            raise PhasewiseError(f"{where}: field moe_layers must list layer indices in 0..{layers - 1}")
        return len(set(listed))
    step = positive(cfg.get("interleave_moe_layer_step"), where, "interleave_moe_layer_step")
    return len(range(step - 1, layers, step))


# Nemotron-H's block kinds: its hybrid_override_pattern characters, and the names layers_block_type lists
# (transformers models/nemotron_h/configuration_nemotron_h.py: "M" mamba, "*" attention, "-" mlp, "E" moe)
NEMOTRON_BLOCKS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def nemotron_blocks(cfg: dict[str, Any], where: str) -> dict[str, int]:
    """How many of each block kind a Nemotron-H stack has, from hybrid_override_pattern (one character a layer) or
    a layers_block_type list; an unknown kind, or a stack whose length is not num_hidden_layers, is an error."""
    pattern = cfg.get("hybrid_override_pattern")
    listed = cfg.get("layers_block_type")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise PhasewiseError(f"{where}: field hybrid_override_pattern must be a string of "
                                 f"{', '.join(NEMOTRON_BLOCKS)} (got {pattern!r})")
        field, kinds = "hybrid_override_pattern", [NEMOTRON_BLOCKS.get(ch, ch) for ch in pattern]
    elif isinstance(listed, list):
        field, kinds = "layers_block_type", [str(kind) for kind in listed]
    else:
        raise PhasewiseError(f"{where}: missing field hybrid_override_pattern or layers_block_type (Nemotron-H's "
                             "block of each layer)")
    unknown = sorted(set(kinds) - set(NEMOTRON_BLOCKS.values()))
    if unknown:
        raise PhasewiseError(f"{where}: field {field} has block kind '{unknown[0]}' (allowed: "
                             f"{', '.join(f'{ch} ({kind})' for ch, kind in NEMOTRON_BLOCKS.items())})")
    layers = cfg.get("num_hidden_layers")
    if layers is not None and layers != len(kinds):
        raise PhasewiseError(f"{where}: field {field} names {len(kinds)} blocks but num_hidden_layers is {layers}")
    return {kind: kinds.count(kind) for kind in NEMOTRON_BLOCKS.values()}
