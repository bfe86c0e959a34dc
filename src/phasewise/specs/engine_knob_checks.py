"""Each engine knob's type and allowed values (check_knob), and the knobs refused where the engine refuses them or
where what they tune is off, so they would change nothing: one-line errors naming the flag."""

from __future__ import annotations

import math
from typing import Any

from phasewise.errors import PhasewiseError
from phasewise.specs.engine_deepep import DEEPEP_KNOBS, takes_deepep

# Every knob any preset has, with the type a value must have.
KNOB_TYPES: dict[str, type] = {
    "max_num_seqs": int, "max_num_batched_tokens": int, "enable_chunked_prefill": bool,
    "max_num_partial_prefills": int, "chunk_size": int, "chunked_prefill_size": int,
    "max_running_requests": int, "max_prefill_tokens": int, "enable_mixed_chunk": bool, "cuda_graph_max_bs": int,
    "schedule_conservativeness": float, "max_batch_size": int, "max_num_tokens": int,
    "scheduler_recv_interval": int, "cuda_graph_max_batch_size": int, "cuda_graph_padding_enabled": bool,
    "enable_piecewise_cuda_graph": bool, "piecewise_cuda_graph_max_tokens": int,
    "disable_overlap_scheduler": bool, "attention_dp_enable_balance": bool, "attention_dp_timeout_iters": int,
    "attention_dp_batching_wait_iters": int, "batch_wait_timeout_iters": int, "batch_wait_max_tokens_ratio": float,
    "async_scheduling": bool, "mamba_ssm_dtype": str, "swa_full_tokens_ratio": float,
    "disable_hybrid_swa_memory": bool, "hicache_write_policy": str, "enable_prefill_delayer": bool,
    "prefill_delayer_max_delay_passes": int, "moe_a2a_backend": str, "all2all_backend": str,
}
# Knobs that take one of a few names
KNOB_CHOICES: dict[str, tuple[str, ...]] = {
    "mamba_ssm_dtype": ("fp32", "bf16"),
    "hicache_write_policy": ("write_through", "write_through_selective", "write_back"),
    "moe_a2a_backend": ("none", "deepep"),
    "all2all_backend": ("allgather_reducescatter", "deepep_high_throughput", "deepep_low_latency"),
}
# Knobs whose allowed range is not the type's default (integers >= 1, numbers > 0): (lowest, highest)
KNOB_RANGES: dict[str, tuple[float, float]] = {
    "attention_dp_batching_wait_iters": (0, math.inf), "batch_wait_timeout_iters": (0, math.inf),
    "batch_wait_max_tokens_ratio": (0.0, 1.0), "swa_full_tokens_ratio": (0.01, 1.0),
    # SGLang lists every capture size up front (srt/server_args.py _generate_cuda_graph_batch_sizes,
    # _generate_piecewise_cuda_graph_tokens) and captures a graph at each at start-up: beyond these (128x its
    # largest default of 512 sequences, 64x a 16,384-token chunk) the lists alone exhaust memory (found by
    # benchmarks/fuzz_serve.py at 10^11: MemoryError), and no batch reaches them
    "cuda_graph_max_bs": (1, 65_536), "piecewise_cuda_graph_max_tokens": (1, 1_048_576),
}

# TensorRT-LLM's batch waiting without attention DP: its iteration limit and its share of max_num_tokens
BATCH_WAIT_KNOBS = ("batch_wait_timeout_iters", "batch_wait_max_tokens_ratio")


def check_knob(knob: str, value: Any) -> None:
    """A one-line error unless `value` has the knob's type and lies in its range."""
    want, flag = KNOB_TYPES[knob], f"--{knob.replace('_', '-')}"
    if want is str:
        if value not in KNOB_CHOICES[knob]:
            raise PhasewiseError(f"{flag} must be one of {', '.join(KNOB_CHOICES[knob])} (got {value!r})")
        return
    low, high = KNOB_RANGES.get(knob, (1, math.inf) if want is int else (0.0, math.inf))
    if want is bool and not isinstance(value, bool):
        raise PhasewiseError(f"{flag} must be true or false (got {value!r})")
    if want is int and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
        allowed = f"from {low:g} to {high:,}" if math.isfinite(high) else f">= {low:g}"
        raise PhasewiseError(f"{flag} must be an integer {allowed} (got {value!r})")
    if want is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if knob in KNOB_RANGES and not (number and low <= value <= high):
            raise PhasewiseError(f"{flag} must be a number from {low:g} to {high:g} (got {value!r})")
        if knob not in KNOB_RANGES and not (number and value > 0):
            raise PhasewiseError(f"{flag} must be a number > 0 (got {value!r})")


def refuse_idle_knobs(knobs: dict[str, Any], values: dict[str, Any], attention_dp: int) -> None:
    """A one-line error for a knob given where what it tunes is off, so it would change nothing: TensorRT-LLM's
    attention-DP balance runs only with attention DP and its batch waiting only without (_torch/pyexecutor/
    py_executor.py _schedule: `if self.enable_attention_dp and self.attention_dp_enable_balance:
    _balance_adp_requests`, then `if not self.enable_attention_dp and ...` the batch waiting; sim/context_wait.py),
    its attention_dp_config timeout_iters / batching_wait_iters only read with enable_balance (PyExecutor.__init__);
    SGLang's max delay passes only with its prefill delayer on."""
    if knobs.get("attention_dp_enable_balance") and attention_dp < 2:
        raise PhasewiseError("--attention-dp-enable-balance holds context requests until every attention-DP rank has "
                             "one: it needs --attention-dp of 2 or more (a mixture-of-experts model; without "
                             "attention DP TensorRT-LLM's waiting is --batch-wait-timeout-iters)")
    waiting = [k for k in BATCH_WAIT_KNOBS if knobs.get(k)]
    if waiting and attention_dp > 1:
        raise PhasewiseError(f"--{waiting[0].replace('_', '-')} is TensorRT-LLM's batch waiting without attention DP: "
                             f"with --attention-dp {attention_dp} it waits by --attention-dp-enable-balance instead")
    # TensorRT-LLM holds prompts only while both limits are unmet (py_executor.py _waiting_requests: stop_waiting =
    # batch_wait_iters_count >= batch_wait_timeout_iters or num_scheduled_tokens >= batch_wait_max_tokens_ratio *
    # max_num_tokens; both 0 by default): with either at 0 it never waits, and the other alone changes nothing
    lone = [k for k in waiting if not all(values.get(other) for other in BATCH_WAIT_KNOBS)]
    if lone:
        other = next(k for k in BATCH_WAIT_KNOBS if k != lone[0])
        raise PhasewiseError(f"--{lone[0].replace('_', '-')} needs --{other.replace('_', '-')} > 0 too: TensorRT-LLM "
                             "holds prompts until either is reached, so with one at 0 it never waits and the other "
                             "would change nothing")
    for knob, engine in DEEPEP_KNOBS.items():
        if takes_deepep({knob: knobs.get(knob)}) and attention_dp < 2:
            raise PhasewiseError(f"--{knob.replace('_', '-')} {knobs[knob]} dispatches tokens between attention-DP "
                                 f"ranks' experts: it needs --attention-dp of 2 or more and --ep (without attention DP "
                                 f"{engine}'s MoE layers all-reduce over the tensor-parallel group)")
    needs = {"attention_dp_timeout_iters": "attention_dp_enable_balance",
             "attention_dp_batching_wait_iters": "attention_dp_enable_balance",
             "prefill_delayer_max_delay_passes": "enable_prefill_delayer"}
    for knob, switch in needs.items():
        if knob in knobs and not values.get(switch):
            raise PhasewiseError(f"--{knob.replace('_', '-')} needs --{switch.replace('_', '-')}: it tunes what that "
                                 "flag turns on, and alone would change nothing")


def refuse_short_unchunked_budget(asked: int, max_model_len: int) -> None:
    """vLLM V1 with chunked prefill off refuses a --max-num-batched-tokens given below the served context
    (config/scheduler.py SchedulerConfig.verify_max_model_len), as a whole prompt must fit one step; the budget left
    unset follows the context (engine_defaults.py vllm_batch_caps)."""
    if asked < max_model_len:
        raise PhasewiseError(f"--max-num-batched-tokens ({asked}) is smaller than max_model_len ({max_model_len}, "
                             "the model's context) with chunked prefill off: vLLM refuses it, as a prompt must fit "
                             "one step (raise --max-num-batched-tokens or turn chunked prefill on)")


def async_scheduling_in_force(label: str, default: bool, speculation: str, asked: bool | None, pp: int,
                              speculative_draft: str | None) -> bool:
    """vLLM's async scheduling in force: the version's default, off with PP > 1 or a speculation it does not run
    beside (`async_speculation` in engine_presets.yaml: none, or eagle = EAGLE-family drafts incl. MTP); asked
    for (`--async-scheduling`) where vLLM refuses it or with PP > 1 (not modelled), a one-line error."""
    spec_ok = speculative_draft is None or (speculation == "eagle" and speculative_draft == "mtp")
    if asked:
        if pp > 1:
            raise PhasewiseError(f"--async-scheduling with pp={pp} is not modelled ({label}): vLLM's EngineArgs "
                                 "refuse it from the 0.11 era ('not supported with pipeline-parallel-size > 1')")
        if not spec_ok:
            runs_with = "no speculative decoding" if speculation == "none" else "EAGLE-family drafts (mtp) only"
            raise PhasewiseError(f"--async-scheduling is not possible on {label} with the draft "
                                 f"'{speculative_draft}': its async scheduling runs with {runs_with}")
        return True
    return asked is None and default and pp == 1 and spec_ok
