"""benchmarks/validate_moe.py: the CSV layout columns -> instances mapping (synthetic rows always; real rows of
each backend, and the every-row-is-a-case-or-skipped count, when ../shared/measured is present). No simulation."""

import csv
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "benchmarks" / "validate_moe.py"
CSV_PATH = ROOT.parent / "shared" / "measured" / "blackwell_serving.csv"
needs_csv = pytest.mark.skipif(not CSV_PATH.exists(), reason="../shared/measured/blackwell_serving.csv not present")


@pytest.fixture(scope="module")
def vm():
    sys.path.insert(0, str(PATH.parent))  # validate_moe imports its sibling validate_concurrency
    module = load_benchmark("validate_moe", register=True)  # its slotted dataclasses look their module up there
    yield module
    module.vc.restore_constants()  # main() ran in this process: later tests get the catalog's constants back


@pytest.fixture(scope="module")
def rows():
    with CSV_PATH.open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def agg_row(tp, adp, moe_tp, ep, batch, c, model="deepseek-ai/DeepSeek-R1", pp="1"):
    return {"model_path": model, "mode": "agg", "concurrency": str(c), "batch_size": str(batch), "tp_size": str(tp),
            "pp_size": pp, "attention_dp_size": str(adp), "moe_tp_size": str(moe_tp), "moe_ep_size": str(ep)}


@pytest.mark.parametrize("cols, gpus, adp, ep, squared", [
    ((8, 1, 1, 8), 8, 1, 8, False),      # SGLang --tp 8 --ep 8: attention TP8, EP8
    ((1, 8, 1, 8), 8, 8, 8, False),      # TensorRT-LLM DEP8: attention DP8, EP8
    ((8, 1, 2, 4), 8, 1, 4, False),      # attention TP8, MoE TP2 x EP4
    ((4, 4, 1, 16), 16, 4, 16, False),   # vLLM --tp 4 --dp 4 --enable-expert-parallel: 16 GPUs
    ((64, 1, 8, 8), 8, 1, 8, True),      # squared, tp-style: 8 GPUs, TP8 EP8
    ((1, 64, 8, 8), 8, 8, 8, True),      # squared, attention-DP-style: 8 GPUs, DP8 EP8
])
def test_layout_columns(vm, cols, gpus, adp, ep, squared):
    lay = vm.instance_layout(agg_row(*cols, batch=1, c=1))
    assert (lay.gpus, lay.attention_dp, lay.ep, lay.squared) == (gpus, adp, ep, squared)


@pytest.mark.parametrize("cols, words", [
    ((36, 1, 36, 1), "pure TP over 36"),  # a deployment's GPU total written as TP
    ((8, 1, 1, 4), "!= moe_tp x moe_ep"),  # widths disagree
])
def test_layout_columns_refused(vm, cols, words):
    with pytest.raises(ValueError, match=words.replace("!", "\\!")):
        vm.instance_layout(agg_row(*cols, batch=1, c=1))


def test_dense_rows_ignore_moe_columns_and_caps_follow_attention_dp(vm):
    dense = agg_row(4, 1, 1, 1, batch=80, c=80, model="nvidia/Qwen3-32B-NVFP4")
    assert vm.instance_layout(dense, "", moe=False).gpus == 4
    m = vm.map_row(agg_row(1, 8, 1, 8, batch=32, c=256))  # concurrency = batch_size x attention_dp_size
    assert m.caps == {"collocated": 256} and m.workers == {"collocated": 1}
    with pytest.raises(ValueError, match="deployment not stated"):
        vm.map_row(agg_row(8, 1, 2, 4, batch=12, c=96))


@needs_csv
@pytest.mark.parametrize("rid, key", [
    ("dsr1_b200_sglang_fp4_agg_1024x8192_c4_cfg201", "collocated:1x8g/ep8"),  # SGLang, squared tp 64 / 8x8
    ("dsr1_b200_trtllm_fp4_agg_1024x8192_c256_cfg191", "collocated:1x8g/dp8/ep8"),  # TRT-LLM, squared DP 64 / 8x8
    ("2026_03_25_deepseek_r1_b200_sxm_trtllm_fp4_agg_8192x1024_c256_tp8_0_ep8_0_974", "collocated:1x8g/dp8/ep8"),
    ("2026_03_25_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x1024_c8_tp8_0_ep8_0_248", "collocated:1x8g/ep8"),
    ("kimik2_5_b200_vllm_fp4_agg_1024x1024_c32_cfg635", "collocated:1x16g/dp4/ep16"),  # vLLM DP4 x TP4, EP16
    ("dsr1_gb200_trtllm_fp8_disagg_1024x8192_c2048_cfg375", "prefill:1x8g/dp8/ep8,decode:1x32g/dp32/ep32"),
    ("dsr1_gb200_sglang_fp4_disagg_1024x1024_c8192_cfg483", "prefill:4x4g/dp4/ep4,decode:1x32g/dp32/ep32"),
    ("kimik2_5_gb200_vllm_fp4_disagg_1024x1024_c256_cfg697", "prefill:1x4g/ep4,decode:1x16g/ep16"),
    ("nvidia_qwen3_32b_nvfp4_nvidia_qwen3_32b_nvfp4_b200_sxm_trtllm_disagg_15000x500_c480_tp_epnone_1",
     "prefill:40x1g,decode:6x4g"),
])
def test_real_rows_map_to_documented_instances(vm, rows, rid, key):
    assert vm.map_row(rows[rid]).key() == key


@needs_csv
def test_every_in_scope_row_is_a_case_or_skipped_with_a_reason(vm, rows):
    cases, skipped = vm.load_cases()
    in_scope = {rid for rid, r in rows.items() if vm.in_scope(r)}
    case_ids = [c["id"] for c in cases]
    skipped_ids = [rid for _, rid, _ in skipped]
    assert len(set(case_ids)) == len(case_ids) and not set(case_ids) & set(skipped_ids)
    assert set(case_ids) | set(skipped_ids) == in_scope and len(case_ids) + len(skipped_ids) == len(in_scope)
    assert all(why for _, _, why in skipped)
    by_config = {}
    for c in cases:
        assert by_config.setdefault(c["config"], c["split"]) == c["split"]  # a configuration is never split
        assert c["deployment"]["instances"] and c["requests"] == 10 * c["concurrency"]
    for engine in ("sglang", "trtllm"):
        for mode in ("agg", "disagg"):
            assert {c["split"] for c in cases if c["engine"] == engine and c["mode"] == mode} == {"fit", "test"}
    assert len({vm.measurement_key(rows[i]) for i in case_ids}) == len(case_ids)  # no measurement twice


def test_inferencex_reading_sets_the_recipes_sglang_knobs(vm):
    """InferenceX's dsr1 SGLang scripts: recv interval 10 below 16 concurrent requests, 30 from 16 (off with
    attention DP, which SGLang refuses it beside); chunked prefill 32768 at TP8 / 8192 at TP4 (FP8), 16384 (FP4)."""
    tp8, dp8 = vm.Layout(8), vm.Layout(8, attention_dp=8, ep=8)
    low = vm._knobs("sglang", "collocated", tp8, 8, 1024, 8, "inferencex", "fp8-block", 8, "DeepSeek-V3/R1")
    high = vm._knobs("sglang", "collocated", tp8, 64, 1024, 64, "inferencex", "nvfp4", 64, "DeepSeek-V3/R1")
    assert (low["scheduler_recv_interval"], low["chunked_prefill_size"], low["enable_mixed_chunk"]) == (10, 32768, False)
    assert (high["scheduler_recv_interval"], high["chunked_prefill_size"]) == (30, 16384)
    assert "scheduler_recv_interval" not in vm._knobs("sglang", "collocated", dp8, 64, 1024, 8, "inferencex",
                                                      "fp8-block", 64, "DeepSeek-V3/R1")
    aic = vm._knobs("sglang", "collocated", tp8, 8, 1024, 8, "aic", "fp8-block", 8, "DeepSeek-V3/R1")
    assert "scheduler_recv_interval" not in aic and aic["enable_mixed_chunk"] is True


def test_inferencex_reading_takes_each_models_own_sglang_script(vm):
    """fixed_seq_len/<model>_<precision>_<gpu>.sh (8eec0d4): GLM-5 FP8 runs --mem-fraction-static 0.85 with the
    concurrency as its running and graph caps and no recv interval; Qwen3.5 FP8 on B200 0.8, chunks of 16384, a
    bf16 Mamba state, recv interval 30 above 4 clients; every script disables the radix cache. A run with more clients
    than its script's --max-running-requests (DeepSeek FP8 TP8: 128) keeps the DeepSeek-R1 rules."""
    tp8 = vm.Layout(8)
    glm = vm._knobs("sglang", "collocated", tp8, 32, 1024, 32, "inferencex", "fp8-block", 32, "GLM-5", "b200_sxm")
    assert (glm["memory_fraction"], glm["max_running_requests"], glm["cuda_graph_max_bs"]) == (0.85, 32, 32)
    assert "scheduler_recv_interval" not in glm and glm["prefix_caching"] is False
    qwen = vm._knobs("sglang", "collocated", tp8, 8, 8192, 8, "inferencex", "fp8-block", 8, "Qwen3.5", "b200_sxm")
    assert (qwen["memory_fraction"], qwen["chunked_prefill_size"], qwen["mamba_ssm_dtype"],
            qwen["scheduler_recv_interval"]) == (0.8, 16384, "bf16", 30)
    ds = vm._knobs("sglang", "collocated", tp8, 64, 1024, 64, "inferencex", "fp8-block", 64, "DeepSeek-V3/R1",
                   "b200_sxm")
    assert (ds["memory_fraction"], ds["max_running_requests"], ds["cuda_graph_max_bs"]) == (0.82, 128, 128)
    beyond = vm._knobs("sglang", "collocated", tp8, 256, 1024, 256, "inferencex", "fp8-block", 256,
                       "DeepSeek-V3/R1", "b200_sxm")
    assert "memory_fraction" not in beyond and beyond["chunked_prefill_size"] == 32768


def test_probable_mtp_rows_are_two_batches_of_deepseek_trtllm_runs(vm):
    row = {"backend": "trtllm", "backend_version": "1.2.0rc6.post3", "model_path": "deepseek-ai/DeepSeek-R1",
           "mode": "agg", "measured_on": "2026-02-05"}
    assert "1.2.0rc6.post3" in vm.probable_mtp(row)
    assert not vm.probable_mtp({**row, "backend_version": "1.2.0rc6.post2"})
    january = {**row, "backend_version": "1.1.0rc2.post2", "measured_on": "2026-01-14"}
    assert "measured 2026-01-14" in vm.probable_mtp(january)
    assert not vm.probable_mtp({**january, "measured_on": "2025-12-15"})  # the same image's earlier runs
    assert not vm.probable_mtp({**january, "mode": "disagg"})


def test_inferencex_reading_sets_the_trtllm_attention_dp_balance(vm):
    """InferenceX's dsr1 TensorRT-LLM scripts: with attention DP, attention_dp_config {enable_balance: true,
    timeout_iters: 60, batching_wait_iters: 0}; its gpt-oss script: enable_balance only. max_num_tokens is per rank."""
    dep8, tp8 = vm.Layout(8, attention_dp=8, ep=8), vm.Layout(8, ep=8)
    ds = vm._knobs("trtllm", "collocated", dep8, 128, 1024, 16, "inferencex", "nvfp4", 128, "DeepSeek-V3/R1")
    assert (ds["attention_dp_enable_balance"], ds["attention_dp_timeout_iters"],
            ds["attention_dp_batching_wait_iters"]) == (True, 60, 0)
    assert ds["max_num_tokens"] == 8192  # max(8192, 128 + 1024 + 64 rounded up to 64), each of the 8 ranks' own
    assert ds["max_batch_size"] == 2048  # the script passes none: the default, per rank (PER_RANK_KNOBS)
    aic = vm._knobs("trtllm", "collocated", dep8, 128, 1024, 16, "aic", "nvfp4", 128, "DeepSeek-V3/R1")
    assert (aic["max_batch_size"], aic["max_num_tokens"]) == (16, 16 + 1024 + 1500)  # AIConfigurator's, per rank
    oss = vm._knobs("trtllm", "collocated", vm.Layout(2, attention_dp=2, ep=2), 64, 1024, 32, "inferencex", "nvfp4",
                    64, "gpt-oss")
    assert oss["attention_dp_enable_balance"] and "attention_dp_timeout_iters" not in oss
    assert "attention_dp_enable_balance" not in vm._knobs("trtllm", "collocated", tp8, 64, 1024, 64, "inferencex",
                                                          "nvfp4", 64, "DeepSeek-V3/R1")


def test_provenance_reads_runs_from_the_engines_own_images_as_inferencex(vm):
    """AIConfigurator's generator launches workers through Dynamo; a run served from the engine's own image was not."""
    assert vm.launched_without_dynamo({"image": "nvcr.io#nvidia/tensorrt-llm/release:1.2.0rc6.post2"})
    assert vm.launched_without_dynamo({"image": "lmsysorg/sglang:v0.5.9-cu130"})
    assert not vm.launched_without_dynamo({"image": "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:0.5.0"})
    assert not vm.launched_without_dynamo({"image": ""})  # not stated: AIConfigurator's reading


@needs_csv
def test_provenance_reading_deploys_collocated_engine_image_runs_as_inferencex(vm):
    cases, _ = vm.load_cases(vm.CSV_PATH, reading="provenance")
    adp = [c for c in cases if c["engine"] == "trtllm" and c["mode"] == "agg"
           and c["deployment"]["instances"][0].get("attention_dp_enable_balance")]
    assert len(adp) >= 10  # InferenceX's DeepSeek-R1 / gpt-oss DEP runs balance their attention-DP ranks
    assert all(c["client"] == "genai-perf" for c in cases)  # fixed lengths, as the CSV's README says
    disagg = [c for c in cases if c["mode"] == "disagg"]
    assert disagg and not any("attention_dp_enable_balance" in g for c in disagg for g in c["deployment"]["instances"])


def test_rows_of_another_part_run_through_the_harness(vm, tmp_path, capsys):
    """--rows: a CSV in blackwell_serving.csv's columns from other parts (AIConfigurator's Hopper system names,
    its w4a16_mxfp4 MoE mode for gpt-oss) is simulated, not skipped; --csv may not overwrite --rows. Synthetic rows:
    their measured figures are placeholders, only the mapping and the run are checked."""
    rows = [("oss", "vllm", "openai/gpt-oss-120b", "h100_sxm", "fp4", "bf16", "w4a16_mxfp4", "1"),
            ("ds", "sglang", "deepseek-ai/DeepSeek-R1", "h200_sxm", "fp8", "fp8", "fp8_block", "8")]
    path, out = tmp_path / "hopper.csv", tmp_path / "predictions.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=vm.vc.ROW_COLUMNS, restval="")
        writer.writeheader()
        for rid, engine, model, system, prec, gemm, moe, tp in rows:
            writer.writerow(dict(id=rid, backend=engine, model_path=model, system=system, precision=prec, mode="agg",
                                 isl="1024", osl="64", gemm_quant_mode=gemm, moe_quant_mode=moe, concurrency="2",
                                 batch_size="2", tp_size=tp, pp_size="1", attention_dp_size="1", moe_tp_size=tp,
                                 moe_ep_size="1", silicon_ttft_ms="100", silicon_tpot_ms="10"))
    assert vm.main(["--rows", str(path), "--workers", "1", "--rounds", "2", "--warmup-rounds", "0", "--no-rows",
                    "--csv", str(out)]) == 0
    with out.open(newline="") as f:
        got = {r["id"]: r for r in csv.DictReader(f)}
    assert got["oss"]["status"] == got["ds"]["status"] == "ok"
    assert (got["oss"]["hardware"], got["oss"]["precision"]) == ("h100-sxm", "bf16-mxfp4")
    assert (got["ds"]["hardware"], got["ds"]["precision"]) == ("h200-sxm", "fp8-block")
    assert float(got["oss"]["pred_tpot_ms"]) > 0 and float(got["ds"]["pred_ttft_ms"]) > 0
    # the errors by engine version: rows that state none are grouped by the month they were measured
    report = capsys.readouterr().out
    assert "engine  version" in report and "unstated, measured ?" in report
    with pytest.raises(SystemExit):
        vm.main(["--rows", str(path), "--csv", str(path)])
    assert path.read_text().startswith("id,backend")  # untouched
    short = tmp_path / "short.csv"
    short.write_text("id,backend\nx,vllm\n")
    with pytest.raises(SystemExit, match="missing columns backend_version, model_path"):
        vm.main(["--rows", str(short)])
    assert vm.main(["--rows", str(tmp_path / "absent.csv")]) == 2


def test_gpt_oss_fp4_rows_are_costed_in_its_checkpoints_format(vm):
    row = {"model_path": "openai/gpt-oss-120b", "precision": "fp4", "gemm_quant_mode": "nvfp4",
           "moe_quant_mode": "nvfp4"}
    assert vm.row_precision(row) == "bf16-mxfp4"
    assert vm.row_precision({**row, "model_path": "deepseek-ai/DeepSeek-R1"}) == "nvfp4"


@pytest.mark.parametrize("modes, model, precision", [
    (("fp8", "fp8", "fp8"), "deepseek-ai/DeepSeek-R1", "fp8"),
    (("fp8", "fp8_block", "fp8_block"), "deepseek-ai/DeepSeek-R1", "fp8-block"),  # block-FP8 linear layers too
    (("fp8", "fp8", "fp8_block"), "deepseek-ai/DeepSeek-R1", "fp8-block"),
    (("fp8", "fp8_static", "fp8"), "Qwen/Qwen3-235B-A22B", "fp8"),
    (("int8", "sq", "sq"), "meta-llama/Llama-3.1-70B", "int8"),  # SmoothQuant W8A8
    (("int8", "int8_wo", "bfloat16"), "meta-llama/Llama-3.1-70B", "w8a16"),  # a dense model's MoE mode is not read
    (("fp4", "nvfp4", "w4a8_mxfp4_mxfp8"), "openai/gpt-oss-120b", "bf16-mxfp4"),
    (("int4", "int4_wo", "int4_wo"), "moonshotai/Kimi-K2.5", "bf16-w4a16-g32"),  # the table's own choice first
])
def test_every_aiconfigurator_quant_mode_pair_maps_to_a_scheme(vm, modes, model, precision):
    row = dict(zip(("precision", "gemm_quant_mode", "moe_quant_mode"), modes), model_path=model)
    assert vm.row_precision(row) == precision


def test_a_quant_pair_without_a_scheme_is_skipped_naming_its_modes(vm):
    row = {"precision": "fp8", "gemm_quant_mode": "fp8_block", "moe_quant_mode": "w4afp8",
           "model_path": "deepseek-ai/DeepSeek-R1"}
    assert vm.row_precision(row) is None
    assert vm.vc.quant_precision(row) == (None, "quant modes fp8_block / w4afp8 not mapped")
    mixed = {**row, "gemm_quant_mode": "int8_wo", "moe_quant_mode": "bfloat16"}
    assert "no phasewise scheme holds w8a16 layers beside bf16 experts" in vm.vc.quant_precision(mixed)[1]


def test_dense_rows_are_told_apart_by_the_catalog_not_a_list(vm):
    """Another part's dense models (not this CSV's three) go to validate_concurrency.py, MoE ones stay here; NVIDIA's
    re-quantized checkpoints cost as the architecture they keep."""
    assert vm.vc.is_dense("Qwen/Qwen3-8B") and vm.vc.is_dense("nvidia/Llama-3.1-70B-Instruct-FP8")
    assert not vm.vc.is_dense("nvidia/Qwen3-235B-A22B-NVFP4") and not vm.vc.is_dense("deepseek-ai/DeepSeek-R1")
    assert not vm.in_scope({"model_path": "Qwen/Qwen3-8B", "mode": "agg"})
    assert vm.in_scope({"model_path": "Qwen/Qwen3-8B", "mode": "disagg"})
    assert vm.in_scope({"model_path": "unknown-org/unknown-model", "mode": "agg"})  # reported there, not dropped
    for checkpoint in ("nvidia/Kimi-K2.5-NVFP4", "nvidia/MiniMax-M2.5-NVFP4", "nvidia/DeepSeek-V3.1-NVFP4",
                       "sgl-project/DeepSeek-V4-Pro-FP8", "Qwen/Qwen3-32B-FP8-Static-PerTensor"):
        assert vm.vc.resolve_model(checkpoint) is not None, checkpoint


def test_with_dense_adds_the_dense_rows_to_the_same_run(vm, tmp_path):
    """--with-dense: validate_concurrency.py's dense collocated rows run beside the MoE rows (so that --fit fits the
    shared constants on both), labelled family 'dense'; without it they are not simulated. Synthetic rows (placeholder
    measurements): only which rows run, and how they are labelled, is checked."""
    common = dict(backend="vllm", system="b200_sxm", mode="agg", isl="1024", osl="64", concurrency="2",
                  batch_size="2", pp_size="1", attention_dp_size="1", moe_ep_size="1", silicon_ttft_ms="100",
                  silicon_tpot_ms="10")
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=vm.vc.ROW_COLUMNS, restval="")
        writer.writeheader()
        writer.writerow(dict(common, id="moe", model_path="openai/gpt-oss-120b", precision="fp4",
                             gemm_quant_mode="nvfp4", moe_quant_mode="nvfp4", tp_size="2", moe_tp_size="2"))
        writer.writerow(dict(common, id="dense", model_path="Qwen/Qwen3-32B", precision="fp8", tp_size="1",
                             moe_tp_size="1"))
    for extra, expect in (([], {"moe"}), (["--with-dense"], {"moe", "dense"})):
        out = tmp_path / f"out{len(extra)}.csv"
        assert vm.main(["--rows", str(path), "--workers", "1", "--rounds", "2", "--warmup-rounds", "0", "--no-rows",
                        "--csv", str(out), *extra]) == 0
        with out.open(newline="") as f:
            ran = {r["id"]: r for r in csv.DictReader(f) if r["status"] == "ok"}
        assert set(ran) == expect
    assert ran["dense"]["group"] == "dense:agg:vllm" and ran["moe"]["group"] == "gpt-oss:agg:vllm"


def test_repeatability_pairs_the_measurements_of_one_deployment(vm):
    """The same deployment (configuration, lengths, concurrency) measured twice: each pair's symmetric relative
    difference, by whether the two state one release; another deployment pairs with nothing."""
    base = dict(config="sglang|agg|deepseek-ai/DeepSeek-R1|b200_sxm|fp8|collocated:1x8g", precision="fp8-block",
                isl=1024, osl=1024, concurrency=4, version="0.5.9", measured_ttft_ms=200.0, measured_tpot_ms=10.0)
    cases = [base,
             dict(base, measured_ttft_ms=250.0, measured_tpot_ms=8.0),  # re-measured
             dict(base, version="0.5.10", measured_ttft_ms=100.0),
             dict(base, concurrency=8, measured_ttft_ms=999.0)]  # another deployment
    pairs = vm.repeatability(cases)
    assert pairs["same"]["ttft"] == pytest.approx([0.25]) and pairs["same"]["tpot"] == pytest.approx([0.25])
    assert sorted(pairs["other"]["ttft"]) == pytest.approx([1.0, 1.5])
    assert sorted(pairs["other"]["tpot"]) == pytest.approx([0.0, 0.25])


def test_a_family_no_row_is_of_stops_the_run_naming_the_covered_ones(vm, tmp_path):
    """--family that matches no covered row is refused in one line listing the covered families (it simulated
    nothing and said only "nothing to simulate")."""
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=vm.vc.ROW_COLUMNS, restval="")
        writer.writeheader()
        writer.writerow(dict(id="oss", backend="vllm", model_path="openai/gpt-oss-120b", system="b200_sxm",
                             precision="fp4", mode="agg", isl="1024", osl="64", gemm_quant_mode="nvfp4",
                             moe_quant_mode="nvfp4", concurrency="2", batch_size="2", tp_size="2", pp_size="1",
                             attention_dp_size="1", moe_tp_size="2", moe_ep_size="1", silicon_ttft_ms="100",
                             silicon_tpot_ms="10"))
    with pytest.raises(SystemExit, match=r"--family DeepSeek: no covered row is of it \(covered: gpt-oss\)"):
        vm.main(["--rows", str(path), "--family", "DeepSeek", "--no-rows"])


def test_an_sglang_group_sized_for_its_clients_takes_the_larger_fraction(vm):
    """SGLang's pool is its fraction of the memory free after the runtime starts (profile_max_num_token): DeepSeek-V3
    FP8 on 4 GB200 GPUs keeps a few thousand tokens at the default, fewer than 8 clients' 1k + 1k sequences hold.
    The harness reads such a group as deployed with 0.95 where that holds them, from the row's own inputs only."""
    import json

    group = {"role": "collocated", "hardware": "gb200", "tp": 4, "replicas": 1, "engine": "sglang",
             "precision": "fp8-block", "kv_dtype": "fp8"}
    row = {"isl": "1024", "osl": "1024", "concurrency": "8"}
    held = vm._held_tokens("decode", row, 1)
    assert held == 8 * 2048 and vm._held_tokens("prefill", row, 1) == 1024
    as_json = json.dumps(group, sort_keys=True)
    assert vm._fits_at_default("deepseek-ai/DeepSeek-V3", as_json)  # the weights fit at the default
    assert not vm._fits_at_default("deepseek-ai/DeepSeek-V3", as_json, held)  # its clients do not
    larger = json.dumps(dict(group, memory_fraction=vm.SGLANG_MEMORY_FALLBACK), sort_keys=True)
    assert vm._fits_at_default("deepseek-ai/DeepSeek-V3", larger, held)
