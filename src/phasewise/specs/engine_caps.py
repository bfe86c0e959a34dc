"""The generic caps a planner varies (the sequence cap and the token budget) in each engine's own knob names, and
whether the engine reads them per attention-DP rank or per instance (engine_presets.yaml lists each preset's knobs)."""

from __future__ import annotations

from typing import Any

from phasewise.specs.engine_presets import preset_entry

# Knobs an engine reads per attention-DP rank, each rank scheduling its own sequences: vLLM's (--data-parallel-size:
# one engine core, with its own scheduler, per rank), TensorRT-LLM's (enable_attention_dp: one executor per rank;
# py_executor.py _balance_adp_requests compares each rank's own generation count with max_batch_size; AIConfigurator's
# and InferenceX's recipes write both per rank) and SGLang's --max-prefill-tokens (not divided by server_args.py);
# an instance holds attention_dp times as much. SGLang's --chunked-prefill-size and --max-running-requests are the
# instance's, divided over its ranks by SGLang itself.
PER_RANK_KNOBS = frozenset({"max_num_seqs", "max_num_batched_tokens", "max_batch_size", "max_num_tokens",
                            "max_prefill_tokens"})


def engine_knobs(engine: str) -> tuple[str, ...]:
    """The knobs an engine has (a profile name or file behaves as vLLM V1)."""
    return tuple(preset_entry(engine)["knobs"])


# The generic caps a planner varies, and the knob each engine has for them (knob_values, cap_knob)
CAP_KNOBS = {"max_seqs": ("max_num_seqs", "max_running_requests", "max_batch_size"),
             "token_budget": ("max_num_batched_tokens", "chunk_size", "chunked_prefill_size", "max_num_tokens")}


def cap_knob(engine: str, generic: str) -> str:
    """The engine's knob for a generic cap (`max_seqs` or `token_budget`, CAP_KNOBS): vLLM's max_num_seqs, SGLang's
    max_running_requests, TensorRT-LLM's max_batch_size, ..."""
    own = engine_knobs(engine)
    return next(k for k in CAP_KNOBS[generic] if k in own)


def caps_per_rank(engine: str) -> bool:
    """Whether the engine reads its sequence cap and token budget per attention-DP rank (PER_RANK_KNOBS: vLLM's
    --max-num-seqs / --max-num-batched-tokens, TensorRT-LLM's max_batch_size / max_num_tokens), not per instance
    (SGLang's --max-running-requests / --chunked-prefill-size, which SGLang divides over the ranks itself)."""
    return cap_knob(engine, "max_seqs") in PER_RANK_KNOBS


def instance_seqs(engine: str, cap: int, attention_dp: int = 1) -> int:
    """The sequences an instance of `attention_dp` ranks holds at a sequence cap of `cap` as the engine's own flag
    reads it: attention_dp x cap where the flag is each rank's (caps_per_rank), cap where it is the instance's."""
    return cap * attention_dp if caps_per_rank(engine) else cap


def knob_values(engine: str, max_seqs: int | None = None, token_budget: int | None = None,
                attention_dp: int = 1) -> dict[str, int]:
    """Generic caps in the engine's own knob names (for planners that vary them across engines). `attention_dp` > 1
    reads the caps as a whole instance's: a knob the engine reads per DP rank (PER_RANK_KNOBS) then gets the
    instance's value over the ranks (at least 1); at 1 (plan's use) each value is the flag's as the engine reads it."""
    out: dict[str, int] = {}
    for generic, value in (("max_seqs", max_seqs), ("token_budget", token_budget)):
        if value is not None:
            knob = cap_knob(engine, generic)
            out[knob] = rank_share(value, attention_dp) if knob in PER_RANK_KNOBS else int(value)
    return out


def rank_share(value: float, attention_dp: int) -> int:
    """One attention-DP rank's share of an instance-wide cap (at least 1)."""
    return max(1, int(value) // attention_dp)


def graph_knobs(engine: str, max_seqs: int, attention_dp: int = 1) -> dict[str, Any]:
    """The CUDA-graph knobs a deployment tuned for `max_seqs` decode sequences sets where the engine's default
    capture stops short of them: TensorRT-LLM captures up to 128 by default, and AIConfigurator's generator
    (trtllm.rule) and InferenceX's recipes set cuda_graph_config {max_batch_size: the batch, enable_padding: true},
    each attention-DP rank capturing its own batch. `max_seqs` is max_batch_size as the engine reads it (each
    rank's); `attention_dp` > 1 reads it as the whole instance's, as knob_values does. None for the other engines
    (vLLM and SGLang capture up to 512 by default)."""
    if "cuda_graph_max_batch_size" in engine_knobs(engine):
        return {"cuda_graph_max_batch_size": rank_share(max_seqs, attention_dp), "cuda_graph_padding_enabled": True}
    return {}
