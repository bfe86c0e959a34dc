"""What an engine works out at start-up from its flags, as its own source computes it: SGLang's default memory
fraction (and its cut for a vision encoder), and the batch sizes and token counts each engine captures CUDA graphs
at (the engine presets, specs/engine_config.py build_engine_config, read these into an EngineConfig; perf/startup.py costs the captures)."""

from __future__ import annotations

import math


def sglang_memory_fraction(memory_bytes: float, chunked_prefill_size: int, cuda_graph_max_bs: int, tp: int, pp: int,
                           attention_dp: int, speculative_draft: str | None) -> float:
    """SGLang's default --mem-fraction-static (weights + KV pool over the GPU's memory) on a GPU of `memory_bytes`:
    (memory - reserved) / memory, the reserve (MiB) being 512 + 1.5 x max(chunked_prefill_size, 2048) + 2 x
    cuda_graph_max_bs + 1,024 x tp x pp / 8, with DP attention 3 x cuda_graph_max_bs x dp more (4.5 x above 300),
    at least 10 GiB on GPUs over 60 GiB, plus 2 GiB for an EAGLE/MTP draft or 6 GiB for a separate draft model
    (srt/server_args.py _handle_gpu_memory_settings, 0.5.x; read via the code search)."""
    memory_mib = memory_bytes / 2**20
    reserved = 512 + max(chunked_prefill_size, 2048) * 1.5 + cuda_graph_max_bs * 2 + tp * pp / 8 * 1024
    if attention_dp > 1:
        reserved += cuda_graph_max_bs * attention_dp * 3
        if cuda_graph_max_bs > 300:
            reserved += cuda_graph_max_bs * attention_dp * 1.5
    if memory_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    if speculative_draft is not None:
        reserved += 2 * 1024 if speculative_draft == "mtp" else 6 * 1024
    return round((memory_mib - reserved) / memory_mib, 3)


def sglang_memory_fraction_by_memory(memory_bytes: float, tp: int, pp: int, attention_dp: int,
                                     speculative_draft: str | None) -> float:
    """SGLang's default --mem-fraction-static before sgl-project/sglang PR #10975 (opened 2025-09-27; its reserve
    formula, sglang_memory_fraction, from the first release after it): a reserve (GiB) by the GPU's memory alone,
    2.8 + tp x pp / 10 below 35 GiB, 9.5 + tp x pp / 2 below 90 GiB (H100, A100), 12 + tp x pp / 2 below 160 GiB
    (H20, H200), 32 above (B200, MI300); plus 2 GiB for an EAGLE/MTP draft or 6 GiB for a separate draft model
    (STANDALONE), 4 GiB with DP attention; (memory - reserve) / memory (srt/server_args.py __post_init__ "Set mem
    fraction static", from PR #7054 of 2025-06: the 0.4.8 copy and a 0.5.x copy before #10975, read via the code
    search). H100 TP1 0.874, TP2 0.868, TP8 0.831; B200 0.821; L40S 0.778."""
    memory_mib = memory_bytes / 2**20
    parallel = tp * pp
    if memory_mib < 35 * 1024:  # T4, 4080 (< 20 GiB) and A10, L40, 4090, 5090 alike
        reserved = (2.8 + parallel / 10) * 1024
    elif memory_mib < 90 * 1024:
        reserved = (9.5 + parallel / 2) * 1024
    elif memory_mib < 160 * 1024:  # H20 (< 100 GiB) and H200 alike
        reserved = (12 + parallel / 2) * 1024
    else:
        reserved = 32 * 1024
    if speculative_draft is not None:
        reserved += 2 * 1024 if speculative_draft == "mtp" else 6 * 1024
    if attention_dp > 1:
        reserved += 4 * 1024
    return round((memory_mib - reserved) / memory_mib, 3)


def vllm_batch_caps(rule: str | None, budget: int, seqs: int, budget_given: bool, seqs_given: bool,
                    chunked: bool, max_model_len: int | None) -> tuple[int, int]:
    """vLLM V1's (max_num_batched_tokens, max_num_seqs) once its EngineArgs fill what was not given, from the
    version's defaults `budget` and `seqs` (or the flags given), by the version's `rule` (engine_presets.yaml
    `batch_caps`):
    - None (0.8.5; engine/arg_utils.py _set_default_args_v1): each default stands;
    - seqs_within_budget (0.10, 0.11; the same function): max_num_seqs left unset is `min(default_max_num_seqs,
      self.max_num_batched_tokens or sys.maxsize)`, so a budget given below the default sequences alone runs;
    - context (0.12-0.14; _set_default_max_num_seqs_and_batched_tokens_args): a budget left unset is, with chunked
      prefill off, `max(model_config.max_model_len, self.max_num_batched_tokens)`, then in every case `min(
      self.max_num_seqs * model_config.max_model_len, self.max_num_batched_tokens)`; max_num_seqs left unset is
      `min(self.max_num_seqs, self.max_num_batched_tokens)`. The context unknown (`max_model_len` None): the
      budget's default stands.
    Read via the code search (vllm-project/vllm engine/arg_utils.py copies of each era). The flags given are kept:
    a budget below the sequences both given is vLLM's error (specs/engine_config.py build_engine_config)."""
    if rule == "context" and not budget_given and max_model_len:
        if not chunked:
            budget = max(max_model_len, budget)
        budget = min(seqs * max_model_len, budget)
    if rule in ("seqs_within_budget", "context") and not seqs_given:
        seqs = min(seqs, budget)
    return budget, seqs


def sglang_vision_factor(depth: int, hidden_size: int) -> float:
    """What SGLang multiplies its default --mem-fraction-static by for a multimodal model, to leave room for the
    vision encoder's activations (srt/server_args.py adjust_mem_fraction_for_vlm, 0.4.x-0.5.x; read via the code
    search): 0.95 x (1 - 0.1 x (r - 1)), the second factor held to [0.8, 1.05], r = the ViT's layers x hidden_size^2
    over ViT-L/14's 24 x 1024^2 (Qwen3-VL's 27 x 1152^2: r 1.42, x 0.910; Pixtral's 24 x 1024^2: x 0.95)."""
    ratio = depth * hidden_size**2 / (24 * 1024**2)
    return 0.95 * max(0.8, min(1.05, 1.0 - 0.1 * (ratio - 1.0)))


def graph_sizes(spec: list) -> tuple[int, ...]:
    """CUDA-graph capture sizes from the YAML form (ints and {from, to, step} ranges)."""
    sizes: list[int] = []
    for item in spec:
        if isinstance(item, dict):
            sizes.extend(range(item["from"], item["to"] + 1, item["step"]))
        else:
            sizes.append(int(item))
    return tuple(sorted(set(sizes)))


def trtllm_graph_sizes(max_batch_size: int, padding: bool) -> tuple[int, ...]:
    """The decode batch sizes TensorRT-LLM 1.x captures CUDA graphs for from cuda_graph_config's max_batch_size and
    enable_padding (flat in the 0.2x LLM API: cuda_graph_max_batch_size, cuda_graph_padding_enabled), as
    llmapi/llm_args.py CudaGraphConfig._generate_cuda_graph_batch_sizes forms them: with padding 1, 2, 4 and the
    multiples of 8 to 128, without it 1-31, 32, 64, 128; then the powers of two from 256 that are below
    max_batch_size; none above it, and max_batch_size itself last."""
    sizes = [1, 2, 4, *range(8, 129, 8)] if padding else [*range(1, 32), 32, 64, 128]
    sizes += [2 ** e for e in range(8, math.ceil(math.log2(max_batch_size)))] if max_batch_size > 1 else []
    sizes = sorted(size for size in set(sizes) if size <= max_batch_size)
    if not sizes or sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return tuple(sizes)


def sglang_capture_sizes(max_bs: int) -> tuple[int, ...]:
    """The decode batch sizes SGLang 0.5 captures CUDA graphs for at --cuda-graph-max-bs `max_bs`, without
    speculative decoding or --disable-cuda-graph-padding (srt/server_args.py _generate_cuda_graph_batch_sizes):
    1, 2, 4, 8, 12, then by 8 to 256, by 16 to 496, by 32 from 512, and max_bs itself (36 sizes at 256, 52 at 512).
    What start-up captures (perf/startup.py); the simulated replay pads to every size up to max_bs."""
    sizes = [1, 2, 4, 8, 12, *range(16, 257, 8), *range(272, 512, 16), *range(512, max_bs + 1, 32)]
    sizes = [size for size in sizes if size <= max_bs]
    return tuple(sizes if max_bs in sizes else [*sizes, max_bs])


def sglang_piecewise_tokens(max_tokens: int) -> tuple[int, ...]:
    """The token counts SGLang 0.5 captures piecewise CUDA graphs at for batches with prefill tokens
    (--enable-piecewise-cuda-graph; srt/server_args.py _generate_piecewise_cuda_graph_tokens): 4-32 by 4,
    48-256 by 16, 288-512 by 32, 640-4096 by 128, then by 256 up to --piecewise-cuda-graph-max-tokens."""
    sizes = [*range(4, 33, 4), *range(48, 257, 16), *range(288, 513, 32), *range(640, 4097, 128),
             *range(4352, max_tokens + 1, 256)]
    return tuple(size for size in sizes if size <= max_tokens) or (max_tokens,)
