"""Review fixes of calibrate, validate and fit-engine (the measuring review), each reproduced first:
calibrate's decode attention read one tensor as K and V from a warm cache and clamped the result to 1, and its YAML
dropped the measurements; fit-engine overwrote its own inputs, stopped on a flat start and wrote a constant no point
determines as fitted; plain validate had no worst or unfitted error, --dllm --quick ignored its quick blocks, --serve
failed on a hardware-only YAML after the whole real loop, and a GPU entry was accepted for a CPU run."""

from __future__ import annotations

import copy
import json
from importlib import resources

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.fit import LatencyPoint, fit_engine, running_costs
from phasewise.specs import load_engine

SPLITWISE = resources.files("phasewise.scenarios").joinpath("data", "splitwise_vllm.yaml")


# --- 1. calibrate: decode attention, and the measurements in the YAML -------------------------------------------

def test_decode_attention_reads_distinct_k_and_v_from_a_pool():
    """Each timed call gets its own K and V tensors (never K is V), from a pool of pairs past the pool size, and
    the bytes credited are those two tensors once each."""
    torch = pytest.importorskip("torch")
    from phasewise.measure import calibrate as cal

    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((id(k), id(v), k is v))
        return real(q, k, v, *args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        ctx, esize = 16, 4
        pair = 2 * cal.DECODE_BATCH * cal.PROBE_HEADS * ctx * cal.PROBE_HEAD_DIM * esize
        fractions = cal.decode_attention_fractions(torch, torch.device("cpu"), torch.float32, esize, lambda: None, 1,
                                                   1e9, 4 * pair, (ctx,), lambda _m: None)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
    assert not any(same for *_, same in seen)
    assert len({k for k, _, _ in seen}) == 4  # the pool: 4 pairs used round-robin
    assert set(fractions) == {ctx} and fractions[ctx] > 0


def test_decode_attention_efficiency_is_the_long_context_value_and_never_a_silent_clamp():
    from phasewise.measure.calibrate import decode_attention_efficiency

    # old rule: min(1, max(...)) -> 0.9 from the short context; decode reads a long cache: the longest context's
    assert decode_attention_efficiency({256: 0.9, 2048: 0.4}) == (0.4, "")
    value, warning = decode_attention_efficiency({256: 0.5, 2048: 1.3})
    assert value == 1.0 and "1.30x the measured memory bandwidth" in warning and "wrong" in warning


def test_calibrate_writes_its_measurements_and_the_attention_sources(run_cli, monkeypatch, tmp_path):
    """calibrate's YAML keeps the raw measurements (under measurements:, which the readers accept) and says what the
    attention fields came from; a warning is printed and kept with them."""
    pytest.importorskip("torch")
    from phasewise.measure import calibrate as cal
    from phasewise.specs import load_hardware

    entry = yaml.safe_load(resources.files("phasewise.specs").joinpath("data", "hardware_specs.yaml").read_text())
    cpu = dict(entry["hardware"]["cpu-local"], sources={"attention_memory_efficiency": "measured: 2048: 0.4"},
               efficiency={"gemm_efficiency_curve": [[1.0, 0.1], [64.0, 0.5]], "kernel_launch_s": 1e-5,
                           "attention_memory_efficiency": 0.4})
    engine = {"iteration_overhead_s": 1e-4, "per_sequence_overhead_s": 0.0, "eager_launch_s": 0.0}
    fake = {"hardware": {"cpu-local": cpu}, "engines": {"cpu-local-eager": engine},
            "measurements": {"decode_attention_bandwidth_fraction_by_context": {256: 0.5, 2048: 0.4},
                             "copy_bytes_per_s_by_size": {65536.0: 1.23456789e10}, "iteration_overhead_s": 1e-4,
                             "warnings": ["a warning"]}}
    monkeypatch.setattr(cal, "calibrate", lambda *a, **k: copy.deepcopy(fake))
    out = tmp_path / "hw.yaml"
    code, text, err = run_cli("calibrate", "--quick", "--out", str(out))
    assert code == 0, err
    assert "warning: a warning" in " ".join(text.split())
    data = yaml.safe_load(out.read_text())
    assert data["measurements"]["decode_attention_bandwidth_fraction_by_context"] == {"256": 0.5, "2048": 0.4}
    assert data["measurements"]["copy_bytes_per_s_by_size"] == {"65536": 1.235e10}
    assert data["measurements"]["warnings"] == ["a warning"]
    hw = load_hardware(str(out))  # still a loadable hardware (and engine) file
    assert hw.sources["attention_memory_efficiency"] == "measured: 2048: 0.4"
    assert hw.efficiency.attention_memory_efficiency == 0.4
    assert load_engine(str(out)).iteration_overhead_s == 1e-4


# --- 2-4. fit-engine ---------------------------------------------------------------------------------------------

def test_fit_engine_out_never_overwrites_its_inputs(run_cli, tmp_path):
    points = tmp_path / "pts.yaml"
    points.write_text(SPLITWISE.read_text())
    before = points.read_text()
    code, _, err = run_cli("fit-engine", str(points), "--out", str(points))
    assert code != 0 and "would overwrite POINTS" in err and "Traceback" not in err
    assert points.read_text() == before
    engine = tmp_path / "e.yaml"
    code, _, err = run_cli("fit-engine", str(points), "--out", str(engine), "--json")
    assert code == 0, err
    written = engine.read_text()
    for spelling in (str(engine), f"{engine}@0.12"):
        code, _, err = run_cli("fit-engine", str(points), "--engine", spelling, "--out", str(engine))
        assert code != 0 and "would overwrite --engine" in err
        assert engine.read_text() == written


def _flat_then_sloped(point: LatencyPoint, engine) -> float:
    """A host time that overlaps a 10 ms device time (max): flat below 1e-4 s a sequence."""
    return max(10.0, engine.per_sequence_overhead_s * 1e3 * 100 * point.batch)


def test_fit_escapes_a_flat_start():
    """Started at 1e-5 s (1 ms of host under 10 ms of device), the old pattern search saw no change at x4 and /4 and
    stopped there; the coarse grid finds the slope and the minimum (50 ms measured: 5e-4 s)."""
    start = load_engine("vllm-2023").model_copy(update={"per_sequence_overhead_s": 1e-5})
    points = [LatencyPoint(r, "decode", "m", "h", 1, 1, 128, 50.0) for r in ("A", "B")]
    fit = fit_engine(points, start, ("per_sequence_overhead_s",), predict=_flat_then_sloped)
    assert fit.values["per_sequence_overhead_s"] == pytest.approx(5e-4, rel=1e-3)
    assert fit.loss < 1e-3 and fit.undetermined == ()


def test_fit_engine_on_splitwise_leaves_the_preset_start():
    """The reviewer's case: `fit-engine splitwise_vllm.yaml` returned the preset's 1e-05 s at a loss of 0.4496, where
    7e-4 s gives 0.3233."""
    from phasewise.apps.fit_view import run_fit

    result = run_fit(str(SPLITWISE), "vllm", "per_sequence_overhead_s,eager_launch_s,elementwise_passes",
                     "every-other")
    assert result["values"]["per_sequence_overhead_s"] > 1e-4
    assert result["summary"]["fit"]["fitted_median"] < 0.2  # 21.6 % before


def _ignores_collectives(point: LatencyPoint, engine) -> float:
    return 5.0 + engine.iteration_overhead_s * 1e3


def test_a_constant_no_point_responds_to_is_undetermined_not_fitted():
    start = load_engine("vllm-2023").model_copy(update={"iteration_overhead_s": 1e-3, "collective_overhead_s": 0.0})
    points = [LatencyPoint(r, "decode", "m", "h", 1, 1, 128, 7.0) for r in ("A", "B")]
    fit = fit_engine(points, start, ("iteration_overhead_s", "collective_overhead_s"), predict=_ignores_collectives)
    assert fit.undetermined == ("collective_overhead_s",)
    assert fit.values["collective_overhead_s"] == 0.0  # its start value, not the 1e-6 placeholder
    assert fit.fitted == {"iteration_overhead_s": pytest.approx(2e-3, rel=1e-3)}


@pytest.fixture
def tp1_points(tmp_path):
    rows = [{"run": r, "model": "Qwen/Qwen3-0.6B", "hardware": "h100-sxm", "tp": 1, "batch": b, "prompt": 512,
             "ttft_ms": t, "tbt_context": 512, "tbt_ms": d} for r, b, t, d in (("A", 1, 30.0, 8.0),
                                                                                 ("B", 8, 90.0, 9.0),
                                                                                 ("C", 4, 60.0, 8.5))]
    path = tmp_path / "tp1.yaml"
    path.write_text(yaml.safe_dump({"points": rows}))
    return path


def test_fit_engine_never_writes_an_undetermined_constant_as_fitted(run_cli, tp1_points, tmp_path):
    out = tmp_path / "fit.yaml"
    code, text, err = run_cli("fit-engine", str(tp1_points), "--engine", "vllm", "--params",
                              "per_sequence_overhead_s,collective_overhead_s", "--out", str(out), "--json")
    assert code == 0, err
    result = json.loads(text)
    start, _ = running_costs(yaml.safe_load(tp1_points.read_text()), "vllm", "points")
    assert "collective_overhead_s" not in result["values"]
    assert result["undetermined"] == {"collective_overhead_s": start.collective_overhead_s}  # not the 1e-6 placeholder
    (entry,) = yaml.safe_load(out.read_text())["engines"].values()
    assert "collective_overhead_s" not in entry  # the preset's own value, as the file runs
    assert ("not determined by these points (left at the start value): collective_overhead_s "
            f"{start.collective_overhead_s:.4g}") in " ".join(entry["source"].split())
    assert "collective_overhead_s" not in entry["source"].split(" fitted on ")[0]
    code, _, err = run_cli("fit-engine", str(tp1_points), "--params", "collective_overhead_s")
    assert code != 0 and "no fit point responds to it" in err and "tp > 1" in err


# --- 5-8. validate -----------------------------------------------------------------------------------------------

def test_plain_validate_summary_has_worst_and_unfitted():
    from phasewise.measure.validate import Point, summary

    points = [Point("prefill", 1, 64, 1.0, 1.1, 2.0), Point("prefill", 1, 256, 1.0, 0.7, 1.5),
              Point("decode", 1, 64, 1.0, 1.05, 0.5)]
    stats = summary(points)
    assert stats["prefill_median_abs_error"] == pytest.approx(0.2)
    assert stats["prefill_worst_abs_error"] == pytest.approx(0.3)
    assert stats["prefill_unfitted_median_abs_error"] == pytest.approx(0.75)
    assert stats["prefill_unfitted_worst_abs_error"] == pytest.approx(1.0)
    assert stats["worst_abs_error"] == pytest.approx(0.3) and stats["unfitted_worst_abs_error"] == pytest.approx(1.0)
    assert stats["median_abs_error"] == pytest.approx(0.1)
    # a CUDA run has no unfitted entry: only the calibrated figures
    assert not [k for k in summary([Point("decode", 1, 64, 1.0, 1.1)]) if "unfitted" in k]


def test_validate_predicts_on_the_unfitted_pair_beside_the_calibrated():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from phasewise.measure.validate import validate

    points, info = validate("meta-llama/Llama-2-7b-hf", "cpu-local", layers=1, hidden=64, engine="vllm",
                            grid={"prefill": [(1, 8)], "decode": [(1, 8)]})
    assert (info["unfitted_hardware"], info["unfitted_engine"]) == ("cpu-local", "hf-eager")
    assert all(p.unfitted_s > 0 and p.unfitted_s != p.predicted_s for p in points)


def test_pipeline_summary_has_unfitted():
    from phasewise.measure.pipeline_validate import PipelinePoint, pipeline_summary

    stats = pipeline_summary([PipelinePoint("ttft", 20.0, 1, 1.0, 1.1, 3.0), PipelinePoint("decode", 20.0, 1, 1.0,
                                                                                               0.9, 0.5)])
    assert stats["ttft_unfitted_median_abs_error"] == pytest.approx(2.0)
    assert stats["unfitted_worst_abs_error"] == pytest.approx(2.0)
    assert stats["worst_abs_error"] == pytest.approx(0.1)


def test_dllm_quick_gets_its_quick_blocks(run_cli, monkeypatch):
    from phasewise.apps import dllm_validate_view

    seen = {}
    monkeypatch.setattr(dllm_validate_view, "run_dllm_validate", lambda *args, **kw: seen.update(blocks=args[9]))
    code, _, err = run_cli("validate", "--dllm", "--quick", "--hardware", "cpu-local")
    assert code == 0, err
    assert seen["blocks"] is None  # dllm_validate then picks QUICK_BLOCKS (or BLOCKS without --quick)
    assert dllm_validate_view._blocks(None) is None and dllm_validate_view._blocks("8,16") == [8, 16]


@pytest.fixture
def hardware_only_yaml(tmp_path):
    catalog = yaml.safe_load(resources.files("phasewise.specs").joinpath("data", "hardware_specs.yaml").read_text())
    path = tmp_path / "hw-only.yaml"
    path.write_text(yaml.safe_dump({"hardware": {"cpu-local": catalog["hardware"]["cpu-local"]}}))
    return path


def test_serve_resolves_its_engine_by_the_one_rule_before_timing(monkeypatch, hardware_only_yaml, tmp_path):
    """A hardware-only YAML (no engines:) runs on hf-eager, as validate's other checks do; an engine file that is
    wrong fails before the real loop is timed, not after it."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from phasewise.measure import serve

    out = serve.serve_check("meta-llama/Llama-2-7b-hf", str(hardware_only_yaml), layers=1, hidden=64, clients=1,
                            requests=2, prompt=8, output=2, repeats=1)
    assert out["simulated"]["duration_s"] > 0
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump({"hardware": yaml.safe_load(hardware_only_yaml.read_text())["hardware"],
                                   "engines": {"a": {"iteration_overhead_s": 1e-4},
                                               "b": {"iteration_overhead_s": 2e-4}}}))

    def timed(*_a, **_k):
        raise AssertionError("the real loop ran before the engine was resolved")

    monkeypatch.setattr(serve, "run_real", timed)
    with pytest.raises(PhasewiseError, match="exactly one entry under 'engines:'"):
        serve.serve_check("meta-llama/Llama-2-7b-hf", str(two), layers=1, hidden=64, clients=1, requests=2, prompt=8,
                          output=2, repeats=1)


def test_a_gpu_entry_is_refused_for_a_cpu_run(run_cli):
    from phasewise.measure.validate import cpu_cost_models, timed_hardware
    from phasewise.specs import load_model

    with pytest.raises(PhasewiseError, match="--hardware 'h100-sxm' is a gpu entry .* --device cpu times this CPU"):
        timed_hardware("h100-sxm", "cpu")
    with pytest.raises(PhasewiseError, match="an entry of kind cpu"):
        cpu_cost_models(load_model("meta-llama/Llama-3.1-8B"), "h100-sxm")  # --dllm, --vision, --recurrent, ...
    assert timed_hardware("cpu-local", "cpu").kind == "cpu"
    with pytest.raises(PhasewiseError, match="an entry of kind gpu or edge"):
        timed_hardware("cpu-local", "cuda")
    assert timed_hardware("jetson-agx-orin", "cuda").kind == "edge"
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    for extra in ((), ("--dllm",)):
        code, _, err = run_cli("validate", *extra, "--hardware", "h100-sxm", "--layers", "1", "--hidden", "128",
                               "--quick", "--json")
        assert code != 0 and "is a gpu entry" in err and "Traceback" not in err, err
