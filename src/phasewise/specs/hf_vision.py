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

Mistral 3's (transformers models/pixtral PixtralVisionModel and models/mistral3 Mistral3MultiModalProjector; vLLM
pixtral.py and mistral3.py): a Conv2d patch embedding without bias (num_channels x patch_size^2 -> hidden_size), an
RMSNorm, `num_hidden_layers` blocks (two RMSNorms, q, k, v and o projections of num_attention_heads x head_dim
without bias, a gated SiLU MLP hidden -> intermediate -> hidden without bias), then the projector: an RMSNorm, the
patch merger (spatial_merge_size^2 x hidden -> hidden, no bias) and hidden -> text hidden -> text hidden
(multimodal_projector_bias sets their biases).

Gemma 3's SigLIP encoder (transformers models/siglip SiglipVisionModel, models/gemma3 Gemma3MultiModalProjector;
vLLM siglip.py, gemma3_mm.py): a Conv2d patch embedding with bias, a learned position per patch ((image_size /
patch_size)^2 x hidden_size), `num_hidden_layers` blocks (two LayerNorms, q, k, v and out projections with bias,
a GELU MLP hidden -> intermediate -> hidden with bias), a post-LayerNorm (no pooling head: vision_use_head false),
then the projector's RMSNorm and its hidden -> text hidden projection. Fields a file leaves out take
SiglipVisionConfig's defaults, as transformers does.

Llama 4's (transformers models/llama4 Llama4VisionModel, Llama4MultiModalProjector): an unfold-and-linear patch
embedding without bias, a class embedding and a learned position per patch plus one ((image_size / patch_size)^2 +
1), a LayerNorm before and after, `num_hidden_layers` blocks (two LayerNorms, q, k, v and o of hidden_size with
bias, a GELU MLP hidden -> intermediate -> hidden with bias), the pixel-shuffle adapter's two linears without bias
(intermediate_size -> projector_input_dim -> projector_output_dim) and the projector vision_output_dim -> text hidden
without bias.
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import positive

__all__ = ["llama4_encoder_params", "pixtral_encoder_params", "qwen3_vl_encoder_params", "siglip_encoder_params"]

# the vision_config fields the count reads; each must be a positive integer
_QWEN3_VL_FIELDS = ("depth", "hidden_size", "intermediate_size", "out_hidden_size", "patch_size",
                    "temporal_patch_size", "spatial_merge_size", "num_position_embeddings")


# transformers SiglipVisionConfig.__init__ defaults
_SIGLIP_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_channels": 3,
                    "image_size": 224, "patch_size": 16}
_LLAMA4_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "image_size", "patch_size",
                  "projector_input_dim", "projector_output_dim", "vision_output_dim")
_PIXTRAL_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "patch_size")


def _sizes(vision: Any, where: str, fields: tuple[str, ...], defaults: dict[str, int]) -> dict[str, int]:
    """`fields` (and `defaults`' fields where given, else their default) of a vision_config, each a positive integer."""
    if not isinstance(vision, dict):
        raise PhasewiseError(f"{where}: vision_config must be an object with {', '.join(fields)}")
    return {field: positive(vision.get(field, defaults.get(field)), where, f"vision_config.{field}")
            for field in fields + tuple(defaults)}


def _vit_block(hidden: int, inter: int) -> int:
    """One ViT block with biases throughout: two LayerNorms, the q, k, v and output projections, and an MLP hidden ->
    inter -> hidden (Qwen3-VL's fused qkv holds the same weights)."""
    return 4 * hidden + 4 * (hidden * hidden + hidden) + (hidden * inter + inter) + (inter * hidden + hidden)


def qwen3_vl_encoder_params(cfg: dict[str, Any], where: str, text_hidden: int) -> int:
    """Parameters of the Qwen3-VL vision encoder a config.json's vision_config describes (it names its own output
    width, out_hidden_size; `text_hidden` is not read)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _QWEN3_VL_FIELDS, {"in_channels": 3})
    channels = sizes["in_channels"]
    deepstack = vision.get("deepstack_visual_indexes") or []
    if not isinstance(deepstack, list):
        raise PhasewiseError(f"{where}: vision_config.deepstack_visual_indexes must be a list of layer indexes")
    hidden, inter, out = sizes["hidden_size"], sizes["intermediate_size"], sizes["out_hidden_size"]
    patch = channels * sizes["temporal_patch_size"] * sizes["patch_size"] ** 2 * hidden + hidden
    positions = sizes["num_position_embeddings"] * hidden
    merged = hidden * sizes["spatial_merge_size"] ** 2

    def merger(norm_width: int) -> int:
        return 2 * norm_width + (merged * merged + merged) + (merged * out + out)

    return patch + positions + sizes["depth"] * _vit_block(hidden, inter) + merger(hidden) \
        + len(deepstack) * merger(merged)


def pixtral_encoder_params(cfg: dict[str, Any], where: str, text_hidden: int) -> int:
    """Parameters of the Pixtral vision encoder and Mistral 3 projector a config.json describes (`text_hidden`: the
    language model's width)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _PIXTRAL_FIELDS, {"num_channels": 3})
    hidden, inter = sizes["hidden_size"], sizes["intermediate_size"]
    head_dim = vision.get("head_dim", hidden // sizes["num_attention_heads"])
    merge, text = cfg.get("spatial_merge_size", 2), text_hidden
    positive(head_dim, where, "vision_config.head_dim")
    positive(merge, where, "spatial_merge_size")
    width = sizes["num_attention_heads"] * head_dim
    patch = sizes["num_channels"] * sizes["patch_size"] ** 2 * hidden + hidden  # the conv and the RMSNorm after it
    block = 2 * hidden + 4 * hidden * width + 3 * hidden * inter
    bias = text if cfg.get("multimodal_projector_bias") else 0
    projector = hidden + merge ** 2 * hidden * hidden + (hidden * text + bias) + (text * text + bias)
    return patch + sizes["num_hidden_layers"] * block + projector


def siglip_encoder_params(cfg: dict[str, Any], where: str, text_hidden: int) -> int:
    """Parameters of the SigLIP encoder and Gemma 3 projector a config.json describes (`text_hidden`: the language
    model's width)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, (), _SIGLIP_DEFAULTS)
    if vision.get("vision_use_head"):
        raise PhasewiseError(f"{where}: vision_config.vision_use_head is not modelled (Gemma 3's encoder has none)")
    hidden, inter = sizes["hidden_size"], sizes["intermediate_size"]
    positions = (sizes["image_size"] // sizes["patch_size"]) ** 2
    patch = sizes["num_channels"] * sizes["patch_size"] ** 2 * hidden + hidden + positions * hidden
    projector = hidden + hidden * text_hidden
    return patch + sizes["num_hidden_layers"] * _vit_block(hidden, inter) + 2 * hidden + projector


def llama4_encoder_params(cfg: dict[str, Any], where: str, text_hidden: int) -> int:
    """Parameters of the Llama 4 vision encoder, adapter and projector a config.json describes (`text_hidden`: the
    language model's width)."""
    sizes = _sizes(cfg.get("vision_config"), where, _LLAMA4_FIELDS, {"num_channels": 3})
    hidden, inter = sizes["hidden_size"], sizes["intermediate_size"]
    positions = (sizes["image_size"] // sizes["patch_size"]) ** 2 + 1
    patch = sizes["num_channels"] * sizes["patch_size"] ** 2 * hidden + hidden + positions * hidden + 4 * hidden
    adapter = inter * sizes["projector_input_dim"] + sizes["projector_output_dim"] ** 2
    return patch + sizes["num_hidden_layers"] * _vit_block(hidden, inter) + adapter \
        + sizes["vision_output_dim"] * text_hidden
