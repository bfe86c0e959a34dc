"""Mamba-2 hybrids (Nemotron-H, Nemotron 3): the block pattern of their config.json, parameter counts, recurrent
state and KV, the SSD kernel's cost and the MLP-free layers, each against a hand computation."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.attention import LinearAttention
from phasewise.perf.memory import kv_bytes_per_token, recurrent_state_bytes_per_sequence, weight_bytes_per_gpu
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

NANO = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"
# a dense Nemotron-H (Nemotron-H-8B's shape: Mamba-2 and squared-ReLU MLP blocks alternating, 4 attention blocks)
DENSE = {"model_type": "nemotron_h", "hidden_size": 4096, "num_hidden_layers": 52,
         "hybrid_override_pattern": "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-",
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 21504,
         "mlp_hidden_act": "relu2", "mamba_num_heads": 128, "mamba_head_dim": 64, "ssm_state_size": 128,
         "n_groups": 8, "conv_kernel": 4, "chunk_size": 128, "vocab_size": 131072, "tie_word_embeddings": False}


# Nemotron 3 Super's fields (88 layers: 40 Mamba-2, 40 latent-MoE and 8 attention blocks, as public checkpoint
# validators check them); the order of the blocks below is a stand-in: the cost model reads their counts only
SUPER = {"model_type": "nemotron_h", "hidden_size": 4096, "num_hidden_layers": 88,
         "hybrid_override_pattern": ("ME" * 5 + "*") * 8, "num_attention_heads": 32, "num_key_value_heads": 2,
         "head_dim": 128, "vocab_size": 131072, "n_routed_experts": 512, "num_experts_per_tok": 22,
         "moe_intermediate_size": 2688, "moe_latent_size": 1024, "moe_shared_expert_intermediate_size": 5376,
         "n_shared_experts": 1, "mlp_hidden_act": "relu2", "ssm_state_size": 128, "conv_kernel": 4,
         "mamba_num_heads": 128, "mamba_head_dim": 64, "n_groups": 8, "chunk_size": 128}


def _write(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _mamba_params(h: int, heads: int, head_dim: int, groups: int, state: int) -> int:
    """in_proj to z and x (heads x head_dim each), B and C (groups x state each) and one dt per head; the 4-tap conv
    over x, B and C; out_proj back to the hidden size."""
    inner = heads * head_dim
    return h * (2 * inner + 2 * groups * state + heads) + (inner + 2 * groups * state) * 4 + inner * h


def test_nemotron_3_nano_blocks_and_parameters_by_hand():
    """23 Mamba-2, 6 attention and 23 MoE blocks: 29 mixer layers, 23 of them paired with a MoE, 6 without an MLP;
    31.6 B parameters and 3.6 B active with the embeddings (the model card's figures)."""
    m = load_model(NANO)
    assert (m.num_layers, m.linear_attention_layers, m.num_moe_layers, m.mlp_free_layers, m.num_dense_layers) == (
        29, 23, 23, 6, 0)
    assert (m.linear_recurrence, m.linear_chunk_tokens, m.mlp_gated) == ("mamba2", 128, False)
    h = 2688
    mamba = _mamba_params(h, 64, 64, 8, 128)
    attention = h * (32 * 128 + 2 * 2 * 128) + 32 * 128 * h
    moe = 128 * 2 * h * 1856 + 2 * h * 3712 + h * 128  # experts (up, down), the shared one, the router
    assert m.linear_attention_params == mamba and m.attention_params == attention
    assert m.total_params == 23 * mamba + 6 * attention + 23 * moe + 2 * 131072 * h
    assert m.total_params == pytest.approx(31.6e9, rel=0.005)
    assert m.active_params == pytest.approx(3.6e9, rel=0.01)


def test_a_dense_nemotron_h_pairs_its_mlps_with_mixers(tmp_path):
    """24 Mamba-2 + 4 attention mixers, 24 MLP blocks: 28 layers, 4 of them MLP-free; 8.1 B parameters."""
    m = load_model(_write(tmp_path, DENSE))
    assert (m.num_layers, m.linear_attention_layers, m.num_dense_layers, m.mlp_free_layers) == (28, 24, 24, 4)
    h = 4096
    mlp = 2 * h * 21504
    attention = h * (32 * 128 + 2 * 8 * 128) + 32 * 128 * h
    assert m.total_params == 24 * _mamba_params(h, 128, 64, 8, 128) + 4 * attention + 24 * mlp + 2 * 131072 * h
    assert m.total_params == pytest.approx(8.1e9, rel=0.01)
    listed = {k: v for k, v in DENSE.items() if k != "hybrid_override_pattern"} | {"layers_block_type": [
        {"M": "mamba", "*": "attention", "-": "mlp"}[ch] for ch in DENSE["hybrid_override_pattern"]]}
    assert load_model(_write(tmp_path, listed)).total_params == m.total_params


def test_a_latent_moe_runs_its_experts_in_the_latent_width(tmp_path):
    """Nemotron 3 Super: 512 experts of 1024 -> 2688 -> 1024 behind a 4096 -> 1024 projection and back (replicated on
    every GPU), the router and a 5376-wide shared expert on the hidden state; 120.7 B parameters, 12.8 B active
    (the name's 120B-A12B)."""
    m = load_model(_write(tmp_path, SUPER))
    assert (m.num_layers, m.linear_attention_layers, m.num_moe_layers, m.mlp_free_layers) == (48, 40, 40, 8)
    h, latent = 4096, 1024
    moe = 512 * 2 * latent * 2688 + 2 * h * 5376 + h * 512 + 2 * h * latent
    attention = h * (32 * 128 + 2 * 2 * 128) + 32 * 128 * h
    assert m.moe_layer_params == moe
    assert m.total_params == 40 * _mamba_params(h, 128, 64, 8, 128) + 8 * attention + 40 * moe + 2 * 131072 * h
    assert m.total_params == pytest.approx(120e9, rel=0.01) and m.active_params == pytest.approx(12.8e9, rel=0.01)
    # at TP4 every GPU holds a quarter of the experts and the shared expert, both projections and the router whole
    # (replicated); attention's 2 KV heads are replicated to one per GPU; BF16, untied embeddings split by TP
    proj, router = 2 * h * latent, h * 512
    attention_per_gpu = h * (4096 + 4096 + 2 * 256 * 2) / 4
    mixer = attention_per_gpu * 8 / 48 + _mamba_params(h, 128, 64, 8, 128) / 4 * 40 / 48
    mlp = ((moe - proj - router) / 4 + proj + router) * 40 / 48
    per_layer = (mixer + mlp) * 2 + 2 * h * 2
    assert weight_bytes_per_gpu(m, load_quant("bf16"), 4, 1) == pytest.approx(
        48 * per_layer + 2 * 131072 * h / 4 * 2, rel=1e-12)


def test_a_latent_moe_dispatches_latent_tokens_and_projects_them_on_every_gpu(tmp_path):
    """Expert parallelism with attention DP moves each token's latent (1024 wide) where a plain MoE moves its hidden
    state (4096): a quarter of the gather's bytes; the two projections cost 4 x tokens x 4096 x 1024 FLOPs a
    layer."""
    from phasewise.perf.parallel import ParallelLayout

    m = load_model(_write(tmp_path, SUPER))
    plain = m.model_copy(update={"moe_latent_size": 0})
    layout = ParallelLayout(tp=8, ep=8, attention_dp=8)

    def ops(model):
        cm = CostModel(model, load_hardware("b200"), load_quant("bf16"), load_engine("sglang"), 8, layout=layout)
        return {op.name: op for op in cm.iteration(BatchShape.uniform(64, 1, 2048)).operators}

    latent, hidden = ops(m), ops(plain)
    assert latent["moe_gather"].bytes == pytest.approx(hidden["moe_gather"].bytes / 4, rel=1e-9)  # SGLang's default
    tokens = 64 / 8  # the busiest attention rank's decode tokens
    assert latent["moe_latent_proj"].flops == pytest.approx(40 * 4 * tokens * 4096 * 1024, rel=1e-9)
    assert "moe_latent_proj" not in hidden


def test_weights_per_gpu_follow_the_parameters_with_mlp_free_layers():
    m, bf16 = load_model(NANO), load_quant("bf16")
    norms = 29 * 2 * 2688 * 2
    assert weight_bytes_per_gpu(m, bf16, 1, 1) == pytest.approx(m.total_params * 2 + norms, rel=1e-9)


def test_recurrent_state_and_kv_of_nemotron_3_nano_by_hand():
    m, bf16 = load_model(NANO), load_quant("bf16")
    # 6 attention layers x K and V of 2 heads x 128 x 2 bytes; at TP 2 one head each
    assert kv_bytes_per_token(m, bf16, 1, 1) == 6 * 2 * 2 * 128 * 2
    assert kv_bytes_per_token(m, bf16, 2, 1) == 6 * 2 * 1 * 128 * 2
    # 23 layers x (64 / 2 heads x 128 x 64 state elements + (4,096 + 2 x 8 x 128) / 2 conv channels x 3 taps)
    assert recurrent_state_bytes_per_sequence(m, bf16, 2, 1, "fp32") == 23 * (32 * 128 * 64 * 4 + 3072 * 3 * 2)


def test_mamba2_kernels_by_hand():
    """SSD prefill (chunks of 128): per token, each value head 2 C d_v + 4 d_k d_v and each group 2 C d_k FLOPs;
    decode: 5 d_k d_v per token and head; one dt per head streams where DeltaNet streams two scalars."""
    args = dict(share=23 / 29, value_heads=32, key_head_dim=128, value_head_dim=64, conv_dim=3072, conv_taps=4,
                state_bytes=4, activation_bytes=2)
    mamba = LinearAttention(**args, recurrence="mamba2", key_heads=4, chunk_tokens=128)
    flops, nbytes, compute_s, _ = mamba.kernel(1, 8192, False, 1e15, 1e14, lambda b: b / 4e12)
    assert flops == 8192 * (32 * (2 * 128 * 64 + 4 * 128 * 64) + 4 * 2 * 128 * 128)
    assert compute_s == flops / 1e15
    flops, _, compute_s, _ = mamba.kernel(16, 16, True, 1e15, 1e14, lambda b: b / 4e12)
    assert flops == 16 * 32 * 5 * 128 * 64 and compute_s == flops / 1e14
    deltanet = LinearAttention(**args, chunk_tokens=128)
    assert deltanet.kernel(1, 8192, False, 1e15, 1e14, lambda b: b)[1] - nbytes == 8192 * 32 * 2


def _cost(model, tp: int, engine: str = "vllm") -> CostModel:
    return CostModel(model, load_hardware("h100-sxm"), load_quant("bf16"), load_engine(engine), tp)


def test_every_block_is_costed_once(tmp_path):
    """The MLPs run in the paired layers only, and under TP each block (mixer or MLP) ends in one all-reduce: 52
    all-reduces for 52 blocks, where a 29-layer stack of paired layers would have 58."""
    for model, mlp_op, mlp_layers in ((load_model(NANO), "moe_experts", 23),
                                      (load_model(_write(tmp_path, DENSE)), "mlp_gate_up", 24)):
        ops = {op.name: op for op in _cost(model, 2).iteration(BatchShape.uniform(4, 512, 0)).operators}
        assert ops[mlp_op].count == mlp_layers and ops["elementwise"].count == model.num_layers
        assert ops["tp_allreduce"].count == 52
    nano = _cost(load_model(NANO), 1).iteration(BatchShape.uniform(1, 4096, 0)).operators
    assert "mlp_gate_up" not in {op.name for op in nano}  # no dense MLP anywhere


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_nemotron_decode_runs_are_costed_as_fast_does_step_by_step(engine):
    from phasewise.perf.decode_line import DecodeLine

    assert_decode_runs_match_fast(_cost(load_model(NANO), 2, engine), DecodeLine, (1, 64), (20, 8000), 200,
                                  (0, 150))


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_nemotron_simulates_with_its_invariants(engine):
    from phasewise.sim.api import run

    result = run(model=NANO, hardware="h100-sxm", tp=2, engine=engine, rate=8, requests=40, isl=2048, osl=64,
                 check_invariants=True).summary()
    assert result["completed"] == 40


@pytest.mark.parametrize("pp, message", [(20, "--pp 20: a stage of 2 costed layers keeps no softmax-attention layer .* "
                                                 "use --pp 14 or less"),
                                         (10**11, "exceeds the 52 layers")])  # its blocks, which stages split
def test_pipeline_stages_that_would_keep_no_attention_layer_are_refused(pp, message):
    """Stages are costed at the stack's shares: one of 2 layers would keep no softmax-attention (KV) layer at Nemotron-3
    Nano's 23 of 29 linear, so PP 15 and up is refused before the memory fit splits the stack (PP 14: 3 layers, 1 of
    them softmax)."""
    from phasewise.sim.api import run

    with pytest.raises(PhasewiseError, match=message):
        CostModel(load_model(NANO), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"), 1, pp)
    with pytest.raises(PhasewiseError, match=message):
        run(model=NANO, hardware="h100-sxm", pp=pp, rate=1, requests=1, isl=8, osl=2)


def test_a_latent_moe_field_elsewhere_is_refused_by_name(tmp_path):
    qwen = {"model_type": "qwen3_moe", "hidden_size": 2048, "num_hidden_layers": 4, "num_attention_heads": 32,
            "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 6144, "num_experts": 128,
            "num_experts_per_tok": 8, "moe_intermediate_size": 768, "vocab_size": 151936}
    assert load_model(_write(tmp_path, qwen)).num_moe_layers == 4
    with pytest.raises(PhasewiseError, match="field moe_latent_size .* is not modelled for model_type 'qwen3_moe'"):
        load_model(_write(tmp_path, {**qwen, "moe_latent_size": 512}))


def test_nemotron_attention_rotates_nothing():
    """No RoPE pass over q and k (32 + 2 heads of 128 at TP1) in its 6 attention layers: each of the 29 mean
    layers' elementwise traffic is 2 x 34 x 128 x 6/29 elements a token lighter than with RoPE."""
    m = load_model(NANO)
    assert not m.attention_rope

    def elementwise_bytes(model):
        cm = _cost(model, 1)
        ops = {op.name: op for op in cm.iteration(BatchShape.uniform(1, 1000, 0)).operators}
        return ops["elementwise"].bytes, cm.engine.elementwise_passes

    (plain, passes), (roped, _) = elementwise_bytes(m), elementwise_bytes(m.model_copy(update={"attention_rope": True}))
    assert roped - plain == pytest.approx(29 * 1000 * 2 * 2 * 34 * 128 * 6 / 29 * passes, rel=1e-9)


NANO_STATE_BYTES = 23 * (64 * 128 * 64 * 2 + 6144 * 3 * 2)  # one sequence's BF16 states and conv inputs, TP1
NANO_KV_PER_TOKEN = 6 * 2 * 2 * 128 * 2


@pytest.mark.parametrize("engine, role, in_pool", [
    ("vllm", "collocated", True),  # V1's hybrid KV cache manager: states from the KV pool
    ("vllm@0.8.5", "collocated", False),  # V0's MambaCacheManager: a slot per max_num_seqs
    ("vllm", "prefill", False), ("vllm", "decode", False),  # a KV connector turns the manager off
    ("vllm-v0", "collocated", False), ("trtllm", "collocated", False), ("sglang", "collocated", False),
])
def test_which_engines_take_the_states_from_the_kv_pool(engine, role, in_pool):
    from phasewise.specs.engine_kv import recurrent_state_in_kv_pool
    from phasewise.specs.engines import resolve_engine

    config = resolve_engine(engine, load_hardware("h100-sxm"), role=role)
    assert recurrent_state_in_kv_pool(config, load_model(NANO)) is in_pool
    assert not recurrent_state_in_kv_pool(config, load_model("meta-llama/Llama-3.1-8B"))


def test_vllm_lays_out_its_kv_pool_for_a_hybrid_as_its_hybrid_manager_does(tmp_path):
    """vLLM V1's one page size: the attention block grows to a multiple of 16 tokens whose KV per layer holds one
    layer's state (Nano, one GPU: 1,085,440 state bytes over 1,024 KV bytes a token -> 1,072 tokens), the layers go
    in groups of min(6 attention, 23 Mamba) = 6, each of the ceil(23 / 6) = 4 state groups one block per sequence:
    4,288 tokens' worth. Nemotron 3 Super NVFP4 on one GPU with FP32 states and FP8 KV comes to the 8,320-token
    block vLLM logs for it (vLLM issue #48401). Engines that hold states apart keep their blocks."""
    from phasewise.perf.memory import kv_state_pages
    from phasewise.specs.engines import resolve_engine

    nano, bf16, hw = load_model(NANO), load_quant("bf16"), load_hardware("h100-sxm")
    assert NANO_STATE_BYTES / 23 == 1_085_440 and NANO_KV_PER_TOKEN / 6 == 1024
    assert kv_state_pages(resolve_engine("vllm", hw), nano, bf16, 1, 1) == (1072, 4 * 6 * 1072 / 6)
    assert kv_state_pages(resolve_engine("trtllm", hw), nano, bf16, 1, 1) == (16, 0.0)  # its states held apart
    super_ = load_model(_write(tmp_path, SUPER))
    fp32_states = resolve_engine("vllm", load_hardware("b200"), {"mamba_ssm_dtype": "fp32"})
    assert kv_state_pages(fp32_states, super_, load_quant("nvfp4", "fp8"), 1, 1)[0] == 8320


def test_vllm_takes_each_running_sequences_state_from_its_kv_pool():
    """Nano on one H100 under vLLM V1: nothing held apart for max_num_seqs (its 1,024 seats' states, 23.8 GiB, did
    not fit beside the 58.8 GiB of weights); a 2,049-token sequence takes two 1,072-token blocks of context and four
    of state (6,432 tokens' worth); SGLang keeps its own state pool, whose slots cap the batch."""
    from phasewise.perf import estimate

    vllm = estimate(NANO, "h100-sxm", batch=64, prompt_len=2048).to_dict()["memory"]
    assert vllm["fits"] and vllm["recurrent_state_in_kv_pool"] and vllm["recurrent_state_bytes"] == 0
    assert (vllm["kv_tokens_per_sequence"], vllm["hybrid_kv_block_tokens"]) == (2 * 1072 + 4 * 1072, 1072)
    assert vllm["max_batch_at_context"] == vllm["kv_capacity_tokens"] // vllm["kv_tokens_per_sequence"]
    sglang = estimate(NANO, "h100-sxm", batch=64, prompt_len=2048, engine="sglang").to_dict()["memory"]
    assert not sglang["recurrent_state_in_kv_pool"] and sglang["kv_tokens_per_sequence"] == 2049
    assert sglang["max_batch_at_context"] == sglang["recurrent_state_seats"]


def test_the_simulated_vllm_batch_is_capped_by_contexts_and_states_together():
    """300 prompts of 2,048 tokens at once on one H100 at 0.8 of its memory: 395 blocks of 1,072 tokens beside the
    weights; a sequence at its last step (2,080 tokens) holds 2 blocks of context and 4 of state, so 65 run at
    once where contexts alone in 16-token blocks would fit 203; the simulated batch stays within the 65; KV
    conservation checked throughout."""
    from phasewise.sim.api import run

    result = run(model=NANO, hardware="h100-sxm", engine="vllm", rate=1000, requests=300, isl=2048, osl=32,
                 memory_fraction=0.8, check_invariants=True)
    assert result.summary()["completed"] == 300
    inst = result.instances[0]
    assert inst.kv_capacity_blocks == 395
    most = inst.kv_capacity_blocks // (2 + 4)
    assert most == 65 and inst.kv_capacity_blocks * 1072 // 16 // (2080 // 16) == 203
    assert 0.7 * most <= inst.batch_seqs_sum / inst.iterations <= most


def test_vllm_reads_the_states_dtype_and_launches_it():
    """vLLM's --mamba-ssm-cache-dtype float32 (NVIDIA's Nemotron recipes) doubles the SSM states (the conv inputs
    stay BF16): each running sequence takes twice their KV-token worth from the pool; the export writes the flag;
    on a model without linear layers the knob would change nothing and is refused."""
    from phasewise.apps.launch import launch_commands
    from phasewise.perf.memory import kv_state_pages
    from phasewise.sim.api import run
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import build_group

    def engine(**knobs):
        dep = build_deployment({"model": NANO, "instances": [{"hardware": "h100-sxm", "tp": 2, "engine": "vllm",
                                                              **knobs}]})
        return dep, build_group(dep, dep.instances[0], 0)[3]

    dep, fp32 = engine(mamba_ssm_dtype="fp32")
    assert fp32.profile.recurrent_state_dtype == "fp32" and engine()[1].profile.recurrent_state_dtype == "bf16"
    ssm, conv, per_token = 23 * 32 * 128 * 64, 23 * 3072 * 3 * 2, 6 * 2 * 1 * 128 * 2
    nano, bf16 = load_model(NANO), load_quant("bf16")
    # at TP2 a layer's state (half the heads) fits 1,072 tokens of its KV (one head) in BF16, 2,096 in FP32
    assert (ssm * 2 + conv) / 23 <= 1072 * per_token / 6 and (ssm * 4 + conv) / 23 <= 2096 * per_token / 6
    assert kv_state_pages(fp32, nano, bf16, 2, 1) == (2096, 4 * 2096)
    assert kv_state_pages(engine()[1], nano, bf16, 2, 1) == (1072, 4 * 1072)
    (cmd,), _, _ = launch_commands(dep)
    assert cmd.argv[cmd.argv.index("--mamba-ssm-cache-dtype") + 1] == "float32"
    with pytest.raises(PhasewiseError, match="has none, so it would change nothing"):
        run(model="meta-llama/Llama-3.1-8B", engine="vllm", mamba_ssm_dtype="bf16", rate=1, requests=1, isl=8,
            osl=2)


def test_an_mtp_draft_of_a_nemotron_is_one_attention_and_moe_block(tmp_path):
    """Nemotron 3 Super's MTP module (num_nextn_predict_layers 1, mtp_hybrid_override_pattern "*E"): one layer of
    attention and a latent MoE, without the stack's MLP-free layers; speculative decoding with it runs."""
    from phasewise.perf.memory import mtp_module
    from phasewise.sim.api import run

    m = load_model(_write(tmp_path, {**SUPER, "num_nextn_predict_layers": 1, "mtp_hybrid_override_pattern": "*E"}))
    block = mtp_module(m)
    assert m.mtp_layers == 1
    assert (block.num_layers, block.num_moe_layers, block.mlp_free_layers, block.linear_attention_layers) == (
        1, 1, 0, 0)
    # Nemotron 3 Nano's checkpoint has no MTP layers (an MTP draft on it is refused): its config with Super's module
    from phasewise.specs.catalog import packaged

    nano = packaged("models.yaml")["models"][NANO]["config"]
    nano_mtp = _write(tmp_path, {**nano, "num_nextn_predict_layers": 1, "mtp_hybrid_override_pattern": "*E"})
    result = run(model=nano_mtp, hardware="h100-sxm", tp=2, rate=2, requests=10, isl=256, osl=32, spec_tokens=2,
                 check_invariants=True)
    assert result.summary()["completed"] == 10


# transformers' GraniteMoeHybrid example config (its model docs): 6 Mamba-2 and 2 attention mixers, each layer with a
# MoE of 8 gated experts (top-2) beside a gated shared MLP; no RoPE
GRANITE = {"model_type": "granitemoehybrid", "hidden_size": 512, "num_hidden_layers": 8,
           "layer_types": ["mamba", "mamba", "mamba", "attention"] * 2, "num_attention_heads": 8,
           "num_key_value_heads": 8, "intermediate_size": 1024, "shared_intermediate_size": 512,
           "num_local_experts": 8, "num_experts_per_tok": 2, "mamba_n_heads": 8, "mamba_d_head": 128,
           "mamba_d_state": 128, "mamba_n_groups": 1, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 256,
           "position_embedding_type": "nope", "vocab_size": 49152, "tie_word_embeddings": True}


def test_granite_4_hybrid_layers_by_hand(tmp_path):
    """Every layer: a Mamba-2 (8 heads of 128, one group of state 128) or attention (8 heads of 64) mixer, then 8
    gated experts of 1,024 and a gated shared MLP of 512; tied embeddings. Without experts the shared MLP is the
    layer's dense MLP; mamba_d_head "auto" is mamba_expand x hidden over the heads."""
    m = load_model(_write(tmp_path, GRANITE))
    assert (m.num_layers, m.linear_attention_layers, m.num_moe_layers, m.mlp_free_layers) == (8, 6, 8, 0)
    assert (m.linear_chunk_tokens, m.attention_rope, m.mlp_gated) == (256, False, True)
    h = 512
    mamba = h * (2 * 1024 + 2 * 128 + 8) + (1024 + 2 * 128) * 4 + 1024 * h
    attention = h * (8 * 64 * 3) + 8 * 64 * h
    moe = 8 * 3 * h * 1024 + 3 * h * 512 + h * 8
    assert m.total_params == 6 * mamba + 2 * attention + 8 * moe + 49152 * h == 144_529_408
    dense = load_model(_write(tmp_path, {**GRANITE, "num_local_experts": 0, "mamba_d_head": "auto"}))
    assert (dense.num_moe_layers, dense.num_dense_layers, dense.intermediate_size) == (0, 8, 512)
    assert dense.linear_value_head_dim == 128 and dense.total_params == 6 * mamba + 2 * attention + 8 * 3 * h * 512 \
        + 49152 * h
    result = __import__("phasewise.sim.api", fromlist=["run"]).run(
        model=_write(tmp_path, GRANITE), hardware="h100-sxm", rate=5, requests=20, isl=512, osl=16,
        check_invariants=True)
    assert result.summary()["completed"] == 20


def test_a_single_mamba2_group_is_whole_on_every_gpu(tmp_path):
    """vLLM's MambaMixer2 replicates n_groups 1 to follow the head shards, so Granite 4.0-H (and Falcon-H1) run at
    TP 2: each GPU holds half the heads and their x and z, but B and C (2 x 128 channels) whole: in_proj 512 x (1024
    + 256 + 4), the conv over 512 + 256 channels, the chunked scan with its one group; the same weights at TP 1."""
    m = load_model(_write(tmp_path, GRANITE))
    h, bf16 = 512, load_quant("bf16")
    assert m.linear_replicated_width(1) == 0 and m.linear_replicated_width(2) == 128
    cm = _cost(m, 2)
    lin = cm.attention.linear
    assert (lin.value_heads, lin.key_heads, lin.conv_dim) == (4, 1, 512 + 256)
    tokens = 256
    qkv = {op.name: op for op in cm.iteration(BatchShape.uniform(1, tokens, 0)).operators}["qkv_proj"]
    attention = 2 * tokens * h * (4 * 64 * 3)  # 8 heads of 64, 4 a GPU, K and V split alike
    assert qkv.flops == pytest.approx(6 * 2 * tokens * h * (1024 + 256 + 4) + 2 * attention, rel=1e-9)
    # a sequence's state on each GPU: half the heads' 128 x 128 matrices, the conv's 3 taps over 768 channels
    assert recurrent_state_bytes_per_sequence(m, bf16, 2, 1, "fp32") == 6 * (4 * 128 * 128 * 4 + 768 * 3 * 2)
    # per GPU at TP 2 the one group whole is the shape two groups split would give: the same weights and state
    two_groups = load_model(_write(tmp_path, {**GRANITE, "mamba_n_groups": 2}))
    assert weight_bytes_per_gpu(m, bf16, 2, 1) == weight_bytes_per_gpu(two_groups, bf16, 2, 1)
    assert weight_bytes_per_gpu(m, bf16, 1, 1) < weight_bytes_per_gpu(two_groups, bf16, 1, 1)
    assert recurrent_state_bytes_per_sequence(m, bf16, 2, 1) == recurrent_state_bytes_per_sequence(two_groups, bf16,
                                                                                                   2, 1)


# Bamba-9B's shape (ibm-ai-platform/Bamba-9B: attention on layers 9, 18 and 27, state 128) on transformers
# BambaConfig's defaults for the rest
BAMBA = {"model_type": "bamba", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
         "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256, "attn_layer_indices": [9, 18, 27],
         "mamba_d_state": 128}


def test_bamba_is_granite_4_h_dense_layers_by_hand(tmp_path):
    """Bamba: 29 Mamba-2 layers (128 heads of 64, one group of state 128) and 3 attention layers (RoPE), every layer
    a gated MLP of 14,336; untied embeddings: 9.78 B by this count (the name says 9B; no exact published count was
    at hand)."""
    m = load_model(_write(tmp_path, BAMBA))
    assert (m.model_type, m.num_layers, m.linear_attention_layers, m.num_dense_layers, m.attention_rope) == (
        "bamba", 32, 29, 32, True)
    h = 4096
    attention = h * (32 * 128 + 2 * 8 * 128) + 32 * 128 * h
    assert m.total_params == 29 * _mamba_params(h, 128, 64, 1, 128) + 3 * attention + 32 * 3 * h * 14336 \
        + 2 * 128256 * h
    assert m.total_params == pytest.approx(9.78e9, rel=0.001)
    assert _cost(m, 2).attention.linear.key_heads == 1  # its one group whole on both GPUs


@pytest.mark.parametrize("base, change, message", [
    (DENSE, {"hybrid_override_pattern": "M*X-"}, "block kind 'X'"),
    (DENSE, {"hybrid_override_pattern": "M*-M"}, "names 4 blocks but num_hidden_layers is 52"),
    (DENSE, {"hybrid_override_pattern": "*---", "num_hidden_layers": 4}, "3 MLP / MoE blocks against 1 Mamba"),
    (DENSE, {"hybrid_override_pattern": "M-M-", "num_hidden_layers": 4},
     "at least one of the 2 layers must keep softmax"),
    (DENSE, {"hybrid_override_pattern": None}, "missing field hybrid_override_pattern or layers_block_type"),
    (DENSE, {"mamba_num_heads": None}, "missing field mamba_num_heads"),
    (DENSE, {"sliding_window": 4096}, "field sliding_window is not modelled"),
    (DENSE, {"block_configs": [{"block_type": "mamba"}]}, "field block_configs is not modelled"),
    (GRANITE, {"layer_types": ["mamba", "moe"] * 4}, r"field layer_types \(moe\) is not modelled"),
    (GRANITE, {"layer_types": ["mamba"] * 4}, "names 4 layers but num_hidden_layers is 8"),
    (GRANITE, {"layer_types": None}, "missing field layer_types"),
    (GRANITE, {"position_embedding_type": "alibi"}, "position_embedding_type 'alibi' is not one of rope, nope"),
    (GRANITE, {"mamba_n_heads": None}, "missing field mamba_n_heads"),
    (BAMBA, {"attn_layer_indices": [9, 32]}, "field attn_layer_indices must list layer indices in 0..31"),
    (BAMBA, {"attn_layer_indices": None}, "at least one of the 32 layers must keep softmax attention"),
    # a config fuzz found a MoE without experts dividing by zero in the cost model
    (DENSE, {"hybrid_override_pattern": "M*ME", "num_hidden_layers": 4, "n_routed_experts": False,
             "num_experts_per_tok": 2, "moe_intermediate_size": 64},
     r"field n_routed_experts must be a positive integer"),
])
def test_malformed_mamba_hybrid_configs_are_one_line_errors(tmp_path, base, change, message):
    """Nemotron-H (DENSE) and Granite 4.0-H configs the parsers cannot cost."""
    cfg = {k: v for k, v in {**base, **change}.items() if v is not None}
    with pytest.raises(PhasewiseError, match=message) as info:
        load_model(_write(tmp_path, cfg))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("engine, model, caches", [
    ("vllm", NANO, False),  # vLLM: off by default for hybrid models ("still experimental")
    ("vllm", "meta-llama/Llama-3.1-8B", True),
    ("sglang", NANO, True),  # SGLang's MambaRadixCache, on by default
])
def test_prefix_caching_defaults_follow_the_engine_for_hybrids(engine, model, caches):
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import build_group
    from phasewise.specs.engine_kv import prefix_caching_default
    from phasewise.specs.engines import resolve_engine

    assert prefix_caching_default(resolve_engine(engine, load_hardware("h100-sxm")), load_model(model)) is caches
    dep = build_deployment({"model": model, "instances": [{"hardware": "h100-sxm", "tp": 2, "engine": engine}]})
    assert build_group(dep, dep.instances[0], 0)[3].prefix_caching is caches


def test_vllm_caches_a_hybrids_prefixes_only_when_asked():
    """On the Mooncake trace's first 300 requests: no prefix cache by default; asked for, vLLM would share prefixes
    in its raised 1,072-token blocks, which is not modelled: a one-line error says so."""
    from phasewise.sim.api import run

    plain = run(model=NANO, hardware="h100-sxm", tp=2, engine="vllm", trace="mooncake", trace_limit=300)
    assert plain.summary().get("prefix_cache") is None
    with pytest.raises(PhasewiseError, match="raises .* KV block to 1072 tokens .* not modelled") as info:
        run(model=NANO, hardware="h100-sxm", tp=2, engine="vllm", trace="mooncake", trace_limit=300,
            prefix_caching="on")
    assert "\n" not in str(info.value)
