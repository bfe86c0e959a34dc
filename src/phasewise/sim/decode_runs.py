"""An instance's decode runs (a mixin of sim/instance.py's Instance, whose state it reads): a run of pure-decode
iterations costed in one vectorized call and committed at once when it ends (or cut short, at an iteration boundary,
when work arrives or the scheduler reads), the steps it completes finishing the requests due."""

from __future__ import annotations

import heapq
import math

import numpy as np

from phasewise.perf.batch import windowed_keys, windowed_pairs
from phasewise.sim.decoding_set import MAX_RUN

_STEPS = np.arange(MAX_RUN, dtype=np.float64)


class DecodeRuns:
    __slots__ = ()

    def _launch_run(self) -> None:
        n = self._run_length()
        if self.cluster.live:
            n = min(n, 1)  # the twin streams every token at its iteration's end
        if self.offload is not None:
            n = self.offload.run_length(self, n)
        if n <= 0:  # everything was preempted
            return self._step()
        now = self.loop.now
        seqs, accepted, fed = self.running.n, self.tokens_per_step, self.decode_new_tokens
        steps = _STEPS[:n]
        pairs, kv = self._decode_sums()
        if self.offload is not None and self.offload.decoding(self):  # attention offload (no window, no spec)
            lat, base = self.offload.series(self, steps, seqs, pairs, kv)
        elif self.window:  # each context's keys and pairs (the first step's: _decode_sums'), the window over them
            keys, grown = self.running.contexts(self.decode_steps, accepted) + fed, accepted * steps
            causal = self.model.causal
            kv_series = windowed_keys(keys, self.window, grown)
            pair_series = kv_series if fed == 1 and causal else windowed_pairs(fed, keys, causal, self.window, grown)
            lat, base = self.cost.decode_series(self._decode_shape(), pair_series, kv_series)
        else:  # every step adds `accepted` tokens to each of the `seqs` contexts (no BatchShape: only its sums)
            line = self.cost.decode_line(seqs, seqs * fed, seqs * fed)
            lat, base = self.cost.decode_line_series(line, pairs, kv, steps, seqs * accepted, seqs * accepted * fed,
                                                     self._capped_keys_series(steps))
        if self.draft is not None:
            lat += self._draft_time(seqs, pairs, kv)
        if self.trainer is not None:  # online training: slower beside an SM-partitioned trainer
            lat = self.trainer.run_latencies(self, lat)
        # end times: np.cumsum(lat) (without its wrapper, which costs more than a short run's sum) + now, written
        # straight past the end of decode_end, which keeps those the run completes when it ends
        ends = np.add.accumulate(lat, out=self.decode_end.tail(n))
        ends += now
        self.version += 1
        self.decode_run = (now, ends, self.version, base)
        self.planned_steps = self.decode_steps + n - 1
        self.loop.at(float(ends[-1]), self._end_run, self.version)
        if self.recv is not None and self.recv.inbox:
            self._end_run_at_read()
        if self.waiting or self.prefilling:  # prompts held back for some iterations (TensorRT-LLM's waiting)
            look = self.scheduler.steps_before_next_look(self)
            if look is not None:
                self._cut_run(look - 1)

    def _end_run(self, version: int) -> None:
        if version != self.version or self.decode_run is None:
            return
        start, ends, _, base = self.decode_run
        self.decode_run = None
        n, seqs = len(ends), self.running.n
        if self.offload is not None and self.role == "decode":  # offloaded requests decoded in the run too
            seqs += self.offload.end_run(self, n, float(ends[-1]) - start)
        self._account(base, float(ends[-1]) - start, seqs, 0, seqs * self.decode_new_tokens * n, n, start)
        if self.mapped_energy is not None:
            self.mapped_energy.add_decode_run(self, n)
        self.decode_end.commit(n)  # (ends were written there)
        self._decode_steps_done(n)
        self._step()

    def _decode_steps_done(self, n: int) -> None:
        """Commit n decode steps whose end times were just recorded: finish who is due."""
        self.decode_steps += n
        self.planned_steps = self.decode_steps
        if self.cluster.check:
            self._check_growth(self.decode_steps - 1)
        if self.cluster.live:
            self._notify_decodes()
        self._finish_due()
        if self.offload is not None and self.role == "decode":
            self.offload.finish_due(self)

    def _notify_decodes(self) -> None:
        """Live: every decoding request's tokens produced by the iteration that just ended."""
        now, g, spec = self.loop.now, self.tokens_per_step, self.spec
        for r in self.running.reqs:
            steps = self.decode_steps - r.join_step
            made = (math.floor(g * (r.spec_steps + steps)) - math.floor(g * r.spec_steps)) if spec else steps
            total = min(r.generated + made, r.output)
            if total > r.streamed:
                self.cluster.on_token(r, total - r.streamed, now, self)
                r.streamed = total

    def _finish_due(self) -> None:
        heap, ends = self.finish_heap, self.decode_end.data
        while heap and heap[0][0] <= self.decode_steps:
            d_fin, _, req, epoch = heapq.heappop(heap)
            if epoch != req.epoch:
                continue
            end = ends.item(d_fin - 1)
            held = self._leave(req, d_fin)
            self.kv.free_blocks(held, req)
            req.kv_blocks = 0
            self._finish(req, end)

    def _iteration_in_flight(self) -> int:
        """Index, within the decode run in flight, of the iteration running now."""
        return int(self.decode_run[1].searchsorted(self.loop.now, side="left"))

    def _cut_run(self, i: int) -> None:
        """End the decode run in flight after its iteration i (if it would run longer)."""
        start, ends, _, base = self.decode_run
        if i < len(ends) - 1:
            self.version += 1
            self.decode_run = (start, ends[: i + 1], self.version, base)
            self.planned_steps = self.decode_steps + i
            self.loop.at(float(ends[i]), self._end_run, self.version)

    def _end_run_at_read(self) -> None:
        """Requests are held for the scheduler's next read: end the decode run in flight there."""
        if self.decode_run is not None:
            i = self._iteration_in_flight()
            self._cut_run(i + self.recv.steps_to_next_read(self.decode_steps + i + 1) % self.recv.interval)

