"""`simulate()`: a workload through a deployment, request by request, in simulated time."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel, memory_fit
from phasewise.perf.deepep_buffers import exchange_buffer_bytes
from phasewise.perf.expert_load import with_routing_skew
from phasewise.perf.kv_geometry import kv_bytes_per_token_layer
from phasewise.perf.mapped_cost import MappedCostModel
from phasewise.perf.memory import (
    compressed_kv_pool,
    draft_memory,
    mtp_module,
    profile_batch,
    recurrent_state_bytes_per_sequence,
)
from phasewise.perf.parallel import check_parallelism, parallel_layout
from phasewise.perf.window_kv import slot_state_bytes
from phasewise.sim.attention_offload import AttentionOffloadController
from phasewise.sim.autoscaler import Autoscaler, check_span
from phasewise.sim.bench_clients import BenchmarkClients
from phasewise.sim.cluster import Cluster
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.encode_pool import EncodePool
from phasewise.sim.events import EventLoop
from phasewise.sim.fabric import Port
from phasewise.sim.instance import Instance
from phasewise.sim.link import link_rate
from phasewise.sim.mapped_energy import mapping_summary
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.online_training import OnlineTrainer
from phasewise.sim.pipeline import PipelineGate
from phasewise.sim.planner_budget import PlannerPair
from phasewise.sim.priority_pools import PoolController, check_classes, headline_slo
from phasewise.sim.request import SimRequest
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.engine_kv import (
    engine_kv,
    kv_block,
    prefix_caching_default,
    prefix_caching_refusal,
    recurrent_state_in_kv_pool,
    window_kv,
    window_pool_speculation,
)
from phasewise.specs.engine_refusals import disagg_kv_dtype_refusal
from phasewise.specs.engines import EngineConfig, resolve_engine
from phasewise.specs.mappings import load_mapping
from phasewise.specs.reading import spec_file_stamps
from phasewise.workload import ClosedLoop, ImageInputs, Workload
from phasewise.workload.mooncake import MOONCAKE_BLOCK_TOKENS


def build_group(dep: Deployment, g: InstanceGroup, index: int
                ) -> tuple[CostModel, int, CostModel | None, EngineConfig]:
    """Cost model, KV capacity (tokens), draft cost model and resolved engine of one instance group; cached per
    process, keyed on the stamps of the files the group names (model, chip, engine, mapping, draft), so that a file
    edited between two runs is read afresh."""
    draft = dep.speculative.draft if dep.speculative is not None else None
    stamps = spec_file_stamps(dep.model, g.model, g.hardware, g.engine, g.mapping, draft)
    return _build_group(dep.model, g, dep.speculative, index, stamps)


# a diffusion LM (specs/model.py causal False) asked for without a dLLM decoding: the simulation refuses it (its
# autoregressive figures would be a model's it is not); apps/dllm_view.py dllm_requested says this to the CLI first
DIFFUSION_NEEDS_DLLM = ("{model} is a diffusion LM (bidirectional, decoded block by block): it needs --dllm "
                        "baseline|fast-dllm|alp|odb")


def spec_budget_refusal(engine: EngineConfig, draft_tokens: int) -> str | None:
    """Why `engine` cannot run speculative decoding of `draft_tokens` drafts (a clause), or None: a vLLM-style
    token budget below a full decode step of every sequence (max sequences x (k + 1) tokens) would leave no room
    for prefills. The simulation refuses such a group; plan prunes such a strategy (plan/strategy_enumeration.py)."""
    if engine.scheduler in ("vllm", "sarathi") and engine.token_budget < engine.max_seqs * (draft_tokens + 1):
        return (f"the token budget ({engine.token_budget}) is below max sequences ({engine.max_seqs}) x "
                f"{draft_tokens + 1} tokens per speculative decode step: prefills would starve")
    return None


@lru_cache(maxsize=128)
def _build_group(dep_model: str, g: InstanceGroup, spec, index: int, stamps: tuple = ()
                 ) -> tuple[CostModel, int, CostModel | None, EngineConfig]:
    """Cached per process: planners simulate the same groups many times (and keep their cost caches). `stamps`:
    the group's files' (build_group), a key only."""
    model = load_model(g.model or dep_model)
    if not model.causal:  # a diffusion LM decodes block by block over a bidirectional canvas: sim/dllm.py's
        raise PhasewiseError(DIFFUSION_NEEDS_DLLM.format(model=model.name) + "; simulate() and run() model "
                             "autoregressive decoding (in Python: phasewise.sim.dllm.simulate_dllm)")
    precision = g.precision or model.default_precision
    where = f"deployment instances[{index}] ({g.role} {g.hardware} tp={g.tp} pp={g.pp} {precision})"
    try:
        model = with_routing_skew(model, g.routing_skew, "routing_skew")
    except PhasewiseError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None
    hw = load_hardware(g.hardware)
    quant = load_quant(precision, g.kv_dtype)
    try:
        layout = parallel_layout(model, g.tp, g.ep, g.moe_tp, g.attention_dp, g.moe_imbalance)
        check_parallelism(model, layout.attention_tp, g.pp)  # before the memory fit divides the stack
        draft = spec.draft if spec is not None else None

        def resolve(kv_capacity_tokens: int | None = None) -> EngineConfig:
            return resolve_engine(g.engine, hw, g.knobs, g.entry_point, g.pp, kv_capacity_tokens, role=g.role,
                                  speculative_draft=draft, attention_dp=layout.attention_dp, tp=g.tp,
                                  vision=model.vision, model_type=model.model_type,
                                  max_model_len=model.max_position_embeddings or None)

        engine = resolve()
        # the engine's "auto" KV dtype where it is not the precision's (SGLang's DSA models), and its sparse layout
        quant = engine_kv(quant, engine, model, hw, asked_kv_dtype=g.kv_dtype is not None)
        if g.knobs.get("mamba_ssm_dtype") and not model.linear_attention_layers:
            raise PhasewiseError(f"--mamba-ssm-dtype sets the dtype of linear-attention layers' recurrent states; "
                                 f"{model.name} has none, so it would change nothing")
        draft_model = None if spec is None or spec.draft == "mtp" else load_model(spec.draft)
        if draft_model is not None and draft_model.vocab_size != model.vocab_size:
            raise PhasewiseError(f"speculative draft {draft_model.name} has a {draft_model.vocab_size:,}-token "
                                 f"vocabulary and {model.name} {model.vocab_size:,}: the engines verify the draft's "
                                 "token ids against the target's, so they must share one (a draft of its family)")
        draft_mem = (0.0, 0.0) if spec is None else draft_memory(model, draft_model, quant, g.tp, layout)
        max_tokens, max_seqs = profile_batch(engine)  # the pool as the engine sizes it (estimate's, the planner's)
        mem = memory_fit(model, hw, quant, g.tp, g.pp, max_tokens=max_tokens,
                         max_seqs=max_seqs, memory_fraction=engine.fraction(g.memory_fraction),
                         layout=layout, fraction_of=engine.memory_fraction_of,
                         state_dtype=engine.profile.recurrent_state_dtype,
                         state_pool_ratio=engine.profile.recurrent_state_pool_ratio, draft=draft_mem,
                         state_in_kv_pool=recurrent_state_in_kv_pool(engine, model),
                         slot_bytes=slot_state_bytes(model, window_kv(engine, model, hw)[0],
                                                     math.ceil(engine.max_seqs / layout.attention_dp),
                                                     window_pool_speculation(engine, model, spec is not None)),
                         kv_pool=compressed_kv_pool(engine, model, quant, g.pp, g.block_size),
                         buffer_bytes=exchange_buffer_bytes(engine.profile, model, layout),
                         engine=engine.profile)
        if engine.scheduler == "sglang" and g.max_running_requests is None:  # its default follows the KV size
            engine = resolve(mem.kv_capacity_tokens)
        if mem.state_seats and engine.max_seqs > mem.state_seats:  # the state pool's slots cap them
            engine = replace(engine, max_seqs=mem.state_seats)
        engine = replace(engine, prefix_caching=prefix_caching_default(engine, model))
        refusal = prefix_caching_refusal(engine, model)
        if g.prefix_caching and refusal:
            raise PhasewiseError(f"--prefix-caching on (prefix_caching: true): {refusal}; use --prefix-caching off or "
                                 f"another engine")
        caching = g.prefix_caching if g.prefix_caching is not None else engine.prefix_caching
        if model.linear_attention_layers and not caching and not engine.profile.recurrent_state_overlap:
            # the overlap scheduler is turned off only with the prefix cache on (SGLang: no_buffer MambaRadixCache)
            engine = replace(engine, profile=engine.profile.model_copy(update={"recurrent_state_overlap": True}))
        starves = spec_budget_refusal(engine, spec.draft_tokens) if spec is not None else None
        if starves:
            raise PhasewiseError(f"{starves}; raise --max-num-batched-tokens / --chunk-size or lower --max-num-seqs")
        if g.mapping is None:
            cost = CostModel(model, hw, quant, engine.profile, g.tp, g.pp, layout)
        else:  # every iteration on the chip's substrates
            cost = MappedCostModel(model, hw, quant, engine.profile, load_mapping(g.mapping), g.tp, g.pp)
    except PhasewiseError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None
    if mem.kv_capacity_tokens < kv_block(engine, model, hw, g.block_size)[0] * g.pp or not mem.fits:
        default = (f" (at {engine.label}'s default memory fraction {engine.memory_fraction:g}; --memory-fraction / "
                   f"memory_fraction sets another)" if g.memory_fraction is None else "")
        raise PhasewiseError(f"{where}: does not fit in memory: {mem.reason()}{default}")
    draft = None
    if spec is not None:
        if spec.draft == "mtp":  # one extra decoder layer + LM head per draft token
            draft = CostModel(mtp_module(model), hw, quant, load_engine("ideal"), g.tp, 1, layout)
        else:
            draft = CostModel(load_model(spec.draft), hw, quant, load_engine("ideal"), g.tp, 1)
    return cost, mem.kv_capacity_tokens, draft, engine


def kv_wire_bytes_per_token(instances: list[Instance]) -> float:
    """Bytes one token's KV puts on the wire per layer in a KV hand-off (disaggregation, a pool's migration), summed
    over the receiving instance's GPUs: each GPU of a decode instance receives the KV it will hold
    (kv_bytes_per_token_layer at its attention TP), whole where the KV is replicated, which multi-head latent
    attention's latent always is (vLLM's TpKVTopology: "MLA is always replicated") and GQA's KV is where the TP passes
    the KV heads, a shard of it otherwise; the ports (link_for / receiver_for) spread those bytes over their GPUs'
    lanes, so a transfer takes a GPU's share over one lane. In the sender's KV dtype (a prefill instance's); the
    first decode group's TP (the first group's where there is none). Under attention DP a sequence's KV lands on one
    rank, whose GPUs' lanes alone carry it: its time is right, while concurrent transfers to other ranks share the
    port (an underestimate of the instance's receive capacity by the DP degree)."""
    sender = next((i for i in instances if i.role == "prefill"), instances[0])
    receiver = next((i for i in instances if i.role == "decode"), instances[0])
    group = receiver.group
    attention_tp = group.tp // (group.attention_dp or 1)
    return group.tp * kv_bytes_per_token_layer(receiver.model, sender.cost.quant, attention_tp)


def refuse_kv_dtype_pairs(instances: list[Instance]) -> None:
    """A prefill group beside a decode group whose engine's P/D connector refuses their KV dtypes (specs/engine_refusals.py
    disagg_kv_dtype_refusal): one line, before anything runs."""
    pairs = {(p.cost.quant.kv_dtype, d.group.engine, d.cost.quant.kv_dtype)
             for p in instances if p.role == "prefill" for d in instances if d.role == "decode"}
    for prefill_dtype, engine, decode_dtype in sorted(pairs):
        refusal = disagg_kv_dtype_refusal(engine, prefill_dtype, decode_dtype)
        if refusal:
            raise PhasewiseError(refusal)


def build_cluster(deployment: Deployment, loop: EventLoop, n_requests: int, check: bool = False,
                  live: bool = False, slo: Slo | None = None,
                  prefix_block_tokens: int | None = MOONCAKE_BLOCK_TOKENS,
                  seed: int = 0) -> tuple[Cluster, list[Instance], float]:
    """The deployment's instances, router and links on `loop`; also the deployment's price per hour.
    `live` (the digital twin) notifies every token as it is produced and keeps no per-request arrays.
    `slo`: the run's SLOs (priority pools take their deadlines from them unless their block sets its own).
    `prefix_block_tokens`: the tokens of one prefix block, the prefix caches' key (a Mooncake trace's 512); None: the
    instances' own KV block (their least common multiple), as the twin hashes prompts, so a cache hits to the block
    as the engines' do. `seed`: the routers' draws (random choice, a KV router's temperature)."""
    cluster = Cluster(deployment, loop, n_requests, check)
    cluster.live = live
    instances: list[Instance] = []
    price = 0.0
    replica_of: dict[str, str] = {}  # instance name -> its replica (virtual engines share a replica's link)
    group_instances: list[list[Instance]] = []
    for gi, g in enumerate(deployment.instances):
        cost, kv_tokens, draft, engine = build_group(deployment, g, gi)
        price += cost.hw.gpu_hour_usd * g.gpus
        short = {"collocated": "col", "prefill": "pre", "decode": "dec"}[g.role]
        first = len(instances)
        for r in range(g.replicas):
            replica = f"{short}{gi}.{r}"
            gate = PipelineGate(g.pp) if g.pp > 1 else None
            engines: list[Instance] = []
            for ve in range(g.pp if gate else 1):  # a PP replica runs pp virtual engines (micro-batches)
                name = f"{replica}.ve{ve}" if gate else replica
                replica_of[name] = replica
                engines.append(Instance(name, len(instances), g, cost, kv_tokens, cluster, draft, engine, gate,
                                        shared_kv=engines[0].kv if engines else None))  # one KV pool per replica
                instances.append(engines[-1])
            for inst in engines if gate else ():
                inst.siblings = tuple(other for other in engines if other is not inst)
        group_instances.append(instances[first:])
    refuse_kv_dtype_pairs(instances)
    m, first_cost = instances[0].model, instances[0].cost
    windowed = m.sliding_window_layers if m.window_layer_share else 0  # a hybrid's: counted by kv_terms
    cluster.kv_bytes_per_token = kv_wire_bytes_per_token(instances) * (m.full_attention_layers - windowed)
    cluster.state_bytes_per_sequence = recurrent_state_bytes_per_sequence(
        m, first_cost.quant, 1, 1, first_cost.engine.recurrent_state_dtype)

    senders: dict[str, Port] = {}
    receivers: dict[str, Port] = {}

    def link_for(src: Instance) -> Port:
        """A prefill replica's sending port: its TP ranks each send their shard over a lane."""
        replica = replica_of[src.name]
        if replica not in senders:
            bw, lat = link_rate(src.cost.hw.interconnect, deployment.kv_link)
            for chip in {i.cost.hw.key: i.cost.hw for i in instances if i.role == "decode"}.values():
                if chip.key != src.cost.hw.key:  # prefill and decode on different chips: the slower end's latency
                    lat = max(lat, link_rate(chip.interconnect, deployment.kv_link)[1])
            # the prefill engine's hand-off (request-plane hop, transfer setup, decode-side polling) is a delay that
            # uses no bandwidth, as the link latency is
            senders[replica] = Port(replica, bw * src.group.tp * src.cost.eff.link_efficiency,
                                    lat + src.cost.engine.kv_handoff_s)
        return senders[replica]

    def receiver_for(dst: Instance) -> Port:
        """A decode replica's receiving port: its TP ranks each take their shard over a lane, shared by every
        prefill replica sending to it."""
        replica = replica_of[dst.name]
        if replica not in receivers:
            bw = link_rate(dst.cost.hw.interconnect, deployment.kv_link)[0]
            receivers[replica] = Port(replica, bw * dst.group.tp * dst.cost.eff.link_efficiency)
        return receivers[replica]

    if prefix_block_tokens is None:
        prefix_block_tokens = math.lcm(*{i.kernel_block for i in instances})
    cluster.prefix_block_tokens = prefix_block_tokens
    cluster.wire(instances, deployment.router, link_for, receiver_for, seed)
    pair = deployment.planned_pair()  # two planners under one GPU budget (sim/planner_budget.py)
    for gi, config in deployment.autoscaled():
        if live:
            raise PhasewiseError("autoscale is simulate's: the twin serves a fixed deployment; run a twin per replica "
                                 "(serve --cold-start auto) and let your autoscaler start and stop them")
        group = group_instances[gi]
        routed = cluster.back if group[0].role == "decode" else cluster.front
        cluster.autoscalers.append(Autoscaler(config, cluster, gi, group, routed.instances, n_requests,
                                              paired=pair is not None and gi in pair))
    if pair is not None:
        by_group = {scaler.group: scaler for scaler in cluster.autoscalers}
        PlannerPair(by_group[pair[0]], by_group[pair[1]])
    if deployment.encoders is not None:
        cluster.encoders = EncodePool(deployment, cluster)
        price += load_hardware(deployment.encoders.hardware).gpu_hour_usd * deployment.encoders.gpus
    if deployment.priority_pools is not None:
        cluster.pools = PoolController(deployment.priority_pools, cluster, instances, slo)
    offload = deployment.attention_offload
    if offload is not None and offload.mode != "off":
        cluster.offload = AttentionOffloadController(offload, cluster, instances, slo)
    if deployment.online_training is not None:
        cluster.trainer = OnlineTrainer(deployment.online_training, cluster, instances)
    return cluster, instances, price


def simulate(deployment: Deployment, workload: Workload | ClosedLoop, slo: Slo | None = None,
             check_invariants: bool = False, record_timeline: bool = False,
             progress: Callable[[int, int], None] | None = None, refuse_beyond_context: bool = False,
             images: ImageInputs | None = None, stop_after_misses: int | None = None, seed: int = 0) -> SimResult:
    """Run the workload through the deployment; per-request latencies and per-instance statistics.
    `progress(done, total)` is called now and then with the requests finished so far (a progress bar).
    `refuse_beyond_context`: reject a request whose prompt + output tokens exceed the model's context on arrival,
    as a serving engine does (`phasewise simulate`); off, it runs if its KV fits, as the papers' replays run them.
    `images`: the images requests carry (workload/images.py), their tokens added to the prompts the workload gives.
    `slo`: the SLOs the headline attainment scores; a priority_pools block's slo_ttft_ms / slo_tpot_ms come first (one
    of `slo` that differs from them is refused: sim/priority_pools.py headline_slo).
    `stop_after_misses` (an open loop's; a search's probe): end the run as soon as more than this many requests
    have surely missed the SLOs (rejected, or finished past TTFT, TPOT or a gap known by then), when the attainment
    can no longer exceed (requests - that - 1) / requests; the result's `stopped_s` says when, and the requests
    not finished by then count as missing. `seed`: the routers' draws (`--seed`; the workload's own draws are made
    when it is built)."""
    wall0 = time.perf_counter()
    _check_arguments(deployment, workload, slo, images, seed, stop_after_misses)
    slo = headline_slo(deployment.priority_pools, slo or Slo())  # the pools' own SLOs, which they steer by
    loop = EventLoop()
    closed = isinstance(workload, ClosedLoop)
    if closed:  # measured requests are ids 0..n_measured-1 in release order; warm-up requests come after
        n_measured, n_warm = workload.requests, workload.warmup_requests
        n = n_measured + n_warm
        prompts, outputs = workload.lengths()
        if n_warm:
            warm_prompts, warm_outputs = workload.warmup_lengths(prompts, outputs)
            prompts, outputs = np.concatenate([prompts, warm_prompts]), np.concatenate([outputs, warm_outputs])
        arrival = np.full(n, np.nan)
        priority = np.zeros(n, dtype=np.int64)
    else:
        n = len(workload)
        prompts, outputs, arrival = workload.prompt_tokens, workload.output_tokens, workload.arrival_s
        priority = workload.priority if workload.priority is not None else np.zeros(n, dtype=np.int64)
    if deployment.priority_pools is not None and deployment.priority_pools.class_slo_ms:
        check_classes(deployment.priority_pools.class_slo_ms, priority, f"workload '{workload.name}'")
    # a closed loop's only shared prompt is its first, which a client's warm-up copies repeat (sim/bench_clients.py):
    # keyed in the engines' own blocks, as the twin keys its prompts, so its hits come to the block as theirs
    cluster, instances, price = build_cluster(deployment, loop, n, check_invariants, slo=slo, seed=seed,
                                              prefix_block_tokens=None if closed else MOONCAKE_BLOCK_TOKENS)
    if stop_after_misses is not None:
        if closed:
            raise PhasewiseError("stop_after_misses needs an open loop (arrival times), not closed-loop clients")
        cluster.miss_slo, cluster.miss_limit = slo, stop_after_misses
    if cluster.autoscalers and not closed and n:
        check_span(cluster.autoscalers, float(np.max(arrival) - np.min(arrival)))
    cluster.refuse_beyond_context = refuse_beyond_context
    cluster.record_timeline = record_timeline

    hashes = None if closed else workload.prefix_hashes  # prefix block hashes (Mooncake traces)
    image_counts = None if images is None else images.counts(n, None if closed else workload.image_counts)
    geometries = _image_load(images, instances, cluster)
    if image_counts is not None:  # the prompts as the model reads them: text and the images' tokens
        added = images.added_tokens(image_counts, tuple(g.prompt_tokens for g in geometries))
        if not images.in_prompt:
            prompts = prompts + added
        elif (prompts <= added).any():  # the lengths count the images' tokens: each must hold them and some text
            i = int(np.argmax(prompts <= added))
            raise PhasewiseError(f"request {i}: its {int(prompts[i])} prompt tokens cannot hold its "
                                 f"{int(image_counts[i])} image(s)' {int(added[i])} tokens and any text "
                                 f"(--image-tokens-included: the lengths count them; {images.describe_sizes()})")

    def request(i: int, t: float) -> SimRequest:  # created on arrival, dropped when finished
        req = SimRequest(i, t, int(prompts[i]), int(outputs[i]), int(priority[i]),
                         prefix=None if hashes is None else hashes[i])
        if image_counts is not None and image_counts[i]:
            each = [geometries[s] for s in images.sizes_of(i, int(image_counts[i]))]
            req.image_patches = tuple(g.patches for g in each)
            req.image_tokens = tuple(g.prompt_tokens for g in each)
        return req

    clients = None
    if closed:  # a benchmark client at fixed concurrency (sim/bench_clients.py)
        clients = BenchmarkClients(loop, cluster, workload, request, arrival)
        clients.start()
    else:
        def arrive(i: int) -> None:  # one pending arrival at a time keeps the heap small
            cluster.arrive(request(i, float(arrival[i])))
            if i + 1 < n:
                loop.at(float(arrival[i + 1]), arrive, i + 1)

        loop.at(float(arrival[0]), arrive, 0)
    loop.run(None if progress is None else lambda: progress(cluster.done + cluster.rejected, n))
    cluster.finalize()
    gpus, price, held_s = _autoscaled_share(deployment, cluster, price, loop.now)
    energies = [inst.mapped_energy for inst in instances if inst.mapped_energy is not None]
    if energies:  # operator mappings: energy on the substrates
        cluster.policy_stats["mapping"] = mapping_summary(energies)
    if closed and n_warm:  # warm-up requests are excluded from every summary figure
        cluster.tbt.subtract(clients.warm_tbt)
    workers = cluster.encoders.workers if cluster.encoders is not None else []
    if workers:  # disaggregated encoders: what their workers did, and the requests they encoded
        cluster.policy_stats["encoders"] = {
            "workers": len(workers), "hardware": deployment.encoders.hardware, "tp": deployment.encoders.tp,
            "link": deployment.encoders.link, "requests_encoded": cluster.encoders.encoded_requests,
            "images_encoded": sum(w.stats.images_encoded for w in workers)}

    stopped = cluster.stopped_s == cluster.stopped_s
    if cluster.done + cluster.rejected != n and not stopped:
        raise RuntimeError(f"simulation ended with {n - cluster.done - cluster.rejected} requests unfinished")
    if check_invariants and not stopped:
        _check_kv_conserved(instances)
    # the result's per-request arrays are its own (copies, never the workload's: a user's in-place change to one
    # would change the workload the next run reads)
    result = SimResult(
        arrival_s=np.array(arrival, dtype=np.float64), prompt_tokens=np.array(prompts),
        output_tokens=np.array(outputs), first_token_s=cluster.first_token_s, finish_s=cluster.finish_s,
        scheduled_s=cluster.scheduled_s, tpot_s=cluster.tpot_s, max_tbt_s=cluster.max_tbt_s,
        preemptions=cluster.preemptions, instance=cluster.instance_of, cached_tokens=cluster.cached_tokens,
        tbt=cluster.tbt,
        instances=[i.stats for i in instances] + [w.stats for w in workers], gpus=gpus,
        price_per_hour_usd=price, slo=slo,
        events=loop.events, rejected=cluster.rejected, rejected_by=dict(cluster.rejected_by),
        measured=(np.arange(n) < n_measured) if closed and n_warm else None,
        concurrency=workload.concurrency if closed else None,
        steady_tbt=None if clients is None else clients.steady_tbt, policy=cluster.policy_stats,
        images=None if image_counts is None else np.array(image_counts), stopped_s=cluster.stopped_s)
    dur = result.duration_s if cluster.done else 0.0
    for inst in [*instances, *workers]:  # idle power for the time each instance or encode worker was not busy
        st = inst.stats
        st.energy_j += st.gpus * inst.idle_w * max(held_s.get(inst, dur) - st.busy_s, 0.0)
    result.wall_s = time.perf_counter() - wall0
    return result


def _check_arguments(deployment, workload, slo, images, seed, stop_after_misses) -> None:
    """simulate()'s arguments of the types it reads, else a one-line error naming the argument (not an
    AttributeError deep inside): the objects themselves, not a path, a tuple or a dict."""
    kinds = (("deployment", deployment, Deployment, "a Deployment (sim/deployment.py: load_deployment(path) reads a "
              "file, build_deployment(dict) a mapping)"),
             ("workload", workload, (Workload, ClosedLoop), "a Workload or a ClosedLoop (phasewise.workload)"),
             ("slo", slo, (Slo, type(None)), "a Slo (phasewise.sim.Slo(ttft_ms, tpot_ms, max_tbt_ms)) or None"),
             ("images", images, (ImageInputs, type(None)), "an ImageInputs (phasewise.workload) or None"))
    for name, value, kind, what in kinds:
        if not isinstance(value, kind):
            raise PhasewiseError(f"simulate(): {name} must be {what} (got {type(value).__name__})")
    for name, value, low in (("seed", seed, 0), ("stop_after_misses", stop_after_misses, 0)):
        if value is not None and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                                      and value >= low):
            raise PhasewiseError(f"simulate(): {name} must be an integer >= {low} (got {value!r})")


def _autoscaled_share(deployment: Deployment, cluster: Cluster, price_per_hour_usd: float,
                      now_s: float) -> tuple[float, float, dict]:
    """The deployment's GPUs and price per hour with each autoscaled group counted for the share of its replicas it
    ran on average, and each autoscaled replica's seconds held (price, GPUs and idle energy follow them)."""
    gpus: float = deployment.gpus
    held_s: dict = {}
    if cluster.autoscalers:
        finished = cluster.finish_s[np.isfinite(cluster.finish_s)]
        end_s = float(finished.max()) if len(finished) else now_s
        for scaler in cluster.autoscalers:
            scaler.finish(end_s)
            held_s.update(scaler.active_seconds())
            group = deployment.instances[scaler.group]
            idle_share = 1.0 - scaler.mean_replicas / len(scaler.replicas)
            price_per_hour_usd -= scaler.replicas[0].cost.hw.gpu_hour_usd * group.gpus * idle_share
            gpus -= group.gpus * idle_share
    return gpus, price_per_hour_usd, held_s


def _check_kv_conserved(instances: list[Instance]) -> None:
    """Invariants at the end of a run (enabled in tests): every KV block allocated was freed, none held, and the
    peak never above the pool."""
    for inst in instances:
        kv = inst.kv
        if kv.used != 0 or kv.allocated_total != kv.freed_total:
            raise AssertionError(f"{inst.name}: KV blocks not conserved ({kv.used} in use, "
                                 f"{kv.allocated_total} allocated, {kv.freed_total} freed)")
        if kv.peak > kv.capacity:
            raise AssertionError(f"{inst.name}: KV peak {kv.peak} above capacity {kv.capacity}")


def _image_load(images: ImageInputs | None, instances: list, cluster) -> tuple:
    """Each image size's geometry (its prompt tokens and encoder patches; none without images), as the deployment's
    model processes it; recorded in the run's policy."""
    if images is None:
        return ()
    geometries = images.geometries(instances[0].cost.model)
    policy = {"per_request": "trace" if images.per_request is None else images.per_request, "share": images.share,
              "tokens_in_prompt": images.in_prompt,
              "sizes": [{"size_px": list(size), "weight": weight, "resized_px": list(g.resized_px),
                         "patches": g.patches, "prompt_tokens": g.prompt_tokens}
                        for size, weight, g in zip(images.sizes, images.weights, geometries)]}
    if len(geometries) == 1:  # one size: its figures at the top level too
        g = geometries[0]
        policy.update({"size_px": list(images.sizes[0]), "resized_px": list(g.resized_px),
                       "patches_per_image": g.patches, "prompt_tokens_per_image": g.prompt_tokens})
    cluster.policy_stats["images"] = policy
    return geometries
