"""SGLang: when a prefill batch can be formed it runs instead of that step's decode batch (no mixing
unless enable_mixed_chunk); a prefill batch holds at most chunked_prefill_size prompt tokens (a longer
prompt continues in the next prefill batch) and takes in prompts while max_prefill_tokens lasts: a prompt
that would reach what is left of it waits for the next batch unless it is the batch's first (0.5.x
schedule_policy.py PrefillAdder.add_one_req; later versions apply that wait only with chunking off).
Admission keeps KV for the future output of every running request, scaled by a new-token ratio that
starts at init_new_token_ratio, decays linearly to its floor over new_token_ratio_decay_steps decode
steps and is reset by a retraction or an idle pass, and for the whole (clipped) future output of the
new prompt and of the prompts admitted before it that are not decoding yet (PrefillAdder.add_one_req's
total_tokens and _update_prefill_budget: only the running batch's offset is scaled); when the KV runs
out mid-decode, running requests are retracted (to the tail of the queue, to be recomputed),
fewest decoded tokens first (srt/managers/scheduler.py, schedule_policy.py; ../shared/ENGINES.md).
Simplification: after a retraction the ratio returns to its initial value (SGLang recomputes it from
the remaining requests); output lengths are clipped at CLIP_MAX_NEW_TOKENS as SGLang does. With
--enable-prefill-delayer (attention DP) prefills may wait some passes first (sim/prefill_delayer.py)."""

from __future__ import annotations

from phasewise.sim.prefill_delayer import PrefillDelayer
from phasewise.sim.schedulers.base import Batch, Scheduler

CLIP_MAX_NEW_TOKENS = 4096  # SGLang's clip of max_new_tokens in admission estimates (schedule_policy.py)


class SglangScheduler(Scheduler):
    __slots__ = ("reset_step", "delayer")
    requeue_at_head = False  # update_running_batch: _extend_requests_to_queue(retracted_reqs), the queue's tail

    def __init__(self, config) -> None:
        super().__init__(config)
        self.reset_step = 0  # decode step at which the new-token ratio was last reset
        self.delayer = (PrefillDelayer(config.attention_dp, config.prefill_delayer)
                        if config.prefill_delayer is not None else None)

    def new_token_ratio(self, inst) -> float:
        init, floor, steps = self.config.new_token_ratio
        decayed = init - (init - floor) / steps * (inst.decode_steps - self.reset_step)
        return max(floor, decayed)

    def next_batch(self, inst):
        """A prefill batch within chunked_prefill_size (rem_chunk_tokens) and max_prefill_tokens (rem_input_tokens),
        both less the running decodes' tokens when mixed; a chunked prompt's next chunk comes first. With attention
        DP the instance's batch is its ranks' batches together: each prompt's chunk at most one rank's
        chunked_prefill_size // dp, up to dp prompts part-way at once (one per rank)."""
        cfg = self.config
        if self.delayer is not None and self.delayer.holds(inst):
            return None  # the prefills wait: this pass decodes only
        batch = Batch(with_decodes=cfg.mixed_batches and inst.running.n > 0)
        budget = cfg.prefill_chunk_tokens
        inputs = cfg.prefill_input_tokens if cfg.prefill_input_tokens is not None else budget
        if batch.with_decodes:
            budget -= inst.running.n * inst.decode_new_tokens
            inputs -= inst.running.n * inst.decode_new_tokens
        cap = cfg.prefill_rank_tokens
        left = self.continue_prefills(inst, batch, budget, cap)
        self.admit_waiting(inst, batch, left, cfg.chunked_prefill, cfg.partial_prefills,
                           input_budget=inputs - (budget - left), prompt_cap=cap)
        return batch if batch.chunks else None

    def steps_before_next_look(self, inst) -> int | None:
        return self.delayer.hold_steps if self.delayer is not None and self.delayer.held else None

    def admission_extra_blocks(self, inst, req) -> int:
        """PrefillAdder's reservation: the running requests' future output scaled by the new-token ratio, and in
        full (clipped) the output of every prompt admitted but not yet decoding and of the new one. A disaggregated
        prefill server sets each request's max_new_tokens to 1 (disaggregation/prefill.py _process_req): one token
        each."""
        if inst.role == "prefill":
            return inst.kv.blocks_for(len(inst.prefilling) + 1)
        running = inst.running.remaining_tokens(inst.decode_steps, inst.tokens_per_step, CLIP_MAX_NEW_TOKENS)
        admitted = sum(min(max(r.output - r.generated, 0), CLIP_MAX_NEW_TOKENS) for r in inst.prefilling)
        admitted += min(max(req.output - req.generated, 0), CLIP_MAX_NEW_TOKENS)
        return inst.kv.blocks_for(self.new_token_ratio(inst) * running + admitted)

    def victim(self, inst) -> int:
        """Fewest decoded tokens first; among those, the longest prompt; among those, the latest admitted
        (retract_decode sorts the batch by (output length, -prompt length) in reverse, stably, and pops the tail)."""
        run = inst.running
        generated = run.generated(inst.decode_steps, inst.tokens_per_step)
        return min(range(run.n), key=lambda i: (generated[i], -run.reqs[i].prompt, -run.admitted[i]))

    def on_preempt(self, inst) -> None:
        self.reset_step = inst.decode_steps

    def on_idle(self, inst) -> None:
        """An idle pass resets the ratio to its initial value (scheduler.py self_check_during_idle)."""
        self.reset_step = inst.decode_steps
