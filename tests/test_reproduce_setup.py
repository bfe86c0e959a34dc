"""`phasewise reproduce NAME --set key=value`: what a setup key takes, checked before anything runs.

Bad input is a one-line error naming the --set key and what it allows (never a traceback, another command's flag, or
a setting silently ignored); a value a run could not finish with is refused; the paper's figures and the checks' bands
are not setup keys; the listing shows the keys and --help-setup what each takes; labels follow the setup."""

from __future__ import annotations

import json

import pytest

from phasewise.errors import PhasewiseError
from phasewise.scenarios import get_scenario, scenarios


def refused(name: str, sets: dict[str, str]) -> str:
    """The one-line error the setup gets before anything runs."""
    with pytest.raises(PhasewiseError) as info:
        get_scenario(name).resolve(sets)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"reproduce {name}: ")
    return message


def test_every_default_setup_passes_its_own_checks():
    for scenario in scenarios().values():
        assert scenario.resolve() == {k: p.value for k, p in scenario.setup.items()}


# 1: forward sizes beyond the cached context were a KeyError deep in the run
@pytest.mark.parametrize("sets", [{"flat_tokens": "32,4096"}, {"linear_tokens": "512,4096"}, {"context_tokens": "64"}])
def test_odb_forward_sizes_stay_within_the_context(sets):
    message = refused("odb-dllm", sets)
    assert "context_tokens" in message and ("flat_tokens" in message or "linear_tokens" in message)
    assert "must be <= context_tokens" in message


# 2: one decode sample counted the whole decode as one step
def test_one_decode_sample_stands_for_every_step():
    from phasewise.perf.cost import CostModel
    from phasewise.perf.mapping import MappedCost
    from phasewise.specs import load_engine, load_hardware, load_model, load_quant
    from phasewise.specs.mappings import load_mapping

    cm = CostModel(load_model("meta-llama/Llama-2-7b-hf"), load_hardware("halo-2.5d"), load_quant("int8", "int8"),
                   load_engine("ideal"))
    mapped = MappedCost(cm, load_mapping("halo"))
    many, one = mapped.request(1024, 2048, 1, 9), mapped.request(1024, 2048, 1, 1)
    assert one.decode_s == pytest.approx(many.decode_s, rel=0.02)
    assert one.decode_j == pytest.approx(many.decode_j, rel=0.02)
    assert one.decode_first.latency_s == pytest.approx(many.decode_first.latency_s)  # still the first step
    with pytest.raises(PhasewiseError, match="samples >= 1"):
        mapped.request(1024, 16, 1, 0)
    assert "is not a number >= 2" in refused("halo", {"decode_samples": "1"})


# 3: values no run could finish with
@pytest.mark.parametrize("name, sets, bound", [
    ("jupiter", {"max_sub_sequences": "100000"}, "<= 64"), ("jupiter", {"devices": "16"}, "<= 8"),
    ("bestserve", {"gpus": "100000"}, "<= 64"), ("adrenaline", {"requests": "1000000"}, "<= 20000"),
    ("ascendra", {"requests": "100000"}, "<= 2000"), ("alchemist", {"requests": "1000000"}, "<= 12000"),
    ("hat", {"devices": "100000"}, "<= 300"), ("odb-dllm", {"requests": "100000"}, "<= 120"),
    ("spad", {"helpers": "100000"}, "<= 60"), ("halo", {"decode_samples": "100000"}, "<= 90"),
    ("ascendra", {"sarathi_chunk": "1"}, ">= 64"), ("bestserve", {"top": "1000"}, "<= 10"),
])
def test_counts_a_run_could_not_finish_with_are_refused(name, sets, bound):
    key = next(iter(sets))
    assert f"--set {key}=" in refused(name, sets) and bound in refused(name, sets)


def test_halos_grid_is_bounded_as_a_whole():
    # (distinct values: a grid names each once, scenarios/base.py Param.distinct)
    message = refused("halo", {"prompts": ",".join(str(1024 + i) for i in range(12)),
                               "outputs": ",".join(str(128 + i) for i in range(12))})
    assert "models, prompts, outputs, decode_samples" in message and "at most 2,160" in message


# 4: lengths beyond the model's context
@pytest.mark.parametrize("name, sets, keys", [
    ("halo", {"prompts": "65536"}, "prompts + outputs"),
    ("halo", {"models": "meta-llama/Llama-2-7b-hf", "breakdown_prompt": "40000"}, "breakdown_prompt"),
    ("spad", {"prompts": "512,16384"}, "prompts"), ("spad", {"decode_contexts": "1024,8192"}, "decode_contexts"),
    ("fireq", {"seq_len": "9000"}, "seq_len"), ("fireq", {"fit_seq_len": "5000"}, "fit_seq_len"),
    ("odb-dllm", {"prompt_tokens": "3500"}, "prompt_tokens + gen_length"),
    ("jupiter", {"prompt_tokens": "3000"}, "prompt_tokens + output_tokens"),
    ("hat", {"prompt_tokens": "5000"}, "prompt_tokens + output_tokens"),
])
def test_lengths_stay_within_the_models_context(name, sets, keys):
    message = refused(name, sets)
    assert keys in message and "-token context of" in message


def test_the_papers_long_grid_past_llama2s_context_is_allowed_and_said():
    """HALO's grid (PAPERS.md HALO-1: 32k prompts on LLaMA-2-7B) and SPAD's (8,192-token prompts on Llama-2-70B) run
    past the model's 4,096: the paper's setting, allowed up to its longest and stated in the Param's source."""
    halo, spad = get_scenario("halo"), get_scenario("spad")
    assert "past its 4,096-token context" in halo.setup["prompts"].source
    assert "past Llama-2-70B's 4,096-token context" in spad.setup["prompts"].source
    assert halo.resolve({"prompts": "32768", "outputs": "128,2048"})["prompts"] == [32768]
    assert "or the 34,816 of the paper's setup" in refused("halo", {"prompts": "32768", "outputs": "4096"})


# 5: Medusa's acceptance beyond what a step verifies
@pytest.mark.parametrize("acceptance", ["100", "0.5", "6.5"])
def test_jupiter_acceptance_lies_within_what_a_step_verifies(acceptance):
    from phasewise.sim.split_pipeline import DecodePlan

    message = refused("jupiter", {"acceptance": acceptance})
    assert "--set acceptance" in message and "[1, 1 + medusa_heads] = [1, 6]" in message
    assert get_scenario("jupiter").resolve({"acceptance": "6"})["acceptance"] == 6.0
    with pytest.raises(PhasewiseError, match="acceptance"):
        DecodePlan(points=4, verify_tokens=6, acceptance=float(acceptance))


# 6 and 7: a key that sets nothing, and the paper's figures and bands, are not setup keys
@pytest.mark.parametrize("name, key", [
    ("odb-dllm", "threshold"), ("odb-dllm", "fast_band"), ("odb-dllm", "baseline_band"), ("odb-dllm", "flat_limit"),
    ("odb-dllm", "linear_band"), ("halo", "band"), ("halo", "paper_speedup_attacc"), ("halo", "paper_speedup_cent"),
    ("fireq", "decode_tolerance"), ("fireq", "prefill_tolerance"), ("fireq", "prefill_speedup"),
    ("fireq", "ffn_speedup"), ("bestserve", "within"), ("bestserve", "roofline_floor"),
    ("bestserve", "goodput_tolerance"),
])
def test_the_papers_figures_and_bands_are_not_setup_keys(name, key):
    scenario = get_scenario(name)
    assert key not in scenario.setup
    message = refused(name, {key: "0.5"})
    assert f"--set {key}: not a setup key" in message
    assert "tokens_per_step" in message if key == "threshold" else "the paper's" in message


# 8: errors name the --set key, not another command's flag
@pytest.mark.parametrize("name, sets, says, not_says", [
    ("odb-dllm", {"block_length": "5000"}, "gen_length 1024 is not a multiple of block_length 5000", "--"),
    ("odb-dllm", {"tokens_per_step": "1e9"}, "tokens_per_step must be a number from 1 to block_length", "--t"),
    ("odb-dllm", {"answer_spread": "5"}, "--set answer_spread='5' is not a number <= 1", "spread (half"),
    ("halo", {"kv_dtype": "zz"}, "kv_dtype 'zz' is not supported (allowed: fp32", "--kv-dtype"),
    ("fireq", {"hardware": "a100-sxm-80gb"}, "no fp8 compute path", "--precision"),
    ("bestserve", {"gpus": "1"}, "--set tp_options, gpus: every tp_options value (2, 4, 8)", "--gpus"),
    ("ascendra", {"hp_instances": "4"}, "--set hp_instances, instances", "replicas"),
    ("ascendra", {"lp_token_budget": "1"}, "--set lp_token_budget (1) must be >=", "--max-num"),
    ("jupiter", {"devices": "64"}, "--set devices=", "split ["),
    ("spad", {"tp": "1000"}, "--set tp 1000 does not divide", "--tp"),
    # a capability's own refusal raised while the setup runs (a catalog's, a chip's): named by the key (Scenario's
    # naming_keys); it had read "error: unknown hardware 'foo'" and "choose another --precision"
    ("fireq", {"hardware": "foo"}, "reproduce fireq: --set hardware: unknown hardware 'foo'", "--hardware"),
    ("hat", {"model": "foo/bar"}, "reproduce hat: --set model: unknown model 'foo/bar'", "--model"),
    ("halo", {"models": "meta-llama/Llama-2-7b-hf,foo/x"}, "--set models: unknown model 'foo/x'", "--model"),
])
def test_errors_name_the_set_key(name, sets, says, not_says):
    message = refused(name, sets)
    assert says in message and not_says not in message


@pytest.mark.parametrize("name, sets, says", [
    ("halo", {"precision": "fp16", "kv_dtype": "fp16"}, "--set hardware: hardware 'halo-2.5d' has no fp16 compute "
                                                        "path (has: bf16, int8); choose another --set precision"),
    ("odb-dllm", {"hardware": "foo"}, "reproduce odb-dllm: --set hardware: unknown hardware 'foo'"),
])
def test_errors_raised_while_running_name_the_set_key(name, sets, says):
    with pytest.raises(PhasewiseError) as info:
        get_scenario(name).run(sets)
    message = str(info.value)
    assert says in message and len(message.splitlines()) == 1


def test_a_bad_value_lists_the_known_keys():
    """SCENARIOS.md: unknown keys or bad values, a one-line error listing the known keys."""
    message = refused("fireq", {"batch": "-1"})
    assert "--set batch='-1' is not a number > 0" in message
    assert "known keys: hardware, engine, fireq, qserve" in message and "\n" not in message


# 9: the listing shows the setup keys, --help-setup what each takes
def test_the_listing_shows_the_setup_keys_and_help_setup_each_keys_values(run_cli):
    code, out, _ = run_cli("reproduce")
    assert code == 0 and "setup keys" in out
    flat = out.replace("\n", " ")
    assert "decode_samp" in flat and "max_sub_seq" in flat  # halo's and jupiter's keys (folded in their column)
    code, out, err = run_cli("reproduce", "halo", "--help-setup", "--json")
    assert code == 0, err
    rows = {row["key"]: row for row in json.loads(out)["setup"]}
    assert rows["decode_samples"]["allowed"] == "integer >= 2 <= 90" and rows["decode_samples"]["default"] == 9
    assert "PAPERS.md HALO-1" in rows["prompts"]["source"]
    assert rows["band"]["allowed"].startswith("fixed: the paper's")
    code, out, _ = run_cli("reproduce", "jupiter", "--help-setup")
    assert code == 0 and "acceptance" in out and "Medusa mean acceptance" in out
    code, _, err = run_cli("reproduce", "--help-setup")
    assert code == 2 and "give its NAME alone" in err


# 10: values each key's meaning rules out
@pytest.mark.parametrize("name, sets, says", [
    ("hat", {"min_chunk_tokens": "5000"}, "--set min_chunk_tokens, prompt_tokens"),
    ("alchemist", {"keep_layers": "-7"}, "--set keep_layers='-7' is not a number >= -1"),
    ("fireq", {"class_sync_mma_efficiency": "5"}, "is not a number <= 1"),
    ("halo", {"cid_internal_multiple": "1e300"}, "is not a number <= 64"),
    ("halo", {"cid_internal_multiple": "0.5"}, "0 for the chip's own, or from 1 to 64"),
    ("ascendra", {"rate_grid": "1"}, "is not a comma-separated list of 3 to 24 values"),
    ("adrenaline", {"rate_factor": "1"}, "--set rate_factor: a factor more than 1"),
])
def test_values_a_key_cannot_mean_are_refused(name, sets, says):
    assert says in refused(name, sets)


# 11: labels follow the setup
def test_odb_forward_curve_is_titled_by_the_model():
    result = get_scenario("odb-dllm").run({"model": "GSAI-ML/LLaDA-1.5", "requests": "2"})
    titles = [fig.layout.title.text for fig in result.outcome.figures]
    assert any(t.startswith("LLaDA-1.5 forward time") for t in titles) and not any("LLaDA-8B" in t for t in titles)


def test_adrenaline_throughput_plot_names_the_setups_model_and_workers():
    from phasewise.scenarios.adrenaline import SETUP, _plots

    setup = {k: p.value for k, p in SETUP.items()} | {"model": "meta-llama/Llama-2-13b-hf", "prefill_workers": 2}
    point = {"throughput": 1.0, "attainment": 1.0, "prefill_hbm": 0.1, "prefill_bandwidth": 0.1,
             "decode_compute": 0.1}
    curve = _plots([(1.0, point)], [(1.0, point)], point, point, setup)[0]
    assert "Llama-2-13b-hf on 2P + 1D" in curve.layout.title.text


def test_fireq_marks_the_papers_points_as_the_papers_on_another_model():
    result = get_scenario("fireq").run({"model": "meta-llama/Llama-2-13b-hf"})
    names = [trace.name for trace in result.outcome.figures[0].data]
    assert "paper: prefill, Llama-3-8B (this run: meta-llama/Llama-2-13b-hf)" in names
    claim = result.outcome.checks[0].claim
    assert "the paper's figure is of Llama-3-8B" in claim


def test_spad_chip_table_names_the_precisions_peak():
    from phasewise.scenarios.spad import _chips_table, chip_table

    chips = {"h100": "spad-h100-model", "prefill": "spad-prefill-chip", "decode": "spad-decode-chip"}
    table = chip_table(chips)
    fp8, bf16 = _chips_table(table, chips, "fp8"), _chips_table(table, chips, "bf16")
    assert fp8["columns"][1] == "FP8 TFLOP/s" and bf16["columns"][1] == "BF16 TFLOP/s"
    assert float(fp8["rows"][0][1]) > float(bf16["rows"][0][1])


def test_jupiter_claim_quotes_the_papers_setting_only_as_the_papers():
    from phasewise.scenarios import jupiter

    defaults = (jupiter.SETUP["outline_points"].value, jupiter.SETUP["devices"].value,
                jupiter.SETUP["acceptance"].value)
    assert defaults == jupiter.PAPER_DECODE
    result = get_scenario("jupiter").run({"acceptance": "2", "max_sub_sequences": "4"})
    claim = next(c.claim for c in result.outcome.checks if c.name == "decode: outline + Medusa per-token speedup")
    assert "a=2.0 (the paper: >= 10x at K=4, P=4, a=2.5)" in claim
