"""Which images an iteration encodes (a part of sim/instance.py's iteration launch): the vision encoder runs over the
images whose prompt tokens the iteration's prefill chunks first reach, all of them in one batched forward."""

from __future__ import annotations

from phasewise.perf import CostModel
from phasewise.perf.vision import EncoderCost
from phasewise.sim.metrics import InstanceStats
from phasewise.sim.request import SimRequest


def encode_images(cost: CostModel, stats: InstanceStats, chunks: list[tuple[SimRequest, int]]) -> EncoderCost | None:
    """The vision encoder's forward over the images whose prompt tokens this iteration's chunks reach, as vLLM
    V1 (`_try_schedule_encoder_inputs`) and SGLang (`_get_chunked_prefill_embedding`) schedule them: an image
    is encoded with the first chunk that overlaps its tokens, one that lies wholly in a cached prefix not at
    all; all of them batched into one forward (perf/vision.py). None when there are none."""
    patches: list[int] = []
    for req, take in chunks:
        count = len(req.image_patches)
        if req.images_done >= count or req.images_remote:
            continue
        start = max(req.prompt - sum(req.image_tokens), 0)  # the images follow the text
        for tokens in req.image_tokens[:req.images_done]:
            start += tokens
        end = req.prefilled + take
        while req.images_done < count and start < end:
            tokens = req.image_tokens[req.images_done]
            if start + tokens > req.prefilled:  # not wholly in a cached prefix
                patches.append(req.image_patches[req.images_done])
            start += tokens
            req.images_done += 1
    if not patches:
        return None
    encoded = cost.encoder(tuple(patches))
    stats.images_encoded += len(patches)
    stats.encoder_busy_s += encoded.time_s
    return encoded
