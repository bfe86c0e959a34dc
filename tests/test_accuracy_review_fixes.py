"""The fixed-concurrency harnesses' input and argument handling (benchmarks/validate_concurrency.py,
validate_moe.py, validate_startup.py): a --csv output that cannot be written or is an input is refused before any
run; a --rows value that is not a number where the harness needs one, a directory or a binary file is a one-line
error naming the file, line and field; --fit with no fit rows, --rows with --source public, an --assume-part GPU no
table states and --with-dense with filters that drop every dense row stop the run; the rows a constant was chosen
because of are labelled 'chosen', never pooled into a held-out figure; validate_startup.py takes no flags.

PHASEWISE_BENCH (a folder) loads the harnesses from there instead of benchmarks/ (to run these tests against
another version of them)."""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("PHASEWISE_BENCH", ROOT / "benchmarks"))
CSV_PATH = ROOT.parent / "shared" / "measured" / "blackwell_serving.csv"
needs_csv = pytest.mark.skipif(not CSV_PATH.exists(), reason="../shared/measured/blackwell_serving.csv not present")
SMALL_TABLE = ["--source", "public", "--tables", "nim-llama3.3-70b-h100-500x2000", "--no-rows", "--workers", "1"]

# one dense collocated row and one MoE row of the measured CSV's form (../shared/measured/README.md)
DENSE_ROW = {
    "id": "llama_70b_b200_trtllm_fp4_c8", "backend": "trtllm", "model_path": "meta-llama/Llama-3.1-70B",
    "system": "b200_sxm", "precision": "fp4", "mode": "agg", "isl": "1024", "osl": "256", "gemm_quant_mode": "nvfp4",
    "moe_quant_mode": "nvfp4", "concurrency": "8", "batch_size": "8", "tp_size": "2", "pp_size": "1",
    "attention_dp_size": "1", "moe_tp_size": "2", "moe_ep_size": "1", "silicon_ttft_ms": "232.37",
    "silicon_tpot_ms": "8.91", "measured_on": "2025-10-29"}
MOE_ROW = dict(DENSE_ROW, id="gpt_oss_b200_vllm_fp4_c4", backend="vllm", model_path="openai/gpt-oss-120b",
               concurrency="4", batch_size="4", tp_size="4", moe_tp_size="4", isl="1024", osl="64")


def load(name: str):
    return load_benchmark(name, folder=BENCH)


@pytest.fixture(scope="module")
def vc():
    module = load("validate_concurrency")
    yield module
    module.restore_constants()  # main() ran in this process: later tests get the catalog's constants back


@pytest.fixture(scope="module")
def vm(vc):
    # validate_moe imports its sibling validate_concurrency by name: give it this test's copy, and register itself
    # (its slotted dataclasses look their module up in sys.modules); both taken away after
    saved = {name: sys.modules.get(name) for name in ("validate_concurrency", "validate_moe")}
    sys.modules["validate_concurrency"] = vc
    module = load_benchmark("validate_moe", folder=BENCH, register=True)
    yield module
    for name, old in saved.items():
        sys.modules.pop(name, None)
        if old is not None:
            sys.modules[name] = old


def write_rows(path: Path, vc, *rows: dict[str, str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=vc.ROW_COLUMNS, restval="")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def stops(call, *args) -> str:
    """call(*args) stops the run (SystemExit); its message (argparse's usage error goes to stderr: '' here)."""
    with pytest.raises(SystemExit) as stop:
        call(*args)
    return str(stop.value.code)


def refused(main, argv: list[str], capsys) -> str:
    """main(argv) stops with argparse's usage error (exit 2); its one message line."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


# --- --csv ------------------------------------------------------------------------------------------------------
def test_csv_refuses_a_path_it_cannot_write_or_an_input_the_run_reads(vc, tmp_path):
    """--csv's type refuses, before any run: a directory, a path through a file, the package's catalog files, the
    harnesses' own files; a new file in a new folder is fine (the folder is made when it is written)."""
    import phasewise

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    package_data = Path(phasewise.__file__).resolve().parent / "specs" / "data"
    for path, says in ((tmp_path, "directory"), (blocker / "out.csv", "not a directory"),
                       (package_data / "efficiency.yaml", "phasewise package"),
                       (package_data / "engines.yaml", "phasewise package"),
                       (BENCH / "validate_concurrency.py", "benchmarks' own files"),
                       (BENCH / "public_points.yaml", "benchmarks' own files")):
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            vc.output_csv(str(path))
    assert vc.output_csv(str(tmp_path / "new" / "out.csv")) == str(tmp_path / "new" / "out.csv")


def test_csv_in_a_new_folder_is_written_after_the_run(vc, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "pred.csv"
    assert vc.main(SMALL_TABLE + ["--csv", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_text().startswith("source,id,")


# --- --rows values ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, says", [
    ("concurrency", "abc", "whole number >= 0"), ("batch_size", "8.5", "whole number >= 0"),
    ("isl", "1k", "whole number of tokens >= 1"), ("osl", "", "whole number of tokens >= 1"),
    ("silicon_ttft_ms", "", "number of milliseconds > 0"), ("silicon_tpot_ms", "n/a", "number of milliseconds > 0"),
])
def test_a_rows_value_that_is_not_a_number_names_file_line_and_field(vc, tmp_path, field, value, says):
    path = write_rows(tmp_path / "rows.csv", vc, DENSE_ROW, dict(DENSE_ROW, id="bad", **{field: value}))
    message = stops(vc.read_rows, path)
    assert message.startswith(f"{path} line 3 (id bad): field '{field}' is {value!r}") and says in message


def test_a_rows_value_left_empty_stays_a_skip_with_its_reason(vc, tmp_path):
    """An unstated value (e.g. the shared CSV's rows without a concurrency) is no error: the row is skipped."""
    path = write_rows(tmp_path / "rows.csv", vc, DENSE_ROW, dict(DENSE_ROW, id="unstated", concurrency=""))
    cases, skipped = vc.load_csv_cases(path)
    assert [c["id"] for c in cases] == [DENSE_ROW["id"]]
    assert ("csv", "unstated", "concurrency not stated in the source") in skipped
    message = stops(vc.read_rows, write_rows(tmp_path / "bad.csv", vc, dict(DENSE_ROW, concurrency="abc")))
    assert "field 'concurrency'" in message


def test_rows_that_are_a_directory_or_binary_are_one_line_errors(vc, tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    assert stops(vc.main, ["--source", "csv", "--rows", str(tmp_path), "--workers", "1"]) == \
        f"--rows {tmp_path}: is a directory; give a measured CSV file"
    message = stops(vc.main, ["--source", "csv", "--rows", str(binary), "--workers", "1"])
    assert message.startswith(f"--rows {binary}: not a CSV text file")


def test_validate_moe_reads_a_bad_measurement_as_a_one_line_error(vm, vc, tmp_path):
    path = write_rows(tmp_path / "rows.csv", vc, MOE_ROW, dict(MOE_ROW, id="bad", silicon_ttft_ms="n/a"))
    message = stops(vm.load_cases, path)
    assert message.startswith(f"{path} line 3 (id bad): field 'silicon_ttft_ms' is 'n/a'")


# --- flags a run would not read ---------------------------------------------------------------------------------
def test_fit_without_fit_rows_stops_before_any_simulation(vc):
    message = stops(vc.main, SMALL_TABLE + ["--fit", "--fit-only", "hardware:blackwell.kernel_launch_s",
                                            "--fit-evals", "2", "--fit-sweeps", "1"])
    assert message.startswith("--fit: no fit rows among the 1 selected rows (splits: test)")


def test_rows_with_source_public_is_refused(vc, capsys, tmp_path):
    for rows in (str(tmp_path / "missing.csv"), str(CSV_PATH)):
        line = refused(vc.main, SMALL_TABLE + ["--rows", rows], capsys)
        assert "error: argument --rows:" in line and "--source public reads none" in line


@pytest.mark.parametrize("part, tables", [("h100=h100-pcie", "gpustack"), ("H300=h100-sxm", "gpustack"),
                                          ("H100=h100-sxm", "nim-llama3.3-70b-h100-500x2000")])
def test_an_assumed_part_no_selected_table_states_is_refused(vc, capsys, part, tables):
    """--assume-part's GPU must be a word of a (--tables-selected) table's stated hardware, case included: 'h100'
    and 'H300' name none; H100 names no table of a selection whose part is pinned."""
    line = refused(vc.main, ["--source", "public", "--tables", tables, "--assume-part", part, "--no-rows",
                             "--workers", "1"], capsys)
    assert "argument --assume-part:" in line and f"states '{part.split('=')[0]}'" in line


def test_with_dense_that_the_filters_drop_is_refused(vm, vc, tmp_path):
    """--with-dense adds family 'dense' (mode agg): --family gpt-oss or --mode disagg would drop every one of them
    silently, so the combination stops the run (--family dense keeps them)."""
    path = write_rows(tmp_path / "rows.csv", vc, MOE_ROW, DENSE_ROW)
    for flags, says in ((["--family", "gpt-oss"], "--family gpt-oss selects none"),
                        (["--mode", "agg", "--limit", "1"], "--limit 1 selects none")):
        message = stops(vm.main, ["--rows", str(path), "--with-dense", "--no-rows", "--workers", "1"] + flags)
        assert message.startswith("--with-dense adds the dense collocated rows") and says in message


# --- the split of the rows a constant was chosen on ------------------------------------------------------------
def test_rows_a_constant_was_chosen_on_are_not_held_out(vc, capsys):
    cases, _ = vc.load_public_cases(vc.YAML_PATH, {"H200": "h200-sxm"})
    inferencex = [c for c in cases if c["group"].startswith("public:inferencex-")]
    assert len(inferencex) == 9 and {c["split"] for c in inferencex} == {"chosen"}
    assert {c["split"] for c in cases if c not in inferencex} == {"test"}
    assert vc.main(["--source", "public", "--assume-part", "H200=h200-sxm", "--tables", "inferencex-issue-890",
                    "--no-rows", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    all_public = [line for line in out.splitlines() if line.startswith("ALL public")]
    assert len(all_public) == 1 and re.search(r"\bchosen\s+2 \|", all_public[0])


# --- validate_startup.py ----------------------------------------------------------------------------------------
def test_validate_startup_takes_no_flags(capsys):
    startup = load("validate_startup")
    line = refused(startup.main, ["--bogus-flag"], capsys)
    assert line.endswith("unrecognized arguments: --bogus-flag")


# --- documented counts ------------------------------------------------------------------------------------------
@needs_csv
def test_validate_moe_docstring_counts_its_duplicates(vm):
    _, skipped = vm.load_cases()
    duplicates = sum(why.startswith("duplicate measurement") for _, _, why in skipped)
    assert f"Duplicates: {duplicates:,} in-scope rows" in vm.__doc__
