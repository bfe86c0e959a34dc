"""Every file a user gives, broken every way: random and mutated bytes and rows go to each reader (and through the
CLI in-process for traces and model configs). Each either reads or fails with one line naming the file, never a
traceback; the CLI exits 2. Examples are bounded so `make test` stays fast; PHASEWISE_FUZZ_EXAMPLES=2000 runs long.
"""

from __future__ import annotations

import json
import os
from importlib import resources

import pytest
import yaml
from conftest import load_benchmark
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phasewise.errors import PhasewiseError
from phasewise.perf.fit import parse_points
from phasewise.plan.sweep import load_sweep
from phasewise.sim.deployment import load_deployment
from phasewise.specs import load_engine, load_hardware, load_model
from phasewise.specs.catalog import packaged, read_user_file
from phasewise.specs.device_cloud import parse_device_cloud
from phasewise.specs.mappings import load_mapping
from phasewise.specs.reading import MAX_TOKENS, read_text
from phasewise.specs.topology import load_topology
from phasewise.workload.traces import load_trace

EXAMPLES = int(os.environ.get("PHASEWISE_FUZZ_EXAMPLES", "25"))
LONG = "PHASEWISE_FUZZ_EXAMPLES" in os.environ  # the long run draws new examples each time
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

CSV = "arrived_at,num_prefill_tokens,num_decode_tokens\n0,120,8\n0.5,300,20\n1.25,64,3\n"
JSONL = "".join(json.dumps({"TIMESTAMP": t, "ContextTokens": p, "GeneratedTokens": o}) + "\n"
                for t, p, o in ((0, 120, 8), (0.5, 300, 20)))
LMM = ("TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n2024-10-15T12:00:00.269Z,0,770,491\n"
       "2024-10-15T12:00:05.819Z,1,949,126\n2024-10-15T12:00:07.566Z,16,4564,137\n")  # Azure LMM 2025's columns
MOONCAKE = "".join(json.dumps({"timestamp": t, "input_length": n, "output_length": 5, "hash_ids": ids}) + "\n"
                   for t, n, ids in ((0, 600, [1, 2]), (40, 700, [1, 3])))
CONFIG = json.dumps({"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
                     "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 32000,
                     "max_position_embeddings": 4096, "torch_dtype": "bfloat16"})
HARDWARE = yaml.safe_dump({"hardware": {"mine": packaged("hardware_specs.yaml")["hardware"]["h100-sxm"]}})
ENGINE = yaml.safe_dump({"engines": {"mine": packaged("engines.yaml")["engines"]["vllm"]}})
DEPLOYMENT = ("model: meta-llama/Llama-3.1-8B\nrouter: round_robin\n"
              "instances: [{role: collocated, hardware: h100-sxm, tp: 1, replicas: 2}]\n")
SWEEP = ("models: [meta-llama/Llama-3.1-8B]\nhardware: [h100-sxm]\ngpus: 1\n"
         "workloads: [{name: short, isl: 512, osl: 64}]\nslo: {ttft_ms: 1000, tbt_ms: 50}\n"
         "strategies: {tp_options: [1], chunk_sizes: [512], disaggregated: false}\n")
# Splitwise's measured rows, those past Llama-2's 4,096-token context saying the context their runs served
POINTS = resources.files("phasewise.scenarios").joinpath("data", "splitwise_vllm.yaml").read_text()
TOPOLOGY = ("devices: [{name: a, hardware: jetson-agx-orin}, {name: b, hardware: jetson-agx-orin}]\n"
            "links: [{a: a, b: b, mbps: 100}]\n")
DEVICE_CLOUD = ("devices: 2\ndevice_hardware: jetson-agx-orin\ncloud_hardware: a6000\nuplink_mbps: 50\n"
                "downlink_mbps: 100\n")
MAPPING = yaml.safe_dump({"mappings": {"mine": packaged("mappings.yaml")["mappings"][
    next(iter(packaged("mappings.yaml")["mappings"]))]}})

# name: (a valid file's text, its suffix, the reader)
READERS = {
    "trace-csv": (CSV, ".csv", load_trace),
    "trace-jsonl": (JSONL, ".jsonl", load_trace),
    "trace-mooncake": (MOONCAKE, ".jsonl", load_trace),
    "trace-images": (LMM, ".csv", load_trace),
    "model-config": (CONFIG, ".json", load_model),
    "hardware": (HARDWARE, ".yaml", load_hardware),
    "engine": (ENGINE, ".yaml", load_engine),
    "deployment": (DEPLOYMENT, ".yaml", load_deployment),
    "sweep": (SWEEP, ".yaml", load_sweep),
    "points": (POINTS, ".yaml", lambda p: parse_points(read_user_file(p, "points"), f"points file '{p}'")),
    "topology": (TOPOLOGY, ".yaml", load_topology),
    "device-cloud": (DEVICE_CLOUD, ".yaml", lambda p: parse_device_cloud(read_user_file(p, "device-cloud"))),
    "mapping": (MAPPING, ".yaml", load_mapping),
}

# Mutations of a valid file: flip, insert or delete bytes, cut it short, repeat a line, splice in hostile text.
HOSTILE = [b"\x00", b"\xff\xfe", b"\xc3\x28", b"\xef\xbb\xbf", b"[" * 5000, b"{" * 5000, b"NaN", b"-Infinity",
           b"1e400", b"-1", b"0", b"99999999999999999999999", b"\"", b"\r\n", b",,,,", b": &a [*a, *a]",
           b"!!python/object:os.system", b"\t", b"- - -", b"2023-13-45 99:99:99", b"true", b"null", b"{}", b"[]"]
_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(HOSTILE) | st.binary(max_size=40)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("repeat"), st.integers(0, 10**6), st.integers(2, 50)),
)


def _mutate(data: bytes, edits) -> bytes:
    for kind, at, arg in edits:
        at = at % (len(data) + 1)
        if kind == "flip" and data:
            at %= len(data)
            data = data[:at] + bytes([arg]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + arg + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + arg:]
        elif kind == "cut":
            data = data[:at]
        elif kind == "repeat":
            lines = data.split(b"\n")
            i = at % len(lines)
            data = b"\n".join(lines[:i] + [lines[i]] * arg + lines[i + 1:])
    return data


def _reads_or_one_line(reader, path) -> None:
    try:
        reader(str(path))
    except PhasewiseError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message


@pytest.mark.parametrize("name", list(READERS))
def test_every_reader_reads_its_valid_file(tmp_path, name):
    text, suffix, reader = READERS[name]
    path = tmp_path / f"in{suffix}"
    path.write_text(text)
    reader(str(path))  # the seeds of the fuzzing below are valid: mutations start from a file that reads


@pytest.mark.parametrize("name", list(READERS))
@FUZZ
@given(edits=st.lists(_edit, min_size=1, max_size=6))
def test_mutated_files_read_or_fail_in_one_line(tmp_path, name, edits):
    text, suffix, reader = READERS[name]
    path = tmp_path / f"in{suffix}"
    path.write_bytes(_mutate(text.encode(), edits))
    _reads_or_one_line(reader, path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".yaml"])
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_fail_in_one_line(tmp_path, suffix, data):
    path = tmp_path / f"in{suffix}"
    path.write_bytes(data)
    for reader in (load_trace, load_deployment, load_hardware, load_model):
        _reads_or_one_line(reader, path)


_cell = st.one_of(st.integers(-10, 2**63), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=12), st.sampled_from(["", "1e400", "nan", "2023-11-16 18:15:46.6805900", "0x10",
                                                         "1_000", " 7 ", "\u0661\u0662"]))


@FUZZ
@given(rows=st.lists(st.tuples(_cell, _cell, _cell), min_size=1, max_size=8))
def test_random_trace_rows_read_or_fail_in_one_line(tmp_path, rows):
    csv_path, jsonl_path = tmp_path / "t.csv", tmp_path / "t.jsonl"
    csv_path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n"
                        + "".join(",".join(str(c).replace(",", ";").replace("\n", " ").replace("\r", " ")
                                           .replace('"', "") for c in row) + "\n" for row in rows))
    jsonl_path.write_text("".join(json.dumps(dict(zip(("arrived_at", "num_prefill_tokens", "num_decode_tokens"), row)))
                                  + "\n" for row in rows))
    for path in (csv_path, jsonl_path):
        _reads_or_one_line(load_trace, path)
    try:
        work = load_trace(str(csv_path))
    except PhasewiseError:
        return
    assert (work.prompt_tokens >= 1).all() and (work.prompt_tokens <= MAX_TOKENS).all()


def _cli_fails_in_one_line(code: int, err: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err


@settings(max_examples=max(EXAMPLES // 3, 3), deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(_edit, min_size=1, max_size=4))
def test_the_cli_turns_mutated_traces_and_configs_into_exit_2(run_cli, tmp_path, edits):
    trace, config = tmp_path / "t.csv", tmp_path / "config.json"
    trace.write_bytes(_mutate(CSV.encode(), edits))
    config.write_bytes(_mutate(CONFIG.encode(), edits))
    _cli_fails_in_one_line(*run_cli("simulate", "--trace", str(trace), "--json")[::2])
    _cli_fails_in_one_line(*run_cli("estimate", "--model", str(config), "--json")[::2])


def test_a_binary_trace_exits_2_with_one_line(run_cli, tmp_path):
    path = tmp_path / "file.csv"
    path.write_bytes(bytes(range(256)) * 4)
    code, _, err = run_cli("simulate", "--trace", str(path))
    assert code == 2 and err.count("\n") == 1 and "binary data" in err and str(path) in err
    path.write_bytes("arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,\xe9\n".encode("latin-1"))
    code, _, err = run_cli("simulate", "--trace", str(path))
    assert code == 2 and "not UTF-8 text (byte 0xe9" in err


def test_requests_that_can_never_run_are_refused_or_counted_with_their_reason(run_cli, tmp_path):
    only = tmp_path / "huge.csv"
    only.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100000000,10\n")
    code, _, err = run_cli("simulate", "--trace", str(only))
    assert code == 2 and err.count("\n") == 1 and "beyond the model's context" in err
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100000000,10\n1,100,10\n2,120,10\n")
    code, out, err = run_cli("simulate", "--trace", str(mixed), "--json")
    assert code == 0 and err.startswith("warning: 1 of 3 requests can never run") and err.count("\n") == 1
    summary = json.loads(out)
    assert summary["completed"] == 2 and summary["rejected"] == 1 and summary["rejected_by"] == {"beyond_context": 1}


def test_too_large_and_not_a_file_are_one_line(tmp_path):
    with pytest.raises(PhasewiseError, match="larger than the 1,000 bytes"):
        path = tmp_path / "big.yaml"
        path.write_text("a: 1\n" * 400)
        read_text(path, "deployment", max_bytes=1000)
    with pytest.raises(PhasewiseError, match="is not a regular file"):
        load_trace(str(tmp_path))
    with pytest.raises(PhasewiseError, match="nested too deeply"):
        deep = tmp_path / "deep.json"
        deep.write_text("[" * 100_000)
        load_model(str(deep))


# --- strict JSON: every command's --json and every JSON file written parse with NaN / Infinity refused ---------------

def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"non-JSON constant {token} in the output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("args", [
    ("estimate", "--json"),
    ("edge", "--json", "--prompt-len", "64", "--output-len", "8"),
    ("device-cloud", "--json", "--devices", "2", "--device-hardware", "jetson-agx-orin", "--cloud-hardware", "a6000",
     "--uplink-mbps", "50", "--downlink-mbps", "100", "--prompt-len", "64", "--output-len", "8"),
    ("fit-engine", "POINTS", "--engine", "vllm", "--params", "per_sequence_overhead_s", "--json"),
    ("reproduce", "--json"),
], ids=lambda a: a[0])
def test_every_commands_json_is_strict(run_cli, tmp_path, args):
    points = tmp_path / "points.yaml"
    points.write_text(POINTS)
    code, out, err = run_cli(*(str(points) if a == "POINTS" else a for a in args))
    assert code == 0, err
    _strict(out)


def test_simulate_json_and_summary_file_are_strict_with_rejections_and_single_token_outputs(run_cli, tmp_path):
    trace = tmp_path / "t.csv"  # one output token each: no TPOT (NaN percentiles); one request beyond the context
    trace.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,100,1\n1,100,1\n2,900000,1\n")
    code, out, err = run_cli("simulate", "--trace", str(trace), "--json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    for d in (_strict(out), _strict((tmp_path / "o" / "summary.json").read_text())):
        assert d["tpot_ms"]["p50"] is None and d["rejected_by"] == {"beyond_context": 1}


def test_json_is_written_through_the_strict_writer():
    """The apps write JSON with apps/jsonout.dumps (allow_nan=False); the few plain json.dumps left carry no floats
    (the twin's token chunks and error bodies, the request values its errors quote, launch flags, an HF config
    copied as read)."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "phasewise"
    allowed = {"apps/jsonout.py", "apps/twin.py", "apps/twin_streams.py", "apps/twin_admission.py", "apps/twin_request.py",
               "apps/launch.py", "measure/serve.py"}
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py") if str(p.relative_to(src)) not in allowed
                 and ("json.dumps(" in p.read_text() or "json.dump(" in p.read_text())]
    assert not offenders, offenders


def _runs_clean(benchmark: str, argv: list[str], capsys, monkeypatch) -> None:
    """benchmarks/BENCHMARK.py's main() with `argv` returns 0 and reports 0 failing."""
    module = load_benchmark(benchmark)
    monkeypatch.setattr("sys.argv", [f"{benchmark}.py", *argv])
    assert module.main() == 0, capsys.readouterr().out
    assert " 0 failing" in capsys.readouterr().out


def test_mutated_catalog_configs_cost_or_fail_in_one_line(capsys, monkeypatch):
    """benchmarks/fuzz_configs.py at a small size: every catalog model's config.json and chip's hardware YAML with one
    or two fields set to an odd value or removed (nested ones included) either costs an iteration or fails with one
    PhasewiseError line; it found a hang (10^12 layers), ZeroDivisionErrors, TypeErrors and a ValueError, each a
    named refusal now."""
    _runs_clean("fuzz_configs", ["--cases", "15", "--seed", "11"], capsys, monkeypatch)


def test_mutated_user_files_run_or_fail_in_one_line(capsys, monkeypatch):
    """benchmarks/fuzz_files.py at a small size: each valid seed (a deployment a feature; a sweep, topology,
    device-cloud setup, mapping, engine and points file) runs through the command that reads it, and each with one or
    two fields set to an odd value or removed runs or fails with one line (exit 2); its long runs found a KPA
    scale-down delay below the clock's resolution (IndexError), a 10^12 s start-up that never ended, a sweep's
    strategies unchecked (TypeErrors) and an infinite measured TTFT (ValueError), each fixed."""
    _runs_clean("fuzz_files", ["--cases", "3", "--seed", "5", "--seconds", "30"], capsys, monkeypatch)


def test_serve_flags_refuse_in_one_line_or_serve(capsys, monkeypatch):
    """benchmarks/fuzz_serve.py at a small size: `serve` with one flag set to an odd value either refuses in one
    line or builds a twin that answers a completion, a streamed chat and /metrics (nothing listens on a port). Its
    full runs (every flag x 13 values, over SGLang, TensorRT-LLM, disaggregated, MoE and vision bases) found waits
    of years accepted, SGLang's new-token ratio floor uncapped (nothing admitted, or a hang), SGLang graph lists
    exhausting memory and a 10^9 MoE imbalance streamed at a million seconds a step, each refused or fixed now."""
    _runs_clean("fuzz_serve", ["--sample", "40", "--seed", "3", "--seconds", "30"], capsys, monkeypatch)


@pytest.mark.parametrize("args, field", [
    (("--spec-tokens", "3", "--spec-acceptance", "nan"), "--spec-acceptance"),
    (("--memory-fraction", "nan"), "--memory-fraction"),
    (("--routing-skew", "nan", "--model", "Qwen/Qwen3-30B-A3B"), "--routing-skew"),
])
def test_a_nan_in_a_bounded_field_is_named_as_not_finite(run_cli, args, field):
    """A NaN passes no bound, so pydantic named the bound it failed first ('Input should be less than 1'); the
    deployment's bounded floats refuse it as what it is, named by the flag that set it (deployment_flags.py flag_of)."""
    code, _, err = run_cli("simulate", "--rate", "1", "--requests", "3", *args)
    assert code == 2 and field in err and "finite number" in err and len(err.strip().splitlines()) == 1, err
