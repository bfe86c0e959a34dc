"""Engine presets as the real engines read their flags: vLLM's budget with chunked prefill off, SGLang's request
pool, vLLM 0.10's piecewise decode graphs, the partial-prefill flag vLLM V1 refuses, per-rank flags in the budget
check under attention DP, and engine files that refine a preset."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.specs import load_hardware
from phasewise.specs.engines import resolve_engine

H100 = "h100-sxm"


def test_budget_check_under_attention_dp_names_the_flags_as_given():
    """--max-num-batched-tokens 512 beside --max-num-seqs 1024 a rank, 4 ranks: the error names 512 and 1024
    (each rank's, as the flags and vLLM read them), not the instance's 2,048 and 4,096. (Both given: the budget
    alone lowers vLLM 0.10+'s default sequence cap to it, tests/test_engines_review_fixes.py.)"""
    with pytest.raises(PhasewiseError, match=r"--max-num-batched-tokens \(512\) must be >= --max-num-seqs \(1024\)"):
        resolve_engine("vllm", load_hardware(H100), {"max_num_batched_tokens": 512, "max_num_seqs": 1024},
                       attention_dp=4, tp=4)


@pytest.mark.parametrize("version", ["0.8.5", "0.10", "0.11", "0.12", "0.14"])
def test_vllm_v1_refuses_concurrent_partial_prefills(version):
    """vLLM V1 has no concurrent partial prefills (0.14: NotImplementedError 'Concurrent Partial Prefill is not
    supported'; earlier versions fall back to the V0 engine): above 1 the flag is a one-line error, not ignored."""
    with pytest.raises(PhasewiseError, match="--max-num-partial-prefills=2 is not possible on vllm@"):
        resolve_engine(f"vllm@{version}", load_hardware(H100), {"max_num_partial_prefills": 2})
    assert resolve_engine(f"vllm@{version}", load_hardware(H100), {"max_num_partial_prefills": 1}).partial_prefills == 1


def test_vllm_without_chunked_prefill_budgets_the_served_context():
    """vLLM with chunked prefill off sets max_num_batched_tokens to max_model_len (engine/arg_utils.py) and refuses a
    smaller one given (config/scheduler.py verify_max_model_len): Llama-3.1-8B serves 131,072 tokens."""
    from phasewise.sim.deployment import collocated
    from phasewise.sim.simulate import build_group

    def engine(**knobs):
        dep = collocated("meta-llama/Llama-3.1-8B", H100, engine="vllm", **knobs)
        return build_group(dep, dep.instances[0], 0)[3]

    assert engine(enable_chunked_prefill=False).token_budget == 131_072
    assert engine(enable_chunked_prefill=False, max_num_batched_tokens=200_000).token_budget == 200_000
    assert engine().token_budget == 8192  # chunked prefill on: the preset's budget
    with pytest.raises(PhasewiseError, match=r"--max-num-batched-tokens \(8192\) is smaller than max_model_len "
                                             r"\(131072"):
        engine(enable_chunked_prefill=False, max_num_batched_tokens=8192)


@pytest.mark.parametrize("kv_tokens, context, running", [
    (450_000, 131_072, 2048),  # 450,000 / 131,072 x 512 = 1,757: the pool's floor
    (1_000_000, 131_072, 3906),
    (450_000, 8192, 4096),  # the pool's cap
    (3000, 131_072, 1500),  # the KV pool's half is smaller
])
def test_sglang_running_requests_follow_its_request_pool(kv_tokens, context, running):
    """SGLang's max_running_requests unset: min(KV tokens / 2, its req_to_token pool), the pool
    min(max(KV tokens / context x 512, 2048), 4096) (model_runner.py init_memory_pool)."""
    config = resolve_engine("sglang", load_hardware(H100), kv_capacity_tokens=kv_tokens, max_model_len=context)
    assert config.max_seqs == running


def test_sglang_default_running_requests_in_a_simulation():
    """Llama-3.1-8B on an H100: ~450k KV tokens over a 131,072-token context: a pool of 2,048 requests, not 4,096."""
    from phasewise.sim.deployment import collocated
    from phasewise.sim.simulate import build_group

    dep = collocated("meta-llama/Llama-3.1-8B", H100, engine="sglang")
    _, kv_tokens, _, engine = build_group(dep, dep.instances[0], 0)
    assert kv_tokens / 131_072 * 512 < 2048 and engine.max_seqs == 2048


@pytest.mark.parametrize("version, attention_eager", [("0.8.5", True), ("0.10", True), ("0.11", False),
                                                      ("0.12", False), ("0.14", False)])
def test_vllm_piecewise_graphs_launch_decode_attention_eagerly(version, attention_eager):
    """vLLM before 0.11 runs cudagraph_mode PIECEWISE: attention stays outside the captured graphs for decode-only
    batches too, so its kernels are launched from the host every step (0.11 on: FULL_AND_PIECEWISE, full decode
    graphs)."""
    from phasewise.perf.batch import BatchShape
    from phasewise.sim.deployment import collocated
    from phasewise.sim.simulate import build_group

    dep = collocated("meta-llama/Llama-3.1-8B", H100, engine=f"vllm@{version}")
    cost = build_group(dep, dep.instances[0], 0)[0]
    assert cost.engine.cuda_graph_attention_eager is attention_eager
    decode = BatchShape.uniform(8, 1, 1024, True, None)
    assert not cost.graph_launch(decode)[0]  # the batch replays graphs either way
    ops = {op.name: op for op in cost.iteration(decode).operators}
    assert (ops["attention"].dispatch_s > 0) is attention_eager and ("eager_dispatch" in ops) is attention_eager
    assert cost.fast(decode)[0] == pytest.approx(cost.iteration(decode).latency_s)


def _latencies(engine: str):
    import numpy as np

    from phasewise.sim import simulate
    from phasewise.sim.deployment import collocated
    from phasewise.workload import Workload

    count = 60
    result = simulate(collocated("meta-llama/Llama-3.1-8B", H100, engine=engine),
                      Workload(np.arange(count) * 0.1, np.full(count, 700), np.full(count, 150)))
    return list(result.ttft_s), list(result.tpot_s)


@pytest.mark.parametrize("engine", ["vllm", "vllm@0.10", "sglang"])
def test_fit_engine_file_with_the_presets_constants_runs_as_the_preset(tmp_path, engine):
    """fit-engine's file names the preset it refines: with the fitted constants at the preset's own values it runs
    exactly as --engine PRESET (async scheduling, capture sizes, knobs), not as a bare profile."""
    from phasewise.apps.fit_view import write_engine
    from phasewise.specs import load_engine
    from phasewise.specs.engine_presets import preset_entry

    profile = load_engine(preset_entry(engine)["profile"])
    values = {"iteration_overhead_s": profile.iteration_overhead_s, "eager_launch_s": profile.eager_launch_s}
    out = write_engine({"profile": profile, "values": values, "fit_runs": 2, "held_out_runs": 2}, engine,
                       "points.yaml", str(tmp_path / "fit.yaml"))
    assert f"preset: {engine}" in out.read_text()
    assert _latencies(str(out)) == _latencies(engine)


def test_engine_file_that_names_a_preset_refines_it(tmp_path):
    """engines.yaml's `vllm` entry copied with `preset: vllm` runs as --engine vllm; a changed constant changes it."""
    same, slower = tmp_path / "same.yaml", tmp_path / "slower.yaml"
    same.write_text("engines:\n  mine:\n    preset: vllm\n    iteration_overhead_s: 1.0e-3\n")
    slower.write_text("engines:\n  mine:\n    preset: vllm\n    iteration_overhead_s: 2.0e-2\n")
    preset = _latencies("vllm")
    assert _latencies(str(same)) == preset
    assert sum(_latencies(str(slower))[1]) > sum(preset[1])


@pytest.mark.parametrize("body, message", [
    ("preset: vllm\n    cuda_graph_sizes: [1, 2]", "cuda_graph_sizes is set by preset 'vllm'"),
    ("preset: vllm\n    scheduler: vllm", "give preset or scheduler, not both"),
    ("preset: vlm", "preset 'vlm' is not one of vllm"),
])
def test_engine_file_preset_mistakes_are_one_line_errors(tmp_path, body, message):
    path = tmp_path / "eng.yaml"
    path.write_text(f"engines:\n  mine:\n    {body}\n")
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine(str(path), load_hardware(H100))
