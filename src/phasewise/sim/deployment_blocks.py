"""A deployment's optional blocks, each a pydantic model a deployment file (and the flags) sets: speculative
decoding, priority pools (Ascendra), attention offload (Adrenaline), online training (Alchemist) and disaggregated
vision encoders. The deployment: sim/deployment.py; its groups: sim/instance_group.py; its rules: its bases."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from phasewise.errors import PhasewiseError
from phasewise.sim.online_training import GpuSharing, HostLink
from phasewise.specs.numbers_not_booleans import NumbersNotBooleans

MAX_REPLICAS = 10_000  # instances in one group at most (InstanceGroup.replicas, EncodeWorkers.replicas)


class SpecDecode(NumbersNotBooleans):
    """Speculative decoding: `draft_tokens` proposals per step, each accepted with probability
    `acceptance` (i.i.d.), verified in one multi-token decode step of the target model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # required, as simulate's --spec-tokens is: the engines have no one default (vLLM's speculative_config needs
    # num_speculative_tokens for a draft model, TensorRT-LLM's max_draft_len is required, SGLang picks
    # speculative_num_steps per model architecture), so a deployment file states it (plan --spec searches with its
    # own documented default, plan/options.py PlanOptions.spec_tokens)
    draft_tokens: int = Field(ge=1, le=16)
    acceptance: float = Field(default=0.7, ge=0, lt=1, allow_inf_nan=False)
    draft: str = "mtp"  # 'mtp' (one extra decoder layer + LM head per draft token) or a draft model id

    @model_validator(mode="before")
    @classmethod
    def _draft_tokens_given(cls, data):
        if isinstance(data, dict) and "draft_tokens" not in data:
            raise ValueError("draft_tokens is required: the draft tokens per step, 1 to 16 (simulate's --spec-tokens; "
                             "the engines have no common default)")
        return data

    @field_validator("draft")
    @classmethod
    def _draft(cls, value: str) -> str:
        """'mtp' in any case, else a model this tool loads (a catalog name or a config.json path)."""
        if value.strip().lower() == "mtp":
            return "mtp"
        from phasewise.specs import load_model

        try:
            load_model(value)
        except PhasewiseError as exc:
            raise ValueError(f"'{value}' is neither mtp (the model's own multi-token-prediction layers) nor a draft "
                             f"model this tool knows: give mtp or a draft model id ({exc})") from None
        return value

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens a verify step emits: accepted drafts + the bonus token."""
        a, k = self.acceptance, self.draft_tokens
        return (1 - a ** (k + 1)) / (1 - a)


PositiveMs = Annotated[float, Field(gt=0)]  # an SLO in ms (.inf: none)


class PriorityPools(NumbersNotBooleans):
    """Priority pools with proactive offload (Ascendra): arrivals go to the low-priority (`pool: lp`)
    instances, which serve for throughput; a controller predicts, with the instances' own cost model,
    each waiting or decoding request's TTFT/TPOT against its deadline and moves those predicted to miss
    to the high-priority (`pool: hp`) instances before they miss (sim/priority_pools.py).
    SLOs: per request class (the workload's priority, 0 first) from `class_slo_ms`, else `slo_ttft_ms` /
    `slo_tpot_ms`, else the run's SLOs (--slo-ttft-ms / --slo-tpot-ms)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slo_ttft_ms: float | None = Field(default=None, gt=0)
    slo_tpot_ms: float | None = Field(default=None, gt=0)
    # [(ttft_ms, tpot_ms)] by request class, each > 0 as slo_ttft_ms / slo_tpot_ms are (.inf: none in that dimension)
    class_slo_ms: list[tuple[PositiveMs, PositiveMs]] | None = Field(default=None, min_length=1)
    # offload when predicted slack < this margin
    slack_margin_ms: float = Field(default=300.0, ge=0, allow_inf_nan=False)
    migration: Literal["auto", "transfer", "recompute"] = "auto"  # how a decoding request moves
    # an LP instance re-predicts at most this often
    check_interval_ms: float = Field(default=200.0, ge=0, allow_inf_nan=False)


class AttentionOffload(NumbersNotBooleans):
    """Adrenaline's attention offload (disaggregated deployments): the decode attention of extra requests runs
    on a prefill instance, which keeps their KV in its HBM; the decode batch grows from its local M to M + N.
    mode auto: a load-aware controller picks N within the TPOT SLO, the prefill GPU's free HBM, the overlap
    of the exchange with the decode step, and the prefill's load and TTFT SLO (0 when the prefill saturates);
    fixed: at most `requests` offloaded per decode instance; off: none (the plain deployment).
    sm_share: the prefill GPU's SM share the offloaded attention gets (None: what keeps it bandwidth-bound).
    SLOs: `tpot_slo_ms` / `ttft_slo_ms`, else the run's (--slo-tpot-ms / --slo-ttft-ms).
    (sim/attention_offload.py; cost of a step: perf/attention_offload.py)"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto", "fixed", "off"] = "auto"
    requests: int | None = Field(default=None, ge=0)  # fixed: offloaded requests per decode instance
    sm_share: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    # share of the prefill KV kept for prompts
    prefill_kv_headroom: float = Field(default=0.1, ge=0, lt=1, allow_inf_nan=False)
    # auto: prefill busy share, slowdown included
    max_prefill_utilization: float = Field(default=0.8, gt=0, le=1, allow_inf_nan=False)
    tpot_slo_ms: float | None = Field(default=None, gt=0)
    ttft_slo_ms: float | None = Field(default=None, gt=0)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_off(cls, value):
        """A bare `mode: off` is mode off: YAML 1.1 (users' files, specs/reading.py) reads off (and no, false) as
        false. The one Literal of a deployment file whose values YAML 1.1 reads as a boolean."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _requests(self) -> AttentionOffload:
        if self.mode == "fixed" and self.requests is None:
            raise ValueError("attention_offload mode fixed needs `requests` (offloaded requests per decode instance)")
        if self.mode != "fixed" and self.requests is not None:
            raise ValueError(f"attention_offload `requests` applies to mode fixed (mode is {self.mode})")
        return self


class OnlineTraining(NumbersNotBooleans):
    """A trainer colocated with serving on every (collocated) instance (online continual learning; Alchemist when
    `reuse` is keep or offload). Served requests chosen for feedback (`feedback_share` of them) become training
    samples (their prompt, or prompt + answer) queued on the instance that served them; each `train_batch_tokens`
    of samples is one training step (forward + backward + optimizer, perf/training.py) of `method` (full or LoRA of
    `lora_rank`). reuse: recompute (the trainer runs its own forward), keep (the activations serving's prefill
    recorded stay on the GPU and are reused), offload (recorded to host memory over `host_link`, reloaded in
    backward order; `keep_layers` of them stay on the GPU). sharing: time-slice (a step holds the GPU between
    serving iterations) or sm-partition (the trainer holds `trainer_sm_share` of the SMs while it runs).
    placement separate: the trainer runs on a GPU of its own (the paper's "separate training cluster"), serving
    pays only for recording. (sim/online_training.py)"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["full", "lora"] = "full"
    lora_rank: int = Field(default=16, ge=1)  # assumed: a common LoRA rank (Hu et al. 2021 use 1-64)
    reuse: Literal["recompute", "keep", "offload"] = "recompute"
    # offload: layers whose recordings stay on the GPU (hedging; None: the fewest that hide the reload behind the
    # backward, sim/online_training.py)
    keep_layers: int | None = Field(default=None, ge=0)
    # assumed: one served request in ten gets feedback (ratings are sparse; no public rate)
    feedback_share: float = Field(default=0.1, gt=0, le=1, allow_inf_nan=False)
    sample: Literal["prompt", "prompt+answer"] = "prompt+answer"  # the tokens a feedback sample trains on
    train_batch_tokens: int = Field(default=8192, ge=1)  # assumed: a small online batch (PAPERS.md: "small batches")
    sharing: GpuSharing = "time-slice"
    # sm-partition (default 0.3, assumed)
    trainer_sm_share: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    host_link: HostLink = "pcie"  # offload: the chip's host link, or NVLink to a peer's memory
    # keep: GPU memory for recordings, in batches. Assumed: the batch in training plus half a batch recorded meanwhile
    record_buffer_batches: float = Field(default=1.5, gt=0, allow_inf_nan=False)
    placement: Literal["colocated", "separate"] = "colocated"

    @model_validator(mode="after")
    def _sharing(self) -> OnlineTraining:
        if self.trainer_sm_share is not None and self.sharing != "sm-partition":
            raise ValueError("online_training trainer_sm_share applies to sharing sm-partition")
        if self.keep_layers is not None and self.reuse != "offload":
            raise ValueError(f"online_training keep_layers applies to reuse offload (reuse is {self.reuse})")
        # given off its default, as the flags refuse --host-link and --lora-rank (sim/online_training.py
        # training_block); a default written out (a dumped deployment read back) changes nothing and is kept
        defaults = type(self).model_fields
        if self.host_link != defaults["host_link"].default and self.reuse != "offload":
            raise ValueError(f"online_training host_link applies to reuse offload, the link recordings are offloaded "
                             f"over (reuse is {self.reuse})")
        if self.lora_rank != defaults["lora_rank"].default and self.method != "lora":
            raise ValueError(f"online_training lora_rank applies to method lora (method is {self.method})")
        if self.placement == "separate" and (self.reuse == "keep" or self.sharing != "time-slice"):
            raise ValueError("online_training placement separate takes reuse recompute or offload (keep holds the "
                             "recordings on the serving GPU) and no GPU sharing")
        return self


class EncodeWorkers(NumbersNotBooleans):
    """Disaggregated vision encoders (encode / prefill / decode serving, as vLLM's disaggregated encoder, SGLang's
    encoder-only servers and Dynamo's multimodal encode workers run them): `replicas` workers of `tp` GPUs of
    `hardware` run the model's vision encoder over the images of the requests that carry them, in BF16, each
    forward batching its queue's requests (whole, in arrival order) up to `max_batch_tokens` of image tokens;
    a request's embeddings (its image tokens x the encoder's embedding width, BF16) then cross `link` to the
    instance that prefills it, which runs no encoder for it. Requests without images go straight to the language
    model's instances. (sim/encode_pool.py)"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hardware: str = "h100-sxm"
    tp: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    engine: str = "vllm"  # whose host dispatch launches the encoder's kernels (an engine preset or host profile)
    # unset: nvlink, rdma where the encoders sit on another chip than the instances they feed (Deployment._links)
    link: Literal["nvlink", "pcie", "rdma"] = "nvlink"
    # assumed: vLLM's encoder compute budget is its max_num_batched_tokens (8,192 on an H100-class server)
    max_batch_tokens: int = Field(default=8192, ge=1)

    @property
    def gpus(self) -> int:
        return self.tp * self.replicas
