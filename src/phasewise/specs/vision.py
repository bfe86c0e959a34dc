"""A multimodal checkpoint's vision encoder as its forward runs (VisionEncoder), and how its image processor turns an
image of W x H pixels into encoder patches and prompt tokens (image_geometry).

The encoder embeds an image's patches, runs `depth` ViT blocks over them (bidirectional attention within the image),
then merges neighbouring patches into the tokens the language model reads (a 2 x 2 merge, or Gemma 3's 4 x 4
average pool) through its merger / projector GEMMs. specs/hf_vision.py builds one from a config.json's
vision_config; perf/vision.py costs its forward.

Image processors, as the checkpoints ship them:
- Qwen3-VL, Qwen3.5 / 3.6 (transformers Qwen2VLImageProcessor's smart_resize, with the preprocessor_config.json
  these checkpoints ship: patch 16, merge 2, shortest_edge 65,536 and longest_edge 16,777,216 pixels): each side
  rounded to a multiple of patch x merge (32), the area scaled into [65,536, 16,777,216] pixels keeping the aspect
  ratio (at most 200:1); (H / 16) x (W / 16) patches (a still image is one temporal patch of two copies), a quarter
  of them as prompt tokens between a vision-start and a vision-end token.
- Qwen2-VL and Qwen2.5-VL (the same smart_resize with the preprocessor_config.json these checkpoints ship: patch 14,
  merge 2, min_pixels 3,136 and max_pixels 12,845,056): each side a multiple of 28, (H / 14) x (W / 14) patches, a
  quarter of them as prompt tokens between a vision-start and a vision-end token.
- Mistral 3 (Pixtral; transformers PixtralImageProcessor, vLLM mistral3.py): the image scaled down so that its
  longer side is at most vision_config.image_size (1,540), each side rounded up to a multiple of patch x
  spatial_merge_size (28); (H / 14) x (W / 14) patches; the language model reads the (H / 28) x (W / 28) merged
  ones plus one [IMG_BREAK] / [IMG_END] token per row.
- Gemma 3 (SigLIP; Gemma3ImageProcessor without pan-and-scan, its default): every image resized to image_size
  (896) square, (896 / 14)^2 = 4,096 patches, average-pooled to mm_tokens_per_image (256) prompt tokens between a
  begin- and an end-of-image token.
- InternVL (OpenGVLab's dynamic_preprocess, vLLM's and SGLang's InternVL processors, transformers' GotOcr2 crop to
  patches): the grid of i x j tiles (min_dynamic_patch <= i x j <= max_dynamic_patch, 1..12 in the checkpoints)
  whose aspect ratio is closest to the image's (on a tie the larger grid when the image covers more than half of
  it), the image resized to 448 i x 448 j and cut into its tiles, plus a 448 x 448 thumbnail of the whole when there
  is more than one; each tile 32 x 32 patches of 14 and a class token (1,025 encoder positions, one attention
  sequence), pixel-shuffled to 256 prompt tokens, between an <img> and an </img> token.
- Gemma 4 (transformers Gemma4ImageProcessor, variable resolution): the image scaled up or down, its aspect ratio
  kept, to at most max_soft_tokens x 9 patches of 16 (vision_soft_tokens_per_image, 280 by default: 2,520), each
  side a multiple of 48 pixels; the encoder runs over every patch, a 3 x 3 average pool makes a prompt token of
  each nine, between a begin- and an end-of-image token.
- Llama 4 (transformers Llama4ImageProcessor, vLLM mllama4.py; max_patches 16): of the canvases of c x r tiles of
  336 pixels (c x r <= 16), the one needing the least upscaling of the image (its scale min(336 c / W, 336 r / H)
  the smallest at or above 1), else the least downscaling, the smallest on a tie; the image resized into it keeping
  its aspect ratio, padded, cut into its tiles, and a global view of the whole squashed to 336 x 336 beside a canvas
  of more than one; each tile 24 x 24 patches of 14 and a class token (577 encoder positions, one attention
  sequence), pixel-shuffled to 144 prompt tokens; the prompt holds <|image_start|>, each row's tiles with an x
  separator between them and a y separator after the row, <|image|>, the global view's tokens and <|image_end|>.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from phasewise.errors import PhasewiseError

# Qwen3-VL's and Qwen3.5's preprocessor_config.json (Qwen2VLImageProcessorFast): "size": {"shortest_edge": 65536,
# "longest_edge": 16777216}, i.e. 256 x 256 to 4096 x 4096 pixels of area; smart_resize refuses aspect ratios beyond
QWEN_MIN_PIXELS, QWEN_MAX_PIXELS, QWEN_MAX_ASPECT = 65_536, 16_777_216, 200
# Qwen2-VL's and Qwen2.5-VL's preprocessor_config.json (Qwen2VLImageProcessor): "min_pixels": 3136, "max_pixels":
# 12845056 (56 x 56 to 16,384 x 28 x 28 pixels of area)
QWEN2_VL_PIXELS = (3_136, 12_845_056)
# The largest image a user may describe (a side in pixels): far beyond any processor's resize, it only bounds input
MAX_IMAGE_SIDE_PX = 100_000


@dataclass(slots=True, frozen=True)
class ImageGeometry:
    """One image as the encoder and the language model see it."""

    patches: int  # encoder positions (patches of the resized image)
    prompt_tokens: int  # tokens the image adds to the prompt (merged patches and the image's own marker tokens)
    resized_px: tuple[int, int]  # width, height after the processor's resize


class VisionEncoder(BaseModel):
    """The shapes of a ViT encoder's forward (per patch and per merged token) and its image processor's sizes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: Literal["qwen3_vl", "qwen2_vl", "qwen2_5_vl", "pixtral", "siglip", "llama4", "internvl", "gemma4"]
    params: int = Field(ge=0)  # weights held (specs/hf_vision.py counts them)
    depth: int = Field(gt=0)  # ViT blocks
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)  # the MLP's width
    num_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    patch_inputs: int = Field(gt=0)  # elements of one patch (channels x temporal patch x patch^2): the embedding's k
    # (k, n) of every projection a block runs per patch: q, k, v (fused or not), the output, the MLP's
    block_gemms: tuple[tuple[int, int], ...]
    # (k, n) of the merger / projector projections, per token the language model reads
    head_gemms: tuple[tuple[int, int], ...]
    patch_size: int = Field(gt=0)
    merge: int = Field(gt=0)  # patches per prompt token (2 x 2 merge: 4)
    image_size: int = Field(default=0, ge=0)  # Pixtral: the longer side's limit; SigLIP: the fixed square side
    # SigLIP: mm_tokens_per_image after the pool; Gemma 4: the most an image may take (its soft-token budget)
    tokens_per_image: int = Field(default=0, ge=0)
    # elements of one prompt token's embedding as the encoder hands it to the language model (what a disaggregated
    # encoder sends): the language model's width, or Qwen3-VL's out_hidden_size x (1 + its deepstack levels)
    embedding_width: int = Field(gt=0)
    # windowed blocks (Qwen2.5-VL): each attends within windows of this many patches (its 112-pixel windows: 8 x 8
    # patches of 14), but the full_attention_blocks that attend over the whole image; 0: every block attends over it
    window_patches: int = Field(default=0, ge=0)
    full_attention_blocks: int = Field(default=0, ge=0)
    # InternVL and Llama 4: an image is tiles of image_size^2 pixels, each its own attention sequence of
    # tile_positions encoder positions (its patches and a class token) and tokens_per_image prompt tokens;
    # min_tiles..max_tiles tiles a grid, a thumbnail (global view) tile beside a grid of more than one
    tile_positions: int = Field(default=0, ge=0)
    min_tiles: int = Field(default=1, ge=1)
    max_tiles: int = Field(default=0, ge=0)
    thumbnail: bool = False
    # the blocks' q, k, v and output weights: vLLM's InternViT holds them whole on every GPU, and runs every head
    # there, when its heads do not divide over the attention TP ranks (InternViT-6B's 25; intern_vit.py falls back
    # from InternParallelAttention to InternSdpaAttention), its MLPs still split (0: not an InternViT)
    attention_params: int = Field(default=0, ge=0)

    def attention_replicated(self, tp: int) -> bool:
        """Whether the attention runs whole on each of `tp` GPUs (vLLM's InternViT rule above)."""
        return self.attention_params > 0 and self.num_heads % tp != 0

    def params_per_gpu(self, tp: int) -> float:
        """The weights one of `tp` attention TP ranks holds: split, but the attention's where it runs whole."""
        if self.attention_replicated(tp):
            return (self.params - self.attention_params) / tp + self.attention_params
        return self.params / tp

    def image_geometry(self, width_px: int, height_px: int) -> ImageGeometry:
        """Patches and prompt tokens of one `width_px` x `height_px` image, as the checkpoint's processor resizes it
        (module doc); a side outside 1..MAX_IMAGE_SIDE_PX is a one-line error."""
        if not (1 <= width_px <= MAX_IMAGE_SIDE_PX and 1 <= height_px <= MAX_IMAGE_SIDE_PX):
            raise PhasewiseError(f"an image of {width_px}x{height_px} px is outside 1..{MAX_IMAGE_SIDE_PX:,} px a side")
        if self.family in ("qwen3_vl", "qwen2_vl", "qwen2_5_vl"):
            bounds = (QWEN_MIN_PIXELS, QWEN_MAX_PIXELS) if self.family == "qwen3_vl" else QWEN2_VL_PIXELS
            width, height = _qwen_resize(width_px, height_px, self.patch_size * math.isqrt(self.merge), *bounds)
            patches = (width // self.patch_size) * (height // self.patch_size)
            return ImageGeometry(patches, patches // self.merge + 2, (width, height))
        if self.family == "pixtral":
            scale = max(width_px / self.image_size, height_px / self.image_size, 1.0)
            side = self.patch_size * math.isqrt(self.merge)
            width = max(side, math.ceil(int(width_px / scale) / side) * side)
            height = max(side, math.ceil(int(height_px / scale) / side) * side)
            rows, cols = height // side, width // side
            return ImageGeometry(rows * cols * self.merge, rows * cols + rows, (width, height))
        if self.family in ("internvl", "llama4"):
            if self.family == "internvl":
                columns, rows = _internvl_grid(width_px, height_px, self.min_tiles, self.max_tiles, self.image_size)
            else:
                columns, rows = _llama4_grid(width_px, height_px, self.max_tiles, self.image_size)
            grid = columns * rows
            tiles = grid + (1 if self.thumbnail and grid > 1 else 0)  # the thumbnail / global view
            # InternVL: <img> and </img>; Llama 4: three markers and, beside more than one tile, rows x (columns - 1)
            # x separators and a y separator a row
            markers = 2 if self.family == "internvl" else 3 + (grid if grid > 1 else 0)
            return ImageGeometry(tiles * self.tile_positions, tiles * self.tokens_per_image + markers,
                                 (self.image_size * columns, self.image_size * rows))
        if self.family == "siglip":
            patches = (self.image_size // self.patch_size) ** 2
            return ImageGeometry(patches, self.tokens_per_image + 2, (self.image_size, self.image_size))
        if self.family == "gemma4":
            width, height = _gemma4_resize(width_px, height_px, self.patch_size, math.isqrt(self.merge),
                                           self.tokens_per_image * self.merge)
            patches = (width // self.patch_size) * (height // self.patch_size)
            return ImageGeometry(patches, patches // self.merge + 2, (width, height))
        raise PhasewiseError(f"image inputs for vision encoder family '{self.family}' are not modelled")


def _llama4_grid(width_px: int, height_px: int, max_tiles: int, tile_px: int) -> tuple[int, int]:
    """Llama4ImageProcessor's get_best_fit canvas (columns, rows): of the grids of at most max_tiles tiles, the
    smallest scale min(tile_px x columns / W, tile_px x rows / H) at or above 1 (the least upscaling), else the
    largest below 1 (the least downscaling); of the grids with that scale, the smallest."""
    grids = [(columns, rows) for rows in range(1, max_tiles + 1) for columns in range(1, max_tiles // rows + 1)]
    scales = {grid: min(grid[0] * tile_px / width_px, grid[1] * tile_px / height_px) for grid in grids}
    up = [scale for scale in scales.values() if scale >= 1]
    chosen = min(up) if up else max(scales.values())
    return min((grid for grid in grids if scales[grid] == chosen), key=lambda grid: grid[0] * grid[1])


def _internvl_grid(width_px: int, height_px: int, min_tiles: int, max_tiles: int, tile_px: int) -> tuple[int, int]:
    """InternVL's dynamic_preprocess grid (columns, rows): of the grids of min_tiles..max_tiles tiles in order of
    their count, the one whose aspect ratio is nearest the image's; on an equal distance a later (larger) grid wins
    when the image's area is more than half of its."""
    grids = sorted({(columns, rows) for count in range(min_tiles, max_tiles + 1) for columns in range(1, count + 1)
                    for rows in range(1, count + 1) if min_tiles <= columns * rows <= max_tiles},
                   key=lambda grid: grid[0] * grid[1])
    aspect, area = width_px / height_px, width_px * height_px
    best, best_diff = (1, 1), math.inf
    for columns, rows in grids:
        diff = abs(aspect - columns / rows)
        if diff < best_diff:
            best, best_diff = (columns, rows), diff
        elif diff == best_diff and area > 0.5 * tile_px * tile_px * columns * rows:
            best = (columns, rows)
    return best


def _gemma4_resize(width_px: int, height_px: int, patch: int, pool: int, max_patches: int) -> tuple[int, int]:
    """Gemma4ImageProcessor's get_aspect_ratio_preserving_size: the image scaled (up or down) to the patch budget
    keeping its aspect ratio, each side rounded down to a multiple of pool x patch (48 pixels); a side that rounds to
    nothing is one multiple, the other its aspect ratio's whole multiples within the budget."""
    side = pool * patch
    factor = math.sqrt(max_patches * patch * patch / (width_px * height_px))
    height, width = math.floor(factor * height_px / side) * side, math.floor(factor * width_px / side) * side
    longest = (max_patches // (pool * pool)) * side
    if height == 0:
        height, width = side, min(math.floor(width_px / height_px) * side, longest)
    elif width == 0:
        width, height = side, min(math.floor(height_px / width_px) * side, longest)
    return width, height


def _qwen_resize(width_px: int, height_px: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2VLImageProcessor's smart_resize: both sides multiples of `factor`, the area within the processor's
    pixel bounds (`min_pixels`, `max_pixels`), the aspect ratio kept."""
    if max(width_px, height_px) / min(width_px, height_px) > QWEN_MAX_ASPECT:
        raise PhasewiseError(f"an image of {width_px}x{height_px} px (--image-size): Qwen's image processor refuses aspect ratios beyond "
                             f"{QWEN_MAX_ASPECT}:1")
    height = max(factor, round(height_px / factor) * factor)
    width = max(factor, round(width_px / factor) * factor)
    if height * width > max_pixels:
        beta = math.sqrt(height_px * width_px / max_pixels)
        height = max(factor, math.floor(height_px / beta / factor) * factor)
        width = max(factor, math.floor(width_px / beta / factor) * factor)
    elif height * width < min_pixels:
        beta = math.sqrt(min_pixels / (height_px * width_px))
        height = math.ceil(height_px * beta / factor) * factor
        width = math.ceil(width_px * beta / factor) * factor
    return width, height
