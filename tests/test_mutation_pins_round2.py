"""Pins for behaviours a second mutation-testing round found unguarded (schedulers, expert load, layer GEMMs,
collectives, strategies): each test below fails under the mutation its docstring names and states the behaviour by a
hand-computed number or an exact rule of the engine's source."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel
from phasewise.perf.expert_load import expected_distinct_experts, expected_row_tiles, with_routing_skew
from phasewise.perf.parallel import parallel_layout
from phasewise.plan.options import PlanOptions
from phasewise.plan.strategies import enumerate_strategies
from phasewise.sim import simulate
from phasewise.sim.api import build, run
from phasewise.sim.deployment import collocated
from phasewise.sim.prompt_queue import PromptQueue
from phasewise.sim.schedulers import sglang as sglang_scheduler
from phasewise.sim.schedulers.sglang import SglangScheduler
from phasewise.sim.schedulers.shortest_prefill import ShortestPrefillFirstScheduler
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.workload.request import Workload

LLAMA = "meta-llama/Llama-3.1-8B"
QWEN_MOE = "Qwen/Qwen3-30B-A3B"  # 128 experts, top-8, hidden 2,048, 48 MoE layers, no measured routing skew
MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"  # 8 experts, top-2, hidden 4,096, expert intermediate 14,336, 32 layers


def _launches(res, since_s: float = -1.0) -> list[tuple[int, int]]:
    """(prefill tokens, decode tokens) of each launch of the first instance from `since_s` on (the timeline's
    launches: start_s, duration_s, utilization, sequences, prefill tokens, decode tokens)."""
    return [(int(p), int(d)) for start, _, _, _, p, d in res.instances[0].timeline if start >= since_s]


# --- sim/schedulers/base.py admit_waiting: a prompt of exactly max_num_tokens, chunking off (item 1) -------------

def test_trtllm_runs_a_prompt_of_exactly_max_num_tokens_only_in_a_step_without_decodes():
    """Item 1 (`need <= token_budget` -> `<`). TensorRT-LLM's MicroBatchScheduler without chunking breaks as soon as
    `batchNumTokens + reqNumTokens > maxNumTokensRuntime`, the requests already generating counted first
    (cpp/tensorrt_llm/batch_manager/microBatchScheduler.cpp): with max_num_tokens 2048, a 2048-token prompt arriving
    while a 16-token request decodes waits until that request has finished (2048 + 1 > 2048), then runs alone; it
    is not refused (it does not exceed max_num_tokens) and both complete. The mutant ran it beside the decode,
    2049 tokens in a 2048-token step."""
    dep = collocated(LLAMA, "h100-sxm", engine="trtllm", max_num_tokens=2048)
    work = Workload(np.array([0.0, 0.001]), np.array([16, 2048]), np.array([6, 2]))
    res = simulate(dep, work, record_timeline=True)
    assert res.summary()["completed"] == 2
    # A's prefill, A's 5 decode steps (one launch of the timeline), B's prefill alone, B's last token
    assert _launches(res) == [(16, 0), (0, 5), (2048, 0), (0, 1)]


# --- sim/schedulers/trtllm.py refusal: equality allowed; one attention-DP rank's budget (items 7, 8) ------------

def test_trtllm_serve_takes_a_prompt_of_exactly_max_num_tokens_and_refuses_one_more():
    """Item 7 (`prompt_tokens > limit` -> `>=`). The LLM API refuses a prompt only when it exceeds max_num_tokens
    ("should not exceed max_num_tokens"; tests/unittest/llmapi/test_llm.py test_max_num_token_check: 101 tokens
    against 100): 2048 tokens at max_num_tokens 2048 are served, 2049 refused."""
    served = run(engine="trtllm", max_num_tokens=2048, isl=2048, osl=4, concurrency=1, requests=2).summary()
    assert served["completed"] == 2 and not served["rejected_by"]
    refused = run(engine="trtllm", max_num_tokens=2048, isl=2049, osl=4, concurrency=1, requests=2).summary()
    assert refused["completed"] == 0 and refused["rejected_by"] == {"beyond_token_budget": 2}


def test_trtllm_refuses_a_prompt_beyond_one_attention_dp_ranks_max_num_tokens():
    """Item 8 (`prefill_rank_tokens or token_budget` -> `token_budget`). With attention DP each rank's executor has
    its own max_num_tokens and the LLM API checks the prompt against that argument: at --attention-dp 2 and
    max_num_tokens 2048 (the instance's budget 4096) a 3000-token prompt is refused, a 2048-token one served."""
    layout = dict(model=QWEN_MOE, engine="trtllm", tp=2, attention_dp=2, ep=2, max_num_tokens=2048, osl=4,
                  concurrency=1, requests=2)
    refused = run(isl=3000, **layout).summary()
    assert refused["completed"] == 0 and refused["rejected_by"] == {"beyond_token_budget": 2}
    assert run(isl=2048, **layout).summary()["completed"] == 2


# --- sim/schedulers/sglang.py next_batch: max_prefill_tokens (items 4, 5, 16) ----------------------------------

def test_sglang_mixed_chunk_takes_the_running_decodes_out_of_max_prefill_tokens():
    """Item 4 (`inputs -= running.n * decode_new_tokens` -> pass). With --enable-mixed-chunk the PrefillAdder starts
    from rem_input_tokens = max_prefill_tokens - running_bs (scheduler.py: mixed_with_decode_tokens). 4 requests
    decoding, 4 prompts of 511 tokens waiting, max_prefill_tokens 2048: 2044 left; 511 -> 1533 -> 1022 -> 511 left,
    and the 4th (511 >= 511 left) waits: 3 x 511 = 1533 prompt tokens beside the 4 decodes. Without the subtraction
    2048 - 3 x 511 = 515 > 511 and all 4 (2044) ran."""
    dep = collocated(LLAMA, "h100-sxm", engine="sglang", enable_mixed_chunk=True, max_prefill_tokens=2048,
                     chunked_prefill_size=8192)
    arrivals = np.array([0.0] * 4 + [0.05] * 4)
    work = Workload(arrivals, np.array([16] * 4 + [511] * 4), np.array([200] * 4 + [2] * 4))
    res = simulate(dep, work, record_timeline=True)
    with_prompts = [launch for launch in _launches(res, 0.05) if launch[0]]
    assert with_prompts[:2] == [(3 * 511, 4), (511, 7)]


def test_sglang_a_continuing_chunk_counts_against_max_prefill_tokens():
    """Item 5 (`input_budget=inputs - (budget - left)` -> `inputs`). add_chunked_req takes the chunk's tokens out of
    rem_input_tokens too (_update_prefill_budget). chunked_prefill_size 2048, max_prefill_tokens 2800; prompts of
    2500 and 2400 at t=0: A's first chunk 2048; then A's last 452 tokens leave 2348 of max_prefill_tokens, and B
    (2400 >= 2348) waits for the next batch: 2048, 452, 2048, 352. Without the chunk counted B's first 1596 tokens
    joined A's 452."""
    dep = collocated(LLAMA, "h100-sxm", engine="sglang", max_prefill_tokens=2800, chunked_prefill_size=2048)
    work = Workload(np.array([0.0, 0.0]), np.array([2500, 2400]), np.array([2, 2]))
    res = simulate(dep, work, record_timeline=True)
    assert [p for p, _ in _launches(res) if p][:4] == [2048, 452, 2048, 352]


def test_sglang_a_prompt_reaching_what_is_left_of_max_prefill_tokens_waits():
    """Item 16 (`need - prefilled >= input_budget` -> `>`). add_one_req returns OTHER when `real_input_tokens >=
    self.rem_input_tokens` and the batch has a request: with max_prefill_tokens 2048, three 1024-token prompts
    waiting run one a batch (after the first, 1024 left: 1024 >= 1024), not two then one."""
    dep = collocated(LLAMA, "h100-sxm", engine="sglang", max_prefill_tokens=2048, chunked_prefill_size=8192)
    # a short request first, so that the three wait together when the next batch forms
    work = Workload(np.array([0.0, 0.001, 0.001, 0.001]), np.array([16, 1024, 1024, 1024]), np.array([2] * 4))
    res = simulate(dep, work, record_timeline=True)
    assert [p for p, _ in _launches(res) if p] == [16, 1024, 1024, 1024]


# --- sim/schedulers/base.py partial_count: a prompt finishing this step is not part-way (item 17) --------------

def test_a_prompt_finishing_in_the_step_leaves_room_for_the_next_prompts_chunk():
    """Item 17 (`prefilled + take < prefill_target` -> `<=`). vLLM V1, max_num_batched_tokens 2048, one partial
    prefill at a time: a request decoding and two 1500-token prompts waiting: the first runs whole (1500 of the
    2047 left), so none is part-way and the second takes the 547 tokens left: 1 + 1500 + 547 = 2048; then its 953.
    The mutant counted the finished prompt as part-way and left 547 tokens of the step unused."""
    dep = collocated(LLAMA, "h100-sxm", engine="vllm", max_num_batched_tokens=2048)
    work = Workload(np.array([0.0, 0.001, 0.001]), np.array([16, 1500, 1500]), np.array([50, 2, 2]))
    res = simulate(dep, work, record_timeline=True)
    with_prompts = [launch for launch in _launches(res) if launch[0]]
    assert with_prompts[:3] == [(16, 0), (1500 + 547, 1), (953, 2)]


# --- sim/schedulers/sglang.py: the new-token ratio after a retraction; the clipped reservation (items 9, 10) ------

def test_sglang_resets_the_new_token_ratio_after_every_retraction(monkeypatch):
    """Item 9 (on_preempt's reset -> pass). After a retraction the ratio goes back to init_new_token_ratio (0.7;
    the modelled simplification of SGLang recomputing it from the remaining requests), having decayed towards its
    floor since the last reset. 40 requests of 500 + 2000 tokens on a small cache retract several times."""
    seen = []
    original = SglangScheduler.on_preempt

    def spy(self, inst):
        before = self.new_token_ratio(inst)
        original(self, inst)
        seen.append((before, self.new_token_ratio(inst)))

    monkeypatch.setattr(SglangScheduler, "on_preempt", spy)
    spec = build(engine="sglang", concurrency=40, requests=40, isl=500, osl=2000, memory_fraction=0.225)
    simulate(spec.deployment, spec.workload, spec.slo)
    assert seen and any(before < 0.7 for before, _ in seen)  # the ratio had decayed before some retraction
    assert all(after == 0.7 for _, after in seen)


def test_sglang_reserves_a_new_prompts_output_clipped_at_4096_tokens():
    """Item 10 (the new prompt's min(..., CLIP_MAX_NEW_TOKENS) dropped). add_one_req reserves prompt +
    min(max_new_tokens, 4096) for the new request as for those admitted before it: 16 requests of 500 + 8000 tokens
    on a 24,902-token cache: the first batch takes 24,902 // (500 + 4096) = 5 (22,980 tokens); reserving the new
    one's whole 8000 admits only 4 (4 x 500 + 3 x 4096 + 8000 = 22,288; a 5th needs 26,884)."""
    spec = build(engine="sglang", concurrency=16, requests=16, isl=500, osl=8000, memory_fraction=0.23)
    res = simulate(spec.deployment, spec.workload, spec.slo)
    capacity = res.instances[0].kv_capacity_blocks  # SGLang's page is one token
    assert capacity == 24_902 and sglang_scheduler.CLIP_MAX_NEW_TOKENS == 4096
    assert int(np.sum(res.scheduled_s == 0.0)) == capacity // (500 + 4096) == 5


# --- sim/schedulers/sglang.py victim: among equally decoded, the longest prompt (item 15) ----------------------

def test_sglang_retracts_the_longest_prompt_among_the_fewest_decoded():
    """Item 15 (`-prompt` -> `+prompt`). retract_decode sorts by (len(output_ids), -len(origin_input_ids)) in
    reverse and pops the tail: fewest decoded tokens first, then the longest prompt, then the latest added. Four
    running requests: 10 decoded of a 100-token prompt (0), 3 of 100 (1), 3 of 900 (2), 3 of 500 (3): request 2."""
    generated = np.array([10.0, 3.0, 3.0, 3.0])
    running = SimpleNamespace(n=4, reqs=[SimpleNamespace(prompt=p) for p in (100, 100, 900, 500)],
                              admitted=np.array([0, 1, 2, 3]), generated=lambda step, per_step: generated)
    inst = SimpleNamespace(running=running, decode_steps=0, tokens_per_step=1.0)
    assert SglangScheduler.victim(SglangScheduler.__new__(SglangScheduler), inst) == 2


# --- sim/schedulers/shortest_prefill.py order: equal prompts keep arrival order (item 6) -------------------------

def test_shortest_prefill_first_keeps_equal_prompts_in_arrival_order_as_they_arrive():
    """Item 6 (insort_right -> insort_left). The queue in order (a: 100, b: 200); c (100) and d (200) arrive: each
    goes after its equals, a c b d (the new ones newest-first among equals under insort_left: c a d b)."""
    reqs = {name: SimpleNamespace(name=name, prefill_target=n) for name, n in
            (("a", 100), ("b", 200), ("c", 100), ("d", 200))}
    sched = ShortestPrefillFirstScheduler.__new__(ShortestPrefillFirstScheduler)
    sched._head = sched._tail = None
    waiting = PromptQueue()
    waiting.extend([reqs["b"], reqs["a"]])
    sched.order(waiting)
    assert [r.name for r in waiting] == ["a", "b"]
    waiting.extend([reqs["c"], reqs["d"]])  # arrivals since the queue was last in order: the incremental path
    sched.order(waiting)
    assert [r.name for r in waiting] == ["a", "c", "b", "d"]
    assert waiting.tokens == 600


# --- perf/expert_load.py: validation at the model's top-k; top-k inclusion (items 11, 18) -----------------------

def test_routing_skew_is_validated_at_the_models_top_k():
    """Item 11 (validated with top-1). Mixtral's 8 experts with top-2 routing: no expert takes more than half a
    token's rows, so the top 20 % (2 experts) hold at most 0.979 of them: --routing-skew 0.99 is refused in one line
    naming that range (at top-1 it passed here and failed later with a traceback)."""
    with pytest.raises(PhasewiseError, match=r"--routing-skew: .* 8 experts with top-2 routing allow "
                                             r"\(0\.250 \.\. 0\.979\)"):
        with_routing_skew(load_model(MIXTRAL), 0.99)
    assert with_routing_skew(load_model(MIXTRAL), 0.97).expert_top20_share == 0.97


def test_one_token_under_skewed_routing_touches_exactly_top_k_experts():
    """Item 18 (_inclusion from the uncapped popularity). A token picks k distinct experts, so the inclusion
    probabilities sum to k: one token touches exactly 8 of Qwen3-235B's 128 experts at its measured skew 0.65 and
    runs 8 row tiles (the uncapped popularity gave its top expert 1.16 rows a token, clipped to 1: 7.84)."""
    assert load_model("Qwen/Qwen3-235B-A22B").expert_top20_share == 0.65
    assert expected_distinct_experts(128, 8, 1, 0.65) == pytest.approx(8.0, rel=1e-12)
    assert expected_row_tiles(128, 8, 1, 16, 0.65) == pytest.approx(8.0, rel=1e-12)


# --- perf/layer_gemms.py: an EP GPU's row tiles; the combine's bytes (items 2, 19) -------------------------------

def _moe_experts(cm: CostModel, shape: BatchShape):
    return {op.name: op for op in cm.iteration(shape).operators}["moe_experts"]


def test_a_quantized_grouped_gemm_at_ep_8_pays_an_eighth_of_the_row_tiles():
    """Item 2 (row_tiles without `share *`). W4A16 expands each expert's weights once per row tile on CUDA cores;
    at EP 8 (even load: --moe-imbalance 1) a GPU holds 1/8 of the experts and their rows, so it expands 1/8 of the
    tiles, and its moe_experts compute is exactly 1/8 of one GPU holding them all (same rows per expert, same
    efficiency). The mutant charged every expert's tiles to each EP GPU."""
    m, hw, quant, engine = load_model(QWEN_MOE), load_hardware("h200-sxm"), load_quant("w4a16"), load_engine("vllm")
    assert quant.dequant_ops_per_weight > 0
    shape = BatchShape.uniform(4, 2048, 0)
    one = _moe_experts(CostModel(m, hw, quant, engine, tp=1), shape)
    ep8 = _moe_experts(CostModel(m, hw, quant, engine, tp=8, layout=parallel_layout(m, 8, ep=8, moe_imbalance=1.0)),
                       shape)
    assert ep8.compute_s == pytest.approx(one.compute_s / 8, rel=1e-12)


def test_the_moe_combine_reads_every_expert_output_and_writes_one_hidden_state_a_token():
    """Item 19 (`(assignments + T)` -> `assignments`). Mixtral in BF16 on one GPU, 1024 prompt tokens, top-2: all 8
    experts hit; per layer the weights 8 x (4096 x 2 x 14336 + 14336 x 4096) x 2 bytes, the up GEMM's rows 2048 x
    (4096 + 28672) x 2, the down GEMM's 2048 x (14336 + 4096) x 2, and the combine (2048 expert outputs read + 1024
    hidden states written) x 4096 x 2; 32 layers."""
    cm = CostModel(load_model(MIXTRAL), load_hardware("h200-sxm"), load_quant("bf16"), load_engine("vllm"), tp=1)
    op = _moe_experts(cm, BatchShape.uniform(1, 1024, 0))
    h, i, tokens, rows = 4096, 14336, 1024, 2048
    per_layer = (8 * (h * 2 * i + i * h) * 2 + rows * (h + 2 * i) * 2 + rows * (i + h) * 2
                 + (rows + tokens) * h * 2)
    assert op.count == 32
    assert op.bytes == pytest.approx(32 * per_layer, rel=1e-12)


# --- perf/collectives.py _all_to_all: moe_tp > 1 in an extend batch; two latencies (items 3, 14) ---------------

def _all_to_all(layout_kw: dict, shape: BatchShape):
    m, hw, engine = load_model(QWEN_MOE), load_hardware("h200-sxm"), load_engine("ideal")
    assert engine.moe_dispatch == "all_to_all" and not engine.moe_dispatch_bytes  # DeepEP's rule
    cm = CostModel(m, hw, load_quant("fp8"), engine, tp=8, layout=parallel_layout(m, 8, **layout_kw))
    return {op.name: op for op in cm.iteration(shape).operators}["moe_all_to_all"], hw, engine


def test_an_extend_batch_at_moe_tp_2_sends_each_expert_copy_to_both_gpus_of_its_group():
    """Item 3 (`layout.moe_tp == 1 and` dropped). The once-per-rank dispatch of DeepEP's normal kernels applies to
    whole experts (moe_tp 1); at EP 4 x moe-TP 2 each (token, expert) copy reaches both GPUs of its group: a GPU's
    1024 prompt tokens x top-8 x (2 - 1/4) copies, each its 2048-wide hidden state dispatched in FP8 with a scale per
    128 channels and combined in BF16, on each of 48 MoE layers."""
    op, _, _ = _all_to_all(dict(ep=4, moe_tp=2, attention_dp=8), BatchShape.uniform(8, 1024, 0))
    assert op.count == 48
    assert op.bytes == pytest.approx(48 * 1024 * 8 * (2 - 1 / 4) * 2048 * (1 + 4 / 128 + 2), rel=1e-12)


def test_an_intra_node_all_to_all_pays_one_latency_for_the_dispatch_and_one_for_the_combine():
    """Item 14 (`2 * moe_lat` -> `moe_lat`). A decode step at EP 8 = attention DP 8 in one node: 32 sequences a GPU,
    7/8 of their 8 expert copies leave it, 2048 x (1 + 4/128 + 2) bytes each; a layer's exchange takes two NVLink
    latencies (dispatch, combine) plus its bytes at the group's NVLink rate."""
    seqs = 256
    decode = BatchShape(decode_seqs=seqs, decode_tokens=seqs, decode_pairs=seqs, decode_kv_tokens=seqs * 1024,
                        logit_tokens=seqs)
    op, hw, engine = _all_to_all(dict(ep=8, attention_dp=8), decode)
    ic = hw.interconnect
    per_layer_bytes = seqs / 8 * 8 * 7 / 8 * 2048 * (1 + 4 / 128 + 2)
    rate = ic.group_bandwidth(8) * hw.efficiency.link_efficiency * engine.collective_efficiency
    assert op.bytes == pytest.approx(48 * per_layer_bytes, rel=1e-12)
    assert op.memory_s / 48 == pytest.approx(2 * ic.intra_node_latency_s + per_layer_bytes / rate, rel=1e-12)


# --- plan/strategy_enumeration.py: a TP x PP instance's replicas (item 12) -----------------------------------------

def test_a_tp4_pp2_instance_fills_an_8_gpu_budget_once():
    """Item 12 (`gpus // (tp * pp)` -> `gpus // tp`). 8 GPUs hold one TP4 x PP2 instance (8 GPUs), not two."""
    opts = PlanOptions(tp_options=(4,), pp_options=(2,), disaggregated=False)
    strategies, _ = enumerate_strategies("meta-llama/Llama-3.1-8B-Instruct", "h100-sxm", 8, opts)
    assert strategies
    for strategy in strategies:
        assert strategy.name.startswith("1x TP4PP2 ") and strategy.gpus == 8, strategy.name


# --- sim/schedulers/base.py mixed_batch: the prompt's rank under attention DP (item 20) --------------------------

def test_a_prompt_chunk_under_attention_dp_takes_the_least_loaded_ranks_budget():
    """Item 20: vLLM (DPLBAsyncMPClient.get_core_engine_for_request: the lowest waiting x 4 + running) and
    TensorRT-LLM (_balance_requests_across_ranks) put a new prompt on a least-loaded rank, which holds floor(3 / 2)
    = 1 of 3 balanced decodes: at max_num_batched_tokens 1024 a rank, its chunks are 1024 - 1 = 1023 tokens (the
    busiest rank's share, ceil, took 1022)."""
    dep = collocated(QWEN_MOE, "h100-sxm", engine="vllm", tp=2, attention_dp=2, ep=2, max_num_batched_tokens=1024)
    work = Workload(np.array([0.0, 0.0, 0.0, 0.05]), np.array([16, 16, 16, 4000]), np.array([400, 400, 400, 2]))
    res = simulate(dep, work, record_timeline=True)
    assert _launches(res, 0.05)[:4] == [(1023, 3), (1023, 3), (1023, 3), (4000 - 3 * 1023, 3)]


def test_sglang_deepep_beside_a_partial_ep_is_refused_as_sglang_sets_ep_to_tp(run_cli):
    """The reviewer's item 3 command: SGLang with --moe-a2a-backend deepep sets ep_size = tp_size itself
    (srt/server_args.py _handle_a2a_moe), so --ep 4 --moe-tp 2 at TP 8 would not run as asked: one line, in
    estimate and in a deployment alike; --ep 8 runs."""
    layout = ["--model", "Qwen/Qwen3-235B-A22B", "--tp", "8", "--attention-dp", "8", "--engine", "sglang",
              "--moe-a2a-backend", "deepep", "--precision", "fp8"]
    code, out, err = run_cli("estimate", *layout, "--ep", "4", "--moe-tp", "2")
    assert code != 0 and "sets SGLang's expert-parallel size to its TP size" in out + err
    assert "--ep 4 would run as --ep 8" in out + err and "Traceback" not in out + err
    assert run_cli("estimate", *layout, "--ep", "8")[0] == 0
    with pytest.raises(PhasewiseError, match="would run as --ep 2"):
        collocated(QWEN_MOE, "h100-sxm", engine="sglang", tp=2, attention_dp=2, moe_a2a_backend="deepep")
