"""Online continual learning on the serving GPUs: a trainer colocated with every collocated instance (Alchemist).

  feedback  a served request chosen for feedback (`feedback_share` of them: request i is chosen when
            floor((i + 1) x share) > floor(i x share), an even, seed-free draw) becomes, when it finishes, a
            training sample queued on the instance that served it: its prompt, or prompt + answer (`sample`),
            truncated to one batch;
  batches   when the queued samples' tokens reach `train_batch_tokens`, the samples that fit it (FIFO) form one
            training step, costed by perf/training.py (forward + backward + optimizer, and with reuse offload the
            reload not hidden behind backward) on the instance's own cost model;
  recording with reuse keep or offload, serving's prefill records the chosen requests' prompt activations and KV
            (PAPERS.md section 10: recorded in the prefill phase only, so a prefix-cache hit's tokens, which it
            does not compute, are not): the prefill iteration pays recording_bytes_per_token (one TP rank's:
            what its own trainer reads back) x the recorded tokens at the chip's streaming bandwidth. Keep holds them on
            the GPU in a buffer of `record_buffer_batches` batches (a request that does not fit is not recorded:
            the trainer recomputes its forward); offload copies them to host memory over `host_link` (the copy
            overlaps serving; its link time is reported) but holds the last `keep_layers` on the GPU from the
            prefill to the step (hedging; by default the fewest whose reload then hides behind the backward,
            within HIDDEN_RELOAD of a full batch's step, of one-token sequences: the shortest backward), in a
            buffer of `record_buffer_batches` batches of those layers, counted as keep's (keep_layers = all:
            keep's memory); with placement separate the serving GPU
            holds none (everything crosses the link to the trainer's own GPU). Tokens not recorded (answers,
            cached prefixes, requests not recorded) cost the trainer their layers' forward (their share of the
            batch: perf/training.py reused_share), are not reloaded, and hold their activations until backward;
  memory    the trainer's resident bytes (trained parameters' grads and optimizer state, and the activations held at
            once: the recording buffer (keep; offload's kept layers) plus what a fully recorded batch's step holds
            beyond its recordings (the head's saved input and fp32 log-probs; recompute: the whole batch; offload:
            the reload window's layers beyond the kept ones)) are taken from the KV cache at start: fewer KV blocks.
            The peak reported is what was resident together: the buffer's recordings (other requests' among them)
            plus the step in flight's activations that are not its recordings there (a partly recorded batch's
            recomputed tokens', held until backward);
  sharing   time-slice: a step holds the GPU between serving iterations (serving waits), alternating with them
            when both have work; sm-partition: the trainer runs beside serving on `trainer_sm_share` of the SMs
            (MPS-style), its step time divided by the share, serving iterations launched meanwhile divided by
            1 - share (the slowdown of a compute-bound iteration; an upper bound for memory-bound decodes);
            placement separate: the trainer has a GPU of its own (same chip), serving only records.
Figures go to cluster.policy_stats["online_training"].
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.perf.memory import kv_bytes_per_token
from phasewise.perf.training import (
    REUSE_MODES,
    TRAIN_METHODS,
    TrainingStep,
    held_bytes_per_token,
    recording_bytes_per_token,
    training_step,
)
from phasewise.sim.link import effective_bandwidth

if TYPE_CHECKING:
    from phasewise.sim.cluster import Cluster
    from phasewise.sim.deployment import OnlineTraining
    from phasewise.sim.instance import Instance
    from phasewise.sim.request import SimRequest

GpuSharing = Literal["time-slice", "sm-partition"]
HostLink = Literal["pcie", "nvlink"]  # offload's link: the chip's host link, or NVLink to a peer's memory
SHARINGS, HOST_LINKS = get_args(GpuSharing), get_args(HostLink)  # (the deployment YAML's types too)
# The trainer's SM share under sm-partition when none is given. Assumed: a minority of the SMs, so that serving
# keeps most of the GPU (PAPERS.md section 10 gives no split; MPS shares are set per client).
DEFAULT_SM_SHARE = 0.3
# Hedging: the reload the default keep_layers leaves exposed, as a share of the step. Assumed: 1 %, "hidden".
HIDDEN_RELOAD = 0.01


# the simulate flag that sets each field of the deployment's `online_training` block (training_block), by which an
# error about a deployment built from flags names the field (sim/deployment_flags.py flag_of)
TRAINING_FLAGS = {"method": "--online-training", "reuse": "--train-reuse-mode", "feedback_share": "--feedback-share",
                  "train_batch_tokens": "--train-batch-tokens", "sharing": "--gpu-sharing",
                  "trainer_sm_share": "--trainer-sm-share", "lora_rank": "--lora-rank", "keep_layers": "--keep-layers",
                  "host_link": "--host-link"}


def training_block(mode: str, reuse: str | None = None, feedback_share: float | None = None,
                   batch_tokens: int | None = None, sharing: str | None = None, sm_share: float | None = None,
                   lora_rank: int | None = None, keep_layers: int | None = None,
                   collocated: bool = True, host_link: str | None = None, pp: int = 1,
                   mapped: bool = False) -> dict | None:
    """The deployment's `online_training` block from the simulate flags --online-training full|lora|off,
    --train-reuse-mode, --feedback-share, --train-batch-tokens, --gpu-sharing, --trainer-sm-share, --lora-rank,
    --keep-layers, --host-link (None: no block; then none of the others may be given); `pp` and `mapped`: the
    instances' --pp and whether --mapping is given (the trainer takes neither)."""
    fields = {"reuse": reuse, "feedback_share": feedback_share, "train_batch_tokens": batch_tokens,
              "sharing": sharing, "trainer_sm_share": sm_share, "lora_rank": lora_rank, "keep_layers": keep_layers,
              "host_link": host_link}
    flags = {TRAINING_FLAGS[key]: value for key, value in fields.items()}
    text = str(mode).strip().lower()
    if text == "off":
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise PhasewiseError(f"{given[0]} needs --online-training {'|'.join(TRAIN_METHODS)}")
        return None
    if text not in TRAIN_METHODS:
        raise PhasewiseError(f"--online-training takes {', '.join(TRAIN_METHODS)} or off (got {mode!r})")
    if not collocated:
        raise PhasewiseError("--online-training needs --arch collocated (the trainer shares the serving GPUs)")
    if pp != 1:  # the deployment's own check, worded for the flags (Deployment._training)
        raise PhasewiseError(f"--online-training needs --pp 1 (a training step is costed on one whole model per "
                             f"instance; got --pp {pp})")
    if mapped:
        raise PhasewiseError("--online-training does not combine with --mapping (a training step is costed on the "
                             "chip's own roofs)")
    if reuse is not None and reuse not in REUSE_MODES:
        raise PhasewiseError(f"--train-reuse-mode '{reuse}' is not one of {', '.join(REUSE_MODES)}")
    if sharing is not None and sharing not in SHARINGS:
        raise PhasewiseError(f"--gpu-sharing '{sharing}' is not one of {', '.join(SHARINGS)}")
    if feedback_share is not None and not 0 < feedback_share <= 1:
        raise PhasewiseError(f"--feedback-share must be in (0, 1] (got {feedback_share})")
    if batch_tokens is not None and batch_tokens < 1:
        raise PhasewiseError(f"--train-batch-tokens must be >= 1 (got {batch_tokens})")
    if sm_share is not None:
        if sharing != "sm-partition":
            raise PhasewiseError("--trainer-sm-share needs --gpu-sharing sm-partition")
        if not 0 < sm_share < 1:
            raise PhasewiseError(f"--trainer-sm-share must be in (0, 1) (got {sm_share})")
    if lora_rank is not None:
        if text != "lora":
            raise PhasewiseError("--lora-rank needs --online-training lora")
        if lora_rank < 1:
            raise PhasewiseError(f"--lora-rank must be >= 1 (got {lora_rank})")
    if keep_layers is not None:
        if reuse != "offload":
            raise PhasewiseError("--keep-layers needs --train-reuse-mode offload (layers kept on the GPU)")
        if keep_layers < 0:
            raise PhasewiseError(f"--keep-layers must be >= 0 (got {keep_layers})")
    if host_link is not None:
        if host_link not in HOST_LINKS:
            raise PhasewiseError(f"--host-link '{host_link}' is not one of {', '.join(HOST_LINKS)}")
        if reuse != "offload":
            raise PhasewiseError("--host-link needs --train-reuse-mode offload (the link recordings are offloaded "
                                 "over)")
    return {"method": text, **{key: value for key, value in fields.items() if value is not None}}


@dataclass(slots=True)
class Sample:
    """One feedback sample: the tokens it trains on, of which `recorded` were recorded by serving's prefill."""

    id: int
    tokens: int
    recorded: int
    held_bytes: float  # keep / offload's kept layers: its recordings' bytes in the instance's GPU buffer


@dataclass(slots=True)
class Recording:
    """What serving's prefill recorded of one chosen request's prompt: positions [start, end) (from the end of a
    prefix-cache hit, whose tokens its prefill did not compute) and how many tokens, and its buffer bytes (keep)."""

    start: int
    end: int
    tokens: int = 0
    held_bytes: float = 0.0  # keep / offload's kept layers: the room reserved in the GPU buffer (per GPU)


@dataclass(slots=True)
class Lane:
    """The trainer of one instance: its feedback queue, its recordings and its step in flight."""

    inst: Instance
    reserved_bytes: float  # per GPU, taken from the KV cache
    buffer_bytes: float  # keep: the recording buffer per GPU
    queue: deque = field(default_factory=deque)
    queued_tokens: int = 0
    record_bytes_per_token: float = 0.0  # what one GPU writes per recorded prompt token (its TP rank's share)
    held_bytes_per_token: float = 0.0  # of which it holds on the GPU until the step (keep: all; offload: the kept
    #                                    layers'; placement separate: none); the rest crosses the host link
    recorded: dict = field(default_factory=dict)  # request id -> Recording (None: not recorded, no buffer room)
    held_bytes: float = 0.0  # keep / offload's kept layers: recordings on the GPU (per GPU)
    step_bytes: float = 0.0  # the step in flight's activations beside the buffer (its peak less its recordings in
    #                          it: the head's, the recomputed tokens'); 0 between steps
    training: bool = False  # a step in flight
    trained_last: bool = False  # time-slice: the last turn was the trainer's


class OnlineTrainer:
    """The colocated trainers of a deployment's instances and their hooks into serving."""

    def __init__(self, config: OnlineTraining, cluster: Cluster, instances: list[Instance]) -> None:
        if cluster.live:
            raise PhasewiseError("online_training is not supported by the digital twin (live mode)")
        self.config, self.cluster, self.loop = config, cluster, cluster.loop
        self.share = config.feedback_share
        self.budget = config.train_batch_tokens
        self.reuse = config.reuse
        self.recording = config.reuse != "recompute"
        self.sm_share = (config.trainer_sm_share or DEFAULT_SM_SHARE) if config.sharing == "sm-partition" else None
        self.separate = config.placement == "separate"
        self._steps: dict[tuple, TrainingStep] = {}
        self.label = cluster.deployment.field_label  # a field's name in an error: its flag, or its key in the file
        layers = instances[0].cost.layers_per_stage
        if config.keep_layers is not None and config.keep_layers > layers:
            raise PhasewiseError(f"{self.label('online_training', 'keep_layers')} {config.keep_layers}: "
                                 f"{instances[0].model.name} has {layers} layers to keep on the GPU (give 0-{layers})")
        self.keep_layers = config.keep_layers or 0
        if config.reuse == "offload" and config.keep_layers is None:
            self.keep_layers = self._hedge(instances[0])
        self.lanes: dict[int, Lane] = {}
        first = self._nominal(instances[0])
        self.weight_state_bytes = first.weight_state_bytes
        self.kv_blocks_reserved = 0
        for inst in instances:
            inst.trainer = self
            self.lanes[inst.index] = self._lane(inst)
        # figures
        self.samples = self.trained_samples = self.steps = self.skipped = 0
        self.trained_tokens = self.reused_tokens = 0
        self.busy_s = self.forward_s = self.backward_s = self.optimizer_s = self.reload_s = 0.0
        self.recorded_bytes = self.recording_s = self.serving_lost_s = self.record_link_s = 0.0
        self.peak_activation_bytes = 0.0
        self.peak_held_bytes = 0.0
        self.last_end_s = 0.0
        self.trained_ids: set[int] | None = set() if cluster.check else None

    # --- set-up ----------------------------------------------------------------------------------
    def _host_bandwidth(self, inst: Instance) -> float:
        return effective_bandwidth(inst.cost, self.config.host_link)

    def _cost(self, inst: Instance, seqs: int, tokens_per_seq: int, reuse: str,
              reused_share: float = 1.0) -> TrainingStep:
        key = (inst.group, seqs, tokens_per_seq, reuse, reused_share)
        found = self._steps.get(key)
        if found is None:
            c = self.config
            found = self._steps[key] = training_step(
                inst.cost, seqs, tokens_per_seq, method=c.method, lora_rank=c.lora_rank, reuse=reuse,
                host_link_bytes_per_s=self._host_bandwidth(inst) if reuse == "offload" else None,
                keep_layers=self.keep_layers if reuse == "offload" else 0, reused_share=reused_share)
        return found

    def _hedge(self, inst: Instance) -> int:
        """The fewest layers kept on the GPU for which a full batch's reload hides behind its backward, whatever
        its sequences' lengths: taken at one-token sequences, whose backward (its attention least) is the
        shortest of a batch of train_batch_tokens."""
        c, layers = self.config, inst.cost.layers_per_stage
        host = self._host_bandwidth(inst)
        for keep in range(layers + 1):
            step = training_step(inst.cost, self.budget, 1, method=c.method, lora_rank=c.lora_rank, reuse="offload",
                                 host_link_bytes_per_s=host, keep_layers=keep)
            if step.reload_s <= HIDDEN_RELOAD * step.step_s:
                return keep
        return layers

    def _nominal(self, inst: Instance) -> TrainingStep:
        """A full batch (one sequence of train_batch_tokens): what the trainer must be able to hold."""
        return self._cost(inst, 1, self.budget, self.reuse)

    def _reserved(self, inst: Instance) -> tuple[float, float, int, float]:
        """(bytes the trainer holds per GPU, its record buffer's, the KV blocks they take, its activations')."""
        nominal = self._nominal(inst)  # (perf/training.py's bytes are one GPU's)
        buffer = self.config.record_buffer_batches * nominal.held_bytes  # keep, offload's kept layers (else 0)
        # the buffer, and beside it what a fully recorded batch's step holds beyond its recordings (which sit in the
        # buffer): the head's saved input and fp32 log-probs (recompute: the whole batch, no buffer)
        activations = buffer + nominal.peak_activation_bytes - nominal.held_bytes
        reserved = nominal.weight_state_bytes + activations
        kv_token_bytes = kv_bytes_per_token(inst.model, inst.cost.quant, inst.group.tp, inst.group.pp)
        return reserved, buffer, math.ceil(reserved / (kv_token_bytes * inst.kv.block_size)), activations

    def _lane(self, inst: Instance) -> Lane:
        """The instance's trainer, with its memory taken from the KV cache."""
        c = self.config
        record = recording_bytes_per_token(inst.model, c.method, lora_rank=c.lora_rank, element_bytes=inst.cost.a_bytes,
                                           tp=inst.cost.tp) if self.recording else 0.0
        if self.separate:  # its memory is on its own GPU: the serving GPU holds no recording
            return Lane(inst, 0.0, 0.0, record_bytes_per_token=record)
        # the figure _reserved's buffer (TrainingStep.held_bytes) is sized by
        held = held_bytes_per_token(inst.cost, c.method, self.reuse, lora_rank=c.lora_rank,
                                    keep_layers=self.keep_layers)
        reserved, buffer, blocks, activations = self._reserved(inst)
        group = inst.group
        if blocks >= inst.kv.capacity:
            gib = 2 ** 30
            kv_token_bytes = kv_bytes_per_token(inst.model, inst.cost.quant, group.tp, group.pp)
            label = self.label
            tips = [f"lower {label('online_training', 'train_batch_tokens')}"] + (
                [f"use {label('online_training', 'method')} lora"] if self.config.method != "lora" else [])
            hedged = ", by the hedge" if self.config.keep_layers is None else ""
            tips += ([f"{label('online_training', 'reuse')} offload"] if self.reuse != "offload" else
                     [f"keep fewer layers on the GPU ({label('online_training', 'keep_layers')}: {self.keep_layers} "
                      f"of {inst.cost.layers_per_stage} kept{hedged})"] if self.keep_layers else [])
            index = next((i for i, g in enumerate(self.cluster.deployment.instances) if g is group), 0)
            raise PhasewiseError(
                f"{label('online_training')}: the trainer needs {reserved / gib:.1f} GiB per GPU (grads and optimizer "
                f"state {self._nominal(inst).weight_state_bytes / gib:.1f} GiB, activations "
                f"{activations / gib:.1f} GiB) "
                f"but the KV cache of {inst.name} ({group.hardware} tp={group.tp}) has only "
                f"{inst.kv.capacity * inst.kv.block_size * kv_token_bytes / gib:.1f} GiB: {', '.join(tips)}, or "
                f"raise {label('instances', index, 'tp')}")
        inst.kv.capacity -= blocks
        inst.stats.kv_capacity_blocks = inst.kv.capacity
        self.kv_blocks_reserved += blocks
        return Lane(inst, reserved, buffer, record_bytes_per_token=record, held_bytes_per_token=held)

    # --- feedback ----------------------------------------------------------------------------------
    def chosen(self, request_id: int) -> bool:
        """Whether the request gets feedback (evenly, `feedback_share` of the request ids)."""
        return math.floor((request_id + 1) * self.share) > math.floor(request_id * self.share)

    def feedback(self, req: SimRequest) -> None:
        """A request finished: if chosen, its sample joins the queue of the instance that served it."""
        if not self.chosen(req.id):
            return
        lane = self.lanes[req.last_instance]
        recording = lane.recorded.pop(req.id, None)
        tokens = req.prompt + (req.output if self.config.sample == "prompt+answer" else 0)
        tokens = min(tokens, self.budget)  # a sample longer than a batch is truncated to it
        got, held = (recording.tokens, recording.held_bytes) if recording is not None else (0, 0.0)
        lane.queue.append(Sample(req.id, tokens, min(got, tokens), held))
        lane.queued_tokens += tokens
        self.samples += 1
        if (self.sm_share is not None or self.separate) and not lane.training:
            self._start(lane)

    def _take(self, lane: Lane) -> list[Sample] | None:
        """The next batch (the queued samples that fit one, FIFO), or None when fewer tokens are queued."""
        if lane.queued_tokens < self.budget:
            return None
        batch, total = [], 0
        while lane.queue and total + lane.queue[0].tokens <= self.budget:
            sample = lane.queue.popleft()
            batch.append(sample)
            total += sample.tokens
        lane.queued_tokens -= total
        return batch

    # --- training steps ----------------------------------------------------------------------------
    def take_turn(self, inst: Instance) -> bool:
        """Time-slice, at a serving iteration boundary: run a training step now (True) or let serving go.
        With both waiting, the turns alternate (one serving iteration or decode run, one training step)."""
        if self.sm_share is not None or self.separate:
            return False
        lane = self.lanes[inst.index]
        serving = bool(inst.waiting or inst.prefilling or inst.running.n)
        if lane.queued_tokens < self.budget or (lane.trained_last and serving):
            lane.trained_last = False
            return False
        duration = self._start(lane)
        if serving:
            self.serving_lost_s += duration
        lane.trained_last = True
        return True

    def _start(self, lane: Lane) -> float:
        """Launch the lane's next training step if a batch is ready; returns its duration (0: none)."""
        batch = self._take(lane)
        if batch is None:
            return 0.0
        inst = lane.inst
        total = sum(s.tokens for s in batch)
        seqs = len(batch)
        reused = sum(s.recorded for s in batch) if self.recording else 0
        # tokens serving did not record: the trainer's own forward of their layers, no reload (perf/training.py)
        step = self._cost(inst, seqs, math.ceil(total / seqs), self.reuse,
                          reused / total if self.recording else 1.0)
        duration = step.step_s
        if self.sm_share is not None:
            duration /= self.sm_share
        lane.training = True
        self.steps += 1
        self.trained_tokens += total
        self.reused_tokens += reused
        self.trained_samples += seqs
        self.busy_s += duration
        self.forward_s += step.forward_s
        self.backward_s += step.backward_s
        self.optimizer_s += step.optimizer_s
        self.reload_s += step.reload_s
        # resident beside the buffer (which holds the batch's recordings and other requests'): the step's activations
        # less its own recordings already counted there
        own = min(step.held_bytes, sum(s.held_bytes for s in batch))
        lane.step_bytes = step.peak_activation_bytes - own
        self._resident(lane)
        if self.trained_ids is not None:
            for s in batch:
                if s.id in self.trained_ids:
                    raise AssertionError(f"feedback sample {s.id} trained twice")
                self.trained_ids.add(s.id)
        self.loop.at(self.loop.now + duration, self._end, lane, batch)
        if self.sm_share is not None:
            inst.poke()  # serving's next iteration runs on the remaining SMs
        return duration

    def _resident(self, lane: Lane) -> None:
        """The activation bytes on the lane's GPU now (the buffer's recordings and the step in flight's others) into
        the peak."""
        self.peak_activation_bytes = max(self.peak_activation_bytes, lane.held_bytes + lane.step_bytes)

    def _end(self, lane: Lane, batch: list[Sample]) -> None:
        lane.training = False
        lane.step_bytes = 0.0
        lane.held_bytes -= sum(s.held_bytes for s in batch)  # keep: the batch's recordings are consumed
        self.last_end_s = self.loop.now
        if self.separate:
            self._start(lane)
            return
        if self.sm_share is None:
            lane.inst._step()  # the GPU goes back to serving (or to the next step)
            return
        lane.inst.poke()
        self._start(lane)

    # --- hooks from the instance ---------------------------------------------------------------------
    def prefill_time(self, inst: Instance, chunks: list, time_s: float) -> float:
        """An iteration of `time_s` launched on `inst` with prefill `chunks` [(request, tokens)]: plus the writes
        that record the chosen requests' prompt activations, and slower while an SM-partitioned trainer runs."""
        lane = self.lanes[inst.index]
        if self.recording and chunks:
            tokens = 0
            for req, take in chunks:
                if not self.chosen(req.id):
                    continue
                if req.id not in lane.recorded:  # its first chunk: room for the prompt it computes (keep: on the GPU)
                    need = (req.prompt - min(req.prefilled, req.prompt)) * lane.held_bytes_per_token
                    if need and lane.held_bytes + need > lane.buffer_bytes:
                        lane.recorded[req.id] = None
                        self.skipped += 1
                        continue
                    lane.held_bytes += need
                    self.peak_held_bytes = max(self.peak_held_bytes, lane.held_bytes)
                    self._resident(lane)  # beside a step in flight (sm-partition) too
                    lane.recorded[req.id] = Recording(req.prefilled, req.prefilled, held_bytes=need)
                recording = lane.recorded[req.id]
                if recording is None:
                    continue
                # the chunk's prompt positions not recorded yet (a re-prefill after preemption computes them again)
                first, last = req.prefilled, min(req.prefilled + take, req.prompt)
                new = max(0, min(last, recording.start) - first) + max(0, last - max(first, recording.end))
                if new > 0:
                    tokens += new
                    recording.tokens += new
                    recording.start, recording.end = min(recording.start, first), max(recording.end, last)
            if tokens:
                nbytes = tokens * lane.record_bytes_per_token  # one GPU's: each TP rank records its own
                hw = inst.cost.hw
                extra = nbytes / (hw.memory_bandwidth_bytes_per_s * inst.cost.eff.memory_efficiency_max)
                time_s += extra
                self.recording_s += extra
                self.recorded_bytes += nbytes * inst.cost.tp
                if self.reuse == "offload":  # the copy to host of what the GPU does not keep overlaps serving (copy
                    # engine); its link time
                    offloaded = tokens * (lane.record_bytes_per_token - lane.held_bytes_per_token)
                    self.record_link_s += offloaded / self._host_bandwidth(inst)
        if self.sm_share is not None and lane.training:
            slowed = time_s / (1.0 - self.sm_share)
            self.serving_lost_s += slowed - time_s
            return slowed
        return time_s

    def run_latencies(self, inst: Instance, latencies: np.ndarray) -> np.ndarray:
        """A decode run's per-iteration latencies, slower while an SM-partitioned trainer runs."""
        if self.sm_share is None or not self.lanes[inst.index].training:
            return latencies
        slowed = latencies / (1.0 - self.sm_share)
        self.serving_lost_s += float(slowed.sum() - latencies.sum())
        return slowed

    # --- the end -------------------------------------------------------------------------------------
    def finalize(self) -> None:
        """The trainer's figures into the cluster's policy statistics (SimResult.policy)."""
        if self.cluster.check and any(lane.training for lane in self.lanes.values()):
            raise AssertionError("online_training: a training step still in flight at the end")
        c = self.config
        step_s = self.forward_s + self.backward_s + self.optimizer_s + self.reload_s
        weight_state = self.weight_state_bytes
        self.cluster.policy_stats["online_training"] = {
            "method": c.method, "lora_rank": c.lora_rank if c.method == "lora" else None, "reuse": c.reuse,
            "keep_layers": self.keep_layers if c.reuse == "offload" else None, "sharing": c.sharing,
            "trainer_sm_share": self.sm_share,
            "feedback_share": c.feedback_share, "sample": c.sample, "train_batch_tokens": self.budget,
            "host_link": c.host_link, "placement": c.placement,
            "samples": self.samples, "samples_trained": self.trained_samples,
            "samples_untrained": sum(len(lane.queue) for lane in self.lanes.values()),
            "recording_skipped": self.skipped, "steps": self.steps, "trained_tokens": self.trained_tokens,
            "reused_tokens": self.reused_tokens, "trainer_busy_s": self.busy_s,
            # training tokens per second of the trainer's own time (its capacity), and per simulated second
            "training_tokens_per_trainer_s": self.trained_tokens / self.busy_s if self.busy_s else 0.0,
            "training_tokens_per_s": self.trained_tokens / self.loop.now if self.loop.now > 0 else 0.0,
            "step_s": {"forward": self.forward_s, "backward": self.backward_s,
                       "optimizer": self.optimizer_s, "reload": self.reload_s},
            "forward_share": self.forward_s / step_s if step_s else 0.0,
            # per GPU: the trained parameters' state plus the most activations resident at once (the buffer's
            # recordings and the step in flight's others: its head's, its recomputed tokens')
            "weight_state_bytes": weight_state, "peak_activation_bytes": self.peak_activation_bytes,
            "peak_training_bytes": weight_state + self.peak_activation_bytes,
            "reserved_bytes": next(iter(self.lanes.values())).reserved_bytes,
            # what a step held beyond the reservation (the activations of tokens it recomputed: answers fed back,
            # recordings skipped); on a GPU such a step would not fit beside the KV cache
            "peak_over_reserved_bytes": 0.0 if self.separate else max(
                0.0, weight_state + self.peak_activation_bytes - next(iter(self.lanes.values())).reserved_bytes),
            "kv_blocks_reserved": self.kv_blocks_reserved,
            "recorded_bytes": self.recorded_bytes, "recording_s": self.recording_s,
            # offload: the host link's busy share copying recordings (per GPU, over the simulated time)
            "record_link_utilization": self.record_link_s / len(self.lanes) / self.loop.now if self.loop.now else 0.0,
            "serving_time_lost_s": self.serving_lost_s + self.recording_s}
