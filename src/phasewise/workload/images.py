"""Image inputs a workload's requests carry: how many per request, their size (one, or a weighted mixture), and
which requests carry them.

A request with images has its prompt lengthened by the tokens its model's image processor makes of them
(specs/vision.py image_geometry) and runs the vision encoder over their patches when its prefill starts
(perf/vision.py). The lengths a trace or a distribution gives are the text's. A trace with a `NumImages` column
(workload/traces.py) gives each request's count; the flags then give only the images' size.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from phasewise.errors import PhasewiseError
from phasewise.specs.vision import MAX_IMAGE_SIDE_PX, ImageGeometry

MAX_IMAGES_PER_REQUEST = 64
MAX_IMAGE_SIZES = 16  # sizes in one --image-size mixture
# Which requests carry images: request i does when frac(i x GOLDEN) < share, a low-discrepancy sequence, so that
# any run of requests carries close to `share` of them, the same ones for every deployment compared
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
# Which size of a mixture image k of request i has: frac((i x MAX_IMAGES_PER_REQUEST + k + 1) x SILVER) through the
# sizes' cumulative weights, another low-discrepancy sequence (every run of images close to the weights)
SILVER = math.sqrt(2.0) - 1.0


def _size_draw(request_id, k):
    """The draw in [0, 1) that picks image k of request `request_id`'s size (ints or numpy arrays alike)."""
    return ((request_id * MAX_IMAGES_PER_REQUEST + 1 + k) * SILVER) % 1.0


@dataclass(slots=True, frozen=True)
class ImageInputs:
    per_request: int | None  # None: each request's count from its workload (a trace's NumImages column)
    sizes: tuple[tuple[int, int], ...]  # (width, height) in pixels, before the model's processor resizes them
    weights: tuple[float, ...] = (1.0,)  # each size's share of the images (summing to 1)
    share: float = 1.0  # of the requests that carry images
    # the prompt lengths (a trace's, or --isl) already count the images' tokens, as an engine's usage.prompt_tokens
    # does: they are not added, and a prompt must hold them
    in_prompt: bool = False

    def carries(self, request_id: int) -> bool:
        """Whether request `request_id` carries images (of a fixed count per request)."""
        return self.share >= 1.0 or (request_id * GOLDEN) % 1.0 < self.share

    def counts(self, requests: int, from_workload: np.ndarray | None) -> np.ndarray:
        """The images each of `requests` requests carries: the workload's own counts, or `per_request` on the
        requests `carries` picks."""
        if self.per_request is None:
            if from_workload is None or len(from_workload) != requests:
                raise PhasewiseError("--image-size without --images-per-request needs a trace with a NumImages "
                                     "column (each request's image count)")
            return np.asarray(from_workload, dtype=np.int64)
        return np.array([self.per_request if self.carries(i) else 0 for i in range(requests)], dtype=np.int64)

    def sizes_of(self, request_id: int, count: int) -> tuple[int, ...]:
        """Which of `sizes` each of request `request_id`'s `count` images has (indexes; all 0 for one size)."""
        if len(self.sizes) == 1:
            return (0,) * count
        bounds = list(accumulate(self.weights))
        last = len(bounds) - 1
        return tuple(min(bisect_right(bounds, _size_draw(request_id, k)), last) for k in range(count))

    def added_tokens(self, counts: np.ndarray, tokens_per_size: tuple[int, ...]) -> np.ndarray:
        """The prompt tokens each request's images add (`counts` of them; a size's image `tokens_per_size[s]`): the
        sizes `sizes_of` gives, computed for every image at once."""
        counts = np.asarray(counts, dtype=np.int64)
        if len(self.sizes) == 1:
            return counts * tokens_per_size[0]
        carrying = np.flatnonzero(counts)
        per = counts[carrying]
        owner = np.repeat(carrying, per)  # each image's request
        k = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)  # its place in the request
        draws = _size_draw(owner, k)
        bounds = np.fromiter(accumulate(self.weights), dtype=np.float64)
        size = np.minimum(np.searchsorted(bounds, draws, side="right"), len(bounds) - 1)
        added = np.zeros(len(counts), dtype=np.int64)
        np.add.at(added, owner, np.asarray(tokens_per_size, dtype=np.int64)[size])
        return added

    def geometries(self, model) -> tuple[ImageGeometry, ...]:
        """Each size's patches and prompt tokens as `model`'s processor makes them; a model without a vision
        encoder is a one-line error (naming the trace's column when the counts are the trace's)."""
        if self.per_request is None and model.vision is None:
            raise PhasewiseError(f"the trace's NumImages column gives requests images, but model '{model.name}' has "
                                 "no vision encoder: drop the column to replay the trace's text alone")
        return tuple(model.image_geometry(width, height) for width, height in self.sizes)

    def one_size(self, where: str) -> tuple[int, int]:
        """The one size (width, height) where a mixture does not apply (`where` names the command)."""
        if len(self.sizes) > 1:
            raise PhasewiseError(f"--image-size takes one WIDTHxHEIGHT for {where} (a mixture of sizes is for "
                                 "simulate, plan and sweep)")
        return self.sizes[0]

    def describe_sizes(self) -> str:
        if len(self.sizes) == 1:
            return "{}x{} px".format(*self.sizes[0])
        return "{" + ", ".join(f"{w}x{h} {p:.0%}" for (w, h), p in zip(self.sizes, self.weights)) + "} px"

    def describe(self) -> str:
        within = ", their tokens within the prompt lengths" if self.in_prompt else ""
        if self.per_request is None:
            return f"the trace's NumImages x {self.describe_sizes()} image(s) per request{within}"
        share = "" if self.share >= 1.0 else f" on {self.share:.0%} of the requests"
        return f"{self.per_request} x {self.describe_sizes()} image(s) per request{share}{within}"


def image_inputs(per_request: int | None, size: str | None, share: float | None,
                 trace_counts: np.ndarray | None = None, trace: str = "the trace",
                 included: bool = False) -> ImageInputs | None:
    """_image_inputs(), and with `included` (--image-tokens-included) the prompt lengths counting the images'
    tokens already (an error without images)."""
    images = _image_inputs(per_request, size, share, trace_counts, trace)
    if not included:
        return images
    if images is None:
        raise PhasewiseError("--image-tokens-included needs image inputs (--images-per-request, or a trace with a "
                             "NumImages column and --image-size): it says the prompt lengths count their tokens")
    return replace(images, in_prompt=True)


def _image_inputs(per_request: int | None, size: str | None, share: float | None,
                  trace_counts: np.ndarray | None, trace: str) -> ImageInputs | None:
    """The --images-per-request, --image-size and --image-share flags as ImageInputs (None when none is given);
    a value out of range, or a size or share without a count, is a one-line error naming the flag.
    `trace_counts`: the workload's own per-request counts (a trace's NumImages column): then --image-size alone
    gives their size, and a count or share of the flags' is an error (the trace has its own). --image-size is one
    WIDTHxHEIGHT or a mixture, WIDTHxHEIGHT[:WEIGHT] separated by commas (weights default to equal shares)."""
    if trace_counts is not None:
        for flag, value in (("--images-per-request", per_request), ("--image-share", share)):
            if value is not None:
                raise PhasewiseError(f"{flag} does not apply to {trace}: its NumImages column gives each request's "
                                     "images (--image-size gives their size)")
        if size is None:
            if np.any(trace_counts > 0):
                raise PhasewiseError(f"{trace} gives each request's image count (NumImages) but not the images' "
                                     "size: give --image-size WIDTHxHEIGHT in pixels (e.g. 1280x720)")
            return None
        return ImageInputs(None, *_sizes(size))
    if per_request is None:
        for flag, value in (("--image-size", size), ("--image-share", share)):
            if value is not None:
                raise PhasewiseError(f"{flag} needs --images-per-request N (the images each request carries)")
        return None
    if not 1 <= per_request <= MAX_IMAGES_PER_REQUEST:
        raise PhasewiseError(f"--images-per-request must be in 1..{MAX_IMAGES_PER_REQUEST} (got {per_request})")
    if size is None:
        raise PhasewiseError("--images-per-request needs --image-size WIDTHxHEIGHT in pixels (e.g. 1280x720)")
    sizes, weights = _sizes(size)
    if share is not None and not 0.0 < share <= 1.0:
        raise PhasewiseError(f"--image-share must be in (0, 1] (got {share})")
    return ImageInputs(per_request, sizes, weights, 1.0 if share is None else share)


def _sizes(text: str) -> tuple[tuple[tuple[int, int], ...], tuple[float, ...]]:
    """--image-size as (sizes, weights): WIDTHxHEIGHT, or WIDTHxHEIGHT[:WEIGHT] items separated by commas, each side
    in 1..MAX_IMAGE_SIDE_PX, each weight a number > 0 (normalised; equal when none is given)."""
    items = text.split(",")
    if len(items) > MAX_IMAGE_SIZES:
        raise PhasewiseError(f"--image-size takes at most {MAX_IMAGE_SIZES} sizes (got {len(items)})")
    sizes, weights = [], []
    for item in items:
        found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*(?::\s*([0-9.eE+-]+)\s*)?", item)
        if found is None:
            raise PhasewiseError(f"--image-size must be WIDTHxHEIGHT in pixels, e.g. 1280x720, or a mixture such as "
                                 f"1280x720:0.7,640x480:0.3 (got '{text}')")
        width, height = int(found.group(1)), int(found.group(2))
        if not (1 <= width <= MAX_IMAGE_SIDE_PX and 1 <= height <= MAX_IMAGE_SIDE_PX):
            raise PhasewiseError(f"--image-size sides must be in 1..{MAX_IMAGE_SIDE_PX:,} pixels "
                                 f"(got '{item.strip()}')")
        try:
            weight = 1.0 if found.group(3) is None else float(found.group(3))
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0):
            raise PhasewiseError(f"--image-size weights must be numbers > 0 (got '{item.strip()}')")
        sizes.append((width, height))
        weights.append(weight)
    if len(sizes) > 1 and len(set(sizes)) < len(sizes):
        raise PhasewiseError(f"--image-size names a size twice (got '{text}'): give it once with its weight")
    total = sum(weights)
    return tuple(sizes), tuple(w / total for w in weights)
