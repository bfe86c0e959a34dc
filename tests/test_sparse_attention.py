"""DeepSeek sparse attention (DSA: GLM-5, DeepSeek-V3.2): latent attention whose lightning indexer scores every earlier
token and whose attention runs over each query's top-k keys, against hand computations."""

from __future__ import annotations

import json

import pytest
from conftest import assert_decode_runs_match_fast

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.perf.operators import KERNELS, LATENT_KERNELS, kernel_counts
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import engine_kv, sparse_kv_refusal
from phasewise.specs.engines import resolve_engine

GLM5 = "zai-org/GLM-5"


def test_glm5_counts_match_its_name_by_hand():
    """78 layers of 64-head latent attention (q latent 2048, KV latent 512 + RoPE 64, nope 192, v 256) with a
    32 x 128 indexer; 3 dense MLPs of 12,288, then 75 MoE layers of 256 experts of 2,048 (top-8) and one shared."""
    m = load_model("zhipuai/GLM-5")  # the measured rows' name
    h = 6144
    indexer = 2048 * 32 * 128 + h * 128 + h * 32
    attention = h * 2048 + 2048 * 64 * 256 + h * 576 + 512 * 64 * (192 + 256) + 64 * 256 * h + indexer
    assert m.indexer_params == indexer and m.attention_params == attention
    moe = 256 * 3 * h * 2048 + 3 * h * 2048 + h * 256
    assert m.total_params == 78 * attention + 3 * 3 * h * 12288 + 75 * moe + 2 * 154880 * h
    assert m.total_params == pytest.approx(744e9, rel=0.01)  # GLM-5's 744B
    assert m.active_params == pytest.approx(40e9, rel=0.06)  # and A40B


def test_the_indexer_keys_are_cached_beside_the_latent():
    """Per token and layer: the 576-element latent at the KV dtype, in FP8 in FlashMLA's sparse layout (the 512
    latent elements in FP8 with an FP32 scale per 128, the 64-wide RoPE key in BF16: 656 bytes, vLLM's fp8_ds_mla,
    SGLang's NSA pool), and the indexer's FP8 key of 128 with an FP32 scale, whatever the KV dtype, on every TP
    rank; a dense-attention MLA model's FP8 latent stays 576 bytes."""
    m = load_model(GLM5)
    assert kv_bytes_per_token(m, load_quant("bf16"), 8, 1) == 78 * (576 * 2 + 132)
    assert kv_bytes_per_token(m, load_quant("fp8-block", "fp8"), 8, 1) == 78 * (512 + 4 * 4 + 64 * 2 + 132)
    assert kv_bytes_per_token(load_model("deepseek-ai/DeepSeek-R1"), load_quant("fp8-block", "fp8"), 8, 1) \
        == 61 * 576


def test_attention_reads_the_sparse_fp8_layout():
    """Below the top-k every cached key is read: the latent's bytes grow by 656 per key and layer in FP8 (the
    indexer's 132 scanned beside it), 1,152 in BF16."""
    hw, engine = load_hardware("b200"), load_engine("sglang")

    def grown(kv_dtype: str) -> float:
        cm = CostModel(load_model(GLM5), hw, load_quant("fp8-block", kv_dtype), engine, 8)
        ops = [{op.name: op for op in cm.iteration(BatchShape.uniform(1, 1, ctx)).operators}["attention"].bytes
               for ctx in (512, 1024)]
        return (ops[1] - ops[0]) / (78 * 512)

    assert grown("fp8") == pytest.approx(656 + 132 + 4 * 2, rel=1e-9)  # + the indexer's score written and read
    assert grown("bf16") == pytest.approx(1152 + 132 + 4 * 2, rel=1e-9)


def test_a_sparse_config_names_its_missing_indexer_fields(tmp_path):
    cfg = {"model_type": "deepseek_v32", "hidden_size": 1024, "num_attention_heads": 8, "num_hidden_layers": 2,
           "intermediate_size": 4096, "vocab_size": 1000, "kv_lora_rank": 64, "q_lora_rank": 128,
           "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32, "index_topk": 256,
           "index_n_heads": 4, "index_head_dim": 64}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    assert (m.sparse_attention_topk, m.indexer_heads, m.indexer_head_dim) == (256, 4, 64)
    path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "index_n_heads"}))
    with pytest.raises(PhasewiseError, match="missing field index_n_heads") as err:
        load_model(str(path))
    assert "\n" not in str(err.value)


def _cost(engine: str = "sglang") -> CostModel:
    return CostModel(load_model(GLM5), load_hardware("b200"), load_quant("fp8-block", "fp8"), load_engine(engine), 8)


def test_decode_reads_the_top_k_latents_and_scans_every_indexer_key():
    """Past 2,048 cached tokens, a decode step's latent reads stop growing; the indexer still reads every cached
    token's 132-byte key and scores it (2 x 32 x 128 FLOPs per pair)."""
    cm = _cost()

    def attention(context: int):
        return {op.name: op for op in cm.iteration(BatchShape.uniform(64, 1, context)).operators}["attention"]

    grown = 64 * 4096  # 64 sequences, 4,096 more cached tokens each
    assert attention(8192).bytes - attention(4096).bytes == pytest.approx(78 * grown * (132 + 4 * 2), rel=1e-9)
    assert attention(8192).flops - attention(4096).flops == pytest.approx(78 * grown * 2 * 32 * 128, rel=1e-9)
    # below the top-k, every key is read as in dense latent attention
    assert attention(1024).bytes - attention(512).bytes > 78 * 64 * 512 * 576


def test_the_indexer_launches_its_own_kernels():
    counts = kernel_counts(True, True, True)
    assert counts["qkv_proj"] == LATENT_KERNELS["qkv_proj"] + 3
    assert counts["attention"] == LATENT_KERNELS["attention"] + 10
    assert kernel_counts(False, False)["attention"] == KERNELS["attention"]


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_sparse_decode_runs_are_costed_as_fast_does_step_by_step(engine):
    """SparseDecodeLine (numpy over the steps: the latent attention capped at the top-k keys, the indexer over all of
    them) gives fast()'s latency at every step, across the top-k and past it, and the first step's (latency, flops,
    bytes)."""
    from phasewise.perf.decode_line import SparseDecodeLine

    assert_decode_runs_match_fast(_cost(engine), SparseDecodeLine, (1, 32, 200), (100, 1990, 9000), 120,
                                  (0, 57, 58, 119))


def test_a_sparse_attention_model_simulates_with_its_invariants():
    from phasewise.sim.api import run

    result = run(model=GLM5, hardware="b200", tp=8, precision="fp8-block", kv_dtype="fp8", engine="sglang", rate=3,
                 requests=20, isl=3000, osl=32, check_invariants=True).summary()
    assert result["completed"] == 20


def test_tensorrt_llm_keeps_the_sparse_fp8_latent_plain():
    """TensorRT-LLM's DSA cache manager keeps the FP8 latent as plain per-tensor FP8 (576 bytes a token and layer,
    the indexer's 132 beside it), vLLM and SGLang in FlashMLA's 656-byte layout: the engine sets the layout, whether
    the FP8 KV was asked or is the engine's own pick (SGLang's on Blackwell); the memory fit and the attention's reads
    follow."""
    m, hw = load_model(GLM5), load_hardware("b200")
    for engine, latent in (("trtllm", 576), ("vllm", 656), ("sglang", 656)):
        config = resolve_engine(engine, hw, tp=8)
        for asked in (True, False):
            quant = engine_kv(load_quant("fp8-block", "fp8" if asked else None), config, m, hw, asked)
            if engine != "sglang" and not asked:  # their "auto" follows the checkpoint: fp8-block keeps BF16 KV
                assert quant.kv_dtype == "bf16" and kv_bytes_per_token(m, quant, 8, 1) == 78 * (1152 + 132)
                continue
            assert quant.kv_dtype == "fp8" and kv_bytes_per_token(m, quant, 8, 1) == 78 * (latent + 132)
            cm = CostModel(m, hw, quant, config.profile, 8)
            reads = [{op.name: op for op in cm.iteration(BatchShape.uniform(1, 1, ctx)).operators}["attention"].bytes
                     for ctx in (512, 1024)]
            assert (reads[1] - reads[0]) / (78 * 512) == pytest.approx(latent + 132 + 4 * 2, rel=1e-9)
    dense = engine_kv(load_quant("fp8-block", "fp8"), resolve_engine("trtllm", hw, tp=8),
                      load_model("deepseek-ai/DeepSeek-R1"), hw, True)
    assert dense.sparse_kv_layout == "flashmla"  # a dense MLA model's quant is left as it is


def test_estimate_shows_the_engines_sparse_latent():
    """`estimate` on GLM-5 with FP8 KV: 60.0 KiB a token on SGLang (FlashMLA's layout), 53.9 on TensorRT-LLM."""
    from typer.testing import CliRunner

    from phasewise.apps.cli import app

    for engine, kib in (("sglang", "60.0"), ("trtllm", "53.9")):
        out = CliRunner().invoke(app, ["estimate", "--model", GLM5, "--hardware", "b200", "--tp", "8", "--precision",
                                       "fp8-block", "--kv-dtype", "fp8", "--engine", engine])
        assert out.exit_code == 0 and f"KV {kib} KiB/token" in out.output, out.output


def test_tensorrt_llm_on_hopper_keeps_a_sparse_models_kv_in_bf16_only():
    """TensorRT-LLM runs a sparse-attention model's MLA on Hopper with FlashMLA's BF16-KV kernel: an FP8 cache,
    asked or the precision's own (NVFP4's), is a one-line error naming the allowed dtype; BF16 on Hopper, FP8 on
    Blackwell and SGLang's FP8 on Hopper stay possible."""
    m, h200, b200 = load_model(GLM5), load_hardware("h200-sxm"), load_hardware("b200")
    trt = resolve_engine("trtllm", h200, tp=8)
    for quant, asked in ((load_quant("fp8-block", "fp8"), True), (load_quant("nvfp4"), False)):
        with pytest.raises(PhasewiseError) as exc:
            engine_kv(quant, trt, m, h200, asked)
        assert "bf16 only, not fp8" in str(exc.value) and "--kv-dtype bf16" in str(exc.value)
        assert "\n" not in str(exc.value)
    assert engine_kv(load_quant("fp8-block", "bf16"), trt, m, h200, True).kv_dtype == "bf16"
    assert engine_kv(load_quant("fp8-block", "fp8"), resolve_engine("trtllm", b200, tp=8), m, b200, True).kv_dtype \
        == "fp8"
    assert engine_kv(load_quant("fp8-block", "fp8"), resolve_engine("sglang", h200, tp=8), m, h200, True).kv_dtype \
        == "fp8"
    assert sparse_kv_refusal("trtllm", load_model("deepseek-ai/DeepSeek-R1"), h200, "fp8") == ""  # dense MLA

