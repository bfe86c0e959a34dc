"""Measured routing skew -> the busiest expert-parallel GPU's load (perf/expert_load.py, ParallelLayout)."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from phasewise.perf.expert_load import (
    busiest_rank_ratio,
    expected_distinct_experts,
    expected_row_tiles,
    zipf_popularity,
)
from phasewise.perf.parallel import parallel_layout
from phasewise.specs import load_model
from phasewise.specs.catalog import packaged


@pytest.mark.parametrize("experts, share", [(256, 0.35), (128, 0.65), (64, 0.5)])
def test_zipf_popularity_gives_the_top_20_percent_their_measured_share(experts, share):
    p = zipf_popularity(experts, share)
    assert p.sum() == pytest.approx(1.0) and np.all(np.diff(p) <= 0)
    assert p[:round(0.2 * experts)].sum() == pytest.approx(share, abs=1e-9)


def test_busiest_rank_ratio_grows_with_skew_and_with_ep_and_is_one_when_even():
    assert busiest_rank_ratio(256, 8, 0.2) == 1.0 and busiest_rank_ratio(256, 1, 0.5) == 1.0
    by_ep = [busiest_rank_ratio(256, ep, 0.35) for ep in (2, 4, 8, 16, 32)]
    assert all(1.0 < a < b for a, b in zip(by_ep, by_ep[1:]))
    assert busiest_rank_ratio(128, 8, 0.65) > busiest_rank_ratio(128, 8, 0.35) > 1.0
    assert busiest_rank_ratio(256, 8, 0.35) == busiest_rank_ratio.__wrapped__(256, 8, 0.35)  # fixed seed


def test_deepseek_ep_layouts_carry_its_measured_skew_and_the_flag_still_overrides():
    deepseek = load_model("deepseek-ai/DeepSeek-R1")
    assert deepseek.expert_top20_share == 0.35
    layout = parallel_layout(deepseek, 8, ep=8, attention_dp=8)
    r = layout.popularity_ratio
    assert 1.1 < r < 1.2
    rows = 8 * 1024
    assert layout.imbalance(rows) == pytest.approx(r * (1 + math.sqrt(2 * 8 * math.log(8) / (r * rows))))
    assert parallel_layout(deepseek, 8, ep=8, attention_dp=8, moe_imbalance=1.05).imbalance(rows) == 1.05
    assert parallel_layout(deepseek, 8).imbalance(rows) == 1.0  # no EP: every GPU holds every expert


def test_a_model_without_a_measurement_keeps_uniform_routings_noise():
    gpt_oss = load_model("openai/gpt-oss-20b")
    assert gpt_oss.expert_top20_share is None
    layout = parallel_layout(gpt_oss, 4, ep=4)
    assert layout.popularity_ratio == 1.0
    assert layout.imbalance(512) == pytest.approx(1 + math.sqrt(2 * 4 * math.log(4) / 512))


def test_an_impossible_skew_is_refused():
    with pytest.raises(ValidationError):
        load_model("deepseek-ai/DeepSeek-R1").model_validate({**load_model("deepseek-ai/DeepSeek-R1").model_dump(),
                                                              "expert_top20_share": 0.1})


def test_distinct_experts_follow_the_same_popularity_as_the_busiest_rank():
    """Uniform routing keeps the closed form E (1 - (1 - k/E)^T); a measured skew sends a batch to fewer experts,
    never more than E or k T, more of them as the batch grows; the cost model reads fewer expert weights."""
    for tokens in (1, 4, 16, 64.5):
        assert expected_distinct_experts(256, 8, tokens) == pytest.approx(256 * (1 - (1 - 8 / 256) ** tokens))
        assert expected_distinct_experts(256, 8, tokens, 0.2) == expected_distinct_experts(256, 8, tokens)
    assert expected_distinct_experts(256, 8, 1, 0.35) == pytest.approx(8.0, rel=1e-9)  # one token: its top k
    previous = 0.0
    for tokens in (1, 2, 4, 8, 16, 32, 64, 256, 4096):
        skewed = expected_distinct_experts(128, 8, tokens, 0.65)
        assert previous < skewed <= min(128, 8 * tokens) + 1e-9
        assert skewed < expected_distinct_experts(128, 8, tokens) or tokens == 1 or skewed > 127.999
        previous = skewed
    assert expected_distinct_experts(256, 8, 0, 0.35) == 0.0


def test_deepseek_decode_streams_fewer_expert_weights_than_uniform_routing():
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_engine, load_hardware, load_quant

    model = load_model("deepseek-ai/DeepSeek-R1")
    uniform = model.model_copy(update={"expert_top20_share": None})
    hw, engine, quant = load_hardware("h200-sxm"), load_engine("vllm"), load_quant("fp8-block")
    decode = BatchShape.uniform(8, 1, 1024)

    def expert_bytes(spec):
        cost = CostModel(spec, hw, quant, engine, tp=8).iteration(decode)
        return next(op.bytes for op in cost.operators if op.name == "moe_experts")

    assert expert_bytes(model) < expert_bytes(uniform)


@pytest.mark.parametrize("model_id, served_as", [("openai/gpt-oss-120b", "openai/gpt-oss-120b"),
                                                 ("MiniMaxAI/MiniMax-M2", "MiniMaxAI/MiniMax-M2.5"),
                                                 ("moonshotai/Kimi-K2-Instruct", "moonshotai/Kimi-K2.5")])
def test_fitted_skews_say_so_and_reach_their_aliases(model_id, served_as):
    """No measurement of gpt-oss's, MiniMax-M2.5's or Kimi-K2.5's routing is published: each skew is fitted on the
    measured runs' fit split, its catalog source says that and how (benchmarks/validate_moe.py --fit --fit-only
    model:), and the alias the runs served takes the entry's value."""
    entry = packaged("models.yaml")["models"][model_id]["routing_skew"]
    assert entry["source"].startswith("fitted, not measured") and "--fit-only model:" in entry["source"]
    assert load_model(served_as).expert_top20_share == float(entry["top20_share"])


@pytest.mark.parametrize("experts, top_k, tokens, tile_rows, share",
                         [(128, 4, 2048, 64, None), (128, 4, 300, 16, None), (128, 4, 2048, 64, 0.7),
                          (256, 8, 512, 32, 0.35)])
def test_row_tiles_match_a_monte_carlo_of_routed_tokens(experts, top_k, tokens, tile_rows, share):
    """sum over experts of ceil(rows / R), rows from tokens each routed to top_k distinct experts drawn by
    the model's popularity (seeded), against expected_row_tiles's Poisson/normal form: within 3 %."""
    rng = np.random.default_rng(0)
    p = zipf_popularity(experts, share) if share else np.full(experts, 1.0 / experts)
    draws = []
    for _ in range(100):
        keys = np.log(rng.random((tokens, experts))) / p  # top-k of Gumbel-like keys: weighted sampling w/o replacement
        picks = np.argpartition(-keys, top_k, axis=1)[:, :top_k]
        rows = np.bincount(picks.ravel(), minlength=experts)
        draws.append(np.ceil(rows / tile_rows).sum())
    assert expected_row_tiles(experts, top_k, tokens, tile_rows, share) == pytest.approx(np.mean(draws), rel=0.03)


def test_row_tiles_limits():
    """Few tokens: every expert hit runs one tile (= the distinct experts); many: the rows over R plus about half
    a tile per expert of rounding; none: none."""
    for tokens in (1, 4, 8):
        assert expected_row_tiles(128, 4, tokens, 64) == pytest.approx(expected_distinct_experts(128, 4, tokens))
        assert expected_row_tiles(128, 4, tokens, 64, 0.7) == pytest.approx(expected_distinct_experts(128, 4, tokens, 0.7))
    many = expected_row_tiles(128, 4, 65536, 64)
    assert many == pytest.approx(65536 * 4 / 64 + 0.5 * 128, rel=0.01)
    assert expected_row_tiles(128, 4, 0, 64) == 0.0
    # spreads of many tiles are summed in closed form and certain thresholds counted: 10^11 tokens at once
    for share in (None, 0.4):
        huge = expected_row_tiles(256, 8, 1e11, 128, share)
        assert huge == pytest.approx(1e11 * 8 / 128 + 0.5 * 256, rel=1e-6)
    # the closed form agrees with the sum it stands for, sum_j P(X > jR) term by term (8 experts of 500,000 rows)
    mean, spread, tile = 2e6 * 2 / 8, math.sqrt(2e6 * 2 / 8), 16
    terms = sum(0.5 * math.erfc((j * tile + 0.5 - mean) / spread / math.sqrt(2)) for j in range(1, 32_000))
    assert expected_row_tiles(8, 2, 2e6, tile) == pytest.approx(8 * (1 + terms), rel=1e-12)


def test_a_weight_expanding_moe_kernel_costs_its_row_tiles_smoothly():
    """gpt-oss's MXFP4 experts on an A100 (expanded to BF16 once per tile of each expert's rows): the prefill's
    expert time grows smoothly with the prompt, with no step where the mean rows per expert cross a tile."""
    from phasewise.perf import BatchShape, CostModel
    from phasewise.specs import load_engine, load_hardware, load_quant

    cost = CostModel(load_model("openai/gpt-oss-120b"), load_hardware("a100-sxm-80gb"), load_quant("mxfp4"),
                     load_engine("vllm"), tp=1)

    def experts_ms(tokens):
        it = cost.iteration(BatchShape.uniform(1, tokens, 0))
        return 1e3 * next(op.time_s for op in it.operators if op.name == "moe_experts")

    times = [experts_ms(t) for t in (2000, 2040, 2048, 2056, 2100)]
    assert all(a < b for a, b in zip(times, times[1:]))
    assert max(b / a for a, b in zip(times, times[1:])) < 1.03
