"""Count the bytes transformers' eager Llama decoder layer moves in its elementwise ops, by class, against the fused
kernels' count the cost model uses (perf/cost.py): the source of the `hf-eager` engine's `unfused_elementwise`.

The layer runs on PyTorch's meta device in bf16 (shapes and dtypes only: no weights, no arithmetic, instant at any
size), under a TorchDispatchMode that sums each dispatched op's input and output bytes. GEMMs and attention are left
out (their own operators). Classes: the two residual add + RMSNorms (fused: 10 hidden-size vectors a token), RoPE on
q and k (apply_rotary_pos_emb; fused: each read and written once) and the gated MLP's activation (act_fn(gate) * up;
fused: gate and up read, the product written). The norm class is the layer's total less the other two.

    .venv/bin/python benchmarks/count_eager_elementwise.py [--tokens 1024]

Needs the `measure` extra (torch, transformers).
"""

from __future__ import annotations

import argparse
import sys

# (hidden, intermediate, heads, kv heads) of the shapes counted: Llama-2-7B, Llama-3-8B, a small one
SHAPES = {"Llama-2-7B": (4096, 11008, 32, 32), "Llama-3-8B": (4096, 14336, 32, 8), "small": (512, 1536, 8, 2)}
GEMM_AND_ATTENTION = {"linear", "mm", "addmm", "bmm", "matmul", "scaled_dot_product_attention",
                      "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                      "_scaled_dot_product_flash_attention_for_cpu"}


def count(tokens: int, shape: tuple[int, int, int, int]) -> dict[str, float]:
    """{class: eager bytes / fused bytes} and the layer's dispatched ops for one shape."""
    import torch
    import transformers
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, apply_rotary_pos_emb

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

    hidden, inter, heads, kv_heads = shape
    head_dim, dtype = hidden // heads, torch.bfloat16
    config = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=1,
                                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=256,
                                      attn_implementation="sdpa")

    def traffic(run) -> Traffic:
        mode = Traffic()
        with torch.inference_mode(), mode:
            run()
        return mode

    with torch.device("meta"):
        layer = LlamaDecoderLayer(config, 0).to(dtype).eval()
        x = torch.empty(1, tokens, hidden, dtype=dtype)
        cos = torch.empty(1, tokens, head_dim, dtype=dtype)
        q = torch.empty(1, heads, tokens, head_dim, dtype=dtype)
        k = torch.empty(1, kv_heads, tokens, head_dim, dtype=dtype)
        gate = torch.empty(1, tokens, inter, dtype=dtype)
    whole = traffic(lambda: layer(x, attention_mask=None, position_embeddings=(cos, cos)))
    rope = traffic(lambda: apply_rotary_pos_emb(q, k, cos, cos)).bytes
    act_fn = layer.mlp.act_fn
    activation = traffic(lambda: act_fn(gate) * gate).bytes
    element = 2  # bf16
    return {"norm": (whole.bytes - rope - activation) / (tokens * element * 10 * hidden),
            "rope": rope / (tokens * element * 2 * (heads + kv_heads) * head_dim),
            "activation": activation / (tokens * element * 3 * inter),
            "passes": whole.bytes / (tokens * element * (10 * hidden + 2 * (heads + kv_heads) * head_dim + 3 * inter)),
            "ops": float(whole.ops)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    import transformers
    print(f"transformers {transformers.__version__}: LlamaDecoderLayer in bf16, {args.tokens} tokens; eager bytes "
          "over the fused count, by class (the single-number `passes` for comparison)")
    print(f"{'shape':12} {'norm':>7} {'rope':>7} {'activation':>10} {'passes':>7} {'ops':>5}")
    for label, shape in SHAPES.items():
        row = count(args.tokens, shape)
        print(f"{label:12} {row['norm']:7.3f} {row['rope']:7.3f} {row['activation']:10.3f} {row['passes']:7.3f} "
              f"{row['ops']:5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
