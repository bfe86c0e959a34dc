"""Per-request image counts from a trace's NumImages column (the Azure LMM inference trace 2025's schema:
TIMESTAMP, NumImages, ContextTokens, GeneratedTokens): read and checked row by row, kept aligned with their requests
through slicing, re-timing and looping, carried by `simulate` and `plan` (with --image-size for the images' size),
and the flags that would contradict the trace refused in one line. The rows here are made up for the tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.sim.api import build
from phasewise.sim.simulate import simulate
from phasewise.specs import load_model
from phasewise.workload import load_trace

VL30 = "Qwen/Qwen3-VL-30B-A3B-Instruct"
COUNTS = [0, 1, 1, 0, 3, 16, 2, 0]


def _trace(tmp_path, counts=COUNTS, name="lmm.csv", value=None) -> str:
    rows = ["TIMESTAMP,NumImages,ContextTokens,GeneratedTokens"]
    for i, images in enumerate(counts):
        rows.append(f"2024-10-15T12:00:{i:02d}.250Z,{images if value is None or i != 2 else value},{300 + 50 * i},"
                    f"{20 + i}")
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_the_column_is_read_from_csv_and_jsonl_and_stays_with_its_requests(tmp_path):
    trace = load_trace(_trace(tmp_path))
    assert trace.image_counts.tolist() == COUNTS and trace.prompt_tokens[5] == 550
    lines = [json.dumps({"arrived_at": i * 0.5, "num_prefill_tokens": 100 + i, "num_decode_tokens": 9,
                         **({"NumImages": c} if i != 1 else {"NumImages": 0})}) for i, c in enumerate(COUNTS)]
    path = tmp_path / "lmm.jsonl"
    path.write_text("\n".join(lines))
    assert load_trace(str(path)).image_counts.tolist() == [0, 0, 1, 0, 3, 16, 2, 0]
    # slicing, re-timing and looping keep each request's count beside its lengths
    assert trace.head(3).image_counts.tolist() == COUNTS[:3]
    assert trace.take(np.array([1, 5])).image_counts.tolist() == [1, 16]
    assert trace.scaled_to_rate(3.0).image_counts.tolist() == COUNTS
    looped = trace.looped(3 * trace.duration_s + 1)
    assert len(looped) > len(trace) and looped.image_counts.tolist() == (COUNTS * (len(looped) // len(COUNTS)))
    assert load_trace("azure-conv").image_counts is None  # no column: no counts


@pytest.mark.parametrize("value", ["-1", "2.5", "65", "many", ""])
def test_a_bad_count_names_its_row_and_the_allowed_values(tmp_path, value):
    with pytest.raises(PhasewiseError, match=r"line 4: NumImages must be an integer in 0\.\.64 \(got '.*'\)$"):
        load_trace(_trace(tmp_path, value=value))


def test_simulate_lengthens_each_prompt_by_its_own_images_and_encodes_each_once(tmp_path):
    path = _trace(tmp_path)
    spec = build(model=VL30, hardware="h100-sxm", trace=path, image_size="1280x720")
    res = simulate(spec.deployment, spec.workload, spec.slo, images=spec.images, check_invariants=True)
    tokens = load_model(VL30).image_geometry(1280, 720).prompt_tokens  # 882: 1280x704 merged 2x2, +2
    text = load_trace(path).prompt_tokens
    assert res.prompt_tokens.tolist() == (text + tokens * np.array(COUNTS)).tolist()
    assert res.images.tolist() == COUNTS
    assert sum(i.images_encoded for i in res.instances) == sum(COUNTS)  # nothing preempted at this load
    summary = res.summary()["images"]
    assert summary["per_request"] == "trace" and summary["images_carried"] == sum(COUNTS)
    assert summary["requests_with_images"] == 5
    # the 16-image request waits longest for its first token: its prefill is 16 x 882 tokens and 16 encodes
    ttft = res.first_token_s - res.arrival_s
    assert int(np.argmax(ttft)) == 5


@pytest.mark.parametrize("args, message", [
    (dict(image_size=None), r"gives each request's image count \(NumImages\) but not the images' size: give "
                            r"--image-size"),
    (dict(image_size="640x480", images_per_request=2), r"^--images-per-request does not apply to trace '.*lmm.csv': "
                                                         "its NumImages column"),
    (dict(image_size="640x480", image_share=0.5), r"^--image-share does not apply to trace"),
    (dict(image_size="640x480", model="meta-llama/Llama-3.1-8B"), r"^the trace's NumImages column gives requests "
                                                                   r"images, but model 'meta-llama/Llama-3.1-8B' has "
                                                                   r"no vision encoder: drop the column"),
])
def test_flags_that_contradict_the_trace_are_one_line_errors(tmp_path, args, message):
    kwargs = dict(model=VL30, hardware="h100-sxm", trace=_trace(tmp_path)) | args
    with pytest.raises(PhasewiseError, match=message):
        spec = build(**kwargs)
        simulate(spec.deployment, spec.workload, spec.slo, images=spec.images)


def test_a_trace_without_images_needs_no_size_and_a_text_workload_no_column(tmp_path):
    spec = build(model=VL30, hardware="h100-sxm", trace=_trace(tmp_path, counts=[0, 0, 0]))
    assert spec.images is None
    with pytest.raises(PhasewiseError, match="--image-size needs --images-per-request"):
        build(model=VL30, hardware="h100-sxm", rate=1.0, requests=5, image_size="640x480")


def test_plan_replays_the_counts_with_their_requests_and_weighs_them(tmp_path):
    from phasewise.perf import CostModel
    from phasewise.plan import PlanOptions
    from phasewise.plan.goodput import capacity_estimate, image_load, workload_spec
    from phasewise.plan.strategies import enumerate_strategies
    from phasewise.specs import load_engine, load_hardware, load_quant

    path = _trace(tmp_path)
    work = workload_spec(path, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, image_size="1280x720")
    assert work.name.endswith("the trace's NumImages x 1280x720 px image(s) per request")
    sampled = work.at_rate(2.0, requests=200)
    by_prompt = dict(zip(load_trace(path).prompt_tokens.tolist(), COUNTS))  # prompts are distinct in this trace
    assert [by_prompt[p] for p in sampled.prompt_tokens.tolist()] == sampled.image_counts.tolist()
    replay = workload_spec(path, "trace", None, None, "fixed", "fixed", 0.0, 0.0, 0, image_size="1280x720")
    assert replay.at_rate(2.0, requests=20).image_counts.tolist()[:8] == COUNTS
    # the analytic load: the mean image tokens, and the encoder time weighted by how many requests carry k images
    cost = CostModel(load_model(VL30), load_hardware("h100-sxm"), load_quant("bf16"), load_engine("vllm"))
    tokens, encoder_s = image_load(cost, work)
    geometry = cost.model.image_geometry(1280, 720)
    assert tokens == pytest.approx(np.mean(COUNTS) * geometry.prompt_tokens)
    expected = sum(cost.encoder((geometry.patches,) * k).time_s for k in COUNTS if k) / len(COUNTS)
    assert encoder_s == pytest.approx(expected)
    with pytest.raises(PhasewiseError, match="but not the images' size"):
        workload_spec(path, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0)
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=False, moe_layouts=("tp",))
    strategy = enumerate_strategies(VL30, "h100-sxm", 1, opts)[0][0]
    small = workload_spec(path, "poisson", None, None, "fixed", "fixed", 0.0, 0.0, 0, image_size="256x256")
    assert capacity_estimate(strategy, work) < capacity_estimate(strategy, small)


def test_cli_simulate_prints_the_trace_counts(run_cli, tmp_path):
    code, out, err = run_cli("simulate", "--model", VL30, "--hardware", "h100-sxm", "--trace", _trace(tmp_path),
                             "--image-size", "1280x720")
    assert code == 0, err
    assert "Images: the trace's NumImages (23 on 5 requests), 1280x720 px" in " ".join(out.split())
    code, out, err = run_cli("simulate", "--model", VL30, "--hardware", "h100-sxm", "--trace", _trace(tmp_path))
    assert code != 0 and len(err.strip().splitlines()) == 1 and "--image-size" in err


def test_an_image_is_encoded_with_the_first_chunk_that_reaches_its_tokens(monkeypatch):
    """Images follow the text (benchmark clients send the text part first); vLLM V1 and SGLang encode an image with
    the first prefill chunk that overlaps its tokens, so a long multi-image prompt spreads its encoder work."""
    from phasewise.perf import CostModel
    from phasewise.workload import ImageInputs

    calls: list[tuple[int, ...]] = []
    encoder = CostModel.encoder

    def record(self, patches):
        calls.append(tuple(patches))
        return encoder(self, patches)

    monkeypatch.setattr(CostModel, "encoder", record)
    spec = build(model=VL30, hardware="h100-sxm", rate=1.0, requests=1, isl=100, osl=2,
                 max_num_batched_tokens=1024)
    res = simulate(spec.deployment, spec.workload, spec.slo, images=ImageInputs(3, ((1280, 720),)),
                   check_invariants=True)
    # 100 text tokens, then three images of 882 tokens at [100, 982), [982, 1864), [1864, 2746): the first 1,024-token
    # chunk reaches the first two, the second chunk the third, the third chunk none
    assert res.prompt_tokens[0] == 100 + 3 * 882
    assert calls == [(3520, 3520), (3520,)]
    assert sum(i.images_encoded for i in res.instances) == 3


def test_an_image_wholly_in_a_cached_prefix_is_not_encoded():
    from phasewise.sim.events import EventLoop
    from phasewise.sim.image_encoding import encode_images
    from phasewise.sim.request import SimRequest
    from phasewise.sim.simulate import build_cluster

    spec = build(model=VL30, hardware="h100-sxm", rate=1.0, requests=1)
    _, instances, _ = build_cluster(spec.deployment, EventLoop(), 1, False)
    instance = instances[0]
    req = SimRequest(0, 0.0, 100 + 3 * 882, 8, image_patches=(3520,) * 3, image_tokens=(882,) * 3)
    req.prefilled = 1000  # a cached prefix through the first image (ends at 982) into the second
    encoded = encode_images(instance.cost, instance.stats, [(req, 1000)])
    assert req.images_done == 3 and instance.stats.images_encoded == 2 and encoded is not None
    assert encode_images(instance.cost, instance.stats, [(req, 500)]) is None  # nothing left to encode in this attempt


def test_lengths_that_count_the_images_tokens_are_not_lengthened_but_must_hold_them(tmp_path):
    """--image-tokens-included: a trace from an engine's own logs (usage.prompt_tokens counts the images' tokens)."""
    from phasewise.plan import PlanOptions
    from phasewise.plan.goodput import capacity_estimate, workload_spec
    from phasewise.plan.strategies import enumerate_strategies

    rows = ["TIMESTAMP,NumImages,ContextTokens,GeneratedTokens"]
    rows += [f"{i * 0.5},{c},{1200 + 50 * i},{20 + i}" for i, c in enumerate(COUNTS)]  # the 16 images' has 1,450
    path = tmp_path / "logs.csv"
    path.write_text("\n".join(rows) + "\n")
    path = str(path)
    spec = build(model=VL30, hardware="h100-sxm", trace=path, image_size="256x256", image_tokens_included=True)
    res = simulate(spec.deployment, spec.workload, spec.slo, images=spec.images, check_invariants=True)
    assert res.prompt_tokens.tolist() == load_trace(path).prompt_tokens.tolist()
    assert sum(i.images_encoded for i in res.instances) == sum(COUNTS)  # the encoder still runs
    assert res.summary()["images"]["tokens_in_prompt"] is True
    tokens = load_model(VL30).image_geometry(1920, 1080).prompt_tokens  # 2,042 > 1,250: cannot be inside it
    spec = build(model=VL30, hardware="h100-sxm", trace=path, image_size="1920x1080", image_tokens_included=True)
    with pytest.raises(PhasewiseError, match=rf"^request 1: its 1250 prompt tokens cannot hold its 1 image\(s\)' "
                                             rf"{tokens} tokens and any text \(--image-tokens-included"):
        simulate(spec.deployment, spec.workload, spec.slo, images=spec.images)
    with pytest.raises(PhasewiseError, match=r"^--image-tokens-included needs image inputs"):
        build(model=VL30, hardware="h100-sxm", rate=1.0, requests=4, image_tokens_included=True)
    # plan: the pre-screen's prompt is the length alone
    inside = workload_spec(None, "poisson", 3000, 100, "fixed", "fixed", 0.0, 0.0, 0, images_per_request=1,
                           image_size="1280x720", image_tokens_included=True)
    beside = workload_spec(None, "poisson", 3000, 100, "fixed", "fixed", 0.0, 0.0, 0, images_per_request=1,
                           image_size="1280x720")
    assert inside.name.endswith("their tokens within the prompt lengths")
    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=False, moe_layouts=("tp",))
    strategy = enumerate_strategies(VL30, "h100-sxm", 1, opts)[0][0]
    assert capacity_estimate(strategy, inside) > capacity_estimate(strategy, beside)
