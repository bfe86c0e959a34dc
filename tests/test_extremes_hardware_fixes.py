"""The extremes review's hardware findings, fixed: an NVL72 rack's compute trays each read their share of a
checkpoint (interconnect.gpus_per_host), fp32 GEMMs run at a GPU's IEEE FP32 (vector) rate and not its TF32 tensor
peak, and a CPU captures no CUDA graphs (every step eager) while `hardware` keeps a CPU's small peaks readable."""

from __future__ import annotations

import json

import pytest
import yaml

from phasewise.errors import PhasewiseError
from phasewise.perf.batch import BatchShape
from phasewise.perf.cost import CostModel
from phasewise.perf.estimate import estimate
from phasewise.perf.operators import EAGER_DISPATCH
from phasewise.perf.startup import captured_graphs, startup_estimate
from phasewise.specs import load_engine, load_hardware, load_model, load_quant
from phasewise.specs.catalog import packaged
from phasewise.specs.engines import resolve_engine
from phasewise.specs.hardware import catalog_entry_yaml

READ_BYTES_PER_S = 5.3e9  # startup.yaml weights_read_bytes_per_s (the page cache)
LLAMA_70B = "meta-llama/Llama-3.1-70B"


def _startup(hardware: str, tp: int, model: str = LLAMA_70B):
    est = estimate(model, hardware, tp=tp, prompt_len=128)
    return est.cost_model, startup_estimate(est.cost_model, resolve_engine("vllm", est.cost_model.hw, tp=tp))


# --- A: an NVL72 rack reads a checkpoint per compute tray --------------------------------------------------------

@pytest.mark.parametrize("key", ["gb200", "gb300", "vr200"])
def test_nvl72_racks_are_72_gpu_nvlink_domains_of_4_gpu_hosts(key):
    """18 compute trays of 4 GPUs (each a host) in one 72-GPU NVLink domain, each figure with its source."""
    ic = load_hardware(key).interconnect
    assert (ic.gpus_per_node, ic.gpus_per_host) == (72, 4)
    assert "18 compute trays" in packaged("hardware_specs.yaml")["hardware"][key]["sources"]["host"]


def test_every_other_chip_is_one_host_a_node():
    catalog = packaged("hardware_specs.yaml")["hardware"]
    for key in catalog:
        ic = load_hardware(key).interconnect
        assert ic.gpus_per_node % ic.gpus_per_host == 0
        if key not in ("gb200", "gb300", "vr200"):
            assert ic.gpus_per_host == ic.gpus_per_node, key


@pytest.mark.parametrize("key", ["gb200", "gb300"])
def test_tp8_on_an_nvl72_rack_reads_on_two_trays(key):
    """Llama-3.1-70B at TP 8: two 4-GPU trays read half the checkpoint each, 2x faster than one 8-GPU H100 node
    (the old rule read it on one 72-GPU 'node': the H100's time)."""
    cost, rack = _startup(key, 8)
    checkpoint = rack.checkpoint_bytes
    assert 140e9 < checkpoint < 143e9  # 70.6 B parameters in BF16
    assert rack.weights_s == pytest.approx(checkpoint / (2 * READ_BYTES_PER_S), rel=1e-12)
    _, h100 = _startup("h100-sxm", 8)
    assert h100.weights_s == pytest.approx(checkpoint / READ_BYTES_PER_S, rel=1e-12)


def test_deepseek_r1_on_64_gb200s_reads_on_16_trays():
    """The reviewer's case: TP 64 is 16 trays of 4 (not one rack reader: 127 s) and 8 H100 nodes of 8."""
    est = estimate("deepseek-ai/DeepSeek-R1", "gb200", tp=64, ep=64, attention_dp=64, prompt_len=128)
    assert est.startup.weights_s == pytest.approx(est.startup.checkpoint_bytes / (16 * READ_BYTES_PER_S), rel=1e-12)
    assert 7.5 < est.startup.weights_s < 8.5  # 673 GB / (16 x 5.3 GB/s) = 7.9 s


def _user_chip(tmp_path, key: str, **interconnect) -> str:
    data = catalog_entry_yaml(key)
    entry = data["hardware"][key]
    entry["interconnect"] = {**entry["interconnect"], **interconnect}
    path = tmp_path / f"{key}-variant.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_users_chip_takes_gpus_per_host(tmp_path):
    """An 8-GPU host in the rack: TP 8 reads on one host again; absent, a user's node is one host."""
    hw = load_hardware(_user_chip(tmp_path, "gb200", gpus_per_host=8))
    assert hw.interconnect.gpus_per_host == 8
    entry = catalog_entry_yaml("h100-sxm")["hardware"]["h100-sxm"]
    assert "gpus_per_host" in entry["interconnect"] or entry["interconnect"]["gpus_per_node"] == 8
    entry["interconnect"].pop("gpus_per_host", None)
    entry["interconnect"]["gpus_per_node"] = 4
    path = tmp_path / "four.yaml"
    path.write_text(yaml.safe_dump({"hardware": {"four": entry}}))
    assert load_hardware(str(path)).interconnect.gpus_per_host == 4


@pytest.mark.parametrize("value, message", [
    (5, "interconnect: gpus_per_host (5) must divide gpus_per_node (72)"),
    (144, "interconnect: gpus_per_host (144) must divide gpus_per_node (72)"),
    (0, "interconnect.gpus_per_host: Input should be greater than 0"),
    (4.5, "interconnect.gpus_per_host: Input should be a valid integer"),
])
def test_a_bad_gpus_per_host_is_one_line_naming_it(tmp_path, value, message):
    with pytest.raises(PhasewiseError) as err:
        load_hardware(_user_chip(tmp_path, "gb200", gpus_per_host=value))
    assert message in str(err.value) and "\n" not in str(err.value)


# --- B: fp32 GEMMs at the IEEE FP32 rate -------------------------------------------------------------------------

def test_fp32_runs_at_a_gpus_vector_fp32_rate_not_its_tf32_peak():
    """H100 SXM: IEEE FP32 67 TFLOP/s (66.9), not TF32's 494.7; its ridge at fp32 66.9e12 / 3.35e12 = 19.97."""
    hw = load_hardware("h100-sxm")
    assert hw.peak("fp32") == 66.9e12 and hw.peak_flops["tf32"] == 494.7e12
    assert hw.ridge_flops_per_byte("fp32") == pytest.approx(66.9e12 / 3.35e12, rel=1e-12)
    assert load_hardware("a100-sxm-80gb").peak("fp32") == 19.5e12
    assert load_hardware("jetson-agx-orin").peak("fp32") == 5.3e12  # an edge GPU's CUDA cores
    # GPUs whose TF32 figure the catalog omits still run IEEE fp32 GEMMs (before: refused)
    assert load_hardware("vr200").peak("fp32") == 130e12 and load_hardware("mi355x").peak("fp32") == 157.3e12
    with pytest.raises(PhasewiseError, match="has no tf32 compute path"):
        hw.peak("tf32")  # a sheet figure, no --precision


def test_an_fp32_gemm_costs_the_bf16_one_times_the_peak_ratio():
    """The same GEMM, the same efficiency: its compute time scales by bf16 peak / fp32 peak = 989.4 / 66.9."""
    model, hw, engine = load_model("Qwen/Qwen3-0.6B"), load_hardware("h100-sxm"), load_engine("ideal")
    fp32 = CostModel(model, hw, load_quant("fp32"), engine).gemm(4096, 4096, 4096)
    bf16 = CostModel(model, hw, load_quant("bf16"), engine).gemm(4096, 4096, 4096)
    assert fp32[0] == bf16[0] == 2 * 4096**3
    assert fp32[2] / bf16[2] == pytest.approx(989.4 / 66.9, rel=1e-12)


def test_the_reviewers_fp32_prefill_stays_under_the_fp32_peak():
    """Qwen3-0.6B, 4096 tokens in fp32 on an H100: 5.53e12 FLOPs took 25 ms (221 TFLOP/s, over the 67 TFLOP/s
    FP32 peak); now at most the peak."""
    est = estimate("Qwen/Qwen3-0.6B", "h100-sxm", precision="fp32", prompt_len=4096)
    assert est.prefill.flops == pytest.approx(5.533e12, rel=1e-3)
    assert est.prefill.flops / est.prefill.latency_s < 66.9e12


def test_cpus_and_accelerators_keep_their_fp32_paths(tmp_path):
    """cpu-local's measured fp32 matmul rate is its fp32 peak, as before; a chip given peak_flops.fp32 keeps it;
    an accelerator without one still has no fp32 path; a catalog GPU written to a file loads back with its tf32."""
    assert load_hardware("cpu-local").peak("fp32") == 35e9
    with pytest.raises(PhasewiseError, match="hardware 'halo-2.5d' has no fp32 compute path"):
        load_hardware("halo-2.5d").peak("fp32")
    path = tmp_path / "h100.yaml"
    path.write_text(yaml.safe_dump(catalog_entry_yaml("h100-sxm")))
    assert load_hardware(str(path)).peak_flops["tf32"] == 494.7e12
    data = catalog_entry_yaml("h100-sxm")
    data["hardware"]["h100-sxm"]["peak_flops"]["fp32"] = 100e12  # a user's chip whose matrix units run FP32
    path.write_text(yaml.safe_dump(data))
    assert load_hardware(str(path)).peak("fp32") == 100e12
    data["hardware"]["h100-sxm"]["peak_flops"]["fp64"] = 1e12
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PhasewiseError, match=r"peak_flops.fp64 is not a known dtype \(allowed: .*fp4, tf32\)"):
        load_hardware(str(path))


# --- C: a CPU captures no CUDA graphs ----------------------------------------------------------------------------

def test_vllm_on_a_cpu_captures_no_graphs_but_compiles():
    """vLLM's CPU platform empties its capture sizes and compiles with Inductor: Qwen3-0.6B's 28 layers x the cold
    compile constant, no graphs (before: 51 graphs, 14.5 s)."""
    est = estimate("Qwen/Qwen3-0.6B", "cpu-local", prompt_len=128)
    config = resolve_engine("vllm", est.cost_model.hw)
    assert captured_graphs(config, est.cost_model.hw) == 0
    assert captured_graphs(config, load_hardware("h100-sxm")) == 51
    start = est.startup
    assert start.captured_graphs == 0 and start.graphs_s == 0.0
    assert start.compile_s == pytest.approx(28 * packaged("startup.yaml")["engines"]["vllm"]["compile_cold_s_per_layer"])


def test_a_decode_step_on_a_cpu_runs_eagerly():
    model, engine = load_model("Qwen/Qwen3-0.6B"), load_engine("vllm")
    shape = BatchShape.from_sequences([(1, 128)])
    cpu = CostModel(model, load_hardware("cpu-local"), load_quant("bf16"), engine)
    assert cpu.graph_launch(shape) == (True, 1)
    assert EAGER_DISPATCH in [op.name for op in cpu.iteration(shape).operators]
    gpu = CostModel(model, load_hardware("h100-sxm"), load_quant("bf16"), engine)
    assert gpu.graph_launch(shape) == (False, 1)  # a GPU still replays its decode graph


def test_hardware_shows_a_cpus_small_peaks(run_cli):
    """cpu-local's bf16 1e9 FLOP/s is 0.001 TFLOP/s, not 0; its --json lists the peak each dtype's GEMMs run at."""
    code, out, _ = run_cli("hardware", "cpu-local")
    assert code == 0 and "0.001" in out
    code, out, _ = run_cli("hardware", "h100-sxm", "--json")
    row = json.loads(out)["hardware"][0]
    assert row["gemm_peak_flops"]["fp32"] == 66.9e12 and row["gemm_peak_flops"]["bf16"] == 989.4e12


def test_editing_a_written_catalog_entry_leaves_the_catalog_alone():
    """catalog_entry_yaml hands back a copy: a variant edited from it (as the tests above do) is not the catalog's."""
    data = catalog_entry_yaml("h100-sxm")
    data["hardware"]["h100-sxm"]["peak_flops"]["bf16"] = 1.0
    data["hardware"]["h100-sxm"]["interconnect"]["gpus_per_node"] = 2
    hw = load_hardware("h100-sxm")
    assert hw.peak("bf16") == 989.4e12 and hw.interconnect.gpus_per_node == 8
