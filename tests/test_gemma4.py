"""Gemma 4: its sliding and full layers shaped apart (ModelSpec.window_head_dim / window_kv_heads / value_from_key),
and on the on-device models KV-shared layers, double-wide MLPs and per-layer embeddings, parsed from config.json
(specs/hf_gemma4.py) and costed kind by kind: parameter counts against the published ones, KV bytes per token, weights
per GPU, the attention and projection FLOPs of a prefill, each against a hand computation; decode runs against fast()
step by step; bad fields refused by name."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.decode_line import HybridDecodeLine
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer, window_kv_ratio
from phasewise.perf.memory import kv_bytes_per_token, weight_bytes_per_gpu
from phasewise.perf.parallel import ParallelLayout, check_parallelism
from phasewise.perf.window_kv import kv_token_equivalents, kv_window_terms
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.model import ModelSpec

DENSE, MOE = "google/gemma-4-31B-it", "google/gemma-4-26B-A4B-it"
E2B, E4B = "google/gemma-4-E2B-it", "google/gemma-4-E4B-it"


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _text_config(name: str) -> dict:
    from phasewise.specs.catalog import packaged
    return dict(packaged("models.yaml")["models"][name]["config"]["text_config"])


def _attention_params(h, heads, kv_heads, head_dim, kv_projections):
    return h * (heads * head_dim + kv_projections * kv_heads * head_dim) + heads * head_dim * h


def test_dense_layers_and_parameters_by_hand():
    """31B: 50 sliding layers (16 KV heads of 256) and 10 full (4 KV heads of 512, values from the keys), 32 query
    heads in both, GeGLU MLP of 21,504, tied 262,144-token embedding: 30.70 B (the card's 30.7 B dense)."""
    m = load_model(DENSE)
    assert (m.num_layers, m.sliding_window, m.sliding_window_layers) == (60, 1024, 50)
    assert (m.head_dim, m.num_kv_heads, m.window_head_dim, m.window_kv_heads, m.value_from_key) == (512, 4, 256, 16,
                                                                                                    True)
    assert m.window_own_geometry and m.mlp_gated and m.tie_embeddings
    h = 5376
    total = (10 * _attention_params(h, 32, 4, 512, 1) + 50 * _attention_params(h, 32, 16, 256, 2)
             + 60 * 3 * h * 21504 + 262144 * h)
    assert m.total_params == total
    assert m.total_params == pytest.approx(30.7e9, rel=0.002)


def test_moe_block_beside_the_dense_mlp_by_hand():
    """26B-A4B: every layer its 2,112-wide dense MLP and 8 of 128 experts of 704 (the dense MLP as the shared expert):
    25.2 B total, 3.8 B active, as published."""
    m = load_model(MOE)
    assert (m.num_moe_layers, m.intermediate_size, m.num_experts, m.experts_per_token, m.expert_intermediate_size,
            m.shared_expert_intermediate_size) == (30, 0, 128, 8, 704, 2112)
    h = 2816
    attention = 5 * _attention_params(h, 16, 2, 512, 1) + 25 * _attention_params(h, 16, 8, 256, 2)
    moe_layer = 128 * 3 * h * 704 + 3 * h * 2112 + h * 128
    assert m.total_params == attention + 30 * moe_layer + 262144 * h
    assert m.active_params == attention + 30 * (8 * 3 * h * 704 + 3 * h * 2112 + h * 128) + 262144 * h
    assert (m.total_params, m.active_params) == (pytest.approx(25.2e9, rel=0.005), pytest.approx(3.8e9, rel=0.01))


def test_kv_bytes_per_token_by_hand():
    """Per GPU in BF16: the full layers' K and V (both cached, though projected once) in kv_bytes_per_token; the
    sliding layers' per full-layer token by window_kv_ratio, which replication of the full layers' 4 KV heads moves:
    (16 x 256) / (4 x 512) = 2 at TP 1, (2 x 256) / (1 x 512) = 1 at TP 8."""
    m, bf16 = load_model(DENSE), load_quant("bf16")
    assert kv_bytes_per_token_layer(m, bf16, 1) == 2 * 4 * 512 * 2
    assert kv_bytes_per_token(m, bf16, 1, 1) == 10 * 2 * 4 * 512 * 2  # 80 KiB: the full layers
    assert kv_bytes_per_token(m, bf16, 8, 1) == 10 * 2 * 1 * 512 * 2  # a replicated full KV head per GPU
    assert (window_kv_ratio(m, 1), window_kv_ratio(m, 2), window_kv_ratio(m, 8)) == (2.0, 2.0, 1.0)
    # vLLM's per-sequence layout: context on the full layers, the last 1,024 tokens on 5 sliding layers each
    terms = kv_window_terms(m, attention_tp=1)
    assert terms == (1.0, 10.0, 1024, False)
    assert kv_token_equivalents(8193, terms) == 8193 + 10 * 1024
    # SGLang's one pool (every layer every token): the sliding layers' bytes weigh in as well
    assert kv_token_equivalents(8193, kv_window_terms(m, "all_tokens", attention_tp=1)) == 11 * 8193
    assert kv_window_terms(m, "all_tokens", attention_tp=8)[0] == 6.0


def test_weights_per_gpu_by_hand():
    """TP 8 in BF16: q, o and the sliding layers' k, v split; the full layers' single K projection of 4 heads
    replicated twice over 8 GPUs; MLP and embedding split, the head tied."""
    m, bf16 = load_model(DENSE), load_quant("bf16")
    h, tp = 5376, 8
    full = h * (32 * 512 + 32 * 512 + 1 * 4 * 512 * 2) / tp
    sliding = h * (32 * 256 + 32 * 256 + 2 * 16 * 256) / tp
    per_layer = ((10 * full + 50 * sliding) / 60 + 3 * h * 21504 / tp) * 2 + 2 * h * 2
    expected = 60 * per_layer + 262144 * h / tp * 2
    assert weight_bytes_per_gpu(m, bf16, tp, 1) == pytest.approx(expected, rel=1e-12)


def test_prefill_attention_and_projections_by_hand():
    """One 4,096-token prompt on one GPU: the full layers' attention over every causal pair at 4 x 512 FLOPs per pair
    and head, the sliding layers' over at most 1,024 keys a token at 4 x 256; q, k (v from k on the full layers) and
    o projections at each kind's widths, the mean layer over 60."""
    m = load_model(DENSE)
    cm = CostModel(m, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    n, window = 4096, 1024
    shape = BatchShape.uniform(1, n, 0, True, None)
    ops = {op.name: op for op in cm.iteration(shape).operators}
    full_pairs = n * (n + 1) / 2
    # the sliding layers' pairs by hand: the prompt's first 1,024 tokens see 1..1,024 keys, the rest 1,024 each
    window_pairs = window * (window + 1) // 2 + (n - window) * window
    assert shape.windowed(window).prefill_pairs == window_pairs
    attention = 10 * 4 * 512 * 32 * full_pairs + 50 * 4 * 256 * 32 * window_pairs
    assert ops["attention"].flops == pytest.approx(attention, rel=1e-12)
    h = 5376
    qkv = 2 * n * h * (10 * (32 * 512 + 4 * 512) + 50 * (32 * 256 + 2 * 16 * 256))
    o_proj = 2 * n * h * 32 * (10 * 512 + 50 * 256)
    assert (ops["qkv_proj"].flops, ops["o_proj"].flops) == (pytest.approx(qkv, rel=1e-12),
                                                            pytest.approx(o_proj, rel=1e-12))


@pytest.mark.parametrize("name, engine, tp, layout", [
    (DENSE, "vllm", 1, {}), (DENSE, "sglang", 8, {}), (DENSE, "trtllm-pytorch", 2, {}), (DENSE, "hf-eager", 1, {}),
    (MOE, "vllm", 4, dict(ep=4)), (MOE, "sglang", 4, dict(attention_dp=4, ep=4)), (MOE, "trtllm-pytorch", 1, {}),
])
def test_decode_runs_match_fast_step_by_step(name, engine, tp, layout):
    """The closed-form decode runs, the sliding layers' pairs and KV weighed by their own slopes, give fast() at
    contexts below, at and past the 1,024-token window."""
    cm = CostModel(load_model(name), load_hardware("h200-sxm"), load_quant("fp8"), load_engine(engine), tp=tp,
                   layout=ParallelLayout(tp=tp, **layout))
    assert_decode_runs_match_fast(cm, HybridDecodeLine, (1, 7, 64, 300), (0, 500, 1023, 1024, 5000), 40, (0, 20, 39))


def test_parser_rules_and_refusals(tmp_path):
    """The last layer full whatever layer_types says; without attention_k_eq_v the full layers keep the sliding
    layers' KV heads (and a V projection); per-layer embeddings (Gemma4TextConfig's default 256) and KV-shared
    layers refused by name, in one line."""
    cfg = _text_config(DENSE)
    listed = dict(cfg, layer_types=["sliding_attention"] * 60)
    m = load_model(_write(tmp_path, listed))
    assert m.sliding_window_layers == 59 and m.num_layers - m.sliding_window_layers == 1
    plain = load_model(_write(tmp_path, dict(cfg, attention_k_eq_v=False)))
    assert (plain.num_kv_heads, plain.head_dim, plain.value_from_key, plain.kv_proj_size) == (16, 512, False,
                                                                                           16 * 1024)
    # a file that omits hidden_size_per_layer_input takes Gemma4TextConfig's 256: per-layer embeddings
    omitted = load_model(_write(tmp_path, {k: v for k, v in cfg.items() if k != "hidden_size_per_layer_input"}))
    assert (omitted.per_layer_input_size, omitted.per_layer_input_vocab) == (256, 262144)
    for value in (60, -1, 2.5):
        with pytest.raises(PhasewiseError, match="field num_kv_shared_layers must be an integer in 0..59") as err:
            load_model(_write(tmp_path, dict(cfg, num_kv_shared_layers=value)))
        assert "\n" not in str(err.value)
    # found by benchmarks/fuzz_configs.py: the default layer pattern was built before the layer count was bounded
    with pytest.raises(PhasewiseError, match="num_hidden_layers must be at most"):
        load_model(_write(tmp_path, {k: v for k, v in dict(cfg, num_hidden_layers=10**12).items()
                                     if k != "layer_types"}))


def test_tp_must_suit_both_kinds_of_kv_heads():
    """A TP size both kinds' KV heads divide or are divided by; otherwise a one-line error naming the windowed
    layers' heads."""
    m = ModelSpec(name="toy", model_type="gemma4_text", num_layers=6, hidden_size=768, num_heads=24, num_kv_heads=4,
                  head_dim=64, intermediate_size=1024, vocab_size=1000, sliding_window=128, sliding_window_layers=5,
                  window_kv_heads=6, window_head_dim=32)
    check_parallelism(m, 2, 1)
    with pytest.raises(PhasewiseError, match="windowed layers' KV heads=6"):
        check_parallelism(m, 4, 1)
    with pytest.raises(ValueError, match="sliding_window_layers must be between"):
        ModelSpec(**{**m.model_dump(), "sliding_window_layers": 6})


def test_serving_runs_end_to_end_under_memory_pressure():
    """simulate on both checkpoints, the bundled Mooncake excerpt's long prompts at half an H200's memory, with the
    simulator's invariants (KV-block conservation, causality) checked at every step: the sliding layers' KV, weighed
    by their own bytes, admitted and freed as the engine holds it; every request completes."""
    from phasewise.sim.api import run

    for name, extra in ((DENSE, dict(tp=2)), (MOE, dict(tp=2, ep=2))):
        result = run(model=name, hardware="h200-sxm", trace="mooncake", trace_limit=40, rate=10, memory_fraction=0.5,
                     check_invariants=True, **extra)
        assert result.summary()["completed"] == 40


def _on_device_params(h, layers, kv_heads, inter, full, shared_full, shared_window, wide):
    """Attention of each kind (shared layers: q and o only), MLPs (double-wide ones twice), the tied embedding, the
    per-layer table (262,144 x layers x 256), its projection and each layer's gate and projection back."""
    window_layers = layers - full
    full_attention = h * (8 * 512 + 2 * kv_heads * 512) + 8 * 512 * h
    window_attention = h * (8 * 256 + 2 * kv_heads * 256) + 8 * 256 * h
    attention = (full * full_attention + window_layers * window_attention
                 - h * (shared_full * 2 * kv_heads * 512 + shared_window * 2 * kv_heads * 256))
    per_layer = 262144 * layers * 256 + h * layers * 256 + layers * 2 * h * 256
    return attention + (layers + wide) * 3 * h * inter + 262144 * h + per_layer


@pytest.mark.parametrize("name, shape, published", [
    (E2B, (1536, 35, 1, 6144, 7, 4, 16, 20), 2.3e9), (E4B, (2560, 42, 2, 10240, 7, 3, 15, 0), 4.5e9)])
def test_on_device_layers_and_parameters_by_hand(name, shape, published):
    """E2B: the last 20 of 35 layers (4 full, 16 sliding) reuse KV and run a 12,288-wide MLP; E4B: the last 18 of 42
    (3 full, 15 sliding); both with 256-wide per-layer embeddings. Without the per-layer table their count is the
    published effective one (2.3 B; 4.5 B, within 4 %)."""
    m = load_model(name)
    h, layers, kv_heads, inter, full, shared_full, shared_window, wide = shape
    assert (m.kv_shared_layers, m.kv_shared_window_layers, m.wide_mlp_layers) == (shared_full + shared_window,
                                                                                 shared_window, wide)
    assert (m.full_kv_layers, m.window_kv_layers) == (full - shared_full, layers - full - shared_window)
    assert m.total_params == _on_device_params(*shape)
    assert m.total_params - 262144 * layers * 256 == pytest.approx(published, rel=0.04)


def test_kv_shared_layers_hold_no_kv():
    """KV per token per GPU in BF16: E2B's 3 unshared full layers (1 KV head of 512, K and V); its 12 unshared sliding
    layers at half a full layer's KV each, 2 full-layer tokens per token in the window; E4B's 4 and 20 at half, 2.5."""
    bf16 = load_quant("bf16")
    e2b, e4b = load_model(E2B), load_model(E4B)
    assert kv_bytes_per_token(e2b, bf16, 1, 1) == 3 * 2 * 512 * 2
    assert kv_window_terms(e2b, attention_tp=1) == (1.0, 2.0, 512, False)
    assert kv_bytes_per_token(e4b, bf16, 1, 1) == 4 * 2 * 2 * 512 * 2
    assert kv_window_terms(e4b, attention_tp=1) == (1.0, 2.5, 512, False)


def test_on_device_prefill_by_hand():
    """E2B, one 1,024-token prompt: q, k and v of each kind with the shared layers' q alone; o at each kind's width;
    the MLP over 15 plain and 20 double-wide layers; each layer's per-layer gate and projection; the embedded token
    projected to the 35 layers' 256-wide inputs."""
    m = load_model(E2B)
    cm = CostModel(m, load_hardware("jetson-agx-orin"), load_quant("bf16"), load_engine("vllm"))
    n, h = 1024, 1536
    ops = {op.name: op for op in cm.iteration(BatchShape.uniform(1, n, 0, True, None)).operators}
    qkv = 2 * n * h * (3 * (4096 + 1024) + 4 * 4096 + 12 * (2048 + 512) + 16 * 2048)
    assert ops["qkv_proj"].flops == pytest.approx(qkv, rel=1e-12)
    assert ops["o_proj"].flops == pytest.approx(2 * n * h * (7 * 4096 + 28 * 2048), rel=1e-12)
    assert ops["mlp_gate_up"].flops == pytest.approx(2 * n * h * 2 * 6144 * (15 + 2 * 20), rel=1e-12)
    assert ops["per_layer_input"].flops == pytest.approx(35 * 2 * 2 * n * h * 256, rel=1e-12)
    assert ops["embedding"].flops == pytest.approx(2 * n * h * 35 * 256, rel=1e-12)


@pytest.mark.parametrize("name, engine", [(E2B, "vllm"), (E4B, "sglang"), (E2B, "hf-eager")])
def test_on_device_decode_runs_match_fast(name, engine):
    cm = CostModel(load_model(name), load_hardware("jetson-agx-orin"), load_quant("bf16"), load_engine(engine))
    assert_decode_runs_match_fast(cm, HybridDecodeLine, (1, 4, 32), (0, 300, 511, 512, 4000), 40, (0, 20, 39))


def test_on_device_refusals_and_a_jetson_run():
    """Pipeline parallelism over KV-shared layers and the colocated trainer refuse it by name; on one Jetson AGX Orin
    at a tenth of its memory, the Azure conversation excerpt with the simulator's invariants checked: every request
    completes."""
    from phasewise.perf.training import training_step
    from phasewise.sim.api import run

    m = load_model(E2B)
    with pytest.raises(PhasewiseError, match="--pp 2: pipeline parallelism of a model whose layers reuse"):
        check_parallelism(m, 1, 2)
    cm = CostModel(m, load_hardware("jetson-agx-orin"), load_quant("bf16"), load_engine("vllm"))
    with pytest.raises(PhasewiseError, match="not all alike"):
        training_step(cm, seqs=1, tokens_per_seq=128)
    result = run(model=E2B, hardware="jetson-agx-orin", trace="azure-conv", trace_limit=40, rate=2,
                 memory_fraction=0.25, check_invariants=True)
    assert result.summary()["completed"] == 40


# A smoke bound, not an accuracy claim: the quick check's prediction (the class-default `cpu-local` entry, an older
# CPU's figures) within this factor of the thread's CPU time. On this 2-core machine (2026-12-05) the unfitted
# predictions came out 4.0-5.2x the CPU time from run to run (vision, gemma4, recurrent quick checks; the same with
# hf-eager's counted kernels or without them), so 4 failed a clean run by chance; 6 keeps the smoke test's purpose
GEMMA4_SMOKE_FACTOR = 6.0


def test_quick_gemma4_validate_json(run_cli):
    """`validate --gemma4` times a scaled E2B stack (transformers' Gemma4ForCausalLM: 10 layers, the last 5 reusing
    KV, double-wide MLPs on them, per-layer inputs of 80) and predicts the same shapes, parsed from the same config;
    its prefills keep every token's logits (the shared layers then run over the whole prompt, as costed)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    code, out, err = run_cli("validate", "--gemma4", "--quick", "--hardware", "cpu-local", "--hidden", "256",
                             "--json")
    assert code == 0, err
    data = json.loads(out)
    config = data["info"]["config"]
    assert (config["num_hidden_layers"], config["num_kv_shared_layers"], config["use_double_wide_mlp"]) == (10, 5, True)
    assert (config["head_dim"], config["global_head_dim"], config["hidden_size_per_layer_input"]) == (256, 512, 48)
    assert config["layer_types"] == (["sliding_attention"] * 4 + ["full_attention"]) * 2
    assert [(p["phase"], p["batch"], p["tokens"]) for p in data["points"]] == [
        ("prefill", 1, 256), ("prefill", 1, 512), ("prefill", 2, 256), ("decode", 1, 256), ("decode", 4, 256)]
    for p in data["points"]:
        assert 0 < p["cpu_ms"] <= p["measured_ms"] * 1.05
        assert 1 / GEMMA4_SMOKE_FACTOR < p["predicted_ms"] / p["cpu_ms"] < GEMMA4_SMOKE_FACTOR, p


@pytest.mark.parametrize("args, needle", [
    (("--recurrent",), "--recurrent times single forwards: it does not combine with --gemma4"),
    (("--threads", "2"), "--threads"),
    (("--model", "google/gemma-4-26B-A4B-it"), "dense Gemma 4 models"),
    (("--model", "meta-llama/Llama-3.1-8B"), "a Gemma 4 catalog entry"),
    (("--layers", "99"), "--layers 99 must be 1..35"),
])
def test_gemma4_validate_flag_errors_are_one_line(run_cli, args, needle):
    code, out, err = run_cli("validate", "--gemma4", *args)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def _with_vision(tmp_path, vision: dict, **top) -> str:
    cfg = {"model_type": "gemma4", "text_config": {"model_type": "gemma4_text", **_text_config(DENSE)},
           "vision_config": {"model_type": "gemma4_vision", **vision}, **top}
    return _write(tmp_path, cfg)


GEMMA4_VISION = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=64, patch_size=16, pooling_kernel_size=3,
                     position_embedding_size=1024)


def test_vision_encoder_parameters_match_transformers(tmp_path):
    """A vision_config's encoder (patch embedder with two position tables, Gemma-shaped ViT blocks, the embedder's
    projection to the language model) counted as transformers builds Gemma4VisionModel and
    Gemma4MultimodalEmbedder, to the parameter."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import Gemma4TextConfig, Gemma4VisionConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4MultimodalEmbedder, Gemma4VisionModel

    spec = load_model(_with_vision(tmp_path, GEMMA4_VISION))
    vision, text = Gemma4VisionConfig(**GEMMA4_VISION), Gemma4TextConfig(**_text_config(DENSE))
    built = [Gemma4VisionModel(vision), Gemma4MultimodalEmbedder(vision, text)]
    assert spec.vision.params == sum(p.numel() for module in built for p in module.parameters())


@pytest.mark.parametrize("width, height", [(1024, 768), (4000, 100), (100, 100), (1, 5000), (3000, 3000)])
def test_image_geometry_matches_transformers_resize(tmp_path, width, height):
    """Gemma4ImageProcessor's aspect-ratio-preserving resize to 280 x 9 patches, sides multiples of 48 (upscaling a
    small image too): the same sides, patches and 9-patch tokens plus two markers."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.gemma4.processing_gemma4 import get_aspect_ratio_preserving_size

    geometry = load_model(_with_vision(tmp_path, GEMMA4_VISION)).image_geometry(width, height)
    target_height, target_width = get_aspect_ratio_preserving_size(height, width, 16, 280 * 9, 3)
    assert geometry.resized_px == (target_width, target_height)
    assert geometry.patches == (target_width // 16) * (target_height // 16) <= 2520
    assert geometry.prompt_tokens == geometry.patches // 9 + 2


def test_image_inputs_run_through_estimate(tmp_path):
    """The encoder's weights beside the language model's, its forward before the prefill; a smaller
    vision_soft_tokens_per_image budget makes fewer patches and tokens."""
    from phasewise.perf.estimate import estimate

    path = _with_vision(tmp_path, GEMMA4_VISION)
    result = estimate(path, "h100-sxm", tp=2, images_per_sequence=1, image_px=(1024, 768)).to_dict()
    assert result["images"]["prompt_tokens_per_image"] == 268 and result["images"]["encoder_ms"] > 0
    small = load_model(_with_vision(tmp_path, GEMMA4_VISION, vision_soft_tokens_per_image=70))
    assert small.image_geometry(1024, 768).prompt_tokens <= 72
