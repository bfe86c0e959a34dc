"""`phasewise validate --recurrent`: a real transformers MiniMax stack (lightning attention in seven layers of eight,
softmax attention in the eighth, a MoE in every layer; random weights, scaled down) timed on prefill and decode,
against the cost model (perf/attention.py LinearAttention's "lightning" kernels).

The model is transformers' `MiniMaxForCausalLM` built from the checkpoint's shape at fewer layers and a narrower
width: heads of the checkpoint's head_dim (128), its query-to-KV-head ratio and its layer pattern (the first
--layers entries of attn_type_list, at least one softmax layer among them), its top-k over EXPERTS experts whose
width keeps the checkpoint's ratio to the hidden size, a vocabulary of SCALED_VOCAB; fp32, one torch thread
(MEASURING.md). The same config goes through specs/hf_config.py's parser (transformers' `minimax` form, its
layer_types), so the prediction costs exactly the shapes that ran. transformers' lightning prefill is the blocked
algorithm vLLM's kernel runs (blocks of 256: the in-block (Q K^T) V, the history's Q S, the block's K^T V into the
state), decode the one-step recurrence, both as PyTorch matmuls.

Timed by measure/stack_timing.py (validate --gemma4 shares it) and predicted on the calibrated hardware entry
(`phasewise calibrate`: micro-benchmarks, none of these forwards) and on the catalog's class-default CPU entry
(`cpu-local` with `hf-eager`): the unfitted error beside the calibrated one. A decode point times one step after a
prefill of its context (the softmax layer's KV cache is transformers' dynamic one, concatenated each step; the
lightning layers' states are updated in place).

Jamba's Mamba-1 layers are not timed here: without the mamba kernels (CUDA only) transformers runs the selective
scan as a Python loop over the tokens, not the kernel engines run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.measure.stack_timing import StackPoint, validate_stack
from phasewise.measure.validate import scaled_kv_heads, scaled_width
from phasewise.specs import load_model
from phasewise.specs.catalog import packaged

RECURRENT_MODEL = "MiniMaxAI/MiniMax-M1-80k"
EXPERTS = 4  # routed experts of the scaled MoE (the checkpoint's top-k of them)
SCALED_VOCAB = 32768  # the LM head of the checkpoint's 200,064 would outweigh a scaled stack's decode step


def scaled_minimax_config(checkpoint: dict[str, Any], layers: int, hidden: int) -> dict[str, Any]:
    """transformers MiniMaxConfig fields of the checkpoint's shape at `layers` layers and `hidden` width."""
    head_dim = int(checkpoint.get("head_dim") or checkpoint["hidden_size"] // checkpoint["num_attention_heads"])
    if hidden % head_dim:
        raise PhasewiseError(f"--hidden must be a multiple of the heads' {head_dim} for --recurrent (got {hidden})")
    kinds = ["linear_attention" if kind == 0 else "full_attention" for kind in checkpoint["attn_type_list"]][:layers]
    if len(kinds) < layers or "full_attention" not in kinds:
        raise PhasewiseError(f"--layers {layers}: the scaled stack takes the checkpoint's first layers "
                             f"(1..{len(checkpoint['attn_type_list'])}), and at least one softmax layer (8 or more)")
    heads = hidden // head_dim
    kv_heads = scaled_kv_heads(heads, checkpoint["num_attention_heads"] // checkpoint["num_key_value_heads"])
    width = scaled_width(checkpoint["intermediate_size"], hidden, checkpoint["hidden_size"])
    return dict(model_type="minimax", hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, head_dim=head_dim, intermediate_size=width,
                num_local_experts=EXPERTS, num_experts_per_tok=min(int(checkpoint["num_experts_per_tok"]), EXPERTS),
                vocab_size=SCALED_VOCAB, layer_types=kinds, block_size=256, max_position_embeddings=8192,
                tie_word_embeddings=False, hidden_act="silu")


def recurrent_validate(hardware: str, model: str = RECURRENT_MODEL, layers: int = 8, hidden: int = 512,
                       quick: bool = False, engine: str | None = None, repeats: int | None = None,
                       progress: Callable[[str], None] | None = None) -> tuple[list[StackPoint], dict[str, Any]]:
    """Measured vs predicted prefill and decode of a scaled lightning-attention stack."""
    spec = load_model(model)
    if spec.linear_recurrence != "lightning" or not spec.linear_attention_layers:
        raise PhasewiseError(f"--recurrent times lightning attention (MiniMax-Text-01 / M1): '{spec.name}' has none "
                             f"(e.g. {RECURRENT_MODEL})")
    checkpoint = packaged("models.yaml")["models"].get(spec.name, {}).get("config")
    if checkpoint is None:
        raise PhasewiseError(f"--recurrent needs a catalog entry's config of '{spec.name}' (e.g. {RECURRENT_MODEL})")
    def build(transformers: Any, fields: dict[str, Any]) -> Any:
        return transformers.MiniMaxForCausalLM(transformers.MiniMaxConfig(**fields))

    return validate_stack(spec.name, scaled_minimax_config(checkpoint, layers, hidden), SCALED_VOCAB, hardware,
                          engine, build, quick, repeats, progress)
