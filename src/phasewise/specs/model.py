"""A transformer architecture as the fields of its Hugging Face config.json that set its cost (ModelSpec).

specs/hf_config.py builds one from a config.json (any supported model_type) and loads the catalog: a catalog
entry (specs/data/models.yaml) holds the config.json fields verbatim, so a user's own config.json goes through the
same parser: `load_model("path/to/config.json")`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from phasewise.errors import PhasewiseError
from phasewise.specs.compressed_attention import CompressedAttention
from phasewise.specs.linear_mixer import LinearMixerShapes
from phasewise.specs.model_checks import check_model
from phasewise.specs.model_stack import kv_share_sources, stack_part
from phasewise.specs.vision import ImageGeometry, VisionEncoder
from phasewise.specs.window_shapes import WindowShapes


class ModelSpec(LinearMixerShapes, WindowShapes, BaseModel):
    """The shape of a decoder-only transformer, in the units the cost model needs."""

    # protected_namespaces: a field is named model_type, as config.json names it (pydantic < 2.10 warns on "model_")
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str
    model_type: str
    num_layers: int = Field(gt=0)
    # The config's own decoder layers (its num_hidden_layers) where the cost model counts its layers otherwise:
    # Falcon-H1 (each decoder layer costed as two, its attention with its MLP and its Mamba-2 mixer beside them),
    # Nemotron-H (one decoder layer per block of hybrid_override_pattern, costed as mixer blocks paired with MLP
    # blocks). What a user counts and what an engine's pipeline stages split (vLLM's make_layers over
    # num_hidden_layers / len(hybrid_override_pattern)): decoder_layers. 0: num_layers, which is then the config's
    num_hidden_layers: int = Field(default=0, ge=0)
    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(ge=0)  # dense MLP width (0 when every layer is MoE)
    vocab_size: int = Field(gt=0)
    tie_embeddings: bool = False
    mlp_gated: bool = True  # SwiGLU-style gate + up + down (3 matrices) vs up + down (2)
    causal: bool = True  # False for diffusion LMs (bidirectional attention)
    num_experts: int = Field(default=0, ge=0)  # routed experts (0 = dense)
    experts_per_token: int = Field(default=0, ge=0)
    expert_intermediate_size: int = Field(default=0, ge=0)
    shared_expert_intermediate_size: int = Field(default=0, ge=0)
    num_moe_layers: int = Field(default=0, ge=0)
    # DeepSeek-style group-limited routing (config.json n_group, topk_group): the routed experts in n_group equal
    # groups, the topk_group best groups kept and the top experts_per_token picked among their experts (vLLM
    # grouped_topk); None: every expert alike (what the all-to-all sends: perf/group_routing.py other_ranks_per_token)
    n_group: int | None = Field(default=None, ge=1)
    topk_group: int | None = Field(default=None, ge=1)
    # Latent MoE (Nemotron 3 Super: moe_latent_size): each MoE layer projects the hidden state down to this width
    # (fc1_latent_proj) before dispatching it to the routed experts, which read and write it, and back up
    # (fc2_latent_proj) after combining them; the router and the shared expert read the hidden state. 0: none
    moe_latent_size: int = Field(default=0, ge=0)
    sliding_window: int | None = Field(default=None, gt=0)
    # layers attending over the last sliding_window keys only; None: all of them (with sliding_window set).
    # Fewer than num_layers: a hybrid stack (gpt-oss alternates windowed and full layers)
    sliding_window_layers: int | None = Field(default=None, ge=0)
    # the windowed layers attend within fixed chunks of sliding_window tokens (Llama 4's chunked local attention:
    # a token sees its own chunk's earlier keys only), costed as a window of the chunk: exact while a sequence is
    # within its first chunk, an upper bound past it (a chunked layer reads (t mod chunk) + 1 keys, a window chunk)
    chunked_attention: bool = False
    # A hybrid stack's windowed layers with an attention geometry of their own (Gemma 4: head_dim 256 and 16 KV heads
    # on its sliding layers, 512 and 4 on its full ones): their head width and KV heads; 0 keeps head_dim /
    # num_kv_heads, which are then the full layers'. The query heads are num_heads in both
    window_head_dim: int = Field(default=0, ge=0)
    window_kv_heads: int = Field(default=0, ge=0)
    # A hybrid stack's layers in order, one letter each (specs/model_checks.py LAYER_KINDS: F full softmax attention, W
    # windowed softmax attention, L a linear recurrence, N no attention), as the config names them; "" where it does
    # not (or every layer is alike).
    # A device split's stage then holds the kinds its own range has (stack_part), not the stack's shares
    layer_pattern: str = ""
    # The full layers' values come from the key projection (Gemma 4's attention_k_eq_v: no v_proj; K and V are both
    # cached, V normed apart and without RoPE)
    value_from_key: bool = False
    # (v_head_dim, below, sets a value head's width for plain attention too: MiMo-V2-Flash's 128 beside its q.k 192,
    # in both kinds of layer)
    # Layers reusing an earlier layer's KV (Gemma 4 E2B / E4B's num_kv_shared_layers: the last ones, each attending
    # over the KV the last unshared layer of its kind stored): no K or V projection and no KV cache of their own;
    # kv_shared_window_layers of them windowed
    kv_shared_layers: int = Field(default=0, ge=0)
    kv_shared_window_layers: int = Field(default=0, ge=0)
    # dense layers whose MLP is twice intermediate_size wide (Gemma 4 E2B's use_double_wide_mlp, on its KV-shared ones)
    wide_mlp_layers: int = Field(default=0, ge=0)
    # dense MLPs whose widths differ layer by layer (Llama-Nemotron's NAS ffn_mult): intermediate_size is then their
    # mean, which every FLOP and byte is linear in, and this the widest (an iteration's transient activations); 0:
    # every dense MLP is intermediate_size wide
    widest_mlp_size: int = Field(default=0, ge=0)
    # Per-layer embeddings (Gemma 4 E2B / E4B: hidden_size_per_layer_input, vocab_size_per_layer_input): a table of
    # per_layer_input_vocab x num_layers x per_layer_input_size looked up per token, a projection of the embedded
    # token to the same width, and in every layer a gate (hidden -> size) and a projection back (size -> hidden)
    per_layer_input_size: int = Field(default=0, ge=0)
    per_layer_input_vocab: int = Field(default=0, ge=0)
    max_position_embeddings: int = Field(default=0, ge=0)
    norm: Literal["rms", "layer"] = "rms"
    # Multi-head latent attention (DeepSeek-V2/V3/R1, Kimi-K2; kv_lora_rank > 0): K and V are up-projected
    # from a per-token latent of kv_lora_rank elements plus a shared RoPE key of qk_rope_head_dim, which is
    # all the KV cache holds; head_dim is then the q.k width (qk_nope_head_dim + qk_rope_head_dim).
    q_lora_rank: int = Field(default=0, ge=0)  # 0: q projected from the hidden state directly
    kv_lora_rank: int = Field(default=0, ge=0)
    qk_rope_head_dim: int = Field(default=0, ge=0)
    v_head_dim: int = Field(default=0, ge=0)  # 0: head_dim
    mtp_layers: int = Field(default=0, ge=0)  # multi-token-prediction modules (num_nextn_predict_layers)
    # q and k RMSNormed before RoPE on the softmax attention layers (Qwen3's q_norm / k_norm over each head, Gemma 3
    # / 4's, OLMo 2's over every head at once): reading and writing q and k, one kernel's time for the two
    # (perf/operators.py QK_NORM_KERNELS, perf/cost.py)
    qk_norm: bool = False
    v_norm: bool = False  # the values RMSNormed too (Gemma 4's weightless v_norm): a kernel, reading and writing v
    # QK RMSNorm over the whole q and k projections, every head at once (MiniMax-M2: use_qk_norm with
    # qk_norm_type per_layer), not per head: under attention TP it needs a cross-rank all-reduce per layer
    qk_norm_across_heads: bool = False
    # norms a layer applies to the hidden stream beyond the two fused add + norms before attention and MLP: Gemma 2 /
    # 3 / 4's post_attention_layernorm and post_feedforward_layernorm, GLM-4's post_self_attn_layernorm and
    # post_mlp_layernorm (2); a kernel each, reading and writing the hidden state
    post_norms: int = Field(default=0, ge=0)
    # final_logit_softcapping (Gemma 2, Gemma 4 checkpoints): the logits divided by the cap, tanh'd and multiplied
    # back before sampling, three elementwise passes over them (perf/cost.py)
    logit_softcap: bool = False
    # Gated attention (Qwen3-Next, Qwen3.5: attn_output_gate): q_proj also projects a per-head sigmoid gate of the
    # query's width, applied to the attention output before o_proj
    attention_output_gate: bool = False
    # Linear-attention layers (gated DeltaNet: Qwen3-Next, Qwen3.5; layer_types "linear_attention"): this many layers
    # replace softmax attention by a recurrence whose state per sequence is a key_head_dim x value_head_dim matrix per
    # value head, constant in the context (no KV cache): in_proj (q, k, v and the output gate z; the per-head beta and
    # decay), a causal depthwise conv of linear_conv_kernel taps over q, k and v, the gated delta rule, a gated
    # RMSNorm, out_proj. The other layers keep softmax attention (full_attention) and the KV cache.
    linear_attention_layers: int = Field(default=0, ge=0)
    linear_key_heads: int = Field(default=0, ge=0)
    linear_value_heads: int = Field(default=0, ge=0)
    linear_key_head_dim: int = Field(default=0, ge=0)
    linear_value_head_dim: int = Field(default=0, ge=0)
    linear_conv_kernel: int = Field(default=0, ge=0)
    # the config.json's own names of linear_key_heads and linear_value_heads (Nemotron-H's n_groups and
    # mamba_num_heads, Falcon-H1's and Granite 4.0-H's mamba_n_groups and mamba_n_heads, ...): what a --tp error
    # names (perf/parallel.py check_parallelism)
    linear_head_fields: tuple[str, str] = ("linear_num_key_heads", "linear_num_value_heads")
    # The recurrence those layers run: gated DeltaNet (above), or Mamba-2's SSD (Nemotron-H: mamba_num_heads value
    # heads of mamba_head_dim, n_groups key heads whose B and C, ssm_state_size wide, the value heads share; in_proj
    # to z, x, B, C and one dt per head; the conv over x, B and C; a gated RMSNorm; out_proj). linear_chunk_tokens:
    # the chunk of the chunked prefill kernel (FLA's 64 for DeltaNet; the config's chunk_size for Mamba-2)
    # Kimi Delta Attention ("kda": Kimi Linear) is DeltaNet's rule with a per-channel decay: q, k and v projected
    # apart, beta per head, the decay and the output gate each through a low-rank pair (hidden -> head_dim, whole on
    # every TP rank, -> heads x head_dim, split), the conv over q, k and v
    # Mamba-1's selective scan ("mamba1": Jamba) is Mamba-2 with heads of width 1: each of the d_inner channels
    # (value heads, value_head_dim 1) has its own d_state-wide state (key_head_dim) and decay; in_proj makes x and z
    # only; x_proj makes each token's dt (linear_dt_rank wide), B and C from the channels (under TP a partial sum,
    # all-reduced: B and C are whole on every rank, so there are no key heads), dt_proj widens dt to the channels.
    # Lightning attention ("lightning": MiniMax-Text-01 / M1) is linear attention with a fixed decay per head: q, k,
    # v (SiLU) and an output gate projected from the hidden state, no conv, an RMSNorm across every head's output
    # (its variance all-reduced under TP). LFM2's short convolutions ("short_conv") keep no state but their conv's:
    # in_proj makes B, C and x per channel (value heads of width 1, no key heads, key_head_dim 0), a depthwise causal
    # conv of linear_conv_kernel taps over B x, C gates its output
    linear_recurrence: Literal["gated_deltanet", "mamba2", "kda", "mamba1", "lightning", "short_conv"] = \
        "gated_deltanet"
    linear_chunk_tokens: int = Field(default=64, gt=0)
    linear_dt_rank: int = Field(default=0, ge=0)  # Mamba-1's dt projection rank (mamba_dt_rank); 0 elsewhere
    # Layers whose block has a token mixer (attention or a linear recurrence) but no MLP: Nemotron-H stacks mixer and
    # MLP blocks as separate layers (hybrid_override_pattern), and pairs here each MLP block with a mixer block; the
    # mixers left over (its attention blocks placed between two recurrent ones) are these
    mlp_free_layers: int = Field(default=0, ge=0)
    # Layers with an MLP but no attention at all (Llama-Nemotron's NAS blocks whose attention is a no_op): no
    # projections, attention, KV, RoPE, attention norm or all-reduce after attention; every softmax cost is the mean
    # layer's over the stack (attention_free_share). Beside plain softmax layers only
    attention_free_layers: int = Field(default=0, ge=0)
    # RoPE on the softmax layers' q and k (Nemotron-H's attention has none: vLLM NemotronHAttention; nor have learned
    # or ALiBi positions: GPT-2, GPT-BigCode, ALiBi Falcons)
    attention_rope: bool = True
    # attention and MLP side by side, their outputs summed before one all-reduce a layer under TP, not one each
    # (Falcon with parallel_attn or new_decoder_architecture: vLLM falcon.py's reduce_row_parallel_results)
    parallel_block_reduce: bool = False
    # Sparse latent attention (DeepSeek sparse attention, DSA: DeepSeek-V3.2, GLM-5; index_topk > 0): a lightning
    # indexer of indexer_heads x indexer_head_dim FP8 queries against one indexer key per cached token (its own small
    # cache) scores every earlier token, and each query attends over the sparse_attention_topk best-scored only
    sparse_attention_topk: int = Field(default=0, ge=0)
    indexer_heads: int = Field(default=0, ge=0)
    indexer_head_dim: int = Field(default=0, ge=0)
    # measured routing skew: the share of routed tokens the busiest 20 % of experts take (0.2 = uniform); None:
    # not measured (perf/expert_load.py turns it into the busiest expert-parallel GPU's load)
    expert_top20_share: float | None = Field(default=None, ge=0.2, lt=1)
    # the checkpoint's own weight format (its quantization_config), a --precision name; None: unquantized (bf16)
    native_precision: str | None = None
    # why the checkpoint's quantization_config names no --precision here (a format or parameter not modelled:
    # specs/hf_quant.py checkpoint_precision), a one-line error: a run then needs --precision (default_precision
    # raises it), which sets what the weights are costed as; None: its format is read (native_precision) or it has none
    unmodelled_quantization: str | None = None
    # a multimodal checkpoint's vision encoder (specs/vision.py, built by specs/hf_vision.py): weights held on the
    # first pipeline stage, run over a request's images (perf/vision.py), never for a text request
    vision: VisionEncoder | None = None
    # DeepSeek-V4's compressed attention (specs/compressed_attention.py): every layer one K = V head of head_dim
    # (num_kv_heads 1) over a sliding window, some layers compressed entries beside it; q through q_lora_rank
    compressed: CompressedAttention | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        check_model(self)  # specs/model_checks.py
        return self

    # --- parameter counts (per layer unless named otherwise) ---------------------------------
    @property
    def encoder_params(self) -> int:
        """The vision encoder's parameters (0 for a text-only model)."""
        return self.vision.params if self.vision is not None else 0

    def image_geometry(self, width_px: int, height_px: int, flag: str = "--images-per-request") -> ImageGeometry:
        """One image's encoder patches and prompt tokens as this model's processor makes them (specs/vision.py); a
        model without a vision encoder is a one-line error naming `flag`, the option that gave it images."""
        if self.vision is None:
            raise PhasewiseError(f"{flag}: model '{self.name}' has no vision encoder (its config.json has no "
                                 "vision_config this parser reads), so it takes no image inputs")
        return self.vision.image_geometry(width_px, height_px)

    @property
    def default_precision(self) -> str:
        """The --precision a run takes when none is given: the checkpoint's native format, as engines load it; a
        format not modelled (unmodelled_quantization) is a one-line error asking for --precision."""
        if not self.native_precision and self.unmodelled_quantization:
            raise PhasewiseError(self.unmodelled_quantization)
        return self.native_precision or "bf16"

    @property
    def decoder_layers(self) -> int:
        """The config's decoder layers (num_hidden_layers): what a user counts and pipeline stages split; the cost
        model's num_layers where they are the same."""
        return self.num_hidden_layers or self.num_layers

    @property
    def kv_proj_size(self) -> int:
        """Output width of a full softmax layer's K and V projections: the keys, and the values unless they come from
        the key projection (value_from_key)."""
        return self.num_kv_heads * (self.head_dim + (0 if self.value_from_key else self.v_dim))

    @property
    def full_kv_layers(self) -> int:
        """Softmax layers attending over the whole context that hold KV: the unwindowed ones, less the KV-shared."""
        return (self.full_attention_layers - self.hybrid_windowed_layers
                - (self.kv_shared_layers - self.kv_shared_window_layers))

    @property
    def dense_mlp_width_factor(self) -> float:
        """The mean dense layer's MLP width over intermediate_size: 1, or more with double-wide layers."""
        if not self.wide_mlp_layers:
            return 1.0
        return (self.num_dense_layers + self.wide_mlp_layers) / self.num_dense_layers

    @property
    def per_layer_input_params(self) -> int:
        """Per-layer embeddings' weights outside the layers: the table and the model-level projection (0 without)."""
        width = self.num_layers * self.per_layer_input_size
        return width * (self.per_layer_input_vocab + self.hidden_size)

    @property
    def per_layer_input_layer_params(self) -> int:
        """One layer's per-layer-input gate and projection (0 without)."""
        return 2 * self.hidden_size * self.per_layer_input_size

    @property
    def uniform_layers(self) -> bool:
        """Whether every softmax layer is shaped alike (single_head_geometry), keeps its own KV and a plain MLP, and no
        per-layer embeddings run beside it: what the colocated trainer, operator mappings and attention offload
        take."""
        return self.single_head_geometry and not (self.kv_shared_layers or self.wide_mlp_layers
                                                  or self.per_layer_input_size or self.compressed is not None
                                                  or self.attention_free_layers or self.mlp_width_varies)

    @property
    def single_head_geometry(self) -> bool:
        """Whether every softmax layer's q, k and v heads share head_dim (latent attention aside): no windowed layers
        of their own geometry, no value width of its own on plain attention."""
        return not self.window_own_geometry and (self.latent_attention or self.v_dim == self.head_dim)

    @property
    def latent_attention(self) -> bool:
        """Multi-head latent attention (MLA): the KV cache holds a compressed latent, not K and V."""
        return self.kv_lora_rank > 0

    @property
    def v_dim(self) -> int:
        """Width of one head's value (and attention output)."""
        return self.v_head_dim or self.head_dim

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def kv_latent_size(self) -> int:
        """MLA: elements cached per token and layer (latent + shared RoPE key), shared by every head."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def indexer_params(self) -> int:
        """One layer's sparse-attention indexer: its query up-projection from the q latent, its key projection and
        its per-head weights from the hidden state (0 without sparse attention)."""
        if not self.sparse_attention_topk:
            return 0
        h = self.hidden_size
        return self.q_lora_rank * self.indexer_heads * self.indexer_head_dim + h * self.indexer_head_dim \
            + h * self.indexer_heads

    @property
    def indexer_key_bytes(self) -> int:
        """Bytes per cached token and layer of the indexer's key cache: FP8 keys and one FP32 scale (DeepSeek-V3.2's
        indexer, SGLang's NSA pool), whatever the KV dtype; 0 without sparse attention."""
        return self.indexer_head_dim + 4 if self.sparse_attention_topk else 0

    @property
    def q_proj_size(self) -> int:
        """Output width of the query projection: the queries, and with an output gate the gate beside them."""
        return self.q_size * (2 if self.attention_output_gate else 1)

    @property
    def full_attention_layers(self) -> int:
        """Layers with softmax attention (and a KV cache): all but the linear-attention and the attention-free ones."""
        return self.num_layers - self.linear_attention_layers - self.attention_free_layers

    @property
    def mlp_width_varies(self) -> bool:
        """Whether the dense MLPs' widths differ layer by layer (intermediate_size their mean)."""
        return self.widest_mlp_size > self.intermediate_size

    @property
    def attention_free_share(self) -> float:
        """Share of the layers without attention (0 when every layer attends)."""
        return self.attention_free_layers / self.num_layers

    @property
    def attending_share(self) -> float:
        """Share of the layers with an attention block (1 when every layer attends): the mean layer's scale of its
        attention and its projections."""
        return 1.0 - self.attention_free_share

    @property
    def linear_layer_share(self) -> float:
        """Share of the layers that are linear attention (0 when none are)."""
        return self.linear_attention_layers / self.num_layers

    def stage_layers(self, pp: int) -> tuple[int, int]:
        """(layers, linear-attention layers) of one pipeline stage of `pp`: ceil(num_layers / pp) layers at the
        stack's linear share, rounded (a stage is costed at the stack's shares)."""
        layers = math.ceil(self.num_layers / pp)
        return layers, round(layers * self.linear_layer_share)

    @property
    def attention_params(self) -> int:
        """QKV and O projection weights of one softmax-attention layer (MLA: q down/up, KV down (latent + RoPE
        key), KV up, O; an output gate: q_proj twice the query's width)."""
        h = self.hidden_size
        if self.compressed is not None:  # q_a, q_b, the K = V projection, o_a (per group), o_b, the sinks
            c = self.compressed
            return (h * self.q_lora_rank + self.q_lora_rank * self.q_size + h * self.head_dim
                    + self.q_size * c.o_lora_rank + c.o_groups * c.o_lora_rank * h + self.num_heads)
        if not self.latent_attention:
            return h * (self.q_proj_size + self.kv_proj_size) + self.num_heads * self.v_dim * h
        nope = self.head_dim - self.qk_rope_head_dim
        q = (h * self.q_lora_rank + self.q_lora_rank * self.q_size) if self.q_lora_rank else h * self.q_size
        kv_down = h * self.kv_latent_size
        kv_up = self.kv_lora_rank * self.num_heads * (nope + self.v_dim)
        return q + kv_down + kv_up + self.num_heads * self.v_dim * h + self.indexer_params

    @property
    def window_attention_params(self) -> int:
        """QKV and O projection weights of one windowed layer: attention_params at its own geometry where it has one
        (window_own_geometry: q, k, v and o of window_layer_head_dim-wide heads)."""
        if not self.window_own_geometry:
            return self.attention_params
        h, q, v = self.hidden_size, self.num_heads * self.window_layer_head_dim, self.window_layer_v_dim
        return h * (q + self.window_layer_kv_heads * (self.window_layer_head_dim + v)) + self.num_heads * v * h

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.mlp_gated else 2

    @property
    def dense_mlp_params(self) -> int:
        return self.mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def expert_hidden_size(self) -> int:
        """Width the routed experts read and write: a latent MoE's latent width, else the hidden size."""
        return self.moe_latent_size or self.hidden_size

    @property
    def moe_latent_params(self) -> int:
        """A latent MoE's down- and up-projections around its routed experts (0 without)."""
        return 2 * self.hidden_size * self.moe_latent_size

    @property
    def moe_layer_params(self) -> int:
        """All routed + shared expert weights, the router and the latent projections of one MoE layer."""
        per_expert = self.mlp_matrices * self.expert_hidden_size * self.expert_intermediate_size
        shared = self.mlp_matrices * self.hidden_size * self.shared_expert_intermediate_size
        return self.num_experts * per_expert + shared + self.hidden_size * self.num_experts + self.moe_latent_params

    @property
    def num_dense_layers(self) -> int:
        """Layers with a dense MLP: all but the MoE and the MLP-free ones."""
        return self.num_layers - self.num_moe_layers - self.mlp_free_layers

    @property
    def dense_layer_share(self) -> float:
        """Share of the layers with a dense MLP (the mean layer's, as the cost model builds it)."""
        return self.num_dense_layers / self.num_layers

    @property
    def mlp_free_share(self) -> float:
        return self.mlp_free_layers / self.num_layers

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_params(self) -> int:
        lm_head = 0 if self.tie_embeddings else self.embedding_params
        return (
            self.full_attention_layers * self.attention_params
            + self.hybrid_windowed_layers * (self.window_attention_params - self.attention_params)
            - self._kv_shared_projection_params
            + self.linear_attention_layers * self.linear_attention_params
            + (self.num_dense_layers + self.wide_mlp_layers) * self.dense_mlp_params
            + self.num_moe_layers * self.moe_layer_params
            + self.embedding_params
            + lm_head
            + self.per_layer_input_params + self.num_layers * self.per_layer_input_layer_params
            + self.compression_params
        )

    @property
    def compression_params(self) -> int:
        """Compressed attention's weights beside the layers' projections (attention_params): the CSA layers'
        compressors and indexers, the HCA layers' compressors, every layer's hyper-connection mixers and the final
        collapse (0 without compressed attention)."""
        c = self.compressed
        if c is None:
            return 0
        h = self.hidden_size
        return (c.csa_layers * c.csa_compressor_params(h, self.q_lora_rank, self.head_dim)
                + c.hca_layers * c.hca_compressor_params(h, self.head_dim)
                + self.num_layers * c.hyper_connection_params(h) + c.head_params(h))

    @property
    def _kv_shared_projection_params(self) -> int:
        """The K and V projections the KV-shared layers do without."""
        window = self.window_layer_kv_heads * (self.window_layer_head_dim + self.window_layer_v_dim)
        return self.hidden_size * ((self.kv_shared_layers - self.kv_shared_window_layers) * self.kv_proj_size
                                   + self.kv_shared_window_layers * window)

    def stack_part(self, layers: int, first_layer: int | None = None) -> ModelSpec:
        """`layers` consecutive layers from `first_layer` as a model of their own (specs/model_stack.py)."""
        return stack_part(self, layers, first_layer)

    @property
    def parts_vary_by_place(self) -> bool:
        """Whether two parts of the same length (stack_part) can differ by where they start: KV-shared layers at the
        stack's end, or a layer_pattern of more than one kind."""
        return bool(self.kv_shared_layers) or len(set(self.layer_pattern)) > 1

    @property
    def kv_share_sources(self) -> tuple[tuple[int, bool], ...]:
        """(layer, windowed) of the layers whose KV the KV-shared layers reuse (specs/model_stack.py)."""
        return kv_share_sources(self)

    @property
    def active_params(self) -> int:
        """Parameters one token touches (MoE: top-k experts + shared)."""
        if not self.num_experts:
            return self.total_params
        per_expert = self.mlp_matrices * self.expert_hidden_size * self.expert_intermediate_size
        shared = self.mlp_matrices * self.hidden_size * self.shared_expert_intermediate_size
        active_moe = (self.experts_per_token * per_expert + shared + self.hidden_size * self.num_experts
                      + self.moe_latent_params)
        return self.total_params - self.num_moe_layers * (self.moe_layer_params - active_moe)
