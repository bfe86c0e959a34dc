"""Memory per GPU: weights, KV cache per token, activation peak -> how many KV tokens fit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from phasewise.perf.kv_geometry import (
    kv_bytes_per_token_layer,
    kv_heads_per_gpu,
)
from phasewise.perf.parallel import ParallelLayout
from phasewise.perf.shared_block_pool import SharedBlockPool, shared_block_pool
from phasewise.perf.vocab_split import profile_of, vocab_split
from phasewise.perf.window_kv import kv_token_equivalents
from phasewise.perf.window_pages import WindowPages, window_pages
from phasewise.specs.catalog import packaged
from phasewise.specs.engine_kv import (
    compressed_block_pool_rule,
    compressed_window_pages_rule,
    recurrent_state_in_kv_pool,
)
from phasewise.specs.engine_profile import EngineProfile
from phasewise.specs.engines import EngineConfig
from phasewise.specs.hardware import HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme, dtype_bytes, load_quant

FRACTION_OF = ("total", "static", "free")  # what an engine's memory fraction is a fraction of (memory_fit)


@dataclass(slots=True, frozen=True)
class MemoryFit:
    """Bytes on the most loaded GPU of a TP x PP group (the first pipeline stage holds the embedding)."""

    capacity_bytes: float
    usable_bytes: float  # capacity x memory fraction
    weight_bytes: float
    activation_bytes: float
    reserved_bytes: float  # runtime context and workspace (HardwareSpec.efficiency.reserved_bytes)
    kv_bytes_per_token: float  # all layers of one stage, this GPU's share of the KV heads
    kv_capacity_tokens: int
    kv_needed_tokens: int
    # linear-attention layers: each seat's recurrent state (all layers of a stage, this GPU's heads), held for every
    # sequence the engine may run at once, out of what the KV cache would otherwise take
    state_bytes_per_sequence: float = 0.0
    state_bytes: float = 0.0
    state_seats: int | None = None  # sequences the states' own pool holds (an engine with such a pool), else None
    # the states taken from the KV pool by each running sequence instead (vLLM V1's hybrid KV cache manager): none
    # reserved up front (kv_state_pages: what one takes, in the blocks it comes in)
    state_in_kv_pool: bool = False
    # what the engine holds per request slot beside the KV pool, for all its slots (slot_state_bytes: SGLang's
    # DeepSeek-V4 HCA compressor rings)
    slot_bytes: float = 0.0
    # the KV memory a prefill chunk of the step's token budget holds for its windows until its forward ends, kept
    # free of running sequences' KV (DeepSeek-V4 under vLLM and TensorRT-LLM: compressed_kv_pool's chunk_bytes)
    chunk_window_bytes: float = 0.0
    # the KV block the pool is cut into (kv_state_pages' block: the engine's, raised for a hybrid's states): a batch
    # fits in whole blocks (kv_pool_sequences), as the simulator's KVBlocks hold it
    kv_block_tokens: int = 1
    # the sequences a batch runs at once, and the most the engine runs (its max_num_seqs / max_running_requests /
    # max_batch_size; None: no cap checked)
    sequences: int = 0
    max_sequences: int | None = None

    @property
    def kv_free_bytes(self) -> float:
        return (self.usable_bytes - self.weight_bytes - self.activation_bytes - self.reserved_bytes - self.state_bytes
                - self.slot_bytes - self.chunk_window_bytes)

    @property
    def over_capacity_bytes(self) -> float:
        """What the usable memory exceeds the GPU by: under a fraction of the static pool (SGLang's
        --mem-fraction-static) the activations and reserved memory live in what the fraction leaves, and more of
        them than that runs the GPU out of memory (0 where all fits)."""
        return max(self.usable_bytes - self.capacity_bytes, 0.0)

    @property
    def kv_pool_tokens(self) -> int:
        """kv_capacity_tokens in whole blocks (kv_block_tokens): what a batch's blocks are taken from."""
        return self.kv_capacity_tokens // self.kv_block_tokens * self.kv_block_tokens

    @property
    def over_sequences(self) -> bool:
        return self.max_sequences is not None and self.sequences > self.max_sequences

    @property
    def fits(self) -> bool:
        return (self.kv_free_bytes > 0 and self.kv_pool_tokens >= self.kv_needed_tokens
                and self.state_seats != 0 and not self.over_capacity_bytes and not self.over_sequences)

    def reason(self) -> str:
        gib = 2**30
        if self.over_capacity_bytes:
            outside = self.capacity_bytes - (self.usable_bytes - self.activation_bytes - self.reserved_bytes)
            return (f"activations {self.activation_bytes / gib:.1f} GiB + reserved {self.reserved_bytes / gib:.1f} GiB "
                    f"exceed the {outside / gib:.1f} GiB per GPU the memory fraction leaves beside its static pool "
                    "(weights and KV): lower the memory fraction")
        if self.kv_free_bytes <= 0:
            state = (f" + recurrent state {self.state_bytes / gib:.1f} GiB (its seats x "
                     f"{self.state_bytes_per_sequence / 2**20:.1f} MiB: lower the engine's max sequences)"
                     if self.state_bytes else "")
            state += (f" + request-slot state {self.slot_bytes / gib:.1f} GiB (lower the engine's max sequences)"
                      if self.slot_bytes else "")
            state += (f" + a prefill chunk's window blocks {self.chunk_window_bytes / gib:.1f} GiB (lower the token "
                      "budget)" if self.chunk_window_bytes else "")
            return (f"weights {self.weight_bytes / gib:.1f} GiB + activations {self.activation_bytes / gib:.1f} GiB"
                    f" + reserved {self.reserved_bytes / gib:.1f} GiB{state} exceed the usable "
                    f"{self.usable_bytes / gib:.1f} GiB per GPU")
        if self.state_seats == 0:
            return (f"the recurrent-state pool holds no sequence ({self.state_bytes / gib:.2f} GiB for "
                    f"{self.state_bytes_per_sequence / 2**20:.1f} MiB per sequence)")
        if self.kv_pool_tokens < self.kv_needed_tokens:
            blocks = f" (in {self.kv_block_tokens}-token blocks)" if self.kv_block_tokens > 1 else ""
            return (f"the batch needs {self.kv_needed_tokens} KV tokens{blocks} but only "
                    f"{self.kv_pool_tokens} fit per GPU")
        if self.over_sequences:
            return (f"the batch of {self.sequences:,} sequences exceeds the engine's {self.max_sequences:,} running "
                    "at once (its max sequences: --max-num-seqs / --max-running-requests / max_batch_size)")
        return "fits"


def padded_expert_widths(model: ModelSpec, quant: QuantScheme, moe_tp: int, engine: str | None = None,
                         hardware: HardwareSpec | None = None) -> tuple[float, float]:
    """(hidden, intermediate per GPU) one routed expert is allocated and multiplied at: the checkpoint's
    (expert_hidden_size, expert_intermediate_size / moe_tp), each rounded up to the multiple `engine`'s (its profile
    name) MoE kernels pad the experts' stored scheme (quant.experts_scheme()) to on `hardware`'s path for it
    (quant.yaml expert_padding: vLLM's and SGLang's MXFP4 MoE, 256 and 256 on Blackwell's FP4 path, 64 and none
    expanded on Hopper). An engine, scheme or path not listed there, or no engine or hardware given: as stored."""
    hidden, intermediate = model.expert_hidden_size, model.expert_intermediate_size / moe_tp
    stored = load_quant(quant.experts or quant.name)  # as the checkpoint stores them, not as a chip runs them
    rules = packaged("quant.yaml").get("expert_padding", {}).get(stored.name, {})
    if engine is None or hardware is None or engine not in rules:
        return hidden, intermediate
    path = "fp4_path" if stored.on(hardware).compute_dtype == stored.compute_dtype else "expanded"
    rule = rules[engine].get(path)
    if rule is None:
        return hidden, intermediate
    return (math.ceil(hidden / rule["hidden"]) * rule["hidden"],
            math.ceil(intermediate / rule["intermediate"]) * rule["intermediate"])


def weight_bytes_per_gpu(model: ModelSpec, quant: QuantScheme, tp: int, pp: int,
                         layout: ParallelLayout | None = None, embeddings: bool = True,
                         engine: str | EngineProfile | None = None, hardware: HardwareSpec | None = None) -> float:
    """Weights on the most loaded GPU. With attention data parallelism (`layout`) the attention, dense MLP,
    shared experts and embeddings are whole on every attention rank's tp / attention_dp GPUs (the embedding and
    output head where `engine` holds them: vocab_split); the routed experts are spread over all tp GPUs (expert or
    tensor parallel) either way, at the widths `engine` (a profile, or its name: profile_of) allocates them on
    `hardware` (padded_expert_widths; None: as stored). `embeddings` False: without the input embedding and output
    head (a module that shares the target's, draft_memory)."""
    m = model
    profile = profile_of(engine)
    engine = profile.name if profile is not None else engine
    hp = dtype_bytes(quant.compute_dtype if quant.compute_dtype in ("fp32", "fp16") else "bf16")
    layers = math.ceil(m.num_layers / pp)
    moe_share = m.num_moe_layers / m.num_layers
    dp = layout.attention_dp if layout is not None else 1
    attention_tp = tp // dp
    compressed_extra = 0.0  # compressed attention's BF16 / FP32 weights, whole on every rank (per layer)
    if m.latent_attention:  # the q and KV down-projections are whole on every TP rank, the rest split by head
        whole = m.hidden_size * (m.q_lora_rank + m.kv_latent_size)
        attn = whole + (m.attention_params - whole) / attention_tp
    elif m.compressed is not None:  # q_a and the K = V projection whole on every rank (one KV head), the rest split
        whole = m.hidden_size * (m.q_lora_rank + m.head_dim)
        attn = whole + (m.attention_params - whole) / attention_tp
        # the compressors, the indexers' q_b (FP8, counted here as BF16 with them) and weights, the mixers (FP32)
        compressed_extra = m.compression_params / m.num_layers * hp
    else:
        attn = _softmax_attention_weights(m, attention_tp)
    if m.linear_attention_layers:  # the mean layer of a hybrid stack: its linear layers' mixers split by head
        whole = m.hidden_size * sum(m.linear_low_rank)  # but KDA's low-rank down-projections, on every rank
        # and a single Mamba-2 group's B and C projections and conv taps, whole on every rank
        replicated = m.linear_replicated_width(attention_tp) * (m.hidden_size + m.linear_conv_kernel)
        linear = (m.linear_attention_params - whole) / attention_tp + whole + replicated
        attn = attn * (1 - m.linear_layer_share) + linear * m.linear_layer_share
    attn *= 1.0 - m.attention_free_share  # the mean layer's: attention-free layers hold none
    latent = m.moe_latent_params  # a latent MoE's projections: whole on every GPU (replicated)
    # the router: whole on every GPU and unquantized (vLLM's and SGLang's MoE gates are ReplicatedLinear layers
    # built without a quant_config, as the cost model's moe_router operator reads them), in BF16 below
    router = m.hidden_size * m.num_experts
    dense = m.dense_mlp_params * m.dense_mlp_width_factor * m.dense_layer_share  # double-wide layers' share too
    if dp == 1:
        mlp = dense / tp + ((m.moe_layer_params - latent - router) / tp + latent) * moe_share
    else:
        shared = m.mlp_matrices * m.hidden_size * m.shared_expert_intermediate_size
        mlp = (dense / attention_tp
               + ((m.moe_layer_params - shared - latent - router) / tp + shared / attention_tp + latent) * moe_share)
    mlp += m.per_layer_input_layer_params  # the per-layer-input gate and projection, whole on every GPU
    norms = 2 * m.hidden_size * hp
    # the routed experts (spread over all tp GPUs either way) in their own scheme where the checkpoint stores them
    # apart (QuantScheme.experts: DeepSeek-V4's MXFP4 beside FP8 blocks)
    routed = m.num_experts * m.mlp_matrices * m.expert_hidden_size * m.expert_intermediate_size / tp * moe_share
    held = routed  # as the engine allocates them: padded where its kernels pad (padded_expert_widths)
    if m.num_experts and engine is not None:
        ep, moe_tp = (layout.ep, layout.moe_tp) if layout is not None else (1, tp)
        hidden, intermediate = padded_expert_widths(m, quant, moe_tp, engine, hardware)
        held = m.num_experts / ep * m.mlp_matrices * hidden * intermediate * moe_share
    expert_bytes = quant.experts_scheme().weight_bytes_per_param
    per_layer = ((attn + mlp - routed) * quant.weight_bytes_per_param + held * expert_bytes + norms
                 + router * moe_share * hp + compressed_extra)
    split = vocab_split(m, tp, dp, profile)
    embed = m.embedding_params / split.embedding_gpus * hp if embeddings else 0.0
    lm_head = m.embedding_params / split.lm_head_gpus * hp if embeddings and (pp > 1 or not m.tie_embeddings) else 0.0
    if embeddings:  # per-layer embeddings: the table split as the embedding is, its projection (in BF16) with it
        embed += m.per_layer_input_params / split.embedding_gpus * hp
    # a vision encoder on the first stage, in the unquantized dtype (bf16, or fp32 / fp16 where the model runs in
    # them), its projections split over the attention TP ranks (vLLM's and SGLang's Column/RowParallelLinear; its
    # patch and position embeddings, ~1 %, are counted as split too; an InternViT's attention whole where its heads
    # do not divide: VisionEncoder.params_per_gpu)
    encoder = m.vision.params_per_gpu(attention_tp) * hp if embeddings and m.vision is not None else 0.0
    first = layers * per_layer + embed + encoder + (lm_head if pp == 1 else 0.0)
    last = (m.num_layers - layers * (pp - 1)) * per_layer + lm_head if pp > 1 else first
    return max(first, last)


def _softmax_attention_weights(m: ModelSpec, attention_tp: int) -> float:
    """Parameters of the mean softmax-attention layer on one GPU of an `attention_tp`-wide group: q (with an output
    gate), k and v (replicated where TP exceeds the KV heads; one projection where the values come from the key's),
    o (from values v_dim wide); windowed layers of their own geometry at theirs, in their share."""
    def layer(q_proj: int, kv_heads: int, kv_width: int, v_dim: int) -> float:
        kv_rep = kv_heads_per_gpu(kv_heads, attention_tp) * attention_tp / kv_heads  # > 1 when TP replicates them
        return m.hidden_size * (q_proj + m.num_heads * v_dim + kv_heads * kv_width * kv_rep) / attention_tp

    full = layer(m.q_proj_size, m.num_kv_heads, m.kv_proj_size // m.num_kv_heads, m.v_dim)
    q_window = m.num_heads * m.window_layer_head_dim
    window = layer(q_window, m.window_layer_kv_heads, m.window_layer_head_dim + m.window_layer_v_dim,
                   m.window_layer_v_dim) if m.window_own_geometry else full
    if m.kv_shared_layers:  # KV-shared layers: q and o only, in their kind's share
        shared_full = m.kv_shared_layers - m.kv_shared_window_layers
        full_layers = m.full_kv_layers + shared_full
        full += (layer(m.q_proj_size, m.num_kv_heads, 0, m.v_dim) - full) * shared_full / full_layers
        if m.kv_shared_window_layers:
            q_only = layer(q_window, m.window_layer_kv_heads, 0, m.window_layer_v_dim)
            window += (q_only - window) * m.kv_shared_window_layers / (m.window_kv_layers + m.kv_shared_window_layers)
    if window is full:
        return full
    return full + (window - full) * m.window_layer_share


def mtp_module(model: ModelSpec) -> ModelSpec:
    """The model's multi-token-prediction module as a one-layer model: its Transformer block (a MoE one where the
    model has MoE layers; softmax attention; compressed attention's sliding kind, as DeepSeek-V4's compress_ratios
    lists its MTP layer: 0). DeepSeek-V3's technical report (arXiv 2412.19437, section 2.2): each MTP module is a
    shared embedding, a shared output head, one Transformer block and a d x 2d projection."""
    compressed = model.compressed
    if compressed is not None:
        compressed = compressed.model_copy(update={"csa_layers": 0, "hca_layers": 0})
    return model.model_copy(update={"compressed": compressed, "num_layers": 1,
                                    "num_moe_layers": min(model.num_moe_layers, 1),
                                    "linear_attention_layers": 0, "sliding_window": None, "chunked_attention": False,
                                    "sliding_window_layers": None, "mlp_free_layers": 0, "window_head_dim": 0,
                                    "window_kv_heads": 0, "kv_shared_layers": 0, "kv_shared_window_layers": 0,
                                    "wide_mlp_layers": 0, "per_layer_input_size": 0, "per_layer_input_vocab": 0})


def draft_memory(model: ModelSpec, draft: ModelSpec | None, quant: QuantScheme, tp: int,
                 layout: ParallelLayout | None = None) -> tuple[float, float]:
    """(weight bytes, KV bytes per token) a speculative draft adds on one GPU of a tp-GPU target instance, its KV
    held in the same pool as the target's (vLLM's KV cache groups, SGLang's draft pool of the same token count,
    TensorRT-LLM's MTP layers in the target's KV cache manager). `draft` None: the model's MTP modules (mtp_module;
    its num_nextn_predict_layers, at least one), each its block and d x 2d projection (BF16, on every GPU), the
    embedding and output head the target's; else a draft model at the target's TP, whole (its own embedding and
    head)."""
    dp = layout.attention_dp if layout is not None else 1
    if draft is None:
        block = mtp_module(model)
        projection = 2 * model.hidden_size * model.hidden_size * dtype_bytes("bf16")
        weights = weight_bytes_per_gpu(block, quant, tp, 1, layout, embeddings=False) + projection
        modules = max(model.mtp_layers, 1)
        if model.compressed is not None:  # DeepSeek-V4's MTP layer is a sliding layer: it holds its window only,
            # as the engine holds the target's windows (SGLang: its pools' (T + D) / T, window_pool_speculation;
            # vLLM: one more layer of a window group, which the pool's layer sets already hold; TensorRT-LLM: one
            # more window role, a 128-token page of 512-byte entries a sequence, 64 KiB, not modelled)
            return modules * weights, 0.0
        return modules * weights, modules * kv_bytes_per_token(block, quant, tp // dp, 1)
    return weight_bytes_per_gpu(draft, quant, tp, 1), kv_bytes_per_token(draft, quant, tp, 1)


def kv_bytes_per_token(model: ModelSpec, quant: QuantScheme, tp: int, pp: int) -> float:
    """KV bytes of one token on one GPU of a stage whose attention runs over `tp` GPUs (with attention data
    parallelism: tp / attention_dp, and the token lives on one attention rank only)."""
    layers = math.ceil(model.num_layers / pp)
    if model.window_layer_share:  # a hybrid stack's windowed layers keep a sequence's last `window` tokens only:
        layers -= round(layers * model.window_layer_share)  # per token, only its full layers count (kv_window_terms)
    layers -= round(layers * model.linear_layer_share)  # linear-attention layers keep no KV at all
    layers -= round(layers * model.attention_free_share)  # nor attention-free ones
    layers -= model.kv_shared_layers - model.kv_shared_window_layers  # nor KV-shared ones (pp 1: check_parallelism)
    return kv_bytes_per_token_layer(model, quant, tp) * layers


def recurrent_state_bytes_per_sequence(model: ModelSpec, quant: QuantScheme, tp: int, pp: int,
                                       state_dtype: str = "bf16") -> float:
    """One sequence's recurrent state on one GPU of a stage whose attention runs over `tp` GPUs: in each
    linear-attention layer its value heads' key_head_dim x value_head_dim matrices (at `state_dtype`, the engine's
    recurrent_state_dtype) and the conv's last conv_kernel - 1 inputs per channel (activation dtype; a single Mamba-2
    group's B and C channels whole on every GPU: ModelSpec.linear_replicated_width); 0 without such layers."""
    m = model
    if not m.linear_attention_layers:
        return 0.0
    layers = m.stage_layers(pp)[1]
    ssm = m.linear_value_heads * m.linear_key_head_dim * m.linear_value_head_dim * dtype_bytes(state_dtype)
    conv = m.linear_conv_channels(tp) * max(m.linear_conv_kernel - 1, 0) * quant.activation_bytes
    return layers * (ssm / tp + conv)


# vLLM rounds the attention block it raises for a hybrid's state page to a multiple of this many tokens
# (platforms/interface.py, kernel_block_alignment_size; the sizes vLLM logs: 528, 864, 7,808, 8,320 tokens)
HYBRID_BLOCK_ALIGN_TOKENS = 16


def kv_state_pages(config: EngineConfig, model: ModelSpec, quant: QuantScheme, tp: int, pp: int,
                   block_tokens: int = 16) -> tuple[int, float]:
    """(KV block tokens, state tokens) of an engine that takes a linear hybrid's recurrent states from its KV pool
    (vLLM V1: recurrent_state_in_kv_pool), as its hybrid KV cache manager lays the pool out (docs/design/
    hybrid_kv_cache_manager.md, case 4): one page size for every layer group, so the attention block grows until
    one layer's block of KV holds one layer's state (a multiple of HYBRID_BLOCK_ALIGN_TOKENS: 1,072 tokens for
    Nemotron-3-Nano), the states padded to it; layers grouped by the smaller of the two layer counts, each state
    group one block per running sequence. The state tokens are in kv_bytes_per_token's unit (every attention layer's
    KV of one token). DeepSeek-V4 under vLLM and TensorRT-LLM (compressed_kv_pool): its block or page, and the
    windows a decoding sequence holds, in its tokens. Otherwise (block_tokens, 0): the states held apart, or none."""
    pool = compressed_kv_pool(config, model, quant, pp, block_tokens)
    if pool is not None:
        return pool.block_tokens, pool.sequence_window_bytes / pool.bytes_per_token
    if not recurrent_state_in_kv_pool(config, model):
        return block_tokens, 0.0
    state = recurrent_state_bytes_per_sequence(model, quant, tp, pp, config.profile.recurrent_state_dtype)
    kv_token = kv_bytes_per_token(model, quant, tp, pp)
    layers, linear = model.stage_layers(pp)
    attention = layers - linear
    align = HYBRID_BLOCK_ALIGN_TOKENS
    raised = align * math.ceil(state / linear / (align * kv_token / attention))
    block = max(block_tokens, raised)
    group = min(attention, linear)
    return block, math.ceil(linear / group) * group * block / attention


def kv_block_pool(config: EngineConfig, model: ModelSpec, quant: QuantScheme, pp: int = 1) -> SharedBlockPool | None:
    """The block pool every cache group of `model` shares under this engine (vLLM's DeepSeek-V4 pool:
    perf/shared_block_pool.py), one GPU of a `pp`-stage pipeline; None where the engine keeps no such pool."""
    rule = compressed_block_pool_rule(config, model)
    return shared_block_pool(model, quant, rule, pp) if rule is not None else None


def compressed_kv_pool(config: EngineConfig, model: ModelSpec, quant: QuantScheme, pp: int = 1,
                       block_tokens: int | None = None) -> SharedBlockPool | WindowPages | None:
    """How this engine holds compressed attention's windows beside its context (DeepSeek-V4), one GPU of a `pp`-stage
    pipeline: vLLM's pool every cache group shares (kv_block_pool), TensorRT-LLM's window pages (perf/window_pages.py,
    at `block_tokens` token slots a page where the engine keeps that size, else its default); None where the windows
    are per sequence in the KV terms (SGLang's own pools: kv_window_terms window_pool) or there are none."""
    pool = kv_block_pool(config, model, quant, pp)
    if pool is not None:
        return pool
    rule = compressed_window_pages_rule(config, model)
    if rule is None or not model.compressed.compressed_layers:  # sliding layers only: windows per sequence
        return None
    page = block_tokens if block_tokens in rule["keeps"] else rule["block_tokens"]
    return window_pages(model, quant, page, kv_bytes_per_token(model, quant, 1, pp), pp)


def kv_sequence_tokens(tokens: float, terms: tuple[float, float, int, bool], pages: tuple[int, float]) -> float:
    """KV tokens one sequence of `tokens` context takes from the pool: its kv_token_equivalents (`terms`) in the
    pool's whole blocks, plus its states' or windows' worth where the engine keeps them there (`pages`:
    kv_state_pages' (block, state tokens))."""
    block, state = pages
    return math.ceil(kv_token_equivalents(tokens, terms) / block) * block + state


def kv_pool_sequences(capacity_tokens: int, tokens: float, terms: tuple[float, float, int, bool],
                      pages: tuple[int, float]) -> int:
    """Sequences of `tokens` context a pool of `capacity_tokens` (MemoryFit.kv_capacity_tokens) holds at once: its
    whole blocks (the simulator's KVBlocks(capacity // block)) over one sequence's kv_sequence_tokens. The one
    rounding rule of estimate's max batch and the planner's floor (vLLM: a pool of num_blocks blocks, a request
    whole blocks; its reserved null block is not modelled)."""
    pool = capacity_tokens // pages[0] * pages[0]
    return int(pool // max(kv_sequence_tokens(tokens, terms, pages), 1))


# the sequences the start-up profile's activations are sized for, at most (vLLM's profile run spreads
# max_num_batched_tokens over min(max_num_seqs, tokens) dummy requests; beyond 1,024 the logits are negligible)
PROFILE_MAX_SEQS = 1024


def profile_batch(config: EngineConfig, max_seqs: int | None = None) -> tuple[int, int]:
    """(tokens, sequences) of one iteration the engine sizes its memory for at start-up, before it sizes the KV pool:
    its token budget (vLLM's profile run at max_num_batched_tokens, TensorRT-LLM's at max_num_tokens, SGLang's
    chunked-prefill size) over its max sequences (`max_seqs`, else the engine's), at most PROFILE_MAX_SEQS. One pool
    size per deployment: simulate, estimate and the planner's floor all pass it to memory_fit."""
    return config.token_budget, min(config.max_seqs if max_seqs is None else max_seqs, PROFILE_MAX_SEQS)


def activation_bytes(model: ModelSpec, quant: QuantScheme, tp: int, max_tokens: int, max_seqs: int,
                     logit_tokens: int | None = None) -> float:
    """Peak transient memory of one iteration: live hidden states, QKV, MLP intermediate, fp32 logits (of
    `logit_tokens` positions; default one per sequence, its last: a diffusion LM's forward has one at every new
    position)."""
    m = model
    a = quant.activation_bytes if quant.compute_dtype != "fp32" else 4.0
    inter = max(m.intermediate_size, m.widest_mlp_size, m.expert_intermediate_size * max(m.experts_per_token, 1))
    per_token = (4 * m.hidden_size + (m.q_size + 2 * m.kv_size) / tp + 2 * inter / tp) * a
    logits = max_seqs if logit_tokens is None else logit_tokens
    return max_tokens * per_token + logits * m.vocab_size / tp * 4.0


def memory_fit(model: ModelSpec, hardware: HardwareSpec, quant: QuantScheme, tp: int = 1, pp: int = 1,
               max_tokens: int = 8192, max_seqs: int = 256, kv_needed_tokens: int = 0,
               memory_fraction: float = 0.9, layout: ParallelLayout | None = None,
               fraction_of: str = "total", state_dtype: str = "bf16",
               state_pool_ratio: float | None = None, draft: tuple[float, float] = (0.0, 0.0),
               state_in_kv_pool: bool = False, slot_bytes: float = 0.0,
               kv_pool: SharedBlockPool | WindowPages | None = None, buffer_bytes: float = 0.0,
               logit_tokens: int | None = None, engine: str | EngineProfile | None = None) -> MemoryFit:
    """Memory of the most loaded GPU; `max_tokens`/`max_seqs` bound one iteration's batch. With attention
    data parallelism (`layout`) each attention rank holds the KV of its own sequences and runs 1/attention_dp
    of the batch: kv_capacity_tokens is then the instance's, all ranks together. `memory_fraction` (FRACTION_OF):
      total   of the whole GPU, for everything the engine holds (vLLM's gpu_memory_utilization);
      static  of the GPU's memory free before loading (the whole GPU less the runtime's context, reserved_bytes),
              for the weights and the KV pool only: activations, CUDA graphs and the runtime live in the rest
              (SGLang's mem_fraction_static, srt/server_args.py _handle_gpu_memory_settings; its pool:
              model_runner.py profile_max_num_token);
      free    of the memory left once the weights, activations and runtime are in (TensorRT-LLM's
              free_gpu_memory_fraction: that share of torch.cuda.mem_get_info()'s free bytes,
              _torch/pyexecutor/resource_manager.py).
    Linear-attention layers: the recurrent state (at `state_dtype`) of `max_seqs` sequences is held beside the KV
    cache (a slot per sequence the engine may run: TensorRT-LLM, vLLM V0); with `state_pool_ratio` the states get
    their own pool of that many times the KV cache's memory instead, and its slots (state_seats) cap the running
    sequences (SGLang's mamba pool, --mamba-full-memory-ratio); with `state_in_kv_pool` nothing is held apart: each
    running sequence takes its state from the KV pool (vLLM V1's hybrid KV cache manager; kv_state_pages, which
    the simulator's blocks, the planner's floor and estimate's batch count). `draft`: a speculative draft's (weight
    bytes, KV bytes per token) on this GPU (draft_memory), held beside the target's: its KV shares the pool, so each
    token of kv_capacity_tokens holds both (kv_bytes_per_token stays the target's). `slot_bytes`: what the engine
    holds on this GPU for its request slots beside the KV pool (slot_state_bytes x its slots on the GPU).
    `kv_pool`: how the engine holds compressed attention's windows (compressed_kv_pool: DeepSeek-V4 under vLLM and
    TensorRT-LLM): a KV token costs its bytes per token, and a prefill chunk of the step's token budget keeps what
    its windows hold free. `buffer_bytes`: what the engine holds for its MoE exchange (perf/deepep_buffers.py
    exchange_buffer_bytes), reserved beside the runtime's. `logit_tokens`: the positions whose logits one iteration
    holds (activation_bytes; default one per sequence of `max_seqs`). `engine`: the engine's profile (or its name:
    profile_of), whose MoE kernels may pad the routed experts (padded_expert_widths; None: as stored) and which
    places the embedding and LM head under attention DP (vocab_split)."""
    dp = layout.attention_dp if layout is not None else 1
    attention_tp = tp // dp
    weights = weight_bytes_per_gpu(model, quant, tp, pp, layout, engine=engine, hardware=hardware) + draft[0]
    acts = activation_bytes(model, quant, attention_tp, math.ceil(max_tokens / dp), math.ceil(max_seqs / dp),
                            None if logit_tokens is None else math.ceil(logit_tokens / dp))
    reserved = hardware.efficiency.reserved_bytes + buffer_bytes
    if fraction_of not in FRACTION_OF:
        raise ValueError(f"fraction_of '{fraction_of}' is not one of {', '.join(FRACTION_OF)}")
    usable = hardware.memory_capacity_bytes * memory_fraction
    if fraction_of == "free":
        taken = weights + acts + reserved
        usable = taken + memory_fraction * max(hardware.memory_capacity_bytes - taken, 0.0)
    elif fraction_of == "static":  # the KV pool is what the weights leave of the fraction of the memory free
        # before loading (SGLang model_runner.py profile_max_num_token: rest = available - total x (1 - fraction),
        # total = init_torch_distributed's free memory, after the CUDA context and NCCL: the hardware's reserved)
        context = min(hardware.efficiency.reserved_bytes, hardware.memory_capacity_bytes)
        usable = (hardware.memory_capacity_bytes - context) * memory_fraction + acts + reserved
    per_token = kv_bytes_per_token(model, quant, attention_tp, pp)
    chunk = 0.0
    if kv_pool is not None:
        per_token = kv_pool.bytes_per_token
        chunk = kv_pool.chunk_bytes(math.ceil(max_tokens / dp))
    per_sequence = recurrent_state_bytes_per_sequence(model, quant, attention_tp, pp, state_dtype)
    seats = None
    if per_sequence and state_pool_ratio:
        state = max(usable - weights - acts - reserved, 0.0) * state_pool_ratio / (1.0 + state_pool_ratio)
        seats = int(state // per_sequence) * dp
    elif state_in_kv_pool:
        state = 0.0
    else:
        state = per_sequence * math.ceil(max_seqs / dp)
    free = usable - weights - acts - reserved - state - slot_bytes - chunk
    capacity = int(free // (per_token + draft[1])) * dp if free > 0 else 0
    return MemoryFit(hardware.memory_capacity_bytes, usable, weights, acts, reserved, per_token,
                     capacity, kv_needed_tokens, per_sequence, state, seats, state_in_kv_pool and per_sequence > 0,
                     slot_bytes, chunk)
