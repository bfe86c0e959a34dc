"""benchmarks/validate_concurrency.py: `--with` candidates enter `--fit` (session 108 noted that fit() started from
--constants alone, so a `--with KEY.FIELD=VALUE` beside `--fit` changed only the unfitted column)."""

from __future__ import annotations

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def vc():
    module = load_benchmark("validate_concurrency")
    yield module
    module.restore_constants()


def fake_case(engine: str = "sglang") -> dict:
    return {"engine": engine, "split": "fit", "concurrency": 4, "requests": 40, "osl": 64,
            "measured_ttft_ms": 100.0, "measured_tpot_ms": 10.0}


def recording_evaluate(seen: list[dict]):
    def evaluate(cases, constants, pool):
        seen.append(constants)
        return [{"ttft": 100.0, "tpot": 10.0} for _ in cases]
    return evaluate


def test_a_with_candidate_stays_in_every_fit_evaluation(vc, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(vc, "evaluate", recording_evaluate(seen))
    start = vc.with_overrides({"base": "catalog"}, ["engine:sglang.activation_quant_kernels=1"])
    fitted = vc.fit([fake_case()], start, None, evals=2, sweeps=1, rounds=None, only=("engine:sglang.eager_launch_s",))
    assert seen and all(c["engine:sglang"]["activation_quant_kernels"] == 1.0 for c in seen)
    assert all(c["base"] == "catalog" for c in seen)
    assert fitted["engine:sglang"]["activation_quant_kernels"] == 1.0 and "eager_launch_s" in fitted["engine:sglang"]


def test_a_fitted_constant_starts_at_its_with_value(vc, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(vc, "evaluate", recording_evaluate(seen))
    start = vc.with_overrides({"base": "catalog"}, ["engine:sglang.eager_launch_s=3e-5"])
    vc.fit([fake_case()], start, None, evals=2, sweeps=1, rounds=None, only=("engine:sglang.eager_launch_s",))
    assert seen[0]["engine:sglang"]["eager_launch_s"] == 3e-5  # the start loss is the candidate's


def test_no_fit_row_of_an_engine_fits_none_of_its_constants(vc, monkeypatch):
    monkeypatch.setattr(vc, "evaluate", recording_evaluate([]))
    start = vc.with_overrides({"base": "catalog"}, ["engine:trtllm.eager_launch_s=3e-5"])
    fitted = vc.fit([fake_case("sglang")], start, None, evals=2, sweeps=1, rounds=None, only=("engine:",))
    assert fitted["engine:trtllm"] == {"eager_launch_s": 3e-5}  # the candidate kept, nothing of trtllm fitted
