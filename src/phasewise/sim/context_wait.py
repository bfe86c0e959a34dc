"""TensorRT-LLM holding context requests back for some iterations so that prompts run together
(tensorrt_llm/_torch/pyexecutor/py_executor.py `_balance_adp_requests` and `_waiting_requests`, knobs in
llmapi/llm_args.py; both off by default):

- Attention-DP balance (`attention_dp_config.enable_balance`, with attention data parallelism). At every
  iteration the ranks compare what they would schedule. When every rank has a context request (and a free
  slot), the wait count restarts and the contexts run, unless every rank is also decoding: then they first
  wait `batching_wait_iters` iterations for more. Otherwise the count grows by one and the contexts wait,
  until it reaches `timeout_iters` (they run, the count restarts) or some rank has nothing to decode (they
  run at once). The count grows on every iteration where not every rank has a context, whether or not one
  is waiting, so a lone prompt waits for the count's next wrap: 1 to timeout_iters iterations. NVIDIA's ADP
  Balance blog (docs/source/blogs/tech_blog/blog10_ADP_Balance_Strategy.md) trades this TTFT for throughput.
- Batch waiting (`batch_wait_timeout_iters`, `batch_wait_max_tokens_ratio`; without attention DP). On an
  iteration with both contexts and decodes, the contexts wait until `batch_wait_timeout_iters` such
  iterations have passed or the iteration's tokens (the contexts' and one per decode token) reach the ratio
  of max_num_tokens.

An instance's sequences are not placed on ranks here (perf/parallel.py costs the busiest rank): "every rank
has a context request" is read as at least `attention_dp` prompts ready to start (TensorRT-LLM gives a new
request to the rank with the fewest active requests, so the rank that just freed a slot takes the next
one), "every rank is decoding" as at least `attention_dp` decoding sequences. Iterations are counted in
decode steps: every held iteration decodes (a hold needs decodes), and the instance looks again at the
iteration where a hold would end (Scheduler.steps_before_next_look) or when a request arrives or finishes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance
    from phasewise.specs.engines import EngineConfig


class ContextWait:
    __slots__ = ("adp_balance", "batch_wait", "token_budget", "count", "batching_count", "seen_step", "held",
                 "hold_steps")

    def __init__(self, config: EngineConfig) -> None:
        self.adp_balance = config.adp_balance  # (timeout_iters, batching_wait_iters) or None
        self.batch_wait = config.batch_wait  # (timeout_iters, max_tokens_ratio) or None
        self.token_budget = config.token_budget  # max_num_tokens
        self.count = 0  # the wait count (attention-DP balance, or batch waiting)
        self.batching_count = 0  # attention-DP balance: iterations waited for more contexts
        self.seen_step = 0  # decode steps done at the last look
        self.held = False  # whether the last look held the contexts back
        self.hold_steps = 1  # after a hold: decode iterations until the hold would end

    def holds(self, inst: Instance) -> bool:
        """Whether this iteration's context requests wait (called at each boundary with prompts waiting)."""
        passed = inst.decode_steps - self.seen_step
        if passed == 0 and self.held:  # the same boundary again: the same decision
            return True
        self.seen_step = inst.decode_steps
        layout = getattr(inst.cost, "layout", None)
        dp = layout.attention_dp if layout is not None else 1
        if self.adp_balance is not None and dp > 1:
            self.held = self._adp_holds(inst, dp, passed)
        elif self.batch_wait is not None and dp == 1:
            self.held = self._batch_holds(inst, passed)
        else:
            self.held = False
        return self.held

    def _adp_holds(self, inst: Instance, ranks: int, passed: int) -> bool:
        timeout, batching_wait = self.adp_balance
        every_rank_decodes = inst.running.n >= ranks
        seats = inst.max_seqs - inst.running.n - len(inst.prefilling)
        every_rank_has_context = len(inst.prefilling) + min(len(inst.waiting), max(seats, 0)) >= ranks
        # the iterations since the last look had no context on every rank: the count grew (and wrapped) at each
        self.count = (self.count + max(passed - 1, 0)) % timeout if every_rank_decodes else 0
        if every_rank_has_context:
            self.count = 0
            if every_rank_decodes:
                if self.batching_count < batching_wait:
                    self.batching_count += 1
                    self.hold_steps = 1
                    return True
                self.batching_count = 0
            return False
        self.count += 1
        if self.count >= timeout or not every_rank_decodes:
            self.count = 0
            return False
        self.hold_steps = timeout - self.count
        return True

    def _batch_holds(self, inst: Instance, passed: int) -> bool:
        timeout, ratio = self.batch_wait
        if self.held:  # every iteration held since the last look had contexts and decodes: each counted
            self.count += max(passed - 1, 0)
        if not inst.running.n:
            return False  # no decodes: nothing to wait beside
        decode_tokens = inst.running.n * inst.decode_new_tokens
        tokens = decode_tokens + self._context_tokens(inst, self.token_budget - decode_tokens)
        if self.count >= timeout or tokens >= ratio * self.token_budget:
            self.count = 0
            return False
        self.count += 1
        self.hold_steps = max(timeout - self.count + 1, 1)
        return True

    @staticmethod
    def _context_tokens(inst: Instance, budget: int) -> int:
        """Prompt tokens the iteration would take in: partial prefills' rest, then whole waiting prompts in order
        while they fit what is left of the budget."""
        tokens = sum(req.prefill_target - req.prefilled for req in inst.prefilling)
        for req in inst.waiting:
            need = req.prefill_target - req.prefilled
            if tokens + need > budget:
                break
            tokens += need
        return tokens
