"""A strategy's analytic capacity (capacity_estimate: the goodput search's bracket, the planner's pre-screen) and the
requests its instances seat at once (seats: verification's window), from the simulator's own cost path."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from phasewise.perf import BatchShape
from phasewise.plan.strategies import Strategy
from phasewise.sim.deployment import Deployment, build_deployment
from phasewise.sim.draft_cost import draft_time_s
from phasewise.sim.encode_pool import encoder_cost
from phasewise.sim.simulate import build_group

if TYPE_CHECKING:
    from phasewise.plan.goodput import WorkloadSpec


def seats(dep: Deployment, work: WorkloadSpec) -> int:
    """The requests a deployment's (collocated or decode) instances hold at once on `work`'s mean lengths: each
    one's batch (decode_batch), times its replicas. The time to fill them, seats / rate, is the E2E a request takes
    once they are full (Little's law): verification's window is a multiple of it (windows.verify_window_s)."""
    prompt, osl = work.mean_prompt, work.mean_output
    total = 0
    for index, group in enumerate(dep.instances):
        if group.role == "prefill":
            continue
        _, kv_tokens, _, engine = build_group(dep, group, index)
        total += group.replicas * decode_batch(engine.max_seqs, kv_tokens, prompt, osl)
    return max(total, 1)


def decode_batch(max_seqs: int, kv_tokens: float, prompt: float, osl: float) -> int:
    """An instance's batch at mean lengths: its sequence cap, or the requests its KV holds at half their output."""
    return max(1, min(max_seqs, int(kv_tokens / (prompt + osl / 2))))


def capacity_estimate(strategy: Strategy, work: WorkloadSpec) -> float:
    """Requests/s the whole deployment can process at most (a bisection bracket), from the simulator's own
    cost path: each group's cost model, KV capacity, draft model and engine as `simulate` builds them; a
    prompt's prefill (one on each attention-DP rank, side by side) and a decode step at the batch the KV and the
    engine's sequence cap allow, timed by the slowest pipeline stage (PP micro-batches overlap), speculative steps
    emitting their expected tokens; where a group caches prefixes, its prefill skips the share of prompt tokens an
    unbounded cache would serve."""
    dep = build_deployment(strategy.deployment, f"strategy '{strategy.name}'")
    isl, osl = work.mean_prompt, work.mean_output
    images = work.images
    spec = dep.speculative
    tokens_per_step = spec.tokens_per_step if spec else 1.0
    step_tokens = spec.draft_tokens + 1 if spec else 1
    prefill_rps = decode_rps = 0.0
    encode_rps = math.inf
    if images is not None and dep.encoders is not None:  # disaggregated encoders: their forwards, not the prefill's
        encode_s = image_load(encoder_cost(dep), work)[1]
        encode_rps = dep.encoders.replicas / encode_s if encode_s > 0 else math.inf
    for index, group in enumerate(dep.instances):
        cost, kv_tokens, draft, engine = build_group(dep, group, index)
        # a request's images: the mean prompt tokens they add and the encoder time they take (on an encode worker
        # when the deployment has them)
        image_tokens, encoder_s = image_load(cost, work) if images is not None else (0.0, 0.0)
        if dep.encoders is not None:
            encoder_s = 0.0
        prompt = isl if images is not None and images.in_prompt else isl + image_tokens
        batch = decode_batch(engine.max_seqs, kv_tokens, prompt, osl)
        context = int(prompt + osl / 2)
        caching = group.prefix_caching if group.prefix_caching is not None else engine.prefix_caching
        cached = int(isl * work.reusable_share) if caching else 0
        ranks = cost.layout.attention_dp  # they prefill their own prompts side by side
        new_tokens = max(int(prompt) - cached, 1)
        t_prefill = cost.fast(BatchShape.uniform(ranks, new_tokens, cached))[1]
        verify = BatchShape.uniform(batch, step_tokens, context)
        t_step = cost.fast(verify)[1]
        if draft is not None:  # the draft beside each verify step and over each prompt (sim/draft_cost.py)
            t_step += draft_time_s(draft, spec.draft_tokens, batch, verify.decode_pairs + verify.prefill_pairs,
                                   verify.decode_kv_tokens + verify.prefill_kv_tokens)
            t_prefill += draft_time_s(draft, spec.draft_tokens, 0, 0.0, 0.0, [(new_tokens, cached, True)] * ranks)
        per_prefill = ranks / (t_prefill + encoder_s)
        per_decode = batch * tokens_per_step / (max(osl - 1, 1.0) * t_step)
        n = group.replicas
        if group.role == "prefill":
            prefill_rps += n * per_prefill
        elif group.role == "decode":
            decode_rps += n * per_decode
        else:
            prefill_rps += n / (1.0 / per_prefill + 1.0 / per_decode)
            decode_rps = math.inf
    return min(prefill_rps, decode_rps, encode_rps)


def image_load(cost, work: WorkloadSpec) -> tuple[float, float]:
    """The mean prompt tokens a request's images add and the mean encoder time they take, by the model `cost`
    costs: `images.per_request` on `images.share` of the requests, or each request's count from the trace; a model
    without a vision encoder is a one-line error."""
    images = work.images
    geometries = images.geometries(cost.model)
    weights = images.weights
    tokens = sum(w * g.prompt_tokens for w, g in zip(weights, geometries))  # an image's mean

    def encode_s(k: int) -> float:  # k images in a request: as if all had one size, weighted over the sizes
        return sum(w * cost.encoder((g.patches,), copies=k).time_s for w, g in zip(weights, geometries))

    if images.per_request is not None:
        return images.share * images.per_request * tokens, images.share * encode_s(images.per_request)
    counts, requests = np.unique(np.asarray(work.image_counts), return_counts=True)
    share = requests / requests.sum()
    return float(share @ counts) * tokens, float(sum(p * encode_s(int(k)) for k, p in zip(counts, share) if k))
