"""The sliding-window layers of a stack, from ModelSpec's sliding_window* and window_* fields: which layers attend
over a window, their attention's shape where it differs from the full layers' (Gemma 4), and how many hold KV. A
mixin of ModelSpec (specs/model.py), which the cost model (perf/) and the KV accounting read."""

from __future__ import annotations


class WindowShapes:
    """The windowed layers' count and shape, read from the model's window fields."""

    __slots__ = ()

    @property
    def window_all_layers(self) -> int | None:
        """The sliding window when every layer has it (then a BatchShape carries it), else None."""
        if self.sliding_window and self.sliding_window_layers in (None, self.num_layers):
            return self.sliding_window
        return None

    @property
    def window_layer_share(self) -> float:
        """Share of the layers that are windowed in a hybrid stack (0 when none or all are)."""
        if self.window_all_layers or not self.sliding_window or not self.sliding_window_layers:
            return 0.0
        return self.sliding_window_layers / self.num_layers

    @property
    def window_layer_head_dim(self) -> int:
        """Head width of the windowed layers (head_dim unless they have their own)."""
        return self.window_head_dim or self.head_dim

    @property
    def window_layer_kv_heads(self) -> int:
        """KV heads of the windowed layers (num_kv_heads unless they have their own)."""
        return self.window_kv_heads or self.num_kv_heads

    @property
    def window_own_geometry(self) -> bool:
        """Whether the windowed layers' attention is shaped unlike the full layers' (Gemma 4): then the cost model
        costs the two kinds apart, and their KV per token differs."""
        return bool(self.window_layer_share) and (
            (self.window_layer_head_dim, self.window_layer_kv_heads) != (self.head_dim, self.num_kv_heads)
            or self.value_from_key)

    @property
    def window_layer_v_dim(self) -> int:
        """Value head width of the windowed layers: v_head_dim where set (both kinds), else their head width."""
        return self.v_head_dim or self.window_layer_head_dim

    @property
    def window_kv_layers(self) -> int:
        """A hybrid stack's windowed layers that hold KV: less the KV-shared (0 when none or all are windowed)."""
        return self.hybrid_windowed_layers - self.kv_shared_window_layers

    @property
    def hybrid_windowed_layers(self) -> int:
        """Layers of a hybrid stack that are windowed (0 when none or all are)."""
        return self.sliding_window_layers if self.window_layer_share else 0

    @property
    def windowed_layer_count(self) -> int:
        """Layers attending over a window: a hybrid's windowed ones, every layer where all are, else 0."""
        return self.hybrid_windowed_layers or (self.num_layers if self.window_all_layers else 0)
