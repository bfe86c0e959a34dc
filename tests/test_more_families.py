"""More model families from their config.json (transformers 5.25's config classes): dense Llama-shaped ones with
their own window rules (Olmo 3, EXAONE 4, SmolLM3, Command A), MLPs that are not gated (Phi-2, StarCoder2), MoE
families that name their experts their own way (ERNIE 4.5, OLMoE, Phi-3.5-MoE, Granite MoE, dots.llm1, Ling,
Hunyuan). Each checkpoint's shapes as its config.json states them; its parameter count as its model card or
safetensors index publishes it. (Vision-language families: test_vl_families.py.)"""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.specs import load_engine, load_hardware, load_model, load_quant


def _load(tmp_path, cfg):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return load_model(str(path))


def _dense(model_type, hidden, heads, kv_heads, inter, layers, vocab, **extra):
    return {"model_type": model_type, "hidden_size": hidden, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "intermediate_size": inter, "num_hidden_layers": layers,
            "vocab_size": vocab, **extra}


def _non_embedding(m):
    return m.total_params - m.embedding_params * (1 if m.tie_embeddings else 2)


@pytest.mark.parametrize("cfg, published, kv_layers", [
    # ByteDance-Seed/Seed-OSS-36B-Instruct: 80 query heads of 128 over a 5,120 hidden (q wider than the hidden);
    # safetensors total 36,151,104,512
    (_dense("seed_oss", 5120, 80, 8, 27648, 64, 155136, head_dim=128, tie_word_embeddings=False,
            attention_bias=True), 36.151e9, 64),
    # zai-org/GLM-4-32B-0414 (card: 32B; its sandwich norms and partial RoPE cost nothing of note)
    (_dense("glm4", 6144, 48, 2, 23040, 61, 151552, head_dim=128, partial_rotary_factor=0.5,
            tie_word_embeddings=False), 32.56e9, 61),
    # allenai/OLMo-2-0325-32B (card: 32B)
    (_dense("olmo2", 5120, 40, 8, 27648, 64, 100352, tie_word_embeddings=False), 32.23e9, 64),
    # ibm-granite/granite-3.3-8b-instruct (8.17B; its four scalar multipliers cost nothing)
    (_dense("granite", 4096, 32, 8, 12800, 40, 49159, tie_word_embeddings=True, embedding_multiplier=12.0,
            attention_multiplier=0.0078125, residual_multiplier=0.22, logits_scaling=16.0), 8.17e9, 40),
    # internlm/internlm3-8b-instruct (8.8B)
    (_dense("internlm3", 4096, 32, 2, 10240, 48, 128512, head_dim=128, qkv_bias=False, bias=False), 8.80e9, 48),
    # internlm/internlm2_5-7b-chat (InternLM2Config, remote code; 7.74B)
    (_dense("internlm2", 4096, 32, 8, 14336, 32, 92544, bias=False, tie_word_embeddings=False), 7.74e9, 32),
])
def test_llama_shaped_families_match_their_published_sizes(tmp_path, cfg, published, kv_layers):
    m = _load(tmp_path, cfg)
    assert m.mlp_gated and m.sliding_window is None and m.num_experts == 0
    assert m.total_params == pytest.approx(published, rel=0.003)
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == kv_layers * 2 * cfg["num_key_value_heads"] * head_dim * 2


def test_cohere_command_a_and_command_r(tmp_path):
    """CohereLabs/c4ai-command-a-03-2025 (cohere2; card: 111B): 64 layers, three in four in a 4,096-token window
    (sliding_window_pattern 4, as Cohere2Config derives layer_types), tied embeddings by the class's default;
    CohereForAI/c4ai-command-r-v01 (cohere; 35B): no window, 64 KV heads."""
    command_a = _load(tmp_path, _dense("cohere2", 12288, 96, 8, 36864, 64, 256000, sliding_window=4096,
                                       sliding_window_pattern=4))
    assert command_a.tie_embeddings and (command_a.sliding_window, command_a.sliding_window_layers) == (4096, 48)
    assert command_a.total_params == pytest.approx(111e9, rel=0.005)
    assert kv_bytes_per_token(command_a, load_quant("bf16"), 1, 1) == 16 * 2 * 8 * 128 * 2
    command_r = _load(tmp_path, _dense("cohere", 8192, 64, 64, 22528, 40, 256000, logit_scale=0.0625))
    assert command_r.tie_embeddings and command_r.sliding_window is None
    assert command_r.total_params == pytest.approx(34.98e9, rel=0.003)


def test_class_defaults_tie_the_embeddings_where_the_family_does(tmp_path):
    """HuggingFaceTB/SmolLM3-3B (safetensors 3,075,098,624) and baidu/ERNIE-4.5-0.3B-PT (0.36B) without a
    tie_word_embeddings field: their config classes tie by default (a Llama default would add a second embedding)."""
    smol = _load(tmp_path, _dense("smollm3", 2048, 16, 4, 11008, 36, 128256))
    assert smol.tie_embeddings and smol.total_params == pytest.approx(3.0751e9, rel=0.002)
    ernie = _load(tmp_path, _dense("ernie4_5", 1024, 16, 2, 3072, 18, 103424, head_dim=128))
    assert ernie.tie_embeddings and ernie.q_size == 2048 and ernie.total_params == pytest.approx(0.3607e9, rel=0.005)
    assert not _load(tmp_path, _dense("olmo2", 1024, 8, 8, 4096, 2, 1000)).tie_embeddings


def test_smollm3_windows_only_its_nope_layers_and_only_when_asked(tmp_path):
    """SmolLM3Config: no window unless use_sliding_window (absent: false), then on the NoPE layers only (every 4th by
    default: 9 of 36, or as no_rope_layers lists them, 0 = NoPE)."""
    base = _dense("smollm3", 2048, 16, 4, 11008, 36, 128256, sliding_window=4096)
    assert _load(tmp_path, base).sliding_window is None
    asked = _load(tmp_path, {**base, "use_sliding_window": True})
    assert (asked.sliding_window, asked.sliding_window_layers) == (4096, 9)
    listed = _load(tmp_path, {**base, "use_sliding_window": True, "no_rope_layers": [0, 1] * 18})
    assert listed.sliding_window_layers == 18
    with pytest.raises(PhasewiseError, match="field no_rope_layers must list 0 or 1 for each of the 36 layers"):
        _load(tmp_path, {**base, "use_sliding_window": True, "no_rope_layers": [1, 0]})


def test_olmo3_windows_three_layers_in_four_by_its_class_default(tmp_path):
    """Olmo3Config: without layer_types every 4th layer full, the others in a 4,096-token window, also when the
    file names no window (allenai/Olmo-3-32B-Think: 48 of 64 windowed, 32.2B); an explicit null window: none."""
    cfg = _dense("olmo3", 5120, 40, 8, 27648, 64, 100278, tie_word_embeddings=False)
    m = _load(tmp_path, cfg)
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 48)
    assert m.total_params == pytest.approx(32.23e9, rel=0.003)
    listed = ["sliding_attention" if (i + 1) % 4 else "full_attention" for i in range(64)]
    assert _load(tmp_path, {**cfg, "sliding_window": 4096, "layer_types": listed}) == m
    assert _load(tmp_path, {**cfg, "sliding_window": None}).sliding_window is None
    # the KV a long sequence holds: 16 full layers' worth plus 48 layers' window
    bf16 = load_quant("bf16")
    assert kv_bytes_per_token(m, bf16, 1, 1) == 16 * 2 * 8 * 128 * 2


@pytest.mark.parametrize("pattern, layer_types", [("LLLG", None), (4, None), ("LLLG", "listed")])
def test_exaone4_reads_its_pattern_as_a_number_or_as_letters(tmp_path, pattern, layer_types):
    """LGAI-EXAONE/EXAONE-4.0-32B (card: 30.95B without embeddings): sliding_window_pattern "LLLG" (three local layers,
    one global, from layer 0; the last layer always global) or 4, or layer_types spelled out: 48 of 64 layers in a
    4,096-token window."""
    cfg = _dense("exaone4", 5120, 40, 8, 27392, 64, 102400, head_dim=128, tie_word_embeddings=False,
                 sliding_window=4096, sliding_window_pattern=pattern)
    if layer_types:
        cfg["layer_types"] = ["full_attention" if (i + 1) % 4 == 0 else "sliding_attention" for i in range(64)]
    m = _load(tmp_path, cfg)
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 48)
    assert _non_embedding(m) == pytest.approx(30.95e9, rel=0.002)


def test_exaone4_odd_patterns(tmp_path):
    cfg = _dense("exaone4", 2048, 32, 8, 4096, 30, 102400, head_dim=64, tie_word_embeddings=True)
    # EXAONE-4.0-1.2B: no window at all (the class would divide by a zero pattern); card 1.07B without embeddings
    small = _load(tmp_path, {**cfg, "sliding_window": None})
    assert small.sliding_window is None and _non_embedding(small) == pytest.approx(1.07e9, rel=0.005)
    # "LG" over 5 layers: L G L G L -> the last one global: 2 local
    assert _load(tmp_path, {**cfg, "num_hidden_layers": 5, "sliding_window_pattern": "LG"}).sliding_window_layers == 2
    with pytest.raises(PhasewiseError, match="field sliding_window_pattern must be a positive integer or a string"):
        _load(tmp_path, {**cfg, "sliding_window_pattern": "LXG"})


def test_phi2_and_starcoder2_mlps_are_not_gated(tmp_path):
    """microsoft/phi-2 (2.78B: fc1 -> GELU -> fc2, two matrices a layer, not three) and bigcode/starcoder2-15b
    (15.96B; every layer in a 4,096-token window)."""
    phi = _load(tmp_path, _dense("phi", 2560, 32, 32, 10240, 32, 51200, hidden_act="gelu_new",
                                 partial_rotary_factor=0.4, tie_word_embeddings=False))
    assert not phi.mlp_gated and phi.total_params == pytest.approx(2.78e9, rel=0.005)
    star = _load(tmp_path, _dense("starcoder2", 6144, 48, 4, 24576, 40, 49152, sliding_window=4096,
                                  hidden_act="gelu_pytorch_tanh", tie_word_embeddings=False, use_bias=True))
    assert not star.mlp_gated and star.total_params == pytest.approx(15.96e9, rel=0.005)
    assert (star.sliding_window, star.sliding_window_layers) == (4096, None)  # every layer
    # the same shapes gated would cost a third more MLP FLOPs: the flag reaches the cost model
    hw, bf16, engine = load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm")
    gated = phi.model_copy(update={"mlp_gated": True})
    flops = [CostModel(m, hw, bf16, engine).iteration(BatchShape.uniform(1, 2048, 0)).flops for m in (phi, gated)]
    assert flops[0] < flops[1]


def test_ernie45_moe_counts_its_own_expert_fields(tmp_path):
    """baidu/ERNIE-4.5-21B-A3B-PT: 64 experts top-6 (moe_num_experts, moe_k) and two shared ones of 1,536 in layers 1-27
    (moe_layer_start_index 1, end 27, interval 1), a dense first layer; safetensors 21,825,437,888; the card's A3B
    without the tied embedding."""
    cfg = _dense("ernie4_5_moe", 2560, 20, 4, 12288, 28, 103424, head_dim=128, tie_word_embeddings=True,
                 moe_num_experts=64, moe_k=6, moe_num_shared_experts=2, moe_intermediate_size=1536,
                 moe_layer_start_index=1, moe_layer_end_index=27, moe_layer_interval=1)
    m = _load(tmp_path, cfg)
    assert (m.num_moe_layers, m.num_experts, m.experts_per_token) == (27, 64, 6)
    assert (m.expert_intermediate_size, m.shared_expert_intermediate_size, m.intermediate_size) == (1536, 3072, 12288)
    assert m.total_params == pytest.approx(21.825e9, rel=0.002)
    assert m.active_params - m.embedding_params == pytest.approx(3.09e9, rel=0.01)
    assert _load(tmp_path, {**cfg, "moe_layer_end_index": -1}) == m
    every_other = _load(tmp_path, {**cfg, "moe_layer_interval": 2})
    assert every_other.num_moe_layers == 14  # layers 1, 3, ..., 27: (i + 1) even
    for start in ("one", -1):
        with pytest.raises(PhasewiseError, match="field moe_layer_start_index must be a layer index"):
            _load(tmp_path, {**cfg, "moe_layer_start_index": start})


@pytest.mark.parametrize("cfg, total, active", [
    # allenai/OLMoE-1B-7B-0924: 64 experts of 1,024 top-8 in all 16 layers (intermediate_size is the experts' width)
    (_dense("olmoe", 2048, 16, 16, 1024, 16, 50304, num_experts=64, num_experts_per_tok=8,
            tie_word_embeddings=False), 6.92e9, 1.28e9),
    # microsoft/Phi-3.5-MoE-instruct: 16 experts of 6,400 top-2; its 131,072-token window is its whole context
    (_dense("phimoe", 4096, 32, 8, 6400, 32, 32064, num_local_experts=16, num_experts_per_tok=2,
            sliding_window=131072, max_position_embeddings=131072, tie_word_embeddings=False), 41.9e9, 6.6e9),
    # ibm-granite/granite-3.1-3b-a800m-instruct: 40 experts of 512 top-8 (3.3B; a800m without the embeddings)
    (_dense("granitemoe", 1536, 24, 8, 512, 32, 49155, num_local_experts=40, num_experts_per_tok=8,
            tie_word_embeddings=True), 3.30e9, 0.80e9 + 49155 * 1536),
    # rednote-hilab/dots.llm1.inst: 128 experts of 1,408 top-6 and two shared after a dense first layer (142B / 14B)
    (_dense("dots1", 4096, 32, 32, 10944, 62, 152064, head_dim=128, moe_intermediate_size=1408,
            n_routed_experts=128, num_experts_per_tok=6, n_shared_experts=2, first_k_dense_replace=1,
            tie_word_embeddings=False), 142.8e9, 14.0e9),
    # inclusionAI/Ling-flash-2.0 (BailingMoeV2ForCausalLM, model_type bailing_moe): 256 experts of 1,024 top-8 and one
    # shared (num_shared_experts) after a dense first layer; safetensors 102,889,705,216, 6.1B active
    (_dense("bailing_moe", 4096, 32, 4, 9216, 32, 157184, head_dim=128, moe_intermediate_size=1024, num_experts=256,
            num_experts_per_tok=8, num_shared_experts=1, first_k_dense_replace=1, partial_rotary_factor=0.5,
            tie_word_embeddings=False), 102.89e9, 6.15e9),
])
def test_moe_families_match_their_published_sizes(tmp_path, cfg, total, active):
    m = _load(tmp_path, cfg)
    assert m.num_experts and m.sliding_window is None
    assert m.total_params == pytest.approx(total, rel=0.01)
    assert m.active_params == pytest.approx(active, rel=0.02)


def test_a_window_only_as_long_as_the_context_is_none(tmp_path):
    """Phi-3.5-MoE's 131,072-token window over its 131,072 positions restricts nothing; a window as long as the
    positions trained but a YaRN factor beyond them does (the context runs to 4 x 32,768)."""
    cfg = _dense("mistral", 1024, 8, 8, 4096, 2, 1000, sliding_window=32768, max_position_embeddings=32768)
    assert _load(tmp_path, cfg).sliding_window is None
    yarn = _load(tmp_path, {**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 32768}})
    assert yarn.sliding_window == 32768
    assert _load(tmp_path, {**cfg, "sliding_window": 4096}).sliding_window == 4096


def test_granite_shared_experts_read_their_width(tmp_path):
    """GraniteMoeSharedConfig's shared_intermediate_size: one gated shared MLP beside the routed experts."""
    cfg = _dense("granitemoeshared", 1024, 16, 8, 512, 24, 49155, num_local_experts=32, num_experts_per_tok=8,
                 shared_intermediate_size=1024)
    m = _load(tmp_path, cfg)
    assert m.shared_expert_intermediate_size == 1024
    assert m.active_params - _load(tmp_path, {**cfg, "shared_intermediate_size": 0}).active_params == 24 * 3 * 1024**2


def test_dots1_windows_only_from_max_window_layers(tmp_path):
    """Dots1Config: layers from max_window_layers (62, its class default) on are windowed, none of dots.llm1's 62."""
    cfg = _dense("dots1", 1024, 8, 8, 4096, 8, 1000, moe_intermediate_size=256, n_routed_experts=8,
                 num_experts_per_tok=2)
    assert _load(tmp_path, cfg).sliding_window is None
    m = _load(tmp_path, {**cfg, "max_window_layers": 6})
    assert (m.sliding_window, m.sliding_window_layers) == (4096, 2)


def test_the_new_families_run_end_to_end(run_cli, tmp_path):
    """A user's config.json of a new family through estimate and simulate (one short run each)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_dense("olmo3", 2048, 16, 4, 8192, 16, 100278, tie_word_embeddings=False)))
    code, out, err = run_cli("estimate", "--model", str(path), "--hardware", "h100-sxm", "--prompt-len", "8192",
                             "--json")
    assert code == 0, err
    code, out, err = run_cli("simulate", "--model", str(path), "--hardware", "h100-sxm", "--rate", "2",
                             "--requests", "20", "--isl", "2048", "--osl", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["completed"] == 20


def test_hunyuan_a13b_reads_its_per_layer_lists(tmp_path):
    """tencent/Hunyuan-A13B-Instruct (80B total, 13B active): 64 experts of 3,072, top-8 and one shared MLP of
    intermediate_size (use_mixed_mlp_moe) in all 32 layers, as per-layer lists of one value; head size from
    attention_head_dim. Lists that differ between layers, and cross-layer attention (use_cla), are refused."""
    cfg = _dense("hunyuan_v1_moe", 4096, 32, 8, 3072, 32, 128167, attention_head_dim=128, num_experts=64,
                 moe_topk=[8] * 32, moe_intermediate_size=[3072] * 32, num_shared_expert=[1] * 32,
                 use_mixed_mlp_moe=True, use_cla=False, cla_share_factor=2, use_qk_norm=True,
                 tie_word_embeddings=True)
    m = _load(tmp_path, cfg)
    assert (m.num_moe_layers, m.num_experts, m.experts_per_token) == (32, 64, 8)
    assert (m.expert_intermediate_size, m.shared_expert_intermediate_size, m.head_dim) == (3072, 3072, 128)
    assert m.total_params == pytest.approx(80.39e9, rel=0.003)
    assert m.active_params == pytest.approx(12.75e9, rel=0.01)
    assert _load(tmp_path, {**cfg, "model_type": "hunyuan"}).total_params == m.total_params
    for change, message in (({"moe_topk": [8] * 31 + [4]}, "field moe_topk differs between layers"),
                            ({"use_cla": True}, "field use_cla")):
        with pytest.raises(PhasewiseError, match=message):
            _load(tmp_path, {**cfg, **change})
