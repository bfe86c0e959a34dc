"""Looser SLOs never leave a plan without the strategies tighter ones found. A looser SLO raises the goodput search's
answer, and verification stepped down from it only to 0.8 of it: on the first 400 requests of the Mooncake
conversation trace (the bundled excerpt's), 2 x H100 TP1 under vLLM's default held 0.87 req/s at TTFT <= 2 s / TPOT
<= 50 ms, while at 3 s / 100 ms its search answered 1.61 req/s, no fresh seed held 1.29-1.61, and the plan found no
strategy. Verification now steps down until a rate holds (verification.VERIFY_FACTORS, down to 5 % of the search's
rate), so the rates that held under the tighter SLOs lie within the looser SLOs' steps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from phasewise.plan.goodput import WorkloadSpec, workload_spec
from phasewise.plan.planner import plan
from phasewise.plan.strategies import PlanOptions, Strategy
from phasewise.plan.verification import verify
from phasewise.plan.windows import VERIFY_STEP
from phasewise.sim import Slo

M = "meta-llama/Llama-3.1-8B"
EXCERPT = Path(__file__).resolve().parents[1] / "src/phasewise/workload/data/mooncake_conversation_excerpt.jsonl"
# the finding's plan: --gpus 2 --tp-options 1 --batch-caps 128 --engine vllm --no-disagg (its --chunk-sizes 2048
# strategy, which failed alike, left out to keep the test short)
OPTS = PlanOptions(tp_options=(1,), tp_across_nodes=False, chunk_sizes=(), batch_caps=(128,), engine_default_cap=False,
                   disaggregated=False, engine="vllm")


@pytest.fixture(scope="module")
def mc400(tmp_path_factory) -> WorkloadSpec:
    """The finding's workload: the Mooncake conversation trace's first 400 requests (the bundled excerpt's)."""
    path = tmp_path_factory.mktemp("mooncake") / "mc400.jsonl"
    path.write_text("".join(EXCERPT.read_text().splitlines(keepends=True)[:400]))
    return workload_spec(str(path), "poisson", None, None, "fixed", "fixed", 0, 0, 0, context_tokens=131072)


def best(ttft_ms: float, tpot_ms: float, work: WorkloadSpec) -> dict[str, float]:
    result = plan(M, "h100-sxm", 2, Slo(ttft_ms, tpot_ms, math.inf), work, opts=OPTS, workers=1)
    return {r.strategy.name: r.goodput_rps for r in result.ranked}


def test_the_findings_looser_slos_still_find_the_default_strategy(mc400):
    """The finding's two commands: at 2000/50 vLLM's default held 0.87 req/s; at 3000/100 the plan said 'no strategy
    meets ...' and exited 1. Now both are feasible, and the default strategy holds at least its tighter rate."""
    tight, loose = best(2000, 50, mc400), best(3000, 100, mc400)
    default = "2x TP1 vllm default b128 bf16"
    assert tight[default] == pytest.approx(0.87, abs=0.01)
    assert loose[default] >= tight[default]
    assert max(loose.values()) >= max(tight.values()) > 0


@pytest.mark.parametrize("tight,loose", [((1500, 50), (2000, 100)), ((2000, 50), (2500, 100))])
def test_a_looser_slo_keeps_every_strategy_that_held(mc400, tight, loose):
    """Property over nested SLO pairs: every strategy that held a rate under the tighter SLOs holds one under the
    looser ones (on the old 0.8 floor, both looser plans ranked every strategy at 0)."""
    held_tight, held_loose = best(*tight, mc400), best(*loose, mc400)
    assert any(rate > 0 for rate in held_tight.values())
    for name, rate in held_tight.items():
        assert rate <= 0 or held_loose[name] > 0, f"{name}: {rate:.3f} req/s at {tight}, none at {loose}"


def test_verification_steps_down_past_a_fifth_below_the_search():
    """A search that overshot what the deployment holds by more than 25 % is verified at a lower step, not refused:
    one H100 holds about 25 req/s of 1024/128-token requests, so from a search's 50 req/s the 5 % ladder's step
    that holds lies below 0.8 of it (40 req/s, the old floor, fails), the step above it failing."""
    one = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    strategy = Strategy("1x TP1", one, one, 1, 1, "collocated")
    work, slo = WorkloadSpec((1024,), (128,), seed=0, name="1024/128"), Slo(1000, 50)
    searched = 50.0
    rate, att, run = verify(strategy, searched, work, slo, 0.9)
    assert run is not None and 0 < rate < 0.8 * searched and att >= 0.88
    share = rate / searched
    assert share == pytest.approx(round(share / VERIFY_STEP) * VERIFY_STEP)  # on the ladder
    assert run.binding_rps == pytest.approx(rate + VERIFY_STEP * searched)  # the step above failed


def test_a_rate_no_step_holds_is_still_refused():
    """The ladder ends at its last step above 0 (5 % of the search's rate): a search 40 x what one H100 holds (about
    25 req/s) is refused, (0, the last run's attainment, None)."""
    from phasewise.plan.windows import VERIFY_FACTORS  # (imported here: the tests above run on the old tree too)

    one = {"model": M, "instances": [{"role": "collocated", "hardware": "h100-sxm", "tp": 1, "replicas": 1}]}
    strategy = Strategy("1x TP1", one, one, 1, 1, "collocated")
    work, slo = WorkloadSpec((1024,), (128,), seed=0, name="1024/128"), Slo(1000, 50)
    rate, att, run = verify(strategy, 1000.0, work, slo, 0.9)
    assert (rate, run) == (0.0, None) and att < 0.88
    assert VERIFY_FACTORS[0] == 1.0 and VERIFY_FACTORS[-1] == pytest.approx(VERIFY_STEP) and len(VERIFY_FACTORS) == 20
