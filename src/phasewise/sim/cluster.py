"""The cluster: instances, the router in front of them, KV transfers between phases, and the
per-request bookkeeping when a request finishes."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from phasewise.perf.window_kv import kv_token_equivalents
from phasewise.sim.events import EventLoop
from phasewise.sim.fabric import Fabric, Port
from phasewise.sim.metrics import Slo, TbtHistogram, slo_met
from phasewise.sim.prefix_cache import attach_prefix_caches, summarize
from phasewise.sim.request import SimRequest
from phasewise.sim.router_queue import RouterQueue
from phasewise.sim.routers import Router, make_router
from phasewise.workload.mooncake import MOONCAKE_BLOCK_TOKENS

if TYPE_CHECKING:
    from phasewise.sim.deployment import Deployment
    from phasewise.sim.frontend_counters import FrontendCounters
    from phasewise.sim.instance import Instance


class Cluster:
    def __init__(self, deployment: Deployment, loop: EventLoop, n_requests: int, check: bool = False) -> None:
        self.deployment, self.loop, self.check = deployment, loop, check
        self.record_timeline = False
        self.live = False  # the digital twin: every token is notified, no per-request arrays are kept
        self.on_token = None  # live: on_token(request, tokens, time, instance that produced them)
        self.on_done = None  # live: on_done(request) when it finishes, is rejected or cancelled
        self.instances: list[Instance] = []
        self.front: Router | None = None  # collocated or prefill instances
        self.back: Router | None = None  # decode instances
        self.fabric = Fabric(loop)  # KV transfers from prefill to decode instances (sim/fabric.py)
        self.links: dict[str, Port] = {}  # a prefill instance's sending port (its replica's lanes)
        self.receivers: dict[str, Port] = {}  # a decode instance's receiving port (its replica's lanes)
        self.kv_bytes_per_token = 0.0  # whole model, per full-layer KV token (kv_transfer_bytes), for transfers
        # tokens of one prefix block, the prefix caches' key (a Mooncake trace's hash ids: 512; the twin hashes prompts
        # in its engines' KV blocks): build_cluster sets it
        self.prefix_block_tokens = MOONCAKE_BLOCK_TOKENS
        self.state_bytes_per_sequence = 0.0  # linear-attention layers' recurrent state, sent with each KV transfer
        self.policy_stats: dict = {}  # serving-policy figures (offloads, migrations, ...) -> SimResult.policy
        self.pools = None  # priority pools' controller (sim/priority_pools.py), when the deployment has them
        self.offload = None  # attention offload's controller (sim/attention_offload.py), when the deployment has it
        self.trainer = None  # online training's colocated trainers (sim/online_training.py), when the deployment has them
        self.encoders = None  # disaggregated vision encoders (sim/encode_pool.py), when the deployment has them
        self.autoscalers: list = []  # replicas added and removed with the load (sim/autoscaler.py), a group each
        self.gateway: deque = deque()  # requests held while no replica serves (an autoscaler at zero)
        # a replica became ready: the gateway's release is due once the replicas ready at this instant all are
        # (Autoscaler._ready)
        self.release_due = False
        self.router_queue: RouterQueue | None = None  # router dynamo_kv's queue, with a threshold
        self.routed_requests = 0  # new requests sent towards the collocated or prefill instances so far
        # over the finished requests, as a frontend's Prometheus counters: kept only for a planner that reads them
        self.frontend: FrontendCounters | None = None
        self.tbt = TbtHistogram()
        n = n_requests
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.scheduled_s = np.full(n, np.nan)
        self.tpot_s = np.full(n, np.nan)
        self.max_tbt_s = np.full(n, np.nan)
        self.preemptions = np.zeros(n, dtype=np.int64)
        self.instance_of = np.full(n, -1, dtype=np.int64)
        self.cached_tokens = np.full(n, -1, dtype=np.int64)  # -1: no prefix cache where it was first admitted
        self.done = 0
        self.rejected = 0
        self.rejected_by: dict[str, int] = {}  # requests that can never run, per reason (metrics.REJECT_REASONS)
        self.refuse_beyond_context = False  # reject a prompt beyond the model's context on arrival (an engine's check)
        self.on_finish = None  # closed-loop hook: called with the finished request
        # a search's probe (stop_after_misses): the run ends once more than `miss_limit` requests surely missed
        self.miss_slo: Slo | None = None
        self.miss_limit = 0
        self.misses = 0
        self.stopped_s = math.nan
        self._gaps: list[float] = []  # gaps at segment boundaries, binned in batches
        self._check_gaps: list[np.ndarray] = []  # check mode: every request's gaps, recomputed explicitly

    def wire(self, instances: list[Instance], router: str, link_for, receiver_for=None, seed: int = 0) -> None:
        self.instances = instances
        front = [i for i in instances if i.role in ("collocated", "prefill") and i.group.pool != "hp"]
        back = [i for i in instances if i.role == "decode"]
        dynamo = self.deployment.dynamo_router()
        self.front = make_router(router, front, dynamo, seed)
        self.back = make_router(router, back, dynamo, seed) if back else None
        if dynamo.queue_threshold is not None and router == "dynamo_kv":
            self.router_queue = RouterQueue()
        attach_prefix_caches(self.deployment, front)
        for i in front:
            if back:
                self.links[i.name] = link_for(i)
        for i in back if receiver_for is not None else ():
            self.receivers[i.name] = receiver_for(i)

    # --- request flow --------------------------------------------------------------------------
    def arrive(self, req: SimRequest) -> None:
        if self.encoders is not None and req.image_patches:  # its images first, on an encode worker
            self.encoders.admit(req)
            return
        self.route(req)

    def route(self, req: SimRequest) -> None:
        """To the instance (collocated or prefill) the router picks."""
        self._to_front(req, True)

    def requeue(self, req: SimRequest) -> None:
        """A request preempted on a decode instance recomputes its KV on a prefill instance."""
        self._to_front(req, False)

    def _to_front(self, req: SimRequest, through_frontend: bool) -> None:
        self.routed_requests += through_frontend  # new requests (an autoscaler's rps)
        if not self.front.instances:  # an autoscaler at zero: held at the gateway, which starts a replica
            self.gateway.append((req, through_frontend))
            for scaler in self.autoscalers:
                scaler.wake()
            return
        queue = self.router_queue
        if through_frontend and queue is not None and (queue.waiting or self.front.must_hold()):
            queue.hold(req, self.loop.now)  # behind those already waiting
            return
        self.front.pick_for(req).enqueue(req, through_frontend=through_frontend)

    def _send(self, req: SimRequest) -> None:
        self.front.pick_for(req).enqueue(req)

    def prefill_progressed(self) -> None:
        """An instance prefilled prompt tokens: requests the router queue holds may go now."""
        if self.router_queue is not None and self.router_queue.waiting:
            self.router_queue.release(self.front, self.loop.now, self._send)

    def release_gateway(self) -> None:
        """A replica serves again: the requests the gateway held go to the router, in arrival order."""
        while self.gateway and self.front.instances:
            req, through_frontend = self.gateway.popleft()
            self.front.pick_for(req).enqueue(req, through_frontend=through_frontend)
        self.prefill_progressed()

    def transfer(self, req: SimRequest, src: Instance) -> None:
        """Prefill done on `src`: reserve KV on a decode instance, then send the KV over src's link."""
        dst = self.back.pick()
        # (a request its prefill's token completed has nothing to decode: no attention to offload)
        if self.offload is not None and req.generated < req.output and self.offload.try_offload(req, src, dst):
            return  # its KV stays on src, where its attention runs
        dst.outstanding += req.prompt + req.output  # counted now, so the next pick sees it
        src.sending += 1
        req.src_blocks = req.kv_blocks
        req.kv_blocks = 0
        dst.pending_transfers.append((req, src))
        self.try_transfers(dst)
        if dst.pending_transfers and not dst.busy and dst.siblings:
            # an idle PP virtual engine whose transfer waits on its replica's others' seats or blocks: their freeing
            # wakes it (Instance._wake_siblings), as when it goes idle with work waiting
            dst.wait_on_siblings()

    def try_transfers(self, dst: Instance) -> None:
        """Start queued transfers to `dst` (FIFO) while it has a seat and free blocks for them: the decode
        instance pulls KV only for requests it can schedule, and its capacity limits admission."""
        while dst.pending_transfers:
            if dst.running.n + len(dst.ready) + dst.incoming >= dst.max_seqs:
                return  # pull KV only for requests a seat awaits
            req, src = dst.pending_transfers[0]
            tokens = req.prompt + req.generated + 1
            if dst.engine.kv_admission == "reserve":  # its whole output's blocks too, as the engine admits collocated
                tokens = max(tokens, req.prompt + req.output)
            blocks = dst.kv.blocks_for(dst._kv_tokens(tokens))
            if blocks > dst.kv.capacity:  # more than the decode instance's whole cache: it never fits there
                dst.pending_transfers.popleft()
                src.kv.free_blocks(req.src_blocks, req)
                req.src_blocks = 0
                src.sending -= 1
                dst._reject(req, "beyond_kv_capacity")
                src.poke()
                continue
            if not dst.can_reserve(blocks):
                return
            dst.pending_transfers.popleft()
            dst.kv.allocate(blocks)
            req.kv_blocks = blocks
            nbytes = self.kv_transfer_bytes(req.prompt + req.generated, src) + self.state_bytes_per_sequence
            dst.incoming += 1
            self.fabric.send(req.id, self.links[src.name], self.receivers.get(dst.name), nbytes,
                             lambda r=req, s=src, d=dst: self._arrived(r, s, d))

    def kv_transfer_bytes(self, context_tokens: int, source: Instance) -> float:
        """Bytes of the KV cache a sequence of `context_tokens` holds on `source`, all layers (windowed layers as
        its engine holds them: perf/window_kv.py kv_stored_terms)."""
        return kv_token_equivalents(context_tokens, source.kv_stored) * self.kv_bytes_per_token

    def _arrived(self, req: SimRequest, src: Instance, dst: Instance) -> None:
        dst.incoming -= 1
        src.kv.free_blocks(req.src_blocks, req)
        req.src_blocks = 0
        src.sending -= 1
        if req.cancelled:  # the client left during the transfer
            dst.kv.free_blocks(req.kv_blocks)
            req.kv_blocks = 0
            dst.outstanding -= req.prompt + req.output
            src.poke()
            dst.poke()
            return
        req.kv_ready_s = self.loop.now
        src.poke()  # freed blocks may admit waiting prompts
        dst.join_ready(req)

    def first_token_pending(self, req: SimRequest, inst: Instance) -> None:
        """Disaggregated serving, as `req` (its first token sampled by the prefill instance) takes a seat on the
        decode instance `inst`: that token reaches the client as inst's engine streams it (EngineProfile.
        disagg_first_token): with_second, with the request's first decode step (SGLang's decode server returns the
        first and second tokens together, sgl-project/sglang issue #8210): TTFT holds the KV transfer, the wait for a
        seat and one decode step; recomputed, the decode instance computes the last prompt token again and samples
        the first token itself in that step, the second in the next (a vLLM decode pod, inference-sim issue #930):
        one more step, whose first emits the first token; at_schedule, now, as the step is scheduled (TensorRT-LLM's
        generation server). A request that token completes (one output token) is returned now where the decode
        instance does not recompute it (SGLang's decode server finishes it as it takes it, with no forward:
        process_batch_result_prebuilt), and Instance._join finishes it; recomputed, after its one step. Pending ones
        are resolved by first_token_at_decode() when the first run is recorded."""
        if not math.isnan(req.first_token_s):
            return
        mode = inst.cost.engine.disagg_first_token
        if mode == "at_schedule" or (mode == "with_second" and req.generated >= req.output):
            now = self.loop.now
            req.first_token_s = now
            req.segments.append((None, now))
            if self.live:
                req.streamed = 1
                self.on_token(req, 1, now, inst)
            return
        if mode == "recomputed":
            req.generated -= 1  # sampled again by the decode instance's first step (its run's first token)
        req.first_pending = True

    def first_token_at_decode(self, req: SimRequest, inst: Instance, join_step: int, steps: int) -> None:
        """Before a decode run of `steps` steps from `join_step` on `inst` is recorded: a pending first token
        (first_token_pending) is emitted with the run's first step (at its end; when the run has no step, as on a
        preemption before its first, now); one the decode instance recomputes is the run's own first token (its
        segment holds it), still pending while the run has no step."""
        if not req.first_pending:
            return
        if inst.cost.engine.disagg_first_token == "recomputed":
            if steps:
                req.first_pending = False
                req.first_token_s = inst.decode_end.data.item(join_step)
            return
        req.first_pending = False
        t = inst.decode_end.data.item(join_step) if steps else self.loop.now
        req.first_token_s = t
        req.segments.append((None, t))

    def cancel(self, req: SimRequest) -> None:
        """Live: the client disconnected; take the request out of wherever it is and free its KV."""
        if req.cancelled or req.finish_s == req.finish_s:  # already cancelled or finished
            return
        req.cancelled = True
        if self.router_queue is not None and self.router_queue.drop(req):
            self.done += 1
            return
        for inst in self.instances:
            if inst.cancel(req):
                break
        self.done += 1

    def reject(self, req: SimRequest, reason: str) -> None:
        self.rejected += 1
        if not self.live:  # a request rejected part-way was preempted first: counted with the instances' preemptions
            self.preemptions[req.id] = req.preemptions
        self.prefill_progressed()  # its prompt tokens left the pending count: the router queue may release some
        self.rejected_by[reason] = self.rejected_by.get(reason, 0) + 1
        if self.miss_slo is not None:
            self._missed()
        if self.on_done:
            self.on_done(req)
        if self.on_finish:
            self.on_finish(req)

    def finish(self, req: SimRequest) -> None:
        """Record the request's latencies. Gaps inside a decode segment are the instance's iteration
        gaps, binned in bulk by finalize(); only the gaps at segment boundaries are handled here."""
        self.done += 1
        if self.frontend is not None:
            self.frontend.observe(req)
        if self.live:
            self.on_done(req)
            return
        i = req.id
        if self.trainer is not None:  # online training: the request's feedback becomes a sample
            self.trainer.feedback(req)
        if self.check and self.finish_s[i] == self.finish_s[i]:
            raise AssertionError(f"request {i} finished twice")
        self.first_token_s[i] = req.first_token_s
        self.finish_s[i] = req.finish_s
        self.scheduled_s[i] = req.scheduled_s
        self.preemptions[i] = req.preemptions
        self.instance_of[i] = req.last_instance
        self.cached_tokens[i] = req.cached_tokens
        if req.output > 1:
            self.tpot_s[i] = (req.finish_s - req.first_token_s) / (req.output - 1)
        prev = math.nan
        worst = 0.0
        for seg in req.segments:
            inst = seg[0]
            if inst is None:
                t = seg[1]
                if prev == prev:  # not NaN: a token after a preemption's recompute
                    self._gaps.append(t - prev)
                    worst = max(worst, t - prev)
                prev = t
                continue
            _, lo, steps, _, tokens = seg
            ends = inst.decode_end.data
            gap = ends.item(lo) - prev  # (item(): a Python float, cheaper to compute with than a numpy scalar)
            self._gaps.append(gap)
            worst = max(worst, gap)
            if steps > 1:
                inst.tbt_ranges.extend((lo + 1, lo + steps, i))
            prev = ends.item(lo + steps - 1)
        self.max_tbt_s[i] = worst if req.output > 1 else math.nan
        # the largest gap inside a decode segment is binned by finalize(): `worst` is a lower bound, so a miss
        # counted here is certain
        if self.miss_slo is not None and not slo_met(self.miss_slo, req.first_token_s - req.arrival_s,
                                                     self.tpot_s[i], worst, req.output):
            self._missed()
        if len(self._gaps) >= 65536:
            self.tbt.add(np.array(self._gaps))
            self._gaps = []
        if self.check:
            times = self.token_times(req)
            self._check_request(req, times)
            self._check_gaps.append(np.diff(times))
        if self.on_finish:
            self.on_finish(req)

    def _missed(self) -> None:
        self.misses += 1
        if self.misses > self.miss_limit and self.stopped_s != self.stopped_s:
            self.stopped_s = self.loop.now
            self.loop.stop()

    def finalize(self) -> None:
        """Bin every in-segment gap: per instance, iteration gap k counts once per request decoding
        across it; per request, the largest gap is a range maximum over its segments."""
        if self._gaps:
            self.tbt.add(np.array(self._gaps))
            self._gaps = []
        for inst in self.instances:
            if not inst.tbt_ranges:
                continue
            n = inst.decode_end.n
            ends = inst.decode_end.data[:n]
            gaps = np.empty(n)
            gaps[0] = 0.0
            np.subtract(ends[1:], ends[:-1], out=gaps[1:])
            r = np.asarray(inst.tbt_ranges, dtype=np.int64).reshape(-1, 3)
            inst.tbt_ranges = []
            lo, hi, owner = r[:, 0], r[:, 1], r[:, 2]
            cover = np.zeros(n + 1, dtype=np.int64)
            np.add.at(cover, lo, 1)
            np.add.at(cover, hi, -1)
            self.tbt.add_weighted(gaps, np.cumsum(cover[:n]))
            bounds = np.empty(2 * len(lo), dtype=np.int64)
            bounds[0::2], bounds[1::2] = lo, np.minimum(hi, n - 1)
            widest = np.maximum.reduceat(gaps, bounds)[0::2]
            last = hi - 1  # reduceat excludes the end index; include gaps[hi - 1]
            widest = np.maximum(widest, gaps[last])
            np.fmax.at(self.max_tbt_s, owner, widest)
        if self.check:
            self._check_tbt()
        if self.pools is not None:
            self.pools.finalize()
        if self.offload is not None:
            self.offload.finalize()
        if self.trainer is not None:
            self.trainer.finalize()
        if self.router_queue is not None:
            self.policy_stats["router_queue"] = self.router_queue.figures()
        # (once each: the virtual engines of a PP replica share theirs)
        caches = list({id(i.kv.prefix): i.kv.prefix for i in self.instances if i.kv.prefix is not None}.values())
        if caches and any(c.requests or c.recompute_lookups for c in caches):  # only where prompts had prefix hashes
            self.policy_stats["prefix_cache"] = summarize(caches)

    def _check_tbt(self) -> None:
        """The bulk-binned gaps equal the explicit per-request token gaps, bin for bin."""
        from phasewise.sim.metrics import TbtHistogram

        explicit = TbtHistogram()
        for g in self._check_gaps:
            explicit.add(g)
        explicit._flush()
        self.tbt._flush()
        if explicit.n != self.tbt.n or not np.array_equal(explicit.counts, self.tbt.counts):
            raise AssertionError(f"TBT histogram mismatch: {self.tbt.n} gaps binned, {explicit.n} explicit")
        worst = np.array([g.max() if len(g) else np.nan for g in self._check_gaps])
        done = np.sort(np.flatnonzero(np.isfinite(self.finish_s)))
        if len(worst) and not np.allclose(np.sort(worst[np.isfinite(worst)]),
                                          np.sort(self.max_tbt_s[done][np.isfinite(self.max_tbt_s[done])])):
            raise AssertionError("per-request max TBT differs from the explicit token gaps")

    def token_times(self, req: SimRequest) -> np.ndarray:
        """Every token's emission time, in order (the invariant checks; a benchmark client's TBT histograms)."""
        parts = []
        for seg in req.segments:
            inst = seg[0]
            if inst is None:
                parts.append(np.array([seg[1]]))
                continue
            _, start, steps, offset, tokens = seg
            times = inst.decode_end.slice(start, start + steps)
            if inst.spec:
                k = np.arange(offset, offset + steps + 1)
                times = np.repeat(times, np.diff(np.floor(inst.tokens_per_step * k)).astype(np.int64))[:tokens]
            parts.append(times)
        return np.concatenate(parts)

    def _check_request(self, req: SimRequest, times: np.ndarray) -> None:
        """Invariants (enabled in tests): exact token count, order, causality, TTFT <= end-to-end."""
        if len(times) > 1:
            tpot = (times[-1] - times[0]) / (len(times) - 1)
            if abs(tpot - self.tpot_s[req.id]) > 1e-9 * max(tpot, 1.0):
                raise AssertionError(f"request {req.id}: TPOT {self.tpot_s[req.id]} != token times' {tpot}")
        if len(times) != req.output:
            raise AssertionError(f"request {req.id}: {len(times)} tokens emitted, {req.output} expected")
        if (np.diff(times) < 0).any():
            raise AssertionError(f"request {req.id}: tokens out of order")
        if not (req.arrival_s <= req.scheduled_s <= req.first_token_s <= req.finish_s):
            raise AssertionError(f"request {req.id}: arrival/schedule/first token/finish out of order")
        if times[0] != req.first_token_s or times[-1] != req.finish_s:
            raise AssertionError(f"request {req.id}: first/last token time mismatch")
        if not math.isnan(req.kv_ready_s) and req.preemptions == 0:
            decode_times = times[1:]
            if len(decode_times) and decode_times.min() < req.kv_ready_s:
                raise AssertionError(f"request {req.id}: decoded before its KV arrived")
