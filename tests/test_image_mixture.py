"""A mixture of image sizes (--image-size 1280x720:0.7,640x480:0.3): parsed and checked in one line, each image given
a size by a low-discrepancy sequence that follows the weights, every image's own tokens and patches in `simulate`,
the weighted means in `plan`'s pre-screen; `estimate` and `serve`, which take one size, refuse a mixture."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.sim.api import build
from phasewise.sim.simulate import simulate
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.workload import image_inputs

VL30 = "Qwen/Qwen3-VL-30B-A3B-Instruct"


def test_a_mixture_parses_with_its_weights_normalised():
    mixed = image_inputs(2, "1280x720:0.7, 640x480:0.3", None)
    assert mixed.sizes == ((1280, 720), (640, 480)) and mixed.weights == pytest.approx((0.7, 0.3))
    equal = image_inputs(1, "1280x720,640x480,256x256", None)
    assert equal.weights == pytest.approx((1 / 3,) * 3)
    assert image_inputs(1, "800x600", None).weights == (1.0,)
    assert mixed.describe() == "2 x {1280x720 70%, 640x480 30%} px image(s) per request"


@pytest.mark.parametrize("size, message", [
    ("1280x720:0", r"weights must be numbers > 0 \(got '1280x720:0'\)$"),
    ("1280x720:-1,640x480", r"weights must be numbers > 0"),
    ("1280x720:abc", r"must be WIDTHxHEIGHT in pixels, e.g. 1280x720, or a mixture"),
    ("1280x720:1e999,64x64", r"weights must be numbers > 0"),
    ("1280x720,1280x720:2", r"names a size twice"),
    (",".join(f"{64 + k}x64" for k in range(17)), r"at most 16 sizes \(got 17\)$"),
    ("1280x720,0x10", r"sides must be in 1\.\.100,000 pixels \(got '0x10'\)$"),
    ("1280x720,", r"must be WIDTHxHEIGHT"),
])
def test_bad_mixtures_are_one_line_errors(size, message):
    with pytest.raises(PhasewiseError, match=message):
        image_inputs(1, size, None)


def test_each_image_takes_a_size_as_the_weights_say_the_same_in_every_run():
    mixed = image_inputs(3, "1280x720:0.7,640x480:0.2,256x256:0.1", None)
    picks = np.concatenate([mixed.sizes_of(i, 3) for i in range(20_000)])
    shares = np.bincount(picks, minlength=3) / len(picks)
    assert shares == pytest.approx((0.7, 0.2, 0.1), abs=0.005)
    assert mixed.sizes_of(17, 3) == mixed.sizes_of(17, 3)
    assert len(set(mixed.sizes_of(5, 3))) > 1 or len(set(mixed.sizes_of(6, 3))) > 1  # not one size a request


def test_simulate_gives_each_image_its_own_tokens_and_patches():
    spec = build(model=VL30, hardware="h100-sxm", rate=2.0, requests=60, isl=200, osl=8, images_per_request=2,
                 image_size="1280x720:0.5,640x480:0.5")
    res = simulate(spec.deployment, spec.workload, spec.slo, images=spec.images, check_invariants=True)
    model = load_model(VL30)
    big, small = model.image_geometry(1280, 720), model.image_geometry(640, 480)  # 882 and 302 tokens
    tokens = {0: big.prompt_tokens, 1: small.prompt_tokens}
    expected = [200 + sum(tokens[s] for s in spec.images.sizes_of(i, 2)) for i in range(60)]
    assert res.prompt_tokens.tolist() == expected
    assert len(set(expected)) == 3  # two big, one of each, two small
    sizes = res.summary()["images"]["sizes"]
    assert [(s["size_px"], s["weight"], s["prompt_tokens"]) for s in sizes] == [
        ([1280, 720], 0.5, big.prompt_tokens), ([640, 480], 0.5, small.prompt_tokens)]
    assert "prompt_tokens_per_image" not in res.summary()["images"]  # no one figure for a mixture


def test_plan_weighs_the_sizes():
    from phasewise.plan.goodput import image_load, workload_spec

    work = workload_spec(None, "poisson", 300, 100, "fixed", "fixed", 0.0, 0.0, 0, images_per_request=2,
                         image_size="1280x720:3,640x480:1")
    cost = CostModel(load_model(VL30), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    big, small = (cost.model.image_geometry(*size) for size in ((1280, 720), (640, 480)))
    tokens, encoder_s = image_load(cost, work)
    assert tokens == pytest.approx(2 * (0.75 * big.prompt_tokens + 0.25 * small.prompt_tokens))
    assert encoder_s == pytest.approx(0.75 * cost.encoder((big.patches,) * 2).time_s
                                      + 0.25 * cost.encoder((small.patches,) * 2).time_s)


def test_estimate_and_serve_take_one_size(run_cli):
    code, _, err = run_cli("estimate", "--model", VL30, "--images-per-request", "1", "--image-size",
                           "1280x720,640x480")
    assert code == 2 and err.strip() == ("error: --image-size takes one WIDTHxHEIGHT for estimate (a mixture of "
                                         "sizes is for simulate, plan and sweep)")
    code, _, err = run_cli("serve", "--model", VL30, "--image-size", "1280x720,640x480", "--port", "18997")
    assert code == 2 and "takes one WIDTHxHEIGHT for serve" in err and len(err.strip().splitlines()) == 1


def test_the_tokens_added_at_once_match_each_requests_sizes():
    mixed = image_inputs(1, "1280x720:0.5,640x480:0.3,256x256:0.2", None)
    counts = np.array([0, 3, 1, 0, 64, 2, 5] * 30)
    tokens = (882, 302, 66)
    by_request = [sum(tokens[s] for s in mixed.sizes_of(i, int(c))) for i, c in enumerate(counts)]
    assert mixed.added_tokens(counts, tokens).tolist() == by_request
    one = image_inputs(2, "640x480", None)
    assert one.added_tokens(counts, (302,)).tolist() == (counts * 302).tolist()
