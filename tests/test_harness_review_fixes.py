"""The benchmarks/ scripts' own flags: a bad value ends in one line naming the flag and what it takes (exit 2), never
a traceback or a flag quietly ignored (bench_sim's --disagg ran vLLM whatever --engine said); the twin load tests
pass on serve's own refusal at once; bench_prefix_cache prints the router queue's figures the README quotes; and
bench_vidur's Vidur settings are those of the phasewise preset its docstring names (benchmarks/bench_args.py, the
checks they share)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def load(name: str):
    return load_benchmark(name, module_name=f"{name}_under_test")


def one_line_refusal(result: subprocess.CompletedProcess) -> str:
    """The refusal's error line, once the run is checked to have ended in it (exit 2, no traceback)."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, (result.returncode, result.stderr[-600:])
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(r"(\S+\.py: )?error: ", line), result.stderr[-600:]
    return line


@pytest.mark.parametrize("name, args, named", [
    ("plan_slice", ["--cases", "foo"], "--cases"),
    ("plan_slice", ["--gpus", "0", "--cases", "conv"], "--gpus"),
    ("bench_sim", ["--repeat", "0"], "--repeat"),
    ("bench_sim", ["--engine", "foo"], "--engine"),
    ("bench_policies", ["--repeat", "0"], "--repeat"),
    ("bench_reproduce", ["--repeat", "0", "--only", "fireq"], "--repeat"),
    ("bench_reproduce", ["--only", "nosuch"], "--only"),
    ("bench_plan", ["--repeat", "0", "--gpus", "1"], "--repeat"),
    ("unit_share", ["--rates", "abc"], "--rates"),
    ("bench_prefix_cache", ["--trace", "nosuch.jsonl"], "--trace"),
    ("fuzz_configs", ["--model", "nosuch", "--kind", "model"], "--model"),
    ("fuzz_configs", ["--seconds", "0", "--cases", "1", "--kind", "hardware"], "--seconds"),
    ("bench_edge_split", ["--models", "nosuch"], "--models"),
    ("bench_twin_prompts", ["--engine", "nosuch", "--requests", "1"], "--engine"),
    ("bench_cost_model", ["--repeat", "0"], "--repeat"),
    ("bench_twin", ["--clients", "0"], "--clients"),
    ("fuzz_flags", ["--commands", "simulat"], "--commands"),
    ("fuzz_flags", ["--commands", "simulate", "--flags", "nosuchflag"], "--nosuchflag"),
])
def test_a_bad_value_to_a_scripts_own_flag_is_one_line_naming_it(name, args, named):
    """Each was a traceback (KeyError, UnboundLocalError, IndexError, ValueError, FileNotFoundError, a
    PhasewiseError's), a wrong figure (bench_cost_model --repeat 0 printed 0/s rates) or a green result for nothing
    run (fuzz_flags' misspelt --flags: "0 runs, 0 failing")."""
    assert named in one_line_refusal(script(name, *args))


def test_bench_sim_disagg_runs_the_engines_it_is_given():
    """--disagg built vLLM 1P1D whatever --engine named, and stopped after one line."""
    result = script("bench_sim", "--disagg", "--engine", "vllm,sglang", "--requests", "100", "--repeat", "1")
    assert result.returncode == 0, result.stderr[-600:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "vllm disagg 1P1D" in lines[0] and "sglang disagg 1P1D" in lines[1], lines


def test_bench_sim_disagg_refuses_replicas():
    """--replicas counts collocated instances; with --disagg it was ignored."""
    assert "--replicas" in one_line_refusal(script("bench_sim", "--disagg", "--replicas", "4"))


def test_start_twin_passes_on_serves_own_refusal_at_once(capsys):
    """serve's one-line error (exit 2, at once) was hidden, and the run waited 10 s to blame /health."""
    twin_server = load("twin_server")
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        twin_server.start_twin("--model", "nosuch/model")
    assert time.perf_counter() - t0 < 5  # serve stops in about 1.5 s; the old wait was 10
    assert stop.value.code == 2
    assert "unknown model 'nosuch/model'" in capsys.readouterr().err


def test_bench_prefix_cache_prints_the_router_queues_figures(capsys, monkeypatch):
    """The README's "a queue at 1.0 holds 2,550 requests 534 ms each" and its 8 x H100 runs came from no line the
    script printed: it prints the held requests and their mean hold now, and runs 8 x H100 with and without."""
    bench = load("bench_prefix_cache")
    labels = [label for label, _ in bench.RUNS]
    assert "8xH100 dynamo_kv" in labels and "8xH100 dynamo_kv queue 1" in labels
    monkeypatch.setattr(bench, "RUNS", [run for run in bench.RUNS if run[0] == "4xH100 dynamo_kv queue 1"])
    monkeypatch.setattr(sys, "argv", ["bench_prefix_cache.py", "--trace", "mooncake"])
    bench.main()
    header, row = capsys.readouterr().out.strip().splitlines()[-2:]
    assert header.split()[-3:] == ["held", "hold", "ms"], header
    held, hold_ms = row.split()[-2:]
    assert int(held.replace(",", "")) > 0 and float(hold_ms.replace(",", "")) > 0, row


def test_bench_vidur_names_the_preset_its_vidur_settings_match():
    """Its docstring called batch_size_cap 256 and whole prompts "phasewise's defaults"; phasewise's default vLLM
    (V1) runs 1,024 sequences and chunked prefill. They are the vllm-v0 preset's, which it names now."""
    from phasewise.specs import load_hardware
    from phasewise.specs.engines import resolve_engine

    text = (BENCH / "bench_vidur.py").read_text()
    assert "batch_size_cap=256, max_tokens_in_batch=8192" in text and "block_size=16" in text
    assert "memory_margin_fraction=0.1" in text
    v0 = resolve_engine("vllm-v0", load_hardware("h100-sxm"))
    assert (v0.max_seqs, v0.knobs["max_num_batched_tokens"], v0.chunked_prefill) == (256, 8192, False)
    assert v0.memory_fraction == pytest.approx(0.9)
    doc = load("bench_vidur").__doc__
    assert "bench_sim.py --engine vllm-v0" in doc and "phasewise's defaults" not in doc
