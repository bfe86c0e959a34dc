"""workload/traffic_share.py: the requests a slice of a fleet's instances receives behind its router."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phasewise.workload import Workload, load_trace
from phasewise.workload.traffic_share import conversation_keys, traffic_share


def _conversations(turns: list[int]) -> Workload:
    """Conversations of the given turn counts, interleaved; every prompt opens with block 0 (a system prompt shared by
    all: common from 51 requests on), then its conversation's blocks, one more per turn."""
    hashes = []
    for turn in range(max(turns)):
        for conv, count in enumerate(turns):
            if turn < count:
                hashes.append((0,) + tuple(1000 * (conv + 1) + b for b in range(turn + 1)))
    n = len(hashes)
    return Workload(np.arange(n, dtype=float), np.full(n, 512), np.full(n, 64), prefix_hashes=hashes)


def test_conversation_keys_skip_a_block_every_request_shares():
    work = _conversations([3] * 60)
    keys = conversation_keys(work.prefix_hashes)
    assert set(keys) == {1000 * (c + 1) for c in range(60)}
    excerpt = load_trace("mooncake")  # every request opens with block 0
    assert all(h[0] == excerpt.prefix_hashes[0][0] for h in excerpt.prefix_hashes if h)
    keys = conversation_keys(excerpt.prefix_hashes)
    assert excerpt.prefix_hashes[0][0] not in set(keys)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=60, max_size=120), st.floats(0.1, 0.9), st.integers(0, 2**31))
def test_whole_conversations_are_kept_or_dropped_together(turns, share, seed):
    work = _conversations(turns)
    part = traffic_share(work, share, seed, whole_conversations=True)
    kept = {h[1] for h in part.prefix_hashes}
    assert sum(1 for h in work.prefix_hashes if h[1] in kept) == len(part)  # every turn of a kept conversation
    assert np.all(np.diff(part.arrival_s) >= 0) and set(part.arrival_s) <= set(work.arrival_s)
    assert traffic_share(work, share, seed, whole_conversations=True).prefix_hashes == part.prefix_hashes


def test_request_by_request_keeps_the_share_and_splits_conversations():
    work = _conversations([5] * 2000)
    part = traffic_share(work, 0.25, 7, whole_conversations=False)
    assert abs(len(part) / len(work) - 0.25) < 0.02
    per_conversation = np.bincount([h[1] // 1000 for h in part.prefix_hashes])[1:]
    assert 0 < np.mean(per_conversation[per_conversation > 0] < 5)  # conversations split: some turns dropped
    whole = traffic_share(work, 0.25, 7, whole_conversations=True)
    assert abs(len(whole) / len(work) - 0.25) < 0.05
    assert traffic_share(work, 1.0, 7, whole_conversations=True) is work
    assert len(traffic_share(work.head(3), 1e-9, 7, whole_conversations=False)) == 1  # never empty
