"""DeepSeek-V4's compressed attention (specs/compressed_attention.py, specs/hf_deepseek_v4.py, perf/compressed_cost.py):
its config.json in both published forms, parameters against a hand count and against transformers'
DeepseekV4ForCausalLM, KV bytes per token and per window token, the attention, indexer and projection FLOPs of a
prefill, weights per GPU, each by hand; decode runs against fast() step by step; a simulation under memory pressure
with the simulator's invariants; bad fields and layouts refused by name, in one line."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.decode_line import CompressedDecodeLine
from phasewise.perf.memory import kv_bytes_per_token, mtp_module, weight_bytes_per_gpu
from phasewise.perf.parallel import ParallelLayout, check_parallelism
from phasewise.perf.window_kv import kv_token_equivalents, kv_window_terms
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.hf_config import from_hf_config

FLASH, PRO = "deepseek-ai/DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Pro"
FLASH_RATIOS = [0, 0] + [4, 128] * 20 + [4] + [0]
# a small stack of every kind, with transformers' defaults otherwise (its attention 8 heads of 64)
SMALL = dict(model_type="deepseek_v4", hidden_size=256, moe_intermediate_size=64, num_hidden_layers=5,
             num_attention_heads=8, head_dim=64, n_routed_experts=8, num_experts_per_tok=2, q_lora_rank=96,
             o_groups=4, o_lora_rank=48, index_n_heads=4, index_head_dim=32, index_topk=16, vocab_size=1000,
             compress_ratios=[0, 4, 128, 4, 0, 0], hc_mult=3)


def _config(name: str) -> dict:
    return dict(packaged("models.yaml")["models"][name]["config"])


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def _flash_params_by_hand() -> int:
    h, heads, hd, q_lora, o_lora, groups = 4096, 64, 512, 1024, 1024, 8
    attention = h * q_lora + q_lora * heads * hd + h * hd + heads * hd * o_lora + groups * o_lora * h + heads
    csa = (2 * h * 2 * hd + 4 * 2 * hd + hd) + (2 * h * 2 * 128 + 4 * 2 * 128 + 128 + q_lora * 64 * 128 + h * 64)
    hca = 2 * h * hd + 128 * hd + hd
    mixers = 2 * (24 * 4 * h + 24 + 3)
    moe = 256 * 3 * h * 2048 + 3 * h * 2048 + h * 256
    return (43 * (attention + mixers + moe) + 21 * csa + 20 * hca + (4 * 4 * h + 4 + 1)
            + 2 * 129280 * h)


def test_parameters_by_hand_and_the_published_sizes():
    """Flash: 43 layers of q_a / q_b / K=V / grouped o / sinks, 21 CSA compressors with indexers, 20 HCA compressors,
    two hyper-connection mixers a layer, 256 experts and a shared one, untied embeddings: 284.33 B (published 284 B,
    13 B active); Pro 1.573 T (published 1.6 T, 49 B active)."""
    flash, pro = load_model(FLASH), load_model(PRO)
    assert flash.total_params == _flash_params_by_hand()
    assert flash.total_params == pytest.approx(284e9, rel=0.002)
    assert flash.active_params == pytest.approx(13.8e9, rel=0.01)
    assert pro.total_params == pytest.approx(1.6e12, rel=0.02) and pro.active_params == pytest.approx(49e9, rel=0.02)
    c = flash.compressed
    assert (c.csa_layers, c.hca_layers, 43 - c.compressed_layers, c.index_topk, c.window) == (21, 20, 2, 512, 128)
    assert (pro.compressed.csa_layers, pro.compressed.hca_layers, pro.compressed.index_topk) == (30, 31, 1024)
    assert flash.native_precision == "fp8-block-mxfp4" and flash.mtp_layers == 1 and flash.num_moe_layers == 43


@pytest.mark.parametrize("fields", [SMALL, dict(model_type="deepseek_v4", compress_ratios=FLASH_RATIOS)])
def test_parameters_match_transformers(fields):
    """transformers 5.25's DeepseekV4ForCausalLM of the same fields, built on the meta device, has this parser's
    parameters plus its RMSNorms' (two a layer, the q latent's, the K=V entry's, the final one), which no model here
    counts."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "DeepseekV4Config"):
        pytest.skip("transformers without DeepSeek-V4")
    import torch

    config = transformers.DeepseekV4Config(**{k: v for k, v in fields.items() if k != "model_type"})
    with torch.device("meta"):
        built = transformers.DeepseekV4ForCausalLM(config)
    spec = from_hf_config("v4", fields)
    norms = spec.num_layers * (2 * spec.hidden_size + spec.q_lora_rank + spec.head_dim) + spec.hidden_size
    assert spec.total_params + norms == sum(p.numel() for p in built.parameters())


def test_both_config_forms_and_the_default_pattern(tmp_path):
    """transformers' layer_types / compress_rates read as the checkpoints' compress_ratios (whose last entry is the
    MTP layer's); without either, DeepseekV4Config's default: two HCA layers, then HCA and CSA alternating."""
    kinds = ["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
             "compressed_sparse_attention", "sliding_attention"]
    listed = dict(SMALL, layer_types=kinds,
                  compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 128})
    del listed["compress_ratios"]
    assert from_hf_config("a", listed) == from_hf_config("a", SMALL)
    default = from_hf_config("d", dict(model_type="deepseek_v4", num_hidden_layers=7)).compressed
    assert (default.hca_layers, default.csa_layers) == (2 + 3, 2)  # H H | H C H C H
    legacy = from_hf_config("l", dict(SMALL, compress_ratios=[0, 8, 64, 8, 0], compress_rate_csa=8,
                                      compress_rate_hca=64)).compressed
    assert (legacy.csa_ratio, legacy.hca_ratio, legacy.csa_layers, legacy.hca_layers) == (8, 64, 2, 1)
    assert from_hf_config("q", dict(SMALL, partial_rotary_factor=0.25)).qk_rope_head_dim == 16
    assert from_hf_config("f", dict(SMALL, quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128],
                                                                "expert_dtype": "fp4"})).native_precision \
        == "fp8-block-mxfp4"
    assert from_hf_config("b", dict(SMALL, quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128]}
                                    )).native_precision == "fp8-block"


@pytest.mark.parametrize("change, needle", [
    (dict(compress_ratios=[0, 4, 8, 4, 0]), "compress_ratios must list 0, 4 or 128 for each of the 5 layers"),
    (dict(compress_ratios=[0, 4]), "compress_ratios must list"),
    (dict(layer_types=["full_attention"] * 5), "layer_types must list one of"),
    (dict(o_groups=3), "o_groups=3 does not divide num_attention_heads=8"),
    (dict(qk_rope_head_dim=64), "qk_rope_head_dim=64 must be below head_dim=64"),
    (dict(partial_rotary_factor=1.5), "partial_rotary_factor must be a number in"),
    (dict(compress_rates={"dense_attention": 2}), "compress_rates names"),
    (dict(compress_rate_csa=128), "CSA compression ratio (128) must be below the HCA one (128)"),
    (dict(index_topk=0), "index_topk must be a positive integer"),
    (dict(n_shared_experts=-1), "n_shared_experts must be a non-negative integer"),
    (dict(dspark_num_layers=3), "field dspark_num_layers is not modelled for model_type 'deepseek_v4'"),
])
def test_bad_fields_are_one_line_errors(tmp_path, change, needle):
    with pytest.raises(PhasewiseError, match=needle.replace("(", r"\(").replace(")", r"\)")) as err:
        load_model(_write(tmp_path, {k: v for k, v in dict(SMALL, **change).items()
                                     if not (k == "compress_ratios" and "layer_types" in change)}))
    assert "\n" not in str(err.value)


def test_kv_bytes_per_token_and_per_window_token_by_hand():
    """FP8 in vLLM's / SGLang's fp8_ds_mla layout: an entry is 448 FP8 + 7 scale bytes + 64 BF16 RoPE + 1 pad = 584;
    per token of context each CSA layer holds an entry and a 132-byte indexer key per 4 tokens, each HCA layer an
    entry per 128; per token of the last 128, every layer's window entry and the compressors' FP32 rings (CSA: 8
    slots of 2 x 2 x 512 and of 2 x 2 x 128; HCA: 128 slots of 2 x 512) spread over the window. The same on every
    GPU of the attention group (one K = V head); TensorRT-LLM's plain FP8 entry is 512 bytes; BF16 1,024."""
    m = load_model(FLASH)
    fp8 = load_quant("mxfp4").with_kv("fp8")
    per_token = 21 * (584 + 132) / 4 + 20 * 584 / 128
    per_window_token = 43 * 584 + (21 * (8 * 2 * 2 * 512 * 4 + 8 * 2 * 2 * 128 * 4) + 20 * 128 * 2 * 512 * 4) / 128
    for tp in (1, 8):
        assert kv_bytes_per_token(m, fp8, tp, 1) == pytest.approx(per_token, rel=1e-12)
    terms = kv_window_terms(m, attention_tp=8, quant=fp8)
    assert terms == (1.0, pytest.approx(per_window_token / per_token, rel=1e-12), 128, False)
    assert kv_token_equivalents(8192, terms) * per_token == pytest.approx(8192 * per_token + 128 * per_window_token)
    plain = fp8.model_copy(update={"sparse_kv_layout": "plain"})
    assert kv_bytes_per_token(m, plain, 1, 1) == pytest.approx(21 * (512 + 132) / 4 + 20 * 512 / 128, rel=1e-12)
    assert kv_bytes_per_token(m, load_quant("bf16"), 1, 1) == pytest.approx(21 * (1024 + 132) / 4 + 20 * 8, rel=1e-12)
    with pytest.raises(ValueError, match="need the KV dtype"):
        kv_window_terms(m, attention_tp=1)


def test_engines_keep_its_cache_in_fp8():
    """Every engine's "auto" KV dtype for DeepSeek-V4 is FP8 (vLLM asserts it), whatever the precision's."""
    from phasewise.perf.estimate import estimate

    for engine in ("vllm", "sglang", "trtllm"):
        cm = estimate(FLASH, "b200", tp=8, engine=engine, batch=1, prompt_len=128).cost_model
        assert cm.quant.kv_dtype == "fp8"
        assert cm.quant.sparse_kv_layout == ("plain" if engine == "trtllm" else "flashmla")


def test_prefill_attention_indexer_and_projections_by_hand():
    """One 8,192-token prompt on one GPU: every layer's 64 heads over its window (128 keys a token, the first 128
    tokens 1..128), the CSA layers over their top-512 compressed entries too (one per 4 keys, at most 512: the first
    2,048 tokens select fewer) after the indexer scores every entry (64 x 128 per pair), the HCA layers over every
    128th; 2 x (512 + 512) x 64 FLOPs a pair. Projections: q_a with K = V, q_b, the compressors (CSA: 2 x 2 x 512 and
    2 x 2 x 128 wide, the indexer's q_b and weights; HCA: 2 x 512), o_a in 8 groups and o_b."""
    m = load_model(FLASH)
    cm = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8").with_kv("fp8"), load_engine("vllm"))
    n = 8192
    shape = BatchShape.uniform(1, n, 0)
    ops = {op.name: op for op in cm.iteration(shape).operators}
    pairs = n * (n + 1) / 2
    window, every_128th = 128 * 129 / 2 + (n - 128) * 128, pairs / 128
    selected = (2048 * 2049 / 2 + (n - 2048) * 2048) / 4
    attention = 2 * 1024 * 64 * (43 * window + 21 * selected + 20 * every_128th) + 21 * 2 * 64 * 128 * pairs / 4
    assert ops["attention"].flops == pytest.approx(attention, rel=1e-12)
    h = 4096
    qkv = 2 * n * (43 * (h * (1024 + 512) + 1024 * 64 * 512)
                   + 21 * (h * 2048 + h * 512 + 1024 * 64 * 128 + h * 64) + 20 * h * 1024)
    o_proj = 2 * n * 43 * (64 * 512 * 1024 + 8 * 1024 * h)
    assert ops["qkv_proj"].flops == pytest.approx(qkv, rel=1e-12)
    assert ops["o_proj"].flops == pytest.approx(o_proj, rel=1e-12)


def test_weights_per_gpu_by_hand():
    """TP 8 against TP 1: q_a and the K = V projection (FP8 here), the compressors, indexers and mixers (BF16), the
    MoE routers (BF16) and the norms are whole on every GPU; everything else is split, so 8 x TP-8 less TP 1 is 7 x
    what is whole."""
    m, fp8 = load_model(FLASH), load_quant("fp8")
    h = 4096
    whole = (43 * (h * (1024 + 512) * fp8.weight_bytes_per_param + 2 * h * 2) + m.compression_params * 2
             + m.num_moe_layers * h * m.num_experts * 2)
    assert 8 * weight_bytes_per_gpu(m, fp8, 8, 1) - weight_bytes_per_gpu(m, fp8, 1, 1) == pytest.approx(7 * whole,
                                                                                                          rel=1e-9)


def test_experts_in_their_own_scheme():
    """The checkpoint's format (fp8-block-mxfp4): the routed experts stored in MXFP4 (0.5 + 1/32 bytes a weight), the
    rest in FP8 blocks (1 + 1/16,384 with UE8M0 scales); a decode step reads each in its own format, and on a chip
    without an FP4 tensor path (H200) the experts run MXFP4's fallback (expanded to BF16) while the rest stays FP8."""
    m = load_model(FLASH)
    scheme = load_quant(m.default_precision)
    fp8 = load_quant("fp8-block").model_copy(update={"scale_bytes": 1.0})
    routed = 43 * 256 * 3 * 4096 * 2048
    by_hand = {q: weight_bytes_per_gpu(m, q, 1, 1) for q in (scheme, fp8)}
    assert by_hand[fp8] - by_hand[scheme] == pytest.approx(routed * (1 + 1 / 16384 - 0.5 - 1 / 32), rel=1e-12)
    for chip, expert_compute in (("b200", "fp4"), ("h200-sxm", "bf16")):
        cm = CostModel(m, load_hardware(chip), scheme.with_kv("fp8"), load_engine("vllm"), tp=8)
        assert (cm.quant.compute_dtype, cm.expert_quant.compute_dtype) == ("fp8", expert_compute)
        ops = {op.name: op for op in cm.iteration(BatchShape.uniform(1, 1, 4096)).operators}
        plain = CostModel(m, load_hardware(chip), load_quant("mxfp4").with_kv("fp8"), load_engine("vllm"), tp=8)
        plain_ops = {op.name: op for op in plain.iteration(BatchShape.uniform(1, 1, 4096)).operators}
        assert ops["moe_experts"].bytes == pytest.approx(plain_ops["moe_experts"].bytes, rel=1e-12)
        assert ops["o_proj"].bytes > 1.8 * plain_ops["o_proj"].bytes  # FP8 o_a / o_b, not MXFP4


@pytest.mark.parametrize("engine, tp, pp, layout", [
    ("vllm", 8, 1, {}), ("sglang", 8, 1, dict(attention_dp=8, ep=8)), ("trtllm-pytorch", 4, 1, dict(ep=4)),
    ("vllm", 4, 2, {}),
])
def test_decode_runs_match_fast_step_by_step(engine, tp, pp, layout):
    """Compressed attention's decode runs in closed form (CompressedDecodeLine) give fast()'s step at contexts below,
    at and past the window and the top-k, pipeline-parallel too."""
    cm = CostModel(load_model(FLASH), load_hardware("h200-sxm"), load_quant("mxfp4").with_kv("fp8"),
                   load_engine(engine), tp=tp, pp=pp, layout=ParallelLayout(tp=tp, **layout))
    assert_decode_runs_match_fast(cm, CompressedDecodeLine, (1, 7, 64), (0, 127, 128, 2047, 5000), 12, (0, 5, 11))


def test_pipeline_stages_pass_the_hyper_connection_streams():
    """Under PP each stage holds its share of the stack (the layers' kinds at the stack's shares, as for other hybrid
    stacks) and each stage boundary carries the residual's hc_mult (4) streams of hidden (4,096) BF16 values per
    token: 8 x 1,024 prompt tokens x 4 x 4,096 x 2 bytes = 268 MB a boundary; a stage's weights and KV per token
    about half of PP 1's."""
    m = load_model(FLASH)
    quant = load_quant("fp8-block-mxfp4").with_kv("fp8")
    one, two = (CostModel(m, load_hardware("h200-sxm"), quant, load_engine("vllm"), tp=4, pp=pp) for pp in (1, 2))
    ops = {op.name: op for op in two.iteration(BatchShape.uniform(8, 1024, 0)).operators}
    assert ops["pp_send_recv"].bytes == pytest.approx(8 * 1024 * 4 * 4096 * 2, rel=1e-12)
    assert two.layers_per_stage == 22 and one.layers_per_stage == 43
    assert kv_bytes_per_token(m, quant, 4, 2) == pytest.approx(kv_bytes_per_token(m, quant, 4, 1) * 22 / 43)
    assert 0.5 < weight_bytes_per_gpu(m, quant, 4, 2) / weight_bytes_per_gpu(m, quant, 4, 1) < 0.56


def test_layouts_refused_by_name():
    """TP must divide the output groups (o_a is split by group); device splits are not modelled yet; the MTP module
    is a sliding layer."""
    m = load_model(FLASH)
    check_parallelism(m, 8, 1)
    check_parallelism(m, 8, 2)
    with pytest.raises(PhasewiseError, match="--tp 16 does not divide o_groups=8"):
        check_parallelism(m, 16, 1)
    mtp = mtp_module(m)
    assert mtp.num_layers == 1 and (mtp.compressed.csa_layers, mtp.compressed.hca_layers) == (0, 0)


def test_serving_runs_end_to_end_under_memory_pressure():
    """simulate on 8 H200s at 18 % of their memory (weights 19 GiB a GPU, 3.3 GiB kept free for a prefill chunk's
    window blocks in vLLM's shared pool, a GiB or two of KV): the Mooncake excerpt's long prompts queue for KV, the
    simulator's invariants (KV-block conservation, causality) checked at every step; every request completes (at
    17.5 % one is refused as beyond the KV capacity)."""
    from phasewise.sim.api import run

    result = run(model=FLASH, hardware="h200-sxm", tp=8, trace="mooncake", trace_limit=40, rate=10,
                 memory_fraction=0.18, check_invariants=True)
    summary = result.summary()
    assert summary["completed"] == 40 and summary["queue_ms"]["p50"] > 1000


def test_launch_flags_and_kv_blocks_as_the_engines_require():
    """vLLM's DeepSeek-V4 recipe: an FP8 cache (its attention asserts one) on 256-token blocks, written whatever the
    deployment says; TensorRT-LLM's cache manager takes 128- or 256-token blocks; the simulation runs on the same."""
    from phasewise.apps.launch import launch_commands
    from phasewise.sim.deployment import build_deployment
    from phasewise.specs.engine_kv import kv_block
    from phasewise.specs.engines import resolve_engine

    vllm = build_deployment({"model": FLASH, "instances": [{"hardware": "h200-sxm", "tp": 8, "engine": "vllm"}]})
    (cmd,), _, _ = launch_commands(vllm)
    argv = " ".join(cmd.argv)
    assert "--kv-cache-dtype fp8" in argv and "--block-size 256" in argv
    m, hw = load_model(FLASH), load_hardware("b200")
    assert kv_block(resolve_engine("trtllm", hw), m, hw, None) == (128, "DeepseekV4CacheManager")
    assert kv_block(resolve_engine("trtllm", hw), m, hw, 256) == (256, "")
    assert kv_block(resolve_engine("vllm", hw), m, hw, 16) == (256, "DeepSeek-V4 sparse attention")


def test_fuzz_findings(tmp_path):
    """Found by benchmarks/fuzz_configs.py: a stack of sliding layers only (one layer of Flash's pattern) divided by
    its zero compressed bytes per token (it now holds every layer's window, as a stack windowed throughout), and a NaN
    max_position_embeddings escaped as a ValueError (now a one-line error)."""
    one = load_model(_write(tmp_path, dict(_config(FLASH), num_hidden_layers=1)))
    fp8 = load_quant("fp8").with_kv("fp8")
    assert kv_window_terms(one, attention_tp=1, quant=fp8) == (0.0, 1.0, 128, False)
    assert kv_bytes_per_token(one, fp8, 1, 1) == pytest.approx(584)
    with pytest.raises(PhasewiseError, match="field max_position_embeddings must be a non-negative integer") as err:
        from_hf_config("nan", dict(_config(FLASH), max_position_embeddings=float("nan")))
    assert "\n" not in str(err.value)


def test_projection_flops_match_transformers_forward():
    """torch's FLOP counter over transformers' DeepseekV4ForCausalLM forward (a 512-token prompt, the small stack of
    every kind): per module, q_a, q_b, the K = V projection, the compressors' and the indexers' projections and the
    indexers' head weights are the cost model's qkv_proj; o_a (grouped) and o_b its o_proj; the router gates its
    moe_router; the shared experts its moe_shared; the layers' hyper-connection mixers the mixers' FLOPs of
    perf/compressed_cost.py. (The routed experts run outside the counter's ops; transformers' attention and indexer
    scores run over every key, masked, so they are not compared.)"""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "DeepseekV4Config"):
        pytest.skip("transformers without DeepSeek-V4")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from phasewise.perf.compressed_cost import compressed_elementwise

    n = 512
    config = transformers.DeepseekV4Config(**{k: v for k, v in SMALL.items() if k != "model_type"})
    built = transformers.DeepseekV4ForCausalLM(config).eval()
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        built(torch.randint(0, SMALL["vocab_size"], (1, n)), use_cache=False)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}

    def measured(*suffixes: str) -> int:
        return sum(flops for name, flops in counts.items() if ".layers." in name and name.endswith(suffixes))

    spec = from_hf_config("small", SMALL)
    cm = CostModel(spec, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    ops = {op.name: op for op in cm.iteration(BatchShape.uniform(1, n, 0)).operators}
    qkv = measured("self_attn.q_a_proj", "self_attn.q_b_proj", "self_attn.kv_proj", "compressor.kv_proj",
                   "compressor.gate_proj", "indexer.kv_proj", "indexer.gate_proj", "indexer.q_b_proj",
                   "scorer.weights_proj")
    assert ops["qkv_proj"].flops == pytest.approx(qkv, rel=1e-9)
    assert ops["o_proj"].flops == pytest.approx(measured("self_attn.o_a_proj", "self_attn.o_b_proj"), rel=1e-9)
    assert ops["moe_router"].flops == pytest.approx(measured("mlp.gate"), rel=1e-9)
    assert ops["moe_shared"].flops == pytest.approx(measured("mlp.shared_experts"), rel=1e-9)
    mixers = compressed_elementwise(cm, n)[0] * spec.num_layers
    assert mixers == pytest.approx(measured("attn_hc", "ffn_hc"), rel=1e-9)


@pytest.mark.parametrize("name, flops_claim, kv_claim", [(PRO, 0.27, 0.10), (FLASH, 0.10, 0.07)])
def test_model_card_ratios_at_a_million_tokens(name, flops_claim, kv_claim):
    """The model card: at a 1M-token context DeepSeek-V4-Pro needs 27 % of DeepSeek-V3.2's single-token inference
    FLOPs and 10 % of its KV cache (Flash: 10 % and 7 %, as secondary sources quote the report). Nothing fitted: one
    decode step's FLOPs at 2^20 cached tokens and one sequence's KV (window and compressor states included), against
    the catalog's DeepSeek-V3.2 costed the same way (its indexer over every token, its top-2,048 latent attention),
    in BF16: Pro 26.2 % and 11.4 %, Flash 12.1 % and 8.0 % (the vLLM blog's own arithmetic, 9.62 against 83.9 GiB,
    is 11.5 %)."""
    context, bf16 = 2 ** 20, load_quant("bf16")
    figures = {}
    for model_name in (name, "deepseek-ai/DeepSeek-V3.2"):
        m = load_model(model_name)
        kv = kv_token_equivalents(context, kv_window_terms(m, attention_tp=1, quant=bf16)) * kv_bytes_per_token(
            m, bf16, 1, 1)
        cm = CostModel(m, load_hardware("b200"), bf16, load_engine("vllm"))
        flops = sum(op.flops for op in cm.iteration(BatchShape.uniform(1, 1, context)).operators)
        figures[model_name] = flops, kv
    (v4_flops, v4_kv), (v32_flops, v32_kv) = figures[name], figures["deepseek-ai/DeepSeek-V3.2"]
    assert v4_flops / v32_flops == pytest.approx(flops_claim, abs=0.03)
    assert v4_kv / v32_kv == pytest.approx(kv_claim, abs=0.015)


def test_sglang_s_dsv4_pools_as_its_configurator_sizes_them():
    """SGLang's DeepSeek-V4 pools (DSV4PoolConfigurator, the 0.5.15 form): per context token its compressed entries
    and indexer keys, plus swa_full_tokens_ratio x (every layer's 584-byte window entry and the CSA compressors'
    rings); the HCA compressors' rings per request slot apart. Its logged bytes_per_full_token: 13,735.04 for Pro at
    ratio 0.15 (0.5.15.post1), 7,705.45 for Flash at its default 0.1; the HCA rings 3.875 GiB for 256 slots of Pro.
    vLLM keeps the window per sequence; the ratio is SGLang's knob, and its pool cannot be turned off for V4."""
    from phasewise.perf.window_kv import slot_state_bytes
    from phasewise.specs.engine_kv import window_kv
    from phasewise.specs.engines import resolve_engine

    quant = load_quant("fp8-block-mxfp4").with_kv("fp8")
    pro, flash, hw = load_model(PRO), load_model(FLASH), load_hardware("b200")

    def per_full_token(m, ratio):
        return kv_bytes_per_token(m, quant, 8, 1) * kv_window_terms(m, "window_pool", ratio, attention_tp=8,
                                                                     quant=quant)[0]

    assert per_full_token(pro, 0.15) == pytest.approx(13735.04, abs=0.01)
    assert per_full_token(flash, 0.1) == pytest.approx(7705.45, abs=0.01)
    assert slot_state_bytes(pro, "window_pool", 256) == 256 * 31 * 128 * 2 * 512 * 4 == 3.875 * 2**30
    assert slot_state_bytes(pro, "per_sequence", 256) == 0.0
    sglang = resolve_engine("sglang", hw, model_type="deepseek_v4")
    assert window_kv(sglang, pro, hw) == ("window_pool", 0.1)
    assert window_kv(resolve_engine("sglang", hw, {"swa_full_tokens_ratio": 0.075}), pro, hw) == ("window_pool", 0.075)
    assert window_kv(resolve_engine("vllm", hw), pro, hw) == ("block_pool", 1.0)  # tests/test_shared_block_pool.py
    assert window_kv(resolve_engine("trtllm", hw), pro, hw) == ("window_pages", 1.0)  # tests/test_window_pages.py
    with pytest.raises(PhasewiseError, match="--disable-hybrid-swa-memory: .* cannot run without"):
        window_kv(resolve_engine("sglang", hw, {"disable_hybrid_swa_memory": True}), pro, hw)


def test_sglang_s_dsv4_pools_under_speculative_decoding():
    """With EAGLE / MTP, SGLang's rings grow to 16 CSA and 256 HCA slots (get_compress_state_ring_size(ratio,
    is_speculative)) and the pool's bytes per full token by (61 + 1) / 61 for the draft layer: Pro at ratio 0.1,
    (5,511.44 + 0.1 x (61 x 584 + 16 / 128 x (8,192 + 2,048) x 30)) x 62 / 61 = 13,125.54 bytes (10,993.84
    without), the HCA rings twice as large per slot (7.75 GiB for 256 slots). The MTP layer's own KV is its window
    (a sliding layer), in those pools: no bytes per context token beside the target's. vLLM and TensorRT-LLM keep
    no such pool: their rings do not change."""
    from phasewise.perf.memory import draft_memory
    from phasewise.perf.window_kv import slot_state_bytes
    from phasewise.specs.engine_kv import window_pool_speculation
    from phasewise.specs.engines import resolve_engine

    quant = load_quant("fp8-block-mxfp4").with_kv("fp8")
    pro, hw = load_model(PRO), load_hardware("b200")
    speculation = window_pool_speculation(resolve_engine("sglang", hw, model_type="deepseek_v4"), pro, True)
    assert speculation == ((16, 256), 1)
    assert window_pool_speculation(resolve_engine("sglang", hw, model_type="deepseek_v4"), pro, False) is None
    for engine in ("vllm", "trtllm"):
        assert window_pool_speculation(resolve_engine(engine, hw), pro, True) is None
    terms = kv_window_terms(pro, "window_pool", 0.1, attention_tp=8, quant=quant, speculation=speculation)
    per_token = kv_bytes_per_token(pro, quant, 8, 1)
    assert per_token == 30 * (584 + 132) / 4 + 31 * 584 / 128 == 5_511.4375
    expected = (per_token + 0.1 * (61 * 584 + 16 / 128 * (8_192 + 2_048) * 30)) * 62 / 61
    assert terms[0] * per_token == pytest.approx(expected) == pytest.approx(13_125.54, abs=0.01)
    assert terms[1] == pytest.approx(terms[0] / 0.1)
    assert slot_state_bytes(pro, "window_pool", 256, speculation) == 256 * 31 * 256 * 2 * 512 * 4 == 7.75 * 2**30
    assert draft_memory(pro, None, quant, 8)[1] == 0.0  # the MTP layer's window only, not per context token


def test_a_smaller_swa_pool_holds_more_context_under_sglang():
    """SGLang's full pool holds what the memory left after the slots' rings holds at the per-full-token bytes
    (window_pool_tokens); a smaller SWA ratio (the cookbook's 0.075 for Pro) holds more context tokens, its SWA pool
    that ratio of them."""
    from phasewise.perf.memory import memory_fit
    from phasewise.perf.window_kv import slot_state_bytes, window_pool_tokens

    quant, m, hw = load_quant("fp8-block-mxfp4").with_kv("fp8"), load_model(PRO), load_hardware("b200")
    slots = slot_state_bytes(m, "window_pool", 256)
    fit = memory_fit(m, hw, quant, 8, 1, memory_fraction=0.835, fraction_of="static", slot_bytes=slots)
    assert fit.slot_bytes == slots and fit.kv_free_bytes == pytest.approx(fit.kv_capacity_tokens
                                                                           * fit.kv_bytes_per_token, rel=1e-4)
    pools = {}
    for ratio in (0.1, 0.075):
        terms = kv_window_terms(m, "window_pool", ratio, attention_tp=8, quant=quant)
        pools[ratio] = window_pool_tokens(fit.kv_capacity_tokens, terms, ratio)
        full = pools[ratio][0]
        assert full * fit.kv_bytes_per_token * terms[0] == pytest.approx(fit.kv_free_bytes, rel=1e-4)
        assert pools[ratio][1] == int(full * ratio)
    assert pools[0.075][0] > pools[0.1][0]
