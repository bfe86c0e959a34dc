"""Fixes from the structure review: one ridge, one roofline, one log error, one pairs count, one version parser, one
KV-bytes formula; sources for the efficiency and quantization defaults; slotted state with names in their own words;
dead code gone."""

from __future__ import annotations

import math
import sys
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import load_benchmark

from phasewise.errors import PhasewiseError
from phasewise.perf import BatchShape
from phasewise.perf.batch import attention_pairs, windowed_pairs
from phasewise.perf.cost import CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged

ROOT = Path(__file__).resolve().parents[1]
LLAMA2 = "meta-llama/Llama-2-7b-hf"


# --- 1. one ridge -------------------------------------------------------------------------------------------------
def test_the_ridge_is_the_compute_dtypes_peak_over_bandwidth_everywhere():
    """`estimate --precision fp8` printed the FP8 ridge (590.7 FLOP/B on an H100) while HardwareSpec's was BF16's
    (295.3) whatever the dtype: one method taking the dtype, which estimate, perf/dllm.py and Jupiter call."""
    from phasewise.perf.dllm import ridge_flops_per_byte
    from phasewise.perf.estimate import estimate

    hw = load_hardware("h100-sxm")
    assert hw.ridge_flops_per_byte("fp8") == pytest.approx(hw.peak("fp8") / hw.memory_bandwidth_bytes_per_s)
    assert hw.ridge_flops_per_byte("fp8") == pytest.approx(2 * hw.ridge_flops_per_byte("bf16"), rel=1e-3)
    est = estimate(LLAMA2, "h100-sxm", precision="fp8")
    assert est.to_dict()["ridge_flops_per_byte"] == hw.ridge_flops_per_byte("fp8")
    assert ridge_flops_per_byte(est.cost_model) == hw.ridge_flops_per_byte("fp8")
    with pytest.raises(PhasewiseError, match="no fp4 compute path"):
        hw.ridge_flops_per_byte("fp4")


# --- 2. one roofline ----------------------------------------------------------------------------------------------
def test_spads_roofline_is_the_perf_layers_pure_roofline():
    """scenarios/spad.py computed its own per-operator roofline (18.70 ms for a 512-token Llama-2-70B TP8 prefill on
    the H100 model) beside perf/fit.py's (22.15 ms): it now takes perf's roofline_cost."""
    from phasewise.perf.fit import LatencyPoint, predict_ms, roofline_cost
    from phasewise.scenarios import get_scenario
    from phasewise.scenarios.spad import prefill_latencies

    setup = dict(get_scenario("spad").resolve({}), prompts=[512])
    spad = prefill_latencies(setup, {"h100": setup["h100"]})["h100"]["roofline"][0]
    point = LatencyPoint("x", "prefill", setup["model"], setup["h100"], setup["tp"], 1, 512, 1.0, setup["precision"])
    assert spad * 1e3 == pytest.approx(predict_ms(point, load_engine(setup["engine"]), True))
    roof = roofline_cost(load_model(setup["model"]), load_hardware(setup["h100"]), load_quant(setup["precision"]),
                         setup["tp"])
    assert spad == roof.fast(BatchShape.uniform(1, 512, 0))[0]


# --- 3. one log error ---------------------------------------------------------------------------------------------
def test_one_log_error_for_the_fit_and_validate_public(monkeypatch):
    from phasewise.perf import fit

    assert fit.log_error(2.0, 1.0) == pytest.approx(math.log(2.0)) == pytest.approx(fit.log_error(1.0, 2.0))
    try:  # its dataclasses look their module up
        vp = load_benchmark("validate_public", module_name="validate_public_structure", register=True)
    finally:
        sys.modules.pop("validate_public_structure", None)
    assert vp.log_error is fit.log_error


def test_fit_engines_loss_is_the_mean_log_error():
    from phasewise.perf.fit import LatencyPoint, fit_engine, log_error

    points = [LatencyPoint("a", "decode", LLAMA2, "h100-sxm", 1, 1, 512, 9.0, "bf16"),
              LatencyPoint("b", "decode", LLAMA2, "h100-sxm", 1, 8, 512, 11.0, "bf16")]

    def predict(point, engine):
        return 10.0 * engine.compute_efficiency

    result = fit_engine(points, load_engine("vllm"), ("compute_efficiency",), rounds=2, predict=predict, sweeps=1)
    engine = result.engine
    assert result.loss == pytest.approx(sum(log_error(predict(p, engine), p.measured_ms) for p in points) / 2)


# --- 4. one pairs count -------------------------------------------------------------------------------------------
class _Running:
    def __init__(self, contexts):
        self.values = np.asarray(contexts, dtype=np.float64)
        self.n = self.values.size

    def contexts(self, step, accepted):
        return self.values + accepted * step


def _decoding_set(contexts, new, window=None, capped=0, causal=True):
    return SimpleNamespace(running=_Running(contexts), decode_new_tokens=new, window=window, tokens_per_step=1.0,
                           decode_steps=0, model=SimpleNamespace(causal=causal), capped_keys=capped,
                           context_base_sum=float(sum(contexts)),
                           _decoding_contexts=lambda step: float(sum(contexts)) + len(contexts) * step)


@pytest.mark.parametrize("causal", [True, False])
def test_the_decoding_set_counts_pairs_as_attention_pairs_does(causal):
    """1,000 cached + 4 new under a 4,096 window: 4,010 causal pairs (attention_pairs), where the windowed branch
    counted 4,016 (keys x new, the causal triangle dropped)."""
    from phasewise.sim.decoding_set import DecodingSet

    contexts, new = [1000, 4094, 5000, 30], 4
    for window in (None, 4096):
        pairs, kv = DecodingSet._decode_sums(_decoding_set(contexts, new, window, causal=causal))
        assert pairs == sum(attention_pairs(new, c, causal, window) for c in contexts)
        assert kv == sum(min(c + new, window or math.inf) for c in contexts)
    assert DecodingSet._decode_sums(_decoding_set([1000], 4, 4096))[0] == 4010


def test_capped_keys_series_counts_each_steps_pairs_exactly():
    """A hybrid stack's windowed layers over a run of decode steps: each sequence's pairs at each step as
    attention_pairs counts them, contexts crossing the window during the run included."""
    from phasewise.sim.decoding_set import DecodingSet

    contexts, new, window = [10, 4090, 4093, 5000, 200], 3, 4096
    steps = np.arange(12, dtype=np.float64)
    pairs, kv = DecodingSet._capped_keys_series(_decoding_set(contexts, new, capped=window), steps)
    for i, step in enumerate(steps.astype(int)):
        assert pairs[i] == sum(attention_pairs(new, c + step, True, window) for c in contexts)
        assert kv[i] == sum(min(c + step + new, window) for c in contexts)


def test_windowed_pairs_is_attention_pairs_summed():
    rng = np.random.default_rng(0)
    keys = rng.integers(1, 300, 40).astype(np.float64) + 8
    grown = np.arange(0, 60, 3, dtype=np.float64)
    for causal in (True, False):
        got = windowed_pairs(8, keys, causal, 128, grown)
        want = [sum(attention_pairs(8, int(k + g) - 8, causal, 128) for k in keys) for g in grown]
        assert got.tolist() == want


# --- 5. one version parser ----------------------------------------------------------------------------------------
def test_one_engine_version_parser_orders_release_candidates_before_the_release():
    """specs/engine_kv.py read '0.11.0rc1' as (0, 11), apps/launch_args.py as (0, 11, 0, 1): one public parser."""
    from phasewise.apps import launch_args
    from phasewise.specs.engine_kv import version_key

    order = ["paper", "0.10.2", "0.11.0rc1", "0.11", "0.11.0.post1", "0.11.1", "1.0.0rc3", "1.0"]
    assert sorted(reversed(order), key=version_key) == order
    assert version_key("0.11") == version_key("0.11.0")
    assert launch_args.version_key is version_key
    # a flag SGLang has from 0.5.8: a 0.5.8 release candidate has it not yet
    assert launch_args.version_needs("sglang", ["--enable-prefill-delayer"], "0.5.8rc1")
    assert not launch_args.version_needs("sglang", ["--enable-prefill-delayer"], "0.5.8")


# --- 6. one KV-bytes formula --------------------------------------------------------------------------------------
def test_mapped_cost_takes_kv_bytes_from_kv_geometry(monkeypatch):
    from phasewise.perf import mapping
    from phasewise.perf.kv_geometry import kv_bytes_per_token_layer
    from phasewise.specs.mappings import load_mapping

    cm = CostModel(load_model(LLAMA2), load_hardware("halo-2.5d"), load_quant("int8", "int8"), load_engine("ideal"))
    assert mapping.MappedCost(cm, load_mapping("halo")).kv_bytes_per_token == kv_bytes_per_token_layer(
        cm.model, cm.quant, cm.tp)
    monkeypatch.setattr(mapping, "kv_bytes_per_token_layer", lambda model, quant, tp: 1234.0)
    assert mapping.MappedCost(cm, load_mapping("halo")).kv_bytes_per_token == 1234.0


# --- 7. every default with its source -----------------------------------------------------------------------------
def test_efficiency_and_quant_defaults_name_their_source():
    efficiency = packaged("efficiency.yaml")
    sources = efficiency["defaults"]["gpu"]["sources"]
    for key in ("gemm_half_rows", "memory_half_bytes", "attention_half_tokens", "vector_efficiency",
                "dequant_tile_rows"):
        assert sources.get(key), key
    h100 = efficiency["hardware"]["h100-sxm"]["sources"]["kernel_launch_s"]
    assert "held-out Hopper rows" not in h100 and "selection rows, not held out" in h100
    b200 = efficiency["hardware"]["b200"]["sources"]["fit"]
    assert "119 runs of 8 configurations" in b200 and "Qwen3-32B BF16 TP2 on GB200" in b200
    header = (ROOT / "src/phasewise/specs/data/quant.yaml").read_text().split("\nschemes:")[0]
    assert "INT4 -> BF16 4" in header and "INT8 -> BF16 2" in header and "table lookup, scale = 2" in header


# --- 8. slotted state, names in their own words -------------------------------------------------------------------
def test_state_is_slotted_and_named_in_its_own_words():
    from phasewise.apps.twin_live import TwinMetrics
    from phasewise.measure.serve import Req
    from phasewise.sim.device_cloud import UShapedCost
    from phasewise.sim.load_predictor import LoadPredictor

    assert "__slots__" in vars(TwinMetrics)
    with pytest.raises(AttributeError):
        TwinMetrics().unknown = 1
    assert LoadPredictor("kalman").measurement_noise == 10.0
    assert not hasattr(LoadPredictor(), "r")
    assert "u_stages" in UShapedCost.__slots__ and "u" not in UShapedCost.__slots__
    names = {f.name for f in fields(Req)}
    assert {"keys", "values"} <= names and not {"k", "v"} & names
    source = (ROOT / "src/phasewise/measure/train_reuse.py").read_text()
    assert "self.lora_a" in source and "self.a " not in source


def test_a_kalman_predictor_reads_its_measurement_noise():
    from phasewise.sim.load_predictor import LoadPredictor

    quiet, noisy = LoadPredictor("kalman"), LoadPredictor("kalman", measurement_noise=1e6)
    for value in (10.0, 20.0, 30.0, 40.0):
        quiet.observe(value)
        noisy.observe(value)
    assert quiet.predict() > noisy.predict()


# --- 9. dead code -------------------------------------------------------------------------------------------------
def test_dead_helpers_are_gone():
    from phasewise.perf.dllm import DllmCost
    from phasewise.specs.compressed_attention import CompressedAttention

    assert not hasattr(DllmCost, "refresh_s")
    assert not hasattr(CompressedAttention, "sliding_layers")

