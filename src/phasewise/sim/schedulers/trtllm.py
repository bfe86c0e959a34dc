"""TensorRT-LLM 1.x in-flight batching: context and generation requests share an iteration within
max_num_tokens; without chunked prefill (the trtllm-serve default) a prompt joins only when it fits
whole in what the step has left. The GUARANTEED_NO_EVICT capacity scheduler admits a request only when
the KV of its prompt and its whole output is reserved, so nothing is ever preempted
(tensorrt_llm/commands/serve.py, llmapi/llm_args.py; ../shared/ENGINES.md). With attention-DP balance or
batch waiting on, context requests may wait some iterations first (sim/context_wait.py)."""

from __future__ import annotations

from phasewise.sim.context_wait import ContextWait
from phasewise.sim.schedulers.base import Scheduler


class TrtllmScheduler(Scheduler):
    __slots__ = ("wait",)

    def __init__(self, config) -> None:
        super().__init__(config)
        self.wait = ContextWait(config) if config.adp_balance or config.batch_wait else None

    def next_batch(self, inst):
        if self.wait is not None and self.wait.holds(inst):
            return None  # the contexts wait: this iteration decodes only
        return self.mixed_batch(inst)

    def steps_before_next_look(self, inst) -> int | None:
        return self.wait.hold_steps if self.wait is not None and self.wait.held else None
