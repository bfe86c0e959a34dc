"""Llama-Nemotron's NAS blocks (specs/hf_nas.py): hand-counted widths, parameters and KV bytes from block_configs,
attention-free layers costed as none of their attention, and one-line errors for what is not modelled."""

import copy

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.perf.operators import kernel_counts
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.hf_config import from_hf_config
from phasewise.specs.hf_nas import ffn_mult_width

SUPER = "nvidia/Llama-3_3-Nemotron-Super-49B-v1"
ULTRA = "nvidia/Llama-3_1-Nemotron-Ultra-253B-v1"


def config(name):
    return copy.deepcopy(packaged("models.yaml")["models"][name]["config"])


@pytest.mark.parametrize("mult, hidden, width", [
    (5.25, 8192, 28672), (2.625, 8192, 14336), (3.28125, 8192, 17920), (1.3125, 8192, 7168), (1.0, 8192, 5632),
    (0.5, 8192, 2816), (0.4875, 16384, 5376), (4.875, 16384, 53248), (39.0, 16384, 425984),
])
def test_ffn_mult_widths_by_hand(mult, hidden, width):
    # int(2 x mult x hidden / 3), rounded up to a multiple of 256: 5.25 x 8192 -> 28,672 exactly; 1.0 -> 5,461 -> 5,632
    assert ffn_mult_width(mult, hidden) == width


def test_super_parameters_and_kv_bytes_by_hand():
    cfg = config(SUPER)
    h, vocab = 8192, 128256
    attention = h * (h + 2 * 8 * 128) + h * h  # q, k, v of 8 K / V heads, o
    blocks = cfg["block_configs"]
    attending = sum(1 for b in blocks if not b["attention"].get("no_op"))
    mlp = sum(3 * h * ffn_mult_width(b["ffn"]["ffn_mult"], h) for b in blocks)
    m = load_model(SUPER)
    assert (m.num_layers, m.attention_free_layers, attending) == (80, 31, 49)
    # the mean width is rounded to a whole number: within 80 layers x 3 x 8192 x 0.5 of the blocks' sum
    assert m.total_params == pytest.approx(attending * attention + mlp + 2 * vocab * h, abs=80 * 3 * h / 2)
    assert 49e9 <= m.total_params < 50.5e9  # "49B"
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == 49 * 2 * 8 * 128 * 2  # 200,704: the attending blocks'
    assert m.widest_mlp_size == 28672 and m.mlp_width_varies and not m.uniform_layers


def test_ultra_drops_its_empty_blocks():
    m = load_model(ULTRA)
    assert (m.num_layers, m.attention_free_layers, m.mlp_free_layers) == (81, 17, 0)  # of 162 blocks
    assert kv_bytes_per_token(m, load_quant("bf16"), 8, 1) == 64 * 2 * 1 * 128 * 2  # one K / V head a GPU at TP 8
    assert m.widest_mlp_size == 425984
    assert 252.5e9 <= m.total_params < 254e9  # "253B"


def test_attention_free_layers_cost_none_of_their_attention():
    m = load_model(SUPER)
    every = m.model_copy(update={"attention_free_layers": 0, "layer_pattern": ""})
    hw, quant, engine = load_hardware("h100-sxm"), load_quant("fp8"), load_engine("vllm")
    for shape in (BatchShape.uniform(1, 2048, 0), BatchShape.uniform(64, 1, 4000)):
        nas, full = ({op.name: op for op in CostModel(model, hw, quant, engine, 4, 1).iteration(shape).operators}
                     for model in (m, every))
        for name in ("attention", "qkv_proj", "o_proj"):
            assert nas[name].flops == pytest.approx(full[name].flops * 49 / 80)
            assert nas[name].bytes == pytest.approx(full[name].bytes * 49 / 80)
        assert nas["mlp_down"].flops == full["mlp_down"].flops
        assert (nas["tp_allreduce"].count, full["tp_allreduce"].count) == (49 + 80, 160)
    # kernels: the attention's, its projections' and its norm and RoPE in 49 of 80 layers
    plain, free = kernel_counts(False, False), kernel_counts(False, False, attention_free_share=31 / 80)
    assert free["attention"] == pytest.approx(plain["attention"] * 49 / 80)
    assert free["elementwise"] == pytest.approx(plain["elementwise"] - 2 * 31 / 80)


def test_decode_line_agrees_with_fast_for_attention_free_layers():
    """The simulator's closed-form decode runs against fast() step by step (test_decode_line_parity's check)."""
    m = load_model(SUPER)
    cost = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8"), load_engine("vllm"), 2, 1)
    seqs = 48
    line = cost.decode_line(seqs, seqs, seqs)
    pairs = kv = seqs * 3001.0
    latencies, _ = cost.decode_line_series(line, pairs, kv, np.arange(10.0), seqs, seqs)
    for step in (0, 9):
        grown = pairs + seqs * step
        fast = cost.fast(BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=grown, decode_kv_tokens=grown,
                                    logit_tokens=seqs))
        assert latencies[step] == pytest.approx(fast[0], rel=1e-9)


def test_a_device_split_holds_its_ranges_kinds():
    m = load_model(SUPER)
    part = m.stack_part(10, 42)  # blocks 42-51: none attends
    assert (part.num_layers, part.attention_free_layers) == (10, 10)
    part = m.stack_part(10, 0)  # 0-9: 6 and 7 do not
    assert part.attention_free_layers == 2 and part.full_attention_layers == 8


def _with_block(change, index=0):
    cfg = config(SUPER)
    for part, values in change.items():
        cfg["block_configs"][index][part] = values
    return cfg


@pytest.mark.parametrize("cfg, message", [
    (_with_block({"attention": {"replace_with_linear": True, "no_op": False}}),
     r"block_configs\[0\].attention.replace_with_linear \(a linear layer in its place"),
    (_with_block({"ffn": {"replace_with_linear": True}}), r"block_configs\[0\].ffn.replace_with_linear"),
    (_with_block({"attention": {"n_heads_in_group": 8, "window_length": 4096}}), "windowed attention"),
    (_with_block({"attention": {"n_heads_in_group": 16}}), r"n_heads_in_group \[8, 16\] on different blocks"),
    (_with_block({"attention": {"n_heads_in_group": 8, "moe": {"experts": 8}}}),
     r"block_configs\[0\].attention.moe is not read"),
    (_with_block({"ffn": {"ffn_mult": "wide"}}), "ffn.ffn_mult must be a positive number"),
    (_with_block({"ffn": {}}), "ffn.ffn_mult or intermediate_size must be a positive integer"),
    (_with_block({"attention": "none"}), r"block_configs\[0\].attention must be a mapping"),
    ({**config(SUPER), "num_hidden_layers": 79}, "must list one block for each of the 79 layers"),
    ({**config(SUPER), "block_configs": [{"attention": {"no_op": True}, "ffn": {"ffn_mult": 1.0}}] * 80},
     "no block with attention"),
])
def test_what_is_not_modelled_is_a_one_line_error(cfg, message):
    with pytest.raises(PhasewiseError, match=message) as err:
        from_hf_config("m", cfg)
    assert "\n" not in str(err.value)


def test_a_block_naming_its_width_and_a_block_without_mlp():
    cfg = config(SUPER)
    cfg["block_configs"][0]["ffn"] = {"intermediate_size": 1024}  # vLLM's fallback when ffn_mult is absent
    cfg["block_configs"][1]["ffn"] = {"no_op": True}
    widths = [1024] + [ffn_mult_width(b["ffn"]["ffn_mult"], 8192) for b in cfg["block_configs"][2:]]
    m = from_hf_config("m", cfg)
    assert m.mlp_free_layers == 1 and m.num_dense_layers == 79
    assert m.intermediate_size == round(sum(widths) / 79)


def test_edge_stages_name_their_attention_free_layers(run_cli):
    """Super-49B over two H100s split [38, 42]: the first stage holds blocks 6, 7 and 11 without attention, the second
    the other 28 (42-51, 53-70); the table grows a column for them."""
    import json

    args = ("--model", SUPER, "--devices", "h100-sxm,h100-sxm", "--split", "38,42", "--prompt-len", "512",
            "--output-len", "8")
    code, out, _ = run_cli("edge", *args, "--json")
    stages = json.loads(out)["stages"]
    assert code == 0 and [(s["full_layers"], s["attention_free_layers"]) for s in stages] == [(35, 3), (14, 28)]
    code, out, _ = run_cli("edge", *args)
    assert code == 0 and "no attention" in out
