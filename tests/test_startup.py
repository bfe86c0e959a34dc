"""Engine start-up (perf/startup.py): the parts as the constants and the engine's captured sizes say, hand-computed;
the twin's --cold-start keeps its port closed that long."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import free_port

from phasewise.errors import PhasewiseError
from phasewise.perf.estimate import estimate
from phasewise.perf.memory import weight_bytes_per_gpu
from phasewise.perf.startup import captured_graphs, startup_estimate
from phasewise.specs.catalog import packaged
from phasewise.specs.engine_defaults import sglang_capture_sizes
from phasewise.specs.engines import resolve_engine

LLAMA = "meta-llama/Llama-3.1-8B"  # 32 layers


def _startup(engine="vllm", model=LLAMA, hardware="h100-sxm", tp=1, pp=1, **kw):
    est = estimate(model, hardware, tp=tp, pp=pp, engine=engine)
    config = resolve_engine(engine, est.cost_model.hw, pp=pp, tp=tp)
    return est.cost_model, startup_estimate(est.cost_model, config, **kw)


def test_vllm_start_up_by_hand():
    """vLLM 0.14 on an H100: its 51 capture sizes (1, 2, 4, 8..248 by 8, 256..512 by 16) x 32 layers x the capture
    constant, 32 layers x the cold compile constant, the 16 GB BF16 checkpoint at the page-cache read rate."""
    table = packaged("startup.yaml")
    vllm = table["engines"]["vllm"]
    cost, start = _startup()
    checkpoint = weight_bytes_per_gpu(cost.model, cost.quant, 1, 1)
    assert 15e9 < checkpoint < 17e9
    assert start.captured_graphs == 3 + 31 + 17
    assert start.weights_s == pytest.approx(checkpoint / table["weights_read_bytes_per_s"])
    assert start.compile_s == pytest.approx(32 * vllm["compile_cold_s_per_layer"])
    assert start.graphs_s == pytest.approx(51 * 32 * vllm["capture_s_per_graph_layer"])
    assert start.init_s == vllm["init_s"]
    assert start.total_s == pytest.approx(start.weights_s + start.init_s + start.compile_s + start.graphs_s)
    _, warm = _startup(compile_cache="warm")
    assert warm.compile_s == pytest.approx(32 * vllm["compile_warm_s_per_layer"]) and warm.total_s < start.total_s
    _, slow_disk = _startup(weights_read_gbps=0.3)
    assert slow_disk.weights_s == pytest.approx(checkpoint / 0.3e9)


def test_pipeline_stages_and_nodes_start_in_parallel():
    """pp 2: each stage compiles and captures its 16 layers; tp 16 over two 8-GPU nodes: each node reads half."""
    _, whole = _startup(model="meta-llama/Llama-3.1-70B", tp=8)
    _, stages = _startup(model="meta-llama/Llama-3.1-70B", tp=8, pp=2)
    assert stages.compile_s == pytest.approx(whole.compile_s / 2)
    assert stages.graphs_s == pytest.approx(whole.graphs_s / 2)
    assert stages.weights_s == pytest.approx(whole.weights_s / 2)  # 16 GPUs: two nodes reading at once
    _, one_node = _startup(model="meta-llama/Llama-3.1-70B", tp=4, pp=2)
    assert one_node.weights_s == pytest.approx(whole.weights_s)


def test_sglang_captures_its_padded_ladder_and_compiles_nothing():
    """SGLang's capture list at its published counts (max_bs 8: 4 sizes, 24: 7, 32: 8, 80: 14, 160: 24, 256: 36,
    512: 52), not every size the simulated replay pads to; no torch.compile by default, cold or warm."""
    assert [len(sglang_capture_sizes(b)) for b in (8, 24, 32, 80, 160, 256, 512)] == [4, 7, 8, 14, 24, 36, 52]
    assert sglang_capture_sizes(100)[-1] == 100
    cost, start = _startup("sglang")
    config = resolve_engine("sglang", cost.hw, tp=1)
    assert start.captured_graphs == len(sglang_capture_sizes(max(config.profile.cuda_graph_sizes)))
    assert start.compile_s == 0
    with pytest.raises(PhasewiseError, match="--compile-cache warm does not apply to engine 'sglang"):
        _startup("sglang", compile_cache="warm")  # no compile cache to be warm: refused, not ignored


def test_engines_without_graphs_or_an_engine():
    """TensorRT-LLM's captured sizes are its own; vLLM V0 compiled nothing by default; hf-eager and ideal only read
    the checkpoint."""
    cost, trt = _startup("trtllm")
    assert trt.captured_graphs == len(resolve_engine("trtllm", cost.hw).profile.cuda_graph_sizes) and trt.compile_s == 0
    assert _startup("vllm-v0")[1].compile_s == 0 and _startup("vllm-v0")[1].captured_graphs == 3 + 256 // 8
    for engine in ("hf-eager", "ideal"):
        _, start = _startup(engine)
        assert start.total_s == pytest.approx(start.weights_s) and start.captured_graphs == 0
    assert captured_graphs(resolve_engine("vllm-2023", cost.hw)) == 0


def test_estimate_reports_start_up_and_refuses_bad_values(run_cli):
    code, out, _ = run_cli("estimate", "--json", "--weights-read-gbps", "1", "--compile-cache", "warm")
    start = json.loads(out)["startup"]
    assert code == 0 and start["compile_cache"] == "warm" and start["weights_s"] == pytest.approx(
        start["checkpoint_bytes"] / 1e9)
    for flags, words in ((["--compile-cache", "hot"], "--compile-cache must be one of cold, warm"),
                         (["--weights-read-gbps", "0"], "--weights-read-gbps must be a finite number > 0"),
                         (["--weights-read-gbps", "nan"], "--weights-read-gbps must be a finite number > 0")):
        code, _, err = run_cli("estimate", *flags)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_bad_cold_starts(run_cli):
    for flags, words in ((["--cold-start", "soon"], "--cold-start must be off, auto or a number of seconds"),
                         (["--cold-start", "-1"], "--cold-start must be off, auto or a number of seconds"),
                         (["--weights-read-gbps", "2"], "--weights-read-gbps shapes the predicted start-up"),
                         (["--cold-start", "5", "--compile-cache", "warm"], "--compile-cache shapes the predicted"),
                         # time.sleep's OverflowError, found by benchmarks/fuzz_serve.py; and a wait of years
                         (["--cold-start", "1e300"], "at most 86,400 s (a day)"),
                         (["--cold-start", "100", "--speed", "0.001"], "a wait of 1e+05 s before listening")):
        code, _, err = run_cli("serve", "--port", "1", *flags)
        assert code == 2 and words in err


def test_live_sim_starts_up_as_its_slowest_instance():
    """Disaggregated, prefill on SGLang and decode on vLLM: the instances start together, and the twin waits for
    the slower, vLLM, which compiles."""
    from phasewise.apps.twin_live import LiveSim
    from phasewise.sim.deployment import build_deployment

    dep = build_deployment({"model": LLAMA, "instances": [
        {"role": "prefill", "hardware": "h100-sxm", "engine": "sglang"},
        {"role": "decode", "hardware": "h100-sxm", "engine": "vllm"}]})
    live = LiveSim(dep)
    start = live.startup()
    assert start.total_s == pytest.approx(_startup("vllm")[1].total_s)  # vLLM compiles: the slower
    assert start.total_s > _startup("sglang")[1].total_s


def test_twin_port_stays_closed_through_its_cold_start():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "phasewise.apps.cli", "serve", "--port", str(port),
                             "--cold-start", "40", "--speed", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    try:
        first = proc.stdout.readline().decode()
        assert "starting up (40 s as given), listening in 2.0 s" in first
        t0 = time.perf_counter()
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/health", timeout=1)  # refused while starting
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.perf_counter() - t0 < 30
                time.sleep(0.05)
        assert time.perf_counter() - t0 > 1.5
        r = httpx.post(url + "/v1/completions", json={"model": LLAMA, "prompt": "hi", "max_tokens": 2}, timeout=30)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
