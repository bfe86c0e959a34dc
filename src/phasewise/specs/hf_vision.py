"""A multimodal checkpoint's vision encoder (specs/vision.py VisionEncoder), from its config.json vision_config: the
parameters it holds and the shapes of its forward.

Serving engines load the encoder beside the language model, so its weights take GPU memory that the KV cache
would otherwise get; a text-only request never runs it, a request with images runs it over their patches
(perf/vision.py). Video inputs are not modelled.

Qwen3-VL's encoder (transformers models/qwen3_vl Qwen3VLVisionModel; vLLM and SGLang qwen3_vl.py): a Conv3d patch
embedding (in_channels x temporal_patch_size x patch_size^2 -> hidden_size, with bias), a learned position table
(num_position_embeddings x hidden_size), `depth` pre-norm blocks (two LayerNorms with bias, a fused qkv and an
output projection with bias, a GELU MLP hidden -> intermediate -> hidden with bias), a patch merger (a LayerNorm
over hidden_size, then spatial_merge_size^2 x hidden_size -> the same -> out_hidden_size, with bias) and one more
merger per deepstack_visual_indexes entry (its LayerNorm over the merged width).

Qwen2.5-VL's (transformers models/qwen2_5_vl Qwen2_5_VisionTransformerPretrainedModel; vLLM qwen2_5_vl.py): a Conv3d
patch embedding without bias, no position table (2-D rotary), `depth` blocks (two RMSNorms, a fused qkv and an
output projection with bias, a gated SiLU MLP hidden -> intermediate -> hidden with bias), attention within windows
of window_size pixels (112: 8 x 8 patches of 14) but in the fullatt_block_indexes blocks, which attend over the
whole image, and the patch merger (an RMSNorm over hidden_size, then spatial_merge_size^2 x hidden_size -> the same
-> out_hidden_size, with bias). Qwen2-VL's (models/qwen2_vl Qwen2VisionTransformerPretrainedModel): the same
embedding, `depth` blocks of width embed_dim (two LayerNorms, qkv and output with bias, a GELU MLP embed_dim ->
embed_dim x mlp_ratio -> embed_dim with bias), full attention in every block, a merger with a LayerNorm whose output
is vision_config.hidden_size (the language model's width).

InternVL's InternViT (OpenGVLab modeling_intern_vit.py, vLLM intern_vit.py, transformers models/internvl): a Conv2d
patch embedding with bias, a class token and a learned position per patch plus one ((image_size / patch_size)^2 +
1), `num_hidden_layers` blocks (two RMSNorms or LayerNorms, a fused qkv (bias: qkv_bias / attention_bias), RMSNorms
over the whole q and k with qk_normalization / use_qk_norm, the output projection with bias, two layer scales, a
GELU MLP hidden -> intermediate -> hidden with bias), the serving engines building only as many as select_layer /
vision_feature_layer reads (all at -1); then the projector (mlp1): the class token dropped, a pixel shuffle by
downsample_ratio (0.5: 2 x 2 patches a token), a LayerNorm over 4 x hidden, 4 x hidden -> text hidden -> text hidden
with bias. Two formats: the checkpoints' own (model_type internvl_chat: llm_config, InternVisionConfig's names,
its tiling fields dynamic_image_size, min_dynamic_patch, max_dynamic_patch, use_thumbnail) and transformers' (-hf:
internvl, text_config, attention_bias / use_qk_norm, its processor's tiling: 1..12 tiles and a thumbnail).

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
without bias; each 336-pixel tile (and the global view) its own attention sequence of 577 positions, 144 tokens after
the shuffle (pixel_shuffle_ratio 0.5).
"""

from __future__ import annotations

from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import is_int_list, positive
from phasewise.specs.vision import VisionEncoder

__all__ = ["internvl_encoder", "llama4_encoder", "pixtral_encoder", "qwen2_5_vl_encoder", "qwen2_vl_encoder",
           "qwen3_vl_encoder", "siglip_encoder"]

# the vision_config fields the count reads; each must be a positive integer
_QWEN3_VL_FIELDS = ("depth", "hidden_size", "intermediate_size", "out_hidden_size", "patch_size",
                    "temporal_patch_size", "spatial_merge_size", "num_position_embeddings")


# transformers SiglipVisionConfig.__init__ defaults
_SIGLIP_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_channels": 3,
                    "image_size": 224, "patch_size": 16, "num_attention_heads": 12}
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


def _qwen_merger(hidden: int, merge: int, out: int, norm_params: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(parameters, GEMMs) of a Qwen-VL patch merger (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and its deepstack mergers): its
    norm (`norm_params`), then merge x hidden -> the same -> out, with bias."""
    merged = hidden * merge
    return norm_params + (merged * merged + merged) + (merged * out + out), ((merged, merged), (merged, out))


def qwen3_vl_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The Qwen3-VL vision encoder a config.json's vision_config describes (it names its own output width,
    out_hidden_size; `text_hidden` is not read)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _QWEN3_VL_FIELDS, {"in_channels": 3, "num_heads": 16})
    deepstack = vision.get("deepstack_visual_indexes") or []
    if not isinstance(deepstack, list):
        raise PhasewiseError(f"{where}: vision_config.deepstack_visual_indexes must be a list of layer indexes")
    hidden, inter, out = sizes["hidden_size"], sizes["intermediate_size"], sizes["out_hidden_size"]
    patch_inputs = sizes["in_channels"] * sizes["temporal_patch_size"] * sizes["patch_size"] ** 2
    positions = sizes["num_position_embeddings"] * hidden
    merge = sizes["spatial_merge_size"] ** 2
    mergers = 1 + len(deepstack)  # the merger and one per deepstack level, each over every merged token
    # the merger's LayerNorm over hidden_size, each deepstack merger's over the merged width
    merger, merger_gemms = _qwen_merger(hidden, merge, out, 2 * hidden)
    deep = _qwen_merger(hidden, merge, out, 2 * hidden * merge)[0]
    params = patch_inputs * hidden + hidden + positions + sizes["depth"] * _vit_block(hidden, inter) \
        + merger + len(deepstack) * deep
    heads = sizes["num_heads"]
    return VisionEncoder(family="qwen3_vl", params=params, depth=sizes["depth"], hidden_size=hidden,
                         intermediate_size=inter, num_heads=heads,
                         head_dim=_head_dim(hidden, heads, where, "num_heads"), patch_inputs=patch_inputs,
                         block_gemms=_vit_gemms(hidden, hidden, inter, gated=False),
                         head_gemms=merger_gemms * mergers, patch_size=sizes["patch_size"],
                         merge=merge, embedding_width=out * mergers)


# Qwen2.5-VL's and Qwen2-VL's vision_config fields the count reads (in_chans: the checkpoints' name for the channels)
_QWEN2_5_VL_FIELDS = ("depth", "hidden_size", "intermediate_size", "out_hidden_size", "num_heads", "patch_size",
                      "temporal_patch_size", "spatial_merge_size", "window_size")
_QWEN2_VL_FIELDS = ("depth", "embed_dim", "hidden_size", "num_heads", "patch_size", "temporal_patch_size",
                    "spatial_merge_size")


def _in_channels(vision: dict[str, Any], where: str) -> int:
    return positive(vision.get("in_chans", vision.get("in_channels", 3)), where, "vision_config.in_chans")


def qwen2_5_vl_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The Qwen2.5-VL vision encoder a config.json's vision_config describes (it names its own output width,
    out_hidden_size; `text_hidden` is not read)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _QWEN2_5_VL_FIELDS, {})
    hidden, inter, depth = sizes["hidden_size"], sizes["intermediate_size"], sizes["depth"]
    full = vision.get("fullatt_block_indexes") or []
    if not is_int_list(full) or any(not 0 <= index < depth for index in full):
        raise PhasewiseError(f"{where}: vision_config.fullatt_block_indexes must list block indexes in 0..{depth - 1}")
    if sizes["window_size"] % (sizes["patch_size"] * sizes["spatial_merge_size"]):
        raise PhasewiseError(f"{where}: vision_config.window_size ({sizes['window_size']}) must be a multiple of "
                             f"patch_size x spatial_merge_size ({sizes['patch_size'] * sizes['spatial_merge_size']})")
    patch_inputs = _in_channels(vision, where) * sizes["temporal_patch_size"] * sizes["patch_size"] ** 2
    merge = sizes["spatial_merge_size"] ** 2
    block = 2 * hidden + 4 * (hidden * hidden + hidden) + 2 * (hidden * inter + inter) + (inter * hidden + hidden)
    merger, head_gemms = _qwen_merger(hidden, merge, sizes["out_hidden_size"], hidden)
    heads = sizes["num_heads"]
    return VisionEncoder(family="qwen2_5_vl", params=patch_inputs * hidden + depth * block + merger, depth=depth,
                         hidden_size=hidden, intermediate_size=inter, num_heads=heads,
                         head_dim=_head_dim(hidden, heads, where, "num_heads"), patch_inputs=patch_inputs,
                         block_gemms=_vit_gemms(hidden, hidden, inter, gated=True), head_gemms=head_gemms,
                         patch_size=sizes["patch_size"], merge=merge, embedding_width=sizes["out_hidden_size"],
                         window_patches=(sizes["window_size"] // sizes["patch_size"]) ** 2,
                         full_attention_blocks=len(set(full)))


def qwen2_vl_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The Qwen2-VL vision encoder a config.json's vision_config describes: embed_dim wide, its merger's output
    hidden_size (`text_hidden` is not read)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _QWEN2_VL_FIELDS, {})
    embed, depth, out = sizes["embed_dim"], sizes["depth"], sizes["hidden_size"]
    ratio = vision.get("mlp_ratio", 4)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 64:
        raise PhasewiseError(f"{where}: vision_config.mlp_ratio must be a number in (0, 64] (got {ratio!r})")
    inter = int(embed * ratio)
    patch_inputs = _in_channels(vision, where) * sizes["temporal_patch_size"] * sizes["patch_size"] ** 2
    merge = sizes["spatial_merge_size"] ** 2
    merger, head_gemms = _qwen_merger(embed, merge, out, 2 * embed)
    heads = sizes["num_heads"]
    return VisionEncoder(family="qwen2_vl", params=patch_inputs * embed + depth * _vit_block(embed, inter) + merger,
                         depth=depth, hidden_size=embed, intermediate_size=inter, num_heads=heads,
                         head_dim=_head_dim(embed, heads, where, "num_heads"), patch_inputs=patch_inputs,
                         block_gemms=_vit_gemms(embed, embed, inter, gated=False), head_gemms=head_gemms,
                         patch_size=sizes["patch_size"], merge=merge, embedding_width=out)


_INTERNVL_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
# the two formats' names and defaults (OpenGVLab InternVisionConfig / transformers InternVLVisionConfig)
_INTERNVL_NAMES = {"internvl_chat": dict(bias="qkv_bias", qk_norm="qk_normalization", qk_norm_default=True,
                                         norm_default="rms_norm", layer="select_layer"),
                   "internvl": dict(bias="attention_bias", qk_norm="use_qk_norm", qk_norm_default=False,
                                    norm_default="layer_norm", layer="vision_feature_layer")}


def _pixel_shuffle(ratio: Any, patches: int, where: str, field: str) -> int:
    """Patches a prompt token after a pixel shuffle by `ratio` (1 / n: n^2), which must divide a tile's `patches`
    (InternVL's downsample_ratio, Llama 4's pixel_shuffle_ratio)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1 \
            or not float(1 / ratio).is_integer() or patches % round(1 / ratio) ** 2:
        raise PhasewiseError(f"{where}: {field} must be 1 / n for a whole n, n^2 dividing the tile's {patches} "
                             f"patches (got {ratio!r})")
    return round(1 / ratio) ** 2


def _square(value: Any, where: str, field: str) -> int:
    """A size a config gives as one integer or as [height, width] (transformers' -hf files): one side."""
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    return positive(value, where, field)


def internvl_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The InternViT encoder and InternVL projector a config.json describes (`text_hidden`: the language model's
    width), in either format (its model_type: internvl_chat or internvl)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _INTERNVL_FIELDS, {})
    names = _INTERNVL_NAMES[str(cfg.get("model_type")).lower()]
    if vision.get("use_moe"):
        raise PhasewiseError(f"{where}: vision_config.use_moe (a mixture-of-experts InternViT) is not modelled")
    hidden, inter, heads = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_attention_heads"]
    patch = _square(vision.get("patch_size", 14), where, "vision_config.patch_size")
    image = _square(cfg.get("force_image_size") or vision.get("image_size", 448), where, "vision_config.image_size")
    if image % patch:
        raise PhasewiseError(f"{where}: vision_config.image_size ({image}) must be a multiple of its patch_size "
                             f"({patch})")
    layer = cfg.get(names["layer"], -1)
    layers = sizes["num_hidden_layers"]
    if not isinstance(layer, int) or isinstance(layer, bool) or not -layers <= layer < layers:
        raise PhasewiseError(f"{where}: field {names['layer']} must be a layer index in -{layers}..{layers - 1} "
                             f"(got {layer!r})")
    depth = layers + layer + 1 if layer < 0 else layer + 1  # the layers vLLM builds: up to the one read
    grid = (image // patch) ** 2
    shuffle = _pixel_shuffle(cfg.get("downsample_ratio", 0.5), grid, where, "field downsample_ratio")
    norm = vision.get("norm_type", names["norm_default"])
    if norm not in ("rms_norm", "layer_norm"):
        raise PhasewiseError(f"{where}: vision_config.norm_type must be rms_norm or layer_norm (got {norm!r})")
    norm_params = hidden if norm == "rms_norm" else 2 * hidden
    qk_norm = bool(vision.get(names["qk_norm"], names["qk_norm_default"]))
    attention = 4 * hidden * hidden + (3 * hidden if vision.get(names["bias"], False) else 0) + hidden
    block = 2 * norm_params + attention + (2 * hidden if qk_norm else 0) + 2 * hidden \
        + (hidden * inter + inter) + (inter * hidden + hidden)
    embeddings = 3 * patch * patch * hidden + hidden + hidden + (grid + 1) * hidden
    wide = shuffle * hidden
    projector = 2 * wide + (wide * text_hidden + text_hidden) + (text_hidden * text_hidden + text_hidden)
    if cfg.get("model_type") == "internvl_chat":
        dynamic = cfg.get("dynamic_image_size", False)
        low, high = cfg.get("min_dynamic_patch", 1), cfg.get("max_dynamic_patch", 6)
        thumbnail = bool(cfg.get("use_thumbnail", False))
        if not dynamic:
            low = high = 1
    else:  # transformers' GotOcr2 processor as the -hf checkpoints ship it: 1..12 tiles and a thumbnail
        low, high, thumbnail = 1, 12, True
    low = positive(low, where, "min_dynamic_patch")
    high = positive(high, where, "max_dynamic_patch")
    if low > high or high > 64:
        raise PhasewiseError(f"{where}: fields min_dynamic_patch ({low}) .. max_dynamic_patch ({high}) must be a "
                             f"range within 1..64 tiles")
    return VisionEncoder(family="internvl", params=embeddings + depth * block + projector, depth=depth,
                         hidden_size=hidden, intermediate_size=inter, num_heads=heads,
                         head_dim=_head_dim(hidden, heads, where, "num_attention_heads"),
                         patch_inputs=3 * patch * patch, block_gemms=_vit_gemms(hidden, hidden, inter, gated=False),
                         head_gemms=((wide, text_hidden), (text_hidden, text_hidden)), patch_size=patch,
                         merge=shuffle, image_size=image, tokens_per_image=grid // shuffle,
                         embedding_width=text_hidden, tile_positions=grid + 1, min_tiles=low, max_tiles=high,
                         thumbnail=thumbnail, attention_params=depth * attention)


def pixtral_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The Pixtral vision encoder and Mistral 3 projector a config.json describes (`text_hidden`: the language
    model's width)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _PIXTRAL_FIELDS, {"num_channels": 3, "image_size": 1024})
    hidden, inter, heads = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_attention_heads"]
    head_dim = vision.get("head_dim", hidden // heads)
    merge, text = cfg.get("spatial_merge_size", 2), text_hidden
    positive(head_dim, where, "vision_config.head_dim")
    positive(merge, where, "spatial_merge_size")
    width = heads * head_dim
    patch_inputs = sizes["num_channels"] * sizes["patch_size"] ** 2
    patch = patch_inputs * hidden + hidden  # the conv and the RMSNorm after it
    block = 2 * hidden + 4 * hidden * width + 3 * hidden * inter
    bias = text if cfg.get("multimodal_projector_bias") else 0
    head_gemms = ((merge ** 2 * hidden, hidden), (hidden, text), (text, text))  # the patch merger, the projector
    projector = hidden + sum(k * n for k, n in head_gemms) + 2 * bias
    return VisionEncoder(family="pixtral", params=patch + sizes["num_hidden_layers"] * block + projector,
                         depth=sizes["num_hidden_layers"], hidden_size=hidden, intermediate_size=inter, num_heads=heads,
                         head_dim=head_dim,
                         patch_inputs=patch_inputs, block_gemms=_vit_gemms(hidden, width, inter, gated=True),
                         head_gemms=head_gemms, patch_size=sizes["patch_size"], merge=merge ** 2,
                         image_size=sizes["image_size"], embedding_width=text)


def siglip_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The SigLIP encoder and Gemma 3 projector a config.json describes (`text_hidden`: the language model's
    width)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, (), _SIGLIP_DEFAULTS)
    if vision.get("vision_use_head"):
        raise PhasewiseError(f"{where}: vision_config.vision_use_head is not modelled (Gemma 3's encoder has none)")
    hidden, inter, heads = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_attention_heads"]
    patches = (sizes["image_size"] // sizes["patch_size"]) ** 2
    tokens = positive(cfg.get("mm_tokens_per_image", 256), where, "mm_tokens_per_image")
    patch_inputs = sizes["num_channels"] * sizes["patch_size"] ** 2
    patch = patch_inputs * hidden + hidden + patches * hidden
    projector = hidden + hidden * text_hidden
    return VisionEncoder(family="siglip", params=patch + sizes["num_hidden_layers"] * _vit_block(hidden, inter)
                         + 2 * hidden + projector, depth=sizes["num_hidden_layers"], hidden_size=hidden,
                         intermediate_size=inter,
                         num_heads=heads, head_dim=_head_dim(hidden, heads, where, "num_attention_heads"),
                         patch_inputs=patch_inputs, block_gemms=_vit_gemms(hidden, hidden, inter, gated=False),
                         head_gemms=((hidden, text_hidden),), patch_size=sizes["patch_size"],
                         merge=max(1, patches // tokens),
                         image_size=sizes["image_size"], tokens_per_image=tokens, embedding_width=text_hidden)


# Gemma4VisionConfig's defaults (transformers 5.25 models/gemma4/configuration_gemma4.py)
_GEMMA4_VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 16,
                           "num_attention_heads": 12, "num_key_value_heads": 12, "head_dim": 64, "patch_size": 16,
                           "pooling_kernel_size": 3, "position_embedding_size": 10240}


def gemma4_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """Gemma 4's vision encoder and embedder a config.json describes (`text_hidden`: the language model's width):
    its patch embedder (a bias-free projection of 3 x 16 x 16 pixels and two learned position tables of
    position_embedding_size), ViT blocks of Gemma's shape (q, k, v and o without bias, q / k norms, four RMSNorms, a
    gated MLP), a 3 x 3 average pool and the embedder's projection to the language model's width
    (Gemma4VisionModel, Gemma4MultimodalEmbedder); vision_soft_tokens_per_image (280) caps an image's tokens."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, (), _GEMMA4_VISION_DEFAULTS)
    hidden, inter, heads = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_attention_heads"]
    kv_heads, head_dim, patch = sizes["num_key_value_heads"], sizes["head_dim"], sizes["patch_size"]
    if heads % kv_heads:
        raise PhasewiseError(f"{where}: vision_config.num_attention_heads ({heads}) must be a multiple of "
                             f"vision_config.num_key_value_heads ({kv_heads})")
    tokens = positive(cfg.get("vision_soft_tokens_per_image", 280), where, "vision_soft_tokens_per_image")
    q, kv = heads * head_dim, kv_heads * head_dim
    block = hidden * (q + 2 * kv) + q * hidden + 2 * head_dim + 4 * hidden + 3 * hidden * inter
    patch_inputs = 3 * patch * patch
    embedder = patch_inputs * hidden + 2 * sizes["position_embedding_size"] * hidden
    return VisionEncoder(family="gemma4", params=embedder + sizes["num_hidden_layers"] * block + hidden * text_hidden,
                         depth=sizes["num_hidden_layers"], hidden_size=hidden, intermediate_size=inter,
                         num_heads=heads, head_dim=head_dim, patch_inputs=patch_inputs,
                         block_gemms=((hidden, q + 2 * kv), (q, hidden), (hidden, inter), (hidden, inter),
                                      (inter, hidden)),
                         head_gemms=((hidden, text_hidden),), patch_size=patch,
                         merge=sizes["pooling_kernel_size"] ** 2, tokens_per_image=tokens,
                         embedding_width=text_hidden)


def llama4_encoder(cfg: dict[str, Any], where: str, text_hidden: int) -> VisionEncoder:
    """The Llama 4 vision encoder, adapter and projector a config.json describes (`text_hidden`: the language
    model's width)."""
    vision = cfg.get("vision_config")
    sizes = _sizes(vision, where, _LLAMA4_FIELDS, {"num_channels": 3, "num_attention_heads": 16})
    hidden, inter, heads = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_attention_heads"]
    positions = (sizes["image_size"] // sizes["patch_size"]) ** 2 + 1
    patch_inputs = sizes["num_channels"] * sizes["patch_size"] ** 2
    patch = patch_inputs * hidden + hidden + positions * hidden + 4 * hidden
    # the pixel-shuffle adapter's two linears (intermediate_size -> projector_input_dim -> projector_output_dim),
    # then the projector vision_output_dim -> text hidden
    head_gemms = ((inter, sizes["projector_input_dim"]), (sizes["projector_output_dim"], sizes["projector_output_dim"]),
                  (sizes["vision_output_dim"], text_hidden))
    adapter = inter * sizes["projector_input_dim"] + sizes["projector_output_dim"] ** 2
    params = patch + sizes["num_hidden_layers"] * _vit_block(hidden, inter) + adapter \
        + sizes["vision_output_dim"] * text_hidden
    shuffle = _pixel_shuffle(vision.get("pixel_shuffle_ratio", 0.5), positions - 1, where,
                             "vision_config.pixel_shuffle_ratio")
    # Llama4ImageProcessor's tiling (its defaults, not in config.json): up to 16 tiles of image_size, a global view
    return VisionEncoder(family="llama4", params=params, depth=sizes["num_hidden_layers"], hidden_size=hidden,
                         intermediate_size=inter,
                         num_heads=heads, head_dim=_head_dim(hidden, heads, where, "num_attention_heads"),
                         patch_inputs=patch_inputs, block_gemms=_vit_gemms(hidden, hidden, inter, gated=False),
                         head_gemms=head_gemms, patch_size=sizes["patch_size"], merge=shuffle,
                         image_size=sizes["image_size"], embedding_width=text_hidden, tile_positions=positions,
                         tokens_per_image=(positions - 1) // shuffle, min_tiles=1, max_tiles=16, thumbnail=True)


def _head_dim(hidden: int, heads: int, where: str, field: str) -> int:
    if hidden % heads:
        raise PhasewiseError(f"{where}: vision_config.hidden_size ({hidden}) must be a multiple of "
                             f"vision_config.{field} ({heads})")
    return hidden // heads


def _vit_gemms(hidden: int, width: int, inter: int, gated: bool) -> tuple[tuple[int, int], ...]:
    """(k, n) of a ViT block's projections per patch: q, k and v to `width` (the heads' total), the output back, the
    MLP (gated: gate and up, then down)."""
    mlp = ((hidden, inter), (hidden, inter), (inter, hidden)) if gated else ((hidden, inter), (inter, hidden))
    return ((hidden, 3 * width), (width, hidden)) + mlp
