"""An instance's load as others read it (a mixin of sim/instance.py's Instance, whose state it reads): the engine's
gauges (the twin's metrics, an autoscaler's signals), the requests in flight (a proxy's count) and the prompt tokens
still to prefill (a router's load view)."""

from __future__ import annotations


class LoadViews:
    __slots__ = ()

    def gauges(self) -> tuple[int, int, float]:
        """What the engine's metrics report now, as it counts them: requests running (vllm:num_requests_running:
        decoding, their KV arrived on a decode instance, and prefilling where vLLM V1 (scheduler.running holds
        partial prefills), V0 and TensorRT-LLM (numActiveRequests, len(active_requests)) count them; SGLang's
        num_running_reqs is its decoding batch and a chunked prefill is in neither gauge, srt/managers/scheduler.py),
        waiting (queued or, on a decode instance, their KV on its way) and KV blocks in use (x capacity)."""
        prefilling = 0 if self.engine.scheduler == "sglang" else len(self.prefilling)
        running = self.running.n + len(self.ready) + prefilling
        waiting = len(self.waiting) + len(self.pending_transfers)
        return running, waiting, self.kv.capacity - max(self._free_blocks_bound(), 0.0)

    def in_flight(self) -> int:
        """Requests here from their arrival to their end, whatever the engine's gauges call them (queued, prefilling,
        decoding, their KV on its way): what a proxy in front of the engine counts in flight (Knative's queue-proxy,
        an autoscaler's `concurrency`), a chunked prefill included on every engine."""
        return (self.running.n + len(self.ready) + len(self.prefilling) + len(self.waiting)
                + len(self.pending_transfers))

    def prefill_tokens_pending(self) -> int:
        """Prompt tokens still to prefill of the requests routed here and not yet past prefill (in its frontend,
        queued or prefilling: a router's load view, Dynamo's worker_active_prefill_tokens); 0 on a decode instance,
        whose prefills run elsewhere."""
        if self.role == "decode":
            return 0
        if self.cluster.check:
            assert self.waiting.tokens == sum(r.prefill_target for r in self.waiting), "queued prompt tokens"
        return (self.frontend_prompt_tokens + self.waiting.tokens
                + sum(r.prefill_target - r.prefilled for r in self.prefilling))
