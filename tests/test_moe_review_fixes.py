"""A reviewer's MoE configs (real-shaped config.json files and malformed variants): gpt-oss without layer_types,
models given as a checkpoint directory or its config.json (and what the launch commands load), vLLM's
instance-wide expert parallelism, zero or impossible MoE pattern fields, per-layer lists of the wrong length, and
the prefix cache's eviction counts in named units."""

import json

import pytest

from phasewise.apps.launch import launch_commands
from phasewise.errors import PhasewiseError
from phasewise.perf.parallel import LAYOUT_FLAGS
from phasewise.plan.instance_fit import instance_layouts
from phasewise.plan.options import PlanOptions
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_model
from phasewise.specs.catalog import packaged
from phasewise.specs.engine_refusals import layout_refusal
from phasewise.specs.model_catalog import checkpoint_id

OSS = "openai/gpt-oss-120b"
R1 = "deepseek-ai/DeepSeek-R1"


def _catalog(name: str) -> dict:
    return dict(packaged("models.yaml")["models"][name]["config"])


def _write(directory, cfg: dict, name: str = "config.json") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(cfg))
    return str(path)


def _deepseek() -> dict:
    return _catalog("deepseek-ai/DeepSeek-V3")


# 1: gpt-oss ------------------------------------------------------------------------------------------------------

def test_gpt_oss_without_layer_types_alternates_sliding_and_full_layers(tmp_path):
    """GptOssConfig fills a missing layer_types with sliding layers at even indices, full at odd ones: the bare
    sliding_window had made every layer windowed (Mistral's rule), KV 72 -> 36 KiB/token on gpt-oss-120b."""
    listed = load_model(OSS)
    cfg = {k: v for k, v in _catalog(OSS).items() if k != "layer_types"}
    bare = load_model(_write(tmp_path, cfg))
    assert bare.sliding_window_layers == listed.sliding_window_layers == 18
    assert bare.layer_pattern == listed.layer_pattern == "WF" * 18
    assert bare.model_copy(update={"name": OSS}) == listed
    no_window = load_model(_write(tmp_path / "nowin", {**cfg, "sliding_window": None}))
    assert no_window.sliding_window is None and no_window.layer_pattern == ""


# 2: a model by path ----------------------------------------------------------------------------------------------

def test_a_checkpoint_directory_is_a_model_and_the_engines_load_the_directory(tmp_path):
    checkpoint = tmp_path / "qwen3-30b"
    config = _write(checkpoint, _catalog("Qwen/Qwen3-30B-A3B"))
    assert load_model(str(checkpoint)).model_copy(update={"name": "x"}) == \
        load_model(config).model_copy(update={"name": "x"})
    assert checkpoint_id(config) == checkpoint_id(str(checkpoint)) == str(checkpoint)
    assert checkpoint_id("Qwen/Qwen3-30B-A3B") == "Qwen/Qwen3-30B-A3B"
    for engine, at in (("vllm", 2), ("sglang", 4), ("trtllm", 1)):
        dep = build_deployment({"model": config, "instances": [{"hardware": "h100-sxm", "tp": 2, "engine": engine}]})
        (cmd,), _, _ = launch_commands(dep)
        assert cmd.argv[at] == str(checkpoint) and not any(a.endswith("config.json") for a in cmd.argv)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PhasewiseError, match=r"model directory '.*empty' holds no config.json"):
        load_model(str(empty))
    other = _write(tmp_path / "loose", _catalog("Qwen/Qwen3-30B-A3B"), "q.json")
    with pytest.raises(PhasewiseError, match=r"--model '.*q.json': an engine loads a checkpoint directory"):
        checkpoint_id(other)


def test_plan_refuses_an_unloadable_export_model_before_the_search(run_cli, tmp_path):
    other = _write(tmp_path, _catalog("Qwen/Qwen3-30B-A3B"), "q.json")
    code, _, err = run_cli("plan", "--model", other, "--hardware", "h100-sxm", "--gpus", "2", "--export",
                           str(tmp_path / "out"))
    assert code == 2 and "not a file named q.json" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# 3: vLLM's expert parallelism spans the instance ------------------------------------------------------------------

def test_vllm_refuses_a_partial_expert_parallelism(run_cli):
    for ep, moe_tp, named in ((4, None, "--ep 4"), (None, 2, "--moe-tp 2"), (2, 4, "--ep 2")):
        why = layout_refusal("vllm", 8, ep, moe_tp, None, LAYOUT_FLAGS)
        assert why.startswith(f"{named} is not possible on engine 'vllm'") and "spans all 8 GPUs" in why
        for other in ("sglang", "trtllm", "trtllm-bench"):
            assert layout_refusal(other, 8, ep, moe_tp, None, LAYOUT_FLAGS) is None
    for ep, moe_tp, dp in ((8, None, None), (None, 1, None), (8, None, 8), (1, 8, None), (3, None, None)):
        assert layout_refusal("vllm", 8, ep, moe_tp, dp, LAYOUT_FLAGS) is None  # 3: parallel_layout's to refuse
    code, _, err = run_cli("estimate", "--model", R1, "--hardware", "h200-sxm", "--tp", "8", "--ep", "4")
    assert code == 2 and "--ep 4 is not possible on engine 'vllm'" in err and err.count("\n") == 1
    code, _, err = run_cli("simulate", "--model", R1, "--hardware", "h200-sxm", "--engine", "vllm", "--tp", "8",
                           "--ep", "4", "--requests", "2", "--rate", "1")
    assert code == 2 and "--ep 4 is not possible on engine 'vllm'" in err
    with pytest.raises(PhasewiseError, match="--decode-ep 4 is not possible on engine 'vllm'"):
        build_deployment({"model": R1, "instances": [
            {"role": "prefill", "hardware": "h200-sxm", "tp": 8, "engine": "vllm"},
            {"role": "decode", "hardware": "h200-sxm", "tp": 8, "ep": 4, "engine": "vllm"}]})


def test_the_planner_tries_only_whole_instance_expert_parallelism_on_vllm():
    model = load_model(R1)
    for tp in (2, 4, 8):
        layouts = instance_layouts(model, tp, PlanOptions(engine="vllm"), [])
        assert layouts and all(fields.get("ep", tp) == tp for _, fields in layouts)


# 4: zero or impossible MoE pattern fields -------------------------------------------------------------------------

@pytest.mark.parametrize("base, change, message", [
    ("deepseek", {"moe_layer_freq": 0}, "field moe_layer_freq must be a positive integer .got 0."),
    ("qwen", {"decoder_sparse_step": 0}, "field decoder_sparse_step must be a positive integer .got 0."),
    ("deepseek", {"n_group": 3}, r"field n_group 3 must divide the 256 routed experts .*allowed: 1, 2, 4, 8, 16"),
    ("deepseek", {"n_group": 0}, "field n_group must be a positive integer .got 0."),
    ("deepseek", {"topk_group": 9}, "field topk_group 9 must be at most n_group 8"),
    ("deepseek", {"topk_group": 0}, "field topk_group must be a positive integer"),
    ("deepseek", {"n_group": 64, "topk_group": 1}, r"num_experts_per_tok 8 must be at most topk_group 1 x 4"),
])
def test_zero_or_impossible_moe_patterns_are_refused(tmp_path, base, change, message):
    cfg = _deepseek() if base == "deepseek" else _catalog("Qwen/Qwen3-30B-A3B")
    load_model(_write(tmp_path / "ok", cfg))
    with pytest.raises(PhasewiseError, match=message) as err:
        load_model(_write(tmp_path, {**cfg, **change}))
    assert "\n" not in str(err.value)


# 5: per-layer lists -----------------------------------------------------------------------------------------------

def test_per_layer_lists_of_the_wrong_length_are_refused(tmp_path):
    minimax = _catalog("MiniMaxAI/MiniMax-M2")
    with pytest.raises(PhasewiseError, match="attn_type_list lists 10 layers, num_hidden_layers is 62"):
        load_model(_write(tmp_path, {**minimax, "attn_type_list": [1] * 10}))
    oss = _catalog(OSS)
    with pytest.raises(PhasewiseError, match="layer_types lists 10 layers, num_hidden_layers is 36"):
        load_model(_write(tmp_path, {**oss, "layer_types": oss["layer_types"][:10]}))
    hunyuan = {"model_type": "hunyuan_v1_moe", "hidden_size": 4096, "num_attention_heads": 32,
               "num_key_value_heads": 8, "intermediate_size": 3072, "num_hidden_layers": 32, "vocab_size": 128167,
               "attention_head_dim": 128, "num_experts": 64, "moe_topk": [8] * 32, "moe_intermediate_size": [3072] * 32}
    load_model(_write(tmp_path, hunyuan))
    with pytest.raises(PhasewiseError, match="moe_topk lists 4 layers, num_hidden_layers is 32"):
        load_model(_write(tmp_path, {**hunyuan, "moe_topk": [8] * 4}))
    qwen = _catalog("Qwen/Qwen3-30B-A3B")
    with pytest.raises(PhasewiseError, match=r"field mlp_only_layers must list layer indices in 0..47 .got \[200\]"):
        load_model(_write(tmp_path, {**qwen, "mlp_only_layers": [200]}))


# 6: the prefix cache's evictions in named units -------------------------------------------------------------------

def test_prefix_cache_evictions_are_counted_in_prefix_blocks_and_tokens(run_cli):
    flags = dict(model="meta-llama/Llama-3.1-8B", hardware="h200-sxm", tp=8, trace="mooncake", memory_fraction=0.2)
    cache = run(**flags).summary()["prefix_cache"]
    assert "evicted_blocks" not in cache and cache["prefix_block_tokens"] == 512
    assert cache["evicted_prefix_blocks"] > 0
    assert cache["evicted_tokens"] == cache["evicted_prefix_blocks"] * cache["prefix_block_tokens"]
    code, out, _ = run_cli("simulate", "--model", flags["model"], "--hardware", "h200-sxm", "--tp", "8", "--trace",
                           "mooncake", "--memory-fraction", "0.2")
    text = " ".join(out.split())
    assert code == 0 and (f"{cache['evicted_prefix_blocks']:,} 512-token blocks ({cache['evicted_tokens']:,} tokens "
                          "of KV) evicted") in text
