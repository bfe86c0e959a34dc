"""What a server refuses on arrival, check mode leaving results alone, and each benchmark client's ITL."""

from __future__ import annotations

from phasewise.sim.api import run


def test_check_mode_changes_no_result_with_prefix_caching():
    """Check mode verifies the decoding set's growth fits; it must not allocate it (an allocation evicts idle
    prefix blocks, which changed the evictions and the TTFTs of a Mooncake run)."""
    kw = dict(engine="vllm", trace="mooncake", trace_limit=200, rate=10, memory_fraction=0.5, seed=121)
    plain, checked = run(**kw).summary(), run(check_invariants=True, **kw).summary()
    assert plain["prefix_cache"]["evicted_blocks"] == checked["prefix_cache"]["evicted_blocks"]
    assert plain["ttft_ms"] == checked["ttft_ms"] and plain["tbt_ms"] == checked["tbt_ms"]

