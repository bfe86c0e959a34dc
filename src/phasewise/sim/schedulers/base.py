"""The scheduler seam: a policy chooses each iteration's work for one instance; the instance runs it.

A policy sees the instance's queues (`waiting`, `prefilling`, the decoding set `running`), its KV
blocks and its budgets (the engine's EngineConfig), and returns the next iteration as prefill chunks
plus whether the decoding set joins it; `None` means no prefill this step (the instance then runs
decode iterations, or idles). Admission goes through `Instance.try_admit`, preemption through
`Instance.make_room`, which asks the policy for its victim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from phasewise.sim.instance import Instance
    from phasewise.sim.request import SimRequest
    from phasewise.specs.engines import EngineConfig


@dataclass(slots=True)
class Batch:
    """One iteration's prefill work: (request, tokens of its prompt this step), and whether the
    decoding set runs in the same iteration (mixed batch) or waits (prefill-only iteration)."""

    chunks: list[tuple[SimRequest, int]] = field(default_factory=list)
    with_decodes: bool = True


class Scheduler:
    """Base policy: FCFS admission of waiting prompts into a token budget, recompute preemption of the
    newest request. Subclasses override `next_batch`, and `victim`/`admission_extra_blocks` where the
    engine differs."""

    __slots__ = ("config",)
    reorders = False  # whether waiting prompts are served out of arrival order (priority pools predict by it)
    # where a preempted request waits again: the head of the queue (vLLM's prepend_request) or its tail (SGLang's
    # _extend_requests_to_queue of the retracted requests)
    requeue_at_head = True

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def next_batch(self, inst: Instance) -> Batch | None:
        raise NotImplementedError

    def refusal(self, prompt_tokens: int) -> str | None:
        """Why the engine's server refuses a new request of `prompt_tokens` on arrival for this policy's limits (a
        metrics.REJECT_REASONS key); None: it may run (every policy but TensorRT-LLM's, schedulers/trtllm.py)."""
        return None

    def admission_extra_blocks(self, inst: Instance, req: SimRequest) -> int:
        """Blocks that must stay free beyond the prompt's own for `req` to be admitted (SGLang)."""
        return 0

    def victim(self, inst: Instance) -> int:
        """Index in the decoding set of the request to preempt: the latest arrival, among requests that arrived
        together (a closed-loop client's first burst) the latest admitted (vLLM V0's FCFS: its running queue sorted
        by arrival, stably, and popped from the tail)."""
        run = inst.running
        return int(np.lexsort((run.admitted[: run.n], run.arrival[: run.n]))[-1])

    def on_preempt(self, inst: Instance) -> None:
        """Called after a preemption or retraction."""

    def on_idle(self, inst: Instance) -> None:
        """Called when the instance has nothing left to run and goes idle."""

    def steps_before_next_look(self, inst: Instance) -> int | None:
        """After next_batch held the waiting prompts back: the decode iterations after which it must be asked
        again (the instance ends its decode run there). None: when a request arrives or finishes, as usual."""
        return None

    def order(self, waiting) -> None:
        """Put the waiting queue in the order the policy admits from (FCFS: arrival order, as it stands)."""

    def mixed_batch(self, inst: Instance, admit: bool = True) -> Batch | None:
        """The decoding set plus prefill chunks within the token budget: partial prefills first, then
        (if `admit`) waiting prompts, chunked or whole as the engine does (vLLM V1, TensorRT-LLM, Sarathi); with
        attention DP the ranks' batches together (EngineConfig.prefill_rank_tokens)."""
        cfg = self.config
        batch = Batch(with_decodes=inst.running.n > 0)
        decode_tokens = inst.running.n * inst.decode_new_tokens
        budget = cfg.token_budget - decode_tokens
        cap = cfg.prefill_rank_tokens
        if cap is not None:  # attention DP: a prompt's chunk within one rank's budget less that rank's decodes: the
            # engines put a new prompt on a least-loaded rank, which holds floor(decodes / ranks) of balanced decodes
            # (vLLM's DPLBAsyncMPClient.get_core_engine_for_request: the lowest waiting x 4 + running; TensorRT-LLM's
            # _balance_requests_across_ranks: the fewest tokens among ranks below ceil((active + new) / ranks))
            cap = max(1, cap - decode_tokens // cfg.attention_dp)
        budget = self.continue_prefills(inst, batch, budget, cap)
        if admit:
            self.admit_waiting(inst, batch, budget, cfg.chunked_prefill, cfg.partial_prefills, prompt_cap=cap)
        return batch if batch.chunks else None

    # --- helpers the policies share -------------------------------------------------------------
    def continue_prefills(self, inst: Instance, batch: Batch, budget: int, prompt_cap: int | None = None) -> int:
        """Partial prefills already admitted get the budget first (oldest first), each at most `prompt_cap` tokens
        (None: no cap of its own); returns what is left."""
        now = inst.loop.now
        for req in inst.prefilling:
            if budget <= 0:
                break
            if req.kv_ready_s > now:  # its cached prefix still on its way back from host memory
                continue
            take = min(budget, req.prefill_target - req.prefilled)
            if prompt_cap is not None:
                take = min(take, prompt_cap)
            batch.chunks.append((req, take))
            budget -= take
        return budget

    def admit_waiting(self, inst: Instance, batch: Batch, budget: int, chunked: bool, max_partial: int,
                      input_budget: int | None = None, prompt_cap: int | None = None) -> int:
        """FCFS: admit waiting prompts while seats, KV blocks and the budget allow. With chunking a
        prompt is cut to the budget left (at most `max_partial` prompts part-way at once); without it a
        prompt must fit whole in what is left, except that one longer than the whole budget runs as the
        step's only prompt, as if the budget were raised to fit it: trtllm-bench raises max_num_tokens to the
        longest prompt plus max_batch_size, and vLLM V0's budget without chunking is max(max_model_len, 2048)
        (the vllm-v0 preset assumes 8192); trtllm-serve refuses such a prompt on arrival (refusal). `input_budget`
        (SGLang's max_prefill_tokens left): a prompt whose tokens reach what is left of it waits unless it
        is the batch's first, and admission stops once it is spent (PrefillAdder.add_one_req / budget_state).
        `prompt_cap` (chunked only): one prompt's tokens this step at most (with attention DP, one rank's budget: a
        prompt lives on one rank); None: the budget left."""
        while budget > 0 and inst.waiting and (input_budget is None or input_budget > 0):
            req = inst.waiting[0]
            need = req.prefill_target
            if input_budget is not None and batch.chunks and need - req.prefilled >= input_budget:
                break
            room = budget if prompt_cap is None or not chunked else min(budget, prompt_cap)
            if need > room:
                if chunked:
                    if self.partial_count(batch) >= max_partial:
                        break
                elif batch.chunks or need <= self.config.token_budget:
                    break  # waits for a step with room (a prompt longer than any budget runs without others)
            if not inst.try_admit(req, self.admission_extra_blocks(inst, req)):
                break
            inst.waiting.popleft()
            inst.prefilling.append(req)
            if req.kv_ready_s > inst.loop.now:  # admitted, its cached prefix loading from host memory: no chunk yet
                continue
            need -= req.prefilled  # a prefix-cache hit: its prefill starts after the cached tokens
            take = min(room, need) if chunked else need
            batch.chunks.append((req, take))
            budget -= take
            if input_budget is not None:
                input_budget -= take
        return budget

    @staticmethod
    def partial_count(batch: Batch) -> int:
        """Prompts this batch leaves part-way through their prefill."""
        return sum(1 for req, take in batch.chunks if req.prefilled + take < req.prefill_target)
