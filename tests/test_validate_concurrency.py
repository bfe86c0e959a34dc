"""benchmarks/validate_concurrency.py: output structure on a few rows (not accuracy).

The tests of the measured CSV's rows skip when ../shared is absent; those of the public tables
(benchmarks/public_concurrency.yaml, in this repository) always run."""

import csv
import math
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
CSV_PATH = ROOT.parent / "shared" / "measured" / "blackwell_serving.csv"

needs_csv = pytest.mark.skipif(not CSV_PATH.exists(), reason="../shared/measured/blackwell_serving.csv not present")


@pytest.fixture(scope="module")
def vc():
    module = load_benchmark("validate_concurrency")
    yield module
    module.restore_constants()  # main() ran in this process: later tests get the catalog's constants back


@needs_csv
def test_split_takes_whole_configurations(vc):
    cases, skipped = vc.load_csv_cases()
    assert cases and skipped
    by_config = defaultdict(set)
    for c in cases:
        by_config[c["config"]].add(c["split"])
    assert all(len(splits) == 1 for splits in by_config.values())  # a configuration is never split
    for engine in {c["engine"] for c in cases}:
        splits = [next(iter(s)) for k, s in by_config.items() if k.startswith(engine + "|")]
        assert "test" in splits
    assert all(c["source"] == "csv" and c["requests"] == 10 * c["concurrency"] for c in cases)
    reasons = {why for _, _, why in skipped}
    assert "MoE model (another issue)" in reasons


def test_public_tables_keep_unknowns(vc):
    cases, skipped = vc.load_public_cases()
    skipped_tables = {rid.split("#")[0] for _, rid, _ in skipped}
    assert "sglang-cookbook-llama3.1-70b-a100" in skipped_tables  # A100 part and precision not stated
    assert all(c["split"] == "test" for c in cases)
    assert any(c["group"] == "public:nim-llama3.3-70b-h100" for c in cases)


def test_an_unpinned_part_runs_only_as_a_printed_assumption(vc, capsys):
    """A page that names a GPU but not its part ('NVIDIA H100 GPUs') is skipped unless --assume-part names the
    catalog part for it; then every such row carries the assumption in its notes. Tables that pin their part, or
    name another GPU, are untouched; ShareGPT tables stay skipped."""
    _, skipped = vc.load_public_cases()
    reasons = {rid.split("#")[0]: why for _, rid, why in skipped}
    assert reasons["gpustack-gpt-oss-120b-h100-random"].startswith("hardware part not stated")
    cases, skipped = vc.load_public_cases(assume_parts={"H100": "h100-pcie", "A10": "a100-sxm-80gb"})
    h100 = [c for c in cases if c["group"] == "public:gpustack-gpt-oss-120b-h100-random"]
    assert len(h100) == 4 and {c["hardware"] for c in h100} == {"h100-pcie"}
    assert all("assumed h100-pcie (--assume-part)" in " ".join(c["notes"]) for c in h100)
    a100 = {c["hardware"] for c in cases if c["group"] == "public:gpustack-gpt-oss-120b-a100-random"}
    assert a100 == {"a100-sxm-80gb"}
    skipped_tables = {rid.split("#")[0] for _, rid, _ in skipped}
    assert "sglang-cookbook-llama3.1-70b-a100" in skipped_tables  # 'A100' is not the word 'A10'
    assert "gpustack-gpt-oss-120b-h100-sharegpt" in skipped_tables
    with pytest.raises(SystemExit):
        vc.main(["--source", "public", "--assume-part", "H100=h100-nonexistent"])
    assert "is not a catalog key" in capsys.readouterr().err


def test_a_stated_engine_release_picks_its_preset_version(vc):
    """'vLLM 0.10.2' runs vllm@0.10 (its defaults: no async scheduling); a release without a preset keeps the
    engine's default version, with a note."""
    assert vc.stated_version("vllm", "vLLM 0.10.2") == "0.10" and vc.stated_version("vllm", "vLLM 0.11.0") == "0.11"
    assert vc.stated_version("vllm", "vLLM 0.9.0") is None and vc.stated_version("unknown", "NIM 1.8.0") is None
    cases, _ = vc.load_public_cases()
    by_group = {c["group"]: c for c in cases}
    assert by_group["public:gpustack-gpt-oss-120b-a100-random"]["engine_version"] == "0.11"
    assert "no preset for vLLM 0.9.0" in " ".join(by_group["public:vllm-issue-20710-llama3.3-70b-b200"]["notes"])


def test_a_page_s_engine_flags_reach_the_simulated_engine(vc):
    """GPUStack's optimized H100 runs pass --async-scheduling to vLLM 0.10.2: the table's `knobs` go to the engine
    preset (vllm@0.10 has it off by default); a table without knobs passes none."""
    cases, _ = vc.load_public_cases(assume_parts={"H100": "h100-pcie"})
    by_group = {c["group"]: c for c in cases}
    tp2 = by_group["public:gpustack-gpt-oss-120b-h100-tp2-async-random"]
    assert tp2["tp"] == 2 and tp2["engine_version"] == "0.10"
    kw = vc._preset_kwargs(tp2)
    assert kw["async_scheduling"] is True and kw["engine"] == "vllm@0.10"
    assert "async_scheduling" not in vc._preset_kwargs(by_group["public:gpustack-gpt-oss-120b-h100-random"])
    fp8 = by_group["public:gpustack-qwen3-235b-h100-fp8-tp4-random"]  # a budget the page sets
    assert vc._preset_kwargs(fp8)["max_num_batched_tokens"] == 16384 and fp8["precision"] == "fp8-block"
    cases, _ = vc.load_public_cases(assume_parts={"H200": "h200-sxm"})  # 'H200' names the DeepSeek pages only
    assert {c["group"] for c in cases if "assumed h200-sxm (--assume-part)" in " ".join(c["notes"])} == {
        "public:gpustack-deepseek-r1-h200-random", "public:inferencex-issue-870-dsr1-fp8-h200-sglang-c4",
        "public:inferencex-issue-870-dsr1-fp8-h200-sglang-sweep", "public:inferencex-issue-890-dsr1-fp8-h200-sglang"}


def test_a_recipe_s_flags_client_and_per_row_knobs_reach_the_run(vc):
    """InferenceX's H200 runs: the recipe's flags (table knobs) plus each row's own (its --max-running-requests by
    length) reach the engine preset; `warmup: client default` and `lengths: client default` leave both to the
    inferencex client preset (2 x C warm-ups, lengths in [0.8 L, L]) instead of none and fixed."""
    cases, _ = vc.load_public_cases(assume_parts={"H200": "h200-sxm"})
    c4 = [c for c in cases if c["group"] == "public:inferencex-issue-870-dsr1-fp8-h200-sglang-c4"]
    assert [(c["isl"], c["osl"]) for c in c4] == [(1024, 1024), (1024, 8192), (8192, 1024)]
    kw = vc._preset_kwargs(c4[1])
    assert kw["engine"] == "sglang" and kw["client"] == "inferencex" and kw["warmup"] is None
    assert kw["max_running_requests"] == 256 and kw["chunked_prefill_size"] == 32768
    assert kw["prefix_caching"] == "off" and kw["memory_fraction"] == 0.82
    assert vc._preset_kwargs(c4[0])["max_running_requests"] == 512
    assert "lengths: the inferencex client preset's" in " ".join(c4[0]["notes"])
    nim = next(c for c in cases if c["group"] == "public:nim-llama3.3-70b-h100")  # warm-up not stated: none
    assert nim["warmup"] == 0


def test_a_warmup_the_harness_cannot_read_is_an_error(vc, tmp_path):
    table = {"id": "t", "settings": {"model": "meta-llama/Llama-3.1-8B", "engine": "vllm", "hardware": "h100-sxm",
                                     "gpus": 1, "tp": 1, "pp": 1, "precision": "bf16", "client": "aiperf",
                                     "requests": 10, "warmup": "2 x C", "isl": 128, "osl": 16, "lengths": "fixed"},
             "rows": [{"concurrency": 1, "ttft_ms": 10.0, "tpot_ms": 5.0}]}
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump({"tables": [table]}))
    with pytest.raises(ValueError, match="table t: warmup '2 x C' is not a count"):
        vc.load_public_cases(path)


@needs_csv
def test_three_rows_end_to_end(vc, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    code = vc.main(["--limit", "3", "--workers", "1", "--source", "csv", "--max-concurrency", "8",
                    "--csv", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "coverage: 3 CSV rows" in text
    assert "fit split:" in text
    assert "TTFT |err| median" in text and "TPOT |err| median" in text
    with out.open() as f:
        rows = list(csv.DictReader(f))
    done = [r for r in rows if r["status"] == "ok"]
    assert len(done) == 3
    for r in done:
        for k in ("pred_ttft_ms", "pred_tpot_ms", "measured_ttft_ms", "measured_tpot_ms"):
            assert math.isfinite(float(r[k])) and float(r[k]) > 0
    assert any(r["status"].startswith("skipped: ") for r in rows)


def test_csv_output_never_overwrites_the_measured_data(vc, tmp_path):
    """`--csv` is where the predictions go: the measured CSV (or anything in ../shared) is refused before any run."""
    for path in (str(CSV_PATH), str(CSV_PATH.parent / "new.csv")):
        with pytest.raises(SystemExit) as exc:
            vc.main(["--csv", path])
        assert exc.value.code == 2
    assert vc.output_csv(str(tmp_path / "predictions.csv")) == str(tmp_path / "predictions.csv")


def test_public_rows_released_all_at_once_run_as_one_request_clients(vc):
    """`concurrency: unlimited` with a stated request count (vllm bench serve at request rate inf): C = N clients
    of one request each; a serve command without a sequence cap keeps the engine's own (max_batch None)."""
    cases, skipped = vc.load_public_cases()
    oss = [c for c in cases if c["group"] == "public:gpustack-gpt-oss-120b-a100-random"]
    assert len(oss) == 4
    assert all(c["concurrency"] == c["requests"] and c["max_batch"] is None and c["precision"] == "mxfp4"
               and c["hardware"] == "a100-sxm-80gb" for c in oss)
    assert all("one request each" in " ".join(c["notes"]) for c in oss)
    assert "max_num_seqs" not in vc._preset_kwargs(oss[0])
    reasons = {rid.split("#")[0]: why for _, rid, why in skipped}
    assert "hardware part not stated" in reasons["gpustack-qwen3-32b-h100-random"]


def test_a_page_s_ttft_quantiles_are_compared_beside_the_mean(vc, tmp_path, capsys):
    """A public row's median and p99 TTFT, where its page gives them, reach the case and are printed against the
    same simulated run's (that run's quantiles, ordered: p50 <= p99), reported apart from the scored means."""
    table = {"id": "t", "settings": {"model": "meta-llama/Llama-3.1-8B", "engine": "vllm", "hardware": "h100-sxm",
                                     "gpus": 1, "tp": 1, "pp": 1, "precision": "bf16", "client": "aiperf",
                                     "requests": 8, "warmup": 0, "isl": 128, "osl": 8, "lengths": "fixed"},
             "rows": [{"concurrency": 2, "ttft_ms": 20.0, "ttft_median_ms": 15.0, "ttft_p99_ms": 60.0,
                       "tpot_ms": 5.0},
                      {"concurrency": 4, "ttft_ms": 30.0, "tpot_ms": 6.0}]}
    path = tmp_path / "tables.yaml"
    path.write_text(yaml.safe_dump({"tables": [table]}))
    cases, _ = vc.load_public_cases(path)
    assert cases[0]["measured_ttft_p50_ms"] == 15.0 and cases[0]["measured_ttft_p99_ms"] == 60.0
    assert "measured_ttft_p50_ms" not in cases[1]
    results = [vc._work((i, c, None)) for i, c in enumerate(cases)]
    assert all(not r["error"] and 0 < r["ttft_p50"] <= r["ttft_p99"] for r in results)
    vc.print_ttft_quantiles(cases, results)
    out = capsys.readouterr().out
    assert "TTFT quantiles where the page gives them" in out
    assert out.count("public:t ") == 1  # only the row with quantiles
    assert "median |error|: mean" in out and "median" in out and "(1 rows)" in out


def test_model_constants_reach_the_simulation_and_the_class_default_unfits_them(vc):
    """`model:<id>` constants (--with, --fit) reach the simulator's model loader; the class-default column puts
    the model constants fitted on these rows (gpt-oss-120b's, MiniMax-M2.5's and Kimi-K2.5's routing skews) back at their unfitted values and keeps
    the measured ones (DeepSeek's); restore_constants gives the catalog back."""
    import importlib

    sim_mod = importlib.import_module("phasewise.sim.simulate")  # the module (phasewise.sim exports a function)
    vc.apply_constants({"base": "catalog", "model:openai/gpt-oss-120b": {"expert_top20_share": 0.5}}, "vllm")
    assert sim_mod.load_model("openai/gpt-oss-120b").expert_top20_share == 0.5
    assert sim_mod.load_model("deepseek-ai/DeepSeek-R1").expert_top20_share == 0.35
    vc.apply_constants({"base": "class-default"}, "vllm")
    for fitted in ("openai/gpt-oss-120b", "MiniMaxAI/MiniMax-M2.5", "moonshotai/Kimi-K2.5"):  # aliases included
        assert sim_mod.load_model(fitted).expert_top20_share is None
    assert sim_mod.load_model("deepseek-ai/DeepSeek-R1").expert_top20_share == 0.35
    vc.restore_constants()
    assert sim_mod.load_model("openai/gpt-oss-120b").expert_top20_share == 0.738
    assert sim_mod.load_model("MiniMaxAI/MiniMax-M2.5").expert_top20_share == 0.478
    assert vc.with_overrides({}, ["model:openai/gpt-oss-120b.expert_top20_share=0.4"]) == {
        "model:openai/gpt-oss-120b": {"expert_top20_share": 0.4}}


def test_the_harness_fits_and_unfits_exactly_the_catalog_s_fitted_skews(vc):
    """A catalog routing skew whose source says it is fitted is one the harness fits (FIT_PARAMS) and puts back at
    uniform routing in the class-default column (FITTED_MODEL_CONSTANTS); a measured one (DeepSeek's, Qwen3-235B's)
    is neither."""
    from phasewise.specs.catalog import packaged

    fitted = {key for key, entry in packaged("models.yaml")["models"].items()
              if (entry.get("routing_skew") or {}).get("source", "").startswith("fitted")}
    assert fitted == set(vc.SKEW_FITTED_MODELS) == set(vc.FITTED_MODEL_CONSTANTS)
    assert {key.split(":", 1)[1] for key, field, *_ in vc.FIT_PARAMS if field == "expert_top20_share"} == fitted


def test_with_refuses_a_key_or_field_no_loader_reads(vc):
    """--with names a constant by the key the loaders read: a profile name (engine:trtllm-pytorch instead of the
    family engine:trtllm), a misspelt field or an unknown model stops the run with a one-line reason instead of
    running the catalog's constants under the candidate's name."""
    assert vc.with_overrides({}, ["engine:trtllm.eager_launch_s=6e-5",
                                  "hardware:blackwell.weight_read_efficiency.fp4=0.5",
                                  "hardware:halo-2.5d.memory_efficiency_max=0.5"]) == {
        "engine:trtllm": {"eager_launch_s": 6e-5},
        "hardware:blackwell": {"weight_read_efficiency.fp4": 0.5},
        "hardware:halo-2.5d": {"memory_efficiency_max": 0.5}}
    for item, reason in (("engine:trtllm-pytorch.eager_launch_s=6e-5", "keyed by family"),
                         ("engine:sglang.eager_lunch_s=1", "no field 'eager_lunch_s'"),
                         ("hardware:b999.memory_efficiency_max=0.5", "neither hardware:blackwell nor a catalog key"),
                         ("model:no/such-model.expert_top20_share=0.4", "unknown model"),
                         ("engine:vllm.eager_launch_s=fast", "must be a number"),
                         ("hardware:blackwell.gemm_efficiency_max.fp4=0.5", "one number, not a mapping"),
                         ("gpu.eager_launch_s=1", "KEY must be")):
        with pytest.raises(SystemExit) as exc:
            vc.with_overrides({}, [item])
        assert reason in str(exc.value) and "\n" not in str(exc.value)


def test_fit_only_refuses_a_name_that_fits_nothing(vc):
    """--fit-only names fitted constants by key or field prefix (or key.field); one that names none, and --fit-only
    without --fit, stop the run in one line instead of reporting the catalog under the 'fitted' column."""
    assert vc.check_fit_only("engine:trtllm.kv_handoff_s,hardware:blackwell,model:") == (
        "engine:trtllm.kv_handoff_s", "hardware:blackwell", "model:")
    assert vc.check_fit_only("") == ()
    with pytest.raises(SystemExit) as exc:
        vc.check_fit_only("engine:trtllm-pytorch")
    assert "names no fitted constant" in str(exc.value) and "engine:trtllm.eager_launch_s" in str(exc.value)


def test_deepseek_v4_cookbook_cells_carry_their_layout_and_skip_unstated_acceptance(vc):
    """SGLang's DeepSeek-V4 cookbook cells: a high-throughput cell (no speculative decoding) runs with its recipe's
    attention DP and expert parallelism and its flags as engine knobs, the flags the simulation does not represent
    in its notes; a cell whose recipe runs EAGLE drafts from the MTP module without stating their acceptance is
    skipped with that reason unless --assume-acceptance names one, which reaches the run and the notes."""
    cases, skipped = vc.load_public_cases()
    groups = {c["group"]: c for c in cases}
    pro = groups["public:sglang-cookbook-dsv4-pro-fp4-b200-high-throughput"]
    assert pro["model"] == "deepseek-ai/DeepSeek-V4-Pro" and pro["precision"] == "fp8-block-mxfp4"
    assert pro["run_layout"] == {"attention_dp": 8, "ep": 8} and pro["tp"] == 8 and pro["warmup"] == 64
    assert pro["knobs"] == {"swa_full_tokens_ratio": 0.075, "chunked_prefill_size": 65536, "memory_fraction": 0.835,
                            "cuda_graph_max_bs": 544, "enable_prefill_delayer": True}
    notes = " ".join(pro["notes"])
    assert "attention DP 8" in notes and "not modelled: --moe-a2a-backend megamoe" in notes
    fp8 = groups["public:sglang-cookbook-dsv4-flash-fp8-h200-high-throughput"]  # SGLang's FP8 repackaging
    assert fp8["model"] == "deepseek-ai/DeepSeek-V4-Flash" and fp8["precision"] == "fp8-block"
    reasons = {rid.split("#")[0]: why for _, rid, why in skipped}
    assert reasons["sglang-cookbook-dsv4-flash-fp4-b200-low-latency"] == (
        "speculative decoding (EAGLE 3-1-4): draft acceptance not stated")
    cases, skipped = vc.load_public_cases(assume_acceptance=0.6)
    low = [c for c in cases if c["group"] == "public:sglang-cookbook-dsv4-flash-fp4-b200-low-latency"]
    assert len(low) == 2 and low[0]["run_layout"] == {"spec_tokens": 3, "spec_acceptance": 0.6, "spec_draft": "mtp"}
    assert "EAGLE 3-1-4: draft acceptance not stated, assumed 0.6" in " ".join(low[0]["notes"])
    assert not [rid for _, rid, _ in skipped if "dsv4" in rid]
    with pytest.raises(ValueError, match="only top-1 EAGLE chains"):
        vc.public_layout({"speculative": {"algorithm": "EAGLE", "num_steps": 3, "eagle_topk": 4,
                                          "num_draft_tokens": 8}}, 0.7)


def test_an_assumed_acceptance_must_be_a_probability(vc, capsys):
    assert vc.acceptance_value("0.7") == 0.7
    for bad in ("1", "-0.1", "high"):
        with pytest.raises(SystemExit):
            vc.main(["--source", "public", "--assume-acceptance", bad])
        assert "expected a probability in [0, 1)" in capsys.readouterr().err


def test_a_deepseek_v4_cell_runs_end_to_end(vc):
    """One high-throughput cell's row (2,048 requests at 1,024 clients over DP-attention ranks) simulates to a
    finite TTFT and TPOT (accuracy is the harness's report, not this test's)."""
    cases, _ = vc.load_public_cases()
    row = next(c for c in cases if c["id"] == "sglang-cookbook-dsv4-flash-fp4-b200-high-throughput#1")
    result = vc._work((0, row, None))
    assert not result["error"] and result["ttft"] > 0 and result["tpot"] > 0


def test_tables_picks_public_tables_by_id(vc, capsys):
    """--tables runs only the public tables whose id starts with a prefix: the summary's 'ALL public' row is theirs
    (the README's DeepSeek-V4 figures come from --tables sglang-cookbook-dsv4)."""
    code = vc.main(["--source", "public", "--tables", "sglang-cookbook-dsv4-flash-fp8-h200-high", "--no-rows",
                    "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    all_public = [line for line in out.splitlines() if line.startswith("ALL public")]
    assert all_public and all(" 2 |" in line for line in all_public)
    assert "nim-llama3.3-70b-h100" not in out


def test_another_parts_dense_rows_are_cases_in_their_stated_format(vc, tmp_path):
    """--rows from another part of the same source: a dense model this CSV does not hold (read from the catalog,
    not a list) and a re-quantized checkpoint are costed here, each in the format its quant modes name; a pair of
    modes no scheme holds is skipped with the modes named. No simulation."""
    rows = [("q8", "Qwen/Qwen3-8B", "fp8", "fp8_block", "fp8_block"),
            ("l70", "nvidia/Llama-3.1-70B-Instruct-FP8", "fp8", "fp8", "fp8"),
            ("sq", "meta-llama/Llama-3.1-70B", "int8", "sq", "sq"),
            ("odd", "meta-llama/Llama-3.1-70B", "int4", "w4a8_awq", "w4a8_awq"),
            ("dense-moe-mode", "meta-llama/Llama-3.1-70B", "fp8", "fp8_block", "w4afp8"),  # not read: no experts
            ("moe", "Qwen/Qwen3-235B-A22B", "fp8", "fp8_block", "fp8_block")]
    path = tmp_path / "hopper.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=vc.ROW_COLUMNS, restval="")
        writer.writeheader()
        for rid, model, prec, gemm, moe in rows:
            writer.writerow(dict(id=rid, backend="trtllm", model_path=model, system="h200_sxm", precision=prec,
                                 mode="agg", isl="1024", osl="64", gemm_quant_mode=gemm, moe_quant_mode=moe,
                                 concurrency="4", batch_size="4", tp_size="2", pp_size="1", attention_dp_size="1",
                                 silicon_ttft_ms="100", silicon_tpot_ms="10"))
    cases, skipped = vc.load_csv_cases(path)
    got = {c["id"]: (c["model"], c["hardware"], c["precision"]) for c in cases}
    assert got == {"q8": ("Qwen/Qwen3-8B", "h200-sxm", "fp8-block"),
                   "l70": ("meta-llama/Llama-3.1-70B", "h200-sxm", "fp8"),
                   "sq": ("meta-llama/Llama-3.1-70B", "h200-sxm", "int8"),
                   "dense-moe-mode": ("meta-llama/Llama-3.1-70B", "h200-sxm", "fp8-block")}
    why = {rid: reason for _, rid, reason in skipped}
    assert why == {"odd": "quant modes w4a8_awq / - not mapped", "moe": "MoE model (another issue)"}


def test_a_public_row_runs_the_kv_dtype_its_command_sets(vc):
    """A `vllm serve` / SGLang command without --kv-cache-dtype runs the model's dtype: OpenAI's MXFP4 and DeepSeek's
    block-FP8 checkpoints do not quantize their KV cache (the one FP8-KV list for both harnesses ran them in FP8:
    GPUStack's gpt-oss H100 TPOT 97 -> 210 %); NVIDIA's FP8 and NVFP4 checkpoints do; the CSV rows keep theirs."""
    cases, _ = vc.load_public_cases(assume_parts={"H100": "h100-sxm", "H200": "h200-sxm"})
    by_group = {c["group"]: c for c in cases}
    for group in ("public:gpustack-gpt-oss-120b-h100-random", "public:gpustack-qwen3-235b-h100-fp8-tp4-random",
                  "public:inferencex-issue-890-dsr1-fp8-h200-sglang"):
        assert vc._preset_kwargs(by_group[group])["kv_dtype"] is None, group
    nvidia_fp8 = [c for c in cases if c["precision"] == "fp8"]
    assert nvidia_fp8 and all(vc._preset_kwargs(c)["kv_dtype"] == "fp8" for c in nvidia_fp8)
    assert "mxfp4" in vc.FP8_KV  # the Blackwell CSV's rows: FP8 KV, the harness docstring's evidence
