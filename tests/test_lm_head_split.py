"""Where the embedding and the LM head live under attention DP (perf/vocab_split.py), by engine: SGLang splits
the head over the whole TP group and runs it on every rank's logit tokens gathered (its LogitsProcessor without
--enable-dp-lm-head), and holds the embedding whole on every GPU (VocabParallelEmbedding(enable_tp=not
is_dp_attention_enabled())); vLLM and TensorRT-LLM hold both on each attention rank. Layouts without attention DP
are untouched."""

from __future__ import annotations

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape, CostModel, memory_fit
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.perf.parallel import parallel_layout
from phasewise.perf.vocab_split import vocab_split
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

DEEPSEEK = "deepseek-ai/DeepSeek-V3"


def _model():
    return load_model(DEEPSEEK)


def _table_bytes() -> float:
    """DeepSeek-V3's embedding (and head) table in BF16: 129,280 x 7,168 x 2 bytes, 1.85 GB."""
    m = _model()
    return m.embedding_params * 2.0


def _weights(engine, tp: int = 8, dp: int = 8) -> float:
    m = _model()
    layout = parallel_layout(m, tp, ep=tp, attention_dp=dp) if dp > 1 else None
    return weight_bytes_per_gpu(m, load_quant("fp8-block"), tp, 1, layout, engine=engine,
                                hardware=load_hardware("h200-sxm"))


def _cost(engine: str, dp: int = 8, tp: int = 8) -> CostModel:
    m = _model()
    return CostModel(m, load_hardware("h200-sxm"), load_quant("fp8-block"), load_engine(engine), tp=tp,
                     layout=parallel_layout(m, tp, ep=tp, attention_dp=dp))


def _op(cm: CostModel, shape: BatchShape, name: str):
    return next(op for op in cm.iteration(shape).operators if op.name == name)


def test_the_profiles_say_where_each_engine_holds_them():
    sglang = load_engine("sglang")
    assert (sglang.lm_head_split, sglang.embedding_split) == ("tp", "replicated")
    for name in ("vllm", "trtllm-pytorch"):
        profile = load_engine(name)
        assert (profile.lm_head_split, profile.embedding_split) == ("attention_tp", "attention_tp")


def test_sglang_at_attention_dp_8_holds_seven_eighths_of_the_head_less_than_vllm():
    """tp 8, attention DP 8 (attention TP 1): vLLM and TensorRT-LLM hold the head whole on every GPU, SGLang 1/8 of
    it; the embedding is whole on every GPU in all three."""
    table = _table_bytes()
    assert _weights("vllm") - _weights("sglang") == pytest.approx(table * 7 / 8, rel=1e-9)
    assert _weights("vllm") == _weights("trtllm-pytorch") == _weights(None)
    assert _weights(load_engine("sglang")) == _weights("sglang")  # the profile or its catalog name


def test_sglang_at_attention_dp_2_holds_the_embedding_whole_and_the_head_over_all_eight():
    """tp 8, attention DP 2 (attention TP 4): vLLM splits both tables over 4 GPUs (1/4 + 1/4), SGLang holds the
    embedding whole and the head over 8 (1 + 1/8); SGLang PR #17403 saves 'dsv3 tp=8 dp=2: 82.82GB -> 81.53GB per
    GPU' by splitting that whole embedding over the 4."""
    table = _table_bytes()
    assert _weights("sglang", dp=2) - _weights("vllm", dp=2) == pytest.approx(table * (1 + 1 / 8 - 2 / 4), rel=1e-9)


def test_without_attention_dp_every_engine_holds_the_same_weights():
    assert _weights("sglang", dp=1) == _weights("vllm", dp=1) == _weights(None, dp=1)


def test_sglang_kv_pool_gains_what_the_head_frees():
    m, hw, quant = _model(), load_hardware("h200-sxm"), load_quant("fp8-block")
    layout = parallel_layout(m, 8, ep=8, attention_dp=8)
    fits = {name: memory_fit(m, hw, quant, 8, 1, memory_fraction=0.85, layout=layout, fraction_of="static",
                             engine=load_engine(name)) for name in ("vllm", "sglang")}
    freed = fits["vllm"].weight_bytes - fits["sglang"].weight_bytes
    assert freed == pytest.approx(_table_bytes() * 7 / 8, rel=1e-9)
    gained = (fits["sglang"].kv_capacity_tokens - fits["vllm"].kv_capacity_tokens) / 8  # tokens per attention rank
    assert gained == pytest.approx(freed / fits["sglang"].kv_bytes_per_token, abs=1)


def test_sglang_lm_head_runs_one_eighth_of_the_vocabulary_on_the_gathered_rows():
    """A lone decoding sequence on one of 8 ranks: SGLang's head GEMM is 1 row x vocab / 8 on every GPU (the rows of
    every rank gathered: here only that one), vLLM's 1 row x the whole vocabulary on that rank's GPU."""
    m = _model()
    shape = BatchShape.uniform(1, 1, 1024)
    assert _op(_cost("sglang"), shape, "lm_head").flops == pytest.approx(2 * m.hidden_size * m.vocab_size / 8)
    assert _op(_cost("vllm"), shape, "lm_head").flops == pytest.approx(2 * m.hidden_size * m.vocab_size)
    # 8 sequences a rank: all 64 rows gathered through each GPU's eighth, the same FLOPs as 8 rows x the whole vocab
    balanced = BatchShape.uniform(64, 1, 1024)
    assert _op(_cost("sglang"), balanced, "lm_head").flops == pytest.approx(
        _op(_cost("vllm"), balanced, "lm_head").flops)


def test_sglang_lm_head_pays_for_all_gathering_the_logits():
    """2,048 decoding sequences (256 a rank): each GPU receives the other 7 GPUs' logits of all 2,048 rows, 7 x 2,048
    x 16,160 x 2 bytes (463 MB), which no NVLink carries faster than its bandwidth; vLLM's head moves none."""
    m, hw = _model(), load_hardware("h200-sxm")
    shape = BatchShape.uniform(2048, 1, 1024)
    logits = 7 * 2048 * m.vocab_size / 8 * 2
    sglang = _op(_cost("sglang"), shape, "lm_head")
    assert sglang.bytes > logits
    assert sglang.time_s > logits / hw.interconnect.group_bandwidth(8)
    assert sglang.time_s > _op(_cost("vllm"), shape, "lm_head").time_s  # the same FLOPs, and the logits to move


def test_sglang_whole_embedding_needs_no_all_reduce():
    """Attention TP 4: vLLM's embedding sums its vocabulary-split lookups over the 4 GPUs, SGLang's whole table
    looks every token up alone: its row reads the rows and writes the hidden states, nothing more."""
    m = _model()
    shape = BatchShape.uniform(8, 1024, 0)
    tokens = 8 * 1024 / 2  # the busiest of the 2 attention ranks
    gather = tokens * m.hidden_size * (2 + 2)
    assert _op(_cost("sglang", dp=2), shape, "embedding").bytes == pytest.approx(gather)
    assert _op(_cost("vllm", dp=2), shape, "embedding").bytes > gather


def test_without_attention_dp_sglang_costs_the_head_and_embedding_as_before():
    m = _model()
    shape = BatchShape.uniform(16, 1, 1024)
    for name in ("lm_head", "embedding"):
        ops = [_op(CostModel(m, load_hardware("h200-sxm"), load_quant("fp8-block"), load_engine(engine), tp=8),
                   shape, name) for engine in ("sglang", "vllm")]
        assert (ops[0].flops, ops[0].bytes) == (ops[1].flops, ops[1].bytes)


def test_a_tied_head_is_the_embedding_and_split_as_it_is():
    tied = _model().model_copy(update={"tie_embeddings": True})
    assert vocab_split(tied, 8, 2, load_engine("sglang")).lm_head_gpus == 1
    assert vocab_split(tied, 8, 2, load_engine("vllm")).lm_head_gpus == 4
    assert vocab_split(tied, 8, 1, load_engine("sglang")).lm_head_gpus == 8


@pytest.mark.parametrize("field", ["lm_head_split", "embedding_split"])
def test_an_engine_file_with_an_unknown_split_is_refused_naming_the_allowed(tmp_path, field):
    entry = {**packaged("engines.yaml")["engines"]["vllm"], field: "whole"}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"engines": {"mine": entry}}))
    with pytest.raises(PhasewiseError) as err:
        load_engine(str(path))
    message = str(err.value)
    assert field in message and "'attention_tp'" in message
    assert "\n" not in message.strip()
