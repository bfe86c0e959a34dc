"""A reviewer's defects in fit-engine, sweep, edge / device-cloud, the Ray backend and estimate's start-up flags:
each reproduced here as it was found, one test each."""

from __future__ import annotations

import csv
import json
import math
import socket
import time
from types import SimpleNamespace

import pytest
import yaml

from phasewise.errors import PhasewiseError

LLAMA70 = "meta-llama/Llama-2-70b-hf"
# Splitwise's measured vLLM points (the bundled file's first rows: within Llama-2's 4,096-token context)
ROW = ("{{run: {}, model: " + LLAMA70 + ", hardware: h100-sxm, tp: {}, batch: {}, prompt: {}, tbt_context: {}, "
       "ttft_ms: {}, tbt_ms: {}}}")
POINTS = "points:\n" + "".join(f"  - {ROW.format(*row)}\n" for row in (
    ("D1", 8, 1, 512, 576, 53.4, 29.8), ("D2", 8, 1, 2048, 2112, 136.8, 31.1), ("D4", 8, 16, 512, 576, 811.9, 34.2),
    ("D8", 4, 1, 512, 576, 59.6, 29.7)))


def _file(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _one_line(err: str) -> bool:
    return err.startswith("error: ") and len(err.strip().splitlines()) == 1


# --- fit-engine ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["vllm@0.12", "trtllm", "vllm-v0"])
def test_fit_engine_takes_a_preset_as_simulate_and_estimate_do(run_cli, tmp_path, engine):
    """`--engine vllm@0.12` (as the README documents) said "unknown engine 'vllm@0.12'": run_fit read host profiles
    only."""
    out = tmp_path / "fit.yaml"
    code, _, err = run_cli("fit-engine", _file(tmp_path, "p.yaml", POINTS), "--engine", engine, "--params",
                           "eager_launch_s", "--out", str(out))
    assert code == 0, err
    assert f"preset: {engine}" in out.read_text()


def _estimate_ms(run_cli, engine: str, tp: int, batch: int, prompt: int, context: int) -> tuple[float, float]:
    code, out, err = run_cli("estimate", "--engine", engine, "--model", LLAMA70, "--tp", str(tp), "--batch",
                             str(batch), "--prompt-len", str(prompt), "--context-len", str(context), "--precision",
                             "fp16", "--json")
    assert code == 0, err
    result = json.loads(out)
    return result["prefill"]["latency_ms"], result["decode"]["latency_ms"]


def test_fit_engine_reports_the_errors_of_the_engine_it_writes_and_of_the_preset(run_cli, tmp_path):
    """The table's fitted column is what `estimate --engine FILE` predicts, the unfitted one `estimate --engine vllm`
    (they were the bare host profile's: D1 TTFT 54.15 ms fitted against the file's 52.64)."""
    out = tmp_path / "fit.yaml"
    code, text, err = run_cli("fit-engine", _file(tmp_path, "p.yaml", POINTS), "--params",
                              "per_sequence_overhead_s,eager_launch_s", "--out", str(out), "--json")
    assert code == 0, err
    rows = {r["figure"]: r for r in json.loads(text)["points"]}
    for run, tp, batch, prompt, context in (("D1", 8, 1, 512, 576), ("D4", 8, 16, 512, 576), ("D8", 4, 1, 512, 576)):
        for engine, column in ((str(out), "fitted_error"), ("vllm", "start_error")):
            ttft, tbt = _estimate_ms(run_cli, engine, tp, batch, prompt, context)
            for figure, predicted in ((f"{run} TTFT", ttft), (f"{run} TBT", tbt)):
                row = rows[figure]
                assert row["measured_ms"] * (1 + row[column]) == pytest.approx(predicted, rel=1e-9), (figure, engine)


@pytest.mark.parametrize("row, message", [
    ("{run: A, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, prompt: 200000, ttft_ms: 40}",
     "points[0].prompt: 200,000 tokens are beyond meta-llama/Llama-3.1-8B's 131,072-token context"),
    ("{run: A, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, tbt_context: 140000, tbt_ms: 9}",
     "points[0].tbt_context: 140,000 tokens"),
    (f"{{run: A, model: {LLAMA70}, hardware: h100-sxm, tp: 1, batch: 64, prompt: 4096, ttft_ms: 40}}",
     "points[0]: meta-llama/Llama-2-70b-hf with a batch of 64 at 4,097 tokens does not fit on h100-sxm at tp=1"),
    ("{run: A, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, tp: 3, prompt: 512, ttft_ms: 40}",
     "points[0].tp: tp 3 does not divide num_attention_heads=32"),
    ("{run: A, model: meta-llama/Llama-3.1-8B, hardware: nosuch, prompt: 512, ttft_ms: 40}",
     "points[0].hardware: unknown hardware 'nosuch'"),
    ("{run: A, model: nosuch, hardware: h100-sxm, prompt: 512, ttft_ms: 40}", "points[0].model: unknown model"),
    ("{run: A, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, precision: nosuch, prompt: 512, ttft_ms: 40}",
     "points[0].precision: unknown precision 'nosuch'"),
])
def test_fit_engine_refuses_a_row_estimate_would_refuse(run_cli, tmp_path, row, message):
    """A points row past the model's context, a batch that does not fit, a TP that does not split the model, an
    unknown model / chip / precision: one line naming the file, points[i] and the key (rows past the context were
    fitted; the others said '--tp 3 ...' or a bare "unknown hardware 'nosuch'")."""
    good = "{run: B, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, prompt: 512, ttft_ms: 40}"
    path = _file(tmp_path, "p.yaml", f"points:\n  - {row}\n  - {good}\n")
    code, _, err = run_cli("fit-engine", path, "--params", "eager_launch_s")
    assert code == 2 and _one_line(err) and message in err and f"points file '{path}'" in err, err


def test_a_row_that_served_a_longer_context_says_so(run_cli, tmp_path):
    """Splitwise ran Llama-2-70B at 8,192-token prompts (past its 4,096): the row's max_model_len takes it."""
    row = (f"{{run: D3, model: {LLAMA70}, hardware: h100-sxm, tp: 8, batch: 1, prompt: 8192, tbt_context: 8256, "
           "ttft_ms: 844.9, tbt_ms: 31.4")
    for extra, code_wanted in (("", 2), (", max_model_len: 8257", 0)):
        path = _file(tmp_path, "p.yaml", POINTS + f"  - {row}{extra}}}\n")
        code, _, err = run_cli("fit-engine", path, "--params", "eager_launch_s")
        assert code == code_wanted, err
    assert "max_model_len" in run_cli("fit-engine", _file(tmp_path, "q.yaml", POINTS + f"  - {row}}}\n"))[2]


def test_fit_engine_on_one_run_refuses_to_hold_nothing_out(run_cli, tmp_path):
    """A one-run file with the default --holdout every-other held nothing out, silently."""
    path = _file(tmp_path, "p1.yaml", "points:\n  - {run: A, model: meta-llama/Llama-3.1-8B, hardware: h100-sxm, "
                                       "batch: 1, prompt: 512, ttft_ms: 40, tbt_context: 512, tbt_ms: 8}\n")
    code, _, err = run_cli("fit-engine", path, "--params", "eager_launch_s")
    assert code == 2 and _one_line(err) and "--holdout every-other" in err and "--holdout none" in err
    code, out, err = run_cli("fit-engine", path, "--params", "eager_launch_s", "--holdout", "none", "--json")
    assert code == 0 and json.loads(out)["held_out_runs"] == 0, err


# --- sweep ---------------------------------------------------------------------------------------------------------

SWEEP = """models: [{models}]
hardware: [{hardware}]
gpus: 1
workloads:
  - {{name: a, isl: 64, osl: 8{workload}}}
slo: {{ttft_ms: 1000, tbt_ms: 100}}
strategies: {{tp_options: [1], chunk_sizes: [512], batch_caps: [64], disaggregated: false{strategies}}}
"""


def _sweep(tmp_path, models="Qwen/Qwen3-0.6B", hardware="h100-sxm", workload="", strategies="") -> str:
    return _file(tmp_path, "grid.yaml", SWEEP.format(models=models, hardware=hardware, workload=workload,
                                                     strategies=strategies))


@pytest.mark.parametrize("fields, message", [
    ({"strategies": ", routers: [bogus]"}, "strategies.routers: 'bogus' is not one of"),
    ({"strategies": ", policies: [nope]"}, "strategies.policies: 'nope' is not one of"),
    ({"models": "meta-llama/Llama-3.1-8B", "strategies": ", speculative: [false, true]"},
     "plans MTP speculative decoding"),
    ({"strategies": ", tp_option: [1]"}, "strategies.tp_option is not an option"),
    ({"strategies": ", speculative: [false, true], spec_tokens: 99"},
     "strategies.spec_tokens must be an integer from 1 to 16"),
    ({"models": "nosuch"}, "models.0: unknown model 'nosuch'"),
    ({"hardware": "nosuch"}, "hardware.0: unknown hardware 'nosuch'"),
    ({"strategies": ", engine: nosuch"}, "strategies.engine: unknown engine 'nosuch'"),
    ({"strategies": ", precisions: [nosuch]"}, "strategies.precisions.0: unknown precision 'nosuch'"),
    ({"workload": ", images_per_request: 1"}, "workload 'a': images_per_request needs image_size"),
    ({"models": "llama-3.1-8b, meta-llama/Llama-3.1-8B"},
     "models names one model twice: llama-3.1-8b and meta-llama/Llama-3.1-8B"),
])
def test_sweep_errors_name_the_file_and_the_key(run_cli, tmp_path, fields, message):
    """Sweep errors named plan's flags (--router, --policies, --spec, --images-per-request), left out the file
    (strategies.*) or the entry (a bare "unknown model 'nosuch'"); a model named twice by two names ran twice."""
    path = _sweep(tmp_path, **fields)
    code, _, err = run_cli("sweep", path, "--out", str(tmp_path / "g.csv"))
    assert code == 2 and _one_line(err) and f"sweep config '{path}'" in err and message in err, err
    assert " --" not in err.split(message)[0]  # no plan flag before the key


def test_sweep_rows_have_tbt_and_no_per_joule_figure_without_a_tdp(run_cli, tmp_path):
    """A chip with no TDP gave goodput_requests_per_joule 0.0 (unknown is NaN, as per dollar); the CSV had no TBT
    column though slo.tbt_ms binds."""
    code, chip, _ = run_cli("hardware", "h100-sxm", "--yaml")
    data = yaml.safe_load(chip)
    next(iter(data["hardware"].values()))["tdp_w"] = 0
    hw = _file(tmp_path, "notdp.yaml", yaml.safe_dump(data))
    out = tmp_path / "g.csv"
    code, _, err = run_cli("sweep", _sweep(tmp_path, hardware=hw), "--out", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert rows and all(math.isnan(float(r["search_requests_per_joule"])) for r in rows)
    assert all(float(r["tbt_p99_ms"]) > 0 for r in rows)


def test_per_joule_is_nan_where_no_power_was_simulated():
    from phasewise.plan.sweep import _per_joule

    def result(power_w: float):
        deployment = {"instances": [{"hardware": "h100-sxm", "tp": 1}]}
        return SimpleNamespace(goodput_rps=2.0, power_w=lambda: power_w,
                               strategy=SimpleNamespace(deployment=deployment))

    assert math.isnan(_per_joule(result(0.0))) and _per_joule(result(100.0)) == pytest.approx(0.02)


# --- edge and device-cloud ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, args, message", [
    ("edge", ["--prompt-len", "4000"], "= 4128 tokens exceed lmsys/vicuna-7b-v1.3's 2,048-token context"),
    ("device-cloud", ["--prompt-len", "5000"], "= 5064 tokens exceed meta-llama/Llama-2-7b-hf's 4,096-token"),
    ("edge", ["--mbps", "0"], "--mbps is each link's bandwidth"),
    ("edge", ["--latency-ms", "-1"], "--latency-ms is each link's latency"),
    ("edge", ["--devices", "nosuch,jetson-agx-orin"], "--devices: unknown hardware 'nosuch'"),
    ("device-cloud", ["--cloud-hardware", "nosuch"], "--cloud-hardware: unknown hardware 'nosuch'"),
    ("device-cloud", ["--uplink-mbps", "0"], "--uplink-mbps: Input should be greater than 0"),
    ("device-cloud", ["--chunk", "5000"], "--chunk 5000 is longer than the prompt (--prompt-len 1024)"),
    ("edge", ["--output-len", "0"], "--output-len"),
])
def test_edge_and_device_cloud_refuse_in_one_line_naming_the_flag(run_cli, command, args, message):
    """A prompt past the model's context ran; --mbps 0 said 'topology: link 0: bandwidth_bps'; an unknown cloud
    chip was a bare 'unknown hardware'; --chunk 5000 with a 1,024-token prompt printed 'prompt chunk 5000 tokens'."""
    code, _, err = run_cli(command, *args)
    assert code == 2 and _one_line(err) and message in err, err


def test_topology_and_setup_files_name_their_own_keys(run_cli, tmp_path):
    devices = "devices:\n  - {name: a, hardware: jetson-agx-orin}\n  - {name: b, hardware: jetson-agx-orin}\n"
    topo = _file(tmp_path, "t.yaml", devices + "links:\n  - {a: a, b: b, mbps: 0}\n")
    code, _, err = run_cli("edge", "--topology", topo)
    assert code == 2 and "link 0: mbps: Input should be greater than 0" in err
    setup = _file(tmp_path, "dc.yaml", "devices: 2\ndevice_hardware: jetson-agx-orin\ncloud_hardware: nosuch\n"
                                       "uplink_mbps: 10\ndownlink_mbps: 10\n")
    code, _, err = run_cli("device-cloud", "--setup", setup)
    assert code == 2 and f"device-cloud '{setup}': cloud_hardware: unknown hardware 'nosuch'" in err


def test_a_second_link_between_two_devices_is_refused(run_cli, tmp_path):
    """a-b at 10 Mbit/s then b-a at 100: the second was silently unused (the route takes the first)."""
    topo = _file(tmp_path, "t.yaml", "devices:\n  - {name: a, hardware: jetson-agx-orin}\n"
                                     "  - {name: b, hardware: jetson-agx-orin}\n"
                                     "links:\n  - {a: a, b: b, mbps: 10}\n  - {a: b, b: a, mbps: 100}\n")
    code, _, err = run_cli("edge", "--topology", topo)
    assert code == 2 and _one_line(err) and "links 0 and 1 both join 'b' and 'a'" in err, err


def test_output_len_counts_as_simulates_osl(run_cli):
    """--output-len N is N output tokens, the prefill's first included: N - 1 decode steps, the TPOT (TBT) over
    them (it was the prefill's token and N more steps, the TPOT over N)."""
    code, out, err = run_cli("edge", "--prompt-len", "64", "--output-len", "9", "--split", "8,8,8,8",
                             "--subsequences", "1", "--json")
    assert code == 0, err
    edge = json.loads(out)
    assert edge["decode_steps"] == 8 and edge["output_tokens"] == 9
    assert edge["tpot_s"] == pytest.approx((edge["total_s"] - edge["ttft_s"]) / 8)
    code, out, err = run_cli("edge", "--prompt-len", "64", "--output-len", "1", "--split", "8,8,8,8",
                             "--subsequences", "1", "--json")
    assert code == 0 and json.loads(out)["decode_steps"] == 0, err
    code, out, err = run_cli("device-cloud", "--devices", "1", "--cloud-gpus", "1", "--draft-tokens", "0",
                             "--prompt-len", "64", "--output-len", "9", "--chunk", "64", "--json")
    assert code == 0, err
    cloud = json.loads(out)
    assert cloud["tbt_s"] == pytest.approx((cloud["end_s"] - cloud["ttft_s"]) / 8)


# --- Ray, estimate, plan -------------------------------------------------------------------------------------------

def test_an_address_without_a_ray_cluster_fails_fast_naming_the_flag():
    """--ray-address 127.0.0.1:1 hung over two minutes with Ray's GCS warnings."""
    pytest.importorskip("ray")
    from phasewise.plan.backends import run_all

    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PhasewiseError, match=f"--ray-address '127.0.0.1:{port}': no Ray cluster answers there"):
        run_all(abs, [(1,)], "ray", None, f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30


def test_compile_cache_on_an_engine_that_compiles_nothing_is_refused(run_cli):
    """`estimate --engine sglang --compile-cache cold` was silently ignored (only vLLM V1 compiles at start-up)."""
    code, _, err = run_cli("estimate", "--engine", "sglang", "--compile-cache", "cold")
    assert code == 2 and _one_line(err) and "--compile-cache cold does not apply to engine 'sglang" in err
    code, _, err = run_cli("estimate", "--engine", "vllm", "--compile-cache", "warm", "--json")
    assert code == 0, err


def test_price_refusal_suggests_only_objectives_the_chip_has(run_cli, tmp_path):
    """A chip with neither a price nor a TDP was pointed to --objective ... power, which refuses it too."""
    from phasewise.plan.planner import require_prices
    from phasewise.plan.strategies import PlanOptions

    code, chip, _ = run_cli("hardware", "h100-sxm", "--yaml")
    data = yaml.safe_load(chip)
    entry = next(iter(data["hardware"].values()))
    entry.update(tdp_w=0, price_per_hour_usd=0)
    hw = _file(tmp_path, "bare.yaml", yaml.safe_dump(data))
    with pytest.raises(PhasewiseError, match="goodput-per-dollar") as caught:
        require_prices("goodput-per-dollar", hw, PlanOptions())
    assert "power" not in str(caught.value).split("or rank by")[1]
