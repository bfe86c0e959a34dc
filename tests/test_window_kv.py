"""How an engine holds a windowed stack's KV (perf/window_kv.py kv_window_terms, specs/engine_kv.py window_kv): vLLM per
sequence, SGLang every token on every layer, or (Llama 4, MiMo-V2-Flash) in a window pool of its own at a fixed
ratio."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.perf.window_kv import (
    kv_growth_per_token,
    kv_stored_terms,
    kv_token_equivalents,
    kv_tokens_bound,
    kv_window_terms,
)
from phasewise.specs import load_hardware, load_model
from phasewise.specs.engine_kv import window_kv
from phasewise.specs.engines import resolve_engine

GPT_OSS = "openai/gpt-oss-120b"
GEMMA = "google/gemma-3-27b-it"
MIMO = "XiaomiMiMo/MiMo-V2-Flash"  # a 128-token window on 39 of 48 layers, in SGLang's hybrid SWA pool


def _layout(engine: str, model: str, hardware: str, **knobs) -> tuple[str, float]:
    hw = load_hardware(hardware)
    return window_kv(resolve_engine(engine, hw, knobs), load_model(model), hw)


def test_each_engine_holds_windowed_layers_as_its_source_says():
    assert _layout("vllm", GEMMA, "h100-sxm") == ("layer_groups", 1.0)
    assert _layout("trtllm", GPT_OSS, "b200") == ("per_sequence", 1.0)
    # SGLang: Gemma is not among its hybrid-SWA architectures: one pool, every layer every token
    assert _layout("sglang", GEMMA, "h100-sxm")[0] == "all_tokens"
    # SGLang 0.5.5 turns the pool off for gpt-oss on every GPU (disable_hybrid_swa_memory in its GptOssForCausalLM
    # branch), not only where trtllm_mha is the default (SM100) as later versions do
    assert _layout("sglang", GPT_OSS, "h100-sxm")[0] == "all_tokens"
    assert _layout("sglang", GPT_OSS, "b200")[0] == "all_tokens"
    assert _layout("sglang", GPT_OSS, "gb300")[0] == "all_tokens"
    assert _layout("sglang", "meta-llama/Llama-4-Scout-17B-16E-Instruct", "b200") == ("window_pool", 0.8)
    assert _layout("sglang", MIMO, "h100-sxm") == ("window_pool", 0.8)
    # the knobs
    assert _layout("sglang", MIMO, "h100-sxm", swa_full_tokens_ratio=0.5) == ("window_pool", 0.5)
    assert _layout("sglang", MIMO, "h100-sxm", disable_hybrid_swa_memory=True)[0] == "all_tokens"
    assert _layout("sglang", MIMO, "h100-sxm", disable_hybrid_swa_memory=False) == ("window_pool", 0.8)


def test_sglang_window_pool_holds_as_many_sequences_as_its_own_split_of_the_memory():
    """SGLang's set_num_tokens_hybrid_swa, computed here from its own terms: profiled tokens T0 = M / (F x n_full +
    S x n_swa); full-pool tokens = T0 x (F n_full + S n_swa) / (F n_full + r S n_swa); window-pool tokens = r x that.
    gpt-oss-120b: 18 full and 18 windowed layers, F = S, window 128. A sequence needs its context in the full pool and
    its last 128 tokens in the window pool: the sequences that fit are the fewer of the two pools' counts."""
    m = load_model(GPT_OSS)
    per_layer = 1.0  # bytes per token per layer (any unit)
    n_full = n_swa = 18
    memory = 3_600_000.0 * n_full * per_layer  # our kv_capacity_tokens: memory over the full layers' bytes per token
    capacity = memory / (n_full * per_layer)
    for ratio in (0.8, 0.5, 0.2):
        t0 = memory / (per_layer * n_full + per_layer * n_swa)
        full_pool = t0 * (per_layer * n_full + per_layer * n_swa) / (per_layer * n_full + ratio * per_layer * n_swa)
        window_pool = ratio * full_pool
        terms = kv_window_terms(m, "window_pool", ratio, attention_tp=1)
        for context in (64, 128, 200, 1000, 8193, 100_000):
            sglang_seqs = min(full_pool / context, window_pool / min(context, 128))
            assert capacity / kv_token_equivalents(context, terms) == pytest.approx(sglang_seqs, rel=1e-12)


def test_estimate_shows_each_engines_sequences_at_a_long_context():
    """Gemma-3-27B at 8,192 tokens: vLLM 8,193 + 6 x 1,024 = 14,337 full-layer tokens a sequence (its 52 sliding
    layers in 6 KV cache groups of 10), 14,352 in 16-token blocks, SGLang 6.2 x
    8,193 = 50,797; gpt-oss-120b with SGLang 0.5.5 (its window pool off on every GPU) 2 x 8,193 = 16,386 on an H100
    as on a B200."""
    cases = ((GEMMA, "h100-sxm", "vllm", 14352, "layer_groups"), (GEMMA, "h100-sxm", "sglang", 50797, "all_tokens"),
             (GPT_OSS, "h100-sxm", "sglang", 16386, "all_tokens"), (GPT_OSS, "b200", "sglang", 16386, "all_tokens"),
             (GPT_OSS, "h100-sxm", "vllm", 8336, "layer_groups"))
    for model, hardware, engine, per_sequence, layout in cases:
        mem = estimate(model, hardware, prompt_len=8192, engine=engine).to_dict()["memory"]
        assert (mem["kv_tokens_per_sequence"], mem["window_kv_layout"]) == (per_sequence, layout), (model, engine)
        assert mem["max_batch_at_context"] == mem["kv_capacity_tokens"] // mem["kv_block_tokens"] * mem[
            "kv_block_tokens"] // per_sequence
    dense = estimate("meta-llama/Llama-3.1-8B-Instruct", "h100-sxm", engine="sglang").to_dict()["memory"]
    assert dense["window_kv_layout"] is None


def test_every_layer_windowed_is_held_whole_by_sglang():
    m = load_model("mistralai/Mistral-7B-v0.1")  # a 4,096-token window on every layer
    assert kv_token_equivalents(8193, kv_window_terms(m, attention_tp=1)) == 4096
    assert kv_token_equivalents(8193, kv_window_terms(m, "all_tokens", attention_tp=1)) == 8193


def test_a_kv_transfer_moves_what_the_sequence_holds_not_its_share_of_the_pools():
    m = load_model(GPT_OSS)
    # context on full layers, window on the rest
    assert kv_stored_terms(m, "window_pool", attention_tp=1) == kv_window_terms(m, attention_tp=1)
    assert kv_token_equivalents(8193, kv_stored_terms(m, "all_tokens", attention_tp=1)) == 2 * 8193


@settings(max_examples=200, deadline=None)
@given(contexts=st.lists(st.integers(0, 40_000), min_size=1, max_size=30),
       layout=st.sampled_from(["per_sequence", "all_tokens", "window_pool"]),
       ratio=st.floats(0.05, 1.0), model=st.sampled_from([GPT_OSS, GEMMA, "mistralai/Mistral-7B-v0.1",
                                                          "meta-llama/Llama-4-Scout-17B-16E-Instruct"]))
def test_the_simulators_bounds_hold_for_every_layout(contexts, layout, ratio, model):
    """The admission bound (sum of a set's KV from its summed contexts) and the growth per token (the decode runs'
    safe length) are upper bounds of the exact per-sequence figures, whatever the layout."""
    terms = kv_window_terms(load_model(model), layout, ratio, attention_tp=1)
    exact = kv_token_equivalents(np.array(contexts, dtype=np.float64), terms).sum()
    assert exact <= kv_tokens_bound(float(sum(contexts)), len(contexts), terms) * (1 + 1e-12) + 1e-9
    growth = kv_growth_per_token(terms)
    for context in contexts:
        step = kv_token_equivalents(context + 1, terms) - kv_token_equivalents(context, terms)
        assert step <= growth + 1e-9


@pytest.mark.parametrize("knobs, words", [
    (dict(model=GEMMA, hardware="h100-sxm", swa_full_tokens_ratio=0.5), "would change nothing"),
    (dict(model=GEMMA, hardware="h100-sxm", disable_hybrid_swa_memory=True), "keeps every layer's KV in one pool"),
    (dict(model=GPT_OSS, hardware="b200", swa_full_tokens_ratio=0.5), "gpt_oss keeps every layer's KV in one pool"),
    (dict(model=GPT_OSS, hardware="h100-sxm", swa_full_tokens_ratio=0.5), "gpt_oss keeps every layer's KV in one pool"),
    (dict(model=MIMO, hardware="h100-sxm", swa_full_tokens_ratio=0.5, disable_hybrid_swa_memory=True),
     "--disable-hybrid-swa-memory"),
])
def test_window_pool_knobs_that_would_change_nothing_are_refused(knobs, words):
    from phasewise.sim.api import run

    with pytest.raises(PhasewiseError, match=words):
        run(engine="sglang", rate=1, requests=1, isl=64, osl=4, **knobs)


def test_window_pool_knobs_are_sglangs_and_in_range():
    hw = load_hardware("h100-sxm")
    with pytest.raises(PhasewiseError, match="not a knob of vllm"):
        resolve_engine("vllm", hw, {"swa_full_tokens_ratio": 0.5})
    with pytest.raises(PhasewiseError, match="from 0.01 to 1"):
        resolve_engine("sglang", hw, {"swa_full_tokens_ratio": 0.0})


def test_sglang_serves_fewer_long_sequences_without_its_window_pool():
    """MiMo-V2-Flash on 8 H200s with little KV memory, 60 prompts of 6,000 tokens arriving together: with the pool
    each sequence takes 1 + 0.8 x 39 / 9 = 4.47 full-layer tokens per context token (at TP8 a layer of either kind
    keeps one KV head a GPU), without it 1 + 39 / 9 = 5.33, so the same cache runs fewer at once and takes more decode
    steps; KV conservation checked throughout. (It was gpt-oss-20b, whose pool SGLang 0.5.5 turns off.)"""
    from phasewise.sim.api import run

    stats = {}
    for disable in (False, True):
        result = run(model=MIMO, hardware="h200-sxm", tp=8, engine="sglang", rate=1000, requests=60,
                     isl=6000, osl=64, memory_fraction=0.283, disable_hybrid_swa_memory=disable,
                     check_invariants=True)
        assert result.summary()["completed"] == 60
        stats[disable] = result.instances[0]
    pooled, whole = stats[False], stats[True]
    assert pooled.kv_capacity_blocks == whole.kv_capacity_blocks  # the same memory
    assert pooled.batch_seqs_sum / pooled.iterations > 1.1 * whole.batch_seqs_sum / whole.iterations
    assert whole.decode_iterations > 1.1 * pooled.decode_iterations


def test_sglang_launch_lines_carry_the_window_pool_knobs():
    from phasewise.apps.launch import launch_commands
    from phasewise.apps.launch_args import engine_flags
    from phasewise.sim.deployment import Deployment

    dep = Deployment(model=MIMO, instances=[dict(hardware="h200-sxm", tp=8, engine="sglang",
                                                 swa_full_tokens_ratio=0.6)])
    commands, _, _ = launch_commands(dep)
    assert "--swa-full-tokens-ratio 0.6" in " ".join(" ".join(c.argv) for c in commands)
    published = engine_flags()["sglang"]["flags"]
    assert {a for c in commands for a in c.argv if a.startswith("--")} <= set(published)
    dep = Deployment(model=MIMO, instances=[dict(hardware="h200-sxm", tp=8, engine="sglang",
                                                 disable_hybrid_swa_memory=True)])
    assert "--disable-hybrid-swa-memory" in launch_commands(dep)[0][0].argv


def test_vllm_holds_every_token_where_its_hybrid_kv_cache_manager_is_off():
    """vLLM's hybrid KV cache manager frees windowed layers' out-of-window blocks; it is off for Llama 4's chunked
    local attention (vllm/config/vllm.py, without VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE), with a KV
    connector (every disaggregated role: issue #41830), and for hybrid stacks before the hybrid allocator (0.8.5)."""
    hw = load_hardware("h100-sxm")

    def layout(model: str, engine: str = "vllm", role: str = "collocated") -> str:
        return window_kv(resolve_engine(engine, hw, role=role), load_model(model), hw)[0]

    assert layout(GPT_OSS) == layout(GEMMA) == "layer_groups"
    assert layout(GPT_OSS, role="prefill") == layout(GPT_OSS, role="decode") == "all_tokens"
    assert layout("meta-llama/Llama-4-Scout-17B-16E-Instruct") == "all_tokens"
    assert layout(GPT_OSS, "vllm@0.8.5") == "all_tokens"
    assert layout("mistralai/Mistral-7B-v0.1", "vllm@0.8.5") == "layer_groups"  # every layer windowed: freed
    assert layout(GPT_OSS, "trtllm", role="decode") == "per_sequence"
    # V0's block manager: one block table for every layer (hybrids whole), every-layer windows reuse their blocks
    assert layout(GPT_OSS, "vllm-v0") == layout(GEMMA, "sarathi") == "all_tokens"
    assert layout("mistralai/Mistral-7B-v0.1", "vllm-v0") == "per_sequence"


def test_a_disaggregated_vllm_decode_instance_holds_twice_gpt_oss_kv():
    """gpt-oss-20b, 1P1D on H100s with vLLM: one 4,000-token request's KV on the decode instance takes
    ~4,000 x 2 / 16 = 500 blocks (every layer every token) where a collocated instance takes (4,000 + 128) / 16
    ~ 258."""
    from phasewise.sim.api import run

    disagg = run(model="openai/gpt-oss-20b", hardware="h100-sxm", arch="disagg", prefill_workers=1, decode_workers=1,
                 rate=1, requests=1, isl=4000, osl=2, check_invariants=True)
    decode = next(s for s in disagg.instances if s.role == "decode")
    assert 500 <= decode.kv_peak_blocks <= 501
    alone = run(model="openai/gpt-oss-20b", hardware="h100-sxm", rate=1, requests=1, isl=4000, osl=2,
                check_invariants=True).instances[0]
    assert 258 <= alone.kv_peak_blocks <= 259


def test_estimate_gives_sglangs_two_pool_sizes_as_its_start_up_log_does():
    """MiMo-V2-Flash on 8 H200s with SGLang: full pool = capacity / (1 + 0.8 x 39 / 9) (39 windowed layers per 9
    full, one KV head a GPU in each at TP8), window pool 0.8 of it, and the sequences of 8,193 tokens that fit are
    the full pool's count (the window pool holds 129 each). gpt-oss-120b, once the example, has no window pool on
    SGLang 0.5.5."""
    mem = estimate(MIMO, "h200-sxm", tp=8, prompt_len=8192, engine="sglang").to_dict()["memory"]
    full, window = mem["window_pool_tokens"]
    assert full == int(mem["kv_capacity_tokens"] / (1 + 0.8 * 39 / 9)) and window == int(full * 0.8)
    assert mem["max_batch_at_context"] == full // 8193
    assert estimate(GEMMA, "h100-sxm", engine="sglang").to_dict()["memory"]["window_pool_tokens"] is None
