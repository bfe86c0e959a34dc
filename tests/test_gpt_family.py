"""GPT-2's lineage (specs/hf_gpt.py): GPT-2, GPT-J, GPT-NeoX, GPT-BigCode and Falcon configs under their own names,
with hand-counted parameters and KV bytes, Falcon's one all-reduce a layer, and one-line errors."""

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.sim.split_tensor_parallel import TensorParallelEdge
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.hf_config import from_hf_config
from phasewise.specs.model import ModelSpec
from phasewise.specs.topology import chain_topology

GPT2 = dict(model_type="gpt2", n_embd=768, n_layer=12, n_head=12, n_positions=1024, n_inner=None, vocab_size=50257,
            activation_function="gelu_new")
GPTJ = dict(model_type="gptj", n_embd=4096, n_layer=28, n_head=16, rotary_dim=64, n_positions=2048, vocab_size=50400)
NEOX = dict(model_type="gpt_neox", hidden_size=6144, num_hidden_layers=44, num_attention_heads=64,
            intermediate_size=24576, vocab_size=50432, rotary_pct=0.25, use_parallel_residual=True,
            tie_word_embeddings=False, max_position_embeddings=2048)
BIGCODE = dict(model_type="gpt_bigcode", n_embd=6144, n_layer=40, n_head=48, n_inner=24576, n_positions=8192,
               vocab_size=49152, multi_query=True)
FALCON_180B = dict(model_type="falcon", hidden_size=14848, num_hidden_layers=80, num_attention_heads=232,
                   num_kv_heads=8, new_decoder_architecture=True, parallel_attn=True, vocab_size=65024)
FALCON_7B_RW = dict(model_type="RefinedWebModel", n_embed=4544, n_head=71, n_layer=32, multi_query=True,
                    parallel_attn=True, vocab_size=65024)


def spec(cfg):
    return from_hf_config("m", cfg)


def test_gpt2_parameters_by_hand():
    m = spec(GPT2)
    layer = 4 * 768 * 768 + 2 * 768 * 3072  # q, k, v, o; fc and proj (4 x 768 wide: n_inner null)
    assert m.total_params == 50257 * 768 + 12 * layer  # tied head; positions and biases not counted
    assert (m.num_kv_heads, m.intermediate_size, m.tie_embeddings, m.mlp_gated) == (12, 3072, True, False)
    assert not m.attention_rope and m.norm == "layer" and m.max_position_embeddings == 1024


def test_gptj_and_neox_against_their_published_sizes():
    assert spec(GPTJ).total_params == pytest.approx(6_053_381_344, rel=0.001)  # GPT-J's card (with biases)
    neox = spec(NEOX)
    assert neox.total_params == pytest.approx(20_554_567_680, rel=0.001)  # GPT-NeoX-20B's card
    assert neox.attention_rope and not neox.parallel_block_reduce and not spec(GPTJ).tie_embeddings


def test_multi_query_and_grouped_kv_bytes_by_hand():
    bf16 = load_quant("bf16")
    bigcode = spec(BIGCODE)
    assert bigcode.num_kv_heads == 1  # multi_query: one K and one V head
    assert kv_bytes_per_token(bigcode, bf16, 1, 1) == 40 * 2 * 1 * 128 * 2
    assert spec({**BIGCODE, "multi_query": False}).num_kv_heads == 48
    falcon = spec(FALCON_180B)
    assert kv_bytes_per_token(falcon, bf16, 1, 1) == 80 * 2 * 8 * 64 * 2
    assert kv_bytes_per_token(falcon, bf16, 8, 1) == 80 * 2 * 1 * 64 * 2  # a K / V head a GPU at TP 8
    rw = spec(FALCON_7B_RW)
    assert (rw.model_type, rw.num_kv_heads, rw.head_dim, rw.intermediate_size) == ("falcon", 1, 64, 4 * 4544)
    assert kv_bytes_per_token(rw, bf16, 1, 1) == 32 * 2 * 64 * 2


def test_refinedweb_reads_as_vllms_rwconfig():
    # Falcon-40B's RefinedWeb config: n_head_kv groups, the new architecture from its width alone
    forty = spec(dict(model_type="RefinedWeb", n_embed=8192, n_head=128, n_head_kv=8, n_layer=60, parallel_attn=True,
                      vocab_size=65024))
    assert forty.num_kv_heads == 8 and forty.parallel_block_reduce
    # RWConfig's parallel_attn is off unless set: attention, then the MLP, each all-reduced
    serial = spec({k: v for k, v in FALCON_7B_RW.items() if k != "parallel_attn"})
    assert not serial.parallel_block_reduce
    alibi = spec({**FALCON_7B_RW, "alibi": True})
    assert not alibi.attention_rope


def test_falcon_sums_attention_and_mlp_before_one_all_reduce():
    T = 64
    hw, quant, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")

    def reductions(model):
        it = CostModel(model, hw, quant, engine, 8, 1).iteration(BatchShape.uniform(1, T, 0))
        return {op.name: op for op in it.operators}["tp_allreduce"]

    falcon = spec(FALCON_180B)
    serial = falcon.model_copy(update={"parallel_block_reduce": False})
    one, two = reductions(falcon), reductions(serial)
    assert (one.count, two.count) == (80, 160)
    assert one.bytes == 80 * T * 14848 * 2 and one.time_s == pytest.approx(two.time_s / 2)


def test_learned_positions_move_no_rope_traffic():
    """GPT-2 and the same shape with RoPE (GPT-J's names) differ in elementwise bytes by q and k's RoPE pass only."""
    hw, quant, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("ideal")
    shape = BatchShape.uniform(1, 32, 0)
    learned = spec(GPT2)
    roped = spec({**GPT2, "model_type": "gptj"}).model_copy(update={"tie_embeddings": True})

    def elementwise(model):
        it = CostModel(model, hw, quant, engine, 1, 1).iteration(shape)
        return {op.name: op for op in it.operators}["elementwise"].bytes

    q_and_k = 768 + 768
    assert elementwise(roped) - elementwise(learned) == pytest.approx(12 * 32 * 2 * 2 * q_and_k)


def test_edge_tensor_parallel_counts_falcons_one_reduction(tmp_path):
    small = {**FALCON_180B, "hidden_size": 1024, "num_attention_heads": 16, "num_kv_heads": 2, "num_hidden_layers": 4}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(small))
    model = load_model(str(path))
    topology = chain_topology(["jetson-agx-orin"] * 2, 100.0, 0.001)
    hardware = [load_hardware(d.hardware) for d in topology.devices]
    quant, engine = load_quant("bf16"), load_engine("hf-eager")
    falcon = TensorParallelEdge(model, quant, engine, topology, hardware)
    serial = TensorParallelEdge(model.model_copy(update={"parallel_block_reduce": False}), quant, engine, topology,
                                hardware)
    _, one = falcon.forward_s(128, 0)
    _, two = serial.forward_s(128, 0)
    assert one == pytest.approx(two / 2)


@pytest.mark.parametrize("cfg, message", [
    ({**GPT2, "n_head": 0}, "field n_head must be a positive integer"),
    ({**GPT2, "n_embd": 770}, "hidden size 770 is not a multiple of its 12 attention heads"),
    ({k: v for k, v in GPT2.items() if k != "vocab_size"}, "missing field vocab_size"),
    ({k: v for k, v in NEOX.items() if k != "intermediate_size"}, "missing field intermediate_size"),
    ({**FALCON_180B, "num_kv_heads": 7}, "7 K / V heads do not divide the 232 attention heads"),
    ({**GPT2, "n_layer": 10**9}, "n_layer must be at most"),
    ({**GPT2, "n_inner": "wide"}, "field n_inner must be a positive integer"),
    # a Llama-style field the family does not read: refused where it says something else
    ({**FALCON_180B, "num_key_value_heads": 4}, r"field num_key_value_heads \(4\) is not read for model_type "
                                                "'falcon', whose own fields give 8"),
    ({**GPT2, "intermediate_size": 2048}, "field intermediate_size"),
    ({**NEOX, "num_experts": 8}, "field num_experts is not modelled for model_type 'gpt_neox'"),
    ({**FALCON_7B_RW, "multi_query": "no"}, r"field multi_query must be true or false \(got 'no'\)"),
    ({**GPT2, "tie_word_embeddings": 0}, "field tie_word_embeddings must be true or false"),
])
def test_bad_fields_are_one_line_errors(cfg, message):
    with pytest.raises(PhasewiseError, match=message) as err:
        spec(cfg)
    assert "\n" not in str(err.value)


def test_a_transformers_resave_restating_kv_heads_is_read():
    assert spec({**FALCON_180B, "num_key_value_heads": 8, "head_dim": 64}).num_kv_heads == 8


def test_parallel_block_reduce_refused_beside_moe():
    moe = {**spec(FALCON_180B).model_dump(), "num_experts": 8, "experts_per_token": 2, "expert_intermediate_size": 64,
           "num_moe_layers": 80}
    with pytest.raises(ValueError, match="parallel_block_reduce"):
        ModelSpec.model_validate(moe)


@pytest.mark.parametrize("name, published, within", [
    ("gpt2", 124e6, 0.5e6),  # "124M parameters" (model card): the learned positions and biases make up the rest
    ("openai-community/gpt2-xl", 1.5e9, 0.06e9),  # "the 1.5B parameter version"
    ("EleutherAI/gpt-j-6b", 6_053_381_344, 6e6),
    ("EleutherAI/gpt-neox-20b", 20_554_567_680, 6e6),
    ("bigcode/starcoder", 15.5e9, 0.05e9),
    ("tiiuae/falcon-7b", 7e9, 0.5e9),  # the names' sizes, rounded
    ("tiiuae/falcon-40b", 40e9, 2e9),
    ("tiiuae/falcon-180B", 180e9, 2e9),
])
def test_catalog_entries_against_their_published_sizes(name, published, within):
    assert abs(load_model(name).total_params - published) <= within
