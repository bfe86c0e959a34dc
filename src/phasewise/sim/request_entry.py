"""The requests that reach an instance from outside it (a mixin of sim/instance.py's Instance, whose state it reads):
routed here through the engine's frontend (or refused on arrival), their KV arrived on a decode instance, cancelled by
the client, refused from the queue."""

from __future__ import annotations

from collections import deque

from phasewise.sim.request import SimRequest


class RequestEntry:
    __slots__ = ()

    def enqueue(self, req: SimRequest, through_frontend: bool = True) -> None:
        """A request routed here. A new one first passes the engine's frontend (API server: HTTP, request
        validation, tokenization, hand-off to the scheduler), one request at a time, so requests sent
        together reach the scheduler staggered; a recomputed one goes straight to the queue."""
        if through_frontend:
            reason = self._refusal(req)
            if reason is not None:  # refused on arrival: it never queues, nor takes another request's turn
                self.cluster.reject(req, reason)
                return
        self.outstanding += req.prompt + req.output
        if req.first_instance < 0:
            req.first_instance = self.index
        engine = self.cost.engine
        frontend_s = engine.frontend_request_s + engine.frontend_token_s * req.prompt if through_frontend else 0.0
        if frontend_s > 0.0:
            start_s = max(self.loop.now, self.frontend_free_s)
            self.frontend_free_s = start_s + frontend_s
            self.frontend_prompt_tokens += req.prompt
            self.loop.at(self.frontend_free_s, self._through_frontend, req)
            return
        self._reach_scheduler(req)

    def _refusal(self, req: SimRequest) -> str | None:
        """Why the engine refuses a new request on arrival (a metrics.REJECT_REASONS key); None: it may run. Beyond the
        model's context where the run refuses it (as vLLM refuses beyond max_model_len); beyond this instance's whole
        KV cache, or, disaggregated, every decode instance's (never_fits), which it could never finish in; beyond what
        the engine's policy takes (Scheduler.refusal)."""
        cluster = self.cluster
        if cluster.refuse_beyond_context and 0 < self.model.max_position_embeddings < req.prompt + req.output:
            return "beyond_context"
        if self.never_fits(req.prompt, req.output):
            return "beyond_kv_capacity"
        back = cluster.back.instances if cluster.back is not None else ()
        if back and all(decode.never_fits(req.prompt, req.output) for decode in back):
            return "beyond_kv_capacity"
        return self.scheduler.refusal(req.prompt)  # the engine's own limits (TensorRT-LLM's max_num_tokens)

    def _through_frontend(self, req: SimRequest) -> None:
        self.frontend_prompt_tokens -= req.prompt
        self._reach_scheduler(req)

    def _reach_scheduler(self, req: SimRequest) -> None:
        if req.cancelled:  # the client left while its request was in the frontend
            self.outstanding -= req.prompt + req.output
            return
        prefix = self.kv.prefix
        if prefix is not None and prefix.ranked:  # attention DP: the engine's dispatcher picks its rank (and cache)
            prefix.assign(req)
        if self.recv is not None and self.busy:  # read at the scheduler's next read point
            self.recv.inbox.append(req)
            self._end_run_at_read()
            return
        self.waiting.append(req)
        self.poke()

    def join_ready(self, req: SimRequest) -> None:
        """Decode role: a request whose KV has arrived joins the decoding set at the next boundary
        (its tokens were added to `outstanding` when the transfer was routed here)."""
        self.ready.append(req)
        self.poke()

    def cancel(self, req: SimRequest) -> bool:
        """Remove a cancelled request from this instance, freeing its KV; False if it is not here."""
        prefix = self.kv.prefix
        if req in self.waiting:
            self.waiting.remove(req)
            if prefix is not None and prefix.ranked:
                prefix.drop(req)
        elif self.recv is not None and req in self.recv.inbox:  # sent, not read by the scheduler yet
            self.recv.inbox.remove(req)
            if prefix is not None and prefix.ranked:
                prefix.drop(req)
        elif req in self.prefilling:
            self.prefilling.remove(req)
            self.kv.free_blocks(req.kv_blocks, req)
        elif req.slot >= 0 and req.slot < self.running.n and self.running.reqs[req.slot] is req:
            self.kv.free_blocks(self._leave(req, self.decode_steps), req)
            req.epoch += 1
        elif req in self.ready:
            self.ready.remove(req)
            self.kv.free_blocks(req.kv_blocks, req)
        elif any(r is req for r, _ in self.pending_transfers):  # its KV still sits on the prefill instance
            src = next(s for r, s in self.pending_transfers if r is req)
            self.pending_transfers = deque(p for p in self.pending_transfers if p[0] is not req)
            src.kv.free_blocks(req.src_blocks, req)
            req.src_blocks = 0
            src.poke()
        else:
            return False
        req.kv_blocks = 0
        self.outstanding -= req.prompt + req.output
        self.poke()
        return True

    def _reject(self, req: SimRequest, reason: str) -> None:
        prefix = self.kv.prefix
        if prefix is not None and prefix.ranked:  # refused from the queue: it leaves its rank
            prefix.drop(req)
        self.outstanding -= req.prompt + req.output
        self.cluster.reject(req, reason)

