"""How each engine holds a model's KV cache, by its preset's rules (engine_presets.yaml): the KV block size and dtype
it takes by default, the layout of windowed and compressed layers' KV (per-sequence, a window pool, paged windows,
a shared block pool) and the pool's speculative headroom, whether a linear-attention model's recurrent states sit in
the KV pool, and whether prefix caching is on by default or refused for a model."""

from __future__ import annotations

import re
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.engine_presets import preset_entry
from phasewise.specs.engine_refusals import kv_dtype_refusal
from phasewise.specs.engines import EngineConfig
from phasewise.specs.hardware import HardwareSpec
from phasewise.specs.model import ModelSpec
from phasewise.specs.quant import QuantScheme


def on_hardware(hw: HardwareSpec, prefixes) -> bool:
    """Whether `hw` is one of the hardware keys a preset's rule names by prefix (b200 matches b200 and b200-*)."""
    key = hw.key.lower()
    return any(key.startswith(prefix) for prefix in prefixes)


def window_kv(config: EngineConfig, model: ModelSpec, hw: HardwareSpec) -> tuple[str, float]:
    """(layout, window-pool ratio) of perf/window_kv.py kv_window_terms: how this engine holds `model`'s KV on `hw`
    (the preset's `window_kv` rule in engine_presets.yaml, per_sequence without one), with the engine's knobs
    (SGLang: --disable-hybrid-swa-memory, --swa-full-tokens-ratio)."""
    rule = config.window_kv_rule
    if model.compressed is not None:
        return _compressed_window_kv(config, model, rule or {})
    if not rule:
        return "per_sequence", 1.0
    if _hybrid_manager_off(config, model, rule):
        return "all_tokens", 1.0
    ratio_knob = config.knobs.get("swa_full_tokens_ratio")
    ratio = float(ratio_knob if ratio_knob is not None else rule.get("window_pool_ratio", 1.0))
    pool_types = tuple(rule.get("window_pool_model_types", ()))
    takes_pool = model.model_type in pool_types and bool(model.window_layer_share)
    asked = [f"--{k.replace('_', '-')}" for k in ("swa_full_tokens_ratio", "disable_hybrid_swa_memory")
             if config.knobs.get(k) is not None]
    if asked and not takes_pool:
        raise PhasewiseError(f"{' and '.join(asked)}: {config.label}'s hybrid SWA pool holds only the windowed layers "
                             f"of {', '.join(pool_types)} models; {model.model_type} keeps every layer's KV in one "
                             f"pool, so it would change nothing")
    off_on = (rule.get("all_tokens_on") or {}).get(model.model_type, ())
    pooled = takes_pool and not on_hardware(hw, off_on)
    pooled = pooled and not config.knobs.get("disable_hybrid_swa_memory")
    if ratio_knob is not None and not pooled:
        why = ("--disable-hybrid-swa-memory" if config.knobs.get("disable_hybrid_swa_memory") else
               f"{model.model_type} on {hw.key}: its default attention backend, trtllm_mha, turns the pool off")
        raise PhasewiseError(f"--swa-full-tokens-ratio sizes {config.label}'s hybrid SWA pool, which is disabled "
                             f"here ({why}): it would change nothing")
    return ("window_pool" if pooled else rule.get("layout", "per_sequence")), ratio


def _compressed_window_kv(config: EngineConfig, model: ModelSpec, rule: dict) -> tuple[str, float]:
    """window_kv() of compressed attention (DeepSeek-V4): the windows in whole pages per sequence (window_pages:
    TensorRT-LLM, compressed_window_pages_rule), in the blocks of a pool every cache group shares (block_pool: vLLM,
    compressed_block_pool_rule), per sequence (an engine with neither rule), or in an SWA pool of
    swa_full_tokens_ratio tokens per context token where the preset's rule `compressed_window_pool` names the model
    type (SGLang's DSV4 pools; its model hook's ratio unless --swa-full-tokens-ratio says)."""
    pool = rule.get("compressed_window_pool") or {}
    if model.model_type not in pool.get("model_types", ()):
        asked = [f"--{k.replace('_', '-')}" for k in ("swa_full_tokens_ratio", "disable_hybrid_swa_memory")
                 if config.knobs.get(k) is not None]
        if asked:
            raise PhasewiseError(f"{' and '.join(asked)}: {config.label} holds {model.name}'s window entries per "
                                 "sequence, in no pool of their own, so it would change nothing")
        if compressed_block_pool_rule(config, model):
            return "block_pool", 1.0
        return ("window_pages" if compressed_window_pages_rule(config, model) else "per_sequence"), 1.0
    if config.knobs.get("disable_hybrid_swa_memory"):
        raise PhasewiseError(f"--disable-hybrid-swa-memory: {config.label} sizes {model.name}'s pools from its SWA pool "
                             "(DSV4PoolConfigurator), which it cannot run without")
    ratio = config.knobs.get("swa_full_tokens_ratio")
    return "window_pool", float(ratio if ratio is not None else pool["ratio"])


def window_pool_speculation(config: EngineConfig, model: ModelSpec, speculative: bool
                            ) -> tuple[tuple[int, int], int] | None:
    """((CSA, HCA) compressor ring slots, draft layers) of an engine's pool for compressed attention's windows under
    speculative decoding (the preset's `compressed_window_pool` rule's `speculative`: SGLang's DSV4 pools); None
    without speculative decoding, or where the engine keeps no such pool (perf/window_kv.py kv_window_terms)."""
    pool = _compressed_kv_rule(config, model, "compressed_window_pool") if speculative else None
    rule = pool and pool.get("speculative")
    if not rule:
        return None
    return (int(rule["ring_slots"]["csa"]), int(rule["ring_slots"]["hca"])), int(rule["draft_layers"])


def compressed_block_pool_rule(config: EngineConfig, model: ModelSpec) -> dict[str, Any] | None:
    """The preset's `window_kv` rule `compressed_block_pool` where it takes `model` (vLLM's DeepSeek-V4 pool:
    perf/shared_block_pool.py), with the compressed group's block; else None."""
    return _compressed_kv_rule(config, model, "compressed_block_pool")


def compressed_window_pages_rule(config: EngineConfig, model: ModelSpec) -> dict[str, Any] | None:
    """The preset's `window_kv` rule `compressed_window_pages` where it takes `model` (TensorRT-LLM's DeepSeek-V4
    pages: perf/window_pages.py), with its default page and the pages it keeps; else None."""
    return _compressed_kv_rule(config, model, "compressed_window_pages")


def _compressed_kv_rule(config: EngineConfig, model: ModelSpec, key: str) -> dict[str, Any] | None:
    """The preset's `window_kv` rule `key` where its model_types take `model`'s compressed attention, with the block
    the preset runs it on and the sizes it keeps (`compressed_attention_block`: block_tokens, keeps); else None."""
    rule = (config.window_kv_rule or {}).get(key)
    if model.compressed is None or not rule or model.model_type not in rule["model_types"]:
        return None
    block = preset_entry(config.engine)["compressed_attention_block"]
    return {**rule, "block_tokens": int(block["block"]), "keeps": list(block.get("keeps", ()))}


def recurrent_state_in_kv_pool(config: EngineConfig, model: ModelSpec) -> bool:
    """Whether this engine takes a linear-attention model's recurrent states from its KV pool, one per running
    sequence, instead of holding them apart (the preset's `window_kv` rule `recurrent_state: kv_pool`: vLLM's hybrid
    KV cache manager, from its `hybrid_from_version` on and not beside a disaggregated role's KV connector)."""
    rule = config.window_kv_rule or {}
    if not model.linear_attention_layers or rule.get("recurrent_state") != "kv_pool":
        return False
    first = rule.get("hybrid_from_version")
    if first and version_key(config.version) < version_key(str(first)):
        return False
    return not ("kv_connector" in rule.get("all_tokens_for", ()) and config.role in ("prefill", "decode"))


DEFAULT_KV_BLOCK_TOKENS = 16  # a preset without kv_block_tokens (engine_presets.yaml): vLLM's


def default_kv_block(config: EngineConfig) -> int:
    """The KV block an engine takes when not told: its preset's `kv_block_tokens` (vLLM 16, SGLang's page 1,
    TensorRT-LLM 32), else DEFAULT_KV_BLOCK_TOKENS."""
    return int(preset_entry(config.engine).get("kv_block_tokens", DEFAULT_KV_BLOCK_TOKENS))


def kv_block(config: EngineConfig, model: ModelSpec, hw: HardwareSpec, asked: int | None) -> tuple[int, str]:
    """(KV block tokens, the attention kernel that changed it, or "") the engine runs `model` on: the deployment's
    block_size (`asked`; None: default_kv_block), unless a latent-attention model's MLA kernel needs another, which
    the engine then forces whatever is asked (the preset's `latent_attention_block` rules: vLLM's FlashMLA /
    FlashInfer MLA / CUTLASS MLA, SGLang's trtllm_mla, TensorRT-LLM's DSA cache). A linear-attention hybrid keeps it
    here: its block is raised to one recurrent state's page instead (perf/memory.py kv_state_pages)."""
    if asked is None:
        asked = default_kv_block(config)
    if model.compressed is not None:  # DeepSeek-V4: the preset's `compressed_attention_block`
        rule = preset_entry(config.engine).get("compressed_attention_block")
        if rule is None or asked in rule["keeps"]:
            return asked, ""
        return int(rule["block"]), str(rule["kernel"])
    if not model.latent_attention or model.linear_attention_layers:
        return asked, ""
    nope = model.head_dim - model.qk_rope_head_dim
    for rule in preset_entry(config.engine).get("latent_attention_block") or ():
        if not on_hardware(hw, rule["hardware"]):
            continue
        if "sparse" in rule and bool(rule["sparse"]) != bool(model.sparse_attention_topk):
            continue
        if model.model_type not in rule.get("model_types", (model.model_type,)):
            continue
        if rule.get("qk_nope_head_dim", nope) != nope:
            continue
        multiple = rule.get("keeps_multiples_of")
        if asked in rule.get("keeps", ()) or (multiple and asked % multiple == 0):
            return asked, ""
        return int(rule["block"]), str(rule["kernel"])
    return asked, ""


def default_kv_dtype(config: EngineConfig, model: ModelSpec, hw: HardwareSpec) -> str | None:
    """The KV-cache dtype the engine picks for `model` on `hw` when told none ("auto"), where that is not the
    precision's own (quant.yaml kv_dtype): the preset's `sparse_attention_kv_dtype` rules for a DeepSeek
    sparse-attention model (SGLang: FP8 on Blackwell, BF16 on Hopper); FP8 for DeepSeek-V4's compressed attention
    in every engine (vLLM's DeepSeek-V4 attention asserts an FP8 cache, kept as fp8_ds_mla; SGLang's
    DeepSeekV4SingleKVPool is FP8; TensorRT-LLM's DeepSeek-V4 README starts from FP8 KV). None: the precision's."""
    if model.compressed is not None:
        return "fp8"
    if not model.sparse_attention_topk:
        return None
    for rule in preset_entry(config.engine).get("sparse_attention_kv_dtype") or ():
        if on_hardware(hw, rule["hardware"]):
            return str(rule["kv_dtype"])
    return None


def engine_kv(quant: QuantScheme, config: EngineConfig, model: ModelSpec, hw: HardwareSpec,
              asked_kv_dtype: bool) -> QuantScheme:
    """`quant` with the KV cache as the engine keeps it for `model` on `hw`: its "auto" dtype where none was asked
    (default_kv_dtype) and, for a DeepSeek sparse-attention model, its FP8 latent's layout (the preset's
    `sparse_attention_fp8_kv_layout`, default flashmla: FlashMLA's sparse layout; TensorRT-LLM plain FP8). An asked
    dtype the engine cannot keep (specs/engine_refusals.py kv_dtype_refusal) is a one-line error."""
    if not asked_kv_dtype:
        quant = quant.with_kv(default_kv_dtype(config, model, hw))
    elif refusal := kv_dtype_refusal(config.engine, quant.kv_dtype, quant.activation_dtype):  # INT4 on vLLM, ...
        raise PhasewiseError(refusal)
    if model.sparse_attention_topk or model.compressed is not None:
        refusal = sparse_kv_refusal(config.engine, model, hw, quant.kv_dtype)
        if refusal:
            raise PhasewiseError(refusal)
        layout = preset_entry(config.engine).get("sparse_attention_fp8_kv_layout", "flashmla")
        if layout != quant.sparse_kv_layout:
            quant = quant.model_copy(update={"sparse_kv_layout": layout})
    return quant


def sparse_kv_refusal(engine: str, model: ModelSpec, hw: HardwareSpec, kv_dtype: str) -> str:
    """Why `engine` cannot keep a DeepSeek sparse-attention model's KV cache in `kv_dtype` on `hw` ("" where it can):
    the preset's `sparse_attention_kv_dtypes` rules (TensorRT-LLM on Hopper: FlashMLA's BF16-KV sparse kernel)."""
    if not model.sparse_attention_topk:
        return ""
    for rule in preset_entry(engine).get("sparse_attention_kv_dtypes") or ():
        if on_hardware(hw, rule["hardware"]) and kv_dtype not in rule["allowed"]:
            return (f"{engine.split('@', 1)[0]} keeps a sparse-attention model's KV cache ({model.name}) on "
                    f"{hw.key} in {', '.join(rule['allowed'])} only, not {kv_dtype}: {rule['why']} "
                    f"(--kv-dtype {rule['allowed'][0]})")
    return ""


def prefix_caching_default(config: EngineConfig, model: ModelSpec) -> bool:
    """Whether the engine caches prompt prefixes for `model` unless told: its preset's default, except where the
    preset turns it off for linear-attention hybrids (`linear_hybrid_prefix_caching: false`: vLLM) or cannot run it
    with sparse attention (`sparse_attention_prefix_caching: false`: TensorRT-LLM, prefix_caching_refusal)."""
    if model.linear_attention_layers and preset_entry(config.engine).get("linear_hybrid_prefix_caching") is False:
        return False
    if prefix_caching_refusal(config, model):
        return False
    return config.prefix_caching


def prefix_caching_refusal(config: EngineConfig, model: ModelSpec) -> str:
    """Why this engine cannot cache prefixes for `model` at all ("" where it can): TensorRT-LLM's DSA cache manager
    raises on block reuse for sparse-attention models (engine_presets.yaml `sparse_attention_prefix_caching`)."""
    if model.sparse_attention_topk and preset_entry(config.engine).get("sparse_attention_prefix_caching") is False:
        return (f"{config.label} does not reuse KV blocks of a sparse-attention model ({model.name}: its DSA indexer "
                f"K-cache manager raises NotImplementedError on block reuse)")
    return ""


# a version's release numbers and the pre- or post-release tag after them (PEP 440's spellings); the rest is ignored
_VERSION = re.compile(r"v?(\d+(?:\.\d+)*)(?:[.-]?(dev|a|b|rc|post)\.?(\d*))?")
_PHASES = {"dev": 0, "a": 1, "b": 2, "rc": 3, None: 4, "post": 5}  # a release's place beside its own tags


def version_key(version: str) -> tuple[tuple[int, ...], tuple[int, int]]:
    """An engine version's sort key (`--engine NAME@VERSION`, engine_presets.yaml's rules, engine_flags.yaml's
    `since`): its release numbers, trailing zeros dropped (0.11 = 0.11.0), then its tag: dev, a, b and rc before
    the release, post after it: 0.10.2 < 0.11.0rc1 < 0.11 < 0.11.0.post1 < 0.11.1. A version that starts with no
    number (`paper`) sorts before every numbered one."""
    match = _VERSION.match(version.strip())
    if match is None:
        return (), (_PHASES[None], 0)
    release = [int(part) for part in match.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return tuple(release), (_PHASES[match.group(2)], int(match.group(3) or 0))


def _hybrid_manager_off(config: EngineConfig, model: ModelSpec, rule: dict[str, Any]) -> bool:
    """Whether the preset's `hybrid_from_version` / `all_tokens_for` rule (engine_presets.yaml: vLLM's and V0-era
    engines') keeps every token on every layer for this model and role: a hybrid stack before the hybrid allocator
    or on an engine without one (`hybrid`), chunked local attention, a disaggregated role's KV connector."""
    if not model.sliding_window:
        return False
    reasons = rule.get("all_tokens_for", ())
    hybrid = bool(model.window_layer_share)
    first = rule.get("hybrid_from_version")
    if hybrid and first and version_key(config.version) < version_key(str(first)):
        return True
    if "chunked_attention" in reasons and model.chunked_attention:
        return True
    if "hybrid" in reasons and hybrid:
        return True
    return hybrid and "kv_connector" in reasons and config.role in ("prefill", "decode")
