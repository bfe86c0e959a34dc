"""Image inputs to multimodal models: the image processors' patches and prompt tokens, the vision encoder's forward
counted by hand, and requests carrying images through `simulate` and `estimate` (their tokens in the prompt, the
encoder at the first chunk of each prefill attempt); bad image flags are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from phasewise.apps.cli import app
from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.perf.estimate import estimate
from phasewise.perf.vision import encoder_forward
from phasewise.sim.api import build
from phasewise.sim.simulate import simulate
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.workload import ImageInputs, image_inputs

VL30 = "Qwen/Qwen3-VL-30B-A3B-Instruct"
MISTRAL = "mistralai/Mistral-Small-3.2-24B-Instruct-2506"


def _config_with_vision(tmp_path, name, vision, **top):
    from phasewise.specs.catalog import packaged
    cfg = json.loads(json.dumps(packaged("models.yaml")["models"][name]["config"]))
    cfg.update(vision_config=vision, **top)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return load_model(str(path))


@pytest.mark.parametrize("size, resized, patches, tokens", [
    ((400, 300), (384, 288), 24 * 18, 24 * 18 // 4 + 2),  # a public walk-through of the processor: 18 x 24 patches
    ((1024, 1024), (1024, 1024), 4096, 1026),
    ((1920, 1080), (1920, 1088), 120 * 68, 120 * 68 // 4 + 2),  # 1080 / 32 = 33.75 rounds to 34 x 32
    ((100, 100), (256, 256), 256, 66),  # below 65,536 pixels: scaled up
])
def test_qwen3_vl_processor_rounds_sides_to_32_within_its_pixel_bounds(size, resized, patches, tokens):
    geometry = load_model(VL30).vision.image_geometry(*size)
    assert (geometry.resized_px, geometry.patches, geometry.prompt_tokens) == (resized, patches, tokens)


def test_qwen3_vl_processor_scales_a_large_image_down_and_refuses_extreme_aspect_ratios():
    vision = load_model(VL30).vision
    width, height = vision.image_geometry(8000, 6000).resized_px
    assert width * height <= 16_777_216 and width % 32 == 0 and height % 32 == 0
    assert abs(width / height - 8000 / 6000) < 0.02
    with pytest.raises(PhasewiseError, match=r"^an image of 10x3000 px \(--image-size\).*200:1$"):
        vision.image_geometry(10, 3000)
    for size in ((0, 10), (10, 0), (100_001, 5)):  # every caller (flags, the twin, the API) bounded in one place
        with pytest.raises(PhasewiseError, match=r"is outside 1\.\.100,000 px a side$"):
            vision.image_geometry(*size)


def test_pixtral_processor_caps_the_longer_side_and_adds_a_break_per_row():
    vision = load_model(MISTRAL).vision
    one = vision.image_geometry(1024, 1024)  # 1024 / 28 -> 37 merged rows and columns
    assert (one.resized_px, one.patches, one.prompt_tokens) == ((1036, 1036), 37 * 37 * 4, 37 * 37 + 37)
    wide = vision.image_geometry(3080, 1540)  # scaled to 1540 x 770: 55 x 28 merged
    assert wide.resized_px == (1540, 784) and wide.prompt_tokens == 55 * 28 + 28


def test_siglip_resizes_every_image_to_its_square_and_llama4_tiles_it(tmp_path):
    gemma = _config_with_vision(tmp_path, "google/gemma-3-27b-it", {
        "hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "num_attention_heads": 16,
        "num_hidden_layers": 27, "patch_size": 14}, mm_tokens_per_image=256)
    for size in ((300, 200), (4000, 3000)):
        geometry = gemma.vision.image_geometry(*size)
        assert (geometry.patches, geometry.prompt_tokens, geometry.resized_px) == (4096, 258, (896, 896))
    from tests.test_vision_encoder import LLAMA4_SCOUT_VISION
    scout = _config_with_vision(tmp_path, "meta-llama/Llama-4-Scout-17B-16E-Instruct", dict(LLAMA4_SCOUT_VISION))
    # Llama4ImageProcessor's best-fit canvas of <= 16 tiles of 336 (the least upscaling, else the least
    # downscaling, the smallest on a tie), a global view beside more than one tile, 577 encoder positions and 144
    # tokens a tile, x / y separators and three markers in the prompt (checked against transformers' own functions)
    for size, (columns, rows), tokens in (((1920, 1080), (5, 3), 2322), ((1280, 720), (4, 3), 1887),
                                          ((336, 336), (1, 1), 147), ((800, 600), (3, 2), 1017),
                                          ((4000, 3000), (4, 3), 1887), ((1024, 1024), (4, 4), 2467)):
        geometry = scout.vision.image_geometry(*size)
        tiles = columns * rows + (columns * rows > 1)
        assert (geometry.resized_px, geometry.patches, geometry.prompt_tokens) == (
            (336 * columns, 336 * rows), tiles * 577, tokens), size
    # each tile its own sequence: 17 tiles' attention is 17 x 577^2 pairs, not (17 x 577)^2
    cost = CostModel(scout, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    as_one = scout.model_copy(update={"vision": scout.vision.model_copy(update={"tile_positions": 0})})
    whole = CostModel(as_one, load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    v = scout.vision
    head = 2 * (17 * 577 // 4 - 17 * 144) * sum(k * n for k, n in v.head_gemms)  # 17 x 144 rows, not 17 x 577 / 4
    attention = v.depth * 4 * v.hidden_size * ((17 * 577) ** 2 - 17 * 577 ** 2)
    assert whole.encoder((17 * 577,)).flops - cost.encoder((17 * 577,)).flops == pytest.approx(attention + head,
                                                                                              rel=1e-9)


def _cost(model=VL30, tp=1, hardware="h100-sxm"):
    return CostModel(load_model(model), load_hardware(hardware), load_quant("bf16"), load_engine("vllm"), tp)


def test_encoder_flops_counted_by_hand():
    """Qwen3-VL-30B's encoder over one image of P patches: the 1536 -> 1152 patch embedding; 27 blocks of qkv
    (1152 -> 3456), proj, fc1 (1152 -> 4304) and fc2, and attention over the P^2 (query, key) pairs at 4 FLOPs per
    pair and head dimension; four mergers (the merger and three deepstack ones) of 4608 -> 4608 -> 2048 over the
    P / 4 merged tokens."""
    cost = _cost()
    patches = 4096
    block = 1152 * 3456 + 1152 * 1152 + 1152 * 4304 + 4304 * 1152
    expected = 2 * patches * 1536 * 1152 + 27 * (2 * patches * block + 4 * patches ** 2 * 1152) \
        + 4 * 2 * (patches // 4) * (4608 * 4608 + 4608 * 2048)
    assert cost.encoder((patches,)).flops == pytest.approx(expected, rel=1e-9)
    # two images: the projections' FLOPs add up, attention stays within each image
    assert cost.encoder((patches, patches)).flops == pytest.approx(2 * expected, rel=1e-9)


def test_encoder_time_grows_faster_than_its_patches_and_tensor_parallelism_splits_it():
    one = _cost()
    small, large = one.encoder((1024,)).time_s, one.encoder((16384,)).time_s
    assert large > 16 * small * 0.9  # attention over P^2 pairs at large images
    assert _cost(tp=2).encoder((16384,)).time_s < 0.75 * large
    vision = load_model(VL30).vision
    assert encoder_forward(one, vision, (4096,)).time_s == one.encoder((4096,)).time_s
    with pytest.raises(PhasewiseError, match="has no vision encoder"):
        _cost("meta-llama/Llama-3.1-8B").encoder((16,))


def _run(images, **flags):
    spec = build(model=VL30, hardware="h100-sxm", **{"rate": 2.0, "requests": 120, "isl": 300, "osl": 50, **flags})
    return simulate(spec.deployment, spec.workload, spec.slo, check_invariants=True, images=images)


def test_images_lengthen_the_prompt_and_the_encoder_runs_once_per_request():
    plain = _run(None)
    images = ImageInputs(2, ((1024, 1024),))
    with_images = _run(images)
    assert np.array_equal(with_images.prompt_tokens, plain.prompt_tokens + 2 * 1026)
    summary = with_images.summary()
    assert summary["instances"][0]["images_encoded"] == 2 * 120
    assert summary["images"]["prompt_tokens_per_image"] == 1026 and summary["images"]["patches_per_image"] == 4096
    # at a light load every TTFT pays the encoder over two images and the longer prefill
    encoder_s = _cost().encoder((4096, 4096)).time_s
    assert np.median(with_images.ttft_s) > np.median(plain.ttft_s) + encoder_s
    assert "images" not in plain.summary() and "images_encoded" not in plain.summary()["instances"][0]


def test_an_image_share_picks_that_share_of_requests_the_same_for_every_run():
    share = ImageInputs(1, ((640, 480),), share=0.3)
    carried = [i for i in range(1000) if share.carries(i)]
    assert abs(len(carried) - 300) <= 2
    result = _run(share)
    carrying = result.prompt_tokens > 300
    summary = result.summary()
    assert summary["instances"][0]["images_encoded"] == int(carrying.sum())
    assert list(np.flatnonzero(carrying)) == [i for i in carried if i < 120]
    # the records name each request's images; the summary splits TTFT between requests with and without them
    assert np.array_equal(result.records()["images"], carrying.astype(int))
    assert summary["images"]["requests_with_images"] == int(carrying.sum())
    with_images, without = summary["images"]["ttft_ms_with_images"], summary["images"]["ttft_ms_without_images"]
    assert with_images["p50"] == pytest.approx(np.median(result.ttft_s[carrying]) * 1e3)
    assert without["p50"] == pytest.approx(np.median(result.ttft_s[~carrying]) * 1e3)
    assert with_images["p50"] > without["p50"]
    assert "images" not in _run(None).records()


def test_closed_loop_and_disaggregated_runs_take_images():
    closed = _run(ImageInputs(1, ((800, 600),)), rate=None, concurrency=4, requests=40)
    assert closed.summary()["completed"] == 40
    disagg = _run(ImageInputs(1, ((800, 600),)), arch="disagg", prefill_workers=1, decode_workers=1)
    roles = {i["role"]: i.get("images_encoded", 0) for i in disagg.summary()["instances"]}
    assert roles == {"prefill": 120, "decode": 0}  # the prefill side runs the encoder


def test_estimate_reports_the_encoder_and_prefills_the_image_tokens():
    est = estimate(VL30, "h100-sxm", prompt_len=200, images_per_sequence=1, image_px=(1920, 1080))
    data = est.to_dict()
    assert data["prompt_len"] == 200 + 2042 and data["context_len"] == 200 + 2042
    assert data["images"]["encoder_ms"] == pytest.approx(_cost().encoder((8160,)).time_s * 1e3)
    assert data["images"]["prefill_with_encoder_ms"] == pytest.approx(data["images"]["encoder_ms"] + data["prefill_ms"])
    assert "images" not in estimate(VL30, "h100-sxm", prompt_len=200).to_dict()


@pytest.mark.parametrize("per_request, size, share, message", [
    (0, "10x10", None, r"--images-per-request must be in 1\.\.64"),
    (None, "10x10", None, "--image-size needs --images-per-request"),
    (None, None, 0.5, "--image-share needs --images-per-request"),
    (1, None, None, "--images-per-request needs --image-size"),
    (1, "10 by 10", None, "--image-size must be WIDTHxHEIGHT"),
    (1, "0x10", None, "--image-size sides must be in"),
    (1, "10x10", float("nan"), r"--image-share must be in \(0, 1\]"),
    (1, "10x10", 0.0, r"--image-share must be in \(0, 1\]"),
])
def test_bad_image_flags_are_one_line_errors(per_request, size, share, message):
    with pytest.raises(PhasewiseError, match=message):
        image_inputs(per_request, size, share)


@pytest.mark.parametrize("args, message", [
    (["simulate", "--model", "meta-llama/Llama-3.1-8B", "--rate", "1", "--requests", "5", "--images-per-request", "1",
      "--image-size", "64x64"], "has no vision encoder"),
    (["estimate", "--model", "meta-llama/Llama-3.1-8B", "--images-per-request", "1", "--image-size", "64x64"],
     "has no vision encoder"),
    (["simulate", "--model", VL30, "--rate", "1", "--requests", "5", "--image-size", ""], "--image-size is empty"),
    (["simulate", "--model", "GSAI-ML/LLaDA-8B-Instruct", "--dllm", "fast-dllm", "--images-per-request", "1",
      "--image-size", "64x64"], "does not apply to --dllm"),
])
def test_cli_refuses_images_in_one_line(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code != 0 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_simulate_and_estimate_print_the_images():
    out = CliRunner().invoke(app, ["simulate", "--model", VL30, "--rate", "2", "--requests", "40", "--isl", "200",
                                   "--osl", "20", "--images-per-request", "1", "--image-size", "1280x720", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output)
    assert summary["images"]["resized_px"] == [1280, 704] and summary["instances"][0]["images_encoded"] == 40
    text = CliRunner().invoke(app, ["estimate", "--model", VL30, "--images-per-request", "2", "--image-size",
                                    "1280x720"])
    assert text.exit_code == 0, text.output
    assert "880 encoder patches" not in text.output and "3,520 encoder patches" in text.output


def test_scaled_vision_config_keeps_the_encoders_ratios():
    from phasewise.measure.vision_check import scaled_vision_config
    from phasewise.specs.catalog import packaged

    raw = packaged("models.yaml")["models"][VL30]["config"]["vision_config"]
    small = scaled_vision_config(raw, 2, 128)
    assert (small["depth"], small["hidden_size"], small["num_heads"], small["out_hidden_size"]) == (2, 128, 2, 128)
    assert small["intermediate_size"] == 480 and small["deepstack_visual_indexes"] == [1]  # 128 x 4304 / 1152
    with pytest.raises(PhasewiseError, match="multiple of 64"):
        scaled_vision_config(raw, 2, 100)


# A smoke bound, not an accuracy claim: the quick check's prediction (the class-default `cpu-local` entry, an older
# CPU's figures) within this factor of the thread's CPU time. On this 2-core machine (2026-12-05) the unfitted
# predictions came out 4.0-5.2x the CPU time from run to run (vision, gemma4, recurrent quick checks; the same with
# hf-eager's counted kernels or without them), so 4 failed a clean run by chance; 6 keeps the smoke test's purpose
VISION_SMOKE_FACTOR = 6.0


def test_quick_vision_validate_json(run_cli):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    code, out, err = run_cli("validate", "--vision", "--quick", "--hardware", "cpu-local", "--layers", "1",
                             "--hidden", "128", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [(p["images"], p["width_px"], p["height_px"], p["patches"]) for p in data["points"]] == [
        (1, 256, 256, 256), (1, 448, 352, 616), (2, 256, 256, 256)]
    for key in ("median_abs_error", "worst_abs_error", "cpu_median_abs_error", "unfitted_median_abs_error"):
        assert np.isfinite(data["summary"][key])
    for p in data["points"]:
        assert 0 < p["cpu_ms"] <= p["measured_ms"] * 1.05
        assert 1 / VISION_SMOKE_FACTOR < p["predicted_ms"] / p["cpu_ms"] < VISION_SMOKE_FACTOR, p


def test_the_patch_embedding_runs_as_the_gemm_it_is():
    """--vision times the patch embedding as serving engines run it (vLLM's Conv3dLayer: one GEMM over the flattened
    patch where the kernel is the stride): the same numbers as transformers' Conv3d; another conv is refused."""
    torch = pytest.importorskip("torch")
    from phasewise.errors import PhasewiseError
    from phasewise.measure.vision_check import patch_embedding_as_linear

    conv = torch.nn.Conv3d(3, 32, kernel_size=(2, 14, 14), stride=(2, 14, 14), bias=True)
    patches = torch.randn(20, 3, 2, 14, 14)
    linear = patch_embedding_as_linear(torch, conv)
    with torch.inference_mode():
        assert torch.allclose(linear(patches), conv(patches), atol=1e-5)
    assert linear.weight is conv.weight  # transformers reads the projection's weight dtype
    with pytest.raises(PhasewiseError, match="not a per-patch projection"):
        patch_embedding_as_linear(torch, torch.nn.Conv3d(3, 32, kernel_size=3, stride=1))


def test_quick_vision_validate_times_qwen25_vl_windows(run_cli):
    """The same check on Qwen2.5-VL's encoder (windowed blocks, one full-attention block): images in multiples of
    28 pixels, from one 112-pixel window to 4 x 3 of them."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    code, out, err = run_cli("validate", "--vision", "--quick", "--hardware", "cpu-local", "--layers", "2",
                             "--hidden", "128", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["info"]["config"]["fullatt_block_indexes"] == [1]
    assert [(p["images"], p["width_px"], p["height_px"], p["patches"]) for p in data["points"]] == [
        (1, 224, 224, 256), (1, 448, 336, 768), (2, 224, 224, 256)]
    for p in data["points"]:
        assert 1 / VISION_SMOKE_FACTOR < p["predicted_ms"] / p["cpu_ms"] < VISION_SMOKE_FACTOR, p


@pytest.mark.parametrize("args, needle", [
    (("--dllm",), "--dllm"),
    (("--serve",), "--serve"),
    (("--device", "cuda"), "--device cpu"),
    (("--threads", "2"), "--threads"),
    (("--model", "meta-llama/Llama-3.1-8B"), "has none"),
    (("--hidden", "100"), "multiple of 64"),
])
def test_vision_validate_flag_errors_are_one_line(run_cli, args, needle):
    code, out, err = run_cli("validate", "--vision", *args)
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_plan_weighs_the_images_and_names_them():
    from phasewise.plan import PlanOptions
    from phasewise.plan.goodput import capacity_estimate, workload_spec
    from phasewise.plan.planner import plan
    from phasewise.plan.strategies import enumerate_strategies
    from phasewise.sim import Slo

    text = workload_spec(None, "poisson", 300, 100, "fixed", "fixed", 0.0, 0.0, 0)
    images = workload_spec(None, "poisson", 300, 100, "fixed", "fixed", 0.0, 0.0, 0,
                           images_per_request=1, image_size="640x480")
    assert images.name.endswith("1 x 640x480 px image(s) per request")
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=False, moe_layouts=("tp",))
    strategy = enumerate_strategies(VL30, "h100-sxm", 1, opts)[0][0]
    # a request's 302 image tokens and its encoder forward lower the analytic capacity
    assert capacity_estimate(strategy, images) < 0.9 * capacity_estimate(strategy, text)
    slo = Slo(500, 50)
    with_images = plan(VL30, "h100-sxm", 1, slo, images, opts=opts, refine=1, workers=1)
    without = plan(VL30, "h100-sxm", 1, slo, text, opts=opts, refine=1, workers=1)
    assert with_images.feasible and with_images.workload.endswith("per request")
    assert with_images.ranked[0].goodput_rps < without.ranked[0].goodput_rps
    run = with_images.ranked[0].verified
    assert run is not None and run.summary["requests"] > 0


def test_plan_refuses_images_for_a_text_model(run_cli):
    code, out, err = run_cli("plan", "--gpus", "1", "--images-per-request", "1", "--image-size", "64x64")
    assert code != 0 and "has no vision encoder" in err and len(err.strip().splitlines()) == 1


def test_sweep_workloads_carry_images(run_cli, tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"models: [{VL30}]\nhardware: [h100-sxm]\ngpus: 1\n"
                   "workloads: [{name: text, isl: 300, osl: 64}, {name: photo, isl: 300, osl: 64, "
                   "images_per_request: 1, image_size: 1280x720}]\nslo: {ttft_ms: 500, tpot_ms: 50}\n"
                   "strategies: {tp_options: [1], chunk_sizes: [2048], disaggregated: false, moe_layouts: [tp]}\n")
    out = tmp_path / "s.csv"
    code, _, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code == 0, err
    import csv
    rows = list(csv.DictReader(out.open()))
    by = {}
    for row in rows:
        by.setdefault(row["strategy"], {})[row["workload"]] = float(row["search_rps"])
    assert by and all(0 < g["photo"] < g["text"] for g in by.values())
    text_model = tmp_path / "bad.yaml"
    text_model.write_text(cfg.read_text().replace(VL30, "meta-llama/Llama-3.1-8B"))
    code, _, err = run_cli("sweep", str(text_model), "--out", str(out), "--workers", "1")
    assert code != 0 and "workload 'photo': images_per_request: model" in err
    assert len(err.strip().splitlines()) == 1
