"""A multimodal checkpoint's vision encoder, from its config.json vision_config: the parameters it holds.

Serving engines load the encoder beside the language model, so its weights take GPU memory that the KV cache
would otherwise get; a text-only request never runs it. Image and video inputs (the encoder's forward, the vision
tokens it adds to a prompt) are not modelled.

Qwen3-VL's encoder (transformers models/qwen3_vl Qwen3VLVisionModel; vLLM and SGLang qwen3_vl.py): a Conv3d patch
embedding (in_channels x temporal_patch_size x patch_size^2 -> hidden_size, with bias), a learned position table
(num_position_embeddings x hidden_size), `depth` pre-norm blocks (two LayerNorms with bias, a fused qkv and an
output projection with bias, a GELU MLP hidden -> intermediate -> hidden with bias), a patch merger (a LayerNorm
over hidden_size, then spatial_merge_size^2 x hidden_size -> the same -> out_hidden_size, with bias) and one more
merger per deepstack_visual_indexes entry (its LayerNorm over the merged width).
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError

__all__ = ["qwen3_vl_encoder_params"]

# the vision_config fields the count reads; each must be a positive integer
_QWEN3_VL_FIELDS = ("depth", "hidden_size", "intermediate_size", "out_hidden_size", "patch_size",
                    "temporal_patch_size", "spatial_merge_size", "num_position_embeddings")


def qwen3_vl_encoder_params(vision: Any, where: str) -> int:
    """Parameters of a Qwen3-VL vision encoder described by `vision` (a config.json's vision_config)."""
    if not isinstance(vision, dict):
        raise PhasewiseError(f"{where}: vision_config must be an object with {', '.join(_QWEN3_VL_FIELDS)}")
    sizes = {}
    for field in _QWEN3_VL_FIELDS:
        value = vision.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise PhasewiseError(f"{where}: vision_config.{field} must be a positive integer (got {value!r})")
        sizes[field] = value
    channels = vision.get("in_channels", 3)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise PhasewiseError(f"{where}: vision_config.in_channels must be a positive integer (got {channels!r})")
    deepstack = vision.get("deepstack_visual_indexes") or []
    if not isinstance(deepstack, list):
        raise PhasewiseError(f"{where}: vision_config.deepstack_visual_indexes must be a list of layer indexes")
    hidden, inter, out = sizes["hidden_size"], sizes["intermediate_size"], sizes["out_hidden_size"]
    patch = channels * sizes["temporal_patch_size"] * sizes["patch_size"] ** 2 * hidden + hidden
    positions = sizes["num_position_embeddings"] * hidden
    block = 4 * hidden + (3 * hidden * hidden + 3 * hidden) + (hidden * hidden + hidden) \
        + (hidden * inter + inter) + (inter * hidden + hidden)
    merged = hidden * sizes["spatial_merge_size"] ** 2

    def merger(norm_width: int) -> int:
        return 2 * norm_width + (merged * merged + merged) + (merged * out + out)

    return patch + positions + sizes["depth"] * block + merger(hidden) + len(deepstack) * merger(merged)
