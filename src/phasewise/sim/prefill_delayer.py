"""SGLang's prefill delayer (--enable-prefill-delayer, with attention data parallelism; a 2026 SGLang's
srt/managers/prefill_delayer.py PrefillDelayer._negotiate_should_allow_prefill_pure).

With attention DP the ranks run every forward together (the MoE joins them), so one rank's prefill stalls every
other rank's decodes for as long as it lasts. The delayer makes the ranks prefill together: at each forward pass
the ranks share whether each could run a prefill batch ("prefillable"). Every rank prefillable, or none: the
prefills run. Some but not all: they wait, pass after pass, until every rank is prefillable or the wait reaches
max_delay_passes - 1 passes (the next pass runs them, a timeout). The count restarts after every pass that lets
prefills run. Its token-usage low watermark (a rank whose KV use is below it forces the prefills; None by
default) is not modelled.

An instance's sequences are not placed on ranks here (perf/parallel.py costs the busiest rank), as in
sim/context_wait.py: "every rank prefillable" is read as at least `attention_dp` prompts ready to run (prompts
part-way through their prefill, and waiting prompts up to the free seats of max_running_requests), "none" as no
prompt ready. That counts each freed seat on a rank of its own, so it waits no longer than SGLang, whose freed
seats fall on ranks at random. A delayed pass is a decode step: with nothing decoding (every rank idle) the
prefills run at once (SGLang's idle passes last about a millisecond each). The instance looks again at the pass
where the wait would time out (Scheduler.steps_before_next_look) or when a request arrives or finishes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance


class PrefillDelayer:
    __slots__ = ("ranks", "max_delay_passes", "delayed_passes", "seen_step", "held", "hold_steps")

    def __init__(self, ranks: int, max_delay_passes: int) -> None:
        self.ranks = ranks  # attention data-parallel ranks
        self.max_delay_passes = max_delay_passes
        self.delayed_passes = 0  # passes the prompts have waited since prefills last ran
        self.seen_step = 0  # decode steps done at the last look
        self.held = False  # whether the last look held the prompts back
        self.hold_steps = 1  # after a hold: decode passes until the wait would time out

    def holds(self, inst: Instance) -> bool:
        """Whether this pass's prefills wait (called at each boundary with prompts waiting or part-way)."""
        passed = inst.decode_steps - self.seen_step
        if passed == 0 and self.held:  # the same boundary again: the same decision
            return True
        self.seen_step = inst.decode_steps
        if self.held:  # every decode pass since the last look was a delayed one
            self.delayed_passes += passed
        seats = inst.max_seqs - inst.running.n - len(inst.prefilling)
        ready = len(inst.prefilling) + min(len(inst.waiting), max(seats, 0))
        mixed = 0 < ready < self.ranks
        if not mixed or not inst.running.n or self.delayed_passes >= self.max_delay_passes - 1:
            self.delayed_passes, self.held = 0, False
            return False
        self.held = True
        self.hold_steps = self.max_delay_passes - 1 - self.delayed_passes
        return True
