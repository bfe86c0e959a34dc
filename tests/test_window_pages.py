"""TensorRT-LLM's DeepSeek-V4 window pages (perf/window_pages.py): the fixed cost per request and the prefill
transient its DeepseekV4CacheManager charges, by hand, and what they change in estimate and simulate."""

from __future__ import annotations

import pytest

from phasewise.perf.estimate import estimate
from phasewise.perf.memory import compressed_kv_pool, kv_sequence_tokens, kv_state_pages, memory_fit
from phasewise.perf.window_kv import kv_window_terms
from phasewise.perf.window_pages import WindowPages
from phasewise.sim.deployment import build_deployment
from phasewise.sim.simulate import build_group
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import engine_kv, window_kv
from phasewise.specs.engines import resolve_engine

FLASH, PRO = "deepseek-ai/DeepSeek-V4-Flash", "deepseek-ai/DeepSeek-V4-Pro"


def _pages(model: str, block: int | None = None, pp: int = 1):
    spec, hw = load_model(model), load_hardware("b200")
    config = resolve_engine("trtllm", hw, model_type=spec.model_type)
    quant = engine_kv(load_quant(spec.default_precision, None), config, spec, hw, asked_kv_dtype=False)
    return spec, config, quant, compressed_kv_pool(config, spec, quant, pp, block)


def test_flash_pages_by_hand():
    """Plain FP8 (512-byte entries, 132-byte indexer keys). Per context token: 21 x (512 + 132) / 4 + 20 x 512 /
    128 = 3,461 bytes. Per request, every sliding role's window in whole 128-token pages: 43 layers' window entries
    (43 x 128 x 512) + 21 CSA compressor states (an 8-token window in a whole page: 128 x (4,096 + 4,096 + 1,024 +
    1,024)) + 20 HCA states (128 x (2,048 + 2,048)) = 40,828,928 bytes (38.9 MiB), twice at 256-token pages. A prompt
    token in flight: 43 x 512 + 21 x 10,240 + 20 x 4,096 = 318,976 bytes (2.6 GB for an 8,192-token chunk)."""
    _, _, quant, pages = _pages(FLASH)
    assert quant.kv_dtype == "fp8" and quant.sparse_kv_layout == "plain"
    assert isinstance(pages, WindowPages) and pages.block_tokens == 128
    assert pages.bytes_per_token == 21 * (512 + 132) / 4 + 20 * 512 / 128 == 3_461
    assert pages.sequence_window_bytes == 43 * 128 * 512 + 21 * 128 * 10_240 + 20 * 128 * 4_096 == 40_828_928
    assert pages.chunk_token_bytes == 318_976 and pages.chunk_bytes(8_192) == pytest.approx(2.613e9, rel=1e-3)
    assert _pages(FLASH, 256)[3].sequence_window_bytes == 2 * 40_828_928
    assert _pages(FLASH, 64)[3].block_tokens == 128  # a size the manager does not keep: its default
    _, _, _, pro = _pages(PRO)
    assert pro.bytes_per_token == pytest.approx(4_954, abs=0.5)
    assert pro.sequence_window_bytes == 59_572_224 and pro.chunk_token_bytes == 465_408


def test_a_request_is_charged_its_windows_in_whole_pages():
    """The context on the compressed roles in whole pages, the windows a constant per sequence in the same unit:
    an 8,192-token prompt holds 8,320 tokens' pages + 40,828,928 / 3,461 = 11,797 tokens' worth of windows."""
    spec, config, quant, pages = _pages(FLASH)
    hw = load_hardware("b200")
    assert window_kv(config, spec, hw) == ("window_pages", 1.0)
    assert kv_window_terms(spec, "window_pages", attention_tp=8, quant=quant) == (1.0, 0.0, 0, False)
    block, state = kv_state_pages(config, spec, quant, 8, 1, 128)
    assert block == 128 and state == pytest.approx(40_828_928 / 3_461)
    assert kv_sequence_tokens(8_193, (1.0, 0.0, 0, False), (block, state)) == pytest.approx(8_320 + 11_796.8, abs=0.1)
    fit = memory_fit(spec, hw, quant, 8, max_tokens=8192, kv_pool=pages)
    plain = memory_fit(spec, hw, quant, 8, max_tokens=8192)
    assert fit.chunk_window_bytes == 8_192 * 318_976
    assert fit.kv_capacity_tokens == int((plain.kv_free_bytes - fit.chunk_window_bytes) // 3_461)


def test_estimate_and_simulate_use_the_pages():
    """estimate reports the pages; the simulator's TensorRT-LLM instance runs on them (its block, 128 unless the
    deployment asks for 256), each sequence holding its windows."""
    est = estimate(FLASH, "b200", tp=8, engine="trtllm", prompt_len=8192).to_dict()["memory"]
    pool = est["compressed_kv_pool"]
    assert pool["layout"] == "window_pages" and pool["sequence_window_bytes"] == 40_828_928
    assert est["kv_tokens_per_sequence"] == 8_320 + 11_797
    dep = build_deployment({"model": FLASH, "instances": [{"hardware": "b200", "tp": 8, "engine": "trtllm",
                                                           "block_size": 256}]})
    cost, kv_tokens, _, engine = build_group(dep, dep.instances[0], 0)
    pages = compressed_kv_pool(engine, cost.model, cost.quant, 1, 256)
    assert pages.block_tokens == 256 and pages.sequence_window_bytes == 2 * 40_828_928
    assert kv_tokens == memory_fit(cost.model, cost.hw, cost.quant, 8, max_tokens=engine.token_budget,
                                   max_seqs=min(engine.max_seqs, 1024), memory_fraction=engine.fraction(None),
                                   fraction_of=engine.memory_fraction_of, kv_pool=pages).kv_capacity_tokens
