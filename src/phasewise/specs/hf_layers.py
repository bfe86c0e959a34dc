"""Which layers of a config.json's stack attend over a window or a chunk, and which are MoE where a family has its
own rule (specs/hf_llama_style.py's Llama-style parser reads the rest)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from phasewise.errors import PhasewiseError

# Gemma 2 / 3 and Cohere 2: sliding-window layers in a fixed pattern when the config does not list layer_types: layer
# i is windowed unless (i + 1) is a multiple of the pattern (transformers Gemma2Config: every other layer;
# Gemma3TextConfig: sliding_window_pattern, default 6, i.e. five local layers to one global; Cohere2Config: its
# sliding_window_pattern, default 4)
WINDOW_PATTERN_DEFAULT = {"gemma2": 2, "gemma3_text": 6, "cohere2": 4}
# Families whose layers attend over sliding_window only with use_sliding_window set (off by default) and then only
# from layer max_window_layers on (transformers Qwen2Config, Qwen2MoeConfig, Qwen3Config, Qwen3MoeConfig: layer_types
# "sliding_attention" for i >= max_window_layers, default 28; Dots1Config: default every layer full)
MAX_WINDOW_LAYERS_DEFAULT = {"qwen2": 28, "qwen2_moe": 28, "qwen3": 28, "qwen3_moe": 28, "dots1": None}
# The key under which a family's own config reader (specs/hf_gemma4.py, specs/hf_mimo.py) hands the Llama-style
# parser ModelSpec fields it computed (a mapping; no config.json carries it)
SPEC_FIELDS = "_phasewise_spec_fields"


def positive(value: Any, where: str, key: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise PhasewiseError(f"{where}: field {key} must be a positive integer (got {value!r})")
    return value


def is_int_list(value: Any) -> bool:
    """Whether `value` is a list of integers (booleans excluded), as a config's layer-index fields hold them."""
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def check_layer_count(listed: list, where: str, field: str, layers: int) -> None:
    """A per-layer list (layer_types, attn_type_list, a per-layer MoE size) must give one entry per layer: a shorter
    or longer one is an error naming it, never a list read in part or ignored."""
    if len(listed) != layers:
        raise PhasewiseError(f"{where}: {field} lists {len(listed)} layers, num_hidden_layers is {layers}")


def check_layer_indices(listed: Any, where: str, field: str, layers: int) -> list[int]:
    """A list of layer indices (mlp_only_layers): each in 0..layers - 1 (an index past the stack names no layer)."""
    if not is_int_list(listed) or any(not 0 <= i < layers for i in listed):
        raise PhasewiseError(f"{where}: field {field} must list layer indices in 0..{layers - 1} (got {listed!r})")
    return listed


def family_layer_types(cfg: dict[str, Any], where: str, mt: str, layers: int, window: int | None) -> list[str]:
    """The layer_types a family's transformers config class derives when its config.json lists none ([]: the family
    has no rule of its own), `window` the sliding window that applies. Olmo 3 (Olmo3Config): every 4th layer full,
    the others sliding. gpt-oss (GptOssConfig): layers 0, 2, 4, ... sliding, the others full (none without a
    window). Gemma 2 / 3, Cohere 2 and EXAONE 4: sliding unless (i + 1) is a multiple of sliding_window_pattern
    (WINDOW_PATTERN_DEFAULT where the file names none), or, as EXAONE 4's docstring spells a string pattern, layer
    i local where the pattern's (i mod length)-th letter is L ("LLLG": three local, one global), the last layer
    global whatever the pattern; none without a window (Exaone4Config divides by a zero
    pattern there). SmolLM3 (SmolLM3Config): sliding only with use_sliding_window, on its NoPE layers
    (no_rope_layers[i] == 0; by default every 4th). dots.llm1 (Dots1Config): sliding from layer max_window_layers
    on; Qwen2 / Qwen3 (dense and MoE) likewise, from their default 28 (MAX_WINDOW_LAYERS_DEFAULT)."""
    if mt == "olmo3":
        return ["sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(layers)]
    if mt == "gpt_oss":
        # transformers models/gpt_oss/configuration_gpt_oss.py GptOssConfig.__init__ fills a missing layer_types with
        # "sliding_attention" if bool((i + 1) % 2) else "full_attention"; vLLM's gpt_oss.py OAIAttention windows the
        # same layers (sliding_window where layer_idx % 2 == 0)
        return ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)] if window else []
    if mt in WINDOW_PATTERN_DEFAULT or mt == "exaone4":
        if not window:
            return []
        named = [cfg[k] for k in ("sliding_window_pattern", "_sliding_window_pattern") if cfg.get(k) is not None]
        pattern = named[0] if named else WINDOW_PATTERN_DEFAULT.get(mt)
        if pattern is None:
            return ["full_attention"] * layers
        if isinstance(pattern, str) and mt == "exaone4":
            if not pattern or set(pattern) - {"L", "G"}:
                raise PhasewiseError(f"{where}: field sliding_window_pattern must be a positive integer or a string "
                                     f"of L (local) and G (global) layers (got {pattern!r})")
            return ["sliding_attention" if pattern[i % len(pattern)] == "L" and i < layers - 1 else "full_attention"
                    for i in range(layers)]
        pattern = positive(pattern, where, "sliding_window_pattern")
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]
    if mt == "smollm3":
        rope = cfg.get("no_rope_layers")
        if rope is None:
            rope = [int((i + 1) % positive(cfg.get("no_rope_layer_interval", 4), where, "no_rope_layer_interval") != 0)
                    for i in range(layers)]
        if not is_int_list(rope) or len(rope) != layers:
            raise PhasewiseError(f"{where}: field no_rope_layers must list 0 or 1 for each of the {layers} layers")
        local = bool(cfg.get("use_sliding_window")) and window is not None
        return ["sliding_attention" if local and not uses_rope else "full_attention" for uses_rope in rope]
    if mt in MAX_WINDOW_LAYERS_DEFAULT:
        first = cfg.get("max_window_layers", MAX_WINDOW_LAYERS_DEFAULT[mt])
        first = layers if first is None else first
        if not isinstance(first, int) or isinstance(first, bool) or first < 0:
            raise PhasewiseError(f"{where}: field max_window_layers must be an integer >= 0 (got {first!r})")
        return ["sliding_attention" if window is not None and i >= first else "full_attention" for i in range(layers)]
    return []


def window_layers(cfg: dict[str, Any], where: str, mt: str, layers: int
                  ) -> tuple[int | None, int | None, bool, str]:
    """(window, windowed layers, chunked, layer pattern) of a Llama-style stack: layer_types where the config lists
    them (gpt-oss's alternating sliding and full layers), else a family's rule (family_layer_types: Gemma's pattern),
    Llama 4's chunked local attention in its RoPE layers (costed as a window of the chunk:
    ModelSpec.chunked_attention), or every layer windowed by a bare sliding_window (Mistral); windowed layers None when
    every layer is. A window as long as the model's context (max_position_embeddings, times a rope_scaling factor:
    Phi-3.5-MoE's 131,072) never restricts attention and is none. The pattern (ModelSpec.layer_pattern): W for each
    windowed layer, F for each full one, where the stack has both ("" otherwise)."""
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or (mt in MAX_WINDOW_LAYERS_DEFAULT and mt != "dots1"
                                                  and not cfg.get("use_sliding_window")):  # Qwen: off unless set
        window = None
    layer_types = cfg.get("layer_types") or []
    chunked = mt == "llama4_text" and cfg.get("attention_chunk_size") is not None
    if chunked:
        window = positive(cfg["attention_chunk_size"], where, "attention_chunk_size")
        layer_types = [("sliding_attention" if kind == "chunked_attention" else kind) for kind in layer_types] or [
            "sliding_attention" if rope else "full_attention" for rope in llama4_rope_layers(cfg, where, layers)]
    elif window:
        window = positive(window, where, "sliding_window")
        if 0 < serving_context(cfg) <= window:
            return None, None, False, ""
    layer_types = layer_types or family_layer_types(cfg, where, mt, layers, window)
    windowed = None
    if layer_types:
        check_layer_count(layer_types, where, "layer_types", layers)
        windowed = sum(kind == "sliding_attention" for kind in layer_types)
    if windowed == 0:
        return None, None, False, ""  # every layer full: a sliding_window field alone does not apply
    pattern = "".join("W" if kind == "sliding_attention" else "F" for kind in layer_types) \
        if window and windowed is not None and windowed < layers else ""
    return (window or None), (windowed if window else None), chunked, pattern


def linear_pattern(linear_layers: Iterable[int], layers: int) -> str:
    """ModelSpec.layer_pattern of a hybrid whose `linear_layers` (indices) run a linear recurrence, the rest softmax
    attention."""
    linear = set(linear_layers)
    return "".join("L" if i in linear else "F" for i in range(layers))


def rope_scalings(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The RoPE scaling mappings a config carries: transformers 4's rope_scaling and transformers 5's rope_parameters
    (rope_type, factor, original_max_position_embeddings and rope_theta in one mapping, or one mapping per layer type,
    {"full_attention": {...}, "sliding_attention": {...}}, as vLLM's _get_and_verify_max_len unpacks it)."""
    found = []
    for key in ("rope_scaling", "rope_parameters"):
        value = cfg.get(key)
        if not isinstance(value, dict):
            continue
        nested = value and all(isinstance(v, dict) for v in value.values())
        found += list(value.values()) if nested else [value]
    return found


def serving_context(cfg: dict[str, Any]) -> int:
    """The longest sequence a config allows: max_position_embeddings, or a YaRN extension's length where the config
    carries one in rope_scaling or rope_parameters (rope_scalings; original_max_position_embeddings x factor, as vLLM
    derives max_model_len from it, config/model.py _get_and_verify_max_len; a Qwen3 checkpoint with the card's YaRN
    settings serves 131,072, not 40,960). Other scaling types are not multiplied: their configs state the extended
    length already (Gemma 3's linear factor 8 beside its 131,072, which vLLM's rule would make 1,048,576:
    vllm-project/vllm PR #33958); 0 when it states none."""
    context = cfg.get("max_position_embeddings")
    if not isinstance(context, int) or isinstance(context, bool) or context <= 0:
        return 0
    return max([context, *(_yarn_length(scaling) for scaling in rope_scalings(cfg))])


def _yarn_length(scaling: dict[str, Any]) -> int:
    """A YaRN scaling's extended length, original_max_position_embeddings x factor (0: not YaRN, or either missing)."""
    if scaling.get("rope_type", scaling.get("type")) != "yarn":
        return 0
    factor, original = scaling.get("factor"), scaling.get("original_max_position_embeddings")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (factor, original)):
        return 0
    return int(original * factor)


def ernie_moe_layers(cfg: dict[str, Any], where: str, layers: int) -> int:
    """ERNIE 4.5 MoE's MoE layers (transformers Ernie4_5_MoeDecoderLayer): layer i when (i + 1) % moe_layer_interval
    == 0 and moe_layer_start_index <= i <= moe_layer_end_index, an end of -1 being the last layer."""
    interval = positive(cfg.get("moe_layer_interval"), where, "moe_layer_interval")
    bounds = {}
    for field, lowest in (("moe_layer_start_index", 0), ("moe_layer_end_index", -1)):
        value = cfg.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            also = " (or -1: the last)" if lowest < 0 else ""
            raise PhasewiseError(f"{where}: field {field} must be a layer index{also} (got {value!r})")
        bounds[field] = layers - 1 if value == -1 else value
    return sum(1 for i in range(bounds["moe_layer_start_index"], min(bounds["moe_layer_end_index"], layers - 1) + 1)
               if (i + 1) % interval == 0)


def _uniform(cfg: dict[str, Any], where: str, field: str) -> Any:
    """A field a config may give per layer as a list: its one value (None when absent); a list must give one value
    per layer (check_layer_count), and differing values are not modelled (one expert width, top-k and shared expert
    for every MoE layer)."""
    value = cfg.get(field)
    if isinstance(value, list):
        layers = cfg.get("num_hidden_layers")
        if isinstance(layers, int) and not isinstance(layers, bool):
            check_layer_count(value, where, field, layers)
        if not value or any(v != value[0] for v in value):
            raise PhasewiseError(f"{where}: field {field} differs between layers ({value[:4]}...): per-layer MoE "
                                 "sizes are not modelled")
        return value[0]
    return value


def hunyuan_fields(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Tencent Hunyuan's config as the Llama-style parser reads it (vLLM hunyuan_v1.py): every layer MoE when
    num_experts > 1, experts moe_intermediate_size wide (a list: one value a layer), moe_topk of them a token, a
    shared MLP intermediate_size x num_shared_expert wide when use_mixed_mlp_moe; the head size attention_head_dim
    where head_dim is absent. Cross-layer attention (use_cla: a layer reusing the previous one's KV) is refused."""
    if cfg.get("use_cla"):
        raise PhasewiseError(f"{where}: field use_cla (cross-layer attention, layers sharing their KV) is not "
                             "modelled")
    out = {k: v for k, v in cfg.items() if k not in ("moe_topk", "moe_intermediate_size", "num_experts",
                                                      "num_shared_expert", "use_mixed_mlp_moe")}
    experts = _uniform(cfg, where, "num_experts")
    if cfg.get("head_dim") is None and cfg.get("attention_head_dim") is not None:
        out["head_dim"] = cfg["attention_head_dim"]
    if isinstance(experts, int) and not isinstance(experts, bool) and experts > 1:
        width = _uniform(cfg, where, "moe_intermediate_size") or cfg.get("intermediate_size")
        out.update(num_experts=experts, num_experts_per_tok=_uniform(cfg, where, "moe_topk"),
                   moe_intermediate_size=width)
        shared = _uniform(cfg, where, "num_shared_expert") if cfg.get("use_mixed_mlp_moe") else 0
        if shared:
            out["shared_expert_intermediate_size"] = positive(cfg.get("intermediate_size"), where,
                                                              "intermediate_size") * positive(shared, where,
                                                                                              "num_shared_expert")
    return out


def llama4_rope_layers(cfg: dict[str, Any], where: str, layers: int) -> list[bool]:
    """Which Llama 4 layers use RoPE (and so chunked attention): no_rope_layers (1 = RoPE), else all but each
    no_rope_layer_interval-th (Llama4TextConfig's default)."""
    listed = cfg.get("no_rope_layers")
    if listed:
        if not isinstance(listed, list) or len(listed) != layers or any(rope not in (0, 1) for rope in listed):
            raise PhasewiseError(f"{where}: field no_rope_layers must list one 0 or 1 per layer ({layers})")
        return [bool(rope) for rope in listed]
    interval = positive(cfg.get("no_rope_layer_interval"), where, "no_rope_layer_interval")
    return [(i + 1) % interval != 0 for i in range(layers)]


def llama4_moe_layers(cfg: dict[str, Any], where: str, layers: int) -> int:
    """Llama 4's MoE layer count: moe_layers where listed, else every interleave_moe_layer_step-th layer."""
    listed = cfg.get("moe_layers")
    if listed is not None:
        if not isinstance(listed, list) or any(not isinstance(i, int) or not 0 <= i < layers for i in listed):
            raise PhasewiseError(f"{where}: field moe_layers must list layer indices in 0..{layers - 1}")
        return len(set(listed))
    step = positive(cfg.get("interleave_moe_layer_step"), where, "interleave_moe_layer_step")
    return len(range(step - 1, layers, step))


# Nemotron-H's block kinds: its hybrid_override_pattern characters, and the names layers_block_type lists
# (transformers models/nemotron_h/configuration_nemotron_h.py: "M" mamba, "*" attention, "-" mlp, "E" moe)
NEMOTRON_BLOCKS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}


def nemotron_blocks(cfg: dict[str, Any], where: str) -> dict[str, int]:
    """How many of each block kind a Nemotron-H stack has, from hybrid_override_pattern (one character a layer) or
    a layers_block_type list; an unknown kind, or a stack whose length is not num_hidden_layers, is an error."""
    pattern = cfg.get("hybrid_override_pattern")
    listed = cfg.get("layers_block_type")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise PhasewiseError(f"{where}: field hybrid_override_pattern must be a string of "
                                 f"{', '.join(NEMOTRON_BLOCKS)} (got {pattern!r})")
        field, kinds = "hybrid_override_pattern", [NEMOTRON_BLOCKS.get(ch, ch) for ch in pattern]
    elif isinstance(listed, list):
        field, kinds = "layers_block_type", [str(kind) for kind in listed]
    else:
        raise PhasewiseError(f"{where}: missing field hybrid_override_pattern or layers_block_type (Nemotron-H's "
                             "block of each layer)")
    unknown = sorted(set(kinds) - set(NEMOTRON_BLOCKS.values()))
    if unknown:
        raise PhasewiseError(f"{where}: field {field} has block kind '{unknown[0]}' (allowed: "
                             f"{', '.join(f'{ch} ({kind})' for ch, kind in NEMOTRON_BLOCKS.items())})")
    layers = cfg.get("num_hidden_layers")
    if layers is not None and layers != len(kinds):
        raise PhasewiseError(f"{where}: field {field} names {len(kinds)} blocks but num_hidden_layers is {layers}")
    return {kind: kinds.count(kind) for kind in NEMOTRON_BLOCKS.values()}


# activations whose MLP is gated (gate and up projections)
GATED_ACTS = {"silu", "swiglu", "swish", "gelu_pytorch_tanh_gated"}


def first_field(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The first of `keys` the config sets (not null), else `default`."""
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def require_field(cfg: dict[str, Any], where: str, *keys: str) -> Any:
    """first_field(), or a one-line error naming the missing field; a divisor must be a positive integer and a layer
    count at most MAX_LAYERS."""
    value = first_field(cfg, *keys)
    if value is None:
        raise PhasewiseError(f"{where}: missing field {' or '.join(keys)}")
    if keys[0] in LAYER_COUNTS and positive(value, where, keys[0]) > MAX_LAYERS:
        raise PhasewiseError(f"{where}: field {keys[0]} must be at most {MAX_LAYERS:,} (got {value}): no checkpoint "
                             "has that many layers")
    return positive(value, where, keys[0]) if keys[0] in DIVISORS else value


# fields other shapes are divided by: a zero, a fraction or a text there is refused by name, not left to fail
DIVISORS = ("num_attention_heads", "n_heads", "n_head", "hidden_size", "d_model", "num_hidden_layers", "n_layers",
            "n_layer")
# a layer count the parsers walk layer by layer (MoE and window patterns); a typo of 10^12 layers would hang them.
# The deepest served decoders have a few hundred layers (Llama-3.1-405B: 126)
LAYER_COUNTS = ("num_hidden_layers", "n_layers", "n_layer")
MAX_LAYERS = 100_000
