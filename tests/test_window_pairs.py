"""BatchShape.windowed: each sequence's windowed (query, key) pairs and KV reads counted from its own span, by hand;
the simulator's decode runs of a hybrid sliding-window stack with each context's own windowed keys."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phasewise.perf import CostModel
from phasewise.perf.batch import SUM_FIELDS, BatchShape, attention_pairs
from phasewise.sim.decoding_set import DecodingSet
from phasewise.specs import load_engine, load_hardware, load_model, load_quant


def test_a_prompt_of_twice_the_window():
    """Gemma-3-like window of 1,024 over a 2,048-token prompt: the first 1,024 tokens see 1..1,024 keys, the rest
    1,024 each (the sums' min(pairs, tokens x window) gave 2,097,152: a third more)."""
    shape = BatchShape.from_sequences([(2048, 0)])
    windowed = shape.windowed(1024)
    assert windowed.prefill_pairs == 1024 * 1025 // 2 + 1024 * 1024 == 1_573_376
    assert windowed.prefill_kv_tokens == 1024


def test_a_chunk_that_crosses_the_window():
    """512 new tokens after 768 cached, window 1,024: queries 769..1,024 see all their keys, 1,025..1,280 see 1,024."""
    windowed = BatchShape.from_sequences([(512, 768)]).windowed(1024)
    assert windowed.prefill_pairs == (769 + 1024) * 256 // 2 + 256 * 1024 == 491_648
    assert windowed.prefill_kv_tokens == 1024


def test_a_short_and_a_long_prompt_together():
    """A 100-token prompt beside a 3,000-token one: each its own count (the sums' rule gave 3,174,400: 24 % over)."""
    windowed = BatchShape.from_sequences([(100, 0), (3000, 0)]).windowed(1024)
    assert windowed.prefill_pairs == 100 * 101 // 2 + 1024 * 1025 // 2 + 1976 * 1024 == 2_553_274
    assert windowed.prefill_kv_tokens == 100 + 1024


def test_uniform_batches_count_every_copy():
    assert BatchShape.uniform(3, 2048, 0).windowed(1024).prefill_pairs == 3 * 1_573_376


def test_decoding_sequences_each_their_own():
    """Decoding sequences added one by one count their own: a 300-token context reads 301 keys beside a 5,000-token
    one's 1,024 (the sums' rule gave 2 x 1,024). Built from sums, the shape takes decode_window at that window, else
    the sums' rule (exact once every context reaches the window)."""
    added = BatchShape.from_sequences([(1, 300), (1, 5000)]).windowed(1024)
    assert (added.decode_pairs, added.decode_kv_tokens) == (301 + 1024, 301 + 1024)
    sums = BatchShape(decode_seqs=2, decode_tokens=2, decode_pairs=5302, decode_kv_tokens=5302, logit_tokens=2)
    assert (sums.windowed(1024).decode_pairs, sums.windowed(1024).decode_kv_tokens) == (2048, 2048)
    sums.decode_window = (1024, 1325.0, 1325.0)
    assert (sums.windowed(1024).decode_pairs, sums.windowed(1024).decode_kv_tokens) == (1325.0, 1325.0)
    assert sums.windowed(512).decode_kv_tokens == 1024  # another window: the sums' rule


def test_edited_sums_keep_the_sums_rule():
    """A shape whose prefill pairs a caller edited after adding (jump-share's block-diagonal copies) has no spans to
    go by: the sums' rule."""
    edited = BatchShape.from_sequences([(2048, 0)])
    edited.prefill_pairs -= 1000
    assert edited.windowed(1024).prefill_pairs == min(edited.prefill_pairs, 2048 * 1024)


def test_sums_exclude_the_spans():
    assert not {"prefill_spans", "decode_spans", "decode_window"} & set(SUM_FIELDS)
    assert len(SUM_FIELDS) == len(BatchShape.__slots__) - 3


@given(st.lists(st.tuples(st.integers(17, 5000), st.integers(0, 5000)), min_size=1, max_size=6),
       st.integers(1, 4096))
def test_windowed_pairs_are_each_sequences_and_never_above_the_sums_rule(seqs, window):
    shape = BatchShape.from_sequences(seqs)
    windowed = shape.windowed(window)
    assert windowed.prefill_pairs == sum(attention_pairs(new, cached, True, window) for new, cached in seqs)
    assert windowed.prefill_pairs <= min(shape.prefill_pairs, shape.prefill_tokens * window)
    assert windowed.prefill_kv_tokens == sum(min(new + cached, window) for new, cached in seqs)
    # a window beyond every context changes nothing
    assert shape.windowed(10_001).prefill_pairs == shape.prefill_pairs


class _Decoding(DecodingSet):
    """The decoding set's state its window series reads: contexts at a decode step, the model's window."""

    def __init__(self, model, contexts, accepted=1.0, new=1):
        self.model, self.window, self.decode_steps = model, model.window_all_layers, 0
        self.capped_keys = self._keys_cap()  # as a join under it sets
        self.tokens_per_step, self.decode_new_tokens = accepted, new
        self.running = SimpleNamespace(n=len(contexts), contexts=lambda step, g: np.array(contexts, float) + g * step)


@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40), st.sampled_from((1.0, 2.5)))
def test_the_decoding_sets_window_series_sums_each_context(contexts, accepted):
    """Gemma-3-27B (1,024-token window in 5 layers of 6): at each step every context reads min(context + 1, 1,024)
    keys; None where every context reaches the window or stays under it over the steps (the sums are then exact)."""
    model = load_model("google/gemma-3-27b-it")
    steps = np.arange(0.0, 600.0, 7.0)
    series = _Decoding(model, contexts, accepted)._capped_keys_series(steps)
    brute = np.minimum(np.array(contexts, float)[:, None] + 1 + accepted * steps[None, :], 1024).sum(axis=0)
    if min(contexts) + 1 >= 1024 or max(contexts) + 1 + accepted * steps[-1] < 1024:
        assert series is None  # every context over the window, or under it to the last step: the sums are exact
    else:
        assert np.allclose(series[1], brute) and np.allclose(series[0], brute)


def test_a_decode_run_of_mixed_contexts_matches_each_step_added_apart():
    """gpt-oss-120b (128-token window in half the layers) and Gemma-3-27B: the simulator's closed-form run with the
    windowed keys' series equals fast() of each step's batch added sequence by sequence, at mixed contexts."""
    steps = np.arange(0.0, 200.0)
    for name, contexts in (("openai/gpt-oss-120b", [20, 90, 400]), ("google/gemma-3-27b-it", [100, 700, 3000])):
        model = load_model(name)
        cm = CostModel(model, load_hardware("h100-sxm" if "gemma" in name else "b200"), load_quant("bf16"),
                       load_engine("vllm"))
        seqs = len(contexts)
        series = _Decoding(model, contexts)._capped_keys_series(steps)
        kv0 = float(sum(contexts) + seqs)
        line = cm.decode_line(seqs, seqs, seqs)
        latencies, first = cm.decode_line_series(line, kv0, kv0, steps, seqs, seqs, series)
        for step in (0, 50, 199):
            shape = BatchShape.from_sequences([(1, c + step) for c in contexts])
            assert latencies[step] == pytest.approx(cm.fast(shape)[0], rel=1e-9), (name, step)
        capped, _ = cm.decode_line_series(line, kv0, kv0, steps, seqs, seqs)
        assert capped[0] > latencies[0]  # the caps on the sums over-count the short contexts' windowed keys
