"""Engine presets as each version's own code fills its flags (review fixes): vLLM 0.10+ lowering its default
max_num_seqs to a budget given alone, vLLM 0.12+'s budget with chunked prefill off, vLLM 0.8.5's CUDA-graph capture
sizes, SGLang 0.5.2's default mem_fraction_static (before PR #10975), and SGLang under pipeline parallelism."""

import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.api import run
from phasewise.specs import load_hardware
from phasewise.specs.engine_defaults import sglang_memory_fraction_by_memory, vllm_batch_caps
from phasewise.specs.engine_refusals import pipeline_refusal
from phasewise.specs.engines import resolve_engine

H100 = "h100-sxm"


@pytest.mark.parametrize("version", ["0.10", "0.11", "0.12", "0.14"])
def test_vllm_budget_given_alone_lowers_the_default_sequence_cap(version):
    """vLLM 0.10+ (engine/arg_utils.py: max_num_seqs left unset is min(its default, max_num_batched_tokens)): 512
    tokens alone run with 512 sequences; the refusal stays where both flags are given."""
    hw = load_hardware(H100)
    config = resolve_engine(f"vllm@{version}", hw, {"max_num_batched_tokens": 512})
    assert (config.token_budget, config.max_seqs) == (512, 512)
    assert resolve_engine(f"vllm@{version}", hw, {"max_num_batched_tokens": 2048}).max_seqs == 1024  # default kept
    with pytest.raises(PhasewiseError, match=r"--max-num-batched-tokens \(512\) must be >= --max-num-seqs \(1024\)"):
        resolve_engine(f"vllm@{version}", hw, {"max_num_batched_tokens": 512, "max_num_seqs": 1024})


def test_vllm_085_keeps_its_default_sequence_cap_and_refuses_a_smaller_budget():
    """vLLM 0.8.5's _set_default_args_v1 sets max_num_seqs to its default whatever the budget: still refused."""
    with pytest.raises(PhasewiseError, match=r"--max-num-batched-tokens \(512\) must be >= --max-num-seqs \(1024\)"):
        resolve_engine("vllm@0.8.5", load_hardware(H100), {"max_num_batched_tokens": 512})


def test_vllm_budget_alone_runs_end_to_end():
    """The reviewer's run: Qwen3-0.6B, --max-num-batched-tokens 512 alone, 4 requests (an error before)."""
    res = run(model="Qwen/Qwen3-0.6B", hardware=H100, engine="vllm", max_num_batched_tokens=512, requests=4,
              concurrency=2, isl=100, osl=4)
    assert res.summary()["completed"] == 4


@pytest.mark.parametrize("context, budget", [(4096, 8192), (2048, 8192), (40960, 40960)])
def test_vllm_without_chunked_prefill_takes_the_larger_of_context_and_default(context, budget):
    """vLLM 0.12-0.14 (_set_default_max_num_seqs_and_batched_tokens_args): with chunked prefill off a budget left
    unset is max(max_model_len, the default 8,192), then at most max_num_seqs x max_model_len."""
    hw = load_hardware(H100)
    off = {"enable_chunked_prefill": False}
    assert resolve_engine("vllm@0.14", hw, off, max_model_len=context).token_budget == budget
    assert resolve_engine("vllm@0.12", hw, off, max_model_len=context).token_budget == budget
    # at most max_num_seqs x max_model_len: 1 sequence of 4,096 tokens -> 4,096, chunked prefill on or off
    one = resolve_engine("vllm@0.14", hw, {**off, "max_num_seqs": 1}, max_model_len=4096)
    assert one.token_budget == 4096
    assert resolve_engine("vllm@0.14", hw, {"max_num_seqs": 1}, max_model_len=4096).token_budget == 4096
    with pytest.raises(PhasewiseError, match=r"--max-num-batched-tokens \(2048\) is smaller than max_model_len"):
        resolve_engine("vllm@0.14", hw, {**off, "max_num_batched_tokens": 2048}, max_model_len=4096)


def test_vllm_batch_caps_by_rule():
    """The three rules side by side (budget 8,192, 1,024 sequences, a context of 4,096)."""
    assert vllm_batch_caps(None, 512, 1024, True, False, True, 4096) == (512, 1024)
    assert vllm_batch_caps("seqs_within_budget", 512, 1024, True, False, True, 4096) == (512, 512)
    assert vllm_batch_caps("seqs_within_budget", 512, 1024, True, True, True, 4096) == (512, 1024)
    assert vllm_batch_caps("context", 8192, 1024, False, False, False, 40960) == (40960, 1024)
    assert vllm_batch_caps("context", 8192, 2, False, True, True, 1024) == (2048, 2)
    assert vllm_batch_caps("context", 8192, 1024, False, False, False, None) == (8192, 1024)  # context unknown


def test_vllm_085_captures_every_size_up_to_the_budget():
    """vLLM 0.8.5 captures [1, 2, 4] + range(8, 513, 8) filtered by max_num_batched_tokens alone; from 0.10
    (PR #20628) at most min(2 x max_num_seqs, 512)."""
    hw = load_hardware(H100)
    old = resolve_engine("vllm@0.8.5", hw, {"max_num_seqs": 32})
    assert old.profile.cuda_graph_sizes[-1] == 512 and len(old.profile.cuda_graph_sizes) == 67
    small = resolve_engine("vllm@0.8.5", hw, {"max_num_seqs": 32, "max_num_batched_tokens": 256})
    assert small.profile.cuda_graph_sizes[-1] == 256
    assert resolve_engine("vllm@0.10", hw, {"max_num_seqs": 32}).profile.cuda_graph_sizes[-1] == 64


@pytest.mark.parametrize("hardware, tp, fraction", [
    (H100, 1, 0.874), (H100, 2, 0.868), (H100, 8, 0.831), ("b200", 1, 0.821), ("b200", 8, 0.821),
    ("l40s", 1, 0.778),
])
def test_sglang_052_memory_fraction_by_gpu_memory(hardware, tp, fraction):
    """SGLang 0.5.2's __post_init__ (before PR #10975): (memory - reserve) / memory, the reserve 9.5 + tp x pp / 2
    GiB below 90 GiB (H100), 32 GiB above 160 GiB (B200); 0.5.5 keeps the reserve formula."""
    hw = load_hardware(hardware)
    assert resolve_engine("sglang@0.5.2", hw, tp=tp).memory_fraction == pytest.approx(fraction)
    mib = hw.memory_capacity_bytes / 2**20
    assert resolve_engine("sglang@0.5.2", hw, tp=tp, attention_dp=2).memory_fraction == pytest.approx(
        fraction - 4096 / mib, abs=1.5e-3)
    assert sglang_memory_fraction_by_memory(hw.memory_capacity_bytes, tp, 1, 1, "mtp") == pytest.approx(
        fraction - 2048 / mib, abs=1.5e-3)


def test_sglang_055_memory_fraction_unchanged():
    assert resolve_engine("sglang@0.5.5", load_hardware(H100), tp=1).memory_fraction == pytest.approx(0.835)


def test_sglang_052_llama70b_tp2_fits_at_its_own_default():
    """The reviewer's run: Llama-3.1-70B on 2 x H100 under sglang@0.5.2 did not fit at 0.836; at 0.868 it runs."""
    res = run(model="meta-llama/Llama-3.1-70B-Instruct", hardware=H100, tp=2, engine="sglang@0.5.2", requests=4,
              concurrency=2, isl=1000, osl=8)
    assert res.summary()["completed"] == 4


@pytest.mark.parametrize("version", ["0.5.2", "0.5.5"])
def test_sglang_pipeline_parallelism_turns_overlap_off_and_refuses_mixed_chunk_and_speculation(version):
    """SGLang with pp_size > 1: overlap schedule off; check_server_args refuses speculative decoding and
    --enable-mixed-chunk beside it."""
    hw, engine = load_hardware(H100), f"sglang@{version}"
    assert resolve_engine(engine, hw, pp=1).profile.overlap_scheduling
    assert not resolve_engine(engine, hw, pp=2).profile.overlap_scheduling
    with pytest.raises(PhasewiseError, match=r"--enable-mixed-chunk with --pp 2 is not possible on sglang@"):
        resolve_engine(engine, hw, {"enable_mixed_chunk": True}, pp=2)
    with pytest.raises(PhasewiseError, match=r"speculative decoding \(--spec-tokens\) with --pp 2 is not possible"):
        resolve_engine(engine, hw, pp=2, speculative_draft="mtp")
    assert resolve_engine(engine, hw, {"enable_mixed_chunk": True}, pp=1).mixed_batches  # PP 1: runs
    assert resolve_engine("trtllm", hw, pp=2).profile.overlap_scheduling  # other engines: as before


def test_pipeline_refusal_for_planners():
    """The same rule without resolving the engine (a planner prunes PP x speculation on SGLang with it)."""
    assert "speculative decoding (--spec-tokens) with --pp 2" in pipeline_refusal("sglang", 2, speculative=True)
    assert "--enable-mixed-chunk with --pp 4 is not possible on sglang@0.5.2" in pipeline_refusal(
        "sglang@0.5.2", 4, speculative=False, mixed_chunk=True)
    assert pipeline_refusal("sglang", 1, speculative=True) is None
    assert pipeline_refusal("sglang", 2, speculative=False) is None
    assert pipeline_refusal("vllm", 2, speculative=True) is None and pipeline_refusal("trtllm", 2, True) is None


def test_the_planner_prunes_sglang_pipeline_stages_beside_speculation():
    """plan --engine sglang --pp-options 1,2 --spec: the PP 2 speculative layouts are pruned lines (SGLang refuses
    them at start-up), the plan goes on with the others (it stopped with the error before)."""
    from dataclasses import replace

    from phasewise.plan.options import PlanOptions
    from phasewise.plan.strategies import enumerate_strategies

    opts = replace(PlanOptions(), engine="sglang", pp_options=(1, 2), tp_options=(1,), speculative=(False, True),
                   disaggregated=False)
    strategies, pruned = enumerate_strategies("XiaomiMiMo/MiMo-7B-Base", "h100-sxm", 2, opts)
    assert strategies and not any(s.details["pp"] == 2 and s.details["speculative"] for s in strategies)
    assert any(s.details["pp"] == 2 and not s.details["speculative"] for s in strategies)
    assert any("pp=2" in line and "+spec" in line and "--pp 2" in line for line in pruned), pruned
