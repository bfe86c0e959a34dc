"""`simulate()`: a workload through a deployment, request by request, in simulated time."""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel, memory_fit
from phasewise.sim.cluster import Cluster
from phasewise.sim.deployment import Deployment, InstanceGroup
from phasewise.sim.events import EventLoop
from phasewise.sim.instance import Instance
from phasewise.sim.link import Link
from phasewise.sim.metrics import SimResult, Slo
from phasewise.sim.request import SimRequest
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.workload import ClosedLoop, Workload


def build_group(dep: Deployment, g: InstanceGroup, index: int) -> tuple[CostModel, int, CostModel | None]:
    """Cost model, KV capacity (tokens) and draft cost model of one instance group."""
    return _build_group(dep.model, g, dep.speculative, index)


@lru_cache(maxsize=128)
def _build_group(dep_model: str, g: InstanceGroup, spec, index: int) -> tuple[CostModel, int, CostModel | None]:
    """Cached per process: planners simulate the same groups many times (and keep their cost caches)."""
    where = f"deployment instances[{index}] ({g.role} {g.hardware} tp={g.tp} pp={g.pp} {g.precision})"
    model = load_model(g.model or dep_model)
    hw = load_hardware(g.hardware)
    quant = load_quant(g.precision, g.kv_dtype)
    try:
        cost = CostModel(model, hw, quant, load_engine(g.engine), g.tp, g.pp)
    except PhasewiseError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None
    max_tokens = g.chunk_size if g.scheduler == "sarathi" else g.max_batched_tokens
    mem = memory_fit(model, hw, quant, g.tp, g.pp, max_tokens=max_tokens, max_seqs=g.max_batch,
                     memory_fraction=g.memory_fraction)
    if mem.kv_capacity_tokens < g.block_size:
        raise PhasewiseError(f"{where}: does not fit in memory: {mem.reason()}")
    draft = None
    if spec is not None:
        if spec.draft == "mtp":  # one extra decoder layer + LM head per draft token
            draft_model = model.model_copy(update={"num_layers": 1, "num_moe_layers": min(model.num_moe_layers, 1)})
            draft = CostModel(draft_model, hw, quant, load_engine("ideal"), g.tp, 1)
        else:
            draft = CostModel(load_model(spec.draft), hw, quant, load_engine("ideal"), g.tp, 1)
    return cost, mem.kv_capacity_tokens, draft


def build_cluster(deployment: Deployment, loop: EventLoop, n_requests: int, check: bool = False,
                  live: bool = False) -> tuple[Cluster, list[Instance], float]:
    """The deployment's instances, router and links on `loop`; also the deployment's price per hour.
    `live` (the digital twin) notifies every token as it is produced and keeps no per-request arrays."""
    cluster = Cluster(deployment, loop, n_requests, check)
    cluster.live = live
    instances: list[Instance] = []
    price = 0.0
    for gi, g in enumerate(deployment.instances):
        cost, kv_tokens, draft = build_group(deployment, g, gi)
        price += cost.hw.price_per_hour_usd * g.gpus
        for r in range(g.replicas):
            short = {"collocated": "col", "prefill": "pre", "decode": "dec"}[g.role]
            instances.append(Instance(f"{short}{gi}.{r}", len(instances), g, cost, kv_tokens, cluster, draft))
    m = instances[0].model
    cluster.kv_bytes_per_token = 2 * m.num_kv_heads * m.head_dim * instances[0].cost.kv_bytes * m.num_layers

    def link_for(src: Instance) -> Link:
        ic = src.cost.hw.interconnect
        decode_tp = min(i.group.tp for i in instances if i.role == "decode")
        lanes = min(src.group.tp, decode_tp)  # each TP rank sends its shard in parallel
        bw, lat = {"nvlink": (ic.intra_node_bandwidth_bytes_per_s, ic.intra_node_latency_s),
                   "pcie": (ic.pcie_bandwidth_bytes_per_s, ic.intra_node_latency_s),
                   "rdma": (ic.inter_node_bandwidth_bytes_per_s, ic.inter_node_latency_s)}[deployment.kv_link]
        return Link(loop, bw * lanes * src.cost.eff.link_efficiency, lat)

    cluster.wire(instances, deployment.router, link_for)
    return cluster, instances, price


def simulate(deployment: Deployment, workload: Workload | ClosedLoop, slo: Slo | None = None,
             check_invariants: bool = False, record_timeline: bool = False) -> SimResult:
    """Run the workload through the deployment; per-request latencies and per-instance statistics."""
    wall0 = time.perf_counter()
    slo = slo or Slo()
    loop = EventLoop()
    closed = isinstance(workload, ClosedLoop)
    if closed:
        n = workload.requests
        prompts, outputs = workload.lengths()
        arrival = np.full(n, np.nan)
        priority = np.zeros(n, dtype=np.int64)
    else:
        n = len(workload)
        prompts, outputs, arrival = workload.prompt_tokens, workload.output_tokens, workload.arrival_s
        priority = workload.priority if workload.priority is not None else np.zeros(n, dtype=np.int64)
    cluster, instances, price = build_cluster(deployment, loop, n, check_invariants)
    cluster.record_timeline = record_timeline

    def request(i: int, t: float) -> SimRequest:  # created on arrival, dropped when finished
        return SimRequest(i, t, int(prompts[i]), int(outputs[i]), int(priority[i]))

    if closed:
        issued = iter(range(n))

        def issue(client: int) -> None:
            i = next(issued, None)
            if i is None:
                return
            req = request(i, loop.now)
            req.client = client
            arrival[i] = loop.now
            cluster.arrive(req)

        cluster.on_finish = lambda req: loop.at(loop.now + workload.think_s, issue, req.client)
        for c in range(min(workload.concurrency, n)):
            loop.at(0.0, issue, c)
    else:
        def arrive(i: int) -> None:  # one pending arrival at a time keeps the heap small
            cluster.arrive(request(i, float(arrival[i])))
            if i + 1 < n:
                loop.at(float(arrival[i + 1]), arrive, i + 1)

        loop.at(float(arrival[0]), arrive, 0)
    loop.run()
    cluster.finalize()

    if cluster.done + cluster.rejected != n:
        raise RuntimeError(f"simulation ended with {n - cluster.done - cluster.rejected} requests unfinished")
    if check_invariants:
        for inst in instances:
            kv = inst.kv
            if kv.used != 0 or kv.allocated_total != kv.freed_total:
                raise AssertionError(f"{inst.name}: KV blocks not conserved ({kv.used} in use, "
                                     f"{kv.allocated_total} allocated, {kv.freed_total} freed)")
            if kv.peak > kv.capacity:
                raise AssertionError(f"{inst.name}: KV peak {kv.peak} above capacity {kv.capacity}")
    result = SimResult(
        arrival_s=np.asarray(arrival, dtype=np.float64), prompt_tokens=np.asarray(prompts),
        output_tokens=np.asarray(outputs), first_token_s=cluster.first_token_s, finish_s=cluster.finish_s,
        scheduled_s=cluster.scheduled_s, tpot_s=cluster.tpot_s, max_tbt_s=cluster.max_tbt_s,
        preemptions=cluster.preemptions, instance=cluster.instance_of, tbt=cluster.tbt,
        instances=[i.stats for i in instances], gpus=deployment.gpus, price_per_hour_usd=price, slo=slo,
        events=loop.events, rejected=cluster.rejected)
    dur = result.duration_s if cluster.done else 0.0
    for inst in instances:  # idle power for the time each instance was not busy
        st = inst.stats
        st.energy_j += st.gpus * inst.idle_w * max(dur - st.busy_s, 0.0)
    result.wall_s = time.perf_counter() - wall0
    return result
