"""Properties of the cost model over random shapes: monotone in work, the right roof binds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.batch import DECODE_MAX_NEW_TOKENS
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

MODELS = ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "meta-llama/Llama-2-13b-hf", "facebook/opt-13b",
          "mistralai/Mistral-7B-v0.1"]
GPUS = ["a100-sxm-80gb", "h100-sxm", "h100-pcie", "h200-sxm", "b200", "l40s", "a6000"]
ENGINES = ["vllm", "trtllm-0.5", "ideal", "vllm-2023"]

_cache: dict = {}


def cm(model: str, hw: str, precision: str = "bf16", engine: str = "vllm", tp: int = 1) -> CostModel:
    key = (model, hw, precision, engine, tp)
    if key not in _cache:
        _cache[key] = CostModel(load_model(model), load_hardware(hw), load_quant(precision), load_engine(engine), tp)
    return _cache[key]


configs = st.tuples(st.sampled_from(MODELS), st.sampled_from(GPUS), st.sampled_from(["bf16", "w4a16", "int8"]),
                    st.sampled_from(ENGINES), st.sampled_from([1, 2, 4]))


@settings(max_examples=200, deadline=None)
@given(configs, st.integers(1, 64), st.integers(1, 8192), st.integers(0, 8192), st.integers(1, 4096))
def test_time_grows_with_new_tokens(config, batch, new, cached, extra):
    """Within one attention kernel class: a sequence with cached context and at most
    DECODE_MAX_NEW_TOKENS new tokens runs the decode kernel (on CUDA cores for pre-XQA engines), a
    longer one the prefill kernel, and crossing that line may legitimately get faster."""
    if cached and new <= DECODE_MAX_NEW_TOKENS < new + extra:
        extra = DECODE_MAX_NEW_TOKENS - new
        if extra < 1:
            return
    model = cm(*config)
    a = model.iteration(BatchShape.uniform(batch, new, cached)).latency_s
    b = model.iteration(BatchShape.uniform(batch, new + extra, cached)).latency_s
    assert b >= a * (1 - 1e-12)


@settings(max_examples=200, deadline=None)
@given(configs, st.integers(1, 256), st.integers(1, 16), st.integers(1, 32768), st.integers(1, 32768))
def test_time_grows_with_context(config, batch, new, cached, extra):
    """More cached context never makes a decode/verify step cheaper. (cached=0 is a prefill, which
    engines run eagerly rather than from a CUDA graph: a different kernel path, not compared here.)"""
    model = cm(*config)
    a = model.iteration(BatchShape.uniform(batch, new, cached)).latency_s
    b = model.iteration(BatchShape.uniform(batch, new, cached + extra)).latency_s
    assert b >= a * (1 - 1e-12)


@settings(max_examples=100, deadline=None)
@given(configs, st.integers(1, 255), st.integers(1, 64), st.integers(0, 4096))
def test_time_grows_with_batch(config, batch, more, cached):
    model = cm(*config)
    a = model.iteration(BatchShape.uniform(batch, 1, cached)).latency_s
    b = model.iteration(BatchShape.uniform(batch + more, 1, cached)).latency_s
    assert b >= a * (1 - 1e-12)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(MODELS), st.sampled_from(GPUS), st.integers(1, 32), st.integers(128, 8192))
def test_decode_is_memory_bound_on_gpus(model, hw, batch, context):
    """One decode step at moderate batch: the bytes roof binds, not the FLOPs roof (unless the per-kernel
    device gaps outweigh both: a few-billion-active-parameter MoE on a B200)."""
    it = cm(model, hw, engine="ideal").iteration(BatchShape.uniform(batch, 1, context))
    compute = sum(o.compute_s for o in it.operators)
    memory = sum(o.memory_s for o in it.operators)
    launch = sum(o.launch_s for o in it.operators)
    assert memory > compute
    # the iteration's bound adds up each operator's time (launch gaps included) under that operator's own label,
    # dispatch where its launch gaps exceed its roofs, else its roof's. A dispatch-labelled operator takes less than
    # twice its launch and holds less memory time than launch; a memory-labelled one less than twice its memory.
    # So dispatch-labelled time < 2 x launch and memory-labelled time > memory - launch: memory wins below launch =
    # memory / 3; memory-labelled time < 2 x memory and dispatch-labelled time > launch - memory: dispatch wins
    # above launch = 3 x memory (compute is below memory, first assert); in between either label is right
    assert it.bound in ("memory", "dispatch")
    if launch < memory / 3:
        assert it.bound == "memory"
    elif launch > 3 * memory:
        assert it.bound == "dispatch"


DENSE = [m for m in MODELS if not load_model(m).num_experts]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DENSE), st.sampled_from(GPUS), st.integers(2048, 16384))
def test_long_prefill_is_compute_bound_on_gpus(model, hw, prompt):
    it = cm(model, hw, engine="ideal").iteration(BatchShape.uniform(1, prompt, 0))
    assert it.bound == "compute"
    assert it.flops / it.bytes > load_hardware(hw).ridge_flops_per_byte("bf16") / 4


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(GPUS))
def test_moe_prefill_needs_more_tokens_to_become_compute_bound(hw):
    """128 experts x top-8 split a 2k prompt into ~128 rows per expert: still weight-streaming bound;
    at 64k tokens (512 rows per expert) the experts are compute-bound like a dense model."""
    model = cm("Qwen/Qwen3-30B-A3B", hw, engine="ideal")
    experts = {o.name: o for o in model.iteration(BatchShape.uniform(1, 65536, 0)).operators}["moe_experts"]
    assert experts.bound == "compute"
    small = {o.name: o for o in model.iteration(BatchShape.uniform(1, 256, 0)).operators}["moe_experts"]
    assert small.bound == "memory"


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(MODELS), st.integers(1, 8), st.integers(0, 4096))
def test_small_decode_is_dispatch_bound_in_eager_2023_engine(model, batch, context):
    """BestServe's observation: small-batch decode in an eager engine is dispatch-bound."""
    it = cm(model, "h100-sxm", engine="vllm-2023", tp=2).iteration(BatchShape.uniform(batch, 1, context))
    assert it.bound == "dispatch"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2048), st.integers(0, 4096)), min_size=1, max_size=20))
def test_mixed_batch_costs_no_more_than_separate_iterations(seqs):
    """Batching amortizes weight reads: one mixed iteration never costs more than running each alone."""
    model = cm("meta-llama/Llama-3.1-8B", "h100-sxm", engine="ideal")
    together = model.iteration(BatchShape.from_sequences(seqs)).latency_s
    alone = sum(model.iteration(BatchShape.from_sequences([s])).latency_s for s in seqs)
    assert together <= alone * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(configs, st.sampled_from([1, 2]), st.lists(st.tuples(st.integers(1, 4096), st.integers(0, 8192)), min_size=1,
                                                 max_size=12))
def test_fast_path_equals_the_breakdown(config, pp, seqs):
    """CostModel.fast (cached, used by the simulator) returns exactly what iteration() sums to."""
    model, hw, precision, engine, tp = config
    cmodel = CostModel(load_model(model), load_hardware(hw), load_quant(precision), load_engine(engine), tp, pp)
    shape = BatchShape.from_sequences(seqs)
    it = cmodel.iteration(shape)
    for _ in range(2):  # cold and cached
        lat, stage, flops, nbytes = cmodel.fast(shape)
        assert lat == pytest.approx(it.latency_s, rel=1e-12)
        assert stage == pytest.approx(it.stage_s, rel=1e-12)
        assert flops == pytest.approx(it.flops, rel=1e-12)
        assert nbytes == pytest.approx(it.bytes, rel=1e-12)
