"""The public-measurement harnesses refuse bad flag values and flags their run would not read (one-line argparse
errors naming the flag and what it takes), the MI300X static batches run the KV cache their cited command sets, and
validate_amd's kernel-gap experiment reaches the static batches (benchmarks/validate_concurrency.py,
validate_serving.py, validate_amd.py, amd_points.yaml)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import load_benchmark

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SMALL_TABLE = ["--source", "public", "--tables", "nim-llama3.3-70b-h100-500x2000", "--no-rows", "--workers", "1"]


def load(name: str):
    return load_benchmark(name)


@pytest.fixture(scope="module")
def vc():
    module = load("validate_concurrency")
    yield module
    module.restore_constants()


@pytest.fixture(scope="module")
def vs():
    return load("validate_serving")


@pytest.fixture(scope="module")
def amd():
    # validate_amd loads its siblings through sys.modules: give it this test's copies, take them away after
    saved = {name: sys.modules.pop(name, None) for name in ("validate_public", "validate_concurrency")}
    yield load("validate_amd")
    for name, module in saved.items():
        sys.modules.pop(name, None)
        if module is not None:
            sys.modules[name] = module


def refused(main, argv: list[str], capsys) -> str:
    """main(argv) stops with argparse's usage error (exit 2); its message line."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, value, minimum", [
    ("--max-concurrency", "0", 1), ("--limit", "-3", 1), ("--limit", "0", 1), ("--workers", "0", 1),
    ("--rounds", "0", 1), ("--warmup-rounds", "-1", 0), ("--fit-evals", "1", 2), ("--fit-sweeps", "0", 1),
    ("--fit-rounds", "-1", 0), ("--limit", "three", 1)])
def test_concurrency_counts_are_whole_numbers_at_least_their_minimum(vc, capsys, flag, value, minimum):
    """--max-concurrency 0 was ignored (a truthiness test), --limit -3 dropped the last 3 rows (a slice), --rounds 0
    costed every row as 'fail' with rc 0, --workers 0 ran in-process: each now a one-line error."""
    message = refused(vc.main, SMALL_TABLE + [flag, value], capsys)
    assert message.endswith(f"argument {flag}: '{value}': expected a whole number >= {minimum}")


def test_concurrency_tables_names_the_table_ids_when_a_prefix_starts_none(vc, capsys):
    """--tables nosuch printed 'nothing to simulate' (rc 1; with --source all it ran every CSV row instead)."""
    for tables in ("nosuch", "nim,nosuch", "nim,"):
        message = refused(vc.main, ["--source", "public", "--tables", tables, "--no-rows"], capsys)
        assert "argument --tables:" in message and "starts no table id" in message
        assert "nim-llama3.3-70b-h100, " in message and "sglang-cookbook-dsv4-flash-fp4-h100-high-throughput" in message


def test_concurrency_refuses_options_the_chosen_source_has_no_rows_for(vc, capsys):
    message = refused(vc.main, ["--source", "csv", "--tables", "nim", "--limit", "1", "--workers", "1", "--no-rows"],
                      capsys)
    assert "argument --tables:" in message and "--source csv has none" in message
    message = refused(vc.main, SMALL_TABLE + ["--rounds", "5"], capsys)
    assert "argument --rounds:" in message and "--source public has none" in message


def test_concurrency_fit_search_options_need_fit(vc, capsys):
    """--fit-evals, --fit-sweeps and --fit-rounds without --fit were silently unused."""
    for flag in ("--fit-evals", "--fit-sweeps", "--fit-rounds"):
        with pytest.raises(SystemExit, match=f"^{flag} sets --fit's search: it needs --fit$"):
            vc.main(SMALL_TABLE + [flag, "3"])
    capsys.readouterr()


def test_concurrency_valid_bounds_still_run(vc, capsys):
    assert vc.main(SMALL_TABLE + ["--max-concurrency", "1", "--limit", "1"]) == 0
    assert "0 CSV rows and 1 public rows selected" in capsys.readouterr().out


@pytest.fixture
def vs_stubbed(vs, monkeypatch):
    """validate_serving with its simulations stubbed: a flag check must stop main before any of them."""
    monkeypatch.setattr(vs, "online_main", lambda: 0)
    monkeypatch.setattr(vs, "page_main", lambda args: 0)
    monkeypatch.setattr(vs, "predict", lambda *a, **k: 1.0)
    return vs


@pytest.mark.parametrize("argv, expected", [
    (["--moe", "--online"], "argument --online: not allowed with argument --moe"),
    (["--dense-page", "--mixtral"], "argument --mixtral: not allowed with argument --dense-page"),
    (["--fit", "--moe"], "argument --fit: fits on Table B's B1; --moe has nothing fitted"),
    (["--moe-attention", "tp"], "argument --moe-attention: reads the MoE tables only; it needs --moe"),
    (["--mixtral", "--moe-attention", "dp"], "argument --moe-attention: reads the MoE tables only; it needs --moe"),
    (["--online", "--scale", "0.5"], "argument --scale: --online simulates each row's 500 requests"),
    (["--scale", "0"], "argument --scale: '0': expected a fraction in (0, 1]"),
    (["--scale", "-1"], "argument --scale: '-1': expected a fraction in (0, 1]"),
    (["--moe", "--scale", "2"], "argument --scale: '2': expected a fraction in (0, 1]")])
def test_serving_refuses_flags_its_table_does_not_read(vs_stubbed, capsys, argv, expected):
    assert expected in refused(vs_stubbed.main, argv, capsys)


def test_serving_docstring_counts_the_moe_points_it_runs(vs):
    assert len(vs.page_points(vs.MOE_TABLES)) == 110
    assert re.search(r"\b110 points\b", vs.__doc__) and "117 points" not in vs.__doc__


def test_amd_flag_conflicts_are_refused(amd, capsys):
    """--static-only --serving-only printed nothing (rc 0); --fit-kernel-gap --static-only fitted nothing."""
    assert "not allowed with argument" in refused(amd.main, ["--static-only", "--serving-only"], capsys)
    message = refused(amd.main, ["--static-only", "--fit-kernel-gap"], capsys)
    assert "argument --fit-kernel-gap: fits on the serving runs, which --static-only skips" in message


def test_amd_static_runs_use_the_kv_cache_their_cited_command_sets(amd):
    """ROCm/vllm docs/dev-docker/README.md @040de12's latency command sets no --kv-cache-dtype (vLLM's default
    `auto` is the model dtype: --dtype float16), so the runs are costed with an FP16 KV cache, not FP8."""
    text = (BENCH / "amd_points.yaml").read_text()
    command = re.search(r"#\s+python3 \S+benchmark_latency\.py(.*?)\n# with ", text, re.S).group(1)
    assert "--dtype float16" in command and "--kv-cache-dtype" not in command
    assert {p["kv_dtype"] for p in amd.load_points()} == {"fp16"}
    assert yaml.safe_load(text)["common"]["precision"] == "fp8"  # the FP8 weights of AMD's Quark checkpoints


def test_amd_kernel_gap_reaches_the_static_batches_after_they_were_costed(amd):
    """main() costs the static batches first; the fitted gap must still reach them (it patched a name
    validate_public had already bound, so --fit-kernel-gap printed the catalog's figures as the gap's)."""
    points = [p for p in amd.load_points() if p["id"] == "R1"]
    before = amd.evaluate(points)[0]["predicted_s"]["catalog"]
    with amd.kernel_gap({"cdna3": 15e-6}):
        with_gap = amd.evaluate(points)[0]["predicted_s"]["catalog"]
    after = amd.evaluate(points)[0]["predicted_s"]["catalog"]
    assert with_gap > 1.5 * before and after == before


@pytest.fixture(scope="module")
def vm():
    sys.path.insert(0, str(BENCH))  # validate_moe imports its sibling validate_concurrency
    module = load_benchmark("validate_moe", register=True)  # its slotted dataclasses look their module up
    yield module
    sys.modules.pop("validate_moe", None)


@pytest.mark.parametrize("flag, value, minimum", [
    ("--every", "0", 1), ("--every", "-2", 1), ("--limit", "-3", 1), ("--max-concurrency", "0", 1),
    ("--rounds", "0", 1), ("--warmup-rounds", "-1", 0), ("--large-c", "0", 1), ("--workers", "0", 1)])
def test_moe_counts_are_whole_numbers_at_least_their_minimum(vm, capsys, flag, value, minimum):
    # --every 0 was read as 1 and --limit -3 as a slice from the end
    line = refused(vm.main, [flag, value], capsys)
    assert f"argument {flag}: '{value}': expected a whole number >= {minimum}" in line


def test_moe_large_c_rounds_needs_large_c(vm, capsys):
    # it was silently unused without --large-c
    line = refused(vm.main, ["--large-c-rounds", "3"], capsys)
    assert "--large-c-rounds applies only with --large-c" in line
