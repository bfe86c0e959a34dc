"""A part of a model's layer stack as a model of its own (ModelSpec.stack_part): a device's stage of a split
(sim/split_model.py), a drafter made of a model's first layers (sim/device_cloud.py); and which layers' KV the
KV-shared layers reuse (ModelSpec.kv_share_sources), which a split must carry to the stages that attend over it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.specs.model import ModelSpec


def stack_part(spec: ModelSpec, layers: int, first_layer: int | None = None) -> ModelSpec:
    """`layers` consecutive layers of this stack from `first_layer` as a model of their own (a device's stage of a
    split). Where the stack has a layer_pattern and the part its place, each kind of layer as many as its range
    holds (a part of linear layers only keeps no KV; one of windowed layers only takes their geometry). Else each
    kind in the stack's share: a hybrid's windowed layers round(layers x share), kept between 1 and layers - 1
    where there are two or more (one layer: windowed where most are, at the windowed layers' own geometry), its
    linear-attention layers round(layers x share) with one softmax layer at least (a one-layer part is a softmax
    layer). MoE layers as many as fit (min). KV-shared layers sit at the stack's end, so their part needs its
    place (`first_layer`: _kv_shared_part)."""
    kinds = spec.layer_pattern[first_layer:first_layer + layers] if first_layer is not None else ""
    update: dict = {"num_layers": layers, "num_hidden_layers": 0, "num_moe_layers": min(spec.num_moe_layers, layers),
                    "layer_pattern": kinds}
    windowed = 0
    if spec.window_layer_share:
        if kinds:
            windowed = kinds.count("W")
        else:
            windowed = round(layers * spec.window_layer_share)
            windowed = min(max(windowed, 1), layers - 1) if layers > 1 else int(spec.window_layer_share >= 0.5)
        update["sliding_window_layers"] = windowed
        if windowed == layers:  # windowed layers only: the whole part at the windowed layers' geometry
            update.update(head_dim=spec.window_layer_head_dim, num_kv_heads=spec.window_layer_kv_heads,
                          v_head_dim=spec.v_head_dim and spec.window_layer_v_dim, value_from_key=False,
                          window_head_dim=0, window_kv_heads=0)
        elif windowed == 0:
            update.update(sliding_window=None, sliding_window_layers=None, window_head_dim=0, window_kv_heads=0)
        if kinds and windowed in (0, layers):  # one kind left: no pattern needed (nor consistent with its fields)
            update["layer_pattern"] = ""
    if spec.wide_mlp_layers:
        update["wide_mlp_layers"] = round(layers * spec.wide_mlp_layers / spec.num_layers)
    if spec.attention_free_layers:  # its range's, else its share with an attending layer
        update["attention_free_layers"] = kinds.count("N") if kinds else min(
            round(layers * spec.attention_free_share), layers - 1)
    if spec.linear_attention_layers:  # a hybrid's linear layers: its range's, else its share with a softmax one
        update["linear_attention_layers"] = kinds.count("L") if kinds else min(
            round(layers * spec.linear_layer_share), layers - 1)
    if spec.kv_shared_layers:
        if first_layer is None:
            raise ValueError("a part of a stack with KV-shared layers needs its first layer (they sit at its end)")
        update.update(_kv_shared_part(spec, first_layer, layers, windowed))
    return spec.model_copy(update=update)


def kv_share_sources(spec: ModelSpec) -> tuple[tuple[int, bool], ...]:
    """(layer, windowed) of the layers whose KV the KV-shared layers reuse: the last unshared layer of each kind
    shared, found in layer_pattern; without one, taken as the ones just before the shared block, the full one
    last, where Gemma 4 E2B's and E4B's patterns place them (E2B: windowed at 13, full at 14, the shared from 15;
    E4B: 22, 23, from 24)."""
    start = spec.num_layers - spec.kv_shared_layers
    full = spec.kv_shared_layers > spec.kv_shared_window_layers
    if spec.layer_pattern:
        last = {kind: spec.layer_pattern.rindex(kind, 0, start) for kind in "FW"
                if kind in spec.layer_pattern[:start]}
        sources = [(last["F"], False)] if full else []
        return tuple(sources + ([(last["W"], True)] if spec.kv_shared_window_layers else []))
    sources = [(start - 1, False)] if full else []
    if spec.kv_shared_window_layers:
        sources.append((start - 2 if full else start - 1, True))
    return tuple(sources)


def _kv_shared_part(spec: ModelSpec, first_layer: int, layers: int, windowed: int) -> dict:
    """The KV-shared fields of the part [first_layer, first_layer + layers) with `windowed` windowed layers: the
    shared layers it holds (their windowed ones its range's, or without a layer_pattern the stack's share), each
    kind shared leaving one layer of that kind that holds KV: the source (kv_share_sources) where the part has
    it, else a copy of the source's KV, which the device keeps to attend over (one shared layer then counted as
    holding it); Gemma 4's double-wide MLPs on the shared layers it holds."""
    end = first_layer + layers
    start = max(first_layer, spec.num_layers - spec.kv_shared_layers)
    shared = max(0, end - start)
    share = spec.layer_pattern[start:end].count("W") if spec.layer_pattern else round(
        shared * spec.kv_shared_window_layers / spec.kv_shared_layers)
    window = min(share, shared, windowed)
    full = min(shared - window, layers - windowed)
    if windowed == layers:  # windowed layers only: one kind at their geometry (stack_part), shared ones too
        window, full, windowed = 0, window, 0
    window, full = (min(window, windowed - 1) if window else 0), (min(full, layers - windowed - 1) if full else 0)
    update = {"kv_shared_layers": full + window, "kv_shared_window_layers": window}
    if spec.wide_mlp_layers == spec.kv_shared_layers:  # Gemma 4 E2B's use_double_wide_mlp: the shared layers'
        update["wide_mlp_layers"] = shared
    return update
