"""`phasewise fit-engine`: measured points in, an engine YAML out that --engine accepts; held-out error reported."""

from __future__ import annotations

import json
from importlib import resources

import pytest


@pytest.fixture
def points_file(tmp_path):
    path = tmp_path / "points.yaml"
    # Splitwise ran Llama-2-70B at 8,192-token prompts, past its 4,096-token context: the rows say the context served
    text = resources.files("phasewise.scenarios").joinpath("data", "splitwise_vllm.yaml").read_text()
    assert text.count("prompt: 8192, tbt_context: 8256, max_model_len: 8257,") == 4
    path.write_text(text)
    return path


def test_fit_engine_writes_an_engine_the_simulator_takes(run_cli, points_file, tmp_path):
    out = tmp_path / "engine.yaml"
    code, text, err = run_cli("fit-engine", str(points_file), "--engine", "hf-eager", "--params",
                              "per_sequence_overhead_s,eager_launch_s", "--out", str(out), "--json")
    assert code == 0, err
    result = json.loads(text)
    assert result["fit_runs"] == 8 and result["held_out_runs"] == 8
    held = result["summary"]["held-out"]
    # 2023 vLLM ran eager PyTorch: an eager profile's fitted host costs describe it on held-out runs (the vllm
    # preset, costed as it runs with its CUDA graphs, cannot be fitted to it by host constants alone)
    assert held["fitted_median"] < held["start_median"]
    assert {p["split"] for p in result["points"]} == {"fit", "held-out"}
    code, text, err = run_cli("simulate", "--engine", str(out), "--model", "meta-llama/Llama-2-70b-hf", "--tp", "8",
                              "--rate", "1", "--requests", "20", "--json")
    assert code == 0, err


@pytest.mark.parametrize("args, message", [
    (("--params", "cuda_graphs"), "cannot fit 'cuda_graphs'"),
    (("--holdout", "random"), "--holdout 'random' is not one of every-other, none"),
    (("--engine", "nope"), "nope"),
    (("--params", "eager_launch_s, eager_launch_s"), "--params names eager_launch_s twice"),
])
def test_fit_engine_bad_input_is_one_line(run_cli, points_file, args, message):
    code, _, err = run_cli("fit-engine", str(points_file), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_fit_engine_names_the_bad_row(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("points:\n  - {run: a, model: meta-llama/Llama-2-70b-hf, hardware: h100-sxm, ttft_ms: 50}\n")
    code, _, err = run_cli("fit-engine", str(bad))
    assert code == 2 and "points[0]" in err and "prompt and ttft_ms go together" in err


@pytest.mark.parametrize("value", [".inf", ".nan"])
def test_a_measured_time_must_be_finite(run_cli, tmp_path, value):
    """An infinite or NaN measured TTFT is one line naming it (benchmarks/fuzz_files.py found ttft_ms: .inf failing
    with a 'math domain error' in the fit)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("points:\n"
                   "  - {run: a, model: meta-llama/Llama-2-70b-hf, hardware: h100-sxm, prompt: 512, ttft_ms: 50}\n"
                   f"  - {{run: b, model: meta-llama/Llama-2-70b-hf, hardware: h100-sxm, prompt: 512, ttft_ms: {value}}}\n")
    code, _, err = run_cli("fit-engine", str(bad))
    assert code == 2 and "points[1]" in err and "ttft_ms" in err and len(err.strip().splitlines()) == 1
