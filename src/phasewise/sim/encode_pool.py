"""Disaggregated vision encoders (deployment_blocks.py EncodeWorkers): encode workers of their own run the vision encoder
over the images of the requests that carry them, before the language model sees those requests.

A request with images is sent to the encode worker with the fewest image tokens outstanding. It passes the worker's
frontend (its engine's per-request API-server time, one request at a time, as request_entry.py's frontend), then
waits in its queue. A worker runs one forward at a time over the requests waiting there, whole and in arrival order,
until the next one would take the batch beyond `max_batch_tokens` image tokens (the first always goes); a forward
takes the encoder's time (perf/vision.py) plus the engine's per-iteration host overhead. When it ends, each request's
embeddings (its image tokens x the encoder's embedding width, BF16) cross the worker's link to the language model's
instances (sent together they share the link), and the request is routed there as any other arrival, its images
marked encoded so that the instance that prefills it runs no encoder for it (a preempted request keeps them: the
engines read them back from their encoder cache or the connector's store). Requests without images bypass the pool.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from typing import TYPE_CHECKING

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.perf.parallel import parallel_layout
from phasewise.sim.link import Link, link_rate
from phasewise.sim.metrics import InstanceStats
from phasewise.sim.request import SimRequest
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engines import resolve_engine
from phasewise.specs.reading import spec_file_stamps

if TYPE_CHECKING:
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.deployment import Deployment

EMBEDDING_BYTES = 2  # BF16, as the encoders hand their embeddings to the language model


def encoder_cost(deployment: Deployment) -> CostModel:
    """The cost model an encode worker of `deployment` runs its forwards by (its chip and TP, BF16 weights, its
    engine's host dispatch); cached per deployment. A TP the model's heads refuse is named as the deployment names
    the encoders' tp (--encode-tp from flags, encoders.tp in a file: Deployment.field_label), not as --tp."""
    spec = deployment.encoders
    return _encoder_cost(deployment.model, spec, deployment.field_label("encoders", "tp"),
                         spec_file_stamps(deployment.model, spec.hardware, spec.engine))


@lru_cache(maxsize=32)
def _encoder_cost(model_name: str, spec, tp_name: str, stamps: tuple = ()) -> CostModel:
    """encoder_cost's, keyed on the stamps of the files it reads too (specs/reading.py spec_file_stamps): an edited
    model or chip file is read afresh."""
    model, hw = load_model(model_name), load_hardware(spec.hardware)
    engine = resolve_engine(spec.engine, hw, tp=spec.tp, vision=model.vision, model_type=model.model_type)
    layout = parallel_layout(model, spec.tp, flags={"tp": tp_name})
    try:
        return CostModel(model, hw, load_quant("bf16"), engine.profile, spec.tp, 1, layout)
    except PhasewiseError as exc:  # perf/parallel.py check_parallelism names the instances' flag, --tp
        text = str(exc)
        if text.startswith("--tp "):
            raise PhasewiseError(f"{tp_name} {text.removeprefix('--tp ')}") from None
        raise


class EncodeWorker:
    """One encode worker: its queue, the forward in flight, and the link its embeddings leave by."""

    __slots__ = ("name", "pool", "cost", "link", "queue", "busy", "outstanding_tokens", "frontend_free_s", "stats",
                 "idle_w", "_idle_power", "_dynamic_power", "_inv_peak", "_inv_bw")

    def __init__(self, name: str, pool: EncodePool, cost: CostModel, link: Link) -> None:
        self.name, self.pool, self.cost, self.link = name, pool, cost, link
        self.queue: deque[SimRequest] = deque()
        self.busy = False
        self.outstanding_tokens = 0  # image tokens queued or in the forward (the pool's pick)
        self.frontend_free_s = 0.0  # when the worker's frontend takes the next request
        hw, gpus = cost.hw, cost.tp
        self.stats = InstanceStats(name, "encode", gpus, peak_flops=cost.peak * gpus,
                                   bandwidth=hw.memory_bandwidth_bytes_per_s * gpus)
        self.idle_w = hw.idle_power_w
        self._idle_power, self._dynamic_power = gpus * self.idle_w, gpus * (hw.tdp_w - self.idle_w)
        self._inv_peak, self._inv_bw = 1.0 / self.stats.peak_flops, 1.0 / self.stats.bandwidth

    def enqueue(self, req: SimRequest) -> None:
        self.outstanding_tokens += sum(req.image_tokens)
        frontend_s = self.cost.engine.frontend_request_s
        if frontend_s > 0.0:
            loop = self.pool.cluster.loop
            self.frontend_free_s = max(loop.now, self.frontend_free_s) + frontend_s
            loop.at(self.frontend_free_s, self._queued, req)
            return
        self._queued(req)

    def _queued(self, req: SimRequest) -> None:
        self.queue.append(req)
        if not self.busy:
            self._start()

    def _start(self) -> None:
        budget = self.pool.spec.max_batch_tokens
        batch: list[SimRequest] = []
        tokens = 0
        while self.queue:
            req = self.queue[0]
            if req.cancelled:  # the client left while it waited (the twin)
                self.queue.popleft()
                self.outstanding_tokens -= sum(req.image_tokens)
                continue
            need = sum(req.image_tokens)
            if batch and tokens + need > budget:
                break
            batch.append(self.queue.popleft())
            tokens += need
        if not batch:
            return
        patches = tuple(p for req in batch for p in req.image_patches)
        encoded = self.cost.encoder(patches)
        t = encoded.time_s + self.cost.engine.iteration_overhead_s  # a step of the worker's own engine
        st = self.stats
        flops, nbytes = encoded.flops * self.cost.tp, encoded.bytes * self.cost.tp  # one GPU's -> the worker's
        util = min(max(flops * self._inv_peak, nbytes * self._inv_bw) / t, 1.0) if t > 0 else 0.0
        st.energy_j += (self._idle_power + self._dynamic_power * util) * t
        st.busy_s += t
        st.encoder_busy_s += t
        st.iterations += 1
        st.batch_seqs_sum += len(batch)
        st.prefill_tokens += tokens
        st.images_encoded += len(patches)
        st.flops += flops
        st.bytes += nbytes
        self.busy = True
        loop = self.pool.cluster.loop
        loop.at(loop.now + t, self._done, batch, tokens)

    def _done(self, batch: list[SimRequest], tokens: int) -> None:
        self.busy = False
        self.outstanding_tokens -= tokens
        width = self.pool.embedding_width
        for req in batch:
            nbytes = sum(req.image_tokens) * width * EMBEDDING_BYTES
            self.link.send(req.id, nbytes, lambda r=req: self.pool.arrived(r))
        if self.queue:
            self._start()


class EncodePool:
    """The deployment's encode workers and the router in front of them."""

    __slots__ = ("spec", "cluster", "workers", "embedding_width", "encoded_requests")

    def __init__(self, deployment: Deployment, cluster: Cluster) -> None:
        spec = deployment.encoders
        self.spec, self.cluster = spec, cluster
        model = load_model(deployment.model)
        where = "deployment encoders"
        if model.vision is None:
            raise PhasewiseError(f"{where}: model '{model.name}' has no vision encoder (its config.json has no "
                                 "vision_config this parser reads): there is nothing to disaggregate")
        hw = load_hardware(spec.hardware)
        cost = encoder_cost(deployment)
        weights = model.vision.params_per_gpu(spec.tp) * EMBEDDING_BYTES
        if weights > 0.9 * hw.memory_capacity_bytes:
            raise PhasewiseError(f"{where}: the vision encoder's {weights / 2**30:.1f} GiB of BF16 weights a GPU do "
                                 f"not fit in a {hw.key}'s memory at tp={spec.tp}")
        self.embedding_width = model.vision.embedding_width
        self.encoded_requests = 0
        bandwidth, latency = link_rate(hw.interconnect, spec.link)
        lanes = spec.tp  # each GPU sends its share of the embeddings
        self.workers = [EncodeWorker(f"enc.{r}", self, cost, Link(cluster.loop, bandwidth * lanes *
                                                                 cost.eff.link_efficiency, latency))
                        for r in range(spec.replicas)]

    def admit(self, req: SimRequest) -> None:
        """A request carrying images: to the worker with the fewest image tokens outstanding."""
        min(self.workers, key=lambda w: w.outstanding_tokens).enqueue(req)

    def arrived(self, req: SimRequest) -> None:
        """Its embeddings reached the language model's side: routed there as an arrival, encoded already."""
        if req.cancelled:
            return
        req.images_remote = True
        self.encoded_requests += 1
        self.cluster.route(req)
