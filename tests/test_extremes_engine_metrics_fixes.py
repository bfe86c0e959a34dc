"""Extremes review: an unquantized KV dtype an engine has no value for (fp32 on a bf16 model) is refused, not
simulated and then dropped from the launch command; the command writes the engine's explicit value where the
planned KV dtype is not what its `auto` keeps; a run of one request has no throughput or goodput (its duration is
its own end-to-end latency), where it read 58 req/s at an offered 1 req/s."""

import math

import numpy as np
import pytest

from phasewise.apps.launch import launch_commands
from phasewise.sim.api import run
from phasewise.sim.deployment import build_deployment
from phasewise.specs.engine_refusals import kv_dtype_refusal


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "vllm@0.10", "trtllm-0.5"])
def test_an_fp32_kv_cache_on_a_bf16_model_is_refused_naming_what_the_engine_keeps(engine):
    said = kv_dtype_refusal(engine, "fp32", "bf16")
    assert said and said.startswith("--kv-dtype fp32 is not possible on engine")
    assert "allowed: bf16, fp8" in said and "fp32" not in said.split("allowed:")[1]


def test_an_unquantized_kv_dtype_runs_where_it_is_the_models_or_the_engine_has_a_value_for_it():
    assert kv_dtype_refusal("vllm", "bf16", "bf16") is None  # auto
    assert kv_dtype_refusal("trtllm", "fp32", "fp32") is None  # --precision fp32: auto keeps fp32
    assert kv_dtype_refusal("sglang", "bf16", "fp16") is None  # SGLang's --kv-cache-dtype bfloat16
    assert "allowed: fp16, fp8" in kv_dtype_refusal("vllm", "bf16", "fp16")  # vLLM's bfloat16: fp8-default models
    assert "allowed: fp16, bf16, fp8" in kv_dtype_refusal("sglang", "fp32", "fp16")
    assert kv_dtype_refusal("ideal", "fp32", "bf16") is None  # a host profile keeps any


def test_the_quantized_refusal_names_the_models_dtype_not_every_unquantized_one():
    assert "(allowed: bf16, fp8;" in kv_dtype_refusal("vllm", "int8", "bf16")
    assert "(allowed: the model's dtype, fp8;" in kv_dtype_refusal("vllm", "int8")


def _launch(engine: str, kv: str, precision: str | None = None):
    inst = {"tp": 1, "engine": engine, "kv_dtype": kv, "hardware": "h100-sxm"}
    if precision:
        inst["precision"] = precision
    cmd = launch_commands(build_deployment({"model": "Qwen/Qwen3-0.6B", "instances": [inst]}))[0][0]
    kv_arg = cmd.argv[cmd.argv.index("--kv-cache-dtype") + 1] if "--kv-cache-dtype" in cmd.argv else None
    return kv_arg, cmd.comments


def test_the_launch_writes_an_unquantized_kv_dtype_that_is_not_what_auto_keeps():
    """SGLang serving fp16 (--dtype float16) with a bf16 KV cache: `auto` would keep fp16, so bfloat16 is written;
    before, every unquantized dtype was taken for `auto`'s."""
    assert _launch("sglang", "bf16", "fp16")[0] == "bfloat16"
    assert _launch("sglang", "bf16")[0] is None  # the model's own dtype: auto


def test_a_host_profiles_kv_dtype_the_engine_cannot_write_is_a_note():
    kv_arg, comments = _launch("ideal", "fp32")
    assert kv_arg is None
    assert any("kv_dtype fp32" in c and "auto keeps bf16" in c for c in comments), comments


def test_one_request_has_no_throughput_or_goodput():
    s = run(model="Qwen/Qwen3-0.6B", rate=1, requests=1, isl=100, osl=10).summary()
    assert s["completed"] == 1 and 0 < s["duration_s"] < 1  # its own end-to-end latency, kept
    assert all(math.isnan(v) for v in (s["throughput"]["requests_per_s"], s["throughput"]["output_tokens_per_s"],
                                       s["goodput"]["requests_per_s"]))
    assert np.isfinite(s["throughput"]["output_tokens_per_joule"])  # tokens over energy: no duration in it


def test_two_requests_keep_the_clients_rate():
    s = run(model="Qwen/Qwen3-0.6B", rate=1, requests=2, isl=100, osl=10).summary()
    assert s["throughput"]["requests_per_s"] == pytest.approx(2 / s["duration_s"])


def test_a_diffusion_lm_run_of_one_request_has_no_rate_either(run_cli):
    # simulate --dllm's summary counted 1 / the request's E2E as req/s (0.22 at 1 req/s offered), as simulate did
    code, out, _ = run_cli("simulate", "--dllm", "fast-dllm", "--model", "GSAI-ML/LLaDA-8B-Instruct", "--requests", "1",
                           "--rate", "1")
    assert code == 0 and "no rate from one request" in out and "req/s" not in out.splitlines()[1]
    code, out, _ = run_cli("simulate", "--dllm", "fast-dllm", "--model", "GSAI-ML/LLaDA-8B-Instruct", "--requests", "2",
                           "--rate", "1")
    assert code == 0 and " req/s, " in out
