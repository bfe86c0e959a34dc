"""The KV block a latent-attention (MLA) model's attention kernel forces on an engine and GPU (engine_presets.yaml
`latent_attention_block`, specs/engines.py latent_attention_block): the blocks below are read off the engines' own
rules (vllm/platforms/cuda.py check_and_update_config; sglang srt/server_args.py), not off phasewise."""

import json

import pytest

from phasewise.sim.api import run
from phasewise.sim.deployment import collocated
from phasewise.sim.events import EventLoop
from phasewise.sim.simulate import build_cluster
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engines import latent_attention_block, resolve_engine

R1 = "deepseek-ai/DeepSeek-R1"


@pytest.mark.parametrize("model, hardware, engine, asked, block, kernel", [
    (R1, "h200-sxm", "vllm", 16, 64, "FlashMLA"),  # SM90: a multiple of 64, else 64
    (R1, "h200-sxm", "vllm", 128, 128, "FlashMLA"),
    (R1, "h100-sxm", "vllm", 32, 64, "FlashMLA"),
    (R1, "b200", "vllm", 16, 64, "FlashInfer MLA"),  # SM100, q.k nope 128: 32 or a multiple of 64, else 64
    (R1, "gb300", "vllm", 32, 32, "FlashInfer MLA"),
    ("zai-org/GLM-5", "b200", "vllm", 128, 64, "FlashMLASparse"),  # index_topk: exactly 64
    ("zai-org/GLM-5", "h200-sxm", "vllm", 16, 64, "FlashMLASparse"),
    (R1, "b200", "sglang", 16, 64, "trtllm_mla"),  # SM100 DeepseekV3ForCausalLM: 32 or 64, else 64
    (R1, "b300", "sglang", 32, 32, "trtllm_mla"),
    ("moonshotai/Kimi-K2-Instruct", "gb200", "sglang", 128, 64, "trtllm_mla"),
    (R1, "h200-sxm", "sglang", 16, 16, ""),  # SM90: fa3 takes any page
    ("zai-org/GLM-5", "b200", "sglang", 16, 16, ""),  # not DeepseekV3ForCausalLM
    (R1, "b200", "trtllm", 16, 16, ""),  # tokens_per_block as asked
    (R1, "a100-sxm-80gb", "vllm", 16, 16, ""),  # Triton MLA
    ("Qwen/Qwen3-8B", "h200-sxm", "vllm", 16, 16, ""),  # not latent attention
])
def test_the_block_each_engine_forces(model, hardware, engine, asked, block, kernel):
    hw = load_hardware(hardware)
    assert latent_attention_block(resolve_engine(engine, hw), load_model(model), hw, asked) == (block, kernel)


def test_a_q_k_nope_width_other_than_128_takes_cutlass_mla_on_blackwell():
    hw = load_hardware("b200")
    narrow = load_model(R1).model_copy(update={"head_dim": 128})  # nope 128 - 64 = 64
    assert latent_attention_block(resolve_engine("vllm", hw), narrow, hw, 16) == (128, "CUTLASS MLA")
    assert latent_attention_block(resolve_engine("vllm", hw), narrow, hw, 256) == (256, "CUTLASS MLA")


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
    args, notes = argv("sglang", "h200-sxm")
    assert args[args.index("--page-size") + 1] == "16" and not any("KV blocks" in n for n in notes)


def test_tensorrt_llm_runs_sparse_attention_on_64_token_blocks_without_block_reuse(run_cli):
    """TensorRT-LLM's DSA cache manager asserts 64-token blocks and raises on block reuse: the block is 64, prefix
    caching off by default (its launch writes enable_block_reuse false), and asked for, a one-line error."""
    from phasewise.apps.launch import launch_commands

    hw = load_hardware("b200")
    glm = load_model("zai-org/GLM-5")
    assert latent_attention_block(resolve_engine("trtllm", hw), glm, hw, 16) == (64, "DSA indexer K cache (DeepGEMM)")
    dep = collocated("zai-org/GLM-5", "b200", tp=8, engine="trtllm", precision="nvfp4")
    _, _, files = launch_commands(dep)
    assert "tokens_per_block: 64" in "".join(files.values()) and "enable_block_reuse: false" in "".join(files.values())
    base = ["simulate", "--model", "zai-org/GLM-5", "--hardware", "b200", "--tp", "8", "--engine", "trtllm",
            "--precision", "nvfp4", "--trace", "mooncake", "--trace-limit", "40"]
    code, out, err = run_cli(*base, "--json")
    assert code == 0 and json.loads(out)["prefix_cache"] is None
    code, out, err = run_cli(*base, "--prefix-caching", "on")
    assert code == 2 and "does not reuse KV blocks of a sparse-attention model" in err and len(err.splitlines()) == 1
