"""The shapes of a linear recurrence's mixer (gated DeltaNet, Mamba-1 and -2, KDA, lightning attention, short
convolutions) from ModelSpec's linear_* fields: its projections' widths, its conv's channels and its weights, which
the cost model (perf/) and the memory model read. A mixin of ModelSpec (specs/model.py), whose fields say what each
recurrence is."""

from __future__ import annotations


class LinearMixerShapes:
    """Widths and weights of one linear-attention layer's mixer, read from the model's linear_* fields."""

    __slots__ = ()

    @property
    def linear_key_dim(self) -> int:
        return self.linear_key_heads * self.linear_key_head_dim

    @property
    def linear_value_dim(self) -> int:
        return self.linear_value_heads * self.linear_value_head_dim

    @property
    def linear_conv_dim(self) -> int:
        """Channels of the linear-attention layer's causal conv: q, k and v."""
        return 2 * self.linear_key_dim + self.linear_value_dim

    @property
    def linear_head_scalars(self) -> int:
        """Scalars in_proj makes per value head and token: DeltaNet's beta and decay, Mamba-2's dt, KDA's beta (its
        decay is per channel, from the low-rank pair); none for Mamba-1 (dt from dt_proj), lightning attention (a
        fixed decay) and short convolutions."""
        return {"gated_deltanet": 2, "mamba2": 1, "kda": 1}.get(self.linear_recurrence, 0)

    @property
    def linear_in_proj_size(self) -> int:
        """Output width of a linear-attention layer's input projections from the hidden state that TP splits: q, k,
        v (Mamba-2: C, B, x; Mamba-1: x alone, no key heads; a short conv: B, C and x, nothing else), the output gate
        z (value-wide; KDA's comes from its low-rank pair instead), and each value head's scalars
        (linear_head_scalars)."""
        if self.linear_recurrence == "short_conv":  # B, C and x per channel
            return 3 * self.linear_value_dim
        gate = 0 if self.linear_recurrence == "kda" else self.linear_value_dim
        scalars = self.linear_head_scalars * self.linear_value_heads
        return 2 * self.linear_key_dim + self.linear_value_dim + gate + scalars

    def linear_replicated_width(self, tp: int) -> float:
        """Channels of B and C one GPU of a `tp`-wide group holds beyond its share of them: a Mamba-2 mixer's single
        group (n_groups 1) is whole on every GPU, as vLLM's MambaMixer2 replicates it to follow the head shards
        (extra_groups_for_head_shards); 0 where the groups are split (check_parallelism refuses the rest)."""
        if self.linear_recurrence != "mamba2" or self.linear_key_heads != 1 or tp <= 1:
            return 0.0
        return 2 * self.linear_key_head_dim * (1 - 1 / tp)

    def linear_conv_channels(self, tp: int) -> float:
        """Channels of a linear-attention layer's conv (and conv state) one GPU of a `tp`-wide group holds: its share,
        and a single Mamba-2 group's B and C whole (linear_replicated_width)."""
        return self.linear_conv_dim / tp + self.linear_replicated_width(tp)

    @property
    def linear_low_rank(self) -> tuple[int, int]:
        """KDA's low-rank pairs (decay, output gate): their ranks (key_head_dim, value_head_dim), the down-projections
        from the hidden state whole on every TP rank, the up-projections to key_dim / value_dim split; (0, 0) else."""
        if self.linear_recurrence != "kda":
            return 0, 0
        return self.linear_key_head_dim, self.linear_value_head_dim

    @property
    def linear_dt_projections(self) -> tuple[int, int]:
        """Mamba-1's (x_proj, dt_proj) output widths per token: dt's rank with B and C (whole on every TP rank), then
        dt over the channels (split); (0, 0) else."""
        if not self.linear_dt_rank:
            return 0, 0
        return self.linear_dt_rank + 2 * self.linear_key_head_dim, self.linear_value_dim

    @property
    def linear_attention_params(self) -> int:
        """Weights of one linear-attention layer's mixer: in_proj, KDA's low-rank pairs, Mamba-1's x_proj, dt_proj
        and per-channel decays (A, d_inner x d_state), the conv taps, out_proj (value -> hidden)."""
        h = self.hidden_size
        decay, gate = self.linear_low_rank
        low_rank = (h + self.linear_key_dim) * decay + (h + self.linear_value_dim) * gate  # down + up
        x_proj, dt_proj = self.linear_dt_projections
        selective = (self.linear_value_dim * (x_proj + self.linear_key_head_dim) + self.linear_dt_rank * dt_proj
                     if self.linear_dt_rank else 0)
        return (h * self.linear_in_proj_size + low_rank + selective + self.linear_conv_dim * self.linear_conv_kernel
                + self.linear_value_dim * h)
