"""MoE layouts: expert parallelism with all-to-all dispatch and combine, attention data parallelism beside it,
MoE tensor parallelism; their memory, costs, flags and the planner's enumeration."""

from __future__ import annotations

import json
import math

import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.perf.group_routing import other_ranks_per_token
from phasewise.perf.parallel import ParallelLayout, parallel_layout
from phasewise.plan.strategies import PlanOptions, enumerate_strategies
from phasewise.sim.api import run
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

DEEPSEEK = "deepseek-ai/DeepSeek-V3"
QWEN_MOE = "Qwen/Qwen3-30B-A3B"


def _cost(model: str, tp: int, layout: ParallelLayout | None, precision: str = "fp8",
          dispatch: str = "all_to_all") -> CostModel:
    """SGLang on H200; its MoE tokens by all-to-all (its --moe-a2a-backend deepep's exchange, in its default's BF16)
    unless `dispatch` says otherwise (its default, gather)."""
    engine = load_engine("sglang").model_copy(update={"moe_dispatch": dispatch})
    return CostModel(load_model(model), load_hardware("h200-sxm"), load_quant(precision), engine, tp=tp,
                     layout=layout)


def _ops(cm: CostModel, shape: BatchShape) -> dict:
    return {op.name: op for op in cm.iteration(shape).operators}


def test_an_all_tensor_parallel_layout_costs_exactly_what_no_layout_costs():
    shape = BatchShape.uniform(64, 1, 2048)
    plain = _cost(QWEN_MOE, 4, None).iteration(shape)
    same = _cost(QWEN_MOE, 4, parallel_layout(load_model(QWEN_MOE), 4)).iteration(shape)
    assert plain.latency_s == same.latency_s
    assert [op.bytes for op in plain.operators] == [op.bytes for op in same.operators]


def test_all_to_all_bytes_are_each_tokens_hidden_state_to_the_experts_held_elsewhere():
    """Per GPU and MoE layer: its tokens x top-k x hidden x (ep-1)/ep, dispatched as SGLang's default path sends
    an FP8 model's tokens, in BF16 (its attention-DP gather; DeepEP's FP8 only with --moe-a2a-backend deepep),
    and combined back in BF16 (2 bytes)."""
    m = load_model(DEEPSEEK)
    cm = _cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8))
    batch = 256
    op = _ops(cm, BatchShape.uniform(batch, 1, 1024))["moe_all_to_all"]
    per_rank_tokens = batch / 8
    sent = per_rank_tokens * 8 * 7168 * 7 / 8
    assert op.count == 58
    assert op.bytes == pytest.approx(58 * sent * (2 + 2), rel=1e-12)


@pytest.mark.parametrize("engine, precision, dispatch", [
    ("ideal", "nvfp4", 2.0),  # DeepEP's rule (a profile naming no scheme): FP8 only where the GEMMs run FP8
    ("ideal", "fp8-block", 1 + 4 / 128),
    ("sglang", "nvfp4", 2.0),  # SGLang's default attention-DP gather: BF16 hidden states
    ("trtllm-pytorch", "nvfp4", 0.5 + 1 / 16),  # TensorRT-LLM's post-quant dispatch: FP4 + an FP8 scale per 16
    ("trtllm-pytorch", "fp8-block", 2.0),  # TensorRT-LLM: block-scale FP8 tokens sent in BF16, quantized on receipt
    ("sglang", "fp8-block", 2.0),
    ("vllm", "fp8-block", 2.0),  # vLLM's default naive / all-gather + reduce-scatter backends: BF16
])
def test_each_engine_dispatches_in_the_dtype_its_moe_layer_sends(engine, precision, dispatch):
    """The same tokens x top-k x hidden x (ep-1)/ep copies on B200 whatever the engine (at EP = attention DP = 8 with
    top-8 the gather's volume too); the bytes each copy's dispatch carries are the engine's for the scheme
    (EngineProfile.moe_dispatch_bytes), its combine BF16."""
    m = load_model(DEEPSEEK)
    cm = CostModel(m, load_hardware("b200"), load_quant(precision), load_engine(engine), tp=8,
                   layout=parallel_layout(m, 8, ep=8, attention_dp=8))
    ops = _ops(cm, BatchShape.uniform(256, 1, 1024))
    op = ops.get("moe_all_to_all") or ops["moe_gather"]
    assert op.bytes == pytest.approx(58 * 256 / 8 * 8 * 7168 * 7 / 8 * (dispatch + 2), rel=1e-12)


def test_a_dispatch_dtype_for_an_unknown_scheme_is_refused_by_name():
    from pydantic import ValidationError

    from phasewise.specs.hardware import EngineProfile

    with pytest.raises(ValidationError, match="moe_dispatch_bytes: 'nvfp5' is not a quantization scheme"):
        EngineProfile(iteration_overhead_s=0, per_sequence_overhead_s=0, moe_dispatch_bytes={"nvfp5": 0.5})
    with pytest.raises(ValidationError, match=r"moe_dispatch_bytes.nvfp4 must be in \(0, 4\]"):
        EngineProfile(iteration_overhead_s=0, per_sequence_overhead_s=0, moe_dispatch_bytes={"nvfp4": 0})


def test_an_expert_split_by_moe_tp_receives_each_copy_on_every_gpu_of_its_group():
    """EP4 x moe-TP2: each (token, expert) copy goes to both GPUs of the expert's group, the partner in this GPU's
    own group included: T k (moe_tp - 1/ep) copies leave a GPU, 1.75 T k against EP8's 0.875 T k (it was 0.75 T k,
    fewer bytes than EP8 for a split that must send more)."""
    m = load_model(DEEPSEEK)
    batch, shape = 256, BatchShape.uniform(256, 1, 1024)
    ep8 = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8)), shape)["moe_all_to_all"]
    ep4 = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=4, attention_dp=8)), shape)["moe_all_to_all"]
    per_copy = 58 * 7168 * (2 + 2)
    assert ep4.bytes == pytest.approx(batch / 8 * 8 * (2 - 1 / 4) * per_copy, rel=1e-12)
    assert ep4.bytes == pytest.approx(2 * ep8.bytes, rel=1e-12) and ep4.time_s > ep8.time_s


# deepseek-ai/DeepEP README, low-latency kernels on H800 with one 400 Gb/s CX7 NIC a GPU: 128 tokens a rank,
# 7,168 hidden, top-8, FP8 dispatch and BF16 combine: EP size -> (dispatch us, combine us)
DEEPEP_LOW_LATENCY_US = {16: (118, 195), 32: (155, 273), 64: (173, 314), 128: (192, 369), 256: (194, 360)}


@pytest.mark.parametrize("ep", sorted(DEEPEP_LOW_LATENCY_US))
def test_decode_all_to_all_across_nodes_matches_deepeps_low_latency_kernels(ep):
    """Across nodes a decode step sends each (token, expert) copy straight to its GPU: over RDMA to the other
    nodes, over NVLink inside its own. Not fitted: the network time of one layer's dispatch + combine within
    10 % of DeepEP's measured kernels at every EP size (before: one NIC carried every copy, +70 % at EP16)."""
    m = load_model(DEEPSEEK)
    cm = CostModel(m, load_hardware("h800-sxm"), load_quant("fp8-block"), load_engine("ideal"), tp=ep,
                   layout=ParallelLayout(tp=ep, attention_dp=ep, ep=ep))
    seqs = 128 * ep
    decode = BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=seqs, decode_kv_tokens=seqs,
                        logit_tokens=seqs)
    op = _ops(cm, decode)["moe_all_to_all"]
    assert op.memory_s / op.count * 1e6 == pytest.approx(sum(DEEPEP_LOW_LATENCY_US[ep]), rel=0.10)


def test_prefill_all_to_all_across_nodes_sends_a_token_once_per_other_node():
    """DeepEP's normal kernels (extend batches): a token crosses to each other node holding one of its experts
    once, then fans out over NVLink there; RDMA binds. EP16 on two 8-GPU nodes, each holding four of DeepSeek's
    eight expert groups; its grouped top-k (the 4 best groups by the sum of their 2 best scores, then the top 8 of
    their experts) sends 0.983 of the tokens across (perf/group_routing.py; uniform routing would be 1 - (1/2)^8 =
    0.996), each dispatched in FP8 and combined back in BF16."""
    m = load_model(DEEPSEEK)
    hw = load_hardware("h800-sxm")
    engine = load_engine("ideal")
    cm = CostModel(m, hw, load_quant("fp8-block"), engine, tp=16, layout=ParallelLayout(tp=16, attention_dp=16, ep=16))
    tokens = 4096
    op = _ops(cm, BatchShape.uniform(16, tokens, 0))["moe_all_to_all"]
    share = other_ranks_per_token(2, 8, 256, 8, 4)  # the other node's share of the tokens
    assert share == pytest.approx(0.983, abs=0.005)
    crossing = tokens * share * 7168 * (1 + 4 / 128 + 2)
    rate = hw.interconnect.inter_node_bandwidth_bytes_per_s * hw.efficiency.link_efficiency
    assert op.bytes == pytest.approx(58 * crossing, rel=1e-12)
    assert op.memory_s == pytest.approx(58 * (2 * hw.interconnect.inter_node_latency_s + crossing / rate), rel=1e-12)
    # DeepEP README, normal kernels, internode EP16 on H800 (4,096 tokens): 43 GB/s of RDMA traffic; here 40
    assert crossing / (op.memory_s / 58) / 1e9 == pytest.approx(43, rel=0.10)


def test_decode_runs_across_nodes_match_fast_and_prompts_take_the_normal_kernels():
    """Wide EP over two nodes: the closed-form decode line (low-latency kernels) matches fast() step by step; a
    batch with prompt tokens costs the normal kernels, a decode batch of the same size the low-latency ones."""
    from conftest import assert_decode_runs_match_fast

    from phasewise.perf.decode_line import DecodeLine

    m = load_model(DEEPSEEK)
    layout = ParallelLayout(tp=16, attention_dp=16, ep=16)
    sglang = load_engine("sglang")  # its default gather, then DeepEP's all-to-all (--moe-a2a-backend deepep)
    cm = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8-block"), sglang, tp=16, layout=layout)
    assert_decode_runs_match_fast(cm, DecodeLine, (16, 256), (100, 4000), 50, (0, 49))
    deepep = sglang.model_copy(update={"moe_dispatch": "all_to_all", "moe_dispatch_bytes": {}})
    cm = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8-block"), deepep, tp=16, layout=layout)
    assert_decode_runs_match_fast(cm, DecodeLine, (16, 256), (100, 4000), 50, (0, 49))
    seqs = 256
    decode = BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=seqs, decode_kv_tokens=seqs,
                        logit_tokens=seqs)
    prompt = BatchShape.uniform(seqs, 1, 0)  # the same tokens, as prompt tokens
    low_latency, normal = _ops(cm, decode)["moe_all_to_all"], _ops(cm, prompt)["moe_all_to_all"]
    assert normal.bytes < low_latency.bytes / 4  # once per other node against every expert copy


def test_without_attention_dp_expert_parallelism_needs_no_all_to_all():
    cm = _cost(DEEPSEEK, 8, parallel_layout(load_model(DEEPSEEK), 8, ep=8))
    ops = _ops(cm, BatchShape.uniform(64, 1, 1024))
    assert "moe_all_to_all" not in ops and ops["tp_allreduce"].count == 2 * 61


def test_attention_dp_holds_each_latent_once_so_kv_capacity_grows():
    """With attention TP the DeepSeek latent is replicated on all 8 GPUs; with 8 attention ranks each GPU holds
    its own sequences' latents: about 8x the KV tokens, less what the replicated attention weights take."""
    m, hw, fp8 = load_model(DEEPSEEK), load_hardware("h200-sxm"), load_quant("fp8")
    tp_only = memory_fit(m, hw, fp8, 8, 1)
    wide = memory_fit(m, hw, fp8, 8, 1, layout=parallel_layout(m, 8, ep=8, attention_dp=8))
    assert wide.weight_bytes > tp_only.weight_bytes  # attention and shared experts whole on every GPU
    assert 4 * tp_only.kv_capacity_tokens < wide.kv_capacity_tokens < 8 * tp_only.kv_capacity_tokens


def test_expert_rows_on_the_most_loaded_gpu_grow_with_imbalance():
    m = load_model(DEEPSEEK)
    shape = BatchShape.uniform(128, 1, 1024)
    even = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8, moe_imbalance=1.0)), shape)
    skew = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8, moe_imbalance=1.5)), shape)
    assert skew["moe_experts"].flops == pytest.approx(1.5 * even["moe_experts"].flops, rel=1e-9)


def test_default_imbalance_is_uniform_routings_sampling_noise():
    layout = ParallelLayout(tp=8, attention_dp=8, ep=8)
    assert layout.imbalance(2048) == pytest.approx(1 + math.sqrt(2 * 8 * math.log(8) / 2048))
    assert layout.imbalance(10**7) < 1.01 < layout.imbalance(64)
    assert ParallelLayout(tp=8).imbalance(64) == 1.0


def test_attention_dp_spreads_the_batch_over_ranks():
    """A rank runs 1/8 of the sequences with all the heads: 256 sequences over 8 ranks cost one rank what 32
    sequences cost one GPU running attention alone."""
    m = load_model(DEEPSEEK)
    wide = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8)), BatchShape.uniform(256, 1, 4096))
    alone = _ops(_cost(DEEPSEEK, 1, None), BatchShape.uniform(32, 1, 4096))
    for name in ("attention", "qkv_proj", "o_proj"):
        assert wide[name].bytes == pytest.approx(alone[name].bytes, rel=1e-9)
        assert wide[name].flops == pytest.approx(alone[name].flops, rel=1e-9)


def test_an_attention_rank_runs_whole_sequences_and_the_busiest_sets_the_pace():
    """A sequence lives on one attention-DP rank (its KV is there): one 2,048-token prompt costs its rank what
    it costs one GPU alone, not an eighth of it, and 9 decode sequences over 8 ranks put 2 on the busiest.
    Every rank waits for the busiest at the next MoE layer; the experts still see every rank's tokens."""
    m = load_model(DEEPSEEK)
    layout = parallel_layout(m, 8, ep=8, attention_dp=8)
    assert [layout.busiest_rank_share(n) for n in (0, 1, 8, 9, 16)] == [1.0, 1.0, 1 / 8, 2 / 9, 1 / 8]
    wide_cm = _cost(DEEPSEEK, 8, layout)
    one = _ops(wide_cm, BatchShape.uniform(1, 2048, 0))
    alone = _ops(_cost(DEEPSEEK, 1, None), BatchShape.uniform(1, 2048, 0))
    for name in ("attention", "qkv_proj", "o_proj", "elementwise"):
        assert one[name].flops == pytest.approx(alone[name].flops, rel=1e-9)
    eight = _ops(wide_cm, BatchShape.uniform(8, 2048, 0))  # one prompt per rank: the same per-rank work
    assert eight["attention"].flops == pytest.approx(one["attention"].flops, rel=1e-9)
    assert eight["moe_experts"].flops > 7 * one["moe_experts"].flops  # the experts see all eight prompts
    nine = _ops(wide_cm, BatchShape.uniform(9, 1, 4096))
    two = _ops(_cost(DEEPSEEK, 1, None), BatchShape.uniform(2, 1, 4096))
    assert nine["attention"].bytes == pytest.approx(two["attention"].bytes, rel=1e-9)
    shape = BatchShape.from_sequences([(2048, 0)] + [(1, 4096)] * 20)  # fast() follows iteration()
    assert wide_cm.fast(shape)[0] == pytest.approx(wide_cm.iteration(shape).latency_s, rel=1e-12)


def test_each_attention_rank_schedules_its_own_sequences():
    """Each attention-DP rank has a scheduler of its own preparing its own sequences while the others prepare
    theirs: an iteration's per-sequence host work is the busiest rank's (9 decode sequences over 8 ranks: 2; plus a
    prompt on its own rank: 3), not the whole batch's, which at DEP32 x 256 sequences per rank was 82 ms a step."""
    m = load_model(DEEPSEEK)
    engine = load_engine("sglang")
    wide_cm = _cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8))
    tp_cm = _cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8))

    def host_s(seqs: int) -> float:
        return (engine.iteration_overhead_s + engine.per_sequence_overhead_s * seqs) / wide_cm.eff.host_speed

    decode = BatchShape.uniform(9, 1, 4096)
    assert wide_cm.host_s(decode) == pytest.approx(host_s(2), rel=1e-12)
    assert tp_cm.host_s(decode) == pytest.approx(host_s(9), rel=1e-12)  # one scheduler for the whole batch
    mixed = BatchShape.from_sequences([(2048, 0)] + [(1, 4096)] * 9)
    assert wide_cm.host_s(mixed) == pytest.approx(host_s(3), rel=1e-12)
    assert wide_cm.iteration(mixed).host_s == pytest.approx(host_s(3), rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(tp=8, ep=3), r"--ep 3 must divide --tp 8 \(ep x moe-tp = tp.*allowed: 1, 2, 4, 8\)"),
    (dict(tp=1, ep=3), r"--ep 3 must divide --tp 1 .*allowed: 1\)"),  # not a derived '--moe-tp 0'
    (dict(tp=4, moe_tp=3), r"--moe-tp 3 must divide --tp 4 .*allowed: 1, 2, 4\)"),
    (dict(tp=8, ep=2, moe_tp=2), "--ep 2 x --moe-tp 2 must equal --tp 8"),
    (dict(tp=6, ep=6), "--ep 6 does not divide the 256 experts"),
    (dict(tp=8, attention_dp=3), "--attention-dp 3 must divide --tp 8"),
    (dict(tp=8, ep=8, moe_imbalance=0.5), r"--moe-imbalance .* from 1 to 8, min\(--ep 8, 256 experts / top-8\)"),
    (dict(tp=8, ep=8, moe_imbalance=9), "--moe-imbalance .* from 1 to 8, min"),  # 1e9: a
    # step of a million seconds, which the twin then streamed at (benchmarks/fuzz_serve.py: no answer in 60 s)
    (dict(tp=-1, ep=2), "--tp must be >= 1 .got -1."),  # before: a divisor list, empty
    (dict(tp=99_999_999_999, ep=2), "--ep 2 must divide --tp 99999999999 .*allowed: 1\\)"),  # hung listing divisors
    (dict(tp=8, moe_imbalance=1.2), "--moe-imbalance applies to expert parallelism: give --ep > 1"),
])
def test_bad_layouts_are_one_line_errors(kwargs, match):
    with pytest.raises(PhasewiseError, match=match) as err:
        parallel_layout(load_model(DEEPSEEK), **kwargs)
    assert "\n" not in str(err.value)


def test_the_derived_imbalance_is_at_most_the_expert_parallel_size():
    """Raab and Steger's heavily-loaded formula overshoots with a few rows over two GPUs (1 + sqrt(4 ln 2) = 2.67 at
    ep 2, one assignment): the busiest GPU holds at most every row, ep times the mean."""
    layout = ParallelLayout(tp=2, ep=2)
    assert layout.imbalance(1.0) == 2.0
    assert 1.0 < layout.imbalance(10_000.0) < 1.05
    assert ParallelLayout(tp=64, ep=64).imbalance(1.0) <= 64


def test_expert_parallelism_needs_an_moe_model():
    with pytest.raises(PhasewiseError, match="apply to mixture-of-experts models"):
        parallel_layout(load_model("meta-llama/Llama-3.1-8B"), 8, ep=8)


def test_simulate_runs_wide_ep_collocated_and_per_role_disaggregated():
    common = dict(model=DEEPSEEK, hardware="h200-sxm", tp=8, precision="fp8", rate=4, requests=60, isl=1024,
                  osl=64, engine="sglang")
    wide = run(**common, ep=8, attention_dp=8).summary()
    assert wide["completed"] == 60
    disagg = run(**common, arch="disagg", prefill_ep=8, decode_ep=8, decode_attention_dp=8).summary()
    assert disagg["completed"] == 60


def test_per_role_layout_flags_need_disaggregation(run_cli):
    code, out, err = run_cli("simulate", "--model", DEEPSEEK, "--hardware", "h200-sxm", "--tp", "8",
                             "--precision", "fp8", "--decode-ep", "8", "--requests", "5")
    assert code == 2
    assert "--decode-ep needs --arch disagg" in err and len(err.strip().splitlines()) == 1


def test_planner_enumerates_moe_layouts_only_for_moe_models():
    opts = PlanOptions(tp_options=(8,), precisions=("fp8",), chunk_sizes=(), ratios=((1, 1),))
    moe, _ = enumerate_strategies("deepseek-ai/DeepSeek-R1", "h200-sxm", 16, opts)
    names = " | ".join(s.name for s in moe)
    assert "DP8EP8" in names and " EP8 " in names and "1P(TP8 EP8) 1D(TP8 DP8EP8)" in names
    dense, _ = enumerate_strategies("meta-llama/Llama-3.1-8B", "h200-sxm", 16, opts)
    assert not any("EP" in s.name for s in dense)
    # the batch cap (256) is vLLM's --max-num-seqs as vLLM reads it: each data-parallel rank's (tests/
    # test_moe_planning.py); an instance of 8 ranks holds 8 x 256
    groups = {s.name: s.deployment["instances"] for s in moe}
    assert next(g for n, g in groups.items() if n.startswith("2x TP8 DP8EP8"))[0]["max_num_seqs"] == 256
    assert next(g for n, g in groups.items() if n.startswith("2x TP8 EP8"))[0]["max_num_seqs"] == 256


def test_the_capacity_bracket_prefills_a_prompt_on_every_attention_dp_rank():
    """plan's analytic capacity (its bisection bracket and pre-screen) times attention-DP ranks prefilling their own
    prompts side by side, as the simulator runs them: at saturation (600 prompts of 2,048 tokens, 16 out, at once)
    it is within -20 % / +50 % of the simulated throughput. Timing one prompt alone (the other ranks idle) put it at
    a fifth of it (12.3 vs 66.5 req/s collocated, 6.2 vs 39.1 disaggregated), so DeepSeek's attention-DP layouts
    were pruned before they were simulated."""
    from phasewise.plan.goodput import capacity_estimate, workload_spec
    from phasewise.sim import Slo, simulate
    from phasewise.sim.deployment import build_deployment

    opts = PlanOptions(tp_options=(8,), precisions=("fp8",), chunk_sizes=(), ratios=((1, 1),))
    strategies, _ = enumerate_strategies("deepseek-ai/DeepSeek-R1", "h200-sxm", 16, opts)
    work = workload_spec(None, "poisson", 2048, 16, "fixed", "fixed", 0.0, 0.0, 0)
    checked = 0
    for strategy in strategies:
        if not ("DP8EP8 vllm default" in strategy.name or strategy.name.startswith("1P(TP8 DP8EP8)")):
            continue
        summary = simulate(build_deployment(strategy.deployment), work.at_rate(500.0, 600), Slo(1e9, 1e9)).summary()
        simulated_rps = summary["completed"] / summary["duration_s"]
        assert 0.8 * simulated_rps < capacity_estimate(strategy, work) < 1.5 * simulated_rps, strategy.name
        checked += 1
    assert checked == 2


def test_shared_expert_on_a_side_stream_hides_its_launch_gaps_in_graph_replayed_batches():
    """vLLM, SGLang and TensorRT-LLM run DeepSeek's shared expert on a second CUDA stream in graph-replayed decode
    batches up to a token threshold (engines.yaml shared_expert_stream_tokens): its kernels' launch gaps hide
    behind the routed experts; its bytes and FLOPs stay. Eager batches, and larger ones, keep them."""
    m = load_model(DEEPSEEK)
    layout = parallel_layout(m, 8, ep=8)

    def shared(engine: str, shape: BatchShape):
        cm = CostModel(m, load_hardware("h200-sxm"), load_quant("fp8"), load_engine(engine), tp=8, layout=layout)
        return _ops(cm, shape)["moe_shared"]

    decode = BatchShape.uniform(64, 1, 2048)
    assert load_engine("sglang").shared_expert_stream_tokens == 1024
    side, serial = shared("sglang", decode), shared("vllm-2023", decode)
    assert side.launch_s == 0 and serial.launch_s > 0
    assert side.bytes == pytest.approx(serial.bytes) and side.time_s > 0
    assert shared("vllm", BatchShape.uniform(300, 1, 2048)).launch_s > 0  # above vLLM's 256-token threshold
    assert shared("sglang", BatchShape.uniform(1, 512, 0)).launch_s > 0  # an eager prefill


def test_routing_skew_of_the_users_traffic_reaches_every_surface(run_cli):
    """--routing-skew (the busiest 20 % of the experts' share of the routed tokens) replaces the model's: a more
    skewed batch reads fewer experts' weights (estimate), every simulated group carries it (simulate, plan), a YAML
    group may set it; a dense model, an impossible share for the expert count, or --dllm are one-line errors."""
    from phasewise.perf.estimate import estimate
    from phasewise.perf.expert_load import with_routing_skew
    from phasewise.sim.api import deployment_from_flags

    def decode_expert_bytes(skew):
        est = estimate(QWEN_MOE, "h200-sxm", batch=16, precision="fp8", routing_skew=skew)
        return next(op.bytes for op in est.decode.operators if op.name == "moe_experts")

    assert decode_expert_bytes(0.65) < decode_expert_bytes(0.35) < decode_expert_bytes(0.2)
    assert decode_expert_bytes(None) == decode_expert_bytes(0.2)  # no measurement for this model: uniform
    model = load_model(QWEN_MOE)
    assert with_routing_skew(model, None) is model and with_routing_skew(model, 0.2).expert_top20_share is None
    dep = deployment_from_flags(model=QWEN_MOE, hardware="h200-sxm", tp=2, arch="disagg", routing_skew=0.5)
    assert {g.routing_skew for g in dep.instances} == {0.5}
    opts = PlanOptions(tp_options=(2,), precisions=("fp8",), chunk_sizes=(), ratios=((1, 1),), routing_skew=0.5)
    strategies, _ = enumerate_strategies(QWEN_MOE, "h200-sxm", 4, opts)
    assert strategies and all(g["routing_skew"] == 0.5 for s in strategies for g in s.deployment["instances"])
    summary = run(model=QWEN_MOE, hardware="h200-sxm", tp=2, precision="fp8", rate=2, requests=20, isl=512, osl=32,
                  routing_skew=0.5).summary()
    assert summary["completed"] == 20
    for call, message in (
            (lambda: with_routing_skew(load_model("meta-llama/Llama-3.1-8B"), 0.4), "applies to mixture-of-experts"),
            (lambda: with_routing_skew(load_model("mistralai/Mixtral-8x7B-v0.1"), 0.22), "outside what 8 experts"),
            (lambda: with_routing_skew(model, 1.0), r"from 0.2 \(uniform\) to below 1 \(got 1.0\)"),
            (lambda: run(model=QWEN_MOE, hardware="h200-sxm", tp=2, rate=1, requests=2, deployment=None,
                         routing_skew=0.1), "--routing-skew: Input should be greater than or equal to 0.2")):
        with pytest.raises(PhasewiseError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    code, _, err = run_cli("simulate", "--model", "GSAI-ML/LLaDA-8B-Instruct", "--dllm", "odb", "--rate", "1",
                           "--routing-skew", "0.5")
    assert code == 2 and "--routing-skew does not apply with --dllm" in err


def test_estimate_names_the_layout_and_the_ranks_a_small_batch_leaves_idle(run_cli):
    """`estimate` with attention DP: the header names EP and attention DP, and a batch of fewer sequences than ranks
    says it runs on that many ranks, the others idle (its tokens/s a fraction of what the instance does with a
    prompt on every rank)."""
    args = ("estimate", "--model", DEEPSEEK, "--hardware", "h200-sxm", "--tp", "8", "--ep", "8", "--attention-dp",
            "8", "--prompt-len", "4096")
    code, out, _ = run_cli(*args)
    flat = " ".join(out.split())
    assert code == 0 and "(tp=8, pp=1, ep=8, attention_dp=8)" in flat
    assert "Prefill: 1 x 4096 tokens in one iteration on 1 of 8 attention-DP ranks (the others idle" in flat
    assert "Decode step: 1 sequences at" in flat and "every rank a sequence" in flat
    code, out, _ = run_cli(*args, "--batch", "8")
    flat = " ".join(out.split())
    assert code == 0 and "attention-DP ranks" not in flat and "Prefill: 8 x 4096 tokens in one iteration ->" in flat
    code, out, _ = run_cli(*args, "--json")
    got = json.loads(out)
    assert code == 0 and (got["tp"], got["ep"], got["moe_tp"], got["attention_dp"]) == (8, 8, 1, 8)
    # chips side by side: the same header, and the same remark (their tokens/s and per $ are the busy ranks')
    code, out, _ = run_cli(*args[:4], "h200-sxm,b200", *args[5:])
    flat = " ".join(out.split())
    assert code == 0 and "(tp=8, pp=1, ep=8, attention_dp=8, " in flat
    assert "on 1 of 8 attention-DP ranks (the others idle" in flat and "are the busy ranks'" in flat
    code, out, _ = run_cli(*args[:4], "h200-sxm,b200", *args[5:], "--batch", "8")
    assert code == 0 and "attention-DP ranks" not in " ".join(out.split())


def test_both_all_reduces_of_an_attention_dp_layout_reach_the_iteration_time():
    """Attention DP without EP: the attention TP group's all-reduce and the MoE layers' are two operators of one
    name; the iteration (and the stage split the pipeline model reads) counts both."""
    qwen = load_model("Qwen/Qwen3-235B-A22B")
    cm = CostModel(qwen, load_hardware("h200-sxm"), load_quant("fp8"), load_engine("vllm"), tp=8,
                   layout=parallel_layout(qwen, 8, attention_dp=2))
    it = cm.iteration(BatchShape.uniform(16, 1, 2048))
    assert sum(op.name == "tp_allreduce" for op in it.operators) == 2
    assert it.latency_s == pytest.approx(cm.iteration_parts(BatchShape.uniform(16, 1, 2048)).latency_s, rel=1e-9)


@pytest.mark.parametrize("model, engine, ep, attention_dp", [
    (DEEPSEEK, "sglang", 8, 8),
    ("Qwen/Qwen3-235B-A22B", "vllm", None, 2),
])
def test_a_decode_step_under_attention_dp_never_gets_faster_with_one_more_sequence(model, engine, ep, attention_dp):
    """Every attention-DP rank replays the busiest rank's captured graph: a batch that does not split evenly pads
    the lighter ranks too, so the experts see the padded rows (batch 25 over 8 ranks: 8 x 4 = 32, as batch 24)."""
    spec = load_model(model)
    cm = CostModel(spec, load_hardware("h200-sxm"), load_quant("fp8"), load_engine(engine), tp=8,
                   layout=parallel_layout(spec, 8, ep=ep, attention_dp=attention_dp))
    steps = [cm.iteration(BatchShape.uniform(batch, 1, 2048)).latency_s for batch in range(4, 80)]
    assert all(later >= earlier * (1 - 1e-9) for earlier, later in zip(steps, steps[1:]))
    eager, gemm_tokens = cm.graph_launch(BatchShape.uniform(25, 1, 2048))
    assert not eager and gemm_tokens % attention_dp == 0 and gemm_tokens >= 25


def test_the_busiest_gpu_carries_no_more_than_top_k_routing_allows():
    """A token sends at most one row to each expert: a GPU holding E / ep experts takes at most min(k, E / ep) of
    its k rows, so the busiest GPU carries at most min(ep, E / k) x the mean. Mixtral (8 experts, top-2) over 8 GPUs:
    at most 4x, however skewed the routing; a measured skew's Zipf popularity is capped at one row a token (Qwen3's
    0.65 uncapped gave its top expert 1.16), the measured top-20 % share kept."""
    from phasewise.perf.expert_load import with_routing_skew, zipf_popularity

    mixtral = load_model("mistralai/Mixtral-8x7B-v0.1")
    with pytest.raises(PhasewiseError, match=r"from 1 to 4, min\(--ep 8, 8 experts / top-2\)"):
        parallel_layout(mixtral, tp=8, ep=8, moe_imbalance=5)
    skewed = parallel_layout(with_routing_skew(mixtral, 0.9), tp=8, ep=8)
    assert skewed.popularity_ratio <= 4.0 and skewed.imbalance(10.0) <= 4.0
    for experts, top_k, share in ((128, 8, 0.65), (8, 2, 0.9), (256, 8, 0.35)):
        popularity = zipf_popularity(experts, share, top_k)
        assert popularity.max() * top_k <= 1 + 1e-9 and abs(popularity.sum() - 1) < 1e-9
        assert abs(popularity[:round(0.2 * experts)].sum() - share) < 1e-6
        assert all(a >= b for a, b in zip(popularity, popularity[1:]))


def test_the_all_to_all_is_network_bound_like_the_other_collectives():
    m = load_model(DEEPSEEK)
    op = _ops(_cost(DEEPSEEK, 8, parallel_layout(m, 8, ep=8, attention_dp=8)), BatchShape.uniform(64, 1024, 0))
    assert op["moe_all_to_all"].bound == "network" and op["moe_all_to_all"].compute_s == 0.0


def test_the_gather_moves_every_other_ranks_tokens_whatever_the_routing():
    """SGLang's and vLLM's default exchange under attention DP + EP (EngineProfile.moe_dispatch gather): every GPU
    receives the other ranks' tokens (an all-gather, in the dispatch dtype) and sends back their partial outputs (a
    reduce-scatter, BF16), top-k and EP aside. DeepSeek (top-8) at DP8 EP8: the all-to-all's bytes; gpt-oss-120b
    (top-4): twice them; one rank's lone prompt crosses every GPU's link of the ring too. Each a ring over the 8
    GPUs: 2 x 7 latency steps and the bytes at the NVLink rate."""
    shape = BatchShape.uniform(256, 1, 1024)
    tokens = 256 / 8  # each attention rank's
    for model, layers, top_k, hidden in ((DEEPSEEK, 58, 8, 7168), ("openai/gpt-oss-120b", 36, 4, 2880)):
        m = load_model(model)
        layout = parallel_layout(m, 8, ep=8, attention_dp=8)
        gather = _ops(_cost(model, 8, layout, "bf16", dispatch="gather"), shape)
        all_to_all = _ops(_cost(model, 8, layout, "bf16"), shape)["moe_all_to_all"]
        op = gather["moe_gather"]
        assert "moe_all_to_all" not in gather and op.count == layers
        assert op.bytes == pytest.approx(layers * 7 * tokens * hidden * (2 + 2), rel=1e-12)
        assert op.bytes == pytest.approx(all_to_all.bytes * 8 / top_k, rel=1e-12)
    lone = _ops(_cost(DEEPSEEK, 8, parallel_layout(load_model(DEEPSEEK), 8, ep=8, attention_dp=8), "bf16",
                      dispatch="gather"), BatchShape.uniform(1, 2048, 0))["moe_gather"]
    assert lone.bytes == pytest.approx(58 * 2048 * 7 / 8 * 7168 * (2 + 2), rel=1e-12)  # one rank's prompt, every link
    hw = load_hardware("h200-sxm")
    ic, eff = hw.interconnect, hw.efficiency
    one_layer = op.bytes / op.count
    assert op.memory_s / op.count == pytest.approx(
        2 * 7 * ic.intra_node_latency_s + one_layer / (ic.intra_node_bandwidth_bytes_per_s * eff.link_efficiency),
        rel=1e-9)


def test_an_engine_yaml_chooses_the_exchange_and_an_unknown_one_is_refused_by_name(tmp_path):
    """A user's engine file sets `moe_dispatch` (vLLM with VLLM_ALL2ALL_BACKEND=deepep_*: all_to_all); a value the
    cost model does not know is a one-line error naming the field and the three it takes."""
    good, bad = tmp_path / "vllm_deepep.yaml", tmp_path / "bad.yaml"
    good.write_text("engines:\n  vllm-deepep:\n    preset: vllm\n    moe_dispatch: all_to_all\n")
    bad.write_text("engines:\n  vllm-x:\n    preset: vllm\n    moe_dispatch: alltoall\n")
    assert load_engine(str(good)).moe_dispatch == "all_to_all" and load_engine("vllm").moe_dispatch == "gather"
    with pytest.raises(PhasewiseError, match="moe_dispatch: Input should be 'all_to_all', 'gather' or "
                                             "'all_to_all_on_mnnvl'"):
        load_engine(str(bad))


def test_a_gathered_moe_layer_all_reduces_over_its_attention_tp_group():
    """With two GPUs an attention rank (TP8 x DP4, EP8), the reduce-scatter leaves each GPU the partial sum of the
    experts it holds: vLLM's MoE block then all-reduces over the attention TP group, a reduction per MoE layer beside
    the mixers' (61) and the dense MLPs' (3); DeepEP's combine returns whole outputs."""
    m = load_model(DEEPSEEK)
    layout = parallel_layout(m, 8, ep=8, attention_dp=4)
    shape = BatchShape.uniform(64, 1, 1024)
    gathered = _ops(_cost(DEEPSEEK, 8, layout, dispatch="gather"), shape)
    exchanged = _ops(_cost(DEEPSEEK, 8, layout), shape)
    assert gathered["tp_allreduce"].count == 61 + 3 + 58 and exchanged["tp_allreduce"].count == 61 + 3
    assert gathered["tp_allreduce"].bytes == pytest.approx(exchanged["tp_allreduce"].bytes * 122 / 64, rel=1e-12)


@pytest.mark.parametrize("hardware, ep, exchange", [
    ("b200", 8, "moe_gather"),  # an 8-GPU board: no MNNVL, no all-to-all (DeepEP only behind an env variable)
    ("gb200", 8, "moe_gather"),  # EP no larger than top-8: NotEnabled
    ("gb200", 16, "moe_all_to_all"),  # an NVL72 rack, EP 16 > top-8: MNNVL's all-to-all
])
def test_tensorrt_llm_takes_its_all_to_all_only_inside_a_multi_node_nvlink_domain(hardware, ep, exchange):
    """TensorRT-LLM's select_alltoall_method_type (EngineProfile.moe_dispatch all_to_all_on_mnnvl): MNNVL's
    all-to-all where EP > top-k and the GPUs share a multi-node NVLink fabric, else the all-gather /
    reduce-scatter."""
    m = load_model(DEEPSEEK)
    cm = CostModel(m, load_hardware(hardware), load_quant("nvfp4"), load_engine("trtllm-pytorch"), tp=ep,
                   layout=parallel_layout(m, ep, ep=ep, attention_dp=ep))
    ops = _ops(cm, BatchShape.uniform(4 * ep, 1, 1024))
    assert exchange in ops and ({"moe_gather", "moe_all_to_all"} - {exchange}).isdisjoint(ops)


def test_sglang_deepep_knob_dispatches_fp8_where_its_default_gathers_bf16(run_cli):
    """SGLang's --moe-a2a-backend: none (default) gathers the ranks' BF16 hidden states, deepep sends DeepEP's FP8
    all-to-all; the same DeepSeek-R1 DP8EP8 deployment serves 2,048-token prompts sooner with DeepEP, and the launch
    script carries the flag."""
    from phasewise.apps.launch import launch_commands
    from phasewise.sim.deployment import build_deployment

    args = ("simulate", "--model", "deepseek-ai/DeepSeek-R1", "--hardware", "h200-sxm", "--tp", "8", "--ep", "8",
            "--attention-dp", "8", "--engine", "sglang", "--isl", "2048", "--osl", "16", "--concurrency", "64",
            "--requests", "64", "--json")
    ttft = {}
    for backend in ("none", "deepep"):
        code, out, err = run_cli(*args, "--moe-a2a-backend", backend)
        assert code == 0, err
        ttft[backend] = json.loads(out)["ttft_ms"]["mean"]
    assert ttft["deepep"] < 0.97 * ttft["none"], ttft
    group = {"engine": "sglang", "hardware": "h200-sxm", "tp": 8, "ep": 8, "attention_dp": 8,
             "moe_a2a_backend": "deepep"}
    dep = build_deployment({"model": "deepseek-ai/DeepSeek-R1", "instances": [group]})
    argv = launch_commands(dep)[0][0].argv
    assert argv[argv.index("--moe-a2a-backend") + 1] == "deepep"


def test_vllm_all2all_backend_knob_takes_deepep_across_nodes_where_its_default_gathers(run_cli):
    """vLLM's --all2all-backend: allgather_reducescatter (default) gathers every data-parallel rank's BF16 tokens onto
    every GPU, over two H200 nodes' NICs at DP16 EP16; deepep_low_latency sends DeepEP's FP8 all-to-all: sooner first
    tokens and faster steps, and the launch script carries the flag."""
    from phasewise.apps.launch import launch_commands
    from phasewise.sim.deployment import build_deployment

    args = ("simulate", "--model", "deepseek-ai/DeepSeek-R1", "--hardware", "h200-sxm", "--tp", "16", "--ep", "16",
            "--attention-dp", "16", "--isl", "2048", "--osl", "16", "--concurrency", "32", "--requests", "32", "--json")
    runs = {}
    for backend in ("allgather_reducescatter", "deepep_low_latency"):
        code, out, err = run_cli(*args, "--all2all-backend", backend)
        assert code == 0, err
        runs[backend] = json.loads(out)
    gather, deepep = runs["allgather_reducescatter"], runs["deepep_low_latency"]
    assert deepep["ttft_ms"]["mean"] < 0.9 * gather["ttft_ms"]["mean"]
    assert deepep["tpot_ms"]["mean"] < 0.9 * gather["tpot_ms"]["mean"]
    group = {"engine": "vllm", "hardware": "h200-sxm", "tp": 16, "ep": 16, "attention_dp": 16,
             "all2all_backend": "deepep_low_latency"}
    dep = build_deployment({"model": "deepseek-ai/DeepSeek-R1", "instances": [group]})
    argv = launch_commands(dep)[0][0].argv
    assert argv[argv.index("--all2all-backend") + 1] == "deepep_low_latency"


@pytest.mark.parametrize("args, message", [
    (("--tp", "8", "--engine", "sglang", "--moe-a2a-backend", "deepep"),
     "--moe-a2a-backend deepep dispatches tokens between attention-DP ranks' experts: it needs --attention-dp"),
    (("--tp", "8", "--ep", "8", "--attention-dp", "8", "--engine", "sglang", "--moe-a2a-backend", "mooncake"),
     "--moe-a2a-backend must be one of none, deepep (got 'mooncake')"),
    (("--tp", "8", "--ep", "8", "--attention-dp", "8", "--engine", "vllm", "--moe-a2a-backend", "deepep"),
     "--moe-a2a-backend is not a knob of vllm"),
    (("--tp", "8", "--engine", "vllm", "--all2all-backend", "deepep_low_latency"),
     "--all2all-backend deepep_low_latency dispatches tokens between attention-DP ranks' experts: it needs "
     "--attention-dp of 2 or more and --ep (without attention DP vLLM's MoE layers all-reduce"),
    (("--tp", "8", "--ep", "8", "--attention-dp", "8", "--engine", "vllm", "--all2all-backend", "pplx"),
     "--all2all-backend must be one of allgather_reducescatter, deepep_high_throughput, deepep_low_latency "
     "(got 'pplx')"),
    (("--tp", "8", "--ep", "8", "--attention-dp", "8", "--engine", "sglang", "--all2all-backend",
      "deepep_low_latency"), "--all2all-backend is not a knob of sglang"),
])
def test_the_deepep_knob_is_refused_where_it_would_change_nothing(run_cli, args, message):
    code, out, err = run_cli("simulate", "--model", "deepseek-ai/DeepSeek-R1", "--hardware", "h200-sxm", *args,
                             "--requests", "2", "--concurrency", "1")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_deepep_buffers_are_sized_as_deepep_sizes_them_and_held_beside_the_kv_cache():
    """DeepEP's low-latency RDMA buffer (csrc/config.hpp LowLatencyLayout): odd/even send and receive buffers of
    experts x tokens-per-rank messages, a combine message of DeepSeek's 7,168 BF16 channels with 56 bf16x2 min/max
    (14,560 bytes) the larger; its NVLink size hint over 16 ranks: 10 channels x 8 NVLink peers x (7 counters of 4
    bytes + 288 slots of 2 x 7,168 + 8 + 128 x 12 + 128 x 4 bytes). vLLM's deepep_low_latency holds 1 GiB of NVLink
    buffer and the low-latency one for 256 tokens a rank: the KV cache shrinks by exactly that on every GPU, and a
    layout without attention DP (no all-to-all) holds none."""
    from phasewise.perf.deepep_buffers import exchange_buffer_bytes, low_latency_buffer_bytes, nvl_buffer_hint_bytes
    from phasewise.perf.parallel import parallel_layout
    from phasewise.sim.deployment import build_deployment
    from phasewise.sim.simulate import build_group
    from phasewise.specs import load_hardware, load_model
    from phasewise.specs.engines import resolve_engine

    assert low_latency_buffer_bytes(7168, 256, 128) == 4 * 256 * 128 * 14_560
    assert nvl_buffer_hint_bytes(7168, 16) == 10 * 8 * (7 * 4 + 288 * (2 * 7168 + 8 + 128 * 12 + 128 * 4))
    r1, h200 = load_model("deepseek-ai/DeepSeek-R1"), load_hardware("h200-sxm")
    wide = parallel_layout(r1, 16, ep=16, attention_dp=16)
    sglang = resolve_engine("sglang", h200, {"moe_a2a_backend": "deepep"}, attention_dp=16, tp=16)
    assert exchange_buffer_bytes(sglang.profile, r1, wide) == nvl_buffer_hint_bytes(7168, 16) \
        + low_latency_buffer_bytes(7168, 256, 128)
    assert exchange_buffer_bytes(resolve_engine("sglang", h200, attention_dp=16, tp=16).profile, r1, wide) == 0
    capacity = {}
    for backend in ("allgather_reducescatter", "deepep_low_latency", "deepep_high_throughput"):
        group = {"engine": "vllm", "hardware": "h200-sxm", "tp": 16, "ep": 16, "attention_dp": 16,
                 "all2all_backend": backend}
        dep = build_deployment({"model": "deepseek-ai/DeepSeek-R1", "instances": [group]})
        capacity[backend] = build_group(dep, dep.instances[0], 0)[1]
    low_latency = 2**30 + low_latency_buffer_bytes(7168, 256, 256)
    high_throughput = 2 * 2**30  # its NVLink buffer and, across nodes, as much RDMA buffer
    assert capacity["deepep_low_latency"] < capacity["deepep_high_throughput"] < capacity["allgather_reducescatter"]
    lost = {k: capacity["allgather_reducescatter"] - capacity[k]
            for k in ("deepep_low_latency", "deepep_high_throughput")}
    # 16 attention ranks, each losing the buffer's bytes of KV: the ratio of the two losses is the buffers' ratio
    ratio = lost["deepep_low_latency"] / lost["deepep_high_throughput"]
    assert ratio == pytest.approx(low_latency / high_throughput, rel=1e-3)


def test_an_engine_yaml_states_its_deepep_buffers_and_a_bad_one_is_refused_by_name(tmp_path):
    """A user's engine file that runs DeepEP (moe_dispatch: all_to_all) states the buffers it allocates; they are held
    on every GPU of an attention-DP + EP layout, and a negative size is a one-line error naming the field."""
    from phasewise.perf.deepep_buffers import exchange_buffer_bytes, low_latency_buffer_bytes
    from phasewise.perf.parallel import parallel_layout

    good, bad = tmp_path / "deepep.yaml", tmp_path / "bad.yaml"
    good.write_text("engines:\n  vllm-deepep:\n    preset: vllm\n    moe_dispatch: all_to_all\n    deepep_buffers:\n"
                    "      nvl_bytes: 5.0e8\n      low_latency_tokens_per_rank: 64\n")
    bad.write_text("engines:\n  vllm-deepep:\n    preset: vllm\n    deepep_buffers:\n      nvl_bytes: -1\n")
    profile, r1 = load_engine(str(good)), load_model(DEEPSEEK)
    layout = parallel_layout(r1, 8, ep=8, attention_dp=8)
    assert exchange_buffer_bytes(profile, r1, layout) == 5.0e8 + low_latency_buffer_bytes(7168, 256, 64)
    assert exchange_buffer_bytes(profile, r1, parallel_layout(r1, 8, ep=8)) == 0  # no all-to-all without attention DP
    with pytest.raises(PhasewiseError, match="nvl_bytes: Input should be greater than or equal to 0"):
        load_engine(str(bad))


def test_estimate_takes_the_exchange_knobs_as_simulate_does(run_cli):
    """`estimate --all2all-backend` / `--moe-a2a-backend`: the per-operator table shows the exchange the knob chooses
    (DeepEP's all-to-all in place of vLLM's gather) and the memory fit holds DeepEP's buffers; the knob is checked
    as simulate checks it (another engine's, or without attention DP, a one-line error)."""
    from phasewise.perf.deepep_buffers import low_latency_buffer_bytes

    args = ("estimate", "--model", "deepseek-ai/DeepSeek-R1", "--hardware", "h200-sxm", "--tp", "16", "--ep", "16",
            "--attention-dp", "16", "--batch", "64", "--prompt-len", "2048", "--json")
    runs = {}
    for extra in ((), ("--all2all-backend", "deepep_low_latency")):
        code, out, err = run_cli(*args, *extra)
        assert code == 0, err
        runs[extra[-1] if extra else "default"] = json.loads(out)
    default, deepep = runs["default"], runs["deepep_low_latency"]

    def ops(run, phase):
        return {op["name"] for op in run["operators"][phase]}

    assert "moe_gather" in ops(default, "prefill") and "moe_all_to_all" in ops(deepep, "prefill")
    assert deepep["prefill"]["latency_ms"] < default["prefill"]["latency_ms"]
    held = deepep["memory"]["reserved_bytes"] - default["memory"]["reserved_bytes"]
    assert held == pytest.approx(2**30 + low_latency_buffer_bytes(7168, 256, 256))
    for extra, message in ((("--engine", "trtllm", "--all2all-backend", "deepep_low_latency"),
                            "--all2all-backend is not a knob of trtllm"),
                           (("--moe-a2a-backend", "deepep"), "--moe-a2a-backend is not a knob of vllm")):
        code, _, err = run_cli(*args, *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
