"""HAT: the device-cloud U-shaped split, chunked prompt upload, on-device drafting, a shared batching cloud."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.hat_chunk import chunk_candidates, plan_chunk
from phasewise.scenarios import get_scenario
from phasewise.sim.deployment import SpecDecode
from phasewise.sim.device_cloud import DeviceRequest, UShapedCost, chunk_lengths, run_device_cloud
from phasewise.specs import load_engine, load_model, load_quant
from phasewise.specs.device_cloud import DeviceCloud, parse_device_cloud

MODEL, QUANT, ENGINE = load_model("meta-llama/Llama-2-7b-hf"), load_quant("fp16"), load_engine("ideal")
BASE = {"devices": 30, "device_hardware": "jetson-agx-orin", "cloud_hardware": "a6000", "cloud_gpus": 8,
        "uplink_mbps": 100, "downlink_mbps": 100, "latency_s": 0.01}


def world(**kw) -> DeviceCloud:
    return parse_device_cloud({**BASE, **kw})


def test_u_split_parses_and_bad_setups_are_one_line_errors():
    setup = world(input_layers=2, output_layers=3)
    assert setup.split(32) == [2, 27, 3] and setup.adapter_layers == 1
    cases = [({**BASE, "nope": 1}, "unknown key"), ({**BASE, "devices": 0}, "devices"),
             ({**BASE, "uplink_mbps": -1}, "uplink_mbps"), ("x", "expected a mapping")]
    for data, match in cases:
        with pytest.raises(PhasewiseError, match=match) as err:
            parse_device_cloud(data)
        assert "\n" not in str(err.value)
    with pytest.raises(PhasewiseError, match="leave none of the model's 32 for the cloud"):
        world(input_layers=16, output_layers=16).split(32)
    with pytest.raises(PhasewiseError, match="per GPU"):
        UShapedCost(load_model("meta-llama/Llama-2-70b-hf"), QUANT, ENGINE, world()).check_memory(2048, 1024, 4)
    assert chunk_lengths(10, 4) == [4, 4, 2] and chunk_lengths(10, 0) == [10] == chunk_lengths(10, 64)
    assert chunk_candidates(100, 8) == [8, 16, 32, 64, 100]


def test_chunked_upload_overlaps_cloud_compute():
    setup = world(devices=1)
    chunked = run_device_cloud(MODEL, QUANT, ENGINE, setup, [DeviceRequest(1024, 0, 128)])
    whole = run_device_cloud(MODEL, QUANT, ENGINE, setup, [DeviceRequest(1024, 0, 0)])
    ups = [s for s in chunked.spans if s.resource == "link dev0 up"]
    clouds = [s for s in chunked.spans if s.resource == "cloud gpu0"]
    assert len(ups) == len(clouds) == 8
    assert clouds[0].start_s < ups[-1].end_s  # the cloud computes chunk 0 while later chunks are still going up
    for up, cloud in zip(ups, clouds):
        assert cloud.start_s >= up.end_s - 1e-12  # never before its own chunk arrived
    assert chunked.requests[0].ttft_s < 0.7 * whole.requests[0].ttft_s


def test_the_optimiser_finds_an_interior_chunk_that_moves_with_the_uplink():
    slow = plan_chunk(MODEL, QUANT, ENGINE, world(devices=1, uplink_mbps=20), 1024)
    fast = plan_chunk(MODEL, QUANT, ENGINE, world(devices=1, uplink_mbps=200), 1024)
    for plan in (slow, fast):
        curve = dict(plan.ttft_by_chunk)
        assert min(curve) < plan.chunk_tokens < 1024
        assert plan.ttft_s < curve[min(curve)] and plan.ttft_s < curve[1024]
    assert slow.chunk_tokens < fast.chunk_tokens


def test_speculation_tbt_matches_its_formula():
    """A lone device: TBT = (k t_draft + t_verify) / k_acc with t_verify the k+1 positions' round trip,
    against t_AR the one token's round trip (the links' latency both ways in each)."""
    setup, prompt = world(devices=1), 512
    cost = UShapedCost(MODEL, QUANT, ENGINE, setup)
    spec = SpecDecode(draft_tokens=4, acceptance=0.8)
    output = round(200 * spec.tokens_per_step)

    def round_trip(tokens: int) -> float:
        wire = (cost.up_bytes(tokens) + cost.down_bytes(tokens)) * 8 / (setup.uplink_mbps * 1e6) + 2 * setup.latency_s
        return (cost.input_s(1, prompt) + wire + cost.middle_s([(tokens, prompt, 0)])
                + cost.output_s(tokens, prompt, tokens))

    t_ar, t_verify = round_trip(1), round_trip(spec.draft_tokens + 1)
    formula = 1 - (spec.draft_tokens * cost.draft_s(prompt) + t_verify) / (spec.tokens_per_step * t_ar)
    runs = [run_device_cloud(MODEL, QUANT, ENGINE, setup, [DeviceRequest(prompt, output, 64)], s, cost=cost)
            for s in (None, spec)]
    simulated = 1 - runs[1].requests[0].tbt_s / runs[0].requests[0].tbt_s
    assert simulated == pytest.approx(formula, abs=0.02)
    assert 0.3 < simulated < 0.8


def test_the_cloud_batches_many_devices_and_they_queue():
    setup = world(cloud_gpus=1)
    ttft = []
    for count in (1, 4, 16):
        run = run_device_cloud(MODEL, QUANT, ENGINE, setup, [DeviceRequest(1024, 16, 64)] * count,
                               SpecDecode(draft_tokens=4, acceptance=0.8))
        ttft.append(run.mean_ttft_s)
        if count == 16:
            pieces = 16 * (1024 // 64)
            assert run.cloud_batches < pieces  # chunks of different devices share a forward
            assert run.cloud_batch_tokens / run.cloud_batches > 64
    assert ttft[0] < ttft[1] < ttft[2]
    with pytest.raises(PhasewiseError, match="one request per device"):
        run_device_cloud(MODEL, QUANT, ENGINE, world(devices=2), [DeviceRequest(8)] * 3)


def test_hat_scenario_passes_on_its_defaults(scenario_defaults):
    result = scenario_defaults("hat")
    assert result.passed, [c.to_json() for c in result.outcome.checks if not c.passed]
    assert len(result.outcome.figures) == 2  # its time: benchmarks/bench_reproduce.py


@pytest.mark.parametrize("sets", [{"uplink_mbps": "20", "devices": "10"}, {"prompt_tokens": "2048"},
                                  {"uplink_mbps": "200", "devices": "60", "prompt_tokens": "512"}])
def test_hat_directions_hold(sets):
    checks = {c["name"]: c["phasewise"] for c in get_scenario("hat").run(sets).to_json()["checks"]}
    assert checks["TTFT vs chunk size has an interior optimum"] > 0
    assert checks["the chunk size moves with the uplink"] >= 2
    assert checks["TTFT reduction from prompt chunking (testbed)"] > 0
    assert checks["TBT reduction from speculative decoding (testbed)"] > 0
    assert checks["many devices queue at the cloud"] >= 1


def test_a_slow_downlink_pins_the_chunk_and_the_check_says_so():
    """A 20 Mbps downlink carries each chunk's hidden states back to the output layers slower than any uplink of
    the sweep sends them: the best chunk stays at 8 tokens from 20 to 200 Mbps. The check had passed on that tie
    (band from 1.0); a ratio below 2 (one power of two) fails now, and its why names the slowest stage."""
    check = next(c for c in get_scenario("hat").run({"downlink_mbps": "20"}).outcome.checks
                 if c.name == "the chunk size moves with the uplink")
    assert check.phasewise == 1.0 and check.band[0] == 2.0 and not check.passed
    assert "the downlink" in check.why and "at 200 Mbps" in check.why


def test_one_device_is_refused_as_the_queueing_check_would_compare_it_with_itself():
    with pytest.raises(PhasewiseError, match="--set devices='1' is not a number >= 2"):
        get_scenario("hat").run({"devices": "1"})


def test_device_cloud_command_plans_the_chunk_and_rejects_bad_setups(run_cli, tmp_path):
    code, out, err = run_cli("device-cloud", "--devices", "4", "--cloud-gpus", "1", "--output-len", "16", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == [1, 30, 1] and 1 < result["chunk_tokens"] < 1024
    assert result["tbt_s"] < result["plain_tbt_s"] and set(result["busy_s"]) == {
        "device dev0", "link dev0 up", "cloud gpu0", "link dev0 down"}
    code, out, err = run_cli("device-cloud", "--output-len", "1", "--devices", "2")  # the prefill's token alone
    assert code == 0 and "TTFT vs chunk size" in out and "busy" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: 2\ndevice_hardware: jetson-agx-orin\ncloud_hardware: a6000\nuplink_mbps: 50\n"
                   "downlink_mbps: 50\noutput_layers: 40\n")
    for args, match in ((["--setup", str(bad)], "leave none of the model's 32"),
                        (["--uplink-mbps", "0"], "--uplink-mbps"), (["--acceptance", "1.5"], "--acceptance"),
                        # each cloud GPU is a simulated worker: 10^11 of them hung (benchmarks/fuzz_flags.py)
                        (["--cloud-gpus", "99999999999"], "--cloud-gpus: Input should be less than or equal to 10000")):
        code, out, err = run_cli("device-cloud", *args)
        assert code == 2 and match in err and err.count("\n") == 1


def test_a_linear_attention_hybrid_runs_u_shaped():
    """LFM2-1.2B (short-conv hybrid) cut into input, middle and output parts, each at the stack's share of conv
    layers, its prompt chunked up the link: the request completes, chunking still beats one upload."""
    lfm2, setup = load_model("LiquidAI/LFM2-1.2B"), world(devices=1)
    chunked = run_device_cloud(lfm2, QUANT, ENGINE, setup, [DeviceRequest(1024, 16, 128)])
    whole = run_device_cloud(lfm2, QUANT, ENGINE, setup, [DeviceRequest(1024, 16, 0)])
    assert 0 < chunked.requests[0].ttft_s < whole.requests[0].ttft_s


def test_a_kv_shared_stack_runs_u_shaped():
    """Gemma 4 E2B with one input and one output layer on the device: up go the hidden state and the 34 cloud and
    output layers' per-layer inputs (3,072 + 34 x 512 bytes a token), down the hidden state, the output layer's
    per-layer input and the new KV of the layers its KV-shared layer reuses (2,048 + 1,024)."""
    e2b, setup = load_model("google/gemma-4-E2B-it"), world(devices=1)
    cost = UShapedCost(e2b, QUANT, ENGINE, setup)
    assert cost.up_bytes(1) == 3_072 + 34 * 512 and cost.down_bytes(1) == 3_072 + 512 + 3_072
    run = run_device_cloud(e2b, QUANT, ENGINE, setup, [DeviceRequest(512, 8, 128)])
    assert run.requests[0].ttft_s > 512 * cost.up_bytes(1) * 8 / 100e6
