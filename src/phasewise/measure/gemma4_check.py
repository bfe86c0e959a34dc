"""`phasewise validate --gemma4`: a real transformers Gemma 4 stack (random weights, scaled down) timed on prefill and
decode, against the cost model's kind-by-kind costing of its layers (ModelSpec.window_head_dim / window_kv_heads,
KV-shared layers, double-wide MLPs, per-layer embeddings: specs/hf_gemma4.py).

The model is transformers' `Gemma4ForCausalLM` built from a catalog entry's text_config at fewer layers and a
narrower width: the checkpoint's head widths (256 sliding, 512 full) and KV heads (the full layers' global ones with
attention_k_eq_v), query heads in the checkpoint's proportion to the width, the first --layers of its layer pattern
(the last one full, as transformers forces), its share of KV-shared layers (leaving an unshared layer of each kind
to store the KV they reuse), its double-wide MLP, its per-layer-embedding width in the checkpoint's proportion, its
MLP width ratio, a vocabulary of SCALED_VOCAB; fp32, one torch thread (MEASURING.md). The same config goes through
specs/hf_config.py's parser, so the prediction costs exactly the shapes that ran.

The sliding window is set beyond every timed context: transformers' eager and SDPA paths mask the keys outside a
window rather than skip them, so a window's savings are the kernel's (FlashAttention's), not measured here; what is
measured is the two kinds' projections and attention at their own widths, the shared layers' missing K and V, the
wide MLPs and the per-layer inputs. transformers runs the KV-shared layers of a prefill over the tokens whose logits
are kept only (their outputs feed nothing else: vLLM's opt-in --kv-sharing-fast-prefill); the cost model runs them
over every token, as engines do by default, so a timed prefill keeps every token's logits (its LM head over the
whole prompt, predicted so). Timed by measure/stack_timing.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.stack_timing import StackPoint, validate_stack
from phasewise.measure.validate import scaled_kv_heads, scaled_width
from phasewise.specs import load_model
from phasewise.specs.catalog import packaged
from phasewise.specs.hf_config import from_hf_config

GEMMA4_MODEL = "google/gemma-4-E2B-it"
SCALED_VOCAB = 32768  # the checkpoint's 262,144 would outweigh a scaled stack's forward
SCALED_WINDOW = 8192  # beyond every timed context (module docstring)


def scaled_gemma4_config(text: dict[str, Any], layers: int, hidden: int) -> dict[str, Any]:
    """transformers Gemma4TextConfig fields of a checkpoint's text_config at `layers` layers and `hidden` width."""
    full = from_hf_config("checkpoint", {"model_type": "gemma4_text", **text})
    if full.num_experts:
        raise PhasewiseError("--gemma4 times the dense Gemma 4 models (31B, E4B, E2B); the MoE's experts run as a "
                             "Python loop over them in transformers, not the grouped kernels engines run")
    if layers > full.num_layers:
        raise PhasewiseError(f"--layers {layers} must be 1..{full.num_layers} (the checkpoint's layers)")
    pattern = list(text.get("layer_types") or [
        "sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(full.num_layers)])
    kinds = pattern[:layers]
    kinds[-1] = "full_attention"  # as transformers forces
    period = pattern.index("full_attention") + 1
    shared = 0
    if full.kv_shared_layers:  # the checkpoint's share, leaving the first full layer and those before it unshared
        shared = min(round(layers * full.kv_shared_layers / full.num_layers), max(layers - period, 0))
    heads = max(1, round(full.num_heads * hidden / full.hidden_size))
    kv_heads = scaled_kv_heads(heads, full.num_heads // full.window_layer_kv_heads)
    width = scaled_width(full.intermediate_size, hidden, full.hidden_size)
    config = dict(model_type="gemma4_text", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv_heads, head_dim=full.window_layer_head_dim, global_head_dim=full.head_dim,
                  attention_k_eq_v=full.value_from_key, intermediate_size=width, vocab_size=SCALED_VOCAB,
                  layer_types=kinds, sliding_window=SCALED_WINDOW, max_position_embeddings=2 * SCALED_WINDOW,
                  num_kv_shared_layers=shared, use_double_wide_mlp=bool(full.wide_mlp_layers),
                  hidden_size_per_layer_input=0, vocab_size_per_layer_input=SCALED_VOCAB, tie_word_embeddings=True,
                  hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=30.0)
    if full.value_from_key:
        config["num_global_key_value_heads"] = max(1, kv_heads * full.num_kv_heads // full.window_layer_kv_heads)
    if full.per_layer_input_size:
        config["hidden_size_per_layer_input"] = max(16, round(full.per_layer_input_size * hidden / full.hidden_size
                                                              / 16) * 16)
    return config


def gemma4_validate(hardware: str, model: str = GEMMA4_MODEL, layers: int = 10, hidden: int = 512,
                    quick: bool = False, engine: str | None = None, repeats: int | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[list[StackPoint], dict[str, Any]]:
    """Measured vs predicted prefill and decode of a scaled Gemma 4 stack."""
    spec = load_model(model)
    entry = packaged("models.yaml")["models"].get(spec.name, {}).get("config") or {}
    text = entry.get("text_config")
    if spec.model_type != "gemma4_text" or not isinstance(text, dict):
        raise PhasewiseError(f"--gemma4 times a Gemma 4 catalog entry (e.g. {GEMMA4_MODEL}); '{spec.name}' is "
                             f"{spec.model_type}")
    def build(transformers: Any, fields: dict[str, Any]) -> Any:
        from transformers.models.gemma4.modeling_gemma4 import Gemma4ForCausalLM
        return Gemma4ForCausalLM(transformers.Gemma4TextConfig(**fields))

    return validate_stack(spec.name, scaled_gemma4_config(text, layers, hidden), SCALED_VOCAB, hardware, engine,
                          build, quick, repeats, progress, every_logit=True)
