"""TensorRT-LLM 1.x in-flight batching: context and generation requests share an iteration within
max_num_tokens; without chunked prefill (the trtllm-serve default) a prompt joins only when it fits
whole in what the step has left. The GUARANTEED_NO_EVICT capacity scheduler admits a request only when
the KV of its prompt and its whole output is reserved, so nothing is ever preempted
(tensorrt_llm/commands/serve.py, llmapi/llm_args.py; ../shared/ENGINES.md)."""

from __future__ import annotations

from phasewise.sim.schedulers.base import Scheduler


class TrtllmScheduler(Scheduler):
    __slots__ = ()

    def next_batch(self, inst):
        return self.mixed_batch(inst)
