"""A vision encoder's forward over the images of one iteration, on one GPU of the attention tensor-parallel group.

The engines run a request's images through the encoder in the iteration that schedules its prompt's first chunk
(vLLM V1's encoder inputs scheduled with the chunk that reaches their placeholder tokens, SGLang's multimodal
embedding of a prefill batch, TensorRT-LLM's context phase), all of that iteration's images in one forward:
  the patch embedding      every patch (the conv as a GEMM of patch_inputs x hidden), whole on every rank;
  depth blocks             the q / k / v, output and MLP projections over every patch, their weights split over
                           the attention TP ranks (vLLM's and SGLang's Column / RowParallelLinear, as the memory
                           fit holds them), bidirectional attention within each image (patches^2 pairs, this GPU's
                           heads; Qwen2.5-VL's windowed blocks within each window), the norms, activations,
                           residuals and RoPE as streamed elementwise traffic, and
                           two all-reduces over the TP group;
  the merger / projector   its projections over every merged token.
InternVL's and Llama 4's tiles are each their own attention sequence (tiles x 1,025^2 or 577^2 pairs), and where
InternViT's heads do not divide over the TP ranks its q, k, v and output projections and every head run whole on
each GPU, one all-reduce a block (vLLM's intern_vit.py; SGLang pads such encoders with dummy heads instead: not
modelled).
Every GEMM and the attention are CostModel's (perf/cost.py gemm(), perf/attention.py AttentionCost) with the
encoder's BF16 weights; the forward runs eagerly (no CUDA graph), its kernels launched from the host, so it takes
max(device time, host dispatch) plus the launches. Not modelled: the image processor's CPU work in the frontend
(resize, normalise), Qwen3-VL's position-embedding interpolation on the host, the encoder cache and budget that
can defer a chunk (vLLM's max_num_encoder_input_tokens), video.
Checked on a CPU against transformers' Qwen3-VL and Qwen2.5-VL encoders (`phasewise validate --vision`,
measure/vision_check.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phasewise.perf.attention import AttentionCost
from phasewise.specs.vision import VisionEncoder

if TYPE_CHECKING:
    from phasewise.perf.cost import CostModel

# kernels one ViT block launches eagerly: two norms, the q/k/v projection, RoPE, attention, the output projection,
# two residual adds, the MLP's up projection, activation and down projection, two all-reduces under TP
ENCODER_BLOCK_KERNELS = 13


@dataclass(slots=True, frozen=True)
class EncoderCost:
    """One encoder forward on one GPU."""

    time_s: float
    flops: float
    bytes: float
    images: int
    patches: int


def encoder_forward(cost: CostModel, vision: VisionEncoder, patches: Sequence[int], copies: int = 1) -> EncoderCost:
    """The forward of `vision` over images of `patches` patches each, `copies` times over (a batch of alike
    requests' images, without listing each), on one GPU of `cost`'s attention TP group."""
    tp = cost.layout.attention_tp
    images = len(patches) * copies
    rows = float(sum(patches)) * copies
    tile = vision.tile_positions
    if tile:  # InternVL, Llama 4: each tile its own sequence of `tile` positions, tokens_per_image merged rows
        sequences = sum(count // tile for count in patches) * copies
        pairs = float(sequences) * tile * tile
        merged = float(sequences * vision.tokens_per_image)
    else:
        sequences = images
        pairs = float(sum(count * count for count in patches)) * copies
        merged = float(sum(max(count // vision.merge, 1) for count in patches)) * copies
    hidden, a_bytes = vision.hidden_size, cost.a_bytes
    embedding = [cost.gemm(rows, vision.patch_inputs, hidden)]
    whole_attention = vision.attention_replicated(tp)  # q, k, v and output unsplit, every head on every GPU
    split = [1 if whole_attention and index < 2 else tp for index in range(len(vision.block_gemms))]
    block = [cost.gemm(rows, k, n / ways) for (k, n), ways in zip(vision.block_gemms, split)]
    heads = vision.num_heads if whole_attention else max(vision.num_heads // tp, 1)
    attention = AttentionCost(cost.hw, cost.engine, head_dim=vision.head_dim, heads=heads, kv_heads=heads,
                              kv_bytes=a_bytes, activation_bytes=a_bytes, tensor_peak_flops=cost.attn_peak,
                              vector_flops_per_s=cost.vector_rate, memory_s=cost.memory_s)
    whole = attention.kernel(sequences, rows, pairs, rows, False)
    mlp_width = vision.intermediate_size / tp
    # two norms and two residual adds over the hidden state, RoPE over q and k, the activation over the MLP's width
    stream_bytes = rows * (10 * hidden + 4 * hidden / tp + 2 * mlp_width) * a_bytes
    block.append((0.0, stream_bytes, 0.0, cost.memory_s(stream_bytes)))
    head = [cost.gemm(merged, k, n / tp) for k, n in vision.head_gemms]
    window = vision.window_patches
    full_blocks = vision.full_attention_blocks if window else vision.depth
    attentions = [(whole, full_blocks)]  # (one block's attention, blocks that run it)
    if window:  # Qwen2.5-VL's windowed blocks: a patch attends to the <= `window` patches of its window (edge windows
        # of a side not a multiple of the window's are cut short: counted full here, n x min(n, window) pairs)
        windows = sum(-(-count // window) for count in patches) * copies
        window_pairs = float(sum(count * min(count, window) for count in patches)) * copies
        attentions.append((attention.kernel(windows, rows, window_pairs, rows, False), vision.depth - full_blocks))
    device_s = sum(max(part[2], part[3]) for part in embedding + head) \
        + vision.depth * sum(max(part[2], part[3]) for part in block) \
        + sum(blocks * max(part[2], part[3]) for part, blocks in attentions)
    if tp > 1:  # after the attention's output projection (not when it runs whole) and the MLP's
        device_s += (1 if whole_attention else 2) * vision.depth * cost.allreduce_s(rows * hidden * a_bytes)
    kernels = vision.depth * ENCODER_BLOCK_KERNELS + len(embedding) + len(head)
    time_s = max(device_s, kernels * cost.eager_launch_s) + kernels * cost.kernel_launch_s
    flops = sum(part[0] for part in embedding + head) + vision.depth * sum(part[0] for part in block) \
        + sum(blocks * part[0] for part, blocks in attentions)
    nbytes = sum(part[1] for part in embedding + head) + vision.depth * sum(part[1] for part in block) \
        + sum(blocks * part[1] for part, blocks in attentions)
    return EncoderCost(time_s, flops, nbytes, images, int(rows))
