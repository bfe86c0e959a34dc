"""Mooncake traces (Kimi production, FAST'25; kvcache-ai/Mooncake FAST25-release/traces, Apache-2.0): JSONL, one
request a line with `timestamp` (ms from the start), `input_length` and `output_length` (tokens) and `hash_ids`, the
prefix block hashes, one per MOONCAKE_BLOCK_TOKENS prompt tokens (equal ids at the same position: a reusable KV
prefix). The format NVIDIA Dynamo's and AIConfigurator's replay tools also read.

Prefix sharing happens at the trace's own granularity: a full Mooncake block (MOONCAKE_BLOCK_TOKENS tokens, i.e.
MOONCAKE_BLOCK_TOKENS / block_size engine KV blocks) keyed by the chained hash of the ids up to it, so equal keys
mean equal prefixes. Only the full Mooncake blocks of the prompt's first `input_length - 1` tokens are shareable: a
partly filled last block is not (its hash is of a partial block, which a longer prompt does not share), and an
engine always computes at least the prompt's last token (vLLM caps a hit at prompt - 1 tokens,
v1/core/kv_cache_manager.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.reading import MAX_TOKENS, TRACE_MAX_BYTES, jsonl_objects, read_text
from phasewise.workload.columns import OPTIONAL, optional_columns, refuse_unread_priority
from phasewise.workload.request import Workload

MOONCAKE_BLOCK_TOKENS = 512  # tokens per hash id (Mooncake FAST25-release/traces README; ../shared/traces/README.md)
KEYS = ("timestamp", "input_length", "output_length", "hash_ids")


def is_mooncake(text: str) -> bool:
    """Whether a JSONL file's first request line (its text read by specs/reading.py) has Mooncake's keys (its
    `hash_ids`, or its lengths' names, so that a Mooncake line missing a key is named as such)."""
    start = 0
    while start < len(text):  # the first non-blank line, without splitting the whole file
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line, start = text[start:end], end + 1
        if line.strip():
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                return False
            return isinstance(obj, dict) and ("hash_ids" in obj or {"input_length", "output_length"} <= obj.keys())
    return False


def _integer(obj: dict, key: str, where: str, low: int) -> int:
    value = obj[key]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= MAX_TOKENS
            or value != int(value)):
        raise PhasewiseError(f"{where}: `{key}` must be an integer >= {low} and <= {MAX_TOKENS} (got {value!r})")
    return int(value)


def load_mooncake(path: Path, limit: int | None = None, text: str | None = None) -> Workload:
    """A Mooncake JSONL trace (first `limit` requests): arrivals in seconds from the first, each request's hash_ids
    (Workload.prefix_hashes), and the optional `priority` and `NumImages` keys as an Azure trace's columns
    (workload/columns.py). Bad rows are one-line errors naming the file and line; `text`: the file's text when
    already read (specs/reading.py reads it otherwise)."""
    if text is None:
        text = read_text(path, "trace", TRACE_MAX_BYTES)
    arrival, prompt, output, hashes, lines = [], [], [], [], []
    extra: dict[str, list] = {name: [] for name in OPTIONAL}
    keys: dict = {}  # every key any request has, in the order first seen
    for number, obj in jsonl_objects(text, path):
        if limit and len(arrival) >= limit:
            break
        keys.update(obj)
        where = f"trace '{path}' line {number}"
        t, n_in, n_out, ids = _request(obj, where)
        if arrival and t / 1e3 < arrival[-1]:
            raise PhasewiseError(f"{where}: timestamps are not sorted ascending ({t} ms after "
                                 f"{arrival[-1] * 1e3:g} ms)")
        arrival.append(t / 1e3)
        prompt.append(n_in)
        output.append(n_out)
        hashes.append(tuple(ids))
        lines.append(number)
        for name, values in extra.items():
            values.append(obj.get(name))
    if not arrival:
        raise PhasewiseError(f"trace '{path}' has no requests")
    refuse_unread_priority(list(keys), path)
    present = {name: values for name, values in extra.items() if any(v is not None for v in values)}
    priority, images = optional_columns(present, path, lines.__getitem__)
    t = np.asarray(arrival)
    return Workload(t - t[0], np.asarray(prompt), np.asarray(output), priority, name=path.name, prefix_hashes=hashes,
                    image_counts=images)


def _request(obj: dict, where: str) -> tuple[float, int, int, list[int]]:
    """One line's (timestamp ms, input_length, output_length, hash_ids), each checked (`where`: its file and line)."""
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise PhasewiseError(f"{where}: missing {', '.join(missing)} (a Mooncake request has {', '.join(KEYS)})")
    t = obj["timestamp"]
    # below 1e15 ms (~30,000 years; assumed): finite, and a float to the millisecond
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1e15:
        raise PhasewiseError(f"{where}: `timestamp` must be milliseconds >= 0 (got {t!r})")
    n_in = _integer(obj, "input_length", where, 1)
    n_out = _integer(obj, "output_length", where, 1)
    ids = obj["hash_ids"]
    if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in ids):
        raise PhasewiseError(f"{where}: `hash_ids` must be a list of integers")
    needed = -(-n_in // MOONCAKE_BLOCK_TOKENS)  # one hash id per block, the last one partly filled
    if len(ids) != needed:
        raise PhasewiseError(f"{where}: `hash_ids` lists {len(ids)} and input_length {n_in} needs {needed} (one "
                             f"block hash per {MOONCAKE_BLOCK_TOKENS} prompt tokens)")
    return t, n_in, n_out, ids


def block_keys(hash_ids: tuple[int, ...], prompt_tokens: int, key_tokens: int = MOONCAKE_BLOCK_TOKENS) -> list[int]:
    """The keys of a prompt's shareable prefix blocks of `key_tokens` tokens each (a Mooncake trace's 512, or the
    twin's hashes of the engines' KV blocks): every full block of the prompt, what its finished prefill caches (vLLM
    and SGLang cache each full block), each the chained hash of the ids up to it: equal keys mean equal prefixes up
    to the end of that block. A lookup reads only the first lookup_blocks() of them."""
    keys, chain = [], 0
    for h in hash_ids[:prompt_tokens // key_tokens]:
        chain = hash((chain, h))
        keys.append(chain)
    return keys


def lookup_blocks(prompt_tokens: int, key_tokens: int = MOONCAKE_BLOCK_TOKENS) -> int:
    """How many of a prompt's leading blocks a prefix-cache lookup may hit: the full ones among its first prompt - 1
    tokens, as the engines look up (vLLM's KV cache manager leaves the last prompt token to compute, for its logits;
    SGLang's radix match likewise), so a prompt of whole blocks finds at most all but its last."""
    return (prompt_tokens - 1) // key_tokens


def engine_blocks_per_key(block_size: int, key_tokens: int = MOONCAKE_BLOCK_TOKENS) -> int:
    """Engine KV blocks of `block_size` tokens in one prefix block of `key_tokens` (block_size must divide it)."""
    if block_size > key_tokens or key_tokens % block_size:
        raise PhasewiseError(f"block_size {block_size} must divide the prefix block of {key_tokens} tokens to share "
                             f"prefixes (e.g. 16 or 32)")
    return key_tokens // block_size


def reusable_prompt_share(hashes: list[tuple[int, ...]], prompt_tokens) -> float:
    """The share of the prompt tokens an unbounded prefix cache would serve: the tokens of each prompt's shareable
    blocks (block_keys) that an earlier request's prompt already held, over all prompt tokens. A bounded cache, or
    requests spread over instances, serve less: an upper bound on prefix caching's saving."""
    seen: set[int] = set()
    reused = 0
    for ids, tokens in zip(hashes, prompt_tokens):
        keys = block_keys(ids, int(tokens))
        reused += sum(key in seen for key in keys[:lookup_blocks(int(tokens))]) * MOONCAKE_BLOCK_TOKENS
        seen.update(keys)
    total = int(np.sum(prompt_tokens))
    return reused / total if total else 0.0
