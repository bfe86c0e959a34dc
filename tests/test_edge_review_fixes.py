"""Review fixes of `edge` and `device-cloud`: the S planned for the user's split, links that send one sender's
transfers one after another, the proportional split on mixed devices, a topology file's split, YAML's true where a
number goes, outline points that share the output's tokens, one set of device-cloud defaults, link flags that would
mean nothing."""

from __future__ import annotations

import inspect
import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.plan.edge_split import proportional_split
from phasewise.sim.split_model import SplitModel
from phasewise.sim.split_pipeline import DecodePlan, run_split, sub_sequence_lengths
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.device_cloud import DeviceCloud, parse_device_cloud
from phasewise.specs.topology import chain_topology, parse_topology

VICUNA, BF16, IDEAL = load_model("lmsys/vicuna-7b-v1.3"), load_quant("bf16"), load_engine("ideal")
ORIN = "jetson-agx-orin"
SETUP = {"devices": 4, "device_hardware": ORIN, "cloud_hardware": "a6000", "uplink_mbps": 100, "downlink_mbps": 100}


def orins(count: int, mbps: float, split: list[int], latency_s: float = 0.0, jitter_s: float = 0.0) -> SplitModel:
    topology = chain_topology([ORIN] * count, mbps, latency_s, jitter_s)
    return SplitModel(VICUNA, BF16, IDEAL, topology, [load_hardware(ORIN)] * count, split)


def test_a_given_split_runs_the_s_planned_for_it(run_cli):
    """`edge --split 2,2,28` with --subsequences 0 (planned) runs the S of least TTFT for that split, and its curve
    is that split's: it ran S=12, the S planned for another split, 1.448 s against 1.132 s at S=4."""
    code, out, err = run_cli("edge", "--devices", ",".join([ORIN] * 3), "--mbps", "100", "--split", "2,2,28",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    split = orins(3, 100, [2, 2, 28], 1e-3)
    curve = [(s, run_split(split, 640, 0, s).ttft_s) for s in range(1, 17)]
    best_s, best_ttft = min(curve, key=lambda x: x[1])
    assert result["sub_sequences"] == best_s and result["ttft_s"] == pytest.approx(best_ttft, rel=1e-12)
    assert result["split"] == [2, 2, 28] and result["planned"] == "S"
    assert [s for s, _ in result["ttft_by_sub_sequences"]] == list(range(1, 17))
    assert [t for _, t in result["ttft_by_sub_sequences"]] == pytest.approx([t for _, t in curve], rel=1e-12)


def test_one_senders_transfers_leave_one_after_another():
    """Three Orins at 100 Mbit/s, no latency, split [11, 11, 10]: each stage and each link takes the sub-sequences in
    order, one at a time (a FIFO stream, as one socket sends), so the TTFT is the hand recursion's; the links split
    their bandwidth between one sender's sub-sequences before (processor sharing): 0.965 s at S=2 against 0.822."""
    split = orins(3, 100, [11, 11, 10])
    bandwidth = 100e6 / 8
    for subs in (2, 4, 8):
        free = [0.0] * 5  # device 0, link 0-1, device 1, link 1-2, device 2
        cached = 0
        for j, tokens in enumerate(sub_sequence_lengths(640, subs)):
            t = 0.0
            for stage in range(3):
                t = free[2 * stage] = max(t, free[2 * stage]) + split.stage_s(
                    stage, [(tokens, cached, int(j == subs - 1))])
                if stage < 2:
                    t = free[2 * stage + 1] = max(t, free[2 * stage + 1]) + split.boundary_bytes(stage,
                                                                                                 tokens) / bandwidth
            cached += tokens
        assert run_split(split, 640, 0, subs).ttft_s == pytest.approx(t, rel=1e-9)


def test_a_stream_delivers_in_order_under_jitter():
    """Link jitter delays a transfer, never past the one its sender sent after it (a stream delivers in order)."""
    run = run_split(orins(2, 1000, [16, 16], 1e-3, 0.05), 640, 0, 8, seed=3)
    ends = [s.end_s for s in sorted((s for s in run.spans if s.resource.startswith("link")),
                                    key=lambda s: int(s.label.split()[-1]))]
    assert ends == sorted(ends)


def test_the_proportional_split_keeps_a_layer_on_every_device(run_cli):
    """Three Orins and a B200: raising the Orins' shares to one layer took the last one back from an Orin, [0, 1, 1,
    30], a one-line error for the default --split auto."""
    split = proportional_split([1.0, 1.0, 1.0, 100.0], 32)
    assert sum(split) == 32 and min(split) == 1 and split[3] == 29
    assert proportional_split([1.0, 1.0, 2.0], 32) == [8, 8, 16]
    code, out, err = run_cli("edge", "--devices", ",".join([ORIN] * 3 + ["b200"]), "--subsequences", "1",
                             "--output-len", "2", "--json")
    assert code == 0, err
    assert sum(json.loads(out)["split"]) == 32


def test_a_topology_files_split_is_used_and_checked(run_cli, tmp_path):
    """Without --split the file's `split:` runs (it was silently replaced by a planned one); a file's split that
    covers 33 of 32 layers is a one-line error even beside --split auto (it ran)."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    devices = f"devices: [{{name: a, hardware: {ORIN}}}, {{name: b, hardware: {ORIN}}}]\n" \
              "links: [{a: a, b: b, mbps: 100}]\n"
    good.write_text(devices + "split: [30, 2]\n")
    bad.write_text(devices + "split: [[0, 16], [16, 33]]\n")
    code, out, err = run_cli("edge", "--topology", str(good), "--subsequences", "1", "--output-len", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["split"] == [30, 2]
    assert json.loads(out)["planned"] is None
    code, out, err = run_cli("edge", "--topology", str(good), "--split", "auto", "--subsequences", "1",
                             "--output-len", "2", "--json")
    assert code == 0 and json.loads(out)["planned"] == "split", err
    for extra in ((), ("--split", "auto")):
        code, _, err = run_cli("edge", "--topology", str(bad), "--subsequences", "1", *extra)
        assert code == 2 and "covers 33 layers, the model has 32" in err and err.count("\n") == 1


@pytest.mark.parametrize("key", ["devices", "cloud_gpus", "uplink_mbps", "downlink_mbps", "latency_s",
                                 "input_layers"])
def test_yaml_true_is_no_number_in_a_device_cloud_setup(key):
    with pytest.raises(PhasewiseError, match=f"{key}: must be a number, not true"):
        parse_device_cloud({**SETUP, key: True})


@pytest.mark.parametrize("key", ["latency_s", "jitter_s", "bandwidth_bps"])
def test_yaml_true_is_no_number_in_a_topology_link(key):
    link = {"a": "x", "b": "y", **({} if key == "bandwidth_bps" else {"mbps": 100}), key: True}
    with pytest.raises(PhasewiseError, match=f"link 0: {key}: must be a number, not true"):
        parse_topology({"devices": [{"name": n, "hardware": ORIN} for n in "xy"], "links": [link]})
    ok = parse_topology({"devices": [{"name": n, "hardware": ORIN} for n in "xy"],
                         "links": [{"a": "x", "b": "y", "mbps": 100, "latency_s": "1e-3"}]})  # YAML's 1e-3 is text
    assert ok.links[0].latency_s == 1e-3


def test_outline_points_share_the_output_and_no_more(run_cli):
    """10 tokens over 4 points are 3 + 3 + 2 + 2 decode steps (each point took ceil(10 / 4) = 3: 12); more points than
    decoded tokens is a one-line error naming --outline-points (16 points decoded 16 tokens for --output-len 10)."""
    split = orins(4, 1000, [8, 8, 8, 8], 1e-3)
    assert run_split(split, 640, 10, 1, DecodePlan(points=4)).decode_steps == 10
    assert run_split(split, 640, 2, 1, DecodePlan(points=4)).decode_steps == 2
    for output_len in ("10", "2"):
        code, _, err = run_cli("edge", "--split", "8,8,8,8", "--subsequences", "1", "--output-len", output_len,
                               "--outline-points", "16")
        assert code == 2 and "--outline-points 16: more points than the" in err and err.count("\n") == 1


def test_a_setup_file_and_the_flags_share_one_set_of_defaults():
    """A setup file without cloud_gpus / latency_s ran 1 GPU at 0 ms where the flags' defaults are 8 and 10 ms."""
    from phasewise.apps.cli_devices import device_cloud_cmd

    flags = {name: p.default for name, p in inspect.signature(device_cloud_cmd).parameters.items()}
    fields = DeviceCloud.model_fields
    for key in ("cloud_gpus", "input_layers", "output_layers", "adapter_layers"):
        assert fields[key].default == flags[key], key
    assert fields["latency_s"].default == flags["latency_ms"] / 1e3
    setup = parse_device_cloud(SETUP)
    assert (setup.cloud_gpus, setup.latency_s) == (8, 0.01)


def test_link_flags_that_mean_nothing_are_refused(run_cli):
    """One device has no link for --mbps / --latency-ms to set (they ran as if absent); device-cloud's links must be
    finite, as edge's --mbps is."""
    for args, match in ((("--mbps", "5"), "--mbps"), (("--latency-ms", "1"), "--latency-ms")):
        code, _, err = run_cli("edge", "--devices", ORIN, "--subsequences", "1", *args)
        assert code == 2 and f"{match}: --devices names one device" in err and err.count("\n") == 1
    code, _, err = run_cli("edge", "--devices", ORIN, "--subsequences", "1", "--output-len", "2", "--json")
    assert code == 0, err
    for flag in ("--uplink-mbps", "--downlink-mbps"):
        code, _, err = run_cli("device-cloud", flag, "inf")
        assert code == 2 and f"{flag}: Input should be a finite number" in err and err.count("\n") == 1
    with pytest.raises(PhasewiseError, match="downlink_mbps: Input should be a finite number"):
        parse_device_cloud({**SETUP, "downlink_mbps": float("inf")})
