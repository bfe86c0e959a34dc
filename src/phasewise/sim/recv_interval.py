"""SGLang's `--scheduler-recv-interval N`: the scheduler reads new requests from the tokenizer's socket only
when a weighted counter of its forwards reaches N. A decode-only forward weighs 1, a forward with any prompt
tokens (extend or mixed) 1000, and an idle loop 1 (it spins, so an idle scheduler takes a request at once);
at each read the counter restarts from 0 (srt/managers/scheduler_recv_skipper.py, SchedulerRecvSkipper:
DECODE 1, TARGET_VERIFY 1, None 1, every other forward mode 1000). So while only decodes run, a new request
waits until the next N-th decode step since the last read: on average about N/2 steps. The default N = 1
reads at every iteration (srt/server_args.py); benchmark recipes raise it, e.g. InferenceX's DeepSeek-R1
B200 SGLang script passes 10 below 16 concurrent requests and 30 from 16 up (benchmarks/dsr1_fp8_b200.sh).

The read points are the anchor (the decode step count at the last forward with prompt tokens) plus every
multiple of N decode steps; `Instance` holds arriving requests here and ends a decode run at the next read
point when something is held."""

from __future__ import annotations

from collections import deque


class RecvInterval:
    __slots__ = ("interval", "inbox", "anchor_step")

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.inbox: deque = deque()  # requests sent to the scheduler and not read yet
        self.anchor_step = 0  # decode steps done when the scheduler last read after a forward with prompt tokens

    def steps_to_next_read(self, steps_done: int) -> int:
        """Decode steps after `steps_done` until the next read point (1..N)."""
        return self.interval - (steps_done - self.anchor_step) % self.interval

    def read_due(self, steps_done: int) -> bool:
        """Whether the scheduler reads at this boundary (a multiple of N decode steps since the anchor)."""
        return steps_done > self.anchor_step and (steps_done - self.anchor_step) % self.interval == 0

    def read(self, steps_done: int, after_prompt: bool = False) -> list:
        """Everything held, now read by the scheduler; a forward with prompt tokens moves the anchor."""
        if after_prompt:
            self.anchor_step = steps_done
        out = list(self.inbox)
        self.inbox.clear()
        return out
