"""Cost of one training step (forward + backward + AdamW) on the served model, with or without reusing the
activations serving's prefill recorded (Alchemist, PAPERS.md section 10).

The forward is CostModel.iteration() over the training tokens (every token through the LM head) plus the
cross-entropy loss. The backward is derived from the forward's operators, operator by operator, with the same
efficiency machinery (CostModel's time per operator, never a second roofline):
  dense GEMM   Y = X W: dX = dY W^T and dW = X^T dY, each the forward's FLOPs over the same three dimensions
               (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters", appendix
               "Floating-Point Operations": the backward pass needs twice the forward's FLOPs, for the input and
               the weight gradients); LoRA: the frozen weight needs dX only (1x) and the adapters both;
  attention    FlashAttention-2's backward: 5 matmuls (S and P recomputed, dV, dP, dQ, dK) against the forward's 2,
               2.5x its FLOPs (Dao 2023, "FlashAttention-2", alg. 2; Dao-AILab/flash-attention
               benchmarks/benchmark_flash_attention.py counts bwd = 2.5 x fwd FLOPs); it reads q, k, v, o, dO and
               writes dq, dk, dv: 2x the forward's traffic (counted tensors);
  elementwise  norms, residual adds, RoPE, SwiGLU: each backward reads the saved input and the output gradient
               and writes the input gradient(s): 2x the forward's traffic (assumed from that tensor count);
  embedding    full fine-tuning: a dense V x h gradient (zero-filled, rows scatter-added), memory-bound;
  loss         cross-entropy over fp32 logits: log-softmax reads logits and writes log-probs (2 passes); its
               backward writes the one-hot gradient and reads it with the log-probs to write dlogits (4 passes).
The optimizer is a fused AdamW (one pass: reads weights, grads and the two moments, writes weights and moments;
torch.optim.AdamW(fused=True), apex/Megatron FusedAdam), memory-bound.

Reuse (Alchemist): serving's prefill recorded what the backward needs from the decoder layers, so the trainer
skips their forward (forward_s = 0). It still runs the head over every training token (final hidden state ->
LM head -> loss), which serving's prefill does not (it computes the last token's logits only); under reuse that
head forward is counted in backward_s (head_forward_s says how much). `keep` holds the recorded activations on the
GPU; `offload` holds them in host memory and reloads them in backward order over the host link into the layer
slots the step's memory is charged for (max(keep_layers, 2) layers): a slot is free at the start where the kept
layers leave one, else once a layer's backward is done, so reloads run over the link while the kept layers'
backward runs; the last `keep_layers` layers stay on the GPU (hedging). A batch serving recorded in part
(`reused_share` of its tokens): the rest's forward is recomputed (the layers' and the embedding's, their share of
the batch), only the recorded share is reloaded, and the recomputed tokens' activations stay resident (all layers)
until their backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.operators import EAGER_DISPATCH, FIXED_OPERATORS, OPERATOR_GROUP, OperatorCost
from phasewise.specs.model import ModelSpec

TRAIN_METHODS = ("full", "lora")
REUSE_MODES = ("recompute", "keep", "offload")  # recompute = no Alchemist; keep = saved activations on the GPU;
#                                                 offload = saved to host, reloaded in backward order

# Backward / forward cost of each operator group (see the module docstring for the sources).
GEMM_BACKWARD = {"full": 2.0, "lora": 1.0}  # dX + dW; a frozen weight: dX only
ATTENTION_BACKWARD_FLOPS = 2.5  # FlashAttention-2 (Dao 2023; flash-attention's benchmark FLOP count)
ATTENTION_BACKWARD_BYTES = 2.0  # reads q, k, v, o, dO, writes dq, dk, dv vs q, k, v read and o written
ELEMENTWISE_BACKWARD_BYTES = 2.0  # assumed: saved input + output gradient read, input gradient(s) written
COMMUNICATION_BACKWARD = 1.0  # TP: the conjugate all-reduce of each forward one (Megatron-LM's f/g operators)
LOSS_FORWARD_PASSES = 2  # log-softmax: read logits, write log-probs (fp32)
LOSS_BACKWARD_PASSES = 4  # write the one-hot NLL gradient; read it and the log-probs, write dlogits
LOGIT_BYTES = 4.0  # fp32 logits and log-probs (transformers' loss upcasts; PyTorch cross_entropy)

# LoRA (Hu et al. 2021, "LoRA", sec. 7.1: adapting W_q and W_v is the paper's recommended choice): adapters
# x -> x A (h x r) -> (x A) B (r x n) beside the frozen query and value projections.
LORA_TARGETS = ("q", "v")

# AdamW per trained parameter (torch's _single_tensor_adamw, counted): weight decay 2, first moment lerp 2,
# second moment 3, sqrt 1, bias-corrected denominator 2, update 2 FLOPs.
ADAMW_FLOPS_PER_PARAM = 12.0
MOMENT_BYTES = 4.0  # Adam's two moments and the master weights in fp32 (Rajbhandari et al. 2020, ZeRO, sec. 3.1:
#                     mixed-precision Adam keeps 12 bytes of fp32 state per parameter: weights, momentum, variance)
LSE_BYTES = 4.0  # FlashAttention-2 saves one fp32 logsumexp per query row and head (Dao 2023, alg. 1)

# Activations autograd saves per token of one Llama-shaped layer, in elements (x the activation bytes).
# Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models", sec. 4.1) count
# 34 s b h + 5 a s^2 b bytes per GPT layer in 16-bit; without dropout masks (2 s b h of that; Llama has none) and
# with FlashAttention, which saves q, k, v, the output and the log-sum-exp instead of the s^2 scores (Dao et al.
# 2022), the count per token is, in elements:
#   norm1 input h, norm1 output h (the QKV GEMM's input), q, k, v after RoPE (q + 2 kv, GQA as stored),
#   attention output q (the O projection's input), norm2 input h, norm2 output h (the MLP's input),
#   gate and up (2 i, SwiGLU's input), SwiGLU's output i (the down projection's input)
# = 4 h + 2 q + 2 kv + 3 i; a non-gated MLP saves its activation's input and output (2 i): a GPT layer (4h MLP)
# then saves 4 h + 4 h + 8 h = 16 h elements = 32 bytes per token in 16-bit, Korthikanti's 34 less the masks.
# LoRA: a GEMM with a frozen weight saves no input (its input is kept only for the weight gradient), so the MLP's
# input h and the down projection's input i go; the adapters save their rank-r intermediate x A each.
FULL_LAYER = {"hidden": 4, "q": 2, "kv": 2, "inter": 0}  # + the MLP's matrices' count of intermediates
LORA_LAYER = {"hidden": 3, "q": 2, "kv": 2, "inter": -1}


@dataclass(slots=True)
class TrainingStep:
    forward_s: float  # the trainer's own forward with autograd (under reuse: the tokens serving did not record)
    backward_s: float  # backward of every layer (under reuse also the head's forward: head_forward_s)
    optimizer_s: float
    reload_s: float  # host->device reload time NOT hidden behind backward (0 unless offload)
    activation_bytes: float  # everything the backward needs from the forward (all layers; incl. KV)
    peak_activation_bytes: float  # resident at once under the mode (all for recompute/keep; a window for offload)
    weight_state_bytes: float  # trained parameters' grads + optimizer state (+ weights if not shared with serving)
    head_forward_s: float = 0.0  # final hidden state -> LM head -> loss over every training token (part of
    #                              forward_s for recompute, of backward_s under reuse)
    trained_params: float = 0.0
    tokens: int = 0
    held_bytes: float = 0.0  # the recorded share's recordings on the GPU from serving's prefill to the step
    #                          (held_bytes_per_token: keep all, offload the kept layers' and the final hidden state)

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s + self.optimizer_s + self.reload_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_s if self.step_s > 0 else 0.0


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise PhasewiseError(f"{name} '{value}' is not one of {', '.join(allowed)}")


def _mlp_width(model: ModelSpec, tp: int) -> float:
    """Intermediate elements per token of one layer, averaged over dense and MoE layers (as perf/cost.py)."""
    m = model
    moe_share = m.num_moe_layers / m.num_layers
    return (m.intermediate_size * m.dense_layer_share
            + (m.experts_per_token * m.expert_intermediate_size + m.shared_expert_intermediate_size)
            * moe_share) / tp


def _lora_outputs(model: ModelSpec, heads: int, kv_heads: int) -> list[int]:
    """Output widths of the projections LoRA adapts (one GPU's share)."""
    width = {"q": heads * model.head_dim, "v": kv_heads * model.head_dim}
    return [width[t] for t in LORA_TARGETS]


def layer_saved_bytes_per_token(model: ModelSpec, method: str = "full", *, lora_rank: int = 16,
                                element_bytes: float = 2.0, tp: int = 1) -> float:
    """Bytes autograd saves per token in one decoder layer (see FULL_LAYER), incl. its K and V."""
    _check("method", method, TRAIN_METHODS)
    m = model
    heads, kv_heads = m.num_heads // tp, max(1, m.num_kv_heads // tp)
    count = FULL_LAYER if method == "full" else LORA_LAYER
    elements = (count["hidden"] * m.hidden_size + count["q"] * heads * m.head_dim
                + count["kv"] * kv_heads * m.head_dim + (m.mlp_matrices + count["inter"]) * _mlp_width(m, tp))
    if method == "lora":
        elements += len(LORA_TARGETS) * lora_rank
    return elements * element_bytes + heads * LSE_BYTES


def head_saved_bytes_per_token(model: ModelSpec, method: str = "full", *, element_bytes: float = 2.0,
                               tp: int = 1) -> float:
    """Bytes the head saves per token: final norm input (and its output, the LM head's input, when the LM head
    is trained) and the fp32 log-probs the loss's backward reads."""
    _check("method", method, TRAIN_METHODS)
    hidden = 2 if method == "full" else 1
    return hidden * model.hidden_size * element_bytes + model.vocab_size / tp * LOGIT_BYTES


def recording_bytes_per_token(model: ModelSpec, method: str = "full", *, lora_rank: int = 16,
                              element_bytes: float = 2.0, tp: int = 1, layers: int | None = None) -> float:
    """Bytes serving's prefill writes per prompt token on one of `tp` GPUs to record what that GPU's trainer will
    reuse: every layer's saved activations (incl. K and V; layer_saved_bytes_per_token, the rank's share) and the
    final hidden state (the trainer's head starts from it). `element_bytes`: serving's activation dtype (2: bf16).
    `layers`: the last `layers` layers' part only, with the final hidden state when any (offload's layers kept on
    the GPU: the first the backward needs); None: every layer."""
    layer = layer_saved_bytes_per_token(model, method, lora_rank=lora_rank, element_bytes=element_bytes, tp=tp)
    layers = model.num_layers if layers is None else layers
    return layers * layer + (model.hidden_size * element_bytes if layers else 0.0)


def held_bytes_per_token(cost_model: CostModel, method: str = "full", reuse: str = "keep", *, lora_rank: int = 16,
                         keep_layers: int = 0) -> float:
    """Bytes one GPU of `cost_model`'s group holds per recorded prompt token from serving's prefill to the training
    step: what that prefill wrote for it (recording_bytes_per_token in serving's activation dtype, the TP rank's
    share), all of it with reuse keep, the last `keep_layers` layers' part (and the final hidden state, when any)
    with offload, none with recompute. Not the head's fp32 log-probs: serving computes the last token's logits only,
    the step writes them (its own peak_activation_bytes)."""
    _check("reuse", reuse, REUSE_MODES)
    if reuse == "recompute":
        return 0.0
    cm = cost_model
    return recording_bytes_per_token(cm.model, method, lora_rank=lora_rank, element_bytes=cm.a_bytes, tp=cm.tp,
                                     layers=cm.layers_per_stage if reuse == "keep" else keep_layers)


def trained_params(model: ModelSpec, method: str = "full", lora_rank: int = 16, tp: int = 1) -> float:
    """Parameters the optimizer updates (one GPU's share)."""
    _check("method", method, TRAIN_METHODS)
    if method == "full":
        return model.total_params / tp
    heads, kv_heads = model.num_heads // tp, max(1, model.num_kv_heads // tp)
    return model.num_layers * sum(lora_rank * (model.hidden_size + n) for n in _lora_outputs(model, heads, kv_heads))


def _scaled(op: OperatorCost, flops: float, nbytes: float) -> OperatorCost:
    """`op`'s backward: compute (and FLOPs) x `flops`, memory traffic x `nbytes`, kernels x the larger."""
    kernels = max(flops, nbytes)
    return OperatorCost(op.name, op.count, op.flops * flops, op.bytes * nbytes, op.compute_s * flops,
                        op.memory_s * nbytes, op.dispatch_s * kernels, op.launch_s * kernels, op.host_overlapped)


def _gemm_op(cm: CostModel, name: str, count: int, rows: float, k: float, n: float, eager: bool) -> OperatorCost:
    flops, nbytes, compute_s, memory_s = cm.gemm(rows, k, n)
    dispatch = cm.eager_launch_s if eager else 0.0
    return OperatorCost(name, count, flops * count, nbytes * count, compute_s * count, memory_s * count,
                        dispatch * count, cm.kernel_launch_s * count, host_overlapped=eager)


def training_step(cost_model: CostModel, seqs: int, tokens_per_seq: int, *, method: str = "full",
                  lora_rank: int = 16, reuse: str = "recompute", host_link_bytes_per_s: float | None = None,
                  keep_layers: int = 0, weights_shared: bool = True, reused_share: float = 1.0) -> TrainingStep:
    """One training step over `seqs` sequences of `tokens_per_seq` tokens on `cost_model`'s GPU group (pp = 1).
    `host_link_bytes_per_s`: the offload link (default: the hardware's PCIe x its link efficiency);
    `keep_layers`: with offload, the last layers kept on the GPU; `weights_shared`: the trainer updates the
    weights serving reads (else it holds its own copy, counted in weight_state_bytes; LoRA adapters' weights are
    always counted); `reused_share`: with keep or offload, the share of the tokens serving recorded (the rest's
    forward is recomputed)."""
    cm = cost_model
    _check("method", method, TRAIN_METHODS)
    _check("reuse", reuse, REUSE_MODES)
    if seqs <= 0 or tokens_per_seq <= 0:
        raise PhasewiseError(f"seqs and tokens_per_seq must be >= 1 (got seqs={seqs}, "
                             f"tokens_per_seq={tokens_per_seq})")
    if method == "lora" and lora_rank <= 0:
        raise PhasewiseError(f"lora_rank must be >= 1 (got {lora_rank})")
    if cm.pp != 1:
        raise PhasewiseError(f"training_step costs one pipeline stage: pp must be 1 (got {cm.pp})")
    if cm.model.linear_attention_layers:
        raise PhasewiseError(f"training steps of a hybrid linear-attention model ({cm.model.name}) are not modelled "
                             "yet")
    if not cm.model.uniform_layers:  # the saved activations and LoRA widths take one layer shape
        raise PhasewiseError(f"training steps of a model whose layers are not all alike (attention heads of more "
                             f"than one width, KV-shared layers, per-layer embeddings: {cm.model.name}) are not "
                             "modelled yet")
    L = cm.layers_per_stage
    if not 0 <= keep_layers <= L:
        raise PhasewiseError(f"keep_layers must be in 0..{L} (the model's layers; got {keep_layers})")
    if not 0.0 <= reused_share <= 1.0:
        raise PhasewiseError(f"reused_share must be in [0, 1] (the share of the tokens recorded; got {reused_share})")
    if reuse == "recompute" and reused_share != 1.0:
        raise PhasewiseError(f"reused_share applies to reuse keep or offload (reuse is recompute; got {reused_share})")
    if host_link_bytes_per_s is not None and not host_link_bytes_per_s > 0:
        raise PhasewiseError(f"host_link_bytes_per_s must be > 0 (got {host_link_bytes_per_s})")
    m = cm.model
    tokens = seqs * tokens_per_seq
    shape = BatchShape.uniform(seqs, tokens_per_seq, 0, causal=m.causal, window=m.window_all_layers)
    shape.logit_tokens = tokens  # the loss needs every token's logits
    iteration = cm.iteration(shape)
    eager = cm.eager(shape)
    logits_bytes = tokens * m.vocab_size / cm.tp * LOGIT_BYTES
    loss_forward_s = cm.memory_s(LOSS_FORWARD_PASSES * logits_bytes)
    loss_backward_s = cm.memory_s(LOSS_BACKWARD_PASSES * logits_bytes)

    layer_forward_s, head_s, embedding_s = 0.0, loss_forward_s, 0.0
    layer_backward_s, head_backward_s, embedding_backward_s = 0.0, loss_backward_s, 0.0
    gemm = GEMM_BACKWARD[method]
    # eager: the layers' kernels are launched asynchronously, so each pass over them takes max(device time, host
    # dispatch) (cost.py's rule; the layer operators' time_s is their device time)
    forward_dispatch_s = backward_dispatch_s = 0.0
    for op in iteration.operators:
        if op.name == EAGER_DISPATCH:  # recomputed below with the backward's and the adapters' launches
            continue
        group = OPERATOR_GROUP[op.name]
        if op.name == "embedding":
            embedding_s += op.time_s
            if method == "full":  # dense V x h gradient written, the batch's rows read and scatter-added
                nbytes = m.vocab_size / cm.tp * m.hidden_size * cm.hp_bytes + tokens * m.hidden_size * (
                    cm.a_bytes + 2 * cm.hp_bytes)
                embedding_backward_s += cm.memory_s(nbytes) + op.launch_s * 2
            continue
        if group == "attention":
            back = _scaled(op, ATTENTION_BACKWARD_FLOPS, ATTENTION_BACKWARD_BYTES)
        elif group == "dense":
            back = _scaled(op, gemm, gemm)
            if method == "lora" and op.name == "qkv_proj" and L > 1:  # layer 0's input needs no gradient
                back = _scaled(back, (L - 1) / L, (L - 1) / L)
        elif group == "elementwise":
            back = _scaled(op, ELEMENTWISE_BACKWARD_BYTES, ELEMENTWISE_BACKWARD_BYTES)
        else:
            back = _scaled(op, COMMUNICATION_BACKWARD, COMMUNICATION_BACKWARD)
        if op.name in FIXED_OPERATORS:
            head_s += op.time_s
            head_backward_s += back.time_s
        else:
            layer_forward_s += op.time_s
            layer_backward_s += back.time_s
            forward_dispatch_s += op.dispatch_s
            backward_dispatch_s += back.dispatch_s
    if method == "lora":  # the adapters: x A then (x A) B per target, forward; dX and dW of each, backward
        for n in _lora_outputs(m, cm.heads, cm.kv_heads):
            for op in (_gemm_op(cm, "lora_a", L, tokens, m.hidden_size, lora_rank, eager),
                       _gemm_op(cm, "lora_b", L, tokens, lora_rank, n, eager)):
                back = _scaled(op, 2.0, 2.0)
                layer_forward_s += op.time_s
                layer_backward_s += back.time_s
                forward_dispatch_s += op.dispatch_s
                backward_dispatch_s += back.dispatch_s
    layer_forward_s = max(layer_forward_s, forward_dispatch_s)
    layer_backward_s = max(layer_backward_s, backward_dispatch_s)
    host_s = iteration.host_s

    # memory: what the backward needs, and what is resident at once
    a = cm.a_bytes
    per_layer = tokens * layer_saved_bytes_per_token(m, method, lora_rank=lora_rank, element_bytes=a, tp=cm.tp)
    head_bytes = tokens * head_saved_bytes_per_token(m, method, element_bytes=a, tp=cm.tp)
    activation_bytes = L * per_layer + head_bytes
    params = trained_params(m, method, lora_rank, cm.tp)
    fp32 = cm.hp_bytes >= MOMENT_BYTES  # the weights are their own fp32 master copy
    state = params * (cm.hp_bytes + 2 * MOMENT_BYTES + (0.0 if fp32 else MOMENT_BYTES))  # grads, moments, master
    weight_state_bytes = state + (0.0 if weights_shared and method == "full" else params * cm.hp_bytes)
    # fused AdamW: moments (and master weights) read and written, gradients read, bf16 weights written
    opt_bytes = params * (2 * 2 * MOMENT_BYTES + cm.hp_bytes + (2 * cm.hp_bytes if fp32 else 2 * MOMENT_BYTES
                                                                  + cm.hp_bytes))
    optimizer_s = max(cm.memory_s(opt_bytes), params * ADAMW_FLOPS_PER_PARAM / cm.vector_rate) \
        + cm.kernel_launch_s

    backward_core_s = layer_backward_s + head_backward_s + embedding_backward_s
    reload_s = 0.0
    peak, held = activation_bytes, 0.0
    if reuse == "recompute":
        forward_s, backward_s = layer_forward_s + head_s + embedding_s + host_s, backward_core_s
    else:  # the tokens not recorded: their layers' and embedding's forward (the head's runs over all: backward_s)
        recomputed = 1.0 - reused_share
        forward_s, backward_s = (layer_forward_s + embedding_s + host_s) * recomputed, head_s + backward_core_s
        if reuse == "offload":
            link = (host_link_bytes_per_s if host_link_bytes_per_s is not None
                    else cm.hw.interconnect.pcie_bandwidth_bytes_per_s * cm.eff.link_efficiency)
            reload_s = exposed_reload_s(layer_backward_s / L, head_s + head_backward_s, L, keep_layers,
                                        reused_share * per_layer / link)
            # the recorded share in the reload slots, the recomputed share's every layer until its backward
            peak = head_bytes + per_layer * (reused_share * reload_slots(L, keep_layers) + recomputed * L)
        held = reused_share * tokens * held_bytes_per_token(cm, method, reuse, lora_rank=lora_rank,
                                                            keep_layers=keep_layers)
    return TrainingStep(forward_s, backward_s, optimizer_s, reload_s, activation_bytes, peak, weight_state_bytes,
                        head_forward_s=head_s, trained_params=params, tokens=tokens, held_bytes=held)


def reload_slots(layers: int, keep_layers: int) -> int:
    """Layers' activations an offload step holds at once: the kept ones, and at least two (one computing, one
    arriving)."""
    return max(keep_layers, min(2, layers))


def exposed_reload_s(layer_backward_s: float, head_s: float, layers: int, keep_layers: int,
                     layer_reload_s: float) -> float:
    """Reload time the backward waits for: layers L-1 .. 0 in backward order after the head (`head_s`); the last
    `keep_layers` are resident, each other one is reloaded over the link (one at a time, `layer_reload_s` each)
    into a free one of the reload_slots(): the slots the kept layers leave free from the start, then each slot a
    layer's finished backward frees (its activations dropped), in order."""
    free_at_start = reload_slots(layers, keep_layers) - keep_layers
    ends: list[float] = []  # each layer's backward end, in backward order: when its slot frees
    link_free, end, waited = 0.0, head_s, 0.0
    for position in range(layers):  # position 0 is layer L-1
        start = end
        offloaded = position - keep_layers  # this layer's place among the reloads (< 0: kept)
        if offloaded >= 0:
            slot = offloaded - free_at_start  # the slot it takes: free from the start, or the n-th layer's
            link_free = max(link_free, ends[slot] if slot >= 0 else 0.0) + layer_reload_s
            if link_free > end:  # the backward waits for this layer's activations
                waited += link_free - end
                start = link_free
        end = start + layer_backward_s
        ends.append(end)
    return waited
