"""The built-in count of an ASCII prompt is vectorised (apps/tokenizer.py _ascii_units): it must give the count and
the block hashes the per-word loop gives (the reference below, the loop the twin runs on any other text), for any
text and any block size, including words that close several blocks and the separators \\s matches in str patterns."""

from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.apps.tokenizer import _WORD, Tokenizer, _word_tokens, id_blocks


def loop_count_and_blocks(text: str, block_tokens: int) -> tuple[int, tuple[int, ...]]:
    hashes, total, start, edge = [], 0, 0, block_tokens
    for match in _WORD.finditer(text):
        total += _word_tokens(match.group())
        while total >= edge:
            hashes.append(hash(text[start:match.end()]))
            start, edge = match.end(), edge + block_tokens
    return total, tuple(hashes)


ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=400)
WORDY = st.lists(st.sampled_from(["a", "word", "_x1", "longerwordthanfour", "x" * 41, " ", "  ", "\t", "\n",
                                  "\x1c", "\x1f", "\x0b", ",", ".", "!?", "(", "\x00", "\x7f"]),
                 max_size=200).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(ASCII, WORDY), block_tokens=st.sampled_from([1, 2, 3, 16, 32, 512]))
def test_vectorised_count_and_blocks_equal_the_loop(text, block_tokens):
    tok = Tokenizer()
    assert tok.count_and_blocks(text, block_tokens) == loop_count_and_blocks(text, block_tokens)
    assert tok.count(text) == loop_count_and_blocks(text, block_tokens)[0]


def test_a_long_word_closes_several_blocks_and_non_ascii_takes_the_loop():
    tok = Tokenizer()
    long_word = "x" * 8000  # 2,000 tokens in one word: 3 blocks of 512 end after it
    total, hashes = tok.count_and_blocks(long_word + " tail", 512)
    assert (total, len(hashes)) == (2001, 3) and hashes[1] == hashes[2] == hash("")
    text = "café " * 100 + "naïve, words"
    assert tok.count_and_blocks(text, 16) == loop_count_and_blocks(text, 16)


def test_token_id_blocks_of_one_token_are_the_ids_and_longer_blocks_hash_their_ids():
    ids = list(range(5, 1205))
    assert id_blocks(ids, 1) == tuple(ids)
    assert id_blocks(ids, 16) == tuple(hash(tuple(ids[i:i + 16])) for i in range(0, 1200 - 15, 16))
    assert len(id_blocks(ids, 512)) == 2
