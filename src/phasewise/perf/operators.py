"""The operators of one forward iteration: their kernels, their group, and what each one costs.

Each operator costs  max(compute, memory, eager dispatch) + device launch  (OperatorCost); an
iteration is the list of them plus the engine's host overhead (IterationCost). In an eager iteration
the host launches a stage's kernels asynchronously, ahead of the device, so its layers' operators
carry their dispatch apart (host_overlapped: they cost max(compute, memory) + launch) and one
EAGER_DISPATCH operator carries what the host's launches add beyond the device time (CostModel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kernels per operator in a fused modern engine (vLLM/TRT-LLM): fused add+norm x2, RoPE, activation;
# one GEMM per projection; attention plus the KV-cache write; router, permute, grouped GEMMs, combine.
KERNELS = {
    "elementwise": 4, "qkv_proj": 1, "attention": 2, "o_proj": 1, "mlp_gate_up": 1, "mlp_down": 1,
    "moe_router": 2, "moe_experts": 4, "moe_shared": 2, "moe_latent_proj": 2, "tp_allreduce": 1, "embedding": 1,
    "lm_head": 3, "pp_send_recv": 1, "moe_all_to_all": 2, "moe_gather": 2, "qk_norm_allreduce": 1,
    "linear_allreduce": 1,
    # per-layer embeddings' gate GEMM, GELU x the layer's input, projection GEMM, norm + residual add (Gemma 4 E2B)
    "per_layer_input": 4,
}
# The host time of an eager stage's kernel launches beyond its device time: the device waits for them
EAGER_DISPATCH = "eager_dispatch"
# Latent attention (DeepSeek, Kimi), counted in vLLM's model_executor/models/deepseek_v2.py (DeepseekV2MLAAttention)
# and v1/attention/backends/mla/common.py (MLACommonImpl): projections = the fused q_a + kv_a down GEMM, the q-latent
# and kv-latent RMSNorms and the q_b up GEMM (4); attention = the latent cache write (concat_and_cache_mla), the
# absorbed K-up bmm, the q_nope/q_pe concat, the decode kernel and its split-KV combine (FlashMLA) and the V-up bmm
# (6). RoPE is among the elementwise kernels as for every model.
LATENT_KERNELS = {"qkv_proj": 4, "attention": 6}
# DeepSeek sparse attention's indexer on top (DeepSeek-V3.2-Exp inference/model.py Indexer.forward, as SGLang's
# nsa_indexer.py runs it): its wq_b, wk and weights_proj GEMMs (3); RoPE, Hadamard rotation and FP8 quantization of q
# and of k, k's LayerNorm, the indexer-key cache write, the logits kernel and the top-k selection (10)
SPARSE_INDEXER_KERNELS = {"qkv_proj": 3, "attention": 10}
# A gated-DeltaNet layer in place of softmax attention (Qwen3-Next / Qwen3.5 Qwen3GatedDeltaNet.forward, as SGLang and
# vLLM run it): its in_proj_qkvz and in_proj_ba GEMMs (2); the causal conv, the fused gating (decay and beta), the
# delta-rule kernel and the gated RMSNorm (4), the decode path's count
LINEAR_ATTENTION_KERNELS = {"qkv_proj": 2, "attention": 4}
# A KDA layer (Kimi Linear: vLLM layers/kda.py KimiDeltaAttention.forward): q, k, v, b and the two low-rank pairs'
# GEMMs (8); the three causal convs, the fused decay gate, the delta-rule kernel and the gated RMSNorm (6)
KDA_KERNELS = {"qkv_proj": 8, "attention": 6}
# A Mamba-1 layer (vLLM layers/mamba/mamba_mixer.py MambaMixer.forward, as Jamba runs it): in_proj, x_proj and
# dt_proj (3); the causal conv, the RMSNorms of dt, B and C, the selective scan (5)
MAMBA1_KERNELS = {"qkv_proj": 3, "attention": 5}
# A short-conv layer (LFM2: vLLM ShortConv.forward): in_proj (1); B x, the causal conv and C's gate (3)
SHORT_CONV_KERNELS = {"qkv_proj": 1, "attention": 3}
# Each recurrence's kernels; the others' are LINEAR_ATTENTION_KERNELS: Mamba-2's, and lightning attention's (vLLM
# MiniMaxText01LinearAttention.forward: qkv_proj and output_gate (2); the SiLU, the decode kernel, the RMSNorm across
# heads and the gate's sigmoid and product (4; a prefill runs the lightning kernel as four))
LINEAR_KERNELS = {"kda": KDA_KERNELS, "mamba1": MAMBA1_KERNELS, "short_conv": SHORT_CONV_KERNELS}
# A shared expert runs its own gate-up GEMM, SiLU-and-mul and down GEMM (the routed experts' activation is the one
# the elementwise kernels count)
SHARED_EXPERT_KERNELS = 3
# Activation quantization as kernels of its own (an engine whose quantized linear layers take BF16 input and quantize
# it before each GEMM: SGLang's apply_w8a8_block_fp8_linear and sglang_per_token_group_quant_fp8, ModelOpt FP4's
# fp4_quantize; not fused into the norm or activation that wrote it): one kernel per quantized GEMM input. The fused
# QKV projection (latent attention: the fused q_a + kv_a down-projection and q_b), o_proj, the MLP's gate-up and
# down, the shared expert's two GEMMs; the routed experts' Triton fused-MoE kernel quantizes each of its two GEMMs'
# inputs (invoke_fused_moe_kernel), FlashInfer's FP4 fused MoE its input once (the intermediate inside)
QUANTIZED_INPUTS = {"qkv_proj": 1, "o_proj": 1, "mlp_gate_up": 1, "mlp_down": 1, "moe_experts": 2, "moe_shared": 2}
LATENT_QUANTIZED_INPUTS = {"qkv_proj": 2}
FP4_MOE_QUANTIZED_INPUTS = 1
# DeepSeek-V4's compressed attention (perf/compressed_cost.py), as vLLM's DeepSeek-V4 attention and compressor launch
# it (model_executor/layers/deepseek_v4_attention.py, deepseek_compressor.py, mhc.py): every layer the fused q_a + KV
# GEMM, the q-latent norm, q_b and the fused q-norm / RoPE / KV RoPE / quantize / window insert (qkv_proj 4); the
# sparse attention kernel, its split-KV combine and the output's fused inverse RoPE and quantization (attention 3);
# o_a's grouped einsum and o_b (o_proj 2); the two fused hyper-connection mixers, the two RMSNorms and the activation
# (elementwise 5). A compressed layer adds its compressor's kv-and-gate GEMM and the fused pool / norm / RoPE / cache
# insert (2); a CSA layer its indexer's compressor likewise (2), its q_b and weights_proj GEMMs, the query's RoPE and
# quantization, the logits and the top-k (5)
COMPRESSED_KERNELS = {"qkv_proj": 4, "attention": 3, "o_proj": 2, "elementwise": 5}
# q's and k's RMSNorms before RoPE (ModelSpec.qk_norm), one kernel's time in a graph-replayed step: SGLang's Qwen3
# attention runs them as one fused_inplace_qknorm kernel, or (older releases, and TensorRT-LLM's unfused path:
# maybe_execute_in_parallel) q's and k's on two streams side by side; vLLM's compiled graph (Inductor, its custom ops
# off) emits them as Triton kernels of its choosing, not counted apart. A v norm (Gemma 4) and a post-norm
# (ModelSpec.post_norms) are one kernel each
QK_NORM_KERNELS = 1
# the elementwise kernels a layer runs for its attention: its fused add + norm and RoPE (an attention-free layer's
# MLP keeps its own norm and activation)
ATTENTION_ELEMENTWISE_KERNELS = 2
# a final logit soft cap (ModelSpec.logit_softcap): the division, tanh and product over the logits
LOGIT_SOFTCAP_KERNELS = 3
COMPRESSOR_KERNELS = 2
CSA_INDEXER_KERNELS = 7


def kernel_counts(latent_attention: bool, shared_experts: bool, sparse_attention: bool = False,
                  linear_share: float = 0.0, linear_recurrence: str = "gated_deltanet",
                  activation_quant: str | None = None,
                  compressed: tuple[float, float] | None = None, qk_norm_kernels: int = 0,
                  post_norms: int = 0, logit_softcap: bool = False,
                  attention_free_share: float = 0.0) -> dict[str, float]:
    """Kernels per operator for a model: KERNELS, with latent attention's, its sparse indexer's and shared experts'
    own; in a hybrid stack with `linear_share` of its layers linear attention (of `linear_recurrence`), the mean
    layer's; with `activation_quant` (the compute dtype an engine quantizes GEMM inputs to in kernels of their own),
    those kernels (QUANTIZED_INPUTS); `compressed`: compressed attention's (CSA, HCA) shares of the layers (its mean
    layer's kernels, COMPRESSED_KERNELS); `qk_norm_kernels` on each softmax layer and `post_norms` on every one (the
    norms beyond the two fused add + norms); `logit_softcap`: the LM head's soft cap; `attention_free_share`: the
    share of the layers without attention (the mean layer: none of their projections', attention's, RoPE's or
    attention norm's kernels)."""
    counts: dict[str, float] = dict(KERNELS)
    if compressed is not None:
        csa, hca = compressed
        counts.update(COMPRESSED_KERNELS)
        counts["attention"] += (csa + hca) * COMPRESSOR_KERNELS + csa * CSA_INDEXER_KERNELS
    if latent_attention:
        counts.update(LATENT_KERNELS)
    if sparse_attention:
        for name, extra in SPARSE_INDEXER_KERNELS.items():
            counts[name] += extra
    linear_kernels = LINEAR_KERNELS.get(linear_recurrence, LINEAR_ATTENTION_KERNELS)
    for name, linear in linear_kernels.items():
        counts[name] += linear_share * (linear - counts[name])
    counts["elementwise"] += qk_norm_kernels * (1.0 - linear_share - attention_free_share) + post_norms
    if attention_free_share:
        for name in ("qkv_proj", "attention", "o_proj"):
            counts[name] *= 1.0 - attention_free_share
        counts["elementwise"] -= ATTENTION_ELEMENTWISE_KERNELS * attention_free_share
    counts["lm_head"] += LOGIT_SOFTCAP_KERNELS * logit_softcap
    if shared_experts:
        counts["moe_shared"] = SHARED_EXPERT_KERNELS
    if activation_quant is not None:
        inputs = dict(QUANTIZED_INPUTS, **(LATENT_QUANTIZED_INPUTS if latent_attention else {}))
        if activation_quant == "fp4":
            inputs["moe_experts"] = FP4_MOE_QUANTIZED_INPUTS
        for name, extra in inputs.items():
            counts[name] += extra
    return counts


# the elementwise kernels of KERNELS' count: the two fused add + norms, RoPE on q and k, the MLP's activation
STANDARD_ELEMENTWISE = {"norm": 2, "rope": 1, "activation": 1}


def unfused_kernel_counts(counts: dict[str, float], unfused, plain_norms: float, plain_norm_calls: float
                          ) -> dict[str, float]:
    """`counts` (kernel_counts) as an unfused eager engine dispatches them (EngineProfile.unfused_kernels): each class
    of fused kernel by the ops it becomes. Of the elementwise kernels, `plain_norms` are norms without a residual add
    (q / k, v and post-norms), run as `plain_norm_calls` norm calls (the fused count's one q / k kernel is two); the
    rest count as KERNELS' own mix (STANDARD_ELEMENTWISE) in every architecture, a Llama layer's."""
    standard = sum(STANDARD_ELEMENTWISE.values())
    per_standard = sum(n * getattr(unfused, name) for name, n in STANDARD_ELEMENTWISE.items()) / standard
    out = dict(counts)
    out["elementwise"] = (counts["elementwise"] - plain_norms) * per_standard + plain_norm_calls * unfused.plain_norm
    for name in ("qkv_proj", "mlp_gate_up", "attention"):
        out[name] = counts[name] * getattr(unfused, name)
    return out


def compressed_shares(model) -> tuple[float, float] | None:
    """A ModelSpec's compressed attention as kernel_counts takes it: its (CSA, HCA) shares of the layers, or None."""
    c = model.compressed
    if c is None:
        return None
    return c.csa_layers / model.num_layers, c.hca_layers / model.num_layers


FIXED_OPERATORS = ("embedding", "lm_head")  # once per iteration (first / last pipeline stage), not per layer

# Operator groups, the units that can run apart (another device, another substrate): attention over the
# KV cache; dense GEMMs over weights; memory-bound elementwise work (norms, RoPE, activation, the
# embedding gather); communication between GPUs (TP all-reduce, PP activation transfer).
OPERATOR_GROUP = {
    "attention": "attention",
    "qkv_proj": "dense", "o_proj": "dense", "mlp_gate_up": "dense", "mlp_down": "dense", "moe_router": "dense",
    "moe_experts": "dense", "moe_shared": "dense", "moe_latent_proj": "dense", "lm_head": "dense",
    "per_layer_input": "dense",
    "elementwise": "elementwise", "embedding": "elementwise",
    "tp_allreduce": "communication", "pp_send_recv": "communication", "moe_all_to_all": "communication",
    "moe_gather": "communication",
    "qk_norm_allreduce": "communication", "linear_allreduce": "communication",
    EAGER_DISPATCH: "host",
}
GROUPS = ("attention", "dense", "elementwise", "communication", "host")


@dataclass(slots=True)
class OperatorCost:
    """One operator summed over the layers it runs in (count = layers, or 1 for per-iteration ops)."""

    name: str
    count: int
    flops: float
    bytes: float
    compute_s: float
    memory_s: float
    dispatch_s: float
    launch_s: float
    # its dispatch overlaps the device time of the stage's other operators: counted in EAGER_DISPATCH instead
    host_overlapped: bool = False
    time_s: float = field(init=False)
    bound: str = field(init=False)

    def __post_init__(self) -> None:
        top = max(self.compute_s, self.memory_s, 0.0 if self.host_overlapped else self.dispatch_s)
        self.time_s = top + self.launch_s
        host_bound = not self.host_overlapped and top == self.dispatch_s
        if OPERATOR_GROUP.get(self.name) == "communication":  # its memory_s is time on the links
            self.bound = "dispatch" if host_bound and self.dispatch_s > self.memory_s else "network"
        elif host_bound or self.launch_s > top:
            self.bound = "dispatch"
        else:
            self.bound = "compute" if self.compute_s >= self.memory_s else "memory"

    @property
    def arithmetic_intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass(slots=True)
class IterationCost:
    latency_s: float  # wall time of the iteration through all pipeline stages
    stage_s: float  # time of the slowest pipeline stage (= latency_s when pp == 1)
    host_s: float  # engine host overhead included in both
    operators: list[OperatorCost]
    host_exposed_s: float | None = None  # of host_s, what latency_s carries beyond the device's time (None: all)

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.operators)

    @property
    def bytes(self) -> float:
        return sum(op.bytes for op in self.operators)

    @property
    def bound(self) -> str:
        """The roof that accounts for most of the iteration's time: the host's work counts where it adds to the
        iteration's time (an engine that overlaps it with the device's pays only its excess)."""
        by: dict[str, float] = {"dispatch": self.host_s if self.host_exposed_s is None else self.host_exposed_s}
        # eager and host-bound: the host's launches set the layers' whole time, their device time runs under them
        host_bound = any(op.name == EAGER_DISPATCH and op.time_s > 0 for op in self.operators)
        for op in self.operators:
            bound = "dispatch" if host_bound and op.host_overlapped else op.bound
            by[bound] = by.get(bound, 0.0) + op.time_s
        return max(by, key=by.__getitem__)
