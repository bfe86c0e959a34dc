"""DeepEP's all-to-all for a MoE layer's exchange under attention DP + EP: the knobs that choose it (SGLang's
--moe-a2a-backend, vLLM's --all2all-backend), each role's choice as a planner sets it, and the buffers each choice
allocates on every GPU."""

from __future__ import annotations

from typing import Any

from phasewise.specs.engine_caps import engine_knobs
from phasewise.specs.hardware import DeepEPBuffers

# The knobs that choose DeepEP's all-to-all for a MoE layer's exchange under attention DP + EP, and whose they are
DEEPEP_KNOBS = {"moe_a2a_backend": "SGLang", "all2all_backend": "vLLM"}


def deepep_choice(values: dict[str, Any]) -> str | None:
    """The knob value that chooses DeepEP's all-to-all among `values` (SGLang's deepep, vLLM's deepep_high_throughput
    or deepep_low_latency), None where none does."""
    return next((str(values[knob]) for knob in DEEPEP_KNOBS if str(values.get(knob) or "").startswith("deepep")),
                None)


def takes_deepep(values: dict[str, Any]) -> bool:
    """Whether the knob values choose DeepEP's all-to-all."""
    return deepep_choice(values) is not None


# Each DeepEP knob's value for an instance's role, as a planner sets it: vLLM's docs pair deepep_high_throughput with
# multi-node prefill and deepep_low_latency with multi-node decode (serving/expert_parallel_deployment.md, "Backend
# Selection Guide"); a collocated instance steps decode-only batches most iterations (the low-latency kernels, which
# CUDA graphs capture). SGLang's one choice runs DeepEP's auto mode in every role (--deepep-mode auto).
DEEPEP_CHOICE = {"moe_a2a_backend": {"prefill": "deepep", "decode": "deepep", "collocated": "deepep"},
                 "all2all_backend": {"prefill": "deepep_high_throughput", "decode": "deepep_low_latency",
                                     "collocated": "deepep_low_latency"}}


# What each DeepEP choice allocates on every GPU (perf/deepep_buffers.py sizes it): SGLang (deepep, its auto mode)
# asks DeepEP for its NVLink size hint and the low-latency buffer for SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK
# tokens (default 128: srt/layers/moe/token_dispatcher/deepep.py DeepEPBuffer.get_deepep_buffer); vLLM
# (distributed/device_communicators/all2all.py) VLLM_DEEPEP_BUFFER_SIZE_MB (1,024 MiB) of NVLink buffer, the
# low-latency manager the low-latency buffer for VLLM_MOE_DP_CHUNK_SIZE (256) tokens a DP rank dispatches, the
# high-throughput one another 1,024 MiB of RDMA buffer across nodes. All read via the code search.
DEEPEP_BUFFERS = {
    "deepep": DeepEPBuffers(low_latency_tokens_per_rank=128),
    "deepep_low_latency": DeepEPBuffers(nvl_bytes=1024 * 2**20, low_latency_tokens_per_rank=256),
    "deepep_high_throughput": DeepEPBuffers(nvl_bytes=1024 * 2**20, internode_rdma_bytes=1024 * 2**20),
}


def deepep_fields(engine: str, role: str) -> dict[str, str]:
    """The knob and value with which `engine` runs a MoE layer's exchange as DeepEP's all-to-all in `role`
    (collocated, prefill, decode); {} for an engine without such a knob (TensorRT-LLM chooses its own)."""
    knobs = engine_knobs(engine)
    return {knob: choice[role] for knob, choice in DEEPEP_CHOICE.items() if knob in knobs}
