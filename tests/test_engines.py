"""Each engine preset's signature behaviour, and the presets' defaults and knob checks."""

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim import simulate
from phasewise.sim.api import run
from phasewise.sim.deployment import collocated
from phasewise.specs import load_hardware
from phasewise.specs.engines import graph_knobs, knob_values, resolve_engine
from phasewise.workload import Workload, load_trace

M = "meta-llama/Llama-3.1-8B"
DECODERS = 32  # requests decoding when the prompts arrive


def _decodes_then_prompts(engine: str):
    """32 long decodes; then 20 long prompts arrive while they decode."""
    arrival = np.concatenate([np.zeros(DECODERS), 0.5 + np.arange(20) * 0.25])
    prompts = np.concatenate([np.full(DECODERS, 512), np.full(20, 4096)])
    outputs = np.concatenate([np.full(DECODERS, 400), np.full(20, 8)])
    alone = simulate(collocated(M, "h100-sxm", engine=engine),
                     Workload(np.zeros(DECODERS), np.full(DECODERS, 512), np.full(DECODERS, 400)))
    mixed = simulate(collocated(M, "h100-sxm", engine=engine), Workload(arrival, prompts, outputs))
    return (np.nanmean(mixed.tpot_s[:DECODERS]) / np.nanmean(alone.tpot_s),
            np.nanmax(mixed.max_tbt_s[:DECODERS]))


def test_sglang_decodes_wait_for_prefills_vllm_v1_mixes_them():
    sglang_rise, sglang_gap = _decodes_then_prompts("sglang")
    vllm_rise, vllm_gap = _decodes_then_prompts("vllm")
    assert sglang_rise > 1.2  # decodes wait while prefill batches run alone
    assert sglang_rise > vllm_rise  # V1 folds the decodes into the prefill's step
    assert sglang_gap > 1.5 * vllm_gap  # SGLang's longest stall: a prefill batch and then a decode step


def test_sglang_prefill_batches_stop_at_max_prefill_tokens():
    """SGLang's PrefillAdder: a prompt that would reach what is left of max_prefill_tokens waits for the next
    prefill batch unless it is the first. 5 prompts of 1,024 tokens at once (the first, read alone, starts a
    batch by itself; the other 4 wait for the next): under the default 16,384 those 4 share one batch, under 2,524
    (1,024 + 1,500, what AIConfigurator writes) two, under 512 one (the first always goes in)."""
    work = Workload(np.zeros(5), np.full(5, 1024), np.full(5, 16))

    def largest_batch(**knobs) -> int:  # the most prompts that got their first token together
        ttft = simulate(collocated(M, "h100-sxm", engine="sglang", **knobs), work).ttft_s
        return int(np.unique(np.round(ttft, 9), return_counts=True)[1].max())

    assert largest_batch() == 4
    assert largest_batch(max_prefill_tokens=2524) == 2
    assert largest_batch(max_prefill_tokens=512) == 1


def test_trtllm_never_preempts_where_vllm_and_sglang_do():
    work = load_trace("azure-conv", 600).scaled_to_rate(10)
    tight = dict(memory_fraction=0.26)
    preempted = {e: int(simulate(collocated(M, "h100-sxm", engine=e, **tight), work,
                                 check_invariants=True).preemptions.sum()) for e in ("vllm", "sglang", "trtllm")}
    assert preempted["vllm"] > 0 and preempted["sglang"] > 0
    assert preempted["trtllm"] == 0


def _distinct_finishes(engine: str) -> int:
    res = run(model=M, engine=engine, concurrency=64, requests=640, isl=2048, osl=128, check_invariants=True)
    return len(np.unique(res.finish_s))


def test_a_burst_spreads_out_under_chunking_and_stays_in_lock_step_without():
    # 10 waves of 64 equal requests released at t=0: without mixing, each wave prefills, decodes and
    # finishes together (one finish time per wave); with chunked, mixed steps the waves dissolve.
    assert _distinct_finishes("vllm-v0") <= 12
    assert _distinct_finishes("sglang") <= 12
    assert _distinct_finishes("vllm") > 5 * 12
    assert _distinct_finishes("trtllm") > 5 * 12


def test_pipeline_parallelism_pipelines():
    """PP=2 runs two micro-batches through the two stages at once, both drawing on the replica's one KV pool,
    twice PP=1's memory: > 1.6x the saturated throughput of PP=1 with the engine's defaults (KV-bound there)."""
    tput = {}
    for pp in (1, 2):
        res = run(model=M, hardware="h100-sxm", pp=pp, engine="vllm", rate=1000, requests=4000, isl=1024,
                  osl=256, check_invariants=True)
        tput[pp] = res.summary()["throughput"]["output_tokens_per_s"]
    assert tput[2] > 1.6 * tput[1]


def test_pipeline_micro_batches_overlap_in_the_stages():
    """At a fixed sequence cap (one over the replica's two micro-batches, which share its seats: about half the
    batch each when both run), two micro-batches still beat one batch: their stages overlap (the gain is below
    2x: each weight read serves one micro-batch's tokens, not the whole batch's)."""
    tput = {}
    for pp in (1, 2):
        res = run(model=M, hardware="h100-sxm", pp=pp, engine="vllm", max_num_seqs=256, rate=1000,
                  requests=3000, isl=1024, osl=256)
        tput[pp] = res.summary()["throughput"]["output_tokens_per_s"]
    assert 1.2 * tput[1] < tput[2] < 2 * tput[1]


def test_pipeline_bubbles_at_low_load():
    """One request at a time cannot fill two stages: PP=2 is no faster per token than PP=1."""
    tpot = {}
    for pp in (1, 2):
        res = run(model=M, hardware="h100-sxm", pp=pp, engine="vllm", concurrency=1, requests=4, isl=512, osl=64)
        tpot[pp] = res.summary()["tpot_ms"]["mean"]
    assert tpot[2] >= 0.95 * tpot[1]


@pytest.mark.parametrize("hardware, engine, budget, seqs", [
    ("h100-sxm", "vllm", 8192, 1024),  # server defaults, GPU >= 70 GiB
    ("a100-sxm-80gb", "vllm", 2048, 256),  # A100 excluded from the large-GPU defaults (vLLM PR #17885)
    ("a100-sxm-80gb", "vllm@0.8.5", 8192, 1024),  # 0.8.5 had no A100 exclusion
    ("l40s", "vllm", 2048, 256),
    ("h100-sxm", "trtllm", 8192, 2048),
])
def test_engine_defaults_by_gpu_and_version(hardware, engine, budget, seqs):
    cfg = resolve_engine(engine, load_hardware(hardware))
    assert (cfg.token_budget, cfg.max_seqs) == (budget, seqs)


def test_sglang_chunk_size_follows_gpu_memory():
    sizes = {hw: resolve_engine("sglang", load_hardware(hw)).prefill_chunk_tokens
             for hw in ("l40s", "h100-sxm", "b200")}
    assert sizes == {"l40s": 4096, "h100-sxm": 8192, "b200": 16384}
    assert resolve_engine("sglang@0.5.2", load_hardware("l40s")).prefill_chunk_tokens == 8192


def test_offline_entry_point_doubles_vllm_budget():
    hw = load_hardware("h100-sxm")
    assert resolve_engine("vllm", hw, entry_point="offline").token_budget == 16384


@pytest.mark.parametrize("engine, knobs, message", [
    ("sglang", {"max_num_seqs": 8}, "--max-num-seqs is not a knob of sglang"),
    ("trtllm", {"chunked_prefill_size": 512}, "--chunked-prefill-size is not a knob of trtllm"),
    ("vllm@0.11", {"enable_chunked_prefill": False}, "forces|turn chunked prefill on"),
    ("vllm", {"max_num_seqs": 512, "max_num_batched_tokens": 256}, "must be >= --max-num-seqs"),
    ("vllm@9.9", {}, "unknown version"),
    ("vlm", {}, "vllm"),
])
def test_bad_engine_knobs_are_one_line_errors(engine, knobs, message):
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine(engine, load_hardware("h100-sxm"), knobs)


def test_knob_beside_deployment_file_is_an_error(tmp_path):
    path = tmp_path / "dep.yaml"
    path.write_text("model: meta-llama/Llama-3.1-8B\ninstances: [{engine: sglang, hardware: h100-sxm}]\n")
    with pytest.raises(PhasewiseError, match="cannot be combined with --deployment"):
        run(deployment=str(path), tp=2, rate=1, requests=4)
    with pytest.raises(PhasewiseError, match="cannot be combined with --deployment"):
        run(deployment=str(path), max_num_seqs=8, rate=1, requests=4)
    assert run(deployment=str(path), rate=1, requests=4).summary()["completed"] == 4


def test_cuda_graphs_pad_in_vllm_and_run_eagerly_between_sizes_in_trtllm():
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_model, load_quant

    hw = load_hardware("h100-sxm")
    model, quant = load_model(M), load_quant("bf16")
    vllm = CostModel(model, hw, quant, resolve_engine("vllm", hw).profile)
    trtllm = CostModel(model, hw, quant, resolve_engine("trtllm", hw).profile)
    decode = lambda seqs: BatchShape.uniform(seqs, 1, 1000)  # noqa: E731
    assert vllm.graph_launch(decode(37)) == (False, 40)  # padded to the next captured size
    assert vllm.graph_launch(decode(600)) == (True, 600)  # above the largest capture size (512)
    mixed = BatchShape.uniform(4, 1, 1000)
    mixed.add(100, 0)
    assert vllm.graph_launch(mixed)[0] is False  # V1's piecewise graphs cover mixed batches by tokens
    assert trtllm.graph_launch(mixed)[0] is True  # TensorRT-LLM: decode-only graphs
    assert trtllm.graph_launch(decode(32)) == (False, 32)
    assert trtllm.graph_launch(decode(40)) == (True, 40)  # not captured, no padding: eager
    assert trtllm.graph_launch(decode(256)) == (True, 256)  # above 128


def test_trtllm_cuda_graph_config_sets_the_captured_batches():
    """cuda_graph_config {max_batch_size, enable_padding}, with the batch sizes TensorRT-LLM's CudaGraphConfig
    generates from them (llm_args.py _generate_cuda_graph_batch_sizes)."""
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_model, load_quant
    from phasewise.specs.engine_defaults import trtllm_graph_sizes

    assert trtllm_graph_sizes(128, False) == (*range(1, 32), 32, 64, 128)  # the default, as the preset has it
    assert trtllm_graph_sizes(1024, True) == (1, 2, 4, *range(8, 129, 8), 256, 512, 1024)
    assert trtllm_graph_sizes(300, False)[-4:] == (64, 128, 256, 300)
    assert trtllm_graph_sizes(20, True) == (1, 2, 4, 8, 16, 20)
    hw = load_hardware("h100-sxm")
    config = resolve_engine("trtllm", hw, {"cuda_graph_max_batch_size": 512, "cuda_graph_padding_enabled": True})
    assert config.profile.cuda_graph_padding and config.profile.cuda_graph_sizes[-1] == 512
    trtllm = CostModel(load_model(M), hw, load_quant("bf16"), config.profile)
    assert trtllm.graph_launch(BatchShape.uniform(40, 1, 1000)) == (False, 40)  # captured
    assert trtllm.graph_launch(BatchShape.uniform(300, 1, 1000)) == (False, 512)  # padded up to 512
    assert trtllm.graph_launch(BatchShape.uniform(600, 1, 1000)) == (True, 600)  # above the largest: eager
    only_max = resolve_engine("trtllm", hw, {"cuda_graph_max_batch_size": 256}).profile
    assert not only_max.cuda_graph_padding and only_max.cuda_graph_sizes[-3:] == (64, 128, 256)
    with pytest.raises(PhasewiseError, match="--cuda-graph-max-batch-size is not a knob of vllm"):
        resolve_engine("vllm", hw, {"cuda_graph_max_batch_size": 256})


def test_sglang_piecewise_cuda_graphs_replay_prefill_batches_with_eager_attention():
    """--enable-piecewise-cuda-graph: a batch with prompt tokens up to --piecewise-cuda-graph-max-tokens replays
    graphs captured at SGLang's token counts (padded up); its attention still launches eagerly between them."""
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_model, load_quant
    from phasewise.specs.engine_defaults import sglang_piecewise_tokens

    sizes = sglang_piecewise_tokens(4096)
    assert sizes[:9] == (4, 8, 12, 16, 20, 24, 28, 32, 48) and sizes[-2:] == (3968, 4096)
    assert sglang_piecewise_tokens(8192)[-3:] == (7680, 7936, 8192)
    hw = load_hardware("h100-sxm")
    model, quant = load_model(M), load_quant("bf16")
    eager = CostModel(model, hw, quant, resolve_engine("sglang", hw).profile)
    piecewise = CostModel(model, hw, quant, resolve_engine("sglang", hw, {"enable_piecewise_cuda_graph": True}).profile)
    prompt = BatchShape.uniform(1, 1000, 0)
    assert eager.graph_launch(prompt) == (True, 1000)
    assert piecewise.graph_launch(prompt) == (False, 1024)  # padded to the next captured size
    assert piecewise.graph_launch(BatchShape.uniform(1, 5000, 0)) == (True, 5000)  # above 4096: eager
    ops = {o.name: o for o in piecewise.iteration(prompt).operators}
    assert ops["attention"].host_overlapped and ops["attention"].dispatch_s > 0
    assert not ops["qkv_proj"].host_overlapped and ops["qkv_proj"].dispatch_s == 0
    short = BatchShape.uniform(1, 64, 0)  # host-bound when eager
    assert piecewise.iteration(short).latency_s < eager.iteration(short).latency_s
    assert piecewise.fast(short)[0] == pytest.approx(piecewise.iteration(short).latency_s, rel=1e-12)
    with pytest.raises(PhasewiseError, match="needs --enable-piecewise-cuda-graph"):
        resolve_engine("sglang", hw, {"piecewise_cuda_graph_max_tokens": 8192})


def test_overlap_scheduling_hides_host_work_behind_the_device():
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_engine, load_model, load_quant

    hw, model, quant = load_hardware("h100-sxm"), load_model(M), load_quant("bf16")
    serial = load_engine("vllm").model_copy(update={"overlap_scheduling": False, "iteration_overhead_s": 0.02})
    overlapped = serial.model_copy(update={"overlap_scheduling": True})
    shape = BatchShape.uniform(64, 1, 2000)
    a, b = CostModel(model, hw, quant, serial), CostModel(model, hw, quant, overlapped)
    host = a.host_s(shape)
    device = a.fast(shape)[0] - host
    assert b.fast(shape)[0] == pytest.approx(max(device, host))
    assert b.iteration(shape).latency_s == pytest.approx(max(device, host))
    series, _ = b.decode_series_linear(shape, np.arange(4.0), 64, 64)
    assert series.min() >= host  # every step of a decode run waits at least for the host work


def test_the_frontend_staggers_requests_sent_together(tmp_path):
    """An engine whose API server takes 5 ms per request: 8 requests sent at t=0 reach the scheduler
    5 ms apart, so the last one's TTFT is at least 8 x 5 ms."""
    from phasewise.specs import load_engine

    profile = load_engine("vllm").model_dump(mode="json", exclude={"name"})
    path = tmp_path / "engine.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"engines": {"slow-frontend": dict(profile, frontend_request_s=0.005)}}))
    work = Workload(np.zeros(8), np.full(8, 16), np.full(8, 4))
    fast = simulate(collocated(M, "h100-sxm"), work)
    slow = simulate(collocated(M, "h100-sxm", engine=str(path)), work, check_invariants=True)
    assert np.nanmax(slow.first_token_s) >= 8 * 0.005
    assert np.nanmax(slow.first_token_s) > np.nanmax(fast.first_token_s) + 0.02


def test_vllm_async_scheduling_follows_the_version_pp_and_speculation():
    hw = load_hardware("h100-sxm")
    overlap = lambda engine, **kw: resolve_engine(engine, hw, **kw).profile.overlap_scheduling  # noqa: E731
    assert overlap("vllm@0.10") is False and overlap("vllm@0.11", knobs={"async_scheduling": True}) is True
    assert overlap("vllm") is True and overlap("vllm", knobs={"async_scheduling": False}) is False
    assert overlap("vllm", pp=2) is False  # 0.14's default is off with PP > 1
    assert overlap("vllm", speculative_draft="mtp") is True  # EAGLE-family drafts keep it (0.14)
    assert overlap("vllm", speculative_draft="meta-llama/Llama-3.2-1B") is False  # a draft model turns it off
    assert overlap("vllm@0.11", speculative_draft="mtp") is False
    assert resolve_engine("vllm", hw).knobs["async_scheduling"] is True  # shown among the knobs in force


@pytest.mark.parametrize("engine, knobs, kwargs, message", [
    ("vllm", {"async_scheduling": True}, {"pp": 2}, "with pp=2 is not modelled"),
    ("vllm@0.11", {"async_scheduling": True}, {"speculative_draft": "mtp"}, "runs with no speculative decoding"),
    ("vllm", {"async_scheduling": True}, {"speculative_draft": "meta-llama/Llama-3.2-1B"}, "EAGLE-family"),
    ("vllm@0.8.5", {"async_scheduling": True}, {}, "0.8.5 has no async scheduling"),
    ("sglang", {"async_scheduling": True}, {}, "--async-scheduling is not a knob of sglang"),
    ("vllm", {"async_scheduling": "yes"}, {}, "--async-scheduling must be true or false"),
])
def test_async_scheduling_where_vllm_refuses_it_is_a_one_line_error(engine, knobs, kwargs, message):
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine(engine, load_hardware("h100-sxm"), knobs, **kwargs)


def test_async_scheduling_hides_the_host_step_behind_the_device():
    """vLLM 0.11 with --async-scheduling: the per-step host work overlaps the device time, so small-batch decode,
    where the host step is a large share, gets faster."""
    common = dict(model=M, hardware="h100-sxm", engine="vllm@0.11", concurrency=2, requests=6, isl=256, osl=64)
    tpot = {flag: run(**common, async_scheduling=flag).summary()["tpot_ms"]["mean"] for flag in (False, True)}
    assert tpot[True] < 0.97 * tpot[False], tpot


@pytest.mark.parametrize("conservativeness, init, floor", [
    (1.0, 0.7, 0.7 * 0.14), (0.5, 0.35, 0.35 * 0.14), (2.0, 1.0, 0.14), (float("inf"), 1.0, 0.14)])
def test_sglang_new_token_ratio_and_its_floor_are_capped_as_the_scheduler_caps_them(conservativeness, init, floor):
    """srt/managers/scheduler.py: init = min(0.7 x conservativeness, 1.0), floor = min(init x 0.14, 1.0): the floor
    from the capped init (it was from the uncapped one: at conservativeness 1e9 a floor of 1e8 admitted nothing, and
    at infinity the twin hung; benchmarks/fuzz_serve.py --base --engine,sglang found both)."""
    config = resolve_engine("sglang", load_hardware("h100-sxm"), {"schedule_conservativeness": conservativeness})
    assert config.new_token_ratio[:2] == pytest.approx((init, floor))


def test_sglang_graphs_stop_at_the_request_pool_and_their_lists_are_bounded():
    """SGLang captures no decode graph above its request pool (max_running_requests), and a --cuda-graph-max-bs or
    --piecewise-cuda-graph-max-tokens whose capture list alone would exhaust memory (10^11: a MemoryError, found by
    benchmarks/fuzz_serve.py) is a one-line error naming its range."""
    hw = load_hardware("h100-sxm")
    assert resolve_engine("sglang", hw, {"max_running_requests": 24}).profile.cuda_graph_sizes[-1] == 24
    assert resolve_engine("sglang", hw, {"cuda_graph_max_bs": 64}).profile.cuda_graph_sizes[-1] == 64
    for knob, flag, high in (("cuda_graph_max_bs", "--cuda-graph-max-bs", "65,536"),
                             ("piecewise_cuda_graph_max_tokens", "--piecewise-cuda-graph-max-tokens", "1,048,576")):
        with pytest.raises(PhasewiseError, match=f"{flag} must be an integer from 1 to {high} "):
            resolve_engine("sglang", hw, {knob: 10**11})


def test_sglang_attention_dp_gives_each_rank_its_share_of_the_chunk():
    """--enable-dp-attention: SGLang gives each DP rank's scheduler chunked_prefill_size // dp prompt tokens and
    scales schedule_conservativeness by 0.3 (srt/server_args.py); --max-prefill-tokens stays each rank's own."""
    hw = load_hardware("b200")
    alone, dp8 = resolve_engine("sglang", hw), resolve_engine("sglang", hw, attention_dp=8)
    assert dp8.prefill_chunk_tokens == alone.prefill_chunk_tokens == 16384
    assert (alone.prefill_rank_tokens, dp8.prefill_rank_tokens) == (None, 2048)
    assert (alone.partial_prefills, dp8.partial_prefills) == (1, 8)
    assert dp8.prefill_input_tokens == 8 * alone.prefill_input_tokens
    assert dp8.new_token_ratio[0] == pytest.approx(0.3 * alone.new_token_ratio[0])
    with pytest.raises(PhasewiseError, match=r"--chunked-prefill-size \(4\) must be >= --attention-dp \(8\)"):
        resolve_engine("sglang", hw, {"chunked_prefill_size": 4}, attention_dp=8)


def test_sglang_attention_dp_prefills_a_long_prompt_in_rank_sized_chunks():
    """DeepSeek-R1 on 8 B200s, attention DP 8: an 8,192-token prompt alone takes four 2,048-token prefill batches on
    its rank (slower than one 8,192-token batch, the chunk raised to 8 x 8,192), while 2,048-token prompts arriving
    together go one per rank into one batch, eight at most (the first, read alone, starts a batch by itself)."""
    # the memory fraction fixed: SGLang's default reserves 1.5 MiB of activations per token of chunk (0.349 at a
    # 65,536-token chunk, where DeepSeek's weights no longer fit)
    layout = dict(engine="sglang", ep=8, attention_dp=8, max_running_requests=64, memory_fraction=0.85)
    dsr1 = "deepseek-ai/DeepSeek-R1"

    def ttft(prompts: int, length: int, **knobs):
        work = Workload(np.zeros(prompts), np.full(prompts, length), np.full(prompts, 4))
        return simulate(collocated(dsr1, "b200", tp=8, **layout, **knobs), work, check_invariants=True).ttft_s

    chunked, whole = ttft(1, 8192)[0], ttft(1, 8192, chunked_prefill_size=8 * 8192)[0]
    assert chunked > 1.1 * whole
    for prompts, batches in ((9, [1, 8]), (10, [1, 8, 1])):
        firsts, counts = np.unique(np.round(ttft(prompts, 2048), 9), return_counts=True)
        assert counts.tolist() == batches


def test_vllm_and_trtllm_caps_are_each_attention_dp_ranks():
    """vLLM's --data-parallel-size runs one engine core, with its own scheduler, per rank, and TensorRT-LLM's
    attention DP reads max_batch_size / max_num_tokens per rank: an instance of 4 ranks holds 4 x the caps, a prompt
    at most one rank's budget a step. SGLang's --max-running-requests and --chunked-prefill-size are the instance's.
    knob_values turns an instance's caps into the flags each engine takes."""
    hw = load_hardware("b200")
    vllm = resolve_engine("vllm", hw, {"max_num_seqs": 64, "max_num_batched_tokens": 4096}, attention_dp=4)
    assert (vllm.max_seqs, vllm.token_budget, vllm.prefill_rank_tokens, vllm.partial_prefills) == (256, 16384, 4096, 4)
    trt = resolve_engine("trtllm", hw, {"max_batch_size": 32, "max_num_tokens": 3000}, attention_dp=8)
    assert (trt.max_seqs, trt.token_budget, trt.prefill_rank_tokens) == (256, 24000, 3000)
    assert resolve_engine("vllm", hw, {"max_num_seqs": 64}).max_seqs == 64
    assert knob_values("vllm", 256, 8192, attention_dp=4) == {"max_num_seqs": 64, "max_num_batched_tokens": 2048}
    assert knob_values("trtllm", 256, 8192, attention_dp=8) == {"max_batch_size": 32, "max_num_tokens": 1024}
    assert knob_values("sglang", 256, 8192, attention_dp=4) == {"max_running_requests": 256,
                                                                "chunked_prefill_size": 8192}
    assert graph_knobs("trtllm", 256, 8)["cuda_graph_max_batch_size"] == 32


def test_vllm_attention_dp_chunks_a_prompt_at_its_ranks_budget():
    """DeepSeek-R1 on 8 B200s, vLLM --data-parallel-size 8 with 2,048 batched tokens per rank: an 8,192-token prompt
    alone is prefilled in four steps on its rank, slower than with 8,192 per rank (one step)."""
    work = Workload(np.zeros(1), np.full(1, 8192), np.full(1, 4))

    def ttft(budget: int) -> float:
        dep = collocated("deepseek-ai/DeepSeek-R1", "b200", tp=8, engine="vllm", ep=8, attention_dp=8,
                         max_num_batched_tokens=budget, max_num_seqs=64)
        return float(simulate(dep, work, check_invariants=True).ttft_s[0])

    assert ttft(2048) > 1.1 * ttft(8192)


def test_sglang_takes_its_own_memory_fraction_and_graph_cap_by_default():
    """Without --memory-fraction SGLang computes mem_fraction_static (srt/server_args.py _handle_gpu_memory_settings):
    (memory - reserve) / memory, reserve (MiB) = 512 + 1.5 x chunk + 2 x cuda_graph_max_bs + 1,024 x tp x pp / 8, at
    least 10 GiB above 60 GiB; vLLM and TensorRT-LLM take 0.9. cuda_graph_max_bs: 256 below TP4, 512 from it on H100."""
    h100, b200 = load_hardware("h100-sxm"), load_hardware("b200")
    mib = h100.memory_capacity_bytes / 2**20
    tp8 = resolve_engine("sglang", h100, tp=8)
    graphs = resolve_engine("sglang", h100, tp=2).knobs["cuda_graph_max_bs"], tp8.knobs["cuda_graph_max_bs"]
    assert graphs == (256, 512)
    by_hand = (mib - (512 + 1.5 * 8192 + 2 * 512 + 1024)) / mib
    assert tp8.memory_fraction == pytest.approx(round(by_hand, 3))
    tp1 = resolve_engine("sglang", h100, tp=1)  # 13,440 MiB of reserve: above the 10 GiB floor
    assert tp1.memory_fraction == pytest.approx(round((mib - (512 + 12288 + 512 + 128)) / mib, 3))
    small = resolve_engine("sglang", h100, {"chunked_prefill_size": 2048}, tp=1)  # reserve under 10 GiB: the floor
    assert small.memory_fraction == pytest.approx(round((mib - 10 * 1024) / mib, 3))
    assert resolve_engine("sglang", b200, tp=8, attention_dp=8).memory_fraction < \
        resolve_engine("sglang", b200, tp=8).memory_fraction  # attention DP reserves graph padding per rank
    assert resolve_engine("sglang", b200, tp=8, speculative_draft="mtp").memory_fraction == pytest.approx(
        resolve_engine("sglang", b200, tp=8).memory_fraction - 2048 / (b200.memory_capacity_bytes / 2**20), abs=1e-3)
    assert resolve_engine("vllm", h100).memory_fraction == resolve_engine("trtllm", h100).memory_fraction == 0.9
    assert tp8.fraction(None) == tp8.memory_fraction and tp8.fraction(0.7) == 0.7


def test_sglang_lowers_its_default_fraction_for_a_vision_encoder():
    """SGLang's adjust_mem_fraction_for_vlm: x 0.95 x (1 - 0.1 x (r - 1)) held to [0.8, 1.05], r = the ViT's layers
    x hidden^2 over 24 x 1024^2; a fraction the user gives is left alone, and vLLM's and TensorRT-LLM's are too."""
    from phasewise.specs import load_model
    from phasewise.specs.engine_defaults import sglang_vision_factor

    h100 = load_hardware("h100-sxm")
    vision = load_model("Qwen/Qwen3-VL-30B-A3B-Instruct").vision  # 27 ViT blocks of 1,152
    ratio = 27 * 1152**2 / (24 * 1024**2)  # 1.42
    assert sglang_vision_factor(27, 1152) == pytest.approx(0.95 * (1 - 0.1 * (ratio - 1)))
    assert sglang_vision_factor(24, 1024) == pytest.approx(0.95)  # ViT-L/14's shape: the base factor
    assert sglang_vision_factor(34, 1408) == pytest.approx(0.95 * (1 - 0.1 * (34 * 1408**2 / (24 * 1024**2) - 1)))
    assert sglang_vision_factor(45, 3200) == pytest.approx(0.95 * 0.8)  # InternViT-6B's shape (r 18): held at 0.8
    assert sglang_vision_factor(6, 512) == pytest.approx(0.95 * 1.05)  # a small ViT: held at 1.05
    text, multimodal = resolve_engine("sglang", h100), resolve_engine("sglang", h100, vision=vision)
    assert multimodal.memory_fraction == pytest.approx(text.memory_fraction * sglang_vision_factor(27, 1152))
    assert multimodal.fraction(0.8) == 0.8
    for engine in ("vllm", "trtllm"):
        assert resolve_engine(engine, h100, vision=vision).memory_fraction == 0.9


def test_a_deployment_that_does_not_fit_at_the_default_fraction_says_how_to_give_it_more():
    with pytest.raises(PhasewiseError, match=r"does not fit in memory.*default memory fraction 0\.8\d+; "
                                             r"--memory-fraction"):
        simulate(collocated("deepseek-ai/DeepSeek-R1", "b200", tp=4, engine="sglang"),
                 Workload(np.zeros(2), np.full(2, 128), np.full(2, 4)))
    fits = simulate(collocated("deepseek-ai/DeepSeek-R1", "b200", tp=4, engine="sglang", memory_fraction=0.95),
                    Workload(np.zeros(2), np.full(2, 128), np.full(2, 4)))
    assert np.isfinite(fits.ttft_s).all()
