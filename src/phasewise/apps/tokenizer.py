"""Counting prompt tokens and making filler output, with no download.

The built-in count is OpenAI's rule of thumb (about 4 characters per token): every word costs
ceil(len/4) tokens and every punctuation mark one. `--tokenizer path/to/tokenizer.json` uses a real
tokenizer instead (the `tokenizers` package). Filler output words are four letters with a leading
space, so each is exactly one token under the built-in count.
"""

from __future__ import annotations

import re

from phasewise.errors import PhasewiseError

_WORD = re.compile(r"\w+|[^\w\s]")
_FILLER = (" data", " text", " time", " road", " tree", " blue", " note", " fine", " wave", " calm",
           " path", " more", " soft", " warm", " gold", " idea")


class Tokenizer:
    def __init__(self, path: str | None = None) -> None:
        self.name = "approximate (4 characters per token)"
        self._tok = None
        if path:
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError:
                raise PhasewiseError("--tokenizer needs the tokenizers package: pip install tokenizers") from None
            try:
                self._tok = HFTokenizer.from_file(path)
            except Exception as exc:  # the library raises its own exception types
                raise PhasewiseError(f"--tokenizer '{path}' cannot be loaded ({exc})") from None
            self.name = path

    def count(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False).ids)
        return sum(1 if not w[0].isalnum() and w[0] != "_" else -(-len(w) // 4) for w in _WORD.findall(text))


def filler(start: int, n: int) -> str:
    """Output tokens start .. start+n-1 as text (deterministic)."""
    return "".join(_FILLER[(start + i) % len(_FILLER)] for i in range(n))
