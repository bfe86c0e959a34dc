"""TensorRT-LLM 1.x in-flight batching: context and generation requests share an iteration within
max_num_tokens; without chunked prefill (the trtllm-serve default) a prompt joins only when it fits
whole in what the step has left. The GUARANTEED_NO_EVICT capacity scheduler admits a request only when
the KV of its prompt and its whole output is reserved, so nothing is ever preempted
(tensorrt_llm/commands/serve.py, llmapi/llm_args.py; ../shared/ENGINES.md). With attention-DP balance or
batch waiting on, context requests may wait some iterations first (sim/context_wait.py)."""

from __future__ import annotations

from functools import lru_cache

from phasewise.sim.context_wait import ContextWait
from phasewise.sim.schedulers.base import Scheduler
from phasewise.specs.engine_presets import preset_key

# Presets whose entry point runs a prompt longer than max_num_tokens with chunking off: trtllm-bench raises
# max_num_tokens to the longest prompt plus max_batch_size (../shared/ENGINES.md); trtllm-0.5 (the v0.5 C++ runtime's
# static batches) as modelled before (assumed). The others (trtllm-serve) refuse it (TrtllmScheduler.refusal).
RUNS_LONG_PROMPTS = ("trtllm-bench", "trtllm-0.5")


@lru_cache(maxsize=256)
def runs_long_prompts(engine: str) -> bool:
    """Whether `engine` (a preset[@version] or an engine file, EngineConfig.engine) runs as one of RUNS_LONG_PROMPTS:
    an engine file that refines one (its `preset:`, specs.engine_presets.preset_key) runs as the preset does."""
    return preset_key(engine) in RUNS_LONG_PROMPTS


class TrtllmScheduler(Scheduler):
    __slots__ = ("wait",)

    def refusal(self, prompt_tokens: int) -> str | None:
        """Without chunked prefill the PyTorch backend's LLM API refuses a prompt longer than max_num_tokens (each
        attention-DP rank's own): "The sum of prompt length (...), query length (...) should not exceed
        max_num_tokens (...)" (tensorrt_llm/llmapi/llm.py _check_arguments; tests/unittest/llmapi/test_llm.py
        test_max_num_token_check), which trtllm-serve answers with a 400."""
        cfg = self.config
        if cfg.chunked_prefill or runs_long_prompts(cfg.engine):
            return None
        limit = cfg.prefill_rank_tokens or cfg.token_budget
        return "beyond_token_budget" if prompt_tokens > limit else None

    def __init__(self, config) -> None:
        super().__init__(config)
        self.wait = ContextWait(config) if config.adp_balance or config.batch_wait else None

    def next_batch(self, inst):
        if self.wait is not None and self.wait.holds(inst):
            return None  # the contexts wait: this iteration decodes only
        return self.mixed_batch(inst)

    def steps_before_next_look(self, inst) -> int | None:
        return self.wait.hold_steps if self.wait is not None and self.wait.held else None
