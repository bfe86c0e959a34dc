"""A speculative draft's time in one iteration of its target (draft model or MTP module): the one formula the
simulator's iterations (sim/instance.py, decode_runs.py) and the planner's capacity estimate (plan/goodput.py) both use.

The draft's first forward runs over every token the target ran: each decode step's k + 1 (the verified drafts and the
bonus token) and each prompt chunk at its context, building the draft's KV (an MTP module's too) over the prompt;
the other k - 1 forwards propose one token per sequence that drafts next (the decodes and the prompts completed).
Sources: vLLM V1 gpu_model_runner.py propose_draft_token_ids (without drafts in the batch the proposer takes
input_ids[:num_scheduled_tokens], prefill tokens included) and spec_decode/eagle.py prepare_inputs_padded (the
default padded drafter batch: "all tokens are included as inputs to the speculator, with the rejected tokens used as
padding"; draft_model.py's DraftModelProposer and the MTP proposer share that path); SGLang
speculative/eagle_worker.py forward_draft_extend ("the full hidden states to prefill the KV cache of the draft
model", STANDALONE drafts as an EAGLEWorker) and forward_draft_extend_after_decode (its CUDA graph runs
speculative_num_steps + 1 tokens per request); TensorRT-LLM _torch/speculative/model_drafter.py
_create_context_request (the draft's context phase over the target's last context chunk) and the accepted-tokens
request after a generation step.
"""

from __future__ import annotations

from collections.abc import Iterable

from phasewise.perf import BatchShape, CostModel


def draft_time_s(draft: CostModel, draft_tokens: int, decodes: int, pairs: float, kv_tokens: float,
                 chunks: Iterable[tuple[int, int, bool]] = (), causal: bool = True) -> float:
    """The draft's `draft_tokens` (k) forwards beside a target iteration with `decodes` decoding sequences whose
    verify step computes `pairs` attention pairs over `kv_tokens` KV tokens (their k + 1 new ones included: the
    target step's own sums) and prompt `chunks` (new tokens, cached tokens, whether the chunk completes its prompt)."""
    k = draft_tokens
    # the decodes' k + 1 tokens each as the target's verify step runs them (the decode kernel's class at any k, as
    # the simulator's decode shape is built; BatchShape.add would file 17 new tokens as a prefill)
    first = BatchShape(decode_seqs=decodes, decode_tokens=decodes * (k + 1), decode_pairs=pairs,
                       decode_kv_tokens=kv_tokens, logit_tokens=decodes * (k + 1))
    drafting, context = decodes, kv_tokens
    for new, cached, completes in chunks:
        first.add(new, cached, causal)
        if completes:  # a completed prompt proposes its first drafts
            drafting += 1
            context += cached + new
    time_s = draft.fast(first)[0]
    if drafting and k > 1:
        time_s += (k - 1) * draft.fast(BatchShape.uniform(drafting, 1, max(int(context / drafting), 1), causal))[0]
    return time_s
