"""Llama-Nemotron's NAS-derived decoders (model_type nemotron-nas, DeciLMForCausalLM: Llama-3.3-Nemotron-Super-49B,
Llama-3.1-Nemotron-Ultra-253B) as vLLM's nemotron_nas.py builds them from `block_configs`, one block a layer:

- attention: Llama's GQA with num_attention_heads / n_heads_in_group K / V heads, or none (`no_op`: no projections,
  no KV cache, no norm before it; vLLM counts the KV layers as the blocks whose attention is not a no-op);
- ffn: a gated SiLU MLP of `ffn_mult` (its width int(2 x ffn_mult x hidden / 3) rounded up to a multiple of 256,
  _ffn_mult_to_intermediate_size in modeling_decilm.py and vLLM), or `intermediate_size` where a block names it, or
  none (`no_op`).

Costed as a Llama-style stack (ModelSpec): blocks with neither are dropped (they only pass the residual on), blocks
without attention are attention_free_layers, blocks without an MLP mlp_free_layers, in layer_pattern's order (F / N);
the MLP widths' mean is intermediate_size (every FLOP and byte is linear in it) and the widest widest_mlp_size.
Refused by name: a linear layer in place of attention or MLP (replace_with_linear: vLLM does not run it), sparse or
windowed attention, attention sinks, K / V head counts that differ between blocks, and any block key not read."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.hf_layers import SPEC_FIELDS, positive

NAS_TYPES = ("nemotron-nas",)
# the keys a block's parts may carry (Super-49B's and Ultra-253B's config.json); anything else set is refused
ATTENTION_KEYS = ("n_heads_in_group", "no_op", "replace_with_linear", "sparsify", "num_sink_tokens", "unshifted_sink",
                  "use_prefill_window_in_sink_attention", "window_length")
FFN_KEYS = ("ffn_mult", "intermediate_size", "no_op", "replace_with_linear", "sparsify", "hidden_act")
# set to anything but null / false, these change the block's cost in ways not modelled
NOT_MODELLED = {"replace_with_linear": "a linear layer in its place (vLLM's nemotron_nas.py does not run it either)",
                "sparsify": "sparsified weights", "num_sink_tokens": "attention sinks",
                "unshifted_sink": "attention sinks", "use_prefill_window_in_sink_attention": "attention sinks",
                "window_length": "windowed attention"}


def ffn_mult_width(ffn_mult: float, hidden: int) -> int:
    """An ffn_mult's MLP width (modeling_decilm.py _ffn_mult_to_intermediate_size): 2/3 of ffn_mult x hidden, rounded
    up to a multiple of 256."""
    return math.ceil(int(2 * ffn_mult * hidden / 3) / 256) * 256


def _part(block: Any, where: str, index: int, name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    part = block.get(name) if isinstance(block, dict) else None
    if not isinstance(part, dict):
        raise PhasewiseError(f"{where}: field block_configs[{index}].{name} must be a mapping (got {part!r})")
    for key, value in part.items():
        if key not in keys and value not in (None, False):
            raise PhasewiseError(f"{where}: field block_configs[{index}].{name}.{key} is not read for model_type "
                                 f"nemotron-nas (read: {', '.join(keys)})")
        if key in NOT_MODELLED and value not in (None, False):
            raise PhasewiseError(f"{where}: field block_configs[{index}].{name}.{key} ({NOT_MODELLED[key]}) is not "
                                 "modelled")
    if part.get("no_op") not in (None, False, True):
        raise PhasewiseError(f"{where}: field block_configs[{index}].{name}.no_op must be true or false")
    return part


def nas_config(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """`cfg` with the Llama-style fields its block_configs come to (see the module's docstring), and the ModelSpec
    fields they give under SPEC_FIELDS."""
    blocks = cfg.get("block_configs")
    hidden = positive(cfg.get("hidden_size"), where, "hidden_size")
    heads = positive(cfg.get("num_attention_heads"), where, "num_attention_heads")
    layers = positive(cfg.get("num_hidden_layers"), where, "num_hidden_layers")
    if not isinstance(blocks, list) or len(blocks) != layers:
        raise PhasewiseError(f"{where}: field block_configs must list one block for each of the {layers} layers "
                             f"(got {len(blocks) if isinstance(blocks, list) else repr(blocks)})")
    pattern, widths, groups, mlp_free = [], [], set(), 0
    for index, block in enumerate(blocks):
        attention = _part(block, where, index, "attention", ATTENTION_KEYS)
        ffn = _part(block, where, index, "ffn", FFN_KEYS)
        attends, has_mlp = not attention.get("no_op"), not ffn.get("no_op")
        if attends:
            groups.add(positive(attention.get("n_heads_in_group"), where,
                                f"block_configs[{index}].attention.n_heads_in_group"))
        if has_mlp:
            if ffn.get("ffn_mult") is not None:
                mult = ffn["ffn_mult"]
                if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 0 < mult < 1e6:
                    raise PhasewiseError(f"{where}: field block_configs[{index}].ffn.ffn_mult must be a positive "
                                         f"number (got {mult!r})")
                widths.append(ffn_mult_width(mult, hidden))
            else:
                widths.append(positive(ffn.get("intermediate_size"), where,
                                       f"block_configs[{index}].ffn.ffn_mult or intermediate_size"))
        elif attends:
            mlp_free += 1
        if attends or has_mlp:  # a block with neither passes the residual on and costs nothing
            pattern.append("F" if attends else "N")
    if not groups:
        raise PhasewiseError(f"{where}: field block_configs has no block with attention (every attention is a no_op)")
    if len(groups) > 1:
        raise PhasewiseError(f"{where}: field block_configs gives n_heads_in_group {sorted(groups)} on different "
                             "blocks: K / V heads that differ between layers are not modelled")
    group = groups.pop()
    if heads % group:
        raise PhasewiseError(f"{where}: n_heads_in_group {group} does not divide the {heads} attention heads")
    if not widths:
        raise PhasewiseError(f"{where}: field block_configs has no block with an MLP (every ffn is a no_op)")
    kinds = "".join(pattern)
    mean_width = round(sum(widths) / len(widths))
    fields = {"attention_free_layers": kinds.count("N"), "mlp_free_layers": mlp_free,
              "widest_mlp_size": max(widths) if max(widths) > mean_width else 0,
              "layer_pattern": kinds if "N" in kinds else ""}
    return {**cfg, "num_hidden_layers": len(kinds), "num_key_value_heads": heads // group,
            "intermediate_size": mean_width, SPEC_FIELDS: fields}
