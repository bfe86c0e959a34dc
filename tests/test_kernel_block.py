"""The KV block an engine runs on (specs/engine_kv.py kv_block): its default when the deployment does not say
(engine_presets.yaml `kv_block_tokens`: vLLM 16, SGLang's page 1, TensorRT-LLM 32), and the one a latent-attention
(MLA) model's attention kernel forces (`latent_attention_block`): the blocks below are read off the engines' own rules
(vllm/platforms/cuda.py check_and_update_config; sglang srt/server_args.py; TensorRT-LLM's llm_args.py and DSA cache
manager), not off phasewise."""

import json

import pytest

from phasewise.sim.api import run
from phasewise.sim.deployment import collocated
from phasewise.sim.events import EventLoop
from phasewise.sim.simulate import build_cluster
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_kv import kv_block
from phasewise.specs.engines import resolve_engine

R1 = "deepseek-ai/DeepSeek-R1"


@pytest.mark.parametrize("model, hardware, engine, asked, block, kernel", [
    (R1, "h200-sxm", "vllm", 16, 64, "FlashMLA"),  # SM90: a multiple of 64, else 64
    (R1, "h200-sxm", "vllm", 128, 128, ""),  # kept: no kernel changed it
    (R1, "h100-sxm", "vllm", 32, 64, "FlashMLA"),
    (R1, "b200", "vllm", 16, 64, "FlashInfer MLA"),  # SM100, q.k nope 128: 32 or a multiple of 64, else 64
    (R1, "gb300", "vllm", 32, 32, ""),
    ("zai-org/GLM-5", "b200", "vllm", 128, 64, "FlashMLASparse"),  # index_topk: exactly 64
    ("zai-org/GLM-5", "h200-sxm", "vllm", 16, 64, "FlashMLASparse"),
    (R1, "b200", "sglang", 16, 64, "trtllm_mla"),  # SM100 DeepseekV3ForCausalLM: 32 or 64, else 64
    (R1, "b300", "sglang", 32, 32, ""),
    (R1, "b200", "sglang", None, 64, "trtllm_mla"),  # SGLang's default page, 1, changed too
    ("moonshotai/Kimi-K2-Instruct", "gb200", "sglang", 128, 64, "trtllm_mla"),
    (R1, "h200-sxm", "sglang", 16, 16, ""),  # SM90: fa3 takes any page
    (R1, "h200-sxm", "sglang", None, 1, ""),  # SGLang's default page: 1 token
    (R1, "b200", "trtllm", None, 32, ""),  # TensorRT-LLM's default tokens_per_block
    ("Qwen/Qwen3-8B", "h200-sxm", "vllm", None, 16, ""),  # vLLM's default block
    ("zai-org/GLM-5", "b200", "sglang", 16, 64, "nsa"),  # is_deepseek_nsa: 64 whatever is asked
    ("zai-org/GLM-5", "h200-sxm", "sglang", None, 64, "nsa"),  # SGLang's default page, 1, changed too
    ("zai-org/GLM-5", "a100-sxm-80gb", "sglang", 16, 16, ""),  # no FlashMLA sparse kernel listed there
    (R1, "b200", "trtllm", 16, 16, ""),  # tokens_per_block as asked
    (R1, "a100-sxm-80gb", "vllm", 16, 16, ""),  # Triton MLA
    ("Qwen/Qwen3-8B", "h200-sxm", "vllm", 16, 16, ""),  # not latent attention
])
def test_the_block_each_engine_forces(model, hardware, engine, asked, block, kernel):
    hw = load_hardware(hardware)
    assert kv_block(resolve_engine(engine, hw), load_model(model), hw, asked) == (block, kernel)


def test_a_q_k_nope_width_other_than_128_takes_cutlass_mla_on_blackwell():
    hw = load_hardware("b200")
    narrow = load_model(R1).model_copy(update={"head_dim": 128})  # nope 128 - 64 = 64
    assert kv_block(resolve_engine("vllm", hw), narrow, hw, 16) == (128, "CUTLASS MLA")
    assert kv_block(resolve_engine("vllm", hw), narrow, hw, 256) == (256, "")


def test_the_instance_runs_on_the_forced_block_with_the_same_pool():
    """The pool's tokens are the engine's either way: in 64-token blocks it holds them to a block."""
    from phasewise.sim.simulate import build_group

    dep = collocated(R1, "h200-sxm", tp=8, engine="vllm")
    _, kv_tokens, _, _ = build_group(dep, dep.instances[0], 0)
    kv = build_cluster(dep, EventLoop(), 0)[1][0].kv
    assert kv.block_size == 64 and kv.capacity == kv_tokens // 64


def test_prefix_caching_runs_on_the_forced_block_and_conserves_it():
    res = run(model=R1, hardware="h200-sxm", tp=8, trace="mooncake", trace_limit=150, rate=0.5,
              check_invariants=True)
    cache = res.summary()["prefix_cache"]
    assert cache["hit_blocks"] > 0 and cache["hit_tokens"] == 512 * cache["hit_blocks"]
    assert res.records()["output_tokens"].sum() == res.output_tokens.sum()


def test_launch_writes_the_block_the_engine_runs_on():
    from phasewise.apps.launch import launch_commands

    def argv(engine: str, hardware: str) -> tuple[list[str], list[str]]:
        workers, _, _ = launch_commands(collocated(R1, hardware, tp=8, engine=engine))
        return workers[0].argv, workers[0].comments

    args, notes = argv("vllm", "h200-sxm")
    assert args[args.index("--block-size") + 1] == "64" and any("FlashMLA" in n for n in notes)
    args, notes = argv("sglang", "b200")
    assert args[args.index("--page-size") + 1] == "64" and any("trtllm_mla" in n for n in notes)
    args, notes = argv("sglang", "h200-sxm")  # SGLang's own default page, written as it runs
    assert args[args.index("--page-size") + 1] == "1" and not any("KV blocks" in n for n in notes)
    args, notes = argv("trtllm", "b200")
    assert not any("KV blocks" in n for n in notes)


def test_tensorrt_llm_runs_sparse_attention_on_64_token_blocks_without_block_reuse(run_cli):
    """TensorRT-LLM's DSA cache manager asserts 64-token blocks and raises on block reuse: the block is 64, prefix
    caching off by default (its launch writes enable_block_reuse false), and asked for, a one-line error."""
    from phasewise.apps.launch import launch_commands

    hw = load_hardware("b200")
    glm = load_model("zai-org/GLM-5")
    assert kv_block(resolve_engine("trtllm", hw), glm, hw, None) == (64, "DSA indexer K cache (DeepGEMM)")
    dep = collocated("zai-org/GLM-5", "b200", tp=8, engine="trtllm", precision="nvfp4")
    _, _, files = launch_commands(dep)
    assert "tokens_per_block: 64" in "".join(files.values()) and "enable_block_reuse: false" in "".join(files.values())
    base = ["simulate", "--model", "zai-org/GLM-5", "--hardware", "b200", "--tp", "8", "--engine", "trtllm",
            "--precision", "nvfp4", "--trace", "mooncake", "--trace-limit", "40"]
    code, out, err = run_cli(*base, "--json")
    assert code == 0 and json.loads(out)["prefix_cache"] is None
    code, out, err = run_cli(*base, "--prefix-caching", "on")
    assert code == 2 and "does not reuse KV blocks of a sparse-attention model" in err and len(err.splitlines()) == 1


def test_sglang_keeps_a_sparse_attention_models_kv_in_fp8_on_blackwell_when_told_none():
    """SGLang's --kv-cache-dtype auto is FP8 for a DSA model on SM100 and BF16 below, whatever the weights
    (srt/server_args.py _set_default_nsa_kv_cache_dtype): estimate, simulate, plan's fit and the launch agree; a
    KV dtype asked for stands and is written; other engines and models keep their precision's KV dtype."""
    from phasewise.apps.launch import launch_commands
    from phasewise.perf.estimate import estimate
    from phasewise.sim.simulate import build_group
    from phasewise.specs.engine_kv import default_kv_dtype

    glm, b200, h200 = load_model("zai-org/GLM-5"), load_hardware("b200"), load_hardware("h200-sxm")
    assert default_kv_dtype(resolve_engine("sglang", b200), glm, b200) == "fp8"
    assert default_kv_dtype(resolve_engine("sglang", h200), glm, h200) == "bf16"
    assert default_kv_dtype(resolve_engine("vllm", b200), glm, b200) is None
    assert default_kv_dtype(resolve_engine("sglang", b200), load_model(R1), b200) is None  # not sparse

    def kv_tokens(engine: str, kv_dtype: str | None = None) -> int:
        dep = collocated("zai-org/GLM-5", "b200", tp=8, engine=engine, precision="fp8-block", kv_dtype=kv_dtype)
        return build_group(dep, dep.instances[0], 0)[1]

    fp8, asked_bf16 = kv_tokens("sglang"), kv_tokens("sglang", "bf16")
    assert fp8 == kv_tokens("sglang", "fp8")  # the same pool whether asked or SGLang's auto
    # per token and layer: the latent in FlashMLA's sparse FP8 layout (656 bytes) or BF16 (1,152), the indexer's 132
    assert fp8 / asked_bf16 == pytest.approx((1152 + 132) / (656 + 132), rel=1e-4)
    one = estimate(model="zai-org/GLM-5", hardware="b200", tp=8, precision="fp8-block", engine="sglang")
    assert one.cost_model.quant.kv_dtype == "fp8"
    vllm = estimate(model="zai-org/GLM-5", hardware="b200", tp=8, precision="fp8-block", engine="vllm")
    assert vllm.cost_model.quant.kv_dtype == "bf16"

    def launched(kv_dtype: str | None) -> tuple[list[str], list[str]]:
        dep = collocated("zai-org/GLM-5", "b200", tp=8, engine="sglang", precision="fp8-block", kv_dtype=kv_dtype)
        worker = launch_commands(dep)[0][0]
        return worker.argv, worker.comments

    args, notes = launched(None)  # SGLang's auto already gives FP8: no flag, a note
    assert "--kv-cache-dtype" not in args and any("when --kv-cache-dtype is auto" in n for n in notes)
    args, _ = launched("bf16")  # asked: written, or SGLang's auto would keep FP8
    assert args[args.index("--kv-cache-dtype") + 1] == "bfloat16"
    args, _ = launched("fp8")
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8_e4m3"
