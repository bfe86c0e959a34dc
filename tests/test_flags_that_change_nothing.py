"""Input a command would otherwise accept and then ignore, misread or run to exhaustion: each a one-line error naming
the flag the user gave (a KV dtype the engine has no cache for, a prompt past the model's context, an endless
warm-up, an infinite link latency, a knob whose switch is off, an SLO nothing reads, a parallel size of 0)."""

from __future__ import annotations

import math

import pytest

from phasewise.errors import PhasewiseError
from phasewise.specs import load_hardware
from phasewise.specs.catalog import packaged
from phasewise.specs.engines import resolve_engine

MOE = "Qwen/Qwen3-30B-A3B"


def one_line_error(run_cli, *args: str) -> str:
    code, _, err = run_cli(*args)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("engine, kv_dtype, allowed", [
    ("vllm", "int4", "fp8; a host profile"), ("vllm", "int8", "fp8 only"), ("sglang", "int4", "fp8 only"),
    ("sglang", "int8", "fp8 only"), ("trtllm", "int8", "fp8 only"), ("trtllm-0.5", "int4", "fp8 or int8 only"),
    ("vllm-2023", "fp8", "model's dtype only"),
])
def test_a_kv_dtype_the_engine_has_no_cache_for_is_refused(run_cli, engine, kv_dtype, allowed):
    """vLLM's and SGLang's only quantized KV cache is FP8 (vLLM int4 read 1,754,915 KV tokens, FP8 904,878)."""
    err = one_line_error(run_cli, "estimate", "--engine", engine, "--kv-dtype", kv_dtype)
    assert f"--kv-dtype {kv_dtype} is not possible on engine '{engine}'" in err and allowed in err
    err = one_line_error(run_cli, "simulate", "--engine", engine, "--kv-dtype", kv_dtype, "--rate", "1",
                         "--requests", "3")
    assert f"--kv-dtype {kv_dtype} is not possible" in err


@pytest.mark.parametrize("engine, kv_dtype", [("trtllm-0.5", "int8"), ("vllm", "fp8"), ("sglang", "bf16"),
                                              ("ideal", "int4"), ("hf-eager", "int8")])
def test_kv_dtypes_an_engine_keeps_still_run(run_cli, engine, kv_dtype):
    code, out, err = run_cli("estimate", "--engine", engine, "--kv-dtype", kv_dtype, "--json")
    assert code == 0, err
    assert f'"kv_dtype": "{kv_dtype}"' in out


def test_every_preset_lists_its_kv_dtypes():
    from phasewise.specs.engine_refusals import PRESET_KV_DTYPES, kv_dtype_refusal

    assert set(PRESET_KV_DTYPES) == set(packaged("engine_presets.yaml")["presets"])
    assert kv_dtype_refusal("vllm@0.8.5", "int8") and kv_dtype_refusal("ideal", "int4") is None


@pytest.mark.parametrize("args, flag", [(("--prompt-len", "200000"), "--prompt-len 200,000 is beyond"),
                                        (("--prompt-len", "131073"), "--prompt-len 131,073 is beyond"),
                                        (("--context-len", "131073", "--prompt-len", "10"),
                                         "--context-len 131,073 is beyond")])
def test_estimate_refuses_a_sequence_past_the_context(run_cli, args, flag):
    """Llama-3.1-8B serves 131,072 tokens: a 200,000-token prompt printed 'fits' and was priced."""
    err = one_line_error(run_cli, "estimate", *args)
    assert flag in err and "131,072-token context" in err


def test_estimate_runs_up_to_the_context(run_cli):
    code, _, err = run_cli("estimate", "--prompt-len", "131072", "--json")
    assert code == 0, err


@pytest.mark.parametrize("args, flag", [(("--client", "vllm-bench", "--warmup", "1000000000"), "--warmup"),
                                        (("--warmup", "9999001", "--requests", "1000"), "--warmup")])
def test_warmup_is_capped_with_the_measured_requests(run_cli, args, flag):
    """`--warmup 10^9` ran until killed at 4.5 GB; the warm-up requests are simulated like the measured ones."""
    err = one_line_error(run_cli, "simulate", "--concurrency", "4", *args)
    assert err.startswith(f"error: {flag}:") and "10,000,000" in err


@pytest.mark.parametrize("command", ["device-cloud", "edge"])
@pytest.mark.parametrize("latency", ["inf", "nan"])
def test_a_link_latency_must_be_finite(run_cli, command, latency):
    """device-cloud printed 'mean TTFT inf ms, mean TBT nan ms'; edge said no layer split fits."""
    err = one_line_error(run_cli, command, "--latency-ms", latency)
    assert "--latency-ms" in err and ("finite" in err or "greater than or equal" in err)  # the flag, not a field


@pytest.mark.parametrize("engine, knobs, message", [
    ("trtllm", {"attention_dp_enable_balance": True}, "--attention-dp-enable-balance .* --attention-dp of 2 or more"),
    ("trtllm", {"attention_dp_timeout_iters": 5}, "--attention-dp-timeout-iters needs --attention-dp-enable-balance"),
    ("trtllm", {"attention_dp_batching_wait_iters": 5},
     "--attention-dp-batching-wait-iters needs --attention-dp-enable-balance"),
    ("sglang", {"prefill_delayer_max_delay_passes": 5},
     "--prefill-delayer-max-delay-passes needs --enable-prefill-delayer"),
])
def test_a_knob_whose_switch_is_off_is_refused(engine, knobs, message):
    with pytest.raises(PhasewiseError, match=message):
        resolve_engine(engine, load_hardware("h100-sxm"), knobs)


def test_the_switched_knobs_run_with_their_switch_and_batch_waiting_without_attention_dp():
    hw = load_hardware("h100-sxm")
    config = resolve_engine("trtllm", hw, {"attention_dp_enable_balance": True, "attention_dp_timeout_iters": 5},
                            attention_dp=4)
    assert config.adp_balance == (5, 10)
    delayed = resolve_engine("sglang", hw, {"enable_prefill_delayer": True, "prefill_delayer_max_delay_passes": 5},
                             attention_dp=4)
    assert delayed.prefill_delayer == 5
    with pytest.raises(PhasewiseError, match="--batch-wait-timeout-iters is TensorRT-LLM's batch waiting without"):
        resolve_engine("trtllm", hw, {"batch_wait_timeout_iters": 8}, attention_dp=4)
    both = {"batch_wait_timeout_iters": 8, "batch_wait_max_tokens_ratio": 0.5}  # either alone never waits
    assert resolve_engine("trtllm", hw, both).batch_wait == (8, 0.5)


def test_the_cli_names_the_switch(run_cli):
    err = one_line_error(run_cli, "simulate", "--model", MOE, "--tp", "4", "--ep", "4", "--engine", "trtllm",
                         "--attention-dp-enable-balance", "--rate", "1", "--requests", "3")
    assert "--attention-dp of 2 or more" in err


def test_serve_refuses_slos_nothing_reads(run_cli):
    """Only priority pools steer by --slo-ttft-ms / --slo-tpot-ms in serve (as --slack-margin-ms needs them)."""
    from phasewise.apps.cli_serve import refuse_unread_slos
    from phasewise.sim.api import deployment_from_flags

    for flag in ("--slo-ttft-ms", "--slo-tpot-ms"):
        err = one_line_error(run_cli, "serve", flag, "500")
        assert f"{flag} is the deadline priority pools steer by: it needs --scheduler ascendra" in err
    pools = deployment_from_flags(scheduler="ascendra", replicas=2)
    refuse_unread_slos(pools, 500.0, 50.0)  # read
    refuse_unread_slos(deployment_from_flags(), math.inf, math.inf)  # not given
    own = pools.model_copy(update={"priority_pools": pools.priority_pools.model_copy(update={"slo_ttft_ms": 400.0})})
    with pytest.raises(PhasewiseError, match="--slo-ttft-ms 500: the deployment's priority_pools block sets its own"):
        refuse_unread_slos(own, 500.0, math.inf)


@pytest.mark.parametrize("args, message", [
    (("--attention-dp", "0"), "--attention-dp must be >= 1 (got 0)"),
    (("--moe-tp", "0"), "--moe-tp must be >= 1 (got 0)"),
    (("--moe-tp", "-2"), "--moe-tp must be >= 1 (got -2)"),  # was "--ep must be >= 1 (got -2)"
    (("--ep", "0"), "--ep must be >= 1 (got 0)"),
])
@pytest.mark.parametrize("model", [MOE, "meta-llama/Llama-3.1-8B"])
def test_a_parallel_size_below_one_names_the_flag_given(run_cli, args, message, model):
    """0 was read as unset (estimate ran), a negative --moe-tp blamed --ep."""
    err = one_line_error(run_cli, "estimate", "--model", model, "--tp", "4", *args)
    assert message in err


def test_the_unknown_engine_error_lists_each_preset_once_main_ones_first(run_cli):
    err = one_line_error(run_cli, "estimate", "--engine", "vlm")
    presets = list(packaged("engine_presets.yaml")["presets"])
    assert "did you mean vllm" in err and "(presets: vllm, sglang, trtllm, " in err
    listed = err.split("(presets: ", 1)[1].split("; or ", 1)[0].replace("; host profiles:", ",").split(", ")
    assert len(set(listed)) == len(listed) and set(presets) < set(listed), err  # each once, none cut off
