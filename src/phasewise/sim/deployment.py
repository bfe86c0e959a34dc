"""Deployments: groups of instances (TP x PP of one hardware type, with a role), a router, a KV link.

YAML form (same fields as the CLI flags):

    model: meta-llama/Llama-3.1-8B
    router: least_outstanding        # round_robin | least_outstanding | kv_aware
    kv_link: nvlink                  # nvlink | pcie | rdma (prefill -> decode KV transfer)
    instances:
      - {role: prefill, hardware: h100-sxm, tp: 1, replicas: 1}
      - {role: decode, hardware: h100-sxm, tp: 1, replicas: 1, max_batch: 256}
    speculative: {draft_tokens: 4, acceptance: 0.7, draft: mtp}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from phasewise.errors import PhasewiseError, pydantic_message
from phasewise.specs.catalog import read_user_file


class SpecDecode(BaseModel):
    """Speculative decoding: `draft_tokens` proposals per step, each accepted with probability
    `acceptance` (i.i.d.), verified in one multi-token decode step of the target model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    draft_tokens: int = Field(default=4, ge=1, le=16)
    acceptance: float = Field(default=0.7, ge=0, lt=1)
    draft: str = "mtp"  # 'mtp' (one extra decoder layer + LM head per draft token) or a draft model id

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens a verify step emits: accepted drafts + the bonus token."""
        a, k = self.acceptance, self.draft_tokens
        return (1 - a ** (k + 1)) / (1 - a)


class InstanceGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["collocated", "prefill", "decode"] = "collocated"
    model: str | None = None  # defaults to the deployment's model
    hardware: str = "h100-sxm"
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)
    precision: str = "bf16"
    kv_dtype: str | None = None
    engine: str = "vllm"
    scheduler: Literal["vllm", "sarathi"] = "vllm"
    chunk_size: int = Field(default=512, ge=16)  # sarathi token budget per iteration
    max_batch: int = Field(default=256, ge=1)  # max sequences in an iteration (vLLM max_num_seqs)
    max_batched_tokens: int = Field(default=8192, ge=16)  # prefill-first token budget (max_num_batched_tokens)
    memory_fraction: float = Field(default=0.9, gt=0, le=1)
    block_size: int = Field(default=16, ge=1)
    # greedy: admit when the prompt's blocks fit, preempt (recompute) when decodes run out (vLLM);
    # reserve: admit only when prompt + all output blocks fit, never evict (TensorRT-LLM GUARANTEED_NO_EVICT)
    kv_admission: Literal["greedy", "reserve"] = "greedy"

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas


class Deployment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "meta-llama/Llama-3.1-8B"
    instances: list[InstanceGroup] = Field(min_length=1)
    router: Literal["round_robin", "least_outstanding", "kv_aware"] = "least_outstanding"
    kv_link: Literal["nvlink", "pcie", "rdma"] = "nvlink"
    speculative: SpecDecode | None = None

    @model_validator(mode="after")
    def _roles(self) -> Deployment:
        roles = {g.role for g in self.instances}
        if "prefill" in roles and "decode" not in roles:
            raise ValueError("a disaggregated deployment needs at least one decode instance (role: decode)")
        if "decode" in roles and "prefill" not in roles:
            raise ValueError("a disaggregated deployment needs at least one prefill instance (role: prefill)")
        if "collocated" in roles and len(roles) > 1:
            raise ValueError("mix of collocated and prefill/decode roles is not supported; use one or the other")
        return self

    @property
    def gpus(self) -> int:
        return sum(g.gpus for g in self.instances)

    @property
    def disaggregated(self) -> bool:
        return any(g.role == "prefill" for g in self.instances)


def load_deployment(path: str) -> Deployment:
    data = read_user_file(path, "deployment")
    return build_deployment(data, f"deployment '{path}'")


def build_deployment(data: dict, where: str = "deployment") -> Deployment:
    try:
        return Deployment(**data)
    except ValidationError as exc:
        raise pydantic_message(where, exc) from None
    except TypeError as exc:
        raise PhasewiseError(f"{where}: {exc}") from None


def collocated(model: str, hardware: str, tp: int = 1, pp: int = 1, replicas: int = 1, **kw) -> Deployment:
    return build_deployment({"model": model, "instances": [
        dict(role="collocated", hardware=hardware, tp=tp, pp=pp, replicas=replicas, **kw)]})


def disaggregated(model: str, hardware: str, prefill_workers: int, decode_workers: int, prefill_tp: int = 1,
                  decode_tp: int = 1, kv_link: str = "nvlink", **kw) -> Deployment:
    if decode_workers < 1:
        raise PhasewiseError("--decode-workers must be >= 1 in a disaggregated deployment")
    if prefill_workers < 1:
        raise PhasewiseError("--prefill-workers must be >= 1 in a disaggregated deployment")
    return build_deployment({"model": model, "kv_link": kv_link, "instances": [
        dict(role="prefill", hardware=hardware, tp=prefill_tp, replicas=prefill_workers, **kw),
        dict(role="decode", hardware=hardware, tp=decode_tp, replicas=decode_workers, **kw)]})
