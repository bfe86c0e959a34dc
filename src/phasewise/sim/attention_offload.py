"""Adrenaline's attention offload in a disaggregated deployment: the mechanism and its load-aware controller.

A request whose prefill ends when its decode instance has no seat or KV room for it may stay where it is: its
KV already sits in the prefill GPU's HBM (no KV transfer), and the decode instance adds it to its batch with
its attention run on that prefill GPU (the host). The decode batch grows from the local M to M + N; each
offloaded step costs what perf/attention_offload.py says (the slower of the decode side and the host side).

  KV      an offloaded request's blocks stay on the host's KVBlocks; before each decode run the blocks its
          members grow into during the run are allocated there (the run is shortened to what fits, and when not
          one step fits the newest member is preempted and recomputed, as on a decode instance); they are freed
          there when it finishes;
  seats   offloaded requests do not take the decode instance's seats (max_num_seqs): its batch is M + N;
  prefill while a host holds offloaded requests, its prefill iterations run on 1 - sm_share of the SMs
          (CUDA MPS): their time is divided by that share.

Controller (mode auto): a request is offloaded only if, with it, (i) its KV fits the host's free HBM beyond
a headroom kept for prompts, (ii) the host side of the step (offloaded attention at the requests' current
lengths, plus the exchange) stays within the decode side, the step within the TPOT SLO, and (iii) the
host's prefill load, slowed by the SM share, stays below max_prefill_utilization, its queue of prompts within
one prefill iteration's token budget, and its recent TTFT, inflated likewise, within the TTFT SLO. A saturated
prefill instance takes no offloaded requests: N falls to 0 as those it holds finish. Mode fixed: at most `requests` per decode instance, within (i) only.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf import memory_fit
from phasewise.perf.attention_offload import AttentionOffloadCost
from phasewise.sim.link import link_rate
from phasewise.sim.running import RunningSet

if TYPE_CHECKING:
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.deployment import AttentionOffload
    from phasewise.sim.instance import Instance
    from phasewise.sim.metrics import Slo
    from phasewise.sim.request import SimRequest

# The prefill load is measured over windows of this much simulated time. Assumed: tens of prefill iterations,
# long enough to average a batch's ups and downs, short enough to follow a change of arrival rate.
LOAD_WINDOW_S = 2.0
# Weight of the latest request in the moving average of TTFT. Assumed: ~20 requests of memory.
TTFT_WEIGHT = 0.05


def offload_block(mode: str, sm_share: float | None, disaggregated: bool) -> dict | None:
    """The deployment's `attention_offload` block from the flags --attention-offload auto|N|off and
    --attention-offload-sm-share (None: no block, the plain deployment)."""
    text = str(mode).strip().lower()
    if text == "off":
        if sm_share is not None:
            raise PhasewiseError("--attention-offload-sm-share needs --attention-offload auto or N")
        return None
    if text == "auto":
        block: dict = {"mode": "auto"}
    else:
        try:
            requests = int(text)
        except ValueError:
            raise PhasewiseError(f"--attention-offload takes auto, off or a number of requests (got {mode!r})") \
                from None
        if requests < 0:
            raise PhasewiseError(f"--attention-offload N must be >= 0 (got {requests})")
        block = {"mode": "fixed", "requests": requests}
    if not disaggregated:
        raise PhasewiseError("--attention-offload needs --arch disagg (it offloads decode attention to prefill "
                             "instances)")
    if sm_share is not None:
        if not 0 < sm_share < 1:
            raise PhasewiseError(f"--attention-offload-sm-share must be in (0, 1) (got {sm_share})")
        block["sm_share"] = sm_share
    return block


class OffloadedSet:
    """The offloaded requests one decode instance decodes with their attention on one host."""

    __slots__ = ("context_base_sum", "cost", "decode", "finish_heap", "held_blocks", "host", "last_s", "last_step",
                 "ready", "run_sums", "running", "token_seconds")

    def __init__(self, host: Instance, decode: Instance, cost: AttentionOffloadCost) -> None:
        self.host, self.decode, self.cost = host, decode, cost
        self.running = RunningSet(64)
        self.ready: list[SimRequest] = []  # offloaded, joining at the decode instance's next boundary
        self.finish_heap: list[tuple[int, int, SimRequest, int]] = []  # (finish step, id, request, epoch)
        self.context_base_sum = 0.0  # as Instance.context_base_sum, for this set
        self.held_blocks = 0  # the members' (and those ready to join) blocks on the host
        self.run_sums: tuple[int, float] = (0, 0.0)  # (seqs, KV tokens) at the start of the run in flight
        self.token_seconds = 0.0  # integral of the KV tokens the members hold on the host
        self.last_s = 0.0
        self.last_step = 0  # the decode step at last_s

    @property
    def seqs(self) -> int:
        return self.running.n

    def kv_tokens(self, step: int) -> float:
        """KV tokens of the members at decode step `step` (cached + the new one): also their attention pairs."""
        return self.context_base_sum + self.running.n * (step + 1)


class AttentionOffloadController:
    """The offloaded sets of every (host, decode instance) pair and the decisions to offload."""

    def __init__(self, config: AttentionOffload, cluster: Cluster, instances: list[Instance], slo: Slo | None) -> None:
        self.config, self.cluster, self.loop = config, cluster, cluster.loop
        if cluster.live:
            raise PhasewiseError("attention_offload is not supported by the digital twin (live mode)")
        model = instances[0].model
        if model.sliding_window:
            raise PhasewiseError(f"attention_offload does not support sliding-window attention ({model.name})")
        tpot_ms = config.tpot_slo_ms or (slo.tpot_ms if slo is not None else math.inf)
        ttft_ms = config.ttft_slo_ms or (slo.ttft_ms if slo is not None else math.inf)
        self.tpot_slo_s, self.ttft_slo_s = tpot_ms / 1e3, ttft_ms / 1e3
        self.hosts = [i for i in instances if i.role == "prefill"]
        self.decodes = [i for i in instances if i.role == "decode"]
        self._costs: dict[tuple, AttentionOffloadCost] = {}
        self.sets: dict[tuple[int, int], OffloadedSet] = {}
        self.by_decode: dict[int, list[OffloadedSet]] = {d.index: [] for d in self.decodes}
        self.by_host: dict[int, list[OffloadedSet]] = {h.index: [] for h in self.hosts}
        self.nominal_busy_s = {h.index: 0.0 for h in self.hosts}  # prefill time without the slowdown
        self.load = {h.index: (0.0, 0.0, 0.0) for h in self.hosts}  # (window start, busy then, last load)
        self.ttft_s = {h.index: 0.0 for h in self.hosts}  # moving average of recent TTFTs
        self.offloaded = 0
        self.preempted = 0
        self.host_bytes = {h.index: 0.0 for h in self.hosts}  # HBM bytes the offloaded attention moved there
        self.declined: dict[str, int] = {}
        # decode steps x (local, offloaded) seqs, decode steps; then the first two over steps that offload
        self.step_seqs = [0.0, 0.0, 0.0, 0.0, 0.0]
        for inst in instances:
            inst.offload = self
            if inst.role == "prefill":
                inst.kv.clock = self.loop

    # --- cost and sets ---------------------------------------------------------------------------
    def _cost(self, host: Instance, decode: Instance) -> AttentionOffloadCost:
        key = (host.group, decode.group)
        cost = self._costs.get(key)
        if cost is None:
            bandwidth, latency = link_rate(host.cost.hw.interconnect, self.cluster.deployment.kv_link)
            lanes = min(host.group.tp, decode.group.tp)  # each TP rank exchanges its heads' share
            cost = AttentionOffloadCost(decode.cost, host.cost, self.config.sm_share,
                                        bandwidth * lanes * host.cost.eff.link_efficiency, latency)
            self._costs[key] = cost
        return cost

    def _set(self, host: Instance, decode: Instance) -> OffloadedSet:
        key = (host.index, decode.index)
        found = self.sets.get(key)
        if found is None:
            found = self.sets[key] = OffloadedSet(host, decode, self._cost(host, decode))
            self.by_decode[decode.index].append(found)
            self.by_host[host.index].append(found)
        return found

    def decoding(self, decode: Instance) -> int:
        """Offloaded requests in the decode instance's batch."""
        return sum(s.running.n for s in self.by_decode[decode.index])

    def _sharing(self, host: Instance) -> bool:
        return any(s.running.n or s.ready for s in self.by_host[host.index])

    # --- the decision ----------------------------------------------------------------------------
    def try_offload(self, req: SimRequest, src: Instance, dst: Instance) -> bool:
        """Prefill of `req` done on `src`, bound for `dst`: keep it on `src` with its attention offloaded
        (True), or leave it to the KV transfer (False)."""
        ttft, latest = self.ttft_s, self.loop.now - req.arrival_s  # its prefill's time to the first token
        ttft[src.index] = latest if not ttft[src.index] else ttft[src.index] + TTFT_WEIGHT * (latest - ttft[src.index])
        if self._local_room(req, dst):
            return False  # the decode instance takes it now: nothing to gain
        if not self._admit(req, src, dst):
            return False
        dst.outstanding += req.prompt + req.output
        dst.poke()
        return True

    def _refill(self, dst: Instance) -> None:
        """Offloaded requests finished on `dst`: requests waiting for its seats whose KV sits on a host (in
        Cluster's pending transfers, FIFO) take their places, their KV staying where it is."""
        while dst.pending_transfers:
            req, src = dst.pending_transfers[0]
            if src.role != "prefill" or not self._admit(req, src, dst, pending=True):
                return
            dst.pending_transfers.popleft()
            req.kv_blocks, req.src_blocks = req.src_blocks, 0
            dst.poke()

    def _admit(self, req: SimRequest, src: Instance, dst: Instance, pending: bool = False) -> bool:
        """Offload `req`, whose prompt KV is on `src` (req.kv_blocks, or req.src_blocks if `pending` a transfer),
        if the policy allows."""
        now = self.loop.now
        offload = self._set(src, dst)
        config = self.config
        if config.mode == "fixed":
            if self.decoding(dst) + sum(len(s.ready) for s in self.by_decode[dst.index]) >= config.requests:
                return self._decline("limit")
        else:
            reason = self._auto_refusal(req, offload, src, dst)
            if reason:
                return self._decline(reason)
        held = req.src_blocks if pending else req.kv_blocks
        need = src.kv.blocks_for(req.prompt + req.generated + 1)  # through its first decode step
        extra = max(need - held, 0)
        # (i) the offloaded KV fits the host's HBM beyond the headroom kept for its prompts
        offloaded = sum(s.held_blocks for s in self.by_host[src.index])
        if offloaded + need > (1.0 - config.prefill_kv_headroom) * src.kv.capacity or not src.can_reserve(extra):
            return self._decline("prefill_hbm")
        self._integrate(offload, now)
        src.kv.allocate(extra)
        if pending:
            req.src_blocks += extra
        else:
            req.kv_blocks += extra
        offload.held_blocks += held + extra
        req.kv_ready_s = now  # its KV is where its attention runs
        offload.ready.append(req)
        self.offloaded += 1
        return True

    def _decline(self, reason: str) -> bool:
        self.declined[reason] = self.declined.get(reason, 0) + 1
        return False

    @staticmethod
    def _local_room(req: SimRequest, dst: Instance) -> bool:
        """Whether Cluster.try_transfers would start this request's transfer now."""
        if dst.pending_transfers or dst.running.n + len(dst.ready) + dst.incoming >= dst.max_seqs:
            return False
        return dst.can_reserve(dst.kv.blocks_for(req.prompt + req.generated + 1))

    def _auto_refusal(self, req: SimRequest, offload: OffloadedSet, src: Instance, dst: Instance) -> str:
        """Why the controller refuses one more offloaded request ('' if it accepts)."""
        cost = offload.cost
        slowdown = 1.0 if self._sharing(src) else cost.prefill_slowdown()  # (observed figures include it)
        if self._prefill_load(src) * cost.prefill_slowdown() > self.config.max_prefill_utilization:
            return "prefill_load"
        if src.waiting.tokens > src.engine.token_budget:  # more prompt tokens queued than one prefill takes: saturated
            return "prefill_queue"
        if self.ttft_s[src.index] * slowdown > self.ttft_slo_s:
            return "ttft_slo"
        pairs, kv = dst._decode_sums()
        host_seqs = offload.running.n + len(offload.ready) + 1
        host_kv = offload.kv_tokens(dst.decode_steps) + sum(r.prompt + r.generated for r in offload.ready) \
            + req.prompt + req.generated
        step = cost.step(dst.running.n, pairs, kv, host_seqs, host_kv, host_kv,
                         other_seqs=self.decoding(dst) - offload.running.n)
        if step.host_side_s > step.decode_side_s:
            return "overlap"
        if step.latency_s > self.tpot_slo_s:
            return "tpot_slo"
        return ""

    def _prefill_load(self, host: Instance) -> float:
        """The host's prefill busy share (without the slowdown) over the last completed window."""
        now = self.loop.now
        start, busy_then, last = self.load[host.index]
        busy = self.nominal_busy_s[host.index]
        if now - start >= LOAD_WINDOW_S:
            last = (busy - busy_then) / (now - start)
            self.load[host.index] = (now, busy, last)
        elif start == 0.0 and now > 0.0:  # the first window: so far
            last = busy / now
        return last

    # --- hooks from the instances ----------------------------------------------------------------
    def prefill_time(self, host: Instance, time_s: float) -> float:
        """A prefill iteration of `time_s` launched on `host`: slower while it shares its SMs."""
        if host.role != "prefill":
            return time_s
        self.nominal_busy_s[host.index] += time_s
        for offload in self.by_host[host.index]:
            if offload.running.n or offload.ready:
                return time_s * offload.cost.prefill_slowdown()
        return time_s

    def join(self, decode: Instance) -> None:
        """At a decode boundary: offloaded requests join the batch (as Instance._join, for the set)."""
        step = decode.decode_steps
        for offload in self.by_decode[decode.index]:
            now = self.loop.now
            if offload.ready:
                self._integrate(offload, now)
            for req in offload.ready:
                if math.isnan(req.scheduled_s):
                    req.scheduled_s = now
                self.cluster.first_token_pending(req, decode)
                req.join_step = step
                req.join_context = context = req.prompt + req.generated - 1
                offload.running.add(req, req.kv_blocks)
                offload.context_base_sum += context - step
                heapq.heappush(offload.finish_heap, (step + req.output - req.generated, req.id, req, req.epoch))
            offload.ready.clear()

    def run_length(self, decode: Instance, steps: int) -> int:
        """`steps` bounded by the next offloaded request's finish and by the host KV the members grow into,
        which is allocated there now for the whole run; when not even one step's growth fits, the newest
        members are preempted (recomputed on a prefill instance), as a decode instance preempts."""
        step = decode.decode_steps
        for offload in self.by_decode[decode.index]:
            heap = offload.finish_heap
            while heap and heap[0][3] != heap[0][2].epoch:
                heapq.heappop(heap)  # stale entry of a preempted member
            if heap:
                steps = min(steps, heap[0][0] - step)
        if steps <= 0:
            return steps
        for offload in self.by_decode[decode.index]:
            if not offload.running.n:
                continue
            kv = offload.host.kv
            if self._growth(offload, step, steps) > kv.free:
                fit = self._fitting_steps(offload, step, steps, kv.free)
                while not fit and offload.running.n:  # not one step fits: preempt the newest member
                    self._preempt(offload, offload.running.reqs[-1])
                    fit = self._fitting_steps(offload, step, steps, kv.free) if offload.running.n else steps
                steps = fit
            growth = self._growth(offload, step, steps) if offload.running.n else 0
            if growth:
                self._integrate(offload, self.loop.now)
                held = offload.running.blocks[:offload.running.n]
                np.maximum(self._blocks(offload, step, steps), held, out=held)
                kv.allocate(growth)
                offload.held_blocks += growth
        if not decode.running.n and not self.decoding(decode):
            return 0  # every offloaded member was preempted and nothing else decodes: the instance re-plans
        return steps

    def _fitting_steps(self, offload: OffloadedSet, step: int, steps: int, free: int) -> int:
        """The longest run (at most `steps`) whose growth fits `free` blocks (0 if not even one step)."""
        low, high = 0, steps + 1
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if self._growth(offload, step, mid) <= free else (low, mid)
        return low

    @staticmethod
    def _blocks(offload: OffloadedSet, step: int, steps: int) -> np.ndarray:
        """Blocks each member needs through decode step step + steps - 1 (its context plus the new token)."""
        tokens = offload.running.contexts(step + steps - 1, 1.0) + 1
        return np.ceil(tokens / offload.host.kv.block_size).astype(np.int64)

    def _growth(self, offload: OffloadedSet, step: int, steps: int) -> int:
        """Blocks the members grow into over a run of `steps` from `step`, beyond those they hold."""
        held = offload.running.blocks[:offload.running.n]
        return int(np.maximum(self._blocks(offload, step, steps) - held, 0).sum())

    def _preempt(self, offload: OffloadedSet, req: SimRequest) -> None:
        """Recompute preemption of an offloaded member: its host KV is freed and it re-prefills its prompt and
        the tokens it generated on a prefill instance (as Instance._preempt on a decode instance)."""
        decode, step = offload.decode, offload.decode.decode_steps
        self._integrate(offload, self.loop.now)
        steps = step - req.join_step
        self.cluster.first_token_at_decode(req, decode, req.join_step, steps)
        if steps:
            req.segments.append((decode, req.join_step, steps, 0, steps))
            req.generated += steps
        offload.context_base_sum -= req.join_context - req.join_step
        blocks = offload.running.remove(req)
        offload.host.kv.free_blocks(blocks)
        offload.held_blocks -= blocks
        offload.host.poke()  # freed blocks may admit the host's waiting prompts
        req.kv_blocks = 0
        req.epoch += 1
        req.preemptions += 1
        decode.stats.preemptions += 1
        self.preempted += 1
        decode.outstanding -= req.prompt + req.output
        self.cluster.requeue(req)

    def series(self, decode: Instance, steps: np.ndarray, seqs: int, pairs: float, kv: float
               ) -> tuple[np.ndarray, tuple[float, float, float]]:
        """Latencies of the decode run (local sums `pairs`, `kv` of `seqs` sequences) with the offloaded
        attention of each host: the decode side of the whole batch, each host side, the slowest of them."""
        sets = [s for s in self.by_decode[decode.index] if s.running.n]
        step = decode.decode_steps
        offloaded = sum(s.running.n for s in sets)
        latencies = first = None
        for offload in sets:  # each host's side against the decode side of the whole batch
            host_kv = offload.kv_tokens(step)
            offload.run_sums = (offload.running.n, host_kv)
            lat, base = offload.cost.series(seqs, pairs, kv, offload.running.n, host_kv, host_kv, steps,
                                            other_seqs=offloaded - offload.running.n)
            if latencies is None:
                latencies, first = lat, base
            else:
                np.maximum(latencies, lat, out=latencies)
        return latencies, first

    def end_run(self, decode: Instance, steps: int, duration_s: float) -> int:
        """A decode run of `steps` steps ended: the host side's work goes to each host's statistics.
        Returns the offloaded requests that decoded in it."""
        total = 0
        for offload in self.by_decode[decode.index]:
            seqs, host_kv = offload.run_sums
            if not seqs:
                continue
            host = offload.host
            flops, nbytes = offload.cost.host_work(seqs, host_kv, host_kv, steps)
            scale = host.cost.tp * host.cost.pp
            flops, nbytes = flops * scale, nbytes * scale
            host.stats.flops += flops
            host.stats.bytes += nbytes
            # its energy above idle, as any work's (sim/iteration_accounting.py work_energy_j); the host's idle power
            # is already counted over its whole run
            host.stats.energy_j += host.work_energy_j(flops, nbytes)
            self.host_bytes[host.index] += nbytes
            offload.run_sums = (0, 0.0)
            total += seqs
        local, sums = decode.running.n, self.step_seqs
        sums[0] += local * steps
        sums[1] += total * steps
        sums[2] += steps
        if total:  # steps with offloaded requests in the batch
            sums[3] += local * steps
            sums[4] += total * steps
        return total

    def finish_due(self, decode: Instance) -> None:
        """Finish the offloaded requests due by the decode instance's step; their KV is freed on the host."""
        done, ends = decode.decode_steps, decode.decode_end.data
        for offload in self.by_decode[decode.index]:
            heap = offload.finish_heap
            if not heap or heap[0][0] > done:
                continue
            self._integrate(offload, self.loop.now)
            while heap and heap[0][0] <= done:
                d_fin, _, req, epoch = heapq.heappop(heap)
                if epoch != req.epoch:
                    continue
                steps = d_fin - req.join_step
                self.cluster.first_token_at_decode(req, decode, req.join_step, steps)
                req.segments.append((decode, req.join_step, steps, 0, steps))
                req.generated += steps
                offload.context_base_sum -= req.join_context - req.join_step
                blocks = offload.running.remove(req)
                if self.cluster.check:
                    final = req.join_context + steps  # KV tokens written by its last step
                    if blocks < offload.host.kv.blocks_for(final):
                        raise AssertionError(f"request {req.id}: offloaded KV of {blocks} blocks does not hold "
                                             f"its {final} tokens")
                offload.host.kv.free_blocks(blocks)
                offload.held_blocks -= blocks
                req.kv_blocks = 0
                decode._finish(req, ends.item(d_fin - 1))
            self._refill(decode)
            offload.host.poke()  # freed blocks may admit prompts

    def _integrate(self, offload: OffloadedSet, now: float) -> None:
        """Integrate the KV tokens the set holds on the host up to `now`."""
        dt = now - offload.last_s
        step = offload.decode.decode_steps
        if dt > 0 and offload.running.n:  # their tokens grow linearly between these points: the interval's mean
            offload.token_seconds += (offload.kv_tokens(offload.last_step) + offload.kv_tokens(step)) / 2 * dt
        offload.last_s, offload.last_step = now, step

    # --- the end ---------------------------------------------------------------------------------
    def finalize(self) -> None:
        """The offload's figures into the cluster's policy statistics (SimResult.policy)."""
        now = self.loop.now
        for offload in self.sets.values():
            self._integrate(offload, now)
            if self.cluster.check and (offload.running.n or offload.ready or offload.held_blocks):
                raise AssertionError(f"{offload.decode.name}: offloaded requests left at the end")
        hosts = []
        dep = self.cluster.deployment
        for host in self.hosts:
            host.kv.advance()
            group = host.group
            fit = memory_fit(host.model, host.cost.hw, host.cost.quant, group.tp, group.pp,
                             memory_fraction=host.engine.fraction(group.memory_fraction),
                             engine=host.engine.profile)
            block_bytes = fit.kv_bytes_per_token * host.kv.block_size
            sets = self.by_host[host.index]
            held_tokens = sum(s.token_seconds for s in sets)
            kv_bytes = host.kv.block_seconds * block_bytes / now if now > 0 else 0.0  # every block in use there
            hosts.append({"name": host.name, "hbm_use": (fit.weight_bytes + kv_bytes) / fit.capacity_bytes,
                          "offloaded_kv_mean_bytes": held_tokens * fit.kv_bytes_per_token / now if now > 0 else 0.0,
                          "kv_mean_bytes": kv_bytes, "weight_bytes": fit.weight_bytes,
                          "offloaded_attention_bytes": self.host_bytes[host.index]})
        steps = self.step_seqs[2]
        local = self.step_seqs[0] / steps if steps else 0.0
        offloaded = self.step_seqs[1] / steps if steps else 0.0
        sm_share = next(iter(self._costs.values())).sm_share if self._costs else self.config.sm_share
        self.cluster.policy_stats["attention_offload"] = {
            "mode": self.config.mode, "sm_share": sm_share, "offloaded_requests": self.offloaded,
            "preempted": self.preempted,
            "declined": dict(sorted(self.declined.items())),
            "mean_local_seqs": local, "mean_offloaded_seqs": offloaded,
            "offloaded_per_local": offloaded / local if local else 0.0,
            # N / M over the decode steps with offloaded requests in the batch
            "offloaded_per_local_active": self.step_seqs[4] / self.step_seqs[3] if self.step_seqs[3] else 0.0,
            "tpot_slo_ms": self.tpot_slo_s * 1e3, "ttft_slo_ms": self.ttft_slo_s * 1e3,
            "kv_link": dep.kv_link, "hosts": hosts}
