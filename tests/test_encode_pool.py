"""Disaggregated vision encoders (sim/encode_pool.py): encode workers run the images of the requests that carry them
before the language model's instances, batched up to a token budget; the embeddings cross a link; the instances
then encode nothing; requests without images bypass them; flags and files that cannot work are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from phasewise.errors import PhasewiseError
from phasewise.perf import CostModel
from phasewise.sim.api import build
from phasewise.sim.deployment import build_deployment
from phasewise.sim.encode_pool import EMBEDDING_BYTES
from phasewise.sim.link import link_rate
from phasewise.sim.simulate import simulate
from phasewise.specs import load_hardware, load_model, load_quant
from phasewise.specs.engines import resolve_engine
from phasewise.workload import ImageInputs, Workload

VL30 = "Qwen/Qwen3-VL-30B-A3B-Instruct"


def _deployment(encoders: dict | None = None, **instance) -> object:
    group = {"role": "collocated", "hardware": "h100-sxm", **instance}
    return build_deployment({"model": VL30, "instances": [group], **({"encoders": encoders} if encoders else {})})


def _encoder_cost(hardware: str = "h100-sxm", tp: int = 1) -> CostModel:
    model, hw = load_model(VL30), load_hardware(hardware)
    engine = resolve_engine("vllm", hw, tp=tp, vision=model.vision)
    return CostModel(model, hw, load_quant("bf16"), engine.profile, tp, 1)


def _work(n: int, gap_s: float, prompt: int = 200, output: int = 16) -> Workload:
    return Workload(np.arange(n) * gap_s, np.full(n, prompt), np.full(n, output))


def test_images_run_on_the_encode_workers_and_requests_without_them_bypass_them():
    dep = _deployment({"replicas": 2})
    res = simulate(dep, _work(40, 0.05), images=ImageInputs(2, ((1280, 720),), share=0.5), check_invariants=True)
    carrying = int((res.images > 0).sum())
    workers = [s for s in res.instances if s.role == "encode"]
    lm = [s for s in res.instances if s.role == "collocated"]
    assert len(workers) == 2 and all(s.gpus == 1 for s in workers)
    assert sum(s.images_encoded for s in workers) == 2 * carrying and lm[0].images_encoded == 0
    assert res.policy["encoders"]["requests_encoded"] == carrying
    assert res.gpus == 3 and np.isfinite(res.ttft_s).all()
    assert res.price_per_hour_usd == pytest.approx(3 * load_hardware("h100-sxm").price_per_hour_usd)
    assert all(s.energy_j > 0 for s in workers)  # busy and idle power of their GPUs


def test_a_lone_request_waits_for_its_encode_and_its_embeddings_then_prefills_without_an_encoder():
    one = _work(1, 1.0, prompt=200, output=2)
    images = ImageInputs(3, ((1280, 720),))
    plain = simulate(_deployment(), one, images=images)
    split = simulate(_deployment({"replicas": 1, "link": "rdma"}), one, images=images)
    cost = _encoder_cost()
    geometry = load_model(VL30).image_geometry(1280, 720)
    encode_s = cost.encoder((geometry.patches,) * 3).time_s
    bandwidth, latency = link_rate(cost.hw.interconnect, "rdma")
    send_s = 3 * geometry.prompt_tokens * load_model(VL30).vision.embedding_width * EMBEDDING_BYTES / (
        bandwidth * cost.eff.link_efficiency) + latency
    # collocated, the same encoder forward runs inside the prefill's first iteration instead; split, the request
    # also passes the worker's frontend and its engine's step overhead
    worker_s = cost.engine.frontend_request_s + cost.engine.iteration_overhead_s
    assert worker_s > 0
    assert split.ttft_s[0] == pytest.approx(plain.ttft_s[0] + worker_s + send_s, rel=1e-6)
    assert encode_s < plain.ttft_s[0]


def test_a_worker_batches_its_queue_up_to_the_token_budget():
    geometry = load_model(VL30).image_geometry(1280, 720)  # 882 tokens an image
    together = _work(4, 0.0)
    calls: list[int] = []
    for budget, forwards in ((4 * 882, 2), (2 * 882, 3), (1, 4)):
        dep = _deployment({"replicas": 1, "max_batch_tokens": budget})
        res = simulate(dep, together, images=ImageInputs(1, ((1280, 720),)))
        worker = next(s for s in res.instances if s.role == "encode")
        calls.append(worker.iterations)
        assert worker.images_encoded == 4 and worker.prefill_tokens == 4 * geometry.prompt_tokens
        # the first forward takes the request that found the worker idle, then the queue goes by the budget
        assert worker.iterations == forwards
    assert calls == [2, 3, 4]


def test_disaggregated_prefill_and_decode_closed_loops_and_preemptions_keep_the_images_encoded_once():
    dep = build_deployment({"model": VL30, "encoders": {"replicas": 1}, "instances": [
        {"role": "prefill", "hardware": "h100-sxm"}, {"role": "decode", "hardware": "h100-sxm"}]})
    res = simulate(dep, _work(30, 0.02, prompt=400, output=64), images=ImageInputs(1, ((640, 480),)),
                   check_invariants=True)
    assert sum(s.images_encoded for s in res.instances if s.role == "encode") == 30
    assert sum(s.images_encoded for s in res.instances if s.role != "encode") == 0
    spec = build(model=VL30, hardware="h100-sxm", concurrency=8, requests=24, isl=300, osl=32,
                 images_per_request=1, image_size="640x480", encode_workers=1)
    closed = simulate(spec.deployment, spec.workload, spec.slo, images=spec.images, check_invariants=True)
    assert closed.summary()["requests"] == 24
    # KV pressure: preempted requests recompute their prefill but never encode again
    tight = simulate(_deployment({"replicas": 1}, memory_fraction=0.8), _work(60, 0.001, prompt=3000, output=1500),
                     images=ImageInputs(1, ((640, 480),)), check_invariants=True)
    assert tight.preemptions.sum() > 0
    assert sum(s.images_encoded for s in tight.instances) == 60
    collocated = simulate(_deployment(memory_fraction=0.8), _work(60, 0.001, prompt=3000, output=1500),
                          images=ImageInputs(1, ((640, 480),)))  # each recompute encodes its image again
    assert sum(s.images_encoded for s in collocated.instances) == 60 + collocated.preemptions.sum()


@pytest.mark.parametrize("flags, message", [
    (dict(encode_tp=2), r"^--encode-tp needs --encode-workers N"),
    (dict(encode_hardware="b200"), r"^--encode-hardware needs --encode-workers N"),
    (dict(encode_workers=0, images_per_request=1, image_size="64x64"), r"^--encode-workers must be >= 1"),
    (dict(encode_workers=1, encode_link="wifi", images_per_request=1, image_size="64x64"),
     r"^--encode-link 'wifi' is not one of nvlink, pcie, rdma$"),
    (dict(encode_workers=1), r"^--encode-workers needs image inputs"),
])
def test_encoder_flags_are_checked_in_one_line(flags, message):
    with pytest.raises(PhasewiseError, match=message):
        build(model=VL30, hardware="h100-sxm", rate=1.0, requests=4, **flags)


def test_a_text_model_or_an_encoder_too_big_for_its_gpu_is_refused():
    text = build_deployment({"model": "meta-llama/Llama-3.1-8B", "encoders": {"replicas": 1},
                             "instances": [{"role": "collocated"}]})
    with pytest.raises(PhasewiseError, match=r"^deployment encoders: model 'meta-llama/Llama-3.1-8B' has no vision "
                                             "encoder"):
        simulate(text, _work(2, 1.0))
    with pytest.raises(PhasewiseError, match=r"encoders\.replicas"):
        build_deployment({"model": VL30, "encoders": {"replicas": 0}, "instances": [{"role": "collocated"}]})


def test_cli_prints_the_encode_workers(run_cli):
    code, out, err = run_cli("simulate", "--model", VL30, "--rate", "2", "--requests", "20", "--isl", "200",
                             "--osl", "16", "--images-per-request", "1", "--image-size", "640x480",
                             "--encode-workers", "2", "--encode-link", "rdma")
    assert code == 0, err
    assert "enc.0" in out and "enc.1" in out and "encode" in out


def test_plan_tries_encode_workers_beside_its_units_and_weighs_them():
    from phasewise.plan import PlanOptions
    from phasewise.plan.goodput import capacity_estimate, image_load, workload_spec
    from phasewise.plan.strategies import enumerate_strategies
    from phasewise.sim.encode_pool import encoder_cost

    opts = PlanOptions(tp_options=(1,), chunk_sizes=(2048,), disaggregated=True, ratios=((1, 1),),
                       moe_layouts=("tp",), policies=("encoders",))
    strategies, _ = enumerate_strategies(VL30, "h100-sxm", 8, opts)
    with_encoders = [s for s in strategies if s.deployment.get("encoders")]
    assert with_encoders and all(s.name.endswith(f"+{s.units}E") for s in with_encoders)
    for s in with_encoders:  # each unit: 1, 2, 4 or 8 of the base units and one encode GPU
        assert s.slice(s.units) == s.deployment and s.deployment["encoders"]["replicas"] == s.units
        lm = sum(g["tp"] * g["replicas"] for g in s.deployment["instances"])
        assert s.gpus == lm + s.units <= 8 and build_deployment(s.deployment).gpus == s.gpus
    names = {s.name for s in with_encoders}
    assert {"4x TP1 vllm default b256 bf16 +4E", "2P(TP1) 2D(TP1) bf16 +2E"} <= names
    # images whose encoder forward outweighs their prefill (attention over 65,536 patches an image): the encode
    # GPUs bind, and the capacity is their rate
    heavy = workload_spec(None, "poisson", 300, 100, "fixed", "fixed", 0.0, 0.0, 0, images_per_request=1,
                          image_size="4096x4096")
    four = next(s for s in with_encoders if s.name == "4x TP1 vllm default b256 bf16 +4E")
    from phasewise.plan.cluster_cost import cluster_hardware
    assert cluster_hardware(four.deployment, with_cost=False).chips == {"h100-sxm": 8}  # --objective power's count
    encode_s = image_load(encoder_cost(build_deployment(four.deployment)), heavy)[1]
    assert capacity_estimate(four, heavy) == pytest.approx(4 / encode_s)


def test_plan_refuses_encoders_without_images_or_without_a_vision_encoder():
    from phasewise.plan import PlanOptions
    from phasewise.plan.goodput import workload_spec
    from phasewise.plan.planner import plan
    from phasewise.plan.strategies import enumerate_strategies
    from phasewise.sim import Slo

    opts = PlanOptions(tp_options=(1,), disaggregated=False, policies=("encoders",))
    text = workload_spec(None, "poisson", 300, 100, "fixed", "fixed", 0.0, 0.0, 0)
    with pytest.raises(PhasewiseError, match=r"^--policies encoders needs image inputs"):
        plan(VL30, "h100-sxm", 2, Slo(1000, 50), text, opts=opts)
    with pytest.raises(PhasewiseError, match=r"^--policies encoders: model 'meta-llama/Llama-3.1-8B' has no vision"):
        enumerate_strategies("meta-llama/Llama-3.1-8B", "h100-sxm", 2, opts)
