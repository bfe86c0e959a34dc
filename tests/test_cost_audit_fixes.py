"""Cost-model fixes from the arithmetic audit: an FP8-block split the engines refuse, MXFP4 experts at the widths the
engines pad them to, the all-to-all under group-limited routing, and the embedding's all-reduce under TP."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.collectives import other_ranks_per_token
from phasewise.perf.memory import padded_expert_widths, weight_bytes_per_gpu
from phasewise.perf.parallel import ParallelLayout
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.engine_refusals import block_shape_refusal

QWEN_FP8 = "Qwen/Qwen3-235B-A22B-FP8"
GPT_OSS = "openai/gpt-oss-120b"


# --- 1. an FP8-block slice of a partial block ------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_an_fp8_block_expert_slice_of_partial_blocks_is_refused_with_the_fix(engine):
    """moe_intermediate_size 1536 over TP 8 is 192 per GPU, not whole 128-wide blocks: vLLM and SGLang abort at
    load ("The output_size of gate's and up's weight = 192 is not divisible by weight quantization block_n = 128")."""
    refusal = block_shape_refusal(engine, load_model(QWEN_FP8), "fp8-block", 8)
    assert refusal is not None and "\n" not in refusal
    assert "1536" in refusal and "192" in refusal and "--ep 8" in refusal and "1, 2, 3, 4, 6, 12" in refusal


def test_whole_blocks_other_engines_and_unblocked_schemes_load():
    qwen = load_model(QWEN_FP8)
    assert block_shape_refusal("vllm", qwen, "fp8-block", 8, moe_tp=1) is None  # EP 8: whole experts
    assert block_shape_refusal("vllm", qwen, "fp8-block", 4) is None  # 384 = 3 blocks
    assert block_shape_refusal("vllm", qwen, "bf16", 8) is None
    assert block_shape_refusal("trtllm", qwen, "fp8-block", 8) is None  # not read: no rule
    assert block_shape_refusal("vllm", load_model("Qwen/Qwen3-30B-A3B-FP8"), "fp8-block", 4) is not None


def test_a_dense_mlp_slice_of_partial_blocks_is_refused():
    """DeepSeek-R1's dense MLP (18,432) over TP 32 is 576 per GPU (sgl-project/sglang issue #3345); its experts
    expert-parallel load."""
    refusal = block_shape_refusal("sglang", load_model("deepseek-ai/DeepSeek-V3"), "fp8-block", 32, moe_tp=1)
    assert refusal is not None and "18432" in refusal and "576" in refusal


# --- 2. MXFP4 experts at the engines' padded widths -------------------------------------------------------------
def test_mxfp4_experts_take_the_widths_vllm_pads_them_to():
    """vLLM's Mxfp4MoEMethod.create_weights: FlashInfer on Blackwell rounds the intermediate per GPU and the hidden
    size to 256 (2880 -> 3072, 360 -> 512 at TP 8); Triton on Hopper the intermediate to 64 (360 -> 384)."""
    m, quant = load_model(GPT_OSS), load_quant("bf16-mxfp4")
    b200, h100 = load_hardware("b200"), load_hardware("h100-sxm")
    assert padded_expert_widths(m, quant, 8, "vllm", b200) == (3072, 512)
    assert padded_expert_widths(m, quant, 1, "vllm", b200) == (3072, 3072)
    assert padded_expert_widths(m, quant, 8, "sglang", h100) == (2880, 384)
    assert padded_expert_widths(m, quant, 8, "trtllm-pytorch", b200) == (2880, 360)  # not read: as stored
    assert padded_expert_widths(m, quant, 8) == (2880, 360)


def test_padded_experts_are_held_and_multiplied():
    m, quant, b200 = load_model(GPT_OSS), load_quant("bf16-mxfp4"), load_hardware("b200")
    raw = weight_bytes_per_gpu(m, quant, 8, 1)
    padded = weight_bytes_per_gpu(m, quant, 8, 1, engine="vllm", hardware=b200)
    routed = m.num_layers * m.num_experts * 3 * 2880 * 2880 / 8 * quant.experts_scheme().weight_bytes_per_param
    assert padded - raw == pytest.approx(routed * (3072 * 512 / (2880 * 360) - 1), rel=1e-9)
    shape = BatchShape.uniform(4, 1024, 0)

    def expert_flops(engine: str) -> float:
        cm = CostModel(m, b200, quant, load_engine(engine), tp=8)
        return next(op.flops for op in cm.iteration(shape).operators if op.name == "moe_experts")

    assert expert_flops("vllm") / expert_flops("ideal") == pytest.approx(3072 * 512 / (2880 * 360), rel=1e-9)


# --- 3. the all-to-all's ranks under group-limited routing -------------------------------------------------------
def _grouped_topk_monte_carlo(ranks: int, k: int, experts: int, groups: int, kept: int, tokens: int = 20_000) -> float:
    """Other ranks a token reaches, by the engines' grouped top-k itself (vLLM fused_moe grouped_topk with a
    correction bias, DeepSeek's MoEGate noaux_tc): a group scores the sum of its two best experts, the `kept` best
    groups are kept, the k best experts among theirs routed; i.i.d. uniform scores, linear placement."""
    rng = np.random.default_rng(11)
    scores = rng.random((tokens, groups, experts // groups))
    group_score = np.sort(scores, axis=2)[:, :, -2:].sum(axis=2)
    dropped = np.argsort(-group_score, axis=1)[:, kept:]
    np.put_along_axis(scores, dropped[:, :, None].repeat(scores.shape[2], axis=2), -1.0, axis=1)
    top = np.argsort(-scores.reshape(tokens, experts), axis=1)[:, :k]
    hit = np.zeros((tokens, ranks), dtype=bool)
    np.put_along_axis(hit, top * ranks // experts, True, axis=1)
    return float(hit.sum(axis=1).mean()) * (ranks - 1) / ranks


@pytest.mark.parametrize("ranks", [2, 4, 8, 16, 32])
def test_other_ranks_under_group_routing_follow_the_engines_grouped_topk(ranks):
    """DeepSeek-V3: 256 experts in 8 groups, top-4 groups, top-8 experts; EP 8 puts one group on a rank (at most 4
    ranks a token), EP 4 two groups a rank, EP 16 / 32 a group over 2 / 4 ranks, 2 nodes of EP 16 four groups a node.
    The group-sum rule concentrates a token's experts in fewer groups than 'kept groups uniform, then k experts
    uniform among them' (EP 8: 3.46 against 3.175), and fewer ranks than uniform routing."""
    exact = other_ranks_per_token(ranks, 8, 256, 8, 4)
    assert exact == pytest.approx(_grouped_topk_monte_carlo(ranks, 8, 256, 8, 4), abs=0.02)
    assert exact < other_ranks_per_token(ranks, 8, 256)


def test_group_routing_figures_at_deepseek_shapes():
    """The reviewer's Monte Carlo of DeepSeek's rule (/tmp/s110/review/audit/grouped.py: 3.457 at EP 8); seeded and
    cached: the same figure each call."""
    assert other_ranks_per_token(8, 8, 256, 8, 4) == pytest.approx(3.46, abs=0.01)
    assert other_ranks_per_token(2, 8, 256, 8, 4) == pytest.approx(0.983, abs=0.005)
    assert other_ranks_per_token(8, 8, 256, 8, 4) == other_ranks_per_token(8, 8, 256, 8, 4)


def test_without_group_routing_the_uniform_rule_is_kept():
    assert other_ranks_per_token(8, 8, 256) == pytest.approx(7 * (1 - (7 / 8) ** 8), rel=1e-15)
    # every group kept (GLM-4.5-Air's n_group 1, topk_group 1): no group limit
    assert other_ranks_per_token(8, 8, 128, 1, 1) == other_ranks_per_token(8, 8, 128)
    assert other_ranks_per_token(8, 8, 256, 8, 8) == other_ranks_per_token(8, 8, 256)


def test_the_model_carries_its_group_routing_and_the_all_to_all_reads_it():
    """config.json n_group / topk_group (DeepSeek-V3/R1: 8 / 4) on ModelSpec, from the catalog and from a user's
    config file alike (topk_group n_group where absent); none where the config has none."""
    v3 = load_model("deepseek-ai/DeepSeek-V3")
    assert (v3.n_group, v3.topk_group) == (8, 4)
    assert (load_model("deepseek-ai/DeepSeek-R1").n_group, load_model(QWEN_FP8).n_group) == (8, None)
    from phasewise.specs.hf_config import from_hf_config
    from phasewise.specs.model_catalog import _checkpoint_config

    cfg = dict(_checkpoint_config("deepseek-ai/DeepSeek-V3")[0])
    cfg.pop("topk_group")
    assert (from_hf_config("mine", cfg).n_group, from_hf_config("mine", cfg).topk_group) == (8, 8)
    cm = CostModel(v3, load_hardware("h200-sxm"), load_quant("fp8-block"), load_engine("ideal"), tp=8,
                   layout=ParallelLayout(tp=8, attention_dp=8, ep=8))
    assert cm._other_ranks_per_token(8) == other_ranks_per_token(8, 8, 256, 8, 4)


# --- 4. the embedding's all-reduce under TP -----------------------------------------------------------------------
def test_the_embedding_is_all_reduced_over_the_tp_group():
    """vLLM's and SGLang's VocabParallelEmbedding sum the ranks' lookups: one T x hidden all-reduce a forward."""
    m, hw, quant, engine = load_model("meta-llama/Llama-3.1-8B"), load_hardware("h100-sxm"), load_quant("bf16"), \
        load_engine("vllm")
    shape = BatchShape.uniform(4, 512, 0)
    tokens = 4 * 512

    def embedding(tp: int):
        return next(op for op in CostModel(m, hw, quant, engine, tp=tp).iteration(shape).operators
                    if op.name == "embedding")

    one, two = embedding(1), embedding(2)
    reduction = CostModel(m, hw, quant, engine, tp=2).embedding_reduction(tokens)
    assert two.bytes - one.bytes == pytest.approx(tokens * m.hidden_size * 2, rel=1e-12)
    assert two.time_s == pytest.approx(one.time_s + reduction.time_s, rel=1e-9)
    assert CostModel(m, hw, quant, engine, tp=1).embedding_reduction(tokens) is None


# --- 5. the FP8-block refusal on every surface ---------------------------------------------------------------------
def test_estimate_refuses_a_split_of_partial_blocks(run_cli):
    code, out, err = run_cli("estimate", "--model", QWEN_FP8, "--hardware", "h100-sxm", "--tp", "8")
    assert code != 0 and "192 wide per GPU" in err and "--ep 8" in err and "Traceback" not in err
    code, out, err = run_cli("estimate", "--model", QWEN_FP8, "--hardware", "h100-sxm", "--tp", "8", "--ep", "8",
                             "--json")
    assert code == 0, err


@pytest.mark.parametrize("group, flag", [
    ({"tp": 8}, "--ep 8"),  # no MoE field at all
    ({"role": "decode", "tp": 8, "attention_dp": 2}, "--decode-ep 8"),
])
def test_a_deployment_group_of_partial_blocks_is_refused_with_its_role_flags(group, flag):
    from phasewise.sim.deployment import Deployment

    instances = [group] if "role" not in group else [{"role": "prefill", "tp": 4}, group]
    with pytest.raises(ValueError, match="192 wide per GPU") as info:
        Deployment.model_validate({"model": QWEN_FP8, "instances": instances})
    assert flag in str(info.value)
    Deployment.model_validate({"model": QWEN_FP8, "instances": [{"tp": 8, "ep": 8}]})  # whole experts: loads
    Deployment.model_validate({"model": QWEN_FP8, "instances": [{"tp": 8, "precision": "bf16"}]})  # no blocks


def test_plan_prunes_the_refused_tensor_parallel_layout_and_keeps_expert_parallel_ones():
    from phasewise.plan.instance_fit import instance_layouts, role_layouts
    from phasewise.plan.options import PlanOptions

    qwen, opts, pruned = load_model(QWEN_FP8), PlanOptions(), []
    names = [suffix for suffix, _ in instance_layouts(qwen, 8, opts, pruned, precision="fp8-block")]
    assert names == [" EP8", " DP8EP8"]
    assert len(pruned) == 1 and pruned[0].startswith("tp=8 tp fp8-block: ") and "192 wide" in pruned[0]
    assert [s for s, _ in instance_layouts(qwen, 8, opts, [], precision="bf16")] == ["", " EP8", " DP8EP8"]
    assert [s for s, _ in instance_layouts(qwen, 4, opts, [], precision="fp8-block")] == ["", " EP4", " DP4EP4"]
    pairs = role_layouts(qwen, 8, 8, opts, [], "fp8-block")
    assert pairs and all(p[1] and d[1] for p, d in pairs)  # no plain-TP role left


def test_the_harness_reads_sglang_wide_attention_dp_rows_as_expert_parallel(tmp_path):
    """SGLang 0.5.5.post2's GB200 DeepSeek-V3 decode rows write 32 GPUs at attention DP 32 as moe_tp 32, moe_ep 1
    (64-wide FP8 experts, which SGLang refuses at load); read as EP 32, as every other such row, with the split's key
    as the columns write it. Within a node the columns' reading stays."""
    import sys
    from pathlib import Path

    from conftest import load_benchmark

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    saved = {name: sys.modules.get(name) for name in ("validate_concurrency", "validate_moe")}
    sys.modules["validate_concurrency"] = load_benchmark("validate_concurrency", folder=bench)
    try:
        vm = load_benchmark("validate_moe", folder=bench, register=True)
        row = {"backend": "sglang", "mode": "disagg", "decode_tp_size": "1", "decode_pp_size": "1",
               "decode_attention_dp_size": "32", "decode_moe_tp_size": "32", "decode_moe_ep_size": "1"}
        lay = vm.instance_layout(row, "decode_")
        assert (lay.gpus, lay.attention_dp, lay.ep, lay.text(), lay.text(as_written=True)) == \
            (32, 32, 32, "32g/dp32/ep32", "32g/dp32")
        small = dict(row, decode_attention_dp_size="8", decode_moe_tp_size="8")
        assert vm.instance_layout(small, "decode_").ep == 1
        assert vm.instance_layout(dict(row, backend="trtllm"), "decode_").ep == 1
    finally:
        for name, old in saved.items():
            sys.modules.pop(name, None)
            if old is not None:
                sys.modules[name] = old


# --- 2b. every memory fit takes the engine's padded experts --------------------------------------------------------
def test_estimate_and_simulate_hold_the_padded_experts():
    """gpt-oss-120b on 8 B200s under vLLM: 7.61 GiB of weights a GPU as stored, 11.28 as FlashInfer's MXFP4 MoE
    allocates them (intermediate 360 -> 512, hidden 2880 -> 3072); simulate's group sizes its KV pool alike."""
    from phasewise.perf.estimate import estimate
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import build_group

    est = estimate(GPT_OSS, "b200", tp=8)
    assert est.memory.weight_bytes / 2**30 == pytest.approx(11.275, abs=0.01)
    dep = build_deployment({"model": GPT_OSS, "instances": [{"hardware": "b200", "tp": 8}]})
    capacity = build_group(dep, dep.instances[0], 0)[1]
    assert capacity == est.memory.kv_capacity_tokens
