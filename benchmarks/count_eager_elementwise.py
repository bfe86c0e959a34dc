"""Count the bytes transformers' eager Llama decoder layer moves in its elementwise ops, by class, against the fused
kernels' count the cost model uses (perf/cost.py): the source of the `hf-eager` engine's `unfused_elementwise`; and
the ops it dispatches for each kernel of the fused count, the source of its `unfused_kernels`.

The layer runs on PyTorch's meta device in bf16 (shapes and dtypes only: no weights, no arithmetic, instant at any
size), under a TorchDispatchMode that sums each dispatched op's input and output bytes. GEMMs and attention are left
out (their own operators). Classes: the two residual add + RMSNorms (fused: 10 hidden-size vectors a token), RoPE on
q and k (apply_rotary_pos_emb; fused: each read and written once) and the gated MLP's activation (act_fn(gate) * up;
fused: gate and up read, the product written). The norm class is the layer's total less the other two. A plain norm
(no residual add: Qwen3's q / k norms, Gemma's post-norms; fused: its input read and its output written) is counted
apart, on a q-shaped tensor. Then a check, not a fit: transformers' Qwen3 decoder layer (q / k norms on top of Llama's)
against the cost model's bytes for it with the `hf-eager` profile (perf/cost.py), and Gemma 3's (sandwich norms, all
of Gemma's norms in fp32 with a (1 + w) scale), whose norms move more than the profile's factors say.

    .venv/bin/python benchmarks/count_eager_elementwise.py [--tokens 1024]

Needs the `measure` extra (torch, transformers).
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace

# (hidden, intermediate, heads, kv heads) of the shapes counted: Llama-2-7B, Llama-3-8B, a small one
SHAPES = {"Llama-2-7B": (4096, 11008, 32, 32), "Llama-3-8B": (4096, 14336, 32, 8), "small": (512, 1536, 8, 2)}
GEMM_AND_ATTENTION = {"linear", "mm", "addmm", "bmm", "matmul", "scaled_dot_product_attention",
                      "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                      "_scaled_dot_product_flash_attention_for_cpu"}


def traffic(run):
    """The bytes and dispatched ops of `run()` under a TorchDispatchMode: each op's inputs and outputs, GEMMs and
    attention left out, views (and same-dtype `to`) moving nothing."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class Traffic(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bytes, self.ops = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            # a view moves nothing; `to` is a view only when the dtype stays
            if func.is_view and not (name == "to" and out.dtype != args[0].dtype):
                return out
            self.ops += 1
            if name not in GEMM_AND_ATTENTION:
                tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
                self.bytes += sum(t.numel() * t.element_size() for t in tensors)
            return out

    mode = Traffic()
    with torch.inference_mode(), mode:
        run()
    return mode


def llama_layer(tokens: int, shape: tuple[int, int, int, int]) -> SimpleNamespace:
    """transformers' eager Llama decoder layer of `shape` in bf16 on the meta device, with inputs of `tokens` tokens:
    the hidden states `x`, RoPE's `cos`, a q and k to rotate, a gate to activate, a plain (head-size) norm."""
    import torch
    import transformers
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

    hidden, inter, heads, kv_heads = shape
    head_dim, dtype = hidden // heads, torch.bfloat16
    config = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=1,
                                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=256,
                                      attn_implementation="sdpa")
    with torch.device("meta"):
        return SimpleNamespace(
            config=config, layer=LlamaDecoderLayer(config, 0).to(dtype).eval(), plain=LlamaRMSNorm(head_dim).to(dtype),
            x=torch.empty(1, tokens, hidden, dtype=dtype), cos=torch.empty(1, tokens, head_dim, dtype=dtype),
            q=torch.empty(1, heads, tokens, head_dim, dtype=dtype),
            k=torch.empty(1, kv_heads, tokens, head_dim, dtype=dtype),
            gate=torch.empty(1, tokens, inter, dtype=dtype))


def count(tokens: int, shape: tuple[int, int, int, int]) -> dict[str, float]:
    """{class: eager bytes / fused bytes} and the layer's dispatched ops for one shape."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    hidden, inter, heads, kv_heads = shape
    head_dim = hidden // heads
    t = llama_layer(tokens, shape)
    whole = traffic(lambda: t.layer(t.x, attention_mask=None, position_embeddings=(t.cos, t.cos)))
    rope = traffic(lambda: apply_rotary_pos_emb(t.q, t.k, t.cos, t.cos)).bytes
    act_fn = t.layer.mlp.act_fn
    activation = traffic(lambda: act_fn(t.gate) * t.gate).bytes
    plain_norm = traffic(lambda: t.plain(t.q)).bytes
    element = 2  # bf16
    return {"norm": (whole.bytes - rope - activation) / (tokens * element * 10 * hidden),
            "plain_norm": plain_norm / (2 * t.q.numel() * element),
            "rope": rope / (tokens * element * 2 * (heads + kv_heads) * head_dim),
            "activation": activation / (tokens * element * 3 * inter),
            "passes": whole.bytes / (tokens * element * (10 * hidden + 2 * (heads + kv_heads) * head_dim + 3 * inter)),
            "ops": float(whole.ops)}


def kernels(tokens: int, shape: tuple[int, int, int, int]) -> dict[str, float]:
    """The ops transformers' eager Llama layer dispatches (each a kernel; views left out) for each class of the fused
    count (perf/operators.py), the source of hf-eager's `unfused_kernels`: a residual add + RMSNorm, a plain norm,
    RoPE on q and k, the activation and its product, the projections (q / k / v and gate / up are modules of their
    own: one GEMM each) and attention (the rest of the layer, in a decode step over a DynamicCache: its two cats and
    SDPA); `layer`: the whole layer's ops in that step."""
    import torch
    import transformers
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    t = llama_layer(tokens, shape)
    with torch.device("meta"):
        one, cos_one = t.x[:, :1].clone(), t.cos[:, :1].clone()
        cache = transformers.DynamicCache(config=t.config)
        t.layer(t.x, attention_mask=None, position_embeddings=(t.cos, t.cos), cache=cache, use_cache=True,
                cache_position=torch.arange(tokens))  # the prompt, then one decode step over its cache
        position = torch.tensor([tokens])
    step = traffic(lambda: t.layer(one, attention_mask=None, position_embeddings=(cos_one, cos_one),
                                   cache=cache, use_cache=True, cache_position=position)).ops
    counts = {"norm": traffic(lambda: t.layer.input_layernorm(t.x)).ops + 1,  # + its residual add
              "plain_norm": traffic(lambda: t.plain(t.q)).ops,
              "rope": traffic(lambda: apply_rotary_pos_emb(t.q, t.k, t.cos, t.cos)).ops,
              "activation": traffic(lambda: t.layer.mlp.act_fn(t.gate) * t.gate).ops,
              "qkv_proj": 3, "mlp_gate_up": 2}
    projections = counts["qkv_proj"] + 1 + counts["mlp_gate_up"] + 1  # q, k, v; o; gate, up; down
    rest = step - 2 * counts["norm"] - counts["rope"] - counts["activation"] - projections
    return {**counts, "attention": rest / 2, "layer": float(step)}  # the fused count's attention is 2 kernels


# transformers decoder layers beside Llama's, as config.json fields (phasewise's parser reads the same dict), and where
# transformers keeps each model type's classes (module, config class, decoder layer class)
LAYER_CLASSES = {"qwen3": ("qwen3", "Qwen3Config", "Qwen3DecoderLayer"),
                 "gemma3_text": ("gemma3", "Gemma3TextConfig", "Gemma3DecoderLayer")}
LAYERS = {
    "Qwen3-8B": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=1,
                     num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=256),
    "Gemma-3-27B": dict(model_type="gemma3_text", hidden_size=5376, intermediate_size=21504, num_hidden_layers=1,
                        num_attention_heads=32, num_key_value_heads=16, head_dim=128, vocab_size=256,
                        sliding_window=1024, layer_types=["full_attention"]),
}


def check_layer(tokens: int, label: str) -> dict[str, float]:
    """transformers' own decoder layer of `label` (LAYERS) in bf16 on the meta device: its elementwise bytes over the
    cost model's for the same shape with the `hf-eager` profile, and its dispatched ops."""
    import importlib

    import torch
    import transformers

    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_engine, load_hardware, load_quant
    from phasewise.specs.hf_config import from_hf_config

    fields = LAYERS[label]
    family, config_class, layer_class = LAYER_CLASSES[fields["model_type"]]
    module = importlib.import_module(f"transformers.models.{family}.modeling_{family}")
    config = getattr(transformers, config_class)(**{k: v for k, v in fields.items() if k != "model_type"},
                                                 attn_implementation="sdpa")
    dtype = torch.bfloat16
    with torch.device("meta"):
        layer = getattr(module, layer_class)(config, 0).to(dtype).eval()
        x = torch.empty(1, tokens, fields["hidden_size"], dtype=dtype)
        cos = torch.empty(1, tokens, fields["head_dim"], dtype=dtype)
    counted = traffic(lambda: layer(x, attention_mask=None, position_embeddings=(cos, cos)))
    cost = CostModel(from_hf_config(label, fields), load_hardware("h100-sxm"), load_quant("bf16"),
                     load_engine("hf-eager"))
    shape = BatchShape()
    shape.add(tokens, 0)
    modelled = {op.name: op for op in cost.iteration(shape).operators}["elementwise"].bytes
    return {"ratio": counted.bytes / modelled, "ops": float(counted.ops)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    import transformers
    print(f"transformers {transformers.__version__}: LlamaDecoderLayer in bf16, {args.tokens} tokens; eager bytes "
          "over the fused count, by class (the single-number `passes` for comparison)")
    print(f"{'shape':12} {'norm':>7} {'plain norm':>10} {'rope':>7} {'activation':>10} {'passes':>7} {'ops':>5}")
    for label, shape in SHAPES.items():
        row = count(args.tokens, shape)
        print(f"{label:12} {row['norm']:7.3f} {row['plain_norm']:10.3f} {row['rope']:7.3f} {row['activation']:10.3f} "
              f"{row['passes']:7.3f} {row['ops']:5.0f}")
    print("\nops dispatched per kernel of the fused count (a decode step over a DynamicCache; hf-eager's "
          "unfused_kernels):")
    for label, shape in SHAPES.items():
        row = kernels(args.tokens, shape)
        print(f"{label:12} " + " ".join(f"{name} {value:g}" for name, value in row.items()))
    print("\ntransformers' own layer, its elementwise bytes over the cost model's with the hf-eager profile:")
    for label in LAYERS:
        row = check_layer(args.tokens, label)
        print(f"{label:12} {row['ratio']:7.3f} ({row['ops']:.0f} ops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
