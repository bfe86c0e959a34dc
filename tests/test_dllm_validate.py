"""`phasewise validate --dllm`: bidirectional forwards of a real model against the cost model (measure/dllm_check.py).

The quick run's bound is a smoke bound, not the accuracy claim. CI has no calibration, so the run is predicted
on the catalog's class-default CPU entry (`cpu-local`: MEASURING.md's figures for a Zen 1 core, 35 GFLOP/s
fp32), which any other CPU misses by its speed ratio: on this machine's Zen 5 core calibrate measures ~100
GFLOP/s and the tiny model's CPU time is ~2x below that entry's prediction on its slow days, 3.5-3.7x below on its
fast ones (2026-12-01: `sum(range(10**6))` 14.5 ms vs 27-55 ms on others; predicted 39.9 / 70.1 ms vs 10.7-11.3 /
18.9 ms of CPU time). The bound is therefore "the same order": within a factor of 5 of the CPU time (the wall time
on a shared 2-core machine is inflated 2-3x by other jobs). The accuracy figures (a full calibrate, then the
default CPU-sized model) are in the README, from the command, not from CI.
"""

import json
import math

import pytest

from phasewise.perf import BatchShape, CostModel
from phasewise.specs import load_engine, load_hardware, load_model, load_quant

SMOKE_FACTOR = 5.0  # prediction on the class-default entry within this factor of the CPU time (see the docstring)


def test_a_bidirectional_forward_is_costed_over_every_pair_and_its_logits():
    from phasewise.measure.dllm_check import forward_shape

    block = forward_shape(2, 32, 128, 32)
    assert block.prefill_pairs == 2 * 32 * (128 + 32) and block.logit_tokens == 64 and block.prefill_seqs == 2
    refresh = forward_shape(1, 384, 0, 256)
    assert refresh.prefill_pairs == 384 * 384 and refresh.logit_tokens == 256
    causal = BatchShape.uniform(1, 384, 0)  # the same forward with a causal mask
    causal.logit_tokens = 256
    cm = CostModel(load_model("GSAI-ML/LLaDA-8B-Instruct"), load_hardware("cpu-local"), load_quant("fp32"),
                   load_engine("hf-eager"))
    full, half = (next(op for op in cm.iteration(s).operators if op.name == "attention") for s in (refresh, causal))
    assert full.flops == pytest.approx(half.flops * 384 * 384 / (384 * 385 / 2))
    assert cm.iteration(refresh).latency_s > cm.iteration(causal).latency_s


@pytest.fixture(scope="module")
def hf_modules():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    return torch, transformers


def _tiny_llama(transformers, bidirectional: bool):
    from phasewise.measure.dllm_check import make_bidirectional

    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=2, vocab_size=256, max_position_embeddings=512)
    model = transformers.LlamaForCausalLM(cfg).eval()
    return make_bidirectional(model) if bidirectional else model


def test_the_switched_model_attends_both_ways_and_a_causal_one_does_not(hf_modules):
    from phasewise.measure.dllm_check import bidirectionality

    torch, transformers = hf_modules
    torch.manual_seed(0)
    assert bidirectionality(_tiny_llama(transformers, True), transformers, torch) == {"full": True, "block": True}
    assert bidirectionality(_tiny_llama(transformers, False), transformers, torch) == {"full": False, "block": False}


def test_quick_dllm_validate_json(hf_modules, run_cli):
    code, out, err = run_cli("validate", "--dllm", "--quick", "--hardware", "cpu-local", "--layers", "1",
                             "--hidden", "128", "--prompt", "32", "--canvas", "32", "--blocks", "32,64", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["info"]["bidirectional"] == {"full": True, "block": True}
    assert d["info"]["model"].startswith("GSAI-ML/LLaDA-8B-Instruct")
    assert [(p["kind"], p["new"], p["cached"], p["logit_tokens"]) for p in d["points"]] == [
        ("block", 32, 32, 32), ("block", 64, 32, 64), ("refresh", 64, 0, 32)]
    for key in ("block_median_abs_error", "block_worst_abs_error", "refresh_median_abs_error", "cpu_median_abs_error",
                "unfitted_median_abs_error", "median_abs_error", "worst_abs_error"):
        assert math.isfinite(d["summary"][key])
    for p in d["points"]:
        assert 0 < p["cpu_ms"] <= p["measured_ms"] * 1.05  # the thread's CPU time fits in the wall time (5 %: clocks)
        assert p["unfitted_predicted_ms"] > 0 and math.isfinite(p["error"]) and math.isfinite(p["unfitted_error"])
        assert 1 / SMOKE_FACTOR < p["predicted_ms"] / p["cpu_ms"] < SMOKE_FACTOR, p


@pytest.mark.parametrize("args, needle", [
    (("--serve",), "--serve"),
    (("--pipeline", "2"), "--pipeline"),
    (("--device", "cuda"), "--device cpu"),
    (("--blocks", "32,x"), "--blocks"),
    (("--blocks", "0"), "--blocks"),
    (("--threads", "2", "--layers", "1", "--hidden", "128"), "--threads"),
])
def test_dllm_flag_errors_are_one_line(run_cli, args, needle):
    code, out, err = run_cli("validate", "--dllm", *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
