"""One serving instance (a TP group, or one virtual engine of a pipeline-parallel replica): its
queues, KV blocks, and the iterations it runs. What runs next is the scheduling policy's choice
(sim/schedulers/); the instance keeps the mechanics.

Iterations come in three kinds:
  prefill  prompts only (the decodes wait: vLLM V0, SGLang);
  mixed    the decoding set plus prefill chunks within a token budget (vLLM V1, TensorRT-LLM, Sarathi);
  decode   a *run* of pure-decode iterations. Between events these differ only in their context
           length, so a run of n of them is costed in one vectorized call (CostModel.decode_series)
           and committed at once. A run ends early, at an iteration boundary, when work arrives.

Pipeline parallelism: a PP replica is `pp` virtual engines (as vLLM's and TensorRT-LLM's micro-batches) sharing
its one KV pool and sequence cap (`siblings`: vLLM V1 schedules every micro-batch from one scheduler and KV cache
manager, TensorRT-LLM and SGLang alike) and one PipelineGate: a micro-batch enters the first stage when the previous
one has left it, and its tokens come out a full pipeline latency later.

Its KV admission and preemption are sim/kv_admission.py's, its decoding set's bookkeeping (joins, leaves, the
sums a decode step is costed by, finishes, run lengths) sim/decoding_set.py's, its iterations' accounting (busy time,
work, energy, KV held) sim/iteration_accounting.py's, its decode runs (launched, cut, committed, the requests due
finished) sim/decode_runs.py's, the requests reaching it from outside (routed through the frontend or refused on
arrival, their KV arrived, cancelled) sim/request_entry.py's, its load as routers and autoscalers read it
sim/load_views.py's: bases of Instance, on its state. Which images an iteration encodes is sim/image_encoding.py's.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from phasewise.perf import BatchShape, CostModel
from phasewise.perf.mapped_cost import MappedCostModel
from phasewise.perf.memory import kv_state_pages
from phasewise.perf.window_kv import kv_stored_terms, kv_window_terms
from phasewise.sim.decode_runs import DecodeRuns
from phasewise.sim.decoding_set import DecodingSet
from phasewise.sim.draft_cost import draft_time_s
from phasewise.sim.image_encoding import encode_images
from phasewise.sim.iteration_accounting import IterationAccounting
from phasewise.sim.kv import KVBlocks
from phasewise.sim.kv_admission import KvAdmission
from phasewise.sim.load_views import LoadViews
from phasewise.sim.mapped_energy import MappedEnergy
from phasewise.sim.metrics import InstanceStats
from phasewise.sim.pipeline import PipelineGate
from phasewise.sim.prompt_queue import PromptQueue
from phasewise.sim.recv_interval import RecvInterval
from phasewise.sim.request import SimRequest
from phasewise.sim.request_entry import RequestEntry
from phasewise.sim.running import RunningSet
from phasewise.sim.schedulers import Batch, make_scheduler
from phasewise.sim.series import Series
from phasewise.specs.chip_cost import work_energy
from phasewise.specs.engine_kv import kv_block, window_kv, window_pool_speculation

if TYPE_CHECKING:
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.instance_group import InstanceGroup
    from phasewise.specs.engines import EngineConfig


class Instance(RequestEntry, LoadViews, DecodeRuns, KvAdmission, DecodingSet, IterationAccounting):
    # (slots: more attributes than CPython keeps fast in an instance dict, and the hot path reads them all the time)
    __slots__ = ("name", "index", "group", "role", "cost", "cluster", "loop", "model", "engine", "scheduler",
                 "pipeline", "siblings", "idle_mark", "seq_cap", "kernel_block", "kv", "spec", "tokens_per_step",
                 "decode_new_tokens", "draft", "window", "keys_cap", "capped_keys", "capped_seqs",
                 "kv_terms", "kv_state", "kv_stored", "waiting",
                 "prefilling", "ready", "pending_transfers", "incoming", "sending", "running", "finish_heap",
                 "decode_end",
                 "tbt_ranges", "decode_steps", "context_base_sum", "decoding_blocks", "planned_steps",
                 "reserved_ahead_blocks", "busy", "version", "decode_run", "outstanding", "frontend_free_s",
                 "frontend_prompt_tokens", "stats",
                 "host_link_free_s",
                 "idle_w", "tdp_w", "_work_scale", "_inv_peak", "_inv_bw", "_idle_power", "_dynamic_power",
                 "_work_joules", "controller", "offload", "mapped_energy", "trainer", "recv")

    def __init__(self, name: str, index: int, group: InstanceGroup, cost: CostModel, kv_capacity_tokens: int,
                 cluster: Cluster, draft: CostModel | None, engine: EngineConfig,
                 pipeline: PipelineGate | None = None, shared_kv: KVBlocks | None = None) -> None:
        """`shared_kv`: the KV pool of the PP replica this virtual engine is one of (its first virtual engine's; None:
        this one's own, of `kv_capacity_tokens`); build_cluster sets `siblings`, the replica's other virtual engines."""
        self.name, self.group, self.role, self.cost, self.cluster = name, group, group.role, cost, cluster
        self.index = index  # position in the cluster's instance list
        self.loop = cluster.loop
        self.model = cost.model
        self.engine = engine
        self.scheduler = make_scheduler(engine)
        self.pipeline = pipeline  # shared by the virtual engines of one PP replica (None: no PP)
        engines = pipeline.virtual_engines if pipeline else 1
        self.siblings: tuple[Instance, ...] = ()  # the other virtual engines of its PP replica
        self.idle_mark = None  # PP: the replica's KV and seats when it went idle with work waiting (_wake_siblings)
        self.seq_cap = engine.max_seqs  # sequences its replica may hold (max_seqs: what this engine may take now)
        # the block the engine runs on (block_size, else its default; a latent-attention model's MLA kernel may force
        # one); then KV tokens' worth of the pool a running sequence's recurrent state takes, and the block it comes
        # in (vLLM V1 keeps them there, in blocks raised to one state's page)
        self.kernel_block, _ = kv_block(engine, self.model, cost.hw, group.block_size)
        block, self.kv_state = kv_state_pages(engine, self.model, cost.quant, cost.layout.attention_tp, cost.pp,
                                              self.kernel_block)
        self.kv = shared_kv if shared_kv is not None else KVBlocks(kv_capacity_tokens // block, block)
        spec = cluster.deployment.speculative
        self.spec = spec
        self.tokens_per_step = spec.tokens_per_step if spec else 1.0  # tokens accepted per decode step
        self.decode_new_tokens = spec.draft_tokens + 1 if spec else 1  # tokens each decode step feeds the model
        self.draft = draft
        self.window = self.model.window_all_layers  # a hybrid stack windows some layers: the cost model does that
        self.keys_cap = self._keys_cap()  # a hybrid stack's sliding window (DecodingSet._keys_cap), else 0
        # the keys cap of a hybrid stack's sliding window while a decoding context may be under it
        # (DecodingSet._capped_keys_series): 0 for other stacks, and once every context reaches it (until one joins)
        self.capped_keys = 0
        # the decoding requests whose keys (less a step's new tokens but one) may be under keys_cap: the few whose
        # sums _capped_keys_first adds (joined under it, dropped as they reach it or leave)
        self.capped_seqs: set[SimRequest] = set()
        layout, pool_ratio = window_kv(engine, self.model, cost.hw)  # how the engine holds windowed layers' KV
        # a sequence's share of the KV blocks (its attention rank's GPUs), and the bytes its KV holds, whole (what a
        # transfer moves: sim/cluster.py counts the model's KV per token at TP 1)
        self.kv_terms = kv_window_terms(self.model, layout, pool_ratio, attention_tp=cost.layout.attention_tp,
                                        quant=cost.quant, speculation=window_pool_speculation(engine, self.model,
                                                                                              spec is not None))
        self.kv_stored = kv_stored_terms(self.model, layout, attention_tp=1, quant=cost.quant)
        self.waiting = PromptQueue()  # not yet prefilling (new, or preempted); .tokens: their prompt tokens
        self.prefilling: list[SimRequest] = []  # admitted, chunked prefill in progress
        self.ready: deque[SimRequest] = deque()  # decode role: KV arrived, joins at the next boundary
        self.pending_transfers: deque = deque()  # decode role: (request, source) waiting for a seat and blocks
        self.incoming = 0  # decode role: transfers on their way here
        self.sending = 0  # prefill role: handed-off requests whose KV it still holds until their transfer ends
        self.running = RunningSet()
        self.finish_heap: list[tuple[int, int, SimRequest, int]] = []
        self.decode_end = Series()  # end time of every decode-participating iteration
        self.tbt_ranges: list[int] = []  # flat (lo, hi, request id): a request decoded across gaps lo..hi-1
        self.decode_steps = 0  # decode iterations done
        # sum over the decoding set of (join_context - tokens_per_step * join_step), so that the sum of
        # their contexts at decode step d is context_base_sum + seqs * tokens_per_step * d
        self.context_base_sum = 0.0
        self.decoding_blocks = 0  # blocks allocated to the decoding set (its growth is allocated as each leaves)
        self.planned_steps = 0  # decode step the iterations in flight will reach (>= decode_steps)
        self.reserved_ahead_blocks = 0  # sum of the decoding set's blocks reserved beyond their first step's need
        self.busy = False
        self.version = 0
        self.decode_run: tuple | None = None  # (start_s, end_times, version, first IterationCost) of a decode run
        self.outstanding = 0  # tokens of assigned, unfinished requests (for the router)
        self.frontend_free_s = 0.0  # when the engine's frontend takes the next request
        self.frontend_prompt_tokens = 0  # prompt tokens of the requests routed here still in the frontend
        self.host_link_free_s = 0.0  # when the PCIe link takes the next asynchronous copy from host memory
        self.controller = None  # priority pools: the controller consulted at each boundary (sim/priority_pools.py)
        self.offload = None  # attention offload (sim/attention_offload.py), when the deployment has it
        self.trainer = None  # a colocated trainer (sim/online_training.py), when the deployment has one
        # SGLang --scheduler-recv-interval > 1: arrivals wait for the scheduler's next read (sim/recv_interval.py)
        self.recv = RecvInterval(engine.recv_interval) if engine.recv_interval > 1 else None
        # an operator mapping: the energy of its iterations on the chip's substrates (sim/mapped_energy.py)
        self.mapped_energy = MappedEnergy(cost) if isinstance(cost, MappedCostModel) else None
        gpus = group.tp * group.pp // engines  # a virtual engine's share of its replica's GPUs (= tp)
        hw = cost.hw
        self.stats = InstanceStats(name, self.role, gpus, kv_capacity_blocks=self.kv.capacity,
                                   peak_flops=cost.peak * gpus, bandwidth=hw.memory_bandwidth_bytes_per_s * gpus)
        self.idle_w = hw.idle_power_w
        self.tdp_w = hw.tdp_w
        self._work_scale = cost.tp * cost.pp  # FLOPs/bytes of one GPU -> the whole group
        self._inv_peak, self._inv_bw = 1.0 / self.stats.peak_flops, 1.0 / self.stats.bandwidth
        self._idle_power = gpus * self.idle_w
        self._dynamic_power = gpus * (self.tdp_w - self.idle_w)
        # a chip built from parts: energy by the work its parts do (J per FLOP, J per byte), else None
        energy = work_energy(hw, cost.quant.compute_dtype)  # a FLOP at that dtype's rate
        self._work_joules = None if energy is None or self.idle_w != energy[0] else energy[1:]

    @property
    def max_seqs(self) -> int:
        """Sequences this engine may hold now: its engine's max_seqs, less what the other virtual engines of its PP
        replica hold (one cap over the micro-batches, as vLLM V1's max_num_seqs caps its one scheduler's requests)."""
        cap = self.seq_cap
        for other in self.siblings:
            cap -= other.running.n + len(other.prefilling) + len(other.ready) + other.incoming
        return cap

    def _replica_mark(self) -> tuple[int, int, int]:
        """PP: what frees room for a virtual engine's waiting work: the pool's blocks in use and freed, the seats
        held."""
        held = sum(i.running.n + len(i.prefilling) + len(i.ready) + i.incoming for i in (self, *self.siblings))
        return self.kv.used, self.kv.freed_total, held

    def wait_on_siblings(self) -> None:
        """PP: idle with work that waits on its replica's others' seats or blocks: a sibling that frees some wakes it
        (_wake_siblings compares this mark with the replica's state then)."""
        self.idle_mark = self._replica_mark()

    def _wake_siblings(self) -> None:
        """PP: an idle virtual engine whose work waited for blocks or seats steps again once the replica's others
        have freed some (their iteration boundaries free them), not before (two idle engines would wake each other)."""
        mark = None
        for other in self.siblings:
            if other.busy or other.idle_mark is None:
                continue
            mark = mark or self._replica_mark()
            if mark != other.idle_mark:
                other.idle_mark = None
                other.poke()

    def poke(self) -> None:
        """New work: start now if idle, or end a decode run at its next iteration boundary. An idle engine starts on
        the first request that reaches its scheduler: requests sent separately reach it one after another (its API
        server takes, tokenizes and hands them over one at a time), and the engine, woken by the first, schedules
        what it holds then (vLLM V1's EngineCoreProc busy loop blocks on its input queue, drains what is there, and
        steps), so those arriving at the same simulated instant after the first join its next step: the limit of a
        frontend time per request going to zero (frontend_request_s, 0 in the presets, staggers them explicitly)."""
        if not self.busy:
            self.busy = True
            self.loop.at(self.loop.now, self._step)
        elif self.decode_run is not None:
            self._cut_run(self._iteration_in_flight())

    # --- scheduling ----------------------------------------------------------------------------
    def _step(self) -> None:
        """Choose and launch the next iteration (or go idle)."""
        if self.siblings:
            self._wake_siblings()
        if self.trainer is not None and self.trainer.take_turn(self):  # time-sliced training step
            return
        if self.controller is not None:  # priority pools: offload requests predicted to miss their SLOs
            self.controller.on_step(self)
        if self.recv is not None and self.recv.inbox and self.recv.read_due(self.decode_steps):
            self.waiting.extend(self.recv.read(self.decode_steps))
        if self.pending_transfers:
            self.cluster.try_transfers(self)
        if self.ready:
            self._join_ready()
        if self.offload is not None and self.role == "decode":
            self.offload.join(self)
        if self.role != "decode" and (self.waiting or self.prefilling):
            batch = self.scheduler.next_batch(self)
            if batch is not None:
                return self._launch(batch)
        if self.running.n or (self.offload is not None and self.role == "decode" and self.offload.decoding(self)):
            if self.pipeline is not None:  # one micro-batch at a time through the shared pipeline
                self.make_room()
                if self.running.n:
                    return self._launch(Batch())
                return self._step()
            return self._launch_run()
        if self.waiting and not self.prefilling and self.kv.used == 0:
            self._reject(self.waiting.popleft(), "beyond_kv_capacity")  # larger than the whole KV cache
            return self._step()
        if self.recv is not None and self.recv.inbox:  # an idle scheduler reads at once
            self.waiting.extend(self.recv.read(self.decode_steps))
            return self._step()
        self.scheduler.on_idle(self)
        self.busy = False
        if self.siblings and (self.waiting or self.ready or self.pending_transfers):  # waits on the others' room
            self.wait_on_siblings()

    # --- launching and committing iterations -------------------------------------------------
    def _launch(self, batch: Batch) -> None:
        now = self.loop.now
        chunks, with_decodes = batch.chunks, batch.with_decodes
        if with_decodes and self.running.n:
            self.make_room()
        shape = self._decode_shape() if with_decodes and self.running.n else BatchShape()
        decodes, decode_tokens = shape.decode_seqs, shape.decode_tokens
        decode_sums = shape.decode_pairs, shape.decode_kv_tokens  # the decodes' own, before any short chunk joins
        causal, window = self.model.causal, self.window
        prefill_tokens = 0
        for req, take in chunks:  # a short chunk over cached tokens joins the decode kernel's class (perf/batch.py),
            shape.add(take, req.prefilled, causal, window,  # but its tokens are counted as the prompt's
                      logits=1 if req.prefilled + take >= req.prefill_target else 0)
            prefill_tokens += take
        it = self.cost.fast(shape)
        encoded = encode_images(self.cost, self.stats, chunks)
        if encoded is not None:  # the vision encoder runs first, on the first pipeline stage
            it = (it[0] + encoded.time_s, it[1] + encoded.time_s, it[2] + encoded.flops, it[3] + encoded.bytes)
        t = it[0]
        if self.mapped_energy is not None:
            self.mapped_energy.add_iteration(shape)
        if self.offload is not None:  # attention offload: a prefill sharing its SMs runs slower
            t = self.offload.prefill_time(self, t)
        if self.trainer is not None:  # online training: recording the prompts' activations, a trainer beside
            t = self.trainer.prefill_time(self, chunks, t)
        if self.draft is not None and (decodes or chunks):  # the draft over the decodes and the prompt tokens
            t += self._draft_time(decodes, *decode_sums, chunks)
        load_s = 0.0
        for req, _ in chunks:  # prefix blocks copied back from host memory (an engine that loads asynchronously
            load_s += req.kv_load_s  # has none left here: sim/kv_admission.py)
            req.kv_load_s = 0.0
        if self.engine.host_kv_load == "serial":  # the forward waits for the copies
            t += load_s
        elif load_s > t:  # layer by layer beside the forward
            t = load_s
        prefix = self.kv.prefix
        host = prefix.host if prefix is not None and not prefix.ranked else None
        if host is not None and host.pending_write_s:  # and for the writes of the blocks offloaded since the last
            t += host.pending_write_s  # one, where they block (TensorRT-LLM's syncTransfers, SGLang's write_back)
            host.pending_write_s = 0.0
        elif prefix is not None and prefix.ranked:  # attention DP: each rank's own writes, the ranks in step
            t += prefix.write_wait_s()
        start = self.pipeline.enter(now, self._stage_device_s(shape, it[1])) if self.pipeline is not None else now
        self._account(it, t, shape.seqs, prefill_tokens, decode_tokens, 1, start)
        self.loop.at(start + t, self._end_iteration, chunks, decodes > 0)

    def _stage_device_s(self, shape: BatchShape, stage_s: float) -> float:
        """How long a micro-batch holds a pipeline stage: its slowest stage without the host work, which
        overlaps the other micro-batches' device time (unless the cost already overlaps it)."""
        return stage_s if self.cost.engine.overlap_scheduling else stage_s - self.cost.host_s(shape)

    def _end_iteration(self, chunks: list[tuple[SimRequest, int]], decoded: bool) -> None:
        now = self.loop.now
        if decoded:
            self.decode_end.append(now)
            self._decode_steps_done(1)
        if self.recv is not None and chunks:  # a forward with prompt tokens: the scheduler reads right after it
            self.waiting.extend(self.recv.read(self.decode_steps, after_prompt=True))
        for req, take in chunks:
            if req.cancelled:
                continue
            req.prefilled += take
            if req.prefilled < req.prefill_target:
                continue
            if req in self.prefilling:
                self.prefilling.remove(req)
            self._prefill_done(req, now)
        if chunks:
            self.cluster.prefill_progressed()
        self._step()

    def _prefill_done(self, req: SimRequest, now: float) -> None:
        """The iteration that completes a prompt samples the next token. A prefill instance's first token
        reaches the client from the decode instance (Cluster.first_token_pending), as the engines' disaggregated
        serving streams it, even when it is the request's only token: vLLM's P/D proxy streams the decode server's
        response whatever the client's max_tokens, SGLang's decode server returns a request its prefill's token
        completes as it takes it (process_batch_result_prebuilt), TensorRT-LLM's disaggregated server sends a context
        response that stopped at its length to the generation server (_need_gen)."""
        req.generated += 1
        to_decode_side = self.role == "prefill" and math.isnan(req.first_token_s)
        if not to_decode_side:  # the token is emitted here
            if math.isnan(req.first_token_s):
                req.first_token_s = now
            req.segments.append((None, now))
            if self.cluster.live:
                req.streamed = req.generated
                self.cluster.on_token(req, 1, now, self)
        if req.generated >= req.output and not to_decode_side:
            self._finish(req, now)
        elif self.role == "prefill":
            self.outstanding -= req.prompt + req.output
            self.cluster.transfer(req, self)
        else:
            self._join(req)

    def _join(self, req: SimRequest) -> None:
        """DecodingSet._join; a request with no token left to decode (disaggregated, its prefill's token its only
        one, returned as it takes its seat here: Cluster.first_token_pending) finishes now, its blocks freed."""
        if req.generated >= req.output:
            self._finish(req, self.loop.now)
            if self.siblings:  # its seat and blocks, freed outside an iteration's end: an idle sibling may now step
                self._wake_siblings()
            return
        DecodingSet._join(self, req)

    def _leave(self, req: SimRequest, d: int) -> int:
        """DecodingSet._leave; with attention DP the blocks its last step grew into are its rank's."""
        prefix = self.kv.prefix
        if prefix is None or not prefix.ranked:
            return DecodingSet._leave(self, req, d)
        prefix.charge(req)
        try:
            return DecodingSet._leave(self, req, d)
        finally:
            prefix.charging = -1

    def _finish(self, req: SimRequest, t: float) -> None:
        if req.kv_blocks:
            self.kv.free_blocks(req.kv_blocks, req)
            req.kv_blocks = 0
        req.finish_s = t
        req.last_instance = self.index
        self.outstanding -= req.prompt + req.output
        self.cluster.finish(req)

    def _draft_time(self, S: int, pairs: float, kv_tokens: float,
                    chunks: list[tuple[SimRequest, int]] = ()) -> float:
        """The draft's k forwards beside an iteration with S decoding sequences (their verify step's `pairs` and
        `kv_tokens`) and the prompt `chunks` (request, tokens): sim/draft_cost.py."""
        return draft_time_s(self.draft, self.spec.draft_tokens, S, pairs, kv_tokens,
                            ((take, req.prefilled, req.prefilled + take >= req.prefill_target) for req, take in chunks),
                            self.model.causal)
