"""Image inputs a workload's requests carry: how many per request, their size, and which requests carry them.

A request with images has its prompt lengthened by the tokens its model's image processor makes of them
(specs/vision.py image_geometry) and runs the vision encoder over their patches when its prefill starts
(perf/vision.py). The lengths a trace or a distribution gives are the text's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from phasewise.errors import PhasewiseError
from phasewise.specs.vision import MAX_IMAGE_SIDE_PX

MAX_IMAGES_PER_REQUEST = 64
# Which requests carry images: request i does when frac(i x GOLDEN) < share, a low-discrepancy sequence, so that
# any run of requests carries close to `share` of them, the same ones for every deployment compared
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(slots=True, frozen=True)
class ImageInputs:
    per_request: int
    width_px: int
    height_px: int
    share: float = 1.0  # of the requests that carry images

    def carries(self, request_id: int) -> bool:
        """Whether request `request_id` carries images."""
        return self.share >= 1.0 or (request_id * GOLDEN) % 1.0 < self.share

    def describe(self) -> str:
        share = "" if self.share >= 1.0 else f" on {self.share:.0%} of the requests"
        return f"{self.per_request} x {self.width_px}x{self.height_px} px image(s) per request{share}"


def image_inputs(per_request: int | None, size: str | None, share: float | None) -> ImageInputs | None:
    """The --images-per-request, --image-size and --image-share flags as ImageInputs (None when none is given);
    a value out of range, or a size or share without a count, is a one-line error naming the flag."""
    if per_request is None:
        for flag, value in (("--image-size", size), ("--image-share", share)):
            if value is not None:
                raise PhasewiseError(f"{flag} needs --images-per-request N (the images each request carries)")
        return None
    if not 1 <= per_request <= MAX_IMAGES_PER_REQUEST:
        raise PhasewiseError(f"--images-per-request must be in 1..{MAX_IMAGES_PER_REQUEST} (got {per_request})")
    if size is None:
        raise PhasewiseError("--images-per-request needs --image-size WIDTHxHEIGHT in pixels (e.g. 1280x720)")
    found = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
    if found is None:
        raise PhasewiseError(f"--image-size must be WIDTHxHEIGHT in pixels, e.g. 1280x720 (got '{size}')")
    width, height = int(found.group(1)), int(found.group(2))
    if not (1 <= width <= MAX_IMAGE_SIDE_PX and 1 <= height <= MAX_IMAGE_SIDE_PX):
        raise PhasewiseError(f"--image-size sides must be in 1..{MAX_IMAGE_SIDE_PX:,} pixels (got '{size}')")
    if share is not None and not 0.0 < share <= 1.0:
        raise PhasewiseError(f"--image-share must be in (0, 1] (got {share})")
    return ImageInputs(per_request, width, height, 1.0 if share is None else share)
