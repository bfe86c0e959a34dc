"""Counting prompt tokens and making filler output, with no download.

The built-in count is OpenAI's rule of thumb (about 4 characters per token): every word costs
ceil(len/4) tokens and every punctuation mark one. `--tokenizer path/to/tokenizer.json` uses a real
tokenizer instead (the `tokenizers` package). Filler output words are four letters with a leading
space, so each is exactly one token under the built-in count.
"""

from __future__ import annotations

import re

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import TOKENIZER_MAX_BYTES, read_text

_WORD = re.compile(r"\w+|[^\w\s]")
_FILLER = (" data", " text", " time", " road", " tree", " blue", " note", " fine", " wave", " calm",
           " path", " more", " soft", " warm", " gold", " idea")


class Tokenizer:
    def __init__(self, path: str | None = None) -> None:
        self.name = "approximate (4 characters per token)"
        self._tok = None
        self._longest: int | None = None
        if path:
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError:
                raise PhasewiseError("--tokenizer needs the tokenizers package: pip install tokenizers") from None
            text = read_text(path, "--tokenizer", TOKENIZER_MAX_BYTES)  # missing, too large, binary: one line
            try:
                self._tok = HFTokenizer.from_str(text)
            except Exception as exc:  # the library raises its own exception types
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise PhasewiseError(f"--tokenizer file '{path}' cannot be loaded ({first})") from None
            self.name = path

    def min_tokens(self, text: str) -> int:
        """A lower bound on count(text), in linear time without tokenizing: every token covers at most
        `longest` non-space characters (4 for the built-in count; a real vocabulary's longest token)."""
        if self._longest is None:
            self._longest = 4 if self._tok is None else max(
                (len(t.encode()) for t in self._tok.get_vocab()), default=1) or 1
        return -(-non_space_chars(text) // self._longest)

    def count(self, text: str) -> int:
        if self._tok is not None:
            return len(self._ids(text))
        if text.isascii():
            return int(_ascii_units(text)[1].sum())
        return sum(_word_tokens(w) for w in _WORD.findall(text))

    def _ids(self, text: str) -> list[int]:
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        except Exception:  # a lone surrogate (valid in JSON, not in UTF-8): counted as the replacement character
            return self._tok.encode(text.encode("utf-8", "replace").decode(), add_special_tokens=False).ids

    def count_and_blocks(self, text: str, block_tokens: int) -> tuple[int, tuple[int, ...]]:
        """count(text), and a content hash of each full `block_tokens`-token block at its start, in one pass: equal
        leading blocks of two prompts hash alike (the prefix cache's hash ids, sim/prefix_cache.py). The built-in
        count cuts a block after the word that reaches its last token. The hashes are this process's (Python's
        salted str hash, ~20x cheaper than a digest per 1-token block), compared only within the twin that made
        them."""
        if self._tok is not None:
            ids = self._ids(text)
            return len(ids), id_blocks(ids, block_tokens)
        if text.isascii():
            return _ascii_count_and_blocks(text, block_tokens)
        hashes, total, start, edge = [], 0, 0, block_tokens
        for match in _WORD.finditer(text):
            total += _word_tokens(match.group())
            while total >= edge:  # a word may close several blocks (block_keys chains their hashes)
                hashes.append(hash(text[start:match.end()]))
                start, edge = match.end(), edge + block_tokens
        return total, tuple(hashes)


def id_blocks(ids: list[int], block_tokens: int) -> tuple[int, ...]:
    """A content hash of each full `block_tokens`-token block of a prompt given as token ids (this process's
    hash, as count_and_blocks')."""
    if block_tokens == 1:
        return tuple(map(hash, ids))  # an int's hash is the int (mod 2**61 - 1): one-token blocks are their ids
    return tuple(hash(tuple(ids[i:i + block_tokens])) for i in range(0, len(ids) - block_tokens + 1, block_tokens))


# ASCII codes \w and \s match (str patterns: \s includes the separators 0x1c-0x1f), for the vectorised count
_ASCII_WORD = np.array([re.fullmatch(r"\w", chr(c)) is not None for c in range(128)])
_ASCII_SPACE = np.array([re.fullmatch(r"\s", chr(c)) is not None for c in range(128)])


def _ascii_units(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The built-in count's units of an ASCII text, in order: each word's (a run of \\w characters) and each
    punctuation mark's end offset and tokens, as _WORD.finditer and _word_tokens give them, without a Python step
    per word (a 32k-token prompt: ~2 ms instead of ~15)."""
    codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    word = _ASCII_WORD[codes]
    runs = np.diff(word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))  # +1 where a word starts, -1 after
    word_starts, word_ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
    mark_ends = np.flatnonzero(~word & ~_ASCII_SPACE[codes]) + 1
    ends = np.concatenate([word_ends, mark_ends])
    tokens = np.concatenate([(word_ends - word_starts + 3) // 4, np.ones(len(mark_ends), dtype=np.int64)])
    order = np.argsort(ends, kind="stable")  # a word's and a mark's ends never coincide
    return ends[order], tokens[order]


def _ascii_count_and_blocks(text: str, block_tokens: int) -> tuple[int, tuple[int, ...]]:
    """Tokenizer.count_and_blocks' built-in count of an ASCII text, vectorised: block k ends after the first unit
    whose running total reaches k x block_tokens (several blocks may end after one long word), and starts where
    block k - 1 ended."""
    ends, tokens = _ascii_units(text)
    running = np.cumsum(tokens)
    total = int(running[-1]) if len(running) else 0
    edges = np.arange(1, total // block_tokens + 1, dtype=np.int64) * block_tokens
    block_ends = ends[np.searchsorted(running, edges, side="left")].tolist()
    block_starts = [0] + block_ends[:-1]
    return total, tuple(map(hash, map(text.__getitem__, map(slice, block_starts, block_ends))))


def _word_tokens(word: str) -> int:
    """The built-in count of one word or punctuation mark (about 4 characters per token)."""
    return 1 if not word[0].isalnum() and word[0] != "_" else -(-len(word) // 4)


# The characters str.split() splits on (str.isspace), ASCII ones also as bytes
_SPACES = tuple(chr(c) for c in range(0x3001) if chr(c).isspace())
_ASCII_SPACES = bytes(ord(c) for c in _SPACES if ord(c) < 128)


def non_space_chars(text: str) -> int:
    """sum(map(len, text.split())) without building the words (a 3 MB prompt: ~10 ms instead of ~170 ms on the
    server's event loop)."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _ASCII_SPACES))
    return len(text) - sum(text.count(c) for c in _SPACES)


def filler(start: int, n: int) -> str:
    """Output tokens start .. start+n-1 as text (deterministic)."""
    return "".join(_FILLER[(start + i) % len(_FILLER)] for i in range(n))
