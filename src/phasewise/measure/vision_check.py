"""`phasewise validate --vision`: a real transformers Qwen3-VL or Qwen2.5-VL vision encoder (random weights, scaled
down) timed on images of several sizes, against the cost model's encoder forward (perf/vision.py).

The encoder is transformers' `Qwen3VLVisionModel` (or, for a Qwen2.5-VL `--model`,
`Qwen2_5_VisionTransformerPretrainedModel`) built from the checkpoint's vision_config with fewer blocks and a
narrower width (heads of 64, the MLP's ratio to the width kept; Qwen3-VL's one deepstack merger, Qwen2.5-VL's one
full-attention block among the windowed ones), fp32, one torch thread (MEASURING.md). An image of W x H pixels
(each a multiple of patch x merge, as the processor resizes them: 32 for Qwen3-VL, 28 for Qwen2.5-VL) is (H / p) x
(W / p) patches of 3 x 2 x p x p values, `grid_thw` [1, H / p, W / p]; several images go through one forward as the
engines batch them (attention within each image, or each window). The same config goes through
specs/hf_vision.py's parser, so the prediction costs exactly the shapes that ran.

Timed as validate --dllm times (median wall time of repeats after a warm-up, the thread's CPU time beside it) and
predicted on the calibrated hardware entry (`phasewise calibrate`: micro-benchmarks, none of these forwards) and on
the catalog's class-default CPU entry (`cpu-local` with `hf-eager`): the unfitted error beside the calibrated one.
What the forward runs besides the costed GEMMs, attention and streamed elementwise passes (the position-embedding
interpolation and rotary tables built per image, the per-image attention split; Qwen2.5-VL's window index, its
permutations and its attention run window by window, one SDPA call each without flash attention) is in the
measurement and not in the prediction: the error shows it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.dllm_check import median_wall_and_cpu_s
from phasewise.measure.host_allocator import host_allocator_note
from phasewise.measure.torch_env import check_fits, need_transformers, torch_and_device
from phasewise.measure.validate import UNFITTED_ENGINE, UNFITTED_HARDWARE, MeasuredVsPredicted, cpu_cost_models
from phasewise.specs import load_model
from phasewise.specs.hf_vision import qwen2_5_vl_encoder, qwen3_vl_encoder

VISION_MODEL = "Qwen/Qwen3-VL-30B-A3B-Instruct"
# (images in one forward, width, height) in pixels, multiples of 32 of at least the processor's 65,536 pixels: 256,
# 616, 1,200 and 3,136 patches an image
IMAGES = ((1, 256, 256), (1, 448, 352), (1, 640, 480), (1, 896, 896), (2, 448, 352), (4, 256, 256))
QUICK_IMAGES = ((1, 256, 256), (1, 448, 352), (2, 256, 256))
# Qwen2.5-VL's: multiples of 28 (patch 14, merge 2), 256, 768, 1,632 and 4,096 patches an image, from one 112-pixel
# window (8 x 8 patches) each 2 x 2 to 8 x 8 of them, the 672 x 476 image's last row of windows cut short
QWEN25_IMAGES = ((1, 224, 224), (1, 448, 336), (1, 672, 476), (1, 896, 896), (2, 448, 336), (4, 224, 224))
QWEN25_QUICK_IMAGES = ((1, 224, 224), (1, 448, 336), (2, 224, 224))
FAMILIES = ("qwen3_vl", "qwen2_5_vl")
HEAD_DIM = 64


@dataclass(slots=True)
class VisionPoint(MeasuredVsPredicted):
    images: int
    width_px: int
    height_px: int
    patches: int  # an image's
    measured_s: float
    cpu_s: float
    predicted_s: float
    unfitted_s: float


def scaled_vision_config(vision: dict[str, Any], depth: int, hidden: int, family: str = "qwen3_vl") -> dict[str, Any]:
    """The checkpoint's vision_config at `depth` blocks and `hidden` width: heads of HEAD_DIM, the MLP's ratio to
    the width kept (rounded to 16), the output as wide as the encoder; Qwen3-VL's one deepstack merger halfway,
    Qwen2.5-VL's one full-attention block halfway (the checkpoint's every 8th), the others windowed."""
    if hidden % HEAD_DIM:
        raise PhasewiseError(f"--hidden must be a multiple of {HEAD_DIM} for --vision (got {hidden})")
    ratio = vision["intermediate_size"] / vision["hidden_size"]
    scaled = {**vision, "depth": depth, "hidden_size": hidden, "num_heads": hidden // HEAD_DIM,
              "intermediate_size": int(round(hidden * ratio / 16) * 16), "out_hidden_size": hidden}
    if family == "qwen2_5_vl":
        return {**scaled, "fullatt_block_indexes": [depth // 2]}
    return {**scaled, "deepstack_visual_indexes": [depth // 2]}


def vision_validate(hardware: str, model: str = VISION_MODEL, depth: int = 4, hidden: int = 384,
                    images: tuple[tuple[int, int, int], ...] | None = None, quick: bool = False,
                    engine: str | None = None, repeats: int | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[list[VisionPoint], dict[str, Any]]:
    """Measured vs predicted encoder forwards over `images` ((count, width, height) each)."""
    if depth < 1 or hidden < 1:
        raise PhasewiseError(f"--layers/--hidden must be positive for --vision (got {depth}, {hidden})")
    spec = load_model(model)
    if spec.vision is None or spec.vision.family not in FAMILIES:
        raise PhasewiseError(f"--vision times a Qwen3-VL or Qwen2.5-VL vision encoder: '{spec.name}' has none (e.g. "
                             f"{VISION_MODEL}, Qwen/Qwen2.5-VL-7B-Instruct)")
    family = spec.vision.family
    if family == "qwen2_5_vl":
        grid = images or (QWEN25_QUICK_IMAGES if quick else QWEN25_IMAGES)
    else:
        grid = images or (QUICK_IMAGES if quick else IMAGES)
    from phasewise.specs.catalog import packaged
    raw = packaged("models.yaml")["models"].get(spec.name, {}).get("config", {}).get("vision_config")
    if raw is None:
        raise PhasewiseError(f"--vision needs the catalog's vision_config of '{spec.name}'")
    config = scaled_vision_config(raw, depth, hidden, family)
    parse = qwen2_5_vl_encoder if family == "qwen2_5_vl" else qwen3_vl_encoder
    vision = parse({"vision_config": config}, f"model '{spec.name}' (scaled)", hidden)
    small = spec.model_copy(update={"vision": vision})
    calibrated, unfitted = cpu_cost_models(small, hardware, engine)
    torch, dev = torch_and_device("cpu", 1)
    # 10^11 blocks was an allocator RuntimeError
    check_fits("the encoder", vision.params * 4, "fp32 weights", torch, dev, "lower --layers or --hidden")
    transformers = need_transformers()
    say = progress or (lambda _m: None)
    say(f"building the encoder: {vision.params / 1e6:.0f}M parameters")
    fields = {k: v for k, v in config.items() if k != "model_type"}
    if family == "qwen2_5_vl":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
            Qwen2_5_VisionTransformerPretrainedModel,
            Qwen2_5_VLVisionConfig,
        )
        fields["in_channels"] = fields.pop("in_chans", fields.get("in_channels", 3))
        encoder = Qwen2_5_VisionTransformerPretrainedModel(Qwen2_5_VLVisionConfig(**fields))
    else:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionConfig, Qwen3VLVisionModel
        encoder = Qwen3VLVisionModel(Qwen3VLVisionConfig(**fields))
    encoder = encoder.to(dev, torch.float32).eval()
    encoder.patch_embed.proj = patch_embedding_as_linear(torch, encoder.patch_embed.proj)
    side = vision.patch_size * math.isqrt(vision.merge)
    reps = repeats or (3 if quick else 5)
    patch_inputs = vision.patch_inputs
    points: list[VisionPoint] = []
    with torch.inference_mode():
        for count, width, height in grid:
            geometry = vision.image_geometry(width, height)
            if geometry.resized_px != (width, height):
                raise PhasewiseError(f"--vision image {width}x{height}: sides must be multiples of {side} within the "
                                     "processor's bounds (it would resize it)")
            rows, cols = height // vision.patch_size, width // vision.patch_size
            say(f"{count} x {width}x{height} ({geometry.patches:,} patches each)")
            pixels = torch.randn(count * geometry.patches, patch_inputs)
            grid_thw = torch.tensor([[1, rows, cols]] * count)
            wall, cpu = median_wall_and_cpu_s(lambda: encoder(pixels, grid_thw=grid_thw), reps)
            patches = (geometry.patches,) * count
            points.append(VisionPoint(count, width, height, geometry.patches, wall, cpu,
                                      calibrated.encoder(patches).time_s, unfitted.encoder(patches).time_s))
    info = {"model": f"{spec.name} vision encoder (scaled)", "params": vision.params, "config": config,
            "hardware": calibrated.hw.key, "hardware_source": hardware, "engine": calibrated.engine.name,
            "unfitted_hardware": UNFITTED_HARDWARE, "unfitted_engine": UNFITTED_ENGINE, "repeats": reps, "threads": 1,
            "host_allocator": host_allocator_note(),
            "transformers": transformers.__version__, "attention": encoder.config._attn_implementation,
            "patch_embedding": "one GEMM (the Conv3d whose kernel is its stride, as vLLM's Conv3dLayer runs it)"}
    return points, info


def patch_embedding_as_linear(torch, conv):
    """The patch embedding's Conv3d (its kernel its stride, one kernel-sized patch an input) as the one GEMM over the
    flattened patch it is, as serving engines run it: vLLM's Conv3dLayer takes this path on CPUs, and on GPUs from
    torch 2.9 on (vllm/model_executor/layers/conv.py `enable_linear`); the cost model (perf/vision.py) costs it so.
    transformers runs the convolution itself, which on this CPU's oneDNN took 30 ms where the GEMM takes 5 (a
    616-patch image, 1,536 x 384 weights, fp32, one thread): the check times what is served and costed."""
    if tuple(conv.kernel_size) != tuple(conv.stride) or any(conv.padding) or conv.groups != 1:
        raise PhasewiseError(f"--vision: the patch embedding is not a per-patch projection (kernel {conv.kernel_size},"
                             f" stride {conv.stride}); it cannot run as one GEMM")
    extra = (1,) * len(conv.kernel_size)

    class PatchLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight, self.bias = conv.weight, conv.bias  # the conv's own (transformers reads weight.dtype)

        def forward(self, patches):  # (patches, channels, *kernel) -> (patches, out, 1, 1, 1) as the conv returns
            flat = patches.reshape(patches.shape[0], -1)
            out = torch.nn.functional.linear(flat, self.weight.reshape(self.weight.shape[0], -1), self.bias)
            return out.view(patches.shape[0], -1, *extra)

    return PatchLinear()


def vision_summary(points: list[VisionPoint]) -> dict[str, float]:
    """Median and worst |error| of the calibrated prediction against the wall and the CPU time, and of the
    unfitted one against the wall time."""
    out: dict[str, float] = {}
    for label, errors in (("", [abs(p.error) for p in points]), ("cpu_", [abs(p.cpu_error) for p in points]),
                          ("unfitted_", [abs(p.unfitted_error) for p in points])):
        out[f"{label}median_abs_error"] = statistics.median(errors)
        out[f"{label}worst_abs_error"] = max(errors)
    return out
