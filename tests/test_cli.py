"""`phasewise estimate` end to end: JSON keys, the rich table, and one-line errors for bad input."""

import json

import pytest
import yaml

from phasewise.specs.catalog import packaged


def test_estimate_json_has_the_documented_keys(run_cli):
    code, out, err = run_cli("estimate", "--model", "meta-llama/Llama-3.1-8B", "--hardware", "h100-sxm",
                             "--batch", "8", "--prompt-len", "2048", "--context-len", "1024", "--json")
    assert code == 0, err
    d = json.loads(out)
    for key in ("prefill_ms", "decode_step_ms", "operators", "fits", "memory", "prefill", "decode"):
        assert key in d
    assert d["fits"] is True
    assert d["prefill"]["bound"] == "compute" and d["decode"]["bound"] == "memory"
    names = {o["name"] for o in d["operators"]["decode"]}
    assert {"qkv_proj", "attention", "o_proj", "mlp_gate_up", "mlp_down", "lm_head"} <= names
    for op in d["operators"]["prefill"]:
        assert op["bound"] in ("compute", "memory", "dispatch", "network")
        assert op["time_ms"] >= 0 and op["arithmetic_intensity"] >= 0
    assert d["prefill_ms"] > d["decode_step_ms"] > 0


def test_estimate_table_renders(run_cli):
    code, out, _ = run_cli("estimate", "--model", "Qwen/Qwen3-30B-A3B", "--hardware", "h200-sxm", "--tp", "2",
                           "--precision", "fp8", "--batch", "4", "--prompt-len", "512")
    assert code == 0
    assert "moe_experts" in out and "tp_allreduce" in out and "Memory per GPU" in out


def test_listing_commands(run_cli):
    assert "Qwen/Qwen3-235B-A22B" in run_cli("models")[1]
    assert "jetson-agx-orin" in run_cli("hardware")[1]


def test_listing_commands_as_json(run_cli):
    """models / hardware --json: the catalog for scripts, every entry loadable by the key it is listed under."""
    from phasewise.specs import load_hardware, load_model

    code, out, _ = run_cli("models", "--json")
    models = {m["model"]: m for m in json.loads(out)["models"]}
    assert code == 0 and "deepseek-ai/DeepSeek-R1" in models["deepseek-ai/DeepSeek-V3"]["aliases"]
    assert models["Qwen/Qwen3-235B-A22B"]["num_experts"] == 128
    assert models["Qwen/Qwen3-235B-A22B"]["active_params"] == load_model("Qwen/Qwen3-235B-A22B").active_params
    code, out, _ = run_cli("hardware", "--json")
    chips = {h["key"]: h for h in json.loads(out)["hardware"]}
    assert code == 0 and set(chips) >= {"h100-sxm", "b200", "jetson-agx-orin"}
    h100 = load_hardware("h100-sxm")
    assert chips["h100-sxm"]["peak_flops"]["bf16"] == h100.peak_flops["bf16"]
    assert chips["h100-sxm"]["price_per_hour_usd"] == h100.price_per_hour_usd and chips["h100-sxm"]["sources"]


def test_kv_shortfall_is_reported_not_fatal(run_cli):
    code, out, _ = run_cli("estimate", "--model", "meta-llama/Llama-3.1-8B", "--batch", "512",
                           "--prompt-len", "8192", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["fits"] is False and "KV tokens" in d["memory"]["reason"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "llama-3.1-8b-instrct"], "unknown model 'llama-3.1-8b-instrct'; did you mean"),
        (["--hardware", "h100-sxm5"], "unknown hardware 'h100-sxm5'; did you mean h100-sxm"),
        (["--tp", "3"], "--tp 3 does not divide num_attention_heads=32"),
        (["--model", "meta-llama/Llama-3.1-70B"], "does not fit on h100-sxm"),
        (["--model", "deepseek-ai/DeepSeek-R1", "--hardware", "b200", "--tp", "4", "--engine", "sglang"],
         "or a larger --memory-fraction (0.855 here, the engine default)"),  # SGLang's own mem_fraction_static
        (["--prompt-len", "-5"], "--prompt-len must be >= 1"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--context-len", "-1"], "--context-len must be >= 0"),
        (["--precision", "int3"], "unknown precision 'int3'"),
        (["--hardware", "a100-sxm-80gb", "--precision", "fp8"], "no fp8 compute path"),
        (["--kv-dtype", "fp2"], "--kv-dtype 'fp2' is not supported"),
        (["--engine", "sglang-9"], "unknown engine"),
        (["--memory-fraction", "1.5"], "--memory-fraction must be in (0, 1]"),
        (["--model", "llama\nbad"], "unknown model 'llama\\nbad'"),  # an echoed line break is escaped
    ],
)
def test_bad_input_is_one_line_and_nonzero(run_cli, args, message):
    code, out, err = run_cli("estimate", *args)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_files_are_one_line(run_cli, tmp_path):
    bad_yaml = tmp_path / "chip.yaml"
    bad_yaml.write_text("hardware:\n  chip: {peak_flops: [1, 2\n")
    code, _, err = run_cli("estimate", "--hardware", str(bad_yaml))
    assert code == 2 and "malformed" in err and err.count("\n") == 1
    bad_cfg = tmp_path / "config.json"
    bad_cfg.write_text('{"model_type": "llama", "hidden_size": "wide"}')
    code, _, err = run_cli("estimate", "--model", str(bad_cfg))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run_cli("estimate", "--model", str(tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in err


def test_non_numeric_option_is_a_usage_error(run_cli):
    code, _, err = run_cli("estimate", "--batch", "many")
    assert code == 2 and "Traceback" not in err


def test_simulate_json_without_slos_is_strict_json(run_cli, tmp_path):
    """Unset SLOs are inf: stdout and summary.json must say null, not the non-JSON token Infinity."""

    def no_constants(token):
        raise AssertionError(f"non-JSON constant {token} in the output")

    code, out, err = run_cli("simulate", "--model", "meta-llama/Llama-3.1-8B", "--hardware", "h100-sxm",
                             "--requests", "20", "--rate", "2", "--json", "--out", str(tmp_path))
    assert code == 0, err
    for text in (out, (tmp_path / "summary.json").read_text()):
        d = json.loads(text, parse_constant=no_constants)
        assert d["slo"]["ttft_ms"] is None and d["slo"]["tbt_ms"] is None
        assert d["slo"]["attainment"] == 1.0 and d["completed"] == 20


@pytest.mark.parametrize("command", [["plan", "--gpus", "1", "--slo-ttft-ms", "1000", "--trace", ""],
                                     ["plan", "--gpus", "1", "--slo-ttft-ms", "1000", "--workload", " "],
                                     ["simulate", "--trace", ""], ["simulate", "--workload", "no-such-trace"]])
def test_a_trace_flag_is_never_silently_the_default(run_cli, command):
    """plan's --workload and simulate's --trace take each other's name; an empty one is an error (plan had run the
    default Azure conversation lengths), a missing one too."""
    code, out, err = run_cli(*command)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert ("is empty" in err) if "no-such-trace" not in command else ("does not exist" in err)


@pytest.mark.parametrize("command, message", [
    (["simulate", "--spec-acceptance", "0.9", "--requests", "5", "--rate", "1"], "--spec-acceptance needs --spec-tokens"),
    (["simulate", "--spec-draft", "eagle", "--requests", "5", "--rate", "1"], "--spec-draft needs --spec-tokens"),
    (["plan", "--spec-tokens", "5", "--gpus", "1", "--slo-ttft-ms", "1000"], "--spec-tokens needs --spec"),
    (["simulate", "--precision", "", "--requests", "5", "--rate", "1"], "--precision is empty"),
    (["simulate", "--isl-dist", " ", "--requests", "5", "--rate", "1"], "--isl-dist is empty"),
    (["estimate", "--mapping", ""], "--mapping is empty"),
    (["plan", "--tp-options", "", "--gpus", "1", "--slo-ttft-ms", "1000"], "--tp-options is empty"),
])
def test_a_flag_that_would_change_nothing_is_an_error(run_cli, command, message):
    """Speculative-decoding knobs without speculative decoding, and a text flag given empty, had run as if absent."""
    code, out, err = run_cli(*command)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("flags, message", [
    (["--prefill-workers", "2"], "--prefill-workers needs --arch disagg"),
    (["--decode-tp", "2"], "--decode-tp needs --arch disagg"),
    (["--kv-link", "rdma"], "--kv-link needs --arch disagg or --scheduler ascendra"),
    (["--arch", "disagg", "--replicas", "2"], "--replicas counts collocated instances"),
    (["--cv", "3"], "--cv shapes gamma arrivals"),
    (["--concurrency", "4", "--arrival", "gamma"], "--arrival shapes open-loop arrivals"),
])
def test_a_deployment_or_arrival_flag_the_run_would_not_use_is_an_error(run_cli, flags, message):
    args = ["simulate", *flags, "--requests", "5"] + ([] if "--concurrency" in flags else ["--rate", "1"])
    code, out, err = run_cli(*args)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("flags, message", [
    (["--no-disagg", "--kv-link", "rdma"], "--kv-link shapes disaggregated strategies"),
    (["--no-disagg", "--prefill-hardware", "b200"], "--prefill-hardware shapes disaggregated strategies"),
    (["--no-disagg", "--policies", "attention-offload"], "--policies attention-offload shapes disaggregated"),
    (["--rank", "3"], "--rank 3 picks the strategy --export writes"),
])
def test_a_plan_flag_no_strategy_would_use_is_an_error(run_cli, flags, message):
    code, out, err = run_cli("plan", *flags, "--gpus", "2", "--slo-ttft-ms", "1000")
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--clients", "5"], "--clients applies to --serve, not to the plain prefill/decode grid: it would be ignored"),
    (["--link-mbps", "5"], "--link-mbps applies to --pipeline"),
    (["--canvas", "64"], "--canvas applies to --dllm"),
    (["--train-method", "lora"], "--train-method applies to --train-reuse"),
    (["--pipeline", "2", "--quick"], "--quick applies to the plain grid or --serve"),
    (["--pipeline", "2", "--serve"], "--pipeline times a two-process split on its own"),
    (["--dllm", "--output", "8"], "--output applies to --serve or --pipeline, not to --dllm"),
    (["--layers", "0"], "--layers must be >= 1 (got 0)"),  # was read as the CPU default, 6
    (["--hidden", "0"], "--hidden must be >= 1 (got 0)"),
    (["--threads", "0"], "--threads must be >= 1 (got 0)"),
    (["--threads", "99999"], "this machine's CPUs (got 99999)"),  # torch.set_num_threads(99999): a segfault
])
def test_validate_flags_are_checked_before_anything_is_timed(run_cli, args, message):
    """validate's mode flags given without their mode were ignored, 0 was read as the default, and a thread count
    past the CPUs crashed torch: each is one line now, before PyTorch is imported (so no torch needed here)."""
    code, _, err = run_cli("validate", "--hardware", "h100-sxm", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args, message", [
    (["--out", ""], "--out is empty"), (["--name", " "], "--name is empty"),
    (["--out", "/nonexistent-folder/hw.yaml"], "cannot write (no such folder)"),
    (["--threads", "99999"], "this machine's CPUs"),
])
def test_calibrate_checks_where_it_writes_before_measuring(run_cli, args, message, tmp_path):
    code, _, err = run_cli("calibrate", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_scaled_model_narrower_than_a_head_keeps_an_even_head_dim():
    """validate --hidden below the head_dim makes it the head_dim: an odd one was a RuntimeError in RoPE."""
    from phasewise.errors import PhasewiseError
    from phasewise.measure.validate import scaled_config
    from phasewise.specs import load_model

    llama = load_model("meta-llama/Llama-3.1-8B")
    assert scaled_config(llama, 2, 64)["head_dim"] == 64
    with pytest.raises(PhasewiseError, match="rotary embeddings need even"):
        scaled_config(llama, 2, 3)


def test_a_scaled_model_keeps_whole_heads_and_a_run_that_cannot_fit_is_refused():
    """validate: a --hidden its heads do not divide was a transformers validation traceback; a run whose weights, KV
    and activations exceed this machine (a 10^11-token --prompt: an allocator RuntimeError) is one line."""
    from types import SimpleNamespace

    from phasewise.errors import PhasewiseError
    from phasewise.measure.torch_env import check_run_fits
    from phasewise.measure.validate import scaled_config
    from phasewise.specs import load_model

    with pytest.raises(PhasewiseError, match=r"--hidden 301 must be a multiple of its 2 attention heads of 128 .e\.g\. 256"):
        scaled_config(load_model("meta-llama/Llama-3.1-8B"), 2, 301)
    cfg = scaled_config(load_model("meta-llama/Llama-3.1-8B"), 2, 256)
    cpu = SimpleNamespace(type="cpu")
    check_run_fits("the --serve loop", cfg, 10**6, 128, 4 * 160, 4, 4, None, cpu, "lower --prompt")  # fits
    with pytest.raises(PhasewiseError, match=r"the --serve loop needs about .* GiB .* but cpu can allocate .* GiB "
                                             r"here; lower --prompt"):
        check_run_fits("the --serve loop", cfg, 10**6, 10**11, 10**11, 4, 4, None, cpu, "lower --prompt")


LLADA = "GSAI-ML/LLaDA-8B-Instruct"


@pytest.mark.parametrize("command, args, message", [
    # a mode that reads only some flags refuses the others by name (they were ignored without a word)
    ("simulate", ["--model", LLADA, "--dllm", "fast-dllm", "--rate", "1", "--router", "round_robin"],
     "--router does not apply with --dllm"),
    ("simulate", ["--model", LLADA, "--dllm", "fast-dllm", "--rate", "1", "--max-num-seqs", "4"],
     "--max-num-seqs does not apply with --dllm"),
    ("simulate", ["--model", LLADA, "--dllm", "fast-dllm", "--rate", "1", "--prefix-caching", "on"],
     "--prefix-caching does not apply with --dllm"),
    ("plan", ["--model", LLADA, "--dllm", "fast-dllm", "--report", "x.html"], "--report does not apply with --dllm"),
    ("plan", ["--model", LLADA, "--dllm", "fast-dllm", "--tp-options", "2"], "--tp-options does not apply with --dllm"),
    ("plan", ["--model", LLADA, "--dllm", "fast-dllm", "--precisions", "bf16,fp8"],
     "--precisions takes one precision with --dllm"),
    ("plan", ["--moe-layouts", "ep"], "--moe-layouts applies to mixture-of-experts models"),
    ("simulate", ["--trace", "azure-conv", "--trace-limit", "0"], "--trace-limit must be >= 1 (got 0)"),
    ("simulate", ["--trace", "azure-conv", "--trace-limit", "-5"], "--trace-limit must be >= 1 (got -5)"),
    ("simulate", ["--rate", "5", "--format", "parquet"], "--format chooses the records' format under --out DIR"),
    ("simulate", ["--rate", "5", "--format", "xlsx", "--out", "o"], "--format 'xlsx' is not one of csv, parquet"),
    ("simulate", ["--rate", "nan"], "--rate must be a finite number > 0 (got nan)"),
    ("simulate", ["--rate", "5", "--arrival", "gamma", "--cv", "nan"], "--cv must be a finite number > 0"),
    ("edge", ["--subsequences", "641"], "--subsequences cuts the prompt into pieces of at least one token"),
    ("edge", ["--outline-points", "4", "--outline-tokens", "-10"], "--outline-tokens and --medusa-heads >= 0"),
    ("edge", ["--outline-tokens", "50"], "--outline-tokens is the skeleton decoded before the outline points"),
    ("edge", ["--devices", "jetson-agx-orin,"], "--devices lists hardware separated by commas, none empty"),
    ("plan", ["--precisions", ","], "--precisions ',': an empty name in the list"),
    ("plan", ["--router", "least_outstanding,"], "--router 'least_outstanding,': an empty name in the list"),
])
def test_flags_a_mode_does_not_read_and_odd_values_are_one_line_errors(run_cli, command, args, message):
    code, out, err = run_cli(command, *args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("mbps", ["5", "1000"])  # 1000: the flag's default, given all the same
def test_edge_refuses_chain_flags_beside_a_topology_file(run_cli, tmp_path, mbps):
    path = tmp_path / "t.yaml"
    path.write_text("devices: [{name: a, hardware: jetson-agx-orin}, {name: b, hardware: jetson-agx-orin}]\n"
                    "links: [{a: a, b: b, mbps: 1000, latency_s: 0.001}]\nsplit: [16, 16]\n")
    code, _, err = run_cli("edge", "--topology", str(path), "--mbps", mbps)
    assert code == 2 and "--mbps does not apply with --topology" in err


def test_a_power_objective_refuses_a_chip_without_a_tdp(run_cli, tmp_path):
    entry = dict(packaged("hardware_specs.yaml")["hardware"]["h100-sxm"], tdp_w=0)
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(entry))
    code, _, err = run_cli("plan", "--gpus", "2", "--hardware", str(path), "--objective", "goodput-per-watt")
    assert code == 2 and "whose tdp_w is 0" in err and err.count("\n") == 1
