"""Each layer's kind as the config names it (ModelSpec.layer_pattern: F full softmax attention, W windowed, L a
linear recurrence), read by every parser that knows it, and the parts of a split (stack_part) that hold the kinds
their ranges have."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.specs import load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.model import ModelSpec


def _write(tmp_path, cfg: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.parametrize("name, pattern", [
    # full_attn_idxs [2, 5, 8, 10, 12, 14]
    ("LiquidAI/LFM2-1.2B", "LLFLLFLLFLFLFLFL"),
    # attn_layer_period 8, attn_layer_offset 4
    ("ai21labs/AI21-Jamba-Mini-1.5", "LLLLFLLL" * 4),
    # attn_type_list: every 8th layer softmax attention
    ("MiniMaxAI/MiniMax-M1-80k", "LLLLLLLF" * 10),
    # full_attention_interval 4 (no layer_types listed)
    ("Qwen/Qwen3.5-397B-A17B", "LLLF" * 15),
    # linear_attn_config: full_attn_layers [4, 8, 12, 16, 20, 24, 27] (1-based)
    ("moonshotai/Kimi-Linear-48B-A3B-Instruct", "LLLF" * 6 + "LLF"),
    # layer_types alternating from a sliding layer
    ("openai/gpt-oss-120b", "WF" * 18),
    # Gemma3TextConfig's rule: layer i windowed unless (i + 1) % 6 == 0
    ("google/gemma-3-27b-it", ("WWWWWF" * 11)[:62]),
    # Llama 4's chunked attention on its RoPE layers, every 4th layer NoPE and global
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "WWWF" * 12),
])
def test_catalog_hybrids_name_each_layer_by_hand(name, pattern):
    model = load_model(name)
    assert model.layer_pattern == pattern
    assert pattern.count("L") == model.linear_attention_layers


@pytest.mark.parametrize("name", ["meta-llama/Llama-3.1-8B", "deepseek-ai/DeepSeek-V3", "Qwen/Qwen3-8B",
                                  "mistralai/Mixtral-8x7B-v0.1"])
def test_stacks_of_one_kind_need_no_pattern(name):
    assert load_model(name).layer_pattern == ""


def test_listed_and_derived_layer_kinds_agree(tmp_path):
    """A Qwen3.5 config with its layer_types listed, and without them (every full_attention_interval-th layer
    softmax), read the same; a Granite 4.0-H config's layer_types name its Mamba-2 mixers."""
    cfg = dict(packaged("models.yaml")["models"]["Qwen/Qwen3.5-397B-A17B"]["config"])
    listed = {**cfg, "layer_types": ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(60)]}
    assert load_model(_write(tmp_path, listed)).layer_pattern == load_model("Qwen/Qwen3.5-397B-A17B").layer_pattern
    granite = {"model_type": "granitemoehybrid", "hidden_size": 512, "num_hidden_layers": 8,
               "layer_types": ["mamba", "attention", "mamba", "mamba"] * 2, "num_attention_heads": 8,
               "num_key_value_heads": 8, "intermediate_size": 1024, "shared_intermediate_size": 512,
               "num_local_experts": 0, "num_experts_per_tok": 2, "mamba_n_heads": 8, "mamba_d_head": 128,
               "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4, "mamba_expand": 2,
               "vocab_size": 49152}
    assert load_model(_write(tmp_path, granite)).layer_pattern == "LFLL" * 2


def test_a_pattern_that_disagrees_with_the_stack_is_refused():
    base = load_model("openai/gpt-oss-20b")
    fields = base.model_dump()
    for pattern, match in (("WF" * 11, "each of the 24 layers"), ("WX" * 12, "each of the 24 layers"),
                           ("WWF" * 8, "0 linear and 16 windowed layers, the stack 0 and 12")):
        with pytest.raises(ValueError, match=match):
            ModelSpec(**{**fields, "layer_pattern": pattern})


def _hybrids() -> list[str]:
    return [name for name in packaged("models.yaml")["models"] if load_model(name).layer_pattern]


@pytest.mark.parametrize("name", _hybrids())
def test_two_parts_hold_the_whole_stack_at_every_boundary(name):
    """At every boundary of a two-way split the parts' linear and windowed layers sum to the stack's, so does a linear
    hybrid's KV per token (a windowed stack's is not additive: a part of windowed layers only counts them per token,
    its window applied as a whole stack's is), and each part keeps its range's pattern unless it holds one kind
    only."""
    model = load_model(name)
    n = model.num_layers
    bf16 = load_quant("bf16")
    for boundary in range(1, n):
        head, tail = model.stack_part(boundary, 0), model.stack_part(n - boundary, boundary)
        assert head.linear_attention_layers + tail.linear_attention_layers == model.linear_attention_layers
        assert head.windowed_layer_count + tail.windowed_layer_count == model.windowed_layer_count
        if not model.window_layer_share:
            assert kv_bytes_per_token(head, bf16, 1, 1) + kv_bytes_per_token(tail, bf16, 1, 1) == pytest.approx(
                kv_bytes_per_token(model, bf16, 1, 1), rel=1e-12)
        for part, first in ((head, 0), (tail, boundary)):
            kinds = model.layer_pattern[first:first + part.num_layers]
            assert part.layer_pattern in (kinds, "") and (part.layer_pattern or len(set(kinds)) == 1)


def test_a_linear_only_stage_runs_a_split_end_to_end():
    """MiniMax-M1 split [7, 73]: the first stage holds lightning layers only (no KV), the second all ten softmax
    layers; edge's pipeline runs it and the first stage's memory does not grow with the context."""
    from phasewise.sim.split_model import SplitModel
    from phasewise.sim.split_pipeline import DecodePlan, run_split
    from phasewise.specs import load_engine, load_hardware
    from phasewise.specs.topology import chain_topology

    model = load_model("MiniMaxAI/MiniMax-M1-80k")
    topo = chain_topology(["b200", "b200"], 10_000.0, 0.001)
    split = SplitModel(model, load_quant("fp8"), load_engine("ideal"), topo, [load_hardware("b200")] * 2, [7, 73])
    assert split.cost_model(0, 7, 0).model.linear_attention_layers == 7
    assert split.stage_memory_bytes(0, 2_000, 1, 1) == split.stage_memory_bytes(0, 1_000, 1, 1)
    assert split.stage_memory_bytes(1, 2_000, 1, 1) > split.stage_memory_bytes(1, 1_000, 1, 1)
    run = run_split(split, 4096, 8, 4, DecodePlan())
    assert 0 < run.ttft_s < 10 and 0 < run.tpot_s < 1


def test_a_bad_layer_types_list_is_still_one_line(tmp_path):
    cfg = dict(packaged("models.yaml")["models"]["openai/gpt-oss-20b"]["config"])
    with pytest.raises(PhasewiseError, match="layer_types lists 23 layers, num_hidden_layers is 24"):
        load_model(_write(tmp_path, {**cfg, "layer_types": cfg["layer_types"][:23]}))


@pytest.mark.parametrize("name", _hybrids())
def test_every_range_of_a_hybrid_is_a_part_that_costs(name):
    """Every range [first, first + layers) of a hybrid stack (one kind only, a KV-shared tail, a lone full layer) is a
    part whose weights, KV and recurrent state are non-negative and whose one-step prefill and decode cost. Gemma 4
    E2B's layers 30-33 (four windowed, all KV-shared) once divided by zero: a part of windowed layers only is one
    kind at their geometry, its shared layers too, one of them holding the copy of the source's KV."""
    from phasewise.perf import BatchShape, CostModel
    from phasewise.perf.memory import recurrent_state_bytes_per_sequence, weight_bytes_per_gpu
    from phasewise.specs import load_engine, load_hardware

    model = load_model(name)
    bf16, hardware, engine = load_quant("bf16"), load_hardware("h100-sxm"), load_engine("ideal")
    prefill, decode = BatchShape.uniform(1, 64, 0, True, None), BatchShape.uniform(1, 1, 2048, True, None)
    n = model.num_layers
    for first in range(n):
        for layers in range(1, n - first + 1):
            part = model.stack_part(layers, first)
            assert weight_bytes_per_gpu(part, bf16, 1, 1) > 0
            assert kv_bytes_per_token(part, bf16, 1, 1) >= 0
            assert recurrent_state_bytes_per_sequence(part, bf16, 1, 1, "bf16") >= 0
            if layers in (1, 2, 5) or first + layers == n:
                cost = CostModel(part, hardware, bf16, engine)
                assert cost.iteration(prefill).latency_s > 0 and cost.iteration(decode).latency_s > 0
    e2b = load_model("google/gemma-4-E2B-it")
    tail = e2b.stack_part(4, 30)
    assert (tail.window_all_layers, tail.kv_shared_layers, tail.kv_shared_window_layers, tail.full_kv_layers) == (
        512, 3, 0, 1)


QWEN2 = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
         "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
         "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "hidden_act": "silu", "sliding_window": 4096}


@pytest.mark.parametrize("fields, window, pattern", [
    ({}, None, ""),  # use_sliding_window off by default (Qwen2Config)
    ({"use_sliding_window": False, "max_window_layers": 20}, None, ""),
    ({"use_sliding_window": True, "max_window_layers": 28}, None, ""),  # from layer 28 on: none of 28
    ({"use_sliding_window": True, "max_window_layers": 20}, 4096, "F" * 20 + "W" * 8),
    ({"use_sliding_window": True}, None, ""),  # the class default, 28
])
def test_qwen_windows_only_the_layers_from_max_window_layers_on(tmp_path, fields, window, pattern):
    """transformers' Qwen2Config / Qwen3Config (and their MoE kin): sliding attention only with use_sliding_window,
    and then on layers i >= max_window_layers (default 28)."""
    spec = load_model(_write(tmp_path, {**QWEN2, **fields}))
    assert spec.sliding_window == window and spec.layer_pattern == pattern


@pytest.mark.parametrize("scaling, context", [
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072),  # Qwen3's card recipe
    ({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}, 32768),  # never below the stated
    ({"rope_type": "linear", "factor": 8.0}, 32768),  # Gemma 3's kind: the stated length is the extended one
    ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}, 32768),
])
def test_a_yarn_extension_sets_the_context_the_engines_serve(tmp_path, scaling, context):
    assert load_model(_write(tmp_path, {**QWEN2, "rope_scaling": scaling})).max_position_embeddings == context
