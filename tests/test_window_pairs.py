"""BatchShape.windowed: a prefill sequence's windowed (query, key) pairs and KV reads counted from its own span, by
hand; decode sequences from the sums (exact once every context reaches the window)."""

from hypothesis import given
from hypothesis import strategies as st

from phasewise.perf.batch import SUM_FIELDS, BatchShape, attention_pairs


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


def test_decode_and_edited_sums_keep_the_sums_rule():
    """Decoding sequences: min over the sums, exact when every context reaches the window. A shape whose prefill
    pairs a caller edited after adding (jump-share's block-diagonal copies) has no spans to go by: the sums' rule."""
    decode = BatchShape.from_sequences([(1, 5000), (1, 3000)]).windowed(1024)
    assert (decode.decode_pairs, decode.decode_kv_tokens) == (2 * 1024, 2 * 1024)
    edited = BatchShape.from_sequences([(2048, 0)])
    edited.prefill_pairs -= 1000
    assert edited.windowed(1024).prefill_pairs == min(edited.prefill_pairs, 2048 * 1024)


def test_sums_exclude_the_spans():
    assert "prefill_spans" not in SUM_FIELDS and len(SUM_FIELDS) == len(BatchShape.__slots__) - 1


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
