"""DeepSeek-V4's compressed attention as the fields that set its cost (CompressedAttention, ModelSpec.compressed).

Every layer (transformers 5.25 models/deepseek_v4, DeepseekV4Attention; the DeepSeek-V4 report, section 2.3):
  - q through a low-rank pair: q_a (hidden -> q_lora_rank), its RMSNorm, q_b (-> heads x head_dim), a per-head norm;
  - one K = V head of head_dim (kv_proj, hidden -> head_dim), cached once (keys and values are the same tensor);
  - multi-query attention of every query head over that one head, with a learned sink per head, over the layer's
    last `window` keys and, in a compressed layer, its compressed entries;
  - a grouped low-rank output projection: the heads in `o_groups` groups, each projected to o_lora_rank (o_a, a
    block-diagonal GEMM), then all groups to hidden (o_b);
  - manifold-constrained hyper-connections: the residual is `hc_mult` streams, mixed in and out of attention and of
    the MLP by weights a small projection of all of them makes (2 x (2 + hc_mult) x hc_mult outputs a layer).
Compressed layers add a compressor that turns every `ratio` tokens into one entry of head_dim (kv and gate
projections of the hidden state, a softmax-gated sum over the window of tokens, a norm, RoPE):
  - CSA (compressed sparse attention, ratio csa_ratio, 4): overlapping windows (the projections 2 x head_dim wide)
    and a lightning indexer (its own compressor of indexer_head_dim, its queries from the q latent, one weight per
    indexer head from the hidden state) that scores every compressed entry for each query and keeps the best
    index_topk: the query attends over its window and those entries;
  - HCA (heavily compressed attention, ratio hca_ratio, 128): the query attends over its window and every entry;
  - the other layers (sliding) over their window alone.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CompressedAttention"]


class CompressedAttention(BaseModel):
    """The layer counts, ratios and widths of DeepSeek-V4's compressed attention (the model's heads, head_dim and
    q_lora_rank are ModelSpec's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(gt=0)  # every layer's sliding window (sliding_window)
    csa_layers: int = Field(ge=0)
    hca_layers: int = Field(ge=0)
    csa_ratio: int = Field(gt=0)
    hca_ratio: int = Field(gt=0)
    index_topk: int = Field(gt=0)
    indexer_heads: int = Field(gt=0)
    indexer_head_dim: int = Field(gt=0)
    o_groups: int = Field(gt=0)
    o_lora_rank: int = Field(gt=0)
    hc_mult: int = Field(gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> CompressedAttention:
        if self.csa_ratio >= self.hca_ratio:
            raise ValueError(f"the CSA ratio ({self.csa_ratio}) must be below the HCA ratio ({self.hca_ratio})")
        return self

    @property
    def compressed_layers(self) -> int:
        return self.csa_layers + self.hca_layers

    # --- weights, per layer of each kind -------------------------------------------------------
    def csa_compressor_params(self, hidden: int, q_lora_rank: int, head_dim: int) -> int:
        """A CSA layer's compressor (kv and gate, 2 x head_dim wide: overlapping windows; the gate's position bias;
        the norm) and its indexer (the same over indexer_head_dim, its query up-projection from the q latent, its
        per-head weights from the hidden state)."""
        ratio, index = self.csa_ratio, self.indexer_head_dim
        compressor = 2 * hidden * 2 * head_dim + ratio * 2 * head_dim + head_dim
        indexer = (2 * hidden * 2 * index + ratio * 2 * index + index
                   + q_lora_rank * self.indexer_heads * index + hidden * self.indexer_heads)
        return compressor + indexer

    def hca_compressor_params(self, hidden: int, head_dim: int) -> int:
        """An HCA layer's compressor: kv and gate (head_dim wide), the gate's position bias, the norm."""
        return 2 * hidden * head_dim + self.hca_ratio * head_dim + head_dim

    def hyper_connection_params(self, hidden: int) -> int:
        """One layer's two hyper-connection mixers (before attention, before the MLP): each a projection of the
        hc_mult streams to (2 + hc_mult) x hc_mult mixing weights, their biases and 3 scales."""
        outputs = (2 + self.hc_mult) * self.hc_mult
        return 2 * (outputs * self.hc_mult * hidden + outputs + 3)

    def head_params(self, hidden: int) -> int:
        """The final hyper-connection collapse before the last norm (DeepseekV4HyperHead)."""
        return self.hc_mult * self.hc_mult * hidden + self.hc_mult + 1
