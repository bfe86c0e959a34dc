"""A chip's vendor and FP4 formats: TensorRT-LLM runs on NVIDIA GPUs only (refused on an AMD chip by `simulate`,
a pruned line beside other chips or engines in `plan`); AMD CDNA4's FP4 path takes MXFP4's E8M0 scales, not NVFP4's
(refused, never costed at the FP4 rate); launch scripts give an AMD worker its GPUs with HIP_VISIBLE_DEVICES."""

from __future__ import annotations

import pytest
import yaml

from phasewise.apps.launch import launch_commands
from phasewise.apps.launch_args import engine_flags
from phasewise.errors import PhasewiseError
from phasewise.plan.planner import PlanOptions
from phasewise.plan.strategies import NoStrategyFits, enumerate_strategies
from phasewise.sim.deployment import build_deployment
from phasewise.specs import load_hardware, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.engine_refusals import vendor_refusal
from phasewise.specs.engines import resolve_engine

SMALL_MODEL = "meta-llama/Llama-3.1-8B"
OSS = "openai/gpt-oss-120b"


def test_every_catalog_gpu_names_its_vendor():
    for key, entry in packaged("hardware_specs.yaml")["hardware"].items():
        chip = load_hardware(key)
        if entry.get("kind", "gpu") == "gpu":
            assert chip.vendor == ("amd" if key.startswith("mi3") else "nvidia"), key
    assert load_hardware("jetson-agx-orin").vendor == "nvidia"
    assert load_hardware("spad-prefill-chip").vendor is None  # a chip that does not exist: any engine


def test_tensorrt_llm_on_an_amd_gpu_is_a_one_line_error_naming_the_engines_that_run_there():
    mi300x = load_hardware("mi300x")
    for engine in ("trtllm", "trtllm@1.2", "trtllm-bench", "trtllm-0.5"):
        with pytest.raises(PhasewiseError) as info:
            resolve_engine(engine, mi300x)
        message = str(info.value)
        assert "\n" not in message and "NVIDIA GPUs only" in message and "'mi300x' is an AMD chip" in message
        assert "vllm" in message and "sglang" in message and "trtllm" not in message.split("engines for it:")[1]
    for engine in ("vllm", "sglang"):
        assert vendor_refusal(engine, mi300x) is None
        resolve_engine(engine, mi300x)
    assert vendor_refusal("trtllm", load_hardware("b200")) is None
    assert vendor_refusal("trtllm", load_hardware("spad-decode-chip")) is None


def test_simulate_refuses_tensorrt_llm_on_mi300x(run_cli):
    code, out, err = run_cli("simulate", "--model", SMALL_MODEL, "--hardware", "mi300x", "--engine", "trtllm",
                             "--rate", "1", "--requests", "5")
    assert code != 0 and "engine 'trtllm' runs on NVIDIA GPUs only" in out + err and "Traceback" not in out + err


def test_a_plan_over_chips_and_engines_leaves_out_tensorrt_llm_on_amd_and_says_so():
    opts = PlanOptions(engine="vllm,trtllm", tp_options=(1,), chunk_sizes=(), ratios=(), batch_caps=(64,))
    strategies, pruned = enumerate_strategies(SMALL_MODEL, "mi300x,h100-sxm", 1, opts)
    pairs = {(s.details["chip"], s.details["engine"]) for s in strategies}
    assert pairs == {("mi300x", "vllm"), ("h100-sxm", "vllm"), ("h100-sxm", "trtllm")}
    assert any(line.startswith("mi300x: trtllm: engine 'trtllm' runs on NVIDIA GPUs only") for line in pruned)
    with pytest.raises(NoStrategyFits, match="runs on NVIDIA GPUs only"):  # alone: the plan's one-line answer
        enumerate_strategies(SMALL_MODEL, "mi300x", 1, PlanOptions(engine="trtllm", tp_options=(1,)))


def test_nvfp4_is_refused_on_an_fp4_path_that_takes_mx_scales_only():
    mi355x, b200 = load_hardware("mi355x"), load_hardware("b200")
    assert mi355x.fp4_formats == ("mxfp4",) and b200.fp4_formats == ("nvfp4", "mxfp4")
    with pytest.raises(PhasewiseError) as info:
        load_quant("nvfp4").on(mi355x)
    assert "\n" not in str(info.value) and "for mxfp4 only, not nvfp4" in str(info.value)
    assert load_quant("mxfp4").on(mi355x).compute_dtype == "fp4"  # the native MX path
    assert load_quant("mxfp4-w4a8").on(mi355x).compute_dtype == "fp8"  # MXFP4 x MXFP8 on the f8f6f4 MFMA
    assert load_quant("nvfp4").on(b200).compute_dtype == "fp4"
    mi300x = load_hardware("mi300x")
    with pytest.raises(PhasewiseError, match="no fp4 compute path"):  # no FP4 path at all: refused as before
        mi300x.peak(load_quant("nvfp4").on(mi300x).compute_dtype)


def test_simulate_names_the_fp4_format_mi355x_takes(run_cli):
    code, out, err = run_cli("simulate", "--model", SMALL_MODEL, "--hardware", "mi355x", "--precision", "nvfp4",
                             "--rate", "1", "--requests", "5")
    assert code != 0 and "fp4 tensor path for mxfp4 only, not nvfp4" in out + err
    code, out, err = run_cli("simulate", "--model", SMALL_MODEL, "--hardware", "mi355x", "--precision", "mxfp4",
                             "--rate", "1", "--requests", "5")
    assert code == 0, out + err


@pytest.mark.parametrize("field, value, allowed", [("vendor", "intel", "nvidia"), ("fp4_formats", ["int4"], "nvfp4"),
                                                   ("fp4_formats", [], "at least 1")])
def test_a_user_chip_with_a_bad_vendor_or_fp4_format_is_a_one_line_error(tmp_path, field, value, allowed):
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["b200"])
    entry[field] = value
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(entry))
    with pytest.raises(PhasewiseError) as info:
        load_hardware(str(path))
    assert field in str(info.value) and allowed in str(info.value) and "\n" not in str(info.value)


def test_launch_gives_an_amd_worker_its_gpus_with_hip_visible_devices():
    def env(hardware: str, model: str = SMALL_MODEL, engine: str = "vllm", tp: int = 2) -> dict[str, str]:
        dep = build_deployment({"model": model, "instances": [{"hardware": hardware, "tp": tp, "engine": engine}]})
        (cmd,), _, _ = launch_commands(dep)
        assert set(cmd.env) <= set(engine_flags()[engine]["env"])  # a variable the engine's environment lists
        return cmd.env

    assert env("mi300x") == {"HIP_VISIBLE_DEVICES": "0,1"}
    assert env("mi300x", engine="sglang") == {"HIP_VISIBLE_DEVICES": "0,1"}
    assert env("h100-sxm") == {"CUDA_VISIBLE_DEVICES": "0,1"}
    # gpt-oss's W4A8 experts: the FlashInfer switch is a CUDA kernel's, not exported on ROCm
    assert env("mi355x", OSS) == {"HIP_VISIBLE_DEVICES": "0,1"}
    assert env("b200", OSS)["VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8"] == "1"


def test_a_sweep_keeps_its_grid_where_a_cell_has_no_strategy(run_cli, tmp_path):
    """A sweep over chips and models whose cells include one with no strategy (TensorRT-LLM on an AMD chip; a model
    that does not fit the GPUs) writes that cell as a row of goodput 0 with the reason, and says so; it used to stop
    the whole sweep with the first cell's error."""
    import csv

    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"models: [{SMALL_MODEL}, meta-llama/Llama-3.1-405B]\nhardware: [h100-sxm, mi300x]\ngpus: 1\n"
                   "workloads: [{name: short, isl: 512, osl: 64}]\nslo: {ttft_ms: 1000, tbt_ms: 50}\n"
                   "strategies: {tp_options: [1], chunk_sizes: [512], disaggregated: false, engine: trtllm}\n")
    out = tmp_path / "s.csv"
    code, printed, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code == 0, err
    rows = list(csv.DictReader(out.read_text().splitlines()))
    cells = {(r["model"], r["hardware"]): r for r in rows}
    assert set(cells) == {(m, hw) for m in (SMALL_MODEL, "meta-llama/Llama-3.1-405B") for hw in ("h100-sxm", "mi300x")}
    served = [r for r in rows if r["kind"] != "none"]
    assert served and all(r["hardware"] == "h100-sxm" and r["model"] == SMALL_MODEL for r in served)
    assert all(float(r["search_rps"]) > 0 for r in served)
    amd = cells[(SMALL_MODEL, "mi300x")]
    assert amd["kind"] == "none" and float(amd["search_rps"]) == 0 and "NVIDIA GPUs only" in amd["binding"]
    assert "no strategy fits" in cells[("meta-llama/Llama-3.1-405B", "h100-sxm")]["binding"]
    assert f"no strategy for {SMALL_MODEL} on mi300x (short): engine 'trtllm'" in printed.replace("\n", " ")
    cfg.write_text(cfg.read_text().replace("hardware: [h100-sxm, mi300x]", "hardware: [mi300x]"))
    code, _, err = run_cli("sweep", str(cfg), "--out", str(out), "--workers", "1")
    assert code != 0 and "no cell of the sweep has a strategy" in err + _


def test_answers_on_a_chip_with_a_caveat_carry_it(run_cli):
    """simulate and estimate print (and put in --json) the caveat of a chip whose predictions no measured run backs
    or one shows biased (AMD's, Rubin's); the validated NVIDIA chips carry none."""
    import json

    assert load_hardware("h100-sxm").caveat is None and load_hardware("b200").caveat is None
    for chip in ("mi300x", "mi325x", "mi355x", "vr200"):
        assert load_hardware(chip).caveat, chip
    args = ("--model", SMALL_MODEL, "--rate", "1", "--requests", "5", "--json")
    code, out, _ = run_cli("simulate", "--hardware", "mi300x", *args)
    assert code == 0 and json.loads(out)["caveats"] == {"mi300x": load_hardware("mi300x").caveat}
    code, out, _ = run_cli("simulate", "--hardware", "h100-sxm", *args)
    assert code == 0 and "caveats" not in json.loads(out)
    code, out, _ = run_cli("simulate", "--hardware", "mi355x", *args[:-1])
    assert code == 0 and "caveat mi355x: predictions run fast" in out.replace("\n", " ")
    code, out, _ = run_cli("estimate", "--model", SMALL_MODEL, "--hardware", "mi325x,h100-sxm", "--json")
    assert code == 0 and set(json.loads(out)["caveats"]) == {"mi325x"}


def test_a_plan_on_a_chip_with_a_caveat_says_it(run_cli, tmp_path):
    import json

    args = ("plan", "--model", SMALL_MODEL, "--hardware", "mi300x", "--gpus", "1", "--tp-options", "1",
            "--chunk-sizes", "512", "--no-disagg")
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    assert json.loads(out)["caveats"] == {"mi300x": load_hardware("mi300x").caveat}
    report = tmp_path / "plan.html"
    code, out, err = run_cli(*args, "--report", str(report))
    assert code == 0, err
    assert "caveat mi300x: predictions run fast" in out.replace("\n", " ")
    assert "<b>Caveat</b> mi300x: predictions run fast" in report.read_text()
