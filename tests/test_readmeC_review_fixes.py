"""Review fixes (README, part C): a bare `off` as attention_offload's mode, the online_training block refusing what
the flags refuse, booleans in a points file, a parts figure's message that copies back, a device-cloud setup file
taking every flag's default, --params past the runs, and no every-TBT figure without a TBT SLO."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.fit import fit_engine, parse_points
from phasewise.sim.deployment import build_deployment, load_deployment
from phasewise.sim.online_training import training_block
from phasewise.specs import load_engine
from phasewise.specs.catalog import packaged
from phasewise.specs.device_cloud import DeviceCloud, parse_device_cloud
from phasewise.specs.hardware import load_hardware

LLAMA2 = "meta-llama/Llama-2-7b-hf"
ROW = {"run": "D1", "model": "meta-llama/Llama-2-70b-hf", "hardware": "h100-sxm", "tp": 8, "batch": 1, "prompt": 512,
       "tbt_context": 576, "ttft_ms": 53.4, "tbt_ms": 29.8}


def write(tmp_path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- 1: attention_offload {mode: off} -----------------------------------------------------------------------------

DISAGG = """model: meta-llama/Llama-2-7b-hf
attention_offload: {{mode: {mode}}}
instances:
  - {{role: prefill, hardware: a100-sxm-80gb, tp: 1, replicas: 1}}
  - {{role: decode, hardware: a100-sxm-80gb, tp: 1, replicas: 1}}
"""


@pytest.mark.parametrize("mode", ["off", "Off", "OFF", "false", "no", '"off"'])
def test_a_bare_off_is_attention_offload_mode_off(tmp_path, mode):
    """YAML 1.1 reads a bare off as false: `attention_offload: {mode: off}`, the README's form, was refused."""
    dep = load_deployment(write(tmp_path, DISAGG.format(mode=mode), "ao.yaml"))
    assert dep.attention_offload.mode == "off"


@pytest.mark.parametrize("mode", ["on", "yes", "true", "sometimes"])
def test_attention_offload_mode_names_its_values(tmp_path, mode):
    with pytest.raises(PhasewiseError, match=r"attention_offload\.mode: Input should be 'auto', 'fixed' or 'off'") \
            as caught:
        load_deployment(write(tmp_path, DISAGG.format(mode=mode), "ao.yaml"))
    assert "\n" not in str(caught.value)


# --- 2: the online_training block refuses what the flags refuse ---------------------------------------------------

def collocated_training(block: dict):
    return build_deployment({"model": "meta-llama/Llama-3.1-8B", "online_training": block,
                             "instances": [{"hardware": "h100-sxm", "tp": 4}]})


@pytest.mark.parametrize("block, flags, key, reason", [
    ({"method": "full", "host_link": "nvlink"}, dict(host_link="nvlink"), "host_link", "reuse offload"),
    ({"method": "full", "host_link": "nvlink", "reuse": "keep"}, dict(host_link="nvlink", reuse="keep"), "host_link",
     "reuse offload"),
    ({"method": "full", "lora_rank": 8}, dict(lora_rank=8), "lora_rank", "method lora"),
])
def test_the_online_training_block_refuses_what_the_flags_refuse(block, flags, key, reason):
    """{method: full, host_link: nvlink} ran (recompute, the link unused), {method: full, lora_rank: 8} ran (the
    rank ignored), where --host-link without --train-reuse-mode offload and --lora-rank without --online-training
    lora are refused."""
    with pytest.raises(PhasewiseError):
        training_block(block["method"], **flags)
    with pytest.raises(PhasewiseError, match=rf"online_training {key} applies to {reason}") as caught:
        collocated_training(block)
    assert "\n" not in str(caught.value)


def test_the_online_training_block_takes_what_the_flags_take():
    dep = collocated_training({"method": "lora", "lora_rank": 8, "reuse": "offload", "host_link": "nvlink"})
    assert (dep.online_training.lora_rank, dep.online_training.host_link) == (8, "nvlink")
    assert collocated_training({"method": "full"}).online_training.lora_rank == 16  # the default, not given
    # a default written out, as a dumped deployment holds every field, reads back (it changes nothing)
    dumped = collocated_training({"method": "full", "host_link": "pcie", "lora_rank": 16, "reuse": "keep"})
    assert dumped == build_deployment(dumped.model_dump())


# --- 3: booleans in a points file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["ttft_ms", "tbt_ms", "tp", "batch", "prompt", "tbt_context", "max_model_len"])
def test_a_points_file_refuses_true_where_a_number_goes(key):
    """ttft_ms: true was fitted as a measured 1 ms (batch: true, tp: true as 1)."""
    with pytest.raises(PhasewiseError, match=rf"points\[1\]: {key}: must be a number, not true"):
        parse_points({"points": [ROW, {**ROW, "run": "D2", key: True}]}, "points file 'p.yaml'")


# --- 4: a parts figure's message copies back ----------------------------------------------------------------------

def chip(**changes) -> dict:
    entry = copy.deepcopy(dict(packaged("hardware_specs.yaml")["hardware"]["spad-decode-chip"]))
    entry.pop("aliases", None)
    entry.update(changes)
    return entry


@pytest.mark.parametrize("field", ["tdp_w", "idle_w", "memory_bandwidth_bytes_per_s", "peak_flops"])
def test_the_parts_figure_a_refusal_prints_is_accepted(tmp_path, field):
    """The message printed the parts' figure to 4 digits (tdp_w 597.5 beside parts that give 597.5068: 'which give
    tdp_w 597.5'), so the figure it gave was refused again; it prints the figure in full, and that is accepted."""
    hw = load_hardware("spad-decode-chip")
    theirs = {"idle_w": hw.idle_power_w}.get(field, getattr(hw, field, None))
    rounded = ({k: float(f"{v:.4g}") for k, v in theirs.items()} if isinstance(theirs, dict)
               else float(f"{theirs:.4g}"))
    assert rounded != theirs  # else this chip cannot show the rounding
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(chip(**{field: rounded}), sort_keys=False))
    with pytest.raises(PhasewiseError, match=rf"which give {field} (.*): remove one") as caught:
        load_hardware(str(path))
    printed = str(caught.value).split(f"which give {field} ", 1)[1].split(": remove one")[0]
    path.write_text(yaml.safe_dump(chip(), sort_keys=False).rstrip("\n") + f"\n{field}: {printed}\n")
    again = load_hardware(str(path))  # copied back: accepted, the same chip
    assert (again.tdp_w, again.idle_power_w, again.peak_flops) == (hw.tdp_w, hw.idle_power_w, hw.peak_flops)


# --- 5: a device-cloud setup file takes every flag's default ------------------------------------------------------

def test_every_device_cloud_field_defaults_to_its_flag():
    """A setup file with only cloud_hardware was refused (devices, device_hardware, uplink_mbps, downlink_mbps
    required) where the README has a field left out take the flag's default."""
    from phasewise.apps.cli_devices import DEVICE_CLOUD_FLAGS, device_cloud_cmd

    flags = {name: p.default for name, p in inspect.signature(device_cloud_cmd).parameters.items()}
    for key, field in DeviceCloud.model_fields.items():
        flag = "latency_ms" if key == "latency_s" else key
        assert flag in DEVICE_CLOUD_FLAGS, key
        assert field.default == (flags[flag] / 1e3 if key == "latency_s" else flags[flag]), key
    from_flags = {k: flags["latency_ms"] / 1e3 if k == "latency_s" else flags[k] for k in DeviceCloud.model_fields}
    assert parse_device_cloud({"cloud_hardware": "a6000"}) == parse_device_cloud(from_flags) == parse_device_cloud({})


def test_a_device_cloud_file_with_one_field_runs_as_the_flags(tmp_path, run_cli):
    path = write(tmp_path, "cloud_hardware: a6000\n", "dc.yaml")
    args = ("device-cloud", "--output-len", "2", "--chunk", "256", "--draft-tokens", "0", "--json")
    code, from_file, err = run_cli(*args[:1], "--setup", path, *args[1:])
    assert code == 0, err
    code, from_flags, err = run_cli(*args)
    assert code == 0, err
    assert from_file == from_flags


# --- 6: --params past the runs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("runs, holdout, message", [
    (1, "none", r"--params per_sequence_overhead_s,eager_launch_s,elementwise_passes: 3 constants, and the fit has "
                r"1 run: a fit determines at most one constant a run, so --params takes at most 1 \(of "),
    (3, "every-other", r"3 constants, and the fit has 2 runs, 1 more held out by --holdout every-other: .*--params "
                       r"takes at most 2"),
])
def test_more_constants_than_runs_names_params(tmp_path, run_cli, runs, holdout, message):
    """`fit-engine ONE-RUN.yaml --holdout none` said '3 constants cannot be fitted on 1 runs', naming no flag."""
    rows = [{**ROW, "run": f"D{i}"} for i in range(runs)]
    path = write(tmp_path, yaml.safe_dump({"points": rows}), "points.yaml")
    code, _, err = run_cli("fit-engine", path, "--holdout", holdout)
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(message, err), err


def test_fit_engine_says_how_many_constants_it_takes():
    point = parse_points({"points": [ROW]}, "p")[:1]
    with pytest.raises(PhasewiseError, match=r"2 constants cannot be fitted on 1 run: a fit determines at most one "
                                             r"constant a run \(give at most 1\)"):
        fit_engine(point, load_engine("vllm-2023"), ("eager_launch_s", "per_sequence_overhead_s"))


# --- 9: no every-TBT figure without a TBT SLO ---------------------------------------------------------------------

def test_no_every_tbt_figure_without_a_tbt_slo(run_cli):
    """'SLO TTFT <= 1000 ms and TPOT <= 100 ms: attainment 7.3% (TTFT 44.1%, TPOT 37.0%, every TBT 100.0%)': the
    every-TBT share of a run with no TBT SLO is only the share that finished."""
    base = ("simulate", "--model", LLAMA2, "--requests", "20", "--rate", "5")
    code, out, err = run_cli(*base, "--slo-ttft-ms", "1000", "--slo-tpot-ms", "100")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("SLO "))
    assert "every TBT" not in line and "TPOT" in line
    code, out, err = run_cli(*base, "--slo-tbt-ms", "500")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("SLO "))
    assert "every TBT <= 500 ms: attainment" in line and ", every TBT " in line.split(": attainment", 1)[1]
